#!/usr/bin/env bash
# `make run`: starts taskwatchd with its defaults (socket chosen for the current user) on PORT, and the
# demo workload reporting to it, until Ctrl-C. A non-empty SOCKET replaces the default ingest socket for
# both, so a second checkout can run beside the first (`make run PORT=10102 SOCKET=/tmp/tw2.sock`).
set -euo pipefail
bin=${1:?usage: run-demo.sh BIN_DIR [PORT [SOCKET]]}
port=${2:-10101}
socket=${3:-}

daemon_args=(--web.listen-address ":$port")
# TASKWATCH_PROCESS names the demo's series; TASKWATCH_SOCKET is set only when SOCKET is, so that
# without it the demo finds the daemon's default socket exactly as any client would. A TASKWATCH_SOCKET
# or TASKWATCH_DISABLED exported in the caller's shell (a service owner's setting) would send the demo
# elsewhere or silence it, and /metrics would show nothing: neither is inherited.
demo_env=(-u TASKWATCH_SOCKET -u TASKWATCH_DISABLED TASKWATCH_PROCESS=demo)
if [ -n "$socket" ]; then
    daemon_args+=(--ingest.socket "$socket")
    demo_env+=(TASKWATCH_SOCKET="$socket")
fi

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin/taskwatchd" "${daemon_args[@]}" &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fs "http://localhost:$port/-/ready" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "run-demo: taskwatchd exited; see its message above" >&2; exit 1; }
    sleep 0.1
done

# A small server-like workload that leaks one request task in 50, so the growth is visible.
env "${demo_env[@]}" "$bin/TaskWatchDemo" --rate 200 --leak 50 &
pids+=($!)

cat <<MSG

taskwatchd is serving http://localhost:$port/metrics with the demo workload reporting to it.
Try:  curl -s localhost:$port/metrics | grep '^swift_tasks'
      $bin/taskwatch top --address localhost:$port
Ctrl-C stops both.

MSG
wait -n "${pids[@]}"
