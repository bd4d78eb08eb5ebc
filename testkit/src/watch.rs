//! WATCH streams: initial/replayed events, live fan-out with selector transitions,
//! bookmarks, timeouts, ERROR events, chunk fuzzing and injected resets, stalls and slow bodies.

use crate::body::Chunk;
use crate::faults::Shape;
use crate::json_out;
use crate::selectors::Filter;
use crate::shape::Shaper;
use crate::state::Shared;
use crate::status::ApiError;
use crate::store::{Event, EventType, Kind, WatchMsg, WatchStart};
use crate::util;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// A validated watch request.
pub struct WatchRequest {
    pub kind: Kind,
    pub filter: Filter,
    pub start: WatchStart,
    /// The stream may only start once the store has reached this RV (else 504 after a wait).
    pub min_rv: Option<u64>,
    pub bookmarks: bool,
    /// Send the `k8s.io/initial-events-end` bookmark after the initial events.
    pub initial_events_end: bool,
    pub timeout: Duration,
    /// Injected faults acting on the body bytes (reset, stall, slow delivery).
    pub shape: Shape,
    pub client: String,
}

/// Writes body chunks, applying chunk fuzzing and the injected body shape (resets, stalls, slow bodies).
struct Sink {
    out: Shaper,
    fuzz: bool,
}

impl Sink {
    /// Sends one logical write; false once the client is gone or the stream was aborted.
    async fn send(&mut self, data: Bytes) -> bool {
        if !self.fuzz || data.len() < 2 {
            return self.out.send(data).await;
        }
        // Split at up to three random points so lines straddle chunk boundaries.
        let mut cuts: Vec<usize> = (0..util::random_below(4))
            .map(|_| 1 + util::random_below(data.len() as u64 - 1) as usize)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut from = 0;
        for c in cuts.into_iter().chain(std::iter::once(data.len())) {
            if !self.out.send(data.slice(from..c)).await {
                return false;
            }
            from = c;
        }
        true
    }

    async fn abort(&mut self) {
        self.out.abort().await;
    }
}

fn event_line(etype: &str, kind: Kind, obj: &Value) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(etype.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    json_out::write_object(&mut out, kind, obj, true);
    out.extend_from_slice(b"}\n");
    out.into()
}

/// `{"type":"ERROR","object":<Status>}`.
pub fn error_line(err: &ApiError) -> Bytes {
    let mut out = b"{\"type\":\"ERROR\",\"object\":".to_vec();
    out.extend_from_slice(&err.to_bytes());
    out.extend_from_slice(b"}\n");
    out.into()
}

/// A BOOKMARK: an empty object of the watched kind with only the RV (and, for the end of the
/// initial events, the annotation), in Go's zero-value serialisation.
pub fn bookmark_line(kind: Kind, rv: u64, initial_events_end: bool) -> Bytes {
    let annotations = if initial_events_end {
        r#","annotations":{"k8s.io/initial-events-end":"true"}"#
    } else {
        ""
    };
    let tail = match kind {
        Kind::Endpoints => "",
        Kind::EndpointSlice => r#","addressType":"","endpoints":null,"ports":null"#,
    };
    (format!(
        r#"{{"type":"BOOKMARK","object":{{"kind":"{}","apiVersion":"{}","metadata":{{"resourceVersion":"{rv}"{annotations}}}{tail}}}}}"#,
        kind.name(),
        kind.api_version()
    ) + "\n")
    .into_bytes()
    .into()
}

