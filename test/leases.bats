#!/usr/bin/env bats
# Consumer groups, leases half (JetStream/SQS-style): T/groups/G/next and
# batch hand out leased messages, ack finishes them, nack and lease expiry
# are failed deliveries that come back after a backoff (SPEC section 5).
# Dead letters themselves are in dlq.bats.

load helpers

setup() {
	mq_start
	mkdir "$MNT/t"
	mkdir "$MNT/t/groups/g"
	G=$MNT/t/groups/g
}

# now_ms: wall clock in milliseconds.
now_ms() {
	date +%s%3N
}

# cfg KEY=VALUE...: set topic t's config, one line each, in one write.
cfg() {
	printf '%s\n' "$@" >>"$MNT/t/config"
}

# col P NAME: column NAME of partition P in G's stats.
col() {
	stats_col "$G/stats" "$1" "$2"
}

# row P: partition P's line of G's stats, blanks squeezed.
row() {
	awk -v p="$1" 'NR > 1 && $1 == p { $1 = $1; print }' "$G/stats"
}

# total NAME: the sum of column NAME over all partitions of G's stats.
total() {
	awk -v name="$1" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
		{ s += $c }
		END { if (!c) exit 1; print s + 0 }' "$G/stats"
}

# take_all: lease everything available now with one read of batch; the
# records are in $taken.
take_all() {
	taken=$(fsop readonce "$G/batch" 1048576)
}

# stamped_reader OUT: in the background, one `cat next`, then write
# "<ms when it returned> <record>" to OUT. Sets reader.
stamped_reader() {
	mq_bg bash -c 'm=$(timeout 8 cat "$1"); echo "$(date +%s%3N) $m"' _ "$G/next" >"$1"
	reader=$MQ_BG
}

# ---------------------------------------------------------------- next

@test "leases: a group should have next, batch, ack and nack files" {
	assert_eq "$(ls -1 "$G" | LC_ALL=C command sort | paste -sd' ' -)" \
		"0 1 2 3 ack batch nack next offsets stats"
}

@test "leases: next should hand out one message per open as P:OFF<TAB>LINE, then end of file" {
	printf 'hello world\nsecond\n' >>"$MNT/t/1"
	# one open, read to end of file: exactly one record, newline included
	assert_eq "$(fsop read "$G/next"; echo .)" $'1:0\thello world\n.'
	echo 1:0 >"$G/ack"
	# small reads of one open get the rest of the record, then end of file
	assert_eq "$(dd if="$G/next" bs=4 status=none; echo .)" $'1:1\tsecond\n.'
	echo 1:1 >"$G/ack"
	# a keyed line comes back verbatim, key and TAB included
	k=$(key_for_partition 2 4)
	printf '%s\tpayload with\ttabs\n' "$k" >"$MNT/t/publish"
	assert_eq "$(cat "$G/next")" "2:0	$k	payload with	tabs"
	echo 2:0 >"$G/ack"
	# bash's read builtin gets one record too
	echo third >>"$MNT/t/3"
	IFS= read -r m <"$G/next"
	assert_eq "$m" $'3:0\tthird'
	echo 3:0 >"$G/ack"
	# an open that reads nothing leases nothing
	echo fourth >>"$MNT/t/3"
	run fsop open-read "$G/next"
	assert_status 0
	assert_eq "$(row 3)" "3 1 2 1 0 0 0"
	assert_eq "$(cat "$G/next")" $'3:1\tfourth'
	echo 3:1 >"$G/ack"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
}

@test "leases: msg=\$(cat next) should take exactly one message" {
	for p in 0 1 2; do
		printf 'p%d-a\np%d-b\n' "$p" "$p" >>"$MNT/t/$p"
	done
	m1=$(cat "$G/next")
	assert_eq "$(total in_flight)" 1 "in flight after one cat next"
	m2=$(cat "$G/next")
	m3=$(cat "$G/next")
	assert_eq "$(total in_flight)" 3 "in flight after three cat next"
	got=$(printf '%s\n' "$m1" "$m2" "$m3" | LC_ALL=C command sort)
	assert_eq "$got" $'0:0\tp0-a\n1:0\tp1-a\n2:0\tp2-a'
	assert_eq "$(total lag)" 6
	printf '%s\n' "${m1%%$'\t'*}" "${m2%%$'\t'*}" "${m3%%$'\t'*}" >"$G/ack"
	assert_eq "$(total in_flight)" 0
	assert_eq "$(total lag)" 3
	m=$(cat "$G/next")
	re=$'^[012]:1\tp[012]-b$'
	[[ $m =~ $re ]] || assert_eq "$m" "P:1<TAB>pP-b" "fourth cat next"
	assert_eq "$(total in_flight)" 1
}

