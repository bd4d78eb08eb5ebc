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

mod cluster;
mod connection;
#[cfg(test)]
mod tests;
mod values;

use cluster::parse_cluster;
use std::fmt;

use serde_json::{Map, Value};

use crate::fields::{default_json, keys_under};
use crate::secret::Secret;
use crate::selector::{NamespacePattern, NamespaceSelector, validate_label_selector};
use crate::tls::{Pem, SettingNames};

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
    /// Zone-aware node priorities (EndpointSlices only).
    pub topology: crate::topology::Topology,
}

impl ClusterConfig {
    /// `host:port`, with an IPv6 host bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `scheme://host:port[prefix]`.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path_prefix
        )
    }

    /// How messages name this cluster's settings: config fields, or kubeconfig fields when it comes from one.
    pub fn source(&self) -> SettingNames {
        if self.kubeconfig.is_some() {
            SettingNames {
                ca: "the kubeconfig's certificate-authority",
                cert: "the kubeconfig's client-certificate",
                key: "client-key",
                host: "the kubeconfig's server",
            }
        } else {
            SettingNames {
                ca: "client.ca_file",
                cert: "client.cert_file",
                key: "client.key_file",
                host: "service.host",
            }
        }
    }

    /// What TLS needs of this cluster's settings.
    pub fn tls(&self) -> crate::tls::Settings<'_> {
        crate::tls::Settings {
            https: self.scheme == Scheme::Https,
            ssl_verify: self.ssl_verify,
            host: &self.host,
            ca: self.ca.as_ref(),
            client_cert: self.client_cert.as_ref(),
            client_key: self.client_key.as_ref(),
            in_cluster_ca: &self.in_cluster_ca,
            names: self.source(),
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
            .field("topology", &self.topology)
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
