//! The configuration reference: every key of `discovery.kubernetes`, its default, what it does and how it differs
//! from APISIX's built-in module, in one table.
//!
//! Everything else follows from this table: the parser takes its defaults and its lists of accepted keys from it,
//! the README's configuration reference is rendered from it (a test fails when the committed copy differs), and
//! `k8s_disc_config_fields()` hands it to the Lua side, where a test checks that `schema.lua` (which APISIX's CLI
//! evaluates on its own, without this library) declares every key with the same defaults.
//!
//! Adding a key: a row here, its parsing in `config/cluster.rs`, a property in `schema.lua`; then
//! `K8S_DISC_UPDATE_DOCS=1 cargo test --lib fields` rewrites the README table.

use serde_json::{Value, json};

/// A default value, as the parser applies it when the key is absent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DefaultValue {
    /// No value: the key is optional and absent means "not set".
    None,
    Str(&'static str),
    Int(u64),
    Bool(bool),
}

impl DefaultValue {
    pub fn json(self) -> Option<Value> {
        match self {
            Self::None => None,
            Self::Str(s) => Some(Value::String(s.to_owned())),
            Self::Int(i) => Some(Value::from(i)),
            Self::Bool(b) => Some(Value::Bool(b)),
        }
    }
}

/// One configuration key.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Dotted path: `default_weight`, `service.host`, `namespace_selector.equal`.
    pub name: &'static str,
    pub default: DefaultValue,
    /// How the default reads in the docs when the value alone does not say it all (a condition, multi-cluster
    /// mode, what absent means); `""` otherwise.
    pub default_note: &'static str,
    /// Accepted values and what the key does.
    pub doc: &'static str,
    /// What differs from APISIX's built-in module; `""` when nothing does.
    pub apisix: &'static str,
    /// Example values (JSON), each accepted by the library and by APISIX's CLI (`apisix init`, which checks
    /// `discovery.kubernetes` against APISIX's own schema) on every APISIX version tested. Rendered into the
    /// README; `e2e/apisix-cli/check-config.py` runs each through `apisix init`. `id` is tried in a cluster of
    /// the multi-cluster form, every other key in the single-cluster form.
    pub examples: &'static [&'static str],
    /// The other keys an example needs (a JSON object merged under the key), e.g. `kubeconfig` for `context`;
    /// `""` for none.
    pub with: &'static str,
    /// Values the library accepts but APISIX's CLI refuses, with the APISIX versions that refuse them (`"all"`,
    /// or a list such as `"3.8.1"`: the others accept it). `apisix` gives the form to use there instead.
    pub cli_refuses: &'static [(&'static str, &'static str)],
}

const NEW: &str = "not in APISIX";

