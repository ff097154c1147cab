/* Unit tests of core/lease.c and dlq.c: hand-outs, acks, redelivery, dead
 * letters, and what a crash image of DATA_DIR brings back. A crash image is
 * a copy of DATA_DIR taken while the engine runs: every write the engine
 * made is in the kernel, so the copy is what kill -9 would leave. */
#include "tap.h"
#include "engine.h"

#include <inttypes.h>
#include <time.h>

#include "../../core/core.h"
#include "../../core/dlq.h"
#include "../../core/group.h"
#include "../../core/lease.h"
#include "../../core/mq.h"
#include "../../core/partition.h"
#include "../../core/topic.h"

/* The engine at dir with topic t (created if new) and group g. */
struct env {
	struct mq *m;
	struct topic *t;
	struct cg *g;
	struct lease *ls;
	char *buf;
	size_t cap;
};

static void env_open(struct env *e, const char *dir, const char *opts)
{
	memset(e, 0, sizeof(*e));
	e->m = engine_open(dir, opts);
	(void)mq_topic_create(e->m, "t");
	e->t = mq_topic_find(e->m, "t");
	(void)topic_group_create(e->t, "g");
	e->g = topic_group_find(e->t, "g");
	e->ls = cg_lease(e->g);
}

static void env_close(struct env *e)
{
	free(e->buf);
	cg_unref(e->g);
	topic_unref(e->t);
	mq_close(e->m);
}

static void put(struct env *e, uint32_t part, const char *lines)
{
	/* real timestamps: retention runs every second */
	CHECK_EQ(part_append(topic_part(e->t, part), lines, strlen(lines), mq_now_ms(),
			     1 << 20, 1), 0);
}

/* Take from consumer c; the records as one string (NUL-terminated copy). */
static const char *take(struct env *e, uint64_t c, uint32_t max)
{
	static char out[65536];
	ssize_t n = lease_take(e->ls, c, 1 << 20, max, &e->buf, &e->cap);

	if (n < 0) {
		snprintf(out, sizeof(out), "error %zd", n);
		return out;
	}
	snprintf(out, sizeof(out), "%.*s", (int)n, e->buf);
	return out;
}

static int ack(struct env *e, const char *lines)
{
	return lease_ack(e->ls, lines, strlen(lines));
}

static int nack(struct env *e, const char *lines)
{
	return lease_nack(e->ls, lines, strlen(lines));
}

static void stat_of(struct env *e, uint32_t part, struct lease_stat *st)
{
	lease_stat(e->ls, part, st);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* DATA_DIR of the running test, inside its tmpdir (images go beside it). */
static const char *datadir(void)
{
	static char d[300];

	snprintf(d, sizeof(d), "%s/data", tmpdir());
	return d;
}

/* A crash image of src, beside it; returns its path. */
static const char *image(const char *src)
{
	static char dsts[4][300];
	static int k;
	char *dst = dsts[k++ % 4], cmd[1000];

	snprintf(dst, sizeof(dsts[0]), "%s/img%d", tap_dir, k);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s' && rm -f '%s/.lock'",
		 dst, src, dst, dst);
	if (system(cmd) != 0)
		exit(2);
	return dst;
}

static void lease_hands_out_in_order_and_acks_move_the_committed_offset(void)
{
	const char *dir = datadir();
	struct env e;

	env_open(&e, dir, "partitions=2");
	put(&e, 0, "a\nb\nc\n");
	put(&e, 1, "k\tx\n");
	/* the first take of a group starts at partition 0 */
	CHECK(!strcmp(take(&e, 1, 100), "0:0\ta\n0:1\tb\n0:2\tc\n1:0\tk\tx\n"));
	/* acks out of order: the front decides */
	CHECK_EQ(ack(&e, "0:1\n0:2\n"), 0);
	CHECK_EQ(cg_committed(e.g, 0), 0);
	CHECK_EQ(ack(&e, " 0:0 \n\n"), 0);
	CHECK_EQ(cg_committed(e.g, 0), 3);
	CHECK_EQ(ack(&e, "0:0"), 0);		/* finished: nothing changes */
	CHECK_EQ(cg_committed(e.g, 0), 3);
	/* bad lines: nothing of the write is applied */
	CHECK_EQ(ack(&e, "1:0\n1:1\n"), -EINVAL);	/* 1:1 not written yet */
	CHECK_EQ(ack(&e, "1:0\n2:0\n"), -EINVAL);	/* no partition 2 */
	CHECK_EQ(ack(&e, "1:0 extra"), -EINVAL);
	CHECK_EQ(ack(&e, "1:x"), -EINVAL);
	CHECK_EQ(ack(&e, "01:0"), -EINVAL);
	CHECK_EQ(cg_committed(e.g, 1), 0);
	CHECK_EQ(ack(&e, "1:0"), 0);
	CHECK_EQ(cg_committed(e.g, 1), 1);
	/* an ack of a message never handed out skips it */
	put(&e, 0, "d\ne\n");
	CHECK_EQ(ack(&e, "0:3"), 0);
	CHECK_EQ(cg_committed(e.g, 0), 4);
	CHECK(!strcmp(take(&e, 2, 100), "0:4\te\n"));
	env_close(&e);
}

