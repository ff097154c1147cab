/*
 * dlq.c - dead-letter files and their in-memory list (format in dlq.h).
 */
#define _GNU_SOURCE
#include "dlq.h"
#include "core.h"
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC "mqfs-dead 1 "
/* The longest header: the numbers and a whole reason. */
#define HDR_MAX (sizeof(MAGIC) + 128 + DLQ_REASON_MAX)

struct dlq {
	char dir[PATH_MAX];		/* immutable */
	struct dlq_entry **v;		/* owned, sorted by seq */
	size_t n, cap;
	uint64_t next_seq;
	uint64_t gen;			/* bumped by every change */
	/* (part, off) -> entry, open addressing: acks and hand-outs of
	 * redriven messages look their letters up by id, and a scan of
	 * thousands of letters per message was the cost. Borrowed pointers;
	 * TOMB marks a removed one. */
	struct dlq_entry **ht;
	size_t hcap, hfill;		/* hcap a power of two; hfill incl. TOMB */
};

static struct dlq_entry tomb_entry;
#define TOMB (&tomb_entry)

static size_t h_slot(const struct dlq *d, uint32_t part, uint64_t off)
{
	uint64_t k = (off ^ ((uint64_t)part << 40)) * 0x9e3779b97f4a7c15ull;

	return (size_t)(k >> 20) & (d->hcap - 1);
}

static int h_put(struct dlq *d, struct dlq_entry *e);

static int h_grow(struct dlq *d)
{
	size_t cap = d->hcap ? d->hcap : 64;
	struct dlq_entry **old = d->ht;
	size_t oldcap = d->hcap;

	while (cap < 4 * (d->n + 1))
		cap *= 2;
	d->ht = calloc(cap, sizeof(*d->ht));
	if (!d->ht) {
		d->ht = old;
		return -ENOMEM;
	}
	d->hcap = cap;
	d->hfill = 0;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i] && old[i] != TOMB)
			(void)h_put(d, old[i]);
	free(old);
	return 0;
}

static int h_put(struct dlq *d, struct dlq_entry *e)
{
	size_t i;

	if (2 * (d->hfill + 1) > d->hcap && h_grow(d) < 0)
		return -ENOMEM;
	for (i = h_slot(d, e->part, e->off); d->ht[i] && d->ht[i] != TOMB;
	     i = (i + 1) & (d->hcap - 1))
		;
	if (!d->ht[i])
		d->hfill++;
	d->ht[i] = e;
	return 0;
}

static struct dlq_entry **h_find(const struct dlq *d, uint32_t part, uint64_t off)
{
	if (!d->hcap)
		return NULL;
	for (size_t i = h_slot(d, part, off); d->ht[i]; i = (i + 1) & (d->hcap - 1))
		if (d->ht[i] != TOMB && d->ht[i]->part == part && d->ht[i]->off == off)
			return &d->ht[i];
	return NULL;
}

