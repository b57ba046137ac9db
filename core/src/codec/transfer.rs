//! The messages of a state transfer (docs/protocol.md §7.6): a node that cannot vouch for its
//! state asks a member for it, and the member streams the bytes of its log from its newest
//! complete snapshot on, in chunks, never more unacknowledged bytes than the asker's window.
//! They travel as [`Frame::Transfer`](super::Frame::Transfer) on the peer port, only over a
//! link whose TLS handshake proved the sender a member, exactly like [`Frame::Peer`](super::Frame::Peer).
//!
//! The exchange, for one `transfer` id the asker chose:
//! - asker → member: [`TransferMessage::Request`] with its window in bytes;
//! - member → asker: [`TransferMessage::Chunk`]s numbered 0, 1, 2, … in order, the log's bytes
//!   in sequence; at most `window_bytes` of them sent and not acknowledged;
//! - asker → member: [`TransferMessage::Ack`] once the chunks through `seq` are written: the
//!   window opens by their bytes;
//! - member → asker: [`TransferMessage::End`] after the last chunk, with the totals to check;
//! - either side: [`TransferMessage::Abort`], and the transfer is over. A lost connection is an
//!   abort too: the asker starts again with a new id (the stream is not resumed: the member's
//!   log may have been compacted since).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bytes of log one chunk carries at most. Small enough that a chunk never holds a loop turn of
/// the sender for long, or the asker's memory; large enough that framing costs little.
pub const TRANSFER_CHUNK_BYTES_MAX: u32 = 256 << 10;
/// The largest window an asker may ask for: the most bytes a member keeps in flight (and so
/// buffered, in its socket and output queue) for one transfer.
pub const TRANSFER_WINDOW_BYTES_MAX: u32 = 16 << 20;
/// The smallest window: one full chunk, so that a transfer always makes progress.
pub const TRANSFER_WINDOW_BYTES_MIN: u32 = TRANSFER_CHUNK_BYTES_MAX;

/// Chosen by the asker, unique among its transfers (a random number does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferId(pub u64);

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transfer {:016x}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferMessage {
    /// Asker → member: send me your state; keep at most `window_bytes` unacknowledged.
    Request { transfer: TransferId, window_bytes: u32 },
    /// Member → asker: the next `bytes` of its log (whole records or not: records may span
    /// chunks), number `seq` of the stream, counting from 0.
    Chunk {
        transfer: TransferId,
        seq: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Asker → member: every chunk through `seq` is written; the window opens by their bytes.
    Ack { transfer: TransferId, seq: u64 },
    /// Member → asker: the stream is complete: `chunks` chunks of `bytes` bytes in all.
    End { transfer: TransferId, chunks: u64, bytes: u64 },
    /// Either side: the transfer is over, unfinished, for `reason`.
    Abort { transfer: TransferId, reason: TransferAbort },
}

impl TransferMessage {
    pub fn transfer(&self) -> TransferId {
        match self {
            TransferMessage::Request { transfer, .. }
            | TransferMessage::Chunk { transfer, .. }
            | TransferMessage::Ack { transfer, .. }
            | TransferMessage::End { transfer, .. }
            | TransferMessage::Abort { transfer, .. } => *transfer,
        }
    }

    /// Checks the limits a decoded message must keep: a chunk no larger than
    /// [`TRANSFER_CHUNK_BYTES_MAX`], a window within its bounds.
    pub fn check_limits(&self) -> Result<(), TransferLimitError> {
        match self {
            TransferMessage::Request { window_bytes, .. }
                if !(TRANSFER_WINDOW_BYTES_MIN..=TRANSFER_WINDOW_BYTES_MAX).contains(window_bytes) =>
            {
                Err(TransferLimitError::Window { window_bytes: *window_bytes })
            }
            TransferMessage::Chunk { bytes, .. } if bytes.len() > TRANSFER_CHUNK_BYTES_MAX as usize => {
                Err(TransferLimitError::ChunkTooLarge { bytes: bytes.len() as u64 })
            }
            _ => Ok(()),
        }
    }
}

/// A transfer message outside its limits.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TransferLimitError {
    #[error(
        "a transfer window of {window_bytes} bytes is outside {TRANSFER_WINDOW_BYTES_MIN}..={TRANSFER_WINDOW_BYTES_MAX}"
    )]
    Window { window_bytes: u32 },
    #[error("a transfer chunk of {bytes} bytes exceeds the limit of {TRANSFER_CHUNK_BYTES_MAX}")]
    ChunkTooLarge { bytes: u64 },
}

/// Why a transfer ended unfinished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum TransferAbort {
    /// The member serves as many transfers as it allows at once; ask again later or elsewhere.
    #[error("the member is busy with other state transfers; ask again later or ask another member")]
    Busy,
    /// A message broke the protocol (an unknown id, an ack of a chunk not sent, a limit).
    #[error("protocol violation: {reason}")]
    Protocol { reason: String },
    /// The member could not read its log.
    #[error("the member could not read its log: {reason}")]
    SourceFailed { reason: String },
    /// The asker could not take the stream (its disk, or the stream did not make a log).
    #[error("the asker could not take the state: {reason}")]
    SinkFailed { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk over the limit and windows outside their bounds are refused; those within pass.
    #[test]
    fn limits_refuse_oversized_chunks_and_windows() {
        let transfer = TransferId(7);
        let chunk = |n: usize| TransferMessage::Chunk { transfer, seq: 0, bytes: vec![1; n] };
        assert_eq!(chunk(TRANSFER_CHUNK_BYTES_MAX as usize).check_limits(), Ok(()));
        assert!(chunk(TRANSFER_CHUNK_BYTES_MAX as usize + 1).check_limits().is_err());
        let request = |window_bytes| TransferMessage::Request { transfer, window_bytes };
        assert_eq!(request(TRANSFER_WINDOW_BYTES_MIN).check_limits(), Ok(()));
        assert_eq!(request(TRANSFER_WINDOW_BYTES_MAX).check_limits(), Ok(()));
        assert!(request(TRANSFER_WINDOW_BYTES_MIN - 1).check_limits().is_err());
        assert!(request(TRANSFER_WINDOW_BYTES_MAX + 1).check_limits().is_err());
    }
}
