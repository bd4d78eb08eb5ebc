//! The watcher's in-memory view of one cluster: the Kubernetes objects it watches, grouped by service, and the
//! node lists derived from them.

use std::collections::{HashMap, HashSet};

use crate::model::{self, Object, PortNodes, Slice, Subsets};
use crate::selector::NamespaceSelector;
use crate::topology::Topology;

/// What a service's nodes come from, in the dense form the model parses objects into.
enum Source {
    Endpoints(Subsets),
    /// Slices in name order (a service has few; a map would cost more than it saves); all are merged.
    Slices(Vec<Slice>),
}

/// Objects grouped by service key `ns/name`.
pub struct View {
    namespaces: Option<NamespaceSelector>,
    services: HashMap<String, Source>,
    /// `ns/slice-name` to its service key, so a slice event finds the service it belonged to.
    slice_owner: HashMap<String, String>,
    /// Services with an object that could not be parsed in the last list: their stored nodes are kept as they were.
    kept: HashSet<String>,
    /// How slice nodes are prioritised by zone.
    topology: Topology,
}

impl View {
    pub fn new(namespaces: Option<NamespaceSelector>, topology: Topology) -> View {
        View {
            namespaces,
            topology,
            services: HashMap::new(),
            slice_owner: HashMap::new(),
            kept: HashSet::new(),
        }
    }

    /// The service keys an added or modified object affects (two when a slice moved between services).
    pub fn apply(&mut self, obj: Object) -> Vec<String> {
        match obj {
            Object::Endpoints(e) => {
                let Some(key) = self.endpoints_key(&e) else {
                    return Vec::new();
                };
                self.services
                    .insert(key.clone(), Source::Endpoints(e.subsets));
                vec![key]
            }
            Object::Slice(s) => {
                let ns = s.metadata.namespace.clone().unwrap_or_default();
                let Some(name) = s.metadata.name.clone() else {
                    return Vec::new();
                };
                let slice_id = format!("{ns}/{name}");
                // A slice that lost its service label (or no longer passes the selector) leaves its old service.
                let Some(key) = self.admitted_key(Some(&ns), s.metadata.service.as_deref()) else {
                    return match self.slice_owner.remove(&slice_id) {
                        Some(prev) => {
                            self.remove_slice(&prev, &name);
                            vec![prev]
                        }
                        None => Vec::new(),
                    };
                };
                let mut affected = vec![key.clone()];
                if let Some(prev) = self.slice_owner.insert(slice_id, key.clone())
                    && prev != key
                {
                    self.remove_slice(&prev, &name);
                    affected.push(prev);
                }
                match self
                    .services
                    .entry(key)
                    .or_insert_with(|| Source::Slices(Vec::new()))
                {
                    Source::Slices(v) => match v.binary_search_by(|x| x.name().cmp(&name)) {
                        Ok(i) => v[i] = s.slice,
                        Err(i) => v.insert(i, s.slice),
                    },
                    // A service key cannot hold both kinds: one cluster watches one resource.
                    Source::Endpoints(_) => {}
                }
                affected
            }
        }
    }

    /// The service keys a deleted object affects.
    pub fn delete(&mut self, obj: Object) -> Vec<String> {
        match obj {
            Object::Endpoints(e) => {
                let Some(key) = self.endpoints_key(&e) else {
                    return Vec::new();
                };
                self.services.remove(&key);
                vec![key]
            }
            Object::Slice(s) => {
                let ns = s.metadata.namespace.clone().unwrap_or_default();
                let Some(name) = s.metadata.name.clone() else {
                    return Vec::new();
                };
                match self.slice_owner.remove(&format!("{ns}/{name}")) {
                    Some(key) => {
                        self.remove_slice(&key, &name);
                        vec![key]
                    }
                    None => Vec::new(),
                }
            }
        }
    }

    /// Takes a slice from its service. A service left with no slice is gone, as a deleted Endpoints object's is:
    /// the EndpointSlice controller keeps a slice (possibly empty) for every live service, so none means the
    /// service was deleted, and keeping it would hold its entries forever while services come and go.
    fn remove_slice(&mut self, key: &str, name: &str) {
        if let Some(Source::Slices(v)) = self.services.get_mut(key) {
            v.retain(|s| s.name() != name);
            if v.is_empty() {
                self.services.remove(key);
            }
        }
    }

    /// The service key of an Endpoints object (it is named after its service), if admitted.
    fn endpoints_key(&self, e: &model::Endpoints) -> Option<String> {
        self.admitted_key(e.metadata.namespace.as_deref(), e.metadata.name.as_deref())
    }

    fn admitted_key(&self, ns: Option<&str>, name: Option<&str>) -> Option<String> {
        let (ns, name) = (ns?, name?);
        if ns.is_empty() || name.is_empty() {
            return None;
        }
        if let Some(sel) = &self.namespaces
            && !sel.admits(ns)
        {
            return None;
        }
        Some(model::service_key(ns, name))
    }

    /// Marks a service whose object did not parse: a full replace keeps its stored nodes untouched.
    pub fn keep_previous(&mut self, ns: &str, name: &str) {
        if self.namespaces.as_ref().is_none_or(|sel| sel.admits(ns)) {
            self.kept.insert(model::service_key(ns, name));
        }
    }

    pub fn kept(&self) -> &HashSet<String> {
        &self.kept
    }

    #[cfg(test)]
    fn slice_count(&self, key: &str) -> usize {
        match self.services.get(key) {
            Some(Source::Slices(v)) => v.len(),
            _ => 0,
        }
    }

