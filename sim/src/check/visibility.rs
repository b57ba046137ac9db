//! Visibility (docs/protocol.md §7.2): a commit becomes visible anywhere — a client told its
//! committed outcome, or a node's store changed by it — only once its decision is durable on
//! copies that are a majority of the cluster, all members (§7.3: a majority of the members when
//! every node is one). With configuration changes off (leases off), a commit may instead be
//! visible once every member's share of it is durable ("Visible on every YES", §7.2): then no
//! settlement can ever decide it, and every YES settles it. So may a commit in a configuration
//! of the three nodes of a three-node cluster with changes on (§7.2, "Visible on every YES
//! with changes on"): a settlement there infers it from its reports (§7.4, "Inferred commits"). The world shows this checker every record as it becomes durable
//! (a coordinator's `CommitDecided`, a participant's `CommitLearned`), every record as a node
//! emits it (an own share's `PreparedInEpoch` names the request, `CommitDecided` marks the
//! committed attempt, `Committed` is a node applying a commit to its store), every reply, and
//! every node as it starts (what its log replay applied to its store shows in its completion
//! records); at each visible moment it counts the nodes whose disk holds the decision, among
//! the members of the transaction's epoch (from the `Installed` records the nodes emit). A
//! commit a chosen settlement commits is exempt: the settlement decided it for every member,
//! whoever holds it (docs/protocol.md §7.4). A copy counts once it was durable, even if a disk
//! lost it since (a data dir lost, a damaged last record, a log replaced by a catch-up): that
//! loss is one of the failures the copies are there to survive, and the protocol cannot see it
//! (seen with minority faults: a member acknowledged, then went away with its data dir lost,
//! before the copy that made the commit visible was counted). A copy counted before it was
//! durable never was, and is caught.

use super::Violation;
use dkv_core::{Epoch, NodeId, NodeSet, Outcome, Record, Reply, RequestId, TxnId};
use std::collections::{BTreeMap, BTreeSet};

pub struct Visibility {
    /// The nodes of the run.
    members: usize,
    /// Configuration changes are off: every member's durable share also makes a commit
    /// visible.
    visible_on_every_yes: bool,
    /// Per node: the transactions whose share is durable on its disk.
    shares: Vec<BTreeSet<TxnId>>,
    /// The members of each epoch: the first is every node; later ones as installed.
    configurations: BTreeMap<Epoch, NodeSet>,
    /// The epoch of each transaction, from its shares' records.
    epochs: BTreeMap<TxnId, Epoch>,
    /// Commits a chosen settlement committed.
    settled: BTreeSet<TxnId>,
    /// Commits already seen visible at a majority: a commit becomes visible once, and a replay
    /// that applies it again later (after a member lost its data dir, say) is no new moment.
    visible: BTreeSet<TxnId>,
    /// Per node: the transactions whose commit is durable on its disk. A durable record stays
    /// durable (compaction keeps what a snapshot carries) unless the disk loses it: the whole
    /// data dir ([`Visibility::forget_node`]) or a damaged last record ([`Visibility::lost`]).
    durable: Vec<BTreeSet<TxnId>>,
    /// The request of each transaction whose coordinator logged its own share.
    requests: BTreeMap<TxnId, RequestId>,
    /// The attempts of each request whose coordinator decided commit. One at most becomes
    /// visible: a coordinator cut off in an epoch the others settled may still decide commit
    /// there, for an attempt the settlement aborted, while another attempt commits; that
    /// decision never reaches a majority (the members it needs are frozen or gone), and is no
    /// visible moment.
    committed: BTreeMap<RequestId, BTreeSet<TxnId>>,
    /// With changes on: commits seen visible on every YES, and settled commits that no node
    /// held a durable decision of when the settlement was installed (inferred).
    on_every_yes: u64,
    inferred: BTreeSet<TxnId>,
}

