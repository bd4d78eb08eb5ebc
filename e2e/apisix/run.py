#!/usr/bin/env python3
"""End-to-end tests of k8s-disc inside real Apache APISIX, beside APISIX's built-in kubernetes module.

    run.py --apisix VERSION=DIST [--apisix ...] --prefix K8S_DISC_PREFIX --fake-apiserver BIN --work DIR
           [--group NAME ...] [--module ours|builtin]

DIST is build-apisix.sh's output directory; K8S_DISC_PREFIX where `make install` put the project (lib/, lua/).
Every scenario runs on each version with this project's module (asserted) and with the built-in one (reported);
the results are printed side by side, then one `RESULT:` line. Exit status 0 when every check of ours passed.
"""

import argparse
import os
import shutil
import sys
import time
import traceback

import backends
import group_late
import group_main
import group_startup
import group_stream
import group_tls
import group_topology
import procs
import report
import scenario

GROUPS = ("startup", "main", "stream-only", "https", "late-apiserver", "topology")
# The built-in module retries a failed first list after about 40 s; give it that long, and ours far less.
LATE_PATIENCE = {"ours": 20.0, "builtin": 60.0}
STARTUP_ROUNDS = 5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apisix", action="append", required=True, metavar="VERSION=DIST")
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--fake-apiserver", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--group", action="append", choices=GROUPS)
    ap.add_argument("--module", action="append", choices=report.MODULES)
    args = ap.parse_args()
    groups = args.group or GROUPS
    args.prefix, args.fake_apiserver, args.work = (os.path.abspath(p) for p in
                                                   (args.prefix, args.fake_apiserver, args.work))
    modules = args.module or report.MODULES

    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    fleet = backends.Fleet()
    procs.on_exit(fleet.close)
    results = report.Results()
    started = time.monotonic()
    for spec in args.apisix:
        version, dist = spec.split("=", 1)
        dist = os.path.abspath(dist)
        ctxs = [scenario.Ctx(version, m, dist, args.prefix, args.fake_apiserver, args.work, fleet, results)
                for m in modules]
        print(f"== APISIX {version} ({dist})", flush=True)
        for g in groups:
            if g == "startup":
                guarded(ctxs[0], "start-up", lambda: group_startup.run(ctxs, STARTUP_ROUNDS))
                continue
            for c in ctxs:
                run = {
                    "main": lambda: group_main.run(c),
                    "stream-only": lambda: group_stream.run(c),
                    "https": lambda: group_tls.run(c),
                    "late-apiserver": lambda: group_late.run(c, LATE_PATIENCE[c.module]),
                    "topology": lambda: group_topology.run(c),
                }[g]
                guarded(c, g, run)

    print("\n== side by side (k8s-disc asserted; APISIX's built-in module reported, not asserted)")
    print(results.table())
    failures = results.failures()
    for (version, group, name), (_, text) in failures:
        print(f"FAILED: APISIX {version}: {group}: {name}: {text}")
    summary = []
    for m in modules:
        passed, total = results.counts(m)
        summary.append(f"{report.HEAD[m]} {passed}/{total} checks")
    versions = " and ".join(s.split("=", 1)[0] for s in args.apisix)
    print(f"RESULT: APISIX {versions}: {', '.join(summary)} ({len(failures)} failed of k8s-disc's, built-in's "
          f"reported), {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


def guarded(ctx, group, fn):
    """Runs a scenario group; an exception ends that group only and counts as a failed check."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - reported, and the other groups still run
        ctx.group = ctx.group or group
        ctx.check("completed", False, f"{type(e).__name__}: {str(e).strip()[-150:]}")
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
