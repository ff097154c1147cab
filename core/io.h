/*
 * io.h - every file operation of the storage engine goes through here.
 *
 * Two reasons for the seam: the retry and short-count rules live in one place
 * (EINTR is retried, a short write is -EIO, never silently accepted), and the
 * unit tests inject faults here (io_fault_set) to drive the error paths that a
 * real disk would only show when it fails: a failing fsync, ENOSPC, a torn
 * write.
 *
 * io_publish() is the one atomic-replace helper: temp file, write, fsync,
 * rename, fsync of the directory. Group offsets and topic config use it.
 *
 * Thread safety: all functions may be called from any thread. The fault hooks
 * are test-only and must be set while no other thread does I/O.
 */
#ifndef MQ_IO_H
#define MQ_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Write all of buf at off. 0, or -EIO on a short write, -errno otherwise. */
int io_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* Gathered form of io_pwrite_all. */
int io_pwritev_all(int fd, const struct iovec *iov, int iovcnt, off_t off);
/* Read up to len at off, retrying EINTR and short reads until EOF.
 * Returns the bytes read (less than len only at end of file) or -errno. */
ssize_t io_pread(int fd, void *buf, size_t len, off_t off);
/* fdatasync(fd). -EIO (or the real errno) on failure: callers make it sticky. */
int io_sync(int fd);
/* fsync of a directory, so that a create, rename or unlink in it is durable. */
int io_sync_dir(const char *dir);
/* ftruncate. */
int io_truncate(int fd, off_t len);

/*
 * Atomically replace dir/name with len bytes of buf: write dir/.name.tmp,
 * fsync it, rename it over dir/name, fsync dir. With durable == 0 both fsyncs
 * are skipped (the rename alone still makes it atomic against kill -9).
 */
int io_publish(const char *dir, const char *name, const void *buf, size_t len,
	       int durable);

/* Read a whole small file (at most cap bytes) into buf; returns its length,
 * -ENOENT if absent, -EFBIG if larger than cap. */
ssize_t io_read_small(const char *path, char *buf, size_t cap);

/* mkdir that treats an existing directory as success. */
int io_mkdir(const char *path);
/* Remove a directory tree. Used for rmdir of topics and groups. */
int io_rmtree(const char *path);

/* ---- test-only fault injection ---- */

enum io_op { IO_OP_WRITE, IO_OP_SYNC, IO_OP_NOPS };
/*
 * Make the n-th next call (n >= 1) of op fail with err (a negative errno),
 * and every later call too if sticky. n == 0 clears the fault.
 */
void io_fault_set(enum io_op op, int n, int err, int sticky);

#endif
