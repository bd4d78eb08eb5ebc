//! Writes, kubectl style: create (POST), update (PUT, with create-on-update for Endpoints), patch (merge,
//! strategic-as-merge, JSON patch), delete and delete-collection.

use crate::listing;
use crate::patch;
use crate::status::ApiError;
use crate::store::Kind;
use hyper::Request;
use hyper::body::Incoming;
use serde_json::Value;

use super::resource::{Ctx, Handled, read_json, require_body};

impl Ctx<'_> {
    pub(super) async fn create(&self, ns: &str, req: Request<Incoming>) -> Handled {
        let body = require_body(read_json(req).await?)?;
        let obj = self.shared.store().create(self.kind, ns, body)?;
        self.shared.stats.write();
        Ok(self.object(201, &obj))
    }

    pub(super) async fn update(&self, ns: &str, name: &str, req: Request<Incoming>) -> Handled {
        let mut body = require_body(read_json(req).await?)?;
        let mut st = self.shared.store();
        // Endpoints allow create-on-update (as on a real server); slices need a POST.
        let rv_set = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty());
        let create =
            self.kind == Kind::Endpoints && !rv_set && st.get(self.kind, ns, name).is_none();
        let (status, obj) = if create {
            let body_name = body.pointer("/metadata/name").and_then(Value::as_str);
            if body_name.is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    body_name.unwrap_or("")
                )));
            }
            if let Some(m) = body.as_object_mut() {
                let meta = m.entry("metadata").or_insert_with(|| serde_json::json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("name".into(), Value::from(name));
                }
            }
            (201, st.create(self.kind, ns, body)?)
        } else {
            (200, st.update(self.kind, ns, name, body, false)?)
        };
        drop(st);
        self.shared.stats.write();
        Ok(self.object(status, &obj))
    }

    pub(super) async fn patch(&self, ns: &str, name: &str, req: Request<Incoming>) -> Handled {
        let ct = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let body = require_body(read_json(req).await?)?;
        let apply: Box<dyn FnOnce(Value) -> Result<Value, ApiError>> = match ct.as_str() {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                Box::new(move |mut doc| {
                    patch::merge_patch(&mut doc, &body);
                    Ok(doc)
                })
            }
            "application/json-patch+json" => Box::new(move |mut doc| {
                patch::json_patch(&mut doc, &body).map_err(ApiError::unprocessable)?;
                Ok(doc)
            }),
            other => return Err(ApiError::unsupported_media_type(other)),
        };
        let obj = self.shared.store().patch(self.kind, ns, name, apply)?;
        self.shared.stats.write();
        Ok(self.object(200, &obj))
    }

    pub(super) async fn delete(&self, ns: &str, name: &str, req: Request<Incoming>) -> Handled {
        let opts = read_json(req).await?;
        let pre = |f: &str| {
            opts.as_ref()
                .and_then(|o| o.get("preconditions"))
                .and_then(|p| p.get(f))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (uid, rv) = (pre("uid"), pre("resourceVersion"));
        let obj = self
            .shared
            .store()
            .delete(self.kind, ns, name, uid.as_deref(), rv.as_deref())?;
        self.shared.stats.write();
        Ok(self.object(200, &obj))
    }

    pub(super) fn delete_collection(&self, ns: &str) -> Handled {
        let filter = self.filter()?;
        let mut st = self.shared.store();
        let doomed: Vec<String> = st
            .objects(self.kind)
            .values()
            .filter(|o| filter.matches(o))
            .filter_map(|o| {
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let deleted: Vec<_> = doomed
            .iter()
            .filter_map(|n| st.delete(self.kind, ns, n, None, None).ok())
            .collect();
        let rv = st.rv();
        drop(st);
        self.shared.stats.write();
        let page = listing::Page {
            items: deleted,
            next_start: None,
            remaining: 0,
        };
        Ok(self.respond(200, listing::render(self.kind, rv, &page, None, &filter)))
    }
}
