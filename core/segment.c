/*
 * segment.c - segment files, append, and crash recovery.
 *
 * On-disk format, version SEG_FORMAT_VERSION (1). All integers little-endian.
 * A partition directory holds segments named by their first offset, zero
 * padded to 20 digits so that names sort by offset:
 *
 *     00000000000000000000.log    message lines, verbatim, each ending '\n'
 *     00000000000000000000.idx    64-byte header, then 32-byte entries
 *
 * The .log file is exactly what a reader of the partition gets: no framing,
 * so a read is a byte-range copy. Messages never contain '\n' and are never
 * empty, so line boundaries are message boundaries.
 *
 * .idx header (64 bytes):
 *     0   8  magic "MQFSIDX\0"
 *     8   4  format version (1)
 *    12   4  entry size (32)
 *    16   8  base offset: offset of the first message of the segment
 *    24   8  creation time, ms since the epoch
 *    32  24  zero
 *    56   8  XXH3_64bits of bytes 0..55, seed 0
 *
 * .idx entry i (32 bytes, at 64 + 32*i) describes message base + i:
 *     0   8  byte position of its line in the .log
 *     8   4  length of the line without '\n' (1 .. max_message)
 *    12   4  flags, 0
 *    16   8  timestamp, ms since the epoch, taken when it was appended
 *    24   8  XXH3_64bits of the line (without '\n'), seed 0
 *
 * XXH3_64bits is stable across xxHash versions only since v0.8.0, which the
 * build requires.
 *
 * Validity: entry i is valid when entry i-1 is, its position is the end of
 * line i-1 (0 for i = 0), its length is not 0, the log holds its line and a
 * '\n' there, and the checksum matches. Recovery keeps the longest valid
 * prefix of entries and cuts the log right after the last of them; a torn
 * entry (the .idx length not 64 + a multiple of 32) is cut too. Appends write
 * the log before the index, so a crash between the two leaves log bytes
 * without entries: cut.
 *
 * The .idx file is derived data: if it is missing or its header is damaged,
 * it is rebuilt from the log, with the log's mtime as every timestamp.
 */
#define _GNU_SOURCE
#include "segment.h"
#include "core.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#if XXH_VERSION_NUMBER < 800
#error "XXH3_64bits is only stable from xxHash 0.8.0 on"
#endif

#define IDX_MAGIC "MQFSIDX"
#define IDX_HDR 64
#define ENT 32
/* Entries per index write; also the size of the per-thread staging array. */
#define ENT_BATCH 4096
/* Read size of recovery scans. */
#define SCAN_BUF (1u << 20)

struct seg {
	atomic_int refs;
	uint64_t base_off;	/* immutable */
	uint64_t nmsgs;		/* messages; part->lock while active */
	uint64_t bytes;		/* log bytes; part->lock while active */
	int64_t last_ts;	/* ms; 0 = empty; part->lock while active */
	int log_fd, idx_fd;	/* owned; closed by the last seg_unref */
	char log_path[PATH_MAX];
	char idx_path[PATH_MAX];
};

struct idx_hdr {
	char magic[8];
	uint32_t version;
	uint32_t entry_size;
	uint64_t base_off;
	int64_t created_ms;
	uint8_t zero[24];
	uint64_t hash;
};
_Static_assert(sizeof(struct idx_hdr) == IDX_HDR, "index header is 64 bytes");

static struct seg *seg_alloc(const char *dir, uint64_t base)
{
	struct seg *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	atomic_init(&s->refs, 1);
	s->base_off = base;
	s->log_fd = s->idx_fd = -1;
	if (snprintf(s->log_path, PATH_MAX, "%s/%020" PRIu64 ".log", dir, base) >= PATH_MAX ||
	    snprintf(s->idx_path, PATH_MAX, "%s/%020" PRIu64 ".idx", dir, base) >= PATH_MAX) {
		free(s);
		return NULL;
	}
	return s;
}

static void seg_free(struct seg *s)
{
	if (s->log_fd >= 0)
		close(s->log_fd);
	if (s->idx_fd >= 0)
		close(s->idx_fd);
	free(s);
}

static int write_hdr(struct seg *s, int64_t created)
{
	struct idx_hdr h;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, IDX_MAGIC, sizeof(IDX_MAGIC));
	h.version = SEG_FORMAT_VERSION;
	h.entry_size = ENT;
	h.base_off = s->base_off;
	h.created_ms = created;
	h.hash = XXH3_64bits(&h, offsetof(struct idx_hdr, hash));
	return io_pwrite_all(s->idx_fd, &h, sizeof(h), 0);
}

