//! [`GroupCommit`]: the node's records made durable many at a time, with one `fdatasync`.
//!
//! The node asks for its records to be persisted one at a time and holds back whatever depends
//! on one (a YES vote, a COMMIT, a client's reply) until the driver reports it durable. A sync
//! per record would cap a node at its disk's sync rate, so the event loop buffers the records
//! of a whole loop turn and makes them durable together.
//!
//! The sync may run on a thread of its own ([`GroupCommit::start_sync`]): the event loop then
//! goes on handling messages and appending records while the disk works, and those records go
//! into the next sync, which starts as soon as this one is done. One sync at a time: with two
//! or three under way at once, put x64 ran no faster (`dkv-bench --local 3`), and each sync
//! would carry fewer records.

use crate::wal::{PendingSync, Wal, WalError};
use dkv_core::{LAZY_SYNC_DELAY, Lsn, Record, Time};
use mio::Waker;
use std::io;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

/// The write-ahead log, the range of lsns appended but not yet durable, and when that range
/// must be synced.
///
/// The event loop appends every record the node asks for with [`GroupCommit::append`], and
/// while [`GroupCommit::sync_due`] and no sync is under way, writes out the frames it has
/// queued (they never depend on the sync: the node holds back whatever does) and syncs: at
/// once with [`GroupCommit::sync`], or on the syncer thread with [`GroupCommit::start_sync`],
/// whose end [`GroupCommit::finished`] reports (the thread wakes the event loop). Either way it
/// tells the node `Input::Durable` with the lsn the sync made durable. Driven that way it
/// guarantees:
/// - a record the node says is prompt (something waits on it: `Output::Persist`'s `prompt`) is
///   synced by the next sync to start, which starts in the turn that appended it or as soon as
///   the sync under way is done;
/// - a record nothing waits on is synced at most [`LAZY_SYNC_DELAY`] (plus a sync under way)
///   after it was appended, or sooner by the next sync for a prompt one;
/// - the lsn a sync reports, and every lsn below it, is on disk.
pub(crate) struct GroupCommit {
    wal: Wal,
    /// The last lsn handed to the log.
    appended: Lsn,
    /// The last lsn a sync made durable.
    durable: Lsn,
    /// The last lsn reported durable to the caller (below `durable` only between a sync
    /// waited for in [`GroupCommit::append`] and the next report).
    reported: Lsn,
    /// A record the node waits on (a vote, a decision, an acknowledgement) is not yet synced:
    /// sync this turn.
    prompt_sync: bool,
    /// Only records nothing waits on are unsynced: sync them by then, or sooner with the next
    /// prompt one.
    lazy_sync_at: Option<Time>,
    /// The thread that runs syncs started with [`GroupCommit::start_sync`].
    syncer: Option<Syncer>,
    /// The sync running on the syncer thread, and the last lsn it makes durable.
    in_flight: Option<Lsn>,
}

/// What one sync made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Synced {
    /// Every lsn up to and including this one is durable.
    pub(crate) through: Lsn,
    /// How many records this sync made durable.
    pub(crate) records: u64,
}

/// A thread that runs one sync at a time and wakes the event loop when it is done.
struct Syncer {
    jobs: Option<mpsc::SyncSender<PendingSync>>,
    done: mpsc::Receiver<(PendingSync, Result<(), WalError>)>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start(name: String, waker: Arc<Waker>) -> io::Result<Syncer> {
        // One sync is under way at a time: one slot each way is enough.
        let (jobs, job_queue) = mpsc::sync_channel::<PendingSync>(1);
        let (finished, done) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            for pending in job_queue {
                let result = pending.run();
                if finished.send((pending, result)).is_err() {
                    return;
                }
                // A waker that fails leaves the event loop to find the result at its next turn.
                let _ = waker.wake();
            }
        })?;
        Ok(Syncer { jobs: Some(jobs), done, thread: Some(thread) })
    }
}

