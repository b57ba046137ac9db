//! [`Node`]: one cluster member's protocol state machine, and the one way to drive it.

use crate::completions::Completions;
use crate::config::{Config, ConfigError};
use crate::coordinator::{CoordinatorTxn, PendingRetry};
use crate::decisions::KnownDecisions;
use crate::ids::{Lsn, NodeId, NodeSet, ReplyTo, RequestId, TxnId};
use crate::locks::LockTable;
use crate::message::Message;
use crate::operation::{Operation, Outcome, Reply, Request, WriteOp};
use crate::participant::PreparedTxn;
use crate::reads::WaitingReads;
use crate::record::{Entry, Record, chunk_entries};
use crate::recovery::{Recovered, RecoveryError};
use crate::store::Store;
use crate::time::Time;
use crate::timers::{Timer, Timers};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    /// [`Record::SnapshotBegin`] unnecessary.
    Persist {
        lsn: Lsn,
        record: Record,
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
    pub txns_committed: u64,
    pub txns_aborted: u64,
    pub conflict_retries: u64,
    pub snapshots: u64,
    /// A commit arrived for a transaction known to have aborted. Always zero unless the
    /// protocol is broken; the simulator fails any run where it is not.
    pub conflicting_decisions: u64,
    /// PREPAREs refused because the coordinator's configuration (members, limits) differs.
    pub config_mismatches: u64,
}

/// What a node waits to be durable before acting.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AfterDurable {
    /// The Boot record: the node may coordinate.
    Boot,
    /// A PREPARE record: vote YES.
    Vote(TxnId),
    /// A commit decision: apply it, reply to the client, send COMMIT.
    Decision(TxnId),
    /// A participant's Committed record: acknowledge to the coordinator.
    Ack(TxnId),
}

/// One cluster member. See the crate documentation for the driving contract.
pub struct Node {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) incarnation: u64,
    /// The Boot record is durable: transaction ids of this incarnation are safe to use.
    pub(crate) booted: bool,
    pub(crate) next_txn_number: u64,

    pub(crate) store: Store,
    pub(crate) locks: LockTable,
    pub(crate) completions: Completions,

    /// Transactions this node coordinates, until every participant acknowledged a commit.
    pub(crate) coordinating: BTreeMap<TxnId, CoordinatorTxn>,
    /// Requests whose current transaction here is not decided yet.
    pub(crate) undecided: BTreeMap<RequestId, TxnId>,
    /// Requests waiting out a conflict backoff.
    pub(crate) retries: BTreeMap<RequestId, PendingRetry>,

    /// Transactions prepared here (as participant, or as this coordinator's own share).
    pub(crate) prepared: BTreeMap<TxnId, PreparedTxn>,
    pub(crate) prepared_requests: BTreeMap<RequestId, TxnId>,
    /// Committed here; the acknowledgement waits for the Committed record to be durable.
    pub(crate) acks_pending: BTreeSet<TxnId>,
    pub(crate) known: KnownDecisions,

    pub(crate) reads: WaitingReads,
    pub(crate) timers: Timers,

    next_lsn: u64,
    durable: Lsn,
    waiting_on_durable: VecDeque<(Lsn, AfterDurable)>,
    records_since_snapshot: u64,

    outputs: VecDeque<Output>,
    pub(crate) stats: Stats,
}

