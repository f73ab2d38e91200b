#!/usr/bin/env bash
# Side by side ingest of two taskwatchd binaries (say, two revisions), in one run:
#   [PER_FRAME=4] [MEASURE=scrape] scripts/bench-ingest-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]
# Each round starts a fresh daemon of each side in turn (the order alternating) and blasts it with
# bench/seqpacket_blast.c. Prints a figure for A and B and their ratio B/A per round, then the median
# ratio. Runs of one binary apart differ by up to ±20 % on a shared 2-core VM, which is why only the
# per-round ratio is worth reading. The figure:
# - MEASURE=cpu (default): updates per daemon CPU-second (from /proc) under 4 senders x 1000 series,
#   PER_FRAME updates per frame: 100 by default, as `make bench` feeds its batched scenario; 4 as in
#   its small-frame one.
# - MEASURE=scrape: the median milliseconds of 100 plain scrapes of 10 000 held series while 4 senders
#   blast 4-update frames, as `make bench` measures a scrape "during full ingest"; lower is better.
set -euo pipefail

A=${1:?usage: bench-ingest-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]}
B=${2:?usage: bench-ingest-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]}
ROUNDS=${3:-12}
SECONDS_PER_SIDE=${4:-3}
PER_FRAME=${PER_FRAME:-100}
MEASURE=${MEASURE:-cpu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/ab-rounds.sh"

WORK=$(mktemp -d /tmp/taskwatch-ingest-ab.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$WORK"' EXIT INT TERM
cc -O2 -Wall -o "$WORK/blast" "$ROOT/bench/seqpacket_blast.c"
TICKS=$(getconf CLK_TCK)

# start_daemon BINARY: a fresh daemon on $socket, its pid in $pid.
socket="$WORK/ingest.sock"
start_daemon() {
    rm -f "$socket"
    "$1" --web.listen-address 127.0.0.1:19440 --ingest.socket "$socket" >>"$WORK/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do [ -S "$socket" ] && curl -fs -o /dev/null 127.0.0.1:19440/-/ready && break; sleep 0.05; done
}

# scrape_ms_under_ingest BINARY: one fresh daemon holding 10 000 series, scraped while blasted.
scrape_ms_under_ingest() {
    local hold blast
    start_daemon "$1"
    "$WORK/blast" --path "$socket" --senders 1 --series 10000 --duration 0 --hold 600 >"$WORK/hold.out" &
    hold=$!
    "$WORK/blast" --path "$socket" --senders 4 --series 64 --per-frame 4 --duration 600 >"$WORK/busy.out" &
    blast=$!
    for _ in $(seq 200); do
        grep -q '^ready' "$WORK/hold.out" 2>/dev/null && grep -q '^ready' "$WORK/busy.out" 2>/dev/null && break
        sleep 0.05
    done
    sleep 0.3
    : >"$WORK/curl.cfg"
    for _ in $(seq 100); do printf 'url = "http://127.0.0.1:19440/metrics"\noutput = "/dev/null"\n' >>"$WORK/curl.cfg"; done
    curl -s -K "$WORK/curl.cfg" -w '%{time_total}\n' | awk '{printf "%.6f\n", $1 * 1000}' | median | awk '{printf "%.3f", $1}'
    kill "$blast" "$hold" "$pid"
    wait "$blast" "$hold" "$pid" 2>/dev/null || true
}

# updates_per_cpu_second BINARY: one fresh daemon, one blast.
updates_per_cpu_second() {
    local cpu0 cpu1 updates
    start_daemon "$1"
    cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    updates=$("$WORK/blast" --path "$socket" --senders 4 --series 1000 --per-frame "$PER_FRAME" \
        --duration "$SECONDS_PER_SIDE" | grep -v '^ready' | sed 's/.*"updates":\([0-9]*\).*/\1/')
    cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    awk -v u="$updates" -v c0="$cpu0" -v c1="$cpu1" -v t="$TICKS" 'BEGIN {printf "%d", u / ((c1 - c0) / t)}'
}

echo "A: $A"
echo "B: $B"
measure=updates_per_cpu_second unit="updates per CPU-second"
[ "$MEASURE" = scrape ] && measure=scrape_ms_under_ingest unit="ms median scrape under ingest"
ratios=()
for round in $(seq "$ROUNDS"); do
    read -r a b ratio < <(ab_pair "$round" "$measure" "$A" "$B")
    ratios+=("$ratio")
    echo "round $round: A $a, B $b $unit, B/A $ratio"
done
printf 'median B/A: %s\n' "$(printf '%s\n' "${ratios[@]}" | median)"
