//! The `k8s-fake-apiserver` binary, and the library used from inside another runtime.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn binary_seeds_listens_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("k8s-fake-apiserver-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    let port_file = dir.join("port");
    let objects = json!([
        {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
         "metadata": {"name": "web-abc12", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "http", "port": 80}]},
        {"kind": "Endpoints", "metadata": {"name": "web", "namespace": "shop"}}
    ]);
    std::fs::write(&seed, objects.to_string()).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_k8s-fake-apiserver"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            "tok",
            "--bookmark-interval",
            "0.5",
        ])
        .arg("--seed")
        .arg(&seed)
        .arg("--port-file")
        .arg(&port_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr_text = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let addr: std::net::SocketAddr = addr_text.parse().unwrap();
    assert_eq!(
        std::fs::read_to_string(&port_file).unwrap().trim(),
        addr.port().to_string()
    );

    let auth = [("Authorization", "Bearer tok")];
    let v = request(
        addr,
        "GET",
        "/apis/discovery.k8s.io/v1/endpointslices",
        &auth,
        None,
    )
    .json();
    assert_eq!(v["items"][0]["metadata"]["name"], "web-abc12");
    let v = request(addr, "GET", "/api/v1/endpoints", &auth, None).json();
    assert_eq!(v["items"][0]["metadata"]["name"], "web");
    assert_eq!(get(addr, "/api/v1/endpoints").status, 401);

    // A watch open at SIGTERM ends cleanly, and the process exits 0.
    let mut w = watch(
        addr,
        "/api/v1/endpoints?watch=1&resourceVersion=1001&allowWatchBookmarks=true",
        &auth,
    );
    assert_eq!(w.event()["type"], "ADDED");
    assert_eq!(w.event()["type"], "BOOKMARK");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    w.set_timeout(Duration::from_secs(5));
    loop {
        match w.next() {
            Next::Event(_) => continue,
            end => {
                assert_eq!(end, Next::End);
                break;
            }
        }
    }
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_help_and_bad_args() {
    let out = Command::new(env!("CARGO_BIN_EXE_k8s-fake-apiserver"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--bookmark-interval"));
    let out = Command::new(env!("CARGO_BIN_EXE_k8s-fake-apiserver"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn library_inside_another_runtime() {
    let server = k8s_fake_apiserver::FakeApiServer::start(Default::default()).unwrap();
    let obj = server.apply(json!({"kind": "Endpoints", "metadata": {"name": "a"}}));
    assert_eq!(obj["metadata"]["namespace"], "default");
    let addr = server.addr();
    let v = tokio::task::spawn_blocking(move || {
        get(addr, "/api/v1/namespaces/default/endpoints").json()
    })
    .await
    .unwrap();
    assert_eq!(v["items"][0]["metadata"]["name"], "a");
    assert_eq!(server.url(), format!("http://{addr}"));
    drop(server);
}

#[test]
fn demo_seed_loads() {
    let server = k8s_fake_apiserver::FakeApiServer::start(Default::default()).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo-seed.json");
    assert_eq!(server.load_seed(&path), Ok(3));
    let v = get(
        server.addr(),
        "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
    )
    .json();
    assert_eq!(v["items"][0]["metadata"]["name"], "idle-q9w4z");
    assert_eq!(v["items"][0]["endpoints"], serde_json::Value::Null);
}
