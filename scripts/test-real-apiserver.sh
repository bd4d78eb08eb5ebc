#!/usr/bin/env bash
# The engine tests against a real Kubernetes API server: builds kube-apiserver and etcd from the Go module proxy
# (testenv/, into target/testenv/bin; Go's caches make later builds quick), starts them on loopback, runs the
# engine tests (tests/real_apiserver.rs), the check of the fake against them (tests/real_differential.rs) and the
# Test::Nginx file written for a real server (t/050-real-apiserver.t), and stops them.
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
# The nginx side: the Test::Nginx blocks that make sense against a real server. The agent build and the real
# Test::Nginx when scripts/test.sh has prepared them (from the shared test material), else Debian's nginx with the
# bundled runner.
nginx_status=0
nginx_env=(K8S_DISC_TEST_RUNNER=bundled)
nginx_label="bundled runner, Debian nginx"
real_lib=$(find target/test-nginx -path '*/lib/Test/Nginx/Socket/Lua.pm' 2>/dev/null | head -n 1 || true)
if [ -x target/agent-nginx/sbin/nginx ] && [ -n "$real_lib" ]; then
    real_lib=$(cd "$(dirname "$real_lib")/../../.." && pwd)
    nginx_env=(K8S_DISC_TEST_RUNNER=real PERL5LIB="$real_lib" TEST_NGINX_BINARY="$(pwd)/target/agent-nginx/sbin/nginx")
    nginx_label="real Test::Nginx, agent build"
fi
echo "== real-apiserver: Test::Nginx against the real server ($nginx_label)"
cargo build --quiet
nginx_log=$(mktemp)
env "${nginx_env[@]}" TEST_NGINX_RANDOMIZE=1 prove t/050-real-apiserver.t 2>&1 | tee "$nginx_log" || nginx_status=1
nginx_tests=$(grep -Eo 'Tests=[0-9]+' "$nginx_log" | tail -n 1 | cut -d= -f2)
rm -f "$nginx_log"
[ "$nginx_status" -eq 0 ] || status=1

keep_dir=$([ "$status" -ne 0 ] && echo 1 || echo 0)
cleanup
trap - EXIT
echo "== real-apiserver: ran against Kubernetes $version (kube-apiserver + embedded etcd), build ${build_s} s, total $((SECONDS - started)) s"
if [ "$status" -ne 0 ]; then
    echo "RESULT: FAILED against Kubernetes $version: cargo ${passed:-0} passed, ${failed:-?} failed; Test::Nginx" \
        "$([ "$nginx_status" -eq 0 ] && echo passed || echo FAILED)"
    exit 1
fi
echo "RESULT: against Kubernetes $version (kube-apiserver + etcd): ${passed:-0} cargo tests (engine, fake vs real)" \
    "and ${nginx_tests:-0} Test::Nginx tests ($nginx_label) passed"
