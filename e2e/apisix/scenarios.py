"""The end-to-end scenarios, each run once per APISIX version and module against its own fake API server(s).

Every scenario group starts one APISIX instance and runs its checks in order on it; `ctx.check` records a result
(asserted for this project's module, reported for the built-in) and `ctx.measure` a number."""

import json
import os
import re
import time

import fakeapi
import gateway
import k8sobjects as k8s
import procs
import traffic

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


# --- the main group: routing, control API, changes, reloads, agent kill, stop --------------------------------------


def seed_main(ctx, fake1, fake2):
    f = ctx.fleet
    web = [f.get("web-1"), f.get("web-2")]
    fake1.apply(
        k8s.endpoints("e2e-a", "web", web),
        k8s.endpoints("e2e-a", "plain", [f.get("plain-1")], port_name=None),
        k8s.endpoints("e2e-a", "hash", [f.get("hash-1"), f.get("hash-2"), f.get("hash-3")]),
        k8s.endpoints("e2e-a", "echo", [f.get("tcp-1", "tcp"), f.get("tcp-2", "tcp")], port_name="tcp"),
        k8s.endpoints("e2e-a", "scale", [f.get("scale-1"), f.get("scale-2")]),
        k8s.endpoints("other", "web", web),
        k8s.endpoints("e2e-a", "nolabel", [f.get("nolabel-1")], labels={"e2e": "later"}),
    )
    fake2.apply(*k8s.endpoint_slices("e2e-b", "slices", [f.get("slice-1"), f.get("slice-2")]))


def main_discovery(fake1):
    return cluster(fake1, namespace_selector={"match": ["e2e-.*"]}, label_selector="e2e=yes", default_weight=7)


def main_routes(ctx, prefix=""):
    plain = ctx.fleet.get("plain-1").port
    routes = [
        route(1, "/web", f"{prefix}e2e-a/web:http"),
        route(2, "/plain", f"{prefix}e2e-a/plain:{plain}"),
        route(3, "/hash", f"{prefix}e2e-a/hash:http", type="chash", hash_on="vars", key="arg_k"),
        route(4, "/scale", f"{prefix}e2e-a/scale:http"),
        route(5, "/other", f"{prefix}other/web:http"),
        route(6, "/nolabel", f"{prefix}e2e-a/nolabel:http"),
    ]
    if prefix:
        routes.append(route(7, "/slices", "two/e2e-b/slices:http"))
    return routes, [{"id": 1, "upstream": upstream(f"{prefix}e2e-a/echo:tcp")}]


def group_main(ctx):
    ctx.group = "main"
    fake1, fake2 = ctx.fake(token=TOKEN).start(), ctx.fake(token=TOKEN).start()
    try:
        seed_main(ctx, fake1, fake2)
        gw = ctx.gateway("main")
        gw.write_config(main_discovery(fake1))
        gw.write_routes(*main_routes(ctx))
        t0 = time.monotonic()
        start(ctx, gw)
        first = procs.wait_until(lambda: gw.http("/web")[0] == 200, 30)
        ctx.measure("apisix start to first proxied answer", ms(time.monotonic() - t0 if first else None))
        _main_routing(ctx, gw, fake1)
        skip = _main_changes(ctx, gw, fake1, fake2)
        no_errors(ctx, gw, skip, "(broken reload's apart)")
        stop(ctx, gw, [fake1, fake2])
    finally:
        fake1.stop()
        fake2.stop()


