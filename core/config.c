/*
 * config.c - one table of settings: name, range, and where the value lives.
 */
#define _GNU_SOURCE
#include "config.h"
#include "core.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_U64, K_ENUM, K_STR };

struct key {
	const char *name;
	int topic;			/* 1: topic setting, 0: node only */
	enum kind kind;
	size_t off;			/* of the field in cfg_topic or cfg_node */
	uint64_t min, max;		/* K_U64 range */
	const char *const *names;	/* K_ENUM values, NULL-terminated */
};
_Static_assert(sizeof(enum cfg_sync) == sizeof(int) && sizeof(enum cfg_role) == sizeof(int),
	       "enum settings are stored through an int pointer");

static const char *const sync_names[] = { "always", "batch", "none", NULL };
static const char *const overflow_names[] = { "block", "reject", NULL };
static const char *const acks_names[] = { "leader", "all", NULL };
static const char *const role_names[] = { "leader", "follower", NULL };

#define T(f) offsetof(struct cfg_topic, f)
#define N(f) offsetof(struct cfg_node, f)
#define DAY_MS (24ull * 3600 * 1000)

/* Topic keys first, in the order T/config prints them. */
static const struct key keys[] = {
	{ "partitions", 1, K_U64, T(partitions), 1, MQ_MAX_PARTITIONS, NULL },
	{ "sync", 1, K_ENUM, T(sync), 0, 0, sync_names },
	{ "max_message", 1, K_U64, T(max_message), 1, 64ull << 20, NULL },
	{ "retention_ms", 1, K_U64, T(retention_ms), 0, 100 * 365 * DAY_MS, NULL },
	{ "retention_bytes", 1, K_U64, T(retention_bytes), 0, 1ull << 50, NULL },
	{ "segment_bytes", 1, K_U64, T(segment_bytes), 1024, 1ull << 40, NULL },
	{ "max_bytes", 1, K_U64, T(max_bytes), 0, 1ull << 50, NULL },
	{ "overflow", 1, K_ENUM, T(overflow), 0, 0, overflow_names },
	{ "max_deliveries", 1, K_U64, T(max_deliveries), 0, 1000000, NULL },
	{ "ack_wait_ms", 1, K_U64, T(ack_wait_ms), 1, DAY_MS, NULL },
	{ "retry_backoff_ms", 1, K_U64, T(retry_backoff_ms), 0, 3600 * 1000, NULL },
	{ "sync_ms", 0, K_U64, N(sync_ms), 0, 60000, NULL },
	{ "peers", 0, K_STR, N(peers), 0, 0, NULL },
	{ "acks", 0, K_ENUM, N(acks), 0, 0, acks_names },
	{ "role", 0, K_ENUM, N(role), 0, 0, role_names },
	{ "min_insync", 0, K_U64, N(min_insync), 1, 64, NULL },
	{ "isr_lag_ms", 0, K_U64, N(isr_lag_ms), 1, DAY_MS, NULL },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void cfg_node_defaults(struct cfg_node *n)
{
	memset(n, 0, sizeof(*n));
	n->topic.partitions = 4;
	n->topic.sync = CFG_SYNC_BATCH;
	n->topic.max_message = 1048576;
	n->topic.retention_ms = 7 * DAY_MS;
	n->topic.segment_bytes = 64ull << 20;
	n->topic.overflow = CFG_OVERFLOW_BLOCK;
	n->topic.max_deliveries = 5;
	n->topic.ack_wait_ms = 30000;
	n->topic.retry_backoff_ms = 1000;
	n->sync_ms = 10;
	n->acks = CFG_ACKS_LEADER;
	n->role = CFG_ROLE_LEADER;
	n->min_insync = 1;
	n->isr_lag_ms = 10000;
}

static const struct key *find(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

/* Store val into the field of k inside base. */
static int set_value(const struct key *k, void *base, const char *val,
		     const char **why)
{
	char *field = (char *)base + k->off;

	if (k->kind == K_STR) {
		if (strlen(val) >= sizeof(((struct cfg_node *)0)->peers)) {
			*why = "peers: list too long";
			return -EINVAL;
		}
		strcpy(field, val);
		return 0;
	}
	if (k->kind == K_ENUM) {
		for (int i = 0; k->names[i]; i++)
			if (strcmp(val, k->names[i]) == 0) {
				*(int *)field = i;
				return 0;
			}
		*why = "value not one of the allowed words";
		return -EINVAL;
	}
	if (val[0] < '0' || val[0] > '9') {
		*why = "value is not a number";
		return -EINVAL;
	}
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(val, &end, 10);
	if (errno || *end) {
		*why = "value is not a number";
		return -EINVAL;
	}
	if (v < k->min || v > k->max) {
		*why = "value out of range";
		return -EINVAL;
	}
	if (k->off == T(partitions))
		*(uint32_t *)field = (uint32_t)v;
	else
		*(uint64_t *)field = v;
	return 0;
}

int cfg_node_known(const char *key)
{
	return find(key, strlen(key)) != NULL;
}

int cfg_node_set(struct cfg_node *n, const char *key, const char *val,
		 const char **why)
{
	const struct key *k = find(key, strlen(key));

	if (!k) {
		*why = "unknown option";
		return -EINVAL;
	}
	return set_value(k, k->topic ? (void *)&n->topic : (void *)n, val, why);
}

int cfg_topic_apply(struct cfg_topic *t, const char *buf, size_t len,
		    const char **why)
{
	struct cfg_topic nt = *t;
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end, *eq;
		char val[64];
		const struct key *k;
		int rc;

		while (le > p && (le[-1] == ' ' || le[-1] == '\t' || le[-1] == '\r'))
			le--;
		while (p < le && (*p == ' ' || *p == '\t'))
			p++;
		if (p == le)
			goto next;
		eq = memchr(p, '=', (size_t)(le - p));
		if (!eq) {
			*why = "line is not key=value";
			return -EINVAL;
		}
		k = find(p, (size_t)(eq - p));
		if (!k) {
			*why = "unknown key";
			return -EINVAL;
		}
		if (!k->topic) {
			*why = "a node option, set only at mount";
			return -EINVAL;
		}
		if ((size_t)(le - eq - 1) >= sizeof(val)) {
			*why = "value too long";
			return -EINVAL;
		}
		memcpy(val, eq + 1, (size_t)(le - eq - 1));
		val[le - eq - 1] = '\0';
		rc = set_value(k, &nt, val, why);
		if (rc < 0)
			return rc;
next:
		p = nl ? nl + 1 : end;
	}
	if (nt.partitions < t->partitions) {
		*why = "partitions can grow, never shrink";
		return -EINVAL;
	}
	*t = nt;
	return 0;
}

int cfg_topic_format(const struct cfg_topic *t, char *buf, size_t cap)
{
	size_t len = 0;

	for (size_t i = 0; i < NKEYS && keys[i].topic; i++) {
		const char *field = (const char *)t + keys[i].off;
		int n;

		if (keys[i].kind == K_ENUM)
			n = snprintf(buf + len, cap - len, "%s=%s\n", keys[i].name,
				     keys[i].names[*(const int *)field]);
		else if (keys[i].off == T(partitions))
			n = snprintf(buf + len, cap - len, "%s=%" PRIu32 "\n", keys[i].name,
				     *(const uint32_t *)field);
		else
			n = snprintf(buf + len, cap - len, "%s=%" PRIu64 "\n", keys[i].name,
				     *(const uint64_t *)field);
		if (n < 0 || (size_t)n >= cap - len)
			return -ENOSPC;
		len += (size_t)n;
	}
	return (int)len;
}
