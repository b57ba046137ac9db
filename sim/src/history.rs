//! What the simulated clients saw: each operation with its invocation and completion in
//! virtual time and its final outcome. Retries of a request belong to the same operation: it
//! may take effect at any moment between its first invocation and its final response.

use dkv_core::{ClientId, FailReason, OpFailure, Outcome, Value, WriteOp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Get { key: Vec<u8> },
    Txn { ops: Vec<WriteOp> },
}

/// The final outcome of an operation, as far as the checkers care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Result {
    /// A get returned this (None: not found).
    Read(Option<Value>),
    Committed,
    /// Committed as a no-op because op `op_index` found its key missing (nothing was applied):
    /// an observation of the state.
    FailedAt(u32),
    /// Definitely not applied, and observed nothing: the request was rejected without being run.
    /// (Conflicts, unavailability and overload answer "try again", which is no outcome.)
    NotApplied,
    /// No definite outcome (the run ended first): may or may not have been applied.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Op {
    pub client: ClientId,
    pub seq: u64,
    pub kind: OpKind,
    /// Global virtual nanoseconds.
    pub invoke: u64,
    pub response: Option<u64>,
    pub result: Result,
    pub attempts: u32,
    /// The client gave up waiting at this time; the request may still take effect later.
    pub abandoned_at: Option<u64>,
}

impl Op {
    pub fn response_or_max(&self) -> u64 {
        self.response.unwrap_or(u64::MAX)
    }

    pub fn describe(&self) -> String {
        let what = match &self.kind {
            OpKind::Get { key } => format!("get {}", show(key)),
            OpKind::Txn { ops } => {
                let parts: Vec<String> = ops
                    .iter()
                    .map(|op| match op {
                        WriteOp::Put { key, value } => format!("put {}={}", show(key), show(value)),
                        WriteOp::Update { key, value } => format!("update {}={}", show(key), show(value)),
                        WriteOp::Delete { key } => format!("delete {}", show(key)),
                    })
                    .collect();
                parts.join("; ")
            }
        };
        let response = match (self.response, self.abandoned_at) {
            (Some(r), _) => format!("{:.6}s", r as f64 / 1e9),
            (None, Some(a)) => format!("never (abandoned at {:.6}s)", a as f64 / 1e9),
            (None, None) => "never".to_string(),
        };
        format!(
            "[client {} #{}] {what} -> {:?} (invoked {:.6}s, completed {response}, {} attempts)",
            self.client.0,
            self.seq,
            self.result,
            self.invoke as f64 / 1e9,
            self.attempts
        )
    }
}

pub fn show(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|_| format!("{bytes:?}"))
}

/// Maps a definite reply to a checker result; `None` for "no outcome yet, retry".
pub fn result_of(outcome: &Outcome) -> Option<Result> {
    Some(match outcome {
        Outcome::Committed => Result::Committed,
        Outcome::Value(v) => Result::Read(Some(v.clone())),
        Outcome::NotFound => Result::Read(None),
        Outcome::Failed(OpFailure { op_index, reason: FailReason::KeyNotFound }) => Result::FailedAt(*op_index),
        Outcome::Rejected(_) => Result::NotApplied,
        Outcome::TryAgain(_) => return None,
    })
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
}
