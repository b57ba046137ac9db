//! The write-ahead log on disk: a directory of append-only segment files holding records
//! encoded by [`dkv_core::codec::wal`].
//!
//! Layout of a data directory:
//! - `LOCK`: held with an exclusive OS file lock while a server uses the directory, so two
//!   servers can never write the same log.
//! - `IDENTITY`: the cluster and node the directory belongs to ([`crate::identity`]), checked
//!   by [`Wal::open_as`] before the log is read.
//! - `TRANSFER.staging`: a state transfer's log being received ([`crate::transfer`]), renamed
//!   into the next segment once complete; never read by recovery.
//! - `00000000000000000001.wal`, `...02.wal`, ...: segments, numbered in the order they were
//!   created. A new segment is started for every snapshot, whose [`Record::SnapshotBegin`] is
//!   its first record; once the snapshot's [`Record::SnapshotEnd`] is durable every older
//!   segment is deleted, so disk use stays proportional to the data (the core writes a snapshot
//!   after as many records as it has keys, and at least `snapshot_records_min`).
//!
//! Group commit: [`Wal::append`] only buffers; [`Wal::sync`] writes everything buffered and
//! makes it durable with one `fdatasync` per touched segment, or in halves: [`Wal::begin_sync`]
//! writes it out and returns the `fdatasync` to run, on another thread if the driver likes,
//! while more records are appended, and [`Wal::end_sync`] takes it back. The driver then tells
//! the core which lsn is durable (see `crate::group_commit`).
//!
//! Preallocation: the segment being written is kept zero-filled ahead of its last record, in
//! steps of [`PREALLOCATE_BYTES`]. Records then overwrite blocks the file already has, so an
//! `fdatasync` flushes only data: no size or block-map change, no inode write, no second
//! device round trip (measured on ext4: ~4x cheaper than an appending sync). A zero tail is
//! where the records end; a segment is trimmed to its records before the next one starts, so
//! only the last segment ever has one.
//!
//! Recovery ([`Wal::open`]) reads the segments from the newest one that starts with a snapshot.
//! A last segment holding only the beginning of a snapshot (a crash cut the snapshot short) is
//! deleted and recovery starts from the snapshot before it, whose segments are still there.
//! A torn tail in the last segment (a write cut short by a crash) is truncated, and reported
//! ([`Recovery::cut_tail`]) as the codec reads it: a record whose bytes stop before the end its
//! checked length claims was cut short by the crash and never reported durable; a record whose
//! length fails its check, or whose every byte is there yet fails its checksum, is possibly a
//! synced one damaged, and the node cannot vouch for its state (`dkv_core::codec::wal`).
//! Any other damage stops the start: silently skipping a record that was durable could make
//! this node serve wrong data.

use crate::identity::{self, Identity, IdentityCheck, IdentityError};
use dkv_core::Record;
use dkv_core::codec::wal::{self, CutRecord, CutTail, WalEnd};
use dkv_core::compaction::Compaction;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

const LOCK_FILE_NAME: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".wal";
/// Segment numbers start here; a log whose oldest segment has a larger number must begin with
/// a snapshot, or segments are missing.
const FIRST_SEGMENT: u64 = 1;
/// How far ahead of the last record the current segment is zero-filled, each time it runs out.
/// Each extension costs one inode write at the next sync, so it is paid once per this many
/// bytes of log instead of once per sync.
pub const PREALLOCATE_BYTES: u64 = 4 << 20;
/// The append buffer is written out (without a sync) once it holds this much, so a snapshot
/// of a large store never sits in memory whole; and it keeps at most this much capacity.
const BUFFER_BYTES_MAX: usize = 8 << 20;
/// Bytes read from a segment at a time during recovery.
const READ_WINDOW_BYTES: usize = 8 << 20;
/// Zeros written per syscall while preallocating.
const ZERO_WRITE_BYTES: usize = 256 << 10;

/// Why the log could not be opened, recovered or written. Every message says what to do.
#[derive(Debug, Error)]
pub enum WalError {
    #[error(
        "data dir {dir} is in use by another dkv-server (its LOCK file is locked); stop that server or pick another --data-dir"
    )]
    Locked { dir: PathBuf },
    #[error("cannot use data dir {dir}: {source}; check that the path exists or can be created and is writable")]
    DataDir { dir: PathBuf, source: io::Error },
    #[error("data dir {dir} is a file, not a directory; give --data-dir a directory (it is made if missing)")]
    NotADirectory { dir: PathBuf },
    #[error(
        "I/O error on {path}: {source}; the disk may be full or failing, and the server stops rather than acknowledge a write it could not make durable. Free space or repair the disk, then start the node again: it recovers from its log"
    )]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "log segment {path} is damaged at byte {offset} ({reason}) and valid records follow; refusing to start rather than serve wrong data. Keep the data dir as it is: this node must not rejoin with an older or empty log (it would miss writes it acknowledged or voted for), and dkv cannot yet rebuild a node from its peers"
    )]
    Corrupt { path: PathBuf, offset: usize, reason: String },
    #[error(
        "log segment {path} is cut short at byte {offset} ({reason}) but newer segments exist, so durable records were lost; refusing to start rather than serve wrong data. Keep the data dir as it is: this node must not rejoin with an older or empty log (it would miss writes it acknowledged or voted for), and dkv cannot yet rebuild a node from its peers"
    )]
    DamagedBeforeTail { path: PathBuf, offset: usize, reason: String },
    #[error(
        "data dir {dir} has no segment that starts with a snapshot, and its oldest segment is {oldest} rather than {FIRST_SEGMENT}: segments are missing; refusing to start. Keep the data dir as it is: this node must not rejoin with an older or empty log (it would miss writes it acknowledged or voted for), and dkv cannot yet rebuild a node from its peers"
    )]
    MissingSegments { dir: PathBuf, oldest: u64 },
    #[error(
        "log segment {path} starts a snapshot that never ends, yet it is not the end of the log (or no older segment holds the state before it); refusing to start. Keep the data dir as it is: this node must not rejoin with an older or empty log (it would miss writes it acknowledged or voted for), and dkv cannot yet rebuild a node from its peers"
    )]
    UnfinishedSnapshot { path: PathBuf },
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// What recovery found.
pub struct Recovery {
    /// Every record needed to rebuild the node, in log order.
    pub records: Vec<Record>,
    /// Segments read, oldest first.
    pub segments_read: usize,
    /// What recovery cut off the end of the log, if anything. A cut may have lost a record
    /// that was synced and acknowledged (see [`CutTail`]): the node cannot vouch for its state
    /// and must catch up from a member before it votes or serves (docs/protocol.md §7.6).
    pub cut_tail: Option<CutTail>,
}

/// A place in the log: `len` bytes of records into segment number `segment` (ordered as the
/// log is: by segment, then by bytes into it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub segment: u64,
    pub len: u64,
}

/// A run of whole segments, `first_segment` on, up to `end` (every segment between them whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRange {
    pub first_segment: u64,
    pub end: LogPosition,
}

