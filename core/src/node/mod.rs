//! [`Node`]: one cluster member's protocol state machine, and the one way to drive it.
//!
//! A node plays two roles, each a type of its own that owns its state: the [`Coordinator`] of
//! the writes its clients send it, and a [`Participant`] in every write (its own coordinator's
//! included). The node routes each input to the role it concerns and holds what both share
//! ([`Shared`]: the store, locks, completion records, waiting reads, learned decisions, timers
//! and the outbox), lending it to the role for the call. The liveness role — heartbeats, read
//! leases, suspicion and the wait before the first YES — lives in `Shared` too (`lease.rs`),
//! since every read consults it when it answers.

mod bootstrap;
mod coordinator;
mod invariants;
mod join;
mod lease;
mod participant;
mod reads;
mod reconfiguration;
mod shared;

use crate::codec::wal::{CutRecord, CutTail};
use crate::completions::Completions;
use crate::config::{Config, ConfigError};
use crate::configuration::{Cluster, Configuration, Epoch, PaxosMessage};
use crate::ids::{Lsn, NodeId, NodeSet, ReplyTo, TxnId};
use crate::message::Message;
use crate::operation::{NotServingReason, Operation, Outcome, Reply, Request, TryAgainReason};
use crate::record::{Record, Snapshot, SnapshotConfiguration, SnapshotHeaderInEpoch, VersionedEntry, chunk_entries};
use crate::recovery::{Recovered, RecoveryError};
use crate::store::Store;
use crate::time::Time;
use crate::timers::Timer;
use coordinator::Coordinator;
pub use invariants::InvariantViolation;
use join::Join;
use lease::Leases;
use participant::Participant;
use reconfiguration::Reconfiguration;
use shared::{AfterDurable, Shared};
use std::collections::BTreeMap;
use thiserror::Error;

/// Something that happened to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A client's request; `reply_to` comes back with the reply.
    Request { reply_to: ReplyTo, request: Request },
    /// A message from another node.
    Message { from: NodeId, message: Message },
    /// Every record up to and including `through` is durable.
    Durable { through: Lsn },
    /// The clock reached the node's deadline (or any later time).
    Timeout,
    /// The runtime could not do the [`Output::CatchUp`] asked: the member was unreachable or
    /// went silent, or (`refused`) its state could not be taken ([`crate::catch_up::AdoptError`]).
    /// The node's log is unchanged; it asks again after a backoff, of whichever node answers its
    /// requests to join, not of one whose state was refused (docs/protocol.md §7.6).
    CatchUpFailed { from: NodeId, epoch: Epoch, refused: bool },
}

/// Something the node wants done. Outputs may be carried out in any order: the node only
/// emits a message or reply once everything it depends on is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        to: NodeId,
        message: Message,
    },
    Reply {
        to: ReplyTo,
        reply: Reply,
    },
    /// Append `record` to the log; report it with [`Input::Durable`] once it is on stable
    /// storage. A durable [`Record::SnapshotEnd`] makes every record before its snapshot's
    /// [`Record::SnapshotBegin`] unnecessary (the rule lives in [`crate::compaction`]).
    /// `prompt`: something waits on the record (a vote, a decision, a client's answer), so
    /// sync it at once; otherwise it may wait for a later sync, at most
    /// [`crate::LAZY_SYNC_DELAY`]. Usually [`Record::sync_promptly`]; a node whose commits
    /// become visible on every YES logs its decisions and learned commits lazily.
    Persist {
        lsn: Lsn,
        record: Record,
        prompt: bool,
    },
    /// This node stands outside its configuration and was added back under its present
    /// life's ticket (docs/protocol.md §7.6): replace its log with member `from`'s state
    /// through the `Installed` record of `epoch` (a state transfer, adopted with
    /// [`crate::catch_up::Adoption::joining`]), then start the node again from that log. If
    /// that cannot be done now, do nothing: the node asks again.
    CatchUp {
        from: NodeId,
        epoch: Epoch,
    },
}

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("the log cannot be recovered: {0}")]
    Recovery(#[from] RecoveryError),
}

