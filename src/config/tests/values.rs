//! Tests of the value rules: namespace and label selectors, weights, sizes, times and the other single keys.

use super::*;
use serde_json::json;

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

// ---- topology ----

#[test]
fn topology_is_off_unless_set() {
    use crate::topology::{Mode, Topology};
    assert_eq!(one(json!({})).topology, Topology::default());
    let t =
        |v: serde_json::Value| one(json!({"watch_endpoint_slices": true, "topology": v})).topology;
    assert_eq!(
        t(json!({"mode": "prefer_zone", "zone": "eu-west-1a"})),
        Topology {
            mode: Mode::PreferZone,
            zone: "eu-west-1a".into()
        }
    );
    assert_eq!(t(json!({"mode": "hints", "zone": "z"})).mode, Mode::Hints);
    // A zone without a mode is allowed and does nothing; mode defaults to off.
    assert_eq!(t(json!({"zone": "z"})).mode, Mode::Off);
    assert_eq!(t(json!({})), Topology::default());
    assert_eq!(one(json!({"topology": null})).topology, Topology::default());
    // The dump shows the key as written; with it absent, the config is as before.
    assert!(ok(json!({})).raw.get("topology").is_none());
}

#[test]
fn topology_zone_comes_from_the_environment_and_may_resolve_empty() {
    use crate::topology::Mode;
    let t = one(json!({"watch_endpoint_slices": true,
                       "topology": {"mode": "prefer_zone", "zone": "${EMPTY}"}}))
    .topology;
    assert_eq!((t.mode, t.zone.as_str()), (Mode::PreferZone, ""));
    assert!(t.warning().is_some());
    rejects(
        json!({"watch_endpoint_slices": true, "topology": {"mode": "hints", "zone": "${NODE_ZONE}"}}),
        "topology.zone",
        "\"${NODE_ZONE}\"",
        "environment variable NODE_ZONE (referenced as ${NODE_ZONE}) is not set",
    );
}

#[test]
fn topology_rejections_name_the_field() {
    let slices = |t: serde_json::Value| json!({"watch_endpoint_slices": true, "topology": t});
    rejects(
        slices(json!({"mode": "same_zone", "zone": "a"})),
        "topology.mode",
        "\"same_zone\"",
        "must be one of off, prefer_zone, hints",
    );
    rejects(
        slices(json!({"mode": "prefer_zone"})),
        "topology.zone",
        "(missing)",
        "required when topology.mode is prefer_zone",
    );
    rejects(
        slices(json!({"mode": "hints", "zone": "a b"})),
        "topology.zone",
        "\"a b\"",
        "must be a zone name",
    );
    rejects(
        slices(json!({"mode": "hints", "zone": 5})),
        "topology.zone",
        "5",
        "must be a zone name",
    );
    rejects(
        slices(json!({"mode": "hints", "zone": "a", "zones": ["b"]})),
        "topology.zones",
        "[\"b\"]",
        "unknown key (allowed: mode, zone)",
    );
    rejects(
        slices(json!("prefer_zone")),
        "topology",
        "\"prefer_zone\"",
        "must be an object",
    );
    // Endpoints objects carry no zone: a mode needs EndpointSlices.
    rejects(
        json!({"topology": {"mode": "prefer_zone", "zone": "a"}}),
        "topology.mode",
        "\"prefer_zone\"",
        "needs watch_endpoint_slices: true",
    );
    let multi = json!([{"id": "a", "service": {"host": "10.0.0.1", "port": "6443"},
                        "client": {"token_file": "/t"}, "topology": {"mode": "hints", "zone": "z"}}]);
    rejects(
        multi,
        "[0].topology.mode",
        "\"hints\"",
        "needs watch_endpoint_slices: true",
    );
}
