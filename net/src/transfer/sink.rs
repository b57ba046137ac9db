//! [`TransferSink`]: the receiving side of a state transfer, which writes the member's state,
//! adopted as this node's, into a fresh log and makes it the data dir's log atomically.

use crate::identity::{self, Identity};
use crate::wal::{self, DirLock, LogPosition, WalError};
use dkv_core::catch_up::{AdoptError, Adoption, RecordAssembler, empty_snapshot};
use dkv_core::codec::wal as codec;
use dkv_core::{Epoch, NodeId, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The staging file's name in the data dir: not a segment's, so recovery never reads it.
pub const STAGING_FILE_NAME: &str = "TRANSFER.staging";
/// Adopted records are written out to the staging file once this many bytes are encoded.
const WRITE_BYTES: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum TransferSinkError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("the transferred state cannot be taken: {0}")]
    Adopt(#[from] AdoptError),
}

/// What [`TransferSink::finish`] installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The segment that now holds the node's log, and its length.
    pub log: LogPosition,
    /// The incarnation the log names: the node's next start boots above it.
    pub incarnation_floor: u64,
    /// Records the stream carried, and records written.
    pub records_received: u64,
    pub records_written: u64,
}

/// Takes a member's log stream, chunk by chunk, for the data dir `dir` of node `identity`, whose
/// `LOCK` it holds throughout (no server may run on the dir meanwhile).
///
/// The stream is adopted ([`Adoption`]) and written to [`STAGING_FILE_NAME`], never to the log:
/// until [`TransferSink::finish`], the dir's log is the old one, whole. `finish` syncs the
/// staging file and renames it to the segment after the newest, which is then the newest
/// segment that begins with a complete snapshot: recovery starts from it and deletes every
/// older one. A rename is atomic, so a crash leaves either the old log (and a staging file,
/// removed by the next transfer) or the new one; never a mix. The `IDENTITY` file is checked,
/// never rewritten (a dir without one records this node's, as [`crate::Wal::open_as`] does).
pub struct TransferSink {
    dir: PathBuf,
    _lock: DirLock,
    staging_path: PathBuf,
    staging: File,
    assembler: RecordAssembler,
    adoption: Adoption,
    /// The node the stream is adopted as.
    adoption_me: NodeId,
    /// Records of the chunk being adopted, and what they become: reused, never kept.
    received: Vec<Record>,
    adopted: Vec<Record>,
    /// Adopted records encoded and not yet written.
    encoded: Vec<u8>,
    written_bytes: u64,
    records_received: u64,
    records_written: u64,
    /// The most bytes held at once: undecoded stream bytes plus encoded records.
    high_water_bytes: usize,
}

impl TransferSink {
    /// Locks `dir` (creating it if needed) and starts a fresh staging file. `incarnation_floor`:
    /// the node's last incarnation, if it knows it (0 otherwise).
    pub fn create(dir: &Path, identity: Identity, incarnation_floor: u64) -> Result<TransferSink, TransferSinkError> {
        TransferSink::create_locked(dir, wal::lock_data_dir(dir)?, identity, incarnation_floor)
    }

