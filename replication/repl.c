/*
 * repl.c - the replicator: one thread per peer, the in-sync set, and the
 * acks=all waiters.
 */
#define _GNU_SOURCE
#include "repl.h"
#include "../core/dlq.h"
#include "../core/group.h"
#include "../core/lease.h"
#include "../core/mq.h"
#include "../core/partition.h"
#include "../core/replica.h"
#include "../core/segment.h"
#include "../core/topic.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* Frames are written out in writes of at most this size (the FUSE write
 * size), whole frames each. */
#define FLUSH_AT (1u << 20)
/* Most messages and line bytes in one MSGS frame: four fit a write. */
#define MSGS_MAX 2048
#define MSGS_BYTES (192u << 10)
/* While a peer catches up (nobody waits for it), it is fsynced this
 * seldom: the peer's disk writes back in the background meanwhile. */
#define SYNC_EVERY (256u << 20)
#define NONE UINT64_MAX
#define IDLE_MS 100		/* control state (offsets, letters) is polled */
#define PROBE_MS 200		/* an idle peer is probed this often */
#define FULL_MS 1000		/* every topic is looked at this often */
#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 2000

enum pstate { P_CONNECTING, P_OK, P_UNREACHABLE, P_FENCED, P_REFUSED, P_IDLE };
static const char *const state_name[] = {
	"connecting", "ok", "unreachable", "fenced", "refused", "idle",
};

/* What the peer was told about one group. Thread-owned. */
struct mgroup {
	uint32_t gid;
	int seen;
	uint64_t *offs;			/* committed offsets sent; owned */
	uint32_t noffs;
	uint64_t dgen;			/* lease_dead_gen sent; NONE = nothing */
	struct lease_dead_key *keys;	/* letters sent, by (part, off); owned */
	size_t nkeys;
};

/* What the peer holds of one topic. sent, first, trunc and the groups are
 * the thread's; acked and the arrays' sizes change under r->lock. */
struct mtopic {
	uint32_t id;			/* the topic's id; 0 = a free slot */
	uint64_t uid;
	int created;			/* TOPIC sent in this connection */
	char cfg[1024];
	size_t cfglen;
	uint32_t nparts;
	uint64_t *sent;			/* next offset sent, per partition */
	uint64_t *first;		/* first offset the peer holds (TRIM) */
	uint64_t *trunc;		/* a TRUNC to send, or NONE */
	uint64_t *acked;		/* durable on the peer; r->lock */
	uint64_t gsig;			/* the group list sent (a hash) */
	uint64_t gen;			/* topic_gen when last looked at */
	int pending;			/* messages left for the next cycle */
	struct mgroup *g;
	size_t ng, gcap;
};

/* A topic as the peer described it when we connected. */
struct seed {
	char name[MQ_NAME_MAX + 1];
	uint64_t uid;
	uint32_t n;
	struct seed_part {
		uint64_t first, next;
		size_t nh, hcap;
		struct part_epoch *h;	/* the epoch history; owned */
	} *p;				/* owned */
};

struct peer {
	struct repl *r;
	char path[PATH_MAX];		/* immutable */
	char file[PATH_MAX + 16];	/* path/.mq/repl; immutable */
	pthread_t th;
	int started;
	/* r->lock: */
	int in_sync;
	enum pstate state;
	char error[256];
	struct mtopic *mt;		/* the slots; grown under r->lock */
	size_t nmt, mtcap;
	/* the thread's: */
	int connected;			/* the mirror describes the peer */
	int fd;				/* the stream: open while there is
					 * something to send, so that an idle
					 * peer can be unmounted; -1 = closed */
	dev_t dev;			/* the endpoint's device at connect: a
					 * remount makes another one */
	size_t unsynced;		/* bytes written since the last fsync */
	char *buf;			/* frames not written yet */
	size_t len, cap;
	int werr;			/* why fbegin failed */
	uint64_t tsig;			/* the topic list sent (a hash) */
	int64_t caught_up_ms;		/* monotonic; written by the thread
					 * under r->lock, read by the watchdog */
	int64_t io_ms;			/* the last I/O with the peer, monotonic */
	int64_t sent_ms;		/* the last frames written, monotonic */
	int64_t full_ms;		/* the last full pass, monotonic */
	int retry_ms;
	struct seed *seed;		/* the peer's state at connect; owned */
	size_t nseed, seedcap;
	struct seg_entry ents[MSGS_MAX];
};

struct repl {
	struct mq *m;			/* borrowed */
	struct cfg_node opts;		/* immutable */
	pthread_mutex_t lock;
	struct peer *peers;		/* immutable array */
	size_t npeers;
	struct repl_wait *waiters;	/* lock */
	int stopped;			/* repl_stop was called; lock */
	pthread_t watchdog;
	int watchdog_started;
	int stuck;			/* a thread did not stop: never freed */
	/* Sleeping peer threads wait on cond under kick_lock (taken alone);
	 * the changed hook counts changes and wakes them. */
	pthread_mutex_t kick_lock;
	pthread_cond_t cond;		/* CLOCK_MONOTONIC */
	atomic_uint_fast64_t changes;
	atomic_int sleeping;
	atomic_int stop;
};

/* ---- waking ---- */

static void changed(void *arg)
{
	struct repl *r = arg;

	/* A follower's appends come from its leader: nothing to send. */
	if (mq_role(r->m) != CFG_ROLE_LEADER)
		return;
	atomic_fetch_add(&r->changes, 1);
	if (atomic_load(&r->sleeping)) {
		pthread_mutex_lock(&r->kick_lock);
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->kick_lock);
	}
}

/* Sleep up to ms, or until something changes after *seen (seen NULL:
 * the whole time, unless stopped). */
static void nap(struct repl *r, uint64_t *seen, int ms)
{
	uint64_t never = UINT64_MAX;

	struct timespec ts;
	int64_t at = mq_mono_ms() + ms;

	ts.tv_sec = at / 1000;
	ts.tv_nsec = (at % 1000) * 1000000;
	pthread_mutex_lock(&r->kick_lock);
	atomic_fetch_add(&r->sleeping, 1);
	if (!seen) {
		never = atomic_load(&r->changes);
		seen = &never;
	}
	while (!atomic_load(&r->stop) && (seen == &never || atomic_load(&r->changes) == *seen) &&
	       pthread_cond_timedwait(&r->cond, &r->kick_lock, &ts) == 0)
		;
	atomic_fetch_sub(&r->sleeping, 1);
	pthread_mutex_unlock(&r->kick_lock);
	*seen = atomic_load(&r->changes);
}

