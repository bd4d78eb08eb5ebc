//! The Kubernetes API over HTTP: the per-request entry point, routing, authentication and RBAC, and injected
//! faults. The handlers live beside it: `resource` (one resource request and its dispatch by verb), `reads` (GET
//! and LIST), `watching` (WATCH), `writes` (create, update, patch, delete) and `respond` (response headers and
//! bodies).

mod reads;
mod resource;
mod respond;
mod watching;
mod writes;

use crate::admin;
use crate::body::Body;
use crate::query::Query;
use crate::server::Conn;
use crate::shape::shape_body;
use crate::state::Shared;
use crate::status::ApiError;
use crate::store::Kind;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use resource::Ctx;
use respond::{api_response, error_response, fault_response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub use respond::plain;

enum Route {
    Resource {
        kind: Kind,
        ns: Option<String>,
        name: Option<String>,
    },
    /// Inside a served group/version but not a served resource: Status 404.
    UnknownResource,
    Version,
    Health,
    /// Anything else: the plain-text mux 404.
    NotFound,
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let (kind, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => (Kind::Endpoints, rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => (Kind::EndpointSlice, rest),
        ["version"] => return Route::Version,
        ["healthz" | "livez" | "readyz"] => return Route::Health,
        _ => return Route::NotFound,
    };
    let res = kind.resource();
    let valid = |s: &&str| !s.is_empty();
    match rest {
        [r] if *r == res => Route::Resource {
            kind,
            ns: None,
            name: None,
        },
        ["namespaces", ns, r] if *r == res && valid(ns) => Route::Resource {
            kind,
            ns: Some(ns.to_string()),
            name: None,
        },
        ["namespaces", ns, r, name] if *r == res && valid(ns) && valid(name) => Route::Resource {
            kind,
            ns: Some(ns.to_string()),
            name: Some(name.to_string()),
        },
        _ => Route::UnknownResource,
    }
}

/// The per-request entry point.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    conn: Arc<Conn>,
) -> Result<Response<Body>, Infallible> {
    let line = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let path = req.uri().path().to_string();
    let resp = if path == "/fake" || path.starts_with("/fake/") {
        admin::handle(&shared, req).await
    } else if shared.pki.is_some() && !conn.tls {
        // What Go's http server answers to plain HTTP on a TLS port.
        plain(400, "Client sent an HTTP request to an HTTPS server.\n")
    } else {
        shared.stats.request(line.clone());
        api(&shared, req, &conn, &path).await
    };
    if shared.opts.log_requests {
        eprintln!("{line} {}", resp.status().as_u16());
    }
    Ok(resp)
}

/// Authenticates a request as the real server does: a verified client certificate (its CN is the user), else a
/// bearer token. `None` means 401. Without any configured authentication, everyone is `system:anonymous`, or the
/// token user when a bearer token is sent.
fn authenticate(shared: &Shared, req: &Request<Incoming>, conn: &Conn) -> Option<String> {
    if let Some(user) = &conn.user {
        return Some(user.clone());
    }
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match shared.token() {
        Some(token) => (bearer == Some(token.as_str())).then(|| shared.opts.token_user.clone()),
        None if bearer.is_some() => Some(shared.opts.token_user.clone()),
        None => Some("system:anonymous".to_string()),
    }
}

/// The RBAC verb of a request.
fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "get",
    }
}

async fn api(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    conn: &Conn,
    path: &str,
) -> Response<Body> {
    let peer = conn.peer;
    let r = route(path);
    match r {
        Route::Version => {
            let body = br#"{"major":"1","minor":"34","gitVersion":"v1.34.0-fake","platform":"linux/amd64"}"#;
            return api_response(shared, None, 200, body.to_vec());
        }
        Route::Health => return plain(200, "ok"),
        _ => {}
    }
    // Authentication runs before routing on a real server, so it covers unknown paths too.
    let Some(user) = authenticate(shared, &req, conn) else {
        shared.stats.unauthorized();
        return error_response(shared, None, &ApiError::unauthorized());
    };
    shared.stats.user(&user);
    let q = Query::parse(req.uri().query());
    let is_watch = q.bool("watch");
    if let Route::Resource { kind, ns, name } = &r {
        let verb = verb(req.method(), name.is_some(), is_watch);
        if shared.rbac().denies(&user, verb) {
            shared.stats.forbidden();
            return error_response(
                shared,
                Some(*kind),
                &ApiError::forbidden(*kind, &user, verb, ns.as_deref()),
            );
        }
    }
    let decision = shared.faults().take(
        req.method().as_str(),
        path,
        req.uri().query().unwrap_or(""),
        is_watch,
    );
    if decision.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.delay_ms)).await;
    }
    if let Some(f) = &decision.respond {
        return shape_body(fault_response(shared, f), decision.shape);
    }
    let client = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| peer.ip().to_string());
    let (kind, result) = match r {
        Route::Resource { kind, ns, name } => {
            let ctx = Ctx {
                shared,
                kind,
                ns,
                name,
                q,
                client,
                shape: decision.shape,
                expire_continue: decision.expire_continue,
            };
            (Some(kind), ctx.dispatch(req).await)
        }
        Route::UnknownResource => (None, Err(ApiError::unknown_resource())),
        _ => return plain(404, "404 page not found\n"),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => error_response(shared, kind, &e),
    };
    // Streamed (watch) bodies apply the shape as they are written.
    shape_body(resp, decision.shape)
}
