//! The value one epoch's agreement chooses: the next configuration and the settlement of the
//! epoch it ends.

use super::{Configuration, Settlement};
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What one life of a node that asks to join is known by: drawn afresh at every start
/// (docs/protocol.md §7.6). A node catches up only through a configuration that added it under
/// the ticket of its present life, so an add asked for by an earlier life (which may have
/// joined, voted and promised, then lost its data) never counts as this life's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JoinTicket(pub u64);

impl fmt::Display for JoinTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ticket {:016x}", self.0)
    }
}

/// What the members of epoch `e` choose with Paxos: the configuration of epoch `e + 1` and the
/// settlement of epoch `e` (docs/protocol.md §7.1, §7.4). The two are one value so that a
/// member that installs `e + 1` settles `e` exactly as every other member does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    pub configuration: Configuration,
    pub settlement: Settlement,
    /// The nodes this configuration adds, each with the ticket it asked to join under.
    pub joining: BTreeMap<NodeId, JoinTicket>,
}

impl Value {
    /// Whether this value adds `node` in the life that holds `ticket`.
    pub fn admits(&self, node: NodeId, ticket: JoinTicket) -> bool {
        self.joining.get(&node) == Some(&ticket) && self.configuration.contains(node)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (commit, abort) = (self.settlement.commit_set().len(), self.settlement.abort_set().len());
        write!(f, "{} settling {commit} commits, {abort} aborts", self.configuration)
    }
}
