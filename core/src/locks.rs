//! Exclusive key locks held by prepared transactions. Conflicts are resolved by no-wait: a
//! transaction that finds a key locked is refused at once (and its coordinator retries after a
//! randomized backoff), so no transaction ever waits for another and deadlock is impossible.

use crate::ids::TxnId;
use crate::operation::{Key, TxnOp};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct LockTable {
    holders: BTreeMap<Key, TxnId>,
}

impl LockTable {
    pub fn holder(&self, key: &[u8]) -> Option<TxnId> {
        self.holders.get(key).copied()
    }

    pub fn is_locked(&self, key: &[u8]) -> bool {
        self.holders.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.holders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Locks every key of `ops` for `txn`, or none of them if any is held by another
    /// transaction (whose id is returned).
    pub fn try_lock_all(&mut self, txn: TxnId, ops: &[TxnOp]) -> Result<(), TxnId> {
        if let Some(holder) = ops.iter().filter_map(|op| self.holder(op.key())).find(|h| *h != txn) {
            return Err(holder);
        }
        for op in ops {
            self.holders.insert(op.key().to_vec(), txn);
        }
        Ok(())
    }

    /// The first locked key in `[start, end]` (`end` included; None: to the last key): a
    /// lock on a key the store does not hold is a prepared insert, so scans look here, not at
    /// the store.
    pub fn first_locked_in(&self, start: &[u8], end: Option<&[u8]>) -> Option<&[u8]> {
        use std::ops::Bound;
        let end = match end {
            Some(end) if end < start => return None,
            Some(end) => Bound::Included(end),
            None => Bound::Unbounded,
        };
        self.holders.range::<[u8], _>((Bound::Included(start), end)).next().map(|(key, _)| key.as_slice())
    }

    /// Every lock, as (key, holder), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], TxnId)> {
        self.holders.iter().map(|(key, holder)| (key.as_slice(), *holder))
    }

    /// Releases the keys of `ops`, which `txn` holds: only a lock's holder releases it. A key
    /// held by another transaction stays locked (and is a bug in the caller, asserted in debug
    /// builds): releasing by key alone would let one transaction's abort unlock another's
    /// prepared write, which a later refactor of how prepare checks conflicts would expose.
    pub fn release_all(&mut self, txn: TxnId, ops: &[TxnOp]) {
        for op in ops {
            match self.holders.get(op.key()) {
                Some(holder) if *holder == txn => {
                    self.holders.remove(op.key());
                }
                Some(holder) => debug_assert!(false, "{txn} releases key {:?}, which {holder} holds", op.key()),
                // Released at an earlier op of the same transaction on the same key.
                None => debug_assert!(
                    ops.iter().filter(|o| o.key() == op.key()).count() > 1,
                    "{txn} releases key {:?}, which nobody holds",
                    op.key()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn txn(number: u64) -> TxnId {
        TxnId { coordinator: NodeId(0), incarnation: 1, number }
    }

    fn put(key: &str) -> TxnOp {
        TxnOp::Put { key: key.as_bytes().to_vec(), value: Vec::new() }
    }

    /// A transaction locks all its keys or none, and releasing frees exactly its own keys (a
    /// key it names twice included).
    #[test]
    fn all_or_nothing_and_release_frees_only_the_holders_keys() {
        let mut locks = LockTable::default();
        locks.try_lock_all(txn(1), &[put("a"), put("a"), put("b")]).unwrap();
        assert_eq!(locks.try_lock_all(txn(2), &[put("c"), put("b")]), Err(txn(1)));
        assert!(!locks.is_locked(b"c"), "a refused transaction locks nothing");
        locks.try_lock_all(txn(2), &[put("c")]).unwrap();
        locks.release_all(txn(1), &[put("a"), put("a"), put("b")]);
        assert_eq!(locks.iter().collect::<Vec<_>>(), vec![(&b"c"[..], txn(2))]);
    }

    /// Only a lock's holder releases it: another transaction trying is a bug, caught in debug
    /// builds (and the lock stays where it is in release builds).
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "t0.1.2 releases key [97], which t0.1.1 holds")]
    fn releasing_another_transactions_lock_is_caught() {
        let mut locks = LockTable::default();
        locks.try_lock_all(txn(1), &[put("a")]).unwrap();
        locks.release_all(txn(2), &[put("a")]);
    }
}
