//! Where and how to connect: `service` (scheme, host, port, TLS verification), `client` (token, token file, CA
//! and client certificate files) or a kubeconfig.

use super::*;
use crate::tls::PemError;

/// `service`: scheme, host, port, TLS verification, and the value as the dump shows it.
pub(super) type Service = (Scheme, String, u16, bool, Value);

/// A section's object (`service`, `client`): `empty` when it is absent in single-cluster mode, where every key
/// has a default; `missing` is the rule broken when it is absent in multi-cluster mode.
fn section<'a>(
    v: Option<&'a Value>,
    field: &str,
    scope: &Scope<'_>,
    missing: &str,
    empty: &'a Map<String, Value>,
) -> Result<&'a Map<String, Value>, ConfigError> {
    match v {
        Some(v) => v
            .as_object()
            .ok_or_else(|| error(field, show(v), "must be an object")),
        None if scope.multi() => Err(error(field, "(missing)", missing)),
        None => Ok(empty),
    }
}

pub(super) fn parse_service(v: Option<&Value>, scope: &Scope<'_>) -> Result<Service, ConfigError> {
    let field = scope.path("service");
    let empty = Map::new();
    let obj = section(v, &field, scope, "required in multi-cluster mode", &empty)?;
    check_keys(obj, &keys_under("service", false), scope, "service.")?;
    let mut raw = obj.clone();

    let schema_v = value_or_default(obj, "service.schema", Some(&mut raw));
    let scheme = match schema_v.as_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => {
            return Err(error(
                scope.path("service.schema"),
                show(&schema_v),
                "must be \"http\" or \"https\"",
            ));
        }
    };

    // Single mode defaults to the in-cluster variables; multi mode has no
    // default host/port, as in APISIX.
    if scope.multi() {
        for key in ["host", "port"] {
            if get(obj, key).is_none() {
                return Err(error(
                    scope.path(&format!("service.{key}")),
                    "(missing)",
                    "required in multi-cluster mode",
                ));
            }
        }
    }
    let host = parse_host(
        &value_or_default(obj, "service.host", Some(&mut raw)),
        scope,
    )?;
    let port = parse_port(
        &value_or_default(obj, "service.port", Some(&mut raw)),
        scope,
    )?;

    // Shown in the dump, since it differs from APISIX's default.
    let verify_v = value_or_default(obj, "service.ssl_verify", Some(&mut raw));
    let ssl_verify = verify_v.as_bool().ok_or_else(|| {
        error(
            scope.path("service.ssl_verify"),
            show(&verify_v),
            "must be a boolean",
        )
    })?;
    Ok((scheme, host, port, ssl_verify, Value::Object(raw)))
}

pub(super) fn parse_host(v: &Value, scope: &Scope<'_>) -> Result<String, ConfigError> {
    let field = "service.host";
    let rule = "must be a host name, an IPv4 or IPv6 address, or ${VAR}";
    let s = v
        .as_str()
        .ok_or_else(|| error(scope.path(field), show(v), rule))?;
    let (resolved, var) = scope.expand(field, s, &show(v))?;
    let trimmed = resolved.trim();
    crate::host::normalize_host(trimmed).ok_or_else(|| {
        let why = match var {
            Some(name) if trimmed.is_empty() => format!("environment variable {name} is empty"),
            Some(name) => format!(
                "environment variable {name} = {:?} is not a host name or IP address",
                truncate(trimmed)
            ),
            None => rule.to_owned(),
        };
        error(scope.path(field), show(v), why)
    })
}

pub(super) fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

pub(super) fn parse_port(v: &Value, scope: &Scope<'_>) -> Result<u16, ConfigError> {
    let field = "service.port";
    let rule = "must be a port number in 1..=65535 (an integer, a string of digits, or ${VAR})";
    let in_range = |n: i64| u16::try_from(n).ok().filter(|p| *p != 0);
    match v {
        Value::Number(_) => as_integer(v)
            .and_then(in_range)
            .ok_or_else(|| error(scope.path(field), show(v), rule)),
        Value::String(s) => {
            let (resolved, var) = scope.expand(field, s, &show(v))?;
            let t = resolved.trim();
            let port = (!t.is_empty() && t.len() <= 5 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<i64>().ok())
                .flatten()
                .and_then(in_range);
            port.ok_or_else(|| {
                let why = match var {
                    Some(name) => format!(
                        "environment variable {name} = {:?} is not a port number in 1..=65535",
                        truncate(t)
                    ),
                    None => rule.to_owned(),
                };
                error(scope.path(field), show(v), why)
            })
        }
        _ => Err(error(scope.path(field), show(v), rule)),
    }
}

/// Server, TLS and credentials of one cluster, from `service`/`client` or from a kubeconfig.
pub(super) struct Connection {
    pub(super) scheme: Scheme,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) ssl_verify: bool,
    pub(super) token: Option<Secret>,
    pub(super) token_file: Option<String>,
    pub(super) ca: Option<Pem>,
    pub(super) client_cert: Option<Pem>,
    pub(super) client_key: Option<Pem>,
    pub(super) path_prefix: String,
    pub(super) kubeconfig: Option<String>,
    pub(super) context: Option<String>,
}

