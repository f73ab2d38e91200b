#!/usr/bin/env python3
"""Checks the TaskWatch Grafana dashboard and provisioning files. Plain python3 with PyYAML.

- grafana/taskwatch.json parses; uid "taskwatch"; the datasource, instance, process, pid and task variables
  (instance from taskwatch_build_info or up, multi-select with All; the others narrowed by it);
  the built-in annotation and the ALERTS annotation; panel ids unique; gridPos rectangles inside the
  24-column grid and not overlapping; every panel and target queries through ${datasource}.
- Every PromQL expression of the dashboard, the Grafana-managed alerts and the Prometheus rules uses
  only metric names from the contract (CONTRACT_METRICS below; histogram series by their base name)
  or recording rules defined in prometheus/rules.yml, and only known label names in by/on clauses;
  after variable substitution no Grafana variable is left; and promtool, when installed, parses every
  expression.
- A pid is unique only on its host: every by (...) or on (...) clause that names pid names instance
  too, and no without (...) clause over per-client series drops instance but keeps pid. On the
  dashboard, every target that filters by $pid filters by $instance, and every legend that shows
  {{pid}} shows {{instance}}.
- The alert list's label filter, which Grafana interpolates without a data source (a multi-value
  variable becomes a glob, {a,b}), writes a variable inside a regex matcher as ${name:regex}.
- The panels the dashboard promises exist (alert list, growth with its threshold line, ...), and the
  thresholds drawn there match prometheus/alerts.yml.
- The provisioning YAMLs parse, and the Grafana-managed alerts mirror prometheus/alerts.yml (same
  names, holds, severities, runbooks) and query the provisioned data source.

Prints "N passed, N failed" and exits non-zero on any failure.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "prometheus"))
import dashboard_exprs  # noqa: E402  (prometheus/dashboard_exprs.py)

# The metric names of /work/shared/CONTRACT.md ("Metric names"). Histograms by base name: their
# _bucket, _sum and _count series are accepted.
CONTRACT_HISTOGRAMS = {
    "swift_task_duration_seconds",
    "swift_executor_lag_seconds",
}
CONTRACT_METRICS = CONTRACT_HISTOGRAMS | {
    # From the client.
    "swift_tasks",
    "swift_tasks_peak",
    "swift_tasks_created_total",
    "swift_tasks_finished_total",
    "swift_executor_jobs_enqueued_total",
    "swift_process_heap_allocated_bytes",
    "swift_process_heap_free_bytes",
    "swift_taskwatch_reports_dropped_total",
    # From the client, beyond the contract's table: series it refused (cap, limits, conflicts).
    "swift_taskwatch_series_dropped_total",
    # Read by the daemon from /proc/<pid>.
    "swift_process_resident_memory_bytes",
    "swift_process_virtual_memory_bytes",
    "swift_process_cpu_seconds_total",
    "swift_process_threads",
    "swift_process_open_fds",
    "swift_process_start_time_seconds",
    # Per client, from the daemon.
    "taskwatch_client_up",
    "taskwatch_client_last_report_timestamp_seconds",
    # The daemon's own.
    "taskwatch_build_info",
    "taskwatch_clients",
    "taskwatch_series",
    "taskwatch_messages_received_total",
    "taskwatch_messages_rejected_total",
    "taskwatch_series_dropped_total",
    "taskwatch_clients_rejected_total",
    # An addition to the contract's list: values reported for series that wait for room under a limit.
    "taskwatch_values_dropped_total",
    # An addition to the contract's list: every HTTP answer, by handler and code, as Prometheus counts its own.
    "taskwatch_http_requests_total",
    # Also an addition: connections accepted and closed, as Prometheus counts its own listener's.
    "taskwatch_http_connections_accepted_total",
    "taskwatch_http_connections_closed_total",
    # Also additions: connections turned away at --web.max-connections, and those closed to make room.
    "taskwatch_http_connections_refused_total",
    "taskwatch_http_connections_evicted_total",
    # Only with --web.config.file: an addition to the contract's list, named as Prometheus names its own.
    "taskwatch_web_config_last_reload_successful",
    "taskwatch_web_config_last_reload_success_timestamp_seconds",
    # The standard process_* metrics of the daemon itself.
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
}
# Series Prometheus itself provides.
PROMETHEUS_METRICS = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Label names that may appear in by/without/on/ignoring/group_* clauses.
KNOWN_LABELS = {"job", "instance", "process", "pid", "task", "outcome", "le", "reason", "quantile",
                "version", "revision", "swift_version", "alertname", "alertstate", "severity", "handler", "code",
                "answered"}
METRIC_PREFIXES = ("swift_", "taskwatch_", "process_")
GRID_COLUMNS = 24

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}")
    return ok


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def recording_rule_names():
    doc = load_yaml(os.path.join(ROOT, "prometheus", "rules.yml"))
    return {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def metric_names(expr):
    """Metric-like identifiers of a PromQL expression: prefixed names and recording rule names."""
    text = strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    names = set()
    for token in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if ":" in token or token.startswith(METRIC_PREFIXES) or token in PROMETHEUS_METRICS:
            names.add(token)
    return names


def grouping_labels(expr):
    labels = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", strip_strings(expr)):
        labels.update(l.strip() for l in group.split(",") if l.strip())
    return labels


# Series that describe one client process: they carry pid, which is unique only per host (instance).
PER_CLIENT_PREFIXES = ("swift_", "taskwatch_client_")


def pid_without_instance(expr):
    """The grouping clauses of expr that keep pid apart but merge hosts: by (...) or on (...) naming pid
    without instance, and, over per-client series, without (...) dropping instance but not pid."""
    text = strip_strings(expr)
    per_client = any(n.startswith(PER_CLIENT_PREFIXES) for n in metric_names(expr))
    bad = []
    for keyword, group in re.findall(r"\b(by|on|without)\s*\(([^)]*)\)", text):
        labels = {l.strip() for l in group.split(",") if l.strip()}
        if keyword in ("by", "on") and "pid" in labels and "instance" not in labels:
            bad.append(f"{keyword} ({group})")
        if keyword == "without" and per_client and "instance" in labels and "pid" not in labels:
            bad.append(f"{keyword} ({group})")
    return bad


def strip_strings_keep_braces(expr):
    """expr with the braces of label matchers kept but {...} inside quoted values (none today) blanked."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: m.group(0).replace("{", "(").replace("}", ")"), expr)


