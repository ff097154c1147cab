/*
 * fsop: issue exactly one system call (or a fixed, stated sequence of them)
 * on a path and print the outcome as a machine-checkable word, so the bats
 * suite can assert errno by NAME ("EPERM"), never by strerror text.
 *
 * Output, one line per reported call:
 *   OK              the call succeeded (OK <n> for calls that return a count)
 *   ENAME           the call failed with errno ENAME (e.g. EMSGSIZE)
 *   close ENAME     only printed when close() itself fails
 * Exit status: 0 if every reported call succeeded, 1 if one failed,
 * 2 on a usage error.
 *
 * Ops (PATH is the file under test):
 *   write PATH         read all of stdin, open O_WRONLY|O_APPEND, ONE write()
 *   write-nb PATH      the same with O_NONBLOCK
 *   writeall PATH      read all of stdin, open O_WRONLY|O_APPEND, write() in a
 *                      loop like a careful writer (retrying after a short
 *                      count) until everything is written or a call fails;
 *                      prints one line per write() call
 *   writes PATH ARG... open O_WRONLY|O_APPEND once, one write() per ARG (even
 *                      after a failure), one line per write()
 *   spew PATH BYTES CHUNK
 *                      open O_WRONLY|O_APPEND, write BYTES bytes of 'a' in
 *                      CHUNK-byte write() calls, going on after failures;
 *                      prints "ok=<calls> bytes=<accepted>" then one line
 *                      "ENAME=<count>" per distinct errno seen
 *   open-read PATH     open O_RDONLY
 *   open-write PATH    open O_WRONLY
 *   open-rdwr PATH     open O_RDWR
 *   read PATH          open O_RDONLY, read to EOF, copy the bytes to stdout;
 *                      on failure prints only ENAME
 *   read-nb PATH       the same with O_NONBLOCK
 *   readonce PATH SIZE open O_RDONLY, exactly ONE read() of SIZE bytes, copy
 *                      what it returned to stdout; on failure prints only ENAME
 *   readonce-nb PATH SIZE
 *                      the same with O_NONBLOCK
 *   poll PATH MS       open O_RDONLY|O_NONBLOCK, poll() for POLLIN for up to
 *                      MS milliseconds; prints POLLIN (then reads to end of
 *                      file like read-nb, copying the bytes to stdout) or
 *                      TIMEOUT (exit status 1)
 *   creat PATH         open O_WRONLY|O_CREAT|O_EXCL, mode 0644
 *   truncate PATH LEN  truncate(PATH, LEN)
 *   ftruncate PATH LEN open O_WRONLY, ftruncate(fd, LEN)
 *   unlink PATH        unlink()
 *   rename OLD NEW     rename()
 *   mkdir PATH         mkdir(PATH, 0755)
 *   rmdir PATH         rmdir()
 *   stat PATH          stat()
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static const struct {
	int num;
	const char *name;
} errnames[] = {
	{ EPERM, "EPERM" },	      { ENOENT, "ENOENT" },
	{ ESRCH, "ESRCH" },	      { EINTR, "EINTR" },
	{ EIO, "EIO" },		      { ENXIO, "ENXIO" },
	{ E2BIG, "E2BIG" },	      { EBADF, "EBADF" },
	{ EAGAIN, "EAGAIN" },	      { ENOMEM, "ENOMEM" },
	{ EACCES, "EACCES" },	      { EFAULT, "EFAULT" },
	{ EBUSY, "EBUSY" },	      { EEXIST, "EEXIST" },
	{ EXDEV, "EXDEV" },	      { ENODEV, "ENODEV" },
	{ ENOTDIR, "ENOTDIR" },	      { EISDIR, "EISDIR" },
	{ EINVAL, "EINVAL" },	      { ENFILE, "ENFILE" },
	{ EMFILE, "EMFILE" },	      { EFBIG, "EFBIG" },
	{ ENOSPC, "ENOSPC" },	      { ESPIPE, "ESPIPE" },
	{ EROFS, "EROFS" },	      { EMLINK, "EMLINK" },
	{ EPIPE, "EPIPE" },	      { ERANGE, "ERANGE" },
	{ EDEADLK, "EDEADLK" },	      { ENAMETOOLONG, "ENAMETOOLONG" },
	{ ENOSYS, "ENOSYS" },	      { ENOTEMPTY, "ENOTEMPTY" },
	{ ELOOP, "ELOOP" },	      { ENODATA, "ENODATA" },
	{ EBADMSG, "EBADMSG" },	      { EOVERFLOW, "EOVERFLOW" },
	{ EMSGSIZE, "EMSGSIZE" },     { ENOTSUP, "ENOTSUP" },
	{ ENOTCONN, "ENOTCONN" },     { ECONNABORTED, "ECONNABORTED" },
	{ ETIMEDOUT, "ETIMEDOUT" },   { ESTALE, "ESTALE" },
	{ EDQUOT, "EDQUOT" },	      { ECANCELED, "ECANCELED" },
	{ ETXTBSY, "ETXTBSY" },	      { ENOTTY, "ENOTTY" },
	/* On Linux EOPNOTSUPP == ENOTSUP: both print as ENOTSUP. */
};

