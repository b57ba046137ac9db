//! Ballots: the numbers that order the attempts of proposers.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One attempt of one proposer: its `round`, then its node id to break ties, so no two
/// proposers ever use the same ballot. Ordered by round first (the derived order follows the
/// fields), and a proposer never reuses a round: it is durable before the ballot is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round, self.node.0)
    }
}