/// Counters of what the node has seen, for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Peer messages that were malformed, from a non-member, or made no sense; dropped.
    pub messages_dropped: u64,
    /// Transactions committed here, as coordinator or participant. A transaction with an op
    /// that could not run commits too (as a no-op, see [`crate::Outcome::Failed`]).
    pub txns_committed: u64,
    /// Transactions aborted here, as coordinator or participant.
    pub txns_aborted: u64,
    pub conflict_retries: u64,
    pub snapshots: u64,
    /// A commit arrived for a transaction known to have aborted. Always zero unless the
    /// protocol is broken; the simulator fails any run where it is not.
    pub conflicting_decisions: u64,
    /// PREPAREs refused because the coordinator's configuration (members, limits) differs.
    pub config_mismatches: u64,
    /// Completion records evicted since the node started (see [`crate::completions`]).
    pub completions_evicted: u64,
    /// Peer messages of another epoch than this node's configuration; dropped.
    pub epoch_mismatches: u64,
    /// PREPAREs ignored because they came during the wait before this node's first YES
    /// (docs/protocol.md §7.5); the coordinator sends them again.
    pub prepares_before_wait: u64,
    /// Configurations installed here since the node started (docs/protocol.md §7.4).
    pub installs: u64,
    /// Votes answering a PREPARE of an earlier life of this coordinator, ignored: they tell
    /// what the voter held before the restart, not now (docs/protocol.md §7.2).
    pub stale_votes: u64,
    /// PREPAREs of a transaction below its coordinator's finished mark (finished, so stale),
    /// not prepared.
    pub prepares_below_mark: u64,
    /// COMMITs for a transaction never held here and not finished, dropped: acknowledging
    /// one would count a durable copy with nothing on disk.
    pub commits_not_held: u64,
    /// Catch-ups this node asked of its runtime ([`Output::CatchUp`]).
    pub catch_ups_asked: u64,
}

/// One cluster member. See the crate documentation for the driving contract.
pub struct Node {
    shared: Shared,
    coordinator: Coordinator,
    participant: Participant,
    reconfiguration: Reconfiguration,
    join: Join,
    /// While bootstrapping a new cluster (asking, then begun): what it heard (`bootstrap.rs`).
    bootstrap: Option<bootstrap::Bootstrap>,
}

impl Node {
    /// Starts a node from the records of its log (empty for a new node): recovers the store,
    /// the prepared transactions with their locks, the commit decisions still to deliver and the
    /// completion records, then persists a new Boot record. The node serves reads and takes part
    /// in transactions at once, and coordinates once the Boot record is durable.
    pub fn start(config: Config, records: impl IntoIterator<Item = Record>, now: Time) -> Result<Node, StartError> {
        Node::start_after_cut(config, records, now, None)
    }

    /// [`Node::start`] for a log whose recovery cut `cut` off its end. A record damaged after
    /// it was written (whole but failing its checksum, or its length failing its check) may
    /// have been an acknowledged one: such a node cannot vouch for its log (see
    /// [`Node::start_unvouched`]); a record cut short is a torn write, never acknowledged, and
    /// changes nothing.
    pub fn start_after_cut(
        config: Config,
        records: impl IntoIterator<Item = Record>,
        now: Time,
        cut: Option<CutTail>,
    ) -> Result<Node, StartError> {
        let unvouched = cut.is_some_and(|c| c.record == CutRecord::WholeButDamaged);
        Node::start_vouching(config, records, now, !unvouched, false)
    }

    /// [`Node::start`] for a node that cannot vouch for its log: its data dir was lost, or
    /// recovery cut a record that may have been acknowledged (docs/protocol.md §7.4, §7.6). It
    /// logs so ([`Record::Unvouched`], so every later start knows it too) and takes part in
    /// nothing: it sends nothing, answers every request "not serving: catching up", and
    /// ignores every peer; the members suspect it and remove it. Catching up replaces its log.
    pub fn start_unvouched(
        config: Config,
        records: impl IntoIterator<Item = Record>,
        now: Time,
    ) -> Result<Node, StartError> {
        Node::start_vouching(config, records, now, false, false)
    }

