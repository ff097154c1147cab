/*
 * replica.c - applying a leader's frames, and the state a leader reads.
 */
#define _GNU_SOURCE
#include "replica.h"
#include "core.h"
#include "dlq.h"
#include "group.h"
#include "lease.h"
#include "mq.h"
#include "partition.h"
#include "segment.h"
#include "topic.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* XXH3_state_t on the stack: no allocation per frame */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* A partition that got messages through this rx since its last sync. */
struct dirty {
	struct topic *t;	/* owned reference */
	uint32_t part;
};

struct replica_rx {
	struct mq *m;		/* borrowed */
	uint64_t pos;		/* file position the next write must start at */
	int err;		/* sticky refusal, 0 = none */
	char *buf;		/* a frame being reassembled; owned */
	size_t have, cap;
	struct seg_entry *ents;	/* MSGS scratch; owned */
	size_t ecap;
	struct dirty *dirty;	/* owned */
	size_t ndirty, dcap;
	int synced;		/* the first sync (sync_all) is done */
};

void replica_seal(void *f, size_t len)
{
	/* Frames follow each other unaligned: the field by memcpy. */
	uint64_t zero = 0, check;

	memcpy((char *)f + offsetof(struct repl_hdr, check), &zero, sizeof(zero));
	check = XXH3_64bits(f, len);
	memcpy((char *)f + offsetof(struct repl_hdr, check), &check, sizeof(check));
}

int replica_rx_open(struct mq *m, struct replica_rx **out)
{
	struct replica_rx *rx = calloc(1, sizeof(*rx));

	if (!rx)
		return -ENOMEM;
	rx->m = m;
	*out = rx;
	return 0;
}

static void drop_dirty(struct replica_rx *rx)
{
	for (size_t i = 0; i < rx->ndirty; i++)
		topic_unref(rx->dirty[i].t);
	rx->ndirty = 0;
}

void replica_rx_close(struct replica_rx *rx)
{
	if (!rx)
		return;
	drop_dirty(rx);
	free(rx->dirty);
	free(rx->ents);
	free(rx->buf);
	free(rx);
}

static int mark_dirty(struct replica_rx *rx, struct topic *t, uint32_t part)
{
	for (size_t i = rx->ndirty; i-- > 0;)
		if (rx->dirty[i].t == t && rx->dirty[i].part == part)
			return 0;
	if (mq_grow(&rx->dirty, &rx->dcap, rx->ndirty + 1, sizeof(*rx->dirty), 16) < 0)
		return -ENOMEM;
	topic_ref(t);
	rx->dirty[rx->ndirty].t = t;
	rx->dirty[rx->ndirty].part = part;
	rx->ndirty++;
	return 0;
}

/* Every partition of every durable topic: what an earlier stream applied
 * and never synced (it was cut before its fsync) is counted as held by the
 * leader from the state it reads, so the first fsync of a new stream covers
 * it. part_sync costs nothing where nothing is unsynced. */
static int sync_all(struct mq *m)
{
	uint32_t id = 0;
	struct topic *t;
	int rc = 0;

	while (rc == 0 && (t = mq_topic_next(m, id))) {
		struct cfg_topic cfg;

		id = topic_id(t);
		if (topic_cfg(t, &cfg) == 0 && cfg.sync != CFG_SYNC_NONE)
			for (uint32_t i = 0; rc == 0 && i < topic_nparts(t); i++)
				rc = part_sync(topic_part(t, i));
		topic_unref(t);
	}
	return rc;
}

int replica_rx_sync(struct replica_rx *rx)
{
	int rc = rx->err;

	if (rc == 0 && !rx->synced) {
		rc = sync_all(rx->m);
		rx->synced = rc == 0;
	}

	for (size_t i = 0; rc == 0 && i < rx->ndirty; i++) {
		struct cfg_topic cfg;

		if (topic_cfg(rx->dirty[i].t, &cfg) == 0 && cfg.sync != CFG_SYNC_NONE)
			rc = part_sync(topic_part(rx->dirty[i].t, rx->dirty[i].part));
	}
	if (rc == 0)
		drop_dirty(rx);
	return rc;
}

