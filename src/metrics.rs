//! Prometheus text-format metrics, per cluster, from the counters and gauges each region holds (so every worker
//! reports the same figures). Served by the Lua layer on a location of the user's choice, and by the APISIX
//! adapter's control API.

use std::fmt::Write;

use crate::instance::Instance;
use crate::store::Metric;

/// One metric family: its name, type, help line and samples (label pairs after `cluster`, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, String)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    /// Adds a sample of the family itself for cluster `id`.
    fn add(&mut self, id: &str, labels: &str, value: impl std::fmt::Display) {
        self.add_series(self.name, id, labels, value);
    }

    /// Adds a sample of `series` (a `_sum`/`_count` of a summary) for cluster `id`.
    fn add_series(&mut self, series: &str, id: &str, labels: &str, value: impl std::fmt::Display) {
        let labels = if labels.is_empty() {
            format!("cluster=\"{id}\"")
        } else {
            format!("cluster=\"{id}\",{labels}")
        };
        self.samples
            .push((format!("{series}{{{labels}}}"), value.to_string()));
    }
}

pub fn render(inst: &Instance) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut ready = Family::new(
        "k8s_disc_ready",
        "gauge",
        "1 when the cluster's data is complete (and fresh enough, with max_staleness), else 0.",
    );
    let mut events = Family::new(
        "k8s_disc_events_total",
        "counter",
        "Watch events applied, by type.",
    );
    let mut lists = Family::new(
        "k8s_disc_lists_total",
        "counter",
        "Complete lists published.",
    );
    let mut relists = Family::new(
        "k8s_disc_relists_total",
        "counter",
        "Lists caused by a 410 (resourceVersion too old).",
    );
    let mut errors = Family::new(
        "k8s_disc_errors_total",
        "counter",
        "Failed lists and watches (each also logged with its cause).",
    );
    let mut starts = Family::new(
        "k8s_disc_watch_starts_total",
        "counter",
        "Watches the API server accepted.",
    );
    let mut since_sync = Family::new(
        "k8s_disc_seconds_since_sync",
        "gauge",
        "Seconds since the data was last confirmed current (list, event, bookmark or new watch).",
    );
    let mut services = Family::new("k8s_disc_services", "gauge", "Services held.");
    let mut endpoints = Family::new(
        "k8s_disc_endpoints",
        "gauge",
        "Nodes held (endpoint and port pairs).",
    );
    let mut bytes = Family::new(
        "k8s_disc_shared_bytes",
        "gauge",
        "Shared memory region heap bytes, used and free.",
    );
    let mut full = Family::new(
        "k8s_disc_full_rejections_total",
        "counter",
        "Updates held back because the shared memory region was full.",
    );
    let mut propagation = Family::new(
        "k8s_disc_propagation_seconds",
        "summary",
        "Time from a watch event's arrival to its write into shared memory.",
    );
    let mut propagation_max = Family::new(
        "k8s_disc_propagation_seconds_max",
        "gauge",
        "The longest propagation delay seen.",
    );

    for c in &inst.clusters {
        let id = escape_label(&c.config.id);
        let r = &c.region;
        let st = r.status();
        ready.add(&id, "", u8::from(inst.cluster_ready(c)));
        for (t, m) in [
            ("added", Metric::EventsAdded),
            ("modified", Metric::EventsModified),
            ("deleted", Metric::EventsDeleted),
            ("bookmark", Metric::Bookmarks),
        ] {
            events.add(&id, &format!("type=\"{t}\""), r.metric(m));
        }
        lists.add(&id, "", st.lists);
        relists.add(&id, "", r.metric(Metric::Relists));
        errors.add(&id, "op=\"list\"", r.metric(Metric::ListErrors));
        errors.add(&id, "op=\"watch\"", r.metric(Metric::WatchErrors));
        starts.add(&id, "", r.metric(Metric::WatchStarts));
        let secs = if st.last_sync_ms == 0 {
            f64::NAN
        } else {
            now_ms.saturating_sub(st.last_sync_ms) as f64 / 1000.0
        };
        since_sync.add(&id, "", secs);
        services.add(&id, "", r.metric(Metric::Services));
        endpoints.add(&id, "", r.metric(Metric::Endpoints));
        bytes.add(&id, "state=\"used\"", st.heap_used);
        bytes.add(
            &id,
            "state=\"free\"",
            st.heap_bytes.saturating_sub(st.heap_used),
        );
        full.add(&id, "", st.full_rejections);
        let sum = r.metric(Metric::PropagationMicrosSum) as f64 / 1e6;
        propagation.add_series("k8s_disc_propagation_seconds_sum", &id, "", sum);
        propagation.add_series(
            "k8s_disc_propagation_seconds_count",
            &id,
            "",
            r.metric(Metric::PropagationCount),
        );
        let max = r.metric(Metric::PropagationMicrosMax) as f64 / 1e6;
        propagation_max.add(&id, "", max);
    }

    let mut out = String::new();
    for f in [
        ready,
        events,
        lists,
        relists,
        errors,
        starts,
        since_sync,
        services,
        endpoints,
        bytes,
        full,
        propagation,
        propagation_max,
    ] {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (series, value) in f.samples {
            let _ = writeln!(out, "{series} {value}");
        }
    }
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

    fn sample<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn every_family_has_help_type_and_one_sample_per_cluster() {
        let inst = Instance::standalone(crate::instance::TWO_CLUSTERS).unwrap();
        let r = &inst.clusters[0].region;
        let mut w = Writer::claim(r, inst.generation()).unwrap();
        let mut b = w.batch().unwrap();
        b.put_service("ns/web", &["http"]);
        b.put_port(
            "ns/web:http",
            &[
                crate::model::Node::new("10.0.0.1", 80),
                crate::model::Node::new("10.0.0.2", 80),
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
