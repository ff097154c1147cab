#!/usr/bin/env bats
# Dead letters: a message that failed max_deliveries times (nack or lease
# expiry) moves to T/dlq/G/P:OFF with its line and xattrs saying why; rm
# discards it, T/dlq/G/redrive hands it to G again (SPEC section 5).

load helpers

setup() {
	mq_start
	mkdir "$MNT/t"
	mkdir "$MNT/t/groups/g"
	G=$MNT/t/groups/g
	D=$MNT/t/dlq/g
}

# now_ms: wall clock in milliseconds.
now_ms() {
	date +%s%3N
}

# cfg KEY=VALUE...: set topic t's config, one line each, in one write.
cfg() {
	printf '%s\n' "$@" >>"$MNT/t/config"
}

# row P: partition P's line of G's stats, blanks squeezed.
row() {
	awk -v p="$1" 'NR > 1 && $1 == p { $1 = $1; print }' "$G/stats"
}

# xattr FILE NAME: the value of user.mq.NAME of FILE.
xattr() {
	timeout "$MQ_TIMEOUT" getfattr --only-values -n "user.mq.$2" "$1"
}

# letters: the names in G's dlq, in readdir order, without redrive.
letters() {
	ls -1U "$D" | command grep -vx redrive | paste -sd' ' -
}

# take_all: lease everything available now with one read of batch.
take_all() {
	fsop readonce "$G/batch" 1048576 >/dev/null
}

# snapshot: every dead letter of G in readdir order, with its size, mtime,
# content and xattrs.
snapshot() {
	local f
	ls -1U "$D" | command grep -vx redrive | while IFS= read -r f; do
		echo "== $f $(stat -c '%s %Y' "$D/$f")"
		cat "$D/$f"
		timeout "$MQ_TIMEOUT" getfattr --absolute-names -d "$D/$f"
	done
}

@test "dlq: T/dlq should have a directory per group holding only redrive while nothing failed" {
	assert_eq "$(ls -1 "$MNT/t" | command grep -x dlq)" dlq
	assert_eq "$(ls -1 "$MNT/t/dlq")" g
	mkdir "$MNT/t/groups/other"
	assert_eq "$(ls -1 "$MNT/t/dlq" | LC_ALL=C command sort | paste -sd' ' -)" "g other"
	assert_eq "$(ls -1 "$D")" redrive
	assert_eq "$(ls -1 "$MNT/t/dlq/other")" redrive
}

@test "dlq: a message should be delivered exactly max_deliveries times, then moved to T/dlq/G/P:OFF" {
	cfg max_deliveries=3 retry_backoff_ms=0
	mkdir "$MNT/t/groups/other"
	tp0=$(now_ms)
	printf 'poison pill\nfine\n' >>"$MNT/t/0"
	tp1=$(now_ms)
	for i in 1 2 3; do
		assert_eq "$(cat "$G/next")" $'0:0\tpoison pill' "delivery $i"
		assert_eq "$(ls -1 "$D")" redrive "the dlq before failure $i"
		tf0=$(now_ms)
		echo "0:0 attempt $i: db down" >"$G/nack"
		tf1=$(now_ms)
	done
	assert_eq "$(ls -1 "$D" | LC_ALL=C command sort | paste -sd' ' -)" "0:0 redrive"
	assert_eq "$(cat "$D/0:0"; echo .)" $'poison pill\n.'
	# it counts as finished: the committed offset moved past it, and the
	# next delivery is the following message
	assert_eq "$(row 0)" "0 1 2 1 0 0 1"
	assert_eq "$(cat "$G/next")" $'0:1\tfine'
	assert_eq "$(row 0)" "0 1 2 1 1 0 1"
	echo 0:1 >"$G/ack"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	# why it is there
	assert_eq "$(xattr "$D/0:0" deliveries)" 3
	assert_eq "$(xattr "$D/0:0" reason)" "attempt 3: db down"
	assert_eq "$(xattr "$D/0:0" partition)" 0
	assert_eq "$(xattr "$D/0:0" offset)" 0
	failed_at=$(xattr "$D/0:0" failed_at)
	((failed_at >= tf0 - 5 && failed_at <= tf1 + 5)) ||
		assert_eq "$failed_at" "between $tf0 and $tf1" "user.mq.failed_at"
	ts=$(xattr "$D/0:0" timestamp)
	((ts >= tp0 - 5 && ts <= tp1 + 5)) ||
		assert_eq "$ts" "between $tp0 and $tp1" "user.mq.timestamp"
	assert_eq "$(timeout "$MQ_TIMEOUT" getfattr --absolute-names -d "$D/0:0" | command grep -o '^user\.mq\.[a-z_]*' | LC_ALL=C command sort | paste -sd' ' -)" \
		"user.mq.deliveries user.mq.failed_at user.mq.offset user.mq.partition user.mq.reason user.mq.timestamp"
	# another group is not affected
	assert_eq "$(ls -1 "$MNT/t/dlq/other")" redrive
	assert_eq "$(cat "$MNT/t/groups/other/next")" $'0:0\tpoison pill'
}

