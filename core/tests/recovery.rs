//! Durability and recovery: the log rebuilds the store, locks, prepared transactions, commit
//! decisions and completion records; snapshots compact it without changing what it rebuilds.

mod harness;
use dkv_core::{Message, Node, NodeId, Outcome, Record, Time, TxnOp};
use harness::*;

/// An acknowledged write survives the crash of every node at once.
#[test]
fn acknowledged_write_survives_crash_of_all_nodes() {
    let mut c = Cluster::new(3);
    let r = c.request(1, txn(1, 1, vec![put("a", "1"), put("b", "2")]));
    assert!(c.run_until(10_000, |c| c.reply(r).is_some()));
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    for i in 0..3 {
        c.crash(i);
    }
    c.network.clear();
    for i in 0..3 {
        c.restart(i);
    }
    assert!(c.settle());
    for i in 0..3 {
        assert_eq!(c.value(i, "a"), Some(b"1".to_vec()), "node {i}");
        assert_eq!(c.value(i, "b"), Some(b"2".to_vec()), "node {i}");
    }
}

/// A participant that crashes while prepared comes back with its locks and learns the outcome.
#[test]
fn prepared_transaction_is_recovered_with_its_locks() {
    let mut c = Cluster::new(3);
    c.deliver_if = Box::new(|_, to, m| !(to.0 == 2 && matches!(m, Message::Decision { .. })));
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(10_000, |c| c.reply(r).is_some()));
    c.crash(2);
    c.restart(2);
    assert_eq!(c.node(2).locked_keys(), 1, "the lock is back after restart");
    assert_eq!(c.node(2).prepared_count(), 1);
    c.deliver_if = Box::new(|_, _, _| true);
    assert!(c.settle());
    assert_eq!(c.value(2, "k"), Some(b"v".to_vec()));
}

/// Completion records survive restarts: a retry after every node restarted is still recognised.
#[test]
fn completion_records_survive_restart() {
    let mut c = Cluster::new(2);
    c.request(0, txn(7, 1, vec![put("k", "1")]));
    assert!(c.settle());
    c.request(0, txn(8, 1, vec![put("k", "2")]));
    assert!(c.settle());
    for i in 0..2 {
        c.crash(i);
        c.restart(i);
    }
    let retry = c.request(1, txn(7, 1, vec![put("k", "1")]));
    assert!(c.settle());
    assert!(matches!(c.reply(retry).unwrap().outcome, Outcome::Committed(_)));
    assert_eq!(c.value(1, "k"), Some(b"2".to_vec()));
}

/// Every restart bumps the incarnation, so transaction ids are never reused.
#[test]
fn incarnation_grows_across_restarts() {
    let mut c = Cluster::new(2);
    let first = c.node(0).incarnation();
    c.crash(0);
    c.restart(0);
    assert_eq!(c.node(0).incarnation(), first + 1);
}

/// A node does not coordinate until its Boot record is durable (so a crash cannot reuse ids).
#[test]
fn node_coordinates_only_after_boot_is_durable() {
    let mut c = Cluster::new(2);
    c.auto_durable = false;
    c.crash(0);
    c.restart(0);
    assert!(!c.node(0).is_booted());
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert_eq!(c.reply(r).unwrap().outcome, Outcome::TryAgain(dkv_core::TryAgainReason::Starting));
    c.make_durable(0);
    assert!(c.node(0).is_booted());
}

/// Snapshots bound the log: under a steady overwrite workload the durable log stays small, and
/// recovery from it rebuilds exactly the same state as the node had.
#[test]
fn snapshots_compact_the_log_and_recover_the_same_state() {
    let mut c = Cluster::with_config(2, |cfg| cfg.bounds.snapshot_records_min = 50);
    for seq in 1..=400u64 {
        let key = format!("k{}", seq % 10);
        c.request((seq % 2) as usize, txn(1, seq, vec![put(&key, &seq.to_string())]));
        assert!(c.settle());
    }
    for i in 0..2 {
        assert!(c.node(i).stats().snapshots >= 5, "node {i} took snapshots");
        assert!(c.disks[i].durable.len() <= 120, "node {i} log has {} records", c.disks[i].durable.len());
        assert!(matches!(c.disks[i].durable[0], Record::SnapshotBeginInEpoch(_)));
        let before = c.node(i).store().clone();
        let completions: Vec<_> = c.node(i).completions().collect();
        let recovered = Node::start(c.configs[i].clone(), c.disks[i].durable.clone(), Time::ZERO).unwrap();
        assert_eq!(recovered.store(), &before);
        assert_eq!(recovered.completions().collect::<Vec<_>>(), completions);
    }
}

/// A store larger than one chunk is snapshotted as several entries records, none much larger
/// than the chunk size, and recovers entry for entry.
#[test]
fn large_snapshot_is_split_into_bounded_records() {
    let mut c = Cluster::with_config(2, |cfg| cfg.bounds.snapshot_records_min = 40);
    let value = "v".repeat(100 * 1024);
    for seq in 1..=60u64 {
        c.request((seq % 2) as usize, txn(1, seq, vec![put(&format!("k{seq:03}"), &value)]));
        assert!(c.settle());
    }
    for i in 0..2 {
        let durable = &c.disks[i].durable;
        assert!(matches!(durable[0], Record::SnapshotBeginInEpoch(_)), "node {i} compacted to its last snapshot");
        let chunks = durable.iter().filter(|r| matches!(r, Record::SnapshotVersionedEntries(_))).count();
        assert!(chunks >= 4, "node {i}: 4+ MiB of values in {chunks} entries records");
        for record in durable {
            let bytes = dkv_core::codec::wal::encode_to_vec(record).len();
            assert!(bytes < dkv_core::SNAPSHOT_CHUNK_BYTES + 200 * 1024, "a {} record of {bytes} bytes", record.kind());
        }
        let recovered = Node::start(c.configs[i].clone(), durable.clone(), Time::ZERO).unwrap();
        assert_eq!(recovered.store(), c.node(i).store());
        assert_eq!(recovered.store().len(), 60);
    }
}

