"""`apisix start` to the first proxied answer, several starts of each module in turn."""

import time

import k8sobjects as k8s
import procs
from scenario import TOKEN, cluster, ms, route


def run(ctxs, rounds):
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
