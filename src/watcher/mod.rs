//! Runs one cluster's list/watch: the I/O of each step the state machine in `sync_state` decides (a streaming
//! list that turns into the watch, or every page of a LIST, into a view that is then published; watch and apply
//! events; wait out a back-off), and the supervision around it (claiming the region, stopping when a newer
//! watcher takes over). The steps live beside it: `list` (paged LISTs), `stream` (the streaming list) and `watch`
//! (watching and applying events).

mod list;
mod stream;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::client::{ApiClient, ApiError};
use crate::config::{ClusterConfig, ListStrategy, Scheme};
use crate::instance::Cluster;
use crate::log::{escape_server_text, log_at};
use crate::model::Resource;
use crate::publish::Publisher;
use crate::selector::NamespaceSelector;
use crate::store::{Metric, StoreError, SyncState, Writer};
use crate::sync_state::{Machine, Outcome, State};
use crate::view::View;

/// Room for a watch event's envelope (`{"type":...,"object":...}`) beyond its object's `max_object_size`.
const EVENT_ENVELOPE_BYTES: usize = 64 << 10;
/// How often a watcher checks that it still owns its region (a newer watcher takes over after a reload).
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// How a watch ended, with what the log needs.
enum Ended {
    /// The server ended the watch normally.
    Clean,
    /// 410: relist.
    Gone(String),
    Failed(ApiError),
}

struct Watcher {
    client: Arc<ApiClient>,
    resource: Resource,
    namespace: Option<String>,
    field_selector: Option<String>,
    label_selector: Option<String>,
    selector: Option<NamespaceSelector>,
    /// How slice nodes are prioritised by zone (every view this watcher builds).
    topology: crate::topology::Topology,
    label: String,
    machine: Machine,
    strategy: ListStrategy,
    /// Silence after which a watch is presumed dead (`watch_idle_timeout`).
    idle_timeout: Duration,
    /// Deadline for one whole list (`list_timeout`).
    list_timeout: Duration,
    /// Objects (and watch events) larger than this are skipped (`max_object_size`).
    max_object_size: usize,
    /// The state last shown in the region's status.
    shown: Option<SyncState>,
    /// The latest resourceVersion the running watch reached.
    rv: String,
    view: View,
}

