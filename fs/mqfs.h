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
 * The root is kind MQFS_ROOT with everything else 0, which is inode 1 as
 * FUSE requires.
 */
#ifndef MQFS_H
#define MQFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "../core/core.h"
#include "../core/mq.h"

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
};

struct mqfs_id {
	enum mqfs_kind kind;
	uint32_t part, gid, tid;
};

static inline fuse_ino_t mqfs_ino(enum mqfs_kind k, uint32_t tid, uint32_t gid,
				  uint32_t part)
{
	return (fuse_ino_t)k | (fuse_ino_t)part << 5 | (fuse_ino_t)gid << 16 |
	       (fuse_ino_t)tid << 36;
}

static inline struct mqfs_id mqfs_id(fuse_ino_t ino)
{
	struct mqfs_id id = {
		.kind = (enum mqfs_kind)(ino & 31),
		.part = (uint32_t)(ino >> 5) & 2047,
		.gid = (uint32_t)(ino >> 16) & 0xfffff,
		.tid = (uint32_t)(ino >> 36),
	};
	return id;
}

/* The operations table; userdata of the session is the struct mq. */
extern const struct fuse_lowlevel_ops mqfs_ops;

#endif
