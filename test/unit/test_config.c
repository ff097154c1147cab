/* Unit tests of core/config.c: table-driven option and config-line cases. */
#include "tap.h"

#include "../../core/config.h"

static void cfg_node_set_accepts_valid_and_refuses_invalid_options(void)
{
	static const struct { const char *key, *val; int rc; } cases[] = {
		{ "partitions", "1", 0 }, { "partitions", "1024", 0 },
		{ "partitions", "0", -EINVAL }, { "partitions", "1025", -EINVAL },
		{ "partitions", "-1", -EINVAL }, { "partitions", "4x", -EINVAL },
		{ "partitions", "", -EINVAL }, { "partitions", " 4", -EINVAL },
		{ "sync", "always", 0 }, { "sync", "batch", 0 }, { "sync", "none", 0 },
		{ "sync", "sometimes", -EINVAL }, { "sync_ms", "0", 0 },
		{ "sync_ms", "60001", -EINVAL }, { "max_message", "0", -EINVAL },
		{ "max_message", "10", 0 }, { "retention_ms", "0", 0 },
		{ "retention_bytes", "0", 0 }, { "segment_bytes", "100", -EINVAL },
		{ "segment_bytes", "4096", 0 }, { "max_bytes", "0", 0 },
		{ "overflow", "reject", 0 }, { "overflow", "drop", -EINVAL },
		{ "max_deliveries", "0", 0 }, { "ack_wait_ms", "0", -EINVAL },
		{ "retry_backoff_ms", "0", 0 }, { "peers", "/a:/b", 0 },
		{ "acks", "all", 0 }, { "acks", "some", -EINVAL },
		{ "role", "follower", 0 }, { "min_insync", "0", -EINVAL },
		{ "isr_lag_ms", "5", 0 }, { "colour", "red", -EINVAL },
		{ "partitions", "99999999999999999999999", -EINVAL },
	};
	struct cfg_node n;
	const char *why;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		cfg_node_defaults(&n);
		rc = cfg_node_set(&n, cases[i].key, cases[i].val, &why);
		if (rc != cases[i].rc)
			printf("# %s=%s\n", cases[i].key, cases[i].val);
		CHECK_EQ(rc, cases[i].rc);
	}
	cfg_node_defaults(&n);
	CHECK_EQ(cfg_node_set(&n, "partitions", "12", &why), 0);
	CHECK_EQ(n.topic.partitions, 12);
	CHECK_EQ(cfg_node_set(&n, "sync", "none", &why), 0);
	CHECK_EQ(n.topic.sync, CFG_SYNC_NONE);
	CHECK(cfg_node_known("acks") && !cfg_node_known("allow_other"));
}

static void cfg_topic_apply_is_all_or_nothing(void)
{
	static const struct { const char *text; int rc; } cases[] = {
		{ "max_message=10\n", 0 },
		{ "max_message=10", 0 },
		{ "\n\nmax_message=10\n\n", 0 },
		{ "max_message = 10\n", -EINVAL },	/* key "max_message " */
		{ "max_message=10\nsync=never\n", -EINVAL },
		{ "max_message=10\nbogus=1\n", -EINVAL },
		{ "max_message=10\nsync_ms=5\n", -EINVAL },	/* node option */
		{ "max_message=10\npeers=/x\n", -EINVAL },
		{ "partitions=3\n", -EINVAL },			/* shrink */
		{ "partitions=4\n", 0 },
		{ "partitions=8\n", 0 },
		{ "max_message\n", -EINVAL },
	};
	struct cfg_node n;
	const char *why;

	cfg_node_defaults(&n);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg_topic t = n.topic;
		int rc = cfg_topic_apply(&t, cases[i].text, strlen(cases[i].text), &why);

		if (rc != cases[i].rc)
			printf("# case %zu: %s\n", i, cases[i].text);
		CHECK_EQ(rc, cases[i].rc);
		if (rc < 0)
			CHECK(memcmp(&t, &n.topic, sizeof(t)) == 0);
	}
}

static void cfg_topic_format_round_trips(void)
{
	struct cfg_node n;
	struct cfg_topic t, u;
	const char *why;
	char buf[512];
	int len;

	cfg_node_defaults(&n);
	t = n.topic;
	const char *set = "sync=always\noverflow=reject\nretention_bytes=7\n";
	const char *head = "partitions=4\nsync=always\nmax_message=1048576\n";

	CHECK_EQ(cfg_topic_apply(&t, set, strlen(set), &why), 0);
	len = cfg_topic_format(&t, buf, sizeof(buf));
	CHECK(len > 0);
	CHECK(strncmp(buf, head, strlen(head)) == 0);
	CHECK(strstr(buf, "overflow=reject\nmax_deliveries=5\n") != NULL);
	u = n.topic;
	CHECK_EQ(cfg_topic_apply(&u, buf, (size_t)len, &why), 0);
	CHECK(memcmp(&t, &u, sizeof(t)) == 0);
	CHECK_EQ(cfg_topic_format(&t, buf, 20), -ENOSPC);
}

int main(void)
{
	RUN(cfg_node_set_accepts_valid_and_refuses_invalid_options);
	RUN(cfg_topic_apply_is_all_or_nothing);
	RUN(cfg_topic_format_round_trips);
	return tap_done();
}
