//! The listener, its background thread and runtime, and the library handle.

use crate::Options;
use crate::faults::Fault;
use crate::state::{Shared, typed};
use crate::stats::Stats;
use crate::store::Kind;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A running fake apiserver. It serves on its own thread with its own tokio runtime, so
/// both synchronous tests and tests with their own runtime can use it. Dropping it closes
/// the watches cleanly and stops the server.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("k8s-fake-apiserver: listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| crate::http::handle(shared.clone(), req, peer));
                    // Connection errors (client went away, injected resets) are expected.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = &mut stop => break,
        }
    }
    // End watches with their terminating chunk, and give them a moment to flush it.
    shared.store().end_watches(false);
    let until = Instant::now() + Duration::from_millis(500);
    while shared.stats.active_watches() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl FakeApiServer {
    /// Binds `opts.listen` and starts serving on a background thread.
    pub fn start(opts: Options) -> std::io::Result<FakeApiServer> {
        let listener = std::net::TcpListener::bind(opts.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(opts));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("k8s-fake-apiserver")
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("k8s-fake-apiserver".into())
            .spawn(move || {
                runtime.block_on(serve(listener, s, stop_rx));
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(FakeApiServer {
            shared,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (IPv6 addresses bracketed).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces an object (its `kind` says which; namespace defaults to
    /// `default`), ignoring resourceVersion preconditions. Returns the stored object with
    /// kind/apiVersion. Panics on an invalid object: use `try_apply` to handle errors.
    pub fn apply(&self, obj: Value) -> Value {
        self.try_apply(obj)
            .unwrap_or_else(|e| panic!("FakeApiServer::apply: {e}"))
    }

    pub fn try_apply(&self, obj: Value) -> Result<Value, String> {
        self.shared.apply(obj)
    }

    /// Applies an array or `{"items":[...]}` list in order.
    pub fn apply_all(&self, doc: Value) -> Result<Vec<Value>, String> {
        self.shared.apply_all(doc)
    }

    /// Loads a seed file (JSON array or list) and applies it in order.
    pub fn load_seed(&self, path: &Path) -> Result<usize, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.apply_all(doc).map(|v| v.len())
    }

    /// Deletes an object; returns its last state, or None if it did not exist.
    pub fn delete(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.shared
            .store()
            .delete(kind, ns, name, None, None)
            .ok()
            .map(|o| typed(kind, &o))
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.shared
            .store()
            .get(kind, ns, name)
            .map(|o| typed(kind, &o))
    }

    /// Applies a JSON merge patch to an existing object.
    pub fn merge_patch(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, String> {
        self.shared
            .store()
            .patch(kind, ns, name, |mut doc| {
                crate::patch::merge_patch(&mut doc, patch);
                Ok(doc)
            })
            .map(|o| typed(kind, &o))
            .map_err(|e| e.message)
    }

    /// All objects of a kind, in key order, with kind/apiVersion.
    pub fn list(&self, kind: Kind) -> Vec<Value> {
        self.shared
            .store()
            .objects(kind)
            .values()
            .map(|o| typed(kind, o))
            .collect()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv()
    }

    /// Drops all event history: any older RV gets 410 (watch ERROR event / LIST 410).
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Ends all watches cleanly (terminating chunk). Returns how many were open.
    pub fn close_watches(&self) -> usize {
        self.shared.store().end_watches(false)
    }

    /// Aborts all watch connections without the terminating chunk.
    pub fn reset_watches(&self) -> usize {
        self.shared.store().end_watches(true)
    }

    /// Expires every continue token handed out so far.
    pub fn expire_continue(&self) {
        self.shared.store().expire_continue();
    }

    /// Deletes every object (emitting DELETED events; the RV keeps increasing), clears
    /// faults and counters.
    pub fn reset(&self) -> usize {
        let n = self.shared.store().reset();
        self.shared.faults().clear();
        self.shared.stats.clear();
        n
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Polls until exactly `n` watches are active; false on timeout.
    pub fn wait_for_active_watches(&self, n: u64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.shared.stats.active_watches() == n {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sets the bearer token required from now on (`None` or empty: no auth). Open
    /// watches are not re-checked, as on a real server.
    pub fn set_token(&self, token: Option<&str>) {
        self.shared.set_token(token.map(str::to_string));
    }

    pub fn inject_fault(&self, fault: Fault) {
        self.shared.faults().push(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
