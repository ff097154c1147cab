/*
 * redis_streams.c - baseline for scripts/bench.sh: Redis Streams consumer
 * group throughput (lease + ack), to set next to mqfs's own lease+ack.
 *
 * Against a Redis server on 127.0.0.1:PORT:
 *   untimed  DEL s; MSGS x XADD s * m <100 bytes>, pipelined in batches of
 *            BATCH; check XLEN; XGROUP CREATE s g 0
 *   timed    WORKERS threads, each with its own connection and consumer
 *            name c1..cN, loop
 *                XREADGROUP GROUP g cK COUNT BATCH STREAMS s >
 *                XACK s g id1 ... idn          (every id just returned)
 *            until all MSGS are consumed (or the group has nothing left)
 *   untimed  check that exactly MSGS were consumed and none is pending
 *
 * Output (stdout), with WORKERS = 1:
 *   redis_streams_lease_ack_msgs_per_s N
 *   redis_streams_elapsed_s X
 * with WORKERS = W > 1:
 *   redis_streams_lease_ack_Ww_msgs_per_s N
 *   redis_streams_Ww_elapsed_s X
 * Any error (connection, unexpected reply type, miscount) goes to stderr
 * and the exit status is 1; bad usage exits 2.
 *
 * usage: redis_streams PORT MSGS [WORKERS]
 * build: gcc -O2 -Wall -Wextra -Werror redis_streams.c -o redis_streams \
 *            $(pkg-config --cflags --libs hiredis) -lpthread
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 1000		/* XADD pipeline depth and XREADGROUP COUNT */
#define PAYLOAD 100		/* bytes in field m */
#define MAX_WORKERS 64
#define STREAM "s"
#define GROUP "g"

static const char *host = "127.0.0.1";
static int port;
static unsigned long long msgs;
static atomic_ullong consumed;	/* by all workers together */
static pthread_barrier_t start;