    /// `bootstrapping`: the log is empty, and the node asks the others before it takes part
    /// ([`Node::start_bootstrapping`]); nothing is logged yet.
    fn start_vouching(
        config: Config,
        records: impl IntoIterator<Item = Record>,
        now: Time,
        vouches: bool,
        bootstrapping: bool,
    ) -> Result<Node, StartError> {
        config.validate()?;
        // Every recovered record counts as made now: its age before the crash is not known,
        // and keeping it a retention longer is safe.
        let b = &config.bounds;
        let completions =
            Completions::new(b.completions_max, b.completion_bytes_max, Self::completion_retention(&config), now);
        let recovered = Recovered::replay(records, config.id, completions)?;
        let incarnation = recovered.incarnation.checked_add(1).ok_or(RecoveryError::IncarnationExhausted)?;
        let Recovered {
            epoch,
            store,
            completions,
            prepared,
            commits_held,
            untracked,
            decisions,
            commit_memory,
            configuration,
            installed,
            agreement,
            unvouched,
            finished_marks,
            bootstrapped,
            only_starts,
            vote_acceptors,
            pinned,
            ..
        } = recovered;
        let cannot_vouch = unvouched || !vouches;
        // A log that installed no configuration (an earlier build's, or a new node's) is of the
        // first one, with the configured members.
        let configuration =
            configuration.unwrap_or(Configuration { epoch: Epoch::FIRST.max(epoch), members: config.members });
        let leases = Leases::new(&config, incarnation, now);
        let restored = reconfiguration::Restored { installed, agreement, cannot_vouch };
        let mut node = Node {
            coordinator: Coordinator::new(config.seed, incarnation),
            participant: Participant::new(config.bounds.decisions_remembered_max),
            reconfiguration: Reconfiguration::new(
                config.id,
                configuration,
                Cluster { nodes: config.members },
                config.seed,
                restored,
            ),
            join: Join::new(join::ticket_for(config.seed, incarnation, now), configuration),
            shared: Shared::new(config, configuration, store, completions, leases),
            bootstrap: None,
        };
        node.shared.clean = only_starts;
        node.shared.vote_acceptors = vote_acceptors;
        node.plant_agreement_flaws();
        // A promise in the durable agreement state ended the epoch here for good: frozen before
        // anything of the epoch is sent (a vote or an acknowledgement replayed from the log).
        if node.reconfiguration.is_frozen() {
            node.shared.frozen = true;
            node.shared.leases.freeze();
        }
        if cannot_vouch {
            // Nothing of the log is acted on: no transaction is restored, so nothing asks,
            // votes or decides.
            node.begin_unvouched(now, !unvouched);
            return Ok(node);
        }
        let sh = &mut node.shared;
        let me = sh.me();
        let (in_doubt, prepared): (BTreeMap<_, _>, BTreeMap<_, _>) =
            prepared.into_iter().partition(|(txn, _): &(TxnId, _)| txn.coordinator == me);
        let in_doubt: Vec<_> = in_doubt.into_values().collect();
        let decisions: Vec<_> = decisions.into_values().collect();
        let own_shares =
            in_doubt.iter().cloned().chain(decisions.iter().filter(|(_, applied)| !applied).map(|(t, _)| t.clone()));
        let own_shares = own_shares.collect();
        let restored = participant::Restored {
            prepared,
            commits_held,
            own_shares,
            untracked,
            memory: commit_memory,
            marks: finished_marks,
            pinned,
        };
        node.participant.restore(sh, now, restored);
        node.coordinator.restore(sh, &mut node.participant, now, coordinator::Restored { in_doubt, decisions });
        if bootstrapping {
            node.ask_to_bootstrap(now);
        } else {
            node.begin(now);
            // Began a new cluster, and took part in nothing since: it waits again until every
            // other node has begun too (`bootstrap.rs`).
            if bootstrapped && only_starts {
                node.wait_for_the_others_to_begin(now);
            }
        }
        Ok(node)
    }

    /// Takes part, from the state restored: logs this start, coordinates once it is durable.
    fn begin(&mut self, now: Time) {
        let incarnation = self.incarnation();
        let lsn = self.shared.persist(Record::BootTracked { incarnation });
        self.shared.after_durable(lsn, AfterDurable::Boot);
        // Durable with the start, before any share this life prepares: replay tells from it
        // that those shares were voted pinned.
        if self.shared.changes_off() {
            self.shared.persist(Record::ChangesOff);
        }
        // A value chosen before the crash and not installed yet is installed now; a proposer's
        // retries are its deadline's.
        self.drain_agreement(now);
        // A node removed before the crash asks to join.
        self.start_asking(now);
    }

    /// Takes part in nothing until it has caught up (`log_it`: the log does not say so yet).
    fn begin_unvouched(&mut self, now: Time, log_it: bool) {
        if log_it {
            self.shared.persist(Record::Unvouched);
        }
        let incarnation = self.incarnation();
        self.shared.persist(Record::BootTracked { incarnation });
        self.start_asking(now);
    }

    // ---- Input ----

