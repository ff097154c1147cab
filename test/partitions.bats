#!/usr/bin/env bats
# Partitions: append-only files, read in offset order, exact st_size,
# followed by tail -f, seen by inotify on DATA_DIR (SPEC section 4).

load helpers

@test "partitions: cat should return every message in offset order, one per line" {
	mkdir "$MNT/t"
	for i in $(seq 1 100); do
		echo "message $i" >>"$MNT/t/1"
	done
	assert_eq "$(cat "$MNT/t/1")" "$(seq -f 'message %g' 1 100)"
	run cat "$MNT/t/0" "$MNT/t/2" "$MNT/t/3"
	assert_status 0
	assert_output ""
}

@test "partitions: st_size should equal the bytes readable right after each write" {
	mkdir "$MNT/t"
	assert_eq "$(stat -c %s "$MNT/t/0")" 0
	total=0
	for i in $(seq 1 20); do
		echo "msg-$i" >>"$MNT/t/0"
		total=$((total + ${#i} + 5))
		assert_eq "$(stat -c %s "$MNT/t/0")" "$total" "st_size after write $i"
		assert_eq "$(cat "$MNT/t/0" | wc -c)" "$total" "bytes read after write $i"
	done
	# the same right after a publish routed by key
	k=$(key_for_partition 2 4)
	printf '%s\tv\n' "$k" >"$MNT/t/publish"
	assert_eq "$(stat -c %s "$MNT/t/2")" "$((${#k} + 3))"
	assert_eq "$(ls -l "$MNT/t/2" | awk '{ print $5 }')" "$((${#k} + 3))"
}

@test "partitions: > should append like >> instead of truncating" {
	mkdir "$MNT/t"
	echo first >"$MNT/t/0"
	echo second >"$MNT/t/0"
	: >"$MNT/t/0"
	echo third >>"$MNT/t/0"
	assert_eq "$(cat "$MNT/t/0")" $'first\nsecond\nthird'
	assert_eq "$(stat -c %s "$MNT/t/0")" 19
}

@test "partitions: a write at a stale file position should still append at the end" {
	mkdir "$MNT/t"
	echo aaa >"$MNT/t/0"
	# dd without seek writes at position 0 and does not truncate
	printf 'bbb\n' | dd of="$MNT/t/0" conv=notrunc status=none
	assert_eq "$(cat "$MNT/t/0")" $'aaa\nbbb'
	run fsop open-rdwr "$MNT/t/0"
	assert_output OK
}

@test "partitions: truncate and ftruncate should fail with EPERM and keep the messages" {
	mkdir "$MNT/t"
	printf 'one\ntwo\n' >"$MNT/t/0"
	run fsop truncate "$MNT/t/0" 0
	assert_errno EPERM
	run fsop ftruncate "$MNT/t/0" 0
	assert_errno EPERM
	run fsop truncate "$MNT/t/0" 100
	assert_errno EPERM
	run truncate -s0 "$MNT/t/0"
	assert_fails
	assert_eq "$(cat "$MNT/t/0")" $'one\ntwo'
	assert_eq "$(stat -c %s "$MNT/t/0")" 8
}

@test "partitions: rm and mv should fail with EPERM and keep the messages" {
	mkdir "$MNT/t"
	echo kept >"$MNT/t/0"
	run fsop unlink "$MNT/t/0"
	assert_errno EPERM
	run fsop rename "$MNT/t/0" "$MNT/t/renamed"
	assert_errno EPERM
	run fsop rename "$MNT/t/0" "$MNT/t/1"
	assert_errno EPERM
	run rm -f "$MNT/t/0"
	assert_fails
	run mv "$MNT/t/0" "$MNT/t/9"
	assert_fails
	assert_eq "$(entries "$MNT/t")" "0 1 2 3 config groups publish stats"
	assert_eq "$(cat "$MNT/t/0")" kept
	run cat "$MNT/t/1"
	assert_output ""
}

@test "partitions: a partition number at or past the count should not exist" {
	mkdir "$MNT/t"
	run fsop stat "$MNT/t/4"
	assert_errno ENOENT
	run fsop write "$MNT/t/4" <<<"x"
	assert_errno ENOENT
	run fsop stat "$MNT/t/01"
	assert_errno ENOENT
}

@test "partitions: reads from the middle should return the bytes at that position" {
	mkdir "$MNT/t"
	printf 'alpha\nbravo\ncharlie\n' >>"$MNT/t/3"
	assert_eq "$(dd if="$MNT/t/3" bs=1 skip=6 count=5 status=none)" bravo
	assert_eq "$(tail -n 1 "$MNT/t/3")" charlie
	assert_eq "$(head -n 1 "$MNT/t/3")" alpha
	assert_eq "$(tail -c 8 "$MNT/t/3" | od -An -c | tr -s ' ')" " c h a r l i e \n"
}

@test "partitions: a reader already at the end should see messages appended later" {
	mkdir "$MNT/t"
	echo one >>"$MNT/t/0"
	exec 6<"$MNT/t/0"
	assert_eq "$(cat <&6)" one
	run cat <&6
	assert_output ""
	echo two >>"$MNT/t/0"
	assert_eq "$(cat <&6)" two
	exec 6<&-
}

@test "partitions: a large partition should read back byte for byte" {
	mkdir "$MNT/t"
	seq -f 'line %06g of a bigger partition, padded to make it longer' 1 20000 | cat >>"$MNT/t/1"
	assert_eq "$(cat "$MNT/t/1" | cksum)" "$(seq -f 'line %06g of a bigger partition, padded to make it longer' 1 20000 | cksum)"
	assert_eq "$(stat -c %s "$MNT/t/1")" "$(seq -f 'line %06g of a bigger partition, padded to make it longer' 1 20000 | wc -c)"
}

@test "partitions: tail -f should follow new messages" {
	mkdir "$MNT/t"
	echo before >>"$MNT/t/0"
	mq_bg timeout 60 tail -n +1 -f "$MNT/t/0" >"$BATS_TEST_TMPDIR/tail.out"
	tailpid=$MQ_BG
	wait_for 10 grep -qx before "$BATS_TEST_TMPDIR/tail.out"
	echo after-1 >>"$MNT/t/0"
	wait_for 10 grep -qx after-1 "$BATS_TEST_TMPDIR/tail.out"
	k=$(key_for_partition 0 4)
	printf '%s\tafter-2\n' "$k" >"$MNT/t/publish"
	wait_for 10 grep -qx "$k"$'\tafter-2' "$BATS_TEST_TMPDIR/tail.out"
	kill -0 "$tailpid" # still following
	assert_eq "$(command cat "$BATS_TEST_TMPDIR/tail.out")" "before
after-1
$k	after-2"
}

@test "partitions: inotifywait on DATA_DIR should see appends" {
	mkdir "$MNT/t"
	echo first >>"$MNT/t/0"
	events=$BATS_TEST_TMPDIR/events
	mq_bg timeout 60 inotifywait -m -r -e modify --format '%e %w%f' "$MQ_DATA" \
		>"$events" 2>"$BATS_TEST_TMPDIR/inotify.err"
	wait_for 10 grep -q 'Watches established' "$BATS_TEST_TMPDIR/inotify.err"
	count_modify() { command awk '/^MODIFY / { n++ } END { print n + 0 }' "$events"; }
	before=$(count_modify)
	echo second >>"$MNT/t/0"
	more_modify_events() { (($(count_modify) > before)); }
	wait_for 10 more_modify_events
}

@test "partitions: messages should read back whole across many small segments, also after restarts" {
	mq_restart -o segment_bytes=1024
	mkdir "$MNT/t" "$MNT/t/groups/g"
	for i in $(seq -f %04g 1 500); do
		echo "segmented message $i"
	done >>"$MNT/t/1"
	want=$(seq -f 'segmented message %04g' 1 500)
	(($(stats_col "$MNT/t/stats" 1 segments) >= 5))
	for round in fresh restarted killed; do
		assert_eq "$(cat "$MNT/t/1")" "$want" "partition after a $round mount"
		assert_eq "$(stat -c %s "$MNT/t/1")" "$(printf '%s\n' "$want" | wc -c)" "st_size after a $round mount"
		# a read from the middle that spans segment boundaries
		assert_eq "$(dd if="$MNT/t/1" bs=1000 skip=3 count=4 status=none | cksum)" \
			"$(printf '%s\n' "$want" | command dd bs=1000 skip=3 count=4 status=none | cksum)"
		echo 250 >"$MNT/t/groups/g/offsets/1"
		assert_eq "$(cat "$MNT/t/groups/g/1")" "$(seq -f 'segmented message %04g' 251 500)"
		assert_eq "$(stats_col "$MNT/t/stats" 1 next)" 500
		if [ "$round" = fresh ]; then
			mq_restart
		elif [ "$round" = restarted ]; then
			mq_kill9
			mq_start
		fi
	done
}

@test "partitions: retention_bytes should delete whole old segments and never renumber" {
	mq_restart -o segment_bytes=1024,retention_bytes=2048
	mkdir "$MNT/t" "$MNT/t/groups/early"
	line() { printf 'retained %03d %s\n' "$1" "...........................................";  }
	for i in $(seq 0 99); do
		line "$i"
	done >>"$MNT/t/0"
	# retention runs in the background: wait for the oldest offset to move
	first_moved() { (($(stats_col "$MNT/t/stats" 0 first) > 0)); }
	wait_for 20 first_moved
	first=$(stats_col "$MNT/t/stats" 0 first)
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 100
	assert_eq "$(stats_col "$MNT/t/stats" 0 messages)" "$((100 - first))"
	(($(stats_col "$MNT/t/stats" 0 bytes) < 4096))
	# what is left is exactly messages first..99, under their old offsets
	want=$(for ((i = first; i < 100; i++)); do line "$i"; done)
	assert_eq "$(cat "$MNT/t/0")" "$want"
	assert_eq "$(stat -c %s "$MNT/t/0")" "$(printf '%s\n' "$want" | wc -c)"
	# a group from before reads from the first retained message on, and
	# lags by what is retained
	assert_eq "$(cat "$MNT/t/groups/early/0")" "$want"
	assert_eq "$(stats_col "$MNT/t/groups/early/stats" 0 lag)" "$((100 - first))"
	assert_eq "$(stats_col "$MNT/t/stats" 0 max_lag)" "$((100 - first))"
	# a new group starts at the earliest retained message
	mkdir "$MNT/t/groups/late"
	assert_eq "$(cat "$MNT/t/groups/late/offsets/0")" "$first"
	assert_eq "$(cat "$MNT/t/groups/late/0")" "$want"
	# new messages go on from offset 100
	line 100 >>"$MNT/t/0"
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 101
	echo 100 >"$MNT/t/groups/late/offsets/0"
	assert_eq "$(cat "$MNT/t/groups/late/0")" "$(line 100)"
}

@test "partitions: retention_ms should delete expired messages and keep the offsets going" {
	mq_restart -o retention_ms=1000
	mkdir "$MNT/t"
	printf 'old-0\nold-1\nold-2\n' >>"$MNT/t/2"
	all_expired() { [[ $(stats_col "$MNT/t/stats" 2 first) == 3 ]]; }
	wait_for 20 all_expired
	run cat "$MNT/t/2"
	assert_status 0
	assert_output ""
	assert_eq "$(stat -c %s "$MNT/t/2")" 0
	assert_eq "$(stats_col "$MNT/t/stats" 2 next)" 3
	assert_eq "$(stats_col "$MNT/t/stats" 2 messages)" 0
	echo new-3 >>"$MNT/t/2"
	assert_eq "$(cat "$MNT/t/2")" new-3
	assert_eq "$(stats_col "$MNT/t/stats" 2 next)" 4
	mkdir "$MNT/t/groups/g"
	assert_eq "$(cat "$MNT/t/groups/g/offsets/2")" 3
	assert_eq "$(cat "$MNT/t/groups/g/2")" new-3
}

@test "partitions: a reader during concurrent publishing should only see whole lines, growing by appends" {
	mkdir "$MNT/t"
	pad=$(printf 'r%.0s' $(seq 1 100))
	for w in 1 2; do
		mq_bg bash -c 'for ((i = 1; i <= 1500; i++)); do printf "w%d-%05d-%s\n" "$2" "$i" "$3"; done >"$1"' \
			_ "$MNT/t/publish" "$w" "$pad"
	done
	snaps=$BATS_TEST_TMPDIR/snap
	prev_size=0
	for ((n = 0; n < 40; n++)); do
		cat "$MNT/t/1" >"$snaps.$n"
		size=$(command wc -c <"$snaps.$n")
		# whole lines only
		run awk -v pad="$pad" '$0 !~ ("^w[12]-[0-9][0-9][0-9][0-9][0-9]-" pad "$") { print "bad line: " $0; bad = 1 } END { exit bad }' "$snaps.$n"
		assert_status 0
		if ((size > 0)); then
			assert_eq "$(command tail -c 1 "$snaps.$n" | od -An -c | tr -d ' ')" '\n' "last byte of read $n"
		fi
		# append-only: what was read before is a prefix of what is read now
		((size >= prev_size))
		if ((n > 0)); then
			command cmp -n "$prev_size" "$snaps.$((n - 1))" "$snaps.$n"
		fi
		prev_size=$size
	done
	for pid in "${MQ_BG_PIDS[@]}"; do
		wait "$pid"
	done
	assert_eq "$(cat "$MNT"/t/[0-3] | wc -l)" 3000
}
