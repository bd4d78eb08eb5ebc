//! The `/fake/...` admin and fault-injection API (no authentication).

use crate::body::Body;
use crate::faults::Fault;
use crate::http::plain;
use crate::state::Shared;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::full(v.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn bad(msg: impl std::fmt::Display) -> Response<Body> {
    json_response(400, &json!({ "error": msg.to_string() }))
}

pub async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad(e),
    };
    let parse = || serde_json::from_slice::<Value>(&body);
    match (method, path.as_str()) {
        (Method::GET, "/fake/stats") => json_response(
            200,
            &serde_json::to_value(shared.stats()).unwrap_or(Value::Null),
        ),
        (Method::GET, "/fake/faults") => json_response(
            200,
            &serde_json::to_value(shared.faults().pending()).unwrap_or(Value::Null),
        ),
        (Method::DELETE, "/fake/faults") => {
            shared.faults().clear();
            json_response(200, &json!({}))
        }
        (Method::POST, "/fake/faults") => {
            let faults: Vec<Fault> = match parse() {
                Ok(Value::Array(items)) => {
                    match items.into_iter().map(serde_json::from_value).collect() {
                        Ok(f) => f,
                        Err(e) => return bad(e),
                    }
                }
                Ok(v) => match serde_json::from_value(v) {
                    Ok(f) => vec![f],
                    Err(e) => return bad(e),
                },
                Err(e) => return bad(e),
            };
            let n = faults.len();
            let mut q = shared.faults();
            faults.into_iter().for_each(|f| q.push(f));
            json_response(200, &json!({ "queued": n }))
        }
        (Method::POST, "/fake/compact") => {
            let mut st = shared.store();
            st.compact();
            json_response(200, &json!({ "resourceVersion": st.rv() }))
        }
        (Method::POST, "/fake/close-watches") => {
            let n = shared.store().end_watches(false);
            json_response(200, &json!({ "closed": n }))
        }
        (Method::POST, "/fake/reset-watches") => {
            let n = shared.store().end_watches(true);
            json_response(200, &json!({ "reset": n }))
        }
        (Method::POST, "/fake/restart") => {
            let down_ms = match parse() {
                Ok(v) => v.get("down_ms").and_then(Value::as_u64).unwrap_or(0),
                Err(_) if body.iter().all(u8::is_ascii_whitespace) => 0,
                Err(e) => return bad(e),
            };
            // Restart just after answering, so that this response still reaches the caller.
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                shared.restart(std::time::Duration::from_millis(down_ms));
            });
            json_response(200, &json!({ "down_ms": down_ms }))
        }
        (Method::POST, "/fake/expire-continue") => {
            shared.store().expire_continue();
            json_response(200, &json!({}))
        }
        (Method::PUT | Method::POST, "/fake/token") => {
            let token = String::from_utf8_lossy(&body).trim().to_string();
            let on = !token.is_empty();
            shared.set_token(Some(token));
            json_response(200, &json!({ "auth": on }))
        }
        (Method::GET, "/fake/rbac") => json_response(
            200,
            &serde_json::to_value(shared.rbac()).unwrap_or(Value::Null),
        ),
        (Method::PUT | Method::POST, "/fake/rbac") => {
            match parse().and_then(serde_json::from_value::<crate::state::Rbac>) {
                Ok(rbac) => {
                    shared.set_rbac(rbac.clone());
                    json_response(200, &serde_json::to_value(rbac).unwrap_or(Value::Null))
                }
                Err(e) => bad(e),
            }
        }
        (Method::DELETE, "/fake/rbac") => {
            shared.set_rbac(crate::state::Rbac::default());
            json_response(200, &json!({}))
        }
        (Method::GET, "/fake/tls") => match &shared.opts.tls {
            Some(t) => json_response(
                200,
                &json!({"dir": t.dir.display().to_string(), "require_client_cert": t.require_client_cert}),
            ),
            None => json_response(200, &json!({"dir": null})),
        },
        (Method::POST, "/fake/reset") => {
            let n = shared.store().reset();
            shared.faults().clear();
            shared.stats.clear();
            json_response(200, &json!({ "deleted": n }))
        }
        (Method::POST, "/fake/apply") => match parse() {
            Ok(doc) => match shared.apply_all(doc) {
                Ok(objs) => json_response(200, &Value::Array(objs)),
                Err(e) => bad(e),
            },
            Err(e) => bad(e),
        },
        _ => plain(404, "404 page not found\n"),
    }
}
