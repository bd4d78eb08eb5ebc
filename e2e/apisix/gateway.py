"""One real APISIX instance run as a standalone data plane (yaml config provider): its own home directory, config,
routes, free loopback ports, the CLI (start, reload, stop), the processes, the error log and the clients to reach
its proxy, stream, control and status ports."""

import http.client
import os
import shutil
import socket
import subprocess
import time

import procs
import yamlout


class Apisix:
    def __init__(self, dist, version, module, k8s_disc_prefix, home):
        """dist: build-apisix.sh's OUT; module: "ours" (this project through extra_lua_path) or "builtin"."""
        self.dist, self.version, self.module = dist, version, module
        self.prefix = k8s_disc_prefix
        self.home = home
        self.node_port = procs.free_port()
        self.control_port = procs.free_port()
        self.stream_port = procs.free_port()
        self.status_port = procs.free_port()
        self.proxy_mode = "http&stream"
        # Variables added to the environment of the CLI (and so of nginx), e.g. the gateway's zone.
        self.env = {}
        self._make_home()

    @property
    def has_status(self):
        return self.version != "3.8.1"  # /status/ready arrived after 3.8

    def _make_home(self):
        # APISIX's home is the working directory of bin/apisix: link the code, copy conf/, own logs/.
        if os.path.exists(self.home):
            shutil.rmtree(self.home)
        os.makedirs(os.path.join(self.home, "logs"))
        src = os.path.join(self.dist, "apisix")
        for d in ("apisix", "bin", "deps"):
            os.symlink(os.path.join(src, d), os.path.join(self.home, d))
        shutil.copytree(os.path.join(src, "conf"), os.path.join(self.home, "conf"))

    # --- configuration -------------------------------------------------------------------------------------------

    def config(self, discovery):
        apisix = {
            "node_listen": [{"ip": "127.0.0.1", "port": self.node_port}],
            "enable_ipv6": False,
            # With SO_REUSEPORT, connections queued on an old worker's socket are reset when a reload closes it (an
            # nginx behaviour); one shared socket keeps "keeps serving during reload" about the module.
            "enable_reuseport": False,
            "enable_admin": False,
            "ssl": {"enable": False},
            "enable_control": True,
            "control": {"ip": "127.0.0.1", "port": self.control_port},
            "proxy_mode": self.proxy_mode,
        }
        if "stream" in self.proxy_mode:
            apisix["stream_proxy"] = {"tcp": [{"addr": f"127.0.0.1:{self.stream_port}"}]}
        if self.version == "3.8.1":
            apisix["events"] = {"module": "lua-resty-worker-events"}  # 3.8's default needs an unbuilt C module
        if self.has_status:
            apisix["status"] = {"ip": "127.0.0.1", "port": self.status_port}
        if self.module == "ours":
            lua = os.path.join(self.prefix, "lua")
            apisix["extra_lua_path"] = f"{lua}/?.lua;{lua}/?/init.lua"
            apisix["extra_lua_cpath"] = os.path.join(self.prefix, "lib", "?.so")
        return {
            "apisix": apisix,
            "deployment": {"role": "data_plane", "role_data_plane": {"config_provider": "yaml"}},
            "nginx_config": {"worker_processes": 2, "error_log_level": "warn", "worker_shutdown_timeout": "3s"},
            "plugins": ["proxy-rewrite", "public-api"],
            "stream_plugins": ["ip-restriction"],
            "discovery": {"kubernetes": discovery},
        }

    def write_config(self, discovery, raw_text=None):
        text = raw_text if raw_text is not None else yamlout.dump(self.config(discovery))
        _write(os.path.join(self.home, "conf", "config.yaml"), text)

    def write_routes(self, routes, stream_routes=()):
        doc = {"routes": list(routes)}
        if stream_routes:
            doc["stream_routes"] = list(stream_routes)
        _write(os.path.join(self.home, "conf", "apisix.yaml"), yamlout.dump(doc) + "#END\n")

    # --- CLI and processes ---------------------------------------------------------------------------------------

    def cli(self, *args, timeout=60):
        env = dict(os.environ, PATH=os.path.join(self.dist, "bin") + ":" + os.environ["PATH"], **self.env)
        p = subprocess.run(["bin/apisix", *args], cwd=self.home, env=env, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def start(self):
        rc, out = self.cli("start")
        if rc == 0:
            master = self.master_pid()
            procs.on_exit(lambda: self.kill_all(master))
        return rc, out

    def reload(self):
        return self.cli("reload")

    def stop(self, timeout=20):
        """`apisix stop`; returns (rc, output, every nginx process gone within timeout)."""
        master = self.master_pid()
        workers = [pid for pid, _ in procs.children(master)] if master else []
        rc, out = self.cli("stop")
        gone = procs.wait_until(lambda: not any(procs.pid_alive(p) for p in [master, *workers] if p), timeout)
        return rc, out, bool(gone)

    def kill_all(self, master):
        if master and procs.pid_alive(master):
            kids = [pid for pid, _ in procs.children(master)]
            for pid in [master, *kids]:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass

    def master_pid(self):
        try:
            with open(os.path.join(self.home, "logs", "nginx.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def agent_pid(self):
        master = self.master_pid()
        for pid, cmd in procs.children(master) if master else []:
            if "privileged agent" in cmd:
                return pid
        return None

    # --- error log -----------------------------------------------------------------------------------------------

    @property
    def error_log(self):
        return os.path.join(self.home, "logs", "error.log")

    def log_offset(self):
        try:
            return os.path.getsize(self.error_log)
        except OSError:
            return 0

    def log_text(self, start=0, end=None):
        try:
            with open(self.error_log, "rb") as f:
                f.seek(start)
                data = f.read() if end is None else f.read(max(0, end - start))
            return data.decode(errors="replace")
        except OSError:
            return ""

    # --- clients -------------------------------------------------------------------------------------------------

    def http(self, path, port=None, headers=None, timeout=5):
        """GET on a new connection (so requests spread over the workers); (status, body) or (None, error)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.node_port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read().decode(errors="replace")
        except OSError as e:
            return None, f"{type(e).__name__}: {e}"
        finally:
            conn.close()

    def control(self, path):
        return self.http(path, port=self.control_port)

    def status(self, path="/status/ready"):
        return self.http(path, port=self.status_port)

    def stream(self, timeout=5):
        """Connects to the stream port and reads what the upstream sends until it closes; None on failure."""
        try:
            with socket.create_connection(("127.0.0.1", self.stream_port), timeout=timeout) as s:
                chunks = []
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    chunks.append(b)
            return b"".join(chunks).decode(errors="replace") or None
        except OSError:
            return None


_last_write = {}


def _write(path, text):
    # APISIX re-reads apisix.yaml when its modification (3.18) or change (3.8.1) time in whole seconds differs from
    # the last one read: a second write within the same second would go unseen, so wait for the next second.
    prev = _last_write.get(path)
    if prev is not None and int(time.time()) <= prev:
        time.sleep(prev + 1 - time.time() + 0.01)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    _last_write[path] = int(time.time())
