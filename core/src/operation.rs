//! What clients ask for and what they are told: requests, operations, replies and outcomes.

use crate::ids::{NodeId, NodeSet, RequestId};
use crate::limits::LimitError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Keys and values are arbitrary bytes.
pub type Key = Vec<u8>;
pub type Value = Vec<u8>;

/// The original project's operation codes, kept by the programs' `-o/--oprtn` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpCode {
    Update = 0,
    Get = 1,
    Delete = 2,
    Put = 3,
}

/// One write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Insert or overwrite; always succeeds.
    Put {
        #[serde(with = "serde_bytes")]
        key: Key,
        #[serde(with = "serde_bytes")]
        value: Value,
    },
    /// Overwrite; the key must exist.
    Update {
        #[serde(with = "serde_bytes")]
        key: Key,
        #[serde(with = "serde_bytes")]
        value: Value,
    },
    /// Remove; the key must exist.
    Delete {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
}

impl WriteOp {
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key } => key,
        }
    }

    pub fn value(&self) -> Option<&[u8]> {
        match self {
            WriteOp::Put { value, .. } | WriteOp::Update { value, .. } => Some(value),
            WriteOp::Delete { .. } => None,
        }
    }

    /// Whether this op needs its key to exist when it runs.
    pub fn requires_key(&self) -> bool {
        !matches!(self, WriteOp::Put { .. })
    }
}

/// What a request asks for. A single write is a one-op transaction: there is one commit path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Get {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
    /// An ordered batch of writes, applied all-or-nothing.
    Txn { ops: Vec<WriteOp> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub operation: Operation,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub id: RequestId,
    pub outcome: Outcome,
}

/// Everything a client can be told. `Committed`, `Value`, `NotFound`, `Failed` and `Rejected`
/// are definite. `TryAgain` is not an outcome: the request may or may not take effect, and a
/// retry with the same request id is always safe (it is never applied twice).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum Outcome {
    #[error("committed")]
    Committed,
    #[error("found")]
    Value(#[serde(with = "serde_bytes")] Value),
    #[error("not found")]
    NotFound,
    /// Two-phase commit committed the transaction as a no-op: one of its ops could not run
    /// (decided under the locks, identically at every participant), so none was applied. This
    /// is the request's final outcome, recorded with it on every node.
    #[error("failed, nothing was applied: {0}")]
    Failed(OpFailure),
    #[error("rejected: {0}")]
    Rejected(RejectReason),
    #[error("no outcome yet: {0}; retrying with the same request id is safe")]
    TryAgain(TryAgainReason),
}

/// The op of a transaction that could not run, and why. A transaction with a failed op
/// applies nothing; it is not an abort (the 2PC decision was commit, of a no-op), so every
/// retry of the request gets this same answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Error)]
#[error("op {op_index} {reason}")]
pub struct OpFailure {
    /// The index of the first op that could not run.
    pub op_index: u32,
    pub reason: FailReason,
}

/// Why an op could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Error)]
pub enum FailReason {
    #[error("needs its key to exist, and it does not")]
    KeyNotFound,
}

/// Why a request was refused without being run. Retrying it unchanged will not help.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum RejectReason {
    #[error("{0}; nothing was applied")]
    Limit(#[from] LimitError),
    #[error("a transaction needs at least one op; nothing was applied")]
    EmptyTransaction,
    #[error(
        "request {seq} is older than request {completed_seq} of the same client, which already completed; this node no longer knows how request {seq} ended (it may have been applied once), and a new request needs a new sequence number"
    )]
    Stale { seq: u64, completed_seq: u64 },
    /// The node requires clients to authenticate, and this one did not, or its user may not do
    /// this. Decided by the node the client talks to, before anything is run.
    #[error("permission denied: {0}; nothing was applied")]
    PermissionDenied(String),
}

/// Why a request has no outcome yet. Nothing was applied by the attempt that answered, but
/// another attempt of the same request (a retry sent elsewhere) may still complete; retrying
/// with the same request id is always safe and eventually returns the one true outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum TryAgainReason {
    #[error("the node is starting up")]
    Starting,
    #[error("a node is overloaded")]
    Busy,
    #[error("the same request is in progress at another node")]
    InProgress,
    #[error("the key is locked by a transaction whose outcome this node does not know yet")]
    Locked,
    #[error("other transactions kept holding the same keys")]
    Conflict,
    #[error("nodes {nodes} did not answer in time; writes need every node, so check they are running and reachable")]
    Unavailable { nodes: NodeSet },
    #[error(
        "node {node} is configured differently from the node that coordinated (another set of cluster members, or other size limits); every node must be started with the same members and the same limits"
    )]
    ConfigMismatch { node: NodeId },
}
