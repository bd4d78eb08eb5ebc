//! Publishing a cluster view into its shared-memory region: one marker per service (`ns/name`, listing its ports)
//! and one entry per port (`ns/name:port`), written only where content changed.

use std::collections::{BTreeSet, HashMap, HashSet};

use std::time::{Duration, Instant};

use crate::log::log_at;
use crate::model::PortNodes;
use crate::store::{
    Batch, KIND_SERVICE, LOCK_WAIT, Metric, Put, Region, StoreError, SyncState, Writer,
};
use crate::view::View;

pub struct Publisher<'r> {
    writer: Writer<'r>,
    region: &'r Region,
    /// Ports published per service, to know which port keys to drop when a port disappears. This is what the
    /// publisher has asked the region to hold, which differs from the writer's slot index while a region-full
    /// condition holds updates back; the writer's index is a hash of keys and cannot list one service's ports.
    stored: HashMap<String, PortNames>,
    /// How log lines name the cluster.
    label: String,
    /// Whether the status currently shows an error.
    error_shown: bool,
    /// Whether a "region full" condition was already logged (logged once per episode, not per event).
    full_logged: bool,
}

/// The port keys of one stored service, sorted: boxed, as a service has few and there are many services.
type PortNames = Box<[Box<str>]>;

fn port_key(service: &str, port: &str) -> String {
    format!("{service}:{port}")
}

impl<'r> Publisher<'r> {
    pub fn new(region: &'r Region, writer: Writer<'r>, label: String) -> Publisher<'r> {
        let mut stored: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (key, kind) in writer.keys() {
            let key = String::from_utf8_lossy(key);
            if kind == KIND_SERVICE {
                stored.entry(key.into_owned()).or_default();
            } else if let Some((svc, port)) = key.rsplit_once(':') {
                stored
                    .entry(svc.to_string())
                    .or_default()
                    .insert(port.to_string());
            }
        }
        let stored = stored
            .into_iter()
            .map(|(svc, ports)| (svc, ports.into_iter().map(String::into_boxed_str).collect()))
            .collect();
        Publisher {
            writer,
            region,
            stored,
            label,
            error_shown: true,
            full_logged: false,
        }
    }

    pub fn is_owner(&self) -> bool {
        self.writer.is_owner()
    }

    pub fn count(&self, m: Metric, n: u64) {
        self.region.count(m, n);
    }

    pub fn record_propagation(&self, d: Duration) {
        self.region.record_propagation(d);
    }

    /// Takes the region's batch lock, waiting (without blocking the runtime, which other clusters share) while a
    /// previous writer finishes its last batch; `Locked` after `LOCK_WAIT`.
    async fn lock(&mut self) -> Result<(), StoreError> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match self.writer.try_lock() {
                Err(StoreError::Locked) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                other => return other,
            }
        }
    }

    async fn batch(&mut self) -> Result<Batch<'_, 'r>, StoreError> {
        self.lock().await?;
        self.writer.batch()
    }

    pub async fn set_state(&mut self, s: SyncState) -> Result<(), StoreError> {
        self.batch().await?.set_state(s);
        Ok(())
    }

    pub async fn set_error(&mut self, msg: &str) -> Result<(), StoreError> {
        self.batch().await?.set_error(msg);
        self.error_shown = !msg.is_empty();
        Ok(())
    }

    /// Records that the data was confirmed current just now (a bookmark on a quiet watch).
    pub async fn note_sync(&mut self) -> Result<(), StoreError> {
        self.batch().await?.note_sync();
        Ok(())
    }

    /// Clears the error shown in the status, if any (after a successful list or watch start).
    pub async fn clear_error(&mut self) -> Result<(), StoreError> {
        if self.error_shown {
            self.set_error("").await?;
        }
        Ok(())
    }

    /// Writes the given services as they now stand in `view` (removing those the view no longer has).
    pub async fn services(&mut self, view: &View, keys: &[String]) -> Result<(), StoreError> {
        let mut full = 0;
        self.lock().await?;
        {
            let mut b = self.writer.batch()?;
            for key in keys {
                full += write_service(&mut b, &mut self.stored, key, view.ports(key).as_ref());
            }
            b.note_sync();
            b.commit();
        }
        self.report_full(full);
        Ok(())
    }

    /// Replaces everything with a complete view (after a list): only here do vanished services disappear.
    pub async fn replace_all(&mut self, view: &View) -> Result<(), StoreError> {
        let mut full = 0;
        self.lock().await?;
        {
            let mut b = self.writer.batch()?;
            let wanted: HashSet<&String> = view.service_keys().chain(view.kept()).collect();
            let gone: Vec<String> = self
                .stored
                .keys()
                .filter(|k| !wanted.contains(k))
                .cloned()
                .collect();
            for key in &gone {
                write_service(&mut b, &mut self.stored, key, None);
            }
            log_stale(&self.label, &gone);
            for key in view.service_keys().filter(|k| !view.kept().contains(*k)) {
                full += write_service(&mut b, &mut self.stored, key, view.ports(key).as_ref());
            }
            // Anything else in the region (left by an earlier writer with different keys) is stale too.
            let expected: HashSet<String> = self
                .stored
                .iter()
                .flat_map(|(svc, ports)| {
                    std::iter::once(svc.clone()).chain(ports.iter().map(|p| port_key(svc, p)))
                })
                .collect();
            for (key, _) in b.keys() {
                let key = String::from_utf8_lossy(&key).into_owned();
                if !expected.contains(&key) {
                    b.remove(&key);
                }
            }
            b.note_list();
            b.set_ready();
            b.commit();
        }
        self.report_full(full);
        Ok(())
    }

    fn report_full(&mut self, newly_full: usize) {
        let held = self.writer.held_back();
        if held > 0 && !self.full_logged {
            let st = self.region.status();
            log_at!(
                Error,
                "{}: shared memory region full ({} of {} bytes used, {} entries): {} update(s) held back, previous data \
                 still served; raise shared_size",
                self.label,
                st.heap_used,
                st.heap_bytes,
                st.entries,
                held.max(newly_full)
            );
            self.full_logged = true;
        } else if held == 0 && self.full_logged {
            log_at!(
                Notice,
                "shared memory region has room again; all held-back updates written"
            );
            self.full_logged = false;
        }
    }
}

