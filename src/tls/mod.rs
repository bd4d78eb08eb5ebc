//! TLS for one cluster: trust anchors, the client identity (mTLS), reading them from PEM, and (`explain`) turning
//! TLS failures into log lines that say what went wrong and what to configure.
//!
//! Trust: `client.ca_file` (or the kubeconfig's CA) when set is the only trust anchor; else the in-cluster
//! service-account `ca.crt` when present; else the system roots.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::secret::{MAX_PEM_FILE_BYTES, ReadError, SecretBytes, read_capped};

mod explain;
mod identity;
pub use explain::{describe, explain};
pub use identity::check_identity;

/// How messages name a cluster's settings: config fields, or kubeconfig fields when it comes from one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingNames {
    pub ca: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
    pub host: &'static str,
}

/// What TLS needs of one cluster's settings, however they were configured.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    /// The API server is reached over https (else plain http: no TLS at all).
    pub https: bool,
    /// Verify the server's certificate.
    pub ssl_verify: bool,
    /// The server's host (what its certificate must name).
    pub host: &'a str,
    pub ca: Option<&'a Pem>,
    pub client_cert: Option<&'a Pem>,
    pub client_key: Option<&'a Pem>,
    /// Where the in-cluster service-account CA would be.
    pub in_cluster_ca: &'a Path,
    pub names: SettingNames,
}

/// The service-account CA mounted into every pod.
pub const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Where PEM data comes from: a file (re-read when it changes) or inline data (from a kubeconfig's `*-data`).
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(SecretBytes),
}

impl Pem {
    pub fn read(&self) -> Result<Vec<u8>, ReadError> {
        match self {
            Pem::File(p) => read_capped(p, MAX_PEM_FILE_BYTES),
            Pem::Inline(b) => Ok(b.expose().to_vec()),
        }
    }

    /// Where the data comes from, without the data: what messages show.
    pub fn origin(&self) -> PemOrigin {
        match self {
            Pem::File(p) => PemOrigin::File(p.clone()),
            Pem::Inline(b) => PemOrigin::Inline {
                len: b.expose().len(),
            },
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Pem::File(p) => Some(p),
            Pem::Inline(_) => None,
        }
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin())
    }
}

/// A PEM source as errors name it: the file, or the size of inline data (errors must not carry key bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemOrigin {
    /// A file at this path.
    File(PathBuf),
    /// Inline data of this many bytes.
    Inline {
        /// Its size in bytes.
        len: usize,
    },
}

impl fmt::Display for PemOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemOrigin::File(p) => write!(f, "{}", p.display()),
            PemOrigin::Inline { len } => write!(f, "inline data ({len} bytes)"),
        }
    }
}

/// What is wrong with one PEM source: a CA bundle, a client certificate or its key. No variant holds key bytes.
#[derive(Debug)]
pub enum PemError {
    /// The file could not be read.
    Read(ReadError),
    /// The text holds no certificate.
    NoCertificate,
    /// A certificate block is malformed.
    InvalidPem(rustls::pki_types::pem::Error),
    /// The text holds no private key.
    NoKey,
    /// The private key block is malformed; the parser's error is dropped, as it may quote the key.
    InvalidKeyPem,
    /// The key does not belong to the first certificate.
    KeyMismatch,
    /// The certificate's DER structure cannot be walked to its public key.
    MalformedCertificate,
    /// The key's algorithm is not one that can sign (RSA, ECDSA P-256/P-384, Ed25519).
    UnsupportedKey,
    /// The certificate and key are refused for another reason.
    Unusable(rustls::Error),
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::Read(e) => write!(f, "{e}"),
            PemError::NoCertificate => {
                f.write_str("no certificate found (expected PEM blocks \"BEGIN CERTIFICATE\")")
            }
            PemError::InvalidPem(e) => write!(f, "invalid PEM: {e}"),
            PemError::NoKey => f.write_str(
                "no private key found (expected a PEM block \
                 \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")",
            ),
            PemError::InvalidKeyPem => f.write_str("invalid PEM private key"),
            PemError::KeyMismatch => {
                f.write_str("the private key does not belong to the certificate")
            }
            PemError::MalformedCertificate => {
                f.write_str("the certificate is not a well-formed X.509 certificate")
            }
            PemError::UnsupportedKey => f.write_str(
                "unsupported private key (RSA, ECDSA P-256/P-384 and Ed25519 are supported)",
            ),
            PemError::Unusable(e) => write!(f, "unusable certificate or key: {}", describe(e)),
        }
    }
}