def _main_routing(ctx, gw, fake1):
    web = lambda: traffic.http_answer(gw, "/web")  # noqa: E731
    ok = traffic.wait_set(web, {"web-1", "web-2"})
    ctx.check("http route, named port, roundrobin", ok, str(dict(traffic.sample(web, 12))))
    plain = lambda: traffic.http_answer(gw, "/plain")  # noqa: E731
    ctx.check("http route, unnamed port (ns/name:number)", traffic.wait_set(plain, {"plain-1"}, window=6),
              str(dict(traffic.sample(plain, 4))))
    stream = lambda: traffic.stream_answer(gw)  # noqa: E731
    ctx.check("stream route", traffic.wait_set(stream, {"tcp-1", "tcp-2"}), str(dict(traffic.sample(stream, 8))))

    by_key = {k: set(traffic.sample(lambda: traffic.http_answer(gw, f"/hash?k=key{k}"), 4)) for k in range(12)}
    sticky = all(len(v) == 1 for v in by_key.values())
    spread = set().union(*by_key.values())
    ctx.check("upstream chash: a key sticks to one node", sticky and spread <= {"hash-1", "hash-2", "hash-3"}
              and len(spread) >= 2, f"12 keys over {sorted(spread)}")

    other = traffic.sample(lambda: traffic.http_answer(gw, "/other"), 4)
    ctx.check("namespace_selector leaves other/ out (503)", set(other) == {"HTTP 503"}, str(dict(other)))
    nolabel = traffic.sample(lambda: traffic.http_answer(gw, "/nolabel"), 4)
    ctx.check("label_selector leaves e2e=later out (503)", set(nolabel) == {"HTTP 503"}, str(dict(nolabel)))

    status, body = gw.control("/v1/discovery/kubernetes/dump")
    weights = _dump_weights(body, "e2e-a/web") if status == 200 else None
    ctx.check("default_weight 7 (nodes in the dump)", weights == {7}, f"weights {sorted(weights)}" if weights
              else f"dump HTTP {status}")
    masked = status == 200 and TOKEN not in body and "******" in body
    ctx.check("control API dump, token masked", masked, f"HTTP {status}" + (
        "" if status != 200 else ", token masked" if masked else ", token in clear"))

    status, body = gw.control("/v1/discovery/kubernetes/lookup?service=e2e-a/web:http")
    found = _json(body) if status == 200 else {}
    status2, body2 = gw.control("/v1/discovery/kubernetes/lookup?service=other/web:http")
    why = (_json(body2) or {}).get("reason", "") if status2 == 404 else ""  # 404: found nothing, and why
    ctx.check("control API lookup (found; why not)", found.get("found") is True and len(found.get("nodes", [])) == 2
              and "not in a watched namespace" in why, f"HTTP {status}" + (f", other/web: {why[:40]}" if why else ""))
    status, body = gw.control("/v1/discovery/kubernetes/metrics")
    ready = status == 200 and re.search(r"^k8s_disc_ready(\{[^}]*\})? 1$", body, re.M)
    ctx.check("control API metrics (k8s_disc_ready 1)", ready, f"HTTP {status}")
    if gw.has_status:
        status, body = gw.status()
        ctx.check("/status/ready", status == 200, f"HTTP {status}")
    watches = fakeapi.settle_watches(fake1)
    ctx.check("one watch for http + stream", watches == 1, f"{watches} watches")


