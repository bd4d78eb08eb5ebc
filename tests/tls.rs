//! Secure connections end to end against the fake API server in TLS mode: verified https with a CA file, the
//! in-cluster CA and a kubeconfig; verification failures explained; mTLS; credential rotation without a gap;
//! 401/403 retried; IPv6; per-cluster CAs; and no secret in the dump.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
mod common;

use common::{eventually, nodes};
use k8s_disc::testing::Cluster;
use k8s_disc::testing::Instance;
use k8s_fake_apiserver::tls::{CLIENT_RSA_USER, CLIENT_USER, CLIENT2_USER};
use k8s_fake_apiserver::{FakeApiServer, Options, Rbac, TlsOptions};
use serde_json::{Value, json};

/// A fresh directory for one test.
fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("k8s-disc-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tls_server(dir: &Path, require_client_cert: bool, token: Option<&str>) -> FakeApiServer {
    tls_server_on(dir, require_client_cert, token, "127.0.0.1:0")
}

fn tls_server_on(
    dir: &Path,
    require_client_cert: bool,
    token: Option<&str>,
    listen: &str,
) -> FakeApiServer {
    let s = FakeApiServer::start(Options {
        listen: listen.parse().unwrap(),
        token: token.map(str::to_string),
        tls: Some(TlsOptions {
            dir: dir.join("pki"),
            require_client_cert,
        }),
        ..Options::default()
    })
    .expect("fake API server starts");
    s.apply(endpoints(&["10.1.0.1"]));
    s
}

fn endpoints(ips: &[&str]) -> Value {
    let addrs: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": {"namespace": "ns", "name": "web"},
           "subsets": [{"addresses": addrs, "ports": [{"name": "http", "port": 80}]}]})
}

fn pki(s: &FakeApiServer, file: &str) -> String {
    s.tls_dir()
        .expect("TLS mode")
        .join(file)
        .display()
        .to_string()
}

fn start(conf: Value) -> Arc<Instance> {
    common::start_instance(&conf.to_string())
}

fn hosts(inst: &Instance, name: &str) -> Option<Vec<String>> {
    nodes(inst, name).map(|n| n.into_iter().map(|n| n.host).collect())
}

fn last_error(inst: &Instance, cluster: usize) -> String {
    inst.clusters[cluster].region.status().last_error
}

fn https(s: &FakeApiServer, host: &str, client: Value) -> Value {
    json!({"service": {"schema": "https", "host": host, "port": s.addr().port()},
           "client": client, "shared_size": "1m"})
}

/// Writes `content` to `path` by renaming a temporary file over it, as the kubelet and cert-manager do.
fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn verified_https_with_a_ca_file() {
    let dir = tempdir("ca-file");
    let s = tls_server(&dir, false, Some("tok-1"));
    let inst = start(https(
        &s,
        "127.0.0.1",
        json!({"token": "tok-1", "ca_file": pki(&s, "ca.crt")}),
    ));
    eventually("listed over https", || inst.ready());
    assert_eq!(hosts(&inst, "ns/web:http"), Some(vec!["10.1.0.1".into()]));
    s.apply(endpoints(&["10.1.0.2"]));
    eventually("watch over https", || {
        hosts(&inst, "ns/web:http") == Some(vec!["10.1.0.2".into()])
    });
    assert_eq!(s.stats().unauthorized, 0);
}

#[test]
fn https_to_an_ipv6_literal_verifies_the_ip_san() {
    let dir = tempdir("ipv6");
    let s = tls_server_on(&dir, false, Some("tok"), "[::1]:0");
    let inst = start(https(
        &s,
        "[::1]",
        json!({"token": "tok", "ca_file": pki(&s, "ca.crt")}),
    ));
    eventually("listed over https://[::1]", || inst.ready());
    assert_eq!(hosts(&inst, "ns/web:http"), Some(vec!["10.1.0.1".into()]));
}

