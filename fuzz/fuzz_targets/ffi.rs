//! The C ABI: `k8s_disc_init` with arbitrary config and opts bytes, then `k8s_disc_nodes`, `k8s_disc_dump`,
//! `k8s_disc_info` and `k8s_disc_ready` on the handle with arbitrary names and buffer sizes, then release.
//! Input: `[flags][err_cap][dump_cap u16 LE][nodes_cap u16 LE][config \0 opts \0 name]`; flags bit 0 passes a
//! NULL config, bit 1 NULL opts, bit 2 a NULL output pointer.
#![no_main]

use std::ffi::c_char;
use std::ptr;

use k8s_disc::ffi::{
    K8S_DISC_E_BUFFER, K8S_DISC_UNCHANGED, k8s_disc_dump, k8s_disc_info, k8s_disc_init,
    k8s_disc_nodes, k8s_disc_ready, k8s_disc_release,
};
use k8s_disc::testing::Instance;
use libfuzzer_sys::fuzz_target;

fn ptr_or_null(bytes: &[u8], null: bool) -> *const c_char {
    if null {
        ptr::null()
    } else {
        bytes.as_ptr().cast()
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let flags = data[0];
    let err_cap = usize::from(data[1]);
    let dump_cap = usize::from(u16::from_le_bytes([data[2], data[3]]) % 8192);
    let nodes_cap = usize::from(u16::from_le_bytes([data[4], data[5]]) % 2048);
    let mut parts = data[6..].splitn(3, |b| *b == 0);
    let config = parts.next().unwrap_or_default();
    let opts = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();

    let mut err = vec![0u8; err_cap];
    let mut handle: *const Instance = ptr::null();
    let out = if flags & 4 != 0 {
        ptr::null_mut()
    } else {
        &mut handle as *mut *const Instance
    };
    // SAFETY: config and opts point at `len` readable bytes (or are NULL, which init rejects), `out` is NULL or
    // points at a local handle, and `err` is writable for `err_cap` bytes.
    let rc = unsafe {
        k8s_disc_init(
            ptr_or_null(config, flags & 1 != 0),
            config.len(),
            ptr_or_null(opts, flags & 2 != 0),
            opts.len(),
            out,
            err.as_mut_ptr().cast(),
            err_cap,
        )
    };
    if rc != 0 {
        assert!(handle.is_null(), "a failed init hands out no handle");
        if err_cap > 0 {
            assert!(
                err.contains(&0),
                "the error message is NUL-terminated within its buffer"
            );
        }
        return;
    }
    assert!(!handle.is_null());

    let (mut version, mut hint) = (0u64, 0u64);
    let mut buf = vec![0u8; nodes_cap];
    for round in 0..2 {
        let mut len = buf.len();
        // SAFETY: the handle came from a successful init; name points at `name.len()` bytes; version, hint and
        // len are locals; buf is writable for `len` bytes.
        let n = unsafe {
            k8s_disc_nodes(
                handle,
                name.as_ptr().cast(),
                name.len(),
                &mut version,
                &mut hint,
                buf.as_mut_ptr(),
                &mut len,
            )
        };
        if n >= 0 {
            assert!(len <= buf.len());
        } else if n == K8S_DISC_E_BUFFER {
            assert!(len > buf.len());
        }
        if round == 1 && version != 0 {
            assert_eq!(
                n, K8S_DISC_UNCHANGED,
                "a repeated lookup of an unchanged name"
            );
        }
    }

    let mut dump = vec![0u8; dump_cap];
    // SAFETY: valid handle; dump is writable for dump_cap bytes.
    let len = unsafe { k8s_disc_dump(handle, dump.as_mut_ptr(), dump_cap) };
    assert!(len >= 0, "the dump of a valid handle never fails");
    if len as usize <= dump_cap {
        serde_json_check(&dump[..len as usize]);
    }
    // SAFETY: as above.
    let len = unsafe { k8s_disc_info(handle, dump.as_mut_ptr(), dump_cap) };
    assert!(len >= 0);
    // SAFETY: valid handle.
    assert!(unsafe { k8s_disc_ready(handle) } >= 0);
    // SAFETY: the handle from init, released once.
    unsafe { k8s_disc_release(handle) };
});

/// The dump is JSON text.
fn serde_json_check(bytes: &[u8]) {
    assert!(
        bytes.first() == Some(&b'{') && bytes.last() == Some(&b'}'),
        "dump is a JSON object"
    );
    assert!(std::str::from_utf8(bytes).is_ok(), "dump is UTF-8");
}
