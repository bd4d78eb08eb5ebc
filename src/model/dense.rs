//! The dense form the watcher keeps of each object: only what publishing needs, packed. An IPv4 endpoint takes
//! 5 bytes (its conditions and its address), an IPv6 one 17; an address whose text is not the canonical form of
//! an IP address (IPv4 octets with leading zeros, IPv6 in capitals or uncompressed) keeps its text, so that
//! nodes always carry the text the API server sent. Ports keep their key (name, or number as text) and number.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::wire;

/// Endpoint flags, one byte per endpoint ahead of its address.
pub(super) const READY: u8 = 1;
pub(super) const SERVING: u8 = 2;
pub(super) const TERMINATING: u8 = 4;
/// The address is 16 bytes (IPv6); else 4.
const V6: u8 = 8;
/// The address is kept as text, the next of `Addresses::texts`; no bytes follow the flags.
const TEXT: u8 = 16;

/// A port of a slice or subset: its key (name, or number as text when unnamed) and number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Port {
    pub key: Box<str>,
    pub number: u16,
}

/// Endpoints packed: per endpoint its flags, then its address (4 or 16 bytes) unless it is kept as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Addresses {
    packed: Box<[u8]>,
    texts: Box<[Box<str>]>,
}

/// One endpoint read back from `Addresses`.
pub(super) struct Endpoint<'a> {
    pub flags: u8,
    pub address: Address<'a>,
}

pub(super) enum Address<'a> {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Text(&'a str),
}

impl Address<'_> {
    /// The address as nodes carry it: the text the API server sent.
    pub fn to_host(&self) -> String {
        match self {
            Address::V4(a) => v4_text(*a),
            Address::V6(a) => a.to_string(),
            Address::Text(t) => (*t).to_owned(),
        }
    }
}

/// An IPv4 address as dotted decimal, without the formatting machinery: nodes are rebuilt for every change of a
/// service, and a large one has thousands.
fn v4_text(a: Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// Builds `Addresses` one endpoint at a time.
#[derive(Default)]
pub(super) struct AddressesBuilder {
    packed: Vec<u8>,
    texts: Vec<Box<str>>,
}

impl AddressesBuilder {
    /// Adds an endpoint whose address passed `is_ip_like`.
    pub fn push(&mut self, flags: u8, text: &str) {
        if let Some(octets) = canonical_v4(text) {
            self.packed.push(flags);
            self.packed.extend_from_slice(&octets);
        } else if let Some(a) = text.parse::<Ipv6Addr>().ok().filter(|a| writes_as(a, text)) {
            self.packed.push(flags | V6);
            self.packed.extend_from_slice(&a.octets());
        } else {
            self.packed.push(flags | TEXT);
            self.texts.push(text.into());
        }
    }

    pub fn finish(self) -> Addresses {
        Addresses {
            packed: self.packed.into_boxed_slice(),
            texts: self.texts.into_boxed_slice(),
        }
    }
}

/// The octets of an IPv4 address written exactly as `v4_text` writes it (four decimal octets, no leading zeros),
/// else None: only such text may be packed as bytes and rebuilt.
fn canonical_v4(text: &str) -> Option<[u8; 4]> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?.as_bytes();
        let canonical = match part {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !canonical {
            return None;
        }
        *octet = part
            .iter()
            .try_fold(0u8, |n, d| n.checked_mul(10)?.checked_add(d - b'0'))?;
    }
    parts.next().is_none().then_some(octets)
}

/// Whether an IPv6 address's canonical text (RFC 5952, as Display writes it) is exactly `text`.
fn writes_as(a: &Ipv6Addr, text: &str) -> bool {
    struct Compare<'t> {
        rest: &'t str,
        same: bool,
    }
    impl std::fmt::Write for Compare<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            match self.rest.strip_prefix(s) {
                Some(rest) if self.same => self.rest = rest,
                _ => self.same = false,
            }
            Ok(())
        }
    }
    let mut c = Compare {
        rest: text,
        same: true,
    };
    let _ = write!(c, "{a}");
    c.same && c.rest.is_empty()
}

impl Addresses {
    pub fn iter(&self) -> impl Iterator<Item = Endpoint<'_>> {
        let mut at = 0;
        let mut texts = self.texts.iter();
        std::iter::from_fn(move || {
            let flags = *self.packed.get(at)?;
            at += 1;
            let address = if flags & TEXT != 0 {
                Address::Text(texts.next()?)
            } else if flags & V6 != 0 {
                let bytes: [u8; 16] = self.packed.get(at..at + 16)?.try_into().ok()?;
                at += 16;
                Address::V6(Ipv6Addr::from(bytes))
            } else {
                let bytes: [u8; 4] = self.packed.get(at..at + 4)?.try_into().ok()?;
                at += 4;
                Address::V4(Ipv4Addr::from(bytes))
            };
            Some(Endpoint { flags, address })
        })
    }
}

