//! The HTTP(S) client for the Kubernetes API server: connection setup, authentication, credential reloads, and
//! error classification.
//!
//! Credentials on disk (token file, CA, client certificate and key) are checked before every request: a changed
//! file (new inode, size or mtime, as when the kubelet or cert-manager swaps a symlink) is read again at once, and
//! every file is read again at least every 50 s and right after a 401 or a TLS failure. New TLS material builds a
//! new connection pool; requests already running (a watch) keep their connection, so nothing is dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

use crate::config::ClusterConfig;
use crate::log::{escape_server_text, log_at};
use crate::model::Status;
use crate::secret::{FileStamp, MAX_TOKEN_FILE_BYTES, ReadError, Secret, read_capped, stamp};
use crate::tls::{self, Anchors, TlsError};

/// Credential files are re-read at least this often (the kubelet rotates projected tokens; cert-manager
/// rotates certificates).
const RELOAD_EVERY: Duration = Duration::from_secs(50);
/// Time allowed for connecting and receiving response headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read in one piece (a LIST page). Bigger pages are an error, not an OOM.
pub const MAX_BODY_BYTES: usize = 512 << 20;
/// Longest server-provided text (Status message, error body) kept for a log line.
pub(crate) const MAX_SERVER_TEXT: usize = 512;

/// What went wrong talking to the API server, classified for the watch state machine.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// Connection refused/reset, timeout, TLS failure: retry after a back-off.
    Transport(String),
    /// The server answered with a non-success status.
    Status {
        code: u16,
        reason: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The response could not be understood.
    Decode(String),
}

impl ApiError {
    /// 410 Gone in any form (by code, or by reason from old servers): the resourceVersion or continue token is
    /// too old, so relist.
    pub fn is_gone(&self) -> bool {
        match self {
            ApiError::Status { code, reason, .. } => {
                crate::model::is_gone(Some(i64::from(*code)), reason)
            }
            _ => false,
        }
    }