@test "leases: a read of next with nothing available should block until a message is published" {
	out=$BATS_TEST_TMPDIR/out
	mq_bg timeout 20 cat "$G/next" >"$out"
	reader=$MQ_BG
	wait_for 10 parked "$reader"
	sleep 0.3 # and it still waits a while later, with nothing read
	parked "$reader"
	assert_eq "$(command cat "$out")" ""
	echo 'wake up' >>"$MNT/t/publish"
	status=0
	wait "$reader" || status=$?
	assert_eq "$status" 0 "exit status of the blocked cat next"
	got=$(command cat "$out")
	re=$'^[0-3]:0\twake up$'
	[[ $got =~ $re ]] || assert_eq "$got" "P:0<TAB>wake up" "what the blocked reader got"
	assert_eq "$(total in_flight)" 1
}

@test "leases: an O_NONBLOCK read of next with nothing available should fail with EAGAIN" {
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	echo only >>"$MNT/t/3"
	run fsop read-nb "$G/next"
	assert_status 0
	assert_output $'3:0\tonly'
	# the partition is leased and nothing else is there
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	run fsop readonce-nb "$G/batch" 4096
	assert_errno EAGAIN
}

@test "leases: poll() on next should report readable when a message arrives" {
	run fsop poll "$G/next" 300
	assert_status 1
	assert_output TIMEOUT
	out=$BATS_TEST_TMPDIR/poll
	mq_bg timeout 20 "$FSOP_BIN" poll "$G/next" 10000 >"$out"
	poller=$MQ_BG
	sleep 0.3 # the poller is waiting, with nothing to read
	kill -0 "$poller"
	assert_eq "$(command cat "$out")" ""
	t0=$(now_ms)
	echo ring >>"$MNT/t/2"
	status=0
	wait "$poller" || status=$?
	t1=$(now_ms)
	assert_eq "$(command cat "$out")" $'POLLIN\n2:0\tring' "what the poller printed (status $status)"
	(((t1 - t0) < 5000)) || assert_eq "$((t1 - t0)) ms" "under 5000 ms" "poll wake-up"
	# with a message already there, poll says so at once
	echo ring2 >>"$MNT/t/1"
	run fsop poll "$G/next" 5000
	assert_status 0
	assert_output $'POLLIN\n1:0\tring2'
}

# ---------------------------------------------------------------- batch

@test "leases: one read of batch should return many whole messages" {
	seq -f 'm%05g' 1 3000 >"$BATS_TEST_TMPDIR/msgs"
	cat "$BATS_TEST_TMPDIR/msgs" >>"$MNT/t/0"
	run fsop readonce "$G/batch" 131072
	assert_status 0
	assert_eq "$output" "$(seq 0 2999 | command awk '{ printf "0:%d\tm%05d\n", $1, $1 + 1 }')" \
		"one read of batch with 128 KiB"
	assert_eq "$(col 0 in_flight)" 3000
	# a small buffer gets only the whole records that fit
	printf 'ab\ncd\nef\n' >>"$MNT/t/1"
	run fsop readonce "$G/batch" 20
	assert_status 0
	assert_eq "$output" $'1:0\tab\n1:1\tcd' "one read of 20 bytes (records of 7)"
	assert_eq "$(col 1 in_flight)" 2
	# 1:2 stays with the consumer that holds 1:0 and 1:1
	run fsop readonce-nb "$G/batch" 4096
	assert_errno EAGAIN
}

@test "leases: a message longer than the read buffer should continue in the next reads of batch" {
	long=$(printf 'x%.0s' {1..100})
	printf '%s\nshort\n' "$long" >>"$MNT/t/2"
	dd if="$G/batch" of="$BATS_TEST_TMPDIR/out" bs=16 count=8 2>"$BATS_TEST_TMPDIR/err"
	assert_eq "$(command cat "$BATS_TEST_TMPDIR/out")" "2:0	$long
2:1	short"
	# 105 bytes in six full and one short read, then one read of 10 bytes:
	# the short read is the end of the long record, not a piece of the next
	assert_eq "$(command grep 'records in' "$BATS_TEST_TMPDIR/err")" "6+2 records in"
	assert_eq "$(command wc -c <"$BATS_TEST_TMPDIR/out")" 115
	assert_eq "$(col 2 in_flight)" 2
}

@test "leases: a message of 300 KB should come whole through next and through batch" {
	big=$BATS_TEST_TMPDIR/big
	head -c 300000 /dev/zero | tr '\0' y >"$big"
	echo >>"$big"
	cat "$big" "$big" >>"$MNT/t/1"
	assert_eq "$(cat "$G/next" | cksum)" "$( (printf '1:0\t'; command cat "$big") | cksum)" \
		"the big message through next"
	echo 1:0 >"$G/ack"
	# batch: the record continues over as many reads as it takes
	assert_eq "$(head -c 300005 "$G/batch" | cksum)" "$( (printf '1:1\t'; command cat "$big") | cksum)" \
		"the big message through batch"
	assert_eq "$(row 1)" "1 1 2 1 1 0 0"
	echo 1:1 >"$G/ack"
	assert_eq "$(row 1)" "1 2 2 0 0 0 0"
}

