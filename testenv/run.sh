#!/usr/bin/env bash
# A real Kubernetes control plane for tests: kube-apiserver (built from k8s.io/kubernetes) and one embedded etcd
# member, on 127.0.0.1 with free ports.
#
#   testenv/run.sh build                    build into target/testenv/bin (Go caches make a rebuild quick)
#   testenv/run.sh start DIR                start etcd and kube-apiserver, write DIR's files (below), wait for /readyz
#   testenv/run.sh stop DIR                 stop everything started for DIR (extra API servers too)
#   testenv/run.sh env DIR                  print the shell line that points the tests at DIR
#   testenv/run.sh apiserver DIR NAME [FLAG...]
#                                           start one more kube-apiserver on the same etcd (free port, same serving
#                                           certificate and tokens), extra flags appended; prints its URL
#   testenv/run.sh stop-apiserver DIR NAME  stop that API server (SIGTERM, then SIGKILL)
#   testenv/run.sh restart-apiserver DIR NAME
#                                           stop it and start it again on the same port with the same flags
#
# DIR holds: server (the URL), version, admin.token and admin2.token (group system:masters), reader.token and
# reader2.token (users "reader" and "reader2", no bindings), ca.crt (the serving certificate's CA, as
# kube-apiserver generated it), kubeconfig (admin token), client.crt/client.key (user "k8s-disc-client",
# signed by the client CA kube-apiserver trusts), etcd.url, etcd-admin.url (POST /compact compacts etcd at its
# current revision), logs/*.log (logs/audit.log: every Endpoints and EndpointSlice request), pids/*.pid.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${K8S_DISC_TESTENV_BIN:-$root/target/testenv/bin}
# The Kubernetes release the environment is built from (go.mod pins the same one).
k8s_version=v1.36.3

die() { echo "testenv: $*" >&2; exit 1; }

build() {
    command -v go >/dev/null || die "go is not installed"
    mkdir -p "$bin"
    local minor=${k8s_version#v1.}
    minor=${minor%%.*}
    cd "$here"
    GOTOOLCHAIN=local CGO_ENABLED=0 nice go build -trimpath -o "$bin/" \
        -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version \
                  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
                  -X k8s.io/component-base/version.gitTreeState=clean" \
        ./cmd/...
}

# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds; fails after SECONDS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {   # stop_pid PIDFILE: SIGTERM, up to 20 s, then SIGKILL
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true   # a test may have stopped it with SIGSTOP
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
}

readyz() {   # readyz DIR PORT
    curl -fsS --max-time 5 --cacert "$1/ca.crt" -H "Authorization: Bearer $(cat "$1/admin.token")" \
        "https://127.0.0.1:$2/readyz"
}

# start_apiserver DIR NAME PORT [FLAG...]: the one place the kube-apiserver flags live.
start_apiserver() {
    local dir=$1 name=$2 port=$3
    shift 3
    local etcd_url
    etcd_url=$(cat "$dir/etcd.url")
    printf '%s\n' "$port" "$@" >"$dir/pids/$name.args"
    # --cert-dir: kube-apiserver generates its self-signed serving certificate there (IP SAN 127.0.0.1, no
    # "localhost") or reuses the one it finds, so every API server of DIR has the same CA.
    # --advertise-address: without it kube-apiserver looks for a default-route interface.
    # --endpoint-reconciler-type=none: the reconciler would publish 127.0.0.1 as the "kubernetes" Endpoints,
    # which validation refuses (loopback), and the tests see only the objects they create.
    # --disable-admission-plugins=ServiceAccount: no controller manager creates default service accounts.
    # --etcd-compaction-interval=0: tests decide when etcd compacts.
    nohup "$bin/kube-apiserver" \
        --bind-address=127.0.0.1 --secure-port="$port" --advertise-address=127.0.0.1 \
        --cert-dir="$dir/pki" \
        --etcd-servers="$etcd_url" --etcd-compaction-interval=0 \
        --authorization-mode=RBAC --token-auth-file="$dir/tokens.csv" --client-ca-file="$dir/pki/client-ca.crt" \
        --service-account-issuer="https://127.0.0.1:$port" \
        --service-account-key-file="$dir/pki/sa.key" --service-account-signing-key-file="$dir/pki/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --disable-admission-plugins=ServiceAccount \
        --endpoint-reconciler-type=none \
        --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/logs/audit.log" \
        "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/$name.pid"
    # The first API server generates the serving certificate at start: its CA (the last certificate of
    # apiserver.crt, after the leaf) becomes ca.crt, what clients trust.
    if [ ! -s "$dir/ca.crt" ]; then
        wait_for 180 test -s "$dir/pki/apiserver.crt" ||
            { tail -20 "$dir/logs/$name.log" >&2; die "kube-apiserver wrote no serving certificate in 180 s"; }
        sleep 0.2
        awk '/BEGIN CERTIFICATE/ {buf = ""} {buf = buf $0 "\n"} /END CERTIFICATE/ {last = buf} END {printf "%s", last}' \
            "$dir/pki/apiserver.crt" >"$dir/ca.crt"
    fi
    if ! wait_for 180 readyz "$dir" "$port"; then
        tail -20 "$dir/logs/$name.log" >&2
        die "kube-apiserver $name on port $port not ready after 180 s (log: $dir/logs/$name.log)"
    fi
}

