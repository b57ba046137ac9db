//! What a node keeps durable about one epoch's agreement.

use super::{Ballot, Epoch, Report, Value};
use serde::{Deserialize, Serialize};

/// A node's whole durable state in the agreement of one epoch: persisted whole on every change,
/// so the latest durable one is all that recovery needs. Bounded: the report by
/// [`Report::BYTES_MAX`], each value's settlement by [`super::Settlement::ids_max`] of the
/// epoch's members.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementState {
    /// The epoch whose members agree (the chosen configuration is of the next one).
    pub epoch: Epoch,
    /// Acceptor: the highest ballot promised; nothing below it is accepted any more.
    pub promised: Option<Ballot>,
    /// Acceptor: the value accepted at the highest ballot, with that ballot.
    pub accepted: Option<(Ballot, Value)>,
    /// Proposer: the last round this node used, never to be used again.
    pub round: u64,
    /// Learner: the value chosen for the next epoch, once known.
    pub chosen: Option<Value>,
    /// Acceptor: the report this member gave with its first promise. Once it is here, the
    /// member has frozen the epoch for good (docs/protocol.md §7.4): a node that restarts with
    /// it acts no more in the epoch, and every later promise carries this same report.
    pub report: Option<Report>,
}

impl AgreementState {
    /// Whether this member has frozen the epoch: it promised a ballot with its report.
    pub fn is_frozen(&self) -> bool {
        self.report.is_some()
    }
}
