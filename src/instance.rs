//! Initialised discovery instances: a parsed config plus one shared-memory region per cluster.
//!
//! `init` runs in the nginx master (init_by_lua), before fork; the regions it maps are inherited by every worker.
//! On `nginx -s reload` the master runs init again in the same process: an identical config returns the same
//! instance, and a changed one gets a new instance that still reuses the region of every cluster whose id and size
//! did not change (so workers keep serving while the new watcher relists).
//!
//! Subsystems: the http and stream subsystems each have a Lua VM and each call init, once per configuration
//! cycle (http first, then stream). The same config in both gets the one instance: one watcher, one region. A
//! different config gets an instance of its own whose regions no other instance of the same cycle uses, so each
//! subsystem serves exactly what its config selects and no region ever has two watchers. A subsystem calling init
//! again starts the next cycle (a reload).
//!
//! Lifetime: every handle given out through FFI holds a reference, released when its Lua VM is closed (the Lua
//! layer attaches `k8s_disc_release` as a finaliser). nginx keeps the previous cycle's VM until a reload
//! succeeds, so an instance lives exactly as long as a configuration that workers may still be forked from; the
//! registry itself only holds weak references.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::config::{self, ClusterConfig, Config};
use crate::store::{Lookup, Region};

/// Live instances of this process, for reuse across reloads and between subsystems.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new());

/// Configuration generations handed out by this process (the nginx master): one per `init`, growing, so a watcher
/// started from a newer configuration always outranks one started from an older configuration.
static GENERATION: AtomicU32 = AtomicU32::new(0);

fn next_generation() -> u32 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

/// Which process runs the watchers: the Lua layer's `watcher` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatcherMode {
    /// The privileged agent where nginx has one, else worker 0.
    Auto,
    /// The privileged agent only.
    Agent,
    /// Worker 0 (or the single process) even where there is an agent.
    Worker,
}

impl WatcherMode {
    fn name(self) -> &'static str {
        match self {
            WatcherMode::Auto => "auto",
            WatcherMode::Agent => "agent",
            WatcherMode::Worker => "worker",
        }
    }
}

/// Who calls `init`: the nginx subsystem of the calling Lua VM and where it runs the watchers.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitScope {
    /// `http` or `stream`.
    pub subsystem: String,
    /// Where the watchers run.
    pub watcher: WatcherMode,
}

/// Why discovery could not be initialised (`k8s_disc_init` writes its text into the caller's error buffer).
#[derive(Debug)]
pub enum InitError {
    /// The Lua layer's options document is not valid.
    Options(String),
    /// The discovery config is not valid.
    Config(crate::config::ConfigError),
    /// A cluster's shared-memory region could not be created (`field` names its `shared_size`).
    Region {
        /// `shared_size`, or `<id>.shared_size` in multi-cluster mode.
        field: String,
        /// What the store reported.
        error: crate::store::StoreError,
    },
    /// Two subsystems initialise the same config with different watcher placements.
    WatcherConflict {
        /// The subsystem initialising now.
        subsystem: String,
        /// The subsystem that initialised the config first.
        other: String,
        /// The placement asked for now.
        mode: &'static str,
        /// The placement the other subsystem asked for.
        other_mode: &'static str,
    },
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Options(m) => f.write_str(m),
            InitError::Config(e) => write!(f, "{e}"),
            InitError::Region { field, error } => {
                write!(f, "invalid discovery config: {field}: {error}")
            }
            InitError::WatcherConflict {
                subsystem,
                other,
                mode,
                other_mode,
            } => write!(
                f,
                "the {subsystem} subsystem initialises the same discovery config as the {other} subsystem, but \
                 with watcher = {mode} where {other} has watcher = {other_mode}; one config has one watcher: give \
                 both the same watcher option"
            ),
        }
    }
}

impl std::error::Error for InitError {}

impl InitScope {
    /// Parses the Lua layer's options document, e.g. `{"subsystem":"stream","watcher":"auto"}`.
    pub fn parse(json: &str) -> Result<InitScope, InitError> {
        let scope: InitScope = serde_json::from_str(json)
            .map_err(|e| InitError::Options(format!("invalid init options {json}: {e}")))?;
        let s = &scope.subsystem;
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(InitError::Options(format!(
                "invalid init options: subsystem = {s:?}: expected a subsystem name such as \"http\" or \"stream\""
            )));
        }
        Ok(scope)
    }

    /// The scope of a plain http-only setup (tests and embedding).
    pub fn http() -> InitScope {
        InitScope {
            subsystem: "http".into(),
            watcher: WatcherMode::Auto,
        }
    }
}

