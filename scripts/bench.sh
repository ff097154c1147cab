#!/usr/bin/env bash
# scripts/bench.sh - how fast is mqfs, next to a plain file and the "FUSE floor"?
#
# Run from the repo root after `make`:   scripts/bench.sh
#
# These systems are measured in every round, interleaved, on the same disk:
#   plain  a regular file:  cat work > file           cat file > /dev/null
#   for information, publish only: durable = cat work > file; sync file (one
#   fsync at the end); dsync = dd bs=1M oflag=dsync (an fdatasync per 1 MiB
#   write: what a single writer gets if each write() waits for a commit)
#   floor  scripts/bench/floor.c, the cheapest useful FUSE file (DIRECT_IO,
#          attr 0, st_blksize 1 MiB, pread into a reused buffer): what FUSE
#          itself costs.      cat work >> MNT/f        cat MNT/f > /dev/null
#   mqfs   mqfs -o $MQFS_OPTS, a fresh topic per round:
#          cat work > MNT/T/publish    then mkdir MNT/T/groups/g and
#          cat MNT/T/groups/g/0 ... N-1 > /dev/null
#          (the partitions only: a glob groups/g/* would also match `next` and
#          `batch`, which lease and block, `ack`/`nack`, `offsets/`, `stats`)
# The workload is MSGS lines of 100 bytes (99 chars + \n, keyless: no TAB).
# Each measurement prints messages/s; mqfs lines also print the ratio to the
# floor and the plain file of the same round. The summary uses medians.
# mqfs's RSS (VmRSS) is sampled before, during (every 0.2 s) and after each
# mqfs step, so "memory stays flat" can be judged.
#
# Environment (all optional):
#   MSGS=1000000        messages per measurement
#   ROUNDS=3            rounds (the summary reports the median)
#   WARMUP=1            unreported warm-up rounds first (page cache, first-touch memory)
#   MQFS=./mqfs         the mqfs binary (default: mqfs in the repo root)
#   MQFS_OPTS=sync=batch,partitions=4   mqfs mount options
#   BENCH_DIR=DIR       where the work dir goes (default: the repo root; not tmpfs)
#   SECTIONS=throughput sections to run, in order, separated by commas or
#                       blanks; section NAME is the function section_NAME:
#                       throughput, lease, latency, replication; `all` = all four
#   STEP_TIMEOUT=300    seconds before any single step counts as hung
#   VERIFY=1            untimed checks that every message came back, exactly once
#                       and in order within its partition (0: skip)
#   PROFILE_DIR=DIR     also run one extra, unreported round with `perf record -g`
#                       attached to each daemon; perf data and reports go to DIR
#   STRICT=0            1: exit 1 if a target is missed
#   KEEP=0              1: keep the work dir (data dir, logs) instead of deleting it
#
# Section lease (see section_lease): MSGS messages published (untimed) to a
# fresh topic, then scripts/bench/lease.c leases them through
# T/groups/g/batch (1 MiB reads) and acks each read's ids in one write() to
# T/groups/g/ack, with 1 and with 4 workers; next to Redis Streams
# (scripts/bench/redis_streams.sh: XREADGROUP COUNT 1000 + XACK) in the same
# rounds. Target: mqfs >= Redis, for 1 and for 4 workers.
#   LEASE_ACK=keep      keep: each worker keeps its ack descriptor open;
#                       open: open + write + close per ack write
#   REDIS=1             0: skip the Redis baseline (as root, a missing
#                       redis-server / libhiredis-dev is installed with apt-get)
#
# Section latency (see section_latency): scripts/bench/lease_latency.c
# publishes LAT_RATE msgs/s (paced with absolute deadlines) while
# LAT_READERS threads loop open next / read / close / ack; latency = time
# the reader has the message - the message's send time. Three
# configurations per round, each on a fresh topic:
#   (a) the mount's sync (sync=batch by default), LAT_BATCH messages per
#       write(): the publisher waits until the last message of a group is
#       due, writes the group in one write(), and stamps each message with
#       its own due time, so a message's latency includes waiting for its
#       group (a linger of up to (LAT_BATCH - 1) / LAT_RATE, 0.9 ms by
#       default). Target: p99 <= 2 ms, and the publisher reaches 95 % of
#       LAT_RATE, in this configuration.
#   (b) sync=none (T/config), one message per write(), stamped just before
#       the write(): the lease path alone, for information.
#   (c) the mount's sync, one message per write(), for information: each
#       write() waits for a group commit (fdatasync of log and index), so
#       one writer gets about 1 / (write() p50) messages per second.
# A configuration equal to one measured before in the round (LAT_BATCH=1,
# or a mount with sync=none) is not measured twice.
#   LAT_RATE=10000 LAT_MSGS=20000 LAT_WARMUP=2000 LAT_READERS=partitions
#   LAT_BATCH=10        messages per write() in (a) (1: one per write())
#   LAT_KEYED=64        (a) publishes keyed lines "kN<TAB>..." over this many
#                       keys, so that a write's lines spread over the
#                       partitions: the keyless lines of one write() all go
#                       to one partition, where `next` readers take them one
#                       after the other (a partition's leases belong to one
#                       reader at a time)
#   LAT_PUBLISHERS=1    publisher threads (each its own descriptor of T/publish;
#                       with LAT_BATCH > 1 the groups go round them)
#   (with KEEP=1 the work dir keeps lat.SYNC-bN.ROUND.dump: one line per
#   message, "SEQ SEND_NS LATENCY_NS WRITE_NS", to see when the slow ones
#   happened; SEND_NS is the due time when N > 1)
#
# Section replication (see section_replication): a leader mqfs -o
# MQFS_OPTS,peers=B,acks=... replicating to one local follower B (mqfs -o
# MQFS_OPTS,role=follower), both on fresh data dirs in every measurement:
#   (a) publish: the workload, split into REPL_WRITERS pieces, published by
#       REPL_WRITERS concurrent `cat piece > A/T/publish`, with acks=leader
#       and with acks=all (the order alternates between rounds); then, for
#       information, one `cat work > A/S/publish` to a fresh topic S. Target:
#       acks=all >= 0.50 x acks=leader with REPL_WRITERS writers. Untimed:
#       wait until the peer's lag is 0, then B's partitions must be
#       byte-identical to A's (cmp).
#   (b) catch-up: REPL_CATCHUP_MSGS messages published (untimed) to a leader
#       without peers, which is stopped; an empty follower B is started,
#       then the leader again on the same data dir with peers=B, timed from
#       its start until A/.mq/replicas says lag_messages 0 (polled every
#       20 ms; B's partition sizes must then add up). Target: >= 500 MB/s
#       (MB = 10^6 bytes of partitions). For context, in the same round:
#       cp of the leader's segment .log files to a dir on the same disk, and
#       cp + fsync of the copies (B fsyncs what it is sent, too).
#   (c) lag: scripts/bench/repl_lag.c publishes REPL_RATE msgs/s for
#       REPL_SECS s to A/T/publish (acks=leader) and follows B's partition
#       files; latency = when a follower read returned the message - its due
#       time. Meanwhile A/.mq/replicas lag_messages is sampled every 100 ms.
#       Baseline in the same round: the same run against a leader without
#       peers, following the leader's own partitions (publish + commit
#       alone). For information (no target); every message must arrive
#       exactly once.
#   REPL_WRITERS=4 REPL_CATCHUP_MSGS=3000000 REPL_RATE=10000 REPL_SECS=10
# shellcheck disable=SC2016 # the sh -c '...' scripts expand their own "$1"
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MSGS=${MSGS:-1000000}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
MQFS=${MQFS:-$REPO/mqfs}
MQFS_OPTS=${MQFS_OPTS:-sync=batch,partitions=4}
SECTIONS=${SECTIONS:-throughput}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
VERIFY=${VERIFY:-1}
PROFILE_DIR=${PROFILE_DIR:-}
STRICT=${STRICT:-0}
KEEP=${KEEP:-0}
LEASE_ACK=${LEASE_ACK:-keep}
REDIS=${REDIS:-1}
LAT_RATE=${LAT_RATE:-10000}
LAT_MSGS=${LAT_MSGS:-20000}
LAT_WARMUP=${LAT_WARMUP:-2000}
LAT_READERS=${LAT_READERS:-}
LAT_PUBLISHERS=${LAT_PUBLISHERS:-1}
LAT_BATCH=${LAT_BATCH:-10}
LAT_KEYED=${LAT_KEYED:-64}
REPL_WRITERS=${REPL_WRITERS:-4}
REPL_CATCHUP_MSGS=${REPL_CATCHUP_MSGS:-3000000}
REPL_RATE=${REPL_RATE:-10000}
REPL_SECS=${REPL_SECS:-10}

LINE_BYTES=100
PUBLISH_TARGET=0.40 # mqfs publish >= this x floor
CONSUME_TARGET=0.50 # mqfs consume >= this x floor
PARTS=$(sed -n 's/.*\(^\|,\)partitions=\([0-9]*\).*/\2/p' <<<"$MQFS_OPTS")
PARTS=${PARTS:-4}
LAT_READERS=${LAT_READERS:-$PARTS}
LEASE_TARGET=1.00    # mqfs lease+ack >= this x Redis Streams
LAT_P99_TARGET=2000  # µs, publish -> next at LAT_RATE
REPL_ACKS_TARGET=0.50   # publish with acks=all >= this x acks=leader
REPL_CATCHUP_TARGET=500 # MB/s, an empty peer catching up

