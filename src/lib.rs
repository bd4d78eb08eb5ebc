//! k8s-disc: Kubernetes service discovery for OpenResty and Apache APISIX.
//!
//! The nginx master parses the config and maps one shared-memory region per cluster (`instance`); one watcher
//! process runs the list/watch engine (`runtime`, `watcher`, `client`) and publishes node lists into the regions
//! (`view`, `publish`, `store`); every worker reads them lock-free through the C ABI (`ffi`), the library's only
//! interface. The configuration's keys, defaults and reference docs come from one table (`fields`).

// Every item reachable from outside (the C ABI, and the hidden surface the project's own tests use) says what it is.
#![warn(missing_docs)]
mod backoff;
mod client;
mod config;
mod dump;
pub mod ffi;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod instance;
mod kubeconfig;
mod lines;
mod log;
mod lookup;
mod metrics;
mod model;
mod publish;
mod runtime;
mod secret;
mod selector;
mod store;
mod sync_state;
mod tls;
mod topology;
mod view;
mod watcher;

/// The internals the project's own integration tests and benchmarks drive directly. Not an API: it changes with
/// the code.
#[doc(hidden)]
pub mod testing {
    pub use crate::dump::dump;
    pub use crate::instance::{Cluster, InitScope, Instance};
    pub use crate::log::{Level, set_max_level};
    pub use crate::model::Node;
    pub use crate::runtime::start;
    pub use crate::store::{Lookup, Metric, Region, RegionStatus, SyncState, Writer, decode_nodes};
    pub use crate::watcher::run;
}