/* ---- applying one frame ---- */

/* Names in a '\n'-separated list: is name (len bytes) one of them? */
static int listed(const char *list, size_t n, const char *name)
{
	size_t l = strlen(name);

	for (const char *p = list, *end = list + n; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl)
			break;
		if ((size_t)(nl - p) == l && memcmp(p, name, l) == 0)
			return 1;
		p = nl + 1;
	}
	return 0;
}

static int apply_topics(struct replica_rx *rx, const char *body, size_t n)
{
	char names[64][MQ_NAME_MAX + 1];
	uint32_t id = 0;
	struct topic *t;
	int rc = 0;

	if (n && body[n - 1] != '\n')
		return -EBADMSG;
	/* Collect in rounds: deleting under the iteration is not allowed. */
	for (;;) {
		size_t k = 0;

		while (k < 64 && (t = mq_topic_next(rx->m, id))) {
			id = topic_id(t);
			if (!listed(body, n, topic_name(t)))
				snprintf(names[k++], sizeof(names[0]), "%s", topic_name(t));
			topic_unref(t);
		}
		for (size_t i = 0; i < k; i++) {
			int r = mq_topic_delete(rx->m, names[i]);

			if (r < 0 && r != -ENOENT && rc == 0)
				rc = r;
		}
		if (k < 64)
			return rc;
	}
}

/* The topic a frame names, if it is the same incarnation. */
static int find_topic(struct replica_rx *rx, const char *name, uint64_t uid,
		      struct topic **out)
{
	struct topic *t = mq_topic_find(rx->m, name);

	if (t && topic_uid(t) != uid) {
		topic_unref(t);
		t = NULL;
	}
	*out = t;
	return t ? 0 : -ENOENT;
}

static int apply_topic(struct replica_rx *rx, const struct repl_hdr *h,
		       const char *name, const char *body)
{
	char now[1024];
	const char *why;
	struct topic *t = mq_topic_find(rx->m, name);
	int rc, n;

	if (t && topic_uid(t) != h->uid) {
		topic_unref(t);
		t = NULL;
		rc = mq_topic_delete(rx->m, name);
		if (rc < 0 && rc != -ENOENT)
			return rc;
	}
	if (!t) {
		rc = mq_topic_create_uid(rx->m, name, h->uid, body, h->body);
		if (rc < 0 && rc != -EEXIST)
			return rc;
		if (find_topic(rx, name, h->uid, &t) < 0)
			return -EAGAIN;	/* raced with another stream */
	}
	n = topic_config_text(t, now, sizeof(now));
	rc = 0;
	if (n < 0 || (size_t)n != h->body || memcmp(now, body, h->body) != 0) {
		rc = topic_config_write(t, body, h->body, &why);
		if (rc < 0)
			fprintf(stderr, "mqfs: replica of %s: config refused: %s\n", name, why);
	}
	topic_unref(t);
	return rc;
}