/// A crash in the middle of writing a snapshot leaves its first records without an end: recovery
/// ignores them and rebuilds the state from the records before them, also when the node logged
/// more after restarting.
#[test]
fn snapshot_cut_short_by_a_crash_is_ignored() {
    let mut c = Cluster::new(2);
    for seq in 1..=5u64 {
        c.request(0, txn(1, seq, vec![put(&format!("k{seq}"), "x".repeat(400 * 1024).as_str())]));
        assert!(c.settle());
    }
    let log = c.disks[0].durable.clone();
    let snapshot = c.node(0).snapshot().into_records();
    assert!(snapshot.len() >= 4, "begin, two or more entries records, end");
    for cut in 1..snapshot.len() {
        let mut records = log.clone();
        records.extend(snapshot[..cut].iter().cloned());
        let recovered = Node::start(c.configs[0].clone(), records.clone(), Time::ZERO).unwrap();
        assert_eq!(recovered.store(), c.node(0).store(), "cut after {cut} snapshot records");
        records.push(Record::Boot { incarnation: 99 });
        let recovered = Node::start(c.configs[0].clone(), records, Time::ZERO).unwrap();
        assert_eq!(recovered.store(), c.node(0).store(), "cut after {cut}, then a restart");
    }
}

/// Snapshot records out of place — entries or an end with no begin, an end whose count does not
/// match — make recovery refuse the log rather than guess.
#[test]
fn misplaced_snapshot_records_are_refused() {
    let c = Cluster::new(2);
    let entry = dkv_core::record::Entry { key: b"k".to_vec(), value: b"v".to_vec() };
    let stray = vec![Record::SnapshotEntries(vec![entry.clone()])];
    let err = Node::start(c.configs[0].clone(), stray, Time::ZERO).err().unwrap();
    assert!(err.to_string().contains("not inside a snapshot"), "{err}");
    let end = vec![Record::SnapshotEnd { entries: 0 }];
    assert!(Node::start(c.configs[0].clone(), end, Time::ZERO).is_err());
    let entry = dkv_core::record::VersionedEntry { key: b"k".to_vec(), value: b"v".to_vec(), version: 1 };
    let mut short = dkv_core::Snapshot { entries: vec![entry], ..Default::default() }.into_records();
    short.retain(|r| !matches!(r, Record::SnapshotVersionedEntries(_)));
    let err = Node::start(c.configs[0].clone(), short, Time::ZERO).err().unwrap();
    assert!(err.to_string().contains("1 entries, but 0"), "{err}");
}

/// A snapshot keeps each key's version. One written by a build before versions (its entries
/// in `SnapshotEntries` records) reads back with every version
/// unknown (0 on a key that exists): no version condition holds on such a key, and its next
/// write makes it 1. The log after it, until the new build's first `BootTracked`, is the
/// earlier build's too: what it writes gets an unknown version, and no results.
#[test]
fn snapshots_keep_versions_and_old_ones_read_back_with_unknown_versions() {
    let mut c = Cluster::new(1);
    for seq in 1..=3 {
        let r = c.request(0, txn(1, seq, vec![put("k", "v")]));
        c.settle();
        assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    }
    let snapshot = c.node(0).snapshot();
    assert_eq!(snapshot.entries[0].version, 3);
    let recovered = Node::start(c.configs[0].clone(), snapshot.into_records(), Time::ZERO).unwrap();
    assert_eq!(recovered.store().get_versioned(b"k").map(|v| v.version), Some(3));

    let old_entry = dkv_core::record::Entry { key: b"k".to_vec(), value: b"v".to_vec() };
    let later = dkv_core::record::TxnRecord {
        txn: dkv_core::TxnId { coordinator: NodeId(0), incarnation: 5, number: 7 },
        request: dkv_core::RequestId { client: dkv_core::ClientId(5), seq: 1 },
        ops: vec![put("j", "w")].into(),
        participants: c.configs[0].members,
    };
    let old = vec![
        Record::Boot { incarnation: 5 },
        Record::SnapshotBegin(Box::new(dkv_core::SnapshotHeader { incarnation: 5, ..Default::default() })),
        Record::SnapshotEntries(vec![old_entry]),
        Record::SnapshotEnd { entries: 1 },
        Record::Decided(later),
    ];
    c.disks[0].durable = old;
    c.crash(0);
    c.restart(0);
    let version = |c: &Cluster, key: &str| c.node(0).store().get_versioned(key.as_bytes()).map(|v| v.version);
    assert_eq!((version(&c, "k"), version(&c, "j")), (Some(0), Some(0)), "unknown, in the snapshot or after it");
    let retry = c.request(0, txn(5, 1, vec![put("j", "w")]));
    assert_eq!(
        c.reply(retry).unwrap().outcome,
        Outcome::Committed(Vec::new()),
        "the earlier build recorded no results"
    );
    let at_version = |v| TxnOp::Require { key: b"k".to_vec(), condition: dkv_core::Condition::VersionEquals(v) };
    for (seq, v) in [(1, 0), (2, 1)] {
        let r = c.request(0, txn(6, seq, vec![at_version(v)]));
        c.settle();
        let failed =
            Outcome::Failed(dkv_core::OpFailure { op_index: 0, reason: dkv_core::FailReason::ConditionFailed });
        assert_eq!(c.reply(r).unwrap().outcome, failed, "an unknown version is not {v}");
    }
    let r = c.request(0, txn(6, 3, vec![put("k", "x"), at_version(1)]));
    c.settle();
    let done = dkv_core::OpResult::Done { version: 1 };
    assert_eq!(c.reply(r).unwrap().outcome, Outcome::Committed(vec![done.clone(), done]), "its next write makes it 1");
}

