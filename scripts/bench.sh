#!/usr/bin/env bash
# The daemon benchmark of issue 6: `make bench` (or BENCH_QUICK=1 make bench for a ~3 minute run).
#
# Builds taskwatchd (release) and the C tools in bench/, starts the peers (collectd with statsd in and
# write_prometheus out, the Prometheus Pushgateway) on loopback as our own processes with their own
# temporary config, feeds everyone the same series, and measures ingest, scrape, memory and freshness.
# Every scenario writes bench/results/<scenario>.json; bench/peers.py merges them into
# bench/results/latest.json, prints one table and bench/results/scrape.png is plotted with gnuplot.
# Every process started here is stopped on exit; every load loop is bounded by a duration or a count.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/results"
QUICK=${BENCH_QUICK:-0}
WORK=$(mktemp -d /tmp/taskwatch-bench.XXXXXX)
PIDS=()

cleanup() {
    local pid
    # A blaster's senders may be stopped (interleaved_ratios): a stopped process keeps a TERM pending,
    # and its parent (and so this wait) would wait for it forever. Resume them first.
    for pid in "${PIDS[@]}"; do pkill -CONT -P "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

log() { echo "bench: $*" >&2; }

# --- Setup ---------------------------------------------------------------------------------------------
packages=(prometheus-pushgateway collectd-core libprotobuf-c1 gnuplot-nox curl python3)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cd "$ROOT"
swift build -c release >&2
BIN=$(swift build -c release --show-bin-path)
cc -O2 -Wall -o "$WORK/blast" bench/seqpacket_blast.c
cc -O2 -Wall -o "$WORK/sink" bench/seqpacket_sink.c
mkdir -p "$OUT"
# client.json comes from scripts/bench-client.sh, run just before by `make bench`.
find "$OUT" -maxdepth 1 -name "*.json" ! -name client.json -delete

if [ "$QUICK" = 1 ]; then
    INGEST_SECONDS=3; INGEST_ROUNDS=2; SIZES=(10000 100000); REPS_SCALE=2; PEER_SIZES=(10000 100000); FRESH_REPS=30
else
    INGEST_SECONDS=8; INGEST_ROUNDS=4; SIZES=(10000 100000 1000000); REPS_SCALE=1; PEER_SIZES=(10000 100000 1000000)
    FRESH_REPS=100
fi
TW_PORT=19301 PG_PORT=19302 CD_PORT=19303 STATSD_PORT=19304
SOCK="$WORK/ingest.sock"

cat >"$OUT/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "nproc": $(nproc),
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')",
 "kernel": "$(uname -r)", "mode": "$([ "$QUICK" = 1 ] && echo quick || echo full)",
 "command": "make bench$([ "$QUICK" = 1 ] && echo ' (BENCH_QUICK=1)')",
 "revision": "$(git rev-parse --short HEAD)"}
EOF

# --- Helpers --------------------------------------------------------------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
clk_tck=$(getconf CLK_TCK)

