/*
 * repl.h - the replicator: keeps the peer mounts of peers= in sync with
 * this node while it leads (SPEC section 6), and holds back acks=all
 * writes until the in-sync peers have their messages.
 *
 * It is a client of core/'s public API on this side, and of the peer's
 * mount on the other: one thread per peer opens PEER/.mq/repl, reads the
 * peer's state from it, and writes frames into it (core/replica.h has the
 * protocol). A peer is reached through any filesystem path: another local
 * mount, or one through sshfs or NFS.
 *
 * Per peer, a cycle sends everything that changed since the last one:
 * topics, configs, messages (from the offset the peer holds), retention
 * (TRIM), groups and their committed offsets, dead letters; then fsyncs
 * the stream, after which the messages sent count as held by the peer
 * ("acked"). A cycle sends at most REPL_CYCLE_MAX bytes, so that a peer
 * catching up reports progress and fsyncs as it goes.
 *
 * In-sync set: a peer is in sync while it is reachable and was last fully
 * caught up (a cycle that sent everything there was when it started) no
 * more than isr_lag_ms ago. It leaves at once when it becomes unreachable
 * or refuses the stream; leaving and joining are logged on stderr.
 *
 * acks=all: repl_wait holds a producer's completion until every in-sync
 * peer has acked the offsets the write reached in each partition it
 * touched; with fewer than min_insync copies in sync (the leader is one)
 * it fails with -EIO (repl_admit refuses before the append).
 *
 * Threads and locks: r->lock guards each peer's shared state (in_sync,
 * acked offsets, status text) and the waiter list; it is taken alone, and
 * waiters' done callbacks run with it released. Everything else of a peer
 * belongs to its thread.
 *
 * Ownership: repl_open returns a replicator owned by the caller; repl_stop
 * stops its threads (pending and later waiters get -EIO: the engine's last
 * group commit still completes writes after it), repl_free frees it after
 * the engine is closed.
 */
#ifndef MQ_REPL_H
#define MQ_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

struct mq;
struct repl;
struct topic;

/* Most bytes of frames one cycle sends to a peer before it fsyncs. */
#define REPL_CYCLE_MAX (64u << 20)

/* A producer's completion held for acks=all. The caller owns the struct
 * and keeps it alive until done was called. */
struct repl_wait {
	/* Called once, with 0 or -EIO, from a replicator thread (or
	 * repl_stop), no lock held. */
	void (*done)(struct repl_wait *w, int rc);
	/* Internal. */
	struct repl_wait *next;		/* r->lock */
	struct topic *t;		/* a reference, while queued */
	uint32_t n;			/* targets */
	struct repl_target {
		uint32_t part;
		uint64_t end;		/* every offset below it must be acked */
	} inl[8], *tgt;			/* tgt = inl, or malloc'ed when n > 8 */
};

/* Set the replicator up for engine m (before mq_start: it registers the
 * engine's changed hook). */
int repl_open(struct mq *m, struct repl **out);
/* Start the peer threads (after the daemon forked). */
int repl_start(struct repl *r);
void repl_stop(struct repl *r);
void repl_free(struct repl *r);

/* May a producer write now? 0; -EROFS on a follower; -EIO when
 * acks=all and fewer than min_insync copies are in sync. */
int repl_admit(struct repl *r);

/*
 * A write to t touched the partitions set in touched (a bitmap of
 * MQ_MAX_PARTITIONS bits) and is local now. Under acks=leader, or when
 * every in-sync peer already holds it: returns 1 and done is not called.
 * Otherwise 0: done is called later, with 0 or -EIO. -ENOMEM.
 */
int repl_wait(struct repl *r, struct repl_wait *w, struct topic *t,
	      const uint64_t *touched);

/* MOUNT/.mq/replicas: a header line, then one line per peer (*out
 * malloc'ed, owned by the caller). */
int repl_status_text(struct repl *r, char **out, size_t *len);

#endif
