#!/usr/bin/env bash
# The whole test suite: formatting, lints, the committed C header, cargo tests, and the Test::Nginx-format suite
# under t/ (real nginx + the built library + the fake API server).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "== build"
cargo build --workspace --all-targets

echo "== generated header is committed"
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- include/k8s_disc.h; then
    git --no-pager diff -- include/k8s_disc.h
    echo "include/k8s_disc.h is stale: commit the regenerated header" >&2
    exit 1
fi

echo "== the header compiles as C and C++"
cc -fsyntax-only -Wall -Werror -x c include/k8s_disc.h
c++ -fsyntax-only -Wall -Werror -x c++ include/k8s_disc.h

echo "== exports"
for sym in k8s_disc_init k8s_disc_nodes k8s_disc_dump k8s_disc_start k8s_disc_lookup k8s_disc_metrics \
           k8s_disc_config_fields; do
    nm -D --defined-only target/debug/libk8s_disc.so | grep -qw "$sym" || { echo "missing export $sym" >&2; exit 1; }
done

echo "== rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

# The Test::Nginx-format suite, once per runner and nginx build available here. The bundled runner on the
# distribution's nginx always runs; the real Test::Nginx and an OpenResty-like build (privileged agent, stream
# Lua module) run when the shared test material beside the project provides them, and say so when it does not.
shared=${K8S_DISC_SHARED:-}
if [ -z "$shared" ]; then
    for d in ../shared ../../shared; do
        [ -d "$d" ] && { shared=$(cd "$d" && pwd); break; }
    done
    shared=${shared:-../shared}
fi
summary=()

suite() {   # suite LABEL [VAR=VALUE...]: prove -r t/ with the given environment
    local label=$1
    shift
    echo "== Test::Nginx suite: $label"
    local log
    log=$(mktemp)
    if ! env "$@" prove -r t/ 2>&1 | tee "$log"; then
        rm -f "$log"
        echo "Test::Nginx suite failed: $label" >&2
        exit 1
    fi
    local files skipped
    files=$(grep -Eo 'Files=[0-9]+, Tests=[0-9]+' "$log" | tail -n 1)
    skipped=$(grep -c 'skipped:' "$log" || true)
    summary+=("pass  $label: $files, $skipped file(s) skipped")
    rm -f "$log"
}

skip() {
    echo "== Test::Nginx suite: $1: SKIPPED ($2)"
    summary+=("skip  $1: $2")
}

echo "== make install (debug build) into target/install-test"
rm -rf target/install-test
make --no-print-directory install PROFILE=debug PREFIX="$(pwd)/target/install-test" >/dev/null
export K8S_DISC_INSTALLED_PREFIX="$(pwd)/target/install-test"

suite "bundled runner, Debian nginx" K8S_DISC_TEST_RUNNER=bundled

real_tarball=$(ls "$shared"/vendor/test-nginx-*.tar.gz 2>/dev/null | head -n 1 || true)
real_lib=""
if [ -n "$real_tarball" ]; then
    mkdir -p target/test-nginx
    tar xzf "$real_tarball" -C target/test-nginx
    real_lib=$(dirname "$(find target/test-nginx -path '*/lib/Test/Nginx/Socket/Lua.pm' | head -n 1)")/../../..
    real_lib=$(cd "$real_lib" && pwd)
    suite "real Test::Nginx, Debian nginx" K8S_DISC_TEST_RUNNER=real PERL5LIB="$real_lib"
else
    skip "real Test::Nginx, Debian nginx" "no test-nginx tarball in $shared/vendor"
fi

agent_tool=$shared/tools/build-agent-nginx.sh
if [ ! -x "$agent_tool" ]; then
    skip "agent build (privileged agent, stream Lua)" "$agent_tool not found"
else
    echo "== build the OpenResty-like nginx"
    agent_nginx=$("$agent_tool" "$(pwd)/target/agent-nginx" | tail -n 1)
    if [ -n "$real_lib" ]; then
        suite "real Test::Nginx, agent build" K8S_DISC_TEST_RUNNER=real PERL5LIB="$real_lib" \
            TEST_NGINX_BINARY="$agent_nginx"
    else
        suite "bundled runner, agent build" K8S_DISC_TEST_RUNNER=bundled TEST_NGINX_BINARY="$agent_nginx"
    fi
fi

echo "== Test::Nginx summary"
printf '%s\n' "${summary[@]}"
