//! The fake API server checked against the real one: one scripted scenario (creates, updates, deletes, paging with
//! `limit`, selectors, a streaming list, watches, a resourceVersion too old, errors) runs against both, and what the
//! engine serves and the shape of every response the client reads (status codes, `Status` bodies, list metadata,
//! watch event types) must agree, except for the differences `testkit/README.md` documents. With
//! `K8S_DISC_CAPTURE_CORPUS=DIR` the real server's responses are also written to DIR (the corpus under
//! `testkit/corpus/`). Skipped unless `K8S_DISC_REAL_APISERVER` names a running environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
#[macro_use]
mod real;

use k8s_fake_apiserver::{FakeApiServer, Options, Rbac, TlsOptions};
use real::{Kube, eventually_within};
use regex::Regex;
use serde_json::{Value, json};

/// Differences between the fake and kube-apiserver that testkit/README.md explains: (step, why it does not
/// matter to the client).
const KNOWN: &[(&str, &str)] = &[
    (
        "11-bad-continue",
        "the 400 BadRequest Status is the same; only the parser's wording in the message differs",
    ),
    (
        "16-delete-c",
        "a DELETE answers with the deleted object on the fake, a Success Status on kube-apiserver; the client \
         never deletes",
    ),
];

/// One server under test: a client for it, the namespace the scenario uses, and the engine's configuration.
struct Target {
    kube: Kube,
    ns: String,
    engine: Value,
    capture: Option<PathBuf>,
}

/// What one step saw, reduced to what a client depends on.
type Transcript = BTreeMap<String, Value>;