    /// [`TransferSink::create`] for the dir whose `LOCK` is `lock`, which this process holds
    /// already: a server catching up keeps its dir locked throughout (its own log stays open,
    /// written no more, until the transfer ends).
    pub(crate) fn create_locked(
        dir: &Path,
        lock: DirLock,
        identity: Identity,
        incarnation_floor: u64,
    ) -> Result<TransferSink, TransferSinkError> {
        let dir_error = |source| WalError::DataDir { dir: dir.to_path_buf(), source };
        let has_log = !wal::list_segments(dir).map_err(dir_error)?.is_empty();
        identity::check_or_record(dir, identity, has_log)?;
        let staging_path = dir.join(STAGING_FILE_NAME);
        let io_error = |source| WalError::Io { path: staging_path.clone(), source };
        // A staging file left by a transfer a crash interrupted: its state was never installed.
        match fs::remove_file(&staging_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(e).into()),
            _ => {}
        }
        let staging = OpenOptions::new().create_new(true).write(true).open(&staging_path).map_err(io_error)?;
        Ok(TransferSink {
            dir: dir.to_path_buf(),
            _lock: lock,
            staging_path,
            staging,
            assembler: RecordAssembler::default(),
            adoption: Adoption::new(identity.node, incarnation_floor),
            adoption_me: identity.node,
            received: Vec::new(),
            adopted: Vec::new(),
            encoded: Vec::new(),
            written_bytes: 0,
            records_received: 0,
            records_written: 0,
            high_water_bytes: 0,
        })
    }

    /// Takes the stream, `source`'s log, only up to the configuration of `epoch`, which adds
    /// this node, and checks it is whole (see [`Adoption::joining`], [`Adoption::streamed_by`]).
    /// Before the first chunk.
    pub fn joining(mut self, epoch: Epoch, source: NodeId) -> TransferSink {
        // `Adoption::joining` takes it by value; a sink is `Drop`, so it is swapped out.
        let placeholder = Adoption::new(self.adoption_me, 0);
        self.adoption = std::mem::replace(&mut self.adoption, placeholder).joining(epoch).streamed_by(source);
        self
    }

    /// Takes the next chunk of the stream.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), TransferSinkError> {
        self.assembler.push(chunk, &mut self.received)?;
        self.records_received += self.received.len() as u64;
        for record in self.received.drain(..) {
            self.adoption.adopt(record, &mut self.adopted)?;
        }
        self.encode_adopted()?;
        Ok(())
    }

    /// The stream ended: checks that it made a whole log, and installs it as the dir's log.
    pub fn finish(mut self) -> Result<Installed, TransferSinkError> {
        self.assembler.finish()?;
        if self.adoption.is_empty() {
            // The member's log was empty: the state is the empty one, and it replaces the old.
            self.adopted.extend(empty_snapshot());
        }
        let incarnation_floor = self.adoption.finish()?;
        // The node's incarnation never goes back: its next start boots above this.
        self.adopted.push(Record::BootTracked { incarnation: incarnation_floor });
        self.encode_adopted()?;
        self.write_encoded()?;
        let io_error = |source| WalError::Io { path: self.staging_path.clone(), source };
        self.staging.sync_all().map_err(io_error)?;
        let dir_error = |source| WalError::DataDir { dir: self.dir.clone(), source };
        let old = wal::list_segments(&self.dir).map_err(dir_error)?;
        let number = old.last().map_or(1, |newest| newest + 1);
        let segment = wal::segment_path(&self.dir, number);
        fs::rename(&self.staging_path, &segment).map_err(io_error)?;
        wal::sync_dir(&self.dir)?;
        // The new segment supersedes these; recovery would delete them too.
        for &old in &old {
            wal::remove_segment(&self.dir, old)?;
        }
        wal::sync_dir(&self.dir)?;
        Ok(Installed {
            log: LogPosition { segment: number, len: self.written_bytes },
            incarnation_floor,
            records_received: self.records_received,
            records_written: self.records_written,
        })
    }

    /// The most bytes this sink held at once (stream bytes not yet decoded, records encoded and
    /// not yet written): at most a chunk plus a record cut across chunks, plus [`WRITE_BYTES`]
    /// and one record.
    pub fn high_water_bytes(&self) -> usize {
        self.high_water_bytes.max(self.assembler.high_water_bytes())
    }

    fn encode_adopted(&mut self) -> Result<(), WalError> {
        for record in self.adopted.drain(..) {
            codec::encode(&record, &mut self.encoded);
            self.records_written += 1;
            self.high_water_bytes = self.high_water_bytes.max(self.encoded.len() + self.assembler.pending_bytes());
            if self.encoded.len() >= WRITE_BYTES {
                // Written out as it goes, never the whole state in memory.
                let io_error = |source| WalError::Io { path: self.staging_path.clone(), source };
                self.staging.write_all(&self.encoded).map_err(io_error)?;
                self.written_bytes += self.encoded.len() as u64;
                self.encoded.clear();
            }
        }
        Ok(())
    }

    fn write_encoded(&mut self) -> Result<(), WalError> {
        let io_error = |source| WalError::Io { path: self.staging_path.clone(), source };
        self.staging.write_all(&self.encoded).map_err(io_error)?;
        self.written_bytes += self.encoded.len() as u64;
        self.encoded.clear();
        Ok(())
    }
}

impl Drop for TransferSink {
    /// An abandoned transfer leaves nothing behind (after `finish`, the file was renamed).
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.staging_path);
    }
}