static int apply_msgs(struct replica_rx *rx, struct topic *t, const struct repl_hdr *h,
		      const char *body)
{
	size_t elen = (size_t)h->count * sizeof(struct repl_ent), at = 0, len;
	const char *lines = body, *ents;
	struct cfg_topic cfg;
	struct part_stat a, b;
	struct part *p;
	int rc;

	if (h->count == 0 || elen > h->body)
		return -EBADMSG;
	len = h->body - elen;
	ents = body + len;
	if (h->part >= topic_nparts(t))
		return -ENOENT;
	if (mq_grow(&rx->ents, &rx->ecap, h->count, sizeof(*rx->ents), 256) < 0)
		return -ENOMEM;
	for (uint32_t i = 0; i < h->count; i++) {
		struct repl_ent w;

		memcpy(&w, ents + (size_t)i * sizeof(w), sizeof(w));
		/* The framing is checked; the lines themselves are the
		 * leader's, as it checked them, and the frame's checksum
		 * says they arrived as sent. */
		if (w.len == 0 || w.len >= len - at || lines[at + w.len] != '\n')
			return -EBADMSG;
		rx->ents[i] = (struct seg_entry){ .len = w.len, .flags = 0,
						  .ts_ms = w.ts_ms, .hash = w.hash };
		at += (size_t)w.len + 1;
	}
	if (at != len)
		return -EBADMSG;
	p = topic_part(t, h->part);
	part_stat(p, &a);
	rc = topic_cfg(t, &cfg);
	if (rc < 0)
		return rc;
	rc = part_append_ents(p, h->aux, h->off, h->mepoch, lines, len, rx->ents, h->count,
			      cfg.sync != CFG_SYNC_NONE);
	if (rc > 0) {
		part_stat(p, &b);
		topic_bytes_add(t, (int64_t)(b.end_pos - a.end_pos));
		rc = mark_dirty(rx, t, h->part);
		topic_ready(t);
	}
	return rc < 0 ? rc : 0;
}

/* After a truncation every group's window of part starts over at its
 * committed offset (or the new end, if that is past it): what it knew of
 * the offsets at and after the cut (acked ahead, delivered) was about
 * messages that are gone, and other messages will take those offsets. */
static void reset_groups(struct topic *t, uint32_t part, uint64_t end)
{
	uint32_t gid = 0;
	struct cg *g;

	while ((g = topic_group_next(t, gid))) {
		uint64_t off = cg_committed(g, part);

		gid = cg_id(g);
		(void)lease_commit_replica(cg_lease(g), part, off < end ? off : end, end);
		cg_unref(g);
	}
}

static int apply_cut(struct topic *t, const struct repl_hdr *h)
{
	struct part *p;
	struct part_stat st;
	int64_t freed;

	if (h->part >= topic_nparts(t))
		return -ENOENT;
	p = topic_part(t, h->part);
	if (h->type == REPL_TRIM) {
		freed = part_trim(p, h->off);
	} else {
		freed = part_truncate(p, h->off);
		part_stat(p, &st);
		if (freed >= 0)
			reset_groups(t, h->part, st.next);
	}
	if (freed > 0) {
		topic_bytes_add(t, -freed);
		topic_wake(t);
	}
	return freed < 0 ? (int)freed : 0;
}

static int apply_groups(struct topic *t, const char *body, size_t n)
{
	char names[64][MQ_NAME_MAX + 1];
	uint32_t gid = 0;
	struct cg *g;
	int rc = 0;

	if (n && body[n - 1] != '\n')
		return -EBADMSG;
	for (;;) {
		size_t k = 0;

		while (k < 64 && (g = topic_group_next(t, gid))) {
			gid = cg_id(g);
			if (!listed(body, n, cg_name(g)))
				snprintf(names[k++], sizeof(names[0]), "%s", cg_name(g));
			cg_unref(g);
		}
		for (size_t i = 0; i < k; i++) {
			int r = topic_group_delete(t, names[i]);

			if (r < 0 && r != -ENOENT && rc == 0)
				rc = r;
		}
		if (k < 64)
			return rc;
	}
}

static int find_group(struct topic *t, const char *name, int create, struct cg **out)
{
	int rc;

	*out = topic_group_find(t, name);
	if (*out || !create)
		return *out ? 0 : -ENOENT;
	rc = topic_group_create(t, name);
	if (rc < 0 && rc != -EEXIST)
		return rc;
	*out = topic_group_find(t, name);
	return *out ? 0 : -EAGAIN;
}

static int apply_group(struct topic *t, const struct repl_hdr *h, const char *group,
		       const char *body)
{
	struct cg *g;
	uint32_t n = topic_nparts(t);
	int rc;

	if ((uint64_t)h->count * 8 != h->body)
		return -EBADMSG;
	rc = find_group(t, group, 1, &g);
	for (uint32_t i = 0; rc == 0 && i < h->count && i < n; i++) {
		struct part_stat st;
		uint64_t off;

		memcpy(&off, body + 8 * (size_t)i, sizeof(off));
		part_stat(topic_part(t, i), &st);
		if (off > st.next)
			off = st.next;
		if (cg_committed(g, i) != off)
			rc = lease_commit_replica(cg_lease(g), i, off, st.next);
	}
	if (g)
		cg_unref(g);
	return rc;
}