impl Node {
    /// Starts a node from the records of its log (empty for a new node): recovers the store,
    /// the prepared transactions with their locks, the commit decisions still to deliver and the
    /// completion records, then persists a new Boot record. The node serves reads and takes part
    /// in transactions at once, and coordinates once the Boot record is durable.
    pub fn start(config: Config, records: impl IntoIterator<Item = Record>, now: Time) -> Result<Node, StartError> {
        config.validate()?;
        let recovered = Recovered::replay(records, config.id, config.bounds.completions_max)?;
        let incarnation = recovered.incarnation.checked_add(1).ok_or(RecoveryError::IncarnationExhausted)?;
        let mut node = Node {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            incarnation,
            booted: false,
            next_txn_number: 0,
            store: Store::default(),
            locks: LockTable::default(),
            completions: Completions::new(config.bounds.completions_max),
            coordinating: BTreeMap::new(),
            undecided: BTreeMap::new(),
            retries: BTreeMap::new(),
            prepared: BTreeMap::new(),
            prepared_requests: BTreeMap::new(),
            acks_pending: BTreeSet::new(),
            known: KnownDecisions::new(config.bounds.decisions_remembered_max),
            reads: WaitingReads::default(),
            timers: Timers::default(),
            next_lsn: 1,
            durable: Lsn(0),
            waiting_on_durable: VecDeque::new(),
            records_since_snapshot: 0,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            config,
        };
        node.install(recovered, now);
        let lsn = node.persist(Record::Boot { incarnation: node.incarnation });
        node.after_durable(lsn, AfterDurable::Boot);
        Ok(node)
    }

    // ---- Inputs ----

    /// The one way in: everything that happens to the node is an [`Input`]. Drain
    /// [`Node::poll_output`] after every call.
    pub fn handle(&mut self, now: Time, input: Input) {
        match input {
            Input::Request { reply_to, request } => self.handle_request(now, reply_to, request),
            Input::Message { from, message } => self.handle_message(now, from, message),
            Input::Durable { through } => self.handle_durable(now, through),
            Input::Timeout => self.handle_timeout(now),
        }
    }

    fn handle_request(&mut self, now: Time, reply_to: ReplyTo, request: Request) {
        match request.operation {
            Operation::Get { key } => self.read(now, reply_to, request.id, key),
            Operation::Txn { ops } => self.coordinate(now, reply_to, request.id, ops),
        }
        self.maybe_snapshot();
    }

    /// Peer input is untrusted: anything malformed or senseless is counted and dropped.
    fn handle_message(&mut self, now: Time, from: NodeId, message: Message) {
        // Every message names a transaction, and so its coordinator: both the sender and that
        // coordinator must be members, or answering could address a node that does not exist.
        let members = self.config.members;
        if from == self.config.id || !members.contains(from) || !members.contains(message.txn().coordinator) {
            self.stats.messages_dropped += 1;
            return;
        }
        match message {
            Message::Prepare { txn, request, ops, participants } => {
                self.on_prepare(now, from, txn, request, ops, participants)
            }
            Message::Vote { txn, vote } => self.on_vote(now, from, txn, vote),
            Message::Decision { txn, decision } => self.on_decision(txn, decision),
            Message::Ack { txn } => self.on_ack(from, txn),
            Message::Query { txn } => self.on_query(from, txn),
        }
        self.maybe_snapshot();
    }

    fn handle_durable(&mut self, now: Time, through: Lsn) {
        // The driver may only report records it was given.
        debug_assert!(through.0 < self.next_lsn, "durable lsn {} was never emitted", through.0);
        let through = Lsn(through.0.min(self.next_lsn - 1));
        if through <= self.durable {
            return;
        }
        self.durable = through;
        while let Some(&(lsn, action)) = self.waiting_on_durable.front() {
            if lsn > through {
                break;
            }
            self.waiting_on_durable.pop_front();
            match action {
                AfterDurable::Boot => self.booted = true,
                AfterDurable::Vote(txn) => self.on_prepare_durable(txn),
                AfterDurable::Decision(txn) => self.on_decision_durable(now, txn),
                AfterDurable::Ack(txn) => self.on_commit_durable(txn),
            }
        }
        self.maybe_snapshot();
    }