@test "leases: cat batch should keep streaming messages as they are published" {
	out=$BATS_TEST_TMPDIR/out
	mq_bg timeout 30 cat "$G/batch" >"$out"
	reader=$MQ_BG
	lines() { [[ $(command wc -l <"$out") == "$1" ]]; }
	for i in 1 2 3; do
		echo "first-$i" >>"$MNT/t/0"
	done
	wait_for 10 lines 3
	printf 'second-1\nsecond-2\n' >>"$MNT/t/3"
	wait_for 10 lines 5
	kill -0 "$reader" # still going
	assert_eq "$(command cat "$out")" $'0:0\tfirst-1\n0:1\tfirst-2\n0:2\tfirst-3\n3:0\tsecond-1\n3:1\tsecond-2'
	kill "$reader"
	wait "$reader" || :
	# the leases outlive the open file
	assert_eq "$(total in_flight)" 5
	assert_eq "$(total committed)" 0
}

@test "leases: two cat batch consumers should share the messages, none twice" {
	a=$BATS_TEST_TMPDIR/a b=$BATS_TEST_TMPDIR/b
	mq_bg timeout 30 cat "$G/batch" >"$a"
	ra=$MQ_BG
	mq_bg timeout 30 cat "$G/batch" >"$b"
	rb=$MQ_BG
	wait_for 10 parked "$ra"
	wait_for 10 parked "$rb"
	seq -f 'one-%g' 1 1000 | cat >"$MNT/t/publish"
	have() { (($(command cat "$a" "$b" | command wc -l) >= $1)); }
	wait_for 20 have 1000
	# ack everything, so that partitions may change hands, and go on
	command cat "$a" "$b" | cut -f1 >"$G/ack"
	seq -f 'two-%g' 1 1000 | cat >"$MNT/t/publish"
	wait_for 20 have 2000
	sleep 0.2 # nothing more than that arrives
	kill "$ra" "$rb"
	wait "$ra" "$rb" || :
	assert_eq "$(command cat "$a" "$b" | command wc -l)" 2000
	assert_eq "$(command cat "$a" "$b" | cut -f2 | LC_ALL=C command sort)" \
		"$( (seq -f 'one-%g' 1 1000; seq -f 'two-%g' 1 1000) | LC_ALL=C command sort)"
	assert_eq "$(command cat "$a" "$b" | cut -f1 | LC_ALL=C command sort -u | command wc -l)" 2000
	# a partition's messages are in offset order in each stream
	for f in "$a" "$b"; do
		run awk -F '\t' '{ split($1, id, ":") }
			id[1] in last && id[2] + 0 <= last[id[1]] { print "out of order: " $1; bad = 1 }
			{ last[id[1]] = id[2] + 0 } END { exit bad }' "$f"
		assert_status 0
	done
}

# ---------------------------------------------------------------- ack, nack

@test "leases: ack and nack should take many lines in one write" {
	cfg retry_backoff_ms=60000
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	printf 'd\ne\n' >>"$MNT/t/1"
	echo f >>"$MNT/t/2"
	echo g >>"$MNT/t/3"
	take_all
	assert_eq "$(total in_flight)" 7
	printf '0:0\n0:1\n  0:2  \n\n1:0\n' >"$G/ack"
	assert_eq "$(row 0)" "0 3 3 0 0 0 0"
	assert_eq "$(row 1)" "1 1 2 1 1 0 0"
	printf '2:0 first reason\n3:0 second reason\n1:1\n' >"$G/nack"
	assert_eq "$(row 1)" "1 1 2 1 0 1 0"
	assert_eq "$(row 2)" "2 0 1 1 0 1 0"
	assert_eq "$(row 3)" "3 0 1 1 0 1 0"
	assert_eq "$(cat "$G/offsets/0")" 3
}

@test "leases: a long list of ids piped into ack should all be applied" {
	# cat writes a pipe's 64 KiB chunks: lines span write() calls
	seq -f 'm%g' 1 30000 | cat >>"$MNT/t/0"
	take_all
	assert_eq "$(col 0 in_flight)" 30000
	printf '%s\n' "$taken" | cut -f1 >"$BATS_TEST_TMPDIR/ids"
	run bash -c 'cat "$1" | timeout "$3" cat >"$2"' _ "$BATS_TEST_TMPDIR/ids" "$G/ack" "$MQ_TIMEOUT"
	assert_status 0
	assert_eq "$(row 0)" "0 30000 30000 0 0 0 0"
}

@test "leases: an id split over two write() calls should ack that id, not a prefix of it" {
	seq -f 'm%g' 0 19 | cat >>"$MNT/t/0"
	take_all
	run fsop writes "$G/ack" $'0:3\n0:1' $'2\n'
	assert_output $'OK 7\nOK 2'
	echo 0:0 >"$G/ack"
	# 0:1 was not acked: the committed offset stops there
	assert_eq "$(row 0)" "0 1 20 19 17 0 0"
}

