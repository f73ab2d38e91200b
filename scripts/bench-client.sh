#!/usr/bin/env bash
# The client's benchmarks, side by side in one run, against the real taskwatchd. Prints a table and
# writes bench/results/client.json. Standalone: builds what it needs in release.
#
#   spawn + complete       plain against counted spawns (ticket, Task {} and Task.detached) in
#                          interleaved rounds, plus controls (SpawnPairs): ordo-one/benchmark
#                          `spawnRatio` and the same pairs in a plain process (ClientMeasure spawn-ab); the
#                          separate spawn* benchmarks give absolute times and exact malloc counts
#   counter increment,     ordo-one/benchmark: our swift-metrics backend vs swift-prometheus 2.x in
#   gauge set              interleaved rounds (metricsRatio); the separate benchmarks give absolute times
#   reporter CPU           idle process, /proc/self/stat utime+stime over IDLE_SECONDS, reporter at the
#                          default 10 ms and with the Stress trait (1 ms), minus a process without it;
#                          and busy: the reporter thread's share with 10, 100 and 1,400 monitors spawning
#   never blocks           ClientMeasure never-blocks: one process owns a taskwatchd (and a bystander
#                          one) and runs CYCLES cycles of SPAWNLOAD_TASKS-task rounds, each round with
#                          the daemon stopped, stopped with its socket filled first, absent or killed
#                          mid-round paired with a matched healthy round next to it, checking after
#                          every return that the series came back complete; a bootstrap interval for
#                          each median, and the reports each kind of round dropped
#   fidelity               a burst's latency to /metrics, and swift_tasks_peak against its true height
#
# Environment: IDLE_SECONDS (60), CYCLES (300), SPAWNLOAD_TASKS (30000), SKIP_ORDO=1 to skip the ordo-one
# suite (spawn-ab still runs), RESULTS
# (bench/results/client.json).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/Benchmarks"
IDLE_SECONDS="${IDLE_SECONDS:-60}"
CYCLES="${CYCLES:-300}"
SPAWNLOAD_TASKS="${SPAWNLOAD_TASKS:-30000}"
RESULTS="${RESULTS:-$ROOT/bench/results/client.json}"
SWIFT="${SWIFT:-swift}"

