//! Recovery: rebuilding a node's state from its log, snapshots included. A snapshot holds
//! exactly what replaying the records before it would rebuild (the node writes them: see
//! `Node::maybe_snapshot`); this file only reads them.

use crate::completions::{Completed, Completion, Completions};
use crate::configuration::{AgreementState, Configuration, Epoch, Value as ConfigValue};
use crate::ids::{NodeId, RequestId, TxnId};
use crate::record::{
    DecisionState, Entry, Record, SnapshotConfiguration, SnapshotHeaderInEpoch, TxnRecord, VersionedEntry,
};
use crate::store::Store;
use crate::votes::{VoteAcceptor, VoteAcceptors, VoteInstance};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// The log contradicts itself. Records are checksummed, so this means a bug or a log assembled
/// from the wrong pieces; the node refuses to start rather than serve wrong data.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecoveryError {
    #[error("record {index} ({kind}) names transaction {txn}, which is not pending at that point of the log")]
    UnknownTransaction { index: usize, kind: &'static str, txn: TxnId },
    #[error("record {index}: transaction {txn} is prepared or decided twice")]
    DuplicateTransaction { index: usize, txn: TxnId },
    #[error("record {index}: transaction {txn} locks a key that {holder} already holds")]
    LockConflict { index: usize, txn: TxnId, holder: TxnId },
    #[error("record {index}: request {request} is prepared under two transactions")]
    DuplicateRequest { index: usize, request: RequestId },
    #[error(
        "transaction {txn} is prepared without a known outcome, yet its request {request} completed already (a node prepares no request that completed, and none completes while one of its shares is prepared)"
    )]
    PreparedButCompleted { txn: TxnId, request: RequestId },
    #[error(
        "record {index}: transaction {txn} was coordinated by another node than {node}; is this another node's data directory?"
    )]
    ForeignTransaction { index: usize, txn: TxnId, node: NodeId },
    #[error("record {index} ({kind}) is not inside a snapshot")]
    OutsideSnapshot { index: usize, kind: &'static str },
    #[error("record {index} ends a snapshot of {expected} entries, but {found} were logged")]
    SnapshotIncomplete { index: usize, expected: u64, found: u64 },
    #[error("record {index} installs {installed}, which does not follow epoch {epoch}")]
    InstalledOutOfOrder { index: usize, installed: Configuration, epoch: Epoch },
    #[error("the log's incarnation number is exhausted")]
    IncarnationExhausted,
    #[error(
        "record {index}: the state of {instance} accepted a value above its promise or without one, or holds another member's cast"
    )]
    InconsistentVoteAcceptor { index: usize, instance: VoteInstance },
}

/// The shares that the log of node `me` holds in doubt and that were voted pinned, with
/// configuration changes off (docs/protocol.md §7.2): what a node restarted from this log would
/// report as [`crate::Node::pinned_in_doubt`]. For tools that read a stopped node's log
/// (`dkv-server availability on` refuses to switch while any is left).
pub fn pinned_in_doubt(records: impl IntoIterator<Item = Record>, me: NodeId) -> Result<Vec<TxnId>, RecoveryError> {
    let completions = Completions::new(usize::MAX, u64::MAX, std::time::Duration::MAX, crate::Time::ZERO);
    let recovered = Recovered::replay(records, me, completions)?;
    // A node that cannot vouch for its log restores nothing from it, pins included.
    if recovered.unvouched {
        return Ok(Vec::new());
    }
    Ok(recovered.pinned.into_iter().collect())
}

/// A snapshot being read: its begin record's index and header, and the store so far.
struct PartialSnapshot {
    index: usize,
    header: SnapshotHeaderInEpoch,
    /// Written by a build before epochs ([`Record::SnapshotBegin`]).
    before_epochs: bool,
    store: Store,
    /// Written by a build that tracks versions (a [`Record::SnapshotVersionedEntries`] in it).
    tracked: bool,
    /// Its [`Record::SnapshotConfiguration`], if it has one (a build before configurations
    /// wrote none).
    configuration: Option<SnapshotConfiguration>,
    /// Its [`Record::SnapshotVoteAcceptors`] records' states (none in a snapshot of a build
    /// before vote instances, or of a node that kept none).
    vote_acceptors: VoteAcceptors,
    /// Its [`Record::SnapshotFinishedMarks`] (an earlier build logged them after the end).
    marks: Vec<TxnId>,
    /// Its [`Record::SnapshotPinned`] records' shares.
    pinned: BTreeSet<TxnId>,
}

