//! The fake apiserver over real HTTP on loopback.

mod common;

use common::*;
use k8s_fake_apiserver::{FakeApiServer, Fault, Kind, Options};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn server(tune: impl FnOnce(&mut Options)) -> FakeApiServer {
    let mut o = Options::default();
    tune(&mut o);
    FakeApiServer::start(o).expect("start")
}

fn slice(ns: &str, name: &str, app: &str, ips: &[&str]) -> Value {
    let eps: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    json!({
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"app": app, "kubernetes.io/service-name": app}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

fn endpoints(ns: &str, name: &str, ips: &[&str]) -> Value {
    let mut v = json!({"kind": "Endpoints", "metadata": {"name": name, "namespace": ns}});
    if !ips.is_empty() {
        let addrs: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        v["subsets"] = json!([{"addresses": addrs, "ports": [{"port": 80, "protocol": "TCP"}]}]);
    }
    v
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

#[test]
fn list_shape_has_no_kind_on_items_and_etcd_order() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(slice("shop", "web-b", "web", &["10.0.0.2"]));
    s.apply(slice("shop", "web-a", "web", &["10.0.0.1"]));
    s.apply(slice("shop-x", "a", "x", &["10.0.0.3"]));
    s.apply(
        json!({"kind": "EndpointSlice", "metadata": {"name": "idle-x", "namespace": "shop"},
                   "addressType": "IPv4", "endpoints": [], "ports": []}),
    );

    let r = get(a, SLICES);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.header("warning").is_none(),
        "only v1 Endpoints are deprecated"
    );
    let prefix = format!(
        r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{}"}},"items":[{{"metadata":{{"name":"a","namespace":"shop-x","uid":"#,
        s.resource_version()
    );
    assert!(r.text().starts_with(&prefix), "{}", r.text());
    let v = r.json();
    let items = v["items"].as_array().unwrap();
    let keys: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    // etcd key order: "shop-x/" sorts before "shop/" because '-' < '/'.
    assert_eq!(
        keys,
        ["shop-x/a", "shop/idle-x", "shop/web-a", "shop/web-b"]
    );
    for it in items {
        assert!(
            it.get("kind").is_none() && it.get("apiVersion").is_none(),
            "{it}"
        );
        assert_eq!(it["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(
            it["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(it["metadata"]["generation"], 1);
    }
    let idle = &items[1];
    assert_eq!(idle.get("endpoints"), Some(&Value::Null));
    assert_eq!(idle.get("ports"), Some(&Value::Null));

    // v1 Endpoints: deprecation warning; no subsets key when there are no backends.
    s.apply(endpoints("shop", "empty", &[]));
    s.apply(endpoints("shop", "web", &["10.1.0.1"]));
    let r = get(a, "/api/v1/namespaces/shop/endpoints");
    assert_eq!(
        r.header("warning"),
        Some(
            "299 - \"v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice\""
        )
    );
    let v = r.json();
    assert_eq!(v["kind"], "EndpointsList");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(
        v["metadata"],
        json!({"resourceVersion": s.resource_version().to_string()})
    );
    assert!(v["items"][0].get("subsets").is_none());
    assert_eq!(
        v["items"][1]["subsets"][0]["addresses"][0]["ip"],
        "10.1.0.1"
    );

    // A namespace that does not exist lists as empty.
    let v = get(a, "/api/v1/namespaces/nope/endpoints").json();
    assert_eq!(v["items"], json!([]));
}

#[test]
fn pagination_keeps_rv_and_snapshot() {
    let s = server(|_| {});
    let a = s.addr();
    for i in 1..=5 {
        s.apply(endpoints("p", &format!("e{i}"), &["10.0.0.1"]));
    }
    let p1 = get(a, "/api/v1/namespaces/p/endpoints?limit=2").json();
    let rv = p1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rv, s.resource_version().to_string());
    assert_eq!(p1["metadata"]["remainingItemCount"], 3);
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&p1), ["e1", "e2"]);
    let tok = p1["metadata"]["continue"].as_str().unwrap().to_string();
    let tj = token_json(&tok);
    assert_eq!(tj["v"], "meta.k8s.io/v1");
    assert_eq!(tj["rv"].to_string(), rv);
    assert_eq!(tj["start"], "p/e2\u{0}");

    // Writes between pages are invisible: the pages come from the first page's snapshot.
    s.apply(endpoints("p", "e0", &[]));
    s.delete(Kind::Endpoints, "p", "e3").unwrap();
    let p2 = get(
        a,
        &format!("/api/v1/namespaces/p/endpoints?limit=2&continue={tok}"),
    )
    .json();
    assert_eq!(p2["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(names(&p2), ["e3", "e4"]);
    assert_eq!(p2["metadata"]["remainingItemCount"], 1);
    let tok2 = p2["metadata"]["continue"].as_str().unwrap();
    let p3 = get(
        a,
        &format!("/api/v1/namespaces/p/endpoints?limit=2&continue={tok2}"),
    )
    .json();
    assert_eq!(p3["metadata"], json!({"resourceVersion": rv}));
    assert_eq!(names(&p3), ["e5"]);

    // With a selector: no remainingItemCount.
    let v = get(a, "/api/v1/endpoints?limit=1&labelSelector=").json();
    assert_eq!(v["metadata"]["remainingItemCount"], 4);
    let v = get(
        a,
        "/api/v1/endpoints?limit=1&fieldSelector=metadata.namespace%3Dp",
    )
    .json();
    assert!(v["metadata"].get("remainingItemCount").is_none());
    assert!(v["metadata"]["continue"].is_string());

    // RV=0 is served from the "cache", ignoring limit.
    let v = get(a, "/api/v1/endpoints?limit=1&resourceVersion=0").json();
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
    assert!(v["metadata"].get("continue").is_none());
}

const EXPIRED_MSG: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

#[test]
fn continue_token_expiry_and_errors() {
    let s = server(|_| {});
    let a = s.addr();
    for i in 1..=3 {
        s.apply(slice("ns", &format!("s{i}"), "web", &["10.0.0.1"]));
    }
    let p1 = get(a, &format!("{SLICES}?limit=1")).json();
    let tok = p1["metadata"]["continue"].as_str().unwrap().to_string();

    let r = request(a, "POST", "/fake/expire-continue", &[], None);
    assert_eq!(r.status, 200);
    let r = get(a, &format!("{SLICES}?limit=1&continue={tok}"));
    assert_eq!(r.status, 410);
    let v = r.json();
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["reason"], "Expired");
    assert_eq!(v["code"], 410);
    assert_eq!(v["message"], EXPIRED_MSG);
    let fresh = v["metadata"]["continue"].as_str().unwrap();
    let fj = token_json(fresh);
    assert_eq!(fj["rv"], -1);
    assert_eq!(fj["start"], "ns/s1\u{0}");

    // The rv=-1 token continues inconsistently from the latest state.
    s.apply(slice("ns", "s0", "web", &[]));
    let v = get(a, &format!("{SLICES}?limit=1&continue={fresh}")).json();
    assert_eq!(v["items"][0]["metadata"]["name"], "s2");
    assert_eq!(
        v["metadata"]["resourceVersion"],
        s.resource_version().to_string()
    );

    let r = get(a, &format!("{SLICES}?limit=1&continue=not-a-token!"));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "BadRequest");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid continue token")
    );

    let p1 = get(a, &format!("{SLICES}?limit=1")).json();
    let tok = p1["metadata"]["continue"].as_str().unwrap();
    let r = get(
        a,
        &format!("{SLICES}?limit=1&continue={tok}&resourceVersion=5"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "specifying resource version is not allowed when using continue"
    );

    // Time-based expiry.
    let s = server(|o| o.continue_ttl = Some(Duration::from_millis(50)));
    for i in 1..=3 {
        s.apply(endpoints("ns", &format!("e{i}"), &[]));
    }
    let p1 = get(s.addr(), "/api/v1/endpoints?limit=2").json();
    let tok = p1["metadata"]["continue"].as_str().unwrap();
    std::thread::sleep(Duration::from_millis(120));
    let r = get(
        s.addr(),
        &format!("/api/v1/endpoints?limit=2&continue={tok}"),
    );
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["message"], EXPIRED_MSG);
}

