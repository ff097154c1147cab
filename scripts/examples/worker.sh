#!/usr/bin/env bash
# worker.sh GROUP_DIR HANDLER [ARGS...]
#
# A queue worker for mqfs, one message at a time (docs/consuming.md):
#
#   scripts/examples/worker.sh mnt/orders/groups/billing ./bill.sh
#
# Takes messages from GROUP_DIR/next and runs HANDLER [ARGS...] for each,
# with the message line (verbatim, plus "\n") on its stdin and the id
# P:OFF in $MQ_ID. Exit 0 acks the message; any other exit nacks it with
# the reason "exit N", and mqfs hands it out again after a backoff, or moves
# it to T/dlq/G/ after max_deliveries failures. Run as many workers on one
# group as you like: a partition's messages still go out in order, one at
# a time.
#
# SIGTERM or SIGINT: the current message is finished (handled, then acked
# or nacked), then the worker exits 0; while waiting for a message it exits
# within WAIT seconds. `kill PID` signals the worker alone; Ctrl-C in a
# terminal also interrupts the handler (its process group), so that message
# is nacked and comes back after the backoff.
#
# Environment: WAIT (default 5) = seconds to wait for a message before
# looking at the stop flag again.
#
# Bash variables cannot hold NUL bytes: for binary messages use worker.py.
set -u

if (($# < 2)); then
	echo "usage: $0 GROUP_DIR HANDLER [ARGS...]" >&2
	exit 2
fi
Q=$1
shift
WAIT=${WAIT:-5}

stop=0
# The trap only sets a flag: bash runs it after the command in progress
# (the handler, or cat), so a message is never dropped half done.
trap 'stop=1' INT TERM

while ((!stop)); do
	# Each open of next hands out one message, leased to this worker for
	# the topic's ack_wait_ms. timeout only ends the wait: a read
	# interrupted while blocked takes nothing. (A message handed out at
	# the very instant cat is killed is leased but never seen here; it
	# comes back after ack_wait_ms, as after any lost delivery.)
	msg=$(timeout "$WAIT" cat "$Q/next")
	rc=$?
	if ((rc == 124)); then
		continue # nothing within WAIT seconds
	elif ((rc != 0)); then
		((stop)) && break
		echo "worker: cannot read $Q/next (cat exited $rc)" >&2
		exit 1
	fi
	[[ -n $msg ]] || continue

	# "P:OFF<TAB>LINE": the id is everything before the first tab, the line
	# everything after it, byte for byte (tabs, backslashes and leading
	# blanks included; $(...) only dropped the trailing newline).
	id=${msg%%$'\t'*}
	line=${msg#*$'\t'}

	if MQ_ID=$id "$@" <<<"$line"; then
		# Ack only after the handler's effect is done: a crash before
		# this line means the message is delivered again (at least once).
		# A failed ack is only reported: the lease expires and the
		# message comes back.
		echo "$id" >"$Q/ack" || echo "worker: ack $id failed" >&2
	else
		# A failed delivery: retried after a backoff, or dead-lettered.
		echo "$id exit $?" >"$Q/nack" || echo "worker: nack $id failed" >&2
	fi
done
