//! Topology-aware node priorities: which endpoints of a service port the gateway should prefer, from the zone it
//! runs in and what the EndpointSlices say about each endpoint (its `zone`, and the `hints.forZones` the
//! EndpointSlice controller writes for Services with `trafficDistribution: PreferClose` or the
//! `service.kubernetes.io/topology-mode: Auto` annotation).
//!
//! A node gets priority 0 (preferred) or -1 (used only when no node of priority 0 is left). APISIX's balancer
//! works through priorities from the highest down: it picks among the nodes of the highest priority, and moves to
//! the next lower one only when every node of the higher one has failed for this request (or is unhealthy).
//! Nodes without a priority count as 0 there.

use std::fmt;

/// Priority of preferred nodes (APISIX's default priority).
pub const PREFERRED: i8 = 0;
/// Priority of the nodes used only when no preferred node is left.
pub const FALLBACK: i8 = -1;

/// How a cluster's nodes are prioritised (`topology.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No priorities: nodes are published exactly as without topology.
    #[default]
    Off,
    /// Endpoints in the gateway's zone first, the others as fallback.
    PreferZone,
    /// Endpoints hinted for the gateway's zone first, as kube-proxy routes (see `priorities`).
    Hints,
}

impl Mode {
    pub const NAMES: &[&str] = &["off", "prefer_zone", "hints"];

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "off" => Some(Mode::Off),
            "prefer_zone" => Some(Mode::PreferZone),
            "hints" => Some(Mode::Hints),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::PreferZone => "prefer_zone",
            Mode::Hints => "hints",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster's topology setting: the mode and the zone the gateway runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub mode: Mode,
    /// The gateway's zone; empty when unknown (a `${VAR}` that resolved to nothing), which makes every node
    /// preferred.
    pub zone: String,
}

impl Topology {
    /// Whether nodes carry a zone and a priority.
    pub fn is_on(&self) -> bool {
        self.mode != Mode::Off
    }

    /// What to warn about when a watcher starts, if anything.
    pub fn warning(&self) -> Option<String> {
        (self.is_on() && self.zone.is_empty()).then(|| {
            format!(
                "topology.mode is {} but topology.zone is empty: the gateway's zone is unknown, so every node \
                 gets priority 0 (no zone is preferred)",
                self.mode
            )
        })
    }
}

/// What the rules need to know of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The endpoint's `zone`, if the EndpointSlice gives one.
    pub zone: Option<&'a str>,
    /// The zone names of its `hints.forZones`; `None` when it has no hints. An empty list counts as no hints.
    pub hints: Option<&'a [&'a str]>,
}

/// The mode that applies to a port's served nodes: with no ready endpoint a port serves its terminating ones, and
/// kube-proxy then ignores hints (it only uses them over ready endpoints), so `Hints` ranks them all alike.
pub fn mode_for(mode: Mode, any_ready: bool) -> Mode {
    match mode {
        Mode::Hints if !any_ready => Mode::Off,
        m => m,
    }
}