impl Drop for Syncer {
    /// Ends the thread once a sync under way is done (the log it syncs stays whole).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl GroupCommit {
    /// Starts with nothing appended: the node numbers its records from one in every incarnation,
    /// and what the log recovered is durable already. Every sync runs on the caller's thread.
    pub(crate) fn new(wal: Wal) -> GroupCommit {
        GroupCommit {
            wal,
            appended: Lsn(0),
            durable: Lsn(0),
            reported: Lsn(0),
            prompt_sync: false,
            lazy_sync_at: None,
            syncer: None,
            in_flight: None,
        }
    }

    /// As [`GroupCommit::new`], with a syncer thread (named `name`) for
    /// [`GroupCommit::start_sync`], which wakes `waker` whenever a sync is done.
    pub(crate) fn with_syncer(wal: Wal, name: String, waker: Arc<Waker>) -> io::Result<GroupCommit> {
        let mut group = GroupCommit::new(wal);
        group.syncer = Some(Syncer::start(name, waker)?);
        Ok(group)
    }

    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Buffers the record the node numbered `lsn` for the next sync, and notes how soon that
    /// sync must happen: in this turn if the node said `prompt`, else within
    /// [`LAZY_SYNC_DELAY`].
    ///
    /// The log syncs a snapshot's begin and end itself, on this thread ([`Wal::append`]). Not
    /// while a sync is under way on the syncer thread: the kernel reports a failed write-back
    /// to one `fdatasync` only, and the one that missed it would take lost records for durable.
    /// So the sync under way is waited for first (at most once per snapshot), and what it made
    /// durable is reported by the next [`GroupCommit::finished`].
    pub(crate) fn append(&mut self, now: Time, lsn: Lsn, record: &Record, prompt: bool) -> Result<(), WalError> {
        if record.begins_snapshot() || matches!(record, Record::SnapshotEnd { .. }) {
            self.collect_sync_under_way()?;
        }
        self.wal.append(record)?;
        self.appended = lsn;
        if prompt {
            self.prompt_sync = true;
        } else if self.lazy_sync_at.is_none() {
            self.lazy_sync_at = Some(now + LAZY_SYNC_DELAY);
        }
        Ok(())
    }

    /// Whether a sync is owed now: a record the node waits on is buffered, or the oldest record
    /// nothing waits on has waited [`LAZY_SYNC_DELAY`]. It starts once no sync is under way.
    pub(crate) fn sync_due(&self, now: Time) -> bool {
        self.prompt_sync || self.lazy_sync_at.is_some_and(|at| at <= now)
    }

    /// Whether a sync runs on the syncer thread.
    pub(crate) fn syncing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// When a sync falls due without any further record: the event loop wakes up by then. Not
    /// while a sync is under way: its end wakes the event loop.
    pub(crate) fn deadline(&self) -> Option<Time> {
        if self.syncing() { None } else { self.lazy_sync_at }
    }

    /// Makes the next sync due at once if anything is unsynced, so a server that stops leaves
    /// nothing it appended behind.
    pub(crate) fn sync_before_stopping(&mut self) {
        self.prompt_sync = self.appended > self.durable || self.wal.has_buffered();
    }

    /// Writes every buffered record and makes it durable with one `fdatasync`, on this thread,
    /// after the sync under way, if any. Reports everything made durable since the last report.
    pub(crate) fn sync(&mut self) -> Result<Synced, WalError> {
        self.collect_sync_under_way()?;
        self.prompt_sync = false;
        self.lazy_sync_at = None;
        self.wal.sync()?;
        self.durable = self.appended;
        Ok(self.report().unwrap_or(Synced { through: self.durable, records: 0 }))
    }

    /// Writes every buffered record out and starts the `fdatasync` that makes them durable on
    /// the syncer thread ([`GroupCommit::finished`] tells when it is done). Only while no sync
    /// is under way, with a syncer.
    pub(crate) fn start_sync(&mut self) -> Result<(), WalError> {
        assert!(!self.syncing(), "one sync at a time");
        self.prompt_sync = false;
        self.lazy_sync_at = None;
        let pending = self.wal.begin_sync()?;
        let jobs = self.syncer.as_ref().and_then(|syncer| syncer.jobs.as_ref()).expect("start_sync needs a syncer");
        jobs.send(pending).expect("the syncer thread lives as long as the group commit");
        self.in_flight = Some(self.appended);
        Ok(())
    }

