#!/usr/bin/env bats
# Replication: a leader's replicator copies topics, config, messages, groups,
# committed offsets and dead letters to the mqfs mounts named in peers=;
# followers refuse changes with EROFS; acks=all waits for the in-sync peers;
# .mq/role promotes and demotes, epochs fence a stale leader (SPEC section 6).
#
# Each test runs up to three mqfs nodes A, B and C, each with its own data
# dir ($BATS_TEST_TMPDIR/X.data) and mountpoint ($A, $B, $C). Followers are
# started first, then the leader with peers= their mountpoints.

load helpers
load sshfs

cmp() { timeout "$MQ_TIMEOUT" cmp "$@"; }
cksum() { timeout "$MQ_TIMEOUT" cksum "$@"; }

REPLICAS_HEADER="peer in_sync lag_messages lag_bytes state error"

# ---------------------------------------------------------------- nodes

# node_init NAME: choose NAME's data dir, log and mountpoint; the variable
# NAME (A, B, C) holds the mountpoint.
node_init() {
	local name=$1 data=$BATS_TEST_TMPDIR/$1.data mnt=$BATS_TEST_TMPDIR/$1
	command mkdir -p "$data" "$mnt" || return 1
	NODE_DATA[$name]=$(realpath "$data")
	NODE_LOG[$name]=$BATS_TEST_TMPDIR/$name.log
	NODE_PID[$name]=
	printf -v "$name" '%s' "$(realpath "$mnt")"
	NODES+=("$name")
}

# node_start NAME [OPTS]: mqfs -f [-o OPTS] on NAME's data dir and
# mountpoint, in the background; polls mountinfo until it is mounted.
node_start() {
	local name=$1 mnt=${!1} args=() pid deadline status
	[[ -n ${2:-} ]] && args=(-o "$2")
	if mq_is_mounted "$mnt"; then
		echo "node_start: $mnt ($name) is already mounted" >&2
		return 1
	fi
	echo "=== mqfs -f ${args[*]} ${NODE_DATA[$name]} $mnt" >>"${NODE_LOG[$name]}"
	"$MQFS_BIN" -f "${args[@]}" "${NODE_DATA[$name]}" "$mnt" \
		>>"${NODE_LOG[$name]}" 2>&1 3>&- 4>&- </dev/null &
	pid=$!
	NODE_PID[$name]=$pid
	deadline=$((SECONDS + MQ_DEADLINE))
	until mq_is_mounted "$mnt"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			status=0
			wait "$pid" || status=$?
			NODE_PID[$name]=
			echo "mqfs of node $name exited with status $status before mounting; its log:" >&2
			command cat "${NODE_LOG[$name]}" >&2
			return 1
		fi
		if ((SECONDS >= deadline)); then
			echo "mqfs of node $name did not mount $mnt within ${MQ_DEADLINE}s" >&2
			return 1
		fi
		sleep 0.02 # poll interval, not a readiness guess
	done
}

