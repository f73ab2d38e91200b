#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each for FUZZ_SECONDS (default 60), starting from the
# committed seed corpus plus whatever earlier runs found. Prints executions and crashes per target and
# in total; exits non-zero if any target crashed (the reproducer is left in Fuzz/artifacts/).
set -euo pipefail
cd "$(dirname "$0")/../Fuzz"
seconds="${FUZZ_SECONDS:-60}"
targets=(FuzzFrameDecoder FuzzHTTPHeaders)
mkdir -p artifacts .work
total_runs=0
total_crashes=0
for target in "${targets[@]}"; do
    swift build -c release --sanitize fuzzer --product "$target" --scratch-path .build-fuzz >/dev/null
    binary="$(swift build -c release --sanitize fuzzer --scratch-path .build-fuzz --show-bin-path)/$target"
    # New inputs go to a scratch corpus so the committed seeds stay small.
    mkdir -p ".work/$target"
    log=".work/$target.log"
    status=0
    SWIFT_BACKTRACE=enable=no "$binary" ".work/$target" "corpus/$target" -max_total_time="$seconds" \
        -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target-" >"$log" 2>&1 || status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    runs=${runs:-0}
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=1
        tail -30 "$log" >&2
    fi
    echo "fuzz: $target ${seconds}s executions=$runs crashes=$crashes"
    total_runs=$((total_runs + runs))
    total_crashes=$((total_crashes + crashes))
done
echo "fuzz: total executions=$total_runs crashes=$total_crashes"
[ "$total_crashes" -eq 0 ]