/// A snapshot taken while a commit decision is not yet visible records it as not applied, and
/// recovery keeps it that way: locked, unapplied, remembered as committed. Nothing decided is
/// lost, nothing is applied before a majority holds it. (With configuration changes on: with
/// them off, every YES makes a commit visible, docs/protocol.md §7.2.)
#[test]
fn snapshot_during_pending_decision_recovers_it() {
    let mut c = Cluster::with_config(2, |cfg| cfg.timing.leases = true);
    c.auto_durable = false;
    c.make_durable(0);
    c.make_durable(1);
    // Past the start's wait: no YES before it (§7.5).
    let wait = c.configs[0].timing.lease_wait();
    c.advance(wait);
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    c.make_durable(0);
    c.make_durable(1);
    c.deliver_all();
    assert!(matches!(c.disks[0].pending.last(), Some((_, Record::CommitDecided { .. }))));
    let snapshot = c.node(0).snapshot();
    assert_eq!(snapshot.decisions.len(), 1);
    assert!(!snapshot.decisions[0].applied);
    assert!(snapshot.entries.is_empty());
    let txn = snapshot.decisions[0].decision.txn;
    assert_eq!(snapshot.commit_memory, vec![txn]);
    let recovered = Node::start(c.configs[0].clone(), snapshot.into_records(), Time::ZERO).unwrap();
    assert_eq!(recovered.store().get(b"k".as_slice()), None, "not visible: not applied");
    assert_eq!(recovered.locked_keys(), 1, "and still locked");
    assert_eq!(recovered.commit_memory().collect::<Vec<_>>(), vec![txn]);
    c.make_durable(0);
    assert!(c.reply(r).is_none(), "durable at the coordinator alone: one of two is no majority");
    c.deliver_all();
    c.make_durable(1);
    c.deliver_all();
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
}

/// A snapshot whose prepared transactions overlap, that holds another node's decisions, or
/// that names one transaction twice, is refused with an error (found by reasoning about the wal_recover fuzz target: it used to
/// reach an `expect` when reinstalling the locks).
#[test]
fn contradictory_snapshot_is_refused_not_a_panic() {
    use dkv_core::record::{DecisionState, TxnRecord};
    use dkv_core::{ClientId, NodeId, RequestId, Snapshot, TxnId};
    let c = Cluster::new(2);
    let t = |coordinator: u8, number: u64| TxnRecord {
        txn: TxnId { coordinator: NodeId(coordinator), incarnation: 1, number },
        request: RequestId { client: ClientId(number), seq: 1 },
        ops: vec![put("k", "v")].into(),
        participants: dkv_core::NodeSet::first(2),
    };
    let overlapping = Snapshot { prepared: vec![t(1, 1), t(1, 2)], ..Default::default() };
    let err = Node::start(c.configs[0].clone(), overlapping.into_records(), Time::ZERO).err().unwrap();
    assert!(err.to_string().contains("locks a key"), "{err}");
    let foreign =
        Snapshot { decisions: vec![DecisionState { decision: t(1, 1), applied: true }], ..Default::default() };
    let err = Node::start(c.configs[0].clone(), foreign.into_records(), Time::ZERO).err().unwrap();
    assert!(err.to_string().contains("another node"), "{err}");
    // One transaction of this node's both in doubt and decided, under two requests (the
    // wal_recover fuzz target's find): restored by both roles, the coordinator's pending
    // request named a transaction the decision had replaced.
    let mut in_doubt = t(0, 1);
    in_doubt.request.seq = 2;
    let twice = Snapshot {
        prepared: vec![in_doubt],
        decisions: vec![DecisionState { decision: t(0, 1), applied: true }],
        ..Default::default()
    };
    let err = Node::start(c.configs[0].clone(), twice.into_records(), Time::ZERO).err().unwrap();
    assert!(err.to_string().contains("prepared or decided twice"), "{err}");
    let exhausted = vec![Record::Boot { incarnation: u64::MAX }];
    assert!(Node::start(c.configs[0].clone(), exhausted, Time::ZERO).is_err());
}

/// Every node's bookkeeping stays consistent through commits, aborts, crashes and recovery.
#[test]
fn invariants_hold_through_crash_and_recovery() {
    let mut c = Cluster::new(3);
    c.deliver_if = Box::new(|_, to, m| !(to.0 == 2 && matches!(m, Message::Decision { .. })));
    c.request(0, txn(1, 1, vec![put("a", "1"), put("b", "2")]));
    c.request(1, txn(2, 1, vec![update("zz", "1")]));
    for _ in 0..50 {
        c.step();
        for i in 0..3 {
            c.node(i).check_invariants().unwrap();
        }
    }
    c.crash(2);
    c.restart(2);
    c.node(2).check_invariants().unwrap();
    c.deliver_if = Box::new(|_, _, _| true);
    assert!(c.settle());
    for i in 0..3 {
        c.node(i).check_invariants().unwrap();
    }
}

