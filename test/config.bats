#!/usr/bin/env bats
# Config and stats: mount options, T/config (read, partial writes, all-or-
# nothing validation, growing partitions), T/stats (SPEC sections 1 and 3).

load helpers

DEFAULTS="partitions=4
sync=batch
max_message=1048576
retention_ms=604800000
retention_bytes=0
segment_bytes=67108864
max_bytes=0
overflow=block
max_deliveries=5
ack_wait_ms=30000
retry_backoff_ms=1000"

@test "config: a new topic should read the documented defaults, one key=value per line" {
	mkdir "$MNT/t"
	assert_eq "$(cat "$MNT/t/config"; echo .)" "$DEFAULTS
."
}

@test "config: mount options should become the settings of new topics only" {
	mkdir "$MNT/old"
	mq_restart -o partitions=2,sync=always,max_message=2048,retention_ms=60000,retention_bytes=10485760,segment_bytes=1048576,max_bytes=104857600,overflow=reject,max_deliveries=3,ack_wait_ms=1500,retry_backoff_ms=200,sync_ms=5
	mkdir "$MNT/new"
	assert_eq "$(cat "$MNT/new/config")" "partitions=2
sync=always
max_message=2048
retention_ms=60000
retention_bytes=10485760
segment_bytes=1048576
max_bytes=104857600
overflow=reject
max_deliveries=3
ack_wait_ms=1500
retry_backoff_ms=200"
	# a topic created before keeps its own settings
	assert_eq "$(cat "$MNT/old/config")" "$DEFAULTS"
	assert_eq "$(entries "$MNT/old")" "0 1 2 3 config groups publish stats"
	assert_eq "$(entries "$MNT/new")" "0 1 config groups publish stats"
}

@test "config: >> key=value should change that key and leave the others" {
	mkdir "$MNT/t"
	echo max_message=2048 >>"$MNT/t/config"
	assert_eq "$(cat "$MNT/t/config")" "${DEFAULTS/max_message=1048576/max_message=2048}"
}

@test "config: > with a subset of keys should change those keys and leave the others" {
	mkdir "$MNT/t"
	printf 'max_deliveries=7\nack_wait_ms=1234\nsync=none\n' >"$MNT/t/config"
	want=${DEFAULTS/max_deliveries=5/max_deliveries=7}
	want=${want/ack_wait_ms=30000/ack_wait_ms=1234}
	want=${want/sync=batch/sync=none}
	assert_eq "$(cat "$MNT/t/config")" "$want"
}

@test "config: writing back the whole config should succeed and change nothing" {
	mkdir "$MNT/t"
	cat "$MNT/t/config" >"$BATS_TEST_TMPDIR/saved"
	command cat "$BATS_TEST_TMPDIR/saved" >"$MNT/t/config"
	assert_eq "$(cat "$MNT/t/config")" "$DEFAULTS"
}

@test "config: every sync and overflow value and the 0 meaning unlimited should be accepted" {
	mkdir "$MNT/t"
	for kv in sync=always sync=none sync=batch overflow=reject overflow=block \
		retention_ms=0 retention_bytes=0 max_bytes=0 max_deliveries=0; do
		run fsop write "$MNT/t/config" <<<"$kv"
		assert_output "OK $((${#kv} + 1))"
		run grep -cx "$kv" "$MNT/t/config"
		assert_output 1
	done
}

@test "config: an unknown key should fail with EINVAL and apply nothing of that write" {
	mkdir "$MNT/t"
	run fsop write "$MNT/t/config" <<<$'max_deliveries=7\nbogus=1'
	assert_errno EINVAL
	run fsop write "$MNT/t/config" <<<$'bogus=1\nmax_deliveries=7'
	assert_errno EINVAL
	assert_eq "$(cat "$MNT/t/config")" "$DEFAULTS"
}

@test "config: a node option should fail with EINVAL and apply nothing" {
	mkdir "$MNT/t"
	for kv in sync_ms=10 peers=/tmp acks=all acks=leader role=leader role=follower \
		min_insync=1 isr_lag_ms=100; do
		run fsop write "$MNT/t/config" <<<$'max_deliveries=7\n'"$kv"
		assert_errno EINVAL
		assert_eq "$(cat "$MNT/t/config")" "$DEFAULTS" "config after writing $kv"
	done
}

