#!/usr/bin/env python3
"""Every documented setting of discovery.kubernetes against APISIX's own CLI.

APISIX's CLI (`apisix init`, also run by `apisix start`) checks `discovery.kubernetes` against APISIX's own schema,
never this project's, and refuses to render nginx.conf when a value does not match it. This check runs `apisix init`
for:

- every example value of every key of the configuration table (read from the installed library through
  `k8s_disc_config_fields()`, the table the README's configuration reference is rendered from; the README's
  examples are compared with the library's), each of which must pass;
- every value the table lists as refused by APISIX's CLI, which must be refused on the versions listed and pass on
  the others (so the README's warnings stay true);
- every config.yaml example in the README's "Use with APISIX" section;
- the working forms the README gives where APISIX is stricter (an IPv6 API server through `${VAR}` or a
  kubeconfig) and the limits it documents (several clusters);

and then starts nginx on the rendered nginx.conf where it matters (in init_by_lua, APISIX checks config.yaml with
the discovery schema on its run-time package.path, the project's schema.lua, and loads the module, which checks the
config): the working forms must reach the project, and settings that pass APISIX's CLI but not the project must
stop nginx with a message naming the field (the project's, or APISIX's for what schema.lua refuses).

Usage: check-config.py APISIX_BUILD_DIR INSTALL_PREFIX [--readme README.md] [--keep]
  APISIX_BUILD_DIR  a build of ../shared/tools/build-apisix.sh (bin/openresty, apisix/); it is copied, not changed
  INSTALL_PREFIX    where `make install PREFIX=...` put the project (lib/libk8s_disc.so, lua/)
Prints one line per case, the time taken and `CLI: N cases passed on <version>`; exits 1 when a case fails, 2 on
bad arguments.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SCHEMA_REFUSAL = "invalid discovery kubernetes configuration"
PROJECT_REFUSAL = "k8s-disc: invalid discovery config: "


# --- inputs ---------------------------------------------------------------------------------------------------


def library_fields(prefix):
    """The configuration table, as the installed library hands it to the Lua side."""
    path = os.path.join(prefix, "lib", "libk8s_disc.so")
    lib = ctypes.CDLL(path)
    fill = lib.k8s_disc_config_fields
    fill.restype = ctypes.c_int64
    fill.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    cap = 64 * 1024
    for _ in range(4):
        buf = ctypes.create_string_buffer(cap)
        n = fill(buf, cap)
        if n < 0:
            raise SystemExit(f"{path}: k8s_disc_config_fields failed with {n}")
        if n <= cap:
            return json.loads(buf.raw[:n])
        cap = n
    raise SystemExit(f"{path}: k8s_disc_config_fields kept growing")


def apisix_version(build):
    path = os.path.join(build, "apisix", "apisix", "core", "version.lua")
    with open(path) as f:
        m = re.search(r'VERSION\s*=\s*"([^"]+)"', f.read())
    if not m:
        raise SystemExit(f"{path}: no VERSION")
    return m.group(1)


def readme_section(text, start, end):
    i = text.index(start)
    return text[i:text.index(end, i)]


def readme_yaml_blocks(readme):
    """The config.yaml examples of "Use with APISIX" (blocks whose first line names another file are skipped)."""
    section = readme_section(readme, "\n## Use with APISIX\n", "\n## Configuration reference\n")
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```", section, re.S | re.M)
    out = []
    for indent, body in blocks:
        lines = [line[len(indent):] for line in body.splitlines()]
        first = lines[0].strip() if lines else ""
        m = re.match(r"#\s*(\S+\.ya?ml)\b", first)
        name = m.group(1) if m else "config.yaml"
        out.append((name, "\n".join(lines) + "\n"))
    return out


def readme_examples(readme):
    """{field: [example values]} from the README's configuration reference."""
    table = readme_section(readme, "<!-- config-reference:", "<!-- /config-reference -->")
    out = {}
    for row in table.splitlines():
        m = re.match(r"\| `([^`]+)` \|", row)
        if not m:
            continue
        values = row.split(" | ")[2]
        ex = re.search(r"Examples: (.*)$", values)
        out[m.group(1)] = [json.loads(v) for v in re.findall(r"`([^`]+)`", ex.group(1))] if ex else []
    return out


# --- config.yaml ------------------------------------------------------------------------------------------------


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a YAML double-quoted scalar: "6443" stays a string
    raise TypeError(v)


