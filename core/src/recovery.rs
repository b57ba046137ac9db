//! Recovery: rebuilding a node's state from its log, snapshots included. A snapshot holds
//! exactly what replaying the records before it would rebuild (the node writes them: see
//! `Node::maybe_snapshot`); this file only reads them.

use crate::completions::{Completed, Completions};
use crate::ids::{NodeId, RequestId, TxnId};
use crate::limits::Limits;
use crate::record::{DecisionState, Entry, Record, SnapshotHeader, TxnRecord, VersionedEntry};
use crate::store::Store;
use std::collections::BTreeMap;
use thiserror::Error;

/// The log contradicts itself. Records are checksummed, so this means a bug or a log assembled
/// from the wrong pieces; the node refuses to start rather than serve wrong data.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecoveryError {
    #[error("record {index} ({kind}) names transaction {txn}, which is not pending at that point of the log")]
    UnknownTransaction { index: usize, kind: &'static str, txn: TxnId },
    #[error("record {index}: transaction {txn} is prepared twice")]
    DuplicatePrepare { index: usize, txn: TxnId },
    #[error("record {index}: transaction {txn} locks a key that {holder} already holds")]
    LockConflict { index: usize, txn: TxnId, holder: TxnId },
    #[error("record {index}: request {request} is prepared under two transactions")]
    DuplicateRequest { index: usize, request: RequestId },
    #[error(
        "record {index}: transaction {txn} was coordinated by another node than {node}; is this another node's data directory?"
    )]
    ForeignTransaction { index: usize, txn: TxnId, node: NodeId },
    #[error("record {index} ({kind}) is not inside a snapshot")]
    OutsideSnapshot { index: usize, kind: &'static str },
    #[error("record {index} ends a snapshot of {expected} entries, but {found} were logged")]
    SnapshotIncomplete { index: usize, expected: u64, found: u64 },
    #[error("the log's incarnation number is exhausted")]
    IncarnationExhausted,
}

/// A snapshot being read: its begin record's index and header, and the store so far.
struct PartialSnapshot {
    index: usize,
    header: SnapshotHeader,
    store: Store,
}

/// The state a log describes, as plain data; the node hands each role its part.
pub(crate) struct Recovered {
    /// The newest incarnation the log names.
    pub(crate) incarnation: u64,
    pub(crate) store: Store,
    pub(crate) completions: Completions,
    /// Transactions prepared here as a participant whose outcome the log does not hold.
    pub(crate) prepared: BTreeMap<TxnId, TxnRecord>,
    /// The keys the prepared transactions lock, to find overlaps without quadratic scans.
    locked: BTreeMap<Vec<u8>, TxnId>,
    /// This node's commit decisions that some participant may not have acknowledged.
    pub(crate) decisions: BTreeMap<TxnId, TxnRecord>,
    /// The limits ops were judged under (results depend on them: an append past the value
    /// limit fails).
    limits: Limits,
}

