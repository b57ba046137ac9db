//! The messages of vote instances (docs/protocol.md §8, stage 2: on the wire, sent by no one
//! yet), and the checks a member runs on one before it acts on it.

use super::{VoteBallot, VoteValue};
use crate::configuration::Epoch;
use crate::ids::{NodeId, NodeSet, TxnId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One vote instance: `owner`'s vote on `txn`, in `epoch`. Ordered by epoch, then transaction,
/// then owner, so that everything of one transaction, or of one coordinator's transactions
/// below a mark, is a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VoteInstance {
    pub epoch: Epoch,
    pub txn: TxnId,
    pub owner: NodeId,
}

impl fmt::Display for VoteInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}'s vote on {} in epoch {}", self.owner, self.txn, self.epoch.0)
    }
}

/// A message of one vote instance. Each names its instance, whose epoch is the message's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoteMessage {
    /// Owner -> every other member: its vote, at its own ballot (round 0 of its present life),
    /// sent while its own copy is being logged. The owner's phase 2a, without a phase 1.
    Cast { instance: VoteInstance, ballot: VoteBallot, value: VoteValue },
    /// Acceptor -> the transaction's coordinator, and to the recovery that asked: `value` is
    /// accepted at `ballot` and durable here (phase 2b, to the learners).
    Accepted { instance: VoteInstance, ballot: VoteBallot, value: VoteValue },
    /// A recovery -> every member (phase 1a): promise to accept nothing below `ballot`.
    PromiseRequest { instance: VoteInstance, ballot: VoteBallot },
    /// Acceptor -> the recovery (phase 1b): `ballot` promised, durably; the highest-ballot
    /// value accepted here, if any.
    Promise { instance: VoteInstance, ballot: VoteBallot, accepted: Option<(VoteBallot, VoteValue)> },
    /// Acceptor -> a recovery: `ballot` is refused, `promised` (higher) was promised here.
    Outbid { instance: VoteInstance, ballot: VoteBallot, promised: VoteBallot },
    /// A recovery -> every member (phase 2a): accept `value` at `ballot`.
    AcceptRequest { instance: VoteInstance, ballot: VoteBallot, value: VoteValue },
}

/// Why a vote message makes no sense; such a message is counted and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedVote {
    #[error("the instance's owner is not a member")]
    OwnerNotAMember,
    #[error("a ballot names a node that is not a member")]
    BallotOfNonMember,
    #[error("a cast that is not its owner's, at its owner's ballot")]
    CastNotTheOwners,
    #[error("a round-0 ballot that is not the owner's")]
    OwnersBallotOfAnother,
    #[error("a recovery's request at a ballot that is not the sender's recovery ballot")]
    RequestNotTheSenders,
    #[error("a promise reporting an acceptance above the ballot it promises")]
    AcceptedAbovePromise,
    #[error("\"outbid\" by a ballot that is not higher")]
    OutbidByLower,
    #[error("a promise for, or an outbid of, the owner's ballot, which has no phase 1")]
    PhaseOneAtOwnersBallot,
}

impl VoteMessage {
    pub fn instance(&self) -> VoteInstance {
        match *self {
            VoteMessage::Cast { instance, .. }
            | VoteMessage::Accepted { instance, .. }
            | VoteMessage::PromiseRequest { instance, .. }
            | VoteMessage::Promise { instance, .. }
            | VoteMessage::Outbid { instance, .. }
            | VoteMessage::AcceptRequest { instance, .. } => instance,
        }
    }