@test "dlq: a lease expiry should count as a failed delivery, with reason expired" {
	cfg max_deliveries=2 ack_wait_ms=300 retry_backoff_ms=0
	echo slow >>"$MNT/t/2"
	assert_eq "$(cat "$G/next")" $'2:0\tslow'
	echo '2:0 boom' >"$G/nack"
	assert_eq "$(cat "$G/next")" $'2:0\tslow'
	# not acked: after 300 ms that is the second failure
	wait_for 10 test -e "$D/2:0"
	assert_eq "$(cat "$D/2:0")" slow
	assert_eq "$(xattr "$D/2:0" reason)" expired
	assert_eq "$(xattr "$D/2:0" deliveries)" 2
	assert_eq "$(row 2)" "2 1 1 0 0 0 1"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	# expiry alone, every time
	echo slower >>"$MNT/t/2"
	assert_eq "$(cat "$G/next")" $'2:1\tslower'
	wait_for 10 try_take
	assert_eq "$msg" $'2:1\tslower'
	wait_for 10 test -e "$D/2:1"
	assert_eq "$(xattr "$D/2:1" reason)" expired
	assert_eq "$(xattr "$D/2:1" deliveries)" 2
	assert_eq "$(row 2)" "2 2 2 0 0 0 2"
}

@test "dlq: user.mq.reason should be the last nack reason, trimmed, or nack without one" {
	cfg max_deliveries=2 retry_backoff_ms=0
	printf 'a\nb\n' >>"$MNT/t/1"
	take_all
	printf '1:0 first\n1:1   spaced   out   \n' >"$G/nack"
	take_all
	printf '1:0\n1:1  second   try  \n' >"$G/nack"
	assert_eq "$(xattr "$D/1:0" reason)" nack
	assert_eq "$(xattr "$D/1:1" reason)" "second   try"
}

@test "dlq: max_deliveries=0 should never dead-letter" {
	cfg max_deliveries=0 retry_backoff_ms=0
	echo stubborn >>"$MNT/t/0"
	for i in 1 2 3 4 5 6 7; do
		assert_eq "$(cat "$G/next")" $'0:0\tstubborn' "delivery $i"
		echo "0:0 no $i" >"$G/nack"
	done
	assert_eq "$(ls -1 "$D")" redrive
	assert_eq "$(row 0)" "0 0 1 1 0 1 0"
	assert_eq "$(cat "$G/next")" $'0:0\tstubborn'
}

@test "dlq: ls -l of the dlq directory should show real sizes and times" {
	cfg max_deliveries=1
	short=abc
	long=$(printf 'L%.0s' {1..300})
	echo "$short" >>"$MNT/t/1"
	echo "$long" >>"$MNT/t/3"
	take_all
	t0=$(date +%s)
	printf '1:0\n3:0\n' >"$G/nack"
	t1=$(date +%s)
	assert_eq "$(stat -c '%s' "$D/1:0" "$D/3:0")" $'4\n301'
	assert_eq "$(ls -l "$D" | command awk '$NF == "1:0" || $NF == "3:0" { print $NF, $5 }')" $'1:0 4\n3:0 301'
	assert_eq "$(cat "$D/3:0" | command wc -c)" 301
	for f in 1:0 3:0; do
		m=$(stat -c %Y "$D/$f")
		((m >= t0 - 1 && m <= t1 + 1)) || assert_eq "$m" "between $t0 and $t1" "mtime of $f"
	done
	# ls -l shows a time that is not the epoch
	assert_eq "$(ls -l --time-style=+%Y "$D" | command awk '$NF == "1:0" { print $6 }')" "$(date +%Y -d @"$t0")"
}

@test "dlq: ls -U and find should list dead letters in failure order" {
	cfg max_deliveries=1
	printf 'a\nb\n' >>"$MNT/t/0"
	for p in 1 2 3; do
		echo "p$p" >>"$MNT/t/$p"
	done
	take_all
	for id in 2:0 0:1 3:0 0:0 1:0; do
		echo "$id" >"$G/nack"
	done
	assert_eq "$(letters)" "2:0 0:1 3:0 0:0 1:0"
	assert_eq "$(find "$D" -type f ! -name redrive -printf '%f\n' | paste -sd' ' -)" "2:0 0:1 3:0 0:0 1:0"
	assert_eq "$(ls -1 "$D" | command grep -vx redrive | paste -sd' ' -)" "0:0 0:1 1:0 2:0 3:0"
}

