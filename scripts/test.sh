#!/usr/bin/env bash
# The whole test suite: formatting, lints, the committed C header, cargo tests, the Test::Nginx-format suite under t/
# (real nginx + the built library + the fake API server), the end-to-end tests inside real Apache APISIX, and the
# tests against a real kube-apiserver.
#
#   ./scripts/test.sh                 every run
#   ./scripts/test.sh --only NAME     one run, by the name its summary line shows (checks, cargo, nginx-bundled,
#                                     nginx-real, nginx-agent, apisix, real-apiserver); repeat --only for several
#
# Runs that need the shared test material beside the project (../shared, or K8S_DISC_SHARED) say SKIPPED with the
# reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

only=()
while [ $# -gt 0 ]; do
    case "$1" in
    --only) only+=("${2:?--only needs a run name}"); shift 2 ;;
    --only=*) only+=("${1#--only=}"); shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
all_runs=(checks cargo nginx-bundled nginx-real nginx-agent apisix real-apiserver)
for name in "${only[@]}"; do
    [[ " ${all_runs[*]} " == *" $name "* ]] || { echo "test.sh: no run named $name (${all_runs[*]})" >&2; exit 2; }
done
wanted() {   # wanted NAME: is this run selected?
    [ ${#only[@]} -eq 0 ] && return 0
    [[ " ${only[*]} " == *" $1 "* ]]
}

./scripts/setup.sh

echo "== build"
cargo build --workspace --all-targets

summary=()
started=$SECONDS
pass() { summary+=("pass  $1: $2 ($(($SECONDS - started)) s)"); started=$SECONDS; }
skip() {
    echo "== $1: SKIPPED ($2)"
    summary+=("skip  $1: $2")
    started=$SECONDS
}

if wanted checks; then
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
    pass checks "header, exports, rustfmt, clippy"
fi

if wanted cargo; then
    echo "== cargo test"
    log=$(mktemp)
    cargo test --workspace 2>&1 | tee "$log"
    passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
    rm -f "$log"
    pass cargo "$passed tests"
fi

# The shared test material: the real Test::Nginx, the OpenResty-like nginx build, real APISIX, the real-server facts.
shared=$(scripts/shared-material.sh)
export K8S_DISC_SHARED=$shared

suite() {   # suite NAME LABEL [VAR=VALUE...]: prove -r t/ with the given environment
    local name=$1 label=$2
    shift 2
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
    pass "$name" "$label, $files, $skipped file(s) skipped"
    rm -f "$log"
}

external() {   # external NAME SCRIPT: a run of its own; exit 0 passed, 77 skipped (reason on its last output line)
    local name=$1 script=$2 log rc=0
    echo "== $name: $script"
    log=$(mktemp)
    "$script" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
    case $rc in
    0) pass "$name" "$(grep -E '^RESULT: ' "$log" | tail -n 1 | sed 's/^RESULT: //')" ;;
    77) skip "$name" "$(tail -n 1 "$log")" ;;
    *) rm -f "$log"; echo "$name failed (exit $rc)" >&2; exit 1 ;;
    esac
    rm -f "$log"
}

if wanted nginx-bundled || wanted nginx-real || wanted nginx-agent || wanted apisix; then
    echo "== make install (debug build) into target/install-test"
    rm -rf target/install-test
    make --no-print-directory install PROFILE=debug PREFIX="$(pwd)/target/install-test" >/dev/null
    export K8S_DISC_INSTALLED_PREFIX="$(pwd)/target/install-test"
fi

wanted nginx-bundled && suite nginx-bundled "bundled runner, Debian nginx" K8S_DISC_TEST_RUNNER=bundled

real_lib=""
real_tarball=$(ls "$shared"/vendor/test-nginx-*.tar.gz 2>/dev/null | head -n 1 || true)
if [ -n "$real_tarball" ]; then
    mkdir -p target/test-nginx
    tar xzf "$real_tarball" -C target/test-nginx
    real_lib=$(dirname "$(find target/test-nginx -path '*/lib/Test/Nginx/Socket/Lua.pm' | head -n 1)")/../../..
    real_lib=$(cd "$real_lib" && pwd)
fi

if wanted nginx-real; then
    if [ -n "$real_lib" ]; then
        suite nginx-real "real Test::Nginx, Debian nginx" K8S_DISC_TEST_RUNNER=real PERL5LIB="$real_lib"
    else
        skip nginx-real "no test-nginx tarball in $shared/vendor"
    fi
fi

if wanted nginx-agent; then
    agent_tool=$shared/tools/build-agent-nginx.sh
    if [ ! -x "$agent_tool" ]; then
        skip nginx-agent "$agent_tool not found"
    else
        echo "== build the OpenResty-like nginx"
        agent_nginx=$("$agent_tool" "$(pwd)/target/agent-nginx" | tail -n 1)
        if [ -n "$real_lib" ]; then
            suite nginx-agent "real Test::Nginx, agent build" K8S_DISC_TEST_RUNNER=real PERL5LIB="$real_lib" \
                TEST_NGINX_BINARY="$agent_nginx"
        else
            suite nginx-agent "bundled runner, agent build" K8S_DISC_TEST_RUNNER=bundled TEST_NGINX_BINARY="$agent_nginx"
        fi
    fi
fi

if wanted apisix; then
    if [ -x scripts/test-apisix.sh ]; then
        external apisix scripts/test-apisix.sh
    else
        skip apisix "scripts/test-apisix.sh not present"
    fi
fi

if wanted real-apiserver; then
    if [ -x scripts/test-real-apiserver.sh ]; then
        external real-apiserver scripts/test-real-apiserver.sh
    else
        skip real-apiserver "scripts/test-real-apiserver.sh not present"
    fi
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
