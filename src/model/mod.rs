//! Kubernetes wire types (the few fields we read) and their conversion to
//! upstream nodes.
//!
//! Parsing is lenient on purpose: unknown fields are ignored, every optional
//! field and every list may be missing or `null` (real apiservers emit
//! `"endpoints": null` and `"ports": null` for empty slices, and an Endpoints
//! object without backends has no `subsets` at all). For lists, missing,
//! `null` and `[]` are all accepted and mean the same thing; the conversion
//! functions never distinguish them.
//!
//! The conversion output is canonical (ports in key order, nodes sorted and
//! de-duplicated), so that equal content always produces equal records, and the
//! store can tell an unchanged entry from a changed one by comparing bytes.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};

use crate::topology::{self, Placement, Topology};

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Annotation on the bookmark that ends a streaming list's initial events.
pub const INITIAL_EVENTS_END_ANNOTATION: &str = "k8s.io/initial-events-end";

/// Deserializes `null` as `T::default()`, for non-`Option` fields such as
/// `metadata` that may still arrive as `null` from odd producers.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The items of an optional list; missing and `null` read as empty.
fn items<T>(list: &Option<Vec<T>>) -> &[T] {
    list.as_deref().unwrap_or_default()
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `metadata` of a list response (and of some Status bodies).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ListMeta {
    pub resource_version: Option<String>,
    #[serde(rename = "continue")]
    pub continue_: Option<String>,
    pub remaining_item_count: Option<i64>,
}

impl ListMeta {
    /// The continue token, if another page follows (an empty token means none).
    pub fn next_page(&self) -> Option<&str> {
        self.continue_.as_deref().filter(|c| !c.is_empty())
    }
}

/// A list response. Generic so the caller chooses: `List<Endpoints>` to parse
/// everything at once, or `List<&RawValue>` to parse item by item
/// (and skip one malformed item instead of failing the whole page).
/// `kind` lets the caller check it got the list it asked for.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ListMeta,
    #[serde(default = "Option::default")]
    pub items: Option<Vec<T>>,
}

// ---- core/v1 Endpoints ----

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Endpoints {
    #[serde(deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    pub subsets: Option<Vec<EndpointSubset>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSubset {
    /// Ready addresses: the only ones served.
    pub addresses: Option<Vec<EndpointAddress>>,
    /// Never served; parsed so that callers can log or count them.
    pub not_ready_addresses: Option<Vec<EndpointAddress>>,
    pub ports: Option<Vec<EndpointPort>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointAddress {
    pub ip: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: Option<i64>,
    pub protocol: Option<String>,
}

// ---- discovery.k8s.io/v1 EndpointSlice ----

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlice {
    #[serde(deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    pub address_type: Option<String>,
    pub endpoints: Option<Vec<SliceEndpoint>>,
    pub ports: Option<Vec<SlicePort>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SliceEndpoint {
    pub addresses: Option<Vec<String>>,
    pub conditions: Option<Conditions>,
    /// The zone the endpoint runs in.
    pub zone: Option<String>,
    pub hints: Option<EndpointHints>,
}

/// Where the EndpointSlice controller wants an endpoint used (`trafficDistribution: PreferClose`, or the
/// `service.kubernetes.io/topology-mode: Auto` annotation).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointHints {
    pub for_zones: Option<Vec<ForZone>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ForZone {
    pub name: Option<String>,
}

/// Endpoint conditions. Kubernetes defines nil `ready`/`serving` as true and
/// nil `terminating` as false; use the accessors rather than the fields.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Conditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

impl SliceEndpoint {
    /// The zone names of `hints.forZones`, or None when the endpoint has no hints.
    pub fn hint_zones(&self) -> Option<Vec<&str>> {
        self.hints.as_ref().map(|h| {
            items(&h.for_zones)
                .iter()
                .filter_map(|z| z.name.as_deref())
                .collect()
        })
    }

    pub fn is_ready(&self) -> bool {
        self.conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true)
    }

    pub fn is_serving(&self) -> bool {
        self.conditions
            .as_ref()
            .and_then(|c| c.serving)
            .unwrap_or(true)
    }

    pub fn is_terminating(&self) -> bool {
        self.conditions
            .as_ref()
            .and_then(|c| c.terminating)
            .unwrap_or(false)
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SlicePort {
    pub name: Option<String>,
    /// `None` means "all ports"; never produced for Service-owned slices and
    /// not usable as an upstream, so such ports are skipped.
    pub port: Option<i64>,
    pub protocol: Option<String>,
}

// ---- watch stream, errors, bookmarks ----

/// One line of a watch stream. `object` stays a `Value` because its shape
/// depends on `type_`: an Endpoints/EndpointSlice, a `Status` for `ERROR`,
/// or a near-empty object for `BOOKMARK`.
#[derive(Clone, Debug, Deserialize)]
pub struct WatchEvent<'a> {
    #[serde(rename = "type")]
    pub type_: String,
    /// The object as raw JSON text, borrowed from the event line: parsed into its type by the caller, after a
    /// size check.
    #[serde(borrow, default)]
    pub object: Option<&'a serde_json::value::RawValue>,
}

impl WatchEvent<'_> {
    /// The object's JSON text (`null` when the event has none).
    pub fn object_text(&self) -> &str {
        self.object.map_or("null", |o| o.get())
    }
}

// ---- what a cluster watches ----

/// Which API resource a cluster watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Endpoints,
    EndpointSlices,
}

