#!/usr/bin/env bash
# Side by side HTTP serving of two taskwatchd binaries (say, two revisions), in one run:
#   scripts/bench-http-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]
# Starts both on loopback with their own ingest sockets, then runs wrk against /-/healthy in
# alternating rounds (A then B, B then A, ...) in four shapes: one keep-alive connection (how
# Prometheus scrapes), 32 keep-alive connections, and a new connection per request with 1 and 4
# clients. Prints each shape's median of the per-round ratios B/A of requests per second, and the
# median latency of a new connection per request. wrk shares the machine with both daemons, so on
# 2 cores the saturated shapes measure scheduling as much as the daemon.
set -euo pipefail

A=${1:?usage: bench-http-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]}
B=${2:?usage: bench-http-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]}
ROUNDS=${3:-6}
SECONDS_PER_ROUND=${4:-2}
. "$(cd "$(dirname "$0")" && pwd)/ab-rounds.sh"
command -v wrk >/dev/null || { echo "bench-http-ab: wrk is needed (apt-get install -y wrk)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/taskwatch-http-ab.XXXXXX)
# Both daemons are this shell's only background jobs.
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$WORK"' EXIT INT TERM

PORT_A=19411 PORT_B=19412
"$A" --web.listen-address "127.0.0.1:$PORT_A" --ingest.socket "$WORK/a.sock" >"$WORK/a.log" 2>&1 &
"$B" --web.listen-address "127.0.0.1:$PORT_B" --ingest.socket "$WORK/b.sock" >"$WORK/b.log" 2>&1 &
for port in $PORT_A $PORT_B; do
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.1; done
done

# rate PORT CONNECTIONS [wrk options...]: requests per second of one wrk run.
rate() {
    local port=$1 connections=$2
    shift 2
    wrk -t1 -c"$connections" -d"${SECONDS_PER_ROUND}s" "$@" "http://127.0.0.1:$port/-/healthy" |
        awk '/Requests\/sec/ {print $2}'
}

# shape NAME CONNECTIONS [wrk options...]: the median over rounds of B's rate over A's.
shape() {
    local name=$1 connections=$2 round ratios=()
    shift 2
    for round in $(seq "$ROUNDS"); do
        ratios+=("$(ab_pair "$round" rate $PORT_A $PORT_B "$connections" "$@" | awk '{print $3}')")
    done
    printf '%-44s B/A = %s  (rounds: %s)\n' "$name" "$(printf '%s\n' "${ratios[@]}" | median)" "${ratios[*]}"
}

echo "A: $A"
echo "B: $B"
shape "keep-alive, 1 connection" 1
shape "keep-alive, 32 connections" 32
shape "new connection per request, 1 client" 1 -H "Connection: close"
shape "new connection per request, 4 clients" 4 -H "Connection: close"
for side in A B; do
    port=$PORT_A; [ $side = B ] && port=$PORT_B
    latency=$(wrk -t1 -c1 -d"${SECONDS_PER_ROUND}s" -H "Connection: close" --latency \
        "http://127.0.0.1:$port/-/healthy" | awk '$1 == "50%" {print $2}')
    echo "median latency, new connection per request, $side: $latency"
done