static void lease_takes_whole_records_up_to_the_size_asked(void)
{
	const char *dir = datadir();
	struct env e;
	ssize_t n;

	env_open(&e, dir, "partitions=1");
	put(&e, 0, "aaaa\nbbbb\ncccc\n");
	/* 9 bytes per record: 20 bytes hold two */
	n = lease_take(e.ls, 1, 20, 100, &e.buf, &e.cap);
	CHECK_EQ(n, 18);
	/* the first record is taken even when it alone is too long */
	n = lease_take(e.ls, 1, 3, 100, &e.buf, &e.cap);
	CHECK_EQ(n, 9);
	CHECK(!memcmp(e.buf, "0:2\tcccc\n", 9));
	CHECK(!strcmp(take(&e, 1, 100), ""));
	env_close(&e);
}

static void lease_partition_belongs_to_one_consumer_at_a_time(void)
{
	const char *dir = datadir();
	struct lease_stat st;
	struct env e;

	env_open(&e, dir, "partitions=1");
	put(&e, 0, "a\nb\n");
	CHECK(!strcmp(take(&e, 1, 1), "0:0\ta\n"));
	CHECK(!strcmp(take(&e, 2, 1), ""));		/* owned by 1 */
	CHECK_EQ(lease_ready(e.ls, 2), 0);
	CHECK_EQ(lease_ready(e.ls, 1), 1);
	CHECK(!strcmp(take(&e, 1, 1), "0:1\tb\n"));	/* the owner goes on */
	stat_of(&e, 0, &st);
	CHECK_EQ(st.in_flight, 2);
	CHECK_EQ(ack(&e, "0:0\n0:1"), 0);
	put(&e, 0, "c\n");
	CHECK(!strcmp(take(&e, 2, 1), "0:2\tc\n"));	/* free again */
	env_close(&e);
}

static void lease_nack_backs_off_and_holds_back_the_partition(void)
{
	const char *dir = datadir();
	struct lease_stat st;
	struct env e;
	int64_t t0;

	env_open(&e, dir, "partitions=1,retry_backoff_ms=200");
	put(&e, 0, "a\nb\n");
	CHECK(!strcmp(take(&e, 1, 1), "0:0\ta\n"));
	CHECK_EQ(nack(&e, "0:0 bad input"), 0);
	t0 = mq_mono_ms();
	stat_of(&e, 0, &st);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.retry, 1);
	/* waiting for redelivery: b stays behind it */
	CHECK_EQ(lease_ready(e.ls, 2), 0);
	CHECK(!strcmp(take(&e, 2, 10), ""));
	while (mq_mono_ms() - t0 < 210)
		sleep_ms(10);
	CHECK_EQ(lease_ready(e.ls, 2), 1);	/* what poll() asks */
	CHECK(!strcmp(take(&e, 2, 10), "0:0\ta\n0:1\tb\n"));
	/* second failure: twice the delay */
	CHECK_EQ(nack(&e, "0:0"), 0);
	CHECK_EQ(nack(&e, "0:0"), 0);		/* not leased: nothing */
	t0 = mq_mono_ms();
	CHECK_EQ(ack(&e, "0:1"), 0);
	sleep_ms(250);
	CHECK(!strcmp(take(&e, 3, 10), ""));
	while (mq_mono_ms() - t0 < 410)
		sleep_ms(10);
	CHECK(!strcmp(take(&e, 3, 10), "0:0\ta\n"));
	/* a due redelivery with nothing new behind it is ready too */
	CHECK_EQ(ack(&e, "0:0"), 0);
	put(&e, 0, "c\n");
	CHECK(!strcmp(take(&e, 4, 10), "0:2\tc\n"));
	CHECK_EQ(nack(&e, "0:2"), 0);
	CHECK_EQ(lease_ready(e.ls, 5), 0);
	sleep_ms(220);
	CHECK_EQ(lease_ready(e.ls, 5), 1);
	env_close(&e);
}

