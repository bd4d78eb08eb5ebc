//! The dump: what discovery currently serves, in APISIX's `dump_data` shape, plus per-cluster health.
//!
//! ```text
//! {"config": <config with defaults, tokens masked>,
//!  "endpoints": [{"id"?: "<cluster>", "endpoints": [{"name": "ns/name", "value": "<JSON {port: [nodes]}>"}]}],
//!  (nodes: {host, port, weight}, plus zone and priority when the cluster's topology mode is on)
//!  "status": [{"id"?: "<cluster>", "ready": bool, "state": "...", ...}]}
//! ```

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::instance::Instance;
use crate::model::Node;
use crate::store::Entry;

/// Everything an instance serves, in the APISIX dump's shape: `{config, endpoints, status}` (tokens masked).
pub fn dump(inst: &Instance) -> Value {
    let mut endpoints = Vec::new();
    let mut status = Vec::new();
    for c in &inst.clusters {
        let weight = c.config.default_weight;
        let mut services: BTreeMap<String, BTreeMap<String, Vec<Node>>> = BTreeMap::new();
        let mut ports: Vec<(String, Vec<Node>)> = Vec::new();
        for e in c.region.snapshot() {
            match e {
                Entry::Service { key, .. } => {
                    services.entry(key).or_default();
                }
                Entry::Port { key, nodes, .. } => ports.push((key, nodes)),
            }
        }
        // A port entry belongs to its service even if the service's marker is missing (held back when full).
        for (key, nodes) in ports {
            if let Some((svc, port)) = key.rsplit_once(':') {
                services
                    .entry(svc.to_string())
                    .or_default()
                    .insert(port.to_string(), nodes);
            }
        }
        let list: Vec<Value> = services
            .into_iter()
            .map(|(name, ports)| {
                let value: serde_json::Map<String, Value> = ports
                    .into_iter()
                    .map(|(port, nodes)| {
                        let nodes: Vec<Value> = nodes.iter().map(|n| n.to_json(weight)).collect();
                        (port, Value::Array(nodes))
                    })
                    .collect();
                json!({"name": name, "value": Value::Object(value).to_string()})
            })
            .collect();
        let st = c.region.status();
        let mut s = json!({
            "ready": inst.cluster_ready(c),
            "state": st.state.as_str(),
            "lists": st.lists,
            "watch_events": st.watch_events,
            "entries": st.entries,
            "shared_bytes_used": st.heap_used,
            "shared_bytes_total": st.heap_bytes,
            "full_rejections": st.full_rejections,
            "pending_full": st.pending_full,
            "last_sync_ms": st.last_sync_ms,
            "writer_pid": st.writer_pid,
        });
        if !st.last_error.is_empty() {
            s["last_error"] = json!(st.last_error);
            s["last_error_ms"] = json!(st.last_error_ms);
        }
        // APISIX omits a cluster whose dictionary holds nothing.
        let mut item = json!({"endpoints": list});
        if inst.multi() {
            item = json!({"id": c.config.id, "endpoints": item["endpoints"].take()});
            s["id"] = json!(c.config.id);
        }
        if !item["endpoints"].as_array().is_some_and(Vec::is_empty) {
            endpoints.push(item);
        }
        status.push(s);
    }
    json!({"config": inst.config.dump_json(), "endpoints": endpoints, "status": status})
}
