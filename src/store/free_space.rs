//! The writer's private map of free heap space.

use std::collections::{BTreeMap, BTreeSet};

/// Free heap space, tracked privately by the writer (readers never need it).
#[derive(Default)]
pub(super) struct FreeSpace {
    pub(super) by_offset: BTreeMap<usize, usize>,
    pub(super) by_size: BTreeSet<(usize, usize)>,
}

impl FreeSpace {
    pub(super) fn insert(&mut self, mut off: usize, mut len: usize) {
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

    pub(super) fn remove(&mut self, off: usize, len: usize) {
        self.by_offset.remove(&off);
        self.by_size.remove(&(len, off));
    }

    /// Best fit, in words.
    pub(super) fn alloc(&mut self, words: usize) -> Option<usize> {
        let &(len, off) = self.by_size.range((words, 0)..).next()?;
        self.remove(off, len);
        if len > words {
            self.insert(off + words, len - words);
        }
        Some(off)
    }
}
