#!/usr/bin/env python3
"""Soak: 200 `taskwatch send` processes reporting every 10 ms for SOAK_SECONDS, scraped every second.
Usage: soak.py BIN_DIR [--seconds N] [--clients N]

Samples the daemon's RSS, open descriptors and threads each second. After a warm-up of a tenth of the
run (at least 5 s), they must stay flat: RSS within +20 % and +8 MB of its value after warm-up, the
same thread count, descriptors within the client count. Every scrape must succeed.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as text:
        for line in text:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["Threads"][0]), len(os.listdir(f"/proc/{pid}/fd"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bin_dir")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="tws.")
    path = os.path.join(directory, "ingest.sock")
    log_path = os.path.join(directory, "daemon.log")
    daemon = subprocess.Popen(
        [os.path.join(args.bin_dir, "taskwatchd"), "--web.listen-address", "127.0.0.1:0", "--ingest.socket", path],
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
    )
    port = None
    for _ in range(300):
        text = open(log_path).read()
        if " ports=" in text:
            port = int(text.split(" ports=")[1].split()[0])
            break
        time.sleep(0.05)
    clients = [
        subprocess.Popen(
            [os.path.join(args.bin_dir, "taskwatch"), "send", "--socket", path, "--process", f"soak{i}",
             "--grow", "1", "--interval", "10ms", "--hold", f"{args.seconds + 30}s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(args.clients)
    ]
    samples, failures, latencies = [], 0, []
    warmup = max(5, args.seconds // 10)
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.seconds:
            begin = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                    body = response.read().decode()
                latencies.append(time.monotonic() - begin)
            except Exception:
                failures += 1
                body = ""
            samples.append((time.monotonic() - started,) + status(daemon.pid))
            time.sleep(max(0, 1 - (time.monotonic() - begin)))
        connected = sum(1 for line in body.splitlines() if line.startswith("taskwatch_client_up{") and line.endswith(" 1"))
    finally:
        for client in clients:
            client.kill()
        daemon.terminate()
        daemon.wait(timeout=10)
    steady = [s for s in samples if s[0] >= warmup]
    base, end = steady[0], steady[-1]
    rss_max = max(s[1] for s in steady)
    threads = {s[2] for s in steady}
    fds = [s[3] for s in steady]
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else -1
    print(f"soak: {args.clients} clients every 10 ms for {args.seconds}s, {len(latencies)} scrapes, {failures} failed, "
          f"p99 {p99:.1f} ms, {connected} clients up at the end")
    print(f"soak: RSS after warm-up {base[1]:.1f} MB, end {end[1]:.1f} MB, max {rss_max:.1f} MB; "
          f"threads {sorted(threads)}; open fds {min(fds)}..{max(fds)}")
    flat = (rss_max <= max(base[1] * 1.2, base[1] + 8) and len(threads) == 1
            and max(fds) - min(fds) <= args.clients // 10 and failures == 0)
    print("soak: " + ("flat" if flat else "NOT FLAT"))
    sys.exit(0 if flat else 1)


if __name__ == "__main__":
    main()
