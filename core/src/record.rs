//! Records a node asks its driver to persist (the write-ahead log), and what recovery rebuilds
//! from them.
//!
//! Inside an epoch (docs/protocol.md §7.2) every member, the coordinator included, logs its
//! share as prepared before it votes, the coordinator logs its commit decision, and a member
//! logs the commit when it learns it; a commit is applied (and `Committed` logged) only once it
//! is visible: durable on a majority of the members.
//!
//! Records of earlier builds are still read: their transactions are of epoch 1, a `Prepared`
//! of theirs is a remote share, a `Decided` is an applied decision, and a `Committed` directly
//! after a `Prepared` is a commit applied there and then.

use crate::completions::CompletionRecord;
use crate::configuration::{AgreementState, Configuration, Epoch, Value as ConfigValue};
use crate::ids::{NodeSet, RequestId, TxnId};
use crate::operation::{Key, TxnOp, Value};
use crate::votes::{VoteAcceptor, VoteInstance};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The node started as this incarnation. Durable before it coordinates anything, so
    /// transaction ids are never reused across restarts.
    Boot { incarnation: u64 },
    /// Participant: the transaction is prepared here (keys locked, vote YES may follow).
    Prepared(TxnRecord),
    /// The prepared transaction's commit is applied here (it was visible, or finished). Not
    /// waited for: a crash that loses it leaves the commit held, and it becomes visible again.
    Committed { txn: TxnId },
    /// Participant: the prepared transaction aborted and its locks are released.
    Aborted { txn: TxnId },
    /// Coordinator: the decision to commit. Applying it here is part of the decision.
    Decided(TxnRecord),
    /// Coordinator: every participant acknowledged the commit; nothing more to send.
    Forgotten { txn: TxnId },
    /// The first record of a snapshot: the whole state at this point of the log except the
    /// store, whose entries follow in [`Record::SnapshotVersionedEntries`] records (an earlier
    /// build's: [`Record::SnapshotEntries`]), in key order. A
    /// snapshot is split so that no record grows with the store (one record holding a large
    /// store could not be read back: records are at most [`RECORD_BYTES_MAX`] long).
    ///
    /// [`RECORD_BYTES_MAX`]: crate::codec::wal::RECORD_BYTES_MAX
    SnapshotBegin(Box<SnapshotHeader>),
    /// A run of the store's entries, at most about [`SNAPSHOT_CHUNK_BYTES`] of keys and values.
    SnapshotEntries(Vec<Entry>),
    /// The snapshot is complete: `entries` entries in all. Once this record is durable every
    /// record before the snapshot's [`Record::SnapshotBegin`] is no longer needed; until then
    /// they are, and a snapshot cut short by a crash is ignored by recovery.
    SnapshotEnd { entries: u64 },
    /// A run of the store's entries with their versions: what snapshots are written with since
    /// keys have versions. The entries of an older build's [`Record::SnapshotEntries`] read
    /// back with an unknown version (see [`crate::store::Versioned`]).
    SnapshotVersionedEntries(Vec<VersionedEntry>),
    /// [`Record::Boot`] as a build that tracks versions writes it: what follows in the log was
    /// written by such a build. Records after a plain Boot were logged by an earlier build, and
    /// the keys they write get an unknown version (see [`crate::store::Versioned`]). (A
    /// snapshot tracks versions when it holds a [`Record::SnapshotVersionedEntries`] record;
    /// this build writes one, empty if need be, into every snapshot.)
    BootTracked { incarnation: u64 },
    /// This member's share of a transaction of `epoch`, prepared here (keys locked; a remote
    /// share's YES vote follows, and the coordinator decides commit only once its own share's
    /// record is durable). Written by every member, the coordinator included.
    PreparedInEpoch { epoch: Epoch, txn: TxnRecord },
    /// Coordinator: the decision to commit its prepared transaction. Not applied yet: the
    /// commit is applied once it is durable on a majority (then [`Record::Committed`]).
    CommitDecided { txn: TxnId },
    /// Participant: the commit of a transaction prepared here, learned and logged; its keys
    /// stay locked, and it is applied once visible (then [`Record::Committed`]). The `Ack`
    /// waits for it.
    CommitLearned { txn: TxnId },
    /// Every transaction of `below`'s coordinator ordered before `below` is finished: the
    /// member drops them from its commit memory (and applied the commits it held).
    FinishedBelow { below: TxnId },
    /// The first record of a snapshot written by a build that knows epochs: as
    /// [`Record::SnapshotBegin`], with the state §7.2 adds.
    SnapshotBeginInEpoch(Box<SnapshotHeaderInEpoch>),
    /// The agreement on the configuration after this node's (docs/protocol.md §7.1): its whole
    /// durable state, superseding every earlier one of the same epoch. A promise's record comes
    /// after every 2PC record appended before the promise, so it is durable only once they are.
    Agreement(Box<AgreementState>),
    /// The configuration `value` names is installed here and the epoch before it is settled by
    /// `value`'s settlement (§7.4): every transaction of that epoch still held here commits or
    /// aborts by this record alone (replay settles them exactly as the install did). Synced
    /// before the node acts in the new epoch.
    Installed(Box<ConfigValue>),
    /// Inside a snapshot (between its begin and its end): the configuration as of the snapshot,
    /// the value that installed it (none for the first configuration), and the agreement on
    /// the next one.
    SnapshotConfiguration(Box<SnapshotConfiguration>),
    /// This log cannot be vouched for (docs/protocol.md §7.6): its data dir was lost, or
    /// recovery cut a whole record that failed its checksum, which may have been acknowledged.
    /// From here on the node takes part in nothing — it neither votes, serves, nor takes part
    /// in an agreement — until it catches up from a member (which replaces this log).
    Unvouched,
    /// This node began a new cluster (docs/protocol.md §7.1): every other node answered that
    /// it held nothing; `all_begun`: then every node had begun too, and this one took part. A
    /// restart that finds only starts after one with `all_begun` false waits again, as the node
    /// did, until every other node has begun.
    Bootstrapped { all_begun: bool },
    /// This member's whole durable part in one vote instance (docs/protocol.md §8): what it
    /// promised and accepted, superseding every earlier record of the instance. Kept until the
    /// instance's transaction is finished or its epoch is over ([`crate::votes::VoteAcceptors`]). Synced
    /// before the promise or acceptance it records is told. Written by no node yet.
    VoteAcceptor { instance: VoteInstance, acceptor: VoteAcceptor },
    /// Inside a snapshot (between its begin and its end): a run of the vote instances' states
    /// kept as of the snapshot (at most [`SNAPSHOT_ACCEPTORS_PER_RECORD`] per record). A
    /// snapshot without one keeps none.
    ///
    /// [`SNAPSHOT_ACCEPTORS_PER_RECORD`]: crate::votes::SNAPSHOT_ACCEPTORS_PER_RECORD
    SnapshotVoteAcceptors(Vec<(VoteInstance, VoteAcceptor)>),
    /// Inside a snapshot: each other coordinator's latest finished mark heard here as of the
    /// snapshot ([`Record::FinishedBelow`]'s, whose effects the snapshot holds). Inside, so
    /// that they are durable whenever the snapshot's end is: logged after the end, as earlier
    /// builds did, a crash could keep the end and lose them, and a log read from the snapshot
    /// on would hold no mark (review finding: a member that forgot a mark refuses for ever to
    /// acknowledge a COMMIT its coordinator sends again; a vote instance's state dropped at the
    /// mark would be taken for one never touched).
    SnapshotFinishedMarks(Vec<TxnId>),
    /// This life runs with configuration changes off: logged with its start record, before
    /// any share of the life. Every share prepared after it, up to the next start, was voted
    /// pinned ([`crate::Vote::YesPinned`], docs/protocol.md §7.2): replay tells from it which
    /// shares still in doubt are pinned, and a node that holds one takes part in no agreement,
    /// whatever mode it restarts in.
    ChangesOff,
    /// Inside a snapshot: the shares in doubt as of the snapshot that were voted pinned (their
    /// records are in the snapshot's header). A snapshot without one holds none.
    SnapshotPinned(Vec<TxnId>),
}

