//! The shared-memory store: one region per cluster, written by exactly one watcher process and read lock-free by
//! every nginx worker.
//!
//! The region is an anonymous `MAP_SHARED` mapping made in the nginx master before it forks, so every worker (and
//! the watcher) sees the same pages. Everything in the region is accessed through atomics: a reader in one process
//! races the writer in another, and plain loads of such memory would be a data race.
//!
//! Layout (all offsets from the region start, everything 8-byte aligned):
//! ```text
//! [ Header (HEADER_BYTES) ][ slot table: slot_count x Slot ][ heap: 8-byte words holding records ]
//! ```
//! * A slot is a seqlock-protected pointer: `{seq, hash, version, loc}`. `loc` packs the record's heap word offset
//!   (high 32 bits, +1 so that 0 means "empty, never used") and its byte length (low 32 bits); `TOMBSTONE` marks a
//!   deleted key whose probe chain must continue. Open addressing with linear probing.
//! * A record is immutable once published: `[u32 key_len][u16 kind][u16 0][u32 count][u32 changed][key, padded]
//!   [body]`, `changed` being when its content last changed (seconds since the epoch).
//!   For a port entry the body is `count` nodes, each `[u16 port LE][u8 host_len][host bytes]`; for a service
//!   marker it is `count` port names, each `[u8 len][name bytes]`.
//! * Updating a key writes a new record into free heap space, then swaps the slot under its seqlock, then frees the
//!   old record. A reader copies the record out and re-checks the slot's sequence: if the block was reused in the
//!   meantime the sequence has moved on (the writer bumps it before freeing), so a torn copy is never interpreted.
//! * Versions come from one counter in the header that only grows, so a (slot, version) pair names one record for
//!   the region's whole life: a reader that still holds that pair knows its copy is current without touching the
//!   record (the `nodes()` fast path).
//!
//! Exactly one writer: a writer claims the region by storing its owner token (generation, pid), then
//! serialises with any previous writer through the `lock` word (held only for the length of a batch). The
//! generation grows with every configuration the nginx master loads, so a watcher of an older configuration (an
//! old worker still draining after a reload) can never claim the region back; within one generation the latest
//! claimer wins (a respawned watcher). A writer whose token is no longer the owner stops at its next batch. A lock
//! left by a dead process is taken over; the new writer repairs half-done slots.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::model::Node;

const MAGIC: u64 = u64::from_le_bytes(*b"K8SDISC1");
const LAYOUT_VERSION: u64 = 3;
/// Bytes reserved at the start of the region for the header and status block.
const HEADER_BYTES: usize = 4096;
const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
/// How long a writer waits for another live writer's batch to finish before giving up (and retrying later). The
/// waiting is the caller's (`Writer::try_lock` never blocks), so it can wait without holding up other clusters.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How many times a reader re-reads a slot that a writer is changing before reporting "busy".
const READ_RETRIES: u32 = 1000;
/// Bytes of the last-error message kept in the status block.
const ERROR_TEXT_WORDS: usize = 48;
pub const ERROR_TEXT_BYTES: usize = ERROR_TEXT_WORDS * 8;
/// Smallest region we accept: header, a minimal slot table and a little heap.
pub const MIN_REGION_BYTES: usize = 64 * 1024;

/// Record kinds.
pub const KIND_PORT: u16 = 1;
pub const KIND_SERVICE: u16 = 2;

#[repr(C)]
struct Slot {
    seq: AtomicU64,
    hash: AtomicU64,
    version: AtomicU64,
    loc: AtomicU64,
}

/// Watcher state shown in the dump and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SyncState {
    Starting = 0,
    Listing = 1,
    Watching = 2,
    Backoff = 3,
}

impl SyncState {
    fn from_u32(v: u32) -> Self {
        match v {
            1 => SyncState::Listing,
            2 => SyncState::Watching,
            3 => SyncState::Backoff,
            _ => SyncState::Starting,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Starting => "starting",
            SyncState::Listing => "listing",
            SyncState::Watching => "watching",
            SyncState::Backoff => "backoff",
        }
    }
}

#[repr(C)]
struct Header {
    magic: AtomicU64,
    layout: AtomicU64,
    size: AtomicU64,
    slot_count: AtomicU64,
    heap_start: AtomicU64,
    /// Token of the writer that owns the region (see `make_token`).
    owner: AtomicU64,
    /// Token of the writer inside a batch, 0 when none.
    lock: AtomicU64,
    next_version: AtomicU64,
    /// Bumped on every published change; lets readers and tests see that something happened.
    change_count: AtomicU64,
    /// The configuration generation of the last watcher that completed a full list (0: none yet). A
    /// configuration is ready once this reaches the generation it was built at (`Region::is_ready_for`), so a
    /// newer configuration waits for its own first list, and an older one never loses readiness to a newer one
    /// that did not come up (a reload that failed after init).
    ready: AtomicU64,
    state: AtomicU64,
    lists: AtomicU64,
    full_rejections: AtomicU64,
    /// Keys currently held back because the region is full.
    pending_full: AtomicU64,
    last_sync_ms: AtomicU64,
    entries: AtomicU64,
    heap_used: AtomicU64,
    status_seq: AtomicU64,
    /// Odd while the writer re-lays out the slot table (see `Writer::rehash`); a lookup that found nothing
    /// retries when it changed meanwhile, since the key may have moved past where it looked.
    table_seq: AtomicU64,
    last_error_ms: AtomicU64,
    last_error: [AtomicU64; ERROR_TEXT_WORDS],
    /// Operational counters and gauges, indexed by `Metric` (written by the watcher, read by every worker).
    metrics: [AtomicU64; Metric::COUNT],
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);

/// Counters and gauges kept in the region, so that every worker reports the same figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Metric {
    EventsAdded,
    EventsModified,
    EventsDeleted,
    Bookmarks,
    /// Lists after a 410 (the first list is not a relist).
    Relists,
    ListErrors,
    WatchErrors,
    /// Watches the server accepted.
    WatchStarts,
    /// Time from an event's arrival to its region write: sum (microseconds), count, maximum.
    PropagationMicrosSum,
    PropagationCount,
    PropagationMicrosMax,
    /// Gauges: services and nodes (endpoint x port) held.
    Services,
    Endpoints,
}

impl Metric {
    pub(crate) const COUNT: usize = Metric::Endpoints as usize + 1;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The region cannot be created or has an unexpected layout.
    Region(String),
    /// Another writer has claimed the region since this one did.
    Superseded,
    /// Another live writer is in the middle of a batch; try again shortly.
    Locked,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Region(m) => write!(f, "shared memory region: {m}"),
            StoreError::Superseded => {
                f.write_str("another watcher took over the shared memory region")
            }
            StoreError::Locked => {
                f.write_str("shared memory region is locked by another live watcher")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// Outcome of writing one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Unchanged,
    Written,
    /// Did not fit; the previous content (if any) is still served.
    Full,
}

/// Outcome of a reader lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A record was copied into the caller's buffer; `len` bytes of body, `count` items; its content last
    /// changed at `changed_s` (seconds since the epoch).
    Found {
        slot: u32,
        version: u64,
        count: u32,
        len: usize,
        changed_s: u32,
    },
    NotFound,
    /// The caller's buffer is too small; `need` bytes are required.
    TooSmall {
        need: usize,
    },
    /// The writer kept changing the slot; try again later.
    Busy,
    /// The record's contents contradict its own header (memory corruption): nothing was copied out.
    Corrupt,
}

/// A mapped region. The mapping stays valid for the life of the value and is shared with forked children.
pub struct Region {
    base: *mut u8,
    size: usize,
    /// Geometry fixed at creation, kept in process memory: faster than re-reading the header, and a corrupted
    /// header can then never make an index go out of bounds.
    slots: usize,
    heap_start: usize,
}

