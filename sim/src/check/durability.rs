//! Durability: every acknowledged write is in the final state, unless a later write
//! overwrote it. For each key, the final value and version must be the effect of a write that
//! no committed write to the same key followed in real time.

use super::Violation;
use crate::history::{History, OpKind, Result as OpResult, show};
use dkv_core::store::Store;
use dkv_core::{OpResult as Returned, TxnOp};
use std::collections::{BTreeMap, BTreeSet};

/// A write's effect on one key.
struct KeyWrite {
    /// The write's index in the history.
    op: usize,
    leaves: Leaves,
    /// The key's version after it, when its result says (0: absent).
    version: Option<u64>,
}

/// What a write leaves one key, as far as the history says.
enum Leaves {
    /// This value (`None`: it deletes the key).
    Value(Option<Vec<u8>>),
    /// A value this long that ends with these bytes: an append's, whose result is the length.
    Appended { len: usize, suffix: Vec<u8> },
    /// Not known (an increment or append whose result the client never saw): any value.
    Unknown,
}

impl KeyWrite {
    fn explains(&self, value: Option<&Vec<u8>>, version: u64) -> bool {
        let value_ok = match (&self.leaves, value) {
            (Leaves::Value(v), value) => v.as_ref() == value,
            (Leaves::Appended { len, suffix }, Some(value)) => value.len() == *len && value.ends_with(suffix),
            (Leaves::Appended { .. }, None) => false,
            (Leaves::Unknown, _) => true,
        };
        value_ok && self.version.is_none_or(|v| v == version)
    }
}

