//! The participant's side of two-phase commit. On PREPARE a participant checks the ops, locks
//! their keys and persists a PREPARE record; only once that record is durable does it vote YES.
//! It then holds the locks until it learns the decision, asking the coordinator and the other
//! participants (cooperative termination) if the decision is slow to come. Locks are never
//! released by guessing.
//!
//! A coordinator's own share of its transactions is prepared here too (see
//! [`PrepareMode::OwnShare`]): locked like any other, but not logged, since the coordinator's
//! decision record covers it.

use super::invariants::{InvariantViolation, ensure};
use super::shared::{AfterDurable, Shared};
use crate::Canary;
use crate::completions::{Completed, Completion};
use crate::decisions::KnownDecisions;
use crate::ids::{NodeId, RequestId, TxnId};
use crate::message::{Decision, Message, NoReason, Vote};
use crate::record::{Record, TxnRecord};
use crate::time::Time;
use crate::timers::Timer;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The participant role: the transactions prepared at this node, the acknowledgements it owes,
/// and the decisions it has learned.
pub(super) struct Participant {
    prepared: BTreeMap<TxnId, PreparedTxn>,
    /// The request of each prepared transaction, to refuse a second attempt of the same request
    /// while one is prepared here.
    by_request: BTreeMap<RequestId, TxnId>,
    /// Committed here; the acknowledgement waits for the Committed record to be durable.
    acks_pending: BTreeSet<TxnId>,
    /// Decisions learned recently, to answer other participants' queries and ignore stale
    /// PREPAREs.
    known: KnownDecisions,
}

struct PreparedTxn {
    record: TxnRecord,
    /// Prepared by this build, which tracks versions; false for one an earlier build logged
    /// (its commit runs untracked, see [`crate::store::Store::run_untracked`]).
    tracked: bool,
    state: PreparedState,
    /// The current interval between queries for the outcome; doubles after each.
    query_interval: Duration,
    /// Queries sent so far: the first goes to the coordinator alone.
    queries: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PreparedState {
    /// This node coordinates the transaction: its share is locked but not logged (the
    /// coordinator's decision record covers it).
    OwnShare,
    /// The PREPARE record is on its way to disk; no vote yet.
    Persisting,
    /// The PREPARE record is durable and the YES vote was sent.
    Voted,
}

/// Whose share of a transaction is being prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PrepareMode {
    /// The coordinator's own: locked, not logged, no vote.
    OwnShare,
    /// A remote coordinator's PREPARE: logged, then voted on.
    Remote,
}

impl Participant {
    pub(super) fn new(decisions_remembered_max: usize) -> Participant {
        Participant {
            prepared: BTreeMap::new(),
            by_request: BTreeMap::new(),
            acks_pending: BTreeSet::new(),
            known: KnownDecisions::new(decisions_remembered_max),
        }
    }

    /// Remembers the decision this node's coordinator made for one of its own transactions.
    /// Queries about its own transactions are answered by the coordinator, not from here; the
    /// invariant check reads it (a transaction committed here was never learned as aborted),
    /// and it takes its place in the bounded memory like any learned decision.
    pub(super) fn learn(&mut self, txn: TxnId, decision: Decision) {
        debug_assert!(!self.prepared.contains_key(&txn), "{txn} is decided while its own share is still prepared");
        self.known.insert(txn, decision);
    }

    /// The decision this node has learned for `txn`, if it still remembers one.
    pub(super) fn known_decision(&self, txn: TxnId) -> Option<Decision> {
        self.known.get(txn)
    }

