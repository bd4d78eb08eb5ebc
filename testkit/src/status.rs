//! `metav1.Status` error bodies with the apiserver's exact messages and reasons.

use crate::json_out::{self, Ctx};
use crate::store::Kind;
use serde_json::{Map, Value, json};

/// An API error rendered as a `Status` object (HTTP response or watch ERROR event).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed to keep `Result<_, ApiError>` small.
    pub details: Option<Box<Value>>,
    /// ListMeta of the Status (only the expired-continue case carries one).
    pub metadata: Option<Box<Value>>,
    /// Sets `details.retryAfterSeconds` and the `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// One `field.Error` of a 422 Invalid.
pub struct Cause {
    pub field: &'static str,
    pub kind: CauseKind,
}

pub enum CauseKind {
    Forbidden(String),
    NotSupported {
        value: String,
        supported: &'static [&'static str],
    },
    Required(String),
}

impl Cause {
    fn reason(&self) -> &'static str {
        match self.kind {
            CauseKind::Forbidden(_) => "FieldValueForbidden",
            CauseKind::NotSupported { .. } => "FieldValueNotSupported",
            CauseKind::Required(_) => "FieldValueRequired",
        }
    }

    /// The detail as `field.Error.ErrorBody()` words it.
    fn body(&self) -> String {
        match &self.kind {
            CauseKind::Forbidden(d) => format!("Forbidden: {d}"),
            CauseKind::Required(d) => format!("Required value: {d}"),
            CauseKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
                format!(
                    "Unsupported value: \"{value}\": supported values: {}",
                    list.join(", ")
                )
            }
        }
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            metadata: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 from RBAC, worded as the apiserver's authorization filter words it.
    pub fn forbidden(kind: Kind, user: &str, verb: &str, ns: Option<&str>) -> Self {
        let scope = match ns {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let mut e = Self::new(
            403,
            "Forbidden",
            format!(
                "{} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
                kind.qualified_resource(),
                kind.resource(),
                kind.group()
            ),
        );
        let mut d = Map::new();
        if !kind.group().is_empty() {
            d.insert("group".into(), json!(kind.group()));
        }
        d.insert("kind".into(), json!(kind.resource()));
        e.details = Some(Box::new(Value::Object(d)));
        e
    }

    fn object_details(kind: Kind, name: &str) -> Value {
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if !kind.group().is_empty() {
            d.insert("group".into(), json!(kind.group()));
        }
        d.insert("kind".into(), json!(kind.resource()));
        Value::Object(d)
    }

    pub fn not_found(kind: Kind, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified_resource()),
        );
        e.details = Some(Box::new(Self::object_details(kind, name)));
        e
    }

    /// 404 for an unknown resource inside a served group/version (go-restful style).
    pub fn unknown_resource() -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = Some(Box::new(json!({})));
        e
    }

    pub fn already_exists(kind: Kind, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.qualified_resource()),
        );
        e.details = Some(Box::new(Self::object_details(kind, name)));
        e
    }

    pub fn conflict(kind: Kind, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                kind.qualified_resource()
            ),
        );
        e.details = Some(Box::new(Self::object_details(kind, name)));
        e
    }

    /// A precondition (uid/resourceVersion) on DELETE failed.
    pub fn precondition_conflict(kind: Kind, name: &str, what: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {what}",
                kind.qualified_resource()
            ),
        );
        e.details = Some(Box::new(Self::object_details(kind, name)));
        e
    }

    /// 422 Invalid for an object (`Kind.group "name" is invalid: ...`).
    pub fn invalid_object(kind: Kind, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if kind.group().is_empty() {
            kind.name().to_string()
        } else {
            format!("{}.{}", kind.name(), kind.group())
        };
        let mut e = Self::invalid(&qualified, kind.group(), kind.name(), name, causes);
        if let Some(Value::Object(d)) = e.details.as_deref_mut() {
            d.insert("name".into(), json!(name));
        }
        e
    }

    /// 422 Invalid for bad list/watch options (kind `ListOptions` of `meta.k8s.io`).
    pub fn invalid_list_options(causes: Vec<Cause>) -> Self {
        Self::invalid(
            "ListOptions.meta.k8s.io",
            "meta.k8s.io",
            "ListOptions",
            "",
            causes,
        )
    }

    fn invalid(
        qualified_kind: &str,
        group: &str,
        kind: &str,
        name: &str,
        causes: Vec<Cause>,
    ) -> Self {
        let texts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.body()))
            .collect();
        let joined = if texts.len() == 1 {
            texts[0].clone()
        } else {
            format!("[{}]", texts.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {joined}"),
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason(), "message": c.body(), "field": c.field}))
            .collect();
        let mut d = Map::new();
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        d.insert("causes".into(), Value::Array(causes));
        e.details = Some(Box::new(Value::Object(d)));
        e
    }

    /// 410 Expired with the cache's wording (watch ERROR event and exact LIST).
    pub fn too_old(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 410 for an expired continue token; `token` is the inconsistent-continue token (rv -1).
    pub fn continue_expired(token: Option<String>) -> Self {
        let base = "The provided continue parameter is too old to display a consistent list \
                    result. You can start a new list without the continue parameter";
        match token {
            Some(t) => {
                let mut e = Self::new(
                    410,
                    "Expired",
                    format!(
                        "{base}, or use the continue token in this response to retrieve the \
                         remainder of the results. Continuing with the provided token results \
                         in an inconsistent list - objects that were created, modified, or \
                         deleted between the time the first chunk was returned and now may \
                         show up in the list."
                    ),
                );
                e.metadata = Some(Box::new(json!({ "continue": t })));
                e
            }
            None => Self::new(410, "Expired", format!("{base}.")),
        }
    }

    /// 504 "Too large resource version" (cache could not catch up within 3 s).
    pub fn too_large(requested: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        );
        e.details = Some(Box::new(
            json!({"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}]}),
        ));
        e.retry_after = Some(1);
        e
    }

    pub fn method_not_allowed() -> Self {
        let mut e = Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
        e.details = Some(Box::new(json!({})));
        e
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 422 without field causes (e.g. a JSON patch that cannot be applied).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    pub fn internal(message: &str) -> Self {
        let mut e = Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        );
        e.details = Some(Box::new(json!({"causes": [{"message": message}]})));
        e
    }

    /// A generic Status for an injected HTTP code (fault injection without a body).
    pub fn for_code(code: u16, retry_after: Option<u64>) -> Self {
        let mut e = match code {
            400 => Self::bad_request("injected fault"),
            401 => Self::unauthorized(),
            403 => Self::new(403, "Forbidden", "forbidden: injected fault"),
            404 => Self::unknown_resource(),
            409 => Self::new(409, "Conflict", "injected fault"),
            410 => Self::new(410, "Expired", "too old resource version: 1 (2)"),
            429 => Self::new(
                429,
                "TooManyRequests",
                "injected fault, please try again later",
            ),
            500 => Self::internal("injected fault"),
            503 => Self::new(503, "ServiceUnavailable", "injected fault"),
            504 => Self::new(504, "Timeout", "Timeout: injected fault"),
            c => Self::new(c, "Unknown", format!("injected fault {c}")),
        };
        if let Some(s) = retry_after {
            e.retry_after = Some(s);
        }
        e
    }

    /// The Status object as JSON bytes, in the server's field order.
    pub fn to_bytes(&self) -> Vec<u8> {
        json_out::to_vec(Ctx::Status, &self.to_value())
    }

    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert(
            "metadata".into(),
            self.metadata
                .as_deref()
                .cloned()
                .unwrap_or_else(|| json!({})),
        );
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        m.insert("reason".into(), json!(self.reason));
        let mut details = self.details.as_deref().cloned();
        if let Some(s) = self.retry_after.filter(|s| *s > 0) {
            let d = details.get_or_insert_with(|| json!({}));
            if let Value::Object(d) = d {
                d.insert("retryAfterSeconds".into(), json!(s));
            }
        }
        if let Some(d) = details {
            m.insert("details".into(), d);
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_exact() {
        assert_eq!(
            String::from_utf8(ApiError::unauthorized().to_bytes()).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
        );
    }

    #[test]
    fn forbidden_exact() {
        let e = ApiError::forbidden(Kind::Endpoints, "system:serviceaccount:ns:sa", "list", None);
        assert_eq!(
            String::from_utf8(e.to_bytes()).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"endpoints is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \"endpoints\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"endpoints"},"code":403}"#
        );
        let e = ApiError::forbidden(
            Kind::EndpointSlice,
            "system:serviceaccount:gateway:gw",
            "watch",
            Some("shop"),
        );
        assert_eq!(
            e.message,
            "endpointslices.discovery.k8s.io is forbidden: User \"system:serviceaccount:gateway:gw\" cannot watch resource \"endpointslices\" in API group \"discovery.k8s.io\" in the namespace \"shop\""
        );
    }

    #[test]
    fn too_large_exact() {
        assert_eq!(
            String::from_utf8(ApiError::too_large(200000, 184467).to_bytes()).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: Too large resource version: 200000, current: 184467","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}"#
        );
    }

    #[test]
    fn not_found_exact() {
        assert_eq!(
            String::from_utf8(ApiError::not_found(Kind::EndpointSlice, "web-abc12").to_bytes())
                .unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"endpointslices.discovery.k8s.io \"web-abc12\" not found","reason":"NotFound","details":{"name":"web-abc12","group":"discovery.k8s.io","kind":"endpointslices"},"code":404}"#
        );
    }

    #[test]
    fn watch_list_forbidden_exact() {
        let e = ApiError::invalid_list_options(vec![Cause {
            field: "sendInitialEvents",
            kind: CauseKind::Forbidden(
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
                    .into(),
            ),
        }]);
        assert_eq!(
            String::from_utf8(e.to_bytes()).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled","reason":"Invalid","details":{"group":"meta.k8s.io","kind":"ListOptions","causes":[{"reason":"FieldValueForbidden","message":"Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled","field":"sendInitialEvents"}]},"code":422}"#
        );
    }
}
