/*
 * lease_latency.c - publish -> next latency of mqfs at a steady rate, for
 * scripts/bench.sh (section latency).
 *
 * TOPIC_DIR is MNT/T of a fresh, empty topic; GROUP names a group of it
 * that exists. Threads:
 *
 *   publisher  one descriptor of TOPIC_DIR/publish, kept open. Message i is
 *              due at t0 + i / RATE (clock_nanosleep with an absolute
 *              CLOCK_MONOTONIC deadline; a late publisher does not sleep
 *              until it has caught up). Just before its write() it reads
 *              CLOCK_MONOTONIC and puts that into the message:
 *                  "SEQ SEND_NS xxx...x\n"    SIZE bytes, keyless (no TAB)
 *              one write() per message. With -p P, P publisher threads,
 *              each with its own descriptor, publish messages j, j + P, ...
 *              on the same schedule (for information: one writer whose
 *              write() waits for a group commit cannot reach a high rate).
 *              With -P, publisher j writes to the partition file
 *              TOPIC_DIR/j instead of TOPIC_DIR/publish.
 *              With -b N (one publisher only), messages go in groups of N
 *              consecutive sequence numbers (0..N-1, N..2N-1, ...; the last
 *              group may be shorter), one write() per group: the publisher
 *              sleeps until the LAST message of the group is due, then
 *              writes the group, each message still SIZE bytes. A message
 *              is stamped with its own due time, not the time of the
 *              write(), so its latency includes the wait for its group: up
 *              to (N - 1) / RATE, like a producer's linger (Kafka's
 *              linger.ms). That is the honest price of amortising one
 *              group commit over N messages; stamping the write() time
 *              would hide it.
 *   K readers  each loops: open TOPIC_DIR/groups/GROUP/next, read (blocks
 *              until a message is leased), note CLOCK_MONOTONIC, close,
 *              latency = that time - SEND_NS, write "P:OFF\n" to its own
 *              descriptor of .../ack (kept open).
 *
 * The first WARMUP messages are not counted; then COUNT are. When every
 * message has been received, the readers still blocked in read() are woken
 * by SIGUSR1 (EINTR; mqfs loses no message that way).
 *
 * Output (stdout), times in microseconds:
 *   latency_batch N                     messages per write() (-b)
 *   latency_msgs N                      counted messages
 *   latency_publish_rate_per_s X        achieved, over the counted messages:
 *                                       from the start of the write() of the
 *                                       first to that of the last (so with
 *                                       -b N the messages written with the
 *                                       first one are not in the numerator)
 *   latency_p50_us X  latency_p90_us X  latency_p99_us X  latency_p999_us X
 *   latency_max_us X
 *   latency_write_p50_us X  latency_write_p99_us X  latency_write_max_us X
 *                                       how long the publisher's write() took
 *                                       (per message: that of the write()
 *                                       that carried it)
 *   latency_behind_max_us X             how late the publisher fell behind
 *                                       its schedule, at worst (with -b N:
 *                                       the due time of a group's last
 *                                       message)
 * With -o FILE, also one line per message (warm-up included) to FILE:
 *   SEQ SEND_NS LATENCY_NS WRITE_NS     (SEND_NS: CLOCK_MONOTONIC; with
 *                                       -b N > 1 the message's due time)
 * Errors go to stderr, exit status 1; bad usage exits 2.
 *
 * usage: lease_latency [-r RATE] [-n COUNT] [-W WARMUP] [-k READERS] [-s SIZE]
 *                      [-p PUBLISHERS [-P] | -b N] [-K KEYS] [-o FILE] TOPIC_DIR GROUP
 *        -K KEYS: each message starts "kKEY<TAB>" with KEY = SEQ % KEYS, so the
 *        lines of one write() spread over the partitions (keyless lines of one
 *        write() all go to one partition, where `next` readers take them one
 *        after the other: a partition's leases belong to one reader at a time)
 *        defaults: RATE 10000/s, COUNT 20000, WARMUP 2000, READERS 4, SIZE 100,
 *        PUBLISHERS 1, N 1 (with both, the groups of N consecutive messages
 *        go round the publishers: publisher j writes groups j, j + P, ...)
 * build: cc -std=c11 -Wall -Wextra -Werror -O2 -pthread lease_latency.c -o lease_latency
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_READERS 64
#define MAX_PUBLISHERS 64
#define MAX_BATCH 10000
#define MAX_WRITE (64 << 20)	/* -b N x SIZE at most: one buffer of the publisher */
#define END_GRACE_S 30		/* after the last publish, how long to wait for the rest */

