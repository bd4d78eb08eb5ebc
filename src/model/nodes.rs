//! The conversion of kept objects to upstream nodes, per port key.
//!
//! The output is canonical (ports in key order, nodes sorted by host text then port, and de-duplicated), so that
//! equal content always produces equal records, and the store can tell an unchanged entry from a changed one by
//! comparing bytes.

use std::collections::BTreeMap;

use super::dense::{READY, SERVING, TERMINATING};
use super::{Node, PortNodes, Slice, Subsets};

/// Nodes of a v1 Endpoints object: per subset, ready `addresses` × `ports`, merged across subsets by port key.
/// `notReadyAddresses` are never served, but their subset's ports are still known (with possibly no nodes).
pub fn endpoints_ports(e: &impl AsRef<Subsets>) -> PortNodes {
    let mut acc: BTreeMap<&str, Vec<Node>> = BTreeMap::new();
    for subset in e.as_ref().0.iter() {
        for p in subset.ports.iter() {
            let nodes = acc.entry(&p.key).or_default();
            nodes.extend(subset.ready.iter().map(|ep| Node {
                host: ep.address.to_host(),
                port: p.number,
            }));
        }
    }
    acc.into_iter()
        .map(|(key, mut nodes)| {
            nodes.sort_unstable();
            nodes.dedup();
            (key.to_owned(), nodes)
        })
        .collect()
}

/// The state of one candidate copy of an endpoint during slice merging.
#[derive(Clone, Copy)]
struct Candidate {
    ready: bool,
    serving: bool,
    terminating: bool,
}

impl Candidate {
    fn of(flags: u8) -> Candidate {
        Candidate {
            ready: flags & READY != 0,
            serving: flags & SERVING != 0,
            terminating: flags & TERMINATING != 0,
        }
    }

    /// Replacement rule for duplicates: a non-terminating copy beats a terminating one (as kube-proxy does: a
    /// reused IP may belong to both a dying and a new pod), then a ready copy beats a not-ready one; on a full tie
    /// the first copy in slice-name order stays.
    fn beats(self, other: Candidate) -> bool {
        if self.terminating != other.terminating {
            return !self.terminating;
        }
        self.ready && !other.ready
    }
}

/// Nodes of one Service from all of its EndpointSlices (any order).
///
/// Each slice contributes its own ports × its endpoints: ports may differ between slices of a service when a
/// named targetPort resolves to different numbers on different pods. An endpoint appearing more than once for the
/// same port key and number (transiently in two slices while the controller moves it) is decided by one preferred
/// copy. A port serves its ready endpoints; when it has none (a rollout where every pod is shutting down), it
/// serves the ones still serving while terminating, as kube-proxy does, so connections drain instead of failing.
pub fn slices_ports<'a, S: AsRef<Slice> + 'a>(
    slices: impl IntoIterator<Item = &'a S>,
) -> PortNodes {
    let mut ordered: Vec<&Slice> = slices.into_iter().map(AsRef::as_ref).collect();
    // Stable, so slices of one name keep the caller's order.
    ordered.sort_by(|a, b| a.name.cmp(&b.name));

    // Every copy, in slice-name order; sorted stably by node below, so copies of one node keep that order.
    let mut acc: BTreeMap<&str, Vec<(Node, Candidate)>> = BTreeMap::new();
    for slice in ordered {
        for p in slice.ports.iter() {
            let copies = acc.entry(&p.key).or_default();
            copies.extend(slice.endpoints.iter().map(|ep| {
                let node = Node {
                    host: ep.address.to_host(),
                    port: p.number,
                };
                (node, Candidate::of(ep.flags))
            }));
        }
    }
    acc.into_iter()
        .map(|(key, mut copies)| {
            copies.sort_by(|a, b| a.0.cmp(&b.0));
            let mut chosen: Vec<(Node, Candidate)> = Vec::with_capacity(copies.len());
            for (node, copy) in copies {
                match chosen.last_mut() {
                    Some(last) if last.0 == node => {
                        if copy.beats(last.1) {
                            last.1 = copy;
                        }
                    }
                    _ => chosen.push((node, copy)),
                }
            }
            let any_ready = chosen.iter().any(|(_, c)| c.ready);
            let served = chosen
                .into_iter()
                .filter(|(_, c)| {
                    if any_ready {
                        c.ready
                    } else {
                        c.serving && c.terminating
                    }
                })
                .map(|(n, _)| n)
                .collect();
            (key.to_owned(), served)
        })
        .collect()
}
