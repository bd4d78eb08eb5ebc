//! The region's single writer: claiming it, its batch lock, the key index, and placing records in the heap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::batch::Batch;
use super::free_space::FreeSpace;
use super::layout::*;
use super::record::*;
use super::region::Region;
use super::{Metric, Put, StoreError};

/// Writer tokens: generation (24 bits) | claim number within this process (8 bits) | pid (32 bits). The claim
/// number tells apart two writers of one process (a watcher restarted after a panic, or tests); 16 million
/// configuration generations are far more reloads than an nginx master lives through.
pub(super) fn make_token(generation: u32) -> u64 {
    static CLAIMS: AtomicU64 = AtomicU64::new(0);
    let claim = CLAIMS.fetch_add(1, Ordering::Relaxed) & 0xff;
    (u64::from(generation & 0xff_ffff) << 40) | (claim << 32) | u64::from(std::process::id())
}

pub(super) fn token_pid(token: u64) -> u32 {
    token as u32
}

pub(super) fn token_generation(token: u64) -> u32 {
    (token >> 40) as u32
}

pub(super) fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission; it has no effect on the target.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What the writer knows about one key.
pub(super) struct Known {
    pub(super) slot: usize,
    pub(super) kind: u16,
    pub(super) off: usize,
    pub(super) len: usize,
    /// The record's item count (nodes of a port entry), for the endpoint gauge.
    pub(super) count: u32,
}

/// The single writer of a region. Holds the free-space map and key index privately.
pub struct Writer<'r> {
    pub(super) region: &'r Region,
    pub(super) token: u64,
    pub(super) free: FreeSpace,
    pub(super) keys: HashMap<Vec<u8>, Known>,
    /// The active slot table (0 or 1), the one `Known::slot` indexes; the other is built by a re-layout.
    pub(super) table: usize,
    /// Non-empty slots (live or tombstone): what probe chains cross (see `used_slot_limit`).
    pub(super) used_slots: usize,
    /// Keys whose latest content did not fit; they keep old content and are retried when space frees.
    pub(super) held_back: HashMap<Vec<u8>, (u16, Vec<u8>)>,
    /// Whether heap space or slots were freed since a write last failed (only then is a retry worth it).
    pub(super) freed_since_full: bool,
    pub(super) heap_used: usize,
    /// What `keys` holds, kept up to date as keys come and go (published as the services and endpoints gauges).
    pub(super) held: Held,
}

/// Services and nodes a writer's keys hold.
#[derive(Default, Clone, Copy)]
pub(super) struct Held {
    pub(super) services: u64,
    pub(super) endpoints: u64,
}

impl Held {
    pub(super) fn add(&mut self, k: &Known) {
        match k.kind {
            KIND_SERVICE => self.services += 1,
            _ => self.endpoints += u64::from(k.count),
        }
    }