static int apply_deads(struct topic *t, const struct repl_hdr *h, const char *group,
		       const char *body)
{
	struct lease_dead_key *k;
	struct cg *g;
	int rc;

	if ((uint64_t)h->count * 16 != h->body)
		return -EBADMSG;
	rc = find_group(t, group, 1, &g);
	if (rc < 0)
		return rc;
	k = malloc(((size_t)h->count + 1) * sizeof(*k));
	if (!k) {
		cg_unref(g);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < h->count; i++) {
		memcpy(&k[i].part, body + 16 * (size_t)i, 4);
		memcpy(&k[i].off, body + 16 * (size_t)i + 8, 8);
		k[i].seq = 0;
	}
	rc = lease_dead_keep(cg_lease(g), k, h->count);
	free(k);
	cg_unref(g);
	return rc;
}

static int apply_dead(struct topic *t, const struct repl_hdr *h, const char *group,
		      const char *body)
{
	struct repl_dead d;
	struct dlq_entry *e;
	struct cg *g;
	int rc;

	if (h->body < sizeof(d))
		return -EBADMSG;
	memcpy(&d, body, sizeof(d));
	if (d.reason_len > DLQ_REASON_MAX || d.line_len == 0 ||
	    (uint64_t)sizeof(d) + d.reason_len + d.line_len != h->body ||
	    memchr(body + sizeof(d), '\n', d.reason_len) ||
	    memchr(body + sizeof(d), 0, d.reason_len) ||
	    memchr(body + sizeof(d) + d.reason_len, '\n', d.line_len) ||
	    h->part >= MQ_MAX_PARTITIONS)
		return -EBADMSG;
	if (h->part >= topic_nparts(t))
		return -ENOENT;	/* the TOPIC frame that adds it comes first */
	rc = find_group(t, group, 1, &g);
	if (rc < 0)
		return rc;
	e = calloc(1, sizeof(*e));
	if (!e) {
		cg_unref(g);
		return -ENOMEM;
	}
	e->seq = d.seq;
	e->off = h->off;
	e->part = h->part;
	e->ts_ms = d.ts_ms;
	e->failed_at_ms = d.failed_at_ms;
	e->deliveries = d.deliveries;
	e->len = d.line_len;
	memcpy(e->reason, body + sizeof(d), d.reason_len);
	rc = lease_dead_import(cg_lease(g), e, body + sizeof(d) + d.reason_len);
	free(e);
	cg_unref(g);
	return rc;
}

static int name_ok(const char *s, size_t n)
{
	char tmp[MQ_NAME_MAX + 1];

	if (n == 0 || n > MQ_NAME_MAX)
		return 0;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	return mq_name_check(tmp) == 0;
}

/* XXH3_64bits of the frame with its check field 0, without writing it. */
static uint64_t frame_check(const char *f, size_t len)
{
	XXH3_state_t st;
	struct repl_hdr h;

	memcpy(&h, f, sizeof(h));
	h.check = 0;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &h, sizeof(h));
	XXH3_64bits_update(&st, f + sizeof(h), len - sizeof(h));
	return XXH3_64bits_digest(&st);
}