/// One configured cluster: its settings and its shared-memory region.
pub struct Cluster {
    /// Its settings, defaults applied.
    pub config: ClusterConfig,
    /// The shared memory its nodes are served from.
    pub region: Arc<Region>,
}

impl Cluster {
    /// How log lines name this cluster.
    pub fn label(&self) -> String {
        if self.config.id.is_empty() {
            self.config.authority()
        } else {
            format!("cluster {}", self.config.id)
        }
    }
}

/// One initialised discovery config: its clusters and their regions, shared by the subsystems and reloads that
/// initialise the same config.
pub struct Instance {
    /// Two configs are the same (one instance across subsystems and reloads) when they are equal: every field as
    /// given, every value taken from the environment, and inline kubeconfig data by content.
    pub config: Config,
    /// The watcher placement every subsystem sharing this instance asked for.
    pub watcher: WatcherMode,
    /// The configured clusters, in config order.
    pub clusters: Vec<Arc<Cluster>>,
    /// The process that started this instance's watchers (0 = none). A forked child sees its parent's pid here,
    /// which is not its own, so it correctly considers the watchers not running in itself.
    started_in: AtomicU32,
    /// The generation of the latest `init` that returned this instance (see `GENERATION`); workers forked after
    /// that init inherit it, workers of earlier cycles keep the older value.
    generation: AtomicU32,
    /// The generation this instance was built at: it is ready once a watcher of this or a newer configuration
    /// has listed every cluster (`Region::is_ready_for`).
    epoch: u32,
}

impl Instance {
    /// Parses the config and returns the matching instance from the process-wide registry, creating regions as
    /// needed (the FFI entry point; see the module docs for reuse across reloads and subsystems).
    pub fn init(json: &str, scope: &InitScope) -> Result<Arc<Instance>, InitError> {
        let config = parse_config(json)?;
        REGISTRY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .init(config, scope)
    }

    /// An instance with fresh regions of its own, outside the registry (tests and embedding).
    pub fn standalone(json: &str) -> Result<Arc<Instance>, InitError> {
        let config = parse_config(json)?;
        Ok(Arc::new(Instance::build(
            config,
            WatcherMode::Auto,
            |_| None,
        )?))
    }

    fn build(
        config: Config,
        watcher: WatcherMode,
        reuse: impl Fn(&crate::config::ClusterConfig) -> Option<Arc<Region>>,
    ) -> Result<Instance, InitError> {
        let mut clusters = Vec::with_capacity(config.clusters.len());
        for c in &config.clusters {
            let region = match reuse(c) {
                Some(r) => r,
                None => Arc::new(Region::create(c.shared_size).map_err(|error| {
                    let field = if c.id.is_empty() {
                        "shared_size".to_string()
                    } else {
                        format!("{}.shared_size", c.id)
                    };
                    InitError::Region { field, error }
                })?),
            };
            clusters.push(Arc::new(Cluster {
                config: c.clone(),
                region,
            }));
        }
        let epoch = next_generation();
        Ok(Instance {
            config,
            watcher,
            clusters,
            started_in: AtomicU32::new(0),
            generation: AtomicU32::new(epoch),
            epoch,
        })
    }

    /// Marks the watchers as started in this process; false if they already were (e.g. a second Lua VM).
    pub fn mark_started(&self) -> bool {
        let me = std::process::id();
        let prev = self.started_in.swap(me, Ordering::AcqRel);
        prev != me
    }

    /// The configuration generation this instance was last handed out at (see the module docs).
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Whether service names carry a cluster id (multi-cluster mode).
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
    pub fn nodes(&self, name: &str, out: &mut [u8]) -> Lookup {
        let Some((idx, key)) = self.route(name) else {
            return Lookup::NotFound;
        };
        let mut found = self.clusters[idx].region.lookup(key.as_bytes(), out);
        if let Lookup::Found { hint, .. } = &mut found {
            // The cluster goes in the high half, so that `is_current` needs nothing but the pair.
            *hint |= (idx as u64) << 32;
        }
        found
    }