/* ---- the mirror ---- */

static void free_groups(struct mtopic *mt)
{
	for (size_t i = 0; i < mt->ng; i++) {
		free(mt->g[i].offs);
		free(mt->g[i].keys);
	}
	free(mt->g);
	mt->g = NULL;
	mt->ng = mt->gcap = 0;
}

/* r->lock held. */
static void free_mtopic(struct mtopic *mt)
{
	free(mt->sent);
	free(mt->first);
	free(mt->trunc);
	free(mt->acked);
	free_groups(mt);
	memset(mt, 0, sizeof(*mt));
}

static void free_seed(struct peer *pe)
{
	for (size_t i = 0; i < pe->nseed; i++) {
		for (uint32_t k = 0; k < pe->seed[i].n; k++)
			free(pe->seed[i].p[k].h);
		free(pe->seed[i].p);
	}
	free(pe->seed);
	pe->seed = NULL;
	pe->nseed = pe->seedcap = 0;
}

/* Forget everything about the peer (a new connection starts over). */
static void reset_mirror(struct peer *pe)
{
	pthread_mutex_lock(&pe->r->lock);
	for (size_t i = 0; i < pe->nmt; i++)
		free_mtopic(&pe->mt[i]);
	pe->nmt = 0;
	pthread_mutex_unlock(&pe->r->lock);
	pe->tsig = 0;
}

static struct mtopic *mirror_find(struct peer *pe, uint32_t id)
{
	for (size_t i = 0; i < pe->nmt; i++)
		if (pe->mt[i].id == id)
			return &pe->mt[i];
	return NULL;
}

/* Grow mt's per-partition arrays to n (new partitions: empty on the
 * peer). r->lock held. */
static int grow_parts(struct mtopic *mt, uint32_t n)
{
	uint64_t **arr[] = { &mt->sent, &mt->first, &mt->trunc, &mt->acked };

	if (n <= mt->nparts)
		return 0;
	for (size_t k = 0; k < 4; k++) {
		uint64_t *a = realloc(*arr[k], n * sizeof(*a));

		if (!a)
			return -ENOMEM;
		*arr[k] = a;
		for (uint32_t i = mt->nparts; i < n; i++)
			a[i] = k == 2 ? NONE : 0;
	}
	mt->nparts = n;
	return 0;
}

/* The mirror of topic t, made on first sight from what the peer said at
 * connect (seed): where its log diverges from ours, it is truncated. */
static struct mtopic *mirror_get(struct peer *pe, struct topic *t)
{
	struct mtopic *mt = mirror_find(pe, topic_id(t));
	struct seed *sd = NULL;
	uint32_t n = topic_nparts(t);
	int rc = 0;

	if (mt)
		return mt;
	for (size_t i = 0; i < pe->nseed; i++)
		if (pe->seed[i].uid == topic_uid(t) && !strcmp(pe->seed[i].name, topic_name(t)))
			sd = &pe->seed[i];
	pthread_mutex_lock(&pe->r->lock);
	for (size_t i = 0; i < pe->nmt && !mt; i++)
		if (pe->mt[i].id == 0)
			mt = &pe->mt[i];	/* a deleted topic's slot */
	if (!mt) {
		if (mq_grow(&pe->mt, &pe->mtcap, pe->nmt + 1, sizeof(*pe->mt), 16) < 0) {
			pthread_mutex_unlock(&pe->r->lock);
			return NULL;
		}
		mt = &pe->mt[pe->nmt++];
		memset(mt, 0, sizeof(*mt));
	}
	mt->id = topic_id(t);
	mt->uid = topic_uid(t);
	rc = grow_parts(mt, n);
	if (rc < 0) {
		free_mtopic(mt);
		pthread_mutex_unlock(&pe->r->lock);
		return NULL;
	}
	for (uint32_t i = 0; sd && i < n && i < sd->n; i++) {
		struct part_stat st;
		struct seed_part *sp = &sd->p[i];
		struct part_epoch *h;
		size_t nh, got;
		uint64_t cut;

		/* the history and the end, as of one moment */
		part_stat(topic_part(t, i), &st);
		nh = part_epochs(topic_part(t, i), NULL, 0);
		h = malloc((nh + 1) * sizeof(*h));
		if (!h) {
			free_mtopic(mt);
			pthread_mutex_unlock(&pe->r->lock);
			return NULL;
		}
		got = part_epochs(topic_part(t, i), h, nh + 1);
		nh = got < nh + 1 ? got : nh + 1;	/* grew meanwhile? */
		cut = replica_diverge(h, nh, st.next, sp->h, sp->nh, sp->next);
		free(h);
		if (cut < sp->next) {
			fprintf(stderr, "mqfs: replica %s: %s/%" PRIu32 " diverges at offset %" PRIu64
				" (it holds up to %" PRIu64 "): truncating it\n",
				pe->path, topic_name(t), i, cut, sp->next);
			mt->trunc[i] = cut;
		}
		mt->sent[i] = cut;
		mt->first[i] = sp->first;
		/* What the peer says it holds may not be on its disk yet (a
		 * stream cut before its fsync): acked after our first fsync,
		 * which syncs all of it (replica_rx_sync). */
		mt->acked[i] = 0;
	}
	pthread_mutex_unlock(&pe->r->lock);
	return mt;
}

static struct mgroup *group_get(struct mtopic *mt, uint32_t gid)
{
	struct mgroup *g;

	for (size_t i = 0; i < mt->ng; i++)
		if (mt->g[i].gid == gid)
			return &mt->g[i];
	if (mq_grow(&mt->g, &mt->gcap, mt->ng + 1, sizeof(*mt->g), 4) < 0)
		return NULL;
	g = &mt->g[mt->ng++];
	memset(g, 0, sizeof(*g));
	g->gid = gid;
	g->dgen = NONE;
	return g;
}

/* ---- frames ---- */

/* Open the stream again after an idle time: the same mount, or the
 * mirror is void (-ESTALE: connect again). */
static int reopen(struct peer *pe)
{
	struct stat st;

	pe->fd = open(pe->file, O_WRONLY | O_CLOEXEC);
	if (pe->fd < 0)
		return -errno;
	if (fstat(pe->fd, &st) < 0 || st.st_dev != pe->dev)
		return -ESTALE;
	return 0;
}

