//! The learner: which value each acceptor last said it accepted, to see one chosen.

use super::{Ballot, Value};
use crate::ids::{NodeId, NodeSet};
use std::collections::BTreeMap;

/// Each acceptor's highest acceptance heard of: at most one entry per member, so bounded.
/// Keeping only the highest loses nothing that matters: an acceptor moves to a higher ballot
/// only once a proposer got past the lower one, and every ballot above a chosen one carries
/// the chosen value, so the higher ballot's majority shows it too.
#[derive(Default)]
pub(super) struct Learner {
    highest: BTreeMap<NodeId, (Ballot, Value)>,
}

impl Learner {
    /// Records that `acceptor` accepted `value` at `ballot`, and returns the acceptors whose
    /// highest acceptance is exactly that one.
    pub(super) fn on_accepted(&mut self, acceptor: NodeId, ballot: Ballot, value: &Value) -> NodeSet {
        match self.highest.get(&acceptor) {
            Some((at, _)) if *at >= ballot => {}
            _ => {
                self.highest.insert(acceptor, (ballot, value.clone()));
            }
        }
        let agreeing = self.highest.iter().filter(|(_, (at, accepted))| *at == ballot && accepted == value);
        NodeSet::from_ids(agreeing.map(|(node, _)| *node)).unwrap_or_default()
    }
}
