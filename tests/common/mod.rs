//! Helpers shared by the engine tests that run watchers in process against the fake API server.
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_disc::testing::Instance;
use k8s_disc::testing::Lookup;
use k8s_disc::testing::Node;
use k8s_disc::testing::decode_nodes;

/// Initialises a standalone instance from `conf` (JSON) and starts its watchers in this process.
pub fn start_instance(conf: &str) -> Arc<Instance> {
    let inst = Instance::standalone(conf).expect("config is valid");
    assert!(k8s_disc::testing::start(&inst).expect("watchers start"));
    inst
}

/// Initialises an instance for the fake API server at `port` (plain http, a token, `shared_size`) with `extra`
/// config keys on top, and starts its watchers in this process.
pub fn start_against(port: u16, shared_size: &str, extra: serde_json::Value) -> Arc<Instance> {
    let mut conf = serde_json::json!({
        "service": {"schema": "http", "host": "127.0.0.1", "port": port.to_string()},
        "client": {"token": "test-token"},
        "shared_size": shared_size,
    });
    if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    start_instance(&conf.to_string())
}

/// The nodes served for `name`, or None when it is unknown; any other lookup outcome fails the test.
pub fn nodes(inst: &Instance, name: &str) -> Option<Vec<Node>> {
    try_nodes(inst, name).unwrap_or_else(|e| panic!("{e}"))
}

/// Like `nodes`, but a lookup that is busy, corrupt or does not fit is an error.
pub fn try_nodes(inst: &Instance, name: &str) -> Result<Option<Vec<Node>>, String> {
    let mut buf = vec![0u8; 1 << 20];
    match inst.nodes(name, &mut buf) {
        Lookup::Found { count, len, .. } => Ok(Some(decode_nodes(&buf[..len], count))),
        Lookup::NotFound => Ok(None),
        Lookup::Busy => Err("busy".into()),
        Lookup::Corrupt => Err("corrupt record".into()),
        Lookup::TooSmall { need } => Err(format!("buffer too small, need {need}")),
    }
}

/// Polls until `f` holds or 30 s pass (room for a few back-off steps, which grow to 6.4-12.8 s by the fourth).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}
