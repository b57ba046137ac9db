//! The store against a reference model: random sequences of transactions, checked and applied
//! by the store, must match a plain BTreeMap that applies the DESIGN.md rules directly.
//! A second model runs the same sequences through a whole cluster.

mod harness;
use dkv_core::store::Store;
use dkv_core::{Condition, FailReason, Limits, OpFailure, OpResult, Outcome, TxnOp};
use harness::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Puts weigh more than updates and deletes, so that most transactions find their keys and
/// commit with effect (with equal weights about three in four failed on a missing key, and the
/// model mostly compared empty stores). Values are drawn from a few short strings, some of them
/// numbers, so that conditions on values and increments hold about as often as they fail.
fn op() -> impl Strategy<Value = TxnOp> {
    let key = (0u8..4).prop_map(|k| vec![b'k', k]);
    let value = prop::sample::select(vec!["", "a", "b", "1", "-7", "01", "9223372036854775807"])
        .prop_map(|v| v.as_bytes().to_vec());
    let condition = prop_oneof![
        Just(Condition::Exists),
        Just(Condition::Absent),
        value.clone().prop_map(Condition::ValueEquals),
        (0u64..4).prop_map(Condition::VersionEquals),
    ];
    prop_oneof![
        8 => (key.clone(), value.clone()).prop_map(|(key, value)| TxnOp::Put { key, value }),
        2 => (key.clone(), value.clone()).prop_map(|(key, value)| TxnOp::Update { key, value }),
        2 => key.clone().prop_map(|key| TxnOp::Delete { key }),
        2 => (key.clone(), prop::sample::select(vec![1i64, -1, 5, i64::MAX])).prop_map(|(key, by)| TxnOp::Increment { key, by }),
        1 => (key.clone(), value.clone()).prop_map(|(key, value)| TxnOp::Append { key, value }),
        1 => (key.clone(), value).prop_map(|(key, value)| TxnOp::GetSet { key, value }),
        1 => key.clone().prop_map(|key| TxnOp::GetDelete { key }),
        2 => key.clone().prop_map(|key| TxnOp::Read { key }),
        2 => (key, condition).prop_map(|(key, condition)| TxnOp::Require { key, condition }),
    ]
}

/// The value limit the model and the store run under: small, so appends reach it (the
/// longest drawn value is 19 bytes).
const VALUE_MAX: usize = 24;

fn limits() -> Limits {
    Limits { value_bytes_max: VALUE_MAX as u32, ..Limits::default() }
}

