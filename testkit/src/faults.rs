//! Injected faults: canned responses, delays, mid-stream connection resets, stalls, slow bodies and expired
//! continue tokens.

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
    /// Serve normally, but after `bytes` body bytes (default 0) send nothing for `ms` milliseconds, then go on;
    /// without `ms` the connection stays open and silent until the client gives up. Like a delay, it combines
    /// with the next matching fault.
    Stall,
    /// Serve normally, but send the body `bytes` bytes at a time (default 64), `ms` milliseconds apart (default
    /// 10). Combines with the next matching fault.
    SlowBody,
    /// Answer a paged LIST's `continue=` request with 410 Expired, as if its token had outlived the server's
    /// history (the Status carries the inconsistent-continue token, as a real server's does). Only matches
    /// non-watch requests whose query carries a continue token.
    ExpireContinue,
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

    /// Stop sending after `bytes` body bytes for `ms` milliseconds (None: until the client disconnects).
    pub fn stall(path_prefix: &str, bytes: usize, ms: Option<u64>) -> Self {
        Fault {
            kind: FaultKind::Stall,
            path_prefix: path_prefix.into(),
            count: 1,
            bytes: Some(bytes),
            ms,
            ..Default::default()
        }
    }

    /// Send the body `bytes` bytes at a time, `ms` milliseconds apart.
    pub fn slow_body(path_prefix: &str, bytes: usize, ms: u64) -> Self {
        Fault {
            kind: FaultKind::SlowBody,
            path_prefix: path_prefix.into(),
            count: 1,
            bytes: Some(bytes),
            ms: Some(ms),
            ..Default::default()
        }
    }

    /// Expire the continue token of the next later-page LIST request.
    pub fn expire_continue(path_prefix: &str) -> Self {
        Fault {
            kind: FaultKind::ExpireContinue,
            path_prefix: path_prefix.into(),
            count: 1,
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
        let want_watch = match self.kind {
            FaultKind::ResetAfterBytes => self.watch.or(Some(true)),
            FaultKind::ExpireContinue => Some(false),
            _ => self.watch,
        };
        if self.kind == FaultKind::ExpireContinue && !query_has_continue(query) {
            return false;
        }
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

/// Whether a query string carries a non-empty `continue` parameter.
fn query_has_continue(query: &str) -> bool {
    query
        .split('&')
        .any(|kv| kv.strip_prefix("continue=").is_some_and(|v| !v.is_empty()))
}

/// What to do with one request, after consulting the queue.
#[derive(Debug, Default)]
pub struct Decision {
    pub delay_ms: u64,
    /// A canned response (status, content type, body, retry-after).
    pub respond: Option<Fault>,
    /// Treat the request's continue token as expired.
    pub expire_continue: bool,
    /// How the response body is delivered (resets, stalls, slow bodies).
    pub shape: Shape,
}

/// How a response body is delivered: the faults that act on its bytes rather than on its content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Abort the connection (no terminating chunk) after this many body bytes.
    pub reset_after: Option<usize>,
    /// After `at` body bytes, send nothing for `ms` (None: until the client disconnects).
    pub stall: Option<Stall>,
    /// Send the body in pieces of `bytes`, `ms` apart.
    pub slow: Option<Slow>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub at: usize,
    pub ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slow {
    pub bytes: usize,
    pub ms: u64,
}

impl Shape {
    pub fn is_plain(&self) -> bool {
        *self == Shape::default()
    }
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

    /// Consumes the faults that apply: every matching delay, stall and slow body accumulates
    /// (the first stall and slow body count), and the first matching response, reset or
    /// expired-continue fault decides the outcome.
    pub fn take(&mut self, method: &str, path: &str, query: &str, is_watch: bool) -> Decision {
        let mut d = Decision::default();
        let mut i = 0;
        while i < self.queue.len() {
            let f = &mut self.queue[i];
            if !f.matches(method, path, query, is_watch) {
                i += 1;
                continue;
            }
            let decisive = !matches!(
                f.kind,
                FaultKind::DelayMs | FaultKind::Stall | FaultKind::SlowBody
            );
            match f.kind {
                FaultKind::DelayMs => d.delay_ms += f.ms.unwrap_or(0),
                FaultKind::Response => d.respond = Some(f.clone()),
                FaultKind::ResetAfterBytes => d.shape.reset_after = Some(f.bytes.unwrap_or(0)),
                FaultKind::Stall => {
                    d.shape.stall.get_or_insert(Stall {
                        at: f.bytes.unwrap_or(0),
                        ms: f.ms,
                    });
                }
                FaultKind::SlowBody => {
                    d.shape.slow.get_or_insert(Slow {
                        bytes: f.bytes.unwrap_or(64).max(1),
                        ms: f.ms.unwrap_or(10),
                    });
                }
                FaultKind::ExpireContinue => d.expire_continue = true,
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
        assert!(
            q.take("GET", "/apis/x", "", false)
                .shape
                .reset_after
                .is_none()
        );
        assert_eq!(
            q.take("GET", "/apis/x", "", true).shape.reset_after,
            Some(10)
        );
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

    #[test]
    fn stalls_and_slow_bodies_combine_with_the_deciding_fault() {
        let mut q = FaultQueue::default();
        q.push(Fault::stall("/api", 7, Some(300)));
        q.push(Fault::stall("/api", 1, None));
        q.push(Fault::slow_body("/api", 5, 20));
        q.push(Fault::reset_after_bytes("/api", 40));
        let d = q.take("GET", "/api/v1/endpoints", "watch=1", true);
        assert_eq!(
            d.shape,
            Shape {
                reset_after: Some(40),
                stall: Some(Stall {
                    at: 7,
                    ms: Some(300)
                }),
                slow: Some(Slow { bytes: 5, ms: 20 }),
            }
        );
        // The second stall was consumed too (every matching non-deciding fault applies once).
        assert!(q.pending().is_empty());
        let f: Fault =
            serde_json::from_str(r#"{"kind":"slow_body","path_prefix":"/apis/"}"#).unwrap();
        q.push(f);
        let d = q.take("GET", "/apis/x", "", false);
        assert_eq!(d.shape.slow, Some(Slow { bytes: 64, ms: 10 }));
        assert!(d.respond.is_none() && d.shape.reset_after.is_none());
    }

    #[test]
    fn expire_continue_only_hits_later_pages_of_lists() {
        let mut q = FaultQueue::default();
        q.push(Fault::expire_continue("/api/v1/endpoints"));
        assert!(
            !q.take("GET", "/api/v1/endpoints", "limit=5", false)
                .expire_continue
        );
        assert!(
            !q.take("GET", "/api/v1/endpoints", "continue=", false)
                .expire_continue
        );
        assert!(
            !q.take("GET", "/api/v1/endpoints", "watch=1&continue=x", true)
                .expire_continue
        );
        assert_eq!(q.pending().len(), 1);
        let d = q.take("GET", "/api/v1/endpoints", "limit=5&continue=abc", false);
        assert!(d.expire_continue && d.respond.is_none());
        assert!(q.pending().is_empty());
        let f: Fault = serde_json::from_str(r#"{"kind":"expire_continue"}"#).unwrap();
        assert_eq!(f.kind, FaultKind::ExpireContinue);
    }
}