/// Runs one cluster until another watcher takes its region over. `generation` is that of the configuration this
/// watcher was started from; a watcher of a newer one always wins the region.
pub async fn run(cluster: Arc<Cluster>, generation: u32) {
    let label = cluster.label();
    warn_about_insecure_settings(&cluster.config, &label);
    let client = loop {
        match ApiClient::new(&cluster.config, &label) {
            Ok(c) => break Arc::new(c),
            Err(e) => {
                log_at!(
                    Error,
                    "{label}: cannot set up the API client: {e}; retrying in 30s"
                );
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    };
    let cfg = &cluster.config;
    let selector = cfg.namespace_selector.clone();
    loop {
        let mut waiting_since: Option<std::time::Instant> = None;
        let mut last_warning: Option<std::time::Instant> = None;
        let writer = loop {
            match Writer::claim(&cluster.region, generation) {
                Ok(w) => break w,
                Err(StoreError::Superseded) => {
                    log_at!(
                        Info,
                        "{label}: a watcher of a newer configuration owns the region; not starting"
                    );
                    return;
                }
                Err(StoreError::Locked) => {
                    // Another live process is inside a batch. Say so when that lasts, and keep waiting: the
                    // region is this watcher's once the holder finishes or dies.
                    let since = *waiting_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= crate::store::LOCK_WAIT
                        && last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        log_at!(
                            Warn,
                            "{label}: shared memory region locked by process {} for {}s; waiting to take it over",
                            cluster.region.lock_holder_pid(),
                            since.elapsed().as_secs()
                        );
                        last_warning = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => {
                    log_at!(Error, "{label}: {e}");
                    return;
                }
            }
        };
        let mut w = Watcher {
            client: client.clone(),
            resource: if cfg.watch_endpoint_slices {
                Resource::EndpointSlices
            } else {
                Resource::Endpoints
            },
            namespace: selector
                .as_ref()
                .and_then(|s| s.namespace_scope())
                .map(str::to_string),
            field_selector: selector.as_ref().and_then(|s| s.field_selector()),
            label_selector: cfg.label_selector.clone(),
            view: View::new(selector.clone(), cfg.topology.clone()),
            topology: cfg.topology.clone(),
            selector: selector.clone(),
            label: label.clone(),
            machine: Machine::new(Backoff::new(), cfg.list_strategy),
            strategy: cfg.list_strategy,
            idle_timeout: cfg.watch_idle_timeout,
            list_timeout: cfg.list_timeout,
            max_object_size: cfg.max_object_size,
            shown: None,
            rv: String::new(),
        };
        let mut publisher = Publisher::new(&cluster.region, writer, label.clone());
        log_at!(
            Info,
            "{label}: watcher started in process {}",
            std::process::id()
        );
        if let Some(w) = cfg.topology.warning() {
            log_at!(Warn, "{label}: {w}");
        }
        match w.run(&mut publisher).await {
            Err(StoreError::Superseded) => {
                log_at!(Info, "{label}: another watcher took over; this one stops");
                return;
            }
            // A previous writer held the region for unusually long; claim it again and relist.
            Err(StoreError::Locked) => {
                log_at!(
                    Warn,
                    "{label}: shared memory region busy; restarting the watcher"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                log_at!(Error, "{label}: watcher stopped: {e}");
                return;
            }
            Ok(()) => return,
        }
    }
}

/// Warnings logged once when a watcher starts, for settings that expose the credentials.
fn warn_about_insecure_settings(cfg: &ClusterConfig, label: &str) {
    for w in insecure_settings(cfg) {
        log_at!(Warn, "{label}: {w}");
    }
}

/// Settings that expose the credentials: unverified TLS, and a token over plain http beyond this host.
pub fn insecure_settings(cfg: &ClusterConfig) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.scheme == Scheme::Https && !cfg.ssl_verify {
        let setting = if cfg.kubeconfig.is_some() {
            "the kubeconfig's insecure-skip-tls-verify"
        } else {
            "service.ssl_verify: false"
        };
        out.push(format!(
            "{setting}: the API server's certificate is not verified, so anyone on the network path can \
             impersonate it{}",
            if cfg.has_token() {
                " and receive the token"
            } else {
                ""
            }
        ));
    }
    if cfg.scheme == Scheme::Http && cfg.has_token() && !is_loopback(&cfg.host) {
        out.push(format!(
            "the bearer token is sent over plain http to {}: anyone on the network path can read it; use https",
            cfg.host
        ));
    }
    out
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Watcher {
    /// Events of a type this client does not know are skipped (a newer server may send new kinds of event).
    fn log_unknown_event_type(&self, kind: &str) {
        log_at!(
            Warn,
            "{}: ignoring watch event of unknown type \"{}\"",
            self.label,
            escape_server_text(kind, 64)
        );
    }

    /// Performs the step the state machine asks for, feeds back what it produced, and repeats until the region
    /// is lost to another watcher.
    async fn run(&mut self, p: &mut Publisher<'_>) -> Result<(), StoreError> {
        loop {
            self.show_state(p).await?;
            let outcome = match self.machine.state().clone() {
                State::StreamList => self.stream_list_and_watch(p).await?,
                State::List => self.list_and_publish(p).await?,
                State::Watch { rv } => self.watch_and_apply(p, rv).await?,
                State::BackOff { delay, .. } => {
                    wait(p, delay).await?;
                    Outcome::Waited
                }
            };
            self.machine.step(outcome);
        }
    }

    /// Shows the machine's state in the region's status when it changed.
    async fn show_state(&mut self, p: &mut Publisher<'_>) -> Result<(), StoreError> {
        let shown = self.machine.sync_state();
        if self.shown != Some(shown) {
            p.set_state(shown).await?;
            self.shown = Some(shown);
        }
        Ok(())
    }

    fn list_deadline_passed(&self) -> ApiError {
        ApiError::Transport(format!(
            "the list did not finish within {}s (list_timeout)",
            self.list_timeout.as_secs()
        ))
    }

    async fn list_failed(&mut self, p: &mut Publisher<'_>, msg: &str) -> Result<(), StoreError> {
        log_at!(Error, "{}: {msg}", self.label);
        p.count(Metric::ListErrors, 1);
        p.set_error(msg).await
    }

    fn log_skipped_event(&self) {
        log_at!(
            Error,
            "{}: skipped a watch event over max_object_size ({} bytes); its object keeps its previous state \
             until the next list",
            self.label,
            self.max_object_size
        );
    }

    fn oversized(&self, len: usize) -> String {
        format!(
            "{len} bytes, over max_object_size ({} bytes)",
            self.max_object_size
        )
    }

    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut q: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(ls) = &self.label_selector {
            q.push(("labelSelector".into(), ls.clone()));
        }
        if let Some(fs) = &self.field_selector {
            q.push(("fieldSelector".into(), fs.clone()));
        }
        let qs: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
            .collect();
        format!(
            "{}?{}",
            self.resource.path(self.namespace.as_deref()),
            qs.join("&")
        )
    }
}

/// Sleeps for `delay`, still noticing a takeover.
async fn wait(p: &Publisher<'_>, delay: Duration) -> Result<(), StoreError> {
    let until = Instant::now()
        .checked_add(delay)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
    while Instant::now() < until {
        tokio::time::sleep(OWNER_CHECK.min(until - Instant::now())).await;
        if !p.is_owner() {
            return Err(StoreError::Superseded);
        }
    }
    Ok(())
}

/// Resolves once the publisher's region has been claimed by another watcher.
async fn owner_lost(p: &Publisher<'_>) {
    let mut tick = tokio::time::interval(OWNER_CHECK);
    loop {
        tick.tick().await;
        if !p.is_owner() {
            return;
        }
    }
}

/// A decoding error as logged and shown: serde's message quotes the offending value (a string of megabytes where
/// an array was expected), so it is escaped and capped like any other text from the server.
fn decode_error_text(e: impl std::fmt::Display) -> String {
    escape_server_text(&e.to_string(), crate::client::MAX_SERVER_TEXT)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for &b in v.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    fn cluster(json: serde_json::Value) -> crate::config::ClusterConfig {
        crate::config::parse(&json.to_string(), &|_| None)
            .expect("valid")
            .clusters
            .remove(0)
    }

    #[test]
    fn insecure_settings_are_named_once() {
        let http = |host: &str| {
            cluster(
                serde_json::json!({"service": {"schema": "http", "host": host, "port": 80},
                                       "client": {"token": "t"}}),
            )
        };
        let w = super::insecure_settings(&http("10.0.0.1"));
        assert_eq!(
            w,
            vec![
                "the bearer token is sent over plain http to 10.0.0.1: anyone on the network path can read it; use https"
            ]
        );
        for host in ["127.0.0.1", "::1", "localhost", "127.8.0.1"] {
            assert!(super::insecure_settings(&http(host)).is_empty(), "{host}");
        }
        let no_verify = cluster(
            serde_json::json!({"service": {"host": "k8s", "port": 443, "ssl_verify": false},
                                                   "client": {"token": "t"}}),
        );
        let w = super::insecure_settings(&no_verify);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with(
            "service.ssl_verify: false: the API server's certificate is not verified"
        ));
        assert!(w[0].ends_with("and receive the token"));
        let verified = cluster(serde_json::json!({"service": {"host": "k8s", "port": 443},
                                                  "client": {"token": "t"}}));
        assert!(super::insecure_settings(&verified).is_empty());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            super::encode_query_value("a=b,c in (x, y)"),
            "a%3Db%2Cc%20in%20%28x%2C%20y%29"
        );
        assert_eq!(
            super::encode_query_value("metadata.namespace!=ns-a"),
            "metadata.namespace%21%3Dns-a"
        );
    }
}
