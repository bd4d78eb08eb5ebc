//! Namespace and label selectors from the discovery config.
//!
//! The namespace selector decides which namespaces are served: `equal` is
//! pushed to the server as a namespaced URL (so a namespaced Role suffices),
//! `not_equal` as a field selector, and `match` / `not_match` are evaluated
//! client-side against whole namespace names. The label selector is sent
//! verbatim to the server; we only validate it up front so that a typo fails
//! at init instead of as a 400 on every list attempt.

use std::fmt;

use regex::Regex;

/// A `match` / `not_match` pattern: the string the user wrote (for display and
/// the dump) and its compiled whole-string form.
#[derive(Clone, Debug)]
pub struct NamespacePattern {
    source: String,
    regex: Regex,
}

impl NamespacePattern {
    /// Compiles `pattern` anchored at both ends, so that `ns-[ab]` does not
    /// match `xns-a` (APISIX compares the match with the whole name too).
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        // Compiling it alone first rejects text that would only balance
        // against the wrapper, e.g. `)|(.*`, which would match everything.
        Regex::new(pattern)?;
        // The non-capturing group keeps alternations (`a|b`) inside the anchors.
        let regex = Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(Self {
            source: pattern.to_owned(),
            regex,
        })
    }

    /// The pattern as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches all of `ns`.
    pub fn is_match(&self, ns: &str) -> bool {
        self.regex.is_match(ns)
    }
}

// Two patterns are the same when written the same; `Regex` has no equality.
impl PartialEq for NamespacePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for NamespacePattern {}

/// Which namespaces a cluster serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceSelector {
    Equal(String),
    NotEqual(String),
    /// Admits a namespace that any pattern matches.
    Match(Vec<NamespacePattern>),
    /// Admits a namespace that no pattern matches.
    NotMatch(Vec<NamespacePattern>),
}

impl NamespaceSelector {
    /// Whether objects in namespace `ns` are served. Also applied to the
    /// server-side modes, as a guard against a server that ignores the scope.
    pub fn admits(&self, ns: &str) -> bool {
        match self {
            Self::Equal(want) => ns == want,
            Self::NotEqual(skip) => ns != skip,
            Self::Match(patterns) => patterns.iter().any(|p| p.is_match(ns)),
            Self::NotMatch(patterns) => !patterns.iter().any(|p| p.is_match(ns)),
        }
    }

    /// The namespace to scope list/watch URLs to (`/namespaces/<ns>/...`).
    pub fn namespace_scope(&self) -> Option<&str> {
        match self {
            Self::Equal(ns) => Some(ns),
            _ => None,
        }
    }

    /// The `fieldSelector` to send. `Equal` needs none: its URL is namespaced.
    pub fn field_selector(&self) -> Option<String> {
        match self {
            Self::NotEqual(ns) => Some(format!("metadata.namespace!={ns}")),
            _ => None,
        }
    }
}

impl fmt::Display for NamespaceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ps: &[NamespacePattern]| {
            ps.iter()
                .map(NamespacePattern::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::Equal(ns) => write!(f, "equal {ns}"),
            Self::NotEqual(ns) => write!(f, "not_equal {ns}"),
            Self::Match(ps) => write!(f, "match [{}]", list(ps)),
            Self::NotMatch(ps) => write!(f, "not_match [{}]", list(ps)),
        }
    }
}

// ---------------------------------------------------------------------------
// Label selector validation
// ---------------------------------------------------------------------------