@test "config: a bad value should fail with EINVAL and apply nothing" {
	mkdir "$MNT/t"
	for kv in partitions=0 partitions=1025 partitions=abc partitions=-1 \
		sync=sometimes sync= overflow=drop max_message=abc max_message=-1 \
		retention_ms=1.5 retention_bytes=x max_bytes=-5 max_deliveries=many \
		ack_wait_ms=10s retry_backoff_ms= segment_bytes=big max_message \
		=5 "max_message=2048 extra" 18446744073709551616 partitions=4294967297 \
		max_message=18446744073709551616 max_deliveries=1e3; do
		run fsop write "$MNT/t/config" <<<$'ack_wait_ms=1234\n'"$kv"
		assert_errno EINVAL
		assert_eq "$(cat "$MNT/t/config")" "$DEFAULTS" "config after writing '$kv'"
	done
	assert_eq "$(entries "$MNT/t")" "0 1 2 3 config groups publish stats"
}

@test "config: shrinking partitions should fail with EINVAL and keep every partition" {
	mkdir "$MNT/t"
	echo kept >"$MNT/t/3"
	run fsop write "$MNT/t/config" <<<"partitions=2"
	assert_errno EINVAL
	run fsop write "$MNT/t/config" <<<"partitions=3"
	assert_errno EINVAL
	assert_eq "$(cat "$MNT/t/config")" "$DEFAULTS"
	assert_eq "$(entries "$MNT/t")" "0 1 2 3 config groups publish stats"
	assert_eq "$(cat "$MNT/t/3")" kept
}

@test "config: growing partitions should add partition files and group offsets at once" {
	mkdir "$MNT/t" "$MNT/t/groups/g"
	echo before >"$MNT/t/3"
	echo partitions=8 >>"$MNT/t/config"
	assert_eq "$(entries "$MNT/t")" "0 1 2 3 4 5 6 7 config groups publish stats"
	assert_eq "$(grep '^partitions=' "$MNT/t/config")" partitions=8
	[ -f "$MNT/t/7" ]
	run cat "$MNT/t/7"
	assert_status 0
	assert_output ""
	echo new >"$MNT/t/7"
	assert_eq "$(cat "$MNT/t/7")" new
	assert_eq "$(cat "$MNT/t/3")" before
	assert_eq "$(entries "$MNT/t/groups/g")" "0 1 2 3 4 5 6 7 offsets stats"
	assert_eq "$(entries "$MNT/t/groups/g/offsets")" "0 1 2 3 4 5 6 7"
	assert_eq "$(cat "$MNT/t/groups/g/offsets/7")" 0
	assert_eq "$(cat "$MNT/t/groups/g/7")" new
	assert_eq "$(awk 'NR > 1 { print $1 }' "$MNT/t/stats" | paste -sd' ' -)" "0 1 2 3 4 5 6 7"
	assert_eq "$(awk 'NR > 1 { print $1 }' "$MNT/t/groups/g/stats" | paste -sd' ' -)" "0 1 2 3 4 5 6 7"
}

@test "config: publish should route over the grown partition count" {
	mkdir "$MNT/t"
	echo partitions=5 >>"$MNT/t/config"
	keys=()
	for i in $(seq 1 30); do
		keys+=("k$i")
		printf 'k%d\tv\n' "$i"
	done >"$MNT/t/publish"
	for p in 0 1 2 3 4; do
		want=""
		for k in "${keys[@]}"; do
			if [ "$(key_partition "$k" 5)" = "$p" ]; then
				want+="$k"$'\t'v$'\n'
			fi
		done
		assert_eq "$(cat "$MNT/t/$p"; echo .)" "$want." "partition $p of 5"
	done
	# keyless lines reach the new partition too
	printf 'spread %d\n' 1 2 3 4 5 6 7 8 9 10 >"$MNT/t/publish"
	for p in 0 1 2 3 4; do
		assert_eq "$(grep -c '^spread ' "$MNT/t/$p")" 2 "keyless lines in partition $p"
	done
}

@test "config: a smaller max_message should apply at once" {
	mkdir "$MNT/t"
	echo max_message=10 >>"$MNT/t/config"
	run fsop write "$MNT/t/0" <<<"0123456789"
	assert_output "OK 11"
	run fsop write "$MNT/t/0" <<<"0123456789a"
	assert_errno EMSGSIZE
	assert_eq "$(cat "$MNT/t/0")" 0123456789
}

