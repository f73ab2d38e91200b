#!/usr/bin/env bash
# Checks the TaskWatch Prometheus rules: syntax (promtool check rules, alerts-kubernetes.yml too), the
# example configuration (promtool check config, which loads the rule files it names; not the Kubernetes
# ones), and behaviour (promtool test rules).
set -euo pipefail
cd "$(dirname "$0")"

command -v promtool >/dev/null || { echo "prometheus/test.sh: promtool not found (Debian: apt-get install prometheus)" >&2; exit 1; }

promtool check rules rules.yml alerts.yml alerts-kubernetes.yml
promtool check config prometheus.yml
promtool test rules tests/*.yml
python3 check_alerts.py
