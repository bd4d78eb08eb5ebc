"""Real APISIX 3.18.0 run twice in the benchmark, once with k8s-disc and once with APISIX's built-in `kubernetes`
discovery module, against fake API servers seeded from the same objects as the main benchmark (same names, same 2
workers, http only). The same code measures both: benches/lua/apisix/plugins/k8s-disc-bench.lua, loaded through
extra_lua_path, serves benches/lua/k8s_disc_bench.lua's handlers on APISIX's control API and calls
`require("apisix.discovery.kubernetes").nodes()` inside the workers.

Used by benches/gateway.py (`measure(args)`); APISIX itself is run by the end-to-end harness in e2e/apisix/.
"""

import importlib.util
import json
import os
import statistics
import sys
import tempfile
import shutil
import time

import gateway as bench

ROOT = bench.ROOT
E2E = os.path.join(ROOT, "e2e", "apisix")
BENCH_LUA = os.path.join(ROOT, "benches", "lua")
MODULES = ("ours", "builtin")
MICRO_REQUESTS = 6  # /bench/micro requests per gateway, each the best of 5 rounds in one worker


sys.path.append(E2E)  # the harness's own modules import each other by bare name
import procs  # noqa: E402  (e2e/apisix/procs.py)
import yamlout  # noqa: E402  (e2e/apisix/yamlout.py)


