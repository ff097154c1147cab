/*
 * mq.h - the storage engine of one node: a DATA_DIR, its topics, and the
 * background threads (group commit; the janitor: retention, and lease
 * deadlines as they fall due).
 *
 * DATA_DIR layout: `.lock` (held with flock while mounted, so two daemons
 * never share a directory) and `topics/NAME/` (topic.h). Every name is
 * checked with mq_name_check before it becomes a path.
 *
 * Start-up is two steps so that a daemon can report a bad DATA_DIR before
 * it detaches and still run its threads after fork(): mq_open loads and
 * recovers everything, mq_start starts the threads.
 *
 * Topics get ids (1, 2, ...) in load and creation order; ids are never
 * reused while the engine runs, so a deleted topic's id cannot name a new
 * topic of the same name (the FUSE layer builds inode numbers from them).
 *
 * Thread safety: every function may be called from any thread once
 * mq_start returned; mq->lock guards the topic table.
 *
 * Ownership: mq_open returns an engine owned by the caller, freed by
 * mq_close, which must be the last call. Topic lookups return a reference
 * (topic_unref it).
 */
#ifndef MQ_MQ_H
#define MQ_MQ_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct mq;
struct topic;
struct commit;

/* Load DATA_DIR dir (created if missing) with node settings *o (copied).
 * -EBUSY if another daemon holds it; recovery and I/O errors. */
int mq_open(const char *dir, const struct cfg_node *o, struct mq **out);
/* Start the commit and retention threads. */
int mq_start(struct mq *m);
/* Stop the threads (a last group commit completes every waiting writer),
 * close every topic, release DATA_DIR. */
void mq_close(struct mq *m);

const struct cfg_node *mq_opts(const struct mq *m);
const char *mq_dir(const struct mq *m);
struct commit *mq_commit(struct mq *m);

/* mkdir: -EINVAL (name), -EEXIST, I/O errors. */
int mq_topic_create(struct mq *m, const char *name);
/* rmdir: the topic and all of its data. -ENOENT. */
int mq_topic_delete(struct mq *m, const char *name);
struct topic *mq_topic_find(struct mq *m, const char *name);
struct topic *mq_topic_get(struct mq *m, uint32_t id);
/* The topic with the smallest id above after, for listings. */
struct topic *mq_topic_next(struct mq *m, uint32_t after);

/* The FUSE layer's topic_hooks.ready (topic.h): called when messages of a
 * topic may have become available to waiting consumers. Set before
 * mq_start. */
void mq_set_ready(struct mq *m, void (*fn)(void *arg, struct topic *t), void *arg);

/* The replicator's topic_hooks.changed (topic.h). Set before mq_start. */
void mq_set_changed(struct mq *m, void (*fn)(void *arg), void *arg);

/* Run one retention pass now (the janitor thread does it every second;
 * only while the node leads: a follower deletes what its leader deletes). */
void mq_retain(struct mq *m);

/* mkdir with a given incarnation (topic_uid; 0 = a new one) and settings
 * (cfg: T/config text, or NULL for the mount's defaults): replicas. */
int mq_topic_create_uid(struct mq *m, const char *name, uint64_t uid,
			const char *cfg, size_t cfg_len);

/* ---- the node: role and epoch (SPEC section 6) ----
 *
 * DATA_DIR/node holds "id=HEX" (random, fixed at the first mount: a
 * replicator recognises itself), "epoch=N", the highest leader epoch this
 * node knows, and "led=N", the epoch it took when it last became leader.
 * The role starts as the mount option says. A node that leads takes an
 * epoch of its own (mq_epoch_after), at promotion and when it is mounted
 * as leader without having led its current epoch: two leaders never write
 * under one epoch, which the divergence rule depends on. Epoch changes are
 * made durable before they take effect.
 */
uint64_t mq_node_id(const struct mq *m);
/* The epoch this node takes to lead after epoch: a counter in the high
 * bits, one more than epoch's, and the low 16 bits of the node id, so
 * that two nodes promoted from the same epoch still get different ones
 * (they collide only if their ids share those 16 bits). */
uint64_t mq_epoch_after(const struct mq *m, uint64_t epoch);
uint64_t mq_epoch(struct mq *m);
enum cfg_role mq_role(struct mq *m);
/* echo leader > .mq/role: a follower becomes leader of a new epoch
 * (mq_epoch_after its current one). A leader stays as it is. 0 or
 * -errno. */
int mq_promote(struct mq *m);
/* echo follower > .mq/role; why is logged. */
void mq_demote(struct mq *m, const char *why);
/* A replication frame of a leader of this epoch arrives: -ESTALE if the
 * epoch is older than ours, or equal while we lead (the reason is kept for
 * mq_refused); a newer one is adopted, and a leader steps down. */
int mq_accept_epoch(struct mq *m, uint64_t epoch);
/* Our replicator met a peer at this epoch: if it is newer, adopt it and
 * step down (this node was a stale leader). 0 or -errno. */
int mq_fenced(struct mq *m, uint64_t epoch);
/* The last refusal of mq_accept_epoch as text, "-" if none. */
void mq_refused(struct mq *m, char *buf, size_t cap);

#endif
