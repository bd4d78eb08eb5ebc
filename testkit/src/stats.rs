//! Request counters and the recent-request log exposed by `GET /fake/stats`.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

const RECENT: usize = 50;

/// A point-in-time copy of the server's counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    #[serde(rename = "resourceVersion")]
    pub resource_version: u64,
    /// LIST requests served (every page counts).
    pub lists: u64,
    pub gets: u64,
    /// Successful create/update/patch/delete calls over HTTP.
    pub writes: u64,
    pub watches_started: u64,
    pub active_watches: u64,
    /// Active watches per client (User-Agent, else peer IP).
    pub active_watches_by_client: BTreeMap<String, u64>,
    /// The last 50 request lines, oldest first: `GET /api/v1/endpoints?watch=1`.
    pub requests: Vec<String>,
    pub faults_pending: usize,
    /// API requests per authenticated user (client certificate CN or the token's user).
    pub requests_by_user: BTreeMap<String, u64>,
    /// Requests answered 401 / 403, and TLS handshakes that failed.
    pub unauthorized: u64,
    pub forbidden: u64,
    pub tls_handshake_failures: u64,
    /// Simulated restarts (`restart`).
    pub restarts: u64,
}

#[derive(Default)]
struct Inner {
    lists: u64,
    gets: u64,
    writes: u64,
    watches_started: u64,
    active: BTreeMap<String, u64>,
    recent: VecDeque<String>,
    by_user: BTreeMap<String, u64>,
    unauthorized: u64,
    forbidden: u64,
    handshake_failures: u64,
    restarts: u64,
}

#[derive(Default, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

/// Decrements the active-watch gauge when the watch ends, however it ends.
pub struct ActiveWatch {
    inner: Arc<Mutex<Inner>>,
    client: String,
}

impl Drop for ActiveWatch {
    fn drop(&mut self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = g.active.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                g.active.remove(&self.client);
            }
        }
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn request(&self, line: String) {
        let mut g = self.lock();
        if g.recent.len() == RECENT {
            g.recent.pop_front();
        }
        g.recent.push_back(line);
    }

    pub fn user(&self, user: &str) {
        *self.lock().by_user.entry(user.to_string()).or_default() += 1;
    }

    pub fn unauthorized(&self) {
        self.lock().unauthorized += 1;
    }

    pub fn forbidden(&self) {
        self.lock().forbidden += 1;
    }

    pub fn handshake_failed(&self) {
        self.lock().handshake_failures += 1;
    }

    pub fn restarted(&self) {
        self.lock().restarts += 1;
    }

    pub fn list(&self) {
        self.lock().lists += 1;
    }

    pub fn get(&self) {
        self.lock().gets += 1;
    }

    pub fn write(&self) {
        self.lock().writes += 1;
    }

    pub fn watch_started(&self, client: &str) -> ActiveWatch {
        let mut g = self.lock();
        g.watches_started += 1;
        *g.active.entry(client.to_string()).or_default() += 1;
        ActiveWatch {
            inner: self.inner.clone(),
            client: client.to_string(),
        }
    }

    pub fn active_watches(&self) -> u64 {
        self.lock().active.values().sum()
    }

    /// Zeroes the counters and the request log (the active-watch gauge stays true).
    pub fn clear(&self) {
        let mut g = self.lock();
        g.lists = 0;
        g.gets = 0;
        g.writes = 0;
        g.watches_started = 0;
        g.recent.clear();
        g.by_user.clear();
        g.unauthorized = 0;
        g.forbidden = 0;
        g.handshake_failures = 0;
        g.restarts = 0;
    }

    pub fn snapshot(&self, resource_version: u64, faults_pending: usize) -> Stats {
        let g = self.lock();
        Stats {
            resource_version,
            lists: g.lists,
            gets: g.gets,
            writes: g.writes,
            watches_started: g.watches_started,
            active_watches: g.active.values().sum(),
            active_watches_by_client: g.active.clone(),
            requests: g.recent.iter().cloned().collect(),
            faults_pending,
            requests_by_user: g.by_user.clone(),
            unauthorized: g.unauthorized,
            forbidden: g.forbidden,
            tls_handshake_failures: g.handshake_failures,
            restarts: g.restarts,
        }
    }
}
