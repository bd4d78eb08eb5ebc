//! The discovery config: APISIX's `discovery.kubernetes` value, as JSON.
//!
//! An object configures one cluster ("single mode"); a non-empty array
//! configures several ("multi mode", each item with an `id`). Keys, defaults
//! and `${VAR}` references follow APISIX's schema so an unchanged config.yaml
//! keeps working, with these deliberate differences:
//! - `ssl_verify` defaults to **true** (APISIX: false). An unverified
//!   connection hands the service account token to whoever answers.
//! - Needless strictness is relaxed: the port may be a JSON integer, hosts may
//!   be uppercase or IPv6 (bare or bracketed), env var names may end in a
//!   digit, and integral floats (`50.0`) count as integers.
//! - Unknown keys are rejected, so a typo such as `namespace_selecter` cannot
//!   silently widen what is served.
//! - Errors name the field, the value (tokens masked) and the rule, and the
//!   dump never shows a token.
//!
//! `${NAME}` references are resolved once, here, through the caller's `env`
//! lookup; a missing variable is a config error rather than a watcher that
//! silently never starts.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

use crate::fields::{default_json, keys_under};
use crate::secret::Secret;
use crate::selector::{NamespacePattern, NamespaceSelector, validate_label_selector};
use crate::tls::Pem;

// Defaults and the accepted keys come from the configuration table, `crate::fields`.

/// Upper bound for `shared_size`, in MiB: far above any real need (150k
/// endpoints fit in well under 64m) but low enough to catch a stray digit.
pub const MAX_SHARED_SIZE_MB: u64 = 16384;
/// Upper bound of `max_object_size`, in MiB.
const MAX_OBJECT_MB: u64 = 1024;
/// Upper bound of the time settings, in seconds (a day).
const MAX_TIME_SETTING_S: u64 = 86_400;

const MASK: &str = crate::secret::MASK;
const MAX_TOKEN_LEN: usize = 4096;
/// A token read from the environment is not bound by the schema's 4096, but
/// it still has to fit an HTTP header line.
const MAX_ENV_TOKEN_LEN: usize = 16384;
const MAX_TOKEN_FILE_LEN: usize = 500;
const MAX_SHOWN_VALUE_CHARS: usize = 120;

/// Longest accepted certificate, key or kubeconfig path.
const MAX_PATH_LEN: usize = 4096;

/// How a cluster's initial sync and relists fetch the complete state (`list_strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// A streaming list (a watch with `sendInitialEvents`), falling back to paged LISTs for good when the server
    /// does not support it.
    Auto,
    /// Streaming lists only: a server without them is an error (logged, backed off, retried).
    WatchList,
    /// Paged LIST requests only.
    List,
}

impl ListStrategy {
    pub const NAMES: &[&str] = &["auto", "watch_list", "list"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::WatchList => "watch_list",
            Self::List => "list",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "watch_list" => Some(Self::WatchList),
            "list" => Some(Self::List),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// One cluster, validated and with `${VAR}`s resolved.
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// `""` in single mode.
    pub id: String,
    pub scheme: Scheme,
    /// Host name or IP; IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Verify the apiserver's certificate. Defaults to true (APISIX: false).
    pub ssl_verify: bool,
    /// Static bearer token (expanded, trimmed, non-empty). Takes precedence
    /// over `token_file`, which is then `None`.
    pub token: Option<Secret>,
    /// Token file path (expanded), to be re-read periodically.
    pub token_file: Option<String>,
    /// The only trust anchor(s) when set (`client.ca_file` or the kubeconfig's CA).
    pub ca: Option<Pem>,
    /// Client certificate and key for mTLS (both or neither).
    pub client_cert: Option<Pem>,
    pub client_key: Option<Pem>,
    /// Where the in-cluster service-account CA is looked for when no CA is configured. Always
    /// `tls::IN_CLUSTER_CA` from a JSON config; only Rust callers (tests) point it elsewhere.
    pub in_cluster_ca: std::path::PathBuf,
    /// Path prefix of the server URL (kubeconfig servers behind a proxy), `""` otherwise.
    pub path_prefix: String,
    /// The kubeconfig file and the context used, when the cluster comes from one.
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    pub namespace_selector: Option<NamespaceSelector>,
    /// Validated label selector, `None` when absent or blank.
    pub label_selector: Option<String>,
    pub default_weight: u32,
    /// Bytes.
    pub shared_size: usize,
    pub watch_endpoint_slices: bool,
    /// A watch that delivers no bytes for this long is dropped and resumed; the server-side `timeoutSeconds`
    /// is chosen below it, so a healthy quiet watch ends cleanly first.
    pub watch_idle_timeout: std::time::Duration,
    /// Deadline for one whole list (every page).
    pub list_timeout: std::time::Duration,
    /// When set, the cluster reports not ready once its data has not been confirmed current (by a list, an
    /// event or a bookmark) for this long; the data is still served.
    pub max_staleness: Option<std::time::Duration>,
    /// Bytes: an object (or watch event) larger than this is skipped and logged; its service keeps its
    /// previous nodes.
    pub max_object_size: usize,
    pub list_strategy: ListStrategy,
}

/// How messages name the settings of a cluster: config fields, or kubeconfig fields when it comes from one.
pub struct Fields {
    pub ca: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
    pub host: &'static str,
}

impl ClusterConfig {
    /// `scheme://host:port[prefix]`, with IPv6 hosts bracketed.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') {
            format!(
                "{}://[{}]:{}{}",
                self.scheme.as_str(),
                self.host,
                self.port,
                self.path_prefix
            )
        } else {
            format!(
                "{}://{}:{}{}",
                self.scheme.as_str(),
                self.host,
                self.port,
                self.path_prefix
            )
        }
    }

    pub fn source(&self) -> Fields {
        if self.kubeconfig.is_some() {
            Fields {
                ca: "the kubeconfig's certificate-authority",
                cert: "the kubeconfig's client-certificate",
                key: "client-key",
                host: "the kubeconfig's server",
            }
        } else {
            Fields {
                ca: "client.ca_file",
                cert: "client.cert_file",
                key: "client.key_file",
                host: "service.host",
            }
        }
    }

    /// Whether a bearer token is configured (inline or file).
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }
}

// Hand-written so that `{:?}` in a log line never prints the token.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("id", &self.id)
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ssl_verify", &self.ssl_verify)
            .field("token", &self.token)
            .field("token_file", &self.token_file)
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("in_cluster_ca", &self.in_cluster_ca)
            .field("path_prefix", &self.path_prefix)
            .field("kubeconfig", &self.kubeconfig)
            .field("context", &self.context)
            .field("namespace_selector", &self.namespace_selector)
            .field("label_selector", &self.label_selector)
            .field("default_weight", &self.default_weight)
            .field("shared_size", &self.shared_size)
            .field("watch_endpoint_slices", &self.watch_endpoint_slices)
            .field("watch_idle_timeout", &self.watch_idle_timeout)
            .field("list_timeout", &self.list_timeout)
            .field("max_staleness", &self.max_staleness)
            .field("max_object_size", &self.max_object_size)
            .field("list_strategy", &self.list_strategy)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Whether the input was an array (service names then carry the id).
    pub multi: bool,
    pub clusters: Vec<ClusterConfig>,
    /// The input with defaults applied and `${VAR}`s kept verbatim, as
    /// APISIX's dump shows it. Contains tokens: use `dump_json` to show it.
    pub raw: Value,
}

impl Config {
    /// `raw` with every token replaced by `"******"`.
    pub fn dump_json(&self) -> Value {
        let mut v = self.raw.clone();
        mask_tokens(&mut v);
        v
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the field, e.g. `service.port` or `[1].client.token`
    /// (array indexes are 0-based).
    pub field: String,
    /// The offending value as JSON text (tokens masked), or `(missing)`.
    pub value: String,
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid discovery config: {} = {}: {}",
            self.field, self.value, self.rule
        )
    }
}

impl std::error::Error for ConfigError {}

