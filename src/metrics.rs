//! Prometheus text-format metrics, per cluster, from the counters and gauges each region holds (so every worker
//! reports the same figures). Served by the Lua layer on a location of the user's choice, and by the APISIX
//! adapter's control API.

use std::fmt::Write;

use crate::instance::Instance;
use crate::store::{Metric, Region, Status};

/// How a per-cluster counter is read: from the status snapshot or the region's counters.
type Reading = dyn Fn(&Status, &Region) -> u64;

/// One metric family: its name, type and help line, then one sample per cluster (and label set).
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

pub fn render(inst: &Instance) -> String {
    let mut out = String::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let clusters: Vec<_> = inst
        .clusters
        .iter()
        .map(|c| (escape_label(&c.config.id), c, c.region.status()))
        .collect();

    let mut family = |f: Family<'_>, samples: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        samples(&mut out);
    };

    family(
        Family {
            name: "k8s_disc_ready",
            kind: "gauge",
            help: "1 when the cluster's data is complete (and fresh enough, with max_staleness), else 0.",
        },
        &mut |out| {
            for (id, c, _) in &clusters {
                let _ = writeln!(
                    out,
                    "k8s_disc_ready{{cluster=\"{id}\"}} {}",
                    u8::from(inst.cluster_ready(c))
                );
            }
        },
    );
    family(
        Family {
            name: "k8s_disc_events_total",
            kind: "counter",
            help: "Watch events applied, by type.",
        },
        &mut |out| {
            for (id, c, _) in &clusters {
                for (t, m) in [
                    ("added", Metric::EventsAdded),
                    ("modified", Metric::EventsModified),
                    ("deleted", Metric::EventsDeleted),
                    ("bookmark", Metric::Bookmarks),
                ] {
                    let _ = writeln!(
                        out,
                        "k8s_disc_events_total{{cluster=\"{id}\",type=\"{t}\"}} {}",
                        c.region.metric(m)
                    );
                }
            }
        },
    );
    let counters: [(&str, &str, &Reading); 4] = [
        (
            "k8s_disc_lists_total",
            "Complete lists published.",
            &|st, _| st.lists,
        ),
        (
            "k8s_disc_relists_total",
            "Lists caused by a 410 (resourceVersion too old).",
            &|_, r| r.metric(Metric::Relists),
        ),
        (
            "k8s_disc_watch_starts_total",
            "Watches the API server accepted.",
            &|_, r| r.metric(Metric::WatchStarts),
        ),
        (
            "k8s_disc_full_rejections_total",
            "Updates held back because the shared memory region was full.",
            &|st, _| st.full_rejections,
        ),
    ];
    for (name, help, value) in counters {
        family(
            Family {
                name,
                kind: "counter",
                help,
            },
            &mut |out| {
                for (id, c, st) in &clusters {
                    let _ = writeln!(out, "{name}{{cluster=\"{id}\"}} {}", value(st, &c.region));
                }
            },
        );
    }
    family(
        Family {
            name: "k8s_disc_errors_total",
            kind: "counter",
            help: "Failed lists and watches (each also logged with its cause).",
        },
        &mut |out| {
            for (id, c, _) in &clusters {
                for (op, m) in [("list", Metric::ListErrors), ("watch", Metric::WatchErrors)] {
                    let _ = writeln!(
                        out,
                        "k8s_disc_errors_total{{cluster=\"{id}\",op=\"{op}\"}} {}",
                        c.region.metric(m)
                    );
                }
            }
        },
    );
    family(
        Family {
            name: "k8s_disc_seconds_since_sync",
            kind: "gauge",
            help: "Seconds since the data was last confirmed current (list, event, bookmark or new watch).",
        },
        &mut |out| {
            for (id, _, st) in &clusters {
                let secs = if st.last_sync_ms == 0 {
                    f64::NAN
                } else {
                    now_ms.saturating_sub(st.last_sync_ms) as f64 / 1000.0
                };
                let _ = writeln!(
                    out,
                    "k8s_disc_seconds_since_sync{{cluster=\"{id}\"}} {secs}"
                );
            }
        },
    );
    let gauges: [(&str, &str, Metric); 2] = [
        ("k8s_disc_services", "Services held.", Metric::Services),
        (
            "k8s_disc_endpoints",
            "Nodes held (endpoint and port pairs).",
            Metric::Endpoints,
        ),
    ];
    for (name, help, m) in gauges {
        family(
            Family {
                name,
                kind: "gauge",
                help,
            },
            &mut |out| {
                for (id, c, _) in &clusters {
                    let _ = writeln!(out, "{name}{{cluster=\"{id}\"}} {}", c.region.metric(m));
                }
            },
        );
    }
    family(
        Family {
            name: "k8s_disc_shared_bytes",
            kind: "gauge",
            help: "Shared memory region heap bytes, used and free.",
        },
        &mut |out| {
            for (id, _, st) in &clusters {
                let _ = writeln!(
                    out,
                    "k8s_disc_shared_bytes{{cluster=\"{id}\",state=\"used\"}} {}",
                    st.heap_used
                );
                let _ = writeln!(
                    out,
                    "k8s_disc_shared_bytes{{cluster=\"{id}\",state=\"free\"}} {}",
                    st.heap_bytes.saturating_sub(st.heap_used)
                );
            }
        },
    );
    family(
        Family {
            name: "k8s_disc_propagation_seconds",
            kind: "summary",
            help: "Time from a watch event's arrival to its write into shared memory.",
        },
        &mut |out| {
            for (id, c, _) in &clusters {
                let sum = c.region.metric(Metric::PropagationMicrosSum) as f64 / 1e6;
                let count = c.region.metric(Metric::PropagationCount);
                let _ = writeln!(
                    out,
                    "k8s_disc_propagation_seconds_sum{{cluster=\"{id}\"}} {sum}"
                );
                let _ = writeln!(
                    out,
                    "k8s_disc_propagation_seconds_count{{cluster=\"{id}\"}} {count}"
                );
            }
        },
    );
    family(
        Family {
            name: "k8s_disc_propagation_seconds_max",
            kind: "gauge",
            help: "The longest propagation delay seen.",
        },
        &mut |out| {
            for (id, c, _) in &clusters {
                let max = c.region.metric(Metric::PropagationMicrosMax) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "k8s_disc_propagation_seconds_max{{cluster=\"{id}\"}} {max}"
                );
            }
        },
    );
    out
}