@test "config: growing partitions while writers publish should lose and tear nothing" {
	mkdir "$MNT/t"
	for w in 1 2; do
		mq_bg bash -c 'for ((i = 1; i <= 1500; i++)); do printf "key%d\tw%d-%05d\n" $((i % 13)) "$2" "$i"; done >"$1"' \
			_ "$MNT/t/publish" "$w"
	done
	# grow in two steps while the writers run
	grown() { (($(cat "$MNT"/t/[0-3] | wc -l) >= $1)); }
	wait_for 30 grown 300
	echo partitions=6 >>"$MNT/t/config"
	wait_for 30 grown 600
	echo partitions=8 >>"$MNT/t/config"
	for pid in "${MQ_BG_PIDS[@]}"; do
		wait "$pid"
	done
	for k in $(seq 0 12); do
		allowed[k]=" $(key_partition "key$k" 4) $(key_partition "key$k" 6) $(key_partition "key$k" 8) "
	done
	for p in 0 1 2 3 4 5 6 7; do
		while IFS=$'\t' read -r key rest; do
			[[ $rest =~ ^w[12]-[0-9]{5}$ ]] || {
				echo "torn line in partition $p: $key $rest" >&2
				false
			}
			k=${key#key}
			[[ ${allowed[k]} == *" $p "* ]] || {
				echo "$key in partition $p, expected one of:${allowed[k]}" >&2
				false
			}
		done < <(cat "$MNT/t/$p")
	done
	assert_eq "$(cat "$MNT"/t/[0-7] | wc -l)" 3000
	assert_eq "$(cat "$MNT"/t/[0-7] | sort -u | wc -l)" 3000
}

@test "stats: T/stats should have a header and one row per partition" {
	mkdir "$MNT/t"
	assert_eq "$(norm "$MNT/t/stats")" "partition first next messages bytes segments max_lag
0 0 0 0 $(stats_col "$MNT/t/stats" 0 bytes) $(stats_col "$MNT/t/stats" 0 segments) 0
1 0 0 0 $(stats_col "$MNT/t/stats" 1 bytes) $(stats_col "$MNT/t/stats" 1 segments) 0
2 0 0 0 $(stats_col "$MNT/t/stats" 2 bytes) $(stats_col "$MNT/t/stats" 2 segments) 0
3 0 0 0 $(stats_col "$MNT/t/stats" 3 bytes) $(stats_col "$MNT/t/stats" 3 segments) 0"
}

@test "stats: next, messages, bytes and segments should follow what was published" {
	mkdir "$MNT/t"
	printf 'one\ntwo\nthree\n' >>"$MNT/t/2"
	echo solo >>"$MNT/t/0"
	assert_eq "$(stats_col "$MNT/t/stats" 2 first)" 0
	assert_eq "$(stats_col "$MNT/t/stats" 2 next)" 3
	assert_eq "$(stats_col "$MNT/t/stats" 2 messages)" 3
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 1
	assert_eq "$(stats_col "$MNT/t/stats" 0 messages)" 1
	assert_eq "$(stats_col "$MNT/t/stats" 1 next)" 0
	assert_eq "$(stats_col "$MNT/t/stats" 1 messages)" 0
	# bytes: at least the readable bytes, and growing with each message
	b1=$(stats_col "$MNT/t/stats" 2 bytes)
	((b1 >= $(stat -c %s "$MNT/t/2")))
	echo four >>"$MNT/t/2"
	b2=$(stats_col "$MNT/t/stats" 2 bytes)
	((b2 >= b1 + 5))
	(($(stats_col "$MNT/t/stats" 2 segments) >= 1))
}

@test "stats: max_lag should show the largest lag of any group on each partition" {
	mkdir "$MNT/t"
	printf 'a\nb\nc\nd\ne\n' >>"$MNT/t/1"
	assert_eq "$(stats_col "$MNT/t/stats" 1 max_lag)" 0
	mkdir "$MNT/t/groups/g1" "$MNT/t/groups/g2"
	assert_eq "$(stats_col "$MNT/t/stats" 1 max_lag)" 5
	echo 4 >"$MNT/t/groups/g1/offsets/1"
	assert_eq "$(stats_col "$MNT/t/stats" 1 max_lag)" 5
	echo 3 >"$MNT/t/groups/g2/offsets/1"
	assert_eq "$(stats_col "$MNT/t/stats" 1 max_lag)" 2
	echo 5 >"$MNT/t/groups/g1/offsets/1"
	echo 5 >"$MNT/t/groups/g2/offsets/1"
	assert_eq "$(stats_col "$MNT/t/stats" 1 max_lag)" 0
	assert_eq "$(stats_col "$MNT/t/stats" 0 max_lag)" 0
}

# ---------------------------------------------------------------- mount options

@test "mount: an unknown option should refuse to mount, saying why" {
	refuse no_such_option=1 no_such_option
}

@test "mount: an out-of-range or malformed value should refuse to mount, saying why" {
	refuse partitions=0 partitions
	refuse partitions=1025 partitions
	refuse partitions=four partitions
	refuse partitions=4294967297 partitions
	refuse sync=sometimes sync
	refuse overflow=drop overflow
	refuse max_message=big max_message
	refuse retention_ms=-5 retention_ms
	refuse max_deliveries=x max_deliveries
	refuse sync_ms=soon sync_ms
	refuse acks=some acks
	refuse role=boss role
	refuse min_insync=x min_insync
}