/// A log that contradicts itself is refused with a clear error instead of serving wrong data.
#[test]
fn inconsistent_log_is_refused() {
    use dkv_core::{NodeId, TxnId};
    let c = Cluster::new(1);
    let bogus = vec![Record::Committed { txn: TxnId { coordinator: NodeId(1), incarnation: 1, number: 1 } }];
    let err = Node::start(c.configs[0].clone(), bogus, Time::ZERO).err().expect("refused");
    assert!(err.to_string().contains("not pending"), "{err}");
}

/// A started node waits on its Boot record: until it is durable the node is not quiescent and
/// does not coordinate; once it is, both change.
#[test]
fn a_node_is_quiescent_only_once_its_boot_record_is_durable() {
    use dkv_core::{Config, Input, NodeId, NodeSet, Output};
    let now = Time::from_nanos(1);
    let mut node = Node::start(Config::new(NodeId(0), NodeSet::first(1)), Vec::new(), now).unwrap();
    let Some(Output::Persist { lsn, record: Record::BootTracked { incarnation: 1 }, .. }) = node.poll_output() else {
        panic!("a new node persists its Boot record first");
    };
    assert!(!node.is_quiescent() && !node.is_booted());
    node.handle(now, Input::Durable { through: lsn });
    assert!(node.is_quiescent() && node.is_booted());
}

/// A log that contradicts itself is refused, never half-trusted, with an error that names the
/// record (its index and kind) and what is wrong with it.
#[test]
fn a_log_that_contradicts_itself_is_refused_naming_the_record() {
    use dkv_core::record::{Entry, TxnRecord};
    use dkv_core::recovery::RecoveryError;
    use dkv_core::{ClientId, Config, NodeId, NodeSet, RequestId, StartError, TxnId};
    let me = NodeId(0);
    let txn = |coordinator: u8, number: u64| TxnId { coordinator: NodeId(coordinator), incarnation: 1, number };
    let prepared = |t: TxnId, client: u64, key: &str| {
        Record::Prepared(TxnRecord {
            txn: t,
            request: RequestId { client: ClientId(client), seq: 1 },
            ops: vec![put(key, "v")].into(),
            participants: NodeSet::first(3),
        })
    };
    let decided = |t: TxnId| match prepared(t, 9, "d") {
        Record::Prepared(record) => Record::Decided(record),
        _ => unreachable!(),
    };
    let (t1, t2, mine) = (txn(1, 1), txn(1, 2), txn(0, 1));
    let entry = Entry { key: b"k".to_vec(), value: b"v".to_vec() };
    let cases: Vec<(Vec<Record>, RecoveryError, &str)> = vec![
        (
            vec![Record::Committed { txn: t1 }],
            RecoveryError::UnknownTransaction { index: 0, kind: "committed", txn: t1 },
            "record 0 (committed)",
        ),
        (
            vec![Record::Aborted { txn: t1 }],
            RecoveryError::UnknownTransaction { index: 0, kind: "aborted", txn: t1 },
            "record 0 (aborted)",
        ),
        (
            vec![Record::Forgotten { txn: mine }],
            RecoveryError::UnknownTransaction { index: 0, kind: "forgotten", txn: mine },
            "record 0 (forgotten)",
        ),
        (
            vec![prepared(t1, 1, "a"), prepared(t1, 1, "a")],
            RecoveryError::DuplicateTransaction { index: 1, txn: t1 },
            "prepared or decided twice",
        ),
        (
            vec![prepared(t1, 1, "a"), prepared(t2, 2, "a")],
            RecoveryError::LockConflict { index: 1, txn: t2, holder: t1 },
            "already holds",
        ),
        (
            vec![prepared(t1, 1, "a"), prepared(t2, 1, "b")],
            RecoveryError::DuplicateRequest { index: 1, request: RequestId { client: ClientId(1), seq: 1 } },
            "under two transactions",
        ),
        (
            vec![prepared(mine, 1, "a")],
            RecoveryError::ForeignTransaction { index: 0, txn: mine, node: me },
            "another node's data directory",
        ),
        (
            vec![decided(t1)],
            RecoveryError::ForeignTransaction { index: 0, txn: t1, node: me },
            "another node's data directory",
        ),
        (
            vec![Record::SnapshotEntries(vec![entry.clone()])],
            RecoveryError::OutsideSnapshot { index: 0, kind: "snapshot-entries" },
            "record 0 (snapshot-entries)",
        ),
        (
            vec![Record::SnapshotEnd { entries: 0 }],
            RecoveryError::OutsideSnapshot { index: 0, kind: "snapshot-end" },
            "record 0 (snapshot-end)",
        ),
        (
            vec![
                Record::SnapshotBegin(Box::default()),
                Record::SnapshotEntries(vec![entry]),
                Record::SnapshotEnd { entries: 2 },
            ],
            RecoveryError::SnapshotIncomplete { index: 2, expected: 2, found: 1 },
            "2 entries, but 1 were logged",
        ),
    ];
    for (records, expected, message) in cases {
        match Node::start(Config::new(me, NodeSet::first(3)), records, Time::from_nanos(1)) {
            Err(StartError::Recovery(error)) => {
                assert_eq!(error, expected);
                assert!(error.to_string().contains(message), "{error} should say {message:?}");
            }
            Err(other) => panic!("expected {expected:?}, got {other}"),
            Ok(_) => panic!("a log that contradicts itself was accepted; expected {expected:?}"),
        }
    }
}

