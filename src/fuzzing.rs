//! Entry points for the fuzz targets under `fuzz/` (cargo-fuzz). Not part of the library's API: each function
//! drives one input surface with arbitrary bytes and asserts the invariants that must hold whatever the input.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use crate::client::ApiError;
use crate::model::{self, Bookmark, EndpointSlice, Endpoints, List, PortNodes, Status, WatchEvent};
use crate::model::{Node, Object, Resource};
use crate::selector::{NamespacePattern, NamespaceSelector, validate_label_selector};
use crate::store::{Lookup, MIN_REGION_BYTES, Region, Writer, decode_nodes};
use crate::topology::{Mode, Topology};
use crate::view::View;

/// The invariants of converted nodes: known ports have a key, nodes are sorted, distinct and usable.
fn check_ports(ports: &PortNodes) {
    for (key, nodes) in ports {
        assert!(!key.is_empty(), "empty port key");
        for n in nodes {
            assert!(n.port != 0, "port 0 in {key}");
            assert!(!n.host.is_empty(), "empty host in {key}");
        }
        assert!(
            nodes.windows(2).all(|w| w[0] < w[1]),
            "nodes of {key} not sorted and distinct: {nodes:?}"
        );
    }
}

/// Frames `stream` into lines as a watch body arrives, in chunks of the given sizes (cycled; 0 = 1), and applies
/// each event to a view as the watcher does: change events through the view, bookmarks and ERROR statuses
/// decoded. Stops at the first line that cannot be understood (where the watcher relists).
pub fn watch_stream(slices: bool, chunk_sizes: &[u8], stream: &[u8]) {
    let resource = if slices {
        Resource::EndpointSlices
    } else {
        Resource::Endpoints
    };
    // With a topology mode on, so that zones and hints are read, kept and turned into priorities too.
    let mut view = View::new(
        Some(NamespaceSelector::NotEqual("kube-system".into())),
        Topology {
            mode: Mode::Hints,
            zone: "za".into(),
        },
    );
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = stream;
    let mut sizes = chunk_sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let n = if chunk_sizes.is_empty() {
            rest.len()
        } else {
            usize::from(sizes.next().unwrap_or(1).max(1)).min(rest.len())
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut scan_from = buf.len();
        buf.extend_from_slice(chunk);
        let mut consumed = 0;
        while let Some(nl) = buf[scan_from..].iter().position(|&b| b == b'\n') {
            let end = scan_from + nl;
            let line = &buf[consumed..end];
            consumed = end + 1;
            scan_from = consumed;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if watch_line(resource, &mut view, line).is_err() {
                return;
            }
        }
        buf.drain(..consumed);
    }
}

fn watch_line(resource: Resource, view: &mut View, line: &[u8]) -> Result<(), ()> {
    let ev: WatchEvent = serde_json::from_slice(line).map_err(drop)?;
    match ev.type_.as_str() {
        "ADDED" | "MODIFIED" | "DELETED" => {
            let service = resource.service_of(ev.object_text());
            let obj = Object::parse(resource, ev.object_text(), true).map_err(drop)?;
            let _ = obj.resource_version();
            let keys = if ev.type_ == "DELETED" {
                view.delete(obj)
            } else {
                view.apply(obj)
            };
            for k in keys {
                if let Some(ports) = view.ports(&k) {
                    check_ports(&ports);
                }
            }
            if let Some((ns, name)) = service {
                assert!(!ns.is_empty() && !name.is_empty());
            }
            Ok(())
        }
        "BOOKMARK" => {
            if let Ok(b) = serde_json::from_str::<Bookmark>(ev.object_text()) {
                let _ = (b.resource_version(), b.is_initial_events_end());
            }
            Ok(())
        }
        "ERROR" => {
            let st: Status = serde_json::from_str(ev.object_text()).unwrap_or_default();
            let err = ApiError::from_status(&st, 500);
            let _ = (err.to_string(), err.is_gone(), err.retry_after());
            let _ = (st.is_expired(), st.retry_after());
            Err(())
        }
        _ => Ok(()),
    }
}

