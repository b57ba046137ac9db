//! The richer operations over a cluster: results and versions come back with the commit,
//! every replica judges conditions and counters alike, a retry gets the very same results, and
//! scans are linearizable pages that wait for prepared writes, inserts included, in their range.

mod harness;
use dkv_core::{
    ClientId, Condition, FailReason, LimitError, Message, OpFailure, OpResult, Operation, Outcome, RejectReason,
    Request, RequestId, ScanEntry, TryAgainReason, TxnOp, prefix_end,
};
use harness::*;
use std::time::Duration;

fn incr(key: &str, by: i64) -> TxnOp {
    TxnOp::Increment { key: key.into(), by }
}
fn require(key: &str, condition: Condition) -> TxnOp {
    TxnOp::Require { key: key.into(), condition }
}
fn read(key: &str) -> TxnOp {
    TxnOp::Read { key: key.into() }
}
fn scan(client: u64, seq: u64, start: &str, end: Option<&str>, limit: u32, keys_only: bool) -> Request {
    Request {
        id: RequestId { client: ClientId(client), seq },
        operation: Operation::Scan { start: start.into(), end: end.map(Into::into), limit, keys_only },
    }
}
fn entry(key: &str, value: Option<&str>, version: u64) -> ScanEntry {
    ScanEntry { key: key.into(), value: value.map(Into::into), version }
}

/// Runs `request` at node `i` until it is answered, and returns the outcome.
fn run(c: &mut Cluster, i: usize, request: Request) -> Outcome {
    let r = c.request(i, request);
    assert!(c.run_until(100_000, |c| c.reply(r).is_some()), "no reply");
    c.reply(r).unwrap().outcome.clone()
}

/// A transaction's results come back with its commit: versions, counters, reads under the
/// locks; and a get returns the key's version.
#[test]
fn results_and_versions_come_back() {
    let mut c = Cluster::new(3);
    let outcome = run(&mut c, 0, txn(1, 1, vec![put("a", "x"), incr("n", 5), read("a"), read("none")]));
    let expected = vec![
        OpResult::Done { version: 1 },
        OpResult::Integer { value: 5, version: 1 },
        OpResult::Value { value: Some(b"x".to_vec()), version: 1 },
        OpResult::Value { value: None, version: 0 },
    ];
    assert_eq!(outcome, Outcome::Committed(expected));
    let outcome =
        run(&mut c, 1, txn(1, 2, vec![incr("n", -2), TxnOp::GetSet { key: b"a".to_vec(), value: b"y".to_vec() }]));
    let expected =
        vec![OpResult::Integer { value: 3, version: 2 }, OpResult::Value { value: Some(b"x".to_vec()), version: 2 }];
    assert_eq!(outcome, Outcome::Committed(expected));
    assert!(c.settle());
    for i in 0..3 {
        assert_eq!(run(&mut c, i, get(2, i as u64, "n")), Outcome::Value { value: b"3".to_vec(), version: 2 });
    }
}

/// A false condition fails the whole transaction on every replica, naming itself; the failure
/// is the request's recorded outcome, which a retry at another node gets too.
#[test]
fn a_false_condition_fails_everywhere_and_a_retry_is_told_the_same() {
    let mut c = Cluster::new(3);
    assert!(matches!(run(&mut c, 0, txn(1, 1, vec![put("lock", "me")])), Outcome::Committed(_)));
    let attempt = txn(2, 1, vec![put("other", "1"), require("lock", Condition::Absent), put("lock", "you")]);
    let failed = Outcome::Failed(OpFailure { op_index: 1, reason: FailReason::ConditionFailed });
    assert_eq!(run(&mut c, 1, attempt.clone()), failed);
    assert!(c.settle());
    for i in 0..3 {
        assert_eq!(c.value(i, "lock"), Some(b"me".to_vec()));
        assert_eq!(c.value(i, "other"), None);
    }
    // The condition would hold now; the retry is still the same request, with the same outcome.
    assert!(matches!(run(&mut c, 0, txn(1, 2, vec![delete("lock")])), Outcome::Committed(_)));
    assert_eq!(run(&mut c, 2, attempt), failed);
    assert_eq!(c.value(0, "lock"), None);
}

