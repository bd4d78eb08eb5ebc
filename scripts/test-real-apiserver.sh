#!/usr/bin/env bash
# The engine tests against a real Kubernetes API server: builds kube-apiserver and etcd from the Go module proxy
# (testenv/, into target/testenv/bin; Go's caches make later builds quick), starts them on loopback, runs the
# engine tests (tests/real_apiserver.rs) and the check of the fake against them (tests/real_differential.rs), and
# stops them.
#
# Exit 0 = passed (last lines: the Kubernetes version and `RESULT: ...`); 77 = skipped (Go missing or too old,
# the reason on the last line); anything else = failed.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "$1"; exit 77; }
command -v go >/dev/null || skip "skipped: Go is not installed (the real-server tests build kube-apiserver and etcd with Go >= 1.26)"
go_version=$(GOTOOLCHAIN=local go env GOVERSION)
case "$go_version" in
go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
*) skip "skipped: Go $go_version is too old (kube-apiserver v1.36 needs Go >= 1.26)" ;;
esac
for tool in curl openssl; do
    command -v "$tool" >/dev/null || { echo "test-real-apiserver: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

started=$SECONDS
echo "== real-apiserver: building kube-apiserver and etcd with $go_version (cold: about 10-15 min on 2 cores)"
testenv/run.sh build
build_s=$((SECONDS - started))
echo "== real-apiserver: build took ${build_s} s"

dir=$(mktemp -d "${TMPDIR:-/tmp}/k8s-disc-testenv.XXXXXX")
cleanup() {
    testenv/run.sh stop "$dir" || true
    if [ "${keep_dir:-0}" = 1 ]; then
        echo "test-real-apiserver: the environment's logs are kept in $dir/logs" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT
testenv/run.sh start "$dir"
version=$(cat "$dir/version")
export K8S_DISC_REAL_APISERVER="$dir"

log=$(mktemp)
set +e
cargo test --test real_apiserver --test real_differential 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -E '^test result:' "$log" | sed -n 's/.* \([0-9]*\) passed.*/\1/p' | awk '{s += $1} END {print s + 0}')
failed=$(grep -E '^test result:' "$log" | sed -n 's/.* \([0-9]*\) failed.*/\1/p' | awk '{s += $1} END {print s + 0}')
rm -f "$log"
keep_dir=$([ "$status" -ne 0 ] && echo 1 || echo 0)
cleanup
trap - EXIT
echo "== real-apiserver: ran against Kubernetes $version (kube-apiserver + embedded etcd), build ${build_s} s, total $((SECONDS - started)) s"
if [ "$status" -ne 0 ]; then
    echo "RESULT: FAILED against Kubernetes $version: ${passed:-0} passed, ${failed:-?} failed"
    exit 1
fi
echo "RESULT: ${passed:-0} tests passed against Kubernetes $version (kube-apiserver + etcd): engine and fake-vs-real"
