/*
 * Unit tests of replication's receiving end and the partition primitives
 * under it (core/replica.c, the "epochs and replicas" part of partition.c):
 *
 *   - replica_diverge: where a returning follower's log stops agreeing with
 *     its leader's (Kafka's leader-epoch rule and KIP-279), against hand
 *     worked cases and an offset-by-offset oracle;
 *   - the epoch history of a partition (part_set_epoch, part_epochs,
 *     part_epoch_at) and its file DIR/epochs;
 *   - part_append_ents, part_trim, part_truncate: a replica copying its
 *     leader's segments exactly, starting late, and dropping a tail;
 *   - the rx stream (replica_rx_*) against a real engine: every frame type,
 *     the same stream cut into writes of every size, refusals (sticky),
 *     epochs and roles, and the state text a leader reads back.
 *
 * Frames are built by hand here (put_frame and the f_* helpers), from the
 * layout in replica.h, so that these tests check the protocol as specified
 * rather than whatever the replicator happens to send.
 *
 * Tests that found bugs in core/ say "Was a bug:" where they check.
 */
#include "tap.h"
#include "engine.h"

#include <dirent.h>
#include <signal.h>
#include <inttypes.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "../../core/config.h"
#include "../../core/core.h"
#include "../../core/dlq.h"
#include "../../core/group.h"
#include "../../core/io.h"
#include "../../core/lease.h"
#include "../../core/mq.h"
#include "../../core/partition.h"
#include "../../core/replica.h"
#include "../../core/segment.h"
#include "../../core/topic.h"

/* ======================================================================
 * Helpers: engines, files
 * ====================================================================== */

/* The path sub inside the running test's tmpdir (not created here). */
static const char *subdir(const char *sub)
{
	static char d[4][400];
	static int k;
	char *p = d[k++ % 4];

	snprintf(p, sizeof(d[0]), "%s/%s", tap_dir, sub);
	return p;
}

/* A whole file into a malloc'ed buffer; NULL if it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, got;

	if (!f)
		return NULL;
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	*len = n;
	return buf;
}

static int exists(const char *dir, const char *name)
{
	char p[600];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The names of dir's regular files, sorted, '\n'-separated (static). */
static const char *listing(const char *dir)
{
	static char out[8192];
	static char names[128][256];
	struct dirent *de;
	DIR *d = opendir(dir);
	size_t n = 0, len = 0;

	out[0] = 0;
	if (!d)
		return out;
	while ((de = readdir(d)) && n < 128)
		if (de->d_name[0] != '.')
			snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_name);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s\n", names[i]);
	return out;
}

/* Segment name of base offset b. */
static const char *segname(uint64_t b, const char *ext)
{
	static char s[4][48];
	static int k;
	char *p = s[k++ % 4];

	snprintf(p, sizeof(s[0]), "%020" PRIu64 ".%s", b, ext);
	return p;
}

/*
 * Whether partition directories a and b hold the same files with the same
 * bytes. The one field allowed to differ is the .idx header's creation time
 * (bytes 24..31) and, with it, the header checksum (56..63): a segment's
 * file is made when the replica gets to it, not when the leader did.
 */
static int same_segments(const char *a, const char *b, int with_epochs)
{
	char la[8192];
	int same = 1;

	snprintf(la, sizeof(la), "%s", listing(a));
	if (strcmp(la, listing(b)) != 0) {
		printf("# files differ:\n# %s\n# vs\n# %s\n", la, listing(b));
		return 0;
	}
	for (char *name = strtok(la, "\n"); name; name = strtok(NULL, "\n")) {
		char pa[600], pb[600];
		size_t na = 0, nb = 0;
		char *x, *y;

		if (!with_epochs && !strcmp(name, "epochs"))
			continue;

		snprintf(pa, sizeof(pa), "%s/%s", a, name);
		snprintf(pb, sizeof(pb), "%s/%s", b, name);
		x = slurp(pa, &na);
		y = slurp(pb, &nb);
		if (x && y && strstr(name, ".idx") && na >= 64 && nb >= 64) {
			memset(x + 24, 0, 8);
			memset(y + 24, 0, 8);
			memset(x + 56, 0, 8);
			memset(y + 56, 0, 8);
		}
		if (!x || !y || na != nb || memcmp(x, y, na) != 0) {
			printf("# %s differs (%zu vs %zu bytes)\n", name, na, nb);
			same = 0;
		}
		free(x);
		free(y);
	}
	return same;
}

static int same_part_dirs(const char *a, const char *b)
{
	return same_segments(a, b, 1);
}

/* All bytes of a partition (part_read from its first retained byte). */
static size_t part_all(struct part *p, char *buf, size_t cap)
{
	struct part_stat st;
	ssize_t n;

	part_stat(p, &st);
	n = part_read(p, st.start_pos, buf, cap);
	return n < 0 ? 0 : (size_t)n;
}

/* A partition's history as "E:S,E:S" or "-" (static). */
static const char *history(struct part *p)
{
	static char out[4096];
	struct part_epoch ep[256];
	size_t n = part_epochs(p, ep, 256), len = 0;

	out[0] = 0;
	for (size_t i = 0; i < n && i < 256; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%" PRIu64 ":%" PRIu64,
					i ? "," : "", ep[i].epoch, ep[i].start);
	if (n == 0)
		snprintf(out, sizeof(out), "-");
	return out;
}

/* ======================================================================
 * Helpers: frames (replica.h) and feeding them to an rx
 * ====================================================================== */

struct stream {
	char *b;
	size_t len, cap;
};

static void stream_free(struct stream *s)
{
	free(s->b);
	memset(s, 0, sizeof(*s));
}

static struct repl_hdr hdr(uint16_t type, uint64_t epoch, uint64_t uid)
{
	struct repl_hdr h;

	memset(&h, 0, sizeof(h));
	h.type = type;
	h.epoch = epoch;
	h.uid = uid;
	return h;
}

/* Append one frame: header h (magic and lengths filled in here), the
 * names, the body; sealed. Returns where the frame starts in the stream. */
static size_t put_frame(struct stream *s, struct repl_hdr h, const char *topic,
			const char *group, const void *body, size_t blen)
{
	size_t tl = topic ? strlen(topic) : 0, gl = group ? strlen(group) : 0;
	size_t n = REPL_HDR + tl + gl + blen, at = s->len;
	char *f;

	while (s->len + n > s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->b = realloc(s->b, s->cap);
	}
	f = s->b + at;
	h.magic = REPL_MAGIC;
	h.tlen = (uint16_t)tl;
	h.glen = (uint16_t)gl;
	h.body = (uint32_t)blen;
	memcpy(f, &h, REPL_HDR);
	if (tl)
		memcpy(f + REPL_HDR, topic, tl);
	if (gl)
		memcpy(f + REPL_HDR + tl, group, gl);
	if (blen)
		memcpy(f + REPL_HDR + tl + gl, body, blen);
	/* frames follow each other unaligned: replica_seal must cope */
	replica_seal(f, n);
	s->len += n;
	return at;
}

static void f_topics(struct stream *s, uint64_t ep, const char *names)
{
	put_frame(s, hdr(REPL_TOPICS, ep, 0), NULL, NULL, names, strlen(names));
}

static void f_topic(struct stream *s, uint64_t ep, const char *t, uint64_t uid,
		    const char *cfg)
{
	put_frame(s, hdr(REPL_TOPIC, ep, uid), t, NULL, cfg, strlen(cfg));
}

/* MSGS: lines ("a\nbb\n"), timestamps ts0, ts0 + 1, ... */
static size_t f_msgs(struct stream *s, uint64_t ep, const char *t, uint64_t uid,
		     uint32_t part, uint64_t off, uint64_t seg_base, uint64_t mepoch,
		     const char *lines, int64_t ts0)
{
	size_t ll = strlen(lines), count = 0, blen, at;
	struct repl_hdr h = hdr(REPL_MSGS, ep, uid);
	char *body;

	for (size_t i = 0; i < ll; i++)
		count += lines[i] == '\n';
	blen = ll + count * sizeof(struct repl_ent);
	body = malloc(blen);
	memcpy(body, lines, ll);
	for (size_t i = 0, p = 0; i < count; i++) {
		const char *nl = strchr(lines + p, '\n');
		struct repl_ent e = { .len = (uint32_t)(nl - (lines + p)), .flags = 0,
				      .ts_ms = ts0 + (int64_t)i,
				      .hash = XXH3_64bits(lines + p, (size_t)(nl - (lines + p))) };

		memcpy(body + ll + i * sizeof(e), &e, sizeof(e));
		p = (size_t)(nl - lines) + 1;
	}
	h.part = part;
	h.off = off;
	h.aux = seg_base;
	h.mepoch = mepoch;
	h.count = (uint32_t)count;
	at = put_frame(s, h, t, NULL, body, blen);
	free(body);
	return at;
}

/* TRIM or TRUNC. */
static void f_cut(struct stream *s, uint16_t type, uint64_t ep, const char *t,
		  uint64_t uid, uint32_t part, uint64_t off)
{
	struct repl_hdr h = hdr(type, ep, uid);

	h.part = part;
	h.off = off;
	put_frame(s, h, t, NULL, NULL, 0);
}

static void f_groups(struct stream *s, uint64_t ep, const char *t, uint64_t uid,
		     const char *names)
{
	put_frame(s, hdr(REPL_GROUPS, ep, uid), t, NULL, names, strlen(names));
}

static void f_group(struct stream *s, uint64_t ep, const char *t, uint64_t uid,
		    const char *g, const uint64_t *offs, uint32_t n)
{
	struct repl_hdr h = hdr(REPL_GROUP, ep, uid);

	h.count = n;
	put_frame(s, h, t, g, offs, (size_t)n * 8);
}

static void f_deads(struct stream *s, uint64_t ep, const char *t, uint64_t uid,
		    const char *g, const uint32_t *parts, const uint64_t *offs, uint32_t n)
{
	struct repl_hdr h = hdr(REPL_DEADS, ep, uid);
	char body[16 * 16];

	memset(body, 0, sizeof(body));
	for (uint32_t i = 0; i < n; i++) {
		memcpy(body + 16 * i, &parts[i], 4);
		memcpy(body + 16 * i + 8, &offs[i], 8);
	}
	h.count = n;
	put_frame(s, h, t, g, body, (size_t)n * 16);
}

static void f_dead(struct stream *s, uint64_t ep, const char *t, uint64_t uid,
		   const char *g, uint32_t part, uint64_t off, uint64_t seq, int64_t ts,
		   int64_t failed_at, uint32_t deliveries, const char *reason,
		   const char *line)
{
	struct repl_hdr h = hdr(REPL_DEAD, ep, uid);
	struct repl_dead d = { .seq = seq, .ts_ms = ts, .failed_at_ms = failed_at,
			       .deliveries = deliveries,
			       .reason_len = (uint32_t)strlen(reason),
			       .line_len = (uint32_t)strlen(line), .zero = 0 };
	size_t blen = sizeof(d) + strlen(reason) + strlen(line);
	char *body = malloc(blen);

	memcpy(body, &d, sizeof(d));
	memcpy(body + sizeof(d), reason, strlen(reason));
	memcpy(body + sizeof(d) + strlen(reason), line, strlen(line));
	h.part = part;
	h.off = off;
	put_frame(s, h, t, g, body, blen);
	free(body);
}

/*
 * Write data (the stream's bytes from file position pos on) to rx in writes
 * of chunk bytes (0: all at once). Each write comes from its own buffer
 * (as the FUSE layer's would), placed so that every byte's address has
 * the alignment of its stream position. Returns 0, or the first refusal.
 */
