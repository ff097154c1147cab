/*
 * ops.c - the FUSE low-level operations of mqfs.
 *
 * Every regular file is opened with direct_io: sizes change behind the
 * kernel's back (appends, commits, generated text), and with direct_io every
 * read() reaches us, st_size is never trusted for reads, and writes arrive
 * unsplit with no page-cache round trips (FUSE-NOTES sections 1, 2, 10).
 * Attributes are never cached (timeout 0) so that stat, ls -l and tail -f
 * see growth at once; names are cached for a second.
 */
#define _GNU_SOURCE
#include "mqfs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../core/core.h"
#include "../core/dlq.h"
#include "../core/group.h"
#include "../core/lease.h"
#include "../core/partition.h"
#include "../core/producer.h"
#include "../core/replica.h"
#include "../core/topic.h"
#include "../replication/repl.h"

#define ENTRY_TIMEOUT 1.0
#define BLKSIZE (1 << 20)	/* cat and cp then move 1 MiB per call */

/* Per open file (fi->fh). Owned by the open; freed in release. */
struct fh {
	enum mqfs_kind kind;
	struct topic *t;	/* reference, or NULL for the root */
	struct cg *g;		/* reference, or NULL */
	uint32_t part;
	uint64_t base;		/* PART, GPART: byte position of file offset 0 */
	struct prod *prod;	/* writable PUBLISH and PART */
	char *text;		/* snapshot files and directory listings; the
				 * leased message of NEXT; the rest of a long
				 * message of BATCH */
	size_t len;
	size_t cap;		/* BATCH: of text */
	size_t pend;		/* BATCH: text[pend, len) still to be read */
	uint64_t consumer;	/* NEXT, BATCH: the lease identity */
	int taken;		/* NEXT: text holds the message */
	uint64_t dead;		/* DEAD: the letter's number */
	struct fuse_pollhandle *ph;	/* NEXT, BATCH; park_lock */
	struct fh *poll_prev, *poll_next;	/* on the polled list; park_lock */
	int polled;		/* park_lock */
	char *line;		/* ACK, NACK, REDRIVE: a line cut by the end
				 * of a write, completed by the next one */
	size_t line_len;	/* bytes of it; the kernel serializes the
				 * writes of one file, so no lock */
	struct replica_rx *rx;	/* REPL opened for writing: the stream */
};

/* Longest line kept between writes of ack, nack and redrive: an id and a
 * nack reason. */
#define LINE_MAX_KEPT (LEASE_REASON_MAX + 64)

/* A write or release waiting for core to finish it (maybe on another
 * thread), and then, under acks=all, for the replicator. */
struct wreq {
	struct prod_req rq;	/* first: rq is the wreq */
	struct repl_wait rw;	/* acks=all */
	fuse_req_t req;
	struct fh *h;		/* release: the handle to free afterwards */
	struct topic *t;	/* write: borrowed from the open file */
	size_t n;		/* write: bytes accepted */
	struct wreq *prev, *next;	/* writes in flight; inflight_lock */
};

/*
 * Writes in flight, so that an INTERRUPT can find its request by pointer
 * (never through the callback's data: the write may have completed and been
 * freed meanwhile). Lock order: inflight_lock, then core's locks.
 */
static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wreq *inflight;

/*
 * Reads of next and batch with nothing to hand out are parked here, not
 * in a worker thread (FUSE-NOTES section 3): mqfs_ready answers them when
 * messages arrive, on whatever thread made them available. Handles whose
 * poller waits are on the polled list. Lock order: park_lock, then core's
 * locks (a lease is taken under it).
 */
struct parked {
	fuse_req_t req;
	struct fh *h;
	size_t size;
	off_t off;
	struct parked *prev, *next;	/* park_lock */
};
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked *parked;
static struct fh *polled;

static struct mq *mq_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The replicator; set before the session runs, NULL in none. */
static struct repl *the_repl;

void mqfs_set_repl(struct repl *r)
{
	the_repl = r;
}

/* A follower's state comes only from its leader (SPEC section 6). */
static int changes_allowed(struct mq *m)
{
	return mq_role(m) == CFG_ROLE_LEADER ? 0 : -EROFS;
}

static int is_node_file(enum mqfs_kind k)
{
	return k >= MQFS_MQDIR && k <= MQFS_REPL;
}

/* The one place where core's -errno becomes a FUSE reply. */
static void mqfs_reply_err(fuse_req_t req, int rc)
{
	fuse_reply_err(req, rc < 0 ? -rc : rc);
}

static int is_dir(enum mqfs_kind k)
{
	return k == MQFS_ROOT || k == MQFS_TOPIC || k == MQFS_GROUPS ||
	       k == MQFS_GROUP || k == MQFS_OFFSETS || k == MQFS_DLQ ||
	       k == MQFS_DLQG || k == MQFS_MQDIR;
}

/* The group holding dead letter number dead (copied to *e if not NULL);
 * a reference, or NULL. */
static struct cg *dead_group(struct topic *t, uint64_t dead, struct dlq_entry *e)
{
	struct dlq_entry tmp;
	uint32_t after = 0;
	struct cg *g;

	while ((g = topic_group_next(t, after))) {
		after = cg_id(g);
		if (lease_dead_find(cg_lease(g), dead, NULL, e ? e : &tmp) == 0)
			return g;
		cg_unref(g);
	}
	return NULL;
}

/*
 * Find the topic and group an inode names; -ENOENT if either is gone or the
 * partition does not exist. References go to the caller.
 */
static int resolve(struct mq *m, struct mqfs_id id, struct topic **tp, struct cg **gp)
{
	struct topic *t = NULL;
	struct cg *g = NULL;

	*tp = NULL;
	*gp = NULL;
	if (id.kind < MQFS_ROOT || id.kind >= MQFS_NKINDS)
		return -ENOENT;
	if (id.kind == MQFS_ROOT || is_node_file(id.kind))
		return id.tid == 0 ? 0 : -ENOENT;
	t = mq_topic_get(m, id.tid);
	if (!t)
		return -ENOENT;
	if (id.kind == MQFS_DEAD) {
		g = dead_group(t, id.dead, NULL);
		if (!g)
			goto out_noent;
	} else if (id.gid) {
		g = topic_group_get(t, id.gid);
		if (!g)
			goto out_noent;
	}
	if ((id.kind == MQFS_PART || id.kind == MQFS_GPART || id.kind == MQFS_OFFSET) &&
	    id.part >= topic_nparts(t))
		goto out_noent;
	*tp = t;
	*gp = g;
	return 0;
out_noent:
	cg_unref(g);
	topic_unref(t);
	return -ENOENT;
}

static int offset_text(struct cg *g, uint32_t part, char *buf, size_t cap)
{
	return snprintf(buf, cap, "%" PRIu64 "\n", cg_committed(g, part));
}

