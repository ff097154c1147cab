/*
 * topic.h - a topic: its settings, its partitions and its consumer groups.
 *
 * Stored in DATA_DIR/topics/NAME/: `config` (key=value lines, the form
 * T/config shows), `parts/P/` (one partition.h directory each) and
 * `groups/G/` (group.h files). Creating a topic writes config last, so a
 * directory without config is a creation that crashed: mq_open removes it.
 *
 * Thread safety: every function may be called from any thread.
 * topic->lock guards the settings and the group list; partitions are
 * created under it but, once visible (index < topic_nparts), never change
 * or go away until the topic is freed, so topic_part needs no lock.
 *
 * Ownership: topic_open returns a topic with one reference for the caller
 * (the mq topic table). Anyone who keeps a topic past a call takes a
 * reference (topic_ref) and drops it with topic_unref; the last drop closes
 * the partitions. topic_destroy removes the files but leaves the object to
 * its holders, so that a write in flight during rmdir completes safely.
 */
#ifndef MQ_TOPIC_H
#define MQ_TOPIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

struct topic;
struct part;
struct cg;

/* ---- open and close ---- */

/*
 * How core reaches its clients about consumers. The engine owns the struct
 * (mq.h); every callback is made with no lock held.
 */
struct topic_hooks {
	/* Messages of t may have become available (appends, acks, expiries,
	 * redrives): wake the consumers waiting on it. Only called while
	 * topic_waiters says someone waits. Set by the FUSE layer. */
	void (*ready)(void *arg, struct topic *t);
	void *ready_arg;
	/* Something of a lease falls due at monotonic time ms: run
	 * topic_tick by then. Set by the engine (its janitor). May be called
	 * with lease->lock held: it must take no core lock. */
	void (*due)(void *arg, int64_t mono_ms);
	void *due_arg;
	/* Messages were appended or consumed (or anything else that a
	 * replicator copies may have changed): called after every append,
	 * with no lock held; must be cheap. Set by the replicator. */
	void (*changed)(void *arg);
	void *changed_arg;
	/* The epoch of local appends (partition.h): the node's epoch while
	 * it leads. Owned by the engine; NULL = 0. */
	const _Atomic uint64_t *wepoch;
};

/* Open the topic stored in dir; with create, make it from *defaults
 * (-EEXIST if dir has a config already) with incarnation uid (0: a new
 * random one; see topic_uid). Recovers every partition, and
 * every group's offsets, leases and dead letters. hooks (may be NULL)
 * must outlive the topic. */
int topic_open(const char *dir, const char *name, uint32_t id, uint64_t uid,
	       const struct cfg_topic *defaults, const struct topic_hooks *hooks,
	       int create, struct topic **out);
void topic_ref(struct topic *t);
void topic_unref(struct topic *t);
/* Delete the topic's files. Later changes fail with -ENOENT. */
int topic_destroy(struct topic *t);

uint32_t topic_id(const struct topic *t);
const char *topic_name(const struct topic *t);
/* A random number fixed when the topic is created (stored in DIR/uid) and
 * copied to replicas: a topic deleted and made again under the same name is
 * another topic, which replicas can tell. Never 0. */
uint64_t topic_uid(const struct topic *t);

/* ---- settings ---- */

/* The settings now; -ENOENT once the topic was deleted, -ESHUTDOWN once the
 * engine stops (*out is still filled in). */
int topic_cfg(struct topic *t, struct cfg_topic *out);
/* Apply key=value lines all or nothing (cfg_topic_apply), persist them, and
 * create any new partitions. -EINVAL (why says what), or an I/O error. */
int topic_config_write(struct topic *t, const char *buf, size_t len,
		       const char **why);
/* The settings as T/config shows them. */
int topic_config_text(struct topic *t, char *buf, size_t cap);

/* ---- partitions ---- */

uint32_t topic_nparts(struct topic *t);
/* Borrowed, valid while the caller holds a reference; i < topic_nparts. */
struct part *topic_part(struct topic *t, uint32_t i);
/* Retained bytes of all partitions (the max_bytes measure). */
uint64_t topic_bytes(struct topic *t);
void topic_bytes_add(struct topic *t, int64_t delta);
/* Where keyless lines of a new writer start: spreads writers over partitions. */
uint64_t topic_rr_start(struct topic *t);

/*
 * Apply retention to every partition. While the topic is at max_bytes (or
 * writers are held back), segments that every consumer group has committed
 * past are deleted too: that is how consumers relieve backpressure. Wakes
 * held writers when anything was deleted.
 */
