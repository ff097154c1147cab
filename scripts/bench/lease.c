/*
 * lease.c - lease+ack throughput of an mqfs consumer group, for
 * scripts/bench.sh (section lease), to set next to the Redis Streams
 * baseline (scripts/bench/redis_streams.c).
 *
 * GROUP_DIR is MNT/T/groups/G of a topic that holds at least MSGS messages
 * nobody has consumed. WORKERS threads, each with its own descriptor of
 * GROUP_DIR/batch (so each is its own consumer), loop:
 *
 *     read(batch, 1 MiB buffer)       as many whole `P:OFF<TAB>LINE\n`
 *                                     records as fit, each leased
 *     write(ack, "P:OFF\n" x n)       every id of that read, ONE write
 *
 * until MSGS messages are acked, all workers together. A record split
 * across reads (a message longer than the buffer) is carried over and
 * acked once it is whole.
 *
 * The clock starts when every worker has opened its descriptors and stops
 * when the write() of the ack that reaches MSGS returns. The workers that
 * are then blocked in read() (nothing left to lease) are woken by SIGUSR1
 * (EINTR; mqfs loses no message that way) until all have exited.
 *
 * -a keep   (default) each worker keeps one ack descriptor open
 * -a open   each ack write opens, writes and closes GROUP_DIR/ack
 * -b BYTES  the read size (default 1048576)
 * -l LEN    check that every LINE is LEN bytes long (default: no check)
 *
 * Output (stdout):
 *   lease_ack_msgs_per_s N
 *   lease_elapsed_s X
 *   lease_reads N                  batch reads that returned messages
 *   lease_ack_writes N
 *   lease_msgs_per_read X
 * Errors go to stderr, exit status 1; bad usage exits 2.
 *
 * usage: lease [-w WORKERS] [-a keep|open] [-b BYTES] [-l LEN] GROUP_DIR MSGS
 * build: cc -std=c11 -Wall -Wextra -Werror -O2 -pthread lease.c -o lease
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64
#define ID_MAX 32		/* "P:OFF\n": 10 + 1 + 20 + 1 digits, colon, '\n' */

static const char *dir;
static char batch_path[PATH_MAX], ack_path[PATH_MAX];
static unsigned long long msgs;
static size_t bufsize = 1 << 20;
static long line_len = -1;	/* -l: expected LINE length, -1 = any */
static int ack_per_open;	/* -a open */

static atomic_ullong acked;	/* all workers together */
static atomic_int done;		/* acked reached msgs */
static atomic_int failed;
static struct timespec t_end;	/* when acked reached msgs; set once */
static pthread_barrier_t start;

struct worker {
	pthread_t tid;
	int n;
	int bfd, afd;
	char *rbuf;		/* bufsize bytes */
	char *abuf;		/* the ids of one read */
	size_t alen, acap;
	char *carry;		/* the start of a record split across reads */
	size_t clen, ccap;
	unsigned long long reads, writes;
	int exited;
};

static void err(const char *fmt, ...)
{
	va_list ap;

	fputs("lease: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static double secs(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void on_usr1(int sig)
{
	(void)sig;	/* only there to interrupt read() */
}

static int grow(char **p, size_t *cap, size_t need)
{
	size_t c = *cap ? *cap : 4096;
	char *np;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	np = realloc(*p, c);
	if (!np) {
		err("out of memory");
		return -1;
	}
	*p = np;
	*cap = c;
	return 0;
}

/* One whole record `P:OFF<TAB>LINE\n` (len bytes with the '\n'): queue its id. */
static int record(struct worker *w, const char *r, size_t len)
{
	const char *e = r + len, *p = r, *tab;
	int digits = 0;

	while (p < e && *p >= '0' && *p <= '9')
		p++, digits++;
	if (!digits || p == e || *p++ != ':')
		goto bad;
	digits = 0;
	while (p < e && *p >= '0' && *p <= '9')
		p++, digits++;
	if (!digits || p == e || *p != '\t')
		goto bad;
	tab = p;
	if (tab - r + 1 > ID_MAX)
		goto bad;
	if (line_len >= 0 && (long)(e - tab - 2) != line_len) {
		err("worker %d: record %.*s has a line of %ld bytes, expected %ld", w->n,
		    (int)(tab - r), r, (long)(e - tab - 2), line_len);
		return -1;
	}
	if (w->alen + ID_MAX > w->acap && grow(&w->abuf, &w->acap, w->alen + ID_MAX))
		return -1;
	memcpy(w->abuf + w->alen, r, (size_t)(tab - r));
	w->alen += (size_t)(tab - r);
	w->abuf[w->alen++] = '\n';
	return 0;
bad:
	err("worker %d: malformed record: %.*s", w->n, (int)(len > 60 ? 60 : len), r);
	return -1;
}

/* Split what one read returned into records; keep a partial last one. */
static int parse(struct worker *w, const char *b, size_t n)
{
	const char *p = b, *end = b + n, *nl;

	if (w->clen) {
		nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl + 1 - p) : n;

		if (grow(&w->carry, &w->ccap, w->clen + k))
			return -1;
		memcpy(w->carry + w->clen, p, k);
		w->clen += k;
		if (!nl)
			return 0;
		if (record(w, w->carry, w->clen))
			return -1;
		w->clen = 0;
		p = nl + 1;
	}
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl) {
			if (grow(&w->carry, &w->ccap, (size_t)(end - p)))
				return -1;
			memcpy(w->carry, p, (size_t)(end - p));
			w->clen = (size_t)(end - p);
			break;
		}
		if (record(w, p, (size_t)(nl + 1 - p)))
			return -1;
		p = nl + 1;
	}
	return 0;
}

