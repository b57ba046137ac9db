//! The verdict on a torture run, by the simulator's own checkers: linearizability and strict
//! serializability of the history; durability and convergence of the final state, rebuilt from
//! each node's data dir the way a restarting server rebuilds it; and exactly-once, from every
//! record each node's log ever held, read by the same reader recovery uses.

use super::log_keeper::{KeptSegment, missing_numbers};
use dkv_core::codec::wal::WalEnd;
use dkv_core::{Config, Node, NodeId, NodeSet, Record, Time};
use dkv_net::Wal;
use dkv_sim::Violation;
use dkv_sim::check::exactly_once::ExactlyOnce;
use dkv_sim::check::linearizability::{self, Findings};
use dkv_sim::check::{convergence, durability};
use dkv_sim::history::History;
use std::path::Path;

/// What every checker found.
#[derive(Debug, Default)]
pub struct Checks {
    pub linearizability: Findings,
    pub durability: Vec<Violation>,
    pub exactly_once: Vec<Violation>,
    pub convergence: Vec<Violation>,
    /// Durable applications of a request the exactly-once checker saw, over all nodes.
    pub durable_applications: u64,
    /// Log segments it read, over all nodes.
    pub segments_read: usize,
    /// Writes with an unknown outcome that no node ever decided to commit, now known not
    /// applied (see [`resolve_unknown_writes`]).
    pub resolved_not_applied: usize,
}

impl Checks {
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.linearizability
            .violations
            .iter()
            .chain(&self.durability)
            .chain(&self.exactly_once)
            .chain(&self.convergence)
    }

    /// Nothing found, and every search reached a verdict.
    pub fn passed(&self) -> bool {
        self.violations().next().is_none() && self.linearizability.inconclusive == 0
    }
}

/// Checks `history` against the stopped cluster's data dirs and its kept log segments, after
/// resolving what the logs tell of its unknown outcomes.
pub fn check(history: &mut History, data_dirs: &[&Path], kept: &[Vec<KeptSegment>]) -> Checks {
    let mut checks = Checks::default();
    let decided = exactly_once(history, kept, &mut checks);
    checks.resolved_not_applied = resolve_unknown_writes(history, &decided);
    let history = &*history;
    checks.linearizability = linearizability::check(history);
    let nodes: Vec<Result<Node, String>> =
        data_dirs.iter().enumerate().map(|(i, dir)| rebuild(i, data_dirs.len(), dir)).collect();
    for (i, node) in nodes.iter().enumerate() {
        if let Err(error) = node {
            checks
                .convergence
                .push(Violation::new("recovery", format!("n{i} cannot be rebuilt from its data dir: {error}")));
        }
    }
    let replicas: Vec<Option<&Node>> = nodes.iter().map(|n| n.as_ref().ok()).collect();
    // Real clusters keep the default bounds: no completion table fills, so none evicts.
    checks.convergence.extend(convergence::check(&replicas, false));
    if let Some(Some(n0)) = replicas.first() {
        checks.durability = durability::check(history, n0.store());
    }
    checks
}

/// Settles every write with an unknown outcome from the decisions in the logs (see
/// [`History::settle_unknown`]) and returns how many it found never applied.
///
/// A coordinator writes its decision record as it tells the participants to commit, and each of
/// them writes the commit as it learns it. Nothing is applied before a majority holds it durably,
/// or (with configuration changes off) before every share is durable with a pinned YES, when a
/// restarted coordinator decides it again and writes the decision then. So, once the run has
/// settled, a request with no decision or learned commit in any log was never applied anywhere,
/// and one with either took effect exactly once. This only narrows what the checkers accept: were a node to
/// apply a write without logging its decision, the reads that saw it would now be violations.
/// Each unknown write widens the linearizability search (it may take effect at any later
/// moment, or never); without this, a long run's hundreds of writes cut off by kills of every
/// node make the search run out of budget.
fn resolve_unknown_writes(history: &mut History, decided: &ExactlyOnce) -> usize {
    history.settle_unknown(|request| decided.applied_anywhere(request), true).1
}

