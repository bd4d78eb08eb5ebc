//! The seeded mutation driver: creates, scales, deletes and relabels objects, moves endpoints between the
//! slices (or subsets) of a service, and churns whole namespaces, always through the fake API server.

use std::collections::BTreeMap;

use k8s_fake_apiserver::{FakeApiServer, Kind};
use serde_json::{Value, json};

use crate::rng::Rng;

pub const NAMESPACES: [&str; 5] = ["ns-0", "ns-1", "ns-2", "ns-3", "ns-4"];
pub const SERVICES: [&str; 8] = [
    "svc-0", "svc-1", "svc-2", "svc-3", "svc-4", "svc-5", "svc-6", "svc-7",
];
/// Every port key the driver can produce (named ports and the numbers of unnamed ones).
pub const PORT_KEYS: [&str; 5] = ["http", "grpc", "metrics", "7000", "7001"];
/// (name, number) pairs: a name may map to different numbers in different slices or subsets.
const PORTS: [(&str, u16); 7] = [
    ("http", 80),
    ("http", 8080),
    ("grpc", 9000),
    ("metrics", 9100),
    ("metrics", 9101),
    ("", 7000),
    ("", 7001),
];
const TIERS: [&str; 3] = ["web", "api", "hidden"];
const SLICE_SUFFIXES: [&str; 3] = ["a", "b", "c"];

/// Counts of what the driver did, for the run's report.
pub type Tally = BTreeMap<&'static str, u64>;

pub struct Driver {
    pub kind: Kind,
    /// The objects as last written: (namespace, name) to the object.
    objects: BTreeMap<(String, String), Value>,
}

fn ipv4(rng: &mut Rng) -> String {
    // A small pool, so that addresses repeat across services, slices and subsets.
    format!(
        "10.{}.{}.{}",
        rng.below(2),
        rng.below(3),
        rng.between(1, 12)
    )
}

fn ipv6(rng: &mut Rng) -> String {
    format!("fd00::{:x}", rng.between(1, 20))
}

fn port(rng: &mut Rng) -> Value {
    let (name, number) = *rng.pick(&PORTS);
    if name.is_empty() {
        json!({"port": number, "protocol": "TCP"})
    } else {
        json!({"name": name, "port": number, "protocol": "TCP"})
    }
}

/// Two to three ports with distinct keys.
fn ports(rng: &mut Rng, max: u64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for _ in 0..rng.between(0, max) {
        let p = port(rng);
        let key = |p: &Value| {
            p["name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| p["port"].to_string())
        };
        if !out.iter().any(|q| key(q) == key(&p)) {
            out.push(p);
        }
    }
    out
}

/// Endpoint conditions, as rollouts produce them (and with unset fields, which have defaults).
fn conditions(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!({}),
        1 | 2 => json!({"ready": true, "serving": true, "terminating": false}),
        3 => json!({"ready": true}),
        4 => json!({"ready": false}),
        5 => json!({"ready": false, "serving": true, "terminating": true}),
        6 => json!({"ready": false, "serving": false, "terminating": true}),
        _ => json!({"serving": true, "terminating": true}),
    }
}

impl Driver {
    pub fn new(kind: Kind) -> Driver {
        Driver {
            kind,
            objects: BTreeMap::new(),
        }
    }

    fn endpoint(&self, rng: &mut Rng, v6: bool) -> Value {
        let ip = if v6 { ipv6(rng) } else { ipv4(rng) };
        let mut ep = json!({"addresses": [ip]});
        if !rng.chance(1, 6) {
            ep["conditions"] = conditions(rng);
        }
        ep
    }

