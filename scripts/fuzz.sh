#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after another on one core, and prints
# the executions and crashes per target. Not part of CI. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a
# stable toolchain RUSTC_BOOTSTRAP=1 enables the nightly flags it uses.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# New corpus entries go to fuzz/corpus/TARGET (ignored by git), seeded from fuzz/seeds/TARGET; crashing inputs to
# fuzz/artifacts/TARGET. Reproduce one with: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz TARGET FILE
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

cargo fuzz build -O --fuzz-dir fuzz

logs="$(mktemp -d)"
printf '%-16s %12s %8s %s\n' target executions seconds crashes
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    # -jobs/-workers 1: one core; the rss limit keeps a runaway allocation a finding rather than an OOM kill.
    if ! cargo fuzz run -O --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -rss_limit_mb=2048 -timeout=10 \
        >"$logs/$t.log" 2>&1; then
        status=1
    fi
    # With -jobs, libFuzzer writes the fuzzing output to fuzz-0.log in the current directory.
    if [ -f fuzz-0.log ]; then
        mv fuzz-0.log "$logs/$t.fuzz.log"
    fi
    cat "$logs/$t.fuzz.log" >>"$logs/$t.log" 2>/dev/null || true
    runs=$( (grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$logs/$t.log" || true) | tail -1 | awk '{print $2, $5}')
    if [ -z "$runs" ]; then
        # Stopped by a crash: the last status line has the execution count.
        runs="$( (grep -oE '^#[0-9]+' "$logs/$t.log" || true) | tail -1 | tr -d '#') ?"
    fi
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    printf '%-16s %12s %8s %s\n' "$t" ${runs:-"? ?"} "$((after - before))"
    if [ "$after" -gt "$before" ]; then
        (grep -E 'panicked|ERROR: libFuzzer|SUMMARY' "$logs/$t.log" || true) | head -3 | sed 's/^/    /'
        find "fuzz/artifacts/$t" -type f -newer "$logs" | sed 's/^/    artifact: /'
    fi
done
echo "logs: $logs"
exit "$status"
