//! The API server's host as configured or as a kubeconfig's server URL gives it: an IPv4 or IPv6 literal, or a DNS
//! name.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A valid host, without IPv6 brackets; `None` if invalid.
pub fn normalize_host(h: &str) -> Option<String> {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(|_| inner.to_owned());
    }
    if h.contains(':') {
        return h.parse::<Ipv6Addr>().ok().map(|_| h.to_owned());
    }
    if h.parse::<Ipv4Addr>().is_ok() || is_dns_name(h) {
        return Some(h.to_owned());
    }
    None
}

/// A DNS name, any case: labels of [A-Za-z0-9-] not starting or ending with
/// '-', at most 63 each and 253 in all. The last label may not be all digits,
/// so that a malformed IPv4 such as `10.0.0.256` is not taken as a name.
fn is_dns_name(h: &str) -> bool {
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let labels_ok = h.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    });
    let last_numeric = h
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()));
    labels_ok && !last_numeric
}
