#!/usr/bin/env python3
"""The k8s-disc benchmark: real nginx workers against the project's fake API server, at several sizes.

Run through scripts/bench.sh, which builds what it needs. For each size it seeds the fake API server with
EndpointSlices, starts nginx (2 workers) with k8s-disc and measures initial sync, propagation (idle and under
churn, beside a raw watch client on the same server as the floor), the first nodes() call per key in fresh
workers, memory and watcher CPU. Then, on one dataset of 10k services x 15 nodes, nodes() from LuaJIT and the
gateway's throughput against a static upstream with wrk. Then, given an APISIX 3.18.0 build (--apisix-dist), real
APISIX with k8s-disc and with its built-in module side by side (benches/apisix_side_by_side.py). Prints each figure
beside its target and writes JSON and Markdown.
"""

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (regular services, endpoints each, huge services' endpoint counts)
SIZES = {
    "1k": (100, 10, []),
    "10k": (1000, 10, []),
    "50k": (3000, 15, [5000]),
    "150k": (10000, 12, [20000, 5000, 5000]),
}
SLICE_MAX = 100  # endpoints per EndpointSlice, as the EndpointSlice controller cuts them
PORT = 8080


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ns():
    return time.monotonic_ns()  # CLOCK_MONOTONIC, the clock the Lua side reads


def pct(values, p):
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


# ---------------------------------------------------------------------------------------------------------------
# Dataset


def host(service, i):
    return f"10.{(service >> 8) & 255}.{service & 255}.{i % 250 + 1}" if i < 250 else \
        f"10.{128 + ((service >> 8) & 127)}.{(service & 255)}.{i % 250 + 1}"


def huge_host(h, i):
    return f"172.{16 + h}.{i // 250}.{i % 250 + 1}"


def endpoint_slice(ns, svc, index, hosts, annotations=None):
    meta = {"namespace": ns, "name": f"{svc}-{index}",
            "labels": {"kubernetes.io/service-name": svc}}
    if annotations:
        meta["annotations"] = annotations
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": meta,
            "addressType": "IPv4",
            "endpoints": [{"addresses": [h], "conditions": {"ready": True}} for h in hosts],
            "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}]}


def slices_of(ns, svc, hosts, annotations=None, split=False):
    """One service's slices: at most SLICE_MAX endpoints each; `split` cuts a small service in two."""
    if split and len(hosts) > 1:
        cut = len(hosts) // 2
        chunks = [hosts[:cut], hosts[cut:]]
    else:
        chunks = [hosts[i:i + SLICE_MAX] for i in range(0, len(hosts), SLICE_MAX)] or [[]]
    return [endpoint_slice(ns, svc, i, c, annotations) for i, c in enumerate(chunks)]


class Dataset:
    """The objects to seed and the keys the workers check, for regular services plus a few huge ones."""

    def __init__(self, regular, per_service, huge, extra=()):
        self.objects = []
        self.keys = []           # [name, node count] of the regular services
        self.key_hosts = []      # the hosts of each key, in the order of `keys`
        self.regular_hosts = {}  # service -> hosts
        self.single_slice = []   # regular services held in one slice (the ones churn and probes rewrite)
        for s in range(regular):
            hosts = [host(s, i) for i in range(per_service)]
            svc = f"svc{s}"
            self.regular_hosts[svc] = hosts
            # Every fifth service has two slices, as after a scale-up: about 1.2 slices per service.
            self.objects += slices_of("bench", svc, hosts, split=(s % 5 == 4))
            if s % 5 != 4:
                self.single_slice.append(svc)
            self.keys.append([f"bench/{svc}:http", per_service])
            self.key_hosts.append(hosts)
        for h, n in enumerate(huge):
            self.objects += slices_of("bench", f"huge{h}", [huge_host(h, i) for i in range(n)])
        for svc, hosts in extra:
            self.objects += slices_of("bench", svc, hosts)
        self.endpoints = regular * per_service + sum(huge) + sum(len(h) for _, h in extra)
        self.services = regular + len(huge) + len(extra)


def write_hosts(path, ds, copies=1):
    """Every key's nodes as bytes, beside keys.json, for the floor (alloc_floor) to make its host strings from as
    nodes() makes them from its lookup: per node [u16 port LE][u8 host length][host], the keys in the order of
    keys.json (`copies` times over: once per cluster)."""
    with open(path, "wb") as f:
        for _ in range(copies):
            for hosts in ds.key_hosts:
                f.write(b"".join(struct.pack("<HB", PORT, len(h)) + h.encode() for h in hosts))
    os.chmod(path, 0o644)


# ---------------------------------------------------------------------------------------------------------------
# Processes


class FakeApiServer:
    def __init__(self, run, seed_path, extra_args=()):
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "target/release/k8s-fake-apiserver"), "--listen", "127.0.0.1:0", "--seed",
             seed_path, "--quiet", "--no-warnings", *extra_args],
            stdout=subprocess.PIPE, stderr=open(os.path.join(run, "fake.err"), "wb"), text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            raise SystemExit(f"fake API server did not start: {line!r}")
        self.port = int(m.group(1))
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                out = resp.read()
                if resp.status >= 300:
                    raise SystemExit(f"fake API server: {method} {path}: {resp.status} {out[:200]!r}")
                return out
            except (ConnectionError, http.client.HTTPException):
                if attempt:
                    raise
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def apply(self, objs):
        return self.call("POST", "/fake/apply", objs)

    def stats(self):
        return json.loads(self.call("GET", "/fake/stats"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def jit_lib():
    """Where LuaJIT's jit.* tools (jit.v, jit.dump, jit.p) live, for ?jit= on /bench/walk."""
    for d in sorted(os.listdir("/usr/share"), reverse=True):
        if d.startswith("luajit-") and os.path.exists(f"/usr/share/{d}/jit/v.lua"):
            return f"/usr/share/{d}/?.lua"
    return ""


class CountingProxy:
    """A TCP relay in front of the fake API server that counts what one gateway costs it: requests (request lines
    sent), bytes each way, and watch BOOKMARK events received."""

    REQUEST = re.compile(rb"(?:GET|POST|PUT|PATCH|DELETE) /[^ ]* HTTP/1\.1\r\n")
    BOOKMARK = re.compile(rb'\{"type":"BOOKMARK"[^\n]*\n')

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.reset()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.requests, self.bytes_up, self.bytes_down, self.bookmarks, self.bookmark_bytes = 0, 0, 0, 0, 0

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, up):
        tail = b""
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                window = tail + data
                with self.lock:
                    if up:
                        self.bytes_up += len(data)
                        self.requests += len(self.REQUEST.findall(window)) - len(self.REQUEST.findall(tail))
                    else:
                        self.bytes_down += len(data)
                        # A bookmark is one short line, so it rarely spans two reads; one that does is missed.
                        for m in self.BOOKMARK.finditer(data):
                            self.bookmarks += 1
                            self.bookmark_bytes += len(m.group(0))
                tail = data[-64:]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def nginx_is_static(binary):
    out = subprocess.run([binary, "-V"], capture_output=True, text=True).stderr
    return "lua-nginx-module" in out and "--add-dynamic-module" not in out.split("lua-nginx-module")[0][-40:]


NGINX_CONF = """
{modules}
worker_processes 2;
daemon on;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    lua_package_path "{root}/lua/?.lua;{root}/benches/lua/?.lua;{jit_lib};;";
    lua_package_cpath "{root}/target/release/?.so;;";
    lua_shared_dict bench 1m;
    init_by_lua_block {{
        require("resty.k8s_disc").init({discovery})
    }}
    init_worker_by_lua_block {{
        require("resty.k8s_disc").init_worker()
        require("k8s_disc_bench").init_worker("{run}/keys.json", nil, {per_cluster})
    }}
    upstream discovered {{
        server 0.0.0.1;
        balancer_by_lua_block {{ require("k8s_disc_bench").balance("bench/backend:http") }}
        keepalive 64;
    }}
    upstream lua_fixed {{
        server 0.0.0.1;
        balancer_by_lua_block {{ require("k8s_disc_bench").balance_fixed({backend_port}) }}
        keepalive 64;
    }}
    upstream static {{
        server 127.0.0.1:{backend_port};
        server 127.0.0.2:{backend_port};
        server 127.0.0.3:{backend_port};
        server 127.0.0.4:{backend_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{http_port} reuseport;
        location /bench/ {{
            content_by_lua_block {{
                local bench = require("k8s_disc_bench")
                bench[ngx.var.uri:sub(8)]()
            }}
        }}
        location /via/discovered {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://discovered/;
        }}
        location /via/lua_fixed {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://lua_fixed/;
        }}
        location /via/static {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://static/;
        }}
    }}
}}
"""

BACKEND_CONF = """
worker_processes 1;
daemon on;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:PORT;
        listen 127.0.0.2:PORT;
        listen 127.0.0.3:PORT;
        listen 127.0.0.4:PORT;
        keepalive_requests 1000000;
        location / { return 200 "ok\\n"; }
    }
}
"""

MODULES = ("load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
           "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;")


class Nginx:
    def __init__(self, binary, prefix, conf):
        self.binary, self.prefix = binary, prefix
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        os.makedirs(os.path.join(prefix, "conf"), exist_ok=True)
        with open(os.path.join(prefix, "conf/nginx.conf"), "w") as f:
            f.write(conf)

    def start(self):
        subprocess.run([self.binary, "-p", self.prefix, "-c", "conf/nginx.conf"], check=True)

    def signal(self, sig):
        subprocess.run([self.binary, "-p", self.prefix, "-c", "conf/nginx.conf", "-s", sig], check=True)

    def stop(self):
        pid_file = os.path.join(self.prefix, "logs/nginx.pid")
        if os.path.exists(pid_file):
            pid = int(open(pid_file).read())
            self.signal("quit")
            for _ in range(200):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.05)

    def errors(self):
        try:
            return open(os.path.join(self.prefix, "logs/error.log")).read()[-3000:]
        except OSError:
            return ""


