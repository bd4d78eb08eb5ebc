//! TLS for one cluster: trust anchors, the client identity (mTLS), reading them from PEM, and turning TLS
//! failures into log lines that say what went wrong and what to configure.
//!
//! Trust: `client.ca_file` (or the kubeconfig's CA) when set is the only trust anchor; else the in-cluster
//! service-account `ca.crt` when present; else the system roots.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError};

use crate::config::{ClusterConfig, Scheme};
use crate::secret::{MAX_PEM_FILE_BYTES, SecretBytes, read_capped};

/// The service-account CA mounted into every pod.
pub const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Where PEM data comes from: a file (re-read when it changes) or inline data (from a kubeconfig's `*-data`).
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(SecretBytes),
}

impl Pem {
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Pem::File(p) => read_capped(p, MAX_PEM_FILE_BYTES).map_err(|e| e.to_string()),
            Pem::Inline(b) => Ok(b.expose().to_vec()),
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
        match self {
            Pem::File(p) => write!(f, "{}", p.display()),
            Pem::Inline(b) => write!(f, "inline data ({} bytes)", b.expose().len()),
        }
    }
}

/// Parses every certificate in PEM text; at least one is required.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        out.push(c.map_err(|e| format!("invalid PEM: {e}"))?);
    }
    if out.is_empty() {
        return Err("no certificate found (expected PEM blocks \"BEGIN CERTIFICATE\")".into());
    }
    Ok(out)
}

/// Parses the private key in PEM text: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`). Parse errors never quote the key.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no private key found (expected a PEM block \
             \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")"
                .to_string()
        }
        _ => "invalid PEM private key".to_string(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks that the key is usable (RSA, ECDSA P-256/P-384 or Ed25519) and belongs to the first certificate.
pub fn check_identity(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), String> {
    rustls::sign::CertifiedKey::from_der(certs.to_vec(), key.clone_key(), &provider())
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate".to_string()
            }
            rustls::Error::General(m)
                if m.contains("unsupported") || m.contains("failed to parse") =>
            {
                "unsupported private key (RSA, ECDSA P-256/P-384 and Ed25519 are supported)".into()
            }
            other => format!("unusable certificate or key: {other}"),
        })
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
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// A digest of everything read, to notice changed content.
    pub digest: u64,
}

