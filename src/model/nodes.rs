//! The conversion of kept objects to upstream nodes, per port key.
//!
//! The output is canonical (ports in key order, nodes sorted by host text then port, and de-duplicated), so that
//! equal content always produces equal records, and the store can tell an unchanged entry from a changed one by
//! comparing bytes.

use std::collections::BTreeMap;

use super::dense::{READY, SERVING, TERMINATING};
use super::{Node, NodeTopology, PortNodes, Slice, Subsets};
use crate::topology::{self, Placement, Topology};

/// Nodes of a v1 Endpoints object: per subset, ready `addresses` × `ports`, merged across subsets by port key.
/// `notReadyAddresses` are never served, but their subset's ports are still known (with possibly no nodes).
pub fn endpoints_ports(e: &impl AsRef<Subsets>) -> PortNodes {
    let mut acc: BTreeMap<&str, Vec<Node>> = BTreeMap::new();
    for subset in e.as_ref().0.iter() {
        for p in subset.ports.iter() {
            let nodes = acc.entry(&p.key).or_default();
            nodes.extend(
                subset
                    .ready
                    .iter()
                    .map(|ep| Node::new(ep.address.to_host(), p.number)),
            );
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

/// Nodes of one Service from all of its EndpointSlices (any order), without topology.
pub fn slices_ports<'a, S: AsRef<Slice> + 'a>(
    slices: impl IntoIterator<Item = &'a S>,
) -> PortNodes {
    slices_ports_with(slices, &Topology::default())
}

/// Nodes of one Service from all of its EndpointSlices (any order); with a topology mode on, each node carries
/// its endpoint's zone and a priority (see `crate::topology`), which needs slices parsed with their placements.
///
/// Each slice contributes its own ports × its endpoints: ports may differ between slices of a service when a
/// named targetPort resolves to different numbers on different pods. An endpoint appearing more than once for the
/// same port key and number (transiently in two slices while the controller moves it) is decided by one preferred
/// copy. A port serves its ready endpoints; when it has none (a rollout where every pod is shutting down), it
/// serves the ones still serving while terminating, as kube-proxy does, so connections drain instead of failing.
pub fn slices_ports_with<'a, S: AsRef<Slice> + 'a>(
    slices: impl IntoIterator<Item = &'a S>,
    topology: &Topology,
) -> PortNodes {
    let mut ordered: Vec<&Slice> = slices.into_iter().map(AsRef::as_ref).collect();
    // Stable, so slices of one name keep the caller's order.
    ordered.sort_by(|a, b| a.name.cmp(&b.name));

    // Every copy, in slice-name order; sorted stably by node below, so copies of one node keep that order.
    let mut acc: BTreeMap<&str, Vec<EndpointCopy>> = BTreeMap::new();
    for (s, slice) in ordered.iter().enumerate() {
        for p in slice.ports.iter() {
            let copies = acc.entry(&p.key).or_default();
            copies.extend(
                slice
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(e, ep)| EndpointCopy {
                        node: Node::new(ep.address.to_host(), p.number),
                        state: Candidate::of(ep.flags),
                        origin: (s, e),
                    }),
            );
        }
    }
    let placed = Placed::new(&ordered, topology);
    acc.into_iter()
        .map(|(key, mut copies)| {
            copies.sort_by(|a, b| a.node.cmp(&b.node));
            let mut chosen: Vec<EndpointCopy> = Vec::with_capacity(copies.len());
            for copy in copies {
                match chosen.last_mut() {
                    Some(last) if last.node == copy.node => {
                        if copy.state.beats(last.state) {
                            *last = copy;
                        }
                    }
                    _ => chosen.push(copy),
                }
            }
            let any_ready = chosen.iter().any(|c| c.state.ready);
            chosen.retain(|c| {
                if any_ready {
                    c.state.ready
                } else {
                    c.state.serving && c.state.terminating
                }
            });
            let served = match &placed {
                Some(placed) => placed.prioritise(chosen, any_ready),
                None => chosen.into_iter().map(|c| c.node).collect(),
            };
            (key.to_owned(), served)
        })
        .collect()
}

/// One copy of an endpoint for one port: the node it makes, its state, and where it came from (slice and endpoint
/// index), for its placement.
struct EndpointCopy {
    node: Node,
    state: Candidate,
    origin: (usize, usize),
}

/// The placements of a service's slices, resolved once per service when a topology mode is on.
struct Placed<'a> {
    topology: &'a Topology,
    slices: &'a [&'a Slice],
    /// Per slice, its hint sets as zone names.
    hint_names: Vec<Vec<Vec<&'a str>>>,
}

impl<'a> Placed<'a> {
    fn new(slices: &'a [&'a Slice], topology: &'a Topology) -> Option<Placed<'a>> {
        topology.is_on().then(|| Placed {
            topology,
            slices,
            hint_names: slices
                .iter()
                .map(|s| {
                    s.placements
                        .as_ref()
                        .map(|p| p.hint_names())
                        .unwrap_or_default()
                })
                .collect(),
        })
    }

    fn placement(&self, (s, e): (usize, usize)) -> Placement<'_> {
        let placements = self.slices.get(s).and_then(|sl| sl.placements.as_deref());
        Placement {
            zone: placements.and_then(|p| p.zone(e)),
            hints: placements
                .and_then(|p| p.hint_set(e))
                .and_then(|h| self.hint_names.get(s)?.get(h))
                .map(Vec::as_slice),
        }
    }

    /// The served nodes of one port with their zone and priority (`any_ready`: whether they are ready ones, not
    /// the terminating fallback).
    fn prioritise(&self, served: Vec<EndpointCopy>, any_ready: bool) -> Vec<Node> {
        let placements: Vec<Placement<'_>> =
            served.iter().map(|c| self.placement(c.origin)).collect();
        let mode = topology::mode_for(self.topology.mode, any_ready);
        let priorities = topology::priorities(mode, &self.topology.zone, &placements);
        served
            .into_iter()
            .zip(placements.iter().zip(priorities))
            .map(|(c, (p, priority))| Node {
                topology: Some(NodeTopology {
                    zone: p.zone.filter(|z| !z.is_empty()).map(str::to_owned),
                    priority,
                }),
                ..c.node
            })
            .collect()
    }
}
