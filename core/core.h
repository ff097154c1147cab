/*
 * core.h - what every core/ module shares: the global lock order, the time
 * source, and the conventions of the storage engine.
 *
 * core/ is a library that takes paths and bytes. It never includes a FUSE
 * header: fs/ maps file operations onto it, replication/ will be another
 * client of it, and test/unit/ links it without libfuse.
 *
 * Errors: every function returns 0 (or a byte/record count) on success and a
 * negative errno on failure. errno itself is never read by a caller.
 *
 * Lock order (take left before right, never the reverse):
 *
 *     mq->lock  ->  topic->lock  ->  part->lock  ->  commit->lock
 *     prod->lock  ->  topic->lock  ->  part->lock
 *     topic->lock  ->  lease->lock  ->  part->lock, cg->lock
 *     (fs) inflight_lock  ->  topic->lock
 *     (fs) park_lock  ->  lease->lock
 *     mq->tick_lock: a leaf, taken alone
 *
 * mq->lock guards the topic table, topic->lock a topic's config, partition
 * array, groups and held writers, part->lock a partition's segment list and
 * its active segment's tail, commit->lock the group-commit queue, prod->lock
 * one open file's partial line, cg->lock (taken alone, inside lease->lock,
 * or inside topic->lock when a topic is deleted) one group's offset files,
 * lease->lock one group's leases, journal and dead letters. Segments
 * have no lock: a sealed segment is immutable and is read with pread() by
 * whoever holds a reference (seg_ref); the active segment's length fields
 * are guarded by the lock of the partition that owns it. Callbacks into
 * the FUSE layer (write completions, held-writer wake-ups) are made with
 * none of these locks held.
 */
#ifndef MQ_CORE_H
#define MQ_CORE_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mqfs writes its on-disk formats in host order and requires little-endian"
#endif

/* Upper bounds that size arrays and inode numbers (fs/mqfs.h). Ids are
 * handed out once per run: a run can create this many topics, and this many
 * groups per topic, before mkdir answers ENOSPC (a remount starts over). */
#define MQ_MAX_PARTITIONS 1024
#define MQ_NAME_MAX 200
#define MQ_MAX_TOPIC_IDS (1u << 28)
#define MQ_MAX_GROUP_IDS (1u << 20)

/* Wall-clock milliseconds since the epoch: message timestamps, retention. */
int64_t mq_now_ms(void);
/* Monotonic milliseconds: deadlines and timeouts. */
int64_t mq_mono_ms(void);

/*
 * Make the array *pp (elements of size bytes, *cap of them) hold at least
 * need elements, doubling from first: the one growth rule of core's
 * buffers, so that nothing grows per message. 0, or -ENOMEM with *pp and
 * *cap unchanged. pp is the address of the array's pointer.
 */
int mq_grow(void *pp, size_t *cap, size_t need, size_t size, size_t first);

/*
 * Topic and group names: 1..MQ_NAME_MAX bytes of [A-Za-z0-9._-], not starting
 * with '.'. Everything that becomes a path component in DATA_DIR passes here.
 * Returns 0 or -EINVAL.
 */
int mq_name_check(const char *name);

#endif
