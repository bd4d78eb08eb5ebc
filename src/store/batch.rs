//! A batch: a run of changes made while holding the region's writer lock.

use std::sync::atomic::{Ordering, fence};

use crate::model::Node;

use super::layout::*;
use super::record::*;
use super::writer::{Writer, token_generation};
use super::{Put, SyncState, now_ms};

/// A run of changes made while holding the region's writer lock.
pub struct Batch<'w, 'r> {
    pub(super) w: &'w mut Writer<'r>,
}

impl Batch<'_, '_> {
    /// Stores the nodes of one `ns/name:port` key.
    pub fn put_port(&mut self, key: &str, nodes: &[Node]) -> Put {
        let rec = encode_record(
            key.as_bytes(),
            KIND_PORT,
            nodes.len() as u32,
            &encode_nodes(nodes),
        );
        self.put(key.as_bytes(), KIND_PORT, rec)
    }

    /// Stores the marker of one `ns/name` service with its port names.
    pub fn put_service<S: AsRef<str>>(&mut self, key: &str, ports: &[S]) -> Put {
        let rec = encode_record(
            key.as_bytes(),
            KIND_SERVICE,
            ports.len() as u32,
            &encode_names(ports),
        );
        self.put(key.as_bytes(), KIND_SERVICE, rec)
    }

    pub(super) fn put(&mut self, key: &[u8], kind: u16, rec: Vec<u8>) -> Put {
        self.w.put_record(key, kind, rec)
    }

    pub fn remove(&mut self, key: &str) -> bool {
        self.w.remove_key(key.as_bytes())
    }

    /// Ends a batch of writes: keys that did not fit earlier are written now if space was freed since (a key
    /// leaves the held-back list once written); then the batch publishes its changes and lets the lock go. A batch
    /// dropped without `commit` (an early return) publishes what it wrote and retries nothing.
    pub fn commit(mut self) {
        self.retry_held_back();
    }

    fn retry_held_back(&mut self) {
        if self.w.held_back.is_empty() || !self.w.freed_since_full {
            return;
        }
        let pending: Vec<(Vec<u8>, u16, Vec<u8>)> = self
            .w
            .held_back
            .iter()
            .map(|(k, (kind, rec))| (k.clone(), *kind, rec.clone()))
            .collect();
        for (key, kind, rec) in pending {
            self.w.put_record(&key, kind, rec);
        }
    }

    pub fn keys(&self) -> Vec<(Vec<u8>, u16)> {
        self.w
            .keys
            .iter()
            .map(|(k, v)| (k.clone(), v.kind))
            .collect()
    }

    /// Marks the region as fully listed by this writer's configuration generation.
    pub fn set_ready(&mut self) {
        let generation = u64::from(token_generation(self.w.token));
        self.w
            .region
            .header()
            .ready
            .fetch_max(generation, Ordering::Release);
    }

    pub fn set_state(&mut self, s: SyncState) {
        self.w
            .region
            .header()
            .state
            .store(s as u64, Ordering::Relaxed);
    }

    pub fn note_list(&mut self) {
        let h = self.w.region.header();
        h.lists.fetch_add(1, Ordering::Relaxed);
        h.last_sync_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn note_sync(&mut self) {
        self.w
            .region
            .header()
            .last_sync_ms
            .store(now_ms(), Ordering::Relaxed);
    }

    /// Records the latest error for the dump (truncated to the status block's size).
    pub fn set_error(&mut self, msg: &str) {
        let h = self.w.region.header();
        let mut text = [0u8; ERROR_TEXT_BYTES];
        let mut n = msg.len().min(ERROR_TEXT_BYTES - 1);
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        text[..n].copy_from_slice(&msg.as_bytes()[..n]);
        let seq = h.status_seq.load(Ordering::Relaxed);
        h.status_seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (w, chunk) in h.last_error.iter().zip(text.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        h.last_error_ms
            .store(if msg.is_empty() { 0 } else { now_ms() }, Ordering::Relaxed);
        h.status_seq.store(seq + 2, Ordering::Release);
    }
}

impl Drop for Batch<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding from a panic inside the batch: only give the lock back.
            self.w.unlock();
            return;
        }
        self.w.publish_counts();
        self.w.unlock();
    }
}
