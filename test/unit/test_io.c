/* Unit tests of core/io.c: atomic replace, small reads, fault injection. */
#include "tap.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "../../core/io.h"

static void io_publish_replaces_atomically_and_leaves_no_temp(void)
{
	const char *dir = tmpdir();
	char path[512], buf[64];

	snprintf(path, sizeof(path), "%s/f", dir);
	CHECK_EQ(io_publish(dir, "f", "one\n", 4, 1), 0);
	CHECK_EQ(io_read_small(path, buf, sizeof(buf)), 4);
	CHECK(memcmp(buf, "one\n", 4) == 0);
	CHECK_EQ(io_publish(dir, "f", "second\n", 7, 0), 0);
	CHECK_EQ(io_read_small(path, buf, sizeof(buf)), 7);
	CHECK(memcmp(buf, "second\n", 7) == 0);
	snprintf(path, sizeof(path), "%s/.f.tmp", dir);
	CHECK(access(path, F_OK) < 0);
	/* A failed write leaves the old content, and no temp file. */
	io_fault_set(IO_OP_WRITE, 1, -ENOSPC, 0);
	CHECK_EQ(io_publish(dir, "f", "third\n", 6, 1), -ENOSPC);
	CHECK(access(path, F_OK) < 0);
	snprintf(path, sizeof(path), "%s/f", dir);
	CHECK_EQ(io_read_small(path, buf, sizeof(buf)), 7);
	/* So does a failed fsync. */
	io_fault_set(IO_OP_SYNC, 1, -EIO, 0);
	CHECK_EQ(io_publish(dir, "f", "third\n", 6, 1), -EIO);
	CHECK_EQ(io_read_small(path, buf, sizeof(buf)), 7);
	CHECK(memcmp(buf, "second\n", 7) == 0);
}

static void io_read_small_reports_missing_and_too_big(void)
{
	const char *dir = tmpdir();
	char path[512], buf[8];

	snprintf(path, sizeof(path), "%s/none", dir);
	CHECK_EQ(io_read_small(path, buf, sizeof(buf)), -ENOENT);
	CHECK_EQ(io_publish(dir, "big", "123456789", 9, 0), 0);
	snprintf(path, sizeof(path), "%s/big", dir);
	CHECK_EQ(io_read_small(path, buf, sizeof(buf)), -EFBIG);
	CHECK_EQ(io_publish(dir, "fits", "12345678", 8, 0), 0);
	snprintf(path, sizeof(path), "%s/fits", dir);
	CHECK_EQ(io_read_small(path, buf, sizeof(buf)), 8);
}

static void io_fault_fires_on_the_nth_call_once_or_for_good(void)
{
	const char *dir = tmpdir();
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/x", dir);
	fd = open(path, O_RDWR | O_CREAT, 0644);
	io_fault_set(IO_OP_WRITE, 3, -EIO, 0);
	CHECK_EQ(io_pwrite_all(fd, "a", 1, 0), 0);
	CHECK_EQ(io_pwrite_all(fd, "b", 1, 1), 0);
	CHECK_EQ(io_pwrite_all(fd, "c", 1, 2), -EIO);
	CHECK_EQ(io_pwrite_all(fd, "d", 1, 2), 0);
	io_fault_set(IO_OP_SYNC, 1, -EIO, 1);
	CHECK_EQ(io_sync(fd), -EIO);
	CHECK_EQ(io_sync(fd), -EIO);
	io_fault_set(IO_OP_SYNC, 0, 0, 0);
	CHECK_EQ(io_sync(fd), 0);
	close(fd);
}

static void io_rmtree_removes_nested_directories(void)
{
	const char *dir = tmpdir();
	char p[512];

	snprintf(p, sizeof(p), "%s/a", dir);
	CHECK_EQ(io_mkdir(p), 0);
	CHECK_EQ(io_mkdir(p), 0);	/* existing is fine */
	snprintf(p, sizeof(p), "%s/a/b", dir);
	CHECK_EQ(io_mkdir(p), 0);
	CHECK_EQ(io_publish(p, "f", "x", 1, 0), 0);
	snprintf(p, sizeof(p), "%s/a", dir);
	CHECK_EQ(io_rmtree(p), 0);
	CHECK(access(p, F_OK) < 0);
}

int main(void)
{
	RUN(io_publish_replaces_atomically_and_leaves_no_temp);
	RUN(io_read_small_reports_missing_and_too_big);
	RUN(io_fault_fires_on_the_nth_call_once_or_for_good);
	RUN(io_rmtree_removes_nested_directories);
	return tap_done();
}
