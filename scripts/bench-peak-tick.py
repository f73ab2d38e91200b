#!/usr/bin/env python3
"""The CPU an idle taskwatchd spends on its 100 ms tick with many gauges that have peak windows.

Each client declares GAUGES `swift_tasks` gauges, sends their values and one peak sample each (so the
daemon keeps a `swift_tasks_peak` window per gauge), then stays connected and silent. The daemon's
CPU time (utime + stime from /proc) over SECONDS of that idle is what the tick costs: it refreshes
every peak window. Given two binaries, they run alternately ROUNDS times each, side by side, and the
medians and their ratio are printed (this VM's noise is larger than one run's difference).

    scripts/bench-peak-tick.py BIN [BASELINE_BIN] [--clients 50] [--gauges 1000] [--seconds 10] [--rounds 2]
"""

import argparse
import importlib.util
import json
import os
import socket
import statistics
import struct
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("send_frames", os.path.join(HERE, "send-frames.py"))
wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire)


def peaks_frame(entries):
    """A peaks frame: laid out as a values frame, with kind PEAKS."""
    body = struct.pack("<H", len(entries)) + b"".join(struct.pack("<Id", i, v) for i, v in entries)
    return wire.header(wire.PEAKS) + body


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_cpu_percent(binary, clients, gauges, seconds):
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "ingest.sock")
        daemon = subprocess.Popen(
            [binary, "--ingest.socket", path, "--web.listen-address", "127.0.0.1:0",
             "--ingest.max-series-per-client", str(2 * gauges + 100)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(path):
                    break
                time.sleep(0.05)
            connections = []
            for c in range(clients):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(path)
                s.send(wire.hello_frame(os.getpid(), 10_000_000, f"idle{c}", "bench-peak-tick"))
                declarations = [wire.declaration(i + 1, wire.GAUGE, "swift_tasks", "", [("task", f"t{i}")])
                                for i in range(gauges)]
                for i in range(0, gauges, 500):
                    s.send(wire.declare_frame(declarations[i:i + 500]))
                for i in range(0, gauges, 2000):
                    ids = range(i + 1, min(gauges, i + 2000) + 1)
                    s.send(wire.values_frame([(j, float(j)) for j in ids]))
                    s.send(peaks_frame([(j, float(j) + 5) for j in ids]))
                connections.append(s)
            time.sleep(2)
            before = cpu_ticks(daemon.pid)
            time.sleep(seconds)
            after = cpu_ticks(daemon.pid)
            for s in connections:
                s.close()
            return (after - before) / os.sysconf("SC_CLK_TCK") / seconds * 100
        finally:
            daemon.terminate()
            daemon.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("baseline", nargs="?")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--gauges", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs = {"candidate": [], "baseline": []}
    sides = (("baseline", args.baseline), ("candidate", args.binary))
    for round_index in range(args.rounds):
        # The order alternates, so neither binary always gets the machine's later (or earlier) moment.
        for name, binary in sides if round_index % 2 == 0 else sides[::-1]:
            if binary:
                runs[name].append(idle_cpu_percent(binary, args.clients, args.gauges, args.seconds))
    result = {"clients": args.clients, "gauges_per_client": args.gauges, "seconds": args.seconds,
              "candidate_percent_of_a_core": [round(r, 2) for r in runs["candidate"]]}
    if args.baseline:
        result["baseline_percent_of_a_core"] = [round(r, 2) for r in runs["baseline"]]
        # The median of the per-round ratios: each round's two sides ran next to each other.
        ratios = [c / b for c, b in zip(runs["candidate"], runs["baseline"]) if b]
        result["round_ratios"] = [round(r, 3) for r in ratios]
        result["median_ratio"] = round(statistics.median(ratios), 3) if ratios else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