/// What this watcher sees of a store event, applying the selector transitions:
/// left the selection ⇒ DELETED (old content at the event RV), entered ⇒ ADDED.
fn render(ev: &Event, filter: &Filter) -> Option<Bytes> {
    let shared_line = || {
        ev.line
            .get_or_init(|| event_line(ev.etype.as_str(), ev.kind, &ev.object))
            .clone()
    };
    match ev.etype {
        EventType::Added | EventType::Deleted => filter.matches(&ev.object).then(shared_line),
        EventType::Modified => {
            let now = filter.matches(&ev.object);
            let before = ev.old.as_deref().is_some_and(|o| filter.matches(o));
            match (before, now) {
                (true, true) => Some(shared_line()),
                (false, true) => Some(event_line("ADDED", ev.kind, &ev.object)),
                (true, false) => {
                    let mut gone = ev.old.as_deref().cloned().unwrap_or(Value::Null);
                    gone["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                    Some(event_line("DELETED", ev.kind, &gone))
                }
                (false, false) => None,
            }
        }
    }
}

enum Next {
    Continue,
    Close,
    Reset,
}

/// Runs one watch until timeout, close, reset or client disconnect.
pub async fn run(shared: Arc<Shared>, req: WatchRequest, tx: mpsc::Sender<Chunk>) {
    let _active = shared.stats.watch_started(&req.client);
    let started = Instant::now();
    let deadline = started + req.timeout;
    let mut sink = Sink {
        out: Shaper::new(tx, req.shape),
        fuzz: shared.opts.fuzz_chunks,
    };

    if let Some(min) = req.min_rv {
        let mut rx = shared.rv_rx.clone();
        let wait = tokio::time::timeout(shared.opts.too_large_wait, rx.wait_for(|rv| *rv >= min));
        if !matches!(wait.await, Ok(Ok(_))) {
            let current = *shared.rv_rx.borrow();
            sink.send(error_line(&ApiError::too_large(min, current)))
                .await;
            return;
        }
    }

    let sub = shared.store().subscribe(req.kind, req.start);
    let mut sub = match sub {
        Ok(s) => s,
        Err(floor) => {
            let requested = match req.start {
                WatchStart::From(rv) => rv,
                _ => 0,
            };
            sink.send(error_line(&ApiError::too_old(requested, floor)))
                .await;
            return;
        }
    };

    // Initial events go out as one write per event (or merged, when fuzzing).
    let mut batch = Vec::new();
    for ev in &sub.initial {
        if let Some(line) = render(ev, &req.filter) {
            if sink.fuzz && util::random_below(2) == 0 {
                batch.extend_from_slice(&line);
                continue;
            }
            if !batch.is_empty() && !sink.send(std::mem::take(&mut batch).into()).await {
                return;
            }
            if !sink.send(line).await {
                return;
            }
        }
    }
    if !batch.is_empty() && !sink.send(batch.into()).await {
        return;
    }
    drop(std::mem::take(&mut sub.initial));
    if req.initial_events_end && !sink.send(bookmark_line(req.kind, sub.rv, true)).await {
        return;
    }

    // Periodic bookmarks, plus one 2 s before the deadline when the watch is long enough.
    let interval = shared.opts.bookmark_interval.max(Duration::from_millis(10));
    let final_bookmark =
        (req.timeout > Duration::from_secs(2)).then(|| deadline - Duration::from_secs(2));
    let mut next_periodic = started + interval;
    let mut final_sent = false;
    let far = deadline + Duration::from_secs(3600);

    loop {
        let next_bookmark = if !req.bookmarks || final_sent {
            far
        } else {
            match final_bookmark {
                Some(f) => next_periodic.min(f),
                None => next_periodic,
            }
        };
        let next = tokio::select! {
            msg = sub.rx.recv() => {
                match msg {
                    Some(WatchMsg::Event(ev)) => {
                        let mut out = render(&ev, &req.filter).map(|b| b.to_vec()).unwrap_or_default();
                        let mut after = Next::Continue;
                        // Merge whatever is already queued into the same chunk, when fuzzing.
                        if sink.fuzz {
                            for _ in 0..util::random_below(4) {
                                match sub.rx.try_recv() {
                                    Ok(WatchMsg::Event(e)) => {
                                        if let Some(b) = render(&e, &req.filter) {
                                            out.extend_from_slice(&b);
                                        }
                                    }
                                    Ok(WatchMsg::Close) => { after = Next::Close; break; }
                                    Ok(WatchMsg::Reset) => { after = Next::Reset; break; }
                                    Err(_) => break,
                                }
                            }
                        }
                        if !out.is_empty() && !sink.send(out.into()).await {
                            return;
                        }
                        after
                    }
                    Some(WatchMsg::Reset) => Next::Reset,
                    Some(WatchMsg::Close) | None => Next::Close,
                }
            }
            _ = sleep_until(next_bookmark) => {
                // Read the RV under the lock first, then drain what was queued before it:
                // the bookmark must never overtake an event with a lower RV.
                let rv = shared.store().rv();
                let mut after = Next::Continue;
                while let Ok(msg) = sub.rx.try_recv() {
                    match msg {
                        WatchMsg::Event(ev) => {
                            if let Some(b) = render(&ev, &req.filter) && !sink.send(b).await {
                                return;
                            }
                        }
                        WatchMsg::Close => { after = Next::Close; break; }
                        WatchMsg::Reset => { after = Next::Reset; break; }
                    }
                }
                if matches!(after, Next::Continue) {
                    if !sink.send(bookmark_line(req.kind, rv, false)).await {
                        return;
                    }
                    let now = Instant::now();
                    if final_bookmark.is_some_and(|f| now >= f) {
                        final_sent = true;
                    }
                    while next_periodic <= now {
                        next_periodic += interval;
                    }
                }
                after
            }
            _ = sleep_until(deadline) => Next::Close,
            _ = sink.out.closed() => return,
        };
        match next {
            Next::Continue => {}
            Next::Close => return,
            Next::Reset => {
                sink.abort().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmark_shapes() {
        assert_eq!(
            bookmark_line(Kind::Endpoints, 7, false),
            r#"{"type":"BOOKMARK","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"resourceVersion":"7"}}}"#.to_string() + "\n"
        );
        assert_eq!(
            bookmark_line(Kind::EndpointSlice, 184467, true),
            r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"184467","annotations":{"k8s.io/initial-events-end":"true"}},"addressType":"","endpoints":null,"ports":null}}"#.to_string() + "\n"
        );
    }
}
