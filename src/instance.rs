//! Initialised discovery instances: a parsed config plus one shared-memory region per cluster.
//!
//! `init` runs in the nginx master (init_by_lua), before fork; the regions it maps are inherited by every worker.
//! On `nginx -s reload` the master runs init again in the same process: an identical config returns the same
//! instance, and a changed one gets a new instance that still reuses the region of every cluster whose id and size
//! did not change (so workers keep serving while the new watcher relists).
//!
//! Lifetime: every handle given out through FFI holds a reference, released when its Lua VM is closed (the Lua
//! layer attaches `k8s_disc_release` as a finaliser). nginx keeps the previous cycle's VM until a reload
//! succeeds, so an instance lives exactly as long as a configuration that workers may still be forked from; the
//! registry itself only holds weak references.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::config::{self, Config};
use crate::store::{Lookup, Region};
use crate::watcher::Cluster;

/// Live instances of this process, for reuse across reloads.
static INSTANCES: Mutex<Vec<Weak<Instance>>> = Mutex::new(Vec::new());

/// Configuration generations handed out by this process (the nginx master): one per `init`, growing, so a watcher
/// started from a newer configuration always outranks one started from an older configuration.
static GENERATION: AtomicU32 = AtomicU32::new(0);

fn next_generation() -> u32 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

pub struct Instance {
    pub config: Config,
    fingerprint: String,
    pub clusters: Vec<Arc<Cluster>>,
    /// The process that started this instance's watchers (0 = none). A forked child sees its parent's pid here,
    /// which is not its own, so it correctly considers the watchers not running in itself.
    started_in: AtomicU32,
    /// The generation of the latest `init` that returned this instance (see `GENERATION`); workers forked after
    /// that init inherit it, workers of earlier cycles keep the older value.
    generation: AtomicU32,
}

/// Result of a `nodes` lookup on an instance.
pub enum NodesLookup {
    Found {
        hint: u64,
        version: u64,
        count: u32,
        len: usize,
    },
    NotFound,
    TooSmall {
        need: usize,
    },
    Busy,
}

impl Instance {
    /// Parses the config and returns the matching instance from the process-wide registry, creating regions as
    /// needed (the FFI entry point; see the module docs for reuse across reloads).
    pub fn init(json: &str) -> Result<Arc<Instance>, String> {
        let config = parse_config(json)?;
        let fingerprint = fingerprint(&config);
        let mut registry = INSTANCES.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|w| w.strong_count() > 0);
        let live: Vec<Arc<Instance>> = registry.iter().filter_map(Weak::upgrade).collect();
        if let Some(inst) = live.iter().find(|i| i.fingerprint == fingerprint) {
            inst.generation.store(next_generation(), Ordering::Relaxed);
            return Ok(inst.clone());
        }
        let inst = Arc::new(Instance::build(config, fingerprint, |c| {
            let region = live
                .iter()
                .rev()
                .flat_map(|i| i.clusters.iter())
                .find(|old| old.config.id == c.id && old.config.shared_size == c.shared_size)
                .map(|old| old.region.clone())?;
            // Served data stays, but readiness waits for this configuration's first list.
            region.clear_ready();
            Some(region)
        })?);
        registry.push(Arc::downgrade(&inst));
        Ok(inst)
    }

    /// An instance with fresh regions of its own, outside the registry (tests and embedding).
    pub fn standalone(json: &str) -> Result<Arc<Instance>, String> {
        let config = parse_config(json)?;
        let fingerprint = fingerprint(&config);
        Ok(Arc::new(Instance::build(config, fingerprint, |_| None)?))
    }

    fn build(
        config: Config,
        fingerprint: String,
        reuse: impl Fn(&crate::config::ClusterConfig) -> Option<Arc<Region>>,
    ) -> Result<Instance, String> {
        let mut clusters = Vec::with_capacity(config.clusters.len());
        for c in &config.clusters {
            let region = match reuse(c) {
                Some(r) => r,
                None => Arc::new(Region::create(c.shared_size).map_err(|e| {
                    let field = if c.id.is_empty() {
                        "shared_size".to_string()
                    } else {
                        format!("{}.shared_size", c.id)
                    };
                    format!("invalid discovery config: {field}: {e}")
                })?),
            };
            clusters.push(Arc::new(Cluster {
                config: c.clone(),
                region,
            }));
        }
        Ok(Instance {
            config,
            fingerprint,
            clusters,
            started_in: AtomicU32::new(0),
            generation: AtomicU32::new(next_generation()),
        })
    }

    /// Marks the watchers as started in this process; false if they already were (e.g. a second Lua VM).
    pub fn mark_started(&self) -> bool {
        let me = std::process::id();
        let prev = self.started_in.swap(me, Ordering::AcqRel);
        prev != me
    }

    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn multi(&self) -> bool {
        self.config.multi
    }

    /// Splits a service name into (cluster index, key within that cluster's region).
    fn route<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        if !self.config.multi {
            return Some((0, name));
        }
        let (id, rest) = name.split_once('/')?;
        let idx = self.clusters.iter().position(|c| c.config.id == id)?;
        Some((idx, rest))
    }

    /// Looks up `name` (`ns/name:port`, or `id/ns/name:port` in multi-cluster mode) and copies its nodes into
    /// `out`. The returned hint packs the cluster index and slot, for `is_current` on the next call.
    pub fn nodes(&self, name: &str, out: &mut [u8]) -> NodesLookup {
        let Some((idx, key)) = self.route(name) else {
            return NodesLookup::NotFound;
        };
        match self.clusters[idx].region.lookup(key.as_bytes(), out) {
            Lookup::Found {
                slot,
                version,
                count,
                len,
            } => NodesLookup::Found {
                hint: ((idx as u64) << 32) | u64::from(slot),
                version,
                count,
                len,
            },
            Lookup::NotFound => NodesLookup::NotFound,
            Lookup::TooSmall { need } => NodesLookup::TooSmall { need },
            Lookup::Busy => NodesLookup::Busy,
        }
    }

    /// Whether a (hint, version) pair from an earlier lookup still names current content: the `nodes()` fast path,
    /// which needs neither the name nor a hash.
    pub fn is_current(&self, hint: u64, version: u64) -> bool {
        let (idx, slot) = ((hint >> 32) as usize, hint as u32);
        self.clusters
            .get(idx)
            .is_some_and(|c| c.region.is_current(slot, version))
    }

    /// True once every cluster has completed its first full list.
    pub fn ready(&self) -> bool {
        self.clusters.iter().all(|c| c.region.is_ready())
    }
}

