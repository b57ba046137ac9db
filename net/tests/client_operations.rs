//! The client library's operations beyond put/get/update/delete, against a real 3-node cluster:
//! compare-and-set by value and by version, counters, append, get-and-set, get-and-delete,
//! transactions with conditions and reads, and scans (ranges, prefixes, pages, keys only).
//! Each is asked at one node and checked at another: the results are the cluster's.

mod common;

use common::TestCluster;
use dkv_core::{Condition, FailReason, Key, OpFailure, OpResult, Outcome, ScanEntry, TxnOp, Value};
use dkv_net::{Client, ClientTransport, Transport};

fn failed(op_index: u32, reason: FailReason) -> Outcome {
    Outcome::Failed(OpFailure { op_index, reason })
}

fn value(client: &mut Client, key: &str) -> Option<(Value, u64)> {
    match client.get(key).unwrap() {
        Outcome::Value { value, version } => Some((value, version)),
        Outcome::NotFound => None,
        other => panic!("get {key}: {other:?}"),
    }
}

/// Compare-and-set by value and by version: applied only when the condition holds, and a
/// failed condition names itself and changes nothing.
#[test]
fn compare_and_set_applies_only_when_its_condition_holds() {
    let cluster = TestCluster::start(3, Transport::Tcp);
    let (mut a, mut b) = (cluster.client(0, ClientTransport::Tcp), cluster.client(1, ClientTransport::Tcp));
    a.put("lock", "free").unwrap();
    assert_eq!(
        a.cas("lock", "free", "mine").unwrap(),
        Outcome::Committed(vec![OpResult::Done { version: 1 }, OpResult::Done { version: 2 }])
    );
    assert_eq!(b.cas("lock", "free", "theirs").unwrap(), failed(0, FailReason::ConditionFailed));
    assert_eq!(value(&mut b, "lock"), Some((b"mine".to_vec(), 2)));
    assert_eq!(b.cas_version("lock", 1, "stale").unwrap(), failed(0, FailReason::ConditionFailed));
    assert!(matches!(b.cas_version("lock", 2, "next").unwrap(), Outcome::Committed(_)));
    assert_eq!(value(&mut a, "lock"), Some((b"next".to_vec(), 3)));
    // Version 0 means absent: create-if-absent.
    assert!(matches!(a.cas_version("fresh", 0, "1").unwrap(), Outcome::Committed(_)));
    assert_eq!(b.cas_version("fresh", 0, "2").unwrap(), failed(0, FailReason::ConditionFailed));
}

/// Counters, append, get-and-set and get-and-delete return their results; a counter on a
/// value that is not a number fails and changes nothing.
#[test]
fn read_modify_write_ops_return_their_results() {
    let cluster = TestCluster::start(3, Transport::Tcp);
    let (mut a, mut b) = (cluster.client(0, ClientTransport::Tcp), cluster.client(2, ClientTransport::Tcp));
    assert_eq!(a.incr("n", 5).unwrap(), Outcome::Committed(vec![OpResult::Integer { value: 5, version: 1 }]));
    assert_eq!(b.incr("n", -7).unwrap(), Outcome::Committed(vec![OpResult::Integer { value: -2, version: 2 }]));
    assert_eq!(value(&mut a, "n"), Some((b"-2".to_vec(), 2)));
    a.put("word", "abc").unwrap();
    assert_eq!(b.incr("word", 1).unwrap(), failed(0, FailReason::NotAnInteger));
    assert_eq!(b.append("word", "de").unwrap(), Outcome::Committed(vec![OpResult::Integer { value: 5, version: 2 }]));
    assert_eq!(
        a.get_set("word", "new").unwrap(),
        Outcome::Committed(vec![OpResult::Value { value: Some(b"abcde".to_vec()), version: 3 }])
    );
    assert_eq!(
        b.get_delete("word").unwrap(),
        Outcome::Committed(vec![OpResult::Value { value: Some(b"new".to_vec()), version: 0 }])
    );
    assert_eq!(b.get_delete("word").unwrap(), Outcome::Committed(vec![OpResult::Value { value: None, version: 0 }]));
    assert_eq!(value(&mut a, "word"), None);
}

