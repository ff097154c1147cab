#!/usr/bin/env bats
# The consumer examples in scripts/examples/ (docs/consuming.md), run as a
# user runs them, against a real mount: worker.sh and worker.py (next, ack,
# nack) and stream.sh (batch, acks in batches). Each gets 200 messages, some
# keyed, some with tabs, backslashes and blanks, and some "poison" that its
# handler always fails; then every other message must have been handled
# exactly once and verbatim, in partition order per key, the poison ones
# must be in T/dlq/G after max_deliveries attempts, the group must be fully
# consumed, and the workers must exit 0 on SIGTERM.

load helpers

EX=$BATS_TEST_DIRNAME/../scripts/examples
NKEYS=5
NPOISON=20

getfattr() { timeout "$MQ_TIMEOUT" getfattr "$@"; }

need_python() {
	command -v python3 >/dev/null || skip "python3 is not installed"
}

setup() {
	mq_start
	mkdir "$MNT/t"
	# Poison messages fail max_deliveries=3 times, 20 ms then 40 ms apart.
	printf 'max_deliveries=3\nretry_backoff_ms=20\n' >>"$MNT/t/config"
	mkdir "$MNT/t/groups/g"
	G=$MNT/t/groups/g
	PUB=$BATS_TEST_TMPDIR/published # the lines, in publish order
	LOG=$BATS_TEST_TMPDIR/handled   # "P:OFF<TAB>LINE" per handler run
	ERR=$BATS_TEST_TMPDIR/workers.err
	HANDLER=$BATS_TEST_TMPDIR/handler
	: >"$LOG"
	# The handler a user would write: the line on stdin, the id in
	# $MQ_ID; it logs every attempt and fails for poison.
	cat >"$HANDLER" <<'EOF'
#!/usr/bin/env bash
IFS= read -r line
printf '%s\t%s\n' "$MQ_ID" "$line" >>"$1"
[[ $line != *poison* ]]
EOF
	chmod +x "$HANDLER"
	# Idle workers look at their stop flag every WAIT seconds. Not less:
	# worker.sh ends an idle wait by killing cat, and a message handed out
	# at that very instant is lost to it until ack_wait_ms; after 3 s idle
	# the test publishes nothing more and no retry is pending.
	export WAIT=3
}

