//! What every lookup should answer, computed from the fake API server's objects with the documented rules
//! (deliberately not with the library's own model code):
//!
//! - Endpoints: per subset, ready `addresses` x `ports`; a port whose subset has no ready address is known with
//!   no nodes.
//! - EndpointSlices: all slices labelled `kubernetes.io/service-name` of a service are merged; only `IPv4`/`IPv6`
//!   slices count; an endpoint's address is its first; copies of one address and port (in several slices, or
//!   twice in one) collapse into one, a non-terminating copy beating a terminating one, then a ready copy a
//!   not-ready one, else the first in slice-name order; a port serves its ready endpoints (`ready` unset counts
//!   as ready), and when it has none, those that are serving (unset: true) and terminating.
//! - Names are `ns/name:port`, the port being its name or, when unnamed, its number; nodes sorted by host (as a
//!   string), then port.

use std::collections::BTreeMap;

use serde_json::Value;

/// `ns/name:port` to its nodes, `(host, port)` sorted.
pub type Truth = BTreeMap<String, Vec<(String, u16)>>;

/// An object's labels.
pub type Labels = serde_json::Map<String, Value>;

/// Which objects the watcher was configured to see.
pub struct Scope {
    pub namespace: Box<dyn Fn(&str) -> bool + Send + Sync>,
    pub labels: Box<dyn Fn(&Labels) -> bool + Send + Sync>,
}

impl Scope {
    fn admits(&self, obj: &Value) -> bool {
        let empty = Labels::new();
        let labels = obj["metadata"]["labels"].as_object().unwrap_or(&empty);
        (self.namespace)(str_at(obj, "/metadata/namespace")) && (self.labels)(labels)
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The port number if usable (1..=65535) and the port's key.
fn port_of(p: &Value) -> Option<(u16, String)> {
    let number = p["port"]
        .as_i64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)?;
    let key = match p["name"].as_str() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => number.to_string(),
    };
    Some((number, key))
}

pub fn endpoints(objects: &[Value], scope: &Scope) -> Truth {
    let mut out: BTreeMap<String, std::collections::BTreeSet<(String, u16)>> = BTreeMap::new();
    for obj in objects.iter().filter(|o| scope.admits(o)) {
        let service = format!(
            "{}/{}",
            str_at(obj, "/metadata/namespace"),
            str_at(obj, "/metadata/name")
        );
        for subset in array(&obj["subsets"]) {
            for (number, key) in array(&subset["ports"]).iter().filter_map(port_of) {
                let nodes = out.entry(format!("{service}:{key}")).or_default();
                for a in array(&subset["addresses"]) {
                    nodes.insert((str_at(a, "/ip").to_string(), number));
                }
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

#[derive(Clone, Copy)]
struct Copy {
    ready: bool,
    serving: bool,
    terminating: bool,
}

pub fn slices(objects: &[Value], scope: &Scope) -> Truth {
    // Service name to its slices, in slice-name order.
    let mut services: BTreeMap<String, BTreeMap<String, &Value>> = BTreeMap::new();
    for obj in objects.iter().filter(|o| scope.admits(o)) {
        let svc = obj["metadata"]["labels"]["kubernetes.io/service-name"]
            .as_str()
            .unwrap_or("");
        if svc.is_empty() {
            continue;
        }
        services
            .entry(format!("{}/{svc}", str_at(obj, "/metadata/namespace")))
            .or_default()
            .insert(str_at(obj, "/metadata/name").to_string(), obj);
    }
    let mut out = Truth::new();
    for (service, slices) in services {
        // Port key -> (host, number) -> the copy that decides.
        let mut ports: BTreeMap<String, BTreeMap<(String, u16), Copy>> = BTreeMap::new();
        for slice in slices.values() {
            if !matches!(slice["addressType"].as_str(), Some("IPv4" | "IPv6")) {
                continue;
            }
            for (number, key) in array(&slice["ports"]).iter().filter_map(port_of) {
                let copies = ports.entry(key).or_default();
                for ep in array(&slice["endpoints"]) {
                    let Some(ip) = ep["addresses"][0].as_str() else {
                        continue;
                    };
                    let cond =
                        |name: &str, unset: bool| ep["conditions"][name].as_bool().unwrap_or(unset);
                    let copy = Copy {
                        ready: cond("ready", true),
                        serving: cond("serving", true),
                        terminating: cond("terminating", false),
                    };
                    let node = (ip.to_string(), number);
                    match copies.get(&node) {
                        None => {
                            copies.insert(node, copy);
                        }
                        Some(old) => {
                            let better = if copy.terminating != old.terminating {
                                !copy.terminating
                            } else {
                                copy.ready && !old.ready
                            };
                            if better {
                                copies.insert(node, copy);
                            }
                        }
                    }
                }
            }
        }
        for (key, copies) in ports {
            let ready: Vec<(String, u16)> = copies
                .iter()
                .filter(|(_, c)| c.ready)
                .map(|(n, _)| n.clone())
                .collect();
            let served = if ready.is_empty() {
                copies
                    .into_iter()
                    .filter(|(_, c)| c.serving && c.terminating)
                    .map(|(n, _)| n)
                    .collect()
            } else {
                ready
            };
            out.insert(format!("{service}:{key}"), served);
        }
    }
    out
}