impl Record {
    /// A record of a snapshot's body: between its begin and its end, and nowhere else.
    pub fn in_snapshot_body(&self) -> bool {
        matches!(
            self,
            Record::SnapshotConfiguration(_)
                | Record::SnapshotVoteAcceptors(_)
                | Record::SnapshotFinishedMarks(_)
                | Record::SnapshotPinned(_)
                | Record::SnapshotEntries(_)
                | Record::SnapshotVersionedEntries(_)
        )
    }

    /// A record of the node's own starts, which says nothing of any transaction, agreement or
    /// data: a log of nothing else is clean (docs/protocol.md §7.1). `Unvouched` is one: a node
    /// that lost its data holds nothing, as a node bootstrapping does.
    pub fn is_start(&self) -> bool {
        matches!(
            self,
            Record::Boot { .. }
                | Record::BootTracked { .. }
                | Record::Unvouched
                | Record::Bootstrapped { .. }
                | Record::ChangesOff
        )
    }
}

/// How many of the latest chosen values a node keeps, to tell a node behind each value it
/// lacks, in order (docs/protocol.md §7.1). A node further behind catches up by transfer.
pub const INSTALLED_KEPT: usize = 8;

/// The configuration part of a snapshot ([`Record::SnapshotConfiguration`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotConfiguration {
    pub configuration: Configuration,
    /// The chosen values that installed the latest configurations, `configuration`'s last,
    /// oldest first (at most [`INSTALLED_KEPT`]): kept to tell a node that lacks them.
    pub installed: Vec<ConfigValue>,
    pub agreement: Option<AgreementState>,
}