static int feed(struct replica_rx *rx, uint64_t pos, const char *data, size_t len,
		size_t chunk)
{
	char *mem;
	int rc = 0;

	if (chunk == 0 || chunk > len)
		chunk = len;
	mem = malloc(chunk + 16);
	for (size_t at = 0; at < len && rc == 0;) {
		size_t n = len - at < chunk ? len - at : chunk;
		char *b = mem + (pos + at) % 8;
		ssize_t w;

		memcpy(b, data + at, n);
		w = replica_rx_write(rx, pos + at, b, n);
		if (w < 0)
			rc = (int)w;
		else if ((size_t)w != n)
			rc = -EIO;
		at += n;
	}
	free(mem);
	return rc;
}

/* A new rx, fed s whole, closed: 0 or the refusal. */
static int apply_stream(struct mq *m, const struct stream *s)
{
	struct replica_rx *rx;
	int rc = replica_rx_open(m, &rx);

	if (rc == 0)
		rc = feed(rx, 0, s->b, s->len, 0);
	if (rc == 0)
		rc = replica_rx_sync(rx);
	replica_rx_close(rx);
	return rc;
}

/* Topic config text: the defaults with kv ("k=v\n..." lines) applied. */
static const char *cfg_text(const char *kv)
{
	static char out[4][1024];
	static int k;
	char *p = out[k++ % 4];
	struct cfg_node n;
	const char *why;

	cfg_node_defaults(&n);
	n.topic.partitions = 1;	/* kv may ask for any count */
	if (cfg_topic_apply(&n.topic, kv, strlen(kv), &why) < 0 ||
	    cfg_topic_format(&n.topic, p, sizeof(out[0])) < 0) {
		printf("# bad test config %s: %s\n", kv, why);
		exit(2);
	}
	return p;
}

/*
 * Everything of the engine a replica copies, as text (malloc'ed): topics
 * with uid and config; per partition its counters, history, and every
 * message with its segment, timestamp and checksum; per group its committed
 * offsets and its dead letters in full.
 */
static char *dump(struct mq *m)
{
	char *out = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&out, &olen);
	uint32_t id = 0;
	struct topic *t;

	while ((t = mq_topic_next(m, id))) {
		char cfg[1024];
		int n = topic_config_text(t, cfg, sizeof(cfg));
		uint32_t gid = 0;
		struct cg *g;

		id = topic_id(t);
		fprintf(f, "topic %s %016" PRIx64 " %" PRIu32 " bytes %" PRIu64 "\n%.*s",
			topic_name(t), topic_uid(t), topic_nparts(t), topic_bytes(t),
			n > 0 ? n : 0, cfg);
		for (uint32_t i = 0; i < topic_nparts(t); i++) {
			struct part *p = topic_part(t, i);
			struct part_stat st;

			part_stat(p, &st);
			fprintf(f, "part %" PRIu32 " %" PRIu64 "..%" PRIu64 " bytes %" PRIu64
				" segs %" PRIu32 " %s\n", i, st.first, st.next,
				st.end_pos - st.start_pos, st.segments, history(p));
			for (uint64_t off = st.first; off < st.next;) {
				struct seg_entry e[16];
				char buf[4096];
				uint64_t base = 0;
				int k = part_read_ents(p, off, 16, buf, sizeof(buf), e, &base);

				if (k <= 0) {
					fprintf(f, "  read %" PRIu64 ": %d\n", off, k);
					break;
				}
				for (int j = 0; j < k; j++)
					fprintf(f, "  %" PRIu64 " seg %" PRIu64 " ts %" PRId64
						" %016" PRIx64 " %.*s\n", off + (uint64_t)j, base,
						e[j].ts_ms, e[j].hash, (int)e[j].len,
						buf + (e[j].pos - e[0].pos));
				off += (uint64_t)k;
			}
		}
		while ((g = topic_group_next(t, gid))) {
			struct lease_dead_key *keys = NULL;
			size_t nk = 0;

			gid = cg_id(g);
			fprintf(f, "group %s", cg_name(g));
			for (uint32_t i = 0; i < topic_nparts(t); i++)
				fprintf(f, " %" PRIu64, cg_committed(g, i));
			fprintf(f, "\n");
			if (lease_dead_keys(cg_lease(g), &keys, &nk) < 0)
				fprintf(f, "  dead: error\n");
			for (size_t i = 0; i < nk; i++) {
				struct dlq_entry d;
				char *text = NULL;
				size_t len = 0;

				if (lease_dead_get(cg_lease(g), keys[i].part, keys[i].off, &d,
						   &text, &len) < 0) {
					fprintf(f, "  dead %" PRIu32 ":%" PRIu64 " missing\n",
						keys[i].part, keys[i].off);
					continue;
				}
				fprintf(f, "  dead %" PRIu32 ":%" PRIu64 " seq %" PRIu64 " ts %" PRId64
					" failed %" PRId64 " deliveries %" PRIu32 " [%s] %.*s",
					d.part, d.off, d.seq, d.ts_ms, d.failed_at_ms, d.deliveries,
					d.reason, (int)len, text);
				free(text);
			}
			free(keys);
			cg_unref(g);
		}
		topic_unref(t);
	}
	fclose(f);
	return out;
}

/* The state text (NUL-terminated, malloc'ed). */
static char *state(struct mq *m)
{
	char *s = NULL;
	size_t n = 0;

	if (replica_state_text(m, &s, &n) < 0)
		return strdup("(error)");
	s = realloc(s, n + 1);
	s[n] = 0;
	return s;
}

/* ======================================================================
 * 1. replica_diverge
 * ====================================================================== */

#define H(...) ((const struct part_epoch[]){ __VA_ARGS__ })
#define NH(...) (sizeof((const struct part_epoch[]){ __VA_ARGS__ }) / sizeof(struct part_epoch))

static void diverge_agreeing_logs_keep_everything(void)
{
	/* identical histories, the follower behind or level: nothing to cut */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 80 }), 2, 150,
				 H({ 1, 0 }, { 2, 80 }), 2, 120), 120);
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 80 }), 2, 150,
				 H({ 1, 0 }, { 2, 80 }), 2, 150), 150);
	/* follower behind, its history a prefix of the leader's */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 50 }), 2, 100, H({ 1, 0 }), 1, 30), 30);
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 50 }), 2, 100, H({ 1, 0 }), 1, 50), 50);
	/* an empty follower has nothing to cut */
	CHECK_EQ(replica_diverge(H({ 1, 0 }), 1, 10, NULL, 0, 0), 0);
	/* both without history: everything is epoch 0 */
	CHECK_EQ(replica_diverge(NULL, 0, 10, NULL, 0, 5), 5);
	/* epoch-0 messages before the leader's first epoch agree */
	CHECK_EQ(replica_diverge(H({ 2, 10 }), 1, 20, NULL, 0, 8), 8);
}

static void diverge_cuts_what_the_leader_never_had(void)
{
	/* follower ahead with a later epoch the leader never had: cut to
	 * where the leader's epoch 2 ended on the follower */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 50 }), 2, 100,
				 H({ 1, 0 }, { 2, 50 }, { 3, 90 }), 3, 120), 90);
	/* the same, the leader having written less of epoch 2 than the
	 * follower got: cut to the leader's end */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 50 }), 2, 70,
				 H({ 1, 0 }, { 2, 50 }, { 3, 90 }), 3, 120), 70);
	/* follower ahead in the leader's own last epoch (the leader lost an
	 * unsynced tail): the leader's end */
	CHECK_EQ(replica_diverge(H({ 1, 0 }), 1, 100, H({ 1, 0 }), 1, 120), 100);
	/* the follower kept writing epoch 1 after the leader moved on */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 80 }), 2, 150, H({ 1, 0 }), 1, 100), 80);
	/* follower's own epoch 2 began where the leader still had epoch 1 */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 3, 50 }), 2, 80,
				 H({ 1, 0 }, { 2, 30 }), 2, 45), 30);
	/* histories that disagree from the start */
	CHECK_EQ(replica_diverge(H({ 1, 0 }), 1, 10, NULL, 0, 5), 0);
	CHECK_EQ(replica_diverge(NULL, 0, 10, H({ 1, 0 }), 1, 5), 0);
	CHECK_EQ(replica_diverge(H({ 2, 0 }), 1, 10, H({ 1, 0 }), 1, 5), 0);
}

static void diverge_kip279_follows_the_leader_epoch_down(void)
{
	/*
	 * The KIP-279 case. Leader {1:0, 2:80} next 150; follower {1:0, 3:100}
	 * next 120. The follower holds 80..99 under epoch 1, the leader holds
	 * 80..149 under epoch 2: different messages at the same offsets, so
	 * the logs agree only up to 80. Kafka gets there in two rounds: the
	 * leader answers epoch 2 (end 150), the follower lacks epoch 2 and
	 * truncates to the end of its epoch 1 (100) as an *intermediate*
	 * step (truncationCompleted = false), asks again for epoch 1, gets 80
	 * and truncates to min(80, 100) = 80.
	 *
	 * Was a bug: replica_diverge did one round only and returned 100, and
	 * the replicator (replication/repl.c mirror_get) took that as final:
	 * the follower kept 80..99 of epoch 1 and got the leader's 100.. on
	 * top. It now repeats until the cut stops moving.
	 */
	uint64_t cut = replica_diverge(H({ 1, 0 }, { 2, 80 }), 2, 150,
				       H({ 1, 0 }, { 3, 100 }), 2, 120);

	CHECK_EQ(cut, 80);
	/* A divergence point must be a fixed point: once the follower is cut
	 * there, nothing more diverges. Cut to 100 (history {1:0}), asking
	 * again says 80, which shows 100 was not where the logs part. */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 2, 80 }), 2, 150, H({ 1, 0 }), 1, 100), 80);
	/* More rounds: leader {1:0,3:50,5:90}, follower {1:0,2:40,4:70,6:100}:
	 * offset 40 is epoch 2 on the follower, 1 on the leader. */
	CHECK_EQ(replica_diverge(H({ 1, 0 }, { 3, 50 }, { 5, 90 }), 3, 120,
				 H({ 1, 0 }, { 2, 40 }, { 4, 70 }, { 6, 100 }), 4, 110), 40);
}

/* The epoch of offset off under history h (epoch 0 before the first). */
static uint64_t epoch_of(const struct part_epoch *h, size_t n, uint64_t off)
{
	uint64_t e = 0;

	for (size_t i = 0; i < n && h[i].start <= off; i++)
		e = h[i].epoch;
	return e;
}

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(uint64_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state % n;
}

/* Continue history h (n entries, next *next) with k new epochs drawn from
 * pool (ascending, unused ones only), each holding 1..20 messages; the
 * last epoch of the common part may first get more messages. */
static size_t grow_history(struct part_epoch *h, size_t n, uint64_t *next,
			   const uint64_t *pool, size_t npool, size_t k)
{
	*next += rnd(15);
	for (size_t i = 0, p = 0; i < k && p < npool; i++) {
		p += rnd(2);
		if (p >= npool)
			break;
		h[n].epoch = pool[p++];
		h[n].start = *next;
		n++;
		*next += 1 + rnd(20);
	}
	return n;
}