impl std::error::Error for PemError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PemError::Read(e) => Some(e),
            PemError::InvalidPem(e) => Some(e),
            PemError::Unusable(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ReadError> for PemError {
    fn from(e: ReadError) -> PemError {
        PemError::Read(e)
    }
}

/// Why a cluster's TLS material cannot be loaded or used. Settings are named as `Settings::names` names them
/// (config fields, or kubeconfig fields).
#[derive(Debug)]
pub enum TlsError {
    /// A configured CA, client certificate or key is unusable.
    Setting {
        /// The setting.
        setting: &'static str,
        /// Where its PEM comes from.
        origin: PemOrigin,
        /// What is wrong.
        source: PemError,
    },
    /// The in-cluster service-account CA is unusable.
    InClusterCa {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        source: PemError,
    },
    /// The client certificate and key do not make a usable identity.
    Identity {
        /// The certificate's setting.
        cert_setting: &'static str,
        /// Where the certificate comes from.
        cert: PemOrigin,
        /// The key's setting.
        key_setting: &'static str,
        /// Where the key comes from.
        key: PemOrigin,
        /// What is wrong (boxed: it would make every `TlsError` twice as large).
        source: Box<PemError>,
    },
    /// No CA is configured, none is mounted, and the system has no root CAs.
    NoTrustAnchors {
        /// The setting that would provide one.
        ca_setting: &'static str,
    },
    /// Only one of the client certificate and key is configured.
    HalfIdentity {
        /// The certificate's setting.
        cert_setting: &'static str,
        /// The key's setting.
        key_setting: &'static str,
    },
    /// The TLS configuration could not be set up.
    Setup(rustls::Error),
    /// A CA certificate cannot be a trust anchor.
    UnusableCa {
        /// The trust anchors it belongs to.
        anchors: Anchors,
        /// Why it is refused.
        source: rustls::Error,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A read error names the file itself.
            TlsError::Setting {
                setting,
                source: source @ PemError::Read(_),
                ..
            } => write!(f, "{setting}: {source}"),
            TlsError::Setting {
                setting,
                origin,
                source,
            } => write!(f, "{setting} {origin}: {source}"),
            TlsError::InClusterCa {
                source: source @ PemError::Read(_),
                ..
            } => write!(f, "{source}"),
            TlsError::InClusterCa { path, source } => write!(f, "{}: {source}", path.display()),
            TlsError::Identity {
                cert_setting,
                cert,
                key_setting,
                key,
                source,
            } => write!(f, "{cert_setting} {cert} and {key_setting} {key}: {source}"),
            TlsError::NoTrustAnchors { ca_setting } => write!(
                f,
                "no trust anchors: the system has no root CAs; set {ca_setting}"
            ),
            TlsError::HalfIdentity {
                cert_setting,
                key_setting,
            } => write!(f, "{cert_setting} and {key_setting} go together"),
            TlsError::Setup(e) => write!(f, "TLS setup: {}", describe(e)),
            TlsError::UnusableCa { anchors, source } => {
                write!(
                    f,
                    "{anchors}: unusable CA certificate: {}",
                    describe(source)
                )
            }
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Setting { source, .. } | TlsError::InClusterCa { source, .. } => Some(source),
            TlsError::Identity { source, .. } => Some(source.as_ref()),
            TlsError::Setup(e) | TlsError::UnusableCa { source: e, .. } => Some(e),
            TlsError::NoTrustAnchors { .. } | TlsError::HalfIdentity { .. } => None,
        }
    }
}

