//! SCAN cursors. Redis clients treat a cursor as an unsigned number (redis-cli and several
//! libraries parse it with `strtoull`), but a dkv page ends at a key, which is bytes of any
//! length. So the node keeps a bounded table from numbers to the keys the next pages start
//! at, shared by every connection (a pooled client may continue a scan on another
//! connection to the same node).
//!
//! Numbers start at a random point for each process, so a cursor kept across a restart names
//! no entry instead of a wrong one. When the table is full, the oldest cursors are forgotten;
//! continuing one of those is an error that says to start again from 0.

use std::collections::BTreeMap;

/// The cursors a node hands out.
pub struct ScanCursors {
    next: u64,
    /// By number, hence by age.
    keys: BTreeMap<u64, Vec<u8>>,
    entries_max: usize,
}

impl ScanCursors {
    /// A table of at most `entries_max` cursors, numbered from `first` (0 is never used: it
    /// is the start and the end of every scan).
    pub fn new(first: u64, entries_max: usize) -> ScanCursors {
        ScanCursors { next: first.max(1), keys: BTreeMap::new(), entries_max: entries_max.max(1) }
    }

    /// A cursor for the page starting at `key`.
    pub fn insert(&mut self, key: Vec<u8>) -> u64 {
        while self.keys.len() >= self.entries_max {
            self.keys.pop_first();
        }
        let cursor = self.next;
        // Wraps after 2^64 cursors, skipping 0.
        self.next = self.next.checked_add(1).unwrap_or(1);
        self.keys.insert(cursor, key);
        cursor
    }

    /// Where the page a cursor names starts. A cursor stays valid after use, so a client that
    /// lost a reply can ask for the same page again.
    pub fn get(&self, cursor: u64) -> Option<&[u8]> {
        self.keys.get(&cursor).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cursors map back to their keys; the table stays bounded and forgets the oldest first.
    #[test]
    fn cursors_are_bounded_and_forget_oldest_first() {
        let mut cursors = ScanCursors::new(100, 2);
        let a = cursors.insert(b"a".to_vec());
        let b = cursors.insert(b"b".to_vec());
        assert_eq!(cursors.get(a), Some(&b"a"[..]));
        let c = cursors.insert(b"c".to_vec());
        assert_eq!(cursors.get(a), None);
        assert_eq!(cursors.get(b), Some(&b"b"[..]));
        assert_eq!(cursors.get(c), Some(&b"c"[..]));
        assert!(a != 0 && b != 0 && c != 0);
        let mut wrapping = ScanCursors::new(u64::MAX, 4);
        assert_eq!(wrapping.insert(vec![]), u64::MAX);
        assert_eq!(wrapping.insert(vec![]), 1);
    }
}