/// The state a log describes, as plain data; the node hands each role its part.
pub(crate) struct Recovered {
    /// The newest incarnation the log names.
    pub(crate) incarnation: u64,
    /// The epoch of the node's transactions (epoch 1 for a log of a build before epochs).
    pub(crate) epoch: Epoch,
    pub(crate) store: Store,
    pub(crate) completions: Completions,
    /// Transactions prepared here whose outcome the log does not hold: remote shares, and this
    /// node's own shares of transactions it had not decided (in doubt at their coordinator).
    pub(crate) prepared: BTreeMap<TxnId, TxnRecord>,
    /// Remote transactions whose commit is logged here but not applied: still locked, they
    /// are applied once known visible.
    pub(crate) commits_held: BTreeMap<TxnId, TxnRecord>,
    /// The prepared transactions logged before versions were tracked: committed, what they
    /// write gets an unknown version (see [`Store::run_untracked`]).
    pub(crate) untracked: BTreeSet<TxnId>,
    /// Whether versions are tracked at this point of the log ([`Record::BootTracked`]).
    tracked: bool,
    /// The keys the unapplied transactions lock, to find overlaps without quadratic scans.
    locked: BTreeMap<Vec<u8>, TxnId>,
    /// This node's commit decisions that are not finished, with whether each is applied
    /// (visible). An unapplied one still locks its keys.
    pub(crate) decisions: BTreeMap<TxnId, (TxnRecord, bool)>,
    /// Committed transactions not known to be finished.
    pub(crate) commit_memory: BTreeSet<TxnId>,
    /// The configuration installed last; `None` for a log that installed none (an earlier
    /// build's, or a new node's): the first configuration, with the configured members.
    pub(crate) configuration: Option<Configuration>,
    /// The chosen values that installed the latest configurations, oldest first (at most
    /// [`crate::record::INSTALLED_KEPT`]).
    pub(crate) installed: Vec<ConfigValue>,
    /// The latest state of the agreement on the configuration after `epoch`.
    pub(crate) agreement: Option<AgreementState>,
    /// The log says it cannot be vouched for ([`Record::Unvouched`]).
    pub(crate) unvouched: bool,
    /// The log says this node began a new cluster and had not heard that every node had
    /// begun too ([`Record::Bootstrapped`]).
    pub(crate) bootstrapped: bool,
    /// Every record replayed is a start record ([`Record::is_start`]): the node holds nothing.
    pub(crate) only_starts: bool,
    /// Each coordinator's latest finished mark in the log (not carried by snapshots).
    pub(crate) finished_marks: BTreeMap<NodeId, TxnId>,
    /// This member's parts in the vote instances of unfinished transactions of its epoch.
    pub(crate) vote_acceptors: VoteAcceptors,
    /// The shares in `prepared` that were voted pinned ([`Record::ChangesOff`]).
    pub(crate) pinned: BTreeSet<TxnId>,
    /// The life being replayed runs with configuration changes off ([`Record::ChangesOff`]).
    changes_off: bool,
}

