/*
 * lease.h - queue-style consumption of a consumer group: leases, acks,
 * redelivery with backoff, and the hand-off to dead letters (SPEC section 5).
 *
 * Per partition the group has a committed offset, the ack floor: every
 * message below it is finished (acked, or dead-lettered). Above it lies the
 * window of messages handed out at least once, up to the high-water mark;
 * each of them is in flight (leased to a consumer until a deadline),
 * waiting for redelivery, or finished. The committed offset advances over
 * the finished messages at the window's front; that is the only way acks
 * move it.
 *
 * Rules, in the order a message meets them:
 *   - Ownership: a partition's leases all belong to one consumer at a time
 *     (one open file of next or batch), from the first lease until the
 *     last of them is acked, nacked or expired. Others skip the partition
 *     meanwhile, so per-partition order holds across competing consumers.
 *   - Order: messages are handed out in offset order. A message waiting
 *     for redelivery holds back every later message of its partition until
 *     its backoff has passed; due redeliveries go before new messages.
 *   - Lease: a handed-out message is leased for ack_wait_ms. Acking it
 *     (whoever holds it, or nobody) finishes it. A nack of a leased message,
 *     or the lease running out, is a failed delivery: it is handed out
 *     again after retry_backoff_ms * 2^(failures - 1), capped at 60 s (or at
 *     retry_backoff_ms, if that is larger), until it has failed
 *     max_deliveries times (0 = never); then it is dead-lettered (dlq.h).
 *   - Redrive: a dead letter handed back (lease_redrive) is pending again
 *     with its count reset, even when the committed offset has moved past
 *     it; it goes out before the later messages of its partition. Its file
 *     stays, hidden, and the message is handed out from it until it is
 *     finished again, so retention cannot lose it meanwhile. A commit
 *     through offsets/P that replays it forgets the redrive instead.
 *
 * Durability: a journal of fixed-size records (the format is specified in
 * lease.c) records every hand-out, ack and redrive before the call returns,
 * so that all of them survive kill -9. It is fdatasync'ed at once under
 * sync=always and within sync_ms (lease_tick) under sync=batch; a power
 * loss can then forget the last acks, and those messages are delivered
 * again (at-least-once). After a restart every message that was leased
 * and not finished is available again at once, keeping its delivery count;
 * one whose count already reached max_deliveries is dead-lettered with the
 * reason "expired" (its last lease was lost). The offsets files (group.h)
 * follow the journal when it is compacted and at a clean close.
 *
 * Thread safety: every function may be called from any thread; lease->lock
 * guards everything of one group's leases and its dead letters. Lock order:
 * lease->lock, then part->lock, cg->lock and topic->lock (briefly, for
 * settings). No callback is made with lease->lock held.
 *
 * Ownership: the group (group.h) owns its lease state: lease_open is called
 * by the topic for each group and the result handed to cg_set_lease; the
 * group frees it. The topic passed to lease_open must outlive it (it does:
 * a group is only used under a reference to its topic).
 */
#ifndef MQ_LEASE_H
#define MQ_LEASE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct lease;
struct topic;
struct cg;
struct dlq_entry;
struct cfg_topic;

/* Most messages a window may span (committed offset to the last message
 * handed out or acked ahead), per partition: an ack further ahead than
 * that is refused, and hand-outs stop until the front is finished. */
#define LEASE_WINDOW_MAX (1u << 20)
/* Longest nack reason kept (the rest of the line is cut). */
#define LEASE_REASON_MAX 1024
/* The ceiling of the doubling backoff (a longer first delay is kept). */
#define LEASE_BACKOFF_CAP_MS 60000

/*
 * Load the group's journal and dead letters from dir (the group's
 * directory), on top of g's committed offsets; cfg: the topic's settings
 * (the caller may hold topic->lock). Messages that were in
 * flight become available, or dead (see above). -errno on failure.
 */
int lease_open(struct topic *t, struct cg *g, const char *dir,
	       const struct cfg_topic *cfg, struct lease **out);
/* Write the committed offsets and a compacted journal (at a clean close),
 * then free. NULL is fine. */
void lease_close(struct lease *ls);
/* The group is being deleted: later calls fail with -ENOENT and touch no
 * file. */
void lease_kill(struct lease *ls);

/* A new consumer identity: one per open file of next or batch. Never 0. */
uint64_t lease_consumer(void);