def _main_changes(ctx, gw, fake1, fake2):
    """Scaling, deletion, reloads, the agent killed, the cluster added; returns the error-log ranges to skip."""
    f = ctx.fleet
    s1, s2, s3 = f.get("scale-1"), f.get("scale-2"), f.get("scale-3")
    scale = lambda: traffic.http_answer(gw, "/scale")  # noqa: E731
    web = lambda: traffic.http_answer(gw, "/web")  # noqa: E731
    good_web = lambda a: a in ("web-1", "web-2")  # noqa: E731
    skip = []

    def change(name, backends, good, confirm, settled):
        """Writes the scale service's Endpoints; the time printed runs from the write (before it is sent) to the first of
        `confirm` answers in a row that show the change (then every node must be seen)."""
        t0 = time.monotonic()
        fake1.apply(k8s.endpoints("e2e-a", "scale", backends))
        took = traffic.wait_route(scale, good, confirm, since=t0)
        ok = took is not None and traffic.wait_set(scale, settled)
        ctx.check(name, ok, f"route changed after {ms(took)}")

    change("scale-down 2 -> 1, seen by the route", [s1], lambda a: a == "scale-1", 10, {"scale-1"})
    change("scale-up 1 -> 3, seen by the route", [s1, s2, s3], lambda a: a == "scale-3", 1,
           {"scale-1", "scale-2", "scale-3"})
    t0 = time.monotonic()
    fake1.delete("Endpoints", "e2e-a", "scale")
    took = traffic.wait_route(scale, lambda a: a == "HTTP 503", 5, since=t0)
    ctx.check("service deleted: route answers 503", took is not None, f"after {ms(took)}")
    change("service re-created, seen by the route", [s2], lambda a: a == "scale-2", 1, {"scale-2"})

    # apisix reload with the same config, while traffic flows
    with traffic.Prober(web, good_web) as p:
        rc, out = gw.reload()
        procs.wait_until(lambda: False, 2.0)  # the old workers hand over while the prober keeps asking
    ctx.check("apisix reload, same config: keeps serving", rc == 0 and p.failed == 0, p.summary())
    change("after reload: scale-up seen by the route", [s2, s3], lambda a: a == "scale-3", 1, {"scale-2", "scale-3"})

    # apisix reload with a config APISIX's CLI accepts and this project refuses (misspelt key): nginx keeps the
    # running configuration
    good_text = open(os.path.join(gw.home, "conf", "config.yaml")).read()
    broken = dict(main_discovery(fake1), namespace_selecter={"equal": "e2e-a"})
    start_off = gw.log_offset()
    with traffic.Prober(web, good_web) as p:
        gw.write_config(broken)
        rc, out = gw.reload()
        refused = wait_log(gw, INVALID_CONFIG, start_off, 10) if ctx.ours else None
        procs.wait_until(lambda: False, 1.0)
    skip.append((start_off, gw.log_offset()))
    gw.write_config(None, raw_text=good_text)
    detail = p.summary() + (f"; log: {INVALID_CONFIG}" if refused else "; config accepted" if not ctx.ours else "")
    ctx.check("apisix reload, broken config: keeps serving", p.failed == 0 and (refused or not ctx.ours), detail)
    change("after broken reload: change seen by the route", [s1], lambda a: a == "scale-1", 10, {"scale-1"})

    # kill -9 of the privileged agent: the master starts a new one, the watch goes on there
    old = gw.agent_pid()
    with traffic.Prober(web, good_web) as p:
        if old:
            os.kill(old, 9)
        new = procs.wait_until(lambda: (gw.agent_pid() or old) != old and gw.agent_pid(), 15)
        procs.wait_until(lambda: False, 0.5)
    ctx.check("kill -9 privileged agent: new agent, keeps serving", old and new and p.failed == 0,
              f"agent {old} -> {new}; {p.summary()}")
    change("after agent kill: change seen by the route", [s1, s3], lambda a: a == "scale-3", 1, {"scale-1", "scale-3"})
    if ctx.ours:
        watches = fakeapi.settle_watches(fake1)
        ctx.check("after agent kill: one watch", watches == 1, f"{watches} watches")

    # apisix reload with a changed config: a second cluster (EndpointSlices), the label selector widened
    two = cluster(fake2, id="two", watch_endpoint_slices=True)
    one = dict(main_discovery(fake1), id="one", label_selector="e2e in (yes,later)")
    gw.write_config([one, two])
    t0 = time.monotonic()
    rc, out = gw.reload()
    gw.write_routes(*main_routes(ctx, prefix="one/"))
    ok = rc == 0 and traffic.wait_set(web, {"web-1", "web-2"}, timeout=20)
    ctx.check("apisix reload, cluster added: id/ns/name:port served", ok,
              f"after {ms(time.monotonic() - t0)}" if ok else f"rc {rc}: {traffic.sample(web, 4)}")
    nolabel = lambda: traffic.http_answer(gw, "/nolabel")  # noqa: E731
    ok = traffic.wait_set(nolabel, {"nolabel-1"}, timeout=10, window=6)
    ctx.check("apisix reload, label_selector changed: now served", ok, str(dict(traffic.sample(nolabel, 4))))
    slices = lambda: traffic.http_answer(gw, "/slices")  # noqa: E731
    ok = traffic.wait_set(slices, {"slice-1", "slice-2"}, timeout=10)
    ctx.check("EndpointSlices (cluster two/)", ok, str(dict(traffic.sample(slices, 8))))
    stream = lambda: traffic.stream_answer(gw)  # noqa: E731
    ok = traffic.wait_set(stream, {"tcp-1", "tcp-2"}, timeout=10)
    ctx.check("stream route, one/ns/name:port", ok, str(dict(traffic.sample(stream, 6))))
    other = traffic.sample(lambda: traffic.http_answer(gw, "/other"), 4)
    ctx.check("namespace_selector still leaves other/ out", set(other) == {"HTTP 503"}, str(dict(other)))
    t0 = time.monotonic()
    fake1.apply(k8s.endpoints("e2e-a", "scale", [s2]))
    took = traffic.wait_route(scale, lambda a: a == "scale-2", 10, since=t0)
    ctx.check("multi-cluster: change seen by the route", took is not None and traffic.wait_set(scale, {"scale-2"}),
              f"route changed after {ms(took)}")
    return skip