def base_name(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in CONTRACT_HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def check_expr(item, records):
    where = f"{item['source']} {item['where']}"
    expr = item["expr"]
    names = metric_names(expr)
    check(bool(names), f"{where}: uses at least one metric: {expr}")
    for name in sorted(names):
        if ":" in name:
            check(name in records, f"{where}: recording rule {name} is defined in prometheus/rules.yml")
        elif name in PROMETHEUS_METRICS:
            check(True, name)
        else:
            check(base_name(name) in CONTRACT_METRICS, f"{where}: metric {name} is in the contract")
    for label in sorted(grouping_labels(expr)):
        check(label in KNOWN_LABELS, f"{where}: label {label} is known")
    check("$" not in expr, f"{where}: no Grafana variable left after substitution: {expr}")
    bad = pid_without_instance(expr)
    check(not bad, f"{where}: groups by pid without instance (a pid is unique only per host): {bad}: {expr}")


def check_promtool_parses(items):
    promtool = shutil.which("promtool")
    if not promtool:
        print("SKIP: promtool not installed; PromQL syntax not checked")
        return
    rules = [{"record": f"taskwatch_check:expr_{i}", "expr": item["expr"]} for i, item in enumerate(items)]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard_exprs", "rules": rules}]}, f)
        path = f.name
    try:
        result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    check(result.returncode == 0, f"promtool parses every dashboard and Grafana alert expression:\n{result.stdout}{result.stderr}")


def overlaps(a, b):
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def check_dashboard():
    path = os.path.join(HERE, "taskwatch.json")
    try:
        with open(path) as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as error:
        check(False, f"taskwatch.json parses: {error}")
        return None
    check(True, "taskwatch.json parses")
    check(dashboard.get("uid") == "taskwatch", "dashboard uid is taskwatch")
    check(isinstance(dashboard.get("schemaVersion"), int) and 36 <= dashboard["schemaVersion"] <= 41, "schemaVersion is about 39")
    check(dashboard.get("id") is None, "no instance-specific dashboard id")

    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus", "datasource variable of type prometheus")
    instance = variables.get("instance", {})
    selector = dashboard_exprs.label_values_selector(instance.get("query"))
    check(instance.get("type") == "query" and selector is not None
          and selector.split("{")[0] in ("taskwatch_build_info", "up")
          and (instance.get("query") or {}).get("query", "").rstrip(") ").endswith("instance"),
          "variable instance is label_values(taskwatch_build_info... or up..., instance): every daemon, with or without clients")
    check(instance.get("multi") is True and instance.get("includeAll") is True and instance.get("allValue") == ".*",
          "variable instance is multi-select with All = .*")
    check(instance.get("datasource", {}).get("uid") == "${datasource}", "variable instance queries ${datasource}")
    order = [v["name"] for v in dashboard.get("templating", {}).get("list", [])]
    check("instance" in order and "process" in order and order.index("instance") < order.index("process"),
          f"variable instance comes before process, which it narrows: {order}")
    for name in ("process", "pid", "task"):
        v = variables.get(name, {})
        selector = dashboard_exprs.label_values_selector(v.get("query"))
        check(v.get("type") == "query" and selector is not None and selector.split("{")[0] == "swift_tasks"
              and (v.get("query") or {}).get("query", "").rstrip(") ").endswith(name),
              f"variable {name} is label_values(swift_tasks..., {name})")
        check(selector is not None and 'instance=~"$instance"' in selector, f"variable {name} is narrowed by $instance")
        check(v.get("datasource", {}).get("uid") == "${datasource}", f"variable {name} queries ${{datasource}}")

    annotations = dashboard.get("annotations", {}).get("list", [])
    check(any(a.get("builtIn") == 1 and a.get("type") == "dashboard" for a in annotations), "built-in annotations and alerts")
    check(any("ALERTS" in (a.get("expr") or "") and a.get("datasource", {}).get("uid") == "${datasource}" for a in annotations),
          "an annotation of firing alerts (ALERTS) through ${datasource}")

    panels = list(dashboard_exprs.iter_panels(dashboard.get("panels", [])))
    ids = [p.get("id") for p in panels]
    check(all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), f"panel ids are unique integers: {ids}")
    top = dashboard.get("panels", [])
    for p in top:
        grid = p.get("gridPos", {})
        ok = all(isinstance(grid.get(k), int) for k in "xywh") and grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 \
            and grid["y"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
        check(ok, f"panel {p.get('id')} '{p.get('title')}' gridPos inside the {GRID_COLUMNS}-column grid: {grid}")
    for i, a in enumerate(top):
        for b in top[i + 1:]:
            if all(isinstance(x.get("gridPos", {}).get(k), int) for x in (a, b) for k in "xywh"):
                check(not overlaps(a["gridPos"], b["gridPos"]),
                      f"panels {a.get('id')} '{a.get('title')}' and {b.get('id')} '{b.get('title')}' do not overlap")

    for p in panels:
        if p.get("type") in ("row", "alertlist", "text"):
            continue
        check(p.get("datasource", {}).get("uid") == "${datasource}", f"panel {p['id']} '{p.get('title')}' datasource is ${{datasource}}")
        check(bool(p.get("targets")), f"panel {p['id']} '{p.get('title')}' has targets")
        for t in p.get("targets", []):
            check(t.get("datasource", {}).get("uid") == "${datasource}", f"panel {p['id']} target {t.get('refId')} datasource is ${{datasource}}")
            check(bool(t.get("expr")), f"panel {p['id']} target {t.get('refId')} has an expr")
            # A pid is unique only on its host: per-process queries select and tell hosts apart.
            expr, legend = t.get("expr") or "", t.get("legendFormat") or ""
            selectors = re.findall(r"\{[^}]*\}", strip_strings_keep_braces(expr))
            for selector in selectors:
                if re.search(r"\$[({]?pid\b", selector):
                    check(re.search(r'instance=~"\$[({]?instance\b', selector) is not None,
                          f"panel {p['id']} target {t.get('refId')}: selector filtering $pid also filters $instance: {selector}")
            if "{{pid}}" in legend:
                check("{{instance}}" in legend, f"panel {p['id']} target {t.get('refId')}: legend with {{{{pid}}}} shows {{{{instance}}}}: {legend}")

    # Outside a Prometheus query (the alert list's label filter), Grafana formats a multi-value
    # variable as a glob, {a,b}, not as a regex: two hosts selected would match no alert. A variable
    # inside a regex matcher there must ask for the regex format, ${name:regex}.
    for p in panels:
        if p.get("type") != "alertlist":
            continue
        label_filter = p.get("options", {}).get("alertInstanceLabelFilter") or ""
        for value in re.findall(r'=~\s*"([^"]*)"', label_filter):
            for ref in re.findall(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]", value):
                check(re.fullmatch(r"\$\{\w+:regex\}", ref) is not None,
                      f"panel {p['id']} alert list label filter: {ref} in a regex matcher is written ${{name:regex}}: {label_filter}")
        for name in re.findall(r"\$\{?(\w+)", label_filter):
            check(name in variables, f"panel {p['id']} alert list label filter: variable {name} exists")

    # What the dashboard promises.
    def exprs_of(p):
        return " ".join(t.get("expr", "") for t in p.get("targets", []))

    def line_threshold(p):
        custom = p.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
        steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
        values = [s.get("value") for s in steps if s.get("value") is not None]
        return values if custom.get("thresholdsStyle", {}).get("mode") in ("line", "line+area", "dashed") else []

    alerts = {r["alert"]: r for g in load_yaml(os.path.join(ROOT, "prometheus", "alerts.yml"))["groups"] for r in g["rules"]}
    check(any(p.get("type") == "alertlist" for p in panels), "an alert list panel")
    growth = [p for p in panels if re.search(r"deriv\(swift_tasks|process:swift_tasks:deriv3m", exprs_of(p))]
    check(any(line_threshold(p) == [50] and "* 60" in exprs_of(p) for p in growth)
          and "process:swift_tasks:deriv3m > 50 / 60" in alerts["SwiftTaskGrowth"]["expr"],
          "growth panel (tasks/min) draws the SwiftTaskGrowth threshold 50/min as a line")
    lag = [p for p in panels if "swift_executor_lag_seconds_bucket" in exprs_of(p) and "histogram_quantile" in exprs_of(p)]
    check(any(line_threshold(p) == [0.1] for p in lag) and "> 0.1" in alerts["SwiftExecutorStarvation"]["expr"],
          "executor lag quantiles draw the SwiftExecutorStarvation threshold 0.1 s as a line")
    age = [p for p in panels if "taskwatch_client_last_report_timestamp_seconds" in exprs_of(p) and p.get("type") == "timeseries"]
    check(any(line_threshold(p) == [60] for p in age) and "> 60" in alerts["TaskWatchClientStalled"]["expr"],
          "report age draws the TaskWatchClientStalled threshold 60 s as a line")
    for needle, what in [
        ("swift_tasks_peak", "live tasks and peak"),
        ("swift_tasks_created_total", "created rate"),
        ("swift_tasks_finished_total", "finished rate by outcome"),
        ("swift_task_duration_seconds_bucket", "task lifetime"),
        ("swift_process_heap_allocated_bytes", "heap allocated"),
        ("swift_process_resident_memory_bytes", "resident memory"),
        ("taskwatch_client_up", "client up"),
        ("taskwatch_clients", "daemon clients"),
        ("taskwatch_series", "daemon series"),
        ("taskwatch_messages_received_total", "messages received"),
        ("taskwatch_messages_rejected_total", "messages rejected"),
        ("taskwatch_series_dropped_total", "series dropped"),
        # TaskWatchSeriesLimit fires on it too: series refused at a limit stay missing while it rises.
        ("taskwatch_values_dropped_total", "values dropped for series waiting at a limit"),
    ]:
        check(any(needle in exprs_of(p) for p in panels), f"a panel shows {what} ({needle})")
    check(any("outcome" in exprs_of(p) and "swift_tasks_finished_total" in exprs_of(p) for p in panels), "finished rates split by outcome")
    check(any("/" in exprs_of(p) and "swift_process_heap_allocated_bytes" in exprs_of(p) and "swift_tasks" in exprs_of(p) for p in panels),
          "a bytes-per-live-task panel")
    return dashboard


def check_provisioning():
    base = os.path.join(HERE, "provisioning")
    docs = {}
    for rel in ("datasources/prometheus.yml", "dashboards/taskwatch.yml", "alerting/taskwatch-alerts.yml"):
        try:
            docs[rel] = load_yaml(os.path.join(base, rel))
            check(isinstance(docs[rel], dict) and docs[rel].get("apiVersion") == 1, f"provisioning/{rel} parses, apiVersion 1")
        except (OSError, yaml.YAMLError) as error:
            check(False, f"provisioning/{rel} parses: {error}")
    if len(docs) != 3:
        return
    sources = docs["datasources/prometheus.yml"].get("datasources", [])
    uids = {s.get("uid") for s in sources if s.get("type") == "prometheus"}
    check(bool(uids), "a Prometheus data source with a uid is provisioned")
    providers = docs["dashboards/taskwatch.yml"].get("providers", [])
    check(any(p.get("type") == "file" and p.get("options", {}).get("path") for p in providers), "a file dashboard provider with a path")

    alerts = {r["alert"]: r for g in load_yaml(os.path.join(ROOT, "prometheus", "alerts.yml"))["groups"] for r in g["rules"]}
    groups = docs["alerting/taskwatch-alerts.yml"].get("groups", [])
    titles = set()
    for group in groups:
        check(bool(group.get("folder")) and bool(group.get("interval")) and group.get("orgId") is not None, f"alert group {group.get('name')}: folder, interval, orgId")
        for rule in group.get("rules", []):
            title = rule.get("title")
            titles.add(title)
            prom = alerts.get(title)
            if not check(prom is not None, f"Grafana alert {title} mirrors an alert of prometheus/alerts.yml"):
                continue
            check(bool(rule.get("uid")) and len(rule["uid"]) <= 40, f"{title}: uid of at most 40 characters")
            check(rule.get("for") == prom.get("for", "0s"), f"{title}: same hold as Prometheus ({prom.get('for')})")
            check(rule.get("labels", {}).get("severity") == prom["labels"]["severity"], f"{title}: same severity")
            check(rule.get("annotations", {}).get("runbook_url") == prom["annotations"]["runbook_url"], f"{title}: same runbook_url")
            check(bool(rule.get("annotations", {}).get("summary")) and bool(rule.get("annotations", {}).get("description")), f"{title}: summary and description")
            refs = {d.get("refId") for d in rule.get("data", [])}
            check(rule.get("condition") in refs, f"{title}: condition {rule.get('condition')} is one of its queries")
            for d in rule.get("data", []):
                if d.get("datasourceUid") == "__expr__":
                    expression = d.get("model", {}).get("expression")
                    check(expression in refs, f"{title}: expression {d.get('refId')} reads an existing query ({expression})")
                else:
                    check(d.get("datasourceUid") in uids, f"{title}: query {d.get('refId')} uses the provisioned data source")
                    check(bool(d.get("model", {}).get("expr")), f"{title}: query {d.get('refId')} has an expr")
    for name in ("SwiftTaskGrowth", "SwiftTaskFlood", "SwiftExecutorStarvation", "SwiftExecutorStalled",
                 "TaskWatchClientStalled", "TaskWatchDown"):
        check(name in titles, f"Grafana-managed alert {name} is provisioned")
    # Same thresholds as the Prometheus rules.
    thresholds = {}
    for group in groups:
        for rule in group.get("rules", []):
            for d in rule.get("data", []):
                conditions = d.get("model", {}).get("conditions") or []
                if d.get("model", {}).get("type") == "threshold" and conditions:
                    thresholds[rule["title"]] = (conditions[0]["evaluator"]["type"], conditions[0]["evaluator"]["params"][0])
    expected = {
        "SwiftTaskGrowth": (("gt", 50 / 60), "process:swift_tasks:deriv3m > 50 / 60"),
        "SwiftTaskFlood": (("gt", 5000), "process:swift_tasks:sum > 5000"),
        "SwiftExecutorStarvation": (("gt", 0.1), '{quantile="0.99"} > 0.1'),
        "SwiftExecutorStalled": (("lt", 1), "(increase(swift_executor_lag_seconds_count[2m])) == 0"),
        "TaskWatchClientStalled": (("gt", 60), "taskwatch_client_last_report_timestamp_seconds > 60"),
        "TaskWatchDown": (("lt", 1), 'up{job="taskwatch"} == 0'),
    }
    for name, ((op, value), prom_text) in expected.items():
        got = thresholds.get(name)
        check(got is not None and got[0] == op and abs(got[1] - value) < 1e-6 and prom_text in alerts[name]["expr"],
              f"{name}: Grafana threshold {got} matches prometheus/alerts.yml ({prom_text})")


def main():
    records = recording_rule_names()
    dashboard = check_dashboard()
    check_provisioning()
    for expr in ("sum by (process, pid) (swift_tasks)", "x and on (job, process, pid) y",
                 "sum without (instance) (swift_tasks)"):
        check(pid_without_instance(expr), f"the pid-without-instance rule catches {expr}")
    check(not pid_without_instance("sum by (instance, process, pid) (swift_tasks) and on (instance, pid) y"),
          "the pid-without-instance rule passes by/on clauses with instance")
    items = dashboard_exprs.all_exprs(ROOT)
    kinds = {i["kind"] for i in items}
    check({"record", "alert", "panel", "annotation", "variable", "grafana-alert"} <= kinds, f"expressions of every kind listed: {sorted(kinds)}")
    if dashboard is not None:
        n_targets = sum(len(p.get("targets", [])) for p in dashboard_exprs.iter_panels(dashboard["panels"]))
        check(sum(1 for i in items if i["kind"] == "panel") == n_targets, "dashboard_exprs lists every panel target")
    for item in items:
        check_expr(item, records)
    check_promtool_parses([i for i in items if i["kind"] not in ("record", "alert")])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
