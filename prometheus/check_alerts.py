#!/usr/bin/env python3
"""Checks the alert definitions against the conventions promtool cannot see.

Every alert in alerts.yml and alerts-kubernetes.yml has a severity label (critical, warning or info), a summary, a description
and a runbook_url pointing at docs/runbooks.md#<lowercase alert name>, and that section exists; and
prometheus/tests/ holds, for every alert, at least one case where it fires and one where it must not.
alerts.yml, which serves systemd hosts too, reads no kube-state-metrics series (kube_*): those alerts
belong in alerts-kubernetes.yml, in groups named *.kubernetes.
Prints "N passed, N failed" and exits non-zero on any failure.
"""
import glob
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# alerts.yml for every platform; alerts-kubernetes.yml for the DaemonSet, from kube-state-metrics.
ALERT_FILES = ("alerts.yml", "alerts-kubernetes.yml")
RUNBOOK_BASE = "https://github.com/taskwatch/taskwatch/blob/main/docs/runbooks.md#"

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}")


def main():
    alerts = []
    for name in ALERT_FILES:
        with open(os.path.join(HERE, name)) as f:
            groups = yaml.safe_load(f)["groups"]
        alerts.extend(r for g in groups for r in g["rules"] if "alert" in r)
        for group in groups:
            reads_kube = any(re.search(r"\bkube_\w+", r["expr"]) for r in group["rules"])
            if name == "alerts.yml":
                check(not reads_kube, f"alerts.yml group {group['name']}: no kube-state-metrics series (alerts-kubernetes.yml)")
            else:
                check(group["name"].endswith(".kubernetes"), f"{name} group {group['name']}: named *.kubernetes")
    runbook_path = os.path.join(ROOT, "docs", "runbooks.md")
    anchors = set()
    if os.path.exists(runbook_path):
        with open(runbook_path) as f:
            for line in f:
                m = re.match(r"^#{2,3} (\S+)\s*$", line)
                if m:
                    anchors.add(m.group(1).lower())
    fires, quiet = set(), set()
    for path in sorted(glob.glob(os.path.join(HERE, "tests", "*.yml"))):
        with open(path) as f:
            for test in yaml.safe_load(f)["tests"]:
                for case in test.get("alert_rule_test", []):
                    (fires if case.get("exp_alerts") else quiet).add(case["alertname"])

    names = [a["alert"] for a in alerts]
    check(len(names) == len(set(names)), "alert names are unique")
    for alert in alerts:
        name = alert["alert"]
        check(re.fullmatch(r"(Swift|TaskWatch)[A-Z][A-Za-z]+", name) is not None, f"{name}: CamelCase name")
        labels = alert.get("labels", {})
        annotations = alert.get("annotations", {})
        check(labels.get("severity") in ("critical", "warning", "info"), f"{name}: severity label")
        for key in ("summary", "description", "runbook_url"):
            check(bool(annotations.get(key)), f"{name}: {key} annotation")
        check(annotations.get("runbook_url") == RUNBOOK_BASE + name.lower(), f"{name}: runbook_url is {RUNBOOK_BASE}{name.lower()}")
        check(name.lower() in anchors, f"{name}: docs/runbooks.md has a section '## {name}'")
        check(name in fires, f"{name}: a test case where it fires")
        check(name in quiet, f"{name}: a test case where it must not fire")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