/// A label value as the text format wants it (ids are `[a-z0-9]`, but stay safe).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Writer;

    const MULTI: &str = r#"[
        {"id":"one","service":{"schema":"http","host":"127.0.0.1","port":"1"},"client":{"token":"t"},"shared_size":"1m"},
        {"id":"two","service":{"schema":"http","host":"127.0.0.1","port":"2"},"client":{"token":"t"},"shared_size":"1m"}
    ]"#;

    fn sample<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn every_family_has_help_type_and_one_sample_per_cluster() {
        let inst = Instance::standalone(MULTI).unwrap();
        let r = &inst.clusters[0].region;
        let mut w = Writer::claim(r, inst.generation()).unwrap();
        let mut b = w.batch().unwrap();
        b.put_service("ns/web", &["http"]);
        b.put_port(
            "ns/web:http",
            &[
                crate::model::Node {
                    host: "10.0.0.1".into(),
                    port: 80,
                },
                crate::model::Node {
                    host: "10.0.0.2".into(),
                    port: 80,
                },
            ],
        );
        b.note_list();
        b.set_ready();
        drop(b);
        r.count(Metric::EventsModified, 3);
        r.count(Metric::Relists, 1);
        r.count(Metric::WatchErrors, 2);
        r.record_propagation(std::time::Duration::from_millis(4));
        r.record_propagation(std::time::Duration::from_millis(2));

        let text = render(&inst);
        assert_eq!(sample(&text, "k8s_disc_ready{cluster=\"one\"}"), "1");
        assert_eq!(sample(&text, "k8s_disc_ready{cluster=\"two\"}"), "0");
        assert_eq!(
            sample(
                &text,
                "k8s_disc_events_total{cluster=\"one\",type=\"modified\"}"
            ),
            "3"
        );
        assert_eq!(
            sample(
                &text,
                "k8s_disc_events_total{cluster=\"two\",type=\"modified\"}"
            ),
            "0"
        );
        assert_eq!(sample(&text, "k8s_disc_lists_total{cluster=\"one\"}"), "1");
        assert_eq!(
            sample(&text, "k8s_disc_relists_total{cluster=\"one\"}"),
            "1"
        );
        assert_eq!(
            sample(&text, "k8s_disc_errors_total{cluster=\"one\",op=\"watch\"}"),
            "2"
        );
        assert_eq!(sample(&text, "k8s_disc_services{cluster=\"one\"}"), "1");
        assert_eq!(sample(&text, "k8s_disc_endpoints{cluster=\"one\"}"), "2");
        assert_eq!(
            sample(&text, "k8s_disc_propagation_seconds_count{cluster=\"one\"}"),
            "2"
        );
        assert_eq!(
            sample(&text, "k8s_disc_propagation_seconds_sum{cluster=\"one\"}"),
            "0.006"
        );
        assert_eq!(
            sample(&text, "k8s_disc_propagation_seconds_max{cluster=\"one\"}"),
            "0.004"
        );
        assert_eq!(
            sample(&text, "k8s_disc_seconds_since_sync{cluster=\"two\"}"),
            "NaN"
        );
        let since: f64 = sample(&text, "k8s_disc_seconds_since_sync{cluster=\"one\"}")
            .parse()
            .unwrap();
        assert!((0.0..5.0).contains(&since));
        let used: u64 = sample(
            &text,
            "k8s_disc_shared_bytes{cluster=\"one\",state=\"used\"}",
        )
        .parse()
        .unwrap();
        assert!(used > 0);
        // The text format: every sample's family announced by HELP and TYPE first.
        let mut announced = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                announced.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name
                    .strip_suffix("_sum")
                    .or(name.strip_suffix("_count"))
                    .unwrap_or(name);
                assert!(
                    announced.contains(family) || announced.contains(name),
                    "{line}"
                );
            }
        }
    }
}
