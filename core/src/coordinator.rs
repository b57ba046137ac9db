//! The coordinator's side of two-phase commit. The node a client contacts coordinates: it
//! prepares its own share locally, sends PREPARE to the other participants, and decides.
//! Commit needs every participant's YES; the decision record is durable before anyone
//! (participant or client) hears "commit". Any NO, or votes missing past the vote timeout,
//! aborts; nothing is logged for an abort (presumed abort).

use crate::Canary;
use crate::completions::Completion;
use crate::ids::{NodeId, NodeSet, ReplyTo, RequestId, TxnId};
use crate::message::{Decision, Message, NoReason, Vote};
use crate::node::{AfterDurable, Node};
use crate::operation::{Outcome, RejectReason, TryAgainReason, WriteOp};
use crate::participant::PrepareMode;
use crate::record::{Record, TxnRecord};
use crate::time::Time;
use crate::timers::Timer;
use rand_core::Rng;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct CoordinatorTxn {
    pub(crate) record: TxnRecord,
    /// Where to send the outcome (empty for decisions recovered from the log).
    pub(crate) reply_to: Vec<ReplyTo>,
    /// Which try of the request this is (0 for the first).
    pub(crate) attempt: u32,
    pub(crate) phase: Phase,
    /// The current retransmission interval; doubles after every resend.
    pub(crate) retransmit: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// PREPARE sent; collecting votes.
    Voting { yes: NodeSet, vote_deadline: Time },
    /// Every vote was YES; the decision record is on its way to disk.
    Deciding,
    /// Decided, applied here, the client answered; COMMIT goes out until every participant
    /// acknowledges.
    Committed { acked: NodeSet },
}

/// A request between two attempts, waiting out a randomized backoff after a conflict.
pub(crate) struct PendingRetry {
    pub(crate) ops: Arc<[WriteOp]>,
    pub(crate) reply_to: Vec<ReplyTo>,
    pub(crate) attempt: u32,
}

/// Why an attempt ended without a commit.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AbortCause {
    Vote(NoReason),
    /// These participants did not vote within the vote timeout.
    Timeout(NodeSet),
    /// This participant is configured differently.
    ConfigMismatch(NodeId),
}

impl Node {
    /// A client's write request.
    pub(crate) fn coordinate(&mut self, now: Time, reply_to: ReplyTo, id: RequestId, ops: Vec<WriteOp>) {
        if ops.is_empty() {
            return self.reply(reply_to, id, Outcome::Rejected(RejectReason::EmptyTransaction));
        }
        if let Err(e) = self.config.limits.check_ops(&ops) {
            return self.reply(reply_to, id, Outcome::Rejected(e.into()));
        }
        let deduplicate = !self.canary(Canary::NoDeduplication);
        match self.completions.classify(id) {
            _ if !deduplicate => {}
            Completion::Done(outcome) => return self.reply(reply_to, id, outcome.outcome()),
            Completion::Stale { completed_seq } => {
                let reason = RejectReason::Stale { seq: id.seq, completed_seq };
                return self.reply(reply_to, id, Outcome::Rejected(reason));
            }
            Completion::New => {}
        }
        // A retry of a request already in progress here joins it instead of starting another.
        let targets_max = self.config.bounds.reply_targets_max;
        if let Some(txn) = self.undecided.get(&id) {
            let c = self.coordinating.get_mut(txn).expect("undecided requests are coordinated");
            return attach(&mut c.reply_to, reply_to, targets_max);
        }
        if let Some(retry) = self.retries.get_mut(&id) {
            return attach(&mut retry.reply_to, reply_to, targets_max);
        }
        if !self.booted {
            return self.reply(reply_to, id, Outcome::TryAgain(TryAgainReason::Starting));
        }
        if self.undecided.len() + self.retries.len() >= self.config.bounds.txns_undecided_max {
            return self.reply(reply_to, id, Outcome::TryAgain(TryAgainReason::Busy));
        }
        self.begin_attempt(now, id, ops.into(), vec![reply_to], 0);
    }

