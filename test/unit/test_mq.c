/* Unit tests of core/mq.c, topic.c and group.c: topics, groups, offset
 * commits, and what survives a restart. */
#include "tap.h"

#include <sys/stat.h>

#include "../../core/group.h"
#include "../../core/mq.h"
#include "../../core/partition.h"
#include "../../core/topic.h"

static struct mq *open_at(const char *dir, const char *kv)
{
	struct cfg_node n;
	const char *why;
	struct mq *m;

	cfg_node_defaults(&n);
	if (kv) {
		char key[64];
		const char *eq = strchr(kv, '=');

		snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
		CHECK_EQ(cfg_node_set(&n, key, eq + 1, &why), 0);
	}
	if (mq_open(dir, &n, &m) < 0 || mq_start(m) < 0)
		exit(2);
	return m;
}

static int exists(const char *dir, const char *rel)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return access(p, F_OK) == 0;
}

static void mq_topic_create_checks_names_and_creates_nothing_on_error(void)
{
	static const char *bad[] = { "", ".", "..", ".hidden", "a/b", "a b",
				     "tab\there", "new\nline", "caf\xc3\xa9", "x*" };
	static const char *good[] = { "a", "A-b_c.9", "0", "x.", "-dash" };
	const char *dir = tmpdir();
	struct mq *m = open_at(dir, NULL);
	char long_ok[201], long_bad[202];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_EQ(mq_topic_create(m, bad[i]), -EINVAL);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_EQ(mq_topic_create(m, good[i]), 0);
	memset(long_ok, 'n', 200);
	long_ok[200] = '\0';
	memset(long_bad, 'n', 201);
	long_bad[201] = '\0';
	CHECK_EQ(mq_topic_create(m, long_ok), 0);
	CHECK_EQ(mq_topic_create(m, long_bad), -EINVAL);
	CHECK_EQ(mq_topic_create(m, "a"), -EEXIST);
	CHECK(!exists(dir, "topics/.hidden") && !exists(dir, "topics/a b"));
	CHECK(exists(dir, "topics/A-b_c.9/config"));
	mq_close(m);
}

static void mq_topics_groups_and_offsets_survive_restart(void)
{
	const char *dir = tmpdir();
	struct mq *m = open_at(dir, "partitions=3");
	struct topic *t;
	struct cg *g;
	const char *why;
	uint32_t old_id;

	CHECK_EQ(mq_topic_create(m, "orders"), 0);
	t = mq_topic_find(m, "orders");
	old_id = topic_id(t);
	CHECK_EQ(topic_nparts(t), 3);
	CHECK_EQ(part_append(topic_part(t, 1), "a\nb\nc\n", 6, 1, 1 << 20, 1), 0);
	CHECK_EQ(topic_config_write(t, "max_message=100\npartitions=5\n", 29, &why), 0);
	CHECK_EQ(topic_nparts(t), 5);
	CHECK_EQ(topic_config_write(t, "partitions=4\n", 13, &why), -EINVAL);
	CHECK_EQ(topic_group_create(t, "billing"), 0);
	CHECK_EQ(topic_group_create(t, "billing"), -EEXIST);
	CHECK_EQ(topic_group_create(t, "../x"), -EINVAL);
	g = topic_group_find(t, "billing");
	CHECK(g != NULL);
	CHECK_EQ(topic_commit(t, g, 1, "2\n", 2), 0);
	CHECK_EQ(cg_committed(g, 1), 2);
	CHECK_EQ(topic_commit(t, g, 1, "+1", 2), 0);
	CHECK_EQ(cg_committed(g, 1), 3);
	CHECK_EQ(topic_commit(t, g, 1, "+1", 2), -EINVAL);	/* past the end */
	CHECK_EQ(topic_commit(t, g, 1, "4", 1), -EINVAL);
	CHECK_EQ(topic_commit(t, g, 1, "x", 1), -EINVAL);
	CHECK_EQ(topic_commit(t, g, 1, "-1", 2), -EINVAL);
	CHECK_EQ(topic_commit(t, g, 1, "", 0), -EINVAL);
	CHECK_EQ(topic_commit(t, g, 1, "1 2", 3), -EINVAL);
	CHECK_EQ(cg_committed(g, 1), 3);
	CHECK_EQ(topic_commit(t, g, 1, "0", 1), 0);	/* rewind */
	cg_unref(g);
	topic_unref(t);
	CHECK_EQ(mq_topic_create(m, "gone"), 0);
	CHECK_EQ(mq_topic_delete(m, "gone"), 0);
	CHECK_EQ(mq_topic_delete(m, "gone"), -ENOENT);
	CHECK(!exists(dir, "topics/gone"));
	mq_close(m);

	m = open_at(dir, NULL);
	CHECK(mq_topic_find(m, "gone") == NULL);
	t = mq_topic_find(m, "orders");
	CHECK(t != NULL);
	CHECK_EQ(topic_nparts(t), 5);
	{
		struct cfg_topic c;
		struct part_stat st;

		CHECK_EQ(topic_cfg(t, &c), 0);
		CHECK_EQ(c.max_message, 100);
		part_stat(topic_part(t, 1), &st);
		CHECK_EQ(st.next, 3);
	}
	g = topic_group_find(t, "billing");
	CHECK(g != NULL);
	CHECK_EQ(cg_committed(g, 1), 0);
	CHECK_EQ(cg_committed(g, 4), 0);
	cg_unref(g);
	CHECK_EQ(topic_group_delete(t, "billing"), 0);
	CHECK(topic_group_find(t, "billing") == NULL);
	CHECK_EQ(topic_group_delete(t, "billing"), -ENOENT);
	topic_unref(t);
	/* Ids are not reused: a new topic never takes a deleted one's. */
	CHECK_EQ(mq_topic_create(m, "fresh"), 0);
	t = mq_topic_find(m, "fresh");
	CHECK(topic_id(t) != old_id);
	topic_unref(t);
	mq_close(m);
}

