/* Unit tests of core/partition.c: rolling, lookups, reads, retention, sticky
 * sync failures. */
#include "tap.h"

#include <dirent.h>

#include "../../core/io.h"
#include "../../core/partition.h"

static int count_logs(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	while ((de = readdir(d)))
		n += strstr(de->d_name, ".log") != NULL;
	closedir(d);
	return n;
}

/* Ten messages "m0".."m9" of 3 bytes each, one append each. */
static void fill(struct part *p, uint64_t segment_bytes, int64_t ts)
{
	for (int i = 0; i < 10; i++) {
		char line[8];

		snprintf(line, sizeof(line), "m%d\n", i);
		CHECK_EQ(part_append(p, line, 3, ts, segment_bytes, 1), 0);
	}
}

static void part_append_rolls_segments_and_reads_across_them(void)
{
	const char *dir = tmpdir();
	struct part_stat st;
	struct part *p;
	uint64_t pos;
	char buf[64];

	CHECK_EQ(part_open(dir, &p), 0);
	fill(p, 9, 1);	/* three 3-byte messages per segment */
	part_stat(p, &st);
	CHECK_EQ(st.first, 0);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.end_pos - st.start_pos, 30);
	CHECK_EQ(st.segments, 4);
	CHECK_EQ(count_logs(dir), 4);
	CHECK_EQ(part_read(p, 0, buf, sizeof(buf)), 30);
	CHECK(memcmp(buf, "m0\nm1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\nm9\n", 30) == 0);
	CHECK_EQ(part_read(p, 7, buf, 8), 8);	/* spans a segment boundary */
	CHECK(memcmp(buf, "2\nm3\nm4\n", 8) == 0);
	CHECK_EQ(part_read(p, 30, buf, 8), 0);
	for (uint64_t off = 0; off <= 10; off++) {
		CHECK_EQ(part_pos(p, off, &pos), 0);
		CHECK_EQ(pos, off * 3);
	}
	CHECK_EQ(part_pos(p, 99, &pos), 0);
	CHECK_EQ(pos, 30);
	part_close(p);

	/* Reopened: same offsets, and appends continue at 10. */
	CHECK_EQ(part_open(dir, &p), 0);
	part_stat(p, &st);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.segments, 4);
	CHECK_EQ(part_append(p, "x\ny\n", 4, 2, 9, 1), 0);
	part_stat(p, &st);
	CHECK_EQ(st.next, 12);
	CHECK_EQ(part_pos(p, 11, &pos), 0);
	CHECK_EQ(part_read(p, pos, buf, 2), 2);
	CHECK(memcmp(buf, "y\n", 2) == 0);
	part_close(p);
}

static void part_retain_deletes_whole_old_segments_and_keeps_offsets(void)
{
	const char *dir = tmpdir();
	struct part_stat st;
	struct part *p;
	uint64_t pos;
	char buf[8];

	CHECK_EQ(part_open(dir, &p), 0);
	fill(p, 9, 1000);
	/* By size: keep at least 10 bytes, deleting whole segments only. */
	CHECK_EQ(part_retain(p, 2000, 0, 10, 0), 18);
	part_stat(p, &st);
	CHECK_EQ(st.first, 6);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.segments, 2);
	CHECK_EQ(count_logs(dir), 2);
	CHECK_EQ(part_pos(p, 7, &pos), 0);
	CHECK_EQ(part_read(p, pos, buf, 3), 3);
	CHECK(memcmp(buf, "m7\n", 3) == 0);
	/* Reads below the first retained byte start at the first message. */
	CHECK_EQ(part_read(p, 0, buf, 3), 3);
	CHECK(memcmp(buf, "m6\n", 3) == 0);
	/* By time: nothing is younger than 1 ms at t=5000, all goes, the
	 * active segment too, and offsets go on from 10. */
	CHECK_EQ(part_retain(p, 5000, 1, 0, 0), 12);
	part_stat(p, &st);
	CHECK_EQ(st.first, 10);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.end_pos - st.start_pos, 0);
	CHECK_EQ(part_append(p, "new\n", 4, 6000, 9, 1), 0);
	part_close(p);
	CHECK_EQ(part_open(dir, &p), 0);
	part_stat(p, &st);
	CHECK_EQ(st.first, 10);
	CHECK_EQ(st.next, 11);
	part_close(p);
}