impl Recovered {
    /// Replays `records` of node `me`. Records are checksummed, yet their contents are still
    /// checked: a log that contradicts itself is refused, never half-trusted.
    pub(crate) fn replay(
        records: impl IntoIterator<Item = Record>,
        me: NodeId,
        completions: Completions,
    ) -> Result<Recovered, RecoveryError> {
        let mut r = Recovered {
            incarnation: 0,
            epoch: Epoch::FIRST,
            store: Store::default(),
            completions,
            prepared: BTreeMap::new(),
            commits_held: BTreeMap::new(),
            untracked: BTreeSet::new(),
            tracked: false,
            locked: BTreeMap::new(),
            decisions: BTreeMap::new(),
            commit_memory: BTreeSet::new(),
            configuration: None,
            installed: Vec::new(),
            agreement: None,
            unvouched: false,
            bootstrapped: false,
            only_starts: true,
            finished_marks: BTreeMap::new(),
            vote_acceptors: VoteAcceptors::default(),
            pinned: BTreeSet::new(),
            changes_off: false,
        };
        let mut partial: Option<PartialSnapshot> = None;
        for (index, record) in records.into_iter().enumerate() {
            let kind = record.kind();
            r.only_starts &= record.is_start();
            let inside_snapshot = record.in_snapshot_body() || matches!(record, Record::SnapshotEnd { .. });
            if partial.is_some() && !inside_snapshot {
                // The snapshot was cut short by a crash and the node went on logging: the
                // records before it still hold the state.
                partial = None;
            }
            let unknown = RecoveryError::UnknownTransaction { index, kind, txn: record_txn(&record) };
            match record {
                Record::Boot { incarnation } => {
                    r.incarnation = r.incarnation.max(incarnation);
                    r.tracked = false;
                    r.changes_off = false;
                }
                Record::BootTracked { incarnation } => {
                    r.incarnation = r.incarnation.max(incarnation);
                    r.tracked = true;
                    r.changes_off = false;
                }
                Record::ChangesOff => r.changes_off = true,
                // An earlier build logged only remote shares as prepared.
                Record::Prepared(t) => r.add_prepared(index, me, t, false)?,
                Record::PreparedInEpoch { epoch, txn: t } => {
                    r.epoch = r.epoch.max(epoch);
                    // Pinned by the life that prepared it: a transaction prepared again in a
                    // later life is pinned as that life runs (second review).
                    if r.changes_off {
                        r.pinned.insert(t.txn);
                    } else {
                        r.pinned.remove(&t.txn);
                    }
                    r.add_prepared(index, me, t, true)?
                }
                Record::Committed { txn } => {
                    if let Some(t) = r.remove_prepared(txn).filter(|t| t.txn.coordinator != me) {
                        // An earlier build's commit, applied as it was learned.
                        let tracked = !r.untracked.remove(&txn);
                        r.apply(&t, tracked);
                    } else if let Some(t) = r.commits_held.remove(&txn) {
                        r.unlock(&t);
                        let tracked = !r.untracked.remove(&txn);
                        r.apply(&t, tracked);
                    } else if let Some((t, applied @ false)) = r.decisions.get_mut(&txn) {
                        *applied = true;
                        let t = t.clone();
                        r.unlock(&t);
                        let tracked = !r.untracked.remove(&txn);
                        r.apply(&t, tracked);
                    } else {
                        return Err(unknown);
                    }
                }
                Record::Aborted { txn } => {
                    r.remove_prepared(txn).ok_or(unknown)?;
                    r.untracked.remove(&txn);
                }
                Record::Decided(t) => {
                    if t.txn.coordinator != me {
                        return Err(RecoveryError::ForeignTransaction { index, txn: t.txn, node: me });
                    }
                    r.ensure_unknown(index, t.txn)?;
                    // An earlier build's decision: applied as it became durable.
                    r.apply(&t, r.tracked);
                    r.decisions.insert(t.txn, (t, true));
                }
                Record::CommitDecided { txn } => {
                    if txn.coordinator != me {
                        return Err(RecoveryError::ForeignTransaction { index, txn, node: me });
                    }
                    let t = r.prepared.remove(&txn).ok_or(unknown)?;
                    r.commit_memory.insert(txn);
                    r.decisions.insert(txn, (t, false));
                }
                Record::CommitLearned { txn } => {
                    let t = r.prepared.remove(&txn).filter(|t| t.txn.coordinator != me).ok_or(unknown)?;
                    r.commit_memory.insert(txn);
                    r.commits_held.insert(txn, t);
                }
                Record::Forgotten { txn } => {
                    let (t, applied) = r.decisions.remove(&txn).ok_or(unknown)?;
                    r.commit_memory.remove(&txn);
                    r.vote_acceptors.finished(txn);
                    if !applied {
                        // Finished (durable at every member) before its apply was logged.
                        r.unlock(&t);
                        let tracked = !r.untracked.remove(&txn);
                        r.apply(&t, tracked);
                    }
                }
                Record::FinishedBelow { below } => r.forget_finished(me, below),
                Record::SnapshotBegin(header) => {
                    let header = SnapshotHeaderInEpoch::from(*header);
                    partial = Some(PartialSnapshot {
                        index,
                        header,
                        before_epochs: true,
                        store: Store::default(),
                        tracked: false,
                        configuration: None,
                        vote_acceptors: VoteAcceptors::default(),
                        marks: Vec::new(),
                        pinned: BTreeSet::new(),
                    });
                }
                Record::SnapshotBeginInEpoch(header) => {
                    partial = Some(PartialSnapshot {
                        index,
                        header: *header,
                        before_epochs: false,
                        store: Store::default(),
                        tracked: false,
                        configuration: None,
                        vote_acceptors: VoteAcceptors::default(),
                        marks: Vec::new(),
                        pinned: BTreeSet::new(),
                    });
                }
                Record::SnapshotEntries(entries) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    // Written before keys had versions: their versions are unknown.
                    for Entry { key, value } in entries {
                        p.store.insert(key, value, 0);
                    }
                }
                Record::SnapshotVersionedEntries(entries) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    p.tracked = true;
                    for VersionedEntry { key, value, version } in entries {
                        p.store.insert(key, value, version);
                    }
                }
                Record::SnapshotConfiguration(c) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    p.configuration = Some(*c);
                }
                Record::SnapshotVoteAcceptors(states) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    for (instance, acceptor) in states {
                        check_vote_acceptor(index, instance, acceptor)?;
                        p.vote_acceptors.set(instance, acceptor);
                    }
                }
                Record::SnapshotFinishedMarks(marks) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    p.marks.extend(marks);
                }
                Record::SnapshotPinned(txns) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    p.pinned.extend(txns);
                }
                Record::VoteAcceptor { instance, acceptor } => {
                    check_vote_acceptor(index, instance, acceptor)?;
                    // An instance of an epoch settled, or of a transaction finished, is over:
                    // kept by no one (`VoteAcceptors`).
                    if !is_over(&instance, r.epoch, &r.finished_marks) {
                        r.vote_acceptors.set(instance, acceptor);
                    }
                }
                Record::Agreement(state) => {
                    // Only the agreement on the configuration after the current one matters;
                    // the node writes no other.
                    if state.epoch == r.epoch {
                        r.agreement = Some(*state);
                    }
                }
                Record::Installed(value) => r.install(index, *value)?,
                Record::Unvouched => r.unvouched = true,
                Record::Bootstrapped { all_begun } => r.bootstrapped = !all_begun,
                Record::SnapshotEnd { entries } => {
                    let p = partial.take().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    let found = p.store.len() as u64;
                    if found != entries {
                        return Err(RecoveryError::SnapshotIncomplete { index, expected: entries, found });
                    }
                    r.load_snapshot(me, p)?;
                }
            }
        }
        // A share in doubt of a request that completed: no node writes that (prepare refuses a
        // completed request, and a request prepared here completes nowhere meanwhile). Refused,
        // or a restart would commit the request a second time (found by fuzzing `wal_recover`:
        // a restored own share whose every YES is in is made visible at once, §7.2).
        if let Some(t) = r.prepared.values().find(|t| matches!(r.completions.classify(t.request), Completion::Done(_)))
        {
            return Err(RecoveryError::PreparedButCompleted { txn: t.txn, request: t.request });
        }
        // A snapshot still open here was cut short by a crash; the records before it hold the
        // state, and it is ignored. A pin lasts while its share is in doubt.
        let prepared = &r.prepared;
        r.pinned.retain(|txn| prepared.contains_key(txn));
        Ok(r)
    }

    /// Replays a commit exactly as `Participant::commit_prepared` ran it: the ops apply if they
    /// all can run, else nothing does; either way the request completed, with the same results
    /// (none, and unknown versions, for a transaction logged before versions were tracked).
    fn apply(&mut self, t: &TxnRecord, tracked: bool) {
        let outcome = if tracked {
            Completed::of_run(self.store.run(&t.ops))
        } else {
            Completed::of_run(self.store.run_untracked(&t.ops).map(|()| Vec::new()))
        };
        self.completions.record_recovered(t.request, outcome);
    }

    /// A prepared transaction: this node's own only where the log says so (`own_allowed`: an
    /// earlier build logged only remote shares), never twice, never overlapping another
    /// unapplied transaction's keys or request.
    fn add_prepared(&mut self, index: usize, me: NodeId, t: TxnRecord, own_allowed: bool) -> Result<(), RecoveryError> {
        if t.txn.coordinator == me && !own_allowed {
            return Err(RecoveryError::ForeignTransaction { index, txn: t.txn, node: me });
        }
        self.ensure_unknown(index, t.txn)?;
        if self.unapplied().any(|p| p.request == t.request) {
            return Err(RecoveryError::DuplicateRequest { index, request: t.request });
        }
        if let Some(holder) = t.ops.iter().find_map(|op| self.locked.get(op.key())) {
            return Err(RecoveryError::LockConflict { index, txn: t.txn, holder: *holder });
        }
        for op in t.ops.iter() {
            self.locked.insert(op.key().to_vec(), t.txn);
        }
        if !self.tracked {
            self.untracked.insert(t.txn);
        }
        self.prepared.insert(t.txn, t);
        Ok(())
    }

    /// A transaction is prepared, held or decided once: a log naming it twice (a snapshot
    /// listing it both prepared and decided included) is refused, or two roles would restore
    /// it with different requests.
    fn ensure_unknown(&self, index: usize, txn: TxnId) -> Result<(), RecoveryError> {
        let known = self.prepared.contains_key(&txn)
            || self.commits_held.contains_key(&txn)
            || self.decisions.contains_key(&txn);
        if known { Err(RecoveryError::DuplicateTransaction { index, txn }) } else { Ok(()) }
    }

    /// Every transaction that still holds its keys here.
    fn unapplied(&self) -> impl Iterator<Item = &TxnRecord> {
        let decided = self.decisions.values().filter(|(_, applied)| !applied).map(|(t, _)| t);
        self.prepared.values().chain(self.commits_held.values()).chain(decided)
    }

    fn remove_prepared(&mut self, txn: TxnId) -> Option<TxnRecord> {
        let t = self.prepared.remove(&txn)?;
        self.unlock(&t);
        Some(t)
    }

    fn unlock(&mut self, t: &TxnRecord) {
        for op in t.ops.iter() {
            self.locked.remove(op.key());
        }
    }

    /// A finished mark: the commits it covers are durable at every member, and leave the
    /// commit memory. A commit held below it is applied, as the participant does
    /// (`Participant::on_finished_below`; the `Committed` record it logs comes before the mark's
    /// in a log it wrote, but a damaged or forged log must still replay to a consistent node; a
    /// share it aborts there has its own `Aborted` record). A mark names another coordinator's
    /// transactions: one naming this node's own is ignored.
    fn forget_finished(&mut self, me: NodeId, below: TxnId) {
        if below.coordinator == me {
            return;
        }
        let first = TxnId { coordinator: below.coordinator, incarnation: 0, number: 0 };
        let held: Vec<TxnId> = self.commits_held.range(first..below).map(|(txn, _)| *txn).collect();
        for txn in held {
            let t = self.commits_held.remove(&txn).expect("listed above");
            self.unlock(&t);
            let tracked = !self.untracked.remove(&txn);
            self.apply(&t, tracked);
        }
        self.commit_memory.retain(|t| t.coordinator != below.coordinator || *t >= below);
        self.vote_acceptors.finished_below(below);
        self.remember_mark(below);
    }

    /// `below` is its coordinator's finished mark as heard here, unless a later one was.
    fn remember_mark(&mut self, below: TxnId) {
        let mark = self.finished_marks.entry(below.coordinator).or_insert(below);
        *mark = (*mark).max(below);
    }

    /// Replays an install exactly as `Node::install` settled the epoch it ends: a transaction in
    /// the commit set commits, one in the abort set aborts, any other by this node's own
    /// knowledge (a commit logged here commits, a share in doubt aborts); then nothing of the
    /// old epoch is held or remembered.
    fn install(&mut self, index: usize, value: ConfigValue) -> Result<(), RecoveryError> {
        let installed = value.configuration;
        if Some(installed.epoch) != self.epoch.next() {
            return Err(RecoveryError::InstalledOutOfOrder { index, installed, epoch: self.epoch });
        }
        let settlement = &value.settlement;
        let in_doubt = std::mem::take(&mut self.prepared);
        let held = std::mem::take(&mut self.commits_held);
        let decided = std::mem::take(&mut self.decisions);
        let unapplied = decided.into_values().filter(|(_, applied)| !applied).map(|(t, _)| t);
        for t in in_doubt.into_values() {
            let commit = settlement.commits(t.txn);
            self.settle(t, commit);
        }
        for t in held.into_values().chain(unapplied) {
            let commit = !settlement.aborts(t.txn);
            self.settle(t, commit);
        }
        self.commit_memory.clear();
        self.locked.clear();
        self.vote_acceptors.installed(installed.epoch);
        self.epoch = installed.epoch;
        self.configuration = Some(installed);
        self.installed.push(value);
        let excess = self.installed.len().saturating_sub(crate::record::INSTALLED_KEPT);
        self.installed.drain(..excess);
        self.agreement = None;
        Ok(())
    }

    fn settle(&mut self, t: TxnRecord, commit: bool) {
        let tracked = !self.untracked.remove(&t.txn);
        if commit {
            self.apply(&t, tracked);
        }
    }

    fn load_snapshot(&mut self, me: NodeId, p: PartialSnapshot) -> Result<(), RecoveryError> {
        let PartialSnapshot {
            index,
            header: s,
            before_epochs,
            store,
            tracked,
            configuration,
            vote_acceptors,
            marks,
            pinned,
        } = p;
        self.vote_acceptors = vote_acceptors;
        self.pinned = pinned;
        // The snapshot holds the marks' effects already; only the marks themselves are kept
        // (one naming this node's own transactions is ignored, as a `FinishedBelow` is).
        for below in marks.into_iter().filter(|below| below.coordinator != me) {
            self.remember_mark(below);
        }
        // As for a `VoteAcceptor` record: a state of an epoch settled, or of a transaction
        // finished, is over (a node never snapshots one; a forged snapshot may hold one).
        let (epoch, finished_marks) = (self.epoch.max(s.epoch), &self.finished_marks);
        self.vote_acceptors.retain(|instance| !is_over(instance, epoch, finished_marks));
        if let Some(c) = configuration {
            self.configuration = Some(c.configuration);
            self.installed = c.installed;
            self.agreement = c.agreement;
        }
        self.tracked = tracked;
        self.untracked = BTreeSet::new();
        self.incarnation = self.incarnation.max(s.incarnation);
        self.epoch = self.epoch.max(s.epoch);
        self.store = store;
        self.completions.clear();
        for c in s.completions {
            self.completions.record_recovered(c.request, c.outcome);
        }
        self.prepared = BTreeMap::new();
        self.commits_held = BTreeMap::new();
        self.locked = BTreeMap::new();
        self.decisions = BTreeMap::new();
        for t in s.prepared {
            self.add_prepared(index, me, t, !before_epochs)?;
        }
        for t in s.commits_held {
            let txn = t.txn;
            if txn.coordinator == me {
                return Err(RecoveryError::ForeignTransaction { index, txn, node: me });
            }
            self.add_prepared(index, me, t, false)?;
            let t = self.prepared.remove(&txn).expect("just added");
            self.commits_held.insert(txn, t);
        }
        for DecisionState { decision, applied } in s.decisions {
            let txn = decision.txn;
            if txn.coordinator != me {
                return Err(RecoveryError::ForeignTransaction { index, txn, node: me });
            }
            if applied || before_epochs {
                self.ensure_unknown(index, txn)?;
                // An earlier build's unapplied decision was one whose record was not durable
                // yet: it applied it as it became so.
                if !applied {
                    self.apply(&decision, tracked);
                }
                self.decisions.insert(txn, (decision, true));
            } else {
                self.add_prepared(index, me, decision, true)?;
                let t = self.prepared.remove(&txn).expect("just added");
                self.decisions.insert(txn, (t, false));
            }
        }
        self.commit_memory = s.commit_memory.into_iter().collect();
        // A commit held, or decided and not applied, is not finished: remembered, whatever a
        // damaged snapshot says.
        let unfinished = self.commits_held.keys().chain(self.decisions.iter().filter(|(_, (_, a))| !a).map(|(t, _)| t));
        self.commit_memory.extend(unfinished.copied().collect::<Vec<_>>());
        Ok(())
    }
}

