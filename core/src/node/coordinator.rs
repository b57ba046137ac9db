//! The coordinator's side of two-phase commit. The node a client contacts coordinates: it
//! prepares its own share locally, sends PREPARE to the other participants, and decides.
//! Commit needs every participant's YES; the decision record is durable before anyone
//! (participant or client) hears "commit". Any NO, or votes missing past the vote timeout,
//! aborts; nothing is logged for an abort (presumed abort).
//!
//! A coordinator is a participant of every transaction it coordinates: every node holds every
//! key. Its share is prepared, committed and aborted through the node's [`Participant`], which
//! every method that needs it takes as `own_share`, and it counts itself as having voted YES
//! and acknowledged (`yes` and `acked` start with this node). Partial replication (a
//! coordinator that holds none of the keys) changes exactly these places, and
//! [`Shared::participants_for`].

use super::invariants::{InvariantViolation, ensure};
use super::participant::{Participant, PrepareMode};
use super::shared::{AfterDurable, Shared};
use crate::Canary;
use crate::completions::{Completed, Completion};
use crate::ids::{NodeId, NodeSet, ReplyTo, RequestId, TxnId};
use crate::message::{Decision, Message, NoReason, Vote};
use crate::operation::{Outcome, RejectReason, TryAgainReason, TxnOp};
use crate::record::{DecisionState, Record, TxnRecord};
use crate::time::Time;
use crate::timers::Timer;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The coordinator role: this node's transaction ids, the transactions it coordinates and the
/// client requests it is running.
pub(super) struct Coordinator {
    /// The node's only source of randomness (conflict backoff), seeded from its configuration.
    rng: ChaCha8Rng,
    /// This run of the node: transaction ids are (node, incarnation, number), unique across
    /// restarts because the Boot record naming the incarnation is durable before any is used.
    incarnation: u64,
    /// The Boot record is durable: transaction ids of this incarnation are safe to use.
    booted: bool,
    next_txn_number: u64,
    /// Transactions this node coordinates, until every participant acknowledged a commit.
    transactions: BTreeMap<TxnId, CoordinatorTxn>,
    /// Requests whose current transaction here is not decided yet.
    undecided: BTreeMap<RequestId, TxnId>,
    /// Requests waiting out a conflict backoff before their next attempt.
    retries: BTreeMap<RequestId, ClientWrite>,
}

/// A client's write request as the coordinator carries it from one attempt to the next.
struct ClientWrite {
    request: RequestId,
    ops: Arc<[TxnOp]>,
    /// Where to send the outcome (empty for decisions recovered from the log).
    reply_to: Vec<ReplyTo>,
    /// Which try of the request this is (0 for the first).
    attempt: u32,
    /// Only with the canary [`Canary::ConditionBeforeLock`]: the outcome judged when the
    /// request arrived, which the client is told instead of the one decided under the locks.
    judged_early: Option<Completed>,
}

/// One attempt at a client's write: a transaction.
struct CoordinatorTxn {
    txn: TxnId,
    participants: NodeSet,
    write: ClientWrite,
    phase: Phase,
    /// The current retransmission interval; doubles after every resend.
    retransmit: Duration,
}

impl CoordinatorTxn {
    /// The transaction as records and PREPAREs carry it.
    fn record(&self) -> TxnRecord {
        TxnRecord {
            txn: self.txn,
            request: self.write.request,
            ops: self.write.ops.clone(),
            participants: self.participants,
        }
    }

    fn prepare_message(&self) -> Message {
        let TxnRecord { txn, request, ops, participants } = self.record();
        Message::Prepare { txn, request, ops, participants }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// PREPARE sent; collecting votes.
    Voting { yes: NodeSet, vote_deadline: Time },
    /// Every vote was YES; the decision record is on its way to disk.
    Deciding,
    /// Decided, applied here, the client answered; COMMIT goes out until every participant
    /// acknowledges.
    Committed { acked: NodeSet },
}

/// Why an attempt ended without a commit.
#[derive(Clone, Debug)]
enum AbortCause {
    /// A participant refused: a remote one voted NO, or this node's own share could not be
    /// prepared (then nothing was sent, and nothing needs aborting).
    Refused(NoReason),
    /// These participants did not vote within the vote timeout.
    Timeout(NodeSet),
    /// This participant is configured differently.
    ConfigMismatch(NodeId),
}

impl Coordinator {
    pub(super) fn new(seed: u64, incarnation: u64) -> Coordinator {
        Coordinator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            incarnation,
            booted: false,
            next_txn_number: 0,
            transactions: BTreeMap::new(),
            undecided: BTreeMap::new(),
            retries: BTreeMap::new(),
        }
    }

