/*
 * topic.c - settings, partitions, groups and offset commits of a topic.
 */
#define _GNU_SOURCE
#include "topic.h"
#include "core.h"
#include "group.h"
#include "io.h"
#include "lease.h"
#include "partition.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct topic {
	atomic_int refs;
	pthread_mutex_t lock;
	uint32_t id;				/* immutable */
	uint64_t uid;				/* immutable; see topic_uid */
	char name[MQ_NAME_MAX + 1];		/* immutable */
	char dir[PATH_MAX];			/* immutable */
	struct cfg_topic cfg;			/* lock */
	/* parts[i] for i < nparts never changes once nparts covers it. */
	struct part *parts[MQ_MAX_PARTITIONS];
	_Atomic uint32_t nparts;		/* written under lock */
	struct cg **groups;			/* owned refs; lock */
	size_t ngroups, gcap;			/* lock */
	uint32_t next_gid;			/* ids are never reused; lock */
	int deleted;				/* -ENOENT, -ESHUTDOWN or 0; lock */
	struct topic_wait *held, *held_tail;	/* FIFO of held writers; lock */
	int pressed;				/* a write was refused at max_bytes
						 * since the last retention; lock */
	_Atomic int64_t bytes;			/* retained bytes, all partitions */
	const struct topic_hooks *hooks;	/* borrowed from the engine; may be NULL */
	atomic_int waiters;			/* consumers waiting (topic_waiters) */
	_Atomic uint64_t dead_ids;		/* last dead-letter id handed out */
	atomic_uint_fast64_t rr;		/* keyless spreading, see topic_rr_start */
	_Atomic uint64_t gen;			/* see topic_gen */
};

uint64_t topic_gen(struct topic *t)
{
	return atomic_load(&t->gen);
}

static void touch(struct topic *t)
{
	atomic_fetch_add(&t->gen, 1);
	if (t->hooks && t->hooks->changed)
		t->hooks->changed(t->hooks->changed_arg);
}

