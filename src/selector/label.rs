//! Label selector validation: the Kubernetes grammar and the label key/value rules, with errors that name the
//! requirement and the reason.

use std::fmt;

/// Why a label selector is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorError {
    /// A `,` with no requirement before it.
    EmptyRequirement {
        /// Byte offset of the `,`.
        offset: usize,
    },
    /// The selector ends with a `,`.
    TrailingComma,
    /// One requirement breaks the grammar or the key/value rules.
    Requirement {
        /// The requirement as written, capped for the message.
        text: String,
        /// What is wrong with it.
        source: RequirementError,
    },
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyRequirement { offset } => write!(
                f,
                "empty requirement at offset {offset}: a requirement must come before ','"
            ),
            Self::TrailingComma => f.write_str("empty requirement after the last ','"),
            Self::Requirement { text, source } => write!(f, "requirement `{text}`: {source}"),
        }
    }
}

impl std::error::Error for SelectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Requirement { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What is wrong with one requirement. `found` fields hold the offending token as shown to the reader: quoted in
/// backticks, or `the end of the selector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequirementError {
    /// No key where one must be.
    ExpectedKey {
        /// What stands there instead.
        found: String,
    },
    /// Neither an operator nor the end of the requirement after the key.
    ExpectedOperator {
        /// The key.
        key: String,
        /// What follows it.
        found: String,
    },
    /// `=`, `==` or `!=` followed by something other than a value.
    ExpectedValue {
        /// The operator.
        op: String,
        /// What follows it.
        found: String,
    },
    /// `>` or `<` not followed by a non-negative integer.
    NotInteger {
        /// The operator.
        op: String,
        /// What follows it.
        found: String,
    },
    /// `in` or `notin` not followed by `(`.
    ExpectedOpen {
        /// The operator.
        op: String,
        /// What follows it.
        found: String,
    },
    /// An `in`/`notin` list that is never closed.
    Unclosed {
        /// The operator.
        op: String,
    },
    /// Something other than a value, `,` or `)` where a list item may start.
    ExpectedItem {
        /// The operator of the list.
        op: String,
        /// What stands there.
        found: String,
    },
    /// Something other than `,` or `)` after a list item.
    ExpectedSeparator {
        /// The operator of the list.
        op: String,
        /// What stands there.
        found: String,
    },
    /// A complete requirement followed by something other than `,` or the end.
    ExpectedEnd {
        /// What follows it.
        found: String,
    },
    /// A key with more than one `/`.
    KeySlashes {
        /// The key.
        key: String,
    },
    /// A key with an empty prefix before its `/`.
    KeyEmptyPrefix {
        /// The key.
        key: String,
    },
    /// A key prefix that is not a lowercase DNS subdomain.
    KeyPrefix {
        /// The prefix.
        prefix: String,
    },
    /// A key with an empty name.
    KeyEmptyName {
        /// The key.
        key: String,
    },
    /// A key name over 63 characters.
    KeyNameTooLong {
        /// The name, capped for the message.
        name: String,
    },
    /// A key name with characters or ends a label name may not have.
    KeyName {
        /// The name.
        name: String,
    },
    /// A value over 63 characters.
    ValueTooLong {
        /// The value, capped for the message.
        value: String,
    },
    /// A value with characters or ends a label value may not have.
    Value {
        /// The value.
        value: String,
    },
}

impl fmt::Display for RequirementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExpectedKey { found } => write!(f, "expected a label key, found {found}"),
            Self::ExpectedOperator { key, found } => write!(
                f,
                "expected an operator (=, ==, !=, in, notin, >, <), ',' or the end after key `{key}`, found {found}"
            ),
            Self::ExpectedValue { op, found } => {
                write!(f, "expected a value after `{op}`, found {found}")
            }
            Self::NotInteger { op, found } => write!(
                f,
                "`{op}` needs a non-negative integer value, found {found}"
            ),
            Self::ExpectedOpen { op, found } => {
                write!(f, "`{op}` must be followed by '(', found {found}")
            }
            Self::Unclosed { op } => {
                write!(f, "unbalanced parentheses: `{op} (` is never closed")
            }
            Self::ExpectedItem { op, found } => write!(
                f,
                "expected a value, ',' or ')' in the `{op}` list, found {found}"
            ),
            Self::ExpectedSeparator { op, found } => {
                write!(f, "expected ',' or ')' in the `{op}` list, found {found}")
            }
            Self::ExpectedEnd { found } => {
                write!(f, "expected ',' or the end of the selector, found {found}")
            }
            Self::KeySlashes { key } => write!(f, "key `{key}` has more than one '/'"),
            Self::KeyEmptyPrefix { key } => {
                write!(f, "key `{key}` has an empty prefix before '/'")
            }
            Self::KeyPrefix { prefix } => write!(
                f,
                "key prefix `{prefix}` must be a lowercase DNS subdomain of at most 253 characters"
            ),
            Self::KeyEmptyName { key } => write!(f, "key `{key}` has an empty name"),
            Self::KeyNameTooLong { name } => {
                write!(f, "key name `{name}` is longer than 63 characters")
            }
            Self::KeyName { name } => write!(
                f,
                "key name `{name}` must be alphanumeric at both ends with only [-A-Za-z0-9_.] inside"
            ),
            Self::ValueTooLong { value } => {
                write!(f, "value `{value}` is longer than 63 characters")
            }
            Self::Value { value } => write!(
                f,
                "value `{value}` must be empty or alphanumeric at both ends with only [-A-Za-z0-9_.] inside"
            ),
        }
    }
}

