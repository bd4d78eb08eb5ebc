"""Process bookkeeping, free loopback ports and condition polling for the end-to-end run."""

import atexit
import os
import signal
import socket
import subprocess
import time

_started = []  # Popen objects this run started, stopped at exit (also on failure)
_cleanups = []  # callables run at exit, last registered first


def spawn(cmd, **kw):
    """Starts a process that the run stops at exit."""
    p = subprocess.Popen(cmd, **kw)
    _started.append(p)
    return p


def on_exit(fn):
    _cleanups.append(fn)


def stop(p, timeout=5):
    """TERM, then KILL after `timeout` seconds."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _cleanup():
    while _cleanups:
        try:
            _cleanups.pop()()
        except Exception as e:  # keep cleaning up the rest
            print(f"cleanup: {e}")
    for p in reversed(_started):
        stop(p)


atexit.register(_cleanup)


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through atexit, so everything started is stopped


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _exit_on_signal)


def free_port():
    """A loopback port free right now: bind port 0 and read it back."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, interval=0.02):
    """Polls pred() until it returns a true value (returned) or `timeout` seconds pass (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    """(pid, cmdline) of the direct children of pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            out.append((int(d), cmd))
        except (OSError, ValueError, IndexError):
            continue
    return out
