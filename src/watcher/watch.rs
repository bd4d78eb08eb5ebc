//! Watching: one watch request at a time, its events applied to the view and published as they arrive.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::client::ApiError;
use crate::lines::Lines;
use crate::log::log_at;
use crate::model::Object;
use crate::model::{Bookmark, Status, WatchEvent};
use crate::publish::Publisher;
use crate::store::{Metric, StoreError};
use crate::sync_state::{Outcome, WatchEnd};

use super::{EVENT_ENVELOPE_BYTES, Ended, Watcher, decode_error_text, owner_lost};

/// What one watch event line contributed.
enum Progress {
    /// An object changed (the counter of its event type).
    Change(Metric),
    /// The server confirmed the watch is current.
    Bookmark,
    /// Nothing (an event type this client does not know).
    None,
}

impl Watcher {
    /// Watches from `rv`, applying events as they come, and reports how the watch went.
    pub(super) async fn watch_and_apply(
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
    pub(super) async fn watch_outcome(
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
    pub(super) fn watch_lifetime(&mut self) -> Duration {
        let idle = self.idle_timeout.as_secs();
        Duration::from_secs(idle / 2 + self.machine.random_below((idle * 3 / 10).max(1)))
    }

    /// Watches from `self.rv` until the stream ends, moving `self.rv` along. Returns how it ended and how many
    /// changes and bookmarks it delivered.
    pub(super) async fn watch(
        &mut self,
        p: &mut Publisher<'_>,
    ) -> Result<(Ended, u64), StoreError> {
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
    pub(super) async fn follow(
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
        let ev: WatchEvent = serde_json::from_slice(line).map_err(|e| {
            Ended::Gone(format!("malformed watch event ({})", decode_error_text(e)))
        })?;
        match ev.type_.as_str() {
            // A line that arrived whole in one frame escaped the line buffer's limit: skip it the same way.
            "ADDED" | "MODIFIED" | "DELETED" if ev.object_text().len() > self.max_object_size => {
                self.log_skipped_event();
                Ok(Progress::None)
            }
            "ADDED" | "MODIFIED" | "DELETED" => {
                let obj = Object::parse(self.resource, ev.object_text(), self.topology.is_on())
                    .map_err(|e| {
                        Ended::Gone(format!(
                            "malformed {} in a {} event ({})",
                            self.resource.name(),
                            ev.type_,
                            decode_error_text(e)
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
                self.log_unknown_event_type(other);
                Ok(Progress::None)
            }
        }
    }
}