static int flush(struct peer *pe)
{
	size_t done = 0;

	if (pe->fd < 0) {
		int rc = reopen(pe);

		if (rc < 0)
			return rc;
	}
	while (done < pe->len) {
		ssize_t n = write(pe->fd, pe->buf + done, pe->len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	pe->unsynced += pe->len;
	pe->len = 0;
	pe->sent_ms = mq_mono_ms();
	return 0;
}

/*
 * Start a frame of type with room for body bytes: *h is its header (the
 * caller sets the fields of its type), the return value its body. Frames
 * go out in writes of at most FLUSH_AT holding whole frames, so that the
 * peer applies them from its request buffer without copying them: what is
 * buffered is written first if this frame could take it past FLUSH_AT.
 * NULL on failure, with the error in pe->werr.
 */
static char *fbegin(struct peer *pe, struct repl_hdr *h, int type, struct topic *t,
		    const char *group, size_t body)
{
	size_t tl = t ? strlen(topic_name(t)) : 0, gl = group ? strlen(group) : 0;
	size_t need = REPL_HDR + tl + gl + body;

	if (pe->len && pe->len + need > FLUSH_AT && (pe->werr = flush(pe)) < 0)
		return NULL;
	if (mq_grow(&pe->buf, &pe->cap, pe->len + need, 1, FLUSH_AT) < 0) {
		pe->werr = -ENOMEM;
		return NULL;
	}
	memset(h, 0, sizeof(*h));
	h->magic = REPL_MAGIC;
	h->type = (uint16_t)type;
	h->tlen = (uint16_t)tl;
	h->glen = (uint16_t)gl;
	h->uid = t ? topic_uid(t) : 0;
	memcpy(pe->buf + pe->len + REPL_HDR, t ? topic_name(t) : "", tl);
	memcpy(pe->buf + pe->len + REPL_HDR + tl, group ? group : "", gl);
	return pe->buf + pe->len + REPL_HDR + tl + gl;
}

/* Finish the frame fbegin started, with body bytes. */
static int fend(struct peer *pe, struct repl_hdr *h, size_t body)
{
	size_t total = REPL_HDR + h->tlen + h->glen + body;

	h->body = (uint32_t)body;
	h->epoch = mq_epoch(pe->r->m);
	memcpy(pe->buf + pe->len, h, sizeof(*h));
	replica_seal(pe->buf + pe->len, total);
	pe->len += total;
	return 0;
}

static int emit_simple(struct peer *pe, int type, struct topic *t, uint32_t part,
		       uint64_t off)
{
	struct repl_hdr h;

	if (!fbegin(pe, &h, type, t, NULL, 0))
		return pe->werr;
	h.part = part;
	h.off = off;
	return fend(pe, &h, 0);
}

/* A '\n'-separated name list frame. */
static int emit_names(struct peer *pe, int type, struct topic *t, const char *names,
		      size_t len)
{
	struct repl_hdr h;
	char *b = fbegin(pe, &h, type, t, NULL, len);

	if (!b)
		return pe->werr;
	memcpy(b, names, len);
	return fend(pe, &h, len);
}

/*
 * Messages of partition part from *sent on, at most budget bytes (but
 * always one message). Advances *sent. Returns the bytes sent, 0 if there
 * was nothing, -ERANGE if *sent is not retained any more, -errno.
 */
static ssize_t emit_msgs(struct peer *pe, struct topic *t, uint32_t part, uint64_t *sent,
			 size_t budget)
{
	struct part *p = topic_part(t, part);
	uint64_t epoch, until, base;
	uint32_t max = MSGS_MAX;
	size_t cap = budget < MSGS_BYTES ? budget : MSGS_BYTES;
	struct repl_hdr h;
	char *lines;
	size_t len;
	int n;

	part_epoch_at(p, *sent, &epoch, &until);
	if (until - *sent < max)
		max = (uint32_t)(until - *sent);
	for (;;) {
		lines = fbegin(pe, &h, REPL_MSGS, t, NULL, cap + (size_t)max * sizeof(struct repl_ent));
		if (!lines)
			return pe->werr;
		n = part_read_ents(p, *sent, max, lines, cap, pe->ents, &base);
		if (n != -ENOBUFS)
			break;
		cap = (size_t)pe->ents[0].len + 1;	/* one message longer than cap */
	}
	if (n <= 0)
		return n;
	len = (size_t)(pe->ents[n - 1].pos + pe->ents[n - 1].len + 1 - pe->ents[0].pos);
	for (int i = 0; i < n; i++) {
		struct repl_ent w = { .len = pe->ents[i].len, .flags = 0,
				      .ts_ms = pe->ents[i].ts_ms, .hash = pe->ents[i].hash };

		memcpy(lines + len + (size_t)i * sizeof(w), &w, sizeof(w));
	}
	h.part = part;
	h.off = *sent;
	h.aux = base;
	h.mepoch = epoch;
	h.count = (uint32_t)n;
	*sent += (uint64_t)n;
	n = fend(pe, &h, len + (size_t)n * sizeof(struct repl_ent));
	return n < 0 ? n : (ssize_t)len;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	return XXH3_64bits_withSeed(&v, sizeof(v), h);
}

/* ---- one cycle ---- */

static int key_cmp(const void *a, const void *b)
{
	const struct lease_dead_key *x = a, *y = b;

	if (x->part != y->part)
		return x->part < y->part ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* The group's dead letters: the list (deletions), then the letters the
 * peer does not have yet, in failure order. */
static int sync_dead(struct peer *pe, struct topic *t, struct cg *g, struct mgroup *mg)
{
	struct lease *ls = cg_lease(g);
	uint64_t gen = lease_dead_gen(ls);
	struct lease_dead_key *k;
	struct repl_hdr h;
	size_t n;
	char *b;
	int rc = lease_dead_keys(ls, &k, &n);

	if (rc < 0)
		return rc;
	b = fbegin(pe, &h, REPL_DEADS, t, cg_name(g), n * 16);
	if (!b) {
		free(k);
		return pe->werr;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t zero = 0;

		memcpy(b + 16 * i, &k[i].part, 4);
		memcpy(b + 16 * i + 4, &zero, 4);
		memcpy(b + 16 * i + 8, &k[i].off, 8);
	}
	h.count = (uint32_t)n;
	rc = fend(pe, &h, n * 16);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct lease_dead_key *have = mg->keys ?
			bsearch(&k[i], mg->keys, mg->nkeys, sizeof(*k), key_cmp) : NULL;
		struct dlq_entry *e;
		struct repl_dead d;
		char *text = NULL;
		size_t tl, rl;

		if (have && have->seq == k[i].seq)
			continue;
		e = malloc(sizeof(*e));
		if (!e) {
			rc = -ENOMEM;
			break;
		}
		rc = lease_dead_get(ls, k[i].part, k[i].off, e, &text, &tl);
		if (rc == -ENOENT) {	/* gone meanwhile: the next cycle sees it */
			free(e);
			rc = 0;
			k[i].seq = NONE;
			continue;
		}
		rl = strlen(e->reason);
		d = (struct repl_dead){ .seq = e->seq, .ts_ms = e->ts_ms,
					.failed_at_ms = e->failed_at_ms,
					.deliveries = e->deliveries, .reason_len = (uint32_t)rl,
					.line_len = e->len };
		b = rc == 0 ? fbegin(pe, &h, REPL_DEAD, t, cg_name(g), sizeof(d) + rl + e->len) : NULL;
		if (rc == 0 && !b)
			rc = pe->werr;
		if (rc == 0) {
			memcpy(b, &d, sizeof(d));
			memcpy(b + sizeof(d), e->reason, rl);
			memcpy(b + sizeof(d) + rl, text, e->len);
			h.part = e->part;
			h.off = e->off;
			rc = fend(pe, &h, sizeof(d) + rl + e->len);
		}
		free(text);
		free(e);
	}
	if (rc < 0) {
		free(k);
		return rc;
	}
	if (n)
		qsort(k, n, sizeof(*k), key_cmp);
	free(mg->keys);
	mg->keys = k;
	mg->nkeys = n;
	mg->dgen = gen;
	return 0;
}

static int sync_groups(struct peer *pe, struct topic *t, struct mtopic *mt)
{
	char *names = NULL;
	size_t nlen = 0, ncap = 0;
	uint64_t sig = 1;
	uint32_t gid = 0, n = topic_nparts(t);
	struct cg *g;
	int rc = 0;

	for (size_t i = 0; i < mt->ng; i++)
		mt->g[i].seen = 0;
	/* The list of names first (deletions), then each group's state. */
	while ((g = topic_group_next(t, gid))) {
		size_t l = strlen(cg_name(g));

		gid = cg_id(g);
		sig = mix(sig, gid);
		if (mq_grow(&names, &ncap, nlen + l + 1, 1, 256) < 0)
			rc = -ENOMEM;
		else {
			memcpy(names + nlen, cg_name(g), l);
			names[nlen + l] = '\n';
			nlen += l + 1;
		}
		cg_unref(g);
	}
	if (rc == 0 && sig != mt->gsig) {
		rc = emit_names(pe, REPL_GROUPS, t, names ? names : "", nlen);
		mt->gsig = sig;
	}
	free(names);
	gid = 0;
	while (rc == 0 && (g = topic_group_next(t, gid))) {
		struct mgroup *mg = group_get(mt, cg_id(g));
		struct lease *ls = cg_lease(g);
		int diff = 0;

		gid = cg_id(g);
		if (!mg) {
			rc = -ENOMEM;
		} else if (mg->noffs < n) {
			uint64_t *o = realloc(mg->offs, n * sizeof(*o));

			if (!o) {
				rc = -ENOMEM;
			} else {
				for (uint32_t i = mg->noffs; i < n; i++)
					o[i] = NONE;	/* not sent yet */
				mg->offs = o;
				mg->noffs = n;
			}
		}
		if (rc == 0)
			mg->seen = 1;
		/* Letters before offsets: a leader that dies between the two
		 * must not leave an offset past a message whose letter the
		 * peer never got. */
		if (rc == 0 && lease_dead_gen(ls) != mg->dgen)
			rc = sync_dead(pe, t, g, mg);
		for (uint32_t i = 0; rc == 0 && i < n; i++) {
			uint64_t o = cg_committed(g, i);

			/* never past what the peer holds (it would refuse) */
			if (o > mt->sent[i])
				o = mt->sent[i];
			diff |= mg->offs[i] != o;
			mg->offs[i] = o;
		}
		if (rc == 0 && diff) {
			struct repl_hdr h;
			char *b = fbegin(pe, &h, REPL_GROUP, t, cg_name(g), (size_t)n * 8);

			if (!b) {
				rc = pe->werr;
			} else {
				memcpy(b, mg->offs, (size_t)n * 8);
				h.count = n;
				rc = fend(pe, &h, (size_t)n * 8);
			}
		}
		cg_unref(g);
	}
	/* forget groups that are gone */
	for (size_t i = 0; rc == 0 && i < mt->ng;)
		if (!mt->g[i].seen) {
			free(mt->g[i].offs);
			free(mt->g[i].keys);
			mt->g[i] = mt->g[--mt->ng];
		} else {
			i++;
		}
	return rc;
}

/* Topic t: its config, cuts, messages (within *budget), groups. Clears
 * *caught if messages are left for the next cycle. */
static int sync_topic(struct peer *pe, struct topic *t, size_t *budget, int *caught,
		      int full)
{
	struct mtopic *mt = mirror_get(pe, t);
	uint64_t gen = topic_gen(t);
	char cfg[1024];
	uint32_t n = topic_nparts(t);
	int len, rc = 0;

	if (!mt)
		return -ENOMEM;
	/* Nothing happened to it since the last look: skip it (a full pass
	 * now and then catches what does not move the number). */
	if (!full && mt->created && mt->gen == gen && !mt->pending)
		return 0;
	mt->gen = gen;
	mt->pending = 0;
	len = topic_config_text(t, cfg, sizeof(cfg));
	if (len < 0)
		return len == -ENOENT ? 0 : len;	/* deleted meanwhile */
	if (!mt->created || (size_t)len != mt->cfglen || memcmp(cfg, mt->cfg, (size_t)len)) {
		rc = emit_names(pe, REPL_TOPIC, t, cfg, (size_t)len);
		memcpy(mt->cfg, cfg, (size_t)len);
		mt->cfglen = (size_t)len;
		mt->created = 1;
	}
	if (rc == 0 && n > mt->nparts) {
		pthread_mutex_lock(&pe->r->lock);
		rc = grow_parts(mt, n);
		pthread_mutex_unlock(&pe->r->lock);
	}
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		struct part_stat st;

		part_stat(topic_part(t, i), &st);
		if (mt->trunc[i] != NONE) {
			rc = emit_simple(pe, REPL_TRUNC, t, i, mt->trunc[i]);
			mt->trunc[i] = NONE;
		}
		while (rc == 0) {
			ssize_t b;

			if (st.first > mt->first[i] || mt->sent[i] < st.first) {
				/* retention here: the same segments go there */
				rc = emit_simple(pe, REPL_TRIM, t, i, st.first);
				mt->first[i] = st.first;
				if (mt->sent[i] < st.first)
					mt->sent[i] = st.first;
			}
			if (rc < 0 || mt->sent[i] >= st.next)
				break;
			if (*budget == 0) {
				*caught = 0;
				mt->pending = 1;
				break;
			}
			if (atomic_load(&pe->r->stop)) {
				rc = -ECANCELED;
				break;
			}
			b = emit_msgs(pe, t, i, &mt->sent[i], *budget);
			if (b == -ERANGE) {
				part_stat(topic_part(t, i), &st);
				if (mt->sent[i] < st.first)
					continue;	/* retention went past us just now */
				/* A hole in our own log (a segment that recovery
				 * found damaged): the peer cannot hold a hole. */
				fprintf(stderr, "mqfs: replica %s: %s/%" PRIu32 " of this node lacks offset %"
					PRIu64 " (a damaged segment): cannot replicate past it\n",
					pe->path, topic_name(t), i, mt->sent[i]);
				b = -ENODATA;
			}
			if (b < 0)
				rc = (int)b;
			else
				*budget -= (size_t)b < *budget ? (size_t)b : *budget;
			if (b == 0)
				break;
		}
	}
	return rc == 0 ? sync_groups(pe, t, mt) : rc;
}

static int cycle(struct peer *pe, int *caught)
{
	struct repl *r = pe->r;
	size_t budget = REPL_CYCLE_MAX, nlen = 0, ncap = 0;
	struct topic **ts = NULL;
	size_t nt = 0, tcap = 0;
	uint64_t sig = 1;
	uint32_t id = 0;
	char *names = NULL;
	struct topic *t;
	int full, rc = 0;

	*caught = 1;
	while ((t = mq_topic_next(r->m, id))) {
		size_t l = strlen(topic_name(t));

		id = topic_id(t);
		sig = mix(mix(sig, id), topic_uid(t));
		if (mq_grow(&ts, &tcap, nt + 1, sizeof(*ts), 16) < 0 ||
		    mq_grow(&names, &ncap, nlen + l + 1, 1, 1024) < 0) {
			topic_unref(t);
			rc = -ENOMEM;
			break;
		}
		ts[nt++] = t;
		memcpy(names + nlen, topic_name(t), l);
		names[nlen + l] = '\n';
		nlen += l + 1;
	}
	if (rc == 0 && sig != pe->tsig) {
		/* deletions first; mirrors of deleted topics go */
		rc = emit_names(pe, REPL_TOPICS, NULL, names ? names : "", nlen);
		pe->tsig = sig;
		pthread_mutex_lock(&r->lock);
		for (size_t i = 0; i < pe->nmt; i++) {
			size_t k = 0;

			while (k < nt && (topic_id(ts[k]) != pe->mt[i].id ||
					  topic_uid(ts[k]) != pe->mt[i].uid))
				k++;
			if (pe->mt[i].id && k == nt)
				free_mtopic(&pe->mt[i]);
		}
		pthread_mutex_unlock(&r->lock);
	}
	free(names);
	full = mq_mono_ms() - pe->full_ms >= FULL_MS;
	if (full)
		pe->full_ms = mq_mono_ms();
	for (size_t i = 0; i < nt; i++) {
		if (rc == 0)
			rc = sync_topic(pe, ts[i], &budget, caught, full);
		topic_unref(ts[i]);
	}
	free(ts);
	if (rc == 0 && pe->len)
		rc = flush(pe);
	if (rc == 0 && pe->unsynced) {
		int waited;

		pthread_mutex_lock(&r->lock);
		waited = pe->in_sync && r->waiters;
		pthread_mutex_unlock(&r->lock);
		/* Acked means fsynced: at the end of a catch-up, for writers
		 * that wait, and every SYNC_EVERY bytes on the way. */
		if (*caught || waited || pe->unsynced >= SYNC_EVERY) {
			rc = fsync(pe->fd) < 0 ? -errno : 0;
			if (rc == 0)
				pe->unsynced = 0;
		}
		pe->io_ms = mq_mono_ms();
	} else if (rc == 0 && mq_mono_ms() - pe->io_ms >= PROBE_MS) {
		/* An idle peer is probed: one that died or was unmounted is
		 * noticed (and leaves the in-sync set) before the next write
		 * waits for it. */
		struct stat st;

		rc = stat(pe->file, &st) < 0 ? -errno : st.st_dev != pe->dev ? -ESTALE : 0;
		pe->io_ms = mq_mono_ms();
	}
	if (rc == 0 && *caught && pe->fd >= 0 && mq_mono_ms() - pe->sent_ms >= IDLE_MS) {
		/* Everything is there and nothing came for a while: let go
		 * of the peer's mount (it can be unmounted now). */
		close(pe->fd);
		pe->fd = -1;
	}
	if (rc == 0 && pe->unsynced == 0) {
		/* The peer holds what was sent: acks=all writers may go. */
		pthread_mutex_lock(&r->lock);
		for (size_t i = 0; i < pe->nmt; i++)
			for (uint32_t k = 0; pe->mt[i].id && k < pe->mt[i].nparts; k++)
				pe->mt[i].acked[k] = pe->mt[i].sent[k];
		pthread_mutex_unlock(&r->lock);
	}
	return rc;
}

/* ---- in-sync set and waiters ---- */

/* r->lock held. */
static int insync_copies(struct repl *r)
{
	int n = 1;

	for (size_t i = 0; i < r->npeers; i++)
		n += r->peers[i].in_sync;
	return n;
}

/* 1 if every in-sync peer holds w, 0 if not yet, -EIO if it cannot be.
 * r->lock held. */
static int check(struct repl *r, struct repl_wait *w)
{
	struct cfg_topic c;

	/* stopping, stepped down, short of copies, or the topic was deleted
	 * meanwhile (no peer will ever hold it) */
	if (r->stopped || mq_role(r->m) != CFG_ROLE_LEADER ||
	    insync_copies(r) < (int)r->opts.min_insync || topic_cfg(w->t, &c) < 0)
		return -EIO;
	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *pe = &r->peers[i];
		struct mtopic *mt;

		if (!pe->in_sync)
			continue;
		mt = mirror_find(pe, topic_id(w->t));
		if (!mt)
			return 0;
		for (uint32_t k = 0; k < w->n; k++)
			if (w->tgt[k].part >= mt->nparts || mt->acked[w->tgt[k].part] < w->tgt[k].end)
				return 0;
	}
	return 1;
}

