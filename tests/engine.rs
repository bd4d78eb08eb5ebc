//! The watch engine end to end against the fake API server, in process: list, watch, relist on 410, paging,
//! slices, selectors, and takeover by a newer watcher.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{eventually, nodes};
use k8s_disc::testing::Instance;
use k8s_disc::testing::Lookup;
use k8s_disc::testing::Metric;
use k8s_disc::testing::Node;
use k8s_fake_apiserver::{FakeApiServer, Fault, Kind, Options};
use serde_json::{Value, json};

fn server() -> FakeApiServer {
    FakeApiServer::start(Options {
        endpoints_warning: true,
        ..Options::default()
    })
    .expect("fake API server starts")
}

/// Initialises an instance for `server` with extra config keys and starts its watchers in this process.
fn start(server: &FakeApiServer, extra: Value) -> Arc<Instance> {
    common::start_against(server.addr().port(), "4m", extra)
}

/// Complete lists the watcher published (streaming or paged).
fn lists(inst: &Instance) -> u64 {
    inst.clusters[0].region.status().lists
}

fn node(host: &str, port: u16) -> Node {
    Node::new(host, port)
}

fn endpoints(ns: &str, name: &str, ips: &[&str], ports: Value) -> Value {
    let addrs: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": {"namespace": ns, "name": name},
           "subsets": [{"addresses": addrs, "ports": ports}]})
}

fn slice(ns: &str, name: &str, svc: &str, eps: Value, ports: Value) -> Value {
    json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
           "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4", "endpoints": eps, "ports": ports})
}

#[test]
fn list_watch_update_delete() {
    let s = server();
    s.apply(endpoints(
        "ns-a",
        "web",
        &["10.0.0.2", "10.0.0.1"],
        json!([{"name": "http", "port": 80}]),
    ));
    let inst = start(&s, json!({}));
    eventually("first list", || inst.ready());
    assert_eq!(
        nodes(&inst, "ns-a/web:http"),
        Some(vec![node("10.0.0.1", 80), node("10.0.0.2", 80)])
    );
    assert_eq!(nodes(&inst, "ns-a/web:grpc"), None, "unknown port");
    assert_eq!(nodes(&inst, "ns-a/nope:http"), None, "unknown service");

    s.apply(endpoints(
        "ns-a",
        "web",
        &["10.0.0.3"],
        json!([{"name": "http", "port": 80}, {"port": 9090}]),
    ));
    eventually("update", || {
        nodes(&inst, "ns-a/web:http") == Some(vec![node("10.0.0.3", 80)])
    });
    assert_eq!(
        nodes(&inst, "ns-a/web:9090"),
        Some(vec![node("10.0.0.3", 9090)]),
        "unnamed port by number"
    );

    s.delete(Kind::Endpoints, "ns-a", "web");
    eventually("delete", || nodes(&inst, "ns-a/web:http").is_none());
    assert_eq!(nodes(&inst, "ns-a/web:9090"), None);
}

#[test]
fn unchanged_lookup_keeps_version_and_change_bumps_it() {
    let s = server();
    s.apply(endpoints(
        "ns",
        "svc",
        &["10.1.0.1"],
        json!([{"name": "p", "port": 8080}]),
    ));
    let inst = start(&s, json!({}));
    eventually("first list", || inst.ready());
    let mut buf = vec![0u8; 4096];
    let Lookup::Found { hint, version, .. } = inst.nodes("ns/svc:p", &mut buf) else {
        panic!()
    };
    assert!(inst.is_current(hint, version));
    // Another service changing does not touch this one's version.
    s.apply(endpoints(
        "ns",
        "other",
        &["10.1.0.9"],
        json!([{"name": "p", "port": 1}]),
    ));
    eventually("other service", || nodes(&inst, "ns/other:p").is_some());
    assert!(inst.is_current(hint, version));
    s.apply(endpoints(
        "ns",
        "svc",
        &["10.1.0.2"],
        json!([{"name": "p", "port": 8080}]),
    ));
    eventually("change seen", || !inst.is_current(hint, version));
}

