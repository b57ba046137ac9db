//! The participant's side of two-phase commit inside an epoch (docs/protocol.md §7.2). On
//! PREPARE a participant checks the ops, locks their keys and persists its share; only once
//! that record is durable does it vote YES. On COMMIT it logs the commit and acknowledges once
//! that record is durable, but does not apply it: the keys stay locked until the coordinator
//! says the commit is visible (durable on a majority), or that it is finished. It asks the
//! coordinator and the other participants (cooperative termination) if an outcome is slow to
//! come. Locks are never released by guessing.
//!
//! A coordinator's own share of its transactions is prepared here too (see
//! [`PrepareMode::OwnShare`]): locked and logged like any other, with no vote (the coordinator
//! counts it itself once the record is durable), and applied by the coordinator.
//!
//! The **commit memory** is here: the committed transactions, this node's own included, not
//! known to be finished. It is bounded (past the bound the participant votes NO, busy), goes
//! into snapshots, and is what a configuration change's settlement reads (§7.4).

use super::invariants::{InvariantViolation, ensure};
use super::shared::{AfterDurable, Shared};
use crate::Canary;
use crate::completions::{Completed, Completion};
use crate::configuration::{Report, ReportTooLarge, Settlement};
use crate::decisions::KnownDecisions;
use crate::ids::{NodeId, RequestId, TxnId};
use crate::message::{Decision, Message, NoReason, Vote};
use crate::record::{Record, TxnRecord};
use crate::time::Time;
use crate::timers::Timer;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The participant role: the transactions prepared at this node, the acknowledgements it owes,
/// the decisions it has learned and its commit memory.
pub(super) struct Participant {
    /// Transactions holding their keys here: prepared, or committed and not yet applied.
    prepared: BTreeMap<TxnId, PreparedTxn>,
    /// The request of each prepared transaction, to refuse a second attempt of the same request
    /// while one is prepared here.
    by_request: BTreeMap<RequestId, TxnId>,
    /// Commits learned here whose record is not yet durable; the acknowledgement waits for it.
    acks_pending: BTreeSet<TxnId>,
    /// Decisions learned recently, to answer other participants' queries and ignore stale
    /// PREPAREs.
    known: KnownDecisions,
    /// Committed transactions not known to be finished (docs/protocol.md §7.2).
    memory: BTreeSet<TxnId>,
    /// Each coordinator's latest finished mark heard here (rebuilt by replay from
    /// `FinishedBelow`): every one of its transactions below it is finished.
    marks: BTreeMap<NodeId, TxnId>,
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
    /// The round of the latest PREPARE for it (its coordinator's incarnation then), which the
    /// YES vote echoes; 0 for a share restored from the log, which votes only when asked again.
    round: u64,
    /// Prepared while this node's configuration changes were off: its YES is pinned
    /// (docs/protocol.md §7.2).
    pinned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PreparedState {
    /// This node coordinates the transaction: its share is locked and logged, and the
    /// coordinator decides and applies it.
    OwnShare,
    /// The PREPARE record is on its way to disk; no vote yet.
    Persisting,
    /// The PREPARE record is durable and the YES vote was sent.
    Voted,
    /// The commit is learned and logged here (durable once it is not in `acks_pending`); the
    /// keys stay locked until it is visible or finished.
    CommitHeld,
}

/// Whose share of a transaction is being prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PrepareMode {
    /// The coordinator's own: locked and logged; the coordinator counts it once durable.
    OwnShare,
    /// A remote coordinator's PREPARE: logged, then voted on.
    Remote,
}

/// What a node's restart hands the participant (see `Recovered`).
pub(super) struct Restored {
    /// Remote shares without a known outcome.
    pub(super) prepared: BTreeMap<TxnId, TxnRecord>,
    /// Remote commits logged here and not applied.
    pub(super) commits_held: BTreeMap<TxnId, TxnRecord>,
    /// This node's own shares still locked: undecided, or decided and not visible.
    pub(super) own_shares: Vec<TxnRecord>,
    pub(super) untracked: BTreeSet<TxnId>,
    pub(super) memory: BTreeSet<TxnId>,
    pub(super) marks: BTreeMap<NodeId, TxnId>,
    /// The shares in doubt, remote or own, that were voted pinned.
    pub(super) pinned: BTreeSet<TxnId>,
}