start_daemon() {
    rm -f "$SOCK"
    "$BIN/taskwatchd" --ingest.socket "$SOCK" --web.listen-address "127.0.0.1:$TW_PORT" \
        --ingest.max-series 1000000 --ingest.max-series-per-client 10000 --client.grace 30s \
        --log.level warn 2>>"$WORK/taskwatchd.log" &
    DAEMON=$!
    PIDS+=("$DAEMON")
    for _ in $(seq 100); do [ -S "$SOCK" ] && curl -sf -o /dev/null "127.0.0.1:$TW_PORT/-/ready" && return; sleep 0.05; done
    log "taskwatchd did not start"; exit 1
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Starts the blaster in the background; returns once every sender has declared its series.
start_blast() { # out-file args...
    local out=$1; shift
    "$WORK/blast" "$@" >"$out" &
    BLAST=$!
    PIDS+=("$BLAST")
    for _ in $(seq 1200); do grep -q '^ready' "$out" 2>/dev/null && return; sleep 0.05; done
    log "blaster not ready: $*"; exit 1
}

# scrape_stats URL COUNT plain|gzip -> {"median_ms","p99_ms","mean_ms","bytes","n"} on one connection.
scrape_stats() {
    local url=$1 count=$2 encoding=$3 cfg="$WORK/curl.cfg" flags=()
    : >"$cfg"
    for _ in $(seq "$count"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"; done
    [ "$encoding" = gzip ] && flags=(--compressed)
    curl -s --max-time 600 "${flags[@]}" -K "$cfg" -w '%{time_total} %{size_download}\n' | sort -n | awk '
        { t[NR] = $1 * 1000; s += $1 * 1000; b = $2 }
        END { p = int(NR * 0.99); if (p < 1) p = 1; if (p > NR) p = NR
              printf "{\"median_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f, \"bytes\": %d, \"n\": %d}", \
                  (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2), t[p], s / NR, b, NR }'
}
# interleaved_ratios URL COUNT plain|gzip BLASTER_PID -> {"ratios": [...], "median_ratio": R}
# Scrape time under ingest ÷ idle, measured in 8 pairs of blocks of COUNT/8 scrapes: the blaster's
# senders stopped (SIGSTOP) for the idle block and running for the busy one, the order alternating, so
# both sides of each ratio share the machine's phase. Measuring all idle scrapes and then all busy ones
# let a slow phase of this shared VM decide the figure (2.7 in one run, 0.8 in the next).
interleaved_ratios() {
    local url=$1 count=$(($2 / 8 > 4 ? $2 / 8 : 4)) encoding=$3 blaster=$4 block idle busy ratios=()
    measure_block() { # STOP|CONT -> median ms of one block
        pkill "-$1" -P "$blaster" || true
        sleep 0.2
        scrape_stats "$url" "$count" "$encoding" | sed 's/.*"median_ms": \([0-9.]*\).*/\1/'
    }
    for block in 1 2 3 4 5 6 7 8; do
        if [ $((block % 2)) = 1 ]; then
            idle=$(measure_block STOP); busy=$(measure_block CONT)
        else
            busy=$(measure_block CONT); idle=$(measure_block STOP)
        fi
        ratios+=("$(awk -v a="$idle" -v b="$busy" 'BEGIN {printf "%.3f", b / a}')")
    done
    pkill -CONT -P "$blaster" || true
    printf '{"ratios": [%s], "median_ratio": %s}' "$(IFS=,; echo "${ratios[*]}")" \
        "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print (v[NR / 2] + v[NR / 2 + 1]) / 2}')"
}

# alternating_ratio URL_A URL_B COUNT plain|gzip -> {"ratios": [...], "median_ratio": R}
# A's median scrape time ÷ B's, in 8 pairs of blocks of COUNT/8 scrapes (at least 4) with both servers
# up, the order alternating: the two servers' scrapes share the machine's phase, where measuring one
# and then, minutes later, the other compared two moments of this shared VM.
alternating_ratio() {
    local a=$1 b=$2 count=$(($3 / 8 > 4 ? $3 / 8 : 4)) encoding=$4 block time_a time_b ratios=()
    median_of() { scrape_stats "$1" "$count" "$encoding" | sed 's/.*"median_ms": \([0-9.]*\).*/\1/'; }
    for block in 1 2 3 4 5 6 7 8; do
        if [ $((block % 2)) = 1 ]; then
            time_a=$(median_of "$a"); time_b=$(median_of "$b")
        else
            time_b=$(median_of "$b"); time_a=$(median_of "$a")
        fi
        ratios+=("$(awk -v a="$time_a" -v b="$time_b" 'BEGIN {printf "%.4f", a / b}')")
    done
    printf '{"ratios": [%s], "median_ratio": %s}' "$(IFS=,; echo "${ratios[*]}")" \
        "$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR] = $1} END {print (v[NR / 2] + v[NR / 2 + 1]) / 2}')"
}

reps_for() { # series -> repetitions
    local n=$1 r
    if [ "$n" -le 10000 ]; then r=200; elif [ "$n" -le 100000 ]; then r=60; else r=10; fi
    echo $((r / REPS_SCALE))
}
label() { case $1 in 10000) echo 10k ;; 100000) echo 100k ;; 1000000) echo 1m ;; esac; }

