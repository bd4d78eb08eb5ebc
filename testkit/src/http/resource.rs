//! One resource request (`Ctx`): its parsed target and query, reading its body, and its dispatch by verb.

use crate::body::Body;
use crate::faults::Shape;
use crate::query::Query;
use crate::selectors::{FieldSelector, Filter, LabelSelector};
use crate::state::Shared;
use crate::status::ApiError;
use crate::store::Kind;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::Value;
use std::sync::Arc;

use super::respond::api_response;

/// One resource request.
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) kind: Kind,
    pub(super) ns: Option<String>,
    pub(super) name: Option<String>,
    pub(super) q: Query,
    pub(super) client: String,
    /// How the body is delivered (injected resets, stalls, slow bodies).
    pub(super) shape: Shape,
    /// An injected fault: this request's continue token counts as expired.
    pub(super) expire_continue: bool,
}

pub(super) type Handled = Result<Response<Body>, ApiError>;

pub(super) async fn read_json(req: Request<Incoming>) -> Result<Option<Value>, ApiError> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

pub(super) fn require_body(v: Option<Value>) -> Result<Value, ApiError> {
    v.ok_or_else(|| ApiError::bad_request("the request body is empty"))
}

impl Ctx<'_> {
    pub(super) fn respond(&self, status: u16, body: Vec<u8>) -> Response<Body> {
        api_response(self.shared, Some(self.kind), status, body)
    }

    pub(super) fn object(&self, status: u16, obj: &Value) -> Response<Body> {
        let mut out = Vec::with_capacity(512);
        crate::json_out::write_object(&mut out, self.kind, obj, true);
        self.respond(status, out)
    }

    pub(super) async fn dispatch(self, req: Request<Incoming>) -> Handled {
        let method = req.method().clone();
        match (self.ns.clone(), self.name.clone(), method) {
            (_, None, Method::GET) => {
                let filter = self.filter()?;
                if self.q.bool("watch") {
                    self.watch(filter)
                } else {
                    self.list(filter).await
                }
            }
            (Some(_), Some(name), Method::GET) => {
                if self.q.bool("watch") {
                    // Old-style watch of one object: a watch with a name field selector.
                    let mut filter = self.filter()?;
                    let extra = format!("metadata.name={name}");
                    filter.fields =
                        FieldSelector::parse(&match self.q.non_empty("fieldSelector") {
                            Some(f) => format!("{f},{extra}"),
                            None => extra,
                        })
                        .map_err(ApiError::bad_request)?;
                    return self.watch(filter);
                }
                self.get(&name)
            }
            (Some(ns), None, Method::POST) => self.create(&ns, req).await,
            (Some(ns), Some(name), Method::PUT) => self.update(&ns, &name, req).await,
            (Some(ns), Some(name), Method::PATCH) => self.patch(&ns, &name, req).await,
            (Some(ns), Some(name), Method::DELETE) => self.delete(&ns, &name, req).await,
            (Some(ns), None, Method::DELETE) => self.delete_collection(&ns),
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    pub(super) fn filter(&self) -> Result<Filter, ApiError> {
        Ok(Filter {
            namespace: self.ns.clone(),
            labels: LabelSelector::parse(self.q.get("labelSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(self.q.get("fieldSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
        })
    }
}
