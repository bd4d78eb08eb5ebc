//! The engine against a real kube-apiserver and etcd (`testenv/`): streaming and paged lists as the server serves
//! them, real 410s (a restarted API server's watch cache; an etcd compaction), bookmarks, a stopped server, RBAC,
//! TLS with the server's own certificates, token rotation, and EndpointSlice address types. Each test uses a
//! namespace of its own. Skipped, saying why, unless `K8S_DISC_REAL_APISERVER` names a running environment
//! (`scripts/test-real-apiserver.sh` sets it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;
#[macro_use]
mod real;

use common::{nodes, start_instance};
use k8s_disc::testing::{Instance, Metric, Node};
use real::{Env, endpoints, eventually_within, replace_file, slice, tempdir};
use serde_json::{Value, json};

fn start(conf: Value) -> Arc<Instance> {
    start_instance(&conf.to_string())
}

fn hosts(inst: &Instance, name: &str) -> Option<Vec<String>> {
    nodes(inst, name).map(|n| n.into_iter().map(|n| n.host).collect())
}

fn last_error(inst: &Instance) -> String {
    inst.clusters[0].region.status().last_error
}

fn metric(inst: &Instance, m: Metric) -> u64 {
    inst.clusters[0].region.metric(m)
}

fn node(ip: &str) -> Node {
    Node::new(ip, 80)
}

/// Asserts, on a thread of its own until dropped, that `name` is served with some nodes the whole time.
struct NeverEmpty {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Option<String>>>,
}

impl NeverEmpty {
    fn watch(inst: &Arc<Instance>, name: &str) -> NeverEmpty {
        let stop = Arc::new(AtomicBool::new(false));
        let (inst, name, s) = (inst.clone(), name.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match common::try_nodes(&inst, &name) {
                    Ok(Some(n)) if !n.is_empty() => {}
                    Err(e) if e == "busy" => {}
                    other => return Some(format!("{name} served {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        });
        NeverEmpty {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops watching; fails the test if `name` was ever not served.
    fn check(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(gap) = self.handle.take().unwrap().join().unwrap() {
            panic!("data lost meanwhile: {gap}");
        }
    }
}

/// Role (namespace) or ClusterRole granting what discovery needs on Endpoints and EndpointSlices, bound to `user`.
fn grant(env: &Env, ns: Option<&str>, name: &str, user: &str) {
    let kube = env.admin();
    let rules = json!([
        {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}
    ]);
    let subject = json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]);
    match ns {
        Some(ns) => {
            kube.apply(
                &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"namespace": ns, "name": name}, "rules": rules}),
            );
            kube.apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"namespace": ns, "name": name}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}}));
        }
        None => {
            kube.apply(
                &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name}, "rules": rules}),
            );
            kube.apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}}));
        }
    }
}

