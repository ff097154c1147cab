/*
 * repl_lag.c - how far behind its leader a follower's partitions are, at a
 * steady publish rate, for scripts/bench.sh (section replication, part c).
 *
 * PUBLISH is LEADER_MNT/T/publish of a fresh, empty topic; each PART is one
 * of the follower's partition files FOLLOWER_MNT/T/P (every partition of T,
 * or messages routed to one left out are reported missing). Threads:
 *
 *   publisher  one descriptor of PUBLISH, kept open. Message i is due at
 *              t0 + i / RATE. It sleeps until the next message is due
 *              (clock_nanosleep, absolute CLOCK_MONOTONIC deadline: no
 *              drift), then writes every message due by then in one
 *              write(), so that a write() that waits for a commit delays
 *              the messages behind it without lowering the rate. Each line
 *              carries its own due time:
 *                  "SEQ DUE_NS xxx...x\n"     SIZE bytes, keyless
 *              so a message's latency includes any time it waited to be
 *              written, not only the replication after it.
 *   readers    one per PART: open, read from its position in a loop; when
 *              read() returns 0 (the end, for now: partition files grow)
 *              sleep 200 us and read again. Latency of each line = the
 *              CLOCK_MONOTONIC after the read() that returned it - DUE_NS
 *              (the same clock on both sides: one machine).
 *
 * After the publisher is done, the readers get up to GRACE seconds to see
 * every message; then each checks once more that it is at the end and
 * stops. Every sequence number must have arrived exactly once.
 *
 * Output (stdout), times in microseconds:
 *   repl_lag_sent N  repl_lag_writes N  repl_lag_publish_rate_per_s X
 *   repl_lag_behind_max_us X       how late the publisher was, at worst
 *   repl_lag_msgs N                messages received (each seq counted once)
 *   repl_lag_missing N  repl_lag_dups N  repl_lag_bad N (unparsable lines)
 *   repl_lag_p50_us X  repl_lag_p99_us X  repl_lag_max_us X
 * Errors go to stderr, exit status 1; bad usage exits 2. Missing or
 * duplicated messages are reported, not an error: the caller judges.
 *
 * usage: repl_lag [-r RATE] [-t SECS] [-s SIZE] [-g GRACE] PUBLISH PART...
 *        defaults: RATE 10000/s, SECS 10, SIZE 100, GRACE 30
 * build: cc -std=c11 -Wall -Wextra -Werror -O2 -pthread repl_lag.c -o repl_lag
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 8192		/* messages per write(), at most */
#define READ_BYTES (1 << 20)
#define POLL_NS 200000		/* a reader at the end sleeps this long */

static long rate = 10000, secs = 10, size = 100, grace = 30;
static uint64_t total;		/* messages to publish */
static atomic_ullong received;	/* lines the readers parsed */
static atomic_int stop;		/* readers: stop at the next end */

struct pub {
	const char *path;
	uint64_t writes;
	int64_t behind_max, first_ns, last_ns;
	int err;
};

struct rec {
	uint64_t seq;
	int64_t lat;
};

struct reader {
	const char *path;
	pthread_t th;
	struct rec *v;
	size_t n, cap;
	uint64_t bad;
	int err;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
	struct timespec ts = { .tv_sec = t / 1000000000, .tv_nsec = t % 1000000000 };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void *publish(void *arg)
{
	struct pub *p = arg;
	char *buf = malloc((size_t)MAX_BATCH * size);
	int fd = open(p->path, O_WRONLY);
	int64_t t0 = now_ns();

