//! The mapped region and its lock-free reader.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::model::Node;

use super::StoreError;
use super::layout::*;
use super::record::*;
#[cfg(test)]
use super::writer::make_token;

/// How many times a dump scans the keys again because the writer switched slot tables while it read.
const SNAPSHOT_ATTEMPTS: u32 = 64;

/// Outcome of a reader lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A record was copied into the caller's buffer; `len` bytes of body, `count` items; its content last
    /// changed at `changed_s` (seconds since the epoch). `hint` and `version` name the record for `is_current`:
    /// the hint holds the slot in its low 32 bits, and the region leaves its high 32 bits to the caller (an
    /// instance keeps the cluster there).
    Found {
        /// The slot (low half) and the caller's bits (high half).
        hint: u64,
        /// The record's version, never reused within the region.
        version: u64,
        /// Items in the body: nodes, or port names.
        count: u32,
        /// Bytes of body copied to the start of the buffer.
        len: usize,
        /// When the content last changed, in seconds since the epoch.
        changed_s: u32,
    },
    /// No such key.
    NotFound,
    /// The caller's buffer is too small; `need` bytes are required.
    TooSmall {
        /// Bytes the buffer needs.
        need: usize,
    },
    /// The writer kept changing the slot (or died while changing it, until the next writer repairs it); try again
    /// later. A re-layout of the slot table never causes it.
    Busy,
    /// The record's contents contradict its own header (memory corruption): nothing was copied out.
    Corrupt,
}

/// A mapped region. The mapping stays valid for the life of the value and is shared with forked children.
pub struct Region {
    pub(super) base: *mut u8,
    pub(super) size: usize,
    /// Geometry fixed at creation, kept in process memory: faster than re-reading the header, and a corrupted
    /// header can then never make an index go out of bounds. `slots` is the size of each of the two tables.
    pub(super) slots: usize,
    pub(super) heap_start: usize,
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
        let heap_start = HEADER_BYTES + TABLES * slots * SLOT_BYTES;
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
        // Fresh anonymous pages are zero, which is "empty" for every slot and counter, and table 0 active.
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

