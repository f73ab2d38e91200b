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
log=$(mktemp)
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT INT TERM

# Its log goes to the terminal and to $log: ready means this daemon logged the ports it listens on and
# answers /-/ready. /-/ready alone could be another daemon's on the same port, which made a daemon that
# could not bind look like it was serving.
"$bin/taskwatchd" "${daemon_args[@]}" 2> >(tee "$log" >&2) &
pids+=($!)
ready=false
for _ in $(seq 1 100); do
    kill -0 "${pids[0]}" 2>/dev/null || { echo "run-demo: taskwatchd exited; see its message above" >&2; exit 1; }
    if grep -q " ports=" "$log" && curl -fs "http://localhost:$port/-/ready" >/dev/null 2>&1; then
        ready=true
        break
    fi
    sleep 0.1
done
$ready || { echo "run-demo: taskwatchd did not become ready on port $port within 10 s" >&2; exit 1; }

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