    /// The ports and nodes of a service, or None if the service is not (or no longer) known.
    pub fn ports(&self, key: &str) -> Option<PortNodes> {
        Some(match self.services.get(key)? {
            Source::Endpoints(subsets) => model::endpoints_ports(subsets),
            Source::Slices(v) => model::slices_ports_with(v, &self.topology),
        })
    }

    pub fn service_keys(&self) -> impl Iterator<Item = &String> {
        self.services.keys()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Resource;

    fn slice(name: &str, label: Option<&str>, ip: &str) -> Object {
        let mut v = serde_json::json!({
            "metadata": {"namespace": "ns", "name": name, "labels": {}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip]}],
            "ports": [{"name": "http", "port": 80}]
        });
        if let Some(l) = label {
            v["metadata"]["labels"]["kubernetes.io/service-name"] = l.into();
        }
        Object::parse(Resource::EndpointSlices, &v.to_string(), false).unwrap()
    }

    #[test]
    fn a_slice_that_loses_its_label_leaves_its_service() {
        let mut v = View::new(None, Topology::default());
        assert_eq!(v.apply(slice("a-1", Some("a"), "10.0.0.1")), vec!["ns/a"]);
        assert_eq!(v.apply(slice("a-1", None, "10.0.0.1")), vec!["ns/a"]);
        assert_eq!(v.slice_count("ns/a"), 0);
        assert_eq!(v.ports("ns/a"), None, "no slice left: no service");
    }

    #[test]
    fn a_service_whose_last_slice_is_deleted_is_gone() {
        let mut v = View::new(None, Topology::default());
        v.apply(slice("a-1", Some("a"), "10.0.0.1"));
        v.apply(slice("a-2", Some("a"), "10.0.0.2"));
        assert_eq!(v.delete(slice("a-1", Some("a"), "10.0.0.1")), vec!["ns/a"]);
        assert_eq!(v.slice_count("ns/a"), 1, "one slice left");
        assert!(v.ports("ns/a").is_some());
        assert_eq!(v.delete(slice("a-2", Some("a"), "10.0.0.2")), vec!["ns/a"]);
        assert_eq!(v.ports("ns/a"), None);
        assert_eq!(v.len(), 0);
        // An empty slice still makes a live service (known, no nodes).
        let empty = serde_json::json!({"metadata": {"namespace": "ns", "name": "b-1",
                                        "labels": {"kubernetes.io/service-name": "b"}},
                                       "addressType": "IPv4", "endpoints": null, "ports": null});
        v.apply(Object::parse(Resource::EndpointSlices, &empty.to_string(), false).unwrap());
        assert_eq!(v.ports("ns/b"), Some(Default::default()));
    }

    #[test]
    fn a_slice_that_moves_updates_both_services() {
        let mut v = View::new(None, Topology::default());
        v.apply(slice("x-1", Some("a"), "10.0.0.1"));
        let mut affected = v.apply(slice("x-1", Some("b"), "10.0.0.1"));
        affected.sort();
        assert_eq!(affected, vec!["ns/a", "ns/b"]);
        assert_eq!(v.slice_count("ns/a"), 0);
        assert_eq!(v.slice_count("ns/b"), 1);
    }

    #[test]
    fn a_view_with_a_topology_mode_gives_slice_nodes_their_zone_and_priority() {
        let zoned = |name: &str, ip: &str, zone: &str, placed: bool| {
            let v = serde_json::json!({
                "metadata": {"namespace": "ns", "name": name,
                             "labels": {"kubernetes.io/service-name": "a"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip], "zone": zone}],
                "ports": [{"name": "http", "port": 80}]
            });
            Object::parse(Resource::EndpointSlices, &v.to_string(), placed).unwrap()
        };
        let topology = Topology {
            mode: crate::topology::Mode::PreferZone,
            zone: "za".into(),
        };
        let mut on = View::new(None, topology);
        let mut off = View::new(None, Topology::default());
        for (v, placed) in [(&mut on, true), (&mut off, false)] {
            v.apply(zoned("a-1", "10.0.0.1", "za", placed));
            v.apply(zoned("a-2", "10.0.0.2", "zb", placed));
        }
        let placed: Vec<(Option<String>, i8)> = on.ports("ns/a").unwrap()["http"]
            .iter()
            .map(|n| n.topology.clone().map(|t| (t.zone, t.priority)).unwrap())
            .collect();
        assert_eq!(placed, [(Some("za".into()), 0), (Some("zb".into()), -1)]);
        assert!(
            off.ports("ns/a").unwrap()["http"]
                .iter()
                .all(|n| n.topology.is_none())
        );
    }

    #[test]
    fn service_of_reads_names_from_raw_objects() {
        let raw = serde_json::json!({"metadata": {"namespace": "ns", "name": "web-x",
                                      "labels": {"kubernetes.io/service-name": "web"}}, "endpoints": 5});
        let raw = raw.to_string();
        assert!(Object::parse(Resource::EndpointSlices, &raw, false).is_err());
        assert_eq!(
            Resource::EndpointSlices.service_of(&raw),
            Some(("ns".into(), "web".into()))
        );
        assert_eq!(
            Resource::Endpoints.service_of(&raw),
            Some(("ns".into(), "web-x".into()))
        );
        assert_eq!(Resource::Endpoints.service_of(r#"{"metadata": {}}"#), None);
    }
}
