#!/usr/bin/env python3
"""Limits under attack, against the real taskwatchd. Usage: attack.py BIN_DIR [--seconds N]

Starts taskwatchd on a private socket and a loopback port, a well-behaved `taskwatch send` client,
and a scraper that GETs /metrics every 100 ms. Then runs four bounded attacks one after another:
  series   one client declares up to 10 M distinct series (stops at the count or the time limit)
  connect  10 k clients connect at once (the daemon runs with --ingest.max-clients 1000)
  tiny     one client sends tiny frames as fast as it can
  churn    one client declares, reports and retires a new series as fast as it can
  slowhttp 1,000 HTTP clients (past --web.max-connections) each send a header byte every second,
           reconnecting whenever the daemon closes one
For each: the daemon's peak RSS, whether the good client's counter kept advancing, and scrape p50/p99.
Exits non-zero if RSS passes the bound, the good client stalls, or a scrape fails.
"""
import argparse
import importlib.util
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("send_frames", os.path.join(here, "send-frames.py"))
wire = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wire)

RSS_BOUND_MB = 256


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Scraper(threading.Thread):
    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.latencies, self.failures, self.running, self.last = url, [], 0, True, ""

    def run(self):
        while self.running:
            start = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    self.last = response.read().decode()
                self.latencies.append(time.monotonic() - start)
            except Exception:
                self.failures += 1
            time.sleep(0.1)

    def take(self):
        latencies, failures = sorted(self.latencies), self.failures
        self.latencies, self.failures = [], 0
        return latencies, failures


def sample(body, prefix):
    for line in body.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    return s


def attack_series(path, deadline, total=10_000_000):
    s = connect(path)
    s.send(wire.hello_frame(os.getpid(), 10_000_000, "attacker", "attack/1"))
    sent, next_id = 0, 1
    per_frame = 700
    try:
        while sent < total and time.monotonic() < deadline:
            declarations = [
                wire.declaration(next_id + i, wire.GAUGE, f"attack_series_{next_id + i}", "", [])
                for i in range(per_frame)
            ]
            s.send(wire.declare_frame(declarations))
            next_id += per_frame
            sent += per_frame
    except OSError:
        pass
    s.close()
    return f"declared {sent} series"


def attack_connect(path, deadline, count=10_000):
    sockets, refused = [], 0
    for _ in range(count):
        try:
            sockets.append(connect(path))
        except OSError:
            refused += 1
        if time.monotonic() > deadline:
            break
    time.sleep(2)
    for s in sockets:
        s.close()
    return f"opened {len(sockets)} connections, {refused} refused by the kernel"


def attack_tiny(path, deadline):
    s = connect(path)
    s.send(wire.hello_frame(os.getpid(), 10_000_000, "spammer", "attack/1"))
    s.send(wire.declare_frame([wire.declaration(1, wire.GAUGE, "spam", "", [])]))
    s.setblocking(False)
    sent, value = 0, 0.0
    while time.monotonic() < deadline:
        frame = wire.values_frame([(1, value)])
        try:
            s.send(frame)
            sent += 1
            value += 1
        except BlockingIOError:
            time.sleep(0.0001)
        except OSError:
            break
    s.close()
    return f"sent {sent} tiny frames"


def attack_churn(path, deadline):
    """Declares, reports and retires a new series (a 200-byte label value each) as fast as it can: the
    daemon must give every retired series' memory back, so its RSS stays flat."""
    s = connect(path)
    s.send(wire.hello_frame(os.getpid(), 10_000_000, "churner", "attack/1"))
    rounds, series_id = 0, 1
    while time.monotonic() < deadline:
        label = [("request", str(series_id) + "x" * 200)]
        try:
            s.send(wire.declare_frame([wire.declaration(series_id, wire.GAUGE, "churned", "", label)]))
            s.send(wire.values_frame([(series_id, 1.0)]))
            s.send(wire.retire_frame([series_id]))
        except OSError:
            break
        rounds += 1
        series_id += 1
    s.close()
    return f"declared, reported and retired {rounds} series"


