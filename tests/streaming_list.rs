//! The streaming list against the fake API server, in process: the initial sync and relists as one watch with
//! `sendInitialEvents`, the fallback to paged LISTs where the server lacks it, the `list_strategy` setting, and
//! the no-data-loss rule when a stream ends early.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{eventually, nodes};
use k8s_disc::testing::Instance;
use k8s_disc::testing::Node;
use k8s_disc::testing::{Metric, SyncState};
use k8s_fake_apiserver::{FakeApiServer, Fault, Kind, Options, Rbac};
use serde_json::{Value, json};

const PATH: &str = "/api/v1/endpoints";
/// What every streaming-list request carries.
const STREAM_QUERY: &str = "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=";

fn server(watch_list: bool) -> FakeApiServer {
    FakeApiServer::start(Options {
        watch_list,
        ..Options::default()
    })
    .expect("fake API server starts")
}

fn start(server: &FakeApiServer, extra: Value) -> Arc<Instance> {
    common::start_against(server.addr().port(), "8m", extra)
}

fn endpoints(ns: &str, name: &str, ip: &str) -> Value {
    json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": {"namespace": ns, "name": name},
           "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": 80}]}]})
}

/// `n` services `ns/svcNNNN`, each with one address.
fn seed(s: &FakeApiServer, n: usize) {
    for i in 0..n {
        s.apply(endpoints(
            "ns",
            &format!("svc{i:04}"),
            &format!("10.{}.{}.1", i / 250, i % 250),
        ));
    }
}

fn served(inst: &Instance, i: usize) -> Option<Vec<Node>> {
    nodes(inst, &format!("ns/svc{i:04}:http"))
}

fn node(ip: &str) -> Vec<Node> {
    vec![Node::new(ip, 80)]
}

fn status(inst: &Instance) -> k8s_disc::testing::RegionStatus {
    inst.clusters[0].region.status()
}

fn requests(s: &FakeApiServer, needle: &str) -> Vec<String> {
    s.stats()
        .requests
        .into_iter()
        .filter(|r| r.contains(needle))
        .collect()
}