static void finish(struct repl_wait *w, int rc)
{
	topic_unref(w->t);
	w->t = NULL;
	if (w->tgt != w->inl)
		free(w->tgt);
	w->tgt = NULL;
	w->done(w, rc);
}

/* Answer every waiter that can be answered now. */
static void settle(struct repl *r)
{
	struct repl_wait *ready = NULL, **pp;

	pthread_mutex_lock(&r->lock);
	for (pp = &r->waiters; *pp;) {
		struct repl_wait *w = *pp;
		int c = check(r, w);

		if (c == 0) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->next = ready;
		w->n = c < 0;	/* reused: 1 = failed */
		ready = w;
	}
	pthread_mutex_unlock(&r->lock);
	while (ready) {
		struct repl_wait *w = ready;

		ready = w->next;
		finish(w, w->n ? -EIO : 0);
	}
}

static void set_state(struct peer *pe, enum pstate st, int in_sync, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Record the peer's state; log joining and leaving the in-sync set. */
static void set_state(struct peer *pe, enum pstate st, int in_sync, const char *fmt, ...)
{
	struct repl *r = pe->r;
	int was;

	pthread_mutex_lock(&r->lock);
	was = pe->in_sync;
	pe->state = st;
	pe->in_sync = in_sync;
	if (fmt) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(pe->error, sizeof(pe->error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
	if (was != in_sync)
		fprintf(stderr, "mqfs: replica %s %s the in-sync set%s%s\n", pe->path,
			in_sync ? "joined" : "left", in_sync ? "" : ": ",
			in_sync ? "" : (st == P_OK ? "lagging" : pe->error));
	if (was != in_sync || !in_sync)
		settle(r);
}

/* ---- connecting ---- */

static int read_all(const char *path, char **out, size_t *len)
{
	size_t n = 0, cap = 0;
	char *b = NULL;
	/* O_DIRECT: through a network filesystem, the peer's answer now, not
	 * a cached page or a cached size (where it is not supported, a
	 * plain read). */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);

	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t got;

		if (mq_grow(&b, &cap, n + 65536 + 1, 1, 65536 + 1) < 0) {
			close(fd);
			free(b);
			return -ENOMEM;
		}
		got = read(fd, b + n, cap - n - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int e = -errno;

			close(fd);
			free(b);
			return e;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	b[n] = 0;
	*out = b;
	*len = n;
	return 0;
}

struct pinfo {
	uint64_t id, epoch;
	int leader;
	char refused[160];
};

/* Parse the peer's state (replica_state_text) into info and pe->seed. */
static int parse_state(struct peer *pe, char *text, struct pinfo *pi)
{
	char *save = NULL, *line = strtok_r(text, "\n", &save), role[16];
	unsigned long long id, epoch;
	struct seed *cur = NULL;

	if (!line || strcmp(line, "mqfs-repl 1"))
		return -EPROTO;
	line = strtok_r(NULL, "\n", &save);
	if (!line || sscanf(line, "node %llx epoch %llu role %15s", &id, &epoch, role) != 3)
		return -EPROTO;
	pi->id = id;
	pi->epoch = epoch;
	pi->leader = !strcmp(role, "leader");
	line = strtok_r(NULL, "\n", &save);
	if (!line || strncmp(line, "refused ", 8))
		return -EPROTO;
	snprintf(pi->refused, sizeof(pi->refused), "%s", line + 8);
	free_seed(pe);
	while ((line = strtok_r(NULL, "\n", &save))) {
		unsigned long long uid, a, b;
		unsigned n, part;
		char name[MQ_NAME_MAX + 1];
		int used = 0;

		if (sscanf(line, "topic %200s %llx %u", name, &uid, &n) == 3) {
			if (n > MQ_MAX_PARTITIONS ||
			    mq_grow(&pe->seed, &pe->seedcap, pe->nseed + 1, sizeof(*pe->seed), 16) < 0)
				return -EPROTO;
			cur = &pe->seed[pe->nseed];
			memset(cur, 0, sizeof(*cur));
			snprintf(cur->name, sizeof(cur->name), "%s", name);
			cur->uid = uid;
			cur->p = calloc(n ? n : 1, sizeof(*cur->p));
			if (!cur->p)
				return -ENOMEM;
			cur->n = n;
			pe->nseed++;
		} else if (cur && sscanf(line, "part %u %llu %llu %n", &part, &a, &b, &used) == 3 &&
			   part < cur->n) {
			struct seed_part *sp = &cur->p[part];
			char *h = line + used;

			sp->first = a;
			sp->next = b;
			while (*h && *h != '-') {
				unsigned long long e, st;
				int k = 0;

				if (sscanf(h, "%llu:%llu%n", &e, &st, &k) != 2)
					return -EPROTO;
				if (mq_grow(&sp->h, &sp->hcap, sp->nh + 1, sizeof(*sp->h), 4) < 0)
					return -ENOMEM;
				sp->h[sp->nh].epoch = e;
				sp->h[sp->nh].start = st;
				sp->nh++;
				h += k;
				if (*h == ',')
					h++;
			}
		} else {
			return -EPROTO;
		}
	}
	return 0;
}

static void disconnect(struct peer *pe)
{
	if (pe->fd >= 0)
		close(pe->fd);
	pe->fd = -1;
	pe->connected = 0;
	pe->len = 0;
	pe->unsynced = 0;
}

/* Open the stream and read the peer's state. 0, or -errno with the
 * peer's state and error set. */
static int connect_peer(struct peer *pe)
{
	struct repl *r = pe->r;
	struct pinfo pi;
	char *text;
	size_t len;
	int rc;

	struct stat st;

	pe->fd = open(pe->file, O_WRONLY | O_CLOEXEC);
	if (pe->fd < 0 || fstat(pe->fd, &st) < 0) {
		rc = -errno;
		set_state(pe, P_UNREACHABLE, 0, "%s: %s", pe->file, strerror(-rc));
		disconnect(pe);
		return rc;
	}
	pe->dev = st.st_dev;
	rc = read_all(pe->file, &text, &len);
	if (rc < 0) {
		set_state(pe, P_UNREACHABLE, 0, "reading %s: %s", pe->file, strerror(-rc));
		disconnect(pe);
		return rc;
	}
	rc = parse_state(pe, text, &pi);
	free(text);
	if (rc < 0) {
		set_state(pe, P_REFUSED, 0, "%s is not an mqfs replication endpoint", pe->file);
	} else if (pi.id == mq_node_id(r->m)) {
		set_state(pe, P_REFUSED, 0, "%s is this node's own mount", pe->path);
		rc = -ELOOP;
	} else if (pi.epoch > mq_epoch(r->m)) {
		(void)mq_fenced(r->m, pi.epoch);
		set_state(pe, P_FENCED, 0, "fenced: the peer is at epoch %" PRIu64
			  ", newer than this node's; this node is a follower now", pi.epoch);
		rc = -ESTALE;
	} else if (pi.leader && pi.epoch == mq_epoch(r->m)) {
		set_state(pe, P_REFUSED, 0, "the peer leads epoch %" PRIu64 " too", pi.epoch);
		rc = -ESTALE;
	}
	if (rc < 0) {
		disconnect(pe);
		return rc;
	}
	reset_mirror(pe);
	pe->connected = 1;
	pe->unsynced = 1;	/* the first cycle fsyncs: see mirror_get */
	pe->io_ms = mq_mono_ms();
	set_state(pe, P_CONNECTING, 0, "-");
	return 0;
}

/* After a failed write or fsync: say why, with what the peer says. */
static void failed(struct peer *pe, int rc)
{
	struct repl *r = pe->r;
	struct pinfo pi;
	char *text;
	size_t len;

	disconnect(pe);
	if (read_all(pe->file, &text, &len) < 0) {
		set_state(pe, P_UNREACHABLE, 0, "%s", strerror(-rc));
		return;
	}
	if (parse_state(pe, text, &pi) < 0) {
		set_state(pe, P_REFUSED, 0, "%s; the peer's state does not parse", strerror(-rc));
	} else if (pi.epoch > mq_epoch(r->m)) {
		(void)mq_fenced(r->m, pi.epoch);
		set_state(pe, P_FENCED, 0, "fenced: the peer is at epoch %" PRIu64
			  ", newer than this node's; this node is a follower now", pi.epoch);
	} else {
		set_state(pe, P_REFUSED, 0, "%s; the peer says: %s", strerror(-rc), pi.refused);
	}
	free(text);
}

/* How long a caught-up peer thread sleeps: IDLE_MS, or less when
 * isr_lag_ms is short, so that an idle peer is seen caught up well within
 * it (the watchdog measures from the last caught-up cycle). */
static int idle_ms(const struct repl *r)
{
	return r->opts.isr_lag_ms / 4 < IDLE_MS ? (int)(r->opts.isr_lag_ms / 4) + 1 : IDLE_MS;
}

static void *peer_main(void *arg)
{
	struct peer *pe = arg;
	struct repl *r = pe->r;
	uint64_t seen = atomic_load(&r->changes);

	while (!atomic_load(&r->stop)) {
		int64_t start = mq_mono_ms();
		int caught, keep, rc;

		if (mq_role(r->m) != CFG_ROLE_LEADER) {
			if (pe->connected || pe->state != P_IDLE) {
				disconnect(pe);
				set_state(pe, P_IDLE, 0, "this node is a follower");
			}
			nap(r, &seen, idle_ms(r));
			continue;
		}
		if (!pe->connected && connect_peer(pe) < 0) {
			nap(r, NULL, pe->retry_ms);
			pe->retry_ms = pe->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : pe->retry_ms * 2;
			continue;
		}
		seen = atomic_load(&r->changes);
		rc = cycle(pe, &caught);
		if (rc < 0) {
			failed(pe, rc);
			pe->retry_ms = RETRY_MIN_MS;
			nap(r, NULL, pe->retry_ms);
			continue;
		}
		pe->retry_ms = RETRY_MIN_MS;
		pthread_mutex_lock(&r->lock);
		if (caught)
			pe->caught_up_ms = start;
		/* in sync: caught up now, or not too long ago */
		keep = caught || (pe->in_sync && mq_mono_ms() - pe->caught_up_ms <=
						  (int64_t)r->opts.isr_lag_ms);
		pthread_mutex_unlock(&r->lock);
		set_state(pe, P_OK, keep, keep ? "-" : "catching up");
		settle(r);
		if (caught)
			nap(r, &seen, idle_ms(r));
	}
	disconnect(pe);
	return NULL;
}

/*
 * The watchdog: a peer whose thread is stuck in I/O (a stopped daemon, an
 * NFS server that does not answer) cannot report its own lag, so another
 * thread takes it out of the in-sync set once it is isr_lag_ms behind, and
 * the acks=all writers waiting for it go on (or fail, below min_insync).
 */
static void *watchdog_main(void *arg)
{
	struct repl *r = arg;
	int every = idle_ms(r);

	while (!atomic_load(&r->stop)) {
		int64_t now;

		nap(r, NULL, every);
		now = mq_mono_ms();
		for (size_t i = 0; i < r->npeers; i++) {
			struct peer *pe = &r->peers[i];
			int late;

			pthread_mutex_lock(&r->lock);
			late = pe->in_sync && now - pe->caught_up_ms > (int64_t)r->opts.isr_lag_ms;
			if (late)
				pe->in_sync = 0;
			pthread_mutex_unlock(&r->lock);
			if (late)
				fprintf(stderr, "mqfs: replica %s left the in-sync set: not caught up for %" PRId64 " ms\n",
					pe->path, now - pe->caught_up_ms);
		}
		/* Waiters whose peers are stuck are answered here too: when a
		 * peer leaves, when their topic is deleted, when the node steps
		 * down. */
		settle(r);
	}
	return NULL;
}

/* ---- the API ---- */

int repl_open(struct mq *m, struct repl **out)
{
	struct repl *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;
	char *list, *save = NULL;

	if (!r)
		return -ENOMEM;
	r->m = m;
	r->opts = *mq_opts(m);
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->kick_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	list = strdup(r->opts.peers);
	if (!list) {
		free(r);
		return -ENOMEM;
	}
	for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save))
		r->npeers++;
	r->peers = calloc(r->npeers ? r->npeers : 1, sizeof(*r->peers));
	if (!r->peers) {
		free(list);
		free(r);
		return -ENOMEM;
	}
	strcpy(list, r->opts.peers);
	r->npeers = 0;
	for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
		struct peer *pe = &r->peers[r->npeers++];

		pe->r = r;
		pe->fd = -1;
		pe->retry_ms = RETRY_MIN_MS;
		pe->state = P_CONNECTING;
		snprintf(pe->error, sizeof(pe->error), "-");
		snprintf(pe->path, sizeof(pe->path), "%s", p);
		snprintf(pe->file, sizeof(pe->file), "%s/.mq/repl", p);
	}
	free(list);
	mq_set_changed(m, changed, r);
	*out = r;
	return 0;
}