    /// The Boot record is durable: the node may coordinate.
    pub(super) fn on_boot_durable(&mut self) {
        self.booted = true;
    }

    /// A client's write request.
    pub(super) fn coordinate(
        &mut self,
        sh: &mut Shared,
        own_share: &mut Participant,
        now: Time,
        reply_to: ReplyTo,
        request: RequestId,
        ops: Vec<TxnOp>,
    ) {
        if ops.is_empty() {
            return sh.reply(reply_to, request, Outcome::Rejected(RejectReason::EmptyTransaction));
        }
        if let Err(e) = sh.config.limits.check_ops(&ops) {
            return sh.reply(reply_to, request, Outcome::Rejected(e.into()));
        }
        let deduplicate = !sh.canary(Canary::NoDeduplication);
        match sh.completions.classify(request) {
            _ if !deduplicate => {}
            Completion::Done(outcome) => return sh.reply(reply_to, request, outcome.outcome()),
            Completion::Stale { completed_seq } => {
                let reason = RejectReason::Stale { seq: request.seq, completed_seq };
                return sh.reply(reply_to, request, Outcome::Rejected(reason));
            }
            Completion::New => {}
        }
        // A retry of a request already in progress here joins it instead of starting another.
        let targets_max = sh.config.bounds.reply_targets_max;
        if let Some(txn) = self.undecided.get(&request) {
            let c = self.transactions.get_mut(txn).expect("undecided requests are coordinated");
            return attach(&mut c.write.reply_to, reply_to, targets_max);
        }
        if let Some(retry) = self.retries.get_mut(&request) {
            return attach(&mut retry.reply_to, reply_to, targets_max);
        }
        if !self.booted {
            return sh.reply(reply_to, request, Outcome::TryAgain(TryAgainReason::Starting));
        }
        if self.undecided.len() + self.retries.len() >= sh.config.bounds.txns_undecided_max {
            return sh.reply(reply_to, request, Outcome::TryAgain(TryAgainReason::Busy));
        }
        let mut judged_early = None;
        if sh.canary(Canary::ConditionBeforeLock) {
            match Completed::of_run(sh.store.check(&ops)) {
                Completed::Failed(failure) => return sh.reply(reply_to, request, Outcome::Failed(failure)),
                committed => judged_early = Some(committed),
            }
        }
        let write = ClientWrite { request, ops: ops.into(), reply_to: vec![reply_to], attempt: 0, judged_early };
        self.begin_attempt(sh, own_share, now, write);
    }

    /// Starts one attempt at committing a write, under a new transaction id.
    fn begin_attempt(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, write: ClientWrite) {
        debug_assert!(self.booted, "transaction ids are only safe once the Boot record is durable");
        let me = sh.me();
        let txn = TxnId { coordinator: me, incarnation: self.incarnation, number: self.next_txn_number };
        self.next_txn_number += 1;
        let participants = sh.participants_for(&write.ops);
        let vote_deadline = now + sh.config.timing.vote_timeout;
        let mut yes = NodeSet::EMPTY;
        yes.insert(me);
        let retransmit = sh.config.timing.prepare_retransmit;
        let c = CoordinatorTxn { txn, participants, write, phase: Phase::Voting { yes, vote_deadline }, retransmit };
        if let Err(reason) = own_share.prepare(sh, now, &c.record(), PrepareMode::OwnShare) {
            return self.conclude(sh, now, c.write, AbortCause::Refused(reason));
        }
        let others = participants.without(me);
        for to in others.iter() {
            sh.send(to, c.prepare_message());
        }
        self.undecided.insert(c.write.request, txn);
        self.transactions.insert(txn, c);
        if others.is_empty() {
            self.decide_commit(sh, txn);
        } else {
            sh.timers.set(Timer::Coordinator(txn), now + retransmit);
        }
    }

    pub(super) fn on_vote(
        &mut self,
        sh: &mut Shared,
        own_share: &mut Participant,
        now: Time,
        from: NodeId,
        txn: TxnId,
        vote: Vote,
    ) {
        let Some(c) = self.transactions.get_mut(&txn) else {
            // Decided and finished, or aborted: a late or duplicate vote changes nothing.
            return;
        };
        if !c.participants.contains(from) {
            sh.stats.messages_dropped += 1;
            return;
        }
        let Phase::Voting { yes, .. } = &mut c.phase else { return };
        match vote {
            Vote::Yes => {
                yes.insert(from);
                // No commit decision before the wait is over (docs/protocol.md §7.5). Never the
                // case while the wait starts with the node (no transaction begins before it
                // ends); once installs move it, the transaction's timer decides after the wait.
                if sh.leases.waiting(now) {
                    return;
                }
                if yes.is_superset(c.participants) || sh.canary(Canary::CommitOnFirstYes) {
                    self.decide_commit(sh, txn);
                }
            }
            Vote::No(NoReason::ConfigMismatch) => self.abort(sh, own_share, now, txn, AbortCause::ConfigMismatch(from)),
            Vote::No(reason) => self.abort(sh, own_share, now, txn, AbortCause::Refused(reason)),
        }
    }