static int apply(struct replica_rx *rx, const char *f, size_t len)
{
	struct repl_hdr h;
	char topic[MQ_NAME_MAX + 1] = "", group[MQ_NAME_MAX + 1] = "";
	const char *body;
	struct topic *t = NULL;
	int rc;

	memcpy(&h, f, sizeof(h));
	if (frame_check(f, len) != h.check || h.zero)
		return -EBADMSG;
	if (h.tlen && !name_ok(f + REPL_HDR, h.tlen))
		return -EBADMSG;
	if (h.glen && !name_ok(f + REPL_HDR + h.tlen, h.glen))
		return -EBADMSG;
	memcpy(topic, f + REPL_HDR, h.tlen);
	memcpy(group, f + REPL_HDR + h.tlen, h.glen);
	body = f + REPL_HDR + h.tlen + h.glen;
	rc = mq_accept_epoch(rx->m, h.epoch);
	if (rc < 0)
		return rc;
	if (h.type == REPL_TOPICS)
		return apply_topics(rx, body, h.body);
	if (!h.tlen)
		return -EBADMSG;
	if (h.type == REPL_TOPIC)
		return apply_topic(rx, &h, topic, body);
	rc = find_topic(rx, topic, h.uid, &t);
	if (rc < 0)
		return rc;
	switch (h.type) {
	case REPL_MSGS:
		rc = apply_msgs(rx, t, &h, body);
		break;
	case REPL_TRIM:
	case REPL_TRUNC:
		rc = apply_cut(t, &h);
		break;
	case REPL_GROUPS:
		rc = apply_groups(t, body, h.body);
		break;
	case REPL_GROUP:
	case REPL_DEADS:
	case REPL_DEAD:
		if (!h.glen)
			rc = -EBADMSG;
		else if (h.type == REPL_GROUP)
			rc = apply_group(t, &h, group, body);
		else if (h.type == REPL_DEADS)
			rc = apply_deads(t, &h, group, body);
		else
			rc = apply_dead(t, &h, group, body);
		break;
	default:
		rc = -EBADMSG;
	}
	topic_unref(t);
	return rc;
}

/* Bytes of the frame that starts with header h (as far as it is known). */
static int frame_len(const struct repl_hdr *h, size_t *len)
{
	uint64_t n = (uint64_t)REPL_HDR + h->tlen + h->glen + h->body;

	if (h->magic != REPL_MAGIC || n > REPL_FRAME_MAX)
		return -EBADMSG;
	*len = (size_t)n;
	return 0;
}

ssize_t replica_rx_write(struct replica_rx *rx, uint64_t pos, const char *buf,
			 size_t len)
{
	size_t done = 0;
	int rc = rx->err;

	if (rc == 0 && pos != rx->pos)
		rc = -ESPIPE;
	while (rc == 0 && done < len) {
		size_t need = REPL_HDR, take;

		if (rx->have == 0 && len - done >= REPL_HDR) {
			/* The usual case: whole frames in the caller's buffer
			 * are applied from it, not copied. */
			struct repl_hdr h;

			memcpy(&h, buf + done, sizeof(h));
			rc = frame_len(&h, &need);
			if (rc == 0 && len - done >= need) {
				rc = apply(rx, buf + done, need);
				done += need;
				continue;
			}
		} else if (rx->have >= REPL_HDR) {
			rc = frame_len((const struct repl_hdr *)rx->buf, &need);
		}
		if (rc < 0)
			break;
		if (mq_grow(&rx->buf, &rx->cap, need, 1, 4096) < 0) {
			rc = -ENOMEM;
			break;
		}
		take = need - rx->have < len - done ? need - rx->have : len - done;
		memcpy(rx->buf + rx->have, buf + done, take);
		rx->have += take;
		done += take;
		/* The header just completed: now the frame's size is known. */
		if (rx->have == REPL_HDR && need == REPL_HDR)
			rc = frame_len((const struct repl_hdr *)rx->buf, &need);
		if (rc == 0 && rx->have == need) {
			rc = apply(rx, rx->buf, need);
			rx->have = 0;
		}
	}
	if (rc < 0) {
		if (rx->err == 0)
			fprintf(stderr, "mqfs: replication stream refused: %s\n", strerror(-rc));
		rx->err = rc;
		return rc;
	}
	rx->pos += len;
	return (ssize_t)len;
}

/* ---- the state a leader reads ---- */

struct text {
	char *buf;
	size_t len, cap;
	int err;
};