impl Resource {
    /// The collection path, namespaced when the selector pins one namespace (then a namespaced Role suffices).
    pub fn path(self, namespace: Option<&str>) -> String {
        let (prefix, plural) = match self {
            Resource::Endpoints => ("/api/v1", "endpoints"),
            Resource::EndpointSlices => ("/apis/discovery.k8s.io/v1", "endpointslices"),
        };
        match namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}"),
            None => format!("{prefix}/{plural}"),
        }
    }

    /// The (namespace, service name) an object belongs to, read from its raw JSON text with only the metadata
    /// parsed: names objects that do not parse, or are too large to.
    pub fn service_of(self, json: &str) -> Option<(String, String)> {
        #[derive(serde::Deserialize)]
        struct MetadataOnly {
            metadata: ObjectMeta,
        }
        let meta = serde_json::from_str::<MetadataOnly>(json).ok()?.metadata;
        let ns = meta.namespace?;
        let name = match self {
            Resource::Endpoints => meta.name?,
            Resource::EndpointSlices => meta.labels?.remove(SERVICE_NAME_LABEL)?,
        };
        (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
    }

    /// Like `service_of`, from the first bytes of an object too large to hold whole: the API server writes
    /// `metadata` before the addresses, so its first `"metadata":` key is the object's.
    pub fn service_of_prefix(self, prefix: &[u8]) -> Option<(String, String)> {
        const KEY: &[u8] = b"\"metadata\":";
        let at = prefix.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
        let meta = serde_json::Deserializer::from_slice(&prefix[at..])
            .into_iter::<ObjectMeta>()
            .next()?
            .ok()?;
        let ns = meta.namespace?;
        let name = match self {
            Resource::Endpoints => meta.name?,
            Resource::EndpointSlices => meta.labels?.remove(SERVICE_NAME_LABEL)?,
        };
        (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::Endpoints => "Endpoints",
            Resource::EndpointSlices => "EndpointSlice",
        }
    }
}

/// One watched object.
pub enum Object {
    Endpoints(Endpoints),
    Slice(EndpointSlice),
}

impl Object {
    /// Parses an object of `resource` from its JSON text straight into the typed model.
    pub fn parse(resource: Resource, json: &str) -> Result<Object, serde_json::Error> {
        Ok(match resource {
            Resource::Endpoints => Object::Endpoints(serde_json::from_str(json)?),
            Resource::EndpointSlices => Object::Slice(serde_json::from_str(json)?),
        })
    }

    pub fn resource_version(&self) -> Option<&str> {
        let meta = match self {
            Object::Endpoints(e) => &e.metadata,
            Object::Slice(s) => &s.metadata,
        };
        meta.resource_version.as_deref()
    }
}

/// `metav1.Status`: error bodies and the object of `ERROR` watch events.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub code: Option<i64>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub metadata: Option<ListMeta>,
    pub details: Option<StatusDetails>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusDetails {
    pub retry_after_seconds: Option<i64>,
}

/// Whether a status code and reason mean 410 Gone: the resourceVersion or continue token is too old, the signal
/// to relist. Old servers said `Gone` where new ones say `Expired`, sometimes with the reason alone.
pub fn is_gone(code: Option<i64>, reason: &str) -> bool {
    code == Some(410) || matches!(reason, "Expired" | "Gone")
}

/// A server's retry hint in seconds (a `Retry-After` header or `details.retryAfterSeconds`): only a positive
/// number is a hint.
pub fn retry_hint(seconds: i64) -> Option<std::time::Duration> {
    u64::try_from(seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs)
}

impl Status {
    /// Whether this Status says 410 Gone (see `is_gone`).
    pub fn is_expired(&self) -> bool {
        is_gone(self.code, self.reason.as_deref().unwrap_or(""))
    }

