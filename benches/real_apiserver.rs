//! The initial sync (paged LIST and streaming list) and change propagation against a real kube-apiserver's watch
//! cache, beside the same figures against the fake API server, in one run. Needs a running environment
//! (`testenv/run.sh start DIR`, then `K8S_DISC_REAL_APISERVER=DIR`); skipped, saying why, without one.
//! Run: `cargo bench --bench real_apiserver [-- SERVICES]` (2000 services of 10 endpoints each, one
//! EndpointSlice per service, by default). Writes the numbers to `target/bench-real-apiserver.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/real/mod.rs"]
#[macro_use]
mod real;

use k8s_disc::testing::Instance;
use k8s_fake_apiserver::{FakeApiServer, Options};
use serde_json::{Value, json};

const NAMESPACES: usize = 20;

fn slice(prefix: &str, i: usize, last: u8) -> Value {
    let eps: Vec<Value> = (0..10u8)
        .map(|j| {
            let host = if j == 9 { last } else { j + 1 };
            json!({"addresses": [format!("10.{}.{}.{host}", i / 250 % 250, i % 250)],
                   "conditions": {"ready": true}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": format!("{prefix}-{}", i % NAMESPACES), "name": format!("svc{i}-abcde"),
                        "labels": {"kubernetes.io/service-name": format!("svc{i}")}},
           "addressType": "IPv4", "endpoints": eps,
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

fn wait_ready(inst: &Instance, started: Instant) -> Duration {
    while !inst.ready() {
        assert!(started.elapsed() < Duration::from_secs(900), "not ready");
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

/// Whether service `i` is served with `host` among its nodes.
fn serves(inst: &Instance, prefix: &str, i: usize, host: &str) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    match inst.nodes(
        &format!("{prefix}-{}/svc{i}:http", i % NAMESPACES),
        &mut buf,
    ) {
        k8s_disc::testing::Lookup::Found { count, len, .. } => {
            let nodes = k8s_disc::testing::decode_nodes(&buf[..len], count);
            nodes.iter().any(|n| n.host == host)
        }
        _ => false,
    }
}

/// Median and maximum of `samples` update-to-served times, in ms.
fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(samples[samples.len() / 2]), ms(*samples.last().unwrap()))
}

struct Row {
    server: &'static str,
    strategy: &'static str,
    ready: Duration,
}

fn main() {
    let services: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let env = real_env!();
    k8s_disc::testing::set_max_level(k8s_disc::testing::Level::Warn);
    let prefix = format!("bench-{}", std::process::id());

    // Seed the real server in parallel (4 clients) and the fake in process.
    let seeding = Instant::now();
    let admin = env.admin();
    for n in 0..NAMESPACES {
        admin.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": format!("{prefix}-{n}")}}));
    }
    std::thread::scope(|s| {
        for t in 0..4 {
            let (env, prefix) = (&env, &prefix);
            s.spawn(move || {
                let kube = env.admin();
                for i in (t..services).step_by(4) {
                    kube.apply(&slice(prefix, i, 10));
                }
            });
        }
    });
    let seeded_real = seeding.elapsed();
    let fake = FakeApiServer::start(Options::default()).expect("fake starts");
    let items: Vec<Value> = (0..services).map(|i| slice(&prefix, i, 10)).collect();
    fake.apply_all(json!({"kind": "EndpointSliceList", "items": items}))
        .expect("seed applies");

    let real_conf = |strategy: &str| {
        env.config(json!({"shared_size": "256m", "watch_endpoint_slices": true, "list_strategy": strategy}))
    };
    let fake_conf = |strategy: &str| {
        json!({"service": {"schema": "http", "host": "127.0.0.1", "port": fake.addr().port()},
               "client": {"token": "t"}, "shared_size": "256m", "watch_endpoint_slices": true,
               "list_strategy": strategy})
    };
    let mut rows = Vec::new();
    let mut keep: Vec<(&'static str, Arc<Instance>)> = Vec::new();
    for (server, strategy) in [
        ("fake", "list"),
        ("fake", "watch_list"),
        ("kube-apiserver", "list"),
        ("kube-apiserver", "watch_list"),
    ] {
        let conf = if server == "fake" {
            fake_conf(strategy)
        } else {
            real_conf(strategy)
        };
        let started = Instant::now();
        let inst = Instance::standalone(&conf.to_string()).expect("valid config");
        k8s_disc::testing::start(&inst).expect("watchers start");
        let ready = wait_ready(&inst, started);
        rows.push(Row {
            server,
            strategy,
            ready,
        });
        keep.push((server, inst));
    }

    // Propagation: one slice changed at a time, from the start of the write (an HTTP request to kube-apiserver, a
    // call in process to the fake) to the new address being served by the engine watching with streaming lists.
    let rounds = 30;
    let mut propagation = Vec::new();
    // The second and fourth engines: streaming lists on the fake and on kube-apiserver.
    for (server, inst) in keep.iter().skip(1).step_by(2) {
        let mut samples = Vec::new();
        for r in 0..rounds {
            let i = r * 7 % services;
            let last = 100 + r as u8;
            let obj = slice(&prefix, i, last);
            let want = format!("10.{}.{}.{last}", i / 250 % 250, i % 250);
            // From the write's start: kube-apiserver may send the watch event before the write's own response.
            let started = Instant::now();
            if *server == "fake" {
                fake.apply(obj);
            } else {
                admin.apply(&obj);
            }
            while !serves(inst, &prefix, i, &want) {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{server}: change not served"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            samples.push(started.elapsed());
        }
        propagation.push((*server, stats(samples)));
    }

    println!(
        "against {} (kube-apiserver {}): {services} services, one EndpointSlice of 10 endpoints each; real server \
         seeded in {:.1} s",
        env.server,
        env.version,
        seeded_real.as_secs_f64()
    );
    let mut out = Vec::new();
    for r in &rows {
        println!(
            "initial sync  {:<15} list_strategy {:<10}  ready after {:>8.1} ms",
            r.server,
            r.strategy,
            r.ready.as_secs_f64() * 1e3
        );
        out.push(
            json!({"server": r.server, "list_strategy": r.strategy, "services": services,
                        "ready_ms": r.ready.as_secs_f64() * 1e3}),
        );
    }
    for (server, (median, max)) in &propagation {
        println!(
            "propagation   {server:<15} {rounds} changes, write started to served: median {median:.2} ms, max \
             {max:.2} ms"
        );
        out.push(
            json!({"server": server, "propagation_median_ms": median, "propagation_max_ms": max,
                        "changes": rounds}),
        );
    }
    let path = "target/bench-real-apiserver.json";
    if let Err(e) = std::fs::write(path, Value::Array(out).to_string()) {
        eprintln!("cannot write {path}: {e}");
    }
    std::process::exit(0);
}