/// Feeds every record of every kept segment, node by node in log order, to the simulator's
/// exactly-once checker, and returns one that knows the requests some node ever durably held as
/// committed (a decision, a learned commit, or an application). A segment the keeper never
/// saw, or one damaged in the middle, means the check cannot vouch for that node: that is
/// reported too.
///
/// A node that caught up by a state transfer holds a member's state from then on: what it
/// applies from it is not a second application at that node, so the checker that judges
/// forgets the node there (as the simulator does at a catch-up). The one returned forgets
/// nothing: a commit whose records every node later replaced by an adopted snapshot was still
/// applied, and a write with an unknown outcome must not be settled as never applied for it.
fn exactly_once(history: &History, kept: &[Vec<KeptSegment>], checks: &mut Checks) -> ExactlyOnce {
    let mut checker = ExactlyOnce::new(kept.len());
    let mut ever_decided = ExactlyOnce::new(kept.len());
    let mut ignored = Vec::new();
    for (i, segments) in kept.iter().enumerate() {
        let missing = missing_numbers(segments);
        if !missing.is_empty() {
            let message = format!("segments {missing:?} of n{i} were deleted before they were kept; cannot check them");
            checks.exactly_once.push(Violation::new("exactly-once", message));
        }
        for segment in segments {
            match dkv_net::wal::read_segment_file(&segment.path) {
                Ok((records, end)) => {
                    checks.segments_read += 1;
                    for record in &records {
                        if opens_an_adopted_log(record) {
                            checker.forget_node(i);
                        }
                        checker.observe_durable(i, record, history, &mut checks.exactly_once);
                        ever_decided.observe_durable(i, record, history, &mut ignored);
                    }
                    if let WalEnd::Corrupt { offset, error, .. } = end {
                        let message =
                            format!("segment {} of n{i} is damaged at byte {offset}: {error}", segment.number);
                        checks.exactly_once.push(Violation::new("recovery", message));
                    }
                }
                Err(error) => checks.exactly_once.push(Violation::new("recovery", error.to_string())),
            }
        }
    }
    checks.durable_applications = checker.applications();
    ever_decided
}

/// Whether `record` begins a log a node adopted from a member by a state transfer
/// (docs/protocol.md §7.6): the adopted log starts with a snapshot whose incarnation is zeroed
/// (`dkv_core::catch_up::Adoption`), while a node's own snapshot carries its incarnation, which
/// is 1 or more from its first start.
fn opens_an_adopted_log(record: &Record) -> bool {
    match record {
        Record::SnapshotBegin(header) => header.incarnation == 0,
        Record::SnapshotBeginInEpoch(header) => header.incarnation == 0,
        _ => false,
    }
}