    /// Starts one attempt at committing `request`, under a new transaction id.
    fn begin_attempt(
        &mut self,
        now: Time,
        request: RequestId,
        ops: Arc<[WriteOp]>,
        reply_to: Vec<ReplyTo>,
        attempt: u32,
    ) {
        debug_assert!(self.booted, "transaction ids are only safe once the Boot record is durable");
        let txn = TxnId { coordinator: self.config.id, incarnation: self.incarnation, number: self.next_txn_number };
        self.next_txn_number += 1;
        let participants = self.participants_for(&ops);
        let record = TxnRecord { txn, request, ops, participants };
        if let Err(reason) = self.prepare(now, &record, PrepareMode::Local) {
            return self.conclude(now, request, record.ops, reply_to, attempt, AbortCause::Vote(reason));
        }
        let others = participants.without(self.config.id);
        let mut yes = NodeSet::EMPTY;
        yes.insert(self.config.id);
        let phase = Phase::Voting { yes, vote_deadline: now + self.config.timing.vote_timeout };
        let retransmit = self.config.timing.prepare_retransmit;
        for to in others.iter() {
            self.send(to, prepare_message(&record));
        }
        self.undecided.insert(request, txn);
        self.coordinating.insert(txn, CoordinatorTxn { record, reply_to, attempt, phase, retransmit });
        if others.is_empty() {
            self.decide_commit(txn);
        } else {
            self.timers.set(Timer::Coordinator(txn), now + retransmit);
        }
    }

    pub(crate) fn on_vote(&mut self, now: Time, from: NodeId, txn: TxnId, vote: Vote) {
        let Some(c) = self.coordinating.get_mut(&txn) else {
            // Decided and finished, or aborted: a late or duplicate vote changes nothing.
            return;
        };
        if !c.record.participants.contains(from) {
            self.stats.messages_dropped += 1;
            return;
        }
        let Phase::Voting { yes, .. } = &mut c.phase else { return };
        match vote {
            Vote::Yes => {
                yes.insert(from);
                if yes.is_superset(c.record.participants) || self.canary(Canary::CommitOnFirstYes) {
                    self.decide_commit(txn);
                }
            }
            Vote::No(NoReason::ConfigMismatch) => self.abort(now, txn, AbortCause::ConfigMismatch(from)),
            Vote::No(reason) => self.abort(now, txn, AbortCause::Vote(reason)),
        }
    }

    /// Every participant voted YES: log the decision. Nothing is sent until it is durable.
    fn decide_commit(&mut self, txn: TxnId) {
        let c = self.coordinating.get_mut(&txn).expect("deciding a coordinated transaction");
        c.phase = Phase::Deciding;
        let record = Record::Decided(c.record.clone());
        self.timers.cancel(Timer::Coordinator(txn));
        if self.canary(Canary::ReplyBeforeDecisionDurable) {
            let c = self.coordinating.get_mut(&txn).expect("deciding a coordinated transaction");
            let (request, reply_to) = (c.record.request, std::mem::take(&mut c.reply_to));
            for to in reply_to {
                self.reply(to, request, Outcome::Committed);
            }
        }
        let lsn = self.persist(record);
        self.after_durable(lsn, AfterDurable::Decision(txn));
    }

    /// The commit decision is durable: apply it here, tell the client, tell the participants.
    pub(crate) fn on_decision_durable(&mut self, now: Time, txn: TxnId) {
        let outcome = self.commit_prepared(txn).outcome();
        self.known.insert(txn, Decision::Commit);
        self.stats.txns_committed += 1;
        let c = self.coordinating.get_mut(&txn).expect("a durable decision belongs to a coordinated transaction");
        debug_assert_eq!(c.phase, Phase::Deciding);
        let mut acked = NodeSet::EMPTY;
        acked.insert(self.config.id);
        c.phase = Phase::Committed { acked };
        c.retransmit = self.config.timing.decision_retransmit;
        let request = c.record.request;
        let others = c.record.participants.without(self.config.id);
        let reply_to = std::mem::take(&mut c.reply_to);
        let retransmit = c.retransmit;
        self.undecided.remove(&request);
        for to in reply_to {
            self.reply(to, request, outcome.clone());
        }
        for to in others.iter() {
            self.send(to, Message::Decision { txn, decision: Decision::Commit });
        }
        if others.is_empty() || self.canary(Canary::CoordinatorForgetsDecisions) {
            self.forget(txn);
        } else {
            self.timers.set(Timer::Coordinator(txn), now + retransmit);
        }
    }