pub(super) fn from_kubeconfig(
    v: &Value,
    context: Option<&str>,
    scope: &Scope<'_>,
) -> Result<Connection, ConfigError> {
    let path = parse_path(v, "kubeconfig", scope)?;
    let fail = |rule: String| error(scope.path("kubeconfig"), show(v), rule);
    let k = crate::kubeconfig::load(std::path::Path::new(&path), context)
        .map_err(|e| fail(e.to_string()))?;
    check_pem_files(k.ca.as_ref(), k.client_cert.as_ref(), k.client_key.as_ref()).map_err(
        |(what, e)| {
            let name = match what {
                PemRole::Ca => "certificate-authority",
                PemRole::Cert => "client-certificate",
                PemRole::Key => "client-key",
            };
            fail(format!("context {:?}: {name}: {e}", k.context))
        },
    )?;
    Ok(Connection {
        scheme: if k.https { Scheme::Https } else { Scheme::Http },
        host: k.host,
        port: k.port,
        ssl_verify: k.ssl_verify,
        token: k.token,
        token_file: k.token_file.map(|p| p.to_string_lossy().into_owned()),
        ca: k.ca,
        client_cert: k.client_cert,
        client_key: k.client_key,
        path_prefix: k.path_prefix,
        kubeconfig: Some(path),
        context: Some(k.context),
    })
}

/// Whether `service` / `client` holds exactly what APISIX's schema injects as defaults.
pub(super) fn is_schema_default(key: &str, v: &Value) -> bool {
    let default = match key {
        "service" => serde_json::json!({
            "schema": default_json("service.schema"),
            "host": default_json("service.host"),
            "port": default_json("service.port"),
        }),
        "client" => serde_json::json!({"token_file": default_json("client.token_file")}),
        _ => return false,
    };
    *v == default
}

#[derive(Clone, Copy)]
pub(super) enum PemRole {
    Ca,
    Cert,
    Key,
}

/// Reads and checks the configured CA and client identity, so that a wrong file stops nginx at start with the
/// field named rather than failing later in the watcher.
pub(super) fn check_pem_files(
    ca: Option<&Pem>,
    cert: Option<&Pem>,
    key: Option<&Pem>,
) -> Result<(), (PemRole, PemError)> {
    if let Some(ca) = ca {
        let bytes = ca.read().map_err(|e| (PemRole::Ca, e.into()))?;
        crate::tls::parse_certs(&bytes).map_err(|e| (PemRole::Ca, e))?;
    }
    if let (Some(c), Some(k)) = (cert, key) {
        let cb = c.read().map_err(|e| (PemRole::Cert, e.into()))?;
        let certs = crate::tls::parse_certs(&cb).map_err(|e| (PemRole::Cert, e))?;
        let kb = k.read().map_err(|e| (PemRole::Key, e.into()))?;
        let key = crate::tls::parse_key(&kb).map_err(|e| (PemRole::Key, e))?;
        crate::tls::check_identity(&certs, &key).map_err(|e| (PemRole::Key, e))?;
    }
    Ok(())
}

/// A file path setting: a non-empty string (or `${VAR}`), expanded.
pub(super) fn parse_path(v: &Value, field: &str, scope: &Scope<'_>) -> Result<String, ConfigError> {
    let rule =
        format!("must be a non-empty file path of at most {MAX_PATH_LEN} bytes, or ${{VAR}}");
    let s = v
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= MAX_PATH_LEN && !s.contains('\0'))
        .ok_or_else(|| error(scope.path(field), show(v), &rule))?;
    let (resolved, var) = scope.expand(field, s, &show(v))?;
    if let Some(name) = var
        && (resolved.is_empty() || resolved.contains('\0'))
    {
        return Err(error(
            scope.path(field),
            show(v),
            format!("environment variable {name} must hold a non-empty path"),
        ));
    }
    Ok(resolved.into_owned())
}

pub(super) struct ClientSettings {
    pub(super) token: Option<Secret>,
    pub(super) token_file: Option<String>,
    pub(super) ca: Option<Pem>,
    pub(super) cert: Option<Pem>,
    pub(super) key: Option<Pem>,
    pub(super) raw: Value,
}