/// Node `i` of `nodes` as a server would start it from `dir`: the log recovered by the real
/// WAL, replayed by the real core.
fn rebuild(i: usize, nodes: usize, dir: &Path) -> Result<Node, String> {
    let (_wal, recovery) = Wal::open(dir).map_err(|e| e.to_string())?;
    let config = Config::new(NodeId(i as u8), NodeSet::first(nodes));
    Node::start(config, recovery.records, Time::ZERO).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::record::TxnRecord;
    use dkv_core::{ClientId, Epoch, RequestId, TxnId, TxnOp};
    use dkv_sim::history::{Op, OpKind, Result as OpResult};
    use std::path::PathBuf;

    const NODES: usize = 3;

    fn put(seq: u64, result: OpResult) -> Op {
        let response = (result != OpResult::Unknown).then_some(10);
        Op {
            client: ClientId(7),
            seq,
            kind: OpKind::Txn { ops: vec![TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() }] },
            invoke: 0,
            response,
            result,
            attempts: 1,
            abandoned_at: None,
        }
    }

    /// Empty data dirs for `NODES` nodes: each rebuilds as a fresh node with an empty store.
    fn empty_data_dirs(root: &Path) -> Vec<PathBuf> {
        (0..NODES).map(|i| root.join(format!("node-{i}"))).collect()
    }

    fn check_with(mut history: History, root: &Path, kept: &[Vec<KeptSegment>]) -> Checks {
        let dirs = empty_data_dirs(root);
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        check(&mut history, &dirs, kept)
    }

    /// A write the clients saw commit that no node holds is a durability violation; the same
    /// write with an unknown outcome may never have happened, and passes.
    #[test]
    fn committed_write_missing_from_every_node_is_a_durability_violation() {
        let kept = vec![Vec::new(); NODES];
        let root = tempfile::tempdir().unwrap();
        let lost = check_with(History { ops: vec![put(1, OpResult::Committed(vec![]))] }, root.path(), &kept);
        assert_eq!(lost.durability.len(), 1, "{:?}", lost.durability);
        assert!(!lost.passed());
        let root = tempfile::tempdir().unwrap();
        let maybe = check_with(History { ops: vec![put(1, OpResult::Unknown)] }, root.path(), &kept);
        assert!(maybe.passed(), "{:?}", maybe.violations().collect::<Vec<_>>());
    }

    /// The decision record of transaction `number` for the request of `put(1, ..)`.
    fn decided_record(number: u64) -> Record {
        Record::Decided(TxnRecord {
            txn: TxnId { coordinator: NodeId(0), incarnation: 1, number },
            request: RequestId { client: ClientId(7), seq: 1 },
            ops: vec![TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() }].into(),
            participants: NodeSet::first(NODES),
        })
    }

    /// Kept segments for `NODES` nodes: node 0 holds `records`, written by the real WAL in a
    /// folder under `root`.
    fn kept_log(root: &Path, records: &[Record]) -> Vec<Vec<KeptSegment>> {
        kept_logs(root, &[records])
    }

    /// Kept segments for `NODES` nodes: node 0 holds each of `logs` in turn, each written by
    /// the real WAL in a folder of its own under `root` (a state transfer replaces a node's
    /// log with another), numbered on as the keeper numbers what it keeps.
    fn kept_logs(root: &Path, logs: &[&[Record]]) -> Vec<Vec<KeptSegment>> {
        let mut kept = vec![Vec::new(); NODES];
        for (l, records) in logs.iter().enumerate() {
            let log = root.join(format!("kept-log-{l}"));
            let (mut wal, _) = Wal::open(&log).unwrap();
            for record in *records {
                wal.append(record).unwrap();
            }
            wal.sync().unwrap();
            let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&log)
                .unwrap()
                .filter_map(|entry| {
                    let path = entry.unwrap().path();
                    Some((dkv_net::wal::segment_number(path.file_name()?.to_str()?)?, path))
                })
                .collect();
            files.sort();
            for (_, path) in files {
                let number = kept[0].len() as u64 + 1;
                kept[0].push(KeptSegment { number, inode: 0, path });
            }
        }
        kept
    }

    /// A request applied under two transactions in one node's kept log, written and read back
    /// by the real WAL, is an exactly-once violation; applied once, it passes.
    #[test]
    fn request_applied_twice_in_a_kept_log_is_an_exactly_once_violation() {
        for (records, expected) in [(vec![decided_record(1)], 0), (vec![decided_record(1), decided_record(2)], 1)] {
            let root = tempfile::tempdir().unwrap();
            let kept = kept_log(root.path(), &records);
            let checks = check_with(History { ops: vec![put(1, OpResult::Unknown)] }, root.path(), &kept);
            assert_eq!(checks.exactly_once.len(), expected, "{:?}", checks.exactly_once);
            assert_eq!(checks.durable_applications, records.len() as u64);
        }
    }

    /// A request applied again in a log the node adopted from a member (its snapshot's
    /// incarnation zeroed) is the member's application, not a second one; applied again after
    /// a snapshot of the node's own, it is a violation.
    #[test]
    fn a_request_applied_again_only_in_an_adopted_log_is_applied_once() {
        use dkv_core::SnapshotHeader;
        for (incarnation, expected) in [(0, 0), (1, 1)] {
            let snapshot = Record::SnapshotBegin(Box::new(SnapshotHeader { incarnation, ..SnapshotHeader::default() }));
            let adopted = [snapshot, Record::SnapshotEnd { entries: 0 }, decided_record(2)];
            let root = tempfile::tempdir().unwrap();
            let kept = kept_logs(root.path(), &[&[decided_record(1)], &adopted]);
            let checks = check_with(History { ops: vec![put(1, OpResult::Unknown)] }, root.path(), &kept);
            assert_eq!(checks.exactly_once.len(), expected, "incarnation {incarnation}: {:?}", checks.exactly_once);
        }
    }

    /// A write with an unknown outcome decided in a log the node later replaced by an adopted
    /// one (whose snapshot holds the write as data, not as a decision) was applied: a read of
    /// its value passes.
    #[test]
    fn a_write_decided_before_a_catch_up_stays_applied() {
        let adopted = [Record::SnapshotBegin(Box::default()), Record::SnapshotEnd { entries: 0 }];
        let read = Op {
            client: ClientId(8),
            seq: 1,
            kind: OpKind::Get { key: b"k".to_vec() },
            invoke: 20,
            response: Some(30),
            result: OpResult::Read(Some(b"v".to_vec()), 1),
            ..put(1, OpResult::Unknown)
        };
        let root = tempfile::tempdir().unwrap();
        let kept = kept_logs(root.path(), &[&[decided_record(1)], &adopted]);
        let checks = check_with(History { ops: vec![put(1, OpResult::Unknown), read] }, root.path(), &kept);
        assert_eq!(checks.resolved_not_applied, 0);
        assert!(checks.passed(), "{:?}", checks.violations().collect::<Vec<_>>());
    }

    /// A write with an unknown outcome that no node decided was not applied, so a read of its
    /// value is a violation; with its decision in a log, it may have been applied, and passes.
    #[test]
    fn unknown_write_that_no_node_decided_is_not_applied() {
        let read = Op {
            seq: 1,
            kind: OpKind::Get { key: b"k".to_vec() },
            invoke: 20,
            response: Some(30),
            result: OpResult::Read(Some(b"v".to_vec()), 1),
            ..put(1, OpResult::Unknown)
        };
        let history = || History { ops: vec![put(1, OpResult::Unknown), Op { client: ClientId(8), ..read.clone() }] };
        let root = tempfile::tempdir().unwrap();
        let undecided = check_with(history(), root.path(), &kept_log(root.path(), &[]));
        assert_eq!(undecided.resolved_not_applied, 1);
        assert_eq!(undecided.linearizability.violations.len(), 1, "{:?}", undecided.linearizability);
        let root = tempfile::tempdir().unwrap();
        let decided = check_with(history(), root.path(), &kept_log(root.path(), &[decided_record(1)]));
        assert_eq!(decided.resolved_not_applied, 0);
        assert!(decided.passed(), "{:?}", decided.violations().collect::<Vec<_>>());
        // A participant's learned commit says the same, with or without the coordinator's
        // decision record (a kill can take that one while COMMIT is already out).
        let Record::Decided(t) = decided_record(1) else { unreachable!() };
        let learned =
            [Record::PreparedInEpoch { epoch: Epoch::FIRST, txn: t.clone() }, Record::CommitLearned { txn: t.txn }];
        let root = tempfile::tempdir().unwrap();
        let held = check_with(history(), root.path(), &kept_log(root.path(), &learned));
        assert_eq!(held.resolved_not_applied, 0);
        assert!(held.passed(), "{:?}", held.violations().collect::<Vec<_>>());
    }
}
