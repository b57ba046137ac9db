//! The value one epoch's agreement chooses: the next configuration and the settlement of the
//! epoch it ends.

use super::{Configuration, Settlement};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the members of epoch `e` choose with Paxos: the configuration of epoch `e + 1` and the
/// settlement of epoch `e` (docs/protocol.md §7.1, §7.4). The two are one value so that a
/// member that installs `e + 1` settles `e` exactly as every other member does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    pub configuration: Configuration,
    pub settlement: Settlement,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (commit, abort) = (self.settlement.commit_set().len(), self.settlement.abort_set().len());
        write!(f, "{} settling {commit} commits, {abort} aborts", self.configuration)
    }
}
