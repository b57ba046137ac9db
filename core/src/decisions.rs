//! Decisions a node has learned recently, kept to answer other participants' queries
//! (cooperative termination) and to ignore stale PREPAREs of finished transactions. Bounded:
//! the oldest is forgotten first. Losing one is always safe: it only means a query goes
//! unanswered here, or a stale PREPARE is refused by completion records or answered by presumed
//! abort.

use crate::ids::TxnId;
use crate::message::Decision;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};

pub(crate) struct KnownDecisions {
    decisions: BTreeMap<TxnId, Decision>,
    order: VecDeque<TxnId>,
    capacity: usize,
}

impl KnownDecisions {
    pub(crate) fn new(capacity: usize) -> KnownDecisions {
        KnownDecisions { decisions: BTreeMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub(crate) fn get(&self, txn: TxnId) -> Option<Decision> {
        self.decisions.get(&txn).copied()
    }

    /// Remembers `decision` unless a decision for `txn` is known already (the first stays).
    /// A transaction has one outcome: callers filter out a conflicting one before it gets here
    /// (see `Participant::on_decision`), so one arriving here is a bug, asserted in debug builds.
    pub(crate) fn insert(&mut self, txn: TxnId, decision: Decision) {
        match self.decisions.entry(txn) {
            Entry::Occupied(known) => {
                debug_assert_eq!(
                    *known.get(),
                    decision,
                    "{txn} is known as {:?} and learned {decision:?}",
                    known.get()
                );
                return;
            }
            Entry::Vacant(entry) => entry.insert(decision),
        };
        self.order.push_back(txn);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.decisions.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn txn(number: u64) -> TxnId {
        TxnId { coordinator: NodeId(1), incarnation: 1, number }
    }

    /// The oldest decision is forgotten first, and a repeated one keeps its place.
    #[test]
    fn bounded_oldest_first() {
        let mut known = KnownDecisions::new(2);
        known.insert(txn(1), Decision::Commit);
        known.insert(txn(2), Decision::Abort);
        known.insert(txn(1), Decision::Commit);
        known.insert(txn(3), Decision::Commit);
        assert_eq!([1, 2, 3].map(|n| known.get(txn(n))), [None, Some(Decision::Abort), Some(Decision::Commit)]);
    }

    /// A transaction has one outcome: learning the other one is a bug, caught in debug builds.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "t1.1.1 is known as Commit and learned Abort")]
    fn a_conflicting_decision_is_caught() {
        let mut known = KnownDecisions::new(4);
        known.insert(txn(1), Decision::Commit);
        known.insert(txn(1), Decision::Abort);
    }
}