#[test]
fn the_in_cluster_ca_is_the_trust_anchor_when_no_ca_file_is_set() {
    let dir = tempdir("in-cluster");
    let s = tls_server(&dir, false, Some("tok"));
    // Parse a config without ca_file, then point the in-cluster CA location at the fake's CA: the JSON config
    // cannot do this, only a Rust caller.
    let inst = Instance::standalone(&https(&s, "localhost", json!({"token": "tok"})).to_string())
        .expect("config is valid");
    let mut config = inst.clusters[0].config.clone();
    assert_eq!(
        config.in_cluster_ca,
        Path::new("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    );
    config.in_cluster_ca = pki(&s, "ca.crt").into();
    let cluster = Arc::new(Cluster {
        config,
        region: inst.clusters[0].region.clone(),
    });
    let generation = inst.generation();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || rt.block_on(k8s_disc::testing::run(cluster, generation)));
    eventually("listed trusting the in-cluster CA", || inst.ready());
    assert_eq!(hosts(&inst, "ns/web:http"), Some(vec!["10.1.0.1".into()]));
}

#[test]
fn a_kubeconfig_supplies_server_ca_client_certificate_and_token() {
    let dir = tempdir("kubeconfig");
    let s = tls_server(&dir, true, None);
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(pki(&s, f)).unwrap())
    };
    // The CA and key inline, the certificate as a path relative to the kubeconfig.
    std::fs::copy(pki(&s, "client.crt"), dir.join("me.crt")).unwrap();
    let kubeconfig = format!(
        r#"apiVersion: v1
kind: Config
current-context: other
clusters:
- name: fake
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {ca}
contexts:
- name: fake-admin
  context: {{cluster: fake, user: admin, namespace: ignored}}
- name: other
  context: {{cluster: fake, user: nobody}}
users:
- name: admin
  user:
    client-certificate: me.crt
    client-key-data: {key}
- name: nobody
  user: {{}}
"#,
        port = s.addr().port(),
        ca = b64("ca.crt"),
        key = b64("client.key"),
    );
    let path = dir.join("config");
    std::fs::write(&path, kubeconfig).unwrap();
    let inst = start(json!({"kubeconfig": path, "context": "fake-admin", "shared_size": "1m"}));
    eventually("listed through the kubeconfig", || inst.ready());
    assert_eq!(hosts(&inst, "ns/web:http"), Some(vec!["10.1.0.1".into()]));
    assert!(s.stats().requests_by_user.get(CLIENT_USER).copied() > Some(0));
    let dump = k8s_disc::testing::dump(&inst).to_string();
    let key_b64 = b64("client.key");
    assert!(
        !dump.contains(&key_b64[..40]),
        "no key material in the dump"
    );
    assert!(dump.contains("\"context\":\"fake-admin\""), "{dump}");

    // Explicit service/client settings beside a kubeconfig are ambiguous: refused, naming the field.
    let e = Instance::standalone(
        &json!({"kubeconfig": path, "client": {"token": "secret-token"}}).to_string(),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        e.contains("client = \"******\": cannot be combined with kubeconfig"),
        "{e}"
    );
    assert!(!e.contains("secret-token"));
    // What APISIX's schema injects as defaults is not an explicit setting.
    let injected = Instance::standalone(
        &json!({"kubeconfig": path, "context": "fake-admin",
                "service": {"schema": "https", "host": "${KUBERNETES_SERVICE_HOST}",
                            "port": "${KUBERNETES_SERVICE_PORT}"},
                "client": {"token_file": "/var/run/secrets/kubernetes.io/serviceaccount/token"}})
        .to_string(),
    )
    .expect("schema defaults beside a kubeconfig are accepted");
    assert_eq!(injected.clusters[0].config.port, s.addr().port());
    // The current context's user has no credentials: the server refuses the handshake, and the log line says
    // what to set.
    let inst = start(json!({"kubeconfig": path, "shared_size": "1m"}));
    eventually("refused without a client certificate", || {
        last_error(&inst, 0).contains("requires a client certificate")
    });
    let e = last_error(&inst, 0);
    assert!(e.contains("client-certificate"), "{e}");
}

