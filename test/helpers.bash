# Helpers for the mqfs bats suite: mount, unmount, kill, and assert.
#
# Test bodies use what a user types at a shell (echo, cat, ls, mkdir, stat);
# the helpers here only mount, unmount and assert. Each test mounts a fresh
# instance under $BATS_TEST_TMPDIR (data dir + mountpoint).
#
# Environment:
#   MQFS_BIN      the daemon under test (default: ../mqfs next to test/)
#   FSOP_BIN      the errno probe (default: test/tools/fsop, built from fsop.c)
#   MQ_TIMEOUT    seconds any single command touching the mount may take
#   MQ_DEADLINE   seconds to wait for a mount, an unmount or a daemon exit
#
# Errno is asserted by NAME through fsop (never strerror text), e.g.
#   run fsop unlink "$MNT/t/0"; assert_errno EPERM

bats_require_minimum_version 1.5.0

# A hung daemon must fail a test, not hang the suite (shell builtins such as
# `echo x > file` cannot be wrapped in timeout; this covers them).
: "${BATS_TEST_TIMEOUT:=240}"

MQFS_BIN=${MQFS_BIN:-$BATS_TEST_DIRNAME/../mqfs}
FSOP_BIN=${FSOP_BIN:-$BATS_TEST_DIRNAME/tools/fsop}
MQ_TIMEOUT=${MQ_TIMEOUT:-30}
MQ_DEADLINE=${MQ_DEADLINE:-30}

# Every external command that may touch the mount runs under timeout, so a
# daemon that stops answering fails the test instead of blocking bats.
# (timeout execs the real binary, not these functions.)
cat() { timeout "$MQ_TIMEOUT" cat "$@"; }
ls() { timeout "$MQ_TIMEOUT" ls "$@"; }
stat() { timeout "$MQ_TIMEOUT" stat "$@"; }
wc() { timeout "$MQ_TIMEOUT" wc "$@"; }
head() { timeout "$MQ_TIMEOUT" head "$@"; }
tail() { timeout "$MQ_TIMEOUT" tail "$@"; }
mkdir() { timeout "$MQ_TIMEOUT" mkdir "$@"; }
rmdir() { timeout "$MQ_TIMEOUT" rmdir "$@"; }
touch() { timeout "$MQ_TIMEOUT" touch "$@"; }
truncate() { timeout "$MQ_TIMEOUT" truncate "$@"; }
rm() { timeout "$MQ_TIMEOUT" rm "$@"; }
mv() { timeout "$MQ_TIMEOUT" mv "$@"; }
dd() { timeout "$MQ_TIMEOUT" dd "$@"; }
grep() { timeout "$MQ_TIMEOUT" grep "$@"; }
awk() { timeout "$MQ_TIMEOUT" awk "$@"; }
sort() { timeout "$MQ_TIMEOUT" sort "$@"; }
find() { timeout "$MQ_TIMEOUT" find "$@"; }
fsop() { timeout "$MQ_TIMEOUT" "$FSOP_BIN" "$@"; }

# ---------------------------------------------------------------- mounting

# mq_init: choose fresh paths for this test; called by mq_start.
mq_init() {
	[[ -n ${MNT:-} ]] && return 0
	MQ_DATA=$BATS_TEST_TMPDIR/data
	MNT=$BATS_TEST_TMPDIR/mnt
	MQ_LOG=$BATS_TEST_TMPDIR/mqfs.log
	MQ_PID=
	MQ_BG_PIDS=()
	command mkdir -p "$MQ_DATA" "$MNT"
	MQ_DATA=$(realpath "$MQ_DATA")
	MNT=$(realpath "$MNT")
	[[ -x $MQFS_BIN ]] || {
		echo "mqfs binary not found or not executable: $MQFS_BIN (set MQFS_BIN)" >&2
		return 1
	}
	[[ -x $FSOP_BIN ]] || {
		echo "fsop not built: $FSOP_BIN (make test/tools/fsop)" >&2
		return 1
	}
}

