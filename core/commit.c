/*
 * commit.c - the group-commit thread.
 */
#define _GNU_SOURCE
#include "commit.h"
#include "partition.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct commit {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* signalled on new waiters and on stop */
	pthread_t thread;
	uint64_t sync_ms;		/* immutable */
	struct part **dirty;		/* queued partitions; lock */
	size_t ndirty, cap;		/* lock */
	struct commit_wait *waiters;	/* LIFO, order does not matter; lock */
	int stop;			/* lock */
	struct part **spare;		/* the thread's array after it exits */
};

void commit_dirty(struct commit *c, struct part *p)
{
	if (part_set_queued(p, 1))
		return;		/* already on the list: one fsync covers both */
	pthread_mutex_lock(&c->lock);
	if (c->ndirty == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct part **nd = realloc(c->dirty, cap * sizeof(*nd));

		if (!nd) {
			/* Cannot queue it: sync it here instead. */
			pthread_mutex_unlock(&c->lock);
			part_set_queued(p, 0);
			(void)part_sync(p);
			return;
		}
		c->dirty = nd;
		c->cap = cap;
	}
	c->dirty[c->ndirty++] = p;
	pthread_mutex_unlock(&c->lock);
}

void commit_wait(struct commit *c, struct commit_wait *w)
{
	pthread_mutex_lock(&c->lock);
	w->next = c->waiters;
	c->waiters = w;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void *commit_main(void *arg)
{
	struct commit *c = arg;
	struct part **batch = NULL;	/* the array being synced; owned here */
	size_t bcap = 0;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct commit_wait *w;
		struct part **swap;
		size_t n, swapcap;

		while (!c->waiters && !c->stop) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)(c->sync_ms % 1000) * 1000000;
			ts.tv_sec += (time_t)(c->sync_ms / 1000) + ts.tv_nsec / 1000000000;
			ts.tv_nsec %= 1000000000;
			if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT &&
			    c->ndirty)
				break;	/* queued a while with nobody waiting */
		}
		if (c->stop && !c->waiters && !c->ndirty)
			break;
		/* Swap the queue out, so writers keep queueing while we sync. */
		swap = c->dirty;
		c->dirty = batch;
		batch = swap;
		n = c->ndirty;
		c->ndirty = 0;
		swapcap = c->cap;
		c->cap = bcap;
		bcap = swapcap;
		for (size_t i = 0; i < n; i++)
			/* Cleared before the sync starts: an append racing
			 * with it queues the partition again. */
			part_set_queued(batch[i], 0);
		w = c->waiters;
		c->waiters = NULL;
		pthread_mutex_unlock(&c->lock);

		for (size_t i = 0; i < n; i++)
			(void)part_sync(batch[i]);	/* failure is sticky in the part */
		while (w) {
			struct commit_wait *next = w->next;

			w->done(w);
			w = next;
		}
		pthread_mutex_lock(&c->lock);
	}
	/* batch is the spare array: c->dirty and it are freed by commit_stop. */
	c->spare = batch;
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int commit_start(uint64_t sync_ms, struct commit **out)
{
	struct commit *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->sync_ms = sync_ms ? sync_ms : 1;
	rc = pthread_create(&c->thread, NULL, commit_main, c);
	if (rc) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c);
		return -rc;
	}
	*out = c;
	return 0;
}

void commit_stop(struct commit *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	free(c->dirty);
	free(c->spare);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
