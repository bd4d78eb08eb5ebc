"""Topology: a gateway in zone za with `topology.mode: prefer_zone` and a service with backends in three zones
(za-1, za-2 in za; zb-1 in zb; zc-1 in zc). Traffic stays in za; when the za backends stop (connections refused,
before Kubernetes notices) APISIX's balancer moves to the other zones' nodes (priority -1), and back when they
return; when Kubernetes marks the za endpoints not ready, the other zones serve without a failed attempt."""

import time
from functools import partial

import k8sobjects as k8s
import procs
import traffic
from scenario import TOKEN, cluster, json_or_none, ms, no_errors, route, start, stop

ZONED = ("za-1", "za-2", "zb-1", "zc-1")
ZONES = ["za", "za", "zb", "zc"]
IN_ZONE = {"za-1", "za-2"}
OTHER_ZONES = {"zb-1", "zc-1"}
SERVICE = "e2e-z/zoned:http"


def run(ctx):
    ctx.group = "topology"
    # The built-in module ignores `topology`: its checks of where traffic goes are expected to time out, and are
    # given less time.
    patience = 20 if ctx.ours else 5
    fake = ctx.fake(token=TOKEN).start()
    f = ctx.fleet
    backends = [f.get(n) for n in ZONED]
    stopped = []
    try:
        fake.apply(*k8s.endpoint_slices("e2e-z", "zoned", backends, zones=ZONES))
        gw = ctx.gateway("topology")
        gw.env["NODE_ZONE"] = "za"
        gw.write_config(cluster(fake, watch_endpoint_slices=True,
                                topology={"mode": "prefer_zone", "zone": "${NODE_ZONE}"}))
        gw.write_routes([route(1, "/zoned", SERVICE)])
        start(ctx, gw)
        zoned = partial(traffic.http_answer, gw, "/zoned")
        procs.wait_until(lambda: gw.http("/zoned")[0] == 200, 30)

        ok = traffic.wait_set(zoned, IN_ZONE, timeout=patience, window=40)
        ctx.check("prefer_zone: traffic stays in the gateway's zone", ok, str(dict(traffic.sample(zoned, 40))))

        status, body = gw.control(f"/v1/discovery/kubernetes/lookup?service={SERVICE}")
        nodes = (json_or_none(body) or {}).get("nodes") or [] if status == 200 else []
        shown = sorted((n.get("zone"), n.get("priority")) for n in nodes)
        ctx.check("lookup API: each node's zone and priority", shown == [("za", 0), ("za", 0), ("zb", -1),
                                                                          ("zc", -1)], f"HTTP {status}: {shown}")

        # The za backends stop; Kubernetes has not noticed yet, so their nodes are still served (priority 0):
        # each request finds them refusing and the balancer moves on to priority -1.
        refused_from = gw.log_offset()
        for name in sorted(IN_ZONE):
            f.stop(name)
            stopped.append(name)
        t0 = time.monotonic()
        took = traffic.wait_route(zoned, lambda a: a in OTHER_ZONES, 10, timeout=patience, since=t0)
        ok = took is not None and traffic.wait_set(zoned, OTHER_ZONES, timeout=patience, window=40)
        ctx.check("za backends stopped: traffic moves to the other zones", ok,
                  f"after {ms(took)}: {dict(traffic.sample(zoned, 40))}")

        for name in list(stopped):
            f.restart(name)
            stopped.remove(name)
        refused_to = gw.log_offset()
        t0 = time.monotonic()
        took = traffic.wait_route(zoned, lambda a: a in IN_ZONE, 10, timeout=patience, since=t0)
        ok = took is not None and traffic.wait_set(zoned, IN_ZONE, timeout=patience, window=40)
        ctx.check("za backends back: traffic returns to the zone", ok,
                  f"after {ms(took)}: {dict(traffic.sample(zoned, 40))}")

        # Kubernetes marks the za endpoints not ready: their nodes leave, the others serve with no failed attempt.
        t0 = time.monotonic()
        fake.apply(*k8s.endpoint_slices("e2e-z", "zoned", backends, zones=ZONES, ready=[False, False, True, True]))
        took = traffic.wait_route(zoned, lambda a: a in OTHER_ZONES, 10, timeout=patience, since=t0)
        ok = took is not None and traffic.wait_set(zoned, OTHER_ZONES, timeout=patience, window=40)
        ctx.check("za endpoints not ready: the other zones serve", ok,
                  f"after {ms(took)}: {dict(traffic.sample(zoned, 40))}")
        t0 = time.monotonic()
        fake.apply(*k8s.endpoint_slices("e2e-z", "zoned", backends, zones=ZONES))
        took = traffic.wait_route(zoned, lambda a: a in IN_ZONE, 10, timeout=patience, since=t0)
        ok = took is not None and traffic.wait_set(zoned, IN_ZONE, timeout=patience, window=40)
        ctx.check("za endpoints ready again: traffic back in the zone", ok, f"route changed after {ms(took)}")

        # The refused connections of the stopped backends are logged by nginx as errors: expected there only.
        no_errors(ctx, gw, [(refused_from, refused_to)], "(stopped backends' refused connections apart)")
        stop(ctx, gw, [fake])
    finally:
        for name in stopped:
            f.restart(name)
        fake.stop()
