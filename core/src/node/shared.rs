//! What both protocol roles of a node use: the replica itself (store, locks, completion records,
//! waiting reads), its timers, and the [`Outbox`] through which everything it wants done leaves.

use super::invariants::{InvariantViolation, ensure};
use super::lease::Leases;
use super::reads::WaitingReads;
use super::{Output, Stats};
use crate::completions::Completions;
use crate::config::Config;
use crate::configuration::{Cluster, Configuration, Epoch};
use crate::ids::{Lsn, NodeId, NodeSet, ReplyTo, RequestId, TxnId};
use crate::locks::LockTable;
use crate::message::Message;
use crate::operation::{Outcome, Reply, TxnOp};
use crate::record::Record;
use crate::store::Store;
use crate::time::Time;
use crate::timers::Timers;
use crate::votes::VoteAcceptors;
use std::collections::{BTreeMap, VecDeque};

/// The state the coordinator and the participant roles share, owned by the node and lent to
/// whichever role handles an input.
pub(super) struct Shared {
    pub(super) config: Config,
    /// The configuration this node takes part in. Until configuration changes are wired, the
    /// first one: epoch 1, with the configured members.
    pub(super) configuration: Configuration,
    pub(super) store: Store,
    pub(super) locks: LockTable,
    pub(super) completions: Completions,
    pub(super) reads: WaitingReads,
    pub(super) timers: Timers,
    pub(super) outbox: Outbox,
    pub(super) stats: Stats,
    /// Heartbeats, the read lease, suspicion and the wait before the first YES.
    pub(super) leases: Leases,
    /// This node ended its epoch (docs/protocol.md §7.4): it promised in the agreement on the
    /// next configuration, or is installing it. It casts no vote, makes no decision, logs and
    /// acknowledges no COMMIT and grants no lease in this epoch; it still applies `Visible`.
    pub(super) frozen: bool,
    /// This node's log holds nothing but its own starts ([`Record::is_start`]): it holds
    /// nothing (no transaction, agreement, install, snapshot or caught-up state), so, as far as
    /// it knows, the cluster is new. What it answers a node bootstrapping (docs/protocol.md §7.1).
    pub(super) clean: bool,
    /// When each other node was last heard from in this life (any message of this epoch): a
    /// node heard from for the first time, or after a silence of `retransmit_max`, is back in
    /// touch, and what waits on it is sent again at once ([`Shared::back_in_touch`]).
    last_heard: BTreeMap<NodeId, Time>,
    /// This member's parts in the vote instances of unfinished transactions (docs/protocol.md
    /// §8): restored from the log, dropped as transactions finish and epochs end, carried by
    /// snapshots. No node casts or accepts yet, so none is added.
    pub(super) vote_acceptors: VoteAcceptors,
}

impl Shared {
    /// The shared state of a node starting with a recovered `store` and `completions`.
    pub(super) fn new(
        config: Config,
        configuration: Configuration,
        store: Store,
        completions: Completions,
        mut leases: Leases,
    ) -> Shared {
        leases.install(configuration);
        Shared {
            leases,
            frozen: false,
            clean: false,
            configuration,
            store,
            locks: LockTable::default(),
            completions,
            reads: WaitingReads::default(),
            timers: Timers::default(),
            outbox: Outbox::default(),
            stats: Stats::default(),
            config,
            last_heard: BTreeMap::new(),
            vote_acceptors: VoteAcceptors::default(),
        }
    }

    /// `from` was heard from at `now`. Whether it is back in touch: never heard from in this
    /// life, or not for `retransmit_max`. Retransmissions back off up to that interval while a
    /// node is unreachable (a peer link that is down drops what is sent on it), so without a
    /// nudge a node back from a restart, or from behind a partition, would wait up to a whole
    /// interval for what was meant for it (seen after every node restarted at once: a restarted
    /// coordinator's PREPAREs held keys locked for seconds).
    pub(super) fn back_in_touch(&mut self, now: Time, from: NodeId) -> bool {
        let quiet = self.config.timing.retransmit_max;
        let back = self.last_heard.get(&from).is_none_or(|&at| now.saturating_since(at) >= quiet);
        self.last_heard.insert(from, now);
        back
    }

    pub(super) fn me(&self) -> NodeId {
        self.config.id
    }

    /// Every node of the cluster, member or not: what quorums are counted against (§7.3).
    pub(super) fn cluster(&self) -> Cluster {
        Cluster { nodes: self.config.members }
    }

