/*
 * partition.h - a partition: an append-only log of messages, stored as a
 * directory of segments (segment.h), addressed by offset and by byte.
 *
 * Offsets count messages from 0 for the first message ever appended and are
 * never renumbered: retention deletes whole old segments from the front.
 * Byte positions are the partition's bytes as one stream of lines, counted
 * from the first byte retained when the partition was opened; the partition
 * file of the mount shows the retained range [start_pos, end_pos).
 * Positions are not stored on disk: they only map open files onto segments.
 *
 * Durability: part_append returns once the bytes are in the kernel (they
 * survive kill -9). part_sync makes everything appended so far durable: every
 * segment that holds unsynced bytes, and the directory when segments were
 * created. A failed fsync, wherever it happens (part_sync, or sealing a
 * segment), is sticky: from then on every append and sync returns -EIO until
 * the partition is opened again, because after a failed fsync nobody knows
 * which bytes reached the disk.
 *
 * Thread safety: every function may be called from any thread. part->lock
 * guards the segment list and the tail; reads copy a segment reference under
 * the lock and pread() outside it, so readers never wait for a writer's I/O
 * except during the list update itself.
 *
 * Ownership: part_open returns a partition owned by the caller (its topic),
 * freed by part_close, which must not race with any other call.
 */
#ifndef MQ_PARTITION_H
#define MQ_PARTITION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct part;
struct seg_entry;

/* A consistent snapshot of a partition's counters (part_stat). */
struct part_stat {
	uint64_t first;		/* oldest retained offset */
	uint64_t next;		/* next offset to be assigned */
	uint64_t start_pos;	/* byte position of message `first` */
	uint64_t end_pos;	/* byte position after the last message */
	uint32_t segments;
	int64_t last_ts;	/* ms, timestamp of the newest message; 0 = none */
};

/* ---- open and close ---- */

/* Open (creating if needed) the partition stored in dir, and recover it:
 * see seg_open. -errno on failure. */
int part_open(const char *dir, struct part **out);
void part_close(struct part *p);

/* ---- append ---- */

/*
 * Append len bytes of complete lines (each ending '\n', none empty) as
 * consecutive messages, with timestamp ts_ms. If the active segment holds
 * data and would grow past segment_bytes, it is sealed first (and synced,
 * when sync_seal is set) and a new one started. Returns 0; -EIO if the
 * partition has failed; -errno of the write (nothing appended).
 */
int part_append(struct part *p, const char *buf, size_t len, int64_t ts_ms,
		uint64_t segment_bytes, int sync_seal);

/*
 * The partition's topic is being deleted: once this returns, appends and
 * retention fail with -ENOENT and touch no file, so that nothing done
 * through this object can reach a new topic created under the same name.
 * Reads keep working from the open files.
 */
void part_kill(struct part *p);

/* Make every message appended before the call durable. 0 or sticky -EIO. */
int part_sync(struct part *p);
/* 0, or the sticky error. */
int part_error(struct part *p);
/* Set the "queued for group commit" flag; returns its previous value. Owned
 * by the commit module (commit.h). */
int part_set_queued(struct part *p, int queued);

/* ---- read ---- */

void part_stat(struct part *p, struct part_stat *st);
/* Byte position of message off. Offsets before the first retained message
 * map to start_pos, offsets at or past next to end_pos. */
int part_pos(struct part *p, uint64_t off, uint64_t *pos);
/* Copy up to len bytes from byte position pos (clamped to start_pos) into
 * buf. Returns the bytes copied, 0 at the end, or -errno. */
ssize_t part_read(struct part *p, uint64_t pos, void *buf, size_t len);

/* A message read by offset (part_read_msgs). */
struct part_msg {
	uint64_t off;
	int64_t ts_ms;
	const char *line;	/* len bytes in the caller's buffer, then '\n' */
	uint32_t len;
};

/* Most messages one part_read_msgs call returns. */
#define PART_MSGS_MAX 256