static void lease_expiry_is_a_failure_and_the_last_one_dead_letters(void)
{
	const char *dir = datadir();
	struct dlq_entry d;
	struct lease_stat st;
	struct env e;
	int64_t next;

	env_open(&e, dir, "partitions=1,ack_wait_ms=50,retry_backoff_ms=0,max_deliveries=2");
	put(&e, 0, "poison\nok\n");
	CHECK(!strcmp(take(&e, 1, 1), "0:0\tpoison\n"));
	CHECK_EQ(lease_tick(e.ls, mq_mono_ms(), 10, 1, &next), 0);
	CHECK(next > mq_mono_ms() && next <= mq_mono_ms() + 50);
	sleep_ms(60);
	CHECK_EQ(lease_tick(e.ls, mq_mono_ms(), 10, 1, &next), 1);	/* expired */
	CHECK(!strcmp(take(&e, 1, 1), "0:0\tpoison\n"));
	CHECK_EQ(nack(&e, "0:0 \tstill bad\r\n"), 0);	/* the second failure */
	stat_of(&e, 0, &st);
	CHECK_EQ(st.dead, 1);
	CHECK_EQ(st.retry, 0);
	CHECK_EQ(cg_committed(e.g, 0), 1);
	CHECK_EQ(lease_dead_next(e.ls, 0, &d), 0);
	CHECK_EQ(d.part, 0);
	CHECK_EQ(d.off, 0);
	CHECK_EQ(d.deliveries, 2);
	CHECK_EQ(d.len, 6);
	CHECK(!strcmp(d.reason, "still bad"));
	CHECK_EQ(lease_dead_next(e.ls, d.id, &d), -ENOENT);
	CHECK(!strcmp(take(&e, 1, 1), "0:1\tok\n"));
	env_close(&e);
}

static void lease_redrive_hands_dead_letters_back_below_the_committed_offset(void)
{
	const char *dir = datadir();
	struct dlq_entry d;
	struct env e;
	char *text;
	size_t len;

	env_open(&e, dir, "partitions=1,max_deliveries=1");
	put(&e, 0, "x\ny\nz\n");
	CHECK(!strcmp(take(&e, 1, 3), "0:0\tx\n0:1\ty\n0:2\tz\n"));
	CHECK_EQ(nack(&e, "0:0 a\n0:2 c"), 0);
	CHECK_EQ(ack(&e, "0:1"), 0);
	CHECK_EQ(cg_committed(e.g, 0), 3);
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:2", &d), 0);
	CHECK_EQ(lease_dead_read(e.ls, d.id, &text, &len), 0);
	CHECK_EQ(len, 2);
	CHECK(!memcmp(text, "z\n", 2));
	free(text);
	CHECK_EQ(lease_redrive(e.ls, "0:1", 3), -EINVAL);	/* not dead */
	CHECK_EQ(lease_redrive(e.ls, "0:0\nbad", 7), -EINVAL);
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:0", &d), 0);	/* still there */
	CHECK_EQ(lease_redrive(e.ls, "all\n", 4), 0);
	CHECK_EQ(lease_dead_next(e.ls, 0, &d), -ENOENT);
	CHECK(!strcmp(take(&e, 2, 10), "0:0\tx\n0:2\tz\n"));
	CHECK_EQ(nack(&e, "0:0 again"), 0);		/* deliveries were reset */
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:0", &d), 0);
	CHECK_EQ(d.deliveries, 1);
	CHECK_EQ(ack(&e, "0:2"), 0);
	CHECK_EQ(lease_dead_remove(e.ls, "0:0"), 0);
	CHECK_EQ(lease_dead_remove(e.ls, "0:0"), -ENOENT);
	CHECK(!strcmp(take(&e, 2, 10), ""));
	env_close(&e);
}

