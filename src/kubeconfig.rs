//! Reading a cluster's server, CA and credentials from a kubeconfig file (the `kubeconfig` and `context` settings).
//!
//! Supported: `clusters[].cluster.{server, certificate-authority, certificate-authority-data,
//! insecure-skip-tls-verify}`, `users[].user.{client-certificate, client-certificate-data, client-key,
//! client-key-data, token, tokenFile}`, `contexts[].context.{cluster, user}` and `current-context`. Relative file
//! paths are relative to the kubeconfig's directory, as kubectl reads them. Credential plugins (`exec`,
//! `auth-provider`), basic auth, impersonation, proxies and `tls-server-name` are refused with an error naming
//! the field, rather than silently connecting without them.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value};

use crate::secret::{MAX_KUBECONFIG_BYTES, ReadError, Secret, SecretBytes, read_capped};
use crate::tls::Pem;

/// What a kubeconfig context gives one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Kubeconfig {
    /// The context used (the given one, or `current-context`).
    pub context: String,
    /// The server URL's scheme is https (else http).
    pub https: bool,
    /// Host name or IP; IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// A path prefix of the server URL (e.g. a proxy's `/k8s/clusters/c-1`), without a trailing `/`.
    pub path_prefix: String,
    pub ssl_verify: bool,
    pub ca: Option<Pem>,
    pub client_cert: Option<Pem>,
    pub client_key: Option<Pem>,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
}

/// Why a kubeconfig cannot be used. Field paths are the kubeconfig's (`users[0].user`), so the reader finds the
/// line; no variant holds a credential.
#[derive(Debug)]
pub enum KubeconfigError {
    /// The file could not be read.
    Read(ReadError),
    /// The file is not UTF-8.
    NotUtf8,
    /// The YAML is malformed.
    Yaml {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's description.
        info: String,
    },
    /// The file holds no YAML document.
    Empty,
    /// A map key is a list, a map or a float.
    KeyNotAString,
    /// A YAML alias (`*name`).
    Alias,
    /// The document is not a map.
    NotAKubeconfig,
    /// No context was given and the file has no `current-context`.
    NoCurrentContext,
    /// `clusters`, `users` or `contexts` is missing or not a list.
    MissingList {
        /// The list's key.
        list: &'static str,
        /// The key of its entries' settings.
        inner: &'static str,
    },
    /// No entry of a list has the name asked for.
    NotFound {
        /// The list's key.
        list: &'static str,
        /// The key of its entries' settings.
        inner: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A required key is missing.
    Missing {
        /// The object holding it.
        field: String,
        /// The key.
        key: &'static str,
    },
    /// An entry's settings are not a map.
    NotAMap {
        /// The entry's settings.
        field: String,
    },
    /// A value that must be a string is not.
    NotAString {
        /// The object holding it.
        field: String,
        /// The key.
        key: String,
    },
    /// A value that must be a boolean is not.
    NotABoolean {
        /// The object holding it.
        field: String,
        /// The key.
        key: &'static str,
    },
    /// A field this library does not implement is set: refused rather than connecting without it.
    Unsupported {
        /// The object holding it.
        field: String,
        /// The field.
        key: &'static str,
    },
    /// Both a file and inline data are given for one PEM.
    BothPemSources {
        /// The object holding them.
        field: String,
        /// The file key; the data key is `<key>-data`.
        key: &'static str,
    },
    /// A `*-data` value is not base64.
    NotBase64 {
        /// The object holding it.
        field: String,
        /// The file key; the data key is `<key>-data`.
        key: &'static str,
    },
    /// `insecure-skip-tls-verify` together with a CA.
    InsecureWithCa {
        /// The cluster.
        field: String,
    },
    /// Only one of the client certificate and key.
    HalfIdentity {
        /// The user.
        field: String,
    },
    /// The inline token has characters a header cannot carry (the token itself is never shown).
    BadToken {
        /// The user.
        field: String,
    },
    /// The server URL is unusable.
    BadServer {
        /// The cluster.
        field: String,
        /// The URL as written.
        server: String,
        /// What is wrong with it.
        source: ServerUrlError,
    },
    /// A CA or client certificate with an http server.
    CertificatesNeedHttps {
        /// The cluster.
        field: String,
    },
}

impl fmt::Display for KubeconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use KubeconfigError::*;
        match self {
            Read(e) => write!(f, "{e}"),
            NotUtf8 => f.write_str("not UTF-8 text"),
            Yaml { line, column, info } => {
                write!(f, "invalid YAML at line {line}, column {column}: {info}")
            }
            Empty => f.write_str("empty file"),
            KeyNotAString => f.write_str("a map key is not a string"),
            Alias => f.write_str("YAML aliases are not supported"),
            NotAKubeconfig => f.write_str(
                "not a kubeconfig (expected a YAML map with clusters, users and contexts)",
            ),
            NoCurrentContext => {
                f.write_str("current-context: not set; set `context` to the context to use")
            }
            MissingList { list, inner } => write!(f, "{list}: missing (a list of named {inner}s)"),
            NotFound { list, inner, name } => write!(f, "{list}: no {inner} named {name:?}"),
            Missing { field, key } => write!(f, "{field}.{key}: missing"),
            NotAMap { field } => write!(f, "{field}: must be a map"),
            NotAString { field, key } => write!(f, "{field}.{key}: must be a string"),
            NotABoolean { field, key } => write!(f, "{field}.{key}: must be a boolean"),
            Unsupported { field, key } => {
                let why = match *key {
                    "exec" => {
                        "exec credential plugins are not supported; use client-certificate/client-key or token/tokenFile"
                    }
                    "auth-provider" => {
                        "auth-provider plugins are not supported; use client-certificate/client-key or token/tokenFile"
                    }
                    "username" | "password" => "basic authentication is not supported",
                    "as" | "as-uid" | "as-groups" | "as-user-extra" => {
                        "impersonation is not supported"
                    }
                    _ => "not supported",
                };
                write!(f, "{field}.{key}: {why}")
            }
            BothPemSources { field, key } => {
                write!(f, "{field}: {key} and {key}-data are both set; keep one")
            }
            NotBase64 { field, key } => write!(f, "{field}.{key}-data: not valid base64"),
            InsecureWithCa { field } => write!(
                f,
                "{field}: insecure-skip-tls-verify cannot be combined with a certificate-authority"
            ),
            HalfIdentity { field } => write!(
                f,
                "{field}: client-certificate and client-key go together; one is missing"
            ),
            BadToken { field } => write!(f, "{field}.token: must be visible ASCII characters"),
            BadServer {
                field,
                server,
                source,
            } => write!(f, "{field}.server = {server:?}: {source}"),
            CertificatesNeedHttps { field } => {
                write!(f, "{field}.server: certificates need an https server URL")
            }
        }
    }
}

