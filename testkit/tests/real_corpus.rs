//! The fake's answers compared with responses captured from a real kube-apiserver (`corpus/`, written by the
//! project's `tests/real_differential.rs` with `K8S_DISC_CAPTURE_CORPUS`): `Status` error bodies byte for byte,
//! bookmarks, the 410 `ERROR` event and list metadata up to resourceVersions.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{Next, request, watch};
use k8s_fake_apiserver::{FakeApiServer, Options, Rbac};
use serde_json::{Value, json};

const EP: &str = "/api/v1/namespaces/corpus/endpoints";

fn corpus(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/kube-apiserver-v1.36.3")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim_end()
        .to_string()
}

fn corpus_lines(name: &str) -> Vec<Value> {
    corpus(name)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn server() -> FakeApiServer {
    FakeApiServer::start(Options {
        token: Some("tok".into()),
        token_user: "reader".into(),
        ..Options::default()
    })
    .expect("fake API server starts")
}

fn auth(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> common::Resp {
    request(addr, method, path, &[("Authorization", "Bearer tok")], body)
}

fn eps(name: &str, ip: &str, app: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"namespace": "corpus", "name": name, "labels": {"app": app}},
           "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]})
    .to_string()
}

/// The scenario's first objects: a and b labelled app=x, c app=y.
fn seeded() -> FakeApiServer {
    let s = server();
    for (name, ip, app) in [
        ("a", "10.40.0.1", "x"),
        ("b", "10.40.0.2", "x"),
        ("c", "10.40.0.3", "y"),
    ] {
        let r = auth(
            s.addr(),
            "PUT",
            &format!("{EP}/{name}"),
            Some(&eps(name, ip, app)),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
    }
    s
}

/// resourceVersions and the numbers in messages zeroed, so two servers' answers compare.
fn without_numbers(v: &Value) -> Value {
    serde_json::from_str(&digits_zeroed(&v.to_string())).unwrap()
}

/// Replaces every run of digits by 0 (uids and timestamps are not in the compared values).
fn digits_zeroed(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('0');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

#[test]
fn status_errors_are_byte_for_byte_the_real_ones() {
    let s = seeded();
    let a = s.addr();
    let cases = [
        (
            "10-get-missing.json",
            auth(a, "GET", &format!("{EP}/nope"), None),
        ),
        (
            "04-create-c-again.json",
            auth(a, "POST", EP, Some(&eps("c", "10.40.0.3", "y"))),
        ),
        (
            "09-list-bad-field-selector.json",
            auth(a, "GET", &format!("{EP}?fieldSelector=spec.x%3D1"), None),
        ),
        (
            "13-streaming-list-without-match.json",
            auth(
                a,
                "GET",
                &format!("{EP}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"),
                None,
            ),
        ),
        (
            "22-unauthorized.json",
            request(a, "GET", EP, &[("Authorization", "Bearer wrong")], None),
        ),
    ];
    for (file, r) in cases {
        let want: Value = serde_json::from_str(&corpus(file)).unwrap();
        assert_eq!(r.status as u64, want["code"].as_u64().unwrap(), "{file}");
        assert_eq!(r.text(), corpus(file), "{file}");
    }
    s.set_rbac(Rbac {
        deny: vec!["list".into()],
        users: vec![],
    });
    let r = auth(a, "GET", EP, None);
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), corpus("23-forbidden.json"));
}

#[test]
fn the_streaming_list_ends_with_the_real_bookmark() {
    let s = seeded();
    let mut w = watch(
        s.addr(),
        &format!(
            "{EP}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        ),
        &[("Authorization", "Bearer tok")],
    );
    let real = corpus_lines("12-streaming-list.jsonl");
    let mut got = Vec::new();
    while got.len() < real.len() {
        match w.next() {
            Next::Event(e) => got.push(e),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    let types = |v: &[Value]| v.iter().map(|e| e["type"].clone()).collect::<Vec<_>>();
    assert_eq!(types(&got), types(&real));
    let (end, real_end) = (got.last().unwrap(), real.last().unwrap());
    assert_eq!(without_numbers(end), without_numbers(real_end));
}

#[test]
fn a_too_old_resource_version_gets_the_real_error_event() {
    let s = seeded();
    let rv = s.resource_version();
    s.apply(
        serde_json::from_str(&eps("x", "10.40.1.1", "z").replace("corpus", "elsewhere")).unwrap(),
    );
    s.compact();
    let mut w = watch(
        s.addr(),
        &format!("{EP}?watch=1&resourceVersion={rv}"),
        &[("Authorization", "Bearer tok")],
    );
    assert_eq!(
        w.status, 200,
        "the 410 comes inside a 200 stream, as from the watch cache"
    );
    let got = w.event();
    let real = &corpus_lines("20-watch-too-old.json")[0];
    assert_eq!(without_numbers(&got), without_numbers(real));
}

#[test]
fn list_pages_carry_the_real_metadata() {
    let s = seeded();
    let page = get_auth(&s, &format!("{EP}?limit=2"));
    let real: Value = serde_json::from_str(&corpus("05-list-page-1.json")).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v["metadata"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&page), keys(&real));
    assert_eq!(
        page["metadata"]["remainingItemCount"],
        real["metadata"]["remainingItemCount"]
    );
    assert_eq!(page["kind"], real["kind"]);
    assert_eq!(page["apiVersion"], real["apiVersion"]);
    for (got, want) in page["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(real["items"].as_array().unwrap())
    {
        assert_eq!(
            got.get("kind"),
            want.get("kind"),
            "list items carry no kind"
        );
        assert_eq!(got["subsets"], want["subsets"]);
    }
}

fn get_auth(s: &FakeApiServer, path: &str) -> Value {
    let r = auth(s.addr(), "GET", path, None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}
