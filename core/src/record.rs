//! Records a node asks its driver to persist (the write-ahead log), and what recovery rebuilds
//! from them.
//!
//! Presumed abort: only commit decisions are logged. A coordinator with no record of a
//! transaction answers "abort", so an undecided transaction needs no record at the coordinator.

use crate::completions::CompletionRecord;
use crate::ids::{NodeSet, RequestId, TxnId};
use crate::operation::{Key, Value, WriteOp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The node started as this incarnation. Durable before it coordinates anything, so
    /// transaction ids are never reused across restarts.
    Boot { incarnation: u64 },
    /// Participant: the transaction is prepared here (keys locked, vote YES may follow).
    Prepared(TxnRecord),
    /// Participant: the prepared transaction committed and is applied.
    Committed { txn: TxnId },
    /// Participant: the prepared transaction aborted and its locks are released.
    Aborted { txn: TxnId },
    /// Coordinator: the decision to commit. Applying it here is part of the decision.
    Decided(TxnRecord),
    /// Coordinator: every participant acknowledged the commit; nothing more to send.
    Forgotten { txn: TxnId },
    /// The whole state at this point of the log; earlier records are no longer needed.
    Snapshot(Box<Snapshot>),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Boot { .. } => "boot",
            Record::Prepared(_) => "prepared",
            Record::Committed { .. } => "committed",
            Record::Aborted { .. } => "aborted",
            Record::Decided(_) => "decided",
            Record::Forgotten { .. } => "forgotten",
            Record::Snapshot(_) => "snapshot",
        }
    }
}

/// A transaction with everything needed to apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub txn: TxnId,
    pub request: RequestId,
    pub ops: Arc<[WriteOp]>,
    pub participants: NodeSet,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub key: Key,
    #[serde(with = "serde_bytes")]
    pub value: Value,
}

/// Everything recovery would rebuild from the records before it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub incarnation: u64,
    /// The store, in key order.
    pub entries: Vec<Entry>,
    /// Completion records, oldest first.
    pub completions: Vec<CompletionRecord>,
    /// Transactions prepared here whose outcome is not yet known here.
    pub prepared: Vec<TxnRecord>,
    /// Commit decisions of this coordinator that some participant has not acknowledged.
    pub decisions: Vec<DecisionState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionState {
    pub decision: TxnRecord,
    /// Whether `entries` already include its writes (a decision whose record was not yet
    /// durable when the snapshot was taken is not yet applied to the store).
    pub applied: bool,
}