/// Parses and validates the JSON of `discovery.kubernetes`. `env` resolves
/// `${NAME}` references (tests pass a fake).
pub fn parse(json: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let root: Value = serde_json::from_str(json).map_err(|e| {
        // serde_json's message has a position but no content, so no secret leaks.
        error(
            "discovery.kubernetes",
            "(not JSON)",
            format!("invalid JSON: {e}"),
        )
    })?;
    match &root {
        Value::Object(_) => {
            let (cluster, raw) = parse_cluster(&root, &Scope { env, index: None })?;
            Ok(Config {
                multi: false,
                clusters: vec![cluster],
                raw,
            })
        }
        Value::Array(items) if !items.is_empty() => {
            let mut clusters: Vec<ClusterConfig> = Vec::with_capacity(items.len());
            let mut raws = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (cluster, raw) = parse_cluster(
                    item,
                    &Scope {
                        env,
                        index: Some(i),
                    },
                )?;
                if let Some(j) = clusters.iter().position(|c| c.id == cluster.id) {
                    return Err(error(
                        format!("[{i}].id"),
                        show(&Value::String(cluster.id)),
                        format!("duplicate id (already used by [{j}])"),
                    ));
                }
                clusters.push(cluster);
                raws.push(raw);
            }
            Ok(Config {
                multi: true,
                clusters,
                raw: Value::Array(raws),
            })
        }
        other => Err(error(
            "discovery.kubernetes",
            show(other),
            "must be an object (one cluster) or a non-empty array (several clusters)",
        )),
    }
}

/// Where in the input a cluster sits, and how to resolve `${VAR}`s.
struct Scope<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `Some(i)` in multi mode.
    index: Option<usize>,
}

impl Scope<'_> {
    fn multi(&self) -> bool {
        self.index.is_some()
    }

    fn path(&self, field: &str) -> String {
        match self.index {
            Some(i) => format!("[{i}].{field}"),
            None => field.to_owned(),
        }
    }

    /// Resolves a whole-string `${NAME}`; any other string is returned as is.
    /// `Ok((value, Some(name)))` when a variable was read.
    fn expand<'s>(
        &self,
        field: &str,
        raw: &'s str,
        shown: &str,
    ) -> Result<(std::borrow::Cow<'s, str>, Option<&'s str>), ConfigError> {
        match var_ref(raw) {
            VarRef::None => Ok((raw.into(), None)),
            VarRef::BadName(name) => Err(error(
                self.path(field),
                shown,
                format!(
                    "`${{{name}}}` is not a valid environment variable reference: names match [_A-Za-z][_A-Za-z0-9]*"
                ),
            )),
            VarRef::Name(name) => match (self.env)(name) {
                Some(v) => Ok((v.into(), Some(name))),
                None => Err(error(
                    self.path(field),
                    shown,
                    format!("environment variable {name} (referenced as ${{{name}}}) is not set"),
                )),
            },
        }
    }
}

enum VarRef<'s> {
    None,
    Name(&'s str),
    BadName(&'s str),
}

/// APISIX expands only a string that is entirely `${NAME}`; no interpolation.
fn var_ref(s: &str) -> VarRef<'_> {
    let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return VarRef::None;
    };
    let b = name.as_bytes();
    let valid = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if valid {
        VarRef::Name(name)
    } else {
        VarRef::BadName(name)
    }
}

fn error(
    field: impl Into<String>,
    value: impl Into<String>,
    rule: impl Into<String>,
) -> ConfigError {
    ConfigError {
        field: field.into(),
        value: value.into(),
        rule: rule.into(),
    }
}