/// A key's value and version in the model.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// The rules, written as plainly as possible: run the ops in order on a copy, each with its
/// result; if one cannot run, throw the copy away and report that op.
fn model_apply(model: &mut Model, ops: &[TxnOp]) -> Result<Vec<OpResult>, OpFailure> {
    let mut copy = model.clone();
    let mut results = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let fail = |reason| OpFailure { op_index: i as u32, reason };
        let key = op.key().to_vec();
        let old = copy.get(&key).cloned();
        let old_version = old.as_ref().map_or(0, |(_, v)| *v);
        let old_value = old.as_ref().map(|(v, _)| v.clone());
        let write = |copy: &mut Model, value: Option<Vec<u8>>| match value {
            Some(value) => {
                copy.insert(key.clone(), (value, old_version + 1));
                old_version + 1
            }
            None => {
                copy.remove(&key);
                0
            }
        };
        let result = match op {
            TxnOp::Put { value, .. } => OpResult::Done { version: write(&mut copy, Some(value.clone())) },
            TxnOp::Update { value, .. } => {
                if old.is_none() {
                    return Err(fail(FailReason::KeyNotFound));
                }
                OpResult::Done { version: write(&mut copy, Some(value.clone())) }
            }
            TxnOp::Delete { .. } => {
                if old.is_none() {
                    return Err(fail(FailReason::KeyNotFound));
                }
                OpResult::Done { version: write(&mut copy, None) }
            }
            TxnOp::Increment { by, .. } => {
                let text = String::from_utf8(old_value.unwrap_or_else(|| b"0".to_vec())).unwrap_or_default();
                let valid = !text.is_empty()
                    && (text == "0" || !text.trim_start_matches('-').starts_with('0'))
                    && text != "-"
                    && text.chars().enumerate().all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == '-'));
                let n: i64 = match text.parse() {
                    Ok(n) if valid => n,
                    _ => return Err(fail(FailReason::NotAnInteger)),
                };
                let Some(new) = n.checked_add(*by) else { return Err(fail(FailReason::IntegerOverflow)) };
                OpResult::Integer { value: new, version: write(&mut copy, Some(new.to_string().into_bytes())) }
            }
            TxnOp::Append { value, .. } => {
                let mut new = old_value.unwrap_or_default();
                new.extend_from_slice(value);
                if new.len() > VALUE_MAX {
                    return Err(fail(FailReason::ValueTooLarge));
                }
                let len = new.len() as i64;
                OpResult::Integer { value: len, version: write(&mut copy, Some(new)) }
            }
            TxnOp::GetSet { value, .. } => {
                OpResult::Value { value: old_value, version: write(&mut copy, Some(value.clone())) }
            }
            TxnOp::GetDelete { .. } => {
                let version = if old.is_some() { write(&mut copy, None) } else { 0 };
                OpResult::Value { value: old_value, version }
            }
            TxnOp::Read { .. } => OpResult::Value { value: old_value, version: old_version },
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
    *model = copy;
    Ok(results)
}

fn contents(store: &Store) -> Model {
    store.iter_versioned().map(|(k, v)| (k.clone(), (v.value.clone(), v.version))).collect()
}

proptest! {
    /// The store's results, failures, values and versions equal the model's on every
    /// transaction.
    #[test]
    fn store_matches_reference_model(txns in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..40)) {
        let mut store = Store::default();
        let mut model = Model::new();
        for ops in txns {
            let expected = model_apply(&mut model, &ops);
            prop_assert_eq!(&store.check(&ops, &limits()), &expected, "judging changes nothing");
            prop_assert_eq!(store.run(&ops, &limits()), expected);
            prop_assert_eq!(&contents(&store), &model);
        }
    }

    /// A 3-node cluster answers every transaction as the model says and every replica ends
    /// equal to the model.
    #[test]
    fn cluster_matches_reference_model(txns in prop::collection::vec((0usize..3, prop::collection::vec(op(), 1..4)), 1..15)) {
        let mut cluster = Cluster::with_config(3, |c| c.limits = limits());
        let mut model = Model::new();
        for (seq, (node, ops)) in txns.into_iter().enumerate() {
            let expected = match model_apply(&mut model, &ops) {
                Ok(results) => Outcome::Committed(results),
                Err(failure) => Outcome::Failed(failure),
            };
            let r = cluster.request(node, txn(1, seq as u64 + 1, ops));
            prop_assert!(cluster.settle());
            prop_assert_eq!(&cluster.reply(r).unwrap().outcome, &expected);
        }
        for i in 0..3 {
            prop_assert_eq!(&contents(cluster.node(i).store()), &model);
        }
    }
}

/// The generator is worth its runs: most generated transactions commit with effect rather than
/// fail (a generator that mostly failed would test little but failure), and every kind of
/// failure happens.
#[test]
fn generated_transactions_mostly_take_effect() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(prop::collection::vec(op(), 1..5), 1..40);
    let (mut applied, mut total) = (0usize, 0usize);
    for _ in 0..200 {
        let txns = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::new();
        for ops in txns {
            total += 1;
            applied += usize::from(model_apply(&mut model, &ops).is_ok());
        }
    }
    let share = applied as f64 / total as f64;
    assert!(share > 0.5, "only {:.0}% of generated transactions took effect", share * 100.0);
}
