#!/usr/bin/env bash
# `make run`: mount ./mnt over ./data in the background and show how to use it.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p data mnt
if grep -q " $PWD/mnt fuse" /proc/mounts; then
	echo "./mnt is already mounted (make stop to unmount)"
else
	# A daemon that died leaves a dead mount behind: clear it first.
	fusermount3 -uz mnt 2>/dev/null || true
	./mqfs data mnt
	for _ in $(seq 50); do
		grep -q " $PWD/mnt fuse" /proc/mounts && break
		sleep 0.1
	done
fi
cat <<'TOUR'
mqfs is mounted on ./mnt (state in ./data). Try:

  mkdir mnt/orders                          # a topic with 4 partitions
  printf 'alice\tpaid 10\nbob\tpaid 7\n' > mnt/orders/publish
  cat mnt/orders/0 mnt/orders/1 mnt/orders/2 mnt/orders/3
  echo 'lone message' >> mnt/orders/2       # produce to one partition
  tail -f mnt/orders/2                      # follow it (Ctrl-C to stop)
  mkdir mnt/orders/groups/billing           # a consumer group at the start
  cat mnt/orders/groups/billing/2           # what billing has not processed
  echo +1 > mnt/orders/groups/billing/offsets/2   # commit one message
  cat mnt/orders/stats mnt/orders/groups/billing/stats
  echo retention_ms=3600000 >> mnt/orders/config

Stop it with: make stop   (or fusermount3 -u mnt)
TOUR
