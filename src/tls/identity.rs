//! The client's own identity (mTLS): checking that the private key belongs to the certificate, and presenting
//! them in handshakes.
//!
//! Only the key match is checked. The certificate is the client's own: the API server judges it, and a
//! kube-apiserver accepts X.509 v1 certificates (what `openssl x509 -req` makes without an extension file, the
//! usual recipe for a user certificate), which a full parse by the verification library would refuse.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SigningKey};

use super::{PemError, provider};

/// Checks that the key is usable (RSA, ECDSA P-256/P-384 or Ed25519) and belongs to the first certificate.
pub fn check_identity(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), PemError> {
    signing_key(certs, key).map(|_| ())
}

/// The certificate chain and key as rustls presents them to a server that asks for a client certificate.
pub fn certified_key(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, PemError> {
    let signer = signing_key(certs, key)?;
    Ok(Arc::new(CertifiedKey::new(certs.to_vec(), signer)))
}

fn signing_key(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<Arc<dyn SigningKey>, PemError> {
    let signer = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| match e {
            rustls::Error::General(m)
                if m.contains("unsupported") || m.contains("failed to parse") =>
            {
                PemError::UnsupportedKey
            }
            other => PemError::Unusable(other),
        })?;
    let leaf = certs.first().ok_or(PemError::NoCertificate)?;
    let in_cert = subject_public_key_info(leaf).ok_or(PemError::MalformedCertificate)?;
    // A key type whose public half the provider cannot give is accepted, as rustls does: the server will judge.
    if let Some(in_key) = signer.public_key()
        && in_key.as_ref() != in_cert
    {
        return Err(PemError::KeyMismatch);
    }
    Ok(signer)
}

/// The DER of a certificate's SubjectPublicKeyInfo (tag and length included), found by walking the fields of
/// `tbsCertificate` (RFC 5280 4.1) without judging them: version (absent in v1), serialNumber, signature, issuer,
/// validity, subject, then subjectPublicKeyInfo.
fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    let (tag, certificate, _) = der_item(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_item(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (mut tag, _, mut after) = der_item(rest)?;
    if tag == VERSION {
        rest = after;
        (tag, _, after) = der_item(rest)?;
    }
    if tag != INTEGER {
        return None;
    }
    rest = after;
    // signature, issuer, validity, subject: four SEQUENCEs to skip.
    for _ in 0..4 {
        let (tag, _, after) = der_item(rest)?;
        if tag != SEQUENCE {
            return None;
        }
        rest = after;
    }
    let (tag, _, after) = der_item(rest)?;
    (tag == SEQUENCE).then(|| &rest[..rest.len() - after.len()])
}

/// One DER item at the start of `input`: its tag, its contents and what follows it. Single-byte tags and
/// definite lengths only, as DER requires.
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{parse_certs, parse_key};
    use std::path::Path;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A user certificate made the usual way: a key and CSR, signed by a CA with `openssl x509 -req` and no
    /// extension file.
    fn user_certificate(dir: &Path, key_spec: &[&str]) {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-x509",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                "ca.key",
                "-subj",
                "/CN=test-ca",
                "-days",
                "1",
                "-out",
                "ca.crt",
            ],
        );
        let mut req = vec!["req", "-new", "-nodes"];
        req.extend_from_slice(key_spec);
        req.extend_from_slice(&[
            "-keyout",
            "user.key",
            "-subj",
            "/CN=jane/O=dev",
            "-out",
            "user.csr",
        ]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "user.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                "user.crt",
            ],
        );
    }

    fn tempdir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("k8s-disc-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_version_1_user_certificate_is_accepted_and_a_foreign_key_is_not() {
        for (name, key_spec) in [
            ("rsa", &["-newkey", "rsa:2048"][..]),
            (
                "ec",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            ),
        ] {
            let dir = tempdir(name);
            user_certificate(&dir, key_spec);
            let certs = parse_certs(&std::fs::read(dir.join("user.crt")).unwrap()).unwrap();
            // The test is about v1: no version field in tbsCertificate.
            let (_, cert, _) = der_item(&certs[0]).unwrap();
            let (_, tbs, _) = der_item(cert).unwrap();
            assert_eq!(
                tbs[0], 0x02,
                "{name}: openssl made a v3 certificate, not v1"
            );
            let key = parse_key(&std::fs::read(dir.join("user.key")).unwrap()).unwrap();
            check_identity(&certs, &key).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(certified_key(&certs, &key).is_ok());
            // The CA's key does not belong to the user's certificate.
            let ca_key = parse_key(&std::fs::read(dir.join("ca.key")).unwrap()).unwrap();
            let e = check_identity(&certs, &ca_key).unwrap_err();
            assert!(matches!(e, PemError::KeyMismatch), "{name}: {e:?}");
            // Configuration accepts it, and the TLS client presents it.
            let conf = serde_json::json!({
                "service": {"host": "10.0.0.1", "port": 443},
                "client": {"cert_file": dir.join("user.crt"), "key_file": dir.join("user.key"),
                           "ca_file": dir.join("ca.crt")},
            });
            let parsed = crate::config::parse(&conf.to_string(), &|_| None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let cluster = &parsed.clusters[0];
            let material =
                crate::tls::load(&cluster.tls()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let tls = crate::tls::client_config(&cluster.tls(), &material).unwrap();
            assert!(tls.client_auth_cert_resolver.has_certs(), "{name}");
            // The CA certificate (v3) with its own key is fine too.
            let ca = parse_certs(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
            check_identity(&ca, &ca_key).unwrap_or_else(|e| panic!("{name}: {e}"));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_truncated_certificate_is_malformed_not_a_panic() {
        let dir = tempdir("truncated");
        user_certificate(
            &dir,
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        );
        let certs = parse_certs(&std::fs::read(dir.join("user.crt")).unwrap()).unwrap();
        let key = parse_key(&std::fs::read(dir.join("user.key")).unwrap()).unwrap();
        let der = certs[0].as_ref();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            let short = vec![CertificateDer::from(der[..cut].to_vec())];
            let e = check_identity(&short, &key).unwrap_err();
            assert!(matches!(e, PemError::MalformedCertificate), "{cut}: {e:?}");
            assert_eq!(
                e.to_string(),
                "the certificate is not a well-formed X.509 certificate"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