	if (!buf || fd < 0) {
		p->err = errno ? errno : ENOMEM;
		fprintf(stderr, "repl_lag: %s: %s\n", p->path, strerror(p->err));
		goto out;
	}
	p->first_ns = t0;
	for (uint64_t i = 0; i < total;) {
		int64_t due = t0 + (int64_t)(i * 1000000000 / rate), now;
		uint64_t end;
		size_t len = 0;

		sleep_until(due);
		now = now_ns();
		if (now - due > p->behind_max)
			p->behind_max = now - due;
		/* everything due by now: the first message not due yet is the
		 * first j with t0 + j / rate > now */
		end = (uint64_t)(now - t0) * rate / 1000000000 + 1;
		if (end <= i)	/* due times are rounded down to whole ns */
			end = i + 1;
		if (end > total)
			end = total;
		if (end - i > MAX_BATCH)
			end = i + MAX_BATCH;
		for (; i < end; i++) {
			char *l = buf + len;
			int h = snprintf(l, (size_t)size, "%" PRIu64 " %" PRId64 " ", i,
					 t0 + (int64_t)(i * 1000000000 / rate));

			memset(l + h, 'x', (size_t)(size - 1 - h));
			l[size - 1] = '\n';
			len += (size_t)size;
		}
		for (size_t off = 0; off < len;) {
			ssize_t w = write(fd, buf + off, len - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				p->err = w < 0 ? errno : EIO;
				fprintf(stderr, "repl_lag: write %s: %s\n", p->path, strerror(p->err));
				goto out;
			}
			off += (size_t)w;
		}
		p->writes++;
		p->last_ns = now;
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static int push(struct reader *r, uint64_t seq, int64_t lat)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 4096;
		struct rec *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return -1;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = (struct rec){ seq, lat };
	return 0;
}

static void *follow(void *arg)
{
	struct reader *r = arg;
	char *buf = malloc(READ_BYTES);
	size_t have = 0;	/* bytes of an incomplete last line */
	int fd = open(r->path, O_RDONLY);
	const struct timespec poll = { 0, POLL_NS };

	if (!buf || fd < 0) {
		r->err = errno ? errno : ENOMEM;
		fprintf(stderr, "repl_lag: %s: %s\n", r->path, strerror(r->err));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, READ_BYTES - have);
		int64_t now;
		char *p, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r->err = errno;
			fprintf(stderr, "repl_lag: read %s: %s\n", r->path, strerror(r->err));
			break;
		}
		if (n == 0) {
			/* stop is checked only at the end, so that a reader
			 * drains what arrived before it was told to stop */
			if (atomic_load(&stop))
				break;
			nanosleep(&poll, NULL);
			continue;
		}
		now = now_ns();
		have += (size_t)n;
		for (p = buf; (nl = memchr(p, '\n', have - (size_t)(p - buf))); p = nl + 1) {
			char *e;
			uint64_t seq = strtoull(p, &e, 10);
			int64_t due = *e == ' ' ? strtoll(e + 1, &e, 10) : 0;

			if (*e != ' ' || due <= 0)
				r->bad++;
			else if (push(r, seq, now - due) < 0) {
				r->err = ENOMEM;
				goto out;
			}
			atomic_fetch_add(&received, 1);
		}
		have -= (size_t)(p - buf);
		memmove(buf, p, have);
		if (have == READ_BYTES) {
			r->err = EMSGSIZE;
			fprintf(stderr, "repl_lag: %s: a line longer than %d bytes\n", r->path, READ_BYTES);
			break;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* nearest rank: the smallest value with at least q of the values <= it */
static double pct_us(const int64_t *v, size_t n, double q)
{
	size_t k = (size_t)(q * (double)n + 0.999999);

	return n ? (double)v[k ? k - 1 : 0] / 1000.0 : 0;
}

int main(int argc, char **argv)
{
	struct pub pub = { 0 };
	struct reader *rd;
	pthread_t pt;
	int c, nr, fail = 0;

	while ((c = getopt(argc, argv, "r:t:s:g:")) != -1) {
		switch (c) {
		case 'r': rate = atol(optarg); break;
		case 't': secs = atol(optarg); break;
		case 's': size = atol(optarg); break;
		case 'g': grace = atol(optarg); break;
		default: goto usage;
		}
	}
	/* SIZE must hold "SEQ DUE_NS " (up to 41 bytes) and the '\n' */
	if (argc - optind < 2 || rate <= 0 || secs <= 0 || size < 48 || size > 65536 || grace < 0)
		goto usage;
	total = (uint64_t)rate * (uint64_t)secs;
	nr = argc - optind - 1;
	rd = calloc((size_t)nr, sizeof(*rd));
	if (!rd)
		return 1;
	/* readers first: they are following before the first message */
	for (int i = 0; i < nr; i++) {
		rd[i].path = argv[optind + 1 + i];
		if (pthread_create(&rd[i].th, NULL, follow, &rd[i]) != 0) {
			fprintf(stderr, "repl_lag: pthread_create failed\n");
			return 1;
		}
	}
	pub.path = argv[optind];
	if (pthread_create(&pt, NULL, publish, &pub) != 0) {
		fprintf(stderr, "repl_lag: pthread_create failed\n");
		return 1;
	}
	pthread_join(pt, NULL);
	for (int64_t end = now_ns() + (int64_t)grace * 1000000000;
	     atomic_load(&received) < total && now_ns() < end;)
		usleep(1000);
	atomic_store(&stop, 1);

	uint8_t *seen = calloc(total, 1);
	int64_t *lat;
	size_t nlat = 0, cap = 0;
	uint64_t missing = 0, dups = 0, bad = 0;

	for (int i = 0; i < nr; i++) {
		pthread_join(rd[i].th, NULL);
		cap += rd[i].n;
		fail |= rd[i].err != 0;
	}
	lat = malloc((cap ? cap : 1) * sizeof(*lat));
	if (!seen || !lat)
		return 1;
	for (int i = 0; i < nr; i++) {
		bad += rd[i].bad;
		for (size_t k = 0; k < rd[i].n; k++) {
			struct rec *x = &rd[i].v[k];

			if (x->seq >= total)
				bad++;
			else if (seen[x->seq]++)
				dups++;
			else
				lat[nlat++] = x->lat;
		}
	}
	for (uint64_t s = 0; s < total; s++)
		missing += !seen[s];
	qsort(lat, nlat, sizeof(*lat), cmp_i64);
	printf("repl_lag_sent %" PRIu64 "\n", total);
	printf("repl_lag_writes %" PRIu64 "\n", pub.writes);
	printf("repl_lag_publish_rate_per_s %.0f\n", pub.last_ns > pub.first_ns ?
	       (double)(total - 1) * 1e9 / (double)(pub.last_ns - pub.first_ns) : 0.0);
	printf("repl_lag_behind_max_us %.1f\n", (double)pub.behind_max / 1000.0);
	printf("repl_lag_msgs %zu\n", nlat);
	printf("repl_lag_missing %" PRIu64 "\n", missing);
	printf("repl_lag_dups %" PRIu64 "\n", dups);
	printf("repl_lag_bad %" PRIu64 "\n", bad);
	printf("repl_lag_p50_us %.1f\n", pct_us(lat, nlat, 0.50));
	printf("repl_lag_p99_us %.1f\n", pct_us(lat, nlat, 0.99));
	printf("repl_lag_max_us %.1f\n", nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0);
	return fail || pub.err ? 1 : 0;
usage:
	fprintf(stderr, "usage: repl_lag [-r RATE] [-t SECS] [-s SIZE] [-g GRACE] PUBLISH PART...\n");
	return 2;
}
