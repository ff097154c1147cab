/*
 * dlq.h - the dead letters of one consumer group, one file each.
 *
 * DATA_DIR/topics/T/groups/G/dlq/P:OFF holds a header line, then the
 * original message line and its '\n':
 *
 *     mqfs-dead 1 seq=S deliveries=N ts=MS failed_at=MS reason=TEXT\n
 *     LINE\n
 *
 * seq orders the letters by failure (it only grows, per group); ts is the
 * message's own timestamp, failed_at the time of its last failure, both
 * ms since the epoch; TEXT is the last nack reason or "expired" and runs
 * to the end of the header line. A file is written whole with io_publish
 * (atomic), so a dead letter is there or not, never torn; files whose name
 * or header does not parse are left alone and reported.
 *
 * A redriven letter keeps its file, hidden (not listed, not counted), until
 * its message is finished again: the file is then the one copy of the line
 * that retention cannot delete (lease.c hands the message out from it).
 *
 * Thread safety: none of its own. Its owner (lease.c) calls it under
 * lease->lock.
 *
 * Ownership: dlq_open returns a store owned by the caller; dlq_free frees
 * it. Entries returned by dlq_at are borrowed until the next change.
 */
#ifndef MQ_DLQ_H
#define MQ_DLQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DLQ_REASON_MAX 1024

struct dlq;

struct dlq_entry {
	uint64_t id;		/* the inode's part: unique per topic and run */
	uint64_t seq;		/* failure order; stored */
	uint64_t off;
	int64_t ts_ms;		/* the message's timestamp */
	int64_t failed_at_ms;
	uint32_t part;
	uint32_t deliveries;
	uint32_t len;		/* the line, without '\n' */
	uint32_t hdr;		/* bytes of the header line in the file */
	int hidden;		/* redriven, not finished yet: not listed */
	char reason[DLQ_REASON_MAX + 1];	/* NUL-terminated; in the
						 * store, only as long as needed */
};

/* Load dir (created if missing), sorted by seq. */
int dlq_open(const char *dir, struct dlq **out);
void dlq_free(struct dlq *d);

size_t dlq_count(const struct dlq *d);
/* The i-th letter in failure order, borrowed. */
const struct dlq_entry *dlq_at(const struct dlq *d, size_t i);
/* Index of the letter of part:off, or of id (name NULL); -1 if none. */
ssize_t dlq_find(const struct dlq *d, uint32_t part, uint64_t off);
ssize_t dlq_find_id(const struct dlq *d, uint64_t id);
/* Index of the first letter whose id is above id (dlq_count if none). */
size_t dlq_after(const struct dlq *d, uint64_t id);
/* Give the i-th letter its id (after dlq_open; ids grow with i). */
void dlq_set_id(struct dlq *d, size_t i, uint64_t id);
/* The next seq to use. */
uint64_t dlq_next_seq(const struct dlq *d);

/* Store a new letter (e->seq, e->id set by the caller; reason
 * NUL-terminated) with its line. It replaces a letter of the same
 * partition and offset, hidden or not. */
int dlq_add(struct dlq *d, const struct dlq_entry *e, const char *line,
	    int durable);
/* Delete the i-th letter's file and entry. */
int dlq_remove(struct dlq *d, size_t i, int durable);
/* The i-th letter's line and '\n', malloc'ed. */
int dlq_read(const struct dlq *d, size_t i, char **text, size_t *len);
/* Count of letters of part that are not hidden. */
uint64_t dlq_count_part(const struct dlq *d, uint32_t part);
/* A number that changes whenever a letter is added, removed, hidden or
 * shown (replication compares it). */
uint64_t dlq_gen(const struct dlq *d);
/* Hide (redrive) or show the i-th letter. */
void dlq_set_hidden(struct dlq *d, size_t i, int hidden);

/* "P:OFF" -> part, off; -EINVAL if malformed or part >= MQ_MAX_PARTITIONS. */
int dlq_parse_name(const char *s, size_t len, uint32_t *part, uint64_t *off);

#endif
