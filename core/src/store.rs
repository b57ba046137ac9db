//! The key-value data itself, in key order, each key with its version, and the rules of every
//! transaction op.

use crate::limits::Limits;
use crate::operation::{Condition, FailReason, Key, OpFailure, OpResult, TxnOp, Value};
use std::collections::BTreeMap;
use std::ops::Bound;

/// A key's value and version: the writes to the key since it was created (1 on creation; a
/// delete forgets it, so a re-created key starts at 1 again). Writes to a key are serialized
/// by its lock, so every replica counts the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Value,
    pub version: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    entries: BTreeMap<Key, Versioned>,
}

/// What a transaction leaves each key it writes: the new value and version, or absent.
type Changes<'a> = BTreeMap<&'a [u8], Option<Versioned>>;

impl Store {
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.entries.get(key).map(|v| &v.value)
    }

    pub fn get_versioned(&self, key: &[u8]) -> Option<&Versioned> {
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
        self.entries.iter().map(|(k, v)| (k, &v.value))
    }

    /// Entries with their versions, in key order.
    pub fn iter_versioned(&self) -> impl Iterator<Item = (&Key, &Versioned)> {
        self.entries.iter()
    }

    /// The entries in `[start, end)` (`end` None: to the last key), in key order.
    pub fn range<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> impl Iterator<Item = (&'a Key, &'a Versioned)> {
        let end = match end {
            Some(end) if end <= start => Bound::Excluded(start),
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        self.entries.range::<[u8], _>((Bound::Included(start), end))
    }

    pub(crate) fn insert(&mut self, key: Key, value: Value, version: u64) {
        self.entries.insert(key, Versioned { value, version });
    }

    /// Judges `ops` on the store as it is, without changing it: what [`Store::run`] would
    /// return.
    pub fn check(&self, ops: &[TxnOp], limits: &Limits) -> Result<Vec<OpResult>, OpFailure> {
        self.judge(ops, limits).map(|(results, _)| results)
    }

    /// Runs a transaction's ops in order: each sees the earlier ops' effects, and the first op
    /// that cannot run (a missing key, a false condition, a value that is not an integer, ...)
    /// fails the whole transaction, which then changes nothing. Otherwise every op applies and
    /// the results come back, one per op. The caller holds the ops' locks, so every replica
    /// runs the same ops on the same state and gets the same answer.
    pub fn run(&mut self, ops: &[TxnOp], limits: &Limits) -> Result<Vec<OpResult>, OpFailure> {
        let (results, changes) = self.judge(ops, limits)?;
        let changes: Vec<(Key, Option<Versioned>)> = changes.into_iter().map(|(k, v)| (k.to_vec(), v)).collect();
        for (key, state) in changes {
            match state {
                Some(versioned) => self.entries.insert(key, versioned),
                None => self.entries.remove(&key),
            };
        }
        Ok(results)
    }

    fn judge<'a>(&self, ops: &'a [TxnOp], limits: &Limits) -> Result<(Vec<OpResult>, Changes<'a>), OpFailure> {
        let mut changes: Changes<'a> = BTreeMap::new();
        let mut results = Vec::with_capacity(ops.len());
        let mut results_bytes = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let fail = |reason| OpFailure { op_index: i as u32, reason };
            let key = op.key();
            let current = match changes.get(key) {
                Some(state) => state.as_ref(),
                None => self.entries.get(key),
            };
            let version = current.map_or(0, |c| c.version);
            let next = version + 1;
            let (result, new_state) = match op {
                TxnOp::Put { value, .. } => (OpResult::Done { version: next }, Some(Some(value.clone()))),
                TxnOp::Update { value, .. } => {
                    current.ok_or(fail(FailReason::KeyNotFound))?;
                    (OpResult::Done { version: next }, Some(Some(value.clone())))
                }
                TxnOp::Delete { .. } => {
                    current.ok_or(fail(FailReason::KeyNotFound))?;
                    (OpResult::Done { version: 0 }, Some(None))
                }
                TxnOp::Increment { by, .. } => {
                    let old = match current {
                        Some(c) => parse_integer(&c.value).ok_or(fail(FailReason::NotAnInteger))?,
                        None => 0,
                    };
                    let new = old.checked_add(*by).ok_or(fail(FailReason::IntegerOverflow))?;
                    (OpResult::Integer { value: new, version: next }, Some(Some(new.to_string().into_bytes())))
                }
                TxnOp::Append { value, .. } => {
                    let mut new = current.map_or_else(Vec::new, |c| c.value.clone());
                    if (new.len() + value.len()) as u64 > u64::from(limits.value_bytes_max) {
                        return Err(fail(FailReason::ValueTooLarge));
                    }
                    new.extend_from_slice(value);
                    (OpResult::Integer { value: new.len() as i64, version: next }, Some(Some(new)))
                }
                TxnOp::GetSet { value, .. } => {
                    let old = current.map(|c| c.value.clone());
                    (OpResult::Value { value: old, version: next }, Some(Some(value.clone())))
                }
                TxnOp::GetDelete { .. } => {
                    let old = current.map(|c| c.value.clone());
                    let change = old.is_some().then_some(None);
                    (OpResult::Value { value: old, version: 0 }, change)
                }
                TxnOp::Read { .. } => (OpResult::Value { value: current.map(|c| c.value.clone()), version }, None),
                TxnOp::Require { condition, .. } => {
                    let holds = match condition {
                        Condition::Exists => current.is_some(),
                        Condition::Absent => current.is_none(),
                        Condition::ValueEquals(expected) => current.is_some_and(|c| c.value == *expected),
                        Condition::VersionEquals(expected) => version == *expected,
                    };
                    if !holds {
                        return Err(fail(FailReason::ConditionFailed));
                    }
                    (OpResult::Done { version }, None)
                }
            };
            results_bytes += result.size();
            if results_bytes > u64::from(limits.txn_bytes_max) {
                return Err(fail(FailReason::ResultsTooLarge));
            }
            if let Some(state) = new_state {
                changes.insert(key, state.map(|value| Versioned { value, version: next }));
            }
            results.push(result);
        }
        Ok((results, changes))
    }
}

