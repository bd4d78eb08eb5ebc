//! Kubernetes wire types (the few fields we read), the dense form the watcher keeps of each watched object, and
//! its conversion to upstream nodes.
//!
//! Watched objects are parsed straight from their JSON text (`wire`, borrowing strings) into the dense form
//! (`dense`); no tree or per-endpoint string is ever built. `nodes` turns dense objects into canonical nodes.

use std::collections::BTreeMap;

use serde::Deserialize;

use wire::null_as_default;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Annotation on the bookmark that ends a streaming list's initial events.
pub const INITIAL_EVENTS_END_ANNOTATION: &str = "k8s.io/initial-events-end";

/// `metadata` of a bookmark: its resourceVersion, and the annotation that ends a streaming list's initial events.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct BookmarkMeta {
    pub resource_version: Option<String>,
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
    /// parsed, as strictly as `Object::parse` reads it: names objects that do not parse, or are too large to.
    pub fn service_of(self, json: &str) -> Option<(String, String)> {
        #[derive(serde::Deserialize)]
        struct MetadataOnly<'a> {
            #[serde(borrow)]
            metadata: wire::Meta<'a>,
        }
        let meta = serde_json::from_str::<MetadataOnly>(json).ok()?.metadata;
        self.service_in(Meta::of(&meta))
    }

    /// Like `service_of`, from the first bytes of an object too large to hold whole: the API server writes
    /// `metadata` before the addresses, so its first `"metadata":` key is the object's.
    pub fn service_of_prefix(self, prefix: &[u8]) -> Option<(String, String)> {
        const KEY: &[u8] = b"\"metadata\":";
        let at = prefix.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
        let meta = serde_json::Deserializer::from_slice(&prefix[at..])
            .into_iter::<wire::Meta>()
            .next()?
            .ok()?;
        self.service_in(Meta::of(&meta))
    }

    fn service_in(self, meta: Meta) -> Option<(String, String)> {
        let ns = meta.namespace?;
        let name = match self {
            Resource::Endpoints => meta.name?,
            Resource::EndpointSlices => meta.service?,
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

/// One watched object, parsed.
pub enum Object {
    Endpoints(Endpoints),
    Slice(EndpointSlice),
}

impl Object {
    /// Parses an object of `resource` from its JSON text straight into its dense form; with `placed`, slices keep
    /// where their endpoints run (see `EndpointSlice::parse`).
    pub fn parse(
        resource: Resource,
        json: &str,
        placed: bool,
    ) -> Result<Object, serde_json::Error> {
        Ok(match resource {
            Resource::Endpoints => Object::Endpoints(Endpoints::parse(json)?),
            Resource::EndpointSlices => Object::Slice(EndpointSlice::parse(json, placed)?),
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

/// The metadata of a watched object that says where it belongs; read once, not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    /// The `kubernetes.io/service-name` label (EndpointSlices), non-empty.
    pub service: Option<String>,
}

impl Meta {
    fn of(m: &wire::Meta<'_>) -> Meta {
        let text = |t: &Option<wire::Str<'_>>| t.as_deref().map(str::to_owned);
        Meta {
            name: text(&m.name),
            namespace: text(&m.namespace),
            resource_version: text(&m.resource_version),
            service: text(&m.labels.0).filter(|s| !s.is_empty()),
        }
    }
}

/// A core/v1 Endpoints object: where it belongs, and its subsets as kept.
pub struct Endpoints {
    pub metadata: Meta,
    pub subsets: Subsets,
}

/// The subsets of an Endpoints object, as the watcher keeps them: ports and ready addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subsets(Box<[dense::Subset]>);

impl Endpoints {
    pub fn parse(json: &str) -> Result<Endpoints, serde_json::Error> {
        let w: wire::Endpoints = serde_json::from_str(json)?;
        Ok(Endpoints {
            metadata: Meta::of(&w.metadata),
            subsets: Subsets(wire::items(&w.subsets).iter().map(dense::subset).collect()),
        })
    }
}

impl AsRef<Subsets> for Endpoints {
    fn as_ref(&self) -> &Subsets {
        &self.subsets
    }
}

impl AsRef<Subsets> for Subsets {
    fn as_ref(&self) -> &Subsets {
        self
    }
}

/// A discovery.k8s.io/v1 EndpointSlice: where it belongs, and its content as kept.
pub struct EndpointSlice {
    pub metadata: Meta,
    pub slice: Slice,
}

/// An EndpointSlice as the watcher keeps it: its name (slices of a service merge in name order), its usable
/// ports, its endpoints packed and, only when a topology mode needs them, where they run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slice {
    name: Box<str>,
    ports: Box<[dense::Port]>,
    endpoints: dense::Addresses,
    placements: Option<Box<dense::Placements>>,
}

impl EndpointSlice {
    /// Parses a slice; with `placed`, each endpoint's zone and hints are kept too (a topology mode needs them).
    pub fn parse(json: &str, placed: bool) -> Result<EndpointSlice, serde_json::Error> {
        let w: wire::EndpointSlice = serde_json::from_str(json)?;
        let (endpoints, placements) = dense::slice_endpoints(&w, placed);
        // A slice of another address type serves nothing, not even a known port.
        let ports = if endpoints_usable(&w) {
            dense::ports(&w.ports)
        } else {
            Box::default()
        };
        let metadata = Meta::of(&w.metadata);
        Ok(EndpointSlice {
            slice: Slice {
                name: metadata.name.as_deref().unwrap_or_default().into(),
                ports,
                endpoints,
                placements: placements.map(Box::new),
            },
            metadata,
        })
    }
}

/// Only IPv4 and IPv6 slices serve: FQDN has no defined meaning for an upstream.
fn endpoints_usable(w: &wire::EndpointSlice<'_>) -> bool {
    matches!(w.address_type.as_deref(), Some("IPv4" | "IPv6"))
}

impl Slice {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRef<Slice> for EndpointSlice {
    fn as_ref(&self) -> &Slice {
        &self.slice
    }
}

impl AsRef<Slice> for Slice {
    fn as_ref(&self) -> &Slice {
        self
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
    pub metadata: BookmarkMeta,
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

#[cfg(test)]
mod tests;

mod dense;
mod nodes;
mod wire;

pub use nodes::{endpoints_ports, slices_ports, slices_ports_with};