/// The resourceVersion a request asked for.
fn rv_of(request: &str) -> String {
    request
        .split("resourceVersion=")
        .nth(1)
        .and_then(|r| r.split(['&', ' ']).next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_initial_sync_is_one_watch_request_and_no_list() {
    let s = server(true);
    seed(&s, 600);
    // The stream pauses in the middle of its initial events: nothing may be published or ready before the end.
    s.inject_fault(Fault::stall(PATH, 6000, Some(1500)).only_watch(true));
    let started = Instant::now();
    let inst = start(&s, json!({}));
    eventually("the streaming list started", || {
        s.stats().watches_started == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!inst.ready(), "not ready before the end bookmark");
    assert_eq!(status(&inst).state, SyncState::Listing);
    assert_eq!(served(&inst, 0), None, "nothing published before the end");
    let dump = k8s_disc::testing::dump(&inst);
    assert_eq!(dump["status"][0]["state"], "listing", "{dump}");
    eventually("ready", || inst.ready());
    let ready_after = started.elapsed();
    for i in 0..600 {
        assert_eq!(
            served(&inst, i),
            Some(node(&format!("10.{}.{}.1", i / 250, i % 250)))
        );
    }
    let st = s.stats();
    assert_eq!(st.lists, 0, "no LIST request");
    assert_eq!(st.watches_started, 1, "one watch request");
    let stream = requests(&s, "sendInitialEvents");
    assert_eq!(stream.len(), 1, "{stream:?}");
    assert!(stream[0].contains(STREAM_QUERY), "{}", stream[0]);
    assert_eq!(rv_of(&stream[0]), "", "the first sync is a consistent read");
    // It counts as a list, and its connection is now the watch.
    let region = &inst.clusters[0].region;
    assert_eq!(status(&inst).lists, 1);
    // The watch start is counted after the list is published (and before the state shows watching).
    eventually("watching", || status(&inst).state == SyncState::Watching);
    assert_eq!(region.metric(Metric::WatchStarts), 1);
    s.apply(endpoints("ns", "svc0000", "10.99.0.1"));
    s.delete(Kind::Endpoints, "ns", "svc0001");
    eventually("changes on the same connection", || {
        served(&inst, 0) == Some(node("10.99.0.1")) && served(&inst, 1).is_none()
    });
    let st = s.stats();
    assert_eq!((st.lists, st.watches_started), (0, 1));
    assert_eq!(region.metric(Metric::EventsModified), 1);
    assert_eq!(
        region.metric(Metric::EventsAdded),
        0,
        "initial events are a list, not watch events"
    );
    assert!(
        ready_after >= Duration::from_millis(1500),
        "{ready_after:?}"
    );
}

#[test]
fn auto_falls_back_to_paged_lists_for_good_and_logs_it_once() {
    // Run in a child process to read what the watcher logs.
    if std::env::var_os("K8S_DISC_FALLBACK_CHILD").is_some() {
        fallback_scenario();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "auto_falls_back_to_paged_lists_for_good_and_logs_it_once",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("K8S_DISC_FALLBACK_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let notices: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("does not serve streaming lists"))
        .collect();
    assert_eq!(notices.len(), 1, "{stderr}");
    assert!(notices[0].contains("[warn]"), "{}", notices[0]);
    assert!(
        notices[0].contains("127.0.0.1:"),
        "names the cluster: {}",
        notices[0]
    );
    assert!(
        notices[0].contains(
            "HTTP 422 Invalid: ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: \
             sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
        ),
        "gives the server's reason: {}",
        notices[0]
    );
}

fn fallback_scenario() {
    let s = server(false);
    seed(&s, 1200);
    let inst = start(&s, json!({}));
    eventually("ready", || inst.ready());
    for i in [0, 499, 500, 1199] {
        assert!(served(&inst, i).is_some(), "svc{i:04}");
    }
    assert_eq!(requests(&s, "sendInitialEvents").len(), 1);
    let listed = requests(&s, "GET /api/v1/endpoints?");
    let lists: Vec<&String> = listed.iter().filter(|r| !r.contains("watch=")).collect();
    // resourceVersion=0 is served from the watch cache, which ignores the limit: one whole list.
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert!(
        lists[0].contains("limit=500&resourceVersion=0"),
        "{}",
        lists[0]
    );
    assert_eq!(s.stats().lists, 1);
    // A 410 makes it relist: paged, not a streaming list again.
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    s.reset_watches();
    s.delete(Kind::Endpoints, "ns", "svc0000");
    s.compact();
    eventually("relisted", || served(&inst, 0).is_none());
    assert_eq!(
        requests(&s, "sendInitialEvents").len(),
        1,
        "the fallback is remembered"
    );
    // Paged: 1200 services in pages of 500, no response with the whole cluster.
    assert_eq!(s.stats().lists, 4);
    let relist: Vec<String> = requests(&s, "GET /api/v1/endpoints?")
        .into_iter()
        .filter(|r| !r.contains("watch="))
        .skip(1)
        .collect();
    assert_eq!(relist.len(), 3, "{relist:?}");
    // Not older than what was synced: with a limit, only the match keeps it from being an exact, compactable
    // read.
    assert!(
        relist[0].contains("limit=500&resourceVersion=")
            && relist[0].contains("&resourceVersionMatch=NotOlderThan"),
        "{}",
        relist[0]
    );
    assert!(
        rv_of(&relist[0]).parse::<u64>().unwrap() > 0,
        "{}",
        relist[0]
    );
    for later in &relist[1..] {
        assert!(
            later.contains("limit=500&continue=") && !later.contains("resourceVersion"),
            "{later}"
        );
    }
    // (The count follows the list's writes in the same batch.)
    eventually("counted", || status(&inst).lists == 2);
}

#[test]
fn an_rbac_refusal_is_retried_and_the_streaming_list_goes_on_once_allowed() {
    // A user without the watch verb gets 403 "... cannot watch resource ...": a permission to wait for, not a
    // server without streaming lists, so auto keeps them.
    let s = server(true);
    seed(&s, 3);
    s.set_rbac(Rbac {
        deny: vec!["list".into(), "watch".into()],
        users: vec![],
    });
    let inst = start(&s, json!({}));
    eventually("the 403 reported", || {
        status(&inst).last_error.contains("HTTP 403 Forbidden")
            && status(&inst)
                .last_error
                .contains("cannot watch resource \"endpoints\"")
    });
    eventually("retried", || requests(&s, "sendInitialEvents").len() >= 2);
    s.set_rbac(Rbac::default());
    eventually("ready once allowed", || inst.ready());
    assert_eq!(served(&inst, 2), Some(node("10.0.2.1")));
    assert_eq!(s.stats().lists, 0, "no fallback to LIST");
}

#[test]
fn the_watch_list_strategy_never_falls_back_and_says_why() {
    let s = server(false);
    seed(&s, 3);
    let inst = start(&s, json!({"list_strategy": "watch_list"}));
    eventually("the refusal reported", || {
        status(&inst).last_error.contains("HTTP 422")
    });
    let e = status(&inst).last_error;
    assert!(
        e.starts_with("list Endpoints failed: HTTP 422 Invalid")
            && e.contains("sendInitialEvents is forbidden for watch")
            && e.contains(
                "the server refused or ignored a streaming list; list_strategy watch_list never"
            ),
        "{e}"
    );
    // It backs off and tries again (0.8-1.6 s), never listing.
    eventually("a second attempt", || {
        requests(&s, "sendInitialEvents").len() >= 2
    });
    // The server sees the second request before the watcher has necessarily counted the first failure: wait
    // for the counter rather than read it once.
    eventually("both failures counted", || {
        inst.clusters[0].region.metric(Metric::ListErrors) >= 2
    });
    assert!(!inst.ready());
    assert_eq!(served(&inst, 0), None);
    assert_eq!(s.stats().lists, 0);
}

#[test]
fn a_stream_cut_during_its_initial_events_changes_nothing_and_a_later_one_completes() {
    let s = server(true);
    seed(&s, 400);
    // The very first sync is cut: the cluster stays not ready until a later stream completes.
    s.inject_fault(Fault::reset_after_bytes(PATH, 5000).query_contains("sendInitialEvents"));
    let inst = start(&s, json!({}));
    eventually("the cut reported", || {
        status(&inst)
            .last_error
            .contains("list Endpoints failed: connection error")
    });
    assert!(!inst.ready());
    assert_eq!(served(&inst, 0), None);
    eventually("a later stream completes", || inst.ready());
    assert_eq!(served(&inst, 399), Some(node("10.1.149.1")));
    // Now a relist is cut half way, and the one after it is held back a while: meanwhile everything stored
    // stays as it was, stale services included.
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    let listed = status(&inst).lists;
    s.inject_fault(Fault::reset_after_bytes(PATH, 20_000).query_contains("sendInitialEvents"));
    s.inject_fault(Fault::delay_ms(PATH, 2000).query_contains("sendInitialEvents"));
    s.reset_watches();
    s.delete(Kind::Endpoints, "ns", "svc0000");
    s.apply(endpoints("ns", "svc0001", "10.99.0.1"));
    s.compact();
    eventually("the relist was cut", || s.stats().faults_pending == 1);
    eventually("the cut reported", || {
        status(&inst)
            .last_error
            .contains("list Endpoints failed: connection error")
    });
    assert_eq!(served(&inst, 0), Some(node("10.0.0.1")), "not deleted");
    assert_eq!(served(&inst, 1), Some(node("10.0.1.1")), "not changed");
    assert_eq!(served(&inst, 399), Some(node("10.1.149.1")));
    assert_eq!(status(&inst).lists, listed);
    assert!(inst.ready(), "the stored data stays ready");
    // One relist writes both changes, but a reader may see one before the other (a batch is not atomic across
    // keys), so wait for both.
    eventually("the next relist completes", || {
        served(&inst, 0).is_none() && served(&inst, 1) == Some(node("10.99.0.1"))
    });
    eventually("counted", || status(&inst).lists == listed + 1);
    assert_eq!(s.stats().lists, 0);
}

#[test]
fn a_410_relists_with_a_stream_not_older_than_the_synced_version_or_the_latest_after_a_410() {
    let s = server(true);
    seed(&s, 5);
    let inst = start(&s, json!({}));
    eventually("ready", || inst.ready());
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    // The watch breaks, the state moves on and the history is compacted: resuming gets ERROR 410.
    s.reset_watches();
    s.apply(endpoints("ns", "svc0002", "10.98.0.1"));
    s.compact();
    eventually("relisted", || served(&inst, 2) == Some(node("10.98.0.1")));
    let stream = requests(&s, "sendInitialEvents");
    assert_eq!(stream.len(), 2, "{stream:?}");
    let synced: u64 = rv_of(&stream[1]).parse().expect("a resourceVersion");
    assert!(synced > 0);
    assert_eq!(inst.clusters[0].region.metric(Metric::Relists), 1);
    // A change on the stream's watch proves it healthy (the next 410 relists at once again).
    s.apply(endpoints("ns", "svc0004", "10.98.0.4"));
    eventually("watching", || served(&inst, 4) == Some(node("10.98.0.4")));
    // The server now answers the streaming list that its resourceVersion is gone: the next one asks for the
    // latest state.
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    s.inject_fault(
        Fault::response(PATH, 410)
            .query_contains("sendInitialEvents")
            .body(
                "application/json",
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (9)","reason":"Expired","code":410}"#,
            ),
    );
    s.reset_watches();
    s.apply(endpoints("ns", "svc0003", "10.98.0.2"));
    s.compact();
    eventually("relisted again", || {
        served(&inst, 3) == Some(node("10.98.0.2"))
    });
    let stream = requests(&s, "sendInitialEvents");
    assert_eq!(stream.len(), 4, "{stream:?}");
    assert!(!rv_of(&stream[2]).is_empty(), "{}", stream[2]);
    assert_eq!(rv_of(&stream[3]), "", "after a 410: the latest state");
    assert_eq!(s.stats().lists, 0);
}

#[test]
fn the_list_strategy_pages_through_list_requests() {
    let s = server(true);
    seed(&s, 1200);
    let inst = start(&s, json!({"list_strategy": "list"}));
    eventually("ready", || inst.ready());
    for i in [0, 500, 1199] {
        assert!(served(&inst, i).is_some());
    }
    assert_eq!(s.stats().lists, 3, "pages of 500");
    assert!(requests(&s, "sendInitialEvents").is_empty());
    let first = &requests(&s, "limit=500")[0];
    assert!(
        !first.contains("resourceVersion"),
        "a consistent read: {first}"
    );
    assert_eq!(requests(&s, "continue=").len(), 2);
}

/// Runs `scenario` in a child process of this test binary (as the test named `test`) and returns what it logged.
fn logged_by(test: &str, marker: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{}",
        &stderr[..stderr.len().min(8192)]
    );
    stderr
}

#[test]
fn a_malformed_event_is_logged_with_the_bad_value_cut_short() {
    const MARKER: &str = "K8S_DISC_MALFORMED_CHILD";
    if std::env::var_os(MARKER).is_some() {
        malformed_scenario();
        return;
    }
    let stderr = logged_by(
        "a_malformed_event_is_logged_with_the_bad_value_cut_short",
        MARKER,
    );
    let malformed: Vec<&str> = stderr.lines().filter(|l| l.contains("malformed")).collect();
    assert!(
        malformed
            .iter()
            .any(|l| l.contains("malformed Endpoints without a readable name"))
            && malformed
                .iter()
                .any(|l| l.contains("malformed Endpoints in a MODIFIED event")),
        "both the streaming list's and the watch's failures are logged: {} lines",
        malformed.len()
    );
    for line in stderr.lines() {
        assert!(
            line.len() < 2048,
            "a log line of {} bytes: {}...",
            line.len(),
            &line[..200]
        );
    }
}

/// A streaming list, then a watch, each meet an object whose `subsets` is a 3 MiB string.
fn malformed_scenario() {
    let s = server(true);
    seed(&s, 2);
    let huge = "A".repeat(3 << 20);
    let event = |kind: &str, meta: Value| {
        let obj =
            json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": meta, "subsets": huge});
        format!("{}\n", json!({"type": kind, "object": obj}))
    };
    s.inject_fault(
        Fault::response(PATH, 200)
            .query_contains("sendInitialEvents")
            .body(
                "application/json",
                &event("ADDED", json!({"namespace": "ns"})),
            ),
    );
    let inst = start(&s, json!({}));
    eventually("the streaming list failed", || {
        inst.clusters[0].region.metric(Metric::ListErrors) >= 1
    });
    eventually("ready", || inst.ready());
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    // The plain watch that follows the broken stream gets the bad event.
    s.inject_fault(
        Fault::response(PATH, 200)
            .only_watch(true)
            .query_contains("watch=1&resourceVersion=")
            .body(
                "application/json",
                &event("MODIFIED", json!({"namespace": "ns", "name": "svc0000"})),
            ),
    );
    s.reset_watches();
    eventually("the watch's bad event made it relist", || {
        inst.clusters[0].region.metric(Metric::Relists) >= 1
    });
}

#[test]
fn a_403_or_400_on_the_streaming_list_is_retried_and_only_405_or_422_mean_no_support() {
    for (code, falls_back) in [(403, false), (400, false), (405, true)] {
        let s = server(true);
        seed(&s, 3);
        s.inject_fault(Fault::response(PATH, code).query_contains("sendInitialEvents"));
        let inst = start(&s, json!({}));
        eventually("ready", || inst.ready());
        let stream = requests(&s, "sendInitialEvents").len();
        if falls_back {
            assert_eq!(stream, 1, "HTTP {code}");
            assert_eq!(s.stats().lists, 1, "HTTP {code}: a paged list");
        } else {
            // An RBAC or webhook refusal, or a bad request, says nothing about the feature: the failure is
            // reported, backed off and the streaming list tried again.
            assert_eq!(stream, 2, "HTTP {code}");
            assert_eq!(s.stats().lists, 0, "HTTP {code}: never a LIST");
            eventually("the failure counted", || {
                inst.clusters[0].region.metric(Metric::ListErrors) == 1
            });
        }
        assert_eq!(served(&inst, 2), Some(node("10.0.2.1")), "HTTP {code}");
    }
}

#[test]
fn a_pause_of_over_5_s_in_a_streaming_list_is_listed_with_pages_once_and_streamed_again_at_the_next_relist()
 {
    // A server that does serve streaming lists, paused (a loaded server, a network stall) past the silence
    // that marks a server ignoring sendInitialEvents: this sync is listed with pages, the next one streams.
    let s = server(true);
    seed(&s, 600);
    s.inject_fault(Fault::stall(PATH, 6000, Some(6500)).only_watch(true));
    let inst = start(&s, json!({}));
    eventually("ready", || inst.ready());
    assert_eq!(
        served(&inst, 599),
        Some(node(&format!("10.{}.{}.1", 599 / 250, 599 % 250)))
    );
    assert_eq!(requests(&s, "sendInitialEvents").len(), 1);
    assert!(s.stats().lists >= 1, "this sync was paged");
    // A 410 makes it relist: with a streaming list again, which now goes through.
    relists_with_a_streaming_list(&s, &inst, 2);
}

/// Forces a relist (a 410 on the watch) and checks that it is a streaming list, the `streaming`-th request with
/// `sendInitialEvents` so far, and that the gateway then watches with no paged list.
fn relists_with_a_streaming_list(s: &FakeApiServer, inst: &Instance, streaming: usize) {
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    s.reset_watches();
    s.delete(Kind::Endpoints, "ns", "svc0000");
    s.compact();
    eventually("relisted", || served(inst, 0).is_none());
    eventually("a streaming list again", || {
        requests(s, "sendInitialEvents").len() == streaming
    });
    let lists = s.stats().lists;
    s.apply(endpoints("ns", "svc0001", "10.99.0.1"));
    eventually("watching", || served(inst, 1) == Some(node("10.99.0.1")));
    assert_eq!(s.stats().lists, lists, "no paged list since");
}

#[test]
fn a_server_that_ignores_send_initial_events_is_recognised_by_the_silence_before_its_end_bookmark()
{
    // An old server or a stripping proxy: the streaming list is served as a plain watch. Its first ordinary
    // bookmark comes after a minute, as a real server's does, so only the silence can tell in time.
    let s = FakeApiServer::start(Options {
        ignore_watch_list_params: true,
        ..Options::default()
    })
    .expect("fake API server starts");
    seed(&s, 700);
    let started = Instant::now();
    let inst = start(&s, json!({}));
    eventually("ready", || inst.ready());
    eprintln!("ready after {:?}", started.elapsed());
    for i in [0, 499, 699] {
        assert_eq!(
            served(&inst, i),
            Some(node(&format!("10.{}.{}.1", i / 250, i % 250)))
        );
    }
    // One streaming list (its 700 events were not taken for a list), then a paged LIST.
    assert_eq!(requests(&s, "sendInitialEvents").len(), 1);
    assert!(s.stats().lists >= 1);
    let st = status(&inst);
    assert_eq!(st.lists, 1);
    assert_eq!(inst.clusters[0].region.metric(Metric::ListErrors), 0);
    // The watch that follows is a plain one, and works.
    s.apply(endpoints("ns", "svc0000", "10.99.0.1"));
    eventually("watching", || served(&inst, 0) == Some(node("10.99.0.1")));
    assert_eq!(requests(&s, "sendInitialEvents").len(), 1);

    // With `watch_list`, the same silence is reported, and streaming lists are tried again.
    let inst = common::start_against(
        s.addr().port(),
        "8m",
        json!({"list_strategy": "watch_list"}),
    );
    eventually("the silence reported", || {
        status(&inst).last_error.contains("fell silent for 5s")
    });
    let e = status(&inst).last_error;
    assert!(
        e.contains("before the end of its initial events: the server ignored sendInitialEvents"),
        "{e}"
    );
    assert!(!inst.ready());
}

#[test]
fn a_proxy_that_answers_400_to_every_streaming_list_is_listed_with_pages_and_streaming_is_tried_at_the_next_relist()
 {
    // A proxy in front of the API server refuses the streaming list's parameters with 400, every time.
    let s = server(true);
    seed(&s, 3);
    s.inject_fault(
        Fault::response(PATH, 400)
            .query_contains("sendInitialEvents")
            .count(1000),
    );
    // The first paged LIST is answered 400 too: an ordinary list failure, retried with pages.
    s.inject_fault(Fault::response(PATH, 400).only_watch(false));
    let inst = start(&s, json!({}));
    eventually("ready through paged lists", || inst.ready());
    assert_eq!(served(&inst, 2), Some(node("10.0.2.1")));
    assert_eq!(
        requests(&s, "sendInitialEvents").len(),
        3,
        "three streaming lists, then pages"
    );
    assert_eq!(
        requests(&s, "limit=").len(),
        2,
        "this sync was paged, its first LIST failed"
    );
    assert_eq!(s.stats().lists, 1);
    // The refusals before the last, and the failed LIST, were reported as failed lists; the paged list that
    // completed cleared the error.
    assert_eq!(inst.clusters[0].region.metric(Metric::ListErrors), 3);
    assert_eq!(status(&inst).last_error, "");
    // The proxy is fixed; a 410 makes the gateway relist, with a streaming list again.
    s.clear_faults();
    relists_with_a_streaming_list(&s, &inst, 4);
}

#[test]
fn a_400_saying_the_resource_version_expired_is_a_410_not_a_refused_streaming_list() {
    // A Status with reason Expired under HTTP 400 (a proxy that rewrites codes keeps the body): the gateway
    // relists from the latest state at once instead of counting it as a refusal of the parameters.
    let s = server(true);
    seed(&s, 3);
    let expired = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
                         "message": "too old resource version: 1 (5)"});
    s.inject_fault(
        Fault::response(PATH, 400)
            .query_contains("sendInitialEvents")
            .body("application/json", &expired.to_string())
            .count(3),
    );
    let inst = start(&s, json!({}));
    eventually("ready", || inst.ready());
    assert_eq!(served(&inst, 2), Some(node("10.0.2.1")));
    let stream = requests(&s, "sendInitialEvents");
    assert_eq!(stream.len(), 4, "{stream:?}");
    assert_eq!(
        s.stats().lists,
        0,
        "never paged: an expired version is no refusal"
    );
}
