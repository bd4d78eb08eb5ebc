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
                    nodes.insert(Node {
                        host: ip.to_owned(),
                        port,
                    });
                }
            }
        }
    }
    finish(acc)
}

/// The state of one candidate copy of an endpoint during slice merging.
#[derive(Clone, Copy)]
struct Candidate {
    ready: bool,
    serving: bool,
    terminating: bool,
}

impl Candidate {
    /// Replacement rule for duplicates: a non-terminating copy beats a
    /// terminating one (as kube-proxy does: a reused IP may belong to both a
    /// dying and a new pod), then a ready copy beats a not-ready one; on a
    /// full tie the first copy in slice-name order stays.
    fn beats(self, other: Candidate) -> bool {
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
    let mut ordered: Vec<&EndpointSlice> = slices.into_iter().collect();
    // Stable, so slices without names keep the caller's order.
    ordered.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut acc: BTreeMap<String, BTreeMap<Node, Candidate>> = BTreeMap::new();
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
                };
                let node = Node {
                    host: ip.clone(),
                    port,
                };
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
            let ready: Vec<Node> = copies
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
            (key, served)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(host: &str, port: u16) -> Node {
        Node {
            host: host.into(),
            port,
        }
    }

    fn ep(v: serde_json::Value) -> Endpoints {
        serde_json::from_value(v).expect("valid Endpoints")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("valid EndpointSlice")
    }

