#!/usr/bin/env python3
"""Helpers for scripts/bench.sh: feeding the peers, the freshness probe, and the final report.

    peers.py pushgw URL N                     PUT N gauge series to a Pushgateway, 10,000 per group
    peers.py statsd-gauges HOST PORT N        send N statsd gauges over UDP, paced so none is lost
    peers.py statsd-blast HOST PORT SECONDS SERIES
                                              statsd counter lines as fast as possible; prints JSON
    peers.py sum URL SUBSTRING                sum and count of the samples whose line contains SUBSTRING
    peers.py fresh SOCKET URL REPS            burst-to-visibility latency of taskwatchd; prints JSON
    peers.py report RESULTS_DIR               merge the scenario files into latest.json, print the table
"""

import json
import os
import socket
import statistics
import struct
import sys
import time
import urllib.request

GROUP = 10_000


def series_value(i):
    # Same values the C blaster declares: half integers, half fractions.
    return i * 0.5


def fmt(value):
    return str(int(value)) if value == int(value) else repr(value)


def pushgw(url, n):
    for group, first in enumerate(range(0, n, GROUP)):
        lines = ["# TYPE bench_value gauge\n"]
        for i in range(first, min(n, first + GROUP)):
            lines.append('bench_value{series="s%05d"} %s\n' % (i - first, fmt(series_value(i - first))))
        body = "".join(lines).encode()
        request = urllib.request.Request(
            "%s/metrics/job/bench/instance/g%d" % (url, group), data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()


def statsd_gauges(host, port, n):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packet, sent = [], 0
    for i in range(n):
        packet.append("bench_value.s%06d:%s|g" % (i, fmt(series_value(i % GROUP))))
        if len(packet) == 50 or i == n - 1:
            sock.sendto("\n".join(packet).encode(), (host, port))
            packet = []
            sent += 1
            if sent % 20 == 0:
                time.sleep(0.002)  # pacing: collectd's statsd reader drops what its socket buffer cannot hold


def statsd_blast(host, port, seconds, series):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    per_packet = 100
    packets = []
    for first in range(0, series, per_packet):
        names = range(first, min(series, first + per_packet))
        packets.append(("\n".join("bench_c.s%05d:1|c" % i for i in names)).encode())
    counts = [min(series, first + per_packet) - first for first in range(0, series, per_packet)]
    lines = 0
    start = time.monotonic()
    end = start + seconds
    index = 0
    while True:
        for _ in range(64):
            sock.sendto(packets[index], (host, port))
            lines += counts[index]
            index = (index + 1) % len(packets)
        if time.monotonic() >= end:
            break
    elapsed = time.monotonic() - start
    print(json.dumps({"lines_sent": lines, "seconds": round(elapsed, 3), "lines_per_s": round(lines / elapsed)}))


def scrape_sum(url, substring):
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read().decode()
    total, count = 0.0, 0
    for line in body.splitlines():
        if line.startswith("#") or substring not in line:
            continue
        # The value follows the labels; collectd appends a timestamp after it.
        total += float(line.rsplit("}", 1)[1].split()[0])
        count += 1
    print(json.dumps({"sum": total, "count": count, "bytes": len(body)}))


def fresh(path, url, reps):
    """Sends a burst of values with a new marker value, then polls /metrics until the marker shows."""
    def header(kind):
        return struct.pack("<IBBH", 0x48435754, 1, kind, 0)

    def string(text):
        data = text.encode()
        return struct.pack("<H", len(data)) + data

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(path)
    sock.send(header(1) + struct.pack("<IQ", os.getpid(), 10_000_000) + string("fresh") + string("bench")
              + struct.pack("<H", 0))
    declarations = b"".join(
        struct.pack("<IB", i + 1, 2) + string("bench_fresh") + string("Freshness probe.") + struct.pack("<H", 1)
        + string("series") + string("f%02d" % i) + struct.pack("<H", 0) for i in range(64))
    sock.send(header(2) + struct.pack("<H", 64) + declarations)
    import http.client
    host, port = url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    samples = []
    for rep in range(reps):
        marker = 1000 + rep
        burst = header(3) + struct.pack("<H", 64) + b"".join(struct.pack("<Id", i + 1, marker) for i in range(64))
        needle = ('bench_fresh{process="fresh",pid="%d",series="f63"} %d\n' % (os.getpid(), marker)).encode()
        start = time.perf_counter()
        sock.send(burst)
        deadline = start + 2
        while time.perf_counter() < deadline:
            connection.request("GET", "/metrics")
            body = connection.getresponse().read()
            if needle in body:
                samples.append((time.perf_counter() - start) * 1000)
                break
        time.sleep(0.01)
    samples.sort()
    print(json.dumps({
        "reps": reps, "seen": len(samples),
        "median_ms": round(statistics.median(samples), 3) if samples else None,
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3) if samples else None,
    }))


