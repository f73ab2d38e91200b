#!/usr/bin/env python3
"""End-to-end test of the TaskWatch rules and dashboard in a real Prometheus server.

Runs, all on loopback and in a temporary directory:
  - taskwatchd (BIN_DIR/taskwatchd) on a temporary ingest socket and a free port;
  - the instrumented demo (BIN_DIR/TaskWatchDemo --rate 100 --leak 10: the real client library, leaking
    10 request tasks/s, so task, histogram, executor, heap and /proc series all exist and grow);
  - raw senders (BIN_DIR/taskwatch send):
      leaky   swift_tasks 200, +100/s            must take SwiftTaskGrowth to firing
      steady  swift_tasks 6000, constant         must leave SwiftTaskGrowth silent (SwiftTaskFlood may,
                                                 and here must, fire: it proves the series is alerted on)
      slow    swift_tasks 500, +0.5/s (30/min)   near miss: above the floor, below 50/min, stays silent
  - a raw client written here from docs/protocol.md (through scripts/send-frames.py's encoders):
      bursty  swift_tasks 10 with peak samples of 2000, so SwiftTaskBurst fires; it also declares one
              series with the reserved label `pid`, which the daemon drops (reason="reserved_label");
  - one frame with a wrong magic number on its own connection (rejected, reason="bad_magic");
  - Debian's prometheus, scraping the daemon every second as job="taskwatch" and evaluating every
    second a test copy of prometheus/rules.yml and prometheus/alerts.yml in which only the `for:`
    durations are shortened (to FOR_OVERRIDE); every other byte is checked to be the original's.

Then through the HTTP API it checks: the target is up; SwiftTaskGrowth fires for leaky (and for the
leaking demo) while steady, slow and bursty never have a SwiftTaskGrowth alert, pending or firing, in
any evaluation; every expression of prometheus/dashboard_exprs.py (rules, dashboard panels, annotations,
variables, Grafana alerts) evaluates without error and returns data unless it is on ALLOWED_EMPTY;
every metric name those expressions use exists in the TSDB; every rule is loaded with health "ok".

Usage: prometheus_e2e.py --bin-dir DIR   (scripts/test-prometheus-e2e.sh DIR calls it)
Prints one line per check and "N passed, N failed"; exits non-zero on any failure. Set
TASKWATCH_E2E_KEEP=1 to keep the temporary directory (logs, configuration, TSDB).
"""
import argparse
import ctypes
import difflib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "prometheus"))
sys.path.insert(0, os.path.join(ROOT, "grafana"))
import dashboard_exprs  # noqa: E402  (prometheus/dashboard_exprs.py)
import test_dashboard  # noqa: E402  (grafana/test_dashboard.py: metric_names())

_spec = importlib.util.spec_from_file_location("send_frames", os.path.join(ROOT, "scripts", "send-frames.py"))
send_frames = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(send_frames)

# The test copy of the rules holds every alert this long instead of its `for:` (3m, 1m, 30m, ...), so
# an alert fires within seconds of its condition holding. The expressions are never changed.
FOR_OVERRIDE = "10s"
# Bounds, in seconds. A passing run takes 25-30 s; these only bound a broken one.
READY_TIMEOUT = 20
TARGET_UP_TIMEOUT = 30
ALERT_TIMEOUT = 120
# The near misses are watched at least this long after the target is up: twice the shortened hold.
MIN_OBSERVE = 20
SHUTDOWN_TIMEOUT = 5

# SwiftTaskGrowth must fire for these processes ...
GROWING = ("leaky", "TaskWatchDemo")
# ... and must never be pending or firing for these.
NOT_GROWING = ("steady", "slow", "bursty")

