#!/usr/bin/env bats
# Restart and crash: a clean unmount flushes everything; kill -9 of mqfs at
# any moment loses no write or commit that returned, and leaves no torn,
# duplicated or reordered message (SPEC sections 1, 4, 5 and 7).

load helpers

@test "restart: topics, messages, groups, offsets and config should come back after a clean unmount" {
	mkdir "$MNT/a" "$MNT/b" "$MNT/gone"
	echo partitions=6 >>"$MNT/b/config"
	echo max_deliveries=9 >>"$MNT/b/config"
	for i in 1 2 3 4 5; do
		echo "a-$i" >>"$MNT/a/2"
	done
	echo "b-five" >>"$MNT/b/5"
	echo doomed >"$MNT/gone/0"
	rmdir "$MNT/gone"
	mkdir "$MNT/a/groups/g1" "$MNT/a/groups/g2" "$MNT/b/groups/g3"
	echo 2 >"$MNT/a/groups/g1/offsets/2"
	echo 1 >"$MNT/b/groups/g3/offsets/5"

	mq_restart

	assert_eq "$(entries "$MNT")" "a b"
	assert_eq "$(entries "$MNT/b")" "0 1 2 3 4 5 config groups publish stats"
	assert_eq "$(cat "$MNT/a/2")" $'a-1\na-2\na-3\na-4\na-5'
	assert_eq "$(cat "$MNT/b/5")" b-five
	assert_eq "$(grep -E '^(partitions|max_deliveries)=' "$MNT/b/config")" $'partitions=6\nmax_deliveries=9'
	assert_eq "$(entries "$MNT/a/groups")" "g1 g2"
	assert_eq "$(entries "$MNT/b/groups")" g3
	assert_eq "$(cat "$MNT/a/groups/g1/offsets/2")" 2
	assert_eq "$(cat "$MNT/a/groups/g2/offsets/2")" 0
	assert_eq "$(cat "$MNT/b/groups/g3/offsets/5")" 1
	assert_eq "$(cat "$MNT/a/groups/g1/2")" $'a-3\na-4\na-5'
	# offsets go on from where they were
	assert_eq "$(stats_col "$MNT/a/stats" 2 next)" 5
	echo a-6 >>"$MNT/a/2"
	assert_eq "$(stats_col "$MNT/a/stats" 2 next)" 6
	assert_eq "$(cat "$MNT/a/groups/g1/2")" $'a-3\na-4\na-5\na-6'
}

@test "restart: fusermount3 -u should flush everything even with sync=none" {
	mq_restart -o sync=none
	mkdir "$MNT/t"
	assert_eq "$(grep '^sync=' "$MNT/t/config")" sync=none
	seq -f 'flushed %g' 1 2000 | cat >"$MNT/t/3"
	mkdir "$MNT/t/groups/g"
	echo 1500 >"$MNT/t/groups/g/offsets/3"
	mq_restart
	assert_eq "$(cat "$MNT/t/3" | cksum)" "$(seq -f 'flushed %g' 1 2000 | cksum)"
	assert_eq "$(cat "$MNT/t/groups/g/offsets/3")" 1500
}

@test "restart: kill -9 should keep every returned write in sync=none, batch and always" {
	for mode in none batch always; do
		mq_restart -o sync=$mode
		mkdir "$MNT/$mode"
		assert_eq "$(grep '^sync=' "$MNT/$mode/config")" "sync=$mode"
		for i in $(seq 1 100); do
			echo "$mode $i" >>"$MNT/$mode/1"
		done
		k=$(key_for_partition 2 4)
		for i in $(seq 1 50); do
			printf '%s\t%s %d\n' "$k" "$mode" "$i"
		done >"$MNT/$mode/publish"
		mq_kill9
		mq_start
		assert_eq "$(cat "$MNT/$mode/1")" "$(seq -f "$mode %g" 1 100)" "partition 1 of $mode"
		assert_eq "$(cat "$MNT/$mode/2")" "$(for i in $(seq 1 50); do printf '%s\t%s %d\n' "$k" "$mode" "$i"; done)" "partition 2 of $mode"
		assert_eq "$(stats_col "$MNT/$mode/stats" 1 next)" 100
	done
}

