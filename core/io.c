/*
 * io.c - file I/O with the retry rules in one place, and the fault seam.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fault state: calls left before the fault fires (0 = off), error, sticky. */
static struct {
	atomic_int countdown;
	int err;
	int sticky;
} faults[IO_OP_NOPS];

void io_fault_set(enum io_op op, int n, int err, int sticky)
{
	faults[op].err = err;
	faults[op].sticky = sticky;
	atomic_store(&faults[op].countdown, n);
}

static int fault(enum io_op op)
{
	int n = atomic_load_explicit(&faults[op].countdown, memory_order_relaxed);

	if (n == 0)
		return 0;
	if (n > 1) {
		atomic_fetch_sub(&faults[op].countdown, 1);
		return 0;
	}
	if (!faults[op].sticky)
		atomic_store(&faults[op].countdown, 0);
	return faults[op].err;
}

int io_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return io_pwritev_all(fd, &iov, 1, off);
}

int io_pwritev_all(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	size_t want = 0;
	ssize_t n;
	int rc;

	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	rc = fault(IO_OP_WRITE);
	if (rc < 0)
		return rc;
	do
		n = pwritev(fd, iov, iovcnt, off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/*
	 * A short write means the disk is full or failing. Retrying the rest
	 * would hide that from the producer; the caller cuts the tail back.
	 */
	if ((size_t)n != want)
		return -EIO;
	return 0;
}

ssize_t io_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int io_sync(int fd)
{
	int rc = fault(IO_OP_SYNC);

	if (rc < 0)
		return rc;
	/* Never retried: after a failed fsync the kernel may have dropped the
	 * dirty pages, so a second fsync could succeed with the data gone. */
	if (fdatasync(fd) < 0)
		return -errno;
	return 0;
}

int io_sync_dir(const char *dir)
{
	int fd, rc = 0;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int io_truncate(int fd, off_t len)
{
	if (ftruncate(fd, len) < 0)
		return -errno;
	return 0;
}

int io_publish(const char *dir, const char *name, const void *buf, size_t len,
	       int durable)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= (int)sizeof(tmp) ||
	    snprintf(dst, sizeof(dst), "%s/%s", dir, name) >= (int)sizeof(dst))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = io_pwrite_all(fd, buf, len, 0);
	if (rc == 0 && durable)
		rc = io_sync(fd);
	close(fd);
	if (rc < 0)
		goto out_unlink;
	if (rename(tmp, dst) < 0) {
		rc = -errno;
		goto out_unlink;
	}
	/* Without this the rename itself can be lost on power failure. */
	if (durable)
		rc = io_sync_dir(dir);
	return rc;
out_unlink:
	unlink(tmp);
	return rc;
}

ssize_t io_read_small(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = io_pread(fd, buf, cap, 0);
	if (n == (ssize_t)cap) {
		char extra;

		if (io_pread(fd, &extra, 1, (off_t)cap) == 1)
			n = -EFBIG;
	}
	close(fd);
	return n;
}

int io_mkdir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

int io_rmtree(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return errno ? -errno : -EIO;
	return 0;
}