static void lease_crash_image_brings_back_exactly_the_unfinished(void)
{
	const char *dir = datadir();
	struct lease_stat st;
	struct dlq_entry d;
	struct env e;
	char journal[400];
	FILE *f;

	env_open(&e, dir, "partitions=1,max_deliveries=2,retry_backoff_ms=60000");
	put(&e, 0, "m0\nm1\nm2\nm3\nm4\nm5\n");
	CHECK(!strcmp(take(&e, 1, 4), "0:0\tm0\n0:1\tm1\n0:2\tm2\n0:3\tm3\n"));
	CHECK_EQ(ack(&e, "0:0\n0:2"), 0);
	CHECK_EQ(nack(&e, "0:1 first"), 0);	/* waits a minute */
	const char *img = image(dir);		/* kill -9 now */
	env_close(&e);

	/* a torn record at the end is cut */
	snprintf(journal, sizeof(journal), "%s/topics/t/groups/g/journal", img);
	f = fopen(journal, "a");
	fwrite("torn-tail", 1, 9, f);
	fclose(f);
	env_open(&e, img, NULL);
	CHECK_EQ(cg_committed(e.g, 0), 1);
	stat_of(&e, 0, &st);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.retry, 2);			/* m1 and m3, at once */
	CHECK(!strcmp(take(&e, 9, 10), "0:1\tm1\n0:3\tm3\n0:4\tm4\n0:5\tm5\n"));
	/* m1's delivery count survived: this failure is its last */
	CHECK_EQ(nack(&e, "0:1 second\n0:3 one"), 0);
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:1", &d), 0);
	CHECK_EQ(d.deliveries, 2);
	CHECK(!strcmp(d.reason, "second"));
	/* m3's lease lost in the crash was its first failure */
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:3", &d), 0);
	CHECK_EQ(d.deliveries, 2);
	const char *img2 = image(img);
	env_close(&e);

	/* m4 and m5 were in flight once: back, with one delivery each */
	env_open(&e, img2, NULL);
	stat_of(&e, 0, &st);
	CHECK_EQ(st.dead, 2);
	CHECK_EQ(cg_committed(e.g, 0), 4);
	CHECK(!strcmp(take(&e, 3, 10), "0:4\tm4\n0:5\tm5\n"));
	CHECK_EQ(nack(&e, "0:4"), 0);
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:4", &d), 0);
	env_close(&e);
}

static void lease_lost_last_lease_dead_letters_at_load(void)
{
	const char *dir = datadir();
	struct dlq_entry d;
	struct env e;

	env_open(&e, dir, "partitions=1,max_deliveries=1");
	put(&e, 0, "p\n");
	CHECK(!strcmp(take(&e, 1, 1), "0:0\tp\n"));
	const char *img = image(dir);
	env_close(&e);
	env_open(&e, img, NULL);
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:0", &d), 0);
	CHECK(!strcmp(d.reason, "expired"));
	CHECK_EQ(cg_committed(e.g, 0), 1);
	env_close(&e);
}

static void lease_commit_resets_the_partition(void)
{
	const char *dir = datadir();
	struct env e;

	env_open(&e, dir, "partitions=1");
	put(&e, 0, "a\nb\nc\n");
	CHECK(!strcmp(take(&e, 1, 10), "0:0\ta\n0:1\tb\n0:2\tc\n"));
	CHECK_EQ(ack(&e, "0:0\n0:1\n0:2"), 0);
	CHECK_EQ(lease_commit(e.ls, 0, 1, 0, 3), 0);	/* replay from 1 */
	CHECK_EQ(lease_commit(e.ls, 0, 4, 0, 3), -EINVAL);
	CHECK(!strcmp(take(&e, 2, 10), "0:1\tb\n0:2\tc\n"));
	const char *img = image(dir);
	env_close(&e);
	env_open(&e, img, NULL);
	CHECK_EQ(cg_committed(e.g, 0), 1);
	CHECK(!strcmp(take(&e, 2, 10), "0:1\tb\n0:2\tc\n"));
	env_close(&e);
}