    /// The one way in: everything that happens to the node is an [`Input`]. Drain
    /// [`Node::poll_output`] after every call.
    pub fn handle(&mut self, now: Time, input: Input) {
        if self.bootstrap.is_some() {
            return self.handle_bootstrapping(now, input);
        }
        // A node outside (its data dir lost included) echoes each member's latest lease request
        // in its requests to join, whatever the heartbeat's epoch: a member just added counts it
        // as heard from only so (§7.6). (Review finding: without it, a node whose data dir was
        // lost had one detection timeout, not `join_grace`, to catch up.)
        if let Input::Message { from, message: Message::Heartbeat { request, .. } } = &input
            && *from != self.shared.me()
            && self.stands_outside()
        {
            self.join.heard(*from, *request, &self.shared.config.members);
        }
        if self.reconfiguration.cannot_vouch() {
            return self.handle_unvouched(now, input);
        }
        self.shared.completions.advance(now);
        self.shared.leases.observe(now);
        match input {
            Input::Request { reply_to, request } => self.handle_request(now, reply_to, request),
            Input::Message { from, message } => self.handle_message(now, from, message),
            Input::Durable { through } => self.handle_durable(now, through),
            Input::Timeout => self.handle_timeout(now),
            Input::CatchUpFailed { from, epoch, refused } => self.on_catch_up_failed(now, from, epoch, refused),
        }
        self.maybe_propose(now);
        // Checked after every input: one that logs nothing can still make a snapshot due, by
        // deleting keys (the due count follows the store's size).
        self.maybe_snapshot();
    }

    /// A node that cannot vouch for its log takes part in nothing (see [`Node::start_unvouched`]).
    fn handle_unvouched(&mut self, now: Time, input: Input) {
        let sh = &mut self.shared;
        sh.leases.observe(now);
        match input {
            Input::Request { reply_to, request } => {
                sh.reply(reply_to, request.id, Outcome::NotServing(NotServingReason::CatchingUp))
            }
            // Only the members' answers to its asking to join (§7.6).
            Input::Message { from, message: Message::Paxos(PaxosMessage::Chosen { value, .. }) } => {
                self.on_chosen_outside(now, from, value)
            }
            // It lost what it had: the cluster is not new.
            Input::Message { from, message: Message::BootstrapQuery { ticket, round } } => {
                self.answer_bootstrap(from, ticket, round)
            }
            // A heartbeat's request is only kept (in `handle`), to echo in its requests to join.
            Input::Message { message: Message::Heartbeat { .. }, .. } => {}
            Input::Message { .. } => sh.stats.messages_dropped += 1,
            Input::Durable { through } => {
                sh.outbox.mark_durable(through);
            }
            Input::Timeout => {
                while let Some(timer) = self.shared.timers.pop_due(now) {
                    if timer == Timer::Join {
                        self.on_join_timer(now);
                    }
                }
            }
            Input::CatchUpFailed { from, epoch, refused } => self.on_catch_up_failed(now, from, epoch, refused),
        }
    }

    fn handle_request(&mut self, now: Time, reply_to: ReplyTo, request: Request) {
        let Node { shared: sh, coordinator, participant, .. } = self;
        // A node removed from the configuration serves nothing: the client asks a member. Nor
        // does one too far behind to follow the changes: it catches up first (§7.6).
        if !sh.configuration.contains(sh.me()) {
            return sh.reply(reply_to, request.id, Outcome::NotServing(NotServingReason::NotAMember));
        }
        if self.join.is_behind() {
            return sh.reply(reply_to, request.id, Outcome::NotServing(NotServingReason::CatchingUp));
        }
        match request.operation {
            Operation::Get { key } => sh.read(now, reply_to, request.id, key),
            // No commit decision before the wait is over (§7.5): the wait starts with the node,
            // so refusing to begin a transaction before it is over keeps every decision after it.
            Operation::Txn { .. } if sh.leases.waiting(now) => {
                sh.reply(reply_to, request.id, Outcome::TryAgain(TryAgainReason::Starting))
            }
            Operation::Txn { ops } => coordinator.coordinate(sh, participant, now, reply_to, request.id, ops),
            Operation::Scan { start, end, limit, keys_only } => {
                sh.scan(now, reply_to, request.id, reads::Scan { start, end, limit, keys_only })
            }
        }
    }