#[test]
fn watch_410_relists_and_keeps_serving_meanwhile() {
    let s = server();
    s.apply(endpoints(
        "ns",
        "a",
        &["10.2.0.1"],
        json!([{"name": "http", "port": 80}]),
    ));
    s.apply(endpoints(
        "ns",
        "b",
        &["10.2.0.2"],
        json!([{"name": "http", "port": 80}]),
    ));
    let inst = start(&s, json!({}));
    eventually("first list", || inst.ready());
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    // Break the watch, make the history unusable, and change state while the watcher is away: it must
    // relist, pick up the change and drop the deleted service, without ever serving nothing for "a".
    let lists_before = lists(&inst);
    // The watcher loses its connection and backs off (>= 0.8 s); meanwhile the state changes and the history
    // it would resume from is compacted away, so resuming gives 410 and it must relist.
    s.reset_watches();
    s.delete(Kind::Endpoints, "ns", "b");
    s.apply(endpoints(
        "ns",
        "a",
        &["10.2.0.9"],
        json!([{"name": "http", "port": 80}]),
    ));
    s.compact();
    assert_eq!(
        nodes(&inst, "ns/b:http"),
        Some(vec![node("10.2.0.2", 80)]),
        "old data served meanwhile"
    );
    eventually("relist applied", || {
        nodes(&inst, "ns/a:http") == Some(vec![node("10.2.0.9", 80)])
    });
    eventually("stale key removed", || nodes(&inst, "ns/b:http").is_none());
    // The list is counted after its writes, in the same batch.
    eventually("a relist counted", || lists(&inst) > lists_before);
}

#[test]
fn paged_list_with_expired_continue_token_falls_back_to_a_full_list() {
    // Every continue token is already expired when used, so the paged list can never finish.
    let s = FakeApiServer::start(Options {
        continue_ttl: Some(Duration::from_millis(1)),
        ..Options::default()
    })
    .unwrap();
    for i in 0..1200 {
        s.apply(endpoints(
            "ns",
            &format!("svc{i:04}"),
            &["10.3.0.1"],
            json!([{"name": "http", "port": 80}]),
        ));
    }
    let inst = start(&s, json!({"list_strategy": "list"}));
    eventually("first list", || inst.ready());
    for i in [0, 499, 500, 1199] {
        assert!(
            nodes(&inst, &format!("ns/svc{i:04}:http")).is_some(),
            "svc{i:04}"
        );
    }
    let reqs = s.stats().requests;
    assert!(
        reqs.iter().any(|r| r.contains("continue=")),
        "paging was attempted: {reqs:?}"
    );
}

#[test]
fn a_failed_later_page_fails_the_whole_list_and_deletes_nothing() {
    let s = server();
    for i in 0..700 {
        s.apply(endpoints(
            "ns",
            &format!("svc{i:03}"),
            &["10.4.0.1"],
            json!([{"name": "http", "port": 80}]),
        ));
    }
    let inst = start(&s, json!({"list_strategy": "list"}));
    eventually("first list", || inst.ready());
    // The next relist fails on its second page (first page served, then a 500).
    s.inject_fault(Fault {
        watch: Some(false),
        count: 1,
        ..Fault::response("/api/v1/endpoints", 500).query_contains("continue=")
    });
    s.reset_watches();
    s.delete(Kind::Endpoints, "ns", "svc000");
    s.compact();
    // While the relists fail, every service listed before stays, including ones on the page that failed.
    eventually("both failing relists happened", || {
        s.stats().faults_pending == 0
    });
    for i in [1, 499, 500, 699] {
        assert!(
            nodes(&inst, &format!("ns/svc{i:03}:http")).is_some(),
            "svc{i:03} kept"
        );
    }
    assert!(
        nodes(&inst, "ns/svc000:http").is_some(),
        "nothing deleted until a list completes"
    );
    // The next relist succeeds and only then removes what is gone.
    eventually("relist completes", || {
        nodes(&inst, "ns/svc000:http").is_none()
    });
    assert!(nodes(&inst, "ns/svc699:http").is_some());
}

