#!/usr/bin/env bats
# Backpressure (SPEC section 7): a topic whose retained bytes reach
# max_bytes makes writers block (overflow=block, the default) or fail with
# ENOSPC (overflow=reject). Space comes back when retention deletes whole
# segments, and, while the topic is full, when every consumer group has
# committed past a whole segment (docs/design.md).

load helpers

LINE=$(printf 'x%.0s' $(seq 1 99)) # 100 bytes with its newline

# 20 lines of 100 bytes in a 1-partition topic with 1 KiB segments: segment
# 0 holds offsets 0-9, segment 1 offsets 10-19; retained 2000 of 2048 bytes.
fill_topic() {
	mkdir "$MNT/t" "$MNT/t/groups/g"
	for i in $(seq 1 20); do
		echo "$LINE" >>"$MNT/t/publish"
	done
	assert_eq "$(stats_col "$MNT/t/stats" 0 bytes)" 2000
}

blocked() { kill -0 "$1" 2>/dev/null; }
finished() { ! kill -0 "$1" 2>/dev/null; }

# hold_writer TEXT: publish TEXT (longer than the 48 bytes of room left) in
# the background and check that it is still held after a while; sets writer.
hold_writer() {
	mq_bg sh -c 'echo "$2" >>"$1/t/publish"' _ "$MNT" "$1"
	writer=$MQ_BG
	sleep 0.5 # the writer must still be waiting after a while
	blocked "$writer"
}

# released: the held writer gets in within a deadline and succeeds.
released() {
	wait_for 10 finished "$writer"
	wait "$writer"
}

@test "backpressure: overflow=reject should fail a write past max_bytes with ENOSPC and store nothing" {
	mq_restart -o partitions=1,segment_bytes=1024,max_bytes=2048,overflow=reject
	fill_topic
	run fsop write "$MNT/t/publish" <<<"$LINE"
	assert_errno ENOSPC
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 20
	# a consumer done with the first segment frees it: room again
	echo 10 >"$MNT/t/groups/g/offsets/0"
	run fsop write "$MNT/t/publish" <<<"$LINE"
	assert_output "OK 100"
	assert_eq "$(stats_col "$MNT/t/stats" 0 first)" 10
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 21
}

@test "backpressure: overflow=block should hold a writer until a consumer frees a segment" {
	mq_restart -o partitions=1,segment_bytes=1024,max_bytes=2048
	fill_topic
	hold_writer "held $LINE"
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 20
	# committing a partial segment frees nothing: still held
	echo 5 >"$MNT/t/groups/g/offsets/0"
	sleep 0.5
	blocked "$writer"
	echo 10 >"$MNT/t/groups/g/offsets/0"
	released
	assert_eq "$(tail -n 1 "$MNT/t/0")" "held $LINE"
	assert_eq "$(stats_col "$MNT/t/stats" 0 first)" 10
}

@test "backpressure: raising max_bytes in config should release a held writer" {
	mq_restart -o partitions=1,segment_bytes=1024,max_bytes=2048
	fill_topic
	hold_writer "late $LINE"
	echo max_bytes=0 >>"$MNT/t/config"
	released
	assert_eq "$(tail -n 1 "$MNT/t/0")" "late $LINE"
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 21
}

@test "backpressure: a held writer killed by timeout should store nothing and leave the mount working" {
	mq_restart -o partitions=1,segment_bytes=1024,max_bytes=2048
	fill_topic
	run timeout 1 sh -c 'echo "given-up $2" >>"$1/t/publish"' _ "$MNT" "$LINE"
	assert_eq "$status" 124
	# the next writer is held in its turn; freeing space lets it in, and
	# the one that gave up never appears
	echo 10 >"$MNT/t/groups/g/offsets/0"
	echo "after $LINE" >>"$MNT/t/publish"
	assert_eq "$(tail -n 1 "$MNT/t/0")" "after $LINE"
	run grep -c given-up "$MNT/t/0"
	assert_output 0
}

@test "backpressure: retention should free space for a held writer" {
	mq_restart -o partitions=1,segment_bytes=1024,max_bytes=2048
	fill_topic
	hold_writer "after retention $LINE"
	# the retention thread runs every second: everything older than 1 ms goes
	echo retention_ms=1 >>"$MNT/t/config"
	released
	assert_eq "$(cat "$MNT/t/0")" "after retention $LINE"
}

@test "backpressure: acks that finish a whole segment should release a held writer" {
	mq_restart -o partitions=1,segment_bytes=1024,max_bytes=2048
	fill_topic
	hold_writer "acked $LINE"
	# lease the first segment's ten messages and ack nine: still held
	ids=$(head -c 1200 "$MNT/t/groups/g/batch" | cut -f1 | head -n 10)
	assert_eq "$(wc -l <<<"$ids")" 10
	head -n 9 <<<"$ids" >"$MNT/t/groups/g/ack"
	sleep 0.5
	blocked "$writer"
	# the tenth finishes segment 0: the writer gets in
	tail -n 1 <<<"$ids" >"$MNT/t/groups/g/ack"
	released
	assert_eq "$(tail -n 1 "$MNT/t/0")" "acked $LINE"
	assert_eq "$(stats_col "$MNT/t/stats" 0 first)" 10
}
