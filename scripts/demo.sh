#!/usr/bin/env bash
# Live discovery demo: the fake API server with sample services, nginx with k8s-disc discovering them, then a
# service scaled up through the API and the change arriving in nginx. Stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

./scripts/setup.sh
echo "== build"
cargo build --workspace --quiet

run=$root/demo/run
rm -rf "$run"
mkdir -p "$run/logs" "$run/conf"
fake_pid=""
cleanup() {
    [ -f "$run/logs/nginx.pid" ] && kill -QUIT "$(cat "$run/logs/nginx.pid")" 2>/dev/null || true
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== fake API server with sample services (demo/seed.json)"
target/debug/k8s-fake-apiserver --listen 127.0.0.1:0 --token demo-token --seed demo/seed.json \
    >"$run/fake.out" 2>"$run/fake.log" &
fake_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$run/fake.out" 2>/dev/null && break; sleep 0.05; done
api_port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$run/fake.out")
[ -n "$api_port" ] || { echo "fake API server did not start" >&2; cat "$run/fake.log" >&2; exit 1; }
api="http://127.0.0.1:$api_port"
echo "   listening on $api"

http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|@ROOT@|$root|g" -e "s|@API_PORT@|$api_port|g" -e "s|@HTTP_PORT@|$http_port|g" \
    demo/nginx.conf.in >"$run/conf/nginx.conf"
echo "== nginx (master + 2 workers) on 127.0.0.1:$http_port"
nginx -p "$run" -c conf/nginx.conf 2>>"$run/logs/error.log" &
gw="http://127.0.0.1:$http_port"
for _ in $(seq 100); do curl -fs "$gw/nodes?service=shop/web:http" 2>/dev/null | grep -q '"host"' && break; sleep 0.05; done

show() { printf '   %-22s %s\n' "$1" "$(curl -fs "$gw/nodes?service=$1")"; }
echo "== discovered nodes"
show shop/web:http
show shop/web:metrics
show shop/api:9000
show shop/web:grpc

echo "== scaling shop/web: one more ready pod, 10.244.4.2"
curl -fs -X PATCH -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/merge-patch+json' \
    "$api/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/web-7xk2p" \
    -d '{"endpoints": [
          {"addresses": ["10.244.1.5"], "conditions": {"ready": true}},
          {"addresses": ["10.244.2.8"], "conditions": {"ready": true}},
          {"addresses": ["10.244.3.12"], "conditions": {"ready": false}},
          {"addresses": ["10.244.4.2"], "conditions": {"ready": true}}]}' >/dev/null
start=$(date +%s%N)
for _ in $(seq 500); do
    curl -fs "$gw/nodes?service=shop/web:http" | grep -q 10.244.4.2 && break
    sleep 0.01
done
curl -fs "$gw/nodes?service=shop/web:http" | grep -q 10.244.4.2 || { echo "change did not arrive" >&2; exit 1; }
echo "   arrived after about $(( ($(date +%s%N) - start) / 1000000 )) ms (polled through nginx)"
show shop/web:http

echo "== dump (GET /dump), status part"
curl -fs "$gw/dump" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  ", json.dumps(d["status"]))'
echo "== done"
