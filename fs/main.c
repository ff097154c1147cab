/*
 * main.c - command line, mount, and the FUSE session loop.
 *
 *     mqfs [-f] [-o OPT[,OPT...]] DATA_DIR MOUNTPOINT
 *
 * Our options (config.h) are taken out of -o; the rest (allow_other,
 * max_threads, ...) go to libfuse, which refuses any it does not know. The
 * DATA_DIR is loaded and recovered before the mount and before detaching,
 * so that a bad directory or option is reported and nothing is mounted.
 */
#define _GNU_SOURCE
#include "mqfs.h"
#include "../replication/repl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

struct args {
	struct cfg_node node;
	char *data_dir;		/* owned */
	int bad;		/* an option of ours was refused */
	int allow_other;
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct args *a = data;
	char name[64];
	const char *eq, *why;

	(void)out;
	if (key == FUSE_OPT_KEY_NONOPT) {
		if (a->data_dir)
			return 1;	/* the mountpoint: libfuse's */
		a->data_dir = strdup(arg);
		return 0;
	}
	if (key != FUSE_OPT_KEY_OPT || arg[0] == '-')
		return 1;
	if (!strcmp(arg, "allow_other"))
		a->allow_other = 1;
	eq = strchr(arg, '=');
	if (!eq || (size_t)(eq - arg) >= sizeof(name))
		return 1;
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	if (!cfg_node_known(name))
		return 1;
	if (cfg_node_set(&a->node, name, eq + 1, &why) < 0) {
		fprintf(stderr, "mqfs: option %s: %s\n", arg, why);
		a->bad = 1;
	}
	return 0;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-f] [-o OPT[,OPT...]] DATA_DIR MOUNTPOINT\n"
		"options: partitions=N sync=always|batch|none sync_ms=N max_message=BYTES\n"
		"  retention_ms=N retention_bytes=N segment_bytes=N max_bytes=N\n"
		"  overflow=block|reject max_deliveries=N ack_wait_ms=N retry_backoff_ms=N\n"
		"  peers=PATH[:PATH...] acks=leader|all role=leader|follower min_insync=N\n"
		"  isr_lag_ms=N, and libfuse's (allow_other, max_threads=N, ...)\n"
		"unmount: fusermount3 -u MOUNTPOINT\n", prog);
}

/*
 * Every segment keeps two descriptors open and every group its journal:
 * a server's soft limit of 1024 is reached by a few hundred groups or
 * partitions. Take what the hard limit allows.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts;
	struct fuse_loop_config *lc;
	struct fuse_session *se;
	struct args a = { 0 };
	char dir[PATH_MAX];
	struct repl *r = NULL;
	struct mq *m = NULL;
	int rc = 1;

	memset(&opts, 0, sizeof(opts));
	cfg_node_defaults(&a.node);
	if (fuse_opt_parse(&args, &a, NULL, opt_proc) < 0 || a.bad)
		goto out_args;
	if (fuse_parse_cmdline(&args, &opts) != 0)
		goto out_args;
	if (opts.show_help || opts.show_version || !a.data_dir || !opts.mountpoint) {
		usage(argv[0]);
		rc = opts.show_help || opts.show_version ? 0 : 2;
		goto out_args;
	}
	/* The daemon changes directory to / when it detaches. */
	if ((mkdir(a.data_dir, 0755) < 0 && errno != EEXIST) || !realpath(a.data_dir, dir)) {
		fprintf(stderr, "mqfs: %s: %s\n", a.data_dir, strerror(errno));
		goto out_args;
	}
	raise_fd_limit();
	rc = mq_open(dir, &a.node, &m);
	if (rc < 0) {
		fprintf(stderr, "mqfs: %s: %s\n", dir,
			rc == -EBUSY ? "in use by another mqfs" : strerror(-rc));
		rc = 1;
		goto out_args;
	}
	rc = 1;
	/* With other users allowed in, the kernel enforces the file modes. */
	if (a.allow_other && fuse_opt_add_arg(&args, "-odefault_permissions") < 0)
		goto out_mq;
	if (fuse_opt_add_arg(&args, "-ofsname=mqfs,subtype=mqfs") < 0)
		goto out_mq;
	se = fuse_session_new(&args, &mqfs_ops, sizeof(mqfs_ops), m);
	if (!se)
		goto out_mq;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, opts.mountpoint) != 0)
		goto out_signals;
	mq_set_ready(m, mqfs_ready, m);
	if (repl_open(m, &r) < 0)
		goto out_unmount;
	mqfs_set_repl(r);
	if (fuse_daemonize(opts.foreground) != 0 || mq_start(m) < 0 || repl_start(r) < 0)
		goto out_unmount;
	if (opts.singlethread) {
		rc = fuse_session_loop(se);
	} else {
		lc = fuse_loop_cfg_create();
		if (!lc)
			goto out_unmount;
		fuse_loop_cfg_set_max_threads(lc, opts.max_threads);
		fuse_loop_cfg_set_clone_fd(lc, (unsigned int)opts.clone_fd);
		if (opts.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lc, opts.max_idle_threads);
		rc = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	rc = rc != 0;
out_unmount:
	/* Waiting acks=all writers get EIO, then the last group commit, while
	 * the session can still carry the replies. */
	repl_stop(r);
	mq_close(m);
	m = NULL;
	repl_free(r);
	r = NULL;
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_mq:
	repl_stop(r);
	mq_close(m);
	repl_free(r);
out_args:
	free(opts.mountpoint);
	free(a.data_dir);
	fuse_opt_free_args(&args);
	return rc;
}