# --- 1. Ingest against the raw ceiling (the minimal C receiver), in alternating rounds ------------------
# ingest_sink SENDERS: the C sink blasted for INGEST_SECONDS, into $OUT/ingest_sink_SENDERS.json.
ingest_sink() {
    local k="$1" sink
    rm -f "$WORK/sink.sock"
    "$WORK/sink" "$WORK/sink.sock" "$INGEST_SECONDS" >"$OUT/ingest_sink_$k.json" &
    sink=$!
    PIDS+=("$sink")
    for _ in $(seq 100); do [ -S "$WORK/sink.sock" ] && break; sleep 0.02; done
    "$WORK/blast" --path "$WORK/sink.sock" --senders "$k" --series 64 --per-frame 4 \
        --duration "$INGEST_SECONDS" | grep -v '^ready' >"$WORK/blast_sink_$k.json"
    wait "$sink" || true
}

# ingest_taskwatchd NAME SENDERS SERIES PER_FRAME: a fresh daemon, blasted for INGEST_SECONDS; its CPU
# and frame count go with the blaster's figures into $OUT/ingest_taskwatchd_NAME.json.
ingest_taskwatchd() {
    local name="$1" senders="$2" series="$3" per_frame="$4" cpu0 cpu1 received
    start_daemon
    cpu0=$(cpu_ticks "$DAEMON")
    "$WORK/blast" --path "$SOCK" --senders "$senders" --series "$series" --per-frame "$per_frame" \
        --duration "$INGEST_SECONDS" | grep -v '^ready' >"$WORK/blast_tw_$name.json"
    cpu1=$(cpu_ticks "$DAEMON")
    received=$(curl -s "127.0.0.1:$TW_PORT/metrics" | awk '/^taskwatch_messages_received_total / {print $2}')
    python3 - "$WORK/blast_tw_$name.json" "$cpu0" "$cpu1" "$clk_tck" "$received" \
        >"$OUT/ingest_taskwatchd_$name.json" <<'EOF'
import json, sys
blast = json.load(open(sys.argv[1]))
cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
blast["daemon_cpu_seconds"] = cpu
blast["daemon_frames_received"] = int(float(sys.argv[5]))
blast["cpu_seconds_per_million_updates"] = round(cpu / blast["updates"] * 1e6, 4)
blast["updates_per_cpu_second"] = round(blast["updates"] / cpu) if cpu else None
print(json.dumps(blast))
EOF
    stop_pid "$DAEMON"
}

# The sink and taskwatchd take turns, the order alternating, INGEST_ROUNDS rounds per sender count, and
# the goal is the median of the per-round ratios (frames/s ÷ sink messages/s): one after the other, a slow
# phase of this shared VM could fall on either side. The files ingest_sink_K and ingest_taskwatchd_K
# keep the last round's absolute figures.
for k in 1 64; do
    ratios=()
    for round in $(seq "$INGEST_ROUNDS"); do
        log "ingest: $k sender(s), round $round of $INGEST_ROUNDS: C sink and taskwatchd, ${INGEST_SECONDS}s each"
        if [ $((round % 2)) = 1 ]; then
            ingest_sink "$k"; ingest_taskwatchd "$k" "$k" 64 4
        else
            ingest_taskwatchd "$k" "$k" 64 4; ingest_sink "$k"
        fi
        ratios+=("$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["frames_per_s"] / json.load(open(sys.argv[2]))["messages_per_s"], 4))' \
            "$OUT/ingest_taskwatchd_$k.json" "$OUT/ingest_sink_$k.json")")
    done
    python3 -c 'import json, statistics, sys; r = [float(x) for x in sys.argv[1:]]; print(json.dumps({"ratios": r, "median_ratio": statistics.median(r)}))' \
        "${ratios[@]}" >"$OUT/ingest_vs_sink_$k.json"