    /// Checks and locks a transaction's share here. On `Err` nothing is locked or logged.
    pub(super) fn prepare(
        &mut self,
        sh: &mut Shared,
        now: Time,
        record: &TxnRecord,
        mode: PrepareMode,
    ) -> Result<(), NoReason> {
        if self.prepared.len() >= sh.config.bounds.prepared_max {
            return Err(NoReason::Busy);
        }
        let deduplicate = !sh.canary(Canary::NoDeduplication);
        match sh.completions.classify(record.request) {
            Completion::Done(outcome) if deduplicate => return Err(NoReason::AlreadyCompleted(outcome)),
            Completion::Stale { completed_seq } if deduplicate => return Err(NoReason::Stale { completed_seq }),
            _ => {}
        }
        if deduplicate && self.by_request.contains_key(&record.request) {
            return Err(NoReason::InProgress);
        }
        // Its completion record must not push out one that a retry may still need.
        if !sh.completions.admits(record.request.client) {
            return Err(NoReason::Busy);
        }
        if record.ops.iter().any(|op| sh.locks.holder(op.key()).is_some_and(|h| h != record.txn)) {
            return Err(NoReason::Conflict);
        }
        // Whether the ops can run (keys found, conditions true, numbers numbers) is not a
        // reason to vote NO: it is decided under the locks, identically at every participant,
        // and committed as the request's outcome.
        sh.locks.try_lock_all(record.txn, &record.ops).expect("no key is held by another transaction");

        let state = match mode {
            PrepareMode::OwnShare => PreparedState::OwnShare,
            PrepareMode::Remote => PreparedState::Persisting,
        };
        let query_interval = sh.config.timing.query_interval;
        let p = PreparedTxn { record: record.clone(), tracked: true, state, query_interval, queries: 0 };
        self.prepared.insert(record.txn, p);
        self.by_request.insert(record.request, record.txn);
        if mode == PrepareMode::Remote {
            if sh.canary(Canary::ApplyAtPrepare) {
                let _ = sh.store.run(&record.ops);
            }
            let lsn = sh.persist(Record::Prepared(record.clone()));
            sh.after_durable(lsn, AfterDurable::Vote(record.txn));
            sh.timers.set(Timer::Participant(record.txn), now + query_interval);
            if sh.canary(Canary::VoteBeforeDurable) {
                self.on_prepare_durable(sh, record.txn);
            }
        }
        Ok(())
    }

    /// A coordinator's PREPARE.
    pub(super) fn on_prepare(&mut self, sh: &mut Shared, now: Time, from: NodeId, record: TxnRecord) {
        let txn = record.txn;
        if txn.coordinator != from || record.ops.is_empty() {
            sh.stats.messages_dropped += 1;
            return;
        }
        // Every node must agree on who takes part and on the limits, or a write could commit
        // without a node that should hold it: refuse loudly, never silently.
        if record.participants != sh.participants_for(&record.ops) || sh.config.limits.check_ops(&record.ops).is_err() {
            sh.stats.config_mismatches += 1;
            sh.send(from, Message::Vote { txn, vote: Vote::No(NoReason::ConfigMismatch) });
            return;
        }
        if let Some(p) = self.prepared.get(&txn) {
            if p.record.request != record.request || p.record.ops != record.ops {
                // The same transaction id with other contents: a coordinator reusing ids (its
                // log was replaced by an older copy). Never vote on it.
                sh.stats.messages_dropped += 1;
                return;
            }
            // A retransmitted PREPARE: repeat the vote if it was cast, else it is coming.
            if p.state == PreparedState::Voted {
                sh.send(from, Message::Vote { txn, vote: Vote::Yes });
            }
            return;
        }
        if self.acks_pending.contains(&txn) || self.known.get(txn).is_some() {
            // Already decided here: the coordinator has what it needs.
            return;
        }
        if let Err(reason) = self.prepare(sh, now, &record, PrepareMode::Remote) {
            sh.send(from, Message::Vote { txn, vote: Vote::No(reason) });
        }
    }

    /// The PREPARE record is durable: now, and only now, vote YES.
    pub(super) fn on_prepare_durable(&mut self, sh: &mut Shared, txn: TxnId) {
        let Some(p) = self.prepared.get_mut(&txn) else {
            // Decided while its record was being written.
            return;
        };
        if p.state == PreparedState::Persisting {
            p.state = PreparedState::Voted;
            sh.send(txn.coordinator, Message::Vote { txn, vote: Vote::Yes });
        }
    }

    /// A decision about another node's transaction, from its coordinator or from a node
    /// answering our query.
    pub(super) fn on_decision(&mut self, sh: &mut Shared, txn: TxnId, decision: Decision) {
        debug_assert_ne!(txn.coordinator, sh.me(), "the node routes decisions about its own transactions away");
        match (self.known.get(txn), decision) {
            // A presumed-abort answer from a coordinator that finished (and forgot) this
            // committed transaction: late, and harmless.
            (Some(Decision::Commit), Decision::Abort) => return,
            // A transaction has exactly one outcome: a commit after an abort is a protocol
            // violation somewhere. Counted (the simulator fails on it), never acted on.
            (Some(Decision::Abort), Decision::Commit) => {
                sh.stats.conflicting_decisions += 1;
                return;
            }
            _ => self.known.insert(txn, decision),
        }
        let prepared_here = self.prepared.contains_key(&txn);
        match (decision, prepared_here) {
            (Decision::Commit, true) => {
                self.commit_prepared(sh, txn);
                sh.stats.txns_committed += 1;
                let lsn = sh.persist(Record::Committed { txn });
                self.acks_pending.insert(txn);
                sh.after_durable(lsn, AfterDurable::Ack(txn));
            }
            (Decision::Commit, false) => {
                // Applied and durable earlier (or its Committed record is pending, and the ack
                // will follow it): acknowledge again so the coordinator can forget it.
                if !self.acks_pending.contains(&txn) {
                    sh.send(txn.coordinator, Message::Ack { txn });
                }
            }
            (Decision::Abort, true) => {
                self.abort_prepared(sh, txn);
                sh.stats.txns_aborted += 1;
                // Not waited for: without it, recovery asks and presumed abort answers.
                sh.persist(Record::Aborted { txn });
            }
            (Decision::Abort, false) => {}
        }
    }

