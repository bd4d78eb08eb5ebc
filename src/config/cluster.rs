//! One cluster's settings: its id, the connection, selectors, weights, sizes and timeouts, with defaults applied.

use super::connection::{
    Connection, from_kubeconfig, is_schema_default, parse_client, parse_service,
};
use super::values::{
    parse_mib, parse_namespace_selector, parse_seconds, parse_shared_size, parse_topology,
};
use super::*;

pub(super) fn parse_cluster(
    v: &Value,
    scope: &Scope<'_>,
) -> Result<(ClusterConfig, Value), ConfigError> {
    let Some(obj) = v.as_object() else {
        return Err(error(
            scope.path("").trim_end_matches('.').to_owned(),
            show(v),
            "each cluster must be an object",
        ));
    };
    let mut raw = obj.clone();
    check_keys(obj, &keys_under("", scope.multi()), scope, "")?;

    let id = if scope.multi() {
        parse_id(get(obj, "id"), scope)?
    } else {
        String::new()
    };

    let kubeconfig_v = get(obj, "kubeconfig");
    let context = match get(obj, "context") {
        None => None,
        Some(_) if kubeconfig_v.is_none() => {
            return Err(error(
                scope.path("context"),
                show(get(obj, "context").unwrap_or(&Value::Null)),
                "only used together with kubeconfig",
            ));
        }
        Some(v) => Some(
            v.as_str()
                .filter(|s| !s.is_empty() && s.len() <= 253)
                .ok_or_else(|| {
                    error(
                        scope.path("context"),
                        show(v),
                        "must be a context name (a non-empty string)",
                    )
                })?
                .to_owned(),
        ),
    };
    let conn = match kubeconfig_v {
        Some(v) => {
            // The kubeconfig supplies the server and the credentials, so explicit ones would be ambiguous. What a
            // schema validator fills in from APISIX's defaults is not an explicit setting: ignore exactly that.
            for key in ["service", "client"] {
                if let Some(other) = get(obj, key)
                    && !is_schema_default(key, other)
                {
                    let shown = if key == "client" {
                        format!("\"{MASK}\"")
                    } else {
                        show(other)
                    };
                    return Err(error(
                        scope.path(key),
                        shown,
                        "cannot be combined with kubeconfig (the kubeconfig supplies the server, TLS settings \
                         and credentials); remove one of them",
                    ));
                }
            }
            raw.remove("service");
            raw.remove("client");
            from_kubeconfig(v, context.as_deref(), scope)?
        }
        None => {
            let (scheme, host, port, ssl_verify, service_raw) =
                parse_service(get(obj, "service"), scope)?;
            raw.insert("service".into(), service_raw);
            let client = parse_client(get(obj, "client"), scheme, scope)?;
            raw.insert("client".into(), client.raw);
            Connection {
                scheme,
                host,
                port,
                ssl_verify,
                token: client.token,
                token_file: client.token_file,
                ca: client.ca,
                client_cert: client.cert,
                client_key: client.key,
                path_prefix: String::new(),
                kubeconfig: None,
                context: None,
            }
        }
    };

    let namespace_selector = match get(obj, "namespace_selector") {
        Some(v) => parse_namespace_selector(v, scope)?,
        None => None,
    };

    let label_selector = match get(obj, "label_selector") {
        Some(v) => {
            let field = scope.path("label_selector");
            let s = v
                .as_str()
                .ok_or_else(|| error(&field, show(v), "must be a string"))?;
            validate_label_selector(s).map_err(|why| error(&field, show(v), why.to_string()))?;
            Some(s.trim().to_owned()).filter(|s| !s.is_empty())
        }
        None => None,
    };

    // These three defaults are written into the dump's config, as APISIX's schema writes them into its own.
    let default_weight_v = value_or_default(obj, "default_weight", Some(&mut raw));
    let default_weight = as_integer(&default_weight_v)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| {
            error(
                scope.path("default_weight"),
                show(&default_weight_v),
                format!("must be an integer in 0..={}", u32::MAX),
            )
        })?;
    let shared_size =
        parse_shared_size(&value_or_default(obj, "shared_size", Some(&mut raw)), scope)?;
    let slices_v = value_or_default(obj, "watch_endpoint_slices", Some(&mut raw));
    let watch_endpoint_slices = slices_v.as_bool().ok_or_else(|| {
        error(
            scope.path("watch_endpoint_slices"),
            show(&slices_v),
            "must be a boolean",
        )
    })?;

    // A dead-connection timeout or a list deadline of a few seconds would only cause churn. The watch idle
    // timeout's default stays well under the idle timeouts of common load balancers (4 to 10 minutes) and above
    // the API server's bookmark interval (about a minute).
    let seconds = |key: &str, min: u64| {
        let v = value_or_default(obj, key, None);
        parse_seconds((!v.is_null()).then_some(&v), key, min, scope)
    };
    let required = |d: Option<std::time::Duration>, key: &str| {
        d.unwrap_or_else(|| panic!("{key} has a default in the configuration table"))
    };
    let watch_idle_timeout = required(seconds("watch_idle_timeout", 10)?, "watch_idle_timeout");
    let list_timeout = required(seconds("list_timeout", 10)?, "list_timeout");
    let max_staleness = seconds("max_staleness", 1)?;
    let max_object_size = parse_mib(
        &value_or_default(obj, "max_object_size", None),
        "max_object_size",
        MAX_OBJECT_MB,
        scope,
    )?;
    let strategy_v = value_or_default(obj, "list_strategy", None);
    let list_strategy = strategy_v
        .as_str()
        .and_then(ListStrategy::parse)
        .ok_or_else(|| {
            error(
                scope.path("list_strategy"),
                show(&strategy_v),
                format!("must be one of {}", ListStrategy::NAMES.join(", ")),
            )
        })?;

    let topology = parse_topology(get(obj, "topology"), watch_endpoint_slices, scope)?;

    let cluster = ClusterConfig {
        id,
        scheme: conn.scheme,
        host: conn.host,
        port: conn.port,
        ssl_verify: conn.ssl_verify,
        token: conn.token,
        token_file: conn.token_file,
        ca: conn.ca,
        client_cert: conn.client_cert,
        client_key: conn.client_key,
        in_cluster_ca: crate::tls::IN_CLUSTER_CA.into(),
        path_prefix: conn.path_prefix,
        kubeconfig: conn.kubeconfig,
        context: conn.context,
        namespace_selector,
        label_selector,
        default_weight,
        shared_size,
        watch_endpoint_slices,
        watch_idle_timeout,
        list_timeout,
        max_staleness,
        max_object_size,
        list_strategy,
        topology,
    };
    Ok((cluster, Value::Object(raw)))
}

pub(super) fn parse_id(v: Option<&Value>, scope: &Scope<'_>) -> Result<String, ConfigError> {
    let field = scope.path("id");
    let Some(v) = v else {
        return Err(error(field, "(missing)", "required in multi-cluster mode"));
    };
    let rule = "must be 1 to 64 characters of [a-z0-9]";
    let s = v.as_str().ok_or_else(|| error(&field, show(v), rule))?;
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        return Err(error(field, show(v), rule));
    }
    Ok(s.to_owned())
}