@test "leases: a malformed or unknown id in ack should fail with EINVAL and apply nothing of that write" {
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	take_all
	assert_eq "$(row 0)" "0 0 3 3 3 0 0"
	for bad in x 0 0: :0 0:1x 0:x '0;1' -1:0 0:-1 0:0x1 '0:1 extra' '0:1 0:2' 0:1:2 \
		4:0 1024:0 99999999999:0 0:3 0:99 2:0 0:18446744073709551616 0:18446744073709551615; do
		run fsop write "$G/ack" <<<"0:0"$'\n'"$bad"
		assert_errno EINVAL
		run fsop write "$G/ack" <<<"$bad"$'\n'"0:1"
		assert_errno EINVAL
		assert_eq "$(row 0)" "0 0 3 3 3 0 0" "stats after acking '0:0' and '$bad'"
	done
	assert_eq "$(cat "$G/offsets/0")" 0
	# the leases are intact: a good write still works
	printf '0:0\n0:1\n0:2\n' >"$G/ack"
	assert_eq "$(row 0)" "0 3 3 0 0 0 0"
}

@test "leases: a malformed or unknown id in nack should fail with EINVAL and apply nothing of that write" {
	cfg retry_backoff_ms=60000 max_deliveries=1
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	take_all
	for bad in x 0 0: :0 0:1x 0:x '0;1' -1:0 0:-1 4:0 1024:0 0:3 0:99 2:0 0:18446744073709551616; do
		run fsop write "$G/nack" <<<"0:0 why"$'\n'"$bad"
		assert_errno EINVAL
		run fsop write "$G/nack" <<<"$bad"$'\n'"0:1"
		assert_errno EINVAL
		assert_eq "$(row 0)" "0 0 3 3 3 0 0" "stats after nacking '0:0 why' and '$bad'"
	done
	assert_eq "$(ls "$MNT/t/dlq/g")" redrive
	printf '0:0 why\n0:1\n' >"$G/nack"
	assert_eq "$(row 0)" "0 2 3 1 1 0 2"
}

@test "leases: ack should advance the committed offset only over finished messages at the front" {
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	take_all
	echo 0:1 >"$G/ack"
	assert_eq "$(cat "$G/offsets/0")" 0
	assert_eq "$(row 0)" "0 0 3 3 2 0 0"
	assert_eq "$(cat "$G/0")" $'a\nb\nc'
	echo 0:0 >"$G/ack"
	assert_eq "$(cat "$G/offsets/0")" 2
	assert_eq "$(row 0)" "0 2 3 1 1 0 0"
	assert_eq "$(cat "$G/0")" c
	echo 0:2 >"$G/ack"
	assert_eq "$(cat "$G/offsets/0")" 3
	assert_eq "$(row 0)" "0 3 3 0 0 0 0"
}

@test "leases: an ack of a message never handed out should skip it" {
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	echo 0:0 >"$G/ack"
	assert_eq "$(cat "$G/offsets/0")" 1
	assert_eq "$(cat "$G/next")" $'0:1\tb'
	echo 0:2 >"$G/ack" # ahead of the lease on 0:1
	assert_eq "$(row 0)" "0 1 3 2 1 0 0"
	echo 0:1 >"$G/ack"
	assert_eq "$(row 0)" "0 3 3 0 0 0 0"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
}

@test "leases: an ack should finish a message whoever holds it, and acking it again should change nothing" {
	cfg retry_backoff_ms=60000
	printf 'a\nb\n' >>"$MNT/t/0"
	echo x >>"$MNT/t/1"
	take_all # another consumer holds them
	echo 0:0 >"$G/ack"
	assert_eq "$(row 0)" "0 1 2 1 1 0 0"
	run fsop write "$G/ack" <<<"0:0"
	assert_status 0
	assert_eq "$(row 0)" "0 1 2 1 1 0 0"
	# a nack of the finished message changes nothing either
	echo '0:0 too late' >"$G/nack"
	assert_eq "$(row 0)" "0 1 2 1 1 0 0"
	# a message waiting for redelivery is finished by an ack too
	echo '1:0 failed' >"$G/nack"
	assert_eq "$(row 1)" "1 0 1 1 0 1 0"
	echo 1:0 >"$G/ack"
	assert_eq "$(row 1)" "1 1 1 0 0 0 0"
	printf '0:1\n0:1\n0:0\n' >"$G/ack"
	assert_eq "$(row 0)" "0 2 2 0 0 0 0"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
}

@test "leases: a nack of a message that is not leased should change nothing" {
	cfg retry_backoff_ms=60000 max_deliveries=1
	printf 'a\nb\n' >>"$MNT/t/0"
	# never handed out
	echo '0:0 not yours' >"$G/nack"
	assert_eq "$(row 0)" "0 0 2 2 0 0 0"
	assert_eq "$(ls "$MNT/t/dlq/g")" redrive
	run fsop read-nb "$G/next" # no backoff either
	assert_status 0
	assert_output $'0:0\ta'
	echo 0:0 >"$G/ack"
	# finished
	echo '0:0 again' >"$G/nack"
	assert_eq "$(row 0)" "0 1 2 1 0 0 0"
	assert_eq "$(ls "$MNT/t/dlq/g")" redrive
	run fsop read-nb "$G/next"
	assert_status 0
	assert_output $'0:1\tb'
	# waiting for redelivery, or acked ahead of the front
	printf 'c\nd\n' >>"$MNT/t/0"
	cfg max_deliveries=2
	echo 0:1 >"$G/nack"
	assert_eq "$(row 0)" "0 1 4 3 0 1 0"
	echo 0:2 >"$G/ack"
	for i in 1 2 3; do
		printf '0:1 not leased\n0:2 acked\n' >"$G/nack"
	done
	assert_eq "$(row 0)" "0 1 4 3 0 1 0"
	assert_eq "$(ls "$MNT/t/dlq/g")" redrive
	echo 0:1 >"$G/ack"
	assert_eq "$(row 0)" "0 3 4 1 0 0 0"
	assert_eq "$(cat "$G/next")" $'0:3\td'
}

