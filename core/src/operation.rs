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

/// One op of a transaction: a write, a read-modify-write, a read or a condition. Every op
/// locks its key, and every op is judged when the transaction commits, under those locks,
/// identically at every participant ([`crate::store::Store::run`]).
///
/// Stored in the log: new variants go at the end, so logs of earlier builds still read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
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
    /// Adds `by` to the key's value, a decimal i64 in ASCII (as Redis INCR); an absent key
    /// counts as 0. Result: the new value.
    Increment {
        #[serde(with = "serde_bytes")]
        key: Key,
        by: i64,
    },
    /// Appends `value` to the key's value (an absent key counts as empty). Result: the new
    /// length.
    Append {
        #[serde(with = "serde_bytes")]
        key: Key,
        #[serde(with = "serde_bytes")]
        value: Value,
    },
    /// Puts `value`. Result: the value before.
    GetSet {
        #[serde(with = "serde_bytes")]
        key: Key,
        #[serde(with = "serde_bytes")]
        value: Value,
    },
    /// Removes the key if present (absent is not a failure). Result: the value before.
    GetDelete {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
    /// Reads the key under the transaction's lock. Result: the value.
    Read {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
    /// The transaction runs only if `condition` holds for the key at this point of it.
    Require {
        #[serde(with = "serde_bytes")]
        key: Key,
        condition: Condition,
    },
    /// Whether the key exists, without its value (never fails, unlike a `Require`). Result:
    /// `Integer` 1 or 0, and the key's version.
    Exists {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
    /// Removes the key if present (absent is not a failure, unlike a `Delete`). Result:
    /// `Integer` 1 if it removed the key, else 0 (and version 0), but not the value it held.
    DeleteIfPresent {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
}

impl TxnOp {
    pub fn key(&self) -> &[u8] {
        match self {
            TxnOp::Put { key, .. }
            | TxnOp::Update { key, .. }
            | TxnOp::Delete { key }
            | TxnOp::Increment { key, .. }
            | TxnOp::Append { key, .. }
            | TxnOp::GetSet { key, .. }
            | TxnOp::GetDelete { key }
            | TxnOp::Read { key }
            | TxnOp::Require { key, .. }
            | TxnOp::Exists { key }
            | TxnOp::DeleteIfPresent { key } => key,
        }
    }

    /// The bytes the op carries besides its key (a value, or the value a condition compares
    /// with): what the value limit applies to.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            TxnOp::Put { value, .. } | TxnOp::Update { value, .. } | TxnOp::Append { value, .. } => Some(value),
            TxnOp::GetSet { value, .. } => Some(value),
            TxnOp::Require { condition: Condition::ValueEquals(value), .. } => Some(value),
            TxnOp::Delete { .. }
            | TxnOp::Increment { .. }
            | TxnOp::GetDelete { .. }
            | TxnOp::Read { .. }
            | TxnOp::Require { .. }
            | TxnOp::Exists { .. }
            | TxnOp::DeleteIfPresent { .. } => None,
        }
    }

    /// Whether the op may change its key (reads and conditions do not).
    pub fn writes(&self) -> bool {
        !matches!(self, TxnOp::Read { .. } | TxnOp::Require { .. } | TxnOp::Exists { .. })
    }
}

/// What a [`TxnOp::Require`] asks of its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    Exists,
    Absent,
    ValueEquals(#[serde(with = "serde_bytes")] Value),
    /// The key's version ([`OpResult`]) is this; 0 means absent.
    VersionEquals(u64),
}

/// What one op of a committed transaction gives back, in the order of the ops. A version is the
/// number of writes to the key since it was created (1 on creation); 0 means absent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OpResult {
    /// Put, update, delete, require: the key's version after the op.
    Done { version: u64 },
    /// Read: the value and its version. Get-and-set and get-and-delete: the value before the
    /// op, and the version after it.
    Value {
        #[serde(with = "serde_bytes")]
        value: Option<Value>,
        version: u64,
    },
    /// Increment: the new value. Append: the new length.
    Integer { value: i64, version: u64 },
}

impl OpResult {
    /// The key's version after the op.
    pub fn version(&self) -> u64 {
        match self {
            OpResult::Done { version } | OpResult::Value { version, .. } | OpResult::Integer { version, .. } => {
                *version
            }
        }
    }

    /// The most bytes this result takes in a reply: what the results limit counts.
    pub fn size(&self) -> u64 {
        match self {
            OpResult::Value { value: Some(value), .. } => RESULT_OVERHEAD_BYTES + value.len() as u64,
            _ => RESULT_OVERHEAD_BYTES,
        }
    }
}

/// The most bytes a result or a scan entry takes in a reply beyond its key and value (tags,
/// lengths and varints). Charging it keeps a reply within [`crate::Limits::frame_bytes_max`].
pub const RESULT_OVERHEAD_BYTES: u64 = 24;

/// One key of a scan's page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanEntry {
    #[serde(with = "serde_bytes")]
    pub key: Key,
    /// None when the scan asked for keys only.
    #[serde(with = "serde_bytes")]
    pub value: Option<Value>,
    pub version: u64,
}

impl ScanEntry {
    /// The most bytes this entry takes in a reply: what a page's byte limit counts.
    pub fn size(&self) -> u64 {
        RESULT_OVERHEAD_BYTES + self.key.len() as u64 + self.value.as_ref().map_or(0, |v| v.len() as u64)
    }
}

