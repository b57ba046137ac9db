//! The coordinator's side of two-phase commit inside an epoch (docs/protocol.md §7.2). The
//! node a client contacts coordinates: it prepares and logs its own share, sends PREPARE to the
//! other participants, and decides commit once every YES and its own share are durable. It logs
//! the decision and sends COMMIT at once, and counts where the decision is durable: itself once
//! its record is, and every participant that acknowledged. At a majority the commit is
//! **visible**: the coordinator applies it, answers the client and tells the participants
//! (`Visible`). Once every participant acknowledged, the transaction is **finished**, and the
//! coordinator's finished mark moves past it. Any NO, or votes missing past the vote timeout,
//! aborts.
//!
//! A coordinator is a participant of every transaction it coordinates: every node holds every
//! key. Its share is prepared, applied and released through the node's [`Participant`], which
//! every method that needs it takes as `own_share`. Partial replication (a coordinator that
//! holds none of the keys) changes exactly these places, and [`Shared::participants_for`].

use super::invariants::{InvariantViolation, ensure};
use super::participant::{Participant, PrepareMode};
use super::shared::{AfterDurable, Shared};
use crate::Canary;
use crate::completions::{Completed, Completion};
use crate::configuration::Settlement;
use crate::ids::{Lsn, NodeId, NodeSet, ReplyTo, RequestId, TxnId};
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
    /// Transactions this node coordinates, until they are finished.
    transactions: BTreeMap<TxnId, CoordinatorTxn>,
    /// Requests whose current transaction here is not visible yet (undecided, or committed and
    /// not yet durable on a majority): a retry of one joins it.
    pending: BTreeMap<RequestId, TxnId>,
    /// Requests waiting out a conflict backoff before their next attempt.
    retries: BTreeMap<RequestId, ClientWrite>,
    /// The finished mark last sent to the members.
    mark_sent: Option<TxnId>,
    /// Transactions finished whose `Forgotten` record may not be durable yet, with its lsn: a
    /// query about one is not answered "finished" until it is (a restart would hold the
    /// transaction again, and resend COMMIT to a participant that forgot it). Bounded by the
    /// transactions finished within one fsync.
    forgetting: BTreeMap<TxnId, Lsn>,
}

/// A client's write request as the coordinator carries it from one attempt to the next.
struct ClientWrite {
    request: RequestId,
    ops: Arc<[TxnOp]>,
    /// Where to send the outcome (empty for transactions recovered from the log).
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
    /// Why it is aborting, while `phase` is [`Phase::Aborting`].
    abort_cause: Option<AbortCause>,
    /// The participants whose YES, as counted in `Voting` or `Recovering`, was pinned
    /// ([`Vote::YesPinned`]; this node's own once its share is durable, if its log pins the
    /// share). Every one pinned lets the commit be visible at once (`decide_commit`).
    pinned: NodeSet,
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

