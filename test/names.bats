#!/usr/bin/env bats
# Names and bad input: topic/group name rules (SPEC section 2) and the errno
# every kind of bad input gets, changing nothing (SPEC section 7).

load helpers

LONG200=$(printf 'n%.0s' $(seq 1 200))
LONG201=${LONG200}x
LONG300=${LONG200}$(printf 'm%.0s' $(seq 1 100)) # FUSE passes names up to 1024 bytes

# Names the daemon must refuse. ".", ".." and "a/b" are not here: the kernel
# answers those itself before mqfs sees them.
BAD_NAMES=(".hidden" "..x" "a b" "a:b" "a*b" "a+b" "a@b" "a%2fb" 'a\b' "é"
	$'a\tb' $'a\nb' $'\x01x' "$LONG201" "$LONG300")

@test "names: topic names of [A-Za-z0-9._-] up to 200 bytes should be accepted" {
	for n in a Z 0 a.b a..b a-b a_b -lead _lead trail. A.b-C_9 "$LONG200"; do
		mkdir "$MNT/$n"
		[ -d "$MNT/$n" ]
	done
	assert_eq "$(entries "$MNT")" "$(printf '%s\n' a Z 0 a.b a..b a-b a_b -lead _lead trail. A.b-C_9 "$LONG200" | LC_ALL=C sort | paste -sd' ' -)"
	echo hello >"$MNT/$LONG200/0"
	assert_eq "$(cat "$MNT/$LONG200/0")" hello
}

@test "names: group names of [A-Za-z0-9._-] up to 200 bytes should be accepted" {
	mkdir "$MNT/t"
	for n in g G9 x.y -g _g "$LONG200"; do
		mkdir "$MNT/t/groups/$n"
		assert_eq "$(cat "$MNT/t/groups/$n/offsets/0")" 0
	done
}

@test "names: invalid topic names should fail with EINVAL and create nothing" {
	for n in "${BAD_NAMES[@]}"; do
		run fsop mkdir "$MNT/$n"
		assert_errno EINVAL
		[ ! -e "$MNT/$n" ]
	done
	run ls -A "$MNT"
	assert_status 0
	assert_eq "$(printf '%s\n' "${lines[@]}" | command grep -vx '\.mq')" "" "entries left in the mount"
	# no trace of them in DATA_DIR either
	run find "$MQ_DATA" \( -name '*a b*' -o -name '*hidden*' -o -name '*a:b*' -o -name "$LONG201*" \)
	assert_status 0
	assert_output ""
}

@test "names: invalid group names should fail with EINVAL and create nothing" {
	mkdir "$MNT/t"
	for n in "${BAD_NAMES[@]}"; do
		run fsop mkdir "$MNT/t/groups/$n"
		assert_errno EINVAL
		[ ! -e "$MNT/t/groups/$n" ]
	done
	run ls -A "$MNT/t/groups"
	assert_status 0
	assert_output ""
}

@test "bad input: opening a read-only file for writing should fail with EACCES" {
	mkdir "$MNT/t" "$MNT/t/groups/g"
	echo m >"$MNT/t/0"
	before=$(cat "$MNT/t/stats")
	for f in "$MNT/t/stats" "$MNT/t/groups/g/0" "$MNT/t/groups/g/stats"; do
		run fsop open-write "$f"
		assert_errno EACCES
		run fsop open-rdwr "$f"
		assert_errno EACCES
		run bash -c 'echo x >"$1"' _ "$f"
		assert_fails
	done
	assert_eq "$(cat "$MNT/t/stats")" "$before"
	assert_eq "$(cat "$MNT/t/groups/g/0")" m
}

@test "bad input: opening publish for reading should fail with EACCES" {
	mkdir "$MNT/t"
	run fsop open-read "$MNT/t/publish"
	assert_errno EACCES
	run fsop open-rdwr "$MNT/t/publish"
	assert_errno EACCES
	run cat "$MNT/t/publish"
	assert_fails
}

@test "bad input: an unknown topic, group or partition should fail with ENOENT" {
	mkdir "$MNT/t"
	run fsop write "$MNT/nosuch/publish" <<<"x"
	assert_errno ENOENT
	run fsop open-read "$MNT/nosuch/0"
	assert_errno ENOENT
	run fsop write "$MNT/t/9" <<<"x"
	assert_errno ENOENT
	run fsop open-read "$MNT/t/groups/nosuch/1"
	assert_errno ENOENT
	run fsop write "$MNT/t/groups/nosuch/offsets/1" <<<"0"
	assert_errno ENOENT
	assert_eq "$(entries "$MNT")" t
}

