/*
 * lease.c - leases, acks, redelivery and dead-lettering of one group.
 *
 * Journal format: DATA_DIR/topics/T/groups/G/journal is a sequence of
 * 24-byte records, little-endian, appended with one write per call:
 *
 *     0  1  type
 *     1  1  zero
 *     2  2  partition
 *     4  4  n
 *     8  8  offset
 *    16  8  XXH3_64bits of bytes 0..15, seed 0
 *
 *     BASE     the committed offset is `offset`; forget the window
 *              (a commit through offsets/P, or the start of a compacted
 *              journal)
 *     HWM      every message below `offset` was handed out at least once
 *              (one delivery, unless a DLV record says otherwise)
 *     DLV      message `offset` has been delivered `n` times
 *     ACK      messages [offset, offset + n) are finished
 *     DEAD     message `offset` is being dead-lettered as the letter whose
 *              seq has the low 32 bits `n` (written before the letter, and
 *              followed by ACK: a letter whose message replays as not
 *              finished is one of a crash in between only if DEAD says so;
 *              any other is an old letter of a message a rewind replays)
 *     REDRIVE  message `offset` is pending again, no deliveries yet; `n` is
 *              the low 32 bits of its dead letter's seq: that file, kept
 *              hidden, holds the line until the message is finished again
 *              (below the high-water mark; at or above it the message is
 *              simply new again)
 *
 * Replay applies the records in order on top of the offsets files; it stops
 * at the first record whose checksum or type is wrong (a torn tail: the
 * calls it belonged to never returned). The journal is rewritten whole
 * (io_publish) when it passes JOURNAL_MAX, at open and at a clean close:
 * the offsets files first, then the compacted records, so that a crash in
 * between replays to the same state.
 *
 * Memory: per partition a ring of slots covers the window [floor, top),
 * grown by doubling (never per message); redriven messages below the floor
 * live in a small sorted array. Hand-outs read index entries and lines in
 * runs (part_read_msgs) into a buffer the lease keeps.
 */
#define _GNU_SOURCE
#include "lease.h"
#include "core.h"
#include "dlq.h"
#include "group.h"
#include "io.h"
#include "partition.h"
#include "topic.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define JOURNAL "journal"
#define JOURNAL_MAX (4u << 20)
#define REC 24

enum { J_BASE = 1, J_HWM, J_DLV, J_ACK, J_REDRIVE, J_DEAD };

struct jrec {
	uint8_t type;
	uint8_t zero;
	uint16_t part;
	uint32_t n;
	uint64_t off;
	uint64_t check;
};
_Static_assert(sizeof(struct jrec) == REC, "journal records are 24 bytes");

enum { S_NEW = 0, S_FLIGHT, S_RETRY, S_DONE };

struct slot {
	int64_t due;		/* monotonic ms: lease end (FLIGHT), redelivery
				 * (RETRY; 0 = now) */
	uint64_t holder;	/* FLIGHT: the consumer */
	uint32_t deliveries;
	uint32_t rseq;		/* redriven: low 32 bits of its letter's seq */
	uint8_t state;
	uint8_t redriven;	/* handed back from the DLQ since its last ack:
				 * its hidden letter holds the line */
	uint8_t dying;		/* replay only: a DEAD record with seq dseq */
	uint32_t dseq;
};

struct extra {
	uint64_t off;
	struct slot s;
};

/* All fields: lease->lock. */
struct lpart {
	uint64_t floor;		/* committed offset */
	uint64_t hwm;		/* below: handed out at least once, or finished */
	uint64_t top;		/* end of the window */
	struct slot *ring;	/* owned; [floor, top) at off & (cap - 1) */
	uint32_t cap;		/* 0 or a power of two */
	uint64_t owner;		/* consumer holding the leases; 0 = nobody */
	uint32_t inflight;	/* leases held by owner */
	uint32_t waiting;	/* messages in RETRY */
	struct extra *x;	/* owned; redriven below floor, by offset */
	size_t nx, xcap;
	uint64_t saved;		/* floor as the offsets file has it */
};

struct lease {
	pthread_mutex_t lock;
	struct topic *t;		/* borrowed; outlives the lease */
	struct cg *g;			/* borrowed; owns the lease */
	char dir[PATH_MAX];		/* immutable */
	int jfd;			/* journal, appended at jbytes */
	uint64_t jbytes;
	uint64_t jcompact;		/* jbytes right after the last compaction */
	uint64_t sync_ms;		/* the node's, as lease_tick last said */
	int dead;			/* -ENOENT once the group is deleted */
	int durable;			/* sync != none, as the last call saw it */
	int err;			/* sticky journal write error */
	int64_t dirty_since;		/* first record not yet synced; 0 = none */
	int64_t announced;		/* earliest deadline the janitor knows of */
	struct jrec *jbuf;		/* records of the current call; owned */
	size_t jn, jcap;
	struct dlq *dlq;		/* owned */
	char *scratch;			/* lines read by a hand-out; owned */
	size_t scap;
	struct part_msg msgs[PART_MSGS_MAX];
	uint32_t rr;			/* first partition of the next take */
	struct jrec *fin;		/* lease_open only: redriven messages that
					 * replay finished (part, off, rseq) */
	size_t nfin, finc;
	struct lpart p[MQ_MAX_PARTITIONS];
};

static _Atomic uint64_t consumers;

uint64_t lease_consumer(void)
{
	return atomic_fetch_add(&consumers, 1) + 1;
}

/* ---- journal ---- */

static int stage(struct lease *ls, int type, uint32_t part, uint64_t off, uint32_t n)
{
	struct jrec *r;

	/* Acks usually come in order: extend the previous range. */
	if (type == J_ACK && ls->jn) {
		r = &ls->jbuf[ls->jn - 1];
		if (r->type == J_ACK && r->part == part && r->off + r->n == off &&
		    r->n < UINT32_MAX) {
			r->n++;
			return 0;
		}
	}
	if (mq_grow(&ls->jbuf, &ls->jcap, ls->jn + 1, sizeof(*ls->jbuf), 256) < 0)
		return -ENOMEM;
	r = &ls->jbuf[ls->jn++];
	memset(r, 0, sizeof(*r));
	r->type = (uint8_t)type;
	r->part = (uint16_t)part;
	r->n = n;
	r->off = off;
	return 0;
}

static void seal_records(struct jrec *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		r[i].check = XXH3_64bits(&r[i], 16);
}

static int compact(struct lease *ls, int durable);

/*
 * Append the staged records. sync: fdatasync now (sync=always, commits);
 * otherwise the janitor syncs within sync_ms when durable. lock held.
 */
static int journal_flush(struct lease *ls, int durable, int sync)
{
	int rc;

	if (!ls->jn)
		return ls->err;
	if (ls->err || ls->dead) {
		ls->jn = 0;
		return ls->dead ? ls->dead : ls->err;
	}
	seal_records(ls->jbuf, ls->jn);
	rc = io_pwrite_all(ls->jfd, ls->jbuf, ls->jn * REC, (off_t)ls->jbytes);
	if (rc == 0) {
		ls->jbytes += ls->jn * REC;
		if (durable && sync) {
			rc = io_sync(ls->jfd);
		} else if (durable && !ls->dirty_since) {
			/* The janitor syncs it sync_ms from now (lease_tick). */
			ls->dirty_since = mq_mono_ms();
			topic_due(ls->t, ls->dirty_since + (int64_t)ls->sync_ms);
		}
	}
	ls->jn = 0;
	if (rc < 0) {
		/* Nobody knows what of it reached the file: stop here, like a
		 * partition after a failed fsync. */
		fprintf(stderr, "mqfs: %s/" JOURNAL ": %s; leases stop until remount\n",
			ls->dir, strerror(-rc));
		ls->err = -EIO;
		return -EIO;
	}
	/* Twice what the last compaction left: a window of many scattered
	 * acks compacts to more than JOURNAL_MAX, and must not compact again
	 * at every write. */
	if (ls->jbytes > JOURNAL_MAX && ls->jbytes > 2 * ls->jcompact)
		(void)compact(ls, durable);
	return 0;
}

/* ---- windows ---- */

static struct slot *slot(struct lpart *lp, uint64_t off)
{
	return &lp->ring[off & (lp->cap - 1)];
}