@test "restart: kill -9 should keep topics, groups, commits and config changes that returned" {
	mkdir "$MNT/t"
	printf 'a\nb\nc\n' >>"$MNT/t/0"
	mkdir "$MNT/t/groups/g"
	echo 2 >"$MNT/t/groups/g/offsets/0"
	echo max_deliveries=8 >>"$MNT/t/config"
	echo partitions=5 >>"$MNT/t/config"
	mq_kill9
	mq_start
	assert_eq "$(entries "$MNT/t")" "0 1 2 3 4 config groups publish stats"
	assert_eq "$(entries "$MNT/t/groups")" g
	assert_eq "$(cat "$MNT/t/groups/g/offsets/0")" 2
	assert_eq "$(cat "$MNT/t/groups/g/0")" c
	assert_eq "$(grep -E '^(partitions|max_deliveries)=' "$MNT/t/config")" $'partitions=5\nmax_deliveries=8'
}

@test "restart: kill -9 during a stream of commits should keep the last one that returned" {
	mkdir "$MNT/t"
	seq 1 1000 | cat >>"$MNT/t/0"
	mkdir "$MNT/t/groups/g"
	rec=$BATS_TEST_TMPDIR/committed
	: >"$rec"
	mq_bg bash -c '
		for ((i = 1; i <= 900; i++)); do
			echo "$i" 2>/dev/null >"$1" || break
			echo "$i" >>"$2"
		done' _ "$MNT/t/groups/g/offsets/0" "$rec"
	committer=$MQ_BG
	enough_commits() { (($(command wc -l <"$rec") >= 50)); }
	wait_for 60 enough_commits
	mq_kill9
	wait_gone "$committer"
	last=$(command tail -n 1 "$rec")
	mq_start
	got=$(cat "$MNT/t/groups/g/offsets/0")
	# the commit in flight at the kill may or may not have landed
	if [[ $got != "$last" && $got != "$((last + 1))" ]]; then
		echo "offset after kill -9: $got, last commit that returned: $last" >&2
		false
	fi
	assert_eq "$(cat "$MNT/t/groups/g/0" | head -n 1)" "$((got + 1))"
}

# The writers of the crash test (run with bash -c, outside bats' traps).
# Each line is a pure function of (writer, round, counter), so any line found
# in a partition can be checked for being whole and in its right place.
# writer_lines: publish, one open and one write() per line;
# writer_split: publish, one open per round, each line in two write() calls;
# writer_direct: straight into partition 3, one open and one write() per line.
# A line is recorded in $REC.wN only after the write() holding its \n returned.
WRITERS='
line_of() { printf -v line "key%d\tw%d-r%d-%06d-%s" $(($3 % 7)) "$1" "$2" "$3" "$PAD"; }
writer_lines() {
	local i line
	for ((i = 1; i <= 100000; i++)); do
		line_of "$1" "$2" "$i"
		printf "%s\n" "$line" 2>/dev/null >>"$MNT/t/publish" || break
		printf "%s\n" "$line" >>"$REC.w$1"
	done
}
writer_split() {
	local i line
	exec 7>>"$MNT/t/publish" || return 0
	for ((i = 1; i <= 100000; i++)); do
		line_of "$1" "$2" "$i"
		printf "%s" "${line:0:9}" 2>/dev/null >&7 || break
		printf "%s\n" "${line:9}" 2>/dev/null >&7 || break
		printf "%s\n" "$line" >>"$REC.w$1"
	done
	exec 7>&-
}
writer_direct() {
	local i line
	for ((i = 1; i <= 100000; i++)); do
		line_of "$1" "$2" "$i"
		printf "%s\n" "$line" 2>/dev/null >>"$MNT/t/3" || break
		printf "%s\n" "$line" >>"$REC.w$1"
	done
}'

