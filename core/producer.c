/*
 * producer.c - line assembly, routing, batched appends, sync policy.
 */
#define _GNU_SOURCE
#include "producer.h"
#include "config.h"
#include "partition.h"
#include "topic.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct prod {
	pthread_mutex_t lock;		/* serializes writes on one file */
	struct topic *t;		/* a reference; immutable */
	struct commit *commit;		/* borrowed; immutable */
	int part;			/* target partition, -1 = route by key */
	uint64_t rr;			/* writes so far: picks the keyless partition; lock */
	uint32_t keyless;		/* partition of this write's keyless lines; lock */
	char *partial;			/* last line so far, no '\n'; lock */
	size_t plen, pcap;		/* lock; plen <= max_message, plen < pcap */
	int refused;			/* a line was refused: EMSGSIZE for good; lock */
	uint64_t wrote[MQ_MAX_PARTITIONS / 64];	/* partitions appended to; lock */
	unsigned nheld;			/* writes held back by max_bytes; lock */
};

struct line {
	const char *p;
	uint32_t len;		/* without '\n' */
	uint32_t part;
};

/* Per-thread batch space: freed by the key destructor when a thread ends. */
struct scratch {
	struct line *lines;
	size_t lcap;
	char *buf;
	size_t bcap;
	size_t pbytes[MQ_MAX_PARTITIONS];	/* bytes routed to each partition */
	size_t pfill[MQ_MAX_PARTITIONS];	/* copy cursor per partition */
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct scratch *s = p;

	free(s->lines);
	free(s->buf);
	free(s);
}

static void scratch_init(void)
{
	(void)pthread_key_create(&scratch_key, scratch_free);
}

static struct scratch *scratch_get(size_t nlines, size_t bytes)
{
	struct scratch *s;

	pthread_once(&scratch_once, scratch_init);
	s = pthread_getspecific(scratch_key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || pthread_setspecific(scratch_key, s)) {
			free(s);
			return NULL;
		}
	}
	if (s->lcap < nlines) {
		struct line *l = realloc(s->lines, nlines * sizeof(*l));

		if (!l)
			return NULL;
		s->lines = l;
		s->lcap = nlines;
	}
	if (s->bcap < bytes) {
		char *b = realloc(s->buf, bytes);

		if (!b)
			return NULL;
		s->buf = b;
		s->bcap = bytes;
	}
	return s;
}

int prod_open(struct topic *t, int part, struct commit *c, struct prod **out)
{
	struct prod *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return -ENOMEM;
	pthread_mutex_init(&pr->lock, NULL);
	topic_ref(t);
	pr->t = t;
	pr->commit = c;
	pr->part = part;
	pr->rr = topic_rr_start(t);
	*out = pr;
	return 0;
}

void prod_close(struct prod *pr)
{
	if (!pr)
		return;
	topic_unref(pr->t);
	free(pr->partial);
	pthread_mutex_destroy(&pr->lock);
	free(pr);
}

static void finish(struct prod_req *rq, ssize_t result)
{
	free(rq->held);
	rq->held = NULL;
	rq->done(rq, result);
}

/* rq no longer counts as held back. pr->lock held. */
static void uncount(struct prod *pr, struct prod_req *rq)
{
	if (rq->counted) {
		pr->nheld--;
		rq->counted = 0;
	}
}

/*
 * The next partition at or after *i in a partition bit set, or -1: the hot
 * path visits only the partitions a write touched, not all 1024.
 */
static int next_bit(const uint64_t *set, uint32_t *i)
{
	while (*i < MQ_MAX_PARTITIONS) {
		uint64_t word = set[*i / 64] >> (*i % 64);

		if (word) {
			*i += (uint32_t)__builtin_ctzll(word);
			return 0;
		}
		*i = (*i / 64 + 1) * 64;
	}
	return -1;
}

#define FOR_EACH_BIT(set, i) for (uint32_t i = 0; next_bit((set), &i) == 0; i++)

static void commit_done(struct commit_wait *w)
{
	struct prod_req *rq = (struct prod_req *)((char *)w - offsetof(struct prod_req, w));
	struct topic *t = rq->t;
	ssize_t result = rq->result;

	FOR_EACH_BIT(rq->touched, i)
		if (part_error(topic_part(t, i)) < 0)
			result = -EIO;
	rq->t = NULL;
	rq->done(rq, result);	/* may free rq */
	topic_unref(t);
}

/*
 * Make the appends of rq durable as c->sync says, then finish with result.
 */
