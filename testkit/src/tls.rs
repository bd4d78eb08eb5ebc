//! The `--tls` mode: a private PKI generated at start, written out for tests to trust, and the server side of
//! TLS (optionally requiring a client certificate).
//!
//! Files written to the TLS directory (all PEM):
//!
//! | file | what |
//! |---|---|
//! | `ca.crt` | the CA that signed the server certificate: what a client must trust |
//! | `server.crt`, `server.key` | the server's chain leaf (SANs `127.0.0.1`, `::1`, `localhost`) and its key |
//! | `other-ca.crt` | an unrelated CA: trusting only it must fail verification |
//! | `client-ca.crt` | the CA the server accepts client certificates from |
//! | `client.crt`, `client.key` | client certificate (CN `k8s-disc-client`), ECDSA P-256, PKCS#8 key |
//! | `client.sec1.key` | the same ECDSA key in SEC1 (`EC PRIVATE KEY`) form |
//! | `client2.crt`, `client2.key` | a second client certificate (CN `k8s-disc-client-2`), Ed25519, for rotations |
//! | `client-rsa.crt`, `client-rsa.key` | a third client certificate (CN `k8s-disc-client-rsa`), RSA 2048, PKCS#8 key |
//! | `client-rsa.pkcs1.key` | the same RSA key in PKCS#1 (`RSA PRIVATE KEY`) form |
//! | `wrong-client.crt`, `wrong-client.key` | a client certificate signed by `other-ca`: the server refuses it |

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// User name of a client certificate, as the API server takes it from the subject's CN.
pub const CLIENT_USER: &str = "k8s-disc-client";
pub const CLIENT2_USER: &str = "k8s-disc-client-2";
pub const CLIENT_RSA_USER: &str = "k8s-disc-client-rsa";

/// TLS settings of the fake server.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Where the generated certificates and keys are written (created if missing).
    pub dir: PathBuf,
    /// Refuse handshakes without a client certificate signed by `client-ca.crt`.
    pub require_client_cert: bool,
}

/// The generated PKI and the server configuration built from it.
pub struct Pki {
    pub server_config: Arc<rustls::ServerConfig>,
    /// Client certificates this server issued, by DER, to the user name they authenticate as.
    users: HashMap<Vec<u8>, String>,
}