    /// Whether a (hint, version) pair from an earlier lookup still names current content: the `nodes()` fast path,
    /// which needs neither the name nor a hash.
    pub fn is_current(&self, hint: u64, version: u64) -> bool {
        self.clusters
            .get((hint >> 32) as usize)
            .is_some_and(|c| c.region.is_current(hint, version))
    }

    /// True once every cluster has completed its first full list.
    pub fn ready(&self) -> bool {
        self.clusters.iter().all(|c| self.cluster_ready(c))
    }

    /// Whether one of this instance's clusters has been listed by a watcher of this or a newer configuration,
    /// and, with `max_staleness`, confirmed current recently enough.
    pub fn cluster_ready(&self, cluster: &Cluster) -> bool {
        cluster.region.is_ready_for(self.epoch)
            && cluster.config.max_staleness.is_none_or(|max| {
                let synced = cluster.region.last_sync_ms();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                now.saturating_sub(synced) <= max.as_millis() as u64
            })
    }
}

/// The instances of this process and the current configuration cycle (see the module docs).
struct Registry {
    instances: Vec<Weak<Instance>>,
    /// The subsystems that called `init` in the current cycle, with the instance each got.
    cycle: Vec<(String, Weak<Instance>)>,
    /// The same for the cycle before: a changed config takes over its own subsystem's region first.
    previous: Vec<(String, Weak<Instance>)>,
}

impl Registry {
    const fn new() -> Registry {
        Registry {
            instances: Vec::new(),
            cycle: Vec::new(),
            previous: Vec::new(),
        }
    }

    fn init(&mut self, config: Config, scope: &InitScope) -> Result<Arc<Instance>, InitError> {
        self.instances.retain(|w| w.strong_count() > 0);
        if self.cycle.iter().any(|(s, _)| *s == scope.subsystem) {
            self.previous = std::mem::take(&mut self.cycle);
        }
        // Newest first, after the instance this subsystem had in the previous cycle.
        let own_previous = self
            .previous
            .iter()
            .find(|(s, _)| *s == scope.subsystem)
            .and_then(|(_, w)| w.upgrade());
        let mut live: Vec<Arc<Instance>> = self
            .instances
            .iter()
            .rev()
            .filter_map(Weak::upgrade)
            .collect();
        if let Some(own) = own_previous
            && let Some(at) = live.iter().position(|i| Arc::ptr_eq(i, &own))
        {
            live[..=at].rotate_right(1);
        }
        let this_cycle: Vec<(String, Arc<Instance>)> = self
            .cycle
            .iter()
            .filter_map(|(s, w)| Some((s.clone(), w.upgrade()?)))
            .collect();

        // The same config as another subsystem of this cycle: share its instance, so one watcher serves both.
        if let Some((other, inst)) = this_cycle.iter().find(|(_, i)| i.config == config) {
            if inst.watcher != scope.watcher {
                return Err(InitError::WatcherConflict {
                    subsystem: scope.subsystem.clone(),
                    other: other.clone(),
                    mode: scope.watcher.name(),
                    other_mode: inst.watcher.name(),
                });
            }
            return Ok(self.hand_out(inst.clone(), scope));
        }

        // A region another subsystem of this cycle serves from is never given to a second instance.
        let in_use = |region: &Arc<Region>| {
            this_cycle
                .iter()
                .flat_map(|(_, i)| i.clusters.iter())
                .any(|c| Arc::ptr_eq(&c.region, region))
        };

        // The same config as a previous cycle (a reload that left it unchanged): keep the instance.
        if let Some(inst) = live.iter().find(|i| {
            i.config == config
                && i.watcher == scope.watcher
                && !i.clusters.iter().any(|c| in_use(&c.region))
        }) {
            return Ok(self.hand_out(inst.clone(), scope));
        }

        let inst = Arc::new(Instance::build(config, scope.watcher, |c| {
            let region = live
                .iter()
                .flat_map(|i| i.clusters.iter())
                .find(|old| {
                    old.config.id == c.id
                        && old.config.shared_size == c.shared_size
                        && !in_use(&old.region)
                })
                .map(|old| old.region.clone())?;
            // Served data stays; readiness waits for this configuration's first list (see `epoch`).
            Some(region)
        })?);
        self.instances.push(Arc::downgrade(&inst));
        self.cycle
            .push((scope.subsystem.clone(), Arc::downgrade(&inst)));
        Ok(inst)
    }