/// A transaction an earlier build prepared and decided before the upgrade, committed at a
/// participant only after it: the participant, like the coordinator that replays its decision,
/// runs it untracked (unknown version, no results), so both agree on the key's version. (With
/// the participant counting it as a tracked write, they would say 0 and 1.)
#[test]
fn a_transaction_prepared_before_an_upgrade_commits_untracked_everywhere() {
    let mut c = Cluster::new(2);
    let t = dkv_core::record::TxnRecord {
        txn: dkv_core::TxnId { coordinator: NodeId(0), incarnation: 1, number: 0 },
        request: dkv_core::RequestId { client: dkv_core::ClientId(3), seq: 1 },
        ops: vec![put("k", "v")].into(),
        participants: c.configs[0].members,
    };
    c.disks[0].durable = vec![Record::Boot { incarnation: 1 }, Record::Decided(t.clone())];
    c.disks[1].durable = vec![Record::Boot { incarnation: 1 }, Record::Prepared(t)];
    for i in 0..2 {
        c.crash(i);
        c.restart(i);
    }
    assert!(c.settle());
    for i in 0..2 {
        let v = c.node(i).store().get_versioned(b"k").expect("committed");
        assert_eq!((v.value.as_slice(), v.version), (&b"v"[..], 0), "node {i}");
        let completion = c.node(i).completions().next().expect("recorded");
        assert_eq!(completion.outcome, dkv_core::completions::Completed::Committed(Vec::new()), "node {i}");
    }
}

/// A one-node cluster that restarts with a commit decided but not known visible, and with a
/// share in doubt, settles both from its own log: it is the majority and every participant.
#[test]
fn a_single_node_settles_its_own_transactions_after_a_restart() {
    let mut c = Cluster::new(1);
    c.auto_durable = false;
    c.make_durable(0);
    let first = c.request(0, txn(1, 1, vec![put("a", "1")]));
    c.make_durable(0); // own share, then the decision: visible, applied, answered
    c.make_durable(0);
    assert!(matches!(c.reply(first).unwrap().outcome, Outcome::Committed(_)));
    c.request(0, txn(1, 2, vec![put("b", "2")]));
    // Only the first record of the second write (its own share) reaches the disk; the lazy
    // records of the first (applied, finished) do not.
    let share = c.disks[0].pending.iter().position(|(_, r)| matches!(r, Record::PreparedInEpoch { .. })).unwrap();
    let kept: Vec<_> = c.disks[0].pending.drain(..=share).map(|(_, r)| r).collect();
    c.disks[0]
        .durable
        .extend(kept.into_iter().filter(|r| !matches!(r, Record::Committed { .. } | Record::Forgotten { .. })));
    c.crash(0);
    c.auto_durable = true;
    c.restart(0);
    assert!(c.settle());
    assert_eq!(c.value(0, "a"), Some(b"1".to_vec()));
    assert_eq!(c.value(0, "b"), Some(b"2".to_vec()), "its own YES is every YES: committed");
    assert_eq!(c.node(0).locked_keys(), 0);
}

/// A restarted coordinator asks again about its transaction in doubt as soon as a participant
/// is back in touch, not when its backed-off retransmission next comes due. After every node
/// restarts at once the first PREPAREs are lost (peer links still down), and retransmissions
/// back off to `retransmit_max`: the transaction's keys stayed locked for up to that long after
/// the links came up.
#[test]
fn a_recovering_coordinator_asks_again_as_soon_as_a_participant_is_back_in_touch() {
    let mut c = Cluster::new(3);
    // Node 0's transaction: every share durable, every vote lost.
    c.deliver_if = Box::new(|_, to, m| !(to.0 == 0 && matches!(m, Message::Vote { .. })));
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    assert!(c.reply(r).is_none());
    assert_eq!(c.node(1).prepared_count(), 1);
    c.crash(0);
    // Node 0 restarts cut off: nothing reaches it or leaves it for 5 s, while its PREPAREs back
    // off.
    c.deliver_if = Box::new(|from, to, _| from.0 != 0 && to.0 != 0);
    c.restart(0);
    let until = c.now + std::time::Duration::from_secs(5);
    while c.now < until && c.step() {}
    c.deliver_all(); // what the last retransmission sent is lost too
    assert_eq!(c.value(0, "k"), None, "still in doubt");
    let next_retransmission = c.node(0).deadline().expect("node 0 retransmits");
    assert!(next_retransmission > c.now + std::time::Duration::from_secs(1), "backed off");

    // The links are up again, and node 1 sends node 0 a PREPARE of its own: node 0 hears from
    // it, and asks again at once. Everything that follows happens at this same instant.
    c.deliver_if = Box::new(|_, _, _| true);
    let back = c.now;
    c.request(1, txn(2, 1, vec![put("other", "x")]));
    let due = |c: &Cluster| (0..3).filter_map(|i| c.node(i).deadline()).any(|at| at <= c.now);
    for _ in 0..10_000 {
        if c.network.is_empty() && !due(&c) {
            break;
        }
        c.step();
    }
    assert_eq!(c.now, back, "no time passed");
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "node {i}: node 0's transaction committed");
    }
}

