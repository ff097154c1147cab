/*
 * mq.c - the topic table, DATA_DIR ownership, the retention thread.
 */
#define _GNU_SOURCE
#include "mq.h"
#include "commit.h"
#include "core.h"
#include "io.h"
#include "topic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define RETAIN_EVERY_MS 1000

/* A topic under construction: its name is taken, it is not visible yet. */
struct creating {
	char name[MQ_NAME_MAX + 1];
	struct creating *next;
};

struct mq {
	pthread_mutex_t lock;
	char dir[PATH_MAX];		/* DATA_DIR; immutable */
	char topics[PATH_MAX];		/* DATA_DIR/topics; immutable */
	struct cfg_node opts;		/* immutable */
	int lock_fd;			/* flock'ed DATA_DIR/.lock */
	struct topic **by_id;		/* index = id, NULL = none; lock */
	uint32_t nids;			/* next id; lock */
	uint32_t cap;			/* lock */
	struct creating *creating;	/* topics being created; lock */
	struct commit *commit;		/* NULL until mq_start */
	pthread_t janitor;
	int started;
	/* The janitor's own lock, taken alone (lease deadlines are announced
	 * with lease->lock held): */
	pthread_mutex_t tick_lock;
	pthread_cond_t tick_cond;	/* CLOCK_MONOTONIC */
	int64_t wake_at;		/* next run, monotonic ms; tick_lock */
	int stop;			/* tick_lock */
	struct topic_hooks hooks;	/* ready, changed: set before mq_start */
	/* The node (DATA_DIR/node). node_lock, taken alone, orders changes
	 * of role and epoch and guards refused; readers load the atomics. */
	pthread_mutex_t node_lock;
	uint64_t node_id;		/* immutable after mq_open */
	_Atomic uint64_t epoch;
	uint64_t led;			/* the epoch this node took to lead; node_lock */
	atomic_int role;		/* enum cfg_role */
	_Atomic uint64_t wepoch;	/* epoch while leader, else 0 (hooks) */
	char refused[160];		/* the last replication refusal */
};

static void announce(void *arg, int64_t mono_ms);

static int add_topic(struct mq *m, struct topic *t)
{
	if (m->nids == m->cap) {
		uint32_t cap = m->cap ? m->cap * 2 : 64;
		struct topic **n = realloc(m->by_id, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		memset(n + m->cap, 0, (cap - m->cap) * sizeof(*n));
		m->by_id = n;
		m->cap = cap;
	}
	m->by_id[m->nids++] = t;
	return 0;
}

static int topic_dir(const struct mq *m, const char *name, char *buf)
{
	return snprintf(buf, PATH_MAX, "%s/%s", m->topics, name) >= PATH_MAX ?
	       -ENAMETOOLONG : 0;
}

/* DATA_DIR/node: "id=HEX" and "epoch=N" lines. node_lock held (or not
 * shared yet). */
static int save_node(struct mq *m)
{
	char text[128];
	int n = snprintf(text, sizeof(text), "id=%016" PRIx64 "\nepoch=%" PRIu64 "\nled=%" PRIu64 "\n",
			 m->node_id, atomic_load(&m->epoch), m->led);

	return io_publish(m->dir, "node", text, (size_t)n, 1);
}

static int load_node(struct mq *m)
{
	char path[PATH_MAX + 8], text[256];
	unsigned long long id = 0, epoch = 0, led = 0;
	int stored;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/node", m->dir);
	n = io_read_small(path, text, sizeof(text) - 1);
	if (n >= 0) {
		text[n] = 0;
		if (sscanf(text, "id=%llx epoch=%llu led=%llu", &id, &epoch, &led) < 2) {
			fprintf(stderr, "mqfs: %s: cannot parse it\n", path);
			return -EINVAL;
		}
	} else if (n != -ENOENT) {
		return (int)n;
	}
	stored = n >= 0;
	while (id == 0) {
		stored = 0;
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			return -errno;
	}
	m->node_id = id;
	m->led = led;
	/* A leader writes under an epoch of its own: one it took itself, or a
	 * new one (mounting as leader a node that followed, or had a newer
	 * leader's epoch, is a promotion). */
	if (m->opts.role == CFG_ROLE_LEADER && (epoch == 0 || led != epoch)) {
		epoch = mq_epoch_after(m, epoch);
		m->led = epoch;
		stored = 0;
	}
	atomic_store(&m->epoch, epoch);
	atomic_store(&m->role, m->opts.role);
	atomic_store(&m->wepoch, m->opts.role == CFG_ROLE_LEADER ? epoch : 0);
	return stored ? 0 : save_node(m);
}

static int load(struct mq *m)
{
	struct dirent *de;
	DIR *d = opendir(m->topics);
	int rc = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char dir[PATH_MAX], cfg[PATH_MAX + 8];
		struct topic *t;

		if (mq_name_check(de->d_name) < 0 || topic_dir(m, de->d_name, dir) < 0)
			continue;
		snprintf(cfg, sizeof(cfg), "%s/config", dir);
		if (access(cfg, F_OK) < 0) {
			/* A creation or deletion that a crash cut short. */
			fprintf(stderr, "mqfs: removing incomplete topic %s\n", dir);
			(void)io_rmtree(dir);
			continue;
		}
		rc = topic_open(dir, de->d_name, m->nids, 0, &m->opts.topic, &m->hooks, 0, &t);
		if (rc < 0) {
			fprintf(stderr, "mqfs: cannot open topic %s: %s\n", dir, strerror(-rc));
			break;
		}
		rc = add_topic(m, t);
		if (rc < 0) {
			topic_unref(t);
			break;
		}
	}
	closedir(d);
	return rc;
}