@test "restart: kill -9 while writers publish should keep every returned line once, in order, untorn" {
	# small segments, so that kills also land around segment rolls
	mq_restart -o sync=always,segment_bytes=4096
	mkdir "$MNT/t"
	PAD=$(printf 'p%.0s' $(seq 1 60))
	REC=$BATS_TEST_TMPDIR/acked
	: >"$REC.w1"
	: >"$REC.w2"
	: >"$REC.w3"
	acked_in_round() { command cat "$REC.w1" "$REC.w2" "$REC.w3" | command grep -c -- "-r$r-"; }
	enough_acked() { (($(acked_in_round) >= target)); }
	# every sync mode must keep what returned: two rounds each of always and
	# batch, then none; the kill points vary from round to round
	modes=(always always batch batch none)
	targets=(40 150 70 200 100)
	for r in 1 2 3 4 5; do
		echo "sync=${modes[r - 1]}" >>"$MNT/t/config"
		target=${targets[r - 1]}
		for w in 1 2 3; do
			fn=(x writer_lines writer_split writer_direct)
			mq_bg bash -c "$WRITERS"'
				MNT=$1 REC=$2 PAD=$3 '"${fn[w]}"' '"$w"' "$4"' _ "$MNT" "$REC" "$PAD" "$r"
			writer[w]=$MQ_BG
		done
		wait_for 90 enough_acked
		sleep "0.0$((RANDOM % 10))" # a little further into the stream
		mq_kill9
		wait_gone "${writer[1]}" "${writer[2]}" "${writer[3]}" # each stops at its first failed write
		mq_start
	done
	echo "acked lines: $(command cat "$REC.w1" "$REC.w2" "$REC.w3" | wc -l)"

	parts=""
	for k in 0 1 2 3 4 5 6; do
		parts+="$(key_partition "key$k" 4) "
	done
	for p in 0 1 2 3; do
		cat "$MNT/t/$p" >"$BATS_TEST_TMPDIR/got.$p"
		# no gap or hole: next offset = number of messages readable
		assert_eq "$(stats_col "$MNT/t/stats" "$p" next)" "$(command wc -l <"$BATS_TEST_TMPDIR/got.$p")" "next of partition $p"
	done
	cd "$BATS_TEST_TMPDIR"

	# every line is whole, in its partition, in order per writer, and once
	run awk -v pad="$PAD" -v parts="$parts" '
		BEGIN { split(parts, kp, " ") }
		FNR == 1 { p = substr(FILENAME, 5) + 0; delete last }
		{
			if ($0 !~ ("^key[0-6]\tw[123]-r[1-5]-[0-9][0-9][0-9][0-9][0-9][0-9]-" pad "$")) {
				print "torn or foreign line in partition " p ": " $0; bad = 1; next
			}
			split($0, a, "\t"); k = substr(a[1], 4) + 0
			split(a[2], b, "-"); w = b[1]; r = substr(b[2], 2) + 0; i = b[3] + 0
			if (i % 7 != k) { print "key and counter disagree: " $0; bad = 1 }
			want = (w == "w3") ? 3 : kp[k + 1]
			if (want != p) { print "in partition " p " instead of " want ": " $0; bad = 1 }
			s = r * 1000000 + i
			if (s <= last[w]) { print "out of order in partition " p ": " $0; bad = 1 }
			last[w] = s
			if (seen[$0]++) { print "duplicate: " $0; bad = 1 }
		}
		END { exit bad }' got.0 got.1 got.2 got.3
	assert_status 0

	# every line whose write() returned is there
	command cat acked.w1 acked.w2 acked.w3 | LC_ALL=C command sort >want
	command cat got.0 got.1 got.2 got.3 | LC_ALL=C command sort >have
	run comm -23 want have
	assert_status 0
	assert_eq "$output" "" "acked lines missing after kill -9"

	# a line that is there but was never acked can only be the one in
	# flight at a kill: the next of its writer in that round, at most one
	run awk '
		FNR == NR { split($0, a, "\t"); split(a[2], b, "-"); n = b[3] + 0
			if (n > max[b[1] b[2]]) max[b[1] b[2]] = n; next }
		{ split($0, a, "\t"); split(a[2], b, "-"); id = b[1] b[2]
			if (b[3] + 0 != max[id] + 1 || extra[id]++) { print "unexpected line: " $0; bad = 1 } }
		END { exit bad }' want <(LC_ALL=C comm -13 want have)
	assert_status 0
	(($(stats_col "$MNT/t/stats" 3 segments) > 1)) # the kills did land among rolls
}

