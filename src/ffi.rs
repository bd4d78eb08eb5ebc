//! The C ABI used by the Lua layer through LuaJIT FFI (declared in `include/k8s_disc.h`).
//!
//! Rules kept by every export: no panic crosses the boundary (each body runs under `catch_unwind`), every pointer
//! and length is checked, strings must be UTF-8, and errors come back as a negative code with a message written
//! into the caller's buffer.

use std::os::raw::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::instance::{InitScope, Instance};
use crate::log::Level;
use crate::store::Lookup;

/// The lookup found nothing new: the caller's version is current.
pub const K8S_DISC_UNCHANGED: i32 = -1;
/// Unknown service, port or cluster.
pub const K8S_DISC_NOT_FOUND: i32 = -2;
/// The output buffer is too small; the size needed was written to `*buf_len`.
pub const K8S_DISC_E_BUFFER: i32 = -3;
/// The watcher kept rewriting the entry during the read; try again.
pub const K8S_DISC_E_BUSY: i32 = -4;
/// A NULL pointer, bad length or non-UTF-8 argument.
pub const K8S_DISC_E_INVALID: i32 = -5;
/// The configuration was rejected (message in the error buffer).
pub const K8S_DISC_E_CONFIG: i32 = -6;
/// An internal failure (including a caught panic).
pub const K8S_DISC_E_INTERNAL: i32 = -7;
/// The entry's record in shared memory is corrupt; nothing was copied.
pub const K8S_DISC_E_CORRUPT: i32 = -8;

/// Longest service name accepted (APISIX allows 256; leave room for the cluster id).
const MAX_NAME: usize = 1024;
/// Largest configuration accepted.
const MAX_CONFIG: usize = 1 << 20;
/// Largest init options document accepted.
const MAX_OPTS: usize = 1024;

static VERSION: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();

fn guard<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// Copies `msg` into a caller buffer as a NUL-terminated string (truncated to fit).
///
/// # Safety
/// `buf` must be NULL or valid for writes of `cap` bytes.
unsafe fn write_error(buf: *mut c_char, cap: usize, msg: &str) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let n = msg.len().min(cap - 1);
    // SAFETY: the caller guarantees `buf` holds `cap` bytes; we write n + 1 <= cap bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

/// Borrows a (ptr, len) byte string as UTF-8.
///
/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes for the returned lifetime.
unsafe fn str_arg<'a>(ptr: *const c_char, len: usize, max: usize) -> Option<&'a str> {
    if ptr.is_null() || len > max {
        return None;
    }
    // SAFETY: checked non-NULL; the caller guarantees `len` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).ok()
}

/// # Safety
/// `h` must be NULL or a handle returned by `k8s_disc_init` in this process or an ancestor and not yet released.
unsafe fn instance<'a>(h: *const Instance) -> Option<&'a Instance> {
    // SAFETY: an unreleased handle owns a reference to its instance, which is therefore alive.
    unsafe { h.as_ref() }
}

