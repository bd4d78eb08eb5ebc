//! Tests of `service` and `client`: hosts, ports, schemes, tokens and token files.

use super::*;
use serde_json::json;

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
