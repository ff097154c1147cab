/*
 * commit.h - group commit for sync=batch: one thread makes the appends of
 * every writer durable together, and tells each writer when its bytes are.
 *
 * A writer appends (part_append), queues the partition (commit_dirty), then
 * registers a waiter (commit_wait). The commit thread takes the queue and
 * the waiters registered so far, syncs each queued partition once, and calls
 * every waiter's callback. A waiter registered while a commit is running
 * waits for the next one, because its bytes may have missed that fsync.
 * Commits start as soon as there is something to wait for: the disk's own
 * fsync time is the batching window, and no waiter waits longer than the
 * fsync in progress plus its own. sync_ms bounds how long queued partitions
 * that nobody waits for stay unsynced.
 *
 * Thread safety: all calls from any thread. Callbacks run on the commit
 * thread and must not call back into commit_*.
 *
 * Ownership: a commit_wait belongs to the caller, who keeps it alive until
 * its callback has run. Queued partitions must outlive the next commit.
 */
#ifndef MQ_COMMIT_H
#define MQ_COMMIT_H

#include <stdint.h>

struct commit;
struct part;

struct commit_wait {
	struct commit_wait *next;	/* commit->lock */
	/* Called once, on the commit thread, after the commit that covers
	 * everything queued before commit_wait. Sync errors are sticky in
	 * the partitions: the callback checks part_error() of its own. */
	void (*done)(struct commit_wait *w);
};

/* Start the commit thread. */
int commit_start(uint64_t sync_ms, struct commit **out);
/* Run a last commit, complete every waiter, stop the thread, free c. */
void commit_stop(struct commit *c);

void commit_dirty(struct commit *c, struct part *p);
void commit_wait(struct commit *c, struct commit_wait *w);

#endif