/// An open, locked log directory.
pub struct Wal {
    dir: PathBuf,
    /// Held for the life of the `Wal` (and of every clone of it); the OS releases the lock when
    /// the file is closed, also when the process is killed.
    lock: DirLock,
    current: Segment,
    /// Which segments a durable snapshot has made obsolete, by segment number.
    compaction: Compaction,
    /// Encoded records not yet written to `current`.
    buffered: Vec<u8>,
    /// Where the log's state begins: the segment whose first record begins the newest snapshot
    /// whose end is durable (or the first segment, before any). A state transfer starts here.
    snapshot_start: u64,
    /// The end of what is durable: bytes of records in a segment, everything before it whole.
    durable_end: LogPosition,
    /// A snapshot is being appended, beginning this segment; the log before it ends at the
    /// position (the previous segment's end, trimmed and synced when the snapshot began).
    pending_snapshot: Option<(u64, LogPosition)>,
    bytes_written: u64,
    /// Tests only: an OS error number the next sync fails with instead of syncing (0: none),
    /// once, as a dying disk's fsync reports an error once and then succeeds.
    #[cfg(test)]
    sync_fault: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

/// A sync of the log's records written so far ([`Wal::begin_sync`]), which can run on another
/// thread while the log takes more records, and goes back to [`Wal::end_sync`] once it ran.
pub(crate) struct PendingSync {
    file: Arc<File>,
    path: PathBuf,
    /// The end of the records this sync makes durable.
    through: LogPosition,
    /// A snapshot among those records ended: the segments before this one are obsolete once
    /// the sync is done.
    frees_before: Option<u64>,
    /// Tests only: the OS error this sync fails with instead of syncing (0: none).
    #[cfg(test)]
    fault: i32,
}

impl PendingSync {
    /// Makes the records durable: one `fdatasync`.
    pub(crate) fn run(&self) -> Result<(), WalError> {
        #[cfg(test)]
        if self.fault != 0 {
            return Err(WalError::Io { path: self.path.clone(), source: io::Error::from_raw_os_error(self.fault) });
        }
        self.file.sync_data().map_err(|source| WalError::Io { path: self.path.clone(), source })
    }
}

struct Segment {
    number: u64,
    path: PathBuf,
    /// Shared with a sync under way on the group commit's syncer thread ([`PendingSync`]).
    file: Arc<File>,
    /// Bytes of records in the segment: where the next write goes.
    len: u64,
    /// The file's size: bytes from `len` to here are zeros.
    preallocated: u64,
}

impl Wal {
    /// Locks `dir` (creating it if needed), recovers its records and opens the newest segment
    /// for appending.
    pub fn open(dir: &Path) -> Result<(Wal, Recovery), WalError> {
        Wal::open_checked(dir, None)
    }

    /// [`Wal::open`], for the node `identity`: a dir recorded as another node's or another
    /// cluster's is refused before its log is read, and a dir without an identity file
    /// records it (one with a log, from an earlier build, is adopted: logged at info).
    pub fn open_as(dir: &Path, identity: Identity) -> Result<(Wal, Recovery), WalError> {
        Wal::open_checked(dir, Some(identity))
    }

    /// The records [`Wal::open_as`] would recover from `dir`, with nothing on disk changed: a
    /// tail recovery would cut is only reported ([`Recovery::cut_tail`]), and a dir without a
    /// log reads as empty (and is not made). The dir is locked while it is read, so its node
    /// must be stopped. For tools that look at a stopped node's log (`dkv-server availability
    /// on`): a cut made there would erase the evidence that the node cannot vouch for its log.
    pub fn read(dir: &Path, identity: Identity) -> Result<Recovery, WalError> {
        let empty = Recovery { records: Vec::new(), segments_read: 0, cut_tail: None };
        if !dir.exists() {
            return Ok(empty);
        }
        let _lock = lock_data_dir(dir)?;
        let mut numbers = list_segments(dir).map_err(|source| WalError::DataDir { dir: dir.to_path_buf(), source })?;
        if numbers.is_empty() {
            return Ok(empty);
        }
        identity::check_or_record(dir, identity, true)?;
        match read_log(dir, &numbers, true, Cut::Reported)? {
            Some(read) => Ok(read.recovery),
            None => {
                numbers.pop();
                let read = read_log(dir, &numbers, false, Cut::Reported)?;
                Ok(read.expect("a strict read never drops a segment").recovery)
            }
        }
    }

    /// [`Wal::open_as`] on a dir whose `LOCK` this process holds already ([`Wal::lock`]): a
    /// server reopens its log after a state transfer replaced it without ever letting the dir go.
    pub(crate) fn reopen_locked(dir: &Path, lock: DirLock, identity: Identity) -> Result<(Wal, Recovery), WalError> {
        Wal::open_locked(dir, lock, Some(identity))
    }

    fn open_checked(dir: &Path, identity: Option<Identity>) -> Result<(Wal, Recovery), WalError> {
        Wal::open_locked(dir, lock_data_dir(dir)?, identity)
    }

    fn open_locked(dir: &Path, lock: DirLock, identity: Option<Identity>) -> Result<(Wal, Recovery), WalError> {
        let data_dir_error = |source| WalError::DataDir { dir: dir.to_path_buf(), source };

        let mut numbers = list_segments(dir).map_err(data_dir_error)?;
        if let Some(identity) = identity {
            let has_log = !numbers.is_empty();
            if identity::check_or_record(dir, identity, has_log)? == IdentityCheck::Adopted {
                tracing::info!(
                    data_dir = %dir.display(),
                    cluster = %identity.cluster,
                    node = %identity.node,
                    "adopted a data dir made by an earlier build: recorded its identity"
                );
            }
        }
        let Some(&newest) = numbers.last() else {
            let current = create_segment(dir, FIRST_SEGMENT)?;
            sync_dir(dir)?;
            let recovery = Recovery { records: Vec::new(), segments_read: 0, cut_tail: None };
            return Ok((Wal::new(dir, lock, current, FIRST_SEGMENT), recovery));
        };
        // A last segment holding nothing but the beginning of a snapshot (a crash cut it short)
        // is dropped, and the log ends in the segment before it, which was trimmed and synced
        // before the snapshot began: its end is read as strictly as any other segment's.
        let (read, unfinished) = match read_log(dir, &numbers, true, Cut::OnDisk)? {
            Some(read) => (read, None),
            None => {
                numbers.pop();
                (
                    read_log(dir, &numbers, false, Cut::OnDisk)?.expect("a strict read never drops a segment"),
                    Some(newest),
                )
            }
        };
        // Only now that the log has read back cleanly is anything deleted.
        if let Some(number) = unfinished {
            tracing::warn!(
                segment = %segment_path(dir, number).display(),
                "the log ends in an unfinished snapshot (a crash cut it short); recovering from the records before it"
            );
            remove_segment(dir, number)?;
        }
        // Segments before the start were made obsolete by a durable snapshot; a crash
        // interrupted their deletion.
        for &number in &numbers[..read.start] {
            remove_segment(dir, number)?;
        }
        if unfinished.is_some() || read.start > 0 {
            sync_dir(dir)?;
        }
        let last = *numbers.last().expect("a segment before the dropped one");
        let current = open_segment(dir, last, read.newest_len)?;
        // What recovery read back may have reached only the page cache before the crash (a
        // process crash, not a power loss, keeps it readable): sync it before the node counts
        // any of it as durable — a restarted coordinator counts its own decision as a durable
        // copy, and a participant acknowledges a commit it replayed (docs/protocol.md §7.2).
        // Earlier segments were synced before the next one began.
        current.file.sync_data().map_err(|source| WalError::Io { path: current.path.clone(), source })?;
        Ok((Wal::new(dir, lock, current, numbers[read.start]), read.recovery))
    }

