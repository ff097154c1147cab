/*
 * group.c - committed offsets in memory and in one small file each.
 */
#define _GNU_SOURCE
#include "group.h"
#include "core.h"
#include "io.h"
#include "lease.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cg {
	atomic_int refs;
	pthread_mutex_t lock;			/* serializes commits */
	int dead;				/* deleted: no more commits; lock */
	uint32_t id;				/* immutable */
	char name[MQ_NAME_MAX + 1];		/* immutable */
	char dir[PATH_MAX];			/* immutable */
	struct lease *lease;			/* owned; set once, before sharing */
	_Atomic uint64_t off[MQ_MAX_PARTITIONS];	/* written under lock */
};

static struct cg *cg_alloc(const char *dir, const char *name, uint32_t id)
{
	struct cg *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	atomic_init(&g->refs, 1);
	pthread_mutex_init(&g->lock, NULL);
	g->id = id;
	snprintf(g->name, sizeof(g->name), "%s", name);
	if (snprintf(g->dir, sizeof(g->dir), "%s", dir) >= (int)sizeof(g->dir)) {
		free(g);
		return NULL;
	}
	return g;
}

static int store(struct cg *g, uint32_t part, uint64_t off, int durable)
{
	char name[16], text[32];
	int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", off);

	snprintf(name, sizeof(name), "%" PRIu32, part);
	return io_publish(g->dir, name, text, (size_t)n, durable);
}

int cg_create(const char *dir, const char *name, uint32_t id,
	      const uint64_t *start, uint32_t nparts, int durable,
	      struct cg **out)
{
	struct cg *g = cg_alloc(dir, name, id);
	int rc;

	if (!g)
		return -ENOMEM;
	rc = io_mkdir(dir);
	for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
		g->off[p] = start[p];
		rc = store(g, p, start[p], durable);
	}
	if (rc == 0 && durable)
		rc = io_sync_dir(dir);
	if (rc < 0) {
		(void)io_rmtree(dir);
		cg_unref(g);
		return rc;
	}
	*out = g;
	return 0;
}

int cg_load(const char *dir, const char *name, uint32_t id, struct cg **out)
{
	struct cg *g = cg_alloc(dir, name, id);

	if (!g)
		return -ENOMEM;
	for (uint32_t p = 0; p < MQ_MAX_PARTITIONS; p++) {
		char path[PATH_MAX + 16], text[32], *end;
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%" PRIu32, dir, p);
		n = io_read_small(path, text, sizeof(text) - 1);
		if (n == -ENOENT)
			continue;
		if (n < 0) {
			cg_unref(g);
			return (int)n;
		}
		text[n] = '\0';
		g->off[p] = strtoull(text, &end, 10);
		if (end == text || *end != '\n') {
			/* Written atomically, so only a damaged disk gets here:
			 * offset 0 reads from the first retained message, which
			 * redelivers rather than loses (at-least-once). */
			fprintf(stderr, "mqfs: %s: not an offset, starting from the earliest\n", path);
			g->off[p] = 0;
		}
	}
	*out = g;
	return 0;
}

void cg_ref(struct cg *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

void cg_unref(struct cg *g)
{
	if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1) {
		lease_close(g->lease);
		pthread_mutex_destroy(&g->lock);
		free(g);
	}
}

int cg_destroy(struct cg *g)
{
	/* No commit through this object may write into a new group of the
	 * same name once this returns. */
	if (g->lease)
		lease_kill(g->lease);
	pthread_mutex_lock(&g->lock);
	g->dead = 1;
	pthread_mutex_unlock(&g->lock);
	return io_rmtree(g->dir);
}

const char *cg_name(const struct cg *g) { return g->name; }
const char *cg_dir(const struct cg *g) { return g->dir; }
void cg_set_lease(struct cg *g, struct lease *ls) { g->lease = ls; }
struct lease *cg_lease(struct cg *g) { return g->lease; }

void cg_advance(struct cg *g, uint32_t part, uint64_t off)
{
	atomic_store_explicit(&g->off[part], off, memory_order_release);
}
uint32_t cg_id(const struct cg *g) { return g->id; }

uint64_t cg_committed(struct cg *g, uint32_t part)
{
	return atomic_load_explicit(&g->off[part], memory_order_acquire);
}

int cg_commit(struct cg *g, uint32_t part, uint64_t off, int relative,
	      uint64_t end, int durable)
{
	uint64_t cur;
	int rc;

	pthread_mutex_lock(&g->lock);
	if (g->dead) {
		rc = -ENOENT;
		goto out_unlock;
	}
	cur = atomic_load_explicit(&g->off[part], memory_order_relaxed);
	if (relative) {
		if (off > UINT64_MAX - cur) {
			rc = -EINVAL;
			goto out_unlock;
		}
		off += cur;
	}
	if (off > end) {
		rc = -EINVAL;
		goto out_unlock;
	}
	rc = store(g, part, off, durable);
	if (rc == 0)
		atomic_store_explicit(&g->off[part], off, memory_order_release);
out_unlock:
	pthread_mutex_unlock(&g->lock);
	return rc;
}
