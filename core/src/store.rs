//! The key-value data itself, in key order, with the rules of each write op.

use crate::operation::{FailReason, Key, OpFailure, Value, WriteOp};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    entries: BTreeMap<Key, Value>,
}

impl Store {
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter()
    }

    pub(crate) fn insert(&mut self, key: Key, value: Value) {
        self.entries.insert(key, value);
    }

    /// Checks that `ops`, run in order, would all succeed: an update or delete needs its key to
    /// exist at that point, taking the earlier ops of the same transaction into account.
    /// Returns the first op that would fail, and why.
    pub fn check(&self, ops: &[WriteOp]) -> Result<(), OpFailure> {
        // Existence of keys the transaction itself has written so far.
        let mut written: BTreeMap<&[u8], bool> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let key = op.key();
            let exists = written.get(key).copied().unwrap_or_else(|| self.entries.contains_key(key));
            if op.requires_key() && !exists {
                return Err(OpFailure { op_index: i as u32, reason: FailReason::KeyNotFound });
            }
            written.insert(key, !matches!(op, WriteOp::Delete { .. }));
        }
        Ok(())
    }

    /// Applies ops that [`Store::check`] accepted. The caller holds the keys' locks from the
    /// check to this call, so the check still holds.
    pub fn apply(&mut self, ops: &[WriteOp]) {
        debug_assert_eq!(self.check(ops), Ok(()), "apply of ops that were not checked");
        for op in ops {
            match op {
                WriteOp::Put { key, value } | WriteOp::Update { key, value } => {
                    self.entries.insert(key.clone(), value.clone());
                }
                WriteOp::Delete { key } => {
                    self.entries.remove(key.as_slice());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store counts its keys: empty at first, one per distinct key put, none once deleted.
    #[test]
    fn counts_keys() {
        let mut store = Store::default();
        assert!(store.is_empty());
        let put = |key: &str| WriteOp::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec() };
        store.apply(&[put("a"), put("b"), put("a")]);
        assert_eq!((store.len(), store.is_empty()), (2, false));
        store.apply(&[WriteOp::Delete { key: b"a".to_vec() }, WriteOp::Delete { key: b"b".to_vec() }]);
        assert!(store.is_empty());
    }
}