#[test]
fn the_server_serves_the_streaming_list_and_changes_follow_on_its_connection() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("stream");
    for (name, ip) in [("a", "10.20.0.1"), ("b", "10.20.0.2"), ("c", "10.20.0.3")] {
        kube.apply(&endpoints(&ns, name, &[ip]));
    }
    let inst = start(env.config(json!({"namespace_selector": {"equal": ns}})));
    eventually_within(60, "ready", || inst.ready());
    assert_eq!(
        nodes(&inst, &format!("{ns}/a:http")),
        Some(vec![node("10.20.0.1")])
    );
    assert_eq!(
        nodes(&inst, &format!("{ns}/c:http")),
        Some(vec![node("10.20.0.3")])
    );

    kube.apply(&endpoints(&ns, "a", &["10.20.0.9", "10.20.0.8"]));
    kube.delete(&endpoints(&ns, "b", &[]));
    kube.apply(&endpoints(&ns, "d", &["192.0.2.4"]));
    eventually_within(60, "changes applied", || {
        nodes(&inst, &format!("{ns}/a:http")) == Some(vec![node("10.20.0.8"), node("10.20.0.9")])
            && nodes(&inst, &format!("{ns}/b:http")).is_none()
            && nodes(&inst, &format!("{ns}/d:http")) == Some(vec![node("192.0.2.4")])
    });
    assert_eq!(metric(&inst, Metric::EventsModified), 1);
    assert_eq!(metric(&inst, Metric::EventsDeleted), 1);
    assert_eq!(metric(&inst, Metric::EventsAdded), 1);

    // What reached the server: one streaming list (a watch, from the latest state), served; no LIST at all.
    let path = format!("/api/v1/namespaces/{ns}/endpoints");
    let reqs = env.audit(&path);
    let lists: Vec<_> = reqs.iter().filter(|r| r.verb == "list").collect();
    assert!(lists.is_empty(), "no LIST: {lists:?}");
    let streams: Vec<_> = reqs
        .iter()
        .filter(|r| r.uri.contains("sendInitialEvents=true") && r.stage == "ResponseStarted")
        .collect();
    assert_eq!(streams.len(), 1, "{reqs:?}");
    assert_eq!(streams[0].verb, "watch");
    assert_eq!(streams[0].code, 200);
    assert!(
        streams[0].uri.contains("resourceVersionMatch=NotOlderThan"),
        "{}",
        streams[0].uri
    );
    assert!(
        streams[0].uri.contains("allowWatchBookmarks=true"),
        "{}",
        streams[0].uri
    );
    assert!(
        streams[0].uri.contains("resourceVersion=&")
            || streams[0].uri.ends_with("resourceVersion="),
        "a consistent first sync: {}",
        streams[0].uri
    );
    assert_eq!(
        metric(&inst, Metric::WatchStarts),
        1,
        "the list's connection is the watch"
    );
}

#[test]
fn list_strategy_watch_list_completes_only_on_the_servers_end_bookmark() {
    // watch_list never falls back to LIST: being ready proves the server sent k8s.io/initial-events-end.
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("watchlist");
    kube.apply(&slice(
        &ns,
        "web-1",
        "web",
        "IPv4",
        &["10.21.0.1", "10.21.0.2"],
    ));
    let inst = start(env.config(json!({
        "list_strategy": "watch_list", "watch_endpoint_slices": true, "namespace_selector": {"equal": ns}})));
    eventually_within(60, "ready", || inst.ready());
    assert_eq!(
        hosts(&inst, &format!("{ns}/web:http")),
        Some(vec!["10.21.0.1".into(), "10.21.0.2".into()])
    );
    let reqs: Vec<_> = env
        .audit(&format!(
            "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
        ))
        .into_iter()
        .filter(|r| r.verb != "patch")
        .collect();
    assert!(
        !reqs.is_empty() && reqs.iter().all(|r| r.verb == "watch"),
        "{reqs:?}"
    );
}

#[test]
fn list_strategy_list_pages_through_real_continue_tokens() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("paged");
    // More than one page of 500.
    for i in 0..620 {
        kube.apply(&endpoints(
            &ns,
            &format!("svc{i:04}"),
            &[&format!("10.22.{}.{}", i / 250, i % 250 + 1)],
        ));
    }
    let inst =
        start(env.config(json!({"list_strategy": "list", "namespace_selector": {"equal": ns}})));
    eventually_within(90, "ready", || inst.ready());
    for i in [0, 499, 500, 619] {
        assert_eq!(
            hosts(&inst, &format!("{ns}/svc{i:04}:http")),
            Some(vec![format!("10.22.{}.{}", i / 250, i % 250 + 1)]),
            "svc{i:04}"
        );
    }
    let lists: Vec<_> = env
        .audit(&format!("/api/v1/namespaces/{ns}/endpoints"))
        .into_iter()
        .filter(|r| r.verb == "list")
        .collect();
    assert_eq!(lists.len(), 2, "two pages: {lists:?}");
    assert!(lists[0].uri.contains("limit=500"), "{}", lists[0].uri);
    assert!(
        !lists[0].uri.contains("resourceVersion="),
        "a consistent read: {}",
        lists[0].uri
    );
    assert!(lists[1].uri.contains("continue="), "{}", lists[1].uri);
    assert!(lists.iter().all(|r| r.code == 200), "{lists:?}");
    kube.apply(&endpoints(&ns, "svc0000", &["192.0.2.1"]));
    eventually_within(60, "watch after the paged list", || {
        hosts(&inst, &format!("{ns}/svc0000:http")) == Some(vec!["192.0.2.1".into()])
    });
}

