//! What clients ask for and what they are told: requests, operations, replies and outcomes.

use crate::ids::{NodeId, NodeSet, RequestId};
use crate::limits::LimitError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Keys and values are arbitrary bytes.
pub type Key = Vec<u8>;
pub type Value = Vec<u8>;

/// The seed project's operation codes, kept by the programs' `-o/--oprtn` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpCode {
    Update = 0,
    Get = 1,
    Delete = 2,
    Put = 3,
}

impl OpCode {
    pub fn from_code(code: u8) -> Option<OpCode> {
        match code {
            0 => Some(OpCode::Update),
            1 => Some(OpCode::Get),
            2 => Some(OpCode::Delete),
            3 => Some(OpCode::Put),
            _ => None,
        }
    }
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

    pub fn code(&self) -> OpCode {
        match self {
            WriteOp::Put { .. } => OpCode::Put,
            WriteOp::Update { .. } => OpCode::Update,
            WriteOp::Delete { .. } => OpCode::Delete,
        }
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

/// Everything a client can be told. `Committed`, `Value`, `NotFound`, `Aborted` and `Rejected`
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
    #[error("aborted, nothing was applied: {0}")]
    Aborted(AbortReason),
    #[error("rejected: {0}")]
    Rejected(RejectReason),
    #[error("no outcome yet: {0}; retrying with the same request id is safe")]
    TryAgain(TryAgainReason),
}

/// Why a transaction was aborted. Nothing of it was applied anywhere, and this is the
/// request's final outcome: it was decided by two-phase commit and recorded with the request,
/// so every retry of the request gets this same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum AbortReason {
    #[error("op {op_index} needs its key to exist, and it does not")]
    KeyNotFound { op_index: u32 },
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
        "node {node} is configured differently from the node that coordinated (another set of cluster members, or a -u node among -t nodes); start every node with the same ids in --peers and the same mode"
    )]
    ConfigMismatch { node: NodeId },
}