static void diverge_matches_an_offset_by_offset_comparison(void)
{
	/*
	 * Random histories as a cluster makes them: a common prefix, then the
	 * leader and the follower each go on with epochs of their own (one
	 * leader per epoch, so an epoch never appears on both sides after the
	 * split). Two messages at the same offset are the same message iff
	 * their epochs are equal, so the logs agree up to the first offset
	 * where the epochs differ, and then only up to the shorter log. The
	 * answer must be that offset (or next_f if the follower is a prefix).
	 * Fails with the KIP-279 bug above.
	 */
	int bad = 0;

	for (int iter = 0; iter < 20000 && bad < 3; iter++) {
		struct part_epoch c[8], l[32], f[32];
		uint64_t pool_l[16], pool_f[16], next_c = 0, next_l, next_f, e = 0, want, got;
		size_t nc = 0, nl, nf, npl = 0, npf = 0;

		/* the common part */
		for (size_t i = 0, k = rnd(4); i < k; i++) {
			e += 1 + rnd(2);
			c[nc].epoch = e;
			c[nc].start = next_c;
			nc++;
			next_c += rnd(30);
		}
		/* later epochs, dealt to one side or the other */
		for (uint64_t x = e + 1; x <= e + 12; x++) {
			if (rnd(2))
				pool_l[npl++] = x;
			else
				pool_f[npf++] = x;
		}
		memcpy(l, c, nc * sizeof(*c));
		memcpy(f, c, nc * sizeof(*c));
		next_l = next_f = next_c;
		nl = grow_history(l, nc, &next_l, pool_l, npl, rnd(4));
		nf = grow_history(f, nc, &next_f, pool_f, npf, rnd(4));
		/* the follower may also be a plain prefix of the leader */
		if (rnd(4) == 0) {
			nf = nl;
			memcpy(f, l, nl * sizeof(*l));
			next_f = rnd(next_l + 1);
			while (nf && f[nf - 1].start > next_f)
				nf--;
		}
		want = next_f < next_l ? next_f : next_l;
		for (uint64_t o = 0; o < want; o++)
			if (epoch_of(l, nl, o) != epoch_of(f, nf, o)) {
				want = o;
				break;
			}
		got = replica_diverge(l, nl, next_l, f, nf, next_f);
		if (got != want) {
			bad++;
			printf("#   leader");
			for (size_t i = 0; i < nl; i++)
				printf(" %" PRIu64 ":%" PRIu64, l[i].epoch, l[i].start);
			printf(" next %" PRIu64 "; follower", next_l);
			for (size_t i = 0; i < nf; i++)
				printf(" %" PRIu64 ":%" PRIu64, f[i].epoch, f[i].start);
			printf(" next %" PRIu64 ": got %" PRIu64 ", logs part at %" PRIu64 "\n",
			       next_f, got, want);
		}
	}
	CHECK_EQ(bad, 0);
}

/* ======================================================================
 * 2. the epoch history of a partition
 * ====================================================================== */

static void part_epochs_record_each_rise_and_survive_reopen(void)
{
	const char *dir = tmpdir();
	static _Atomic uint64_t ep;
	struct part *p;
	uint64_t e, until;
	size_t len;
	char *text;

	ep = 0;
	CHECK_EQ(part_open(dir, &p), 0);
	part_set_epoch(p, &ep);
	/* epoch 0 (a follower's own appends): nothing recorded */
	CHECK_EQ(part_append(p, "a\n", 2, 1, 1 << 20, 1), 0);
	CHECK(!strcmp(history(p), "-"));
	CHECK(!exists(dir, "epochs"));
	ep = 3;
	CHECK_EQ(part_append(p, "b\nc\n", 4, 1, 1 << 20, 1), 0);	/* 1, 2 */
	CHECK_EQ(part_append(p, "d\n", 2, 1, 1 << 20, 1), 0);	/* 3: same epoch */
	ep = 2;	/* a lower value (never happens): not recorded either */
	CHECK_EQ(part_append(p, "e\n", 2, 1, 1 << 20, 1), 0);	/* 4 */
	ep = 7;
	CHECK_EQ(part_append(p, "f\n", 2, 1, 1 << 20, 1), 0);	/* 5 */
	CHECK(!strcmp(history(p), "3:1,7:5"));
	text = slurp(subdir("epochs"), &len);
	CHECK(text && len == 8 && !memcmp(text, "3 1\n7 5\n", 8));
	free(text);
	/* per offset: epoch 0 before the first entry; until = next start */
	part_epoch_at(p, 0, &e, &until);
	CHECK_EQ(e, 0);
	CHECK_EQ(until, 1);
	for (uint64_t off = 1; off < 5; off++) {
		part_epoch_at(p, off, &e, &until);
		CHECK_EQ(e, 3);
		CHECK_EQ(until, 5);
	}
	part_epoch_at(p, 5, &e, &until);
	CHECK_EQ(e, 7);
	CHECK(until == UINT64_MAX);
	part_epoch_at(p, 1000, &e, &until);	/* past the end: the last */
	CHECK_EQ(e, 7);
	part_close(p);

	CHECK_EQ(part_open(dir, &p), 0);
	CHECK(!strcmp(history(p), "3:1,7:5"));
	part_epoch_at(p, 2, &e, &until);
	CHECK_EQ(e, 3);
	CHECK_EQ(until, 5);
	/* no source set after reopen (NULL = 0): appends record nothing */
	CHECK_EQ(part_append(p, "g\n", 2, 1, 1 << 20, 1), 0);
	CHECK(!strcmp(history(p), "3:1,7:5"));
	/* the next rise is recorded at the offset where it starts */
	ep = 8;
	part_set_epoch(p, &ep);
	CHECK_EQ(part_append(p, "h\n", 2, 1, 1 << 20, 1), 0);
	CHECK(!strcmp(history(p), "3:1,7:5,8:7"));
	part_close(p);
}

static void part_epochs_load_drops_entries_past_the_log(void)
{
	/* A crash after the history line, before its messages: the line is
	 * dropped, and so is a torn last line. */
	const char *dir = tmpdir();
	static _Atomic uint64_t ep;
	struct part *p;
	FILE *f;

	ep = 1;
	CHECK_EQ(part_open(dir, &p), 0);
	part_set_epoch(p, &ep);
	CHECK_EQ(part_append(p, "a\nb\n", 4, 1, 1 << 20, 1), 0);
	part_close(p);
	f = fopen(subdir("epochs"), "a");
	fputs("2 2\n3 9\n4 1", f);	/* 2:2 is at next: kept; 3:9 is past it */
	fclose(f);
	CHECK_EQ(part_open(dir, &p), 0);
	CHECK(!strcmp(history(p), "1:0,2:2"));
	part_close(p);
}

/* ======================================================================
 * 3. part_append_ents: a replica's copy of its leader's partition
 * ====================================================================== */

/* part_append_ents without asking for early writeback (these tests look at
 * what was appended, not at when it reaches the disk). */
static int append_ents(struct part *p, uint64_t seg_base, uint64_t off, uint64_t epoch,
		       const char *buf, size_t len, struct seg_entry *e, size_t n)
{
	return part_append_ents(p, seg_base, off, epoch, buf, len, e, n, 0);
}

/*
 * Copy leader L from offset *off to follower F the way the replicator does:
 * part_read_ents (one segment per call, at most max messages, never across
 * an epoch change, since a frame carries one epoch), then part_append_ents
 * with the leader's segment base. Returns the number of calls.
 */
static int copy_part(struct part *L, struct part *F, uint64_t *off, uint32_t max,
		     int writeback)
{
	struct seg_entry e[64];
	char buf[8192];
	int calls = 0;

	for (;;) {
		uint64_t ep, until, base = UINT64_MAX;
		uint32_t m = max;
		size_t len;
		int n, rc;

		part_epoch_at(L, *off, &ep, &until);
		if (until - *off < m)
			m = (uint32_t)(until - *off);
		n = part_read_ents(L, *off, m, buf, sizeof(buf), e, &base);
		if (n <= 0) {
			CHECK_EQ(n, 0);
			break;
		}
		len = (size_t)(e[n - 1].pos + e[n - 1].len + 1 - e[0].pos);
		rc = part_append_ents(F, base, *off, ep, buf, len, e, (size_t)n, writeback);
		CHECK_EQ(rc, n);
		if (rc != n)
			break;
		*off += (uint64_t)n;
		calls++;
	}
	return calls;
}

static void part_append_ents_reproduces_the_leaders_segments(void)
{
	static _Atomic uint64_t lep;
	char ldir[400], fdir[400];
	static char a[8192], b[8192];
	struct part_stat sl, sf;
	struct part *L, *F;
	uint64_t off = 0;
	size_t na, nb;

	tmpdir();
	snprintf(ldir, sizeof(ldir), "%s", subdir("L"));
	snprintf(fdir, sizeof(fdir), "%s", subdir("F"));
	CHECK_EQ(part_open(ldir, &L), 0);
	CHECK_EQ(part_open(fdir, &F), 0);
	part_set_epoch(L, &lep);
	/* messages of varied lengths, some appended together, under epochs
	 * 1, 2 and 4, in 40-byte segments */
	for (int i = 0; i < 30; i++) {
		char lines[128];
		int n = snprintf(lines, sizeof(lines), "m%d-%.*s\n", i, i % 7, "xxxxxxx");

		if (i % 5 == 0)
			n += snprintf(lines + n, sizeof(lines) - (size_t)n, "pair%d\n", i);
		lep = i < 10 ? 1 : i < 20 ? 2 : 4;
		CHECK_EQ(part_append(L, lines, (size_t)n, 1000 + i, 40, 0), 0);
	}
	part_stat(L, &sl);
	CHECK(sl.segments > 4);
	/* batches of 3, crossing the leader's segment and epoch boundaries */
	CHECK(copy_part(L, F, &off, 3, 0) > 0);
	CHECK_EQ(off, sl.next);
	part_stat(F, &sf);
	CHECK_EQ(sf.first, sl.first);
	CHECK_EQ(sf.next, sl.next);
	CHECK_EQ(sf.end_pos, sl.end_pos);
	CHECK_EQ(sf.segments, sl.segments);
	CHECK_EQ(sf.last_ts, sl.last_ts);
	CHECK(!strcmp(history(F), "1:0,2:12,4:24"));
	CHECK(!strcmp(history(F), history(L)));
	CHECK(same_part_dirs(ldir, fdir));
	na = part_all(L, a, sizeof(a));
	nb = part_all(F, b, sizeof(b));
	CHECK(na > 0 && na == nb && !memcmp(a, b, na));

	/* the leader goes on (a new epoch, more rolls); the replica follows
	 * incrementally and stays identical, through a reopen too, and with
	 * early writeback asked for */
	lep = 6;
	for (int i = 30; i < 45; i++) {
		char line[32];
		int n = snprintf(line, sizeof(line), "later%d\n", i);

		CHECK_EQ(part_append(L, line, (size_t)n, 2000 + i, 40, 0), 0);
	}
	part_close(F);
	CHECK_EQ(part_open(fdir, &F), 0);
	CHECK(copy_part(L, F, &off, 5, 1) > 0);
	CHECK(same_part_dirs(ldir, fdir));
	CHECK(!strcmp(history(F), history(L)));

	/* re-sending what the replica holds is a no-op */
	{
		struct seg_entry e[8];
		char buf[512];
		uint64_t base, ep, until;
		int n = part_read_ents(L, 0, 3, buf, sizeof(buf), e, &base);
		size_t len = (size_t)(e[n - 1].pos + e[n - 1].len + 1 - e[0].pos);

		CHECK_EQ(n, 3);
		part_epoch_at(L, 0, &ep, &until);
		part_stat(F, &sf);
		CHECK_EQ(append_ents(F, base, 0, ep, buf, len, e, (size_t)n), 0);
		part_stat(F, &sl);
		CHECK_EQ(sl.next, sf.next);
		CHECK_EQ(sl.end_pos, sf.end_pos);
		CHECK(same_part_dirs(ldir, fdir));
	}
	part_close(L);
	part_close(F);
}