/*
 * Hand out messages to consumer c, each formatted as "P:OFF<TAB>LINE\n"
 * into *buf (capacity *cap; grown with realloc when one message does not
 * fit, so the caller owns a buffer it can keep reusing). Takes at most max
 * messages, and no more bytes than want, except that the first one is
 * always taken. Returns the bytes written; 0 if nothing is available now;
 * -errno.
 */
ssize_t lease_take(struct lease *ls, uint64_t c, size_t want, uint32_t max,
		   char **buf, size_t *cap);
/* Nonzero if lease_take for c would hand out something now. */
int lease_ready(struct lease *ls, uint64_t c);

/*
 * groups/G/ack: lines "P:OFF" (blanks around them and empty lines
 * allowed). groups/G/nack: lines "P:OFF[ REASON]". All lines are checked
 * before any is applied: a malformed line, a partition that does not
 * exist or an offset not yet written gives -EINVAL and changes nothing.
 */
int lease_ack(struct lease *ls, const char *buf, size_t len);
int lease_nack(struct lease *ls, const char *buf, size_t len);

/*
 * A commit through groups/G/offsets/P ("N" or, with relative, "+K"):
 * the partition's leases start over at the new committed offset (messages
 * in flight there are handed out again from it). -EINVAL past the end.
 */
int lease_commit(struct lease *ls, uint32_t part, uint64_t off, int relative,
		 uint64_t end);
/* The same for a replica taking its leader's committed offset (also when
 * it equals the current one: the window starts over, forgetting messages
 * acked ahead). Made durable like acks, within sync_ms, not before it
 * returns: the leader's frames carry many of them. */
int lease_commit_replica(struct lease *ls, uint32_t part, uint64_t off, uint64_t end);

/*
 * Expire leases and make due redeliveries available (only with expire:
 * a follower's leases wait until it leads), sync the journal when
 * sync=batch asks. Returns nonzero if messages became available (the
 * caller wakes waiting consumers); *next_ms is the monotonic time of the
 * next thing to do (INT64_MAX for nothing).
 */
int lease_tick(struct lease *ls, int64_t now_ms, uint64_t sync_ms, int expire,
	       int64_t *next_ms);

/* Counts for groups/G/stats. */
struct lease_stat {
	uint64_t in_flight, retry, dead;
};
void lease_stat(struct lease *ls, uint32_t part, struct lease_stat *st);

/* ---- dead letters (T/dlq/G) ---- */

/*
 * The dead letter with id after the given one (0: the first), in failure
 * order, copied into *e (its reason points into e->reason_buf). 0, or
 * -ENOENT at the end.
 */
int lease_dead_next(struct lease *ls, uint64_t after, struct dlq_entry *e);
/* The dead letter with this id, or called "P:OFF" (name != NULL). */
int lease_dead_find(struct lease *ls, uint64_t id, const char *name,
		    struct dlq_entry *e);
/* Its line and '\n', malloc'ed into *text (owned by the caller). */
int lease_dead_read(struct lease *ls, uint64_t id, char **text, size_t *len);
/* rm T/dlq/G/P:OFF: discard it. -ENOENT if it is not there. */
int lease_dead_remove(struct lease *ls, const char *name);
/* T/dlq/G/redrive: lines "P:OFF" or "all". -EINVAL if a line is malformed
 * or names no dead letter of the group; nothing changes then. */
int lease_redrive(struct lease *ls, const char *buf, size_t len);

/* ---- dead letters of a replica (core/replica.h) ----
 * Hidden letters are included: a replica shows them as plain dead letters,
 * so a failover during a redrive loses none (the redrive is repeated). */

struct lease_dead_key {
	uint32_t part;
	uint64_t off, seq;
};
/* Changes whenever a letter is added, removed, hidden or shown. */
uint64_t lease_dead_gen(struct lease *ls);
/* Every letter's key, in failure order: *out malloc'ed, owned by the
 * caller. */
int lease_dead_keys(struct lease *ls, struct lease_dead_key **out, size_t *n);
/* One letter (hidden or not) and its line and '\n' (malloc'ed *text). */
int lease_dead_get(struct lease *ls, uint32_t part, uint64_t off,
		   struct dlq_entry *e, char **text, size_t *len);
/* Store a letter copied from the leader (e->seq, fields and reason as the
 * leader has them; line is e->len bytes): a no-op if the letter of that
 * message with that seq is here already, else it replaces any other. */
int lease_dead_import(struct lease *ls, const struct dlq_entry *e, const char *line);
/* Remove every letter whose (part, off) is not among keys (sorted here). */
int lease_dead_keep(struct lease *ls, struct lease_dead_key *keys, size_t n);

#endif
