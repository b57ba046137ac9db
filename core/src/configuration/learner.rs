//! The learner: which configuration each acceptor last said it accepted, to see one chosen.

use super::{Ballot, Configuration};
use crate::ids::{NodeId, NodeSet};
use std::collections::BTreeMap;

/// Each acceptor's highest acceptance heard of: at most one entry per member, so bounded.
/// Keeping only the highest loses nothing that matters: an acceptor moves to a higher ballot
/// only once a proposer got past the lower one, and every ballot above a chosen one carries
/// the chosen configuration, so the higher ballot's majority shows it too.
#[derive(Default)]
pub(super) struct Learner {
    highest: BTreeMap<NodeId, (Ballot, Configuration)>,
}

impl Learner {
    /// Records that `acceptor` accepted `configuration` at `ballot`, and returns the acceptors
    /// whose highest acceptance is exactly that one.
    pub(super) fn on_accepted(&mut self, acceptor: NodeId, ballot: Ballot, configuration: Configuration) -> NodeSet {
        let entry = self.highest.entry(acceptor).or_insert((ballot, configuration));
        if ballot > entry.0 {
            *entry = (ballot, configuration);
        }
        let agreeing = self.highest.iter().filter(|(_, accepted)| **accepted == (ballot, configuration));
        NodeSet::from_ids(agreeing.map(|(node, _)| *node)).unwrap_or_default()
    }
}
