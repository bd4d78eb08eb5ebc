//! The lookup API: what the gateway sees for one service name, with the reason when it sees nothing. Answers the
//! usual "no valid upstream node" question (wrong name format, unknown cluster, unknown service, port name versus
//! number) from the gateway itself.
//!
//! ```text
//! {"service": "<name>", "cluster": "<id>", "found": true, "nodes": [{"host", "port", "weight", "zone"?, "priority"?}],
//!  "version": n, "changed_at": <seconds since the epoch>}
//! {"service": "<name>", "found": false, "reason": "...", "ports": ["<port>", ...]?}
//! ```

use serde_json::{Value, json};

use crate::instance::Instance;
use crate::store::{Lookup, decode_nodes};

pub fn lookup(inst: &Instance, name: &str) -> Value {
    let not_found = |reason: String| json!({"service": name, "found": false, "reason": reason});
    let (cluster, key) = if inst.multi() {
        let Some((id, key)) = name.split_once('/') else {
            return not_found("with several clusters, names are id/namespace/name:port".into());
        };
        match inst.clusters.iter().find(|c| c.config.id == id) {
            Some(c) => (c, key),
            None => {
                let ids: Vec<&str> = inst.clusters.iter().map(|c| c.config.id.as_str()).collect();
                return not_found(format!(
                    "no cluster with id \"{id}\"; configured: {}",
                    ids.join(", ")
                ));
            }
        }
    } else {
        (&inst.clusters[0], name)
    };
    let Some((service, port)) = key.rsplit_once(':') else {
        return not_found(
            "names are namespace/name:port (the port's name, or its number when unnamed)".into(),
        );
    };
    if service.split('/').count() != 2
        || service.starts_with('/')
        || service.ends_with('/')
        || port.is_empty()
    {
        return not_found(
            "names are namespace/name:port (the port's name, or its number when unnamed)".into(),
        );
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match cluster.region.lookup(key.as_bytes(), &mut buf) {
            Lookup::Found {
                version,
                count,
                len,
                changed_s,
                ..
            } => {
                let weight = cluster.config.default_weight;
                let nodes: Vec<Value> = decode_nodes(&buf[..len], count)
                    .iter()
                    .map(|n| n.to_json(weight))
                    .collect();
                return json!({
                    "service": name, "cluster": cluster.config.id, "found": true, "nodes": nodes,
                    "version": version, "changed_at": changed_s,
                });
            }
            Lookup::TooSmall { need } => buf.resize(need, 0),
            Lookup::NotFound => break,
            Lookup::Busy => return not_found("the entry is being rewritten; try again".into()),
            Lookup::Corrupt => return not_found("the entry is corrupt in shared memory".into()),
        }
    }
    match cluster.region.service_ports(service) {
        Some(ports) => {
            let mut v = not_found(format!(
                "service {service} has no port \"{port}\" (ports are named by the Service port's name, or its \
                 number when it is unnamed)"
            ));
            v["ports"] = json!(ports);
            v
        }
        None => not_found(format!(
            "service {service} not found: not in a watched namespace, filtered out by a selector, without \
             Endpoints/EndpointSlices, or discovery has not listed yet"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use crate::store::Writer;

    const MULTI: &str = r#"[
        {"id":"one","service":{"schema":"http","host":"127.0.0.1","port":"1"},"client":{"token":"t"},"shared_size":"1m","default_weight":7}
    ]"#;

    #[test]
    fn found_names_and_each_reason_for_nothing() {
        let inst = Instance::standalone(MULTI).unwrap();
        let mut w = Writer::claim(&inst.clusters[0].region, 1).unwrap();
        let mut b = w.batch().unwrap();
        b.put_service("ns/web", &["http", "9090"]);
        b.put_port("ns/web:http", &[Node::new("10.0.0.1", 80)]);
        drop(b);

        let v = lookup(&inst, "one/ns/web:http");
        assert_eq!(v["found"], true);
        assert_eq!(v["cluster"], "one");
        assert_eq!(
            v["nodes"],
            json!([{"host": "10.0.0.1", "port": 80, "weight": 7}])
        );
        assert!(v["version"].as_u64().unwrap() > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now - v["changed_at"].as_u64().unwrap() < 60);

        let reason = |n: &str| lookup(&inst, n)["reason"].as_str().unwrap().to_string();
        assert!(reason("ns/web:http").contains("no cluster with id \"ns\"; configured: one"));
        assert!(reason("web").contains("id/namespace/name:port"));
        assert!(reason("one/web.ns.svc.cluster.local:80").contains("namespace/name:port"));
        let v = lookup(&inst, "one/ns/web:80");
        assert!(v["reason"].as_str().unwrap().contains("has no port \"80\""));
        assert_eq!(v["ports"], json!(["http", "9090"]));
        assert!(reason("one/ns/nope:http").contains("service ns/nope not found"));
    }

    #[test]
    fn nodes_with_topology_show_their_zone_and_priority() {
        let inst = Instance::standalone(MULTI).unwrap();
        let mut w = Writer::claim(&inst.clusters[0].region, 1).unwrap();
        let mut b = w.batch().unwrap();
        let with = |host: &str, zone: Option<&str>, priority| Node {
            topology: Some(crate::model::NodeTopology {
                zone: zone.map(str::to_owned),
                priority,
            }),
            ..Node::new(host, 80)
        };
        b.put_service("ns/web", &["http"]);
        b.put_port(
            "ns/web:http",
            &[with("10.0.0.1", Some("za"), 0), with("10.0.0.2", None, -1)],
        );
        drop(b);
        assert_eq!(
            lookup(&inst, "one/ns/web:http")["nodes"],
            json!([
                {"host": "10.0.0.1", "port": 80, "weight": 7, "zone": "za", "priority": 0},
                {"host": "10.0.0.2", "port": 80, "weight": 7, "zone": null, "priority": -1}
            ])
        );
        let dump = crate::dump::dump(&inst);
        let value: Value = serde_json::from_str(
            dump["endpoints"][0]["endpoints"][0]["value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(value["http"][1]["priority"], -1);
        assert_eq!(value["http"][0]["zone"], "za");
    }
}