    pub(crate) fn on_ack(&mut self, from: NodeId, txn: TxnId) {
        let Some(c) = self.coordinating.get_mut(&txn) else { return };
        let Phase::Committed { acked } = &mut c.phase else { return };
        acked.insert(from);
        if acked.is_superset(c.record.participants) {
            self.forget(txn);
        }
    }

    /// Every participant has applied the commit durably: nothing is left to deliver.
    fn forget(&mut self, txn: TxnId) {
        self.coordinating.remove(&txn);
        self.timers.cancel(Timer::Coordinator(txn));
        self.persist(Record::Forgotten { txn });
    }

    /// Aborts an undecided transaction: release the local share, tell the participants (best
    /// effort: one that misses it asks, and presumed abort answers), then retry or reply.
    fn abort(&mut self, now: Time, txn: TxnId, cause: AbortCause) {
        let c = self.coordinating.remove(&txn).expect("aborting a coordinated transaction");
        debug_assert!(matches!(c.phase, Phase::Voting { .. }), "only an undecided transaction can abort");
        self.timers.cancel(Timer::Coordinator(txn));
        self.undecided.remove(&c.record.request);
        self.abort_prepared(txn);
        self.known.insert(txn, Decision::Abort);
        self.stats.txns_aborted += 1;
        for to in c.record.participants.without(self.config.id).iter() {
            self.send(to, Message::Decision { txn, decision: Decision::Abort });
        }
        self.conclude(now, c.record.request, c.record.ops, c.reply_to, c.attempt, cause);
    }

    /// After an aborted attempt: retry after a backoff, or give the client its answer.
    fn conclude(
        &mut self,
        now: Time,
        request: RequestId,
        ops: Arc<[WriteOp]>,
        reply_to: Vec<ReplyTo>,
        attempt: u32,
        cause: AbortCause,
    ) {
        let outcome = match cause {
            AbortCause::Vote(NoReason::Conflict | NoReason::InProgress)
                if attempt < self.config.bounds.conflict_retries_max =>
            {
                let delay = self.conflict_backoff(attempt);
                self.stats.conflict_retries += 1;
                self.retries.insert(request, PendingRetry { ops, reply_to, attempt: attempt + 1 });
                self.timers.set(Timer::Retry(request), now + delay);
                return;
            }
            // Not "aborted": another attempt of this request (a retry sent to another node) may
            // still complete, and only a completed attempt's outcome may be reported.
            AbortCause::Vote(NoReason::Conflict) => Outcome::TryAgain(TryAgainReason::Conflict),
            // Another node is running this very request; only it knows how it ends.
            AbortCause::Vote(NoReason::InProgress) => Outcome::TryAgain(TryAgainReason::InProgress),
            // A participant has this request's completion record: an earlier try completed.
            AbortCause::Vote(NoReason::AlreadyCompleted(outcome)) => outcome.outcome(),
            AbortCause::Vote(NoReason::Stale { completed_seq }) => {
                Outcome::Rejected(RejectReason::Stale { seq: request.seq, completed_seq })
            }
            AbortCause::Vote(NoReason::Busy) => Outcome::TryAgain(TryAgainReason::Busy),
            AbortCause::Timeout(nodes) => Outcome::TryAgain(TryAgainReason::Unavailable { nodes }),
            AbortCause::ConfigMismatch(node) => Outcome::TryAgain(TryAgainReason::ConfigMismatch { node }),
            // Only remote participants judge the configuration; never this node's own share.
            AbortCause::Vote(NoReason::ConfigMismatch) => {
                Outcome::TryAgain(TryAgainReason::ConfigMismatch { node: self.config.id })
            }
        };
        for to in reply_to {
            self.reply(to, request, outcome.clone());
        }
    }