# ---------------------------------------------------------------- ordering

@test "leases: a partition's messages should not go to a second consumer while the first holds a lease there" {
	printf 'a0\na1\na2\n' >>"$MNT/t/0"
	printf 'b0\nb1\n' >>"$MNT/t/1"
	m1=$(cat "$G/next")
	m2=$(cat "$G/next")
	assert_eq "$(printf '%s\n' "$m1" "$m2" | LC_ALL=C command sort)" $'0:0\ta0\n1:0\tb0'
	# 0:1 and 1:1 wait for the leases on 0:0 and 1:0
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	run fsop readonce-nb "$G/batch" 4096
	assert_errno EAGAIN
	echo 0:0 >"$G/ack"
	assert_eq "$(cat "$G/next")" $'0:1\ta1'
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	# one consumer (a batch reader) may hold several of a partition, in order
	printf '0:1\n1:0\n' >"$G/ack"
	run fsop readonce "$G/batch" 4096
	assert_status 0
	assert_eq "$(printf '%s\n' "$output" | LC_ALL=C command sort)" $'0:2\ta2\n1:1\tb1'
}

@test "leases: a message waiting for redelivery should hold back the later messages of its partition" {
	cfg retry_backoff_ms=700
	printf 'a\nb\n' >>"$MNT/t/0"
	assert_eq "$(cat "$G/next")" $'0:0\ta'
	echo '0:0 try again' >"$G/nack"
	assert_eq "$(row 0)" "0 0 2 2 0 1 0"
	# no lease is held in partition 0, yet 0:1 is not handed out
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	run fsop readonce-nb "$G/batch" 4096
	assert_errno EAGAIN
	wait_for 10 try_take
	assert_eq "$msg" $'0:0\ta' "the first message available again"
	echo 0:0 >"$G/ack"
	assert_eq "$(cat "$G/next")" $'0:1\tb'
}