static void err(const char *fmt, ...)
{
	va_list ap;

	fputs("redis_streams: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const char *type_name(int t)
{
	switch (t) {
	case REDIS_REPLY_STRING:  return "string";
	case REDIS_REPLY_ARRAY:   return "array";
	case REDIS_REPLY_INTEGER: return "integer";
	case REDIS_REPLY_NIL:     return "nil";
	case REDIS_REPLY_STATUS:  return "status";
	case REDIS_REPLY_ERROR:   return "error";
	default:                  return "unknown";
	}
}

/*
 * Complain about reply r of command what, which was expected to be of type
 * want. r may be NULL (I/O or protocol error on c).
 */
static void bad_reply(redisContext *c, const redisReply *r, const char *what,
		      int want)
{
	if (!r)
		err("%s: %s", what, c->errstr[0] ? c->errstr : "no reply");
	else if (r->type == REDIS_REPLY_ERROR)
		err("%s: server error: %.*s", what, (int)r->len, r->str);
	else
		err("%s: expected %s reply, got %s", what, type_name(want),
		    type_name(r->type));
}

/* A reply of type want (or NULL, already reported, after freeing it). */
static redisReply *expect(redisContext *c, void *reply, const char *what,
			  int want)
{
	redisReply *r = reply;

	if (r && r->type == want)
		return r;
	bad_reply(c, r, what, want);
	if (r)
		freeReplyObject(r);
	return NULL;
}

static redisContext *connect_to_redis(void)
{
	struct timeval tmo = { .tv_sec = 60 };
	redisContext *c = redisConnectWithTimeout(host, port, tmo);

	if (!c) {
		err("connect %s:%d: out of memory", host, port);
		return NULL;
	}
	if (c->err) {
		err("connect %s:%d: %s", host, port, c->errstr);
		redisFree(c);
		return NULL;
	}
	/* A command that hangs for a minute is an error, not a slow run. */
	if (redisSetTimeout(c, tmo) != REDIS_OK) {
		err("set timeout: %s", c->errstr);
		redisFree(c);
		return NULL;
	}
	return c;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Untimed: an empty stream s, MSGS entries long, and group g at 0. */
static int fill(redisContext *c)
{
	char payload[PAYLOAD];
	const char *argv[5] = { "XADD", STREAM, "*", "m", payload };
	size_t argvlen[5] = { 4, 1, 1, 1, PAYLOAD };
	unsigned long long done = 0;
	redisReply *r;

	for (size_t i = 0; i < PAYLOAD; i++)
		payload[i] = 'a' + i % 26;

	r = expect(c, redisCommand(c, "DEL %s", STREAM), "DEL",
		   REDIS_REPLY_INTEGER);
	if (!r)
		return -1;
	freeReplyObject(r);

	while (done < msgs) {
		unsigned long long n = msgs - done < BATCH ? msgs - done : BATCH;

		for (unsigned long long i = 0; i < n; i++)
			if (redisAppendCommandArgv(c, 5, argv, argvlen) !=
			    REDIS_OK) {
				err("XADD: %s", c->errstr);
				return -1;
			}
		for (unsigned long long i = 0; i < n; i++) {
			void *reply;

			if (redisGetReply(c, &reply) != REDIS_OK)
				reply = NULL;
			r = expect(c, reply, "XADD", REDIS_REPLY_STRING);
			if (!r)
				return -1;
			freeReplyObject(r);
		}
		done += n;
	}

	r = expect(c, redisCommand(c, "XLEN %s", STREAM), "XLEN",
		   REDIS_REPLY_INTEGER);
	if (!r)
		return -1;
	if (r->integer < 0 || (unsigned long long)r->integer != msgs) {
		err("XLEN %s: %lld entries, expected %llu", STREAM, r->integer,
		    msgs);
		freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);

	r = expect(c, redisCommand(c, "XGROUP CREATE %s %s 0", STREAM, GROUP),
		   "XGROUP CREATE", REDIS_REPLY_STATUS);
	if (!r)
		return -1;
	freeReplyObject(r);
	return 0;
}

/*
 * Check one XREADGROUP reply and collect the ids of its entries into
 * ids/idlen from index 3 on (0..2 are XACK s g). Returns the number of
 * entries (0 for a nil or empty reply: nothing left), or -1.
 */
static long collect_ids(const redisReply *r, const char **ids, size_t *idlen)
{
	const redisReply *s, *entries;

	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type == REDIS_REPLY_ERROR) {
		err("XREADGROUP: server error: %.*s", (int)r->len, r->str);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		err("XREADGROUP: expected array or nil reply, got %s",
		    type_name(r->type));
		return -1;
	}
	if (r->elements == 0)
		return 0;
	s = r->element[0];
	if (r->elements != 1 || s->type != REDIS_REPLY_ARRAY ||
	    s->elements != 2 || s->element[0]->type != REDIS_REPLY_STRING ||
	    s->element[1]->type != REDIS_REPLY_ARRAY) {
		err("XREADGROUP: expected [[stream, [entries]]]");
		return -1;
	}
	if (s->element[0]->len != strlen(STREAM) ||
	    memcmp(s->element[0]->str, STREAM, s->element[0]->len) != 0) {
		err("XREADGROUP: reply for stream %.*s, expected %s",
		    (int)s->element[0]->len, s->element[0]->str, STREAM);
		return -1;
	}
	entries = s->element[1];
	if (entries->elements > BATCH) {
		err("XREADGROUP: %zu entries, asked for at most %d",
		    entries->elements, BATCH);
		return -1;
	}
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i], *f;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_ARRAY) {
			err("XREADGROUP: entry %zu is not [id, [fields]]", i);
			return -1;
		}
		f = e->element[1];
		if (f->elements != 2 ||
		    f->element[0]->type != REDIS_REPLY_STRING ||
		    f->element[1]->type != REDIS_REPLY_STRING ||
		    f->element[1]->len != PAYLOAD) {
			err("XREADGROUP: entry %.*s is not m=<%d bytes>",
			    (int)e->element[0]->len, e->element[0]->str,
			    PAYLOAD);
			return -1;
		}
		ids[3 + i] = e->element[0]->str;
		idlen[3 + i] = e->element[0]->len;
	}
	return (long)entries->elements;
}

struct worker {
	pthread_t tid;
	int n;			/* consumer c<n> */
	redisContext *c;
	int failed;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	redisContext *c = w->c;
	char consumer[16];
	char count[16];
	const char *rargv[] = { "XREADGROUP", "GROUP", GROUP, consumer,
				"COUNT", count, "STREAMS", STREAM, ">" };
	size_t rargvlen[9];
	const int rargc = 9;
	const char *aargv[3 + BATCH] = { "XACK", STREAM, GROUP };
	size_t aargvlen[3 + BATCH] = { 4, strlen(STREAM), strlen(GROUP) };

	snprintf(consumer, sizeof consumer, "c%d", w->n);
	snprintf(count, sizeof count, "%d", BATCH);
	for (int i = 0; i < rargc; i++)
		rargvlen[i] = strlen(rargv[i]);

