//! The participant's side of two-phase commit. On PREPARE a participant checks the ops, locks
//! their keys and persists a PREPARE record; only once that record is durable does it vote YES.
//! It then holds the locks until it learns the decision, asking the coordinator and the other
//! participants (cooperative termination) if the decision is slow to come. Locks are never
//! released by guessing.

use crate::Canary;
use crate::completions::{Completed, Completion};
use crate::ids::{NodeId, NodeSet, RequestId, TxnId};
use crate::message::{Decision, Message, NoReason, Vote};
use crate::node::{AfterDurable, Node};
use crate::operation::WriteOp;
use crate::record::{Record, TxnRecord};
use crate::time::Time;
use crate::timers::Timer;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct PreparedTxn {
    pub(crate) record: TxnRecord,
    pub(crate) state: PreparedState,
    /// The current interval between queries for the outcome; doubles after each.
    pub(crate) query_interval: Duration,
    /// Queries sent so far: the first goes to the coordinator alone.
    pub(crate) queries: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreparedState {
    /// This node coordinates the transaction: its share is locked but not logged (the
    /// coordinator's decision record covers it).
    Local,
    /// The PREPARE record is on its way to disk; no vote yet.
    Persisting,
    /// The PREPARE record is durable and the YES vote was sent.
    Voted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrepareMode {
    Local,
    Remote,
}

impl Node {
    /// Checks and locks a transaction's share here. On `Err` nothing is locked or logged.
    pub(crate) fn prepare(&mut self, now: Time, record: &TxnRecord, mode: PrepareMode) -> Result<(), NoReason> {
        if self.prepared.len() >= self.config.bounds.prepared_max {
            return Err(NoReason::Busy);
        }
        let deduplicate = !self.canary(Canary::NoDeduplication);
        match self.completions.classify(record.request) {
            Completion::Done(outcome) if deduplicate => return Err(NoReason::AlreadyCompleted(outcome)),
            Completion::Stale { completed_seq } if deduplicate => return Err(NoReason::Stale { completed_seq }),
            _ => {}
        }
        if deduplicate && self.prepared_requests.contains_key(&record.request) {
            return Err(NoReason::InProgress);
        }
        if record.ops.iter().any(|op| self.locks.holder(op.key()).is_some_and(|h| h != record.txn)) {
            return Err(NoReason::Conflict);
        }
        // Whether the ops find their keys is not a reason to vote NO: it is decided under the
        // locks, identically at every participant, and committed as the request's outcome.
        self.locks.try_lock_all(record.txn, &record.ops).expect("no key is held by another transaction");

        let state = match mode {
            PrepareMode::Local => PreparedState::Local,
            PrepareMode::Remote => PreparedState::Persisting,
        };
        let query_interval = self.config.timing.query_interval;
        self.prepared.insert(record.txn, PreparedTxn { record: record.clone(), state, query_interval, queries: 0 });
        self.prepared_requests.insert(record.request, record.txn);
        if mode == PrepareMode::Remote {
            if self.canary(Canary::ApplyAtPrepare) && self.store.check(&record.ops).is_ok() {
                self.store.apply(&record.ops);
            }
            let lsn = self.persist(Record::Prepared(record.clone()));
            self.after_durable(lsn, AfterDurable::Vote(record.txn));
            self.timers.set(Timer::Participant(record.txn), now + query_interval);
            if self.canary(Canary::VoteBeforeDurable) {
                self.on_prepare_durable(record.txn);
            }
        }
        Ok(())
    }

    pub(crate) fn on_prepare(
        &mut self,
        now: Time,
        from: NodeId,
        txn: TxnId,
        request: RequestId,
        ops: Arc<[WriteOp]>,
        participants: NodeSet,
    ) {
        if txn.coordinator != from || ops.is_empty() {
            self.stats.messages_dropped += 1;
            return;
        }
        // Every node must agree on who takes part and on the limits, or a write could commit
        // without a node that should hold it: refuse loudly, never silently.
        if participants != self.participants_for(&ops) || self.config.limits.check_ops(&ops).is_err() {
            self.stats.config_mismatches += 1;
            self.send(from, Message::Vote { txn, vote: Vote::No(NoReason::ConfigMismatch) });
            return;
        }
        if let Some(p) = self.prepared.get(&txn) {
            if p.record.request != request || p.record.ops != ops {
                // The same transaction id with other contents: a coordinator reusing ids (its
                // log was replaced by an older copy). Never vote on it.
                self.stats.messages_dropped += 1;
                return;
            }
            // A retransmitted PREPARE: repeat the vote if it was cast, else it is coming.
            if p.state == PreparedState::Voted {
                self.send(from, Message::Vote { txn, vote: Vote::Yes });
            }
            return;
        }
        if self.acks_pending.contains(&txn) || self.known.get(txn).is_some() {
            // Already decided here: the coordinator has what it needs.
            return;
        }
        let record = TxnRecord { txn, request, ops, participants };
        if let Err(reason) = self.prepare(now, &record, PrepareMode::Remote) {
            self.send(from, Message::Vote { txn, vote: Vote::No(reason) });
        }
    }

    /// The PREPARE record is durable: now, and only now, vote YES.
    pub(crate) fn on_prepare_durable(&mut self, txn: TxnId) {
        let Some(p) = self.prepared.get_mut(&txn) else {
            // Decided while its record was being written.
            return;
        };
        if p.state == PreparedState::Persisting {
            p.state = PreparedState::Voted;
            self.send(txn.coordinator, Message::Vote { txn, vote: Vote::Yes });
        }
    }

    /// A decision, from the coordinator or from a node answering our query.
    pub(crate) fn on_decision(&mut self, txn: TxnId, decision: Decision) {
        if txn.coordinator == self.config.id {
            // Only this node decides its own transactions.
            self.stats.messages_dropped += 1;
            return;
        }
        match (self.known.get(txn), decision) {
            // A presumed-abort answer from a coordinator that finished (and forgot) this
            // committed transaction: late, and harmless.
            (Some(Decision::Commit), Decision::Abort) => return,
            // A transaction has exactly one outcome: a commit after an abort is a protocol
            // violation somewhere. Counted (the simulator fails on it), never acted on.
            (Some(Decision::Abort), Decision::Commit) => {
                self.stats.conflicting_decisions += 1;
                return;
            }
            _ => self.known.insert(txn, decision),
        }
        let prepared_here = self.prepared.get(&txn).map(|p| p.state);
        match (decision, prepared_here) {
            (Decision::Commit, Some(_)) => {
                self.commit_prepared(txn);
                self.stats.txns_committed += 1;
                let lsn = self.persist(Record::Committed { txn });
                self.acks_pending.insert(txn);
                self.after_durable(lsn, AfterDurable::Ack(txn));
            }
            (Decision::Commit, None) => {
                // Applied and durable earlier (or its Committed record is pending, and the ack
                // will follow it): acknowledge again so the coordinator can forget it.
                if !self.acks_pending.contains(&txn) {
                    self.send(txn.coordinator, Message::Ack { txn });
                }
            }
            (Decision::Abort, Some(_)) => {
                self.abort_prepared(txn);
                self.stats.txns_aborted += 1;
                // Not waited for: without it, recovery asks and presumed abort answers.
                self.persist(Record::Aborted { txn });
            }
            (Decision::Abort, None) => {}
        }
    }

    pub(crate) fn on_commit_durable(&mut self, txn: TxnId) {
        if self.acks_pending.remove(&txn) {
            self.send(txn.coordinator, Message::Ack { txn });
        }
    }

    /// Someone holding a prepared transaction asks what was decided. The coordinator answers
    /// from its own state; any other node answers only from a decision it has learned.
    pub(crate) fn on_query(&mut self, from: NodeId, txn: TxnId) {
        let answer = if txn.coordinator == self.config.id {
            self.coordinator_answer(txn)
        } else if self.acks_pending.contains(&txn) {
            Some(Decision::Commit)
        } else {
            self.known.get(txn)
        };
        if let Some(decision) = answer {
            self.send(from, Message::Decision { txn, decision });
        }
    }

    /// No decision yet: ask the coordinator and every other participant.
    pub(crate) fn on_participant_timer(&mut self, now: Time, txn: TxnId) {
        let retransmit_max = self.config.timing.retransmit_max;
        let me = self.config.id;
        let voted_here = self.prepared.get(&txn).is_some_and(|p| p.state == PreparedState::Voted);
        if voted_here && self.canary(Canary::ReleaseLocksOnTimeout) {
            self.abort_prepared(txn);
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
            self.send(txn.coordinator, Message::Query { txn });
            if others {
                for to in participants.without(me).without(txn.coordinator).iter() {
                    self.send(to, Message::Query { txn });
                }
            }
        }
        self.timers.set(Timer::Participant(txn), next);
    }

    /// Commits a prepared transaction here: applies its ops if they all find their keys (else
    /// nothing), records the request's completion, releases the locks.
    pub(crate) fn commit_prepared(&mut self, txn: TxnId) -> Completed {
        let p = self.remove_prepared(txn).expect("committing a transaction prepared here");
        let outcome = Completed::of_check(self.store.check(&p.record.ops));
        let applied_at_prepare = self.canary(Canary::ApplyAtPrepare) && p.state != PreparedState::Local;
        if outcome == Completed::Committed && !applied_at_prepare {
            self.store.apply(&p.record.ops);
        }
        self.completions.record(p.record.request, outcome);
        self.release(txn, &p.record.ops);
        outcome
    }

    /// Drops a prepared transaction here, if it is, and releases its locks.
    pub(crate) fn abort_prepared(&mut self, txn: TxnId) {
        if let Some(p) = self.remove_prepared(txn) {
            self.release(txn, &p.record.ops);
        }
    }

    fn remove_prepared(&mut self, txn: TxnId) -> Option<PreparedTxn> {
        let p = self.prepared.remove(&txn)?;
        self.prepared_requests.remove(&p.record.request);
        self.timers.cancel(Timer::Participant(txn));
        Some(p)
    }

    fn release(&mut self, txn: TxnId, ops: &[WriteOp]) {
        self.locks.release_all(txn, ops);
        self.wake_reads(ops);
    }
}