done

# --- 2b. The same, batched like collectd's datagrams: 100 updates per frame -----------------------------
# collectd's statsd input is fed 100 lines per datagram; this run gives taskwatchd the same batching, so
# the per-core comparison measures parsing and bookkeeping rather than the per-message syscall.
log "ingest: taskwatchd, 4 senders, 100 updates per frame, ${INGEST_SECONDS}s"
ingest_taskwatchd batched 4 1000 100

# --- 3. collectd: statsd in, write_prometheus out -------------------------------------------------------
start_collectd() {
    mkdir -p "$WORK/collectd"
    cat >"$WORK/collectd/collectd.conf" <<EOF
Hostname "bench"
FQDNLookup false
Interval 1
BaseDir "$WORK/collectd"
PIDFile "$WORK/collectd/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
WriteQueueLimitHigh 0
LoadPlugin statsd
LoadPlugin write_prometheus
<Plugin statsd>
  Host "127.0.0.1"
  Port "$STATSD_PORT"
  DeleteCounters false
  DeleteGauges false
</Plugin>
<Plugin write_prometheus>
  Host "127.0.0.1"
  Port "$CD_PORT"
</Plugin>
EOF
    /usr/sbin/collectd -f -C "$WORK/collectd/collectd.conf" >>"$WORK/collectd.log" 2>&1 &
    COLLECTD=$!
    PIDS+=("$COLLECTD")
    for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$CD_PORT/metrics" && return; sleep 0.05; done
    log "collectd did not start"; exit 1
}

log "ingest: collectd statsd, ${INGEST_SECONDS}s"
start_collectd
cpu0=$(cpu_ticks "$COLLECTD")
python3 bench/peers.py statsd-blast 127.0.0.1 "$STATSD_PORT" "$INGEST_SECONDS" 1000 >"$WORK/statsd_blast.json"
sleep 2.5 # two flush intervals
cpu1=$(cpu_ticks "$COLLECTD")
python3 bench/peers.py sum "http://127.0.0.1:$CD_PORT/metrics" 'bench_c.' >"$WORK/statsd_sum.json"
python3 - "$WORK/statsd_blast.json" "$WORK/statsd_sum.json" "$cpu0" "$cpu1" "$clk_tck" \
    >"$OUT/ingest_collectd.json" <<'EOF'
import json, sys
blast, seen = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
cpu = (int(sys.argv[4]) - int(sys.argv[3])) / int(sys.argv[5])
received = seen["sum"]
print(json.dumps({
    "lines_sent": blast["lines_sent"], "lines_received": received, "seconds": blast["seconds"],
    "series_seen": seen["count"], "loss_percent": round(100 * (1 - received / blast["lines_sent"]), 2),
    "lines_per_s": round(received / blast["seconds"]), "collectd_cpu_seconds": cpu,
    "cpu_seconds_per_million_updates": round(cpu / received * 1e6, 4) if received else None,
    "lines_per_cpu_second": round(received / cpu) if cpu else None}))
EOF
stop_pid "$COLLECTD"