/// The priority of each node of one service port, in the order given.
///
/// * `Off`, or an unknown (empty) gateway zone: every node 0.
/// * `PreferZone`: nodes whose endpoint is in the gateway's zone 0, the others (an endpoint without a zone
///   included) -1.
/// * `Hints`, as kube-proxy decides whether to use topology hints: when every endpoint has hints and at least one
///   is hinted for the gateway's zone, those hinted for it 0 and the others -1; otherwise (an endpoint without
///   hints, or none for this zone) every node 0. kube-proxy drops the other endpoints; here they stay as
///   fallback.
pub fn priorities(mode: Mode, gateway_zone: &str, nodes: &[Placement<'_>]) -> Vec<i8> {
    let all = |p: i8| vec![p; nodes.len()];
    if gateway_zone.is_empty() {
        return all(PREFERRED);
    }
    let rank = |preferred: bool| if preferred { PREFERRED } else { FALLBACK };
    match mode {
        Mode::Off => all(PREFERRED),
        Mode::PreferZone => nodes
            .iter()
            .map(|n| rank(n.zone == Some(gateway_zone)))
            .collect(),
        Mode::Hints => {
            let hinted_here =
                |n: &Placement<'_>| n.hints.is_some_and(|h| h.contains(&gateway_zone));
            let usable = nodes.iter().all(|n| n.hints.is_some_and(|h| !h.is_empty()))
                && nodes.iter().any(hinted_here);
            if usable {
                nodes.iter().map(|n| rank(hinted_here(n))).collect()
            } else {
                all(PREFERRED)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoned(zone: &str) -> Placement<'_> {
        Placement {
            zone: Some(zone),
            hints: None,
        }
    }

    fn hinted<'a>(zone: &'a str, hints: &'a [&'a str]) -> Placement<'a> {
        Placement {
            zone: Some(zone),
            hints: Some(hints),
        }
    }

    #[test]
    fn prefer_zone_puts_the_gateways_zone_first() {
        let nodes = [
            zoned("a"),
            zoned("b"),
            zoned("a"),
            zoned("c"),
            Placement::default(),
        ];
        assert_eq!(
            priorities(Mode::PreferZone, "a", &nodes),
            [0, -1, 0, -1, -1]
        );
        assert_eq!(
            priorities(Mode::PreferZone, "c", &nodes),
            [-1, -1, -1, 0, -1]
        );
        // No endpoint in the gateway's zone: one priority for all, so every node is used.
        assert_eq!(
            priorities(Mode::PreferZone, "d", &nodes),
            [-1, -1, -1, -1, -1]
        );
        // Zones compare exactly.
        assert_eq!(priorities(Mode::PreferZone, "A", &[zoned("a")]), [-1]);
    }

    #[test]
    fn hints_all_hinted_prefers_the_endpoints_hinted_for_this_zone() {
        let nodes = [
            hinted("a", &["a"]),
            hinted("b", &["b"]),
            hinted("c", &["c"]),
            // The controller may hint an endpoint of one zone for another, to even out capacity.
            hinted("b", &["a", "b"]),
        ];
        assert_eq!(priorities(Mode::Hints, "a", &nodes), [0, -1, -1, 0]);
        assert_eq!(priorities(Mode::Hints, "b", &nodes), [-1, 0, -1, 0]);
        assert_eq!(priorities(Mode::Hints, "c", &nodes), [-1, -1, 0, -1]);
    }

    #[test]
    fn hints_are_ignored_when_some_endpoint_has_none() {
        let nodes = [hinted("a", &["a"]), hinted("b", &["b"]), zoned("c")];
        assert_eq!(priorities(Mode::Hints, "a", &nodes), [0, 0, 0]);
        // An empty forZones list is no hint either.
        let nodes = [hinted("a", &["a"]), hinted("b", &[])];
        assert_eq!(priorities(Mode::Hints, "a", &nodes), [0, 0]);
    }

    #[test]
    fn hints_are_ignored_when_none_is_for_this_zone() {
        let nodes = [hinted("a", &["a"]), hinted("b", &["b"])];
        assert_eq!(priorities(Mode::Hints, "c", &nodes), [0, 0]);
    }

    #[test]
    fn an_unknown_gateway_zone_prefers_nothing() {
        let nodes = [hinted("a", &["a"]), hinted("b", &["b"]), zoned("")];
        for mode in [Mode::Off, Mode::PreferZone, Mode::Hints] {
            assert_eq!(priorities(mode, "", &nodes), [0, 0, 0], "{mode}");
        }
        // An endpoint with an empty zone is not "in" an empty gateway zone, nor in any other.
        assert_eq!(
            priorities(Mode::PreferZone, "a", &[zoned(""), zoned("a")]),
            [-1, 0]
        );
    }

    #[test]
    fn hints_mode_ignores_the_endpoints_own_zone() {
        // Hinted for b although in a: the hint decides.
        let nodes = [hinted("a", &["b"]), hinted("b", &["a"])];
        assert_eq!(priorities(Mode::Hints, "a", &nodes), [-1, 0]);
    }

    #[test]
    fn off_and_no_nodes() {
        let nodes = [zoned("a"), zoned("b")];
        assert_eq!(priorities(Mode::Off, "a", &nodes), [0, 0]);
        for mode in [Mode::Off, Mode::PreferZone, Mode::Hints] {
            assert!(priorities(mode, "a", &[]).is_empty());
        }
    }

    #[test]
    fn modes_parse_by_name() {
        for name in Mode::NAMES {
            assert_eq!(Mode::parse(name).map(Mode::as_str), Some(*name));
        }
        assert_eq!(Mode::parse("PreferZone"), None);
        assert_eq!(Mode::default(), Mode::Off);
        let t = Topology {
            mode: Mode::Hints,
            zone: String::new(),
        };
        assert!(t.warning().unwrap().contains("topology.zone is empty"));
        assert_eq!(Topology::default().warning(), None);
    }
}
