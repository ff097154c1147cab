#!/usr/bin/env bash
# stream.sh GROUP_DIR HANDLER [ARGS...]
#
# A streaming consumer for mqfs (docs/consuming.md): reads GROUP_DIR/batch,
# which hands out many messages per read(), and acks them in batches:
#
#   scripts/examples/stream.sh mnt/orders/groups/billing ./bill.sh
#
# HANDLER [ARGS...] runs once per message, with the line (verbatim, plus
# "\n") on stdin and the id P:OFF in $MQ_ID. Exit 0: the id joins the next
# ack write, which goes out every ACK_EVERY messages or as soon as no
# message came for PAUSE seconds. Any other exit: nacked at once, with the
# reason "exit N" (a nack starts the backoff; there is no point delaying it).
#
# SIGTERM or SIGINT: the reader is stopped, the messages it already passed
# on are handled, everything is acked, and the script exits 0 (within PAUSE
# seconds when idle). Ctrl-C in a terminal also interrupts the handler (its
# process group): that message is nacked.
#
# Environment:
#   ACK_EVERY   ids per ack write (default 100)
#   PAUSE       seconds without input that flush the acks (default 0.2)
#   READ_BYTES  read size on batch (default 16384), see below
#
# Every message a read of batch returns is leased from that moment, so all
# of them must be handled and acked within the topic's ack_wait_ms. The read
# size bounds how many are taken ahead of the handler: about READ_BYTES,
# plus what waits in the pipe (64 KiB). `cat batch` would read 1 MiB at a
# time. Bash's own `read` must not read batch directly: it reads ahead and
# seeks back, and what it read ahead is leased but never seen.
set -u

if (($# < 2)); then
	echo "usage: $0 GROUP_DIR HANDLER [ARGS...]" >&2
	exit 2
fi
Q=$1
shift
ACK_EVERY=${ACK_EVERY:-100}
PAUSE=${PAUSE:-0.2}
READ_BYTES=${READ_BYTES:-16384}

stop=0
trap 'stop=1' INT TERM

# The reader: `cat batch` with a bounded read size. It never ends by
# itself; a read blocks while nothing is available.
exec 3< <(exec dd if="$Q/batch" bs="$READ_BYTES" status=none)
reader=$!

acks=()
# One write of many "P:OFF" lines. A failed ack is reported and dropped:
# those messages come back after ack_wait_ms (at least once).
flush() {
	((${#acks[@]})) || return 0
	printf '%s\n' "${acks[@]}" >"$Q/ack" || echo "stream: ack of ${#acks[@]} ids failed" >&2
	acks=()
}

part= # the start of a line that was still arriving when read timed out
while :; do
	if ((stop)) && [[ -n $reader ]]; then
		# Stop taking messages, then handle what was already taken (it
		# is leased): the loop ends at the end of the pipe. A reader that
		# was waiting for messages takes nothing when stopped; one that
		# was waiting for room in the pipe drops what it held, and those
		# messages come back after ack_wait_ms.
		kill "$reader" 2>/dev/null
		reader=
	fi
	if IFS= read -r -t "$PAUSE" -u 3 msg; then
		msg=$part$msg
		part=
		id=${msg%%$'\t'*}  # the id ends at the first tab,
		line=${msg#*$'\t'} # the line after it is kept byte for byte
		if MQ_ID=$id "$@" <<<"$line" 3<&-; then
			acks+=("$id")
			((${#acks[@]} < ACK_EVERY)) || flush
		else
			echo "$id exit $?" >"$Q/nack" || echo "stream: nack $id failed" >&2
		fi
	elif (($? > 128)); then
		part+=$msg # read keeps what it got before the timeout
		flush      # no input for PAUSE seconds
	else
		break # end of the pipe: the reader ended (stopped, or an error)
	fi
done
flush
if ((!stop)); then
	echo "stream: reading $Q/batch ended" >&2
	exit 1
fi