@test "leases: 4 competing workers should process 10000 keyed messages at least once, in per-key order" {
	cfg partitions=8 ack_wait_ms=60000
	src=$BATS_TEST_TMPDIR/src
	log=$BATS_TEST_TMPDIR/processed
	for ((i = 1; i <= 10000; i++)); do
		printf 'k%d\t%d\n' $((i * 7 % 37)) "$i"
	done >"$src"
	: >"$log"
	# a worker: take one, log it, ack it; exit after acking a STOP
	worker='
		G=$1 log=$2
		while ((SECONDS < 150)); do
			msg=$(timeout 10 cat "$G/next") || continue
			[[ -n $msg ]] || continue
			id=${msg%%$'\''\t'\''*}
			line=${msg#*$'\''\t'\''}
			if [[ $line == STOP ]]; then
				echo "$id" >"$G/ack"
				exit 0
			fi
			# now and then a slow one: a worker that got a later message
			# of the same partition would overtake it
			((RANDOM % 20)) || sleep 0.02
			printf "%s\t%s\n" "$id" "$line" >>"$log"
			echo "$id" >"$G/ack"
		done
		exit 1'
	for w in 1 2 3 4; do
		mq_bg bash -c "$worker" _ "$G" "$log"
		workers[w]=$MQ_BG
	done
	cat "$src" >"$MNT/t/publish"
	wait_for 150 eval '[[ $(total lag) == 0 ]]'
	printf 'STOP\nSTOP\nSTOP\nSTOP\n' >"$MNT/t/publish"
	for w in 1 2 3 4; do
		status=0
		wait "${workers[w]}" || status=$?
		assert_eq "$status" 0 "exit status of worker $w"
	done
	assert_eq "$(total lag)" 0
	assert_eq "$(total in_flight)" 0
	# none lost: every value, and only those
	assert_eq "$(cut -f3 "$log" | sort -n -u | cksum)" "$(seq 1 10000 | cksum)" "the values processed"
	count=$(command wc -l <"$log")
	((count >= 10000))
	# per key: one partition, offsets and values increasing (an immediate
	# repeat is a redelivery)
	run awk -F '\t' '
		{ split($1, id, ":"); key = $2; val = $3 + 0 }
		key in last && val == last[key] { next }
		key in last && (val < last[key] || id[1] != part[key]) {
			print "key " key ": " val " (" $1 ") after " last[key]; bad = 1
		}
		{ last[key] = val; part[key] = id[1] }
		END { exit bad }' "$log"
	assert_status 0
	echo "# $count processed for 10000 messages" >&3
}

# ---------------------------------------------------------------- timing

@test "leases: a lease not acked should expire after ack_wait_ms and the message come back, not before" {
	cfg ack_wait_ms=500 retry_backoff_ms=0
	echo job >>"$MNT/t/0"
	t0=$(now_ms)
	assert_eq "$(cat "$G/next")" $'0:0\tjob'
	t1=$(now_ms)
	r=$(row 0)
	if (($(now_ms) - t0 < 450)); then
		assert_eq "$r" "0 0 1 1 1 0 0" "stats while leased"
	fi
	sleep 0.2
	run fsop read-nb "$G/next"
	t2=$(now_ms)
	if ((t2 - t0 < 500)); then
		assert_errno EAGAIN
	elif ((status == 0)); then
		skip "too slow to look before the lease ended ($((t2 - t0)) ms)"
	fi
	# a reader blocked meanwhile gets it when the lease ends
	stamped_reader "$BATS_TEST_TMPDIR/out"
	wait "$reader"
	read -r t3 got <"$BATS_TEST_TMPDIR/out"
	assert_eq "$got" $'0:0\tjob'
	((t3 - t0 >= 500)) || assert_eq "$((t3 - t0)) ms" ">= 500 ms" "came back after"
	((t3 - t1 <= 2500)) || assert_eq "$((t3 - t1)) ms" "about 500 ms" "came back after"
	echo 0:0 >"$G/ack"
	assert_eq "$(row 0)" "0 1 1 0 0 0 0"
}

@test "leases: retry_backoff_ms should delay redelivery after a nack, doubling per failure" {
	cfg retry_backoff_ms=800
	echo job >>"$MNT/t/1"
	assert_eq "$(cat "$G/next")" $'1:0\tjob'
	t0=$(now_ms)
	echo '1:0 first' >"$G/nack"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	assert_eq "$(row 1)" "1 0 1 1 0 1 0"
	stamped_reader "$BATS_TEST_TMPDIR/out1"
	wait "$reader"
	read -r t1 got <"$BATS_TEST_TMPDIR/out1"
	assert_eq "$got" $'1:0\tjob'
	d1=$((t1 - t0))
	t0=$(now_ms)
	echo '1:0 second' >"$G/nack"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	stamped_reader "$BATS_TEST_TMPDIR/out2"
	wait "$reader"
	read -r t2 got <"$BATS_TEST_TMPDIR/out2"
	assert_eq "$got" $'1:0\tjob'
	d2=$((t2 - t0))
	echo "# redelivered after $d1 ms, then after $d2 ms" >&3
	((d1 >= 800 && d1 <= 2300)) || assert_eq "$d1 ms" "about 800 ms" "first backoff"
	((d2 >= 1600 && d2 <= 3100)) || assert_eq "$d2 ms" "about 1600 ms" "second backoff"
}

@test "leases: an interrupted blocking read of next should lose nothing" {
	for i in 1 2 3; do
		run timeout 0.5 cat "$G/next"
		assert_status 124
		assert_output ""
	done
	run timeout 0.5 cat "$G/batch"
	assert_status 124
	assert_output ""
	assert_eq "$(total in_flight)" 0
	echo one >>"$MNT/t/2"
	assert_eq "$(row 2)" "2 0 1 1 0 0 0"
	assert_eq "$(cat "$G/next")" $'2:0\tone'
	assert_eq "$(row 2)" "2 0 1 1 1 0 0"
	assert_eq "$(total in_flight)" 1
}

@test "leases: readers killed at random moments while messages arrive should lose none" {
	cfg ack_wait_ms=1000 retry_backoff_ms=0
	mq_bg bash -c 'for ((i = 1; i <= 200; i++)); do echo "m$i" >>"$1" || exit 1; ((i % 10)) || sleep 0.05; done' \
		_ "$MNT/t/publish"
	pub=$MQ_BG
	declare -A seen=()
	deadline=$((SECONDS + 60))
	while ((${#seen[@]} < 200 && SECONDS < deadline)); do
		# a reader that gives up after 10 to 90 ms
		msg=$(timeout 0.0$((RANDOM % 9 + 1)) cat "$G/next") || :
		[[ -n $msg ]] || continue
		seen[${msg#*$'\t'}]=1
		echo "${msg%%$'\t'*}" >"$G/ack"
	done
	wait "$pub"
	assert_eq "${#seen[@]}" 200 "distinct messages received"
	assert_eq "$(total lag)" 0
	assert_eq "$(total in_flight)" 0
}

# ---------------------------------------------------------------- restarts

@test "leases: after kill -9 exactly the unacked messages should come back, in every sync mode" {
	for mode in none batch always; do
		mq_restart -o sync=$mode
		mkdir "$MNT/$mode" "$MNT/$mode/groups/g"
		G=$MNT/$mode/groups/g
		for p in 0 1 2 3; do
			printf 'p%d-a\np%d-b\np%d-c\n' "$p" "$p" "$p" >>"$MNT/$mode/$p"
		done
		take_all
		assert_eq "$(total in_flight)" 12
		printf '0:0\n0:1\n0:2\n1:1\n2:0\n' >"$G/ack"
		mq_kill9
		mq_start
		assert_eq "$(cat "$G/offsets/0" "$G/offsets/1" "$G/offsets/2" "$G/offsets/3")" $'3\n0\n1\n0' "offsets with sync=$mode"
		drain 7
		# and nothing else
		run fsop read-nb "$G/next"
		assert_errno EAGAIN
		assert_eq "$(printf '%s\n' "${got[@]}" | LC_ALL=C command sort)" \
			$'1:0\tp1-a\n1:2\tp1-c\n2:1\tp2-b\n2:2\tp2-c\n3:0\tp3-a\n3:1\tp3-b\n3:2\tp3-c' \
			"what came back with sync=$mode"
		assert_eq "$(total committed)" 12
		assert_eq "$(total in_flight)" 0
	done
}

@test "leases: delivery counts should survive a clean restart and a kill -9" {
	cfg max_deliveries=2 retry_backoff_ms=0
	echo clean >>"$MNT/t/0"
	assert_eq "$(cat "$G/next")" $'0:0\tclean'
	echo '0:0 one' >"$G/nack"
	mq_restart
	assert_eq "$(cat "$G/next")" $'0:0\tclean'
	echo '0:0 two' >"$G/nack"
	assert_eq "$(cat "$MNT/t/dlq/g/0:0")" clean
	assert_eq "$(row 0)" "0 1 1 0 0 0 1"

	echo crash >>"$MNT/t/3"
	assert_eq "$(cat "$G/next")" $'3:0\tcrash'
	echo '3:0 one' >"$G/nack"
	mq_kill9
	mq_start
	assert_eq "$(cat "$G/next")" $'3:0\tcrash'
	echo '3:0 two' >"$G/nack"
	assert_eq "$(cat "$MNT/t/dlq/g/3:0")" crash
	assert_eq "$(row 3)" "3 1 1 0 0 0 1"
}

# ---------------------------------------------------------------- many readers

@test "leases: 100 readers blocked on next should not starve ls, publish or ack" {
	mkdir "$MNT/other"
	echo warm-up >>"$MNT/t/0"
	assert_eq "$(cat "$G/next")" $'0:0\twarm-up'
	echo 0:0 >"$G/ack"
	d=$BATS_TEST_TMPDIR/readers
	command mkdir "$d"
	for ((i = 0; i < 100; i++)); do
		mq_bg timeout 60 cat "$G/next" >"$d/$i"
		readers[i]=$MQ_BG
	done
	all_parked() {
		local pid
		for pid in "${readers[@]}"; do
			parked "$pid" || return 1
		done
	}
	wait_for 30 all_parked
	# each of these must be answered while 100 reads are parked
	run timeout 2 ls "$MNT/t" "$G"
	assert_status 0
	run timeout 2 stat "$MNT/t/0"
	assert_status 0
	run timeout 2 bash -c 'echo elsewhere >>"$1"' _ "$MNT/other/publish"
	assert_status 0
	run timeout 2 "$FSOP_BIN" write "$G/ack" <<<"0:0"
	assert_status 0
	run timeout 2 "$FSOP_BIN" read "$G/stats"
	assert_status 0
	run timeout 2 cat "$MNT/t/0"
	assert_status 0
	all_parked
	for ((i = 0; i < 100; i++)); do
		echo "msg-$i"
	done >"$BATS_TEST_TMPDIR/msgs"
	cat "$BATS_TEST_TMPDIR/msgs" >"$MNT/t/publish"
	# ack what the readers get, so the rest of each partition goes out
	declare -A acked=()
	deadline=$((SECONDS + 60))
	while ((${#acked[@]} < 100 && SECONDS < deadline)); do
		for ((i = 0; i < 100; i++)); do
			[[ -z ${acked[$i]:-} && -s $d/$i ]] || continue
			IFS= read -r line <"$d/$i" || continue
			echo "${line%%$'\t'*}" >"$G/ack"
			acked[$i]=1
		done
		sleep 0.02
	done
	for ((i = 0; i < 100; i++)); do
		status=0
		wait "${readers[i]}" || status=$?
		assert_eq "$status" 0 "exit status of reader $i"
		assert_eq "$(command wc -l <"$d/$i")" 1 "lines reader $i got"
	done
	assert_eq "$(command cat "$d"/* | cut -f2 | LC_ALL=C command sort)" \
		"$(LC_ALL=C command sort "$BATS_TEST_TMPDIR/msgs")" "messages the readers got"
	assert_eq "$(command cat "$d"/* | cut -f1 | LC_ALL=C command sort -u | command wc -l)" 100 "distinct ids"
	assert_eq "$(total lag)" 0
}

# ---------------------------------------------------------------- stats, offsets, config

@test "leases: stats should show committed, end, lag, in_flight, retry and dead at each step" {
	cfg max_deliveries=2 retry_backoff_ms=60000
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	echo d >>"$MNT/t/1"
	assert_eq "$(norm "$G/stats")" "partition committed end lag in_flight retry dead
0 0 3 3 0 0 0
1 0 1 1 0 0 0
2 0 0 0 0 0 0
3 0 0 0 0 0 0"
	take_all
	assert_eq "$(row 0)" "0 0 3 3 3 0 0"
	assert_eq "$(row 1)" "1 0 1 1 1 0 0"
	echo 0:0 >"$G/ack"
	assert_eq "$(row 0)" "0 1 3 2 2 0 0"
	echo '0:1 later' >"$G/nack"
	assert_eq "$(row 0)" "0 1 3 2 1 1 0"
	echo '1:0 later' >"$G/nack"
	assert_eq "$(row 1)" "1 0 1 1 0 1 0"
	echo max_deliveries=1 >>"$MNT/t/config"
	echo '0:2 fatal' >"$G/nack"
	assert_eq "$(row 0)" "0 1 3 2 0 1 1"
	echo 0:1 >"$G/ack"
	assert_eq "$(row 0)" "0 3 3 0 0 0 1"
	rm "$MNT/t/dlq/g/0:2"
	assert_eq "$(row 0)" "0 3 3 0 0 0 0"
	echo more >>"$MNT/t/0"
	assert_eq "$(row 0)" "0 3 4 1 0 0 0"
	assert_eq "$(row 2)" "2 0 0 0 0 0 0"
}

@test "leases: acks and offsets/P should move one committed offset" {
	printf 'a\nb\nc\nd\n' >>"$MNT/t/0"
	take_all
	echo 0:0 >"$G/ack"
	assert_eq "$(cat "$G/offsets/0")" 1
	assert_eq "$(cat "$G/0")" $'b\nc\nd'
	# a commit moves the same offset; the leases behind it are gone
	echo 3 >"$G/offsets/0"
	assert_eq "$(row 0)" "0 3 4 1 0 0 0"
	assert_eq "$(cat "$G/next")" $'0:3\td'
	echo 0:3 >"$G/ack"
	assert_eq "$(cat "$G/offsets/0")" 4
	# a rewind hands the messages out again
	echo 2 >"$G/offsets/0"
	assert_eq "$(cat "$G/next")" $'0:2\tc'
}

@test "leases: max_deliveries, ack_wait_ms and retry_backoff_ms should be validated in T/config and as mount options" {
	keys() { grep -E '^(max_deliveries|ack_wait_ms|retry_backoff_ms)=' "$MNT/t/config"; }
	assert_eq "$(keys)" $'max_deliveries=5\nack_wait_ms=30000\nretry_backoff_ms=1000'
	for kv in max_deliveries=-1 max_deliveries=1000001 max_deliveries=x max_deliveries= max_deliveries=1.5 \
		ack_wait_ms=0 ack_wait_ms=86400001 ack_wait_ms=-1 ack_wait_ms=1s ack_wait_ms= \
		retry_backoff_ms=3600001 retry_backoff_ms=-1 retry_backoff_ms=0x10 retry_backoff_ms=; do
		run fsop write "$MNT/t/config" <<<$'max_deliveries=7\n'"$kv"
		assert_errno EINVAL
		assert_eq "$(keys)" $'max_deliveries=5\nack_wait_ms=30000\nretry_backoff_ms=1000' "config after '$kv'"
	done
	printf 'max_deliveries=0\nack_wait_ms=1\nretry_backoff_ms=0\n' >>"$MNT/t/config"
	assert_eq "$(keys)" $'max_deliveries=0\nack_wait_ms=1\nretry_backoff_ms=0'
	printf 'max_deliveries=1000000\nack_wait_ms=86400000\nretry_backoff_ms=3600000\n' >>"$MNT/t/config"
	assert_eq "$(keys)" $'max_deliveries=1000000\nack_wait_ms=86400000\nretry_backoff_ms=3600000'

	refuse max_deliveries=1000001 max_deliveries
	refuse max_deliveries=-1 max_deliveries
	refuse ack_wait_ms=0 ack_wait_ms
	refuse ack_wait_ms=86400001 ack_wait_ms
	refuse ack_wait_ms=soon ack_wait_ms
	refuse retry_backoff_ms=3600001 retry_backoff_ms
	refuse retry_backoff_ms=-5 retry_backoff_ms
	mq_restart -o max_deliveries=3,ack_wait_ms=250,retry_backoff_ms=0
	mkdir "$MNT/new"
	assert_eq "$(grep -E '^(max_deliveries|ack_wait_ms|retry_backoff_ms)=' "$MNT/new/config")" \
		$'max_deliveries=3\nack_wait_ms=250\nretry_backoff_ms=0'
	# and they apply: a lease of 250 ms expires
	mkdir "$MNT/new/groups/g"
	echo x >>"$MNT/new/0"
	assert_eq "$(cat "$MNT/new/groups/g/next")" $'0:0\tx'
	assert_eq "$(timeout 5 cat "$MNT/new/groups/g/next")" $'0:0\tx'
}
