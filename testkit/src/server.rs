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

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        if shared.is_down() {
            // Restarting: the connection is closed at once, before any response.
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A simulated restart drops every connection open at the time.
            let mut epoch = shared.epoch.subscribe();
            let serve = async {
                match acceptor {
                    Some(acceptor) => {
                        serve_tls_or_plain(stream, peer, shared.clone(), acceptor).await
                    }
                    None => {
                        let conn = Conn {
                            peer,
                            tls: false,
                            user: None,
                        };
                        serve_http(stream, conn, shared.clone()).await
                    }
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = epoch.changed() => {}
            }
        });
    }
}

async fn serve(
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    let acceptor = shared
        .pki
        .as_ref()
        .map(|p| tokio_rustls::TlsAcceptor::from(p.server_config.clone()));
    let mut loops = Vec::new();
    for l in listeners {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => loops.push(tokio::spawn(accept_loop(
                l,
                shared.clone(),
                acceptor.clone(),
            ))),
            Err(e) => eprintln!("k8s-fake-apiserver: listener: {e}"),
        }
    }
    let _ = stop.await;
    loops.iter().for_each(|l| l.abort());
    // End watches with their terminating chunk, and give them a moment to flush it.
    shared.store().end_watches(false);
    let until = Instant::now() + Duration::from_millis(500);
    while shared.stats.active_watches() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Binds `opts.listen`, and with `also_ipv6_loopback` also `[::1]` on the same port (retrying with other ports
/// when that one is taken on `[::1]`).
fn bind(opts: &crate::Options) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut last_err = None;
    for _ in 0..20 {
        let first = std::net::TcpListener::bind(opts.listen)?;
        first.set_nonblocking(true)?;
        if !opts.also_ipv6_loopback {
            return Ok(vec![first]);
        }
        let port = first.local_addr()?.port();
        match std::net::TcpListener::bind(("::1", port)) {
            Ok(second) => {
                second.set_nonblocking(true)?;
                return Ok(vec![first, second]);
            }
            // A fixed port cannot move: report it.
            Err(e) if opts.listen.port() != 0 => return Err(e),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("cannot bind [::1]")))
}

/// What the handlers know about the connection a request came on.
#[derive(Clone, Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
    /// The user a verified client certificate authenticates as.
    pub user: Option<String>,
}

async fn serve_http<S>(stream: S, conn: Conn, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let svc = service_fn(move |req| crate::http::handle(shared.clone(), req, conn.clone()));
    // Connection errors (client went away, injected resets) are expected.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// In TLS mode one port serves both: a connection whose first byte starts a TLS handshake gets TLS, any other
/// plain HTTP (which reaches only the admin API, so tests keep driving the server with plain requests).
async fn serve_tls_or_plain(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let mut first = [0u8; 1];
    let is_tls = match tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut first)).await
    {
        Ok(Ok(1)) => first[0] == 0x16,
        _ => return,
    };
    if !is_tls {
        return serve_http(
            stream,
            Conn {
                peer,
                tls: false,
                user: None,
            },
            shared,
        )
        .await;
    }
    let tls = match acceptor.accept(stream).await {
        Ok(t) => t,
        Err(e) => {
            if shared.opts.log_requests {
                eprintln!("TLS handshake with {peer} failed: {e}");
            }
            shared.stats.handshake_failed();
            return;
        }
    };
    let user = {
        let (_, session) = tls.get_ref();
        session
            .peer_certificates()
            .and_then(|c| c.first())
            .zip(shared.pki.as_ref())
            .map(|(c, pki)| pki.user_of(c.as_ref()))
    };
    serve_http(
        tls,
        Conn {
            peer,
            tls: true,
            user,
        },
        shared,
    )
    .await;
}

impl FakeApiServer {
    /// Binds `opts.listen` and starts serving on a background thread.
    pub fn start(opts: Options) -> std::io::Result<FakeApiServer> {
        let listeners = bind(&opts)?;
        let addr = listeners[0].local_addr()?;
        let pki = match &opts.tls {
            Some(t) => Some(crate::tls::generate(t).map_err(std::io::Error::other)?),
            None => None,
        };
        let shared = Arc::new(Shared::new(opts, pki));
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
                runtime.block_on(serve(listeners, s, stop_rx));
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

    /// `http://127.0.0.1:PORT`, or `https://...` in TLS mode (IPv6 addresses bracketed).
    pub fn url(&self) -> String {
        let scheme = if self.shared.pki.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The directory holding the generated certificates and keys in TLS mode.
    pub fn tls_dir(&self) -> Option<&Path> {
        self.shared.opts.tls.as_ref().map(|t| t.dir.as_path())
    }

    /// Sets the RBAC switches (see `Rbac`).
    pub fn set_rbac(&self, rbac: crate::state::Rbac) {
        self.shared.set_rbac(rbac);
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

    /// Simulates an API server restart that loses the watch history: every open connection drops at once (no
    /// terminating chunk, no response for requests in flight), new connections are closed unanswered for
    /// `down`, and afterwards a watch or continue token from before the restart gets 410. Objects and the
    /// resourceVersion survive, as they do in etcd.
    pub fn restart(&self, down: Duration) {
        self.shared.restart(down);
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