/// The files whose change means the TLS material must be read again.
pub fn watched_files(cfg: &ClusterConfig) -> Vec<PathBuf> {
    if cfg.scheme != Scheme::Https {
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = [&cfg.ca, &cfg.client_cert, &cfg.client_key]
        .into_iter()
        .flatten()
        .filter_map(|p| p.path().map(Path::to_path_buf))
        .collect();
    if cfg.ca.is_none() && cfg.ssl_verify {
        out.push(cfg.in_cluster_ca.clone());
    }
    out
}

/// Reads the cluster's TLS material. Errors name the setting and the file.
pub fn load(cfg: &ClusterConfig) -> Result<Material, String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut m = Material {
        anchors: Anchors::None,
        roots: Vec::new(),
        identity: None,
        digest: 0,
    };
    if cfg.scheme != Scheme::Https {
        return Ok(m);
    }
    let from = cfg.source();
    if cfg.ssl_verify {
        if let Some(ca) = &cfg.ca {
            let bytes = ca.read().map_err(|e| format!("{}: {e}", from.ca))?;
            bytes.hash(&mut hasher);
            m.roots = parse_certs(&bytes).map_err(|e| format!("{} {ca:?}: {e}", from.ca))?;
            m.anchors = Anchors::Configured(format!("{} {ca:?}", from.ca));
        } else if cfg.in_cluster_ca.exists() {
            let p = &cfg.in_cluster_ca;
            let bytes = read_capped(p, MAX_PEM_FILE_BYTES).map_err(|e| e.to_string())?;
            bytes.hash(&mut hasher);
            m.roots = parse_certs(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            m.anchors = Anchors::InCluster(p.clone());
        } else {
            m.roots = rustls_native_certs::load_native_certs().certs;
            m.anchors = Anchors::System;
            if m.roots.is_empty() {
                return Err(format!(
                    "no trust anchors: the system has no root CAs; set {}",
                    from.ca
                ));
            }
        }
    }
    match (&cfg.client_cert, &cfg.client_key) {
        (Some(c), Some(k)) => {
            let cb = c.read().map_err(|e| format!("{}: {e}", from.cert))?;
            let kb = k.read().map_err(|e| format!("{}: {e}", from.key))?;
            cb.hash(&mut hasher);
            kb.hash(&mut hasher);
            let certs = parse_certs(&cb).map_err(|e| format!("{} {c:?}: {e}", from.cert))?;
            let key = parse_key(&kb).map_err(|e| format!("{} {k:?}: {e}", from.key))?;
            check_identity(&certs, &key)
                .map_err(|e| format!("{} {c:?} and {} {k:?}: {e}", from.cert, from.key))?;
            m.identity = Some((certs, key));
        }
        (None, None) => {}
        _ => return Err(format!("{} and {} go together", from.cert, from.key)),
    }
    m.digest = hasher.finish();
    Ok(m)
}

/// Builds the rustls configuration from loaded material.
pub fn client_config(cfg: &ClusterConfig, m: &Material) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if cfg.scheme == Scheme::Https && !cfg.ssl_verify {
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
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", m.anchors))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    match &m.identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("client certificate: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// What went wrong in a TLS failure and what to do about it, when the error chain holds a TLS error we can
/// explain; `None` otherwise.
pub fn explain(
    err: &(dyn std::error::Error + 'static),
    cfg: &ClusterConfig,
    anchors: &Anchors,
) -> Option<String> {
    let tls = find_tls_error(err)?;
    let from = cfg.source();
    let verify_off = "or service.ssl_verify: false to skip verification (unsafe)";
    let text = match tls {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "TLS verification failed: the API server's certificate is signed by an unknown issuer \
                 (trusting {anchors}); set {} to the CA that signed it, {verify_off}",
                from.ca
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let names = match ce {
                    CertificateError::NotValidForNameContext { presented, .. } => {
                        format!(" (it is valid for: {})", presented.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "TLS verification failed: the API server's certificate does not name {}{names}; \
                     {} must match one of the certificate's subject alternative names",
                    cfg.host, from.host
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                let when = match ce {
                    CertificateError::ExpiredContext { not_after, .. } => {
                        format!(" on {}", crate::log::utc_timestamp(not_after.as_secs()))
                    }
                    _ => String::new(),
                };
                format!(
                    "TLS verification failed: the API server's certificate expired{when}; renew it \
                     (or check this host's clock)"
                )
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                let when = match ce {
                    CertificateError::NotValidYetContext { not_before, .. } => {
                        format!(" until {}", crate::log::utc_timestamp(not_before.as_secs()))
                    }
                    _ => String::new(),
                };
                format!(
                    "TLS verification failed: the API server's certificate is not valid yet{when}; \
                     check this host's clock"
                )
            }
            other => format!(
                "TLS verification failed: the API server's certificate is invalid ({other:?}); check \
                 {}, {verify_off}",
                from.ca
            ),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => format!(
                "the API server requires a client certificate: set {} and {}",
                from.cert, from.key
            ),
            AlertDescription::CertificateExpired => format!(
                "the API server refused our client certificate as expired: renew {}",
                from.cert
            ),
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied => {
                let have = if cfg.client_cert.is_some() {
                    format!(
                        "{} must be signed by a CA the API server accepts client certificates from",
                        from.cert
                    )
                } else {
                    format!("set {} and {}", from.cert, from.key)
                };
                format!("the API server refused our client certificate ({alert:?} alert): {have}")
            }
            other => format!("the API server ended the TLS handshake with a {other:?} alert"),
        },
        _ => return None,
    };
    Some(text)
}

/// A rustls error anywhere in an error's source chain (hyper wraps it in `io::Error`s).
fn find_tls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        // `io::Error::source` skips the error it wraps: step into it instead.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            cur = Some(inner);
            continue;
        }
        cur = e.source();
    }
    None
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
    use rustls::pki_types::{ServerName, UnixTime};

    fn cfg() -> ClusterConfig {
        let c = crate::config::parse(
            r#"{"service":{"host":"10.0.0.1","port":443},"client":{"token":"t"}}"#,
            &|_| None,
        )
        .expect("valid");
        c.clusters[0].clone()
    }

    fn explained(e: rustls::Error) -> String {
        let io = std::io::Error::other(e);
        explain(&io, &cfg(), &Anchors::System).expect("explained")
    }

    #[test]
    fn verification_failures_name_the_reason_and_the_fix() {
        let t = explained(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(t.contains("unknown issuer"), "{t}");
        assert!(t.contains("set client.ca_file"), "{t}");
        assert!(t.contains("ssl_verify: false"), "{t}");
        let t = explained(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("10.0.0.1").unwrap().to_owned(),
                presented: vec!["DnsName(\"kubernetes\")".into()],
            },
        ));
        assert!(t.contains("does not name 10.0.0.1"), "{t}");
        assert!(t.contains("service.host must match"), "{t}");
        assert!(t.contains("kubernetes"), "{t}");
        let t = explained(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(2_000_000_000)),
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    1_000_000_000,
                )),
            },
        ));
        assert!(t.contains("expired on 2001/09/09 01:46:40"), "{t}");
        let t = explained(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ));
        assert!(t.contains("not valid yet"), "{t}");
        let t = explained(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert!(
            t.contains("requires a client certificate: set client.cert_file and client.key_file"),
            "{t}"
        );
        let t = explained(rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(t.contains("refused our client certificate"), "{t}");
        // Not a TLS error: nothing to explain.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&io, &cfg(), &Anchors::System), None);
    }

    #[test]
    fn key_parse_errors_never_quote_the_key() {
        let e =
            parse_key(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0IQ==\n-----END PRIVATE KEY-----\n");
        // A syntactically fine PEM with garbage inside parses as DER bytes; the identity check rejects it.
        if let Ok(k) = e {
            let certs = vec![CertificateDer::from(vec![0x30, 0x00])];
            let e = check_identity(&certs, &k).unwrap_err();
            assert!(!e.contains("c2VjcmV0"), "{e}");
        }
        let e = parse_key(b"nothing here").unwrap_err();
        assert!(e.contains("no private key found"), "{e}");
        let e = parse_certs(b"").unwrap_err();
        assert!(e.contains("no certificate found"), "{e}");
    }
}