W=             # the work dir
WORK=          # the workload file
declare -A DPID=() DMNT=() DLOG=()  # daemons this script started, by name
RSS_SAMPLER=   # PID of the background RSS sampler, while one runs
LAG_SAMPLER=   # PID of the background .mq/replicas sampler, while one runs
FAILED=0       # set when a check fails; the script goes on, then exits 1
MISSED=0       # set when a target is missed
declare -A T=()  # elapsed microseconds by "PHASE SYSTEM ROUND"
declare -A RSS=() # "PHASE ROUND" -> "before min max after"

# ---------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
warn() { printf 'bench: %s\n' "$*" >&2; }
die() {
	warn "FAILED: $*"
	local n
	for n in "${!DLOG[@]}"; do
		[[ -s ${DLOG[$n]} ]] || continue
		warn "--- last lines of the $n log (${DLOG[$n]}):"
		tail -n 20 "${DLOG[$n]}" >&2 || true
	done
	exit 1
}
check_fail() { warn "CHECK FAILED: $*"; FAILED=1; }

# step DESC CMD...: run CMD under a timeout, die if it fails or hangs
step() {
	local desc=$1 rc=0
	shift
	timeout -k 5 "$STEP_TIMEOUT" "$@" || rc=$?
	((rc == 0)) && return 0
	((rc == 124 || rc == 137)) && die "$desc: hung, killed after ${STEP_TIMEOUT}s"
	die "$desc: exit status $rc"
}

# run CMD...: CMD under a timeout, its status returned (124: it hung)
run() { timeout -k 5 "$STEP_TIMEOUT" "$@"; }