/// Names the services a relist found gone (a handful by name, the rest counted), so that vanished data is visible.
fn log_stale(label: &str, gone: &[String]) {
    const NAMED: usize = 20;
    for key in gone.iter().take(NAMED) {
        log_at!(
            Info,
            "{label}: removed stale service {key}: not in the latest full list"
        );
    }
    if gone.len() > NAMED {
        log_at!(
            Info,
            "{label}: removed {} more stale services",
            gone.len() - NAMED
        );
    }
}

/// Writes one service; returns how many of its entries did not fit.
fn write_service(
    b: &mut Batch<'_, '_>,
    stored: &mut HashMap<String, PortNames>,
    key: &str,
    ports: Option<&PortNodes>,
) -> usize {
    let old = stored.remove(key).unwrap_or_default();
    let Some(ports) = ports else {
        for p in &old {
            b.remove(&port_key(key, p));
        }
        b.remove(key);
        return 0;
    };
    let mut full = 0;
    for (port, nodes) in ports {
        if b.put_port(&port_key(key, port), nodes) == Put::Full {
            full += 1;
        }
    }
    for p in old.iter().filter(|p| !ports.contains_key(&***p)) {
        b.remove(&port_key(key, p));
    }
    let names: Vec<&str> = ports.keys().map(String::as_str).collect();
    if b.put_service(key, &names) == Put::Full {
        full += 1;
    }
    stored.insert(
        key.to_string(),
        ports.keys().map(|p| p.as_str().into()).collect(),
    );
    full
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::store::MIN_REGION_BYTES;

    #[tokio::test(flavor = "current_thread")]
    async fn a_region_locked_by_another_writer_does_not_hold_up_other_clusters() {
        let (a, b) = (
            Region::create(MIN_REGION_BYTES).unwrap(),
            Region::create(MIN_REGION_BYTES).unwrap(),
        );
        let mut pa = Publisher::new(&a, Writer::claim(&a, 1).unwrap(), "a".into());
        let mut pb = Publisher::new(&b, Writer::claim(&b, 1).unwrap(), "b".into());
        a.hold_lock_as_stranger();
        let finished = RefCell::new(Vec::new());
        // Cluster a waits for its region; cluster b, on the same single thread, keeps publishing meanwhile and
        // then lets the other writer go.
        let waiting = async {
            let r = pa.set_state(SyncState::Watching).await;
            finished.borrow_mut().push("a");
            r
        };
        let working = async {
            for _ in 0..20 {
                pb.set_state(SyncState::Watching).await.unwrap();
                tokio::task::yield_now().await;
            }
            finished.borrow_mut().push("b");
            a.release_stranger_lock();
        };
        let (waited, ()) = tokio::join!(waiting, working);
        assert_eq!(waited, Ok(()));
        assert_eq!(*finished.borrow(), ["b", "a"]);
        assert_eq!(a.status().state, SyncState::Watching);
    }
}