#[test]
fn list_options_validation() {
    let s = server(|_| {});
    let a = s.addr();
    let r = get(a, "/api/v1/endpoints?resourceVersionMatch=NotOlderThan");
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
    );
    let r = get(a, "/api/v1/endpoints?sendInitialEvents=true");
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"]["causes"][0]["message"],
        "Forbidden: sendInitialEvents is forbidden for list"
    );
    let r = get(
        a,
        "/api/v1/endpoints?resourceVersion=0&resourceVersionMatch=Exact",
    );
    assert_eq!(r.status, 422);
    let r = get(
        a,
        "/api/v1/endpoints?resourceVersion=5&resourceVersionMatch=Bogus",
    );
    assert_eq!(
        r.json()["details"]["causes"][0]["message"],
        "Unsupported value: \"Bogus\": supported values: \"Exact\", \"NotOlderThan\""
    );
}

#[test]
fn watch_replays_history_then_live() {
    let s = server(|_| {});
    let a = s.addr();
    let first = s.apply(endpoints("ns", "a", &["10.0.0.1"]));
    let from = rv_of(&first);
    let modified = s.apply(endpoints("ns", "a", &["10.0.0.2"]));
    let b = s.apply(endpoints("ns", "b", &[]));

    let mut w = watch(
        a,
        &format!("/api/v1/endpoints?watch=1&resourceVersion={from}"),
        &[],
    );
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-type"), Some("application/json"));
    assert_eq!(w.header("transfer-encoding"), Some("chunked"));
    let line = w.next_line().unwrap();
    assert!(
        line.starts_with(r#"{"type":"MODIFIED","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"a","namespace":"ns","uid":"#),
        "{line}"
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        ev["object"]["metadata"]["resourceVersion"],
        modified["metadata"]["resourceVersion"]
    );
    assert_eq!(ev["object"]["subsets"][0]["addresses"][0]["ip"], "10.0.0.2");
    assert_eq!(
        summary(&w.event()),
        ("ADDED".into(), "b".into(), rv_of(&b).to_string())
    );

    // Live: DELETED carries the last state at the deletion RV.
    s.delete(Kind::Endpoints, "ns", "a").unwrap();
    let ev = w.event();
    assert_eq!(
        summary(&ev),
        (
            "DELETED".into(),
            "a".into(),
            s.resource_version().to_string()
        )
    );
    assert!(rv_of(&ev["object"]) > rv_of(&b));
    assert_eq!(ev["object"]["subsets"][0]["addresses"][0]["ip"], "10.0.0.2");

    // RV "" / "0": synthetic ADDED for the current objects (and, with the WatchList
    // default, no end bookmark unless bookmarks were allowed).
    let mut w = watch(a, "/api/v1/endpoints?watch=true&resourceVersion=0", &[]);
    assert_eq!(
        summary(&w.event()),
        ("ADDED".into(), "b".into(), rv_of(&b).to_string())
    );
    w.set_timeout(Duration::from_millis(300));
    assert_eq!(w.next(), Next::Timeout);
}

#[test]
fn compacted_rv_gets_error_410_event() {
    let s = server(|_| {});
    let a = s.addr();
    let old = rv_of(&s.apply(endpoints("ns", "a", &[])));
    s.apply(endpoints("ns", "b", &[]));
    assert_eq!(request(a, "POST", "/fake/compact", &[], None).status, 200);
    let now = s.resource_version();

    let mut w = watch(
        a,
        &format!("/api/v1/endpoints?watch=1&resourceVersion={old}"),
        &[],
    );
    assert_eq!(w.status, 200);
    assert_eq!(
        w.next_line().unwrap(),
        format!(
            r#"{{"type":"ERROR","object":{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"too old resource version: {old} ({now})","reason":"Expired","code":410}}}}"#
        )
    );
    assert_eq!(w.next(), Next::End);

    // A watch from the current RV is fine after compaction.
    let mut w = watch(
        a,
        &format!("/api/v1/endpoints?watch=1&resourceVersion={now}"),
        &[],
    );
    s.apply(endpoints("ns", "c", &[]));
    assert_eq!(summary(&w.event()).0, "ADDED");

    // An exact LIST at a compacted RV is an HTTP 410.
    let r = get(
        a,
        &format!("/api/v1/endpoints?resourceVersion={old}&resourceVersionMatch=Exact"),
    );
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["reason"], "Expired");

    // The history ring overflowing has the same effect.
    let s = server(|o| o.history = 2);
    let first = rv_of(&s.apply(endpoints("ns", "a", &[])));
    for n in ["b", "c", "d"] {
        s.apply(endpoints("ns", n, &[]));
    }
    let mut w = watch(
        s.addr(),
        &format!("/api/v1/endpoints?watch=1&resourceVersion={first}"),
        &[],
    );
    let ev = w.event();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(
        ev["object"]["message"],
        format!("too old resource version: {first} ({})", first + 1)
    );
    let mut w = watch(
        s.addr(),
        &format!("/api/v1/endpoints?watch=1&resourceVersion={}", first + 1),
        &[],
    );
    assert_eq!(summary(&w.event()).1, "c");
}