# whole_topic T: T has the full layout and a readable config.
whole_topic() {
	assert_eq "$(entries "$MNT/$1")" "0 1 2 3 config groups publish stats" "layout of $1"
	assert_eq "$(cat "$MNT/$1/config" | wc -l)" 11 "config lines of $1"
	run cat "$MNT/$1/0"
	assert_status 0
}

# whole_group T/groups/G: G has the full layout and readable offsets.
whole_group() {
	assert_eq "$(entries "$MNT/$1")" "0 1 2 3 offsets stats" "layout of $1"
	assert_eq "$(cat "$MNT/$1/offsets/0")" 0 "offsets/0 of $1"
}

@test "restart: kill -9 during mkdir and rmdir should leave every topic and group whole or gone" {
	rec=$BATS_TEST_TMPDIR/ops
	: >"$rec"
	mq_bg bash -c '
		M=$1 R=$2
		op() { echo "begin $1 $2" >>"$R"; "$1" "$M/$2" 2>/dev/null || exit 0; echo "done $1 $2" >>"$R"; }
		for ((i = 1; i <= 100000; i++)); do
			op mkdir "t$i"
			op mkdir "t$i/groups/g$i"
			if ((i % 2 == 0)); then
				op rmdir "t$((i - 1))/groups/g$((i - 1))"
				op rmdir "t$((i - 1))"
			fi
		done' _ "$MNT" "$rec"
	ops=$MQ_BG
	enough_ops() { (($(command grep -c '^done' "$rec") >= 80)); }
	wait_for 60 enough_ops
	mq_kill9
	wait_gone "$ops"
	mq_start

	# replay what returned; the op in flight may or may not have happened
	declare -A want=()
	inflight=
	while read -r what op target; do
		if [ "$what" = begin ]; then
			inflight=$target
			continue
		fi
		inflight=
		if [ "$op" = mkdir ]; then
			want[$target]=1
		else
			unset "want[$target]"
		fi
	done <"$rec"
	for target in "${!want[@]}"; do
		[ "$target" = "$inflight" ] && continue
		case $target in
		*/groups/*) whole_group "$target" ;;
		*) whole_topic "$target" ;;
		esac
	done
	# nothing else, and whatever is there is whole
	for t in $(ls "$MNT"); do
		if [[ -z ${want[$t]:-} && $t != "$inflight" ]]; then
			echo "topic $t is there but was never created or was removed" >&2
			false
		fi
		whole_topic "$t"
		for g in $(ls "$MNT/$t/groups"); do
			if [[ -z ${want[$t/groups/$g]:-} && $t/groups/$g != "$inflight" ]]; then
				echo "group $t/groups/$g is there but was never created or was removed" >&2
				false
			fi
			whole_group "$t/groups/$g"
		done
	done
	echo "topics after the kill: $(ls "$MNT" | wc -l), ops done: $(command grep -c '^done' "$rec")"
}

@test "restart: a partition of several megabytes should come back whole" {
	mkdir "$MNT/t"
	seq -f 'message %06g, long enough to make the partition several megabytes' 1 60000 | cat >>"$MNT/t/0"
	sum=$(cat "$MNT/t/0" | cksum)
	mq_restart
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 60000
	assert_eq "$(cat "$MNT/t/0" | cksum)" "$sum"
	echo after >>"$MNT/t/0"
	assert_eq "$(stats_col "$MNT/t/stats" 0 next)" 60001
	assert_eq "$(tail -n 1 "$MNT/t/0")" after
}

@test "restart: a remount with another partitions default should keep each topic's count" {
	mq_restart -o partitions=2
	mkdir "$MNT/two"
	mq_restart
	assert_eq "$(entries "$MNT/two")" "0 1 config groups publish stats"
	mkdir "$MNT/four"
	assert_eq "$(entries "$MNT/four")" "0 1 2 3 config groups publish stats"
	mq_restart -o partitions=8
	assert_eq "$(entries "$MNT/two")" "0 1 config groups publish stats"
	assert_eq "$(entries "$MNT/four")" "0 1 2 3 config groups publish stats"
}