# timed DESC CMD...: like step, and leave the wall time in ELAPSED (µs),
# minus OVERHEAD: the cost of starting timeout + sh + cat, measured once by
# calibrate (a few ms, which is 10-20% of the fastest baselines)
ELAPSED=0
OVERHEAD=0
timed() {
	local desc=$1 t0 t1 rc=0
	shift
	t0=${EPOCHREALTIME//[.,]/}
	timeout -k 5 "$STEP_TIMEOUT" "$@" || rc=$?
	t1=${EPOCHREALTIME//[.,]/}
	((rc == 124 || rc == 137)) && die "$desc: hung, killed after ${STEP_TIMEOUT}s"
	((rc == 0)) || die "$desc: exit status $rc"
	ELAPSED=$((t1 - t0 - OVERHEAD))
	((ELAPSED > 0)) || ELAPSED=1
}

calibrate() {
	local i
	local -a v=()
	OVERHEAD=0
	for ((i = 0; i < 7; i++)); do
		timed "calibrate" sh -c 'cat "$1" > "$2"' _ /dev/null /dev/null
		v+=("$ELAPSED")
	done
	OVERHEAD=$(median "${v[@]}")
}

# settle: flush dirty pages of earlier steps so they don't bill the next one
settle() { timeout -k 5 "$STEP_TIMEOUT" sync || warn "sync failed or hung"; }

rate() { awk -v n="$MSGS" -v us="$1" 'BEGIN { printf "%.2f", n / us }'; } # M msg/s
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }    # time ratio -> speed ratio
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# cpu_ticks PID: utime + stime of a process, in clock ticks
cpu_ticks() {
	local s
	read -r s <"/proc/$1/stat" || { echo 0; return; }
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}
CLK_TCK=$(getconf CLK_TCK)
cpu_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# rss_start PID FILE / rss_stop: sample VmRSS (KiB) every 0.2 s into FILE
rss_start() {
	(
		while :; do
			awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
			sleep 0.2
		done
	) >>"$2" &
	RSS_SAMPLER=$!
}
rss_stop() {
	[[ -n $RSS_SAMPLER ]] || return 0
	kill "$RSS_SAMPLER" 2>/dev/null || true
	wait "$RSS_SAMPLER" 2>/dev/null || true
	RSS_SAMPLER=
}

# ------------------------------------------------------- daemon handling

# start_daemon NAME MOUNTPOINT CMD...: run CMD (a FUSE daemon in the
# foreground) in the background and wait until MOUNTPOINT is mounted
start_daemon() {
	local name=$1 mnt=$2 deadline
	shift 2
	mkdir -p "$mnt"
	DLOG[$name]=$W/$name.log
	"$@" >"${DLOG[$name]}" 2>&1 &
	DPID[$name]=$!
	DMNT[$name]=$mnt
	deadline=$((SECONDS + 30))
	until mounted "$mnt"; do
		if ! kill -0 "${DPID[$name]}" 2>/dev/null; then
			local rc=0
			wait "${DPID[$name]}" || rc=$?
			unset "DPID[$name]"
			die "$name did not mount $mnt: it exited with status $rc"
		fi
		((SECONDS < deadline)) || die "$name did not mount $mnt within 30 s"
		sleep 0.05
	done
}

# stop_daemon NAME: unmount with fusermount3 -u, then wait for the PID
# (TERM, then KILL only that PID if it does not exit). Returns 1 if the
# unmount failed or the daemon did not exit cleanly with status 0.
stop_daemon() {
	local name=$1 mnt=${DMNT[$1]:-} pid=${DPID[$1]:-} bad=0 rc=0 i
	if [[ -n $mnt ]] && mounted "$mnt"; then
		if ! timeout -k 5 60 fusermount3 -u "$mnt"; then
			warn "$name: fusermount3 -u $mnt failed; lazy unmount"
			timeout -k 5 10 fusermount3 -uz "$mnt" || warn "$name: lazy unmount of $mnt failed"
			bad=1
		fi
	fi
	if [[ -n $pid ]]; then
		for ((i = 0; i < 600; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			warn "$name (pid $pid) still running 60 s after unmount: SIGTERM"
			kill -TERM "$pid" 2>/dev/null || true
			sleep 5
			kill -0 "$pid" 2>/dev/null && { warn "$name (pid $pid): SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
			bad=1
		fi
		wait "$pid" || rc=$?
		((rc == 0)) || { warn "$name (pid $pid) exited with status $rc"; bad=1; }
	fi
	unset "DPID[$name]" "DMNT[$name]"
	return $bad
}

cleanup() {
	local rc=$? n
	set +e
	trap - EXIT INT TERM
	rss_stop
	lag_sampler_stop
	# a leader first: its replicator holds its follower's mount open
	[[ -z ${DPID[replA]:-} ]] || stop_daemon replA || true
	for n in "${!DPID[@]}"; do
		stop_daemon "$n" || true
	done
	if [[ -n $W && -d $W ]]; then
		if awk -v w="$W/" 'index($5, w) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
			warn "something is still mounted under $W: leaving it in place"
		elif [[ $KEEP == 1 ]]; then
			warn "work dir kept: $W"
		else
			rm -rf --one-file-system "$W"
		fi
	fi
	exit "$rc"
}

# ------------------------------------------------------------------ setup

setup() {
	local base=${BENCH_DIR:-$REPO} fstype
	mkdir -p "$base"
	base=$(realpath "$base") # mountinfo shows resolved absolute paths
	fstype=$(stat -f -c %T "$base")
	[[ $fstype == tmpfs || $fstype == ramfs ]] && warn "$base is $fstype, not a disk: numbers will flatter everyone"
	W=$(mktemp -d "$base/.mqfs-bench.XXXXXX")
	WORK=$W/work

	command -v fusermount3 >/dev/null || die "fusermount3 not found (apt-get install fuse3)"
	[[ -e /dev/fuse ]] || die "/dev/fuse missing"

	say "bench: $MSGS msgs of $LINE_BYTES bytes, $ROUNDS rounds (+$WARMUP warm-up), work dir $W ($fstype), $(nproc) cpus, $(uname -r)"

	# the FUSE floor, built into the work dir (nothing is built in the tree)
	# shellcheck disable=SC2046 # pkg-config output is a list of flags
	step "build floor" cc -std=c11 -Wall -Wextra -Werror -O2 -o "$W/floor" "$REPO/scripts/bench/floor.c" \
		$(pkg-config --cflags --libs fuse3)

	# the workload: line i is "%010d " + 88 x's + "\n" = 100 bytes, sorted, no TAB
	step "make workload" awk -v n="$MSGS" 'BEGIN {
		pad = sprintf("%88s", ""); gsub(/ /, "x", pad)
		for (i = 0; i < n; i++) printf "%010d %s\n", i, pad
	}' >"$WORK"
	local size
	size=$(stat -c %s "$WORK")
	((size == MSGS * LINE_BYTES)) || die "workload is $size bytes, expected $((MSGS * LINE_BYTES))"

	calibrate
	say "bench: start-up overhead of each timed command (timeout + sh + cat, subtracted): $OVERHEAD us"

	: >"$W/floor.back"
	start_daemon floor "$W/floor.mnt" "$W/floor" -f "$W/floor.back" "$W/floor.mnt"

	HAVE_MQFS=0
	if [[ -x $MQFS ]]; then
		mkdir -p "$W/mqfs.data"
		start_daemon mqfs "$W/mqfs.mnt" "$MQFS" -f -o "$MQFS_OPTS" "$W/mqfs.data" "$W/mqfs.mnt"
		HAVE_MQFS=1
		say "bench: mqfs $MQFS -o $MQFS_OPTS (pid ${DPID[mqfs]}), RSS at mount $(rss_kib "${DPID[mqfs]}") KiB"
	else
		warn "mqfs binary not found: $MQFS (run make first); measuring the baselines only"
		FAILED=1
	fi
}

# ------------------------------------------- one function per measurement
# publish_SYSTEM ROUND / consume_SYSTEM ROUND: untimed preparation, then one
# timed command (ELAPSED), then untimed checks. EXTRA gets notes for the line.
#
# Every publish first deletes what the previous one of its system wrote (the
# plain file, the floor's backing file, mqfs's previous topic), so that all
# of them write into page cache recycled a moment ago. This matters on VMs
# with free page reporting (virtio-balloon, e.g. Firecracker): RAM that stays
# free for a few seconds goes back to the host, and the first touch of each
# page then costs a host page fault. Here 100 MB of page cache took 200-340 ms
# that way against 35 ms recycled, which would bill whoever allocates fresh
# pages (a new topic) and not whoever rewrites a file it just truncated.
# (Touching and freeing a large buffer beforehand did not help: big free
# blocks are exactly what gets reported.)

EXTRA=

publish_plain() {
	rm -f "$W/plain"
	settle
	timed "plain publish" sh -c 'cat "$1" > "$2"' _ "$WORK" "$W/plain"
	EXTRA=
}

publish_durable() {
	rm -f "$W/plain"
	settle
	timed "durable publish" sh -c 'cat "$1" > "$2" && sync "$2"' _ "$WORK" "$W/plain"
	EXTRA="plain + fsync, for information"
}

publish_dsync() {
	rm -f "$W/plain"
	settle
	timed "dsync publish" dd if="$WORK" of="$W/plain" bs=1M oflag=dsync status=none
	EXTRA="plain, fdatasync per 1 MiB write, for information"
}

consume_plain() {
	settle
	timed "plain consume" sh -c 'cat "$1" > /dev/null' _ "$W/plain"
	EXTRA=
}

publish_floor() {
	local pid=${DPID[floor]} c0 size
	: >"$W/floor.back"
	settle
	c0=$(cpu_ticks "$pid")
	timed "floor publish" sh -c 'cat "$1" >> "$2"' _ "$WORK" "$W/floor.mnt/f"
	EXTRA="daemon cpu $(cpu_s $(($(cpu_ticks "$pid") - c0))) s"
	size=$(step "stat floor" stat -c %s "$W/floor.mnt/f")
	((size == MSGS * LINE_BYTES)) || check_fail "floor holds $size bytes, expected $((MSGS * LINE_BYTES))"
	if [[ $VERIFY == 1 ]]; then
		run cmp -s "$WORK" "$W/floor.mnt/f" || check_fail "floor content differs from the workload"
	fi
}

consume_floor() {
	local pid=${DPID[floor]} c0
	settle
	c0=$(cpu_ticks "$pid")
	timed "floor consume" sh -c 'cat "$1" > /dev/null' _ "$W/floor.mnt/f"
	EXTRA="daemon cpu $(cpu_s $(($(cpu_ticks "$pid") - c0))) s"
}

# mqfs_step PHASE ROUND DESC CMD...: timed CMD with RSS and CPU sampling of mqfs
mqfs_step() {
	local phase=$1 round=$2 desc=$3 pid=${DPID[mqfs]} before after c0 samples mn mx
	shift 3
	samples=$W/rss.$phase.$round
	: >"$samples"
	before=$(rss_kib "$pid")
	c0=$(cpu_ticks "$pid")
	rss_start "$pid" "$samples"
	timed "$desc" "$@"
	rss_stop
	after=$(rss_kib "$pid")
	EXTRA="daemon cpu $(cpu_s $(($(cpu_ticks "$pid") - c0))) s"
	RSS[$phase $round]="$before $(awk 'NR == 1 || $1 < lo { lo = $1 } $1 > hi { hi = $1 } END { print lo + 0, hi + 0 }' "$samples") $after"
	read -r before mn mx after <<<"${RSS[$phase $round]}"
	EXTRA+=", RSS KiB before $before, during $mn..$mx, after $after"
}

# sum of st_size over files
sum_sizes() { step "stat $1" stat -c %s "$@" | awk '{ s += $1 } END { print s + 0 }'; }

topic_parts() { local p; for ((p = 0; p < PARTS; p++)); do printf '%s\n' "$1/$p"; done; }

PREV_TOPIC= # the topic of the previous round, deleted by the next publish

publish_mqfs() {
	local r=$1 t=$W/mqfs.mnt/t$1 size
	local -a parts
	drop_topic
	PREV_TOPIC=t$r
	step "mkdir topic" mkdir "$t"
	settle
	mqfs_step publish "$r" "mqfs publish" sh -c 'cat "$1" > "$2"' _ "$WORK" "$t/publish"
	mapfile -t parts < <(topic_parts "$t")
	size=$(sum_sizes "${parts[@]}")
	((size == MSGS * LINE_BYTES)) || check_fail "mqfs partitions of t$r hold $size bytes, expected $((MSGS * LINE_BYTES))"
	if [[ $VERIFY == 1 ]]; then
		# each line is unique and the workload is sorted, so: every partition
		# is sorted (per-writer order) and their merge is the workload
		local p
		for p in "${parts[@]}"; do
			run sort -c "$p" 2>/dev/null || check_fail "mqfs ${p#"$W"/} is out of order"
		done
		run sort -m "${parts[@]}" | cmp -s - "$WORK" || check_fail "mqfs t$r: the partitions are not the workload exactly once"
	fi
}

consume_mqfs() {
	local r=$1 t=$W/mqfs.mnt/t$1 g size
	local -a parts
	g=$t/groups/g
	step "mkdir group" mkdir "$g"
	mapfile -t parts < <(topic_parts "$g")
	size=$(sum_sizes "${parts[@]}")
	((size == MSGS * LINE_BYTES)) || check_fail "mqfs t$r/groups/g holds $size bytes, expected $((MSGS * LINE_BYTES))"
	settle
	mqfs_step consume "$r" "mqfs consume" sh -c 'cat "$@" > /dev/null' _ "${parts[@]}"
}

# drop_topic: delete PREV_TOPIC (untimed)
drop_topic() {
	[[ -n $PREV_TOPIC ]] || return 0
	run rmdir "$W/mqfs.mnt/$PREV_TOPIC" || warn "rmdir $PREV_TOPIC failed (left in place)"
	PREV_TOPIC=
}

# --------------------------------------------------------------- sections

# record PHASE SYSTEM ROUND: store ELAPSED and print one line
record() {
	local phase=$1 sys=$2 r=$3 line
	T[$phase $sys $r]=$ELAPSED
	line=$(printf 'round %d/%d %-7s %-7s %7.3f s %7s M msg/s' "$r" "$ROUNDS" "$phase" "$sys" \
		"$(awk -v us="$ELAPSED" 'BEGIN { print us / 1e6 }')" "$(rate "$ELAPSED")")
	if [[ $sys == mqfs ]]; then
		local target=$PUBLISH_TARGET
		[[ $phase == consume ]] && target=$CONSUME_TARGET
		line+=" = $(ratio "$ELAPSED" "${T[$phase floor $r]}") x floor (target $target) = $(ratio "$ELAPSED" "${T[$phase plain $r]}") x plain"
	fi
	[[ -n $EXTRA ]] && line+="  ($EXTRA)"
	say "$line"
}

section_throughput() {
	local r phase sys label
	say ""
	say "== throughput: bulk publish (cat > publish) and bulk consume (cat groups/g/*)"
	for ((r = 1 - WARMUP; r <= ROUNDS; r++)); do
		label=$r
		((r >= 1)) || label=warmup$((1 - r))
		for phase in publish consume; do
			for sys in plain durable dsync floor mqfs; do
				[[ $sys == mqfs && $HAVE_MQFS == 0 ]] && continue
				[[ $phase == consume && ($sys == durable || $sys == dsync) ]] && continue
				EXTRA=
				"${phase}_$sys" "$label"
				((r < 1)) || record "$phase" "$sys" "$r"
			done
		done
		((r >= 1)) || say "(warm-up round $((1 - r)) done, not reported)"
	done
	throughput_summary
	[[ -z $PROFILE_DIR ]] || throughput_profile
}

# med PHASE SYSTEM: the median elapsed µs over the rounds (nothing if none)
med() {
	local r
	local -a v=()
	for ((r = 1; r <= ROUNDS; r++)); do
		if [[ -n ${T[$1 $2 $r]:-} ]]; then v+=("${T[$1 $2 $r]}"); fi
	done
	((${#v[@]} == 0)) || median "${v[@]}"
}

throughput_summary() {
	local phase target plain floor mqfs durable dsync rf line vals r
	say ""
	say "== summary (median of $ROUNDS rounds, $MSGS msgs of $LINE_BYTES bytes)"
	for phase in publish consume; do
		plain=$(med "$phase" plain)
		floor=$(med "$phase" floor)
		mqfs=$(med "$phase" mqfs)
		if [[ -z $mqfs ]]; then
			say "$phase: mqfs not measured; floor $(rate "$floor") M msg/s = $(ratio "$floor" "$plain") x plain ($(rate "$plain") M)"
			continue
		fi
		[[ $phase == publish ]] && target=$PUBLISH_TARGET || target=$CONSUME_TARGET
		rf=$(ratio "$mqfs" "$floor")
		line="$phase: mqfs $(rate "$mqfs") M msg/s = $rf x floor ($(rate "$floor") M) = $(ratio "$mqfs" "$plain") x plain ($(rate "$plain") M)"
		if ge "$rf" "$target"; then
			line+="  target >= $target x floor: met"
		else
			line+="  target >= $target x floor: MISSED"
			MISSED=1
		fi
		say "$line"
	done
	durable=$(med publish durable)
	dsync=$(med publish dsync)
	say "(for information, publish to a plain file with one fsync at the end: $(rate "$durable") M msg/s;" \
		"with an fdatasync per 1 MiB write: $(rate "$dsync") M msg/s)"
	((HAVE_MQFS)) || return 0
	for phase in publish consume; do
		vals=
		for ((r = 1; r <= ROUNDS; r++)); do
			vals+="${RSS[$phase $r]:-}"$'\n'
		done
		awk -v phase="$phase" 'NF == 4 {
			if (!n++) { b0 = $1; bl = bh = $1; dl = $2; dh = $3; al = ah = $4 }
			if ($1 < bl) bl = $1; if ($1 > bh) bh = $1
			if ($2 < dl) dl = $2; if ($3 > dh) dh = $3
			if ($4 < al) al = $4; if ($4 > ah) ah = $4
			a1 = $4
		} END {
			printf "mqfs RSS %s (KiB, %d rounds): before %d..%d, during %d..%d, after %d..%d; first before -> last after: %d -> %d\n",
				phase, n, bl, bh, dl, dh, al, ah, b0, a1
		}' <<<"$vals"
	done
	say "mqfs RSS now: $(rss_kib "${DPID[mqfs]}") KiB"
}

# perf_top DATA: the top symbols of a perf recording, by self time, then
# (in the file only) by time including callees
perf_top() {
	perf report -i "$1" --stdio --no-children --sort dso,symbol -g none --percent-limit 0.5 2>/dev/null |
		grep -E '^ +[0-9.]+%' | sed 's/[ -]*$//' | head -n 30 || true
	echo "-- including callees:"
	perf report -i "$1" --stdio --children --sort dso,symbol -g none --percent-limit 2 2>/dev/null |
		grep -E '^ +[0-9.]+%' | sed 's/[ -]*$//' | head -n 40 || true
}

# profile DAEMON NAME DESC CMD...: run CMD with perf record -g attached to DAEMON
profile() {
	local d=$1 name=$2 desc=$3 perfpid
	shift 3
	perf record -g -o "$PROFILE_DIR/$name.data" -p "${DPID[$d]}" >"$PROFILE_DIR/$name.log" 2>&1 &
	perfpid=$!
	sleep 0.5 # let perf attach
	timed "$desc" "$@"
	kill -INT "$perfpid" 2>/dev/null || true
	wait "$perfpid" || true
	perf_top "$PROFILE_DIR/$name.data" >"$PROFILE_DIR/$name.txt"
	say "-- $name: $(rate "$ELAPSED") M msg/s under perf; top symbols (self time), full report $PROFILE_DIR/$name.txt:"
	head -n 15 "$PROFILE_DIR/$name.txt"
}

throughput_profile() {
	command -v perf >/dev/null || { warn "perf not found: no profile"; return 0; }
	mkdir -p "$PROFILE_DIR"
	local t=$W/mqfs.mnt/tprof
	local -a parts
	say ""
	say "== profile (one extra round, perf record -g on each daemon; rates are slowed by perf)"
	: >"$W/floor.back"
	settle
	profile floor floor-publish "floor publish" sh -c 'cat "$1" >> "$2"' _ "$WORK" "$W/floor.mnt/f"
	settle
	profile floor floor-consume "floor consume" sh -c 'cat "$1" > /dev/null' _ "$W/floor.mnt/f"
	((HAVE_MQFS)) || return 0
	drop_topic
	PREV_TOPIC=tprof
	step "mkdir topic" mkdir "$t"
	settle
	profile mqfs mqfs-publish "mqfs publish" sh -c 'cat "$1" > "$2"' _ "$WORK" "$t/publish"
	step "mkdir group" mkdir "$t/groups/g"
	mapfile -t parts < <(topic_parts "$t/groups/g")
	settle
	profile mqfs mqfs-consume "mqfs consume" sh -c 'cat "$@" > /dev/null' _ "${parts[@]}"
}

# ------------------------------------------------ lease+ack and latency

# build_tool NAME: compile scripts/bench/NAME.c into the work dir, once
build_tool() {
	[[ -x $W/$1 ]] && return 0
	step "build $1" cc -std=c11 -Wall -Wextra -Werror -O2 -pthread -o "$W/$1" "$REPO/scripts/bench/$1.c"
}

# kv FILE KEY: the value of the line "KEY VALUE" of FILE
kv() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { exit !f }' "$1"; }

# secs_us SECONDS: whole microseconds
secs_us() { awk -v s="$1" 'BEGIN { printf "%d", s * 1e6 + 0.5 }'; }

# check_group G WHAT EXPECTED: untimed, G/stats must say that all EXPECTED
# messages are finished: per partition committed = end, lag, in_flight,
# retry and dead 0; PARTS partitions whose ends add up to EXPECTED
check_group() {
	local g=$1 what=$2 want=$3 out
	[[ $VERIFY == 1 ]] || return 0
	out=$(run cat "$g/stats") || { check_fail "$what: cannot read ${g#"$W"/}/stats"; return; }
	awk -v parts="$PARTS" -v want="$want" '
		NR == 1 { if ($0 != "partition committed end lag in_flight retry dead") { print "unexpected header: " $0; bad = 1 }; next }
		{ n++; end += $3
		  if ($2 != $3 || $4 != 0 || $5 != 0 || $6 != 0 || $7 != 0) { print "partition " $1 ": committed " $2 " end " $3 " lag " $4 " in_flight " $5 " retry " $6 " dead " $7; bad = 1 } }
		END {
			if (n != parts) { print n " partitions, expected " parts; bad = 1 }
			if (end != want) { print "partitions end at " end " messages in all, expected " want; bad = 1 }
			exit bad
		}' <<<"$out" >"$W/check.out" || check_fail "$what: ${g#"$W"/}/stats: $(paste -sd';' "$W/check.out")"
}

# lease_mqfs ROUND WORKERS: publish MSGS to a fresh topic (untimed), then
# lease+ack them all with WORKERS workers; T[lease mqfsWORKERS ROUND] = µs
LEASE_INFO=
lease_mqfs() {
	local r=$1 nw=$2 t=$W/mqfs.mnt/lease$2w$1 out=$W/lease.$2w.$1.out el
	step "mkdir topic" mkdir "$t"
	step "lease publish" sh -c 'cat "$1" > "$2"' _ "$WORK" "$t/publish"
	step "mkdir group" mkdir "$t/groups/g"
	settle
	mqfs_step "lease${nw}w" "$r" "mqfs lease+ack ${nw}w" \
		"$W/lease" -w "$nw" -a "$LEASE_ACK" -l $((LINE_BYTES - 1)) "$t/groups/g" "$MSGS" >"$out"
	el=$(kv "$out" lease_elapsed_s) || die "lease: no lease_elapsed_s in $out"
	ELAPSED=$(secs_us "$el")
	LEASE_INFO="$(kv "$out" lease_reads) reads of $(kv "$out" lease_msgs_per_read) msgs, $(kv "$out" lease_ack_writes) ack writes, $EXTRA"
	check_group "$t/groups/g" "lease ${nw}w round $r" "$MSGS"
	run rmdir "$t" || warn "rmdir ${t#"$W"/} failed (left in place)"
}

# redis_ready: 0 if the Redis baseline can run (installing it as root if
# missing, like scripts/deps.sh), 1 if it is to be skipped
REDIS_STATE= # "", ok or skip
redis_ready() {
	[[ $REDIS_STATE == ok ]] && return 0
	[[ $REDIS_STATE == skip ]] && return 1
	REDIS_STATE=skip
	if [[ $REDIS != 1 ]]; then
		say "(Redis Streams baseline skipped: REDIS=$REDIS)"
		return 1
	fi
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null ||
		! pkg-config --exists hiredis 2>/dev/null; then
		if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
			say "bench: installing redis-server libhiredis-dev for the Redis Streams baseline"
			DEBIAN_FRONTEND=noninteractive timeout -k 5 600 apt-get update -qq >/dev/null 2>&1 || true
			DEBIAN_FRONTEND=noninteractive timeout -k 5 600 apt-get install -y -qq redis-server redis-tools libhiredis-dev >/dev/null 2>&1 ||
				warn "apt-get install redis-server libhiredis-dev failed"
		fi
	fi
	REDIS_STATE=ok
}

# lease_redis ROUND: the Redis Streams baseline, 1 then 4 workers;
# T[lease redis1 ROUND], T[lease redis4 ROUND] = µs
lease_redis() {
	local r=$1
	local out=$W/redis.$r.out errf=$W/redis.$r.err rc=0 e1 e4
	redis_ready || return 0
	run "$REPO/scripts/bench/redis_streams.sh" "$MSGS" "$W/redis" >"$out" 2>"$errf" || rc=$?
	if ((rc == 2)); then
		say "(Redis Streams baseline skipped: $(grep -m1 'not available' "$errf" || tail -n 1 "$errf"))"
		REDIS_STATE=skip
		return 0
	fi
	if ((rc != 0)); then
		((rc == 124 || rc == 137)) && warn "redis_streams.sh hung, killed after ${STEP_TIMEOUT}s"
		tail -n 20 "$errf" >&2
		check_fail "redis_streams.sh round $r: exit status $rc"
		return 0
	fi
	((r > 1)) || say "bench: $(head -n 1 "$errf")"
	if ! e1=$(kv "$out" redis_streams_elapsed_s) || ! e4=$(kv "$out" redis_streams_4w_elapsed_s); then
		check_fail "redis_streams.sh round $r: output without elapsed times: $(paste -sd' ' "$out")"
		return 0
	fi
	T[lease redis1 $r]=$(secs_us "$e1")
	T[lease redis4 $r]=$(secs_us "$e4")
}

# lease_line ROUND SYSTEM NOTE: one result line (SYSTEM mqfs1 -> "mqfs 1w")
lease_line() {
	local us=${T[lease $2 $1]}
	printf 'round %d/%d lease   %-8s %7.3f s %7s M msg/s%s\n' "$1" "$ROUNDS" "${2%[0-9]} ${2##*[a-z]}w" \
		"$(awk -v us="$us" 'BEGIN { print us / 1e6 }')" "$(rate "$us")" "${3:+  ($3)}"
}

section_lease() {
	local r nw label
	say ""
	say "== lease: batch lease + ack (read 1 MiB of T/groups/g/batch, ack its ids in one write), $MSGS msgs, next to Redis Streams"
	say "   (mqfs: sync from MQFS_OPTS, ack descriptor: $LEASE_ACK; Redis: XREADGROUP COUNT 1000 + XACK, appendfsync everysec)"
	((HAVE_MQFS)) || { warn "no mqfs: section lease skipped"; return 0; }
	build_tool lease
	for ((r = 1 - WARMUP; r <= ROUNDS; r++)); do
		label=$r
		((r >= 1)) || label=warmup$((1 - r))
		for nw in 1 4; do
			lease_mqfs "$label" "$nw"
			((r < 1)) || { T[lease mqfs$nw $r]=$ELAPSED; lease_line "$r" "mqfs$nw" "$LEASE_INFO"; }
		done
		if ((r < 1)); then
			say "(warm-up round $((1 - r)) of mqfs done, not reported; Redis gets none: it starts a fresh server each time)"
			continue
		fi
		lease_redis "$r"
		[[ -n ${T[lease redis1 $r]:-} ]] || continue
		lease_line "$r" redis1
		lease_line "$r" redis4
		say "round $r/$ROUNDS lease   mqfs / redis: 1 worker $(ratio "${T[lease mqfs1 $r]}" "${T[lease redis1 $r]}") x," \
			"4 workers $(ratio "${T[lease mqfs4 $r]}" "${T[lease redis4 $r]}") x"
	done
	lease_summary
	[[ -z $PROFILE_DIR ]] || lease_profile
}

lease_summary() {
	local nw m rd rr line
	say ""
	say "== lease summary (median of $ROUNDS rounds, $MSGS msgs of $LINE_BYTES bytes)"
	for nw in 1 4; do
		m=$(med lease "mqfs$nw")
		[[ -n $m ]] || continue
		rd=$(med lease "redis$nw")
		line="lease+ack, $nw worker$( ((nw == 1)) || echo s): mqfs $(rate "$m") M msg/s"
		if [[ -z $rd ]]; then
			say "$line; Redis Streams not measured: no target check"
			continue
		fi
		rr=$(ratio "$m" "$rd")
		line+=" = $rr x Redis Streams ($(rate "$rd") M msg/s)"
		if ge "$rr" "$LEASE_TARGET"; then
			line+="  target >= $LEASE_TARGET x Redis: met"
		else
			line+="  target >= $LEASE_TARGET x Redis: MISSED"
			MISSED=1
		fi
		say "$line"
	done
}

# perf_around DAEMON NAME CMD...: step CMD with perf record -g attached to DAEMON
perf_around() {
	local d=$1 name=$2 perfpid
	shift 2
	perf record -g -o "$PROFILE_DIR/$name.data" -p "${DPID[$d]}" >"$PROFILE_DIR/$name.log" 2>&1 &
	perfpid=$!
	sleep 0.5 # let perf attach
	step "$name" "$@" >"$PROFILE_DIR/$name.out"
	kill -INT "$perfpid" 2>/dev/null || true
	wait "$perfpid" || true
	perf_top "$PROFILE_DIR/$name.data" >"$PROFILE_DIR/$name.txt"
	say "-- $name under perf: $(paste -sd' ' "$PROFILE_DIR/$name.out")"
	say "   top symbols (self time), full report $PROFILE_DIR/$name.txt:"
	head -n 15 "$PROFILE_DIR/$name.txt"
}

# strace_around DAEMON NAME CMD...: step CMD with strace -c -f attached to DAEMON
strace_around() {
	local d=$1 name=$2 spid
	shift 2
	strace -c -f -o "$PROFILE_DIR/$name.txt" -p "${DPID[$d]}" 2>/dev/null &
	spid=$!
	sleep 1 # let strace attach to every thread
	step "$name" "$@" >"$PROFILE_DIR/$name.out"
	kill -INT "$spid" 2>/dev/null || true
	wait "$spid" || true
	say "-- $name under strace -c -f (daemon system calls): $(paste -sd' ' "$PROFILE_DIR/$name.out")"
	head -n 12 "$PROFILE_DIR/$name.txt"
}

lease_profile() {
	command -v perf >/dev/null || { warn "perf not found: no profile"; return 0; }
	mkdir -p "$PROFILE_DIR"
	local nw t
	say ""
	say "== lease profile (one extra round per worker count, perf record -g on mqfs; rates are slowed by perf)"
	for nw in 1 4; do
		t=$W/mqfs.mnt/leaseprof$nw
		step "mkdir topic" mkdir "$t"
		step "lease publish" sh -c 'cat "$1" > "$2"' _ "$WORK" "$t/publish"
		step "mkdir group" mkdir "$t/groups/g"
		settle
		perf_around mqfs "mqfs-lease-${nw}w" "$W/lease" -w "$nw" -a "$LEASE_ACK" "$t/groups/g" "$MSGS"
		check_group "$t/groups/g" "lease profile ${nw}w" "$MSGS"
		run rmdir "$t" || warn "rmdir ${t#"$W"/} failed (left in place)"
	done
	command -v strace >/dev/null || return 0
	t=$W/mqfs.mnt/leasestrace
	step "mkdir topic" mkdir "$t"
	step "lease publish" sh -c 'cat "$1" > "$2"' _ "$WORK" "$t/publish"
	step "mkdir group" mkdir "$t/groups/g"
	settle
	strace_around mqfs "mqfs-lease-1w-strace" "$W/lease" -w 1 -a "$LEASE_ACK" "$t/groups/g" "$MSGS"
	check_group "$t/groups/g" "lease strace" "$MSGS"
	run rmdir "$t" || warn "rmdir ${t#"$W"/} failed (left in place)"
}

# lat_topic NAME SYNC: a fresh topic with group g; SYNC "" keeps the mount's
# sync, else it is set in T/config. LAT_SYNC = the topic's sync.
LAT_SYNC=
lat_topic() {
	local t=$W/mqfs.mnt/$1
	step "mkdir topic" mkdir "$t"
	[[ -z $2 ]] || step "set sync=$2" sh -c 'printf "sync=%s\n" "$1" > "$2"' _ "$2" "$t/config"
	step "mkdir group" mkdir "$t/groups/g"
	LAT_SYNC=$(run sed -n 's/^sync=//p' "$t/config") || die "latency: cannot read $1/config"
	[[ -n $LAT_SYNC ]] || die "latency: no sync= in $1/config"
}

declare -A LAT=() # "CFG ROUND KEY" -> value (µs, or msgs/s); CFG = SYNC-bN
LAT_KEYS="p50 p90 p99 p999 max write_p50 write_p99 behind_max"
declare -A LAT_NAME=() # CFG -> how the summary names it
LAT_CFGS=()            # in the order measured; the first is judged

# lat_name SYNC N: "sync=batch, 10 msgs per write (linger <= 0.9 ms included)"
lat_name() {
	if (($2 == 1)); then
		printf 'sync=%s, 1 msg per write' "$1"
	else
		printf 'sync=%s, %d msgs per write (linger <= %s ms included)' "$1" "$2" \
			"$(awk -v n="$2" -v r="$LAT_RATE" 'BEGIN { printf "%g", (n - 1) * 1000 / r }')"
	fi
}

# lat_run ROUND SYNC N: one latency measurement on a fresh topic, N messages
# per write(); SYNC "" = the mount's. Skipped if this round already
# measured the same configuration.
lat_run() {
	local r=$1 want=$2 b=$3 t=lat${2:-default}b$3r$1 sync cfg out k pid=${DPID[mqfs]} c0 cpu
	lat_topic "$t" "$want"
	sync=$LAT_SYNC
	cfg=$sync-b$b
	if [[ -n ${LAT[$cfg $r rate]:-} ]]; then
		run rmdir "$W/mqfs.mnt/$t" || warn "rmdir $t failed (left in place)"
		return 0
	fi
	if [[ -z ${LAT_NAME[$cfg]:-} ]]; then
		LAT_CFGS+=("$cfg")
		LAT_NAME[$cfg]=$(lat_name "$sync" "$b")
	fi
	out=$W/lat.$cfg.$r.out
	settle
	c0=$(cpu_ticks "$pid")
	local keyed=()
	((b == 1)) || keyed=(-K "$LAT_KEYED")
	step "latency $cfg" "$W/lease_latency" -r "$LAT_RATE" -n "$LAT_MSGS" -W "$LAT_WARMUP" -b "$b" "${keyed[@]}" \
		-k "$LAT_READERS" -p "$LAT_PUBLISHERS" -s "$LINE_BYTES" -o "$W/lat.$cfg.$r.dump" "$W/mqfs.mnt/$t" g >"$out"
	cpu=$(cpu_s $(($(cpu_ticks "$pid") - c0)))
	[[ $(kv "$out" latency_batch) == "$b" ]] || die "latency: $out does not say latency_batch $b"
	LAT[$cfg $r rate]=$(kv "$out" latency_publish_rate_per_s) || die "latency: bad output in $out"
	for k in $LAT_KEYS; do
		LAT[$cfg $r $k]=$(kv "$out" "latency_${k}_us") || die "latency: no latency_${k}_us in $out"
	done
	printf 'round %d/%d latency sync=%-6s %3d msg/write, published %6s msg/s: p50 %7s  p90 %7s  p99 %8s  p99.9 %8s  max %8s us  (publish write() p50 %s p99 %s us, at worst %s us behind schedule; daemon cpu %s s)\n' \
		"$r" "$ROUNDS" "$sync" "$b" "${LAT[$cfg $r rate]}" "${LAT[$cfg $r p50]}" "${LAT[$cfg $r p90]}" \
		"${LAT[$cfg $r p99]}" "${LAT[$cfg $r p999]}" "${LAT[$cfg $r max]}" \
		"${LAT[$cfg $r write_p50]}" "${LAT[$cfg $r write_p99]}" "${LAT[$cfg $r behind_max]}" "$cpu"
	check_group "$W/mqfs.mnt/$t/groups/g" "latency $cfg round $r" $((LAT_MSGS + LAT_WARMUP))
	run rmdir "$W/mqfs.mnt/$t" || warn "rmdir $t failed (left in place)"
}

# lat_med CFG KEY: the median over the rounds (one decimal; none for rate)
lat_med() {
	local r fmt=%.1f
	[[ $2 == rate ]] && fmt=%.0f
	for ((r = 1; r <= ROUNDS; r++)); do
		printf '%s\n' "${LAT[$1 $r $2]}"
	done | sort -g | awk -v fmt="$fmt" '{ v[NR] = $1 } END { printf fmt, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

section_latency() {
	local r cfg p99 prate wp50 line first
	[[ $LAT_BATCH =~ ^[1-9][0-9]*$ ]] || die "LAT_BATCH must be a positive integer"
	# a group is N consecutive messages, which only one publisher has
	say ""
	say "== latency: publish -> next at $LAT_RATE msgs/s to T/publish ($LAT_PUBLISHERS publisher(s)), $LAT_READERS readers" \
		"(open next, read, close, ack), $LAT_MSGS msgs after $LAT_WARMUP warm-up msgs;" \
		"(a) the mount's sync, $LAT_BATCH msg(s) per write (target), (b) sync=none and (c) the mount's sync, 1 msg per write (for information)"
	((HAVE_MQFS)) || { warn "no mqfs: section latency skipped"; return 0; }
	build_tool lease_latency
	for ((r = 1; r <= ROUNDS; r++)); do
		lat_run "$r" "" "$LAT_BATCH" # (a) the mount's sync (MQFS_OPTS; sync=batch by default)
		lat_run "$r" none 1          # (b) the lease path alone
		lat_run "$r" "" 1            # (c) one commit wait per message
	done
	say ""
	say "== latency summary (median of $ROUNDS rounds; µs from the message's send time to the reader's read() returning;" \
		"send time = just before the write() with 1 msg per write, the message's due time with more)"
	first=1
	for cfg in "${LAT_CFGS[@]}"; do
		prate=$(lat_med "$cfg" rate)
		p99=$(lat_med "$cfg" p99)
		wp50=$(lat_med "$cfg" write_p50)
		line="${LAT_NAME[$cfg]}: published $prate msg/s (asked $LAT_RATE); p50 $(lat_med "$cfg" p50), p90 $(lat_med "$cfg" p90)"
		line+=", p99 $p99, p99.9 $(lat_med "$cfg" p999), max $(lat_med "$cfg" max) us;"
		line+=" publish write() p50 $wp50, p99 $(lat_med "$cfg" write_p99) us"
		if ((first)); then
			# the target is judged on (a): the mount's own sync, LAT_BATCH per write
			if ge "$LAT_P99_TARGET" "$p99" && ge "$prate" "$(awk -v r="$LAT_RATE" 'BEGIN { print r * 0.95 }')"; then
				line+="  target p99 <= $LAT_P99_TARGET us at $LAT_RATE msg/s: met"
			else
				line+="  target p99 <= $LAT_P99_TARGET us at $LAT_RATE msg/s: MISSED"
				ge "$LAT_P99_TARGET" "$p99" && line+=" (the publisher reached only $prate msg/s)"
				MISSED=1
			fi
		elif [[ $cfg == none-* ]]; then
			line+="  (for information: the lease path alone, no commit to wait for)"
		else
			# a writer's next write() waits for this one's commit
			line+="  (for information: one writer waiting for a commit per write() gets about"
			line+=" $(awk -v w="$wp50" -v n="${cfg##*-b}" 'BEGIN { printf "%.0f", (w > 0) ? n * 1e6 / w : 0 }') msg/s at most)"
		fi
		first=0
		say "$line"
	done
	[[ -z $PROFILE_DIR ]] || latency_profile
}

latency_profile() {
	command -v perf >/dev/null || { warn "perf not found: no profile"; return 0; }
	mkdir -p "$PROFILE_DIR"
	local want b t sync
	say ""
	say "== latency profile (one extra run of (a) and of (b), perf record -g on mqfs, then strace -c -f)"
	for want in "" none; do
		b=1
		[[ -n $want ]] || b=$LAT_BATCH
		t=latprof${want:-default}
		lat_topic "$t" "$want"
		sync=$LAT_SYNC
		perf_around mqfs "mqfs-latency-$sync-b$b" "$W/lease_latency" -r "$LAT_RATE" -n "$LAT_MSGS" -W "$LAT_WARMUP" \
			-b "$b" -k "$LAT_READERS" -p "$LAT_PUBLISHERS" -s "$LINE_BYTES" "$W/mqfs.mnt/$t" g
		run rmdir "$W/mqfs.mnt/$t" || warn "rmdir $t failed (left in place)"
	done
	command -v strace >/dev/null || return 0
	t=latstrace
	lat_topic "$t" none
	sync=$LAT_SYNC
	strace_around mqfs "mqfs-latency-$sync-strace" "$W/lease_latency" -r 2000 -n 4000 -W 0 \
		-k "$LAT_READERS" -p "$LAT_PUBLISHERS" -s "$LINE_BYTES" "$W/mqfs.mnt/$t" g
	run rmdir "$W/mqfs.mnt/$t" || warn "rmdir $t failed (left in place)"
}

# ------------------------------------------------------------ replication
# A pair of daemons per measurement: replA (the leader) on $W/replA.mnt,
# replB (its one follower) on $W/replB.mnt, data dirs under $W/repl.d
# (deleted after each measurement).

RA=      # the leader's mountpoint, RB the follower's, RD their data dirs
RB=
RD=
declare -A RL=() # "ROUND KEY" -> a number of part (c) or of the catch-up

# lag_sampler_start FILE / lag_sampler_stop: lag_messages of the peer in
# $RA/.mq/replicas every 100 ms, one line each, into FILE
lag_sampler_start() {
	(
		while :; do
			if out=$(timeout -k 1 5 cat "$RA/.mq/replicas" 2>/dev/null); then
				read -r _ _ lag _ <<<"${out#*$'\n'}"
				printf '%s\n' "${lag:-?}"
			fi
			sleep 0.1
		done
	) >"$1" &
	LAG_SAMPLER=$!
}
lag_sampler_stop() {
	[[ -n $LAG_SAMPLER ]] || return 0
	kill "$LAG_SAMPLER" 2>/dev/null || true
	wait "$LAG_SAMPLER" 2>/dev/null || true
	LAG_SAMPLER=
}

# repl_follower / repl_leader OPTS: start replB on $RD/b, replA on $RD/a
# (the data dirs are created if missing)
repl_follower() {
	mkdir -p "$RD/b"
	start_daemon replB "$RB" "$MQFS" -f -o "$MQFS_OPTS,role=follower" "$RD/b" "$RB"
}
repl_leader() {
	mkdir -p "$RD/a"
	start_daemon replA "$RA" "$MQFS" -f -o "$MQFS_OPTS${1:+,$1}" "$RD/a" "$RA"
}

# repl_down: stop the leader, then the follower (whichever run), and
# delete their data dirs
repl_down() {
	local n
	for n in replA replB; do
		[[ -n ${DPID[$n]:-} ]] || continue
		stop_daemon "$n" || check_fail "$n did not unmount and exit cleanly"
	done
	run rm -rf --one-file-system "$RD" || die "cannot delete $RD"
}

# repl_peer: the peer's line of $RA/.mq/replicas into PEER_* (1: unreadable)
PEER_INSYNC=
PEER_LAG=
PEER_STATE=
PEER_LINE=
repl_peer() {
	local out
	out=$(run cat "$RA/.mq/replicas") || return 1
	[[ ${out%%$'\n'*} == "peer in_sync lag_messages lag_bytes state error" ]] ||
		die "$RA/.mq/replicas: unexpected header: ${out%%$'\n'*}"
	PEER_LINE=${out#*$'\n'}
	PEER_LINE=${PEER_LINE%%$'\n'*}
	read -r _ PEER_INSYNC PEER_LAG _ PEER_STATE _ <<<"$PEER_LINE"
}

# repl_lag0 WHAT: poll every 20 ms until the peer's lag_messages is 0; LAG0_US
# = the time (µs) the poll saw it. Dies after STEP_TIMEOUT s.
LAG0_US=0
repl_lag0() {
	local deadline=$((SECONDS + STEP_TIMEOUT))
	while :; do
		if repl_peer && [[ $PEER_LAG == 0 ]]; then
			LAG0_US=${EPOCHREALTIME//[.,]/}
			return 0
		fi
		((SECONDS < deadline)) || die "$1: the peer's lag did not reach 0 within ${STEP_TIMEOUT}s ($PEER_LINE)"
		sleep 0.02
	done
}

# repl_ready TOPIC: wait (bounded) until the peer is in sync, caught up,
# and shows TOPIC's partitions: so that acks=all really waits for it
repl_ready() {
	local deadline=$((SECONDS + STEP_TIMEOUT))
	local -a parts
	mapfile -t parts < <(topic_parts "$RB/$1")
	while :; do
		if repl_peer && [[ $PEER_INSYNC == yes && $PEER_LAG == 0 && $PEER_STATE == ok ]] &&
			run stat "${parts[@]}" >/dev/null 2>&1; then
			return 0
		fi
		((SECONDS < deadline)) || die "peer not ready with topic $1 within ${STEP_TIMEOUT}s ($PEER_LINE)"
		sleep 0.02
	done
}

# repl_same TOPIC BYTES WHAT: untimed: A's partitions of TOPIC hold BYTES in
# all, and (VERIFY=1) B's are byte-identical to them
repl_same() {
	local t=$1 want=$2 what=$3 size p
	local -a parts
	mapfile -t parts < <(topic_parts "$RA/$t")
	size=$(sum_sizes "${parts[@]}")
	((size == want)) || check_fail "$what: the leader's partitions of $t hold $size bytes, expected $want"
	[[ $VERIFY == 1 ]] || return 0
	for ((p = 0; p < PARTS; p++)); do
		run cmp -s "$RA/$t/$p" "$RB/$t/$p" || check_fail "$what: follower's $t/$p differs from the leader's"
	done
}

# two_cpu: the CPU ticks of replA and replB, "A B"
two_cpu() { echo "$(cpu_ticks "${DPID[replA]}") $(cpu_ticks "${DPID[replB]}")"; }
# cpu_note "A0 B0": "daemon cpu leader X s, follower Y s" since then
cpu_note() {
	local a0 b0 a1 b1
	read -r a0 b0 <<<"$1"
	read -r a1 b1 <<<"$(two_cpu)"
	echo "daemon cpu leader $(cpu_s $((a1 - a0))) s, follower $(cpu_s $((b1 - b0))) s"
}

# repl_publish ROUND LABEL ACKS: (a) for one acks mode;
# T[repl wACKS ROUND], T[repl sACKS ROUND] = µs (ROUND > 0 only)
repl_publish() {
	local r=$1 label=$2 acks=$3 c0 note
	repl_follower
	repl_leader "peers=$RB,acks=$acks"
	step "mkdir topic" mkdir "$RA/T" "$RA/S"
	repl_ready T
	repl_ready S
	settle
	c0=$(two_cpu)
	timed "publish acks=$acks, $REPL_WRITERS writers" sh -c '
		pub=$1; shift; pids=
		for f; do cat "$f" > "$pub" & pids="$pids $!"; done
		rc=0
		for p in $pids; do wait "$p" || rc=$?; done
		exit $rc' _ "$RA/T/publish" "${REPL_PIECES[@]}"
	note=$(cpu_note "$c0")
	if ((r > 0)); then
		T[repl w$acks $r]=$ELAPSED
		printf 'round %d/%d repl publish acks=%-6s %2d writers %7.3f s %7s M msg/s  (%s)\n' "$r" "$ROUNDS" "$acks" \
			"$REPL_WRITERS" "$(awk -v us="$ELAPSED" 'BEGIN { print us / 1e6 }')" "$(rate "$ELAPSED")" "$note"
	fi
	repl_lag0 "after publish acks=$acks"
	repl_same T $((MSGS * LINE_BYTES)) "publish acks=$acks round $label"

	settle
	c0=$(two_cpu)
	timed "publish acks=$acks, 1 writer" sh -c 'cat "$1" > "$2"' _ "$WORK" "$RA/S/publish"
	note=$(cpu_note "$c0")
	if ((r > 0)); then
		T[repl s$acks $r]=$ELAPSED
		printf 'round %d/%d repl publish acks=%-6s  1 writer  %7.3f s %7s M msg/s  (%s)\n' "$r" "$ROUNDS" "$acks" \
			"$(awk -v us="$ELAPSED" 'BEGIN { print us / 1e6 }')" "$(rate "$ELAPSED")" "$note"
	fi
	repl_lag0 "after 1-writer publish acks=$acks"
	repl_same S $((MSGS * LINE_BYTES)) "1-writer publish acks=$acks round $label"
	repl_down
}

mbps() { awk -v b="$1" -v us="$2" 'BEGIN { printf "%.0f", b / us }'; } # bytes, µs -> MB/s

# repl_catchup ROUND LABEL: (b); RL[ROUND cu|cp|cpsync|mount] = µs
repl_catchup() {
	local r=$1 label=$2 want=$((REPL_CATCHUP_MSGS * LINE_BYTES)) logs size t0 t1 c0 note
	local -a parts segs
	# the leader's data, published without peers
	repl_leader ""
	step "mkdir topic" mkdir "$RA/T"
	step "catch-up publish" sh -c 'cat "$1" > "$2"' _ "$REPL_CU_WORK" "$RA/T/publish"
	stop_daemon replA || check_fail "replA did not unmount and exit cleanly"
	mapfile -t segs < <(find "$RD/a/topics/T/parts" -name '*.log' | sort)
	((${#segs[@]} > 0)) || die "catch-up: no segment files under $RD/a/topics/T/parts"
	logs=$(sum_sizes "${segs[@]}")

	# the plain-file baseline: the same segment files, copied on the same disk
	mkdir -p "$RD/copy"
	settle
	timed "cp segments" sh -c 'src=$1 dst=$2; shift 2; cd "$src" && cp --parents "$@" "$dst"' _ \
		"$RD/a" "$RD/copy" "${segs[@]#"$RD/a/"}"
	t0=$ELAPSED
	timed "fsync copies" sh -c 'cd "$1" && shift && sync "$@"' _ "$RD/copy" "${segs[@]#"$RD/a/"}"
	if ((r > 0)); then
		RL[$r cp]=$t0
		RL[$r cpsync]=$((t0 + ELAPSED))
	fi
	run rm -rf --one-file-system "$RD/copy" || die "cannot delete $RD/copy"

	# the catch-up: an empty follower, then the leader with peers=B
	repl_follower
	settle
	c0=$(cpu_ticks "${DPID[replB]}")
	t0=${EPOCHREALTIME//[.,]/}
	repl_leader "peers=$RB"
	t1=${EPOCHREALTIME//[.,]/}
	repl_lag0 "catch-up"
	note="leader mounted in $(((t1 - t0) / 1000)) ms, follower cpu $(cpu_s $(($(cpu_ticks "${DPID[replB]}") - c0))) s"
	mapfile -t parts < <(topic_parts "$RB/T")
	size=$(sum_sizes "${parts[@]}")
	((size == want)) || check_fail "catch-up round $label: lag 0, but the follower's partitions hold $size bytes, expected $want"
	((logs == want)) || warn "catch-up: the segment .log files hold $logs bytes, the partitions $want"
	if ((r > 0)); then
		RL[$r cu]=$((LAG0_US - t0))
		RL[$r mount]=$((t1 - t0))
		printf 'round %d/%d repl catch-up %d MB: %7.3f s %5s MB/s  (%s); cp of the segments %5s MB/s, cp + fsync %5s MB/s\n' \
			"$r" "$ROUNDS" $((want / 1000000)) "$(awk -v us="${RL[$r cu]}" 'BEGIN { print us / 1e6 }')" \
			"$(mbps "$want" "${RL[$r cu]}")" "$note" "$(mbps "$logs" "${RL[$r cp]}")" "$(mbps "$logs" "${RL[$r cpsync]}")"
	fi
	repl_same T "$want" "catch-up round $label"
	repl_down
}

# repl_lagrun ROUND LABEL MODE: (c), MODE follower: repl_lag publishes to
# a leader with acks=leader and follows the follower's partitions; MODE
# local, the baseline: a leader without peers, repl_lag follows its own
# partitions (the publish and commit path alone, same machine, same
# moment). RL[LABEL MODE.KEY] = repl_lag's numbers, RL[LABEL follower.lagmax]
repl_lagrun() {
	local r=$1 label=$2 mode=$3 out=$W/repl_lag.$2.$3.out samples=$W/repl_lag.$2.samples k v rc=0 m=$3.
	local -a parts
	if [[ $mode == follower ]]; then
		repl_follower
		repl_leader "peers=$RB,acks=leader"
		step "mkdir topic" mkdir "$RA/T"
		repl_ready T
		mapfile -t parts < <(topic_parts "$RB/T")
	else
		repl_leader ""
		step "mkdir topic" mkdir "$RA/T"
		mapfile -t parts < <(topic_parts "$RA/T")
	fi
	settle
	[[ $mode == local ]] || lag_sampler_start "$samples"
	run "$W/repl_lag" -r "$REPL_RATE" -t "$REPL_SECS" -s "$LINE_BYTES" "$RA/T/publish" "${parts[@]}" >"$out" || rc=$?
	lag_sampler_stop
	((rc == 0)) || die "repl_lag ($mode) round $label: exit status $rc$( ((rc != 124)) || echo " (hung)")"
	for k in sent msgs missing dups bad p50_us p99_us max_us publish_rate_per_s behind_max_us; do
		v=$(kv "$out" "repl_lag_$k") || die "repl_lag: no repl_lag_$k in $out"
		RL[$label $m$k]=$v
	done
	[[ $mode == local ]] ||
		RL[$label ${m}lagmax]=$(awk '$1 ~ /^[0-9]+$/ { n++; if ($1 > m) m = $1 } END { print n ? m + 0 : "?" }' "$samples")
	if [[ ${RL[$label ${m}missing]} != 0 || ${RL[$label ${m}dups]} != 0 || ${RL[$label ${m}bad]} != 0 ||
		${RL[$label ${m}msgs]} != "${RL[$label ${m}sent]}" ]]; then
		check_fail "repl_lag ($mode) round $label: sent ${RL[$label ${m}sent]}, received ${RL[$label ${m}msgs]}," \
			"missing ${RL[$label ${m}missing]}, duplicated ${RL[$label ${m}dups]}, unparsable ${RL[$label ${m}bad]}"
	fi
	if ((r > 0)); then
		printf 'round %d/%d repl lag at %s msg/s, %-8s: published %s msg/s (at worst %s us behind), %s msgs read after p50 %s  p99 %s  max %s us%s\n' \
			"$r" "$ROUNDS" "$REPL_RATE" "$mode" "${RL[$r ${m}publish_rate_per_s]}" "${RL[$r ${m}behind_max_us]}" \
			"${RL[$r ${m}msgs]}" "${RL[$r ${m}p50_us]}" "${RL[$r ${m}p99_us]}" "${RL[$r ${m}max_us]}" \
			"$([[ $mode == local ]] || echo "; leader's lag_messages at most ${RL[$r ${m}lagmax]} (every 100 ms)")"
	fi
	repl_down
}

# rl_med KEY: the median of RL[ROUND KEY] over the rounds
rl_med() {
	local r
	for ((r = 1; r <= ROUNDS; r++)); do
		printf '%s\n' "${RL[$r $1]}"
	done | sort -g | awk '{ v[NR] = $1 } END { x = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf (x == int(x)) ? "%d" : "%.1f", x }'
}

section_replication() {
	local r label acks order mode
	[[ $REPL_WRITERS =~ ^[1-9][0-9]?$ && $REPL_CATCHUP_MSGS =~ ^[1-9][0-9]*$ &&
		$REPL_RATE =~ ^[1-9][0-9]*$ && $REPL_SECS =~ ^[1-9][0-9]*$ ]] ||
		die "REPL_WRITERS (1..99), REPL_CATCHUP_MSGS, REPL_RATE and REPL_SECS must be positive integers"
	say ""
	say "== replication: a leader (-o $MQFS_OPTS,peers=B,acks=...) and one local follower B, fresh data dirs each time:" \
		"(a) publish $MSGS msgs with $REPL_WRITERS writers (and 1, for information), acks=leader vs acks=all;" \
		"(b) catch-up of an empty peer, $REPL_CATCHUP_MSGS msgs; (c) lag at $REPL_RATE msgs/s for $REPL_SECS s," \
		"follower vs the leader's own partitions"
	((HAVE_MQFS)) || { warn "no mqfs: section replication skipped"; return 0; }
	RA=$W/replA.mnt RB=$W/replB.mnt RD=$W/repl.d
	build_tool repl_lag
	# (a)'s pieces: the workload cut at line boundaries, in order
	step "split workload" split -n "l/$REPL_WRITERS" -d -a 2 "$WORK" "$W/work.piece."
	mapfile -t REPL_PIECES < <(printf '%s\n' "$W"/work.piece.*)
	((${#REPL_PIECES[@]} == REPL_WRITERS)) || die "split made ${#REPL_PIECES[@]} pieces, expected $REPL_WRITERS"
	# (b)'s workload: like the main one, REPL_CATCHUP_MSGS lines
	REPL_CU_WORK=$WORK
	if ((REPL_CATCHUP_MSGS != MSGS)); then
		REPL_CU_WORK=$W/work.catchup
		step "make catch-up workload" awk -v n="$REPL_CATCHUP_MSGS" 'BEGIN {
			pad = sprintf("%88s", ""); gsub(/ /, "x", pad)
			for (i = 0; i < n; i++) printf "%010d %s\n", i, pad
		}' >"$REPL_CU_WORK"
	fi
	for ((r = 1 - WARMUP; r <= ROUNDS; r++)); do
		label=$r
		((r >= 1)) || label=warmup$((1 - r))
		# alternate which mode goes first, so that neither always gets
		# the page cache and disk state the other left behind
		order="leader all"
		((r % 2)) || order="all leader"
		for acks in $order; do
			repl_publish "$r" "$label" "$acks"
		done
		if ((r > 0)); then
			say "round $r/$ROUNDS repl publish acks=all / acks=leader: $REPL_WRITERS writers $(ratio "${T[repl wall $r]}" "${T[repl wleader $r]}") x," \
				"1 writer $(ratio "${T[repl sall $r]}" "${T[repl sleader $r]}") x"
		fi
		repl_catchup "$r" "$label"
		for mode in $( ((r % 2)) && echo local follower || echo follower local); do
			repl_lagrun "$r" "$label" "$mode"
		done
		((r >= 1)) || say "(warm-up round $((1 - r)) done, not reported)"
	done
	repl_summary
}

repl_summary() {
	local wl wa sl sa rr cu cub line
	wl=$(med repl wleader) wa=$(med repl wall) sl=$(med repl sleader) sa=$(med repl sall)
	say ""
	say "== replication summary (median of $ROUNDS rounds)"
	rr=$(ratio "$wa" "$wl")
	line="publish $MSGS msgs, $REPL_WRITERS writers: acks=all $(rate "$wa") M msg/s = $rr x acks=leader ($(rate "$wl") M msg/s)"
	if ge "$rr" "$REPL_ACKS_TARGET"; then
		line+="  target >= $REPL_ACKS_TARGET x acks=leader: met"
	else
		line+="  target >= $REPL_ACKS_TARGET x acks=leader: MISSED"
		MISSED=1
	fi
	say "$line"
	say "publish $MSGS msgs, 1 writer (for information): acks=all $(rate "$sa") M msg/s = $(ratio "$sa" "$sl") x acks=leader ($(rate "$sl") M msg/s)"
	cub=$((REPL_CATCHUP_MSGS * LINE_BYTES))
	cu=$(mbps "$cub" "$(rl_med cu)")
	line="catch-up of an empty peer, $((cub / 1000000)) MB: $cu MB/s (leader start to lag 0; the leader's mount took $(($(rl_med mount) / 1000)) ms)"
	if ge "$cu" "$REPL_CATCHUP_TARGET"; then
		line+="  target >= $REPL_CATCHUP_TARGET MB/s: met"
	else
		line+="  target >= $REPL_CATCHUP_TARGET MB/s: MISSED"
		MISSED=1
	fi
	say "$line"
	say "(for context, the same bytes copied with cp on the same disk: $(mbps "$cub" "$(rl_med cp)") MB/s; cp + fsync: $(mbps "$cub" "$(rl_med cpsync)") MB/s)"
	say "lag at $REPL_RATE msgs/s for $REPL_SECS s, acks=leader (for information), due time -> read:" \
		"follower p50 $(rl_med follower.p50_us), p99 $(rl_med follower.p99_us), max $(rl_med follower.max_us) us" \
		"(published $(rl_med follower.publish_rate_per_s) msg/s; leader's lag_messages at most $(rl_med follower.lagmax));" \
		"baseline, the leader's own partitions without a peer: p50 $(rl_med local.p50_us), p99 $(rl_med local.p99_us)," \
		"max $(rl_med local.max_us) us (published $(rl_med local.publish_rate_per_s) msg/s)"
}

# ------------------------------------------------------------------- main

main() {
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	[[ $MSGS =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]] ||
		die "MSGS and ROUNDS must be positive integers, WARMUP a number"
	[[ -z $PROFILE_DIR ]] || PROFILE_DIR=$(realpath -m "$PROFILE_DIR")
	setup
	local s
	[[ ${SECTIONS//[ ,]/} == all ]] && SECTIONS="throughput lease latency replication"
	for s in ${SECTIONS//,/ }; do
		declare -F "section_$s" >/dev/null || die "no such section: $s"
		"section_$s"
	done
	say ""
	local n
	for n in mqfs floor; do
		[[ -n ${DPID[$n]:-} ]] || continue
		stop_daemon "$n" || check_fail "$n did not unmount and exit cleanly"
	done
	if ((FAILED)); then
		warn "some checks failed (see above)"
		exit 1
	fi
	if ((MISSED)) && [[ $STRICT == 1 ]]; then
		warn "a target was missed (STRICT=1)"
		exit 1
	fi
	say "bench: done"
}

main "$@"