#[test]
fn exact_list_at_an_older_rv() {
    let s = server(|_| {});
    s.apply(endpoints("ns", "a", &["10.0.0.1"]));
    let then = s.resource_version();
    s.apply(endpoints("ns", "a", &["10.0.0.9"]));
    s.apply(endpoints("ns", "b", &[]));
    let v = get(
        s.addr(),
        &format!("/api/v1/endpoints?resourceVersion={then}&resourceVersionMatch=Exact"),
    )
    .json();
    assert_eq!(v["metadata"]["resourceVersion"], then.to_string());
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["items"][0]["subsets"][0]["addresses"][0]["ip"],
        "10.0.0.1"
    );
}

#[test]
fn bookmarks_have_the_empty_object_shape() {
    let s = server(|o| o.bookmark_interval = Duration::from_millis(200));
    let a = s.addr();
    s.apply(slice("ns", "x", "web", &["10.0.0.1"]));
    let rv = s.resource_version();
    let mut w = watch(
        a,
        &format!(
            "{SLICES}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=30"
        ),
        &[],
    );
    assert_eq!(
        w.next_line().unwrap(),
        format!(
            r#"{{"type":"BOOKMARK","object":{{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{rv}"}},"addressType":"","endpoints":null,"ports":null}}}}"#
        )
    );
    // Bookmarks advance with the global RV, even for writes of another kind.
    s.apply(endpoints("ns", "other", &[]));
    let next = w.event();
    assert_eq!(next["type"], "BOOKMARK");
    assert_eq!(
        next["object"]["metadata"]["resourceVersion"],
        (rv + 1).to_string()
    );

    let mut w = watch(
        a,
        &format!(
            "/api/v1/endpoints?watch=1&resourceVersion={}&allowWatchBookmarks=1",
            rv + 1
        ),
        &[],
    );
    assert_eq!(
        w.next_line().unwrap(),
        format!(
            r#"{{"type":"BOOKMARK","object":{{"kind":"Endpoints","apiVersion":"v1","metadata":{{"resourceVersion":"{}"}}}}}}"#,
            rv + 1
        )
    );

    // No bookmarks unless asked for ("false" and "0" are false).
    let mut w = watch(
        a,
        &format!("{SLICES}?watch=1&resourceVersion={rv}&allowWatchBookmarks=False"),
        &[],
    );
    w.set_timeout(Duration::from_millis(600));
    assert_eq!(w.next(), Next::Timeout);
}

