//! Durability: every acknowledged write is in the final state, unless a later write
//! overwrote it. For each key, the final value must be the effect of a write that no committed
//! write to the same key followed in real time.

use super::Violation;
use crate::history::{History, OpKind, Result as OpResult, show};
use dkv_core::TxnOp;
use dkv_core::store::Store;
use std::collections::{BTreeMap, BTreeSet};

/// A write's effect on one key.
struct KeyWrite {
    /// The write's index in the history.
    op: usize,
    /// The value it leaves (`None`: it deletes the key).
    effect: Option<Vec<u8>>,
}

/// `final_store` is the converged final store (n0's; convergence checks the others against it).
pub fn check(history: &History, final_store: &Store) -> Vec<Violation> {
    let mut writes: BTreeMap<Vec<u8>, Vec<KeyWrite>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        let OpKind::Txn { ops } = &op.kind else { continue };
        if !matches!(op.result, OpResult::Committed | OpResult::Unknown | OpResult::Happened) {
            continue;
        }
        let mut last: BTreeMap<&[u8], Option<Vec<u8>>> = BTreeMap::new();
        for o in ops {
            let effect = match o {
                TxnOp::Put { value, .. } | TxnOp::Update { value, .. } => Some(value.clone()),
                TxnOp::Delete { .. } => None,
                _ => unimplemented!("the workload draws no such op yet"),
            };
            last.insert(o.key(), effect);
        }
        for (k, effect) in last {
            writes.entry(k.to_vec()).or_default().push(KeyWrite { op: i, effect });
        }
    }
    let mut keys: BTreeSet<Vec<u8>> = writes.keys().cloned().collect();
    keys.extend(final_store.iter().map(|(k, _)| k.clone()));
    let mut violations = Vec::new();
    for key in keys {
        let ws = writes.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let committed = |i: usize| history.ops[i].result == OpResult::Committed;
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
        let final_value = final_store.get(&key).cloned();
        let explained = last.iter().any(|w| w.effect == final_value) || (!any_committed && final_value.is_none());
        if !explained {
            violations.push(Violation {
                checker: "durability",
                key: Some(show(&key)),
                message: format!(
                    "final value is {}, but the last writes of the key say otherwise",
                    final_value.as_deref().map_or("<absent>".to_string(), show)
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
            store.run(ops, &dkv_core::Limits::default()).expect("the ops apply");
        }
        store
    }
    fn keys_at_fault(history: &History, final_store: &Store) -> Vec<String> {
        check(history, final_store).into_iter().map(|v| v.key.expect("names its key")).collect()
    }

    /// A committed write the final store does not hold was lost, and is reported on its key.
    #[test]
    fn committed_write_missing_from_the_final_store_is_reported() {
        let h = History { ops: vec![write(0, Some(10), put("k", "1"), OpResult::Committed)] };
        assert_eq!(keys_at_fault(&h, &store(&[])), ["k"]);
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), Vec::<String>::new());
    }

    /// A committed write that a later committed write overwrote must not be the final value.
    #[test]
    fn overwritten_value_coming_back_is_reported() {
        let h = History {
            ops: vec![
                write(0, Some(10), put("k", "1"), OpResult::Committed),
                write(20, Some(30), put("k", "2"), OpResult::Committed),
            ],
        };
        assert!(check(&h, &store(&[put("k", "2")])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
        // A committed delete after the last put leaves the key absent, and only absent.
        let h = History {
            ops: vec![
                write(0, Some(10), put("k", "1"), OpResult::Committed),
                write(20, Some(30), delete("k"), OpResult::Committed),
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
                write(0, Some(30), put("k", "1"), OpResult::Committed),
                write(10, Some(20), put("k", "2"), OpResult::Committed),
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
                write(0, Some(10), put("k", "1"), OpResult::Committed),
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
        let h = History { ops: vec![write(0, Some(10), failed, OpResult::FailedAt(0))] };
        assert!(check(&h, &store(&[])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
        let h = History::default();
        assert_eq!(keys_at_fault(&h, &store(&[put("stray", "1")])), ["stray"]);
    }

    /// Within a transaction the last op on a key is its effect: put then delete leaves nothing.
    #[test]
    fn last_op_of_a_transaction_on_a_key_is_its_effect() {
        let ops = vec![TxnOp::Put { key: "k".into(), value: "1".into() }, TxnOp::Delete { key: "k".into() }];
        let h = History { ops: vec![write(0, Some(10), ops, OpResult::Committed)] };
        assert!(check(&h, &store(&[])).is_empty());
        assert_eq!(keys_at_fault(&h, &store(&[put("k", "1")])), ["k"]);
    }
}
