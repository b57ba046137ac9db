//! The messages of the agreement. Every one carries the epoch whose members agree (the chosen
//! configuration is of the next epoch), so nothing from one epoch's agreement can count in
//! another's. The names avoid two-phase commit's words on purpose (see the module doc).

use super::{Ballot, Cluster, Configuration, Epoch, NotASuccessor, Report, Settlement, Value};
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaxosMessage {
    /// Proposer -> every member (Paxos phase 1a): promise to accept nothing below `ballot`,
    /// and end the epoch (freeze) and report.
    PromiseRequest { epoch: Epoch, ballot: Ballot },
    /// Acceptor -> proposer (phase 1b): promised; the highest-ballot value this acceptor has
    /// accepted, if any, which the proposer must propose instead of its own; and the member's
    /// report, from which the proposer settles the epoch if no value was accepted.
    Promise { epoch: Epoch, ballot: Ballot, accepted: Option<(Ballot, Value)>, report: Report },
    /// Acceptor -> proposer: `ballot` is refused because the acceptor promised `promised`,
    /// higher; the proposer should retry above it.
    Outbid { epoch: Epoch, ballot: Ballot, promised: Ballot },
    /// Proposer -> every member (phase 2a): accept `value` at `ballot`.
    AcceptRequest { epoch: Epoch, ballot: Ballot, value: Value },
    /// Acceptor -> every member, the learners (phase 2b): accepted `value` at `ballot`.
    Accepted { epoch: Epoch, ballot: Ballot, value: Value },
    /// Any member that learned it -> the others: `value` is chosen for the next epoch.
    Chosen { epoch: Epoch, value: Value },
    /// Answer to `Chosen`: the sender knows it durably; it need not be told again.
    Learned { epoch: Epoch },
}

/// Why a message makes no sense; such a message is counted and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Malformed {
    /// A ballot names a node that is not a member: no member could have made it.
    BallotOfNonMember,
    /// A request's ballot is not the sender's: a proposer only uses its own ballots.
    BallotNotTheSenders,
    /// A configuration that cannot follow this epoch's: not of the next epoch.
    NotTheNextConfiguration,
    /// A configuration that does not keep a cover of this epoch's members.
    KeepsTooFew,
    /// A settlement larger than a majority of this epoch's members can report.
    SettlementTooLarge,
    /// A promise reporting an acceptance above the ballot it promises.
    AcceptedAbovePromise,
    /// "Outbid" by a ballot that is not higher.
    OutbidByLower,
}

impl PaxosMessage {
    pub fn epoch(&self) -> Epoch {
        match *self {
            PaxosMessage::PromiseRequest { epoch, .. }
            | PaxosMessage::Promise { epoch, .. }
            | PaxosMessage::Outbid { epoch, .. }
            | PaxosMessage::AcceptRequest { epoch, .. }
            | PaxosMessage::Accepted { epoch, .. }
            | PaxosMessage::Chosen { epoch, .. }
            | PaxosMessage::Learned { epoch } => epoch,
        }
    }

    /// A short name for traces and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            PaxosMessage::PromiseRequest { .. } => "promise-request",
            PaxosMessage::Promise { .. } => "promise",
            PaxosMessage::Outbid { .. } => "outbid",
            PaxosMessage::AcceptRequest { .. } => "accept-request",
            PaxosMessage::Accepted { .. } => "accepted",
            PaxosMessage::Chosen { .. } => "chosen",
            PaxosMessage::Learned { .. } => "learned",
        }
    }

    /// Checks a message of `current`'s epoch from member `from` for sense.
    pub(super) fn check(&self, from: NodeId, current: &Configuration, cluster: Cluster) -> Result<(), Malformed> {
        let ballot_of_member =
            |b: Ballot| if current.contains(b.node) { Ok(()) } else { Err(Malformed::BallotOfNonMember) };
        let senders = |b: Ballot| if b.node == from { Ok(()) } else { Err(Malformed::BallotNotTheSenders) };
        let next = |value: &Value| {
            current.admits(value.configuration, cluster).map_err(|e| match e {
                NotASuccessor::NotTheNextEpoch => Malformed::NotTheNextConfiguration,
                NotASuccessor::KeepsTooFew => Malformed::KeepsTooFew,
            })?;
            if value.settlement.ids() > Settlement::ids_max(current.members.len()) {
                return Err(Malformed::SettlementTooLarge);
            }
            Ok(())
        };
        match self {
            // Only members propose: a ballot of a node outside would wedge the epoch (every
            // promise carrying its acceptance is dropped as a non-member's).
            PaxosMessage::PromiseRequest { ballot, .. } => {
                senders(*ballot)?;
                ballot_of_member(*ballot)
            }
            PaxosMessage::AcceptRequest { ballot, value, .. } => {
                senders(*ballot)?;
                ballot_of_member(*ballot)?;
                next(value)
            }
            PaxosMessage::Promise { ballot, accepted, .. } => {
                ballot_of_member(*ballot)?;
                match accepted {
                    Some((at, _)) if at > ballot => Err(Malformed::AcceptedAbovePromise),
                    Some((at, value)) => {
                        ballot_of_member(*at)?;
                        next(value)
                    }
                    None => Ok(()),
                }
            }
            PaxosMessage::Outbid { ballot, promised, .. } => {
                ballot_of_member(*ballot)?;
                ballot_of_member(*promised)?;
                if promised > ballot { Ok(()) } else { Err(Malformed::OutbidByLower) }
            }
            PaxosMessage::Accepted { ballot, value, .. } => {
                ballot_of_member(*ballot)?;
                next(value)
            }
            PaxosMessage::Chosen { value, .. } => next(value),
            PaxosMessage::Learned { .. } => Ok(()),
        }
    }
}
