//! `labelSelector` / `fieldSelector` parsing and matching, plus the combined watch/list filter.
//!
//! The library has its own label-selector code (`src/selector.rs`); this one is written separately on purpose,
//! from the API server's documented grammar, so that the fake server is an independent oracle: a mistake shared
//! by both would otherwise go unnoticed in every test that runs one against the other.

use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector: all requirements must hold (comma = AND).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// Label keys: optional DNS-subdomain prefix + '/' + a name of at most 63 characters.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!(
            "invalid label key \"{key}\": prefix part must be a DNS subdomain"
        ));
    }
    validate_name(name).map_err(|e| format!("invalid label key \"{key}\": {e}"))
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 {
        return Err("name part must be 1 to 63 characters".into());
    }
    if name.contains('/')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !ok_edge(name.chars().next())
        || !ok_edge(name.chars().last())
    {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character"
                .into(),
        );
    }
    Ok(())
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    validate_name(v).map_err(|e| format!("invalid label value: \"{v}\": {e}"))
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with([' ', '\t']) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, tok: &str) -> bool {
        if self.s[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.s[self.pos..].chars().next() {
            if !is_name_char(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn unexpected(&self, expected: &str) -> String {
        match self.peek() {
            Some(c) => format!("unable to parse requirement: found '{c}', expected: {expected}"),
            None => {
                format!("unable to parse requirement: found end of string, expected: {expected}")
            }
        }
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax; the error is the 400 message.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut lx = Lexer { s, pos: 0 };
        let mut reqs = Vec::new();
        lx.skip_ws();
        if lx.at_end() {
            return Ok(LabelSelector { reqs });
        }
        loop {
            lx.skip_ws();
            let req = if lx.eat("!") {
                lx.skip_ws();
                let key = lx.word().to_string();
                validate_key(&key)?;
                Requirement {
                    key,
                    op: Op::NotExists,
                }
            } else {
                let key = lx.word().to_string();
                if key.is_empty() {
                    return Err(lx.unexpected("identifier"));
                }
                validate_key(&key)?;
                lx.skip_ws();
                let op = if lx.at_end() || lx.peek() == Some(',') {
                    Op::Exists
                } else if lx.eat("!=") {
                    lx.skip_ws();
                    let v = lx.word().to_string();
                    validate_value(&v)?;
                    Op::NotEq(v)
                } else if lx.eat("==") || lx.eat("=") {
                    lx.skip_ws();
                    let v = lx.word().to_string();
                    validate_value(&v)?;
                    Op::Eq(v)
                } else if lx.eat(">") || lx.eat("<") {
                    let gt = lx.s.as_bytes()[lx.pos - 1] == b'>';
                    lx.skip_ws();
                    let w = lx.word();
                    let n: i64 = w.parse().map_err(|_| {
                        format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: \"{w}\"")
                    })?;
                    if gt { Op::Gt(n) } else { Op::Lt(n) }
                } else {
                    let w = lx.word();
                    let negate = match w {
                        "in" => false,
                        "notin" => true,
                        _ => {
                            return Err(format!(
                                "unable to parse requirement: found '{w}', expected: in, notin, =, ==, !=, gt, lt"
                            ));
                        }
                    };
                    lx.skip_ws();
                    if !lx.eat("(") {
                        return Err(lx.unexpected("'('"));
                    }
                    let mut set = BTreeSet::new();
                    loop {
                        lx.skip_ws();
                        let v = lx.word().to_string();
                        validate_value(&v)?;
                        set.insert(v);
                        lx.skip_ws();
                        if lx.eat(")") {
                            break;
                        }
                        if !lx.eat(",") {
                            return Err(lx.unexpected("',' or ')'"));
                        }
                    }
                    if set.iter().all(String::is_empty) && set.len() == 1 {
                        return Err("unable to parse requirement: for 'in', 'notin' operators, values set can't be empty".into());
                    }
                    if negate { Op::NotIn(set) } else { Op::In(set) }
                };
                Requirement { key, op }
            };
            reqs.push(req);
            lx.skip_ws();
            if lx.at_end() {
                break;
            }
            if !lx.eat(",") {
                return Err(lx.unexpected("',' or 'end of string'"));
            }
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Does an object's `metadata.labels` satisfy every requirement?
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| {
            let v = get(&r.key);
            match &r.op {
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(set) => v.is_some_and(|v| set.contains(v)),
                Op::NotIn(set) => !v.is_some_and(|v| set.contains(v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
struct FieldTerm {
    field: Field,
    value: String,
    negate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Name,
    Namespace,
}

/// A parsed field selector: only `metadata.name` and `metadata.namespace` are supported, as
/// for Endpoints and EndpointSlices on a real server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// Splits on unescaped commas; `\` escapes the next character.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(String::new());
            continue;
        }
        if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

impl FieldSelector {
    /// Parses `fieldSelector`; the error is the 400 message.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { terms });
        }
        for part in split_unescaped(s, ',') {
            let (lhs, rhs, negate) = if let Some((l, r)) = part.split_once("!=") {
                (l, r, true)
            } else if let Some((l, r)) = part.split_once("==") {
                (l, r, false)
            } else if let Some((l, r)) = part.split_once('=') {
                (l, r, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let lhs = lhs.trim();
            let field = match lhs {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => {
                    return Err(format!(
                        "\"{other}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    ));
                }
            };
            terms.push(FieldTerm {
                field,
                value: unescape(rhs.trim()),
                negate,
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, name: &str, namespace: &str) -> bool {
        self.terms.iter().all(|t| {
            let actual = match t.field {
                Field::Name => name,
                Field::Namespace => namespace,
            };
            (actual == t.value) != t.negate
        })
    }
}

/// What a LIST or WATCH request selects: path namespace plus both selectors.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// Any selector present (then LIST omits `remainingItemCount`).
    pub fn has_selector(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let meta = obj.get("metadata");
        let s = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let ns = s("namespace");
        if self.namespace.as_deref().is_some_and(|want| want != ns) {
            return false;
        }
        self.fields.matches(s("name"), ns)
            && self.labels.matches(
                meta.and_then(|m| m.get("labels"))
                    .and_then(Value::as_object),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(sel: &str, labels: Value) -> bool {
        LabelSelector::parse(sel)
            .unwrap()
            .matches(labels.as_object())
    }

    #[test]
    fn label_operators() {
        let l = json!({"app": "web", "kubernetes.io/service-name": "web", "tier": "1"});
        assert!(m("", l.clone()));
        assert!(m("app=web", l.clone()));
        assert!(m("app==web", l.clone()));
        assert!(!m("app!=web", l.clone()));
        assert!(m("app!=db", l.clone()));
        assert!(m("missing!=x", l.clone()));
        assert!(m("app in (db, web)", l.clone()));
        assert!(!m("app notin (db,web)", l.clone()));
        assert!(m("missing notin (a)", l.clone()));
        assert!(m("app", l.clone()));
        assert!(m("!missing", l.clone()));
        assert!(!m("!app", l.clone()));
        assert!(m(
            "kubernetes.io/service-name=web,app in (web),!x",
            l.clone()
        ));
        assert!(!m("kubernetes.io/service-name=web,app=db", l.clone()));
        assert!(m("tier>0,tier<2", l.clone()));
        assert!(m("app=", json!({"app": ""})));
    }

    #[test]
    fn label_errors() {
        for bad in [
            "app=web=x",
            "app in web",
            "app in (a",
            "=x",
            "app,,b",
            "a b",
            "app in ()",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=web,metadata.namespace!=kube-system").unwrap();
        assert!(f.matches("web", "shop"));
        assert!(!f.matches("web", "kube-system"));
        assert!(!f.matches("db", "shop"));
        assert_eq!(
            FieldSelector::parse("spec.foo=bar").unwrap_err(),
            "\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
