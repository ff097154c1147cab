#!/usr/bin/env bats
# Publish and routing: T/publish routes KEY<TAB>REST lines by XXH3_64bits(KEY)
# % N and spreads keyless lines round-robin (SPEC section 4).

load helpers

# expect_routed N KEY...: every partition of topic t holds exactly the lines
# "KEY<TAB>value of KEY" whose key routes there (computed with xxhsum), in
# the order they were published.
expect_routed() {
	local n=$1 p k
	shift
	local -a want
	for ((p = 0; p < n; p++)); do
		want[p]=""
	done
	for k in "$@"; do
		p=$(key_partition "$k" "$n")
		want[p]+="$k"$'\t'"value of $k"$'\n'
	done
	for ((p = 0; p < n; p++)); do
		assert_eq "$(cat "$MNT/t/$p"; echo .)" "${want[p]}." "partition $p of $n"
	done
}

@test "publish: keyed lines should go to partition XXH3(key) % 4" {
	mkdir "$MNT/t"
	keys=(alpha beta gamma delta epsilon zeta eta theta iota kappa lambda
		"with space" "ünïcödé" 12345 "a*b" "user:42" "x" "-" ".")
	for k in "${keys[@]}"; do
		printf '%s\tvalue of %s\n' "$k" "$k"
	done >"$MNT/t/publish"
	expect_routed 4 "${keys[@]}"
}

@test "publish: keyed lines should go to partition XXH3(key) % 7 with 7 partitions" {
	mq_restart -o partitions=7
	mkdir "$MNT/t"
	keys=()
	for i in $(seq 1 40); do
		keys+=("customer-$i")
	done
	# all lines in one write()
	printf '%s\n' "$(for k in "${keys[@]}"; do printf '%s\tvalue of %s\n' "$k" "$k"; done)" >"$MNT/t/publish"
	expect_routed 7 "${keys[@]}"
}

@test "publish: a keyed line should be stored verbatim, key and tab included" {
	mkdir "$MNT/t"
	line=$'k1\t  two  spaces\tsecond tab \\ backslash "quotes" \x7f trailing space '
	printf '%s\n' "$line" >"$MNT/t/publish"
	p=$(key_partition k1 4)
	assert_eq "$(cat "$MNT/t/$p")" "$line"
	assert_eq "$(stat -c %s "$MNT/t/$p")" "$((${#line} + 1))"
}

