#!/usr/bin/env python3
"""Lists every PromQL expression TaskWatch ships, ready to evaluate against a live Prometheus.

Sources: the recording and alerting rules (prometheus/rules.yml, prometheus/alerts.yml), the Grafana
dashboard (grafana/taskwatch.json: panel targets, annotation queries, and the series behind each
label_values() variable query), and the Grafana-managed alert rules
(grafana/provisioning/alerting/*.yml). Grafana's variables are substituted so each expression is
plain PromQL: $instance, $process, $pid, $task (any spelling: $x, ${x}, ${x:regex}) become .*, $__rate_interval
becomes 1m, $__interval 15s, $__range 1h.

Usage: dashboard_exprs.py [--root DIR]   prints a JSON array of
  {"source": file, "where": what in that file, "kind": "record"|"alert"|"panel"|"annotation"|
   "variable"|"grafana-alert", "expr": PromQL}
A later test can POST each "expr" to /api/v1/query and check that it parses and, once clients run,
returns data.
"""
import argparse
import glob
import json
import os
import re
import sys

import yaml

DEFAULT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Grafana's built-in interval variables, longest names first so $__range_s is not read as $__range.
BUILTINS = [
    ("__rate_interval_ms", "60000"),
    ("__rate_interval", "1m"),
    ("__interval_ms", "15000"),
    ("__interval", "15s"),
    ("__range_ms", "3600000"),
    ("__range_s", "3600"),
    ("__range", "1h"),
]
# Dashboard template variables that select label values.
VARIABLE_VALUE = ".*"


def substitute(expr, variables=("process", "pid", "task")):
    """Replaces Grafana variables in expr with values a plain Prometheus query accepts."""
    for name, value in BUILTINS:
        expr = re.sub(r"\$\{" + name + r"(?::[a-z]+)?\}", value, expr)
        expr = re.sub(r"\$" + name + r"\b", value, expr)
    for name in variables:
        expr = re.sub(r"\$\{" + name + r"(?::[a-z]+)?\}", VARIABLE_VALUE, expr)
        expr = re.sub(r"\$" + name + r"\b", VARIABLE_VALUE, expr)
    return expr


def rule_exprs(root):
    out = []
    for name in ("rules.yml", "alerts.yml"):
        path = os.path.join(root, "prometheus", name)
        with open(path) as f:
            doc = yaml.safe_load(f)
        for group in doc["groups"]:
            for rule in group["rules"]:
                kind = "record" if "record" in rule else "alert"
                label = rule.get("record") or rule.get("alert")
                extra = rule.get("labels") or {}
                if kind == "record" and extra:
                    label += "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(extra.items())) + "}"
                out.append({"source": f"prometheus/{name}", "where": f"{group['name']}: {label}", "kind": kind,
                            "expr": rule["expr"].strip()})
    return out


def iter_panels(panels):
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def variable_names(dashboard):
    return [v["name"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") != "datasource"]


def label_values_selector(query):
    """The series selector inside label_values(selector, label), or None for label_values(label)."""
    if isinstance(query, dict):
        query = query.get("query", "")
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query or "", re.S)
    return m.group(1).strip() if m else None


def dashboard_exprs(root):
    rel = "grafana/taskwatch.json"
    with open(os.path.join(root, rel)) as f:
        dashboard = json.load(f)
    names = variable_names(dashboard)
    out = []
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append({"source": rel, "where": f"panel {panel['id']} '{panel.get('title', '')}' target {target.get('refId', '')}",
                            "kind": "panel", "expr": substitute(target["expr"], names)})
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            out.append({"source": rel, "where": f"annotation '{annotation.get('name', '')}'", "kind": "annotation",
                        "expr": substitute(annotation["expr"], names)})
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            selector = label_values_selector(variable.get("query"))
            if selector:
                out.append({"source": rel, "where": f"variable {variable['name']}", "kind": "variable",
                            "expr": substitute(selector, names)})
    return out


def grafana_alert_exprs(root):
    out = []
    for path in sorted(glob.glob(os.path.join(root, "grafana", "provisioning", "alerting", "*.yml"))):
        rel = os.path.relpath(path, root)
        with open(path) as f:
            doc = yaml.safe_load(f)
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                for query in rule.get("data", []):
                    expr = (query.get("model") or {}).get("expr")
                    if expr:
                        out.append({"source": rel, "where": f"{group['name']}: {rule['title']} {query['refId']}",
                                    "kind": "grafana-alert", "expr": expr.strip()})
    return out


def all_exprs(root=DEFAULT_ROOT):
    return rule_exprs(root) + dashboard_exprs(root) + grafana_alert_exprs(root)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=DEFAULT_ROOT, help="repository root (default: this file's parent's parent)")
    args = parser.parse_args()
    json.dump(all_exprs(args.root), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
