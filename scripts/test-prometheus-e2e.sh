#!/usr/bin/env bash
# End-to-end test of the Prometheus rules, alerts and dashboard queries in a real Prometheus server
# (Debian's `prometheus` package) scraping the real taskwatchd every second while the instrumented demo
# and raw senders run; see scripts/prometheus_e2e.py for what it starts and checks. Loopback only;
# stops every process it started. About 25-30 s; bounded to about 3 minutes when something is broken.
#
# Usage: scripts/test-prometheus-e2e.sh BIN_DIR   (BIN_DIR holds taskwatchd, taskwatch, TaskWatchDemo;
#        `make test-prometheus` passes `swift build --show-bin-path`)
set -euo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BIN_DIR   (e.g. \"\$(swift build --show-bin-path)\")" >&2
    exit 2
fi
command -v prometheus >/dev/null || { echo "$0: prometheus not found (Debian: apt-get install prometheus)" >&2; exit 1; }
python3 -c 'import yaml' 2>/dev/null || { echo "$0: python3 needs PyYAML (Debian: apt-get install python3-yaml)" >&2; exit 1; }

exec python3 "$(dirname "$0")/prometheus_e2e.py" --bin-dir "$1"