static void lease_journal_compacts_and_replays_the_same(void)
{
	const char *dir = datadir();
	static char lines[7 * 20000 + 1];
	struct env e;
	char id[32];
	size_t n = 0;

	env_open(&e, dir, "partitions=1,sync=none");
	for (int i = 0; i < 20000; i++)
		n += (size_t)sprintf(lines + n, "m%05d\n", i);
	put(&e, 0, lines);
	/* Two records per message and round (HWM, ACK): five rounds pass
	 * the 4 MiB at which the journal is compacted. */
	for (int r = 0; r < 5; r++) {
		for (int i = 0; i < 20000; i++) {
			snprintf(id, sizeof(id), "0:%d\tm%05d\n", i, i);
			const char *got = take(&e, 1, 1);

			if (strcmp(got, id)) {
				printf("# round %d: got [%s] want [%s]\n", r, got, id);
				CHECK(0);
				break;
			}
			snprintf(id, sizeof(id), "0:%d", i);
			if (r < 4 || i < 19990)
				CHECK_EQ(ack(&e, id), 0);
		}
		if (r < 4)
			CHECK_EQ(lease_commit(e.ls, 0, 0, 0, 20000), 0);
	}
	CHECK_EQ(cg_committed(e.g, 0), 19990);
	const char *img = image(dir);
	env_close(&e);
	env_open(&e, img, NULL);
	CHECK_EQ(cg_committed(e.g, 0), 19990);
	CHECK_EQ(strlen(take(&e, 1, 100)), 10 * strlen("0:19990\tm19990\n"));
	CHECK_EQ(lease_ready(e.ls, 2), 0);
	env_close(&e);
}

static void lease_retention_finishes_what_it_deleted(void)
{
	const char *dir = datadir();
	struct lease_stat st;
	struct env e;

	env_open(&e, dir, "partitions=1,retry_backoff_ms=60000");
	put(&e, 0, "a\nb\nc\n");
	CHECK(!strcmp(take(&e, 1, 2), "0:0\ta\n0:1\tb\n"));
	CHECK_EQ(nack(&e, "0:0\n0:1"), 0);	/* both wait a minute */
	stat_of(&e, 0, &st);
	CHECK_EQ(st.retry, 2);
	/* retention takes all three (the active segment is sealed first) */
	CHECK(part_retain(topic_part(e.t, 0), mq_now_ms() + 10000, 1, 0, 0) > 0);
	put(&e, 0, "d\n");
	CHECK(!strcmp(take(&e, 2, 10), "0:3\td\n"));
	stat_of(&e, 0, &st);
	CHECK_EQ(st.retry, 0);
	CHECK_EQ(st.in_flight, 1);
	CHECK_EQ(cg_committed(e.g, 0), 3);
	CHECK_EQ(ack(&e, "0:3"), 0);
	CHECK_EQ(cg_committed(e.g, 0), 4);
	env_close(&e);
}

static void lease_redriven_letter_outlives_retention(void)
{
	const char *dir = datadir();
	struct dlq_entry d;
	struct lease_stat st;
	struct env e;

	env_open(&e, dir, "partitions=1,max_deliveries=1,retry_backoff_ms=0");
	put(&e, 0, "important\nx\n");
	CHECK(!strcmp(take(&e, 1, 1), "0:0\timportant\n"));
	CHECK_EQ(nack(&e, "0:0 bug"), 0);		/* dead */
	CHECK(!strcmp(take(&e, 1, 1), "0:1\tx\n"));
	CHECK_EQ(ack(&e, "0:1"), 0);
	/* retention deletes the partition's copy of it */
	CHECK(part_retain(topic_part(e.t, 0), mq_now_ms() + 10000, 1, 0, 0) > 0);
	CHECK_EQ(lease_redrive(e.ls, "0:0\n", 4), 0);
	CHECK_EQ(lease_dead_next(e.ls, 0, &d), -ENOENT);	/* not listed */
	stat_of(&e, 0, &st);
	CHECK_EQ(st.dead, 0);
	CHECK_EQ(st.retry, 1);
	const char *img = image(dir);		/* a crash image, for later */
	CHECK(!strcmp(take(&e, 2, 10), "0:0\timportant\n"));
	CHECK_EQ(ack(&e, "0:0"), 0);
	CHECK(!strcmp(take(&e, 2, 10), ""));
	stat_of(&e, 0, &st);
	CHECK_EQ(st.retry + st.in_flight + st.dead, 0);
	env_close(&e);
	/* the image still has it pending, from its letter */
	env_open(&e, img, NULL);
	CHECK(!strcmp(take(&e, 3, 10), "0:0\timportant\n"));
	CHECK_EQ(nack(&e, "0:0 again"), 0);	/* dead again: one letter */
	CHECK_EQ(lease_dead_find(e.ls, 0, "0:0", &d), 0);
	CHECK(!strcmp(d.reason, "again"));
	CHECK_EQ(lease_dead_next(e.ls, d.id, &d), -ENOENT);
	env_close(&e);
}

