//! What a node keeps durable about one epoch's agreement.

use super::{Ballot, Configuration, Epoch};
use serde::{Deserialize, Serialize};

/// A node's whole durable state in the agreement of one epoch: persisted whole on every change,
/// so the latest durable one is all that recovery needs. Small and bounded (no lists).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementState {
    /// The epoch whose members agree (the chosen configuration is of the next one).
    pub epoch: Epoch,
    /// Acceptor: the highest ballot promised; nothing below it is accepted any more.
    pub promised: Option<Ballot>,
    /// Acceptor: the configuration accepted at the highest ballot, with that ballot.
    pub accepted: Option<(Ballot, Configuration)>,
    /// Proposer: the last round this node used, never to be used again.
    pub round: u64,
    /// Learner: the configuration chosen for the next epoch, once known.
    pub chosen: Option<Configuration>,
}
