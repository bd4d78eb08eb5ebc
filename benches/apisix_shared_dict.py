#!/usr/bin/env python3
"""Resident memory of the `lua_shared_dict kubernetes` (and `kubernetes-stream`) that APISIX's CLI renders.

For every `discovery.kubernetes`, APISIX's CLI writes `lua_shared_dict kubernetes <shared_size>` into nginx.conf
(and `kubernetes-stream` when the stream subsystem is on), which this project never uses: it keeps its data in its
own region of `shared_size`. This starts APISIX (http and stream, 2 workers, the privileged agent) with this
project three ways and prints the resident memory (Rss, Pss from /proc/PID/smaps_rollup) of the master, the workers
and the privileged agent, and of the 64m and 1m shared mappings:

  64m         shared_size 64m: two 64m dicts and the project's 64m region
  1m          shared_size 1m: two 1m dicts and a 1m region
  64m-dict1m  shared_size 64m, the two dict lines of the rendered nginx.conf changed to 1m: the dicts' own share

Usage: apisix_shared_dict.py APISIX_BUILD_DIR INSTALL_PREFIX
(a build of ../shared/tools/build-apisix.sh, copied, not changed; the prefix of `make install`). No API server is
needed: the project's region is touched only as data arrives, and the dicts never are.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(prefix, shared_size):
    lua = os.path.join(prefix, "lua")
    return f"""deployment:
  role: data_plane
  role_data_plane:
    config_provider: yaml
apisix:
  node_listen:
    - ip: 127.0.0.1
      port: {free_port()}
  proxy_mode: http&stream
  stream_proxy:
    tcp:
      - addr: "127.0.0.1:{free_port()}"
  enable_control: false
  events:
    module: lua-resty-worker-events
  extra_lua_path: "{lua}/?.lua;{lua}/?/init.lua"
  extra_lua_cpath: "{prefix}/lib/?.so"
nginx_config:
  worker_processes: 2
  error_log_level: warn
plugins:
  - proxy-rewrite
stream_plugins:
  - ip-restriction
discovery:
  kubernetes:
    service:
      schema: http
      host: 127.0.0.1
      port: "{free_port()}"
    client:
      token: abc.def
    shared_size: {shared_size}