# node_exited NAME: NAME's daemon is gone (or a zombie); not reaped here.
node_exited() {
	local pid=${NODE_PID[$1]}
	[[ -z $pid ]] && return 0
	! kill -0 "$pid" 2>/dev/null ||
		[[ $(command awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == Z ]]
}

# node_reap NAME: wait for an exited daemon; its status is in NODE_EXIT.
node_reap() {
	NODE_EXIT=0
	wait "${NODE_PID[$1]}" || NODE_EXIT=$?
	NODE_PID[$1]=
}

# node_stop NAME: clean unmount (fusermount3 -u), then the daemon must exit
# 0 with no sanitizer report. A leader's replicator may have a file of this
# mount open for a moment (EBUSY), so the unmount is retried for 5 s.
node_stop() {
	local name=$1 mnt=${!1} deadline=$((SECONDS + 5))
	until timeout "$MQ_TIMEOUT" fusermount3 -u "$mnt" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			timeout "$MQ_TIMEOUT" fusermount3 -u "$mnt" # says why
			echo "fusermount3 -u $mnt (node $name) failed for 5 s" >&2
			return 1
		fi
		sleep 0.1
	done
	if ! wait_for "$MQ_DEADLINE" node_exited "$name"; then
		echo "mqfs of node $name still running after its unmount" >&2
		return 1
	fi
	node_reap "$name"
	if ((NODE_EXIT != 0)); then
		echo "mqfs of node $name exited with status $NODE_EXIT after a clean unmount; its log:" >&2
		command cat "${NODE_LOG[$name]}" >&2
		return 1
	fi
	MQ_LOG=${NODE_LOG[$name]} mq_check_log
}

# node_clear NAME: remove a (dead) mount of NAME with fusermount3 -uz.
node_clear() {
	local mnt=${!1} deadline=$((SECONDS + MQ_DEADLINE))
	timeout "$MQ_TIMEOUT" fusermount3 -uz "$mnt" 2>/dev/null || :
	while mq_is_mounted "$mnt"; do
		if ((SECONDS >= deadline)); then
			echo "$mnt ($1) still mounted after fusermount3 -uz" >&2
			return 1
		fi
		sleep 0.02
	done
}

# node_kill9 NAME [keep]: SIGKILL NAME's daemon; then clear its dead mount,
# unless "keep" (the mountpoint then answers ENOTCONN until node_clear).
node_kill9() {
	{
		kill -KILL "${NODE_PID[$1]}"
		wait "${NODE_PID[$1]}" # status 137 is the point here
	} 2>/dev/null || :
	NODE_PID[$1]=
	[[ ${2:-} == keep ]] || node_clear "$1"
}

# node_restart NAME [OPTS]: clean unmount, then mount the same data dir.
node_restart() {
	node_stop "$1" || return 1
	node_start "$@"
}

setup() {
	declare -gA NODE_DATA=() NODE_LOG=() NODE_PID=()
	NODES=()
	MQ_BG_PIDS=()
	SSHFS_MOUNTS=()
	SSHD_STARTED=
	[[ -x $MQFS_BIN ]] || {
		echo "mqfs binary not found or not executable: $MQFS_BIN (set MQFS_BIN)" >&2
		return 1
	}
	[[ -x $FSOP_BIN ]] || {
		echo "fsop not built: $FSOP_BIN (make test/tools/fsop)" >&2
		return 1
	}
	node_init A && node_init B && node_init C
}

# teardown: end the writers this test started, unmount sshfs and every node
# (fusermount3 -uz), wait for each daemon this test started (by its PID
# only), stop our sshd, and check the logs.
teardown() {
	local pid name m rc=0 i deadline
	exec 5>&- 6>&- 7>&-
	# a daemon a test stopped (SIGSTOP) must run to be unmounted
	[[ -n ${STOPPED_PID:-} ]] && kill -CONT "$STOPPED_PID" 2>/dev/null
	cd "$BATS_TEST_TMPDIR"
	for pid in "${MQ_BG_PIDS[@]}"; do
		[[ $(ps -o ppid= -p "$pid" 2>/dev/null) -eq $BASHPID ]] || continue
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${MQ_BG_PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	for m in "${SSHFS_MOUNTS[@]}"; do
		sshfs_umount "$m" || rc=1
	done
	# the leader (started last) first: a peer's mount stays busy while a
	# replicator has files open in it
	for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
		m=${!NODES[i]}
		if mq_is_mounted "$m"; then
			timeout "$MQ_TIMEOUT" fusermount3 -uz "$m" || rc=1
		fi
	done
	# An unmounted daemon exits by itself once no process (another node's
	# replicator, sshfs) has a file of its mount open; give them all 15 s.
	deadline=$((SECONDS + 15))
	for name in "${NODES[@]}"; do
		while [[ -n ${NODE_PID[$name]} ]] && ! node_exited "$name" && ((SECONDS < deadline)); do
			sleep 0.05
		done
	done
	for name in "${NODES[@]}"; do
		[[ -n ${NODE_PID[$name]} ]] || continue
		if ! node_exited "$name"; then
			echo "mqfs of node $name still running 15 s after its unmount; sending SIGTERM" >&2
			kill -TERM "${NODE_PID[$name]}" 2>/dev/null
			if ! wait_for 10 node_exited "$name"; then
				kill -KILL "${NODE_PID[$name]}" 2>/dev/null
				rc=1
			fi
		fi
		node_reap "$name"
		if ((NODE_EXIT != 0)); then
			echo "mqfs of node $name exited with status $NODE_EXIT after unmount" >&2
			rc=1
		fi
	done
	if [[ -n $SSHD_STARTED ]]; then
		sshd_stop "$SSHD_STARTED" || rc=1
	fi
	for name in "${NODES[@]}"; do
		MQ_LOG=${NODE_LOG[$name]} mq_check_log || rc=1
	done
	if [[ -z ${BATS_TEST_COMPLETED:-} ]]; then
		for name in "${NODES[@]}"; do
			[[ -f ${NODE_LOG[$name]} ]] || continue
			echo "--- last lines of the log of node $name (${NODE_LOG[$name]}):"
			command tail -n 30 "${NODE_LOG[$name]}"
		done
	fi
	return "$rc"
}

# ---------------------------------------------------------------- observing

# replica NODE PEER COLUMN: COLUMN (named in the header) of PEER's line in
# NODE's .mq/replicas; NODE and PEER are variable names (A, B, S...). The
# error column runs to the end of the line.
replica() {
	awk -v peer="${!2}" -v name="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
		$1 == peer && col {
			if (name == "error") {
				s = $0
				for (i = 1; i < col; i++) sub(/^[ \t]*[^ \t]+/, "", s)
				sub(/^[ \t]+/, "", s)
				print s
			} else {
				print $col
			}
			found = 1
		}
		END { exit !(col && found) }' "${!1}/.mq/replicas" 2>/dev/null
}

# wait_peer SECONDS PREDICATE NODE PEER: wait until PREDICATE (in_sync,
# caught_up, unreachable) holds; on failure show NODE's .mq/replicas.
wait_peer() {
	if ! wait_for "$1" "$2" "$3" "$4"; then
		echo "$3 does not report $4 as $2 after $1 s; ${!3}/.mq/replicas:" >&2
		command cat "${!3}/.mq/replicas" >&2
		return 1
	fi
}

# in_sync NODE PEER: NODE reports PEER in sync.
in_sync() {
	[[ $(replica "$1" "$2" in_sync) == yes ]]
}

# caught_up NODE PEER: in sync, with no lag at all.
caught_up() {
	in_sync "$1" "$2" &&
		[[ $(replica "$1" "$2" lag_messages) == 0 ]] &&
		[[ $(replica "$1" "$2" lag_bytes) == 0 ]]
}

# unreachable NODE PEER: NODE reports PEER out of sync and unreachable.
unreachable() {
	[[ $(replica "$1" "$2" in_sync) == no ]] &&
		[[ $(replica "$1" "$2" state) == unreachable ]]
}

# partitions DIR: the partition numbers of topic DIR, in numeric order.
partitions() {
	local names
	names=$(ls -1 "$1") || return 1
	printf '%s\n' "$names" | command grep -xE '[0-9]+' | LC_ALL=C command sort -n
}

# snapshot NODE: what replication copies, as text: each topic's layout and
# config, the size and checksum of each partition, each group's committed
# offsets, each dead letter's name and content. Fails if anything cannot be
# read.
snapshot() {
	local m=${!1} t p g f topics groups letters sum size v
	topics=$(ls -1 "$m") || return 1
	for t in $topics; do
		echo "== topic $t: $(entries "$m/$t")" || return 1
		cat "$m/$t/config" || return 1
		for p in $(partitions "$m/$t"); do
			read -r sum size _ < <(cksum "$m/$t/$p") && [[ -n $size ]] || return 1
			echo "partition $p: $size bytes, cksum $sum"
		done
		groups=$(ls -1 "$m/$t/groups") || return 1
		echo "groups:" $groups
		echo "dlq: $(ls -1 "$m/$t/dlq" | paste -sd' ' -)"
		for g in $groups; do
			for p in $(partitions "$m/$t/groups/$g/offsets"); do
				v=$(cat "$m/$t/groups/$g/offsets/$p") || return 1
				echo "group $g offset $p: $v"
			done
			letters=$(ls -1 "$m/$t/dlq/$g") || return 1
			echo "dlq $g:" $letters
			for f in $letters; do
				[[ $f == redrive ]] && continue
				v=$(cat "$m/$t/dlq/$g/$f") || return 1
				echo "letter $g/$f: $v"
			done
		done
	done
}

# converged X Y: nodes X and Y hold the same (non-empty) replicated state.
converged() {
	local x y
	x=$(snapshot "$1") && y=$(snapshot "$2") && [[ -n $x && $x == "$y" ]]
}

# assert_converged X Y [SECONDS]: wait (default 30 s) until X and Y hold the
# same state; on failure show how they differ.
assert_converged() {
	if ! wait_for "${3:-30}" converged "$1" "$2"; then
		echo "nodes $1 and $2 did not converge; diff of their snapshots ($1 < > $2):" >&2
		diff <(snapshot "$1" 2>&1) <(snapshot "$2" 2>&1) | command head -n 40 >&2
		return 1
	fi
}

# assert_same_partitions X Y T: every partition of topic T is byte-identical
# through the mounts of X and Y (cmp).
assert_same_partitions() {
	local p x=${!1} y=${!2}
	assert_eq "$(partitions "$y/$3" | paste -sd' ' -)" "$(partitions "$x/$3" | paste -sd' ' -)" \
		"partitions of $3 on $2 and on $1" || return 1
	for p in $(partitions "$x/$3"); do
		cmp "$x/$3/$p" "$y/$3/$p" || {
			echo "partition $3/$p differs between $1 and $2" >&2
			return 1
		}
	done
}

# all_lines NODE T: every message of topic T on NODE, sorted.
all_lines() {
	local p m=${!1}
	for p in $(partitions "$m/$2"); do
		cat "$m/$2/$p" || return 1
	done | LC_ALL=C command sort
}

# ---------------------------------------------------------------- tests

@test "role: .mq should be hidden from ls and hold role, epoch and replicas" {
	node_start A
	mkdir "$A/t"
	assert_eq "$(ls "$A")" t "plain ls of the mount"
	run ls -a "$A/.mq"
	assert_status 0
	for f in role epoch replicas; do
		[[ $'\n'$output$'\n' == *$'\n'$f$'\n'* ]] || assert_eq "$output" "a listing with $f" "ls -a .mq"
	done
	assert_eq "$(cat "$A/.mq/role")" leader "role of a node mounted without options"
	run cat "$A/.mq/epoch"
	assert_status 0
	[[ $output =~ ^[0-9]+$ ]] || assert_eq "$output" "a number" ".mq/epoch"
	# no peers: only the header
	assert_eq "$(awk '{ $1 = $1; print }' "$A/.mq/replicas")" "$REPLICAS_HEADER" ".mq/replicas without peers"
}

@test "role: echo leader should promote a follower and raise its epoch; echo follower should demote it" {
	node_start B role=follower
	assert_eq "$(cat "$B/.mq/role")" follower
	e0=$(cat "$B/.mq/epoch")
	[[ $e0 =~ ^[0-9]+$ ]] || assert_eq "$e0" "a number" "epoch of the follower"
	run fsop mkdir "$B/t"
	assert_errno EROFS
	echo leader >"$B/.mq/role"
	assert_eq "$(cat "$B/.mq/role")" leader "role after echo leader"
	e1=$(cat "$B/.mq/epoch")
	((e1 > e0)) || assert_eq "$e1" "more than $e0" "epoch after the promotion"
	# a leader takes changes
	mkdir "$B/t"
	echo x >>"$B/t/0"
	assert_eq "$(cat "$B/t/0")" x
	echo follower >"$B/.mq/role"
	assert_eq "$(cat "$B/.mq/role")" follower "role after echo follower"
	run fsop write "$B/t/0" <<<"y"
	assert_errno EROFS
	assert_eq "$(cat "$B/t/0")" x "partition after a refused append"
	echo leader >"$B/.mq/role"
	e2=$(cat "$B/.mq/epoch")
	((e2 > e1)) || assert_eq "$e2" "more than $e1" "epoch after the second promotion"
}

@test "role: a value other than leader or follower should fail with EINVAL and change nothing" {
	node_start A
	e0=$(cat "$A/.mq/epoch")
	for v in boss Leader "leader follower" followers 1; do
		run fsop write "$A/.mq/role" <<<"$v"
		assert_errno EINVAL
		assert_eq "$(cat "$A/.mq/role")" leader "role after writing '$v'"
		assert_eq "$(cat "$A/.mq/epoch")" "$e0" "epoch after writing '$v'"
	done
	mkdir "$A/t" # still a leader
}

@test "replication: topics, config, messages, groups, offsets and dead letters should reach the follower, deletions too" {
	node_start B role=follower
	node_start A "peers=$B"
	mkdir "$A/t" "$A/u" "$A/gone"
	echo partitions=6 >>"$A/u/config"
	echo max_deliveries=1 >>"$A/t/config"
	for p in 0 1 2 3; do
		seq -f "t$p-%g" 1 100 | cat >>"$A/t/$p"
	done
	k=$(key_for_partition 5 6)
	printf '%s\tkeyed\n' "$k" >>"$A/u/publish"
	echo doomed >>"$A/gone/0"
	mkdir "$A/t/groups/g" "$A/t/groups/h" "$A/t/groups/tmp" "$A/u/groups/g"
	echo 40 >"$A/t/groups/h/offsets/0"
	echo 7 >"$A/t/groups/h/offsets/3"
	echo 1 >"$A/u/groups/g/offsets/5"
	# two dead letters of g (max_deliveries=1: one nack is enough)
	fsop readonce "$A/t/groups/g/batch" 1048576 >/dev/null
	printf '0:0 bad\n2:5 worse\n' >"$A/t/groups/g/nack"
	rmdir "$A/t/groups/tmp"
	rmdir "$A/gone"

	assert_converged A B
	assert_eq "$(entries "$B")" "t u" "topics on the follower"
	assert_eq "$(entries "$B/t/groups")" "g h" "groups of t on the follower"
	assert_eq "$(entries "$B/u")" "0 1 2 3 4 5 config groups publish stats"
	assert_same_partitions A B t
	assert_same_partitions A B u
	assert_eq "$(cat "$B/u/5")" "$k"$'\tkeyed'
	assert_eq "$(grep -E '^(partitions|max_deliveries)=' "$B/u/config")" $'partitions=6\nmax_deliveries=5'
	assert_eq "$(grep '^max_deliveries=' "$B/t/config")" max_deliveries=1
	assert_eq "$(cat "$B/t/groups/h/offsets/0" "$B/t/groups/h/offsets/3")" $'40\n7' "offsets of h on the follower"
	assert_eq "$(cat "$B/u/groups/g/offsets/5")" 1
	assert_eq "$(ls -1 "$B/t/dlq/g" | paste -sd' ' -)" "0:0 2:5 redrive" "dead letters on the follower"
	assert_eq "$(cat "$B/t/dlq/g/0:0")" t0-1
	assert_eq "$(cat "$B/t/dlq/g/2:5")" t2-6

	# deletions and later changes follow
	rmdir "$A/u"
	rmdir "$A/t/groups/h"
	echo late >>"$A/t/3"
	echo retry_backoff_ms=5 >>"$A/t/config"
	assert_converged A B
	assert_eq "$(entries "$B")" t "topics on the follower after rmdir"
	assert_eq "$(entries "$B/t/groups")" g "groups on the follower after rmdir"
	assert_eq "$(tail -n 1 "$B/t/3")" late
	assert_eq "$(grep '^retry_backoff_ms=' "$B/t/config")" retry_backoff_ms=5
}

@test "replication: a follower mounted with other defaults should take the leader's settings, partition count included" {
	node_start B role=follower,partitions=8,max_deliveries=9
	node_start A "peers=$B"
	mkdir "$A/t"
	echo partitions=6 >>"$A/t/config"
	echo "six" >>"$A/t/5"
	assert_converged A B
	assert_eq "$(partitions "$B/t" | command wc -l)" 6 "partitions of t on B"
	assert_eq "$(cat "$B/t/config")" "$(cat "$A/t/config")" "config of t on B"
}

# cpu_ticks PID: user + system time of a process, in clock ticks.
cpu_ticks() {
	local s
	read -r s <"/proc/$1/stat"
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}

@test "follower: an idle follower should not keep a CPU busy" {
	node_start B role=follower
	node_start A "peers=$B"
	mkdir "$A/t"
	echo one >>"$A/t/0"
	assert_converged A B
	sleep 1.5 # past the first retention tick of both
	b0=$(cpu_ticks "${NODE_PID[B]}") a0=$(cpu_ticks "${NODE_PID[A]}")
	sleep 2
	b1=$(cpu_ticks "${NODE_PID[B]}") a1=$(cpu_ticks "${NODE_PID[A]}")
	# a spinning thread burns ~$(getconf CLK_TCK) ticks a second
	(((b1 - b0) < 40)) || assert_eq "$((b1 - b0)) ticks" "< 40 ticks in 2 s" "CPU of the idle follower"
	(((a1 - a0) < 40)) || assert_eq "$((a1 - a0)) ticks" "< 40 ticks in 2 s" "CPU of the idle leader"
}

@test "replication: a leader whose partition lost a middle segment should say so, not spin" {
	node_start A segment_bytes=1024
	mkdir "$A/t"
	for i in $(seq 1 1000); do echo "line-$i"; done >>"$A/t/0"
	node_stop A
	# damage a middle segment: recovery keeps the partition, with a hole
	seg=$(command ls "${NODE_DATA[A]}/topics/t/parts/0/"*.log | command sed -n 3p)
	: >"$seg"
	node_start B role=follower
	node_start A "segment_bytes=1024,peers=$B"
	refused() { [[ $(replica A B state) == refused ]]; }
	wait_for 20 refused
	[[ $(replica A B error) == *"No data available"* ]] ||
		assert_eq "$(replica A B error)" "an error about missing data" "error of B in A's replicas"
	command grep -q "cannot replicate past it" "${NODE_LOG[A]}" ||
		assert_eq "$(command cat "${NODE_LOG[A]}")" "a log line" "A's log"
	a0=$(cpu_ticks "${NODE_PID[A]}")
	sleep 2
	a1=$(cpu_ticks "${NODE_PID[A]}")
	(((a1 - a0) < 40)) || assert_eq "$((a1 - a0)) ticks" "< 40 ticks in 2 s" "CPU of the leader"
}

@test "follower: every change should fail with EROFS while reads work" {
	node_start B "role=follower,peers=$A"
	node_start A "peers=$B"
	mkdir "$A/t"
	echo max_deliveries=1 >>"$A/t/config"
	printf 'a\nb\n' >>"$A/t/0"
	mkdir "$A/t/groups/g"
	fsop readonce "$A/t/groups/g/batch" 1048576 >/dev/null
	echo 0:0 >"$A/t/groups/g/nack"
	assert_converged A B
	before=$(snapshot B)

	run fsop write "$B/t/publish" <<<"x"
	assert_errno EROFS
	run fsop write "$B/t/0" <<<"x"
	assert_errno EROFS
	run timeout "$MQ_TIMEOUT" bash -c 'echo x >>"$1"' _ "$B/t/0"
	assert_fails
	run fsop mkdir "$B/new"
	assert_errno EROFS
	run fsop rmdir "$B/t"
	assert_errno EROFS
	run fsop mkdir "$B/t/groups/g2"
	assert_errno EROFS
	run fsop rmdir "$B/t/groups/g"
	assert_errno EROFS
	run fsop write "$B/t/groups/g/offsets/0" <<<"2"
	assert_errno EROFS
	run fsop read-nb "$B/t/groups/g/next"
	assert_errno EROFS
	run fsop readonce-nb "$B/t/groups/g/batch" 65536
	assert_errno EROFS
	run fsop write "$B/t/groups/g/ack" <<<"0:1"
	assert_errno EROFS
	run fsop write "$B/t/groups/g/nack" <<<"0:1"
	assert_errno EROFS
	run fsop unlink "$B/t/dlq/g/0:0"
	assert_errno EROFS
	run fsop write "$B/t/dlq/g/redrive" <<<"all"
	assert_errno EROFS
	run fsop write "$B/t/config" <<<"max_deliveries=3"
	assert_errno EROFS

	assert_eq "$(snapshot B)" "$before" "the follower after refused changes"
	# reads work
	assert_eq "$(cat "$B/t/0")" $'a\nb'
	assert_eq "$(entries "$B")" t
	assert_eq "$(entries "$B/t/groups")" g
	assert_eq "$(stats_col "$B/t/stats" 0 next)" 2
	assert_eq "$(cat "$B/t/groups/g/offsets/0")" 1
	assert_eq "$(cat "$B/t/groups/g/0")" b
	assert_eq "$(cat "$B/t/dlq/g/0:0")" a
	assert_eq "$(grep '^max_deliveries=' "$B/t/config")" max_deliveries=1
	assert_eq "$(cat "$B/.mq/role")" follower
}

@test "acks=all: a write that returned should already be on every in-sync peer" {
	node_start B role=follower
	node_start C role=follower
	node_start A "peers=$B:$C,acks=all,min_insync=3"
	wait_peer 20 in_sync A B
	wait_peer 20 in_sync A C
	mkdir "$A/t"
	want=
	for i in $(seq 1 40); do
		echo "m-$i" >>"$A/t/1"
		want+=${want:+$'\n'}m-$i
		# no waiting: the write returned, so both peers hold it
		assert_eq "$(cat "$B/t/1")" "$want" "partition 1 of B right after write $i returned"
		assert_eq "$(cat "$C/t/1")" "$want" "partition 1 of C right after write $i returned"
	done
	k=$(key_for_partition 2 4)
	printf '%s\tpublished\n' "$k" >>"$A/t/publish"
	assert_eq "$(cat "$B/t/2")" "$k"$'\tpublished' "partition 2 of B right after a publish returned"
	assert_converged A B
	assert_converged A C
}

@test "acks=all: with min_insync=2 and the peer unmounted, writes should fail with EIO until it rejoins" {
	node_start B role=follower
	node_start A "peers=$B,acks=all,min_insync=2,isr_lag_ms=1000"
	wait_peer 20 in_sync A B
	mkdir "$A/t"
	echo before >>"$A/t/0"
	assert_eq "$(cat "$B/t/0")" before "the peer right after an acks=all write"

	node_stop B
	# A write racing the failure cannot be acknowledged: EIO, never
	# success. The leader may have appended it before it knew (at least
	# once, docs/replication.md), so it may or may not be in the log.
	run fsop write "$A/t/0" <<<"racing"
	assert_errno EIO
	wait_peer 10 unreachable A B
	snap=$(all_lines A t)
	[[ $snap == before || $snap == $'before\nracing' ]] ||
		assert_eq "$snap" "before, and maybe racing" "topic t after the racing write"
	# Once the leader knows: refused, and not appended.
	run fsop write "$A/t/0" <<<"down-appended"
	assert_errno EIO
	run fsop write "$A/t/publish" <<<"down-published"
	assert_errno EIO
	assert_eq "$(all_lines A t)" "$snap" "topic t after refused writes"
	assert_eq "$(ls -A "$B")" "" "the bare mountpoint of the stopped peer"

	node_start B role=follower
	wait_peer 20 in_sync A B
	echo after >>"$A/t/0"
	assert_eq "$(cat "$B/t/0")" "$(cat "$A/t/0")" "the peer right after it rejoined and a write returned"
	assert_eq "$(tail -n 1 "$A/t/0")" after
	assert_converged A B
}

@test "acks=all: with min_insync=2 and the peer's daemon killed, writes should fail with EIO, and not be appended once it is known" {
	node_start B role=follower
	node_start A "peers=$B,acks=all,min_insync=2,isr_lag_ms=1000"
	wait_peer 20 in_sync A B
	mkdir "$A/t"
	echo one >>"$A/t/3"

	node_kill9 B keep # its mountpoint now answers ENOTCONN
	run fsop write "$A/t/3" <<<"racing"
	assert_errno EIO	# never a success; maybe appended (see above)
	wait_peer 10 unreachable A B
	snap=$(all_lines A t)
	[[ $snap == one || $snap == $'one\nracing' ]] ||
		assert_eq "$snap" "one, and maybe racing" "topic t after the racing write"
	run fsop write "$A/t/3" <<<"dead-appended"
	assert_errno EIO
	run fsop write "$A/t/publish" <<<"dead-published"
	assert_errno EIO
	assert_eq "$(all_lines A t)" "$snap" "topic t after refused writes"
	error=$(replica A B error)
	[[ -n $error && $error != - ]] || assert_eq "$error" "an error text" "error column of the dead peer"

	node_clear B
	node_start B role=follower # same data dir and mountpoint
	wait_peer 20 in_sync A B
	echo three >>"$A/t/3"
	assert_eq "$(cat "$B/t/3")" "$(cat "$A/t/3")" "the peer right after it rejoined and a write returned"
	assert_eq "$(tail -n 1 "$B/t/3")" three
	assert_converged A B
}

@test "acks=all: a peer that stops answering should hold writes until it is isr_lag_ms behind, then leave the in-sync set and rejoin later" {
	node_start B role=follower
	node_start A "peers=$B,acks=all,isr_lag_ms=1000"
	wait_peer 20 in_sync A B
	mkdir "$A/t"
	echo one >>"$A/t/0"
	STOPPED_PID=${NODE_PID[B]}
	kill -STOP "$STOPPED_PID" # alive, but answers nothing: a hung peer
	t0=${EPOCHREALTIME/[.,]/}
	echo two >>"$A/t/0" # held until B leaves the in-sync set
	t1=${EPOCHREALTIME/[.,]/}
	(((t1 - t0) >= 800000)) ||
		assert_eq "$(((t1 - t0) / 1000)) ms" ">= 800 ms" "how long the write waited for the stopped peer"
	assert_eq "$(replica A B in_sync)" no "B in A's replicas while stopped"
	command grep -q "left the in-sync set: not caught up for" "${NODE_LOG[A]}" ||
		assert_eq "$(command cat "${NODE_LOG[A]}")" "a 'left the in-sync set' line" "A's log"
	echo three >>"$A/t/0" # B is out: no wait
	kill -CONT "$STOPPED_PID"
	STOPPED_PID=
	wait_peer 20 in_sync A B
	joins=$(command grep -c "joined the in-sync set" "${NODE_LOG[A]}")
	((joins >= 2)) || assert_eq "$joins" ">= 2" "joins in A's log"
	assert_eq "$(cat "$B/t/0")" $'one\ntwo\nthree' "B after it rejoined"
	assert_converged A B
}

@test "acks=all: with min_insync=1 a peer that is down should leave the in-sync set and writes should go on" {
	node_start B role=follower
	node_start A "peers=$B,acks=all,isr_lag_ms=1000"
	wait_peer 20 in_sync A B
	mkdir "$A/t"
	echo one >>"$A/t/0"
	node_kill9 B
	run fsop write "$A/t/0" <<<"two"
	assert_status 0
	wait_peer 10 unreachable A B
	echo three >>"$A/t/0"
	assert_eq "$(cat "$A/t/0")" $'one\ntwo\nthree'
	node_start B role=follower
	wait_peer 20 in_sync A B
	assert_converged A B
	assert_eq "$(cat "$B/t/0")" $'one\ntwo\nthree'
}

@test "replication: a peer unmounted while the leader takes writes should be reported unreachable, then catch up when remounted" {
	node_start B role=follower
	node_start A "peers=$B,isr_lag_ms=1000"
	mkdir "$A/t"
	echo first >>"$A/t/0"
	assert_converged A B
	wait_peer 20 caught_up A B

	node_stop B
	for i in $(seq 1 200); do
		echo "down-$i" >>"$A/t/publish"
	done
	wait_peer 15 unreachable A B
	error=$(replica A B error)
	[[ -n $error && $error != - ]] || assert_eq "$error" "an error text" "error column of the unmounted peer"
	# the replicator never writes into a mountpoint that is not a mqfs mount
	assert_eq "$(ls -A "$B")" "" "the bare mountpoint of the unmounted peer"

	# remount while the leader goes on taking writes
	mq_bg bash -c 'for ((i = 1; i <= 500; i++)); do echo "during-$i" >>"$1" || exit 1; done' _ "$A/t/publish"
	writer=$MQ_BG
	node_start B role=follower
	wait_gone "$writer" || {
		echo "a write to the leader failed while the peer was remounted" >&2
		false
	}
	echo last >>"$A/t/0"
	assert_converged A B
	wait_peer 20 caught_up A B
	assert_same_partitions A B t
	assert_eq "$(all_lines B t | command wc -l)" 702 "messages on the peer after catching up"
}

@test "replication: an empty follower should catch up with a leader that already holds 20000 messages, groups and dead letters" {
	node_start A
	mkdir "$A/t" "$A/d"
	for p in 0 1 2 3; do
		seq -f "p$p-%06g" 1 5000 | cat >>"$A/t/$p"
	done
	mkdir "$A/t/groups/g1" "$A/t/groups/g2" "$A/t/groups/g3"
	echo 1000 >"$A/t/groups/g1/offsets/0"
	echo 4999 >"$A/t/groups/g2/offsets/3"
	echo 5000 >"$A/t/groups/g3/offsets/1"
	echo max_deliveries=1 >>"$A/d/config"
	printf 'x\ny\nz\n' >>"$A/d/2"
	mkdir "$A/d/groups/w"
	fsop readonce "$A/d/groups/w/batch" 1048576 >/dev/null
	printf '2:0 bad\n2:2 worse\n' >"$A/d/groups/w/nack"
	echo 2:1 >"$A/d/groups/w/ack"

	node_stop A
	node_start B role=follower
	node_start A "peers=$B"
	assert_converged A B 45
	assert_same_partitions A B t
	assert_same_partitions A B d
	assert_eq "$(stats_col "$B/t/stats" 3 next)" 5000
	assert_eq "$(cat "$B/t/groups/g1/offsets/0" "$B/t/groups/g2/offsets/3" "$B/t/groups/g3/offsets/1")" $'1000\n4999\n5000'
	assert_eq "$(ls -1 "$B/d/dlq/w" | paste -sd' ' -)" "2:0 2:2 redrive" "dead letters on the follower"
	assert_eq "$(cat "$B/d/dlq/w/2:2")" z
	assert_eq "$(cat "$B/d/groups/w/offsets/2")" 3
	wait_peer 20 caught_up A B
}

@test "replication: a leader with two peers should keep both identical and list them in peers= order" {
	node_start B role=follower
	node_start C role=follower
	node_start A "peers=$B:$C"
	assert_eq "$(head -n 1 "$A/.mq/replicas" | awk '{ $1 = $1; print }')" "$REPLICAS_HEADER" "header of .mq/replicas"
	assert_eq "$(awk 'NR > 1 { print $1 }' "$A/.mq/replicas")" "$B"$'\n'"$C" "peers listed in .mq/replicas"
	mkdir "$A/t" "$A/u"
	for p in 0 1 2 3; do
		seq -f "m$p-%g" 1 500 | cat >>"$A/t/$p"
	done
	seq -f "pub-%g" 1 300 | cat >>"$A/u/publish"
	mkdir "$A/t/groups/g"
	echo 250 >"$A/t/groups/g/offsets/2"
	assert_converged A B
	assert_converged A C
	assert_same_partitions A B t
	assert_same_partitions A C t
	assert_same_partitions A C u
	wait_peer 20 caught_up A B
	wait_peer 20 caught_up A C
	assert_eq "$(replica A B state) $(replica A C state)" "ok ok" "states of the peers"
	assert_eq "$(replica A B error) $(replica A C error)" "- -" "errors of the peers"
}

@test "replication: a peer reached through sshfs should be replicated like a local one" {
	[[ -x $SSHD_BIN ]] || skip "sshd not found at $SSHD_BIN (make test installs openssh-server)"
	command -v sshfs >/dev/null || skip "sshfs not installed (make test installs it)"
	command -v ssh-keygen >/dev/null || skip "ssh-keygen not installed (make test installs openssh-client)"
	node_start B role=follower
	sshd_start "$BATS_TEST_TMPDIR/sshd"
	SSHD_STARTED=$BATS_TEST_TMPDIR/sshd
	command mkdir -p "$BATS_TEST_TMPDIR/S"
	S=$(realpath "$BATS_TEST_TMPDIR/S") # the sshfs mount of B's mountpoint
	SSHFS_MOUNTS+=("$S")
	sshfs_mount "$B" "$S"
	node_start A "peers=$S"
	mkdir "$A/t"
	for p in 0 1 2 3; do
		seq -f "remote$p-%g" 1 300 | cat >>"$A/t/$p"
	done
	mkdir "$A/t/groups/g"
	echo 100 >"$A/t/groups/g/offsets/1"
	assert_converged A B # B through its own mount
	assert_same_partitions A B t
	wait_peer 20 in_sync A S
	assert_eq "$(cat "$S/t/groups/g/offsets/1")" 100 "the offset through sshfs"
}

@test "failover: after kill -9 of an acks=all leader, the promoted follower should hold every write that returned" {
	node_start B "role=follower,peers=$A"
	node_start A "peers=$B,acks=all,min_insync=2"
	wait_peer 20 in_sync A B
	mkdir "$A/t"
	epoch_a=$(cat "$A/.mq/epoch")
	rec=$BATS_TEST_TMPDIR/acked
	: >"$rec"
	mq_bg bash -c '
		for ((i = 1; i <= 100000; i++)); do
			printf "line-%06d\n" "$i" >>"$1" || exit 0
			printf "line-%06d\n" "$i" >>"$2"
		done' _ "$A/t/publish" "$rec" 2>"$BATS_TEST_TMPDIR/writer.err"
	writer=$MQ_BG
	writer_ahead() {
		(($(command wc -l <"$rec") >= 300)) || ! kill -0 "$writer" 2>/dev/null ||
			[[ $(command awk '/^State:/ { print $2 }' "/proc/$writer/status" 2>/dev/null) == Z ]]
	}
	wait_for 60 writer_ahead
	(($(command wc -l <"$rec") >= 300)) ||
		assert_eq "$(command wc -l <"$rec") lines; $(command cat "$BATS_TEST_TMPDIR/writer.err")" "300 lines" "the writer stopped early"
	node_kill9 A
	wait_gone "$writer"
	echo "acked lines: $(command wc -l <"$rec")"

	assert_eq "$(cat "$B/.mq/role")" follower
	epoch_b=$(cat "$B/.mq/epoch")
	echo leader >"$B/.mq/role"
	assert_eq "$(cat "$B/.mq/role")" leader "role of B after echo leader"
	epoch=$(cat "$B/.mq/epoch")
	((epoch > epoch_b)) || assert_eq "$epoch" "more than $epoch_b" "epoch of B after the promotion"
	((epoch > epoch_a)) || assert_eq "$epoch" "more than $epoch_a (the old leader's)" "epoch of B after the promotion"

	# every line whose write() returned is on B, once
	all_lines B t >"$BATS_TEST_TMPDIR/on-b"
	run comm -23 <(LC_ALL=C command sort "$rec") "$BATS_TEST_TMPDIR/on-b"
	assert_status 0
	assert_eq "$output" "" "acked lines missing on the promoted follower"
	assert_eq "$(command uniq -d "$BATS_TEST_TMPDIR/on-b")" "" "lines held twice by the promoted follower"

	# the old leader comes back as a follower of B and catches up
	node_start A "role=follower,peers=$B"
	for i in $(seq 1 100); do
		echo "after-$i" >>"$B/t/publish"
	done
	assert_converged B A
	assert_same_partitions B A t
	assert_eq "$(all_lines A t | command grep -c '^after-')" 100 "messages published to B after the failover, on A"
	assert_eq "$(cat "$A/.mq/role")" follower
	run fsop write "$A/t/publish" <<<"to the old leader"
	assert_errno EROFS
}

@test "failover: a returning old leader should drop the tail the new leader never got" {
	node_start B "role=follower,peers=$A"
	node_start A "peers=$B"
	mkdir "$A/t"
	printf 'base-1\nbase-2\n' >>"$A/t/0"
	assert_converged A B
	node_kill9 B
	echo only-on-A >>"$A/t/0" # acks=leader: accepted without the peer
	assert_eq "$(cat "$A/t/0")" $'base-1\nbase-2\nonly-on-A'
	node_kill9 A

	node_start B "role=follower,peers=$A"
	echo leader >"$B/.mq/role"
	echo only-on-B >>"$B/t/0"
	node_start A "role=follower,peers=$B"
	assert_converged B A
	assert_same_partitions B A t
	assert_eq "$(cat "$A/t/0")" $'base-1\nbase-2\nonly-on-B' "partition 0 of the old leader after it rejoined"
	assert_eq "$(stats_col "$A/t/stats" 0 next)" 3
	echo later >>"$B/t/0"
	assert_converged B A
	assert_eq "$(cat "$A/t/0")" $'base-1\nbase-2\nonly-on-B\nlater'
}

@test "failover: a follower mounted as leader should take an epoch of its own, so that its old leader's tail is still cut" {
	node_start B "role=follower,peers=$A"
	node_start A "peers=$B"
	mkdir "$A/t"
	printf 'm-%s\n' 1 2 3 >>"$A/t/0"
	assert_converged A B
	epoch_a=$(cat "$A/.mq/epoch")
	node_stop B
	printf 'a-%s\n' 4 5 >>"$A/t/0" # B never gets these
	node_kill9 A
	# B comes back as leader (no promotion by .mq/role): a new epoch all the same
	node_start B "role=leader,peers=$A"
	epoch_b=$(cat "$B/.mq/epoch")
	((epoch_b > epoch_a)) || assert_eq "$epoch_b" "more than $epoch_a" "epoch of B mounted as leader"
	printf 'b-%s\n' 4 5 6 >>"$B/t/0"
	node_start A "role=follower,peers=$B"
	assert_converged B A
	assert_eq "$(cat "$A/t/0")" $'m-1\nm-2\nm-3\nb-4\nb-5\nb-6' "partition 0 of the old leader"
}

@test "acks=all: a write waiting for a peer should fail with EIO, not hang, when its topic is deleted" {
	node_start B role=follower
	node_start A "peers=$B,acks=all,isr_lag_ms=30000"
	wait_peer 20 in_sync A B
	mkdir "$A/t"
	echo one >>"$A/t/0"
	assert_converged A B
	STOPPED_PID=${NODE_PID[B]}
	kill -STOP "$STOPPED_PID"
	fsop write "$A/t/0" <<<"two" >"$BATS_TEST_TMPDIR/w.out" 2>&1 &
	writer=$!
	# appended (then it waits for B): now delete the topic under it
	wait_for 10 eval '[[ $(cat "$A/t/0") == *two* ]]'
	kill -0 "$writer" || assert_eq "gone" "still waiting" "the writer before rmdir"
	rmdir "$A/t"
	wait_for 10 eval "! kill -0 $writer 2>/dev/null"
	status=0
	wait "$writer" || status=$?
	((status != 0)) || assert_eq "$status" "non-zero" "exit status of the waiting write"
	command grep -q EIO "$BATS_TEST_TMPDIR/w.out" ||
		assert_eq "$(command cat "$BATS_TEST_TMPDIR/w.out")" "EIO" "the waiting write"
	kill -CONT "$STOPPED_PID"
	STOPPED_PID=
	wait_peer 20 in_sync A B
	assert_eq "$(ls "$B")" "" "topics on B after the deletion"
}

@test "follower: a last line without newline should not be published at close by a node that became a follower" {
	node_start B role=follower
	node_start A "peers=$B"
	mkdir "$A/t"
	exec 5>>"$A/t/0"
	printf 'whole\npartial' >&5
	echo follower >"$A/.mq/role"
	exec 5>&-
	# the release (after close returned) logs what it did not publish
	wait_for 10 command grep -q "not applied: this node is a follower" "${NODE_LOG[A]}"
	assert_eq "$(cat "$A/t/0")" whole "partition 0 after the close"
}

@test "failover: after failing back, a group should get the new messages at offsets it had acked ahead before" {
	node_start B "role=follower,peers=$A"
	node_start A "peers=$B,partitions=1"
	mkdir "$A/t" "$A/t/groups/g"
	printf 'm-%s\n' 0 1 2 3 4 >>"$A/t/0"
	assert_converged A B
	node_stop B
	printf 'm-%s\n' 5 6 >>"$A/t/0" # B never gets these
	G=$A/t/groups/g
	# one consumer leases 0..6 (one batch read) and acks 5 and 6 only
	assert_eq "$(fsop readonce-nb "$G/batch" 65536 | cut -f1 | paste -sd' ' -)" "0:0 0:1 0:2 0:3 0:4 0:5 0:6" \
		"leased on A"
	printf '0:5\n0:6\n' >"$G/ack" # acked ahead of 0..4
	node_kill9 A
	node_start B "role=follower,peers=$A"
	echo leader >"$B/.mq/role"
	printf 'y-%s\n' 5 6 7 >>"$B/t/0"
	node_start A "role=follower,peers=$B" # truncated at 5, then y-5..y-7
	assert_converged B A
	# fail back to A
	echo follower >"$B/.mq/role"
	echo leader >"$A/.mq/role"
	drain 8
	assert_eq "$(printf '%s\n' "${got[@]}" | cut -f2 | LC_ALL=C command sort | paste -sd' ' -)" \
		"m-0 m-1 m-2 m-3 m-4 y-5 y-6 y-7" "what group g gets on A after failing back"
}

@test "follower: a reader parked on next when the node steps down should get EROFS, and a follower should not expire leases" {
	node_start B "role=follower,peers=$A"
	node_start A "peers=$B,partitions=1,max_deliveries=1,ack_wait_ms=300"
	mkdir "$A/t" "$A/t/groups/g"
	G=$A/t/groups/g
	echo m-0 >>"$A/t/0"
	assert_converged A B
	try_take # 0:0 leased on A, never acked
	assert_eq "${msg%%$'\t'*}" 0:0
	# the partition's leases belong to the first reader: this one parks
	command timeout 20 cat "$G/next" >"$BATS_TEST_TMPDIR/parked.out" 2>&1 &
	reader=$!
	MQ_BG_PIDS+=("$reader")
	wait_for 10 parked "$reader"
	echo follower >"$A/.mq/role"
	status=0
	wait_gone "$reader" || status=$?
	((status != 0)) || assert_eq "$status" "non-zero" "exit status of the parked reader"
	command grep -q "Read-only file system" "$BATS_TEST_TMPDIR/parked.out" ||
		assert_eq "$(command cat "$BATS_TEST_TMPDIR/parked.out")" "cat: ...: Read-only file system" "the parked reader"
	sleep 1 # past ack_wait_ms: a leader would dead-letter 0:0 now
	assert_eq "$(ls "$A/t/dlq/g")" redrive "dead letters on the follower"
	assert_eq "$(cat "$G/offsets/0")" 0 "committed offset on the follower"
}

@test "failover: an old leader restarted as leader should be fenced and never reach the new leader" {
	node_start B "role=follower,peers=$A"
	node_start A "peers=$B"
	mkdir "$A/t"
	echo a-1 >>"$A/t/0"
	assert_converged A B
	node_kill9 A
	echo leader >"$B/.mq/role"
	echo b-1 >>"$B/t/0"

	# restarted by mistake as a leader, with its old (lower) epoch
	node_start A "role=leader,peers=$B"
	marker="stale-leader-$RANDOM$RANDOM"
	run fsop write "$A/t/0" <<<"$marker" # accepted or refused: either way it must not spread
	echo "write to the stale leader: $output"
	# fenced: it meets B's newer epoch and steps down by itself
	stepped_down() { [[ $(cat "$A/.mq/role") == follower ]]; }
	wait_for 20 stepped_down
	assert_eq "$(replica A B state)" fenced "B in the stale leader's replicas"
	assert_eq "$(cat "$B/t/0")" $'a-1\nb-1' "partition 0 of the new leader"
	assert_eq "$(cat "$B/.mq/role")" leader "role of the new leader"
	run fsop write "$A/t/publish" <<<"$marker"
	echo "second write to the stale leader: $output"

	# a follower now, it converges to B and its own tail is gone
	assert_converged B A
	assert_eq "$(cat "$A/t/0")" $'a-1\nb-1' "partition 0 of the old leader after it became a follower"
	assert_eq "$(all_lines B t | command grep -c -- "$marker")" 0 "lines of the stale leader on the new leader"
	assert_eq "$(all_lines A t | command grep -c -- "$marker")" 0 "lines of the stale leader left on it"
	echo b-2 >>"$B/t/0"
	assert_converged B A
	assert_eq "$(cat "$A/t/0")" $'a-1\nb-1\nb-2'
}