impl Visibility {
    pub fn new(members: usize, visible_on_every_yes: bool) -> Visibility {
        let first = NodeSet::from_ids((0..members).map(|i| NodeId(i as u8))).expect("a small cluster");
        Visibility {
            members,
            visible_on_every_yes,
            shares: vec![BTreeSet::new(); members],
            configurations: BTreeMap::from([(Epoch::FIRST, first)]),
            epochs: BTreeMap::new(),
            settled: BTreeSet::new(),
            visible: BTreeSet::new(),
            durable: vec![BTreeSet::new(); members],
            requests: BTreeMap::new(),
            committed: BTreeMap::new(),
            on_every_yes: 0,
            inferred: BTreeSet::new(),
        }
    }

    /// With changes on: how many commits became visible on every YES, and how many commits
    /// settlements inferred.
    pub fn with_changes_on(&self) -> (u64, u64) {
        (self.on_every_yes, self.inferred.len() as u64)
    }

    /// The cluster switched to configuration changes: from now on a commit is visible only
    /// on its decision's copies. (One seen visible before stays so.)
    pub fn changes_on(&mut self) {
        self.visible_on_every_yes = false;
    }

    /// `record` became durable on node `node`'s disk.
    pub fn observe_durable(&mut self, node: usize, record: &Record) {
        match record {
            Record::CommitDecided { txn } | Record::CommitLearned { txn } => {
                self.durable[node].insert(*txn);
            }
            // A share a catch-up took from a member's snapshot is logged without its epoch, or
            // in the snapshot's header.
            Record::PreparedInEpoch { txn, .. } | Record::Prepared(txn) => {
                self.shares[node].insert(txn.txn);
            }
            Record::SnapshotBeginInEpoch(header) => {
                let held = header.prepared.iter().chain(&header.commits_held);
                self.shares[node].extend(held.map(|t| t.txn));
            }
            _ => {}
        }
    }

    /// Node `node` emitted `record` (it is not durable yet).
    pub fn observe_emitted(&mut self, node: usize, record: &Record, violations: &mut Vec<Violation>) {
        if let Record::PreparedInEpoch { epoch, txn: t } = record {
            self.epochs.insert(t.txn, *epoch);
        }
        match record {
            Record::Installed(value) => {
                self.configurations.insert(value.configuration.epoch, value.configuration.members);
                self.settled.extend(value.settlement.commit_set().iter().copied());
                // An attempt a settlement commits is its request's committed attempt too,
                // whether or not its coordinator ever decided it (a commit inferred from the
                // reports, docs/protocol.md §7.4).
                for txn in value.settlement.commit_set() {
                    if !self.visible_on_every_yes && self.durable.iter().all(|held| !held.contains(txn)) {
                        self.inferred.insert(*txn);
                    }
                    if let Some(&request) = self.requests.get(txn) {
                        self.committed.entry(request).or_default().insert(*txn);
                    }
                }
            }
            Record::PreparedInEpoch { txn: t, .. } if usize::from(t.txn.coordinator.0) == node => {
                self.requests.insert(t.txn, t.request);
            }
            Record::CommitDecided { txn } => {
                if let Some(request) = self.requests.remove(txn) {
                    self.committed.entry(request).or_default().insert(*txn);
                }
            }
            Record::Committed { txn } => self.check(*txn, || format!("n{node} applies it"), violations),
            _ => {}
        }
    }

    /// Node `node` started: every commit its replay applied (its completion records name
    /// their requests) must be one that was visible.
    pub fn observe_start(&mut self, node: usize, started: &dkv_core::Node, violations: &mut Vec<Violation>) {
        for record in started.completions() {
            if let Some(txns) = self.committed.get(&record.request).cloned() {
                self.check_any(&txns, || format!("n{node}'s replay applies it"), violations);
            }
        }
    }

    /// A node replies to a client.
    pub fn observe_reply(&mut self, reply: &Reply, violations: &mut Vec<Violation>) {
        if !matches!(reply.outcome, Outcome::Committed(_) | Outcome::Failed(_)) {
            return;
        }
        if let Some(txns) = self.committed.get(&reply.id).cloned() {
            self.check_any(&txns, || format!("request {} is told {:?}", reply.id, reply.outcome), violations);
        }
    }

    /// A request's outcome became visible: one of its attempts decided commit must be visible
    /// (checked as [`Visibility::check`] does, and reported for each if none is).
    fn check_any(&mut self, txns: &BTreeSet<TxnId>, what: impl Fn() -> String, violations: &mut Vec<Violation>) {
        let mut failed = Vec::new();
        for &txn in txns {
            let before = failed.len();
            self.check(txn, &what, &mut failed);
            if failed.len() == before {
                return;
            }
        }
        violations.extend(failed);
    }