start() {
    local dir=$1
    [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] && [ -x "$bin/freeport" ] ||
        die "not built: run testenv/run.sh build (binaries expected in $bin)"
    command -v openssl >/dev/null || die "openssl is not installed"
    command -v curl >/dev/null || die "curl is not installed"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if alive "$dir/pids/etcd.pid"; then die "$dir is already running (stop it first)"; fi
    rm -rf "$dir/etcd-data" "$dir/pki" "$dir/pids" "$dir/ca.crt"
    mkdir -p "$dir/pki" "$dir/pids" "$dir/logs"
    local ports etcd_client etcd_peer etcd_admin api
    mapfile -t ports < <("$bin/freeport" 4)
    etcd_client=${ports[0]} etcd_peer=${ports[1]} etcd_admin=${ports[2]} api=${ports[3]}

    # Credentials: static tokens (one superuser, one with no permissions), a client CA with one client certificate,
    # and the service-account signing key kube-apiserver requires.
    local user
    for user in admin admin2 reader reader2; do openssl rand -hex 24 >"$dir/$user.token"; done
    {
        for user in admin admin2; do printf '%s,%s,uid-%s,"system:masters"\n' "$(cat "$dir/$user.token")" $user $user; done
        for user in reader reader2; do printf '%s,%s,uid-%s\n' "$(cat "$dir/$user.token")" $user $user; done
    } >"$dir/tokens.csv"
    # The audit log records every request for Endpoints and EndpointSlices (URI, verb, user, status code):
    # tests read it to see which requests the engine sent.
    cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources:
  - group: ""
    resources: ["endpoints"]
  - group: "discovery.k8s.io"
    resources: ["endpointslices"]
- level: None
EOF
    (
        cd "$dir/pki"
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=testenv-client-ca" \
            -keyout client-ca.key -out client-ca.crt 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=k8s-disc-client" \
            -keyout client.key -out client.csr 2>/dev/null
        # A v3 certificate (with extensions): TLS libraries refuse v1 ones.
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' \
            >client.ext
        openssl x509 -req -in client.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -days 2 \
            -extfile client.ext -out client.crt 2>/dev/null
    )
    cp "$dir/pki/client.crt" "$dir/pki/client.key" "$dir/"

    echo "http://127.0.0.1:$etcd_client" >"$dir/etcd.url"
    echo "http://127.0.0.1:$etcd_admin" >"$dir/etcd-admin.url"
    nohup "$bin/etcd" --data-dir "$dir/etcd-data" --client-port "$etcd_client" --peer-port "$etcd_peer" \
        --admin-addr "127.0.0.1:$etcd_admin" >>"$dir/logs/etcd.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/etcd.pid"
    wait_for 60 curl -fsS --max-time 2 "http://127.0.0.1:$etcd_client/health" ||
        { tail -20 "$dir/logs/etcd.log" >&2; die "etcd not healthy after 60 s"; }

    echo "https://127.0.0.1:$api" >"$dir/server"
    start_apiserver "$dir" apiserver "$api"

    curl -fsS --cacert "$dir/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin.token")" \
        "https://127.0.0.1:$api/version" | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' >"$dir/version"
    cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: https://127.0.0.1:$api
    certificate-authority: $dir/ca.crt
users:
- name: admin
  user:
    token: $(cat "$dir/admin.token")
contexts:
- name: testenv
  context:
    cluster: testenv
    user: admin
current-context: testenv
EOF
    echo "testenv: kube-apiserver $(cat "$dir/version") at https://127.0.0.1:$api, etcd at $(cat "$dir/etcd.url")"
    for p in etcd apiserver; do
        echo "testenv: $p RSS $(awk '/VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$(cat "$dir/pids/$p.pid")/status")"
    done
}

stop() {
    local dir=$1
    [ -d "$dir/pids" ] || return 0
    local f
    for f in "$dir"/pids/*.pid; do
        alive "$f" || continue
        echo "testenv: $(basename "$f" .pid) memory at stop: $(awk '/VmRSS|VmHWM/ {printf "%s %d MiB ", $1, $2 / 1024}' \
            "/proc/$(cat "$f")/status")"
    done
    for f in "$dir"/pids/*.pid; do
        [ -e "$f" ] || continue
        [ "$(basename "$f")" = etcd.pid ] && continue
        stop_pid "$f"
    done
    stop_pid "$dir/pids/etcd.pid"
}

cmd=${1:-}
case "$cmd" in
build) build ;;
start) start "${2:?start DIR}" ;;
stop) stop "${2:?stop DIR}" ;;
env) echo "export K8S_DISC_REAL_APISERVER=$(cd "${2:?env DIR}" && pwd)" ;;
apiserver)
    dir=${2:?apiserver DIR NAME}
    name=${3:?apiserver DIR NAME}
    shift 3
    [[ $name =~ ^[a-z0-9-]+$ ]] || die "the API server name must be [a-z0-9-]+, got $name"
    alive "$dir/pids/$name.pid" && die "API server $name is already running"
    port=$("$bin/freeport" 1)
    start_apiserver "$dir" "$name" "$port" "$@"
    echo "https://127.0.0.1:$port"
    ;;
stop-apiserver) stop_pid "${2:?stop-apiserver DIR NAME}/pids/${3:?stop-apiserver DIR NAME}.pid" ;;
restart-apiserver)
    dir=${2:?restart-apiserver DIR NAME}
    name=${3:?restart-apiserver DIR NAME}
    [ -f "$dir/pids/$name.args" ] || die "no API server named $name was started in $dir"
    mapfile -t args <"$dir/pids/$name.args"
    stop_pid "$dir/pids/$name.pid"
    start_apiserver "$dir" "$name" "${args[@]}"
    echo "https://127.0.0.1:${args[0]}"
    ;;
*) sed -n '2,17p' "$0"; exit 2 ;;
esac
