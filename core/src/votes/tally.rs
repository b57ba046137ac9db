//! The counting rule: when a vote instance's value is chosen.

use super::{Flaws, VoteBallot, VoteFlaw, VoteValue};
use crate::ids::{NodeId, NodeSet};
use std::collections::BTreeMap;

/// Whether `holders`, each holding `value` at `ballot` durably, choose it for `owner`'s
/// instance, when `copies` members must hold it (a majority of the cluster, as for a commit's
/// copies).
///
/// - At the owner's ballot (round 0) the owner must be among the holders, whatever the value:
///   the owner casts without a phase 1 and may cast again in a later life if it lost its vote
///   in a crash, which is only safe if a vote it lost cannot have been chosen.
/// - A YES, at any ballot, needs the owner among the holders: its copy is its share (the
///   locked and logged ops). A YES chosen without it could commit a transaction whose share its
///   owner lost in a crash before the share was durable, and then serve reads without it.
/// - A NO at a recovery ballot counts on any `copies` members.
///
/// Every two sets of `copies` members share a member, so this is Paxos with some quorums left
/// out: no two values are ever chosen (`core/tests/vote_instances.rs` checks it exhaustively
/// on small clusters).
pub fn counts(
    owner: NodeId,
    ballot: VoteBallot,
    value: VoteValue,
    holders: NodeSet,
    copies: usize,
    flaws: Flaws,
) -> bool {
    if holders.len() < copies {
        return false;
    }
    let owner_needed = match value {
        VoteValue::Yes => !flaws.has(VoteFlaw::YesWithoutOwner),
        VoteValue::No => ballot.is_owners() && !flaws.has(VoteFlaw::OwnersNoWithoutOwner),
    };
    !owner_needed || holders.contains(owner)
}

/// The durable acceptances a learner has heard of for one instance, by ballot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    owner: NodeId,
    copies: usize,
    by_ballot: BTreeMap<VoteBallot, (VoteValue, NodeSet)>,
}

impl Tally {
    /// Ballots followed at once; past it the lowest is forgotten. A value chosen at a forgotten
    /// ballot is carried by every higher ballot's proposal, so forgetting delays learning it,
    /// never changes what is learned.
    pub const BALLOTS_MAX: usize = 8;

    pub fn new(owner: NodeId, copies: usize) -> Tally {
        Tally { owner, copies, by_ballot: BTreeMap::new() }
    }

    /// `member` holds `value` at `ballot` durably. A value other than the one already heard of
    /// at that ballot is ignored (no correct acceptor sends it).
    pub fn durable(&mut self, member: NodeId, ballot: VoteBallot, value: VoteValue) {
        let (held, holders) = self.by_ballot.entry(ballot).or_insert((value, NodeSet::EMPTY));
        if *held == value {
            holders.insert(member);
        }
        while self.by_ballot.len() > Self::BALLOTS_MAX {
            self.by_ballot.pop_first();
        }
    }

    /// The value chosen, if the acceptances heard of choose one.
    pub fn chosen(&self, flaws: Flaws) -> Option<VoteValue> {
        self.by_ballot
            .iter()
            .find(|(ballot, (value, holders))| counts(self.owner, **ballot, *value, *holders, self.copies, flaws))
            .map(|(_, (value, _))| *value)
    }
}