int dlq_parse_name(const char *s, size_t len, uint32_t *part, uint64_t *off)
{
	uint64_t p = 0, o = 0;
	size_t i = 0, start;

	for (start = i; i < len && s[i] >= '0' && s[i] <= '9' && i - start < 5; i++)
		p = p * 10 + (uint64_t)(s[i] - '0');
	if (i == start || i == len || s[i] != ':' || (s[start] == '0' && i - start > 1))
		return -EINVAL;
	for (start = ++i; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (o > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		o = o * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == start || i != len || (s[start] == '0' && i - start > 1) ||
	    p >= MQ_MAX_PARTITIONS)
		return -EINVAL;
	*part = (uint32_t)p;
	*off = o;
	return 0;
}

static struct dlq_entry *entry_dup(const struct dlq_entry *e)
{
	size_t rl = strlen(e->reason);
	struct dlq_entry *c = malloc(offsetof(struct dlq_entry, reason) + rl + 1);

	if (c)
		memcpy(c, e, offsetof(struct dlq_entry, reason) + rl + 1);
	return c;
}

static int push(struct dlq *d, struct dlq_entry *e)
{
	if (mq_grow(&d->v, &d->cap, d->n + 1, sizeof(*d->v), 16) < 0)
		return -ENOMEM;
	if (h_put(d, e) < 0)
		return -ENOMEM;
	d->v[d->n++] = e;
	if (e->seq >= d->next_seq)
		d->next_seq = e->seq + 1;
	d->gen++;
	return 0;
}

/* Drop entry i from the list and the table, and free it. */
static void drop(struct dlq *d, size_t i)
{
	struct dlq_entry **h = h_find(d, d->v[i]->part, d->v[i]->off);

	if (h)
		*h = TOMB;
	free(d->v[i]);
	memmove(d->v + i, d->v + i + 1, (d->n - i - 1) * sizeof(*d->v));
	d->n--;
}

/* Read and parse the header of dir/name into *e. */
static int load_one(struct dlq *d, const char *name, struct dlq_entry *e)
{
	char path[PATH_MAX + 32], hdr[HDR_MAX + 1], *nl, *r;
	unsigned long long seq, ts, fa;
	unsigned int dl;
	ssize_t n;
	off_t size;
	int fd, used = 0;

	memset(e, 0, offsetof(struct dlq_entry, reason));
	if (dlq_parse_name(name, strlen(name), &e->part, &e->off) < 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/%s", d->dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = io_pread(fd, hdr, HDR_MAX, 0);
	size = lseek(fd, 0, SEEK_END);
	close(fd);
	if (n < 0)
		return (int)n;
	hdr[n] = '\0';
	nl = memchr(hdr, '\n', (size_t)n);
	if (!nl || strncmp(hdr, MAGIC, strlen(MAGIC)) != 0)
		return -EINVAL;
	*nl = '\0';
	if (sscanf(hdr + strlen(MAGIC), "seq=%llu deliveries=%u ts=%llu failed_at=%llu reason=%n",
		   &seq, &dl, &ts, &fa, &used) != 4 || !used)
		return -EINVAL;
	r = hdr + strlen(MAGIC) + used;
	e->seq = seq;
	e->deliveries = dl;
	e->ts_ms = (int64_t)ts;
	e->failed_at_ms = (int64_t)fa;
	e->hdr = (uint32_t)(nl - hdr + 1);
	/* the line and its '\n' follow the header */
	if (size < (off_t)e->hdr + 2)
		return -EINVAL;
	e->len = (uint32_t)(size - e->hdr - 1);
	snprintf(e->reason, sizeof(e->reason), "%s", r);
	return 0;
}

static int by_seq(const void *a, const void *b)
{
	const struct dlq_entry *x = *(struct dlq_entry *const *)a;
	const struct dlq_entry *y = *(struct dlq_entry *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int dlq_open(const char *dir, struct dlq **out)
{
	struct dlq *d = calloc(1, sizeof(*d));
	struct dirent *de;
	DIR *dh;
	int rc;

	if (!d)
		return -ENOMEM;
	if (snprintf(d->dir, sizeof(d->dir), "%s", dir) >= (int)sizeof(d->dir)) {
		free(d);
		return -ENAMETOOLONG;
	}
	rc = io_mkdir(dir);
	dh = rc < 0 ? NULL : opendir(dir);
	if (!dh) {
		free(d);
		return rc < 0 ? rc : -errno;
	}
	while ((de = readdir(dh))) {
		struct dlq_entry e, *c;

		if (de->d_name[0] == '.')
			continue;	/* ".", "..", io_publish temp files */
		rc = load_one(d, de->d_name, &e);
		if (rc < 0) {
			/* Never deleted: an operator may want it. */
			fprintf(stderr, "mqfs: %s/%s: not a dead letter (%s), ignored\n",
				dir, de->d_name, strerror(-rc));
			continue;
		}
		c = entry_dup(&e);
		rc = c ? push(d, c) : -ENOMEM;
		if (rc < 0) {
			free(c);
			closedir(dh);
			dlq_free(d);
			return rc;
		}
	}
	closedir(dh);
	if (d->n)
		qsort(d->v, d->n, sizeof(*d->v), by_seq);
	*out = d;
	return 0;
}

void dlq_free(struct dlq *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i]);
	free(d->v);
	free(d->ht);
	free(d);
}

size_t dlq_count(const struct dlq *d) { return d->n; }
const struct dlq_entry *dlq_at(const struct dlq *d, size_t i) { return d->v[i]; }
uint64_t dlq_next_seq(const struct dlq *d) { return d->next_seq; }
void dlq_set_id(struct dlq *d, size_t i, uint64_t id) { d->v[i]->id = id; }

ssize_t dlq_find(const struct dlq *d, uint32_t part, uint64_t off)
{
	struct dlq_entry **h = h_find(d, part, off);

	return h ? dlq_find_id(d, (*h)->id) : -1;
}

size_t dlq_after(const struct dlq *d, uint64_t id)
{
	size_t lo = 0, hi = d->n;

	/* ids grow with seq: they are handed out in failure order */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (d->v[mid]->id <= id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

ssize_t dlq_find_id(const struct dlq *d, uint64_t id)
{
	size_t i = id ? dlq_after(d, id - 1) : d->n;

	return i < d->n && d->v[i]->id == id ? (ssize_t)i : -1;
}

uint64_t dlq_count_part(const struct dlq *d, uint32_t part)
{
	uint64_t n = 0;

	for (size_t i = 0; i < d->n; i++)
		n += d->v[i]->part == part && !d->v[i]->hidden;
	return n;
}

uint64_t dlq_gen(const struct dlq *d) { return d->gen; }

void dlq_set_hidden(struct dlq *d, size_t i, int hidden)
{
	d->gen++;
	d->v[i]->hidden = hidden;
}

static void file_name(char *buf, size_t cap, uint32_t part, uint64_t off)
{
	snprintf(buf, cap, "%" PRIu32 ":%" PRIu64, part, off);
}

int dlq_add(struct dlq *d, const struct dlq_entry *e, const char *line,
	    int durable)
{
	char name[48], hdr[HDR_MAX + 1];
	struct dlq_entry *c;
	size_t total;
	char *buf;
	int h, rc;

	h = snprintf(hdr, sizeof(hdr), MAGIC "seq=%" PRIu64 " deliveries=%" PRIu32
		     " ts=%" PRId64 " failed_at=%" PRId64 " reason=%s\n",
		     e->seq, e->deliveries, e->ts_ms, e->failed_at_ms, e->reason);
	if (h < 0 || (size_t)h >= sizeof(hdr))
		return -EINVAL;
	total = (size_t)h + e->len + 1;
	buf = malloc(total);
	c = entry_dup(e);
	if (!buf || !c) {
		free(buf);
		free(c);
		return -ENOMEM;
	}
	memcpy(buf, hdr, (size_t)h);
	memcpy(buf + h, line, e->len);
	buf[total - 1] = '\n';
	c->hdr = (uint32_t)h;
	c->hidden = 0;
	file_name(name, sizeof(name), e->part, e->off);
	rc = io_publish(d->dir, name, buf, total, durable);
	free(buf);
	if (rc == 0) {
		/* the file was replaced: so is an older entry of that name */
		ssize_t old = dlq_find(d, e->part, e->off);

		if (old >= 0)
			drop(d, (size_t)old);
		rc = push(d, c);
	}
	if (rc < 0) {
		free(c);
		return rc;
	}
	return 0;
}

int dlq_remove(struct dlq *d, size_t i, int durable)
{
	char path[PATH_MAX + 48], name[48];

	file_name(name, sizeof(name), d->v[i]->part, d->v[i]->off);
	snprintf(path, sizeof(path), "%s/%s", d->dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	if (durable)
		(void)io_sync_dir(d->dir);
	drop(d, i);
	d->gen++;
	return 0;
}

int dlq_read(const struct dlq *d, size_t i, char **text, size_t *len)
{
	const struct dlq_entry *e = d->v[i];
	char path[PATH_MAX + 48], name[48];
	ssize_t n;
	char *buf;
	int fd;

	file_name(name, sizeof(name), e->part, e->off);
	snprintf(path, sizeof(path), "%s/%s", d->dir, name);
	buf = malloc((size_t)e->len + 1);
	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	n = io_pread(fd, buf, (size_t)e->len + 1, e->hdr);
	close(fd);
	if (n != (ssize_t)e->len + 1) {
		free(buf);
		return n < 0 ? (int)n : -EIO;
	}
	*text = buf;
	*len = (size_t)n;
	return 0;
}