def attack_slowhttp(port, deadline, count=1000):
    """Holds `count` connections (past --web.max-connections, 512) with requests that never end, a header
    byte a second each, and opens a new one at once for each the daemon closes: the trickle attack at its
    strongest from one host."""
    request = b"GET /metrics HTTP/1.1\r\n"

    def open_one():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.send(request)
            return s
        except OSError:
            return None

    sockets = [open_one() for _ in range(count)]
    reopened = 0
    while time.monotonic() < deadline:
        for index, s in enumerate(sockets):
            try:
                if s is None:
                    raise OSError
                s.send(b"X")
            except OSError:
                if s is not None:
                    s.close()
                sockets[index] = open_one()
                reopened += 1
        time.sleep(1)
    held = sum(1 for s in sockets if s is not None)
    for s in sockets:
        if s is not None:
            s.close()
    return f"held {held} slow connections, reopened {reopened}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bin_dir")
    parser.add_argument("--seconds", type=float, default=20, help="time limit of each attack")
    parser.add_argument("--only", choices=["series", "connect", "tiny", "churn", "slowhttp"], help="run one attack")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    directory = tempfile.mkdtemp(prefix="twa.")
    path = os.path.join(directory, "ingest.sock")
    log = open(os.path.join(directory, "daemon.log"), "w")
    daemon = subprocess.Popen(
        [os.path.join(args.bin_dir, "taskwatchd"), "--web.listen-address", "127.0.0.1:0", "--ingest.socket", path,
         "--ingest.max-clients", "1000"],
        stderr=log, stdout=log,
    )
    port = None
    for _ in range(300):
        text = open(os.path.join(directory, "daemon.log")).read()
        if " ports=" in text:
            port = int(text.split(" ports=")[1].split()[0])
            break
        time.sleep(0.05)
    good = subprocess.Popen(
        [os.path.join(args.bin_dir, "taskwatch"), "send", "--socket", path, "--process", "good", "--grow", "1",
         "--hold", "600s", "--interval", "100ms"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    scraper = Scraper(f"http://127.0.0.1:{port}/metrics")
    scraper.start()
    time.sleep(2)
    ok = True
    try:
        for name, run in (
            ("series", lambda d: attack_series(path, d)),
            ("connect", lambda d: attack_connect(path, d)),
            ("tiny", lambda d: attack_tiny(path, d)),
            ("churn", lambda d: attack_churn(path, d)),
            ("slowhttp", lambda d: attack_slowhttp(port, d)),
        ):
            if args.only and name != args.only:
                continue
            scraper.take()
            before = sample(scraper.last, 'swift_tasks_created_total{process="good"')
            peak = [rss_mb(daemon.pid)]
            stop = threading.Event()

            def watch():
                while not stop.is_set():
                    peak.append(rss_mb(daemon.pid))
                    time.sleep(0.1)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            started = time.monotonic()
            what = run(started + args.seconds)
            elapsed = time.monotonic() - started
            time.sleep(1.5)
            stop.set()
            watcher.join()
            after = sample(scraper.last, 'swift_tasks_created_total{process="good"')
            latencies, failures = scraper.take()
            p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else -1
            flowing = before is not None and after is not None and after > before
            rss = max(peak)
            print(
                f"attack {name}: {what} in {elapsed:.1f}s; daemon peak RSS {rss:.1f} MB (bound {RSS_BOUND_MB}); "
                f"good client {before} -> {after} ({'flowing' if flowing else 'STALLED'}); "
                f"scrapes {len(latencies)} ok, {failures} failed, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms",
                flush=True,
            )
            ok = ok and flowing and failures == 0 and rss < RSS_BOUND_MB
        body = scraper.last
        for line in body.splitlines():
            if line.startswith(("taskwatch_clients_rejected_total{", "taskwatch_series_dropped_total{",
                                "taskwatch_messages_rejected_total{", "taskwatch_messages_received_total",
                                "taskwatch_http_connections_evicted_total", "taskwatch_http_connections_refused_total")):
                print("  " + line)
    finally:
        scraper.running = False
        good.kill()
        daemon.terminate()
        daemon.wait(timeout=10)
    print("attack: " + ("all limits held" if ok else "A LIMIT FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
