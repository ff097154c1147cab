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
