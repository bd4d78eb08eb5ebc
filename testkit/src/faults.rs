//! Injected faults: canned responses, delays and mid-stream connection resets.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What an injected fault does to the matching request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with `status` (and `body`/`content_type`/`retry_after`) instead of serving.
    #[default]
    #[serde(alias = "status")]
    Response,
    /// Serve normally but abort the connection (no terminating chunk) after `bytes` body
    /// bytes. Applies to watches only, unless `watch: false` is set (then to lists etc.).
    ResetAfterBytes,
    /// Wait `ms` milliseconds, then serve normally (or apply the next matching fault).
    DelayMs,
}

/// One queued fault. JSON form (POST /fake/faults):
/// `{"kind":"response","path_prefix":"/api/v1/endpoints","count":1,"status":429,
///   "retry_after":1,"body":"...","content_type":"text/plain","watch":true,"method":"GET",
///   "query_contains":"continue="}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fault {
    pub kind: FaultKind,
    /// Matches request paths (without query) starting with this; empty matches every API path.
    pub path_prefix: String,
    /// How many matching requests it applies to.
    pub count: u32,
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub body: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Option<usize>,
    pub ms: Option<u64>,
    /// Only watch requests (true) or only non-watch requests (false).
    pub watch: Option<bool>,
    /// Only this HTTP method.
    pub method: Option<String>,
    /// Only requests whose query string contains this (e.g. `continue=` for the later pages of a list).
    pub query_contains: Option<String>,
}

impl Default for Fault {
    /// A 1-shot canned response matching every API path; `count` defaults to 1 in JSON too.
    fn default() -> Self {
        Fault {
            kind: FaultKind::Response,
            path_prefix: String::new(),
            count: 1,
            status: None,
            retry_after: None,
            body: None,
            content_type: None,
            bytes: None,
            ms: None,
            watch: None,
            method: None,
            query_contains: None,
        }
    }
}

impl Fault {
    /// A canned response with this status code.
    pub fn response(path_prefix: &str, status: u16) -> Self {
        Fault {
            kind: FaultKind::Response,
            path_prefix: path_prefix.into(),
            count: 1,
            status: Some(status),
            ..Default::default()
        }
    }

    /// Abort the body after `bytes` bytes.
    pub fn reset_after_bytes(path_prefix: &str, bytes: usize) -> Self {
        Fault {
            kind: FaultKind::ResetAfterBytes,
            path_prefix: path_prefix.into(),
            count: 1,
            bytes: Some(bytes),
            ..Default::default()
        }
    }

    /// Delay the response by `ms` milliseconds.
    pub fn delay_ms(path_prefix: &str, ms: u64) -> Self {
        Fault {
            kind: FaultKind::DelayMs,
            path_prefix: path_prefix.into(),
            count: 1,
            ms: Some(ms),
            ..Default::default()
        }
    }

    pub fn count(mut self, n: u32) -> Self {
        self.count = n;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn body(mut self, content_type: &str, body: &str) -> Self {
        self.content_type = Some(content_type.into());
        self.body = Some(body.into());
        self
    }

    /// Restrict to watch (`true`) or non-watch (`false`) requests.
    pub fn only_watch(mut self, watch: bool) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Restrict to requests whose query string contains `needle`.
    pub fn query_contains(mut self, needle: &str) -> Self {
        self.query_contains = Some(needle.into());
        self
    }

    fn matches(&self, method: &str, path: &str, query: &str, is_watch: bool) -> bool {
        // A reset targets the next watch unless `watch: false` explicitly aims it at lists,
        // so that a relist on the same path does not use it up.
        let want_watch = self
            .watch
            .or((self.kind == FaultKind::ResetAfterBytes).then_some(true));
        path.starts_with(&self.path_prefix)
            && want_watch.is_none_or(|w| w == is_watch)
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// What to do with one request, after consulting the queue.
#[derive(Debug, Default)]
pub struct Decision {
    pub delay_ms: u64,
    /// A canned response (status, content type, body, retry-after).
    pub respond: Option<Fault>,
    pub reset_after: Option<usize>,
}

#[derive(Default)]
pub struct FaultQueue {
    queue: VecDeque<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, f: Fault) {
        if f.count > 0 {
            self.queue.push_back(f);
        }
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }

    pub fn pending(&self) -> Vec<Fault> {
        self.queue.iter().cloned().collect()
    }

    /// Consumes the faults that apply: every matching delay accumulates, and the first
    /// matching response or reset fault decides the outcome.
    pub fn take(&mut self, method: &str, path: &str, query: &str, is_watch: bool) -> Decision {
        let mut d = Decision::default();
        let mut i = 0;
        while i < self.queue.len() {
            let f = &mut self.queue[i];
            if !f.matches(method, path, query, is_watch) {
                i += 1;
                continue;
            }
            let decisive = f.kind != FaultKind::DelayMs;
            match f.kind {
                FaultKind::DelayMs => d.delay_ms += f.ms.unwrap_or(0),
                FaultKind::Response => d.respond = Some(f.clone()),
                FaultKind::ResetAfterBytes => d.reset_after = Some(f.bytes.unwrap_or(0)),
            }
            f.count -= 1;
            if f.count == 0 {
                self.queue.remove(i);
            } else {
                i += 1;
            }
            if decisive {
                break;
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_order_and_counts() {
        let mut q = FaultQueue::default();
        q.push(Fault::delay_ms("/api", 5));
        q.push(Fault::response("/api/v1/endpoints", 429).count(2));
        q.push(Fault::reset_after_bytes("/apis", 10));
        let d = q.take("GET", "/api/v1/endpoints", "", false);
        assert_eq!(d.delay_ms, 5);
        assert_eq!(d.respond.unwrap().status, Some(429));
        assert!(q.take("GET", "/apis/x", "", false).reset_after.is_none());
        assert_eq!(q.take("GET", "/apis/x", "", true).reset_after, Some(10));
        assert_eq!(
            q.take("GET", "/api/v1/endpoints", "", true)
                .respond
                .unwrap()
                .status,
            Some(429)
        );
        assert!(q.pending().is_empty());
        let f: Fault = serde_json::from_str(r#"{"kind":"reset_after_bytes","bytes":3}"#).unwrap();
        assert_eq!(f.kind, FaultKind::ResetAfterBytes);
    }
}