/// Parses every certificate in PEM text; at least one is required.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        out.push(c.map_err(PemError::InvalidPem)?);
    }
    if out.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(out)
}

/// Parses the private key in PEM text: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`). Parse errors never quote the key.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PemError::NoKey,
        _ => PemError::InvalidKeyPem,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which trust anchors are in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchors {
    /// The configured CA (`client.ca_file` or the kubeconfig's).
    Configured(String),
    /// The in-cluster service-account CA at this path.
    InCluster(PathBuf),
    System,
    /// `ssl_verify: false`, or plain http.
    None,
}

impl fmt::Display for Anchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anchors::Configured(what) => write!(f, "only the CA in {what}"),
            Anchors::InCluster(p) => write!(f, "only the in-cluster CA {}", p.display()),
            Anchors::System => f.write_str("the system's root CAs"),
            Anchors::None => f.write_str("nothing (verification off)"),
        }
    }
}

/// The TLS material of one cluster as read now.
pub struct Material {
    pub anchors: Anchors,
    roots: Vec<CertificateDer<'static>>,
    identity: Option<Arc<rustls::sign::CertifiedKey>>,
    /// A digest of everything read, to notice changed content.
    pub digest: u64,
}

/// The files whose change means the TLS material must be read again.
pub fn watched_files(cfg: &Settings<'_>) -> Vec<PathBuf> {
    if !cfg.https {
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = [cfg.ca, cfg.client_cert, cfg.client_key]
        .into_iter()
        .flatten()
        .filter_map(|p| p.path().map(Path::to_path_buf))
        .collect();
    if cfg.ca.is_none() && cfg.ssl_verify {
        out.push(cfg.in_cluster_ca.to_path_buf());
    }
    out
}

/// Reads the cluster's TLS material. Errors name the setting and the file.
pub fn load(cfg: &Settings<'_>) -> Result<Material, TlsError> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut m = Material {
        anchors: Anchors::None,
        roots: Vec::new(),
        identity: None,
        digest: 0,
    };
    if !cfg.https {
        return Ok(m);
    }
    let from = cfg.names;
    if cfg.ssl_verify {
        if let Some(ca) = cfg.ca {
            let bytes = ca
                .read()
                .map_err(PemError::from)
                .map_err(in_setting(from.ca, ca))?;
            bytes.hash(&mut hasher);
            m.roots = parse_certs(&bytes).map_err(in_setting(from.ca, ca))?;
            m.anchors = Anchors::Configured(format!("{} {}", from.ca, ca.origin()));
        } else if cfg.in_cluster_ca.exists() {
            let p = cfg.in_cluster_ca;
            let in_cluster = |source| TlsError::InClusterCa {
                path: p.to_path_buf(),
                source,
            };
            let bytes = read_capped(p, MAX_PEM_FILE_BYTES).map_err(|e| in_cluster(e.into()))?;
            bytes.hash(&mut hasher);
            m.roots = parse_certs(&bytes).map_err(in_cluster)?;
            m.anchors = Anchors::InCluster(p.to_path_buf());
        } else {
            m.roots = rustls_native_certs::load_native_certs().certs;
            m.anchors = Anchors::System;
            if m.roots.is_empty() {
                return Err(TlsError::NoTrustAnchors {
                    ca_setting: from.ca,
                });
            }
        }
    }
    match (cfg.client_cert, cfg.client_key) {
        (Some(c), Some(k)) => {
            let cb = c
                .read()
                .map_err(PemError::from)
                .map_err(in_setting(from.cert, c))?;
            let kb = k
                .read()
                .map_err(PemError::from)
                .map_err(in_setting(from.key, k))?;
            cb.hash(&mut hasher);
            kb.hash(&mut hasher);
            let certs = parse_certs(&cb).map_err(in_setting(from.cert, c))?;
            let key = parse_key(&kb).map_err(in_setting(from.key, k))?;
            let identity =
                identity::certified_key(&certs, &key).map_err(|source| TlsError::Identity {
                    cert_setting: from.cert,
                    cert: c.origin(),
                    key_setting: from.key,
                    key: k.origin(),
                    source: Box::new(source),
                })?;
            m.identity = Some(identity);
        }
        (None, None) => {}
        _ => {
            return Err(TlsError::HalfIdentity {
                cert_setting: from.cert,
                key_setting: from.key,
            });
        }
    }
    m.digest = hasher.finish();
    Ok(m)
}