    fn new_object(&self, rng: &mut Rng, ns: &str, service: &str, name: &str) -> Value {
        let mut labels = json!({});
        if rng.chance(2, 3) {
            labels["tier"] = json!(rng.pick(&TIERS));
        }
        match self.kind {
            Kind::Endpoints => {
                let subsets: Vec<Value> = (0..rng.between(0, 2))
                    .map(|_| {
                        let addrs: Vec<Value> = (0..rng.between(0, 4))
                            .map(|_| json!({"ip": ipv4(rng)}))
                            .collect();
                        let not_ready: Vec<Value> = (0..rng.between(0, 2))
                            .map(|_| json!({"ip": ipv4(rng)}))
                            .collect();
                        json!({"addresses": addrs, "notReadyAddresses": not_ready,
                               "ports": ports(rng, 3)})
                    })
                    .collect();
                json!({"kind": "Endpoints", "apiVersion": "v1",
                       "metadata": {"namespace": ns, "name": name, "labels": labels},
                       "subsets": subsets})
            }
            Kind::EndpointSlice => {
                labels["kubernetes.io/service-name"] = json!(service);
                let address_type = match rng.below(20) {
                    0 => "FQDN",
                    1 | 2 => "IPv6",
                    _ => "IPv4",
                };
                let v6 = address_type == "IPv6";
                let eps: Vec<Value> = (0..rng.between(0, 5))
                    .map(|_| self.endpoint(rng, v6))
                    .collect();
                json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                       "metadata": {"namespace": ns, "name": name, "labels": labels},
                       "addressType": address_type, "endpoints": eps, "ports": ports(rng, 2)})
            }
        }
    }

    fn write(&mut self, s: &FakeApiServer, obj: Value) {
        let stored = s.apply(obj);
        let key = (
            stored["metadata"]["namespace"]
                .as_str()
                .unwrap()
                .to_string(),
            stored["metadata"]["name"].as_str().unwrap().to_string(),
        );
        self.objects.insert(key, stored);
    }

    fn delete(&mut self, s: &FakeApiServer, key: &(String, String)) {
        s.delete(self.kind, &key.0, &key.1);
        self.objects.remove(key);
    }

    fn random_existing(&self, rng: &mut Rng) -> Option<(String, String)> {
        if self.objects.is_empty() {
            return None;
        }
        let i = rng.below(self.objects.len() as u64) as usize;
        self.objects.keys().nth(i).cloned()
    }

    fn create(&mut self, s: &FakeApiServer, rng: &mut Rng, ns: &str) {
        let service = *rng.pick(&SERVICES);
        let name = match self.kind {
            Kind::Endpoints => service.to_string(),
            Kind::EndpointSlice => format!("{service}-{}", rng.pick(&SLICE_SUFFIXES)),
        };
        let obj = self.new_object(rng, ns, service, &name);
        self.write(s, obj);
    }

    /// The array that scaling and moving act on: a slice's endpoints, or a random subset's addresses.
    fn members<'v>(obj: &'v mut Value, kind: Kind, rng: &mut Rng) -> Option<&'v mut Vec<Value>> {
        match kind {
            Kind::EndpointSlice => {
                if obj["endpoints"].is_null() {
                    obj["endpoints"] = json!([]);
                }
                obj["endpoints"].as_array_mut()
            }
            Kind::Endpoints => {
                let n = obj["subsets"].as_array().map_or(0, Vec::len);
                if n == 0 {
                    return None;
                }
                let i = rng.below(n as u64) as usize;
                let subset = &mut obj["subsets"][i];
                if subset["addresses"].is_null() {
                    subset["addresses"] = json!([]);
                }
                subset["addresses"].as_array_mut()
            }
        }
    }

    /// One random mutation; returns its name.
    pub fn step(&mut self, s: &FakeApiServer, rng: &mut Rng) -> &'static str {
        let ns = *rng.pick(&NAMESPACES);
        let op = rng.weighted(&[20, 28, 8, 10, 8, 12, 3, 3]);
        let Some(key) = self.random_existing(rng).filter(|_| op != 0) else {
            self.create(s, rng, ns);
            return "create";
        };
        let mut obj = self.objects[&key].clone();
        let kind = self.kind;
        match op {
            1 => {
                // Scale up or down by one.
                let v6 = obj["addressType"] == "IPv6";
                let new = match kind {
                    Kind::Endpoints => json!({"ip": ipv4(rng)}),
                    Kind::EndpointSlice => self.endpoint(rng, v6),
                };
                let Some(m) = Self::members(&mut obj, kind, rng) else {
                    self.create(s, rng, ns);
                    return "create";
                };
                let grow = m.is_empty() || rng.chance(1, 2);
                let what = if grow {
                    m.push(new);
                    "scale-up"
                } else {
                    let i = rng.below(m.len() as u64) as usize;
                    m.remove(i);
                    "scale-down"
                };
                self.write(s, obj);
                what
            }
            2 => {
                self.delete(s, &key);
                "delete"
            }
            3 => {
                // Relabel: the tier (label selectors), or for slices the owning service.
                if kind == Kind::EndpointSlice && rng.chance(1, 2) {
                    let labels = &mut obj["metadata"]["labels"];
                    if rng.chance(1, 5) {
                        labels
                            .as_object_mut()
                            .map(|l| l.remove("kubernetes.io/service-name"));
                    } else {
                        labels["kubernetes.io/service-name"] = json!(rng.pick(&SERVICES));
                    }
                    self.write(s, obj);
                    "relabel-service"
                } else {
                    if obj["metadata"]["labels"].is_null() {
                        obj["metadata"]["labels"] = json!({});
                    }
                    obj["metadata"]["labels"]["tier"] = json!(rng.pick(&TIERS));
                    self.write(s, obj);
                    "relabel-tier"
                }
            }
            4 if kind == Kind::EndpointSlice => {
                // A rollout step: an endpoint's conditions change.
                let n = obj["endpoints"].as_array().map_or(0, Vec::len);
                if n == 0 {
                    return "noop";
                }
                let i = rng.below(n as u64) as usize;
                obj["endpoints"][i]["conditions"] = conditions(rng);
                self.write(s, obj);
                "conditions"
            }
            4 => {
                // Endpoints: an address turns not-ready, or back.
                let n = obj["subsets"].as_array().map_or(0, Vec::len);
                if n == 0 {
                    return "noop";
                }
                let subset = &mut obj["subsets"][rng.below(n as u64) as usize];
                let (from, to) = if rng.chance(1, 2) {
                    ("addresses", "notReadyAddresses")
                } else {
                    ("notReadyAddresses", "addresses")
                };
                let moved = subset[from].as_array_mut().and_then(Vec::pop);
                let Some(a) = moved else {
                    return "noop";
                };
                if subset[to].is_null() {
                    subset[to] = json!([]);
                }
                subset[to].as_array_mut().unwrap().push(a);
                self.write(s, obj);
                "readiness"
            }
            5 => self.move_between(s, rng, &key),
            6 => {
                // Namespace churn: the namespace goes away with everything in it.
                let doomed: Vec<(String, String)> = self
                    .objects
                    .keys()
                    .filter(|(n, _)| n == ns)
                    .cloned()
                    .collect();
                for k in &doomed {
                    self.delete(s, k);
                }
                "namespace-delete"
            }
            _ => {
                // Namespace churn: a namespace fills up at once.
                for _ in 0..rng.between(3, 8) {
                    self.create(s, rng, ns);
                }
                "namespace-fill"
            }
        }
    }

    /// Moves one endpoint from an object to another of the same service (another slice, or for Endpoints
    /// another subset): the target gains it first, then the source loses it, as the controllers do.
    fn move_between(
        &mut self,
        s: &FakeApiServer,
        rng: &mut Rng,
        key: &(String, String),
    ) -> &'static str {
        match self.kind {
            Kind::EndpointSlice => {
                let src = self.objects[key].clone();
                let service = src["metadata"]["labels"]["kubernetes.io/service-name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let n = src["endpoints"].as_array().map_or(0, Vec::len);
                if service.is_empty() || n == 0 {
                    return "noop";
                }
                let target_name = format!("{service}-{}", rng.pick(&SLICE_SUFFIXES));
                if target_name == key.1 {
                    return "noop";
                }
                let tkey = (key.0.clone(), target_name.clone());
                let mut target = match self.objects.get(&tkey) {
                    Some(t) => t.clone(),
                    None => {
                        let mut t = self.new_object(rng, &key.0, &service, &target_name);
                        t["endpoints"] = json!([]);
                        t["ports"] = src["ports"].clone();
                        t["addressType"] = src["addressType"].clone();
                        t
                    }
                };
                let i = rng.below(n as u64) as usize;
                let ep = src["endpoints"][i].clone();
                if target["endpoints"].is_null() {
                    target["endpoints"] = json!([]);
                }
                target["endpoints"].as_array_mut().unwrap().push(ep);
                self.write(s, target);
                let mut src = src;
                src["endpoints"].as_array_mut().unwrap().remove(i);
                self.write(s, src);
                "move-slices"
            }
            Kind::Endpoints => {
                let mut obj = self.objects[key].clone();
                let n = obj["subsets"].as_array().map_or(0, Vec::len);
                if n < 2 {
                    return "noop";
                }
                let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
                if a == b {
                    return "noop";
                }
                let moved = obj["subsets"][a]["addresses"]
                    .as_array_mut()
                    .and_then(Vec::pop);
                let Some(addr) = moved else {
                    return "noop";
                };
                if obj["subsets"][b]["addresses"].is_null() {
                    obj["subsets"][b]["addresses"] = json!([]);
                }
                obj["subsets"][b]["addresses"]
                    .as_array_mut()
                    .unwrap()
                    .push(addr);
                self.write(s, obj);
                "move-subsets"
            }
        }
    }
}