impl Recovered {
    /// Replays `records` of node `me`. Records are checksummed, yet their contents are still
    /// checked: a log that contradicts itself is refused, never half-trusted.
    pub(crate) fn replay(
        records: impl IntoIterator<Item = Record>,
        me: NodeId,
        limits: Limits,
        completions: Completions,
    ) -> Result<Recovered, RecoveryError> {
        let mut r = Recovered {
            incarnation: 0,
            store: Store::default(),
            completions,
            prepared: BTreeMap::new(),
            locked: BTreeMap::new(),
            decisions: BTreeMap::new(),
            limits,
        };
        let mut partial: Option<PartialSnapshot> = None;
        for (index, record) in records.into_iter().enumerate() {
            let kind = record.kind();
            let inside_snapshot = matches!(
                record,
                Record::SnapshotEntries(_) | Record::SnapshotVersionedEntries(_) | Record::SnapshotEnd { .. }
            );
            if partial.is_some() && !inside_snapshot {
                // The snapshot was cut short by a crash and the node went on logging: the
                // records before it still hold the state.
                partial = None;
            }
            match record {
                Record::Boot { incarnation } => r.incarnation = r.incarnation.max(incarnation),
                Record::Prepared(t) => r.add_prepared(index, me, t)?,
                Record::Committed { txn } => {
                    let t = r.remove_prepared(txn).ok_or(RecoveryError::UnknownTransaction { index, kind, txn })?;
                    r.apply(&t);
                }
                Record::Aborted { txn } => {
                    r.remove_prepared(txn).ok_or(RecoveryError::UnknownTransaction { index, kind, txn })?;
                }
                Record::Decided(t) => {
                    if t.txn.coordinator != me {
                        return Err(RecoveryError::ForeignTransaction { index, txn: t.txn, node: me });
                    }
                    r.apply(&t);
                    r.decisions.insert(t.txn, t);
                }
                Record::Forgotten { txn } => {
                    r.decisions.remove(&txn).ok_or(RecoveryError::UnknownTransaction { index, kind, txn })?;
                }
                Record::SnapshotBegin(header) => {
                    partial = Some(PartialSnapshot { index, header: *header, store: Store::default() });
                }
                Record::SnapshotEntries(entries) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    // Written before keys had versions: their versions restart at 1.
                    for Entry { key, value } in entries {
                        p.store.insert(key, value, 1);
                    }
                }
                Record::SnapshotVersionedEntries(entries) => {
                    let p = partial.as_mut().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    for VersionedEntry { key, value, version } in entries {
                        p.store.insert(key, value, version);
                    }
                }
                Record::SnapshotEnd { entries } => {
                    let p = partial.take().ok_or(RecoveryError::OutsideSnapshot { index, kind })?;
                    let found = p.store.len() as u64;
                    if found != entries {
                        return Err(RecoveryError::SnapshotIncomplete { index, expected: entries, found });
                    }
                    r.load_snapshot(p.index, me, p.header, p.store)?;
                }
            }
        }
        // A snapshot still open here was cut short by a crash; the records before it hold the
        // state, and it is ignored.
        Ok(r)
    }

    /// Replays a commit exactly as `Participant::commit_prepared` ran it: the ops apply if they
    /// all can run, else nothing does; either way the request completed, with the same results.
    fn apply(&mut self, t: &TxnRecord) {
        let outcome = Completed::of_run(self.store.run(&t.ops, &self.limits));
        self.completions.record_recovered(t.request, outcome);
    }

    /// A participant's prepared transaction: never this node's own (a coordinator logs only
    /// decisions), never twice, never overlapping another's keys or request.
    fn add_prepared(&mut self, index: usize, me: NodeId, t: TxnRecord) -> Result<(), RecoveryError> {
        if t.txn.coordinator == me {
            return Err(RecoveryError::ForeignTransaction { index, txn: t.txn, node: me });
        }
        if self.prepared.contains_key(&t.txn) {
            return Err(RecoveryError::DuplicatePrepare { index, txn: t.txn });
        }
        if self.prepared.values().any(|p| p.request == t.request) {
            return Err(RecoveryError::DuplicateRequest { index, request: t.request });
        }
        if let Some(holder) = t.ops.iter().find_map(|op| self.locked.get(op.key())) {
            return Err(RecoveryError::LockConflict { index, txn: t.txn, holder: *holder });
        }
        for op in t.ops.iter() {
            self.locked.insert(op.key().to_vec(), t.txn);
        }
        self.prepared.insert(t.txn, t);
        Ok(())
    }

    fn remove_prepared(&mut self, txn: TxnId) -> Option<TxnRecord> {
        let t = self.prepared.remove(&txn)?;
        for op in t.ops.iter() {
            self.locked.remove(op.key());
        }
        Some(t)
    }

    fn load_snapshot(
        &mut self,
        index: usize,
        me: NodeId,
        s: SnapshotHeader,
        store: Store,
    ) -> Result<(), RecoveryError> {
        self.incarnation = self.incarnation.max(s.incarnation);
        self.store = store;
        self.completions.clear();
        for c in s.completions {
            self.completions.record_recovered(c.request, c.outcome);
        }
        self.prepared = BTreeMap::new();
        self.locked = BTreeMap::new();
        for t in s.prepared {
            self.add_prepared(index, me, t)?;
        }
        self.decisions = BTreeMap::new();
        for DecisionState { decision, applied } in s.decisions {
            if decision.txn.coordinator != me {
                return Err(RecoveryError::ForeignTransaction { index, txn: decision.txn, node: me });
            }
            if !applied {
                self.apply(&decision);
            }
            self.decisions.insert(decision.txn, decision);
        }
        Ok(())
    }
}