// SAFETY: the region is only ever accessed through atomics (see module docs); the raw pointer itself is immutable.
unsafe impl Send for Region {}
// SAFETY: as above; concurrent access from several threads is what the atomics are for.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/size came from a successful mmap in `create` and are unmapped exactly once here. Forked
        // children keep their own mapping, so this never pulls pages from under a worker.
        unsafe {
            libc::munmap(self.base.cast(), self.size);
        }
    }
}

fn round_up8(n: usize) -> usize {
    (n + 7) & !7
}

/// FNV-1a: cheap, stable across processes and builds (the hash is stored in shared memory).
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Slot count for a region size: one slot per 256 bytes, a power of two, at least 64.
fn slot_count_for(size: usize) -> usize {
    let wanted = (size / 256).max(64);
    let pow = wanted.next_power_of_two();
    if pow > wanted { pow / 2 } else { pow }.max(64)
}

impl Region {
    /// Maps and formats a new region of `size` bytes.
    pub fn create(size: usize) -> Result<Region, StoreError> {
        if size < MIN_REGION_BYTES {
            return Err(StoreError::Region(format!(
                "size {size} is below the minimum {MIN_REGION_BYTES}"
            )));
        }
        let size = round_up8(size);
        let slots = slot_count_for(size);
        let heap_start = HEADER_BYTES + slots * SLOT_BYTES;
        if heap_start + 4096 > size {
            return Err(StoreError::Region(format!(
                "size {size} leaves no room for data"
            )));
        }
        // SAFETY: anonymous shared mapping with no address hint; the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(StoreError::Region(format!(
                "mmap of {size} bytes failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        // Fresh anonymous pages are zero, which is "empty" for every slot and counter.
        let region = Region {
            base: base.cast(),
            size,
            slots,
            heap_start,
        };
        let h = region.header();
        h.layout.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.size.store(size as u64, Ordering::Relaxed);
        h.slot_count.store(slots as u64, Ordering::Relaxed);
        h.heap_start.store(heap_start as u64, Ordering::Relaxed);
        h.next_version.store(1, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    pub fn size(&self) -> usize {
        self.size
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_BYTES long, page aligned, and Header consists of atomics only, so a
        // shared reference is sound even while other processes modify it.
        unsafe { &*(self.base as *const Header) }
    }

    fn slot_count(&self) -> usize {
        self.slots
    }

    fn slot(&self, i: usize) -> &Slot {
        let i = i % self.slots;
        // SAFETY: `i < slot_count`, and the slot table lies within the mapping by construction in `create`; Slot
        // is all atomics.
        unsafe { &*(self.base.add(HEADER_BYTES + i * SLOT_BYTES) as *const Slot) }
    }

    fn heap_words(&self) -> &[AtomicU64] {
        // SAFETY: [heap_start, size) lies within the mapping, is 8-byte aligned, and AtomicU64 has the size and
        // alignment of u64.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(self.heap_start) as *const AtomicU64,
                (self.size - self.heap_start) / 8,
            )
        }
    }

    /// Whether `(slot, version)` from an earlier lookup still names the slot's current record. Versions are never
    /// reused within a region, so equality proves the content is unchanged without reading the record.
    pub fn is_current(&self, slot: u32, version: u64) -> bool {
        if version == 0 || slot as usize >= self.slot_count() {
            return false;
        }
        let s = self.slot(slot as usize);
        for _ in 0..READ_RETRIES {
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let v = s.version.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) == seq {
                return v == version;
            }
        }
        false
    }

    /// Looks a port entry up and copies its nodes into `out`.
    pub fn lookup(&self, key: &[u8], out: &mut [u8]) -> Lookup {
        self.find(key, KIND_PORT, out)
    }

    /// Probes for `key` and copies its record body into `out`.
    fn find(&self, key: &[u8], kind: u16, out: &mut [u8]) -> Lookup {
        let table_seq = &self.header().table_seq;
        for _ in 0..READ_RETRIES {
            let before = table_seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let found = self.probe(key, kind, out);
            if !matches!(found, Lookup::NotFound) {
                // A hit was validated by its slot's own sequence, wherever the key sits now.
                return found;
            }
            fence(Ordering::Acquire);
            if table_seq.load(Ordering::Relaxed) == before {
                return found;
            }
        }
        Lookup::Busy
    }

    fn probe(&self, key: &[u8], kind: u16, out: &mut [u8]) -> Lookup {
        let n = self.slot_count();
        let hash = key_hash(key);
        let mut i = (hash as usize) & (n - 1);
        for _ in 0..n {
            match self.read_slot(i, hash, key, kind, out) {
                SlotRead::Empty => return Lookup::NotFound,
                SlotRead::Other => {}
                SlotRead::Busy => return Lookup::Busy,
                SlotRead::Hit(l) => return l,
            }
            i = (i + 1) & (n - 1);
        }
        Lookup::NotFound
    }

    fn read_slot(&self, i: usize, hash: u64, key: &[u8], kind: u16, out: &mut [u8]) -> SlotRead {
        let s = self.slot(i);
        let words = self.heap_words();
        let mut scratch: Vec<u8> = Vec::new();
        for _ in 0..READ_RETRIES {
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let h = s.hash.load(Ordering::Relaxed);
            let version = s.version.load(Ordering::Relaxed);
            let loc = s.loc.load(Ordering::Relaxed);
            if loc == EMPTY || loc == TOMBSTONE || h != hash {
                fence(Ordering::Acquire);
                if s.seq.load(Ordering::Relaxed) != seq {
                    continue;
                }
                return if loc == EMPTY {
                    SlotRead::Empty
                } else {
                    SlotRead::Other
                };
            }
            let Some((off, len)) = decode_loc(loc, words.len()) else {
                // A torn or corrupt pointer: only trust it after re-validating the sequence.
                fence(Ordering::Acquire);
                if s.seq.load(Ordering::Relaxed) != seq {
                    continue;
                }
                return SlotRead::Other;
            };
            // Copy the whole record out (into `out` when it fits, else a scratch buffer to learn the size).
            let padded = round_up8(len);
            let dst: &mut [u8] = if padded <= out.len() {
                &mut out[..padded]
            } else {
                scratch.resize(padded, 0);
                &mut scratch[..]
            };
            for (w, chunk) in words[off..off + padded / 8]
                .iter()
                .zip(dst.chunks_exact_mut(8))
            {
                chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) != seq {
                continue;
            }
            // The copy is consistent; now it may be interpreted.
            let Some(rec) = RecordView::parse(&dst[..len]) else {
                return SlotRead::Other;
            };
            if rec.key != key || rec.kind != kind {
                return SlotRead::Other;
            }
            let body_start = rec.body_start;
            let count = rec.count;
            let changed_s = rec.changed_s;
            // Callers (the Lua decoder among them) walk `count` items by their own length bytes: hand out only a
            // body whose items fill it exactly.
            if !body_is_valid(kind, &dst[body_start..len], count) {
                return SlotRead::Hit(Lookup::Corrupt);
            }
            if padded > out.len() {
                return SlotRead::Hit(Lookup::TooSmall { need: padded });
            }
            out.copy_within(body_start..len, 0);
            return SlotRead::Hit(Lookup::Found {
                slot: i as u32,
                version,
                count,
                len: len - body_start,
                changed_s,
            });
        }
        SlotRead::Busy
    }

    /// Reads a service marker: the port names the service declares, or None if the service is unknown.
    pub fn service_ports(&self, service: &str) -> Option<Vec<String>> {
        let mut buf = vec![0u8; 4096];
        loop {
            match self.find(service.as_bytes(), KIND_SERVICE, &mut buf) {
                Lookup::Found { count, len, .. } => return Some(decode_names(&buf[..len], count)),
                Lookup::TooSmall { need } => buf.resize(need, 0),
                _ => return None,
            }
        }
    }

    /// A consistent copy of every live record, for the dump. Skips slots that stay busy.
    pub fn snapshot(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut buf = vec![0u8; 4096];
        for i in 0..self.slot_count() {
            let s = self.slot(i);
            let loc = s.loc.load(Ordering::Relaxed);
            if loc == EMPTY || loc == TOMBSTONE {
                continue;
            }
            // Read the record's key first to know what to look for, then re-read it under the seqlock.
            let hash = s.hash.load(Ordering::Relaxed);
            let Some(key) = self.slot_key(i) else {
                continue;
            };
            for kind in [KIND_SERVICE, KIND_PORT] {
                loop {
                    match self.read_slot(i, hash, &key, kind, &mut buf) {
                        SlotRead::Hit(Lookup::Found {
                            count,
                            len,
                            version,
                            ..
                        }) => {
                            let key = String::from_utf8_lossy(&key).into_owned();
                            let body = &buf[..len];
                            entries.push(if kind == KIND_SERVICE {
                                Entry::Service {
                                    key,
                                    ports: decode_names(body, count),
                                    version,
                                }
                            } else {
                                Entry::Port {
                                    key,
                                    nodes: decode_nodes(body, count),
                                    version,
                                }
                            });
                        }
                        SlotRead::Hit(Lookup::TooSmall { need }) => {
                            buf.resize(need, 0);
                            continue;
                        }
                        _ => {}
                    }
                    break;
                }
            }
        }
        entries
    }

    /// The key bytes of the record a slot points at (unvalidated; used only to drive a validated re-read).
    fn slot_key(&self, i: usize) -> Option<Vec<u8>> {
        let words = self.heap_words();
        let (off, len) = decode_loc(self.slot(i).loc.load(Ordering::Relaxed), words.len())?;
        let mut bytes = Vec::with_capacity(round_up8(len));
        for w in &words[off..off + round_up8(len) / 8] {
            bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        let rec = RecordView::parse(&bytes[..len])?;
        Some(rec.key.to_vec())
    }

    pub fn status(&self) -> Status {
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
        Status {
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
            changes: h.change_count.load(Ordering::Acquire),
            writer_pid: token_pid(h.owner.load(Ordering::Relaxed)),
            last_error_ms,
            last_error: String::from_utf8_lossy(&text[..end]).into_owned(),
        }
    }

    /// Every word of the mapping, header included: the fuzzer fills them with arbitrary bytes, which readers must
    /// survive.
    pub(crate) fn words_for_fuzzing(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `size` bytes long (a multiple of 8) and page aligned, and AtomicU64 has the size
        // and alignment of u64; all access to it goes through atomics.
        unsafe { std::slice::from_raw_parts(self.base as *const AtomicU64, self.size / 8) }
    }

    /// Makes the batch lock look held by another live writer of this process (tests of lock contention).
    #[cfg(test)]
    pub(crate) fn hold_lock_as_stranger(&self) {
        self.header().lock.store(make_token(1), Ordering::SeqCst);
    }

    #[cfg(test)]
    pub(crate) fn release_stranger_lock(&self) {
        self.header().lock.store(0, Ordering::SeqCst);
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

enum SlotRead {
    Empty,
    Other,
    Busy,
    Hit(Lookup),
}

/// Health and statistics of one region, as the watcher last published them.
#[derive(Debug, Clone)]
pub struct Status {
    /// See `Region::is_ready_for`.
    pub ready_generation: u64,
    pub state: SyncState,
    pub lists: u64,
    pub watch_events: u64,
    pub full_rejections: u64,
    pub pending_full: u64,
    pub last_sync_ms: u64,
    pub entries: u64,
    pub heap_used: u64,
    pub heap_bytes: u64,
    pub changes: u64,
    pub writer_pid: u32,
    pub last_error_ms: u64,
    pub last_error: String,
}

/// One record as seen in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Service {
        key: String,
        ports: Vec<String>,
        version: u64,
    },
    Port {
        key: String,
        nodes: Vec<Node>,
        version: u64,
    },
}

