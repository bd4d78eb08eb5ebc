//! Records: the immutable byte layout of one key's entry, and the encoding of its nodes or port names.

use crate::model::Node;

use super::layout::*;
use super::now_ms;

pub(super) const RECORD_HEADER: usize = 16;

pub(super) struct RecordView<'a> {
    pub(super) key: &'a [u8],
    pub(super) kind: u16,
    pub(super) count: u32,
    pub(super) changed_s: u32,
    pub(super) body_start: usize,
}

impl<'a> RecordView<'a> {
    pub(super) fn parse(b: &'a [u8]) -> Option<Self> {
        if b.len() < RECORD_HEADER {
            return None;
        }
        let key_len = u32::from_le_bytes(b[0..4].try_into().ok()?) as usize;
        let kind = u16::from_le_bytes(b[4..6].try_into().ok()?);
        let count = u32::from_le_bytes(b[8..12].try_into().ok()?);
        let key_end = RECORD_HEADER.checked_add(key_len)?;
        let body_start = round_up8(key_end);
        if body_start > b.len() {
            return None;
        }
        Some(RecordView {
            key: &b[RECORD_HEADER..key_end],
            kind,
            count,
            changed_s: u32::from_le_bytes(b[CHANGED_AT].try_into().ok()?),
            body_start,
        })
    }
}

/// Bytes 12..16 of a record: when its content last changed, in seconds since the epoch.
pub(super) const CHANGED_AT: std::ops::Range<usize> = 12..16;

/// Whether two encoded records hold the same content (whatever their change times).
pub(super) fn same_content(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.len() >= RECORD_HEADER
        && a[..CHANGED_AT.start] == b[..CHANGED_AT.start]
        && a[CHANGED_AT.end..] == b[CHANGED_AT.end..]
}

pub(super) fn stamp_changed(record: &mut [u8]) {
    let now = u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX);
    record[CHANGED_AT].copy_from_slice(&now.to_le_bytes());
}

pub(super) fn encode_record(key: &[u8], kind: u16, count: u32, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(round_up8(RECORD_HEADER + key.len()) + body.len() + 8);
    r.extend_from_slice(&(key.len() as u32).to_le_bytes());
    r.extend_from_slice(&kind.to_le_bytes());
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(&count.to_le_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(key);
    r.resize(round_up8(r.len()), 0);
    r.extend_from_slice(body);
    r
}

/// Encodes nodes as a port-entry body: `[u16 port][u8 host_len][host]` each. Hosts longer than 255 bytes cannot
/// be IP addresses and are skipped by the caller's validation; here they are truncated defensively.
pub fn encode_nodes(nodes: &[Node]) -> Vec<u8> {
    let mut b = Vec::with_capacity(nodes.len() * 16);
    for n in nodes {
        let host = &n.host.as_bytes()[..n.host.len().min(255)];
        b.extend_from_slice(&n.port.to_le_bytes());
        b.push(host.len() as u8);
        b.extend_from_slice(host);
    }
    b
}

/// Whether `body` holds exactly `count` items of its kind: nodes `[u16 port][u8 len][host]`, or port names
/// `[u8 len][name]`.
pub(super) fn body_is_valid(kind: u16, body: &[u8], count: u32) -> bool {
    let (prefix, len_at) = match kind {
        KIND_PORT => (3, 2),
        KIND_SERVICE => (1, 0),
        _ => return false,
    };
    let mut p = 0usize;
    for _ in 0..count {
        let Some(&item_len) = body.get(p + len_at) else {
            return false;
        };
        p += prefix + usize::from(item_len);
        if p > body.len() {
            return false;
        }
    }
    p == body.len()
}

/// The nodes of a port entry's body (`count` items); stops early, without error, at a short body.
pub fn decode_nodes(body: &[u8], count: u32) -> Vec<Node> {
    // Each node takes at least 3 bytes: a corrupt count cannot make this allocate more than the body's size.
    let mut nodes = Vec::with_capacity((count as usize).min(body.len() / 3));
    let mut p = 0;
    for _ in 0..count {
        let Some(hdr) = body.get(p..p + 3) else { break };
        let port = u16::from_le_bytes([hdr[0], hdr[1]]);
        let hl = hdr[2] as usize;
        let Some(host) = body.get(p + 3..p + 3 + hl) else {
            break;
        };
        nodes.push(Node {
            host: String::from_utf8_lossy(host).into_owned(),
            port,
        });
        p += 3 + hl;
    }
    nodes
}

pub(super) fn encode_names<S: AsRef<str>>(names: &[S]) -> Vec<u8> {
    let mut b = Vec::new();
    for n in names {
        let n = &n.as_ref().as_bytes()[..n.as_ref().len().min(255)];
        b.push(n.len() as u8);
        b.extend_from_slice(n);
    }
    b
}

pub(super) fn decode_names(body: &[u8], count: u32) -> Vec<String> {
    let mut names = Vec::with_capacity((count as usize).min(body.len()));
    let mut p = 0;
    for _ in 0..count {
        let Some(&l) = body.get(p) else { break };
        let Some(n) = body.get(p + 1..p + 1 + l as usize) else {
            break;
        };
        names.push(String::from_utf8_lossy(n).into_owned());
        p += 1 + l as usize;
    }
    names
}