impl std::error::Error for KubeconfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KubeconfigError::Read(e) => Some(e),
            KubeconfigError::BadServer { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What is wrong with a cluster's server URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerUrlError {
    /// Neither `https://` nor `http://`.
    Scheme,
    /// A `?query` or `#fragment`.
    QueryOrFragment,
    /// An IPv6 host without its `]`.
    UnclosedBracket,
    /// The host is not a host name or IP address.
    Host,
    /// The port is not in 1..=65535.
    Port,
}

impl fmt::Display for ServerUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerUrlError::Scheme => "must start with https:// or http://",
            ServerUrlError::QueryOrFragment => "must not have a query or fragment",
            ServerUrlError::UnclosedBracket => "unclosed [ in the host",
            ServerUrlError::Host => "the host is not a host name or IP address",
            ServerUrlError::Port => "the port is not a number in 1..=65535",
        })
    }
}

impl std::error::Error for ServerUrlError {}

/// Reads `path` and resolves `context` (default: the file's `current-context`). Errors name the kubeconfig field.
pub fn load(path: &Path, context: Option<&str>) -> Result<Kubeconfig, KubeconfigError> {
    let bytes = read_capped(path, MAX_KUBECONFIG_BYTES).map_err(KubeconfigError::Read)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| KubeconfigError::NotUtf8)?;
    let doc = parse_yaml(text)?;
    let base = path.parent().unwrap_or(Path::new("/"));
    resolve(&doc, context, base)
}

