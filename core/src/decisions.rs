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
    pub(crate) fn insert(&mut self, txn: TxnId, decision: Decision) {
        match self.decisions.entry(txn) {
            Entry::Occupied(_) => return,
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
