//! Ballots of a vote instance: the owner's own, then the recovery ballots.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One attempt at a vote instance. Ordered by `round`, then `life`, then `node` (the derived
/// order follows the fields).
///
/// - Round 0 is the **owner's ballot**: the vote the owner casts when a PREPARE reaches it, at
///   most one per life of the owner, without a phase 1 (nothing can be accepted below it that
///   could have been chosen: see [`super::counts`]).
/// - Rounds from 1 are **recovery ballots**: a member that stops waiting for the vote (the
///   coordinator), or a settlement, runs both phases.
///
/// `life` is the incarnation of the node that uses the ballot, durable before the node casts or
/// proposes anything (`Record::BootTracked`). A node forgets in a crash which rounds it used;
/// `life` keeps its next life's ballots apart from them, so no ballot ever carries two values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VoteBallot {
    pub round: u64,
    pub life: u64,
    pub node: NodeId,
}

impl VoteBallot {
    /// The ballot `owner` casts its vote at in its life `life`.
    pub fn owners(owner: NodeId, life: u64) -> VoteBallot {
        VoteBallot { round: 0, life, node: owner }
    }

    /// A recovery ballot of `node` in its life `life`; `round` 0 is taken for 1.
    pub fn recovery(round: u64, life: u64, node: NodeId) -> VoteBallot {
        VoteBallot { round: round.max(1), life, node }
    }

    /// Whether this is an owner's ballot (round 0), cast without a phase 1.
    pub fn is_owners(self) -> bool {
        self.round == 0
    }
}

impl fmt::Display for VoteBallot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.round, self.life, self.node.0)
    }
}
