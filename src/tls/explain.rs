//! Turning a TLS failure into a log line that says what went wrong and what to configure, and any rustls error into
//! words (rustls's own texts show the names of its enum variants, e.g. `Other(OtherError(UnsupportedCertVersion))`).

use rustls::{AlertDescription, CertificateError};

use super::{Anchors, Settings};

/// What went wrong in a TLS failure and what to do about it, when the error chain holds a TLS error we can
/// explain; `None` otherwise.
pub fn explain(
    err: &(dyn std::error::Error + 'static),
    cfg: &Settings<'_>,
    anchors: &Anchors,
) -> Option<String> {
    let tls = find_tls_error(err)?;
    let from = cfg.names;
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
                "TLS verification failed: the API server's certificate is invalid ({}); check \
                 {}, {verify_off}",
                certificate_error(other),
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
                format!(
                    "the API server refused our client certificate ({} alert): {have}",
                    words(&format!("{alert:?}"))
                )
            }
            other => format!(
                "the API server ended the TLS handshake (alert: {})",
                words(&format!("{other:?}"))
            ),
        },
        _ => return None,
    };
    Some(text)
}

/// A rustls error in words.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(ce) => format!("invalid certificate: {}", certificate_error(ce)),
        E::AlertReceived(alert) => format!(
            "the peer ended the handshake (alert: {})",
            words(&format!("{alert:?}"))
        ),
        E::InconsistentKeys(_) => "the private key does not belong to the certificate".into(),
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the peer sent an unexpected TLS message".into()
        }
        E::InvalidMessage(why) => format!(
            "the peer sent a corrupt TLS message ({})",
            words(&format!("{why:?}"))
        ),
        E::PeerIncompatible(why) => {
            format!("the peer is incompatible ({})", words(&format!("{why:?}")))
        }
        E::PeerMisbehaved(why) => format!("the peer misbehaved ({})", words(&format!("{why:?}"))),
        E::InvalidCertRevocationList(why) => format!(
            "invalid certificate revocation list ({})",
            words(&format!("{why:?}"))
        ),
        E::InvalidEncryptedClientHello(why) => format!(
            "encrypted client hello failed ({})",
            words(&format!("{why:?}"))
        ),
        E::General(m) => m.clone(),
        E::Other(o) => words(&o.to_string()),
        // The remaining variants' texts are plain sentences.
        other => other.to_string(),
    }
}

/// Why a certificate was refused, in words. The variants with context already have sentences as their text.
fn certificate_error(ce: &CertificateError) -> String {
    match ce {
        CertificateError::NotValidForNameContext { .. }
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYetContext { .. }
        | CertificateError::ExpiredRevocationListContext { .. }
        | CertificateError::InvalidPurposeContext { .. } => ce.to_string(),
        CertificateError::Other(o) => words(&o.to_string()),
        other => words(&format!("{other:?}")),
    }
}

/// A Rust enum variant's name in words: the innermost name of `Outer(Inner(SomeName))` or `SomeName { .. }`,
/// split at its capitals (`UnsupportedCertVersion` gives "unsupported cert version"; acronyms such as `CA` stay).
fn words(debug: &str) -> String {
    let innermost = debug
        .rsplit('(')
        .find(|s| s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
    let name: Vec<char> = innermost
        .unwrap_or(debug)
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    for (i, &c) in name.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| name[p]);
        let next = name.get(i + 1);
        let boundary = c == '_'
            || (c.is_ascii_uppercase()
                && prev.is_some_and(|p| {
                    p.is_ascii_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
                }));
        if boundary && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur));
        }
        if c != '_' {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
        .into_iter()
        .map(|w| {
            // An acronym stays as it is; a capitalised word is lowercased.
            if w.len() > 1
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                w
            } else {
                w.to_ascii_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    #[derive(Debug)]
    enum LibraryError {
        UnsupportedCertVersion,
    }

    impl std::fmt::Display for LibraryError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl std::error::Error for LibraryError {}

    /// Whether a text shows a Rust name: a word with a capital after a small letter, or a variant's brackets
    /// (`Name(` or `Name {`).
    fn shows_a_rust_name(t: &str) -> bool {
        t.contains(|c: char| c.is_ascii_alphabetic())
            && (t.contains(" {")
                || t.as_bytes()
                    .windows(2)
                    .any(|w| w[0].is_ascii_alphabetic() && w[1] == b'('))
            || t.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
                w.chars()
                    .zip(w.chars().skip(1))
                    .any(|(a, b)| a.is_ascii_lowercase() && b.is_ascii_uppercase())
            })
    }

    #[test]
    fn rustls_errors_are_described_in_words() {
        let other = rustls::OtherError(std::sync::Arc::new(LibraryError::UnsupportedCertVersion));
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::Other(other.clone())),
                "invalid certificate: unsupported cert version",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "invalid certificate: unknown issuer",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                "the peer ended the handshake (alert: unknown CA)",
            ),
            (
                rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
                "the peer is incompatible (no cipher suites in common)",
            ),
            (
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
                "the private key does not belong to the certificate",
            ),
            (rustls::Error::Other(other), "unsupported cert version"),
            (rustls::Error::DecryptError, "cannot decrypt peer's message"),
        ];
        for (e, want) in cases {
            let shown = describe(&e);
            assert_eq!(shown, want);
            assert!(!shows_a_rust_name(&shown), "{shown}");
            if shown != "cannot decrypt peer's message" {
                assert!(shows_a_rust_name(&e.to_string()), "{e}");
            }
        }
    }

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
        let t = explained(rustls::Error::AlertReceived(
            AlertDescription::BadCertificate,
        ));
        assert!(t.contains("(bad certificate alert)"), "{t}");
        let t = explained(rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure,
        ));
        assert!(
            t.ends_with("the TLS handshake (alert: handshake failure)"),
            "{t}"
        );
        let t = explained(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        assert!(t.contains("is invalid (revoked)"), "{t}");
        // Not a TLS error: nothing to explain.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&io, &cfg(), &Anchors::System), None);
    }
}
