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

mod label;
pub use label::validate_label_selector;

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
}
