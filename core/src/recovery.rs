//! Recovery: rebuilding a node's state from its log, and the snapshots that let the log be
//! compacted. A snapshot holds exactly what replaying the records before it would rebuild.

use crate::completions::{Completed, Completions};
use crate::coordinator::{CoordinatorTxn, Phase};
use crate::ids::{NodeSet, TxnId};
use crate::node::Node;
use crate::participant::{PreparedState, PreparedTxn};
use crate::record::{DecisionState, Entry, Record, Snapshot, TxnRecord};
use crate::store::Store;
use crate::time::Time;
use crate::timers::Timer;
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
}

/// The state a log describes.
pub(crate) struct Recovered {
    pub(crate) incarnation: u64,
    store: Store,
    completions: Completions,
    prepared: BTreeMap<TxnId, TxnRecord>,
    decisions: BTreeMap<TxnId, TxnRecord>,
}

impl Recovered {
    pub(crate) fn replay(
        records: impl IntoIterator<Item = Record>,
        completions_max: usize,
    ) -> Result<Recovered, RecoveryError> {
        let mut r = Recovered {
            incarnation: 0,
            store: Store::default(),
            completions: Completions::new(completions_max),
            prepared: BTreeMap::new(),
            decisions: BTreeMap::new(),
        };
        for (index, record) in records.into_iter().enumerate() {
            let kind = record.kind();
            match record {
                Record::Boot { incarnation } => r.incarnation = r.incarnation.max(incarnation),
                Record::Prepared(t) => {
                    if r.prepared.contains_key(&t.txn) {
                        return Err(RecoveryError::DuplicatePrepare { index, txn: t.txn });
                    }
                    let holder =
                        r.prepared.values().find(|p| p.ops.iter().any(|a| t.ops.iter().any(|b| a.key() == b.key())));
                    if let Some(holder) = holder {
                        return Err(RecoveryError::LockConflict { index, txn: t.txn, holder: holder.txn });
                    }
                    r.prepared.insert(t.txn, t);
                }
                Record::Committed { txn } => {
                    let t = r.prepared.remove(&txn).ok_or(RecoveryError::UnknownTransaction { index, kind, txn })?;
                    r.apply(&t);
                }
                Record::Aborted { txn } => {
                    r.prepared.remove(&txn).ok_or(RecoveryError::UnknownTransaction { index, kind, txn })?;
                }
                Record::Decided(t) => {
                    r.apply(&t);
                    r.decisions.insert(t.txn, t);
                }
                Record::Forgotten { txn } => {
                    r.decisions.remove(&txn).ok_or(RecoveryError::UnknownTransaction { index, kind, txn })?;
                }
                Record::Snapshot(s) => r.load_snapshot(*s, completions_max),
            }
        }
        Ok(r)
    }

    /// Replays a commit exactly as [`Node::commit_prepared`] ran it: the ops apply if they all
    /// find their keys, else nothing does; either way the request completed.
    fn apply(&mut self, t: &TxnRecord) {
        let outcome = Completed::of_check(self.store.check(&t.ops));
        if outcome == Completed::Committed {
            self.store.apply(&t.ops);
        }
        self.completions.record(t.request, outcome);
    }

    fn load_snapshot(&mut self, s: Snapshot, completions_max: usize) {
        self.incarnation = self.incarnation.max(s.incarnation);
        self.store = Store::default();
        for Entry { key, value } in s.entries {
            self.store.insert(key, value);
        }
        self.completions = Completions::new(completions_max);
        for c in s.completions {
            self.completions.record(c.request, c.outcome);
        }
        self.prepared = s.prepared.into_iter().map(|t| (t.txn, t)).collect();
        self.decisions = BTreeMap::new();
        for DecisionState { decision, applied } in s.decisions {
            if !applied {
                self.apply(&decision);
            }
            self.decisions.insert(decision.txn, decision);
        }
    }
}

impl Node {
    /// Takes over recovered state: prepared transactions get their locks back and start asking
    /// for their outcome; commit decisions start being delivered again.
    pub(crate) fn install(&mut self, r: Recovered, now: Time) {
        self.store = r.store;
        self.completions = r.completions;
        let query_interval = self.config.timing.query_interval;
        for (txn, record) in r.prepared {
            self.locks
                .try_lock_all(txn, &record.ops)
                .expect("replay checked that prepared transactions do not overlap");
            self.prepared_requests.insert(record.request, txn);
            self.prepared.insert(txn, PreparedTxn { record, state: PreparedState::Voted, query_interval });
            self.timers.set(Timer::Participant(txn), now);
        }
        let retransmit = self.config.timing.decision_retransmit;
        for (txn, record) in r.decisions {
            let mut acked = NodeSet::EMPTY;
            acked.insert(self.config.id);
            let phase = Phase::Committed { acked };
            self.coordinating
                .insert(txn, CoordinatorTxn { record, reply_to: Vec::new(), attempt: 0, phase, retransmit });
            self.timers.set(Timer::Coordinator(txn), now);
        }
    }

    /// The node's durable state as one record: what replaying every record emitted so far
    /// would rebuild. Volatile state (undecided transactions this node coordinates, with their
    /// local locks) is left out, exactly as a crash would lose it.
    pub fn snapshot(&self) -> Snapshot {
        let entries = self.store.iter().map(|(k, v)| Entry { key: k.clone(), value: v.clone() }).collect();
        let prepared =
            self.prepared.values().filter(|p| p.state != PreparedState::Local).map(|p| p.record.clone()).collect();
        let decisions = self
            .coordinating
            .values()
            .filter_map(|c| match c.phase {
                Phase::Voting { .. } => None,
                Phase::Deciding => Some(DecisionState { decision: c.record.clone(), applied: false }),
                Phase::Committed { .. } => Some(DecisionState { decision: c.record.clone(), applied: true }),
            })
            .collect();
        Snapshot {
            incarnation: self.incarnation,
            entries,
            completions: self.completions.iter_oldest_first().collect(),
            prepared,
            decisions,
        }
    }
}
