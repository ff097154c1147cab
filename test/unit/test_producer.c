/* Unit tests of core/producer.c over a real engine: line rules, routing,
 * the sync policies. */
#include "tap.h"

#include <pthread.h>
#include <xxhash.h>

#include "../../core/io.h"
#include "../../core/mq.h"
#include "../../core/partition.h"
#include "../../core/producer.h"
#include "../../core/topic.h"

struct waiter {
	struct prod_req rq;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	ssize_t result;
};

static void on_done(struct prod_req *rq, ssize_t result)
{
	struct waiter *w = (struct waiter *)rq;

	pthread_mutex_lock(&w->mu);
	w->done = 1;
	w->result = result;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static ssize_t wait_for(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	w->done = 0;
	pthread_mutex_unlock(&w->mu);
	return w->result;
}

static ssize_t put(struct prod *pr, const char *s)
{
	static struct waiter w = { .mu = PTHREAD_MUTEX_INITIALIZER,
				   .cv = PTHREAD_COND_INITIALIZER };

	w.rq.done = on_done;
	prod_write(pr, s, strlen(s), &w.rq);
	return wait_for(&w);
}

static ssize_t flush(struct prod *pr)
{
	static struct waiter w = { .mu = PTHREAD_MUTEX_INITIALIZER,
				   .cv = PTHREAD_COND_INITIALIZER };

	w.rq.done = on_done;
	prod_flush(pr, &w.rq);
	return wait_for(&w);
}

/* Partition p's bytes as a string (static buffer). */
static const char *content(struct topic *t, uint32_t p)
{
	static char buf[4096];
	struct part_stat st;
	ssize_t n;

	part_stat(topic_part(t, p), &st);
	n = part_read(topic_part(t, p), st.start_pos, buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static struct mq *engine(const char *opts)
{
	struct cfg_node n;
	const char *why;
	struct mq *m;
	char copy[256], *save, *kv;

	cfg_node_defaults(&n);
	snprintf(copy, sizeof(copy), "%s", opts);
	for (kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');

		*eq = '\0';
		CHECK_EQ(cfg_node_set(&n, kv, eq + 1, &why), 0);
	}
	if (mq_open(tmpdir(), &n, &m) < 0 || mq_start(m) < 0)
		exit(2);
	CHECK_EQ(mq_topic_create(m, "t"), 0);
	return m;
}

static void prod_write_routes_keys_by_xxh3_and_keyless_writes_round_robin(void)
{
	struct mq *m = engine("partitions=4,sync=none");
	struct topic *t = mq_topic_find(m, "t");
	const char *keys[] = { "alice", "bob", "carol", "dave", "erin", "frank" };
	char text[512] = "", expect[4][512] = { "", "", "", "" };
	struct prod *pr;

	CHECK_EQ(prod_open(t, -1, mq_commit(m), &pr), 0);
	for (int i = 0; i < 6; i++) {
		char line[64];
		uint32_t p = (uint32_t)(XXH3_64bits(keys[i], strlen(keys[i])) % 4);

		snprintf(line, sizeof(line), "%s\tvalue %d\n", keys[i], i);
		strcat(text, line);
		strcat(expect[p], line);
	}
	CHECK_EQ(put(pr, text), (ssize_t)strlen(text));
	for (uint32_t p = 0; p < 4; p++)
		CHECK(strcmp(content(t, p), expect[p]) == 0);
	/* Keyless lines (no TAB, or an empty key) of one write() stay
	 * together; successive writes go round robin. */
	CHECK_EQ(put(pr, "a\nb\nc\nd\n\tx\n\ty\n\tz\n\tw\n"), 20);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(put(pr, "one\n"), 4);
	{
		int eight = 0;

		for (uint32_t p = 0; p < 4; p++) {
			struct part_stat st;
			uint64_t keyed = 0;

			part_stat(topic_part(t, p), &st);
			for (const char *c = expect[p]; *c; c++)
				keyed += *c == '\n';
			/* one "one" each, and all eight of the big write in one */
			CHECK(st.next - keyed == 1 || st.next - keyed == 9);
			eight += st.next - keyed == 9;
		}
		CHECK_EQ(eight, 1);
	}
	prod_close(pr);
	topic_unref(t);
	mq_close(m);
}

static void prod_write_joins_partial_lines_and_skips_empty_ones(void)
{
	struct mq *m = engine("partitions=1,sync=batch");
	struct topic *t = mq_topic_find(m, "t");
	struct prod *pr;

	CHECK_EQ(prod_open(t, 0, mq_commit(m), &pr), 0);
	CHECK_EQ(put(pr, "hel"), 3);
	CHECK(strcmp(content(t, 0), "") == 0);
	CHECK_EQ(put(pr, "lo\n\n\nwor"), 8);
	CHECK(strcmp(content(t, 0), "hello\n") == 0);
	CHECK_EQ(put(pr, "ld"), 2);
	CHECK_EQ(flush(pr), 0);
	CHECK(strcmp(content(t, 0), "hello\nworld\n") == 0);
	CHECK_EQ(flush(pr), 0);	/* nothing pending: nothing published */
	CHECK(strcmp(content(t, 0), "hello\nworld\n") == 0);
	prod_close(pr);
	topic_unref(t);
	mq_close(m);
}

static void prod_write_refuses_long_line_after_short_write(void)
{
	struct mq *m = engine("partitions=1,sync=none,max_message=10");
	struct topic *t = mq_topic_find(m, "t");
	struct prod *pr;

	CHECK_EQ(prod_open(t, -1, mq_commit(m), &pr), 0);
	/* Exactly max_message bytes is fine. */
	CHECK_EQ(put(pr, "0123456789\n"), 11);
	/* The complete line before the long one is kept: a short write. */
	CHECK_EQ(put(pr, "ok\n0123456789X\nafter\n"), 3);
	/* The retry starts at the long line: refused, and for good. */
	CHECK_EQ(put(pr, "0123456789X\nafter\n"), -EMSGSIZE);
	CHECK_EQ(put(pr, "after\n"), -EMSGSIZE);
	CHECK(strcmp(content(t, 0), "0123456789\nok\n") == 0);
	prod_close(pr);

	/* A partial line that grows past max_message over several writes. */
	CHECK_EQ(prod_open(t, -1, mq_commit(m), &pr), 0);
	CHECK_EQ(put(pr, "12345678"), 8);
	CHECK_EQ(put(pr, "901"), -EMSGSIZE);
	CHECK_EQ(flush(pr), 0);
	CHECK(strcmp(content(t, 0), "0123456789\nok\n") == 0);
	prod_close(pr);

	/* A long tail without newline in the first write. */
	CHECK_EQ(prod_open(t, -1, mq_commit(m), &pr), 0);
	CHECK_EQ(put(pr, "x\n0123456789AB"), 2);
	CHECK_EQ(put(pr, "0123456789AB"), -EMSGSIZE);
	CHECK(strcmp(content(t, 0), "0123456789\nok\nx\n") == 0);
	prod_close(pr);
	topic_unref(t);
	mq_close(m);
}

static void prod_write_reports_sync_failure_as_EIO(void)
{
	const char *modes[] = { "partitions=2,sync=always", "partitions=2,sync=batch" };

	for (int i = 0; i < 2; i++) {
		struct mq *m = engine(modes[i]);
		struct topic *t = mq_topic_find(m, "t");
		struct prod *pr;

		CHECK_EQ(prod_open(t, 1, mq_commit(m), &pr), 0);
		CHECK_EQ(put(pr, "a\n"), 2);
		io_fault_set(IO_OP_SYNC, 1, -EIO, 0);
		CHECK_EQ(put(pr, "b\n"), -EIO);
		CHECK_EQ(put(pr, "c\n"), -EIO);	/* sticky */
		prod_close(pr);
		/* The other partition is healthy. */
		CHECK_EQ(prod_open(t, 0, mq_commit(m), &pr), 0);
		CHECK_EQ(put(pr, "d\n"), 2);
		prod_close(pr);
		topic_unref(t);
		mq_close(m);
	}
}

int main(void)
{
	RUN(prod_write_routes_keys_by_xxh3_and_keyless_writes_round_robin);
	RUN(prod_write_joins_partial_lines_and_skips_empty_ones);
	RUN(prod_write_refuses_long_line_after_short_write);
	RUN(prod_write_reports_sync_failure_as_EIO);
	return tap_done();
}