#[test]
fn endpoint_slices_merge_and_last_slice_deletion() {
    let s = server();
    let ports = json!([{"name": "p1", "port": 5001}]);
    s.apply(slice(
        "ns",
        "svc-a",
        "svc",
        json!([{"addresses": ["10.5.0.1"], "conditions": {"ready": true}},
                                              {"addresses": ["10.5.0.2"], "conditions": {}}]),
        ports.clone(),
    ));
    s.apply(slice(
        "ns",
        "svc-b",
        "svc",
        json!([{"addresses": ["10.5.0.3"], "conditions": {"ready": false}}]),
        ports.clone(),
    ));
    let inst = start(&s, json!({"watch_endpoint_slices": true}));
    eventually("first list", || inst.ready());
    assert_eq!(
        nodes(&inst, "ns/svc:p1"),
        Some(vec![node("10.5.0.1", 5001), node("10.5.0.2", 5001)])
    );
    s.apply(slice(
        "ns",
        "svc-b",
        "svc",
        json!([{"addresses": ["10.5.0.3"], "conditions": {"ready": true}}]),
        ports.clone(),
    ));
    eventually("second slice ready", || {
        nodes(&inst, "ns/svc:p1").map(|n| n.len()) == Some(3)
    });
    s.delete(Kind::EndpointSlice, "ns", "svc-a");
    eventually("first slice gone", || {
        nodes(&inst, "ns/svc:p1") == Some(vec![node("10.5.0.3", 5001)])
    });
    s.delete(Kind::EndpointSlice, "ns", "svc-b");
    eventually("last slice gone", || nodes(&inst, "ns/svc:p1").is_none());
    // No slice left: the service is gone (its marker too), as the dump shows.
    eventually("the service gone from the dump", || {
        let dump = k8s_disc::testing::dump(&inst);
        let listed = dump["endpoints"][0]["endpoints"].as_array().cloned();
        !listed
            .unwrap_or_default()
            .iter()
            .any(|e| e["name"] == "ns/svc")
    });
}

#[test]
fn namespace_selector_equal_uses_namespaced_path() {
    let s = server();
    s.apply(endpoints(
        "ns-a",
        "ep",
        &["10.6.0.1"],
        json!([{"name": "p", "port": 1}]),
    ));
    s.apply(endpoints(
        "ns-b",
        "ep",
        &["10.6.0.2"],
        json!([{"name": "p", "port": 1}]),
    ));
    let inst = start(&s, json!({"namespace_selector": {"equal": "ns-a"}}));
    eventually("first list", || inst.ready());
    assert!(nodes(&inst, "ns-a/ep:p").is_some());
    assert!(nodes(&inst, "ns-b/ep:p").is_none());
    let reqs = s.stats().requests;
    assert!(
        reqs.iter()
            .any(|r| r.contains("/api/v1/namespaces/ns-a/endpoints")),
        "{reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| r.starts_with("GET /api/v1/endpoints")),
        "{reqs:?}"
    );
}

#[test]
fn a_newer_watcher_takes_over_and_the_old_one_stops() {
    let s = server();
    s.apply(endpoints(
        "ns",
        "x",
        &["10.7.0.1"],
        json!([{"name": "p", "port": 1}]),
    ));
    let inst = start(&s, json!({}));
    eventually("first list", || inst.ready());
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    // A second watcher on the same region from a newer configuration (as after `nginx -s reload`).
    let cluster = inst.clusters[0].clone();
    let old_generation = inst.generation();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || rt.block_on(k8s_disc::testing::run(cluster, old_generation + 1)));
    std::thread::sleep(Duration::from_millis(300));
    // The old watcher notices within its ownership check interval and closes its watch.
    eventually("exactly one watch left", || {
        s.stats().active_watches == 1 && s.stats().watches_started >= 2
    });
    // A watcher of the old configuration (say, restarted after a panic) cannot claim the region back.
    let cluster = inst.clusters[0].clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stale =
        std::thread::spawn(move || rt.block_on(k8s_disc::testing::run(cluster, old_generation)));
    stale.join().expect("the stale watcher returns at once");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.stats().active_watches, 1);
    s.apply(endpoints(
        "ns",
        "x",
        &["10.7.0.2"],
        json!([{"name": "p", "port": 1}]),
    ));
    eventually("new watcher publishes", || {
        nodes(&inst, "ns/x:p") == Some(vec![node("10.7.0.2", 1)])
    });
}