@test "publish: keyless lines should be spread round-robin over all partitions" {
	mkdir "$MNT/t"
	for i in $(seq 1 40); do
		echo "line $i"
	done >"$MNT/t/publish"
	for p in 0 1 2 3; do
		run cat "$MNT/t/$p"
		assert_status 0
		assert_eq "${#lines[@]}" 10 "lines in partition $p"
		first=${lines[0]#line }
		for ((j = 0; j < 10; j++)); do
			assert_eq "${lines[j]}" "line $((first + 4 * j))" "line $j of partition $p"
		done
	done
}

@test "publish: lines with an empty key should count as keyless and be spread" {
	mkdir "$MNT/t"
	for i in 1 2 3 4 5 6 7 8; do
		printf '\tno key %d\n' "$i"
	done >"$MNT/t/publish"
	for p in 0 1 2 3; do
		run cat "$MNT/t/$p"
		assert_eq "${#lines[@]}" 2 "lines in partition $p: $output"
		[[ ${lines[0]} == $'\tno key '[1-8] ]]
	done
}

@test "publish: the keyless lines of one write should stay together in one partition" {
	mkdir "$MNT/t"
	seq 1 1000 >"$MNT/t/publish" # one write() of 1000 keyless lines
	run grep -c . "$MNT/t/0" "$MNT/t/1" "$MNT/t/2" "$MNT/t/3"
	assert_eq "$(printf '%s\n' "${lines[@]}" | grep -c ':1000$')" 1 "$output"
	assert_eq "$(printf '%s\n' "${lines[@]}" | grep -c ':0$')" 3 "$output"
	assert_eq "$(cat "$MNT"/t/[0-3])" "$(seq 1 1000)"
}

@test "publish: empty lines should be skipped" {
	mkdir "$MNT/t"
	printf '\n\nk\tfirst\n\n\nk\tsecond\n\n' >"$MNT/t/publish"
	printf '\n\nplain\n\n' >>"$MNT/t/3"
	p=$(key_partition k 4)
	if [ "$p" = 3 ]; then
		assert_eq "$(cat "$MNT/t/3")" $'k\tfirst\nk\tsecond\nplain'
	else
		assert_eq "$(cat "$MNT/t/$p")" $'k\tfirst\nk\tsecond'
		assert_eq "$(cat "$MNT/t/3")" plain
	fi
	assert_eq "$(cat "$MNT"/t/[0-3] | wc -l)" 3
	run grep -c '^$' "$MNT/t/0" "$MNT/t/1" "$MNT/t/2" "$MNT/t/3"
	assert_output "$MNT/t/0:0
$MNT/t/1:0
$MNT/t/2:0
$MNT/t/3:0"
}

@test "publish: a last line without a newline should be published at close" {
	mkdir "$MNT/t"
	printf 'k\tno newline at the end' >"$MNT/t/publish"
	p=$(key_partition k 4)
	assert_eq "$(cat "$MNT/t/$p"; echo .)" $'k\tno newline at the end\n.'
	assert_eq "$(stat -c %s "$MNT/t/$p")" 24
}

@test "publish: a line split over several writes should become one message when complete" {
	mkdir "$MNT/t"
	p=$(key_partition k 4)
	exec 5>>"$MNT/t/publish"
	printf 'k\tfirst ' >&5
	printf 'half, ' >&5
	# not a whole line yet: nothing is visible in any partition
	run cat "$MNT/t/0" "$MNT/t/1" "$MNT/t/2" "$MNT/t/3"
	assert_status 0
	assert_output ""
	printf 'second half\nk\tnext' >&5
	assert_eq "$(cat "$MNT/t/$p")" $'k\tfirst half, second half'
	exec 5>&-
	assert_eq "$(cat "$MNT/t/$p")" $'k\tfirst half, second half\nk\tnext'
}

@test "publish: lines of one writer should keep their order within each partition" {
	mkdir "$MNT/t"
	for i in $(seq 1 300); do
		printf 'key%d\tmessage %d\n' $((i % 5)) "$i"
	done >"$MNT/t/publish"
	for k in 0 1 2 3 4; do
		p=$(key_partition "key$k" 4)
		want=$(for i in $(seq 1 300); do
			if ((i % 5 == k)); then
				printf 'key%d\tmessage %d\n' "$k" "$i"
			fi
		done)
		assert_eq "$(grep "^key$k"$'\t' "$MNT/t/$p")" "$want" "key$k in partition $p"
	done
	assert_eq "$(cat "$MNT"/t/[0-3] | wc -l)" 300
}

@test "publish: concurrent writers should never interleave within a line and lose nothing" {
	mkdir "$MNT/t"
	pad=$(printf 'x%.0s' $(seq 1 150))
	gen() { # gen WRITER: 400 numbered lines
		local i
		for ((i = 1; i <= 400; i++)); do
			printf 'w%d-%04d-%s\n' "$1" "$i" "$pad"
		done
	}
	# w1, w2: one write() per line; w3: cat's arbitrary chunks split lines
	# across writes; w4: the same, straight into partition 0
	mq_bg bash -c "$(declare -f gen); pad=$pad; gen 1 >'$MNT/t/publish'"
	w1=$MQ_BG
	mq_bg bash -c "$(declare -f gen); pad=$pad; gen 2 >'$MNT/t/publish'"
	w2=$MQ_BG
	mq_bg bash -c "$(declare -f gen); pad=$pad; gen 3 | cat >'$MNT/t/publish'"
	w3=$MQ_BG
	mq_bg bash -c "$(declare -f gen); pad=$pad; gen 4 | cat >>'$MNT/t/0'"
	w4=$MQ_BG
	for w in $w1 $w2 $w3 $w4; do
		wait "$w"
	done
	for p in 0 1 2 3; do
		run awk -v pad="$pad" -F- '
			$0 !~ ("^w[1-4]-[0-9][0-9][0-9][0-9]-" pad "$") { print "torn or foreign line: " $0; bad = 1; next }
			{ n = $2 + 0; if (n <= last[$1]) { print "out of order: " $0; bad = 1 } last[$1] = n }
			END { exit bad }' "$MNT/t/$p"
		assert_status 0
	done
	assert_eq "$(cat "$MNT"/t/[0-3] | wc -l)" 1600 "lines in all partitions"
	assert_eq "$(cat "$MNT"/t/[0-3] | sort -u | wc -l)" 1600 "distinct lines"
	assert_eq "$(grep -c '^w4-' "$MNT/t/0")" 400 "w4 lines in partition 0"
}

@test "publish: writing to a partition file should append there whatever the key" {
	mkdir "$MNT/t"
	k=$(key_for_partition 1 4)
	printf '%s\tdirect\n' "$k" >>"$MNT/t/2"
	echo plain >>"$MNT/t/2"
	assert_eq "$(cat "$MNT/t/2")" "$k"$'\tdirect\nplain'
	run cat "$MNT/t/0" "$MNT/t/1" "$MNT/t/3"
	assert_status 0
	assert_output ""
}

@test "publish: a line of exactly 1 MiB should be accepted by default and 1 MiB + 1 refused" {
	mkdir "$MNT/t"
	k=$(key_for_partition 0 4)
	big=$BATS_TEST_TMPDIR/big
	{ printf '%s\t' "$k"; head -c $((1048576 - ${#k} - 1)) /dev/zero | tr '\0' m; echo; } >"$big"
	run fsop write "$MNT/t/publish" <"$big"
	assert_output "OK 1048577"
	{ printf '%s\t' "$k"; head -c $((1048576 - ${#k})) /dev/zero | tr '\0' m; echo; } >"$big.2"
	# over 1 MiB the kernel splits the write(): a careful writer may first
	# see a short count, then EMSGSIZE on the retry; nothing is stored
	run fsop writeall "$MNT/t/publish" <"$big.2"
	assert_errno EMSGSIZE
	assert_eq "$(stat -c %s "$MNT/t/0")" 1048577
	assert_eq "$(cat "$MNT/t/0" | cksum)" "$(command cat "$big" | cksum)"
	assert_eq "$(stats_col "$MNT/t/stats" 0 messages)" 1
}

@test "publish: bytes other than newline (NUL, CR, 0xff) should be stored verbatim" {
	mkdir "$MNT/t"
	k=$(key_for_partition 3 4)
	printf '%s\tA\0B\r\xff\x01 z\n' "$k" >"$MNT/t/publish"
	printf 'raw\0\r\n' >>"$MNT/t/2"
	assert_eq "$(cat "$MNT/t/3" | od -An -tx1 | tr -s ' \n' ' ')" \
		"$(printf '%s\tA\0B\r\xff\x01 z\n' "$k" | od -An -tx1 | tr -s ' \n' ' ')"
	assert_eq "$(cat "$MNT/t/2" | od -An -tx1 | tr -s ' \n' ' ')" " 72 61 77 00 0d 0a "
}

@test "publish: a line with a key and an empty rest should keep its trailing tab" {
	mkdir "$MNT/t"
	printf 'lonely-key\t\n' >"$MNT/t/publish"
	p=$(key_partition lonely-key 4)
	assert_eq "$(cat "$MNT/t/$p"; echo .)" $'lonely-key\t\n.'
}

@test "publish: a write with O_NONBLOCK should publish like any other" {
	mkdir "$MNT/t"
	run fsop write-nb "$MNT/t/publish" <<<$'k\tnonblocking'
	assert_output "OK 14"
	assert_eq "$(cat "$MNT/t/$(key_partition k 4)")" $'k\tnonblocking'
}

@test "publish: ten thousand lines in one write() should all be stored in order" {
	mkdir "$MNT/t"
	seq -f 'k%g' 1 10000 | awk '{ printf "%s\tbulk %05d\n", "same-key", NR }' >"$BATS_TEST_TMPDIR/bulk"
	run fsop write "$MNT/t/publish" <"$BATS_TEST_TMPDIR/bulk"
	assert_output "OK $(command wc -c <"$BATS_TEST_TMPDIR/bulk")"
	p=$(key_partition same-key 4)
	assert_eq "$(cat "$MNT/t/$p" | cksum)" "$(command cat "$BATS_TEST_TMPDIR/bulk" | cksum)"
	assert_eq "$(stats_col "$MNT/t/stats" "$p" next)" 10000
}