/// Names the setting and the PEM source in front of a PEM error.
fn in_setting<'a>(setting: &'static str, pem: &'a Pem) -> impl FnOnce(PemError) -> TlsError + 'a {
    move |source| TlsError::Setting {
        setting,
        origin: pem.origin(),
        source,
    }
}

/// Builds the rustls configuration from loaded material.
pub fn client_config(cfg: &Settings<'_>, m: &Material) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?;
    let builder = if cfg.https && !cfg.ssl_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if m.anchors == Anchors::System {
            // A bad system certificate must not stop discovery; the others still verify.
            roots.add_parsable_certificates(m.roots.iter().cloned());
        } else {
            for c in &m.roots {
                roots
                    .add(c.clone())
                    .map_err(|source| TlsError::UnusableCa {
                        anchors: m.anchors.clone(),
                        source,
                    })?;
            }
        }
        builder.with_root_certificates(roots)
    };
    match &m.identity {
        // Not `with_client_auth_cert`: it parses the certificate fully and refuses X.509 v1 (see `identity`).
        Some(key) => Ok(builder.with_client_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(key.clone()),
        ))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate: only used when the operator sets `ssl_verify: false`.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
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
        cert: &CertificateDer<'_>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A verified https cluster to a private address, named by config fields (`explain`'s tests use it too).
    pub(super) fn cfg() -> Settings<'static> {
        Settings {
            https: true,
            ssl_verify: true,
            host: "10.0.0.1",
            ca: None,
            client_cert: None,
            client_key: None,
            in_cluster_ca: Path::new(IN_CLUSTER_CA),
            names: SettingNames {
                ca: "client.ca_file",
                cert: "client.cert_file",
                key: "client.key_file",
                host: "service.host",
            },
        }
    }

    #[test]
    fn key_parse_errors_never_quote_the_key() {
        let e =
            parse_key(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0IQ==\n-----END PRIVATE KEY-----\n");
        // A syntactically fine PEM with garbage inside parses as DER bytes; the identity check rejects it.
        if let Ok(k) = e {
            let certs = vec![CertificateDer::from(vec![0x30, 0x00])];
            let e = check_identity(&certs, &k).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("c2VjcmV0"), "{shown}");
        }
        let e = parse_key(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0IQ==\n").unwrap_err();
        assert!(matches!(e, PemError::InvalidKeyPem), "{e:?}");
        let e = parse_key(b"nothing here").unwrap_err();
        assert!(matches!(e, PemError::NoKey), "{e:?}");
        assert!(e.to_string().contains("no private key found"), "{e}");
        let e = parse_certs(b"").unwrap_err();
        assert!(e.to_string().contains("no certificate found"), "{e}");
    }

    #[test]
    fn errors_name_inline_data_by_size_only() {
        let inline = Pem::Inline(SecretBytes::new(b"c2VjcmV0".to_vec()));
        let c = Settings {
            ca: Some(&inline),
            ..cfg()
        };
        let e = load(&c).err().expect("no certificate in the inline CA");
        assert!(matches!(
            &e,
            TlsError::Setting {
                source: PemError::NoCertificate,
                ..
            }
        ));
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("inline data (8 bytes)"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
}
