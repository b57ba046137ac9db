//! A member's durable parts in the vote instances it takes part in, kept until each instance's
//! transaction is finished: what its `Record::VoteAcceptor` records and its snapshots hold.

use super::{VoteAcceptor, VoteInstance};
use crate::configuration::Epoch;
use crate::ids::TxnId;
use std::collections::BTreeMap;

/// Instances per `Record::SnapshotVoteAcceptors` record: under 80 bytes each, so a record
/// stays far below what a record may be.
pub const SNAPSHOT_ACCEPTORS_PER_RECORD: usize = 4096;

/// The acceptor states of the instances of unfinished transactions, by instance.
///
/// An instance's state is kept until its transaction is finished (below its coordinator's
/// durable finished mark, or forgotten by its coordinator) or its epoch is over: the owner's
/// [`VoteAcceptor::may_cast`] must never take a forgotten vote for one never cast. An instance
/// with nothing promised or accepted is not kept (it is the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoteAcceptors {
    states: BTreeMap<VoteInstance, VoteAcceptor>,
}

impl VoteAcceptors {
    /// The state of `instance`: empty if nothing was promised or accepted in it here.
    pub fn get(&self, instance: &VoteInstance) -> VoteAcceptor {
        self.states.get(instance).copied().unwrap_or_default()
    }

    /// `instance`'s state is now `acceptor` (as logged).
    pub fn set(&mut self, instance: VoteInstance, acceptor: VoteAcceptor) {
        if acceptor == VoteAcceptor::default() {
            self.states.remove(&instance);
        } else {
            self.states.insert(instance, acceptor);
        }
    }

    /// `txn` is finished, with every instance of it.
    pub fn finished(&mut self, txn: TxnId) {
        self.states.retain(|instance, _| instance.txn != txn);
    }

    /// Every transaction of `below`'s coordinator ordered before `below` is finished.
    pub fn finished_below(&mut self, below: TxnId) {
        self.states.retain(|instance, _| instance.txn.coordinator != below.coordinator || instance.txn >= below);
    }

    /// `epoch` is installed: every instance of an earlier epoch is settled.
    pub fn installed(&mut self, epoch: Epoch) {
        self.states.retain(|instance, _| instance.epoch >= epoch);
    }

    /// Keeps only the instances `keep` says are not over.
    pub fn retain(&mut self, mut keep: impl FnMut(&VoteInstance) -> bool) {
        self.states.retain(|instance, _| keep(instance));
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Every instance kept, in order.
    pub fn iter(&self) -> impl Iterator<Item = (VoteInstance, VoteAcceptor)> + '_ {
        self.states.iter().map(|(instance, acceptor)| (*instance, *acceptor))
    }

    /// The states as a snapshot holds them: runs of at most [`SNAPSHOT_ACCEPTORS_PER_RECORD`].
    pub fn snapshot_chunks(&self) -> Vec<Vec<(VoteInstance, VoteAcceptor)>> {
        let all: Vec<_> = self.iter().collect();
        all.chunks(SNAPSHOT_ACCEPTORS_PER_RECORD).map(<[_]>::to_vec).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::votes::{VoteBallot, VoteValue};

    fn instance(epoch: u64, coordinator: u8, number: u64, owner: u8) -> VoteInstance {
        VoteInstance {
            epoch: Epoch(epoch),
            txn: TxnId { coordinator: NodeId(coordinator), incarnation: 1, number },
            owner: NodeId(owner),
        }
    }

    fn accepted() -> VoteAcceptor {
        let ballot = VoteBallot::owners(NodeId(1), 1);
        VoteAcceptor { promised: Some(ballot), accepted: Some((ballot, VoteValue::Yes)) }
    }

    /// States are kept until their transaction is finished, by a mark of its own coordinator
    /// or by name, or their epoch is over; an empty state is not kept.
    #[test]
    fn states_are_kept_until_their_transaction_or_epoch_is_over() {
        let mut a = VoteAcceptors::default();
        for (coordinator, number) in [(0, 1), (0, 2), (0, 3), (2, 1)] {
            for owner in 0..3 {
                a.set(instance(2, coordinator, number, owner), accepted());
            }
        }
        a.set(instance(3, 0, 9, 1), accepted());
        assert_eq!(a.len(), 13);
        a.finished_below(TxnId { coordinator: NodeId(0), incarnation: 1, number: 2 });
        assert_eq!(a.len(), 10, "t0.1.1's three instances go, nothing of node 2's");
        assert_eq!(a.get(&instance(2, 0, 1, 0)), VoteAcceptor::default());
        assert_eq!(a.get(&instance(2, 0, 2, 0)), accepted());
        a.finished(TxnId { coordinator: NodeId(2), incarnation: 1, number: 1 });
        assert_eq!(a.len(), 7);
        a.installed(Epoch(3));
        assert_eq!(a.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![instance(3, 0, 9, 1)]);
        a.set(instance(3, 0, 9, 1), VoteAcceptor::default());
        assert!(a.is_empty());
    }

    /// A snapshot's runs hold every state once, in order, none longer than the bound.
    #[test]
    fn snapshot_chunks_hold_every_state_once() {
        let mut a = VoteAcceptors::default();
        let n = SNAPSHOT_ACCEPTORS_PER_RECORD as u64 + 5;
        for number in 0..n {
            a.set(instance(1, 0, number, 0), accepted());
        }
        let chunks = a.snapshot_chunks();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![SNAPSHOT_ACCEPTORS_PER_RECORD, 5]);
        assert!(chunks.concat().into_iter().eq(a.iter()));
    }
}
