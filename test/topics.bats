#!/usr/bin/env bats
# Topics: mkdir creates one, rmdir deletes it with its data; the layout of a
# topic and of a consumer group (SPEC sections 1 and 3).

load helpers

@test "topics: mkdir should create a topic with publish, partitions, config, stats and groups" {
	mkdir "$MNT/orders"
	assert_eq "$(entries "$MNT/orders")" "0 1 2 3 config groups publish stats"
	run ls "$MNT/orders/groups"
	assert_status 0
	assert_output ""
}

@test "topics: ls of the mount should list every topic and nothing else" {
	run ls "$MNT"
	assert_status 0
	assert_output ""
	mkdir "$MNT/orders" "$MNT/payments" "$MNT/audit.log"
	assert_eq "$(entries "$MNT")" "audit.log orders payments"
}

@test "topics: files and directories should have the documented types and modes" {
	mkdir "$MNT/t" "$MNT/t/groups/g"
	cd "$MNT/t"
	for d in . groups groups/g groups/g/offsets; do
		[ -d "$d" ]
	done
	for f in publish 0 1 2 3 config stats groups/g/0 groups/g/3 groups/g/stats groups/g/offsets/0 groups/g/offsets/3; do
		[ -f "$f" ]
	done
	run stat -c '%a %n' . publish 0 1 2 3 config stats groups \
		groups/g groups/g/0 groups/g/1 groups/g/2 groups/g/3 groups/g/stats \
		groups/g/offsets groups/g/offsets/0 groups/g/offsets/1 groups/g/offsets/2 groups/g/offsets/3
	assert_status 0
	assert_output "755 .
200 publish
644 0
644 1
644 2
644 3
644 config
444 stats
755 groups
755 groups/g
444 groups/g/0
444 groups/g/1
444 groups/g/2
444 groups/g/3
444 groups/g/stats
755 groups/g/offsets
644 groups/g/offsets/0
644 groups/g/offsets/1
644 groups/g/offsets/2
644 groups/g/offsets/3"
}

@test "topics: every file and directory should belong to the mounting user" {
	mkdir "$MNT/t" "$MNT/t/groups/g"
	me="$(id -u):$(id -g)"
	cd "$MNT/t"
	for f in . publish 0 3 config stats groups groups/g groups/g/0 groups/g/stats groups/g/offsets groups/g/offsets/0; do
		assert_eq "$(stat -c '%u:%g' "$f")" "$me" "owner of $f"
	done
}

@test "topics: mkdir of an existing topic should fail with EEXIST and keep its messages" {
	mkdir "$MNT/t"
	echo hello >"$MNT/t/0"
	run fsop mkdir "$MNT/t"
	assert_errno EEXIST
	run mkdir "$MNT/t"
	assert_fails
	assert_eq "$(cat "$MNT/t/0")" hello
}

@test "topics: rmdir should delete the topic, its groups and its data" {
	mkdir "$MNT/t" "$MNT/keep"
	echo "payload-that-must-vanish" >"$MNT/t/0"
	echo "payload-that-must-stay" >"$MNT/keep/0"
	mkdir "$MNT/t/groups/g"
	echo 1 >"$MNT/t/groups/g/offsets/0"
	rmdir "$MNT/t"
	[ ! -e "$MNT/t" ]
	assert_eq "$(entries "$MNT")" keep
	# the data is gone from DATA_DIR too, the other topic's is not
	run grep -rqF payload-that-must-vanish "$MQ_DATA"
	assert_status 1
	run grep -rqF payload-that-must-stay "$MQ_DATA"
	assert_status 0
	# a new topic of the same name starts empty, with no groups
	mkdir "$MNT/t"
	run cat "$MNT/t/0"
	assert_status 0
	assert_output ""
	run ls "$MNT/t/groups"
	assert_status 0
	assert_output ""
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 0
	assert_eq "$(cat "$MNT/keep/0")" payload-that-must-stay
}

@test "topics: rmdir of an unknown topic should fail with ENOENT" {
	run fsop rmdir "$MNT/nosuch"
	assert_errno ENOENT
}

@test "topics: an unknown topic should not exist for stat, ls or publish" {
	run fsop stat "$MNT/nosuch"
	assert_errno ENOENT
	run ls "$MNT/nosuch"
	assert_fails
	run fsop write "$MNT/nosuch/publish" <<<"hello"
	assert_errno ENOENT
	run ls "$MNT"
	assert_output ""
}