static int path(char *buf, const struct topic *t, const char *a, const char *b)
{
	int n = b ? snprintf(buf, PATH_MAX, "%s/%s/%s", t->dir, a, b)
		  : snprintf(buf, PATH_MAX, "%s/%s", t->dir, a);

	return n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int durable(const struct topic *t)
{
	return t->cfg.sync != CFG_SYNC_NONE;
}

static int save_config(struct topic *t, const struct cfg_topic *c)
{
	char text[512];
	int n = cfg_topic_format(c, text, sizeof(text));

	if (n < 0)
		return n;
	return io_publish(t->dir, "config", text, (size_t)n, c->sync != CFG_SYNC_NONE);
}

/*
 * Open partitions [nparts, n) without making them visible; publish_parts
 * then shows them all at once (so routing never sees a count in between),
 * drop_parts closes them again. topic->lock held (or not yet shared).
 */
static int open_parts(struct topic *t, uint32_t n)
{
	for (uint32_t i = atomic_load(&t->nparts); i < n; i++) {
		char dir[PATH_MAX], idx[16];
		int rc;

		snprintf(idx, sizeof(idx), "%" PRIu32, i);
		rc = path(dir, t, "parts", idx);
		if (rc == 0)
			rc = part_open(dir, &t->parts[i]);
		if (rc < 0)
			return rc;
		part_set_epoch(t->parts[i], t->hooks ? t->hooks->wepoch : NULL);
	}
	/* A new partition's directory must survive a crash once its
	 * messages are acknowledged. */
	if (n > atomic_load(&t->nparts) && durable(t)) {
		char dir[PATH_MAX];

		if (path(dir, t, "parts", NULL) == 0)
			(void)io_sync_dir(dir);
	}
	return 0;
}

static void publish_parts(struct topic *t, uint32_t n)
{
	for (uint32_t i = atomic_load(&t->nparts); i < n; i++) {
		struct part_stat st;

		part_stat(t->parts[i], &st);
		atomic_fetch_add(&t->bytes, (int64_t)(st.end_pos - st.start_pos));
	}
	atomic_store_explicit(&t->nparts, n, memory_order_release);
}

static void drop_parts(struct topic *t)
{
	for (uint32_t i = atomic_load(&t->nparts); i < MQ_MAX_PARTITIONS && t->parts[i]; i++) {
		part_close(t->parts[i]);
		t->parts[i] = NULL;
	}
}

static int add_group(struct topic *t, struct cg *g)
{
	if (t->ngroups == t->gcap) {
		size_t cap = t->gcap ? t->gcap * 2 : 8;
		struct cg **ng = realloc(t->groups, cap * sizeof(*ng));

		if (!ng)
			return -ENOMEM;
		t->groups = ng;
		t->gcap = cap;
	}
	t->groups[t->ngroups++] = g;
	return 0;
}

/*
 * A committed offset past a partition's end can only come from a power loss
 * that took messages a consumer had already read: point the group at the
 * end, where the next message will be, rather than skip future messages.
 */
static void clamp_group(struct topic *t, struct cg *g)
{
	for (uint32_t i = 0; i < topic_nparts(t); i++) {
		struct part_stat st;

		part_stat(t->parts[i], &st);
		if (cg_committed(g, i) > st.next) {
			fprintf(stderr, "mqfs: %s: group %s: offset of partition %u past its end, set to %llu\n",
				t->name, cg_name(g), i, (unsigned long long)st.next);
			(void)cg_commit(g, i, st.next, 0, st.next, 1);
		}
	}
}

/* Load (or start) g's leases and dead letters. lock held, or t not shared
 * yet. */
static int attach_lease(struct topic *t, struct cg *g)
{
	struct lease *ls;
	int rc = lease_open(t, g, cg_dir(g), &t->cfg, &ls);

	if (rc == 0)
		cg_set_lease(g, ls);
	return rc;
}

static int load_groups(struct topic *t)
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = path(dir, t, "groups", NULL);

	if (rc < 0)
		return rc;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		char gdir[PATH_MAX];
		struct cg *g;

		if (mq_name_check(de->d_name) < 0)
			continue;	/* ".", "..", temp files */
		rc = path(gdir, t, "groups", de->d_name);
		if (rc == 0)
			rc = cg_load(gdir, de->d_name, t->next_gid++, &g);
		if (rc == 0) {
			clamp_group(t, g);
			rc = attach_lease(t, g);
			if (rc == 0)
				rc = add_group(t, g);
			if (rc < 0)
				cg_unref(g);
		}
		if (rc < 0)
			break;
	}
	closedir(d);
	return rc;
}

/* DIR/uid: the topic's incarnation, 16 hex digits. A topic made before
 * replication existed gets one at its first open. */
static int load_uid(struct topic *t, uint64_t want, int create)
{
	char p[PATH_MAX], text[32];
	ssize_t n = -ENOENT;
	int rc = path(p, t, "uid", NULL);

	if (rc < 0)
		return rc;
	if (!create)
		n = io_read_small(p, text, sizeof(text) - 1);
	if (n > 0) {
		text[n] = 0;
		t->uid = strtoull(text, NULL, 16);
		if (t->uid)
			return 0;
	}
	while (!(t->uid = want)) {
		if (getrandom(&want, sizeof(want), 0) != sizeof(want))
			return -errno;
	}
	n = snprintf(text, sizeof(text), "%016" PRIx64 "\n", t->uid);
	return io_publish(t->dir, "uid", text, (size_t)n, durable(t));
}