/// The first key after every key that starts with `prefix`: a prefix scan is the range
/// `[prefix, prefix_end(prefix))`. None when there is no such key (the prefix is empty or all
/// 0xff bytes): the range runs to the end.
pub fn prefix_end(prefix: &[u8]) -> Option<Key> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// What a request asks for. A single write is a one-op transaction: there is one commit path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Get {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
    /// An ordered batch of ops, applied all-or-nothing.
    Txn { ops: Vec<TxnOp> },
    /// The keys in `[start, end)` (`end` None: to the last key), in key order, at most
    /// `limit` of them. Served from memory like a get, linearizable per page (see
    /// `node/reads.rs`); `Outcome::Scanned::next` continues it.
    Scan {
        #[serde(with = "serde_bytes")]
        start: Key,
        #[serde(with = "serde_bytes")]
        end: Option<Key>,
        limit: u32,
        keys_only: bool,
    },
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

/// Everything a client can be told. `Committed`, `Value`, `NotFound`, `Failed`, `Rejected` and
/// `Scanned` are definite. `TryAgain` and `NotServing` are not outcomes: the request may or may
/// not take effect, and a retry with the same request id is always safe (it is never applied
/// twice); after `NotServing`, retry at another node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum Outcome {
    /// Every op applied; one result per op, in order.
    #[error("committed")]
    Committed(Vec<OpResult>),
    /// A get found its key.
    #[error("found")]
    Value {
        #[serde(with = "serde_bytes")]
        value: Value,
        version: u64,
    },
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
    /// A page of a scan; `next` is where the next page starts (None: this is the last).
    #[error("scanned")]
    Scanned { entries: Vec<ScanEntry>, next: Option<Key> },
    /// This node does not serve the request now; another node may. Nothing was applied by this
    /// attempt. (Appended last: the wire numbers variants in order.)
    #[error("not serving: {0}; nothing was applied by this attempt, ask another node")]
    NotServing(NotServingReason),
}

impl Outcome {
    /// The value a get found; None for any other outcome.
    pub fn found(&self) -> Option<&Value> {
        match self {
            Outcome::Value { value, .. } => Some(value),
            _ => None,
        }
    }
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

/// Why an op could not run. Stored in completion records: new variants go at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Error)]
pub enum FailReason {
    #[error("needs its key to exist, and it does not")]
    KeyNotFound,
    #[error("is a condition that does not hold")]
    ConditionFailed,
    #[error("increments a value that is not a decimal 64-bit integer")]
    NotAnInteger,
    #[error("increments past the range of a 64-bit integer")]
    IntegerOverflow,
    #[error("makes a value larger than the value size limit")]
    ValueTooLarge,
    #[error("reads more than a reply may carry (the transaction size limit); read less per transaction")]
    ResultsTooLarge,
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

/// Why a node does not serve a request. New reasons go at the end (the wire numbers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum NotServingReason {
    /// A read, and this node holds no read lease: it has not heard from a majority of the
    /// members recently enough to be sure no write committed without it.
    #[error("this node holds no read lease (it is cut off from a majority of the members, or just started)")]
    NoLease,
    /// This node is not a member of the current configuration.
    #[error("this node is not a member of the current configuration")]
    NotAMember,
    /// This node is catching up with the members and holds no current state yet.
    #[error(
        "this node is catching up with the members, or waits for them to add it back (its log says which, and why)"
    )]
    CatchingUp,
}

/// Why a request has no outcome yet. An attempt of it may still complete: a retry sent
/// elsewhere, or an attempt that aborted at a coordinator that then left the configuration and
/// that a settlement commits (docs/protocol.md §7.4, "Inferred commits"); retrying with the
/// same request id is always safe and eventually returns the one true outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum TryAgainReason {
    #[error("the node is starting up, or waiting out the read lease of a member just removed (about half a second)")]
    Starting,
    #[error("a node is overloaded")]
    Busy,
    #[error("the same request is in progress at another node")]
    InProgress,
    #[error("the key is locked by a transaction whose outcome this node does not know yet")]
    Locked,
    #[error("other transactions kept holding the same keys")]
    Conflict,
    #[error(
        "nodes {nodes} did not vote in time: down, cut off, or standing outside while they catch up (their logs say which). Writes need every node; with --availability, the others remove such a node within a few seconds and go on without it"
    )]
    Unavailable { nodes: NodeSet },
    #[error(
        "node {node} is configured differently from the node that coordinated (another set of cluster members, or other size limits); every node must be started with the same members and the same limits"
    )]
    ConfigMismatch { node: NodeId },
}

impl TryAgainReason {
    /// Whether a write answered so may have had an attempt made at it that did not commit (a
    /// conflict, a vote that did not come, a participant too busy to vote YES): a
    /// configuration change may still commit that attempt (docs/protocol.md §7.4, "Inferred
    /// commits"), so the write may have been applied. `Busy` is counted though a node also
    /// says it before any attempt (review finding: a NO(Busy) from one participant, after the
    /// others voted YES, is answered `Busy`).
    pub fn follows_an_attempt(&self) -> bool {
        matches!(
            self,
            TryAgainReason::Conflict
                | TryAgainReason::InProgress
                | TryAgainReason::Busy
                | TryAgainReason::Unavailable { .. }
        )
    }
}
