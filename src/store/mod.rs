//! The shared-memory store: one region per cluster, written by exactly one watcher process and read lock-free by
//! every nginx worker.
//!
//! The region is an anonymous `MAP_SHARED` mapping made in the nginx master before it forks, so every worker (and
//! the watcher) sees the same pages. Everything in the region is accessed through atomics: a reader in one process
//! races the writer in another, and plain loads of such memory would be a data race.
//!
//! Layout (all offsets from the region start, everything 8-byte aligned):
//! ```text
//! [ Header (HEADER_BYTES) ][ slot table 0 ][ slot table 1 ][ heap: 8-byte words holding records ]
//! ```
//! * Two slot tables of `slot_count` slots each; the low bit of the header's `table_gen` names the active one,
//!   which readers probe and writes change. A re-layout (when tombstones fill the table) builds the other table
//!   and switches to it with one store of `table_gen`, so readers always probe a complete table and a writer
//!   killed part way leaves the active table as it was. A reader that saw `table_gen` move while it probed looks
//!   again in the new table.
//! * A slot is a seqlock-protected pointer: `{seq, hash, version, loc}`. `loc` packs the record's heap word offset
//!   (high 32 bits, +1 so that 0 means "empty, never used") and its byte length (low 32 bits); `TOMBSTONE` marks a
//!   deleted key whose probe chain must continue. Open addressing with linear probing.
//! * A record is immutable once published: `[u32 key_len][u16 kind][u16 0][u32 count][u32 changed][key, padded]
//!   [body]`, `changed` being when its content last changed (seconds since the epoch).
//!   For a port entry the body is `count` nodes, each `[u16 port LE][u8 host_len][host bytes]` (with a topology
//!   mode on, `host_len` has its high bit set and `[i8 priority][u8 zone_len][zone bytes]` follows the host); for
//!   a service marker it is `count` port names, each `[u8 len][name bytes]`.
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
//! left by a dead process is taken over; the new writer rebuilds from the active table and repairs half-done slots.

mod batch;
mod free_space;
mod layout;
mod record;
mod region;
mod status;
#[cfg(test)]
mod tests;
mod writer;

use std::fmt;

pub use batch::Batch;
pub use layout::{KIND_SERVICE, LOCK_WAIT, MIN_REGION_BYTES};
pub use record::decode_nodes;
pub use region::{Entry, Lookup, Region};
pub use status::{Metric, RegionStatus, SyncState};
pub use writer::Writer;

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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