/*
 * Read the messages off, off + 1, ... of one segment: at most max (at most
 * PART_MSGS_MAX), as many as fit whole, each with its '\n', in cap bytes of
 * buf; one pread for the index entries and one for the lines. Returns the
 * count; 0 if off is at or past the end; -ERANGE if message off is not
 * retained any more; -ENOBUFS if not even the first fits (out[0].len then
 * says how long its line is); or -errno.
 */
int part_read_msgs(struct part *p, uint64_t off, uint32_t max, char *buf,
		   size_t cap, struct part_msg *out);

/*
 * Like part_read_msgs, for replication: the index entries themselves
 * (e has room for max), the lines packed in buf, and the first offset of
 * the segment they are in (*seg_base, when not NULL).
 */
int part_read_ents(struct part *p, uint64_t off, uint32_t max, char *buf,
		   size_t cap, struct seg_entry *e, uint64_t *seg_base);

/* ---- maintenance ---- */

/*
 * Delete whole segments from the front: those whose newest message is older
 * than retention_ms (0 = no time limit), those that the partition can lose
 * while keeping at least retention_bytes (0 = no size limit), and those
 * whose messages all lie below consumed (0 = none: the offset below which
 * every consumer group is done, used under max_bytes backpressure). The
 * active segment goes too, sealed first, once all of it has expired or been
 * consumed. Returns the number of bytes deleted, or -errno.
 */
int64_t part_retain(struct part *p, int64_t now_ms, uint64_t retention_ms,
		    uint64_t retention_bytes, uint64_t consumed);

/* ---- epochs and replicas (core/replica.h) ----
 *
 * Each partition keeps its epoch history in DIR/epochs: lines "EPOCH
 * START", one per leader epoch under which it got messages, START being
 * the first offset written under it (Kafka's leader-epoch cache). Messages
 * before the first entry belong to epoch 0. A follower records the epochs
 * its leader sends, so that both histories agree on what they share, and
 * where they disagree is where a returning node's log diverged.
 */
struct part_epoch {
	uint64_t epoch, start;
};

/* Where the epoch of local appends is read (the node's epoch while it
 * leads, 0 otherwise; NULL = 0): recorded in the history at the first
 * append under it. The pointer is borrowed and must outlive p. */
void part_set_epoch(struct part *p, const _Atomic uint64_t *src);
/* Copy up to cap history entries (out may be NULL when cap is 0);
 * returns how many there are, which may be more than cap. */
size_t part_epochs(struct part *p, struct part_epoch *out, size_t cap);
/* The epoch of message off, and the offset where the next epoch starts
 * (UINT64_MAX if none). */
void part_epoch_at(struct part *p, uint64_t off, uint64_t *epoch, uint64_t *until);

/*
 * A replica's append: n messages from offset off, written under epoch by
 * the leader, in its segment starting at seg_base, lines packed in buf
 * (len bytes), with the leader's entries e (pos is rewritten). Messages
 * below the partition's next offset are skipped (held already). Rolls to
 * a new segment where the leader's began. With writeback (a durable
 * topic), the disk write starts at once (an fsync follows soon:
 * core/replica.h) and a sealed segment is synced first. Returns the
 * number appended, -ERANGE if off is past the end (a gap), or -errno.
 */
int part_append_ents(struct part *p, uint64_t seg_base, uint64_t off,
		     uint64_t epoch, const char *buf, size_t len,
		     struct seg_entry *e, size_t n, int writeback);
/* The leader's first retained offset is first: delete the whole segments
 * below it; a partition holding nothing at or past first starts over,
 * empty, at first. Returns the bytes deleted or -errno. */
int64_t part_trim(struct part *p, uint64_t first);
/* Drop the messages at and after off (a tail the leader never had), and
 * the epochs that begin there; durable when it returns. Returns the bytes
 * deleted or -errno. */
int64_t part_truncate(struct part *p, uint64_t off);

#endif
