//! Runs one cluster's list/watch: the I/O of each step the state machine in `sync_state` decides (a streaming
//! list that turns into the watch, or every page of a LIST, into a view that is then published; watch and apply
//! events; wait out a back-off), and the supervision around it (claiming the region, stopping when a newer
//! watcher takes over).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::backoff::Backoff;
use crate::client::{ApiClient, ApiError, MAX_BODY_BYTES, read_body};
use crate::config::{ClusterConfig, ListStrategy, Scheme};
use crate::lines::Lines;
use crate::log::{escape_server_text, log_at};
use crate::model::{Bookmark, List, Status, WatchEvent};
use crate::publish::Publisher;
use crate::selector::NamespaceSelector;
use crate::store::{Metric, Region, StoreError, SyncState, Writer};
use crate::sync_state::{ListFrom, Machine, Outcome, State, WatchEnd};
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

/// A streaming list through its end bookmark: the complete view, its resourceVersion, and the connection (with
/// what was read beyond the bookmark) that goes on as the watch.
type StreamListed = (View, String, hyper::body::Incoming, Lines);

/// Why a streaming list did not complete.
enum Streamed {
    /// The server does not serve streaming lists.
    Unsupported(ApiError),
    Failed(ApiError),
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

    /// Lists everything and, when the list is complete, replaces the stored view with it.
    async fn list_and_publish(&mut self, p: &mut Publisher<'_>) -> Result<Outcome, StoreError> {
        let deadline = self.list_timeout;
        let from = self.machine.list_from();
        let listed = tokio::select! {
            r = tokio::time::timeout(deadline, self.list(&from)) => r.unwrap_or_else(|_| {
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
                    gone: e.is_rv_unavailable(),
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
        self.watch_outcome(p, ended, progress, started).await
    }

    /// Logs and counts how a watch ended, for the state machine.
    async fn watch_outcome(
        &mut self,
        p: &mut Publisher<'_>,
        ended: Ended,
        progress: u64,
        started: Instant,
    ) -> Result<Outcome, StoreError> {
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

    /// The server-side lifetime of one watch: spread over [idle/2, idle*4/5) so that many gateways do not
    /// re-watch in step, and always below the dead-connection timeout (a quiet healthy watch ends cleanly first).
    fn watch_lifetime(&mut self) -> Duration {
        let idle = self.idle_timeout.as_secs();
        Duration::from_secs(idle / 2 + self.machine.random_below((idle * 3 / 10).max(1)))
    }

    /// The streaming list: one watch request with `sendInitialEvents=true`. Its initial events build a complete
    /// view, parsed line by line as they arrive; the `k8s.io/initial-events-end` bookmark completes it, and only
    /// then does it replace the stored one. The same connection then goes on as the watch.
    async fn stream_list_and_watch(
        &mut self,
        p: &mut Publisher<'_>,
    ) -> Result<Outcome, StoreError> {
        let started = Instant::now();
        let lifetime = self.watch_lifetime();
        let listed = tokio::select! {
            r = tokio::time::timeout(self.list_timeout, self.stream_list(lifetime)) => {
                r.unwrap_or_else(|_| Err(Streamed::Failed(self.list_deadline_passed())))
            }
            _ = owner_lost(p) => return Err(StoreError::Superseded),
        };
        let (view, rv, body, lines) = match listed {
            Ok(done) => done,
            Err(Streamed::Unsupported(e)) if self.strategy == ListStrategy::Auto => {
                log_at!(
                    Warn,
                    "{}: the API server does not serve streaming lists ({e}); using paged LIST requests for this \
                     cluster from now on",
                    self.label
                );
                return Ok(Outcome::StreamUnsupported {
                    retry_after: e.retry_after(),
                });
            }
            Err(Streamed::Unsupported(e)) => {
                let msg = format!(
                    "list {} failed: {e} (the server refused a streaming list; list_strategy watch_list never \
                     falls back to LIST)",
                    self.resource.name()
                );
                self.list_failed(p, &msg).await?;
                return Ok(Outcome::StreamUnsupported {
                    retry_after: e.retry_after(),
                });
            }
            Err(Streamed::Failed(e)) => {
                // Worded as a paged list's failure, so that what watches the log for one sees both.
                let msg = format!("list {} failed: {e}", self.resource.name());
                self.list_failed(p, &msg).await?;
                return Ok(Outcome::ListFailed {
                    retry_after: e.retry_after(),
                    gone: e.is_rv_unavailable(),
                });
            }
        };
        p.replace_all(&view).await?;
        log_at!(
            Info,
            "{}: listed {} service(s) from {} at resourceVersion {rv} (streaming list, {} ms)",
            self.label,
            view.len(),
            self.resource.name(),
            started.elapsed().as_millis()
        );
        self.view = view;
        p.clear_error().await?;
        // From here on the connection is the watch.
        p.count(Metric::WatchStarts, 1);
        self.machine.step(Outcome::Listed { rv: rv.clone() });
        self.show_state(p).await?;
        self.rv = rv;
        let watching = Instant::now();
        // The server's timeout also covered the initial events; end the watch after a normal watch's lifetime.
        let (ended, progress) = self
            .follow(p, body, lines, Some(watching + lifetime))
            .await?;
        self.watch_outcome(p, ended, progress, watching).await
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

    /// Sends the streaming list and reads its initial events up to the end bookmark: the complete view, its
    /// resourceVersion, and the connection with what was read beyond the bookmark.
    async fn stream_list(&self, lifetime: Duration) -> Result<StreamListed, Streamed> {
        let rv = match self.machine.list_from() {
            ListFrom::Latest => String::new(),
            ListFrom::Any => "0".to_string(),
            ListFrom::NotOlderThan(rv) => rv,
        };
        // The server must not end the stream before the initial events are through (`list_timeout`) and the
        // watch that follows them has had its lifetime (the watcher ends that one itself).
        let timeout_s = (self.list_timeout + lifetime).as_secs().to_string();
        let path = self.query(&[
            ("watch", "1"),
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", &rv),
            ("timeoutSeconds", &timeout_s),
        ]);
        let resp = self.client.get(&path).await.map_err(|e| {
            // A server without the WatchList feature refuses the parameters (422 Invalid); proxies and old
            // servers may answer 400, 403 or 405.
            if matches!(
                e,
                ApiError::Status {
                    code: 400 | 403 | 405 | 422,
                    ..
                }
            ) {
                Streamed::Unsupported(e)
            } else {
                Streamed::Failed(e)
            }
        })?;
        let mut body = resp.into_body();
        let mut lines = Lines::new(self.max_object_size + EVENT_ENVELOPE_BYTES);
        let mut view = View::new(self.selector.clone());
        let idle = self.idle_timeout;
        loop {
            while let Some(line) = lines.next_line() {
                if let Some(rv) = self.initial_event(line, &mut view)? {
                    return Ok((view, rv, body, lines));
                }
            }
            if let Some(prefix) = lines.overflow() {
                self.skipped_initial_object(&prefix, &mut view);
            }
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => {
                    return Err(Streamed::Failed(ApiError::Transport(format!(
                        "no data for {}s before the end of the initial events",
                        idle.as_secs()
                    ))));
                }
                Ok(None) => {
                    return Err(Streamed::Failed(ApiError::Transport(
                        "the stream ended before the end of the initial events".into(),
                    )));
                }
                Ok(Some(Err(e))) => {
                    return Err(Streamed::Failed(ApiError::Transport(
                        crate::client::error_chain(&e),
                    )));
                }
                Ok(Some(Ok(f))) => f,
            };
            if let Some(data) = frame.data_ref() {
                lines.push(data);
            }
        }
    }

    /// Applies one line of a streaming list's initial events to the view being built. Returns the resourceVersion
    /// of the end bookmark.
    fn initial_event(&self, line: &[u8], view: &mut View) -> Result<Option<String>, Streamed> {
        let ev: WatchEvent = serde_json::from_slice(line).map_err(|e| {
            Streamed::Failed(ApiError::Decode(format!("malformed watch event ({e})")))
        })?;
        match ev.type_.as_str() {
            // Only ADDED is expected before the end bookmark; a MODIFIED or DELETED still says where the
            // object stands.
            "ADDED" | "MODIFIED" | "DELETED" => {
                let text = ev.object_text();
                let parsed = if text.len() > self.max_object_size {
                    Err(self.oversized(text.len()))
                } else {
                    Object::parse(self.resource, text).map_err(|e| e.to_string())
                };
                match parsed {
                    Ok(obj) if ev.type_ == "DELETED" => {
                        view.delete(obj);
                    }
                    Ok(obj) => {
                        view.apply(obj);
                    }
                    Err(e) => match self.resource.service_of(text) {
                        Some((ns, name)) => self.keep_previous(view, &ns, &name, &e),
                        None => {
                            return Err(Streamed::Failed(ApiError::Decode(format!(
                                "malformed {} without a readable name: {e}",
                                self.resource.name()
                            ))));
                        }
                    },
                }
                Ok(None)
            }
            "BOOKMARK" => {
                let b: Bookmark = serde_json::from_str(ev.object_text()).map_err(|e| {
                    Streamed::Failed(ApiError::Decode(format!("malformed bookmark ({e})")))
                })?;
                if !b.is_initial_events_end() {
                    // A server that ignores `sendInitialEvents` sends a plain watch: its bookmarks never carry
                    // the annotation.
                    return Err(Streamed::Unsupported(ApiError::Decode(
                        "the server sent a bookmark before the end of the initial events: it ignored \
                         sendInitialEvents"
                            .into(),
                    )));
                }
                let rv = b.resource_version().ok_or_else(|| {
                    Streamed::Failed(ApiError::Decode(
                        "initial-events-end bookmark without resourceVersion".into(),
                    ))
                })?;
                Ok(Some(rv.to_string()))
            }
            "ERROR" => {
                let st: Status = serde_json::from_str(ev.object_text()).unwrap_or_default();
                Err(Streamed::Failed(ApiError::from_status(&st, 500)))
            }
            other => {
                log_at!(
                    Warn,
                    "{}: ignoring watch event of unknown type \"{}\"",
                    self.label,
                    escape_server_text(other, 64)
                );
                Ok(None)
            }
        }
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

    /// An initial event too large to hold was skipped: its service keeps what was stored for it.
    fn skipped_initial_object(&self, prefix: &[u8], view: &mut View) {
        let why = format!(
            "an event over {} bytes, max_object_size",
            self.max_object_size
        );
        match self.resource.service_of_prefix(prefix) {
            Some((ns, name)) => self.keep_previous(view, &ns, &name, &why),
            None => log_at!(
                Error,
                "{}: skipped {why}, of an object whose name comes too late to read",
                self.label
            ),
        }
    }

    /// Keeps serving what was stored for a service whose object cannot be used, rather than dropping it with
    /// the list.
    fn keep_previous(&self, view: &mut View, ns: &str, name: &str, why: &str) {
        log_at!(
            Warn,
            "{}: unusable {} in {}/{} ({}); keeping its previous nodes",
            self.label,
            self.resource.name(),
            escape_server_text(ns, 253),
            escape_server_text(name, 253),
            escape_server_text(why, 256)
        );
        view.keep_previous(ns, name);
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
    ///
    /// `from` sets the first request's resourceVersion: unset (the latest state, paged), "0" (the server's
    /// watch cache, which ignores `limit` and answers everything at once) or N (not older than N; unpaged, since
    /// with a limit it would mean exactly N and fail once N is compacted). Later pages carry only the continue
    /// token, which holds the list's resourceVersion.
    async fn list(&self, from: &ListFrom) -> Result<(View, String), ApiError> {
        let (first_rv, mut paged) = match from {
            ListFrom::Latest => (None, true),
            ListFrom::Any => (Some("0"), true),
            ListFrom::NotOlderThan(rv) => (Some(rv.as_str()), false),
        };
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
                match &cont {
                    Some(c) => params.push(("continue", c)),
                    None => {
                        if let Some(r) = first_rv {
                            params.push(("resourceVersion", r));
                        }
                    }
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
                        Err(self.oversized(text.len()))
                    } else {
                        Object::parse(self.resource, text).map_err(|e| e.to_string())
                    };
                    match parsed {
                        Ok(obj) => {
                            view.apply(obj);
                        }
                        Err(e) => match self.resource.service_of(text) {
                            Some((ns, name)) => self.keep_previous(&mut view, &ns, &name, &e),
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
        // The server ends a quiet watch cleanly after `timeoutSeconds`, before the dead-connection timeout.
        let timeout_s = self.watch_lifetime().as_secs().to_string();
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
        let lines = Lines::new(self.max_object_size + EVENT_ENVELOPE_BYTES);
        self.follow(p, resp.into_body(), lines, None).await
    }

    /// Applies the events of an established watch (`lines` may already hold some) until the stream ends, or
    /// until `until`, when the watcher ends it itself (cleanly).
    async fn follow(
        &mut self,
        p: &mut Publisher<'_>,
        mut body: hyper::body::Incoming,
        mut lines: Lines,
        until: Option<Instant>,
    ) -> Result<(Ended, u64), StoreError> {
        let idle = self.idle_timeout;
        let far = Instant::now() + Duration::from_secs(365 * 86_400);
        let until = tokio::time::Instant::from_std(until.unwrap_or(far));
        let mut total = 0u64;
        let mut arrived = Instant::now();
        loop {
            let mut affected = BTreeSet::new();
            let mut events = 0u64;
            let mut bookmarked = false;
            let mut end = None;
            while let Some(line) = lines.next_line() {
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
            if end.is_none() && lines.overflow().is_some() {
                self.log_skipped_event();
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
            let frame = tokio::select! {
                f = tokio::time::timeout(idle, body.frame()) => f,
                _ = tokio::time::sleep_until(until) => return Ok((Ended::Clean, total)),
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
            if let Some(data) = frame.data_ref() {
                arrived = Instant::now();
                lines.push(data);
            }
        }
    }

    /// Applies one watch event line. Returns how the watch ends for ERROR events and for events that cannot be
    /// understood (skipping one would leave its object stale with nothing to correct it, so those relist).
    fn event(&mut self, line: &[u8], affected: &mut BTreeSet<String>) -> Result<Progress, Ended> {
        let ev: WatchEvent = serde_json::from_slice(line)
            .map_err(|e| Ended::Gone(format!("malformed watch event ({e})")))?;
        match ev.type_.as_str() {
            // A line that arrived whole in one frame escaped the line buffer's limit: skip it the same way.
            "ADDED" | "MODIFIED" | "DELETED" if ev.object_text().len() > self.max_object_size => {
                self.log_skipped_event();
                Ok(Progress::None)
            }
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