#[test]
fn timeout_seconds_ends_cleanly_after_a_final_bookmark() {
    let s = server(|_| {});
    let a = s.addr();
    let rv = s.resource_version();
    let t0 = Instant::now();
    let mut w = watch(
        a,
        &format!("{SLICES}?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
        &[],
    );
    assert_eq!(w.next(), Next::End);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // timeoutSeconds=3 with bookmarks: one BOOKMARK ~2 s before the end, then a clean end.
    let t0 = Instant::now();
    let mut w = watch(
        a,
        &format!("{SLICES}?watch=1&resourceVersion={rv}&timeoutSeconds=3&allowWatchBookmarks=true"),
        &[],
    );
    let ev = w.event();
    let at = t0.elapsed();
    assert_eq!(ev["type"], "BOOKMARK");
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_millis(2000),
        "{at:?}"
    );
    assert_eq!(w.next(), Next::End);
    let end = t0.elapsed();
    assert!(
        end >= Duration::from_millis(2900) && end < Duration::from_secs(5),
        "{end:?}"
    );
}

#[test]
fn selector_transitions_on_watch() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(slice("shop", "web-1", "web", &["10.0.0.1"]));
    let rv = s.resource_version();
    let mut w = watch(
        a,
        &format!(
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb"
        ),
        &[],
    );
    // Leaves the selector: DELETED with the old content at the event's RV.
    s.apply(slice("shop", "web-1", "db", &["10.0.0.1"]));
    let ev = w.event();
    assert_eq!(
        summary(&ev),
        (
            "DELETED".into(),
            "web-1".into(),
            s.resource_version().to_string()
        )
    );
    assert_eq!(ev["object"]["metadata"]["labels"]["app"], "web");
    // Writes that never match, or in other namespaces, produce nothing.
    s.apply(slice("shop", "db-1", "db", &["10.0.0.5"]));
    s.apply(slice("other", "web-9", "web", &["10.0.0.6"]));
    // Enters the selector: ADDED.
    s.apply(slice("shop", "web-1", "web", &["10.0.0.1"]));
    let ev = w.event();
    assert_eq!(
        summary(&ev),
        (
            "ADDED".into(),
            "web-1".into(),
            s.resource_version().to_string()
        )
    );
    assert_eq!(
        ev["object"]["metadata"]["generation"], 1,
        "labels only: generation unchanged"
    );
    // Stays inside: MODIFIED (and a spec change bumps generation).
    s.apply(slice("shop", "web-1", "web", &["10.0.0.2"]));
    let ev = w.event();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["metadata"]["generation"], 2);
    s.delete(Kind::EndpointSlice, "shop", "web-1").unwrap();
    assert_eq!(w.event()["type"], "DELETED");

    // Set-based selectors and `!key`.
    let v = get(
        a,
        &format!("{SLICES}?labelSelector=app%20in%20(db%2Cweb)%2C!missing"),
    )
    .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let v = get(a, &format!("{SLICES}?labelSelector=app%20notin%20(db)")).json();
    assert_eq!(v["items"][0]["metadata"]["name"], "web-9");
}

#[test]
fn field_and_label_selector_errors() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(endpoints("ns", "a", &[]));
    s.apply(endpoints("ns", "b", &[]));
    let r = get(a, "/api/v1/endpoints?fieldSelector=spec.foo%3Dbar");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"","reason":"BadRequest","code":400}"#
    );
    let r = get(
        a,
        "/api/v1/endpoints?watch=1&fieldSelector=status.phase%3DRunning",
    );
    assert_eq!(r.status, 400);
    let r = get(a, "/api/v1/endpoints?labelSelector=app%20in%20web");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "BadRequest");

    let v = get(a, "/api/v1/endpoints?fieldSelector=metadata.name%3D%3Db").json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["metadata"]["name"], "b");
    let v = get(
        a,
        "/api/v1/endpoints?fieldSelector=metadata.name!%3Db,metadata.namespace%3Dns",
    )
    .json();
    assert_eq!(v["items"][0]["metadata"]["name"], "a");
}

