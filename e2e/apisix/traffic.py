"""Traffic through the gateway: samples of answers, a background prober, and the time until the route shows a
change."""

import collections
import threading
import time

import procs


def http_answer(gw, path):
    """What one request shows: the backend's name on 200, else the status (e.g. 503) or the connection error."""
    status, body = gw.http(path)
    return body if status == 200 else f"HTTP {status}" if status else body


def stream_answer(gw):
    return gw.stream() or "stream failed"


def sample(answer, n):
    return collections.Counter(answer() for _ in range(n))


def wait_route(answer, good, confirm=1, timeout=30.0, since=None):
    """Polls answer() until `confirm` answers in a row satisfy good(); returns the seconds from `since` (a
    time.monotonic() value; default: the call) to the first answer of that run, or None at the timeout."""
    t0 = time.monotonic() if since is None else since
    deadline = t0 + timeout
    run_start, run = None, 0
    while time.monotonic() < deadline:
        t = time.monotonic()
        if good(answer()):
            run_start = t if run == 0 else run_start
            run += 1
            if run >= confirm:
                return run_start - t0
        else:
            run = 0
            time.sleep(0.001)  # a refused answer comes back fast: do not flood the gateway's error log
    return None


def wait_set(answer, expected, timeout=30.0, window=24):
    """Waits until `window` answers in a row are exactly the set `expected` (each seen, nothing else)."""
    expected = set(expected)

    def check():
        return set(sample(answer, window)) == expected

    return procs.wait_until(check, timeout, 0.05) is not None


class Prober:
    """Sends requests in the background (one connection each) while something happens; counts the failures."""

    def __init__(self, answer, good):
        self.answer, self.good = answer, good
        self.total, self.failed, self.failures = 0, 0, collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            a = self.answer()
            self.total += 1
            if not self.good(a):
                self.failed += 1
                self.failures[a] += 1
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self):
        worst = ", ".join(f"{a!r} x{n}" for a, n in self.failures.most_common(2))
        return f"{self.total - self.failed}/{self.total} answered" + (f" (failed: {worst})" if worst else "")