fn eps(ns: &str, name: &str, ips: &[&str], labels: Value) -> Value {
    let addrs: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    json!({"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"namespace": ns, "name": name, "labels": labels},
           "subsets": [{"addresses": addrs, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]})
}

/// Numbers (resourceVersions, counts in messages) and the namespace replaced, so both servers compare.
fn normalise_text(s: &str, ns: &str) -> String {
    let s = s.replace(ns, "NS");
    Regex::new(r"\d+")
        .unwrap()
        .replace_all(&s, "N")
        .into_owned()
}

/// The shape of a response body: a Status in full (text normalised), a list's metadata keys and item names, an
/// object's kind and name.
fn shape(body: &Value, ns: &str) -> Value {
    match body["kind"].as_str() {
        Some("Status") => json!({
            "kind": "Status", "apiVersion": body["apiVersion"], "status": body["status"],
            "reason": body["reason"], "code": body["code"],
            "message": normalise_text(body["message"].as_str().unwrap_or_default(), ns),
            "details": body.get("details").map(|d| {
                let mut keys: Vec<&String> = d.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                keys.sort();
                json!(keys)
            }),
        }),
        Some(k) if k.ends_with("List") => {
            let md = body["metadata"].as_object().cloned().unwrap_or_default();
            let mut keys: Vec<String> = md.keys().cloned().collect();
            keys.sort();
            let items = body["items"].as_array().cloned().unwrap_or_default();
            json!({
                "kind": k, "apiVersion": body["apiVersion"], "metadata_keys": keys,
                "remainingItemCount": md.get("remainingItemCount"),
                "items": items.iter().map(|i| i["metadata"]["name"].clone()).collect::<Vec<_>>(),
                "items_carry_kind": items.iter().any(|i| i.get("kind").is_some()),
            })
        }
        Some(k) => {
            json!({"kind": k, "apiVersion": body["apiVersion"], "name": body["metadata"]["name"]})
        }
        None => json!({"not_json_kind": true}),
    }
}

/// A watch event reduced to its type and the name of its object (a bookmark: whether it ends initial events).
fn event_shape(ev: &Value, ns: &str) -> Value {
    let t = ev["type"].as_str().unwrap_or_default();
    match t {
        "BOOKMARK" => {
            let end =
                ev["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true";
            json!(if end {
                "BOOKMARK initial-events-end"
            } else {
                "BOOKMARK"
            })
        }
        "ERROR" => json!({"ERROR": shape(&ev["object"], ns)}),
        _ => json!(format!(
            "{t} {}",
            ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
        )),
    }
}

impl Target {
    fn save(&self, step: &str, body: &str) {
        if let Some(dir) = &self.capture {
            let text = body.replace(&self.ns, "corpus");
            // A watch's lines are JSON Lines; every other body is one JSON document.
            let ext = if text.trim_end().contains('\n') {
                "jsonl"
            } else {
                "json"
            };
            std::fs::write(dir.join(format!("{step}.{ext}")), text).unwrap();
        }
    }

    fn call(
        &self,
        t: &mut Transcript,
        step: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let path = path.replace("NS", &self.ns);
        let r = self.kube.request(
            method,
            &path,
            body.map(|b| ("application/json", b.to_string())),
        );
        self.save(step, &r.body);
        let parsed: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        t.insert(
            step.to_string(),
            json!({"status": r.status, "body": shape(&parsed, &self.ns),
                   "warning": r.header("warning").is_some()}),
        );
        parsed
    }

    /// A watch until `n` events (or `secs`), as event shapes.
    fn watch(&self, t: &mut Transcript, step: &str, path: &str, n: usize, secs: u64) {
        let path = path.replace("NS", &self.ns);
        let (status, mut lines) = self.kube.watch(&path, secs, |l| l.len() >= n);
        lines.truncate(n);
        if self.capture.is_some() {
            let text: Vec<&str> = lines.iter().map(|(raw, _)| raw.as_str()).collect();
            self.save(step, &(text.join("\n") + "\n"));
        }
        let events: Vec<Value> = lines
            .iter()
            .map(|(_, e)| event_shape(e, &self.ns))
            .collect();
        t.insert(
            step.to_string(),
            json!({"status": status, "events": events}),
        );
    }
}

fn rv_of(list: &Value) -> String {
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The scenario; every step's result goes into the transcript under its name.
fn scenario(s: &Target) -> Transcript {
    let mut t = Transcript::new();
    let ep = "/api/v1/namespaces/NS/endpoints";
    let x = json!({"app": "x"});
    s.call(
        &mut t,
        "01-create-a",
        "PUT",
        &format!("{ep}/a"),
        Some(eps(&s.ns, "a", &["10.40.0.1"], x.clone())),
    );
    s.call(
        &mut t,
        "02-create-b",
        "PUT",
        &format!("{ep}/b"),
        Some(eps(&s.ns, "b", &["10.40.0.2"], x.clone())),
    );
    s.call(
        &mut t,
        "03-create-c",
        "POST",
        ep,
        Some(eps(&s.ns, "c", &["10.40.0.3"], json!({"app": "y"}))),
    );
    s.call(
        &mut t,
        "04-create-c-again",
        "POST",
        ep,
        Some(eps(&s.ns, "c", &["10.40.0.3"], json!({"app": "y"}))),
    );
    let page1 = s.call(
        &mut t,
        "05-list-page-1",
        "GET",
        &format!("{ep}?limit=2"),
        None,
    );
    let token = page1["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    s.call(
        &mut t,
        "06-list-page-2",
        "GET",
        &format!("{ep}?limit=2&continue={token}"),
        None,
    );
    let listed = s.call(
        &mut t,
        "07-list-label-selector",
        "GET",
        &format!("{ep}?labelSelector=app%3Dx"),
        None,
    );
    s.call(
        &mut t,
        "08-list-field-selector",
        "GET",
        &format!("{ep}?fieldSelector=metadata.name%3Dc"),
        None,
    );
    s.call(
        &mut t,
        "09-list-bad-field-selector",
        "GET",
        &format!("{ep}?fieldSelector=spec.x%3D1"),
        None,
    );
    s.call(&mut t, "10-get-missing", "GET", &format!("{ep}/nope"), None);
    s.call(
        &mut t,
        "11-bad-continue",
        "GET",
        &format!("{ep}?limit=2&continue=bm90LWEtdG9rZW4"),
        None,
    );
    s.watch(
        &mut t,
        "12-streaming-list",
        &format!("{ep}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"),
        4,
        20,
    );
    s.watch(
        &mut t,
        "13-streaming-list-without-match",
        &format!("{ep}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"),
        1,
        10,
    );
    let rv = rv_of(&listed);
    // Changes after the labelled list: an update, an object leaving the selector, a delete.
    s.call(
        &mut t,
        "14-update-a",
        "PUT",
        &format!("{ep}/a"),
        Some(eps(&s.ns, "a", &["10.40.0.9"], x.clone())),
    );
    s.call(
        &mut t,
        "15-relabel-b",
        "PUT",
        &format!("{ep}/b"),
        Some(eps(&s.ns, "b", &["10.40.0.2"], json!({"app": "z"}))),
    );
    s.call(&mut t, "16-delete-c", "DELETE", &format!("{ep}/c"), None);
    s.call(
        &mut t,
        "17-delete-c-again",
        "DELETE",
        &format!("{ep}/c"),
        None,
    );
    s.watch(
        &mut t,
        "18-watch-from-list",
        &format!("{ep}?watch=1&resourceVersion={rv}"),
        3,
        20,
    );
    s.watch(
        &mut t,
        "19-watch-selector-from-list",
        &format!("{ep}?watch=1&labelSelector=app%3Dx&resourceVersion={rv}"),
        2,
        20,
    );
    s.call(&mut t, "21-list-after", "GET", ep, None);
    t
}

/// A request with a token the server does not know, and one by a user without permission (`deny` switches the
/// fake's RBAC on and off), with the user's name left out of the comparison.
fn refused(
    t: &mut Transcript,
    target: &Target,
    unknown: Kube,
    unprivileged: Kube,
    user: &str,
    deny: impl Fn(bool),
) {
    let path = format!("/api/v1/namespaces/{}/endpoints", target.ns);
    for (step, kube) in [
        ("22-unauthorized", &unknown),
        ("23-forbidden", &unprivileged),
    ] {
        deny(true);
        let r = kube.request("GET", &path, None);
        deny(false);
        target.save(step, &r.body);
        let body: Value =
            serde_json::from_str(&r.body.replace(user, "USER")).unwrap_or(Value::Null);
        t.insert(
            step.into(),
            json!({"status": r.status, "body": shape(&body, &target.ns)}),
        );
    }
}

/// A watch from a resourceVersion the server no longer has: on the fake after a compaction, on kube-apiserver from
/// before a restart of its watch cache (the realistic source of a 410).
fn too_old(t: &mut Transcript, target: &Target, expire: impl FnOnce()) {
    let ep = "/api/v1/namespaces/NS/endpoints";
    let listed = target.call(t, "20-list-before-expiry", "GET", ep, None);
    expire();
    target.call(
        t,
        "20-write-after-expiry",
        "PUT",
        &format!("{ep}/d"),
        Some(eps(&target.ns, "d", &["10.40.0.4"], json!({}))),
    );
    target.watch(
        t,
        "20-watch-too-old",
        &format!("{ep}?watch=1&resourceVersion={}", rv_of(&listed)),
        1,
        20,
    );
}

fn fake_target(dir: &Path) -> (FakeApiServer, Target) {
    let fake = FakeApiServer::start(Options {
        token: Some("diff-token".into()),
        tls: Some(TlsOptions {
            dir: dir.join("pki"),
            require_client_cert: false,
        }),
        endpoints_warning: true,
        ..Options::default()
    })
    .expect("fake API server starts");
    let ca = fake.tls_dir().unwrap().join("ca.crt");
    let port = fake.addr().port();
    let target = Target {
        kube: Kube::new(&format!("https://127.0.0.1:{port}"), &ca, "diff-token"),
        ns: "diff".into(),
        engine: json!({"service": {"schema": "https", "host": "127.0.0.1", "port": port.to_string()},
                       "client": {"token": "diff-token", "ca_file": ca}, "shared_size": "1m",
                       "namespace_selector": {"equal": "diff"}}),
        capture: None,
    };
    (fake, target)
}

#[test]
fn the_fake_answers_the_scenario_as_kube_apiserver_does() {
    let env = real_env!();
    let dir = real::tempdir("differential");
    let (fake_server, fake) = fake_target(&dir);
    let admin = env.admin();
    let ns = admin.namespace("diff");
    let capture = std::env::var_os("K8S_DISC_CAPTURE_CORPUS").map(PathBuf::from);
    if let Some(c) = &capture {
        std::fs::create_dir_all(c).unwrap();
    }
    let real = Target {
        kube: admin,
        engine: env.config(json!({"namespace_selector": {"equal": ns}, "shared_size": "1m"})),
        ns,
        capture,
    };

    // The engine on each, started before the scenario: it follows every change.
    let engines: Vec<_> = [&fake, &real]
        .iter()
        .map(|t| common::start_instance(&t.engine.to_string()))
        .collect();
    let mut on_fake = scenario(&fake);
    let mut on_real = scenario(&real);
    // As on a real cluster, other writes happen before the history goes.
    too_old(&mut on_fake, &fake, || {
        fake_server.apply(eps("elsewhere", "x", &["10.40.1.1"], json!({})));
        fake_server.compact();
    });
    let fake_url = format!("https://127.0.0.1:{}", fake_server.addr().port());
    let fake_ca = fake_server.tls_dir().unwrap().join("ca.crt");
    refused(
        &mut on_fake,
        &fake,
        Kube::new(&fake_url, &fake_ca, "wrong-token"),
        Kube::new(&fake_url, &fake_ca, "diff-token"),
        "system:serviceaccount:default:k8s-disc",
        |on| {
            fake_server.set_rbac(if on {
                Rbac {
                    deny: vec!["list".into(), "watch".into()],
                    users: vec![],
                }
            } else {
                Rbac::default()
            })
        },
    );
    refused(
        &mut on_real,
        &real,
        Kube::new(&env.server, &env.ca, "wrong-token"),
        Kube::new(&env.server, &env.ca, &env.reader_token),
        "reader",
        |_| {},
    );
    // The 410 needs an API server of its own to restart; the client for it shares the real target's namespace.
    let own = env.own_apiserver("diff", &[]);
    let via_own = Target {
        kube: Kube::new(
            &format!("https://127.0.0.1:{}", own.port),
            &env.ca,
            &env.admin_token,
        ),
        ns: real.ns.clone(),
        engine: Value::Null,
        capture: real.capture.clone(),
    };
    too_old(&mut on_real, &via_own, || own.restart());

    let mut unexplained = Vec::new();
    for (step, f) in &on_fake {
        let r = on_real.get(step).unwrap_or(&Value::Null);
        if f != r {
            let known = KNOWN.iter().any(|(s, _)| s == step);
            eprintln!(
                "{} {step}:\n  fake: {f}\n  real: {r}",
                if known { "known" } else { "DIFFERENT" }
            );
            if !known {
                unexplained.push(step.clone());
            }
        }
    }

    // What the engine serves from each.
    let served = |i: usize, ns: &str, name: &str| {
        common::nodes(&engines[i], &format!("{ns}/{name}:http"))
            .map(|n| n.into_iter().map(|n| n.host).collect::<Vec<_>>())
    };
    let want = |i: usize, ns: &str| {
        served(i, ns, "a") == Some(vec!["10.40.0.9".to_string()])
            && served(i, ns, "b") == Some(vec!["10.40.0.2".to_string()])
            && served(i, ns, "c").is_none()
            && served(i, ns, "d") == Some(vec!["10.40.0.4".to_string()])
    };
    eventually_within(60, "both engines serve the final state", || {
        want(0, &fake.ns) && want(1, &real.ns)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        unexplained.is_empty(),
        "differences not in testkit/README.md: {unexplained:?}"
    );
}