static const char *errname(int e)
{
	static char buf[32];
	size_t i;

	for (i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (errnames[i].num == e)
			return errnames[i].name;
	snprintf(buf, sizeof(buf), "E#%d", e);
	return buf;
}

/* Print the errno of the call that just failed; returns the exit status. */
static int fail(int e)
{
	printf("%s\n", errname(e));
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: fsop OP PATH [ARG...] (see fsop.c)\n");
	return 2;
}

/* Read all of stdin into a malloc'ed buffer; the caller frees it. */
static char *slurp_stdin(size_t *lenp)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	ssize_t n;

	if (!buf)
		return NULL;
	for (;;) {
		if (len == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(0, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*lenp = len;
	return buf;
}

/* close() and report only a failure; returns the exit status to merge. */
static int close_report(int fd)
{
	if (close(fd) < 0) {
		printf("close %s\n", errname(errno));
		return 1;
	}
	return 0;
}

static int op_write(const char *path, int extra_flags, int loop)
{
	size_t len = 0, done = 0;
	char *buf = slurp_stdin(&len);
	int fd, rc = 0;
	ssize_t n;

	if (!buf) {
		perror("fsop: stdin");
		return 2;
	}
	fd = open(path, O_WRONLY | O_APPEND | extra_flags);
	if (fd < 0) {
		rc = fail(errno);
		goto out_free;
	}
	do {
		n = write(fd, buf + done, len - done);
		if (n < 0) {
			rc = fail(errno);
			break;
		}
		printf("OK %zd\n", n);
		done += (size_t)n;
	} while (loop && done < len && n > 0);
	rc |= close_report(fd);
out_free:
	free(buf);
	return rc;
}

static int op_writes(const char *path, int argc, char **argv)
{
	int fd, i, rc = 0;
	ssize_t n;

	fd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0)
		return fail(errno);
	for (i = 0; i < argc; i++) {
		n = write(fd, argv[i], strlen(argv[i]));
		if (n < 0)
			rc = fail(errno);
		else
			printf("OK %zd\n", n);
		fflush(stdout);
	}
	rc |= close_report(fd);
	return rc;
}

static int op_spew(const char *path, const char *bytes_s, const char *chunk_s)
{
	unsigned long long total = strtoull(bytes_s, NULL, 10), sent = 0;
	unsigned long long accepted = 0, okcalls = 0;
	size_t chunk = strtoul(chunk_s, NULL, 10);
	unsigned long long errcount[256] = { 0 };
	char *buf;
	int fd, e, rc = 0;
	ssize_t n;

	if (chunk == 0)
		return usage();
	buf = malloc(chunk);
	if (!buf)
		return 2;
	memset(buf, 'a', chunk);
	fd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0) {
		rc = fail(errno);
		goto out_free;
	}
	while (sent < total) {
		size_t want = total - sent < chunk ? (size_t)(total - sent) : chunk;

		n = write(fd, buf, want);
		if (n < 0) {
			e = errno;
			errcount[e & 255]++;
			rc = 1;
			sent += want; /* a careless writer moves on */
			continue;
		}
		okcalls++;
		accepted += (unsigned long long)n;
		sent += (unsigned long long)n;
	}
	printf("ok=%llu bytes=%llu\n", okcalls, accepted);
	for (e = 1; e < 256; e++)
		if (errcount[e])
			printf("%s=%llu\n", errname(e), errcount[e]);
	rc |= close_report(fd);
out_free:
	free(buf);
	return rc;
}

static int op_open(const char *path, int flags)
{
	int fd = open(path, flags, 0644);

	if (fd < 0)
		return fail(errno);
	printf("OK\n");
	return close_report(fd);
}

static int op_read(const char *path, int flags)
{
	char buf[1 << 16];
	int fd = open(path, O_RDONLY | flags);
	ssize_t n;

	if (fd < 0)
		return fail(errno);
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			fflush(stdout);
			close(fd);
			return fail(e);
		}
		if (n == 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	return close_report(fd);
}

static int op_readonce(const char *path, const char *size_s, int flags)
{
	size_t size = strtoul(size_s, NULL, 10);
	char *buf;
	int fd, rc;
	ssize_t n;

	if (size == 0)
		return usage();
	buf = malloc(size);
	if (!buf)
		return 2;
	fd = open(path, O_RDONLY | flags);
	if (fd < 0) {
		rc = fail(errno);
		goto out_free;
	}
	n = read(fd, buf, size);
	if (n < 0) {
		int e = errno;

		close(fd);
		rc = fail(e);
		goto out_free;
	}
	fwrite(buf, 1, (size_t)n, stdout);
	fflush(stdout);
	rc = close_report(fd);
out_free:
	free(buf);
	return rc;
}

static int op_poll(const char *path, const char *ms_s)
{
	char buf[1 << 16];
	struct pollfd pfd;
	int r, fd = open(path, O_RDONLY | O_NONBLOCK);
	ssize_t n;

	if (fd < 0)
		return fail(errno);
	pfd.fd = fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	do
		r = poll(&pfd, 1, atoi(ms_s));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = errno;

		close(fd);
		return fail(e);
	}
	if (r == 0 || !(pfd.revents & POLLIN)) {
		printf("TIMEOUT\n");
		close(fd);
		return 1;
	}
	printf("POLLIN\n");
	fflush(stdout);
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			fflush(stdout);
			close(fd);
			return fail(e);
		}
		if (n == 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	fflush(stdout);
	return close_report(fd);
}

