#!/usr/bin/env bash
# The client's benchmarks, side by side in one run, against the real taskwatchd. Prints a table and
# writes bench/results/client.json. Standalone: builds what it needs in release.
#
#   spawn + complete       ordo-one/benchmark: plain Task vs monitored (Task.detached and Task {}) pairs
#   counter increment      ordo-one/benchmark: our swift-metrics backend vs swift-prometheus 2.x
#   reporter CPU           idle process, /proc/self/stat utime+stime over IDLE_SECONDS, reporter at the
#                          default 10 ms and with the Stress trait (1 ms), minus a process without it
#   never blocks           spawn-heavy workload with the daemon healthy, absent, SIGSTOPped and
#                          SIGKILLed mid-run, alternating, best of ROUNDS each
#   fidelity               a burst's latency to /metrics, and swift_tasks_peak against its true height
#
# Environment: IDLE_SECONDS (60), ROUNDS (7), SPAWNLOAD_TASKS (500000), SKIP_ORDO=1 to skip the
# ordo-one suite, RESULTS (bench/results/client.json).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/Benchmarks"
IDLE_SECONDS="${IDLE_SECONDS:-60}"
ROUNDS="${ROUNDS:-7}"
SPAWNLOAD_TASKS="${SPAWNLOAD_TASKS:-500000}"
RESULTS="${RESULTS:-$ROOT/bench/results/client.json}"
SWIFT="${SWIFT:-swift}"

WORK="$(mktemp -d /tmp/tw-bench.XXXXXX)"
DAEMON_PIDS=()
cleanup() {
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

# 1. ordo-one/benchmark: spawn and counter pairs, the reporter connected to the healthy daemon.
mkdir -p "$WORK/ordo"
if [ "${SKIP_ORDO:-0}" != 1 ]; then
    log "ordo-one/benchmark suite ClientOverhead"
    (cd "$BENCH" && "$SWIFT" package --disable-sandbox benchmark --target ClientOverhead --no-progress \
        --format jmh --path "$WORK/ordo" >&2)
fi

# 2. Reporter CPU over an idle period: the three processes side by side, so they share the machine's noise.
log "reporter CPU over ${IDLE_SECONDS}s idle (10 ms, 1 ms with Stress, and a baseline without TaskWatch)"
"$MEASURE" idle-cpu "$IDLE_SECONDS" >"$WORK/idle-production.json" &
IDLE_A=$!
"$MEASURE_STRESS" idle-cpu "$IDLE_SECONDS" >"$WORK/idle-stress.json" &
IDLE_B=$!
"$MEASURE" idle-cpu "$IDLE_SECONDS" --baseline >"$WORK/idle-baseline.json" &
IDLE_C=$!
wait "$IDLE_A" "$IDLE_B" "$IDLE_C"
# The floor under any thread that wakes every 10 ms or every 2.5 ms (the reporter samples four times
# per report), measured on this machine.
"$MEASURE" wake-floor 10000 5 >"$WORK/wake-10000.json"
"$MEASURE" wake-floor 2500 5 >"$WORK/wake-2500.json"
"$MEASURE" wake-floor 250 5 >"$WORK/wake-250.json"

# 3. Never blocks: the same spawn workload against a healthy, absent, stopped and killed daemon.
log "spawn workload of $SPAWNLOAD_TASKS tasks, $ROUNDS rounds of healthy / absent / stopped / killed"
: >"$WORK/spawnload.jsonl"
run_mode() {
    local mode="$1" out
    case "$mode" in
    healthy)
        out="$(TASKWATCH_SOCKET="$WORK/main.sock" "$MEASURE" spawnload "$SPAWNLOAD_TASKS")"
        ;;
    absent)
        out="$(TASKWATCH_SOCKET="$WORK/nobody-here.sock" "$MEASURE" spawnload "$SPAWNLOAD_TASKS")"
        ;;
    stopped)
        kill -STOP "$MAIN_PID"
        out="$(TASKWATCH_SOCKET="$WORK/main.sock" "$MEASURE" spawnload "$SPAWNLOAD_TASKS")"
        kill -CONT "$MAIN_PID"
        ;;
    killed)
        start_daemon killed
        local victim="$DAEMON_PID"
        (sleep 0.1 && kill -KILL "$victim" 2>/dev/null) &
        local killer=$!
        out="$(TASKWATCH_SOCKET="$WORK/killed.sock" "$MEASURE" spawnload "$SPAWNLOAD_TASKS")"
        wait "$killer" || true
        wait "$victim" 2>/dev/null || true
        ;;
    esac
    printf '{"mode":"%s","result":%s}\n' "$mode" "$out" >>"$WORK/spawnload.jsonl"
}
for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order every round so no mode always runs first or last.
    modes=(healthy absent stopped killed)
    shift_by=$(((round - 1) % 4))
    for index in 0 1 2 3; do run_mode "${modes[$(((index + shift_by) % 4))]}"; done
done

# 4. Fidelity: a 200 ms burst of 10,000 tasks, at 10 ms and with Stress at 1 ms.
log "burst fidelity"
"$MEASURE" burst 10000 200 "$MAIN_PORT" >"$WORK/burst-production.json"
"$MEASURE_STRESS" burst 10000 200 "$MAIN_PORT" >"$WORK/burst-stress.json"

stop_daemon "$MAIN_PID"

mkdir -p "$(dirname "$RESULTS")"
python3 "$ROOT/scripts/bench-client-report.py" "$WORK" "$RESULTS" "$ROUNDS" "$SPAWNLOAD_TASKS" "$IDLE_SECONDS"