int topic_open(const char *dir, const char *name, uint32_t id, uint64_t uid,
	       const struct cfg_topic *defaults, const struct topic_hooks *hooks,
	       int create, struct topic **out)
{
	struct topic *t = calloc(1, sizeof(*t));
	char p[PATH_MAX], text[1024];
	const char *why;
	ssize_t n;
	int rc;

	if (!t)
		return -ENOMEM;
	atomic_init(&t->refs, 1);
	pthread_mutex_init(&t->lock, NULL);
	t->id = id;
	t->next_gid = 1;
	t->cfg = *defaults;
	t->hooks = hooks;
	snprintf(t->name, sizeof(t->name), "%s", name);
	if (snprintf(t->dir, sizeof(t->dir), "%s", dir) >= (int)sizeof(t->dir)) {
		rc = -ENAMETOOLONG;
		goto out_free;
	}
	rc = path(p, t, "config", NULL);
	if (rc < 0)
		goto out_free;
	n = io_read_small(p, text, sizeof(text));
	if (create && n >= 0) {
		rc = -EEXIST;
		goto out_free;
	}
	if (!create) {
		if (n < 0) {
			rc = (int)n;
			goto out_free;
		}
		/* The stored count is the truth, whatever the mount's default:
		 * start from 1 so that "never shrink" does not apply here. */
		t->cfg.partitions = 1;
		rc = cfg_topic_apply(&t->cfg, text, (size_t)n, &why);
		if (rc < 0) {
			fprintf(stderr, "mqfs: %s: %s\n", p, why);
			goto out_free;
		}
	}
	rc = io_mkdir(dir);
	if (rc == 0)
		rc = load_uid(t, uid, create);
	if (rc == 0 && (rc = path(p, t, "parts", NULL)) == 0)
		rc = io_mkdir(p);
	if (rc == 0 && (rc = path(p, t, "groups", NULL)) == 0)
		rc = io_mkdir(p);
	if (rc == 0)
		rc = open_parts(t, t->cfg.partitions);
	if (rc == 0)
		publish_parts(t, t->cfg.partitions);
	if (rc == 0 && !create)
		rc = load_groups(t);
	/* Last: a topic exists once its config does. */
	if (rc == 0 && create)
		rc = save_config(t, &t->cfg);
	if (rc < 0)
		goto out_free;
	*out = t;
	return 0;
out_free:
	topic_unref(t);
	return rc;
}

