#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) and prints one summary line per
# target: executions, coverage (libFuzzer's `cov` edges and `ft` features), corpus size,
# peak RSS and whether it crashed.
#
#   fuzz/run-all.sh 600                 # ten minutes each, one at a time
#   JOBS=2 fuzz/run-all.sh 600          # two targets at once (one per core)
#   TARGETS="api sdp" fuzz/run-all.sh 30
#
# The checked-in seeds (fuzz/corpus/<target>) are read, never written: new inputs go to
# fuzz/work/corpus/<target>, logs to fuzz/work/logs, crashes to fuzz/artifacts/<target>
# (all ignored by git). cargo-fuzz needs nightly flags; on a stable toolchain
# RUSTC_BOOTSTRAP=1 allows them. Exits non-zero if any target crashed.
set -euo pipefail

SECONDS_EACH=${1:-60}
JOBS=${JOBS:-1}
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

ALL_TARGETS=$(cargo fuzz list)
TARGETS=${TARGETS:-$ALL_TARGETS}

# Build once up front (all targets), so the runs below start at once and in parallel.
cargo fuzz build >/dev/null 2>&1 || cargo fuzz build
mkdir -p work/logs

run_one() {
    local t=$1
    mkdir -p "work/corpus/$t" "corpus/$t"
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: bounded memory.
    if cargo fuzz run "$t" "work/corpus/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"work/logs/$t.log" 2>&1; then
        echo ok >"work/logs/$t.status"
    else
        echo CRASH >"work/logs/$t.status"
    fi
}

running=0
for t in $TARGETS; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=0
printf '%-14s %12s %10s %8s %8s %7s %9s %s\n' target execs exec/s cov ft corpus rss_mb result
for t in $TARGETS; do
    log="work/logs/$t.log"
    status=$(cat "work/logs/$t.status" 2>/dev/null || echo missing)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo ?)
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo ?)
    corp=$(echo "$last" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*' || echo ?)
    printf '%-14s %12s %10s %8s %8s %7s %9s %s\n' "$t" "$execs" "$rate" "$cov" "$ft" "$corp" "$rss" "$status"
    [ "$status" = ok ] || failed=1
done
exit $failed