int mq_open(const char *dir, const struct cfg_node *o, struct mq **out)
{
	struct mq *m = calloc(1, sizeof(*m));
	char lock[PATH_MAX + 8];
	pthread_condattr_t ca;
	int rc;

	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	pthread_mutex_init(&m->tick_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->tick_cond, &ca);
	pthread_condattr_destroy(&ca);
	m->wake_at = INT64_MAX;
	m->hooks.due = announce;
	m->hooks.due_arg = m;
	m->hooks.wepoch = &m->wepoch;
	pthread_mutex_init(&m->node_lock, NULL);
	m->opts = *o;
	m->lock_fd = -1;
	m->nids = 1;	/* id 0 is "no topic" */
	m->cap = 0;
	if (snprintf(m->dir, sizeof(m->dir), "%s", dir) >= (int)sizeof(m->dir) ||
	    snprintf(m->topics, sizeof(m->topics), "%s/topics", dir) >= (int)sizeof(m->topics)) {
		rc = -ENAMETOOLONG;
		goto out_free;
	}
	m->by_id = calloc(64, sizeof(*m->by_id));
	if (!m->by_id) {
		rc = -ENOMEM;
		goto out_free;
	}
	m->cap = 64;
	rc = io_mkdir(m->dir);
	if (rc == 0)
		rc = io_mkdir(m->topics);
	if (rc < 0)
		goto out_free;
	snprintf(lock, sizeof(lock), "%s/.lock", m->dir);
	m->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (m->lock_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	if (flock(m->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out_free;
	}
	rc = load_node(m);
	if (rc == 0)
		rc = load(m);
	if (rc < 0)
		goto out_free;
	*out = m;
	return 0;
out_free:
	mq_close(m);
	return rc;
}

/* hooks.due: wake the janitor by mono_ms. */
static void announce(void *arg, int64_t mono_ms)
{
	struct mq *m = arg;

	pthread_mutex_lock(&m->tick_lock);
	if (mono_ms < m->wake_at) {
		m->wake_at = mono_ms;
		pthread_cond_signal(&m->tick_cond);
	}
	pthread_mutex_unlock(&m->tick_lock);
}

/* Lease deadlines of every topic; the earliest next one. */
static int64_t tick(struct mq *m, int64_t now)
{
	int64_t next = INT64_MAX;
	uint32_t id = 0;
	struct topic *t;

	while ((t = mq_topic_next(m, id))) {
		int64_t n;

		id = topic_id(t);
		n = topic_tick(t, now, m->opts.sync_ms, mq_role(m) == CFG_ROLE_LEADER);
		if (n < next)
			next = n;
		topic_unref(t);
	}
	return next;
}

/*
 * The janitor: retention every RETAIN_EVERY_MS, and lease deadlines
 * (expiries, redeliveries, journal syncs) when they fall due.
 */
static void *janitor_main(void *arg)
{
	struct mq *m = arg;
	int64_t retain_at = mq_mono_ms() + RETAIN_EVERY_MS;

	pthread_mutex_lock(&m->tick_lock);
	while (!m->stop) {
		int64_t now = mq_mono_ms(), next;
		int64_t at = m->wake_at < retain_at ? m->wake_at : retain_at;

		if (now < at) {
			struct timespec ts = { .tv_sec = at / 1000,
					       .tv_nsec = (at % 1000) * 1000000 };

			pthread_cond_timedwait(&m->tick_cond, &m->tick_lock, &ts);
			continue;
		}
		/* Deadlines announced while we run are kept: min below. */
		m->wake_at = INT64_MAX;
		pthread_mutex_unlock(&m->tick_lock);
		if (now >= retain_at) {
			/* A follower deletes what its leader deletes (replica.h). */
			if (mq_role(m) == CFG_ROLE_LEADER)
				mq_retain(m);
			retain_at = now + RETAIN_EVERY_MS;
		}
		next = tick(m, now);
		pthread_mutex_lock(&m->tick_lock);
		if (next < m->wake_at)
			m->wake_at = next;
	}
	pthread_mutex_unlock(&m->tick_lock);
	return NULL;
}

void mq_set_ready(struct mq *m, void (*fn)(void *arg, struct topic *t), void *arg)
{
	m->hooks.ready = fn;
	m->hooks.ready_arg = arg;
}

void mq_set_changed(struct mq *m, void (*fn)(void *arg), void *arg)
{
	m->hooks.changed = fn;
	m->hooks.changed_arg = arg;
}

/* ---- the node: role and epoch ---- */

uint64_t mq_node_id(const struct mq *m) { return m->node_id; }

uint64_t mq_epoch_after(const struct mq *m, uint64_t epoch)
{
	return ((epoch >> 16) + 1) << 16 | (m->node_id & 0xffff);
}
uint64_t mq_epoch(struct mq *m) { return atomic_load(&m->epoch); }
enum cfg_role mq_role(struct mq *m) { return (enum cfg_role)atomic_load(&m->role); }

int mq_promote(struct mq *m)
{
	int rc = 0;

	pthread_mutex_lock(&m->node_lock);
	if (atomic_load(&m->role) != CFG_ROLE_LEADER) {
		uint64_t old = atomic_load(&m->epoch), led = m->led;

		atomic_store(&m->epoch, mq_epoch_after(m, old));
		m->led = atomic_load(&m->epoch);
		rc = save_node(m);
		if (rc < 0) {
			atomic_store(&m->epoch, old);
			m->led = led;
		} else {
			atomic_store(&m->wepoch, atomic_load(&m->epoch));
			atomic_store(&m->role, CFG_ROLE_LEADER);
			fprintf(stderr, "mqfs: promoted to leader, epoch %" PRIu64 "\n",
				atomic_load(&m->epoch));
		}
	}
	pthread_mutex_unlock(&m->node_lock);
	return rc;
}

/* node_lock held. */
static void demote(struct mq *m, const char *why)
{
	if (atomic_load(&m->role) == CFG_ROLE_FOLLOWER)
		return;
	atomic_store(&m->role, CFG_ROLE_FOLLOWER);
	atomic_store(&m->wepoch, 0);
	fprintf(stderr, "mqfs: now a follower (epoch %" PRIu64 "): %s\n",
		atomic_load(&m->epoch), why);
}

void mq_demote(struct mq *m, const char *why)
{
	pthread_mutex_lock(&m->node_lock);
	demote(m, why);
	pthread_mutex_unlock(&m->node_lock);
}

int mq_fenced(struct mq *m, uint64_t epoch)
{
	int rc = 0;

	pthread_mutex_lock(&m->node_lock);
	if (epoch > atomic_load(&m->epoch)) {
		char why[96];

		atomic_store(&m->epoch, epoch);
		rc = save_node(m);
		snprintf(why, sizeof(why), "a peer is at epoch %" PRIu64, epoch);
		demote(m, why);
	}
	pthread_mutex_unlock(&m->node_lock);
	return rc;
}

int mq_accept_epoch(struct mq *m, uint64_t epoch)
{
	uint64_t mine;
	int rc = 0;

	pthread_mutex_lock(&m->node_lock);
	mine = atomic_load(&m->epoch);
	if (epoch < mine || (epoch == mine && atomic_load(&m->role) == CFG_ROLE_LEADER)) {
		snprintf(m->refused, sizeof(m->refused),
			 "refused a leader of epoch %" PRIu64 ": this node is %s at epoch %" PRIu64,
			 epoch, atomic_load(&m->role) == CFG_ROLE_LEADER ? "leader" : "follower", mine);
		rc = -ESTALE;
	} else if (epoch > mine) {
		char why[96];

		atomic_store(&m->epoch, epoch);
		rc = save_node(m);
		if (rc < 0) {
			atomic_store(&m->epoch, mine);
		} else {
			snprintf(why, sizeof(why), "the leader of epoch %" PRIu64 " replicates to it", epoch);
			demote(m, why);
		}
	}
	pthread_mutex_unlock(&m->node_lock);
	return rc;
}

void mq_refused(struct mq *m, char *buf, size_t cap)
{
	pthread_mutex_lock(&m->node_lock);
	snprintf(buf, cap, "%s", m->refused[0] ? m->refused : "-");
	pthread_mutex_unlock(&m->node_lock);
}

int mq_start(struct mq *m)
{
	int rc = commit_start(m->opts.sync_ms, &m->commit);

	if (rc < 0)
		return rc;
	rc = -pthread_create(&m->janitor, NULL, janitor_main, m);
	if (rc == 0)
		m->started = 1;
	return rc;
}

void mq_close(struct mq *m)
{
	if (!m)
		return;
	if (m->started) {
		pthread_mutex_lock(&m->tick_lock);
		m->stop = 1;
		pthread_cond_signal(&m->tick_cond);
		pthread_mutex_unlock(&m->tick_lock);
		pthread_join(m->janitor, NULL);
	}
	/* Writers held back by max_bytes get their answer now. */
	for (uint32_t i = 0; m->by_id && i < m->nids; i++)
		if (m->by_id[i])
			topic_shutdown(m->by_id[i]);
	commit_stop(m->commit);
	for (uint32_t i = 0; m->by_id && i < m->nids; i++)
		topic_unref(m->by_id[i]);
	free(m->by_id);
	if (m->lock_fd >= 0)
		close(m->lock_fd);	/* releases the flock */
	pthread_cond_destroy(&m->tick_cond);
	pthread_mutex_destroy(&m->tick_lock);
	pthread_mutex_destroy(&m->node_lock);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

const struct cfg_node *mq_opts(const struct mq *m) { return &m->opts; }
struct commit *mq_commit(struct mq *m) { return m->commit; }
const char *mq_dir(const struct mq *m) { return m->dir; }

/* The live topic called name; lock held. */
static struct topic *find_locked(struct mq *m, const char *name, uint32_t *id)
{
	for (uint32_t i = 1; i < m->nids; i++)
		if (m->by_id[i] && strcmp(topic_name(m->by_id[i]), name) == 0) {
			if (id)
				*id = i;
			return m->by_id[i];
		}
	return NULL;
}

int mq_topic_create(struct mq *m, const char *name)
{
	return mq_topic_create_uid(m, name, 0, NULL, 0);
}

int mq_topic_create_uid(struct mq *m, const char *name, uint64_t uid,
			const char *cfg, size_t cfg_len)
{
	struct cfg_topic settings = m->opts.topic;
	struct creating me, **pp;
	char dir[PATH_MAX];
	struct topic *t = NULL;
	uint32_t id;
	int rc = mq_name_check(name);

	if (rc == 0)
		rc = topic_dir(m, name, dir);
	if (rc == 0 && cfg) {
		const char *why;

		/* The leader's count is the truth, whatever our default. */
		settings.partitions = 1;
		rc = cfg_topic_apply(&settings, cfg, cfg_len, &why);
	}
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->lock);
	rc = find_locked(m, name, NULL) ? -EEXIST : 0;
	for (struct creating *c = m->creating; rc == 0 && c; c = c->next)
		if (strcmp(c->name, name) == 0)
			rc = -EEXIST;
	if (rc == 0 && m->nids >= MQ_MAX_TOPIC_IDS)
		rc = -ENOSPC;
	/* Reserve the id slot and the name, then build the topic without the
	 * lock: every operation on every topic looks topics up under it, and
	 * creating 1024 partitions with their fsyncs takes a while. */
	if (rc == 0)
		rc = add_topic(m, NULL);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	id = m->nids - 1;
	snprintf(me.name, sizeof(me.name), "%s", name);
	me.next = m->creating;
	m->creating = &me;
	pthread_mutex_unlock(&m->lock);

	/* Leftovers of a creation that failed half way. */
	(void)io_rmtree(dir);
	rc = topic_open(dir, name, id, uid, &settings, &m->hooks, 1, &t);
	if (rc < 0)
		(void)io_rmtree(dir);
	/* The topic's own directory entry, or a power cut can take it. */
	else if (m->opts.topic.sync != CFG_SYNC_NONE)
		(void)io_sync_dir(m->topics);

	pthread_mutex_lock(&m->lock);
	for (pp = &m->creating; *pp != &me; pp = &(*pp)->next)
		;
	*pp = me.next;
	m->by_id[id] = rc < 0 ? NULL : t;
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int mq_topic_delete(struct mq *m, const char *name)
{
	struct topic *t;
	uint32_t id;
	int rc;

	pthread_mutex_lock(&m->lock);
	t = find_locked(m, name, &id);
	if (t)
		m->by_id[id] = NULL;
	pthread_mutex_unlock(&m->lock);
	if (!t)
		return -ENOENT;
	rc = topic_destroy(t);
	topic_unref(t);
	return rc;
}

struct topic *mq_topic_find(struct mq *m, const char *name)
{
	struct topic *t;

	pthread_mutex_lock(&m->lock);
	t = find_locked(m, name, NULL);
	if (t)
		topic_ref(t);
	pthread_mutex_unlock(&m->lock);
	return t;
}

struct topic *mq_topic_get(struct mq *m, uint32_t id)
{
	struct topic *t = NULL;

	pthread_mutex_lock(&m->lock);
	if (id < m->nids && m->by_id[id]) {
		t = m->by_id[id];
		topic_ref(t);
	}
	pthread_mutex_unlock(&m->lock);
	return t;
}

struct topic *mq_topic_next(struct mq *m, uint32_t after)
{
	struct topic *t = NULL;

	pthread_mutex_lock(&m->lock);
	for (uint32_t i = after + 1; i < m->nids && !t; i++)
		if (m->by_id[i]) {
			t = m->by_id[i];
			topic_ref(t);
		}
	pthread_mutex_unlock(&m->lock);
	return t;
}

void mq_retain(struct mq *m)
{
	int64_t now = mq_now_ms();
	uint32_t id = 0;
	struct topic *t;

	while ((t = mq_topic_next(m, id))) {
		id = topic_id(t);
		topic_retain(t, now);
		topic_unref(t);
	}
}