static char pub_path[PATH_MAX], next_path[PATH_MAX], ack_path[PATH_MAX];
static unsigned long long rate = 10000, count = 20000, warmup = 2000, total;
static unsigned long long size = 100;
static unsigned long long npub = 1;
static unsigned long long batch = 1;	/* -b: messages per write() */
static unsigned long long keys;		/* -K: keyed messages, this many keys */
static int to_parts;		/* -P */
static char tdir_path[PATH_MAX];
static const char *dump;	/* -o */
static int64_t t0;		/* message i is due at t0 + i * period */

static int64_t *send_ns;	/* by seq: CLOCK_MONOTONIC before the write() (-b > 1: due time) */
static int64_t *start_ns;	/* by seq: when the write() that carried it began */
static int64_t *recv_ns;	/* by seq: when a reader had it; 0 = not yet */
static int64_t *write_ns;	/* by seq: how long the write() took */
static atomic_ullong received;
static atomic_int failed;

static void err(const char *fmt, ...)
{
	va_list ap;

	fputs("lease_latency: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_usr1(int sig)
{
	(void)sig;	/* only there to interrupt read() */
}

struct publisher {
	pthread_t tid;
	unsigned long long first;	/* publishes first, first + npub, ... */
	char path[PATH_MAX + 32];	/* publish, or the partition file */
	int64_t behind_max;		/* latest start after a due time */
};

static void *publisher(void *arg)
{
	struct publisher *pb = arg;
	char *msg = malloc(batch * size);	/* room for one group (-b) */
	int64_t period = 1000000000 / (int64_t)rate;
	int fd;

	if (!msg) {
		err("out of memory");
		goto fail;
	}
	memset(msg, 'x', batch * size);
	for (unsigned long long k = 1; k <= batch; k++)
		msg[k * size - 1] = '\n';
	fd = open(pb->path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		err("open %s: %s", pb->path, strerror(errno));
		goto fail;
	}
	/* -b > 1 only with one publisher (main), so the stride is either npub or batch */
	for (unsigned long long i = pb->first; i < total && !atomic_load(&failed); i += npub * batch) {
		/* messages i .. e - 1 go in one write(), when e - 1, the last, is due */
		unsigned long long e = total - i > batch ? i + batch : total;
		int64_t due = t0 + (int64_t)(e - 1) * period, t, t1;
		struct timespec ts = { due / 1000000000, due % 1000000000 };
		size_t wlen = (e - i) * size;
		ssize_t n;

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		t = now_ns();
		if (e - 1 >= warmup && t - due > pb->behind_max)
			pb->behind_max = t - due;
		for (unsigned long long j = i; j < e; j++) {
			/*
			 * One message per write(): the time just before it, as
			 * always. A group: each message's own due time, so its
			 * latency includes waiting for the rest of the group
			 * (the linger), not only the write() and the lease.
			 */
			int64_t stamp = batch == 1 ? t : t0 + (int64_t)j * period;
			char *m = msg + (j - i) * size;
			/* -K: "kKEY<TAB>" first, so the lines of one write
			 * spread over the partitions as keyed traffic does
			 * (keyless lines of one write() all go to one). */
			int len = keys ? snprintf(m, size, "k%llu\t%llu %" PRId64 " ", j % keys, j, stamp)
				       : snprintf(m, size, "%llu %" PRId64 " ", j, stamp);

			m[len] = 'x';	/* over snprintf's '\0' */
			send_ns[j] = stamp;
			start_ns[j] = t;
		}
		do
			n = write(fd, msg, wlen);
		while (n < 0 && errno == EINTR);
		t1 = now_ns();
		if (n != (ssize_t)wlen) {
			err("write %s: %s", pb->path, n < 0 ? strerror(errno) : "short write");
			close(fd);
			goto fail;
		}
		for (unsigned long long j = i; j < e; j++)
			write_ns[j] = t1 - t;
	}
	if (close(fd) < 0) {
		err("close %s: %s", pb->path, strerror(errno));
		goto fail;
	}
	free(msg);
	return NULL;
fail:
	free(msg);
	atomic_store(&failed, 1);
	return NULL;
}

struct reader {
	pthread_t tid;
	int n;
	int afd;
	int exited;
};

/* One message "P:OFF<TAB>SEQ SEND_NS x...\n" read at t: note it, ack it. */
static int got(struct reader *r, const char *b, size_t len, int64_t t)
{
	char ack[64];
	const char *tab = memchr(b, '\t', len);
	unsigned long long seq;
	char *end;
	size_t il;

	if (!tab || len < 2 || b[len - 1] != '\n' || (il = (size_t)(tab - b)) + 1 > sizeof ack) {
		err("reader %d: malformed message: %.*s", r->n, (int)(len > 60 ? 60 : len), b);
		return -1;
	}
	errno = 0;
	if (tab[1] == 'k') {	/* -K: the key comes first */
		const char *kt = memchr(tab + 1, '\t', len - il - 1);

		if (!kt) {
			err("reader %d: no tab after the key: %.*s", r->n, (int)(len > 60 ? 60 : len), b);
			return -1;
		}
		tab = kt;
	}
	seq = strtoull(tab + 1, &end, 10);
	if (errno || end == tab + 1 || *end != ' ' || seq >= total) {
		err("reader %d: no sequence number in: %.*s", r->n, (int)(len > 60 ? 60 : len), b);
		return -1;
	}
	if (recv_ns[seq]) {
		err("reader %d: message %llu (%.*s) received twice", r->n, seq, (int)il, b);
		return -1;
	}
	recv_ns[seq] = t;
	memcpy(ack, b, il);
	ack[il] = '\n';
	if (write(r->afd, ack, il + 1) != (ssize_t)(il + 1)) {
		err("reader %d: ack %.*s: %s", r->n, (int)il, b, strerror(errno));
		return -1;
	}
	atomic_fetch_add(&received, 1);
	return 0;
}

static void *reader(void *arg)
{
	struct reader *r = arg;
	char buf[65536];

	while (atomic_load(&received) < total && !atomic_load(&failed)) {
		int fd = open(next_path, O_RDONLY | O_CLOEXEC);
		ssize_t n;
		int64_t t;

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			err("reader %d: open %s: %s", r->n, next_path, strerror(errno));
			goto fail;
		}
		n = read(fd, buf, sizeof buf);
		t = now_ns();
		if (n < 0 && errno == EINTR) {
			close(fd);
			continue;	/* woken at the end, or a stray signal */
		}
		if (n <= 0) {
			err("reader %d: read %s: %s", r->n, next_path,
			    n < 0 ? strerror(errno) : "end of file before a message");
			close(fd);
			goto fail;
		}
		if (close(fd) < 0) {
			err("reader %d: close %s: %s", r->n, next_path, strerror(errno));
			goto fail;
		}
		if (got(r, buf, (size_t)n, t))
			goto fail;
	}
	return NULL;
fail:
	atomic_store(&failed, 1);
	return NULL;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..1] of sorted v[n], in µs. */
static double pct(const int64_t *v, size_t n, double q)
{
	size_t k = (size_t)(q * (double)n + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1e3;
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
	fprintf(stderr, "usage: lease_latency [-r RATE] [-n COUNT] [-W WARMUP] [-k READERS] [-s SIZE] "
		"[-p PUBLISHERS [-P] | -b N] [-K KEYS] [-o FILE] TOPIC_DIR GROUP\n");
}

int main(int argc, char **argv)
{
	unsigned long long nr = 4;
	struct reader r[MAX_READERS];
	struct publisher pub[MAX_PUBLISHERS];
	int64_t behind_max = 0, first = 0, last = 0;
	unsigned long long in_first;	/* counted messages in the first counted write() */
	struct sigaction sa;
	int64_t *lat, *wr, deadline = 0;
	int opt, live, rc = 0;
	const char *tdir, *group;

	while ((opt = getopt(argc, argv, "r:n:W:k:s:p:Pb:K:o:")) != -1) {
		int bad = 0;

		switch (opt) {
		case 'r': bad = parse_num(optarg, "RATE", 1, 1000000000, &rate); break;
		case 'n': bad = parse_num(optarg, "COUNT", 1, 100000000, &count); break;
		case 'W': bad = parse_num(optarg, "WARMUP", 0, 100000000, &warmup); break;
		case 'k': bad = parse_num(optarg, "READERS", 1, MAX_READERS, &nr); break;
		case 's': bad = parse_num(optarg, "SIZE", 64, 1 << 20, &size); break;
		case 'p': bad = parse_num(optarg, "PUBLISHERS", 1, MAX_PUBLISHERS, &npub); break;
		case 'P': to_parts = 1; break;
		case 'b': bad = parse_num(optarg, "N (messages per write)", 1, MAX_BATCH, &batch); break;
		case 'K': bad = parse_num(optarg, "KEYS", 1, 1000000, &keys); break;
		case 'o': dump = optarg; break;
		default: bad = 1; usage(); break;
		}
		if (bad)
			return 2;
	}
	if (argc - optind != 2) {
		usage();
		return 2;
	}
	if (batch * size > MAX_WRITE) {
		err("-b %llu x -s %llu: a write() of more than %d bytes", batch, size, MAX_WRITE);
		return 2;
	}
	tdir = argv[optind];
	snprintf(tdir_path, sizeof tdir_path, "%s", tdir);
	group = argv[optind + 1];
	if ((size_t)snprintf(pub_path, sizeof pub_path, "%s/publish", tdir) >= sizeof pub_path ||
	    (size_t)snprintf(next_path, sizeof next_path, "%s/groups/%s/next", tdir, group) >=
		    sizeof next_path ||
	    (size_t)snprintf(ack_path, sizeof ack_path, "%s/groups/%s/ack", tdir, group) >=
		    sizeof ack_path) {
		err("path too long: %s", tdir);
		return 2;
	}
	total = warmup + count;
	send_ns = calloc(total, sizeof *send_ns);
	start_ns = calloc(total, sizeof *start_ns);
	recv_ns = calloc(total, sizeof *recv_ns);
	write_ns = calloc(total, sizeof *write_ns);
	if (!send_ns || !start_ns || !recv_ns || !write_ns) {
		err("out of memory");
		return 1;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;	/* no SA_RESTART: read() returns EINTR */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0) {
		err("sigaction: %s", strerror(errno));
		return 1;
	}

	memset(r, 0, sizeof r);
	for (unsigned long long i = 0; i < nr; i++) {
		r[i].n = (int)i + 1;
		r[i].afd = open(ack_path, O_WRONLY | O_CLOEXEC);
		if (r[i].afd < 0) {
			err("open %s: %s", ack_path, strerror(errno));
			return 1;
		}
	}
	for (unsigned long long i = 0; i < nr; i++) {
		int e = pthread_create(&r[i].tid, NULL, reader, &r[i]);

		if (e) {
			err("pthread_create: %s", strerror(e));
			exit(1);
		}
	}
	memset(pub, 0, sizeof pub);
	t0 = now_ns() + 10000000;	/* 10 ms from now */
	for (unsigned long long i = 0; i < npub; i++) {
		pub[i].first = i * batch;	/* groups go round the publishers */
		if (to_parts)
			snprintf(pub[i].path, sizeof pub[i].path, "%s/%llu", tdir_path, i);
		else
			snprintf(pub[i].path, sizeof pub[i].path, "%s", pub_path);
		if (pthread_create(&pub[i].tid, NULL, publisher, &pub[i])) {
			err("pthread_create failed");
			exit(1);
		}
	}
	for (unsigned long long i = 0; i < npub; i++) {
		pthread_join(pub[i].tid, NULL);
		if (pub[i].behind_max > behind_max)
			behind_max = pub[i].behind_max;
	}

	/* Wait for the readers; wake those blocked in read() at the end. */
	for (live = (int)nr; live > 0;) {
		struct timespec nap = { 0, 2000000 };
		int stop = atomic_load(&failed) || atomic_load(&received) >= total;

		if (!deadline)
			deadline = now_ns() + (int64_t)END_GRACE_S * 1000000000;
		if (!stop && now_ns() > deadline) {
			err("%llu of %llu messages received %d s after the last publish",
			    atomic_load(&received), total, END_GRACE_S);
			atomic_store(&failed, 1);
			stop = 1;
		}
		nanosleep(&nap, NULL);
		live = 0;
		for (unsigned long long i = 0; i < nr; i++) {
			if (r[i].exited)
				continue;
			if (pthread_tryjoin_np(r[i].tid, NULL) == 0) {
				r[i].exited = 1;
				continue;
			}
			live++;
			if (stop)
				pthread_kill(r[i].tid, SIGUSR1);
		}
	}
	for (unsigned long long i = 0; i < nr; i++)
		if (close(r[i].afd) < 0) {
			err("close %s: %s", ack_path, strerror(errno));
			rc = 1;
		}
	if (atomic_load(&failed) || rc)
		return 1;

	if (dump) {
		FILE *f = fopen(dump, "w");

		if (!f) {
			err("%s: %s", dump, strerror(errno));
			return 1;
		}
		for (unsigned long long i = 0; i < total; i++)
			fprintf(f, "%llu %" PRId64 " %" PRId64 " %" PRId64 "\n", i, send_ns[i],
				recv_ns[i] - send_ns[i], write_ns[i]);
		if (fclose(f)) {
			err("%s: %s", dump, strerror(errno));
			return 1;
		}
	}
	lat = malloc(count * sizeof *lat);
	wr = malloc(count * sizeof *wr);
	if (!lat || !wr) {
		err("out of memory");
		return 1;
	}
	for (unsigned long long i = 0; i < count; i++) {
		lat[i] = recv_ns[warmup + i] - send_ns[warmup + i];
		wr[i] = write_ns[warmup + i];
		/* when the write()s began, not send_ns: with -b > 1 those are
		 * the due times, whose rate is RATE whether or not it was met */
		if (!i || start_ns[warmup + i] < first)
			first = start_ns[warmup + i];
		if (!i || start_ns[warmup + i] > last)
			last = start_ns[warmup + i];
	}
	/*
	 * The messages of the first counted write() went at `first`: only
	 * those written after it count towards the rate. Groups start at
	 * multiples of -b (one publisher); with -b 1 this is the one message,
	 * (count - 1) / (last - first) as ever.
	 */
	in_first = warmup - warmup % batch + batch;
	in_first = (in_first < total ? in_first : total) - warmup;
	qsort(lat, count, sizeof *lat, cmp64);
	qsort(wr, count, sizeof *wr, cmp64);
	printf("latency_batch %llu\n", batch);
	printf("latency_msgs %llu\n", count);
	printf("latency_publish_rate_per_s %.0f\n", count > in_first && last > first ?
	       (double)(count - in_first) * 1e9 / (double)(last - first) : 0.0);
	printf("latency_p50_us %.1f\n", pct(lat, count, 0.50));
	printf("latency_p90_us %.1f\n", pct(lat, count, 0.90));
	printf("latency_p99_us %.1f\n", pct(lat, count, 0.99));
	printf("latency_p999_us %.1f\n", pct(lat, count, 0.999));
	printf("latency_max_us %.1f\n", (double)lat[count - 1] / 1e3);
	printf("latency_write_p50_us %.1f\n", pct(wr, count, 0.50));
	printf("latency_write_p99_us %.1f\n", pct(wr, count, 0.99));
	printf("latency_write_max_us %.1f\n", (double)wr[count - 1] / 1e3);
	printf("latency_behind_max_us %.1f\n", (double)behind_max / 1e3);
	free(lat);
	free(wr);
	return 0;
}