/// Decodes `data` as an Endpoints, a list of EndpointSlices (or one) and a list page, and converts them to nodes.
pub fn objects(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        parsed_objects(text);
    }
    if let Ok(page) = serde_json::from_slice::<List<&serde_json::value::RawValue>>(data) {
        let _ = page.metadata.next_page();
        for item in page.items.unwrap_or_default() {
            for resource in [Resource::Endpoints, Resource::EndpointSlices] {
                let _ = resource.service_of(item.get());
                if let Ok(obj) = Object::parse(resource, item.get(), false) {
                    let mut view = View::new(None, Default::default());
                    for k in view.apply(obj) {
                        check_ports(&view.ports(&k).unwrap_or_default());
                    }
                }
            }
        }
    }
}

/// The object parses of `objects`, on text.
fn parsed_objects(text: &str) {
    if let Ok(e) = Endpoints::parse(text) {
        check_ports(&model::endpoints_ports(&e));
    }
    let slices: Option<Vec<EndpointSlice>> =
        match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) {
            Ok(items) => items
                .iter()
                .map(|i| EndpointSlice::parse(i.get(), true).ok())
                .collect(),
            Err(_) => EndpointSlice::parse(text, true).ok().map(|s| vec![s]),
        };
    if let Some(slices) = slices {
        let ports = model::slices_ports(&slices);
        check_ports(&ports);
        // A topology mode changes priorities, never which nodes are served.
        let zoned = Topology {
            mode: Mode::PreferZone,
            zone: "za".into(),
        };
        let placed = model::slices_ports_with(&slices, &zoned);
        let plain: PortNodes = placed
            .into_iter()
            .map(|(k, nodes)| {
                let nodes = nodes
                    .into_iter()
                    .map(|n| Node {
                        topology: None,
                        ..n
                    })
                    .collect();
                (k, nodes)
            })
            .collect();
        assert_eq!(plain, ports);
        // With distinct names, the slice order must not matter (ties go to the first in name order).
        let mut names: Vec<Option<&String>> =
            slices.iter().map(|s| s.metadata.name.as_ref()).collect();
        names.sort();
        names.dedup();
        if names.len() == slices.len() && names.iter().all(Option::is_some) {
            assert_eq!(ports, model::slices_ports(slices.iter().rev()));
        }
        for s in &slices {
            assert!(s.metadata.service.as_ref().is_none_or(|n| !n.is_empty()));
        }
    }
}