/// A transaction with conditions and reads: the reads see the values under its locks, and a
/// condition that does not hold fails the whole of it.
#[test]
fn transactions_with_conditions_and_reads_are_all_or_nothing() {
    let cluster = TestCluster::start(3, Transport::Tcp);
    let mut a = cluster.client(0, ClientTransport::Tcp);
    a.put("from", "10").unwrap();
    let transfer = |amount: &str| {
        vec![
            TxnOp::Require { key: b"from".to_vec(), condition: Condition::ValueEquals(b"10".to_vec()) },
            TxnOp::Require { key: b"to".to_vec(), condition: Condition::Absent },
            TxnOp::Put { key: b"to".to_vec(), value: amount.as_bytes().to_vec() },
            TxnOp::Read { key: b"from".to_vec() },
            TxnOp::Read { key: b"to".to_vec() },
        ]
    };
    assert_eq!(
        a.txn(transfer("10")).unwrap(),
        Outcome::Committed(vec![
            OpResult::Done { version: 1 },
            OpResult::Done { version: 0 },
            OpResult::Done { version: 1 },
            OpResult::Value { value: Some(b"10".to_vec()), version: 1 },
            OpResult::Value { value: Some(b"10".to_vec()), version: 1 },
        ])
    );
    let mut b = cluster.client(1, ClientTransport::Tcp);
    assert_eq!(b.txn(transfer("20")).unwrap(), failed(1, FailReason::ConditionFailed));
    assert_eq!(value(&mut b, "to"), Some((b"10".to_vec(), 1)));
}

fn scanned(outcome: Outcome) -> (Vec<ScanEntry>, Option<Key>) {
    match outcome {
        Outcome::Scanned { entries, next } => (entries, next),
        other => panic!("expected a page, got {other:?}"),
    }
}

fn keys(entries: &[ScanEntry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8_lossy(&e.key).into_owned()).collect()
}

/// Scans by range and by prefix, page by page with `next`, with values or keys only.
#[test]
fn scans_page_through_ranges_and_prefixes() {
    let cluster = TestCluster::start(3, Transport::Tcp);
    let mut a = cluster.client(0, ClientTransport::Tcp);
    for key in ["user/1", "user/2", "user/3", "user0", "users", "zebra"] {
        a.put(key, format!("v-{key}")).unwrap();
    }
    let mut b = cluster.client(1, ClientTransport::Tcp);
    let (entries, next) = scanned(b.scan_prefix("user/", 2, false).unwrap());
    assert_eq!(keys(&entries), ["user/1", "user/2"]);
    assert_eq!(entries[0], ScanEntry { key: b"user/1".to_vec(), value: Some(b"v-user/1".to_vec()), version: 1 });
    let next = next.expect("more keys with the prefix follow");
    let (entries, next) = scanned(b.scan(next, dkv_core::prefix_end(b"user/"), 2, true).unwrap());
    assert_eq!(keys(&entries), ["user/3"]);
    assert_eq!(entries[0].value, None, "keys only");
    assert_eq!(next, None, "the last page");
    let (entries, next) = scanned(b.scan("user0", Some(b"zebra".to_vec()), 10, false).unwrap());
    assert_eq!((keys(&entries), next), (vec!["user0".to_string(), "users".to_string()], None));
    let (entries, _) = scanned(b.scan("", None, 100, true).unwrap());
    assert_eq!(entries.len(), 6);
}

/// Over UDP a scan's page is usually far larger than its request, more than a node sends to an
/// unauthenticated datagram's source: the client pads the request and asks again, and gets it.
#[test]
fn scans_work_over_udp_too() {
    let cluster = TestCluster::start(1, Transport::Both);
    let mut client = cluster.client(0, ClientTransport::Udp);
    let value = "v".repeat(500);
    for i in 0..10 {
        assert!(matches!(client.put(format!("k{i}"), value.as_str()).unwrap(), Outcome::Committed(_)));
    }
    let (entries, next) = scanned(client.scan_prefix("k", 100, false).unwrap());
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().all(|e| e.value.as_deref() == Some(value.as_bytes())));
    assert_eq!(next, None);
}
