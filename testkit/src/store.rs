//! The object store: Endpoints and EndpointSlices, the global resourceVersion, per-kind event
//! history, watcher fan-out and LIST snapshots for continue tokens.
//!
//! Everything lives behind one mutex owned by the server; every write assigns the next RV,
//! appends to the history and is sent to subscribed watchers while the lock is held, so a
//! watcher registered under the same lock never misses or duplicates an event.

use crate::status::{ApiError, Cause, CauseKind};
use crate::util;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// The two resource kinds the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 `Endpoints` (`/api/v1/.../endpoints`).
    Endpoints,
    /// discovery.k8s.io/v1 `EndpointSlice` (`/apis/discovery.k8s.io/v1/.../endpointslices`).
    EndpointSlice,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Endpoints, Kind::EndpointSlice];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Endpoints => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    pub fn list_kind(self) -> &'static str {
        match self {
            Kind::Endpoints => "EndpointsList",
            Kind::EndpointSlice => "EndpointSliceList",
        }
    }

    /// Plural resource name used in URLs.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
        }
    }

    /// API group ("" for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Endpoints => "",
            Kind::EndpointSlice => "discovery.k8s.io",
        }
    }

    /// `GroupResource.String()`: `endpoints` or `endpointslices.discovery.k8s.io`.
    pub fn qualified_resource(self) -> String {
        match self {
            Kind::Endpoints => "endpoints".into(),
            Kind::EndpointSlice => "endpointslices.discovery.k8s.io".into(),
        }
    }

    /// Accepts a kind (`EndpointSlice`), a resource (`endpointslices`) or a list kind,
    /// case-insensitively.
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "endpoints" | "endpointslist" | "ep" => Some(Kind::Endpoints),
            "endpointslice" | "endpointslices" | "endpointslicelist" => Some(Kind::EndpointSlice),
            _ => None,
        }
    }

    fn idx(self) -> usize {
        match self {
            Kind::Endpoints => 0,
            Kind::EndpointSlice => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change. `object` carries `metadata.resourceVersion == rv` (for DELETED the
/// deletion RV); `old` is the previous state, needed for selector transitions and rewinds.
pub struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub etype: EventType,
    pub object: Arc<Value>,
    pub old: Option<Arc<Value>>,
    /// The encoded watch line, shared by all watchers that send it unchanged.
    pub line: OnceLock<bytes::Bytes>,
}

impl Event {
    fn new(
        rv: u64,
        kind: Kind,
        etype: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) -> Arc<Self> {
        Arc::new(Event {
            rv,
            kind,
            etype,
            object,
            old,
            line: OnceLock::new(),
        })
    }
}

/// What the store sends to a registered watcher.
pub enum WatchMsg {
    Event(Arc<Event>),
    /// End the watch cleanly (terminating chunk).
    Close,
    /// Abort the connection without the terminating chunk.
    Reset,
}

/// Where a new watch starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WatchStart {
    /// Synthetic ADDED for every current object, then live events.
    Initial,
    /// Live events only, from now.
    Latest,
    /// Replay history after this RV, then live events.
    From(u64),
}

/// A registered watcher's starting material.
pub struct Subscription {
    pub initial: Vec<Arc<Event>>,
    /// The store RV at registration (the initial-events-end bookmark RV).
    pub rv: u64,
    pub rx: mpsc::UnboundedReceiver<WatchMsg>,
}

pub type ObjectMap = BTreeMap<String, Arc<Value>>;

#[derive(Default)]
struct KindState {
    /// Keyed by `namespace/name`, which is etcd's key order.
    objects: ObjectMap,
    history: VecDeque<Arc<Event>>,
    /// Watches from an RV below this cannot be served (events after it were dropped).
    floor: u64,
}

struct Snapshot {
    kind: Kind,
    rv: u64,
    objects: Arc<ObjectMap>,
}

/// How many LIST snapshots to keep for continue tokens (older ones are rebuilt from history).
const MAX_SNAPSHOTS: usize = 16;
/// How many issued continue-token RVs to remember for expiry.
const MAX_ISSUED: usize = 4096;

pub struct Store {
    rv: u64,
    kinds: [KindState; 2],
    history_cap: usize,
    subscribers: Vec<(Kind, mpsc::UnboundedSender<WatchMsg>)>,
    snapshots: VecDeque<Snapshot>,
    /// When a paged LIST at (kind, rv) was first served: continue-token expiry.
    issued: HashMap<(Kind, u64), Instant>,
    rv_tx: watch::Sender<u64>,
}

pub fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// `metadata.resourceVersion` of a stored object as a number.
pub fn object_rv(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn with_rv(obj: &Value, rv: u64) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rv.to_string()));
    }
    o
}

