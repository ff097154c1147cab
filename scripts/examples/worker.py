#!/usr/bin/env python3
"""worker.py GROUP_DIR [HANDLER [ARGS...]]: an mqfs queue worker in plain file I/O.

    scripts/examples/worker.py mnt/orders/groups/billing ./bill.sh

Takes messages from GROUP_DIR/next one at a time and passes each to
handle() below. By default handle() runs HANDLER [ARGS...] with the message
line (verbatim, plus "\\n") on its stdin and the id P:OFF in $MQ_ID, and
exit 0 means success; edit handle() to process messages in Python instead
(then HANDLER is not needed). Success writes the id to GROUP_DIR/ack; an
exception writes "id reason" to GROUP_DIR/nack, and mqfs hands the message
out again after a backoff, or moves it to T/dlq/G/ after max_deliveries
failures. See docs/consuming.md.

SIGTERM or SIGINT: the current message is finished, then the worker exits 0
(within WAIT seconds, default 1, when it is waiting for a message). Ctrl-C
in a terminal also interrupts a HANDLER command (its process group): that
message is nacked and comes back after the backoff.

Standard library only: the queue is nothing but files to open, poll,
read and write.
"""
import os
import select
import signal
import subprocess
import sys

WAIT = float(os.environ.get("WAIT", "1"))
COMMAND = sys.argv[2:]


def run_command(msg_id, line):
    """Run the HANDLER command with the line on stdin and the id in $MQ_ID."""
    r = subprocess.run(COMMAND, input=line + b"\n",
                       env=dict(os.environ, MQ_ID=msg_id))
    if r.returncode > 0:
        raise RuntimeError(f"exit {r.returncode}")
    if r.returncode < 0:
        raise RuntimeError(f"signal {-r.returncode}")


# handle(msg_id, line) processes one message (line: bytes, without the
# newline): return to ack it, raise to nack it (the exception text is the
# reason). Replace it with your own function to work in Python, e.g.
#
#     def handle(msg_id, line):
#         order = json.loads(line)
#         ...
#
# Make it idempotent: after a crash or an expired lease the same msg_id can
# come again (docs/consuming.md, "Delivery").
handle = run_command


def take(q):
    """The next message as (id, line), or None if none came within WAIT.

    Each open of next hands out one message; the lease is taken by the
    first read(), not by open(). So poll first (it reports a message without
    taking it) and read with O_NONBLOCK: if another worker was faster the
    read says EAGAIN and nothing is lost. A blocking read would work as
    well, but could not be given up cleanly when we are told to stop.
    """
    fd = os.open(os.path.join(q, "next"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not select.select([fd], [], [], WAIT)[0]:
            return None
        data = b""
        while True:  # a message longer than one read continues in the next
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                return None  # another worker took it first
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    # "P:OFF<TAB>LINE\n": the id ends at the first tab; the line is kept
    # byte for byte (tabs, backslashes, leading blanks, any encoding).
    msg_id, _, line = data.partition(b"\t")
    return msg_id.decode(), line[:-1] if line.endswith(b"\n") else line


def write_line(path, text):
    """One write() of one line to ack or nack; errors are reported, not fatal:
    a message whose ack is lost comes back after ack_wait_ms."""
    try:
        with open(path, "w") as f:
            f.write(text + "\n")
    except OSError as e:
        print(f"worker: {path}: {text}: {e}", file=sys.stderr)


def main():
    if len(sys.argv) < 2 or (handle is run_command and not COMMAND):
        sys.exit(f"usage: {sys.argv[0]} GROUP_DIR HANDLER [ARGS...]"
                 " (or edit handle() and leave HANDLER out)")
    q = sys.argv[1]

    stop = False

    def on_signal(signum, frame):
        # Only a flag: the message in hand is handled and acked first.
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    while not stop:
        msg = take(q)
        if msg is None:
            continue
        msg_id, line = msg
        try:
            handle(msg_id, line)
        except Exception as e:
            # One line (a newline would start a malformed second one);
            # mqfs keeps the first 1024 bytes.
            reason = " ".join(str(e).split()) or type(e).__name__
            write_line(os.path.join(q, "nack"), f"{msg_id} {reason}")
        else:
            # Ack after the effect is done: a crash before this line means
            # the message is delivered again (at least once).
            write_line(os.path.join(q, "ack"), msg_id)


if __name__ == "__main__":
    main()