/// A value for an error message: JSON text with tokens masked, capped.
fn show(v: &Value) -> String {
    let mut v = v.clone();
    mask_tokens(&mut v);
    let text = v.to_string();
    match text.char_indices().nth(MAX_SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// A token for an error message: a `${VAR}` reference is not a secret and
/// helps the reader; anything else is masked.
fn show_token(v: &Value) -> String {
    match v.as_str().map(var_ref) {
        Some(VarRef::Name(_) | VarRef::BadName(_)) => show(v),
        _ => format!("\"{MASK}\""),
    }
}

fn mask_tokens(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "token" && !child.is_null() {
                    *child = Value::String(MASK.to_owned());
                } else {
                    mask_tokens(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_tokens),
        _ => {}
    }
}

/// A key's value, treating an explicit `null` like a missing key (YAML's
/// `key:` with nothing after it arrives as null).
fn get<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    scope: &Scope<'_>,
    prefix: &str,
) -> Result<(), ConfigError> {
    for (k, v) in obj {
        if !allowed.contains(&k.as_str()) {
            // Under `client` any key may hold a secret (a misspelt `token`).
            let shown = if prefix == "client." {
                format!("\"{MASK}\"")
            } else {
                show(v)
            };
            return Err(error(
                scope.path(&format!("{prefix}{k}")),
                shown,
                format!("unknown key (allowed: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The value of the key at the end of `path` in `obj`, or the configuration table's default for `path` (`null`
/// when it has none). A default used is also written into `raw` when given, so the dump shows it.
fn value_or_default(
    obj: &Map<String, Value>,
    path: &str,
    raw: Option<&mut Map<String, Value>>,
) -> Value {
    let key = path.rsplit('.').next().unwrap_or(path);
    if let Some(v) = get(obj, key) {
        return v.clone();
    }
    let default = crate::fields::field(path)
        .default
        .json()
        .unwrap_or(Value::Null);
    if let Some(raw) = raw
        && !default.is_null()
    {
        raw.insert(key.to_owned(), default.clone());
    }
    default
}

/// An integer, accepting integral floats (`50.0`) as JSON Schema does.
fn as_integer(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    // ±2^53: beyond it a float is no longer an exact integer.
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

fn parse_cluster(v: &Value, scope: &Scope<'_>) -> Result<(ClusterConfig, Value), ConfigError> {
    let Some(obj) = v.as_object() else {
        return Err(error(
            scope.path("").trim_end_matches('.').to_owned(),
            show(v),
            "each cluster must be an object",
        ));
    };
    let mut raw = obj.clone();
    check_keys(obj, &keys_under("", scope.multi()), scope, "")?;

    let id = if scope.multi() {
        parse_id(get(obj, "id"), scope)?
    } else {
        String::new()
    };

    let kubeconfig_v = get(obj, "kubeconfig");
    let context = match get(obj, "context") {
        None => None,
        Some(_) if kubeconfig_v.is_none() => {
            return Err(error(
                scope.path("context"),
                show(get(obj, "context").unwrap_or(&Value::Null)),
                "only used together with kubeconfig",
            ));
        }
        Some(v) => Some(
            v.as_str()
                .filter(|s| !s.is_empty() && s.len() <= 253)
                .ok_or_else(|| {
                    error(
                        scope.path("context"),
                        show(v),
                        "must be a context name (a non-empty string)",
                    )
                })?
                .to_owned(),
        ),
    };
    let conn = match kubeconfig_v {
        Some(v) => {
            // The kubeconfig supplies the server and the credentials, so explicit ones would be ambiguous. What a
            // schema validator fills in from APISIX's defaults is not an explicit setting: ignore exactly that.
            for key in ["service", "client"] {
                if let Some(other) = get(obj, key)
                    && !is_schema_default(key, other)
                {
                    let shown = if key == "client" {
                        format!("\"{MASK}\"")
                    } else {
                        show(other)
                    };
                    return Err(error(
                        scope.path(key),
                        shown,
                        "cannot be combined with kubeconfig (the kubeconfig supplies the server, TLS settings \
                         and credentials); remove one of them",
                    ));
                }
            }
            raw.remove("service");
            raw.remove("client");
            from_kubeconfig(v, context.as_deref(), scope)?
        }
        None => {
            let (scheme, host, port, ssl_verify, service_raw) =
                parse_service(get(obj, "service"), scope)?;
            raw.insert("service".into(), service_raw);
            let client = parse_client(get(obj, "client"), scheme, scope)?;
            raw.insert("client".into(), client.raw);
            Connection {
                scheme,
                host,
                port,
                ssl_verify,
                token: client.token,
                token_file: client.token_file,
                ca: client.ca,
                client_cert: client.cert,
                client_key: client.key,
                path_prefix: String::new(),
                kubeconfig: None,
                context: None,
            }
        }
    };

    let namespace_selector = match get(obj, "namespace_selector") {
        Some(v) => parse_namespace_selector(v, scope)?,
        None => None,
    };

    let label_selector = match get(obj, "label_selector") {
        Some(v) => {
            let field = scope.path("label_selector");
            let s = v
                .as_str()
                .ok_or_else(|| error(&field, show(v), "must be a string"))?;
            validate_label_selector(s).map_err(|why| error(&field, show(v), why))?;
            Some(s.trim().to_owned()).filter(|s| !s.is_empty())
        }
        None => None,
    };

    // These three defaults are written into the dump's config, as APISIX's schema writes them into its own.
    let default_weight_v = value_or_default(obj, "default_weight", Some(&mut raw));
    let default_weight = as_integer(&default_weight_v)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| {
            error(
                scope.path("default_weight"),
                show(&default_weight_v),
                format!("must be an integer in 0..={}", u32::MAX),
            )
        })?;
    let shared_size =
        parse_shared_size(&value_or_default(obj, "shared_size", Some(&mut raw)), scope)?;
    let slices_v = value_or_default(obj, "watch_endpoint_slices", Some(&mut raw));
    let watch_endpoint_slices = slices_v.as_bool().ok_or_else(|| {
        error(
            scope.path("watch_endpoint_slices"),
            show(&slices_v),
            "must be a boolean",
        )
    })?;

    // A dead-connection timeout or a list deadline of a few seconds would only cause churn. The watch idle
    // timeout's default stays well under the idle timeouts of common load balancers (4 to 10 minutes) and above
    // the API server's bookmark interval (about a minute).
    let seconds = |key: &str, min: u64| {
        let v = value_or_default(obj, key, None);
        parse_seconds((!v.is_null()).then_some(&v), key, min, scope)
    };
    let required = |d: Option<std::time::Duration>, key: &str| {
        d.unwrap_or_else(|| panic!("{key} has a default in the configuration table"))
    };
    let watch_idle_timeout = required(seconds("watch_idle_timeout", 10)?, "watch_idle_timeout");
    let list_timeout = required(seconds("list_timeout", 10)?, "list_timeout");
    let max_staleness = seconds("max_staleness", 1)?;
    let max_object_size = parse_mib(
        &value_or_default(obj, "max_object_size", None),
        "max_object_size",
        MAX_OBJECT_MB,
        scope,
    )?;
    let strategy_v = value_or_default(obj, "list_strategy", None);
    let list_strategy = strategy_v
        .as_str()
        .and_then(ListStrategy::parse)
        .ok_or_else(|| {
            error(
                scope.path("list_strategy"),
                show(&strategy_v),
                format!("must be one of {}", ListStrategy::NAMES.join(", ")),
            )
        })?;

    let cluster = ClusterConfig {
        id,
        scheme: conn.scheme,
        host: conn.host,
        port: conn.port,
        ssl_verify: conn.ssl_verify,
        token: conn.token,
        token_file: conn.token_file,
        ca: conn.ca,
        client_cert: conn.client_cert,
        client_key: conn.client_key,
        in_cluster_ca: crate::tls::IN_CLUSTER_CA.into(),
        path_prefix: conn.path_prefix,
        kubeconfig: conn.kubeconfig,
        context: conn.context,
        namespace_selector,
        label_selector,
        default_weight,
        shared_size,
        watch_endpoint_slices,
        watch_idle_timeout,
        list_timeout,
        max_staleness,
        max_object_size,
        list_strategy,
    };
    Ok((cluster, Value::Object(raw)))
}

fn parse_id(v: Option<&Value>, scope: &Scope<'_>) -> Result<String, ConfigError> {
    let field = scope.path("id");
    let Some(v) = v else {
        return Err(error(field, "(missing)", "required in multi-cluster mode"));
    };
    let rule = "must be 1 to 64 characters of [a-z0-9]";
    let s = v.as_str().ok_or_else(|| error(&field, show(v), rule))?;
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        return Err(error(field, show(v), rule));
    }
    Ok(s.to_owned())
}

type Service = (Scheme, String, u16, bool, Value);

fn parse_service(v: Option<&Value>, scope: &Scope<'_>) -> Result<Service, ConfigError> {
    let field = scope.path("service");
    let empty = Map::new();
    let obj = match v {
        Some(v) => v
            .as_object()
            .ok_or_else(|| error(&field, show(v), "must be an object"))?,
        None if scope.multi() => {
            return Err(error(field, "(missing)", "required in multi-cluster mode"));
        }
        None => &empty,
    };
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

fn parse_host(v: &Value, scope: &Scope<'_>) -> Result<String, ConfigError> {
    let field = "service.host";
    let rule = "must be a host name, an IPv4 or IPv6 address, or ${VAR}";
    let s = v
        .as_str()
        .ok_or_else(|| error(scope.path(field), show(v), rule))?;
    let (resolved, var) = scope.expand(field, s, &show(v))?;
    let trimmed = resolved.trim();
    normalize_host(trimmed).ok_or_else(|| {
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

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

/// A valid host, without IPv6 brackets; `None` if invalid.
pub(crate) fn normalize_host(h: &str) -> Option<String> {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(|_| inner.to_owned());
    }
    if h.contains(':') {
        return h.parse::<Ipv6Addr>().ok().map(|_| h.to_owned());
    }
    if h.parse::<Ipv4Addr>().is_ok() || is_dns_name(h) {
        return Some(h.to_owned());
    }
    None
}

/// A DNS name, any case: labels of [A-Za-z0-9-] not starting or ending with
/// '-', at most 63 each and 253 in all. The last label may not be all digits,
/// so that a malformed IPv4 such as `10.0.0.256` is not taken as a name.
fn is_dns_name(h: &str) -> bool {
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let labels_ok = h.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    });
    let last_numeric = h
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()));
    labels_ok && !last_numeric
}

fn parse_port(v: &Value, scope: &Scope<'_>) -> Result<u16, ConfigError> {
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
struct Connection {
    scheme: Scheme,
    host: String,
    port: u16,
    ssl_verify: bool,
    token: Option<Secret>,
    token_file: Option<String>,
    ca: Option<Pem>,
    client_cert: Option<Pem>,
    client_key: Option<Pem>,
    path_prefix: String,
    kubeconfig: Option<String>,
    context: Option<String>,
}

fn from_kubeconfig(
    v: &Value,
    context: Option<&str>,
    scope: &Scope<'_>,
) -> Result<Connection, ConfigError> {
    let path = parse_path(v, "kubeconfig", scope)?;
    let fail = |rule: String| error(scope.path("kubeconfig"), show(v), rule);
    let k = crate::kubeconfig::load(std::path::Path::new(&path), context).map_err(&fail)?;
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
        scheme: k.scheme,
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
fn is_schema_default(key: &str, v: &Value) -> bool {
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
enum PemRole {
    Ca,
    Cert,
    Key,
}

/// Reads and checks the configured CA and client identity, so that a wrong file stops nginx at start with the
/// field named rather than failing later in the watcher.
fn check_pem_files(
    ca: Option<&Pem>,
    cert: Option<&Pem>,
    key: Option<&Pem>,
) -> Result<(), (PemRole, String)> {
    if let Some(ca) = ca {
        let bytes = ca.read().map_err(|e| (PemRole::Ca, e))?;
        crate::tls::parse_certs(&bytes).map_err(|e| (PemRole::Ca, e))?;
    }
    if let (Some(c), Some(k)) = (cert, key) {
        let cb = c.read().map_err(|e| (PemRole::Cert, e))?;
        let certs = crate::tls::parse_certs(&cb).map_err(|e| (PemRole::Cert, e))?;
        let kb = k.read().map_err(|e| (PemRole::Key, e))?;
        let key = crate::tls::parse_key(&kb).map_err(|e| (PemRole::Key, e))?;
        crate::tls::check_identity(&certs, &key).map_err(|e| (PemRole::Key, e))?;
    }
    Ok(())
}

/// A file path setting: a non-empty string (or `${VAR}`), expanded.
fn parse_path(v: &Value, field: &str, scope: &Scope<'_>) -> Result<String, ConfigError> {
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

struct ClientSettings {
    token: Option<Secret>,
    token_file: Option<String>,
    ca: Option<Pem>,
    cert: Option<Pem>,
    key: Option<Pem>,
    raw: Value,
}

fn parse_client(
    v: Option<&Value>,
    scheme: Scheme,
    scope: &Scope<'_>,
) -> Result<ClientSettings, ConfigError> {
    let field = scope.path("client");
    let empty = Map::new();
    let obj = match v {
        Some(v) => v
            .as_object()
            .ok_or_else(|| error(&field, show(v), "must be an object"))?,
        None if scope.multi() => {
            return Err(error(
                field,
                "(missing)",
                "required in multi-cluster mode, with exactly one of token / token_file (or cert_file and key_file)",
            ));
        }
        None => &empty,
    };
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
        error(scope.path(&format!("client.{key}")), shown, e)
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

fn parse_token(v: &Value, scope: &Scope<'_>) -> Result<String, ConfigError> {
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

fn parse_token_file(v: &Value, scope: &Scope<'_>) -> Result<String, ConfigError> {
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

fn parse_namespace_selector(
    v: &Value,
    scope: &Scope<'_>,
) -> Result<Option<NamespaceSelector>, ConfigError> {
    let field = scope.path("namespace_selector");
    let obj = v.as_object().ok_or_else(|| {
        error(
            &field,
            show(v),
            "must be an object with at most one of equal, not_equal, match, not_match",
        )
    })?;
    check_keys(
        obj,
        &keys_under("namespace_selector", false),
        scope,
        "namespace_selector.",
    )?;
    let set: Vec<(&String, &Value)> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
    let (key, value) = match set.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|(k, _)| k.as_str()).collect();
            return Err(error(
                field,
                show(v),
                format!(
                    "at most one of equal, not_equal, match, not_match may be set (found {})",
                    names.join(", ")
                ),
            ));
        }
    };
    let sub = scope.path(&format!("namespace_selector.{key}"));
    match key.as_str() {
        "equal" | "not_equal" => {
            let rule = "must be a namespace name matching ^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$";
            let ns = value
                .as_str()
                .filter(|s| is_namespace_name(s))
                .ok_or_else(|| error(&sub, show(value), rule))?;
            Ok(Some(if key == "equal" {
                NamespaceSelector::Equal(ns.to_owned())
            } else {
                NamespaceSelector::NotEqual(ns.to_owned())
            }))
        }
        _ => {
            let list = value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                error(
                    &sub,
                    show(value),
                    "must be a non-empty array of regex strings",
                )
            })?;
            let mut patterns = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                let item = format!("{sub}[{i}]");
                let s = p
                    .as_str()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| {
                        error(
                            &item,
                            show(p),
                            "must be a string of printable ASCII without spaces (a regular expression)",
                        )
                    })?;
                let pattern = NamespacePattern::new(s).map_err(|e| {
                    error(
                        &item,
                        show(p),
                        format!("invalid regular expression: {}", regex_reason(&e)),
                    )
                })?;
                patterns.push(pattern);
            }
            Ok(Some(if key == "match" {
                NamespaceSelector::Match(patterns)
            } else {
                NamespaceSelector::NotMatch(patterns)
            }))
        }
    }
}

/// The last line of a regex error: the multi-line form quotes our anchored
/// wrapper, which would only confuse the reader.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    line.strip_prefix("error: ")
        .map(str::to_owned)
        .unwrap_or(line)
}

fn is_namespace_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || matches!(c, b'-' | b'_' | b'.'))
}

/// A whole number of seconds (an integer or a string of digits) in `min..=MAX_TIME_SETTING_S`, or None when
/// absent.
fn parse_seconds(
    v: Option<&Value>,
    key: &str,
    min: u64,
    scope: &Scope<'_>,
) -> Result<Option<std::time::Duration>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let secs = as_integer(v)
        .or_else(|| v.as_str().and_then(|s| s.trim().parse::<i64>().ok()))
        .and_then(|i| u64::try_from(i).ok())
        .filter(|s| (min..=MAX_TIME_SETTING_S).contains(s));
    match secs {
        Some(s) => Ok(Some(std::time::Duration::from_secs(s))),
        None => Err(error(
            scope.path(key),
            show(v),
            format!("must be a number of seconds in {min}..={MAX_TIME_SETTING_S}"),
        )),
    }
}

fn parse_shared_size(v: &Value, scope: &Scope<'_>) -> Result<usize, ConfigError> {
    parse_mib(v, "shared_size", MAX_SHARED_SIZE_MB, scope)
}

/// A size in MiB written like "64m" (`^[1-9][0-9]*m$`), at most `max_mb`, in bytes.
fn parse_mib(v: &Value, key: &str, max_mb: u64, scope: &Scope<'_>) -> Result<usize, ConfigError> {
    let rule = format!("must be a size in MiB like \"64m\": ^[1-9][0-9]*m$, at most {max_mb}m");
    let mb = v
        .as_str()
        .and_then(|s| s.strip_suffix('m'))
        .filter(|n| n.len() <= 6 && !n.starts_with('0') && !n.is_empty())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|mb| (1..=max_mb).contains(mb));
    let mb = mb.ok_or_else(|| error(scope.path(key), show(v), rule))?;
    usize::try_from(mb << 20)
        .map_err(|_| error(scope.path(key), show(v), "too large for this platform"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

    fn env(name: &str) -> Option<String> {
        match name {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".into()),
            "KUBERNETES_SERVICE_PORT" => Some("443".into()),
            "KUBERNETES_CLIENT_TOKEN" => Some("  eyJhbGciOi.secret.sig\n".into()),
            "KUBERNETES_CLIENT_TOKEN_FILE" => Some("/tmp/token".into()),
            "V6_HOST" => Some("fd00:10:96::1".into()),
            "PORT2" => Some("6443".into()),
            "BAD_PORT" => Some("70000".into()),
            "TEXT_PORT" => Some("http".into()),
            "EMPTY" => Some(String::new()),
            "SPACEY_TOKEN" => Some("abc def".into()),
            "BAD_HOST" => Some("not a host".into()),
            _ => None,
        }
    }

    fn ok(v: serde_json::Value) -> Config {
        match parse(&v.to_string(), &env) {
            Ok(c) => c,
            Err(e) => panic!("{v} should parse: {e}"),
        }
    }

    fn one(v: serde_json::Value) -> ClusterConfig {
        let mut c = ok(v);
        assert_eq!(c.clusters.len(), 1);
        c.clusters.remove(0)
    }

    fn err(v: serde_json::Value) -> ConfigError {
        match parse(&v.to_string(), &env) {
            Ok(c) => panic!("{v} should be rejected, got {c:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the field, the shown value and a fragment of the rule, and
    /// that the Display form carries all three.
    fn rejects(v: serde_json::Value, field: &str, value: &str, rule_part: &str) {
        let e = err(v);
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.value, value, "{e}");
        assert!(
            e.rule.contains(rule_part),
            "rule {:?} lacks {rule_part:?}",
            e.rule
        );
        assert_eq!(
            e.to_string(),
            format!("invalid discovery config: {field} = {value}: {}", e.rule)
        );
    }

    fn item(id: &str) -> serde_json::Value {
        json!({"id": id, "service": {"host": "10.0.0.1", "port": "6443"},
               "client": {"token_file": "/var/run/token"}})
    }

    // ---- defaults ----

    #[test]
    fn empty_object_gets_all_defaults() {
        let c = ok(json!({}));
        assert!(!c.multi);
        let cl = &c.clusters[0];
        assert_eq!(cl.id, "");
        assert_eq!(cl.scheme, Scheme::Https);
        assert_eq!(cl.host, "10.96.0.1");
        assert_eq!(cl.port, 443);
        assert!(cl.ssl_verify);
        assert_eq!(cl.token, None);
        assert_eq!(cl.token_file.as_deref(), Some(DEFAULT_TOKEN_FILE));
        assert_eq!(cl.namespace_selector, None);
        assert_eq!(cl.label_selector, None);
        assert_eq!(cl.default_weight, 50);
        assert_eq!(cl.shared_size, 64 * 1024 * 1024);
        assert!(!cl.watch_endpoint_slices);
        assert_eq!(cl.base_url(), "https://10.96.0.1:443");
        assert_eq!(
            c.raw,
            json!({
                "service": {"schema": "https", "host": "${KUBERNETES_SERVICE_HOST}",
                            "port": "${KUBERNETES_SERVICE_PORT}", "ssl_verify": true},
                "client": {"token_file": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
                "default_weight": 50, "shared_size": "64m", "watch_endpoint_slices": false
            })
        );
    }

    #[test]
    fn empty_service_gets_each_default() {
        let a = ok(json!({"service": {}}));
        let b = ok(json!({}));
        assert_eq!(a, b);
        let c = one(json!({"service": {"host": "sample.com"}}));
        assert_eq!(c.host, "sample.com");
        assert_eq!(c.port, 443);
        assert_eq!(c.scheme, Scheme::Https);
        let c = ok(json!({"service": {"port": "6443", "schema": "http"}}));
        assert_eq!(c.clusters[0].base_url(), "http://10.96.0.1:6443");
        assert_eq!(
            c.raw["service"],
            json!({"schema": "http", "host": "${KUBERNETES_SERVICE_HOST}", "port": "6443",
                   "ssl_verify": true})
        );
    }

    #[test]
    fn apisix_test1_token_config() {
        // kubernetes.t TEST 1: a token suppresses the token_file default.
        let c = ok(json!({"client": {"token": "${KUBERNETES_CLIENT_TOKEN}"}}));
        let cl = &c.clusters[0];
        assert_eq!(
            cl.token.as_ref().map(|t| t.expose()),
            Some("eyJhbGciOi.secret.sig"),
            "expanded and trimmed"
        );
        assert_eq!(cl.token_file, None);
        assert_eq!(
            c.raw,
            json!({
                "service": {"schema": "https", "host": "${KUBERNETES_SERVICE_HOST}",
                            "port": "${KUBERNETES_SERVICE_PORT}", "ssl_verify": true},
                "client": {"token": "${KUBERNETES_CLIENT_TOKEN}"},
                "watch_endpoint_slices": false, "shared_size": "64m", "default_weight": 50
            })
        );
    }

    #[test]
    fn explicit_values_are_kept() {
        let c = ok(json!({
            "service": {"schema": "http", "host": "127.0.0.1", "port": 6445, "ssl_verify": false},
            "client": {"token": "abc.DEF-123_/+="},
            "namespace_selector": {"equal": "ns-a"},
            "label_selector": " first=1,second ",
            "default_weight": 33, "shared_size": "1000m", "watch_endpoint_slices": true
        }));
        let cl = &c.clusters[0];
        assert_eq!(cl.scheme, Scheme::Http);
        assert_eq!(cl.port, 6445);
        assert!(!cl.ssl_verify);
        assert_eq!(
            cl.token.as_ref().map(|t| t.expose()),
            Some("abc.DEF-123_/+=")
        );
        assert_eq!(
            cl.namespace_selector,
            Some(NamespaceSelector::Equal("ns-a".into()))
        );
        assert_eq!(cl.label_selector.as_deref(), Some("first=1,second"));
        assert_eq!(cl.default_weight, 33);
        assert_eq!(cl.shared_size, 1000 << 20);
        assert!(cl.watch_endpoint_slices);
        assert_eq!(c.raw["service"]["ssl_verify"], json!(false));
        assert_eq!(c.raw["default_weight"], json!(33));
    }

    #[test]
    fn nulls_are_treated_as_missing() {
        let c = ok(
            json!({"service": null, "client": null, "namespace_selector": null,
                          "label_selector": null, "default_weight": null}),
        );
        assert_eq!(c.clusters, ok(json!({})).clusters);
        assert_eq!(c.raw["default_weight"], json!(50));
        let cl = one(json!({"namespace_selector": {}}));
        assert_eq!(cl.namespace_selector, None);
        let cl = one(json!({"label_selector": "  "}));
        assert_eq!(cl.label_selector, None);
    }

    #[test]
    fn single_mode_both_token_and_file_token_wins() {
        let cl = one(json!({"client": {"token": "tok", "token_file": "/f"}}));
        assert_eq!(cl.token.as_ref().map(|t| t.expose()), Some("tok"));
        assert_eq!(cl.token_file, None);
        // An empty token falls back to the file instead of failing.
        let cl = one(json!({"client": {"token": "", "token_file": "/f"}}));
        assert_eq!(cl.token, None);
        assert_eq!(cl.token_file.as_deref(), Some("/f"));
    }

    #[test]
    fn client_without_credentials_gets_default_file() {
        let c = ok(json!({"client": {}}));
        assert_eq!(
            c.clusters[0].token_file.as_deref(),
            Some(DEFAULT_TOKEN_FILE)
        );
        assert_eq!(c.raw["client"], json!({"token_file": DEFAULT_TOKEN_FILE}));
    }

    #[test]
    fn empty_token_is_allowed_over_http() {
        let cl = one(json!({"service": {"schema": "http"}, "client": {"token": ""}}));
        assert_eq!(cl.token, None);
        assert_eq!(cl.token_file, None);
    }

    // ---- env expansion ----

    #[test]
    fn env_expansion_of_all_four_fields() {
        let cl = one(json!({
            "service": {"host": "${V6_HOST}", "port": "${PORT2}"},
            "client": {"token_file": "${KUBERNETES_CLIENT_TOKEN_FILE}"}
        }));
        assert_eq!(cl.host, "fd00:10:96::1");
        assert_eq!(cl.port, 6443);
        assert_eq!(cl.token_file.as_deref(), Some("/tmp/token"));
        assert_eq!(cl.base_url(), "https://[fd00:10:96::1]:6443");
    }

    #[test]
    fn env_only_whole_string_references_expand() {
        // A partial reference is not interpolated; it is then an invalid host.
        rejects(
            json!({"service": {"host": "x${V6_HOST}"}}),
            "service.host",
            "\"x${V6_HOST}\"",
            "must be a host name",
        );
        // A literal path containing ${...} mid-string stays literal.
        let cl = one(json!({"client": {"token_file": "/a/${B}/c"}}));
        assert_eq!(cl.token_file.as_deref(), Some("/a/${B}/c"));
    }

    #[test]
    fn env_missing_variable_names_field_and_var() {
        rejects(
            json!({"service": {"host": "${NOPE}"}}),
            "service.host",
            "\"${NOPE}\"",
            "environment variable NOPE (referenced as ${NOPE}) is not set",
        );
        rejects(
            json!({"service": {"port": "${NOPE}"}}),
            "service.port",
            "\"${NOPE}\"",
            "NOPE (referenced as ${NOPE}) is not set",
        );
        rejects(
            json!({"client": {"token": "${NOPE}"}}),
            "client.token",
            "\"${NOPE}\"",
            "NOPE (referenced as ${NOPE}) is not set",
        );
        rejects(
            json!({"client": {"token_file": "${NOPE}"}}),
            "client.token_file",
            "\"${NOPE}\"",
            "is not set",
        );
        // The defaults reference variables too.
        let e = parse("{}", &|_: &str| None).expect_err("no env");
        assert_eq!(e.field, "service.host");
        assert!(e.rule.contains("KUBERNETES_SERVICE_HOST"), "{e}");
    }

    #[test]
    fn env_bad_variable_name() {
        rejects(
            json!({"service": {"host": "${1ABC}"}}),
            "service.host",
            "\"${1ABC}\"",
            "not a valid environment variable reference",
        );
        rejects(
            json!({"service": {"port": "${A-B}"}}),
            "service.port",
            "\"${A-B}\"",
            "not a valid environment variable reference",
        );
        rejects(
            json!({"client": {"token": "${}"}}),
            "client.token",
            "\"${}\"",
            "not a valid environment variable reference",
        );
    }

    #[test]
    fn env_values_are_validated() {
        rejects(
            json!({"service": {"port": "${BAD_PORT}"}}),
            "service.port",
            "\"${BAD_PORT}\"",
            "BAD_PORT = \"70000\" is not a port number",
        );
        rejects(
            json!({"service": {"port": "${TEXT_PORT}"}}),
            "service.port",
            "\"${TEXT_PORT}\"",
            "TEXT_PORT = \"http\"",
        );
        rejects(
            json!({"service": {"host": "${EMPTY}"}}),
            "service.host",
            "\"${EMPTY}\"",
            "environment variable EMPTY is empty",
        );
        rejects(
            json!({"service": {"host": "${BAD_HOST}"}}),
            "service.host",
            "\"${BAD_HOST}\"",
            "BAD_HOST = \"not a host\" is not a host name",
        );
        rejects(
            json!({"client": {"token": "${SPACEY_TOKEN}"}}),
            "client.token",
            "\"${SPACEY_TOKEN}\"",
            "visible ASCII",
        );
        rejects(
            json!({"client": {"token_file": "${EMPTY}"}}),
            "client.token_file",
            "\"${EMPTY}\"",
            "non-empty path",
        );
        // An empty token from the environment is an https error naming the field.
        rejects(
            json!({"client": {"token": "${EMPTY}"}}),
            "client.token",
            "\"${EMPTY}\"",
            "empty token",
        );
    }

    #[test]
    fn env_names_may_end_in_a_digit() {
        assert_eq!(one(json!({"service": {"port": "${PORT2}"}})).port, 6443);
    }

    // ---- service ----

    #[test]
    fn host_forms() {
        for (host, want) in [
            ("sample.com", "sample.com"),
            ("Kubernetes.Default.SVC", "Kubernetes.Default.SVC"),
            ("localhost", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[fd00:10:96::1]", "fd00:10:96::1"),
            ("2001:DB8::1", "2001:DB8::1"),
            ("a-b.c1", "a-b.c1"),
        ] {
            let cl = one(json!({"service": {"host": host}}));
            assert_eq!(cl.host, want, "{host}");
        }
        assert_eq!(
            one(json!({"service": {"host": "[::1]", "port": "6443"}})).base_url(),
            "https://[::1]:6443"
        );
    }

    #[test]
    fn rejects_bad_hosts() {
        for host in [
            "",
            " ",
            "-a.com",
            "a-.com",
            "a..b",
            "a.com.",
            "10.0.0.256",
            "1.2.3",
            "a_b.com",
            "[10.0.0.1]",
            "[::1",
            "::g",
            "http://a.com",
            "a.com:6443",
            "fe80::1%eth0",
        ] {
            rejects(
                json!({"service": {"host": host}}),
                "service.host",
                &serde_json::to_string(host).expect("json"),
                "must be a host name",
            );
        }
        rejects(
            json!({"service": {"host": 10}}),
            "service.host",
            "10",
            "must be a host name",
        );
        let long = format!("{}.com", "a".repeat(64));
        assert_eq!(
            err(json!({"service": {"host": long}})).field,
            "service.host"
        );
    }

    #[test]
    fn port_forms() {
        assert_eq!(one(json!({"service": {"port": 6443}})).port, 6443);
        assert_eq!(one(json!({"service": {"port": 6443.0}})).port, 6443);
        assert_eq!(one(json!({"service": {"port": "1"}})).port, 1);
        assert_eq!(one(json!({"service": {"port": "65535"}})).port, 65535);
        assert_eq!(one(json!({"service": {"port": 65535}})).port, 65535);
    }

    #[test]
    fn rejects_bad_ports() {
        for (v, shown) in [
            (json!(0), "0"),
            (json!(65536), "65536"),
            (json!(-1), "-1"),
            (json!(6443.5), "6443.5"),
            (json!("0"), "\"0\""),
            (json!("65536"), "\"65536\""),
            (json!("100000"), "\"100000\""),
            (json!("+80"), "\"+80\""),
            (json!("80a"), "\"80a\""),
            (json!(""), "\"\""),
            (json!(true), "true"),
            (json!([443]), "[443]"),
        ] {
            rejects(
                json!({"service": {"port": v}}),
                "service.port",
                shown,
                "must be a port number in 1..=65535",
            );
        }
    }

    #[test]
    fn rejects_bad_schema() {
        rejects(
            json!({"service": {"schema": "HTTPS"}}),
            "service.schema",
            "\"HTTPS\"",
            "must be \"http\" or \"https\"",
        );
        rejects(
            json!({"service": {"schema": "ftp"}}),
            "service.schema",
            "\"ftp\"",
            "must be \"http\" or \"https\"",
        );
    }

    #[test]
    fn rejects_bad_ssl_verify() {
        rejects(
            json!({"service": {"ssl_verify": "false"}}),
            "service.ssl_verify",
            "\"false\"",
            "must be a boolean",
        );
    }

    #[test]
    fn rejects_service_not_object() {
        rejects(
            json!({"service": "x"}),
            "service",
            "\"x\"",
            "must be an object",
        );
    }

    // ---- client ----

    #[test]
    fn rejects_bad_token_and_masks_it() {
        rejects(
            json!({"client": {"token": "has space"}}),
            "client.token",
            "\"******\"",
            "[A-Za-z0-9+/._=-]",
        );
        rejects(
            json!({"client": {"token": "x".repeat(4097)}}),
            "client.token",
            "\"******\"",
            "at most 4096",
        );
        rejects(
            json!({"client": {"token": 12345}}),
            "client.token",
            "\"******\"",
            "must be ${VAR}",
        );
        let e = err(json!({"client": {"token": "secret!value"}}));
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(
            one(json!({"client": {"token": "x".repeat(4096)}}))
                .token
                .map(|t| t.expose().len()),
            Some(4096)
        );
    }

    #[test]
    fn rejects_empty_token_over_https() {
        rejects(
            json!({"client": {"token": ""}}),
            "client.token",
            "\"******\"",
            "resolves to an empty token",
        );
    }

    #[test]
    fn rejects_bad_token_file() {
        for (path, shown) in [
            (json!(""), "\"\""),
            (json!("C:\\token"), "\"C:\\\\token\""),
            (json!("/a*b"), "\"/a*b\""),
            (json!("/a?b"), "\"/a?b\""),
            (json!("/a|b"), "\"/a|b\""),
            (json!("/a<b>"), "\"/a<b>\""),
            (json!(7), "7"),
        ] {
            rejects(
                json!({"client": {"token_file": path}}),
                "client.token_file",
                shown,
                "must be a non-empty path",
            );
        }
        let long = format!("/{}", "a".repeat(500));
        assert_eq!(
            err(json!({"client": {"token_file": long}})).field,
            "client.token_file"
        );
        assert!(
            one(json!({"client": {"token_file": format!("/{}", "a".repeat(499))}}))
                .token_file
                .is_some()
        );
    }

    #[test]
    fn rejects_unknown_client_key_masked() {
        rejects(
            json!({"client": {"tokn": "secret"}}),
            "client.tokn",
            "\"******\"",
            "unknown key (allowed: token, token_file, ca_file, cert_file, key_file)",
        );
        rejects(json!({"client": []}), "client", "[]", "must be an object");
    }

    // ---- namespace selector ----

    #[test]
    fn namespace_selector_modes() {
        let sel = |v: serde_json::Value| one(json!({"namespace_selector": v})).namespace_selector;
        assert_eq!(
            sel(json!({"not_equal": "ns-a"})),
            Some(NamespaceSelector::NotEqual("ns-a".into()))
        );
        let m = sel(json!({"match": ["ns-a", "ns-[ab]"]})).expect("set");
        assert!(
            matches!(&m, NamespaceSelector::Match(p) if p.len() == 2 && p[1].as_str() == "ns-[ab]")
        );
        assert!(m.admits("ns-b") && !m.admits("xns-a"));
        let nm = sel(json!({"not_match": ["ns-[ab]"]})).expect("set");
        assert!(matches!(&nm, NamespaceSelector::NotMatch(p) if p.len() == 1));
        assert!(!nm.admits("ns-a") && nm.admits("ns-c"));
        assert_eq!(
            sel(json!({"equal": "a_b.c"})),
            Some(NamespaceSelector::Equal("a_b.c".into()))
        );
        // A null beside a real key does not count as a second mode.
        assert_eq!(
            sel(json!({"equal": "ns-a", "match": null})),
            Some(NamespaceSelector::Equal("ns-a".into()))
        );
    }

    #[test]
    fn rejects_two_namespace_modes() {
        rejects(
            json!({"namespace_selector": {"equal": "a", "not_equal": "b"}}),
            "namespace_selector",
            "{\"equal\":\"a\",\"not_equal\":\"b\"}",
            "at most one of equal, not_equal, match, not_match may be set (found equal, not_equal)",
        );
    }

    #[test]
    fn rejects_bad_namespace_names() {
        for ns in ["", "NS-A", "-a", "a-", "a b", "ns/a"] {
            rejects(
                json!({"namespace_selector": {"equal": ns}}),
                "namespace_selector.equal",
                &serde_json::to_string(ns).expect("json"),
                "must be a namespace name",
            );
        }
        rejects(
            json!({"namespace_selector": {"not_equal": 5}}),
            "namespace_selector.not_equal",
            "5",
            "must be a namespace name",
        );
    }

    #[test]
    fn rejects_bad_namespace_patterns() {
        rejects(
            json!({"namespace_selector": {"match": []}}),
            "namespace_selector.match",
            "[]",
            "non-empty array",
        );
        rejects(
            json!({"namespace_selector": {"not_match": "ns-a"}}),
            "namespace_selector.not_match",
            "\"ns-a\"",
            "non-empty array",
        );
        rejects(
            json!({"namespace_selector": {"match": ["ok", "ns-["]}}),
            "namespace_selector.match[1]",
            "\"ns-[\"",
            "invalid regular expression: unclosed character class",
        );
        rejects(
            json!({"namespace_selector": {"match": ["a b"]}}),
            "namespace_selector.match[0]",
            "\"a b\"",
            "printable ASCII",
        );
        rejects(
            json!({"namespace_selector": {"not_match": [3]}}),
            "namespace_selector.not_match[0]",
            "3",
            "printable ASCII",
        );
    }

    #[test]
    fn rejects_unknown_namespace_selector_key() {
        rejects(
            json!({"namespace_selector": {"regex": "a"}}),
            "namespace_selector.regex",
            "\"a\"",
            "unknown key (allowed: equal, not_equal, match, not_match)",
        );
        rejects(
            json!({"namespace_selector": ["a"]}),
            "namespace_selector",
            "[\"a\"]",
            "must be an object",
        );
    }

    // ---- other fields ----

    #[test]
    fn rejects_bad_label_selector() {
        rejects(
            json!({"label_selector": "a=b,"}),
            "label_selector",
            "\"a=b,\"",
            "empty requirement after the last ','",
        );
        rejects(
            json!({"label_selector": "env in (a"}),
            "label_selector",
            "\"env in (a\"",
            "requirement `env in (a`: unbalanced parentheses",
        );
        rejects(
            json!({"label_selector": 1}),
            "label_selector",
            "1",
            "must be a string",
        );
    }

    #[test]
    fn default_weight_values() {
        assert_eq!(one(json!({"default_weight": 0})).default_weight, 0);
        assert_eq!(one(json!({"default_weight": 100.0})).default_weight, 100);
        for (v, shown) in [
            (json!(1.5), "1.5"),
            (json!(-1), "-1"),
            (json!("50"), "\"50\""),
            (json!(4294967296u64), "4294967296"),
            (json!(true), "true"),
        ] {
            rejects(
                json!({"default_weight": v}),
                "default_weight",
                shown,
                "must be an integer in 0..=4294967295",
            );
        }
    }

    #[test]
    fn shared_size_values() {
        assert_eq!(one(json!({"shared_size": "1m"})).shared_size, 1 << 20);
        assert_eq!(
            one(json!({"shared_size": "16384m"})).shared_size,
            16384 << 20
        );
        for (v, shown) in [
            (json!("0m"), "\"0m\""),
            (json!("064m"), "\"064m\""),
            (json!("64"), "\"64\""),
            (json!("64M"), "\"64M\""),
            (json!("64k"), "\"64k\""),
            (json!("1g"), "\"1g\""),
            (json!("m"), "\"m\""),
            (json!("16385m"), "\"16385m\""),
            (json!("99999999999999999999m"), "\"99999999999999999999m\""),
            (json!(64), "64"),
        ] {
            rejects(
                json!({"shared_size": v}),
                "shared_size",
                shown,
                "^[1-9][0-9]*m$",
            );
        }
    }

    #[test]
    fn rejects_bad_watch_endpoint_slices() {
        rejects(
            json!({"watch_endpoint_slices": 1}),
            "watch_endpoint_slices",
            "1",
            "must be a boolean",
        );
    }

    #[test]
    fn list_strategy_defaults_to_auto_and_names_the_field_when_wrong() {
        assert_eq!(
            one(json!({"client": {"token": "t"}})).list_strategy,
            ListStrategy::Auto
        );
        for (name, want) in [
            ("auto", ListStrategy::Auto),
            ("watch_list", ListStrategy::WatchList),
            ("list", ListStrategy::List),
        ] {
            let c = one(json!({"client": {"token": "t"}, "list_strategy": name}));
            assert_eq!(c.list_strategy, want);
            assert_eq!(want.as_str(), name);
        }
        rejects(
            json!({"client": {"token": "t"}, "list_strategy": "stream"}),
            "list_strategy",
            "\"stream\"",
            "must be one of auto, watch_list, list",
        );
        rejects(
            json!([{"id": "a", "service": {"host": "h", "port": 1}, "client": {"token": "t"}, "list_strategy": true}]),
            "[0].list_strategy",
            "true",
            "must be one of",
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        rejects(
            json!({"namespace_selecter": {"equal": "a"}}),
            "namespace_selecter",
            "{\"equal\":\"a\"}",
            "unknown key (allowed: service, client, namespace_selector",
        );
        rejects(
            json!({"service": {"hots": "a"}}),
            "service.hots",
            "\"a\"",
            "unknown key (allowed: schema, host, port, ssl_verify)",
        );
        // `id` is only a key in multi mode.
        rejects(json!({"id": "a"}), "id", "\"a\"", "unknown key");
    }

    #[test]
    fn rejects_bad_top_level() {
        for (v, shown) in [
            (json!([]), "[]"),
            (json!("x"), "\"x\""),
            (json!(null), "null"),
            (json!(1), "1"),
        ] {
            rejects(
                v,
                "discovery.kubernetes",
                shown,
                "must be an object (one cluster) or a non-empty array",
            );
        }
        let e = parse("{\"client\":{\"token\":\"sec", &env).expect_err("truncated");
        assert_eq!(e.field, "discovery.kubernetes");
        assert_eq!(e.value, "(not JSON)");
        assert!(e.rule.starts_with("invalid JSON"), "{e}");
        assert!(!e.to_string().contains("sec\""), "{e}");
        let deep = "[".repeat(10_000);
        assert!(parse(&deep, &env).is_err());
    }

    // ---- multi mode ----

    #[test]
    fn multi_mode_parses_each_cluster() {
        let c = ok(json!([
            {"id": "debug", "service": {"host": "${KUBERNETES_SERVICE_HOST}", "port": "${PORT2}"},
             "client": {"token": "${KUBERNETES_CLIENT_TOKEN}"}},
            {"id": "release", "service": {"schema": "http", "host": "127.0.0.1", "port": 6445},
             "client": {"token_file": "/t"}, "default_weight": 7, "shared_size": "2m"}
        ]));
        assert!(c.multi);
        assert_eq!(c.clusters.len(), 2);
        let (a, b) = (&c.clusters[0], &c.clusters[1]);
        assert_eq!(
            (a.id.as_str(), a.scheme, a.host.as_str(), a.port),
            ("debug", Scheme::Https, "10.96.0.1", 6443)
        );
        assert_eq!(
            a.token.as_ref().map(|t| t.expose()),
            Some("eyJhbGciOi.secret.sig")
        );
        assert_eq!(a.token_file, None);
        assert_eq!((a.default_weight, a.shared_size), (50, 64 << 20));
        assert_eq!(
            (b.id.as_str(), b.scheme, b.port),
            ("release", Scheme::Http, 6445)
        );
        assert_eq!(b.token_file.as_deref(), Some("/t"));
        assert_eq!((b.default_weight, b.shared_size), (7, 2 << 20));
        assert_eq!(
            c.raw[0],
            json!({"id": "debug",
                   "service": {"schema": "https", "host": "${KUBERNETES_SERVICE_HOST}",
                               "port": "${PORT2}", "ssl_verify": true},
                   "client": {"token": "${KUBERNETES_CLIENT_TOKEN}"},
                   "default_weight": 50, "shared_size": "64m", "watch_endpoint_slices": false})
        );
    }

    #[test]
    fn multi_mode_id_pattern() {
        for id in ["cluster1", "a", &"a".repeat(64), "0"] {
            assert_eq!(ok(json!([item(id)])).clusters[0].id, id);
        }
        for id in ["CLUSTER1", "cluster-1", &"a".repeat(65), "", "a_b", "é"] {
            rejects(
                json!([item(id)]),
                "[0].id",
                &serde_json::to_string(id).expect("json"),
                "must be 1 to 64 characters of [a-z0-9]",
            );
        }
        rejects(
            json!([item("a"), {"service": {}}]),
            "[1].id",
            "(missing)",
            "required",
        );
        rejects(json!([{"id": 1}]), "[0].id", "1", "must be 1 to 64");
    }

    #[test]
    fn multi_mode_duplicate_id() {
        rejects(
            json!([item("a"), item("b"), item("a")]),
            "[2].id",
            "\"a\"",
            "duplicate id (already used by [0])",
        );
    }

    #[test]
    fn multi_mode_requires_service_host_port() {
        rejects(
            json!([{"id": "a", "client": {"token": "t"}}]),
            "[0].service",
            "(missing)",
            "required in multi-cluster mode",
        );
        rejects(
            json!([{"id": "a", "service": {"port": "1"}, "client": {"token": "t"}}]),
            "[0].service.host",
            "(missing)",
            "required",
        );
        rejects(
            json!([{"id": "a", "service": {"host": "h"}, "client": {"token": "t"}}]),
            "[0].service.port",
            "(missing)",
            "required",
        );
    }

    #[test]
    fn multi_mode_client_exactly_one_credential() {
        let mut both = item("a");
        both["client"] = json!({"token": "tok", "token_file": "/f"});
        rejects(
            json!([both]),
            "[0].client",
            "{\"token\":\"******\",\"token_file\":\"/f\"}",
            "exactly one of token / token_file must be set, not both",
        );
        let mut neither = item("a");
        neither["client"] = json!({});
        rejects(
            json!([neither]),
            "[0].client",
            "{}",
            "exactly one of token / token_file",
        );
        let mut missing = item("a");
        missing.as_object_mut().expect("object").remove("client");
        rejects(
            json!([missing]),
            "[0].client",
            "(missing)",
            "required in multi-cluster mode",
        );
    }

    #[test]
    fn multi_mode_errors_carry_the_index() {
        let mut bad = item("b");
        bad["client"] = json!({"token": "${NOPE}"});
        rejects(
            json!([item("a"), bad]),
            "[1].client.token",
            "\"${NOPE}\"",
            "NOPE",
        );
        rejects(
            json!([item("a"), 5]),
            "[1]",
            "5",
            "each cluster must be an object",
        );
        let mut typo = item("a");
        typo["sharedsize"] = json!("1m");
        rejects(
            json!([typo]),
            "[0].sharedsize",
            "\"1m\"",
            "unknown key (allowed: id, service",
        );
    }

    // ---- dump and debug ----

    #[test]
    fn dump_masks_every_token() {
        let c = ok(json!([
            {"id": "a", "service": {"host": "h", "port": 1}, "client": {"token": "literal-secret"}},
            {"id": "b", "service": {"host": "h", "port": 1}, "client": {"token": "${KUBERNETES_CLIENT_TOKEN}"}},
            {"id": "c", "service": {"host": "h", "port": 1}, "client": {"token_file": "/f"}}
        ]));
        let d = c.dump_json();
        assert_eq!(d[0]["client"], json!({"token": "******"}));
        assert_eq!(d[1]["client"], json!({"token": "******"}));
        assert_eq!(d[2]["client"], json!({"token_file": "/f"}));
        assert!(!d.to_string().contains("secret"));
        // raw itself is untouched.
        assert_eq!(c.raw[0]["client"]["token"], json!("literal-secret"));
        let single = ok(json!({"client": {"token": "abc"}}));
        assert_eq!(single.dump_json()["client"]["token"], json!("******"));
        assert_eq!(
            single.dump_json()["service"]["host"],
            json!("${KUBERNETES_SERVICE_HOST}")
        );
    }

    #[test]
    fn debug_output_masks_the_token() {
        let cl = one(json!({"client": {"token": "literal-secret"}}));
        let dbg = format!("{cl:?}");
        assert!(!dbg.contains("literal-secret"), "{dbg}");
        assert!(dbg.contains("******"), "{dbg}");
    }

    #[test]
    fn error_values_are_capped() {
        let e = err(json!({"service": {"host": "x".repeat(1000)}}));
        assert!(e.value.len() < 200, "{}", e.value);
        assert!(e.value.ends_with("..."));
    }

    #[test]
    fn time_settings_default_parse_and_name_the_field_when_wrong() {
        let c = one(json!({"client": {"token": "t"}}));
        assert_eq!(c.watch_idle_timeout, std::time::Duration::from_secs(120));
        assert_eq!(c.list_timeout, std::time::Duration::from_secs(300));
        assert_eq!(c.max_staleness, None);
        let c = one(
            json!({"client": {"token": "t"}, "watch_idle_timeout": 45, "list_timeout": "600",
                           "max_staleness": 90}),
        );
        assert_eq!(c.watch_idle_timeout, std::time::Duration::from_secs(45));
        assert_eq!(c.list_timeout, std::time::Duration::from_secs(600));
        assert_eq!(c.max_staleness, Some(std::time::Duration::from_secs(90)));
        rejects(
            json!({"client": {"token": "t"}, "watch_idle_timeout": 5}),
            "watch_idle_timeout",
            "5",
            "10..=86400",
        );
        rejects(
            json!({"client": {"token": "t"}, "list_timeout": "soon"}),
            "list_timeout",
            "\"soon\"",
            "number of seconds",
        );
        rejects(
            json!({"client": {"token": "t"}, "max_staleness": 0}),
            "max_staleness",
            "0",
            "1..=86400",
        );
        rejects(
            json!([{"id": "a", "service": {"host": "h", "port": 1}, "client": {"token": "t"}, "max_staleness": -1}]),
            "[0].max_staleness",
            "-1",
            "seconds",
        );
    }

    #[test]
    fn max_object_size_defaults_to_16m_and_names_the_field_when_wrong() {
        assert_eq!(
            one(json!({"client": {"token": "t"}})).max_object_size,
            16 << 20
        );
        assert_eq!(
            one(json!({"client": {"token": "t"}, "max_object_size": "2m"})).max_object_size,
            2 << 20
        );
        rejects(
            json!({"client": {"token": "t"}, "max_object_size": "2048m"}),
            "max_object_size",
            "\"2048m\"",
            "at most 1024m",
        );
        rejects(
            json!({"client": {"token": "t"}, "max_object_size": 5}),
            "max_object_size",
            "5",
            "size in MiB",
        );
    }
}