static void part_append_ents_skips_what_it_holds_and_refuses_gaps(void)
{
	static _Atomic uint64_t one = 1;
	char ldir[400], fdir[400];
	struct seg_entry e[8];
	char buf[256], a[256], b[256];
	struct part_stat st;
	struct part *L, *F;
	uint64_t base;
	size_t len;
	int n;

	tmpdir();
	snprintf(ldir, sizeof(ldir), "%s", subdir("L"));
	snprintf(fdir, sizeof(fdir), "%s", subdir("F"));
	CHECK_EQ(part_open(ldir, &L), 0);
	CHECK_EQ(part_open(fdir, &F), 0);
	part_set_epoch(L, &one);	/* the leader writes under epoch 1 */
	CHECK_EQ(part_append(L, "m0\nm1\nm2\nm3\nm4\n", 15, 7, 1 << 20, 0), 0);

	/* a range starting past the end is a gap: nothing appended */
	n = part_read_ents(L, 2, 2, buf, sizeof(buf), e, &base);
	CHECK_EQ(n, 2);
	CHECK_EQ(append_ents(F, base, 2, 1, buf, 6, e, 2), -ERANGE);
	part_stat(F, &st);
	CHECK_EQ(st.next, 0);
	CHECK_EQ(st.end_pos, 0);
	CHECK(!strcmp(history(F), "-"));

	/* 0..2, then 1..4: only 3 and 4 are new */
	n = part_read_ents(L, 0, 3, buf, sizeof(buf), e, &base);
	CHECK_EQ(append_ents(F, base, 0, 1, buf, 9, e, 3), 3);
	n = part_read_ents(L, 1, 4, buf, sizeof(buf), e, &base);
	CHECK_EQ(n, 4);
	len = (size_t)(e[n - 1].pos + e[n - 1].len + 1 - e[0].pos);
	CHECK_EQ(append_ents(F, base, 1, 1, buf, len, e, (size_t)n), 2);
	part_stat(F, &st);
	CHECK_EQ(st.next, 5);
	CHECK_EQ(st.end_pos, 15);
	CHECK_EQ(st.segments, 1);
	CHECK_EQ(part_all(F, a, sizeof(a)), 15);
	CHECK_EQ(part_all(L, b, sizeof(b)), 15);
	CHECK(!memcmp(a, b, 15));
	CHECK(same_part_dirs(ldir, fdir));
	/* and all of it again: 0 appended, nothing changes */
	CHECK_EQ(append_ents(F, base, 1, 1, buf, len, e, (size_t)n), 0);
	part_stat(F, &st);
	CHECK_EQ(st.next, 5);
	CHECK_EQ(st.end_pos, 15);
	CHECK(same_part_dirs(ldir, fdir));
	part_close(L);
	part_close(F);
}

/* ======================================================================
 * 4. part_trim
 * ====================================================================== */

/* Messages "m0".."m(n-1)" (3 bytes each while n <= 10), one per append. */
static void fill(struct part *p, int from, int n, uint64_t segment_bytes)
{
	for (int i = from; i < from + n; i++) {
		char line[16];
		int len = snprintf(line, sizeof(line), "m%d\n", i);

		CHECK_EQ(part_append(p, line, (size_t)len, 1000 + i, segment_bytes, 0), 0);
	}
}

static void part_trim_deletes_whole_segments_below(void)
{
	const char *dir = tmpdir();
	struct part_stat st;
	struct part *p;
	char buf[64];

	CHECK_EQ(part_open(dir, &p), 0);
	fill(p, 0, 10, 9);	/* [0,3) [3,6) [6,9) [9,10) */
	/* below the first: nothing */
	CHECK_EQ(part_trim(p, 0), 0);
	/* 4 is inside [3,6): only [0,3) goes */
	CHECK_EQ(part_trim(p, 4), 9);
	part_stat(p, &st);
	CHECK_EQ(st.first, 3);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.segments, 3);
	CHECK(!exists(dir, segname(0, "log")));
	CHECK(!exists(dir, segname(0, "idx")));
	/* exactly at a segment's base: everything before it goes */
	CHECK_EQ(part_trim(p, 6), 9);
	part_stat(p, &st);
	CHECK_EQ(st.first, 6);
	CHECK_EQ(st.end_pos - st.start_pos, 12);
	CHECK_EQ(part_read(p, 0, buf, sizeof(buf)), 12);
	CHECK(!memcmp(buf, "m6\nm7\nm8\nm9\n", 12));
	CHECK_EQ(part_trim(p, 6), 0);
	part_close(p);
	/* durable: the files are gone */
	CHECK_EQ(part_open(dir, &p), 0);
	part_stat(p, &st);
	CHECK_EQ(st.first, 6);
	CHECK_EQ(st.next, 10);
	/* past everything: the partition starts over, empty, at first */
	CHECK_EQ(part_trim(p, 25), 12);
	part_stat(p, &st);
	CHECK_EQ(st.first, 25);
	CHECK_EQ(st.next, 25);
	CHECK_EQ(st.segments, 1);
	CHECK_EQ(st.end_pos, st.start_pos);
	CHECK(!strcmp(listing(dir), "00000000000000000025.idx\n00000000000000000025.log\n"));
	part_close(p);
}

static void part_trim_starts_an_empty_replica_late(void)
{
	static _Atomic uint64_t one = 1;
	char ldir[400], fdir[400];
	struct seg_entry e[8];
	struct part_stat st;
	struct part *L, *F;
	char buf[256];
	uint64_t base;
	int n;

	tmpdir();
	snprintf(ldir, sizeof(ldir), "%s", subdir("L"));
	snprintf(fdir, sizeof(fdir), "%s", subdir("F"));
	CHECK_EQ(part_open(ldir, &L), 0);
	part_set_epoch(L, &one);	/* the leader writes under epoch 1 */
	fill(L, 0, 10, 9);
	CHECK_EQ(part_trim(L, 6), 18);	/* the leader retains [6,10) */

	/* the empty follower starts where the leader's log starts */
	CHECK_EQ(part_open(fdir, &F), 0);
	CHECK_EQ(part_trim(F, 6), 0);
	part_stat(F, &st);
	CHECK_EQ(st.first, 6);
	CHECK_EQ(st.next, 6);
	CHECK_EQ(st.segments, 1);
	CHECK(!exists(fdir, segname(0, "log")));
	CHECK(exists(fdir, segname(6, "log")));
	/* below first, the replica has a gap */
	n = part_read_ents(L, 6, 8, buf, sizeof(buf), e, &base);
	CHECK_EQ(n, 3);
	CHECK_EQ(base, 6);
	CHECK_EQ(append_ents(F, base, 6, 1, buf, 9, e, 3), 3);
	n = part_read_ents(L, 9, 8, buf, sizeof(buf), e, &base);
	CHECK_EQ(n, 1);
	CHECK_EQ(append_ents(F, base, 9, 1, buf, 3, e, 1), 1);
	part_stat(F, &st);
	CHECK_EQ(st.first, 6);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.segments, 2);
	CHECK_EQ(part_read(F, st.start_pos, buf, sizeof(buf)), 12);
	CHECK(!memcmp(buf, "m6\nm7\nm8\nm9\n", 12));
	part_close(F);
	/* as it reopens */
	CHECK_EQ(part_open(fdir, &F), 0);
	part_stat(F, &st);
	CHECK_EQ(st.first, 6);
	CHECK_EQ(st.next, 10);
	/* the same segments; the history starts where the replica did */
	CHECK(same_segments(ldir, fdir, 0));
	CHECK(!strcmp(history(F), "1:6"));
	part_close(F);
	part_close(L);
}

/* ======================================================================
 * 5. part_truncate
 * ====================================================================== */

/* Ten 3-byte messages in 9-byte segments: [0,3) [3,6) [6,9) [9,10), epochs
 * 1 from 0, 2 from 5, 3 from 9. */
static struct part *truncate_fixture(const char *dir)
{
	static _Atomic uint64_t ep;
	struct part *p;

	CHECK_EQ(part_open(dir, &p), 0);
	part_set_epoch(p, &ep);
	ep = 1;
	fill(p, 0, 5, 9);
	ep = 2;
	fill(p, 5, 4, 9);
	ep = 3;
	fill(p, 9, 1, 9);
	part_set_epoch(p, NULL);
	CHECK(!strcmp(history(p), "1:0,2:5,3:9"));
	return p;
}

static void part_truncate_cuts_inside_a_segment(void)
{
	const char *dir = tmpdir();
	struct part_stat st;
	struct seg_entry e[4];
	struct part *p = truncate_fixture(dir);
	char buf[64];
	uint64_t base;

	fill(p, 10, 2, 9);	/* [9,12) full: m9, m10, m11 (3 + 4 + 4 bytes) */
	CHECK_EQ(part_truncate(p, 10), 8);
	part_stat(p, &st);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.end_pos, 30);
	CHECK_EQ(st.segments, 4);
	CHECK(!strcmp(history(p), "1:0,2:5,3:9"));	/* 3 began before 10 */
	/* at or past the end: nothing */
	CHECK_EQ(part_truncate(p, 10), 0);
	CHECK_EQ(part_truncate(p, 99), 0);
	part_close(p);
	CHECK_EQ(part_open(dir, &p), 0);
	part_stat(p, &st);
	CHECK_EQ(st.next, 10);
	CHECK_EQ(st.end_pos, 30);
	/* appends go on at 10 in the same segment */
	CHECK_EQ(append_ents(p, 9, 10, 5, "zz\n", 3,
				  (struct seg_entry[]){ { 0, 2, 0, 77, XXH3_64bits("zz", 2) } }, 1), 1);
	CHECK_EQ(part_read_ents(p, 9, 4, buf, sizeof(buf), e, &base), 2);
	CHECK_EQ(base, 9);
	CHECK(!memcmp(buf, "m9\nzz\n", 6));
	CHECK_EQ(e[1].ts_ms, 77);
	CHECK(!strcmp(history(p), "1:0,2:5,3:9,5:10"));
	part_close(p);
}

static void part_truncate_cuts_across_segments_and_drops_later_epochs(void)
{
	const char *dir = tmpdir();
	static _Atomic uint64_t ep;
	struct part_stat st;
	struct part *p = truncate_fixture(dir);
	char buf[64];
	size_t len;
	char *text;

	/* 7 is inside [6,9): [9,10) goes, [6,9) keeps 6 */
	CHECK_EQ(part_truncate(p, 7), 9);
	part_stat(p, &st);
	CHECK_EQ(st.first, 0);
	CHECK_EQ(st.next, 7);
	CHECK_EQ(st.end_pos, 21);
	CHECK_EQ(st.segments, 3);
	CHECK(!exists(dir, segname(9, "log")));
	CHECK(!exists(dir, segname(9, "idx")));
	CHECK(!strcmp(history(p), "1:0,2:5"));
	/* an epoch that begins exactly at the cut goes too */
	CHECK_EQ(part_truncate(p, 5), 6);
	CHECK(!strcmp(history(p), "1:0"));
	text = slurp(subdir("epochs"), &len);
	CHECK(text && len == 4 && !memcmp(text, "1 0\n", 4));
	free(text);
	part_stat(p, &st);
	CHECK_EQ(st.next, 5);
	CHECK_EQ(st.end_pos, 15);
	CHECK(!exists(dir, segname(6, "log")));
	part_close(p);

	/* durable: the same state after reopening */
	CHECK_EQ(part_open(dir, &p), 0);
	part_stat(p, &st);
	CHECK_EQ(st.next, 5);
	CHECK_EQ(st.end_pos, 15);
	CHECK_EQ(st.segments, 2);
	CHECK(!strcmp(history(p), "1:0"));
	CHECK_EQ(part_read(p, 0, buf, sizeof(buf)), 15);
	CHECK(!memcmp(buf, "m0\nm1\nm2\nm3\nm4\n", 15));
	/* appends go on from the cut under a new epoch */
	ep = 4;
	part_set_epoch(p, &ep);
	CHECK_EQ(part_append(p, "new\n", 4, 5000, 9, 0), 0);
	part_stat(p, &st);
	CHECK_EQ(st.next, 6);
	CHECK(!strcmp(history(p), "1:0,4:5"));
	CHECK_EQ(part_read(p, 15, buf, sizeof(buf)), 4);
	CHECK(!memcmp(buf, "new\n", 4));
	part_set_epoch(p, NULL);

	/* at a segment's base: the segment stays, empty; to 0: all gone */
	CHECK_EQ(part_truncate(p, 3), 10);
	part_stat(p, &st);
	CHECK_EQ(st.next, 3);
	CHECK_EQ(st.end_pos, 9);
	CHECK(!strcmp(history(p), "1:0"));
	CHECK_EQ(part_truncate(p, 0), 9);
	part_stat(p, &st);
	CHECK_EQ(st.next, 0);
	CHECK_EQ(st.end_pos - st.start_pos, 0);
	CHECK(!strcmp(history(p), "-"));
	part_close(p);
	CHECK_EQ(part_open(dir, &p), 0);
	part_stat(p, &st);
	CHECK_EQ(st.next, 0);
	CHECK(!strcmp(history(p), "-"));
	fill(p, 0, 1, 9);
	CHECK_EQ(part_read(p, 0, buf, sizeof(buf)), 3);
	CHECK(!memcmp(buf, "m0\n", 3));
	part_close(p);
}

