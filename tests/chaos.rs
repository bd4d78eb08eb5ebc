//! Chaos: a seeded driver applies thousands of random mutations to the fake API server while it injects faults
//! at random; once the faults stop, every lookup of every service must equal what the fake's objects say
//! (computed independently of the library's model, see `chaos/truth.rs`). Besides the API server's faults, the
//! writer process is killed during re-layouts of the slot table and a new watcher started (`chaos/writer_kill.rs`).
//!
//! Each variant runs its fixed seed in CI. For longer runs:
//! `K8S_DISC_CHAOS_SEEDS=1-50 K8S_DISC_CHAOS_MUTATIONS=10000 cargo test --release --test chaos -- --nocapture`
//! (seeds as a comma-separated list of numbers and ranges; every variant runs every seed).

#[path = "chaos/faults.rs"]
mod faults;
#[path = "chaos/mutate.rs"]
mod mutate;
#[path = "chaos/rng.rs"]
mod rng;
#[path = "chaos/truth.rs"]
mod truth;
#[path = "chaos/writer_kill.rs"]
mod writer_kill;

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_disc::testing::Instance;
use k8s_fake_apiserver::{FakeApiServer, Kind, Options};
use serde_json::{Value, json};

use mutate::{Driver, NAMESPACES, PORT_KEYS, SERVICES, Tally};
use rng::Rng;
use truth::{Scope, Truth};

/// Mutations per run unless K8S_DISC_CHAOS_MUTATIONS says otherwise.
const DEFAULT_MUTATIONS: u64 = 2000;
/// Pause between mutations: the watcher sees a stream of changes rather than one burst.
const STEP: Duration = Duration::from_millis(4);
/// One fault every this many mutations on average.
const FAULT_EVERY: u64 = 60;
/// A writer process killed during re-layouts every this many mutations on average (see `chaos/writer_kill.rs`).
const WRITER_KILL_EVERY: u64 = 400;
/// Objects created before the watcher starts, so that its first list already spans several pages.
const INITIAL_OBJECTS: u64 = 40;
/// How long the watcher may take to converge once the faults stop: the longest back-off step (30 s plus up to
/// 100% jitter) that a chain of failures can leave it sleeping in, plus a list and a watch.
const CONVERGENCE: Duration = Duration::from_secs(75);

struct Variant {
    name: &'static str,
    kind: Kind,
    /// Extra cluster settings.
    config: Value,
    scope: fn() -> Scope,
    tune: fn(&mut Options),
    seeds: &'static [u64],
}

fn everything() -> Scope {
    Scope {
        namespace: Box::new(|_| true),
        labels: Box::new(|_| true),
    }
}

fn seeds_from_env(default: &[u64]) -> Vec<u64> {
    let Ok(spec) = std::env::var("K8S_DISC_CHAOS_SEEDS") else {
        return default.to_vec();
    };
    let mut seeds = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || panic!("K8S_DISC_CHAOS_SEEDS: bad seed or range {part:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.parse().unwrap_or_else(|_| bad()),
                    b.parse().unwrap_or_else(|_| bad()),
                );
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().unwrap_or_else(|_| bad())),
        }
    }
    seeds
}

fn mutations_from_env() -> u64 {
    std::env::var("K8S_DISC_CHAOS_MUTATIONS")
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("K8S_DISC_CHAOS_MUTATIONS: bad number {v:?}"))
        })
        .unwrap_or(DEFAULT_MUTATIONS)
}

/// Every name the driver can make exist, so that vanished services are checked too.
fn all_names() -> Vec<String> {
    let mut names = Vec::new();
    for ns in NAMESPACES {
        for svc in SERVICES {
            for port in PORT_KEYS {
                names.push(format!("{ns}/{svc}:{port}"));
            }
        }
    }
    names
}

fn served(inst: &Instance, name: &str) -> Result<Option<Vec<(String, u16)>>, String> {
    common::try_nodes(inst, name)
        .map(|nodes| nodes.map(|n| n.into_iter().map(|n| (n.host, n.port)).collect()))
}

/// The first name whose lookup differs from the truth: (name, truth, served).
type Diff = (
    String,
    Option<Vec<(String, u16)>>,
    Result<Option<Vec<(String, u16)>>, String>,
);

fn first_difference(inst: &Instance, names: &[String], truth: &Truth) -> Option<Diff> {
    names.iter().find_map(|name| {
        let want = truth.get(name).cloned();
        let got = served(inst, name);
        (got.as_ref() != Ok(&want)).then(|| (name.clone(), want, got))
    })
}

struct Report {
    tally: Tally,
    faults: Tally,
    mutate: Duration,
    converge: Duration,
    lookups_during: u64,
}

