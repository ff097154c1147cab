/*
 * engine.h - an engine for the unit tests that need a whole one (leases,
 * replicas): mount options as on the command line ("role=follower,
 * sync=none"), opened and started on dir. Any failure ends the test
 * program (exit 2): nothing after it would mean anything.
 */
#ifndef ENGINE_H
#define ENGINE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/config.h"
#include "../../core/mq.h"

static inline struct mq *engine_open(const char *dir, const char *opts)
{
	struct cfg_node n;
	const char *why;
	struct mq *m;
	char buf[512], *save, *kv;

	cfg_node_defaults(&n);
	snprintf(buf, sizeof(buf), "%s", opts ? opts : "");
	for (kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');

		if (!eq) {
			printf("# %s: not key=value\n", kv);
			exit(2);
		}
		*eq = '\0';
		if (cfg_node_set(&n, kv, eq + 1, &why) < 0) {
			printf("# %s: %s\n", kv, why);
			exit(2);
		}
	}
	if (mq_open(dir, &n, &m) < 0 || mq_start(m) < 0) {
		printf("# cannot open an engine on %s\n", dir);
		exit(2);
	}
	return m;
}

#endif
