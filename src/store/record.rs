//! Records: the immutable byte layout of one key's entry, and the encoding of its nodes or port names.

use crate::model::{Node, NodeTopology};

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

/// Set in a node's host-length byte when the node carries a topology part after its host.
const TOPOLOGY_FLAG: u8 = 0x80;
/// Longest host a node record holds (the length byte's other 7 bits); an IP literal takes at most 45.
const MAX_HOST_LEN: usize = 0x7f;

/// Encodes nodes as a port-entry body: `[u16 port][u8 host_len][host]` each. A node with a topology (a cluster
/// with `topology.mode` on) sets the high bit of `host_len` and follows its host with `[i8 priority][u8 zone_len]
/// [zone]` (zone_len 0: no zone); without one, the bytes are exactly the plain form. Hosts longer than 127 bytes
/// cannot be IP addresses and are skipped by the caller's validation; here they are truncated defensively, as are
/// zones beyond 255 bytes (Kubernetes label values have at most 63).
pub fn encode_nodes(nodes: &[Node]) -> Vec<u8> {
    let mut b = Vec::with_capacity(nodes.len() * 16);
    for n in nodes {
        let host = &n.host.as_bytes()[..n.host.len().min(MAX_HOST_LEN)];
        b.extend_from_slice(&n.port.to_le_bytes());
        let flag = if n.topology.is_some() {
            TOPOLOGY_FLAG
        } else {
            0
        };
        b.push(host.len() as u8 | flag);
        b.extend_from_slice(host);
        if let Some(t) = &n.topology {
            let zone = t.zone.as_deref().unwrap_or("").as_bytes();
            let zone = &zone[..zone.len().min(255)];
            b.push(t.priority as u8);
            b.push(zone.len() as u8);
            b.extend_from_slice(zone);
        }
    }
    b
}

/// The extent of the node starting at `p`: (port, host range, topology part start if any, next node's start).
fn node_at(body: &[u8], p: usize) -> Option<(u16, std::ops::Range<usize>, Option<usize>, usize)> {
    let hdr = body.get(p..p.checked_add(3)?)?;
    let port = u16::from_le_bytes([hdr[0], hdr[1]]);
    let host_len = usize::from(hdr[2] & !TOPOLOGY_FLAG);
    let host = p + 3..p + 3 + host_len;
    if host.end > body.len() {
        return None;
    }
    if hdr[2] & TOPOLOGY_FLAG == 0 {
        return Some((port, host.clone(), None, host.end));
    }
    let zone_len = usize::from(*body.get(host.end + 1)?);
    let end = host.end + 2 + zone_len;
    (end <= body.len()).then_some((port, host.clone(), Some(host.end), end))
}

/// Whether `body` holds exactly `count` items of its kind: nodes (see `encode_nodes`), or port names
/// `[u8 len][name]`.
pub(super) fn body_is_valid(kind: u16, body: &[u8], count: u32) -> bool {
    let mut p = 0usize;
    match kind {
        KIND_PORT => {
            for _ in 0..count {
                let Some((.., next)) = node_at(body, p) else {
                    return false;
                };
                p = next;
            }
        }
        KIND_SERVICE => {
            for _ in 0..count {
                let Some(&len) = body.get(p) else {
                    return false;
                };
                p += 1 + usize::from(len);
                if p > body.len() {
                    return false;
                }
            }
        }
        _ => return false,
    }
    p == body.len()
}

/// The nodes of a port entry's body (`count` items); stops early, without error, at a short body.
pub fn decode_nodes(body: &[u8], count: u32) -> Vec<Node> {
    // Each node takes at least 3 bytes: a corrupt count cannot make this allocate more than the body's size.
    let mut nodes = Vec::with_capacity((count as usize).min(body.len() / 3));
    let mut p = 0;
    for _ in 0..count {
        let Some((port, host, topology, next)) = node_at(body, p) else {
            break;
        };
        nodes.push(Node {
            host: String::from_utf8_lossy(&body[host]).into_owned(),
            port,
            topology: topology.map(|t| {
                let zone = &body[t + 2..next];
                NodeTopology {
                    priority: body[t] as i8,
                    zone: (!zone.is_empty()).then(|| String::from_utf8_lossy(zone).into_owned()),
                }
            }),
        });
        p = next;
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