/// Keys and values per [`Record::SnapshotVersionedEntries`] record, about (a record holds whole
/// entries, so one may exceed it by one entry).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Boot { .. } => "boot",
            Record::Prepared(_) => "prepared",
            Record::Committed { .. } => "committed",
            Record::Aborted { .. } => "aborted",
            Record::Decided(_) => "decided",
            Record::Forgotten { .. } => "forgotten",
            Record::SnapshotBegin(_) => "snapshot-begin",
            Record::SnapshotEntries(_) => "snapshot-entries",
            Record::SnapshotEnd { .. } => "snapshot-end",
            Record::SnapshotVersionedEntries(_) => "snapshot-versioned-entries",
            Record::BootTracked { .. } => "boot-tracked",
            Record::PreparedInEpoch { .. } => "prepared-in-epoch",
            Record::CommitDecided { .. } => "commit-decided",
            Record::CommitLearned { .. } => "commit-learned",
            Record::FinishedBelow { .. } => "finished-below",
            Record::SnapshotBeginInEpoch(_) => "snapshot-begin-in-epoch",
            Record::Agreement(_) => "agreement",
            Record::Installed(_) => "installed",
            Record::SnapshotConfiguration(_) => "snapshot-configuration",
            Record::Unvouched => "unvouched",
            Record::Bootstrapped { .. } => "bootstrapped",
            Record::VoteAcceptor { .. } => "vote-acceptor",
            Record::SnapshotVoteAcceptors(_) => "snapshot-vote-acceptors",
            Record::SnapshotFinishedMarks(_) => "snapshot-finished-marks",
            Record::ChangesOff => "changes-off",
            Record::SnapshotPinned(_) => "snapshot-pinned",
        }
    }

    /// Whether this record is the first of a snapshot (of this build or an earlier one): the
    /// record compaction cuts the log before.
    pub fn begins_snapshot(&self) -> bool {
        matches!(self, Record::SnapshotBegin(_) | Record::SnapshotBeginInEpoch(_))
    }

    /// Whether a driver should make this record durable without delay, because a vote, a
    /// decision, an acknowledgement (and so a commit's visibility), a new incarnation or
    /// compaction waits on it. The others — applying a commit, an abort, a coordinator
    /// forgetting a finished transaction, a finished mark — may wait for a later sync: losing
    /// them in a crash only leaves a commit held (it becomes visible again), a transaction
    /// prepared (recovery asks), or a finished transaction remembered. This is the default the
    /// node persists with; it says per record what it waits on (`Output::Persist`'s `prompt`),
    /// and with configuration changes off logs `CommitDecided` and `CommitLearned` lazily too:
    /// every YES made the commit visible, and only finishing waits on them (docs/protocol.md
    /// §7.2).
    pub fn sync_promptly(&self) -> bool {
        match self {
            Record::Boot { .. }
            | Record::BootTracked { .. }
            | Record::Prepared(_)
            | Record::Decided(_)
            | Record::PreparedInEpoch { .. }
            | Record::CommitDecided { .. }
            | Record::CommitLearned { .. }
            // The coordinator's abort is told once durable (a participant's too is synced
            // promptly: the record does not say whose it is).
            | Record::Aborted { .. }
            | Record::SnapshotBegin(_)
            | Record::SnapshotBeginInEpoch(_)
            | Record::SnapshotEntries(_)
            | Record::SnapshotVersionedEntries(_)
            | Record::SnapshotEnd { .. }
            | Record::Agreement(_)
            | Record::Installed(_)
            | Record::SnapshotConfiguration(_)
            | Record::Unvouched
            | Record::Bootstrapped { .. }
            // A promise or an acceptance is told only once durable.
            | Record::VoteAcceptor { .. }
            | Record::SnapshotVoteAcceptors(_)
            | Record::SnapshotFinishedMarks(_)
            | Record::ChangesOff
            | Record::SnapshotPinned(_) => true,
            Record::Committed { .. }
            | Record::Forgotten { .. }
            | Record::FinishedBelow { .. } => false,
        }
    }
}