# Expressions that may return no data in this run, keyed by (source, where) as dashboard_exprs.py
# prints them. Every one is an alert condition the test deliberately does not produce; everything
# else (every recording rule, every panel, annotation, variable and Grafana alert query) must return
# data. An entry that does return data is reported, not failed.
ALLOWED_EMPTY = {
    ("prometheus/alerts.yml", "taskwatch.process: SwiftExecutorStarvation"):
        "needs an executor p99 lag over 100 ms; the demo's executor is healthy",
    ("prometheus/alerts.yml", "taskwatch.process: SwiftExecutorStalled"):
        "needs a probe count frozen for 2 minutes while the client reports; here the run is shorter than "
        "the window and the executor healthy (prometheus/tests/process.yml pins the alert)",
    ("grafana/provisioning/alerting/taskwatch-alerts.yml", "taskwatch: SwiftExecutorStalled A"):
        "the Grafana mirror of SwiftExecutorStalled: the same 2-minute history is needed",
    ("prometheus/alerts.yml", "taskwatch.tasks: SwiftTaskLeak"):
        "needs a process up for over an hour (time() - swift_process_start_time_seconds > 3600)",
    ("prometheus/alerts.yml", "taskwatch.process: SwiftProcessMemoryGrowth"):
        "needs a process up for over an hour (time() - swift_process_start_time_seconds > 3600)",
    ("prometheus/alerts.yml", "taskwatch.process: SwiftClientSeriesDropped"):
        "needs a process refusing its own series; every client here declares within its limits "
        "(prometheus/tests/process.yml pins the alert)",
    ("prometheus/alerts.yml", "taskwatch.daemon: TaskWatchClientStalled"):
        "needs a connected client silent for over 60 s; every client here reports every 10-200 ms",
    ("prometheus/alerts.yml", "taskwatch.daemon: TaskWatchDown"):
        "needs the target down; here it is up by design (checked separately)",
    ("prometheus/alerts.yml", "taskwatch.daemon: TaskWatchClientsRefused"):
        "needs clients refused for 10 minutes; here every client is served (the daemon tests refuse some, "
        "prometheus/tests pins the alert)",
    ("prometheus/alerts.yml", "taskwatch.daemon: TaskWatchHTTPConnectionsRefused"):
        "needs connections refused at --web.max-connections; here every scrape finds a place "
        "(ConnectionLimitTests and scripts/attack.py refuse some, prometheus/tests pins the alert)",
    ("prometheus/alerts.yml", "taskwatch.daemon: TaskWatchWebConfigReloadFailed"):
        "needs a failed reload of --web.config.file; here it loads (WebEndToEndTests fails one, "
        "prometheus/tests pins the alert)",
}

passed = 0
failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed += 1
        print(f"FAIL  {what}" + (f": {detail}" if detail else ""))
    sys.stdout.flush()
    return ok


def note(text):
    print(f"      {text}")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------
# Processes


def _die_with_parent():
    """Child side of Popen: get SIGTERM if this test process dies without cleaning up (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Processes:
    """Every process this test starts, stopped in reverse order by pid; nothing else is touched."""

    def __init__(self, directory):
        self.directory = directory
        self.started = []  # (name, Popen, log file)

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.directory, f"{name}.log"), "wb")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, preexec_fn=_die_with_parent)
        self.started.append((name, process, log))
        return process

    def check_running(self):
        for name, process, _ in self.started:
            if process.poll() is not None:
                check(False, f"{name} (pid {process.pid}) still running", f"exited with {process.returncode}; "
                      f"see {self.log_path(name)}")

    def log_path(self, name):
        return os.path.join(self.directory, f"{name}.log")

    def stop_all(self):
        for name, process, log in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(SHUTDOWN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(SHUTDOWN_TIMEOUT)
            log.close()
        self.started = []


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------
# HTTP


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def api(base, path, params=None, post=False, timeout=10):
    """GET or POST a Prometheus API call; returns the decoded JSON, also for 4xx/5xx error bodies."""
    url = base + path
    data = None
    if params:
        encoded = urllib.parse.urlencode(params)
        if post:
            data = encoded.encode()
        else:
            url += "?" + encoded
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "error": f"HTTP {error.code}: {body[:200]!r}"}


def wait_until(what, timeout, probe, interval=0.25):
    """Calls probe() until it returns a true value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = probe()
        except (OSError, ValueError, urllib.error.URLError):
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_ready(url, timeout):
    return wait_until(url, timeout, lambda: http_get(url, timeout=2)[0] == 200)


