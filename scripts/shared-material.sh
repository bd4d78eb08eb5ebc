#!/usr/bin/env bash
# Prints the directory of the shared test material (the real Test::Nginx, the nginx and APISIX build scripts):
# $K8S_DISC_SHARED when set, else ../shared or ../../shared from the project's root when one exists, else ../shared
# (which the callers then report as missing).
cd "$(dirname "$0")/.."
if [ -n "${K8S_DISC_SHARED:-}" ]; then
    echo "$K8S_DISC_SHARED"
    exit 0
fi
for d in ../shared ../../shared; do
    [ -d "$d" ] && { (cd "$d" && pwd); exit 0; }
done
echo ../shared
