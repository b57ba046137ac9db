//! The acceptor of a vote instance: Paxos's phases 1b and 2b, and whether the owner may cast.

use super::{Flaws, VoteBallot, VoteFlaw, VoteValue};
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

/// One member's durable part in one vote instance. The driver persists it whole after every
/// change and sends nothing that reflects a change before that is durable (a promise, an
/// acceptance notice); after a crash it restarts from the last durable copy and nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VoteAcceptor {
    /// The highest ballot promised or accepted: nothing below it is accepted any more.
    pub promised: Option<VoteBallot>,
    /// The highest-ballot value accepted, and its ballot.
    pub accepted: Option<(VoteBallot, VoteValue)>,
}

/// What the acceptor is to the instance's owner, for an accept request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// Another member's instance: any value may be accepted.
    NotOwner,
    /// The owner's own instance, and its share's record is in its log ahead of the acceptance
    /// about to be written (logged or being logged, in order, so the acceptance is never
    /// durable without it), and the transaction is not finished. Releasing the share's locks
    /// (on an ABORT, say) does not end this: a recovery that finds the owner's YES must be able
    /// to have it chosen.
    Held,
    /// The owner's own instance, and no record of its share is in its log: it lost it in a
    /// crash, or never had it. A YES is refused: a YES the owner does not hold must never be
    /// chosen.
    Lacking,
}

/// The acceptor's answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptorAnswer {
    /// Promised the ballot; reports the highest-ballot acceptance.
    Promise { accepted: Option<(VoteBallot, VoteValue)> },
    /// Accepted the value at the ballot.
    Accepted,
    /// Refused: a higher ballot was promised.
    Outbid { promised: VoteBallot },
    /// Asked to accept another value at a ballot already accepted with one. No correct
    /// proposer does that (a ballot carries one value); the request is dropped.
    Conflicting,
    /// The owner was asked to accept a YES for its own instance and holds no share.
    NoShare,
}

impl VoteAcceptor {
    /// The owner, in its life `life`, casts `value` at its own ballot: its own copy, to be
    /// logged (with its share, for a YES) while the vote goes to every other member. `None` if
    /// it may not cast ([`VoteAcceptor::may_cast`]); it then answers with what it holds.
    pub fn cast(&mut self, owner: NodeId, life: u64, value: VoteValue, flaws: Flaws) -> Option<VoteBallot> {
        if !self.may_cast(life, flaws) {
            return None;
        }
        let ballot = VoteBallot::owners(owner, life);
        self.promised = Some(ballot);
        self.accepted = Some((ballot, value));
        Some(ballot)
    }

    /// Phase 1b: promise `ballot` unless a higher one was promised. A repeated request for the
    /// promised ballot is promised again (its answer may have been lost).
    pub fn on_promise_request(&mut self, ballot: VoteBallot) -> AcceptorAnswer {
        if let Some(promised) = self.promised.filter(|promised| *promised > ballot) {
            return AcceptorAnswer::Outbid { promised };
        }
        self.promised = Some(ballot);
        AcceptorAnswer::Promise { accepted: self.accepted }
    }

    /// Phase 2b: accept `value` at `ballot` unless a higher ballot was promised, another value
    /// was accepted at this ballot, or this is the owner asked for a YES it holds no share of.
    /// Accepting is promising too. (The owner's own copy of its cast is [`VoteAcceptor::cast`];
    /// an owner never gets an accept request at its own ballot.)
    pub fn on_accept_request(&mut self, ballot: VoteBallot, value: VoteValue, share: Share) -> AcceptorAnswer {
        match (self.promised, self.accepted) {
            (Some(promised), _) if promised > ballot => AcceptorAnswer::Outbid { promised },
            (_, Some((at, accepted))) if at == ballot && accepted != value => AcceptorAnswer::Conflicting,
            _ if value == VoteValue::Yes && share == Share::Lacking => AcceptorAnswer::NoShare,
            _ => {
                self.promised = Some(ballot);
                self.accepted = Some((ballot, value));
                AcceptorAnswer::Accepted
            }
        }
    }

    /// Whether the state is one the rules can reach in `owner`'s instance: nothing accepted
    /// above the promise, nothing accepted without one, a round-0 ballot only ever the
    /// owner's, and a round-0 promise only with the cast it came with. A state read from a log
    /// or a snapshot that is not is refused (the log contradicts itself).
    pub fn is_consistent(&self, owner: NodeId) -> bool {
        let foreign_cast = |b: VoteBallot| b.is_owners() && b.node != owner;
        if self.promised.is_some_and(foreign_cast) || self.accepted.is_some_and(|(b, _)| foreign_cast(b)) {
            return false;
        }
        match (self.promised, self.accepted) {
            (Some(promised), None) => !promised.is_owners(),
            (None, None) => true,
            (Some(promised), Some((at, _))) => at <= promised,
            (None, Some(_)) => false,
        }
    }

    /// Whether the owner, in its life `life`, may cast a vote at its own ballot. Only while its
    /// part in the instance is empty: a vote it cast in an earlier life and logged is answered
    /// again as it was (a repeated PREPARE gets the earlier vote), and a promise it made means a
    /// recovery is under way, which a new vote at round 0 could not outbid anyway. A vote it cast
    /// and lost in a crash was never chosen ([`super::counts`] needs the owner's own copy for
    /// anything at its ballot), so casting afresh at the new life's ballot is safe.
    ///
    /// "Empty" must mean "never touched", not "forgotten": the driver keeps an instance's state
    /// until its transaction is below a durable finished mark, and casts, promises and accepts
    /// nothing below that mark. An owner that forgot a vote of this life would cast again at
    /// the same ballot, perhaps the other value.
    pub fn may_cast(&self, life: u64, flaws: Flaws) -> bool {
        if flaws.has(VoteFlaw::OwnerCastsAgain) {
            // Planted: an earlier life's vote, logged, is forgotten.
            return self.accepted.is_none_or(|(at, _)| at.is_owners() && at.life < life)
                && self.promised.is_none_or(|promised| promised.is_owners() && promised.life < life);
        }
        self.promised.is_none() && self.accepted.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// States the rules reach pass; a state read from a damaged or forged log that no rule
    /// reaches is told apart.
    #[test]
    fn only_states_the_rules_reach_are_consistent() {
        let owner = NodeId(1);
        let cast = VoteBallot::owners(owner, 2);
        let recovery = VoteBallot::recovery(1, 1, NodeId(0));
        let yes = VoteValue::Yes;
        let state = |promised, accepted| VoteAcceptor { promised, accepted };
        let mut cast_here = VoteAcceptor::default();
        cast_here.cast(owner, 2, yes, Flaws::NONE);
        let reached = [
            VoteAcceptor::default(),
            cast_here,
            state(Some(recovery), None),
            state(Some(recovery), Some((cast, yes))),
            state(Some(recovery), Some((recovery, VoteValue::No))),
        ];
        for s in reached {
            assert!(s.is_consistent(owner), "{s:?}");
        }
        let unreached = [
            state(None, Some((cast, yes))),
            state(Some(cast), Some((recovery, yes))),
            state(Some(cast), None),
            state(Some(VoteBallot::owners(NodeId(2), 1)), Some((VoteBallot::owners(NodeId(2), 1), yes))),
            state(Some(recovery), Some((VoteBallot::owners(NodeId(2), 1), yes))),
        ];
        for s in unreached {
            assert!(!s.is_consistent(owner), "{s:?}");
        }
    }
}
