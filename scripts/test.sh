#!/usr/bin/env bash
# Every test of mqfs, as `make test` runs it (after building):
#   1. the C unit tests of core/            (build/unit/*)
#   2. the bats suite against ./mqfs        (test/*.bats)
#   3. the C unit tests under ASan+UBSan    (build/unit-asan/*)
#   4. the bats suite against ./mqfs-asan, whose sanitizer reports fail it
# Ends with "N passed, N failed", counted from the TAP lines of all four.
set -u
cd "$(dirname "$0")/.."

pass=0
fail=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Count the TAP lines of file $1; a runner that exited non-zero ($2) without
# reporting a failure (a crash, a timeout) counts as one more failure.
tally() {
	local p f
	p=$(grep -c '^ok ' "$1")
	f=$(grep -c '^not ok ' "$1")
	if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $3 exited with status $2"
		f=1
	fi
	pass=$((pass + p))
	fail=$((fail + f))
}

units() {
	local dir=$1 t rc
	for t in "$dir"/test_*; do
		[ -x "$t" ] || continue
		echo "# $t"
		timeout 600 "$t" >"$out/unit" 2>&1
		rc=$?
		cat "$out/unit"
		tally "$out/unit" "$rc" "$t"
	done
}

bats_pass() {
	local bin=$1 rc
	echo "# bats with $bin"
	MQFS_BIN="$PWD/$bin" BATS_TEST_TIMEOUT=120 timeout 2400 \
		bats --tap test/ >"$out/bats" 2>&1
	rc=$?
	cat "$out/bats"
	tally "$out/bats" "$rc" "bats ($bin)"
}

units build/unit
bats_pass mqfs
units build/unit-asan

# The sanitized daemon writes its reports to files (its stderr belongs to
# the tests); any report is a failure even when every test passed.
export ASAN_OPTIONS="log_path=$out/asan:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="log_path=$out/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/test/lsan.supp:print_suppressions=0"
bats_pass mqfs-asan
if ls "$out"/asan.* "$out"/ubsan.* >/dev/null 2>&1; then
	cat "$out"/asan.* "$out"/ubsan.* 2>/dev/null | head -100
	echo "not ok - sanitizer reports from mqfs-asan"
	fail=$((fail + 1))
else
	echo "ok - no sanitizer reports from mqfs-asan"
	pass=$((pass + 1))
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