# --- 4. Scrape and memory: taskwatchd -------------------------------------------------------------------
for n in "${SIZES[@]}"; do
    name=$(label "$n")
    reps=$(reps_for "$n")
    log "scrape: taskwatchd $name series, $reps scrapes each"
    start_daemon
    sleep 0.3
    rss0=$(rss_kb "$DAEMON")
    start_blast "$WORK/populate.out" --path "$SOCK" --senders $((n / 10000)) --series 10000 --duration 0 --hold 900
    populate=$BLAST
    sleep 0.3
    rss1=$(rss_kb "$DAEMON")
    held=$(curl -s "127.0.0.1:$TW_PORT/metrics" | awk '/^taskwatch_series / {print $2}')
    plain=$(scrape_stats "http://127.0.0.1:$TW_PORT/metrics" "$reps" plain)
    gzip=$(scrape_stats "http://127.0.0.1:$TW_PORT/metrics" "$reps" gzip)
    rss2=$(rss_kb "$DAEMON")
    busy=null busy_gzip=null ingest=null blocks_plain=null blocks_gzip=null
    if [ "$n" -le 100000 ]; then
        # Full ingest: 4 more clients blasting values frames while the scrapes run.
        log "scrape: taskwatchd $name series during full ingest"
        start_blast "$WORK/busy.out" --path "$SOCK" --senders 4 --series 64 --per-frame 4 --duration 600
        busy_blast=$BLAST
        sleep 0.5
        cpu0=$(cpu_ticks "$DAEMON")
        busy=$(scrape_stats "http://127.0.0.1:$TW_PORT/metrics" "$reps" plain)
        busy_gzip=$(scrape_stats "http://127.0.0.1:$TW_PORT/metrics" "$reps" gzip)
        cpu1=$(cpu_ticks "$DAEMON")
        stop_pid "$busy_blast"
        ingest=$(grep -v '^ready' "$WORK/busy.out" || echo null)
        [ -n "$ingest" ] || ingest=null
        log "scrape: taskwatchd $name series, idle and under ingest in alternating blocks"
        start_blast "$WORK/blocks.out" --path "$SOCK" --senders 4 --series 64 --per-frame 4 --duration 600
        blocks_blast=$BLAST
        blocks_plain=$(interleaved_ratios "http://127.0.0.1:$TW_PORT/metrics" "$reps" plain "$blocks_blast")
        blocks_gzip=$(interleaved_ratios "http://127.0.0.1:$TW_PORT/metrics" "$reps" gzip "$blocks_blast")
        stop_pid "$blocks_blast"
    fi
    cat >"$OUT/scrape_taskwatchd_$name.json" <<EOF
{"series": $held, "plain": $plain, "gzip": $gzip, "plain_under_ingest": $busy, "gzip_under_ingest": $busy_gzip,
 "ingest_during_scrapes": $ingest,
 "under_ingest_blocks_plain": $blocks_plain, "under_ingest_blocks_gzip": $blocks_gzip,
 "rss_kb_empty": $rss0, "rss_kb_populated": $rss1, "rss_kb_after_scrapes": $rss2,
 "rss_bytes_per_series": $(((rss1 - rss0) * 1024 / n)), "rss_bytes_per_series_after_scrapes": $(((rss2 - rss0) * 1024 / n))}
EOF
    stop_pid "$populate"
    stop_pid "$DAEMON"
done

# --- 5. Freshness ---------------------------------------------------------------------------------------
log "freshness: $FRESH_REPS bursts"
start_daemon
python3 bench/peers.py fresh "$SOCK" "http://127.0.0.1:$TW_PORT/metrics" "$FRESH_REPS" >"$OUT/freshness.json"
stop_pid "$DAEMON"

# --- 6. Scrape and memory: the Pushgateway and collectd -------------------------------------------------
for n in "${PEER_SIZES[@]}"; do
    name=$(label "$n")
    reps=$(reps_for "$n")
    reps=$((reps / 2 > 4 ? reps / 2 : 4))
    log "scrape: pushgateway $name series, $reps scrapes each"
    prometheus-pushgateway --web.listen-address="127.0.0.1:$PG_PORT" --persistence.file="" \
        --log.level=warn 2>>"$WORK/pushgateway.log" &
    pg=$!
    PIDS+=("$pg")
    for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$PG_PORT/-/ready" && break; sleep 0.05; done
    rss0=$(rss_kb "$pg")
    python3 bench/peers.py pushgw "http://127.0.0.1:$PG_PORT" "$n"
    sleep 0.5
    rss1=$(rss_kb "$pg")
    plain=$(scrape_stats "http://127.0.0.1:$PG_PORT/metrics" "$reps" plain)
    gzip=$(scrape_stats "http://127.0.0.1:$PG_PORT/metrics" "$reps" gzip)
    rss2=$(rss_kb "$pg")
    cat >"$OUT/scrape_pushgateway_$name.json" <<EOF
{"series": $n, "plain": $plain, "gzip": $gzip, "rss_kb_empty": $rss0, "rss_kb_populated": $rss1,
 "rss_kb_after_scrapes": $rss2, "rss_bytes_per_series": $(((rss1 - rss0) * 1024 / n))}