#[test]
fn watch_list_initial_events_end_bookmark() {
    let s = server(|_| {});
    let a = s.addr();
    for n in ["s1", "s2", "s3"] {
        s.apply(slice("ns", n, "web", &["10.0.0.1"]));
    }
    let rv = s.resource_version();
    let mut w = watch(
        a,
        &format!(
            "{SLICES}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion="
        ),
        &[],
    );
    for n in ["s1", "s2", "s3"] {
        let ev = w.event();
        assert_eq!(
            (
                ev["type"].as_str().unwrap(),
                ev["object"]["metadata"]["name"].as_str().unwrap()
            ),
            ("ADDED", n)
        );
        assert_eq!(ev["object"]["kind"], "EndpointSlice");
    }
    assert_eq!(
        w.next_line().unwrap(),
        format!(
            r#"{{"type":"BOOKMARK","object":{{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{rv}","annotations":{{"k8s.io/initial-events-end":"true"}}}},"addressType":"","endpoints":null,"ports":null}}}}"#
        )
    );
    s.apply(slice("ns", "s4", "web", &[]));
    assert_eq!(summary(&w.event()).1, "s4");

    // The WatchList default: a plain watch without RV, with bookmarks, also gets the end bookmark.
    let mut w = watch(
        a,
        &format!("{SLICES}?watch=1&allowWatchBookmarks=true"),
        &[],
    );
    for _ in 0..4 {
        assert_eq!(w.event()["type"], "ADDED");
    }
    let ev = w.event();
    assert_eq!(
        ev["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // Missing resourceVersionMatch: 422.
    let r = get(a, &format!("{SLICES}?watch=1&sendInitialEvents=true"));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    );

    // Feature off: exact 422 Status, and plain watches get no end bookmark.
    let s = server(|o| o.watch_list = false);
    s.apply(slice("ns", "s1", "web", &[]));
    let r = get(
        s.addr(),
        &format!(
            "{SLICES}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        ),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.text(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled","reason":"Invalid","details":{"group":"meta.k8s.io","kind":"ListOptions","causes":[{"reason":"FieldValueForbidden","message":"Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled","field":"sendInitialEvents"}]},"code":422}"#
    );
    let mut w = watch(
        s.addr(),
        &format!("{SLICES}?watch=1&allowWatchBookmarks=true"),
        &[],
    );
    assert_eq!(w.event()["type"], "ADDED");
    w.set_timeout(Duration::from_millis(300));
    assert_eq!(w.next(), Next::Timeout);
}

#[test]
fn a_server_that_ignores_the_watch_list_parameters_serves_a_plain_watch() {
    let s = server(|o| o.ignore_watch_list_params = true);
    s.apply(slice("ns", "s1", "web", &[]));
    s.apply(slice("ns", "s2", "web", &[]));
    let rv = s.resource_version();
    let stream =
        "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
    // From "": the legacy synthetic ADDED events, then nothing (no end bookmark, no 422).
    let mut w = watch(
        s.addr(),
        &format!("{SLICES}?{stream}&resourceVersion="),
        &[],
    );
    assert_eq!(summary(&w.event()).1, "s1");
    assert_eq!(summary(&w.event()).1, "s2");
    w.set_timeout(Duration::from_millis(300));
    assert_eq!(w.next(), Next::Timeout);
    // From N: only the changes after N, as a plain watch.
    let mut w = watch(
        s.addr(),
        &format!("{SLICES}?{stream}&resourceVersion={rv}"),
        &[],
    );
    w.set_timeout(Duration::from_millis(300));
    assert_eq!(w.next(), Next::Timeout);
    s.apply(slice("ns", "s3", "web", &[]));
    w.set_timeout(Duration::from_secs(5));
    let ev = w.event();
    assert_eq!(
        (ev["type"].as_str(), summary(&ev).1.as_str()),
        (Some("ADDED"), "s3")
    );
}

#[test]
fn watch_list_from_a_compacted_rv_serves_the_state_not_older_than_it() {
    // sendInitialEvents with resourceVersionMatch=NotOlderThan needs no history: the server sends its current
    // state (at least as new as the RV asked for), unlike a plain watch from that RV, which gets ERROR 410.
    let s = server(|_| {});
    let a = s.addr();
    s.apply(slice("ns", "s1", "web", &["10.0.0.1"]));
    let old = s.resource_version();
    s.apply(slice("ns", "s2", "web", &["10.0.0.2"]));
    s.compact();
    let now = s.resource_version();
    let mut w = watch(
        a,
        &format!(
            "{SLICES}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion={old}"
        ),
        &[],
    );
    for n in ["s1", "s2"] {
        let ev = w.event();
        assert_eq!(
            (ev["type"].as_str().unwrap(), summary(&ev).1.as_str()),
            ("ADDED", n)
        );
    }
    let end = w.event();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(
        end["object"]["metadata"]["resourceVersion"],
        now.to_string()
    );
    let mut plain = watch(
        a,
        &format!("{SLICES}?watch=1&allowWatchBookmarks=true&resourceVersion={old}"),
        &[],
    );
    let ev = plain.event();
    assert_eq!(
        (ev["type"].as_str(), ev["object"]["code"].as_u64()),
        (Some("ERROR"), Some(410))
    );
}

const UNAUTHORIZED: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;

#[test]
fn bearer_token_auth() {
    let s = server(|o| o.token = Some("s3cret".into()));
    let a = s.addr();
    let r = get(a, "/api/v1/endpoints");
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), UNAUTHORIZED);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = request(
        a,
        "GET",
        "/api/v1/endpoints",
        &[("Authorization", "Bearer wrong")],
        None,
    );
    assert_eq!(r.status, 401);
    let ok = [("Authorization", "Bearer s3cret")];
    assert_eq!(
        request(a, "GET", "/api/v1/endpoints", &ok, None).status,
        200
    );

    // Rotation: open watches keep going, new requests need the new token.
    let rv = s.resource_version();
    let mut w = watch(
        a,
        &format!("/api/v1/endpoints?watch=1&resourceVersion={rv}"),
        &ok,
    );
    assert_eq!(w.status, 200);
    s.set_token(Some("n3w"));
    s.apply(endpoints("ns", "a", &[]));
    assert_eq!(summary(&w.event()).1, "a");
    assert_eq!(
        request(a, "GET", "/api/v1/endpoints", &ok, None).status,
        401
    );
    assert_eq!(
        request(
            a,
            "GET",
            "/api/v1/endpoints",
            &[("Authorization", "Bearer n3w")],
            None
        )
        .status,
        200
    );
    // The admin API needs no token and can turn auth off.
    assert_eq!(request(a, "PUT", "/fake/token", &[], Some("")).status, 200);
    assert_eq!(get(a, "/api/v1/endpoints").status, 200);
    assert_eq!(
        request(a, "PUT", "/fake/token", &[], Some("t2\n")).status,
        200
    );
    assert_eq!(
        request(
            a,
            "GET",
            "/api/v1/endpoints",
            &[("Authorization", "Bearer t2")],
            None
        )
        .status,
        200
    );
}