/// Checks `s` against the Kubernetes label selector grammar and the label
/// key/value rules, accepting exactly what the apiserver accepts (so a
/// selector we pass is not answered with 400). The empty selector is valid.
///
/// The error names the offending requirement and the reason.
pub fn validate_label_selector(s: &str) -> Result<(), String> {
    let tokens = lex(s);
    let mut p = Parser {
        src: s,
        tokens: &tokens,
        pos: 0,
    };
    if p.peek().kind == Kind::End {
        return Ok(());
    }
    loop {
        let start = p.peek().start;
        if p.peek().kind == Kind::Comma {
            return Err(format!(
                "empty requirement at offset {start}: a requirement must come before ','"
            ));
        }
        if let Err(why) = p.requirement() {
            return Err(format!(
                "requirement `{}`: {why}",
                requirement_text(s, start)
            ));
        }
        let next = p.next();
        match next.kind {
            Kind::End => return Ok(()),
            Kind::Comma => {
                if p.peek().kind == Kind::End {
                    return Err("empty requirement after the last ','".to_owned());
                }
            }
            _ => {
                return Err(format!(
                    "requirement `{}`: expected ',' or the end of the selector, found {}",
                    requirement_text(s, start),
                    next.show(s)
                ));
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Token {
    fn text<'s>(&self, src: &'s str) -> &'s str {
        src.get(self.start..self.end).unwrap_or("")
    }

    fn show(&self, src: &str) -> String {
        match self.kind {
            Kind::End => "the end of the selector".to_owned(),
            _ => format!("`{}`", self.text(src)),
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the selector into tokens. Identifiers are maximal runs of bytes that
/// are neither whitespace nor operator symbols (as in the apiserver's lexer);
/// their content is checked later by the key/value rules. All delimiters are
/// ASCII, so every token boundary is a char boundary.
fn lex(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        let start = i;
        let two = b.get(i + 1).copied();
        let (kind, len) = match (c, two) {
            (b'!', Some(b'=')) => (Kind::NotEq, 2),
            (b'=', Some(b'=')) => (Kind::DoubleEq, 2),
            (b'!', _) => (Kind::Not, 1),
            (b'=', _) => (Kind::Eq, 1),
            (b'>', _) => (Kind::Gt, 1),
            (b'<', _) => (Kind::Lt, 1),
            (b'(', _) => (Kind::Open, 1),
            (b')', _) => (Kind::Close, 1),
            (b',', _) => (Kind::Comma, 1),
            _ => {
                let mut j = i;
                while j < b.len() && !is_space(b[j]) && !is_symbol(b[j]) {
                    j += 1;
                }
                (Kind::Ident, j - i)
            }
        };
        i += len;
        out.push(Token {
            kind,
            start,
            end: i,
        });
    }
    out.push(Token {
        kind: Kind::End,
        start: s.len(),
        end: s.len(),
    });
    out
}

struct Parser<'a> {
    src: &'a str,
    tokens: &'a [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Token {
        // `lex` always ends with `End`, and `next` never moves past it.
        self.tokens.get(self.pos).copied().unwrap_or(Token {
            kind: Kind::End,
            start: self.src.len(),
            end: self.src.len(),
        })
    }

    fn next(&mut self) -> Token {
        let t = self.peek();
        if t.kind != Kind::End {
            self.pos += 1;
        }
        t
    }

    /// One requirement: `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (..)`,
    /// `k notin (..)`, `k>N`, `k<N`. Leaves the following `,`/end unconsumed.
    fn requirement(&mut self) -> Result<(), String> {
        let negated = self.peek().kind == Kind::Not;
        if negated {
            self.next();
        }
        let key = self.next();
        if key.kind != Kind::Ident {
            return Err(format!(
                "expected a label key, found {}",
                key.show(self.src)
            ));
        }
        let key_text = key.text(self.src);
        check_key(key_text)?;
        if negated {
            // `!k` takes no operator; anything after it is reported by the caller.
            return Ok(());
        }
        let op = self.peek();
        match op.kind {
            Kind::Comma | Kind::End => Ok(()),
            Kind::Eq | Kind::DoubleEq | Kind::NotEq => {
                self.next();
                let v = self.peek();
                match v.kind {
                    // `k=` selects the empty value.
                    Kind::Comma | Kind::End => Ok(()),
                    Kind::Ident => {
                        self.next();
                        check_value(v.text(self.src))
                    }
                    _ => Err(format!(
                        "expected a value after `{}`, found {}",
                        op.text(self.src),
                        v.show(self.src)
                    )),
                }
            }
            Kind::Gt | Kind::Lt => {
                self.next();
                let v = self.next();
                let text = v.text(self.src);
                if v.kind != Kind::Ident || !is_integer(text) {
                    return Err(format!(
                        "`{}` needs a non-negative integer value, found {}",
                        op.text(self.src),
                        v.show(self.src)
                    ));
                }
                check_value(text)
            }
            Kind::Ident if matches!(op.text(self.src), "in" | "notin") => {
                self.next();
                self.value_set(op.text(self.src))
            }
            _ => Err(format!(
                "expected an operator (=, ==, !=, in, notin, >, <), ',' or the end after key `{key_text}`, found {}",
                op.show(self.src)
            )),
        }
    }

    /// `( v1, v2, ... )`. Empty items are allowed, as the apiserver allows
    /// them (`()` and `(a,)` select the empty value too).
    fn value_set(&mut self, op: &str) -> Result<(), String> {
        let open = self.next();
        if open.kind != Kind::Open {
            return Err(format!(
                "`{op}` must be followed by '(', found {}",
                open.show(self.src)
            ));
        }
        let mut want_value = true;
        loop {
            let t = self.next();
            match t.kind {
                Kind::Ident if want_value => {
                    check_value(t.text(self.src))?;
                    want_value = false;
                }
                Kind::Comma => want_value = true,
                Kind::Close => return Ok(()),
                Kind::End => {
                    return Err(format!("unbalanced parentheses: `{op} (` is never closed"));
                }
                _ if want_value => {
                    return Err(format!(
                        "expected a value, ',' or ')' in the `{op}` list, found {}",
                        t.show(self.src)
                    ));
                }
                _ => {
                    return Err(format!(
                        "expected ',' or ')' in the `{op}` list, found {}",
                        t.show(self.src)
                    ));
                }
            }
        }
    }
}

/// The text of the requirement starting at byte `start`: up to the next comma
/// outside parentheses. Only used for error messages, so it is capped.
fn requirement_text(s: &str, start: usize) -> String {
    let rest = s.get(start..).unwrap_or("");
    let mut depth = 0usize;
    let mut end = rest.len();
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let text = rest.get(..end).unwrap_or(rest).trim();
    truncate(text, 100)
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

fn is_integer(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<i64>().is_ok()
}

/// A label name / value body: alphanumeric at both ends, `-_.` inside.
fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A lowercase DNS-1123 subdomain (label key prefixes).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(f), Some(l)) => {
                    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
                    edge(f)
                        && edge(l)
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                }
                _ => false,
            }
        })
}

fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Err(format!("key `{key}` has more than one '/'"));
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(format!("key `{key}` has an empty prefix before '/'"));
        }
        if !is_dns_subdomain(prefix) {
            return Err(format!(
                "key prefix `{prefix}` must be a lowercase DNS subdomain of at most 253 characters"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("key `{key}` has an empty name"));
    }
    if name.len() > 63 {
        return Err(format!(
            "key name `{}` is longer than 63 characters",
            truncate(name, 63)
        ));
    }
    if !is_label_token(name) {
        return Err(format!(
            "key name `{name}` must be alphanumeric at both ends with only [-A-Za-z0-9_.] inside"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err(format!(
            "value `{}` is longer than 63 characters",
            truncate(value, 63)
        ));
    }
    if !is_label_token(value) {
        return Err(format!(
            "value `{value}` must be empty or alphanumeric at both ends with only [-A-Za-z0-9_.] inside"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(ps: &[&str]) -> Vec<NamespacePattern> {
        ps.iter()
            .map(|p| NamespacePattern::new(p).expect("test pattern compiles"))
            .collect()
    }

    #[test]
    fn equal_admits_only_that_namespace_and_scopes_the_url() {
        let s = NamespaceSelector::Equal("ns-a".into());
        assert!(s.admits("ns-a"));
        assert!(!s.admits("ns-b"));
        assert!(!s.admits("ns-a2"));
        assert!(!s.admits(""));
        assert_eq!(s.namespace_scope(), Some("ns-a"));
        assert_eq!(s.field_selector(), None);
    }

    #[test]
    fn not_equal_uses_a_field_selector() {
        let s = NamespaceSelector::NotEqual("ns-a".into());
        assert!(!s.admits("ns-a"));
        assert!(s.admits("ns-b"));
        assert!(s.admits("ns-aa"));
        assert_eq!(s.namespace_scope(), None);
        assert_eq!(
            s.field_selector().as_deref(),
            Some("metadata.namespace!=ns-a")
        );
    }

    #[test]
    fn match_is_whole_string_and_any_pattern() {
        let s = NamespaceSelector::Match(pats(&["ns-[ab]", "prod"]));
        assert!(s.admits("ns-a"));
        assert!(s.admits("ns-b"));
        assert!(s.admits("prod"));
        assert!(!s.admits("ns-c"));
        assert!(!s.admits("xns-a"), "no match in the middle");
        assert!(!s.admits("ns-ab"), "no prefix match");
        assert!(!s.admits("production"));
        assert_eq!(s.namespace_scope(), None);
        assert_eq!(s.field_selector(), None);
    }

    #[test]
    fn match_keeps_alternations_inside_the_anchors() {
        let s = NamespaceSelector::Match(pats(&["a|b"]));
        assert!(s.admits("a"));
        assert!(s.admits("b"));
        assert!(!s.admits("ab"));
        assert!(!s.admits("xa"));
        assert!(!s.admits("bx"));
    }

    #[test]
    fn match_does_not_accept_a_trailing_newline() {
        let s = NamespaceSelector::Match(pats(&["ns-a"]));
        assert!(!s.admits("ns-a\n"));
    }

    #[test]
    fn not_match_admits_when_no_pattern_matches() {
        let s = NamespaceSelector::NotMatch(pats(&["ns-[ab]"]));
        assert!(!s.admits("ns-a"));
        assert!(!s.admits("ns-b"));
        assert!(s.admits("ns-c"));
        assert!(s.admits("xns-a"));
        assert_eq!(s.field_selector(), None);
        let s = NamespaceSelector::NotMatch(pats(&["ns-a", "kube-.*"]));
        assert!(!s.admits("kube-system"));
        assert!(s.admits("default"));
    }

    #[test]
    fn patterns_keep_their_source_and_compare_by_it() {
        let p = NamespacePattern::new("ns-[ab]").expect("compiles");
        assert_eq!(p.as_str(), "ns-[ab]");
        assert_eq!(p, NamespacePattern::new("ns-[ab]").expect("compiles"));
        assert_ne!(p, NamespacePattern::new("ns-[a]").expect("compiles"));
        assert!(NamespacePattern::new("ns-[").is_err());
        assert!(NamespacePattern::new("(").is_err());
    }

    #[test]
    fn patterns_cannot_escape_the_anchors() {
        assert!(NamespacePattern::new(")|(.*").is_err());
        assert!(NamespacePattern::new("a)|(b").is_err());
        // Inline flags stay inside the group.
        let p = NamespacePattern::new("(?i)NS-A").expect("compiles");
        assert!(p.is_match("ns-a"));
        assert!(!p.is_match("ns-a-b"));
    }

    #[test]
    fn selector_display() {
        assert_eq!(NamespaceSelector::Equal("a".into()).to_string(), "equal a");
        assert_eq!(
            NamespaceSelector::NotMatch(pats(&["x", "y.*"])).to_string(),
            "not_match [x, y.*]"
        );
    }

    #[test]
    fn label_selector_valid() {
        for s in [
            "",
            "   ",
            "a",
            "!a",
            "! a",
            "a=b",
            "a==b",
            "a!=b",
            "a=",
            "a==",
            "a=b,c",
            "first=1,second",
            " a = b , c != d ",
            "env in (a, b)",
            "env in(a,b)",
            "env notin (a)",
            "x notin ()",
            "x in (a,)",
            "x in (,a)",
            "x in (a,,b)",
            "x in ( )",
            "a>5",
            "a < 10",
            "kubernetes.io/service-name=web",
            "app.kubernetes.io/name in (web,api),!canary",
            "Upper_Case.Name-1=Value_1.x",
            "in=notin",
            "tier,!canary,env notin (dev),n>0",
            "a\t=\tb",
        ] {
            assert_eq!(validate_label_selector(s), Ok(()), "selector {s:?}");
        }
        let long_ok = format!("{}={}", "k".repeat(63), "v".repeat(63));
        assert_eq!(validate_label_selector(&long_ok), Ok(()));
        let prefix = format!("{}/k=v", "a".repeat(253));
        assert_eq!(validate_label_selector(&prefix), Ok(()));
    }

    fn invalid(s: &str) -> String {
        match validate_label_selector(s) {
            Ok(()) => panic!("selector {s:?} should be rejected"),
            Err(e) => e,
        }
    }

    #[test]
    fn label_selector_invalid_characters() {
        let e = invalid("a=b,c d");
        assert!(e.contains("`c d`") && e.contains("found `d`"), "{e}");
        let e = invalid("a=b c");
        assert!(e.contains("`a=b c`"), "{e}");
        let e = invalid("a=b$");
        assert!(e.contains("value `b$`"), "{e}");
        let e = invalid("ke$y=1");
        assert!(e.contains("key name `ke$y`"), "{e}");
        let e = invalid("-a=b");
        assert!(e.contains("key name `-a`"), "{e}");
        let e = invalid("a=-b");
        assert!(e.contains("value `-b`"), "{e}");
        let e = invalid("é=1");
        assert!(e.contains("`é`"), "{e}");
    }

    #[test]
    fn label_selector_empty_requirements() {
        let e = invalid(",a");
        assert!(e.contains("empty requirement"), "{e}");
        let e = invalid("a,");
        assert!(e.contains("empty requirement after the last ','"), "{e}");
        let e = invalid("a,,b");
        assert!(e.contains("empty requirement"), "{e}");
    }

    #[test]
    fn label_selector_empty_key() {
        let e = invalid("=b");
        assert!(e.contains("expected a label key, found `=`"), "{e}");
        let e = invalid("!");
        assert!(e.contains("expected a label key"), "{e}");
        let e = invalid("/a=b");
        assert!(e.contains("empty prefix"), "{e}");
        let e = invalid("a/=b");
        assert!(e.contains("empty name"), "{e}");
    }

    #[test]
    fn label_selector_bad_keys() {
        let e = invalid("a/b/c=1");
        assert!(e.contains("more than one '/'"), "{e}");
        let e = invalid("Example.com/a=1");
        assert!(e.contains("prefix `Example.com`"), "{e}");
        let e = invalid(&format!("{}=1", "k".repeat(64)));
        assert!(e.contains("longer than 63"), "{e}");
        let e = invalid(&format!("{}/k=1", "a".repeat(254)));
        assert!(e.contains("253"), "{e}");
        let e = invalid(&format!("k={}", "v".repeat(64)));
        assert!(e.contains("value") && e.contains("longer than 63"), "{e}");
    }

    #[test]
    fn label_selector_parentheses() {
        let e = invalid("env in (a, b");
        assert!(e.contains("unbalanced parentheses"), "{e}");
        assert!(e.contains("`env in (a, b`"), "{e}");
        let e = invalid("env in a");
        assert!(e.contains("must be followed by '('"), "{e}");
        let e = invalid("env in (a b)");
        assert!(e.contains("expected ',' or ')'"), "{e}");
        let e = invalid("env in ((a))");
        assert!(e.contains("found `(`"), "{e}");
        let e = invalid("env in (a))");
        assert!(e.contains("found `)`"), "{e}");
        let e = invalid("env notin");
        assert!(e.contains("found the end of the selector"), "{e}");
    }

    #[test]
    fn label_selector_operators() {
        let e = invalid("a=b=c");
        assert!(e.contains("`a=b=c`") && e.contains("found `=`"), "{e}");
        let e = invalid("a b");
        assert!(e.contains("expected an operator"), "{e}");
        let e = invalid("!a=b");
        assert!(e.contains("`!a=b`") && e.contains("expected ','"), "{e}");
        let e = invalid("a=(b)");
        assert!(e.contains("expected a value after `=`"), "{e}");
        let e = invalid("a!b");
        assert!(
            e.contains("expected an operator") && e.contains("found `!`"),
            "{e}"
        );
    }

    #[test]
    fn label_selector_numeric_comparisons() {
        let e = invalid("a>b");
        assert!(e.contains("`>` needs a non-negative integer"), "{e}");
        let e = invalid("a<");
        assert!(e.contains("found the end of the selector"), "{e}");
        let e = invalid("a>-1");
        assert!(e.contains("integer"), "{e}");
        let e = invalid("a>99999999999999999999");
        assert!(e.contains("integer"), "{e}");
        let e = invalid("a>1.5");
        assert!(e.contains("integer"), "{e}");
    }

    #[test]
    fn label_selector_error_text_is_capped() {
        let s = format!("a in ({}", "x,".repeat(200));
        let e = invalid(&s);
        assert!(e.len() < 300, "{e}");
        assert!(e.contains("..."), "{e}");
    }
}
