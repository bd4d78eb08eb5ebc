//! What the watcher publishes about itself in the region: its state, counters and gauges, readiness and the
//! last error.

use std::sync::atomic::{Ordering, fence};

use super::layout::*;
use super::region::Region;
use super::writer::token_pid;

/// Watcher state shown in the dump and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SyncState {
    /// No watcher has started on the region yet.
    Starting = 0,
    /// A list (streaming or paged) is in progress.
    Listing = 1,
    /// A watch is open and current.
    Watching = 2,
    /// Waiting before the next attempt, after a failure.
    Backoff = 3,
}

impl SyncState {
    pub(super) fn from_u32(v: u32) -> Self {
        match v {
            1 => SyncState::Listing,
            2 => SyncState::Watching,
            3 => SyncState::Backoff,
            _ => SyncState::Starting,
        }
    }
    /// The name the dump and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Starting => "starting",
            SyncState::Listing => "listing",
            SyncState::Watching => "watching",
            SyncState::Backoff => "backoff",
        }
    }
}

/// Counters and gauges kept in the region, so that every worker reports the same figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Metric {
    /// ADDED watch events.
    EventsAdded,
    /// MODIFIED watch events.
    EventsModified,
    /// DELETED watch events.
    EventsDeleted,
    /// BOOKMARK watch events.
    Bookmarks,
    /// Lists after a 410 (the first list is not a relist).
    Relists,
    /// Lists that failed.
    ListErrors,
    /// Watches that failed (not the ones the server ended normally).
    WatchErrors,
    /// Watches the server accepted.
    WatchStarts,
    /// Time from an event's arrival to its region write: sum (microseconds), count, maximum.
    PropagationMicrosSum,
    /// See `PropagationMicrosSum`.
    PropagationCount,
    /// See `PropagationMicrosSum`.
    PropagationMicrosMax,
    /// Gauge: services held.
    Services,
    /// Gauge: nodes (endpoint x port) held.
    Endpoints,
}

impl Metric {
    pub(crate) const COUNT: usize = Metric::Endpoints as usize + 1;
}

/// Health and statistics of one region, as the watcher last published them.
#[derive(Debug, Clone)]
pub struct RegionStatus {
    /// See `Region::is_ready_for`.
    pub ready_generation: u64,
    /// What the watcher is doing.
    pub state: SyncState,
    /// Complete lists published.
    pub lists: u64,
    /// Watch events applied (changes and bookmarks).
    pub watch_events: u64,
    /// Writes that did not fit.
    pub full_rejections: u64,
    /// Keys currently held back because the region is full.
    pub pending_full: u64,
    /// When the data was last confirmed current, in ms since the epoch.
    pub last_sync_ms: u64,
    /// Keys stored.
    pub entries: u64,
    /// Heap bytes in use.
    pub heap_used: u64,
    /// Heap bytes in all.
    pub heap_bytes: u64,
    /// The process of the watcher that owns the region.
    pub writer_pid: u32,
    /// When the last error was recorded, in ms since the epoch (0: none).
    pub last_error_ms: u64,
    /// The last error, cut to the status block's size.
    pub last_error: String,
}

impl Region {
    /// The status as last published (the error text read consistently under its sequence number).
    pub fn status(&self) -> RegionStatus {
        let h = self.header();
        let mut text = [0u8; ERROR_TEXT_BYTES];
        let mut last_error_ms = 0;
        for _ in 0..READ_RETRIES {
            let seq = h.status_seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            last_error_ms = h.last_error_ms.load(Ordering::Relaxed);
            for (w, chunk) in h.last_error.iter().zip(text.chunks_exact_mut(8)) {
                chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if h.status_seq.load(Ordering::Relaxed) == seq {
                break;
            }
        }
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let used = h.heap_used.load(Ordering::Relaxed);
        let heap = (self.size - self.heap_start) as u64;
        RegionStatus {
            ready_generation: h.ready.load(Ordering::Acquire),
            state: SyncState::from_u32(h.state.load(Ordering::Relaxed) as u32),
            lists: h.lists.load(Ordering::Relaxed),
            watch_events: [
                Metric::EventsAdded,
                Metric::EventsModified,
                Metric::EventsDeleted,
                Metric::Bookmarks,
            ]
            .iter()
            .map(|&m| h.metrics[m as usize].load(Ordering::Relaxed))
            .sum(),
            full_rejections: h.full_rejections.load(Ordering::Relaxed),
            pending_full: h.pending_full.load(Ordering::Relaxed),
            last_sync_ms: h.last_sync_ms.load(Ordering::Relaxed),
            entries: h.entries.load(Ordering::Relaxed),
            heap_used: used,
            heap_bytes: heap,
            writer_pid: token_pid(h.owner.load(Ordering::Relaxed)),
            last_error_ms,
            last_error: String::from_utf8_lossy(&text[..end]).into_owned(),
        }
    }

    /// When the data was last confirmed current (a list, a change or a bookmark), in ms since the epoch.
    pub fn last_sync_ms(&self) -> u64 {
        self.header().last_sync_ms.load(Ordering::Relaxed)
    }

    /// The process holding the batch lock (0 when free), for log messages.
    pub fn lock_holder_pid(&self) -> u32 {
        token_pid(self.header().lock.load(Ordering::Relaxed))
    }

    /// Whether a configuration built at `generation` is ready: a watcher of it, or of a newer one, has completed
    /// a full list into this region.
    pub fn is_ready_for(&self, generation: u32) -> bool {
        self.header().ready.load(Ordering::Acquire) >= u64::from(generation.max(1))
    }

    /// Adds `n` to a counter (statistics only; the writer does this).
    pub fn count(&self, m: Metric, n: u64) {
        self.header().metrics[m as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Records one propagation delay.
    pub fn record_propagation(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let m = &self.header().metrics;
        m[Metric::PropagationMicrosSum as usize].fetch_add(us, Ordering::Relaxed);
        m[Metric::PropagationCount as usize].fetch_add(1, Ordering::Relaxed);
        m[Metric::PropagationMicrosMax as usize].fetch_max(us, Ordering::Relaxed);
    }

    /// The current value of a counter or gauge.
    pub fn metric(&self, m: Metric) -> u64 {
        self.header().metrics[m as usize].load(Ordering::Relaxed)
    }
}