# ---------------------------------------------------------------------------------------------------
# The raw client


class BurstyClient(threading.Thread):
    """A client speaking the wire protocol from Python: a small live count with large peak samples
    between reports, so SwiftTaskBurst fires."""

    TASKS_ID = 1

    def __init__(self, path, live=10.0, peak=2000.0, interval=0.2):
        super().__init__(daemon=True)
        self.path, self.live, self.peak, self.interval = path, live, peak, interval
        self.stop = threading.Event()
        self.error = None

    def run(self):
        f = send_frames
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                s.connect(self.path)
                s.send(f.hello_frame(os.getpid(), int(self.interval * 1e9), "bursty", "prometheus_e2e.py"))
                s.send(f.declare_frame([f.declaration(self.TASKS_ID, f.GAUGE, "swift_tasks",
                                                      "Live instrumented tasks now.", [("task", "default")])]))
                while not self.stop.is_set():
                    s.send(f.values_frame([(self.TASKS_ID, self.live)]))
                    # A peaks frame is laid out exactly as a values frame, with kind 5.
                    s.send(f.header(f.PEAKS) + f.values_frame([(self.TASKS_ID, self.peak)])[8:])
                    self.stop.wait(self.interval)
                s.send(f.goodbye_frame())
        except OSError as error:
            self.error = error