/// Server-side normalisation that the protobuf/etcd round trip performs on a real server:
/// empty omitempty fields vanish, and a slice's `endpoints`/`ports` (no omitempty) become null.
fn normalize(kind: Kind, obj: &mut Map<String, Value>) {
    obj.remove("kind");
    obj.remove("apiVersion");
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        for f in ["labels", "annotations"] {
            if meta
                .get(f)
                .is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
            {
                meta.remove(f);
            }
        }
        for f in ["ownerReferences", "finalizers", "managedFields"] {
            if meta
                .get(f)
                .is_some_and(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
            {
                meta.remove(f);
            }
        }
        for f in ["generateName", "selfLink"] {
            if meta
                .get(f)
                .is_some_and(|v| v.as_str() == Some("") || v.is_null())
            {
                meta.remove(f);
            }
        }
    }
    match kind {
        Kind::Endpoints => {
            if let Some(Value::Array(subsets)) = obj.get_mut("subsets") {
                for s in subsets.iter_mut().filter_map(Value::as_object_mut) {
                    for f in ["addresses", "notReadyAddresses", "ports"] {
                        if s.get(f)
                            .is_some_and(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
                        {
                            s.remove(f);
                        }
                    }
                }
            }
            if obj
                .get("subsets")
                .is_some_and(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
            {
                obj.remove("subsets");
            }
        }
        Kind::EndpointSlice => {
            obj.entry("addressType").or_insert_with(|| json!(""));
            for f in ["endpoints", "ports"] {
                let empty = obj
                    .get(f)
                    .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty));
                if empty {
                    obj.insert(f.into(), Value::Null);
                }
            }
        }
    }
}

/// Everything but `metadata`: a change there bumps a slice's `generation`.
fn spec_eq(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
        }
        v
    };
    strip(a) == strip(b)
}

