//! [`LogSource`]: a member's side of a state transfer, the bytes of its durable log read in
//! chunks.

use crate::wal::{self, LogRange, Wal, WalError};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The bytes of a log's [`LogRange`] (its newest complete snapshot and every record after it,
/// up to what was durable when the source was made), read a chunk at a time.
///
/// Every segment of the range is opened when the source is made, and read through those open
/// files: the log may be compacted meanwhile (a newer snapshot ends and the segments before it
/// are deleted), but a deleted file stays readable through a descriptor still open on it, so
/// the transfer goes on with the state it started with. The disk space of those segments is
/// freed when the source is dropped. Nothing else is held: memory is the caller's chunk.
pub struct LogSource {
    /// The range's segments, oldest first, with the bytes of each to send.
    segments: Vec<PinnedSegment>,
    /// The segment being read, an index into `segments`, and the offset in it.
    at: usize,
    offset: u64,
}

struct PinnedSegment {
    path: PathBuf,
    file: File,
    len: u64,
}

impl LogSource {
    /// Pins the segments of `wal`'s [`Wal::transfer_range`].
    pub fn open(wal: &Wal) -> Result<LogSource, WalError> {
        let range = wal.transfer_range();
        LogSource::open_range(wal, range)
    }

    fn open_range(wal: &Wal, range: LogRange) -> Result<LogSource, WalError> {
        let mut segments = Vec::new();
        for number in range.first_segment..=range.end.segment {
            let path = wal::segment_path(wal.dir(), number);
            let io_error = |source| WalError::Io { path: path.clone(), source };
            let file = File::open(&path).map_err(io_error)?;
            let len = if number == range.end.segment {
                range.end.len
            } else {
                // A segment before the last was trimmed to its records before the next began.
                file.metadata().map_err(io_error)?.len()
            };
            segments.push(PinnedSegment { path, file, len });
        }
        Ok(LogSource { segments, at: 0, offset: 0 })
    }

    /// Bytes in the whole range.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Replaces `chunk` with the next bytes of the log, at most `bytes_max` (more than zero);
    /// leaves it empty once the log is sent whole. A chunk never spans two segments.
    pub fn next_chunk(&mut self, bytes_max: usize, chunk: &mut Vec<u8>) -> Result<(), WalError> {
        chunk.clear();
        while let Some(segment) = self.segments.get(self.at) {
            let left = segment.len - self.offset;
            if left == 0 {
                self.at += 1;
                self.offset = 0;
                continue;
            }
            let n = left.min(bytes_max as u64) as usize;
            chunk.resize(n, 0);
            let io_error = |source| WalError::Io { path: segment.path.clone(), source };
            segment.file.read_exact_at(chunk, self.offset).map_err(io_error)?;
            self.offset += n as u64;
            return Ok(());
        }
        Ok(())
    }
}