    pub(super) fn remove(&mut self, k: &Known) {
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
            table: 0,
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

    pub(super) fn unlock(&self) {
        let _ = self.region.header().lock.compare_exchange(
            self.token,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Slot `i` of the active table.
    pub(super) fn slot(&self, i: usize) -> &'r Slot {
        self.region.slot(self.table, i)
    }

    /// Rebuilds the private index and free map from the region's active table, repairing slots a dead writer left
    /// half-updated: a slot whose record is unreadable, overlaps another record or repeats a key becomes a
    /// tombstone. The inactive table is ignored: a writer that died during a re-layout left it half built, and the
    /// next re-layout builds it again from scratch.
    pub(super) fn rebuild(&mut self) {
        let r = self.region;
        self.table = r.table_gen() as usize % TABLES;
        let words = r.heap_words();
        // (offset in words, length in bytes, slot, key, kind, count) of every readable record.
        let mut found: Vec<(usize, usize, usize, Vec<u8>, u16, u32)> = Vec::new();
        let mut unreadable = Vec::new();
        for i in 0..r.slot_count() {
            let s = self.slot(i);
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
            set_slot_loc(self.slot(i), TOMBSTONE);
        }
        // A writer that died inside a slot left its sequence odd and its words part old, part new: a version that
        // workers have cached may sit beside a tombstone or another record. Rewrite such a slot whole, a live one
        // with a version never handed out, so no cached (slot, version) pair can vouch for it any more.
        let h = r.header();
        for i in 0..r.slot_count() {
            let s = self.slot(i);
            if s.seq.load(Ordering::Relaxed) & 1 == 0 {
                continue;
            }
            let (hash, loc) = (
                s.hash.load(Ordering::Relaxed),
                s.loc.load(Ordering::Relaxed),
            );
            if loc == EMPTY || loc == TOMBSTONE {
                write_slot(s, 0, 0, loc);
            } else {
                write_slot(s, hash, h.next_version.fetch_add(1, Ordering::Relaxed), loc);
            }
        }
        let v = h.status_seq.load(Ordering::Relaxed);
        if v & 1 == 1 {
            h.status_seq.store(v + 1, Ordering::Release);
        }
        self.used_slots = (0..r.slot_count())
            .filter(|&i| self.slot(i).loc.load(Ordering::Relaxed) != EMPTY)
            .count();
        for i in 0..r.slot_count() {
            if self.slot(i).loc.load(Ordering::Relaxed) == EMPTY {
                self.reclaim_tombstones_before(i);
            }
        }
        self.publish_counts();
    }

    /// Lays the slot table out afresh: every live key at the first free slot of its probe chain, no tombstones.
    /// Runs when tombstones fill the table (churn deletes keys inside probe chains, where they cannot simply be
    /// emptied; see `free_slot` for when). The new layout is built in the inactive table while readers keep probing the active one, which
    /// does not change meanwhile; one store of the table generation then switches readers to it. A writer killed
    /// part way leaves the active table as it was, and the next writer claims from it.
    pub(super) fn rehash(&mut self) {
        let r = self.region;
        let n = r.slot_count();
        let next = (self.table + 1) % TABLES;
        // The table about to be rebuilt was active before the last switch, and a reader that started then may still
        // be probing it. Every store below comes after this fence, so such a reader that sees any of them also sees
        // the generation has moved on since it started, and looks again (see `Region::find`).
        fence(Ordering::Release);
        for i in 0..n {
            let s = r.slot(next, i);
            if s.loc.load(Ordering::Relaxed) != EMPTY || s.seq.load(Ordering::Relaxed) & 1 == 1 {
                write_slot(s, 0, 0, EMPTY);
            }
        }
        for (key, k) in self.keys.iter_mut() {
            let hash = key_hash(key);
            let mut i = (hash as usize) & (n - 1);
            while r.slot(next, i).loc.load(Ordering::Relaxed) != EMPTY {
                i = (i + 1) & (n - 1);
            }
            // The version moves with the record: a reader's (hint, version) of an unchanged key stays meaningful.
            let version = r.slot(self.table, k.slot).version.load(Ordering::Relaxed);
            write_slot(r.slot(next, i), hash, version, encode_loc(k.off, k.len));
            k.slot = i;
        }
        // The switch: readers that load the new generation (acquire) see the complete table built above.
        let table_gen = &r.header().table_gen;
        let generation = table_gen.load(Ordering::Relaxed);
        table_gen.store(generation + 1, Ordering::Release);
        self.table = next;
        self.used_slots = self.keys.len();
        self.freed_since_full = true;
    }

    /// Lays the slot table out afresh now, as one batch. The writer does this on its own when tombstones fill the
    /// table; benchmarks and fault tests call it to time a re-layout or to interrupt one.
    #[doc(hidden)]
    pub fn relayout(&mut self) -> Result<(), StoreError> {
        let b = self.batch()?;
        b.w.rehash();
        Ok(())
    }

    /// Turns the run of tombstones just before an empty slot back into empty slots. Safe for readers: no probe
    /// chain of a live key crosses an empty slot, so none can need those tombstones to continue.
    pub(super) fn reclaim_tombstones_before(&mut self, empty: usize) {
        let r = self.region;
        let n = r.slot_count();
        let mut i = (empty + n - 1) & (n - 1);
        for _ in 0..n {
            let s = self.slot(i);
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
        Ok(Batch { w: self })
    }

    /// Every key the region holds, with its kind.
    pub fn keys(&self) -> impl Iterator<Item = (&[u8], u16)> {
        self.keys.iter().map(|(k, v)| (k.as_slice(), v.kind))
    }

    /// Keys whose latest content did not fit and waits for space.
    pub fn held_back(&self) -> usize {
        self.held_back.len()
    }

    pub(super) fn publish_counts(&self) {
        let h = self.region.header();
        h.metrics[Metric::Services as usize].store(self.held.services, Ordering::Relaxed);
        h.metrics[Metric::Endpoints as usize].store(self.held.endpoints, Ordering::Relaxed);
        h.entries.store(self.keys.len() as u64, Ordering::Relaxed);
        h.heap_used.store(self.heap_used as u64, Ordering::Relaxed);
        h.pending_full
            .store(self.held_back.len() as u64, Ordering::Relaxed);
    }

    pub(super) fn record_bytes(&self, k: &Known) -> Vec<u8> {
        let words = self.region.heap_words();
        let mut bytes = Vec::with_capacity(round_up8(k.len));
        for w in &words[k.off..k.off + round_up8(k.len) / 8] {
            bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(k.len);
        bytes
    }

    pub(super) fn put_record(&mut self, key: &[u8], kind: u16, mut record: Vec<u8>) -> Put {
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
        // A new key needs a slot, if the live keys have not reached their limit (see `free_slot`).
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
        let s = self.slot(slot);
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

    pub(super) fn hold_back(&mut self, key: &[u8], kind: u16, record: Vec<u8>) -> Put {
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
    /// empty (a fresh slot lengthens probe chains; a reused tombstone does not). None once the live keys reach
    /// `live_key_limit`.
    ///
    /// A fresh slot past 7/8 of the table is taken at once while tombstones are few, up to `used_slot_limit`;
    /// only then, or once tombstones make up `tombstones_worth_a_relayout`, is the table laid out afresh first.
    /// Re-laying it out whenever a fresh slot would pass 7/8 cost one O(slots) re-layout for nearly every delete
    /// and insert once the live keys were near the limit (each delete leaves a tombstone, each insert wants a
    /// fresh slot); now each re-layout frees 1/16 of the slots for the tombstones to come.
    pub(super) fn free_slot(&mut self, key: &[u8]) -> Option<(usize, bool)> {
        let r = self.region;
        let n = r.slot_count();
        if self.keys.len() >= live_key_limit(n) {
            return None;
        }
        let mut i = (key_hash(key) as usize) & (n - 1);
        for _ in 0..n {
            let loc = self.slot(i).loc.load(Ordering::Relaxed);
            if loc == TOMBSTONE {
                return Some((i, false));
            }
            if loc == EMPTY {
                let tombstones = self.used_slots - self.keys.len();
                if self.used_slots >= live_key_limit(n)
                    && (tombstones >= tombstones_worth_a_relayout(n)
                        || self.used_slots + 1 > used_slot_limit(n))
                {
                    // Then the used slots drop to the live keys, under the limit checked above.
                    self.rehash();
                    return self.free_slot(key);
                }
                return Some((i, true));
            }
            i = (i + 1) & (n - 1);
        }
        None
    }

    pub(super) fn remove_key(&mut self, key: &[u8]) -> bool {
        self.held_back.remove(key);
        let Some(k) = self.keys.remove(key) else {
            return false;
        };
        self.held.remove(&k);
        let r = self.region;
        set_slot_loc(self.slot(k.slot), TOMBSTONE);
        let next = (k.slot + 1) & (r.slot_count() - 1);
        if self.slot(next).loc.load(Ordering::Relaxed) == EMPTY {
            self.reclaim_tombstones_before(next);
        }
        self.heap_used -= round_up8(k.len);
        self.free.insert(k.off, round_up8(k.len) / 8);
        self.freed_since_full = true;
        true
    }
}