    /// Fires every timer due at `now`. Calling it early, or twice, is harmless.
    fn handle_timeout(&mut self, now: Time) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Coordinator(txn) => self.on_coordinator_timer(now, txn),
                Timer::Participant(txn) => self.on_participant_timer(now, txn),
                Timer::Retry(request) => self.on_retry_timer(now, request),
                Timer::Read(id) => self.on_read_timer(id),
            }
        }
        self.maybe_snapshot();
    }

    // ---- Outputs ----

    /// The next thing to do, until `None`. Drain after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to hand the node [`Input::Timeout`] next; `None` if no timer is set. This is exactly
    /// the deadline the node acts on.
    pub fn deadline(&self) -> Option<Time> {
        self.timers.next_deadline()
    }

    // ---- Getters ----

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether the Boot record is durable (the node coordinates writes).
    pub fn is_booted(&self) -> bool {
        self.booted
    }

    /// Keys currently locked by prepared transactions.
    pub fn locked_keys(&self) -> usize {
        self.locks.len()
    }

    /// Transactions prepared here whose outcome this node has not learned.
    pub fn prepared_count(&self) -> usize {
        self.prepared.len()
    }

    /// Transactions this node coordinates that are not finished (undecided, or committed and
    /// not yet acknowledged by every participant).
    pub fn coordinating_count(&self) -> usize {
        self.coordinating.len() + self.retries.len()
    }

    /// Nothing in flight: no locks, no prepared or coordinated transactions, no waiting reads,
    /// nothing waiting to be durable.
    pub fn is_quiescent(&self) -> bool {
        self.locks.is_empty()
            && self.prepared.is_empty()
            && self.coordinating.is_empty()
            && self.retries.is_empty()
            && self.acks_pending.is_empty()
            && self.reads.is_empty()
            && self.waiting_on_durable.is_empty()
    }

    /// The completion records, oldest first.
    pub fn completions(&self) -> impl Iterator<Item = crate::completions::CompletionRecord> + '_ {
        self.completions.iter_oldest_first()
    }

    // ---- Shared helpers for the protocol files ----

    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        self.outputs.push_back(Output::Send { to, message });
    }

    pub(crate) fn reply(&mut self, to: ReplyTo, id: RequestId, outcome: Outcome) {
        self.outputs.push_back(Output::Reply { to, reply: Reply { id, outcome } });
    }

    pub(crate) fn persist(&mut self, record: Record) -> Lsn {
        let lsn = Lsn(self.next_lsn);
        self.next_lsn += 1;
        self.records_since_snapshot += 1;
        self.outputs.push_back(Output::Persist { lsn, record });
        lsn
    }

    pub(crate) fn after_durable(&mut self, lsn: Lsn, action: AfterDurable) {
        debug_assert!(lsn > self.durable);
        self.waiting_on_durable.push_back((lsn, action));
    }

    /// The nodes that hold the keys of `ops`. Every node holds every key today; routing all
    /// participant choices through here keeps partial replication a local change.
    pub(crate) fn participants_for(&self, _ops: &[WriteOp]) -> NodeSet {
        self.config.members
    }

    /// Whether the planted bug `which` is switched on. Always false without the `canary`
    /// feature, so the compiler removes every canary branch from real builds.
    #[inline(always)]
    pub(crate) fn canary(&self, which: crate::Canary) -> bool {
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

    /// Writes a snapshot once enough records have accumulated since the last one.
    fn maybe_snapshot(&mut self) {
        let due = self.config.bounds.snapshot_records_min.max(self.store.len() as u64);
        if self.records_since_snapshot >= due {
            // Begin, entries and end go out together, with nothing between them: the store
            // cannot change while they are written, so the snapshot is of one moment.
            let header = self.snapshot_header();
            self.persist(Record::SnapshotBegin(Box::new(header)));
            let entries = self.store.iter().map(|(k, v)| Entry { key: k.clone(), value: v.clone() });
            let chunks: Vec<Vec<Entry>> = chunk_entries(entries).collect();
            for chunk in chunks {
                self.persist(Record::SnapshotEntries(chunk));
            }
            self.persist(Record::SnapshotEnd { entries: self.store.len() as u64 });
            self.records_since_snapshot = 0;
            self.stats.snapshots += 1;
        }
    }
}