    fn pn(entries: &[(&str, Vec<Node>)]) -> PortNodes {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    // ---- Endpoints ----

    #[test]
    fn endpoints_without_subsets_is_empty() {
        let e = ep(json!({"metadata": {"name": "empty-svc", "namespace": "shop"}}));
        assert_eq!(e.subsets, None);
        assert_eq!(endpoints_ports(&e), PortNodes::new());
        let e = ep(json!({"metadata": {"name": "x"}, "subsets": null}));
        assert_eq!(endpoints_ports(&e), PortNodes::new());
        let e = ep(json!({"metadata": {"name": "x"}, "subsets": []}));
        assert_eq!(endpoints_ports(&e), PortNodes::new());
    }

    #[test]
    fn endpoints_not_ready_only_keeps_port_known_and_empty() {
        let e = ep(json!({"subsets": [{
            "notReadyAddresses": [{"ip": "10.0.0.9"}],
            "ports": [{"name": "http", "port": 80}]
        }]}));
        assert_eq!(endpoints_ports(&e), pn(&[("http", vec![])]));
    }

    #[test]
    fn endpoints_ready_and_not_ready_in_one_subset() {
        let e = ep(json!({"subsets": [{
            "addresses": [{"ip": "10.0.0.1"}],
            "notReadyAddresses": [{"ip": "10.0.0.9"}],
            "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090}]
        }]}));
        assert_eq!(
            endpoints_ports(&e),
            pn(&[
                ("grpc", vec![n("10.0.0.1", 9090)]),
                ("http", vec![n("10.0.0.1", 80)]),
            ])
        );
    }

    #[test]
    fn endpoints_subsets_merge_by_port_name() {
        // Same name, different numbers in two subsets (named targetPort).
        let e = ep(json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}],
             "ports": [{"name": "p1", "port": 5001}]},
            {"addresses": [{"ip": "20.0.0.1"}],
             "ports": [{"name": "p1", "port": 5002}, {"name": "p2", "port": 6000}]}
        ]}));
        assert_eq!(
            endpoints_ports(&e),
            pn(&[
                (
                    "p1",
                    vec![
                        n("10.0.0.1", 5001),
                        n("10.0.0.2", 5001),
                        n("20.0.0.1", 5002)
                    ]
                ),
                ("p2", vec![n("20.0.0.1", 6000)]),
            ])
        );
    }

    #[test]
    fn endpoints_unnamed_port_is_keyed_by_number() {
        let e = ep(json!({"subsets": [{
            "addresses": [{"ip": "10.0.0.1"}],
            "ports": [{"port": 5001, "protocol": "TCP"}]
        }, {
            "addresses": [{"ip": "10.0.0.3"}],
            "ports": [{"name": "", "port": 5001}]
        }]}));
        assert_eq!(
            endpoints_ports(&e),
            pn(&[("5001", vec![n("10.0.0.1", 5001), n("10.0.0.3", 5001)])])
        );
    }

    #[test]
    fn endpoints_sort_as_strings_and_dedupe() {
        let e = ep(json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.10"}, {"ip": "10.0.0.2"}],
             "ports": [{"name": "http", "port": 80}]},
            {"addresses": [{"ip": "10.0.0.10"}, {"ip": "9.0.0.1"}],
             "ports": [{"name": "http", "port": 80}]}
        ]}));
        assert_eq!(
            endpoints_ports(&e),
            pn(&[(
                "http",
                vec![n("10.0.0.10", 80), n("10.0.0.2", 80), n("9.0.0.1", 80)]
            )])
        );
    }

    #[test]
    fn endpoints_invalid_ports_and_addresses_are_skipped() {
        let e = ep(json!({"subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {}, {"ip": ""}, {"ip": "web.example.com"},
                          {"ip": "fd00::1"}],
            "ports": [{"name": "zero", "port": 0}, {"name": "big", "port": 65536},
                      {"name": "neg", "port": -1}, {"name": "none"}, {"name": "ok", "port": 65535}]
        }]}));
        assert_eq!(
            endpoints_ports(&e),
            pn(&[("ok", vec![n("10.0.0.1", 65535), n("fd00::1", 65535)])])
        );
    }

    #[test]
    fn endpoints_subset_without_ports_contributes_nothing() {
        let e = ep(json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": null}]}));
        assert_eq!(endpoints_ports(&e), PortNodes::new());
    }

    #[test]
    fn endpoints_list_body_from_reference() {
        // kube-api.md §1.6, trimmed of nothing but the uid ellipses.
        let body = r#"{
          "kind": "EndpointsList", "apiVersion": "v1",
          "metadata": {"resourceVersion": "184467"},
          "items": [
            {"metadata": {"name": "web", "namespace": "shop", "uid": "5b1c9a4e",
                "resourceVersion": "184401", "creationTimestamp": "2026-07-01T10:00:00Z",
                "labels": {"app": "web"},
                "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-07-20T08:15:30.123456789Z"}},
             "subsets": [{
               "addresses": [
                 {"ip": "10.244.1.5", "nodeName": "node-a",
                  "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-abcde", "uid": "0d7c"}},
                 {"ip": "10.244.2.8", "hostname": "web-0", "nodeName": "node-b",
                  "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "9a1e"}}],
               "notReadyAddresses": [
                 {"ip": "10.244.3.12", "nodeName": "node-c",
                  "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-fghij", "uid": "77aa"}}],
               "ports": [
                 {"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"},
                 {"name": "grpc", "port": 9090, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}]},
            {"metadata": {"name": "empty-svc", "namespace": "shop", "uid": "x",
                "resourceVersion": "170001", "creationTimestamp": "2026-07-02T10:00:00Z"}}
          ]
        }"#;
        let list: List<Endpoints> = serde_json::from_str(body).expect("list parses");
        assert_eq!(list.kind.as_deref(), Some("EndpointsList"));
        assert_eq!(list.metadata.resource_version.as_deref(), Some("184467"));
        assert_eq!(list.metadata.next_page(), None);
        let items = list.items.expect("items");
        assert_eq!(items.len(), 2);
        let web = &items[0];
        assert_eq!(web.metadata.name.as_deref(), Some("web"));
        assert_eq!(web.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(web.metadata.resource_version.as_deref(), Some("184401"));
        assert_eq!(
            web.metadata.labels.as_ref().and_then(|l| l.get("app")),
            Some(&"web".to_string())
        );
        assert_eq!(
            endpoints_ports(web),
            pn(&[
                ("grpc", vec![n("10.244.1.5", 9090), n("10.244.2.8", 9090)]),
                ("http", vec![n("10.244.1.5", 8080), n("10.244.2.8", 8080)]),
            ])
        );
        assert_eq!(endpoints_ports(&items[1]), PortNodes::new());

        // The same body item by item.
        let raw: List<serde_json::Value> = serde_json::from_str(body).expect("raw list");
        assert_eq!(raw.items.map(|i| i.len()), Some(2));
    }

    // ---- EndpointSlices ----

    fn s(name: &str, endpoints: serde_json::Value, ports: serde_json::Value) -> EndpointSlice {
        slice(json!({
            "metadata": {"name": name, "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }))
    }

    fn e(ip: &str, cond: serde_json::Value) -> serde_json::Value {
        json!({"addresses": [ip], "conditions": cond})
    }

    #[test]
    fn slice_null_missing_and_empty_endpoints_keep_ports_known() {
        let http = json!([{"name": "http", "port": 80}]);
        for endpoints in [json!(null), json!([])] {
            let sl = s("a", endpoints, http.clone());
            assert_eq!(slices_ports([&sl]), pn(&[("http", vec![])]));
        }
        let missing = slice(json!({"metadata": {"name": "a"}, "addressType": "IPv4",
                                   "ports": [{"name": "http", "port": 80}]}));
        assert_eq!(missing.endpoints, None);
        assert_eq!(slices_ports([&missing]), pn(&[("http", vec![])]));
    }

    #[test]
    fn slice_null_or_missing_ports_contribute_nothing() {
        let eps = json!([e("10.0.0.1", json!({"ready": true}))]);
        for ports in [json!(null), json!([])] {
            let sl = s("a", eps.clone(), ports);
            assert_eq!(slices_ports([&sl]), PortNodes::new());
        }
        let missing = slice(json!({"addressType": "IPv4", "endpoints": eps}));
        assert_eq!(slices_ports([&missing]), PortNodes::new());
        assert_eq!(slices_ports(std::iter::empty()), PortNodes::new());
    }

    #[test]
    fn slice_conditions_defaults() {
        let sl = s(
            "a",
            json!([
                {"addresses": ["10.0.0.1"]},                       // no conditions
                e("10.0.0.2", json!({})),                          // ready nil
                e("10.0.0.3", json!({"ready": null})),             // ready null
                e("10.0.0.4", json!({"ready": false, "serving": true})),
                e("10.0.0.5", json!({"ready": true})),
                e("10.0.0.6", json!({"ready": false, "terminating": true})),
            ]),
            json!([{"name": "http", "port": 80}]),
        );
        assert_eq!(
            slices_ports([&sl]),
            pn(&[(
                "http",
                vec![
                    n("10.0.0.1", 80),
                    n("10.0.0.2", 80),
                    n("10.0.0.3", 80),
                    n("10.0.0.5", 80)
                ]
            )])
        );
        let only_not_ready = s(
            "b",
            json!([e("10.0.0.4", json!({"ready": false}))]),
            json!([{"name": "http", "port": 80}]),
        );
        assert_eq!(slices_ports([&only_not_ready]), pn(&[("http", vec![])]));
    }

    #[test]
    fn a_port_without_ready_endpoints_serves_the_terminating_ones_still_serving() {
        let ports = json!([{"name": "http", "port": 80}]);
        let draining = |ready_one: bool| {
            s(
                "a",
                json!([
                    e(
                        "10.0.0.1",
                        json!({"ready": false, "serving": true, "terminating": true})
                    ),
                    e("10.0.0.2", json!({"ready": false, "terminating": true})), // serving nil: true
                    e(
                        "10.0.0.3",
                        json!({"ready": false, "serving": false, "terminating": true})
                    ),
                    e(
                        "10.0.0.4",
                        json!({"ready": false, "serving": true, "terminating": false})
                    ),
                    e("10.0.0.5", json!({"ready": ready_one})),
                ]),
                ports.clone(),
            )
        };
        // Every pod is shutting down: drain through those still serving.
        assert_eq!(
            slices_ports([&draining(false)]),
            pn(&[("http", vec![n("10.0.0.1", 80), n("10.0.0.2", 80)])])
        );
        // One ready endpoint is enough: the terminating ones are not served.
        assert_eq!(
            slices_ports([&draining(true)]),
            pn(&[("http", vec![n("10.0.0.5", 80)])])
        );
    }

    #[test]
    fn slice_endpoint_without_address_is_skipped() {
        let sl = s(
            "a",
            json!([{"addresses": []}, {"addresses": null}, {},
                   {"addresses": ["10.0.0.1", "10.0.0.99"]}]),
            json!([{"name": "http", "port": 80}]),
        );
        assert_eq!(
            slices_ports([&sl]),
            pn(&[("http", vec![n("10.0.0.1", 80)])])
        );
    }

    #[test]
    fn slice_terminating_copy_loses_in_both_orders() {
        let ports = json!([{"name": "http", "port": 80}]);
        // A terminating (but, oddly, still ready) copy and a new not-ready copy:
        // the non-terminating copy is preferred, so the node is not served.
        let dying = json!([e("10.0.0.1", json!({"ready": true, "terminating": true}))]);
        let fresh = json!([e("10.0.0.1", json!({"ready": false, "terminating": false}))]);
        for (first, second) in [(&dying, &fresh), (&fresh, &dying)] {
            let a = s("a", first.clone(), ports.clone());
            let b = s("b", second.clone(), ports.clone());
            assert_eq!(slices_ports([&a, &b]), pn(&[("http", vec![])]));
            assert_eq!(slices_ports([&b, &a]), pn(&[("http", vec![])]));
        }
        // And the common case: terminating not-ready vs fresh ready ⇒ served.
        let dying = json!([e("10.0.0.1", json!({"ready": false, "terminating": true}))]);
        let fresh = json!([e("10.0.0.1", json!({"ready": true}))]);
        for (first, second) in [(&dying, &fresh), (&fresh, &dying)] {
            let a = s("a", first.clone(), ports.clone());
            let b = s("b", second.clone(), ports.clone());
            let want = pn(&[("http", vec![n("10.0.0.1", 80)])]);
            assert_eq!(slices_ports([&a, &b]), want);
            assert_eq!(slices_ports([&b, &a]), want);
        }
    }

    #[test]
    fn slice_duplicate_tie_prefers_ready() {
        let ports = json!([{"name": "http", "port": 80}]);
        let not_ready = s(
            "a",
            json!([e("10.0.0.1", json!({"ready": false}))]),
            ports.clone(),
        );
        let ready = s("b", json!([e("10.0.0.1", json!({"ready": true}))]), ports);
        let want = pn(&[("http", vec![n("10.0.0.1", 80)])]);
        assert_eq!(slices_ports([&not_ready, &ready]), want);
        assert_eq!(slices_ports([&ready, &not_ready]), want);
    }

    #[test]
    fn slice_both_terminating_ready_copy_wins() {
        let ports = json!([{"name": "http", "port": 80}]);
        let a = s(
            "a",
            json!([e("10.0.0.1", json!({"ready": false, "terminating": true}))]),
            ports.clone(),
        );
        let b = s(
            "b",
            json!([e("10.0.0.1", json!({"ready": true, "terminating": true}))]),
            ports,
        );
        assert_eq!(
            slices_ports([&b, &a]),
            pn(&[("http", vec![n("10.0.0.1", 80)])])
        );
    }

    #[test]
    fn slice_duplicates_dedupe_across_slices() {
        let ports = json!([{"name": "http", "port": 80}]);
        let a = s(
            "web-a",
            json!([
                e("10.0.0.1", json!({"ready": true})),
                e("10.0.0.2", json!({"ready": true}))
            ]),
            ports.clone(),
        );
        let b = s(
            "web-b",
            json!([
                e("10.0.0.2", json!({"ready": true})),
                e("10.0.0.3", json!({"ready": true}))
            ]),
            ports,
        );
        assert_eq!(
            slices_ports([&b, &a]),
            pn(&[(
                "http",
                vec![n("10.0.0.1", 80), n("10.0.0.2", 80), n("10.0.0.3", 80)]
            )])
        );
    }

    #[test]
    fn slice_ipv6_served_and_fqdn_ignored() {
        let v6 = slice(json!({
            "metadata": {"name": "web-v6"}, "addressType": "IPv6",
            "endpoints": [{"addresses": ["fd00:10:244::5"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080}]
        }));
        let fqdn = slice(json!({
            "metadata": {"name": "web-fqdn"}, "addressType": "FQDN",
            "endpoints": [{"addresses": ["web.example.com"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080}, {"name": "only-fqdn", "port": 1}]
        }));
        let v4 = s(
            "web-v4",
            json!([e("10.0.0.1", json!({"ready": true}))]),
            json!([{"name": "http", "port": 8080}]),
        );
        let unknown = slice(json!({
            "metadata": {"name": "web-x"}, "addressType": "",
            "endpoints": [{"addresses": ["10.9.9.9"]}],
            "ports": [{"name": "http", "port": 8080}]
        }));
        assert_eq!(
            slices_ports([&fqdn, &v6, &v4, &unknown]),
            pn(&[("http", vec![n("10.0.0.1", 8080), n("fd00:10:244::5", 8080)])])
        );
        assert_eq!(slices_ports([&fqdn]), PortNodes::new());
    }

    #[test]
    fn slice_port_null_is_skipped() {
        let sl = s(
            "a",
            json!([e("10.0.0.1", json!({"ready": true}))]),
            json!([{"name": "all", "port": null}, {"name": "", "port": 9090},
                   {"name": "zero", "port": 0}]),
        );
        assert_eq!(
            slices_ports([&sl]),
            pn(&[("9090", vec![n("10.0.0.1", 9090)])])
        );
        let unnamed = s(
            "b",
            json!([e("10.0.0.1", json!({"ready": true}))]),
            json!([{"port": 9090}]),
        );
        assert_eq!(
            slices_ports([&unnamed]),
            pn(&[("9090", vec![n("10.0.0.1", 9090)])])
        );
    }

    #[test]
    fn slice_multi_slice_aggregation() {
        // kubernetes4.t: 3 endpoints in slice1, 2 more in slice2 ⇒ 5.
        let ports = json!([{"name": "p1", "port": 5001}]);
        let s1 = s(
            "service-a-epslice1",
            json!([
                e("10.0.0.1", json!({"ready": true})),
                e("10.0.0.2", json!({"ready": true})),
                e("10.0.0.3", json!({"ready": true}))
            ]),
            ports.clone(),
        );
        let s2 = s(
            "service-a-epslice2",
            json!([
                e("10.0.0.4", json!({"ready": true})),
                e("10.0.0.5", json!({"ready": true}))
            ]),
            ports,
        );
        let all = slices_ports([&s2, &s1]);
        assert_eq!(all.get("p1").map(Vec::len), Some(5));
        assert_eq!(
            all.get("p1").and_then(|v| v.first()),
            Some(&n("10.0.0.1", 5001))
        );
        assert_eq!(slices_ports([&s1]).get("p1").map(Vec::len), Some(3));
    }

    #[test]
    fn slice_ports_differ_per_slice() {
        // One port name resolving to different numbers in different slices:
        // each slice's endpoints get that slice's numbers only.
        let a = s(
            "a",
            json!([e("10.0.0.1", json!({"ready": true}))]),
            json!([{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]),
        );
        let b = s(
            "b",
            json!([e("10.0.0.2", json!({"ready": true}))]),
            json!([{"name": "http", "port": 8081}]),
        );
        assert_eq!(
            slices_ports([&a, &b]),
            pn(&[
                ("http", vec![n("10.0.0.1", 8080), n("10.0.0.2", 8081)]),
                ("metrics", vec![n("10.0.0.1", 9100)]),
            ])
        );
        // The same IP on both numbers is two distinct nodes.
        let c = s(
            "c",
            json!([e("10.0.0.1", json!({"ready": true}))]),
            json!([{"name": "http", "port": 8081}]),
        );
        assert_eq!(
            slices_ports([&a, &c]).get("http"),
            Some(&vec![n("10.0.0.1", 8080), n("10.0.0.1", 8081)])
        );
    }

    #[test]
    fn slice_list_body_from_reference() {
        // kube-api.md §1.7.
        let body = r#"{
          "kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
          "metadata": {"resourceVersion": "184467", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTg0NDY3LCJzdGFydCI6InNob3Avd2ViLWFiYzEyXHUwMDAwIn0", "remainingItemCount": 1},
          "items": [
            {"metadata": {"name": "web-abc12", "generateName": "web-", "namespace": "shop", "uid": "c3e0",
                "resourceVersion": "184401", "generation": 7, "creationTimestamp": "2026-07-01T10:00:01Z",
                "labels": {"app": "web", "kubernetes.io/service-name": "web",
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-07-20T08:15:30Z"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "1f2e",
                                     "controller": true, "blockOwnerDeletion": true}]},
             "addressType": "IPv4",
             "endpoints": [
               {"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-abcde", "uid": "0d7c"},
                "nodeName": "node-a", "zone": "us-east-1a", "hints": {"forZones": [{"name": "us-east-1a"}]}},
               {"addresses": ["10.244.3.12"], "conditions": {"ready": false, "serving": true, "terminating": true},
                "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-fghij", "uid": "77aa"},
                "nodeName": "node-c", "zone": "us-east-1c"},
               {"addresses": ["10.244.2.8"], "conditions": {"ready": true, "serving": true, "terminating": false},
                "hostname": "web-0",
                "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "9a1e"},
                "nodeName": "node-b", "zone": "us-east-1b"}],
             "ports": [
               {"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
               {"name": "", "protocol": "TCP", "port": 9090}]},
            {"metadata": {"name": "idle-x7k2p", "generateName": "idle-", "namespace": "shop", "uid": "u",
                "resourceVersion": "170010", "generation": 1, "creationTimestamp": "2026-07-02T10:00:00Z",
                "labels": {"kubernetes.io/service-name": "idle",
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
             "addressType": "IPv4", "endpoints": null, "ports": null}
          ]
        }"#;
        let list: List<EndpointSlice> = serde_json::from_str(body).expect("list parses");
        assert_eq!(list.kind.as_deref(), Some("EndpointSliceList"));
        assert_eq!(list.api_version.as_deref(), Some("discovery.k8s.io/v1"));
        assert_eq!(list.metadata.resource_version.as_deref(), Some("184467"));
        assert_eq!(list.metadata.remaining_item_count, Some(1));
        assert!(
            list.metadata
                .next_page()
                .is_some_and(|c| c.starts_with("eyJ2Ij"))
        );
        let items = list.items.expect("items");
        assert_eq!(items.len(), 2);
        let web = &items[0];
        assert_eq!(slice_service_name(web), Some("web"));
        assert_eq!(web.address_type.as_deref(), Some("IPv4"));
        assert_eq!(
            slices_ports([web]),
            pn(&[
                ("9090", vec![n("10.244.1.5", 9090), n("10.244.2.8", 9090)]),
                ("http", vec![n("10.244.1.5", 8080), n("10.244.2.8", 8080)]),
            ])
        );
        let idle = &items[1];
        assert_eq!(slice_service_name(idle), Some("idle"));
        assert_eq!(idle.endpoints, None);
        assert_eq!(idle.ports, None);
        assert_eq!(slices_ports([idle]), PortNodes::new());
    }

    #[test]
    fn slice_service_name_label() {
        let with = |labels: serde_json::Value| slice(json!({"metadata": {"labels": labels}}));
        assert_eq!(
            slice_service_name(&with(json!({"kubernetes.io/service-name": "web"}))),
            Some("web")
        );
        assert_eq!(
            slice_service_name(&with(json!({"kubernetes.io/service-name": ""}))),
            None
        );
        assert_eq!(slice_service_name(&with(json!({"app": "web"}))), None);
        assert_eq!(slice_service_name(&with(json!(null))), None);
        assert_eq!(slice_service_name(&EndpointSlice::default()), None);
    }

    #[test]
    fn service_key_format() {
        assert_eq!(service_key("ns-a", "ep"), "ns-a/ep");
    }

    // ---- watch stream ----

    #[test]
    fn bookmark_shapes_from_reference() {
        let lines = [
            (
                r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"184630"},"addressType":"","endpoints":null,"ports":null}}"#,
                "184630",
                false,
            ),
            (
                r#"{"type":"BOOKMARK","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"resourceVersion":"184500"}}}"#,
                "184500",
                false,
            ),
            (
                r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"184500","creationTimestamp":null},"addressType":"","endpoints":null,"ports":null}}"#,
                "184500",
                false,
            ),
            (
                r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"184467","annotations":{"k8s.io/initial-events-end":"true"}},"addressType":"","endpoints":null,"ports":null}}"#,
                "184467",
                true,
            ),
        ];
        for (line, rv, end) in lines {
            let ev: WatchEvent = serde_json::from_str(line).expect("event parses");
            assert_eq!(ev.type_, "BOOKMARK");
            let b: Bookmark = serde_json::from_str(ev.object_text()).expect("bookmark parses");
            assert_eq!(b.resource_version(), Some(rv), "{line}");
            assert_eq!(b.is_initial_events_end(), end, "{line}");
            // The slice-shaped bookmark also parses as a (contentless) slice.
            if line.contains("EndpointSlice") {
                let s: EndpointSlice =
                    serde_json::from_str(ev.object_text()).expect("slice parses");
                assert_eq!(slices_ports([&s]), PortNodes::new());
            }
        }
        let b: Bookmark = serde_json::from_str(r#"{"metadata":null}"#).expect("null metadata");
        assert_eq!(b.resource_version(), None);
        let b: Bookmark =
            serde_json::from_str(r#"{"metadata":{"resourceVersion":""}}"#).expect("empty rv");
        assert_eq!(b.resource_version(), None);
    }

    #[test]
    fn watch_event_lines_from_reference() {
        let added = r#"{"type":"ADDED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"web-abc12","generateName":"web-","namespace":"shop","uid":"c3e0a1b2-0000-4000-8000-000000000001","resourceVersion":"184468","generation":1,"creationTimestamp":"2026-07-20T08:15:30Z","labels":{"kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},"addressType":"IPv4","endpoints":[{"addresses":["10.244.1.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"targetRef":{"kind":"Pod","namespace":"shop","name":"web-7d9f-abcde","uid":"0d7c0000-0000-4000-8000-000000000002"},"nodeName":"node-a","zone":"us-east-1a"}],"ports":[{"name":"http","protocol":"TCP","port":8080}]}}"#;
        let ev: WatchEvent = serde_json::from_str(added).expect("parses");
        assert_eq!(ev.type_, "ADDED");
        let s: EndpointSlice = serde_json::from_str(ev.object_text()).expect("slice");
        assert_eq!(s.metadata.resource_version.as_deref(), Some("184468"));
        assert_eq!(
            slices_ports([&s]),
            pn(&[("http", vec![n("10.244.1.5", 8080)])])
        );

        let deleted = r#"{"type":"DELETED","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"web","namespace":"shop","uid":"5b1c","resourceVersion":"184700","creationTimestamp":"2026-07-01T10:00:00Z"},"subsets":[{"addresses":[{"ip":"10.244.1.5"}],"ports":[{"port":8080,"protocol":"TCP"}]}]}}"#;
        let ev: WatchEvent = serde_json::from_str(deleted).expect("parses");
        assert_eq!(ev.type_, "DELETED");
        let e: Endpoints = serde_json::from_str(ev.object_text()).expect("endpoints");
        assert_eq!(e.metadata.resource_version.as_deref(), Some("184700"));
        assert_eq!(
            endpoints_ports(&e),
            pn(&[("8080", vec![n("10.244.1.5", 8080)])])
        );

        assert!(serde_json::from_str::<WatchEvent>(r#"{"object":{}}"#).is_err());
        let ev: WatchEvent = serde_json::from_str(r#"{"type":"ADDED"}"#).expect("no object");
        assert!(ev.object.is_none());
    }

    #[test]
    fn status_410_error_event() {
        let line = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 184000 (184321)","reason":"Expired","code":410}}"#;
        let ev: WatchEvent = serde_json::from_str(line).expect("parses");
        assert_eq!(ev.type_, "ERROR");
        let st: Status = serde_json::from_str(ev.object_text()).expect("status");
        assert_eq!(st.code, Some(410));
        assert_eq!(st.reason.as_deref(), Some("Expired"));
        assert_eq!(
            st.message.as_deref(),
            Some("too old resource version: 184000 (184321)")
        );
        assert_eq!(st.metadata, Some(ListMeta::default()));
        assert!(st.is_expired());
        assert_eq!(st.retry_after(), None);
    }

    #[test]
    fn status_expired_continue_token_body() {
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{"continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0Ijoic2hvcC93ZWItYWJjMTJcdTAwMDAifQ"},"status":"Failure","message":"The provided continue parameter is too old to display a consistent list result.","reason":"Expired","code":410}"#;
        let st: Status = serde_json::from_str(body).expect("parses");
        assert!(st.is_expired());
        assert_eq!(
            st.metadata.as_ref().and_then(ListMeta::next_page),
            Some(
                "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0Ijoic2hvcC93ZWItYWJjMTJcdTAwMDAifQ"
            )
        );
    }

    #[test]
    fn status_retry_after_and_other_codes() {
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: Too large resource version: 200000, current: 184467","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}"#;
        let st: Status = serde_json::from_str(body).expect("parses");
        assert_eq!(st.code, Some(504));
        assert!(!st.is_expired());
        assert_eq!(st.retry_after(), Some(std::time::Duration::from_secs(1)));
        let gone: Status = serde_json::from_str(r#"{"reason":"Gone"}"#).expect("parses");
        assert!(gone.is_expired());
        let neg: Status =
            serde_json::from_str(r#"{"details":{"retryAfterSeconds":-3}}"#).expect("parses");
        assert_eq!(neg.retry_after(), None);
        let unauthorized: Status = serde_json::from_str(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
        )
        .expect("parses");
        assert_eq!(unauthorized.code, Some(401));
        assert!(!unauthorized.is_expired());
    }

    #[test]
    fn lenient_nulls_everywhere() {
        let e = ep(json!({"metadata": null, "subsets": [{"addresses": null,
            "notReadyAddresses": null, "ports": null}]}));
        assert_eq!(e.metadata, ObjectMeta::default());
        assert_eq!(endpoints_ports(&e), PortNodes::new());
        let list: List<Endpoints> =
            serde_json::from_str(r#"{"metadata":null,"items":null}"#).expect("parses");
        assert_eq!(list.items, None);
        let list: List<Endpoints> = serde_json::from_str(r#"{}"#).expect("parses");
        assert_eq!(list.metadata, ListMeta::default());
        let sl = slice(json!({"metadata": {"labels": null, "annotations": null},
            "endpoints": [{"conditions": null}]}));
        assert_eq!(slices_ports([&sl]), PortNodes::new());
    }

    #[test]
    fn ip_like_check() {
        for ok in [
            "10.0.0.1",
            "fd00::1",
            "::1",
            "010.000.000.001",
            "FD00::A",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_ip_like(ok), "{ok}");
        }
        for bad in [
            "",
            "web",
            "abc",
            "1234",
            "10.0.0.1 ",
            "10.0.0.1\n",
            "a.example.com",
            "[::1]",
        ] {
            assert!(!is_ip_like(bad), "{bad:?}");
        }
    }

    #[test]
    fn one_rule_for_gone_and_for_retry_hints() {
        assert!(is_gone(Some(410), ""));
        assert!(is_gone(None, "Expired") && is_gone(Some(500), "Gone"));
        assert!(!is_gone(Some(504), "Timeout"));
        // A hint of zero (or less) is no hint, whether from a header or a Status body.
        assert_eq!(retry_hint(0), None);
        assert_eq!(retry_hint(-3), None);
        assert_eq!(retry_hint(3), Some(std::time::Duration::from_secs(3)));
    }

    #[test]
    fn the_service_of_a_truncated_object_comes_from_its_metadata() {
        let line = br#"{"type":"ADDED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"web-x","namespace":"shop","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","endpoints":[{"addresses":["10.0"#;
        assert_eq!(
            Resource::EndpointSlices.service_of_prefix(line),
            Some(("shop".into(), "web".into()))
        );
        assert_eq!(
            Resource::Endpoints.service_of_prefix(line),
            Some(("shop".into(), "web-x".into()))
        );
        // Cut inside the metadata: unknown.
        assert_eq!(
            Resource::EndpointSlices.service_of_prefix(&line[..110]),
            None
        );
        assert_eq!(
            Resource::Endpoints.service_of_prefix(b"{\"type\":\"ADDED\""),
            None
        );
    }
}