static void part_truncate_below_first_starts_over(void)
{
	const char *dir = tmpdir();
	struct part_stat st;
	struct part *p = truncate_fixture(dir);

	CHECK_EQ(part_trim(p, 6), 18);	/* holds [6,10) */
	/* the leader's log ends at 4: nothing of ours is kept */
	CHECK_EQ(part_truncate(p, 4), 12);
	part_stat(p, &st);
	CHECK_EQ(st.first, 4);
	CHECK_EQ(st.next, 4);
	CHECK_EQ(st.segments, 1);
	CHECK(!strcmp(history(p), "1:0"));
	part_close(p);
	CHECK_EQ(part_open(dir, &p), 0);
	part_stat(p, &st);
	CHECK_EQ(st.first, 4);
	CHECK_EQ(st.next, 4);
	part_close(p);
}

/* ======================================================================
 * 6. the rx stream against an engine
 * ====================================================================== */

#define FOLLOWER "role=follower,partitions=1,sync=none"
#define U1 0x1111222233334444ull
#define U2 0x5555666677778888ull
#define U3 0x0123456789abcdefull
#define G "consume"

static void rx_applies_every_frame_type(void)
{
	const char *cfg2 = cfg_text("partitions=2\nsync=none\nsegment_bytes=4096\n");
	const char *cfg1 = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	struct lease_dead_key *keys = NULL;
	struct dlq_entry d;
	struct seg_entry e[4];
	struct mq *m;
	struct topic *t;
	struct cg *g;
	char buf[256], now[1024], *text = NULL;
	size_t nk = 0, len = 0;
	uint64_t base;
	uint64_t offs[2] = { 2, 7 };	/* 7 is past partition 1's end */

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 1, "t", U1, cfg2);
	f_msgs(&s, 1, "t", U1, 0, 0, 0, 1, "a\nbb\nccc\n", 1000);
	f_msgs(&s, 1, "t", U1, 1, 0, 0, 1, "x\n", 2000);
	f_group(&s, 1, "t", U1, G, offs, 2);
	f_dead(&s, 1, "t", U1, G, 0, 1, 7, 1001, 5000, 3, "bad input", "bb");
	f_dead(&s, 1, "t", U1, G, 1, 0, 8, 2000, 6000, 5, "", "x");
	CHECK_EQ(apply_stream(m, &s), 0);
	stream_free(&s);

	CHECK_EQ(mq_epoch(m), 1);
	CHECK(mq_role(m) == CFG_ROLE_FOLLOWER);
	t = mq_topic_find(m, "t");
	CHECK(t != NULL);
	if (!t) {
		mq_close(m);
		return;
	}
	CHECK(topic_uid(t) == U1);
	CHECK_EQ(topic_nparts(t), 2);
	CHECK_EQ(topic_config_text(t, now, sizeof(now)), strlen(cfg2));
	CHECK(!strncmp(now, cfg2, strlen(cfg2)));
	/* messages with the leader's timestamps and checksums */
	CHECK_EQ(part_read_ents(topic_part(t, 0), 0, 4, buf, sizeof(buf), e, &base), 3);
	CHECK(!memcmp(buf, "a\nbb\nccc\n", 9));
	CHECK_EQ(e[0].ts_ms, 1000);
	CHECK_EQ(e[2].ts_ms, 1002);
	CHECK(e[1].hash == XXH3_64bits("bb", 2));
	CHECK(!strcmp(history(topic_part(t, 0)), "1:0"));
	CHECK_EQ(part_read_ents(topic_part(t, 1), 0, 4, buf, sizeof(buf), e, &base), 1);
	CHECK_EQ(topic_bytes(t), 11);
	/* the group, its offsets clamped to what the partitions hold */
	g = topic_group_find(t, G);
	CHECK(g != NULL);
	if (g) {
		CHECK_EQ(cg_committed(g, 0), 2);
		CHECK_EQ(cg_committed(g, 1), 1);
		CHECK_EQ(lease_dead_keys(cg_lease(g), &keys, &nk), 0);
		CHECK_EQ(nk, 2);
		if (nk == 2) {
			CHECK_EQ(keys[0].part, 0);
			CHECK_EQ(keys[0].off, 1);
			CHECK_EQ(keys[0].seq, 7);
			CHECK_EQ(keys[1].part, 1);
			CHECK_EQ(keys[1].seq, 8);
		}
		free(keys);
		CHECK_EQ(lease_dead_get(cg_lease(g), 0, 1, &d, &text, &len), 0);
		CHECK_EQ(d.seq, 7);
		CHECK_EQ(d.ts_ms, 1001);
		CHECK_EQ(d.failed_at_ms, 5000);
		CHECK_EQ(d.deliveries, 3);
		CHECK(!strcmp(d.reason, "bad input"));
		CHECK(len == 3 && !memcmp(text, "bb\n", 3));
		free(text);
		CHECK_EQ(lease_dead_get(cg_lease(g), 1, 0, &d, &text, &len), 0);
		CHECK(!strcmp(d.reason, ""));
		CHECK(len == 2 && !memcmp(text, "x\n", 2));
		free(text);
	}

	/* DEADS keeps only the letters it lists */
	{
		uint32_t parts[1] = { 1 };
		uint64_t dofs[1] = { 0 };

		f_deads(&s, 1, "t", U1, G, parts, dofs, 1);
		CHECK_EQ(apply_stream(m, &s), 0);
		stream_free(&s);
	}
	if (g) {
		CHECK_EQ(lease_dead_keys(cg_lease(g), &keys, &nk), 0);
		CHECK_EQ(nk, 1);
		if (nk == 1)
			CHECK_EQ(keys[0].part, 1);
		free(keys);
		CHECK_EQ(lease_dead_get(cg_lease(g), 0, 1, &d, &text, &len), -ENOENT);
		cg_unref(g);
	}
	/* GROUPS deletes the groups it does not list */
	f_groups(&s, 1, "t", U1, "other\n");
	CHECK_EQ(apply_stream(m, &s), 0);
	stream_free(&s);
	g = topic_group_find(t, G);
	CHECK(g == NULL);
	if (g)
		cg_unref(g);
	topic_unref(t);
	/* TOPICS deletes the topics it does not list */
	f_topic(&s, 1, "v", U3, cfg1);
	f_topics(&s, 1, "v\nw\n");
	CHECK_EQ(apply_stream(m, &s), 0);
	stream_free(&s);
	t = mq_topic_find(m, "t");
	CHECK(t == NULL);
	if (t)
		topic_unref(t);
	t = mq_topic_find(m, "v");
	CHECK(t != NULL && topic_uid(t) == U3 && topic_nparts(t) == 1);
	if (t)
		topic_unref(t);
	CHECK(!exists(subdir("data"), "topics/t"));
	mq_close(m);
}

static void rx_topic_with_another_uid_is_made_again(void)
{
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	struct part_stat st;
	uint64_t off[1] = { 2 };
	struct replica_rx *rx;
	struct mq *m;
	struct topic *t;
	struct cg *g;
	char *text;
	size_t len;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 1, "t", U1, cfg);
	f_msgs(&s, 1, "t", U1, 0, 0, 0, 1, "old1\nold2\n", 10);
	f_group(&s, 1, "t", U1, G, off, 1);
	CHECK_EQ(apply_stream(m, &s), 0);
	stream_free(&s);

	/* the leader's topic of that name is another one now */
	f_topic(&s, 2, "t", U2, cfg);
	f_msgs(&s, 2, "t", U2, 0, 0, 0, 2, "new\n", 20);
	CHECK_EQ(apply_stream(m, &s), 0);
	stream_free(&s);
	t = mq_topic_find(m, "t");
	CHECK(t && topic_uid(t) == U2);
	if (t) {
		part_stat(topic_part(t, 0), &st);
		CHECK_EQ(st.first, 0);
		CHECK_EQ(st.next, 1);
		CHECK(!strcmp(history(topic_part(t, 0)), "2:0"));
		g = topic_group_find(t, G);
		CHECK(g == NULL);	/* the old incarnation's group is gone */
		if (g)
			cg_unref(g);
		CHECK_EQ(topic_bytes(t), 4);
		topic_unref(t);
	}
	text = slurp(subdir("data/topics/t/uid"), &len);
	CHECK(text && len >= 16 && !memcmp(text, "5555666677778888", 16));
	free(text);
	/* a frame for the old incarnation names a topic not here */
	f_msgs(&s, 2, "t", U1, 0, 2, 0, 1, "late\n", 30);
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	CHECK_EQ(feed(rx, 0, s.b, s.len, 0), -ENOENT);
	replica_rx_close(rx);
	stream_free(&s);
	mq_close(m);
}

/*
 * A stream that uses every frame type, self-contained (it starts by
 * deleting every topic, so it gives the same state from any state).
 */
static void chunk_stream(struct stream *s)
{
	const char *cfgA = cfg_text("partitions=2\nsync=none\nsegment_bytes=1024\n");
	uint64_t offs[2] = { 3, 9 };
	uint32_t dparts[1] = { 0 };
	uint64_t doffs[1] = { 1 };

	/* a list naming no topic here, rather than an empty one: an empty
	 * TOPICS frame is header-only, and split across writes it hangs rx
	 * (rx_header_only_frame_split_across_writes) */
	f_topics(s, 2, "none\n");
	f_topic(s, 2, "t", U1, cfgA);
	f_msgs(s, 2, "t", U1, 0, 0, 0, 1, "alpha\nbeta\n", 100);
	f_msgs(s, 2, "t", U1, 0, 2, 0, 2, "gamma\n", 110);
	f_msgs(s, 2, "t", U1, 0, 3, 3, 2, "delta\nepsilon\n", 120);	/* leader rolled at 3 */
	f_msgs(s, 2, "t", U1, 1, 0, 0, 2, "x\n", 130);
	f_msgs(s, 2, "t", U1, 0, 1, 0, 1, "beta\n", 101);		/* held: no-op */
	f_group(s, 2, "t", U1, G, offs, 2);
	f_dead(s, 2, "t", U1, G, 0, 1, 4, 101, 900, 2, "boom", "beta");
	f_dead(s, 2, "t", U1, G, 0, 0, 5, 100, 901, 1, "", "alpha");
	f_deads(s, 2, "t", U1, G, dparts, doffs, 1);
	f_cut(s, REPL_TRUNC, 2, "t", U1, 0, 4);
	f_cut(s, REPL_TRIM, 2, "t", U1, 0, 3);
	f_topics(s, 2, "t\n");
}

