//! What the simulated clients saw: each operation with its invocation and completion in
//! virtual time and its final outcome. Retries of a request belong to the same operation: it
//! may take effect at any moment between its first invocation and its final response.

use dkv_core::{ClientId, Condition, Key, OpFailure, Outcome, RequestId, ScanEntry, TxnOp, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Get {
        key: Vec<u8>,
    },
    Txn {
        ops: Vec<TxnOp>,
    },
    /// A page of the keys in `[start, end)`, at most `limit`.
    Scan {
        start: Key,
        end: Option<Key>,
        limit: u32,
        keys_only: bool,
    },
}

/// The final outcome of an operation, as far as the checkers care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Result {
    /// A get returned this value at this version (None and 0: not found).
    Read(Option<Value>, u64),
    /// Committed, with one result per op (none when the results are not known: a completion
    /// record written before ops had results).
    Committed(Vec<dkv_core::OpResult>),
    /// Committed as a no-op because this op could not run (a missing key, a false condition, a
    /// value that is no number...; nothing was applied): an observation of the state.
    Failed(OpFailure),
    /// A scan's page.
    Scanned { entries: Vec<ScanEntry>, next: Option<Key> },
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
                        TxnOp::Increment { key, by } => format!("incr {} by {by}", show(key)),
                        TxnOp::Append { key, value } => format!("append {}+={}", show(key), show(value)),
                        TxnOp::GetSet { key, value } => format!("getset {}={}", show(key), show(value)),
                        TxnOp::GetDelete { key } => format!("getdel {}", show(key)),
                        TxnOp::Read { key } => format!("read {}", show(key)),
                        TxnOp::Exists { key } => format!("exists {}", show(key)),
                        TxnOp::DeleteIfPresent { key } => format!("delete {} if present", show(key)),
                        TxnOp::Require { key, condition } => match condition {
                            Condition::Exists => format!("if {} exists", show(key)),
                            Condition::Absent => format!("if {} absent", show(key)),
                            Condition::ValueEquals(v) => format!("if {}=={}", show(key), show(v)),
                            Condition::VersionEquals(v) => format!("if {} at version {v}", show(key)),
                        },
                    })
                    .collect();
                parts.join("; ")
            }
            OpKind::Scan { start, end, limit, keys_only } => format!(
                "scan {}..{} limit {limit}{}",
                show(start),
                end.as_deref().map_or(String::new(), show),
                if *keys_only { " keys only" } else { "" }
            ),
        };
        let response = match (self.response, self.abandoned_at) {
            (Some(r), _) => format!("{:.6}s", r as f64 / 1e9),
            (None, Some(a)) => format!("never (abandoned at {:.6}s)", a as f64 / 1e9),
            (None, None) => "never".to_string(),
        };
        format!(
            "[client {} #{}] {what} -> {} (invoked {:.6}s, completed {response}, {} attempts)",
            self.client.0,
            self.seq,
            self.result.describe(),
            self.invoke as f64 / 1e9,
            self.attempts
        )
    }
}

impl Result {
    /// The result as a violation report shows it: keys and values as text.
    pub fn describe(&self) -> String {
        let value = |v: &Option<Value>| v.as_deref().map_or("<absent>".to_string(), show);
        match self {
            Result::Read(v, version) => format!("Read({} v{version})", value(v)),
            Result::Committed(results) => {
                let results: Vec<String> = results
                    .iter()
                    .map(|r| match r {
                        dkv_core::OpResult::Done { version } => format!("v{version}"),
                        dkv_core::OpResult::Value { value: v, version } => format!("{} v{version}", value(v)),
                        dkv_core::OpResult::Integer { value, version } => format!("{value} v{version}"),
                    })
                    .collect();
                format!("Committed[{}]", results.join(", "))
            }
            Result::Failed(failure) => format!("Failed(op {} {:?})", failure.op_index, failure.reason),
            Result::Scanned { entries, next } => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|e| match &e.value {
                        Some(v) => format!("{}={} v{}", show(&e.key), show(v), e.version),
                        None => format!("{} v{}", show(&e.key), e.version),
                    })
                    .collect();
                let next = next.as_deref().map_or(String::new(), |n| format!(", next {}", show(n).escape_debug()));
                format!("Scanned[{}{next}]", entries.join(", "))
            }
            other => format!("{other:?}"),
        }
    }
}

pub fn show(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|_| format!("{bytes:?}"))
}

/// Maps a definite reply to a checker result; `None` for "no outcome yet, retry".
pub fn result_of(outcome: &Outcome) -> Option<Result> {
    Some(match outcome {
        Outcome::Committed(results) => Result::Committed(results.clone()),
        Outcome::Value { value, version } => Result::Read(Some(value.clone()), *version),
        Outcome::NotFound => Result::Read(None, 0),
        Outcome::Failed(failure) => Result::Failed(*failure),
        Outcome::Scanned { entries, next } => Result::Scanned { entries: entries.clone(), next: next.clone() },
        Outcome::Rejected(_) => Result::NotApplied,
        Outcome::TryAgain(_) | Outcome::NotServing(_) => return None,
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
            op(4, put(), Result::Committed(vec![])),
        ];
        let decided = |r: RequestId| r.seq == 1 || r.seq == 4;
        let results = |h: &History| h.ops.iter().map(|o| o.result.clone()).collect::<Vec<_>>();

        let mut unsettled = History { ops: ops.clone() };
        assert_eq!(unsettled.settle_unknown(decided, false), (1, 0));
        assert_eq!(
            results(&unsettled),
            [Result::Happened, Result::Unknown, Result::Unknown, Result::Committed(vec![])]
        );

        let mut settled = History { ops };
        assert_eq!(settled.settle_unknown(decided, true), (1, 1));
        assert_eq!(
            results(&settled),
            [Result::Happened, Result::NotApplied, Result::Unknown, Result::Committed(vec![])]
        );
    }
}
