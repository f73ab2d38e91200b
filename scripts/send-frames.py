#!/usr/bin/env python3
"""Reference sender for the TaskWatch ingest protocol, written from docs/protocol.md alone.

Connects to taskwatchd, says hello, declares the gauge swift_tasks{task="default"} and the counter
swift_tasks_created_total{task="default"}, sends their values, optionally keeps reporting for a while,
then says goodbye. With --hex it prints the frames as hex, one per line, instead of connecting.

Examples:
    scripts/send-frames.py --tasks 3 --created 10
    scripts/send-frames.py --tasks 3 --created 10 --hold 30
    scripts/send-frames.py --hex --pid 4242 --tasks 3 --created 10
"""

import argparse
import os
import socket
import struct
import sys
import time

MAGIC = 0x48435754
VERSION = 1
MAX_FRAME = 65_536

HELLO, DECLARE, VALUES, HISTOGRAMS, PEAKS, GOODBYE, RETIRE = 1, 2, 3, 4, 5, 6, 7
COUNTER, GAUGE, HISTOGRAM = 1, 2, 3

TASKS_ID = 1
CREATED_ID = 2


def header(kind):
    return struct.pack("<IBBH", MAGIC, VERSION, kind, 0)


def string(text, limit):
    data = text.encode("utf-8")
    if len(data) > limit:
        raise ValueError(f"{text!r} is longer than {limit} bytes")
    return struct.pack("<H", len(data)) + data


def labels(pairs):
    if len(pairs) > 32:
        raise ValueError("at most 32 labels")
    body = struct.pack("<H", len(pairs))
    for name, value in pairs:
        body += string(name, 256) + string(value, 4096)
    return body


def hello_frame(pid, interval_ns, process, client_version, hello_labels=()):
    return (
        header(HELLO)
        + struct.pack("<IQ", pid, interval_ns)
        + string(process, 4096)
        + string(client_version, 4096)
        + labels(list(hello_labels))
    )


def declaration(series_id, series_type, name, help_text, series_labels=(), bounds=()):
    return (
        struct.pack("<IB", series_id, series_type)
        + string(name, 256)
        + string(help_text, 4096)
        + labels(list(series_labels))
        + struct.pack("<H", len(bounds))
        + b"".join(struct.pack("<d", bound) for bound in bounds)
    )


def declare_frame(declarations):
    return header(DECLARE) + struct.pack("<H", len(declarations)) + b"".join(declarations)


def values_frame(entries):
    return (
        header(VALUES)
        + struct.pack("<H", len(entries))
        + b"".join(struct.pack("<Id", series_id, value) for series_id, value in entries)
    )


def retire_frame(ids):
    """Series ids no longer reported: the daemon hides them and forgets their ids."""
    return header(RETIRE) + struct.pack("<H", len(ids)) + b"".join(struct.pack("<I", i) for i in ids)


def goodbye_frame():
    return header(GOODBYE)


def default_socket_path():
    explicit = os.environ.get("TASKWATCH_SOCKET", "")
    if explicit:
        return explicit
    uid = os.getuid()
    if uid == 0:
        return "/run/taskwatch/ingest.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        return runtime + "/taskwatch/ingest.sock"
    return f"/tmp/taskwatch-{uid}/ingest.sock"


def frames(args):
    task = [("task", "default")]
    yield hello_frame(args.pid, args.interval_ms * 1_000_000, args.process, "send-frames.py/1")
    yield declare_frame(
        [
            declaration(TASKS_ID, GAUGE, "swift_tasks", "Live instrumented tasks now.", task),
            declaration(CREATED_ID, COUNTER, "swift_tasks_created_total", "Tasks started.", task),
        ]
    )
    yield values_frame([(TASKS_ID, args.tasks), (CREATED_ID, args.created)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", default=None, help="socket path (default: as taskwatchd chooses)")
    parser.add_argument("--process", default="send-frames", help="the process label")
    parser.add_argument("--pid", type=int, default=os.getpid(), help="pid claimed in the hello")
    parser.add_argument("--interval-ms", type=int, default=1000, help="report interval while holding")
    parser.add_argument("--tasks", type=float, default=1.0, help='value of swift_tasks{task="default"}')
    parser.add_argument("--created", type=float, default=1.0, help="value of swift_tasks_created_total")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to keep reporting before goodbye")
    parser.add_argument("--no-goodbye", action="store_true", help="close without a goodbye frame")
    parser.add_argument("--hex", action="store_true", help="print frames as hex lines instead of sending")
    args = parser.parse_args()

    outgoing = list(frames(args))
    if not args.no_goodbye:
        outgoing.append(goodbye_frame())
    for frame in outgoing:
        assert len(frame) <= MAX_FRAME

    if args.hex:
        for frame in outgoing:
            print(frame.hex())
        return 0

    path = args.socket or default_socket_path()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        try:
            connection.connect(path)
        except OSError as error:
            print(f"send-frames.py: cannot connect to {path}: {error.strerror}", file=sys.stderr)
            return 1
        body, goodbye = (outgoing[:-1], outgoing[-1:]) if not args.no_goodbye else (outgoing, [])
        for frame in body:
            connection.send(frame)
        # Values are absolute: re-sending the same totals is how a quiet sender stays visibly alive.
        deadline = time.monotonic() + args.hold
        while time.monotonic() < deadline:
            time.sleep(min(args.interval_ms / 1000, max(0.0, deadline - time.monotonic())))
            connection.send(values_frame([(TASKS_ID, args.tasks), (CREATED_ID, args.created)]))
        for frame in goodbye:
            connection.send(frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