fn decode_loc(loc: u64, heap_words: usize) -> Option<(usize, usize)> {
    if loc == EMPTY || loc == TOMBSTONE {
        return None;
    }
    let off = ((loc >> 32) as usize).checked_sub(1)?;
    let len = (loc & 0xffff_ffff) as usize;
    let words = round_up8(len) / 8;
    (len >= RECORD_HEADER && off.checked_add(words)? <= heap_words).then_some((off, len))
}

fn encode_loc(off_words: usize, len: usize) -> u64 {
    ((off_words as u64 + 1) << 32) | len as u64
}

const RECORD_HEADER: usize = 16;

struct RecordView<'a> {
    key: &'a [u8],
    kind: u16,
    count: u32,
    changed_s: u32,
    body_start: usize,
}

impl<'a> RecordView<'a> {
    fn parse(b: &'a [u8]) -> Option<Self> {
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
const CHANGED_AT: std::ops::Range<usize> = 12..16;

/// Whether two encoded records hold the same content (whatever their change times).
fn same_content(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.len() >= RECORD_HEADER
        && a[..CHANGED_AT.start] == b[..CHANGED_AT.start]
        && a[CHANGED_AT.end..] == b[CHANGED_AT.end..]
}

fn stamp_changed(record: &mut [u8]) {
    let now = u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX);
    record[CHANGED_AT].copy_from_slice(&now.to_le_bytes());
}

fn encode_record(key: &[u8], kind: u16, count: u32, body: &[u8]) -> Vec<u8> {
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

/// Encodes nodes as a port-entry body: `[u16 port][u8 host_len][host]` each. Hosts longer than 255 bytes cannot
/// be IP addresses and are skipped by the caller's validation; here they are truncated defensively.
pub fn encode_nodes(nodes: &[Node]) -> Vec<u8> {
    let mut b = Vec::with_capacity(nodes.len() * 16);
    for n in nodes {
        let host = &n.host.as_bytes()[..n.host.len().min(255)];
        b.extend_from_slice(&n.port.to_le_bytes());
        b.push(host.len() as u8);
        b.extend_from_slice(host);
    }
    b
}

/// Whether `body` holds exactly `count` items of its kind: nodes `[u16 port][u8 len][host]`, or port names
/// `[u8 len][name]`.
fn body_is_valid(kind: u16, body: &[u8], count: u32) -> bool {
    let (prefix, len_at) = match kind {
        KIND_PORT => (3, 2),
        KIND_SERVICE => (1, 0),
        _ => return false,
    };
    let mut p = 0usize;
    for _ in 0..count {
        let Some(&item_len) = body.get(p + len_at) else {
            return false;
        };
        p += prefix + usize::from(item_len);
        if p > body.len() {
            return false;
        }
    }
    p == body.len()
}

pub fn decode_nodes(body: &[u8], count: u32) -> Vec<Node> {
    // Each node takes at least 3 bytes: a corrupt count cannot make this allocate more than the body's size.
    let mut nodes = Vec::with_capacity((count as usize).min(body.len() / 3));
    let mut p = 0;
    for _ in 0..count {
        let Some(hdr) = body.get(p..p + 3) else { break };
        let port = u16::from_le_bytes([hdr[0], hdr[1]]);
        let hl = hdr[2] as usize;
        let Some(host) = body.get(p + 3..p + 3 + hl) else {
            break;
        };
        nodes.push(Node {
            host: String::from_utf8_lossy(host).into_owned(),
            port,
        });
        p += 3 + hl;
    }
    nodes
}

fn encode_names<S: AsRef<str>>(names: &[S]) -> Vec<u8> {
    let mut b = Vec::new();
    for n in names {
        let n = &n.as_ref().as_bytes()[..n.as_ref().len().min(255)];
        b.push(n.len() as u8);
        b.extend_from_slice(n);
    }
    b
}

fn decode_names(body: &[u8], count: u32) -> Vec<String> {
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Points a slot at `loc` (EMPTY or TOMBSTONE) under its seqlock.
fn set_slot_loc(s: &Slot, loc: u64) {
    let seq = s.seq.load(Ordering::Relaxed) | 1;
    s.seq.store(seq, Ordering::Relaxed);
    fence(Ordering::Release);
    s.loc.store(loc, Ordering::Relaxed);
    s.version.store(0, Ordering::Relaxed);
    s.seq.store(seq + 1, Ordering::Release);
}

/// Writer tokens: generation (24 bits) | claim number within this process (8 bits) | pid (32 bits). The claim
/// number tells apart two writers of one process (a watcher restarted after a panic, or tests); 16 million
/// configuration generations are far more reloads than an nginx master lives through.
fn make_token(generation: u32) -> u64 {
    static CLAIMS: AtomicU64 = AtomicU64::new(0);
    let claim = CLAIMS.fetch_add(1, Ordering::Relaxed) & 0xff;
    (u64::from(generation & 0xff_ffff) << 40) | (claim << 32) | u64::from(std::process::id())
}

fn token_pid(token: u64) -> u32 {
    token as u32
}

fn token_generation(token: u64) -> u32 {
    (token >> 40) as u32
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission; it has no effect on the target.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Free heap space, tracked privately by the writer (readers never need it).
#[derive(Default)]
struct FreeSpace {
    by_offset: BTreeMap<usize, usize>,
    by_size: BTreeSet<(usize, usize)>,
}

impl FreeSpace {
    fn insert(&mut self, mut off: usize, mut len: usize) {
        if len == 0 {
            return;
        }
        // Coalesce with the neighbours so fragmentation does not creep up over time.
        if let Some((&p_off, &p_len)) = self.by_offset.range(..off).next_back()
            && p_off + p_len == off
        {
            self.remove(p_off, p_len);
            off = p_off;
            len += p_len;
        }
        if let Some(&n_len) = self.by_offset.get(&(off + len)) {
            self.remove(off + len, n_len);
            len += n_len;
        }
        self.by_offset.insert(off, len);
        self.by_size.insert((len, off));
    }

    fn remove(&mut self, off: usize, len: usize) {
        self.by_offset.remove(&off);
        self.by_size.remove(&(len, off));
    }

    /// Best fit, in words.
    fn alloc(&mut self, words: usize) -> Option<usize> {
        let &(len, off) = self.by_size.range((words, 0)..).next()?;
        self.remove(off, len);
        if len > words {
            self.insert(off + words, len - words);
        }
        Some(off)
    }
}

/// What the writer knows about one key.
struct Known {
    slot: usize,
    kind: u16,
    off: usize,
    len: usize,
    /// The record's item count (nodes of a port entry), for the endpoint gauge.
    count: u32,
}

/// The single writer of a region. Holds the free-space map and key index privately.
pub struct Writer<'r> {
    region: &'r Region,
    token: u64,
    free: FreeSpace,
    keys: HashMap<Vec<u8>, Known>,
    /// Non-empty slots (live or tombstone); bounds the probe-chain load factor.
    used_slots: usize,
    /// Keys whose latest content did not fit; they keep old content and are retried when space frees.
    held_back: HashMap<Vec<u8>, (u16, Vec<u8>)>,
    /// Whether heap space or slots were freed since a write last failed (only then is a retry worth it).
    freed_since_full: bool,
    heap_used: usize,
    /// What `keys` holds, kept up to date as keys come and go (published as the services and endpoints gauges).
    held: Held,
}

/// Services and nodes a writer's keys hold.
#[derive(Default, Clone, Copy)]
struct Held {
    services: u64,
    endpoints: u64,
}

impl Held {
    fn add(&mut self, k: &Known) {
        match k.kind {
            KIND_SERVICE => self.services += 1,
            _ => self.endpoints += u64::from(k.count),
        }
    }

    fn remove(&mut self, k: &Known) {
        match k.kind {
            KIND_SERVICE => self.services = self.services.saturating_sub(1),
            _ => self.endpoints = self.endpoints.saturating_sub(u64::from(k.count)),
        }
    }
}

impl<'r> Writer<'r> {
    /// Claims the region for a watcher of configuration `generation`. Fails with `Superseded` if a watcher of a
    /// newer generation owns it, and with `Locked` while another live writer is inside a batch (retry shortly).
    pub fn claim(region: &'r Region, generation: u32) -> Result<Writer<'r>, StoreError> {
        let h = region.header();
        if h.magic.load(Ordering::Acquire) != MAGIC
            || h.layout.load(Ordering::Relaxed) != LAYOUT_VERSION
        {
            return Err(StoreError::Region("bad magic or layout version".into()));
        }
        let token = make_token(generation);
        let mut current = h.owner.load(Ordering::SeqCst);
        loop {
            if token_generation(current) > generation {
                return Err(StoreError::Superseded);
            }
            match h
                .owner
                .compare_exchange(current, token, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        let mut w = Writer {
            region,
            token,
            free: FreeSpace::default(),
            keys: HashMap::new(),
            used_slots: 0,
            held_back: HashMap::new(),
            freed_since_full: false,
            heap_used: 0,
            held: Held::default(),
        };
        w.try_lock()?;
        // The lock must not outlive a panic here: this process would hold it for good.
        let rebuilt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.rebuild()));
        w.unlock();
        if let Err(panic) = rebuilt {
            std::panic::resume_unwind(panic);
        }
        Ok(w)
    }

    /// Whether this writer still owns the region (a newer watcher may have claimed it, e.g. after a reload).
    pub fn is_owner(&self) -> bool {
        self.region.header().owner.load(Ordering::SeqCst) == self.token
    }

    /// Takes the batch lock if it is free, already ours, or held by a dead process; else fails with `Locked` at
    /// once (a previous writer is finishing its last batch: the caller waits and retries, see `LOCK_WAIT`).
    pub fn try_lock(&self) -> Result<(), StoreError> {
        let h = self.region.header();
        match h
            .lock
            .compare_exchange(0, self.token, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(holder) if holder == self.token => Ok(()),
            Err(holder) => {
                if !pid_alive(token_pid(holder))
                    && h.lock
                        .compare_exchange(holder, self.token, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    Ok(())
                } else {
                    Err(StoreError::Locked)
                }
            }
        }
    }

    fn unlock(&self) {
        let _ = self.region.header().lock.compare_exchange(
            self.token,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Rebuilds the private index and free map from the region, repairing slots a dead writer left half-updated:
    /// a slot whose record is unreadable, overlaps another record or repeats a key becomes a tombstone.
    fn rebuild(&mut self) {
        let r = self.region;
        let words = r.heap_words();
        // (offset in words, length in bytes, slot, key, kind, count) of every readable record.
        let mut found: Vec<(usize, usize, usize, Vec<u8>, u16, u32)> = Vec::new();
        let mut unreadable = Vec::new();
        for i in 0..r.slot_count() {
            let s = r.slot(i);
            let loc = s.loc.load(Ordering::Relaxed);
            if loc == EMPTY || loc == TOMBSTONE {
                continue;
            }
            let rec = decode_loc(loc, words.len()).and_then(|(off, len)| {
                let mut bytes = Vec::with_capacity(round_up8(len));
                for w in &words[off..off + round_up8(len) / 8] {
                    bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                let rec = RecordView::parse(&bytes[..len])?;
                (key_hash(rec.key) == s.hash.load(Ordering::Relaxed))
                    .then(|| (off, len, i, rec.key.to_vec(), rec.kind, rec.count))
            });
            match rec {
                Some(f) => found.push(f),
                None => unreadable.push(i),
            }
        }
        // Sorted by offset, overlapping records are neighbours: keep the first of each overlap.
        found.sort_unstable_by_key(|f| f.0);
        self.keys.clear();
        self.free = FreeSpace::default();
        self.heap_used = 0;
        let mut cursor = 0;
        for (off, len, slot, key, kind, count) in found {
            if off < cursor || self.keys.contains_key(&key) {
                unreadable.push(slot);
                continue;
            }
            self.free.insert(cursor, off - cursor);
            cursor = off + round_up8(len) / 8;
            self.heap_used += round_up8(len);
            self.keys.insert(
                key,
                Known {
                    slot,
                    kind,
                    off,
                    len,
                    count,
                },
            );
        }
        self.free.insert(cursor, words.len() - cursor);
        self.held = Held::default();
        for k in self.keys.values() {
            self.held.add(k);
        }
        for i in unreadable {
            set_slot_loc(r.slot(i), TOMBSTONE);
        }
        // A writer that died mid-update left an odd sequence: make every slot, the status block and the table
        // readable again.
        let h = r.header();
        for seq in (0..r.slot_count())
            .map(|i| &r.slot(i).seq)
            .chain([&h.status_seq, &h.table_seq])
        {
            let v = seq.load(Ordering::Relaxed);
            if v & 1 == 1 {
                seq.store(v + 1, Ordering::Release);
            }
        }
        self.used_slots = (0..r.slot_count())
            .filter(|&i| r.slot(i).loc.load(Ordering::Relaxed) != EMPTY)
            .count();
        for i in 0..r.slot_count() {
            if r.slot(i).loc.load(Ordering::Relaxed) == EMPTY {
                self.reclaim_tombstones_before(i);
            }
        }
        self.publish_counts();
    }

    /// Lays the slot table out afresh: every live key at the first free slot of its probe chain, no tombstones.
    /// Runs when tombstones fill the table (churn deletes keys inside probe chains, where they cannot simply be
    /// emptied). Readers keep working: each slot change goes through the slot's seqlock, and `table_seq` tells a
    /// lookup that found nothing to look again.
    fn rehash(&mut self) {
        let r = self.region;
        let n = r.slot_count();
        let table_seq = &r.header().table_seq;
        let seq = table_seq.load(Ordering::Relaxed);
        table_seq.store(seq | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let versions: HashMap<usize, u64> = self
            .keys
            .values()
            .map(|k| (k.slot, r.slot(k.slot).version.load(Ordering::Relaxed)))
            .collect();
        for i in 0..n {
            if r.slot(i).loc.load(Ordering::Relaxed) != EMPTY {
                set_slot_loc(r.slot(i), EMPTY);
            }
        }
        for (key, k) in self.keys.iter_mut() {
            let hash = key_hash(key);
            let mut i = (hash as usize) & (n - 1);
            while r.slot(i).loc.load(Ordering::Relaxed) != EMPTY {
                i = (i + 1) & (n - 1);
            }
            let s = r.slot(i);
            let slot_seq = s.seq.load(Ordering::Relaxed);
            s.seq.store(slot_seq + 1, Ordering::Relaxed);
            fence(Ordering::Release);
            s.hash.store(hash, Ordering::Relaxed);
            s.version.store(versions[&k.slot], Ordering::Relaxed);
            s.loc.store(encode_loc(k.off, k.len), Ordering::Relaxed);
            s.seq.store(slot_seq + 2, Ordering::Release);
            k.slot = i;
        }
        self.used_slots = self.keys.len();
        self.freed_since_full = true;
        table_seq.store((seq | 1) + 1, Ordering::Release);
    }

    /// Turns the run of tombstones just before an empty slot back into empty slots. Safe for readers: no probe
    /// chain of a live key crosses an empty slot, so none can need those tombstones to continue.
    fn reclaim_tombstones_before(&mut self, empty: usize) {
        let r = self.region;
        let n = r.slot_count();
        let mut i = (empty + n - 1) & (n - 1);
        for _ in 0..n {
            let s = r.slot(i);
            if s.loc.load(Ordering::Relaxed) != TOMBSTONE {
                break;
            }
            set_slot_loc(s, EMPTY);
            self.used_slots -= 1;
            self.freed_since_full = true;
            i = (i + n - 1) & (n - 1);
        }
    }

    /// Starts a batch of changes. Fails with `Superseded` once another writer has claimed the region, and with
    /// `Locked` while another live writer is inside a batch (see `try_lock`).
    pub fn batch(&mut self) -> Result<Batch<'_, 'r>, StoreError> {
        let h = self.region.header();
        self.try_lock()?;
        if h.owner.load(Ordering::SeqCst) != self.token {
            self.unlock();
            return Err(StoreError::Superseded);
        }
        Ok(Batch {
            w: self,
            changed: false,
        })
    }

    /// Every key the region holds, with its kind.
    pub fn keys(&self) -> impl Iterator<Item = (&[u8], u16)> {
        self.keys.iter().map(|(k, v)| (k.as_slice(), v.kind))
    }

    pub fn held_back(&self) -> usize {
        self.held_back.len()
    }

    fn publish_counts(&self) {
        let h = self.region.header();
        h.metrics[Metric::Services as usize].store(self.held.services, Ordering::Relaxed);
        h.metrics[Metric::Endpoints as usize].store(self.held.endpoints, Ordering::Relaxed);
        h.entries.store(self.keys.len() as u64, Ordering::Relaxed);
        h.heap_used.store(self.heap_used as u64, Ordering::Relaxed);
        h.pending_full
            .store(self.held_back.len() as u64, Ordering::Relaxed);
    }

    fn record_bytes(&self, k: &Known) -> Vec<u8> {
        let words = self.region.heap_words();
        let mut bytes = Vec::with_capacity(round_up8(k.len));
        for w in &words[k.off..k.off + round_up8(k.len) / 8] {
            bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(k.len);
        bytes
    }

    fn put_record(&mut self, key: &[u8], kind: u16, mut record: Vec<u8>) -> Put {
        if let Some(k) = self.keys.get(key)
            && k.kind == kind
            && same_content(&self.record_bytes(k), &record)
        {
            self.held_back.remove(key);
            return Put::Unchanged;
        }
        stamp_changed(&mut record);
        let count = u32::from_le_bytes(record[8..12].try_into().unwrap_or_default());
        let r = self.region;
        let words_needed = round_up8(record.len()) / 8;
        // A new key needs a slot; keep the table at most 7/8 used so probe chains stay short and end.
        let (slot, was_empty) = match self.keys.get(key) {
            Some(k) => (k.slot, false),
            None => match self.free_slot(key) {
                Some(s) => s,
                None => return self.hold_back(key, kind, record),
            },
        };
        let Some(off) = self.free.alloc(words_needed) else {
            return self.hold_back(key, kind, record);
        };
        let words = r.heap_words();
        let mut padded = record.clone();
        padded.resize(words_needed * 8, 0);
        // Orders these stores after every earlier slot change, including a previous writer's (handed over through
        // the lock): a reader copying this block while it is reused then sees the slot it read has moved on.
        fence(Ordering::Release);
        for (w, chunk) in words[off..off + words_needed]
            .iter()
            .zip(padded.chunks_exact(8))
        {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        let version = r.header().next_version.fetch_add(1, Ordering::Relaxed);
        let s = r.slot(slot);
        let seq = s.seq.load(Ordering::Relaxed);
        s.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        s.hash.store(key_hash(key), Ordering::Relaxed);
        s.version.store(version, Ordering::Relaxed);
        s.loc
            .store(encode_loc(off, record.len()), Ordering::Relaxed);
        s.seq.store(seq + 2, Ordering::Release);
        if was_empty {
            self.used_slots += 1;
        }
        self.heap_used += words_needed * 8;
        let known = Known {
            slot,
            kind,
            off,
            len: record.len(),
            count,
        };
        self.held.add(&known);
        if let Some(old) = self.keys.insert(key.to_vec(), known) {
            self.held.remove(&old);
            self.heap_used -= round_up8(old.len);
            self.free.insert(old.off, round_up8(old.len) / 8);
            self.freed_since_full = true;
        }
        self.held_back.remove(key);
        Put::Written
    }

    fn hold_back(&mut self, key: &[u8], kind: u16, record: Vec<u8>) -> Put {
        // Counted once per key, however often a retry fails again.
        if !self.held_back.contains_key(key) {
            self.region
                .header()
                .full_rejections
                .fetch_add(1, Ordering::Relaxed);
        }
        self.freed_since_full = false;
        self.held_back.insert(key.to_vec(), (kind, record));
        Put::Full
    }

    /// The slot a new key goes into (the first tombstone or empty slot of its probe chain), and whether it was
    /// empty (a fresh slot lengthens probe chains; a reused tombstone does not).
    fn free_slot(&mut self, key: &[u8]) -> Option<(usize, bool)> {
        let r = self.region;
        let n = r.slot_count();
        let mut i = (key_hash(key) as usize) & (n - 1);
        for _ in 0..n {
            let loc = r.slot(i).loc.load(Ordering::Relaxed);
            if loc == TOMBSTONE {
                return Some((i, false));
            }
            if loc == EMPTY {
                if (self.used_slots + 1) * 8 > n * 7 {
                    if self.used_slots > self.keys.len() {
                        // Tombstones of deleted keys take the room: lay the table out afresh, then retry.
                        self.rehash();
                        return self.free_slot(key);
                    }
                    return None;
                }
                return Some((i, true));
            }
            i = (i + 1) & (n - 1);
        }
        None
    }

    fn remove_key(&mut self, key: &[u8]) -> bool {
        self.held_back.remove(key);
        let Some(k) = self.keys.remove(key) else {
            return false;
        };
        self.held.remove(&k);
        let r = self.region;
        set_slot_loc(r.slot(k.slot), TOMBSTONE);
        let next = (k.slot + 1) & (r.slot_count() - 1);
        if r.slot(next).loc.load(Ordering::Relaxed) == EMPTY {
            self.reclaim_tombstones_before(next);
        }
        self.heap_used -= round_up8(k.len);
        self.free.insert(k.off, round_up8(k.len) / 8);
        self.freed_since_full = true;
        true
    }
}

/// A run of changes made while holding the region's writer lock.
pub struct Batch<'w, 'r> {
    w: &'w mut Writer<'r>,
    changed: bool,
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

    fn put(&mut self, key: &[u8], kind: u16, rec: Vec<u8>) -> Put {
        let p = self.w.put_record(key, kind, rec);
        self.changed |= p == Put::Written;
        p
    }

    pub fn remove(&mut self, key: &str) -> bool {
        let removed = self.w.remove_key(key.as_bytes());
        self.changed |= removed;
        removed
    }

    /// Retries keys that did not fit earlier, if space was freed since (a key leaves the list once written).
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
            let p = self.w.put_record(&key, kind, rec);
            self.changed |= p == Put::Written;
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
        self.retry_held_back();
        if self.changed {
            self.w
                .region
                .header()
                .change_count
                .fetch_add(1, Ordering::Release);
        }
        self.w.publish_counts();
        self.w.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize, port: u16) -> Vec<Node> {
        (0..n)
            .map(|i| Node {
                host: format!("10.0.{}.{}", i / 250, i % 250),
                port,
            })
            .collect()
    }

    fn get(r: &Region, key: &str) -> Option<(u32, u64, Vec<Node>)> {
        let mut buf = vec![0u8; 1 << 16];
        match r.lookup(key.as_bytes(), &mut buf) {
            Lookup::Found {
                slot,
                version,
                count,
                len,
                ..
            } => Some((slot, version, decode_nodes(&buf[..len], count))),
            Lookup::NotFound => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn put_lookup_unchanged_and_remove() {
        let r = Region::create(1 << 20).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        assert_eq!(get(&r, "ns/a:http"), None);
        {
            let mut b = w.batch().unwrap();
            assert_eq!(b.put_port("ns/a:http", &nodes(3, 80)), Put::Written);
            assert_eq!(b.put_service("ns/a", &["http"]), Put::Written);
        }
        let (slot, v1, got) = get(&r, "ns/a:http").unwrap();
        assert_eq!(got, nodes(3, 80));
        let mut buf = [0u8; 64];
        assert!(r.is_current(slot, v1));
        // Same content: no new version.
        assert_eq!(
            w.batch().unwrap().put_port("ns/a:http", &nodes(3, 80)),
            Put::Unchanged
        );
        assert!(r.is_current(slot, v1));
        // New content: new version, same key.
        assert_eq!(
            w.batch().unwrap().put_port("ns/a:http", &nodes(2, 80)),
            Put::Written
        );
        let (_, v2, got) = get(&r, "ns/a:http").unwrap();
        assert!(v2 > v1);
        assert_eq!(got.len(), 2);
        assert_eq!(r.service_ports("ns/a"), Some(vec!["http".to_string()]));
        // A port key is not a service marker and vice versa.
        assert_eq!(get(&r, "ns/a"), None);
        assert!(w.batch().unwrap().remove("ns/a:http"));
        assert_eq!(get(&r, "ns/a:http"), None);
        assert!(!r.is_current(slot, v2));
        assert_eq!(r.lookup(b"ns/a:http", &mut buf), Lookup::NotFound);
    }

    /// Overwrites byte `at` of the record that `key` points to.
    fn corrupt_record(r: &Region, key: &str, at: usize, value: u8) {
        let (off, _) = (0..r.slot_count())
            .filter_map(|i| decode_loc(r.slot(i).loc.load(Ordering::Relaxed), r.heap_words().len()))
            .find(|&(off, len)| {
                let bytes: Vec<u8> = r.heap_words()[off..off + round_up8(len) / 8]
                    .iter()
                    .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
                    .collect();
                RecordView::parse(&bytes[..len]).is_some_and(|v| v.key == key.as_bytes())
            })
            .expect("record present");
        let word = &r.heap_words()[off + at / 8];
        let mut bytes = word.load(Ordering::Relaxed).to_le_bytes();
        bytes[at % 8] = value;
        word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }

    #[test]
    fn a_record_contradicting_its_header_is_reported_corrupt_not_read() {
        let r = Region::create(1 << 20).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        let mut b = w.batch().unwrap();
        b.put_port("ns/count:80", &nodes(2, 80));
        b.put_port("ns/host:80", &nodes(2, 80));
        b.put_port("ns/short:80", &nodes(2, 80));
        b.put_service("ns/svc", &["http", "grpc"]);
        drop(b);
        let mut buf = vec![0u8; 1 << 16];
        // count (bytes 8..12) says a billion nodes.
        corrupt_record(&r, "ns/count:80", 11, 0x40);
        assert_eq!(r.lookup(b"ns/count:80", &mut buf), Lookup::Corrupt);
        // The first node's host length (body byte 2; the key pads the header to 32 bytes) runs past the body.
        corrupt_record(&r, "ns/host:80", 32 + 2, 255);
        assert_eq!(r.lookup(b"ns/host:80", &mut buf), Lookup::Corrupt);
        // count says fewer nodes than the body holds.
        corrupt_record(&r, "ns/short:80", 8, 1);
        assert_eq!(r.lookup(b"ns/short:80", &mut buf), Lookup::Corrupt);
        // Service markers are checked the same way.
        corrupt_record(&r, "ns/svc", 8, 9);
        assert_eq!(r.find(b"ns/svc", KIND_SERVICE, &mut buf), Lookup::Corrupt);
        // Decoding a lying count never allocates for it.
        assert!(decode_nodes(&[0u8; 6], u32::MAX).capacity() <= 2);
        assert!(decode_names(&[0u8; 4], u32::MAX).capacity() <= 4);
    }

    #[test]
    fn a_writer_that_died_inside_a_status_or_table_update_is_repaired() {
        let r = Region::create(1 << 20).unwrap();
        let h = r.header();
        // A dead writer's odd sequences: the status block and the slot table were being changed.
        h.status_seq.store(5, Ordering::Relaxed);
        h.table_seq.store(3, Ordering::Relaxed);
        let mut w = Writer::claim(&r, 1).unwrap();
        assert_eq!(h.status_seq.load(Ordering::Relaxed) & 1, 0);
        assert_eq!(h.table_seq.load(Ordering::Relaxed) & 1, 0);
        let mut b = w.batch().unwrap();
        b.set_error("list failed: 503");
        b.put_port("ns/a:80", &nodes(1, 80));
        drop(b);
        assert_eq!(h.status_seq.load(Ordering::Relaxed) & 1, 0);
        assert_eq!(r.status().last_error, "list failed: 503");
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            r.lookup(b"ns/a:80", &mut buf),
            Lookup::Found { count: 1, .. }
        ));
    }

    #[test]
    fn a_live_lock_holder_makes_claim_and_batch_fail_at_once_and_a_panic_releases_the_lock() {
        let r = Region::create(1 << 20).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        r.hold_lock_as_stranger();
        assert!(matches!(w.batch(), Err(StoreError::Locked)));
        assert!(matches!(Writer::claim(&r, 1), Err(StoreError::Locked)));
        r.release_stranger_lock();
        let mut w = Writer::claim(&r, 1).unwrap();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut b = w.batch().unwrap();
            b.put_port("ns/a:80", &nodes(1, 80));
            panic!("inside a batch");
        }));
        assert!(unwound.is_err());
        assert_eq!(r.lock_holder_pid(), 0, "the lock was given back");
        assert!(w.batch().is_ok());
    }

    #[test]
    fn the_services_and_endpoints_gauges_follow_puts_replaces_removes_and_a_new_writer() {
        let r = Region::create(1 << 20).unwrap();
        let gauges = |r: &Region| (r.metric(Metric::Services), r.metric(Metric::Endpoints));
        let mut w = Writer::claim(&r, 1).unwrap();
        let mut b = w.batch().unwrap();
        b.put_service("ns/a", &["http", "grpc"]);
        b.put_port("ns/a:http", &nodes(3, 80));
        b.put_port("ns/a:grpc", &nodes(2, 81));
        b.put_service("ns/b", &["http"]);
        b.put_port("ns/b:http", &nodes(4, 80));
        drop(b);
        assert_eq!(gauges(&r), (2, 9));
        let mut b = w.batch().unwrap();
        b.put_port("ns/a:http", &nodes(1, 80));
        b.remove("ns/b:http");
        b.remove("ns/b");
        drop(b);
        assert_eq!(gauges(&r), (1, 3));
        // A new writer (a restarted watcher) counts what the region holds.
        drop(w);
        let mut w = Writer::claim(&r, 1).unwrap();
        assert_eq!(gauges(&r), (1, 3));
        w.batch().unwrap().remove("ns/a:grpc");
        assert_eq!(gauges(&r), (1, 1));
    }

    #[test]
    fn small_buffer_reports_needed_size() {
        let r = Region::create(1 << 20).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        w.batch().unwrap().put_port("ns/big:80", &nodes(100, 80));
        let mut small = [0u8; 32];
        let Lookup::TooSmall { need } = r.lookup(b"ns/big:80", &mut small) else {
            panic!()
        };
        let mut buf = vec![0u8; need];
        assert!(matches!(
            r.lookup(b"ns/big:80", &mut buf),
            Lookup::Found { count: 100, .. }
        ));
    }

    #[test]
    fn full_region_keeps_old_data_and_retries_when_space_frees() {
        let r = Region::create(MIN_REGION_BYTES).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        let mut b = w.batch().unwrap();
        assert_eq!(b.put_port("ns/a:80", &nodes(10, 80)), Put::Written);
        let mut fillers = 0;
        while b.put_port(&format!("ns/filler{fillers}:80"), &nodes(300, 80)) == Put::Written {
            fillers += 1;
        }
        assert!(fillers > 2);
        assert_eq!(b.put_port("ns/a:80", &nodes(1200, 81)), Put::Full);
        drop(b);
        assert_eq!(
            get(&r, "ns/a:80").unwrap().2,
            nodes(10, 80),
            "old content is still served"
        );
        assert_eq!(
            get(&r, &format!("ns/filler{fillers}:80")),
            None,
            "a new key that did not fit is not visible"
        );
        assert!(r.status().full_rejections >= 2);
        assert_eq!(w.held_back(), 2);
        // Freeing space lets the held-back updates land without the caller writing them again.
        let mut b = w.batch().unwrap();
        for i in 0..fillers {
            b.remove(&format!("ns/filler{i}:80"));
        }
        drop(b);
        assert_eq!(get(&r, "ns/a:80").unwrap().2, nodes(1200, 81));
        assert_eq!(
            get(&r, &format!("ns/filler{fillers}:80")).unwrap().2.len(),
            300
        );
        assert_eq!(w.held_back(), 0);
    }

    #[test]
    fn churn_reuses_space() {
        let r = Region::create(256 * 1024).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        for round in 0..2000u32 {
            let mut b = w.batch().unwrap();
            let key = format!("ns/s{}:80", round % 50);
            assert_eq!(
                b.put_port(&key, &nodes(1 + (round as usize % 20), round as u16)),
                Put::Written
            );
            if round % 3 == 0 {
                b.remove(&format!("ns/s{}:80", (round + 7) % 50));
            }
        }
        assert!(
            r.status().heap_used < 64 * 1024,
            "freed records are reused: {:?}",
            r.status()
        );
    }

    #[test]
    fn deleted_keys_do_not_fill_the_slot_table() {
        // 64 KiB: 256 slots. Far more distinct keys than slots come and go, a few live at a time.
        let r = Region::create(MIN_REGION_BYTES).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        for i in 0..20_000 {
            let mut b = w.batch().unwrap();
            assert_eq!(
                b.put_port(&format!("ns/svc{i}:80"), &nodes(1, 80)),
                Put::Written,
                "key {i}"
            );
            if i >= 5 {
                assert!(b.remove(&format!("ns/svc{}:80", i - 5)));
            }
        }
        assert_eq!(r.status().full_rejections, 0);
        for i in 19_995..20_000 {
            assert!(get(&r, &format!("ns/svc{i}:80")).is_some());
        }
        assert_eq!(get(&r, "ns/svc19994:80"), None);
        // A new writer (restart) sees the same table and keeps working.
        let mut w = Writer::claim(&r, 1).unwrap();
        assert_eq!(
            w.batch().unwrap().put_port("ns/after:80", &nodes(1, 80)),
            Put::Written
        );
        assert!(get(&r, "ns/svc19999:80").is_some());
    }

    #[test]
    fn random_churn_at_high_load_never_reports_full() {
        // 256 slots, 150 live keys (59 %), removed in random order and replaced by new ones: tombstones inside
        // probe chains pile up unless the writer sweeps them while it runs, not only when it claims.
        let r = Region::create(MIN_REGION_BYTES).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        let mut live: Vec<String> = Vec::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..60_000 {
            let mut b = w.batch().unwrap();
            if live.len() >= 150 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let victim = live.swap_remove((rng % live.len() as u64) as usize);
                assert!(b.remove(&victim));
            }
            let key = format!("ns/svc{i}:80");
            assert_eq!(b.put_port(&key, &nodes(1, 80)), Put::Written, "op {i}");
            live.push(key);
        }
        drop(w);
        assert_eq!(r.status().full_rejections, 0);
        for key in &live {
            assert!(get(&r, key).is_some(), "{key}");
        }
    }

    #[test]
    fn held_back_keys_are_counted_once_and_retried_only_after_space_frees() {
        let r = Region::create(MIN_REGION_BYTES).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        let mut b = w.batch().unwrap();
        assert_eq!(b.put_port("ns/filler:80", &nodes(2500, 80)), Put::Written);
        assert_eq!(b.put_port("ns/big:80", &nodes(2500, 81)), Put::Full);
        drop(b);
        for _ in 0..10 {
            w.batch().unwrap().set_state(SyncState::Watching);
        }
        assert_eq!(r.status().full_rejections, 1);
        w.batch().unwrap().remove("ns/filler:80");
        assert_eq!(get(&r, "ns/big:80").unwrap().2.len(), 2500);
        assert_eq!(r.status().pending_full, 0);
    }

    #[test]
    fn an_older_generation_cannot_claim_the_region_back() {
        let r = Region::create(1 << 20).unwrap();
        let mut new = Writer::claim(&r, 2).unwrap();
        assert!(matches!(Writer::claim(&r, 1), Err(StoreError::Superseded)));
        assert!(new.is_owner());
        assert_eq!(
            new.batch().unwrap().put_port("ns/a:80", &nodes(1, 80)),
            Put::Written
        );
        // The same generation (a respawned watcher of the current configuration) may take over.
        let _respawned = Writer::claim(&r, 2).unwrap();
        assert!(matches!(new.batch(), Err(StoreError::Superseded)));
    }

    #[test]
    fn second_writer_supersedes_first() {
        let r = Region::create(1 << 20).unwrap();
        let mut a = Writer::claim(&r, 1).unwrap();
        a.batch().unwrap().put_port("ns/a:80", &nodes(1, 80));
        let mut b = Writer::claim(&r, 1).unwrap();
        assert!(matches!(a.batch(), Err(StoreError::Superseded)));
        // The new writer sees what the old one wrote and carries on.
        assert_eq!(
            b.batch().unwrap().put_port("ns/a:80", &nodes(1, 80)),
            Put::Unchanged
        );
        assert_eq!(
            b.batch().unwrap().put_port("ns/a:80", &nodes(2, 80)),
            Put::Written
        );
    }

    #[test]
    fn lock_of_dead_process_is_taken_over_and_half_done_slot_repaired() {
        let r = Region::create(1 << 20).unwrap();
        let mut a = Writer::claim(&r, 1).unwrap();
        a.batch().unwrap().put_port("ns/a:80", &nodes(3, 80));
        // SAFETY: fork in a test; the child exits immediately without touching shared state.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: terminate the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(child, &mut status, 0) };
        // Pretend the dead child died inside a batch, mid-way through updating a slot.
        let h = r.header();
        h.lock.store((1 << 40) | child as u64, Ordering::SeqCst);
        let slot = a.keys[b"ns/a:80".as_slice()].slot;
        r.slot(slot).seq.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 256];
        assert_eq!(r.lookup(b"ns/a:80", &mut buf), Lookup::Busy);
        let mut b = Writer::claim(&r, 1).unwrap();
        assert_eq!(get(&r, "ns/a:80").unwrap().2, nodes(3, 80));
        assert_eq!(
            b.batch().unwrap().put_port("ns/a:80", &nodes(4, 80)),
            Put::Written
        );
    }

    /// A reader in another process never sees a torn record while the writer rewrites and reuses space.
    #[test]
    fn a_forked_reader_never_misses_a_live_key_while_the_table_is_rehashed() {
        const HOT: usize = 50;
        // 1024 slots: a rehash takes long enough for lookups to overlap it.
        let r = Region::create(256 * 1024).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        for k in 0..HOT {
            w.batch()
                .unwrap()
                .put_port(&format!("ns/hot{k}:80"), &nodes(1, 80));
        }
        let mut fds = [0i32; 2];
        // SAFETY: a pipe for the child to say it is reading, so the churn below overlaps its reads.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fork in a test. The child only reads the shared mapping and exits with _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let mut buf = vec![0u8; 1 << 12];
            let mut missed = 0u32;
            // SAFETY: writing one byte to our end of the pipe.
            unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            'read: while std::time::Instant::now() < deadline {
                for k in 0..HOT {
                    match r.lookup(format!("ns/hot{k}:80").as_bytes(), &mut buf) {
                        Lookup::Found { count, len, .. } => {
                            if decode_nodes(&buf[..len], count).first().map(|n| n.port) == Some(9) {
                                break 'read;
                            }
                        }
                        Lookup::Busy => {}
                        _ => missed += 1,
                    }
                }
            }
            // SAFETY: leave the child without running the test harness's exit path.
            unsafe { libc::_exit(if missed > 0 { 2 } else { 0 }) };
        }
        let mut byte = [0u8; 1];
        // SAFETY: reading one byte from our end of the pipe; blocks until the child is reading.
        assert_eq!(
            unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) },
            1
        );
        // Random churn of 700 more keys at high load: rehashes move the hot keys around.
        let mut live: Vec<String> = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for i in 0..100_000 {
            let mut b = w.batch().unwrap();
            if live.len() >= 700 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                b.remove(&live.swap_remove((rng % live.len() as u64) as usize));
            }
            let key = format!("ns/churn{i}:80");
            assert_eq!(b.put_port(&key, &nodes(1, 80)), Put::Written);
            live.push(key);
        }
        let rehashes = r.header().table_seq.load(Ordering::Relaxed) / 2;
        w.batch().unwrap().put_port("ns/hot0:80", &nodes(1, 9));
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(
            rehashes > 10,
            "the churn rehashed the table {rehashes} times"
        );
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child saw a live key missing (status {status})"
        );
    }

    #[test]
    fn reader_in_forked_process_sees_only_whole_records() {
        const DONE: u16 = 60000;
        let r = Region::create(512 * 1024).unwrap();
        let mut w = Writer::claim(&r, 1).unwrap();
        // The first record, like every later one, has 1 + port % 13 nodes.
        w.batch().unwrap().put_port("ns/hot:80", &nodes(2, 1));
        let mut fds = [0i32; 2];
        // SAFETY: a pipe for the child to say it is reading, so the writes below overlap its reads.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fork in a test. The child only reads the shared mapping and exits with _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let mut buf = vec![0u8; 1 << 16];
            let (mut versions, mut last, mut torn, mut odd) = (0u32, 0u64, 0u32, 0u32);
            // SAFETY: writing one byte to our end of the pipe.
            unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                match r.lookup(b"ns/hot:80", &mut buf) {
                    Lookup::Found {
                        version,
                        count,
                        len,
                        ..
                    } => {
                        let got = decode_nodes(&buf[..len], count);
                        // Every record written has 1 + port % 13 nodes, all on that port.
                        let port = got.first().map(|n| n.port).unwrap_or(0);
                        if count as u16 != 1 + port % 13 || got != nodes(count as usize, port) {
                            torn += 1;
                        }
                        if version != last {
                            versions += 1;
                            last = version;
                        }
                        if port == DONE {
                            break;
                        }
                    }
                    Lookup::Busy => {}
                    _ => odd += 1,
                }
            }
            let code = if torn > 0 {
                2
            } else if odd > 0 {
                3
            } else if versions < 10 {
                4
            } else {
                0
            };
            // SAFETY: leave the child without running the test harness's exit path.
            unsafe { libc::_exit(code) };
        }
        let mut byte = [0u8; 1];
        // SAFETY: reading one byte from our end of the pipe; blocks until the child is reading.
        assert_eq!(
            unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) },
            1
        );
        let start = std::time::Instant::now();
        let mut port = 2u16;
        while start.elapsed() < std::time::Duration::from_millis(700) || port < 20_000 {
            let mut b = w.batch().unwrap();
            b.put_port("ns/hot:80", &nodes(1 + (port % 13) as usize, port));
            // Churn other keys so freed blocks get reused while the child may still be copying them.
            b.put_port(
                &format!("ns/other{}:80", port % 17),
                &nodes(1 + (port % 5) as usize, port),
            );
            port = if port + 1 >= DONE { 2 } else { port + 1 };
        }
        w.batch()
            .unwrap()
            .put_port("ns/hot:80", &nodes(1 + (DONE % 13) as usize, DONE));
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        let meaning = match code {
            0 => "ok",
            2 => "a torn record was interpreted",
            3 => "the key was reported missing",
            4 => "too few versions seen to prove anything",
            _ => "the child crashed or timed out",
        };
        assert_eq!(code, 0, "{meaning}");
    }
}