int repl_start(struct repl *r)
{
	if (r->npeers) {
		int rc = -pthread_create(&r->watchdog, NULL, watchdog_main, r);

		if (rc < 0)
			return rc;
		r->watchdog_started = 1;
	}
	for (size_t i = 0; i < r->npeers; i++) {
		int rc = -pthread_create(&r->peers[i].th, NULL, peer_main, &r->peers[i]);

		if (rc < 0)
			return rc;
		r->peers[i].started = 1;
	}
	return 0;
}

void repl_stop(struct repl *r)
{
	struct repl_wait *w;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopped = 1;		/* from now on acks=all writes fail */
	pthread_mutex_unlock(&r->lock);
	atomic_store(&r->stop, 1);
	pthread_mutex_lock(&r->kick_lock);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->kick_lock);
	if (r->watchdog_started)
		pthread_join(r->watchdog, NULL);
	for (size_t i = 0; i < r->npeers; i++) {
		struct timespec ts;

		if (!r->peers[i].started)
			continue;
		/* A thread stuck in I/O on a hung peer cannot be stopped: the
		 * unmount goes on without it (the process ends anyway). */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 3;
		if (pthread_timedjoin_np(r->peers[i].th, NULL, &ts) != 0) {
			fprintf(stderr, "mqfs: replica %s: its thread is stuck in I/O; leaving it\n",
				r->peers[i].path);
			r->stuck = 1;
		}
	}
	pthread_mutex_lock(&r->lock);
	w = r->waiters;
	r->waiters = NULL;
	pthread_mutex_unlock(&r->lock);
	while (w) {
		struct repl_wait *next = w->next;

		finish(w, -EIO);
		w = next;
	}
}