WORK="$(mktemp -d /tmp/tw-bench.XXXXXX)"
DAEMON_PIDS=()
# Measuring processes run in the background ignore Ctrl-C (a script's background jobs do), so an
# interrupted run stops them here rather than leaving them to run out their period.
BACKGROUND_PIDS=()
cleanup() {
    for pid in "${BACKGROUND_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${DAEMON_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '==> %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_daemon NAME: starts taskwatchd on $WORK/NAME.sock and a free port; sets DAEMON_PID, DAEMON_PORT.
start_daemon() {
    local name="$1"
    DAEMON_PORT="$(free_port)"
    rm -f "$WORK/$name.sock"
    "$DAEMON" --ingest.socket "$WORK/$name.sock" --web.listen-address "127.0.0.1:$DAEMON_PORT" \
        --client.grace 2s --peak.window 15s 2>>"$WORK/$name.log" &
    DAEMON_PID=$!
    DAEMON_PIDS+=("$DAEMON_PID")
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$DAEMON_PORT/-/ready" >/dev/null && return 0
        sleep 0.05
    done
    echo "taskwatchd did not become ready" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}

stop_daemon() {
    kill -CONT "$1" 2>/dev/null || true
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

log "building taskwatchd and the measurement tools (release)"
(cd "$ROOT" && "$SWIFT" build -c release --product taskwatchd >&2)
DAEMON="$(cd "$ROOT" && "$SWIFT" build -c release --show-bin-path)/taskwatchd"
(cd "$BENCH" && "$SWIFT" build -c release --product ClientMeasure >&2)
MEASURE="$(cd "$BENCH" && "$SWIFT" build -c release --show-bin-path)/ClientMeasure"
(cd "$BENCH" && "$SWIFT" build -c release --product ClientMeasure --traits Stress --scratch-path .build-stress >&2)
MEASURE_STRESS="$(cd "$BENCH" && "$SWIFT" build -c release --traits Stress --scratch-path .build-stress \
    --show-bin-path)/ClientMeasure"

start_daemon main
MAIN_PID="$DAEMON_PID"
MAIN_PORT="$DAEMON_PORT"
export TASKWATCH_SOCKET="$WORK/main.sock"

# 1. Spawn cost and counter increment: ordo-one/benchmark, the reporter connected to the healthy daemon.
mkdir -p "$WORK/ordo"
if [ "${SKIP_ORDO:-0}" != 1 ]; then
    log "ordo-one/benchmark suite ClientOverhead"
    (cd "$BENCH" && "$SWIFT" package --disable-sandbox benchmark --target ClientOverhead --no-progress \
        --format jmh --path "$WORK/ordo" >&2)
fi
# The same spawn pairs in a plain process. The ordo-one runner blocks one of the two cooperative
# threads while an async benchmark runs, so its figures are those of a one-thread pool (see
# docs/client-benchmarks.md); the one-CPU run below measures that regime without the runner.
log "spawn pairs in interleaved rounds (ClientMeasure spawn-ab), on every CPU and on one"
"$MEASURE" spawn-ab 1000 200 >"$WORK/spawn-ab.json"
# One CPU, one cooperative thread: the regime the ordo-one runner measures in on a 2-core machine.
taskset -c 0 "$MEASURE" spawn-ab 1000 200 >"$WORK/spawn-ab-1cpu.json"

# 2. Reporter CPU over an idle period: the three processes side by side, so they share the machine's noise.
log "reporter CPU over ${IDLE_SECONDS}s idle (10 ms, 1 ms with Stress, and a baseline without TaskWatch)"
"$MEASURE" idle-cpu "$IDLE_SECONDS" >"$WORK/idle-production.json" &
IDLE_A=$!
BACKGROUND_PIDS+=("$IDLE_A")
"$MEASURE_STRESS" idle-cpu "$IDLE_SECONDS" >"$WORK/idle-stress.json" &
IDLE_B=$!
BACKGROUND_PIDS+=("$IDLE_B")
"$MEASURE" idle-cpu "$IDLE_SECONDS" --baseline >"$WORK/idle-baseline.json" &
IDLE_C=$!
BACKGROUND_PIDS+=("$IDLE_C")
wait "$IDLE_A" "$IDLE_B" "$IDLE_C"
# The floor under any thread that wakes every 10 ms or every 2.5 ms (the reporter samples four times
# per report), measured on this machine.
"$MEASURE" wake-floor 10000 5 >"$WORK/wake-10000.json"
"$MEASURE" wake-floor 2500 5 >"$WORK/wake-2500.json"
"$MEASURE" wake-floor 250 5 >"$WORK/wake-250.json"
# The reporter in a busy process: every monitor spawning, no daemon (the sampling and reports alone).
for monitors in 10 100 1400; do
    TASKWATCH_SOCKET="$WORK/absent.sock" "$MEASURE" busy-monitors "$monitors" 4 >"$WORK/busy-$monitors.json"
done

# 3. Never blocks: one process, its own daemon, the four daemon states interleaved.
log "never blocks: $CYCLES cycles of $SPAWNLOAD_TASKS-task rounds, daemon stopped / stopped with a full socket / absent / killed, each paired with a matched healthy round"
"$MEASURE" never-blocks "$DAEMON" "$CYCLES" "$SPAWNLOAD_TASKS" >"$WORK/never-blocks.json"

# 4. Fidelity: a 200 ms burst of 10,000 tasks, at 10 ms and with Stress at 1 ms.
log "burst fidelity"
"$MEASURE" burst 10000 200 "$MAIN_PORT" >"$WORK/burst-production.json"
"$MEASURE_STRESS" burst 10000 200 "$MAIN_PORT" >"$WORK/burst-stress.json"

stop_daemon "$MAIN_PID"

mkdir -p "$(dirname "$RESULTS")"
python3 "$ROOT/scripts/bench-client-report.py" "$WORK" "$RESULTS" "$IDLE_SECONDS"
