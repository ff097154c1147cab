/*
 * config.h - mount options and per-topic settings: parse, validate, print.
 *
 * Topic settings (struct cfg_topic) start as the mount's defaults and are
 * then changed per topic by writing key=value lines to T/config; node
 * settings (struct cfg_node) only come from the mount options. Values are
 * validated here and nowhere else, so a value that passes is safe to use.
 * The textual form of a topic's settings (cfg_topic_format) is both what
 * T/config shows and what DATA_DIR/topics/T/config stores.
 *
 * Thread safety: pure functions over caller-owned structs.
 */
#ifndef MQ_CONFIG_H
#define MQ_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum cfg_sync { CFG_SYNC_ALWAYS, CFG_SYNC_BATCH, CFG_SYNC_NONE };
enum cfg_overflow { CFG_OVERFLOW_BLOCK, CFG_OVERFLOW_REJECT };
enum cfg_acks { CFG_ACKS_LEADER, CFG_ACKS_ALL };
enum cfg_role { CFG_ROLE_LEADER, CFG_ROLE_FOLLOWER };

/* A topic's settings. For the *_ms and *_bytes limits and max_deliveries,
 * 0 means unlimited. */
struct cfg_topic {
	uint32_t partitions;		/* 1..MQ_MAX_PARTITIONS; only grows */
	enum cfg_sync sync;
	uint64_t max_message;		/* bytes of a line without '\n' */
	uint64_t retention_ms;
	uint64_t retention_bytes;	/* per partition */
	uint64_t segment_bytes;
	uint64_t max_bytes;		/* per topic, backpressure */
	enum cfg_overflow overflow;
	uint64_t max_deliveries;
	uint64_t ack_wait_ms;
	uint64_t retry_backoff_ms;
};

/* Settings of this node (mount options only). */
struct cfg_node {
	struct cfg_topic topic;		/* defaults for new topics */
	uint64_t sync_ms;
	char peers[4096];		/* ':'-separated paths, "" = none */
	enum cfg_acks acks;
	enum cfg_role role;
	uint64_t min_insync;
	uint64_t isr_lag_ms;
};

/* The defaults of SPEC section 1. */
void cfg_node_defaults(struct cfg_node *n);

/*
 * Apply one key=value (a mount option) to n. Returns 0, or -EINVAL with a
 * reason in why (a static string) for an unknown key or a bad value.
 */
int cfg_node_set(struct cfg_node *n, const char *key, const char *val,
		 const char **why);

/* Whether key names an option of ours (so the rest go to libfuse). */
int cfg_node_known(const char *key);

/*
 * Apply key=value lines (buf, len; '\n'-separated, the last line may lack
 * it, blank lines ignored) to a copy of *t, all or nothing: on any unknown
 * key, node option, bad value or a partitions value below the current one,
 * *t is unchanged and -EINVAL is returned with a reason in why.
 */
int cfg_topic_apply(struct cfg_topic *t, const char *buf, size_t len,
		    const char **why);

/* Print t as key=value lines into buf (cap bytes). Returns the length, or
 * -ENOSPC if it does not fit (512 bytes always do). */
int cfg_topic_format(const struct cfg_topic *t, char *buf, size_t cap);

#endif