@test "dlq: rm should discard a dead letter; a missing one should fail with ENOENT, redrive with EPERM" {
	cfg max_deliveries=1
	echo a >>"$MNT/t/0"
	echo b >>"$MNT/t/1"
	take_all
	printf '0:0\n1:0\n' >"$G/nack"
	assert_eq "$(row 0)" "0 1 1 0 0 0 1"
	rm "$D/0:0"
	assert_eq "$(letters)" 1:0
	assert_eq "$(row 0)" "0 1 1 0 0 0 0"
	# discarded: not handed out again
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	run fsop unlink "$D/0:0"
	assert_errno ENOENT
	run fsop unlink "$D/3:7"
	assert_errno ENOENT
	run fsop unlink "$D/redrive"
	assert_errno EPERM
	assert_eq "$(ls -1 "$D" | paste -sd' ' -)" "1:0 redrive"
	run fsop write "$D/redrive" <<<"0:0"
	assert_errno EINVAL
	assert_eq "$(row 1)" "1 1 1 0 0 0 1"
}

@test "dlq: echo P:OFF > redrive should hand one message to G again, deliveries reset" {
	cfg max_deliveries=2 retry_backoff_ms=0
	echo bad-a >>"$MNT/t/0"
	echo bad-b >>"$MNT/t/1"
	for i in 1 2; do
		take_all
		printf '0:0 a%d\n1:0 b%d\n' "$i" "$i" >"$G/nack"
	done
	assert_eq "$(letters)" "0:0 1:0"
	echo 0:0 >"$D/redrive"
	assert_eq "$(letters)" 1:0
	assert_eq "$(row 0 | cut -d' ' -f1-3,7)" "0 1 1 0"
	assert_eq "$(cat "$G/next")" $'0:0\tbad-a'
	echo '0:0 once more' >"$G/nack"
	# one failure after the redrive: not dead yet
	assert_eq "$(letters)" 1:0
	assert_eq "$(cat "$G/next")" $'0:0\tbad-a'
	echo '0:0 twice more' >"$G/nack"
	assert_eq "$(letters)" "1:0 0:0"
	assert_eq "$(xattr "$D/0:0" deliveries)" 2
	assert_eq "$(xattr "$D/0:0" reason)" "twice more"
	# 1:0 was never handed out meanwhile
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	# a redriven message can be acked like any other
	echo 1:0 >"$D/redrive"
	assert_eq "$(cat "$G/next")" $'1:0\tbad-b'
	echo 1:0 >"$G/ack"
	assert_eq "$(letters)" 0:0
	assert_eq "$(row 1)" "1 1 1 0 0 0 0"
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
}

@test "dlq: a redriven message behind an unfinished one should also start again with no deliveries" {
	cfg max_deliveries=1 retry_backoff_ms=0
	printf 'a\nb\n' >>"$MNT/t/0"
	take_all
	echo '0:1 dies' >"$G/nack"
	assert_eq "$(letters)" 0:1
	assert_eq "$(row 0)" "0 0 2 2 1 0 1"
	cfg max_deliveries=2
	echo 0:1 >"$D/redrive"
	echo 0:0 >"$G/ack"
	assert_eq "$(row 0 | cut -d' ' -f1-3,7)" "0 1 2 0"
	assert_eq "$(cat "$G/next")" $'0:1\tb'
	echo '0:1 first' >"$G/nack"
	assert_eq "$(ls -1 "$D")" redrive "after one failure since the redrive"
	assert_eq "$(cat "$G/next")" $'0:1\tb'
	echo '0:1 second' >"$G/nack"
	assert_eq "$(letters)" 0:1
	assert_eq "$(xattr "$D/0:1" deliveries)" 2
}

@test "dlq: echo all > redrive should hand every dead letter back, in offset order within a partition" {
	cfg max_deliveries=1 retry_backoff_ms=0
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	printf 'x\ny\n' >>"$MNT/t/3"
	take_all
	for id in 0:2 3:1 0:0 3:0 0:1; do
		echo "$id failed" >"$G/nack"
	done
	assert_eq "$(letters)" "0:2 3:1 0:0 3:0 0:1"
	echo all >"$D/redrive"
	assert_eq "$(ls -1 "$D")" redrive
	assert_eq "$(row 0 | cut -d' ' -f1-3,7)" "0 3 3 0"
	drain 5
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
	assert_eq "$(printf '%s\n' "${got[@]}" | command grep '^0:')" $'0:0\ta\n0:1\tb\n0:2\tc' "partition 0, in the order handed out"
	assert_eq "$(printf '%s\n' "${got[@]}" | command grep '^3:')" $'3:0\tx\n3:1\ty' "partition 3, in the order handed out"
	assert_eq "$(row 0)" "0 3 3 0 0 0 0"
	assert_eq "$(row 3)" "3 2 2 0 0 0 0"
}