def to_yaml(v, indent=0):
    """Block-style YAML that APISIX 3.8's tinyyaml and 3.18's lyaml both read."""
    pad = " " * indent
    lines = []
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(x, indent + 2))
            else:
                lines.append(f"{pad}{k}: {yaml_scalar(x) if not isinstance(x, (dict, list)) else '{}'}")
    else:
        for x in v:
            if isinstance(x, dict):
                body = to_yaml(x, indent + 2).splitlines()
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {yaml_scalar(x)}")
    return "\n".join(lines)


def merged(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def example_cluster(field, value):
    """The discovery.kubernetes value of one example: single-cluster, or a one-cluster array for `id`."""
    cluster = json.loads(json.dumps(field["with"]))
    name = field["name"]
    if "." in name:
        outer, inner = name.split(".", 1)
        cluster.setdefault(outer, {})[inner] = value
    else:
        cluster[name] = value
    return [cluster] if name == "id" else cluster


# --- running APISIX's CLI and nginx -----------------------------------------------------------------------------


class Apisix:
    def __init__(self, build, prefix, work):
        self.build = os.path.abspath(build)
        self.prefix = os.path.abspath(prefix)
        self.home = os.path.join(work, "apisix")
        shutil.copytree(os.path.join(self.build, "apisix"), self.home, symlinks=True)
        os.makedirs(os.path.join(self.home, "logs"), exist_ok=True)
        self.env = dict(os.environ, PATH=os.path.join(self.build, "bin") + os.pathsep + os.environ["PATH"])
        with socket.socket() as s:  # nginx listens here while a case runs
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def base(self):
        """Everything config.yaml needs besides discovery: standalone, the project on the Lua paths."""
        lua = os.path.join(self.prefix, "lua")
        return {
            "deployment": {"role": "data_plane", "role_data_plane": {"config_provider": "yaml"}},
            "apisix": {
                "node_listen": [{"ip": "127.0.0.1", "port": self.port}],
                "enable_control": False,
                "events": {"module": "lua-resty-worker-events"},
                "extra_lua_path": f"{lua}/?.lua;{lua}/?/init.lua",
                "extra_lua_cpath": os.path.join(self.prefix, "lib", "?.so"),
            },
            "nginx_config": {"worker_processes": 1, "error_log_level": "warn"},
            "plugins": ["proxy-rewrite"],
        }

    def init(self, config_yaml):
        """Runs `apisix init`: (passed, output, nginx.conf text or "")."""
        conf = os.path.join(self.home, "conf")
        with open(os.path.join(conf, "config.yaml"), "w") as f:
            f.write(config_yaml)
        nginx_conf = os.path.join(conf, "nginx.conf")
        if os.path.exists(nginx_conf):
            os.unlink(nginx_conf)
        p = subprocess.run(["bin/apisix", "init"], cwd=self.home, env=self.env, capture_output=True, text=True,
                           timeout=120)
        out = (p.stdout + p.stderr).strip()
        if p.returncode != 0 or not os.path.exists(nginx_conf):
            return False, out, ""
        with open(nginx_conf) as f:
            return True, out, f.read()

    def start(self, extra_env, wait_for):
        """Starts nginx on the rendered nginx.conf (init_by_lua loads the discovery module and the project checks
        its config there): (started, output). When it starts, waits for a k8s-disc line of the error log that
        contains `wait_for` (the cluster the project took from the config), then stops nginx."""
        env = dict(self.env, **extra_env)
        error_log = os.path.join(self.home, "logs", "error.log")
        open(error_log, "w").close()
        p = subprocess.run([os.path.join(self.build, "bin", "openresty"), "-p", self.home + "/", "-c",
                            "conf/nginx.conf"], cwd=self.home, env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            return False, (p.stdout + p.stderr).strip()
        seen = None
        deadline = time.monotonic() + 60
        while seen is None and time.monotonic() < deadline:
            with open(error_log, errors="replace") as f:
                seen = next((line for line in f if "k8s-disc" in line and wait_for in line), None)
            if seen is None:
                time.sleep(0.1)
        self.stop()
        if seen is None:
            return True, f"started, but no k8s-disc line with {wait_for!r} in the error log within 60 s"
        return True, seen[seen.index("k8s-disc"):].strip()[:300]

    def stop(self):
        pid_file = os.path.join(self.home, "logs", "nginx.pid")
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise SystemExit(f"nginx (pid {pid}) did not stop within 60 s of SIGTERM")


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def error_line(text, needle):
    for line in text.splitlines():
        if needle in line:
            return line[line.index(needle):][:300]
    return last_line(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("apisix_build")
    ap.add_argument("prefix")
    ap.add_argument("--readme", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                     "README.md"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    for need in (os.path.join(args.apisix_build, "bin", "openresty"), os.path.join(args.apisix_build, "apisix"),
                 os.path.join(args.prefix, "lib", "libk8s_disc.so"), args.readme):
        if not os.path.exists(need):
            print(f"check-config: {need} does not exist", file=sys.stderr)
            return 2

    began = time.monotonic()
    version = apisix_version(args.apisix_build)
    fields = library_fields(args.prefix)
    with open(args.readme) as f:
        readme = f.read()
    work = tempfile.mkdtemp(prefix=f"k8s-disc-apisix-cli-{version}-")
    apisix = Apisix(args.apisix_build, args.prefix, work)
    passed, failed = 0, []

    def report(ok, name, detail):
        nonlocal passed
        print(f"{'ok  ' if ok else 'FAIL'} {version} {name}: {detail}", flush=True)
        if ok:
            passed += 1
        else:
            failed.append(name)

    def config(discovery, **top):
        return to_yaml(merged(apisix.base(), dict(top, discovery={"kubernetes": discovery}))) + "\n"

    def expect_init(name, discovery, want_pass, check=None):
        ok, out, nginx_conf = apisix.init(config(discovery))
        if want_pass and not ok:
            report(False, name, f"apisix init refused it: {error_line(out, SCHEMA_REFUSAL)}")
        elif want_pass:
            problem = check(nginx_conf) if check else None
            report(problem is None, name, problem or "apisix init passes")
        elif ok:
            report(False, name, "apisix init passed, but the README says APISIX's CLI refuses it")
        elif SCHEMA_REFUSAL not in out:
            report(False, name, f"refused, but not by APISIX's schema: {last_line(out)}")
        else:
            report(True, name, "refused by APISIX's schema, as documented")
        return ok

    def expect_start(name, env, wait_for):
        started, out = apisix.start(env, wait_for)
        good = started and out.startswith("k8s-disc")
        report(good, name, f"nginx starts and the project uses it: {out}" if good else
               out if started else f"nginx did not start: {error_line(out, 'k8s-disc')}")

    def expect_refused_at_start(name, field):
        """nginx stops, naming the field: with the project's message, or (for a value that the project's
        schema.lua already refuses when APISIX checks config.yaml at run time) with APISIX's naming the property."""
        started, out = apisix.start({}, "\n")
        if started:
            report(False, name, f"nginx started; expected the project to refuse {field}")
            return
        line = error_line(out, PROJECT_REFUSAL)
        if PROJECT_REFUSAL in out:
            good = re.search(re.escape(field) + r"(\[\d+\])? = ", line) is not None
        else:
            line = error_line(out, SCHEMA_REFUSAL)
            good = SCHEMA_REFUSAL in line and all(f'property "{part}" validation failed' in line
                                                  for part in field.split("."))
        report(good, name, line if good else f"nginx stopped without naming {field}: {line}")

    # 1. The configuration table: the README's examples are the library's, and each passes or is refused as
    #    documented.
    in_readme = readme_examples(readme)
    for f in fields:
        name = f["name"]
        if in_readme.get(name) != f["examples"]:
            report(False, f"README examples of {name}", f"README {in_readme.get(name)!r}, library {f['examples']!r}")
        for value in f["examples"]:
            check = None
            if name == "shared_size":
                want = f"lua_shared_dict kubernetes {value};"

                def check(text, want=want):
                    return None if want in text else f"nginx.conf lacks {want!r}"
            expect_init(f"{name} = {json.dumps(value)}", example_cluster(f, value), True, check)
        for refused in f["cli_refuses"]:
            value, versions = refused["value"], refused["versions"]
            want_refused = versions == "all" or version in versions.split()
            where = "every version" if versions == "all" else versions
            expect_init(f"{name} = {json.dumps(value)} (refused on {where})", example_cluster(f, value),
                        not want_refused)

    # 2. The README's config.yaml examples for APISIX, as written (the install prefix put in for /opt/k8s-disc).
    deployment = to_yaml({"deployment": apisix.base()["deployment"]}) + "\n"
    for i, (file_name, body) in enumerate(readme_yaml_blocks(readme), 1):
        label = f"README 'Use with APISIX' yaml block {i}"
        if file_name != "config.yaml":
            print(f"skip {version} {label}: a {file_name}, not APISIX's config", flush=True)
            continue
        text = body.replace("/opt/k8s-disc", apisix.prefix)
        if not re.search(r"^deployment:", text, re.M):
            text += deployment
        ok, out, _ = apisix.init(text)
        report(ok, label, "apisix init passes" if ok else f"apisix init refused it: {last_line(out)}")

    # 3. Where APISIX's schema is stricter, the working forms the README gives reach the project and it accepts
    #    them: an IPv6 API server through ${VAR} and through a kubeconfig.
    ipv6 = "::1"  # loopback only; a k8s-disc log line naming [::1] shows that the project took this API server
    kubeconfig = os.path.join(work, "kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write("apiVersion: v1\nkind: Config\ncurrent-context: ipv6\n"
                "clusters:\n- name: ipv6\n  cluster:\n    server: https://[::1]:6443\n"
                "    insecure-skip-tls-verify: true\n"
                "users:\n- name: gw\n  user:\n    token: abc.def\n"
                "contexts:\n- name: ipv6\n  context:\n    cluster: ipv6\n    user: gw\n")
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as f:
        f.write("abc.def\n")
    via_var = {"service": {"host": "${KUBERNETES_SERVICE_HOST}", "port": "${KUBERNETES_SERVICE_PORT}"},
               "client": {"token_file": token_file}}
    if expect_init("IPv6 API server as ${KUBERNETES_SERVICE_HOST}", via_var, True):
        expect_start("IPv6 API server as ${KUBERNETES_SERVICE_HOST}: the project",
                     {"KUBERNETES_SERVICE_HOST": ipv6, "KUBERNETES_SERVICE_PORT": "6443"}, f"[{ipv6}]:6443")
    if expect_init("IPv6 API server in a kubeconfig", {"kubeconfig": kubeconfig}, True):
        expect_start("IPv6 API server in a kubeconfig: the project", {}, f"[{ipv6}]:6443")
    if expect_init("kubeconfig as ${KUBECONFIG}", {"kubeconfig": "${KUBECONFIG}"}, True):
        expect_start("kubeconfig as ${KUBECONFIG}: the project", {"KUBECONFIG": kubeconfig}, f"[{ipv6}]:6443")

    # 4. Documented limits with several clusters: APISIX's CLI wants service and client (with token or
    #    token_file) in every cluster.
    one = {"id": "c1", "service": {"host": "10.96.0.1", "port": "6443"}, "client": {"token_file": token_file}}
    expect_init("several clusters, one with a kubeconfig (documented: refused)",
                [one, {"id": "c2", "kubeconfig": kubeconfig}], False)
    expect_init("several clusters, one with a client certificate only (documented: refused)",
                [one, {"id": "c2", "service": {"host": "10.96.0.2", "port": "6443"},
                       "client": {"cert_file": "/etc/k8s-disc/client.crt", "key_file": "/etc/k8s-disc/client.key"}}],
                False)

    # 5. Settings APISIX's CLI lets through but the project refuses: nginx stops with a message naming the field.
    plain = {"service": {"schema": "http", "host": "127.0.0.1", "port": "6443"}, "client": {"token": "abc.def"}}
    invalid = [
        ("a misspelt key", dict(plain, namespace_selecter={"equal": "a"}), "namespace_selecter"),
        ("an unknown list_strategy", dict(plain, list_strategy="sometimes"), "list_strategy"),
        ("watch_idle_timeout below 10", dict(plain, watch_idle_timeout=5), "watch_idle_timeout"),
        ("an invalid label selector", dict(plain, label_selector="a in (b"), "label_selector"),
        ("a look-around namespace regex", dict(plain, namespace_selector={"match": ["(?!kube).*"]}),
         "namespace_selector.match"),
        ("a duplicate id", [dict(plain, id="c1"), dict(plain, id="c1")], "id"),
        ("shared_size above 16384m", dict(plain, shared_size="20000m"), "shared_size"),
    ]
    for label, discovery, field in invalid:
        if version.startswith("3.8.") and field == "shared_size":
            expect_init(f"{label} (3.8's CLI allows 99m at most)", discovery, False)
            continue
        if expect_init(f"{label}: the CLI", discovery, True):
            expect_refused_at_start(f"{label}: nginx stops naming the field", field)

    if args.keep:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"time: {time.monotonic() - began:.1f} s")
    if failed:
        print(f"CLI: {len(failed)} of {passed + len(failed)} cases failed on {version}: {', '.join(failed)}")
        return 1
    print(f"CLI: {passed} cases passed on {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