/* Mount time: the times of everything that has no time of its own. Set in
 * op_init, before any other operation. */
static time_t started;

/*
 * Where the file of a partition (MQFS_PART) or of a group's view of it
 * (MQFS_GPART) starts: the first retained byte, or the group's committed
 * offset. Also returns the partition's counters.
 */
static int file_start(struct mqfs_id id, struct topic *t, struct cg *g,
		      struct part_stat *ps, uint64_t *pos)
{
	part_stat(topic_part(t, id.part), ps);
	*pos = ps->start_pos;
	return id.kind == MQFS_GPART ? topic_group_pos(t, g, id.part, pos) : 0;
}

static int fill_stat(struct mqfs_id id, struct topic *t, struct cg *g,
		     struct stat *st)
{
	struct part_stat ps;
	char text[512];
	uint64_t pos;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	st->st_ino = id.kind == MQFS_DEAD ? mqfs_ino_dead(id.tid, id.dead) :
		     mqfs_ino(id.kind, id.tid, id.gid, id.part);
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_blksize = BLKSIZE;
	st->st_atime = st->st_mtime = st->st_ctime = started;
	if (is_dir(id.kind)) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	st->st_nlink = 1;
	switch (id.kind) {
	case MQFS_PUBLISH:
	case MQFS_ACK:
	case MQFS_NACK:
	case MQFS_REDRIVE:
		st->st_mode = S_IFREG | 0200;
		break;
	case MQFS_ROLE:
		st->st_mode = S_IFREG | 0644;
		break;
	case MQFS_REPL:
		st->st_mode = S_IFREG | 0600;
		break;
	case MQFS_DEAD: {
		struct dlq_entry e;

		st->st_mode = S_IFREG | 0644;	/* rm without a prompt */
		rc = lease_dead_find(cg_lease(g), id.dead, NULL, &e);
		if (rc < 0)
			break;
		st->st_size = (off_t)e.len + 1;
		/* When it failed: `ls -ltr` lists them in failure order. */
		st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
			(time_t)(e.failed_at_ms / 1000);
		st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = st->st_atim.tv_nsec =
			(long)(e.failed_at_ms % 1000) * 1000000;
		break;
	}
	case MQFS_PART:
	case MQFS_GPART:
		st->st_mode = S_IFREG | (id.kind == MQFS_PART ? 0644 : 0444);
		rc = file_start(id, t, g, &ps, &pos);
		/* pos may be newer than ps: a commit in between */
		st->st_size = pos < ps.end_pos ? (off_t)(ps.end_pos - pos) : 0;
		if (ps.last_ts)
			st->st_mtime = st->st_ctime = (time_t)(ps.last_ts / 1000);
		break;
	case MQFS_CONFIG:
		st->st_mode = S_IFREG | 0644;
		rc = topic_config_text(t, text, sizeof(text));
		st->st_size = rc > 0 ? rc : 0;
		break;
	case MQFS_OFFSET:
		st->st_mode = S_IFREG | 0644;
		st->st_size = offset_text(g, id.part, text, sizeof(text));
		break;
	default:	/* stats: generated at open, size unknown until then */
		st->st_mode = S_IFREG | 0444;
		break;
	}
	st->st_blocks = (st->st_size + 511) / 512;
	return rc < 0 ? rc : 0;
}

static void reply_entry(fuse_req_t req, struct mqfs_id id, struct topic *t,
			struct cg *g)
{
	struct fuse_entry_param e;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = fill_stat(id, t, g, &e.attr);
	if (rc < 0) {
		mqfs_reply_err(req, rc);
		return;
	}
	e.ino = e.attr.st_ino;
	e.attr_timeout = 0.0;
	e.entry_timeout = ENTRY_TIMEOUT;
	fuse_reply_entry(req, &e);
}

/* "0".."N-1" without sign, blanks or leading zeros; -1 if not a number. */
static int64_t part_name(const char *name)
{
	int64_t v = 0;

	if (!name[0] || (name[0] == '0' && name[1]) || strlen(name) > 4)
		return -1;
	for (const char *p = name; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mq *m = mq_of(req);
	struct mqfs_id id = mqfs_id(parent), c = id;
	struct topic *t, *ct = NULL;
	struct cg *g, *cg = NULL;
	int64_t p = part_name(name);
	int rc = resolve(m, id, &t, &g);

	if (rc < 0) {
		mqfs_reply_err(req, rc);
		return;
	}
	rc = -ENOENT;
	switch (id.kind) {
	case MQFS_ROOT:
		if (!strcmp(name, ".mq")) {
			c.kind = MQFS_MQDIR;
			rc = 0;
			break;
		}
		ct = mq_topic_find(m, name);
		if (ct) {
			c = (struct mqfs_id){ MQFS_TOPIC, 0, 0, topic_id(ct), 0 };
			rc = 0;
		}
		break;
	case MQFS_MQDIR:
		rc = 0;
		if (!strcmp(name, "role"))
			c.kind = MQFS_ROLE;
		else if (!strcmp(name, "epoch"))
			c.kind = MQFS_EPOCH;
		else if (!strcmp(name, "replicas"))
			c.kind = MQFS_REPLICAS;
		else if (!strcmp(name, "repl"))
			c.kind = MQFS_REPL;
		else
			rc = -ENOENT;
		break;
	case MQFS_TOPIC:
		rc = 0;
		if (!strcmp(name, "publish"))
			c.kind = MQFS_PUBLISH;
		else if (!strcmp(name, "config"))
			c.kind = MQFS_CONFIG;
		else if (!strcmp(name, "stats"))
			c.kind = MQFS_TSTATS;
		else if (!strcmp(name, "groups"))
			c.kind = MQFS_GROUPS;
		else if (!strcmp(name, "dlq"))
			c.kind = MQFS_DLQ;
		else if (p >= 0 && p < topic_nparts(t))
			c = (struct mqfs_id){ MQFS_PART, (uint32_t)p, 0, id.tid, 0 };
		else
			rc = -ENOENT;
		break;
	case MQFS_GROUPS:
	case MQFS_DLQ:
		cg = topic_group_find(t, name);
		if (cg) {
			c = (struct mqfs_id){ id.kind == MQFS_GROUPS ? MQFS_GROUP : MQFS_DLQG,
					      0, cg_id(cg), id.tid, 0 };
			rc = 0;
		}
		break;
	case MQFS_DLQG: {
		struct dlq_entry e;

		if (!strcmp(name, "redrive")) {
			c.kind = MQFS_REDRIVE;
			rc = 0;
		} else if (lease_dead_find(cg_lease(g), 0, name, &e) == 0) {
			c = mqfs_id(mqfs_ino_dead(id.tid, e.id));
			rc = 0;
		}
		break;
	}
	case MQFS_GROUP:
		rc = 0;
		if (!strcmp(name, "offsets"))
			c.kind = MQFS_OFFSETS;
		else if (!strcmp(name, "stats"))
			c.kind = MQFS_GSTATS;
		else if (!strcmp(name, "next"))
			c.kind = MQFS_NEXT;
		else if (!strcmp(name, "batch"))
			c.kind = MQFS_BATCH;
		else if (!strcmp(name, "ack"))
			c.kind = MQFS_ACK;
		else if (!strcmp(name, "nack"))
			c.kind = MQFS_NACK;
		else if (p >= 0 && p < topic_nparts(t))
			c = (struct mqfs_id){ MQFS_GPART, (uint32_t)p, id.gid, id.tid, 0 };
		else
			rc = -ENOENT;
		break;
	case MQFS_OFFSETS:
		if (p >= 0 && p < topic_nparts(t)) {
			c = (struct mqfs_id){ MQFS_OFFSET, (uint32_t)p, id.gid, id.tid, 0 };
			rc = 0;
		}
		break;
	default:
		rc = -ENOTDIR;
	}
	if (rc < 0)
		mqfs_reply_err(req, rc);
	else
		reply_entry(req, c, ct ? ct : t, cg ? cg : g);
	cg_unref(cg);
	if (ct)
		topic_unref(ct);
	cg_unref(g);
	if (t)
		topic_unref(t);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mqfs_id id = mqfs_id(ino);
	struct topic *t;
	struct cg *g;
	struct stat st;
	int rc = resolve(mq_of(req), id, &t, &g);

	/* fi is not used: the kernel sends no file handle for fstat, so an
	 * open file's size is the partition's, like everyone's. */
	(void)fi;
	if (rc == 0)
		rc = fill_stat(id, t, g, &st);
	if (rc < 0)
		mqfs_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, 0.0);
	cg_unref(g);
	if (t)
		topic_unref(t);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	(void)attr;
	/* Logs are append-only: truncate and ftruncate are refused. O_TRUNC
	 * never gets here (ATOMIC_O_TRUNC) and is ignored in open. Times are
	 * ignored so that touch works; modes and owners are fixed. */
	if (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
		      FUSE_SET_ATTR_GID)) {
		mqfs_reply_err(req, -EPERM);
		return;
	}
	op_getattr(req, ino, fi);
}