static int write_all(int fd, const char *b, size_t n)
{
	while (n) {
		ssize_t k = write(fd, b, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Ack the ids queued by the last read: one write. */
static int ack(struct worker *w)
{
	int fd = w->afd, rc;
	unsigned long long ids = 0, before;

	for (size_t i = 0; i < w->alen; i++)
		ids += w->abuf[i] == '\n';
	if (ack_per_open) {
		fd = open(ack_path, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			err("worker %d: open %s: %s", w->n, ack_path, strerror(errno));
			return -1;
		}
	}
	rc = write_all(fd, w->abuf, w->alen);
	if (rc)
		err("worker %d: write %zu bytes (%llu ids) to %s: %s", w->n, w->alen, ids,
		    ack_path, strerror(errno));
	if (ack_per_open && close(fd) < 0 && !rc) {
		err("worker %d: close %s: %s", w->n, ack_path, strerror(errno));
		rc = -1;
	}
	if (rc)
		return -1;
	w->writes++;
	w->alen = 0;
	before = atomic_fetch_add(&acked, ids);
	if (before < msgs && before + ids >= msgs) {
		clock_gettime(CLOCK_MONOTONIC, &t_end);
		atomic_store(&done, 1);
	}
	return 0;
}

static void *work(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(&start);
	while (!atomic_load(&done) && !atomic_load(&failed)) {
		ssize_t n = read(w->bfd, w->rbuf, bufsize);

		if (n < 0 && errno == EINTR)
			continue;	/* woken at the end, or a stray signal */
		if (n < 0) {
			err("worker %d: read %s: %s", w->n, batch_path, strerror(errno));
			goto fail;
		}
		if (n == 0) {
			err("worker %d: %s returned end of file", w->n, batch_path);
			goto fail;
		}
		w->reads++;
		if (parse(w, w->rbuf, (size_t)n))
			goto fail;
		if (w->alen && ack(w))
			goto fail;
	}
	if (w->clen && !atomic_load(&failed)) {
		err("worker %d: a partial record of %zu bytes at the end", w->n, w->clen);
		goto fail;
	}
	return NULL;
fail:
	atomic_store(&failed, 1);
	return NULL;
}

static int parse_num(const char *s, const char *what, unsigned long long min,
		     unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		err("bad %s '%s' (want an integer in %llu..%llu)", what, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: lease [-w WORKERS] [-a keep|open] [-b BYTES] [-l LEN] GROUP_DIR MSGS\n");
}

int main(int argc, char **argv)
{
	unsigned long long nw = 1, v;
	struct worker w[MAX_WORKERS];
	struct sigaction sa;
	struct timespec t0;
	unsigned long long reads = 0, writes = 0;
	int opt, live, rc = 0;
	double el;

	while ((opt = getopt(argc, argv, "w:a:b:l:")) != -1) {
		switch (opt) {
		case 'w':
			if (parse_num(optarg, "WORKERS", 1, MAX_WORKERS, &nw))
				return 2;
			break;
		case 'a':
			if (strcmp(optarg, "keep") && strcmp(optarg, "open")) {
				usage();
				return 2;
			}
			ack_per_open = !strcmp(optarg, "open");
			break;
		case 'b':
			if (parse_num(optarg, "BYTES", 64, 1 << 30, &v))
				return 2;
			bufsize = (size_t)v;
			break;
		case 'l':
			if (parse_num(optarg, "LEN", 0, LONG_MAX, &v))
				return 2;
			line_len = (long)v;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (argc - optind != 2) {
		usage();
		return 2;
	}
	dir = argv[optind];
	if (parse_num(argv[optind + 1], "MSGS", 1, ULLONG_MAX / 2, &msgs))
		return 2;
	if ((size_t)snprintf(batch_path, sizeof batch_path, "%s/batch", dir) >= sizeof batch_path ||
	    (size_t)snprintf(ack_path, sizeof ack_path, "%s/ack", dir) >= sizeof ack_path) {
		err("path too long: %s", dir);
		return 2;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;	/* no SA_RESTART: read() returns EINTR */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0) {
		err("sigaction: %s", strerror(errno));
		return 1;
	}

	/* Every worker has its descriptors and buffers before the clock starts. */
	memset(w, 0, sizeof w);
	for (unsigned long long i = 0; i < nw; i++) {
		w[i].n = (int)i + 1;
		w[i].afd = -1;
		w[i].bfd = open(batch_path, O_RDONLY | O_CLOEXEC);
		if (w[i].bfd < 0) {
			err("open %s: %s", batch_path, strerror(errno));
			return 1;
		}
		if (!ack_per_open) {
			w[i].afd = open(ack_path, O_WRONLY | O_CLOEXEC);
			if (w[i].afd < 0) {
				err("open %s: %s", ack_path, strerror(errno));
				return 1;
			}
		}
		w[i].rbuf = malloc(bufsize);
		if (!w[i].rbuf || grow(&w[i].abuf, &w[i].acap, 1 << 20)) {
			err("out of memory");
			return 1;
		}
		memset(w[i].rbuf, 0, bufsize);	/* touched before the clock starts */
		memset(w[i].abuf, 0, w[i].acap);
	}
	if (pthread_barrier_init(&start, NULL, (unsigned)nw + 1)) {
		err("pthread_barrier_init failed");
		return 1;
	}
	for (unsigned long long i = 0; i < nw; i++) {
		int e = pthread_create(&w[i].tid, NULL, work, &w[i]);

		if (e) {
			err("pthread_create: %s", strerror(e));
			exit(1);	/* the started ones wait at the barrier for ever */
		}
	}
	pthread_barrier_wait(&start);
	clock_gettime(CLOCK_MONOTONIC, &t0);

	/* Wait for the end; then wake whoever is blocked in read(). */
	for (live = (int)nw; live > 0;) {
		struct timespec nap = { 0, 2000000 };

		nanosleep(&nap, NULL);
		live = 0;
		for (unsigned long long i = 0; i < nw; i++) {
			if (w[i].exited)
				continue;
			if (pthread_tryjoin_np(w[i].tid, NULL) == 0) {
				w[i].exited = 1;
				continue;
			}
			live++;
			if (atomic_load(&done) || atomic_load(&failed))
				pthread_kill(w[i].tid, SIGUSR1);
		}
	}
	if (atomic_load(&failed))
		rc = 1;
	for (unsigned long long i = 0; i < nw; i++) {
		if (close(w[i].bfd) < 0) {
			err("close %s: %s", batch_path, strerror(errno));
			rc = 1;
		}
		if (w[i].afd >= 0 && close(w[i].afd) < 0) {
			err("close %s: %s", ack_path, strerror(errno));
			rc = 1;
		}
		reads += w[i].reads;
		writes += w[i].writes;
		free(w[i].rbuf);
		free(w[i].abuf);
		free(w[i].carry);
	}
	pthread_barrier_destroy(&start);
	if (rc)
		return 1;
	if (atomic_load(&acked) != msgs) {
		err("acked %llu messages, expected %llu (more than were published?)",
		    atomic_load(&acked), msgs);
		return 1;
	}
	el = secs(&t0, &t_end);
	printf("lease_ack_msgs_per_s %.0f\n", el > 0 ? (double)msgs / el : 0.0);
	printf("lease_elapsed_s %.6f\n", el);
	printf("lease_reads %llu\n", reads);
	printf("lease_ack_writes %llu\n", writes);
	printf("lease_msgs_per_read %.1f\n", reads ? (double)msgs / (double)reads : 0.0);
	return 0;
}