def _load_e2e_gateway():
    """e2e/apisix/gateway.py, loaded by file: its name would shadow the benchmark's gateway.py."""
    spec = importlib.util.spec_from_file_location("e2e_apisix_gateway", os.path.join(E2E, "gateway.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


e2e_gateway = _load_e2e_gateway()


# ---------------------------------------------------------------------------------------------------------------
# Processes


def gateway_processes(master):
    """The master, the workers and the privileged agent (not the cache manager and loader): {pid: role}."""
    out = {master: "master"}
    for pid, cmd in procs.children(master):
        if "worker process" in cmd:
            out[pid] = "worker"
        elif "privileged agent" in cmd:
            out[pid] = "agent"
    roles = sorted(out.values())
    if roles != ["agent", "master", "worker", "worker"]:
        raise RuntimeError(f"APISIX processes: expected a master, 2 workers and the privileged agent, got {roles}")
    return out


def process_cpu_s(pid):
    """CPU seconds (user + system) of every thread of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------------------
# One APISIX instance with one module


class ApisixRun:
    """APISIX with `module` ("ours" or "builtin") against a fake API server seeded with `ds`; a context manager."""

    def __init__(self, args, ds, size, module):
        self.args, self.ds, self.module = args, ds, module
        self.run = tempfile.mkdtemp(prefix=f"k8s-disc-bench-apisix-{size}-{module}-")
        os.chmod(self.run, 0o755)  # the workers run as nobody when the master is root
        self.seed = os.path.join(self.run, "seed.json")
        self.keys = os.path.join(self.run, "keys.json")
        with open(self.seed, "w") as f:
            json.dump(ds.objects, f)
        with open(self.keys, "w") as f:
            json.dump(ds.keys, f)
        os.chmod(self.keys, 0o644)
        bench.write_hosts(os.path.join(self.run, "hosts.bin"), ds)

    def __enter__(self):
        self.api = bench.FakeApiServer(self.run, self.seed)
        try:
            return self._start()
        except BaseException:
            self.api.stop()  # __exit__ is not called when __enter__ fails
            raise

    def _start(self):
        self.ax = e2e_gateway.Apisix(self.args.apisix_dist, "3.18.0", self.module, ROOT,
                                    os.path.join(self.run, "apisix"))
        self.ax.proxy_mode = "http"  # as the main benchmark: one subsystem, so one watch for either module
        cfg = self.ax.config({
            "service": {"schema": "http", "host": "127.0.0.1", "port": str(self.api.port)},
            "client": {"token": "bench"},
            "watch_endpoint_slices": True,
        })
        lua = f"{BENCH_LUA}/?.lua"
        if self.module == "ours":
            lua = f"{ROOT}/lua/?.lua;{ROOT}/lua/?/init.lua;" + lua
            cfg["apisix"]["extra_lua_cpath"] = f"{ROOT}/target/release/?.so"
        cfg["apisix"]["extra_lua_path"] = lua
        cfg["plugins"].append("k8s-disc-bench")
        cfg["plugin_attr"] = {"k8s-disc-bench": {"keys": self.keys, "module": self.module}}
        cfg["nginx_config"]["http"] = {"custom_lua_shared_dict": {"bench": "1m"}}
        self.ax.write_config(None, raw_text=yamlout.dump(cfg))
        self.ax.write_routes([{"id": "1", "uri": "/*", "upstream": {
            "type": "roundrobin", "discovery_type": "kubernetes", "service_name": "bench/svc0:http"}}])
        self.port = self.ax.control_port
        self.t_start = bench.now_ns()
        rc, out = self.ax.start()
        self.t_cli = bench.now_ns()
        if rc != 0:
            raise RuntimeError(f"apisix start ({self.module}): {out}")
        return self

    def wait_ready(self, timeout=600):
        """Monotonic ns at which the last worker first saw the initial sync complete."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready = bench.get_json(self.port, "/bench/sync", timeout=10)
                if len(ready) >= 2:
                    return max(ready.values())
            except (OSError, RuntimeError, ValueError, bench.http.client.HTTPException):
                pass
            time.sleep(0.01)
        raise RuntimeError(f"APISIX ({self.module}) not ready after {timeout}s:\n{self.ax.log_text()[-3000:]}")

    def processes(self):
        return gateway_processes(self.ax.master_pid())

    def pss_mib(self):
        return sum(bench.pss_kib(pid) for pid in self.processes()) / 1024

    def __exit__(self, *exc):
        try:
            self.ax.stop()
        finally:
            self.api.stop()
            if not self.args.keep:
                shutil.rmtree(self.run, ignore_errors=True)


def measure_module(args, size, module):
    ds = bench.Dataset(*bench.SIZES[size])
    bench.log(f"== APISIX 3.18.0, {'k8s-disc' if module == 'ours' else 'built-in module'}: size {size}, "
              f"{ds.services} services, {ds.endpoints} endpoints")
    out = {}
    began = time.monotonic()
    with ApisixRun(args, ds, size, module) as run:
        ready = run.wait_ready()
        out["ready_ms"] = (ready - run.t_start) / 1e6
        out["ready_after_cli_ms"] = (ready - run.t_cli) / 1e6
        # The requests that made the initial sync, up to the watch that follows it.
        deadline = time.monotonic() + 60
        while run.api.stats()["active_watches"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = run.api.stats()
        out["sync_requests"] = stats["lists"] + stats["gets"] + stats["watches_started"]
        out["sync_lists"] = stats["lists"]
        time.sleep(0.5)  # the workers' start-up timers settle
        out["pss_sync_mib"] = run.pss_mib()
        walks = bench.fresh_walks(run.port)
        if len(walks) < 2:
            raise RuntimeError(f"{module}: fresh walks from {len(walks)} of 2 workers")
        out["first_call_us"] = statistics.median(w["ns"] / w["keys"] for w in walks) / 1e3
        out["first_call_gc_bytes"] = statistics.median(w["gc_kib"] * 1024 / w["keys"] for w in walks)
        out["pss_walk_mib"] = run.pss_mib()
        # Several requests, which land on either worker: the steady-state cost depends on the state LuaJIT's traces
        # are in after the walk, which differs between workers and runs.
        micro = [bench.get_json(run.port, "/bench/micro?key=bench/svc0:http") for _ in range(MICRO_REQUESTS)]
        for key in ("unchanged_ns", "unknown_ns"):
            values = [m[key] for m in micro]
            out[key], out[key + "_min"], out[key + "_max"] = statistics.median(values), min(values), max(values)
        roles = run.processes()
        workers = [p for p, role in roles.items() if role == "worker"]
        agent = next(p for p, role in roles.items() if role == "agent")
        probe = "svc1"
        out["propagation_idle"] = bench.propagation(run.api, run.port, ds, probe, args.apisix_samples, 0, workers)
        churn = bench.Churn(run.api.port, ds, args.churn_rate, probe)
        out["propagation_churn"], figures = bench.under_churn(
            [churn], lambda: process_cpu_s(agent),
            lambda: bench.propagation(run.api, run.port, ds, probe, args.apisix_samples, 100000, workers),
            args.apisix_samples, args.churn_seconds)
        out.update(figures)
        time.sleep(0.5)
        out["pss_churn_mib"] = run.pss_mib()
        errors = [line for line in run.ax.log_text().splitlines() if "[error]" in line or "[emerg]" in line]
        out["error_lines"] = len(errors)
        if errors:
            bench.log(f"   {len(errors)} error lines, first: {errors[0][:300]}")
    out["seconds"] = time.monotonic() - began
    return out


def measure(args):
    """{"sizes": {size: {"ours": {...}, "builtin": {...}}}}, or {"skipped": reason}."""
    if not args.apisix_dist:
        return {"skipped": args.apisix_skip or "no APISIX 3.18.0 build given (--apisix-dist)"}
    args.apisix_dist = os.path.abspath(args.apisix_dist)  # the APISIX home links into it
    if not os.path.exists(os.path.join(args.apisix_dist, "apisix", "bin", "apisix")):
        return {"skipped": f"{args.apisix_dist} is not an APISIX build (no apisix/bin/apisix)"}
    out = {"dist": args.apisix_dist, "sizes": {}}
    t0 = time.monotonic()
    for size in [s for s in args.apisix_sizes.split(",") if s]:
        if size not in bench.SIZES:
            raise SystemExit(f"unknown size {size!r}; sizes: {', '.join(bench.SIZES)}")
        out["sizes"][size] = {m: measure_module(args, size, m) for m in MODULES}
    out["seconds"] = time.monotonic() - t0
    bench.log(f"== APISIX side by side took {out['seconds']:.0f} s")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Report

# Targets on the ratio (k8s-disc / built-in), checked at the sizes named.
RATIO_TARGETS = {
    "pss_walk_mib": ("<= 0.6x at 150k", lambda r, size: size != "150k" or r <= 0.6),
    "pss_churn_mib": ("<= 0.6x at 150k", lambda r, size: size != "150k" or r <= 0.6),
}

FIGURES = [
    # (key, label, unit)
    ("unchanged_ns", f"nodes(), unchanged key (median of {MICRO_REQUESTS})", "ns"),
    ("unchanged_ns_min", f"  unchanged key, lowest of {MICRO_REQUESTS}", "ns"),
    ("unchanged_ns_max", f"  unchanged key, highest of {MICRO_REQUESTS}", "ns"),
    ("unknown_ns", f"nodes(), unknown key (median of {MICRO_REQUESTS})", "ns"),
    ("first_call_us", "first nodes() per key, fresh worker", "us"),
    ("first_call_gc_bytes", "  Lua heap growth per key over the walk", "B"),
    ("propagation_idle.first_call_p50_us", "first nodes() after a change, p50", "us"),
    ("ready_ms", "ready: `apisix start` to the first full sync", "ms"),
    ("ready_after_cli_ms", "  ready from `apisix start` returning", "ms"),
    ("propagation_idle.p50_us", "propagation idle p50", "us"),
    ("propagation_idle.p99_us", "propagation idle p99", "us"),
    ("propagation_idle.floor_p50_us", "  raw watch client p50 (floor)", "us"),
    ("propagation_idle.floor_p99_us", "  raw watch client p99 (floor)", "us"),
    ("propagation_churn.p50_us", "propagation under churn p50", "us"),
    ("propagation_churn.p99_us", "propagation under churn p99", "us"),
    ("propagation_churn.floor_p50_us", "  raw watch client p50 (floor)", "us"),
    ("propagation_churn.floor_p99_us", "  raw watch client p99 (floor)", "us"),
    ("churn_events_per_s", "churn achieved", "ev/s"),
    ("watcher_cpu_pct", "watcher CPU under churn (privileged agent)", "% core"),
    ("watcher_cpu_us_per_event", "watcher CPU per event", "us"),
    ("pss_sync_mib", "gateway PSS after sync (master + workers + agent)", "MiB"),
    ("pss_walk_mib", "gateway PSS after a walk of every name in each worker", "MiB"),
    ("pss_churn_mib", "gateway PSS after churn", "MiB"),
    ("sync_requests", "API server requests for the initial sync", ""),
    ("sync_lists", "  LIST pages among them", ""),
]


def _rows(sizes):
    for size, both in sizes.items():
        ours, builtin = both["ours"], both["builtin"]
        yield size, None
        for key, label, unit in FIGURES:
            a, b = bench.lookup(ours, key), bench.lookup(builtin, key)
            ratio = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
            verdict = ""
            if key in RATIO_TARGETS and ratio is not None:
                text, check = RATIO_TARGETS[key]
                verdict = f"{text} ({'met' if check(ratio, size) else 'NOT met'})"
            yield size, (label + (f" ({unit})" if unit else ""), a, b, ratio, verdict)


def _fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:.3g}x" if r < 100 else f"{r:,.0f}x"


def report(res):
    if not res:
        return
    if "skipped" in res:
        print(f"\nAPISIX side by side: skipped: {res['skipped']}")
        return
    for size, row in _rows(res["sizes"]):
        if row is None:
            print(f"\nAPISIX 3.18.0 side by side, size {size} (2 workers, http; ratio = k8s-disc / built-in):")
            print(f"  {'figure':58s}{'k8s-disc':>12s}{'built-in':>12s}{'ratio':>10s}   target")
            continue
        label, a, b, r, verdict = row
        print(f"  {label:58s}{bench.fmt(a):>12s}{bench.fmt(b):>12s}{_fmt_ratio(r):>10s}   {verdict}".rstrip())


def markdown(res):
    if not res:
        return ""
    if "skipped" in res:
        return f"\nAPISIX side by side: skipped ({res['skipped']}).\n"
    out = []
    for size, row in _rows(res["sizes"]):
        if row is None:
            out += ["", f"| figure (APISIX 3.18.0, {size} endpoints, 2 workers) | k8s-disc | APISIX built-in | ratio "
                        "| target |",
                    "|---|---:|---:|---:|---|"]
            continue
        label, a, b, r, verdict = row
        out.append(f"| {label.strip()} | {bench.fmt(a)} | {bench.fmt(b)} | {_fmt_ratio(r)} | {verdict} |")
    return "\n".join(out) + "\n"