	w->failed = 1;
	pthread_barrier_wait(&start);
	while (atomic_load(&consumed) < msgs) {
		redisReply *rd, *ack;
		long n;

		rd = redisCommandArgv(c, rargc, rargv, rargvlen);
		if (!rd) {
			bad_reply(c, NULL, "XREADGROUP", REDIS_REPLY_ARRAY);
			return NULL;
		}
		n = collect_ids(rd, aargv, aargvlen);
		if (n <= 0) {
			freeReplyObject(rd);
			if (n < 0)
				return NULL;
			break;	/* the others took the rest */
		}
		ack = expect(c, redisCommandArgv(c, 3 + (int)n, aargv,
						 aargvlen),
			     "XACK", REDIS_REPLY_INTEGER);
		freeReplyObject(rd);
		if (!ack)
			return NULL;
		if (ack->integer != n) {
			err("XACK: %lld acknowledged, sent %ld ids",
			    ack->integer, n);
			freeReplyObject(ack);
			return NULL;
		}
		freeReplyObject(ack);
		atomic_fetch_add(&consumed, (unsigned long long)n);
	}
	w->failed = 0;
	return NULL;
}

/* Untimed: nothing may be left pending in the group. */
static int check_pending(redisContext *c)
{
	redisReply *r = expect(c, redisCommand(c, "XPENDING %s %s", STREAM,
					       GROUP),
			       "XPENDING", REDIS_REPLY_ARRAY);
	int rc = 0;

	if (!r)
		return -1;
	if (r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER) {
		err("XPENDING: expected [count, ...]");
		rc = -1;
	} else if (r->element[0]->integer != 0) {
		err("XPENDING: %lld entries still pending",
		    r->element[0]->integer);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

static int parse_num(const char *s, const char *what, unsigned long long min,
		     unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		err("bad %s '%s' (want an integer in %llu..%llu)", what, s,
		    min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long p, nw = 1;
	struct worker w[MAX_WORKERS];
	redisContext *c;
	double t0, el;
	int rc = 0, started = 0;
	char tag[32] = "";

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: redis_streams PORT MSGS [WORKERS]\n");
		return 2;
	}
	if (parse_num(argv[1], "PORT", 1, 65535, &p) ||
	    parse_num(argv[2], "MSGS", 1, (unsigned long long)LLONG_MAX,
		      &msgs) ||
	    (argc == 4 &&
	     parse_num(argv[3], "WORKERS", 1, MAX_WORKERS, &nw)))
		return 2;
	port = (int)p;

	c = connect_to_redis();
	if (!c)
		return 1;
	if (fill(c)) {
		redisFree(c);
		return 1;
	}

	/* Every worker is connected before the clock starts. */
	if (pthread_barrier_init(&start, NULL, (unsigned)nw + 1)) {
		err("pthread_barrier_init failed");
		redisFree(c);
		return 1;
	}
	for (unsigned long long i = 0; i < nw; i++) {
		w[i].n = (int)i + 1;
		w[i].failed = 1;
		w[i].c = connect_to_redis();
		if (!w[i].c) {
			rc = 1;
			break;
		}
	}
	if (rc) {
		/* w[] from the first failed one on has no connection */
		for (unsigned long long i = 0; i < nw && w[i].c; i++)
			redisFree(w[i].c);
		redisFree(c);
		return 1;
	}
	for (unsigned long long i = 0; i < nw; i++) {
		int e = pthread_create(&w[i].tid, NULL, work, &w[i]);

		if (e) {
			err("pthread_create: %s", strerror(e));
			/* the started ones wait at the barrier for ever */
			exit(1);
		}
		started++;
	}
	pthread_barrier_wait(&start);
	t0 = now();
	for (int i = 0; i < started; i++) {
		pthread_join(w[i].tid, NULL);
		if (w[i].failed)
			rc = 1;
	}
	el = now() - t0;
	for (int i = 0; i < started; i++)
		redisFree(w[i].c);
	pthread_barrier_destroy(&start);

	if (!rc && atomic_load(&consumed) != msgs) {
		err("consumed %llu messages, expected %llu",
		    atomic_load(&consumed), msgs);
		rc = 1;
	}
	if (!rc && check_pending(c))
		rc = 1;
	redisFree(c);
	if (rc)
		return 1;

	if (nw > 1)
		snprintf(tag, sizeof tag, "_%llu" "w", nw);
	printf("redis_streams_lease_ack%s_msgs_per_s %.0f\n", tag,
	       el > 0 ? (double)msgs / el : 0.0);
	printf("redis_streams%s_elapsed_s %.6f\n", tag, el);
	return 0;
}