    fn new(dir: &Path, lock: DirLock, current: Segment, snapshot_start: u64) -> Wal {
        // What recovery read is on disk: a state transfer may send it.
        let durable_end = LogPosition { segment: current.number, len: current.len };
        Wal {
            dir: dir.to_path_buf(),
            lock,
            current,
            compaction: Compaction::default(),
            buffered: Vec::new(),
            snapshot_start,
            durable_end,
            pending_snapshot: None,
            bytes_written: 0,
            #[cfg(test)]
            sync_fault: Default::default(),
        }
    }

    /// Tests only: store an OS error number in the switch this returns, and the next sync
    /// fails with it.
    #[cfg(test)]
    pub(crate) fn sync_fault(&self) -> std::sync::Arc<std::sync::atomic::AtomicI32> {
        self.sync_fault.clone()
    }

    /// Buffers `record` for the next [`Wal::sync`] (writing the buffer out, unsynced, once it
    /// is large). A snapshot starts a new segment: the records before it are written and
    /// synced to the old segment first, so that only the last segment can ever end in a torn
    /// write.
    pub fn append(&mut self, record: &Record) -> Result<(), WalError> {
        if record.begins_snapshot() {
            self.write_buffered()?;
            // Trim the preallocated zeros: only the last segment may end in them.
            let current = &self.current;
            current.file.set_len(current.len).map_err(|source| WalError::Io { path: current.path.clone(), source })?;
            self.sync_current()?;
            let number = self.current.number + 1;
            let segment = create_segment(&self.dir, number)?;
            sync_dir(&self.dir)?;
            let sealed = LogPosition { segment: self.current.number, len: self.current.len };
            self.pending_snapshot = Some((number, sealed));
            self.current = segment;
        }
        if let Record::SnapshotEnd { .. } = record {
            // Everything before the end is made durable first, so a durable end means a whole
            // snapshot even if the disk wrote pages out of order; without its end, a snapshot's
            // segment holds nothing that was relied on and recovery may drop it, damaged or not.
            self.write_buffered()?;
            self.sync_current()?;
        }
        self.compaction.appended(record, self.current.number);
        wal::encode(record, &mut self.buffered);
        if self.buffered.len() >= BUFFER_BYTES_MAX {
            self.write_buffered()?;
        }
        Ok(())
    }

    /// Writes every buffered record and makes it durable. Then deletes the segments a durable
    /// snapshot made obsolete: those before the segment it begins (see
    /// [`dkv_core::compaction`]).
    pub fn sync(&mut self) -> Result<(), WalError> {
        let pending = self.begin_sync()?;
        pending.run()?;
        self.end_sync(pending)
    }

    /// The first half of [`Wal::sync`]: writes every buffered record out (unsynced) and returns
    /// the sync that makes them durable, which may [`PendingSync::run`] on another thread while
    /// more records are appended. [`Wal::end_sync`] takes it back once it ran.
    pub(crate) fn begin_sync(&mut self) -> Result<PendingSync, WalError> {
        self.write_buffered()?;
        // Every record appended so far is in this sync: a snapshot whose end is among them
        // frees the segments before it once the sync is done.
        let frees_before = self.compaction.durable();
        Ok(self.sync_of_current(frees_before))
    }

