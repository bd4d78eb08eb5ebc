//! Value rules shared by several settings: namespace selectors, durations in seconds, sizes in MiB.

use super::*;
use crate::topology::{Mode, Topology};

pub(super) fn parse_namespace_selector(
    v: &Value,
    scope: &Scope<'_>,
) -> Result<Option<NamespaceSelector>, ConfigError> {
    let field = scope.path("namespace_selector");
    let obj = v.as_object().ok_or_else(|| {
        error(
            &field,
            show(v),
            "must be an object with at most one of equal, not_equal, match, not_match",
        )
    })?;
    check_keys(
        obj,
        &keys_under("namespace_selector", false),
        scope,
        "namespace_selector.",
    )?;
    let set: Vec<(&String, &Value)> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
    let (key, value) = match set.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|(k, _)| k.as_str()).collect();
            return Err(error(
                field,
                show(v),
                format!(
                    "at most one of equal, not_equal, match, not_match may be set (found {})",
                    names.join(", ")
                ),
            ));
        }
    };
    let sub = scope.path(&format!("namespace_selector.{key}"));
    match key.as_str() {
        "equal" | "not_equal" => {
            let rule = "must be a namespace name matching ^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$";
            let ns = value
                .as_str()
                .filter(|s| is_namespace_name(s))
                .ok_or_else(|| error(&sub, show(value), rule))?;
            Ok(Some(if key == "equal" {
                NamespaceSelector::Equal(ns.to_owned())
            } else {
                NamespaceSelector::NotEqual(ns.to_owned())
            }))
        }
        _ => {
            let list = value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                error(
                    &sub,
                    show(value),
                    "must be a non-empty array of regex strings",
                )
            })?;
            let mut patterns = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                let item = format!("{sub}[{i}]");
                let s = p
                    .as_str()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| {
                        error(
                            &item,
                            show(p),
                            "must be a string of printable ASCII without spaces (a regular expression)",
                        )
                    })?;
                let pattern = NamespacePattern::new(s).map_err(|e| {
                    error(
                        &item,
                        show(p),
                        format!("invalid regular expression: {}", regex_reason(&e)),
                    )
                })?;
                patterns.push(pattern);
            }
            Ok(Some(if key == "match" {
                NamespaceSelector::Match(patterns)
            } else {
                NamespaceSelector::NotMatch(patterns)
            }))
        }
    }
}

/// The last line of a regex error: the multi-line form quotes our anchored
/// wrapper, which would only confuse the reader.
pub(super) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    line.strip_prefix("error: ")
        .map(str::to_owned)
        .unwrap_or(line)
}

pub(super) fn is_namespace_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || matches!(c, b'-' | b'_' | b'.'))
}

/// A whole number of seconds (an integer or a string of digits) in `min..=MAX_TIME_SETTING_S`, or None when
/// absent.
pub(super) fn parse_seconds(
    v: Option<&Value>,
    key: &str,
    min: u64,
    scope: &Scope<'_>,
) -> Result<Option<std::time::Duration>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let secs = as_integer(v)
        .or_else(|| v.as_str().and_then(|s| s.trim().parse::<i64>().ok()))
        .and_then(|i| u64::try_from(i).ok())
        .filter(|s| (min..=MAX_TIME_SETTING_S).contains(s));
    match secs {
        Some(s) => Ok(Some(std::time::Duration::from_secs(s))),
        None => Err(error(
            scope.path(key),
            show(v),
            format!("must be a number of seconds in {min}..={MAX_TIME_SETTING_S}"),
        )),
    }
}

pub(super) fn parse_shared_size(v: &Value, scope: &Scope<'_>) -> Result<usize, ConfigError> {
    parse_mib(v, "shared_size", MAX_SHARED_SIZE_MB, scope)
}

/// A size in MiB written like "64m" (`^[1-9][0-9]*m$`), at most `max_mb`, in bytes.
pub(super) fn parse_mib(
    v: &Value,
    key: &str,
    max_mb: u64,
    scope: &Scope<'_>,
) -> Result<usize, ConfigError> {
    let rule = format!("must be a size in MiB like \"64m\": ^[1-9][0-9]*m$, at most {max_mb}m");
    let mb = v
        .as_str()
        .and_then(|s| s.strip_suffix('m'))
        .filter(|n| n.len() <= 6 && !n.starts_with('0') && !n.is_empty())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|mb| (1..=max_mb).contains(mb));
    let mb = mb.ok_or_else(|| error(scope.path(key), show(v), rule))?;
    usize::try_from(mb << 20)
        .map_err(|_| error(scope.path(key), show(v), "too large for this platform"))
}

/// `topology`: the mode and the gateway's zone. A mode other than `off` needs EndpointSlices (v1 Endpoints carry
/// no zone) and a `zone` key; a zone that resolves to an empty string is accepted (the watcher warns, and no zone
/// is preferred), so one config serves gateways on nodes with and without a zone label.
pub(super) fn parse_topology(
    v: Option<&Value>,
    watch_endpoint_slices: bool,
    scope: &Scope<'_>,
) -> Result<Topology, ConfigError> {
    let Some(v) = v else {
        return Ok(Topology::default());
    };
    let obj = v.as_object().ok_or_else(|| {
        error(
            scope.path("topology"),
            show(v),
            "must be an object with mode and zone",
        )
    })?;
    check_keys(obj, &keys_under("topology", false), scope, "topology.")?;
    let mode_v = value_or_default(obj, "topology.mode", None);
    let mode = mode_v.as_str().and_then(Mode::parse).ok_or_else(|| {
        error(
            scope.path("topology.mode"),
            show(&mode_v),
            format!("must be one of {}", Mode::NAMES.join(", ")),
        )
    })?;
    let zone = match get(obj, "zone") {
        Some(z) => {
            let field = "topology.zone";
            let rule = "must be a zone name (a Kubernetes label value: up to 63 of [A-Za-z0-9._-], starting and \
                        ending with a letter or digit) or ${VAR}";
            let raw = z
                .as_str()
                .ok_or_else(|| error(scope.path(field), show(z), rule))?;
            let (resolved, _) = scope.expand(field, raw, &show(z))?;
            let resolved = resolved.trim();
            if !resolved.is_empty() && !is_label_value(resolved) {
                return Err(error(
                    scope.path(field),
                    show(&Value::String(resolved.to_owned())),
                    rule,
                ));
            }
            resolved.to_owned()
        }
        None if mode != Mode::Off => {
            return Err(error(
                scope.path("topology.zone"),
                "(missing)",
                format!(
                    "required when topology.mode is {mode}: the gateway's own zone, e.g. \"${{NODE_ZONE}}\" \
                     from the node's topology.kubernetes.io/zone label"
                ),
            ));
        }
        None => String::new(),
    };
    if mode != Mode::Off && !watch_endpoint_slices {
        return Err(error(
            scope.path("topology.mode"),
            show(&mode_v),
            "needs watch_endpoint_slices: true (v1 Endpoints objects carry no zone)",
        ));
    }
    Ok(Topology { mode, zone })
}

/// A Kubernetes label value (what `topology.kubernetes.io/zone` holds), non-empty.
fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}