@test "dlq: bad redrive lines should fail with EINVAL and redrive nothing" {
	cfg max_deliveries=1 retry_backoff_ms=0
	echo a >>"$MNT/t/0"
	echo c >>"$MNT/t/1"
	take_all
	printf '0:0\n1:0\n' >"$G/nack"
	echo b >>"$MNT/t/0" # written, not dead
	want0=$(row 0) want1=$(row 1)
	for bad in x 0 0: :0 0:0x '0;0' -1:0 0:-1 ALL 'all x' 'all 0:0' '0:0 extra' \
		4:0 1024:0 0:1 0:2 1:1 2:0 0:18446744073709551616; do
		run fsop write "$D/redrive" <<<"0:0"$'\n'"$bad"
		assert_errno EINVAL
		run fsop write "$D/redrive" <<<"$bad"$'\n'"1:0"
		assert_errno EINVAL
		run fsop write "$D/redrive" <<<"all"$'\n'"$bad"
		assert_errno EINVAL
		assert_eq "$(letters)" "0:0 1:0" "letters after redriving '$bad'"
		assert_eq "$(row 0)" "$want0" "stats after redriving '$bad'"
		assert_eq "$(row 1)" "$want1" "stats after redriving '$bad'"
	done
	# nothing came back
	assert_eq "$(cat "$G/next")" $'0:1\tb'
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
}

@test "dlq: a redrive should wake a reader blocked on next" {
	cfg max_deliveries=1
	echo lazarus >>"$MNT/t/2"
	assert_eq "$(cat "$G/next")" $'2:0\tlazarus'
	echo 2:0 >"$G/nack"
	out=$BATS_TEST_TMPDIR/out
	mq_bg timeout 20 cat "$G/next" >"$out"
	reader=$MQ_BG
	wait_for 10 parked "$reader"
	echo 2:0 >"$D/redrive"
	status=0
	wait "$reader" || status=$?
	assert_eq "$status" 0 "exit status of the blocked cat next"
	assert_eq "$(command cat "$out")" $'2:0\tlazarus'
}

@test "dlq: dead letters should survive a clean restart and a kill -9" {
	cfg max_deliveries=1
	echo "line 0" >>"$MNT/t/0"
	echo "line 2" >>"$MNT/t/2"
	take_all
	echo '2:0 first' >"$G/nack"
	echo '0:0 second' >"$G/nack"
	before=$(snapshot)
	assert_eq "$(letters)" "2:0 0:0"
	mq_restart
	assert_eq "$(snapshot)" "$before" "dead letters after a clean restart"
	assert_eq "$(row 2)" "2 1 1 0 0 0 1"
	echo "line 3" >>"$MNT/t/3"
	assert_eq "$(cat "$G/next")" $'3:0\tline 3'
	echo '3:0 third' >"$G/nack"
	rm "$D/2:0"
	before=$(snapshot)
	assert_eq "$(letters)" "0:0 3:0"
	mq_kill9
	mq_start
	assert_eq "$(snapshot)" "$before" "dead letters after kill -9"
	assert_eq "$(row 2)" "2 1 1 0 0 0 0"
	assert_eq "$(row 3)" "3 1 1 0 0 0 1"
	# and they can still be redriven, which survives a kill -9 too
	echo all >"$D/redrive"
	assert_eq "$(ls -1 "$D")" redrive
	mq_kill9
	mq_start
	assert_eq "$(ls -1 "$D")" redrive
	m1=$(cat "$G/next")
	m2=$(cat "$G/next")
	assert_eq "$(printf '%s\n' "$m1" "$m2" | LC_ALL=C command sort)" $'0:0\tline 0\n3:0\tline 3'
}

@test "dlq: a message leased max_deliveries times and never acked across kill -9 should go to the dlq as expired" {
	cfg max_deliveries=2
	echo crashy >>"$MNT/t/1"
	assert_eq "$(cat "$G/next")" $'1:0\tcrashy'
	mq_kill9
	mq_start
	assert_eq "$(timeout 5 cat "$G/next")" $'1:0\tcrashy'
	mq_kill9
	mq_start
	wait_for 10 test -e "$D/1:0"
	assert_eq "$(cat "$D/1:0")" crashy
	assert_eq "$(xattr "$D/1:0" deliveries)" 2
	assert_eq "$(xattr "$D/1:0" reason)" expired
	run fsop read-nb "$G/next"
	assert_errno EAGAIN
}
