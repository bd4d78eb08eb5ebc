"""What the scenario groups share: the context of one run (version, module, builds, results), route and cluster
config builders, start and stop with their checks, and the error-log checks.

Each group (group_*.py) runs once per APISIX version and module against its own fake API server(s) and starts one
APISIX instance, on which it runs its checks in order; `ctx.check` records a result (asserted for this project's
module, reported for the built-in) and `ctx.measure` a number."""

import json
import os
import re

import fakeapi
import gateway
import procs

TOKEN = "e2e-token-0123456789"
TLS_TOKEN = "e2e-tls-token-0123456789"
INVALID_CONFIG = "k8s-disc: invalid discovery config"
UNKNOWN_ISSUER = "TLS verification failed: the API server's certificate is signed by an unknown issuer"
# 3.18 with lua-resty-events: each reload makes the old workers log this (a known upstream behaviour).
EVENTS_RELOAD_NOISE = "event worker failed: failed to receive the header bytes: closed"
# APISIX logs this for every request it answers 503 for want of nodes (for stream: closes); the scenarios ask for
# such answers on purpose, and probe routes before their nodes have arrived.
NO_NODE = "no valid upstream node"
LOG_ERROR = re.compile(r"\[(error|crit|emerg)\]")


class Ctx:
    """What a scenario needs: the APISIX build, the installed project, the fake API server binary, the backends,
    and where results go."""

    def __init__(self, version, module, dist, prefix, fake_bin, work, fleet, results):
        self.version, self.module = version, module
        self.dist, self.prefix, self.fake_bin, self.work = dist, prefix, fake_bin, work
        self.fleet, self.results = fleet, results
        self.group = ""

    @property
    def ours(self):
        return self.module == "ours"

    def gateway(self, name):
        home = os.path.join(self.work, f"{self.version}-{self.module}-{name}")
        return gateway.Apisix(self.dist, self.version, self.module, self.prefix, home)

    def fake(self, **kw):
        return fakeapi.FakeApi(self.fake_bin, **kw)

    def check(self, name, ok, text=""):
        self.results.record(self.version, self.module, self.group, name, bool(ok), text)
        return bool(ok)

    def measure(self, name, text):
        self.results.record(self.version, self.module, self.group, name, None, text)


def ms(seconds):
    if seconds is None:
        return "timeout"
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def upstream(service_name, **kw):
    return dict({"type": "roundrobin", "discovery_type": "kubernetes", "service_name": service_name}, **kw)


def route(rid, uri, service_name, **kw):
    return {"id": rid, "uri": uri, "upstream": upstream(service_name, **kw)}


def cluster(fake, **kw):
    conf = {"service": {"schema": "http", "host": "127.0.0.1", "port": str(fake.port)}, "client": {"token": TOKEN}}
    conf.update(kw)
    return conf


def start(ctx, gw):
    """`apisix start`; a failed start is recorded and raises, ending the group."""
    rc, out = gw.start()
    if not ctx.check("apisix start", rc == 0, "" if rc == 0 else _last_line(out)):
        raise GroupFailed(out)


def stop(ctx, gw, fakes=()):
    rc, out, gone = gw.stop()
    watches = [fakeapi.wait_watches(f, 0, 10) for f in fakes]
    ok = rc == 0 and gone and all(w == 0 for w in watches)
    ctx.check("apisix stop: processes gone, watches closed", ok,
              f"rc {rc}, processes {'gone' if gone else 'left'}, open watches {sum(w or 0 for w in watches)}")


class GroupFailed(Exception):
    pass


def _last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][-120:] if lines else ""


def error_lines(gw, skip=()):
    """[error]/[crit]/[emerg] lines of the error log outside the byte ranges `skip`: (unexpected lines, counts of
    the expected ones: APISIX's own 503 for want of nodes, lua-resty-events' reload lines)."""
    text, expected, others, pos = gw.log_text(), {NO_NODE: 0, EVENTS_RELOAD_NOISE: 0}, [], 0
    for line in text.splitlines(keepends=True):
        start, pos = pos, pos + len(line.encode())
        if any(a <= start < b for a, b in skip) or not LOG_ERROR.search(line):
            continue
        known = [k for k in expected if k in line]
        if known:
            expected[known[0]] += 1
        else:
            others.append(line.strip())
    return others, expected


def no_errors(ctx, gw, skip=(), note=""):
    others, expected = error_lines(gw, skip)
    apart = [f"{n} {what}" for what, n in (("no-node answers while probing", expected[NO_NODE]),
                                            ("lua-resty-events reload lines", expected[EVENTS_RELOAD_NOISE])) if n]
    ctx.check(f"no [error] lines {note}".strip(), not others,
              f"{len(others)} lines" + (f", first: {others[0][-90:]}" if others else "")
              + (f"; apart: {', '.join(apart)}" if apart else ""))


def wait_log(gw, needle, start, timeout=20):
    return procs.wait_until(lambda: needle in gw.log_text(start), timeout, 0.1) is not None


def json_or_none(text):
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return None
