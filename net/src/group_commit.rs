//! [`GroupCommit`]: the node's records made durable many at a time, with one `fdatasync`.
//!
//! The node asks for its records to be persisted one at a time and holds back whatever depends
//! on one (a YES vote, a COMMIT, a client's reply) until the driver reports it durable. A sync
//! per record would cap a node at its disk's sync rate, so the event loop buffers the records
//! of a whole loop turn and makes them durable together.

use crate::wal::{Wal, WalError};
use dkv_core::{LAZY_SYNC_DELAY, Lsn, Record, Time};

/// The write-ahead log, the range of lsns appended but not yet durable, and when that range
/// must be synced.
///
/// The event loop appends every record the node asks for with [`GroupCommit::append`], and once
/// per turn, while [`GroupCommit::sync_due`], writes out the frames it has queued (they never
/// depend on the sync: the node holds back whatever does), calls [`GroupCommit::sync`] and
/// tells the node `Input::Durable` with the lsn it returns. Driven that way it guarantees:
/// - a record the node waits on ([`Record::sync_promptly`]) is synced in the turn that
///   appended it, by the turn's one sync;
/// - a record nothing waits on is synced at most [`LAZY_SYNC_DELAY`] after it was appended, or
///   sooner by the next sync for a prompt one;
/// - the lsn [`GroupCommit::sync`] returns, and every lsn below it, is on disk.
pub(crate) struct GroupCommit {
    wal: Wal,
    /// The last lsn handed to the log.
    appended: Lsn,
    /// The last lsn a sync made durable.
    durable: Lsn,
    /// A record the node waits on (a vote, a decision, an acknowledgement) is not yet synced:
    /// sync this turn.
    prompt_sync: bool,
    /// Only records nothing waits on are unsynced: sync them by then, or sooner with the next
    /// prompt one.
    lazy_sync_at: Option<Time>,
}

/// What one sync made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Synced {
    /// Every lsn up to and including this one is durable.
    pub(crate) through: Lsn,
    /// How many records this sync made durable.
    pub(crate) records: u64,
}

impl GroupCommit {
    /// Starts with nothing appended: the node numbers its records from one in every incarnation,
    /// and what the log recovered is durable already.
    pub(crate) fn new(wal: Wal) -> GroupCommit {
        GroupCommit { wal, appended: Lsn(0), durable: Lsn(0), prompt_sync: false, lazy_sync_at: None }
    }

    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Buffers the record the node numbered `lsn` for the next sync, and notes how soon that
    /// sync must happen.
    pub(crate) fn append(&mut self, now: Time, lsn: Lsn, record: &Record) -> Result<(), WalError> {
        self.wal.append(record)?;
        self.appended = lsn;
        if record.sync_promptly() {
            self.prompt_sync = true;
        } else if self.lazy_sync_at.is_none() {
            self.lazy_sync_at = Some(now + LAZY_SYNC_DELAY);
        }
        Ok(())
    }

    /// Whether a sync is owed now: a record the node waits on is buffered, or the oldest record
    /// nothing waits on has waited [`LAZY_SYNC_DELAY`].
    pub(crate) fn sync_due(&self, now: Time) -> bool {
        self.prompt_sync || self.lazy_sync_at.is_some_and(|at| at <= now)
    }

    /// When a sync falls due without any further record: the event loop wakes up by then.
    pub(crate) fn deadline(&self) -> Option<Time> {
        self.lazy_sync_at
    }

    /// Makes the next sync due at once if anything is unsynced, so a server that stops leaves
    /// nothing it appended behind.
    pub(crate) fn sync_before_stopping(&mut self) {
        self.prompt_sync = self.appended > self.durable || self.wal.has_buffered();
    }

    /// Writes every buffered record and makes it durable with one `fdatasync`.
    pub(crate) fn sync(&mut self) -> Result<Synced, WalError> {
        self.prompt_sync = false;
        self.lazy_sync_at = None;
        self.wal.sync()?;
        let synced = Synced { through: self.appended, records: self.appended.0 - self.durable.0 };
        self.durable = self.appended;
        Ok(synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::{NodeId, TxnId};

    /// A group commit over a new log, and the directory that holds it (deleted when dropped).
    fn open() -> (tempfile::TempDir, GroupCommit) {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        (dir, GroupCommit::new(wal))
    }

    /// Appends, at `now`, a record nothing waits on (a participant's commit) as `lsn`.
    fn append_lazy(group: &mut GroupCommit, now: Time, lsn: u64) {
        let record = Record::Committed { txn: TxnId { coordinator: NodeId(1), incarnation: 1, number: lsn } };
        group.append(now, Lsn(lsn), &record).unwrap();
    }

    /// A record the node waits on is synced in the turn that appended it, together with the lazy
    /// records before it, and a sync reports every record it made durable.
    #[test]
    fn prompt_record_makes_one_sync_due_now_for_every_buffered_record() {
        let (_dir, mut group) = open();
        let now = Time::from_nanos(1_000);
        append_lazy(&mut group, now, 1);
        append_lazy(&mut group, now, 2);
        assert!(!group.sync_due(now));
        group.append(now, Lsn(3), &Record::Boot { incarnation: 2 }).unwrap();
        assert!(group.sync_due(now));
        assert_eq!(group.sync().unwrap(), Synced { through: Lsn(3), records: 3 });
        assert!(!group.sync_due(now));
        assert_eq!(group.deadline(), None);
    }

    /// Records nothing waits on wait for a sync no longer than LAZY_SYNC_DELAY after the first of
    /// them was appended.
    #[test]
    fn lazy_records_fall_due_after_the_lazy_sync_delay() {
        let (_dir, mut group) = open();
        let first = Time::from_nanos(1_000);
        append_lazy(&mut group, first, 1);
        append_lazy(&mut group, first + LAZY_SYNC_DELAY / 2, 2);
        assert_eq!(group.deadline(), Some(first + LAZY_SYNC_DELAY));
        assert!(!group.sync_due(first + LAZY_SYNC_DELAY / 2));
        assert!(group.sync_due(first + LAZY_SYNC_DELAY));
        assert_eq!(group.sync().unwrap(), Synced { through: Lsn(2), records: 2 });
    }

    /// A stopping server syncs whatever is unsynced, and does not sync when nothing is.
    #[test]
    fn stopping_makes_a_sync_due_only_for_unsynced_records() {
        let (_dir, mut group) = open();
        let now = Time::from_nanos(1_000);
        group.sync_before_stopping();
        assert!(!group.sync_due(now));
        append_lazy(&mut group, now, 1);
        group.sync_before_stopping();
        assert!(group.sync_due(now));
    }
}