def _dump_weights(body, name):
    dump = _json(body) or {}
    weights = set()
    for group in dump.get("endpoints") or []:
        for e in group.get("endpoints") or []:
            if e.get("name") == name:
                for nodes in (_json(e.get("value")) or {}).values():
                    weights |= {n.get("weight") for n in nodes}
    return weights


def _json(text):
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return None


# --- the API server down at start, then up; down after ready --------------------------------------------------------


def group_late_apiserver(ctx, patience):
    """patience: how long to wait for the module to see the late API server (the built-in retries after ~40 s)."""
    ctx.group = "late API server"
    fake = ctx.fake(token=TOKEN)  # not started yet: its port is reserved only
    gw = ctx.gateway("late")
    gw.write_config(cluster(fake))
    gw.write_routes([route(1, "/web", "e2e-a/web:http")])
    web = lambda: traffic.http_answer(gw, "/web")  # noqa: E731
    try:
        start(ctx, gw)
        procs.wait_until(lambda: gw.http("/web")[0] is not None, 20)
        answers = traffic.sample(web, 4)
        ctx.check("API server down: route answers 503", set(answers) == {"HTTP 503"}, str(dict(answers)))
        if gw.has_status:
            status, body = gw.status()
            ctx.check("API server down: /status/ready 503", status == 503, f"HTTP {status} {body.strip()[:40]}")
        fake.start()
        t0 = time.monotonic()  # the API server answers from here on
        fake.apply(k8s.endpoints("e2e-a", "web", [ctx.fleet.get("web-1"), ctx.fleet.get("web-2")]))
        took = traffic.wait_route(web, lambda a: a in ("web-1", "web-2"), 3, timeout=patience, since=t0)
        ctx.check("API server up: route serves", took is not None, f"after {ms(took)}"
                  if took is not None else f"not within {patience:.0f} s")
        if gw.has_status:
            ready = procs.wait_until(lambda: gw.status()[0] == 200, 5 if took is not None else 0.1)
            ctx.check("API server up: /status/ready 200", ready, f"after {ms(time.monotonic() - t0)}"
                      if ready else "still not ready")
        if took is None:
            return
        fake.stop()
        answers = traffic.sample(web, 40)
        ctx.check("API server down after ready: keeps serving", set(answers) <= {"web-1", "web-2"},
                  str(dict(answers)))
        if gw.has_status:
            status, _ = gw.status()
            ctx.check("API server down after ready: /status/ready 200", status == 200, f"HTTP {status}")
        stop(ctx, gw)
    finally:
        fake.stop()


# --- https to the API server: client.ca_file and a token file; a wrong CA ------------------------------------------