#[test]
fn a_wrong_ca_or_host_fails_with_the_reason_and_the_fix() {
    let dir = tempdir("wrong-ca");
    let s = tls_server(&dir, false, Some("tok"));
    let inst = start(https(
        &s,
        "127.0.0.1",
        json!({"token": "tok", "ca_file": pki(&s, "other-ca.crt")}),
    ));
    eventually("unknown issuer reported", || {
        last_error(&inst, 0).contains("unknown issuer")
    });
    let e = last_error(&inst, 0);
    assert!(e.contains("set client.ca_file"), "{e}");
    assert!(e.contains("other-ca.crt"), "names the CA in use: {e}");
    assert!(!inst.ready());

    // A host that is not in the certificate's SANs (127.0.0.2 is loopback too, but not named).
    let s2 = tls_server_on(&tempdir("wrong-name"), false, Some("tok"), "127.0.0.2:0");
    let inst = start(https(
        &s2,
        "127.0.0.2",
        json!({"token": "tok", "ca_file": pki(&s2, "ca.crt")}),
    ));
    eventually("name mismatch reported", || {
        last_error(&inst, 0).contains("does not name 127.0.0.2")
    });
    let e = last_error(&inst, 0);
    assert!(e.contains("service.host must match"), "{e}");
    assert!(e.contains("127.0.0.1"), "lists the names it has: {e}");
}

#[test]
fn ssl_verify_false_connects_without_a_ca() {
    let dir = tempdir("no-verify");
    let s = tls_server(&dir, false, Some("tok"));
    let mut conf = https(&s, "127.0.0.1", json!({"token": "tok"}));
    conf["service"]["ssl_verify"] = json!(false);
    let inst = start(conf);
    eventually("listed without verification", || inst.ready());
}

#[test]
fn mtls_works_and_a_missing_or_wrong_client_certificate_is_refused() {
    let dir = tempdir("mtls");
    let s = tls_server(&dir, true, None);
    let ca = pki(&s, "ca.crt");
    // Certificate alone (no token), SEC1 key.
    let ok = start(https(
        &s,
        "127.0.0.1",
        json!({"ca_file": ca, "cert_file": pki(&s, "client.crt"), "key_file": pki(&s, "client.sec1.key")}),
    ));
    // Ed25519, PKCS#8.
    let ed = start(https(
        &s,
        "localhost",
        json!({"ca_file": ca, "cert_file": pki(&s, "client2.crt"), "key_file": pki(&s, "client2.key")}),
    ));
    // RSA, PKCS#8 and PKCS#1.
    let rsa = start(https(
        &s,
        "127.0.0.1",
        json!({"ca_file": ca, "cert_file": pki(&s, "client-rsa.crt"), "key_file": pki(&s, "client-rsa.key")}),
    ));
    let rsa1 = start(https(
        &s,
        "localhost",
        json!({"ca_file": ca, "cert_file": pki(&s, "client-rsa.crt"), "key_file": pki(&s, "client-rsa.pkcs1.key")}),
    ));
    let missing = start(https(
        &s,
        "127.0.0.1",
        json!({"ca_file": ca, "token": "tok"}),
    ));
    let wrong = start(https(
        &s,
        "127.0.0.1",
        json!({"ca_file": ca, "cert_file": pki(&s, "wrong-client.crt"), "key_file": pki(&s, "wrong-client.key")}),
    ));
    eventually("mTLS lists", || {
        ok.ready() && ed.ready() && rsa.ready() && rsa1.ready()
    });
    for inst in [&ok, &ed, &rsa, &rsa1] {
        assert_eq!(hosts(inst, "ns/web:http"), Some(vec!["10.1.0.1".into()]));
    }
    let users = s.stats().requests_by_user;
    for user in [CLIENT_USER, CLIENT2_USER, CLIENT_RSA_USER] {
        assert!(users.contains_key(user), "{user} not seen: {users:?}");
    }
    eventually("missing certificate explained", || {
        last_error(&missing, 0).contains("requires a client certificate")
    });
    assert!(
        last_error(&missing, 0).contains("set client.cert_file and client.key_file"),
        "{}",
        last_error(&missing, 0)
    );
    eventually("wrong certificate explained", || {
        last_error(&wrong, 0).contains("refused our client certificate")
    });
    assert!(
        last_error(&wrong, 0).contains("client.cert_file must be signed by a CA"),
        "{}",
        last_error(&wrong, 0)
    );
    assert!(!missing.ready() && !wrong.ready());
}