    fn check(&mut self, txn: TxnId, what: impl FnOnce() -> String, violations: &mut Vec<Violation>) {
        if self.settled.contains(&txn) || self.visible.contains(&txn) {
            return;
        }
        let epoch = self.epochs.get(&txn).copied().unwrap_or(Epoch::FIRST);
        let Some(&members) = self.configurations.get(&epoch) else {
            let message = format!("{txn} became visible ({}) in {epoch}, which no node installed", what());
            return violations.push(Violation::new("visibility", message));
        };
        let holders: Vec<usize> = (0..self.members)
            .filter(|&n| members.contains(NodeId(n as u8)) && self.durable[n].contains(&txn))
            .collect();
        // Changes off, or the three nodes of a three-node cluster: every member holds its share
        // durably. Like a copy of the decision, a share counts once durable, whatever its disk
        // lost since.
        let on_every_yes = self.visible_on_every_yes || self.members == 3 && members.len() == 3;
        let every_share = on_every_yes
            && (0..self.members).all(|n| !members.contains(NodeId(n as u8)) || self.shares[n].contains(&txn));
        // A majority of the run's nodes, all members of the epoch.
        if 2 * holders.len() > self.members || every_share {
            self.visible.insert(txn);
            if !self.visible_on_every_yes && 2 * holders.len() <= self.members {
                self.on_every_yes += 1;
            }
        } else if on_every_yes {
            let shares: Vec<usize> = (0..self.members).filter(|&n| self.shares[n].contains(&txn)).collect();
            let message = format!(
                "{txn} became visible ({}) while its decision was durable on {holders:?} only and its share on {shares:?}, of members {members}",
                what(),
            );
            violations.push(Violation::new("visibility", message));
        } else {
            let message = format!(
                "{txn} became visible ({}) while its decision was durable on {holders:?} only, of members {members}",
                what(),
            );
            violations.push(Violation::new("visibility", message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::record::TxnRecord;
    use dkv_core::{ClientId, NodeId, NodeSet};

    fn txn() -> TxnId {
        TxnId { coordinator: NodeId(0), incarnation: 1, number: 0 }
    }

    fn decided(v: &mut Visibility) -> RequestId {
        let request = RequestId { client: ClientId(1), seq: 1 };
        let t = TxnRecord { txn: txn(), request, ops: Vec::new().into(), participants: NodeSet::first(3) };
        let mut violations = Vec::new();
        v.observe_emitted(0, &Record::PreparedInEpoch { epoch: dkv_core::Epoch::FIRST, txn: t }, &mut violations);
        v.observe_emitted(0, &Record::CommitDecided { txn: txn() }, &mut violations);
        assert!(violations.is_empty());
        request
    }

    /// A reply or an apply before a majority holds the decision is reported; after, it is not.
    #[test]
    fn visible_before_a_majority_is_reported() {
        let mut v = Visibility::new(3, false);
        let request = decided(&mut v);
        let reply = Reply { id: request, outcome: Outcome::Committed(Vec::new()) };
        let mut violations = Vec::new();
        v.observe_durable(0, &Record::CommitDecided { txn: txn() });
        v.observe_reply(&reply, &mut violations);
        v.observe_emitted(1, &Record::Committed { txn: txn() }, &mut violations);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations.iter().all(|v| v.checker == "visibility"));
        violations.clear();
        v.observe_durable(2, &Record::CommitLearned { txn: txn() });
        v.observe_reply(&reply, &mut violations);
        v.observe_emitted(1, &Record::Committed { txn: txn() }, &mut violations);
        assert!(violations.is_empty(), "{violations:?}");
    }

    /// With changes off, or with the three nodes of a three-node cluster as members, a commit is
    /// visible once every member's share is durable, before any copy of the decision is; with
    /// one share not durable it is reported. With changes on and more nodes, the shares do not
    /// count (`changes_on_with_five_nodes_shares_do_not_count`).
    #[test]
    fn every_durable_share_makes_a_commit_visible_with_changes_off_or_three_nodes() {
        for changes_off in [true, false] {
            let mut v = Visibility::new(3, changes_off);
            let request = decided(&mut v);
            let reply = Reply { id: request, outcome: Outcome::Committed(Vec::new()) };
            let share = TxnRecord { txn: txn(), request, ops: Vec::new().into(), participants: NodeSet::first(3) };
            let prepared = Record::PreparedInEpoch { epoch: dkv_core::Epoch::FIRST, txn: share };
            let mut violations = Vec::new();
            v.observe_durable(0, &prepared);
            v.observe_durable(1, &prepared);
            v.observe_reply(&reply, &mut violations);
            assert_eq!(violations.len(), 1, "two shares of three: {violations:?}");
            violations.clear();
            v.observe_durable(2, &prepared);
            v.observe_reply(&reply, &mut violations);
            assert!(violations.is_empty(), "every share, changes off {changes_off}: {violations:?}");
        }
    }

    #[test]
    fn changes_on_with_five_nodes_shares_do_not_count() {
        let mut v = Visibility::new(5, false);
        let request = decided(&mut v);
        let reply = Reply { id: request, outcome: Outcome::Committed(Vec::new()) };
        let share = TxnRecord { txn: txn(), request, ops: Vec::new().into(), participants: NodeSet::first(5) };
        let prepared = Record::PreparedInEpoch { epoch: dkv_core::Epoch::FIRST, txn: share };
        for node in 0..5 {
            v.observe_durable(node, &prepared);
        }
        let mut violations = Vec::new();
        v.observe_reply(&reply, &mut violations);
        assert_eq!(violations.len(), 1, "shares only, five nodes: {violations:?}");
    }

    /// Copies that were durable still count after a disk lost them (the whole data dir, or a
    /// damaged last record): that loss is a failure the copies survive. (Seen with minority
    /// faults: a member acknowledged, then went away with its data dir lost, before the
    /// coordinator counted the copy that made the commit visible.) One never durable does not.
    #[test]
    fn copies_a_disk_lost_after_they_were_durable_count() {
        let mut v = Visibility::new(3, false);
        let request = decided(&mut v);
        let reply = Reply { id: request, outcome: Outcome::Committed(Vec::new()) };
        let mut violations = Vec::new();
        v.observe_durable(0, &Record::CommitDecided { txn: txn() });
        v.observe_reply(&reply, &mut violations);
        assert_eq!(violations.len(), 1, "one copy of three nodes: {violations:?}");
        violations.clear();
        // n1's data dir is lost now: the world tells the checker nothing, the copy stays.
        v.observe_durable(1, &Record::CommitLearned { txn: txn() });
        v.observe_reply(&reply, &mut violations);
        assert!(violations.is_empty(), "n1's copy was durable before its disk was lost: {violations:?}");
    }

    /// A node whose log replay applied a commit (its completion records show it) is checked as
    /// it starts.
    #[test]
    fn a_commit_applied_by_replay_is_checked_at_the_start() {
        let mut v = Visibility::new(3, false);
        let request = decided(&mut v);
        let t = TxnRecord {
            txn: txn(),
            request,
            ops: vec![dkv_core::TxnOp::Delete { key: b"k".to_vec() }].into(),
            participants: NodeSet::first(3),
        };
        let log = vec![
            Record::PreparedInEpoch { epoch: dkv_core::Epoch::FIRST, txn: t },
            Record::CommitLearned { txn: txn() },
            Record::Committed { txn: txn() },
        ];
        let start = || {
            let config = dkv_core::Config::new(NodeId(1), NodeSet::first(3));
            dkv_core::Node::start(config, log.clone(), dkv_core::Time::ZERO).unwrap()
        };
        let mut violations = Vec::new();
        v.observe_durable(1, &Record::CommitLearned { txn: txn() });
        v.observe_start(1, &start(), &mut violations);
        assert_eq!(violations.len(), 1, "durable at n1 alone: {violations:?}");
        violations.clear();
        v.observe_durable(0, &Record::CommitDecided { txn: txn() });
        v.observe_start(1, &start(), &mut violations);
        assert!(violations.is_empty(), "{violations:?}");
    }
}