def group_tls(ctx):
    ctx.group = "https"
    fake = ctx.fake(token=TLS_TOKEN, tls=True).start()
    try:
        fake.apply(k8s.endpoints("e2e-t", "web", [ctx.fleet.get("tls-1")]))
        token_file = os.path.join(ctx.work, f"{ctx.version}-{ctx.module}-token")
        with open(token_file, "w") as f:
            f.write(TLS_TOKEN + "\n")
        gw = ctx.gateway("tls")

        def conf(ca):
            return {"service": {"schema": "https", "host": "127.0.0.1", "port": str(fake.port)},
                    "client": {"token_file": token_file, "ca_file": fake.ca_file(ca)}}

        gw.write_config(conf("ca.crt"))
        gw.write_routes([route(1, "/tls", "e2e-t/web:http")])
        start(ctx, gw)
        tls = lambda: traffic.http_answer(gw, "/tls")  # noqa: E731
        ok = traffic.wait_set(tls, {"tls-1"}, timeout=20, window=6)
        users = fake.stats().get("requests_by_user", {})
        ctx.check("https, client.ca_file + token_file: served", ok, f"{dict(traffic.sample(tls, 4))}, "
                  f"authenticated: {','.join(users) or 'nobody'}")
        off = gw.log_offset()
        no_errors(ctx, gw, skip=[(off, float("inf"))])
        gw.write_config(conf("other-ca.crt"))
        rc, out = gw.reload()
        seen = wait_log(gw, UNKNOWN_ISSUER, off, 20)
        ctx.check("wrong client.ca_file: logs unknown issuer", rc == 0 and seen,
                  "documented line logged" if seen else "no such line (certificate not verified)")
        stop(ctx, gw, [fake])
    finally:
        fake.stop()


# --- stream only (proxy_mode: stream) --------------------------------------------------------------------------------


def group_stream_only(ctx):
    ctx.group = "stream only"
    fake = ctx.fake(token=TOKEN).start()
    try:
        fake.apply(k8s.endpoints("e2e-a", "echo", [ctx.fleet.get("tcp-1", "tcp")], port_name="tcp"))
        gw = ctx.gateway("stream")
        gw.proxy_mode = "stream"
        gw.write_config(cluster(fake))
        gw.write_routes([], [{"id": 1, "upstream": upstream("e2e-a/echo:tcp")}])
        t0 = time.monotonic()
        start(ctx, gw)
        stream = lambda: traffic.stream_answer(gw)  # noqa: E731
        took = traffic.wait_route(stream, lambda a: a == "tcp-1", 3, timeout=15, since=t0)
        ctx.check("proxy_mode stream: stream route served", took is not None,
                  f"{ms(took)} after apisix start" if took is not None else str(dict(traffic.sample(stream, 3))))
        watches = fakeapi.settle_watches(fake)
        ctx.check("one watch", watches == 1, f"{watches} watches")
        no_errors(ctx, gw)
        stop(ctx, gw, [fake])
    finally:
        fake.stop()


# --- start-up: apisix start to the first proxied answer ---------------------------------------------------------------


def group_startup(ctxs, rounds):
    """Starts APISIX `rounds` times with each module in turn (same version, same API server, same routes) and
    records each module's times and medians: to the first proxied answer, and how much of it `apisix start`
    (the CLI, up to nginx's start) took."""
    fake = ctxs[0].fake(token=TOKEN).start()
    try:
        fake.apply(k8s.endpoints("e2e-a", "web", [ctxs[0].fleet.get("web-1")]))
        times = {c.module: [] for c in ctxs}
        for n in range(rounds):
            for c in ctxs:
                times[c.module].append(_startup_once(c, fake, n))
        for c in ctxs:
            c.group = "start-up"
            firsts = [first for _, first in times[c.module]]
            ok = all(x is not None for x in firsts)
            c.check(f"apisix start to first proxied answer, {rounds} starts", ok, ", ".join(ms(x) for x in firsts))
            c.measure("median", ms(_median(firsts) if ok else None))
            c.measure("median of it in the CLI (apisix start)", ms(_median([cli for cli, _ in times[c.module]])))
    finally:
        fake.stop()


def _median(xs):
    return sorted(xs)[len(xs) // 2]


def _startup_once(ctx, fake, n):
    """(seconds `apisix start` took, seconds to the first proxied answer or None)."""
    gw = ctx.gateway(f"startup{n}")
    gw.write_config(cluster(fake))
    gw.write_routes([route(1, "/web", "e2e-a/web:http")])
    t0 = time.monotonic()
    rc, out = gw.start()
    cli = time.monotonic() - t0
    first = rc == 0 and procs.wait_until(lambda: gw.http("/web")[0] == 200, 30)
    took = time.monotonic() - t0 if first else None
    gw.stop()
    return cli, took
