"""A stream-only APISIX (`proxy_mode: stream`): stream routes served, one watch."""

import time
from functools import partial

import fakeapi
import k8sobjects as k8s
import traffic
from scenario import TOKEN, cluster, ms, no_errors, start, stop, upstream


def run(ctx):
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
        stream = partial(traffic.stream_answer, gw)
        took = traffic.wait_route(stream, lambda a: a == "tcp-1", 3, timeout=15, since=t0)
        ctx.check("proxy_mode stream: stream route served", took is not None,
                  f"{ms(took)} after apisix start" if took is not None else str(dict(traffic.sample(stream, 3))))
        watches = fakeapi.settle_watches(fake)
        ctx.check("one watch", watches == 1, f"{watches} watches")
        no_errors(ctx, gw)
        stop(ctx, gw, [fake])
    finally:
        fake.stop()