static void settle(struct prod *pr, const struct cfg_topic *c,
		   struct prod_req *rq, ssize_t result)
{
	struct topic *t = pr->t;
	uint64_t any = 0;

	for (size_t i = 0; i < MQ_MAX_PARTITIONS / 64; i++)
		any |= rq->touched[i];
	/* Visible now (before it is durable, as for readers of the
	 * partition files): consumers blocked on next/batch may go on. */
	if (any)
		topic_ready(t);
	if (c->sync == CFG_SYNC_NONE || !any) {
		finish(rq, result);
		return;
	}
	if (c->sync == CFG_SYNC_ALWAYS) {
		FOR_EACH_BIT(rq->touched, i)
			if (part_sync(topic_part(t, i)) < 0)
				result = -EIO;
		finish(rq, result);
		return;
	}
	FOR_EACH_BIT(rq->touched, i)
		commit_dirty(pr->commit, topic_part(t, i));
	topic_ref(t);
	rq->t = t;
	rq->result = result;
	rq->w.done = commit_done;
	commit_wait(pr->commit, &rq->w);
}

static uint32_t route(struct prod *pr, const char *p, size_t len, uint32_t n)
{
	const char *tab;

	if (pr->part >= 0)
		return (uint32_t)pr->part;
	tab = memchr(p, '\t', len);
	if (tab && tab > p)
		return (uint32_t)(XXH3_64bits(p, (size_t)(tab - p)) % n);
	return pr->keyless;
}

/*
 * Append the nl lines in s->lines, grouped by partition. Lines that all go
 * to one partition and lie back to back in one buffer are appended from it
 * directly; otherwise they are copied into s->buf partition by partition.
 */
static int append_lines(struct prod *pr, const struct cfg_topic *c,
			struct scratch *s, size_t nl, struct prod_req *rq, int limit)
{
	struct topic *t = pr->t;
	uint32_t n = topic_nparts(t), first = s->lines[0].part;
	int one = 1, contiguous = 1;
	size_t total = 0, off = 0;
	int64_t now = mq_now_ms();
	int rc = 0;

	for (size_t i = 0; i < nl; i++) {
		one &= s->lines[i].part == first;
		if (i && s->lines[i].p != s->lines[i - 1].p + s->lines[i - 1].len + 1)
			contiguous = 0;
		total += s->lines[i].len + 1;
	}
	if (limit && c->max_bytes) {
		uint64_t have = topic_bytes(t);

		/* An empty topic takes any write, so that one larger than
		 * max_bytes cannot wait forever. */
		if (have && have + total > c->max_bytes) {
			if (c->overflow == CFG_OVERFLOW_BLOCK)
				return -EAGAIN;
			topic_press(t);
			return -ENOSPC;
		}
	}
	if (one && contiguous) {
		rc = part_append(topic_part(t, first), s->lines[0].p, total, now,
				 c->segment_bytes, c->sync != CFG_SYNC_NONE);
		if (rc == 0) {
			topic_bytes_add(t, (int64_t)total);
			rq->touched[first / 64] |= 1ull << (first % 64);
		}
		return rc;
	}
	memset(s->pbytes, 0, n * sizeof(s->pbytes[0]));
	for (size_t i = 0; i < nl; i++)
		s->pbytes[s->lines[i].part] += s->lines[i].len + 1;
	for (uint32_t p = 0; p < n; p++) {
		s->pfill[p] = off;
		off += s->pbytes[p];
	}
	for (size_t i = 0; i < nl; i++) {
		struct line *l = &s->lines[i];

		memcpy(s->buf + s->pfill[l->part], l->p, l->len);
		s->buf[s->pfill[l->part] + l->len] = '\n';
		s->pfill[l->part] += l->len + 1;
	}
	off = 0;
	for (uint32_t p = 0; p < n; p++) {
		if (!s->pbytes[p])
			continue;
		rc = part_append(topic_part(t, p), s->buf + off, s->pbytes[p], now,
				 c->segment_bytes, c->sync != CFG_SYNC_NONE);
		if (rc < 0)
			break;
		topic_bytes_add(t, (int64_t)s->pbytes[p]);
		rq->touched[p / 64] |= 1ull << (p % 64);
		off += s->pbytes[p];
	}
	return rc;
}

/*
 * Room for a partial line of need bytes plus its '\n', need <= max_message.
 * Grown on demand, so that a file that only ever gets whole lines holds no
 * buffer at all. May move pr->partial. lock held.
 */