/// Whether `instance` is over in a log at `epoch` with these finished marks: its epoch settled,
/// or its transaction below its coordinator's mark.
fn is_over(instance: &VoteInstance, epoch: Epoch, finished_marks: &BTreeMap<NodeId, TxnId>) -> bool {
    let finished = finished_marks.get(&instance.txn.coordinator).is_some_and(|mark| instance.txn < *mark);
    instance.epoch < epoch || finished
}

/// A vote instance's state read from the log must be one the rules can reach.
fn check_vote_acceptor(index: usize, instance: VoteInstance, acceptor: VoteAcceptor) -> Result<(), RecoveryError> {
    if acceptor.is_consistent(instance.owner) {
        Ok(())
    } else {
        Err(RecoveryError::InconsistentVoteAcceptor { index, instance })
    }
}

/// The transaction a record names, for errors (a default id for records that name none).
fn record_txn(record: &Record) -> TxnId {
    match record {
        Record::Prepared(t) | Record::Decided(t) | Record::PreparedInEpoch { txn: t, .. } => t.txn,
        Record::Committed { txn }
        | Record::Aborted { txn }
        | Record::Forgotten { txn }
        | Record::CommitDecided { txn }
        | Record::CommitLearned { txn } => *txn,
        Record::FinishedBelow { below } => *below,
        _ => TxnId { coordinator: NodeId(0), incarnation: 0, number: 0 },
    }
}