    /// Peer input is untrusted: anything malformed or senseless is counted and dropped.
    fn handle_message(&mut self, now: Time, from: NodeId, message: Message) {
        if from == self.shared.me() {
            self.shared.stats.messages_dropped += 1;
            return;
        }
        let message = match message {
            // A node outside takes from the members only what was chosen (§7.6).
            Message::Paxos(PaxosMessage::Chosen { value, .. }) if self.stands_outside() => {
                return self.on_chosen_outside(now, from, value);
            }
            // The agreement checks who may take part in it, and answers a member behind.
            Message::Paxos(message) => return self.on_paxos(now, from, message),
            Message::JoinRequest { epoch, ticket, echo } => {
                return self.on_join_request(now, from, epoch, ticket, echo);
            }
            // Of no epoch, from any node of the cluster (§7.1).
            Message::BootstrapQuery { ticket, round } => return self.answer_bootstrap(from, ticket, round),
            Message::BootstrapAnswer { .. } => {
                self.shared.stats.messages_dropped += 1;
                return;
            }
            // A member of a later epoch heartbeats this node: this node missed the value that
            // follows its epoch, and may hear nothing from its own epoch's members (they may all
            // have moved on, or be gone). It answers with a message of its own epoch, which the
            // sender answers with that value. (Seen in the simulator: a member that missed an
            // install, left with one member of its epoch, which crashed for good, stayed behind
            // while the others heartbeated it.)
            // (A node outside asks to join instead, which draws the same answer.)
            Message::Heartbeat { epoch, .. } if epoch > self.shared.epoch() => {
                if !self.stands_outside() {
                    self.shared.remind_of_my_epoch(now, from);
                }
                return;
            }
            message => message,
        };
        // Once the install is logged the old epoch is over here, though the node acts in the new
        // one only when that record is durable: nothing of the old epoch may be logged after
        // the `Installed` record, which replay settles the epoch at (§7.4). (A `Visible` taken
        // then logged a `Committed` for a commit the settlement had applied: the log could not
        // be replayed. Found by the simulator, sweep with minority faults, seed 245.)
        if self.reconfiguration.is_installing() {
            self.shared.stats.epoch_mismatches += 1;
            return;
        }
        // A member still in an older epoch is told the value it lacks, whatever it sends.
        let epoch = message.epoch();
        if let Some(older) = epoch
            && older < self.shared.epoch()
        {
            self.shared.stats.epoch_mismatches += 1;
            self.tell_chosen(from, older);
            return;
        }
        let Node { shared: sh, coordinator, participant, join, .. } = self;
        // A 2PC message names a transaction, and so its coordinator: both the sender and that
        // coordinator must be members, or answering could address a node that does not exist.
        let members = sh.configuration.members;
        let me = sh.me();
        let coordinator_of_txn = message.txn().map(|txn| txn.coordinator);
        if from == me || !members.contains(from) || coordinator_of_txn.is_some_and(|c| !members.contains(c)) {
            sh.stats.messages_dropped += 1;
            return;
        }
        // Two-phase commit runs inside one epoch: a message of another is not about this
        // configuration's transactions (and a heartbeat of another is not heard from).
        if epoch != Some(sh.epoch()) {
            sh.stats.epoch_mismatches += 1;
            return;
        }
        if sh.back_in_touch(now, from) {
            coordinator.retry_toward(sh, now, from);
            participant.retry_toward(sh, now, from);
        }
        let mine = coordinator_of_txn == Some(me);
        let from_coordinator = coordinator_of_txn == Some(from);
        match message {
            // No YES before the wait is over (§7.5): a PREPARE that comes during it is not
            // taken at all (nothing logged, so no vote can come due, nor a retransmission be
            // answered with a YES of a recovered transaction); the coordinator sends it again.
            Message::Prepare { .. } if sh.leases.waiting(now) => sh.stats.prepares_before_wait += 1,
            Message::Prepare { txn, request, ops, participants, round, .. } => {
                let record = crate::record::TxnRecord { txn, request, ops, participants };
                participant.on_prepare(sh, now, from, record, round)
            }
            Message::Vote { round, .. } if mine && coordinator.is_stale_round(round) => sh.stats.stale_votes += 1,
            Message::Vote { txn, vote, .. } if mine => coordinator.on_vote(sh, participant, now, from, txn, vote),
            Message::Ack { txn, .. } if mine => coordinator.on_ack(sh, participant, now, from, txn),
            // Only this node decides its own transactions, and only a transaction's coordinator
            // says it is visible or finished.
            Message::Decision { txn, decision, .. } if !mine => participant.on_decision(sh, txn, decision),
            Message::Visible { txn, .. } if from_coordinator => participant.on_visible(sh, txn),
            Message::Finished { txn, .. } if from_coordinator => participant.on_finished(sh, txn),
            Message::FinishedBelow { below, .. } if from_coordinator => participant.on_finished_below(sh, below),
            // Someone holding a prepared transaction asks what was decided. The coordinator
            // answers from its own state; any other node only from a decision it has learned.
            Message::Query { txn, .. } if mine => coordinator.answer(sh, from, txn),
            Message::Query { txn, .. } => {
                if let Some(decision) = participant.answer(txn) {
                    let epoch = sh.epoch();
                    sh.send(from, Message::Decision { epoch, txn, decision });
                }
            }
            Message::Heartbeat { epoch, request, echo } => {
                // With an echo: a round trip, not a delayed heartbeat of an earlier life.
                if echo.is_some() {
                    join.acts_in_this_epoch(from);
                }
                sh.on_heartbeat(from, epoch, request, echo)
            }
            Message::LeaseGrant { epoch, request } => sh.on_lease_grant(from, epoch, request),
            // Routed to the agreement and the join above.
            Message::Paxos(_)
            | Message::JoinRequest { .. }
            | Message::BootstrapQuery { .. }
            | Message::BootstrapAnswer { .. } => {}
            Message::Vote { .. }
            | Message::Ack { .. }
            | Message::Decision { .. }
            | Message::Visible { .. }
            | Message::Finished { .. }
            | Message::FinishedBelow { .. } => sh.stats.messages_dropped += 1,
            // No node casts or recovers votes yet (docs/protocol.md §8, stage 2): nothing to
            // act on.
            Message::Votes(_) => sh.stats.messages_dropped += 1,
        }
    }