static void free_fh(struct fh *h)
{
	if (!h)
		return;
	prod_close(h->prod);
	replica_rx_close(h->rx);
	cg_unref(h->g);
	if (h->t)
		topic_unref(h->t);
	free(h->text);
	free(h->line);
	free(h);
}

/*
 * Per-thread reply buffer, reused: a partition read is one pread into it
 * and one reply, with no allocation per request. Text files and listings
 * are copied into it too before the reply: the reader can get its bytes,
 * close, and have another thread free the handle (release) before our
 * writev to /dev/fuse has returned.
 */
static pthread_key_t rbuf_key;
static pthread_once_t rbuf_once = PTHREAD_ONCE_INIT;

struct rbuf {
	size_t cap;
	char data[];
};

static void rbuf_init(void)
{
	(void)pthread_key_create(&rbuf_key, free);
}

static char *rbuf_get(size_t size)
{
	struct rbuf *b;

	pthread_once(&rbuf_once, rbuf_init);
	b = pthread_getspecific(rbuf_key);
	if (!b || b->cap < size) {
		struct rbuf *nb = realloc(b, sizeof(*nb) + size);

		if (!nb)
			return NULL;
		nb->cap = size;
		b = nb;
		(void)pthread_setspecific(rbuf_key, b);
	}
	return b->data;
}

/* Reply with a copy of buf (see rbuf_get). */
static void reply_copy(fuse_req_t req, const char *buf, size_t len)
{
	char *copy = rbuf_get(len);

	if (!copy) {
		mqfs_reply_err(req, -ENOMEM);
		return;
	}
	memcpy(copy, buf, len);
	fuse_reply_buf(req, copy, len);
}

/* ---- directories ---- */

static int add_entry(fuse_req_t req, struct fh *h, size_t *cap, const char *name,
		     fuse_ino_t ino, int dir)
{
	struct stat st = { .st_ino = ino, .st_mode = dir ? S_IFDIR : S_IFREG };
	size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);

	if (h->len + need > *cap) {
		size_t nc = (*cap ? *cap * 2 : 4096) + need;
		char *nt = realloc(h->text, nc);

		if (!nt)
			return -ENOMEM;
		h->text = nt;
		*cap = nc;
	}
	fuse_add_direntry(req, h->text + h->len, *cap - h->len, name, &st,
			  (off_t)(h->len + need));
	h->len += need;
	return 0;
}

static int list_parts(fuse_req_t req, struct fh *h, size_t *cap, struct mqfs_id id,
		      enum mqfs_kind kind)
{
	uint32_t n = topic_nparts(h->t);
	int rc = 0;

	for (uint32_t p = 0; rc == 0 && p < n; p++) {
		char name[16];

		snprintf(name, sizeof(name), "%" PRIu32, p);
		rc = add_entry(req, h, cap, name, mqfs_ino(kind, id.tid, id.gid, p), 0);
	}
	return rc;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mq *m = mq_of(req);
	struct mqfs_id id = mqfs_id(ino);
	struct fh *h = calloc(1, sizeof(*h));
	size_t cap = 0;
	int rc;

