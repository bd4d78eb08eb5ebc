//! The real test environment (`testenv/run.sh`: kube-apiserver and etcd on loopback) as the engine tests see it:
//! its files, an API client that writes objects as an administrator, extra API servers a test owns, and the
//! audit log that shows which requests the engine sent.
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// The variable `testenv/run.sh env DIR` prints: the directory of a running environment.
pub const ENV_VAR: &str = "K8S_DISC_REAL_APISERVER";

/// A running environment's files.
pub struct Env {
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT` of the shared kube-apiserver.
    pub server: String,
    pub port: u16,
    /// The Kubernetes version it reports (`/version` gitVersion).
    pub version: String,
    /// Bearer tokens: `admin` and `admin2` are superusers, `reader` and `reader2` have no bindings.
    pub admin_token: String,
    pub admin2_token: String,
    pub reader_token: String,
    pub reader2_token: String,
    /// The CA of kube-apiserver's self-signed serving certificate.
    pub ca: PathBuf,
    /// A CA that did not sign the serving certificate (it signs client certificates).
    pub client_ca: PathBuf,
    pub kubeconfig: PathBuf,
    /// A client certificate for user `k8s-disc-client`, signed by the client CA kube-apiserver trusts.
    pub client_crt: PathBuf,
    pub client_key: PathBuf,
}

/// The environment named by `K8S_DISC_REAL_APISERVER`, or None (the reason printed) when it is not set: the test
/// is then skipped. A set variable whose environment is broken fails the test.
pub fn env() -> Option<Env> {
    let Some(dir) = std::env::var_os(ENV_VAR) else {
        eprintln!(
            "skipped: {ENV_VAR} is not set (scripts/test-real-apiserver.sh builds and starts a real kube-apiserver \
             and sets it; or: testenv/run.sh build && testenv/run.sh start DIR && eval \"$(testenv/run.sh env DIR)\")"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{ENV_VAR}={}: cannot read {f}: {e}", dir.display()))
            .trim()
            .to_string()
    };
    let server = read("server");
    let port = server
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad server URL {server}"));
    Some(Env {
        version: read("version"),
        admin_token: read("admin.token"),
        admin2_token: read("admin2.token"),
        reader_token: read("reader.token"),
        reader2_token: read("reader2.token"),
        ca: dir.join("ca.crt"),
        client_ca: dir.join("pki/client-ca.crt"),
        kubeconfig: dir.join("kubeconfig"),
        client_crt: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        server,
        port,
        dir,
    })
}

/// Skips the test (returns) when no environment is running.
macro_rules! real_env {
    () => {
        match real::env() {
            Some(e) => e,
            None => return,
        }
    };
}

impl Env {
    /// An API client acting as the superuser.
    pub fn admin(&self) -> Kube {
        Kube::new(&self.server, &self.ca, &self.admin_token)
    }

    /// Engine configuration for the API server on `port` with the admin token and the serving CA, plus `extra`.
    pub fn config_for(&self, port: u16, client: Value, extra: Value) -> Value {
        let mut conf = json!({
            "service": {"schema": "https", "host": "127.0.0.1", "port": port.to_string()},
            "client": client,
            "shared_size": "4m",
        });
        if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        conf
    }

    /// Engine configuration for the shared API server as the superuser, plus `extra`.
    pub fn config(&self, extra: Value) -> Value {
        self.config_for(
            self.port,
            json!({"token": self.admin_token, "ca_file": self.ca}),
            extra,
        )
    }

    fn run_sh(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testenv/run.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .expect("bash runs testenv/run.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "testenv/run.sh {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Starts one more kube-apiserver on the environment's etcd, owned by the caller (stopped on drop), with
    /// `flags` added.
    pub fn own_apiserver(&self, name: &str, flags: &[&str]) -> OwnApiServer<'_> {
        let name = format!("{name}-{}", std::process::id());
        let dir = self.dir.display().to_string();
        let mut args = vec!["apiserver", &dir, &name];
        args.extend_from_slice(flags);
        let url = self.run_sh(&args);
        let port = url
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("run.sh apiserver printed {url}"));
        OwnApiServer {
            env: self,
            name,
            port,
        }
    }

    /// Audit events of requests to `path_part` (a substring of the request URI), in order.
    pub fn audit(&self, path_part: &str) -> Vec<Audit> {
        let text = std::fs::read_to_string(self.dir.join("logs/audit.log")).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(path_part))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["stage"] == "ResponseComplete" || v["stage"] == "ResponseStarted")
            .filter(|v| {
                v["requestURI"]
                    .as_str()
                    .is_some_and(|u| u.contains(path_part))
            })
            .map(|v| Audit {
                uri: v["requestURI"].as_str().unwrap_or_default().to_string(),
                verb: v["verb"].as_str().unwrap_or_default().to_string(),
                user: v["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                code: v["responseStatus"]["code"].as_u64().unwrap_or(0),
                stage: v["stage"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// The streaming lists (`sendInitialEvents=true`) to `path_part` that the server started answering, in order.
    pub fn streaming_lists(&self, path_part: &str) -> Vec<Audit> {
        self.audit(path_part)
            .into_iter()
            .filter(|r| r.uri.contains("sendInitialEvents=true") && r.stage == "ResponseStarted")
            .collect()
    }

    /// POST /compact on etcd's admin endpoint: compacts at the current revision, which it returns.
    pub fn compact_etcd(&self) -> u64 {
        let url = std::fs::read_to_string(self.dir.join("etcd-admin.url")).unwrap();
        let out = Command::new("curl")
            .args(["-fsS", "-X", "POST", &format!("{}/compact", url.trim())])
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// One audited request (stages ResponseStarted for watches, ResponseComplete for all).
#[derive(Debug, Clone)]
pub struct Audit {
    pub uri: String,
    pub verb: String,
    pub user: String,
    pub code: u64,
    pub stage: String,
}

/// A kube-apiserver a test started for itself (to restart or stop it); stopped on drop.
pub struct OwnApiServer<'a> {
    env: &'a Env,
    pub name: String,
    pub port: u16,
}

impl OwnApiServer<'_> {
    /// Stops it and starts it again on the same port (etcd and its data stay).
    pub fn restart(&self) {
        let dir = self.env.dir.display().to_string();
        self.env.run_sh(&["restart-apiserver", &dir, &self.name]);
    }

    pub fn pid(&self) -> i32 {
        std::fs::read_to_string(self.env.dir.join(format!("pids/{}.pid", self.name)))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }
}

impl Drop for OwnApiServer<'_> {
    fn drop(&mut self) {
        let dir = self.env.dir.display().to_string();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testenv/run.sh");
        let _ = Command::new("bash")
            .arg(script)
            .args(["stop-apiserver", &dir, &self.name])
            .status();
    }
}

/// An HTTP response as read in full.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal Kubernetes API client for the tests' own writes and reads (HTTP/1.1 over TLS, bearer token).
pub struct Kube {
    rt: tokio::runtime::Runtime,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    token: String,
}

impl Kube {
    pub fn new(base: &str, ca: &Path, token: &str) -> Kube {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).expect("CA file readable") {
            roots.add(c.expect("CA PEM")).expect("CA certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Kube {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            // No idle connections kept: a test restarts API servers, and a pooled connection to a stopped one
            // would fail the next request.
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(https),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    /// One request; the body is sent as `content_type`.
    pub fn request(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Response {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        let body = match body {
            Some((ct, b)) => {
                req = req.header("content-type", ct);
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).unwrap();
        self.rt.block_on(async {
            let resp = tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
                .await
                .unwrap_or_else(|_| panic!("{method} {path}: no answer in 60 s"))
                .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Response {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        })
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    /// A watch request: its status and the lines it sent (as sent, and parsed), until `until` holds for the lines
    /// so far, the stream ends, or `secs` pass (then the connection is dropped).
    pub fn watch(
        &self,
        path: &str,
        secs: u64,
        until: impl Fn(&[Value]) -> bool,
    ) -> (u16, Vec<(String, Value)>) {
        let req = hyper::Request::builder()
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.rt.block_on(async {
            let resp = self.client.request(req).await.expect("watch request");
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            let mut lines: Vec<Value> = Vec::new();
            let mut raw: Vec<String> = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            loop {
                if until(&lines) {
                    break;
                }
                let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                    Ok(Some(Ok(f))) => f,
                    _ => break,
                };
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=nl).collect();
                        if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                            lines.push(v);
                            raw.push(String::from_utf8_lossy(&line).trim_end().to_string());
                        }
                    }
                }
            }
            if !buf.is_empty() {
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    lines.push(v);
                    raw.push(String::from_utf8_lossy(&buf).trim_end().to_string());
                }
            }
            (status, raw.into_iter().zip(lines).collect())
        })
    }

    /// Creates or updates `obj` with server-side apply; panics unless the server accepts it.
    pub fn apply(&self, obj: &Value) -> Response {
        let r = self.try_apply(obj);
        assert!(
            r.status == 200 || r.status == 201,
            "apply {}: HTTP {} {}",
            object_path(obj),
            r.status,
            r.body
        );
        r
    }

    /// Server-side apply of `obj`, whatever the answer.
    pub fn try_apply(&self, obj: &Value) -> Response {
        self.request(
            "PATCH",
            &format!(
                "{}?fieldManager=k8s-disc-tests&force=true",
                object_path(obj)
            ),
            Some(("application/apply-patch+yaml", obj.to_string())),
        )
    }

    /// Deletes the object `obj` names; panics unless the server deletes it.
    pub fn delete(&self, obj: &Value) {
        let r = self.request("DELETE", &object_path(obj), None);
        assert!(
            r.status == 200 || r.status == 202,
            "delete: HTTP {} {}",
            r.status,
            r.body
        );
    }

    /// Creates a namespace of a name unique to this process: `{prefix}-{pid}-{n}`.
    pub fn namespace(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
        name
    }
}

/// The REST path of an object from its apiVersion, kind, namespace and name.
pub fn object_path(obj: &Value) -> String {
    let api = obj["apiVersion"].as_str().expect("apiVersion");
    let kind = obj["kind"].as_str().expect("kind");
    let name = obj["metadata"]["name"].as_str().expect("metadata.name");
    let plural = match kind {
        "Endpoints" => "endpoints".to_string(),
        "EndpointSlice" => "endpointslices".to_string(),
        "Namespace" => "namespaces".to_string(),
        other => format!("{}s", other.to_lowercase()),
    };
    let prefix = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}/{name}"),
        None => format!("{prefix}/{plural}/{name}"),
    }
}

/// v1 Endpoints `ns/name` with `ips` on port `http` 80.
pub fn endpoints(ns: &str, name: &str, ips: &[&str]) -> Value {
    let addrs: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"namespace": ns, "name": name},
           "subsets": [{"addresses": addrs, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]})
}

/// An EndpointSlice of service `svc` with `addresses` (one endpoint each, ready) on port `http` 80.
pub fn slice(ns: &str, name: &str, svc: &str, address_type: &str, addresses: &[&str]) -> Value {
    let eps: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
           "addressType": address_type, "endpoints": eps,
           "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]})
}

/// Polls until `f` holds or `secs` pass; a real API server on a loaded machine gets more room than the fake.
pub fn eventually_within(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

/// Replaces `path` by renaming a temporary file over it, as the kubelet does with projected tokens.
pub fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A fresh directory for one test's files.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("k8s-disc-real-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
