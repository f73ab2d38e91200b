#!/usr/bin/env bash
# `make run`: starts taskwatchd with its defaults (socket and port chosen for the current user) and the
# demo workload reporting to it, until Ctrl-C.
set -euo pipefail
bin=${1:?usage: run-demo.sh BIN_DIR [PORT]}
port=${2:-10101}

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin/taskwatchd" --web.listen-address ":$port" &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fs "http://localhost:$port/-/ready" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "run-demo: taskwatchd exited; see its message above" >&2; exit 1; }
    sleep 0.1
done

# A small server-like workload that leaks one request task in 50, so the growth is visible.
TASKWATCH_PROCESS=demo "$bin/TaskWatchDemo" --rate 200 --leak 50 &
pids+=($!)

cat <<MSG

taskwatchd is serving http://localhost:$port/metrics with the demo workload reporting to it.
Try:  curl -s localhost:$port/metrics | grep '^swift_tasks'
      $bin/taskwatch top --address localhost:$port
Ctrl-C stops both.

MSG
wait -n "${pids[@]}"