/// The resourceVersion a request asked for ("" when unset or empty).
fn rv_param(uri: &str) -> &str {
    uri.split("resourceVersion=")
        .nth(1)
        .map(|r| r.split('&').next().unwrap_or_default())
        .unwrap_or_default()
}

/// After a 410: the streaming lists to `ns` were all served, the relist with the resourceVersion semantics below,
/// and the watch that follows delivers a change of `ns/a` to `ip`.
fn relisted_by_stream_then_watching(
    env: &Env,
    kube: &real::Kube,
    inst: &Instance,
    ns: &str,
    ip: &str,
) {
    let streams = env.streaming_lists(&format!("/api/v1/namespaces/{ns}/endpoints"));
    assert!(
        streams.len() >= 2 && streams.iter().all(|r| r.code == 200),
        "{streams:?}"
    );
    assert_relist_semantics(&streams);
    kube.apply(&endpoints(ns, "a", &[ip]));
    eventually_within(60, "watching again", || {
        hosts(inst, &format!("{ns}/a:http")) == Some(vec![ip.to_string()])
    });
}

/// The first streaming list is a consistent read (resourceVersion ""); the relist after a watch's 410 asks for
/// a state not older than the one synced (resourceVersion=N with NotOlderThan), and the server serves it.
fn assert_relist_semantics(streams: &[real::Audit]) {
    assert_eq!(rv_param(&streams[0].uri), "", "{}", streams[0].uri);
    let relist = &streams[1];
    assert!(
        rv_param(&relist.uri).parse::<u64>().is_ok()
            && relist.uri.contains("resourceVersionMatch=NotOlderThan"),
        "{}",
        relist.uri
    );
    assert_eq!(relist.code, 200);
}

#[test]
fn a_restarted_api_server_answers_410_and_the_relist_keeps_serving() {
    let env = real_env!();
    let kube = env.admin();
    let own = env.own_apiserver("gone", &[]);
    let ns = kube.namespace("gone");
    kube.apply(&endpoints(&ns, "a", &["10.23.0.1"]));
    let inst = start(env.config_for(
        own.port,
        json!({"token": env.admin_token, "ca_file": env.ca}),
        json!({"namespace_selector": {"equal": ns}}),
    ));
    eventually_within(60, "ready", || inst.ready());
    eventually_within(60, "watching", || metric(&inst, Metric::WatchStarts) >= 1);
    let served = NeverEmpty::watch(&inst, &format!("{ns}/a:http"));
    // Writes the engine does not see while its API server is down (through the shared one, same etcd): the
    // restarted server's watch cache starts after them, so resuming from the old resourceVersion is too old.
    let own_for_restart = std::thread::scope(|s| {
        let h = s.spawn(|| own.restart());
        std::thread::sleep(Duration::from_millis(300));
        kube.apply(&endpoints(&ns, "a", &["10.23.0.2"]));
        kube.apply(&endpoints(&ns, "b", &["10.23.0.3"]));
        h.join()
    });
    own_for_restart.expect("restart");
    eventually_within(90, "relisted after the 410", || {
        metric(&inst, Metric::Relists) >= 1
            && hosts(&inst, &format!("{ns}/a:http")) == Some(vec!["10.23.0.2".into()])
            && hosts(&inst, &format!("{ns}/b:http")) == Some(vec!["10.23.0.3".into()])
    });
    served.check();
    assert!(inst.ready());
    // The relist is a streaming list not older than what was synced, which the new cache serves.
    relisted_by_stream_then_watching(&env, &kube, &inst, &ns, "10.23.0.4");
}