void topic_ref(struct topic *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void topic_unref(struct topic *t)
{
	if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Groups first: their leases write their journals at close and
	 * still look at the partitions. */
	for (size_t i = 0; i < t->ngroups; i++)
		cg_unref(t->groups[i]);
	free(t->groups);
	for (uint32_t i = 0; i < atomic_load(&t->nparts); i++)
		part_close(t->parts[i]);
	drop_parts(t);	/* opened but never shown (a failed open) */
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int topic_destroy(struct topic *t)
{
	char p[PATH_MAX];
	int rc;

	pthread_mutex_lock(&t->lock);
	t->deleted = -ENOENT;
	for (size_t i = 0; i < t->ngroups; i++)
		(void)cg_destroy(t->groups[i]);	/* commits through them stop */
	pthread_mutex_unlock(&t->lock);
	/* Writers and the retention thread may still hold this topic; after
	 * this nothing they do touches a file, so a topic created again under
	 * the same name is safe from them. */
	for (uint32_t i = 0; i < topic_nparts(t); i++)
		part_kill(t->parts[i]);
	topic_wake(t);
	topic_ready(t);
	rc = path(p, t, "config", NULL);
	/* config first: a crash in the middle leaves no half topic behind. */
	if (rc == 0 && unlink(p) < 0)
		rc = -errno;
	if (rc == 0)
		rc = io_rmtree(t->dir);
	return rc;
}

uint32_t topic_id(const struct topic *t) { return t->id; }
uint64_t topic_uid(const struct topic *t) { return t->uid; }
const char *topic_name(const struct topic *t) { return t->name; }

int topic_cfg(struct topic *t, struct cfg_topic *out)
{
	int rc;

	pthread_mutex_lock(&t->lock);
	*out = t->cfg;
	rc = t->deleted;
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int topic_config_write(struct topic *t, const char *buf, size_t len,
		       const char **why)
{
	struct cfg_topic nc;
	int rc;

	pthread_mutex_lock(&t->lock);
	nc = t->cfg;
	rc = t->deleted ? t->deleted : cfg_topic_apply(&nc, buf, len, why);
	if (rc < 0)
		goto out_unlock;
	/* New partitions are opened, the settings stored, and only then are
	 * the partitions shown: a failure leaves the topic as it was. */
	rc = open_parts(t, nc.partitions);
	if (rc == 0)
		rc = save_config(t, &nc);
	if (rc == 0) {
		publish_parts(t, nc.partitions);
		t->cfg = nc;
	} else {
		drop_parts(t);
		*why = "could not store the new settings";
	}
out_unlock:
	pthread_mutex_unlock(&t->lock);
	if (rc == 0) {
		topic_wake(t);	/* max_bytes or overflow may have changed */
		touch(t);
	}
	return rc;
}

int topic_config_text(struct topic *t, char *buf, size_t cap)
{
	struct cfg_topic c;

	(void)topic_cfg(t, &c);
	return cfg_topic_format(&c, buf, cap);
}

uint32_t topic_nparts(struct topic *t)
{
	return atomic_load_explicit(&t->nparts, memory_order_acquire);
}

struct part *topic_part(struct topic *t, uint32_t i)
{
	return t->parts[i];
}

uint64_t topic_bytes(struct topic *t)
{
	int64_t b = atomic_load_explicit(&t->bytes, memory_order_relaxed);

	return b > 0 ? (uint64_t)b : 0;
}

void topic_bytes_add(struct topic *t, int64_t delta)
{
	atomic_fetch_add_explicit(&t->bytes, delta, memory_order_relaxed);
}

uint64_t topic_rr_start(struct topic *t)
{
	return atomic_fetch_add_explicit(&t->rr, 1, memory_order_relaxed);
}

/*
 * Per partition, the offset below which every group is done; 0 for all when
 * there is no group (nothing counts as consumed then). lock held.
 */
static void consumed_below(struct topic *t, uint32_t n, uint64_t *out)
{
	for (uint32_t i = 0; i < n; i++) {
		out[i] = t->ngroups ? UINT64_MAX : 0;
		for (size_t g = 0; g < t->ngroups; g++) {
			uint64_t c = cg_committed(t->groups[g], i);

			if (c < out[i])
				out[i] = c;
		}
	}
}

void topic_retain(struct topic *t, int64_t now_ms)
{
	uint64_t consumed[MQ_MAX_PARTITIONS];
	uint32_t n = topic_nparts(t);
	struct cfg_topic c;
	int64_t total = 0;
	int pressed;

	pthread_mutex_lock(&t->lock);
	c = t->cfg;
	pressed = !t->deleted && c.max_bytes &&
		  (t->held || t->pressed || topic_bytes(t) >= c.max_bytes);
	if (pressed)
		consumed_below(t, n, consumed);
	pthread_mutex_unlock(&t->lock);
	if (!c.retention_ms && !c.retention_bytes && !pressed)
		return;
	for (uint32_t i = 0; i < n; i++) {
		int64_t freed = part_retain(t->parts[i], now_ms, c.retention_ms,
					    c.retention_bytes, pressed ? consumed[i] : 0);

		if (freed > 0) {
			topic_bytes_add(t, -freed);
			total += freed;
		}
	}
	if (total > 0) {
		pthread_mutex_lock(&t->lock);
		t->pressed = 0;
		pthread_mutex_unlock(&t->lock);
		topic_wake(t);
	}
}

void topic_press(struct topic *t)
{
	pthread_mutex_lock(&t->lock);
	t->pressed = 1;
	pthread_mutex_unlock(&t->lock);
}

int topic_hold(struct topic *t, struct topic_wait *w)
{
	int rc;

	pthread_mutex_lock(&t->lock);
	rc = t->deleted;
	if (rc == 0 && w->gave_up && w->gave_up(w))
		rc = -EINTR;
	if (rc == 0) {
		w->next = NULL;
		w->held = 1;
		if (t->held_tail)
			t->held_tail->next = w;
		else
			t->held = w;
		t->held_tail = w;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int topic_unhold(struct topic *t, struct topic_wait *w)
{
	struct topic_wait **pp, *prev = NULL;
	int found = 0;

	pthread_mutex_lock(&t->lock);
	for (pp = &t->held; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			if (t->held_tail == w)
				t->held_tail = prev;
			w->held = 0;
			found = 1;
			break;
		}
	pthread_mutex_unlock(&t->lock);
	return found;
}

void topic_wake(struct topic *t)
{
	struct topic_wait *w;

	pthread_mutex_lock(&t->lock);
	w = t->held;
	t->held = t->held_tail = NULL;
	for (struct topic_wait *x = w; x; x = x->next)
		x->held = 0;
	pthread_mutex_unlock(&t->lock);
	/* In FIFO order; a writer that is still over the limit queues again
	 * behind the others, in the same order. */
	while (w) {
		struct topic_wait *next = w->next;

		w->wake(w);
		w = next;
	}
}

void topic_shutdown(struct topic *t)
{
	pthread_mutex_lock(&t->lock);
	if (!t->deleted)
		t->deleted = -ESHUTDOWN;
	pthread_mutex_unlock(&t->lock);
	topic_wake(t);
}

/* Lag of the group furthest behind on part, 0 without groups. lock held. */
static uint64_t max_lag(struct topic *t, uint32_t part, const struct part_stat *st)
{
	uint64_t lag = 0;

	for (size_t i = 0; i < t->ngroups; i++) {
		uint64_t c = cg_committed(t->groups[i], part);

		if (c < st->first)
			c = st->first;
		if (st->next > c && st->next - c > lag)
			lag = st->next - c;
	}
	return lag;
}

int topic_stats_text(struct topic *t, char **out, size_t *len)
{
	FILE *f = open_memstream(out, len);
	uint32_t n = topic_nparts(t);

	if (!f)
		return -ENOMEM;
	fprintf(f, "partition first next messages bytes segments max_lag\n");
	pthread_mutex_lock(&t->lock);
	for (uint32_t i = 0; i < n; i++) {
		struct part_stat st;

		part_stat(t->parts[i], &st);
		fprintf(f, "%" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
			" %" PRIu32 " %" PRIu64 "\n", i, st.first, st.next,
			st.next - st.first, st.end_pos - st.start_pos, st.segments,
			max_lag(t, i, &st));
	}
	pthread_mutex_unlock(&t->lock);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

int topic_group_create(struct topic *t, const char *name)
{
	uint64_t start[MQ_MAX_PARTITIONS];
	char dir[PATH_MAX];
	struct cg *g;
	uint32_t n;
	int rc = mq_name_check(name);

	if (rc < 0)
		return rc;
	rc = path(dir, t, "groups", name);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&t->lock);
	rc = t->deleted;
	for (size_t i = 0; rc == 0 && i < t->ngroups; i++)
		if (strcmp(cg_name(t->groups[i]), name) == 0)
			rc = -EEXIST;
	if (rc == 0 && t->next_gid >= MQ_MAX_GROUP_IDS)
		rc = -ENOSPC;
	if (rc < 0)
		goto out_unlock;
	n = topic_nparts(t);
	for (uint32_t i = 0; i < n; i++) {
		struct part_stat st;

		part_stat(t->parts[i], &st);
		start[i] = st.first;
	}
	rc = cg_create(dir, name, t->next_gid, start, n, durable(t), &g);
	if (rc < 0)
		goto out_unlock;
	rc = attach_lease(t, g);
	if (rc == 0)
		rc = add_group(t, g);
	if (rc < 0) {
		cg_destroy(g);
		cg_unref(g);
		goto out_unlock;
	}
	t->next_gid++;
	if (durable(t) && path(dir, t, "groups", NULL) == 0)
		(void)io_sync_dir(dir);	/* the group's directory entry */
out_unlock:
	pthread_mutex_unlock(&t->lock);
	if (rc == 0)
		touch(t);
	return rc;
}

int topic_group_delete(struct topic *t, const char *name)
{
	struct cg *g = NULL;
	int rc;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->ngroups; i++)
		if (strcmp(cg_name(t->groups[i]), name) == 0) {
			g = t->groups[i];
			t->groups[i] = t->groups[--t->ngroups];
			break;
		}
	pthread_mutex_unlock(&t->lock);
	if (!g)
		return -ENOENT;
	rc = cg_destroy(g);
	cg_unref(g);
	topic_ready(t);	/* its blocked consumers get their answer: ENOENT */
	return rc;
}

/* The group called name, or with id gid when name is NULL; a reference. */
static struct cg *group_lookup(struct topic *t, const char *name, uint32_t gid)
{
	struct cg *g = NULL;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->ngroups && !g; i++)
		if (name ? strcmp(cg_name(t->groups[i]), name) == 0 :
			   cg_id(t->groups[i]) == gid)
			g = t->groups[i];
	if (g)
		cg_ref(g);
	pthread_mutex_unlock(&t->lock);
	return g;
}

struct cg *topic_group_find(struct topic *t, const char *name)
{
	return group_lookup(t, name, 0);
}

struct cg *topic_group_get(struct topic *t, uint32_t gid)
{
	return group_lookup(t, NULL, gid);
}

struct cg *topic_group_next(struct topic *t, uint32_t after)
{
	struct cg *g = NULL;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->ngroups; i++) {
		uint32_t id = cg_id(t->groups[i]);

		if (id > after && (!g || id < cg_id(g)))
			g = t->groups[i];
	}
	if (g)
		cg_ref(g);
	pthread_mutex_unlock(&t->lock);
	return g;
}

static int held_any(struct topic *t)
{
	int any;

	pthread_mutex_lock(&t->lock);
	any = t->held != NULL || t->pressed;
	pthread_mutex_unlock(&t->lock);
	return any;
}

int topic_commit(struct topic *t, struct cg *g, uint32_t part,
		 const char *buf, size_t len)
{
	struct part_stat st;
	char text[32], *end;
	unsigned long long v;
	int relative = 0, rc;
	size_t i = 0;

	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ' ||
		       buf[len - 1] == '\t' || buf[len - 1] == '\r'))
		len--;
	while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
		i++;
	if (i < len && buf[i] == '+') {
		relative = 1;
		i++;
	}
	if (i == len || len - i >= sizeof(text) || buf[i] < '0' || buf[i] > '9')
		return -EINVAL;
	memcpy(text, buf + i, len - i);
	text[len - i] = '\0';
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || *end)
		return -EINVAL;
	if (part >= topic_nparts(t))
		return -ENOENT;
	part_stat(t->parts[part], &st);
	rc = lease_commit(cg_lease(g), part, v, relative, st.next);
	if (rc == 0)
		topic_consumed(t);
	return rc;
}