/// The first YAML document as JSON values (kubeconfigs are plain maps, lists and scalars).
fn parse_yaml(text: &str) -> Result<Value, KubeconfigError> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| KubeconfigError::Yaml {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        info: e.info().to_owned(),
    })?;
    match docs.into_iter().next() {
        Some(doc) => to_json(doc),
        None => Err(KubeconfigError::Empty),
    }
}

fn to_json(y: yaml_rust2::Yaml) -> Result<Value, KubeconfigError> {
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::String(s) => Value::String(s),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(r)),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Null | Yaml::BadValue => Value::Null,
        Yaml::Array(a) => Value::Array(a.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => return Err(KubeconfigError::KeyNotAString),
                };
                m.insert(key, to_json(v)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) => return Err(KubeconfigError::Alias),
    })
}

/// A named entry of `clusters`, `users` or `contexts`, and its inner object (`cluster`, `user`, `context`).
fn named<'a>(
    doc: &'a Value,
    list: &'static str,
    inner: &'static str,
    name: &str,
) -> Result<(String, &'a Map<String, Value>), KubeconfigError> {
    let items = doc
        .get(list)
        .and_then(Value::as_array)
        .ok_or(KubeconfigError::MissingList { list, inner })?;
    for (i, item) in items.iter().enumerate() {
        if item.get("name").and_then(Value::as_str) == Some(name) {
            let field = format!("{list}[{i}].{inner}");
            let obj = match item.get(inner) {
                Some(Value::Object(o)) => o,
                // An entry with no settings (e.g. a user without credentials) is an empty object.
                None | Some(Value::Null) => {
                    static EMPTY: std::sync::OnceLock<Map<String, Value>> =
                        std::sync::OnceLock::new();
                    EMPTY.get_or_init(Map::new)
                }
                Some(_) => return Err(KubeconfigError::NotAMap { field }),
            };
            return Ok((field, obj));
        }
    }
    Err(KubeconfigError::NotFound {
        list,
        inner,
        name: name.to_owned(),
    })
}

fn string<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    key: &str,
) -> Result<Option<&'a str>, KubeconfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KubeconfigError::NotAString {
            field: field.to_owned(),
            key: key.to_owned(),
        }),
    }
}

fn file(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A PEM source from a `<key>` path or a `<key>-data` base64 value; both at once is an error.
fn pem_source(
    obj: &Map<String, Value>,
    field: &str,
    key: &'static str,
    base: &Path,
) -> Result<Option<Pem>, KubeconfigError> {
    let data_key = format!("{key}-data");
    match (string(obj, field, key)?, string(obj, field, &data_key)?) {
        (Some(_), Some(_)) => Err(KubeconfigError::BothPemSources {
            field: field.to_owned(),
            key,
        }),
        (Some(p), None) => Ok(Some(Pem::File(file(base, p)))),
        (None, Some(d)) => {
            let compact: String = d.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| KubeconfigError::NotBase64 {
                    field: field.to_owned(),
                    key,
                })?;
            Ok(Some(Pem::Inline(SecretBytes::new(bytes))))
        }
        (None, None) => Ok(None),
    }
}