	if (!h) {
		mqfs_reply_err(req, -ENOMEM);
		return;
	}
	h->kind = id.kind;
	rc = resolve(m, id, &h->t, &h->g);
	if (rc == 0)
		rc = add_entry(req, h, &cap, ".", ino, 1);
	if (rc == 0)
		rc = add_entry(req, h, &cap, "..", FUSE_ROOT_ID, 1);
	if (rc < 0)
		goto out_err;
	switch (id.kind) {
	case MQFS_ROOT: {
		struct topic *t;
		uint32_t after = 0;

		rc = add_entry(req, h, &cap, ".mq", mqfs_ino(MQFS_MQDIR, 0, 0, 0), 1);
		while (rc == 0 && (t = mq_topic_next(m, after))) {
			after = topic_id(t);
			rc = add_entry(req, h, &cap, topic_name(t),
				       mqfs_ino(MQFS_TOPIC, after, 0, 0), 1);
			topic_unref(t);
		}
		break;
	}
	case MQFS_TOPIC:
		rc = add_entry(req, h, &cap, "publish", mqfs_ino(MQFS_PUBLISH, id.tid, 0, 0), 0);
		if (rc == 0)
			rc = add_entry(req, h, &cap, "config", mqfs_ino(MQFS_CONFIG, id.tid, 0, 0), 0);
		if (rc == 0)
			rc = add_entry(req, h, &cap, "stats", mqfs_ino(MQFS_TSTATS, id.tid, 0, 0), 0);
		if (rc == 0)
			rc = add_entry(req, h, &cap, "groups", mqfs_ino(MQFS_GROUPS, id.tid, 0, 0), 1);
		if (rc == 0)
			rc = add_entry(req, h, &cap, "dlq", mqfs_ino(MQFS_DLQ, id.tid, 0, 0), 1);
		if (rc == 0)
			rc = list_parts(req, h, &cap, id, MQFS_PART);
		break;
	case MQFS_GROUPS:
	case MQFS_DLQ: {
		enum mqfs_kind k = id.kind == MQFS_GROUPS ? MQFS_GROUP : MQFS_DLQG;
		struct cg *g;
		uint32_t after = 0;

		while (rc == 0 && (g = topic_group_next(h->t, after))) {
			after = cg_id(g);
			rc = add_entry(req, h, &cap, cg_name(g),
				       mqfs_ino(k, id.tid, after, 0), 1);
			cg_unref(g);
		}
		break;
	}
	case MQFS_GROUP: {
		static const struct { const char *name; enum mqfs_kind kind; int dir; } files[] = {
			{ "offsets", MQFS_OFFSETS, 1 }, { "stats", MQFS_GSTATS, 0 },
			{ "next", MQFS_NEXT, 0 }, { "batch", MQFS_BATCH, 0 },
			{ "ack", MQFS_ACK, 0 }, { "nack", MQFS_NACK, 0 },
		};

		for (size_t i = 0; rc == 0 && i < sizeof(files) / sizeof(files[0]); i++)
			rc = add_entry(req, h, &cap, files[i].name,
				       mqfs_ino(files[i].kind, id.tid, id.gid, 0), files[i].dir);
		if (rc == 0)
			rc = list_parts(req, h, &cap, id, MQFS_GPART);
		break;
	}
	case MQFS_DLQG: {
		struct dlq_entry e;
		uint64_t after = 0;

		rc = add_entry(req, h, &cap, "redrive", mqfs_ino(MQFS_REDRIVE, id.tid, id.gid, 0), 0);
		/* In failure order: `ls -U` and `find` show it as it is. */
		while (rc == 0 && lease_dead_next(cg_lease(h->g), after, &e) == 0) {
			char name[48];

			after = e.id;
			snprintf(name, sizeof(name), "%" PRIu32 ":%" PRIu64, e.part, e.off);
			rc = add_entry(req, h, &cap, name, mqfs_ino_dead(id.tid, e.id), 0);
		}
		break;
	}
	case MQFS_OFFSETS:
		rc = list_parts(req, h, &cap, id, MQFS_OFFSET);
		break;
	case MQFS_MQDIR: {
		static const struct { const char *name; enum mqfs_kind kind; } files[] = {
			{ "role", MQFS_ROLE }, { "epoch", MQFS_EPOCH },
			{ "replicas", MQFS_REPLICAS }, { "repl", MQFS_REPL },
		};

		for (size_t i = 0; rc == 0 && i < sizeof(files) / sizeof(files[0]); i++)
			rc = add_entry(req, h, &cap, files[i].name,
				       mqfs_ino(files[i].kind, 0, 0, 0), 0);
		break;
	}
	default:
		rc = -ENOTDIR;
	}
	if (rc < 0)
		goto out_err;
	fi->fh = (uintptr_t)h;
	fuse_reply_open(req, fi);
	return;
out_err:
	free_fh(h);
	mqfs_reply_err(req, rc);
}

/*
 * Serve [off, off + size) of a handle's text (a generated file or a
 * directory listing). A listing may end in a cut entry: the kernel drops it
 * and asks again from the offset of the last whole one.
 */
static void reply_text(fuse_req_t req, const struct fh *h, off_t off, size_t size)
{
	size_t o = (size_t)off < h->len ? (size_t)off : h->len;

	reply_copy(req, h->text + o, size < h->len - o ? size : h->len - o);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	reply_text(req, (struct fh *)(uintptr_t)fi->fh, off, size);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	free_fh((struct fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct mq *m = mq_of(req);
	struct mqfs_id id = mqfs_id(parent);
	struct topic *t, *ct;
	struct cg *g, *cg;
	int rc = resolve(m, id, &t, &g);

	(void)mode;
	if (rc == 0 && (id.kind == MQFS_ROOT || id.kind == MQFS_GROUPS))
		rc = changes_allowed(m);
	if (rc < 0)
		goto out;
	if (id.kind == MQFS_ROOT) {
		rc = mq_topic_create(m, name);
		ct = rc < 0 ? NULL : mq_topic_find(m, name);
		if (ct) {
			reply_entry(req, (struct mqfs_id){ MQFS_TOPIC, 0, 0, topic_id(ct), 0 }, ct, NULL);
			topic_unref(ct);
			goto out_put;
		}
	} else if (id.kind == MQFS_GROUPS) {
		rc = topic_group_create(t, name);
		cg = rc < 0 ? NULL : topic_group_find(t, name);
		if (cg) {
			reply_entry(req, (struct mqfs_id){ MQFS_GROUP, 0, cg_id(cg), id.tid, 0 }, t, cg);
			cg_unref(cg);
			goto out_put;
		}
	} else {
		rc = -EPERM;
	}
	if (rc == 0)
		rc = -ENOENT;	/* deleted again before we could answer */
out:
	mqfs_reply_err(req, rc);
out_put:
	cg_unref(g);
	if (t)
		topic_unref(t);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mq *m = mq_of(req);
	struct mqfs_id id = mqfs_id(parent);
	struct topic *t;
	struct cg *g;
	int rc = resolve(m, id, &t, &g);

	if (rc == 0 && (id.kind == MQFS_ROOT || id.kind == MQFS_GROUPS))
		rc = changes_allowed(m);
	if (rc == 0) {
		if (id.kind == MQFS_ROOT)
			rc = mq_topic_delete(m, name);
		else if (id.kind == MQFS_GROUPS)
			rc = topic_group_delete(t, name);
		else
			rc = -EPERM;
	}
	mqfs_reply_err(req, rc);
	cg_unref(g);
	if (t)
		topic_unref(t);
}

/* Names are made by mkdir only, and removed by rmdir only. */
static void op_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d)
{
	(void)p; (void)n; (void)m; (void)d;
	mqfs_reply_err(req, -EPERM);
}

static void op_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m,
		      struct fuse_file_info *fi)
{
	(void)p; (void)n; (void)m; (void)fi;
	mqfs_reply_err(req, -EPERM);
}

/* Only dead letters can be removed: rm T/dlq/G/P:OFF discards one. */
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mqfs_id id = mqfs_id(parent);
	struct topic *t;
	struct cg *g;
	int rc = resolve(mq_of(req), id, &t, &g);

	if (rc == 0)
		rc = id.kind != MQFS_DLQG || !strcmp(name, "redrive") ? -EPERM :
		     changes_allowed(mq_of(req));
	if (rc == 0)
		rc = lease_dead_remove(cg_lease(g), name);
	mqfs_reply_err(req, rc);
	cg_unref(g);
	if (t)
		topic_unref(t);
}