/// A port number usable as an upstream (1 to 65535).
fn port_number(p: Option<i64>) -> Option<u16> {
    p.and_then(|n| u16::try_from(n).ok()).filter(|n| *n != 0)
}

/// The usable ports of a list, keyed by name or, when unnamed, by number.
pub(super) fn ports(list: &Option<Vec<wire::Port<'_>>>) -> Box<[Port]> {
    wire::items(list)
        .iter()
        .filter_map(|p| {
            let number = port_number(p.port)?;
            let key = match p.name.as_deref() {
                Some(n) if !n.is_empty() => n.into(),
                _ => {
                    let mut k = String::new();
                    let _ = write!(k, "{number}");
                    k.into_boxed_str()
                }
            };
            Some(Port { key, number })
        })
        .collect()
}

/// A cheap plausibility check that an address is an IP literal (hex digits, dots and colons, at most 45 chars,
/// the longest IPv6 text form). It keeps anything that is not an IP (an FQDN, garbage) out of nginx's upstreams,
/// while still accepting legacy forms that strict parsers refuse, such as IPv4 octets with leading zeros that old
/// apiservers let through.
pub(super) fn is_ip_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 45
        && s.contains(['.', ':'])
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
}

/// One subset of an Endpoints object: its ports and its ready addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Subset {
    pub ports: Box<[Port]>,
    pub ready: Addresses,
}

pub(super) fn subset(s: &wire::Subset<'_>) -> Subset {
    let mut ready = AddressesBuilder::default();
    for a in wire::items(&s.addresses) {
        if let Some(ip) = a.ip.as_deref().filter(|ip| is_ip_like(ip)) {
            ready.push(READY | SERVING, ip);
        }
    }
    Subset {
        ports: ports(&s.ports),
        ready: ready.finish(),
    }
}

/// Where each endpoint of a slice runs, kept only when a topology mode is on: zone names and sets of hinted zones
/// once per slice, endpoints referring to them by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Placements {
    names: Box<[Box<str>]>,
    hint_sets: Box<[Box<[u16]>]>,
    /// Per endpoint, in `Addresses` order: its zone and its hint set, `NONE` when it has none.
    of: Box<[[u16; 2]]>,
}

const NONE: u16 = u16::MAX;

impl Placements {
    /// The zone of endpoint `i`, if it has one.
    pub fn zone(&self, i: usize) -> Option<&str> {
        let z = *self.of.get(i)?.first()?;
        self.names.get(usize::from(z)).map(|n| &**n)
    }

    /// The hint set of endpoint `i` (an index into `hint_names`), if it has hints.
    pub fn hint_set(&self, i: usize) -> Option<usize> {
        let h = *self.of.get(i)?.get(1)?;
        (h != NONE).then_some(usize::from(h))
    }

    /// Every hint set as zone names, indexed as `hint_set` answers.
    pub fn hint_names(&self) -> Vec<Vec<&str>> {
        self.hint_sets
            .iter()
            .map(|set| {
                set.iter()
                    .filter_map(|z| self.names.get(usize::from(*z)).map(|n| &**n))
                    .collect()
            })
            .collect()
    }
}

/// Builds `Placements`; the indexes keep a slice of many zones (only a hostile server sends one) linear to build.
#[derive(Default)]
struct PlacementsBuilder {
    names: Vec<Box<str>>,
    name_index: HashMap<Box<str>, u16>,
    hint_sets: Vec<Box<[u16]>>,
    set_index: HashMap<Box<[u16]>, u16>,
    of: Vec<[u16; 2]>,
}

impl PlacementsBuilder {
    /// The index of a zone name, added if new; `NONE` once the table is full (only a hostile slice gets there).
    fn name(&mut self, name: &str) -> u16 {
        if let Some(i) = self.name_index.get(name) {
            return *i;
        }
        let next = self.names.len();
        if next >= usize::from(NONE) {
            return NONE;
        }
        self.names.push(name.into());
        self.name_index.insert(name.into(), next as u16);
        next as u16
    }

    fn push(&mut self, ep: &wire::SliceEndpoint<'_>) {
        let zone = ep.zone.0.as_deref().map_or(NONE, |z| self.name(z));
        let hints = match &ep.hints.0 {
            None => NONE,
            Some(h) => {
                let set: Box<[u16]> = wire::items(&h.for_zones)
                    .iter()
                    .filter_map(|z| z.name.as_deref())
                    .map(|z| self.name(z))
                    .filter(|i| *i != NONE)
                    .collect();
                let next = self.hint_sets.len();
                if let Some(i) = self.set_index.get(&set) {
                    *i
                } else if next < usize::from(NONE) {
                    self.set_index.insert(set.clone(), next as u16);
                    self.hint_sets.push(set);
                    next as u16
                } else {
                    NONE
                }
            }
        };
        self.of.push([zone, hints]);
    }

