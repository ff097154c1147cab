/*
 * segment.h - one segment of a partition: a log file of message lines and
 * the dense index that finds them by offset.
 *
 * A segment holds the messages with offsets [base_off, base_off + nmsgs).
 * The log file is exactly the bytes a reader of the partition file sees, so
 * a read is a byte-range copy; the index gives, for every message, its byte
 * position, length, timestamp and XXH3_64bits checksum, in fixed 32-byte
 * entries, so that offset -> position is one array access. The format is
 * specified at the top of segment.c.
 *
 * Thread safety: a segment has no lock. Appends, seals and truncation are made
 * by the owning partition under part->lock, which also guards nmsgs and bytes
 * of the active segment. A sealed segment never changes and may be read by
 * any thread that holds a reference, without locks.
 *
 * Ownership: seg_create/seg_open return a segment with one reference, owned by
 * the caller (the partition's segment list). seg_unref drops one; the last
 * one closes the files. seg_remove unlinks the files at once (open
 * descriptors keep the data readable until the last reference goes).
 */
#ifndef MQ_SEGMENT_H
#define MQ_SEGMENT_H

#include <stdint.h>
#include <sys/types.h>

#define SEG_FORMAT_VERSION 1

struct seg;

/* One index entry, as stored (little-endian, 32 bytes). */
struct seg_entry {
	uint64_t pos;	/* byte position of the line in the log file */
	uint32_t len;	/* line length, without the '\n' (never 0) */
	uint32_t flags;	/* 0; reserved for later formats */
	int64_t ts_ms;	/* append time, ms since the epoch */
	uint64_t hash;	/* XXH3_64bits(line, len), seed 0 */
};
_Static_assert(sizeof(struct seg_entry) == 32, "index entry is 32 bytes on disk");

/* ---- open and close ---- */

/*
 * Create an empty segment in dir with first offset base_off. Fails with
 * -EEXIST if it exists.
 */
int seg_create(const char *dir, uint64_t base_off, struct seg **out);

/*
 * Open the segment of dir with first offset base_off and recover it: the log
 * is cut back to the last whole message that has a valid index entry (a torn
 * line, log bytes without an entry, an entry whose checksum or position does
 * not match the log are all cut). A missing or damaged index is rebuilt from
 * the log (timestamps then come from the log's mtime). With full == 0 only
 * the last entry is checked, and a mismatch there falls back to a full check:
 * used for sealed segments, which were synced when they were sealed.
 * Returns 0, or -errno (-ENOENT if the log is missing).
 */
int seg_open(const char *dir, uint64_t base_off, int full, struct seg **out);

void seg_ref(struct seg *s);
void seg_unref(struct seg *s);
/* Unlink both files now; the data stays readable through existing refs. */
int seg_remove(struct seg *s);

/* ---- append (active segment only; caller holds part->lock) ---- */

/*
 * Append the complete lines (each ending in '\n', none empty) of buf.
 * One write to the log, then the index entries (a write per 4096 entries),
 * data before index so that a crash leaves log bytes without entries, which
 * recovery cuts. On failure the log is cut back and nothing is visible.
 */
int seg_append(struct seg *s, const char *buf, size_t len, int64_t ts_ms);
/*
 * Append n messages whose lines (each with its '\n') are the len bytes of
 * buf, with the lengths, timestamps and checksums of ents (a replica
 * copying its leader's entries; pos is filled in here). -EINVAL if the
 * lengths do not add up to len; on failure nothing is visible.
 */
int seg_append_ents(struct seg *s, const char *buf, size_t len,
		    struct seg_entry *ents, size_t n);
/* Start the disk write of what was appended since byte pos and message
 * nmsg (of this segment), without waiting for it. */
void seg_writeback(struct seg *s, uint64_t pos, uint64_t nmsg);
/* Keep only the first n messages (a replica dropping a tail its new leader
 * never had); synced before it returns. */
int seg_truncate(struct seg *s, uint64_t n);
/* fdatasync of the log, then the index. */
int seg_sync(struct seg *s);

/* ---- read (any thread holding a reference) ---- */

uint64_t seg_base(const struct seg *s);
/* Messages and log bytes: stable for sealed segments; otherwise read them
 * under part->lock. */
uint64_t seg_count(const struct seg *s);
uint64_t seg_bytes(const struct seg *s);
/* Timestamp of the last message (0 if empty); creation time of the file. */
int64_t seg_last_ts(const struct seg *s);

/* Read log bytes [pos, pos+len): returns the bytes read or -errno. */
ssize_t seg_read(struct seg *s, uint64_t pos, void *buf, size_t len);
/* The index entry of the message base + i (i < count). */
int seg_entry(struct seg *s, uint64_t i, struct seg_entry *e);
/* The n entries of messages base + i ... (i + n <= count), in one read. */
int seg_entries(struct seg *s, uint64_t i, size_t n, struct seg_entry *e);

#endif