#[test]
fn injected_faults() {
    let s = server(|_| {});
    let a = s.addr();
    let fault = json!({"path_prefix": "/api/v1/endpoints", "count": 1, "status": 429, "retry_after": 1,
                       "body": "Too many requests, please try again later.", "content_type": "text/plain"});
    assert_eq!(post_json(a, "/fake/faults", &fault).status, 200);
    assert_eq!(get(a, "/fake/stats").json()["faults_pending"], 1);
    // Paths that do not match are untouched.
    assert_eq!(get(a, SLICES).status, 200);
    let r = get(a, "/api/v1/endpoints?watch=1");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "Too many requests, please try again later.");
    assert_eq!(get(a, "/api/v1/endpoints").status, 200);

    // Library form: a JSON Status for 5xx without a body.
    s.inject_fault(Fault::response("/apis/", 500).count(2));
    for _ in 0..2 {
        let r = get(a, SLICES);
        assert_eq!(r.status, 500);
        assert_eq!(r.json()["reason"], "InternalError");
    }
    assert_eq!(get(a, SLICES).status, 200);

    // Delays.
    s.inject_fault(Fault::delay_ms("/api/v1/endpoints", 300));
    let t0 = Instant::now();
    assert_eq!(get(a, "/api/v1/endpoints").status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
}

#[test]
fn resets_and_closes() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(endpoints("ns", "a", &["10.0.0.1"]));
    s.inject_fault(Fault::reset_after_bytes("/api/v1/endpoints", 30));
    let mut w = watch(a, "/api/v1/endpoints?watch=1", &[]);
    assert_eq!(w.status, 200);
    assert_eq!(w.next(), Next::Reset, "no terminating chunk");
    assert_eq!(w.chunks.iter().sum::<usize>(), 30);

    // Admin: reset (abort) and close (clean end) all watches.
    let mut w1 = watch(a, "/api/v1/endpoints?watch=1", &[]);
    assert_eq!(w1.event()["type"], "ADDED");
    assert!(s.wait_for_active_watches(1, Duration::from_secs(2)));
    let r = request(a, "POST", "/fake/reset-watches", &[], None).json();
    assert_eq!(r["reset"], 1);
    assert_eq!(w1.next(), Next::Reset);

    let mut w2 = watch(a, "/api/v1/endpoints?watch=1", &[]);
    assert_eq!(w2.event()["type"], "ADDED");
    assert_eq!(
        request(a, "POST", "/fake/close-watches", &[], None).json()["closed"],
        1
    );
    assert_eq!(w2.next(), Next::End);

    // A list truncated mid-body.
    s.inject_fault(Fault::reset_after_bytes("/api/v1/endpoints", 10).only_watch(false));
    let mut w3 = watch(a, "/api/v1/endpoints", &[]);
    assert_eq!(w3.status, 200);
    assert!(matches!(w3.next_line(), Err(Next::Reset)));
    assert!(s.wait_for_active_watches(0, Duration::from_secs(2)));
}