    /// Every participant voted YES: log the decision. Nothing is sent until it is durable.
    fn decide_commit(&mut self, sh: &mut Shared, txn: TxnId) {
        let c = self.transactions.get_mut(&txn).expect("deciding a coordinated transaction");
        c.phase = Phase::Deciding;
        let record = Record::Decided(c.record());
        sh.timers.cancel(Timer::Coordinator(txn));
        if sh.canary(Canary::ReplyBeforeDecisionDurable) {
            // The own share's locks are held: this is the outcome the commit will have.
            let outcome = Completed::of_run(sh.store.check(&c.write.ops)).outcome();
            for to in std::mem::take(&mut c.write.reply_to) {
                sh.reply(to, c.write.request, outcome.clone());
            }
        }
        let lsn = sh.persist(record);
        sh.after_durable(lsn, AfterDurable::Decision(txn));
    }

    /// The commit decision is durable: apply it here, tell the client, tell the participants.
    pub(super) fn on_decision_durable(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId) {
        let completed = own_share.commit_prepared(sh, txn);
        own_share.learn(txn, Decision::Commit);
        sh.stats.txns_committed += 1;
        let me = sh.me();
        let c = self.transactions.get_mut(&txn).expect("a durable decision belongs to a coordinated transaction");
        debug_assert_eq!(c.phase, Phase::Deciding);
        let mut acked = NodeSet::EMPTY;
        acked.insert(me);
        c.phase = Phase::Committed { acked };
        c.retransmit = sh.config.timing.decision_retransmit;
        let request = c.write.request;
        let outcome = c.write.judged_early.take().unwrap_or(completed).outcome();
        let others = c.participants.without(me);
        let reply_to = std::mem::take(&mut c.write.reply_to);
        let retransmit = c.retransmit;
        self.undecided.remove(&request);
        for to in reply_to {
            sh.reply(to, request, outcome.clone());
        }
        for to in others.iter() {
            sh.send(to, Message::Decision { txn, decision: Decision::Commit });
        }
        if others.is_empty() || sh.canary(Canary::CoordinatorForgetsDecisions) {
            self.forget(sh, txn);
        } else {
            sh.timers.set(Timer::Coordinator(txn), now + retransmit);
        }
    }

    pub(super) fn on_ack(&mut self, sh: &mut Shared, from: NodeId, txn: TxnId) {
        let Some(c) = self.transactions.get_mut(&txn) else { return };
        let Phase::Committed { acked } = &mut c.phase else { return };
        acked.insert(from);
        if acked.is_superset(c.participants) {
            self.forget(sh, txn);
        }
    }

    /// Every participant has applied the commit durably: nothing is left to deliver.
    fn forget(&mut self, sh: &mut Shared, txn: TxnId) {
        self.transactions.remove(&txn);
        sh.timers.cancel(Timer::Coordinator(txn));
        sh.persist(Record::Forgotten { txn });
    }

    /// Aborts an undecided transaction: release its own share, tell the participants (best
    /// effort: one that misses it asks, and presumed abort answers), then retry or reply.
    fn abort(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId, cause: AbortCause) {
        let c = self.transactions.remove(&txn).expect("aborting a coordinated transaction");
        debug_assert!(matches!(c.phase, Phase::Voting { .. }), "only an undecided transaction can abort");
        sh.timers.cancel(Timer::Coordinator(txn));
        self.undecided.remove(&c.write.request);
        own_share.abort_prepared(sh, txn);
        own_share.learn(txn, Decision::Abort);
        sh.stats.txns_aborted += 1;
        for to in c.participants.without(sh.me()).iter() {
            sh.send(to, Message::Decision { txn, decision: Decision::Abort });
        }
        self.conclude(sh, now, c.write, cause);
    }