impl Participant {
    pub(super) fn new(decisions_remembered_max: usize) -> Participant {
        Participant {
            prepared: BTreeMap::new(),
            by_request: BTreeMap::new(),
            acks_pending: BTreeSet::new(),
            known: KnownDecisions::new(decisions_remembered_max),
            memory: BTreeSet::new(),
            marks: BTreeMap::new(),
        }
    }

    /// Whether `txn` is below its coordinator's finished mark as heard here: finished.
    fn below_mark(&self, txn: TxnId) -> bool {
        self.marks.get(&txn.coordinator).is_some_and(|mark| txn < *mark)
    }

    /// Remembers the decision this node's coordinator made for one of its own transactions,
    /// once its share is applied or released. Queries about its own transactions are answered
    /// by the coordinator, not from here; the invariant check reads it (a transaction committed
    /// here was never learned as aborted).
    pub(super) fn learn(&mut self, txn: TxnId, decision: Decision) {
        debug_assert!(!self.prepared.contains_key(&txn), "{txn} is decided while its own share is still prepared");
        self.known.insert(txn, decision);
    }

    /// The decision this node has learned for `txn`, if it still remembers one.
    pub(super) fn known_decision(&self, txn: TxnId) -> Option<Decision> {
        self.known.get(txn)
    }

    /// This node decided to commit one of its own transactions: it enters the commit memory.
    pub(super) fn remember_commit(&mut self, txn: TxnId) {
        self.memory.insert(txn);
    }

    /// One of this node's own transactions is finished: it leaves the commit memory.
    pub(super) fn forget_own(&mut self, txn: TxnId) {
        self.memory.remove(&txn);
    }

