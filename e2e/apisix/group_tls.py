"""https to the fake API server with `client.ca_file` and `client.token_file`; then a wrong CA, which must be
reported with the documented log line."""

import os
from functools import partial

import k8sobjects as k8s
import traffic
from scenario import TLS_TOKEN, UNKNOWN_ISSUER, no_errors, route, start, stop, wait_log


def run(ctx):
    ctx.group = "https"
    fake = ctx.fake(token=TLS_TOKEN, tls_dir=os.path.join(ctx.work, f"{ctx.version}-{ctx.module}-tls-files")).start()
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
        tls = partial(traffic.http_answer, gw, "/tls")
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
