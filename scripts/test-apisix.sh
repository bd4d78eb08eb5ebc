#!/usr/bin/env bash
# End-to-end tests inside real Apache APISIX (3.8.1 and 3.18.0): this project installed as a user would, APISIX run
# as a standalone data plane against the fake API server with real backends on loopback, every scenario with this
# project's module (asserted) and with APISIX's built-in one (reported beside it). e2e/apisix/ holds the harness.
#
#   ./scripts/test-apisix.sh [--group NAME ...] [--module ours|builtin]    (arguments go to e2e/apisix/run.py)
#
# Builds both APISIX versions with the shared build-apisix.sh into target/ (reused when built) and installs the debug
# build (K8S_DISC_E2E_PROFILE=release: the release build, e.g. to compare start-up times with `--group startup`).
# Exit 0: passed, with a `RESULT:` line; 77: skipped (no shared material), the reason on the last line; else failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tool=$(scripts/shared-material.sh)/tools/build-apisix.sh
if [ ! -x "$tool" ]; then
    echo "test-apisix: skipped"
    echo "$tool not found (set K8S_DISC_SHARED to the shared test material)"
    exit 77
fi

if ! command -v python3 >/dev/null || ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3 >/dev/null
fi

t0=$SECONDS
echo "== build APISIX 3.8.1 and 3.18.0 ($tool)"
dist_381=$("$tool" --version 3.8.1 "$root/target/apisix-3.8.1" | tail -n 1)
dist_318=$("$tool" --version 3.18.0 "$root/target/apisix-3.18.0" | tail -n 1)
echo "APISIX built in $((SECONDS - t0)) s: $dist_381, $dist_318"

profile=${K8S_DISC_E2E_PROFILE:-debug}
echo "== build and install k8s-disc (make install PROFILE=$profile)"
cargo build --workspace --quiet
prefix=$root/target/apisix-e2e/k8s-disc
rm -rf "$prefix"
make --no-print-directory install PROFILE="$profile" PREFIX="$prefix" >/dev/null

# Every documented setting through APISIX's own CLI (`apisix init`), on both versions; only in a whole run.
cli=()
if [ $# -eq 0 ]; then
    for dist in "$dist_381" "$dist_318"; do
        echo "== documented settings through APISIX's CLI: $dist"
        out=$(mktemp)
        python3 e2e/apisix-cli/check-config.py "$dist" "$prefix" | tee "$out"
        cli+=("$(grep -E '^CLI: ' "$out" | tail -n 1 | sed 's/^CLI: //')")
        rm -f "$out"
    done
fi

echo "== end-to-end scenarios"
out=$(mktemp)
rc=0
python3 e2e/apisix/run.py --apisix "3.8.1=$dist_381" --apisix "3.18.0=$dist_318" --prefix "$prefix" \
    --fake-apiserver "$root/target/debug/k8s-fake-apiserver" --work "$root/target/apisix-e2e/work" "$@" \
    | tee "$out" || rc=$?
result=$(grep -E '^RESULT: ' "$out" | tail -n 1 | sed 's/^RESULT: //')
rm -f "$out"
echo "test-apisix: $((SECONDS - t0)) s in all"
[ "$rc" -eq 0 ] || exit 1
if [ ${#cli[@]} -gt 0 ]; then
    result="$result; CLI: $(printf '%s, ' "${cli[@]}" | sed 's/, $//')"
fi
echo "RESULT: $result"
