//! Internal consistency of a node's state, checked by the simulator after every run and by the
//! fuzzers after every input. A violation is a bug in the core, never the fault of an input.

use crate::coordinator::Phase;
use crate::node::Node;
use crate::participant::PreparedState;
use std::collections::BTreeSet;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("node invariant broken: {0}")]
pub struct InvariantViolation(pub String);

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), InvariantViolation> {
    if condition { Ok(()) } else { Err(InvariantViolation(what())) }
}

impl Node {
    /// Checks that the node's bookkeeping agrees with itself: locks belong to prepared
    /// transactions, indexes match what they index, undecided requests are being coordinated,
    /// and waiting reads wait on locked keys.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        // Locks and prepared transactions are two views of one thing.
        let mut locked = 0;
        for (txn, p) in &self.prepared {
            let keys: BTreeSet<&[u8]> = p.record.ops.iter().map(|op| op.key()).collect();
            for key in &keys {
                ensure(self.locks.holder(key) == Some(*txn), || {
                    format!("{txn} is prepared but does not hold its key {key:?}")
                })?;
            }
            locked += keys.len();
            ensure(self.prepared_requests.get(&p.record.request) == Some(txn), || {
                format!("{txn} is prepared but its request {} is not indexed to it", p.record.request)
            })?;
            ensure((p.state == PreparedState::Local) == (txn.coordinator == self.config.id), || {
                format!("{txn} is prepared as {:?} at node {}", p.state, self.config.id)
            })?;
        }
        ensure(locked == self.locks.len(), || {
            format!("{} keys are locked but prepared transactions hold {locked}", self.locks.len())
        })?;
        ensure(self.prepared_requests.len() == self.prepared.len(), || {
            format!(
                "{} requests indexed for {} prepared transactions",
                self.prepared_requests.len(),
                self.prepared.len()
            )
        })?;
        // Undecided requests are exactly the coordinated transactions still voting or deciding,
        // and each of those holds its local share.
        for (request, txn) in &self.undecided {
            let c = self
                .coordinating
                .get(txn)
                .ok_or_else(|| InvariantViolation(format!("undecided {request} names unknown {txn}")))?;
            ensure(c.record.request == *request, || {
                format!("{txn} coordinates {} but is indexed as {request}", c.record.request)
            })?;
            ensure(!matches!(c.phase, Phase::Committed { .. }), || {
                format!("{txn} is committed but listed as undecided")
            })?;
            ensure(self.prepared.get(txn).is_some_and(|p| p.state == PreparedState::Local), || {
                format!("undecided {txn} does not hold its local share")
            })?;
        }
        let undecided = self.coordinating.values().filter(|c| !matches!(c.phase, Phase::Committed { .. })).count();
        ensure(undecided == self.undecided.len(), || {
            format!("{undecided} transactions undecided but {} requests listed", self.undecided.len())
        })?;
        for request in self.retries.keys() {
            ensure(!self.undecided.contains_key(request), || format!("{request} is both retrying and undecided"))?;
        }
        // A waiting read waits on a locked key.
        for key in self.reads.waiting_keys() {
            ensure(self.locks.is_locked(key), || format!("a read waits on unlocked key {key:?}"))?;
        }
        Ok(())
    }
}