/// Parses `text` as a discovery config, with a few environment variables defined.
pub fn config(text: &str) {
    let env = |name: &str| match name.as_bytes().first() {
        Some(b'H') => Some("10.0.0.1".to_string()),
        Some(b'P') => Some("6443".to_string()),
        Some(b'E') => Some(String::new()),
        Some(b'T') => Some("token-from-env".to_string()),
        _ => None,
    };
    match crate::config::parse(text, &env) {
        Ok(cfg) => {
            assert!(!cfg.clusters.is_empty());
            let _ = cfg.dump_json();
            for c in &cfg.clusters {
                let _ = (c.base_url(), c.source(), c.has_token(), format!("{c:?}"));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Checks a label selector and a namespace pattern, and applies namespace selectors to `ns`.
pub fn selectors(label_selector: &str, pattern: &str, ns: &str) {
    let _ = validate_label_selector(label_selector);
    let mut selectors = vec![
        NamespaceSelector::Equal(pattern.to_string()),
        NamespaceSelector::NotEqual(pattern.to_string()),
    ];
    if let Ok(p) = NamespacePattern::new(pattern) {
        let _ = (p.as_str(), p.is_match(ns));
        selectors.push(NamespaceSelector::Match(vec![p.clone()]));
        selectors.push(NamespaceSelector::NotMatch(vec![p]));
    }
    for s in selectors {
        let _ = (
            s.admits(ns),
            s.namespace_scope(),
            s.field_selector(),
            s.to_string(),
        );
    }
}

struct Fixture {
    inst: std::sync::Arc<crate::instance::Instance>,
}

fn node(host: &str, port: u16) -> model::Node {
    model::Node::new(host, port)
}

/// Publishes a few services into `region`, as a watcher would.
fn populate(region: &Region, generation: u32) {
    let mut w = Writer::claim(region, generation).expect("a fresh region can be claimed");
    let mut b = w.batch().expect("no other writer");
    b.put_service("ns/web", &["http", "8080"]);
    b.put_port(
        "ns/web:http",
        &[
            node("10.0.0.1", 80),
            node("10.0.0.2", 80),
            node("fd00::1", 80),
        ],
    );
    b.put_port("ns/web:8080", &[node("10.0.0.3", 8080)]);
    b.put_service("ns/empty", &["grpc"]);
    b.put_port("ns/empty:grpc", &[]);
    b.set_error("list failed: a test error");
    b.set_ready();
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let conf = r#"[
            {"id": "a", "service": {"schema": "http", "host": "127.0.0.1", "port": 1},
             "client": {"token": "t"}, "shared_size": "1m"},
            {"id": "b", "service": {"schema": "http", "host": "127.0.0.1", "port": 2},
             "client": {"token": "t"}, "shared_size": "1m"}
        ]"#;
        let inst = crate::instance::Instance::standalone(conf).expect("valid config");
        for c in &inst.clusters {
            populate(&c.region, inst.generation());
        }
        Fixture { inst }
    })
}

/// Looks `name` up in a two-cluster instance holding a few services, with an output buffer of `buf_len` bytes.
pub fn nodes_lookup(name: &str, buf_len: usize, hint: u64, version: u64) {
    let inst = &fixture().inst;
    let _ = inst.is_current(hint, version);
    let mut buf = vec![0u8; buf_len];
    let found = inst.nodes(name, &mut buf);
    if let Lookup::Corrupt = found {
        panic!("corrupt record in an intact region");
    }
    if let Some((hint, version)) = check_lookup(found, &buf) {
        assert!(inst.is_current(hint, version), "a fresh lookup is current");
    }
}

/// Checks what a lookup into `buf` returned: a found body fits the buffer and decodes to its node count, and a
/// too-small answer asks for more than the buffer had. Returns a found record's hint and version.
fn check_lookup(found: Lookup, buf: &[u8]) -> Option<(u64, u64)> {
    match found {
        Lookup::Found {
            hint,
            version,
            count,
            len,
            ..
        } => {
            assert!(len <= buf.len());
            assert_eq!(decode_nodes(&buf[..len], count).len(), count as usize);
            Some((hint, version))
        }
        Lookup::TooSmall { need } => {
            assert!(need > buf.len());
            None
        }
        _ => None,
    }
}

struct RegionFixture {
    region: Region,
    /// The populated region's words, restored before each input.
    template: Vec<u64>,
}

fn region_fixture() -> &'static RegionFixture {
    static F: OnceLock<RegionFixture> = OnceLock::new();
    F.get_or_init(|| {
        let region = Region::create(MIN_REGION_BYTES).expect("region");
        populate(&region, 1);
        let template = region
            .words_for_fuzzing()
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        RegionFixture { region, template }
    })
}

/// Overwrites words of a populated region with arbitrary values, then reads it every way a worker or the dump
/// does. `patches` is a sequence of 10-byte records: a word index (u16 LE, modulo the region's words) and the
/// word's new value (u64 LE). No input may make a reader crash, hang or hand out a body that does not decode.
pub fn region_reader(patches: &[u8], probe: &str) {
    let f = region_fixture();
    let words = f.region.words_for_fuzzing();
    for (w, v) in words.iter().zip(&f.template) {
        w.store(*v, Ordering::Relaxed);
    }
    for p in patches.chunks_exact(10) {
        let i = usize::from(u16::from_le_bytes([p[0], p[1]])) % words.len();
        let v = u64::from_le_bytes(p[2..10].try_into().expect("8 bytes"));
        words[i].store(v, Ordering::Relaxed);
    }
    let mut buf = vec![0u8; 256];
    for key in ["ns/web:http", "ns/web:8080", "ns/empty:grpc", probe] {
        for cap in [0, 7, 256] {
            let found = f.region.lookup(key.as_bytes(), &mut buf[..cap]);
            if let Some((hint, version)) = check_lookup(found, &buf[..cap]) {
                let _ = f.region.is_current(hint, version);
            }
        }
    }
    for service in ["ns/web", "ns/empty", probe] {
        let _ = f.region.service_ports(service);
    }
    let _ = f.region.snapshot();
    let _ = f.region.status();
    let _ = f.region.is_ready_for(1);
    let _ = f.region.lock_holder_pid();
}
