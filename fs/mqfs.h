/*
 * mqfs.h - the FUSE layer: maps paths and file operations onto core/.
 *
 * No storage logic lives here: every decision about messages, offsets and
 * settings is core's; this layer names things (inode numbers), keeps the
 * per-open-file state, and converts core's -errno into FUSE replies in one
 * place (mqfs_reply_err).
 *
 * Inode numbers are computed, not stored: kind, partition, group id and
 * topic id packed into 64 bits (mqfs_ino). Topic and group ids are never
 * reused while the daemon runs, so an inode of a deleted topic can never
 * name its successor; FORGET needs no bookkeeping.
 *
 *     bits  0..4   kind (enum mqfs_kind)
 *     bits  5..15  partition (0..1023)
 *     bits 16..35  group id (0 = none; < MQ_MAX_GROUP_IDS)
 *     bits 36..63  topic id (0 = none; < MQ_MAX_TOPIC_IDS)
 *
 * A dead letter (MQFS_DEAD) has no partition or group bits: bits 5..35 hold
 * its number instead (topic_dead_id: unique per topic and run), and the
 * group is found by asking each group's dead letters.
 *
 * The root is kind MQFS_ROOT with everything else 0, which is inode 1 as
 * FUSE requires. The node's files under .mq/ have topic id 0 too.
 */
#ifndef MQFS_H
#define MQFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "../core/core.h"
#include "../core/mq.h"
#include "../core/topic.h"

_Static_assert(MQ_MAX_PARTITIONS <= 2048 && MQ_MAX_GROUP_IDS <= (1u << 20) &&
	       MQ_MAX_TOPIC_IDS <= (1u << 28), "ids must fit their inode bits");

enum mqfs_kind {
	MQFS_ROOT = 1,
	MQFS_TOPIC,	/* T/ */
	MQFS_PUBLISH,	/* T/publish */
	MQFS_PART,	/* T/P */
	MQFS_CONFIG,	/* T/config */
	MQFS_TSTATS,	/* T/stats */
	MQFS_GROUPS,	/* T/groups/ */
	MQFS_GROUP,	/* T/groups/G/ */
	MQFS_GPART,	/* T/groups/G/P */
	MQFS_OFFSETS,	/* T/groups/G/offsets/ */
	MQFS_OFFSET,	/* T/groups/G/offsets/P */
	MQFS_GSTATS,	/* T/groups/G/stats */
	MQFS_NEXT,	/* T/groups/G/next */
	MQFS_BATCH,	/* T/groups/G/batch */
	MQFS_ACK,	/* T/groups/G/ack */
	MQFS_NACK,	/* T/groups/G/nack */
	MQFS_DLQ,	/* T/dlq/ */
	MQFS_DLQG,	/* T/dlq/G/ */
	MQFS_REDRIVE,	/* T/dlq/G/redrive */
	MQFS_DEAD,	/* T/dlq/G/P:OFF */
	MQFS_MQDIR,	/* .mq/ */
	MQFS_ROLE,	/* .mq/role */
	MQFS_EPOCH,	/* .mq/epoch */
	MQFS_REPLICAS,	/* .mq/replicas */
	MQFS_REPL,	/* .mq/repl: the replication endpoint (core/replica.h) */
	MQFS_NKINDS
};
_Static_assert(MQFS_NKINDS <= 32, "kinds must fit 5 bits");
_Static_assert(TOPIC_DEAD_IDS <= (1ull << 31), "dead-letter ids must fit 31 bits");

struct mqfs_id {
	enum mqfs_kind kind;
	uint32_t part, gid, tid;
	uint64_t dead;	/* MQFS_DEAD only */
};

static inline fuse_ino_t mqfs_ino(enum mqfs_kind k, uint32_t tid, uint32_t gid,
				  uint32_t part)
{
	return (fuse_ino_t)k | (fuse_ino_t)part << 5 | (fuse_ino_t)gid << 16 |
	       (fuse_ino_t)tid << 36;
}

static inline fuse_ino_t mqfs_ino_dead(uint32_t tid, uint64_t dead)
{
	return (fuse_ino_t)MQFS_DEAD | (fuse_ino_t)dead << 5 | (fuse_ino_t)tid << 36;
}

static inline struct mqfs_id mqfs_id(fuse_ino_t ino)
{
	struct mqfs_id id = {
		.kind = (enum mqfs_kind)(ino & 31),
		.part = (uint32_t)(ino >> 5) & 2047,
		.gid = (uint32_t)(ino >> 16) & 0xfffff,
		.tid = (uint32_t)(ino >> 36),
	};
	if (id.kind == MQFS_DEAD) {
		id.dead = (ino >> 5) & 0x7fffffff;
		id.part = id.gid = 0;
	}
	return id;
}

/* The operations table; userdata of the session is the struct mq. */
extern const struct fuse_lowlevel_ops mqfs_ops;

struct repl;
/* The replicator (replication/repl.h): producer writes ask it for leave
 * (repl_admit) and, under acks=all, wait for it (repl_wait). Set before
 * the session runs; borrowed. */
void mqfs_set_repl(struct repl *r);

/* topic_hooks.ready (mq_set_ready; arg is the struct mq): answer the
 * parked reads and wake the pollers of next and batch files of t; on a
 * follower the parked reads get EROFS. */
void mqfs_ready(void *arg, struct topic *t);

#endif
