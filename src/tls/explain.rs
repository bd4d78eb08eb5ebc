//! Turning a TLS failure into a log line that says what went wrong and what to configure.

use rustls::{AlertDescription, CertificateError};

use super::Anchors;
use crate::config::ClusterConfig;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::cfg;
    use rustls::pki_types::{ServerName, UnixTime};

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
}
