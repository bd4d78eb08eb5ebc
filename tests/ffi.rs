//! The C ABI rejects bad arguments with error codes and messages instead of crashing.

use std::os::raw::c_char;
use std::ptr;

use k8s_disc::ffi::*;
use k8s_disc::testing::Instance;

const HTTP: &str = r#"{"subsystem":"http","watcher":"auto"}"#;

fn init(json: &str) -> Result<*const Instance, (i32, String)> {
    init_with(json, HTTP)
}

fn init_with(json: &str, opts: &str) -> Result<*const Instance, (i32, String)> {
    let mut out: *const Instance = ptr::null();
    let mut err = [0 as c_char; 512];
    // SAFETY: all pointers are valid for the lengths passed.
    let rc = unsafe {
        k8s_disc_init(
            json.as_ptr().cast(),
            json.len(),
            opts.as_ptr().cast(),
            opts.len(),
            &mut out,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc == 0 {
        Ok(out)
    } else {
        // SAFETY: k8s_disc_init NUL-terminates the message within the buffer.
        let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Err((rc, msg))
    }
}

const GOOD: &str = r#"{"service":{"schema":"http","host":"127.0.0.1","port":"1"},"client":{"token":"t"},"shared_size":"1m"}"#;

#[test]
fn init_reports_config_errors_with_field_and_value() {
    let (rc, msg) =
        init(r#"{"service":{"host":"127.0.0.1","port":"0"},"client":{"token":"t"}}"#).unwrap_err();
    assert_eq!(rc, K8S_DISC_E_CONFIG);
    assert!(
        msg.contains("service.port") && msg.contains("\"0\""),
        "{msg}"
    );
    let (rc, msg) = init("{not json").unwrap_err();
    assert_eq!(rc, K8S_DISC_E_CONFIG);
    assert!(msg.contains("discovery.kubernetes"), "{msg}");
}

#[test]
fn init_rejects_null_and_non_utf8() {
    let mut out: *const Instance = ptr::null();
    let mut err = [0 as c_char; 128];
    // SAFETY: NULL config with a non-zero length must be rejected without being read.
    let rc = unsafe {
        k8s_disc_init(
            ptr::null(),
            10,
            HTTP.as_ptr().cast(),
            HTTP.len(),
            &mut out,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    assert_eq!(rc, K8S_DISC_E_INVALID);
    let bad = [0xffu8, 0xfe];
    // SAFETY: valid buffer of invalid UTF-8.
    let rc = unsafe {
        k8s_disc_init(
            bad.as_ptr().cast(),
            bad.len(),
            HTTP.as_ptr().cast(),
            HTTP.len(),
            &mut out,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    assert_eq!(rc, K8S_DISC_E_INVALID);
    // SAFETY: NULL output pointer must be rejected; a NULL error buffer is allowed.
    let rc = unsafe {
        k8s_disc_init(
            GOOD.as_ptr().cast(),
            GOOD.len(),
            HTTP.as_ptr().cast(),
            HTTP.len(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, K8S_DISC_E_INVALID);
}

#[test]
fn init_rejects_bad_options_naming_the_field() {
    let (rc, msg) = init_with(GOOD, r#"{"subsystem":"http","watcher":"sometimes"}"#).unwrap_err();
    assert_eq!(rc, K8S_DISC_E_INVALID);
    assert!(msg.contains("sometimes"), "{msg}");
    let (rc, msg) = init_with(GOOD, r#"{"subsystem":"HTTP/1","watcher":"auto"}"#).unwrap_err();
    assert_eq!(rc, K8S_DISC_E_INVALID);
    assert!(msg.contains("subsystem") && msg.contains("HTTP/1"), "{msg}");
    let (rc, _) = init_with(GOOD, "").unwrap_err();
    assert_eq!(rc, K8S_DISC_E_INVALID);
    let mut out: *const Instance = ptr::null();
    // SAFETY: NULL options with a non-zero length must be rejected without being read.
    let rc = unsafe {
        k8s_disc_init(
            GOOD.as_ptr().cast(),
            GOOD.len(),
            ptr::null(),
            4,
            &mut out,
            ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, K8S_DISC_E_INVALID);
}

#[test]
fn released_handles_free_their_instance_and_null_is_ignored() {
    let conf = r#"{"service":{"schema":"http","host":"127.0.0.1","port":"2"},"client":{"token":"t"},"shared_size":"1m"}"#;
    let a = init(conf).unwrap();
    let b = init(conf).unwrap();
    assert_eq!(a, b);
    // SAFETY: each init gave one reference; give both back. NULL is documented as ignored.
    unsafe {
        k8s_disc_release(a);
        assert_eq!(
            k8s_disc_ready(b),
            0,
            "still alive while one reference remains"
        );
        k8s_disc_release(b);
        k8s_disc_release(ptr::null());
    }
}

#[test]
fn same_config_gives_the_same_handle() {
    let a = init(GOOD).unwrap();
    let b = init(GOOD).unwrap();
    assert_eq!(
        a, b,
        "re-running init with an unchanged config (reload) keeps the instance and its regions"
    );
}

#[test]
fn nodes_checks_every_pointer_and_length() {
    let h = init(GOOD).unwrap();
    let name = "ns/svc:http";
    let (mut version, mut hint, mut len) = (0u64, 0u64, 64usize);
    let mut buf = [0u8; 64];
    // SAFETY: every call passes either valid pointers or NULL where NULL must be rejected.
    unsafe {
        assert_eq!(
            k8s_disc_nodes(
                h,
                name.as_ptr().cast(),
                name.len(),
                &mut version,
                &mut hint,
                buf.as_mut_ptr(),
                &mut len
            ),
            K8S_DISC_NOT_FOUND
        );
        assert_eq!(
            k8s_disc_nodes(
                ptr::null(),
                name.as_ptr().cast(),
                name.len(),
                &mut version,
                &mut hint,
                buf.as_mut_ptr(),
                &mut len
            ),
            K8S_DISC_E_INVALID
        );
        assert_eq!(
            k8s_disc_nodes(
                h,
                ptr::null(),
                5,
                &mut version,
                &mut hint,
                buf.as_mut_ptr(),
                &mut len
            ),
            K8S_DISC_E_INVALID
        );
        assert_eq!(
            k8s_disc_nodes(
                h,
                name.as_ptr().cast(),
                name.len(),
                ptr::null_mut(),
                &mut hint,
                buf.as_mut_ptr(),
                &mut len
            ),
            K8S_DISC_E_INVALID
        );
        assert_eq!(
            k8s_disc_nodes(
                h,
                name.as_ptr().cast(),
                name.len(),
                &mut version,
                &mut hint,
                ptr::null_mut(),
                &mut len
            ),
            K8S_DISC_E_INVALID
        );
        let long = "x".repeat(5000);
        assert_eq!(
            k8s_disc_nodes(
                h,
                long.as_ptr().cast(),
                long.len(),
                &mut version,
                &mut hint,
                buf.as_mut_ptr(),
                &mut len
            ),
            K8S_DISC_E_INVALID
        );
        // A stale hint pointing past the slot table is harmless.
        let (mut v, mut bad_hint) = (12345u64, u64::MAX);
        assert_eq!(
            k8s_disc_nodes(
                h,
                name.as_ptr().cast(),
                name.len(),
                &mut v,
                &mut bad_hint,
                buf.as_mut_ptr(),
                &mut len
            ),
            K8S_DISC_NOT_FOUND
        );
        assert_eq!(k8s_disc_ready(ptr::null()), K8S_DISC_E_INVALID);
        assert_eq!(k8s_disc_ready(h), 0);
        assert_eq!(k8s_disc_set_log_level(9), K8S_DISC_E_INVALID);
    }
}

#[test]
fn dump_and_info_use_the_needed_length_protocol() {
    let h = init(GOOD).unwrap();
    // SAFETY: NULL buffer with zero capacity asks for the length only.
    let need = unsafe { k8s_disc_dump(h, ptr::null_mut(), 0) };
    assert!(need > 0);
    let mut buf = vec![0u8; need as usize];
    // SAFETY: buffer of exactly the announced size.
    let n = unsafe { k8s_disc_dump(h, buf.as_mut_ptr(), buf.len()) };
    assert_eq!(n, need);
    let doc: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(doc["config"]["client"]["token"], "******");
    let mut info = vec![0u8; 256];
    // SAFETY: valid buffer.
    let n = unsafe { k8s_disc_info(h, info.as_mut_ptr(), info.len()) } as usize;
    let info: serde_json::Value = serde_json::from_slice(&info[..n]).unwrap();
    assert_eq!(
        info,
        serde_json::json!({"multi": false, "clusters": [{"id": "", "default_weight": 50}]})
    );
    // SAFETY: the version string is static and NUL-terminated.
    let v = unsafe { std::ffi::CStr::from_ptr(k8s_disc_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// The Lua module names every return code of the C header, with the same value.
#[test]
fn lua_return_codes_match_the_header() {
    let header = include_str!("../include/k8s_disc.h");
    let lua = include_str!("../lua/resty/k8s_disc/native.lua");
    let mut from_header = std::collections::BTreeMap::new();
    for line in header.lines() {
        let Some(rest) = line.strip_prefix("#define K8S_DISC_") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        if name == "H" {
            continue; // the include guard
        }
        let value: i64 = value
            .trim_matches(|c| c == '(' || c == ')')
            .parse()
            .unwrap_or_else(|_| {
                panic!("K8S_DISC_{name} has a non-numeric value {value}");
            });
        from_header.insert(name.to_string(), value);
    }
    let mut from_lua = std::collections::BTreeMap::new();
    for line in lua.lines() {
        let Some(rest) = line.strip_prefix("_M.") else {
            continue;
        };
        if let Some((name, value)) = rest.split_once(" = ")
            && let Ok(v) = value.trim().parse::<i64>()
        {
            from_lua.insert(name.to_string(), v);
        }
    }
    assert!(
        from_header.len() >= 8,
        "codes found in the header: {from_header:?}"
    );
    assert_eq!(
        from_lua, from_header,
        "lua/resty/k8s_disc/native.lua against include/k8s_disc.h"
    );
}
