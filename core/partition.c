/*
 * partition.c - segment list, rolling, reads by position, retention.
 */
#define _GNU_SOURCE
#include "partition.h"
#include "core.h"
#include "io.h"
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct part {
	pthread_mutex_t lock;
	char dir[PATH_MAX];	/* immutable */
	struct seg **segs;	/* owned refs, oldest first, last = active; lock */
	uint64_t *spos;		/* byte position of each segment's first byte; lock */
	size_t nsegs, cap;	/* lock */
	uint64_t next_off;	/* next offset to assign; lock */
	uint64_t end_pos;	/* byte position after the last message; lock */
	uint64_t synced_pos;	/* bytes known durable; lock */
	int err;		/* sticky -EIO, 0 = healthy; lock */
	int dead;		/* part_kill: no more changes; lock */
	int dir_dirty;		/* a segment file was created since the last
				 * fsync of dir; lock */
	atomic_int queued;	/* on the group-commit list; see commit.c */
	struct part_epoch *ep;	/* epoch history, oldest first; lock */
	size_t nep, epcap;	/* lock */
	const _Atomic uint64_t *wepoch;	/* epoch of local appends, or NULL */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int push_seg(struct part *p, struct seg *s)
{
	if (p->nsegs == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct seg **ns = realloc(p->segs, cap * sizeof(*ns));
		uint64_t *np;

		if (!ns)
			return -ENOMEM;
		p->segs = ns;
		np = realloc(p->spos, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		p->spos = np;
		p->cap = cap;
	}
	p->spos[p->nsegs] = p->nsegs ? p->spos[p->nsegs - 1] + seg_bytes(p->segs[p->nsegs - 1]) : 0;
	p->segs[p->nsegs++] = s;
	return 0;
}

/* Base offsets of the segments in dir, sorted. Caller frees *out. */
static int list_bases(const char *dir, uint64_t **out, size_t *n)
{
	uint64_t *v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		unsigned long long b;

		if (strlen(de->d_name) != 24 || strcmp(de->d_name + 20, ".log"))
			continue;
		b = strtoull(de->d_name, &end, 10);
		if (end != de->d_name + 20)
			continue;
		if (cnt == cap) {
			uint64_t *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[cnt++] = b;
	}
	closedir(d);
	if (cnt > 1)
		qsort(v, cnt, sizeof(*v), cmp_u64);
	*out = v;
	*n = cnt;
	return 0;
}

/* ---- epoch history: DIR/epochs, lines "EPOCH START" ---- */

static int push_epoch(struct part *p, uint64_t epoch, uint64_t start)
{
	int rc = mq_grow(&p->ep, &p->epcap, p->nep + 1, sizeof(*p->ep), 4);

	if (rc < 0)
		return rc;
	p->ep[p->nep].epoch = epoch;
	p->ep[p->nep].start = start;
	p->nep++;
	return 0;
}

/* Load the history; entries past next (written just before a crash cut
 * their messages) and a torn last line are dropped. */
static int load_epochs(struct part *p)
{
	char path[PATH_MAX + 8], *buf, *line, *save = NULL;
	ssize_t n;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/epochs", p->dir);
	buf = malloc(1 << 16);
	if (!buf)
		return -ENOMEM;
	n = io_read_small(path, buf, (1 << 16) - 1);
	if (n < 0) {
		free(buf);
		return n == -ENOENT ? 0 : (int)n;
	}
	buf[n] = 0;
	for (line = strtok_r(buf, "\n", &save); line && rc == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned long long e, st;
		int used = 0;

		if (sscanf(line, "%llu %llu%n", &e, &st, &used) != 2 || line[used])
			break;
		if ((p->nep && e <= p->ep[p->nep - 1].epoch) || st > p->next_off)
			break;
		rc = push_epoch(p, e, st);
	}
	free(buf);
	return rc;
}

/* Rewrite the history file whole (after a truncation). lock held. */
static int save_epochs(struct part *p)
{
	char *text = malloc(p->nep * 42 + 1);
	size_t len = 0;
	int rc;

	if (!text)
		return -ENOMEM;
	for (size_t i = 0; i < p->nep; i++)
		len += (size_t)sprintf(text + len, "%" PRIu64 " %" PRIu64 "\n",
				       p->ep[i].epoch, p->ep[i].start);
	rc = io_publish(p->dir, "epochs", text, len, 1);
	free(text);
	return rc;
}

/*
 * Messages from next_off on are written under epoch: record it, durably,
 * before them, if it is newer than the last one. Rare (once per partition
 * and leader change), so the fsync does not matter. lock held.
 */
static int note_epoch(struct part *p, uint64_t epoch)
{
	char path[PATH_MAX + 8], line[48];
	int fd, rc, n;

	if (epoch == 0 || (p->nep && epoch <= p->ep[p->nep - 1].epoch))
		return 0;
	snprintf(path, sizeof(path), "%s/epochs", p->dir);
	n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", epoch, p->next_off);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = io_pwrite_all(fd, line, (size_t)n, 0);
	if (rc == 0)
		rc = io_sync(fd);
	close(fd);
	if (rc == 0 && p->nep == 0)
		rc = io_sync_dir(p->dir);
	return rc < 0 ? rc : push_epoch(p, epoch, p->next_off);
}

int part_open(const char *dir, struct part **out)
{
	struct part *p = calloc(1, sizeof(*p));
	uint64_t *bases = NULL;
	size_t n = 0;
	int rc;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	if (snprintf(p->dir, sizeof(p->dir), "%s", dir) >= (int)sizeof(p->dir)) {
		rc = -ENAMETOOLONG;
		goto out_free;
	}
	rc = io_mkdir(dir);
	if (rc < 0)
		goto out_free;
	rc = list_bases(dir, &bases, &n);
	if (rc < 0)
		goto out_free;
	for (size_t i = 0; i < n; i++) {
		struct seg *s;

		/* Only the last segment can have a torn tail: the others were
		 * sealed, and synced when sealed (except with sync=none). */
		rc = seg_open(dir, bases[i], i + 1 == n, &s);
		if (rc < 0)
			goto out_free;
		if (p->nsegs && seg_base(s) != p->next_off)
			fprintf(stderr, "mqfs: %s: segment %" PRIu64 " does not follow offset %" PRIu64 "\n",
				dir, seg_base(s), p->next_off);
		rc = push_seg(p, s);
		if (rc < 0) {
			seg_unref(s);
			goto out_free;
		}
		p->next_off = seg_base(s) + seg_count(s);
	}
	if (p->nsegs == 0) {
		struct seg *s;

		rc = seg_create(dir, 0, &s);
		if (rc < 0)
			goto out_free;
		rc = push_seg(p, s);
		if (rc < 0) {
			seg_unref(s);
			goto out_free;
		}
		/* The new segment's name must survive a crash before any data. */
		(void)io_sync_dir(dir);
	}
	p->end_pos = p->spos[p->nsegs - 1] + seg_bytes(p->segs[p->nsegs - 1]);
	p->synced_pos = p->end_pos;
	rc = load_epochs(p);
	if (rc < 0)
		goto out_free;
	free(bases);
	*out = p;
	return 0;
out_free:
	free(bases);
	part_close(p);
	return rc;
}

void part_close(struct part *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nsegs; i++)
		seg_unref(p->segs[i]);
	free(p->segs);
	free(p->spos);
	free(p->ep);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/*
 * Index of the last segment whose first byte (by_offset == 0) or first
 * offset (by_offset == 1) is at most key; 0 if none is. lock held.
 */
static size_t find_seg(struct part *p, uint64_t key, int by_offset)
{
	size_t lo = 0, hi = p->nsegs - 1;

	while (lo < hi) {
		size_t mid = (lo + hi + 1) / 2;
		uint64_t at = by_offset ? seg_base(p->segs[mid]) : p->spos[mid];

		if (at <= key)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Index of the segment holding byte pos (the last one at the end). lock held. */
static size_t find_pos(struct part *p, uint64_t pos)
{
	return find_seg(p, pos, 0);
}

/*
 * Seal the active segment and start a new one at next_off. With sync_seal
 * the sealed segment and the directory are synced first; a failure there is
 * sticky like any failed fsync. part->lock held.
 */
static int roll(struct part *p, int sync_seal)
{
	struct seg *s;
	int rc;

	if (sync_seal) {
		rc = seg_sync(p->segs[p->nsegs - 1]);
		if (rc < 0) {
			p->err = -EIO;
			return -EIO;
		}
		p->synced_pos = p->end_pos;
	}
	rc = seg_create(p->dir, p->next_off, &s);
	if (rc < 0)
		return rc;	/* e.g. ENOSPC: nothing changed, not sticky */
	rc = push_seg(p, s);
	if (rc < 0) {
		seg_remove(s);
		seg_unref(s);
		return rc;
	}
	p->dir_dirty = 1;
	if (sync_seal) {
		if (io_sync_dir(p->dir) < 0) {
			p->err = -EIO;
			return -EIO;
		}
		p->dir_dirty = 0;
	}
	return 0;
}

int part_append(struct part *p, const char *buf, size_t len, int64_t ts_ms,
		uint64_t segment_bytes, int sync_seal)
{
	struct seg *act;
	uint64_t before;
	int rc;

	pthread_mutex_lock(&p->lock);
	rc = p->dead ? -ENOENT : p->err;
	if (rc < 0)
		goto out_unlock;
	if (p->wepoch) {
		rc = note_epoch(p, atomic_load_explicit(p->wepoch, memory_order_relaxed));
		if (rc < 0)
			goto out_unlock;
	}
	act = p->segs[p->nsegs - 1];
	if (seg_bytes(act) > 0 && seg_bytes(act) + len > segment_bytes) {
		rc = roll(p, sync_seal);
		if (rc < 0)
			goto out_unlock;
		act = p->segs[p->nsegs - 1];
	}
	before = seg_count(act);
	rc = seg_append(act, buf, len, ts_ms);
	if (rc < 0)
		goto out_unlock;
	p->next_off += seg_count(act) - before;
	p->end_pos += len;
out_unlock:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int part_sync(struct part *p)
{
	uint64_t target;
	int rc;

	pthread_mutex_lock(&p->lock);
	target = p->end_pos;
	for (;;) {
		struct seg *s;
		uint64_t seg_end;
		size_t i;
		int dir;

		rc = p->err;
		if (rc < 0 || (p->synced_pos >= target && !p->dir_dirty))
			break;
		/* Every segment holding unsynced bytes: usually only the active
		 * one, more when they rolled without a sync (sync=none, or the
		 * setting changed). Retention may have taken the oldest. */
		if (p->synced_pos < p->spos[0])
			p->synced_pos = p->spos[0];
		i = find_pos(p, p->synced_pos < target ? p->synced_pos : target);
		s = p->segs[i];
		seg_end = p->spos[i] + seg_bytes(s);
		dir = p->dir_dirty;
		p->dir_dirty = 0;
		seg_ref(s);
		pthread_mutex_unlock(&p->lock);

		rc = seg_sync(s);
		/* The names of new segments, or their data is unreachable. */
		if (rc == 0 && dir)
			rc = io_sync_dir(p->dir);
		seg_unref(s);

		pthread_mutex_lock(&p->lock);
		if (rc < 0) {
			p->err = -EIO;
			continue;
		}
		if (seg_end > p->synced_pos)
			p->synced_pos = seg_end;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void part_kill(struct part *p)
{
	pthread_mutex_lock(&p->lock);
	p->dead = 1;
	pthread_mutex_unlock(&p->lock);
}

int part_error(struct part *p)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	rc = p->err;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int part_set_queued(struct part *p, int queued)
{
	return atomic_exchange(&p->queued, queued);
}

void part_stat(struct part *p, struct part_stat *st)
{
	pthread_mutex_lock(&p->lock);
	st->first = seg_base(p->segs[0]);
	st->next = p->next_off;
	st->start_pos = p->spos[0];
	st->end_pos = p->end_pos;
	st->segments = (uint32_t)p->nsegs;
	st->last_ts = seg_last_ts(p->segs[p->nsegs - 1]);
	if (st->last_ts == 0 && p->nsegs > 1)
		st->last_ts = seg_last_ts(p->segs[p->nsegs - 2]);
	pthread_mutex_unlock(&p->lock);
}

int part_pos(struct part *p, uint64_t off, uint64_t *pos)
{
	struct seg_entry e;
	struct seg *s;
	uint64_t base;
	size_t lo;
	int rc;

	pthread_mutex_lock(&p->lock);
	if (off >= p->next_off) {
		*pos = p->end_pos;
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	if (off <= seg_base(p->segs[0])) {
		*pos = p->spos[0];
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	lo = find_seg(p, off, 1);
	s = p->segs[lo];
	base = p->spos[lo];
	if (off - seg_base(s) >= seg_count(s)) {
		/* In a gap left by a damaged segment: the next one's start. */
		*pos = lo + 1 < p->nsegs ? p->spos[lo + 1] : p->end_pos;
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	seg_ref(s);
	pthread_mutex_unlock(&p->lock);
	rc = seg_entry(s, off - seg_base(s), &e);
	seg_unref(s);
	if (rc == 0)
		*pos = base + e.pos;
	return rc;
}

ssize_t part_read(struct part *p, uint64_t pos, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		struct seg *s;
		uint64_t rel, avail;
		size_t i, want;
		ssize_t n;

		pthread_mutex_lock(&p->lock);
		if (pos < p->spos[0])
			pos = p->spos[0];
		if (pos >= p->end_pos) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		i = find_pos(p, pos);
		s = p->segs[i];
		rel = pos - p->spos[i];
		avail = seg_bytes(s) - rel;
		seg_ref(s);
		pthread_mutex_unlock(&p->lock);

		want = len - done < avail ? len - done : (size_t)avail;
		n = seg_read(s, rel, (char *)buf + done, want);
		seg_unref(s);
		if (n < 0)
			return done ? (ssize_t)done : n;
		done += (size_t)n;
		pos += (uint64_t)n;
		if ((size_t)n < want)
			break;
	}
	return (ssize_t)done;
}

int part_read_ents(struct part *p, uint64_t off, uint32_t max, char *buf,
		   size_t cap, struct seg_entry *e, uint64_t *segp)
{
	struct seg *s;
	uint64_t rel, n;
	size_t i, bytes;
	ssize_t got;
	int rc;

	pthread_mutex_lock(&p->lock);
	if (off >= p->next_off) {
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	if (off < seg_base(p->segs[0])) {
		pthread_mutex_unlock(&p->lock);
		return -ERANGE;
	}
	s = p->segs[find_seg(p, off, 1)];
	rel = off - seg_base(s);
	if (rel >= seg_count(s)) {	/* a gap left by a damaged segment */
		pthread_mutex_unlock(&p->lock);
		return -ERANGE;
	}
	n = seg_count(s) - rel;
	seg_ref(s);
	pthread_mutex_unlock(&p->lock);

	if (segp)
		*segp = seg_base(s);
	if (n > max)
		n = max;
	rc = seg_entries(s, rel, (size_t)n, e);
	if (rc < 0)
		goto out;
	for (i = 0; i < n && e[i].pos + e[i].len + 1 - e[0].pos <= cap; i++)
		;
	if (i == 0) {
		rc = -ENOBUFS;
		goto out;
	}
	bytes = (size_t)(e[i - 1].pos + e[i - 1].len + 1 - e[0].pos);
	got = seg_read(s, e[0].pos, buf, bytes);
	rc = got < 0 ? (int)got : (size_t)got != bytes ? -EIO : (int)i;
out:
	seg_unref(s);
	return rc;
}

int part_read_msgs(struct part *p, uint64_t off, uint32_t max, char *buf,
		   size_t cap, struct part_msg *out)
{
	struct seg_entry e[PART_MSGS_MAX];
	int n = part_read_ents(p, off, max < PART_MSGS_MAX ? max : PART_MSGS_MAX,
			       buf, cap, e, NULL);

	if (n == -ENOBUFS)
		out[0].len = e[0].len;
	for (int k = 0; k < n; k++) {
		out[k].off = off + (uint64_t)k;
		out[k].ts_ms = e[k].ts_ms;
		out[k].line = buf + (e[k].pos - e[0].pos);
		out[k].len = e[k].len;
	}
	return n;
}

int64_t part_retain(struct part *p, int64_t now_ms, uint64_t retention_ms,
		    uint64_t retention_bytes, uint64_t consumed)
{
	int64_t freed = 0;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct seg *s = p->segs[0];

		if (p->dead) {
			rc = -ENOENT;
			break;
		}
		uint64_t total = p->end_pos - p->spos[0], n = seg_count(s);
		int expired = retention_ms && n &&
			      seg_last_ts(s) < now_ms - (int64_t)retention_ms;
		int done = n && seg_base(s) + n <= consumed;
		int too_big = retention_bytes && total - seg_bytes(s) >= retention_bytes &&
			      seg_bytes(s) > 0;

		if (!expired && !done && !too_big)
			break;
		if (p->nsegs == 1) {
			/* All of the active segment can go: seal it so that
			 * it can, offsets continue in the new one. */
			if (!(expired || done) || p->err)
				break;
			rc = roll(p, 0);
			if (rc < 0)
				break;
		}
		freed += (int64_t)seg_bytes(s);
		rc = seg_remove(s);
		seg_unref(s);
		p->nsegs--;
		memmove(p->segs, p->segs + 1, p->nsegs * sizeof(*p->segs));
		memmove(p->spos, p->spos + 1, p->nsegs * sizeof(*p->spos));
		if (rc < 0)
			break;
	}
	pthread_mutex_unlock(&p->lock);
	return rc < 0 && freed == 0 ? rc : freed;
}

/* ---- replicas ---- */

void part_set_epoch(struct part *p, const _Atomic uint64_t *src)
{
	pthread_mutex_lock(&p->lock);
	p->wepoch = src;
	pthread_mutex_unlock(&p->lock);
}

size_t part_epochs(struct part *p, struct part_epoch *out, size_t cap)
{
	size_t n;

	pthread_mutex_lock(&p->lock);
	n = p->nep;
	if (out && cap && n)
		memcpy(out, p->ep, (n < cap ? n : cap) * sizeof(*out));
	pthread_mutex_unlock(&p->lock);
	return n;
}

void part_epoch_at(struct part *p, uint64_t off, uint64_t *epoch, uint64_t *until)
{
	size_t i = 0;

	pthread_mutex_lock(&p->lock);
	while (i < p->nep && p->ep[i].start <= off)
		i++;
	*epoch = i ? p->ep[i - 1].epoch : 0;
	*until = i < p->nep ? p->ep[i].start : UINT64_MAX;
	pthread_mutex_unlock(&p->lock);
}

/* Remove segment i (not the only one). lock held. Returns its bytes. */
static int64_t drop_seg(struct part *p, size_t i)
{
	struct seg *s = p->segs[i];
	int64_t bytes = (int64_t)seg_bytes(s);

	(void)seg_remove(s);
	seg_unref(s);
	p->nsegs--;
	memmove(p->segs + i, p->segs + i + 1, (p->nsegs - i) * sizeof(*p->segs));
	memmove(p->spos + i, p->spos + i + 1, (p->nsegs - i) * sizeof(*p->spos));
	return bytes;
}

/*
 * Replace every segment by one empty segment starting at offset off (a
 * replica whose leader holds nothing of what it has). Byte positions go on
 * from the old end. Returns the bytes removed. lock held.
 */
static int64_t restart_at(struct part *p, uint64_t off)
{
	struct seg *s;
	int64_t freed = 0;
	int rc;

	if (p->nsegs == 1 && seg_count(p->segs[0]) == 0 && seg_base(p->segs[0]) == off)
		return 0;
	/* A segment at off may exist among the old ones (same name): remove
	 * those first, keeping the list non-empty until the new one is in. */
	for (size_t i = 0; i < p->nsegs;)
		if (seg_base(p->segs[i]) == off && p->nsegs > 1)
			freed += drop_seg(p, i);
		else
			i++;
	if (p->nsegs == 1 && seg_base(p->segs[0]) == off) {
		freed += (int64_t)seg_bytes(p->segs[0]);
		rc = seg_truncate(p->segs[0], 0);
		if (rc < 0)
			return rc;
		p->spos[0] = p->end_pos;
	} else {
		rc = seg_create(p->dir, off, &s);
		if (rc < 0)
			return rc;
		rc = push_seg(p, s);
		if (rc < 0) {
			seg_remove(s);
			seg_unref(s);
			return rc;
		}
		p->spos[p->nsegs - 1] = p->end_pos;
		while (p->nsegs > 1)
			freed += drop_seg(p, 0);
	}
	p->next_off = off;
	p->synced_pos = p->end_pos;
	p->dir_dirty = 1;
	return freed;
}

int part_append_ents(struct part *p, uint64_t lbase, uint64_t off,
		     uint64_t epoch, const char *buf, size_t len,
		     struct seg_entry *e, size_t n, int writeback)
{
	struct seg *act;
	uint64_t pos, nmsg;
	size_t skip = 0;
	int rc;

	pthread_mutex_lock(&p->lock);
	rc = p->dead ? -ENOENT : p->err;
	if (rc < 0)
		goto out;
	if (off > p->next_off) {
		rc = -ERANGE;	/* a gap: the sender must start earlier */
		goto out;
	}
	/* What we hold already is a no-op: re-sending is always safe. */
	while (skip < n && off + skip < p->next_off) {
		buf += e[skip].len + 1;
		len -= e[skip].len + 1;
		skip++;
	}
	if (skip == n)
		goto out;
	off += skip;
	rc = note_epoch(p, epoch);
	if (rc < 0)
		goto out;
	act = p->segs[p->nsegs - 1];
	/* Roll where the leader rolled, so that the segments match too. */
	if (off == lbase && seg_count(act) > 0 && seg_base(act) < lbase) {
		/* Sealed segments are only lightly checked at open: seal them
		 * synced, as the leader does, when the topic is durable. */
		rc = roll(p, writeback);
		if (rc < 0)
			goto out;
		act = p->segs[p->nsegs - 1];
	}
	pos = seg_bytes(act);
	nmsg = seg_count(act);
	rc = seg_append_ents(act, buf, len, e + skip, n - skip);
	if (rc < 0)
		goto out;
	if (writeback)
		seg_writeback(act, pos, nmsg);
	p->next_off += n - skip;
	p->end_pos += len;
	rc = (int)(n - skip);
out:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int64_t part_trim(struct part *p, uint64_t first)
{
	int64_t freed = 0;

	pthread_mutex_lock(&p->lock);
	if (p->dead) {
		pthread_mutex_unlock(&p->lock);
		return -ENOENT;
	}
	while (p->nsegs > 1 && seg_base(p->segs[1]) <= first)
		freed += drop_seg(p, 0);
	if (p->next_off < first || (p->next_off == first && seg_count(p->segs[0]) &&
				    seg_base(p->segs[0]) < first)) {
		int64_t n = p->nsegs == 1 ? restart_at(p, first) : 0;

		if (n < 0) {
			pthread_mutex_unlock(&p->lock);
			return n;
		}
		freed += n;
	}
	pthread_mutex_unlock(&p->lock);
	return freed;
}

int64_t part_truncate(struct part *p, uint64_t off)
{
	int64_t freed = 0;
	size_t i;
	int rc;

	pthread_mutex_lock(&p->lock);
	rc = p->dead ? -ENOENT : p->err;
	if (rc < 0 || off >= p->next_off)
		goto out;
	if (off < seg_base(p->segs[0])) {
		freed = restart_at(p, off);
		rc = freed < 0 ? (int)freed : 0;
	} else {
		uint64_t before;

		i = find_seg(p, off, 1);
		while (p->nsegs > i + 1)
			freed += drop_seg(p, p->nsegs - 1);
		before = seg_bytes(p->segs[i]);
		rc = seg_truncate(p->segs[i], off - seg_base(p->segs[i]));
		if (rc == 0) {
			freed += (int64_t)(before - seg_bytes(p->segs[i]));
			p->next_off = off;
			p->end_pos = p->spos[i] + seg_bytes(p->segs[i]);
			if (p->synced_pos > p->end_pos)
				p->synced_pos = p->end_pos;
			p->dir_dirty = 1;
		}
	}
	if (rc == 0 && io_sync_dir(p->dir) == 0)
		p->dir_dirty = 0;
	while (rc == 0 && p->nep && p->ep[p->nep - 1].start >= off)
		p->nep--;
	if (rc == 0)
		rc = save_epochs(p);
out:
	pthread_mutex_unlock(&p->lock);
	return rc < 0 ? rc : freed;
}
