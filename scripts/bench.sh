#!/usr/bin/env bash
# The benchmark: builds the release library, the fake API server and the parse-floor program, then runs
# benches/gateway.py (real nginx workers against the fake API server at 1k, 10k, 50k and 150k endpoints). Prints
# each figure beside its target and writes target/bench/results.json and .md. Options go to the driver, e.g.
#   ./scripts/bench.sh --sizes 1k,10k --samples 50
# Then real APISIX 3.18.0 with k8s-disc and with APISIX's built-in kubernetes module side by side (10k and 150k
# endpoints; --apisix-sizes, --no-apisix), when the shared build tool is found ($K8S_DISC_SHARED, else ../shared or
# ../../shared): APISIX is built into target/apisix-3.18.0 (reused when built); otherwise that part is skipped and
# the reason printed.
# --scale adds the larger scale: 4 clusters of the 150k size in one gateway (600k endpoints, one fake API server
# each) and one service of 50k endpoints, each figure beside the 150k single cluster with its per-endpoint ratio
# (--scale-clusters, --scale-size, --scale-service); about 30 s on 2 cores with only that, e.g.
#   ./scripts/bench.sh --sizes 150k --scale --no-micro --no-api-cost --no-apisix
# Takes about 4 to 5 minutes on 2 cores, of which about 1.5 minutes for the APISIX side by side (plus about 70 s
# to build APISIX the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
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

apisix=()
case " $* " in
*" --no-apisix "* | *" --apisix-dist "* | *" --apisix-dist="*) ;;
*)
    tool=$(scripts/shared-material.sh)/tools/build-apisix.sh
    if [ -x "$tool" ]; then
        t0=$SECONDS
        echo "bench: building APISIX 3.18.0 ($tool)" >&2
        if dist=$("$tool" --version 3.18.0 "$root/target/apisix-3.18.0" | tail -n 1); then
            echo "bench: APISIX 3.18.0 ready in $((SECONDS - t0)) s: $dist" >&2
            apisix=(--apisix-dist "$dist")
        else
            apisix=(--apisix-skip "the APISIX 3.18.0 build failed ($tool)")
        fi
    else
        apisix=(--apisix-skip "$tool not found (set K8S_DISC_SHARED to the shared test material)")
    fi
    ;;
esac
exec python3 benches/gateway.py "${apisix[@]}" "$@"