    /// The Committed record is durable: acknowledge, so the coordinator can forget the
    /// transaction.
    pub(super) fn on_commit_durable(&mut self, sh: &mut Shared, txn: TxnId) {
        if self.acks_pending.remove(&txn) {
            sh.send(txn.coordinator, Message::Ack { txn });
        }
    }

    /// What this node, not the transaction's coordinator, answers a query with: only a
    /// decision it has learned. (The coordinator answers from its own state.)
    pub(super) fn answer(&self, txn: TxnId) -> Option<Decision> {
        if self.acks_pending.contains(&txn) { Some(Decision::Commit) } else { self.known.get(txn) }
    }

    /// No decision yet: ask the coordinator, and from the second query on the other
    /// participants too.
    pub(super) fn on_timer(&mut self, sh: &mut Shared, now: Time, txn: TxnId) {
        let retransmit_max = sh.config.timing.retransmit_max;
        let me = sh.me();
        let voted_here = self.prepared.get(&txn).is_some_and(|p| p.state == PreparedState::Voted);
        if voted_here && sh.canary(Canary::ReleaseLocksOnTimeout) {
            self.abort_prepared(sh, txn);
            return;
        }
        let Some(p) = self.prepared.get_mut(&txn) else { return };
        let voted = p.state == PreparedState::Voted;
        let participants = p.record.participants;
        p.query_interval = (p.query_interval * 2).min(retransmit_max);
        let next = now + p.query_interval;
        if voted {
            // The coordinator first, alone: it knows the outcome unless it lost it. From the
            // second query on, the other participants too (cooperative termination), in case
            // the coordinator is down or partitioned away.
            let others = p.queries > 0;
            p.queries += 1;
            sh.send(txn.coordinator, Message::Query { txn });
            if others {
                for to in participants.without(me).without(txn.coordinator).iter() {
                    sh.send(to, Message::Query { txn });
                }
            }
        }
        sh.timers.set(Timer::Participant(txn), next);
    }

    /// Commits a prepared transaction here: runs its ops (all apply, or none if one cannot
    /// run), records the request's completion with the results, releases the locks.
    pub(super) fn commit_prepared(&mut self, sh: &mut Shared, txn: TxnId) -> Completed {
        let p = self.remove(sh, txn).expect("committing a transaction prepared here");
        // The other side of prepare's completion check: a request completes once. A prepared
        // request cannot complete meanwhile (the request index refuses a second attempt here).
        debug_assert!(
            !matches!(sh.completions.classify(p.record.request), Completion::Done(_))
                || sh.canary(Canary::NoDeduplication),
            "{txn} commits request {}, which completed already",
            p.record.request
        );
        let applied_at_prepare = sh.canary(Canary::ApplyAtPrepare) && p.state != PreparedState::OwnShare;
        let outcome = if applied_at_prepare {
            Completed::of_run(sh.store.check(&p.record.ops))
        } else if p.tracked {
            Completed::of_run(sh.store.run(&p.record.ops))
        } else {
            Completed::of_run(sh.store.run_untracked(&p.record.ops).map(|()| Vec::new()))
        };
        sh.completions.record(p.record.request, outcome.clone());
        sh.release(txn, &p.record.ops);
        outcome
    }

    /// Drops a prepared transaction here, if it is, and releases its locks.
    pub(super) fn abort_prepared(&mut self, sh: &mut Shared, txn: TxnId) {
        if let Some(p) = self.remove(sh, txn) {
            sh.release(txn, &p.record.ops);
        }
    }

    fn remove(&mut self, sh: &mut Shared, txn: TxnId) -> Option<PreparedTxn> {
        let p = self.prepared.remove(&txn)?;
        self.by_request.remove(&p.record.request);
        sh.timers.cancel(Timer::Participant(txn));
        Some(p)
    }