    /// What was made durable since the last report, if anything: the sync under way once it is
    /// done, or one waited for meanwhile.
    pub(crate) fn finished(&mut self) -> Result<Option<Synced>, WalError> {
        if let Some(syncer) = self.syncer.as_ref().filter(|_| self.syncing()) {
            match syncer.done.try_recv() {
                Ok((pending, result)) => self.end_sync(pending, result)?,
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => unreachable!("the syncer thread ends only when dropped"),
            }
        }
        Ok(self.report())
    }

    /// Waits for the sync under way, if any, to be done: what was made durable since the last
    /// report, if anything.
    pub(crate) fn wait(&mut self) -> Result<Option<Synced>, WalError> {
        self.collect_sync_under_way()?;
        Ok(self.report())
    }

    /// Waits for the sync under way, if any, and takes in what it made durable (not reported).
    fn collect_sync_under_way(&mut self) -> Result<(), WalError> {
        let Some(syncer) = self.syncer.as_ref().filter(|_| self.syncing()) else { return Ok(()) };
        let (pending, result) = syncer.done.recv().expect("the syncer thread ends only when dropped");
        self.end_sync(pending, result)
    }

    fn end_sync(&mut self, pending: PendingSync, result: Result<(), WalError>) -> Result<(), WalError> {
        let through = self.in_flight.take().expect("a sync was under way");
        result?;
        self.wal.end_sync(pending)?;
        self.durable = through;
        Ok(())
    }

