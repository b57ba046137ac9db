//! The store against a reference model: random sequences of transactions, checked and applied
//! by the store, must match a plain BTreeMap that applies the DESIGN.md rules directly.
//! A second model runs the same sequences through a whole cluster.

mod harness;
use dkv_core::store::Store;
use dkv_core::{FailReason, OpFailure, Outcome, WriteOp};
use harness::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Puts weigh more than updates and deletes, so that most transactions find their keys and
/// commit with effect (with equal weights about three in four failed on a missing key, and the
/// model mostly compared empty stores).
fn op() -> impl Strategy<Value = WriteOp> {
    let key = (0u8..4).prop_map(|k| vec![b'k', k]);
    let value = prop::collection::vec(any::<u8>(), 0..4);
    prop_oneof![
        4 => (key.clone(), value.clone()).prop_map(|(key, value)| WriteOp::Put { key, value }),
        1 => (key.clone(), value).prop_map(|(key, value)| WriteOp::Update { key, value }),
        1 => key.prop_map(|key| WriteOp::Delete { key }),
    ]
}

/// The rules, written as plainly as possible: run the ops in order on a copy; if any update
/// or delete finds its key missing, throw the copy away and report that op.
fn model_apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[WriteOp]) -> Result<(), OpFailure> {
    let missing = |i: usize| OpFailure { op_index: i as u32, reason: FailReason::KeyNotFound };
    let mut copy = model.clone();
    for (i, op) in ops.iter().enumerate() {
        match op {
            WriteOp::Put { key, value } => {
                copy.insert(key.clone(), value.clone());
            }
            WriteOp::Update { key, value } => match copy.get_mut(key) {
                Some(v) => *v = value.clone(),
                None => return Err(missing(i)),
            },
            WriteOp::Delete { key } => {
                if copy.remove(key).is_none() {
                    return Err(missing(i));
                }
            }
        }
    }
    *model = copy;
    Ok(())
}

proptest! {
    /// The store's check-then-apply equals the model on every transaction.
    #[test]
    fn store_matches_reference_model(txns in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..40)) {
        let mut store = Store::default();
        let mut model = BTreeMap::new();
        for ops in txns {
            let expected = model_apply(&mut model, &ops);
            let got = store.check(&ops);
            prop_assert_eq!(got, expected);
            if got.is_ok() {
                store.apply(&ops);
            }
            let contents: BTreeMap<_, _> = store.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(&contents, &model);
        }
    }

    /// A 3-node cluster answers every transaction as the model says and every replica ends
    /// equal to the model.
    #[test]
    fn cluster_matches_reference_model(txns in prop::collection::vec((0usize..3, prop::collection::vec(op(), 1..4)), 1..15)) {
        let mut cluster = Cluster::new(3);
        let mut model = BTreeMap::new();
        for (seq, (node, ops)) in txns.into_iter().enumerate() {
            let expected = match model_apply(&mut model, &ops) {
                Ok(()) => Outcome::Committed,
                Err(failure) => Outcome::Failed(failure),
            };
            let r = cluster.request(node, txn(1, seq as u64 + 1, ops));
            prop_assert!(cluster.settle());
            prop_assert_eq!(&cluster.reply(r).unwrap().outcome, &expected);
        }
        for i in 0..3 {
            let contents: BTreeMap<_, _> = cluster.node(i).store().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(&contents, &model);
        }
    }
}

/// The generator is worth its runs: most generated transactions commit with effect rather than
/// fail on a missing key (a generator that mostly failed would test little but failure).
#[test]
fn generated_transactions_mostly_take_effect() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(prop::collection::vec(op(), 1..5), 1..40);
    let (mut applied, mut total) = (0usize, 0usize);
    for _ in 0..200 {
        let txns = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = BTreeMap::new();
        for ops in txns {
            total += 1;
            applied += usize::from(model_apply(&mut model, &ops).is_ok());
        }
    }
    let share = applied as f64 / total as f64;
    assert!(share > 0.5, "only {:.0}% of generated transactions took effect", share * 100.0);
}