void repl_free(struct repl *r)
{
	if (!r || r->stuck)
		return;
	for (size_t i = 0; i < r->npeers; i++) {
		reset_mirror(&r->peers[i]);
		free(r->peers[i].mt);
		free(r->peers[i].buf);
		free_seed(&r->peers[i]);
	}
	free(r->peers);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->kick_lock);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

int repl_admit(struct repl *r)
{
	int rc = 0;

	if (mq_role(r->m) != CFG_ROLE_LEADER)
		return -EROFS;
	if (r->opts.acks != CFG_ACKS_ALL)
		return 0;
	pthread_mutex_lock(&r->lock);
	if (insync_copies(r) < (int)r->opts.min_insync)
		rc = -EIO;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int repl_wait(struct repl *r, struct repl_wait *w, struct topic *t,
	      const uint64_t *touched)
{
	uint32_t n = 0, k = 0, np = topic_nparts(t);
	int c;

	if (r->opts.acks != CFG_ACKS_ALL)
		return 1;
	for (uint32_t i = 0; i < np; i++)
		n += (touched[i / 64] >> (i % 64)) & 1;
	w->tgt = n <= 8 ? w->inl : malloc(n * sizeof(*w->tgt));
	if (!w->tgt)
		return -ENOMEM;
	for (uint32_t i = 0; i < np; i++) {
		struct part_stat st;

		if (!((touched[i / 64] >> (i % 64)) & 1))
			continue;
		part_stat(topic_part(t, i), &st);
		w->tgt[k].part = i;
		w->tgt[k].end = st.next;
		k++;
	}
	w->n = k;
	w->t = t;
	topic_ref(t);
	pthread_mutex_lock(&r->lock);
	c = check(r, w);
	if (c == 0) {
		w->next = r->waiters;
		r->waiters = w;
	}
	pthread_mutex_unlock(&r->lock);
	if (c != 0) {
		topic_unref(t);
		w->t = NULL;
		if (w->tgt != w->inl)
			free(w->tgt);
		return c < 0 ? -EIO : 1;
	}
	return 0;
}

int repl_status_text(struct repl *r, char **out, size_t *len)
{
	size_t cap = 128 + r->npeers * (PATH_MAX + 400), n = 0;
	char *b = malloc(cap);

	if (!b)
		return -ENOMEM;
	n += (size_t)snprintf(b, cap, "peer in_sync lag_messages lag_bytes state error\n");
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->npeers; i++) {
		struct peer *pe = &r->peers[i];
		uint64_t lag = 0, bytes = 0;
		uint32_t id = 0;
		struct topic *t;

		while ((t = mq_topic_next(r->m, id))) {
			struct mtopic *mt = mirror_find(pe, topic_id(t));

			id = topic_id(t);
			for (uint32_t k = 0; k < topic_nparts(t); k++) {
				struct part_stat st;
				uint64_t at, pos;

				part_stat(topic_part(t, k), &st);
				at = mt && mt->uid == topic_uid(t) && k < mt->nparts ? mt->acked[k] : st.first;
				if (at < st.first)
					at = st.first;
				if (at >= st.next)
					continue;
				lag += st.next - at;
				if (part_pos(topic_part(t, k), at, &pos) == 0)
					bytes += st.end_pos - pos;
			}
			topic_unref(t);
		}
		n += (size_t)snprintf(b + n, cap - n, "%s %s %" PRIu64 " %" PRIu64 " %s %s\n",
				      pe->path, pe->in_sync ? "yes" : "no", lag, bytes,
				      state_name[pe->state], pe->error);
	}
	pthread_mutex_unlock(&r->lock);
	*out = b;
	*len = n;
	return 0;
}