static int partial_room(struct prod *pr, size_t need)
{
	size_t cap = pr->pcap ? pr->pcap : 256;
	char *np;

	if (pr->pcap >= need + 1)
		return 0;
	while (cap < need + 1)
		cap *= 2;
	np = realloc(pr->partial, cap);
	if (!np)
		return -ENOMEM;
	pr->partial = np;
	pr->pcap = cap;
	return 0;
}

static void add_line(struct prod *pr, struct scratch *s, size_t *nlines,
		     const char *p, size_t len, uint32_t n)
{
	struct line *l = &s->lines[(*nlines)++];

	l->p = p;
	l->len = (uint32_t)len;
	l->part = route(pr, p, len, n);
}

static void write_once(struct prod *pr, const char *buf, size_t len,
		       struct prod_req *rq, int retry)
{
	const char *p = buf, *end = buf + len, *nl, *tail = NULL;
	size_t nlines = 0, tail_len = 0;
	ssize_t consumed;
	int rc, clear_partial = 0;
	struct cfg_topic c;
	struct scratch *s;
	uint32_t n;
	uint64_t any;

	memset(rq->touched, 0, sizeof(rq->touched));
	rc = topic_cfg(pr->t, &c);
	n = topic_nparts(pr->t);
	pthread_mutex_lock(&pr->lock);
	if (rc < 0)
		goto out_err;
	/* Order: a new write waits behind this producer's held ones. */
	if (!retry && pr->nheld)
		goto out_hold;
	/* Keyless lines of one write() go to one partition, the next write's
	 * to the next: one write per partition per call, one fsync per
	 * commit (Kafka's sticky partitioner does the same per batch). */
	pr->keyless = (uint32_t)(pr->rr++ % n);
	s = scratch_get(len / 2 + 2, len + pr->plen + 1);
	rc = s ? 0 : -ENOMEM;
	if (rc < 0)
		goto out_err;
	if (pr->refused) {
		rc = -EMSGSIZE;
		goto out_err;
	}
	if (pr->plen) {
		size_t piece;

		nl = memchr(p, '\n', (size_t)(end - p));
		piece = (size_t)((nl ? nl : end) - p);
		if (pr->plen + piece > c.max_message) {
			pr->plen = 0;
			pr->refused = 1;
			rc = -EMSGSIZE;
			goto out_err;
		}
		rc = partial_room(pr, pr->plen + piece);
		if (rc < 0)
			goto out_err;
		memcpy(pr->partial + pr->plen, p, piece);
		if (!nl) {
			pr->plen += piece;
			goto out_all;
		}
		/* Lines are appended with their '\n' (partial has room). */
		pr->partial[pr->plen + piece] = '\n';
		add_line(pr, s, &nlines, pr->partial, pr->plen + piece, n);
		clear_partial = 1;
		p = nl + 1;
	}
	while (p < end) {
		size_t l;

		nl = memchr(p, '\n', (size_t)(end - p));
		l = (size_t)((nl ? nl : end) - p);
		if (l > c.max_message) {
			if (p > buf)
				break;	/* short write: the retry gets the error */
			pr->refused = 1;
			rc = -EMSGSIZE;
			goto out_err;
		}
		if (!nl) {
			tail = p;
			tail_len = l;
			p = end;
			break;
		}
		if (l)
			add_line(pr, s, &nlines, p, l, n);
		p = nl + 1;
	}
	if (nlines) {
		rc = append_lines(pr, &c, s, nlines, rq, 1);
		if (rc == -EAGAIN)
			goto out_hold;
		if (rc < 0)
			goto out_err;
	}
	uncount(pr, rq);
	if (clear_partial)
		pr->plen = 0;
	/* After the append: the partial buffer may have held a line. If it
	 * cannot grow, the tail is not taken (a short write; the retry brings
	 * it again). */
	if (tail && partial_room(pr, tail_len) < 0) {
		p = tail;
		tail = NULL;
	}
	if (tail) {
		memcpy(pr->partial, tail, tail_len);
		pr->plen = tail_len;
	}
	for (size_t i = 0; i < MQ_MAX_PARTITIONS / 64; i++)
		pr->wrote[i] |= rq->touched[i];
	pthread_mutex_unlock(&pr->lock);
	consumed = p - buf;
	free(rq->held);		/* appended, and the tail is copied: done with it */
	rq->held = NULL;
	settle(pr, &c, rq, consumed);
	return;
out_all:
	uncount(pr, rq);
	pthread_mutex_unlock(&pr->lock);
	finish(rq, (ssize_t)len);
	return;
out_hold:
	/* Nothing of this write changed the producer yet: it is retried
	 * from the start, from a copy, since buf is the caller's. */
	if (!rq->held) {
		rq->held = malloc(len ? len : 1);
		if (!rq->held) {
			rc = -ENOMEM;
			goto out_err;
		}
		memcpy(rq->held, buf, len);
		rq->held_len = len;
	}
	if (!rq->counted) {
		pr->nheld++;
		rq->counted = 1;
	}
	pthread_mutex_unlock(&pr->lock);
	rc = topic_hold(pr->t, &rq->tw);
	if (rc == 0)
		return;
	pthread_mutex_lock(&pr->lock);
out_err:
	uncount(pr, rq);
	/* A write whose lines went to several partitions can fail after some
	 * of them were appended: those stay (at-least-once; a retry may repeat
	 * them) and count for close()'s error report. */
	any = 0;
	for (size_t i = 0; i < MQ_MAX_PARTITIONS / 64; i++) {
		pr->wrote[i] |= rq->touched[i];
		any |= rq->touched[i];
	}
	pthread_mutex_unlock(&pr->lock);
	if (any)
		topic_ready(pr->t);	/* they are visible: wake consumers */
	finish(rq, rc);
}