pub(super) fn parse_client(
    v: Option<&Value>,
    scheme: Scheme,
    scope: &Scope<'_>,
) -> Result<ClientSettings, ConfigError> {
    let field = scope.path("client");
    let empty = Map::new();
    let obj = section(
        v,
        &field,
        scope,
        "required in multi-cluster mode, with exactly one of token / token_file (or cert_file and key_file)",
        &empty,
    )?;
    check_keys(obj, &keys_under("client", false), scope, "client.")?;
    let mut raw = obj.clone();
    let token_v = get(obj, "token");
    let file_v = get(obj, "token_file");

    let pem = |key: &str| -> Result<Option<Pem>, ConfigError> {
        match get(obj, key) {
            Some(v) => {
                let f = format!("client.{key}");
                if scheme == Scheme::Http {
                    return Err(error(
                        scope.path(&f),
                        show(v),
                        "only used with service.schema https",
                    ));
                }
                Ok(Some(Pem::File(parse_path(v, &f, scope)?.into())))
            }
            None => Ok(None),
        }
    };
    let ca = pem("ca_file")?;
    let cert = pem("cert_file")?;
    let key = pem("key_file")?;
    match (get(obj, "cert_file"), get(obj, "key_file")) {
        (Some(_), None) => {
            return Err(error(
                scope.path("client.key_file"),
                "(missing)",
                "client.cert_file and client.key_file go together",
            ));
        }
        (None, Some(_)) => {
            return Err(error(
                scope.path("client.cert_file"),
                "(missing)",
                "client.cert_file and client.key_file go together",
            ));
        }
        _ => {}
    }
    check_pem_files(ca.as_ref(), cert.as_ref(), key.as_ref()).map_err(|(role, e)| {
        let key = match role {
            PemRole::Ca => "ca_file",
            PemRole::Cert => "cert_file",
            PemRole::Key => "key_file",
        };
        let shown = get(obj, key).map(show).unwrap_or_default();
        error(scope.path(&format!("client.{key}")), shown, e.to_string())
    })?;

    if scope.multi() {
        match (token_v, file_v) {
            (Some(_), Some(_)) => {
                return Err(error(
                    field,
                    show(&Value::Object(obj.clone())),
                    "exactly one of token / token_file must be set, not both",
                ));
            }
            (None, None) if cert.is_none() => {
                return Err(error(
                    field,
                    show(&Value::Object(obj.clone())),
                    "exactly one of token / token_file must be set (or cert_file and key_file)",
                ));
            }
            _ => {}
        }
    }

    let token = match token_v {
        Some(v) => Some(parse_token(v, scope)?),
        None => None,
    };
    let mut token_file = match file_v {
        Some(v) => Some(parse_token_file(v, scope)?),
        None => None,
    };
    if token_v.is_none() && file_v.is_none() && cert.is_none() {
        // Single mode only (multi mode was rejected above): APISIX's default. A client certificate alone needs
        // no token.
        let default = value_or_default(&Map::new(), "client.token_file", Some(&mut raw));
        token_file = Some(parse_token_file(&default, scope)?);
    }

    // A non-empty token wins over token_file (as in APISIX); an empty one
    // falls back to the file if there is one.
    let token = token.filter(|t| !t.is_empty());
    if token.is_some() {
        token_file = None;
    }
    if let (Some(v), None, None, None, Scheme::Https) =
        (token_v, &token, &token_file, &cert, scheme)
    {
        return Err(error(
            scope.path("client.token"),
            show_token(v),
            "resolves to an empty token; https needs a non-empty token, a token_file or cert_file/key_file",
        ));
    }
    Ok(ClientSettings {
        token: token.map(Secret::new),
        token_file,
        ca,
        cert,
        key,
        raw: Value::Object(raw),
    })
}

pub(super) fn parse_token(v: &Value, scope: &Scope<'_>) -> Result<String, ConfigError> {
    let field = "client.token";
    let shown = show_token(v);
    let rule =
        format!("must be ${{VAR}} or at most {MAX_TOKEN_LEN} characters of [A-Za-z0-9+/._=-]");
    let s = v
        .as_str()
        .ok_or_else(|| error(scope.path(field), &shown, &rule))?;
    let (resolved, var) = scope.expand(field, s, &shown)?;
    let token = resolved.trim();
    match var {
        None => {
            let ok = token.len() <= MAX_TOKEN_LEN
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/._=-".contains(&b));
            if !ok {
                return Err(error(scope.path(field), shown, rule));
            }
        }
        Some(name) => {
            // Anything outside visible ASCII would break (or inject into) the
            // Authorization header.
            let ok =
                token.len() <= MAX_ENV_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(error(
                    scope.path(field),
                    shown,
                    format!(
                        "environment variable {name} must hold at most {MAX_ENV_TOKEN_LEN} visible ASCII characters (no spaces inside)"
                    ),
                ));
            }
        }
    }
    Ok(token.to_owned())
}

pub(super) fn parse_token_file(v: &Value, scope: &Scope<'_>) -> Result<String, ConfigError> {
    let field = "client.token_file";
    let rule = format!(
        "must be a non-empty path of at most {MAX_TOKEN_FILE_LEN} characters without any of :*?\"<>|, or ${{VAR}}"
    );
    let s = v
        .as_str()
        .ok_or_else(|| error(scope.path(field), show(v), &rule))?;
    let ok = !s.is_empty()
        && s.chars().count() <= MAX_TOKEN_FILE_LEN
        && !s.contains([':', '*', '?', '"', '<', '>', '|']);
    if !ok {
        return Err(error(scope.path(field), show(v), rule));
    }
    let (resolved, var) = scope.expand(field, s, &show(v))?;
    if let Some(name) = var {
        if resolved.is_empty() || resolved.contains('\0') {
            return Err(error(
                scope.path(field),
                show(v),
                format!("environment variable {name} must hold a non-empty path"),
            ));
        }
    }
    Ok(resolved.into_owned())
}