def get_json(port, path, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
    return json.loads(body)


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(rf"^{field}:\s*(\d+)", f.read(), re.M)
    return int(m.group(1)) if m else None


def watcher_pid(pids):
    """The process whose thread is named "k8s-disc": the one running the watcher."""
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                if open(f"/proc/{pid}/task/{tid}/comm").read().strip() == "k8s-disc":
                    return pid
            except OSError:
                pass
    return None


def pss_kib(pid):
    """Proportional set size of one process in KiB (/proc/PID/smaps_rollup)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def metric(text, name):
    """The value of the first sample of `name` (a name with labels, as printed) in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return None


def watcher_thread_cpu_s(pid):
    """CPU seconds (user + system) of the watcher thread ("k8s-disc") in process `pid`."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if open(f"/proc/{pid}/task/{tid}/comm").read().strip() != "k8s-disc":
                continue
            fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


# ---------------------------------------------------------------------------------------------------------------
# Measurements


class RawWatch(threading.Thread):
    """The floor: a minimal client holding one watch on the fake API server, noting when each probe arrives."""

    SEQ = re.compile(rb'"bench\.k8s-disc/seq":"(\d+)"')

    def __init__(self, port, rv):
        super().__init__(daemon=True)
        self.seen = {}
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall((f"GET /apis/discovery.k8s.io/v1/endpointslices?watch=1&resourceVersion={rv}"
                           "&allowWatchBookmarks=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bench\r\n\r\n")
                          .encode())

    def run(self):
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return
            t = now_ns()
            if not data:
                return
            buf = buf[-200:] + data
            for m in self.SEQ.finditer(buf):
                self.seen.setdefault(int(m.group(1)), t)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Churn(threading.Thread):
    """Writes `rate` changes per second to regular services (never the probe), until stopped."""

    def __init__(self, fake_port, ds, rate, avoid):
        super().__init__(daemon=True)
        self.fake_port, self.ds, self.rate, self.avoid = fake_port, ds, rate, avoid
        self.stop_flag = threading.Event()
        self.writes = 0

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.fake_port, timeout=30)
        names = [s for s in self.ds.single_slice if s != self.avoid]
        rng = random.Random(7)
        start = time.monotonic()
        while not self.stop_flag.is_set():
            svc = rng.choice(names)
            hosts = list(self.ds.regular_hosts[svc])
            rng.shuffle(hosts)  # same set, new order and a new resourceVersion: a real write, same nodes
            hosts = hosts[:-1] if self.writes % 2 else hosts
            body = json.dumps(slices_of("bench", svc, hosts)[0])
            conn.request("POST", "/fake/apply", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            self.writes += 1
            ahead = self.writes / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


def worker_pids(nginx):
    master = int(open(os.path.join(nginx.prefix, "logs/nginx.pid")).read())
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def set_nice(pids, nice):
    """Sets the priority of the workers' main threads only (a thread id equal to the pid): the watcher thread
    keeps its own. Root only; elsewhere a no-op."""
    if os.geteuid() != 0:
        return
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except OSError:
            pass


def under_churn(churns, cpu_s, propagate, samples, seconds):
    """Runs `propagate()` while `churns` write, for at least `seconds` in all, and measures the watcher's CPU with
    `cpu_s()` over that time. Returns the propagation figures and the churn figures (events include the probe's
    `samples` writes)."""
    cpu0, t0 = cpu_s(), time.monotonic()
    for c in churns:
        c.start()
    measured = propagate()
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    for c in churns:
        c.stop_flag.set()
    for c in churns:
        c.join()
    elapsed = time.monotonic() - t0
    cpu = cpu_s() - cpu0
    events = sum(c.writes for c in churns) + samples
    return measured, {"churn_events_per_s": events / elapsed, "watcher_cpu_pct": 100 * cpu / elapsed,
                      "watcher_cpu_us_per_event": 1e6 * cpu / events}


def propagation(api, http_port, ds, key_svc, samples, seq_base, workers=(), prefix=""):
    """Latency from an API write to the change being seen by nodes() in a worker, and to a raw watch client.

    The worker that waits for the change calls nodes() in a loop, which keeps a core busy; on a small machine
    that delays the watcher thread's wake-up, so the workers' main threads run at the lowest priority meanwhile.
    """
    set_nice(workers, 19)
    try:
        return _propagation(api, http_port, ds, key_svc, samples, seq_base, prefix)
    finally:
        set_nice(workers, 0)


def _propagation(api, http_port, ds, key_svc, samples, seq_base, prefix):
    rv = api.stats()["resourceVersion"]
    raw = RawWatch(api.port, rv)
    raw.start()
    time.sleep(0.2)
    hosts = ds[key_svc] if isinstance(ds, dict) else ds.regular_hosts[key_svc]
    ours, floor, first_call = [], [], []
    for i in range(samples):
        seq = seq_base + i
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
        conn.request("GET", f"/bench/await?key={prefix}bench/{key_svc}:http&timeout=5")
        resp = conn.getresponse()
        if resp.readline().strip() != b"armed":
            raise RuntimeError("await did not arm")
        new_hosts = hosts if i % 2 else hosts[:-1]
        objs = slices_of("bench", key_svc, new_hosts, {"bench.k8s-disc/seq": str(seq)})
        t_write = now_ns()
        api.apply(objs if len(objs) > 1 else objs[0])
        result = json.loads(resp.readline())
        conn.close()
        if result.get("timeout"):
            raise RuntimeError(f"change {seq} to {key_svc} never reached the worker")
        ours.append((result["seen_ns"] - t_write) / 1e3)
        first_call.append(result["call_ns"] / 1e3)
        for _ in range(1000):
            if seq in raw.seen:
                break
            time.sleep(0.001)
        if seq in raw.seen:
            floor.append((raw.seen[seq] - t_write) / 1e3)
        time.sleep(0.005)
    raw.close()
    return {"samples": samples, "p50_us": pct(ours, 50), "p99_us": pct(ours, 99),
            "floor_p50_us": pct(floor, 50), "floor_p99_us": pct(floor, 99),
            "over_floor_p50_us": pct(ours, 50) - pct(floor, 50), "over_floor_p99_us": pct(ours, 99) - pct(floor, 99),
            "first_call_p50_us": pct(first_call, 50)}


def fresh_walks(http_port, workers=2, attempts=60, what="walk"):
    """The first walk over every regular key in each worker (new connections until every worker answered)."""
    walks = {}
    for _ in range(attempts):
        r = get_json(http_port, "/bench/" + what)
        if r["fresh"]:
            walks[r["worker"]] = r
        if r.get("bad"):
            raise RuntimeError(f"worker {r['worker']}: {r['bad']} services with wrong nodes")
        if len(walks) == workers:
            break
    return list(walks.values())


def shared_size_for(endpoints):
    """A cluster's shared_size: about 20 B per endpoint are used, so 64 B per endpoint plus 16 MiB for the key
    tables leaves ample room for churn."""
    return f"{max(16, endpoints * 64 // (1 << 20) + 16)}m"


def cluster_conf(api_port, shared_size, extra_conf="", cluster_id=None):
    """One cluster's discovery config, as Lua table text."""
    ident = f'id = "{cluster_id}", ' if cluster_id else ""
    return (f'{{ {ident}service = {{ schema = "http", host = "127.0.0.1", port = "{api_port}" }}, '
            f'client = {{ token = "bench" }}, watch_endpoint_slices = true, shared_size = "{shared_size}", '
            f"{extra_conf} }}")


class Gateway:
    """nginx + k8s-disc against a seeded fake API server; a context manager.

    With `clusters` (ids), one fake API server per cluster, each seeded with the same dataset, in one multi-cluster
    config; the workers' keys are then `id/ns/name:port` for every cluster, and `self.apis` holds the servers in
    the order of the ids (`self.api` is the first).
    """

    def __init__(self, args, ds, label, backend_port=0, fake_args=(), extra_conf="", proxy=False, clusters=()):
        self.args, self.ds, self.label = args, ds, label
        self.fake_args, self.extra_conf, self.use_proxy = list(fake_args), extra_conf, proxy
        self.clusters = list(clusters)
        self.run = tempfile.mkdtemp(prefix=f"k8s-disc-bench-{label}-")
        os.chmod(self.run, 0o755)  # nginx workers may run as another user (root's master drops to nobody)
        with open(os.path.join(self.run, "seed.json"), "w") as f:
            json.dump(ds.objects, f)
        keys = [[f"{c}/{k}", n] for c in self.clusters for k, n in ds.keys] if self.clusters else ds.keys
        with open(os.path.join(self.run, "keys.json"), "w") as f:
            json.dump(keys, f)
        write_hosts(os.path.join(self.run, "hosts.bin"), ds, len(self.clusters) or 1)
        self.backend_port = backend_port or free_port()

    def __enter__(self):
        seed = os.path.join(self.run, "seed.json")
        self.apis = [FakeApiServer(self.run, seed, self.fake_args) for _ in self.clusters or [None]]
        self.api = self.apis[0]
        self.proxy = CountingProxy(self.api.port) if self.use_proxy else None
        api_port = self.proxy.port if self.proxy else self.api.port
        self.http_port = free_port()
        shared = shared_size_for(self.ds.endpoints)
        if self.clusters:
            discovery = "{ " + ", ".join(cluster_conf(api.port, shared, self.extra_conf, c)
                                         for c, api in zip(self.clusters, self.apis)) + " }"
        else:
            discovery = cluster_conf(api_port, shared, self.extra_conf)
        conf = NGINX_CONF.format(modules="" if self.args.static_nginx else MODULES, root=ROOT,
                                 discovery=discovery, per_cluster="true" if self.clusters else "false",
                                 run=self.run, http_port=self.http_port, backend_port=self.backend_port,
                                 jit_lib=jit_lib())
        self.nginx = Nginx(self.args.nginx, os.path.join(self.run, "nginx"), conf)
        self.t_start = now_ns()
        self.nginx.start()
        return self

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready = get_json(self.http_port, "/bench/sync")
                if len(ready) >= 2:
                    return max(ready.values()) - self.t_start
            except (OSError, RuntimeError, http.client.HTTPException):
                pass
            time.sleep(0.01)
        raise RuntimeError(f"not ready after {timeout}s:\n{self.nginx.errors()}")

    def metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
        conn.request("GET", "/bench/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def processes(self):
        """(master pid, worker and helper pids, the watcher's pid)."""
        master = int(open(os.path.join(self.nginx.prefix, "logs/nginx.pid")).read())
        children = worker_pids(self.nginx)
        return master, children, watcher_pid(children)

    def cluster_ready_ms(self):
        """Per cluster id: ms from nginx's start to the first time a worker saw that cluster ready; and the ms the
        workers spent reading the metrics to tell."""
        ready = get_json(self.http_port, "/bench/clusters")
        poll_ns = ready.pop("poll_ns", 0) or 0
        return {c: (ns - self.t_start) / 1e6 for c, ns in ready.items()}, poll_ns / 1e6

    def pss_kib(self):
        """The whole gateway's proportional set size (master + workers + helpers), shared pages divided among the
        processes that map them."""
        master, children, _ = self.processes()
        return sum(pss_kib(p) for p in [master, *children])

    def __exit__(self, *exc):
        self.nginx.stop()
        for api in self.apis:
            api.stop()
        if not self.args.keep:
            shutil.rmtree(self.run, ignore_errors=True)


CONTINUE = re.compile(rb'"continue":"([^"]*)"')


def raw_paged_list(api, limit=500):
    """The server-and-transfer floor of a paged LIST: the same requests as the watcher, bodies read unparsed."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=120)
    t0, token, pages = now_ns(), None, 0
    while True:
        path = f"/apis/discovery.k8s.io/v1/endpointslices?limit={limit}"
        if token:
            path += "&continue=" + token
        conn.request("GET", path, headers={"Authorization": "Bearer bench"})
        body = conn.getresponse().read()
        pages += 1
        m = CONTINUE.search(body[:4096])
        token = m.group(1).decode() if m and m.group(1) else None
        if not token:
            break
    return (now_ns() - t0) / 1e6, pages


def raw_watch_list(api):
    """The same floor for a streaming list: one watch-list request read until its initial-events-end bookmark."""
    sock = socket.create_connection(("127.0.0.1", api.port))
    t0 = now_ns()
    sock.sendall(b"GET /apis/discovery.k8s.io/v1/endpointslices?watch=1&sendInitialEvents=true"
                 b"&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion= HTTP/1.1\r\n"
                 b"Host: x\r\nAuthorization: Bearer bench\r\n\r\n")
    tail = b""
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return None
            tail = tail[-100:] + data
            if b"k8s.io/initial-events-end" in tail:
                return (now_ns() - t0) / 1e6
    finally:
        sock.close()


def parse_floor(api, run):
    """serde_json alone on the bytes of one complete LIST of the same objects."""
    path = os.path.join(run, "list.json")
    with open(path, "wb") as f:
        f.write(api.call("GET", "/apis/discovery.k8s.io/v1/endpointslices"))
    out = subprocess.run([os.path.join(ROOT, "target/release/examples/parse_floor"), path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def measure_size(args, name):
    regular, per, huge = SIZES[name]
    ds = Dataset(regular, per, huge)
    log(f"== size {name}: {ds.services} services, {ds.endpoints} endpoints, {len(ds.objects)} slices")
    out = {"services": ds.services, "endpoints": ds.endpoints, "slices": len(ds.objects)}
    with Gateway(args, ds, name) as gw:
        out["sync_ms"] = gw.wait_ready() / 1e6
        out["api_lists"] = gw.api.stats()["lists"]  # before the floor's own LIST below
        floor = parse_floor(gw.api, gw.run)
        out["list_bytes"] = floor["bytes"]
        out["parse_floor_ms"] = floor["value_ns"] / 1e6
        out["sync_over_floor"] = out["sync_ms"] / out["parse_floor_ms"]
        # What the server and the transfer alone take for the requests the watcher made; the rest is ours.
        if out["api_lists"]:
            out["server_floor_ms"], _ = raw_paged_list(gw.api)
        else:
            out["server_floor_ms"] = raw_watch_list(gw.api)
        out["sync_processing_ms"] = out["sync_ms"] - out["server_floor_ms"]
        out["processing_over_floor"] = out["sync_processing_ms"] / out["parse_floor_ms"]
        # Memory before any worker has looked anything up.
        text = gw.metrics()
        used = metric(text, 'k8s_disc_shared_bytes{cluster="",state="used"}')
        out["shared_bytes_per_endpoint"] = used / ds.endpoints
        out["shared_bytes_total"] = used + metric(text, 'k8s_disc_shared_bytes{cluster="",state="free"}')
        _, children, writer = gw.processes()
        out["watcher_rss_anon_kib"] = proc_status(writer, "RssAnon")
        others = [proc_status(p, "RssAnon") for p in children if p != writer]
        out["worker_rss_anon_kib"] = max(others) if others else None
        if out["worker_rss_anon_kib"] is not None:
            # What the watcher holds beyond what any worker holds (nginx, LuaJIT and the Lua heap alike).
            out["watcher_private_b_per_endpoint"] = \
                (out["watcher_rss_anon_kib"] - out["worker_rss_anon_kib"]) * 1024 / ds.endpoints
        out["gateway_pss_kib"] = gw.pss_kib()
        walks = fresh_walks(gw.http_port)
        out["walk_lua_heap_kib"] = statistics.median(w["gc_kib"] for w in walks)
        out["first_call_per_key_us"] = statistics.median(w["ns"] / w["keys"] for w in walks) / 1e3
        out["first_call_gc_bytes_per_key"] = statistics.median(w["gc_kib"] * 1024 / w["keys"] for w in walks)
        out["gateway_pss_after_walk_kib"] = gw.pss_kib()
        probe = "svc1"
        workers = worker_pids(gw.nginx)
        out["propagation_idle"] = propagation(gw.api, gw.http_port, ds, probe, args.samples, 0, workers)
        churn = Churn(gw.api.port, ds, args.churn_rate, probe)
        out["propagation_churn"], figures = under_churn(
            [churn], lambda: watcher_thread_cpu_s(writer),
            lambda: propagation(gw.api, gw.http_port, ds, probe, args.samples, 100000, workers),
            args.samples, args.churn_seconds)
        out.update(figures)
        lookups = get_json(gw.http_port, f"/bench/lookups?n={args.lookups}")
        out["worker_rss_growth_kib"] = lookups["rss_anon_kib_after"] - lookups["rss_anon_kib_before"]
        out["lookup_cycle_ns"] = lookups["ns"] / lookups["calls"]
    return out


def fresh_first_calls(http_port, key, workers=2, attempts=60):
    """The first nodes() call on `key` in each worker (new connections until every worker answered fresh)."""
    calls = {}
    for _ in range(attempts):
        r = get_json(http_port, f"/bench/first?key={key}")
        if r["fresh"]:
            calls[r["worker"]] = r
        if len(calls) == workers:
            break
    return list(calls.values())


def measure_scale(args):
    """Several clusters of one size in one gateway (multi-cluster config, one fake API server each, seeded alike),
    then one service of `--scale-service` endpoints in a gateway of its own."""
    regular, per, huge = SIZES[args.scale_size]
    ds = Dataset(regular, per, huge)
    ids = [f"c{i + 1}" for i in range(args.scale_clusters)]
    total = ds.endpoints * len(ids)
    log(f"== scale: {len(ids)} clusters x {ds.endpoints} endpoints ({total}), {ds.services} services each")
    out = {"clusters": len(ids), "endpoints": total, "endpoints_per_cluster": ds.endpoints,
           "services": ds.services * len(ids)}
    with Gateway(args, ds, "scale", clusters=ids) as gw:
        out["sync_ms"] = gw.wait_ready(timeout=900) / 1e6
        ready, out["cluster_poll_ms"] = gw.cluster_ready_ms()
        out["cluster_sync_ms"] = {c: ready.get(c) for c in ids}
        text = gw.metrics()
        out["shared_bytes_used"] = sum(metric(text, f'k8s_disc_shared_bytes{{cluster="{c}",state="used"}}')
                                       for c in ids)
        _, children, writer = gw.processes()
        out["watcher_rss_anon_kib"] = proc_status(writer, "RssAnon")
        out["gateway_pss_kib"] = gw.pss_kib()
        walks = fresh_walks(gw.http_port)
        out["first_call_per_key_us"] = statistics.median(w["ns"] / w["keys"] for w in walks) / 1e3
        out["walk_keys"] = walks[0]["keys"]
        out["gateway_pss_after_walk_kib"] = gw.pss_kib()
        # Churn spread over the clusters at the single-cluster rate in total; the probe is in the first cluster.
        probe, workers = "svc1", worker_pids(gw.nginx)
        churns = [Churn(api.port, ds, args.churn_rate / len(ids), probe) for api in gw.apis]
        out["propagation_churn"], figures = under_churn(
            churns, lambda: watcher_thread_cpu_s(writer),
            lambda: propagation(gw.api, gw.http_port, ds, probe, args.samples, 100000, workers,
                                prefix=f"{ids[0]}/"),
            args.samples, args.churn_seconds)
        out["churn_events_per_s"] = figures["churn_events_per_s"]
        out["watcher_cpu_us_per_event"] = figures["watcher_cpu_us_per_event"]
        out["gateway_pss_after_churn_kib"] = gw.pss_kib()
    # One big service, beside a small one of the regular size, in a gateway of their own.
    big = Dataset(1, per, [args.scale_service])
    log(f"== scale: one service of {args.scale_service} endpoints ({len(big.objects)} slices)")
    with Gateway(args, big, "bigsvc") as gw:
        out["big_service_sync_ms"] = gw.wait_ready(timeout=600) / 1e6
        for name, key, count in (("big", "bench/huge0:http", args.scale_service), ("small", "bench/svc0:http", per)):
            calls = fresh_first_calls(gw.http_port, key)
            bad = [c for c in calls if c["nodes"] != count]
            if bad:
                raise RuntimeError(f"{key}: {bad[0]['nodes']} nodes, expected {count}")
            out[f"{name}_first_call_us"] = statistics.median(c["ns"] for c in calls) / 1e3
            out[f"{name}_first_call_gc_kib"] = statistics.median(c["gc_kib"] for c in calls)
            out[f"{name}_unchanged_ns"] = get_json(gw.http_port, f"/bench/micro?key={key}")["unchanged_ns"]
    out["big_service_endpoints"] = args.scale_service
    return out


# (label, key in the scale results, key in the single-cluster results, unit, how the endpoints compare: "total"
# for figures of the whole dataset, "same" for per-key or per-event figures, "service" for the big service against a
# regular key, None for no ratio: a difference of two p99s swings around zero from run to run)
SCALE_ROWS = [
    ("initial sync, all clusters ready", "sync_ms", "sync_ms", "ms", "total"),
    ("shared region used", "shared_bytes_used", None, "MiB", "total"),
    ("watcher process private RSS after sync", "watcher_rss_anon_kib", "watcher_rss_anon_kib", "KiB", "total"),
    ("whole gateway PSS after sync", "gateway_pss_kib", "gateway_pss_kib", "KiB", "total"),
    ("whole gateway PSS after a walk of every key", "gateway_pss_after_walk_kib", "gateway_pss_after_walk_kib", "KiB",
     "total"),
    ("first nodes() per key, fresh worker", "first_call_per_key_us", "first_call_per_key_us", "us", "same"),
    ("first nodes() on the big service (single: per regular key)", "big_first_call_us", "first_call_per_key_us",
     "us", "service"),
    ("unchanged nodes(), big service (single: a regular key)", "big_unchanged_ns", "small_unchanged_ns", "ns",
     "service"),
    ("propagation under churn p50", "propagation_churn.p50_us", "propagation_churn.p50_us", "us", "total"),
    ("propagation under churn p99", "propagation_churn.p99_us", "propagation_churn.p99_us", "us", "total"),
    ("  p99 over the raw watch client", "propagation_churn.over_floor_p99_us", "propagation_churn.over_floor_p99_us",
     "us", None),
    ("watcher CPU per event", "watcher_cpu_us_per_event", "watcher_cpu_us_per_event", "us", "same"),
]
LINEAR_SLACK = 1.1  # per-endpoint ratios up to this count as linear: the run-to-run noise on a shared machine


def scale_rows(results):
    """[(label, unit, single-cluster value, scale value, endpoints ratio, per-endpoint ratio)] and the notes."""
    scale, base = results["scale"], results["sizes"].get(results["scale"]["base_size"])
    if not base:
        return [], []
    base = dict(base)
    base["shared_bytes_used"] = base["shared_bytes_per_endpoint"] * base["endpoints"]
    base["small_unchanged_ns"] = scale["small_unchanged_ns"]
    per_key = SIZES[scale["base_size"]][1]  # endpoints of a regular key
    rows = [("per-cluster sync (" + ", ".join(f"{c} {fmt(v)}" for c, v in scale["cluster_sync_ms"].items())
             + ")", "ms", base["sync_ms"], max(v for v in scale["cluster_sync_ms"].values() if v is not None),
             None, None)]
    for label, key, base_key, unit, kind in SCALE_ROWS:
        v, b = lookup(scale, key), lookup(base, base_key or key)
        if unit == "MiB":
            v, b = v / (1 << 20), b / (1 << 20)
        n = {"total": scale["endpoints"] / base["endpoints"], "same": 1,
             "service": scale["big_service_endpoints"] / per_key, None: None}[kind]
        rows.append((label, unit, b, v, n, None if n is None or v is None or not b else (v / n) / b))
    notes = [label.strip() for label, _, _, _, _, r in rows if r is not None and r > LINEAR_SLACK]
    return rows, notes


def report_scale(results):
    rows, worse = scale_rows(results)
    if not rows:
        return
    s = results["scale"]
    print(f"\nLarger scale: {s['clusters']} clusters x {s['endpoints_per_cluster']:,} endpoints in one gateway "
          f"({s['endpoints']:,}), and one service of {s['big_service_endpoints']:,} endpoints, beside the "
          f"{s['base_size']} single cluster; per-endpoint ratio = (scale / endpoints ratio) / single, "
          f"<= {LINEAR_SLACK} counts as linear:")
    print(f"  {'':64s}{'single':>10s}{'scale':>12s}{'endpoints':>11s}{'per-endp.':>11s}")
    for label, unit, b, v, n, r in rows:
        verdict = "" if r is None else ("  linear or better" if r <= LINEAR_SLACK else "  WORSE than linear")
        print(f"  {label + ' (' + unit + ')':64s}{fmt(b):>10s}{fmt(v):>12s}{fmt(n) + ('x' if n else ''):>11s}"
              f"{fmt(r):>11s}{verdict}")
    print(f"  churn achieved: {fmt(s['churn_events_per_s'])} ev/s over {s['clusters']} clusters; whole gateway PSS "
          f"after churn {fmt(s['gateway_pss_after_churn_kib'])} KiB; per-cluster ready read from the metrics "
          f"every 5 ms in one worker, which took it {fmt(s['cluster_poll_ms'])} ms during the sync; "
          f"big service sync {fmt(s['big_service_sync_ms'])} ms, "
          f"first call allocates {fmt(s['big_first_call_gc_kib'])} KiB of Lua heap")
    print("  worse than linear: " + (", ".join(worse) if worse else "nothing"))


def markdown_scale(results):
    rows, worse = scale_rows(results)
    if not rows:
        return ""
    s = results["scale"]
    out = ["", f"| larger scale: {s['clusters']} x {s['endpoints_per_cluster']:,} endpoints, one service of "
               f"{s['big_service_endpoints']:,} | {s['base_size']} single cluster | scale | endpoints | "
               f"per-endpoint ratio |", "|---|---:|---:|---:|---:|"]
    for label, unit, b, v, n, r in rows:
        out.append(f"| {label.strip()} ({unit}) | {fmt(b)} | {fmt(v)} | {fmt(n) + ('x' if n else '')} | {fmt(r)} |")
    return "\n".join(out) + "\n"


# The steady state with the default configuration: a watch lasts timeoutSeconds, drawn uniformly from
# [watch_idle_timeout/2, watch_idle_timeout*4/5) with the default watch_idle_timeout of 120 s; the API server sends a
# bookmark about every minute and one 2 s before each watch's deadline.
DEFAULT_WATCH_S = (60 + 96) / 2
API_BOOKMARK_S = 60
DAY_S = 86400


def measure_api_cost(args):
    """What one gateway costs the API server: the initial sync, and a day in steady state (no changes).

    The day is simulated: a window with short watches (watch_idle_timeout = 10 s) and frequent bookmarks gives the
    bytes of one watch request and of one bookmark, which are then scaled to a day with the default timings."""
    ds = Dataset(1000, 10, [])
    log(f"== API server cost: {ds.services} services, {ds.endpoints} endpoints, {args.api_window:.0f} s window")
    out = {}
    with Gateway(args, ds, "api", fake_args=["--bookmark-interval", "1"], extra_conf="watch_idle_timeout = 10,",
                 proxy=True) as gw:
        gw.wait_ready()
        time.sleep(0.2)
        px = gw.proxy
        out["sync_requests"], out["sync_bytes"] = px.requests, px.bytes_up + px.bytes_down
        lists_before = gw.api.stats()["lists"]
        px.reset()
        time.sleep(args.api_window)
        with px.lock:
            requests, up, down = px.requests, px.bytes_up, px.bytes_down
            bookmarks, bookmark_bytes = px.bookmarks, px.bookmark_bytes
        out["window_lists"] = gw.api.stats()["lists"] - lists_before
        out["window_requests"], out["window_bookmarks"] = requests, bookmarks
        per_request = (up + down - bookmark_bytes) / max(requests, 1)
        per_bookmark = bookmark_bytes / max(bookmarks, 1)
        watches_per_day = DAY_S / DEFAULT_WATCH_S
        bookmarks_per_day = watches_per_day * (DEFAULT_WATCH_S // API_BOOKMARK_S + 1)
        out["bytes_per_watch_request"] = per_request
        out["bytes_per_bookmark"] = per_bookmark
        out["day_requests"] = watches_per_day
        out["day_bytes"] = watches_per_day * per_request + bookmarks_per_day * per_bookmark
    return out


def wrk(url, seconds, conns):
    res = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", url], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Requests/sec:\s*([\d.]+)", res)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", res)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses")
    return float(m.group(1))


def measure_micro(args):
    """The nodes() figures on 10k services x 15 nodes, plus a 10-node, a 1000-node and the backend service."""
    backend_port = free_port()
    big = [f"172.31.{i // 250}.{i % 250 + 1}" for i in range(1000)]
    small = [f"172.30.0.{i + 1}" for i in range(10)]
    backend = [f"127.0.0.{i}" for i in range(1, 5)]
    ds = Dataset(10000, 15, [], extra=[("n1000", big), ("n10", small)])
    objects = ds.objects
    # The backend service's endpoints are real servers on loopback, on the backend port.
    for o in slices_of("bench", "backend", backend):
        o["ports"][0]["port"] = backend_port
        objects.append(o)
    log(f"== nodes() and gateway: {ds.services + 1} services, {ds.endpoints + 4} endpoints")
    out = {}
    with Gateway(args, ds, "micro", backend_port) as gw:
        gw.wait_ready()
        walks, floors = [], []
        for round_ in range(args.walk_rounds * 2):
            if round_:
                gw.nginx.signal("reload")  # new workers: a fresh Lua VM state and empty per-worker caches
                time.sleep(1.0)
            if round_ % 2:
                floors += fresh_walks(gw.http_port, what="alloc_floor")
            else:
                walks += fresh_walks(gw.http_port)
        out["alloc_floor_us_per_key"] = statistics.median(w["ns"] / w["keys"] for w in floors) / 1e3
        out["alloc_floor_gc_bytes_per_key"] = statistics.median(w["gc_kib"] * 1024 / w["keys"] for w in floors)
        out["first_call_walk_10k_x15_us_per_key"] = statistics.median(w["ns"] / w["keys"] for w in walks) / 1e3
        out["first_call_walk_best_us_per_key"] = min(w["ns"] / w["keys"] for w in walks) / 1e3
        out["first_call_walk_gc_bytes_per_key"] = statistics.median(w["gc_kib"] * 1024 / w["keys"] for w in walks)
        out["first_call_over_floor"] = out["first_call_walk_10k_x15_us_per_key"] / out["alloc_floor_us_per_key"]
        out["walks"] = len(walks)
        micro = get_json(gw.http_port, "/bench/micro?key=bench/svc0:http")
        out["unchanged_ns"] = micro["unchanged_ns"]
        out["unknown_ns"] = micro["unknown_ns"]
        hosts = {"n10": small, "n1000": big}
        p10 = propagation(gw.api, gw.http_port, hosts, "n10", 40, 200000, worker_pids(gw.nginx))
        p1000 = propagation(gw.api, gw.http_port, hosts, "n1000", 40, 300000, worker_pids(gw.nginx))
        out["first_call_after_change_10_us"] = p10["first_call_p50_us"]
        out["first_call_after_change_1000_us"] = p1000["first_call_p50_us"]
        if shutil.which("wrk"):
            backend = Nginx(args.nginx, os.path.join(gw.run, "backend"),
                            BACKEND_CONF.replace("PORT", str(backend_port)))
            backend.start()
            try:
                time.sleep(0.3)
                base = f"http://127.0.0.1:{gw.http_port}/via/"
                rps = {"discovered": [], "lua_fixed": [], "static": []}
                for path in rps:
                    wrk(base + path, 1, 16)  # warm every path
                for _ in range(3):  # interleaved rounds, best of each: the machine's noise hits all alike
                    for path in rps:
                        rps[path].append(wrk(base + path, args.wrk_seconds, 32))
                out["gateway_rps_discovered"] = max(rps["discovered"])
                out["gateway_rps_lua_fixed"] = max(rps["lua_fixed"])
                out["gateway_rps_static"] = max(rps["static"])
                out["gateway_ratio"] = out["gateway_rps_discovered"] / out["gateway_rps_static"]
                out["gateway_ratio_lua_fixed"] = out["gateway_rps_discovered"] / out["gateway_rps_lua_fixed"]
            finally:
                backend.stop()
        else:
            log("wrk not installed: gateway throughput skipped")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Report

TARGETS = [
    # (key, label, unit, target text, check)
    ("sync_ms", "initial sync", "ms", None, None),
    ("parse_floor_ms", "serde_json parse of the same LIST", "ms", None, None),
    ("server_floor_ms", "  server + transfer alone (raw client)", "ms", None, None),
    ("sync_processing_ms", "  sync minus server + transfer", "ms", None, None),
    ("sync_over_floor", "initial sync / parse floor", "x", "<= 2", lambda v, size: v <= 2),
    ("processing_over_floor", "(sync minus server) / parse floor", "x", "<= 1.5 at 50k+",
     lambda v, size: size in ("1k", "10k") or v <= 1.5),
    ("first_call_per_key_us", "first nodes() per key, fresh worker", "us", None, None),
    ("shared_bytes_per_endpoint", "shared memory per endpoint", "B", None, None),
    ("watcher_rss_anon_kib", "watcher process private RSS after sync", "KiB", None, None),
    ("worker_rss_anon_kib", "other worker private RSS after sync", "KiB", None, None),
    ("watcher_private_b_per_endpoint", "  watcher per endpoint beyond a worker", "B",
     "<= 100 at 50k+", lambda v, size: size in ("1k", "10k") or v <= 100),
    ("gateway_pss_kib", "whole gateway PSS after sync", "KiB", None, None),
    ("walk_lua_heap_kib", "worker Lua heap after the first walk", "KiB", None, None),
    ("gateway_pss_after_walk_kib", "whole gateway PSS after the walk", "KiB", None, None),
    ("worker_rss_growth_kib", "worker RSS growth over the lookups", "KiB", None, None),
    ("propagation_idle.p50_us", "propagation idle p50", "us", None, None),
    ("propagation_idle.p99_us", "propagation idle p99", "us", None, None),
    ("propagation_idle.floor_p99_us", "  raw watch client p99 (floor)", "us", None, None),
    ("propagation_idle.over_floor_p99_us", "  p99 over the floor", "us", "<= 1000", lambda v, size: v <= 1000),
    ("propagation_churn.p50_us", "propagation under churn p50", "us", None, None),
    ("propagation_churn.p99_us", "propagation under churn p99", "us", None, None),
    ("propagation_churn.floor_p99_us", "  raw watch client p99 (floor)", "us", None, None),
    ("propagation_churn.over_floor_p99_us", "  p99 over the floor", "us", "<= 1000", lambda v, size: v <= 1000),
    ("churn_events_per_s", "churn achieved", "ev/s", None, None),
    ("watcher_cpu_pct", "watcher CPU under churn", "% core", None, None),
    ("watcher_cpu_us_per_event", "watcher CPU per event", "us", None, None),
    ("api_lists", "LIST requests to sync", "", None, None),
]

MICRO_TARGETS = [
    ("first_call_walk_10k_x15_us_per_key", "first call per key, 10k keys x 15 nodes", "us", "<= 1.2x floor",
     lambda v, d: d.get("alloc_floor_us_per_key") is not None and v <= 1.2 * d["alloc_floor_us_per_key"]),
    ("first_call_over_floor", "  first call / floor", "x", "<= 1.2", lambda v, d: v <= 1.2),
    ("first_call_walk_gc_bytes_per_key", "  Lua heap allocated per key", "B", None, None),
    ("alloc_floor_us_per_key", "  floor: the same tables and strings built in plain Lua", "us", None, None),
    ("alloc_floor_gc_bytes_per_key", "  floor: Lua heap allocated per key", "B", None, None),
    ("first_call_after_change_10_us", "first call after a change, 10 nodes", "us", None, None),
    ("first_call_after_change_1000_us", "first call after a change, 1000 nodes", "us", "<= 60",
     lambda v, d: v <= 60),
    ("unchanged_ns", "unchanged key", "ns", None, None),
    ("unknown_ns", "unknown key", "ns", None, None),
    ("gateway_rps_discovered", "gateway req/s, discovered upstream", "req/s", None, None),
    ("gateway_rps_lua_fixed", "gateway req/s, Lua balancer over a fixed list", "req/s", None, None),
    ("gateway_rps_static", "gateway req/s, static upstream", "req/s", None, None),
    ("gateway_ratio_lua_fixed", "discovered / Lua balancer over a fixed list", "", None, None),
    ("gateway_ratio", "discovered / static", "", ">= 0.97", lambda v, d: v >= 0.97),
]


def lookup(d, dotted):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}"


API_COST = [
    ("sync_requests", "initial sync: requests", ""),
    ("sync_bytes", "initial sync: bytes", "B"),
    ("window_lists", "LISTs in steady state (window)", ""),
    ("bytes_per_watch_request", "bytes per watch request (both ways)", "B"),
    ("bytes_per_bookmark", "bytes per bookmark", "B"),
    ("day_requests", "requests per day, steady state", ""),
    ("day_bytes", "bytes per day, steady state", "B"),
]


def report(results):
    sizes = list(results["sizes"])
    if sizes:
        print(f"\n{'':44s}" + "".join(f"{s:>12s}" for s in sizes) + "   target")
        for key, label, unit, target, check in TARGETS:
            vals = [lookup(results["sizes"][s], key) for s in sizes]
            verdict = ""
            if check:
                ok = [check(v, s) for v, s in zip(vals, sizes) if v is not None]
                verdict = f"{target:>10s}  {'met' if ok and all(ok) else 'NOT met'}"
            print(f"{label + (' (' + unit + ')' if unit else ''):44s}" + "".join(f"{fmt(v):>12s}" for v in vals)
                  + "   " + verdict)
    micro = results.get("micro")
    if micro:
        print("\nnodes() from LuaJIT and the gateway (10k services x 15 nodes):")
        for key, label, unit, target, check in MICRO_TARGETS:
            v = micro.get(key)
            verdict = ""
            if check and v is not None:
                verdict = f"{target:>14s}  {'met' if check(v, micro) else 'NOT met'}"
            print(f"  {label + (' (' + unit + ')' if unit else ''):52s}{fmt(v):>12s}   {verdict}")
    cost = results.get("api_cost")
    if cost:
        print("\nAPI server cost per gateway (10k endpoints):")
        for key, label, unit in API_COST:
            print(f"  {label + (' (' + unit + ')' if unit else ''):52s}{fmt(cost.get(key)):>12s}")


def markdown(results):
    """The results as Markdown tables (the README's performance section is this output)."""
    out = []
    sizes = list(results["sizes"])
    if sizes:
        out.append("| figure | " + " | ".join(sizes) + " | target |")
        out.append("|---|" + "---:|" * len(sizes) + "---|")
        for key, label, unit, target, check in TARGETS:
            vals = [lookup(results["sizes"][s], key) for s in sizes]
            row = [fmt(v) for v in vals]
            verdict = ""
            if check:
                ok = [check(v, s) for v, s in zip(vals, sizes) if v is not None]
                verdict = f"{target} ({'met' if ok and all(ok) else 'not met'})"
            name = label.strip() + (f" ({unit})" if unit else "")
            out.append(f"| {name} | " + " | ".join(row) + f" | {verdict} |")
    micro = results.get("micro")
    if micro:
        out += ["", "| `nodes()` and the gateway (10k services x 15 nodes) | | target |", "|---|---:|---|"]
        for key, label, unit, target, check in MICRO_TARGETS:
            v = micro.get(key)
            verdict = f"{target} ({'met' if check(v, micro) else 'not met'})" if check and v is not None else ""
            out.append(f"| {label.strip()}{f' ({unit})' if unit else ''} | {fmt(v)} | {verdict} |")
    cost = results.get("api_cost")
    if cost:
        out += ["", "| API server cost per gateway (10k endpoints) | |", "|---|---:|"]
        for key, label, unit in API_COST:
            out.append(f"| {label}{f' ({unit})' if unit else ''} | {fmt(cost.get(key))} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1k,10k,50k,150k", help="comma-separated subset of " + ",".join(SIZES))
    ap.add_argument("--nginx", default=os.environ.get("K8S_DISC_BENCH_NGINX", "/usr/sbin/nginx"))
    ap.add_argument("--samples", type=int, default=200, help="propagation samples per condition")
    ap.add_argument("--churn-rate", type=int, default=1000, help="API writes per second during churn")
    ap.add_argument("--churn-seconds", type=float, default=5.0)
    ap.add_argument("--lookups", type=int, default=1000000)
    ap.add_argument("--walk-rounds", type=int, default=3)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--no-micro", action="store_true")
    ap.add_argument("--no-api-cost", action="store_true")
    ap.add_argument("--api-window", type=float, default=20.0, help="seconds of steady state watched")
    ap.add_argument("--apisix-dist", default="",
                    help="an APISIX 3.18.0 build (build-apisix.sh's OUT): runs APISIX with k8s-disc and with its "
                         "built-in module side by side")
    ap.add_argument("--apisix-skip", default="", help="why the APISIX side by side is skipped (printed)")
    ap.add_argument("--no-apisix", action="store_true", help="skip the APISIX side by side")
    ap.add_argument("--apisix-sizes", default="10k,150k", help="sizes of the APISIX side by side")
    ap.add_argument("--apisix-samples", type=int, default=200, help="propagation samples per condition in APISIX")
    ap.add_argument("--scale", action="store_true",
                    help="also the larger scale: --scale-clusters clusters of --scale-size in one gateway and one "
                         "service of --scale-service endpoints, beside the single-cluster size (run too)")
    ap.add_argument("--scale-clusters", type=int, default=4)
    ap.add_argument("--scale-size", default="150k", help="each cluster's size, one of " + ",".join(SIZES))
    ap.add_argument("--scale-service", type=int, default=50000, help="endpoints of the one big service")
    ap.add_argument("--out", default=os.path.join(ROOT, "target/bench/results.json"))
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    args = ap.parse_args()
    args.static_nginx = nginx_is_static(args.nginx)
    results = {"machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release(),
                           "nginx": args.nginx},
               "date": time.strftime("%Y-%m-%d"), "sizes": {}}
    sizes = [s for s in args.sizes.split(",") if s]
    if args.scale and args.scale_size not in sizes:
        sizes.append(args.scale_size)  # the single-cluster figures the scale is read against
    for name in sizes:
        if name not in SIZES:
            raise SystemExit(f"unknown size {name!r}; sizes: {', '.join(SIZES)}")
        results["sizes"][name] = measure_size(args, name)
    if args.scale:
        results["scale"] = measure_scale(args)
        results["scale"]["base_size"] = args.scale_size
    if not args.no_micro:
        results["micro"] = measure_micro(args)
    if not args.no_api_cost:
        results["api_cost"] = measure_api_cost(args)
    import apisix_side_by_side  # imports this file as `gateway`: after everything above is defined
    if args.no_apisix:
        args.apisix_dist, args.apisix_skip = "", "--no-apisix"
    results["apisix"] = apisix_side_by_side.measure(args)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    report(results)
    if "scale" in results:
        report_scale(results)
    apisix_side_by_side.report(results["apisix"])
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(markdown(results) + (markdown_scale(results) if "scale" in results else "")
                + apisix_side_by_side.markdown(results["apisix"]))
    print(f"\nmachine: {results['machine']['cpu']}, {results['machine']['cpus']} cpus; JSON: {args.out}; "
          f"Markdown: {os.path.splitext(args.out)[0]}.md")


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