#[test]
fn too_large_resource_version() {
    let s = server(|o| o.too_large_wait = Duration::from_millis(300));
    let a = s.addr();
    let now = s.resource_version();
    let want = now + 100;
    let mut w = watch(
        a,
        &format!("/api/v1/endpoints?watch=1&resourceVersion={want}"),
        &[],
    );
    assert_eq!(w.status, 200);
    assert_eq!(
        w.next_line().unwrap(),
        format!(
            r#"{{"type":"ERROR","object":{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"Timeout: Too large resource version: {want}, current: {now}","reason":"Timeout","details":{{"causes":[{{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}}],"retryAfterSeconds":1}},"code":504}}}}"#
        )
    );
    assert_eq!(w.next(), Next::End);
    let r = get(a, &format!("/api/v1/endpoints?resourceVersion={want}"));
    assert_eq!(r.status, 504);
    assert_eq!(r.header("retry-after"), Some("1"));

    // The store catching up within the wait lets the watch start.
    let mut w = watch(
        a,
        &format!("/api/v1/endpoints?watch=1&resourceVersion={}", now + 1),
        &[],
    );
    s.apply(endpoints("ns", "x", &[]));
    s.apply(endpoints("ns", "y", &[]));
    assert_eq!(summary(&w.event()).1, "y");
}

