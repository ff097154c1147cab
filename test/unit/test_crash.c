/*
 * Power loss, simulated: the twin of test/restart.bats, which kills the
 * daemon. A partition appends and syncs batches; after each sync the test
 * notes what the disk must hold. Then, as a power cut may, the unsynced tail
 * of the log and of the index is cut at a random point and partly filled
 * with garbage. On reopen, every synced message must be there, in order,
 * and nothing torn or foreign may be readable.
 */
#include "tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "../../core/partition.h"

static off_t size_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Cut path somewhere in [keep, its size], then scribble over part of what
 * is left past keep. */
static void power_cut(const char *path, off_t keep, unsigned *seed)
{
	off_t size = size_of(path), cut;
	int fd = open(path, O_RDWR);

	cut = keep + (size > keep ? (off_t)(rand_r(seed) % (size - keep + 1)) : 0);
	if (ftruncate(fd, cut) != 0)
		printf("# ftruncate failed\n");
	if (cut > keep && rand_r(seed) % 2) {
		char junk[64];
		off_t at = keep + (off_t)(rand_r(seed) % (cut - keep));
		size_t n = (size_t)(cut - at) < sizeof(junk) ? (size_t)(cut - at) : sizeof(junk);

		for (size_t i = 0; i < n; i++)
			junk[i] = (char)(rand_r(seed) % 3 ? rand_r(seed) : '\n');
		if (pwrite(fd, junk, n, at) != (ssize_t)n)
			printf("# pwrite failed\n");
	}
	close(fd);
}

static void power_loss_keeps_every_synced_message(void)
{
	unsigned seed = 12345;

	for (int round = 0; round < 200; round++) {
		const char *dir = tmpdir();
		char log[512], idx[512], expect[65536], got[65536], last[4096];
		size_t lastlen = 0;
		off_t log_keep, idx_keep;
		size_t elen = 0;
		struct part_stat st;
		struct part *p;
		int batches = 1 + rand_r(&seed) % 6;
		ssize_t n;

		CHECK_EQ(part_open(dir, &p), 0);
		snprintf(log, sizeof(log), "%s/00000000000000000000.log", dir);
		snprintf(idx, sizeof(idx), "%s/00000000000000000000.idx", dir);
		for (int b = 0; b < batches; b++) {
			char batch[4096];
			size_t blen = 0;
			int lines = 1 + rand_r(&seed) % 20;

			for (int l = 0; l < lines; l++)
				blen += (size_t)snprintf(batch + blen, sizeof(batch) - blen,
							 "r%d b%d l%d %.*s\n", round, b, l,
							 (int)(rand_r(&seed) % 40), "0123456789abcdefghijklmnopqrstuvwxyz0123456789");
			CHECK_EQ(part_append(p, batch, blen, b, 1 << 30, 1), 0);
			if (b + 1 < batches) {	/* the last batch is never synced */
				CHECK_EQ(part_sync(p), 0);
				memcpy(expect + elen, batch, blen);
				elen += blen;
			} else {
				memcpy(last, batch, blen);
				lastlen = blen;
			}
		}
		part_close(p);
		log_keep = (off_t)elen;
		idx_keep = 64 + 32 * (off_t)0;
		for (size_t i = 0; i < elen; i++)
			idx_keep += expect[i] == '\n' ? 32 : 0;
		power_cut(log, log_keep, &seed);
		power_cut(idx, idx_keep, &seed);

		CHECK_EQ(part_open(dir, &p), 0);
		part_stat(p, &st);
		n = part_read(p, st.start_pos, got, sizeof(got));
		/* Everything synced is there; what follows, if anything survived,
		 * is a prefix of whole lines of the unsynced batch, never garbage. */
		CHECK(n >= (ssize_t)elen);
		CHECK(memcmp(got, expect, elen) == 0);
		CHECK((size_t)n - elen <= lastlen);
		CHECK(memcmp(got + elen, last, (size_t)n - elen) == 0);
		CHECK(n == 0 || got[n - 1] == '\n');
		part_close(p);
		if (tap_cur_failed) {
			printf("# round %d failed\n", round);
			break;
		}
	}
}

int main(void)
{
	RUN(power_loss_keeps_every_synced_message);
	return tap_done();
}