/// A retry of a completed increment gets the very results it committed with, though the
/// counter moved on since: it is answered from the completion record, never run again.
#[test]
fn a_retry_gets_the_same_results() {
    let mut c = Cluster::new(3);
    let first = txn(1, 1, vec![incr("n", 1)]);
    let committed = Outcome::Committed(vec![OpResult::Integer { value: 1, version: 1 }]);
    assert_eq!(run(&mut c, 0, first.clone()), committed);
    assert_eq!(
        run(&mut c, 1, txn(2, 1, vec![incr("n", 1)])),
        Outcome::Committed(vec![OpResult::Integer { value: 2, version: 2 }])
    );
    assert!(c.settle());
    for i in 0..3 {
        assert_eq!(run(&mut c, i, first.clone()), committed, "retry at node {i}");
    }
    assert_eq!(c.value(0, "n"), Some(b"2".to_vec()));
    // And after a restart, from the log.
    c.crash(2);
    c.restart(2);
    assert!(c.settle());
    assert_eq!(run(&mut c, 2, first), committed);
}

/// Counters refuse what is not a decimal i64 and overflow, on every replica alike.
#[test]
fn increments_of_non_numbers_and_past_the_range_fail() {
    let mut c = Cluster::new(2);
    run(&mut c, 0, txn(1, 1, vec![put("word", "abc"), put("max", &i64::MAX.to_string())]));
    let not_a_number = Outcome::Failed(OpFailure { op_index: 0, reason: FailReason::NotAnInteger });
    assert_eq!(run(&mut c, 1, txn(1, 2, vec![incr("word", 1)])), not_a_number);
    let overflow = Outcome::Failed(OpFailure { op_index: 1, reason: FailReason::IntegerOverflow });
    assert_eq!(run(&mut c, 0, txn(1, 3, vec![incr("n", 1), incr("max", 1)])), overflow);
    assert!(c.settle());
    for i in 0..2 {
        assert_eq!(c.value(i, "n"), None, "nothing of the failed transaction applied");
    }
}

