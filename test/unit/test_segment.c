/* Unit tests of core/segment.c: append, read, and recovery after a crash. */
#include "tap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "../../core/io.h"
#include "../../core/segment.h"

#define HDR 64
#define ENT 32

static const char *lines4 = "alpha\nbravo\tkey\ncharlie\ndelta\n";
static const char *last = "the-last-message-of-the-segment\n";

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	*len = fread(buf, 1, (size_t)n, f);
	fclose(f);
	return buf;
}

static void spit(const char *path, const char *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	fwrite(buf, 1, len, f);
	fclose(f);
}

static void paths(const char *dir, char *log, char *idx)
{
	snprintf(log, 512, "%s/00000000000000000000.log", dir);
	snprintf(idx, 512, "%s/00000000000000000000.idx", dir);
}

/* Five messages: four in one append, the last in another. */
static void make_five(const char *dir)
{
	struct seg *s;

	CHECK_EQ(seg_create(dir, 0, &s), 0);
	CHECK_EQ(seg_append(s, lines4, strlen(lines4), 1000), 0);
	CHECK_EQ(seg_append(s, last, strlen(last), 2000), 0);
	seg_unref(s);
}

static void seg_append_then_read_returns_lines_and_entries(void)
{
	const char *dir = tmpdir();
	struct seg_entry e;
	struct seg *s;
	char buf[64];

	CHECK_EQ(seg_create(dir, 7, &s), 0);
	seg_unref(s);
	CHECK_EQ(seg_create(dir, 7, &s), -EEXIST);
	make_five(dir);
	CHECK_EQ(seg_open(dir, 7, 1, &s), 0);
	CHECK_EQ(seg_count(s), 0);
	seg_unref(s);
	CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
	CHECK_EQ(seg_base(s), 0);
	CHECK_EQ(seg_count(s), 5);
	CHECK_EQ(seg_bytes(s), strlen(lines4) + strlen(last));
	CHECK_EQ(seg_last_ts(s), 2000);
	CHECK_EQ(seg_entry(s, 1, &e), 0);
	CHECK_EQ(e.pos, 6);
	CHECK_EQ(e.len, 9);
	CHECK(e.hash == XXH3_64bits("bravo\tkey", 9));
	CHECK_EQ(e.ts_ms, 1000);
	CHECK_EQ(seg_read(s, e.pos, buf, e.len + 1), e.len + 1);
	CHECK(memcmp(buf, "bravo\tkey\n", 10) == 0);
	CHECK_EQ(seg_entry(s, 5, &e), -EIO);
	seg_unref(s);
}

/* Recovery from every prefix of the last record, in the log and the index. */
static void seg_open_cuts_torn_last_record_at_every_byte(void)
{
	const char *dir = tmpdir();
	char log[512], idx[512];
	size_t loglen, idxlen, keep = strlen(lines4);
	char *flog, *fidx;

	make_five(dir);
	paths(dir, log, idx);
	flog = slurp(log, &loglen);
	fidx = slurp(idx, &idxlen);
	CHECK_EQ(idxlen, HDR + 5 * ENT);

	/* Crash while writing the log: no entry for the last line yet. */
	for (size_t k = 0; k <= strlen(last); k++) {
		struct seg *s;
		char buf[128];

		spit(log, flog, keep + k);
		spit(idx, fidx, HDR + 4 * ENT);
		CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
		CHECK_EQ(seg_count(s), 4);
		CHECK_EQ(seg_bytes(s), keep);
		CHECK_EQ(seg_read(s, 0, buf, sizeof(buf)), keep);
		CHECK(memcmp(buf, lines4, keep) == 0);
		/* The next append takes offset 4 right after the cut. */
		CHECK_EQ(seg_append(s, "again\n", 6, 3000), 0);
		CHECK_EQ(seg_count(s), 5);
		seg_unref(s);
		CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
		CHECK_EQ(seg_count(s), 5);
		CHECK_EQ(seg_read(s, keep, buf, 6), 6);
		CHECK(memcmp(buf, "again\n", 6) == 0);
		seg_unref(s);
	}
	/* Crash while writing the index entry: the log is whole. */
	for (size_t j = 0; j <= ENT; j++) {
		struct seg *s;

		spit(log, flog, loglen);
		spit(idx, fidx, HDR + 4 * ENT + j);
		CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
		CHECK_EQ(seg_count(s), j == ENT ? 5 : 4);
		CHECK_EQ(seg_bytes(s), j == ENT ? loglen : keep);
		seg_unref(s);
	}
	free(flog);
	free(fidx);
}