    /// The server's retry hint (see `retry_hint`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.details
            .as_ref()
            .and_then(|d| d.retry_after_seconds)
            .and_then(retry_hint)
    }
}

/// The object of a `BOOKMARK` event: an empty object of the watched kind with
/// only `metadata.resourceVersion` (and, for streaming lists, an annotation).
/// Parsed on its own so that the zero-value fields of the kind (`"endpoints":
/// null`, `"addressType": ""`, `"creationTimestamp": null`) never matter.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Bookmark {
    #[serde(deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
}

impl Bookmark {
    pub fn resource_version(&self) -> Option<&str> {
        self.metadata
            .resource_version
            .as_deref()
            .filter(|rv| !rv.is_empty())
    }

    /// Whether this bookmark ends the initial events of a streaming list.
    pub fn is_initial_events_end(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INITIAL_EVENTS_END_ANNOTATION))
            .is_some_and(|v| v == "true")
    }
}

// ---- nodes ----

/// One upstream address. `host` is an IP literal, IPv6 without brackets.
/// Field order makes the derived `Ord` sort by host string, then port, the
/// order APISIX produces (so "10.0.0.10" < "10.0.0.2").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node {
    /// The endpoint's address (an IP address as text).
    pub host: String,
    /// The port number.
    pub port: u16,
    /// Zone and priority, present exactly when the cluster's `topology.mode` is on.
    pub topology: Option<NodeTopology>,
}

impl Node {
    /// The node as the lookup API and the dump show it: `{host, port, weight}`, plus `zone` (null when unknown)
    /// and `priority` when the cluster's topology mode is on.
    pub fn to_json(&self, weight: u32) -> serde_json::Value {
        let mut v = serde_json::json!({"host": self.host, "port": self.port, "weight": weight});
        if let Some(t) = &self.topology {
            v["zone"] = serde_json::json!(t.zone);
            v["priority"] = serde_json::json!(t.priority);
        }
        v
    }

    /// A node without topology.
    pub fn new(host: impl Into<String>, port: u16) -> Node {
        Node {
            host: host.into(),
            port,
            topology: None,
        }
    }
}

/// What a topology mode adds to a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeTopology {
    /// The endpoint's zone, if known.
    pub zone: Option<String>,
    /// 0 (preferred) or -1 (used when no node of priority 0 is left); see `crate::topology`.
    pub priority: i8,
}

/// Nodes of one service by port key: the port's name, or its number as a
/// decimal string when unnamed. A key with an empty Vec is a known port with
/// no ready nodes (which differs from an unknown port).
pub type PortNodes = BTreeMap<String, Vec<Node>>;

/// `"<namespace>/<name>"`, the per-service key.
pub fn service_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The Service an EndpointSlice belongs to (its non-empty service-name label).
pub fn slice_service_name(s: &EndpointSlice) -> Option<&str> {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

fn port_number(p: Option<i64>) -> Option<u16> {
    p.and_then(|n| u16::try_from(n).ok()).filter(|n| *n != 0)
}

fn port_key(name: Option<&str>, number: u16) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => number.to_string(),
    }
}

/// A cheap plausibility check that an address is an IP literal (hex digits,
/// dots and colons, at most 45 chars, the longest IPv6 text form). It keeps
/// anything that is not an IP (an FQDN, garbage) out of nginx's upstreams,
/// while still accepting legacy forms that strict parsers refuse, such as
/// IPv4 octets with leading zeros that old apiservers let through.
fn is_ip_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 45
        && s.contains(['.', ':'])
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
}

fn finish(acc: BTreeMap<String, BTreeSet<Node>>) -> PortNodes {
    acc.into_iter()
        .map(|(k, nodes)| (k, nodes.into_iter().collect()))
        .collect()
}

/// Nodes of a v1 Endpoints object: per subset, ready `addresses` × `ports`,
/// merged across subsets by port key. `notReadyAddresses` are never served,
/// but their subset's ports are still known (with possibly no nodes).
pub fn endpoints_ports(e: &Endpoints) -> PortNodes {
    let mut acc: BTreeMap<String, BTreeSet<Node>> = BTreeMap::new();
    for subset in items(&e.subsets) {
        for p in items(&subset.ports) {
            let Some(port) = port_number(p.port) else {
                continue;
            };
            let nodes = acc.entry(port_key(p.name.as_deref(), port)).or_default();
            for a in items(&subset.addresses) {
                if let Some(ip) = a.ip.as_deref().filter(|ip| is_ip_like(ip)) {
                    nodes.insert(Node::new(ip, port));
                }
            }
        }
    }
    finish(acc)
}