@test "topics: mkdir inside a topic, groups/G or offsets should fail with EPERM" {
	mkdir "$MNT/t" "$MNT/t/groups/g"
	for d in "$MNT/t/foo" "$MNT/t/groups/g/x" "$MNT/t/groups/g/offsets/x"; do
		run fsop mkdir "$d"
		assert_errno EPERM
		[ ! -e "$d" ]
	done
	run mkdir "$MNT/t/foo"
	assert_fails
	assert_eq "$(entries "$MNT/t")" "0 1 2 3 config groups publish stats"
}

@test "topics: creating a new regular file anywhere should fail with EPERM" {
	mkdir "$MNT/t" "$MNT/t/groups/g"
	for f in "$MNT/file" "$MNT/t/file" "$MNT/t/4" "$MNT/t/groups/file" \
		"$MNT/t/groups/g/file" "$MNT/t/groups/g/offsets/4"; do
		run fsop creat "$f"
		assert_errno EPERM
		[ ! -e "$f" ]
	done
	run touch "$MNT/t/newfile"
	assert_fails
	run bash -c 'echo x >"$1"' _ "$MNT/t/newfile"
	assert_fails
	[ ! -e "$MNT/t/newfile" ]
	assert_eq "$(entries "$MNT/t")" "0 1 2 3 config groups publish stats"
}

@test "topics: a new topic should take its partition count from the mount option" {
	mq_restart -o partitions=2
	mkdir "$MNT/t"
	assert_eq "$(entries "$MNT/t")" "0 1 config groups publish stats"
	run fsop stat "$MNT/t/2"
	assert_errno ENOENT
	mkdir "$MNT/t/groups/g"
	assert_eq "$(entries "$MNT/t/groups/g/offsets")" "0 1"
}

@test "topics: 1024 partitions should all be listed" {
	mq_restart -o partitions=1024
	mkdir "$MNT/wide"
	run ls "$MNT/wide"
	assert_status 0
	assert_eq "${#lines[@]}" 1029 "entries in a 1024-partition topic (publish config stats groups dlq and 1024 partitions)"
	echo last >"$MNT/wide/1023"
	assert_eq "$(cat "$MNT/wide/1023")" last
	run fsop stat "$MNT/wide/1024"
	assert_errno ENOENT
	# keyed routing modulo 1024
	printf 'routed-key\tv\n' >"$MNT/wide/publish"
	assert_eq "$(cat "$MNT/wide/$(key_partition routed-key 1024)")" $'routed-key\tv'
}

@test "topics: concurrent mkdir of one name should create it once and give EEXIST to the rest" {
	for i in 1 2 3 4 5 6 7 8; do
		mq_bg "$FSOP_BIN" mkdir "$MNT/race" >"$BATS_TEST_TMPDIR/mkdir.$i"
	done
	for pid in "${MQ_BG_PIDS[@]}"; do
		wait "$pid" || : # one succeeds, the others fail: counted below
	done
	assert_eq "$(command cat "$BATS_TEST_TMPDIR"/mkdir.* | LC_ALL=C command sort | uniq -c | awk '{ print $1, $2 }' | paste -sd' ' -)" "7 EEXIST 1 OK"
	assert_eq "$(entries "$MNT")" race
	assert_eq "$(entries "$MNT/race")" "0 1 2 3 config groups publish stats"
}

@test "topics: rmdir while writers publish should delete the topic and keep the mount working" {
	mkdir "$MNT/t" "$MNT/other"
	for w in 1 2; do
		mq_bg bash -c 'for ((i = 1; i <= 100000; i++)); do printf "k%d\tw%d-%d\n" $((i % 5)) "$2" "$i" 2>/dev/null >>"$1" || exit 0; done' \
			_ "$MNT/t/publish" "$w"
	done
	has_messages() { (($(cat "$MNT"/t/[0-3] | wc -l) >= 100)); }
	wait_for 30 has_messages
	rmdir "$MNT/t"
	# the writers find the topic gone and stop
	for pid in "${MQ_BG_PIDS[@]}"; do
		wait "$pid"
	done
	[ ! -e "$MNT/t" ]
	assert_eq "$(entries "$MNT")" other
	# the mount still works, and a new topic of that name starts empty
	mkdir "$MNT/t"
	echo fresh >"$MNT/t/0"
	assert_eq "$(cat "$MNT"/t/[0-3])" fresh
	echo still >"$MNT/other/1"
	assert_eq "$(cat "$MNT/other/1")" still
}