fn resolve(doc: &Value, context: Option<&str>, base: &Path) -> Result<Kubeconfig, KubeconfigError> {
    if !doc.is_object() {
        return Err(KubeconfigError::NotAKubeconfig);
    }
    let ctx_name = match context {
        Some(c) => c.to_string(),
        None => doc
            .get("current-context")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(KubeconfigError::NoCurrentContext)?
            .to_string(),
    };
    let (ctx_field, ctx) = named(doc, "contexts", "context", &ctx_name)?;
    let cluster_name =
        string(ctx, &ctx_field, "cluster")?.ok_or_else(|| KubeconfigError::Missing {
            field: ctx_field.clone(),
            key: "cluster",
        })?;
    let (cl_field, cluster) = named(doc, "clusters", "cluster", cluster_name)?;
    for key in ["tls-server-name", "proxy-url"] {
        if cluster.get(key).is_some_and(|v| !v.is_null()) {
            return Err(KubeconfigError::Unsupported {
                field: cl_field,
                key,
            });
        }
    }
    let server = string(cluster, &cl_field, "server")?.ok_or_else(|| KubeconfigError::Missing {
        field: cl_field.clone(),
        key: "server",
    })?;
    let (https, host, port, path_prefix) =
        parse_server(server).map_err(|source| KubeconfigError::BadServer {
            field: cl_field.clone(),
            server: server.to_owned(),
            source,
        })?;
    let insecure = match cluster.get("insecure-skip-tls-verify") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(KubeconfigError::NotABoolean {
                field: cl_field,
                key: "insecure-skip-tls-verify",
            });
        }
    };
    let ca = pem_source(cluster, &cl_field, "certificate-authority", base)?;
    if insecure && ca.is_some() {
        return Err(KubeconfigError::InsecureWithCa { field: cl_field });
    }

    let (mut client_cert, mut client_key, mut token, mut token_file) = (None, None, None, None);
    if let Some(user_name) = string(ctx, &ctx_field, "user")? {
        let (u_field, user) = named(doc, "users", "user", user_name)?;
        for key in [
            "exec",
            "auth-provider",
            "username",
            "password",
            "as",
            "as-uid",
            "as-groups",
            "as-user-extra",
        ] {
            if user.get(key).is_some_and(|v| !v.is_null()) {
                return Err(KubeconfigError::Unsupported {
                    field: u_field,
                    key,
                });
            }
        }
        client_cert = pem_source(user, &u_field, "client-certificate", base)?;
        client_key = pem_source(user, &u_field, "client-key", base)?;
        if client_cert.is_some() != client_key.is_some() {
            return Err(KubeconfigError::HalfIdentity { field: u_field });
        }
        // As in kubectl, an inline token takes precedence over tokenFile.
        if let Some(t) = string(user, &u_field, "token")? {
            let t = t.trim();
            if !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(KubeconfigError::BadToken { field: u_field });
            }
            token = Some(Secret::new(t));
        } else if let Some(p) = string(user, &u_field, "tokenFile")? {
            token_file = Some(file(base, p));
        }
    }
    if !https && (ca.is_some() || client_cert.is_some()) {
        return Err(KubeconfigError::CertificatesNeedHttps { field: cl_field });
    }
    Ok(Kubeconfig {
        context: ctx_name,
        https,
        host,
        port,
        path_prefix,
        ssl_verify: !insecure,
        ca,
        client_cert,
        client_key,
        token,
        token_file,
    })
}

