//! Runs one cluster's list/watch: the I/O of each step the state machine in `sync_state` decides (list every
//! page into a view and publish it, watch and apply events, wait out a back-off), and the supervision around it
//! (claiming the region, stopping when a newer watcher takes over).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::backoff::Backoff;
use crate::client::{ApiClient, ApiError, MAX_BODY_BYTES, read_body};
use crate::config::{ClusterConfig, Scheme};
use crate::log::{escape_server_text, log_at};
use crate::model::{Bookmark, List, Status, WatchEvent};
use crate::publish::Publisher;
use crate::selector::NamespaceSelector;
use crate::store::{Metric, Region, StoreError, SyncState, Writer};
use crate::sync_state::{Machine, Outcome, State, WatchEnd};
use crate::view::{Object, Resource, View};
use serde_json::value::RawValue;

/// Items per LIST page.
const PAGE_SIZE: u32 = 500;
/// Room for a watch event's envelope (`{"type":...,"object":...}`) beyond its object's `max_object_size`.
const EVENT_ENVELOPE_BYTES: usize = 64 << 10;
/// Longest silence tolerated while reading a LIST response.
const LIST_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a watcher checks that it still owns its region (a newer watcher takes over after a reload).
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// One configured cluster: its settings and its shared-memory region.
pub struct Cluster {
    pub config: ClusterConfig,
    pub region: Arc<Region>,
}

impl Cluster {
    /// How log lines name this cluster.
    pub fn label(&self) -> String {
        if self.config.id.is_empty() {
            let host = &self.config.host;
            if host.contains(':') {
                format!("[{host}]:{}", self.config.port)
            } else {
                format!("{host}:{}", self.config.port)
            }
        } else {
            format!("cluster {}", self.config.id)
        }
    }
}

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
    label: String,
    machine: Machine,
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