static int result(int r)
{
	if (r < 0)
		return fail(errno);
	printf("OK\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *op, *path;
	struct stat st;
	int fd, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		return usage();
	op = argv[1];
	path = argv[2];

	if (!strcmp(op, "write"))
		return op_write(path, 0, 0);
	if (!strcmp(op, "write-nb"))
		return op_write(path, O_NONBLOCK, 0);
	if (!strcmp(op, "writeall"))
		return op_write(path, 0, 1);
	if (!strcmp(op, "writes"))
		return op_writes(path, argc - 3, argv + 3);
	if (!strcmp(op, "spew") && argc == 5)
		return op_spew(path, argv[3], argv[4]);
	if (!strcmp(op, "open-read"))
		return op_open(path, O_RDONLY);
	if (!strcmp(op, "open-write"))
		return op_open(path, O_WRONLY);
	if (!strcmp(op, "open-rdwr"))
		return op_open(path, O_RDWR);
	if (!strcmp(op, "read"))
		return op_read(path, 0);
	if (!strcmp(op, "read-nb"))
		return op_read(path, O_NONBLOCK);
	if (!strcmp(op, "readonce") && argc == 4)
		return op_readonce(path, argv[3], 0);
	if (!strcmp(op, "readonce-nb") && argc == 4)
		return op_readonce(path, argv[3], O_NONBLOCK);
	if (!strcmp(op, "poll") && argc == 4)
		return op_poll(path, argv[3]);
	if (!strcmp(op, "creat"))
		return op_open(path, O_WRONLY | O_CREAT | O_EXCL);
	if (!strcmp(op, "truncate") && argc == 4)
		return result(truncate(path, strtoll(argv[3], NULL, 10)));
	if (!strcmp(op, "ftruncate") && argc == 4) {
		fd = open(path, O_WRONLY);
		if (fd < 0)
			return fail(errno);
		rc = result(ftruncate(fd, strtoll(argv[3], NULL, 10)));
		return rc | close_report(fd);
	}
	if (!strcmp(op, "unlink"))
		return result(unlink(path));
	if (!strcmp(op, "rename") && argc == 4)
		return result(rename(path, argv[3]));
	if (!strcmp(op, "mkdir"))
		return result(mkdir(path, 0755));
	if (!strcmp(op, "rmdir"))
		return result(rmdir(path));
	if (!strcmp(op, "stat"))
		return result(stat(path, &st));
	return usage();
}