static void op_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np,
		      const char *nn, unsigned int flags)
{
	(void)p; (void)n; (void)np; (void)nn; (void)flags;
	mqfs_reply_err(req, -EPERM);
}

static void op_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n)
{
	(void)l; (void)p; (void)n;
	mqfs_reply_err(req, -EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n)
{
	(void)i; (void)p; (void)n;
	mqfs_reply_err(req, -EPERM);
}

/* ---- files ---- */

/* What each kind allows: 1 read, 2 write. */
static int allowed(enum mqfs_kind k)
{
	switch (k) {
	case MQFS_PUBLISH:
	case MQFS_ACK:
	case MQFS_NACK:
	case MQFS_REDRIVE:
		return 2;
	case MQFS_PART:
	case MQFS_CONFIG:
	case MQFS_OFFSET:
	case MQFS_ROLE:
	case MQFS_REPL:
		return 3;
	default:
		return 1;
	}
}

static int snapshot(struct mq *m, struct fh *h, struct mqfs_id id)
{
	char buf[512];
	int n;

	switch (id.kind) {
	case MQFS_ROLE:
		n = snprintf(buf, sizeof(buf), "%s\n",
			     mq_role(m) == CFG_ROLE_LEADER ? "leader" : "follower");
		break;
	case MQFS_EPOCH:
		n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", mq_epoch(m));
		break;
	case MQFS_REPLICAS:
		if (the_repl)
			return repl_status_text(the_repl, &h->text, &h->len);
		n = snprintf(buf, sizeof(buf), "peer in_sync lag_messages lag_bytes state error\n");
		break;
	case MQFS_REPL:
		return replica_state_text(m, &h->text, &h->len);
	case MQFS_TSTATS:
		return topic_stats_text(h->t, &h->text, &h->len);
	case MQFS_GSTATS:
		return topic_group_stats_text(h->t, h->g, &h->text, &h->len);
	case MQFS_CONFIG:
		n = topic_config_text(h->t, buf, sizeof(buf));
		break;
	case MQFS_OFFSET:
		n = offset_text(h->g, id.part, buf, sizeof(buf));
		break;
	case MQFS_DEAD:
		return lease_dead_read(cg_lease(h->g), id.dead, &h->text, &h->len);
	default:
		return 0;
	}
	if (n < 0)
		return n;
	h->text = malloc((size_t)n);
	if (!h->text)
		return -ENOMEM;
	memcpy(h->text, buf, (size_t)n);
	h->len = (size_t)n;
	return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mq *m = mq_of(req);
	struct mqfs_id id = mqfs_id(ino);
	int acc = fi->flags & O_ACCMODE, want, rc;
	struct part_stat ps;
	struct fh *h;

	want = (acc == O_RDONLY ? 1 : acc == O_WRONLY ? 2 : 3);
	if (is_dir(id.kind)) {
		mqfs_reply_err(req, -EISDIR);
		return;
	}
	if ((want & allowed(id.kind)) != want) {
		mqfs_reply_err(req, -EACCES);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		mqfs_reply_err(req, -ENOMEM);
		return;
	}
	h->kind = id.kind;
	h->part = id.part;
	rc = resolve(m, id, &h->t, &h->g);
	/* A follower takes changes from its leader only: refused at open
	 * (and again at each write, for files opened before it stepped
	 * down). Reading next or batch leases, which is a change. */
	if (rc == 0 && (((want & 2) && !is_node_file(id.kind)) ||
			id.kind == MQFS_NEXT || id.kind == MQFS_BATCH))
		rc = changes_allowed(m);
	if (rc < 0)
		goto out_err;
	if (id.kind == MQFS_PART || id.kind == MQFS_GPART) {
		rc = file_start(id, h->t, h->g, &ps, &h->base);
	}
	if (rc == 0 && (want & 2) && (id.kind == MQFS_PUBLISH || id.kind == MQFS_PART))
		rc = prod_open(h->t, id.kind == MQFS_PART ? (int)id.part : -1,
			       mq_commit(m), &h->prod);
	if (rc == 0 && (want & 2) && id.kind == MQFS_REPL)
		rc = replica_rx_open(m, &h->rx);
	if (rc == 0 && (want & 1))
		rc = snapshot(m, h, id);
	if (id.kind == MQFS_NEXT || id.kind == MQFS_BATCH)
		h->consumer = lease_consumer();
	h->dead = id.dead;
	if (rc < 0)
		goto out_err;
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	/* A reader's close has nothing to report: no FLUSH round trip (a
	 * `next` consumer pays one fewer request per message). */
	fi->noflush = !(want & 2);
	fuse_reply_open(req, fi);
	return;
out_err:
	free_fh(h);
	mqfs_reply_err(req, rc);
}

/* ---- next and batch ---- */

/* Per-thread buffer that lease_take fills and may grow: reused, so a
 * batch read allocates nothing. */
struct lbuf {
	char *p;
	size_t cap;
};
static pthread_key_t lbuf_key;
static pthread_once_t lbuf_once = PTHREAD_ONCE_INIT;

static void lbuf_free(void *arg)
{
	struct lbuf *b = arg;

	free(b->p);
	free(b);
}

static void lbuf_init(void)
{
	(void)pthread_key_create(&lbuf_key, lbuf_free);
}

static struct lbuf *lbuf_get(void)
{
	struct lbuf *b;

	pthread_once(&lbuf_once, lbuf_init);
	b = pthread_getspecific(lbuf_key);
	if (!b && (b = calloc(1, sizeof(*b))))
		(void)pthread_setspecific(lbuf_key, b);
	return b;
}

/*
 * Answer a read of next or batch if there is something to answer with:
 * 1 if replied (messages, end of file, or an error), 0 if nothing is
 * available. park_lock held: it also orders the reads of one handle.
 */
static int serve(fuse_req_t req, struct fh *h, size_t size, off_t off)
{
	struct lease *ls = cg_lease(h->g);
	struct lbuf *b;
	ssize_t n;

	if (h->kind == MQFS_NEXT) {
		/* One message per open; then end of file. */
		if (!h->taken) {
			n = lease_take(ls, h->consumer, SIZE_MAX, 1, &h->text, &h->cap);
			if (n == 0)
				return 0;
			if (n < 0) {
				mqfs_reply_err(req, (int)n);
				return 1;
			}
			h->len = (size_t)n;
			h->taken = 1;
		}
		reply_text(req, h, off, size);
		return 1;
	}
	if (h->pend < h->len) {
		/* The rest of a message longer than the last read. */
		size_t k = size < h->len - h->pend ? size : h->len - h->pend;

		reply_copy(req, h->text + h->pend, k);
		h->pend += k;
		return 1;
	}
	b = lbuf_get();
	if (!b) {
		mqfs_reply_err(req, -ENOMEM);
		return 1;
	}
	n = lease_take(ls, h->consumer, size, UINT32_MAX, &b->p, &b->cap);
	if (n == 0)
		return 0;
	if (n < 0) {
		mqfs_reply_err(req, (int)n);
		return 1;
	}
	if ((size_t)n > size) {
		size_t rest = (size_t)n - size;

		if (h->cap < rest) {
			char *nt = realloc(h->text, rest);

			if (!nt) {
				/* The lease expires and the message goes out again. */
				mqfs_reply_err(req, -ENOMEM);
				return 1;
			}
			h->text = nt;
			h->cap = rest;
		}
		memcpy(h->text, b->p + size, rest);
		h->len = rest;
		h->pend = 0;
		n = (ssize_t)size;
	}
	fuse_reply_buf(req, b->p, (size_t)n);
	return 1;
}

static void unpark(struct parked *pk)
{
	if (pk->prev)
		pk->prev->next = pk->next;
	else
		parked = pk->next;
	if (pk->next)
		pk->next->prev = pk->prev;
	topic_waiters(pk->h->t, -1);
}

/* A parked reader gave up (Ctrl-C, timeout): answer EINTR. A read that
 * was answered meanwhile is not on the list any more: nothing to do. */
static void on_read_intr(fuse_req_t req, void *unused)
{
	struct parked *pk;

	(void)unused;
	pthread_mutex_lock(&park_lock);
	for (pk = parked; pk && pk->req != req; pk = pk->next)
		;
	if (pk)
		unpark(pk);
	pthread_mutex_unlock(&park_lock);
	if (pk) {
		mqfs_reply_err(req, -EINTR);
		free(pk);
	}
}

static void read_lease(fuse_req_t req, struct fh *h, size_t size, off_t off,
		       int flags)
{
	struct parked *pk, **tail;

	/* Before anyone can see req (FUSE-NOTES section 3). */
	fuse_req_interrupt_func(req, on_read_intr, NULL);
	pthread_mutex_lock(&park_lock);
	/* Counted before looking: a message that lands after our look
	 * finds a waiter to wake, and its waker waits for park_lock. */
	topic_waiters(h->t, 1);
	if (serve(req, h, size, off))
		goto out_uncount;
	if (flags & O_NONBLOCK) {
		mqfs_reply_err(req, -EAGAIN);
		goto out_uncount;
	}
	if (fuse_req_interrupted(req)) {
		mqfs_reply_err(req, -EINTR);
		goto out_uncount;
	}
	pk = malloc(sizeof(*pk));
	if (!pk) {
		mqfs_reply_err(req, -ENOMEM);
		goto out_uncount;
	}
	*pk = (struct parked){ .req = req, .h = h, .size = size, .off = off };
	/* FIFO: the longest waiting reader is served first. */
	for (tail = &parked; *tail; tail = &(*tail)->next)
		pk->prev = *tail;
	*tail = pk;
	pthread_mutex_unlock(&park_lock);
	return;
out_uncount:
	topic_waiters(h->t, -1);
	pthread_mutex_unlock(&park_lock);
}

static void poll_forget(struct fh *h)
{
	if (!h->polled)
		return;
	if (h->poll_prev)
		h->poll_prev->poll_next = h->poll_next;
	else
		polled = h->poll_next;
	if (h->poll_next)
		h->poll_next->poll_prev = h->poll_prev;
	fuse_pollhandle_destroy(h->ph);
	h->ph = NULL;
	h->polled = 0;
	topic_waiters(h->t, -1);
}

void mqfs_ready(void *arg, struct topic *t)
{
	struct cg *empty = NULL;	/* a fresh next reader found nothing */
	int follower = changes_allowed(arg) < 0;
	struct parked *pk, *next;
	struct fh *h, *hn;

	pthread_mutex_lock(&park_lock);
	for (pk = parked; pk; pk = next) {
		next = pk->next;
		h = pk->h;
		if (h->t != t)
			continue;
		if (follower) {
			/* parked before the node stepped down: a follower
			 * hands nothing out */
			mqfs_reply_err(pk->req, -EROFS);
			unpark(pk);
			free(pk);
			continue;
		}
		/* All next readers of a group that hold nothing yet are
		 * alike: when one finds nothing, so would the rest. */
		if (h->kind == MQFS_NEXT && h->g == empty)
			continue;
		if (serve(pk->req, h, pk->size, pk->off)) {
			unpark(pk);
			free(pk);
		} else if (h->kind == MQFS_NEXT) {
			empty = h->g;
		}
	}
	for (h = polled; h; h = hn) {
		hn = h->poll_next;
		if (h->t != t)
			continue;
		/* The kernel polls again and gets the real answer. */
		fuse_lowlevel_notify_poll(h->ph);
		poll_forget(h);
	}
	pthread_mutex_unlock(&park_lock);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	unsigned int rev = POLLIN | POLLRDNORM;

	(void)ino;
	if (h->kind != MQFS_NEXT && h->kind != MQFS_BATCH) {
		/* Everything else never blocks. */
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req, rev | POLLOUT | POLLWRNORM);
		return;
	}
	pthread_mutex_lock(&park_lock);
	if (ph) {
		if (h->polled) {
			fuse_pollhandle_destroy(h->ph);	/* keep the newest */
		} else {
			h->poll_prev = NULL;
			h->poll_next = polled;
			if (polled)
				polled->poll_prev = h;
			polled = h;
			h->polled = 1;
			topic_waiters(h->t, 1);
		}
		h->ph = ph;
	}
	if (!(h->kind == MQFS_NEXT ? h->taken : h->pend < h->len) &&
	    !lease_ready(cg_lease(h->g), h->consumer))
		rev = 0;
	if (rev)
		poll_forget(h);
	pthread_mutex_unlock(&park_lock);
	fuse_reply_poll(req, rev);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	ssize_t n;
	char *buf;

	(void)ino;
	if (h->kind == MQFS_NEXT || h->kind == MQFS_BATCH) {
		int rc = changes_allowed(mq_of(req));

		if (rc < 0)
			mqfs_reply_err(req, rc);
		else
			read_lease(req, h, size, off, fi->flags);
		return;
	}
	if (h->kind != MQFS_PART && h->kind != MQFS_GPART) {
		reply_text(req, h, off, size);
		return;
	}
	buf = rbuf_get(size);
	if (!buf) {
		mqfs_reply_err(req, -ENOMEM);
		return;
	}
	n = part_read(topic_part(h->t, h->part), h->base + (uint64_t)off, buf, size);
	if (n < 0)
		mqfs_reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void inflight_del(struct wreq *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		inflight = w->next;
	if (w->next)
		w->next->prev = w->prev;
}

/* acks=all: the in-sync peers hold the write (rc 0), or cannot (-EIO). */
static void repl_done(struct repl_wait *rw, int rc)
{
	struct wreq *w = (struct wreq *)((char *)rw - offsetof(struct wreq, rw));

	if (rc < 0)
		mqfs_reply_err(w->req, rc);
	else
		fuse_reply_write(w->req, w->n);
	free(w);
}

static void write_done(struct prod_req *rq, ssize_t n)
{
	struct wreq *w = (struct wreq *)rq;
	int rc = 1;

	pthread_mutex_lock(&inflight_lock);
	inflight_del(w);
	pthread_mutex_unlock(&inflight_lock);
	if (n > 0 && the_repl) {
		/* Local now; under acks=all the reply waits for the peers. */
		w->n = (size_t)n;
		w->rw.done = repl_done;
		rc = repl_wait(the_repl, &w->rw, w->t, rq->touched);
		if (rc == 0)
			return;
	}
	if (n < 0 || rc < 0)
		mqfs_reply_err(w->req, n < 0 ? (int)n : rc);
	else
		fuse_reply_write(w->req, (size_t)n);
	free(w);
}

static int write_interrupted(struct prod_req *rq)
{
	return fuse_req_interrupted(((struct wreq *)rq)->req);
}

/*
 * A writer held back by backpressure gave up (Ctrl-C, timeout): take its
 * write back and answer EINTR. A write that is not held completes as usual.
 */
static void on_write_intr(fuse_req_t req, void *unused)
{
	struct wreq *w;

	(void)unused;
	pthread_mutex_lock(&inflight_lock);
	for (w = inflight; w && w->req != req; w = w->next)
		;
	if (w && prod_cancel(&w->rq)) {
		inflight_del(w);
		pthread_mutex_unlock(&inflight_lock);
		mqfs_reply_err(req, -EINTR);
		free(w);
		return;
	}
	pthread_mutex_unlock(&inflight_lock);
}

/* Apply whole lines of ack, nack or redrive. */
static int apply_lines(struct fh *h, const char *buf, size_t len)
{
	struct lease *ls = cg_lease(h->g);

	return h->kind == MQFS_ACK ? lease_ack(ls, buf, len) :
	       h->kind == MQFS_NACK ? lease_nack(ls, buf, len) :
	       lease_redrive(ls, buf, len);
}

/*
 * A write to ack, nack or redrive. `cut -f1 done.log > ack` writes 64 KiB
 * at a time, wherever lines end: the whole lines are applied now, and the
 * piece after the last '\n' waits for the next write (or the last close),
 * so that an id cut in two is never taken for a shorter one. A write that
 * fails changes nothing, not even the piece kept.
 */
static int write_lines(struct fh *h, const char *buf, size_t size)
{
	const char *nl = memrchr(buf, '\n', size);
	size_t whole = nl ? (size_t)(nl - buf) + 1 : 0, tail = size - whole;
	char *joined = NULL, *kept;
	int rc = 0;

	/* Checked first: a failing write applies nothing. */
	if ((whole ? 0 : h->line_len) + tail > LINE_MAX_KEPT)
		return -EINVAL;	/* no id or reason is this long */
	if (whole && h->line_len) {
		/* rare: only where a line was cut */
		joined = malloc(h->line_len + whole);
		if (!joined)
			return -ENOMEM;
		memcpy(joined, h->line, h->line_len);
		memcpy(joined + h->line_len, buf, whole);
		rc = apply_lines(h, joined, h->line_len + whole);
		free(joined);
	} else if (whole) {
		rc = apply_lines(h, buf, whole);
	}
	if (rc < 0)
		return rc;
	if (whole)
		h->line_len = 0;
	if (!tail)
		return 0;
	kept = realloc(h->line, h->line_len + tail);
	if (!kept)
		return -ENOMEM;	/* the whole lines are applied: so be it */
	memcpy(kept + h->line_len, buf + whole, tail);
	h->line = kept;
	h->line_len += tail;
	return 0;
}

/* echo leader|follower > .mq/role */
static int role_write(struct mq *m, const char *buf, size_t size)
{
	while (size && (buf[size - 1] == '\n' || buf[size - 1] == ' '))
		size--;
	if (size == 6 && !memcmp(buf, "leader", 6))
		return mq_promote(m);
	if (size == 8 && !memcmp(buf, "follower", 8)) {
		uint32_t id = 0;
		struct topic *t;

		mq_demote(m, "set by .mq/role");
		/* Parked next and batch readers get EROFS now. */
		while ((t = mq_topic_next(m, id))) {
			id = topic_id(t);
			mqfs_ready(m, t);
			topic_unref(t);
		}
		return 0;
	}
	return -EINVAL;
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	const char *why = NULL;
	struct wreq *w;
	int rc;

	(void)ino;
	/* Every write appends, whatever the position; only the replication
	 * stream checks it (a hole in the stream must not be applied). */
	if (!is_node_file(h->kind)) {
		/* a follower: EROFS; acks=all short of min_insync: EIO */
		rc = changes_allowed(mq_of(req));
		if (rc == 0 && the_repl && (h->kind == MQFS_PUBLISH || h->kind == MQFS_PART))
			rc = repl_admit(the_repl);
		if (rc < 0) {
			mqfs_reply_err(req, rc);
			return;
		}
	}
	switch (h->kind) {
	case MQFS_PUBLISH:
	case MQFS_PART:
		w = malloc(sizeof(*w));
		if (!w) {
			mqfs_reply_err(req, -ENOMEM);
			return;
		}
		w->t = h->t;
		w->rq.done = write_done;
		w->rq.interrupted = write_interrupted;
		w->rq.pr = h->prod;	/* set before on_write_intr can see w */
		w->req = req;
		w->h = NULL;
		/* Before anyone else can see w: an INTERRUPT that came first
		 * runs the callback now, finds nothing, and write_interrupted
		 * then says so if the write would be held. */
		fuse_req_interrupt_func(req, on_write_intr, NULL);
		pthread_mutex_lock(&inflight_lock);
		w->prev = NULL;
		w->next = inflight;
		if (inflight)
			inflight->prev = w;
		inflight = w;
		pthread_mutex_unlock(&inflight_lock);
		prod_write(h->prod, buf, size, &w->rq);	/* replies via write_done */
		return;
	case MQFS_CONFIG:
		rc = topic_config_write(h->t, buf, size, &why);
		if (rc < 0 && why)
			fprintf(stderr, "mqfs: %s/config: %s\n", topic_name(h->t), why);
		break;
	case MQFS_OFFSET:
		rc = topic_commit(h->t, h->g, h->part, buf, size);
		break;
	case MQFS_ACK:
	case MQFS_NACK:
	case MQFS_REDRIVE:
		rc = write_lines(h, buf, size);
		break;
	case MQFS_ROLE:
		rc = role_write(mq_of(req), buf, size);
		break;
	case MQFS_REPL: {
		ssize_t n = replica_rx_write(h->rx, (uint64_t)off, buf, size);

		rc = n < 0 ? (int)n : 0;
		break;
	}
	default:
		rc = -EACCES;
	}
	if (rc < 0)
		mqfs_reply_err(req, rc);
	else
		fuse_reply_write(req, size);
}

/*
 * close() of any descriptor: report a failure of the partitions this file
 * wrote to. The partial last line is not published here: flush comes with
 * every close of a duplicate too (`exec 5>>publish; printf 'a' >&5` closes
 * one after each command), and a line must not be cut there.
 */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;

	(void)ino;
	mqfs_reply_err(req, h->prod ? prod_error(h->prod) : 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	int rc = 0;

	(void)ino;
	(void)datasync;
	if (h->kind == MQFS_REPL && h->rx) {
		rc = replica_rx_sync(h->rx);
	} else if (h->kind == MQFS_PART) {
		rc = part_sync(topic_part(h->t, h->part));
	} else if (h->kind == MQFS_PUBLISH) {
		uint32_t n = topic_nparts(h->t);

		for (uint32_t p = 0; p < n; p++) {
			int r = part_sync(topic_part(h->t, p));

			if (r < 0)
				rc = r;
		}
	}
	mqfs_reply_err(req, rc);
}

static void release_done(struct prod_req *rq, ssize_t n)
{
	struct wreq *w = (struct wreq *)rq;

	/* close() has returned already: the log is all that can tell. */
	if (n < 0)
		fprintf(stderr, "mqfs: %s: last line without newline not stored: %s\n",
			topic_name(w->h->t), strerror((int)-n));
	free_fh(w->h);
	fuse_reply_err(w->req, 0);
	free(w);
}

/* The last close of an open file: its partial last line is published now. */
static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	struct wreq *w;

	(void)ino;
	if (h->kind == MQFS_NEXT || h->kind == MQFS_BATCH) {
		/* Its leases live on: what is not acked expires. */
		pthread_mutex_lock(&park_lock);
		poll_forget(h);
		pthread_mutex_unlock(&park_lock);
	}
	if ((h->line_len || h->prod) && changes_allowed(mq_of(req)) < 0) {
		/* A follower since the last write: its state comes only from
		 * its leader (close() has returned: the log tells). */
		if (h->line_len || (h->prod && prod_pending(h->prod)))
			fprintf(stderr, "mqfs: %s: last line without newline not applied: this node is a follower\n",
				topic_name(h->t));
		free_fh(h);
		fuse_reply_err(req, 0);
		return;
	}
	if (h->line_len) {
		/* `printf %s "$id" > ack`: a last line without '\n'. close()
		 * has returned: the log is all that can tell of an error. */
		int rc = apply_lines(h, h->line, h->line_len);

		if (rc < 0)
			fprintf(stderr, "mqfs: %s: last line without newline not applied: %s\n",
				topic_name(h->t), strerror(-rc));
	}
	if (h->prod && (w = malloc(sizeof(*w)))) {
		w->rq.done = release_done;
		w->rq.interrupted = NULL;
		w->req = req;
		w->h = h;
		prod_flush(h->prod, &w->rq);
		return;
	}
	free_fh(h);
	fuse_reply_err(req, 0);
}

