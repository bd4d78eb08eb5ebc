"""The main group: routing (http, stream, named and unnamed ports, roundrobin, chash, selectors,
`default_weight`), the control API, changes seen through the route and timed, reloads (same, broken and changed
config), `kill -9` of the privileged agent, a second cluster with EndpointSlices, the error log, `apisix stop`."""

import os
from functools import partial
import re
import time

import fakeapi
import k8sobjects as k8s
import procs
import traffic
from scenario import (INVALID_CONFIG, TOKEN, json_or_none, cluster, ms, no_errors, route, start, stop,
                      upstream, wait_log)


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


def run(ctx):
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
    web = partial(traffic.http_answer, gw, "/web")
    ok = traffic.wait_set(web, {"web-1", "web-2"})
    ctx.check("http route, named port, roundrobin", ok, str(dict(traffic.sample(web, 12))))
    plain = partial(traffic.http_answer, gw, "/plain")
    ctx.check("http route, unnamed port (ns/name:number)", traffic.wait_set(plain, {"plain-1"}, window=6),
              str(dict(traffic.sample(plain, 4))))
    stream = partial(traffic.stream_answer, gw)
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
    found = json_or_none(body) if status == 200 else {}
    status2, body2 = gw.control("/v1/discovery/kubernetes/lookup?service=other/web:http")
    why = (json_or_none(body2) or {}).get("reason", "") if status2 == 404 else ""  # 404: found nothing, and why
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
    scale = partial(traffic.http_answer, gw, "/scale")
    web = partial(traffic.http_answer, gw, "/web")

    def good_web(answer):
        return answer in ("web-1", "web-2")

    skip = []

    def change(name, backends, good, confirm, settled):
        """Writes the scale service's Endpoints; the time printed runs from the write (before it is sent) to the
        first of `confirm` answers in a row that show the change (then every node must be seen)."""
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
        time.sleep(2.0)  # the old workers hand over while the prober keeps asking
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
        time.sleep(1.0)  # the prober keeps asking after nginx has refused the new configuration
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
        time.sleep(0.5)  # and once the new agent runs
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
    nolabel = partial(traffic.http_answer, gw, "/nolabel")
    ok = traffic.wait_set(nolabel, {"nolabel-1"}, timeout=10, window=6)
    ctx.check("apisix reload, label_selector changed: now served", ok, str(dict(traffic.sample(nolabel, 4))))
    slices = partial(traffic.http_answer, gw, "/slices")
    ok = traffic.wait_set(slices, {"slice-1", "slice-2"}, timeout=10)
    ctx.check("EndpointSlices (cluster two/)", ok, str(dict(traffic.sample(slices, 8))))
    stream = partial(traffic.stream_answer, gw)
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
    dump = json_or_none(body) or {}
    weights = set()
    for group in dump.get("endpoints") or []:
        for e in group.get("endpoints") or []:
            if e.get("name") == name:
                for nodes in (json_or_none(e.get("value")) or {}).values():
                    weights |= {n.get("weight") for n in nodes}
    return weights