    /// The epoch every message this node sends carries.
    pub(super) fn epoch(&self) -> Epoch {
        self.configuration.epoch
    }

    /// Hands the runtime an output that is neither a message, a reply nor a record.
    pub(super) fn outbox_push(&mut self, output: Output) {
        self.outbox.push(output);
    }

    pub(super) fn send(&mut self, to: NodeId, message: Message) {
        self.outbox.push(Output::Send { to, message });
    }

    pub(super) fn reply(&mut self, to: ReplyTo, id: RequestId, outcome: Outcome) {
        self.outbox.push(Output::Reply { to, reply: Reply { id, outcome } });
    }

    /// Queues `record` for the log and returns its lsn.
    pub(super) fn persist(&mut self, record: Record) -> Lsn {
        let prompt = record.sync_promptly();
        self.clean &= record.is_start();
        self.outbox.persist(record, prompt)
    }

    /// Queues `record` for the log, to be synced with the next sync or within
    /// [`crate::LAZY_SYNC_DELAY`]: nothing urgent waits on it.
    pub(super) fn persist_lazily(&mut self, record: Record) -> Lsn {
        self.clean &= record.is_start();
        self.outbox.persist(record, false)
    }

    /// Whether a commit may become visible on every member's durable YES, before any copy of
    /// its decision is durable (docs/protocol.md §7.2, "Visible on every YES"):
    ///
    /// - while configuration changes are off, for a commit whose every YES is pinned
    ///   ([`crate::Vote::YesPinned`], this node's own included). Every member is then a
    ///   participant of every transaction, and every holder of a pinned share takes part in no
    ///   agreement while it is in doubt, so no settlement ever decides one: a transaction whose
    ///   every share is durable with a pinned YES can only commit. A restarted coordinator asks
    ///   every participant again and commits on every YES, and a participant releases a share
    ///   only on a decision;
    /// - with changes on, in a configuration of the three nodes of a three-node cluster
    ///   ([`Shared::visible_on_every_yes_with_changes`]).
    ///
    /// Otherwise a settlement reads only a cover of the members, which may miss every YES, so
    /// the decision must first be durable on c members.
    pub(super) fn visible_on_every_yes(&self) -> bool {
        self.changes_off()
            || self.visible_on_every_yes_with_changes()
            || self.canary(crate::Canary::ImplicitCommitWithChanges)
    }

    /// Whether, with changes on, this node's configuration is the three nodes of a three-node
    /// cluster (docs/protocol.md §7.2, "Visible on every YES with changes on"). Every cover of
    /// it is two members, and a settlement reads every member report in its quorum and commits
    /// a transaction that every one of them holds in doubt
    /// (`Settlement::from_reports_inferring`, §7.4 "Inferred commits"): a commit made visible
    /// on the three YES votes is held by every reporter. So a commit here is visible on every
    /// YES, with one synced write on its path.
    pub(super) fn visible_on_every_yes_with_changes(&self) -> bool {
        !self.changes_off() && self.cluster().visible_on_every_yes(self.configuration.members)
    }

    /// Whether this node runs with configuration changes off (`Timing::leases` off: without
    /// `--availability`). It then takes part in no configuration agreement, so its shares are
    /// pinned: only their coordinator's decision releases them.
    pub(super) fn changes_off(&self) -> bool {
        !self.config.timing.leases
    }

    /// Whether the record at `lsn` is durable.
    pub(super) fn is_durable(&self, lsn: Lsn) -> bool {
        lsn <= self.outbox.durable
    }

    /// Runs `action` once the record at `lsn` is durable.
    pub(super) fn after_durable(&mut self, lsn: Lsn, action: AfterDurable) {
        self.outbox.wait(lsn, action);
    }

    /// The nodes that hold the keys of `ops`. Every node holds every key today; routing every
    /// participant choice through here keeps partial replication a local change.
    pub(super) fn participants_for(&self, _ops: &[TxnOp]) -> NodeSet {
        self.configuration.members
    }

    /// Releases the locks `txn` holds on the keys of `ops`, and answers the reads that waited
    /// on them.
    pub(super) fn release(&mut self, txn: TxnId, ops: &[TxnOp]) {
        self.locks.release_all(txn, ops);
        self.wake_reads(ops);
    }

