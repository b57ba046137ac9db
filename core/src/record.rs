//! Records a node asks its driver to persist (the write-ahead log), and what recovery rebuilds
//! from them.
//!
//! Presumed abort: only commit decisions are logged. A coordinator with no record of a
//! transaction answers "abort", so an undecided transaction needs no record at the coordinator.

use crate::completions::CompletionRecord;
use crate::ids::{NodeSet, RequestId, TxnId};
use crate::operation::{Key, TxnOp, Value};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The node started as this incarnation. Durable before it coordinates anything, so
    /// transaction ids are never reused across restarts.
    Boot { incarnation: u64 },
    /// Participant: the transaction is prepared here (keys locked, vote YES may follow).
    Prepared(TxnRecord),
    /// Participant: the prepared transaction committed and is applied.
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
        }
    }

    /// Whether a driver should make this record durable without delay, because a vote, a
    /// client's answer, a new incarnation or compaction waits on it. The others — a
    /// participant's commit and abort, a coordinator forgetting a finished transaction — may
    /// wait for a later sync: the decision is already durable at the coordinator, so losing
    /// them in a crash only makes recovery ask for the outcome or the coordinator resend it,
    /// and the node holds back what depends on them (an acknowledgement) until they are
    /// durable anyway. Sharing a later sync saves a whole fsync per commit at each participant.
    pub fn sync_promptly(&self) -> bool {
        match self {
            Record::Boot { .. }
            | Record::BootTracked { .. }
            | Record::Prepared(_)
            | Record::Decided(_)
            | Record::SnapshotBegin(_)
            | Record::SnapshotEntries(_)
            | Record::SnapshotVersionedEntries(_)
            | Record::SnapshotEnd { .. } => true,
            Record::Committed { .. } | Record::Aborted { .. } | Record::Forgotten { .. } => false,
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

/// Everything recovery would rebuild from the records before it: a [`SnapshotHeader`] and the
/// store's entries. In the log it is a run of records (see [`Snapshot::into_records`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub incarnation: u64,
    /// The store, in key order.
    pub entries: Vec<VersionedEntry>,
    /// Completion records, oldest first.
    pub completions: Vec<CompletionRecord>,
    /// Transactions prepared here whose outcome is not yet known here.
    pub prepared: Vec<TxnRecord>,
    /// Commit decisions of this coordinator that some participant has not acknowledged.
    pub decisions: Vec<DecisionState>,
}

/// A snapshot without its entries: the [`Record::SnapshotBegin`] payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub incarnation: u64,
    pub completions: Vec<CompletionRecord>,
    pub prepared: Vec<TxnRecord>,
    pub decisions: Vec<DecisionState>,
}

impl Snapshot {
    /// The snapshot as the log holds it: begin, entries in chunks, end.
    pub fn into_records(self) -> Vec<Record> {
        let Snapshot { incarnation, entries, completions, prepared, decisions } = self;
        let count = entries.len() as u64;
        let header = SnapshotHeader { incarnation, completions, prepared, decisions };
        let mut records = vec![Record::SnapshotBegin(Box::new(header))];
        records.extend(chunk_entries(entries.into_iter()).map(Record::SnapshotVersionedEntries));
        if records.len() == 1 {
            // Even an empty store's snapshot says it tracks versions.
            records.push(Record::SnapshotVersionedEntries(Vec::new()));
        }
        records.push(Record::SnapshotEnd { entries: count });
        records
    }

    pub(crate) fn from_parts(header: SnapshotHeader, entries: Vec<VersionedEntry>) -> Snapshot {
        let SnapshotHeader { incarnation, completions, prepared, decisions } = header;
        Snapshot { incarnation, entries, completions, prepared, decisions }
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
    /// Whether `entries` already include its writes (a decision whose record was not yet
    /// durable when the snapshot was taken is not yet applied to the store).
    pub applied: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, NodeId};

    /// A driver syncs at once the records that a vote, a client's answer, a new incarnation or
    /// compaction waits on; a participant's commit and abort and a coordinator's forget may
    /// share a later sync (recovery asks or the coordinator resends if a crash loses them).
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
            Record::Decided(t),
            Record::SnapshotBegin(Box::default()),
            Record::SnapshotEntries(Vec::new()),
            Record::SnapshotVersionedEntries(Vec::new()),
            Record::SnapshotEnd { entries: 0 },
        ];
        let lazy = [Record::Committed { txn }, Record::Aborted { txn }, Record::Forgotten { txn }];
        for record in prompt {
            assert!(record.sync_promptly(), "{} must be synced at once", record.kind());
        }
        for record in lazy {
            assert!(!record.sync_promptly(), "{} may wait for a later sync", record.kind());
        }
    }
}