/// Pages: at most `limit` keys, `next` just after the last, None at the end; keys only leaves
/// the values out; a prefix scan is the range up to the prefix's end.
#[test]
fn scans_page_through_a_range() {
    let mut c = Cluster::new(2);
    let ops = ["a/1", "a/2", "a/3", "b/1"].iter().map(|k| put(k, k)).collect();
    run(&mut c, 0, txn(1, 1, ops));
    assert!(c.settle());
    let page = run(&mut c, 1, scan(2, 1, "a", None, 2, false));
    let next = Some(b"a/2\0".to_vec());
    assert_eq!(
        page,
        Outcome::Scanned { entries: vec![entry("a/1", Some("a/1"), 1), entry("a/2", Some("a/2"), 1)], next }
    );
    let page = run(&mut c, 1, scan(2, 2, "a/2\0", None, 2, true));
    assert_eq!(
        page,
        Outcome::Scanned { entries: vec![entry("a/3", None, 1), entry("b/1", None, 1)], next: None },
        "the last key fills the page exactly: no next page"
    );
    let end = prefix_end(b"a/").unwrap();
    assert_eq!(end, b"a0");
    let request = Request {
        id: RequestId { client: ClientId(2), seq: 3 },
        operation: Operation::Scan { start: b"a/".to_vec(), end: Some(end), limit: 10, keys_only: true },
    };
    let keys = match run(&mut c, 0, request) {
        Outcome::Scanned { entries, next: None } => entries.into_iter().map(|e| e.key).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(keys, [b"a/1".to_vec(), b"a/2".to_vec(), b"a/3".to_vec()]);
    assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
    assert_eq!(prefix_end(b"\xff"), None);
}

/// A page stops early, with `next`, once its keys and values reach the transaction byte limit.
#[test]
fn a_page_is_limited_in_bytes() {
    let mut c = Cluster::with_config(2, |cfg| cfg.limits.txn_bytes_max = 250);
    let value = "v".repeat(90);
    for (seq, key) in ["a", "b", "c"].into_iter().enumerate() {
        assert!(matches!(run(&mut c, 0, txn(1, seq as u64 + 1, vec![put(key, &value)])), Outcome::Committed(_)));
    }
    match run(&mut c, 1, scan(2, 1, "", None, 10, false)) {
        Outcome::Scanned { entries, next } => {
            assert_eq!(entries.len(), 2, "two entries of about 115 bytes fit 250");
            assert_eq!(next, Some(b"b\0".to_vec()));
        }
        other => panic!("{other:?}"),
    }
}

/// A scan's limit is 1 to `scan_limit_max`; its bounds are keys.
#[test]
fn scan_limits_are_typed_errors() {
    let mut c = Cluster::with_config(2, |cfg| cfg.limits.scan_limit_max = 5);
    let limit = |limit| Outcome::Rejected(RejectReason::Limit(LimitError::ScanLimit { limit, max: 5 }));
    assert_eq!(run(&mut c, 0, scan(1, 1, "a", None, 0, false)), limit(0));
    assert_eq!(run(&mut c, 0, scan(1, 2, "a", None, 6, false)), limit(6));
    let long = "k".repeat(5000);
    assert!(matches!(
        run(&mut c, 0, scan(1, 3, "a", Some(&long), 1, false)),
        Outcome::Rejected(RejectReason::Limit(LimitError::KeyTooLarge { op_index: 1, .. }))
    ));
}

/// Holds back node 1's word that the commit is visible, runs `ops` from node 0 to its commit
/// there (node 1 holds the commit durably, locked and not applied), and returns.
fn commit_at_node_0_only(c: &mut Cluster, seq: u64, ops: Vec<TxnOp>) {
    c.deliver_if = Box::new(|_, to, m| !(to.0 == 1 && matches!(m, Message::Visible { .. })));
    let w = c.request(0, txn(9, seq, ops));
    assert!(c.run_until(10_000, |c| c.reply(w).is_some()));
    assert!(matches!(c.reply(w).unwrap().outcome, Outcome::Committed(_)));
}

/// A scan waits for a prepared insert of a key in its range (no phantom: node 0 has answered
/// "committed" already), then sees it; a scan of a range the insert is not in does not wait.
#[test]
fn a_scan_waits_for_a_prepared_insert_in_its_range_only() {
    let mut c = Cluster::new(2);
    run(&mut c, 0, txn(1, 1, vec![put("a", "1"), put("c", "1"), put("x", "1")]));
    assert!(c.settle());
    commit_at_node_0_only(&mut c, 1, vec![put("b", "new")]);
    assert_eq!(c.value(1, "b"), None, "node 1 has not applied it");

    let outside = c.request(1, scan(2, 1, "c", None, 10, true));
    assert!(c.reply(outside).is_some(), "a range without the insert is served at once");
    let before = c.request(1, scan(2, 2, "", None, 1, true));
    assert!(
        matches!(&c.reply(before).unwrap().outcome, Outcome::Scanned { entries, .. } if entries.len() == 1),
        "a full page ending before the insert does not wait for it"
    );
    let around = c.request(1, scan(2, 3, "a", Some("c"), 10, false));
    assert!(c.reply(around).is_none(), "the page would miss the prepared insert: it waits");

    c.deliver_if = Box::new(|_, _, _| true);
    assert!(c.run_until(10_000, |c| c.reply(around).is_some()));
    let expected = vec![entry("a", Some("1"), 1), entry("b", Some("new"), 1)];
    assert_eq!(c.reply(around).unwrap().outcome, Outcome::Scanned { entries: expected, next: None });
}

/// A scan waiting on a lock whose outcome stays unknown gives up after the read timeout with
/// "try again"; waiting scans count against the bound on waiting reads.
#[test]
fn a_waiting_scan_times_out_and_counts_as_a_waiting_read() {
    let mut c = Cluster::with_config(2, |cfg| cfg.bounds.read_waiters_max = 1);
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Vote { .. }));
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    c.crash(0);
    let waiting = c.request(1, scan(2, 1, "", None, 10, false));
    let overflow = c.request(1, scan(2, 2, "", None, 10, false));
    assert_eq!(c.reply(overflow).unwrap().outcome, Outcome::TryAgain(TryAgainReason::Busy));
    assert!(c.reply(waiting).is_none());
    c.advance(Duration::from_secs(1));
    assert!(c.run_until(10_000, |c| c.reply(waiting).is_some()));
    assert_eq!(c.reply(waiting).unwrap().outcome, Outcome::TryAgain(TryAgainReason::Locked));
}