#[test]
fn crud_verbs_like_kubectl() {
    let s = server(|_| {});
    let a = s.addr();
    let base = "/api/v1/namespaces/shop/endpoints";
    let body = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
    let r = post_json(a, base, &body);
    assert_eq!(r.status, 201);
    let created = r.json();
    assert_eq!(created["kind"], "Endpoints");
    assert_eq!(created["metadata"]["namespace"], "shop");
    assert!(created["metadata"].get("generation").is_none());
    let r = post_json(a, base, &body);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");
    assert_eq!(r.json()["message"], "endpoints \"web\" already exists");

    let got = get(a, &format!("{base}/web")).json();
    assert_eq!(got, created);
    let r = get(a, &format!("{base}/nope"));
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"endpoints \"nope\" not found","reason":"NotFound","details":{"name":"nope","kind":"endpoints"},"code":404}"#
    );
    // PUT creates a missing Endpoints (create-on-update), but not a missing EndpointSlice.
    let r = request(
        a,
        "PUT",
        &format!("{base}/put-made"),
        &[],
        Some(&json!({"metadata": {"name": "put-made"}}).to_string()),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["metadata"]["namespace"], "shop");
    let r = request(
        a,
        "PUT",
        "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/nope",
        &[],
        Some(&json!({"metadata": {"name": "nope"}, "addressType": "IPv4"}).to_string()),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["message"],
        "endpointslices.discovery.k8s.io \"nope\" not found"
    );

    // PUT with a stale resourceVersion conflicts; an identical PUT is a no-op.
    let mut stale = body.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let r = request(
        a,
        "PUT",
        &format!("{base}/web"),
        &[],
        Some(&stale.to_string()),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    let r = request(
        a,
        "PUT",
        &format!("{base}/web"),
        &[],
        Some(&created.to_string()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    // Merge patch.
    let patch = json!({"metadata": {"labels": {"app": "web"}}, "subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]});
    let r = request(
        a,
        "PATCH",
        &format!("{base}/web"),
        &[("Content-Type", "application/merge-patch+json")],
        Some(&patch.to_string()),
    );
    assert_eq!(r.status, 200);
    let patched = r.json();
    assert_eq!(patched["metadata"]["labels"]["app"], "web");
    assert_eq!(patched["subsets"][0]["addresses"][0]["ip"], "10.0.0.2");
    assert!(rv_of(&patched) > rv_of(&created));
    assert_eq!(patched["metadata"]["uid"], created["metadata"]["uid"]);
    let r = request(
        a,
        "PATCH",
        &format!("{base}/web"),
        &[("Content-Type", "application/json-patch+json")],
        Some(r#"[{"op":"replace","path":"/metadata/labels/app","value":"v2"}]"#),
    );
    assert_eq!(r.json()["metadata"]["labels"]["app"], "v2");
    let r = request(
        a,
        "PATCH",
        &format!("{base}/web"),
        &[("Content-Type", "text/plain")],
        Some("{}"),
    );
    assert_eq!(r.status, 415);

    // DELETE returns the last state; a second DELETE is 404.
    let before = get(a, &format!("{base}/web")).json();
    let r = request(a, "DELETE", &format!("{base}/web"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), before);
    assert_eq!(
        request(a, "DELETE", &format!("{base}/web"), &[], None).status,
        404
    );

    // Body namespace must match the URL; creates need a name.
    let r = post_json(
        a,
        base,
        &json!({"metadata": {"name": "x", "namespace": "other"}}),
    );
    assert_eq!(r.status, 400);
    let r = post_json(a, base, &json!({"metadata": {}}));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Endpoints \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );

    // Unknown paths.
    let r = get(a, "/foo/bar");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "404 page not found\n");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = get(a, "/api/v1/pods");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["message"],
        "the server could not find the requested resource"
    );
    assert_eq!(
        request(a, "POST", "/api/v1/endpoints", &[], Some("{}")).status,
        405
    );
}

#[test]
fn generate_name_and_generation() {
    let s = server(|_| {});
    let a = s.addr();
    let base = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";
    let body = json!({"metadata": {"generateName": "web-", "labels": {"kubernetes.io/service-name": "web"}},
                      "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "", "port": 80}]});
    let r = post_json(a, base, &body);
    assert_eq!(r.status, 201);
    let v = r.json();
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(name.len(), 9);
    assert!(name.starts_with("web-"));
    assert!(
        name[4..]
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{name}"
    );
    assert_eq!(v["metadata"]["generateName"], "web-");
    assert_eq!(v["metadata"]["generation"], 1);
    assert_eq!(v["kind"], "EndpointSlice");
    assert_eq!(v["ports"][0]["name"], "");
    let name2 = post_json(a, base, &body).json()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(name, name2);

    let mut upd = v.clone();
    upd["endpoints"] = json!([{"addresses": ["10.0.0.2"]}]);
    let r = request(
        a,
        "PUT",
        &format!("{base}/{name}"),
        &[],
        Some(&upd.to_string()),
    );
    assert_eq!(r.status, 200);
    let u = r.json();
    assert_eq!(u["metadata"]["generation"], 2);
    assert!(rv_of(&u) > rv_of(&v));
    // The old RV now conflicts.
    let r = request(
        a,
        "PUT",
        &format!("{base}/{name}"),
        &[],
        Some(&upd.to_string()),
    );
    assert_eq!(r.status, 409);
}

#[test]
fn fuzzed_chunks_still_carry_whole_events() {
    let s = server(|o| o.fuzz_chunks = true);
    let a = s.addr();
    for i in 0..20 {
        s.apply(slice(
            "ns",
            &format!("s{i:02}"),
            "web",
            &["10.0.0.1", "10.0.0.2"],
        ));
    }
    let mut w = watch(a, &format!("{SLICES}?watch=1"), &[]);
    for i in 0..20 {
        let ev = w.event();
        assert_eq!(ev["type"], "ADDED");
        assert_eq!(ev["object"]["metadata"]["name"], format!("s{i:02}"));
    }
    for i in 0..20 {
        s.apply(slice("ns", &format!("s{i:02}"), "web", &["10.0.0.3"]));
    }
    for i in 0..20 {
        let ev = w.event();
        assert_eq!(ev["type"], "MODIFIED");
        assert_eq!(ev["object"]["metadata"]["name"], format!("s{i:02}"));
    }
    let (split, merged) = chunk_stats(&w);
    assert!(split > 0, "some events should straddle chunks");
    assert!(merged > 0, "some chunks should carry several events");
}

#[test]
fn stats_and_admin_api() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(endpoints("ns", "a", &[]));
    get(a, "/api/v1/endpoints?limit=5");
    let rv = s.resource_version();
    let mut w1 = watch(
        a,
        &format!("/api/v1/endpoints?watch=1&resourceVersion={rv}"),
        &[],
    );
    let _w2 = watch(a, &format!("{SLICES}?watch=1&resourceVersion={rv}"), &[]);
    assert!(s.wait_for_active_watches(2, Duration::from_secs(2)));
    let v = get(a, "/fake/stats").json();
    assert_eq!(v["resourceVersion"], rv);
    assert_eq!(v["lists"], 1);
    assert_eq!(v["watches_started"], 2);
    assert_eq!(v["active_watches"], 2);
    assert_eq!(v["active_watches_by_client"], json!({"testkit-tests": 2}));
    let reqs: Vec<&str> = v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reqs[0], "GET /api/v1/endpoints?limit=5");
    assert_eq!(
        reqs[1],
        format!("GET /api/v1/endpoints?watch=1&resourceVersion={rv}")
    );

    // A client that goes away is noticed.
    w1.set_timeout(Duration::from_millis(10));
    drop(w1);
    assert!(
        s.wait_for_active_watches(1, Duration::from_secs(3)),
        "{:?}",
        s.stats()
    );

    // Apply via the admin API (list form, kind inferred from the list kind), then reset.
    let r = post_json(
        a,
        "/fake/apply",
        &json!({"kind": "EndpointSliceList", "items": [
        {"metadata": {"name": "z", "namespace": "ns"}, "addressType": "IPv4"}]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["kind"], "EndpointSlice");
    let before = s.resource_version();
    let r = request(a, "POST", "/fake/reset", &[], None).json();
    assert_eq!(r["deleted"], 2);
    assert_eq!(
        s.resource_version(),
        before + 2,
        "deletes keep the RV increasing"
    );
    assert!(s.list(Kind::Endpoints).is_empty() && s.list(Kind::EndpointSlice).is_empty());
    assert_eq!(get(a, "/fake/nope").status, 404);
}
