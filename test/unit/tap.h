/*
 * tap.h - the unit tests' harness: TAP output, one "ok"/"not ok" line per
 * test function, so that scripts/test.sh counts them with the bats results.
 *
 *     static void seg_append_then_read(void) { CHECK(x == 1); ... }
 *     int main(void) { RUN(seg_append_then_read); return tap_done(); }
 *
 * CHECK records a failure and goes on; the test's line says "not ok" if any
 * CHECK in it failed. tmpdir() gives each test a fresh directory.
 */
#ifndef TAP_H
#define TAP_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tap_n, tap_failed_tests, tap_cur_failed;
static char tap_dir[256];

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			tap_cur_failed = 1;                                  \
			printf("#   %s:%d: CHECK(%s) failed\n", __FILE__,        \
			       __LINE__, #cond);                             \
		}                                                            \
	} while (0)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		long long a_ = (long long)(a), b_ = (long long)(b);          \
		if (a_ != b_) {                                              \
			tap_cur_failed = 1;                                  \
			printf("#   %s:%d: %s == %lld, expected %s == %lld\n",   \
			       __FILE__, __LINE__, #a, a_, #b, b_);          \
		}                                                            \
	} while (0)

/* A fresh empty directory for the running test. */
static inline const char *tmpdir(void)
{
	char cmd[300];

	if (tap_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tap_dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tap_dir);
	}
	snprintf(tap_dir, sizeof(tap_dir), "%s/mqunit.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tap_dir)) {
		perror("mkdtemp");
		exit(2);
	}
	return tap_dir;
}

#define RUN(fn)                                                              \
	do {                                                                 \
		tap_cur_failed = 0;                                          \
		fn();                                                        \
		tap_n++;                                                     \
		if (tap_cur_failed)                                          \
			tap_failed_tests++;                                  \
		printf("%sok %d - %s\n", tap_cur_failed ? "not " : "", tap_n, \
		       #fn);                                                 \
		fflush(stdout);                                              \
	} while (0)

static inline int tap_done(void)
{
	char cmd[300];

	if (tap_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tap_dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tap_dir);
	}
	printf("1..%d\n", tap_n);
	return tap_failed_tests ? 1 : 0;
}

#endif
