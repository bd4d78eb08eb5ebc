//! State shared by the HTTP handlers, the watch tasks and the library handle.

use crate::Options;
use crate::faults::FaultQueue;
use crate::stats::{Recorder, Stats};
use crate::store::{Kind, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::watch;

pub struct Shared {
    pub opts: Options,
    store: Mutex<Store>,
    /// Latest committed RV, for watches and lists waiting on a "too large" RV.
    pub rv_rx: watch::Receiver<u64>,
    token: Mutex<Option<String>>,
    faults: Mutex<FaultQueue>,
    rbac: Mutex<Rbac>,
    /// The generated PKI in `--tls` mode.
    pub pki: Option<crate::tls::Pki>,
    pub stats: Recorder,
    /// Until when the server is "down" after a simulated restart: connections are accepted and dropped at once.
    down_until: Mutex<Option<Instant>>,
    /// Bumped by a simulated restart: every open connection watches it and drops when it changes.
    pub epoch: watch::Sender<u64>,
}

/// RBAC switches: verbs (`get`, `list`, `watch`, ...) refused with 403 Forbidden, to every user or to the listed
/// users only. JSON form (`PUT /fake/rbac`): `{"deny": ["list", "watch"], "users": ["k8s-disc-client"]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rbac {
    pub deny: Vec<String>,
    pub users: Vec<String>,
}

impl Rbac {
    pub fn denies(&self, user: &str, verb: &str) -> bool {
        self.deny.iter().any(|v| v == verb)
            && (self.users.is_empty() || self.users.iter().any(|u| u == user))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not wedge the whole fake.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stored object with kind/apiVersion put back in, as GET returns it.
pub fn typed(kind: Kind, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("kind".into(), json!(kind.name()));
        m.insert("apiVersion".into(), json!(kind.api_version()));
    }
    v
}

impl Shared {
    pub fn new(opts: Options, pki: Option<crate::tls::Pki>) -> Self {
        let (store, rv_rx) = Store::new(opts.history, opts.initial_resource_version);
        Shared {
            rbac: Mutex::new(Rbac::default()),
            pki,
            token: Mutex::new(opts.token.clone().filter(|t| !t.is_empty())),
            opts,
            store: Mutex::new(store),
            rv_rx,
            faults: Mutex::new(FaultQueue::default()),
            stats: Recorder::default(),
            down_until: Mutex::new(None),
            epoch: watch::Sender::new(0),
        }
    }

    /// Simulates an API server restart: every open connection (watches, lists in flight, idle keep-alive ones)
    /// drops, new connections are dropped at once for `down`, and the restarted server has lost its watch
    /// history and continue tokens (its watch cache starts at the current resourceVersion), so a watch or a
    /// continue token from before the restart gets 410. Objects and the resourceVersion survive (they live in
    /// etcd).
    pub fn restart(&self, down: std::time::Duration) {
        *lock(&self.down_until) = Some(Instant::now() + down);
        self.epoch.send_modify(|e| *e += 1);
        let mut st = self.store();
        st.end_watches(true);
        st.compact();
        drop(st);
        self.stats.restarted();
    }

    /// Whether a simulated restart is still in progress.
    pub fn is_down(&self) -> bool {
        lock(&self.down_until).is_some_and(|t| Instant::now() < t)
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultQueue> {
        lock(&self.faults)
    }

    pub fn token(&self) -> Option<String> {
        lock(&self.token).clone()
    }

    pub fn set_token(&self, token: Option<String>) {
        *lock(&self.token) = token.filter(|t| !t.is_empty());
    }

    pub fn rbac(&self) -> Rbac {
        lock(&self.rbac).clone()
    }

    pub fn set_rbac(&self, rbac: Rbac) {
        *lock(&self.rbac) = rbac;
    }

    pub fn stats(&self) -> Stats {
        let rv = self.store().rv();
        let pending = self.faults().pending().len();
        self.stats.snapshot(rv, pending)
    }

    /// Creates or replaces one object whose `kind` says what it is (namespace defaults to
    /// `default`). Returns it as stored, with kind/apiVersion.
    pub fn apply(&self, obj: Value) -> Result<Value, String> {
        let kind_name = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let kind = Kind::parse(kind_name)
            .ok_or_else(|| format!("apply: unsupported or missing kind {kind_name:?}"))?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        let stored = self
            .store()
            .apply(kind, &ns, obj)
            .map_err(|e| e.message.clone())?;
        Ok(typed(kind, &stored))
    }

    /// Applies an array of objects or a `{"items":[...]}` list in order. Items of a typed
    /// list (`EndpointSliceList`) may omit their kind.
    pub fn apply_all(&self, doc: Value) -> Result<Vec<Value>, String> {
        let list_kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .and_then(|k| k.strip_suffix("List"))
            .map(str::to_string);
        let items = match doc {
            Value::Array(items) => items,
            Value::Object(mut m) if m.contains_key("items") => match m.remove("items") {
                Some(Value::Array(items)) => items,
                _ => return Err("\"items\" must be an array".into()),
            },
            obj @ Value::Object(_) => vec![obj],
            _ => return Err("expected an object, an array or a list".into()),
        };
        items
            .into_iter()
            .map(|mut item| {
                if item.get("kind").is_none()
                    && let (Some(k), Some(m)) = (&list_kind, item.as_object_mut())
                {
                    m.insert("kind".into(), json!(k));
                }
                self.apply(item)
            })
            .collect()
    }
}