/// The library version as a NUL-terminated string, e.g. "0.1.0".
#[unsafe(no_mangle)]
pub extern "C" fn k8s_disc_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// Validates the discovery config (JSON), expands `${VAR}` references and maps one shared-memory region per
/// cluster. Call in the nginx master (init_by_lua), before workers fork. `opts` (JSON) says who calls:
/// `{"subsystem": "http" | "stream", "watcher": "auto" | "agent" | "worker"}`; the same config from both
/// subsystems shares one instance. Returns 0 and stores a handle in `*out`, or a negative code with a message in
/// `err`.
///
/// # Safety
/// `config` must be valid for `config_len` bytes, `opts` for `opts_len` bytes, `out` valid for one pointer write,
/// `err` valid for `err_cap` bytes (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_init(
    config: *const c_char,
    config_len: usize,
    opts: *const c_char,
    opts_len: usize,
    out: *mut *const Instance,
    err: *mut c_char,
    err_cap: usize,
) -> i32 {
    guard(K8S_DISC_E_INTERNAL, || {
        if out.is_null() {
            // SAFETY: err/err_cap come from the caller as documented.
            unsafe { write_error(err, err_cap, "k8s_disc_init: NULL output pointer") };
            return K8S_DISC_E_INVALID;
        }
        // SAFETY: the caller guarantees config_len readable bytes at config.
        let Some(json) = (unsafe { str_arg(config, config_len, MAX_CONFIG) }) else {
            // SAFETY: as above.
            unsafe {
                write_error(
                    err,
                    err_cap,
                    "k8s_disc_init: config is NULL, too long or not UTF-8",
                )
            };
            return K8S_DISC_E_INVALID;
        };
        // SAFETY: the caller guarantees opts_len readable bytes at opts.
        let Some(opts) = (unsafe { str_arg(opts, opts_len, MAX_OPTS) }) else {
            // SAFETY: as above.
            unsafe {
                write_error(
                    err,
                    err_cap,
                    "k8s_disc_init: opts is NULL, too long or not UTF-8",
                )
            };
            return K8S_DISC_E_INVALID;
        };
        let scope = match InitScope::parse(opts) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: as above.
                unsafe { write_error(err, err_cap, &e.to_string()) };
                return K8S_DISC_E_INVALID;
            }
        };
        match Instance::init(json, &scope) {
            Ok(inst) => {
                // SAFETY: `out` checked non-NULL above. The handle owns one reference, given back by
                // `k8s_disc_release`.
                unsafe { *out = Arc::into_raw(inst) };
                0
            }
            Err(e) => {
                // SAFETY: as above.
                unsafe { write_error(err, err_cap, &e.to_string()) };
                K8S_DISC_E_CONFIG
            }
        }
    })
}

/// Gives back the reference a handle from `k8s_disc_init` holds (the Lua layer calls it when its VM closes, e.g.
/// the master's previous configuration after a reload). NULL is ignored. The handle must not be used afterwards.
///
/// # Safety
/// `h` must be NULL or a handle from `k8s_disc_init`, released at most once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_release(h: *const Instance) {
    guard((), || {
        if !h.is_null() {
            // SAFETY: `h` came from `Arc::into_raw` and is released once, as documented.
            drop(unsafe { Arc::from_raw(h) });
        }
    })
}

/// Starts the watchers of `h` on a background thread of the calling process (the privileged agent, worker 0 or
/// the single process; never the master). Returns 0 when started, 1 when already running in this process.
///
/// # Safety
/// `h` must be a handle from `k8s_disc_init`; `err` valid for `err_cap` bytes (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_start(
    h: *const Instance,
    err: *mut c_char,
    err_cap: usize,
) -> i32 {
    guard(K8S_DISC_E_INTERNAL, || {
        if h.is_null() {
            // SAFETY: caller-provided error buffer.
            unsafe { write_error(err, err_cap, "k8s_disc_start: NULL handle") };
            return K8S_DISC_E_INVALID;
        }
        // SAFETY: `h` came from `Arc::into_raw` in `k8s_disc_init` and the caller still holds that reference, so
        // taking one more strong reference to the same allocation is sound.
        let inst = unsafe {
            Arc::increment_strong_count(h);
            Arc::from_raw(h)
        };
        match crate::runtime::start(&inst) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                // SAFETY: caller-provided error buffer.
                unsafe { write_error(err, err_cap, &e.to_string()) };
                K8S_DISC_E_INTERNAL
            }
        }
    })
}

