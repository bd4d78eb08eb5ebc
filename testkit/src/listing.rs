//! LIST pages: scanning a key range, continue tokens, and the list JSON envelope.

use crate::json_out::{self, Ctx};
use crate::selectors::Filter;
use crate::store::{Kind, ObjectMap};
use crate::util;
use serde_json::{Value, json};
use std::sync::Arc;

/// One page of a LIST.
pub struct Page {
    pub items: Vec<Arc<Value>>,
    /// Start key of the next page (last key + NUL), when more matching items remain.
    pub next_start: Option<String>,
    /// Items after this page (meaningful only without selectors).
    pub remaining: usize,
}

/// Scans `map` from `start` within the namespace, keeping up to `limit` matching items
/// (0 = all).
pub fn page(map: &ObjectMap, filter: &Filter, start: &str, limit: usize) -> Page {
    let prefix = filter.namespace.as_ref().map(|ns| format!("{ns}/"));
    let lower = match &prefix {
        Some(p) if p.as_str() > start => p.clone(),
        _ => start.to_string(),
    };
    let mut items = Vec::new();
    let mut last_key: Option<&String> = None;
    let mut remaining = 0;
    let mut more = false;
    let count_rest = !filter.has_selector();
    for (k, obj) in map.range(lower..) {
        if prefix.as_ref().is_some_and(|p| !k.starts_with(p.as_str())) {
            break;
        }
        if !filter.matches(obj) {
            continue;
        }
        if limit == 0 || items.len() < limit {
            items.push(obj.clone());
            last_key = Some(k);
        } else {
            more = true;
            if !count_rest {
                break;
            }
            remaining += 1;
        }
    }
    let next_start = if more {
        last_key.map(|k| format!("{k}\u{0}"))
    } else {
        None
    };
    Page {
        items,
        next_start,
        remaining,
    }
}

/// base64url(JSON {"v","rv","start"}), the apiserver's token layout (clients treat it as
/// opaque); rv -1 means "continue from the latest state, inconsistently".
pub fn encode_token(rv: i64, start: &str) -> String {
    let v = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    util::base64url_encode(v.to_string().as_bytes())
}

/// Decodes a token into (rv, start key); the error is the 400 message.
pub fn decode_token(token: &str) -> Result<(i64, String), String> {
    let bad = |why: &str| format!("invalid continue token: {why}");
    let raw = util::base64url_decode(token).ok_or_else(|| bad("not base64url"))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad("not JSON"))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(bad("unknown version"));
    }
    let rv = v
        .get("rv")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no resource version"))?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no start key"))?;
    if start.is_empty() || start.starts_with('/') || start.contains("..") {
        return Err(bad("invalid start key"));
    }
    Ok((rv, start.to_string()))
}

/// The `{"kind":"...List",...,"items":[...]}` body; items carry no kind/apiVersion.
pub fn render(kind: Kind, rv: u64, page: &Page, token: Option<&str>, filter: &Filter) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + page.items.len() * 512);
    out.extend_from_slice(b"{\"kind\":");
    json_out::write_str(&mut out, kind.list_kind());
    out.extend_from_slice(b",\"apiVersion\":");
    json_out::write_str(&mut out, kind.api_version());
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(t) = token {
        meta["continue"] = json!(t);
        if !filter.has_selector() && page.remaining > 0 {
            meta["remainingItemCount"] = json!(page.remaining);
        }
    }
    out.extend_from_slice(b",\"metadata\":");
    json_out::write(&mut out, Ctx::ListMeta, &meta);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_out::write_object(&mut out, kind, item, false);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let t = encode_token(184467, "shop/web-abc12\u{0}");
        assert_eq!(
            decode_token(&t).unwrap(),
            (184467, "shop/web-abc12\u{0}".to_string())
        );
        assert!(decode_token("!!!").is_err());
        assert!(
            decode_token(&util::base64url_encode(
                b"{\"v\":\"x\",\"rv\":1,\"start\":\"a\"}"
            ))
            .is_err()
        );
    }

    #[test]
    fn pages_in_key_order() {
        let mut m = ObjectMap::new();
        for k in ["a/x", "a-b/y", "b/z"] {
            let (ns, name) = k.split_once('/').unwrap();
            m.insert(
                k.into(),
                Arc::new(json!({"metadata": {"namespace": ns, "name": name}})),
            );
        }
        let f = Filter::default();
        let p = page(&m, &f, "", 1);
        assert_eq!(
            p.items[0]["metadata"]["name"], "y",
            "etcd order puts a-b/ before a/"
        );
        assert_eq!(p.remaining, 2);
        let p2 = page(&m, &f, p.next_start.as_deref().unwrap(), 5);
        assert_eq!(p2.items.len(), 2);
        assert!(p2.next_start.is_none());
        let ns = Filter {
            namespace: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(page(&m, &ns, "", 0).items.len(), 1);
    }
}
