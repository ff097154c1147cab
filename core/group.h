/*
 * group.h - a consumer group's committed offsets, one per partition.
 *
 * The committed offset of a partition is the offset of the next message the
 * group will process. Each is stored as the text "N\n" in its own small file,
 * DATA_DIR/topics/T/groups/G/P, replaced atomically with io_publish, so that
 * a commit whose call returned survives kill -9 (and power loss when
 * durable). A missing file means 0: partitions added after the group was
 * created start at their beginning.
 *
 * The group also owns its lease state (lease.h), whose journal is the truth
 * for offsets that acks moved: cg_advance moves the offset in memory only,
 * and the lease writes the files when it compacts its journal.
 *
 * Thread safety: cg_commit and cg_committed may run concurrently; g->lock
 * orders commits of one group so that the file and the memory agree.
 *
 * Ownership: cg_create/cg_load return a group with one reference, owned by
 * the caller (the topic's group list); cg_unref drops one and the last one
 * frees it. Files are removed by cg_destroy.
 */
#ifndef MQ_GROUP_H
#define MQ_GROUP_H

#include <stdint.h>

struct cg;
struct lease;

/* Create the group's directory and commit start[p] for p < nparts. */
int cg_create(const char *dir, const char *name, uint32_t id,
	      const uint64_t *start, uint32_t nparts, int durable,
	      struct cg **out);
/* Load an existing group's offsets. An unparsable file reads as offset 0
 * (the earliest message), with a warning. */
int cg_load(const char *dir, const char *name, uint32_t id, struct cg **out);
void cg_ref(struct cg *g);
void cg_unref(struct cg *g);
/* Remove the group's files. The object stays valid for its holders, but
 * later commits through it fail with -ENOENT. */
int cg_destroy(struct cg *g);

const char *cg_name(const struct cg *g);
const char *cg_dir(const struct cg *g);
/* The group's leases (set once by the topic, before the group is shared;
 * freed with the group). */
void cg_set_lease(struct cg *g, struct lease *ls);
struct lease *cg_lease(struct cg *g);
/* The committed offset moved by acks: memory only (lease.h). */
void cg_advance(struct cg *g, uint32_t part, uint64_t off);
uint32_t cg_id(const struct cg *g);

uint64_t cg_committed(struct cg *g, uint32_t part);
/*
 * Commit off (or, with relative, the committed offset plus off) for part.
 * -EINVAL if the result would pass end (the partition's next offset) or
 * overflow; nothing changes then. -ENOENT once the group was destroyed.
 */
int cg_commit(struct cg *g, uint32_t part, uint64_t off, int relative,
	      uint64_t end, int durable);

#endif