/// How long a driver may hold records that need not be synced promptly (see
/// [`Record::sync_promptly`]) before it syncs them anyway. Bounds how long a finished
/// transaction's acknowledgement waits, and so how long its coordinator holds it.
pub const LAZY_SYNC_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// A transaction with everything needed to apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub txn: TxnId,
    pub request: RequestId,
    pub ops: Arc<[TxnOp]>,
    pub participants: NodeSet,
}

/// A store entry as snapshots of builds before versions logged it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub key: Key,
    #[serde(with = "serde_bytes")]
    pub value: Value,
}

/// A store entry with its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedEntry {
    #[serde(with = "serde_bytes")]
    pub key: Key,
    #[serde(with = "serde_bytes")]
    pub value: Value,
    pub version: u64,
}

/// Everything recovery would rebuild from the records before it: a header and the store's
/// entries. In the log it is a run of records (see [`Snapshot::into_records`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub incarnation: u64,
    /// The epoch of the node's configuration, and of every transaction below.
    pub epoch: Epoch,
    /// The store, in key order.
    pub entries: Vec<VersionedEntry>,
    /// Completion records, oldest first.
    pub completions: Vec<CompletionRecord>,
    /// Transactions prepared here whose outcome is not yet known here: remote shares, and this
    /// node's own shares of transactions it has not decided.
    pub prepared: Vec<TxnRecord>,
    /// Remote transactions whose commit is held here (learned, logged, not yet applied).
    pub commits_held: Vec<TxnRecord>,
    /// Commit decisions of this coordinator that are not finished.
    pub decisions: Vec<DecisionState>,
    /// The commit memory: committed transactions not known to be finished.
    pub commit_memory: Vec<TxnId>,
}

/// A snapshot without its entries, as builds before epochs logged it: the
/// [`Record::SnapshotBegin`] payload. Read, never written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub incarnation: u64,
    pub completions: Vec<CompletionRecord>,
    pub prepared: Vec<TxnRecord>,
    pub decisions: Vec<DecisionState>,
}

/// A snapshot without its entries: the [`Record::SnapshotBeginInEpoch`] payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeaderInEpoch {
    pub incarnation: u64,
    pub epoch: Epoch,
    pub completions: Vec<CompletionRecord>,
    pub prepared: Vec<TxnRecord>,
    pub commits_held: Vec<TxnRecord>,
    pub decisions: Vec<DecisionState>,
    pub commit_memory: Vec<TxnId>,
}

impl From<SnapshotHeader> for SnapshotHeaderInEpoch {
    /// An earlier build's snapshot: epoch 1, its decisions applied, nothing held or
    /// remembered.
    fn from(h: SnapshotHeader) -> SnapshotHeaderInEpoch {
        let SnapshotHeader { incarnation, completions, prepared, decisions } = h;
        SnapshotHeaderInEpoch {
            incarnation,
            epoch: Epoch::FIRST,
            completions,
            prepared,
            commits_held: Vec::new(),
            decisions,
            commit_memory: Vec::new(),
        }
    }
}

impl Snapshot {
    /// The snapshot as the log holds it: begin, entries in chunks, end.
    pub fn into_records(self) -> Vec<Record> {
        let Snapshot { incarnation, epoch, entries, completions, prepared, commits_held, decisions, commit_memory } =
            self;
        let count = entries.len() as u64;
        let header =
            SnapshotHeaderInEpoch { incarnation, epoch, completions, prepared, commits_held, decisions, commit_memory };
        let mut records = vec![Record::SnapshotBeginInEpoch(Box::new(header))];
        records.extend(chunk_entries(entries.into_iter()).map(Record::SnapshotVersionedEntries));
        if records.len() == 1 {
            // Even an empty store's snapshot says it tracks versions.
            records.push(Record::SnapshotVersionedEntries(Vec::new()));
        }
        records.push(Record::SnapshotEnd { entries: count });
        records
    }

    pub(crate) fn from_parts(header: SnapshotHeaderInEpoch, entries: Vec<VersionedEntry>) -> Snapshot {
        let SnapshotHeaderInEpoch { incarnation, epoch, completions, prepared, commits_held, decisions, commit_memory } =
            header;
        Snapshot { incarnation, epoch, entries, completions, prepared, commits_held, decisions, commit_memory }
    }
}