    /// Returns an existing instance to a caller: a new generation, so the watcher started from this
    /// configuration outranks those of earlier cycles.
    fn hand_out(&mut self, inst: Arc<Instance>, scope: &InitScope) -> Arc<Instance> {
        inst.generation.store(next_generation(), Ordering::Relaxed);
        self.cycle
            .push((scope.subsystem.clone(), Arc::downgrade(&inst)));
        inst
    }
}

fn parse_config(json: &str) -> Result<Config, InitError> {
    config::parse(json, &|name| std::env::var(name).ok()).map_err(InitError::Config)
}

/// Two clusters, `one` and `two`, whose API servers are never contacted: an instance for tests of routing and
/// reporting that start no watcher.
#[cfg(test)]
pub(crate) const TWO_CLUSTERS: &str = r#"[
    {"id":"one","service":{"schema":"http","host":"127.0.0.1","port":"1"},"client":{"token":"t"},"shared_size":"1m"},
    {"id":"two","service":{"schema":"http","host":"127.0.0.1","port":"2"},"client":{"token":"t"},"shared_size":"1m"}
]"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_cluster_names_route_by_their_first_segment() {
        let inst = Instance::standalone(TWO_CLUSTERS).unwrap();
        assert_eq!(inst.route("one/ns/svc:http"), Some((0, "ns/svc:http")));
        assert_eq!(inst.route("two/ns/svc:8080"), Some((1, "ns/svc:8080")));
        // Ids cannot contain '/', so the id is always the first segment.
        assert_eq!(inst.route("two/a/b/c:p"), Some((1, "a/b/c:p")));
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
        assert_eq!(inst.route("one/ns/svc:http"), Some((0, "one/ns/svc:http")));
    }

    #[test]
    fn stale_hints_are_never_current() {
        let inst = Instance::standalone(TWO_CLUSTERS).unwrap();
        assert!(!inst.is_current(u64::MAX, 1));
        assert!(!inst.is_current(0, 0));
        assert!(!inst.is_current(5 << 32, 1));
    }

    fn conf(weight: u32) -> Config {
        parse_config(&format!(
            r#"{{"service":{{"schema":"http","host":"127.0.0.1","port":"1"}},"client":{{"token":"t"}},
                "default_weight":{weight},"shared_size":"1m"}}"#
        ))
        .unwrap()
    }

    fn scope(subsystem: &str, watcher: WatcherMode) -> InitScope {
        InitScope {
            subsystem: subsystem.into(),
            watcher,
        }
    }

    fn region(i: &Instance) -> &Arc<Region> {
        &i.clusters[0].region
    }

    const HTTP: fn() -> InitScope = || scope("http", WatcherMode::Auto);
    const STREAM: fn() -> InitScope = || scope("stream", WatcherMode::Auto);

    #[test]
    fn one_config_in_both_subsystems_is_one_instance() {
        let mut reg = Registry::new();
        let http = reg.init(conf(1), &HTTP()).unwrap();
        let g = http.generation();
        let stream = reg.init(conf(1), &STREAM()).unwrap();
        assert!(Arc::ptr_eq(&http, &stream));
        assert!(
            stream.generation() > g,
            "every init hands out a newer generation"
        );
    }

    #[test]
    fn different_configs_in_the_subsystems_never_share_a_region() {
        let mut reg = Registry::new();
        let http = reg.init(conf(1), &HTTP()).unwrap();
        let stream = reg.init(conf(2), &STREAM()).unwrap();
        assert!(!Arc::ptr_eq(region(&http), region(&stream)));

        // A reload changing both keeps each subsystem on its own region.
        let http2 = reg.init(conf(3), &HTTP()).unwrap();
        let stream2 = reg.init(conf(4), &STREAM()).unwrap();
        assert!(Arc::ptr_eq(region(&http2), region(&http)));
        assert!(Arc::ptr_eq(region(&stream2), region(&stream)));

        // A reload leaving both unchanged keeps both instances.
        assert!(Arc::ptr_eq(&reg.init(conf(3), &HTTP()).unwrap(), &http2));
        assert!(Arc::ptr_eq(
            &reg.init(conf(4), &STREAM()).unwrap(),
            &stream2
        ));
    }

    #[test]
    fn a_shared_config_changed_in_both_subsystems_keeps_its_region() {
        let mut reg = Registry::new();
        let first = reg.init(conf(1), &HTTP()).unwrap();
        assert!(Arc::ptr_eq(&first, &reg.init(conf(1), &STREAM()).unwrap()));
        let http = reg.init(conf(2), &HTTP()).unwrap();
        let stream = reg.init(conf(2), &STREAM()).unwrap();
        assert!(Arc::ptr_eq(&http, &stream));
        assert!(Arc::ptr_eq(region(&http), region(&first)));
    }

    #[test]
    fn a_shared_config_that_diverges_splits_into_two_regions() {
        let mut reg = Registry::new();
        let first = reg.init(conf(1), &HTTP()).unwrap();
        reg.init(conf(1), &STREAM()).unwrap();
        // Reload: http changes and takes the region over; stream keeps the old config, which must not come
        // back with the region that http's new watcher now writes.
        let http = reg.init(conf(2), &HTTP()).unwrap();
        let stream = reg.init(conf(1), &STREAM()).unwrap();
        assert!(Arc::ptr_eq(region(&http), region(&first)));
        assert!(!Arc::ptr_eq(&stream, &first));
        assert!(!Arc::ptr_eq(region(&stream), region(&http)));
        assert_eq!(stream.config.clusters[0].default_weight, 1);
    }

    #[test]
    fn one_config_with_two_watcher_modes_is_refused() {
        let mut reg = Registry::new();
        let _http = reg.init(conf(1), &HTTP()).unwrap();
        let err = reg
            .init(conf(1), &scope("stream", WatcherMode::Worker))
            .err()
            .unwrap();
        assert!(matches!(err, InitError::WatcherConflict { .. }), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("stream")
                && err.contains("watcher = worker")
                && err.contains("watcher = auto"),
            "{err}"
        );
        // The next cycle may change the mode: a new instance on the same region.
        let before = reg.init(conf(1), &HTTP()).unwrap();
        let after = reg
            .init(conf(1), &scope("http", WatcherMode::Worker))
            .unwrap();
        assert!(!Arc::ptr_eq(&before, &after));
        assert!(Arc::ptr_eq(region(&before), region(&after)));
        assert_eq!(after.watcher, WatcherMode::Worker);
    }

    /// Marks every cluster of `inst` as fully listed by a watcher of its latest generation.
    fn list_all(inst: &Instance) {
        for c in &inst.clusters {
            let mut w = crate::store::Writer::claim(&c.region, inst.generation()).unwrap();
            w.batch().unwrap().set_ready();
        }
    }

    #[test]
    fn a_new_config_waits_for_its_own_list_and_the_old_one_stays_ready() {
        let mut reg = Registry::new();
        let old = reg.init(conf(1), &HTTP()).unwrap();
        assert!(!old.ready());
        list_all(&old);
        assert!(old.ready());
        // A reload with a changed config reuses the region. Whether or not that reload then comes up, the
        // running configuration stays ready; the new one waits for its own first list.
        let new = reg.init(conf(2), &HTTP()).unwrap();
        assert!(Arc::ptr_eq(region(&old), region(&new)));
        assert!(old.ready());
        assert!(!new.ready());
        list_all(&new);
        assert!(new.ready() && old.ready());
        // An unchanged config (the same instance) stays ready across a reload.
        let same = reg.init(conf(2), &HTTP()).unwrap();
        assert!(Arc::ptr_eq(&same, &new) && same.ready());
    }

    #[test]
    fn init_options_are_validated() {
        let s = InitScope::parse(r#"{"subsystem":"stream","watcher":"agent"}"#).unwrap();
        assert_eq!(
            (s.subsystem.as_str(), s.watcher),
            ("stream", WatcherMode::Agent)
        );
        for bad in [
            r#"{"subsystem":"","watcher":"auto"}"#,
            r#"{"subsystem":"http"}"#,
            r#"{"subsystem":"http","watcher":"auto","x":1}"#,
            r#"{"subsystem":"Http","watcher":"auto"}"#,
        ] {
            assert!(InitScope::parse(bad).is_err(), "{bad}");
        }
    }
}
