//! Query-string decoding and the apiserver's conversion rules for list/watch parameters.

/// Decoded `key=value` pairs in request order.
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Form decoding as Go's `url.ParseQuery`: `+` is a space, `%XX` a byte.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect();
        Query { pairs }
    }

    /// First value of `key` (the apiserver converts a repeated parameter by taking the first).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Boolean conversion: absent is false; "0" and "false" (any case) are false; anything
    /// else, including an empty value, is true.
    pub fn bool(&self, key: &str) -> bool {
        self.opt_bool(key).unwrap_or(false)
    }

    /// Like `bool`, but `None` when absent (for `sendInitialEvents`, a *bool).
    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        self.get(key)
            .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_like_the_apiserver() {
        let q = Query::parse(Some("a=1&b=true&c=True&d=&e=0&f=FALSE&g=no&h"));
        for k in ["a", "b", "c", "d", "g", "h"] {
            assert!(q.bool(k), "{k}");
        }
        for k in ["e", "f", "missing"] {
            assert!(!q.bool(k), "{k}");
        }
        assert_eq!(q.opt_bool("missing"), None);
    }

    #[test]
    fn decoding() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a%2Cb)&x=%zz&x=2"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a,b)"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(percent_decode("%2"), "%2");
    }
}