/// Looks up the nodes of `name` (`ns/name:port`, or `id/ns/name:port` in multi-cluster mode).
///
/// `*version` and `*hint` carry the caller's state for this name (0 and 0 at first). If they are still current,
/// returns `K8S_DISC_UNCHANGED` without looking at the name or copying anything. Otherwise, writes the nodes into
/// `buf` as `count` x `[u16 port LE][u8 host_len][host bytes]` (with the cluster's `topology.mode` on, `host_len`
/// has its high bit set and the host is followed by `[i8 priority][u8 zone_len][zone bytes]`), updates `*version`,
/// `*hint` and `*buf_len` (bytes used), and returns `count` (>= 0). Unknown names give `K8S_DISC_NOT_FOUND`; a small buffer gives
/// `K8S_DISC_E_BUFFER` with the size needed in `*buf_len`. Returns a 32-bit int so that even interpreted (not
/// JIT-compiled) Lua gets a plain number back, with no boxed 64-bit cdata to allocate.
///
/// # Safety
/// `h` from `k8s_disc_init`; `name` valid for `name_len` bytes; `version`, `hint`, `buf_len` valid pointers;
/// `buf` valid for `*buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_nodes(
    h: *const Instance,
    name: *const c_char,
    name_len: usize,
    version: *mut u64,
    hint: *mut u64,
    buf: *mut u8,
    buf_len: *mut usize,
) -> i32 {
    const UNCHANGED: i32 = K8S_DISC_UNCHANGED;
    const INVALID: i32 = K8S_DISC_E_INVALID;
    guard(K8S_DISC_E_INTERNAL, || {
        if version.is_null() || hint.is_null() || buf.is_null() || buf_len.is_null() {
            return INVALID;
        }
        // SAFETY: see `instance`.
        let Some(inst) = (unsafe { instance(h) }) else {
            return INVALID;
        };
        // SAFETY: pointers checked non-NULL above; the caller guarantees they are valid.
        let (known_version, known_hint, cap) = unsafe { (*version, *hint, *buf_len) };
        // The common case first: nothing changed, so the name need not even be looked at.
        if known_version != 0 && inst.is_current(known_hint, known_version) {
            return UNCHANGED;
        }
        if cap > isize::MAX as usize {
            return INVALID;
        }
        // SAFETY: the caller guarantees name_len readable bytes at name.
        let Some(name) = (unsafe { str_arg(name, name_len, MAX_NAME) }) else {
            return INVALID;
        };
        // SAFETY: the caller guarantees `cap` writable bytes at buf, and cap <= isize::MAX was checked.
        let out = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
        match inst.nodes(name, out) {
            Lookup::Found {
                hint: new_hint,
                version: new_version,
                count,
                len,
                ..
            } => {
                // SAFETY: pointers checked above.
                unsafe {
                    *version = new_version;
                    *hint = new_hint;
                    *buf_len = len;
                }
                i32::try_from(count).unwrap_or(K8S_DISC_E_INTERNAL)
            }
            Lookup::NotFound => K8S_DISC_NOT_FOUND,
            Lookup::TooSmall { need } => {
                // SAFETY: checked above.
                unsafe { *buf_len = need };
                K8S_DISC_E_BUFFER
            }
            Lookup::Busy => K8S_DISC_E_BUSY,
            Lookup::Corrupt => K8S_DISC_E_CORRUPT,
        }
    })
}

/// 1 once every cluster has completed its first full list, 0 before, negative on a bad handle.
///
/// # Safety
/// `h` must be a handle from `k8s_disc_init` (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_ready(h: *const Instance) -> i32 {
    guard(K8S_DISC_E_INTERNAL, || {
        // SAFETY: see `instance`.
        match unsafe { instance(h) } {
            Some(inst) => i32::from(inst.ready()),
            None => K8S_DISC_E_INVALID,
        }
    })
}

/// Writes a JSON document into `buf` and returns its length; if that exceeds `cap`, nothing is written and the
/// caller retries with a buffer of the returned size.
///
/// # Safety
/// `buf` valid for `cap` bytes (or NULL with cap 0).
unsafe fn write_json(doc: &serde_json::Value, buf: *mut u8, cap: usize) -> i64 {
    // SAFETY: forwarded caller guarantee.
    unsafe { write_text(&doc.to_string(), buf, cap) }
}

/// Writes `text` into `buf` and returns its length; if that exceeds `cap`, nothing is written and the caller
/// retries with a buffer of the returned size.
///
/// # Safety
/// `buf` valid for `cap` bytes (or NULL with cap 0).
unsafe fn write_text(text: &str, buf: *mut u8, cap: usize) -> i64 {
    if text.len() <= cap && !buf.is_null() {
        // SAFETY: the caller guarantees cap writable bytes; text.len() <= cap.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf, text.len()) };
    }
    i64::try_from(text.len()).unwrap_or(i64::from(K8S_DISC_E_INTERNAL))
}

/// The dump (APISIX `dump_data` shape plus per-cluster status) as JSON; see `write_json` for the buffer protocol.
///
/// # Safety
/// `h` from `k8s_disc_init`; `buf` valid for `cap` bytes (or NULL with cap 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_dump(h: *const Instance, buf: *mut u8, cap: usize) -> i64 {
    guard(i64::from(K8S_DISC_E_INTERNAL), || {
        // SAFETY: see `instance`.
        let Some(inst) = (unsafe { instance(h) }) else {
            return i64::from(K8S_DISC_E_INVALID);
        };
        // SAFETY: forwarded caller guarantee.
        unsafe { write_json(&crate::dump::dump(inst), buf, cap) }
    })
}