static void part_retain_deletes_consumed_segments(void)
{
	const char *dir = tmpdir();
	struct part_stat st;
	struct part *p;

	CHECK_EQ(part_open(dir, &p), 0);
	fill(p, 9, 1000);	/* segments [0,3) [3,6) [6,9) [9,10) */
	CHECK_EQ(part_retain(p, 2000, 0, 0, 5), 9);	/* only [0,3) is all below 5 */
	part_stat(p, &st);
	CHECK_EQ(st.first, 3);
	CHECK_EQ(part_retain(p, 2000, 0, 0, 10), 21);	/* everything, active too */
	part_stat(p, &st);
	CHECK_EQ(st.first, 10);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(part_retain(p, 2000, 0, 0, 10), 0);
	part_close(p);
}

static void part_sync_failure_is_sticky(void)
{
	const char *dir = tmpdir();
	struct part *p;

	CHECK_EQ(part_open(dir, &p), 0);
	CHECK_EQ(part_append(p, "a\n", 2, 1, 1 << 20, 1), 0);
	io_fault_set(IO_OP_SYNC, 1, -EIO, 0);
	CHECK_EQ(part_sync(p), -EIO);
	/* The disk works again, but nobody knows what the failed fsync lost. */
	CHECK_EQ(part_append(p, "b\n", 2, 1, 1 << 20, 1), -EIO);
	CHECK_EQ(part_sync(p), -EIO);
	CHECK_EQ(part_error(p), -EIO);
	part_close(p);
	/* Until the partition is opened again. */
	CHECK_EQ(part_open(dir, &p), 0);
	CHECK_EQ(part_append(p, "c\n", 2, 1, 1 << 20, 1), 0);
	CHECK_EQ(part_sync(p), 0);
	part_close(p);
}

static void part_sync_covers_segments_sealed_without_sync(void)
{
	/* Rolled without syncing (sync=none at the time): 5 segments hold
	 * unsynced bytes, two files each, so a sync is 10 fdatasyncs. A fault
	 * on the 10th must surface; one on the 11th is never reached. */
	for (int fail_at = 10; fail_at <= 11; fail_at++) {
		const char *dir = tmpdir();
		struct part_stat st;
		struct part *p;

		CHECK_EQ(part_open(dir, &p), 0);
		for (int i = 0; i < 10; i++) {
			char line[8];

			snprintf(line, sizeof(line), "m%d\n", i);
			CHECK_EQ(part_append(p, line, 3, 1, 6, 0), 0);
		}
		part_stat(p, &st);
		CHECK_EQ(st.segments, 5);
		io_fault_set(IO_OP_SYNC, fail_at, -EIO, 0);
		CHECK_EQ(part_sync(p), fail_at == 10 ? -EIO : 0);
		io_fault_set(IO_OP_SYNC, 0, 0, 0);
		CHECK_EQ(part_sync(p), fail_at == 10 ? -EIO : 0);
		part_close(p);
	}
}

static void part_roll_sync_failure_is_sticky(void)
{
	const char *dir = tmpdir();
	struct part *p;

	CHECK_EQ(part_open(dir, &p), 0);
	CHECK_EQ(part_append(p, "a\n", 2, 1, 4, 1), 0);
	/* Any fsync error when sealing is sticky, not only EIO. */
	io_fault_set(IO_OP_SYNC, 1, -ENOSPC, 0);
	CHECK_EQ(part_append(p, "bb\n", 3, 1, 4, 1), -EIO);
	CHECK_EQ(part_error(p), -EIO);
	CHECK_EQ(part_append(p, "c\n", 2, 1, 4, 1), -EIO);
	part_close(p);
}

static void part_append_write_failure_is_not_sticky(void)
{
	const char *dir = tmpdir();
	struct part_stat st;
	struct part *p;

	CHECK_EQ(part_open(dir, &p), 0);
	io_fault_set(IO_OP_WRITE, 1, -ENOSPC, 0);
	CHECK_EQ(part_append(p, "a\n", 2, 1, 1 << 20, 1), -ENOSPC);
	CHECK_EQ(part_append(p, "b\n", 2, 1, 1 << 20, 1), 0);
	part_stat(p, &st);
	CHECK_EQ(st.next, 1);
	part_close(p);
}

int main(void)
{
	RUN(part_append_rolls_segments_and_reads_across_them);
	RUN(part_retain_deletes_whole_old_segments_and_keeps_offsets);
	RUN(part_retain_deletes_consumed_segments);
	RUN(part_sync_failure_is_sticky);
	RUN(part_sync_covers_segments_sealed_without_sync);
	RUN(part_roll_sync_failure_is_sticky);
	RUN(part_append_write_failure_is_not_sticky);
	return tap_done();
}