    fn handle_durable(&mut self, now: Time, through: Lsn) {
        if !self.shared.outbox.mark_durable(through) {
            return;
        }
        self.agreement_durable(now, through);
        loop {
            let bootstrapping = self.bootstrap.is_some();
            let install_logged = self.reconfiguration.install_logged();
            let Node { shared: sh, coordinator, participant, .. } = self;
            let Some(action) = sh.outbox.next_due() else { break };
            match action {
                AfterDurable::Boot => {
                    coordinator.on_boot_durable();
                    // A node bootstrapping sends nothing but its questions: heartbeats start
                    // when it takes part (`bootstrap.rs`).
                    if !bootstrapping {
                        sh.start_heartbeats(now);
                    }
                }
                // No YES before the wait is over (§7.5): held, and cast when it ends.
                AfterDurable::Vote(txn) if sh.leases.waiting(now) => sh.hold_vote(txn),
                AfterDurable::Vote(txn) => participant.on_prepare_durable(sh, txn),
                // The install's record went into the log while the decision's was being synced:
                // counting the copy now could log the commit applied, or finished, after the
                // install, where replay cannot take it (review finding). The install settles it.
                AfterDurable::Decision(_) if install_logged => {}
                AfterDurable::Decision(txn) => coordinator.on_decision_durable(sh, participant, now, txn),
                AfterDurable::Ack(txn) => participant.on_commit_durable(sh, txn),
                AfterDurable::OwnShare(txn) => coordinator.on_own_share_durable(sh, participant, now, txn),
                AfterDurable::Installed => self.finish_install(now),
                AfterDurable::Aborted(txn) => coordinator.on_abort_durable(sh, participant, now, txn),
            }
        }
    }

    /// Fires every timer due at `now`. Calling it early, or twice, is harmless.
    fn handle_timeout(&mut self, now: Time) {
        loop {
            let Node { shared: sh, coordinator, participant, .. } = self;
            let Some(timer) = sh.timers.pop_due(now) else { break };
            match timer {
                Timer::Coordinator(txn) => coordinator.on_timer(sh, participant, now, txn),
                Timer::Participant(txn) => participant.on_timer(sh, now, txn),
                Timer::Retry(request) => coordinator.on_retry_timer(sh, participant, now, request),
                Timer::Read(id) => sh.on_read_timer(id),
                Timer::Heartbeat => sh.on_heartbeat_timer(now),
                Timer::WaitOver => {
                    for txn in sh.release_votes() {
                        participant.on_prepare_durable(sh, txn);
                    }
                }
                Timer::FinishedMark => coordinator.on_mark_timer(sh),
                Timer::Agreement => self.on_agreement_timer(now),
                Timer::Install => self.on_install_timer(now),
                Timer::Join => self.on_join_timer(now),
                // Cancelled when the bootstrap ends.
                Timer::Bootstrap => {}
            }
        }
    }

    // ---- Outputs ----