static void rx_same_bytes_in_writes_of_every_size(void)
{
	struct stream s = { 0 };
	struct replica_rx *rx;
	char *ref, *got;
	struct mq *m;
	int bad = 0;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	chunk_stream(&s);
	/* the reference: one write; and what it must be */
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	CHECK_EQ(feed(rx, 0, s.b, s.len, 0), 0);
	replica_rx_close(rx);
	ref = dump(m);
	CHECK(strstr(ref, "topic t 1111222233334444 2") != NULL);
	CHECK(strstr(ref, "part 0 3..4 bytes 6 segs 1 1:0,2:2\n"
			  "  3 seg 3 ts 120 ") != NULL);
	CHECK(strstr(ref, "part 1 0..1 bytes 2 segs 1 2:0\n") != NULL);
	CHECK(strstr(ref, "group consume 3 1\n"
			  "  dead 0:1 seq 4 ts 101 failed 900 deliveries 2 [boom] beta\n") != NULL);
	CHECK(strstr(ref, "dead 0:0") == NULL);
	/* every write size from 1 byte to the whole stream (the state is
	 * rebuilt each time: thousands of topic creations, kept to one
	 * topic so that this stays in seconds) */
	for (size_t chunk = 1; chunk < s.len && bad < 3; chunk++) {
		int rc;

		CHECK_EQ(replica_rx_open(m, &rx), 0);
		rc = feed(rx, 0, s.b, s.len, chunk);
		replica_rx_close(rx);
		got = dump(m);
		if (rc != 0 || strcmp(got, ref) != 0) {
			printf("# writes of %zu bytes: rc %d, state:\n%s", chunk, rc, got);
			bad++;
		}
		free(got);
	}
	CHECK_EQ(bad, 0);
	/* and writes of varying sizes */
	for (int round = 0; round < 50; round++) {
		size_t at = 0;
		int rc = 0;

		CHECK_EQ(replica_rx_open(m, &rx), 0);
		while (at < s.len && rc == 0) {
			size_t n = 1 + rnd(200);

			if (n > s.len - at)
				n = s.len - at;
			rc = feed(rx, at, s.b + at, n, 0);
			at += n;
		}
		replica_rx_close(rx);
		got = dump(m);
		CHECK_EQ(rc, 0);
		CHECK(!strcmp(got, ref));
		free(got);
	}
	free(ref);
	stream_free(&s);
	mq_close(m);
}

static void rx_large_frames_are_reassembled(void)
{
	/* One MSGS frame of ~13 KB (the reassembly buffer starts at 4 KiB),
	 * cut at sizes around the header and buffer sizes. */
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	static const size_t chunks[] = { 1, 7, 71, 72, 73, 144, 4095, 4096, 4097, 9999, 0 };
	static char lines[200 * 41 + 1];
	struct stream s = { 0 };
	struct replica_rx *rx;
	char *ref = NULL, *got;
	struct mq *m;
	size_t n = 0;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	for (int i = 0; i < 200; i++)
		n += (size_t)sprintf(lines + n, "message %03d %.28s\n", i,
				     "abcdefghijklmnopqrstuvwxyz0123456789");
	f_topics(&s, 1, "none\n");	/* see chunk_stream */
	f_topic(&s, 1, "t", U1, cfg);
	f_msgs(&s, 1, "t", U1, 0, 0, 0, 1, lines, 5000);
	f_msgs(&s, 1, "t", U1, 0, 200, 0, 1, "tail\n", 6000);
	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		CHECK_EQ(replica_rx_open(m, &rx), 0);
		CHECK_EQ(feed(rx, 0, s.b, s.len, chunks[k]), 0);
		replica_rx_close(rx);
		got = dump(m);
		if (!ref) {
			ref = got;
			CHECK(strstr(ref, "part 0 0..201 bytes 8205 ") != NULL);
			CHECK(strstr(ref, "  199 seg 0 ts 5199 ") != NULL);
			continue;
		}
		CHECK(!strcmp(got, ref));
		free(got);
	}
	free(ref);
	stream_free(&s);
	mq_close(m);
}

/* Re-seal the frame at `at` after the test changed it. */
static void reseal_at(struct stream *s, size_t at)
{
	struct repl_hdr h;
	size_t n;
	char *f;

	memcpy(&h, s->b + at, sizeof(h));
	n = REPL_HDR + h.tlen + h.glen + h.body;
	f = malloc(n);
	memcpy(f, s->b + at, n);
	replica_seal(f, n);
	memcpy(s->b + at, f, n);
	free(f);
}

static uint64_t next_of(struct mq *m, const char *topic, uint32_t part)
{
	struct topic *t = mq_topic_find(m, topic);
	struct part_stat st = { 0 };

	if (!t)
		return UINT64_MAX;
	part_stat(topic_part(t, part), &st);
	topic_unref(t);
	return st.next;
}

static void rx_refuses_a_write_at_the_wrong_position_for_good(void)
{
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	struct replica_rx *rx;
	struct mq *m;
	size_t m1;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 1, "t", U1, cfg);
	m1 = f_msgs(&s, 1, "t", U1, 0, 0, 0, 1, "a\n", 1);
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	CHECK_EQ(feed(rx, 0, s.b, m1, 0), 0);
	/* a hole (ahead) and a rewrite (behind) are refused, nothing applied */
	CHECK_EQ(replica_rx_write(rx, m1 + 1, s.b + m1, s.len - m1), -ESPIPE);
	CHECK_EQ(replica_rx_write(rx, 0, s.b + m1, s.len - m1), -ESPIPE);
	/* ... and from then on, at the right position too */
	CHECK_EQ(replica_rx_write(rx, m1, s.b + m1, s.len - m1), -ESPIPE);
	CHECK_EQ(replica_rx_sync(rx), -ESPIPE);
	CHECK_EQ(next_of(m, "t", 0), 0);
	replica_rx_close(rx);
	/* a new open file starts over at position 0 */
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	CHECK_EQ(replica_rx_write(rx, 0, s.b + m1, s.len - m1), (ssize_t)(s.len - m1));
	CHECK_EQ(replica_rx_sync(rx), 0);
	replica_rx_close(rx);
	CHECK_EQ(next_of(m, "t", 0), 1);
	stream_free(&s);
	mq_close(m);
}

/* Feed s to a new rx in writes of chunk bytes: the refusal (or 0). */
static int feed_new(struct mq *m, const struct stream *s, size_t chunk)
{
	struct replica_rx *rx;
	int rc;

	if (replica_rx_open(m, &rx) < 0)
		return -ENOMEM;
	rc = feed(rx, 0, s->b, s->len, chunk);
	replica_rx_close(rx);
	return rc;
}

static void rx_refuses_damaged_frames_for_good(void)
{
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	struct replica_rx *rx;
	struct repl_hdr h;
	struct mq *m;
	size_t b, c;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 1, "t", U1, cfg);
	f_msgs(&s, 1, "t", U1, 0, 0, 0, 1, "a\n", 1);
	b = f_msgs(&s, 1, "t", U1, 0, 1, 0, 1, "b\n", 2);
	c = f_msgs(&s, 1, "t", U1, 0, 2, 0, 1, "c\n", 3);
	s.b[b + REPL_HDR + 1] = 'B';	/* the line of b: checksum broken */
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	/* the first write ends inside b: everything before it is applied */
	CHECK_EQ(replica_rx_write(rx, 0, s.b, b + 10), (ssize_t)(b + 10));
	CHECK_EQ(next_of(m, "t", 0), 1);
	CHECK_EQ(replica_rx_write(rx, b + 10, s.b + b + 10, s.len - b - 10), -EBADMSG);
	CHECK_EQ(next_of(m, "t", 0), 1);
	/* sticky: even c alone, where the stream would go on */
	CHECK_EQ(replica_rx_write(rx, b + 10, s.b + c, s.len - c), -EBADMSG);
	CHECK_EQ(replica_rx_write(rx, s.len, s.b + c, s.len - c), -EBADMSG);
	CHECK_EQ(replica_rx_sync(rx), -EBADMSG);
	replica_rx_close(rx);
	CHECK_EQ(next_of(m, "t", 0), 1);
	stream_free(&s);

	/* other damage, each on a new open file */
	/* a bad magic is refused as soon as the header is there */
	f_msgs(&s, 1, "t", U1, 0, 1, 0, 1, "b\n", 2);
	s.b[0] ^= 1;
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	CHECK_EQ(replica_rx_write(rx, 0, s.b, REPL_HDR), -EBADMSG);
	replica_rx_close(rx);
	stream_free(&s);
	/* a frame larger than REPL_FRAME_MAX, likewise */
	put_frame(&s, hdr(REPL_TOPICS, 1, 0), NULL, NULL, NULL, 0);
	memcpy(&h, s.b, sizeof(h));
	h.body = REPL_FRAME_MAX;
	memcpy(s.b, &h, sizeof(h));
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	CHECK_EQ(replica_rx_write(rx, 0, s.b, REPL_HDR), -EBADMSG);
	replica_rx_close(rx);
	stream_free(&s);
	/* the reserved field set (sealed: only the field is wrong) */
	f_msgs(&s, 1, "t", U1, 0, 1, 0, 1, "b\n", 2);
	memcpy(&h, s.b, sizeof(h));
	h.zero = 1;
	memcpy(s.b, &h, sizeof(h));
	reseal_at(&s, 0);
	CHECK_EQ(feed_new(m, &s, 0), -EBADMSG);
	stream_free(&s);
	/* names that are no names (a path out of DATA_DIR) */
	f_topic(&s, 1, "../x", U1, cfg);
	CHECK_EQ(feed_new(m, &s, 0), -EBADMSG);
	stream_free(&s);
	f_dead(&s, 1, "t", U1, "a/b", 0, 0, 1, 1, 1, 1, "", "a");
	CHECK_EQ(feed_new(m, &s, 0), -EBADMSG);
	stream_free(&s);
	CHECK(!exists(subdir("data"), "x"));
	/* entries that do not add up to the lines */
	f_msgs(&s, 1, "t", U1, 0, 1, 0, 1, "b\nc\n", 2);
	memcpy(&h, s.b, sizeof(h));
	h.count = 3;
	memcpy(s.b, &h, sizeof(h));
	reseal_at(&s, 0);
	CHECK_EQ(feed_new(m, &s, 0), -EBADMSG);
	stream_free(&s);
	/* an unknown type */
	put_frame(&s, hdr(99, 1, U1), "t", NULL, NULL, 0);
	CHECK_EQ(feed_new(m, &s, 0), -EBADMSG);
	stream_free(&s);
	CHECK_EQ(next_of(m, "t", 0), 1);
	/* the damage never got as far as the node: still at epoch 1 */
	CHECK_EQ(mq_epoch(m), 1);
	mq_close(m);
}

static void rx_refuses_older_epochs(void)
{
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	struct mq *m;
	char *st, *node;
	size_t len;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	CHECK_EQ(mq_epoch(m), 0);
	f_topic(&s, 5, "t", U1, cfg);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	/* the newer epoch was adopted, durably */
	CHECK_EQ(mq_epoch(m), 5);
	CHECK(mq_role(m) == CFG_ROLE_FOLLOWER);
	node = slurp(subdir("data/node"), &len);
	CHECK(node && memmem(node, len, "epoch=5\n", 8));
	free(node);
	/* a leader of epoch 4 is a deposed one */
	f_msgs(&s, 4, "t", U1, 0, 0, 0, 4, "stale\n", 1);
	CHECK_EQ(feed_new(m, &s, 0), -ESTALE);
	CHECK_EQ(feed_new(m, &s, 7), -ESTALE);
	stream_free(&s);
	CHECK_EQ(next_of(m, "t", 0), 0);
	CHECK_EQ(mq_epoch(m), 5);
	st = state(m);
	CHECK(strstr(st, "\nrefused refused a leader of epoch 4: this node is follower at epoch 5\n")
	      != NULL);
	free(st);
	/* the current one is welcome */
	f_msgs(&s, 5, "t", U1, 0, 0, 0, 5, "fresh\n", 1);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	CHECK_EQ(next_of(m, "t", 0), 1);
	mq_close(m);
	/* epoch 5 is what the node knows after a restart */
	m = engine_open(subdir("data"), FOLLOWER);
	CHECK_EQ(mq_epoch(m), 5);
	mq_close(m);
}