/// `final_store` is the converged final store (n0's; convergence checks the others against it).
pub fn check(history: &History, final_store: &Store) -> Vec<Violation> {
    let mut writes: BTreeMap<Vec<u8>, Vec<KeyWrite>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        let OpKind::Txn { ops } = &op.kind else { continue };
        let results: &[Returned] = match &op.result {
            OpResult::Committed(results) => results,
            OpResult::Unknown | OpResult::Happened => &[],
            _ => continue,
        };
        let mut last: BTreeMap<&[u8], (Leaves, Option<u64>)> = BTreeMap::new();
        for (j, o) in ops.iter().enumerate() {
            let result = results.get(j);
            let leaves = match (o, result) {
                (TxnOp::Put { value, .. } | TxnOp::Update { value, .. } | TxnOp::GetSet { value, .. }, _) => {
                    Leaves::Value(Some(value.clone()))
                }
                (TxnOp::Delete { .. } | TxnOp::GetDelete { .. } | TxnOp::DeleteIfPresent { .. }, _) => {
                    Leaves::Value(None)
                }
                (TxnOp::Increment { .. }, Some(Returned::Integer { value, .. })) => {
                    Leaves::Value(Some(value.to_string().into_bytes()))
                }
                (TxnOp::Append { value, .. }, Some(Returned::Integer { value: len, .. })) => {
                    Leaves::Appended { len: *len as usize, suffix: value.clone() }
                }
                (TxnOp::Increment { .. } | TxnOp::Append { .. }, _) => Leaves::Unknown,
                (TxnOp::Read { .. } | TxnOp::Require { .. } | TxnOp::Exists { .. }, _) => continue,
            };
            last.insert(o.key(), (leaves, result.map(Returned::version)));
        }
        for (k, (leaves, version)) in last {
            writes.entry(k.to_vec()).or_default().push(KeyWrite { op: i, leaves, version });
        }
    }
    let mut keys: BTreeSet<Vec<u8>> = writes.keys().cloned().collect();
    keys.extend(final_store.iter().map(|(k, _)| k.clone()));
    let mut violations = Vec::new();
    for key in keys {
        let ws = writes.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let committed = |i: usize| matches!(history.ops[i].result, OpResult::Committed(_));
        // Writes not followed in real time by a committed write to the same key.
        let last: Vec<&KeyWrite> = ws
            .iter()
            .filter(|w| {
                !ws.iter().any(|later| {
                    committed(later.op) && history.ops[later.op].invoke > history.ops[w.op].response_or_max()
                })
            })
            .collect();
        let any_committed = ws.iter().any(|w| committed(w.op));
        let final_entry = final_store.get_versioned(&key);
        let (final_value, final_version) = (final_entry.map(|e| &e.value), final_entry.map_or(0, |e| e.version));
        let explained =
            last.iter().any(|w| w.explains(final_value, final_version)) || (!any_committed && final_value.is_none());
        if !explained {
            violations.push(Violation {
                checker: "durability",
                key: Some(show(&key)),
                message: format!(
                    "final value is {} at version {final_version}, but the last writes of the key say otherwise",
                    final_value.map_or("<absent>".to_string(), |v| show(v))
                ),
                ops: last.iter().map(|w| history.ops[w.op].describe()).collect(),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use dkv_core::ClientId;

    fn write(invoke: u64, response: Option<u64>, ops: Vec<TxnOp>, result: OpResult) -> Op {
        Op {
            client: ClientId(1),
            seq: invoke,
            kind: OpKind::Txn { ops },
            invoke,
            response,
            result,
            attempts: 1,
            abandoned_at: None,
        }
    }
    fn put(k: &str, v: &str) -> Vec<TxnOp> {
        vec![TxnOp::Put { key: k.into(), value: v.into() }]
    }
    fn delete(k: &str) -> Vec<TxnOp> {
        vec![TxnOp::Delete { key: k.into() }]
    }
    /// The store these committed ops leave, applied in order.
    fn store(writes: &[Vec<TxnOp>]) -> Store {
        let mut store = Store::default();
        for ops in writes {
            store.run(ops).expect("the ops apply");
        }
        store
    }
    fn keys_at_fault(history: &History, final_store: &Store) -> Vec<String> {
        check(history, final_store).into_iter().map(|v| v.key.expect("names its key")).collect()
    }

    /// A committed write the final store does not hold was lost, and is reported on its key.
    #[test]
    fn committed_write_missing_from_the_final_store_is_reported() {
        let h = History { ops: vec![write(0, Some(10), put("k", "1"), OpResult::Committed(vec![]))] };
        assert_eq!(keys_at_fault(&h, &store(&[])), ["k"]);
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), Vec::<String>::new());
    }

    /// A committed write that a later committed write overwrote must not be the final value.
    #[test]
    fn overwritten_value_coming_back_is_reported() {
        let h = History {
            ops: vec![
                write(0, Some(10), put("k", "1"), OpResult::Committed(vec![])),
                write(20, Some(30), put("k", "2"), OpResult::Committed(vec![])),
            ],
        };
        assert!(check(&h, &store(&[put("k", "2")])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
        // A committed delete after the last put leaves the key absent, and only absent.
        let h = History {
            ops: vec![
                write(0, Some(10), put("k", "1"), OpResult::Committed(vec![])),
                write(20, Some(30), delete("k"), OpResult::Committed(vec![])),
            ],
        };
        assert!(check(&h, &store(&[])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
    }

    /// Committed writes that overlap in real time may take effect in either order.
    #[test]
    fn concurrent_committed_writes_may_end_in_either_order() {
        let h = History {
            ops: vec![
                write(0, Some(30), put("k", "1"), OpResult::Committed(vec![])),
                write(10, Some(20), put("k", "2"), OpResult::Committed(vec![])),
            ],
        };
        assert!(check(&h, &store(&[put("k", "1")])).is_empty());
        assert!(check(&h, &store(&[put("k", "2")])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[])), ["k"]);
    }

    /// A write whose outcome the client never learned may be in the final store, or not.
    #[test]
    fn unknown_write_may_be_present_or_absent() {
        let h = History { ops: vec![write(0, None, put("k", "1"), OpResult::Unknown)] };
        assert!(check(&h, &store(&[])).is_empty());
        assert!(check(&h, &store(&[put("k", "1")])).is_empty());
        // But only with its own value.
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "2")])), ["k"]);
        // After a committed write it may still have won, being concurrent with it.
        let h = History {
            ops: vec![
                write(0, Some(10), put("k", "1"), OpResult::Committed(vec![])),
                write(5, None, put("k", "2"), OpResult::Unknown),
            ],
        };
        assert!(check(&h, &store(&[put("k", "1")])).is_empty());
        assert!(check(&h, &store(&[put("k", "2")])).is_empty());
        // Yet a committed write is never simply gone because an unknown one was around.
        assert_eq!(keys_at_fault(&h, &store(&[])), ["k"]);
    }

    /// A write the cluster refused, or that failed on a missing key, applied nothing: its value
    /// in the final store is reported, as is a key no write ever made.
    #[test]
    fn value_of_a_write_that_was_not_applied_is_reported() {
        let h = History { ops: vec![write(0, Some(10), put("k", "1"), OpResult::NotApplied)] };
        assert!(check(&h, &store(&[])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
        let failed = vec![TxnOp::Update { key: "absent".into(), value: "x".into() }, put("k", "1").remove(0)];
        let h = History {
            ops: vec![write(
                0,
                Some(10),
                failed,
                OpResult::Failed(dkv_core::OpFailure { op_index: 0, reason: dkv_core::FailReason::KeyNotFound }),
            )],
        };
        assert!(check(&h, &store(&[])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
        let h = History::default();
        assert_eq!(keys_at_fault(&h, &store(&[put("stray", "1")])), ["stray"]);
    }

    /// Within a transaction the last op on a key is its effect: put then delete leaves nothing.
    #[test]
    fn last_op_of_a_transaction_on_a_key_is_its_effect() {
        let ops = vec![TxnOp::Put { key: "k".into(), value: "1".into() }, TxnOp::Delete { key: "k".into() }];
        let h = History { ops: vec![write(0, Some(10), ops, OpResult::Committed(vec![]))] };
        assert!(check(&h, &store(&[])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
    }

    /// An append leaves a value of its result's length ending with what it appended, and a
    /// result's version is the key's: a final value or version that no last write explains is
    /// reported.
    #[test]
    fn appends_and_versions_are_checked() {
        let append = vec![TxnOp::Append { key: "k".into(), value: "x".into() }];
        let appended = |len, version| OpResult::Committed(vec![Returned::Integer { value: len, version }]);
        let h = History {
            ops: vec![
                write(0, Some(10), put("k", "ab"), OpResult::Committed(vec![Returned::Done { version: 1 }])),
                write(20, Some(30), append.clone(), appended(3, 2)),
            ],
        };
        assert!(check(&h, &store(&[put("k", "ab"), append.clone()])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "ab")])), ["k"], "the append is missing");
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "ab"), append.clone(), put("k", "abx")])), ["k"], "version 3");
    }
}