/// What the gateway sees for one service name (`[id/]ns/name:port`) as JSON: its nodes, version, cluster and when
/// it last changed, or why there is nothing; see `write_json` for the buffer protocol.
///
/// # Safety
/// `h` from `k8s_disc_init`; `name` valid for `name_len` bytes; `buf` valid for `cap` bytes (or NULL with cap 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_lookup(
    h: *const Instance,
    name: *const c_char,
    name_len: usize,
    buf: *mut u8,
    cap: usize,
) -> i64 {
    guard(i64::from(K8S_DISC_E_INTERNAL), || {
        // SAFETY: see `instance`.
        let Some(inst) = (unsafe { instance(h) }) else {
            return i64::from(K8S_DISC_E_INVALID);
        };
        // SAFETY: the caller guarantees name_len readable bytes at name.
        let Some(name) = (unsafe { str_arg(name, name_len, MAX_NAME) }) else {
            return i64::from(K8S_DISC_E_INVALID);
        };
        // SAFETY: forwarded caller guarantee.
        unsafe { write_json(&crate::lookup::lookup(inst, name), buf, cap) }
    })
}

/// Prometheus text-format metrics of every cluster; the buffer protocol of `write_json`.
///
/// # Safety
/// `h` from `k8s_disc_init`; `buf` valid for `cap` bytes (or NULL with cap 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_metrics(h: *const Instance, buf: *mut u8, cap: usize) -> i64 {
    guard(i64::from(K8S_DISC_E_INTERNAL), || {
        // SAFETY: see `instance`.
        let Some(inst) = (unsafe { instance(h) }) else {
            return i64::from(K8S_DISC_E_INVALID);
        };
        // SAFETY: forwarded caller guarantee.
        unsafe { write_text(&crate::metrics::render(inst), buf, cap) }
    })
}

/// What the Lua layer needs to know about an instance, as JSON:
/// `{"multi": bool, "clusters": [{"id": "...", "default_weight": n}]}`; buffer protocol as for the dump.
///
/// # Safety
/// `h` from `k8s_disc_init`; `buf` valid for `cap` bytes (or NULL with cap 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_info(h: *const Instance, buf: *mut u8, cap: usize) -> i64 {
    guard(i64::from(K8S_DISC_E_INTERNAL), || {
        // SAFETY: see `instance`.
        let Some(inst) = (unsafe { instance(h) }) else {
            return i64::from(K8S_DISC_E_INVALID);
        };
        let clusters: Vec<serde_json::Value> = inst
            .clusters
            .iter()
            .map(|c| serde_json::json!({"id": c.config.id, "default_weight": c.config.default_weight}))
            .collect();
        let doc = serde_json::json!({"multi": inst.multi(), "clusters": clusters});
        // SAFETY: forwarded caller guarantee.
        unsafe { write_json(&doc, buf, cap) }
    })
}

/// The configuration reference (`crate::fields`) as JSON: `[{"name": "service.host", "default": <JSON value or
/// null>, "default_note", "doc", "apisix"}, ...]`, every accepted key with its default. Needs no handle, so it can be
/// called before `k8s_disc_init`; buffer protocol as for the dump.
///
/// # Safety
/// `buf` valid for `cap` bytes (or NULL with cap 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn k8s_disc_config_fields(buf: *mut u8, cap: usize) -> i64 {
    guard(i64::from(K8S_DISC_E_INTERNAL), || {
        // SAFETY: forwarded caller guarantee.
        unsafe { write_json(&crate::fields::to_json(), buf, cap) }
    })
}

/// Sets how much the watcher logs: 1 error, 2 warn, 3 notice, 4 info (default), 5 debug.
#[unsafe(no_mangle)]
pub extern "C" fn k8s_disc_set_log_level(level: i32) -> i32 {
    guard(K8S_DISC_E_INTERNAL, || {
        let l = match level {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Notice,
            4 => Level::Info,
            5 => Level::Debug,
            _ => return K8S_DISC_E_INVALID,
        };
        crate::log::set_max_level(l);
        0
    })
}