#[test]
fn without_the_watch_cache_an_etcd_compaction_answers_410_and_the_relist_keeps_serving() {
    let env = real_env!();
    let kube = env.admin();
    let own = env.own_apiserver(
        "nocache",
        &["--watch-cache-sizes=endpoints#0,endpointslices.discovery.k8s.io#0"],
    );
    let ns = kube.namespace("compact");
    let other = kube.namespace("compact-other");
    kube.apply(&endpoints(&ns, "a", &["10.24.0.1"]));
    // A short watch_idle_timeout makes the server end each watch within seconds, so the engine resumes soon.
    let inst = start(env.config_for(
        own.port,
        json!({"token": env.admin_token, "ca_file": env.ca}),
        json!({"namespace_selector": {"equal": ns}, "watch_idle_timeout": 10}),
    ));
    eventually_within(60, "ready", || inst.ready());
    let served = NeverEmpty::watch(&inst, &format!("{ns}/a:http"));
    // Writes elsewhere move etcd past the engine's resourceVersion; the compaction then drops it.
    kube.apply(&endpoints(&other, "x", &["10.24.1.1"]));
    kube.apply(&endpoints(&other, "x", &["10.24.1.2"]));
    env.compact_etcd();
    eventually_within(90, "relisted after the 410", || {
        metric(&inst, Metric::Relists) >= 1
    });
    served.check();
    let watches: Vec<_> = env
        .audit(&format!("/api/v1/namespaces/{ns}/endpoints"))
        .into_iter()
        .filter(|r| {
            r.verb == "watch"
                && r.stage == "ResponseStarted"
                && !r.uri.contains("sendInitialEvents")
        })
        .collect();
    assert!(!watches.is_empty(), "resumed at least once before the 410");
    relisted_by_stream_then_watching(&env, &kube, &inst, &ns, "10.24.0.2");
}

#[test]
fn bookmarks_arrive_before_the_watch_deadline_and_keep_a_quiet_watch_current() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("bookmarks");
    kube.apply(&endpoints(&ns, "a", &["10.25.0.1"]));
    let other = kube.namespace("bookmarks-other");
    // watch_idle_timeout 10: each watch asks for timeoutSeconds of 5..7. The watch cache sends a bookmark 2 s
    // before that deadline, but only when its resourceVersion has moved past what the watch has seen: changes
    // in another namespace move it while this namespace stays quiet.
    let inst =
        start(env.config(json!({"namespace_selector": {"equal": ns}, "watch_idle_timeout": 10})));
    eventually_within(60, "ready", || inst.ready());
    let mut i = 0;
    eventually_within(90, "two bookmarks and a resumed watch", || {
        i += 1;
        if i % 20 == 0 {
            kube.apply(&endpoints(
                &other,
                "x",
                &[&format!("10.25.1.{}", i / 20 % 250 + 1)],
            ));
        }
        metric(&inst, Metric::Bookmarks) >= 2 && metric(&inst, Metric::WatchStarts) >= 3
    });
    assert_eq!(metric(&inst, Metric::Relists), 0);
    assert_eq!(
        metric(&inst, Metric::WatchErrors),
        0,
        "{}",
        last_error(&inst)
    );
    let resumed: Vec<_> = env
        .audit(&format!("/api/v1/namespaces/{ns}/endpoints"))
        .into_iter()
        .filter(|r| {
            r.verb == "watch"
                && r.stage == "ResponseStarted"
                && !r.uri.contains("sendInitialEvents")
        })
        .collect();
    assert!(resumed.len() >= 2, "{resumed:?}");
    for r in &resumed {
        assert!(
            r.uri.contains("allowWatchBookmarks=true") && r.uri.contains("timeoutSeconds="),
            "{}",
            r.uri
        );
    }
    // Each bookmark moved the resume point along, though nothing changed in this namespace.
    let rv = |uri: &str| -> u64 {
        uri.split("resourceVersion=")
            .nth(1)
            .and_then(|r| r.split('&').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (first, last) = (rv(&resumed[0].uri), rv(&resumed[resumed.len() - 1].uri));
    assert!(last > first, "resumed from {first}, later from {last}");
    assert!(inst.ready());
}

#[test]
fn a_stopped_server_is_dropped_after_watch_idle_timeout_and_the_data_stays() {
    let env = real_env!();
    let kube = env.admin();
    let own = env.own_apiserver("stopped", &[]);
    let ns = kube.namespace("stopped");
    kube.apply(&endpoints(&ns, "a", &["10.26.0.1"]));
    let inst = start(env.config_for(
        own.port,
        json!({"token": env.admin_token, "ca_file": env.ca}),
        json!({"namespace_selector": {"equal": ns}, "watch_idle_timeout": 10}),
    ));
    eventually_within(60, "ready", || inst.ready());
    eventually_within(60, "watching", || metric(&inst, Metric::WatchStarts) >= 1);
    let served = NeverEmpty::watch(&inst, &format!("{ns}/a:http"));
    own.signal("STOP");
    let errors = metric(&inst, Metric::WatchErrors);
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually_within(60, "the silent watch dropped", || {
            metric(&inst, Metric::WatchErrors) > errors
        })
    }));
    own.signal("CONT");
    if let Err(e) = dropped {
        std::panic::resume_unwind(e);
    }
    let e = last_error(&inst);
    assert!(!e.is_empty(), "the failure is reported");
    kube.apply(&endpoints(&ns, "a", &["10.26.0.2"]));
    eventually_within(90, "recovered once the server answers", || {
        hosts(&inst, &format!("{ns}/a:http")) == Some(vec!["10.26.0.2".into()])
    });
    served.check();
}

