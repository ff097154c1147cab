#!/usr/bin/env bash
# scripts/bench/redis_streams.sh - baseline for scripts/bench.sh: Redis
# Streams consumer-group throughput (XREADGROUP COUNT 1000 + one XACK of
# every id returned), measured by scripts/bench/redis_streams.c.
#
# usage: scripts/bench/redis_streams.sh MSGS OUTDIR
#
# Builds redis_streams into OUTDIR, starts a private redis-server on
# 127.0.0.1 at a free port (--save '' --appendonly yes --appendfsync everysec
# --daemonize no, data in a fresh directory under OUTDIR), runs the
# benchmark with 1 worker, FLUSHALL, then with 4 workers, and prints the
# program's lines on stdout:
#   redis_streams_lease_ack_msgs_per_s N
#   redis_streams_elapsed_s X
#   redis_streams_lease_ack_4w_msgs_per_s N
#   redis_streams_4w_elapsed_s X
# Diagnostics go to stderr. The redis-server it started is stopped on every
# exit (and gets SIGKILL if this script is killed outright, via setpriv's
# parent-death signal where setpriv is available); its data directory and log
# are removed. The redis_streams binary is left in OUTDIR.
#
# Exit status: 0 done; 1 failed (or bad usage); 2 redis-server, redis-cli or
# hiredis (or gcc / pkg-config) is not installed. Nothing is installed here:
# the Debian packages are redis-server (with redis-tools, for redis-cli) and
# libhiredis-dev.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$HERE/redis_streams.c
START_TIMEOUT=10 # seconds for redis-server to answer PONG

die() {
	echo "redis_streams.sh: $*" >&2
	if [ -n "${data:-}" ] && [ -s "$data/redis.log" ]; then
		echo "redis_streams.sh: last lines of the redis-server log:" >&2
		tail -n 20 "$data/redis.log" >&2
	fi
	exit 1
}

if [ $# -ne 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]] || [ -z "$2" ]; then
	echo "usage: redis_streams.sh MSGS OUTDIR   (MSGS a positive integer)" >&2
	exit 1
fi
MSGS=$1
OUTDIR=$2

missing=()
for cmd in redis-server redis-cli gcc pkg-config; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if command -v pkg-config >/dev/null 2>&1 && ! pkg-config --exists hiredis; then
	missing+=("hiredis (pkg-config)")
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "redis_streams.sh: not available: ${missing[*]}" >&2
	echo "redis_streams.sh: needs the Debian packages redis-server redis-tools libhiredis-dev gcc pkg-config" >&2
	exit 2
fi

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
BIN=$OUTDIR/redis_streams

# shellcheck disable=SC2046 # pkg-config's flags are meant to be split
gcc -O2 -Wall -Wextra -Werror "$SRC" -o "$BIN" \
	$(pkg-config --cflags --libs hiredis) -lpthread ||
	die "build of $SRC failed"

redis_pid=
data=

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	if [ -n "$redis_pid" ]; then
		kill -TERM "$redis_pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$redis_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$redis_pid" 2>/dev/null; then
			echo "redis_streams.sh: redis-server $redis_pid ignored SIGTERM; SIGKILL" >&2
			kill -KILL "$redis_pid" 2>/dev/null || true
		fi
		wait "$redis_pid" 2>/dev/null || true
		redis_pid=
	fi
	if [ -n "$data" ]; then
		rm -rf -- "$data"
		data=
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port nobody on 127.0.0.1 listens on now.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Tell redis-server to die with this shell, if this shell is SIGKILLed.
pdeath=()
if command -v setpriv >/dev/null 2>&1 && setpriv --pdeathsig KILL true 2>/dev/null; then
	pdeath=(setpriv --pdeathsig KILL --)
fi

# Start redis-server on a free port; a port taken between the check and the
# bind makes it exit at once, and another port is tried.
start_redis() {
	local try i reply
	for ((try = 0; try < 20; try++)); do
		port=$((20000 + RANDOM % 40000))
		port_free "$port" || continue
		"${pdeath[@]}" redis-server --port "$port" --bind 127.0.0.1 \
			--save '' --appendonly yes --appendfsync everysec \
			--dir "$data" --daemonize no >"$data/redis.log" 2>&1 &
		redis_pid=$!
		for ((i = 0; i < START_TIMEOUT * 10; i++)); do
			if ! kill -0 "$redis_pid" 2>/dev/null; then
				wait "$redis_pid" 2>/dev/null || true
				redis_pid=
				grep -qi 'address already in use' "$data/redis.log" && continue 2
				die "redis-server exited at start"
			fi
			reply=$(timeout 2 redis-cli -p "$port" ping 2>/dev/null) || true
			if [ "$reply" = PONG ]; then
				# It is ours, not some server that took the port first.
				reply=$(timeout 5 redis-cli -p "$port" info server |
					tr -d '\r' | sed -n 's/^process_id://p')
				[ "$reply" = "$redis_pid" ] ||
					die "port $port answers as pid '$reply', not our redis-server $redis_pid"
				return 0
			fi
			sleep 0.1
		done
		die "redis-server (pid $redis_pid, port $port) did not answer PONG in ${START_TIMEOUT}s"
	done
	die "found no free port for redis-server"
}

data=$(mktemp -d "$OUTDIR/redis-data.XXXXXX")
port=
start_redis
echo "redis_streams.sh: $(redis-server --version | cut -d' ' -f1-3), pid $redis_pid, port $port, data $data, $MSGS messages" >&2

"$BIN" "$port" "$MSGS" 1 || die "benchmark with 1 worker failed"
[ "$(timeout 60 redis-cli -p "$port" flushall)" = OK ] || die "FLUSHALL failed"
"$BIN" "$port" "$MSGS" 4 || die "benchmark with 4 workers failed"
