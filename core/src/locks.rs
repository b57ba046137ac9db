//! Exclusive key locks held by prepared transactions. Conflicts are resolved by no-wait: a
//! transaction that finds a key locked is refused at once (and its coordinator retries after a
//! randomized backoff), so no transaction ever waits for another and deadlock is impossible.

use crate::ids::TxnId;
use crate::operation::{Key, WriteOp};
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
    pub fn try_lock_all(&mut self, txn: TxnId, ops: &[WriteOp]) -> Result<(), TxnId> {
        if let Some(holder) = ops.iter().filter_map(|op| self.holder(op.key())).find(|h| *h != txn) {
            return Err(holder);
        }
        for op in ops {
            self.holders.insert(op.key().to_vec(), txn);
        }
        Ok(())
    }

    /// Releases the keys of `ops` that `txn` holds.
    pub fn release_all(&mut self, txn: TxnId, ops: &[WriteOp]) {
        for op in ops {
            if self.holders.get(op.key()) == Some(&txn) {
                self.holders.remove(op.key());
            }
        }
    }
}