#[test]
fn rotated_client_certificates_and_token_file_keep_discovery_running_without_a_gap() {
    let dir = tempdir("rotation");
    let s = tls_server(&dir, true, Some("token-one"));
    let (cert, key, token) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("token"));
    std::fs::copy(pki(&s, "client.crt"), &cert).unwrap();
    std::fs::copy(pki(&s, "client.key"), &key).unwrap();
    std::fs::write(&token, "token-one\n").unwrap();
    let inst = start(https(
        &s,
        "127.0.0.1",
        json!({"token_file": token, "ca_file": pki(&s, "ca.crt"), "cert_file": cert, "key_file": key}),
    ));
    eventually("first list", || inst.ready());
    assert!(s.wait_for_active_watches(1, Duration::from_secs(10)));

    // Readers keep asking all along; a single miss is a gap.
    let stop = Arc::new(AtomicBool::new(false));
    let misses = Arc::new(AtomicU64::new(0));
    let reader = {
        let (inst, stop, misses) = (inst.clone(), stop.clone(), misses.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if nodes(&inst, "ns/web:http").is_none_or(|n| n.is_empty()) {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    // Rotate everything: new certificate and key (another key type), new token; the server stops accepting the
    // old token. The running watch keeps its connection; the next connection must use the new credentials.
    replace_file(&cert, &std::fs::read(pki(&s, "client2.crt")).unwrap());
    replace_file(&key, &std::fs::read(pki(&s, "client2.key")).unwrap());
    replace_file(&token, b"token-two\n");
    s.set_token(Some("token-two"));
    std::thread::sleep(Duration::from_millis(200));
    s.close_watches();
    eventually("a new watch with the new certificate", || {
        s.stats().requests_by_user.contains_key(CLIENT2_USER) && s.stats().active_watches == 1
    });
    s.apply(endpoints(&["10.1.0.7"]));
    eventually("changes keep arriving", || {
        hosts(&inst, "ns/web:http") == Some(vec!["10.1.0.7".into()])
    });
    // The certificate authenticates; the token must also be the new one (a 401 would show here).
    assert_eq!(
        s.stats().unauthorized,
        0,
        "the rotated token file was read before use"
    );
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(misses.load(Ordering::Relaxed), 0, "no gap in served nodes");
}

#[test]
fn a_rotated_token_file_is_picked_up_mid_watch_without_a_gap() {
    let dir = tempdir("token-rotation");
    let s = tls_server(&dir, false, Some("token-a"));
    let token = dir.join("token");
    std::fs::write(&token, "token-a").unwrap();
    let inst = start(https(
        &s,
        "127.0.0.1",
        json!({"token_file": token, "ca_file": pki(&s, "ca.crt")}),
    ));
    eventually("first list", || inst.ready());
    assert!(s.wait_for_active_watches(1, Duration::from_secs(10)));
    replace_file(&token, b"token-b");
    s.set_token(Some("token-b"));
    s.close_watches();
    eventually("re-watched with the new token", || {
        s.stats().watches_started >= 2 && s.stats().active_watches == 1
    });
    assert_eq!(s.stats().unauthorized, 0);
    assert!(nodes(&inst, "ns/web:http").is_some());
}

#[test]
fn unauthorized_and_forbidden_are_reported_with_their_messages_and_retried_with_back_off() {
    let dir = tempdir("401-403");
    let s = tls_server(&dir, false, Some("right"));
    let token = dir.join("token");
    std::fs::write(&token, "wrong").unwrap();
    let inst = start(https(
        &s,
        "127.0.0.1",
        json!({"token_file": token, "ca_file": pki(&s, "ca.crt")}),
    ));
    eventually("401 reported", || {
        last_error(&inst, 0).contains("HTTP 401 Unauthorized: Unauthorized")
    });
    // Back-off: 0.8 s doubling, so at most a handful of attempts in 3 s (a loaded machine makes fewer, never
    // more; the retry itself is waited for, not expected by a deadline).
    let first = std::time::Instant::now();
    eventually("retried", || s.stats().unauthorized >= 2);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(first.elapsed()));
    let attempts = s.stats().unauthorized;
    assert!(attempts <= 4, "{attempts} attempts in ~3 s");
    // The fixed file is read again after the 401.
    replace_file(&token, b"right");
    eventually("recovered with the fixed token", || inst.ready());

    s.set_rbac(Rbac {
        deny: vec!["list".into(), "watch".into()],
        users: vec![],
    });
    s.close_watches();
    let want = "HTTP 403 Forbidden: endpoints is forbidden: User \"system:serviceaccount:default:k8s-disc\" \
                cannot watch resource \"endpoints\" in API group \"\" at the cluster scope";
    eventually("403 reported", || last_error(&inst, 0).contains(want));
    let forbidden = s.stats().forbidden;
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        s.stats().forbidden - forbidden <= 3,
        "retried with back-off"
    );
    assert!(
        nodes(&inst, "ns/web:http").is_some(),
        "data kept while forbidden"
    );
    s.set_rbac(Rbac::default());
    s.apply(endpoints(&["10.1.0.9"]));
    eventually("recovered once allowed", || {
        hosts(&inst, "ns/web:http") == Some(vec!["10.1.0.9".into()])
    });
}