/// `https://host[:port][/prefix]` into its parts (whether it is https, host, port, path prefix); the port
/// defaults to 443 (https) or 80 (http).
fn parse_server(url: &str) -> Result<(bool, String, u16, String), ServerUrlError> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(ServerUrlError::Scheme);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) {
        return Err(ServerUrlError::QueryOrFragment);
    }
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let end = r.find(']').ok_or(ServerUrlError::UnclosedBracket)?;
        let port = &r[end + 1..];
        (&r[..end], port.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host = crate::host::normalize_host(host).ok_or(ServerUrlError::Host)?;
    let port = match port {
        None if https => 443,
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(ServerUrlError::Port)?,
    };
    Ok((https, host, port, path.trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(yaml: &str) -> Value {
        parse_yaml(yaml).expect("yaml")
    }

    const BASE: &str = r#"
apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster:
    server: https://[fd00::1]:6443/k8s/clusters/c-1/
    certificate-authority: ca.crt
- name: other
  cluster:
    server: https://10.0.0.9
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
contexts:
- name: prod
  context: {cluster: prod-cluster, user: admin, namespace: shop}
- name: other
  context:
    cluster: other
    user: token-user
users:
- name: admin
  user:
    client-certificate: /abs/client.crt
    client-key: keys/client.key
- name: token-user
  user:
    token: abc.def
    tokenFile: /ignored
"#;

    #[test]
    fn current_context_with_files_relative_to_the_kubeconfig() {
        let k = resolve(&doc(BASE), None, Path::new("/etc/kube")).unwrap();
        assert_eq!(k.context, "prod");
        assert!(k.https);
        assert_eq!(k.host, "fd00::1");
        assert_eq!(k.port, 6443);
        assert_eq!(k.path_prefix, "/k8s/clusters/c-1");
        assert!(k.ssl_verify);
        assert_eq!(k.ca, Some(Pem::File("/etc/kube/ca.crt".into())));
        assert_eq!(k.client_cert, Some(Pem::File("/abs/client.crt".into())));
        assert_eq!(
            k.client_key,
            Some(Pem::File("/etc/kube/keys/client.key".into()))
        );
        assert_eq!(k.token, None);
    }

    #[test]
    fn named_context_with_inline_ca_and_token() {
        let k = resolve(&doc(BASE), Some("other"), Path::new("/x")).unwrap();
        assert_eq!((k.host.as_str(), k.port), ("10.0.0.9", 443));
        assert_eq!(
            k.ca,
            Some(Pem::Inline(SecretBytes::new(
                b"-----BEGIN CERTIFICATE-----\n".to_vec()
            )))
        );
        assert_eq!(
            k.token,
            Some(Secret::new("abc.def")),
            "token wins over tokenFile"
        );
        assert_eq!(k.token_file, None);
        assert_eq!(
            format!("{k:?}").matches("abc.def").count(),
            0,
            "Debug masks the token"
        );
    }

    #[test]
    fn unsupported_fields_are_named() {
        let e = |y: &str| {
            resolve(&doc(y), None, Path::new("/"))
                .unwrap_err()
                .to_string()
        };
        let exec = r#"
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://k:6443"}}]
users: [{name: u, user: {exec: {command: aws}}}]
"#;
        assert_eq!(
            e(exec),
            "users[0].user.exec: exec credential plugins are not supported; use client-certificate/client-key or token/tokenFile"
        );
        assert!(matches!(
            resolve(&doc(exec), None, Path::new("/")),
            Err(KubeconfigError::Unsupported { key: "exec", ref field }) if field == "users[0].user"
        ));
        let ap = exec.replace("exec: {command: aws}", "auth-provider: {name: gcp}");
        assert!(
            e(&ap).starts_with(
                "users[0].user.auth-provider: auth-provider plugins are not supported"
            )
        );
        let basic = exec.replace("exec: {command: aws}", "username: a, password: b");
        assert!(e(&basic).contains("basic authentication"));
        let sni = exec.replace(
            "server: \"https://k:6443\"",
            "server: \"https://k:6443\", tls-server-name: x",
        );
        assert_eq!(
            e(&sni),
            "clusters[0].cluster.tls-server-name: not supported"
        );
        let missing = exec.replace("current-context: c", "current-context: nope");
        assert_eq!(e(&missing), "contexts: no context named \"nope\"");
        let no_current = exec.replace("current-context: c", "");
        assert!(e(&no_current).starts_with("current-context: not set"));
        let bad_server = exec.replace("https://k:6443", "ftp://k");
        assert!(
            e(&bad_server).contains("must start with https:// or http://"),
            "{}",
            e(&bad_server)
        );
        let both = exec.replace(
            "server: \"https://k:6443\"",
            "server: \"https://k:6443\", certificate-authority: a, certificate-authority-data: Yg==",
        );
        assert!(
            e(&both).contains("certificate-authority and certificate-authority-data are both set")
        );
        let insecure = exec.replace(
            "server: \"https://k:6443\"",
            "server: \"https://k:6443\", insecure-skip-tls-verify: true, certificate-authority: a",
        );
        assert!(e(&insecure).contains("insecure-skip-tls-verify cannot be combined"));
        let half = exec.replace("exec: {command: aws}", "client-certificate: a");
        assert!(e(&half).contains("client-certificate and client-key go together"));
        assert!(
            parse_yaml("a: [")
                .unwrap_err()
                .to_string()
                .starts_with("invalid YAML at line")
        );
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_server("http://LocalHost:8080").unwrap(),
            (false, "LocalHost".into(), 8080, String::new())
        );
        assert_eq!(
            parse_server("https://[::1]").unwrap(),
            (true, "::1".into(), 443, String::new())
        );
        assert_eq!(parse_server("https://a:0"), Err(ServerUrlError::Port));
        assert_eq!(parse_server("https://a b"), Err(ServerUrlError::Host));
        assert_eq!(
            parse_server("https://a/x?y=1"),
            Err(ServerUrlError::QueryOrFragment)
        );
        assert_eq!(parse_server("ftp://a"), Err(ServerUrlError::Scheme));
        assert_eq!(
            parse_server("https://[::1"),
            Err(ServerUrlError::UnclosedBracket)
        );
    }
}