/* ---- extended attributes: why a dead letter is dead ---- */

static const char *const dead_attrs[] = {
	"user.mq.deliveries", "user.mq.reason", "user.mq.failed_at",
	"user.mq.partition", "user.mq.offset", "user.mq.timestamp",
};
#define NATTRS (sizeof(dead_attrs) / sizeof(dead_attrs[0]))

/* Attribute i of a dead letter as text into buf; its length. */
static int dead_attr(const struct dlq_entry *e, size_t i, char *buf, size_t cap)
{
	switch (i) {
	case 0: return snprintf(buf, cap, "%" PRIu32, e->deliveries);
	case 1: return snprintf(buf, cap, "%s", e->reason);
	case 2: return snprintf(buf, cap, "%" PRId64, e->failed_at_ms);
	case 3: return snprintf(buf, cap, "%" PRIu32, e->part);
	case 4: return snprintf(buf, cap, "%" PRIu64, e->off);
	default: return snprintf(buf, cap, "%" PRId64, e->ts_ms);
	}
}

/* The value of size 0 probes is the length (FUSE-NOTES section 8). */
static void reply_xattr(fuse_req_t req, const char *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		mqfs_reply_err(req, -ERANGE);
	else
		reply_copy(req, val, len);
}

/* The dead letter ino names, or -ENODATA for any other file. */
static int dead_of(fuse_req_t req, fuse_ino_t ino, struct dlq_entry *e)
{
	struct mqfs_id id = mqfs_id(ino);
	struct topic *t;
	struct cg *g;
	int rc;

	if (id.kind != MQFS_DEAD)
		return -ENODATA;
	rc = resolve(mq_of(req), id, &t, &g);
	if (rc == 0)
		rc = lease_dead_find(cg_lease(g), id.dead, NULL, e);
	cg_unref(g);
	if (t)
		topic_unref(t);
	return rc;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char val[DLQ_REASON_MAX + 32];
	struct dlq_entry e;
	int rc = dead_of(req, ino, &e);

	if (rc < 0) {
		mqfs_reply_err(req, rc);
		return;
	}
	for (size_t i = 0; i < NATTRS; i++)
		if (!strcmp(name, dead_attrs[i])) {
			reply_xattr(req, val, (size_t)dead_attr(&e, i, val, sizeof(val)), size);
			return;
		}
	mqfs_reply_err(req, -ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char names[256];
	size_t len = 0;
	struct dlq_entry e;
	int rc = dead_of(req, ino, &e);

	if (rc == 0) {
		for (size_t i = 0; i < NATTRS; i++) {
			memcpy(names + len, dead_attrs[i], strlen(dead_attrs[i]) + 1);
			len += strlen(dead_attrs[i]) + 1;
		}
	} else if (rc != -ENODATA) {
		mqfs_reply_err(req, rc);
		return;
	}
	reply_xattr(req, names, len, size);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	(void)ino; (void)name; (void)value; (void)size; (void)flags;
	mqfs_reply_err(req, -ENOTSUP);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	if (statvfs(mq_dir(mq_of(req)), &sv) < 0) {
		mqfs_reply_err(req, -errno);
		return;
	}
	sv.f_namemax = MQ_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	started = time(NULL);
	/* `>` opens with O_TRUNC and no SETATTR: it appends like `>>`. */
	conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Everything is direct_io; page-cache invalidation would only cost
	 * a GETATTR per read. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

const struct fuse_lowlevel_ops mqfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.poll = op_poll,
	.create = op_create,
};