void topic_retain(struct topic *t, int64_t now_ms);

/* T/stats: a header line, then one line per partition. *out is malloc'ed
 * and owned by the caller. */
int topic_stats_text(struct topic *t, char **out, size_t *len);

/* ---- backpressure ---- */

/*
 * A writer held back because the topic reached max_bytes (overflow=block).
 * The caller owns the struct and keeps it alive until it was woken or
 * unheld. Writers are held in FIFO order.
 */
struct topic_wait {
	struct topic_wait *next;	/* topic->lock */
	/* Called by topic_wake on its thread with no lock held, once per
	 * hold; it retries the write and may hold it again. */
	void (*wake)(struct topic_wait *w);
	/* Checked under topic->lock before holding: nonzero means the writer
	 * is gone (an interrupted FUSE request) and must not be held. */
	int (*gave_up)(struct topic_wait *w);
	int held;			/* topic->lock */
};

/* Hold w: 0; -EINTR if it gave up; -ENOENT (deleted) or -ESHUTDOWN
 * (engine stopping) if the topic takes no more writes. */
int topic_hold(struct topic *t, struct topic_wait *w);
/* Take w back: 1 if it was held (it will not be woken), 0 if not. */
int topic_unhold(struct topic *t, struct topic_wait *w);
/* Space may have freed (retention, settings, deletion): wake every held
 * writer. */
void topic_wake(struct topic *t);
/* The engine stops: refuse and wake every held writer. */
void topic_shutdown(struct topic *t);
/* A write was refused at max_bytes (overflow=reject): from now until
 * retention frees something, consumers' commits free what they are done
 * with at once, as they do for held writers. */
void topic_press(struct topic *t);

/* ---- groups ---- */

/* mkdir T/groups/NAME: starts at the earliest retained offsets.
 * -EINVAL (name), -EEXIST, -ENOENT (topic deleted), I/O errors. */
int topic_group_create(struct topic *t, const char *name);
/* rmdir: -ENOENT if there is no such group. */
int topic_group_delete(struct topic *t, const char *name);
/* Lookups return a reference (cg_unref it) or NULL. */
struct cg *topic_group_find(struct topic *t, const char *name);
struct cg *topic_group_get(struct topic *t, uint32_t gid);
/* The group with the smallest id above after: directory listings. */
struct cg *topic_group_next(struct topic *t, uint32_t after);

/*
 * A write to groups/G/offsets/P: "N" commits N, "+K" advances by K; one
 * value, surrounding blanks and one trailing newline allowed. -EINVAL for
 * anything else or past the end of the partition; nothing changes then.
 */
int topic_commit(struct topic *t, struct cg *g, uint32_t part,
		 const char *buf, size_t len);
/* ---- consumers (lease.h does the work) ---- */

/* A client starts (+1) or stops (-1) waiting for messages of t. */
void topic_waiters(struct topic *t, int delta);
/* A number that changes whenever the topic does: appends, acks and
 * commits (everything that calls topic_ready), settings, groups made. A
 * replicator skips topics whose number has not moved; other changes (dead
 * letters made by expiry, deletions) it finds on a slower full pass. */
uint64_t topic_gen(struct topic *t);
/* Messages may be available: call hooks->ready if anyone waits. Cheap
 * when nobody does (one atomic load): called after every append. */
void topic_ready(struct topic *t);
/* Tell the engine about a lease deadline (hooks->due). */
void topic_due(struct topic *t, int64_t mono_ms);
/* Expire leases (with expire) and sync journals of every group
 * (lease_tick); wakes waiting consumers. Returns the monotonic time of the
 * next deadline. */
int64_t topic_tick(struct topic *t, int64_t now_ms, uint64_t sync_ms, int expire);
/* Dead letters are numbered per topic, never reusing a number while the
 * engine runs (the FUSE layer makes inode numbers of them): 1, 2, ...; 0
 * once TOPIC_DEAD_IDS are used up, and no more letters can be made. */
#define TOPIC_DEAD_IDS (1ull << 31)
uint64_t topic_dead_id(struct topic *t);

/* A group's committed offset moved forward (a commit or acks): while
 * writers are held back by max_bytes, free what every group is done with. */
void topic_consumed(struct topic *t);
/* Byte position of g's committed offset in part (part_pos). */
int topic_group_pos(struct topic *t, struct cg *g, uint32_t part, uint64_t *pos);
/* groups/G/stats, like topic_stats_text. */
int topic_group_stats_text(struct topic *t, struct cg *g, char **out,
			   size_t *len);

#endif
