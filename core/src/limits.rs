//! Size limits on keys, values and transactions, checked wherever a request or a peer's message
//! enters the core.

use crate::operation::TxnOp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Configurable limits. Defaults are those of DESIGN.md §1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub key_bytes_max: u32,
    pub value_bytes_max: u32,
    pub txn_ops_max: u32,
    /// Sum of key and value bytes over a transaction's ops; also the most bytes of results a
    /// transaction, or of entries a scan's page, may return.
    pub txn_bytes_max: u32,
    /// The most keys one scan may ask for.
    pub scan_limit_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes_max: 4 * 1024,
            value_bytes_max: 1024 * 1024,
            txn_ops_max: 1024,
            txn_bytes_max: 16 * 1024 * 1024,
            scan_limit_max: 10_000,
        }
    }
}

/// A request or message exceeds a limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum LimitError {
    #[error("op {op_index}: key is {size} bytes, the limit is {max}")]
    KeyTooLarge { op_index: u32, size: u64, max: u32 },
    #[error("op {op_index}: value is {size} bytes, the limit is {max}")]
    ValueTooLarge { op_index: u32, size: u64, max: u32 },
    #[error("transaction has {count} ops, the limit is {max}; split it")]
    TooManyOps { count: u64, max: u32 },
    #[error("transaction carries {size} bytes of keys and values, the limit is {max}; split it")]
    TxnTooLarge { size: u64, max: u32 },
    #[error("a scan asks for {limit} keys; ask for 1 to {max} and continue from the page's next key")]
    ScanLimit { limit: u32, max: u32 },
}

impl Limits {
    /// The most bytes any encoded frame may need under these limits: a full transaction plus
    /// per-op and per-message overhead. Decoders refuse longer frames before buffering them.
    pub fn frame_bytes_max(&self) -> u32 {
        let per_op_overhead = 16u64;
        let envelope_overhead = 1024u64;
        let max = u64::from(self.txn_bytes_max) + u64::from(self.txn_ops_max) * per_op_overhead + envelope_overhead;
        u32::try_from(max).unwrap_or(u32::MAX)
    }

    pub fn check_key(&self, op_index: u32, key: &[u8]) -> Result<(), LimitError> {
        if key.len() as u64 > u64::from(self.key_bytes_max) {
            return Err(LimitError::KeyTooLarge { op_index, size: key.len() as u64, max: self.key_bytes_max });
        }
        Ok(())
    }

    /// A scan's bounds are keys, and its limit between 1 and `scan_limit_max`.
    pub fn check_scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Result<(), LimitError> {
        self.check_key(0, start)?;
        if let Some(end) = end {
            self.check_key(1, end)?;
        }
        if limit == 0 || limit > self.scan_limit_max {
            return Err(LimitError::ScanLimit { limit, max: self.scan_limit_max });
        }
        Ok(())
    }

    pub fn check_ops(&self, ops: &[TxnOp]) -> Result<(), LimitError> {
        if ops.len() as u64 > u64::from(self.txn_ops_max) {
            return Err(LimitError::TooManyOps { count: ops.len() as u64, max: self.txn_ops_max });
        }
        let mut total = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let op_index = i as u32;
            self.check_key(op_index, op.key())?;
            let value_len = op.value().map_or(0, |v| v.len() as u64);
            if value_len > u64::from(self.value_bytes_max) {
                return Err(LimitError::ValueTooLarge { op_index, size: value_len, max: self.value_bytes_max });
            }
            total += op.key().len() as u64 + value_len;
        }
        if total > u64::from(self.txn_bytes_max) {
            return Err(LimitError::TxnTooLarge { size: total, max: self.txn_bytes_max });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each limit is a typed error naming the op, the size and the limit.
    #[test]
    fn each_limit_is_a_typed_error() {
        let limits =
            Limits { key_bytes_max: 4, value_bytes_max: 8, txn_ops_max: 2, txn_bytes_max: 20, scan_limit_max: 3 };
        let put = |k: usize, v: usize| TxnOp::Put { key: vec![0; k], value: vec![0; v] };
        assert_eq!(limits.check_ops(&[put(4, 8)]), Ok(()));
        assert_eq!(limits.check_ops(&[put(5, 1)]), Err(LimitError::KeyTooLarge { op_index: 0, size: 5, max: 4 }));
        assert_eq!(
            limits.check_ops(&[put(1, 1), put(1, 9)]),
            Err(LimitError::ValueTooLarge { op_index: 1, size: 9, max: 8 })
        );
        assert_eq!(
            limits.check_ops(&[put(1, 1), put(1, 1), put(1, 1)]),
            Err(LimitError::TooManyOps { count: 3, max: 2 })
        );
        assert_eq!(limits.check_ops(&[put(4, 8), put(4, 8)]), Err(LimitError::TxnTooLarge { size: 24, max: 20 }));
        assert!(limits.frame_bytes_max() > limits.txn_bytes_max);
        // A condition's value counts as a value.
        let equals = TxnOp::Require { key: vec![0], condition: crate::Condition::ValueEquals(vec![0; 9]) };
        assert_eq!(limits.check_ops(&[equals]), Err(LimitError::ValueTooLarge { op_index: 0, size: 9, max: 8 }));
        assert_eq!(limits.check_scan(b"a", Some(b"b"), 3), Ok(()));
        assert_eq!(limits.check_scan(b"a", None, 0), Err(LimitError::ScanLimit { limit: 0, max: 3 }));
        assert_eq!(limits.check_scan(b"a", None, 4), Err(LimitError::ScanLimit { limit: 4, max: 3 }));
        assert_eq!(
            limits.check_scan(b"a", Some(b"abcde"), 1),
            Err(LimitError::KeyTooLarge { op_index: 1, size: 5, max: 4 })
        );
    }
}