/// A value as an increment reads it: a decimal i64 in ASCII, written the one way Rust (and
/// Redis) writes it: no sign but '-', no leading zeros, no spaces.
fn parse_integer(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let n: i64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::OpResult::{Done, Integer};

    fn put(key: &str, value: &str) -> TxnOp {
        TxnOp::Put { key: key.into(), value: value.into() }
    }
    fn incr(key: &str, by: i64) -> TxnOp {
        TxnOp::Increment { key: key.into(), by }
    }
    fn require(key: &str, condition: Condition) -> TxnOp {
        TxnOp::Require { key: key.into(), condition }
    }
    fn read(key: &str) -> TxnOp {
        TxnOp::Read { key: key.into() }
    }
    fn value(value: Option<&str>, version: u64) -> OpResult {
        OpResult::Value { value: value.map(|v| v.as_bytes().to_vec()), version }
    }
    fn failure(op_index: u32, reason: FailReason) -> OpFailure {
        OpFailure { op_index, reason }
    }

    /// The store counts its keys: empty at first, one per distinct key put, none once deleted.
    #[test]
    fn counts_keys() {
        let mut store = Store::default();
        let limits = Limits::default();
        assert!(store.is_empty());
        store.run(&[put("a", "v"), put("b", "v"), put("a", "v")], &limits).unwrap();
        assert_eq!((store.len(), store.is_empty()), (2, false));
        store.run(&[TxnOp::Delete { key: b"a".to_vec() }, TxnOp::Delete { key: b"b".to_vec() }], &limits).unwrap();
        assert!(store.is_empty());
    }

    /// A key's version counts its writes since creation; a delete forgets it and a re-created
    /// key starts at 1; reads and conditions do not count; a transaction's ops see each other.
    #[test]
    fn versions_count_writes_since_creation() {
        let mut store = Store::default();
        let l = Limits::default();
        assert_eq!(store.run(&[put("k", "a")], &l), Ok(vec![Done { version: 1 }]));
        let update = TxnOp::Update { key: b"k".to_vec(), value: b"b".to_vec() };
        assert_eq!(store.run(&[update, read("k")], &l), Ok(vec![Done { version: 2 }, value(Some("b"), 2)]));
        assert_eq!(store.run(&[require("k", Condition::VersionEquals(2))], &l), Ok(vec![Done { version: 2 }]));
        let delete = TxnOp::Delete { key: b"k".to_vec() };
        assert_eq!(store.run(&[delete, read("k")], &l), Ok(vec![Done { version: 0 }, value(None, 0)]));
        assert_eq!(store.run(&[put("k", "c"), put("k", "d")], &l), Ok(vec![Done { version: 1 }, Done { version: 2 }]));
        assert_eq!(store.get_versioned(b"k"), Some(&Versioned { value: b"d".to_vec(), version: 2 }));
    }

    /// Each condition holds or fails as it says; a false one fails the whole transaction,
    /// naming itself, and nothing before it applies.
    #[test]
    fn a_false_condition_fails_the_transaction_naming_it() {
        let mut store = Store::default();
        let l = Limits::default();
        store.run(&[put("k", "v")], &l).unwrap();
        let holds = [Condition::Exists, Condition::ValueEquals(b"v".to_vec()), Condition::VersionEquals(1)];
        for c in holds {
            assert_eq!(store.run(&[require("k", c.clone())], &l), Ok(vec![Done { version: 1 }]), "{c:?}");
        }
        assert_eq!(store.run(&[require("absent", Condition::Absent)], &l), Ok(vec![Done { version: 0 }]));
        assert_eq!(store.run(&[require("absent", Condition::VersionEquals(0))], &l), Ok(vec![Done { version: 0 }]));
        let fails = [
            ("k", Condition::Absent),
            ("k", Condition::ValueEquals(b"w".to_vec())),
            ("k", Condition::VersionEquals(2)),
            ("absent", Condition::Exists),
            ("absent", Condition::ValueEquals(Vec::new())),
        ];
        for (key, c) in fails {
            let txn = [put("other", "x"), require(key, c.clone()), put("k", "changed")];
            assert_eq!(store.run(&txn, &l), Err(failure(1, FailReason::ConditionFailed)), "{key} {c:?}");
        }
        assert_eq!(store.get(b"k"), Some(&b"v".to_vec()), "a failed transaction applies nothing");
        assert_eq!(store.get(b"other"), None);
        // Judged after the transaction's earlier ops.
        let txn = [put("n", "1"), require("n", Condition::ValueEquals(b"1".to_vec()))];
        assert_eq!(store.run(&txn, &l), Ok(vec![Done { version: 1 }, Done { version: 1 }]));
    }

    /// Increment reads a decimal i64 (absent is 0), refuses anything else and overflow, and
    /// writes the new value back as decimal.
    #[test]
    fn increment_is_decimal_and_checked() {
        let mut store = Store::default();
        let l = Limits::default();
        assert_eq!(store.run(&[incr("n", 5)], &l), Ok(vec![Integer { value: 5, version: 1 }]));
        assert_eq!(store.run(&[incr("n", -7)], &l), Ok(vec![Integer { value: -2, version: 2 }]));
        assert_eq!(store.get(b"n"), Some(&b"-2".to_vec()));
        for not_a_number in ["", "abc", "1.5", " 1", "+1", "01", "-0", "99999999999999999999"] {
            store.run(&[put("x", not_a_number)], &l).unwrap();
            assert_eq!(store.run(&[incr("x", 1)], &l), Err(failure(0, FailReason::NotAnInteger)), "{not_a_number:?}");
        }
        store.run(&[put("max", &i64::MAX.to_string())], &l).unwrap();
        assert_eq!(store.run(&[incr("max", 1)], &l), Err(failure(0, FailReason::IntegerOverflow)));
        assert_eq!(
            store.run(&[put("min", &i64::MIN.to_string()), incr("min", -1)], &l),
            Err(failure(1, FailReason::IntegerOverflow))
        );
        assert_eq!(store.run(&[incr("max", -1)], &l), Ok(vec![Integer { value: i64::MAX - 1, version: 2 }]));
    }

    /// Append extends (absent is empty) and returns the length; past the value limit it fails.
    #[test]
    fn append_returns_the_length_and_respects_the_value_limit() {
        let mut store = Store::default();
        let l = Limits { value_bytes_max: 5, ..Limits::default() };
        let append = |v: &str| TxnOp::Append { key: b"k".to_vec(), value: v.into() };
        assert_eq!(store.run(&[append("ab")], &l), Ok(vec![Integer { value: 2, version: 1 }]));
        assert_eq!(store.run(&[append("cde")], &l), Ok(vec![Integer { value: 5, version: 2 }]));
        assert_eq!(store.run(&[append("f")], &l), Err(failure(0, FailReason::ValueTooLarge)));
        assert_eq!(store.get(b"k"), Some(&b"abcde".to_vec()));
    }

    /// Get-and-set and get-and-delete return the value before and the version after; deleting
    /// an absent key that way is no failure.
    #[test]
    fn get_and_set_and_get_and_delete_return_the_value_before() {
        let mut store = Store::default();
        let l = Limits::default();
        let getset = |v: &str| TxnOp::GetSet { key: b"k".to_vec(), value: v.into() };
        let getdel = TxnOp::GetDelete { key: b"k".to_vec() };
        assert_eq!(store.run(&[getset("a")], &l), Ok(vec![value(None, 1)]));
        assert_eq!(store.run(&[getset("b")], &l), Ok(vec![value(Some("a"), 2)]));
        assert_eq!(store.run(std::slice::from_ref(&getdel), &l), Ok(vec![value(Some("b"), 0)]));
        assert_eq!(store.run(&[getdel], &l), Ok(vec![value(None, 0)]));
        assert!(store.is_empty());
    }

    /// Results larger than a reply may carry fail the transaction at the op that overflows.
    #[test]
    fn results_are_limited_like_a_reply() {
        let mut store = Store::default();
        let l = Limits::default();
        store.run(&[put("k", &"x".repeat(1000))], &l).unwrap();
        let small = Limits { txn_bytes_max: 2500, ..l };
        assert!(store.run(&[read("k"), read("k")], &small).is_ok());
        assert_eq!(store.run(&[read("k"), read("k"), read("k")], &small), Err(failure(2, FailReason::ResultsTooLarge)));
    }

    /// A range is [start, end): end excluded, none before start, an empty range when end is
    /// not after start.
    #[test]
    fn range_is_half_open() {
        let mut store = Store::default();
        store.run(&[put("a", "1"), put("b", "2"), put("c", "3")], &Limits::default()).unwrap();
        let keys = |s: &Store, start: &str, end: Option<&str>| -> Vec<String> {
            s.range(start.as_bytes(), end.map(str::as_bytes))
                .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
                .collect()
        };
        assert_eq!(keys(&store, "a", Some("c")), ["a", "b"]);
        assert_eq!(keys(&store, "b", None), ["b", "c"]);
        assert_eq!(keys(&store, "c", Some("a")), Vec::<String>::new());
    }
}