def load(directory, name):
    path = os.path.join(directory, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def report(directory):
    results = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json") and name not in ("latest.json",):
            results[name[:-5]] = load(directory, name[:-5])
    meta = results.pop("meta", {})
    rows = []

    def get(name, *keys):
        value = results.get(name)
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    def ratio(a, b):
        return "%.2f" % (a / b) if a and b else "-"

    def num(value, digits=1):
        if value is None:
            return "-"
        if isinstance(value, float) and value != int(value):
            return "%.*f" % (digits, value)
        return "{:,}".format(int(value))

    goals = {}
    # Ingest.
    for k in (1, 64):
        ours = get("ingest_taskwatchd_%d" % k, "updates_per_s")
        frames = get("ingest_taskwatchd_%d" % k, "frames_per_s")
        sink = get("ingest_sink_%d" % k, "messages_per_s")
        cpu = get("ingest_taskwatchd_%d" % k, "cpu_seconds_per_million_updates")
        rows.append(("ingest %d sender%s: taskwatchd updates/s (4 per frame)" % (k, "" if k == 1 else "s"),
                     num(ours), "frames/s %s; CPU s per M updates %s" % (num(frames), num(cpu, 3))))
        # The goal is the median over rounds in which the sink and taskwatchd took turns (bench.sh); the
        # last round's pair of figures is shown beside it.
        rounds = get("ingest_vs_sink_%d" % k, "ratios")
        shown = "taskwatchd frames/s ÷ sink = %s (last round)" % ratio(frames, sink)
        if rounds:
            shown += "; median of %d alternating rounds %.2f (%s)" % (
                len(rounds), get("ingest_vs_sink_%d" % k, "median_ratio"), ", ".join("%.2f" % r for r in rounds))
        rows.append(("  raw C sink messages/s, same senders", num(sink), shown))
        if rounds:
            goals["ingest_%d_vs_raw_ceiling_ge_0.5" % k] = round(get("ingest_vs_sink_%d" % k, "median_ratio"), 3)
        elif frames and sink:
            goals["ingest_%d_vs_raw_ceiling_ge_0.5" % k] = round(frames / sink, 3)
    collectd = results.get("ingest_collectd")
    if collectd:
        rows.append(("collectd statsd lines/s received (loss %)", num(collectd.get("lines_per_s")),
                     "loss %s%%; CPU s per M lines %s" % (num(collectd.get("loss_percent"), 2),
                                                        num(collectd.get("cpu_seconds_per_million_updates"), 3))))
        ours_core = get("ingest_taskwatchd_64", "updates_per_cpu_second")
        theirs_core = collectd.get("lines_per_cpu_second")
        rows.append(("updates per CPU-second: taskwatchd (64 senders) vs collectd", num(ours_core),
                     "collectd %s; ratio %s" % (num(theirs_core), ratio(ours_core, theirs_core))))
        if ours_core and theirs_core:
            goals["ingest_per_core_vs_collectd_ge_5"] = round(ours_core / theirs_core, 2)
        batched = results.get("ingest_taskwatchd_batched") or {}
        batched_core = batched.get("updates_per_cpu_second")
        if batched_core:
            lossless = batched.get("daemon_frames_received", 0) >= batched.get("frames", 0)
            rows.append(("  same, 100 updates per frame (collectd's batching): taskwatchd", num(batched_core),
                         "ratio %s; %s" % (ratio(batched_core, theirs_core),
                                           "every frame received" if lossless else "frames missing")))
            if theirs_core:
                goals["ingest_per_core_batched_vs_collectd_ge_5"] = round(batched_core / theirs_core, 2)
    # Scrape.
    for n in ("10k", "100k", "1m"):
        for encoding in ("plain", "gzip"):
            ours = get("scrape_taskwatchd_%s" % n, encoding)
            if not ours:
                continue
            push = get("scrape_pushgateway_%s" % n, encoding) or {}
            coll = get("scrape_collectd_%s" % n, encoding) or {}
            rows.append(("scrape %s %s: taskwatchd ms median/p99 (bytes)" % (n, encoding),
                         "%.2f / %.2f (%s)" % (ours["median_ms"], ours["p99_ms"], num(ours["bytes"])),
                         "pushgateway %s ms (ratio %s); collectd %s ms (%s series)" % (
                             num(push.get("median_ms"), 2), ratio(ours["median_ms"], push.get("median_ms")),
                             num(coll.get("median_ms"), 2), num(get("scrape_collectd_%s" % n, "series_held")))))
        # The goal is judged by the alternating blocks when the run has them (bench.sh,
        # interleaved_ratios); the ratio of the two separate series of scrapes is shown beside it.
        for encoding in ("plain", "gzip"):
            busy = get("scrape_taskwatchd_%s" % n, "%s_under_ingest" % encoding)
            if not busy:
                continue
            idle = get("scrape_taskwatchd_%s" % n, encoding, "median_ms")
            blocks = get("scrape_taskwatchd_%s" % n, "under_ingest_blocks_%s" % encoding)
            shown = "÷ idle = %s" % ratio(busy["median_ms"], idle)
            if blocks:
                shown += "; alternating blocks ÷ idle = %.2f" % blocks["median_ratio"]
            rows.append(("scrape %s %s during full ingest: taskwatchd ms median/p99" % (n, encoding),
                         "%.2f / %.2f" % (busy["median_ms"], busy["p99_ms"]), shown))
            if encoding == "plain":
                goals["scrape_%s_under_ingest_vs_idle_le_2" % n] = round(
                    blocks["median_ratio"] if blocks else busy["median_ms"] / idle, 2)
    plain100 = get("scrape_taskwatchd_100k", "plain", "median_ms")
    if plain100:
        goals["scrape_100k_plain_ms_le_10"] = plain100
    gzip100 = get("scrape_taskwatchd_100k", "gzip", "median_ms")
    push100 = get("scrape_pushgateway_100k", "gzip", "median_ms")
    # The goal is judged by the alternating blocks with both servers up (bench.sh, alternating_ratio);
    # the ratio of the two separate series of scrapes, minutes apart, is shown in the scrape rows.
    side_by_side = get("scrape_vs_pushgateway_100k", "gzip")
    if side_by_side:
        for encoding in ("plain", "gzip"):
            blocks = get("scrape_vs_pushgateway_100k", encoding)
            rows.append(("scrape 100k %s, taskwatchd ÷ pushgateway, alternating blocks" % encoding,
                         "%.3f" % blocks["median_ratio"],
                         "blocks: %s" % ", ".join("%.3f" % r for r in blocks["ratios"])))
        goals["scrape_100k_gzip_vs_pushgateway_le_0.25"] = round(side_by_side["median_ratio"], 3)
    elif gzip100 and push100:
        goals["scrape_100k_gzip_vs_pushgateway_le_0.25"] = round(gzip100 / push100, 3)
    # Memory.
    for n in ("100k", "1m"):
        ours = get("scrape_taskwatchd_%s" % n, "rss_bytes_per_series")
        after = get("scrape_taskwatchd_%s" % n, "rss_bytes_per_series_after_scrapes")
        push = get("scrape_pushgateway_%s" % n, "rss_bytes_per_series")
        if ours:
            rows.append(("RSS bytes/series at %s: taskwatchd (after scrapes)" % n,
                         "%s (%s)" % (num(ours), num(after)), "pushgateway %s; ratio %s" % (num(push), ratio(ours, push))))
    one_m = get("scrape_taskwatchd_1m", "rss_bytes_per_series")
    if one_m:
        goals["rss_bytes_per_series_1m_le_150"] = one_m
    fresh_result = results.get("freshness")
    if fresh_result:
        rows.append(("freshness: burst to visible on /metrics, ms median/p99",
                     "%s / %s" % (fresh_result.get("median_ms"), fresh_result.get("p99_ms")),
                     "%s of %s bursts seen" % (fresh_result.get("seen"), fresh_result.get("reps"))))
    # The client's figures (scripts/bench-client.sh, run first by `make bench`) join the same table.
    client = results.get("client")
    if isinstance(client, dict):
        for name, goal in sorted(client.get("goals", {}).items()):
            value = goal.get("value", goal.get("value_ns", goal.get("value_percent")))
            unit = ""
            if "value" not in goal:
                unit = " ns" if "value_ns" in goal else " points" if "value_percent" in goal else ""
            if goal.get("goal") in ("report", "(report)"):
                verdict = "reported, no goal"
            else:
                verdict = "goal %s: %s" % (goal.get("goal"), "holds" if goal.get("met") else "NOT met")
            rows.append(("client: %s" % name, "%s%s" % (num(value, 4), unit), verdict))
            goals["client: %s" % name] = value
    latest = {"meta": meta, "results": results, "goals": goals}
    with open(os.path.join(directory, "latest.json"), "w") as handle:
        json.dump(latest, handle, indent=2, sort_keys=True)
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print("TaskWatch daemon benchmark  %s  %s  %s cores  %s" % (
        meta.get("date", ""), meta.get("cpu", ""), meta.get("nproc", ""), meta.get("mode", "")))
    print("%-*s  %-*s  %s" % (width, "figure", value_width, "ours", "peers / ratios"))
    print("-" * (width + value_width + 40))
    for name, value, note in rows:
        print("%-*s  %-*s  %s" % (width, name, value_width, value, note))
    print("goals (measured):")
    for name, value in goals.items():
        print("  %s = %s" % (name, value))


def main(argv):
    command = argv[1]
    if command == "pushgw":
        pushgw(argv[2], int(argv[3]))
    elif command == "statsd-gauges":
        statsd_gauges(argv[2], int(argv[3]), int(argv[4]))
    elif command == "statsd-blast":
        statsd_blast(argv[2], int(argv[3]), float(argv[4]), int(argv[5]))
    elif command == "sum":
        scrape_sum(argv[2], argv[3])
    elif command == "fresh":
        fresh(argv[2], argv[3], int(argv[4]))
    elif command == "report":
        report(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