impl Store {
    pub fn new(history_cap: usize, initial_rv: u64) -> (Self, watch::Receiver<u64>) {
        let (rv_tx, rv_rx) = watch::channel(initial_rv);
        let store = Store {
            rv: initial_rv,
            kinds: [KindState::default(), KindState::default()],
            history_cap: history_cap.max(1),
            subscribers: Vec::new(),
            snapshots: VecDeque::new(),
            issued: HashMap::new(),
            rv_tx,
        };
        (store, rv_rx)
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    fn state(&self, kind: Kind) -> &KindState {
        &self.kinds[kind.idx()]
    }

    fn state_mut(&mut self, kind: Kind) -> &mut KindState {
        &mut self.kinds[kind.idx()]
    }

    pub fn objects(&self, kind: Kind) -> &ObjectMap {
        &self.state(kind).objects
    }

    /// Oldest RV a watch can resume from (`oldest retained - 1` in the 410 message).
    pub fn floor(&self, kind: Kind) -> u64 {
        self.state(kind).floor
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.state(kind).objects.get(&key(ns, name)).cloned()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Appends to history, fans out to watchers and publishes the new RV.
    fn commit(&mut self, ev: Arc<Event>) {
        let cap = self.history_cap;
        let st = self.state_mut(ev.kind);
        st.history.push_back(ev.clone());
        while st.history.len() > cap {
            if let Some(old) = st.history.pop_front() {
                st.floor = old.rv;
            }
        }
        self.subscribers.retain(|(k, tx)| {
            if *k == ev.kind {
                tx.send(WatchMsg::Event(ev.clone())).is_ok()
            } else {
                !tx.is_closed()
            }
        });
        self.rv_tx.send_replace(self.rv);
    }

    /// Checks the body's type and namespace against the URL, and returns its object map
    /// with `metadata.namespace` filled in.
    fn prepare(kind: Kind, ns: &str, body: Value) -> Result<Map<String, Value>, ApiError> {
        let Value::Object(mut obj) = body else {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        };
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && !k.is_empty()
            && k != kind.name()
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({k}) does not match the resource ({})",
                kind.name()
            )));
        }
        if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
            && !v.is_empty()
            && v != kind.api_version()
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                kind.api_version()
            )));
        }
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        let Value::Object(meta) = meta else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
        Ok(obj)
    }

    /// POST: create a new object (`generateName` supported).
    pub fn create(&mut self, kind: Kind, ns: &str, body: Value) -> Result<Arc<Value>, ApiError> {
        let mut obj = Self::prepare(kind, ns, body)?;
        let meta = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("prepared");
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if prefix.is_empty() {
                return Err(ApiError::invalid_object(
                    kind,
                    "",
                    vec![Cause {
                        field: "metadata.name",
                        kind: CauseKind::Required("name or generateName is required".into()),
                    }],
                ));
            }
            // Retry on the (unlikely) collision, as the apiserver's name generator would.
            name = loop {
                let candidate = format!("{prefix}{}", util::random_suffix(5));
                if !self.state(kind).objects.contains_key(&key(ns, &candidate)) {
                    break candidate;
                }
            };
            meta.insert("name".into(), json!(name));
        }
        if self.state(kind).objects.contains_key(&key(ns, &name)) {
            return Err(ApiError::already_exists(kind, &name));
        }
        let rv = self.next_rv();
        meta.insert("uid".into(), json!(util::new_uid()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(util::now_rfc3339()));
        meta.remove("deletionTimestamp");
        if kind == Kind::EndpointSlice {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        normalize(kind, &mut obj);
        let obj = Arc::new(Value::Object(obj));
        self.state_mut(kind)
            .objects
            .insert(key(ns, &name), obj.clone());
        self.commit(Event::new(rv, kind, EventType::Added, obj.clone(), None));
        Ok(obj)
    }

    /// PUT: replace an existing object. Unless `force`, a non-empty
    /// `metadata.resourceVersion` in the body must equal the stored one.
    pub fn update(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        body: Value,
        force: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let mut obj = Self::prepare(kind, ns, body)?;
        let meta = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("prepared");
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta.insert("name".into(), json!(name));
            }
        }
        let Some(old) = self.get(kind, ns, name) else {
            return Err(ApiError::not_found(kind, name));
        };
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or("").to_string();
        if let Some(want) = meta.get("resourceVersion").and_then(Value::as_str)
            && !force
            && !want.is_empty()
            && want != old_rv
        {
            return Err(ApiError::conflict(kind, name));
        }
        // Server-managed fields survive a replace.
        for f in ["uid", "creationTimestamp"] {
            if let Some(v) = old.get("metadata").and_then(|m| m.get(f)) {
                meta.insert(f.into(), v.clone());
            }
        }
        meta.insert("resourceVersion".into(), json!(old_rv));
        meta.remove("deletionTimestamp");
        let old_gen = old.pointer("/metadata/generation").and_then(Value::as_i64);
        match old_gen {
            Some(g) => meta.insert("generation".into(), json!(g)),
            None => meta.remove("generation"),
        };
        normalize(kind, &mut obj);
        let mut new = Value::Object(obj);
        // etcd skips writes that change nothing: same RV, no event.
        if new == *old {
            return Ok(old);
        }
        if kind == Kind::EndpointSlice && !spec_eq(&new, &old) {
            new["metadata"]["generation"] = json!(old_gen.unwrap_or(0) + 1);
        }
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        let new = Arc::new(new);
        self.state_mut(kind)
            .objects
            .insert(key(ns, name), new.clone());
        self.commit(Event::new(
            rv,
            kind,
            EventType::Modified,
            new.clone(),
            Some(old),
        ));
        Ok(new)
    }

    /// Create or replace (without precondition): the library's `apply`.
    pub fn apply(&mut self, kind: Kind, ns: &str, body: Value) -> Result<Arc<Value>, ApiError> {
        let name = meta_str(&body, "name").unwrap_or("").to_string();
        if !name.is_empty() && self.get(kind, ns, &name).is_some() {
            self.update(kind, ns, &name, body, true)
        } else {
            self.create(kind, ns, body)
        }
    }

    /// PATCH: `f` maps the current object (with kind/apiVersion) to the patched one, which is
    /// then written like a PUT (so a resourceVersion in the patch acts as a precondition).
    pub fn patch(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        f: impl FnOnce(Value) -> Result<Value, ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let Some(old) = self.get(kind, ns, name) else {
            return Err(ApiError::not_found(kind, name));
        };
        let mut full = (*old).clone();
        if let Some(m) = full.as_object_mut() {
            m.insert("kind".into(), json!(kind.name()));
            m.insert("apiVersion".into(), json!(kind.api_version()));
        }
        let patched = f(full)?;
        self.update(kind, ns, name, patched, false)
    }

    /// DELETE: returns the object's last state; watchers get DELETED at the deletion RV.
    pub fn delete(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
    ) -> Result<Arc<Value>, ApiError> {
        let Some(old) = self.get(kind, ns, name) else {
            return Err(ApiError::not_found(kind, name));
        };
        if let Some(uid) = precondition_uid
            && meta_str(&old, "uid") != Some(uid)
        {
            return Err(ApiError::precondition_conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = precondition_rv
            && meta_str(&old, "resourceVersion") != Some(rv)
        {
            return Err(ApiError::precondition_conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion").unwrap_or("")
                ),
            ));
        }
        self.state_mut(kind).objects.remove(&key(ns, name));
        let rv = self.next_rv();
        let gone = Arc::new(with_rv(&old, rv));
        self.commit(Event::new(
            rv,
            kind,
            EventType::Deleted,
            gone,
            Some(old.clone()),
        ));
        Ok(old)
    }

    /// Deletes every object (DELETED events are emitted; the RV keeps increasing).
    pub fn reset(&mut self) -> usize {
        let mut n = 0;
        for kind in Kind::ALL {
            let keys: Vec<String> = self.state(kind).objects.keys().cloned().collect();
            for k in keys {
                if let Some((ns, name)) = k.split_once('/') {
                    n += usize::from(self.delete(kind, ns, name, None, None).is_ok());
                }
            }
        }
        n
    }

    /// Drops all history (any older RV now gets 410) and expires every continue token.
    pub fn compact(&mut self) {
        let rv = self.rv;
        for st in &mut self.kinds {
            st.history.clear();
            st.floor = rv;
        }
        self.expire_continue();
    }

    pub fn expire_continue(&mut self) {
        self.snapshots.clear();
        self.issued.clear();
    }

    /// Registers a watcher. Fails with the floor RV when `From(rv)` is too old.
    pub fn subscribe(&mut self, kind: Kind, start: WatchStart) -> Result<Subscription, u64> {
        let st = self.state(kind);
        let initial = match start {
            WatchStart::Initial => st
                .objects
                .values()
                .map(|o| Event::new(object_rv(o), kind, EventType::Added, o.clone(), None))
                .collect(),
            WatchStart::Latest => Vec::new(),
            WatchStart::From(rv) => {
                if rv < st.floor {
                    return Err(st.floor);
                }
                st.history.iter().filter(|e| e.rv > rv).cloned().collect()
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push((kind, tx));
        Ok(Subscription {
            initial,
            rv: self.rv,
            rx,
        })
    }

    /// Sends Close/Reset to every watcher and forgets them; returns how many were live.
    pub fn end_watches(&mut self, reset: bool) -> usize {
        let subs = std::mem::take(&mut self.subscribers);
        subs.into_iter()
            .filter(|(_, tx)| {
                tx.send(if reset {
                    WatchMsg::Reset
                } else {
                    WatchMsg::Close
                })
                .is_ok()
            })
            .count()
    }

    /// Snapshot of the current objects for paging, cached under the current RV.
    pub fn snapshot_now(&mut self, kind: Kind) -> Arc<ObjectMap> {
        let rv = self.rv;
        if let Some(s) = self.snapshots.iter().find(|s| s.kind == kind && s.rv == rv) {
            return s.objects.clone();
        }
        let objects = Arc::new(self.state(kind).objects.clone());
        self.remember_snapshot(kind, rv, objects.clone());
        objects
    }

    fn remember_snapshot(&mut self, kind: Kind, rv: u64, objects: Arc<ObjectMap>) {
        self.snapshots.push_back(Snapshot { kind, rv, objects });
        while self.snapshots.len() > MAX_SNAPSHOTS {
            self.snapshots.pop_front();
        }
    }

    /// The objects as they were at `rv`: a cached snapshot, or the live map with the
    /// newer history undone. `None` when history no longer reaches back that far.
    pub fn state_at(&mut self, kind: Kind, rv: u64) -> Option<Arc<ObjectMap>> {
        if let Some(s) = self.snapshots.iter().find(|s| s.kind == kind && s.rv == rv) {
            return Some(s.objects.clone());
        }
        if rv > self.rv {
            return None;
        }
        if rv == self.rv {
            return Some(self.snapshot_now(kind));
        }
        let st = self.state(kind);
        if rv < st.floor {
            return None;
        }
        let mut map = st.objects.clone();
        for ev in st.history.iter().rev().take_while(|e| e.rv > rv) {
            let k = key(
                meta_str(&ev.object, "namespace").unwrap_or(""),
                meta_str(&ev.object, "name").unwrap_or(""),
            );
            match (&ev.etype, &ev.old) {
                (EventType::Added, _) => {
                    map.remove(&k);
                }
                (_, Some(old)) => {
                    map.insert(k, old.clone());
                }
                (_, None) => {}
            }
        }
        let objects = Arc::new(map);
        self.remember_snapshot(kind, rv, objects.clone());
        Some(objects)
    }

    /// Records that a paged LIST at `rv` handed out a continue token (first time wins).
    pub fn issue_token(&mut self, kind: Kind, rv: u64) {
        if self.issued.len() >= MAX_ISSUED {
            // Forget the oldest half rather than grow without bound.
            let mut ages: Vec<_> = self.issued.iter().map(|(k, t)| (*t, *k)).collect();
            ages.sort();
            for (_, k) in ages.into_iter().take(MAX_ISSUED / 2) {
                self.issued.remove(&k);
            }
        }
        self.issued.entry((kind, rv)).or_insert_with(Instant::now);
    }

    /// When a token for (kind, rv) was issued, if it is still remembered.
    pub fn token_issued_at(&self, kind: Kind, rv: u64) -> Option<Instant> {
        self.issued.get(&(kind, rv)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, label: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": label}}, "addressType": "IPv4",
               "endpoints": [], "ports": [{"name": "", "port": 80}]})
    }

    #[test]
    fn rv_generation_and_noop() {
        let (mut s, _) = Store::new(10, 100);
        let a = s
            .create(Kind::EndpointSlice, "ns", slice("a", "x"))
            .unwrap();
        assert_eq!(object_rv(&a), 101);
        assert_eq!(a["metadata"]["generation"], 1);
        assert_eq!(a["endpoints"], Value::Null);
        let same = s
            .update(Kind::EndpointSlice, "ns", "a", slice("a", "x"), false)
            .unwrap();
        assert_eq!(object_rv(&same), 101, "no-op update keeps the RV");
        let relabel = s
            .update(Kind::EndpointSlice, "ns", "a", slice("a", "y"), false)
            .unwrap();
        assert_eq!(object_rv(&relabel), 102);
        assert_eq!(relabel["metadata"]["generation"], 1, "metadata-only change");
        let mut body = slice("a", "y");
        body["addressType"] = json!("IPv6");
        let b = s
            .update(Kind::EndpointSlice, "ns", "a", body, false)
            .unwrap();
        assert_eq!(b["metadata"]["generation"], 2);
        assert_eq!(b["metadata"]["uid"], a["metadata"]["uid"]);
    }

    #[test]
    fn rewind_history() {
        let (mut s, _) = Store::new(100, 1);
        s.create(Kind::Endpoints, "ns", json!({"metadata": {"name": "a"}}))
            .unwrap();
        let at = s.rv();
        s.create(Kind::Endpoints, "ns", json!({"metadata": {"name": "b"}}))
            .unwrap();
        s.delete(Kind::Endpoints, "ns", "a", None, None).unwrap();
        let past = s.state_at(Kind::Endpoints, at).unwrap();
        assert_eq!(past.keys().collect::<Vec<_>>(), vec!["ns/a"]);
        s.compact();
        assert!(s.state_at(Kind::Endpoints, at).is_none());
        assert!(s.subscribe(Kind::Endpoints, WatchStart::From(at)).is_err());
    }
}
