/* Unit tests of core/commit.c: waiters complete after their partitions are
 * durable; many waiters share commits; stop completes everyone. */
#include "tap.h"

#include <pthread.h>
#include <stdatomic.h>

#include "../../core/commit.h"
#include "../../core/io.h"
#include "../../core/partition.h"

struct w {
	struct commit_wait cw;
	atomic_int done;
};

static void on_done(struct commit_wait *cw)
{
	atomic_store(&((struct w *)cw)->done, 1);
}

static int wait_done(struct w *w)
{
	for (int i = 0; i < 5000 && !atomic_load(&w->done); i++)
		usleep(1000);
	return atomic_load(&w->done);
}

static void commit_wait_completes_after_the_sync(void)
{
	const char *dir = tmpdir();
	struct commit *c;
	struct part *p;
	struct w w = { .cw.done = on_done };

	CHECK_EQ(part_open(dir, &p), 0);
	/* A long sync_ms: the commit must start because someone waits. */
	CHECK_EQ(commit_start(60000, &c), 0);
	CHECK_EQ(part_append(p, "a\n", 2, 1, 1 << 20, 1), 0);
	commit_dirty(c, p);
	commit_wait(c, &w.cw);
	CHECK(wait_done(&w));
	/* A sync failure reaches the partition, where waiters look. */
	atomic_store(&w.done, 0);
	CHECK_EQ(part_append(p, "b\n", 2, 1, 1 << 20, 1), 0);
	io_fault_set(IO_OP_SYNC, 1, -EIO, 0);
	commit_dirty(c, p);
	commit_wait(c, &w.cw);
	CHECK(wait_done(&w));
	CHECK_EQ(part_error(p), -EIO);
	commit_stop(c);
	part_close(p);
}

struct writer {
	struct commit *c;
	struct part *p;
	int n;
	int completed;
};

static void *writer_main(void *arg)
{
	struct writer *wr = arg;

	for (int i = 0; i < wr->n; i++) {
		struct w w = { .cw.done = on_done };

		if (part_append(wr->p, "msg\n", 4, 1, 1 << 20, 1) < 0)
			break;
		commit_dirty(wr->c, wr->p);
		commit_wait(wr->c, &w.cw);
		wr->completed += wait_done(&w);
	}
	return NULL;
}

static void commit_serves_concurrent_writers_on_many_partitions(void)
{
	const char *dir = tmpdir();
	struct writer wr[4];
	pthread_t th[4];
	struct commit *c;
	char sub[512];

	CHECK_EQ(commit_start(10, &c), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(sub, sizeof(sub), "%s/%d", dir, i);
		CHECK_EQ(part_open(sub, &wr[i].p), 0);
		wr[i].c = c;
		wr[i].n = 200;
		wr[i].completed = 0;
		pthread_create(&th[i], NULL, writer_main, &wr[i]);
	}
	for (int i = 0; i < 4; i++) {
		struct part_stat st;

		pthread_join(th[i], NULL);
		CHECK_EQ(wr[i].completed, 200);
		part_stat(wr[i].p, &st);
		CHECK_EQ(st.next, 200);
		CHECK_EQ(part_error(wr[i].p), 0);
	}
	commit_stop(c);
	for (int i = 0; i < 4; i++)
		part_close(wr[i].p);
}

static void commit_stop_completes_every_waiter(void)
{
	const char *dir = tmpdir();
	struct w w[8];
	struct commit *c;
	struct part *p;

	CHECK_EQ(part_open(dir, &p), 0);
	CHECK_EQ(commit_start(60000, &c), 0);
	for (int i = 0; i < 8; i++) {
		w[i].cw.done = on_done;
		atomic_init(&w[i].done, 0);
		CHECK_EQ(part_append(p, "z\n", 2, 1, 1 << 20, 1), 0);
		commit_dirty(c, p);
		commit_wait(c, &w[i].cw);
	}
	commit_stop(c);
	for (int i = 0; i < 8; i++)
		CHECK(atomic_load(&w[i].done));
	part_close(p);
}

int main(void)
{
	RUN(commit_wait_completes_after_the_sync);
	RUN(commit_serves_concurrent_writers_on_many_partitions);
	RUN(commit_stop_completes_every_waiter);
	return tap_done();
}
