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

echo "== exports"
for sym in k8s_disc_init k8s_disc_nodes k8s_disc_dump k8s_disc_start; do
    nm -D --defined-only target/debug/libk8s_disc.so | grep -qw "$sym" || { echo "missing export $sym" >&2; exit 1; }
done

echo "== rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== Test::Nginx suite"
prove -r t/
