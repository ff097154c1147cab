/*
 * producer.h - the write side of a topic: turns the bytes of write() calls
 * into messages, routes them to partitions, and applies the sync policy.
 *
 * One producer per open file (T/publish, or a partition file T/P). It keeps
 * the partial last line between writes, bounded by max_message. The rules
 * (SPEC section 4):
 *   - a message is the bytes up to '\n'; empty lines are skipped;
 *   - a line longer than max_message is refused: the complete lines before
 *     it in the same write are kept and the write returns their length (a
 *     short write); the retry, which starts at the long line, gets
 *     -EMSGSIZE. Nothing of the long line is ever stored, and the producer
 *     refuses every later write with -EMSGSIZE: it cannot tell a retry of
 *     the same bytes from the rest of the line, so the writer reopens the
 *     file to go on (the kernel also splits one large write() into several
 *     requests, so "the retry" may be the kernel's own next request);
 *   - on T/publish, a line KEY<TAB>REST with a non-empty KEY goes to
 *     partition XXH3_64bits(KEY) % N; the keyless lines of one write() all
 *     go to one partition, and successive writes go round-robin over the
 *     partitions, from a start that differs per producer (sticky per
 *     batch, as Kafka's default partitioner: it keeps a big write to one
 *     append and one fsync);
 *   - each write() is one append (a log write and an index write) per
 *     partition it touches. A write whose lines go to several partitions
 *     and fails part way has stored the lines of the partitions before the
 *     failure: the error is returned, and a retry may repeat those lines
 *     (at-least-once, like a producer retry in Kafka).
 *
 * Completion: prod_write and prod_flush always finish by calling rq->done
 * exactly once, with the byte count or -errno: at once for sync=none and
 * sync=always (after the fsync), or later from the commit thread for
 * sync=batch, so that no caller thread waits for the disk.
 *
 * Backpressure: when the topic's retained bytes would pass max_bytes
 * (and the topic is not empty), a write fails with -ENOSPC under
 * overflow=reject; under overflow=block it is held back: its bytes are
 * copied (so the caller's buffer may go) and it is retried, in order, each
 * time the topic may have room (topic_wake), on the waking thread. Later
 * writes of the same producer queue behind it. prod_cancel takes a held
 * write back.
 *
 * Thread safety: calls on one producer are serialized by its own lock (a
 * file may be written by two threads at once); different producers run in
 * parallel. Per-thread scratch buffers hold the routed batch: bounded by
 * the largest write plus max_message, and reused, so the hot path does not
 * allocate.
 */
#ifndef MQ_PRODUCER_H
#define MQ_PRODUCER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "commit.h"
#include "core.h"
#include "topic.h"

struct prod;
struct topic;

struct prod_req {
	/* Set by the caller: called once with the bytes accepted or -errno. */
	void (*done)(struct prod_req *rq, ssize_t result);
	/* Set by the caller, or NULL: nonzero once the writer has given up
	 * (an interrupted request); asked before a write is held back. */
	int (*interrupted)(struct prod_req *rq);
	/* Internal. */
	struct commit_wait w;
	struct topic_wait tw;
	struct prod *pr;
	struct topic *t;
	char *held;		/* owned copy of a held-back write, or NULL */
	size_t held_len;
	int counted;		/* counts in pr->nheld */
	ssize_t result;
	uint64_t touched[MQ_MAX_PARTITIONS / 64];
};

/* A producer for topic t (a reference is taken), writing to partition part,
 * or routing by key when part < 0. Commits go through c (borrowed). */
int prod_open(struct topic *t, int part, struct commit *c, struct prod **out);
/* Drops a pending partial line (prod_flush publishes it first). */
void prod_close(struct prod *pr);

void prod_write(struct prod *pr, const char *buf, size_t len, struct prod_req *rq);
/* Publish a partial last line (the last close of the file); done gets 0 or
 * -errno. */
void prod_flush(struct prod *pr, struct prod_req *rq);
/* Bytes of the partial last line held (0: none). */
size_t prod_pending(struct prod *pr);
/* 0, or -EIO if a partition this producer wrote to has failed. */
int prod_error(struct prod *pr);
/*
 * Take back a write that is held back by backpressure: returns 1 if it was
 * held (it is dropped, and done will NOT be called: the caller answers),
 * 0 if it is not held (it completes through done as usual).
 */
int prod_cancel(struct prod_req *rq);

#endif