static void held_wake(struct topic_wait *tw)
{
	struct prod_req *rq = (struct prod_req *)((char *)tw - offsetof(struct prod_req, tw));

	write_once(rq->pr, rq->held, rq->held_len, rq, 1);
}

static int held_gave_up(struct topic_wait *tw)
{
	struct prod_req *rq = (struct prod_req *)((char *)tw - offsetof(struct prod_req, tw));

	return rq->interrupted && rq->interrupted(rq);
}

void prod_write(struct prod *pr, const char *buf, size_t len, struct prod_req *rq)
{
	rq->pr = pr;
	rq->held = NULL;
	rq->counted = 0;
	rq->tw.wake = held_wake;
	rq->tw.gave_up = held_gave_up;
	write_once(pr, buf, len, rq, 0);
}

int prod_cancel(struct prod_req *rq)
{
	struct prod *pr = rq->pr;

	if (!pr || !topic_unhold(pr->t, &rq->tw))
		return 0;
	pthread_mutex_lock(&pr->lock);
	uncount(pr, rq);
	pthread_mutex_unlock(&pr->lock);
	free(rq->held);
	rq->held = NULL;
	return 1;
}

void prod_flush(struct prod *pr, struct prod_req *rq)
{
	struct cfg_topic c;
	struct scratch *s;
	int rc;

	rq->pr = NULL;		/* a last line is never held back */
	rq->held = NULL;
	rq->counted = 0;
	memset(rq->touched, 0, sizeof(rq->touched));
	pthread_mutex_lock(&pr->lock);
	if (!pr->plen || pr->refused) {
		pthread_mutex_unlock(&pr->lock);
		finish(rq, 0);
		return;
	}
	rc = topic_cfg(pr->t, &c);
	s = rc < 0 ? NULL : scratch_get(1, 0);
	if (!s) {
		rc = rc < 0 ? rc : -ENOMEM;
		goto out_err;
	}
	pr->keyless = (uint32_t)(pr->rr++ % topic_nparts(pr->t));
	/* partial has room for the '\n' (partial_room). */
	pr->partial[pr->plen] = '\n';
	s->lines[0].p = pr->partial;
	s->lines[0].len = (uint32_t)pr->plen;
	s->lines[0].part = route(pr, pr->partial, pr->plen, topic_nparts(pr->t));
	rc = append_lines(pr, &c, s, 1, rq, 0);	/* close() has returned: never held */
	if (rc < 0)
		goto out_err;
	pr->plen = 0;
	pthread_mutex_unlock(&pr->lock);
	settle(pr, &c, rq, 0);
	return;
out_err:
	pthread_mutex_unlock(&pr->lock);
	finish(rq, rc);
}

size_t prod_pending(struct prod *pr)
{
	size_t n;

	pthread_mutex_lock(&pr->lock);
	n = pr->plen;
	pthread_mutex_unlock(&pr->lock);
	return n;
}

int prod_error(struct prod *pr)
{
	uint64_t wrote[MQ_MAX_PARTITIONS / 64];
	int rc = 0;

	pthread_mutex_lock(&pr->lock);
	memcpy(wrote, pr->wrote, sizeof(wrote));
	pthread_mutex_unlock(&pr->lock);
	FOR_EACH_BIT(wrote, i)
		if (rc == 0)
			rc = part_error(topic_part(pr->t, i));
	return rc;
}