/// What one watch event line contributed.
enum Progress {
    /// An object changed (the counter of its event type).
    Change(Metric),
    /// The server confirmed the watch is current.
    Bookmark,
    /// Nothing (an event type this client does not know).
    None,
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
            view: View::new(selector.clone()),
            selector: selector.clone(),
            label: label.clone(),
            machine: Machine::new(Backoff::new()),
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
    /// Performs the step the state machine asks for, feeds back what it produced, and repeats until the region
    /// is lost to another watcher.
    async fn run(&mut self, p: &mut Publisher<'_>) -> Result<(), StoreError> {
        loop {
            let shown = self.machine.sync_state();
            if self.shown != Some(shown) {
                p.set_state(shown).await?;
                self.shown = Some(shown);
            }
            let outcome = match self.machine.state().clone() {
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

    /// Lists everything and, when the list is complete, replaces the stored view with it.
    async fn list_and_publish(&mut self, p: &mut Publisher<'_>) -> Result<Outcome, StoreError> {
        let deadline = self.list_timeout;
        let listed = tokio::select! {
            r = tokio::time::timeout(deadline, self.list()) => r.unwrap_or_else(|_| {
                Err(ApiError::Transport(format!(
                    "the list did not finish within {}s (list_timeout)",
                    deadline.as_secs()
                )))
            }),
            _ = owner_lost(p) => return Err(StoreError::Superseded),
        };
        match listed {
            Ok((view, rv)) => {
                p.replace_all(&view).await?;
                log_at!(
                    Info,
                    "{}: listed {} service(s) from {} at resourceVersion {rv}",
                    self.label,
                    view.len(),
                    self.resource.name()
                );
                self.view = view;
                p.clear_error().await?;
                Ok(Outcome::Listed { rv })
            }
            Err(e) => {
                let msg = format!("list {} failed: {e}", self.resource.name());
                log_at!(Error, "{}: {msg}", self.label);
                p.count(Metric::ListErrors, 1);
                p.set_error(&msg).await?;
                Ok(Outcome::ListFailed {
                    retry_after: e.retry_after(),
                })
            }
        }
    }

    /// Watches from `rv`, applying events as they come, and reports how the watch went.
    async fn watch_and_apply(
        &mut self,
        p: &mut Publisher<'_>,
        rv: String,
    ) -> Result<Outcome, StoreError> {
        self.rv = rv;
        let started = Instant::now();
        let (ended, progress) = self.watch(p).await?;
        let end = match ended {
            Ended::Clean => WatchEnd::Clean,
            Ended::Gone(msg) => {
                log_at!(
                    Info,
                    "{}: {msg}; relisting (current data kept until the list completes)",
                    self.label
                );
                p.count(Metric::Relists, 1);
                WatchEnd::Gone
            }
            Ended::Failed(e) => {
                let msg = format!("watch {} failed: {e}", self.resource.name());
                log_at!(Error, "{}: {msg}", self.label);
                p.count(Metric::WatchErrors, 1);
                p.set_error(&msg).await?;
                WatchEnd::Failed {
                    retry_after: e.retry_after(),
                }
            }
        };
        Ok(Outcome::WatchEnded {
            end,
            rv: self.rv.clone(),
            progressed: progress > 0,
            lasted: started.elapsed(),
        })
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

    /// Lists every page into a fresh view. A continue token that expired restarts the list from the beginning,
    /// unpaged: a paged list that cannot finish within the token lifetime would otherwise never finish.
    async fn list(&self) -> Result<(View, String), ApiError> {
        let mut paged = true;
        'restart: loop {
            let mut view = View::new(self.selector.clone());
            let mut cont: Option<String> = None;
            let mut rv: Option<String> = None;
            loop {
                let limit = PAGE_SIZE.to_string();
                let mut params = Vec::new();
                if paged {
                    params.push(("limit", limit.as_str()));
                }
                if let Some(c) = &cont {
                    params.push(("continue", c));
                }
                let resp = match self.client.get(&self.query(&params)).await {
                    Err(e) if e.is_gone() && cont.is_some() && paged => {
                        paged = false;
                        log_at!(
                            Info,
                            "{}: list continue token expired ({e}); listing again without paging",
                            self.label
                        );
                        continue 'restart;
                    }
                    other => other?,
                };
                let body = read_body(resp.into_body(), MAX_BODY_BYTES, LIST_READ_TIMEOUT).await?;
                // Items stay raw text sliced from the body until each is parsed on its own: no tree of the whole
                // page is ever built.
                let page: List<&RawValue> = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::Decode(format!("{} list: {e}", self.resource.name())))?;
                // A 200 that is not a list of the expected kind (a proxy's page, a Status) must never be taken
                // for an empty cluster: that would delete everything.
                let expected_kind = format!("{}List", self.resource.name());
                if page.kind.as_deref().is_some_and(|k| k != expected_kind) {
                    return Err(ApiError::Decode(format!(
                        "expected a {expected_kind}, got kind \"{}\"",
                        escape_server_text(&page.kind.unwrap_or_default(), 64)
                    )));
                }
                for item in page.items.unwrap_or_default() {
                    let text = item.get();
                    let parsed = if text.len() > self.max_object_size {
                        Err(format!(
                            "{} bytes, over max_object_size ({} bytes)",
                            text.len(),
                            self.max_object_size
                        ))
                    } else {
                        Object::parse(self.resource, text).map_err(|e| e.to_string())
                    };
                    match parsed {
                        Ok(obj) => {
                            view.apply(obj);
                        }
                        // Keep serving what was stored for that service rather than dropping it with the list.
                        Err(e) => match self.resource.service_of(text) {
                            Some((ns, name)) => {
                                log_at!(
                                    Warn,
                                    "{}: unusable {} in {}/{} ({}); keeping its previous nodes",
                                    self.label,
                                    self.resource.name(),
                                    escape_server_text(&ns, 253),
                                    escape_server_text(&name, 253),
                                    escape_server_text(&e, 256)
                                );
                                view.keep_previous(&ns, &name);
                            }
                            None => {
                                return Err(ApiError::Decode(format!(
                                    "malformed {} without a readable name: {e}",
                                    self.resource.name()
                                )));
                            }
                        },
                    }
                }
                // All pages share the first page's resourceVersion (one consistent snapshot).
                if rv.is_none() {
                    rv = page.metadata.resource_version.clone();
                }
                match page.metadata.next_page() {
                    Some(c) => cont = Some(c.to_string()),
                    None => break,
                }
            }
            let rv = rv
                .filter(|r| !r.is_empty())
                .ok_or_else(|| ApiError::Decode("list without resourceVersion".into()))?;
            return Ok((view, rv));
        }
    }

    /// Watches from `self.rv` until the stream ends, moving `self.rv` along. Returns how it ended and how many
    /// changes and bookmarks it delivered.
    async fn watch(&mut self, p: &mut Publisher<'_>) -> Result<(Ended, u64), StoreError> {
        let rv = self.rv.clone();
        // The server ends a quiet watch cleanly after `timeoutSeconds`, spread over [idle/2, idle*4/5) so that
        // many gateways do not re-watch in step, and always before the dead-connection timeout below.
        let idle = self.idle_timeout;
        let timeout =
            idle.as_secs() / 2 + self.machine.random_below((idle.as_secs() * 3 / 10).max(1));
        let timeout_s = timeout.to_string();
        let path = self.query(&[
            ("watch", "1"),
            ("resourceVersion", &rv),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", &timeout_s),
        ]);
        let resp = tokio::select! {
            r = self.client.get(&path) => r,
            _ = owner_lost(p) => return Err(StoreError::Superseded),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_gone() => {
                return Ok((Ended::Gone(format!("watch answered {e}")), 0));
            }
            Err(e) => return Ok((Ended::Failed(e), 0)),
        };
        p.clear_error().await?;
        p.count(Metric::WatchStarts, 1);
        // An established watch delivers every change after our resourceVersion: the data is current now.
        p.note_sync().await?;
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut discarding = false;
        let mut total = 0u64;
        loop {
            let frame = tokio::select! {
                f = tokio::time::timeout(idle, body.frame()) => f,
                _ = owner_lost(p) => return Err(StoreError::Superseded),
            };
            let frame = match frame {
                Err(_) => {
                    let e = ApiError::Transport(format!(
                        "no data for {}s; presuming the connection dead",
                        idle.as_secs()
                    ));
                    return Ok((Ended::Failed(e), total));
                }
                Ok(None) => return Ok((Ended::Clean, total)),
                Ok(Some(Err(e))) => {
                    let e = ApiError::Transport(crate::client::error_chain(&e));
                    return Ok((Ended::Failed(e), total));
                }
                Ok(Some(Ok(f))) => f,
            };
            let Some(data) = frame.data_ref() else {
                continue;
            };
            let arrived = Instant::now();
            // Only the new bytes can hold a line end: earlier ones were scanned already.
            let mut scan_from = buf.len();
            buf.extend_from_slice(data);
            let mut affected = BTreeSet::new();
            let mut consumed = 0;
            let mut events = 0u64;
            let mut bookmarked = false;
            let mut end = None;
            while let Some(nl) = buf[scan_from..].iter().position(|&b| b == b'\n') {
                let line_end = scan_from + nl;
                let line = &buf[consumed..line_end];
                consumed = line_end + 1;
                scan_from = consumed;
                if std::mem::take(&mut discarding) || line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match self.event(line, &mut affected) {
                    // Only changes and bookmarks are progress: an ERROR line (a 410 for a too-old
                    // resourceVersion arrives as one) must not count as a healthy watch.
                    Ok(Progress::Change(kind)) => {
                        events += 1;
                        p.count(kind, 1);
                    }
                    Ok(Progress::Bookmark) => {
                        events += 1;
                        bookmarked = true;
                        p.count(Metric::Bookmarks, 1);
                    }
                    Ok(Progress::None) => {}
                    Err(e) => {
                        end = Some(e);
                        break;
                    }
                }
            }
            buf.drain(..consumed);
            let max_line = self.max_object_size + EVENT_ENVELOPE_BYTES;
            if buf.len() > max_line {
                // Buffering it whole could exhaust memory: drop it up to its line end and keep watching.
                log_at!(
                    Error,
                    "{}: skipped a watch event larger than {max_line} bytes (max_object_size); its object keeps \
                     its previous state until the next list",
                    self.label
                );
                buf.clear();
                discarding = true;
            }
            if !affected.is_empty() {
                let keys: Vec<String> = affected.into_iter().collect();
                p.services(&self.view, &keys).await?;
                p.record_propagation(arrived.elapsed());
            } else if bookmarked {
                // A quiet, healthy watch is as fresh as its last bookmark.
                p.note_sync().await?;
            }
            total += events;
            if let Some(e) = end {
                return Ok((e, total));
            }
        }
    }

    /// Applies one watch event line. Returns how the watch ends for ERROR events and for events that cannot be
    /// understood (skipping one would leave its object stale with nothing to correct it, so those relist).
    fn event(&mut self, line: &[u8], affected: &mut BTreeSet<String>) -> Result<Progress, Ended> {
        let ev: WatchEvent = serde_json::from_slice(line)
            .map_err(|e| Ended::Gone(format!("malformed watch event ({e})")))?;
        match ev.type_.as_str() {
            "ADDED" | "MODIFIED" | "DELETED" => {
                let obj = Object::parse(self.resource, ev.object_text()).map_err(|e| {
                    Ended::Gone(format!(
                        "malformed {} in a {} event ({e})",
                        self.resource.name(),
                        ev.type_
                    ))
                })?;
                if let Some(rv) = obj.resource_version().filter(|r| !r.is_empty()) {
                    self.rv = rv.to_string();
                }
                let keys = if ev.type_ == "DELETED" {
                    self.view.delete(obj)
                } else {
                    self.view.apply(obj)
                };
                affected.extend(keys);
                Ok(Progress::Change(match ev.type_.as_str() {
                    "ADDED" => Metric::EventsAdded,
                    "MODIFIED" => Metric::EventsModified,
                    _ => Metric::EventsDeleted,
                }))
            }
            "BOOKMARK" => {
                if let Ok(b) = serde_json::from_str::<Bookmark>(ev.object_text())
                    && let Some(rv) = b.resource_version()
                {
                    self.rv = rv.to_string();
                }
                Ok(Progress::Bookmark)
            }
            "ERROR" => {
                let st: Status = serde_json::from_str(ev.object_text()).unwrap_or_default();
                let err = ApiError::from_status(&st, 500);
                // 410 Expired/Gone (by code or, from old servers, by reason only), and 504 "too large resource
                // version": the watch cannot resume from our resourceVersion.
                Err(if st.is_expired() || st.code == Some(504) {
                    Ended::Gone(format!("watch ended with {err}"))
                } else {
                    Ended::Failed(err)
                })
            }
            other => {
                log_at!(
                    Warn,
                    "{}: ignoring watch event of unknown type \"{}\"",
                    self.label,
                    escape_server_text(other, 64)
                );
                Ok(Progress::None)
            }
        }
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