static void rx_refuses_gaps_and_what_is_not_here(void)
{
	const char *cfg = cfg_text("partitions=2\nsync=none\n");
	struct stream s = { 0 };
	struct mq *m;
	uint64_t off[2] = { 0, 0 };

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 1, "t", U1, cfg);
	f_msgs(&s, 1, "t", U1, 0, 0, 0, 1, "a\nb\nc\n", 1);
	f_msgs(&s, 1, "t", U1, 0, 5, 0, 1, "f\n", 6);	/* 3, 4 missing */
	f_msgs(&s, 1, "t", U1, 0, 3, 0, 1, "d\n", 4);	/* never reached */
	CHECK_EQ(feed_new(m, &s, 0), -ERANGE);
	CHECK_EQ(next_of(m, "t", 0), 3);
	stream_free(&s);
	/* -ENOENT: the leader sends the topic or group first */
	f_msgs(&s, 1, "t", U1, 2, 0, 0, 1, "a\n", 1);	/* no partition 2 */
	CHECK_EQ(feed_new(m, &s, 0), -ENOENT);
	stream_free(&s);
	f_msgs(&s, 1, "nope", U1, 0, 0, 0, 1, "a\n", 1);
	CHECK_EQ(feed_new(m, &s, 0), -ENOENT);
	stream_free(&s);
	f_msgs(&s, 1, "t", U2, 0, 3, 0, 1, "a\n", 1);	/* another incarnation */
	CHECK_EQ(feed_new(m, &s, 0), -ENOENT);
	stream_free(&s);
	/* a letter of a group not here yet makes the group: letters travel
	 * before offsets (replica.h) */
	f_dead(&s, 1, "t", U1, "newgroup", 0, 0, 1, 1, 1, 1, "", "a");
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	{
		struct topic *tt = mq_topic_find(m, "t");
		struct cg *g = tt ? topic_group_find(tt, "newgroup") : NULL;

		CHECK(g != NULL);
		if (g)
			cg_unref(g);
		if (tt)
			topic_unref(tt);
	}
	f_cut(&s, REPL_TRUNC, 1, "t", U1, 9, 0);
	CHECK_EQ(feed_new(m, &s, 0), -ENOENT);
	stream_free(&s);
	f_group(&s, 1, "t", U2, G, off, 2);
	CHECK_EQ(feed_new(m, &s, 0), -ENOENT);
	stream_free(&s);
	CHECK_EQ(next_of(m, "t", 0), 3);
	mq_close(m);
}

static void rx_leader_refuses_its_own_epoch_and_steps_down_for_a_newer_one(void)
{
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	uint64_t e1, e3, e4, e6;
	struct topic *t;
	struct mq *m;
	char *st, want[160], hist[64];

	tmpdir();
	m = engine_open(subdir("data"), "role=leader,partitions=1,sync=none");
	/* a new leader takes an epoch of its own: counter 1, its id's tag */
	e1 = mq_epoch_after(m, 0);
	CHECK_EQ(e1 >> 16, 1);
	CHECK_EQ(e1 & 0xffff, mq_node_id(m) & 0xffff);
	CHECK_EQ(mq_epoch(m), e1);
	CHECK(mq_role(m) == CFG_ROLE_LEADER);
	/* another leader of our own epoch: split brain, refused */
	f_topic(&s, e1, "t", U1, cfg);
	CHECK_EQ(feed_new(m, &s, 0), -ESTALE);
	stream_free(&s);
	CHECK(mq_role(m) == CFG_ROLE_LEADER);
	CHECK_EQ(mq_epoch(m), e1);
	t = mq_topic_find(m, "t");
	CHECK(t == NULL);
	if (t)
		topic_unref(t);
	st = state(m);
	snprintf(want, sizeof(want), "role leader\nrefused refused a leader of epoch %" PRIu64
		 ": this node is leader at epoch %" PRIu64 "\n", e1, e1);
	CHECK(strstr(st, want) != NULL);
	free(st);
	/* a newer leader: we step down, adopt its epoch, and apply */
	e3 = e1 + (2u << 16) + 7;
	f_topic(&s, e3, "t", U1, cfg);
	f_msgs(&s, e3, "t", U1, 0, 0, 0, e3, "a\n", 1);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	CHECK(mq_role(m) == CFG_ROLE_FOLLOWER);
	CHECK_EQ(mq_epoch(m), e3);
	CHECK_EQ(next_of(m, "t", 0), 1);
	/* promoted again: an epoch above e3, and now e3 and e4 are refused */
	CHECK_EQ(mq_promote(m), 0);
	CHECK(mq_role(m) == CFG_ROLE_LEADER);
	e4 = mq_epoch_after(m, e3);
	CHECK(e4 > e3);
	CHECK_EQ(mq_epoch(m), e4);
	CHECK_EQ(mq_promote(m), 0);	/* a leader stays as it is */
	CHECK_EQ(mq_epoch(m), e4);
	f_msgs(&s, e3, "t", U1, 0, 1, 0, e3, "b\n", 2);
	CHECK_EQ(feed_new(m, &s, 0), -ESTALE);
	stream_free(&s);
	f_msgs(&s, e4, "t", U1, 0, 1, 0, e4, "b\n", 2);
	CHECK_EQ(feed_new(m, &s, 0), -ESTALE);
	stream_free(&s);
	CHECK(mq_role(m) == CFG_ROLE_LEADER);
	/* our own appends now carry e4 */
	t = mq_topic_find(m, "t");
	if (t) {
		CHECK_EQ(part_append(topic_part(t, 0), "own\n", 4, 1, 1 << 20, 0), 0);
		snprintf(hist, sizeof(hist), "%" PRIu64 ":0,%" PRIu64 ":1", e3, e4);
		CHECK(!strcmp(history(topic_part(t, 0)), hist));
		topic_unref(t);
	}
	/* fenced by a peer at a newer epoch: follower again */
	CHECK_EQ(mq_fenced(m, e4), 0);
	CHECK(mq_role(m) == CFG_ROLE_LEADER);
	e6 = e4 + (2u << 16);
	CHECK_EQ(mq_fenced(m, e6), 0);
	CHECK(mq_role(m) == CFG_ROLE_FOLLOWER);
	CHECK_EQ(mq_epoch(m), e6);
	mq_close(m);
	m = engine_open(subdir("data"), FOLLOWER);
	CHECK_EQ(mq_epoch(m), e6);
	mq_close(m);
	/* mounted as leader again: it did not lead e6, so it takes a new one */
	m = engine_open(subdir("data"), "role=leader,partitions=1,sync=none");
	CHECK_EQ(mq_epoch(m), mq_epoch_after(m, e6));
	mq_close(m);
	m = engine_open(subdir("data"), "role=leader,partitions=1,sync=none");
	CHECK_EQ(mq_epoch(m), mq_epoch_after(m, e6));	/* it led that one: kept */
	mq_close(m);
}

static void rx_state_text_reports_node_topics_and_parts(void)
{
	const char *cfg = cfg_text("partitions=2\nsync=none\n");
	struct stream s = { 0 };
	char want[512], *st, *node;
	size_t len;
	struct mq *m;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 3, "t", U1, cfg);
	f_msgs(&s, 3, "t", U1, 0, 0, 0, 1, "a\nb\n", 1);
	f_msgs(&s, 3, "t", U1, 0, 2, 0, 3, "c\n", 3);
	f_topic(&s, 3, "u", U3, cfg);
	f_cut(&s, REPL_TRIM, 3, "u", U3, 1, 7);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	snprintf(want, sizeof(want),
		 "mqfs-repl 1\n"
		 "node %016" PRIx64 " epoch 3 role follower\n"
		 "refused -\n"
		 "topic t 1111222233334444 2\n"
		 "part 0 0 3 1:0,3:2\n"
		 "part 1 0 0 -\n"
		 "topic u 0123456789abcdef 2\n"
		 "part 0 0 0 -\n"
		 "part 1 7 7 -\n", mq_node_id(m));
	st = state(m);
	CHECK(!strcmp(st, want));
	if (strcmp(st, want))
		printf("# got:\n%s# want:\n%s", st, want);
	free(st);
	/* the node id is the one DATA_DIR/node keeps */
	node = slurp(subdir("data/node"), &len);
	snprintf(want, sizeof(want), "id=%016" PRIx64 "\n", mq_node_id(m));
	CHECK(node && len > strlen(want) && !memcmp(node, want, strlen(want)));
	free(node);
	mq_close(m);
}

static void rx_state_text_has_the_whole_history(void)
{
	/* Far more epochs than a small fixed buffer would hold: the leader
	 * must see all of them, the newest above all (replica_diverge starts
	 * from the follower's last epoch). */
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	struct mq *m;
	char *st, *want;
	size_t n = 0;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 70, "t", U1, cfg);
	for (uint64_t i = 0; i < 70; i++)
		f_msgs(&s, 70, "t", U1, 0, i, 0, i + 1, "m\n", (int64_t)i);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	want = malloc(2048);
	n = (size_t)sprintf(want, "\npart 0 0 70 ");
	for (uint64_t i = 0; i < 70; i++)
		n += (size_t)sprintf(want + n, "%s%" PRIu64 ":%" PRIu64, i ? "," : "", i + 1, i);
	sprintf(want + n, "\n");
	st = state(m);
	CHECK(strstr(st, want) != NULL);
	free(st);
	free(want);
	mq_close(m);
}

static void rx_trunc_and_trim_frames(void)
{
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	struct part_stat st;
	uint64_t off[1] = { 8 };
	struct topic *t;
	struct cg *g;
	struct mq *m;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 3, "t", U1, cfg);
	f_msgs(&s, 3, "t", U1, 0, 0, 0, 1, "m0\nm1\nm2\n", 1);
	f_msgs(&s, 3, "t", U1, 0, 3, 3, 2, "m3\nm4\nm5\n", 4);
	f_msgs(&s, 3, "t", U1, 0, 6, 6, 3, "m6\nm7\n", 7);
	f_group(&s, 3, "t", U1, G, off, 1);
	/* the new leader never had 4.. */
	f_cut(&s, REPL_TRUNC, 3, "t", U1, 0, 4);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	t = mq_topic_find(m, "t");
	CHECK(t != NULL);
	if (!t) {
		mq_close(m);
		return;
	}
	part_stat(topic_part(t, 0), &st);
	CHECK_EQ(st.next, 4);
	CHECK_EQ(st.segments, 2);
	CHECK(!strcmp(history(topic_part(t, 0)), "1:0,2:3"));
	CHECK_EQ(topic_bytes(t), 12);
	/* a committed offset past the new end points at the end */
	g = topic_group_find(t, G);
	CHECK(g != NULL);
	if (g) {
		CHECK_EQ(cg_committed(g, 0), 4);
		cg_unref(g);
	}
	/* the leader's retention deleted up to 3 */
	f_cut(&s, REPL_TRIM, 3, "t", U1, 0, 3);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	part_stat(topic_part(t, 0), &st);
	CHECK_EQ(st.first, 3);
	CHECK_EQ(st.next, 4);
	CHECK_EQ(topic_bytes(t), 3);
	/* ... and then everything, up to 10: we start over there */
	f_cut(&s, REPL_TRIM, 3, "t", U1, 0, 10);
	f_msgs(&s, 3, "t", U1, 0, 10, 10, 3, "m10\n", 11);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	part_stat(topic_part(t, 0), &st);
	CHECK_EQ(st.first, 10);
	CHECK_EQ(st.next, 11);
	CHECK_EQ(topic_bytes(t), 4);
	CHECK(!strcmp(history(topic_part(t, 0)), "1:0,2:3,3:10"));
	topic_unref(t);
	mq_close(m);
}