    /// After an attempt that did not commit: retry after a backoff, or give the client its
    /// answer.
    fn conclude(&mut self, sh: &mut Shared, now: Time, mut write: ClientWrite, cause: AbortCause) {
        let request = write.request;
        let outcome = match cause {
            AbortCause::Refused(NoReason::Conflict | NoReason::InProgress)
                if write.attempt < sh.config.bounds.conflict_retries_max =>
            {
                let delay = conflict_backoff(&mut self.rng, &sh.config.timing, write.attempt);
                sh.stats.conflict_retries += 1;
                write.attempt += 1;
                self.retries.insert(request, write);
                sh.timers.set(Timer::Retry(request), now + delay);
                return;
            }
            // Not a definite outcome: another attempt of this request (a retry sent to another
            // node) may still complete, and only a completed attempt's outcome may be reported.
            AbortCause::Refused(NoReason::Conflict) => Outcome::TryAgain(TryAgainReason::Conflict),
            // Another node is running this very request; only it knows how it ends.
            AbortCause::Refused(NoReason::InProgress) => Outcome::TryAgain(TryAgainReason::InProgress),
            // A participant has this request's completion record: an earlier try completed.
            AbortCause::Refused(NoReason::AlreadyCompleted(outcome)) => outcome.outcome(),
            AbortCause::Refused(NoReason::Stale { completed_seq }) => {
                Outcome::Rejected(RejectReason::Stale { seq: request.seq, completed_seq })
            }
            AbortCause::Refused(NoReason::Busy) => Outcome::TryAgain(TryAgainReason::Busy),
            AbortCause::Timeout(nodes) => Outcome::TryAgain(TryAgainReason::Unavailable { nodes }),
            AbortCause::ConfigMismatch(node) => Outcome::TryAgain(TryAgainReason::ConfigMismatch { node }),
            // Only remote participants judge the configuration; never this node's own share.
            AbortCause::Refused(NoReason::ConfigMismatch) => {
                Outcome::TryAgain(TryAgainReason::ConfigMismatch { node: sh.me() })
            }
        };
        for to in write.reply_to {
            sh.reply(to, request, outcome.clone());
        }
    }

    /// A request's conflict backoff is over: try again, unless another coordinator ran a retry
    /// of it to completion meanwhile.
    pub(super) fn on_retry_timer(
        &mut self,
        sh: &mut Shared,
        own_share: &mut Participant,
        now: Time,
        request: RequestId,
    ) {
        let Some(write) = self.retries.remove(&request) else { return };
        let outcome = match sh.completions.classify(request) {
            Completion::Done(outcome) => outcome.outcome(),
            Completion::Stale { completed_seq } => {
                Outcome::Rejected(RejectReason::Stale { seq: request.seq, completed_seq })
            }
            Completion::New => return self.begin_attempt(sh, own_share, now, write),
        };
        for to in write.reply_to {
            sh.reply(to, request, outcome.clone());
        }
    }

    /// Resend what has not been answered; give up on votes after the vote timeout.
    pub(super) fn on_timer(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId) {
        let retransmit_max = sh.config.timing.retransmit_max;
        let Some(c) = self.transactions.get_mut(&txn) else { return };
        let (missing, message, next) = match c.phase {
            Phase::Voting { yes, vote_deadline } => {
                let missing = c.participants.difference(yes);
                // Every vote is in, and the wait that held the decision back is over.
                if missing.is_empty() && !sh.leases.waiting(now) {
                    return self.decide_commit(sh, txn);
                }
                if now >= vote_deadline {
                    return self.abort(sh, own_share, now, txn, AbortCause::Timeout(missing));
                }
                c.retransmit = (c.retransmit * 2).min(retransmit_max);
                (missing, c.prepare_message(), (now + c.retransmit).min(vote_deadline))
            }
            Phase::Deciding => return,
            Phase::Committed { acked } => {
                c.retransmit = (c.retransmit * 2).min(retransmit_max);
                let commit = Message::Decision { txn, decision: Decision::Commit };
                (c.participants.difference(acked), commit, now + c.retransmit)
            }
        };
        for to in missing.iter() {
            sh.send(to, message.clone());
        }
        sh.timers.set(Timer::Coordinator(txn), next);
    }

