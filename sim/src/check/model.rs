//! The rules of every transaction op and of scans, as the checkers model them: a second
//! implementation written from the contract (DESIGN.md and dkv-core's operation docs), not a
//! copy of dkv-core's store, so that a bug there is not repeated here.

use dkv_core::{Condition, FailReason, OpFailure, OpResult, ScanEntry, TxnOp};
use std::collections::BTreeMap;

/// A key's value and version (writes since it was created).
pub type Entry = (Vec<u8>, u64);
/// The model store.
pub type Model = BTreeMap<Vec<u8>, Entry>;

/// What a transaction leaves each key it changes (`None`: absent), in key order.
pub type Changes = Vec<(Vec<u8>, Option<Entry>)>;

/// Runs `ops` in order on `store` without changing it: each op's result and the changes, or
/// the first op that cannot run. `value_max` is the value size limit an append may not pass.
pub fn run(store: &Model, ops: &[TxnOp], value_max: usize) -> Result<(Vec<OpResult>, Changes), OpFailure> {
    let mut changed: BTreeMap<&[u8], Option<Entry>> = BTreeMap::new();
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let fail = |reason| OpFailure { op_index: i as u32, reason };
        let key = op.key();
        let old: Option<Entry> = match changed.get(key) {
            Some(entry) => entry.clone(),
            None => store.get(key).cloned(),
        };
        let old_version = old.as_ref().map_or(0, |(_, v)| *v);
        let old_value = old.as_ref().map(|(v, _)| v.clone());
        // Writing a value makes the next version; deleting forgets the key.
        let mut write = |value: Option<Vec<u8>>| -> u64 {
            let version = if value.is_some() { old_version + 1 } else { 0 };
            changed.insert(key, value.map(|v| (v, version)));
            version
        };
        let result = match op {
            TxnOp::Put { value, .. } => OpResult::Done { version: write(Some(value.clone())) },
            TxnOp::Update { value, .. } if old.is_some() => OpResult::Done { version: write(Some(value.clone())) },
            TxnOp::Delete { .. } if old.is_some() => OpResult::Done { version: write(None) },
            TxnOp::Update { .. } | TxnOp::Delete { .. } => return Err(fail(FailReason::KeyNotFound)),
            TxnOp::Increment { by, .. } => {
                let n = match &old_value {
                    None => 0,
                    Some(v) => decimal(v).ok_or(fail(FailReason::NotAnInteger))?,
                };
                let n = n.checked_add(*by).ok_or(fail(FailReason::IntegerOverflow))?;
                OpResult::Integer { value: n, version: write(Some(n.to_string().into_bytes())) }
            }
            TxnOp::Append { value, .. } => {
                let mut v = old_value.unwrap_or_default();
                v.extend_from_slice(value);
                if v.len() > value_max {
                    return Err(fail(FailReason::ValueTooLarge));
                }
                let len = v.len() as i64;
                OpResult::Integer { value: len, version: write(Some(v)) }
            }
            TxnOp::GetSet { value, .. } => OpResult::Value { value: old_value, version: write(Some(value.clone())) },
            TxnOp::GetDelete { .. } => {
                let version = if old.is_some() { write(None) } else { 0 };
                OpResult::Value { value: old_value, version }
            }
            TxnOp::Read { .. } => OpResult::Value { value: old_value, version: old_version },
            TxnOp::Exists { .. } => OpResult::Integer { value: i64::from(old.is_some()), version: old_version },
            TxnOp::DeleteIfPresent { .. } => {
                let present = old.is_some();
                if present {
                    write(None);
                }
                OpResult::Integer { value: i64::from(present), version: 0 }
            }
            TxnOp::Require { condition, .. } => {
                let holds = match condition {
                    Condition::Exists => old.is_some(),
                    Condition::Absent => old.is_none(),
                    Condition::ValueEquals(v) => old_value.as_ref() == Some(v),
                    Condition::VersionEquals(v) => old_version == *v,
                };
                if !holds {
                    return Err(fail(FailReason::ConditionFailed));
                }
                OpResult::Done { version: old_version }
            }
        };
        results.push(result);
    }
    Ok((results, changed.into_iter().map(|(k, e)| (k.to_vec(), e)).collect()))
}

/// A decimal i64 as Redis writes one: an optional '-', digits, no leading zero (but "0").
fn decimal(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0')
        && bytes != b"-0";
    if !canonical {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The page a scan of `[start, end)` returns from `store`: at most `limit` entries, and where
/// the next page starts when more keys follow. (A page also stops at the transaction byte
/// limit, 16 MiB by default, which the simulator's small values never reach.)
pub fn scan(
    store: &Model,
    start: &[u8],
    end: Option<&[u8]>,
    limit: u32,
    keys_only: bool,
) -> (Vec<ScanEntry>, Option<Vec<u8>>) {
    let in_range = store.range(start.to_vec()..).take_while(|(k, _)| end.is_none_or(|end| k.as_slice() < end));
    let mut entries = Vec::new();
    for (key, (value, version)) in in_range {
        if entries.len() == limit as usize {
            let last: &ScanEntry = entries.last().expect("a limit is at least 1");
            let mut next = last.key.clone();
            next.push(0);
            return (entries, Some(next));
        }
        let value = (!keys_only).then(|| value.clone());
        entries.push(ScanEntry { key: key.clone(), value, version: *version });
    }
    (entries, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters read decimals only, the way Redis writes them.
    #[test]
    fn decimals_are_canonical() {
        for (text, n) in [("0", Some(0)), ("-12", Some(-12)), ("9223372036854775807", Some(i64::MAX))] {
            assert_eq!(decimal(text.as_bytes()), n, "{text}");
        }
        for text in ["", "-", "-0", "01", "+1", " 1", "1a", "9223372036854775808"] {
            assert_eq!(decimal(text.as_bytes()), None, "{text}");
        }
    }

    /// A page holds at most `limit` entries, says where the next starts only when more follow,
    /// and leaves values out when asked.
    #[test]
    fn pages() {
        let store: Model =
            [("a", 1), ("b", 2), ("c", 1)].iter().map(|(k, v)| (k.as_bytes().to_vec(), (b"v".to_vec(), *v))).collect();
        let (entries, next) = scan(&store, b"a", None, 2, true);
        assert_eq!(entries.iter().map(|e| e.key.as_slice()).collect::<Vec<_>>(), [b"a", b"b"]);
        assert_eq!((entries[1].value.as_ref(), entries[1].version, next), (None, 2, Some(b"b\0".to_vec())));
        let (entries, next) = scan(&store, b"b", Some(b"c"), 1, false);
        assert_eq!((entries.len(), entries[0].value.as_deref(), next), (1, Some(&b"v"[..]), None));
    }
}
