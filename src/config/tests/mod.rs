//! The config parser's tests: every key, its defaults, `${VAR}` references, and the errors that name the field.
//! `connection` holds those of `service` and `client`, `values` those of selectors, sizes and times.

mod connection;
mod values;

use super::*;
use serde_json::json;

pub(super) const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

pub(super) fn env(name: &str) -> Option<String> {
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

pub(super) fn ok(v: serde_json::Value) -> Config {
    match parse(&v.to_string(), &env) {
        Ok(c) => c,
        Err(e) => panic!("{v} should parse: {e}"),
    }
}

pub(super) fn one(v: serde_json::Value) -> ClusterConfig {
    let mut c = ok(v);
    assert_eq!(c.clusters.len(), 1);
    c.clusters.remove(0)
}

pub(super) fn err(v: serde_json::Value) -> ConfigError {
    match parse(&v.to_string(), &env) {
        Ok(c) => panic!("{v} should be rejected, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts the field, the shown value and a fragment of the rule, and
/// that the Display form carries all three.
pub(super) fn rejects(v: serde_json::Value, field: &str, value: &str, rule_part: &str) {
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

pub(super) fn item(id: &str) -> serde_json::Value {
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
