//! The initial sync of one cluster, paged LIST against streaming list: requests made to the API server and the
//! time until the cluster is ready, against the fake API server in process. Prints the numbers and writes them as
//! JSON to `target/bench-initial-sync.json`. Run: `cargo bench --bench initial_sync [-- SERVICES]` (10000
//! services of 10 endpoints each, one EndpointSlice per service, by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_disc::testing::Instance;
use k8s_fake_apiserver::{FakeApiServer, Options};
use serde_json::{Value, json};

fn slices(services: usize) -> Value {
    let items: Vec<Value> = (0..services)
        .map(|i| {
            let eps: Vec<Value> = (0..10)
                .map(|j| {
                    json!({"addresses": [format!("10.{}.{}.{}", i / 250 % 250, i % 250, j + 1)],
                           "conditions": {"ready": true}})
                })
                .collect();
            json!({"metadata": {"namespace": format!("ns-{}", i % 50), "name": format!("svc{i}-abcde"),
                                "labels": {"kubernetes.io/service-name": format!("svc{i}")}},
                   "addressType": "IPv4", "endpoints": eps,
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
        })
        .collect();
    json!({"kind": "EndpointSliceList", "items": items})
}

struct Run {
    label: &'static str,
    lists: u64,
    /// Watch requests the server accepted (a streaming list is one, and goes on as the watch).
    watches: u64,
    /// Requests with `sendInitialEvents=true`, accepted or refused.
    streaming: usize,
    ready: Duration,
}

fn run(label: &'static str, s: &FakeApiServer, strategy: &str) -> (Run, Arc<Instance>) {
    let conf = json!({
        "service": {"schema": "http", "host": "127.0.0.1", "port": s.addr().port()},
        "client": {"token": "t"}, "shared_size": "256m", "watch_endpoint_slices": true,
        "list_strategy": strategy,
    });
    let before = s.stats();
    let started = Instant::now();
    let inst = Instance::standalone(&conf.to_string()).expect("valid config");
    k8s_disc::testing::start(&inst).expect("watchers start");
    while !inst.ready() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{label}: not ready"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = started.elapsed();
    // Let the watch that follows a paged list start too: the counts are those of a sync and its watch.
    std::thread::sleep(Duration::from_millis(500));
    let after = s.stats();
    let streaming = |st: &k8s_fake_apiserver::Stats| {
        st.requests
            .iter()
            .filter(|r| r.contains("sendInitialEvents=true"))
            .count()
    };
    (
        Run {
            label,
            lists: after.lists - before.lists,
            watches: after.watches_started - before.watches_started,
            streaming: streaming(&after) - streaming(&before),
            ready,
        },
        inst,
    )
}

fn main() {
    let services: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    k8s_disc::testing::set_max_level(k8s_disc::testing::Level::Warn);
    let with = FakeApiServer::start(Options::default()).expect("fake starts");
    let without = FakeApiServer::start(Options {
        watch_list: false,
        ..Options::default()
    })
    .expect("fake starts");
    for s in [&with, &without] {
        s.apply_all(slices(services)).expect("seed applies");
    }
    let mut keep = Vec::new();
    let mut runs = Vec::new();
    for (label, server, strategy) in [
        ("paged LIST (list_strategy list)", &with, "list"),
        ("streaming list (auto)", &with, "auto"),
        ("auto, server without WatchList", &without, "auto"),
    ] {
        let (r, inst) = run(label, server, strategy);
        keep.push(inst);
        runs.push(r);
    }
    println!("initial sync of {services} services (one EndpointSlice of 10 endpoints each)");
    let mut out = Vec::new();
    for r in &runs {
        println!(
            "{:<34} LIST requests {:>3}   watches accepted {:>2}   streaming-list requests {}   ready after \
             {:>7.1} ms",
            r.label,
            r.lists,
            r.watches,
            r.streaming,
            r.ready.as_secs_f64() * 1e3
        );
        out.push(
            json!({"run": r.label, "services": services, "list_requests": r.lists,
                        "watches_accepted": r.watches, "streaming_list_requests": r.streaming,
                        "ready_ms": r.ready.as_secs_f64() * 1e3}),
        );
    }
    let path = "target/bench-initial-sync.json";
    if let Err(e) = std::fs::write(path, Value::Array(out).to_string()) {
        eprintln!("cannot write {path}: {e}");
    }
    // Leave without stopping the servers under the running watchers (which would only log dropped watches).
    std::process::exit(0);
}