#[test]
fn forbidden_by_rbac_reports_the_servers_message_and_a_role_alone_recovers_one_namespace() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("rbac-role");
    kube.apply(&endpoints(&ns, "a", &["10.27.0.1"]));
    let inst = start(env.config_for(
        env.port,
        json!({"token": env.reader_token, "ca_file": env.ca}),
        json!({"namespace_selector": {"equal": ns}}),
    ));
    // The streaming list is a watch: an authorization refusal, retried (not a reason to fall back to LIST).
    let want = format!(
        "HTTP 403 Forbidden: endpoints is forbidden: User \"reader\" cannot watch resource \"endpoints\" in API \
         group \"\" in the namespace \"{ns}\""
    );
    eventually_within(60, "403 reported", || last_error(&inst).contains(&want));
    assert!(!inst.ready());
    // Backed off: a handful of attempts, not a loop.
    std::thread::sleep(Duration::from_secs(4));
    let path = format!("/api/v1/namespaces/{ns}/endpoints");
    let refused = env.audit(&path).iter().filter(|r| r.code == 403).count();
    assert!(
        (1..=6).contains(&refused),
        "{refused} refused attempts in ~5 s"
    );
    grant(&env, Some(&ns), "k8s-disc", "reader");
    eventually_within(90, "recovered without a restart", || inst.ready());
    assert_eq!(
        hosts(&inst, &format!("{ns}/a:http")),
        Some(vec!["10.27.0.1".into()])
    );
    kube.apply(&endpoints(&ns, "a", &["10.27.0.2"]));
    eventually_within(60, "watching under the Role", || {
        hosts(&inst, &format!("{ns}/a:http")) == Some(vec!["10.27.0.2".into()])
    });
    // Still streaming lists: no LIST was ever sent.
    let reqs = env.audit(&path);
    assert!(
        reqs.iter().all(|r| r.verb == "watch" || r.user == "admin"),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r.uri.contains("sendInitialEvents=true")
            && r.code == 200
            && r.user == "reader"),
        "{reqs:?}"
    );
}

/// The ClusterRole and ClusterRoleBinding that give user `reader2` discovery everywhere.
const CLUSTER_GRANT: &str = "k8s-disc-reader2";

fn revoke_cluster_grant(env: &Env) {
    let kube = env.admin();
    for kind in ["clusterrolebindings", "clusterroles"] {
        let r = kube.request(
            "DELETE",
            &format!("/apis/rbac.authorization.k8s.io/v1/{kind}/{CLUSTER_GRANT}"),
            None,
        );
        assert!(
            matches!(r.status, 200 | 404),
            "delete {kind}: HTTP {} {}",
            r.status,
            r.body
        );
    }
}

#[test]
fn forbidden_at_the_cluster_scope_recovers_after_a_cluster_role() {
    let env = real_env!();
    let kube = env.admin();
    // A grant left by an earlier run against the same environment would hide the 403.
    revoke_cluster_grant(&env);
    let ns = kube.namespace("rbac-cluster");
    kube.apply(&slice(&ns, "web-1", "web", "IPv4", &["10.28.0.1"]));
    let inst = start(env.config_for(
        env.port,
        json!({"token": env.reader2_token, "ca_file": env.ca}),
        json!({"watch_endpoint_slices": true}),
    ));
    let want = "HTTP 403 Forbidden: endpointslices.discovery.k8s.io is forbidden: User \"reader2\" cannot watch \
                resource \"endpointslices\" in API group \"discovery.k8s.io\" at the cluster scope";
    eventually_within(60, "403 reported", || last_error(&inst).contains(want));
    grant(&env, None, CLUSTER_GRANT, "reader2");
    eventually_within(90, "recovered without a restart", || inst.ready());
    assert_eq!(
        hosts(&inst, &format!("{ns}/web:http")),
        Some(vec!["10.28.0.1".into()])
    );
    revoke_cluster_grant(&env);
}