    /// The PREPARE this coordinator sends in its life `round` (its incarnation).
    fn prepare_message(&self, sh: &Shared, round: u64) -> Message {
        let TxnRecord { txn, request, ops, participants } = self.record();
        Message::Prepare { epoch: sh.epoch(), txn, request, ops, participants, round }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// PREPARE sent; collecting votes. `yes` holds the participants whose YES is durable, this
    /// node once its own share's record is.
    Voting { yes: NodeSet, vote_deadline: Time },
    /// Restarted with its own share logged and no decision logged: the decision may have been
    /// made (and COMMIT sent) before the crash, so it is never presumed. PREPARE goes to every
    /// participant again, of this life's round: any acknowledgement (a commit held there)
    /// means commit, any NO to this round's PREPARE means no commit was ever decided (abort),
    /// and every YES allows commit. Votes of an earlier round are ignored. It never gives
    /// up by timeout: a commit may be durable somewhere.
    Recovering { yes: NodeSet },
    /// Decided commit and sent COMMIT; `durable` holds where the decision is durable (this
    /// node once its record is, and every participant that acknowledged). `visible` once that
    /// is a majority: applied here, the client answered, `Visible` sent.
    Committed { durable: NodeSet, visible: bool },
    /// Decided abort, its `Aborted` record on its way to disk. The abort is a decision like a
    /// commit: nobody hears of it before it is durable, or a crash that lost the record would
    /// bring the transaction back in doubt (`Recovering`), free to commit, while an ABORT or
    /// a `Finished` of this life is still in the network. So until then no ABORT leaves, a
    /// query gets no answer, the finished mark stays below it, and the own share stays locked.
    Aborting,
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

/// What a node's restart hands the coordinator (see `Recovered`).
pub(super) struct Restored {
    /// Its own transactions whose share is logged and whose decision is not.
    pub(super) in_doubt: Vec<TxnRecord>,
    /// Its commit decisions not finished, with whether each is visible (applied).
    pub(super) decisions: Vec<(TxnRecord, bool)>,
}

impl Coordinator {
    pub(super) fn new(seed: u64, incarnation: u64) -> Coordinator {
        Coordinator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            incarnation,
            booted: false,
            next_txn_number: 0,
            transactions: BTreeMap::new(),
            pending: BTreeMap::new(),
            retries: BTreeMap::new(),
            mark_sent: None,
            forgetting: BTreeMap::new(),
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
        if let Some(txn) = self.pending.get(&request) {
            let c = self.transactions.get_mut(txn).expect("pending requests are coordinated");
            return attach(&mut c.write.reply_to, reply_to, targets_max);
        }
        if let Some(retry) = self.retries.get_mut(&request) {
            return attach(&mut retry.reply_to, reply_to, targets_max);
        }
        if !self.booted {
            return sh.reply(reply_to, request, Outcome::TryAgain(TryAgainReason::Starting));
        }
        // Frozen: the epoch is ending and nothing new begins in it; the client tries again
        // (here, once the next configuration is installed, or at another member).
        if sh.frozen {
            return sh.reply(reply_to, request, Outcome::TryAgain(TryAgainReason::Busy));
        }
        if self.pending.len() + self.retries.len() >= sh.config.bounds.txns_undecided_max {
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

    /// Starts one attempt at committing a write, under a new transaction id: its own share is
    /// logged while PREPARE is on its way, so both fsyncs run at once.
    fn begin_attempt(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, write: ClientWrite) {
        debug_assert!(self.booted, "transaction ids are only safe once the Boot record is durable");
        let me = sh.me();
        let txn = TxnId { coordinator: me, incarnation: self.incarnation, number: self.next_txn_number };
        self.next_txn_number += 1;
        let participants = sh.participants_for(&write.ops);
        let vote_deadline = now + sh.config.timing.vote_timeout;
        let retransmit = sh.config.timing.prepare_retransmit;
        let yes = if sh.canary(Canary::OwnYesBeforeDurable) { NodeSet::EMPTY.with(me) } else { NodeSet::EMPTY };
        let pinned = if sh.changes_off() { yes } else { NodeSet::EMPTY };
        let phase = Phase::Voting { yes, vote_deadline };
        let c = CoordinatorTxn { txn, participants, write, phase, retransmit, abort_cause: None, pinned };
        if let Err(reason) = own_share.prepare(sh, now, &c.record(), PrepareMode::OwnShare, self.incarnation) {
            return self.conclude(sh, now, c.write, AbortCause::Refused(reason));
        }
        let others = participants.without(me);
        for to in others.iter() {
            sh.send(to, c.prepare_message(sh, self.incarnation));
        }
        self.pending.insert(c.write.request, txn);
        self.transactions.insert(txn, c);
        sh.timers.set(Timer::Coordinator(txn), now + retransmit);
    }

    /// Whether a vote answering the PREPARE of `round` is from an earlier life of this node,
    /// and so ignored. A vote tells what its voter held when that PREPARE came, which says
    /// nothing of now: a NO(Conflict) to a first PREPARE, delayed past the YES to a resent one
    /// that let a commit be decided, and delivered after a restart lost the decision, would
    /// abort a visible commit. So a recovering coordinator hears only the votes of its own
    /// round. (A transaction whose voting began in this life only draws this life's votes.)
    pub(super) fn is_stale_round(&self, round: u64) -> bool {
        round < self.incarnation
    }

    /// The own share's record is durable: this node's YES.
    pub(super) fn on_own_share_durable(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId) {
        let pinned = own_share.is_pinned(txn);
        self.on_yes(sh, own_share, now, sh.me(), txn, pinned);
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
        let Some(c) = self.transactions.get(&txn) else {
            // Finished: a late or duplicate vote changes nothing.
            return;
        };
        if !c.participants.contains(from) {
            sh.stats.messages_dropped += 1;
            return;
        }
        match vote {
            Vote::Yes => self.on_yes(sh, own_share, now, from, txn, false),
            Vote::YesPinned => self.on_yes(sh, own_share, now, from, txn, true),
            // Frozen: no decision, abort included; the settlement decides.
            _ if sh.frozen => {}
            // Only an undecided transaction aborts, once. (A NO of this round while recovering
            // means the voter never held the commit, so none was ever decided.)
            _ if matches!(c.phase, Phase::Committed { .. } | Phase::Aborting) => {}
            Vote::No(NoReason::ConfigMismatch) => self.abort(sh, txn, AbortCause::ConfigMismatch(from)),
            Vote::No(reason) => self.abort(sh, txn, AbortCause::Refused(reason)),
        }
    }

    /// A YES from `from`, `pinned` or not (this node's own is pinned if its log pins the share).
    fn on_yes(
        &mut self,
        sh: &mut Shared,
        own_share: &mut Participant,
        now: Time,
        from: NodeId,
        txn: TxnId,
        pinned: bool,
    ) {
        let Some(c) = self.transactions.get_mut(&txn) else { return };
        let (Phase::Voting { yes, .. } | Phase::Recovering { yes }) = &mut c.phase else { return };
        yes.insert(from);
        if pinned {
            c.pinned.insert(from);
        }
        // No commit decision before the wait is over (docs/protocol.md §7.5). Never the case
        // while the wait starts with the node (no transaction begins before it ends); once
        // installs move it, the transaction's timer decides after the wait.
        if sh.leases.waiting(now) || sh.frozen {
            return;
        }
        let remote_yes = from != sh.me() && sh.canary(Canary::CommitOnFirstYes);
        if yes.is_superset(c.participants) || remote_yes {
            self.decide_commit(sh, own_share, now, txn, NodeSet::EMPTY);
        }
    }

    /// Every participant's YES is durable: log the decision and send COMMIT at once (the
    /// participants' records and this one are written side by side). Nothing is applied or
    /// answered until the decision is durable on a majority, unless every YES is pinned, this
    /// node's own included, or the configuration is the three nodes of a three-node cluster
    /// (docs/protocol.md §7.2, "Visible on every YES"): no settlement can then ever abort the
    /// transaction, so every YES settles it. It is visible at once, the
    /// decision is logged lazily, and `Visible` tells the participants the commit. `durable`
    /// already holds the participants known to hold the commit durably.
    fn decide_commit(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId, durable: NodeSet) {
        let me = sh.me();
        let epoch = sh.epoch();
        let c = self.transactions.get_mut(&txn).expect("deciding a coordinated transaction");
        // Decided on every YES (none on a copy of the decision, as a restored decision or one
        // decided again on an acknowledgement is): pinned ones with changes off, any in a
        // configuration of three nodes with changes on.
        let on_every_yes = durable.is_empty()
            && (c.pinned.is_superset(c.participants)
                || sh.visible_on_every_yes_with_changes()
                || sh.canary(Canary::ImplicitCommitWithChanges));
        let visible_now = sh.visible_on_every_yes() && on_every_yes;
        c.phase = Phase::Committed { durable, visible: false };
        c.retransmit = sh.config.timing.decision_retransmit;
        own_share.remember_commit(txn);
        if visible_now {
            let lsn = sh.persist_lazily(Record::CommitDecided { txn });
            sh.after_durable(lsn, AfterDurable::Decision(txn));
            sh.timers.set(Timer::Coordinator(txn), now + c.retransmit);
            return self.make_visible(sh, own_share, txn);
        }
        let lsn = sh.persist(Record::CommitDecided { txn });
        if sh.canary(Canary::ReplyBeforeDecisionDurable) {
            // The own share's locks are held: this is the outcome the commit will have.
            let outcome = Completed::of_run(sh.store.check(&c.write.ops)).outcome();
            for to in std::mem::take(&mut c.write.reply_to) {
                sh.reply(to, c.write.request, outcome.clone());
            }
        }
        sh.after_durable(lsn, AfterDurable::Decision(txn));
        for to in c.participants.without(me).difference(durable).iter() {
            sh.send(to, Message::Decision { epoch, txn, decision: Decision::Commit });
        }
        sh.timers.set(Timer::Coordinator(txn), now + c.retransmit);
    }

    /// The commit decision is durable here: one more durable copy.
    pub(super) fn on_decision_durable(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId) {
        self.count_durable(sh, own_share, now, sh.me(), txn);
    }

    pub(super) fn on_ack(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, from: NodeId, txn: TxnId) {
        let Some(c) = self.transactions.get(&txn) else { return };
        if !c.participants.contains(from) {
            sh.stats.messages_dropped += 1;
            return;
        }
        match c.phase {
            // A participant holds the commit durably: it was decided before a restart lost
            // the decision record. Decide it again.
            Phase::Recovering { .. } if sh.frozen => {}
            Phase::Recovering { .. } => {
                let mut durable = NodeSet::EMPTY;
                durable.insert(from);
                self.decide_commit(sh, own_share, now, txn, durable);
            }
            Phase::Committed { .. } => self.count_durable(sh, own_share, now, from, txn),
            // Nobody acknowledges what was never decided, or what aborted.
            Phase::Voting { .. } | Phase::Aborting => sh.stats.messages_dropped += 1,
        }
    }

    /// The decision is durable at `at`. At c members (a majority when every node is a member,
    /// §7.3) the commit becomes visible; at every
    /// participant it is finished.
    fn count_durable(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, at: NodeId, txn: TxnId) {
        let Some(c) = self.transactions.get_mut(&txn) else { return };
        let Phase::Committed { durable, visible } = &mut c.phase else { return };
        durable.insert(at);
        let (durable, was_visible) = (*durable, *visible);
        let copies = if sh.canary(crate::Canary::VisibleOnMembersMajority) {
            sh.configuration.is_majority(durable)
        } else if sh.canary(crate::Canary::TwoConfigurationsOneEpoch) {
            // Half of the cluster taken for a majority here too.
            2 * durable.intersection(sh.configuration.members).len() >= sh.config.members.len()
        } else {
            sh.cluster().has_copies(sh.configuration.members, durable)
        };
        // A decision restored from the log, or decided again on an acknowledgement, keeps the
        // copies rule: whether every YES was pinned is not known any more.
        if !was_visible && copies {
            self.make_visible(sh, own_share, txn);
        }
        let Some(c) = self.transactions.get(&txn) else { return };
        let all = durable.is_superset(c.participants);
        if all && matches!(c.phase, Phase::Committed { visible: true, .. }) {
            self.finish(sh, own_share, now, txn);
        }
    }

    /// The decision is durable on a majority: apply it here, tell the client, tell the
    /// participants. From now on no configuration change can abort it (docs/protocol.md §7.4).
    fn make_visible(&mut self, sh: &mut Shared, own_share: &mut Participant, txn: TxnId) {
        let completed = own_share.commit_prepared(sh, txn);
        own_share.learn(txn, Decision::Commit);
        sh.stats.txns_committed += 1;
        sh.persist(Record::Committed { txn });
        let me = sh.me();
        let epoch = sh.epoch();
        let c = self.transactions.get_mut(&txn).expect("a visible commit is coordinated here");
        let Phase::Committed { visible, .. } = &mut c.phase else { unreachable!("only a commit becomes visible") };
        *visible = true;
        let request = c.write.request;
        let outcome = c.write.judged_early.take().unwrap_or(completed).outcome();
        self.pending.remove(&request);
        for to in std::mem::take(&mut c.write.reply_to) {
            sh.reply(to, request, outcome.clone());
        }
        for to in c.participants.without(me).iter() {
            sh.send(to, Message::Visible { epoch, txn });
        }
        if sh.canary(Canary::CoordinatorForgetsDecisions) {
            self.transactions.remove(&txn);
            sh.timers.cancel(Timer::Coordinator(txn));
            own_share.forget_own(txn);
        }
    }

    /// Every participant holds the commit durably: the transaction is finished.
    fn finish(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId) {
        self.transactions.remove(&txn);
        sh.timers.cancel(Timer::Coordinator(txn));
        own_share.forget_own(txn);
        sh.vote_acceptors.finished(txn);
        let lsn = sh.persist(Record::Forgotten { txn });
        self.forgetting.retain(|_, &mut earlier| !sh.is_durable(earlier));
        self.forgetting.insert(txn, lsn);
        self.mark_moved(sh, now);
    }

    /// The finished mark: every transaction of this node ordered before it is finished (the
    /// first one it still coordinates, or the next it will start).
    fn mark(&self, sh: &Shared) -> TxnId {
        let next = TxnId { coordinator: sh.me(), incarnation: self.incarnation, number: self.next_txn_number };
        self.transactions.keys().next().copied().map_or(next, |first| first.min(next))
    }

    /// The mark may have moved: send it soon, batched with whatever else finishes meanwhile.
    fn mark_moved(&mut self, sh: &mut Shared, now: Time) {
        if self.mark_sent.is_none_or(|sent| sent < self.mark(sh)) && !sh.timers.is_set(Timer::FinishedMark) {
            sh.timers.set(Timer::FinishedMark, now + sh.config.timing.finished_mark_interval);
        }
    }

    /// Sends the finished mark to the members if it moved since it was last sent.
    pub(super) fn on_mark_timer(&mut self, sh: &mut Shared) {
        let mark = self.mark(sh);
        if self.mark_sent.is_some_and(|sent| sent >= mark) {
            return;
        }
        self.mark_sent = Some(mark);
        let epoch = sh.epoch();
        for to in sh.configuration.members.without(sh.me()).iter() {
            sh.send(to, Message::FinishedBelow { epoch, below: mark });
        }
    }

    /// Decides to abort an undecided transaction: logs the decision (synced promptly) and
    /// waits for it in [`Phase::Aborting`]; nobody hears of it before it is durable
    /// ([`Coordinator::on_abort_durable`]).
    fn abort(&mut self, sh: &mut Shared, txn: TxnId, cause: AbortCause) {
        let c = self.transactions.get_mut(&txn).expect("aborting a coordinated transaction");
        debug_assert!(
            matches!(c.phase, Phase::Voting { .. } | Phase::Recovering { .. }),
            "only an undecided transaction can abort"
        );
        c.phase = Phase::Aborting;
        c.abort_cause = Some(cause);
        sh.timers.cancel(Timer::Coordinator(txn));
        let lsn = sh.persist(Record::Aborted { txn });
        sh.after_durable(lsn, AfterDurable::Aborted(txn));
    }

    /// The abort is durable: release the own share, tell the participants (best effort: one
    /// that misses it asks, and is told the transaction is finished), let the mark pass it,
    /// then retry or reply. A retry's records all come after this one in the log. The client's
    /// answer is no outcome (`TryAgain`): in a configuration of three nodes, a settlement that
    /// hears neither this node nor of the abort may yet commit the attempt (§7.4, "Inferred
    /// commits").
    pub(super) fn on_abort_durable(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId) {
        let Some(c) = self.transactions.remove_entry(&txn).map(|(_, c)| c) else { return };
        debug_assert_eq!(c.phase, Phase::Aborting, "only an aborting transaction waits for its Aborted record");
        self.pending.remove(&c.write.request);
        own_share.abort_prepared(sh, txn);
        own_share.learn(txn, Decision::Abort);
        sh.stats.txns_aborted += 1;
        let epoch = sh.epoch();
        for to in c.participants.without(sh.me()).iter() {
            sh.send(to, Message::Decision { epoch, txn, decision: Decision::Abort });
        }
        self.mark_moved(sh, now);
        let cause = c.abort_cause.expect("an aborting transaction knows why");
        self.conclude(sh, now, c.write, cause);
    }

    /// After an attempt that did not commit: retry after a backoff, or give the client its
    /// answer.
    fn conclude(&mut self, sh: &mut Shared, now: Time, mut write: ClientWrite, cause: AbortCause) {
        let request = write.request;
        let outcome = match cause {
            // A transaction recovered from the log has no client here to retry for, unless a
            // retry of its request joined it; and a node not yet booted starts no attempt (a
            // recovered transaction can abort before the Boot record is durable).
            AbortCause::Refused(NoReason::Conflict | NoReason::InProgress)
                if write.attempt < sh.config.bounds.conflict_retries_max
                    && !write.reply_to.is_empty()
                    && self.booted =>
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
            AbortCause::Refused(NoReason::Conflict | NoReason::Aborted) => Outcome::TryAgain(TryAgainReason::Conflict),
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
        // Frozen: the next attempt waits for the next configuration.
        if sh.frozen && self.retries.contains_key(&request) {
            return sh.timers.set(Timer::Retry(request), now + sh.config.timing.conflict_backoff_max);
        }
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

    /// `node` is back in touch ([`Shared::back_in_touch`]): every transaction still waiting on
    /// its vote or on its copy of the commit is sent again at once, its backoff started over.
    /// (The transaction the message that brought it back is about is among them: leaving it
    /// out changes only timing, and is not worth the code.)
    pub(super) fn retry_toward(&mut self, sh: &mut Shared, now: Time, node: NodeId) {
        let timing = sh.config.timing;
        for (txn, c) in &mut self.transactions {
            let first_interval = match c.phase {
                Phase::Voting { yes, .. } | Phase::Recovering { yes } if !yes.contains(node) => {
                    timing.prepare_retransmit
                }
                Phase::Committed { durable, .. } if !durable.contains(node) => timing.decision_retransmit,
                _ => continue,
            };
            if c.participants.contains(node) {
                // `on_timer` doubles the interval before it uses it.
                c.retransmit = first_interval / 2;
                sh.timers.set(Timer::Coordinator(*txn), now);
            }
        }
    }

    /// Resend what has not been answered; give up on votes after the vote timeout (never while
    /// recovering: a commit may have been decided).
    pub(super) fn on_timer(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, txn: TxnId) {
        let retransmit_max = sh.config.timing.retransmit_max;
        let epoch = sh.epoch();
        let me = sh.me();
        let round = self.incarnation;
        let Some(c) = self.transactions.get_mut(&txn) else { return };
        c.retransmit = (c.retransmit * 2).min(retransmit_max);
        // Frozen: no decision (abort by timeout included) and nothing to resend that could
        // change what the report said; the install settles the transaction.
        if sh.frozen {
            return sh.timers.set(Timer::Coordinator(txn), now + c.retransmit);
        }
        let (missing, message, next) = match c.phase {
            Phase::Voting { yes, vote_deadline } => {
                let missing = c.participants.difference(yes);
                // Every vote is in, and the wait that held the decision back is over.
                if missing.is_empty() && !sh.leases.waiting(now) {
                    return self.decide_commit(sh, own_share, now, txn, NodeSet::EMPTY);
                }
                if now >= vote_deadline {
                    return self.abort(sh, txn, AbortCause::Timeout(missing));
                }
                (missing, c.prepare_message(sh, round), (now + c.retransmit).min(vote_deadline))
            }
            Phase::Recovering { yes } => {
                let missing = c.participants.difference(yes);
                // Every YES is in, and the wait that held the decision back (a restart's) is over.
                if missing.is_empty() && !sh.leases.waiting(now) {
                    return self.decide_commit(sh, own_share, now, txn, NodeSet::EMPTY);
                }
                (missing, c.prepare_message(sh, round), now + c.retransmit)
            }
            Phase::Committed { durable, .. } => {
                let commit = Message::Decision { epoch, txn, decision: Decision::Commit };
                (c.participants.difference(durable), commit, now + c.retransmit)
            }
            // Waits for its record, not for anyone.
            Phase::Aborting => return,
        };
        for to in missing.without(me).iter() {
            sh.send(to, message.clone());
        }
        sh.timers.set(Timer::Coordinator(txn), next);
    }

    /// Answers a participant's query about one of this node's transactions. Each answer is
    /// safe against the settlement of §7.4: COMMIT only for a decided commit, `Visible` only at
    /// a majority, and `Finished` only for a transaction this node no longer holds — which it
    /// drops only once it aborted (no commit anywhere) or every participant holds the commit
    /// durably, and which it holds from the moment its share is logged (before any decision
    /// can be made) through every restart. A transaction whose share was never durable here
    /// was never decided, so it is aborted.
    pub(super) fn answer(&self, sh: &mut Shared, from: NodeId, txn: TxnId) {
        let epoch = sh.epoch();
        let answer = match self.transactions.get(&txn).map(|c| c.phase) {
            Some(Phase::Committed { visible: true, .. }) => Message::Visible { epoch, txn },
            Some(Phase::Committed { visible: false, .. }) => {
                Message::Decision { epoch, txn, decision: Decision::Commit }
            }
            // Not decided yet, or the abort not durable yet: the asker will ask again.
            Some(Phase::Voting { .. } | Phase::Recovering { .. } | Phase::Aborting) => return,
            // Finished, but not durably yet: the asker will ask again. (Seen in the simulator:
            // a coordinator said "finished", crashed before its `Forgotten` record was durable,
            // and resent COMMIT for ever to a participant that had forgotten the transaction.)
            None if self.forgetting.get(&txn).is_some_and(|&lsn| !sh.is_durable(lsn)) => return,
            None => Message::Finished { epoch, txn },
        };
        sh.send(from, answer);
    }

    /// Takes over the transactions a log holds: decisions not visible stay locked and resend
    /// COMMIT at once; visible ones resend COMMIT to those that have not acknowledged; own
    /// shares without a decision ask every participant again (`Phase::Recovering`). What this
    /// node's own records already settle goes on at once: a transaction of which this node is
    /// the only participant is decided, made visible and finished here.
    pub(super) fn restore(&mut self, sh: &mut Shared, own_share: &mut Participant, now: Time, restored: Restored) {
        let retransmit = sh.config.timing.decision_retransmit;
        let me = sh.me();
        let in_doubt = if sh.canary(Canary::PresumeAbortAfterRestart) {
            // Undecided as far as this node knows: aborted at the first timer.
            let presumed = |r| (r, Phase::Voting { yes: NodeSet::EMPTY.with(me), vote_deadline: now });
            restored.in_doubt.into_iter().map(presumed).collect::<Vec<_>>()
        } else {
            restored.in_doubt.into_iter().map(|r| (r, Phase::Recovering { yes: NodeSet::EMPTY.with(me) })).collect()
        };
        let decided = restored
            .decisions
            .into_iter()
            .map(|(r, visible)| (r, Phase::Committed { durable: NodeSet::EMPTY.with(me), visible }));
        for (record, phase) in in_doubt.into_iter().chain(decided) {
            let txn = record.txn;
            let write = ClientWrite {
                request: record.request,
                ops: record.ops,
                reply_to: Vec::new(),
                attempt: 0,
                judged_early: None,
            };
            if !matches!(phase, Phase::Committed { visible: true, .. }) {
                self.pending.insert(write.request, txn);
            }
            let participants = record.participants;
            let pinned = NodeSet::EMPTY;
            let c = CoordinatorTxn { txn, participants, write, phase, retransmit, abort_cause: None, pinned };
            self.transactions.insert(txn, c);
            sh.timers.set(Timer::Coordinator(txn), now);
            match phase {
                // Its own YES, pinned as its log records the share (not as this life runs).
                Phase::Recovering { .. } => {
                    let pinned = own_share.is_pinned(txn);
                    self.on_yes(sh, own_share, now, me, txn, pinned)
                }
                Phase::Committed { .. } => self.count_durable(sh, own_share, now, me, txn),
                Phase::Voting { .. } | Phase::Aborting => {}
            }
        }
    }

    /// The install of the next configuration (§7.4): each transaction this node coordinates is
    /// settled — by the settlement's sets, else by what this node knows (its commit decision
    /// commits, a transaction undecided here aborts) — and its clients are answered. A write
    /// between attempts stays, for an attempt in the new epoch.
    pub(super) fn settle(&mut self, sh: &mut Shared, own_share: &mut Participant, settlement: &Settlement) {
        for (txn, c) in std::mem::take(&mut self.transactions) {
            sh.timers.cancel(Timer::Coordinator(txn));
            let commit = match c.phase {
                Phase::Committed { visible: true, .. } => continue,
                Phase::Committed { visible: false, .. } => !settlement.aborts(txn),
                Phase::Voting { .. } | Phase::Recovering { .. } => settlement.commits(txn),
                // Its abort is decided (the record is on its way): no commit was, anywhere.
                Phase::Aborting => false,
            };
            let outcome = if commit {
                let completed = own_share.commit_prepared(sh, txn);
                sh.stats.txns_committed += 1;
                c.write.judged_early.clone().unwrap_or(completed).outcome()
            } else {
                own_share.abort_prepared(sh, txn);
                sh.stats.txns_aborted += 1;
                // Not a definite outcome: another attempt of the request may still complete.
                Outcome::TryAgain(TryAgainReason::Conflict)
            };
            for to in c.write.reply_to {
                sh.reply(to, c.write.request, outcome.clone());
            }
        }
        self.pending.clear();
        self.mark_sent = None;
        sh.timers.cancel(Timer::FinishedMark);
    }

    /// This node is not a member of its configuration any more: the writes between attempts
    /// are answered, for their clients to ask a member. Not "not a member", which says this
    /// node applied nothing of the request: its last attempt aborted, but a settlement that
    /// infers commits may have committed it since, from the other members' shares (§7.4,
    /// "Inferred commits"). The client asks again under the same request id, and is told
    /// "not a member" here and the outcome at a member.
    pub(super) fn leave(&mut self, sh: &mut Shared) {
        for (request, write) in std::mem::take(&mut self.retries) {
            sh.timers.cancel(Timer::Retry(request));
            for to in write.reply_to {
                sh.reply(to, request, Outcome::TryAgain(TryAgainReason::Conflict));
            }
        }
    }

    /// The coordinator's part of a snapshot: its own shares without a decision, and its commit
    /// decisions not finished with whether each is applied.
    pub(super) fn snapshot(&self) -> (Vec<TxnRecord>, Vec<DecisionState>) {
        let mut undecided = Vec::new();
        let mut decisions = Vec::new();
        for c in self.transactions.values() {
            match c.phase {
                Phase::Voting { .. } | Phase::Recovering { .. } => undecided.push(c.record()),
                Phase::Committed { visible, .. } => {
                    decisions.push(DecisionState { decision: c.record(), applied: visible })
                }
                // Aborted: the snapshot's records come after its `Aborted` record in the log,
                // so a replay that reads the snapshot read the abort too. Listing it undecided
                // would bring it back in doubt once compaction dropped that record.
                Phase::Aborting => {}
            }
        }
        (undecided, decisions)
    }

    /// Whether this node decided to abort `txn`, one of its own, and waits for the record.
    pub(super) fn is_aborting(&self, txn: TxnId) -> bool {
        self.transactions.get(&txn).is_some_and(|c| c.phase == Phase::Aborting)
    }

    pub(super) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(super) fn is_booted(&self) -> bool {
        self.booted
    }

    /// Transactions not finished, and requests between attempts.
    pub(super) fn unfinished_count(&self) -> usize {
        self.transactions.len() + self.retries.len()
    }

    /// Pending requests are exactly the transactions not yet visible, and each of those holds
    /// its own share.
    pub(super) fn check_invariants(&self, sh: &Shared, own_share: &Participant) -> Result<(), InvariantViolation> {
        for (request, txn) in &self.pending {
            let c = self
                .transactions
                .get(txn)
                .ok_or_else(|| InvariantViolation(format!("pending {request} names unknown {txn}")))?;
            ensure(c.write.request == *request, || {
                format!("{txn} coordinates {} but is indexed as {request}", c.write.request)
            })?;
        }
        for (request, write) in &self.retries {
            ensure(!self.pending.contains_key(request), || format!("{request} is both retrying and pending"))?;
            ensure(write.request == *request, || format!("{} is retrying under {request}", write.request))?;
            ensure(sh.timers.is_set(Timer::Retry(*request)), || {
                format!("{request} waits for a retry that is never due")
            })?;
        }
        let mut not_visible = 0;
        for (txn, c) in &self.transactions {
            ensure(c.txn == *txn, || format!("{} is coordinated under {txn}", c.txn))?;
            let visible = matches!(c.phase, Phase::Committed { visible: true, .. });
            if !visible {
                not_visible += 1;
                ensure(self.pending.get(&c.write.request) == Some(txn), || {
                    format!("{txn} is not visible yet but its request is not pending")
                })?;
            }
            ensure(own_share.holds_own_share(*txn) != visible, || {
                format!("{txn} is {:?} and its own share is held: {}", c.phase, own_share.holds_own_share(*txn))
            })?;
            // A decision is never both: a transaction committed here was never learned as
            // aborted.
            let learned = own_share.known_decision(*txn);
            ensure(!(matches!(c.phase, Phase::Committed { .. }) && learned == Some(Decision::Abort)), || {
                format!("{txn} is committed here but the node learned {learned:?}")
            })?;
            // Every phase but aborting (which waits for its record) waits for answers, and
            // resends on a timer.
            let waits_for_answers = c.phase != Phase::Aborting;
            ensure(!waits_for_answers || sh.timers.is_set(Timer::Coordinator(*txn)), || {
                format!("{txn} is {:?} with no timer to resend or give up", c.phase)
            })?;
        }
        ensure(not_visible == self.pending.len(), || {
            format!("{not_visible} transactions not visible but {} requests pending", self.pending.len())
        })
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
