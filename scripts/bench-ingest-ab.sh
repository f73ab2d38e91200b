#!/usr/bin/env bash
# Side by side batched ingest of two taskwatchd binaries (say, two revisions), in one run:
#   [PER_FRAME=4] scripts/bench-ingest-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]
# Each round starts a fresh daemon of each side in turn (the order alternating), blasts it with
# bench/seqpacket_blast.c (4 senders x 1000 series, PER_FRAME updates per frame: 100 by default, as
# `make bench` feeds its batched scenario; 4 as in its small-frame one) and reads the daemon's CPU time from /proc. Prints updates per daemon CPU-second
# for A and B and their ratio B/A per round, then the median ratio. Runs of one binary apart differ by
# up to ±20 % on a shared 2-core VM, which is why only the per-round ratio is worth reading.
set -euo pipefail

A=${1:?usage: bench-ingest-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]}
B=${2:?usage: bench-ingest-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]}
ROUNDS=${3:-12}
SECONDS_PER_SIDE=${4:-3}
PER_FRAME=${PER_FRAME:-100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

WORK=$(mktemp -d /tmp/taskwatch-ingest-ab.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$WORK"' EXIT INT TERM
cc -O2 -Wall -o "$WORK/blast" "$ROOT/bench/seqpacket_blast.c"
TICKS=$(getconf CLK_TCK)

# updates_per_cpu_second BINARY: one fresh daemon, one blast.
updates_per_cpu_second() {
    local socket="$WORK/ingest.sock" pid cpu0 cpu1 updates
    rm -f "$socket"
    "$1" --web.listen-address 127.0.0.1:19440 --ingest.socket "$socket" >>"$WORK/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
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
ratios=()
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        a=$(updates_per_cpu_second "$A"); b=$(updates_per_cpu_second "$B")
    else
        b=$(updates_per_cpu_second "$B"); a=$(updates_per_cpu_second "$A")
    fi
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')
    ratios+=("$ratio")
    echo "round $round: A $a, B $b updates per CPU-second, B/A $ratio"
done
printf 'median B/A: %s\n' "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')"
