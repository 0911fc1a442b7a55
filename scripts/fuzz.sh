#!/usr/bin/env bash
# Runs cargo-fuzz targets of fuzz/ for SECONDS each (default 60; all
# targets unless some are named) and prints, per target, the executions,
# the CPU seconds used (user + system, of the fuzzer and its build step)
# and whether it found anything. A finding is left in
# fuzz/artifacts/<target>/ and makes the script exit 1.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz wants a nightly compiler for its sanitizer flags; on stable,
# RUSTC_BOOTSTRAP=1 lets rustc accept them (as .ci/run does). Install the
# tool with `cargo install cargo-fuzz --locked --version 0.13.2`.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
seconds=${1:-60}
[ "$#" -gt 0 ] && shift
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
failed=0
TIMEFORMAT='%U %S'
printf '%-16s %12s %8s  %s\n' target executions cpu_s result
for t in "${targets[@]}"; do
    log=$(mktemp)
    status=0
    { time cargo fuzz run "$t" -- -max_total_time="$seconds" -rss_limit_mb=4096 \
        -timeout=60 -print_final_stats=1 >"$log" 2>&1; } 2>"$log.time" || status=$?
    execs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    cpu=$(awk '{printf "%.0f", $1 + $2}' "$log.time")
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        result="FOUND (exit $status): see fuzz/artifacts/$t/"
        failed=1
        tail -n 60 "$log"
    fi
    printf '%-16s %12s %8s  %s\n' "$t" "${execs:-?}" "$cpu" "$result"
    rm -f "$log" "$log.time"
done
exit "$failed"
