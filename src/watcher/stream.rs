//! The streaming list: one watch request whose initial events build the complete view, replaced on the
//! initial-events-end bookmark, and whose connection then goes on as the watch.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::client::ApiError;
use crate::config::ListStrategy;
use crate::lines::Lines;
use crate::log::{escape_server_text, log_at};
use crate::model::Object;
use crate::model::{Bookmark, Status, WatchEvent};
use crate::publish::Publisher;
use crate::store::{Metric, StoreError};
use crate::sync_state::{ListFrom, Outcome, STREAM_BAD_REQUESTS};
use crate::view::View;

use super::{EVENT_ENVELOPE_BYTES, Watcher, decode_error_text, owner_lost};

/// The longest silence a streaming list may keep before its end bookmark. A server that serves streaming lists
/// sends its initial events back to back from its watch cache and the end bookmark right after them (waiting at
/// most about 3 s first for the cache to catch up); one that ignored `sendInitialEvents` (a server older than the
/// feature, or a proxy that strips parameters it does not know) serves a plain watch instead, which falls silent
/// once it has sent what it has and never sends that bookmark. Recognised by this silence, such a server costs a
/// starting gateway seconds rather than the minute until its first ordinary bookmark.
const INITIAL_EVENTS_SILENCE: Duration = Duration::from_secs(5);

/// A streaming list through its end bookmark: the complete view, its resourceVersion, and the connection (with
/// what was read beyond the bookmark) that goes on as the watch.
pub(super) type StreamListed = (View, String, hyper::body::Incoming, Lines);

/// Why a streaming list did not complete.
pub(super) enum Streamed {
    /// The server does not serve streaming lists.
    Unsupported(ApiError),
    /// The stream fell silent before its end bookmark: a server that ignored `sendInitialEvents`, or a pause.
    Silent(ApiError),
    /// The request was answered 400, and not that its resourceVersion is unavailable: the server or a proxy in
    /// front of it refuses the parameters, or a passing fault.
    BadRequest(ApiError),
    Failed(ApiError),
}

impl Watcher {
    /// The streaming list: one watch request with `sendInitialEvents=true`. Its initial events build a complete
    /// view, parsed line by line as they arrive; the `k8s.io/initial-events-end` bookmark completes it, and only
    /// then does it replace the stored one. The same connection then goes on as the watch.
    pub(super) async fn stream_list_and_watch(
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
            Err(Streamed::Silent(e)) if self.strategy == ListStrategy::Auto => {
                // Only this sync: a pause of a server that does serve streaming lists must not cost them for good
                // (a server that ignores the parameters is recognised for good by its first plain bookmark).
                log_at!(
                    Warn,
                    "{}: {e}; listing with paged LIST requests this time, and with a streaming list again at the \
                     next relist",
                    self.label
                );
                return Ok(Outcome::StreamSilent);
            }
            Err(Streamed::BadRequest(e)) if self.machine.pages_on_bad_request() => {
                log_at!(
                    Warn,
                    "{}: the streaming list was answered {e}, {STREAM_BAD_REQUESTS} times in a row: the API server \
                     or a proxy in front of it refuses its parameters; listing with paged LIST requests this time, \
                     and with a streaming list again at the next relist",
                    self.label
                );
                return Ok(Outcome::StreamBadRequest {
                    retry_after: e.retry_after(),
                });
            }
            Err(Streamed::BadRequest(e)) => {
                let msg = format!("list {} failed: {e}", self.resource.name());
                self.list_failed(p, &msg).await?;
                return Ok(Outcome::StreamBadRequest {
                    retry_after: e.retry_after(),
                });
            }
            Err(Streamed::Unsupported(e) | Streamed::Silent(e)) => {
                let msg = format!(
                    "list {} failed: {e} (the server refused or ignored a streaming list; list_strategy watch_list \
                     never falls back to LIST)",
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
        // The old view, and what parsing the new one left behind, are free now.
        crate::runtime::release_freed_memory();
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

    /// Sends the streaming list and reads its initial events up to the end bookmark: the complete view, its
    /// resourceVersion, and the connection with what was read beyond the bookmark.
    pub(super) async fn stream_list(&self, lifetime: Duration) -> Result<StreamListed, Streamed> {
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
            // A server without the WatchList feature refuses the parameters (422 Invalid), a proxy that allows
            // no streaming may answer 405. A 400 is no certain statement about the feature: retried, but a proxy
            // that refuses the parameters answers it every time (see `Outcome::StreamBadRequest`). A 400 that
            // says the resourceVersion is unavailable (reason Expired or Gone) is a 410 like any other. Anything
            // else is a failure to retry: a 403 is RBAC or a webhook saying no to this request now.
            match e {
                ApiError::Status {
                    code: 405 | 422, ..
                } => Streamed::Unsupported(e),
                ApiError::Status { code: 400, .. } if !e.is_rv_unavailable() => {
                    Streamed::BadRequest(e)
                }
                _ => Streamed::Failed(e),
            }
        })?;
        let mut body = resp.into_body();
        let mut lines = Lines::new(self.max_object_size + EVENT_ENVELOPE_BYTES);
        let mut view = View::new(self.selector.clone(), self.topology.clone());
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
            let silence = INITIAL_EVENTS_SILENCE.min(idle);
            let frame = match tokio::time::timeout(silence, body.frame()).await {
                Err(_) => {
                    return Err(Streamed::Silent(ApiError::Decode(format!(
                        "the stream fell silent for {}s before the end of its initial events: the server \
                         ignored sendInitialEvents, or paused",
                        silence.as_secs()
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
    pub(super) fn initial_event(
        &self,
        line: &[u8],
        view: &mut View,
    ) -> Result<Option<String>, Streamed> {
        let ev: WatchEvent = serde_json::from_slice(line).map_err(|e| {
            Streamed::Failed(ApiError::Decode(format!(
                "malformed watch event ({})",
                decode_error_text(e)
            )))
        })?;
        match ev.type_.as_str() {
            // Only ADDED is expected before the end bookmark; a MODIFIED or DELETED still says where the
            // object stands.
            "ADDED" | "MODIFIED" | "DELETED" => {
                let text = ev.object_text();
                let parsed = if text.len() > self.max_object_size {
                    Err(self.oversized(text.len()))
                } else {
                    Object::parse(self.resource, text, self.topology.is_on())
                        .map_err(|e| e.to_string())
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
                                "malformed {} without a readable name: {}",
                                self.resource.name(),
                                decode_error_text(e)
                            ))));
                        }
                    },
                }
                Ok(None)
            }
            "BOOKMARK" => {
                let b: Bookmark = serde_json::from_str(ev.object_text()).map_err(|e| {
                    Streamed::Failed(ApiError::Decode(format!(
                        "malformed bookmark ({})",
                        decode_error_text(e)
                    )))
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
                self.log_unknown_event_type(other);
                Ok(None)
            }
        }
    }

    /// An initial event too large to hold was skipped: its service keeps what was stored for it.
    pub(super) fn skipped_initial_object(&self, prefix: &[u8], view: &mut View) {
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
    pub(super) fn keep_previous(&self, view: &mut View, ns: &str, name: &str, why: &str) {
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
}