@test "bad input: a line of max_message bytes should be accepted and one byte more refused with EMSGSIZE" {
	mq_restart -o max_message=16
	mkdir "$MNT/t"
	fits=$'k\t'"abcdefghijklmn"  # 16 bytes
	long=$'k\t'"abcdefghijklmno" # 17 bytes
	run fsop write "$MNT/t/publish" <<<"$fits"
	assert_output "OK 17"
	run fsop write "$MNT/t/publish" <<<"$long"
	assert_errno EMSGSIZE
	run fsop write "$MNT/t/1" <<<"$long"
	assert_errno EMSGSIZE
	run bash -c 'printf "%s\n" "$2" >"$1"' _ "$MNT/t/publish" "$long"
	assert_fails
	p=$(key_partition k 4)
	assert_eq "$(cat "$MNT/t/$p")" "$fits"
	assert_eq "$(cat "$MNT"/t/[0-3] | wc -l)" 1
}

@test "bad input: lines before a long line should be kept, with a short write, then EMSGSIZE" {
	mq_restart -o max_message=16
	mkdir "$MNT/t"
	# writeall retries after a short count, as a careful writer does
	run fsop writeall "$MNT/t/publish" <<<$'k\tone\nk\ttwo\nk\tthis line is far too long\nk\tthree'
	assert_output "OK 12
EMSGSIZE"
	p=$(key_partition k 4)
	assert_eq "$(cat "$MNT/t/$p")" $'k\tone\nk\ttwo'
	run grep -c long "$MNT/t/0" "$MNT/t/1" "$MNT/t/2" "$MNT/t/3"
	assert_output "$MNT/t/0:0
$MNT/t/1:0
$MNT/t/2:0
$MNT/t/3:0"
}

@test "bad input: after EMSGSIZE the open file should refuse further writes until reopened" {
	mq_restart -o max_message=16
	mkdir "$MNT/t"
	run fsop writes "$MNT/t/publish" $'k\tok1\n' $'k\tthe start of a long line' $'...its end\nk\tok2\n'
	assert_output "OK 6
EMSGSIZE
EMSGSIZE"
	p=$(key_partition k 4)
	assert_eq "$(cat "$MNT/t/$p")" $'k\tok1'
	# a new open starts clean
	echo $'k\tok3' >"$MNT/t/publish"
	assert_eq "$(cat "$MNT/t/$p")" $'k\tok1\nk\tok3'
	assert_eq "$(cat "$MNT"/t/[0-3] | wc -l)" 2
}

@test "bad input: 100 MB without a newline should get EMSGSIZE while memory stays bounded" {
	# a small ASan quarantine, so freed buffers are not counted as growth
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16" mq_restart
	mkdir "$MNT/t"
	echo warm >"$MNT/t/0"
	base=$(rss_kb VmRSS)
	run fsop spew "$MNT/t/publish" 104857600 1048576
	[[ $output == *EMSGSIZE=* ]] || {
		echo "no EMSGSIZE for a 100 MB line: $output" >&2
		false
	}
	peak=$(rss_kb VmHWM)
	echo "mqfs VmRSS before: ${base} kB, VmHWM after: ${peak} kB"
	((peak - base < 48 * 1024))
	if ! command grep -qa __asan_init "$MQFS_BIN"; then
		((peak < 64 * 1024)) # without ASan's own overhead
	fi
	# nothing of it was stored, and the mount still works
	assert_eq "$(cat "$MNT"/t/[0-3] | wc -c)" 5
	printf 'k\tafter\n' >"$MNT/t/publish"
	assert_eq "$(cat "$MNT/t/$(key_partition k 4)" | tail -n 1)" $'k\tafter'
}

@test "names: names that look like the layout should be ordinary topics and groups" {
	for n in topics groups publish config stats offsets parts lock tmp; do
		mkdir "$MNT/$n" "$MNT/$n/groups/$n"
		echo "in $n" >"$MNT/$n/1"
		assert_eq "$(cat "$MNT/$n/groups/$n/1")" "in $n"
	done
	assert_eq "$(entries "$MNT")" "config groups lock offsets parts publish stats tmp topics"
	assert_eq "$(entries "$MNT/stats/groups")" stats
}

@test "names: 200-byte topic and group names should survive a restart" {
	mkdir "$MNT/$LONG200" "$MNT/$LONG200/groups/$LONG200"
	echo kept >"$MNT/$LONG200/2"
	echo 1 >"$MNT/$LONG200/groups/$LONG200/offsets/2"
	mq_restart
	assert_eq "$(entries "$MNT")" "$LONG200"
	assert_eq "$(cat "$MNT/$LONG200/2")" kept
	assert_eq "$(cat "$MNT/$LONG200/groups/$LONG200/offsets/2")" 1
}