    /// The next thing to do, until `None`. Drain after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.shared.outbox.pop()
    }

    /// When to hand the node [`Input::Timeout`] next; `None` if no timer is set. This is exactly
    /// the deadline the node acts on.
    pub fn deadline(&self) -> Option<Time> {
        self.shared.timers.next_deadline()
    }

    // ---- Getters ----

    pub fn id(&self) -> NodeId {
        self.shared.me()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// This member's parts in the vote instances of unfinished transactions (docs/protocol.md
    /// §8; none is added yet).
    pub fn vote_acceptors(&self) -> &crate::votes::VoteAcceptors {
        &self.shared.vote_acceptors
    }

    /// The configuration this node takes part in.
    pub fn configuration(&self) -> Configuration {
        self.shared.configuration
    }

    /// The commit memory: committed transactions of this node's epoch not known to be finished
    /// (its own decisions included), in id order. A configuration change's settlement reads
    /// it (docs/protocol.md §7.4).
    pub fn commit_memory(&self) -> impl Iterator<Item = TxnId> + '_ {
        self.participant.commit_memory()
    }

    /// How long completion records are kept at least: the configured retention, or none with
    /// the canary that breaks that rule.
    fn completion_retention(config: &Config) -> std::time::Duration {
        #[cfg(feature = "canary")]
        if config.canary == Some(crate::Canary::EvictYoungCompletions) {
            return std::time::Duration::ZERO;
        }
        config.timing.completion_retention
    }

    pub fn stats(&self) -> Stats {
        Stats { completions_evicted: self.shared.completions.evicted(), ..self.shared.stats }
    }

    pub fn incarnation(&self) -> u64 {
        self.coordinator.incarnation()
    }

    /// Whether this node vouches for its log: false once it knows it may have lost what it
    /// acknowledged (its data dir lost, a damaged tail cut), until a catch-up replaced the log.
    pub fn vouches_for_its_log(&self) -> bool {
        !self.reconfiguration.cannot_vouch()
    }

    /// Whether the Boot record is durable (the node coordinates writes).
    pub fn is_booted(&self) -> bool {
        self.coordinator.is_booted()
    }

    /// The members this node suspects: not heard from for `detection_timeout` as of the last
    /// input (docs/protocol.md §7.3). Empty while leases are off.
    pub fn suspected(&self) -> NodeSet {
        self.shared.leases.suspected()
    }

    /// Whether this node answers reads from memory as of the last input: it holds a read lease,
    /// or leases are off.
    pub fn serves_reads(&self) -> bool {
        self.shared.leases.serving().is_ok()
    }

    /// No YES vote and no commit decision before this time: the node's start plus the lease
    /// wait `W` (docs/protocol.md §7.5); the start itself while leases are off.
    pub fn no_yes_before(&self) -> Time {
        self.shared.leases.no_yes_before()
    }

    /// Keys currently locked by prepared transactions.
    pub fn locked_keys(&self) -> usize {
        self.shared.locks.len()
    }

    /// The shares this node holds in doubt that it voted pinned, with configuration changes off
    /// (docs/protocol.md §7.2): a commit may be visible on them with no copy of its decision
    /// anywhere, so a cluster may switch to changes only once none is left (§6).
    pub fn pinned_in_doubt(&self) -> Vec<TxnId> {
        self.participant.pinned_in_doubt().collect()
    }

    /// Transactions prepared here whose outcome this node has not learned.
    pub fn prepared_count(&self) -> usize {
        self.participant.prepared_count()
    }

    /// Transactions this node coordinates that are not finished (undecided, or committed and
    /// not yet acknowledged by every participant), and requests between attempts.
    pub fn coordinating_count(&self) -> usize {
        self.coordinator.unfinished_count()
    }

    /// Nothing in flight: not bootstrapping, no locks, no prepared or coordinated transactions,
    /// no waiting reads, nothing waiting to be durable.
    pub fn is_quiescent(&self) -> bool {
        let sh = &self.shared;
        self.bootstrap.is_none()
            && sh.locks.is_empty()
            && self.participant.is_idle()
            && self.coordinator.unfinished_count() == 0
            && sh.reads.is_empty()
            && !sh.outbox.is_waiting_on_durable()
    }

    /// The completion records, oldest first.
    pub fn completions(&self) -> impl Iterator<Item = crate::completions::CompletionRecord> + '_ {
        self.shared.completions.iter_oldest_first()
    }

    // ---- Snapshots ----

    /// The node's durable state as one value: what replaying every record emitted so far
    /// would rebuild. Volatile state (undecided transactions this node coordinates, with their
    /// own shares) is left out, exactly as a crash would lose it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from_parts(self.snapshot_header(), self.versioned_entries().collect())
    }

    /// The store's entries as snapshots log them.
    fn versioned_entries(&self) -> impl Iterator<Item = VersionedEntry> + '_ {
        self.shared.store.iter_versioned().map(|(key, v)| VersionedEntry {
            key: key.clone(),
            value: v.value.clone(),
            version: v.version,
        })
    }

    /// The snapshot without the store's entries: each role's part, and the completion records.
    fn snapshot_header(&self) -> SnapshotHeaderInEpoch {
        let (mut prepared, commits_held) = self.participant.snapshot();
        let (own_undecided, decisions) = self.coordinator.snapshot();
        prepared.extend(own_undecided);
        SnapshotHeaderInEpoch {
            incarnation: self.coordinator.incarnation(),
            epoch: self.shared.epoch(),
            completions: self.shared.completions.iter_oldest_first().collect(),
            prepared,
            commits_held,
            decisions,
            commit_memory: self.participant.commit_memory().collect(),
        }
    }

    /// Writes a snapshot once as many records have been written since the last one as the
    /// larger of the configured minimum and the key count, so disk use stays proportional to
    /// the data and each snapshot's cost is spread over as many writes.
    fn maybe_snapshot(&mut self) {
        let due = self.shared.config.bounds.snapshot_records_min.max(self.shared.store.len() as u64);
        if self.shared.outbox.records_since_snapshot() < due {
            return;
        }
        // A snapshot says that everything in it tracks versions: not while a transaction
        // prepared by an earlier build is still undecided here (it soon is).
        if self.participant.holds_untracked() {
            return;
        }
        // Nor between an install's record and its settling: the snapshot would hold the ended
        // epoch's transactions after the record that settled them.
        if self.reconfiguration.is_installing() {
            return;
        }
        let configuration = SnapshotConfiguration {
            configuration: self.shared.configuration,
            installed: self.reconfiguration.installed().cloned().collect(),
            agreement: self.reconfiguration.agreement().map(|a| a.state().clone()),
        };
        // Begin, entries and end go out together, with nothing between them: the store
        // cannot change while they are written, so the snapshot is of one moment.
        let header = self.snapshot_header();
        let chunks: Vec<Vec<VersionedEntry>> = chunk_entries(self.versioned_entries()).collect();
        let marks: Vec<TxnId> = self.participant.finished_marks().collect();
        let pinned: Vec<TxnId> = self.participant.pinned_in_doubt().collect();
        let sh = &mut self.shared;
        sh.persist(Record::SnapshotBeginInEpoch(Box::new(header)));
        sh.persist(Record::SnapshotConfiguration(Box::new(configuration)));
        for states in sh.vote_acceptors.snapshot_chunks() {
            sh.persist(Record::SnapshotVoteAcceptors(states));
        }
        // The finished marks heard are part of the snapshot: compaction drops every record
        // before it, and a mark forgotten breaks finishing. (A member that forgot a mark
        // refused for ever to acknowledge a COMMIT that the coordinator, having lost its own
        // record that the commit was finished, sent again: the coordinator never finished, and
        // its locks stayed. Simulator seeds 2948 and 5455 of the default sweep. Logged again
        // after the snapshot's end, as they first were, a crash could keep the end and lose
        // them: review finding.)
        if !marks.is_empty() && !sh.canary(crate::Canary::SnapshotDropsMarks) {
            sh.persist(Record::SnapshotFinishedMarks(marks));
        }
        // The pins of the shares in doubt the snapshot holds, inside it for the same reason.
        if !pinned.is_empty() {
            sh.persist(Record::SnapshotPinned(pinned));
        }
        if chunks.is_empty() {
            // Even an empty store's snapshot says it tracks versions.
            sh.persist(Record::SnapshotVersionedEntries(Vec::new()));
        }
        for chunk in chunks {
            sh.persist(Record::SnapshotVersionedEntries(chunk));
        }
        sh.persist(Record::SnapshotEnd { entries: sh.store.len() as u64 });
        // Compaction drops the life's `ChangesOff` with everything before the snapshot: logged
        // again after it. (A crash that keeps the end and loses this record keeps no later
        // record either, so no share of this life is replayed unpinned.)
        if sh.changes_off() {
            sh.persist(Record::ChangesOff);
        }
        sh.outbox.snapshot_written();
        sh.stats.snapshots += 1;
    }
}