impl std::error::Error for RequirementError {}

/// Checks `s` against the Kubernetes label selector grammar and the label
/// key/value rules, accepting exactly what the apiserver accepts (so a
/// selector we pass is not answered with 400). The empty selector is valid.
///
/// The error names the offending requirement and the reason.
pub fn validate_label_selector(s: &str) -> Result<(), SelectorError> {
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
            return Err(SelectorError::EmptyRequirement { offset: start });
        }
        if let Err(source) = p.requirement() {
            return Err(SelectorError::Requirement {
                text: requirement_text(s, start),
                source,
            });
        }
        let next = p.next();
        match next.kind {
            Kind::End => return Ok(()),
            Kind::Comma => {
                if p.peek().kind == Kind::End {
                    return Err(SelectorError::TrailingComma);
                }
            }
            _ => {
                return Err(SelectorError::Requirement {
                    text: requirement_text(s, start),
                    source: RequirementError::ExpectedEnd {
                        found: next.show(s),
                    },
                });
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
    fn requirement(&mut self) -> Result<(), RequirementError> {
        let negated = self.peek().kind == Kind::Not;
        if negated {
            self.next();
        }
        let key = self.next();
        if key.kind != Kind::Ident {
            return Err(RequirementError::ExpectedKey {
                found: key.show(self.src),
            });
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
                    _ => Err(RequirementError::ExpectedValue {
                        op: op.text(self.src).to_owned(),
                        found: v.show(self.src),
                    }),
                }
            }
            Kind::Gt | Kind::Lt => {
                self.next();
                let v = self.next();
                let text = v.text(self.src);
                if v.kind != Kind::Ident || !is_integer(text) {
                    return Err(RequirementError::NotInteger {
                        op: op.text(self.src).to_owned(),
                        found: v.show(self.src),
                    });
                }
                check_value(text)
            }
            Kind::Ident if matches!(op.text(self.src), "in" | "notin") => {
                self.next();
                self.value_set(op.text(self.src))
            }
            _ => Err(RequirementError::ExpectedOperator {
                key: key_text.to_owned(),
                found: op.show(self.src),
            }),
        }
    }

    /// `( v1, v2, ... )`. Empty items are allowed, as the apiserver allows
    /// them (`()` and `(a,)` select the empty value too).
    fn value_set(&mut self, op: &str) -> Result<(), RequirementError> {
        let op = op.to_owned();
        let open = self.next();
        if open.kind != Kind::Open {
            return Err(RequirementError::ExpectedOpen {
                op,
                found: open.show(self.src),
            });
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
                    return Err(RequirementError::Unclosed { op });
                }
                _ if want_value => {
                    return Err(RequirementError::ExpectedItem {
                        op,
                        found: t.show(self.src),
                    });
                }
                _ => {
                    return Err(RequirementError::ExpectedSeparator {
                        op,
                        found: t.show(self.src),
                    });
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

fn check_key(key: &str) -> Result<(), RequirementError> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Err(RequirementError::KeySlashes {
            key: key.to_owned(),
        });
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(RequirementError::KeyEmptyPrefix {
                key: key.to_owned(),
            });
        }
        if !is_dns_subdomain(prefix) {
            return Err(RequirementError::KeyPrefix {
                prefix: prefix.to_owned(),
            });
        }
    }
    if name.is_empty() {
        return Err(RequirementError::KeyEmptyName {
            key: key.to_owned(),
        });
    }
    if name.len() > 63 {
        return Err(RequirementError::KeyNameTooLong {
            name: truncate(name, 63),
        });
    }
    if !is_label_token(name) {
        return Err(RequirementError::KeyName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), RequirementError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err(RequirementError::ValueTooLong {
            value: truncate(value, 63),
        });
    }
    if !is_label_token(value) {
        return Err(RequirementError::Value {
            value: value.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Err(e) => e.to_string(),
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

    #[test]
    fn label_selector_errors_carry_the_requirement_and_the_cause() {
        let e = validate_label_selector("a=b,c>x").unwrap_err();
        assert_eq!(
            e,
            SelectorError::Requirement {
                text: "c>x".into(),
                source: RequirementError::NotInteger {
                    op: ">".into(),
                    found: "`x`".into(),
                },
            }
        );
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("`>` needs a non-negative integer value, found `x`")
        );
        assert_eq!(
            validate_label_selector(",a"),
            Err(SelectorError::EmptyRequirement { offset: 0 })
        );
    }
}