EOF
    if [ "$n" = 100000 ]; then
        # The gzip goal compares the two servers: a taskwatchd holding the same 100 k series beside the
        # Pushgateway, scraped in alternating blocks.
        log "scrape: taskwatchd ÷ pushgateway, 100k series, alternating blocks"
        start_daemon
        start_blast "$WORK/populate.out" --path "$SOCK" --senders 10 --series 10000 --duration 0 --hold 900
        populate=$BLAST
        sleep 0.3
        vs_plain=$(alternating_ratio "http://127.0.0.1:$TW_PORT/metrics" "http://127.0.0.1:$PG_PORT/metrics" \
            "$reps" plain)
        vs_gzip=$(alternating_ratio "http://127.0.0.1:$TW_PORT/metrics" "http://127.0.0.1:$PG_PORT/metrics" \
            "$reps" gzip)
        printf '{"plain": %s, "gzip": %s}\n' "$vs_plain" "$vs_gzip" >"$OUT/scrape_vs_pushgateway_100k.json"
        stop_pid "$populate"
        stop_pid "$DAEMON"
    fi
    stop_pid "$pg"

    [ "$n" -gt 100000 ] && continue # collectd already drops most of 100 k gauges
    log "scrape: collectd $name gauges"
    start_collectd
    rss0=$(rss_kb "$COLLECTD")
    python3 bench/peers.py statsd-gauges 127.0.0.1 "$STATSD_PORT" "$n"
    sleep 2.5
    rss1=$(rss_kb "$COLLECTD")
    held=$(python3 bench/peers.py sum "http://127.0.0.1:$CD_PORT/metrics" 'bench_value.' | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
    plain=$(scrape_stats "http://127.0.0.1:$CD_PORT/metrics" "$reps" plain)
    gzip=$(scrape_stats "http://127.0.0.1:$CD_PORT/metrics" "$reps" gzip)
    cat >"$OUT/scrape_collectd_$name.json" <<EOF
{"series_sent": $n, "series_held": $held, "plain": $plain, "gzip": $gzip, "rss_kb_empty": $rss0,
 "rss_kb_populated": $rss1}
EOF
    stop_pid "$COLLECTD"
done

# --- 7. Report ------------------------------------------------------------------------------------------
python3 bench/peers.py report "$OUT" | tee "$OUT/latest.txt"
python3 - "$OUT" >"$WORK/plot.dat" <<'EOF'
import json, os, sys
directory = sys.argv[1]
for n, name in ((10000, "10k"), (100000, "100k"), (1000000, "1m")):
    row = [str(n)]
    for who in ("taskwatchd", "pushgateway", "collectd"):
        for encoding in ("plain", "gzip"):
            path = os.path.join(directory, "scrape_%s_%s.json" % (who, name))
            value = json.load(open(path))[encoding]["median_ms"] if os.path.exists(path) else None
            row.append("NaN" if value is None else str(value))
    print(" ".join(row))
EOF
gnuplot <<EOF
set terminal pngcairo size 900,560
set output "$OUT/scrape.png"
set title "GET /metrics, median time against series held (loopback, $(nproc) cores)"
set logscale xy
set xlabel "series"
set ylabel "ms"
set key top left
set grid
plot "$WORK/plot.dat" using 1:2 with linespoints title "taskwatchd plain", \
     "" using 1:3 with linespoints title "taskwatchd gzip", \
     "" using 1:4 with linespoints title "pushgateway plain", \
     "" using 1:5 with linespoints title "pushgateway gzip", \
     "" using 1:6 with linespoints title "collectd plain", \
     "" using 1:7 with linespoints title "collectd gzip"
EOF
log "wrote $OUT/latest.json, $OUT/latest.txt and $OUT/scrape.png"