fn parse_config(json: &str) -> Result<Config, String> {
    config::parse(json, &|name| std::env::var(name).ok()).map_err(|e| e.to_string())
}

/// Identity of a config for reuse across reloads: the input as given plus every value taken from the environment.
fn fingerprint(c: &Config) -> String {
    let mut s = c.raw.to_string();
    for cl in &c.clusters {
        s.push_str(&format!(
            "|{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            cl.id,
            cl.host,
            cl.port,
            cl.token.as_ref().map(|t| t.expose()),
            cl.token_file,
            pem_identity(&cl.ca),
            pem_identity(&cl.client_cert),
            pem_identity(&cl.client_key),
            cl.kubeconfig,
            cl.context,
        ));
    }
    s
}

/// A file by its path; inline data (from a kubeconfig) by a digest of its content, so a changed kubeconfig
/// makes a new instance.
fn pem_identity(p: &Option<crate::tls::Pem>) -> String {
    use std::hash::{Hash, Hasher};
    match p {
        Some(crate::tls::Pem::Inline(b)) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            b.expose().hash(&mut h);
            format!("inline:{:x}", h.finish())
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = r#"[
        {"id":"first","service":{"schema":"http","host":"127.0.0.1","port":"1"},"client":{"token":"t"},"shared_size":"1m"},
        {"id":"second","service":{"schema":"http","host":"127.0.0.1","port":"2"},"client":{"token":"t"},"shared_size":"1m"}
    ]"#;

    #[test]
    fn multi_cluster_names_route_by_their_first_segment() {
        let inst = Instance::standalone(MULTI).unwrap();
        assert_eq!(inst.route("first/ns/svc:http"), Some((0, "ns/svc:http")));
        assert_eq!(inst.route("second/ns/svc:8080"), Some((1, "ns/svc:8080")));
        // Ids cannot contain '/', so the id is always the first segment.
        assert_eq!(inst.route("second/a/b/c:p"), Some((1, "a/b/c:p")));
        assert_eq!(inst.route("third/ns/svc:http"), None);
        assert_eq!(inst.route("ns-without-cluster"), None);
        assert_eq!(inst.route("/ns/svc:http"), None);
    }

    #[test]
    fn single_cluster_names_are_keys_as_written() {
        let inst = Instance::standalone(
            r#"{"service":{"schema":"http","host":"127.0.0.1","port":"1"},"client":{"token":"t"},"shared_size":"1m"}"#,
        )
        .unwrap();
        assert_eq!(inst.route("ns/svc:http"), Some((0, "ns/svc:http")));
        assert_eq!(
            inst.route("first/ns/svc:http"),
            Some((0, "first/ns/svc:http"))
        );
    }

    #[test]
    fn stale_hints_are_never_current() {
        let inst = Instance::standalone(MULTI).unwrap();
        assert!(!inst.is_current(u64::MAX, 1));
        assert!(!inst.is_current(0, 0));
        assert!(!inst.is_current(5 << 32, 1));
    }
}