/// A member's parts in vote instances (docs/protocol.md §8; no node writes them yet) replay
/// from the log, survive the snapshots that compact it, and are dropped once their transaction
/// is finished or their epoch is over; a state the rules cannot reach is refused.
#[test]
fn vote_states_replay_ride_snapshots_and_end_with_their_transaction() {
    use dkv_core::votes::{VoteAcceptor, VoteBallot, VoteInstance, VoteValue};
    use dkv_core::{Epoch, TxnId};
    let instance = |coordinator: u8, incarnation: u64, owner: u8| VoteInstance {
        epoch: Epoch::FIRST,
        txn: TxnId { coordinator: NodeId(coordinator), incarnation, number: 1 },
        owner: NodeId(owner),
    };
    // A recovery ballot's acceptance: a state any member's instance can reach.
    let ballot = VoteBallot::recovery(1, 1, NodeId(1));
    let acceptor = VoteAcceptor { promised: Some(ballot), accepted: Some((ballot, VoteValue::Yes)) };
    let record = |instance| Record::VoteAcceptor { instance, acceptor };
    // Incarnation 99: no mark of node 1 in this test reaches these transactions.
    let kept = [instance(1, 99, 1), instance(1, 99, 0)];
    let mut c = Cluster::with_config(2, |cfg| cfg.bounds.snapshot_records_min = 30);
    c.crash(0);
    c.disks[0].durable.extend(kept.map(record));
    c.restart(0);
    let states = |c: &Cluster| c.node(0).vote_acceptors().iter().collect::<Vec<_>>();
    let expected: Vec<_> = kept.iter().rev().map(|i| (*i, acceptor)).collect();
    assert_eq!(states(&c), expected);
    for seq in 1..=100u64 {
        c.request(0, txn(1, seq, vec![put("k", &seq.to_string())]));
        assert!(c.settle());
    }
    let durable = &c.disks[0].durable;
    assert!(matches!(durable[0], Record::SnapshotBeginInEpoch(_)), "compacted to its last snapshot");
    assert!(!durable.iter().any(|r| matches!(r, Record::VoteAcceptor { .. })), "the records were compacted away");
    assert!(durable.iter().any(|r| matches!(r, Record::SnapshotVoteAcceptors(_))));
    c.crash(0);
    c.restart(0);
    assert_eq!(states(&c), expected, "carried by the snapshot");

    // Dropped when their transaction is below its coordinator's mark, or their epoch is over.
    let start = |records: Vec<Record>| Node::start(c.configs[0].clone(), records, Time::ZERO);
    let mark = Record::FinishedBelow { below: TxnId { coordinator: NodeId(1), incarnation: 100, number: 0 } };
    let other = instance(2, 1, 1);
    let marked = start(vec![record(kept[0]), record(other), mark.clone(), record(kept[1])]).unwrap();
    assert_eq!(marked.vote_acceptors().iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![other]);
    let configuration = dkv_core::Configuration { epoch: Epoch(2), members: c.configs[0].members };
    let value =
        dkv_core::configuration::Value { configuration, settlement: Default::default(), joining: Default::default() };
    let installed = start(vec![record(other), Record::Installed(Box::new(value))]).unwrap();
    assert!(installed.vote_acceptors().is_empty());

    let above =
        VoteAcceptor { promised: Some(ballot), accepted: Some((VoteBallot::recovery(2, 1, NodeId(1)), VoteValue::No)) };
    let err = start(vec![Record::VoteAcceptor { instance: other, acceptor: above }]).err().expect("refused");
    assert!(err.to_string().contains("accepted a value above its promise"), "{err}");
}

/// A snapshot carries the finished marks heard (review finding): a crash that keeps the
/// snapshot's end and loses everything after it leaves a log, read from the snapshot on, that
/// still knows every mark. (Logged after the end, as they first were, the marks went with the
/// crash, and a stale PREPARE below a mark was prepared again.)
#[test]
fn a_snapshot_carries_the_finished_marks() {
    use dkv_core::Input;
    let mut c = Cluster::with_config(2, |cfg| cfg.bounds.snapshot_records_min = 30);
    let mut first_prepare = None;
    for seq in 1..=60u64 {
        c.request(0, txn(1, seq, vec![put(&format!("k{}", seq % 5), &seq.to_string())]));
        assert!(c.settle());
        first_prepare = first_prepare.or_else(|| {
            c.delivered
                .iter()
                .find_map(|(_, to, m)| (to.0 == 1 && matches!(m, Message::Prepare { .. })).then(|| m.clone()))
        });
        if seq == 1 {
            // Node 0's mark once the first write is finished (its timer would send it).
            let Some(Message::Prepare { txn: first, .. }) = &first_prepare else {
                panic!("node 1 was asked to prepare")
            };
            let below = dkv_core::TxnId { number: first.number + 1, ..*first };
            let now = c.now;
            let mark = Message::FinishedBelow { epoch: dkv_core::Epoch::FIRST, below };
            c.nodes[1].as_mut().unwrap().handle(now, Input::Message { from: NodeId(0), message: mark });
            c.drain(1);
        }
    }
    let Some(Message::Prepare { txn: stale, .. }) = first_prepare.clone() else {
        panic!("node 1 was asked to prepare")
    };
    // Node 1's log up to its last snapshot's end, and nothing after it.
    let durable = &c.disks[1].durable;
    let end = durable.iter().rposition(|r| matches!(r, Record::SnapshotEnd { .. })).expect("node 1 took a snapshot");
    let start = durable[..end].iter().rposition(Record::begins_snapshot).expect("the snapshot's begin");
    assert!(
        durable[start..end]
            .iter()
            .any(|r| matches!(r, Record::SnapshotFinishedMarks(m) if m.iter().any(|b| *b > stale))),
        "the snapshot holds node 0's mark past {stale}"
    );
    let kept = durable[start..=end].to_vec();
    c.crash(1);
    c.disks[1].durable = kept;
    c.restart(1);
    c.network.clear();
    let now = c.now;
    let n1 = c.nodes[1].as_mut().unwrap();
    let prepared = n1.prepared_count();
    n1.handle(now, Input::Message { from: NodeId(0), message: first_prepare.unwrap() });
    assert_eq!(n1.stats().prepares_below_mark, 1, "the stale PREPARE of {stale} is known finished");
    assert_eq!(n1.prepared_count(), prepared, "and not prepared again");
}

