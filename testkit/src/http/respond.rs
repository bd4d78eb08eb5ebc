//! Responses with the headers a real API server sends: JSON API responses, Status errors, plain text, and the
//! canned responses of injected faults.

use crate::body::Body;
use crate::state::Shared;
use crate::status::ApiError;
use crate::store::Kind;
use crate::util;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

const ENDPOINTS_WARNING: &str =
    "299 - \"v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice\"";

/// Builds an API response with the headers a real apiserver sends.
pub(super) fn api_response(
    shared: &Shared,
    kind: Option<Kind>,
    status: u16,
    body: Vec<u8>,
) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, private"),
    );
    if let Ok(v) = HeaderValue::from_str(&util::new_uid()) {
        h.insert("audit-id", v);
    }
    if kind == Some(Kind::Endpoints) && shared.opts.endpoints_warning {
        h.insert("warning", HeaderValue::from_static(ENDPOINTS_WARNING));
    }
    resp
}

pub(super) fn error_response(
    shared: &Shared,
    kind: Option<Kind>,
    err: &ApiError,
) -> Response<Body> {
    let mut resp = api_response(shared, kind, err.code, err.to_bytes());
    if let Some(s) = err.retry_after.filter(|s| *s > 0) {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

pub fn plain(status: u16, text: &str) -> Response<Body> {
    let mut resp = Response::new(Body::full(text.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The canned response of an injected fault.
pub(super) fn fault_response(shared: &Shared, f: &crate::faults::Fault) -> Response<Body> {
    let status = f.status.unwrap_or(500);
    let mut resp = match (&f.body, status) {
        (Some(body), _) => {
            let mut r = plain(status, body);
            let ct = f.content_type.as_deref().unwrap_or("application/json");
            if let Ok(v) = HeaderValue::from_str(ct) {
                r.headers_mut().insert("content-type", v);
            }
            r
        }
        // APF rejections are plain text.
        (None, 429) => plain(429, "Too many requests, please try again later.\n"),
        (None, code) => error_response(shared, None, &ApiError::for_code(code, f.retry_after)),
    };
    if let Some(s) = f.retry_after {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}
