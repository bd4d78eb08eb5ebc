//! k8s-disc: Kubernetes service discovery for OpenResty and Apache APISIX.
//!
//! The nginx master parses the config and maps one shared-memory region per cluster (`instance`); one watcher
//! process runs the list/watch engine (`runtime`, `watcher`, `client`) and publishes node lists into the regions
//! (`view`, `publish`, `store`); every worker reads them lock-free through the C ABI (`ffi`). The configuration's keys, defaults and reference docs come from one table (`fields`).

pub mod backoff;
pub mod client;
pub mod config;
pub mod dump;
pub mod ffi;
pub mod fields;
#[doc(hidden)]
pub mod fuzzing;
pub mod instance;
pub mod kubeconfig;
pub mod log;
pub mod lookup;
pub mod metrics;
pub mod model;
pub mod publish;
pub mod runtime;
pub mod secret;
pub mod selector;
pub mod store;
pub mod sync_state;
pub mod tls;
pub mod view;
pub mod watcher;