/// The state of one candidate copy of an endpoint during slice merging.
#[derive(Clone, Copy)]
struct Candidate<'a> {
    ready: bool,
    serving: bool,
    terminating: bool,
    /// The copy itself, for its zone and hints.
    endpoint: &'a SliceEndpoint,
}

impl Candidate<'_> {
    /// Replacement rule for duplicates: a non-terminating copy beats a
    /// terminating one (as kube-proxy does: a reused IP may belong to both a
    /// dying and a new pod), then a ready copy beats a not-ready one; on a
    /// full tie the first copy in slice-name order stays.
    fn beats(self, other: Candidate<'_>) -> bool {
        if self.terminating != other.terminating {
            return !self.terminating;
        }
        self.ready && !other.ready
    }
}

/// Nodes of one Service from all of its EndpointSlices (any order).
///
/// Each slice contributes its own ports × its endpoints: ports may differ
/// between slices of a service when a named targetPort resolves to different
/// numbers on different pods. Only IPv4/IPv6 slices are used (FQDN has no
/// defined meaning). An endpoint appearing more than once for the same port
/// key and number (transiently in two slices while the controller moves it)
/// is decided by one preferred copy. A port serves its ready endpoints; when
/// it has none (a rollout where every pod is shutting down), it serves the
/// ones still serving while terminating, as kube-proxy does, so connections
/// drain instead of failing.
pub fn slices_ports<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> PortNodes {
    slices_ports_with(slices, &Topology::default())
}

/// `slices_ports`, with each served node's zone and priority when `topology` is on (see `crate::topology`).
pub fn slices_ports_with<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    topology: &Topology,
) -> PortNodes {
    let mut ordered: Vec<&EndpointSlice> = slices.into_iter().collect();
    // Stable, so slices without names keep the caller's order.
    ordered.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut acc: BTreeMap<String, BTreeMap<Node, Candidate<'a>>> = BTreeMap::new();
    for slice in ordered {
        if !matches!(slice.address_type.as_deref(), Some("IPv4" | "IPv6")) {
            continue;
        }
        for p in items(&slice.ports) {
            let Some(port) = port_number(p.port) else {
                continue;
            };
            let copies = acc.entry(port_key(p.name.as_deref(), port)).or_default();
            for ep in items(&slice.endpoints) {
                // Consumers use addresses[0]; the controller writes exactly one.
                let Some(ip) = items(&ep.addresses).first().filter(|ip| is_ip_like(ip)) else {
                    continue;
                };
                let copy = Candidate {
                    ready: ep.is_ready(),
                    serving: ep.is_serving(),
                    terminating: ep.is_terminating(),
                    endpoint: ep,
                };
                let node = Node::new(ip.as_str(), port);
                match copies.entry(node) {
                    Entry::Vacant(v) => {
                        v.insert(copy);
                    }
                    Entry::Occupied(mut o) => {
                        if copy.beats(*o.get()) {
                            o.insert(copy);
                        }
                    }
                }
            }
        }
    }
    acc.into_iter()
        .map(|(key, copies)| {
            let has_ready = copies.values().any(|c| c.ready);
            let served = copies.into_iter().filter(|(_, c)| {
                if has_ready {
                    c.ready
                } else {
                    c.serving && c.terminating
                }
            });
            let nodes = if topology.is_on() {
                with_topology(served.collect(), topology)
            } else {
                served.map(|(n, _)| n).collect()
            };
            (key, nodes)
        })
        .collect()
}

/// The served nodes of one port with their zone and priority.
fn with_topology(served: Vec<(Node, Candidate<'_>)>, t: &Topology) -> Vec<Node> {
    let hints: Vec<Option<Vec<&str>>> = served
        .iter()
        .map(|(_, c)| c.endpoint.hint_zones())
        .collect();
    let placements: Vec<Placement<'_>> = served
        .iter()
        .zip(&hints)
        .map(|((_, c), h)| Placement {
            zone: c.endpoint.zone.as_deref(),
            hints: h.as_deref(),
        })
        .collect();
    let priorities = topology::priorities(t.mode, &t.zone, &placements);
    served
        .into_iter()
        .zip(priorities)
        .map(|((n, c), priority)| Node {
            topology: Some(NodeTopology {
                zone: c.endpoint.zone.clone().filter(|z| !z.is_empty()),
                priority,
            }),
            ..n
        })
        .collect()
}

#[cfg(test)]
mod tests;