    /// The mapping's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_BYTES long, page aligned, and Header consists of atomics only, so a
        // shared reference is sound even while other processes modify it.
        unsafe { &*(self.base as *const Header) }
    }

    pub(super) fn slot_count(&self) -> usize {
        self.slots
    }

    /// Slot `i` of table `table` (both taken modulo their bounds, so a value read from shared memory can never
    /// index out of the tables).
    pub(super) fn slot(&self, table: usize, i: usize) -> &Slot {
        let index = (table % TABLES) * self.slots + i % self.slots;
        // SAFETY: `index < TABLES * slot_count`, and the two tables lie within the mapping, between the header and
        // the heap, by construction in `create`; Slot is all atomics.
        unsafe { &*(self.base.add(HEADER_BYTES + index * SLOT_BYTES) as *const Slot) }
    }

    /// The table generation (see `Header::table_gen`): its low bit is the active table.
    pub(super) fn table_gen(&self) -> u64 {
        self.header().table_gen.load(Ordering::Acquire)
    }

    /// Re-layouts of the slot table since the region was created (the benchmark counts them).
    #[doc(hidden)]
    pub fn relayouts(&self) -> u64 {
        self.table_gen()
    }

    pub(super) fn heap_words(&self) -> &[AtomicU64] {
        // SAFETY: [heap_start, size) lies within the mapping, is 8-byte aligned, and AtomicU64 has the size and
        // alignment of u64.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(self.heap_start) as *const AtomicU64,
                (self.size - self.heap_start) / 8,
            )
        }
    }

    /// Whether `(hint, version)` from an earlier lookup still names the slot's current record (only the hint's low
    /// 32 bits, the slot, are read). Versions are never reused within a region, so equality proves the content is
    /// unchanged without reading the record. The slot is read in the active table: after a re-layout moved the key
    /// the answer is false, and the caller's fresh lookup finds it in its new slot.
    pub fn is_current(&self, hint: u64, version: u64) -> bool {
        let slot = hint as u32;
        if version == 0 || slot as usize >= self.slot_count() {
            return false;
        }
        let gen_word = &self.header().table_gen;
        for _ in 0..READ_RETRIES {
            let generation = gen_word.load(Ordering::Acquire);
            let s = self.slot(generation as usize, slot as usize);
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let v = s.version.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            // A table switched away from is no longer kept current: its answer only counts if it was still active.
            if s.seq.load(Ordering::Relaxed) == seq
                && gen_word.load(Ordering::Relaxed) == generation
            {
                return v == version;
            }
        }
        false
    }

    /// Looks a port entry up and copies its nodes into `out`.
    pub fn lookup(&self, key: &[u8], out: &mut [u8]) -> Lookup {
        self.find(key, KIND_PORT, out)
    }

    /// Probes the active table for `key` and copies its record body into `out`.
    pub(super) fn find(&self, key: &[u8], kind: u16, out: &mut [u8]) -> Lookup {
        let gen_word = &self.header().table_gen;
        for _ in 0..READ_RETRIES {
            let generation = gen_word.load(Ordering::Acquire);
            let found = self.probe(generation as usize, key, kind, out);
            // Every answer from the table that was active all along stands. Once the writer has switched tables,
            // the one probed is rebuilt and its records freed: anything read there may be stale or torn (the
            // writer's stores that made it so come after the switch, so this load sees the switch), and the
            // complete new table is probed instead. A re-layout takes far longer than a probe, so this repeats
            // only for a reader that stalled across one.
            fence(Ordering::Acquire);
            if gen_word.load(Ordering::Relaxed) == generation {
                return found;
            }
        }
        Lookup::Busy
    }

    pub(super) fn probe(&self, table: usize, key: &[u8], kind: u16, out: &mut [u8]) -> Lookup {
        let n = self.slot_count();
        let hash = key_hash(key);
        let mut i = (hash as usize) & (n - 1);
        for _ in 0..n {
            match self.read_slot(table, i, hash, key, kind, out) {
                SlotRead::Empty => return Lookup::NotFound,
                SlotRead::Other => {}
                SlotRead::Busy => return Lookup::Busy,
                SlotRead::Hit(l) => return l,
            }
            i = (i + 1) & (n - 1);
        }
        Lookup::NotFound
    }

    pub(super) fn read_slot(
        &self,
        table: usize,
        i: usize,
        hash: u64,
        key: &[u8],
        kind: u16,
        out: &mut [u8],
    ) -> SlotRead {
        let s = self.slot(table, i);
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
                hint: i as u64,
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

    /// A copy of every live record, for the dump: the keys of the active table, then a lookup of each (which
    /// follows the table wherever a re-layout moves it). Each record is read consistently; skips records that
    /// stay busy.
    pub fn snapshot(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut buf = vec![0u8; 4096];
        for key in self.live_keys() {
            for kind in [KIND_SERVICE, KIND_PORT] {
                loop {
                    match self.find(&key, kind, &mut buf) {
                        Lookup::Found {
                            count,
                            len,
                            version,
                            ..
                        } => {
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
                        Lookup::TooSmall { need } => {
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

    /// The keys the active table points at, sorted. When the writer switches tables during a scan (see `find`),
    /// the keys read so far are kept and the new table is scanned again, from a different starting slot each time
    /// so that even back-to-back re-layouts cannot hide the same part of the table every time; after
    /// `SNAPSHOT_ATTEMPTS` scans the keys gathered so far are used. Every key is looked up before anything is
    /// reported, so a stale one only costs a miss.
    fn live_keys(&self) -> Vec<Vec<u8>> {
        let gen_word = &self.header().table_gen;
        let n = self.slot_count();
        // A set, so that repeated scans cost memory in keys, not in keys times scans.
        let mut keys = std::collections::BTreeSet::new();
        for attempt in 0..SNAPSHOT_ATTEMPTS {
            let generation = gen_word.load(Ordering::Acquire);
            let table = generation as usize;
            let start = attempt as usize * (n / SNAPSHOT_ATTEMPTS as usize);
            for i in 0..n {
                if let Some(key) = self.slot_key(table, (start + i) % n) {
                    keys.insert(key);
                }
            }
            fence(Ordering::Acquire);
            if gen_word.load(Ordering::Relaxed) == generation {
                break;
            }
        }
        keys.into_iter().collect()
    }

    /// The key of the record a slot points at, read under the slot's seqlock (None for an empty slot, a
    /// tombstone, an unreadable record, or a slot the writer keeps changing).
    pub(super) fn slot_key(&self, table: usize, i: usize) -> Option<Vec<u8>> {
        let s = self.slot(table, i);
        let words = self.heap_words();
        for _ in 0..READ_RETRIES {
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let loc = s.loc.load(Ordering::Relaxed);
            let mut bytes = Vec::new();
            let place = decode_loc(loc, words.len());
            if let Some((off, len)) = place {
                bytes.reserve(round_up8(len));
                for w in &words[off..off + round_up8(len) / 8] {
                    bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                bytes.truncate(len);
            }
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) != seq {
                continue;
            }
            // The copy is consistent; now it may be interpreted.
            place?;
            return RecordView::parse(&bytes).map(|rec| rec.key.to_vec());
        }
        None
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
}

pub(super) enum SlotRead {
    Empty,
    Other,
    Busy,
    Hit(Lookup),
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
