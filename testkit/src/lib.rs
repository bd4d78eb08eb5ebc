//! A fake Kubernetes API server for v1 `Endpoints` and `discovery.k8s.io/v1` `EndpointSlice`,
//! faithful to the real kube-apiserver's list/watch protocol, with kubectl-style write verbs
//! and fault injection. Used by the integration tests and for demos.
//!
//! ```no_run
//! use k8s_fake_apiserver::{FakeApiServer, Options};
//! let server = FakeApiServer::start(Options::default()).unwrap();
//! server.apply(serde_json::json!({
//!     "kind": "EndpointSlice",
//!     "metadata": {"name": "web-abc12", "namespace": "shop",
//!                  "labels": {"kubernetes.io/service-name": "web"}},
//!     "addressType": "IPv4",
//!     "endpoints": [{"addresses": ["10.0.0.1"]}],
//!     "ports": [{"name": "http", "port": 8080}]
//! }));
//! println!("{}", server.url());
//! ```

mod admin;
mod body;
mod faults;
mod http;
mod json_out;
mod listing;
mod patch;
mod query;
mod selectors;
mod server;
mod shape;
mod state;
mod stats;
mod status;
mod store;
pub mod tls;
mod util;
mod watch;

pub use faults::{Fault, FaultKind};
pub use server::FakeApiServer;
pub use state::Rbac;
pub use stats::Stats;
pub use store::Kind;
pub use tls::TlsOptions;

use std::net::SocketAddr;

/// The service account a bearer token stands for, unless `Options::token_user` says otherwise.
pub const DEFAULT_TOKEN_USER: &str = "system:serviceaccount:default:k8s-disc";
use std::time::Duration;

/// Server configuration. `Default` gives a loopback server on an ephemeral port.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    /// Required bearer token (None: no authentication unless a client certificate is required).
    pub token: Option<String>,
    /// The user a valid bearer token authenticates as (named in 403 messages).
    pub token_user: String,
    /// Serve TLS (plain-HTTP connections then reach only the `/fake/` admin API).
    pub tls: Option<TlsOptions>,
    /// Also listen on `[::1]` at the same port as `listen` (an IPv4 address with port 0 picks one free on both).
    pub also_ipv6_loopback: bool,
    /// Events retained per kind; a watch from an older RV gets ERROR 410.
    pub history: usize,
    /// Period of BOOKMARK events on watches with `allowWatchBookmarks=true`.
    pub bookmark_interval: Duration,
    /// The WatchList feature (`sendInitialEvents`); off ⇒ 422 on streaming-list requests.
    pub watch_list: bool,
    /// Drop `sendInitialEvents` and `resourceVersionMatch` from watch requests unread, as a server older than
    /// the WatchList feature or a proxy that strips unknown parameters does: a streaming list becomes a plain
    /// watch, which never sends the initial-events-end bookmark.
    pub ignore_watch_list_params: bool,
    /// Continue tokens older than this get 410 Expired (None: only on compaction/expiry calls).
    pub continue_ttl: Option<Duration>,
    /// Split watch events across chunk boundaries and merge several per chunk.
    pub fuzz_chunks: bool,
    /// Send the v1 Endpoints deprecation `Warning` header.
    pub endpoints_warning: bool,
    /// Log one line per request to stderr.
    pub log_requests: bool,
    /// The resourceVersion of the empty store (the first write gets this + 1).
    pub initial_resource_version: u64,
    /// How long a request for a future RV waits before 504 "Too large resource version".
    pub too_large_wait: Duration,
    /// At most this many items per LIST page when the client asks for a `limit` (a real server may return
    /// fewer items than asked for); None: exactly the client's limit.
    pub max_page_size: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            token_user: DEFAULT_TOKEN_USER.to_string(),
            tls: None,
            also_ipv6_loopback: false,
            history: 10_000,
            bookmark_interval: Duration::from_secs(60),
            watch_list: true,
            ignore_watch_list_params: false,
            // Roughly etcd's 5-minute compaction window.
            continue_ttl: Some(Duration::from_secs(300)),
            fuzz_chunks: false,
            endpoints_warning: true,
            log_requests: false,
            initial_resource_version: 1000,
            too_large_wait: Duration::from_secs(3),
            max_page_size: None,
        }
    }
}