static void put(struct text *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct text *x, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (x->err)
		return;
	if (mq_grow(&x->buf, &x->cap, x->len + 256, 1, 4096) < 0) {
		x->err = -ENOMEM;
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(x->buf + x->len, x->cap - x->len, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= x->cap - x->len) {
		if (mq_grow(&x->buf, &x->cap, x->len + (size_t)n + 1, 1, 4096) < 0) {
			x->err = -ENOMEM;
			return;
		}
		va_start(ap, fmt);
		n = vsnprintf(x->buf + x->len, x->cap - x->len, fmt, ap);
		va_end(ap);
	}
	if (n > 0)
		x->len += (size_t)n;
}

int replica_state_text(struct mq *m, char **out, size_t *len)
{
	struct text x = { 0 };
	struct part_epoch *ep = NULL;	/* one partition's history */
	size_t epcap = 0;
	char refused[160];
	uint32_t id = 0;
	struct topic *t;

	mq_refused(m, refused, sizeof(refused));
	put(&x, "mqfs-repl 1\nnode %016" PRIx64 " epoch %" PRIu64 " role %s\nrefused %s\n",
	    mq_node_id(m), mq_epoch(m),
	    mq_role(m) == CFG_ROLE_LEADER ? "leader" : "follower", refused);
	while (!x.err && (t = mq_topic_next(m, id))) {
		uint32_t n = topic_nparts(t);

		id = topic_id(t);
		put(&x, "topic %s %016" PRIx64 " %" PRIu32 "\n", topic_name(t), topic_uid(t), n);
		for (uint32_t i = 0; i < n && !x.err; i++) {
			struct part *p = topic_part(t, i);
			struct part_stat st;
			size_t ne = part_epochs(p, NULL, 0), got;

			if (mq_grow(&ep, &epcap, ne + 1, sizeof(*ep), 16) < 0) {
				x.err = -ENOMEM;
				break;
			}
			part_stat(p, &st);
			got = part_epochs(p, ep, ne + 1);
			ne = got < ne + 1 ? got : ne + 1;	/* grew meanwhile? */
			put(&x, "part %" PRIu32 " %" PRIu64 " %" PRIu64 " ", i, st.first, st.next);
			for (size_t k = 0; k < ne; k++)
				put(&x, "%s%" PRIu64 ":%" PRIu64, k ? "," : "", ep[k].epoch, ep[k].start);
			put(&x, "%s\n", ne ? "" : "-");
		}
		topic_unref(t);
	}
	free(ep);
	if (x.err) {
		free(x.buf);
		return x.err;
	}
	*out = x.buf;
	*len = x.len;
	return 0;
}

/* ---- divergence ---- */

/* Kafka's OffsetForLeaderEpoch on history h: the largest epoch at most
 * epoch (0 if none), and the offset where it ends. */
static uint64_t epoch_end(const struct part_epoch *h, size_t n, uint64_t next,
			  uint64_t epoch, uint64_t *found)
{
	size_t i = 0;

	while (i < n && h[i].epoch <= epoch)
		i++;
	*found = i ? h[i - 1].epoch : 0;
	return i < n ? h[i].start : next;
}

uint64_t replica_diverge(const struct part_epoch *l, size_t nl, uint64_t next_l,
			 const struct part_epoch *f, size_t nf, uint64_t next_f)
{
	/* One round of the rule can stop short of the point (the leader's
	 * answer may name an older epoch than ours, which also ended earlier
	 * in our log): repeat on the log as it would be after the cut, until
	 * it stops moving. Each round drops at least one of our epochs. */
	for (;;) {
		uint64_t last, e, e2, end_l, end_f, cut;

		while (nf && f[nf - 1].start >= next_f)
			nf--;	/* epochs that begin at or after the cut */
		last = nf ? f[nf - 1].epoch : 0;
		end_l = epoch_end(l, nl, next_l, last, &e);
		end_f = epoch_end(f, nf, next_f, e, &e2);
		cut = end_l < end_f ? end_l : end_f;
		if (cut >= next_f)
			return next_f;
		next_f = cut;
	}
}