fn run(v: &Variant, seed: u64, mutations: u64) -> Result<Report, String> {
    let mut opts = Options {
        endpoints_warning: false,
        ..Options::default()
    };
    (v.tune)(&mut opts);
    let s = Arc::new(FakeApiServer::start(opts).map_err(|e| e.to_string())?);
    let mut rng = Rng::new(seed);
    let mut driver = Driver::new(v.kind);
    let mut tally = Tally::new();
    for _ in 0..INITIAL_OBJECTS {
        let what = driver.step(&s, &mut rng);
        *tally.entry(what).or_default() += 1;
    }
    let mut conf = json!({
        "service": {"schema": "http", "host": "127.0.0.1", "port": s.addr().port()},
        "client": {"token": "chaos"},
        "shared_size": "4m",
        "watch_endpoint_slices": v.kind == Kind::EndpointSlice,
    });
    for (k, val) in v.config.as_object().into_iter().flatten() {
        conf[k] = val.clone();
    }
    let inst = common::start_instance(&conf.to_string());
    common::eventually("first list", || inst.ready());

    let prefix = match v.kind {
        Kind::Endpoints => "/api/v1/",
        Kind::EndpointSlice => "/apis/discovery.k8s.io/v1/",
    };
    let names = all_names();
    let mut faults = Tally::new();
    let started = Instant::now();
    let mut lookups_during = 0;
    for _ in 0..mutations {
        let what = driver.step(&s, &mut rng);
        *tally.entry(what).or_default() += 1;
        if rng.chance(1, FAULT_EVERY) {
            *faults
                .entry(faults::inject(&s, &mut rng, prefix))
                .or_default() += 1;
        }
        if rng.chance(1, WRITER_KILL_EVERY) {
            *faults
                .entry(writer_kill::kill_writer_during_relayouts(
                    &inst, &mut rng, &names,
                )?)
                .or_default() += 1;
        }
        // Readers race the writer all along: a lookup may be busy, but never corrupt.
        let name = rng.pick(&names);
        match served(&inst, name) {
            Err(e) if e != "busy" => {
                return Err(format!("lookup of {name} during the run: {e}"));
            }
            _ => lookups_during += 1,
        }
        std::thread::sleep(STEP);
    }
    let mutate = started.elapsed();

    s.clear_faults();
    let objects = s.list(v.kind);
    let scope = (v.scope)();
    let truth = match v.kind {
        Kind::Endpoints => truth::endpoints(&objects, &scope),
        Kind::EndpointSlice => truth::slices(&objects, &scope),
    };
    if let Some(stray) = truth.keys().find(|k| !names.contains(k)) {
        return Err(format!(
            "the driver made {stray}, outside the names checked"
        ));
    }
    let settled = Instant::now();
    while let Some((name, want, got)) = first_difference(&inst, &names, &truth) {
        if settled.elapsed() < CONVERGENCE {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let service = name.split(':').next().unwrap_or("");
        let related: Vec<&Value> = objects
            .iter()
            .filter(|o| {
                let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
                let svc = match v.kind {
                    Kind::Endpoints => o["metadata"]["name"].as_str(),
                    Kind::EndpointSlice => {
                        o["metadata"]["labels"]["kubernetes.io/service-name"].as_str()
                    }
                };
                format!("{ns}/{}", svc.unwrap_or("")) == service
            })
            .collect();
        let status = inst.clusters[0].region.status();
        return Err(format!(
            "not converged {}s after the faults stopped\n\
             first differing service: {name}\n  fake's truth: {want:?}\n  served:       {got:?}\n\
             fake's objects of {service}: {}\n\
             watcher: state {:?}, lists {}, watch events {}, last error {:?}\n\
             fake: {:?}",
            CONVERGENCE.as_secs(),
            serde_json::to_string(&related).unwrap_or_default(),
            status.state,
            status.lists,
            status.watch_events,
            status.last_error,
            s.stats(),
        ));
    }
    Ok(Report {
        tally,
        faults,
        mutate,
        converge: settled.elapsed(),
        lookups_during,
    })
}

fn chaos(v: &Variant) {
    let mutations = mutations_from_env();
    for seed in seeds_from_env(v.seeds) {
        let t0 = Instant::now();
        match run(v, seed, mutations) {
            Ok(r) => eprintln!(
                "chaos {} seed {seed}: {mutations} mutations in {:.1}s, converged {:.1}s after the faults stopped \
                 ({:.1}s in all, {} lookups meanwhile)\n  mutations: {:?}\n  faults: {:?}",
                v.name,
                r.mutate.as_secs_f64(),
                r.converge.as_secs_f64(),
                t0.elapsed().as_secs_f64(),
                r.lookups_during,
                r.tally,
                r.faults,
            ),
            Err(e) => panic!(
                "chaos {} failed with seed {seed} after {mutations} mutations \
                 (rerun: K8S_DISC_CHAOS_SEEDS={seed} K8S_DISC_CHAOS_MUTATIONS={mutations} \
                 cargo test --test chaos {} -- --nocapture)\n{e}",
                v.name,
                v.name.replace('-', "_"),
            ),
        }
    }
}

#[test]
fn endpoints() {
    chaos(&Variant {
        name: "endpoints",
        kind: Kind::Endpoints,
        // Paged lists (the slice variants use streaming lists).
        config: json!({"list_strategy": "list"}),
        scope: everything,
        // Short pages: every list spans several requests, each a chance for a fault or an expired token.
        tune: |o| o.max_page_size = Some(7),
        seeds: &[1],
    });
}

#[test]
fn endpoint_slices() {
    chaos(&Variant {
        name: "endpoint-slices",
        kind: Kind::EndpointSlice,
        config: json!({}),
        scope: everything,
        // A shorter watch history (some 410s from plain churn) and events split and merged across chunks. Not
        // much shorter: with a history under a list's duration the watcher could never catch up (each watch
        // 410s at once) and would rightly back off to its longest step.
        tune: |o| {
            o.max_page_size = Some(5);
            o.history = 2000;
            o.fuzz_chunks = true;
        },
        seeds: &[2],
    });
}

#[test]
fn endpoint_slices_namespace_match_and_labels() {
    chaos(&Variant {
        name: "endpoint-slices-namespace-match-and-labels",
        kind: Kind::EndpointSlice,
        config: json!({"namespace_selector": {"match": ["ns-[0-2]"]}, "label_selector": "tier!=hidden"}),
        scope: || Scope {
            namespace: Box::new(|ns| ["ns-0", "ns-1", "ns-2"].contains(&ns)),
            labels: Box::new(|l| l.get("tier").and_then(Value::as_str) != Some("hidden")),
        },
        tune: |o| {
            o.max_page_size = Some(6);
            o.bookmark_interval = Duration::from_millis(500);
        },
        seeds: &[3],
    });
}

#[test]
fn endpoints_namespace_equal() {
    chaos(&Variant {
        name: "endpoints-namespace-equal",
        kind: Kind::Endpoints,
        config: json!({"namespace_selector": {"equal": "ns-1"}, "list_strategy": "list"}),
        scope: || Scope {
            namespace: Box::new(|ns| ns == "ns-1"),
            labels: Box::new(|_| true),
        },
        tune: |o| {
            o.max_page_size = Some(3);
            o.history = 1000;
        },
        seeds: &[4],
    });
}

#[test]
fn truth_rules_for_slices() {
    // The independent rules themselves, on a hand-made case: duplicates across slices, a terminating copy
    // losing to a non-terminating one, the serving-terminating fallback, FQDN slices ignored.
    let slice = |name: &str, kind: &str, eps: Value, ports: Value| {
        json!({"metadata": {"namespace": "ns", "name": name,
                            "labels": {"kubernetes.io/service-name": "svc"}},
               "addressType": kind, "endpoints": eps, "ports": ports})
    };
    let objects = vec![
        slice(
            "svc-a",
            "IPv4",
            json!([{"addresses": ["10.0.0.2"], "conditions": {"ready": true, "terminating": true}},
                   {"addresses": ["10.0.0.10"]}]),
            json!([{"name": "http", "port": 80}, {"port": 7000}]),
        ),
        slice(
            "svc-b",
            "IPv4",
            json!([{"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                   {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}}]),
            json!([{"name": "grpc", "port": 9000}, {"name": "http", "port": 80}]),
        ),
        slice(
            "svc-c",
            "FQDN",
            json!([{"addresses": ["a.example"]}]),
            json!([{"name": "dns", "port": 53}]),
        ),
    ];
    let t = truth::slices(&objects, &everything());
    let n = |h: &str, p: u16| (h.to_string(), p);
    let want: Truth = BTreeMap::from([
        // 10.0.0.2 non-terminating (not ready) beats the ready terminating copy.
        ("ns/svc:http".to_string(), vec![n("10.0.0.10", 80)]),
        (
            "ns/svc:7000".to_string(),
            vec![n("10.0.0.10", 7000), n("10.0.0.2", 7000)],
        ),
        // No ready endpoint: the serving and terminating ones.
        ("ns/svc:grpc".to_string(), vec![n("10.0.0.3", 9000)]),
    ]);
    assert_eq!(t, want);
}