static void mq_open_refuses_a_data_dir_in_use_and_drops_half_topics(void)
{
	const char *dir = tmpdir();
	struct mq *m = open_at(dir, NULL), *m2;
	struct cfg_node n;
	char p[512];

	cfg_node_defaults(&n);
	CHECK_EQ(mq_open(dir, &n, &m2), -EBUSY);
	mq_close(m);
	/* A topic directory without config: a creation cut short. */
	snprintf(p, sizeof(p), "%s/topics/half", dir);
	CHECK_EQ(mkdir(p, 0755), 0);
	m = open_at(dir, NULL);
	CHECK(mq_topic_find(m, "half") == NULL);
	CHECK(!exists(dir, "topics/half"));
	CHECK_EQ(mq_topic_create(m, "half"), 0);
	mq_close(m);
}

static void group_starts_at_earliest_retained_offset(void)
{
	const char *dir = tmpdir();
	struct mq *m = open_at(dir, "partitions=1");
	struct topic *t;
	struct cg *g;
	const char *why;

	CHECK_EQ(mq_topic_create(m, "t"), 0);
	t = mq_topic_find(m, "t");
	CHECK_EQ(topic_config_write(t, "segment_bytes=1024\nretention_bytes=1024\n", 40, &why), 0);
	for (int i = 0; i < 100; i++) {
		char line[64];

		snprintf(line, sizeof(line), "message number %03d of the hundred\n", i);
		CHECK_EQ(part_append(topic_part(t, 0), line, strlen(line), 1, 1024, 0), 0);
	}
	topic_retain(t, 2);
	CHECK_EQ(topic_group_create(t, "late"), 0);
	g = topic_group_find(t, "late");
	{
		struct part_stat st;

		part_stat(topic_part(t, 0), &st);
		CHECK(st.first > 0);
		CHECK_EQ(cg_committed(g, 0), st.first);
	}
	cg_unref(g);
	topic_unref(t);
	mq_close(m);
}

int main(void)
{
	RUN(mq_topic_create_checks_names_and_creates_nothing_on_error);
	RUN(mq_topics_groups_and_offsets_survive_restart);
	RUN(mq_open_refuses_a_data_dir_in_use_and_drops_half_topics);
	RUN(group_starts_at_earliest_retained_offset);
	return tap_done();
}