/// With configuration changes off, a commit is visible once every participant's YES is in:
/// the client is answered and every node applies it while the decision and the learned commits
/// are still on their way to disk (one synced write on the commit path, docs/protocol.md §7.2,
/// "Visible on every YES"). Then every node crashes before any of those records is durable:
/// each restarts with its share only, the coordinator asks the participants again, and the
/// commit is made again everywhere. Nothing a client or a reader saw is lost.
#[test]
fn with_changes_off_every_yes_makes_a_commit_visible_and_a_crash_keeps_it() {
    let mut c = Cluster::new(3);
    c.auto_durable = false;
    for i in 0..3 {
        c.make_durable(i);
    }
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    assert!(c.reply(r).is_none(), "no share is durable yet");
    for i in 0..3 {
        c.make_durable(i);
    }
    c.deliver_all();
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)), "answered on every YES");
    let decided_pending = c.disks[0].pending.iter().any(|(_, rec)| matches!(rec, Record::CommitDecided { .. }));
    assert!(decided_pending, "the decision is not durable yet");
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "n{i} applied it");
        let learned = |rec: &Record| matches!(rec, Record::CommitDecided { .. } | Record::CommitLearned { .. });
        assert!(!c.disks[i].durable.iter().any(learned), "n{i} holds no decision durably");
    }
    for i in 0..3 {
        c.crash(i);
    }
    for i in 0..3 {
        c.restart(i);
        assert_eq!(c.value(i, "k"), None, "n{i} restarts with the share only");
        assert_eq!(c.node(i).locked_keys(), 1, "n{i} holds it locked, so no read sees the old value");
    }
    c.auto_durable = true;
    for i in 0..3 {
        c.make_durable(i);
    }
    assert!(c.settle());
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "n{i} committed it again");
        assert_eq!(c.node(i).locked_keys(), 0);
    }
}

/// Every node stops right after a commit became visible on its pinned YES votes, before any
/// record of its decision was durable: each restarts with the share in doubt, pinned, which
/// is what keeps the cluster from switching to configuration changes (a settlement of such a
/// share could abort a commit a client was told of, docs/protocol.md §6). Restarted with
/// changes on (a switch that skipped the check), a node still reports it pinned; once the
/// coordinator's recovery has committed it again, nothing is pinned any more.
#[test]
fn a_share_voted_pinned_stays_pinned_until_decided_whatever_the_mode() {
    let mut c = Cluster::durable_by_hand(3);
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    (0..3).for_each(|i| c.make_durable(i));
    c.deliver_all();
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)), "visible on every pinned YES");
    let visible = c.delivered.iter().find_map(|(_, _, m)| match m {
        Message::Visible { txn, .. } => Some(*txn),
        _ => None,
    });
    let t = visible.expect("Visible sent");
    for i in 0..3 {
        c.crash(i);
        let read = dkv_core::recovery::pinned_in_doubt(c.disks[i].durable.clone(), NodeId(i as u8)).unwrap();
        assert_eq!(read, vec![t], "n{i}'s log holds it pinned");
        c.configs[i].timing.leases = true;
    }
    c.auto_durable = true;
    c.deliver_if = Box::new(|_, _, _| false);
    (0..3).for_each(|i| c.restart(i));
    for i in 0..3 {
        assert_eq!(c.node(i).pinned_in_doubt(), vec![t], "n{i} restarted with changes on holds it pinned");
    }
    c.deliver_if = Box::new(|_, _, _| true);
    let committed = |c: &Cluster| (0..3).all(|i| c.value(i, "k") == Some(b"v".to_vec()));
    assert!(c.run_until(100_000, committed), "committed again everywhere");
    for i in 0..3 {
        assert!(c.node(i).pinned_in_doubt().is_empty(), "n{i}: decided, nothing pinned");
    }
}

