//! Wire encoding in the apiserver's field order.
//!
//! serde_json's `Map` is sorted unless the `preserve_order` feature is on, and enabling that
//! here would leak into the main crate through feature unification. So objects are kept as
//! sorted `Value`s and written out with the Go struct field order of the known types; unknown
//! keys follow in sorted order (which is also how Go encodes map keys, e.g. labels).

use crate::store::Kind;
use serde_json::Value;

/// Which Go type a JSON object corresponds to, to pick its field order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ctx {
    Object(Kind),
    ObjectMeta,
    ListMeta,
    OwnerRef,
    Status,
    StatusDetails,
    StatusCause,
    Subset,
    Address,
    CorePort,
    SliceEndpoint,
    Conditions,
    SlicePort,
    ObjectRef,
    Hints,
    /// Anything else: plain sorted keys all the way down.
    Plain,
}

fn key_order(ctx: Ctx) -> &'static [&'static str] {
    match ctx {
        Ctx::Object(Kind::Endpoints) => &["kind", "apiVersion", "metadata", "subsets"],
        Ctx::Object(Kind::EndpointSlice) => &[
            "kind",
            "apiVersion",
            "metadata",
            "addressType",
            "endpoints",
            "ports",
        ],
        Ctx::ObjectMeta => &[
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ],
        Ctx::ListMeta => &[
            "selfLink",
            "resourceVersion",
            "continue",
            "remainingItemCount",
        ],
        Ctx::OwnerRef => &[
            "apiVersion",
            "kind",
            "name",
            "uid",
            "controller",
            "blockOwnerDeletion",
        ],
        Ctx::Status => &[
            "kind",
            "apiVersion",
            "metadata",
            "status",
            "message",
            "reason",
            "details",
            "code",
        ],
        Ctx::StatusDetails => &[
            "name",
            "group",
            "kind",
            "uid",
            "causes",
            "retryAfterSeconds",
        ],
        Ctx::StatusCause => &["reason", "message", "field"],
        Ctx::Subset => &["addresses", "notReadyAddresses", "ports"],
        Ctx::Address => &["ip", "hostname", "nodeName", "targetRef"],
        Ctx::CorePort => &["name", "port", "protocol", "appProtocol"],
        Ctx::SliceEndpoint => &[
            "addresses",
            "conditions",
            "hostname",
            "targetRef",
            "nodeName",
            "zone",
            "hints",
            "deprecatedTopology",
        ],
        Ctx::Conditions => &["ready", "serving", "terminating"],
        Ctx::SlicePort => &["name", "protocol", "port", "appProtocol"],
        Ctx::ObjectRef => &[
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        ],
        Ctx::Hints => &["forZones", "forNodes"],
        Ctx::Plain => &[],
    }
}

/// The context of the value stored under `key` (for arrays: of each element).
fn child(ctx: Ctx, key: &str) -> Ctx {
    match (ctx, key) {
        (Ctx::Object(_), "metadata") => Ctx::ObjectMeta,
        (Ctx::Object(Kind::Endpoints), "subsets") => Ctx::Subset,
        (Ctx::Object(Kind::EndpointSlice), "endpoints") => Ctx::SliceEndpoint,
        (Ctx::Object(Kind::EndpointSlice), "ports") => Ctx::SlicePort,
        (Ctx::ObjectMeta, "ownerReferences") => Ctx::OwnerRef,
        (Ctx::Status, "metadata") => Ctx::ListMeta,
        (Ctx::Status, "details") => Ctx::StatusDetails,
        (Ctx::StatusDetails, "causes") => Ctx::StatusCause,
        (Ctx::Subset, "addresses" | "notReadyAddresses") => Ctx::Address,
        (Ctx::Subset, "ports") => Ctx::CorePort,
        (Ctx::Address | Ctx::SliceEndpoint, "targetRef") => Ctx::ObjectRef,
        (Ctx::SliceEndpoint, "conditions") => Ctx::Conditions,
        (Ctx::SliceEndpoint, "hints") => Ctx::Hints,
        _ => Ctx::Plain,
    }
}

/// Appends `v` encoded in the order of `ctx`.
pub fn write(out: &mut Vec<u8>, ctx: Ctx, v: &Value) {
    match v {
        Value::Object(map) => {
            out.push(b'{');
            let order = key_order(ctx);
            let mut first = true;
            let known = order.iter().filter_map(|k| map.get_key_value(*k));
            let rest = map.iter().filter(|(k, _)| !order.contains(&k.as_str()));
            for (k, val) in known.chain(rest) {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(out, k);
                out.push(b':');
                write(out, child(ctx, k), val);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, ctx, item);
            }
            out.push(b']');
        }
        scalar => {
            // Writing a scalar Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// Appends a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends a stored object (kept without kind/apiVersion), optionally with its type meta
/// first, as GET and watch events have it and LIST items do not.
pub fn write_object(out: &mut Vec<u8>, kind: Kind, obj: &Value, with_type_meta: bool) {
    let Value::Object(map) = obj else {
        write(out, Ctx::Plain, obj);
        return;
    };
    out.push(b'{');
    let mut first = true;
    if with_type_meta {
        out.extend_from_slice(b"\"kind\":");
        write_str(out, kind.name());
        out.extend_from_slice(b",\"apiVersion\":");
        write_str(out, kind.api_version());
        first = false;
    }
    let ctx = Ctx::Object(kind);
    let order = key_order(ctx);
    let known = order.iter().filter_map(|k| map.get_key_value(*k));
    let rest = map.iter().filter(|(k, _)| !order.contains(&k.as_str()));
    for (k, val) in known.chain(rest) {
        if k == "kind" || k == "apiVersion" {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, k);
        out.push(b':');
        write(out, child(ctx, k), val);
    }
    out.push(b'}');
}

/// Encodes a whole value to bytes.
pub fn to_vec(ctx: Ctx, v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, ctx, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slice_fields_in_go_order() {
        let obj = json!({
            "ports": [{"port": 80, "protocol": "TCP", "name": ""}],
            "metadata": {"resourceVersion": "5", "namespace": "ns", "name": "a"},
            "endpoints": null,
            "addressType": "IPv4",
            "zzz": 1
        });
        let mut out = Vec::new();
        write_object(&mut out, Kind::EndpointSlice, &obj, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"a","namespace":"ns","resourceVersion":"5"},"addressType":"IPv4","endpoints":null,"ports":[{"name":"","protocol":"TCP","port":80}],"zzz":1}"#
        );
    }

    #[test]
    fn status_order() {
        let v = json!({"code": 410, "reason": "Expired", "message": "m", "status": "Failure",
                       "metadata": {}, "apiVersion": "v1", "kind": "Status"});
        assert_eq!(
            String::from_utf8(to_vec(Ctx::Status, &v)).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"Expired","code":410}"#
        );
    }
}
