#!/usr/bin/env bats
# Consumer groups, offsets half (Kafka-style): mkdir T/groups/G, read
# T/groups/G/P from the committed offset, commit with offsets/P, replay by
# rewinding (SPEC section 5).

load helpers

setup() {
	mq_start
	mkdir "$MNT/t"
	G=$MNT/t/groups/g
}

@test "groups: mkdir should create a group with partitions, offsets and stats" {
	mkdir "$G"
	assert_eq "$(entries "$MNT/t/groups")" g
	assert_eq "$(entries "$G")" "0 1 2 3 offsets stats"
	assert_eq "$(entries "$G/offsets")" "0 1 2 3"
}

@test "groups: a new group should start at the earliest retained message" {
	printf 'a\nb\nc\n' >>"$MNT/t/1"
	mkdir "$G"
	for p in 0 1 2 3; do
		assert_eq "$(cat "$G/offsets/$p"; echo .)" $'0\n.' "offsets/$p"
	done
	assert_eq "$(cat "$G/1")" $'a\nb\nc'
	run cat "$G/0"
	assert_status 0
	assert_output ""
}

@test "groups: reading G/P should commit nothing" {
	printf 'a\nb\nc\n' >>"$MNT/t/1"
	mkdir "$G"
	assert_eq "$(cat "$G/1")" $'a\nb\nc'
	assert_eq "$(cat "$G/1")" $'a\nb\nc'
	assert_eq "$(cat "$G/offsets/1")" 0
	assert_eq "$(stats_col "$G/stats" 1 committed)" 0
}

@test "groups: echo N > offsets/P should commit N and G/P should start there" {
	for i in 0 1 2 3 4; do
		echo "m$i" >>"$MNT/t/1"
	done
	mkdir "$G"
	echo 3 >"$G/offsets/1"
	assert_eq "$(cat "$G/offsets/1"; echo .)" $'3\n.'
	assert_eq "$(cat "$G/1")" $'m3\nm4'
	# the other partitions are untouched
	assert_eq "$(cat "$G/offsets/0" "$G/offsets/2" "$G/offsets/3")" $'0\n0\n0'
	# a commit without a newline, and with >>, work the same
	printf 4 >"$G/offsets/1"
	assert_eq "$(cat "$G/offsets/1")" 4
	echo 2 >>"$G/offsets/1"
	assert_eq "$(cat "$G/offsets/1")" 2
	assert_eq "$(cat "$G/1")" $'m2\nm3\nm4'
}

@test "groups: echo +K > offsets/P should advance the committed offset by K" {
	for i in 0 1 2 3 4; do
		echo "m$i" >>"$MNT/t/2"
	done
	mkdir "$G"
	echo +2 >"$G/offsets/2"
	assert_eq "$(cat "$G/offsets/2")" 2
	echo +1 >"$G/offsets/2"
	assert_eq "$(cat "$G/offsets/2")" 3
	echo +0 >"$G/offsets/2"
	assert_eq "$(cat "$G/offsets/2")" 3
	assert_eq "$(cat "$G/2")" $'m3\nm4'
}

@test "groups: rewinding the offset should replay the messages" {
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	mkdir "$G"
	echo 3 >"$G/offsets/0"
	run cat "$G/0"
	assert_status 0
	assert_output ""
	echo 0 >"$G/offsets/0"
	assert_eq "$(cat "$G/0")" $'a\nb\nc'
	echo 1 >"$G/offsets/0"
	assert_eq "$(cat "$G/0")" $'b\nc'
}

@test "groups: G/P should show messages published after the committed offset" {
	printf 'a\nb\n' >>"$MNT/t/3"
	mkdir "$G"
	echo 2 >"$G/offsets/3"
	printf 'c\nd\n' >>"$MNT/t/3"
	assert_eq "$(cat "$G/3")" $'c\nd'
	assert_eq "$(stats_col "$G/stats" 3 lag)" 2
}

