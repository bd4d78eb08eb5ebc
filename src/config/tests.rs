//! The config parser's tests: every key, its defaults, `${VAR}` references, and the errors that name the field.

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