    fn finish(self) -> Placements {
        Placements {
            names: self.names.into_boxed_slice(),
            hint_sets: self.hint_sets.into_boxed_slice(),
            of: self.of.into_boxed_slice(),
        }
    }
}

/// The endpoints of a slice that can be served (an IP address that passes `is_ip_like`), and with `placed`
/// where each of them runs; none for slices of other address types (FQDN has no defined meaning for an
/// upstream).
pub(super) fn slice_endpoints(
    s: &wire::EndpointSlice<'_>,
    placed: bool,
) -> (Addresses, Option<Placements>) {
    let mut b = AddressesBuilder::default();
    let mut placements = placed.then(PlacementsBuilder::default);
    if super::endpoints_usable(s) {
        for ep in wire::items(&s.endpoints) {
            let Some(ip) = ep.addresses.0.as_deref().filter(|ip| is_ip_like(ip)) else {
                continue;
            };
            let c = &ep.conditions;
            let mut flags = 0;
            if c.ready.unwrap_or(true) {
                flags |= READY;
            }
            if c.serving.unwrap_or(true) {
                flags |= SERVING;
            }
            if c.terminating.unwrap_or(false) {
                flags |= TERMINATING;
            }
            b.push(flags, ip);
            if let Some(p) = &mut placements {
                p.push(ep);
            }
        }
    }
    (b.finish(), placements.map(PlacementsBuilder::finish))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(texts: &[&str]) -> Vec<String> {
        let mut b = AddressesBuilder::default();
        for (i, t) in texts.iter().enumerate() {
            b.push(i as u8 & 7, t);
        }
        let a = b.finish();
        let back: Vec<(u8, String)> = a
            .iter()
            .map(|e| (e.flags & 7, e.address.to_host()))
            .collect();
        for (i, (flags, _)) in back.iter().enumerate() {
            assert_eq!(*flags, i as u8 & 7, "flags of {}", texts[i]);
        }
        back.into_iter().map(|(_, h)| h).collect()
    }

    #[test]
    fn every_address_comes_back_as_the_text_that_was_sent() {
        let texts = [
            "10.0.0.1",
            "fd00:10:244::5",
            "010.000.000.001",
            "FD00::A",
            "fd00:0:0:0:0:0:0:a",
            "::ffff:10.0.0.1",
            "::1",
            "255.255.255.255",
            "1.2.3",
            "::",
        ];
        assert_eq!(round_trip(&texts), texts);
    }

    #[test]
    fn ipv4_text_is_dotted_decimal() {
        for a in [
            [0, 0, 0, 0],
            [10, 0, 9, 10],
            [99, 100, 199, 200],
            [255, 255, 255, 255],
            [1, 20, 101, 7],
        ] {
            let a = Ipv4Addr::from(a);
            assert_eq!(v4_text(a), a.to_string());
        }
    }

    #[test]
    fn only_canonical_ipv4_text_is_packed() {
        for (text, want) in [
            ("0.0.0.0", Some([0, 0, 0, 0])),
            ("10.0.9.10", Some([10, 0, 9, 10])),
            ("255.255.255.255", Some([255, 255, 255, 255])),
            ("010.0.0.1", None),
            ("10.0.0.01", None),
            ("00.1.2.3", None),
            ("256.1.1.1", None),
            ("1.2.3", None),
            ("1.2.3.4.5", None),
            ("1.2.3.", None),
            ("1..2.3", None),
            ("+1.2.3.4", None),
            ("1.2.3.4 ", None),
            ("1000.1.1.1", None),
        ] {
            assert_eq!(canonical_v4(text), want, "{text}");
            if let Some(o) = want {
                assert_eq!(v4_text(Ipv4Addr::from(o)), text);
            }
        }
    }

    #[test]
    fn canonical_addresses_are_packed_as_bytes() {
        let mut b = AddressesBuilder::default();
        b.push(READY, "10.0.0.1");
        b.push(READY, "fd00::1");
        let a = b.finish();
        assert_eq!(a.packed.len(), 5 + 17);
        assert!(a.texts.is_empty());
        let mut b = AddressesBuilder::default();
        b.push(READY, "FD00::1");
        assert_eq!(b.finish().texts.len(), 1, "not canonical: kept as text");
    }
}
