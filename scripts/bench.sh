#!/usr/bin/env bash
# The benchmark: builds the release library, the fake API server and the parse-floor program, then runs
# benches/gateway.py (real nginx workers against the fake API server at 1k, 10k, 50k and 150k endpoints). Prints
# each figure beside its target and writes target/bench/results.json. Options go to the driver, e.g.
#   ./scripts/bench.sh --sizes 1k,10k --samples 50
# Takes about 5 minutes for every size on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
if ! command -v wrk >/dev/null; then
    echo "bench: installing wrk (gateway throughput)"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends wrk >/dev/null ||
        echo "bench: wrk unavailable; the gateway throughput is skipped" >&2
fi
cargo build --release --quiet -p k8s-disc --lib --example parse_floor
cargo build --release --quiet -p k8s-fake-apiserver
exec python3 benches/gateway.py "$@"
