//! The faults a chaos run injects, over real HTTP on loopback: stalls, slow bodies, expired continue tokens on
//! demand, short pages and restarts that lose the watch history.

mod common;

use common::*;
use k8s_fake_apiserver::{FakeApiServer, Fault, Options};
use serde_json::{Value, json};
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const EP: &str = "/api/v1/endpoints";

fn server(tune: impl FnOnce(&mut Options)) -> FakeApiServer {
    let mut o = Options::default();
    tune(&mut o);
    FakeApiServer::start(o).expect("start")
}

fn endpoints(ns: &str, name: &str, ip: &str) -> Value {
    json!({"kind": "Endpoints", "metadata": {"name": name, "namespace": ns},
           "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 80}]}]})
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_stalled_watch_goes_quiet_mid_event_then_resumes() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(endpoints("ns", "a", "10.0.0.1"));
    s.apply(endpoints("ns", "b", "10.0.0.2"));
    s.inject_fault(Fault::stall(EP, 20, Some(600)).only_watch(true));
    let t0 = Instant::now();
    let mut w = watch(a, &format!("{EP}?watch=1"), &[]);
    w.set_timeout(Duration::from_millis(300));
    // The first event is cut at byte 20, and nothing follows within the stall.
    assert_eq!(w.next(), Next::Timeout);
    w.set_timeout(Duration::from_secs(5));
    assert_eq!(summary(&w.event()).1, "a");
    assert!(t0.elapsed() >= Duration::from_millis(600));
    assert_eq!(summary(&w.event()).1, "b");
    assert_eq!(w.chunks[0], 20, "the stall point splits the first write");
}

#[test]
fn an_endless_stall_holds_the_connection_until_the_client_leaves() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(endpoints("ns", "a", "10.0.0.1"));
    s.inject_fault(Fault::stall(EP, 0, None).only_watch(true));
    let mut w = watch(a, &format!("{EP}?watch=1"), &[]);
    assert_eq!(w.status, 200);
    w.set_timeout(Duration::from_millis(400));
    assert_eq!(w.next(), Next::Timeout);
    assert!(s.wait_for_active_watches(1, Duration::from_secs(1)));
    drop(w);
    assert!(
        s.wait_for_active_watches(0, Duration::from_secs(5)),
        "the watch ends with the client"
    );
}

#[test]
fn a_slow_list_body_arrives_whole_in_small_pieces() {
    let s = server(|_| {});
    let a = s.addr();
    for i in 0..5 {
        s.apply(endpoints("ns", &format!("e{i}"), "10.0.0.1"));
    }
    let whole = get(a, EP).json();
    s.inject_fault(Fault::slow_body(EP, 100, 15).only_watch(false));
    let t0 = Instant::now();
    let r = get(a, EP);
    let body = r.json();
    assert_eq!(body["items"], whole["items"]);
    assert_eq!(r.header("content-length"), None, "streamed");
    // At least (len / 100 - 1) pauses of 15 ms.
    let pauses = (r.body.len() / 100) as u32;
    assert!(pauses >= 3, "{} bytes", r.body.len());
    assert!(t0.elapsed() >= Duration::from_millis(15) * (pauses - 1));
}

#[test]
fn a_stall_and_a_reset_combine_on_a_list() {
    let s = server(|_| {});
    let a = s.addr();
    s.apply(endpoints("ns", "a", "10.0.0.1"));
    s.inject_fault(Fault::stall(EP, 10, Some(300)).only_watch(false));
    s.inject_fault(Fault::reset_after_bytes(EP, 25).only_watch(false));
    let t0 = Instant::now();
    let mut w = watch(a, EP, &[]);
    assert_eq!(w.status, 200);
    assert!(matches!(w.next_line(), Err(Next::Reset)));
    assert_eq!(w.chunks, vec![10, 15]);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(s.stats().faults_pending, 0);
}

#[test]
fn an_expire_continue_fault_answers_the_next_later_page_with_410() {
    let s = server(|_| {});
    let a = s.addr();
    for i in 0..3 {
        s.apply(endpoints("ns", &format!("e{i}"), "10.0.0.1"));
    }
    s.inject_fault(Fault::expire_continue(EP));
    // A first page does not use it up.
    let p1 = get(a, &format!("{EP}?limit=1")).json();
    assert_eq!(s.stats().faults_pending, 1);
    let tok = p1["metadata"]["continue"].as_str().unwrap().to_string();
    let r = get(a, &format!("{EP}?limit=1&continue={tok}"));
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["reason"], "Expired");
    let fresh = r.json()["metadata"]["continue"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        token_json(&fresh)["rv"],
        -1,
        "the inconsistent-continue token"
    );
    // The same token works again once the fault is used up.
    let r = get(a, &format!("{EP}?limit=1&continue={tok}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["items"][0]["metadata"]["name"], "e1");
}

#[test]
fn max_page_size_caps_pages_but_not_unlimited_lists() {
    let s = server(|o| o.max_page_size = Some(2));
    let a = s.addr();
    for i in 0..5 {
        s.apply(endpoints("ns", &format!("e{i}"), "10.0.0.1"));
    }
    assert_eq!(get(a, EP).json()["items"].as_array().unwrap().len(), 5);
    let mut names = Vec::new();
    let mut url = format!("{EP}?limit=500");
    let mut pages = 0;
    loop {
        let p = get(a, &url).json();
        pages += 1;
        let items = p["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match p["metadata"]["continue"].as_str() {
            Some(t) => url = format!("{EP}?limit=500&continue={t}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["e0", "e1", "e2", "e3", "e4"]);
}

#[test]
fn a_restart_drops_connections_refuses_meanwhile_and_forgets_history() {
    let s = server(|_| {});
    let a = s.addr();
    let first = s.apply(endpoints("ns", "a", "10.0.0.1"));
    let old_rv = rv(&first);
    let mut w = watch(a, &format!("{EP}?watch=1&resourceVersion={old_rv}"), &[]);
    assert_eq!(w.status, 200);
    assert!(s.wait_for_active_watches(1, Duration::from_secs(2)));
    let p1 = get(a, &format!("{EP}?limit=1")).json();
    assert!(p1["metadata"]["continue"].is_null(), "one item, one page");
    s.apply(endpoints("ns", "b", "10.0.0.2"));
    let p1 = get(a, &format!("{EP}?limit=1")).json();
    let tok = p1["metadata"]["continue"].as_str().unwrap().to_string();
    s.apply(endpoints("ns", "c", "10.0.0.3"));

    s.restart(Duration::from_millis(500));
    w.set_timeout(Duration::from_secs(5));
    // The event for "b" may have arrived before the restart; then the stream is cut.
    loop {
        match w.next() {
            Next::Event(_) => continue,
            Next::Reset => break,
            other => panic!("expected the connection to drop, got {other:?}"),
        }
    }
    assert!(s.wait_for_active_watches(0, Duration::from_secs(2)));
    // While down, connections are closed without a response.
    let mut c = TcpStream::connect(a).expect("the port stays bound");
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    use std::io::Write;
    let _ = c.write_all(b"GET /api/v1/endpoints HTTP/1.1\r\nHost: x\r\n\r\n");
    let n = c.read_to_end(&mut buf).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "no response while down: {:?}",
        String::from_utf8_lossy(&buf)
    );

    std::thread::sleep(Duration::from_millis(600));
    // Back up: objects and the resourceVersion survived, history and continue tokens did not.
    let list = get(a, EP).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert_eq!(rv(&list), s.resource_version().to_string());
    let mut w = watch(a, &format!("{EP}?watch=1&resourceVersion={old_rv}"), &[]);
    let ev = w.event();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    let r = get(a, &format!("{EP}?limit=1&continue={tok}"));
    assert_eq!(r.status, 410);
    assert_eq!(s.stats().restarts, 1);

    // The admin API restarts too, after answering.
    let r = post_json(a, "/fake/restart", &json!({"down_ms": 100}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["down_ms"], 100);
    let t0 = Instant::now();
    while s.stats().restarts < 2 {
        assert!(t0.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(5));
    }
}