static void lease_rewind_and_redrive_neither_duplicate_nor_stall(void)
{
	const char *dir = datadir();
	struct lease_stat st;
	struct dlq_entry d;
	struct env e;

	env_open(&e, dir, "partitions=1,max_deliveries=1");
	put(&e, 0, "m0\nm1\nm2\nm3\nm4\n");
	CHECK(!strcmp(take(&e, 1, 4), "0:0\tm0\n0:1\tm1\n0:2\tm2\n0:3\tm3\n"));
	CHECK_EQ(ack(&e, "0:1\n0:2"), 0);
	CHECK_EQ(nack(&e, "0:0\n0:3"), 0);		/* both dead */
	CHECK_EQ(lease_redrive(e.ls, "0:0", 3), 0);	/* below the floor */
	CHECK_EQ(lease_commit(e.ls, 0, 0, 0, 5), 0);	/* rewind: replays 0:0 too */
	CHECK_EQ(lease_redrive(e.ls, "0:3", 3), 0);	/* not handed out since */
	CHECK(!strcmp(take(&e, 2, 10), "0:0\tm0\n0:1\tm1\n0:2\tm2\n0:3\tm3\n0:4\tm4\n"));
	CHECK_EQ(ack(&e, "0:0\n0:1\n0:2\n0:3\n0:4"), 0);
	CHECK_EQ(cg_committed(e.g, 0), 5);
	stat_of(&e, 0, &st);
	CHECK_EQ(st.in_flight + st.retry + st.dead, 0);
	CHECK_EQ(lease_dead_next(e.ls, 0, &d), -ENOENT);
	const char *img = image(dir);
	env_close(&e);
	env_open(&e, img, NULL);
	CHECK_EQ(cg_committed(e.g, 0), 5);
	CHECK(!strcmp(take(&e, 3, 10), ""));
	env_close(&e);
}

static void lease_retention_past_a_whole_window_replays(void)
{
	const char *dir = datadir();
	size_t n = (LEASE_WINDOW_MAX + 1000) * 2;
	char *lines = malloc(n + 1);
	struct env e;

	for (size_t i = 0; i < n; i += 2)
		memcpy(lines + i, "x\n", 2);
	lines[n] = '\0';
	env_open(&e, dir, "partitions=1,segment_bytes=1048576");
	put(&e, 0, lines);
	free(lines);
	CHECK(!strcmp(take(&e, 1, 1), "0:0\tx\n"));
	CHECK_EQ(ack(&e, "0:0"), 0);
	CHECK(part_retain(topic_part(e.t, 0), mq_now_ms() + 10000, 1, 0, 0) > 0);
	put(&e, 0, "after\n");
	CHECK(!strcmp(take(&e, 2, 1), "0:1049576\tafter\n"));
	CHECK_EQ(cg_committed(e.g, 0), LEASE_WINDOW_MAX + 1000);
	CHECK_EQ(ack(&e, "0:1049576"), 0);
	const char *img = image(dir);
	env_close(&e);
	env_open(&e, img, NULL);
	CHECK_EQ(cg_committed(e.g, 0), LEASE_WINDOW_MAX + 1001);
	CHECK(!strcmp(take(&e, 3, 10), ""));
	env_close(&e);
}