/* Make the window reach up to end (exclusive). */
static int widen(struct lpart *lp, uint64_t end)
{
	uint64_t need = end - lp->floor;
	uint32_t cap = lp->cap ? lp->cap : 64;
	struct slot *nr;

	if (end <= lp->top)
		return 0;
	if (need > LEASE_WINDOW_MAX)
		return -ENOSPC;
	if (need > lp->cap) {
		while (cap < need)
			cap *= 2;
		nr = calloc(cap, sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		for (uint64_t o = lp->floor; o < lp->top; o++)
			nr[o & (cap - 1)] = *slot(lp, o);
		free(lp->ring);
		lp->ring = nr;
		lp->cap = cap;
	}
	lp->top = end;
	return 0;
}

/* Forget redriven messages at or above off (a rewind replays them from
 * the partition). The caller removes their hidden letters. */
static void drop_extras_from(struct lpart *lp, uint64_t off)
{
	while (lp->nx && lp->x[lp->nx - 1].off >= off)
		lp->nx--;
}

/* Forget the window; slots outside it are kept zeroed. */
static void clear_window(struct lpart *lp, uint64_t off)
{
	for (uint64_t o = lp->floor; o < lp->top; o++)
		memset(slot(lp, o), 0, sizeof(struct slot));
	lp->floor = lp->hwm = lp->top = off;
}

/* Index of the first redriven message at or above off. */
static size_t extra_index(const struct lpart *lp, uint64_t off)
{
	size_t lo = 0, hi = lp->nx;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (lp->x[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct extra *find_extra(struct lpart *lp, uint64_t off)
{
	size_t i = extra_index(lp, off);

	return i < lp->nx && lp->x[i].off == off ? &lp->x[i] : NULL;
}

static int add_extra(struct lpart *lp, uint64_t off, struct extra **out)
{
	size_t i;

	if ((*out = find_extra(lp, off)))
		return 0;
	if (mq_grow(&lp->x, &lp->xcap, lp->nx + 1, sizeof(*lp->x), 8) < 0)
		return -ENOMEM;
	i = extra_index(lp, off);
	memmove(lp->x + i + 1, lp->x + i, (lp->nx - i) * sizeof(*lp->x));
	memset(&lp->x[i], 0, sizeof(lp->x[i]));
	lp->x[i].off = off;
	lp->nx++;
	*out = &lp->x[i];
	return 0;
}

static void drop_extra(struct lpart *lp, struct extra *e)
{
	size_t i = (size_t)(e - lp->x);

	memmove(lp->x + i, lp->x + i + 1, (lp->nx - i - 1) * sizeof(*lp->x));
	lp->nx--;
}

/* The slot of off: in the window, or a redriven one below it; NULL if off
 * was never handed out (or is finished below the floor). */
static struct slot *find(struct lpart *lp, uint64_t off)
{
	struct extra *e;

	if (off >= lp->floor)
		return off < lp->top ? slot(lp, off) : NULL;
	e = find_extra(lp, off);
	return e ? &e->s : NULL;
}

/* Move the floor over the finished front; tell the group. */
static void advance(struct lease *ls, uint32_t part)
{
	struct lpart *lp = &ls->p[part];
	uint64_t old = lp->floor;

	while (lp->floor < lp->top && slot(lp, lp->floor)->state == S_DONE) {
		memset(slot(lp, lp->floor), 0, sizeof(struct slot));
		lp->floor++;
	}
	if (lp->floor == lp->top && lp->cap > 4096) {
		/* an empty window gives back what a burst grew */
		free(lp->ring);
		lp->ring = NULL;
		lp->cap = 0;
	}
	if (lp->hwm < lp->floor)
		lp->hwm = lp->floor;
	if (lp->top < lp->floor)
		lp->top = lp->floor;
	if (lp->floor != old)
		cg_advance(ls->g, part, lp->floor);
}

/* A leased or waiting message leaves its state (for another, or DONE). */
static void leave(struct lpart *lp, struct slot *s)
{
	if (s->state == S_FLIGHT) {
		if (--lp->inflight == 0)
			lp->owner = 0;
	} else if (s->state == S_RETRY) {
		lp->waiting--;
	}
}

/* The hidden letter of a redriven message, or -1. lock held. */
static ssize_t hidden_letter(struct lease *ls, uint32_t part, uint64_t off)
{
	ssize_t i = dlq_find(ls->dlq, part, off);

	return i >= 0 && dlq_at(ls->dlq, (size_t)i)->hidden ? i : -1;
}

/* A redriven message is done with its letter. The journal says so first
 * (the caller stages ACK or BASE): a crash in between finds the file of a
 * finished message, which lease_open removes. */
static void drop_hidden(struct lease *ls, uint32_t part, uint64_t off)
{
	ssize_t i = hidden_letter(ls, part, off);

	if (i >= 0)
		(void)dlq_remove(ls->dlq, (size_t)i, ls->durable);
}

/* The message is finished: acked, dead-lettered, or gone by retention. */
static int finish(struct lease *ls, uint32_t part, uint64_t off)
{
	struct lpart *lp = &ls->p[part];
	struct slot *s;
	int rc, was;

	if (off < lp->floor) {
		struct extra *e = find_extra(lp, off);

		if (!e)
			return 0;
		was = e->s.redriven;
		leave(lp, &e->s);
		drop_extra(lp, e);
		rc = stage(ls, J_ACK, part, off, 1);
		if (was)
			drop_hidden(ls, part, off);
		return rc;
	}
	rc = widen(lp, off + 1);
	if (rc < 0)
		return rc;
	s = slot(lp, off);
	if (s->state == S_DONE)
		return 0;
	was = s->redriven;
	leave(lp, s);
	s->state = S_DONE;
	s->redriven = 0;
	rc = stage(ls, J_ACK, part, off, 1);
	if (was)
		drop_hidden(ls, part, off);
	return rc;
}

/* ---- settings ---- */

static int durable(const struct cfg_topic *c)
{
	return c->sync != CFG_SYNC_NONE;
}

static int64_t backoff(const struct cfg_topic *c, uint32_t failures)
{
	uint64_t cap = c->retry_backoff_ms > LEASE_BACKOFF_CAP_MS ?
		       c->retry_backoff_ms : LEASE_BACKOFF_CAP_MS;
	uint64_t d = c->retry_backoff_ms;

	for (uint32_t i = 1; i < failures && d < cap; i++)
		d *= 2;
	return (int64_t)(d < cap ? d : cap);
}

/* ---- reading messages ---- */

/* Read message off (and up to max - 1 after it) into the scratch buffer. */
static int read_msgs(struct lease *ls, uint32_t part, uint64_t off, uint32_t max)
{
	for (;;) {
		int n = part_read_msgs(topic_part(ls->t, part), off, max, ls->scratch,
				       ls->scap, ls->msgs);
		if (n != -ENOBUFS)
			return n;
		if (mq_grow(&ls->scratch, &ls->scap, (size_t)ls->msgs[0].len + 1, 1, 65536) < 0)
			return -ENOMEM;
	}
}

/*
 * Read message off into ls->msgs[0]: from its hidden letter if it was
 * redriven (retention may have deleted it from the partition since), else
 * from the partition. 1, -ERANGE if it is gone, -errno.
 */
static int read_one(struct lease *ls, uint32_t part, uint64_t off, const struct slot *s)
{
	ssize_t i = s->redriven ? hidden_letter(ls, part, off) : -1;
	const struct dlq_entry *d;
	char *text;
	size_t len;
	int rc;

	if (i < 0) {
		rc = read_msgs(ls, part, off, 1);
		return rc == 0 ? -EIO : rc;	/* clamp() keeps ids below the end */
	}
	d = dlq_at(ls->dlq, (size_t)i);
	rc = dlq_read(ls->dlq, (size_t)i, &text, &len);
	if (rc == -ENOENT) {
		/* Someone removed the file in DATA_DIR: the partition's copy,
		 * if retention left it, is all there is. */
		(void)dlq_remove(ls->dlq, (size_t)i, 0);
		rc = read_msgs(ls, part, off, 1);
		return rc == 0 ? -EIO : rc;
	}
	if (rc < 0)
		return rc;
	if (mq_grow(&ls->scratch, &ls->scap, len, 1, 65536) < 0) {
		free(text);
		return -ENOMEM;
	}
	memcpy(ls->scratch, text, len);
	free(text);
	ls->msgs[0] = (struct part_msg){ .off = off, .ts_ms = d->ts_ms,
					 .line = ls->scratch, .len = d->len };
	return 1;
}

/* ---- dead letters ---- */

/*
 * Move message off to the DLQ. On failure it stays pending, to be tried
 * again at its next failure. lock held.
 */
static int bury(struct lease *ls, const struct cfg_topic *c, uint32_t part,
		uint64_t off, struct slot *s, const char *reason)
{
	struct dlq_entry e;
	int rc = read_one(ls, part, off, s);

	if (rc == -ERANGE)
		return finish(ls, part, off);	/* retention took it already */
	if (rc < 0)
		return rc;
	memset(&e, 0, offsetof(struct dlq_entry, reason));
	e.id = topic_dead_id(ls->t);
	if (!e.id)
		return -ENOSPC;
	e.seq = dlq_next_seq(ls->dlq);
	e.part = part;
	e.off = off;
	e.ts_ms = ls->msgs[0].ts_ms;
	e.failed_at_ms = mq_now_ms();
	e.deliveries = s->deliveries;
	e.len = ls->msgs[0].len;
	snprintf(e.reason, sizeof(e.reason), "%s", reason);
	/* DEAD first (see the format), then the letter, then ACK. A redriven
	 * message's hidden letter is replaced by the new one. */
	rc = stage(ls, J_DEAD, part, off, (uint32_t)e.seq);
	if (rc == 0)
		rc = journal_flush(ls, durable(c), 0);
	if (rc == 0)
		rc = dlq_add(ls->dlq, &e, ls->msgs[0].line, durable(c));
	if (rc < 0) {
		fprintf(stderr, "mqfs: %s/dlq: %u:%llu not dead-lettered: %s\n", ls->dir,
			part, (unsigned long long)off, strerror(-rc));
		return rc;
	}
	s->redriven = 0;	/* so that finish keeps the new letter */
	return finish(ls, part, off);
}

/* A delivery failed (nack or expiry): wait for redelivery, or die. */
static void fail(struct lease *ls, const struct cfg_topic *c, uint32_t part,
		 uint64_t off, struct slot *s, const char *reason, int64_t now)
{
	struct lpart *lp = &ls->p[part];

	leave(lp, s);
	s->state = S_RETRY;
	s->due = now + backoff(c, s->deliveries);
	lp->waiting++;
	if (c->max_deliveries && s->deliveries >= c->max_deliveries &&
	    bury(ls, c, part, off, s, reason) == 0)
		return;
	if (s->due < ls->announced) {
		ls->announced = s->due;
		topic_due(ls->t, s->due);
	}
}

/* ---- hand-out ---- */

struct take {
	uint64_t c;
	size_t want, len;
	uint32_t max, n;
	char **buf;
	size_t *cap;
	int64_t now;
	const struct cfg_topic *cfg;
};

/* Room for need more bytes in the caller's buffer. From a small start:
 * `next` gives each open file a fresh one for its single message. */
static int room(struct take *tk, size_t need)
{
	return mq_grow(tk->buf, tk->cap, tk->len + need, 1, 256);
}

/* Decimal digits of v at p (no NUL); their count. snprintf per message
 * was a third of a batch read's CPU time. */
static size_t put_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	for (size_t i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

/*
 * Lease message m (in slot s) to the consumer and format it: 1 done, 0 if
 * it does not fit in want (and is not the first), -errno.
 */
static int hand_out(struct lease *ls, struct take *tk, uint32_t part,
		    const struct part_msg *m, struct slot *s, int fresh)
{
	struct lpart *lp = &ls->p[part];
	char pre[48];
	size_t pl = put_u64(pre, part);
	size_t need;

	pre[pl++] = ':';
	pl += put_u64(pre + pl, m->off);
	pre[pl++] = '\t';
	need = pl + m->len + 1;
	int64_t due = tk->now + (int64_t)tk->cfg->ack_wait_ms;
	int rc;

	if (tk->n && tk->len + need > tk->want)
		return 0;
	rc = room(tk, need);
	if (rc < 0)
		return rc;
	memcpy(*tk->buf + tk->len, pre, pl);
	memcpy(*tk->buf + tk->len + pl, m->line, m->len + 1);	/* with '\n' */
	tk->len += need;
	tk->n++;
	leave(lp, s);
	s->state = S_FLIGHT;
	s->holder = tk->c;
	s->due = due;
	if (s->deliveries < UINT32_MAX)
		s->deliveries++;
	lp->owner = tk->c;
	lp->inflight++;
	if (due < ls->announced) {
		ls->announced = due;
		topic_due(ls->t, due);
	}
	/* New messages are covered by the HWM record of the take. */
	return fresh ? 1 : (stage(ls, J_DLV, part, m->off, s->deliveries) ?: 1);
}

/*
 * Hand out the single message off (a redelivery): 1, 0 (full), 2 if
 * retention deleted it (it is finished now), -errno.
 */
static int hand_out_one(struct lease *ls, struct take *tk, uint32_t part,
			uint64_t off, struct slot *s)
{
	int rc = read_one(ls, part, off, s);

	if (rc == -ERANGE)
		return finish(ls, part, off) ?: 2;
	if (rc < 0)
		return rc;
	return hand_out(ls, tk, part, &ls->msgs[0], s, 0);
}

/* Recount owner, inflight and waiting from the slots. lock held. */
static void recount(struct lpart *lp)
{
	lp->owner = 0;
	lp->inflight = lp->waiting = 0;
	for (size_t i = 0; i < lp->nx; i++) {
		struct slot *s = &lp->x[i].s;

		if (s->state == S_FLIGHT) {
			lp->owner = s->holder;
			lp->inflight++;
		}
		lp->waiting += s->state == S_RETRY;
	}
	for (uint64_t o = lp->floor; o < lp->top; o++) {
		struct slot *s = slot(lp, o);

		if (s->state == S_FLIGHT) {
			lp->owner = s->holder;
			lp->inflight++;
		}
		lp->waiting += s->state == S_RETRY;
	}
}

/*
 * Finish what retention deleted below first, unless something there is
 * leased (let the lease end first) or redriven (its letter holds it).
 * Redriven messages below the committed offset need nothing: their letters
 * hold their lines.
 */
static int drop_gone(struct lease *ls, uint32_t part, uint64_t first)
{
	struct lpart *lp = &ls->p[part];
	int rc;

	if (lp->floor >= first)
		return 0;
	for (uint64_t o = lp->floor; o < lp->top && o < first; o++) {
		const struct slot *s = slot(lp, o);

		if (s->state == S_FLIGHT || (s->redriven && s->state != S_DONE))
			return 0;
	}
	if (lp->top <= first) {
		/* The whole window is gone: one BASE record, whatever the
		 * distance (an ACK range would not replay past the window's
		 * limit). */
		rc = stage(ls, J_BASE, part, first, 0);
		if (rc < 0)
			return rc;
		clear_window(lp, first);
		recount(lp);	/* the redeliveries it held are gone too */
		cg_advance(ls->g, part, lp->floor);
	} else {
		/* within the window: fewer than LEASE_WINDOW_MAX */
		rc = stage(ls, J_ACK, part, lp->floor, (uint32_t)(first - lp->floor));
		if (rc < 0)
			return rc;
		for (uint64_t o = lp->floor; o < first; o++) {
			leave(lp, slot(lp, o));
			slot(lp, o)->state = S_DONE;
		}
	}
	advance(ls, part);
	return 0;
}

/* Hand out what partition part has for tk: 0, 1 if tk is full, -errno. */
static int take_part(struct lease *ls, struct take *tk, uint32_t part)
{
	struct lpart *lp = &ls->p[part];
	struct part_stat st;
	uint64_t hwm0 = lp->hwm;
	int rc = 0, full = 0;

	part_stat(topic_part(ls->t, part), &st);
	if (lp->floor < st.first) {
		rc = drop_gone(ls, part, st.first);
		if (rc < 0)
			return rc;
	}
	/* 1. redriven messages, in offset order */
	for (size_t i = 0; i < lp->nx && tk->n < tk->max; i++) {
		struct extra *e = &lp->x[i];

		if (e->s.state == S_FLIGHT)
			continue;
		if (e->s.due > tk->now)
			return 0;	/* holds back the rest of the partition */
		rc = hand_out_one(ls, tk, part, e->off, &e->s);
		if (rc <= 0)
			return rc < 0 ? rc : 1;
		if (rc == 2)
			i--;		/* finished: the array moved down */
	}
	/* 2. redeliveries in the window */
	for (uint64_t o = lp->floor; lp->waiting && o < lp->hwm && tk->n < tk->max; o++) {
		struct slot *s = slot(lp, o);

		if (s->state != S_RETRY)
			continue;
		if (s->due > tk->now)
			return 0;
		rc = hand_out_one(ls, tk, part, o, s);
		if (rc <= 0)
			return rc < 0 ? rc : 1;
	}
	/* 3. new messages */
	rc = 0;
	while (!full && tk->n < tk->max && lp->hwm < st.next &&
	       lp->hwm - lp->floor < LEASE_WINDOW_MAX) {
		uint64_t left = LEASE_WINDOW_MAX - (lp->hwm - lp->floor);
		uint32_t want = tk->max - tk->n;
		int n;

		if (want > left)
			want = (uint32_t)left;
		n = read_msgs(ls, part, lp->hwm, want);
		if (n == -ERANGE) {		/* retention raced us */
			rc = finish(ls, part, lp->hwm);
			if (rc < 0)
				break;
			lp->hwm++;
			continue;
		}
		if (n <= 0) {
			rc = n;
			break;
		}
		for (int i = 0; i < n && !full; i++) {
			const struct part_msg *m = &ls->msgs[i];
			struct slot *s;

			rc = widen(lp, m->off + 1);
			if (rc < 0)
				break;
			s = slot(lp, m->off);
			if (s->state != S_DONE) {	/* done: acked ahead, skipped */
				rc = hand_out(ls, tk, part, m, s, 1);
				if (rc < 0)
					break;
				full = rc == 0;
				if (full)
					break;
			}
			lp->hwm = m->off + 1;
		}
		if (rc < 0)
			break;
	}
	if (lp->hwm != hwm0) {
		int r = stage(ls, J_HWM, part, lp->hwm, 0);

		if (r < 0)
			return r;
	}
	if (rc < 0)
		return rc;
	advance(ls, part);	/* skipped ones may have been at the front */
	return full;
}

ssize_t lease_take(struct lease *ls, uint64_t c, size_t want, uint32_t max,
		   char **buf, size_t *cap)
{
	struct cfg_topic cfg;
	struct take tk = { .c = c, .want = want, .max = max, .buf = buf, .cap = cap };
	uint32_t n;
	int rc = topic_cfg(ls->t, &cfg);

	if (rc < 0)
		return rc;
	tk.cfg = &cfg;
	tk.now = mq_mono_ms();
	pthread_mutex_lock(&ls->lock);
	ls->durable = durable(&cfg);
	rc = ls->dead ? ls->dead : ls->err;
	n = topic_nparts(ls->t);
	for (uint32_t k = 0; rc == 0 && k < n && tk.n < tk.max; k++) {
		uint32_t part = (ls->rr + k) % n;
		struct lpart *lp = &ls->p[part];

		if (lp->owner && lp->owner != c)
			continue;
		rc = take_part(ls, &tk, part);
		if (rc == 1)
			break;		/* the buffer is full */
	}
	ls->rr = (ls->rr + 1) % n;
	if (rc >= 0)
		rc = journal_flush(ls, durable(&cfg), cfg.sync == CFG_SYNC_ALWAYS);
	pthread_mutex_unlock(&ls->lock);
	/* Messages that were taken stay leased even after an error: they
	 * expire and go out again, as if their reply had been lost. */
	return rc < 0 ? rc : (ssize_t)tk.len;
}

/*
 * What take_part would find first in partition part for c: 1 something to
 * hand out now, 0 nothing, -1 held back (a redelivery not due yet). lock
 * held.
 */
static int part_ready(struct lease *ls, uint32_t part, uint64_t c, int64_t now)
{
	struct lpart *lp = &ls->p[part];
	struct part_stat st;

	if (lp->owner && lp->owner != c)
		return 0;
	for (size_t i = 0; i < lp->nx; i++)
		if (lp->x[i].s.state != S_FLIGHT)
			return lp->x[i].s.due <= now ? 1 : -1;
	for (uint64_t o = lp->floor; lp->waiting && o < lp->hwm; o++)
		if (slot(lp, o)->state == S_RETRY)
			return slot(lp, o)->due <= now ? 1 : -1;
	part_stat(topic_part(ls->t, part), &st);
	return lp->hwm < st.next && lp->hwm - lp->floor < LEASE_WINDOW_MAX;
}

int lease_ready(struct lease *ls, uint64_t c)
{
	int64_t now = mq_mono_ms();
	uint32_t n = topic_nparts(ls->t);
	int ready = 0;

	pthread_mutex_lock(&ls->lock);
	/* A deleted group is "ready": the read that follows gets ENOENT. */
	ready = ls->dead != 0;
	for (uint32_t part = 0; !ready && part < n; part++)
		ready = part_ready(ls, part, c, now) > 0;
	pthread_mutex_unlock(&ls->lock);
	return ready;
}

/* ---- ack, nack ---- */

/* The end of partition part, remembered for the lines of one call. */
struct ends {
	uint32_t part;		/* UINT32_MAX: nothing remembered */
	uint64_t next;
};

/*
 * Parse "P:OFF" at the start of [s, e) (after blanks); *rest is what
 * follows it. -EINVAL if malformed, or if the message was never written.
 */
static int parse_id(struct lease *ls, struct ends *c, const char *s, const char *e,
		    uint32_t *part, uint64_t *off, const char **rest)
{
	const char *p = s, *q;

	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	for (q = p; q < e && *q != ' ' && *q != '\t' && *q != '\r'; q++)
		;
	if (dlq_parse_name(p, (size_t)(q - p), part, off) < 0)
		return -EINVAL;
	if (*part >= topic_nparts(ls->t))
		return -EINVAL;
	/* Ids of one write mostly share a partition: one part_stat for a
	 * run of them, not one per line. */
	if (*off >= c->next || c->part != *part) {
		struct part_stat st;

		part_stat(topic_part(ls->t, *part), &st);
		c->part = *part;
		c->next = st.next;
	}
	if (*off >= c->next)
		return -EINVAL;
	*rest = q;
	return 0;
}

/* Split buf into lines: calls fn for each non-blank one; stops at an error. */
static int each_line(const char *buf, size_t len,
		     int (*fn)(void *arg, const char *s, const char *e), void *arg)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end, *q = p;
		int rc;

		while (q < e && (*q == ' ' || *q == '\t' || *q == '\r'))
			q++;
		if (q < e) {
			rc = fn(arg, p, e);
			if (rc < 0)
				return rc;
		}
		p = e + (nl != NULL);
	}
	return 0;
}

struct apply {
	struct lease *ls;
	const struct cfg_topic *cfg;
	int check, nack;
	int64_t now;
	struct ends ends;
};

static int apply_line(void *arg, const char *s, const char *e)
{
	struct apply *a = arg;
	struct lease *ls = a->ls;
	char reason[LEASE_REASON_MAX + 1];
	const char *rest;
	struct lpart *lp;
	struct slot *sl;
	uint32_t part;
	uint64_t off;
	size_t rl;
	int rc = parse_id(ls, &a->ends, s, e, &part, &off, &rest);

	if (rc < 0)
		return rc;
	lp = &ls->p[part];
	if (!a->nack) {
		while (rest < e && (*rest == ' ' || *rest == '\t' || *rest == '\r'))
			rest++;
		if (rest != e)
			return -EINVAL;	/* an ack takes an id, nothing more */
		if (a->check)
			return off >= lp->floor && off - lp->floor >= LEASE_WINDOW_MAX ?
			       -EINVAL : 0;
		rc = finish(ls, part, off);
		if (rc == 0)
			advance(ls, part);
		return rc;
	}
	if (a->check)
		return 0;
	sl = find(lp, off);
	if (!sl || sl->state != S_FLIGHT)
		return 0;	/* not leased: nothing to fail */
	while (rest < e && (*rest == ' ' || *rest == '\t'))
		rest++;
	while (e > rest && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	rl = (size_t)(e - rest) < LEASE_REASON_MAX ? (size_t)(e - rest) : LEASE_REASON_MAX;
	memcpy(reason, rest, rl);
	reason[rl] = '\0';
	fail(ls, a->cfg, part, off, sl, rl ? reason : "nack", a->now);
	advance(ls, part);
	return 0;
}

static int ack_or_nack(struct lease *ls, const char *buf, size_t len, int nack)
{
	struct cfg_topic cfg;
	struct apply a = { .ls = ls, .cfg = &cfg, .check = 1, .nack = nack,
			   .ends = { .part = UINT32_MAX } };
	int rc = topic_cfg(ls->t, &cfg);

	if (rc < 0)
		return rc;
	a.now = mq_mono_ms();
	pthread_mutex_lock(&ls->lock);
	ls->durable = durable(&cfg);
	rc = ls->dead ? ls->dead : ls->err;
	if (rc == 0)
		rc = each_line(buf, len, apply_line, &a);
	if (rc == 0) {
		a.check = 0;
		rc = each_line(buf, len, apply_line, &a);
		int r = journal_flush(ls, durable(&cfg), cfg.sync == CFG_SYNC_ALWAYS);

		if (rc == 0)
			rc = r;
	}
	pthread_mutex_unlock(&ls->lock);
	/* Even after an error: ENOMEM or EIO can come after some lines. */
	topic_consumed(ls->t);
	topic_ready(ls->t);
	return rc;
}

int lease_ack(struct lease *ls, const char *buf, size_t len)
{
	return ack_or_nack(ls, buf, len, 0);
}

int lease_nack(struct lease *ls, const char *buf, size_t len)
{
	return ack_or_nack(ls, buf, len, 1);
}

/* ---- commits through offsets/P ---- */

static int commit(struct lease *ls, uint32_t part, uint64_t off, int relative,
		  uint64_t end, int lazy);

int lease_commit(struct lease *ls, uint32_t part, uint64_t off, int relative,
		 uint64_t end)
{
	return commit(ls, part, off, relative, end, 0);
}

int lease_commit_replica(struct lease *ls, uint32_t part, uint64_t off, uint64_t end)
{
	return commit(ls, part, off, 0, end, 1);
}

/* lazy: a replica's commit, as acks are: the journal is synced within
 * sync_ms by the janitor and the offsets file follows at compaction. */
static int commit(struct lease *ls, uint32_t part, uint64_t off, int relative,
		  uint64_t end, int lazy)
{
	struct cfg_topic cfg;
	struct lpart *lp = &ls->p[part];
	struct extra *keep = NULL;
	struct part_stat st;
	size_t nkeep = 0;
	uint64_t eff;
	int rc = topic_cfg(ls->t, &cfg);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&ls->lock);
	rc = ls->dead ? ls->dead : ls->err;
	if (rc < 0)
		goto out;
	if (relative) {
		if (off > UINT64_MAX - lp->floor) {
			rc = -EINVAL;
			goto out;
		}
		off += lp->floor;
	}
	if (off > end) {
		rc = -EINVAL;
		goto out;
	}
	ls->durable = durable(&cfg);
	/* The leases start over at the first message the partition still
	 * holds: below it there is nothing to replay, and a redriven message
	 * down there lives in its letter only, so it must stay redriven
	 * (below the window) rather than be left to a partition that lost
	 * it. The offsets file says off all the same; both mean "from the
	 * first retained message". */
	part_stat(topic_part(ls->t, part), &st);
	eff = off < st.first ? st.first : off;
	for (uint64_t o = lp->floor; o < lp->top && o < eff; o++)
		nkeep += slot(lp, o)->redriven && slot(lp, o)->state != S_DONE;
	if (nkeep && !(keep = malloc(nkeep * sizeof(*keep)))) {
		rc = -ENOMEM;
		goto out;
	}
	nkeep = 0;
	for (uint64_t o = lp->floor; o < lp->top && o < eff; o++)
		if (slot(lp, o)->redriven && slot(lp, o)->state != S_DONE)
			keep[nkeep++] = (struct extra){ .off = o, .s = *slot(lp, o) };
	/* Redriven messages that the commit replays (or skips) from the
	 * partition are done with their letters. Files first: a crash before
	 * the BASE record leaves redriven messages without letters, read
	 * from the partition. */
	for (size_t i = 0; i < lp->nx; i++)
		if (lp->x[i].off >= eff)
			drop_hidden(ls, part, lp->x[i].off);
	for (uint64_t o = eff > lp->floor ? eff : lp->floor; o < lp->top; o++)
		if (slot(lp, o)->redriven && slot(lp, o)->state != S_DONE)
			drop_hidden(ls, part, o);
	/* The journal next: replay must end here even if the offsets file
	 * below never gets written. */
	rc = stage(ls, J_BASE, part, eff, 0);
	for (size_t i = 0; rc == 0 && i < nkeep; i++) {
		rc = stage(ls, J_REDRIVE, part, keep[i].off, keep[i].s.rseq);
		if (rc == 0 && keep[i].s.deliveries)
			rc = stage(ls, J_DLV, part, keep[i].off, keep[i].s.deliveries);
	}
	if (rc == 0)
		rc = journal_flush(ls, durable(&cfg), !lazy);
	if (rc == 0 && lazy)
		cg_advance(ls->g, part, off);
	else if (rc == 0)
		rc = cg_commit(ls->g, part, off, 0, end, durable(&cfg));
	if (rc < 0)
		goto out;
	drop_extras_from(lp, eff);
	clear_window(lp, eff);
	for (size_t i = 0; rc == 0 && i < nkeep; i++) {
		struct extra *e;

		rc = add_extra(lp, keep[i].off, &e);
		if (rc == 0)
			e->s = keep[i].s;
	}
	lp->saved = off;
	recount(lp);	/* redriven ones below stay as they are */
out:
	free(keep);
	pthread_mutex_unlock(&ls->lock);
	topic_ready(ls->t);	/* even after an error: some of it may be done */
	return rc;
}

/* ---- timers ---- */

int lease_tick(struct lease *ls, int64_t now, uint64_t sync_ms, int expire,
	       int64_t *next_ms)
{
	struct cfg_topic cfg;
	int64_t next = INT64_MAX;
	int avail = 0, fd = -1, rc;
	uint32_t n;

	*next_ms = INT64_MAX;
	if (topic_cfg(ls->t, &cfg) < 0)
		return 0;
	pthread_mutex_lock(&ls->lock);
	ls->sync_ms = sync_ms;
	ls->durable = durable(&cfg);
	if (ls->dead) {
		pthread_mutex_unlock(&ls->lock);
		return 0;
	}
	/* A follower's leases wait: it hands nothing out, and must not
	 * dead-letter what its leader's consumers may still finish. */
	n = expire ? topic_nparts(ls->t) : 0;
	for (uint32_t part = 0; part < n; part++) {
		struct lpart *lp = &ls->p[part];

		if (!lp->inflight && !lp->waiting)
			continue;
		for (size_t i = 0; i < lp->nx; i++) {
			struct slot *s = &lp->x[i].s;
			uint64_t off = lp->x[i].off;

			if (s->state == S_FLIGHT && s->due <= now) {
				fail(ls, &cfg, part, off, s, "expired", now);
				avail = 1;
				i = (size_t)-1;	/* the array may have changed */
				continue;
			}
			if (s->state == S_RETRY && s->due <= now)
				avail = 1;
			else if (s->state == S_FLIGHT || s->state == S_RETRY)
				next = s->due < next ? s->due : next;
		}
		for (uint64_t o = lp->floor; o < lp->hwm && (lp->inflight || lp->waiting); o++) {
			struct slot *s = slot(lp, o);

			if (s->state == S_FLIGHT && s->due <= now) {
				fail(ls, &cfg, part, o, s, "expired", now);
				avail = 1;
			}
			if (s->state == S_RETRY && s->due <= now)
				avail = 1;
			else if (s->state == S_FLIGHT || s->state == S_RETRY)
				next = s->due < next ? s->due : next;
		}
		advance(ls, part);
	}
	ls->announced = next;
	(void)journal_flush(ls, durable(&cfg), cfg.sync == CFG_SYNC_ALWAYS);
	if (ls->dirty_since) {
		int64_t at = ls->dirty_since + (int64_t)sync_ms;

		if (at <= now) {
			fd = dup(ls->jfd);
			ls->dirty_since = 0;
		} else if (at < next) {
			next = at;
		}
	}
	pthread_mutex_unlock(&ls->lock);
	if (fd >= 0) {
		/* Outside the lock: acks go on while the disk works. */
		rc = io_sync(fd);
		close(fd);
		if (rc < 0) {
			pthread_mutex_lock(&ls->lock);
			ls->err = -EIO;
			pthread_mutex_unlock(&ls->lock);
			fprintf(stderr, "mqfs: %s/" JOURNAL ": sync failed; leases stop until remount\n",
				ls->dir);
		}
	}
	*next_ms = next;
	return avail;
}

void lease_stat(struct lease *ls, uint32_t part, struct lease_stat *st)
{
	struct lpart *lp = &ls->p[part];

	pthread_mutex_lock(&ls->lock);
	st->in_flight = lp->inflight;
	st->retry = lp->waiting;
	st->dead = dlq_count_part(ls->dlq, part);
	pthread_mutex_unlock(&ls->lock);
}

/* ---- dead letters ---- */

static void copy_entry(struct dlq_entry *to, const struct dlq_entry *from)
{
	memcpy(to, from, offsetof(struct dlq_entry, reason));
	snprintf(to->reason, sizeof(to->reason), "%s", from->reason);
}

int lease_dead_next(struct lease *ls, uint64_t after, struct dlq_entry *e)
{
	int rc = -ENOENT;
	size_t i;

	pthread_mutex_lock(&ls->lock);
	i = dlq_after(ls->dlq, after);
	while (i < dlq_count(ls->dlq) && dlq_at(ls->dlq, i)->hidden)
		i++;
	if (!ls->dead && i < dlq_count(ls->dlq)) {
		copy_entry(e, dlq_at(ls->dlq, i));
		rc = 0;
	}
	pthread_mutex_unlock(&ls->lock);
	return rc;
}

/* Index of the letter named or numbered; -1 if none (or hidden: a
 * redriven letter is not a dead letter any more). lock held. */
static ssize_t dead_index(struct lease *ls, uint64_t id, const char *name)
{
	uint32_t part;
	uint64_t off;
	ssize_t i;

	if (!name)
		i = dlq_find_id(ls->dlq, id);
	else if (dlq_parse_name(name, strlen(name), &part, &off) < 0)
		i = -1;
	else
		i = dlq_find(ls->dlq, part, off);
	return i >= 0 && dlq_at(ls->dlq, (size_t)i)->hidden ? -1 : i;
}

int lease_dead_find(struct lease *ls, uint64_t id, const char *name,
		    struct dlq_entry *e)
{
	ssize_t i;

	pthread_mutex_lock(&ls->lock);
	i = ls->dead ? -1 : dead_index(ls, id, name);
	if (i >= 0)
		copy_entry(e, dlq_at(ls->dlq, (size_t)i));
	pthread_mutex_unlock(&ls->lock);
	return i >= 0 ? 0 : -ENOENT;
}

int lease_dead_read(struct lease *ls, uint64_t id, char **text, size_t *len)
{
	ssize_t i;
	int rc;

	pthread_mutex_lock(&ls->lock);
	i = ls->dead ? -1 : dead_index(ls, id, NULL);
	rc = i < 0 ? -ENOENT : dlq_read(ls->dlq, (size_t)i, text, len);
	pthread_mutex_unlock(&ls->lock);
	return rc;
}

int lease_dead_remove(struct lease *ls, const char *name)
{
	struct cfg_topic cfg;
	ssize_t i;
	int rc = topic_cfg(ls->t, &cfg);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&ls->lock);
	i = ls->dead ? -1 : dead_index(ls, 0, name);
	rc = i < 0 ? -ENOENT : dlq_remove(ls->dlq, (size_t)i, durable(&cfg));
	pthread_mutex_unlock(&ls->lock);
	return rc;
}

/* ---- dead letters of a replica ---- */

uint64_t lease_dead_gen(struct lease *ls)
{
	uint64_t g;

	pthread_mutex_lock(&ls->lock);
	g = dlq_gen(ls->dlq);
	pthread_mutex_unlock(&ls->lock);
	return g;
}

int lease_dead_keys(struct lease *ls, struct lease_dead_key **out, size_t *n)
{
	struct lease_dead_key *k = NULL;
	size_t cnt;

	pthread_mutex_lock(&ls->lock);
	cnt = dlq_count(ls->dlq);
	if (cnt && !(k = malloc(cnt * sizeof(*k)))) {
		pthread_mutex_unlock(&ls->lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cnt; i++) {
		const struct dlq_entry *d = dlq_at(ls->dlq, i);

		k[i].part = d->part;
		k[i].off = d->off;
		k[i].seq = d->seq;
	}
	pthread_mutex_unlock(&ls->lock);
	*out = k;
	*n = cnt;
	return 0;
}

int lease_dead_get(struct lease *ls, uint32_t part, uint64_t off,
		   struct dlq_entry *e, char **text, size_t *len)
{
	ssize_t i;
	int rc;

	pthread_mutex_lock(&ls->lock);
	i = ls->dead ? -1 : dlq_find(ls->dlq, part, off);
	if (i < 0) {
		rc = -ENOENT;
	} else {
		copy_entry(e, dlq_at(ls->dlq, (size_t)i));
		rc = dlq_read(ls->dlq, (size_t)i, text, len);
	}
	pthread_mutex_unlock(&ls->lock);
	return rc;
}

int lease_dead_import(struct lease *ls, const struct dlq_entry *e, const char *line)
{
	struct dlq_entry *c;
	struct cfg_topic cfg;
	ssize_t i;
	int rc = topic_cfg(ls->t, &cfg);

	if (rc < 0)
		return rc;
	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	copy_entry(c, e);
	c->hidden = 0;
	pthread_mutex_lock(&ls->lock);
	i = dlq_find(ls->dlq, e->part, e->off);
	if (ls->dead) {
		rc = ls->dead;
	} else if (i < 0 || dlq_at(ls->dlq, (size_t)i)->seq != e->seq) {
		c->id = topic_dead_id(ls->t);
		rc = c->id ? dlq_add(ls->dlq, c, line, durable(&cfg)) : -ENOSPC;
	}
	pthread_mutex_unlock(&ls->lock);
	free(c);
	return rc;
}

static int key_cmp(const void *a, const void *b)
{
	const struct lease_dead_key *x = a, *y = b;

	if (x->part != y->part)
		return x->part < y->part ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

int lease_dead_keep(struct lease *ls, struct lease_dead_key *keys, size_t n)
{
	struct cfg_topic cfg;
	int rc = topic_cfg(ls->t, &cfg);

	if (rc < 0)
		return rc;
	qsort(keys, n, sizeof(*keys), key_cmp);
	pthread_mutex_lock(&ls->lock);
	for (size_t i = 0; rc == 0 && !ls->dead && i < dlq_count(ls->dlq);) {
		const struct dlq_entry *d = dlq_at(ls->dlq, i);
		struct lease_dead_key k = { .part = d->part, .off = d->off };

		if (bsearch(&k, keys, n, sizeof(*keys), key_cmp))
			i++;
		else
			rc = dlq_remove(ls->dlq, i, durable(&cfg));
	}
	pthread_mutex_unlock(&ls->lock);
	return rc;
}

/* Make the dead letter at index i pending again. lock held. */
/*
 * Make the dead letter at index i pending again; the caller flushes the
 * journal. Returns 1 if its file is to be removed after that flush (the
 * message goes out from the partition), 0 if it stays hidden, -errno.
 * lock held.
 */
static int revive(struct lease *ls, size_t i)
{
	const struct dlq_entry *d = dlq_at(ls->dlq, i);
	struct part_stat st;
	uint32_t part = d->part, rseq = (uint32_t)d->seq;
	uint64_t off = d->off;
	struct lpart *lp = &ls->p[part];
	struct slot *s;
	int rc;

	if (part >= topic_nparts(ls->t))
		return -EINVAL;	/* a letter copied in from elsewhere */
	part_stat(topic_part(ls->t, part), &st);
	if (lp->floor < st.first) {
		/* move the window to what the partition holds, so that "new
		 * again" below means the partition still has it */
		rc = drop_gone(ls, part, st.first);
		if (rc < 0)
			return rc;
		d = dlq_at(ls->dlq, i);
	}
	if (off >= lp->hwm && off < st.first)
		return -EBUSY;	/* leases below the retained start: later */
	if (off >= lp->hwm) {
		/* Not handed out since a rewind: it goes out as a new message
		 * (unless acked ahead since: then it is new again). */
		if (off < lp->top)
			memset(slot(lp, off), 0, sizeof(struct slot));
		rc = stage(ls, J_REDRIVE, part, off, 0);
		return rc < 0 ? rc : 1;
	}
	if (off < lp->floor) {
		struct extra *e;

		rc = add_extra(lp, off, &e);
		if (rc < 0)
			return rc;
		s = &e->s;
	} else {
		s = slot(lp, off);
		if (s->state != S_DONE)	/* out again after a rewind anyway */
			return 1;
	}
	leave(lp, s);
	memset(s, 0, sizeof(*s));
	s->state = S_RETRY;
	s->redriven = 1;
	s->rseq = rseq;
	lp->waiting++;
	/* The letter stays, hidden: it holds the line until the message is
	 * finished again, whatever retention does to the partition. */
	dlq_set_hidden(ls->dlq, i, 1);
	return stage(ls, J_REDRIVE, part, off, rseq);
}

int lease_redrive(struct lease *ls, const char *buf, size_t len)
{
	struct cfg_topic cfg;
	const char *p = buf, *end = buf + len;
	int all = 0, r, rc = topic_cfg(ls->t, &cfg);
	uint8_t *sel = NULL;

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&ls->lock);
	rc = ls->dead ? ls->dead : ls->err;
	if (rc < 0)
		goto out;
	sel = calloc(dlq_count(ls->dlq) + 1, 1);
	if (!sel) {
		rc = -ENOMEM;
		goto out;
	}
	/* Check every line first; nothing changes unless all are good. */
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end, *s = p;
		uint32_t part;
		uint64_t off;
		ssize_t i;

		p = e + (nl != NULL);
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			e--;
		if (s == e)
			continue;
		if (e - s == 3 && memcmp(s, "all", 3) == 0) {
			all = 1;
			continue;
		}
		if (dlq_parse_name(s, (size_t)(e - s), &part, &off) < 0 ||
		    part >= topic_nparts(ls->t) ||
		    (i = dlq_find(ls->dlq, part, off)) < 0 ||
		    dlq_at(ls->dlq, (size_t)i)->hidden) {
			rc = -EINVAL;
			break;
		}
		sel[i] = 1;
	}
	if (rc < 0)
		goto out;
	if (all)
		for (size_t i = 0; i < dlq_count(ls->dlq); i++)
			sel[i] = !dlq_at(ls->dlq, i)->hidden &&
				 dlq_at(ls->dlq, i)->part < topic_nparts(ls->t);
	/* Back to the group in their original order: by partition and
	 * offset, which is the order hand-outs take them in anyway. Going
	 * from the end keeps the indexes of the rest valid. */
	for (size_t i = dlq_count(ls->dlq); i-- > 0 && rc >= 0;) {
		if (!sel[i])
			continue;
		rc = revive(ls, i);
		sel[i] = rc == 1 ? 2 : 1;
	}
	/* One journal write for all of them (they changed memory even if one
	 * failed), synced: then the files that are done with. */
	r = journal_flush(ls, durable(&cfg), 1);
	rc = rc < 0 ? rc : r;
	for (size_t i = dlq_count(ls->dlq); i-- > 0 && r == 0;)
		if (sel[i] == 2) {
			int x = dlq_remove(ls->dlq, i, durable(&cfg));

			if (x < 0 && rc == 0)
				rc = x;
		}
out:
	free(sel);
	pthread_mutex_unlock(&ls->lock);
	topic_ready(ls->t);
	return rc;
}

/* ---- open, compact, close ---- */

static int open_journal(struct lease *ls)
{
	char path[PATH_MAX + 16];
	off_t size;

	snprintf(path, sizeof(path), "%s/" JOURNAL, ls->dir);
	if (ls->jfd >= 0)
		close(ls->jfd);
	ls->jfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (ls->jfd < 0)
		return -errno;
	size = lseek(ls->jfd, 0, SEEK_END);
	if (size < 0)
		return -errno;
	ls->jbytes = (uint64_t)size;
	return 0;
}

/*
 * Rewrite the journal as the state now, after writing the offsets files
 * the floors moved past. lock held.
 */
static int compact(struct lease *ls, int durable_)
{
	uint32_t n = topic_nparts(ls->t);
	int rc = 0;

	/* Callers flushed what they staged: the records below say it all. */
	if (ls->dead)
		return ls->dead;
	for (uint32_t part = 0; part < n && rc == 0; part++) {
		struct lpart *lp = &ls->p[part];

		if (lp->floor == lp->saved)
			continue;
		rc = cg_commit(ls->g, part, lp->floor, 0, lp->floor, durable_);
		if (rc == 0)
			lp->saved = lp->floor;
	}
	if (rc < 0)
		return rc;
	ls->jn = 0;
	for (uint32_t part = 0; part < n && rc == 0; part++) {
		struct lpart *lp = &ls->p[part];

		rc = stage(ls, J_BASE, part, lp->floor, 0);
		for (uint64_t o = lp->floor; o < lp->top && rc == 0; o++)
			if (slot(lp, o)->state == S_DONE)
				rc = stage(ls, J_ACK, part, o, 1);
		if (rc == 0 && lp->hwm > lp->floor)
			rc = stage(ls, J_HWM, part, lp->hwm, 0);
		for (uint64_t o = lp->floor; o < lp->hwm && rc == 0; o++) {
			struct slot *s = slot(lp, o);

			if (s->state == S_DONE)
				continue;
			if (s->redriven)
				rc = stage(ls, J_REDRIVE, part, o, s->rseq);
			if (rc == 0 && s->deliveries != (s->redriven ? 0u : 1u))
				rc = stage(ls, J_DLV, part, o, s->deliveries);
		}
		for (size_t i = 0; i < lp->nx && rc == 0; i++) {
			rc = stage(ls, J_REDRIVE, part, lp->x[i].off, lp->x[i].s.rseq);
			if (rc == 0 && lp->x[i].s.deliveries)
				rc = stage(ls, J_DLV, part, lp->x[i].off, lp->x[i].s.deliveries);
		}
	}
	if (rc == 0) {
		seal_records(ls->jbuf, ls->jn);
		rc = io_publish(ls->dir, JOURNAL, ls->jbuf, ls->jn * REC, durable_);
	}
	if (rc == 0)
		rc = open_journal(ls);
	if (rc == 0) {
		ls->dirty_since = 0;
		ls->jcompact = ls->jbytes;
	}
	ls->jn = 0;
	return rc;
}

/*
 * A power loss took messages the journal had seen (sync=none, or the
 * partition's own unsynced tail): forget what lies past the end, so that
 * the offsets are handed out when they are written again.
 */
static void clamp(struct lpart *lp, uint64_t next)
{
	while (lp->nx && lp->x[lp->nx - 1].off >= next)
		lp->nx--;
	if (lp->floor > next) {
		clear_window(lp, next);
		return;
	}
	for (uint64_t o = next; o < lp->top; o++)
		memset(slot(lp, o), 0, sizeof(struct slot));
	if (lp->top > next)
		lp->top = next;
	if (lp->hwm > next)
		lp->hwm = next;
}

/* Replay finished a redriven message: its letter may still be there if the
 * crash came between the ACK and the unlink. Remember it for lease_open. */
static void note_finished_redrive(struct lease *ls, uint32_t part, uint64_t off,
				  uint32_t rseq)
{
	if (mq_grow(&ls->fin, &ls->finc, ls->nfin + 1, sizeof(*ls->fin), 16) < 0)
		return;	/* the letter then shows as dead again: not lost */
	ls->fin[ls->nfin++] = (struct jrec){ .part = (uint16_t)part, .off = off, .n = rseq };
}

static int was_finished_redrive(const struct lease *ls, const struct dlq_entry *d)
{
	for (size_t i = 0; i < ls->nfin; i++)
		if (ls->fin[i].part == d->part && ls->fin[i].off == d->off &&
		    ls->fin[i].n == (uint32_t)d->seq)
			return 1;
	return 0;
}

/* Apply one journal record. lock held (or not yet shared). */
static int replay(struct lease *ls, const struct jrec *r, uint32_t n)
{
	struct lpart *lp;
	struct slot *s;
	int rc = 0;

	if (r->part >= n)
		return 0;	/* cannot happen: partitions never go away */
	lp = &ls->p[r->part];
	switch (r->type) {
	case J_BASE:
		drop_extras_from(lp, r->off);
		clear_window(lp, r->off);
		break;
	case J_HWM:
		if (r->off <= lp->hwm)
			break;
		rc = widen(lp, r->off);
		for (uint64_t o = lp->hwm; rc == 0 && o < r->off; o++) {
			s = slot(lp, o);
			if (s->state != S_DONE) {
				s->state = S_RETRY;
				s->deliveries = 1;
			}
		}
		if (rc == 0)
			lp->hwm = r->off;
		break;
	case J_DLV:
		s = find(lp, r->off);
		if (s && s->state != S_DONE)
			s->deliveries = r->n;
		break;
	case J_ACK:
		for (uint64_t o = r->off; rc == 0 && o - r->off < r->n; o++) {
			if (o < lp->floor) {
				struct extra *e = find_extra(lp, o);

				if (e) {
					note_finished_redrive(ls, r->part, o, e->s.rseq);
					drop_extra(lp, e);
				}
				continue;
			}
			rc = widen(lp, o + 1);
			if (rc == 0) {
				s = slot(lp, o);
				if (s->redriven && s->state != S_DONE)
					note_finished_redrive(ls, r->part, o, s->rseq);
				s->state = S_DONE;
				s->redriven = 0;
			}
		}
		if (rc == 0)
			advance(ls, r->part);
		break;
	case J_REDRIVE:
		s = NULL;
		if (r->off >= lp->hwm) {	/* new again (revive) */
			if (r->off < lp->top)
				memset(slot(lp, r->off), 0, sizeof(struct slot));
		} else if (r->off < lp->floor) {
			struct extra *e;

			rc = add_extra(lp, r->off, &e);
			s = rc == 0 ? &e->s : NULL;
		} else {
			s = slot(lp, r->off);
		}
		if (s) {
			memset(s, 0, sizeof(*s));
			s->state = S_RETRY;
			s->redriven = 1;
			s->rseq = r->n;
		}
		break;
	case J_DEAD:
		s = find(lp, r->off);
		if (s && s->state != S_DONE) {
			s->dying = 1;
			s->dseq = r->n;
		}
		break;
	default:
		return -EINVAL;
	}
	return rc;
}

static int load_journal(struct lease *ls, uint32_t nparts)
{
	struct jrec recs[1024];
	uint64_t pos = 0;
	int rc = open_journal(ls);

	while (rc == 0) {
		ssize_t got = io_pread(ls->jfd, recs, sizeof(recs), (off_t)pos);
		size_t k;

		if (got < 0)
			return (int)got;
		for (k = 0; k < (size_t)got / REC; k++) {
			if (recs[k].check != XXH3_64bits(&recs[k], 16) || recs[k].zero ||
			    replay(ls, &recs[k], nparts) < 0)
				break;
			pos += REC;
		}
		if (k < (size_t)got / REC || (size_t)got < sizeof(recs))
			break;
	}
	/* BASE records move floors back without telling the group */
	for (uint32_t part = 0; part < nparts; part++)
		cg_advance(ls->g, part, ls->p[part].floor);
	if (rc == 0 && pos != ls->jbytes) {
		/* Cut it, so that records appended later are read back
		 * (shrinking needs no free space). */
		fprintf(stderr, "mqfs: %s/" JOURNAL ": cut at byte %llu of %llu (torn tail)\n",
			ls->dir, (unsigned long long)pos, (unsigned long long)ls->jbytes);
		rc = io_truncate(ls->jfd, (off_t)pos);
		if (rc == 0)
			ls->jbytes = pos;
	}
	return rc;
}

int lease_open(struct topic *t, struct cg *g, const char *dir,
	       const struct cfg_topic *c, struct lease **out)
{
	struct lease *ls = calloc(1, sizeof(*ls));
	char ddir[PATH_MAX + 8];
	struct cfg_topic cfg = *c;
	uint32_t n = topic_nparts(t);
	int rc;

	if (!ls)
		return -ENOMEM;
	pthread_mutex_init(&ls->lock, NULL);
	ls->t = t;
	ls->g = g;
	ls->jfd = -1;
	ls->announced = INT64_MAX;
	ls->sync_ms = 10;	/* until lease_tick says */
	ls->durable = durable(c);
	rc = snprintf(ls->dir, sizeof(ls->dir), "%s", dir) >= (int)sizeof(ls->dir) ?
	     -ENAMETOOLONG : 0;
	for (uint32_t part = 0; part < MQ_MAX_PARTITIONS; part++) {
		struct lpart *lp = &ls->p[part];

		lp->floor = lp->hwm = lp->top = lp->saved = cg_committed(g, part);
	}
	if (rc == 0)
		rc = load_journal(ls, n);
	snprintf(ddir, sizeof(ddir), "%s/dlq", dir);
	if (rc == 0)
		rc = dlq_open(ddir, &ls->dlq);
	if (rc < 0)
		goto out_free;
	for (uint32_t part = 0; part < n; part++) {
		struct part_stat st;

		part_stat(topic_part(t, part), &st);
		clamp(&ls->p[part], st.next);
		cg_advance(g, part, ls->p[part].floor);
	}
	/* ids first: lookups by name go through them */
	for (size_t i = 0; i < dlq_count(ls->dlq); i++)
		dlq_set_id(ls->dlq, i, topic_dead_id(t));
	for (size_t i = 0; i < dlq_count(ls->dlq); i++) {
		const struct dlq_entry *d = dlq_at(ls->dlq, i);
		struct slot *s = d->part < n ? find(&ls->p[d->part], d->off) : NULL;

		if (was_finished_redrive(ls, d)) {
			/* redriven, acked, and the crash came before the unlink */
			rc = dlq_remove(ls->dlq, i--, durable(&cfg));
		} else if (!s || s->state == S_DONE) {
			continue;	/* dead, as it says */
		} else if (s->dying && s->dseq == (uint32_t)d->seq) {
			/* dead-lettered (again), and the crash came before the ack */
			s->redriven = 0;
			rc = finish(ls, d->part, d->off);
			advance(ls, d->part);
		} else if (s->redriven && s->rseq == (uint32_t)d->seq) {
			dlq_set_hidden(ls->dlq, i, 1);	/* redriven: it holds the line */
		}
		/* else: an old letter of a message that a rewind made pending
		 * again: both stay */
		if (rc < 0)
			goto out_free;
	}
	free(ls->fin);
	ls->fin = NULL;
	for (uint32_t part = 0; part < n; part++) {
		struct lpart *lp = &ls->p[part];

		recount(lp);
		/* Leases died with the last run: what was leased is
		 * available now, and what used its last delivery is dead. */
		for (uint64_t o = lp->floor; o < lp->hwm; o++) {
			struct slot *s = slot(lp, o);

			if (s->state != S_RETRY)
				continue;
			s->due = 0;
			if (cfg.max_deliveries && s->deliveries >= cfg.max_deliveries)
				(void)bury(ls, &cfg, part, o, s, "expired");
		}
		for (size_t i = 0; i < lp->nx; i++) {
			struct slot *s = &lp->x[i].s;

			if (cfg.max_deliveries && s->deliveries >= cfg.max_deliveries &&
			    bury(ls, &cfg, part, lp->x[i].off, s, "expired") == 0)
				i--;
		}
		advance(ls, part);
	}
	/* What the checks above changed, then a compacted journal. Neither
	 * may keep the mount from coming up (a full disk is when consumers
	 * are needed most): without them leases answer EIO, or go on with
	 * the journal as it was. */
	rc = journal_flush(ls, durable(&cfg), 0);
	if (rc == 0)
		rc = compact(ls, durable(&cfg));
	if (rc < 0)
		fprintf(stderr, "mqfs: %s/" JOURNAL ": not compacted (%s)%s\n", ls->dir,
			strerror(-rc), ls->err ? "; leases stop until remount" : "");
	*out = ls;
	return 0;
out_free:
	free(ls->fin);
	dlq_free(ls->dlq);
	if (ls->jfd >= 0)
		close(ls->jfd);
	for (uint32_t part = 0; part < MQ_MAX_PARTITIONS; part++) {
		free(ls->p[part].ring);
		free(ls->p[part].x);
	}
	free(ls->jbuf);
	pthread_mutex_destroy(&ls->lock);
	free(ls);
	return rc;
}

void lease_kill(struct lease *ls)
{
	pthread_mutex_lock(&ls->lock);
	ls->dead = -ENOENT;
	if (ls->jfd >= 0)
		close(ls->jfd);
	ls->jfd = -1;
	pthread_mutex_unlock(&ls->lock);
}

void lease_close(struct lease *ls)
{
	struct cfg_topic cfg;
	int gone;

	if (!ls)
		return;
	gone = topic_cfg(ls->t, &cfg) == -ENOENT;
	pthread_mutex_lock(&ls->lock);
	if (!ls->dead && !ls->err && !gone)
		(void)compact(ls, durable(&cfg));
	pthread_mutex_unlock(&ls->lock);
	dlq_free(ls->dlq);
	if (ls->jfd >= 0)
		close(ls->jfd);
	for (uint32_t part = 0; part < MQ_MAX_PARTITIONS; part++) {
		free(ls->p[part].ring);
		free(ls->p[part].x);
	}
	free(ls->jbuf);
	free(ls->scratch);
	pthread_mutex_destroy(&ls->lock);
	free(ls);
}