    /// A sync of the current segment's records written so far.
    fn sync_of_current(&mut self, frees_before: Option<u64>) -> PendingSync {
        PendingSync {
            file: Arc::clone(&self.current.file),
            path: self.current.path.clone(),
            through: LogPosition { segment: self.current.number, len: self.current.len },
            frees_before,
            #[cfg(test)]
            fault: self.sync_fault.swap(0, std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// The second half of [`Wal::sync`], once `pending` ran: records what is durable now, and
    /// deletes the segments a snapshot made durable by it made obsolete.
    pub(crate) fn end_sync(&mut self, pending: PendingSync) -> Result<(), WalError> {
        // A snapshot's own syncs ([`Wal::append`]) may have gone further meanwhile.
        self.durable_end = self.durable_end.max(pending.through);
        if let Some(first_needed) = pending.frees_before {
            // The snapshot beginning there has a durable end: the state starts there now.
            self.snapshot_start = first_needed;
            if self.pending_snapshot.is_some_and(|(begins, _)| begins <= first_needed) {
                self.pending_snapshot = None;
            }
            let obsolete = list_segments(&self.dir).map_err(|source| self.io_error(source))?;
            let obsolete: Vec<u64> = obsolete.into_iter().filter(|&n| n < first_needed).collect();
            for &number in &obsolete {
                remove_segment(&self.dir, number)?;
            }
            if !obsolete.is_empty() {
                sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    /// Whether records are buffered that [`Wal::sync`] has not made durable.
    pub fn has_buffered(&self) -> bool {
        !self.buffered.is_empty()
    }

    /// Bytes written since the log was opened.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dir's `LOCK`, held for as long as the clone lives, also once this `Wal` is closed.
    pub(crate) fn lock(&self) -> DirLock {
        self.lock.clone()
    }

    fn write_buffered(&mut self) -> Result<(), WalError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let segment = &mut self.current;
        let io_error = |source| WalError::Io { path: segment.path.clone(), source };
        let end = segment.len + self.buffered.len() as u64;
        if end > segment.preallocated {
            // Zero-fill past what this write covers; the write itself fills the rest.
            zero_fill(&segment.file, segment.preallocated.max(end), end + PREALLOCATE_BYTES).map_err(io_error)?;
            segment.preallocated = end + PREALLOCATE_BYTES;
        }
        segment.file.write_all_at(&self.buffered, segment.len).map_err(io_error)?;
        segment.len = end;
        self.bytes_written += self.buffered.len() as u64;
        self.buffered.clear();
        if self.buffered.capacity() > 2 * BUFFER_BYTES_MAX {
            // A snapshot passed through: do not keep its size in memory until the next one.
            self.buffered = Vec::new();
        }
        Ok(())
    }

    fn sync_current(&mut self) -> Result<(), WalError> {
        let pending = self.sync_of_current(None);
        pending.run()?;
        self.durable_end = pending.through;
        Ok(())
    }

    /// The durable log a state transfer sends (see [`crate::transfer`]): from the beginning of
    /// the newest snapshot whose end is durable (or the first segment) to the durable end, or,
    /// while a snapshot is being appended, to the end of the segment before it.
    pub fn transfer_range(&self) -> LogRange {
        let end = match self.pending_snapshot {
            Some((_, sealed)) => sealed,
            None => self.durable_end,
        };
        LogRange { first_segment: self.snapshot_start, end }
    }

    fn io_error(&self, source: io::Error) -> WalError {
        WalError::Io { path: self.dir.clone(), source }
    }
}

/// A data dir's `LOCK`, taken: held while any clone of it lives.
#[derive(Clone)]
pub(crate) struct DirLock(#[allow(dead_code)] Arc<File>);

/// Creates `dir` if needed and takes its `LOCK`, held until every clone of the returned lock is
/// dropped.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<DirLock, WalError> {
    let data_dir_error = |source| WalError::DataDir { dir: dir.to_path_buf(), source };
    if dir.exists() && !dir.is_dir() {
        return Err(WalError::NotADirectory { dir: dir.to_path_buf() });
    }
    fs::create_dir_all(dir).map_err(data_dir_error)?;
    let lock_path = dir.join(LOCK_FILE_NAME);
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(data_dir_error)?;
    match lock.try_lock() {
        Ok(()) => Ok(DirLock(Arc::new(lock))),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked { dir: dir.to_path_buf() }),
        Err(TryLockError::Error(source)) => Err(data_dir_error(source)),
    }
}

/// The numbers of the segments in `dir`, ascending. Files that are not segments are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = segment_number(name) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The log as read from its start segment: its records, the start's index in the segment
/// numbers, and the length of the last segment's records.
/// Whether recovery cuts a torn tail off the segment on disk, or only reports the cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    OnDisk,
    Reported,
}

struct LogRead {
    recovery: Recovery,
    start: usize,
    newest_len: u64,
}

/// Reads the segments `numbers` from the newest one that starts with a snapshot.
/// `last_may_be_torn`: the last segment is the one a crash interrupted, so a torn write or
/// preallocated zeros may end it (a torn tail is truncated), and it may hold nothing but an
/// unfinished snapshot, which gives `None` (a snapshot's end is written only once all of it is
/// durable, and its older segments are kept until then, so nothing in it was relied on,
/// damaged or not). Any other unfinished snapshot is refused, after any damage that explains it.
fn read_log(
    dir: &Path,
    numbers: &[u64],
    last_may_be_torn: bool,
    cut_on_disk: Cut,
) -> Result<Option<LogRead>, WalError> {
    let mut recovery = Recovery { records: Vec::new(), segments_read: 0, cut_tail: None };
    let start = find_start(dir, numbers)?;
    let last_index = numbers.len() - 1;
    let mut newest_len = 0;
    for (i, &number) in numbers.iter().enumerate().skip(start) {
        let path = segment_path(dir, number);
        let first = recovery.records.len();
        let (valid_len, end) = read_segment(&path, &mut recovery.records)?;
        recovery.segments_read += 1;
        newest_len = valid_len as u64;
        let last = i == last_index && last_may_be_torn;
        let mut refused_snapshot = false;
        if recovery.records.get(first).is_some_and(Record::begins_snapshot) {
            let rest = &recovery.records[first + 1..];
            if !rest.iter().any(|r| matches!(r, Record::SnapshotEnd { .. })) {
                if last
                    && i > 0
                    // The body of a snapshot: its configuration (every snapshot a node of this
                    // build takes has one), its vote instances' states, its entries and so on.
                    && rest.iter().all(Record::in_snapshot_body)
                {
                    return Ok(None);
                }
                refused_snapshot = true;
            }
        }
        match end {
            // Not truncated: a log that is refused is left as it is.
            WalEnd::Torn { .. } if refused_snapshot => return Err(WalError::UnfinishedSnapshot { path }),
            WalEnd::Clean => {}
            WalEnd::Zeros if last => {}
            WalEnd::Zeros => {
                // Segments are trimmed before the next one starts: zeros here mean lost
                // writes, not preallocation.
                let reason = "zeros where records should be".to_string();
                return Err(WalError::DamagedBeforeTail { path, offset: valid_len, reason });
            }
            WalEnd::Torn { offset, ref error, .. } if last => {
                let cut = end.cut_tail().expect("a torn end is cut");
                match cut.record {
                    // The usual trace of a crash mid-write: nothing cut was ever acknowledged.
                    CutRecord::Short => tracing::info!(
                        data_dir = %dir.display(),
                        segment = %path.display(),
                        offset,
                        bytes = cut.bytes,
                        "the log's tail was cut at recovery: {cut} ({error}); a crash interrupted that write, which was never acknowledged"
                    ),
                    // `Node::start_after_cut` starts such a node unvouched (docs/protocol.md §4).
                    CutRecord::WholeButDamaged => tracing::warn!(
                        data_dir = %dir.display(),
                        segment = %path.display(),
                        offset,
                        bytes = cut.bytes,
                        "the log's tail was cut at recovery: {cut} ({error}); this node cannot vouch for its state, as it may have lost an acknowledged record: it votes on and serves nothing until it has caught up from a member (with --availability; without it, it stays out and writes stop). Check the disk"
                    ),
                }
                if cut_on_disk == Cut::OnDisk {
                    let kept = match cut.record {
                        CutRecord::Short => offset as u64,
                        // The damaged record is the only evidence that this node cannot vouch
                        // for its log: it is replaced by a durable `Unvouched` before any of it
                        // is cut, so that a crash before the node logs its own start cannot
                        // leave a log that reads clean.
                        CutRecord::WholeButDamaged => {
                            let kept = write_unvouched_over(&path, offset as u64)?;
                            recovery.records.push(Record::Unvouched);
                            kept
                        }
                    };
                    truncate(&path, kept)?;
                    newest_len = kept;
                }
                recovery.cut_tail = Some(cut);
            }
            WalEnd::Torn { offset, error, .. } => {
                return Err(WalError::DamagedBeforeTail { path, offset, reason: error.to_string() });
            }
            WalEnd::Corrupt { offset, error, .. } => {
                return Err(WalError::Corrupt { path, offset, reason: error.to_string() });
            }
        }
        if refused_snapshot {
            return Err(WalError::UnfinishedSnapshot { path });
        }
    }
    Ok(Some(LogRead { recovery, start, newest_len }))
}

/// The index (into `numbers`) of the segment recovery starts from: the newest whose first
/// record is a snapshot, else the first segment ever written.
fn find_start(dir: &Path, numbers: &[u64]) -> Result<usize, WalError> {
    for (i, &number) in numbers.iter().enumerate().rev() {
        if starts_with_snapshot(&segment_path(dir, number))? {
            return Ok(i);
        }
    }
    if numbers[0] != FIRST_SEGMENT {
        return Err(WalError::MissingSegments { dir: dir.to_path_buf(), oldest: numbers[0] });
    }
    Ok(0)
}

fn starts_with_snapshot(path: &Path) -> Result<bool, WalError> {
    let io_error = |source| WalError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let mut field = [0u8; 4];
    if file.read_exact(&mut field).is_err() {
        return Ok(false);
    }
    let claimed = wal::record_bytes_claimed(&field).expect("four bytes read");
    let file_len = file.metadata().map_err(io_error)?.len();
    // A damaged length field must not make us allocate more than the file holds.
    if claimed as u64 > file_len {
        return Ok(false);
    }
    let mut bytes = field.to_vec();
    bytes.resize(claimed, 0);
    if file.read_exact(&mut bytes[4..]).is_err() {
        return Ok(false);
    }
    Ok(matches!(wal::decode_one(&bytes), Ok((record, _)) if record.begins_snapshot()))
}

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}{SEGMENT_SUFFIX}"))
}

fn create_segment(dir: &Path, number: u64) -> Result<Segment, WalError> {
    let path = segment_path(dir, number);
    // Not append mode: records are written at their offset, over preallocated zeros.
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(|source| WalError::Io { path: path.clone(), source })?;
    Ok(Segment { number, path, file: Arc::new(file), len: 0, preallocated: 0 })
}

/// Opens the newest segment for writing after its `len` bytes of records.
fn open_segment(dir: &Path, number: u64, len: u64) -> Result<Segment, WalError> {
    let path = segment_path(dir, number);
    let io_error = |source| WalError::Io { path: path.clone(), source };
    let file = OpenOptions::new().write(true).open(&path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    Ok(Segment { number, path, file: Arc::new(file), len, preallocated: size.max(len) })
}

/// Writes zeros over `from..to` of `file`.
fn zero_fill(file: &File, from: u64, to: u64) -> io::Result<()> {
    static ZEROS: [u8; ZERO_WRITE_BYTES] = [0; ZERO_WRITE_BYTES];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_WRITE_BYTES as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Appends the records of a segment's clean prefix to `records`; returns that prefix's length
/// and how the segment ends after it. The file is read through a window of
/// [`READ_WINDOW_BYTES`] (or one record, if larger), so a recovering node never holds a whole
/// segment's bytes beside the records decoded from them; only after damage is the rest of the
/// file read, for the codec to tell zeros, a torn write and corruption apart.
fn read_segment(path: &Path, records: &mut Vec<Record>) -> Result<(usize, WalEnd), WalError> {
    let io_error = |source| WalError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let file_len = usize::try_from(file.metadata().map_err(io_error)?.len()).unwrap_or(usize::MAX);
    // `window` holds the file's bytes from `window_start`, which is always a record boundary.
    let mut window: Vec<u8> = Vec::new();
    let mut window_start = 0;
    loop {
        let read = wal::decode_records(&window, window_start + window.len() < file_len, records);
        window.drain(..read.len);
        window_start += read.len;
        match read.stop {
            wal::RecordsStop::End => return Ok((window_start, WalEnd::Clean)),
            wal::RecordsStop::NeedsBytes { record_bytes } => {
                // Read on: what the record needs, in large reads, never past the end of the
                // file (a damaged length cannot make it allocate more than the file holds).
                let filled = window.len();
                let target = record_bytes.max(READ_WINDOW_BYTES).min(file_len - window_start).max(filled);
                window.resize(target, 0);
                file.read_exact(&mut window[filled..]).map_err(io_error)?;
            }
            wal::RecordsStop::Damaged(error) => {
                file.read_to_end(&mut window).map_err(io_error)?;
                return Ok((window_start, wal::classify_damage(&window, window_start, error)));
            }
        }
    }
}

/// One segment file as recovery reads it, for tools that inspect a log without opening it as
/// a [`Wal`] (which locks the directory and may truncate or delete segments): the records of
/// its clean prefix and how it ends after them.
pub fn read_segment_file(path: &Path) -> Result<(Vec<Record>, WalEnd), WalError> {
    let mut records = Vec::new();
    let (_, end) = read_segment(path, &mut records)?;
    Ok((records, end))
}

/// Whether `name` is a segment's file name, and if so its number.
pub fn segment_number(name: &str) -> Option<u64> {
    name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
}

pub(crate) fn remove_segment(dir: &Path, number: u64) -> Result<(), WalError> {
    let path = segment_path(dir, number);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(WalError::Io { path, source }),
    }
}

/// Writes an [`Record::Unvouched`] over the first bytes of the damaged record at `offset` and
/// syncs it; returns where the log now ends (the bytes after it are garbage, for the caller to
/// cut). A crash that tears this write leaves the damaged record's header over bytes that fail
/// its checksum, or a header that fails its own check: the next start finds the damage again,
/// never a write cut short that it would drop as harmless (docs/protocol.md §4).
fn write_unvouched_over(path: &Path, offset: u64) -> Result<u64, WalError> {
    let io_error = |source| WalError::Io { path: path.to_path_buf(), source };
    let frame = wal::encode_to_vec(&Record::Unvouched);
    let file = OpenOptions::new().write(true).open(path).map_err(io_error)?;
    file.write_all_at(&frame, offset).map_err(io_error)?;
    file.sync_data().map_err(io_error)?;
    Ok(offset + frame.len() as u64)
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let io_error = |source| WalError::Io { path: path.to_path_buf(), source };
    let file = OpenOptions::new().write(true).open(path).map_err(io_error)?;
    file.set_len(len).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

/// Makes file creations and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    let io_error = |source| WalError::Io { path: dir.to_path_buf(), source };
    File::open(dir).map_err(io_error)?.sync_all().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::codec::wal::CutRecord;
    use dkv_core::record::{Snapshot, VersionedEntry};
    use std::io::{Seek, Write};

    fn boot(incarnation: u64) -> Record {
        Record::Boot { incarnation }
    }

    /// The records of a snapshot with `entries` entries of 1 KiB.
    fn snapshot(incarnation: u64, entries: usize) -> Vec<Record> {
        let entries = (0..entries).map(|i| VersionedEntry {
            key: format!("k{i:08}").into_bytes(),
            value: vec![7; 1024],
            version: 1,
        });
        Snapshot { incarnation, entries: entries.collect(), ..Snapshot::default() }.into_records()
    }

    fn append_all(wal: &mut Wal, records: &[Record]) {
        for record in records {
            wal.append(record).unwrap();
        }
    }

    /// Synced records come back, in order, after the log is closed and reopened.
    #[test]
    fn synced_records_are_recovered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, recovery) = Wal::open(dir.path()).unwrap();
            assert!(recovery.records.is_empty());
            for i in 1..=5 {
                wal.append(&boot(i)).unwrap();
            }
            wal.sync().unwrap();
        }
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, (1..=5).map(boot).collect::<Vec<_>>());
    }

    /// A second opener of the same data dir is refused while the first holds it.
    #[test]
    fn data_dir_is_locked_exclusively() {
        let dir = tempfile::tempdir().unwrap();
        let (_wal, _) = Wal::open(dir.path()).unwrap();
        assert!(matches!(Wal::open(dir.path()), Err(WalError::Locked { .. })));
    }

    /// A snapshot starts a new segment and, once synced, the older segments are deleted;
    /// recovery starts from the snapshot.
    #[test]
    fn snapshot_compacts_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            for round in 0..3u64 {
                wal.append(&boot(round * 10 + 1)).unwrap();
                wal.append(&boot(round * 10 + 2)).unwrap();
                append_all(&mut wal, &snapshot(round * 10 + 3, 2));
                wal.append(&boot(round * 10 + 4)).unwrap();
                wal.sync().unwrap();
            }
            assert_eq!(list_segments(dir.path()).unwrap(), vec![4]);
        }
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        let mut expected = snapshot(23, 2);
        expected.push(boot(24));
        assert_eq!(recovery.records, expected);
    }

    /// A sync that ends after a later snapshot began (the sync ran on the syncer thread) frees
    /// the segments before the snapshot it made durable, and only those: the later snapshot's
    /// own begin still bounds what a state transfer may send, until a sync makes its end durable.
    #[test]
    fn a_sync_ending_after_a_later_snapshot_began_frees_only_what_it_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&boot(1)).unwrap();
        append_all(&mut wal, &snapshot(2, 2));
        let pending = wal.begin_sync().unwrap();
        let first = snapshot(3, 2);
        let (begin, rest) = first.split_first().unwrap();
        wal.append(begin).unwrap();
        let sealed = wal.transfer_range().end;
        assert_eq!(sealed.segment, 2, "the first snapshot's segment was sealed when this one began");
        pending.run().unwrap();
        wal.end_sync(pending).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2, 3], "only the segments before the durable snapshot go");
        assert_eq!(
            wal.transfer_range(),
            LogRange { first_segment: 2, end: sealed },
            "the later snapshot is not whole yet"
        );
        let (end, pieces) = rest.split_last().unwrap();
        append_all(&mut wal, pieces);
        wal.sync().unwrap();
        assert_eq!(
            wal.transfer_range(),
            LogRange { first_segment: 2, end: sealed },
            "a durable part is not whole either"
        );
        wal.append(end).unwrap();
        wal.sync().unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![3]);
        assert_eq!(wal.transfer_range().first_segment, 3);
    }

    /// A snapshot larger than the append buffer is written out as it is appended, and reads
    /// back whole.
    #[test]
    fn large_snapshot_is_written_in_pieces_and_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let records = snapshot(5, 20_000); // 20 MiB of values
        assert!(records.len() > 10);
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(&boot(1)).unwrap();
            for record in &records {
                wal.append(record).unwrap();
                assert!(wal.buffered.len() < BUFFER_BYTES_MAX, "the buffer is written out when large");
            }
            wal.sync().unwrap();
            assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
        }
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, records);
    }

    /// A crash in the middle of a snapshot: the older segments were kept (even across a sync),
    /// and recovery drops the unfinished snapshot's segment and reads them instead.
    #[test]
    fn unfinished_snapshot_is_dropped_and_older_segments_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let first = snapshot(3, 2);
        let second = snapshot(6, 20_000);
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(&boot(1)).unwrap();
            append_all(&mut wal, &first);
            wal.append(&boot(4)).unwrap();
            wal.sync().unwrap();
            append_all(&mut wal, &second[..second.len() - 1]); // the crash comes before the end
            wal.sync().unwrap();
            assert_eq!(list_segments(dir.path()).unwrap(), vec![2, 3], "segment 2 outlives an unfinished snapshot");
        }
        let mut expected = first.clone();
        expected.push(boot(4));
        {
            let (mut wal, recovery) = Wal::open(dir.path()).unwrap();
            assert_eq!(recovery.records, expected);
            assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
            wal.append(&boot(7)).unwrap();
            wal.sync().unwrap();
        }
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        expected.push(boot(7));
        assert_eq!(recovery.records, expected, "the log goes on in the segment before the dropped one");
    }

    /// Bytes of records `records` take in a segment.
    fn encoded_len(records: &[Record]) -> u64 {
        records.iter().map(|r| wal::encode_to_vec(r).len() as u64).sum()
    }

    /// A --data-dir that names a file is refused saying so (a user saw "File exists").
    #[test]
    fn a_data_dir_that_is_a_file_is_refused_saying_so() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("afile");
        std::fs::write(&file, b"x").unwrap();
        match lock_data_dir(&file) {
            Err(error @ WalError::NotADirectory { .. }) => assert!(error.to_string().contains("is a file"), "{error}"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a file taken for a data dir"),
        }
    }

    /// The segment being written is zero-filled ahead of its records (so a sync rewrites
    /// blocks instead of growing the file), and the zeros read back as the end of the log.
    #[test]
    fn preallocated_zeros_end_the_log_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), FIRST_SEGMENT);
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(&boot(1)).unwrap();
            wal.sync().unwrap();
            let records_len = encoded_len(&[boot(1)]);
            assert_eq!(fs::metadata(&path).unwrap().len(), records_len + PREALLOCATE_BYTES);
        }
        for round in 2..=3 {
            let (mut wal, recovery) = Wal::open(dir.path()).unwrap();
            assert_eq!(recovery.records, (1..round).map(boot).collect::<Vec<_>>());
            assert_eq!(recovery.cut_tail, None, "a clean log reports no cut");
            wal.append(&boot(round)).unwrap();
            wal.sync().unwrap();
        }
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, (1..=3).map(boot).collect::<Vec<_>>());
    }

    /// Flips the bits `mask` of the byte at `at` in the file at `path` (damage on the medium).
    fn flip_bits(path: &Path, at: u64, mask: u8) {
        let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ mask], at).unwrap();
    }

    /// A log of two synced `Boot` records, and its segment's path.
    fn two_synced_boots() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(&boot(1)).unwrap();
            wal.append(&boot(2)).unwrap();
            wal.sync().unwrap();
        }
        let path = segment_path(dir.path(), FIRST_SEGMENT);
        (dir, path)
    }

    /// A torn tail (a half-written last record, zeros after it) is truncated and the records
    /// before it survive.
    #[test]
    fn torn_tail_is_truncated() {
        let (dir, path) = two_synced_boots();
        let full = encoded_len(&[boot(1), boot(2)]);
        let half_record = &wal::encode_to_vec(&boot(3))[..5];
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(half_record, full).unwrap();
        let (mut wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, vec![boot(1), boot(2)]);
        assert_eq!(recovery.cut_tail, Some(CutTail { bytes: 5, record: CutRecord::Short }));
        assert_eq!(fs::metadata(&path).unwrap().len(), full);
        // Appending after the truncation yields a clean log.
        wal.append(&boot(4)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, vec![boot(1), boot(2), boot(4)]);
    }

    /// A flipped bit in the last record, synced long ago, has nothing valid after it and is
    /// cut; recovery reports the cut as possible damage to a synced record (a possibly
    /// acknowledged record lost), not as a torn write: a bit of its payload, and a bit of its
    /// length field that makes it claim more bytes than the file holds of it (which, before the
    /// length check, read as a torn write).
    #[test]
    fn flipped_bit_in_the_last_synced_record_is_reported_as_possible_damage() {
        let first = encoded_len(&[boot(1)]);
        let last_len = encoded_len(&[boot(2)]);
        let payload = first + wal::RECORD_HEADER_BYTES as u64; // the last record's first payload byte
        let length_field = first + 1; // its length's second byte: 256 more bytes claimed
        for at in [payload, length_field] {
            let (dir, path) = two_synced_boots();
            flip_bits(&path, at, 0x01);
            let (_wal, recovery) = Wal::open(dir.path()).unwrap();
            assert_eq!(recovery.records, vec![boot(1), Record::Unvouched], "byte {at}");
            let cut = CutTail { bytes: last_len, record: CutRecord::WholeButDamaged };
            assert_eq!(recovery.cut_tail, Some(cut), "byte {at}");
        }
    }

    /// The damaged record is replaced by a durable `Unvouched` before it is cut, so the evidence
    /// outlives a crash right after the cut, before the node logged anything: the next start
    /// reads a log that says so, not a clean one. A crash between the two steps (the record
    /// written over the damaged one's start, its garbage not yet cut) reads the same.
    #[test]
    fn a_cut_of_possible_damage_leaves_the_log_saying_so() {
        let first = encoded_len(&[boot(1)]);
        let unvouched_len = encoded_len(&[Record::Unvouched]);
        let flip_the_last_record = |path: &Path| flip_bits(path, first + wal::RECORD_HEADER_BYTES as u64, 0x01);

        let (dir, path) = two_synced_boots();
        flip_the_last_record(&path);
        drop(Wal::open(dir.path()).unwrap()); // the crash: nothing appended or synced after the start
        assert_eq!(fs::metadata(&path).unwrap().len(), first + unvouched_len);
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, vec![boot(1), Record::Unvouched], "the next start still cannot vouch");
        assert_eq!(recovery.cut_tail, None);

        let (dir, path) = two_synced_boots();
        flip_the_last_record(&path);
        let frame = wal::encode_to_vec(&Record::Unvouched);
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&frame, first).unwrap();
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, vec![boot(1), Record::Unvouched]);
        assert!(recovery.cut_tail.is_some(), "the rest of the damaged record is cut");
        assert_eq!(fs::metadata(&path).unwrap().len(), first + unvouched_len);
    }

    /// Damage far into a segment (past the first read window) is found at its exact offset: a
    /// torn tail is cut there, and a damaged record with valid ones after it is reported there.
    #[test]
    fn damage_past_the_first_read_window_is_placed_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = vec![boot(1)];
        records.extend(snapshot(2, 12_000)); // 12 MiB: more than one read window
        records.push(boot(3));
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            append_all(&mut wal, &records);
            wal.sync().unwrap();
        }
        let path = segment_path(dir.path(), 2);
        let full = encoded_len(&records[1..]);
        assert!(full > READ_WINDOW_BYTES as u64);
        let torn = &wal::encode_to_vec(&boot(4))[..6];
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(torn, full).unwrap();
        {
            let (_wal, recovery) = Wal::open(dir.path()).unwrap();
            assert_eq!(recovery.records, records[1..]);
            assert_eq!(recovery.cut_tail, Some(CutTail { bytes: 6, record: CutRecord::Short }));
            assert_eq!(fs::metadata(&path).unwrap().len(), full);
        }
        // Flip a byte inside the last entries record: valid records follow, so it is corruption.
        let start = full - encoded_len(&records[records.len() - 3..]);
        let at = start + 20;
        flip_bits(&path, at, 0xff);
        let error = Wal::open(dir.path()).err().expect("corruption must stop recovery");
        assert!(matches!(error, WalError::Corrupt { offset, .. } if offset as u64 == start), "{error}");
    }

    /// A damaged length field claiming a record far larger than the file (here 1 GiB in a
    /// 16-byte segment) never makes recovery allocate that much: it is a torn tail, cut off.
    #[test]
    fn damaged_length_never_allocates_past_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = wal::RECORD_BYTES_MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xab; 12]);
        fs::write(segment_path(dir.path(), FIRST_SEGMENT), &bytes).unwrap();
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert!(recovery.records.is_empty());
        assert_eq!(recovery.cut_tail, Some(CutTail { bytes: 16, record: CutRecord::Short }));
    }

    /// A damaged record with valid records after it stops recovery with a clear error.
    #[test]
    fn corruption_before_the_tail_stops_recovery() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            for i in 1..=3 {
                wal.append(&boot(i)).unwrap();
            }
            wal.sync().unwrap();
        }
        let path = segment_path(dir.path(), FIRST_SEGMENT);
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        // Flip a payload byte of the first record.
        file.seek(io::SeekFrom::Start(wal::RECORD_HEADER_BYTES as u64)).unwrap();
        file.write_all(&[0xff]).unwrap();
        drop(file);
        let error = Wal::open(dir.path()).err().expect("corruption must stop recovery");
        assert!(matches!(error, WalError::Corrupt { offset: 0, .. }), "{error}");
        assert!(error.to_string().contains("refusing to start"));
    }

    /// The bytes of a snapshot of `entries` 1 KiB entries without its end record; with
    /// `hole`, the second record is zeros (a power loss wrote a later page but not that one).
    fn unfinished_snapshot_bytes(incarnation: u64, entries: usize, hole: bool) -> Vec<u8> {
        let records = snapshot(incarnation, entries);
        let mut bytes = Vec::new();
        for (i, record) in records[..records.len() - 1].iter().enumerate() {
            let at = bytes.len();
            wal::encode(record, &mut bytes);
            if hole && i == 1 {
                bytes[at..].fill(0);
            }
        }
        bytes
    }

    /// A power loss in the middle of a snapshot can leave holes in it (its pages are written
    /// unsynced, in any order): the snapshot had no durable end, so its segment is dropped,
    /// damaged as it is, and recovery reads the older segments.
    #[test]
    fn unfinished_snapshot_with_a_hole_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), wal::encode_to_vec(&boot(1))).unwrap();
        fs::write(segment_path(dir.path(), 2), unfinished_snapshot_bytes(2, 3000, true)).unwrap();
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, vec![boot(1)]);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1]);
    }

    /// A node's snapshot carries its configuration after its header: a crash before its end
    /// leaves a segment that is still nothing but an unfinished snapshot, and it is dropped.
    /// (Before, the configuration record made recovery refuse the log: a `kill -9` during a
    /// snapshot in CI's torture run left a node that would not start.)
    #[test]
    fn unfinished_snapshot_with_its_configuration_is_dropped() {
        let configuration = dkv_core::Configuration { epoch: dkv_core::Epoch(1), members: dkv_core::NodeSet::first(3) };
        let c = dkv_core::record::SnapshotConfiguration { configuration, installed: Vec::new(), agreement: None };
        an_unfinished_snapshot_holding_is_dropped(Record::SnapshotConfiguration(Box::new(c)));
    }

    /// A segment holding a boot, then a snapshot's begin, `body` and its entries but no end:
    /// recovery drops the unfinished snapshot's segment and keeps the boot.
    fn an_unfinished_snapshot_holding_is_dropped(body: Record) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), wal::encode_to_vec(&boot(1))).unwrap();
        let records = snapshot(2, 3);
        let mut unfinished = wal::encode_to_vec(&records[0]);
        wal::encode(&body, &mut unfinished);
        for record in &records[1..records.len() - 1] {
            wal::encode(record, &mut unfinished);
        }
        fs::write(segment_path(dir.path(), 2), unfinished).unwrap();
        let (_wal, recovery) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovery.records, vec![boot(1)]);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1]);
    }

    /// The same with the pins of a node with changes off in it (`SnapshotPinned`, written
    /// before the entries): dropped too. (Review finding: it was missing from the list of a
    /// snapshot's body, and a crash during a snapshot left a node that would not start.)
    #[test]
    fn unfinished_snapshot_with_its_pins_is_dropped() {
        let txn = dkv_core::TxnId { coordinator: dkv_core::NodeId(1), incarnation: 1, number: 4 };
        an_unfinished_snapshot_holding_is_dropped(Record::SnapshotPinned(vec![txn]));
    }

    /// `Wal::read` recovers what `Wal::open` would, and changes nothing: a torn tail is
    /// reported, not cut (a cut made by a tool would hide from the node's next start that its
    /// last record may have been damaged), and an unfinished snapshot's segment stays.
    #[test]
    fn reading_a_log_changes_nothing() {
        let (dir, path) = two_synced_boots();
        let full = encoded_len(&[boot(1), boot(2)]);
        let half_record = &wal::encode_to_vec(&boot(3))[..5];
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(half_record, full).unwrap();
        let size = fs::metadata(&path).unwrap().len();
        let identity = Identity { cluster: dkv_core::ClusterId(0), node: dkv_core::NodeId(0) };
        let recovery = Wal::read(dir.path(), identity).unwrap();
        assert_eq!(recovery.records, vec![boot(1), boot(2)]);
        assert_eq!(recovery.cut_tail, Some(CutTail { bytes: 5, record: CutRecord::Short }));
        assert_eq!(fs::metadata(&path).unwrap().len(), size, "nothing cut");
        let (_wal, recovery) = Wal::open_as(dir.path(), identity).unwrap();
        assert_eq!(recovery.cut_tail, Some(CutTail { bytes: 5, record: CutRecord::Short }), "the start still sees it");
        let missing = dir.path().join("none");
        assert_eq!(Wal::read(&missing, identity).unwrap().records, Vec::new());
        assert!(!missing.exists(), "a dir without a log is not made");
    }

    /// Two unfinished snapshots (no crash makes that): refused, and every file kept.
    #[test]
    fn two_unfinished_snapshots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), wal::encode_to_vec(&boot(1))).unwrap();
        fs::write(segment_path(dir.path(), 2), unfinished_snapshot_bytes(2, 3, false)).unwrap();
        fs::write(segment_path(dir.path(), 3), unfinished_snapshot_bytes(3, 3, false)).unwrap();
        let error = Wal::open(dir.path()).err().expect("two unfinished snapshots must stop recovery");
        assert!(matches!(error, WalError::UnfinishedSnapshot { .. }), "{error}");
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2, 3]);
    }

    /// The segment before a dropped snapshot was trimmed and synced before the snapshot began,
    /// so damage at its end is lost durable data, not a torn write: refused, files kept.
    #[test]
    fn damage_before_a_dropped_snapshot_stops_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Vec::new();
        wal::encode(&boot(1), &mut first);
        wal::encode(&boot(2), &mut first);
        first.truncate(first.len() - 3);
        fs::write(segment_path(dir.path(), 1), &first).unwrap();
        fs::write(segment_path(dir.path(), 2), unfinished_snapshot_bytes(3, 3, false)).unwrap();
        let error = Wal::open(dir.path()).err().expect("damage before the dropped snapshot must stop recovery");
        assert!(matches!(error, WalError::DamagedBeforeTail { .. }), "{error}");
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
    }

    /// When recovery fails for another reason (here: the segments before the unfinished
    /// snapshot do not reach back to the first), nothing is deleted.
    #[test]
    fn refused_recovery_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 2), wal::encode_to_vec(&boot(1))).unwrap();
        fs::write(segment_path(dir.path(), 3), unfinished_snapshot_bytes(3, 3, false)).unwrap();
        let error = Wal::open(dir.path()).err().expect("missing segments must stop recovery");
        assert!(matches!(error, WalError::MissingSegments { .. }), "{error}");
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2, 3]);
    }

    /// An unfinished snapshot followed by a newer segment is not a crash's doing (the snapshot
    /// is always last until its end): refuse, and keep every file.
    #[test]
    fn unfinished_snapshot_before_the_last_segment_stops_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let records = snapshot(1, 3);
        fs::write(segment_path(dir.path(), 1), wal::encode_to_vec(&boot(1))).unwrap();
        let mut unfinished = Vec::new();
        for record in &records[..records.len() - 1] {
            wal::encode(record, &mut unfinished);
        }
        fs::write(segment_path(dir.path(), 2), unfinished).unwrap();
        fs::write(segment_path(dir.path(), 3), wal::encode_to_vec(&boot(2))).unwrap();
        let error = Wal::open(dir.path()).err().expect("an unfinished snapshot in the middle must stop recovery");
        assert!(matches!(error, WalError::UnfinishedSnapshot { .. }), "{error}");
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2, 3]);
    }

    /// A torn segment followed by newer segments means durable records were lost: refuse.
    #[test]
    fn damage_in_a_segment_before_the_last_stops_recovery() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            append_all(&mut wal, &snapshot(1, 0));
            wal.append(&boot(2)).unwrap();
            wal.sync().unwrap();
        }
        // Segment 2 starts with the snapshot; add a segment 3 by hand and tear segment 2.
        let second = segment_path(dir.path(), 2);
        let mut records = snapshot(1, 0);
        records.push(boot(2));
        let len = encoded_len(&records);
        OpenOptions::new().write(true).open(&second).unwrap().set_len(len - 2).unwrap();
        fs::write(segment_path(dir.path(), 3), wal::encode_to_vec(&boot(3))).unwrap();
        let error = Wal::open(dir.path()).err().expect("damage before the last segment must stop recovery");
        assert!(matches!(error, WalError::DamagedBeforeTail { .. }), "{error}");
    }
}