static void seg_open_cuts_record_whose_checksum_does_not_match(void)
{
	const char *dir = tmpdir();
	char log[512], idx[512];
	size_t loglen, idxlen;
	char *flog, *fidx;
	struct seg *s;

	make_five(dir);
	paths(dir, log, idx);
	flog = slurp(log, &loglen);
	fidx = slurp(idx, &idxlen);
	flog[loglen - 5] ^= 0x20;	/* same length, different bytes */
	spit(log, flog, loglen);
	CHECK_EQ(seg_open(dir, 0, 0, &s), 0);	/* quick check sees it too */
	CHECK_EQ(seg_count(s), 4);
	CHECK_EQ(seg_bytes(s), strlen(lines4));
	seg_unref(s);
	/* A damaged entry in the middle cuts everything from there. */
	make_five(tmpdir());
	free(flog);
	free(fidx);
	dir = tap_dir;
	paths(dir, log, idx);
	fidx = slurp(idx, &idxlen);
	fidx[HDR + 2 * ENT + 8] ^= 1;	/* length of message 2 */
	spit(idx, fidx, idxlen);
	CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
	CHECK_EQ(seg_count(s), 2);
	CHECK_EQ(seg_bytes(s), strlen("alpha\nbravo\tkey\n"));
	seg_unref(s);
	free(fidx);
}

static void seg_open_rebuilds_missing_or_damaged_index(void)
{
	const char *dir = tmpdir();
	char log[512], idx[512];
	struct seg_entry e;
	size_t idxlen;
	char *fidx;
	struct seg *s;

	make_five(dir);
	paths(dir, log, idx);
	fidx = slurp(idx, &idxlen);
	unlink(idx);
	CHECK_EQ(seg_open(dir, 0, 0, &s), 0);
	CHECK_EQ(seg_count(s), 5);
	CHECK_EQ(seg_entry(s, 4, &e), 0);
	CHECK_EQ(e.len, strlen(last) - 1);
	CHECK(e.hash == XXH3_64bits(last, strlen(last) - 1));
	seg_unref(s);
	/* A header whose checksum fails is rebuilt the same way. */
	fidx[20] ^= 1;
	spit(idx, fidx, idxlen);
	CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
	CHECK_EQ(seg_count(s), 5);
	seg_unref(s);
	/* A torn line at the end of a log without index is cut too. */
	unlink(idx);
	{
		int fd = open(log, O_WRONLY | O_APPEND);

		CHECK(write(fd, "torn", 4) == 4);
		close(fd);
	}
	CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
	CHECK_EQ(seg_count(s), 5);
	CHECK_EQ(seg_bytes(s), strlen(lines4) + strlen(last));
	seg_unref(s);
	free(fidx);
}

static void seg_append_failure_leaves_nothing_visible(void)
{
	const char *dir = tmpdir();
	struct seg *s;

	make_five(dir);
	CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
	/* The log write succeeds, the index write fails. */
	io_fault_set(IO_OP_WRITE, 2, -ENOSPC, 0);
	CHECK_EQ(seg_append(s, "x\ny\n", 4, 5), -ENOSPC);
	CHECK_EQ(seg_count(s), 5);
	CHECK_EQ(seg_append(s, "z\n", 2, 6), 0);
	CHECK_EQ(seg_count(s), 6);
	seg_unref(s);
	CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
	CHECK_EQ(seg_count(s), 6);
	CHECK_EQ(seg_bytes(s), strlen(lines4) + strlen(last) + 2);
	seg_unref(s);
}

/* Recovery reads the log in 1 MiB chunks: a segment of several chunks, with
 * more than one batch of index entries, must come back whole. */
static void seg_open_keeps_a_multi_megabyte_segment_whole(void)
{
	const char *dir = tmpdir();
	struct seg *s;
	char line[128];
	uint64_t bytes = 0;

	CHECK_EQ(seg_create(dir, 0, &s), 0);
	for (int i = 0; i < 100000; i++) {
		int n = snprintf(line, sizeof(line), "message %06d %.*s\n", i, i % 50,
				 "..................................................");

		CHECK_EQ(seg_append(s, line, (size_t)n, i), 0);
		bytes += (uint64_t)n;
	}
	seg_unref(s);
	CHECK(bytes > 3 * 1048576);
	for (int full = 0; full < 2; full++) {
		CHECK_EQ(seg_open(dir, 0, full, &s), 0);
		CHECK_EQ(seg_count(s), 100000);
		CHECK_EQ(seg_bytes(s), bytes);
		seg_unref(s);
	}
}

static void seg_remove_keeps_data_readable_through_references(void)
{
	const char *dir = tmpdir();
	char log[512], idx[512], buf[8];
	struct seg *s;

	make_five(dir);
	paths(dir, log, idx);
	CHECK_EQ(seg_open(dir, 0, 1, &s), 0);
	CHECK_EQ(seg_remove(s), 0);
	CHECK(access(log, F_OK) < 0 && access(idx, F_OK) < 0);
	CHECK_EQ(seg_read(s, 0, buf, 6), 6);
	CHECK(memcmp(buf, "alpha\n", 6) == 0);
	seg_unref(s);
}

int main(void)
{
	RUN(seg_append_then_read_returns_lines_and_entries);
	RUN(seg_open_cuts_torn_last_record_at_every_byte);
	RUN(seg_open_cuts_record_whose_checksum_does_not_match);
	RUN(seg_open_rebuilds_missing_or_damaged_index);
	RUN(seg_append_failure_leaves_nothing_visible);
	RUN(seg_open_keeps_a_multi_megabyte_segment_whole);
	RUN(seg_remove_keeps_data_readable_through_references);
	return tap_done();
}
