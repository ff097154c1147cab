/*
 * floor.c - the "FUSE floor": the cheapest useful FUSE file, as a baseline
 * for what FUSE itself costs in scripts/bench.sh.
 *
 * The root holds one regular file `f`. Every WRITE is appended to
 * BACKING_FILE (the offset is ignored, as mqfs does); every READ is a
 * pread() from it into a reused per-thread buffer. Same settings as mqfs
 * partitions: FOPEN_DIRECT_IO, attr timeout 0, exact st_size, st_blksize
 * 1 MiB, multi-threaded loop with libfuse's defaults.
 *
 * usage: floor [-f] [-o OPT,...] BACKING_FILE MOUNTPOINT
 * build: cc -std=c11 -Wall -Wextra -Werror -O2 floor.c $(pkg-config --cflags --libs fuse3)
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_INO 2

static int backing = -1;
static _Thread_local char *tbuf;	/* per-thread read buffer, reused */
static _Thread_local size_t tcap;

static int fill_attr(fuse_ino_t ino, struct stat *st)
{
	struct stat b;

	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_blksize = 1 << 20;	/* cat reads and writes 1 MiB */
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (ino != FILE_INO)
		return ENOENT;
	if (fstat(backing, &b) < 0)
		return errno;
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_size = b.st_size;	/* exact: the bytes readable now */
	st->st_atim = b.st_atim;
	st->st_mtim = b.st_mtim;
	st->st_ctim = b.st_ctim;
	return 0;
}

static void fl_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = { .ino = FILE_INO, .attr_timeout = 0.0, .entry_timeout = 1.0 };
	int err = parent == FUSE_ROOT_ID && strcmp(name, "f") == 0 ? fill_attr(FILE_INO, &e.attr) : ENOENT;

	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void fl_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int err = fill_attr(ino, &st);

	(void)fi;
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, 0.0);
}

static void fl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != FILE_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void fl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	(void)ino;
	(void)fi;
	if (size > tcap) {
		free(tbuf);
		tbuf = malloc(size);
		tcap = tbuf ? size : 0;
		if (!tbuf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	n = pread(backing, tbuf, size, off);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, tbuf, (size_t)n);
}

static void fl_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	size_t done = 0;

	(void)ino;
	(void)off;	/* always append */
	(void)fi;
	while (done < size) {
		ssize_t n = write(backing, buf + done, size - done);	/* O_APPEND */

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fuse_reply_err(req, errno);
			return;
		}
		done += (size_t)n;
	}
	fuse_reply_write(req, size);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = fl_lookup,
	.getattr = fl_getattr,
	.open = fl_open,
	.read = fl_read,
	.write = fl_write,
};

int main(int argc, char *argv[])
{
	struct fuse_cmdline_opts opts = { 0 };
	struct fuse_loop_config *cfg;
	struct fuse_session *se;
	const char *path = NULL;
	int ret = 1;

	/* BACKING_FILE is the first non-option argument; libfuse parses the rest. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-o") == 0) {
			i++;
			continue;
		}
		if (argv[i][0] == '-')
			continue;
		path = argv[i];
		memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof *argv);
		argc--;
		break;
	}

	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);

	if (fuse_parse_cmdline(&args, &opts) != 0)
		return 1;
	if (!path || !opts.mountpoint || opts.show_help) {
		fprintf(stderr, "usage: %s [-f] [-o OPT,...] BACKING_FILE MOUNTPOINT\n", argv[0]);
		goto out_args;
	}
	backing = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (backing < 0) {
		fprintf(stderr, "floor: %s: %s\n", path, strerror(errno));
		goto out_args;
	}
	se = fuse_session_new(&args, &ops, sizeof ops, NULL);
	if (!se)
		goto out_fd;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, opts.mountpoint) != 0)
		goto out_signals;
	fuse_daemonize(opts.foreground);

	cfg = fuse_loop_cfg_create();
	if (cfg) {
		fuse_loop_cfg_set_clone_fd(cfg, (unsigned)opts.clone_fd);
		fuse_loop_cfg_set_max_threads(cfg, opts.max_threads);
		if (opts.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(cfg, opts.max_idle_threads);
		ret = fuse_session_loop_mt(se, cfg) != 0;
		fuse_loop_cfg_destroy(cfg);
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_fd:
	close(backing);
out_args:
	free(opts.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
