#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus from real frames.

Frames come from scripts/send-frames.py, the protocol document's reference encoder, so the seeds are
the bytes a real client sends. FuzzFrameDecoder's input format: each message is a little-endian
UInt16 length followed by that many bytes. FuzzHTTPHeaders's: Accept, Accept-Encoding and
Authorization separated by NUL bytes.
"""
import base64
import importlib.util
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("send_frames", os.path.join(here, "send-frames.py"))
wire = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wire)

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "Fuzz", "corpus")


def messages(*frames):
    return b"".join(struct.pack("<H", len(frame)) + frame for frame in frames)


hello = wire.hello_frame(4242, 10_000_000, "api", "seed/1", [("region", "eu")])
tasks = wire.declaration(1, wire.GAUGE, "swift_tasks", "Live instrumented tasks.", [("task", "default")])
created = wire.declaration(2, wire.COUNTER, "swift_tasks_created_total", "Tasks started.", [("task", "default")])
duration = wire.declaration(
    3, wire.HISTOGRAM, "swift_task_duration_seconds", "Task lifetimes.", [("task", "default")], [0.001, 0.01, 0.1, 1.0]
)
histogram = (
    wire.header(wire.HISTOGRAMS)
    + struct.pack("<H", 1)
    + struct.pack("<IH", 3, 5)
    + b"".join(struct.pack("<Q", n) for n in (1, 2, 3, 4, 7))
    + struct.pack("<d", 1.5)
)
peaks = wire.header(wire.PEAKS) + struct.pack("<H", 1) + struct.pack("<Id", 1, 12.0)

frame_seeds = {
    "hello": messages(hello),
    "session": messages(hello, wire.declare_frame([tasks, created]), wire.values_frame([(1, 3.0), (2, 10.0)])),
    "histogram": messages(hello, wire.declare_frame([duration]), histogram),
    "peaks-goodbye": messages(hello, wire.declare_frame([tasks]), peaks, wire.goodbye_frame()),
    "retire": messages(
        hello,
        wire.declare_frame([tasks, created, duration]),
        wire.values_frame([(1, 3.0), (2, 10.0)]),
        peaks,
        wire.retire_frame([1, 3]),
        wire.values_frame([(1, 4.0), (2, 11.0)]),
        wire.declare_frame([tasks]),
        wire.retire_frame([2, 9]),
    ),
    "values-before-hello": messages(wire.values_frame([(1, 1.0)]), hello),
    "bad-magic": messages(b"\x00" * 8),
    "conflict": messages(
        hello,
        wire.declare_frame([tasks]),
        wire.declare_frame([wire.declaration(9, wire.COUNTER, "swift_tasks", "Clash.", [("task", "default")])]),
    ),
}
header_seeds = {
    "prometheus": b"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\x00gzip\x00Basic "
    + base64.b64encode(b"prometheus:secret"),
    "curl": b"*/*\x00deflate, gzip;q=1.0, *;q=0.5\x00",
    "bearer": b"text/plain\x00identity\x00Bearer abc.def",
    "bad-base64": b"\x00\x00Basic ####",
    "no-colon": b"\x00\x00basic " + base64.b64encode(b"justauser"),
}

for directory, seeds in (("FuzzFrameDecoder", frame_seeds), ("FuzzHTTPHeaders", header_seeds)):
    os.makedirs(os.path.join(root, directory), exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(root, directory, name), "wb") as file:
            file.write(data)
print(f"make-fuzz-corpus: {len(frame_seeds)} frame seeds, {len(header_seeds)} header seeds in {root}")