#[test]
fn multi_cluster_routes_by_id_and_fails_independently() {
    let a = server();
    let b = server();
    a.apply(endpoints(
        "ns",
        "svc",
        &["10.8.0.1"],
        json!([{"name": "p", "port": 1}]),
    ));
    b.apply(endpoints(
        "ns",
        "svc",
        &["10.8.0.2"],
        json!([{"name": "p", "port": 2}]),
    ));
    // Nothing listens on b's port once b's server is gone; keep a third port closed for "down".
    let down_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = json!([
        {"id": "first", "service": {"schema": "http", "host": "127.0.0.1", "port": a.addr().port()},
         "client": {"token": "t"}, "shared_size": "1m"},
        {"id": "second", "service": {"schema": "http", "host": "127.0.0.1", "port": b.addr().port()},
         "client": {"token": "t"}, "shared_size": "2m", "default_weight": 7},
        {"id": "down", "service": {"schema": "http", "host": "127.0.0.1", "port": down_port},
         "client": {"token": "t"}, "shared_size": "1m"},
    ]);
    let inst = Instance::standalone(&conf.to_string()).unwrap();
    assert!(inst.multi());
    assert_eq!(
        inst.clusters[1].region.size(),
        2 << 20,
        "each cluster sized by its own shared_size"
    );
    k8s_disc::testing::start(&inst).unwrap();
    eventually("first cluster listed", || {
        nodes(&inst, "first/ns/svc:p").is_some()
    });
    eventually("second cluster listed", || {
        nodes(&inst, "second/ns/svc:p").is_some()
    });
    assert_eq!(
        nodes(&inst, "first/ns/svc:p"),
        Some(vec![node("10.8.0.1", 1)])
    );
    assert_eq!(
        nodes(&inst, "second/ns/svc:p"),
        Some(vec![node("10.8.0.2", 2)])
    );
    assert_eq!(nodes(&inst, "third/ns/svc:p"), None, "unknown cluster id");
    assert_eq!(
        nodes(&inst, "ns/svc:p"),
        None,
        "single-cluster name in multi mode"
    );
    assert!(
        !inst.ready(),
        "not ready while one cluster has never listed"
    );
    let dump = k8s_disc::testing::dump(&inst);
    assert_eq!(dump["endpoints"][1]["id"], "second");
    assert_eq!(
        dump["endpoints"][1]["endpoints"][0]["value"],
        r#"{"p":[{"host":"10.8.0.2","port":2,"weight":7}]}"#
    );
    assert_eq!(
        dump["config"][0]["client"]["token"], "******",
        "tokens are masked"
    );
    assert!(
        dump["status"][2]["last_error"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{dump}"
    );
}

#[test]
fn a_malformed_object_keeps_its_previous_nodes_and_does_not_stop_the_others() {
    let s = server();
    s.apply(endpoints(
        "ns",
        "a",
        &["10.9.0.1"],
        json!([{"name": "p", "port": 1}]),
    ));
    s.apply(endpoints(
        "ns",
        "b",
        &["10.9.0.2"],
        json!([{"name": "p", "port": 1}]),
    ));
    let inst = start(&s, json!({}));
    eventually("first list", || inst.ready());
    let listed = lists(&inst);
    // "subsets" must be a list; a watch event carrying this cannot be applied, so the watcher relists, and
    // the relist keeps what was stored for ns/a instead of dropping it.
    s.apply(json!({"kind": "Endpoints", "apiVersion": "v1",
                   "metadata": {"namespace": "ns", "name": "a"}, "subsets": "bogus"}));
    eventually("relisted after the malformed event", || {
        lists(&inst) > listed
    });
    assert_eq!(nodes(&inst, "ns/a:p"), Some(vec![node("10.9.0.1", 1)]));
    s.apply(endpoints(
        "ns",
        "b",
        &["10.9.0.3"],
        json!([{"name": "p", "port": 1}]),
    ));
    eventually("others still update", || {
        nodes(&inst, "ns/b:p") == Some(vec![node("10.9.0.3", 1)])
    });
    assert_eq!(nodes(&inst, "ns/a:p"), Some(vec![node("10.9.0.1", 1)]));
}

#[test]
fn ipv6_api_server_host_is_bracketed_in_urls() {
    let s = FakeApiServer::start(Options {
        listen: "[::1]:0".parse().unwrap(),
        ..Options::default()
    })
    .unwrap();
    s.apply(endpoints(
        "ns",
        "v6",
        &["fd00::1"],
        json!([{"name": "p", "port": 80}]),
    ));
    let conf = json!({
        "service": {"schema": "http", "host": "::1", "port": s.addr().port()},
        "client": {"token": "t"}, "shared_size": "1m",
    });
    let inst = Instance::standalone(&conf.to_string()).unwrap();
    k8s_disc::testing::start(&inst).unwrap();
    eventually("listed over IPv6", || inst.ready());
    assert_eq!(nodes(&inst, "ns/v6:p"), Some(vec![node("fd00::1", 80)]));
}

#[test]
fn events_split_and_merged_across_chunks_are_all_applied() {
    let s = FakeApiServer::start(Options {
        fuzz_chunks: true,
        ..Options::default()
    })
    .unwrap();
    let inst = start(&s, json!({"watch_endpoint_slices": true}));
    eventually("first list", || inst.ready());
    for i in 0..200u32 {
        let ips: Vec<String> = (0..=(i % 7))
            .map(|j| format!("10.10.{}.{j}", i % 20))
            .collect();
        let eps: Vec<Value> = ips.iter().map(|ip| json!({"addresses": [ip]})).collect();
        s.apply(slice(
            "ns",
            &format!("svc{}-x", i % 20),
            &format!("svc{}", i % 20),
            json!(eps),
            json!([{"name": "http", "port": 8080}]),
        ));
    }
    // The last write to each service decides its nodes: i in 180..200 wrote 1 + i % 7 addresses.
    for i in 180..200u32 {
        let want = (1 + i % 7) as usize;
        eventually(&format!("svc{} settled", i % 20), || {
            nodes(&inst, &format!("ns/svc{}:http", i % 20)).map(|n| n.len()) == Some(want)
        });
    }
    assert_eq!(lists(&inst), 1, "no relist was needed");
}

#[test]
fn bookmarks_keep_the_resume_point_fresh() {
    let s = FakeApiServer::start(Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    })
    .unwrap();
    s.apply(endpoints(
        "watched",
        "a",
        &["10.11.0.1"],
        json!([{"name": "p", "port": 1}]),
    ));
    let inst = start(&s, json!({"namespace_selector": {"equal": "watched"}}));
    eventually("first list", || inst.ready());
    // Changes elsewhere move the server's resourceVersion on; this watch only learns of it from bookmarks.
    for i in 0..20 {
        s.apply(endpoints(
            "other",
            &format!("x{i}"),
            &["10.11.9.9"],
            json!([{"name": "p", "port": 1}]),
        ));
    }
    std::thread::sleep(Duration::from_millis(600));
    let listed = lists(&inst);
    s.compact();
    s.reset_watches();
    s.apply(endpoints(
        "watched",
        "a",
        &["10.11.0.2"],
        json!([{"name": "p", "port": 1}]),
    ));
    eventually("change after reconnect", || {
        nodes(&inst, "watched/a:p") == Some(vec![node("10.11.0.2", 1)])
    });
    assert_eq!(
        lists(&inst),
        listed,
        "resumed from the bookmark's resourceVersion without a relist"
    );
}