# mq_is_mounted DIR: true if DIR is a mountpoint in /proc/self/mountinfo.
mq_is_mounted() {
	command awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# mq_start [-o OPTS]: start mqfs -f in the background on $MQ_DATA and $MNT
# and poll /proc/self/mountinfo until the mount appears (with a deadline).
mq_start() {
	local deadline status
	mq_init || return 1
	if mq_is_mounted "$MNT"; then
		echo "mq_start: $MNT is already mounted" >&2
		return 1
	fi
	echo "=== mqfs -f $* $MQ_DATA $MNT" >>"$MQ_LOG"
	"$MQFS_BIN" -f "$@" "$MQ_DATA" "$MNT" >>"$MQ_LOG" 2>&1 3>&- 4>&- </dev/null &
	MQ_PID=$!
	deadline=$((SECONDS + MQ_DEADLINE))
	until mq_is_mounted "$MNT"; do
		if ! kill -0 "$MQ_PID" 2>/dev/null; then
			status=0
			wait "$MQ_PID" || status=$?
			MQ_PID=
			echo "mqfs exited with status $status before mounting; its log:" >&2
			command cat "$MQ_LOG" >&2
			return 1
		fi
		if ((SECONDS >= deadline)); then
			echo "mqfs did not mount $MNT within ${MQ_DEADLINE}s" >&2
			return 1
		fi
		sleep 0.02 # poll interval, not a readiness guess
	done
}

# mq_wait_exit [SECONDS]: wait (default MQ_DEADLINE) for the daemon to exit
# on its own; sets MQ_EXIT to its exit status. Fails if it is still running.
mq_wait_exit() {
	local deadline=$((SECONDS + ${1:-$MQ_DEADLINE}))
	while kill -0 "$MQ_PID" 2>/dev/null; do
		# a zombie still answers kill -0; wait reaps it below
		[[ $(command awk '/^State:/ { print $2 }' "/proc/$MQ_PID/status" 2>/dev/null) == Z ]] && break
		if ((SECONDS >= deadline)); then
			echo "mqfs (pid $MQ_PID) still running ${1:-$MQ_DEADLINE}s after unmount" >&2
			return 1
		fi
		sleep 0.02
	done
	MQ_EXIT=0
	wait "$MQ_PID" || MQ_EXIT=$?
	MQ_PID=
}

# mq_check_log: fail if the daemon's log holds a sanitizer report.
mq_check_log() {
	if [[ -f ${MQ_LOG:-} ]] &&
		command grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|ThreadSanitizer' "$MQ_LOG"; then
		echo "sanitizer report in the mqfs log:" >&2
		command cat "$MQ_LOG" >&2
		return 1
	fi
}

# mq_stop: clean unmount (fusermount3 -u), then the daemon must exit 0.
mq_stop() {
	timeout "$MQ_TIMEOUT" fusermount3 -u "$MNT" || {
		echo "fusermount3 -u $MNT failed" >&2
		return 1
	}
	mq_wait_exit || return 1
	if ((MQ_EXIT != 0)); then
		echo "mqfs exited with status $MQ_EXIT after a clean unmount; its log:" >&2
		command cat "$MQ_LOG" >&2
		return 1
	fi
	mq_check_log
}

# mq_restart [-o OPTS]: clean unmount, then mount the same DATA_DIR again.
mq_restart() {
	mq_stop || return 1
	mq_start "$@"
}

# mq_kill9: SIGKILL the daemon, then clear the dead mount with fusermount3 -uz.
mq_kill9() {
	local deadline
	{
		kill -KILL "$MQ_PID"
		wait "$MQ_PID" # status 137 is the point here, and bash's "Killed" note
	} 2>/dev/null || :
	MQ_PID=
	timeout "$MQ_TIMEOUT" fusermount3 -uz "$MNT" 2>/dev/null || : # may already be gone
	deadline=$((SECONDS + MQ_DEADLINE))
	while mq_is_mounted "$MNT"; do
		if ((SECONDS >= deadline)); then
			echo "$MNT still mounted after kill -9 and fusermount3 -uz" >&2
			return 1
		fi
		sleep 0.02
	done
}

# mq_bg CMD...: run CMD in the background (fds 3 and 4 closed, as bats
# requires) and remember its PID so teardown can end it. Sets MQ_BG.
mq_bg() {
	"$@" 3>&- 4>&- &
	MQ_BG=$!
	MQ_BG_PIDS+=("$MQ_BG")
}

# mq_teardown: end what this test started, unmount, and check the log.
mq_teardown() {
	local pid m rc=0
	exec 5>&- 6>&- 7>&- # descriptors tests open on the mount
	cd "$BATS_TEST_TMPDIR" # a test may have cd'ed into the mount
	for pid in "${MQ_BG_PIDS[@]}"; do
		# Only a process that is still our child: a PID already reaped
		# (wait_gone) may belong to someone else by now (pid_max 32768).
		[[ $(ps -o ppid= -p "$pid" 2>/dev/null) -eq $BASHPID ]] || continue
		kill -TERM "$pid" 2>/dev/null # one that just finished is fine
	done
	for pid in "${MQ_BG_PIDS[@]}"; do
		wait "$pid" 2>/dev/null # its status was for the test to check
	done
	if [[ -n ${MNT:-} ]] && mq_is_mounted "$MNT"; then
		timeout "$MQ_TIMEOUT" fusermount3 -uz "$MNT" || rc=1
	fi
	if [[ -n ${MQ_PID:-} ]]; then
		# an unmounted daemon exits by itself (status 0, after its sanitizer
		# checks); one that does not is ended, by its PID only
		if mq_wait_exit 10; then
			if ((MQ_EXIT != 0)); then
				echo "mqfs exited with status $MQ_EXIT after unmount" >&2
				rc=1
			fi
		else
			rc=1
			kill -TERM "$MQ_PID" 2>/dev/null
			if ! mq_wait_exit 10; then
				kill -KILL "$MQ_PID" 2>/dev/null
				wait "$MQ_PID" 2>/dev/null
				MQ_PID=
			fi
		fi
	fi
	for m in "${MQ_EXTRA_MOUNTS[@]}"; do
		if mq_is_mounted "$m"; then
			timeout "$MQ_TIMEOUT" fusermount3 -uz "$m" || rc=1
		fi
	done
	mq_check_log || rc=1
	if [[ -z ${BATS_TEST_COMPLETED:-} && -f ${MQ_LOG:-} ]]; then
		echo "--- last lines of the mqfs log ($MQ_LOG):"
		command tail -n 40 "$MQ_LOG"
	fi
	return "$rc"
}

MQ_EXTRA_MOUNTS=()

setup() {
	mq_start
}

teardown() {
	mq_teardown
}

# ---------------------------------------------------------------- waiting

# wait_for SECONDS CMD...: poll CMD until it succeeds, fail after SECONDS.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		if ((SECONDS >= deadline)); then
			echo "timed out waiting for: $*" >&2
			return 1
		fi
		sleep 0.05
	done
}

