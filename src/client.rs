//! The HTTP(S) client for the Kubernetes API server: connection setup, authentication, and error classification.

use std::path::PathBuf;
use std::sync::Arc;
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

use crate::config::{ClusterConfig, Scheme};
use crate::model::Status;

/// The service-account CA mounted into every pod; trusted in addition to the system roots when present.
const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// Token files are re-read at least this often (the kubelet rotates projected tokens).
const TOKEN_FILE_TTL: Duration = Duration::from_secs(50);
/// Time allowed for connecting and receiving response headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read in one piece (a LIST page). Bigger pages are an error, not an OOM.
pub const MAX_BODY_BYTES: usize = 512 << 20;

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
                *code == 410 || reason == "Expired" || reason == "Gone"
            }
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn from_status(s: &Status, http_code: u16) -> ApiError {
        ApiError::Status {
            code: s
                .code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(http_code),
            reason: s.reason.clone().unwrap_or_default(),
            message: s.message.clone().unwrap_or_default(),
            retry_after: s
                .details
                .as_ref()
                .and_then(|d| d.retry_after_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
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

enum Auth {
    None,
    Static(String),
    File {
        path: PathBuf,
        cached: Mutex<Option<(String, Instant)>>,
    },
}

pub struct ApiClient {
    http: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    auth: Auth,
}

impl ApiClient {
    pub fn new(cfg: &ClusterConfig) -> Result<ApiClient, String> {
        let tls = tls_config(cfg)?;
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let auth = match (&cfg.token, &cfg.token_file) {
            (Some(t), _) if !t.is_empty() => Auth::Static(t.clone()),
            (_, Some(p)) => Auth::File {
                path: PathBuf::from(p),
                cached: Mutex::new(None),
            },
            _ => Auth::None,
        };
        Ok(ApiClient {
            http: client,
            base: cfg.base_url(),
            auth,
        })
    }

    async fn token(&self) -> Result<Option<String>, ApiError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Static(t) => Ok(Some(t.clone())),
            Auth::File { path, cached } => {
                let mut c = cached.lock().await;
                if let Some((t, at)) = c.as_ref()
                    && at.elapsed() < TOKEN_FILE_TTL
                {
                    return Ok(Some(t.clone()));
                }
                // Re-open by path every time: the kubelet swaps the file through a symlink.
                match std::fs::read_to_string(path) {
                    Ok(t) => {
                        let t = t.trim().to_string();
                        *c = Some((t.clone(), Instant::now()));
                        Ok(Some(t))
                    }
                    Err(e) => match c.as_ref() {
                        // Keep using the last good token rather than sending none.
                        Some((t, _)) => Ok(Some(t.clone())),
                        None => Err(ApiError::Transport(format!(
                            "cannot read token file {}: {e}",
                            path.display()
                        ))),
                    },
                }
            }
        }
    }

    /// Forgets a cached file token so the next request re-reads it (called after a 401).
    pub async fn invalidate_token(&self) {
        if let Auth::File { cached, .. } = &self.auth {
            *cached.lock().await = None;
        }
    }

    /// Sends a GET and returns the response once its status is a success; error statuses are read and classified.
    pub async fn get(&self, path_and_query: &str) -> Result<Response<Incoming>, ApiError> {
        let mut req = Request::get(format!("{}{}", self.base, path_and_query))
            .header("Accept", "application/json");
        if let Some(t) = self.token().await? {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = match tokio::time::timeout(HEADER_TIMEOUT, self.http.request(req)).await {
            Err(_) => {
                return Err(ApiError::Transport(format!(
                    "no response within {}s",
                    HEADER_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(ApiError::Transport(error_chain(&e))),
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
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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
                message: String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_string(),
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

/// Joins an error with its sources: hyper's top-level messages alone ("client error (Connect)") say too little.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

fn tls_config(cfg: &ClusterConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    if cfg.scheme == Scheme::Https && !cfg.ssl_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    if cfg.scheme == Scheme::Https {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        if std::path::Path::new(IN_CLUSTER_CA).exists() {
            let certs = CertificateDer::pem_file_iter(IN_CLUSTER_CA)
                .map_err(|e| format!("{IN_CLUSTER_CA}: {e}"))?;
            for c in certs {
                let c = c.map_err(|e| format!("{IN_CLUSTER_CA}: {e}"))?;
                roots.add(c).map_err(|e| format!("{IN_CLUSTER_CA}: {e}"))?;
            }
        }
        for c in rustls_native_certs::load_native_certs().certs {
            // A bad system certificate must not stop discovery; the others still verify.
            let _ = roots.add(c);
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any server certificate: only used when the operator sets `ssl_verify: false`.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