/// Groups entries into runs of about [`SNAPSHOT_CHUNK_BYTES`] of keys and values.
pub(crate) fn chunk_entries(
    entries: impl Iterator<Item = VersionedEntry>,
) -> impl Iterator<Item = Vec<VersionedEntry>> {
    let mut entries = entries.peekable();
    std::iter::from_fn(move || {
        entries.peek()?;
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while bytes < SNAPSHOT_CHUNK_BYTES {
            let Some(entry) = entries.next() else { break };
            bytes += entry.key.len() + entry.value.len();
            chunk.push(entry);
        }
        Some(chunk)
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionState {
    pub decision: TxnRecord,
    /// Whether `entries` already include its writes. An earlier build applied a decision once
    /// its record was durable; this one once the commit is visible (durable on a majority).
    pub applied: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, NodeId};

    /// Logs of earlier builds stay readable: postcard numbers a variant by its place, so every
    /// existing variant keeps its number and new ones come after them.
    #[test]
    fn record_variants_keep_their_numbers_in_the_log() {
        let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number: 1 };
        let t = TxnRecord {
            txn,
            request: RequestId { client: ClientId(1), seq: 1 },
            ops: Vec::new().into(),
            participants: NodeSet::first(2),
        };
        let configuration = Configuration { epoch: Epoch(2), members: NodeSet::first(2) };
        let value = ConfigValue { configuration, settlement: Default::default(), joining: Default::default() };
        let vote_instance = VoteInstance { epoch: Epoch(2), txn, owner: NodeId(1) };
        let numbered = [
            Record::Boot { incarnation: 1 },
            Record::Prepared(t.clone()),
            Record::Committed { txn },
            Record::Aborted { txn },
            Record::Decided(t.clone()),
            Record::Forgotten { txn },
            Record::SnapshotBegin(Box::default()),
            Record::SnapshotEntries(Vec::new()),
            Record::SnapshotEnd { entries: 0 },
            Record::SnapshotVersionedEntries(Vec::new()),
            Record::BootTracked { incarnation: 1 },
            Record::PreparedInEpoch { epoch: Epoch::FIRST, txn: t },
            Record::CommitDecided { txn },
            Record::CommitLearned { txn },
            Record::FinishedBelow { below: txn },
            Record::SnapshotBeginInEpoch(Box::default()),
            Record::Agreement(Box::default()),
            Record::Installed(Box::new(value.clone())),
            Record::SnapshotConfiguration(Box::new(SnapshotConfiguration {
                configuration: value.configuration,
                installed: vec![value],
                agreement: None,
            })),
            Record::Unvouched,
            Record::Bootstrapped { all_begun: false },
            Record::VoteAcceptor { instance: vote_instance, acceptor: VoteAcceptor::default() },
            Record::SnapshotVoteAcceptors(Vec::new()),
            Record::SnapshotFinishedMarks(Vec::new()),
            Record::ChangesOff,
            Record::SnapshotPinned(Vec::new()),
        ];
        for (number, record) in numbered.iter().enumerate() {
            let bytes = postcard::to_allocvec(record).unwrap();
            assert_eq!(usize::from(bytes[0]), number, "{} is variant {number} in the log", record.kind());
        }
    }

    /// A driver syncs at once the records that a vote, a decision, an acknowledgement, a new
    /// incarnation or compaction waits on; applying a commit, an abort, a coordinator's forget
    /// and a finished mark may share a later sync (a crash that loses them leaves a commit held,
    /// a transaction to ask about, or a finished one remembered).
    #[test]
    fn records_that_answers_wait_on_are_synced_promptly() {
        let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number: 1 };
        let t = TxnRecord {
            txn,
            request: RequestId { client: ClientId(1), seq: 1 },
            ops: Vec::new().into(),
            participants: NodeSet::first(2),
        };
        let prompt = [
            Record::Boot { incarnation: 1 },
            Record::BootTracked { incarnation: 1 },
            Record::Prepared(t.clone()),
            Record::PreparedInEpoch { epoch: Epoch::FIRST, txn: t.clone() },
            Record::CommitDecided { txn },
            Record::CommitLearned { txn },
            Record::Aborted { txn },
            Record::SnapshotBeginInEpoch(Box::default()),
            Record::Decided(t),
            Record::SnapshotBegin(Box::default()),
            Record::SnapshotEntries(Vec::new()),
            Record::SnapshotVersionedEntries(Vec::new()),
            Record::SnapshotEnd { entries: 0 },
        ];
        let lazy = [Record::Committed { txn }, Record::Forgotten { txn }, Record::FinishedBelow { below: txn }];
        for record in prompt {
            assert!(record.sync_promptly(), "{} must be synced at once", record.kind());
        }
        for record in lazy {
            assert!(!record.sync_promptly(), "{} may wait for a later sync", record.kind());
        }
    }
}
