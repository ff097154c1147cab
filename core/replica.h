/*
 * replica.h - the receiving end of replication: the frames a leader writes
 * into MOUNT/.mq/repl of a follower, how the follower applies them, and
 * the state it reports back when that file is read.
 *
 * A leader's replicator (replication/) reaches a peer only through the
 * peer's mount, locally or over a network filesystem (sshfs, NFS), so the
 * protocol is a byte stream written to one file and a text read from it:
 *
 *   write   a sequence of frames (below), in order, at increasing file
 *           positions (a write at any other position is refused: the stream
 *           has a hole). A frame may be cut across writes; each complete
 *           frame is applied before the write returns.
 *   fsync   everything applied through this open file is durable under
 *           each topic's sync policy (sync=none: in the kernel only, as on
 *           the leader); the first fsync of an open file syncs every
 *           partition, so that what an earlier stream applied is covered
 *           too. The leader counts a message as held by the peer once the
 *           fsync after it returned.
 *   read    the follower's state (replica_state_text): node id, epoch and
 *           role, then per topic and partition what it holds.
 *
 * Every frame carries the sender's epoch; a frame of an older epoch than
 * the node's, or of its own epoch while it leads, is refused with -ESTALE
 * (a newer epoch is adopted first, and a leader steps down: mq.h). Every
 * frame is offset-stamped and idempotent: messages the follower holds are
 * skipped, a gap (-ERANGE) and a malformed or damaged frame (-EBADMSG) are
 * refused, and after any refusal the open file refuses every later write
 * with the same error, so that nothing after a hole is applied. The leader
 * reopens, reads the state, and resumes from what the follower holds.
 *
 * Frame: a 72-byte header, the topic name (tlen bytes), the group name
 * (glen bytes), then body bytes. All integers little-endian.
 *
 *   TOPICS  body: the leader's topic names, each ending '\n'. Topics not
 *           listed are deleted.
 *   TOPIC   uid; body: the topic's config text (T/config). Created with
 *           that uid if missing; a topic of that name with another uid is
 *           deleted and created again; the config is applied.
 *   MSGS    uid, part, off = first offset, aux = first offset of the
 *           leader's segment holding them, mepoch = the epoch they were
 *           written under, count; body: the lines, each with its '\n',
 *           then count entries {u32 len, u32 flags, i64 ts, u64 hash}
 *           (struct repl_ent; lines first, so that a sender reads the log
 *           straight into its frame). Appended with those timestamps and checksums, rolling
 *           segments where the leader's roll (part_append_ents).
 *   TRIM    uid, part, off: the leader's first retained offset (part_trim).
 *   TRUNC   uid, part, off: drop messages from off on (part_truncate).
 *   GROUPS  uid; body: the topic's group names, each ending '\n'. Groups
 *           not listed are deleted.
 *   GROUP   uid, group, count; body: count u64 committed offsets (created if
 *           missing; an offset past the partition's end is clamped).
 *   DEADS   uid, group, count; body: count {u32 part, u32 zero, u64 off}:
 *           dead letters not listed are deleted (the group is created if
 *           missing, as for DEAD: letters go before offsets).
 *   DEAD    uid, group, part, off; body: struct repl_dead, the reason,
 *           then the line (lease_dead_import).
 *
 * Thread safety: one replica_rx per open file, used by one request at a
 * time (the FUSE layer serializes writes of one open file); different rx
 * may apply at once (core's own locks order them).
 *
 * Ownership: replica_rx_open returns an rx owned by the caller, freed by
 * replica_rx_close; it holds topic references for the partitions it has to
 * sync.
 */
#ifndef MQ_REPLICA_H
#define MQ_REPLICA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "partition.h"

struct mq;
struct replica_rx;

#define REPL_MAGIC 0x3152514dU	/* "MQR1" */
#define REPL_HDR 72
/* The largest frame accepted: one message of the largest max_message
 * (64 MiB) and its framing. Senders keep frames far smaller. */
#define REPL_FRAME_MAX ((64u << 20) + (64u << 10))

enum repl_type {
	REPL_TOPICS = 1,
	REPL_TOPIC,
	REPL_MSGS,
	REPL_TRIM,
	REPL_TRUNC,
	REPL_GROUPS,
	REPL_GROUP,
	REPL_DEADS,
	REPL_DEAD,
};

struct repl_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t tlen;		/* topic name bytes after the header */
	uint16_t glen;		/* group name bytes after the topic name */
	uint16_t zero;
	uint32_t body;		/* bytes after the names */
	uint64_t epoch;		/* the sender's epoch */
	uint64_t uid;		/* the topic's incarnation (topic_uid) */
	uint64_t off;
	uint64_t aux;
	uint64_t mepoch;
	uint32_t part;
	uint32_t count;
	uint64_t check;		/* XXH3_64bits of the frame, this field 0 */
};
_Static_assert(sizeof(struct repl_hdr) == REPL_HDR, "frame header is 72 bytes");

struct repl_ent {
	uint32_t len;		/* line length without '\n' */
	uint32_t flags;		/* 0 */
	int64_t ts_ms;
	uint64_t hash;		/* XXH3_64bits of the line */
};
_Static_assert(sizeof(struct repl_ent) == 24, "message entry is 24 bytes");

struct repl_dead {
	uint64_t seq;
	int64_t ts_ms;
	int64_t failed_at_ms;
	uint32_t deliveries;
	uint32_t reason_len;
	uint32_t line_len;
	uint32_t zero;
};
_Static_assert(sizeof(struct repl_dead) == 40, "dead-letter record is 40 bytes");

/* Fill in check of the complete frame f (len bytes, header first). */
void replica_seal(void *f, size_t len);

/* ---- the receiving end ---- */

int replica_rx_open(struct mq *m, struct replica_rx **out);
void replica_rx_close(struct replica_rx *rx);
/*
 * Bytes written at file position pos: frames are reassembled and applied.
 * Returns len, or -errno (then sticky, see above): -ESPIPE if pos is not
 * where the last write ended, -EBADMSG, -ESTALE, -ERANGE, -ENOENT (a topic
 * or group the frame names is not here: the leader sends it first), or
 * the error of the change itself.
 */
ssize_t replica_rx_write(struct replica_rx *rx, uint64_t pos, const char *buf,
			 size_t len);
/* Make what was applied through rx durable (see above). 0 or -errno. */
int replica_rx_sync(struct replica_rx *rx);

/*
 * The state a leader reads, as text (*out malloc'ed, owned by the caller):
 *
 *     mqfs-repl 1
 *     node ID epoch E role leader|follower
 *     refused TEXT-OR-DASH
 *     topic NAME UID NPARTS
 *     part P FIRST NEXT HISTORY
 *
 * ID and UID in hex; HISTORY is the epoch history "EPOCH:START,..." or
 * "-"; each topic line is followed by its part lines.
 */
int replica_state_text(struct mq *m, char **out, size_t *len);

/*
 * Where a follower's log stops agreeing with its leader's (Kafka's
 * leader-epoch rule, with the refinement of KIP-279): the follower holds
 * next_f messages with history f[0..nf), the leader next_l with
 * l[0..nl). Returns the offset the follower must truncate to (next_f if
 * nothing diverges).
 */
uint64_t replica_diverge(const struct part_epoch *l, size_t nl, uint64_t next_l,
			 const struct part_epoch *f, size_t nf, uint64_t next_f);

#endif