# ---------------------------------------------------------------- asserting

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq() {
	if [[ "$1" != "$2" ]]; then
		printf '%s\n--- expected:\n%s\n--- actual:\n%s\n---\n' "${3:-values differ}" "$2" "$1" >&2
		return 1
	fi
}

# assert_output EXPECTED: $output of the last `run` is exactly EXPECTED.
assert_output() {
	assert_eq "$output" "$1" "output of: $BATS_RUN_COMMAND (status $status)"
}

# assert_status N: the last `run` exited with N.
assert_status() {
	assert_eq "$status" "$1" "exit status of: $BATS_RUN_COMMAND (output: $output)"
}

# assert_errno ENAME: the last `run fsop ...` failed with errno ENAME.
assert_errno() {
	assert_eq "${lines[${#lines[@]} - 1]:-} (status $status)" "$1 (status 1)" \
		"errno of: $BATS_RUN_COMMAND (output: $output)"
}

# assert_fails: the last `run` exited non-zero.
assert_fails() {
	if ((status == 0)); then
		echo "expected failure, but succeeded: $BATS_RUN_COMMAND (output: $output)" >&2
		return 1
	fi
}

# ---------------------------------------------------------------- oracles

# key_partition KEY N: XXH3_64bits(KEY, seed 0) % N computed independently of
# mqfs with xxhsum -H3. The hash is unsigned 64-bit, so reduce the two 32-bit
# halves separately: (hi * 2^32 + lo) % N.
key_partition() {
	local h hi lo n=$2
	h=$(printf '%s' "$1" | xxhsum -H3) || return 1
	h=${h##* }
	[[ $h =~ ^[0-9a-f]{16}$ ]] || {
		echo "unexpected xxhsum output: $h" >&2
		return 1
	}
	hi=$((16#${h:0:8}))
	lo=$((16#${h:8:8}))
	echo $(((hi % n * (4294967296 % n) + lo % n) % n))
}

# key_for_partition P N: some key that routes to partition P of N.
key_for_partition() {
	local i
	for ((i = 0; i < 10000; i++)); do
		if [[ $(key_partition "key-$i" "$2") == "$1" ]]; then
			echo "key-$i"
			return 0
		fi
	done
	return 1
}

# entries DIR: the names `ls DIR` shows, sorted, on one line. Names that a
# later issue adds to the layout (dlq, next, batch, ack, nack) are left out,
# so these tests pin them down neither way.
entries() {
	local out
	out=$(ls -1 "$1" 2>&1) || {
		echo "<ls $1 failed: $out>"
		return 1
	}
	printf '%s\n' "$out" | command grep -vxE 'dlq|next|batch|ack|nack' |
		LC_ALL=C command sort | paste -sd' ' -
}

# norm FILE: FILE with runs of blanks squeezed to one space (stats columns
# may be aligned for people).
norm() {
	awk '{ $1 = $1; print }' "$1"
}

# stats_col FILE ROW COLUMN: the value of COLUMN (named in the header line)
# in the row whose first field is ROW. Fails if either is missing.
stats_col() {
	awk -v row="$2" -v name="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
		$1 == row && col { print $col; found = 1 }
		END { exit !(col && found) }' "$1"
}

# rss_kb FIELD: VmRSS or VmHWM of the daemon in kB.
rss_kb() {
	command awk -v f="$1:" '$1 == f { print $2 }' "/proc/$MQ_PID/status"
}

# ---------------------------------------------------------------- consumers

# wait_gone PID...: wait (with a deadline) for background writers to end;
# the status of the last one is returned.
wait_gone() {
	local pid
	for pid in "$@"; do
		wait_for 30 eval "! kill -0 $pid 2>/dev/null || [[ \$(command awk '/^State:/ { print \$2 }' /proc/$pid/status 2>/dev/null) == Z ]]"
		wait "$pid"
	done
}

# try_take: one O_NONBLOCK read of $G/next (G: a group directory); the
# record (without its newline) is in $msg. Fails (EAGAIN) when nothing is
# available.
try_take() {
	msg=$(fsop read-nb "$G/next")
}

# parked PID: the reader started by `mq_bg timeout N ...` (PID is timeout's)
# is blocked in a FUSE request.
parked() {
	local c w
	c=$(<"/proc/$1/task/$1/children") 2>/dev/null || return 1
	[[ -n $c ]] || return 1
	for c in $c; do
		w=$(<"/proc/$c/wchan") 2>/dev/null || return 1
		[[ $w == *request_wait_answer* || $w == *fuse* ]] || return 1
	done
}

# drain N: take up to N messages of $G/next one by one, acking each; the
# records (without their newlines) are in the array got, in the order
# handed out. Stops early when a `cat next` waits 5 s for nothing.
drain() {
	got=()
	while ((${#got[@]} < $1)); do
		msg=$(timeout 5 cat "$G/next") || break
		got+=("$msg")
		echo "${msg%%$'\t'*}" >"$G/ack"
	done
}

# refuse OPTS WORD: mqfs -o OPTS must exit non-zero without mounting, with a
# message that names WORD.
refuse() {
	local d=$BATS_TEST_TMPDIR/refused-data m=$BATS_TEST_TMPDIR/refused-mnt
	command mkdir -p "$d" "$m"
	MQ_EXTRA_MOUNTS+=("$m")
	run timeout 10 "$MQFS_BIN" -f -o "$1" "$d" "$m"
	if ((status == 0 || status == 124)); then
		echo "mqfs -o $1 did not refuse (status $status): $output" >&2
		return 1
	fi
	if mq_is_mounted "$m"; then
		echo "mqfs -o $1 left a mount behind" >&2
		return 1
	fi
	if [[ $output != *"$2"* ]]; then
		echo "mqfs -o $1 did not say why (no '$2' in: $output)" >&2
		return 1
	fi
}