static void rx_resending_changes_nothing(void)
{
	/* The leader resumes from what it last knew: frames the follower
	 * applied already must be no-ops, dead letters included. */
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 };
	uint64_t off[1] = { 1 }, gen = 0;
	struct topic *t;
	struct cg *g;
	struct mq *m;
	char *before, *after;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 2, "t", U1, cfg);
	f_msgs(&s, 2, "t", U1, 0, 0, 0, 1, "a\nb\n", 1);
	f_group(&s, 2, "t", U1, G, off, 1);
	f_dead(&s, 2, "t", U1, G, 0, 0, 3, 1, 2, 1, "why", "a");
	CHECK_EQ(feed_new(m, &s, 0), 0);
	before = dump(m);
	t = mq_topic_find(m, "t");
	g = t ? topic_group_find(t, G) : NULL;
	CHECK(g != NULL);
	if (g)
		gen = lease_dead_gen(cg_lease(g));
	CHECK_EQ(feed_new(m, &s, 0), 0);
	CHECK_EQ(feed_new(m, &s, 5), 0);
	after = dump(m);
	CHECK(!strcmp(before, after));
	if (g) {
		CHECK(lease_dead_gen(cg_lease(g)) == gen);
		cg_unref(g);
	}
	if (t)
		topic_unref(t);
	free(before);
	free(after);
	stream_free(&s);
	mq_close(m);
}

static void rx_sync_syncs_what_it_applied(void)
{
	/* What replica_rx_sync syncs is seen through an fsync made to fail
	 * (io_fault_set): called, it reports the failure. */
	const char *batch = cfg_text("partitions=1\nsync=batch\n");
	const char *none = cfg_text("partitions=1\nsync=none\n");
	struct stream s = { 0 }, more = { 0 };
	struct replica_rx *rx;
	struct mq *m;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 1, "b", U1, batch);
	f_topic(&s, 1, "n", U2, none);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);

	CHECK_EQ(replica_rx_open(m, &rx), 0);
	/* nothing applied: nothing to sync */
	CHECK_EQ(replica_rx_sync(rx), 0);
	/* sync=none: not synced (as on the leader): no fsync is made */
	f_msgs(&s, 1, "n", U2, 0, 0, 0, 1, "x\n", 1);
	CHECK_EQ(feed(rx, 0, s.b, s.len, 0), 0);
	io_fault_set(IO_OP_SYNC, 1, -EIO, 1);
	CHECK_EQ(replica_rx_sync(rx), 0);
	io_fault_set(IO_OP_SYNC, 0, 0, 0);
	/* sync=batch: synced, and once synced, nothing is left to sync */
	f_msgs(&more, 1, "b", U1, 0, 0, 0, 1, "y\n", 2);
	CHECK_EQ(feed(rx, s.len, more.b, more.len, 0), 0);
	CHECK_EQ(replica_rx_sync(rx), 0);
	io_fault_set(IO_OP_SYNC, 1, -EIO, 1);
	CHECK_EQ(replica_rx_sync(rx), 0);
	io_fault_set(IO_OP_SYNC, 0, 0, 0);
	replica_rx_close(rx);
	stream_free(&s);
	stream_free(&more);

	/* a message of a sync=batch topic, then a failing fsync: reported */
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	f_msgs(&s, 1, "b", U1, 0, 1, 0, 1, "z\n", 3);
	CHECK_EQ(feed(rx, 0, s.b, s.len, 0), 0);
	io_fault_set(IO_OP_SYNC, 1, -EIO, 1);
	CHECK_EQ(replica_rx_sync(rx), -EIO);
	io_fault_set(IO_OP_SYNC, 0, 0, 0);
	replica_rx_close(rx);
	stream_free(&s);
	mq_close(m);
}

static void rx_topic_takes_the_leaders_partition_count(void)
{
	/* The follower's mount says partitions=4 (its default for new
	 * topics); the leader's topic has 2. The replica must have 2, which
	 * it cannot get to after the fact (partitions only grow). */
	const char *cfg = cfg_text("partitions=2\nsync=none\n");
	struct stream s = { 0 };
	struct topic *t;
	struct mq *m;

	tmpdir();
	m = engine_open(subdir("data"), "role=follower,partitions=4,sync=none");
	f_topic(&s, 1, "t", U1, cfg);
	f_msgs(&s, 1, "t", U1, 1, 0, 0, 1, "a\n", 1);
	CHECK_EQ(feed_new(m, &s, 0), 0);
	stream_free(&s);
	t = mq_topic_find(m, "t");
	CHECK(t != NULL);
	if (t) {
		CHECK_EQ(topic_nparts(t), 2);
		topic_unref(t);
	}
	CHECK_EQ(next_of(m, "t", 1), 1);
	mq_close(m);
}

static void rx_group_frame_with_any_name_lengths(void)
{
	/*
	 * GROUP with topic "orders" and group "billing": its body (u64
	 * offsets) starts 72 + 6 + 7 = 85 bytes into the frame, so it is not
	 * 8-aligned in the reassembly buffer, nor (here) in the caller's. It
	 * must be read without assuming alignment (the sanitizer build
	 * aborts on a misaligned load).
	 */
	const char *cfg = cfg_text("partitions=2\nsync=none\n");
	uint64_t off[2] = { 2, 1 };
	struct stream s = { 0 };
	struct replica_rx *rx;
	struct topic *t;
	struct cg *g;
	struct mq *m;
	size_t at, at2;

	tmpdir();
	m = engine_open(subdir("data"), FOLLOWER);
	f_topic(&s, 1, "orders", U1, cfg);
	f_msgs(&s, 1, "orders", U1, 0, 0, 0, 1, "a\nb\nc\n", 1);
	f_msgs(&s, 1, "orders", U1, 1, 0, 0, 1, "d\n", 1);
	at = s.len;
	put_frame(&s, (struct repl_hdr){ .type = REPL_GROUP, .epoch = 1, .uid = U1, .count = 2 },
		  "orders", "billing", off, 16);
	off[0] = 3;
	at2 = s.len;
	put_frame(&s, (struct repl_hdr){ .type = REPL_GROUP, .epoch = 1, .uid = U1, .count = 2 },
		  "orders", "billing", off, 16);
	CHECK_EQ(replica_rx_open(m, &rx), 0);
	/* the first GROUP in two writes (reassembled), the second in place */
	CHECK_EQ(feed(rx, 0, s.b, at + 10, 0), 0);
	CHECK_EQ(feed(rx, at + 10, s.b + at + 10, at2 - at - 10 + 1, 0), 0);
	t = mq_topic_find(m, "orders");
	g = t ? topic_group_find(t, "billing") : NULL;
	CHECK(g != NULL);
	if (g) {
		CHECK_EQ(cg_committed(g, 0), 2);
		CHECK_EQ(cg_committed(g, 1), 1);
	}
	CHECK_EQ(feed(rx, at2 + 1, s.b + at2 + 1, s.len - at2 - 1, 0), 0);
	if (g) {
		CHECK_EQ(cg_committed(g, 0), 3);
		cg_unref(g);
	}
	if (t)
		topic_unref(t);
	replica_rx_close(rx);
	stream_free(&s);
	mq_close(m);
}

static void rx_header_only_frame_split_across_writes(void)
{
	/*
	 * TOPICS with an empty list (the leader has no topics) is a frame of
	 * exactly REPL_HDR (72) bytes. Cut across two writes, it must be
	 * applied once its last byte arrives, like any other frame.
	 *
	 * Was a bug: replica_rx_write took "have >= REPL_HDR && need ==
	 * REPL_HDR" to mean "the header is complete, size the frame" and
	 * continued; for a header-only frame the size is REPL_HDR again, so
	 * (1) the write that completed it returned without applying it, and
	 * (2) the next write spun forever (take = 0, continue). Run in a
	 * child with a time limit so that a hang is reported, not suffered.
	 */
	const char *cfg = cfg_text("partitions=1\nsync=none\n");
	pid_t pid;
	int status = 0;

	tmpdir();
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		struct stream s = { 0 }, e = { 0 }, next = { 0 };
		struct replica_rx *rx;
		struct topic *t;
		struct mq *m = engine_open(subdir("data"), FOLLOWER);
		int code = 0;

		alarm(3);	/* a good run takes milliseconds */
		f_topic(&s, 1, "old", U1, cfg);
		if (feed_new(m, &s, 0) != 0)
			_exit(3);
		f_topics(&e, 1, "");
		f_topic(&next, 1, "new", U2, cfg);
		if (e.len != REPL_HDR || replica_rx_open(m, &rx) < 0)
			_exit(3);
		if (replica_rx_write(rx, 0, e.b, 30) != 30 ||
		    replica_rx_write(rx, 30, e.b + 30, e.len - 30) != (ssize_t)(e.len - 30))
			_exit(4);
		t = mq_topic_find(m, "old");
		if (t) {
			printf("# the empty TOPICS frame was not applied: \"old\" is still here\n");
			fflush(stdout);
			topic_unref(t);
			code = 1;
		}
		/* the stream goes on */
		if (replica_rx_write(rx, e.len, next.b, next.len) != (ssize_t)next.len)
			code = 1;
		replica_rx_close(rx);
		t = mq_topic_find(m, "new");
		if (!t)
			code = 1;
		else
			topic_unref(t);
		mq_close(m);
		stream_free(&s);
		stream_free(&e);
		stream_free(&next);
		_exit(code);
	}
	CHECK(pid > 0);
	if (pid > 0) {
		CHECK_EQ(waitpid(pid, &status, 0), pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		if (WIFSIGNALED(status))
			printf("# the child was killed by signal %d%s\n", WTERMSIG(status),
			       WTERMSIG(status) == SIGALRM ? ": replica_rx_write hung" : "");
	}
}

int main(void)
{
	/* 1. divergence */
	RUN(diverge_agreeing_logs_keep_everything);
	RUN(diverge_cuts_what_the_leader_never_had);
	RUN(diverge_kip279_follows_the_leader_epoch_down);
	RUN(diverge_matches_an_offset_by_offset_comparison);
	/* 2. epoch history */
	RUN(part_epochs_record_each_rise_and_survive_reopen);
	RUN(part_epochs_load_drops_entries_past_the_log);
	/* 3. replica appends */
	RUN(part_append_ents_reproduces_the_leaders_segments);
	RUN(part_append_ents_skips_what_it_holds_and_refuses_gaps);
	/* 4. trim */
	RUN(part_trim_deletes_whole_segments_below);
	RUN(part_trim_starts_an_empty_replica_late);
	/* 5. truncate */
	RUN(part_truncate_cuts_inside_a_segment);
	RUN(part_truncate_cuts_across_segments_and_drops_later_epochs);
	RUN(part_truncate_below_first_starts_over);
	/* 6. the rx stream */
	RUN(rx_applies_every_frame_type);
	RUN(rx_topic_with_another_uid_is_made_again);
	RUN(rx_same_bytes_in_writes_of_every_size);
	RUN(rx_large_frames_are_reassembled);
	RUN(rx_refuses_a_write_at_the_wrong_position_for_good);
	RUN(rx_refuses_damaged_frames_for_good);
	RUN(rx_refuses_older_epochs);
	RUN(rx_refuses_gaps_and_what_is_not_here);
	RUN(rx_leader_refuses_its_own_epoch_and_steps_down_for_a_newer_one);
	RUN(rx_state_text_reports_node_topics_and_parts);
	RUN(rx_state_text_has_the_whole_history);
	RUN(rx_trunc_and_trim_frames);
	RUN(rx_resending_changes_nothing);
	RUN(rx_sync_syncs_what_it_applied);
	RUN(rx_topic_takes_the_leaders_partition_count);
	RUN(rx_group_frame_with_any_name_lengths);
	RUN(rx_header_only_frame_split_across_writes);
	return tap_done();
}