/// The configuration keys, in the order the docs and error messages list them. `id` exists only in
/// multi-cluster mode.
pub static FIELDS: &[Field] = &[
    Field {
        name: "id",
        default: DefaultValue::None,
        default_note: "multi-cluster mode only, required",
        doc: "`^[a-z0-9]{1,64}$`, unique; service names are then `id/ns/name:port`",
        apisix: "a duplicate id stops nginx at start (APISIX: an error in `init_worker`, and discovery never starts). \
                 APISIX 3.8's CLI allows 8 characters at most",
        examples: &[r#""c1""#, r#""prod""#, r#""eu1""#],
        with: r#"{"service": {"host": "10.96.0.1", "port": "6443"}, "client": {"token": "${K8S_TOKEN}"}}"#,
        cli_refuses: &[(r#""production1""#, "3.8.1")],
    },
    Field {
        name: "service.schema",
        default: DefaultValue::Str("https"),
        default_note: "",
        doc: "`http` or `https`",
        apisix: "",
        examples: &[r#""https""#, r#""http""#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "service.host",
        default: DefaultValue::Str("${KUBERNETES_SERVICE_HOST}"),
        default_note: "multi-cluster: required",
        doc: "DNS name, IPv4, IPv6 (bare or bracketed), or `${VAR}`",
        apisix: "uppercase names and IPv6 literals accepted, `${VAR}` names may end in a digit (APISIX: lowercase \
                 names and IPv4 only). APISIX's CLI checks this value with its own schema: there write names in \
                 lower case, and reach an IPv6 API server through `${VAR}` (a name ending in a letter) or \
                 `kubeconfig`, whose contents the CLI does not inspect",
        examples: &[
            r#""${KUBERNETES_SERVICE_HOST}""#,
            r#""10.96.0.1""#,
            r#""kubernetes.default.svc""#,
        ],
        with: "",
        cli_refuses: &[
            (r#""fd00:10:96::1""#, "all"),
            (r#""[fd00:10:96::1]""#, "all"),
            (r#""API.Example.COM""#, "all"),
            (r#""${API_HOST2}""#, "all"),
        ],
    },
    Field {
        name: "service.port",
        default: DefaultValue::Str("${KUBERNETES_SERVICE_PORT}"),
        default_note: "multi-cluster: required",
        doc: "1..65535 as a string or an integer, or `${VAR}`",
        apisix: "a YAML integer is accepted (APISIX: strings only). APISIX's CLI needs a quoted string: \
                 `port: \"6443\"`",
        examples: &[r#""${KUBERNETES_SERVICE_PORT}""#, r#""6443""#, r#""443""#],
        with: "",
        cli_refuses: &[(r#"6443"#, "all"), (r#""${API_PORT2}""#, "all")],
    },
    Field {
        name: "service.ssl_verify",
        default: DefaultValue::Bool(true),
        default_note: "",
        doc: "boolean; `false` turns certificate verification off (a warning is logged at start)",
        apisix: "default **true** (APISIX: false)",
        examples: &[r#"true"#, r#"false"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "client.token",
        default: DefaultValue::None,
        default_note: "",
        doc: "bearer token: `${VAR}` or the JWT alphabet, up to 4096 characters; wins over `token_file`",
        apisix: "shown as `******` in the dump (APISIX shows it). In APISIX's CLI a `${VAR}` name must end in a \
                 letter or `_`",
        examples: &[
            r#""${K8S_TOKEN}""#,
            r#""eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrOHMifQ.c2lnbmF0dXJl""#,
        ],
        with: "",
        cli_refuses: &[(r#""${K8S_TOKEN2}""#, "all")],
    },
    Field {
        name: "client.token_file",
        default: DefaultValue::Str("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        default_note: "when neither a token nor a client certificate is set; multi-cluster: exactly one of \
                       token / token_file, or a client certificate",
        doc: "path, `${VAR}` allowed; re-read when it changes on disk, at least every 50 s and after a 401",
        apisix: "re-read on change instead of on every request",
        examples: &[
            r#""/var/run/secrets/kubernetes.io/serviceaccount/token""#,
            r#""${K8S_TOKEN_FILE}""#,
        ],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "client.ca_file",
        default: DefaultValue::None,
        default_note: "the in-cluster `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt` when present, \
                       else the system roots",
        doc: "PEM file of one or more CA certificates, `${VAR}` allowed; when set, the cluster's **only** trust \
              anchor; `https` only; re-read when it changes",
        apisix: NEW,
        examples: &[r#""/etc/k8s-disc/ca.crt""#, r#""${K8S_CA_FILE}""#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "client.cert_file",
        default: DefaultValue::None,
        default_note: "",
        doc: "PEM client certificate (chain) for mTLS, with `client.key_file`, alone or with a token; `https` \
              only; re-read when it changes",
        apisix: "not in APISIX. With several clusters, APISIX's CLI wants `token` or `token_file` in every \
                 cluster's `client`, so a certificate there needs one of them beside it",
        examples: &[r#""/etc/k8s-disc/client.crt""#],
        with: r#"{"client": {"key_file": "/etc/k8s-disc/client.key"}}"#,
        cli_refuses: &[],
    },
    Field {
        name: "client.key_file",
        default: DefaultValue::None,
        default_note: "",
        doc: "the private key of `client.cert_file`: RSA, ECDSA P-256/P-384 or Ed25519, in PKCS#8, PKCS#1 or \
              SEC1 form",
        apisix: NEW,
        examples: &[r#""/etc/k8s-disc/client.key""#],
        with: r#"{"client": {"cert_file": "/etc/k8s-disc/client.crt"}}"#,
        cli_refuses: &[],
    },
    Field {
        name: "namespace_selector.equal",
        default: DefaultValue::None,
        default_note: "all namespaces",
        doc: "one namespace name; watches that namespace's URL, so a namespaced Role is enough. At most one of \
              the four `namespace_selector` keys may be set",
        apisix: "APISIX watches cluster-wide and filters, needing a ClusterRole",
        examples: &[r#""default""#, r#""team-a""#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "namespace_selector.not_equal",
        default: DefaultValue::None,
        default_note: "",
        doc: "one namespace name to leave out (sent as a field selector)",
        apisix: "",
        examples: &[r#""kube-system""#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "namespace_selector.match",
        default: DefaultValue::None,
        default_note: "",
        doc: "non-empty list of regular expressions; a namespace is watched when one matches its whole name",
        apisix: "Rust regular expressions: no look-around or back-references (APISIX: PCRE); an invalid one \
                 stops nginx at start (APISIX: logged and skipped)",
        examples: &[r#"["team-.*", "prod"]"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "namespace_selector.not_match",
        default: DefaultValue::None,
        default_note: "",
        doc: "non-empty list of regular expressions; a namespace is left out when one matches its whole name",
        apisix: "as for `match`",
        examples: &[r#"["kube-.*"]"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "label_selector",
        default: DefaultValue::None,
        default_note: "",
        doc: "Kubernetes label-selector syntax (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`), sent as \
              `labelSelector`",
        apisix: "checked at start (APISIX: sent as written)",
        examples: &[
            r#""app=web""#,
            r#""app!=web""#,
            r#""tier in (web,api)""#,
            r#""tier notin (db)""#,
            r#""canary""#,
            r#""!canary""#,
            r#""app=web,!canary""#,
        ],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "default_weight",
        default: DefaultValue::Int(50),
        default_note: "",
        doc: "integer >= 0, the `weight` of every node",
        apisix: "",
        examples: &[r#"50"#, r#"0"#, r#"100"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "shared_size",
        default: DefaultValue::Str("64m"),
        default_note: "",
        doc: "`<n>m`, 1m to 16384m: the cluster's shared-memory region. A quarter of it holds two key tables (the \
              one in use is touched at start, the other at the first re-layout); the rest holds records as data \
              arrives",
        apisix: "an update that does not fit keeps the previous data and is retried (APISIX drops it). APISIX's \
                 CLI also sizes an nginx `lua_shared_dict kubernetes` (and `kubernetes-stream`) with this value, \
                 which this library does not use (README, Use with APISIX: 392 KiB each at 64m); APISIX 3.8's CLI \
                 allows 1m to 99m",
        examples: &[r#""64m""#, r#""1m""#, r#""99m""#],
        with: "",
        cli_refuses: &[(r#""128m""#, "3.8.1"), (r#""16384m""#, "3.8.1")],
    },
    Field {
        name: "watch_endpoint_slices",
        default: DefaultValue::Bool(false),
        default_note: "",
        doc: "boolean: watch `discovery.k8s.io/v1` EndpointSlices instead of v1 Endpoints",
        apisix: "`ready` unset counts as ready, an endpoint in two slices is served once, and all-terminating \
                 ports serve their `serving` endpoints",
        examples: &[r#"true"#, r#"false"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "kubeconfig",
        default: DefaultValue::None,
        default_note: "",
        doc: "path of a kubeconfig, `${VAR}` allowed: server, CA, client certificate and token from it; excludes \
              `service` and `client`",
        apisix: "not in APISIX. With several clusters, APISIX's CLI wants `service` and `client` in every \
                 cluster, so a kubeconfig serves the single-cluster form only",
        examples: &[r#""/etc/k8s-disc/kubeconfig""#, r#""${KUBECONFIG}""#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "context",
        default: DefaultValue::None,
        default_note: "the kubeconfig's `current-context`",
        doc: "the kubeconfig context to use; only with `kubeconfig`",
        apisix: NEW,
        examples: &[r#""prod""#],
        with: r#"{"kubeconfig": "/etc/k8s-disc/kubeconfig"}"#,
        cli_refuses: &[],
    },
    Field {
        name: "watch_idle_timeout",
        default: DefaultValue::Int(120),
        default_note: "",
        doc: "seconds, 10 to 86400: a watch silent this long (not even a bookmark) is dropped and resumed; keep \
              it below the idle timeout of any load balancer on the way",
        apisix: NEW,
        examples: &[r#"120"#, r#"60"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "list_timeout",
        default: DefaultValue::Int(300),
        default_note: "",
        doc: "seconds, 10 to 86400: deadline of one whole list, every page (for a streaming list: its initial \
              events up to the end bookmark); a list that misses it changes nothing and is retried",
        apisix: NEW,
        examples: &[r#"300"#, r#"600"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "max_staleness",
        default: DefaultValue::None,
        default_note: "off",
        doc: "seconds, 1 to 86400: the cluster reports not ready once its data has not been confirmed current \
              (list, change, bookmark, new watch) for this long; the data is still served",
        apisix: NEW,
        examples: &[r#"300"#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "max_object_size",
        default: DefaultValue::Str("16m"),
        default_note: "",
        doc: "`<n>m`, 1m to 1024m: an object or watch event larger than this is skipped and logged; its service \
              keeps its previous nodes",
        apisix: NEW,
        examples: &[r#""16m""#, r#""4m""#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "list_strategy",
        default: DefaultValue::Str("auto"),
        default_note: "",
        doc: "how the first sync and every relist fetch the complete state. `auto`: a streaming list (one watch \
              request with `sendInitialEvents=true`, served from the API server's watch cache, whose connection \
              then goes on as the watch), falling back for good to paged LISTs when the server refuses it (422 \
              while its WatchList feature is off, or 405) or ignores it (a plain bookmark before the end of the \
              initial events), logged once at warn; a stream silent for 5 s before the end of its initial events \
              (a server that ignores the parameters, or a pause) is listed with paged LISTs that once, and the \
              next relist streams again, and so is a sync whose streaming list was answered 400 three times in \
              a row (a proxy that refuses the parameters; one or two 400s are retried, a 400 saying the \
              resourceVersion expired is a 410); any other failure, a 403 included, is retried with back-off; \
              `watch_list`: streaming lists only (a refusal is logged as an error and retried with back-off; the \
              cluster never becomes ready); `list`: paged LISTs of 500 items, consistent reads",
        apisix: "APISIX always pages through LISTs (consistent reads of 120 items)",
        examples: &[r#""auto""#, r#""watch_list""#, r#""list""#],
        with: "",
        cli_refuses: &[],
    },
    Field {
        name: "topology.mode",
        default: DefaultValue::Str("off"),
        default_note: "",
        doc: "how nodes are prioritised by zone, for APISIX's balancer (which uses a lower priority only when \
              every node of the higher one has failed or is unhealthy). `off`: nodes as without this key; \
              `prefer_zone`: endpoints in `topology.zone` get `priority` 0, all others -1; `hints`: as \
              kube-proxy reads `hints.forZones` (Services with `trafficDistribution: PreferClose` or \
              `service.kubernetes.io/topology-mode: Auto`): endpoints hinted for `topology.zone` 0, the others -1, \
              and every node 0 when an endpoint of the port has no hints or none is hinted for this zone. With a \
              mode on, each node has a `priority`, and the lookup API and the dump show its `zone` too. Needs \
              `watch_endpoint_slices: true` (v1 Endpoints carry no zone): refused at start otherwise",
        apisix: NEW,
        examples: &[r#""prefer_zone""#, r#""hints""#, r#""off""#],
        with: r#"{"watch_endpoint_slices": true, "topology": {"zone": "eu-west-1a"}}"#,
        cli_refuses: &[],
    },
    Field {
        name: "topology.zone",
        default: DefaultValue::None,
        default_note: "required when `topology.mode` is not `off`",
        doc: "the gateway's own zone, usually `${NODE_ZONE}` with the node's `topology.kubernetes.io/zone` label \
              in the environment; a label value (up to 63 of `[A-Za-z0-9._-]`). A value that resolves to an empty \
              string is accepted with a warning at start, and then no zone is preferred (every node 0)",
        apisix: NEW,
        examples: &[r#""eu-west-1a""#, r#""${NODE_ZONE}""#],
        with: r#"{"watch_endpoint_slices": true, "topology": {"mode": "prefer_zone"}}"#,
        cli_refuses: &[],
    },
];

/// The row of `name`. Panics on a name that is not in the table: a programming error that every test run hits.
pub fn field(name: &str) -> &'static Field {
    FIELDS
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the configuration table"))
}

/// The default of `name` as JSON; panics when it has none (as `field`).
pub fn default_json(name: &str) -> Value {
    field(name)
        .default
        .json()
        .unwrap_or_else(|| panic!("{name} has no default"))
}

/// The keys accepted directly under `prefix` (`""` for a cluster, `"service"`, `"client"`, ...), in table order.
/// `id` is included only when `with_id`.
pub fn keys_under(prefix: &str, with_id: bool) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for f in FIELDS {
        let key = if prefix.is_empty() {
            f.name.split('.').next().unwrap_or(f.name)
        } else {
            match f
                .name
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('.'))
            {
                Some(rest) => rest,
                None => continue,
            }
        };
        if (key != "id" || with_id || !prefix.is_empty()) && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The table as JSON, for `k8s_disc_config_fields()`.
pub fn to_json() -> Value {
    Value::Array(
        FIELDS
            .iter()
            .map(|f| {
                let parse = |v: &str| {
                    serde_json::from_str::<Value>(v)
                        .unwrap_or_else(|e| panic!("{}: example {v:?} is not JSON: {e}", f.name))
                };
                let examples: Vec<Value> = f.examples.iter().map(|v| parse(v)).collect();
                let refuses: Vec<Value> = f
                    .cli_refuses
                    .iter()
                    .map(|(v, versions)| json!({"value": parse(v), "versions": versions}))
                    .collect();
                json!({"name": f.name, "default": f.default.json(), "default_note": f.default_note,
                       "doc": f.doc, "apisix": f.apisix, "examples": examples,
                       "with": if f.with.is_empty() { json!({}) } else { parse(f.with) },
                       "cli_refuses": refuses})
            })
            .collect(),
    )
}

/// The README's configuration reference table.
#[cfg(test)]
pub fn reference_markdown() -> String {
    let mut out =
        String::from("| field | default | values | differs from APISIX |\n|---|---|---|---|\n");
    for f in FIELDS {
        let default = match (f.default.json(), f.default_note) {
            (Some(v), "") => format!(
                "`{}`",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            ),
            (Some(v), note) => format!(
                "`{}` ({note})",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            ),
            (None, "") => "none".to_owned(),
            (None, note) => note.to_owned(),
        };
        let code = |v: &&str| format!("`{v}`");
        let mut values = f.doc.to_owned();
        if !f.examples.is_empty() {
            let examples: Vec<String> = f.examples.iter().map(code).collect();
            values.push_str(&format!(". Examples: {}", examples.join(", ")));
        }
        let mut apisix = if f.apisix.is_empty() {
            "same".to_owned()
        } else {
            f.apisix.to_owned()
        };
        if !f.cli_refuses.is_empty() {
            let refused: Vec<String> = f
                .cli_refuses
                .iter()
                .map(|(v, versions)| match *versions {
                    "all" => code(v),
                    versions => format!("{} (on {versions})", code(v)),
                })
                .collect();
            apisix.push_str(&format!(". `apisix init` refuses {}", refused.join(", ")));
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.name, default, values, apisix
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- config-reference: generated from src/fields.rs; K8S_DISC_UPDATE_DOCS=1 cargo test --lib fields -->\n";
    const END: &str = "<!-- /config-reference -->";

    #[test]
    fn readme_configuration_reference_is_rendered_from_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let start = readme
            .find(BEGIN)
            .unwrap_or_else(|| panic!("README.md has no line {BEGIN:?}"))
            + BEGIN.len();
        let end = start
            + readme[start..]
                .find(END)
                .unwrap_or_else(|| panic!("README.md has no {END:?} after the table"));
        let want = reference_markdown();
        if readme[start..end] == want {
            return;
        }
        if std::env::var_os("K8S_DISC_UPDATE_DOCS").is_some() {
            let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, updated).expect("write README.md");
            return;
        }
        // Name the first row that differs, so the failure says which field drifted.
        let have: Vec<&str> = readme[start..end].lines().collect();
        let first = want
            .lines()
            .enumerate()
            .find(|(i, l)| have.get(*i) != Some(l))
            .map(|(i, l)| {
                format!(
                    "line {}: README has {:?}, the table gives {l:?}",
                    i + 1,
                    have.get(i)
                )
            })
            .unwrap_or_else(|| "README has extra lines".to_owned());
        panic!(
            "README.md's configuration reference differs from src/fields.rs ({first}); \
             run K8S_DISC_UPDATE_DOCS=1 cargo test --lib fields"
        );
    }

    /// The cluster config of one example (or refused value) of `f`: single-cluster, or a one-cluster array for `id`.
    fn example_config(f: &Field, value: &str) -> Value {
        let mut cluster: Value = if f.with.is_empty() {
            json!({})
        } else {
            serde_json::from_str(f.with).expect("with is JSON")
        };
        let value: Value = serde_json::from_str(value).expect("example is JSON");
        match f.name.split_once('.') {
            Some((outer, inner)) => {
                if cluster.get(outer).is_none() {
                    cluster[outer] = json!({});
                }
                cluster[outer][inner] = value;
            }
            None => cluster[f.name] = value,
        }
        if f.name == "id" {
            json!([cluster])
        } else {
            cluster
        }
    }

    #[test]
    fn every_example_and_every_value_apisix_refuses_is_accepted_by_the_parser() {
        let env = |name: &str| {
            Some(match name {
                n if n.contains("ZONE") => "eu-west-1a".to_owned(),
                n if n.contains("HOST") => "10.0.0.1".to_owned(),
                n if n.contains("PORT") => "6443".to_owned(),
                n if n.contains("TOKEN") && !n.contains("FILE") => "abc.def".to_owned(),
                _ => "/etc/k8s-disc/from-env".to_owned(),
            })
        };
        // Files are read at parse time; the examples name files that do not exist here, so for these keys a
        // failure to read the file shows that the value itself was accepted.
        let reads_files = [
            "client.ca_file",
            "client.cert_file",
            "client.key_file",
            "kubeconfig",
            "context",
        ];
        let mut tried = 0;
        for f in FIELDS {
            assert!(!f.examples.is_empty(), "{} has no example", f.name);
            let values = f
                .examples
                .iter()
                .chain(f.cli_refuses.iter().map(|(v, _)| v));
            for v in values {
                tried += 1;
                let conf = example_config(f, v).to_string();
                match crate::config::parse(&conf, &env) {
                    Ok(_) => {}
                    Err(e)
                        if reads_files.contains(&f.name)
                            && e.to_string().contains("No such file") => {}
                    Err(e) => panic!("{} = {v}: {conf} is refused: {e}", f.name),
                }
            }
            for (v, versions) in f.cli_refuses {
                assert!(
                    *versions == "all" || versions.split(' ').all(|v| v.split('.').count() == 3),
                    "{} = {v}: versions {versions:?} is neither \"all\" nor a list of x.y.z",
                    f.name
                );
            }
        }
        assert!(tried > 60, "only {tried} values tried");
    }

    #[test]
    fn keys_follow_the_table() {
        assert_eq!(
            keys_under("service", false),
            ["schema", "host", "port", "ssl_verify"]
        );
        assert_eq!(
            keys_under("client", false),
            ["token", "token_file", "ca_file", "cert_file", "key_file"]
        );
        assert_eq!(
            keys_under("namespace_selector", false),
            ["equal", "not_equal", "match", "not_match"]
        );
        let single = keys_under("", false);
        assert_eq!(single[..3], ["service", "client", "namespace_selector"]);
        assert!(!single.contains(&"id"));
        assert_eq!(keys_under("", true)[0], "id");
    }

    #[test]
    fn names_are_unique_and_every_default_is_accepted_by_the_parser() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert!(
                FIELDS[..i].iter().all(|g| g.name != f.name),
                "{} twice",
                f.name
            );
        }
        // Each default, written out explicitly, parses to the same config as leaving it out.
        let env = |name: &str| match name {
            "KUBERNETES_SERVICE_HOST" => Some("10.0.0.1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            _ => None,
        };
        let base = json!({"client": {"token": "t"}});
        let implicit = crate::config::parse(&base.to_string(), &env).expect("base parses");
        for f in FIELDS {
            let Some(v) = f.default.json() else { continue };
            let mut explicit = base.clone();
            match f.name.split_once('.') {
                Some((outer, inner)) => explicit[outer][inner] = v,
                None => explicit[f.name] = v,
            }
            let parsed = crate::config::parse(&explicit.to_string(), &env)
                .unwrap_or_else(|e| panic!("default of {}: {e}", f.name));
            assert_eq!(
                parsed.clusters, implicit.clusters,
                "default of {} differs from the parser's",
                f.name
            );
        }
    }
}
