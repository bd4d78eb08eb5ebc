"""The project's fake Kubernetes API server (testkit/): start, stop, write objects, read its stats."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import procs


class FakeApi:
    def __init__(self, binary, port=None, token=None, tls_dir=None):
        """tls_dir: serve TLS, writing the generated CA, certificates and keys there."""
        self.binary = binary
        self.port = port or procs.free_port()
        self.token = token
        self.tls = tls_dir is not None
        self.tls_dir = tls_dir
        self.proc = None

    def start(self, timeout=20):
        cmd = [self.binary, "--listen", f"127.0.0.1:{self.port}", "--no-warnings", "--quiet"]
        if self.token:
            cmd += ["--token", self.token]
        if self.tls:
            os.makedirs(self.tls_dir, exist_ok=True)
            cmd += ["--tls", "--tls-dir", self.tls_dir]
        self.proc = procs.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = self.proc.stdout.readline().strip()
        if first != f"listening on 127.0.0.1:{self.port}":
            raise RuntimeError(f"fake API server: unexpected first line {first!r} ({' '.join(cmd)})")
        if self.tls:
            line = self.proc.stdout.readline().strip()
            if not line.startswith("tls dir "):
                raise RuntimeError(f"fake API server: expected 'tls dir', got {line!r}")
        procs.wait_until(lambda: self._up(), timeout)
        return self

    def _up(self):
        try:
            self.stats()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc:
            procs.stop(self.proc)
            self.proc = None

    def call(self, method, path, body=None):
        """Plain HTTP to the server (the admin API, or any path when not TLS); returns (status, parsed body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token and not path.startswith("/fake/"):
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def apply(self, *objects):
        status, body = self.call("POST", "/fake/apply", list(objects))
        if status not in (200, 201):
            raise RuntimeError(f"fake API apply: {status} {body}")

    def delete(self, kind, namespace, name):
        path = {
            "Endpoints": f"/api/v1/namespaces/{namespace}/endpoints/{name}",
            "EndpointSlice": f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{name}",
        }[kind]
        if self.tls:
            raise RuntimeError("deletes go through the API paths, which a TLS fake serves over TLS only")
        status, body = self.call("DELETE", path)
        if status != 200:
            raise RuntimeError(f"fake API delete {path}: {status} {body}")

    def stats(self):
        status, body = self.call("GET", "/fake/stats")
        if status != 200:
            raise OSError(f"fake API stats: {status}")
        return body

    def active_watches(self):
        return self.stats()["active_watches"]

    def ca_file(self, name="ca.crt"):
        return os.path.join(self.tls_dir, name)


def wait_watches(fake, n, timeout=20):
    """Waits until the server has exactly n open watches; returns the count seen last."""
    last = [None]

    def check():
        last[0] = fake.active_watches()
        return last[0] == n

    procs.wait_until(check, timeout, 0.05)
    return last[0]


def settle_watches(fake, timeout=3.0):
    """The open-watch count once it has stayed the same for `timeout`/3 seconds (or at the deadline)."""
    deadline = time.monotonic() + timeout
    last, since = fake.active_watches(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = fake.active_watches()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= timeout / 3:
            break
    return last
