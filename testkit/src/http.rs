//! Request routing and the Kubernetes API handlers (GET/LIST/WATCH/POST/PUT/PATCH/DELETE).

use crate::admin;
use crate::body::Body;
use crate::faults::Shape;
use crate::listing;
use crate::patch;
use crate::query::Query;
use crate::selectors::{FieldSelector, Filter, LabelSelector};
use crate::server::Conn;
use crate::shape::shape_body;
use crate::state::{Shared, typed};
use crate::status::{ApiError, Cause, CauseKind};
use crate::store::{Kind, WatchStart};
use crate::util;
use crate::watch::{self, WatchRequest};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const ENDPOINTS_WARNING: &str =
    "299 - \"v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice\"";

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

/// Builds an API response with the headers a real apiserver sends.
fn api_response(shared: &Shared, kind: Option<Kind>, status: u16, body: Vec<u8>) -> Response<Body> {
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

fn error_response(shared: &Shared, kind: Option<Kind>, err: &ApiError) -> Response<Body> {
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
fn fault_response(shared: &Shared, f: &crate::faults::Fault) -> Response<Body> {
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

/// One resource request.
struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    kind: Kind,
    ns: Option<String>,
    name: Option<String>,
    q: Query,
    client: String,
    /// How the body is delivered (injected resets, stalls, slow bodies).
    shape: Shape,
    /// An injected fault: this request's continue token counts as expired.
    expire_continue: bool,
}

type Handled = Result<Response<Body>, ApiError>;

async fn read_json(req: Request<Incoming>) -> Result<Option<Value>, ApiError> {
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

fn require_body(v: Option<Value>) -> Result<Value, ApiError> {
    v.ok_or_else(|| ApiError::bad_request("the request body is empty"))
}

impl Ctx<'_> {
    fn respond(&self, status: u16, body: Vec<u8>) -> Response<Body> {
        api_response(self.shared, Some(self.kind), status, body)
    }

    fn object(&self, status: u16, obj: &Value) -> Response<Body> {
        let mut out = Vec::with_capacity(512);
        crate::json_out::write_object(&mut out, self.kind, obj, true);
        self.respond(status, out)
    }

    async fn dispatch(self, req: Request<Incoming>) -> Handled {
        let method = req.method().clone();
        match (&self.ns, &self.name, method) {
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
                self.get(name)
            }
            (Some(ns), None, Method::POST) => {
                let body = require_body(read_json(req).await?)?;
                let obj = self.shared.store().create(self.kind, ns, body)?;
                self.shared.stats.write();
                Ok(self.object(201, &obj))
            }
            (Some(ns), Some(name), Method::PUT) => {
                let mut body = require_body(read_json(req).await?)?;
                let mut st = self.shared.store();
                // Endpoints allow create-on-update (as on a real server); slices need a POST.
                let rv_set = body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty());
                let create = self.kind == Kind::Endpoints
                    && !rv_set
                    && st.get(self.kind, ns, name).is_none();
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
                            meta.insert("name".into(), Value::from(name.as_str()));
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
            (Some(ns), Some(name), Method::PATCH) => {
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
            (Some(ns), Some(name), Method::DELETE) => {
                let opts = read_json(req).await?;
                let pre = |f: &str| {
                    opts.as_ref()
                        .and_then(|o| o.get("preconditions"))
                        .and_then(|p| p.get(f))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                let (uid, rv) = (pre("uid"), pre("resourceVersion"));
                let obj = self.shared.store().delete(
                    self.kind,
                    ns,
                    name,
                    uid.as_deref(),
                    rv.as_deref(),
                )?;
                self.shared.stats.write();
                Ok(self.object(200, &obj))
            }
            (Some(ns), None, Method::DELETE) => {
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
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    fn filter(&self) -> Result<Filter, ApiError> {
        Ok(Filter {
            namespace: self.ns.clone(),
            labels: LabelSelector::parse(self.q.get("labelSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(self.q.get("fieldSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
        })
    }

    fn get(&self, name: &str) -> Handled {
        self.shared.stats.get();
        let ns = self.ns.as_deref().unwrap_or("");
        let obj = self
            .shared
            .store()
            .get(self.kind, ns, name)
            .ok_or_else(|| ApiError::not_found(self.kind, name))?;
        Ok(self.object(200, &typed(self.kind, &obj)))
    }

    fn parse_rv(&self) -> Result<Option<u64>, ApiError> {
        match self.q.non_empty("resourceVersion") {
            None => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{s}\""))),
        }
    }

    /// Waits (up to the too-large wait, 3 s by default) for the store to reach `rv`.
    async fn wait_for_rv(&self, rv: u64) -> Result<(), ApiError> {
        let mut rx = self.shared.rv_rx.clone();
        let waited =
            tokio::time::timeout(self.shared.opts.too_large_wait, rx.wait_for(|c| *c >= rv)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::too_large(rv, *self.shared.rv_rx.borrow())),
        }
    }

    async fn list(&self, filter: Filter) -> Handled {
        let rv_str = self.q.get("resourceVersion").unwrap_or("");
        let rvm = self.q.non_empty("resourceVersionMatch");
        let cont = self.q.non_empty("continue");
        let mut causes = Vec::new();
        if self.q.opt_bool("sendInitialEvents").is_some() {
            causes.push(Cause {
                field: "sendInitialEvents",
                kind: CauseKind::Forbidden("sendInitialEvents is forbidden for list".into()),
            });
        }
        if let Some(m) = rvm {
            let forbid = |d: &str| Cause {
                field: "resourceVersionMatch",
                kind: CauseKind::Forbidden(d.into()),
            };
            if rv_str.is_empty() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if cont.is_some() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            match m {
                "Exact" if rv_str == "0" => causes.push(forbid(
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                )),
                "Exact" | "NotOlderThan" => {}
                other => causes.push(Cause {
                    field: "resourceVersionMatch",
                    kind: CauseKind::NotSupported {
                        value: other.into(),
                        supported: &["Exact", "NotOlderThan"],
                    },
                }),
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_list_options(causes));
        }
        if cont.is_some() && !rv_str.is_empty() && rv_str != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let limit = match self.q.non_empty("limit") {
            None => 0,
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit \"{s}\"")))?
                .max(0) as usize,
        };
        // A server may return fewer items than asked for (with a continue token for the rest).
        let limit = match self.shared.opts.max_page_size {
            Some(cap) if limit > 0 => limit.min(cap.max(1)),
            _ => limit,
        };
        let rv = self.parse_rv()?;
        self.shared.stats.list();
        let kind = self.kind;

        let (list_rv, page) = if let Some(tok) = cont {
            let (trv, start) = listing::decode_token(tok).map_err(ApiError::bad_request)?;
            let mut st = self.shared.store();
            let (list_rv, snap) = if trv <= 0 {
                // rv -1: the client accepted an inconsistent continuation from "now".
                let now = st.rv();
                (now, st.snapshot_now(kind))
            } else {
                let trv = trv as u64;
                let ttl = self.shared.opts.continue_ttl;
                let fresh = !self.expire_continue
                    && st
                        .token_issued_at(kind, trv)
                        .is_some_and(|t| ttl.is_none_or(|ttl| t.elapsed() <= ttl));
                match fresh.then(|| st.state_at(kind, trv)).flatten() {
                    Some(s) => (trv, s),
                    None => {
                        return Err(ApiError::continue_expired(Some(listing::encode_token(
                            -1, &start,
                        ))));
                    }
                }
            };
            let page = listing::page(&snap, &filter, &start, limit);
            if page.next_start.is_some() {
                st.issue_token(kind, list_rv);
            }
            (list_rv, page)
        } else {
            let exact = matches!(rv, Some(n) if n > 0)
                && (rvm == Some("Exact") || (rvm.is_none() && limit > 0));
            if let Some(n) = rv.filter(|n| *n > 0) {
                self.wait_for_rv(n).await?;
            }
            // RV "0" is served from the "cache", which ignores limit.
            let limit = if rv == Some(0) { 0 } else { limit };
            let mut st = self.shared.store();
            if let (true, Some(n)) = (exact, rv) {
                let floor = st.floor(kind);
                let snap = st
                    .state_at(kind, n)
                    .ok_or_else(|| ApiError::too_old(n, floor))?;
                let page = listing::page(&snap, &filter, "", limit);
                if page.next_start.is_some() {
                    st.issue_token(kind, n);
                }
                (n, page)
            } else {
                let now = st.rv();
                let page = listing::page(st.objects(kind), &filter, "", limit);
                if page.next_start.is_some() {
                    st.snapshot_now(kind);
                    st.issue_token(kind, now);
                }
                (now, page)
            }
        };
        let token = page
            .next_start
            .as_deref()
            .map(|s| listing::encode_token(list_rv as i64, s));
        Ok(self.respond(
            200,
            listing::render(kind, list_rv, &page, token.as_deref(), &filter),
        ))
    }

    fn watch(&self, filter: Filter) -> Handled {
        let q = &self.q;
        let send_initial = q.opt_bool("sendInitialEvents");
        let rvm = q.non_empty("resourceVersionMatch");
        let cont = q.non_empty("continue");
        let mut causes = Vec::new();
        let forbid = |d: String| Cause {
            field: "resourceVersionMatch",
            kind: CauseKind::Forbidden(d),
        };
        if send_initial.is_some() {
            if rvm != Some("NotOlderThan") {
                causes.push(forbid(
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                        .into(),
                ));
            }
            if !self.shared.opts.watch_list {
                causes.push(Cause {
                    field: "sendInitialEvents",
                    kind: CauseKind::Forbidden(
                        "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled".into(),
                    ),
                });
            }
        }
        if let Some(m) = rvm {
            if send_initial.is_none() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
                ));
            }
            if m != "NotOlderThan" {
                causes.push(Cause {
                    field: "resourceVersionMatch",
                    kind: CauseKind::NotSupported {
                        value: m.into(),
                        supported: &["NotOlderThan"],
                    },
                });
            }
            if cont.is_some() {
                causes.push(forbid(
                    "resourceVersionMatch is forbidden when continue is provided".into(),
                ));
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_list_options(causes));
        }
        let rv = self.parse_rv()?;
        let from = rv.filter(|n| *n > 0);
        // With the WatchList feature on, a plain watch from ""/"0" is defaulted to a
        // streaming list (so it also gets the initial-events-end bookmark).
        let send_initial = match send_initial {
            None if rvm.is_none() && self.shared.opts.watch_list && from.is_none() => Some(true),
            s => s,
        };
        let start = match (send_initial, from) {
            (Some(true), _) | (None, None) => WatchStart::Initial,
            (Some(false), None) => WatchStart::Latest,
            (_, Some(n)) => WatchStart::From(n),
        };
        let bookmarks = q.bool("allowWatchBookmarks");
        let timeout = match q.non_empty("timeoutSeconds") {
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds \"{s}\"")))?,
            None => 0,
        };
        let timeout = if timeout > 0 {
            Duration::from_secs(timeout as u64)
        } else {
            // The apiserver's default: min-request-timeout (1800 s) × [1, 2).
            Duration::from_secs(1800 + util::random_below(1800))
        };
        let req = WatchRequest {
            kind: self.kind,
            filter,
            start,
            min_rv: from,
            bookmarks,
            initial_events_end: send_initial == Some(true) && bookmarks,
            timeout,
            shape: self.shape,
            client: self.client.clone(),
        };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(watch::run(self.shared.clone(), req, tx));
        let mut resp = self.respond(200, Vec::new());
        *resp.body_mut() = Body::Stream(rx);
        Ok(resp)
    }
}