impl Pki {
    /// The user a verified client certificate authenticates as.
    pub fn user_of(&self, cert: &[u8]) -> String {
        self.users
            .get(cert)
            .cloned()
            .unwrap_or_else(|| "unknown-client".to_string())
    }
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn new_ca(name: &str) -> Result<Ca, String> {
    let key = KeyPair::generate().map_err(err("CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(err("CA certificate"))?;
    Ok(Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

struct Leaf {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

/// A new RSA 2048 key pair. The crypto backend signs with RSA keys but cannot make them, so the key is generated
/// here and handed over in PKCS#8.
fn rsa_key() -> Result<KeyPair, String> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| format!("RSA key: {e}"))?;
    let der = key.to_pkcs8_der().map_err(|e| format!("RSA key: {e}"))?;
    let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).map_err(err("RSA key"))
}

fn leaf(
    ca: &Ca,
    cn: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    key: KeyPair,
) -> Result<Leaf, String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(err("leaf certificate"))?;
    Ok(Leaf {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Minimal DER reader: the contents of the TLV at the start of `der` and the rest after it.
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in der.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let body = der.get(hdr..hdr + len)?;
    Some((tag, body, &der[hdr + len..]))
}

/// The private key inside a PKCS#8 `PrivateKeyInfo`: for an EC key that is its SEC1 `ECPrivateKey`, for an RSA
/// key its PKCS#1 `RSAPrivateKey`.
pub fn pkcs8_inner_key(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (tag, seq, _) = der_tlv(pkcs8)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _version, rest) = der_tlv(seq)?;
    let (_, _alg, rest) = der_tlv(rest)?;
    let (tag, key, _) = der_tlv(rest)?;
    (tag == 0x04).then(|| key.to_vec())
}

/// The SEC1 `ECPrivateKey` of a P-256 PKCS#8 key, with the curve named in its `parameters` field as OpenSSL
/// writes it (`EC PRIVATE KEY` files).
pub fn p256_sec1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    const PRIME256V1: [u8; 12] = [
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let inner = pkcs8_inner_key(pkcs8)?;
    let (tag, seq, _) = der_tlv(&inner)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, after_version) = der_tlv(seq)?;
    let (_, _, after_key) = der_tlv(after_version)?;
    let head = &seq[..seq.len() - after_key.len()];
    if after_key.first() == Some(&0xa0) {
        return Some(inner);
    }
    let mut body = head.to_vec();
    body.extend_from_slice(&PRIME256V1);
    body.extend_from_slice(after_key);
    let mut out = vec![0x30];
    if body.len() < 0x80 {
        out.push(body.len() as u8);
    } else {
        out.extend_from_slice(&[0x81, body.len() as u8]);
    }
    out.extend_from_slice(&body);
    Some(out)
}

/// PEM text of DER bytes under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Generates the PKI into `opts.dir` and builds the server configuration.
pub fn generate(opts: &TlsOptions) -> Result<Pki, String> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    let dir = opts.dir.as_path();
    let ca = new_ca("k8s-fake-apiserver CA")?;
    let other_ca = new_ca("k8s-fake-apiserver unrelated CA")?;
    let client_ca = new_ca("k8s-fake-apiserver client CA")?;

    let sans = vec![
        SanType::IpAddress("127.0.0.1".parse().map_err(|_| "ip")?),
        SanType::IpAddress("::1".parse().map_err(|_| "ip")?),
        SanType::DnsName("localhost".try_into().map_err(err("SAN"))?),
    ];
    let server = leaf(
        &ca,
        "kube-apiserver",
        sans,
        ExtendedKeyUsagePurpose::ServerAuth,
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err("leaf key"))?,
    )?;
    let client = leaf(
        &client_ca,
        CLIENT_USER,
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err("leaf key"))?,
    )?;
    let client2 = leaf(
        &client_ca,
        CLIENT2_USER,
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
        KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(err("leaf key"))?,
    )?;
    let client_rsa = leaf(
        &client_ca,
        CLIENT_RSA_USER,
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
        rsa_key()?,
    )?;
    let wrong = leaf(
        &other_ca,
        "intruder",
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err("leaf key"))?,
    )?;

    write(dir, "ca.crt", &ca.pem)?;
    write(dir, "other-ca.crt", &other_ca.pem)?;
    write(dir, "client-ca.crt", &client_ca.pem)?;
    write(dir, "server.crt", &server.cert_pem)?;
    write(dir, "server.key", &server.key.serialize_pem())?;
    write(dir, "client.crt", &client.cert_pem)?;
    write(dir, "client.key", &client.key.serialize_pem())?;
    let sec1 = p256_sec1(client.key.serialized_der())
        .ok_or("cannot extract the SEC1 form of the client key")?;
    write(dir, "client.sec1.key", &pem_encode("EC PRIVATE KEY", &sec1))?;
    write(dir, "client2.crt", &client2.cert_pem)?;
    write(dir, "client2.key", &client2.key.serialize_pem())?;
    write(dir, "client-rsa.crt", &client_rsa.cert_pem)?;
    write(dir, "client-rsa.key", &client_rsa.key.serialize_pem())?;
    let pkcs1 = pkcs8_inner_key(client_rsa.key.serialized_der())
        .ok_or("cannot extract the PKCS#1 form of the RSA client key")?;
    write(
        dir,
        "client-rsa.pkcs1.key",
        &pem_encode("RSA PRIVATE KEY", &pkcs1),
    )?;
    write(dir, "wrong-client.crt", &wrong.cert_pem)?;
    write(dir, "wrong-client.key", &wrong.key.serialize_pem())?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = rustls::RootCertStore::empty();
    let client_ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(client_ca.pem.as_bytes())
        .map_err(|e: rustls::pki_types::pem::Error| format!("client CA: {e}"))?;
    client_roots
        .add(client_ca_der)
        .map_err(|e| format!("client CA: {e}"))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(client_roots),
        provider.clone(),
    );
    let verifier = if opts.require_client_cert {
        verifier.build()
    } else {
        verifier.allow_unauthenticated().build()
    }
    .map_err(|e| format!("client verifier: {e}"))?;
    let chain = vec![CertificateDer::from(server.cert_der.clone())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        server.key.serialized_der().to_vec(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate: {e}"))?;
    let mut users = HashMap::new();
    users.insert(client.cert_der, CLIENT_USER.to_string());
    users.insert(client2.cert_der, CLIENT2_USER.to_string());
    users.insert(client_rsa.cert_der, CLIENT_RSA_USER.to_string());
    Ok(Pki {
        server_config: Arc::new(config),
        users,
    })
}