    /// Exponential backoff with full jitter: a uniformly random delay in
    /// `[min, min * 2^attempt]`, capped, so contending coordinators spread out (no livelock).
    fn conflict_backoff(&mut self, attempt: u32) -> Duration {
        let t = &self.config.timing;
        let min = t.conflict_backoff_min.as_nanos() as u64;
        let ceiling =
            min.saturating_mul(1u64 << attempt.min(32)).min(t.conflict_backoff_max.as_nanos() as u64).max(min);
        let span = ceiling - min + 1;
        Duration::from_nanos(min + self.rng.next_u64() % span)
    }

    pub(crate) fn on_retry_timer(&mut self, now: Time, request: RequestId) {
        let Some(retry) = self.retries.remove(&request) else { return };
        match self.completions.classify(request) {
            // Another coordinator ran a retry of it to completion meanwhile.
            Completion::Done(outcome) => {
                for to in retry.reply_to {
                    self.reply(to, request, outcome.outcome());
                }
            }
            Completion::Stale { completed_seq } => {
                for to in retry.reply_to {
                    self.reply(to, request, Outcome::Rejected(RejectReason::Stale { seq: request.seq, completed_seq }));
                }
            }
            Completion::New => self.begin_attempt(now, request, retry.ops, retry.reply_to, retry.attempt),
        }
    }

    /// Resend what has not been answered; give up on votes after the vote timeout.
    pub(crate) fn on_coordinator_timer(&mut self, now: Time, txn: TxnId) {
        let retransmit_max = self.config.timing.retransmit_max;
        let Some(c) = self.coordinating.get_mut(&txn) else { return };
        let (missing, message, next) = match c.phase {
            Phase::Voting { yes, vote_deadline } => {
                let missing = c.record.participants.difference(yes);
                if now >= vote_deadline {
                    return self.abort(now, txn, AbortCause::Timeout(missing));
                }
                c.retransmit = (c.retransmit * 2).min(retransmit_max);
                (missing, prepare_message(&c.record), (now + c.retransmit).min(vote_deadline))
            }
            Phase::Deciding => return,
            Phase::Committed { acked } => {
                c.retransmit = (c.retransmit * 2).min(retransmit_max);
                let commit = Message::Decision { txn, decision: Decision::Commit };
                (c.record.participants.difference(acked), commit, now + c.retransmit)
            }
        };
        for to in missing.iter() {
            self.send(to, message.clone());
        }
        self.timers.set(Timer::Coordinator(txn), next);
    }

    /// What this coordinator says about one of its transactions when asked.
    pub(crate) fn coordinator_answer(&self, txn: TxnId) -> Option<Decision> {
        match self.coordinating.get(&txn).map(|c| c.phase) {
            Some(Phase::Committed { .. }) => Some(Decision::Commit),
            // Not decided yet: the asker will ask again.
            Some(Phase::Voting { .. } | Phase::Deciding) => None,
            // Presumed abort: no record means it did not commit, or it committed and every
            // participant acknowledged, so nobody who could ask is waiting for it. (A late
            // query from a participant that already knows "commit" gets "abort" here and
            // ignores it. Answering "commit" from memory instead would be unsafe: a participant
            // that re-prepared a stale PREPARE after forgetting the transaction would apply it
            // a second time.)
            None => Some(Decision::Abort),
        }
    }
}

fn prepare_message(record: &TxnRecord) -> Message {
    Message::Prepare {
        txn: record.txn,
        request: record.request,
        ops: record.ops.clone(),
        participants: record.participants,
    }
}

fn attach(targets: &mut Vec<ReplyTo>, reply_to: ReplyTo, max: usize) {
    if !targets.contains(&reply_to) {
        if targets.len() >= max {
            // Bounded: the oldest target is the least likely to still be listening.
            targets.remove(0);
        }
        targets.push(reply_to);
    }
}