@test "groups: committing the end should work, past the end should fail with EINVAL" {
	printf 'a\nb\nc\n' >>"$MNT/t/1"
	mkdir "$G"
	echo 3 >"$G/offsets/1"
	assert_eq "$(cat "$G/offsets/1")" 3
	echo 1 >"$G/offsets/1"
	run fsop write "$G/offsets/1" <<<"4"
	assert_errno EINVAL
	run fsop write "$G/offsets/1" <<<"+3"
	assert_errno EINVAL
	run fsop write "$G/offsets/0" <<<"1"
	assert_errno EINVAL
	run bash -c 'echo 1000 >"$1"' _ "$G/offsets/1"
	assert_fails
	assert_eq "$(cat "$G/offsets/1")" 1
	assert_eq "$(cat "$G/offsets/0")" 0
	assert_eq "$(cat "$G/1")" $'b\nc'
}

@test "groups: a commit that is not a number should fail with EINVAL and change nothing" {
	printf 'a\nb\nc\nd\n' >>"$MNT/t/1"
	mkdir "$G"
	echo 2 >"$G/offsets/1"
	for bad in abc -1 3x 1.5 0x2 + ++1 +-1 +x "1 2" 18446744073709551616 99999999999999999999999 \
		18446744073709551615 +18446744073709551615 +18446744073709551614; do
		run fsop write "$G/offsets/1" <<<"$bad"
		assert_errno EINVAL
		assert_eq "$(cat "$G/offsets/1")" 2 "offset after writing '$bad'"
	done
	assert_eq "$(cat "$G/1")" $'c\nd'
}

@test "groups: two groups should keep independent offsets" {
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	mkdir "$G" "$MNT/t/groups/other"
	echo 2 >"$G/offsets/0"
	assert_eq "$(cat "$MNT/t/groups/other/offsets/0")" 0
	assert_eq "$(cat "$MNT/t/groups/other/0")" $'a\nb\nc'
	assert_eq "$(cat "$G/0")" c
	assert_eq "$(entries "$MNT/t/groups")" "g other"
}

@test "groups: stats should show committed, end and lag per partition" {
	printf 'a\nb\nc\nd\ne\n' >>"$MNT/t/1"
	printf 'x\ny\n' >>"$MNT/t/3"
	mkdir "$G"
	echo 2 >"$G/offsets/1"
	assert_eq "$(norm "$G/stats")" "partition committed end lag in_flight retry dead
0 0 0 0 0 0 0
1 2 5 3 0 0 0
2 0 0 0 0 0 0
3 0 2 2 0 0 0"
}

@test "groups: mkdir of an existing group should fail with EEXIST and keep its offsets" {
	printf 'a\nb\n' >>"$MNT/t/0"
	mkdir "$G"
	echo 1 >"$G/offsets/0"
	run fsop mkdir "$G"
	assert_errno EEXIST
	assert_eq "$(cat "$G/offsets/0")" 1
}

@test "groups: mkdir of a group in an unknown topic should fail with ENOENT" {
	run fsop mkdir "$MNT/nosuch/groups/g"
	assert_errno ENOENT
	[ ! -e "$MNT/nosuch" ]
}

@test "groups: rmdir should delete a group and a new one should start over" {
	printf 'a\nb\n' >>"$MNT/t/0"
	mkdir "$G" "$MNT/t/groups/other"
	echo 2 >"$G/offsets/0"
	rmdir "$G"
	[ ! -e "$G" ]
	assert_eq "$(entries "$MNT/t/groups")" other
	run fsop open-read "$G/0"
	assert_errno ENOENT
	mkdir "$G"
	assert_eq "$(cat "$G/offsets/0")" 0
	assert_eq "$(cat "$G/0")" $'a\nb'
	# the messages themselves were not touched
	assert_eq "$(cat "$MNT/t/0")" $'a\nb'
}

@test "groups: rmdir of an unknown group should fail with ENOENT" {
	run fsop rmdir "$MNT/t/groups/nosuch"
	assert_errno ENOENT
}

@test "groups: an unknown group's files should fail with ENOENT" {
	run fsop open-read "$MNT/t/groups/nosuch/0"
	assert_errno ENOENT
	run fsop open-read "$MNT/t/groups/nosuch/offsets/0"
	assert_errno ENOENT
	run fsop write "$MNT/t/groups/nosuch/offsets/0" <<<"0"
	assert_errno ENOENT
	run fsop open-read "$MNT/t/groups/nosuch/stats"
	assert_errno ENOENT
	run ls "$MNT/t/groups"
	assert_output ""
}