/// Which replayed shares are pinned: those prepared in a life that logged `ChangesOff`, and
/// those a snapshot lists as pinned; not those of a life with changes, nor a snapshot's
/// others. The node and the log reader agree.
#[test]
fn pins_replay_from_the_life_and_from_snapshots() {
    use dkv_core::record::{SnapshotHeaderInEpoch, TxnRecord};
    use dkv_core::{Config, Epoch, NodeSet, RequestId, TxnId};
    let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number: 7 };
    let share = TxnRecord {
        txn,
        request: RequestId { client: dkv_core::ClientId(9), seq: 1 },
        ops: vec![TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() }].into(),
        participants: NodeSet::first(3),
    };
    let prepared = Record::PreparedInEpoch { epoch: Epoch::FIRST, txn: share.clone() };
    let snapshot = |pinned: bool| {
        let header = SnapshotHeaderInEpoch { incarnation: 1, prepared: vec![share.clone()], ..Default::default() };
        let mut records = vec![Record::SnapshotBeginInEpoch(Box::new(header))];
        if pinned {
            records.push(Record::SnapshotPinned(vec![txn]));
        }
        records.extend([Record::SnapshotVersionedEntries(Vec::new()), Record::SnapshotEnd { entries: 0 }]);
        records
    };
    let boot = Record::BootTracked { incarnation: 1 };
    let later = Record::BootTracked { incarnation: 2 };
    let decided = Record::Aborted { txn };
    let cases = [
        ("a life without changes", vec![boot.clone(), Record::ChangesOff, prepared.clone()], true),
        ("a life with changes", vec![boot.clone(), prepared.clone()], false),
        ("a later life with changes", vec![boot.clone(), Record::ChangesOff, later.clone(), prepared.clone()], false),
        ("decided", vec![boot.clone(), Record::ChangesOff, prepared.clone(), decided.clone()], false),
        (
            "prepared again in a later life with changes",
            vec![boot.clone(), Record::ChangesOff, prepared.clone(), decided, later, prepared],
            false,
        ),
        ("a snapshot's pin", snapshot(true), true),
        ("a snapshot without pins", snapshot(false), false),
    ];
    for (what, records, pinned) in cases {
        let expected = if pinned { vec![txn] } else { Vec::new() };
        let read = dkv_core::recovery::pinned_in_doubt(records.clone(), NodeId(0)).unwrap();
        assert_eq!(read, expected, "{what}: read from the log");
        let mut config = Config::new(NodeId(0), NodeSet::first(3));
        config.timing.leases = true;
        let node = Node::start(config, records, Time::ZERO).expect("recovery succeeds");
        assert_eq!(node.pinned_in_doubt(), expected, "{what}: the node");
    }
}

/// A node with changes off logs `ChangesOff` with every start and after every snapshot, so
/// that compaction, which drops everything before a snapshot, never leaves a share of the life
/// replayed unpinned.
#[test]
fn a_snapshot_keeps_the_life_without_changes() {
    let mut c = Cluster::with_config(2, |cfg| cfg.bounds.snapshot_records_min = 10);
    for seq in 1..=30u64 {
        c.request(0, txn(1, seq, vec![put("k", &seq.to_string())]));
        assert!(c.settle());
    }
    let durable = &c.disks[1].durable;
    assert!(durable[0].begins_snapshot(), "compacted to its last snapshot");
    let end = durable.iter().position(|r| matches!(r, Record::SnapshotEnd { .. })).unwrap();
    assert_eq!(durable[end + 1], Record::ChangesOff, "logged again after the snapshot's end");
    // A share prepared now, after the compaction, replays pinned.
    c.auto_durable = false;
    c.request(0, txn(1, 31, vec![put("k", "late")]));
    c.deliver_all();
    c.make_durable(1);
    c.crash(1);
    let read = dkv_core::recovery::pinned_in_doubt(c.disks[1].durable.clone(), NodeId(1)).unwrap();
    assert_eq!(read.len(), 1, "the late share is pinned: {read:?}");
}

/// A share votes pinned only if its log pins it, whatever mode the node runs in now (review
/// finding). Logs of a build before pins (no `ChangesOff`): every node stops after a commit was
/// made visible, before any record of its decision is durable, and restarts on a build with
/// pins, changes off. The shares are not pinned, so the restarted coordinator's round draws
/// plain YES votes and decides the commit again on its copies, never on the votes alone: a
/// switch to changes, which looks only at recorded pins, can then never settle a commit that
/// was made visible on unrecorded ones.
#[test]
fn a_share_votes_pinned_only_if_its_log_pins_it() {
    let mut c = Cluster::durable_by_hand(3);
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    (0..3).for_each(|i| c.make_durable(i));
    c.deliver_all();
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    for i in 0..3 {
        c.crash(i);
        c.disks[i].durable.retain(|r| *r != Record::ChangesOff);
        assert!(dkv_core::recovery::pinned_in_doubt(c.disks[i].durable.clone(), NodeId(i as u8)).unwrap().is_empty());
    }
    c.auto_durable = true;
    c.delivered.clear();
    (0..3).for_each(|i| c.restart(i));
    let committed = |c: &Cluster| (0..3).all(|i| c.value(i, "k") == Some(b"v".to_vec()));
    assert!(c.run_until(100_000, committed), "committed again everywhere");
    let votes: Vec<_> = c
        .delivered
        .iter()
        .filter_map(|(_, _, m)| match m {
            Message::Vote { vote, .. } => Some(vote.clone()),
            _ => None,
        })
        .collect();
    assert!(!votes.is_empty() && votes.iter().all(|v| *v == dkv_core::Vote::Yes), "plain YES votes: {votes:?}");
    let commit = |m: &Message| matches!(m, Message::Decision { decision: dkv_core::Decision::Commit, .. });
    assert!(c.delivered.iter().any(|(_, _, m)| commit(m)), "decided on its copies: COMMIT sent");
}