#[test]
fn a_watch_that_keeps_answering_410_backs_off_instead_of_relisting_in_a_loop() {
    // Every watch starts from a resourceVersion the server has already compacted away (the list is slower than
    // the watch history), so each one answers 200 with an in-stream ERROR 410. The first 410 relists at once;
    // later ones must back off (0.8 s doubling), not relist about once a second for ever.
    let s = Arc::new(server());
    s.apply(endpoints(
        "ns",
        "a",
        &["10.7.0.1"],
        json!([{"name": "http", "port": 80}]),
    ));
    s.inject_fault(
        Fault::delay_ms("/api/v1/endpoints", 150)
            .only_watch(true)
            .count(1000),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                s.apply(endpoints(
                    "ns",
                    "churn",
                    &[&format!("10.8.{}.{}", i / 250 % 250, i % 250)],
                    json!([{"name": "http", "port": 80}]),
                ));
                s.compact();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // A streaming list goes on as the watch on the same connection, so this needs paged lists.
    let inst = start(&s, json!({"list_strategy": "list"}));
    eventually("first list", || inst.ready());
    let lists_at_start = s.stats().lists;
    std::thread::sleep(Duration::from_secs(9));
    let lists = s.stats().lists - lists_at_start;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    // With back-off: relists at about 0, 0.8-1.6, 2.4-4.8, 5.6-11.2 s after the first 410 (at most 5 in 9 s,
    // counting the one right after the first list). A back-off reset by each ERROR line would relist every
    // 0.8-1.6 s: 6 or more.
    assert!((2..=5).contains(&lists), "{lists} relists in 9 s");
    assert_eq!(
        nodes(&inst, "ns/a:http"),
        Some(vec![node("10.7.0.1", 80)]),
        "data kept meanwhile"
    );
}

#[test]
fn bookmarks_keep_a_quiet_watch_fresh() {
    let s = FakeApiServer::start(Options {
        bookmark_interval: Duration::from_millis(300),
        ..Options::default()
    })
    .expect("fake API server starts");
    s.apply(endpoints(
        "ns",
        "a",
        &["10.9.0.1"],
        json!([{"name": "http", "port": 80}]),
    ));
    let inst = start(&s, json!({}));
    eventually("first list", || inst.ready());
    let synced = inst.clusters[0].region.status().last_sync_ms;
    // No object changes from here on: only bookmarks arrive.
    eventually("a bookmark moved last_sync", || {
        inst.clusters[0].region.status().last_sync_ms > synced
    });
}

#[test]
fn a_list_that_does_not_finish_within_list_timeout_fails_and_is_retried() {
    let s = server();
    s.apply(endpoints(
        "ns",
        "a",
        &["10.10.0.1"],
        json!([{"name": "http", "port": 80}]),
    ));
    s.inject_fault(Fault::delay_ms("/api/v1/endpoints", 15_000).only_watch(false));
    let inst = start(&s, json!({"list_timeout": 10, "list_strategy": "list"}));
    eventually("the list deadline reported", || {
        inst.clusters[0]
            .region
            .status()
            .last_error
            .contains("the list did not finish within 10s (list_timeout)")
    });
    assert!(!inst.ready());
    eventually("the next list succeeds", || inst.ready());
    assert_eq!(nodes(&inst, "ns/a:http"), Some(vec![node("10.10.0.1", 80)]));
}

#[test]
fn the_initial_events_of_a_streaming_list_have_the_list_timeout_deadline() {
    let s = server();
    s.apply(endpoints(
        "ns",
        "a",
        &["10.10.0.1"],
        json!([{"name": "http", "port": 80}]),
    ));
    s.apply(endpoints(
        "ns",
        "b",
        &["10.10.0.2"],
        json!([{"name": "http", "port": 80}]),
    ));
    // The stream trickles, a byte every 50 ms: never silent, but its initial events take longer than
    // list_timeout, so only the list deadline can end it.
    s.inject_fault(Fault::slow_body("/api/v1/endpoints", 1, 50).only_watch(true));
    let inst = start(&s, json!({"list_timeout": 10}));
    eventually("the list deadline reported", || {
        inst.clusters[0]
            .region
            .status()
            .last_error
            .contains("the list did not finish within 10s (list_timeout)")
    });
    assert!(!inst.ready());
    assert_eq!(
        nodes(&inst, "ns/a:http"),
        None,
        "nothing published before the end"
    );
    eventually("the next list succeeds", || inst.ready());
    assert_eq!(nodes(&inst, "ns/b:http"), Some(vec![node("10.10.0.2", 80)]));
    assert_eq!(s.stats().lists, 0);
}

#[test]
fn the_server_side_watch_timeout_stays_below_watch_idle_timeout() {
    let s = server();
    let inst = start(&s, json!({"watch_idle_timeout": 20, "list_timeout": 10}));
    eventually("first list", || inst.ready());
    // The streaming list's own timeout covers its initial events (list_timeout) plus a watch's lifetime, which
    // the watcher ends itself; then it watches on with plain watches.
    eventually("a plain watch after the streaming list's watch", || {
        s.stats()
            .requests
            .iter()
            .any(|r| r.contains("watch=1") && !r.contains("sendInitialEvents"))
    });
    let timeouts = |streaming: bool| -> Vec<u64> {
        s.stats()
            .requests
            .iter()
            .filter(|r| r.contains("sendInitialEvents") == streaming)
            .filter_map(|r| r.split("timeoutSeconds=").nth(1))
            .map(|t| t.split('&').next().unwrap().parse().unwrap())
            .collect()
    };
    let (stream, plain) = (timeouts(true), timeouts(false));
    assert_eq!(stream.len(), 1, "{stream:?}");
    assert!(
        (20..26).contains(&stream[0]),
        "timeoutSeconds={}",
        stream[0]
    );
    assert!(!plain.is_empty());
    for t in plain {
        assert!(
            (10..16).contains(&t),
            "timeoutSeconds={t} for an idle timeout of 20 s"
        );
    }
    assert_eq!(
        inst.clusters[0].region.status().last_error,
        "",
        "the watcher ended the stream cleanly"
    );
    assert_eq!(lists(&inst), 1, "and resumed it without a relist");
}

#[test]
fn max_staleness_turns_readiness_off_while_nothing_confirms_the_data_and_back_on() {
    let s = server();
    s.apply(endpoints(
        "ns",
        "a",
        &["10.11.0.1"],
        json!([{"name": "http", "port": 80}]),
    ));
    let inst = start(&s, json!({"max_staleness": 2}));
    eventually("first list", || inst.ready());
    // Every watch now fails: nothing confirms the data any more.
    s.inject_fault(
        Fault::response("/api/v1/endpoints", 500)
            .only_watch(true)
            .count(1000),
    );
    s.reset_watches();
    eventually("stale", || !inst.ready());
    assert_eq!(
        nodes(&inst, "ns/a:http"),
        Some(vec![node("10.11.0.1", 80)]),
        "stale data is still served"
    );
    s.clear_faults();
    eventually("fresh again", || inst.ready());
}

#[test]
fn objects_over_max_object_size_are_skipped_and_the_stream_goes_on() {
    let s = server();
    // About 1.4 MB of JSON: over a max_object_size of 1m.
    let big: Vec<String> = (0..70_000)
        .map(|i| format!("10.{}.{}.{}", 20 + i / 62_500, i / 250 % 250, i % 250))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let http = || json!([{"name": "http", "port": 80}]);
    s.apply(endpoints("ns", "small", &["10.12.0.1"], http()));
    s.apply(endpoints("ns", "big", &big, http()));
    let inst = start(&s, json!({"max_object_size": "1m"}));
    eventually("first list", || inst.ready());
    assert_eq!(
        nodes(&inst, "ns/small:http"),
        Some(vec![node("10.12.0.1", 80)])
    );
    assert_eq!(
        nodes(&inst, "ns/big:http"),
        None,
        "skipped, never listed before"
    );
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    let listed = lists(&inst);
    // A watch event carrying the big object is skipped; the watch goes on and delivers the next change.
    s.apply(endpoints("ns", "big", &big[1..], http()));
    s.apply(endpoints("ns", "small", &["10.12.0.2"], http()));
    eventually("the change after the big event", || {
        nodes(&inst, "ns/small:http") == Some(vec![node("10.12.0.2", 80)])
    });
    assert_eq!(lists(&inst), listed, "no relist for a skipped event");
    // Once the object fits, it is served.
    s.apply(endpoints("ns", "big", &big[..2], http()));
    eventually("the big service, shrunk", || {
        nodes(&inst, "ns/big:http").is_some_and(|n| n.len() == 2)
    });
}

#[test]
fn services_created_and_deleted_under_one_watch_leave_nothing_behind_in_the_region() {
    const SERVICES: usize = 100_000;
    // Room for the history of every change, so that the watch never has to relist (a relist would clean up
    // whatever the watch left behind and hide it).
    let s = FakeApiServer::start(Options {
        history: 4 * SERVICES,
        ..Options::default()
    })
    .unwrap();
    let eps = json!([{"addresses": ["10.13.0.1"], "conditions": {"ready": true}}]);
    let http = json!([{"name": "http", "port": 80}]);
    s.apply(slice("ns", "base-1", "base", eps.clone(), http.clone()));
    // 1 MiB: room for a few thousand services, not for a hundred thousand.
    let inst = common::start_against(
        s.addr().port(),
        "1m",
        json!({"watch_endpoint_slices": true}),
    );
    eventually("first list", || inst.ready());
    assert!(s.wait_for_active_watches(1, Duration::from_secs(5)));
    let region = &inst.clusters[0].region;
    let before = region.status();
    let deleted = |r: &k8s_disc::testing::Region| r.metric(Metric::EventsDeleted);
    let deleted_before = deleted(region);
    // Each service gets its slice, then loses it (the service was deleted): a preview environment's life.
    for i in 0..SERVICES {
        let (name, svc) = (format!("s{i:06}-x1"), format!("s{i:06}"));
        s.apply(slice("churn", &name, &svc, eps.clone(), http.clone()));
        s.delete(Kind::EndpointSlice, "churn", &name);
    }
    // One more service, then its deletion: once that is applied, every change before it is too.
    s.apply(slice("ns", "last-1", "last", eps.clone(), http.clone()));
    s.delete(Kind::EndpointSlice, "ns", "last-1");
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while deleted(region) < deleted_before + SERVICES as u64 + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} deletions applied in 600 s",
            deleted(region) - deleted_before,
            SERVICES + 1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The last event's batch is written just after it is counted.
    let settled = std::time::Instant::now() + Duration::from_secs(30);
    let mut after = region.status();
    while (after.entries, after.heap_used) != (before.entries, before.heap_used)
        && std::time::Instant::now() < settled
    {
        std::thread::sleep(Duration::from_millis(20));
        after = region.status();
    }
    eprintln!(
        "region before: {} entries, {} of {} heap bytes; after {SERVICES} services came and went: {} entries, \
         {} bytes, {} held back, {} refused",
        before.entries,
        before.heap_used,
        before.heap_bytes,
        after.entries,
        after.heap_used,
        after.pending_full,
        after.full_rejections
    );
    assert_eq!(after.lists, before.lists, "no relist: the watch did it all");
    assert_eq!(
        (after.entries, after.heap_used),
        (before.entries, before.heap_used),
        "the region's use is back where it started"
    );
    assert_eq!(after.pending_full, 0, "nothing held back");
    assert_eq!(after.full_rejections, 0, "nothing was ever refused");
    assert!(nodes(&inst, "churn/s000000:http").is_none());
    assert!(nodes(&inst, "ns/base:http").is_some());
    let dump = k8s_disc::testing::dump(&inst);
    assert_eq!(
        dump["endpoints"][0]["endpoints"].as_array().map(Vec::len),
        Some(1),
        "only the base service is listed"
    );
}