    /// The server cannot serve the resourceVersion asked for: 410 in any form, or 504 "Too large resource
    /// version" (a server whose cache lags behind it). The next list asks for the latest state instead.
    pub fn is_rv_unavailable(&self) -> bool {
        self.is_gone()
            || matches!(self, ApiError::Status { code: 504, message, .. }
                if message.contains("Too large resource version"))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error a Status object describes; its texts are escaped and capped (they end up in log lines).
    pub fn from_status(s: &Status, http_code: u16) -> ApiError {
        ApiError::Status {
            code: s
                .code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(http_code),
            reason: escape_server_text(s.reason.as_deref().unwrap_or(""), 64),
            message: escape_server_text(s.message.as_deref().unwrap_or(""), MAX_SERVER_TEXT),
            retry_after: s.retry_after(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Transport(m) => write!(f, "connection error: {m}"),
            ApiError::Status {
                code,
                reason,
                message,
                ..
            } => {
                write!(f, "HTTP {code}")?;
                if !reason.is_empty() {
                    write!(f, " {reason}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            ApiError::Decode(m) => write!(f, "unexpected response: {m}"),
        }
    }
}

/// Why the client cannot be set up, or its credentials not re-read. No variant holds the token.
#[derive(Debug)]
pub enum ClientError {
    /// The TLS material cannot be loaded or used.
    Tls(TlsError),
    /// The token file cannot be read.
    TokenFileRead(ReadError),
    /// The token file is not UTF-8 text.
    TokenFileNotText {
        /// The token file.
        path: PathBuf,
    },
    /// The token file holds nothing but whitespace.
    TokenFileEmpty {
        /// The token file.
        path: PathBuf,
    },
    /// The token has characters an HTTP header cannot carry.
    TokenFileCharacters {
        /// The token file.
        path: PathBuf,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Tls(e) => write!(f, "{e}"),
            ClientError::TokenFileRead(e) => write!(
                f,
                "cannot read token file {}: {}",
                e.path().display(),
                e.cause()
            ),
            ClientError::TokenFileNotText { path } => {
                write!(f, "token file {} is not text", path.display())
            }
            ClientError::TokenFileEmpty { path } => {
                write!(f, "token file {} is empty", path.display())
            }
            ClientError::TokenFileCharacters { path } => write!(
                f,
                "token file {} holds characters that cannot be sent in a header",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Tls(e) => Some(e),
            ClientError::TokenFileRead(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TlsError> for ClientError {
    fn from(e: TlsError) -> ClientError {
        ClientError::Tls(e)
    }
}

type Http = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// What the client currently uses, and what it was read from.
struct State {
    http: Http,
    anchors: Anchors,
    tls_digest: u64,
    token: Option<Secret>,
    /// Stamps of `files`, as of the last read.
    stamps: Vec<Option<FileStamp>>,
    read_at: Instant,
    /// Read everything again before the next request (after a 401 or a TLS failure).
    stale: bool,
    /// The last reload error logged, so a persisting one is logged once.
    reload_error: Option<String>,
}

pub struct ApiClient {
    cfg: ClusterConfig,
    label: String,
    base: String,
    /// Every credential file: the token file first (when configured), then the TLS files.
    files: Vec<PathBuf>,
    state: Mutex<State>,
}

fn build_http(cfg: &ClusterConfig, m: &tls::Material) -> Result<Http, TlsError> {
    let tls = tls::client_config(&cfg.tls(), m)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_nodelay(true);
    // TCP keepalive lets the kernel notice a peer that vanished without a FIN (e.g. a load balancer dropping
    // idle flows) even while no watch event is due.
    http.set_keepalive(Some(Duration::from_secs(30)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}

/// Reads a token file: trimmed, non-empty, and only characters an HTTP header can carry.
fn read_token_file(path: &std::path::Path) -> Result<Secret, ClientError> {
    let bytes = read_capped(path, MAX_TOKEN_FILE_BYTES).map_err(ClientError::TokenFileRead)?;
    let text = String::from_utf8(bytes).map_err(|_| ClientError::TokenFileNotText {
        path: path.to_path_buf(),
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ClientError::TokenFileEmpty {
            path: path.to_path_buf(),
        });
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::TokenFileCharacters {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(t))
}

impl ApiClient {
    /// Reads the cluster's TLS material and token and builds the client. `label` names the cluster in log lines.
    pub fn new(cfg: &ClusterConfig, label: &str) -> Result<ApiClient, ClientError> {
        let material = tls::load(&cfg.tls())?;
        let http = build_http(cfg, &material)?;
        let mut files: Vec<PathBuf> = cfg.token_file.iter().map(PathBuf::from).collect();
        files.extend(tls::watched_files(&cfg.tls()));
        // A missing token file is reported per request (it may appear later), as before any reload.
        let token = match (&cfg.token, &cfg.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => read_token_file(std::path::Path::new(p)).ok(),
            (None, None) => None,
        };
        let stamps = files.iter().map(|f| stamp(f)).collect();
        Ok(ApiClient {
            cfg: cfg.clone(),
            label: label.to_string(),
            base: cfg.base_url(),
            files,
            state: Mutex::new(State {
                http,
                anchors: material.anchors,
                tls_digest: material.digest,
                token,
                stamps,
                read_at: Instant::now(),
                stale: false,
                reload_error: None,
            }),
        })
    }

    /// The trust anchors in use now.
    pub async fn anchors(&self) -> Anchors {
        self.state.lock().await.anchors.clone()
    }

    /// Reads the credential files again when they changed, when the last read is older than `RELOAD_EVERY`, or
    /// after a failure that may come from stale credentials. A failed read keeps what was read before.
    async fn current(&self) -> Result<(Http, Option<Secret>), ApiError> {
        let mut st = self.state.lock().await;
        let stamps: Vec<Option<FileStamp>> = self.files.iter().map(|f| stamp(f)).collect();
        if st.stale || st.read_at.elapsed() >= RELOAD_EVERY || stamps != st.stamps {
            let result = self.reload(&mut st);
            st.stamps = stamps;
            st.read_at = Instant::now();
            st.stale = false;
            match result {
                Ok(()) => st.reload_error = None,
                Err(errors) => {
                    let e = errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    if st.reload_error.as_deref() != Some(e.as_str()) {
                        log_at!(
                            Warn,
                            "{}: cannot re-read credentials: {e}; keeping the previous ones",
                            self.label
                        );
                    }
                    st.reload_error = Some(e);
                }
            }
        }
        if st.token.is_none()
            && let Some(p) = &self.cfg.token_file
        {
            // Never read successfully: try on every request until it can be read.
            match read_token_file(std::path::Path::new(p)) {
                Ok(t) => st.token = Some(t),
                Err(e) => return Err(ApiError::Transport(e.to_string())),
            }
        }
        Ok((st.http.clone(), st.token.clone()))
    }

    /// Every failure is returned: the token and the TLS material fail independently.
    fn reload(&self, st: &mut State) -> Result<(), Vec<ClientError>> {
        let mut errors = Vec::new();
        if let Some(p) = &self.cfg.token_file {
            match read_token_file(std::path::Path::new(p)) {
                Ok(t) => {
                    if st.token.as_ref().is_some_and(|old| old != &t) {
                        log_at!(
                            Info,
                            "{}: token file {p} changed; using the new token",
                            self.label
                        );
                    }
                    st.token = Some(t);
                }
                Err(e) => errors.push(e),
            }
        }
        match tls::load(&self.cfg.tls()).and_then(|m| {
            if m.digest == st.tls_digest {
                return Ok(None);
            }
            build_http(&self.cfg, &m).map(|h| Some((h, m)))
        }) {
            Ok(Some((http, m))) => {
                log_at!(
                    Info,
                    "{}: TLS certificates changed on disk; new connections use them (trusting {})",
                    self.label,
                    m.anchors
                );
                st.http = http;
                st.anchors = m.anchors;
                st.tls_digest = m.digest;
            }
            Ok(None) => {}
            Err(e) => errors.push(e.into()),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Has every credential read again before the next request (called after a 401).
    pub async fn invalidate_token(&self) {
        self.state.lock().await.stale = true;
    }

    /// Sends a GET and returns the response once its status is a success; error statuses are read and classified.
    pub async fn get(&self, path_and_query: &str) -> Result<Response<Incoming>, ApiError> {
        let (http, token) = self.current().await?;
        let mut req = Request::get(format!("{}{}", self.base, path_and_query))
            .header("Accept", "application/json");
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = match tokio::time::timeout(HEADER_TIMEOUT, http.request(req)).await {
            Err(_) => {
                return Err(ApiError::Transport(format!(
                    "no response within {}s",
                    HEADER_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => {
                let anchors = self.anchors().await;
                return Err(ApiError::Transport(
                    match tls::explain(&e, &self.cfg.tls(), &anchors) {
                        Some(why) => {
                            // Certificates may have been rotated on either side: read ours again.
                            self.state.lock().await.stale = true;
                            why
                        }
                        None => error_chain(&e),
                    },
                ));
            }
            Ok(Ok(r)) => r,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            self.invalidate_token().await;
        }
        let retry_after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(crate::model::retry_hint);
        let body = read_body(resp.into_body(), 64 << 10, Duration::from_secs(10))
            .await
            .unwrap_or_default();
        let mut err = match serde_json::from_slice::<Status>(&body) {
            Ok(s) if s.code.is_some() || s.reason.is_some() => {
                ApiError::from_status(&s, status.as_u16())
            }
            _ => ApiError::Status {
                code: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_string(),
                message: escape_server_text(
                    String::from_utf8_lossy(&body[..body.len().min(4 * MAX_SERVER_TEXT)]).trim(),
                    MAX_SERVER_TEXT,
                ),
                retry_after: None,
            },
        };
        if let ApiError::Status {
            retry_after: ra @ None,
            ..
        } = &mut err
        {
            *ra = retry_after;
        }
        Err(err)
    }
}

/// Reads a whole body, refusing more than `limit` bytes and giving up after `idle` without data (a half-open
/// connection would otherwise hang until TCP keepalive notices).
pub async fn read_body(
    mut body: Incoming,
    limit: usize,
    idle: Duration,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ApiError::Transport(format!(
                    "no data for {}s while reading a response",
                    idle.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let frame = frame.map_err(|e| ApiError::Transport(error_chain(&e)))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err(ApiError::Decode(format!(
                    "response body larger than {limit} bytes"
                )));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// One error's text, a TLS error's in words (rustls's own texts show enum names), also inside an `io::Error`.
fn in_words(e: &(dyn std::error::Error + 'static)) -> String {
    let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    });
    tls.map_or_else(|| e.to_string(), tls::describe)
}

/// Joins an error with its sources: hyper's top-level messages alone ("client error (Connect)") say too little.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = in_words(e);
    let mut src = e.source();
    while let Some(c) = src {
        let m = in_words(c);
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tls_error_in_a_chain_is_told_in_words() {
        let e = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            super::error_chain(&e),
            "invalid certificate: unknown issuer"
        );
        assert_eq!(e.to_string(), "invalid peer certificate: UnknownIssuer");
    }
}
