//! The region's fixed layout: header, the two slot tables and heap geometry, and how a slot locates its record.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::Metric;
use super::record::RECORD_HEADER;

pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"K8SDISC1");
pub(super) const LAYOUT_VERSION: u64 = 5;
/// Bytes reserved at the start of the region for the header and status block.
pub(super) const HEADER_BYTES: usize = 4096;
pub(super) const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
pub(super) const EMPTY: u64 = 0;
pub(super) const TOMBSTONE: u64 = u64::MAX;
/// How long a writer waits for another live writer's batch to finish before giving up (and retrying later). The
/// waiting is the caller's (`Writer::try_lock` never blocks), so it can wait without holding up other clusters.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How many times a reader re-reads a slot that a writer is changing before reporting "busy".
pub(super) const READ_RETRIES: u32 = 1000;
/// Bytes of the last-error message kept in the status block.
pub(super) const ERROR_TEXT_WORDS: usize = 48;
pub const ERROR_TEXT_BYTES: usize = ERROR_TEXT_WORDS * 8;
/// Slot tables in a region: readers probe the active one while a re-layout builds the other (see
/// `Header::table_gen`).
pub(super) const TABLES: usize = 2;
/// The live keys a slot table holds at most: 7/8 of its slots, so that probe chains stay short. A new key beyond
/// them is refused (`Put::Full`), however many tombstones there are.
pub(super) fn live_key_limit(slots: usize) -> usize {
    slots / 8 * 7
}

/// Tombstones that make a re-layout worth its cost (it rewrites every live key): 1/16 of the slots. Fewer are left
/// in place while the used slots (live keys and tombstones) stay under `used_slot_limit`.
pub(super) fn tombstones_worth_a_relayout(slots: usize) -> usize {
    slots / 16
}

/// The used slots (live keys and tombstones) a table may reach: 15/16 of its slots. Beyond 7/8 a new key takes a
/// fresh slot without a re-layout only while tombstones are fewer than `tombstones_worth_a_relayout`, so there is
/// always an empty slot to end a probe chain, and the load passes 7/8 only while the live keys are near their limit.
pub(super) fn used_slot_limit(slots: usize) -> usize {
    slots - slots / 16
}

/// Smallest region we accept: header, two minimal slot tables and a little heap.
pub const MIN_REGION_BYTES: usize = 64 * 1024;

/// Record kinds.
pub const KIND_PORT: u16 = 1;
pub const KIND_SERVICE: u16 = 2;

#[repr(C)]
pub(super) struct Slot {
    pub(super) seq: AtomicU64,
    pub(super) hash: AtomicU64,
    pub(super) version: AtomicU64,
    pub(super) loc: AtomicU64,
}

#[repr(C)]
pub(super) struct Header {
    pub(super) magic: AtomicU64,
    pub(super) layout: AtomicU64,
    pub(super) size: AtomicU64,
    /// Slots in each of the two tables.
    pub(super) slot_count: AtomicU64,
    pub(super) heap_start: AtomicU64,
    /// Token of the writer that owns the region (see `make_token`).
    pub(super) owner: AtomicU64,
    /// Token of the writer inside a batch, 0 when none.
    pub(super) lock: AtomicU64,
    pub(super) next_version: AtomicU64,
    /// The configuration generation of the last watcher that completed a full list (0: none yet). A
    /// configuration is ready once this reaches the generation it was built at (`Region::is_ready_for`), so a
    /// newer configuration waits for its own first list, and an older one never loses readiness to a newer one
    /// that did not come up (a reload that failed after init).
    pub(super) ready: AtomicU64,
    pub(super) state: AtomicU64,
    pub(super) lists: AtomicU64,
    pub(super) full_rejections: AtomicU64,
    /// Keys currently held back because the region is full.
    pub(super) pending_full: AtomicU64,
    pub(super) last_sync_ms: AtomicU64,
    pub(super) entries: AtomicU64,
    pub(super) heap_used: AtomicU64,
    pub(super) status_seq: AtomicU64,
    /// Re-layouts of the slot table so far; its low bit is the active table, the one readers probe. A re-layout
    /// builds the inactive table, then stores this word once (release): readers move to a complete table in one
    /// step, and a writer that dies while building leaves the active table untouched. The table being built was
    /// active before the previous switch, and its slots point at records freed since: a lookup that saw this word
    /// change while it probed looks again.
    pub(super) table_gen: AtomicU64,
    pub(super) last_error_ms: AtomicU64,
    pub(super) last_error: [AtomicU64; ERROR_TEXT_WORDS],
    /// Operational counters and gauges, indexed by `Metric` (written by the watcher, read by every worker).
    pub(super) metrics: [AtomicU64; Metric::COUNT],
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);

pub(super) fn round_up8(n: usize) -> usize {
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

/// Slot count of each table for a region size: one slot per 256 bytes, a power of two, at least 64. The two tables
/// together take 64 bytes per 256 (a quarter of the region) and the heap the rest.
pub(super) fn slot_count_for(size: usize) -> usize {
    let wanted = (size / 256).max(64);
    let pow = wanted.next_power_of_two();
    if pow > wanted { pow / 2 } else { pow }.max(64)
}

pub(super) fn decode_loc(loc: u64, heap_words: usize) -> Option<(usize, usize)> {
    if loc == EMPTY || loc == TOMBSTONE {
        return None;
    }
    let off = ((loc >> 32) as usize).checked_sub(1)?;
    let len = (loc & 0xffff_ffff) as usize;
    let words = round_up8(len) / 8;
    (len >= RECORD_HEADER && off.checked_add(words)? <= heap_words).then_some((off, len))
}

pub(super) fn encode_loc(off_words: usize, len: usize) -> u64 {
    ((off_words as u64 + 1) << 32) | len as u64
}

/// Points a slot at `loc` (EMPTY or TOMBSTONE) under its seqlock.
pub(super) fn set_slot_loc(s: &Slot, loc: u64) {
    let seq = s.seq.load(Ordering::Relaxed) | 1;
    s.seq.store(seq, Ordering::Relaxed);
    fence(Ordering::Release);
    s.loc.store(loc, Ordering::Relaxed);
    s.version.store(0, Ordering::Relaxed);
    s.seq.store(seq + 1, Ordering::Release);
}

/// Fills a slot under its seqlock. A slot left odd by a writer that died inside it becomes even again.
pub(super) fn write_slot(s: &Slot, hash: u64, version: u64, loc: u64) {
    let seq = s.seq.load(Ordering::Relaxed) | 1;
    s.seq.store(seq, Ordering::Relaxed);
    fence(Ordering::Release);
    s.hash.store(hash, Ordering::Relaxed);
    s.version.store(version, Ordering::Relaxed);
    s.loc.store(loc, Ordering::Relaxed);
    s.seq.store(seq + 1, Ordering::Release);
}
