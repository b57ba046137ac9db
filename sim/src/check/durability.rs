//! Durability: every acknowledged write is in the final state, unless a later write
//! overwrote it. For each key, the final value must be the effect of a write that no committed
//! write to the same key followed in real time.

use super::Violation;
use crate::history::{History, OpKind, Result as OpResult, show};
use dkv_core::WriteOp;
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
        if !matches!(op.result, OpResult::Committed | OpResult::Unknown) {
            continue;
        }
        let mut last: BTreeMap<&[u8], Option<Vec<u8>>> = BTreeMap::new();
        for o in ops {
            let effect = match o {
                WriteOp::Put { value, .. } | WriteOp::Update { value, .. } => Some(value.clone()),
                WriteOp::Delete { .. } => None,
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