    /// The finished mark heard from each coordinator (see [`Participant::on_finished_below`]).
    pub(super) fn finished_marks(&self) -> impl Iterator<Item = TxnId> + '_ {
        self.marks.values().copied()
    }

    /// The commit memory: committed transactions not known to be finished, in id order.
    pub(super) fn commit_memory(&self) -> impl Iterator<Item = TxnId> + '_ {
        self.memory.iter().copied()
    }

    /// Checks, locks and logs a transaction's share here. On `Err` nothing is locked or logged.
    pub(super) fn prepare(
        &mut self,
        sh: &mut Shared,
        now: Time,
        record: &TxnRecord,
        mode: PrepareMode,
        round: u64,
    ) -> Result<(), NoReason> {
        if self.prepared.len() >= sh.config.bounds.prepared_max {
            return Err(NoReason::Busy);
        }
        // A commit it voted for would enter the commit memory, which must stay bounded: the
        // coordinators' finished marks free it.
        if self.memory.len() >= sh.config.bounds.commit_memory_max {
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
        let pinned = sh.changes_off();
        let p = PreparedTxn { record: record.clone(), tracked: true, state, query_interval, queries: 0, round, pinned };
        self.prepared.insert(record.txn, p);
        self.by_request.insert(record.request, record.txn);
        if mode == PrepareMode::Remote && sh.canary(Canary::ApplyAtPrepare) {
            let _ = sh.store.run(&record.ops);
        }
        let lsn = sh.persist(Record::PreparedInEpoch { epoch: sh.epoch(), txn: record.clone() });
        match mode {
            PrepareMode::OwnShare => sh.after_durable(lsn, AfterDurable::OwnShare(record.txn)),
            PrepareMode::Remote => {
                sh.after_durable(lsn, AfterDurable::Vote(record.txn));
                sh.timers.set(Timer::Participant(record.txn), now + query_interval);
                if sh.canary(Canary::VoteBeforeDurable) {
                    self.on_prepare_durable(sh, record.txn);
                }
            }
        }
        Ok(())
    }

    /// A coordinator's PREPARE. A repeated one is answered from what this node holds, so that a
    /// restarted coordinator asking again learns what became of its transaction.
    pub(super) fn on_prepare(&mut self, sh: &mut Shared, now: Time, from: NodeId, record: TxnRecord, round: u64) {
        let txn = record.txn;
        let epoch = sh.epoch();
        // A frozen member casts no more votes in its epoch (§7.4).
        if sh.frozen {
            return;
        }
        if txn.coordinator != from || record.ops.is_empty() {
            sh.stats.messages_dropped += 1;
            return;
        }
        if let Some(p) = self.prepared.get_mut(&txn) {
            if p.record.request != record.request || p.record.ops != record.ops {
                // The same transaction id with other contents: a coordinator reusing ids (its
                // log was replaced by an older copy). Never vote on it.
                sh.stats.messages_dropped += 1;
                return;
            }
            p.round = p.round.max(round);
            match p.state {
                // A retransmitted PREPARE: repeat the vote; if it is not cast yet, it is coming.
                // Pinned as the log says the share is, whatever mode this life runs in (review
                // finding: a share of a build before pins, or of a life with changes on, voted
                // pinned now would be made visible on the fast path with no recorded pin, and a
                // switch to changes could settle it).
                PreparedState::Voted => {
                    let vote = if p.pinned { Vote::YesPinned } else { Vote::Yes };
                    sh.send(from, Message::Vote { epoch, txn, vote, round });
                }
                PreparedState::CommitHeld => self.acknowledge(sh, txn),
                PreparedState::Persisting | PreparedState::OwnShare => {}
            }
            return;
        }
        if self.acks_pending.contains(&txn) || self.memory.contains(&txn) {
            // Committed here (applied, or its record on its way): the coordinator counts this
            // copy once it is durable.
            return self.acknowledge(sh, txn);
        }
        match self.known.get(txn) {
            // Committed and applied here earlier, so it was logged durably before: a commit is
            // decided only with this node's YES, which needs its PREPARE record, and a
            // transaction prepared here leaves only by a decision.
            Some(Decision::Commit) => return self.acknowledge(sh, txn),
            // Aborted here: say so, for a restarted coordinator that asks again. (It can never
            // be a commit: that would have needed this node's YES.)
            Some(Decision::Abort) => {
                return sh.send(from, Message::Vote { epoch, txn, vote: Vote::No(NoReason::Aborted), round });
            }
            None => {}
        }
        // A stale PREPARE of a finished transaction (its coordinator no longer holds it, so no
        // vote counts): preparing it would lock keys for nothing and, were this a commit this
        // node forgot, report it in doubt at a settlement (design review item 9).
        if self.below_mark(txn) {
            sh.stats.prepares_below_mark += 1;
            return;
        }
        // Every node must agree on who takes part and on the limits, or a write could commit
        // without a node that should hold it: refuse loudly, never silently. (Checked only for
        // a transaction not held here: a NO means "never held", see `Phase::Recovering`.)
        if record.participants != sh.participants_for(&record.ops) || sh.config.limits.check_ops(&record.ops).is_err() {
            sh.stats.config_mismatches += 1;
            sh.send(from, Message::Vote { epoch, txn, vote: Vote::No(NoReason::ConfigMismatch), round });
            return;
        }
        if let Err(reason) = self.prepare(sh, now, &record, PrepareMode::Remote, round) {
            sh.send(from, Message::Vote { epoch, txn, vote: Vote::No(reason), round });
        }
    }

    /// Sends `txn`'s coordinator an acknowledgement if the commit is durable here; if its
    /// record is still on its way, the acknowledgement follows it.
    fn acknowledge(&mut self, sh: &mut Shared, txn: TxnId) {
        if !self.acks_pending.contains(&txn) && !sh.frozen {
            sh.send(txn.coordinator, Message::Ack { epoch: sh.epoch(), txn });
        }
    }

    /// The PREPARE record is durable: now, and only now, vote YES.
    pub(super) fn on_prepare_durable(&mut self, sh: &mut Shared, txn: TxnId) {
        let Some(p) = self.prepared.get_mut(&txn) else {
            // Decided while its record was being written.
            return;
        };
        // Frozen: the vote queued behind the record is dropped (§7.4); the report counted the
        // record as in doubt.
        if p.state == PreparedState::Persisting && !sh.frozen {
            p.state = PreparedState::Voted;
            let round = p.round;
            let vote = if p.pinned { Vote::YesPinned } else { Vote::Yes };
            sh.send(txn.coordinator, Message::Vote { epoch: sh.epoch(), txn, vote, round });
        }
    }

    /// A decision about another node's transaction, from its coordinator or from a node
    /// answering our query.
    pub(super) fn on_decision(&mut self, sh: &mut Shared, txn: TxnId, decision: Decision) {
        debug_assert_ne!(txn.coordinator, sh.me(), "the node routes decisions about its own transactions away");
        // Frozen: no COMMIT is logged or acknowledged any more, and the settlement decides
        // what is held here (§7.4).
        if sh.frozen {
            return;
        }
        // An acknowledgement counts a durable copy of the commit. For a transaction not held
        // here it is true only if the commit was held here (in the commit memory, its record
        // on its way, or learned and applied) or is finished (below the coordinator's mark);
        // anything else (this node lost its log, say) has nothing on disk to count. (One whose
        // decision is known here goes on: a commit after an abort is counted as conflicting.)
        let held_here = self.prepared.contains_key(&txn)
            || self.acks_pending.contains(&txn)
            || self.memory.contains(&txn)
            || self.known.get(txn).is_some()
            || self.below_mark(txn);
        if decision == Decision::Commit && !held_here {
            sh.stats.commits_not_held += 1;
            return;
        }
        match (self.known.get(txn), decision) {
            // A late ABORT for a transaction learned as committed: only an earlier build's
            // coordinator, which presumed abort for what it forgot, sends one. Harmless.
            (Some(Decision::Commit), Decision::Abort) => return,
            // A transaction has exactly one outcome: a commit after an abort is a protocol
            // violation somewhere. Counted (the simulator fails on it), never acted on.
            (Some(Decision::Abort), Decision::Commit) => {
                sh.stats.conflicting_decisions += 1;
                return;
            }
            _ => self.known.insert(txn, decision),
        }
        let state = self.prepared.get(&txn).map(|p| p.state);
        match (decision, state) {
            (Decision::Commit, Some(PreparedState::Voted | PreparedState::Persisting)) => {
                self.hold_commit(sh, txn);
                if sh.canary(Canary::VisibleBeforeMajority) {
                    self.apply(sh, txn);
                }
            }
            (Decision::Commit, Some(PreparedState::CommitHeld) | None) => self.acknowledge(sh, txn),
            (Decision::Abort, Some(PreparedState::Voted | PreparedState::Persisting)) => {
                self.abort_prepared(sh, txn);
                sh.stats.txns_aborted += 1;
                // Not waited for: without it, recovery asks again.
                sh.persist(Record::Aborted { txn });
            }
            (Decision::Abort, _) | (_, Some(PreparedState::OwnShare)) => {}
        }
    }

    /// Logs a learned commit, keeps the keys locked, and acknowledges once the record is
    /// durable. It enters the commit memory.
    fn hold_commit(&mut self, sh: &mut Shared, txn: TxnId) {
        let p = self.prepared.get_mut(&txn).expect("holding the commit of a transaction prepared here");
        p.state = PreparedState::CommitHeld;
        p.queries = 0;
        p.query_interval = sh.config.timing.query_interval;
        self.memory.insert(txn);
        // With changes off, the commit is settled by every YES: only the coordinator's
        // finishing waits on this record, so it goes with the next sync.
        let record = Record::CommitLearned { txn };
        let lsn = if sh.visible_on_every_yes() { sh.persist_lazily(record) } else { sh.persist(record) };
        self.acks_pending.insert(txn);
        sh.after_durable(lsn, AfterDurable::Ack(txn));
    }

    /// The commit is visible (durable on a majority): apply it. If this node had not learned
    /// the commit yet, it logs and acknowledges it as for a COMMIT.
    pub(super) fn on_visible(&mut self, sh: &mut Shared, txn: TxnId) {
        match self.prepared.get(&txn).map(|p| p.state) {
            Some(PreparedState::Voted | PreparedState::Persisting) => {
                if self.known.get(txn) == Some(Decision::Abort) {
                    sh.stats.conflicting_decisions += 1;
                    return;
                }
                self.known.insert(txn, Decision::Commit);
                self.hold_commit(sh, txn);
                self.apply(sh, txn);
            }
            Some(PreparedState::CommitHeld) => self.apply(sh, txn),
            Some(PreparedState::OwnShare) | None => {}
        }
    }

    /// Applies a commit held here and logs that it is (not waited for: a crash that loses the
    /// record leaves the commit held, and it becomes visible again).
    fn apply(&mut self, sh: &mut Shared, txn: TxnId) {
        self.commit_prepared(sh, txn);
        sh.stats.txns_committed += 1;
        sh.persist(Record::Committed { txn });
    }

    /// The coordinator says `txn` is finished (it no longer holds it). A commit held here is
    /// durable at every member, so visible: apply it. A share only voted for belongs to an
    /// aborted transaction, or is a stale PREPARE of a finished commit prepared again after
    /// this node forgot it (a commit is decided only with this node's YES, and it finishes
    /// only once this node acknowledged it durably): either way, release it.
    ///
    /// Leaving the commit memory is not logged here: a restart remembers it again until the
    /// coordinator's finished mark passes it, which is only ever later.
    ///
    /// Frozen, a participant ignores it (and the marks): its report held the share as it is,
    /// and the settlement decides it (§7.4). A settlement that infers the commit of a share in
    /// doubt must find it held (seen in the reasoning: a coordinator aborted on a lost vote,
    /// answered a frozen reporter's query with `Finished`, and went away).
    pub(super) fn on_finished(&mut self, sh: &mut Shared, txn: TxnId) {
        if sh.frozen && !sh.canary(Canary::FrozenReleasesOnFinished) {
            return;
        }
        self.finish(sh, txn);
        self.memory.remove(&txn);
    }

    /// The coordinator's finished mark: every one of its transactions ordered before `below`
    /// is finished (see [`Participant::on_finished`]).
    pub(super) fn on_finished_below(&mut self, sh: &mut Shared, below: TxnId) {
        if sh.frozen && !sh.canary(Canary::FrozenReleasesOnFinished) {
            return;
        }
        let moved = self.marks.get(&below.coordinator).is_none_or(|mark| *mark < below);
        if moved {
            self.marks.insert(below.coordinator, below);
        }
        let first = TxnId { coordinator: below.coordinator, incarnation: 0, number: 0 };
        let held: Vec<TxnId> = self.prepared.range(first..below).map(|(txn, _)| *txn).collect();
        for txn in held {
            self.finish(sh, txn);
        }
        let before = self.memory.len();
        let mut later = self.memory.split_off(&first);
        let mut rest = later.split_off(&below);
        self.memory.append(&mut rest);
        sh.vote_acceptors.finished_below(below);
        // Logged when it tells something new, so that a restart knows the mark again.
        if moved || self.memory.len() != before {
            sh.persist(Record::FinishedBelow { below });
        }
    }

    fn finish(&mut self, sh: &mut Shared, txn: TxnId) {
        match self.prepared.get(&txn).map(|p| p.state) {
            Some(PreparedState::CommitHeld) => self.apply(sh, txn),
            Some(PreparedState::Voted) => {
                self.abort_prepared(sh, txn);
                sh.stats.txns_aborted += 1;
                sh.persist(Record::Aborted { txn });
            }
            // Its record is not durable yet: no vote, and nothing waits on it; the coordinator
            // ignores a late vote.
            Some(PreparedState::Persisting | PreparedState::OwnShare) | None => {}
        }
    }

    /// The Committed record is durable: acknowledge, so the coordinator can count this copy.
    pub(super) fn on_commit_durable(&mut self, sh: &mut Shared, txn: TxnId) {
        // Frozen: the acknowledgement queued behind the record is dropped (§7.4).
        if self.acks_pending.remove(&txn) && !sh.frozen {
            sh.send(txn.coordinator, Message::Ack { epoch: sh.epoch(), txn });
        }
    }

    /// What this node, not the transaction's coordinator, answers a query with: only a
    /// decision it has learned. (The coordinator answers from its own state.)
    pub(super) fn answer(&self, txn: TxnId) -> Option<Decision> {
        let held = self.acks_pending.contains(&txn)
            || self.prepared.get(&txn).is_some_and(|p| p.state == PreparedState::CommitHeld);
        if held { Some(Decision::Commit) } else { self.known.get(txn) }
    }

    /// `coordinator` is back in touch ([`Shared::back_in_touch`]): every transaction of its
    /// that waits here for an outcome asks it again at once, the backoff started over.
    pub(super) fn retry_toward(&mut self, sh: &mut Shared, now: Time, coordinator: NodeId) {
        let first_interval = sh.config.timing.query_interval;
        for (txn, p) in &mut self.prepared {
            let waiting = matches!(p.state, PreparedState::Voted | PreparedState::CommitHeld);
            if waiting && txn.coordinator == coordinator {
                // `on_timer` doubles the interval before it uses it.
                p.query_interval = first_interval / 2;
                sh.timers.set(Timer::Participant(*txn), now);
            }
        }
    }

    /// No decision yet: ask the coordinator, and from the second query on the other
    /// participants too. A commit held here asks the coordinator alone whether it is visible.
    pub(super) fn on_timer(&mut self, sh: &mut Shared, now: Time, txn: TxnId) {
        let retransmit_max = sh.config.timing.retransmit_max;
        let me = sh.me();
        let epoch = sh.epoch();
        let voted_here = self.prepared.get(&txn).is_some_and(|p| p.state == PreparedState::Voted);
        if voted_here && sh.canary(Canary::ReleaseLocksOnTimeout) {
            self.abort_prepared(sh, txn);
            return;
        }
        let Some(p) = self.prepared.get_mut(&txn) else { return };
        let participants = p.record.participants;
        p.query_interval = (p.query_interval * 2).min(retransmit_max);
        let next = now + p.query_interval;
        match p.state {
            PreparedState::Voted => {
                // The coordinator first, alone: it knows the outcome unless it lost it. From
                // the second query on, the other participants too (cooperative termination),
                // in case the coordinator is down or partitioned away.
                let others = p.queries > 0;
                p.queries += 1;
                sh.send(txn.coordinator, Message::Query { epoch, txn });
                if others {
                    for to in participants.without(me).without(txn.coordinator).iter() {
                        sh.send(to, Message::Query { epoch, txn });
                    }
                }
            }
            // Only the coordinator counts the durable copies.
            PreparedState::CommitHeld => sh.send(txn.coordinator, Message::Query { epoch, txn }),
            PreparedState::Persisting | PreparedState::OwnShare => {}
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

    /// Takes over what a log left: prepared transactions get their locks back, have voted (a
    /// PREPARE record is only ever followed by a YES vote) and start asking for their outcome
    /// at once; commits held here stay locked and ask whether they are visible; this node's own
    /// shares stay locked for its coordinator.
    pub(super) fn restore(&mut self, sh: &mut Shared, now: Time, restored: Restored) {
        let Restored { prepared, commits_held, own_shares, untracked, memory, marks, pinned } = restored;
        let query_interval = sh.config.timing.query_interval;
        let remote = prepared
            .into_values()
            .map(|record| (record, PreparedState::Voted))
            .chain(commits_held.into_values().map(|record| (record, PreparedState::CommitHeld)));
        for (record, state) in remote {
            let txn = record.txn;
            sh.timers.set(Timer::Participant(txn), now);
            self.restore_one(sh, record, state, &untracked, &pinned, query_interval);
        }
        for record in own_shares {
            self.restore_one(sh, record, PreparedState::OwnShare, &untracked, &pinned, query_interval);
        }
        self.memory = memory;
        self.marks = marks;
    }

    fn restore_one(
        &mut self,
        sh: &mut Shared,
        record: TxnRecord,
        state: PreparedState,
        untracked: &BTreeSet<TxnId>,
        pinned: &BTreeSet<TxnId>,
        query_interval: Duration,
    ) {
        let txn = record.txn;
        sh.locks.try_lock_all(txn, &record.ops).expect("replay checked that prepared transactions do not overlap");
        self.by_request.insert(record.request, txn);
        let tracked = !untracked.contains(&txn);
        let pinned = pinned.contains(&txn);
        self.prepared.insert(txn, PreparedTxn { record, tracked, state, query_interval, queries: 0, round: 0, pinned });
    }

    /// Whether this node's share of `txn` is pinned, as its log records it.
    pub(super) fn is_pinned(&self, txn: TxnId) -> bool {
        self.prepared.get(&txn).is_some_and(|p| p.pinned)
    }

    /// The shares held here in doubt, remote or own, that were voted pinned: a commit may be
    /// visible on them with no copy of its decision anywhere (docs/protocol.md §7.2).
    pub(super) fn pinned_in_doubt(&self) -> impl Iterator<Item = TxnId> + '_ {
        self.prepared.values().filter(|p| p.pinned && p.state != PreparedState::CommitHeld).map(|p| p.record.txn)
    }

    /// The participant's part of a snapshot: the remote transactions prepared here without a
    /// known outcome, and those whose commit is held here. (This node's own shares are the
    /// coordinator's part.)
    pub(super) fn snapshot(&self) -> (Vec<TxnRecord>, Vec<TxnRecord>) {
        let of =
            |state: PreparedState| self.prepared.values().filter(move |p| p.state == state).map(|p| p.record.clone());
        let prepared = of(PreparedState::Persisting).chain(of(PreparedState::Voted)).collect();
        (prepared, of(PreparedState::CommitHeld).collect())
    }

    /// What this member knows of its epoch, for its report (§7.4): the commits it holds or
    /// decided and that are not finished (its commit memory), and the shares it holds with no
    /// known decision. Every record appended counts, durable or not: the promise's record goes
    /// in the log after them. Not an own share whose abort this node decided (`aborting`): its
    /// `Aborted` record is appended, and once durable the abort is acted on, whatever the
    /// settlement says; reported in doubt, it could be inferred committed (§7.4, "Inferred
    /// commits").
    pub(super) fn report(&self, sh: &Shared, aborting: impl Fn(TxnId) -> bool) -> Result<Report, ReportTooLarge> {
        let reported_aborting = sh.canary(Canary::AbortingReportedInDoubt);
        let in_doubt = self
            .prepared
            .iter()
            .filter(|(t, p)| p.state != PreparedState::CommitHeld && (reported_aborting || !aborting(**t)))
            .map(|(t, _)| *t);
        if sh.canary(Canary::SettleIgnoresSurvivor) {
            return Report::new(std::iter::empty(), in_doubt.chain(self.memory.iter().copied()));
        }
        Report::new(self.memory.iter().copied(), in_doubt)
    }

    /// The install of the next configuration (§7.4): every share still held here is settled —
    /// by the settlement's sets, else by what this node knows (a commit held here commits, a
    /// share in doubt aborts) — and nothing of the ended epoch is remembered. This node's own
    /// shares were settled by its coordinator first. Nothing is logged: the install's record
    /// settles them at replay alike.
    pub(super) fn settle(&mut self, sh: &mut Shared, settlement: &Settlement) {
        let held: Vec<(TxnId, PreparedState)> = self.prepared.iter().map(|(t, p)| (*t, p.state)).collect();
        for (txn, state) in held {
            let commit = match state {
                PreparedState::CommitHeld => !settlement.aborts(txn),
                _ => settlement.commits(txn),
            };
            if commit {
                self.commit_prepared(sh, txn);
                sh.stats.txns_committed += 1;
            } else {
                self.abort_prepared(sh, txn);
                sh.stats.txns_aborted += 1;
            }
        }
        self.acks_pending.clear();
        self.memory.clear();
        self.known = KnownDecisions::new(sh.config.bounds.decisions_remembered_max);
        sh.release_votes();
    }

    /// Whether a transaction an earlier build prepared is still undecided here.
    pub(super) fn holds_untracked(&self) -> bool {
        self.prepared.values().any(|p| !p.tracked)
    }

    pub(super) fn prepared_count(&self) -> usize {
        self.prepared.len()
    }

    /// Nothing prepared or held here and no acknowledgement owed.
    pub(super) fn is_idle(&self) -> bool {
        self.prepared.is_empty() && self.acks_pending.is_empty()
    }

    /// Whether this node's own share of a transaction it coordinates is prepared (locked).
    pub(super) fn holds_own_share(&self, txn: TxnId) -> bool {
        self.prepared.get(&txn).is_some_and(|p| p.state == PreparedState::OwnShare)
    }

    /// Locks and prepared transactions are two views of one thing, the request index matches
    /// what it indexes, a prepared transaction is undecided here (or its commit held) and asks
    /// for its outcome.
    pub(super) fn check_invariants(&self, sh: &Shared) -> Result<(), InvariantViolation> {
        for (key, holder) in sh.locks.iter() {
            ensure(self.prepared.contains_key(&holder), || {
                format!("key {key:?} is locked by {holder}, which is not prepared")
            })?;
        }
        let mut locked = 0;
        for (txn, p) in &self.prepared {
            let held = p.state == PreparedState::CommitHeld;
            ensure(held || !self.acks_pending.contains(txn), || format!("{txn} is prepared and committed here"))?;
            let known = self.known.get(*txn);
            ensure(if held { known != Some(Decision::Abort) } else { known.is_none() }, || {
                format!("{txn} is {:?} but its decision ({known:?}) is known here", p.state)
            })?;
            ensure(!held || self.memory.contains(txn), || format!("{txn} holds its commit but is not remembered"))?;
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