static void lease_rewind_below_retention_keeps_redriven_letters(void)
{
	const char *dir = datadir();
	struct lease_stat st;
	struct env e;
	char path[600];
	const char *why;

	env_open(&e, dir, "partitions=1,max_deliveries=1");
	put(&e, 0, "precious\nx\n");
	CHECK(!strcmp(take(&e, 1, 1), "0:0\tprecious\n"));
	CHECK_EQ(nack(&e, "0:0"), 0);			/* dead */
	CHECK(part_retain(topic_part(e.t, 0), mq_now_ms() + 10000, 1, 0, 0) > 0);
	put(&e, 0, "y\n");
	/* a rewind below what the partition holds, then a redrive */
	CHECK_EQ(lease_commit(e.ls, 0, 0, 0, 3), 0);
	CHECK_EQ(lease_redrive(e.ls, "0:0", 3), 0);
	CHECK(!strcmp(take(&e, 2, 10), "0:0\tprecious\n0:2\ty\n"));
	/* and a rewind while it is redriven keeps it too */
	CHECK_EQ(nack(&e, "0:0"), 0);			/* dead again */
	CHECK_EQ(lease_redrive(e.ls, "0:0", 3), 0);
	CHECK_EQ(lease_commit(e.ls, 0, 0, 0, 3), 0);
	CHECK(!strcmp(take(&e, 3, 10), "0:0\tprecious\n0:2\ty\n"));
	/* (with 1 delivery allowed, a restart would dead-letter both: their
	 * leases die with it) */
	CHECK_EQ(topic_config_write(e.t, "max_deliveries=5\n", 17, &why), 0);
	const char *img = image(dir);
	CHECK_EQ(ack(&e, "0:0\n0:2"), 0);
	stat_of(&e, 0, &st);
	CHECK_EQ(st.in_flight + st.retry + st.dead, 0);
	env_close(&e);
	/* the crash image has both pending, 0:0 from its letter */
	env_open(&e, img, NULL);
	CHECK(!strcmp(take(&e, 4, 10), "0:0\tprecious\n0:2\ty\n"));
	/* a letter removed behind mqfs's back: read from the partition if it
	 * can, else finished, but the partition goes on */
	CHECK_EQ(topic_config_write(e.t, "max_deliveries=1\n", 17, &why), 0);
	CHECK_EQ(nack(&e, "0:0"), 0);
	CHECK_EQ(lease_redrive(e.ls, "0:0", 3), 0);
	snprintf(path, sizeof(path), "%s/topics/t/groups/g/dlq/0:0", img);
	CHECK_EQ(unlink(path), 0);
	put(&e, 0, "z\n");
	CHECK_EQ(ack(&e, "0:2"), 0);
	CHECK(!strcmp(take(&e, 5, 10), "0:3\tz\n"));
	env_close(&e);
}

static void lease_restart_after_rewind_keeps_pending_what_has_an_old_letter(void)
{
	const char *dir = datadir();
	struct lease_stat st;
	struct env e;
	const char *why;

	env_open(&e, dir, "partitions=1,max_deliveries=1");
	put(&e, 0, "a\nb\nc\n");
	CHECK(!strcmp(take(&e, 1, 1), "0:0\ta\n"));
	CHECK_EQ(nack(&e, "0:0"), 0);			/* dead: letter 0:0 */
	CHECK_EQ(topic_config_write(e.t, "max_deliveries=5\n", 17, &why), 0);
	CHECK_EQ(lease_commit(e.ls, 0, 0, 0, 3), 0);	/* replay it anyway */
	CHECK(!strcmp(take(&e, 2, 1), "0:0\ta\n"));
	CHECK_EQ(ack(&e, "0:1"), 0);			/* acked ahead */
	const char *img = image(dir);
	env_close(&e);
	env_open(&e, img, NULL);
	CHECK_EQ(cg_committed(e.g, 0), 0);
	stat_of(&e, 0, &st);
	CHECK_EQ(st.dead, 1);				/* the old letter stays */
	CHECK(!strcmp(take(&e, 3, 10), "0:0\ta\n0:2\tc\n"));
	env_close(&e);
}

int main(void)
{

	RUN(lease_rewind_below_retention_keeps_redriven_letters);
	RUN(lease_restart_after_rewind_keeps_pending_what_has_an_old_letter);
	RUN(lease_redriven_letter_outlives_retention);
	RUN(lease_rewind_and_redrive_neither_duplicate_nor_stall);
	RUN(lease_retention_past_a_whole_window_replays);
	RUN(lease_retention_finishes_what_it_deleted);
	RUN(lease_hands_out_in_order_and_acks_move_the_committed_offset);
	RUN(lease_takes_whole_records_up_to_the_size_asked);
	RUN(lease_partition_belongs_to_one_consumer_at_a_time);
	RUN(lease_nack_backs_off_and_holds_back_the_partition);
	RUN(lease_expiry_is_a_failure_and_the_last_one_dead_letters);
	RUN(lease_redrive_hands_dead_letters_back_below_the_committed_offset);
	RUN(lease_crash_image_brings_back_exactly_the_unfinished);
	RUN(lease_lost_last_lease_dead_letters_at_load);
	RUN(lease_commit_resets_the_partition);
	RUN(lease_journal_compacts_and_replays_the_same);
	return tap_done();
}