    /// What this coordinator says about one of its transactions when asked.
    pub(super) fn answer(&self, txn: TxnId) -> Option<Decision> {
        match self.transactions.get(&txn).map(|c| c.phase) {
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

    /// Takes over the commit decisions a log holds that some participant may not have
    /// acknowledged: they are applied here already and start being delivered again at once.
    pub(super) fn restore(&mut self, sh: &mut Shared, now: Time, decisions: BTreeMap<TxnId, TxnRecord>) {
        let retransmit = sh.config.timing.decision_retransmit;
        for (txn, record) in decisions {
            let mut acked = NodeSet::EMPTY;
            acked.insert(sh.me());
            let write = ClientWrite {
                request: record.request,
                ops: record.ops,
                reply_to: Vec::new(),
                attempt: 0,
                judged_early: None,
            };
            let phase = Phase::Committed { acked };
            let participants = record.participants;
            self.transactions.insert(txn, CoordinatorTxn { txn, participants, write, phase, retransmit });
            sh.timers.set(Timer::Coordinator(txn), now);
        }
    }

    /// The coordinator's part of a snapshot: every commit decision not yet known to be
    /// delivered, and whether the store already includes it. Undecided transactions are left
    /// out, exactly as a crash would lose them.
    pub(super) fn snapshot(&self) -> Vec<DecisionState> {
        let decision = |c: &CoordinatorTxn, applied| Some(DecisionState { decision: c.record(), applied });
        self.transactions
            .values()
            .filter_map(|c| match c.phase {
                Phase::Voting { .. } => None,
                Phase::Deciding => decision(c, false),
                Phase::Committed { .. } => decision(c, true),
            })
            .collect()
    }

    pub(super) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(super) fn is_booted(&self) -> bool {
        self.booted
    }

    /// Transactions not finished (undecided, or committed and not yet acknowledged by every
    /// participant), and requests between attempts.
    pub(super) fn unfinished_count(&self) -> usize {
        self.transactions.len() + self.retries.len()
    }

    /// Undecided requests are exactly the transactions still voting or deciding, and each of
    /// those holds its own share.
    pub(super) fn check_invariants(&self, sh: &Shared, own_share: &Participant) -> Result<(), InvariantViolation> {
        for (request, txn) in &self.undecided {
            let c = self
                .transactions
                .get(txn)
                .ok_or_else(|| InvariantViolation(format!("undecided {request} names unknown {txn}")))?;
            ensure(c.write.request == *request, || {
                format!("{txn} coordinates {} but is indexed as {request}", c.write.request)
            })?;
            ensure(!matches!(c.phase, Phase::Committed { .. }), || {
                format!("{txn} is committed but listed as undecided")
            })?;
            ensure(own_share.holds_own_share(*txn), || format!("undecided {txn} does not hold its own share"))?;
        }
        let undecided = self.transactions.values().filter(|c| !matches!(c.phase, Phase::Committed { .. })).count();
        ensure(undecided == self.undecided.len(), || {
            format!("{undecided} transactions undecided but {} requests listed", self.undecided.len())
        })?;
        for (request, write) in &self.retries {
            ensure(!self.undecided.contains_key(request), || format!("{request} is both retrying and undecided"))?;
            ensure(write.request == *request, || format!("{} is retrying under {request}", write.request))?;
            ensure(sh.timers.is_set(Timer::Retry(*request)), || {
                format!("{request} waits for a retry that is never due")
            })?;
        }
        for (txn, c) in &self.transactions {
            ensure(c.txn == *txn, || format!("{} is coordinated under {txn}", c.txn))?;
            // A decision is never both: a transaction committed here was never learned as
            // aborted. (Before the decision, the own share's check covers it: a prepared
            // transaction has no known decision.)
            let learned = own_share.known_decision(*txn);
            ensure(!(matches!(c.phase, Phase::Committed { .. }) && learned == Some(Decision::Abort)), || {
                format!("{txn} is committed here but the node learned {learned:?}")
            })?;
            // Voting waits for votes and Committed for acknowledgements: both resend on a timer.
            let resends = matches!(c.phase, Phase::Voting { .. } | Phase::Committed { .. });
            ensure(!resends || sh.timers.is_set(Timer::Coordinator(*txn)), || {
                format!("{txn} is {:?} with no timer to resend or give up", c.phase)
            })?;
        }
        Ok(())
    }
}

/// Exponential backoff with full jitter: a uniformly random delay in
/// `[min, min * 2^attempt]`, capped, so contending coordinators spread out (no livelock).
fn conflict_backoff(rng: &mut ChaCha8Rng, t: &crate::config::Timing, attempt: u32) -> Duration {
    let min = t.conflict_backoff_min.as_nanos() as u64;
    let ceiling = min.saturating_mul(1u64 << attempt.min(32)).min(t.conflict_backoff_max.as_nanos() as u64).max(min);
    let span = ceiling - min + 1;
    Duration::from_nanos(min + rng.next_u64() % span)
}

/// Adds a reply target to a request, bounded: the oldest target is the least likely to still
/// be listening, so it goes first.
fn attach(targets: &mut Vec<ReplyTo>, reply_to: ReplyTo, max: usize) {
    if !targets.contains(&reply_to) {
        if targets.len() >= max {
            targets.remove(0);
        }
        targets.push(reply_to);
    }
}