#[test]
fn two_clusters_with_private_cas_each_verify_only_against_their_own() {
    let a = tls_server(&tempdir("ca-a"), false, Some("t"));
    let b = tls_server(&tempdir("ca-b"), false, Some("t"));
    b.apply(endpoints(&["10.2.0.1"]));
    let cluster = |id: &str, s: &FakeApiServer, ca: String| {
        json!({"id": id, "service": {"schema": "https", "host": "127.0.0.1", "port": s.addr().port()},
               "client": {"token": "t", "ca_file": ca}, "shared_size": "1m"})
    };
    let right = start(json!([
        cluster("a", &a, pki(&a, "ca.crt")),
        cluster("b", &b, pki(&b, "ca.crt"))
    ]));
    eventually("both verified", || right.ready());
    assert_eq!(
        hosts(&right, "a/ns/web:http"),
        Some(vec!["10.1.0.1".into()])
    );
    assert_eq!(
        hosts(&right, "b/ns/web:http"),
        Some(vec!["10.2.0.1".into()])
    );
    let crossed = start(json!([
        cluster("a", &a, pki(&b, "ca.crt")),
        cluster("b", &b, pki(&a, "ca.crt"))
    ]));
    eventually("each refuses the other's CA", || {
        last_error(&crossed, 0).contains("unknown issuer")
            && last_error(&crossed, 1).contains("unknown issuer")
    });
    assert!(
        !crossed.cluster_ready(&crossed.clusters[0])
            && !crossed.cluster_ready(&crossed.clusters[1])
    );
}

#[test]
fn config_errors_name_the_field_and_never_show_key_material() {
    let dir = tempdir("config-errors");
    let s = tls_server(&dir, false, None);
    let conf = |client: Value| https(&s, "127.0.0.1", client).to_string();
    let e = Instance::standalone(&conf(
        json!({"token": "t", "ca_file": "/nonexistent/ca.crt"}),
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("client.ca_file = \"/nonexistent/ca.crt\": cannot read /nonexistent/ca.crt: No such file"),
        "{e}"
    );
    let e = Instance::standalone(&conf(
        json!({"token": "t", "ca_file": pki(&s, "client.key")}),
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("client.ca_file") && e.contains("no certificate found"),
        "{e}"
    );
    let e = Instance::standalone(&conf(
        json!({"cert_file": pki(&s, "client.crt"), "key_file": pki(&s, "client2.key")}),
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("client.key_file") && e.contains("does not belong to the certificate"),
        "{e}"
    );
    let key = std::fs::read_to_string(pki(&s, "client2.key")).unwrap();
    let body: String = key.lines().nth(1).unwrap().chars().take(20).collect();
    assert!(!e.contains(&body), "no key material in the error");
    let e = Instance::standalone(&conf(json!({"cert_file": pki(&s, "client.crt")})))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("client.key_file = (missing)"), "{e}");
}