def send_bad_input(path):
    """Input the daemon must refuse, each on its own short connection: a frame with a wrong magic number
    (taskwatch_messages_rejected_total{reason="bad_magic"}) and a declaration using the daemon's own
    label `pid` (taskwatch_series_dropped_total{reason="reserved_label"}). Sent once Prometheus has
    scraped the counters at 0, so their rates over any window see the step."""
    f = send_frames
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(path)
        s.send(b"NOPE" + f.values_frame([(1, 1.0)])[4:])
        time.sleep(0.1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(path)
        s.send(f.hello_frame(os.getpid(), 1_000_000_000, "reserved-label", "prometheus_e2e.py"))
        s.send(f.declare_frame([f.declaration(1, f.GAUGE, "taskwatch_e2e_reserved", "Must be dropped.",
                                              [("pid", "1")])]))
        s.send(f.goodbye_frame())
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------
# The test copy of the rules

FOR_LINE = re.compile(r"^(\s+)for:\s*(\S+)\s*$")


def shortened_copy(source, destination):
    """Writes source with every `for:` value replaced by FOR_OVERRIDE and checks that nothing else changed:
    the only differing lines are `for:` lines, and every rule parses to the same fields, its expr
    byte-identical to the original's."""
    with open(source) as f:
        original = f.read()
    copy_lines = []
    for line in original.splitlines(keepends=True):
        m = FOR_LINE.match(line.rstrip("\n"))
        copy_lines.append(f"{m.group(1)}for: {FOR_OVERRIDE}\n" if m else line)
    copy = "".join(copy_lines)
    with open(destination, "w") as f:
        f.write(copy)

    name = os.path.relpath(source, ROOT)
    changed = [l for l in difflib.unified_diff(original.splitlines(), copy.splitlines(), lineterm="", n=0)
               if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    check(all(FOR_LINE.match(l[1:]) for l in changed), f"{name}: the test copy differs only in `for:` lines",
          str([l for l in changed if not FOR_LINE.match(l[1:])][:3]))
    a, b = yaml.safe_load(original), yaml.safe_load(copy)
    rules_a = [r for g in a["groups"] for r in g["rules"]]
    rules_b = [r for g in b["groups"] for r in g["rules"]]
    same = len(rules_a) == len(rules_b) and [g["name"] for g in a["groups"]] == [g["name"] for g in b["groups"]]
    exprs_same = same and all(x["expr"] == y["expr"] for x, y in zip(rules_a, rules_b))
    rest_same = same and all({k: v for k, v in x.items() if k != "for"} == {k: v for k, v in y.items() if k != "for"}
                             for x, y in zip(rules_a, rules_b))
    check(exprs_same, f"{name}: every expr in the test copy is byte-identical to the original ({len(rules_a)} rules)")
    check(rest_same, f"{name}: every other rule field in the test copy equals the original")
    fors = sum(1 for r in rules_b if "for" in r)
    note(f"{name}: {fors} `for:` durations shortened to {FOR_OVERRIDE}")
    return len(rules_a)


# ---------------------------------------------------------------------------------------------------
# The test


def vector(base, query):
    answer = api(base, "/api/v1/query", {"query": query}, post=True)
    if answer.get("status") != "success":
        raise RuntimeError(f"{query}: {answer.get('error')}")
    return answer["data"]["result"]


def alerts_by(alerts, name):
    return [a for a in alerts if a["labels"].get("alertname") == name]


def run(bin_dir, tmp):
    procs = Processes(tmp)
    bursty = None
    try:
        for binary in ("taskwatchd", "taskwatch", "TaskWatchDemo"):
            if not check(os.access(os.path.join(bin_dir, binary), os.X_OK), f"{bin_dir}/{binary} is built"):
                return
        prometheus = shutil.which("prometheus")
        if not check(prometheus is not None, "prometheus is installed (Debian: apt-get install prometheus)"):
            return
        version = subprocess.run([prometheus, "--version"], capture_output=True, text=True, timeout=10)
        note((version.stdout or version.stderr).splitlines()[0])

        # The daemon.
        sock = os.path.join(tmp, "ingest.sock")
        daemon_port = free_port()
        daemon = f"127.0.0.1:{daemon_port}"
        # An empty web config (plain HTTP, no users, as in the exporter-toolkit) so the reload-status
        # series exist for the expressions that read them.
        web_config = os.path.join(tmp, "web.yml")
        open(web_config, "w").close()
        procs.start("taskwatchd", [os.path.join(bin_dir, "taskwatchd"), "--ingest.socket", sock,
                                   "--web.listen-address", daemon, "--client.grace", "30s",
                                   "--web.config.file", web_config])
        if not check(wait_ready(f"http://{daemon}/-/ready", READY_TIMEOUT) and os.path.exists(sock),
                     f"taskwatchd ready on {daemon}, ingest socket {sock}", f"see {procs.log_path('taskwatchd')}"):
            return

        # The workloads.
        env = dict(os.environ, TASKWATCH_SOCKET=sock)
        env.pop("TASKWATCH_DISABLED", None)
        env.pop("TASKWATCH_PROCESS", None)
        procs.start("demo", [os.path.join(bin_dir, "TaskWatchDemo"), "--rate", "100", "--leak", "10"], env=env)
        send = [os.path.join(bin_dir, "taskwatch"), "send", "--socket", sock, "--interval", "100ms", "--hold", "600s"]
        procs.start("leaky", send + ["--process", "leaky", "--task", "default=200", "--grow", "10"])
        procs.start("steady", send + ["--process", "steady", "--task", "default=6000", "--grow", "0"])
        procs.start("slow", send + ["--process", "slow", "--task", "default=500", "--grow", "0.05"])
        bursty = BurstyClient(sock)
        bursty.start()

        # Prometheus, with the test copy of the rules.
        rules_copy = os.path.join(tmp, "rules.yml")
        alerts_copy = os.path.join(tmp, "alerts.yml")
        n_rules = shortened_copy(os.path.join(ROOT, "prometheus", "rules.yml"), rules_copy)
        n_rules += shortened_copy(os.path.join(ROOT, "prometheus", "alerts.yml"), alerts_copy)
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [rules_copy, alerts_copy],
                "scrape_configs": [{"job_name": "taskwatch", "metrics_path": "/metrics",
                                    "static_configs": [{"targets": [daemon]}]}],
            }, f, sort_keys=False)
        prom_port = free_port()
        while prom_port == daemon_port:
            prom_port = free_port()
        prom = f"http://127.0.0.1:{prom_port}"
        procs.start("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
                                   f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=info"])
        if not check(wait_ready(f"{prom}/-/ready", READY_TIMEOUT), f"prometheus ready on {prom}",
                     f"see {procs.log_path('prometheus')}"):
            return

        # The target.
        def target_up():
            targets = api(prom, "/api/v1/targets")["data"]["activeTargets"]
            return [t for t in targets if t["labels"].get("job") == "taskwatch" and t["health"] == "up"]
        started = time.monotonic()
        up = wait_until("target up", TARGET_UP_TIMEOUT, target_up)
        if not check(bool(up), f'target job="taskwatch" instance="{daemon}" is up',
                     json.dumps(api(prom, "/api/v1/targets").get("data", {}).get("activeTargets"))[:500]):
            return
        note(f"up after {time.monotonic() - started:.1f} s; last scrape {up[0]['lastScrapeDuration'] * 1000:.1f} ms")
        check(vector(prom, 'up{job="taskwatch"} == 1') != [], 'up{job="taskwatch"} == 1 in the TSDB')
        # Rejections and drops only now: counters first scraped at 0, then 1, give the rejected and
        # dropped rates (and TaskWatchRejectingInput's, TaskWatchSeriesLimit's conditions) data.
        time.sleep(1.5)
        send_bad_input(sock)

        # The alert test: poll every second until every expected alert fires; any SwiftTaskGrowth for a
        # process that is not growing, in any state, at any poll, is a failure.
        expected = {("SwiftTaskGrowth", p): None for p in GROWING}
        expected[("SwiftTaskFlood", "steady")] = None
        expected[("SwiftTaskBurst", "bursty")] = None
        wrong = {}
        started = time.monotonic()
        deadline = started + ALERT_TIMEOUT
        while time.monotonic() < deadline:
            alerts = api(prom, "/api/v1/alerts")["data"]["alerts"]
            for a in alerts:
                key = (a["labels"].get("alertname"), a["labels"].get("process"))
                if key in expected and a["state"] == "firing" and expected[key] is None:
                    expected[key] = time.monotonic() - started
                    note(f"{key[0]} firing for process={key[1]} after {expected[key]:.1f} s "
                         f"(active since {a['activeAt']}, value {float(a['value']):.4g})")
                if key[0] == "SwiftTaskGrowth" and key[1] in NOT_GROWING:
                    wrong.setdefault(key[1], a)
            if all(v is not None for v in expected.values()) and time.monotonic() - started >= MIN_OBSERVE:
                break
            time.sleep(1)
        for (name, process), after in expected.items():
            check(after is not None, f"{name} fires for process={process} within {ALERT_TIMEOUT} s",
                  "not firing; alerts now: " + json.dumps([(a["labels"].get("alertname"), a["labels"].get("process"),
                                                            a["state"]) for a in alerts]))
        for process in NOT_GROWING:
            check(process not in wrong, f"no SwiftTaskGrowth alert (pending or firing) for process={process} at any poll "
                  f"over {time.monotonic() - started:.0f} s",
                  json.dumps(wrong.get(process)))
        # Every evaluation, not only the polls: ALERTS keeps a sample for each pending or firing one.
        growth_series = vector(prom, 'count_over_time(ALERTS{alertname="SwiftTaskGrowth"}[10m])')
        stray = sorted({s["metric"].get("process") for s in growth_series} - set(GROWING))
        check(not stray, "ALERTS holds no SwiftTaskGrowth sample for any process but "
              + ", ".join(GROWING) + " in any evaluation", f"found {stray}")
        # The near misses are seen (so their silence means something), and how far below the line they are.
        derivs = {s["metric"]["process"]: float(s["value"][1])
                  for s in vector(prom, "process:swift_tasks:deriv3m")}
        live = {s["metric"]["process"]: float(s["value"][1]) for s in vector(prom, "process:swift_tasks:sum")}
        for process in GROWING + NOT_GROWING:
            note(f"process={process}: live tasks {live.get(process, float('nan')):.0f}, "
                 f"3m derivative {derivs.get(process, float('nan')) * 60:.1f} tasks/min (threshold 50)")
        check(live.get("steady") == 6000, "steady's live tasks are scraped (6000)", str(live.get("steady")))
        check("slow" in derivs and 0 < derivs["slow"] < 50 / 60, "slow grows, below 50/min", str(derivs.get("slow")))
        check(derivs.get("leaky", 0) > 50 / 60, "leaky grows above 50/min", str(derivs.get("leaky")))

        # Every expression.
        items = dashboard_exprs.all_exprs(ROOT)
        kinds = sorted({i["kind"] for i in items})
        note(f"{len(items)} expressions from prometheus/dashboard_exprs.py: {', '.join(kinds)}")
        known = {(i["source"], i["where"]) for i in items}
        for key in ALLOWED_EMPTY:
            check(key in known, f"allow-list entry {key[0]} '{key[1]}' names an existing expression")
        empty_allowed = []
        for item in items:
            label = f"{item['kind']:<13} {item['source']} {item['where']}"
            answer = api(prom, "/api/v1/query", {"query": item["expr"]}, post=True)
            if answer.get("status") != "success":
                check(False, f"{label}: evaluates", answer.get("error", json.dumps(answer)[:300]))
                continue
            result = answer["data"]["result"]
            count = len(result) if isinstance(result, list) else 1
            for warning in answer.get("warnings", []):
                note(f"{label}: warning: {warning}")
            key = (item["source"], item["where"])
            if key in ALLOWED_EMPTY:
                check(True, f"{label}: evaluates ({count} series; may be empty: {ALLOWED_EMPTY[key]})")
                if count:
                    note(f"  allow-listed as possibly empty, returned {count} series")
                else:
                    empty_allowed.append(key)
            else:
                check(count > 0, f"{label}: evaluates with data ({count} series)",
                      f"no data for {item['expr']!r}")

        # Every metric name the expressions read exists in Prometheus: a renamed metric or a typo in a rule
        # would otherwise read as "no data" only where nothing else covers it.
        names = set(api(prom, "/api/v1/label/__name__/values")["data"])
        used = set()
        for item in items:
            used |= test_dashboard.metric_names(item["expr"])
        used.discard("ALERTS_FOR_STATE")
        missing = sorted(used - names)
        check(not missing, f"all {len(used)} metric and recording-rule names the expressions use exist in Prometheus",
              f"missing: {missing}")

        # Every rule loaded and healthy.
        groups = api(prom, "/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        check(len(rules) == n_rules, f"Prometheus loaded all {n_rules} rules", f"loaded {len(rules)}")
        for r in rules:
            check(r.get("health") == "ok" and not r.get("lastError"),
                  f"rule {r.get('name')}{' ' + json.dumps(r['labels']) if r['type'] == 'recording' and r.get('labels') else ''}"
                  f" health {r.get('health')}", r.get("lastError", ""))
        check(bursty.error is None, "the raw bursty client kept its connection", str(bursty.error))
        procs.check_running()
        if empty_allowed:
            note(f"{len(empty_allowed)} allow-listed expressions were empty: "
                 + ", ".join(w for _, w in empty_allowed))
    finally:
        if bursty is not None:
            bursty.stop.set()
            bursty.join(2)
        procs.stop_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", required=True, help="directory with taskwatchd, taskwatch, TaskWatchDemo")
    args = parser.parse_args()

    def interrupted(signum, _frame):
        raise SystemExit(f"prometheus_e2e.py: stopped by signal {signum}")
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, interrupted)

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="taskwatch-prometheus-e2e-")
    print(f"prometheus e2e: working in {tmp}")
    try:
        run(os.path.abspath(args.bin_dir), tmp)
    except (Exception, SystemExit) as error:  # a broken API answer, a signal: a failure, then clean up
        check(False, "the test ran to the end", f"{type(error).__name__}: {error}")
    finally:
        keep = failed or os.environ.get("TASKWATCH_E2E_KEEP")
        if keep:
            print(f"prometheus e2e: kept {tmp} (logs, configuration, TSDB)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"prometheus e2e: {time.monotonic() - started:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