    /// A short name for traces and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            VoteMessage::Cast { value: VoteValue::Yes, .. } => "vote-cast-yes",
            VoteMessage::Cast { value: VoteValue::No, .. } => "vote-cast-no",
            VoteMessage::Accepted { .. } => "vote-accepted",
            VoteMessage::PromiseRequest { .. } => "vote-promise-request",
            VoteMessage::Promise { .. } => "vote-promise",
            VoteMessage::Outbid { .. } => "vote-outbid",
            VoteMessage::AcceptRequest { .. } => "vote-accept-request",
        }
    }

    /// Checks a message from `from` against the members of its epoch. Every ballot must be a
    /// member's, a round-0 ballot only ever the owner's, and a request's ballot the sender's
    /// own recovery ballot: no correct member sends another, and acting on one could outbid
    /// an instance with a ballot no member will ever use again.
    pub fn check(&self, from: NodeId, members: NodeSet) -> Result<(), MalformedVote> {
        let instance = self.instance();
        if !members.contains(instance.owner) {
            return Err(MalformedVote::OwnerNotAMember);
        }
        let ballot = |b: VoteBallot| {
            if !members.contains(b.node) {
                Err(MalformedVote::BallotOfNonMember)
            } else if b.is_owners() && b.node != instance.owner {
                Err(MalformedVote::OwnersBallotOfAnother)
            } else {
                Ok(())
            }
        };
        let request = |b: VoteBallot| {
            ballot(b)?;
            if b.is_owners() || b.node != from { Err(MalformedVote::RequestNotTheSenders) } else { Ok(()) }
        };
        match *self {
            VoteMessage::Cast { ballot: b, .. } => {
                ballot(b)?;
                if b.is_owners() && from == instance.owner { Ok(()) } else { Err(MalformedVote::CastNotTheOwners) }
            }
            VoteMessage::Accepted { ballot: b, .. } => ballot(b),
            VoteMessage::PromiseRequest { ballot: b, .. } | VoteMessage::AcceptRequest { ballot: b, .. } => request(b),
            VoteMessage::Promise { ballot: b, .. } | VoteMessage::Outbid { ballot: b, .. } if b.is_owners() => {
                Err(MalformedVote::PhaseOneAtOwnersBallot)
            }
            VoteMessage::Promise { ballot: b, accepted, .. } => {
                ballot(b)?;
                match accepted {
                    Some((at, _)) if at > b => Err(MalformedVote::AcceptedAbovePromise),
                    Some((at, _)) => ballot(at),
                    None => Ok(()),
                }
            }
            VoteMessage::Outbid { ballot: b, promised, .. } => {
                ballot(b)?;
                ballot(promised)?;
                if promised > b { Ok(()) } else { Err(MalformedVote::OutbidByLower) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: NodeId = NodeId(1);

    fn instance() -> VoteInstance {
        VoteInstance { epoch: Epoch(2), txn: TxnId { coordinator: NodeId(0), incarnation: 1, number: 7 }, owner: OWNER }
    }

    /// The owner's cast, acceptances of it, and a recovery's four messages from a member pass.
    #[test]
    fn every_message_a_correct_member_sends_passes() {
        let i = instance();
        let cast = VoteBallot::owners(OWNER, 3);
        let recovery = VoteBallot::recovery(1, 5, NodeId(0));
        let later = VoteBallot::recovery(2, 1, NodeId(2));
        let fine = [
            (OWNER, VoteMessage::Cast { instance: i, ballot: cast, value: VoteValue::Yes }),
            (NodeId(2), VoteMessage::Accepted { instance: i, ballot: cast, value: VoteValue::Yes }),
            (NodeId(0), VoteMessage::PromiseRequest { instance: i, ballot: recovery }),
            (OWNER, VoteMessage::Promise { instance: i, ballot: recovery, accepted: Some((cast, VoteValue::No)) }),
            (
                NodeId(2),
                VoteMessage::Promise { instance: i, ballot: recovery, accepted: Some((recovery, VoteValue::No)) },
            ),
            (NodeId(2), VoteMessage::Outbid { instance: i, ballot: recovery, promised: later }),
            (NodeId(0), VoteMessage::AcceptRequest { instance: i, ballot: recovery, value: VoteValue::No }),
        ];
        for (from, message) in fine {
            assert_eq!(message.check(from, NodeSet::first(3)), Ok(()), "{message:?} from {from}");
            assert_eq!(message.instance(), i);
        }
    }

    /// Each sort of senseless message is refused with its reason.
    #[test]
    fn senseless_messages_are_refused() {
        let i = instance();
        let cast = VoteBallot::owners(OWNER, 3);
        let recovery = VoteBallot::recovery(1, 5, NodeId(0));
        let outsider = VoteBallot::recovery(1, 1, NodeId(7));
        let yes = VoteValue::Yes;
        let bad = [
            (
                OWNER,
                VoteMessage::Cast { instance: VoteInstance { owner: NodeId(5), ..i }, ballot: cast, value: yes },
                MalformedVote::OwnerNotAMember,
            ),
            (NodeId(2), VoteMessage::Cast { instance: i, ballot: cast, value: yes }, MalformedVote::CastNotTheOwners),
            (OWNER, VoteMessage::Cast { instance: i, ballot: recovery, value: yes }, MalformedVote::CastNotTheOwners),
            (
                NodeId(2),
                VoteMessage::Accepted { instance: i, ballot: VoteBallot::owners(NodeId(2), 1), value: yes },
                MalformedVote::OwnersBallotOfAnother,
            ),
            (
                NodeId(2),
                VoteMessage::Accepted { instance: i, ballot: outsider, value: yes },
                MalformedVote::BallotOfNonMember,
            ),
            (
                NodeId(2),
                VoteMessage::PromiseRequest { instance: i, ballot: recovery },
                MalformedVote::RequestNotTheSenders,
            ),
            (OWNER, VoteMessage::PromiseRequest { instance: i, ballot: cast }, MalformedVote::RequestNotTheSenders),
            (
                NodeId(2),
                VoteMessage::AcceptRequest { instance: i, ballot: recovery, value: yes },
                MalformedVote::RequestNotTheSenders,
            ),
            (
                NodeId(2),
                VoteMessage::Promise {
                    instance: i,
                    ballot: recovery,
                    accepted: Some((VoteBallot::recovery(2, 1, OWNER), yes)),
                },
                MalformedVote::AcceptedAbovePromise,
            ),
            (
                NodeId(2),
                VoteMessage::Outbid { instance: i, ballot: recovery, promised: cast },
                MalformedVote::OutbidByLower,
            ),
            (
                NodeId(2),
                VoteMessage::Promise { instance: i, ballot: cast, accepted: None },
                MalformedVote::PhaseOneAtOwnersBallot,
            ),
            (
                NodeId(2),
                VoteMessage::Outbid { instance: i, ballot: cast, promised: recovery },
                MalformedVote::PhaseOneAtOwnersBallot,
            ),
        ];
        for (from, message, reason) in bad {
            assert_eq!(message.check(from, NodeSet::first(3)), Err(reason), "{message:?} from {from}");
        }
    }
}
