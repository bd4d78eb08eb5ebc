#!/usr/bin/env bash
# nodes() as nginx workers see it (LuaJIT FFI + the release library): ns per call for an unchanged key, and for
# the first call on a key (the same path as the first call after a change: lookup, copy, build the Lua table).
# Starts the fake API server with 5000 services x 10 endpoints and a single-process nginx; prints the numbers and
# writes them as JSON to target/bench-lua-nodes.json.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cargo build --release --quiet -p k8s-disc
cargo build --quiet -p k8s-fake-apiserver

run=$(mktemp -d /tmp/k8s-disc-bench.XXXXXX)
mkdir -p "$run/logs" "$run/conf"
fake_pid=""
cleanup() {
    [ -f "$run/logs/nginx.pid" ] && kill -QUIT "$(cat "$run/logs/nginx.pid")" 2>/dev/null || true
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$run"
}
trap cleanup EXIT

python3 - "$run/seed.json" <<'PY'
import json, sys
objs = []
for s in range(5000):
    objs.append({"kind": "Endpoints", "apiVersion": "v1",
                 "metadata": {"namespace": "bench", "name": f"svc{s}"},
                 "subsets": [{"addresses": [{"ip": f"10.{s // 250}.{s % 250}.{i}"} for i in range(1, 11)],
                              "ports": [{"name": "http", "port": 8080}]}]})
json.dump(objs, open(sys.argv[1], "w"))
PY
target/debug/k8s-fake-apiserver --listen 127.0.0.1:0 --seed "$run/seed.json" --quiet >"$run/fake.out" 2>/dev/null &
fake_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$run/fake.out" 2>/dev/null && break; sleep 0.05; done
api_port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$run/fake.out")
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat >"$run/conf/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
master_process off;
daemon off;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    lua_package_path "$root/lua/?.lua;;";
    lua_package_cpath "$root/target/release/?.so;;";
    init_by_lua_block {
        require("resty.k8s_disc").init({ service = { schema = "http", host = "127.0.0.1", port = "$api_port" },
                                         client = { token = "t" }, shared_size = "16m" })
    }
    init_worker_by_lua_block { require("resty.k8s_disc").init_worker() }
    server {
        listen 127.0.0.1:$http_port;
        location = /bench {
            content_by_lua_block {
                local k = require("resty.k8s_disc")
                local clock = require("ffi")
                clock.cdef("struct k8s_bench_ts { long sec; long nsec; }; int clock_gettime(int, struct k8s_bench_ts *);")
                local ts = clock.new("struct k8s_bench_ts")
                local function now_ns()
                    clock.C.clock_gettime(1, ts)
                    return tonumber(ts.sec) * 1e9 + tonumber(ts.nsec)
                end
                for _ = 1, 500 do
                    if k.ready() then break end
                    ngx.sleep(0.01)
                end
                -- First call per key: full lookup, copy and table build (what a change costs each worker once).
                -- Each round uses 1000 keys never asked for before.
                local best_first = math.huge
                for round = 0, 4 do
                    local fresh = {}
                    for s = round * 1000, round * 1000 + 999 do fresh[#fresh + 1] = "bench/svc" .. s .. ":http" end
                    local t0 = now_ns()
                    for i = 1, #fresh do
                        local n = k.nodes(fresh[i])
                        if not n or #n ~= 10 then error("unexpected nodes for " .. fresh[i]) end
                    end
                    best_first = math.min(best_first, (now_ns() - t0) / #fresh)
                end
                local names = {}
                for s = 0, 999 do names[#names + 1] = "bench/svc" .. s .. ":http" end
                -- Unchanged key, repeated: the hot path of every request.
                local best_same = math.huge
                for round = 1, 5 do
                    local t0 = now_ns()
                    for _ = 1, 1000000 do k.nodes(names[1]) end
                    best_same = math.min(best_same, (now_ns() - t0) / 1000000)
                end
                -- Unchanged keys, cycling over 1000 services.
                local best_spread = math.huge
                for round = 1, 5 do
                    local t0 = now_ns()
                    for i = 1, 1000000 do k.nodes(names[i % 1000 + 1]) end
                    best_spread = math.min(best_spread, (now_ns() - t0) / 1000000)
                end
                ngx.say(string.format('{"first_call_10_nodes_ns":%.1f,"unchanged_same_key_ns":%.1f,"unchanged_1000_keys_ns":%.1f}',
                                      best_first, best_same, best_spread))
            }
        }
    }
}
CONF
nginx -p "$run" -c conf/nginx.conf &
for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$http_port/none" && break
    sleep 0.05
done
result=$(curl -fs --max-time 300 "http://127.0.0.1:$http_port/bench") || { tail -20 "$run/logs/error.log" >&2; exit 1; }
echo "nodes() through LuaJIT FFI, 5000 services x 10 nodes, best of 5 rounds:"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); [print(f"  {k:28s} {v:8.1f}") for k,v in d.items()]' "$result"
echo "$result" >target/bench-lua-nodes.json