    /// Whether the planted bug `which` is switched on. Always false without the `canary`
    /// feature, so the compiler removes every canary branch from real builds.
    #[inline(always)]
    pub(super) fn canary(&self, which: crate::Canary) -> bool {
        #[cfg(feature = "canary")]
        {
            self.config.canary == Some(which)
        }
        #[cfg(not(feature = "canary"))]
        {
            let _ = which;
            false
        }
    }
}

/// What a node waits to be durable before acting.
#[derive(Clone, Copy, Debug)]
pub(super) enum AfterDurable {
    /// The Boot record: the node may coordinate.
    Boot,
    /// A PREPARE record: vote YES.
    Vote(TxnId),
    /// A commit decision: one more durable copy of it (visible at a majority).
    Decision(TxnId),
    /// A participant's record of a learned commit: acknowledge to the coordinator.
    Ack(TxnId),
    /// The coordinator's own share's PREPARE record: its own YES.
    OwnShare(TxnId),
    /// The record installing the next configuration: act in it.
    Installed,
    /// The coordinator's abort decision: now it may be told.
    Aborted(TxnId),
}

/// Everything the node wants done, in order, and what waits for the log: the outputs the driver
/// drains, the lsns of the records it persists, and the actions held back until a record is
/// durable. Holding them back here is how the core enforces persist-before-send.
#[derive(Default)]
pub(super) struct Outbox {
    outputs: VecDeque<Output>,
    /// The lsn of the last record handed out (0: none yet); the next one gets one more.
    last_lsn: u64,
    durable: Lsn,
    waiting_on_durable: VecDeque<(Lsn, AfterDurable)>,
    records_since_snapshot: u64,
}

impl Outbox {
    fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// Holds `action` back until the record at `lsn` is durable.
    fn wait(&mut self, lsn: Lsn, action: AfterDurable) {
        debug_assert!(lsn > self.durable, "waiting on a record that is durable already");
        self.waiting_on_durable.push_back((lsn, action));
    }

    fn persist(&mut self, record: Record, prompt: bool) -> Lsn {
        self.last_lsn += 1;
        let lsn = Lsn(self.last_lsn);
        self.records_since_snapshot += 1;
        self.outputs.push_back(Output::Persist { lsn, record, prompt });
        lsn
    }

    pub(super) fn pop(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Records everything through `through` as durable. False if that is no news.
    pub(super) fn mark_durable(&mut self, through: Lsn) -> bool {
        // The driver may only report records it was given.
        debug_assert!(through.0 <= self.last_lsn, "durable lsn {} was never emitted", through.0);
        let through = Lsn(through.0.min(self.last_lsn));
        if through <= self.durable {
            return false;
        }
        self.durable = through;
        true
    }

    /// The next action whose record is now durable, oldest first.
    pub(super) fn next_due(&mut self) -> Option<AfterDurable> {
        match self.waiting_on_durable.front() {
            Some(&(lsn, action)) if lsn <= self.durable => {
                self.waiting_on_durable.pop_front();
                Some(action)
            }
            _ => None,
        }
    }

    pub(super) fn is_waiting_on_durable(&self) -> bool {
        !self.waiting_on_durable.is_empty()
    }

    pub(super) fn records_since_snapshot(&self) -> u64 {
        self.records_since_snapshot
    }

    pub(super) fn snapshot_written(&mut self) {
        self.records_since_snapshot = 0;
    }

    /// The durable mark stays within what was emitted, and what waits on the log waits on
    /// records beyond it, in log order (only the oldest is looked at when records become
    /// durable, so one out of order would be held back past its record).
    pub(super) fn check_invariants(&self) -> Result<(), InvariantViolation> {
        ensure(self.durable.0 <= self.last_lsn, || {
            format!("durable through lsn {} but only {} records were emitted", self.durable.0, self.last_lsn)
        })?;
        let mut after = self.durable;
        for (lsn, action) in &self.waiting_on_durable {
            ensure(*lsn > after && lsn.0 <= self.last_lsn, || {
                format!("{action:?} waits on lsn {} after lsn {} (durable through {})", lsn.0, after.0, self.durable.0)
            })?;
            after = *lsn;
        }
        Ok(())
    }
}

/// Ways to break the outbox's bookkeeping, for the tests of `Node::check_invariants`.
#[cfg(test)]
impl Outbox {
    pub(super) fn break_durable(&mut self, through: Lsn) {
        self.durable = through;
    }

    pub(super) fn break_wait(&mut self, lsn: Lsn, action: AfterDurable) {
        self.waiting_on_durable.push_back((lsn, action));
    }
}