static int hdr_ok(const struct seg *s, const struct idx_hdr *h)
{
	return memcmp(h->magic, IDX_MAGIC, sizeof(IDX_MAGIC)) == 0 &&
	       h->version == SEG_FORMAT_VERSION && h->entry_size == ENT &&
	       h->base_off == s->base_off &&
	       h->hash == XXH3_64bits(h, offsetof(struct idx_hdr, hash));
}

int seg_create(const char *dir, uint64_t base_off, struct seg **out)
{
	struct seg *s = seg_alloc(dir, base_off);
	int rc;

	if (!s)
		return -ENOMEM;
	s->log_fd = open(s->log_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (s->log_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	s->idx_fd = open(s->idx_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (s->idx_fd < 0) {
		rc = -errno;
		goto out_unlink;
	}
	rc = write_hdr(s, mq_now_ms());
	if (rc < 0)
		goto out_unlink;
	*out = s;
	return 0;
out_unlink:
	unlink(s->log_path);
	unlink(s->idx_path);
out_free:
	seg_free(s);
	return rc;
}

/*
 * Walk the log line by line from the start and either check each line
 * against the index (verify) or write an entry for it (rebuild). Stops at the
 * first line that does not match, or at a torn last line, and cuts both
 * files there.
 */
static int scan(struct seg *s, uint64_t nent, int rebuild, int64_t mtime)
{
	struct seg_entry *ents = NULL;
	XXH3_state_t *st = NULL;
	char *buf = NULL;
	uint64_t good = 0, good_end = 0;	/* entries and log bytes kept */
	uint64_t pos = 0, ls = 0, llen = 0;	/* chunk start, line start, length so far */
	uint64_t ebase = 0, ecnt = 0;		/* entries staged in ents[] */
	int rc = 0, stop = 0;

	buf = malloc(SCAN_BUF);
	ents = malloc(ENT_BATCH * sizeof(*ents));
	st = XXH3_createState();
	if (!buf || !ents || !st) {
		rc = -ENOMEM;
		goto out;
	}
	XXH3_64bits_reset(st);
	while (!stop) {
		ssize_t n = io_pread(s->log_fd, buf, SCAN_BUF, (off_t)pos);
		const char *p = buf, *end;

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0)
			break;	/* a line without '\n' at the end is torn */
		end = buf + n;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t piece = nl ? (size_t)(nl - p) : (size_t)(end - p);
			struct seg_entry e;

			XXH3_64bits_update(st, p, piece);
			llen += piece;
			if (!nl)
				break;
			e.pos = ls;
			e.len = (uint32_t)llen;
			e.flags = 0;
			e.ts_ms = mtime;
			e.hash = XXH3_64bits_digest(st);
			XXH3_64bits_reset(st);
			if (llen == 0 || llen > UINT32_MAX) {
				stop = 1;
				break;
			}
			if (!rebuild) {
				if (good == nent) {
					stop = 1;
					break;
				}
				if (good == ebase + ecnt) {
					ebase = good;
					ecnt = nent - good < ENT_BATCH ? nent - good : ENT_BATCH;
					ssize_t en = io_pread(s->idx_fd, ents, ecnt * ENT,
							      (off_t)(IDX_HDR + ebase * ENT));

					if (en < 0) {
						rc = (int)en;
						goto out;
					}
					ecnt = (uint64_t)en / ENT;
					if (ecnt == 0) {
						stop = 1;
						break;
					}
				}
				struct seg_entry *x = &ents[good - ebase];
				if (x->pos != e.pos || x->len != e.len || x->hash != e.hash) {
					stop = 1;
					break;
				}
				s->last_ts = x->ts_ms;
			} else {
				ents[ecnt++] = e;
				if (ecnt == ENT_BATCH) {
					rc = io_pwrite_all(s->idx_fd, ents, ecnt * ENT,
							   (off_t)(IDX_HDR + ebase * ENT));
					if (rc < 0)
						goto out;
					ebase += ecnt;
					ecnt = 0;
				}
				s->last_ts = mtime;
			}
			good++;
			llen = 0;
			ls = pos + (uint64_t)(nl - buf) + 1;
			good_end = ls;
			p = nl + 1;
		}
		pos += (uint64_t)n;
	}
	if (rebuild && ecnt) {
		rc = io_pwrite_all(s->idx_fd, ents, ecnt * ENT,
				   (off_t)(IDX_HDR + ebase * ENT));
		if (rc < 0)
			goto out;
	}
	rc = io_truncate(s->idx_fd, (off_t)(IDX_HDR + good * ENT));
	if (rc == 0)
		rc = io_truncate(s->log_fd, (off_t)good_end);
	if (rc == 0 && (good != nent || rebuild))
		fprintf(stderr, "mqfs: %s: recovered %" PRIu64 " messages%s\n",
			s->log_path, good, rebuild ? " (index rebuilt)" : ", cut torn tail");
	s->nmsgs = good;
	s->bytes = good_end;
out:
	XXH3_freeState(st);
	free(ents);
	free(buf);
	return rc;
}

/* Check only the last entry: enough for a segment that was synced at seal. */
static int last_ok(struct seg *s, uint64_t nent, uint64_t log_size)
{
	struct seg_entry e;
	char *line;
	int ok;

	if (nent == 0)
		return log_size == 0;
	if (io_pread(s->idx_fd, &e, ENT, (off_t)(IDX_HDR + (nent - 1) * ENT)) != ENT)
		return 0;
	if (e.len == 0 || e.pos + e.len + 1 != log_size)
		return 0;
	line = malloc((size_t)e.len + 1);
	if (!line)
		return 0;
	ok = io_pread(s->log_fd, line, (size_t)e.len + 1, (off_t)e.pos) == (ssize_t)e.len + 1 &&
	     line[e.len] == '\n' && XXH3_64bits(line, e.len) == e.hash;
	free(line);
	if (ok) {
		s->nmsgs = nent;
		s->bytes = log_size;
		s->last_ts = e.ts_ms;
	}
	return ok;
}

int seg_open(const char *dir, uint64_t base_off, int full, struct seg **out)
{
	struct seg *s = seg_alloc(dir, base_off);
	struct idx_hdr h;
	struct stat lst, ist;
	uint64_t nent = 0;
	int rc, rebuild = 0;

	if (!s)
		return -ENOMEM;
	s->log_fd = open(s->log_path, O_RDWR | O_CLOEXEC);
	if (s->log_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	s->idx_fd = open(s->idx_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->idx_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	if (fstat(s->log_fd, &lst) < 0 || fstat(s->idx_fd, &ist) < 0) {
		rc = -errno;
		goto out_free;
	}
	if (ist.st_size < IDX_HDR ||
	    io_pread(s->idx_fd, &h, sizeof(h), 0) != sizeof(h) || !hdr_ok(s, &h)) {
		rebuild = 1;
		rc = write_hdr(s, (int64_t)lst.st_mtim.tv_sec * 1000);
		if (rc < 0)
			goto out_free;
	} else {
		nent = ((uint64_t)ist.st_size - IDX_HDR) / ENT;
	}
	if (!rebuild && !full && (uint64_t)ist.st_size == IDX_HDR + nent * ENT &&
	    last_ok(s, nent, (uint64_t)lst.st_size)) {
		*out = s;
		return 0;
	}
	rc = scan(s, nent, rebuild,
		  (int64_t)lst.st_mtim.tv_sec * 1000 + lst.st_mtim.tv_nsec / 1000000);
	if (rc < 0)
		goto out_free;
	*out = s;
	return 0;
out_free:
	seg_free(s);
	return rc;
}

void seg_ref(struct seg *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void seg_unref(struct seg *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		seg_free(s);
}

int seg_remove(struct seg *s)
{
	int rc = 0;

	if (unlink(s->log_path) < 0 && errno != ENOENT)
		rc = -errno;
	if (unlink(s->idx_path) < 0 && errno != ENOENT && rc == 0)
		rc = -errno;
	return rc;
}

int seg_append(struct seg *s, const char *buf, size_t len, int64_t ts_ms)
{
	static __thread struct seg_entry ents[ENT_BATCH];
	const char *p = buf, *end = buf + len;
	uint64_t pos = s->bytes, n = 0, idx = s->nmsgs;
	int rc;

	rc = io_pwrite_all(s->log_fd, buf, len, (off_t)s->bytes);
	if (rc < 0)
		goto out_cut;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = (size_t)(nl - p);

		ents[n].pos = pos;
		ents[n].len = (uint32_t)l;
		ents[n].flags = 0;
		ents[n].ts_ms = ts_ms;
		ents[n].hash = XXH3_64bits(p, l);
		n++;
		pos += l + 1;
		p = nl + 1;
		if (n == ENT_BATCH || p == end) {
			rc = io_pwrite_all(s->idx_fd, ents, n * ENT,
					   (off_t)(IDX_HDR + idx * ENT));
			if (rc < 0)
				goto out_cut;
			idx += n;
			n = 0;
		}
	}
	s->nmsgs = idx;
	s->bytes = pos;
	s->last_ts = ts_ms;
	return 0;
out_cut:
	/* Readers never saw these bytes: bytes and nmsgs are unchanged. */
	(void)io_truncate(s->idx_fd, (off_t)(IDX_HDR + s->nmsgs * ENT));
	(void)io_truncate(s->log_fd, (off_t)s->bytes);
	return rc;
}

int seg_append_ents(struct seg *s, const char *buf, size_t len,
		    struct seg_entry *ents, size_t n)
{
	uint64_t pos = s->bytes;
	size_t done = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		ents[i].pos = pos;
		pos += (uint64_t)ents[i].len + 1;
	}
	if (pos - s->bytes != len)
		return -EINVAL;
	rc = io_pwrite_all(s->log_fd, buf, len, (off_t)s->bytes);
	while (rc == 0 && done < n) {
		size_t k = n - done < ENT_BATCH ? n - done : ENT_BATCH;

		rc = io_pwrite_all(s->idx_fd, ents + done, k * ENT,
				   (off_t)(IDX_HDR + (s->nmsgs + done) * ENT));
		done += k;
	}
	if (rc < 0) {
		(void)io_truncate(s->idx_fd, (off_t)(IDX_HDR + s->nmsgs * ENT));
		(void)io_truncate(s->log_fd, (off_t)s->bytes);
		return rc;
	}
	s->nmsgs += n;
	s->bytes = pos;
	if (n)
		s->last_ts = ents[n - 1].ts_ms;
	return 0;
}

void seg_writeback(struct seg *s, uint64_t pos, uint64_t nmsg)
{
	/* Start writing back now, without waiting: the fsync that follows
	 * then finds most of it on disk already. */
	(void)sync_file_range(s->log_fd, (off_t)pos, (off_t)(s->bytes - pos),
			      SYNC_FILE_RANGE_WRITE);
	(void)sync_file_range(s->idx_fd, (off_t)(IDX_HDR + nmsg * ENT),
			      (off_t)((s->nmsgs - nmsg) * ENT), SYNC_FILE_RANGE_WRITE);
}

int seg_truncate(struct seg *s, uint64_t n)
{
	struct seg_entry e;
	uint64_t bytes = 0;
	int64_t last = 0;
	int rc;

	if (n >= s->nmsgs)
		return 0;
	if (n > 0) {
		rc = seg_entry(s, n - 1, &e);
		if (rc < 0)
			return rc;
		bytes = e.pos + e.len + 1;
		last = e.ts_ms;
	}
	/* Index first: a crash in between leaves log bytes without entries,
	 * which recovery cuts, never entries without their lines. */
	rc = io_truncate(s->idx_fd, (off_t)(IDX_HDR + n * ENT));
	if (rc == 0)
		rc = io_truncate(s->log_fd, (off_t)bytes);
	if (rc == 0)
		rc = seg_sync(s);
	if (rc < 0)
		return rc;
	s->nmsgs = n;
	s->bytes = bytes;
	s->last_ts = last;
	return 0;
}

int seg_sync(struct seg *s)
{
	int rc = io_sync(s->log_fd);

	return rc < 0 ? rc : io_sync(s->idx_fd);
}

uint64_t seg_base(const struct seg *s) { return s->base_off; }
uint64_t seg_count(const struct seg *s) { return s->nmsgs; }
uint64_t seg_bytes(const struct seg *s) { return s->bytes; }
int64_t seg_last_ts(const struct seg *s) { return s->last_ts; }

ssize_t seg_read(struct seg *s, uint64_t pos, void *buf, size_t len)
{
	return io_pread(s->log_fd, buf, len, (off_t)pos);
}

int seg_entry(struct seg *s, uint64_t i, struct seg_entry *e)
{
	return seg_entries(s, i, 1, e);
}

int seg_entries(struct seg *s, uint64_t i, size_t n, struct seg_entry *e)
{
	ssize_t got = io_pread(s->idx_fd, e, n * ENT, (off_t)(IDX_HDR + i * ENT));

	if (got < 0)
		return (int)got;
	return (size_t)got == n * ENT ? 0 : -EIO;
}
