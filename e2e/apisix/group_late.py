"""The API server down when APISIX starts, then up (timed until ready and serving); then down again after ready."""

import re
import time
from functools import partial

import k8sobjects as k8s
import procs
import traffic
from scenario import TOKEN, cluster, ms, route, start, stop


def run(ctx, patience):
    """patience: how long to wait for the module to see the late API server (the built-in retries after ~40 s)."""
    ctx.group = "late API server"
    fake = ctx.fake(token=TOKEN)  # not started yet: its port is reserved only
    gw = ctx.gateway("late")
    gw.write_config(cluster(fake))
    gw.write_routes([route(1, "/web", "e2e-a/web:http")])
    web = partial(traffic.http_answer, gw, "/web")
    try:
        start(ctx, gw)
        procs.wait_until(lambda: gw.http("/web")[0] is not None, 20)
        answers = traffic.sample(web, 4)
        ctx.check("API server down: route answers 503", set(answers) == {"HTTP 503"}, str(dict(answers)))
        if gw.has_status:
            status, body = gw.status()
            ctx.check("API server down: /status/ready 503", status == 503, f"HTTP {status} {body.strip()[:40]}")
        # Bring the API server up only once the module has tried and failed: both modules log the refused
        # connection with the port (ours: "... 127.0.0.1:PORT: list Endpoints failed: ... Connection refused";
        # the built-in: "connect apiserver failed, ... apiserver.port: PORT, message : connection refused").
        refused = re.compile(rf"\b{fake.port}\b.*connection refused", re.I)
        tried = procs.wait_until(lambda: refused.search(gw.log_text()), 30, 0.1)
        ctx.check("API server down: the first attempt was refused", tried, "logged" if tried else "not logged")
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