"""


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def role(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read().replace(b"\0", b" ").decode()
    m = re.search(r"nginx: (\w+(?: \w+)?) process", cmd)
    return m.group(1) if m else cmd.strip()


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def shared_maps(pid, sizes_kb):
    """{size: [(rss, pss), ...]} of the shared mappings of these sizes."""
    out = {s: [] for s in sizes_kb}
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                cur = {"shared": line.split()[1][3] == "s"}
            elif cur is not None:
                m = re.match(r"(\w+):\s+(\d+) kB", line)
                if m:
                    cur[m.group(1)] = int(m.group(2))
                    if m.group(1) == "Pss" and cur["shared"] and cur.get("Size") in out:
                        out[cur["Size"]].append((cur.get("Rss", 0), cur["Pss"]))
    return out


LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mmap.restype = ctypes.c_void_p
LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
LIBC.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def zones(pid):
    """[(size KiB, name, resident KiB)] of the shared mappings of 1 MiB or more. Resident is counted with mincore
    on the mapping opened through /proc/PID/map_files: the pages the zone holds, whichever process touched them
    (a process's Rss counts only the pages it touched itself, and nginx sets the zones up before it forks)."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            size = end - start
            if parts[1][3] != "s" or size < 1 << 20:
                continue
            fd = os.open(f"/proc/{pid}/map_files/{parts[0]}", os.O_RDONLY)
            try:
                addr = LIBC.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
                if addr in (None, ctypes.c_void_p(-1).value):
                    raise OSError(ctypes.get_errno(), "mmap")
                pages = size // 4096
                vec = ctypes.create_string_buffer(pages)
                if LIBC.mincore(addr, size, vec) != 0:
                    raise OSError(ctypes.get_errno(), "mincore")
                LIBC.munmap(addr, size)
            finally:
                os.close(fd)
            resident = sum(b & 1 for b in vec.raw) * 4
            out.append((size // 1024, parts[5].strip() if len(parts) > 5 else "", resident))
    return out


def run(build, prefix, work, label, shared_size, dict_size):
    home = os.path.join(work, label)
    shutil.copytree(os.path.join(build, "apisix"), home, symlinks=True)
    os.makedirs(os.path.join(home, "logs"), exist_ok=True)
    env = dict(os.environ, PATH=os.path.join(build, "bin") + os.pathsep + os.environ["PATH"])
    with open(os.path.join(home, "conf", "config.yaml"), "w") as f:
        f.write(config(prefix, shared_size))
    subprocess.run(["bin/apisix", "init"], cwd=home, env=env, check=True, capture_output=True)
    conf = os.path.join(home, "conf", "nginx.conf")
    with open(conf) as f:
        text = f.read()
    text, n = re.subn(r"(lua_shared_dict kubernetes(?:-stream)?) \d+m;", rf"\1 {dict_size};", text)
    if n != 2:
        raise SystemExit(f"{label}: expected 2 kubernetes dicts in nginx.conf, found {n}")
    with open(conf, "w") as f:
        f.write(text)
    subprocess.run([os.path.join(build, "bin", "openresty"), "-p", home + "/", "-c", "conf/nginx.conf"], cwd=home,
                   env=env, check=True, capture_output=True)
    with open(os.path.join(home, "logs", "nginx.pid")) as f:
        master = int(f.read())
    try:
        # Up: 2 workers and the agent, and the watcher has tried the (absent) API server, so init_worker ran.
        deadline = time.monotonic() + 120
        log = os.path.join(home, "logs", "error.log")
        while time.monotonic() < deadline:
            with open(log, errors="replace") as f:
                tried = "list Endpoints failed" in f.read()
            roles = sorted(role(pid) for pid in children(master))
            if tried and roles == ["privileged agent", "worker", "worker"]:
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"{label}: APISIX did not come up within 120 s (see {log})")
        rows = []
        for pid in [master] + sorted(children(master), key=role):
            r = rollup(pid)
            maps = shared_maps(pid, (65536, 1024))
            rows.append((role(pid), r.get("Rss", 0), r.get("Pss", 0), maps))
        return rows, zones(master)
    finally:
        os.kill(master, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(master, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[-2], file=sys.stderr)
        return 2
    build, prefix = (os.path.abspath(a) for a in sys.argv[1:])
    with open(os.path.join(build, "apisix", "apisix", "core", "version.lua")) as f:
        version = re.search(r'VERSION\s*=\s*"([^"]+)"', f.read()).group(1)
    work = tempfile.mkdtemp(prefix="k8s-disc-shared-dict-")
    try:
        results = [(label, run(build, prefix, work, label, size, dict_size))
                   for label, size, dict_size in (("64m", "64m", "64m"), ("1m", "1m", "1m"),
                                                  ("64m-dict1m", "64m", "1m"))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"APISIX {version}, http and stream, 2 workers + privileged agent; KiB from /proc/PID/smaps_rollup")
    print(f"{'config':<11} {'process':<17} {'Rss':>7} {'Pss':>7}   64m shared maps Rss/Pss     1m shared maps Rss/Pss")
    for label, (rows, zone_list) in results:
        for name, rss, pss, maps in rows:
            big = " ".join(f"{r}/{p}" for r, p in maps[65536]) or "-"
            small = " ".join(f"{r}/{p}" for r, p in maps[1024]) or "-"
            print(f"{label:<11} {name:<17} {rss:>7} {pss:>7}   {big:<27} {small}")
        print(f"{label:<11} {'total':<17} {sum(r[1] for r in rows):>7} {sum(r[2] for r in rows):>7}")
        for size, name, resident in zone_list:
            print(f"{label:<11}   shared mapping of {size:>6} KiB ({name}): {resident} KiB resident (mincore)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