# publish: 200 lines in writes of 10 (keyless lines spread over the
# partitions one write at a time); every 10th is poison, every 3rd keyed.
publish() {
	local i line batch=()
	for ((i = 1; i <= 200; i++)); do
		if ((i % 10 == 0)); then
			line="poison $i"
			((i % 20)) || line="k$((i / 20 % NKEYS))"$'\t'"poison $i"
		elif ((i % 3 == 0)); then
			line="k$((i % NKEYS))"$'\t'"m $i"
		elif ((i % 7 == 0)); then
			line="  lead $i"$'\t'"tab \\ back\\tslash \\n  "
		else
			line="m $i"
		fi
		batch+=("$line")
		if ((${#batch[@]} == 10)); then
			printf '%s\n' "${batch[@]}" >>"$MNT/t/publish"
			printf '%s\n' "${batch[@]}" >>"$PUB"
			batch=()
		fi
	done
}

# settled: every partition of g has lag 0 and nothing in flight or waiting
# for a retry, and NPOISON messages are dead.
settled() {
	awk -v want="$NPOISON" '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ busy += $col["lag"] + $col["in_flight"] + $col["retry"]; dead += $col["dead"] }
		END { exit !(busy == 0 && dead == want) }' "$G/stats"
}

wait_settled() {
	wait_for 45 settled || {
		echo "--- $G/stats:" >&2
		cat "$G/stats" >&2
		echo "--- workers' stderr:" >&2
		command cat "$ERR" >&2
		return 1
	}
}

# stop_workers PID...: SIGTERM to each; each must exit 0 within 10 s.
stop_workers() {
	local pid rc deadline=$((SECONDS + 10))
	kill -TERM "$@"
	for pid; do
		while kill -0 "$pid" 2>/dev/null &&
			[[ $(command awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) != Z ]]; do
			if ((SECONDS >= deadline)); then
				echo "worker $pid still running 10 s after SIGTERM" >&2
				return 1
			fi
			sleep 0.05
		done
		rc=0
		wait "$pid" || rc=$?
		assert_eq "$rc" 0 "exit status of worker $pid after SIGTERM"
	done
}

# check_consumed: what the handlers saw, the DLQ and the stats.
check_consumed() {
	local p k ids f dlq=$MNT/t/dlq/g
	local idmap=$BATS_TEST_TMPDIR/idmap

	# Every id names the message it came with: "P:OFF<TAB>LINE" of the
	# partition files, which hold every message at its offset.
	for p in 0 1 2 3; do
		awk -v p="$p" '{ printf "%s:%d\t%s\n", p, NR - 1, $0 }' "$MNT/t/$p"
	done | LC_ALL=C command sort >"$idmap"
	assert_eq "$(LC_ALL=C command sort -u "$LOG" | LC_ALL=C comm -23 - "$idmap")" "" "handled ids not matching the partitions"

	# Every other message exactly once, byte for byte.
	assert_eq "$(cut -f2- "$LOG" | grep -v poison | LC_ALL=C command sort)" \
		"$(grep -v poison "$PUB" | LC_ALL=C command sort)" "messages handled"
	# Every poison message max_deliveries (3) times.
	assert_eq "$(cut -f2- "$LOG" | grep poison | LC_ALL=C command sort | uniq -c | command awk '{ print $1 }' | uniq)" 3 \
		"attempts per poison message"
	assert_eq "$(cut -f2- "$LOG" | grep poison | LC_ALL=C command sort -u)" \
		"$(grep poison "$PUB" | LC_ALL=C command sort)" "poison messages tried"

	# A key's messages: all in its partition, handled in offset order.
	for ((k = 0; k < NKEYS; k++)); do
		p=$(key_partition "k$k" 4)
		ids=$(command awk -F '\t' -v k="k$k" '$2 == k && $3 !~ /poison/ { print $1 }' "$LOG")
		[[ -n $ids ]]
		assert_eq "$(printf '%s\n' "$ids" | command awk -F: -v p="$p" '
			$1 != p { print "partition " $0; next }
			NR > 1 && $2 <= last { print "order " $0 }
			{ last = $2 }')" "" "ids of key k$k (partition $p) in handling order"
	done

	# The DLQ holds each poison message under its id, with the reason.
	assert_eq "$(ls "$dlq" | grep -cvx redrive)" "$NPOISON" "dead letters"
	: >"$BATS_TEST_TMPDIR/dead"
	for f in $(ls "$dlq" | grep -vx redrive); do
		printf '%s\t%s\n' "$f" "$(cat "$dlq/$f")" >>"$BATS_TEST_TMPDIR/dead"
		assert_eq "$(getfattr -n user.mq.deliveries --only-values "$dlq/$f")" 3 "deliveries of $f"
		assert_eq "$(getfattr -n user.mq.reason --only-values "$dlq/$f")" "exit 1" "reason of $f"
	done
	assert_eq "$(LC_ALL=C command sort "$BATS_TEST_TMPDIR/dead")" "$(grep poison "$idmap")" \
		"dead letters and their lines"

	# Fully consumed: the committed offset is the end everywhere.
	for p in 0 1 2 3; do
		assert_eq "$(stats_col "$G/stats" "$p" committed)" "$(stats_col "$G/stats" "$p" end)" "committed = end in $p"
	done
}

@test "examples: worker.sh should handle every message once and dead-letter the poison ones" {
	SECONDS=0
	mq_bg "$EX/worker.sh" "$G" "$HANDLER" "$LOG" 2>>"$ERR"
	w1=$MQ_BG
	mq_bg "$EX/worker.sh" "$G" "$HANDLER" "$LOG" 2>>"$ERR"
	w2=$MQ_BG
	publish
	wait_settled
	check_consumed
	stop_workers "$w1" "$w2"
	echo "# worker.sh: ${SECONDS}s" >&3
}

@test "examples: worker.py should handle every message once and dead-letter the poison ones" {
	need_python
	SECONDS=0
	mq_bg "$EX/worker.py" "$G" "$HANDLER" "$LOG" 2>>"$ERR"
	w1=$MQ_BG
	mq_bg "$EX/worker.py" "$G" "$HANDLER" "$LOG" 2>>"$ERR"
	w2=$MQ_BG
	publish
	wait_settled
	check_consumed
	stop_workers "$w1" "$w2"
	echo "# worker.py: ${SECONDS}s" >&3
}

@test "examples: stream.sh should handle every message once, ack in batches, dead-letter the poison ones" {
	SECONDS=0
	ACK_EVERY=16 mq_bg "$EX/stream.sh" "$G" "$HANDLER" "$LOG" 2>>"$ERR"
	w=$MQ_BG
	publish
	wait_settled
	check_consumed
	stop_workers "$w"
	echo "# stream.sh: ${SECONDS}s" >&3
}

# A slow handler: it says it started, takes a while, then logs and succeeds.
slow_handler() {
	cat >"$HANDLER" <<'EOF'
#!/usr/bin/env bash
IFS= read -r line
: >"$1.started"
sleep "$2"
printf '%s\t%s\n' "$MQ_ID" "$line" >>"$1"
EOF
}

# sigterm_finishes WORKER: SIGTERM while the handler works on the first of
# two messages of a partition: that one is handled and acked, the second is
# not taken, and the worker exits 0.
sigterm_finishes() {
	slow_handler
	printf 'one\ntwo\n' >>"$MNT/t/2"
	mq_bg "$EX/$1" "$G" "$HANDLER" "$LOG" 1 2>>"$ERR"
	wait_for 10 test -e "$LOG.started"
	stop_workers "$MQ_BG"
	assert_eq "$(command cat "$LOG")" $'2:0\tone'
	assert_eq "$(stats_col "$G/stats" 2 committed)" 1
	assert_eq "$(stats_col "$G/stats" 2 in_flight)" 0
	assert_eq "$(stats_col "$G/stats" 2 lag)" 1
}

@test "examples: worker.sh on SIGTERM should finish the message in hand, ack it, take no more" {
	sigterm_finishes worker.sh
}

@test "examples: worker.py on SIGTERM should finish the message in hand, ack it, take no more" {
	need_python
	sigterm_finishes worker.py
}

@test "examples: stream.sh on SIGTERM should handle and ack what it already took" {
	slow_handler
	printf 'm%s\n' 1 2 3 4 5 >>"$MNT/t/1"
	mq_bg "$EX/stream.sh" "$G" "$HANDLER" "$LOG" 0.3 2>>"$ERR"
	wait_for 10 test -e "$LOG.started"
	stop_workers "$MQ_BG"
	# One read of batch took all five; all were handled and acked.
	assert_eq "$(cut -f2 "$LOG")" $'m1\nm2\nm3\nm4\nm5'
	assert_eq "$(cut -f1 "$LOG" | paste -sd' ')" "1:0 1:1 1:2 1:3 1:4"
	assert_eq "$(stats_col "$G/stats" 1 committed)" 5
	assert_eq "$(stats_col "$G/stats" 1 in_flight)" 0
}

@test "examples: worker.py with handle() replaced by a Python function" {
	need_python
	printf 'a %s\n' 1 2 3 >>"$MNT/t/0"
	printf 'b\tpoison\n' >>"$MNT/t/0"
	printf 'c %s\n' 1 2 >>"$MNT/t/3"
	# What a user does when editing handle(): same module, own function.
	mq_bg python3 -c '
import sys
sys.dont_write_bytecode = True # no __pycache__ in scripts/examples
examples, log = sys.argv[1:3]
sys.argv = ["worker.py", sys.argv[3]]
sys.path.insert(0, examples)
import worker

def handle(msg_id, line):
    with open(log, "ab") as f:
        f.write(msg_id.encode() + b" " + line + b"\n")
    if b"poison" in line:
        raise ValueError("no\ngood")

worker.handle = handle
worker.main()' "$EX" "$LOG" "$G" 2>>"$ERR"
	NPOISON=1
	wait_settled
	stop_workers "$MQ_BG"
	assert_eq "$(LC_ALL=C command sort -u "$LOG")" $'0:0 a 1\n0:1 a 2\n0:2 a 3\n0:3 b\tpoison\n3:0 c 1\n3:1 c 2'
	assert_eq "$(getfattr -n user.mq.reason --only-values "$MNT/t/dlq/g/0:3")" "no good"
}