    /// What was made durable since the last report, reported now.
    fn report(&mut self) -> Option<Synced> {
        if self.durable <= self.reported {
            return None;
        }
        let synced = Synced { through: self.durable, records: self.durable.0 - self.reported.0 };
        self.reported = self.durable;
        Some(synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::{NodeId, Snapshot, TxnId};

    /// A group commit with a syncer thread over a new log, the poller its waker wakes, and the
    /// directory that holds the log (deleted when dropped).
    fn open_with_syncer() -> (tempfile::TempDir, mio::Poll, GroupCommit) {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let group = GroupCommit::with_syncer(wal, "dkv-sync-test".into(), waker).unwrap();
        (dir, poll, group)
    }

    /// Waits (at most ten seconds) for the syncer's wake-up, then takes what the sync made
    /// durable, or its error, as the event loop does.
    fn finished_after_wake(poll: &mut mio::Poll, group: &mut GroupCommit) -> Result<Synced, WalError> {
        let mut events = mio::Events::with_capacity(4);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(synced) = group.finished()? {
                return Ok(synced);
            }
            assert!(std::time::Instant::now() < deadline, "the syncer never reported its sync");
            poll.poll(&mut events, Some(deadline - std::time::Instant::now())).unwrap();
        }
    }

    /// The records a log holds once reopened.
    fn records_in(dir: &std::path::Path) -> Vec<Record> {
        let (_, recovery) = Wal::open(dir).unwrap();
        recovery.records
    }

    /// A sync on the syncer thread: the event loop is woken when it is done, and it reports
    /// exactly the records written before it started, which a reopened log holds. Records
    /// appended meanwhile make the next sync due, and go into it.
    #[test]
    fn a_sync_on_the_syncer_thread_reports_what_was_written_before_it_started() {
        let (dir, mut poll, mut group) = open_with_syncer();
        let now = Time::from_nanos(1_000);
        append_lazy(&mut group, now, 1);
        group.append(now, Lsn(2), &Record::Boot { incarnation: 2 }, true).unwrap();
        assert!(group.sync_due(now));
        group.start_sync().unwrap();
        assert!(group.syncing());
        assert!(!group.sync_due(now), "the sync under way took every record appended so far");
        assert_eq!(group.deadline(), None, "a sync under way wakes the loop itself");
        group.append(now, Lsn(3), &Record::Boot { incarnation: 3 }, true).unwrap();
        assert!(group.sync_due(now), "a record appended during the sync waits for the next");
        assert_eq!(finished_after_wake(&mut poll, &mut group).unwrap(), Synced { through: Lsn(2), records: 2 });
        assert!(!group.syncing());
        group.start_sync().unwrap();
        assert_eq!(group.wait().unwrap(), Some(Synced { through: Lsn(3), records: 1 }));
        assert_eq!(group.wait().unwrap(), None, "nothing is under way any more");
        drop(group);
        assert_eq!(records_in(dir.path()).len(), 3);
    }

    /// A blocking sync first waits for the one under way, and reports everything since the
    /// last report: a stopping server leaves nothing unsynced and nothing unreported.
    #[test]
    fn a_blocking_sync_waits_for_the_one_under_way() {
        let (dir, _poll, mut group) = open_with_syncer();
        let now = Time::from_nanos(1_000);
        group.append(now, Lsn(1), &Record::Boot { incarnation: 2 }, true).unwrap();
        group.start_sync().unwrap();
        append_lazy(&mut group, now, 2);
        assert_eq!(group.sync().unwrap(), Synced { through: Lsn(2), records: 2 });
        assert!(!group.syncing());
        drop(group);
        assert_eq!(records_in(dir.path()).len(), 2);
    }

    /// A sync that fails on the syncer thread is the event loop's error (the server stops), and
    /// nothing it was to make durable is reported durable.
    #[test]
    fn a_failed_sync_on_the_syncer_thread_is_an_error_and_reports_nothing() {
        let (_dir, mut poll, mut group) = open_with_syncer();
        let now = Time::from_nanos(1_000);
        group.append(now, Lsn(1), &Record::Boot { incarnation: 2 }, true).unwrap();
        group.wal().sync_fault().store(5, std::sync::atomic::Ordering::SeqCst);
        group.start_sync().unwrap();
        let error = finished_after_wake(&mut poll, &mut group).expect_err("a failed sync was reported durable");
        assert!(error.to_string().contains("Input/output error"), "{error}");
        assert!(!group.syncing());
    }

    /// A snapshot's begin (which the log syncs on this thread) waits for the sync under way
    /// first, and what that sync made durable is reported by the next `finished`, at once.
    #[test]
    fn a_snapshot_waits_for_the_sync_under_way_which_is_reported_next() {
        let (_dir, _poll, mut group) = open_with_syncer();
        let now = Time::from_nanos(1_000);
        group.append(now, Lsn(1), &Record::Boot { incarnation: 2 }, true).unwrap();
        group.start_sync().unwrap();
        let snapshot = Snapshot { incarnation: 2, ..Snapshot::default() }.into_records();
        group.append(now, Lsn(2), &snapshot[0], true).unwrap();
        assert!(!group.syncing(), "the snapshot's begin waited for the sync under way");
        assert_eq!(group.finished().unwrap(), Some(Synced { through: Lsn(1), records: 1 }));
        assert_eq!(group.finished().unwrap(), None, "reported once");
    }

    /// A sync under way that fails when a snapshot's begin waits for it fails the append: the
    /// log's own sync never runs after an unreported failure.
    #[test]
    fn a_snapshot_after_a_failed_sync_under_way_is_an_error() {
        let (_dir, _poll, mut group) = open_with_syncer();
        let now = Time::from_nanos(1_000);
        group.append(now, Lsn(1), &Record::Boot { incarnation: 2 }, true).unwrap();
        group.wal().sync_fault().store(5, std::sync::atomic::Ordering::SeqCst);
        group.start_sync().unwrap();
        let snapshot = Snapshot { incarnation: 2, ..Snapshot::default() }.into_records();
        let error = group.append(now, Lsn(2), &snapshot[0], true).unwrap_err();
        assert!(error.to_string().contains("Input/output error"), "{error}");
        assert_eq!(group.finished().unwrap(), None, "nothing was made durable");
    }

    /// A group commit over a new log, and the directory that holds it (deleted when dropped).
    fn open() -> (tempfile::TempDir, GroupCommit) {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        (dir, GroupCommit::new(wal))
    }

    /// Appends, at `now`, a record nothing waits on (a participant's commit) as `lsn`.
    fn append_lazy(group: &mut GroupCommit, now: Time, lsn: u64) {
        let record = Record::Committed { txn: TxnId { coordinator: NodeId(1), incarnation: 1, number: lsn } };
        group.append(now, Lsn(lsn), &record, false).unwrap();
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
        group.append(now, Lsn(3), &Record::Boot { incarnation: 2 }, true).unwrap();
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