void topic_consumed(struct topic *t)
{
	/* Consumers relieve backpressure: free what they are done with now
	 * rather than at the next retention pass. */
	if (held_any(t))
		topic_retain(t, mq_now_ms());
}

int topic_group_pos(struct topic *t, struct cg *g, uint32_t part, uint64_t *pos)
{
	return part_pos(t->parts[part], cg_committed(g, part), pos);
}

int topic_group_stats_text(struct topic *t, struct cg *g, char **out,
			   size_t *len)
{
	FILE *f = open_memstream(out, len);
	uint32_t n = topic_nparts(t);

	if (!f)
		return -ENOMEM;
	fprintf(f, "partition committed end lag in_flight retry dead\n");
	for (uint32_t i = 0; i < n; i++) {
		struct part_stat st;
		struct lease_stat ls;
		uint64_t c = cg_committed(g, i);

		part_stat(t->parts[i], &st);
		lease_stat(cg_lease(g), i, &ls);
		/* Lag counts retained messages: a committed offset that
		 * retention passed by lags from the first one still there. */
		fprintf(f, "%" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
			" %" PRIu64 " %" PRIu64 "\n", i, c, st.next,
			st.next - (c > st.first ? c : st.first), ls.in_flight, ls.retry,
			ls.dead);
	}
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

/* ---- consumers ---- */

void topic_waiters(struct topic *t, int delta)
{
	atomic_fetch_add(&t->waiters, delta);
}

void topic_ready(struct topic *t)
{
	atomic_fetch_add(&t->gen, 1);
	if (t->hooks && t->hooks->changed)
		t->hooks->changed(t->hooks->changed_arg);
	if (atomic_load_explicit(&t->waiters, memory_order_acquire) > 0 &&
	    t->hooks && t->hooks->ready)
		t->hooks->ready(t->hooks->ready_arg, t);
}

void topic_due(struct topic *t, int64_t mono_ms)
{
	if (t->hooks && t->hooks->due)
		t->hooks->due(t->hooks->due_arg, mono_ms);
}

uint64_t topic_dead_id(struct topic *t)
{
	uint64_t id = atomic_fetch_add(&t->dead_ids, 1) + 1;

	return id < TOPIC_DEAD_IDS ? id : 0;
}

int64_t topic_tick(struct topic *t, int64_t now_ms, uint64_t sync_ms, int expire)
{
	int64_t next = INT64_MAX;
	uint32_t after = 0;
	struct cg *g;
	int avail = 0;

	while ((g = topic_group_next(t, after))) {
		int64_t n;

		after = cg_id(g);
		avail |= lease_tick(cg_lease(g), now_ms, sync_ms, expire, &n);
		if (n < next)
			next = n;
		cg_unref(g);
	}
	if (avail)
		topic_ready(t);
	return next;
}