    /// Takes over the transactions a log left prepared: they get their locks back, have voted
    /// (a PREPARE record is only ever followed by a YES vote), and start asking for their
    /// outcome at once.
    pub(super) fn restore(
        &mut self,
        sh: &mut Shared,
        now: Time,
        prepared: BTreeMap<TxnId, TxnRecord>,
        untracked: &BTreeSet<TxnId>,
    ) {
        let query_interval = sh.config.timing.query_interval;
        for (txn, record) in prepared {
            sh.locks.try_lock_all(txn, &record.ops).expect("replay checked that prepared transactions do not overlap");
            self.by_request.insert(record.request, txn);
            let tracked = !untracked.contains(&txn);
            let p = PreparedTxn { record, tracked, state: PreparedState::Voted, query_interval, queries: 0 };
            self.prepared.insert(txn, p);
            sh.timers.set(Timer::Participant(txn), now);
        }
    }

    /// The participant's part of a snapshot: the transactions whose PREPARE records it holds
    /// (a coordinator's own share has none; a crash loses it, as it should).
    pub(super) fn snapshot(&self) -> Vec<TxnRecord> {
        self.prepared.values().filter(|p| p.state != PreparedState::OwnShare).map(|p| p.record.clone()).collect()
    }

    /// Whether a transaction an earlier build prepared is still undecided here.
    pub(super) fn holds_untracked(&self) -> bool {
        self.prepared.values().any(|p| !p.tracked)
    }

    pub(super) fn prepared_count(&self) -> usize {
        self.prepared.len()
    }

    /// Nothing prepared here and no acknowledgement owed.
    pub(super) fn is_idle(&self) -> bool {
        self.prepared.is_empty() && self.acks_pending.is_empty()
    }

    /// Whether this node's own share of a transaction it coordinates is prepared (locked).
    pub(super) fn holds_own_share(&self, txn: TxnId) -> bool {
        self.prepared.get(&txn).is_some_and(|p| p.state == PreparedState::OwnShare)
    }

    /// Locks and prepared transactions are two views of one thing, the request index matches
    /// what it indexes, a prepared transaction is undecided here and asks for its outcome.
    pub(super) fn check_invariants(&self, sh: &Shared) -> Result<(), InvariantViolation> {
        for (key, holder) in sh.locks.iter() {
            ensure(self.prepared.contains_key(&holder), || {
                format!("key {key:?} is locked by {holder}, which is not prepared")
            })?;
        }
        let mut locked = 0;
        for (txn, p) in &self.prepared {
            ensure(!self.acks_pending.contains(txn), || format!("{txn} is prepared and committed here"))?;
            ensure(self.known.get(*txn).is_none(), || {
                format!("{txn} is prepared but its decision ({:?}) is known here", self.known.get(*txn))
            })?;
            ensure(p.state == PreparedState::OwnShare || sh.timers.is_set(Timer::Participant(*txn)), || {
                format!("{txn} is prepared here but never asks for its outcome (no timer)")
            })?;
            let keys: BTreeSet<&[u8]> = p.record.ops.iter().map(|op| op.key()).collect();
            for key in &keys {
                ensure(sh.locks.holder(key) == Some(*txn), || {
                    format!("{txn} is prepared but does not hold its key {key:?}")
                })?;
            }
            locked += keys.len();
            ensure(self.by_request.get(&p.record.request) == Some(txn), || {
                format!("{txn} is prepared but its request {} is not indexed to it", p.record.request)
            })?;
            ensure((p.state == PreparedState::OwnShare) == (txn.coordinator == sh.me()), || {
                format!("{txn} is prepared as {:?} at node {}", p.state, sh.me())
            })?;
        }
        ensure(locked == sh.locks.len(), || {
            format!("{} keys are locked but prepared transactions hold {locked}", sh.locks.len())
        })?;
        ensure(self.by_request.len() == self.prepared.len(), || {
            format!("{} requests indexed for {} prepared transactions", self.by_request.len(), self.prepared.len())
        })
    }
}

/// Ways to break a participant's bookkeeping, for the tests of `Node::check_invariants`.
#[cfg(test)]
impl Participant {
    pub(super) fn break_request_index(&mut self, txn: TxnId) {
        let request = self.prepared[&txn].record.request;
        self.by_request.remove(&request);
    }

    pub(super) fn break_mark_committed(&mut self, txn: TxnId) {
        self.acks_pending.insert(txn);
    }

    /// Forgets every learned decision but `decision` for `txn`.
    pub(super) fn break_known(&mut self, txn: TxnId, decision: Decision) {
        self.known = KnownDecisions::new(1);
        self.known.insert(txn, decision);
    }
}
