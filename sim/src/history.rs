//! What the simulated clients saw: each operation with its invocation and completion in
//! virtual time and its final outcome. Retries of a request belong to the same operation: it
//! may take effect at any moment between its first invocation and its final response.

use dkv_core::{ClientId, FailReason, OpFailure, Outcome, RequestId, TxnOp, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Get { key: Vec<u8> },
    Txn { ops: Vec<TxnOp> },
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
    /// No reply reached the client, but the nodes' durable records show the request's
    /// transaction was decided: it took effect exactly once (applied, or failed on a missing key
    /// and applied nothing), at some moment after its invocation. Settled from the nodes' disks
    /// after the run ([`History::settle_unknown`]); stricter than `Unknown`, which may also
    /// never take effect.
    Happened,
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
                        TxnOp::Put { key, value } => format!("put {}={}", show(key), show(value)),
                        TxnOp::Update { key, value } => format!("update {}={}", show(key), show(value)),
                        TxnOp::Delete { key } => format!("delete {}", show(key)),
                        other => format!("{other:?}"),
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
        Outcome::Committed(_) => Result::Committed,
        Outcome::Value { value, .. } => Result::Read(Some(value.clone())),
        Outcome::NotFound => Result::Read(None),
        Outcome::Failed(OpFailure { op_index, reason: FailReason::KeyNotFound }) => Result::FailedAt(*op_index),
        Outcome::Failed(_) | Outcome::Scanned { .. } => unimplemented!("the workload draws no such op yet"),
        Outcome::Rejected(_) => Result::NotApplied,
        Outcome::TryAgain(_) => return None,
    })
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    /// Narrows the unknown outcomes of writes with what the nodes' durable records say, once
    /// the run is over: a request whose transaction was decided at any node `Happened`; when
    /// `settled` (every node quiescent, so every transaction decided and nothing left to
    /// decide), a request no node decided never took effect: `NotApplied`. Reads with no
    /// outcome change nothing and are left as they are. Each narrowing only removes
    /// possibilities an `Unknown` allowed, so the checkers become stricter, never laxer; and it
    /// keeps the linearizability search from trying both fates of every unknown write.
    /// Returns how many became `Happened` and how many `NotApplied`.
    pub fn settle_unknown(&mut self, decided: impl Fn(RequestId) -> bool, settled: bool) -> (usize, usize) {
        let (mut happened, mut not_applied) = (0, 0);
        for op in &mut self.ops {
            if op.result != Result::Unknown || !matches!(op.kind, OpKind::Txn { .. }) {
                continue;
            }
            if decided(RequestId { client: op.client, seq: op.seq }) {
                op.result = Result::Happened;
                happened += 1;
            } else if settled {
                op.result = Result::NotApplied;
                not_applied += 1;
            }
        }
        (happened, not_applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(seq: u64, kind: OpKind, result: Result) -> Op {
        Op { client: ClientId(7), seq, kind, invoke: 0, response: None, result, attempts: 1, abandoned_at: None }
    }

    fn put() -> OpKind {
        OpKind::Txn { ops: vec![TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() }] }
    }

    /// A decided request happened; an undecided one never did, but only once nothing is left to
    /// decide; reads and definite outcomes are left alone.
    #[test]
    fn unknown_writes_are_settled_by_what_the_nodes_decided() {
        let ops = vec![
            op(1, put(), Result::Unknown),
            op(2, put(), Result::Unknown),
            op(3, OpKind::Get { key: b"k".to_vec() }, Result::Unknown),
            op(4, put(), Result::Committed),
        ];
        let decided = |r: RequestId| r.seq == 1 || r.seq == 4;
        let results = |h: &History| h.ops.iter().map(|o| o.result.clone()).collect::<Vec<_>>();

        let mut unsettled = History { ops: ops.clone() };
        assert_eq!(unsettled.settle_unknown(decided, false), (1, 0));
        assert_eq!(results(&unsettled), [Result::Happened, Result::Unknown, Result::Unknown, Result::Committed]);

        let mut settled = History { ops };
        assert_eq!(settled.settle_unknown(decided, true), (1, 1));
        assert_eq!(results(&settled), [Result::Happened, Result::NotApplied, Result::Unknown, Result::Committed]);
    }
}
