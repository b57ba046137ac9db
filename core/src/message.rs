//! Messages between nodes. Every word here is a protocol word with exactly one meaning:
//! the coordinator sends PREPARE, participants answer with a vote, the coordinator's decision
//! is COMMIT or ABORT, participants acknowledge a commit, and a participant unsure of the
//! outcome sends a query (to the coordinator and, for cooperative termination, to the other
//! participants).

use crate::completions::Completed;
use crate::ids::{NodeSet, RequestId, TxnId};
use crate::operation::TxnOp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Coordinator -> participant: check these ops, lock their keys, persist, and vote.
    Prepare { txn: TxnId, request: RequestId, ops: Arc<[TxnOp]>, participants: NodeSet },
    /// Participant -> coordinator.
    Vote { txn: TxnId, vote: Vote },
    /// The outcome: from the coordinator, or from any node that knows it, answering a query.
    Decision { txn: TxnId, decision: Decision },
    /// Participant -> coordinator: the commit is applied and durable here.
    Ack { txn: TxnId },
    /// Participant -> coordinator and other participants: what was decided?
    Query { txn: TxnId },
}

impl Message {
    pub fn txn(&self) -> TxnId {
        match self {
            Message::Prepare { txn, .. }
            | Message::Vote { txn, .. }
            | Message::Decision { txn, .. }
            | Message::Ack { txn }
            | Message::Query { txn } => *txn,
        }
    }

    /// A short name for traces and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Vote { vote: Vote::Yes, .. } => "vote-yes",
            Message::Vote { vote: Vote::No(_), .. } => "vote-no",
            Message::Decision { decision: Decision::Commit, .. } => "commit",
            Message::Decision { decision: Decision::Abort, .. } => "abort",
            Message::Ack { .. } => "ack",
            Message::Query { .. } => "query",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vote {
    /// The keys are locked and the PREPARE record is durable. (Whether the ops find their keys
    /// is decided under those locks and is the same at every participant: it becomes the
    /// outcome the commit records.)
    Yes,
    No(NoReason),
}

/// Why a participant voted NO. Nothing is locked or persisted for a NO vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoReason {
    /// A key is locked by another transaction.
    Conflict,
    /// The same client request is prepared here under another transaction.
    InProgress,
    /// The request already completed (this is a retry of it), with this outcome.
    AlreadyCompleted(Completed),
    /// A later request of the same client already committed.
    Stale { completed_seq: u64 },
    /// The participant holds as many prepared transactions as it may.
    Busy,
    /// The participant's configuration differs from the coordinator's: another set of members,
    /// or smaller limits (a `-u` node among `-t` nodes). Retrying will not help.
    ConfigMismatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Decision {
    Commit,
    Abort,
}