#[test]
fn a_kubeconfig_with_the_servers_ca_works() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("kubeconfig");
    kube.apply(&endpoints(&ns, "a", &["10.29.0.1"]));
    let inst = start(json!({"kubeconfig": env.kubeconfig, "shared_size": "4m",
                            "namespace_selector": {"equal": ns}}));
    eventually_within(60, "ready", || inst.ready());
    assert_eq!(
        hosts(&inst, &format!("{ns}/a:http")),
        Some(vec!["10.29.0.1".into()])
    );
}

#[test]
fn a_wrong_ca_or_a_name_the_certificate_lacks_fails_with_the_reason() {
    let env = real_env!();
    let wrong = start(env.config_for(
        env.port,
        json!({"token": env.admin_token, "ca_file": env.client_ca}),
        json!({}),
    ));
    eventually_within(60, "unknown issuer reported", || {
        last_error(&wrong).contains("unknown issuer")
    });
    let e = last_error(&wrong);
    assert!(e.contains("set client.ca_file"), "{e}");
    assert!(e.contains("client-ca.crt"), "names the CA in use: {e}");
    // kube-apiserver's self-signed certificate for 127.0.0.1 names only that address: no "localhost".
    let mut conf = env.config(json!({}));
    conf["service"]["host"] = json!("localhost");
    let by_name = start(conf);
    eventually_within(60, "name mismatch reported", || {
        last_error(&by_name).contains("does not name localhost")
    });
    let e = last_error(&by_name);
    assert!(e.contains("service.host must match"), "{e}");
    assert!(e.contains("127.0.0.1"), "lists the names it has: {e}");
}

#[test]
fn a_client_certificate_signed_by_the_servers_client_ca_authenticates() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("client-cert");
    kube.apply(&endpoints(&ns, "a", &["10.30.0.1"]));
    grant(&env, Some(&ns), "k8s-disc-client", "k8s-disc-client");
    let inst = start(env.config_for(
        env.port,
        json!({"cert_file": env.client_crt, "key_file": env.client_key, "ca_file": env.ca}),
        json!({"namespace_selector": {"equal": ns}}),
    ));
    eventually_within(60, "ready", || inst.ready());
    assert_eq!(
        hosts(&inst, &format!("{ns}/a:http")),
        Some(vec!["10.30.0.1".into()])
    );
    let reqs = env.audit(&format!("/api/v1/namespaces/{ns}/endpoints"));
    assert!(
        reqs.iter()
            .any(|r| r.user == "k8s-disc-client" && r.code == 200),
        "{reqs:?}"
    );
}

#[test]
fn a_token_file_rotated_mid_watch_is_used_by_the_next_request() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("rotation");
    kube.apply(&endpoints(&ns, "a", &["10.31.0.1"]));
    let dir = tempdir("rotation");
    let token = dir.join("token");
    std::fs::write(&token, &env.admin_token).unwrap();
    let inst = start(env.config_for(
        env.port,
        json!({"token_file": token, "ca_file": env.ca}),
        json!({"namespace_selector": {"equal": ns}, "watch_idle_timeout": 10}),
    ));
    eventually_within(60, "ready", || inst.ready());
    replace_file(&token, env.admin2_token.as_bytes());
    let path = format!("/api/v1/namespaces/{ns}/endpoints");
    eventually_within(60, "a watch as the new token's user", || {
        env.audit(&path)
            .iter()
            .any(|r| r.user == "admin2" && r.verb == "watch" && r.code == 200)
    });
    kube.apply(&endpoints(&ns, "a", &["10.31.0.2"]));
    eventually_within(60, "watching with the new token", || {
        hosts(&inst, &format!("{ns}/a:http")) == Some(vec!["10.31.0.2".into()])
    });
    assert!(env.audit(&path).iter().all(|r| r.code != 401));
}

#[test]
fn an_invalid_token_gets_401_and_recovers_once_the_file_is_fixed() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("unauthorized");
    kube.apply(&endpoints(&ns, "a", &["10.32.0.1"]));
    let dir = tempdir("unauthorized");
    let token = dir.join("token");
    std::fs::write(&token, "not-a-valid-token").unwrap();
    let inst = start(env.config_for(
        env.port,
        json!({"token_file": token, "ca_file": env.ca}),
        json!({"namespace_selector": {"equal": ns}}),
    ));
    eventually_within(60, "401 reported", || {
        last_error(&inst).contains("HTTP 401 Unauthorized: Unauthorized")
    });
    replace_file(&token, env.admin_token.as_bytes());
    eventually_within(90, "recovered with the fixed token", || inst.ready());
    assert_eq!(
        hosts(&inst, &format!("{ns}/a:http")),
        Some(vec!["10.32.0.1".into()])
    );
}

#[test]
fn endpoint_slices_ipv6_are_served_and_fqdn_ones_are_left_out() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("slices");
    kube.apply(&slice(&ns, "web-v4", "web", "IPv4", &["10.33.0.1"]));
    kube.apply(&slice(
        &ns,
        "web-v6",
        "web",
        "IPv6",
        &["2001:db8::1", "2001:db8::2"],
    ));
    kube.apply(&slice(
        &ns,
        "web-fqdn",
        "web",
        "FQDN",
        &["backend.example.com"],
    ));
    kube.apply(&slice(&ns, "ext-fqdn", "ext", "FQDN", &["ext.example.com"]));
    let inst = start(
        env.config(json!({"watch_endpoint_slices": true, "namespace_selector": {"equal": ns}})),
    );
    eventually_within(60, "ready", || inst.ready());
    let mut got = hosts(&inst, &format!("{ns}/web:http")).unwrap();
    got.sort();
    assert_eq!(got, ["10.33.0.1", "2001:db8::1", "2001:db8::2"]);
    assert!(
        nodes(&inst, &format!("{ns}/ext:http"))
            .unwrap_or_default()
            .is_empty(),
        "an FQDN slice gives no nodes"
    );
    kube.delete(&slice(&ns, "web-v6", "web", "IPv6", &[]));
    eventually_within(60, "IPv6 slice deleted", || {
        hosts(&inst, &format!("{ns}/web:http")) == Some(vec!["10.33.0.1".into()])
    });
}

#[test]
fn the_endpoints_deprecation_warning_is_sent_and_changes_nothing() {
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("warning");
    kube.apply(&endpoints(&ns, "a", &["10.34.0.1"]));
    let r = kube.get(&format!("/api/v1/namespaces/{ns}/endpoints"));
    assert_eq!(r.status, 200);
    let warning = r.header("warning").unwrap_or_default();
    assert!(
        warning.contains("v1 Endpoints is deprecated"),
        "{:?}",
        r.headers
    );
    let inst = start(env.config(json!({"namespace_selector": {"equal": ns}})));
    eventually_within(60, "ready", || inst.ready());
    assert_eq!(
        hosts(&inst, &format!("{ns}/a:http")),
        Some(vec!["10.34.0.1".into()])
    );
    assert_eq!(last_error(&inst), "");
}

#[test]
fn the_server_refuses_loopback_endpoints_and_unknown_namespaces() {
    // Facts the fake does not enforce (testkit/README.md): the test fixtures must avoid both.
    let env = real_env!();
    let kube = env.admin();
    let ns = kube.namespace("validation");
    let r = kube.try_apply(&endpoints(&ns, "lo", &["127.0.0.1"]));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("may not be in the loopback range"),
        "{}",
        r.body
    );
    let r = kube.try_apply(&endpoints(
        "no-such-namespace-k8s-disc",
        "a",
        &["10.35.0.1"],
    ));
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.body
            .contains("namespaces \\\"no-such-namespace-k8s-disc\\\" not found"),
        "{}",
        r.body
    );
}
