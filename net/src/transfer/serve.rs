//! The member's side of state transfers, run by the event loop: each transfer is a
//! [`LogSource`] sent over the asker's own connection to the peer port, a few chunks per loop
//! turn and never more unacknowledged bytes than the asker's window.

use super::source::LogSource;
use crate::wal::Wal;
use dkv_core::NodeId;
use dkv_core::codec::transfer::{TRANSFER_CHUNK_BYTES_MAX, TransferAbort, TransferId, TransferMessage};
use std::collections::{BTreeMap, VecDeque};

/// Transfers a member serves at once: each pins a snapshot's segments and costs disk reads;
/// an asker past this is told [`TransferAbort::Busy`].
pub const TRANSFERS_MAX: usize = 2;
/// Chunks one transfer sends per loop turn at most: a turn stays short (1 MiB of reads), and
/// clients' requests are handled between turns.
pub const CHUNKS_PER_TURN_MAX: usize = 4;

/// A message to send on the inbound connection `key` (with `serial`: the same connection).
#[derive(Debug)]
pub struct Outgoing {
    pub key: usize,
    pub serial: u64,
    pub message: TransferMessage,
}

/// The transfers this member is serving, by the inbound connection they came on.
#[derive(Default)]
pub struct Transfers {
    serving: BTreeMap<usize, Serving>,
    /// The most bytes any transfer has had sent and unacknowledged.
    in_flight_bytes_peak: u64,
    /// Transfers finished (every chunk acknowledged, the end sent).
    completed: u64,
}

struct Serving {
    serial: u64,
    from: NodeId,
    transfer: TransferId,
    source: LogSource,
    window_bytes: u64,
    /// The next chunk's number.
    next_seq: u64,
    /// Sizes of the chunks sent and not acknowledged, oldest (number `next_seq - len`) first.
    unacked: VecDeque<u64>,
    in_flight_bytes: u64,
    sent_bytes: u64,
    /// The source is exhausted and `End` was sent.
    ended: bool,
    chunk: Vec<u8>,
}

impl Transfers {
    /// Handles `message` from member `from` on the inbound connection `key`, appending what to
    /// answer to `out`. `wal` is read for a new transfer's source.
    pub fn on_message(
        &mut self,
        key: usize,
        serial: u64,
        from: NodeId,
        message: TransferMessage,
        wal: &Wal,
        out: &mut Vec<Outgoing>,
    ) {
        let transfer = message.transfer();
        let abort = |reason| Outgoing { key, serial, message: TransferMessage::Abort { transfer, reason } };
        if let Err(error) = message.check_limits() {
            self.serving.remove(&key);
            out.push(abort(TransferAbort::Protocol { reason: error.to_string() }));
            return;
        }
        match message {
            TransferMessage::Request { window_bytes, .. } => {
                if self.serving.contains_key(&key) {
                    self.serving.remove(&key);
                    let reason = "a second request on a connection already transferring".to_string();
                    out.push(abort(TransferAbort::Protocol { reason }));
                    return;
                }
                if self.serving.len() >= TRANSFERS_MAX {
                    out.push(abort(TransferAbort::Busy));
                    return;
                }
                match LogSource::open(wal) {
                    Ok(source) => {
                        tracing::info!(peer = %from, %transfer, bytes = source.total_bytes(), "serving a state transfer");
                        let serving = Serving {
                            serial,
                            from,
                            transfer,
                            source,
                            window_bytes: u64::from(window_bytes),
                            next_seq: 0,
                            unacked: VecDeque::new(),
                            in_flight_bytes: 0,
                            sent_bytes: 0,
                            ended: false,
                            chunk: Vec::new(),
                        };
                        self.serving.insert(key, serving);
                    }
                    Err(error) => out.push(abort(TransferAbort::SourceFailed { reason: error.to_string() })),
                }
            }
            TransferMessage::Ack { seq, .. } => {
                let Some(serving) = self.serving.get_mut(&key).filter(|s| s.transfer == transfer && s.from == from)
                else {
                    return; // A transfer that ended already: nothing to do.
                };
                let first_unacked = serving.next_seq - serving.unacked.len() as u64;
                if seq >= serving.next_seq {
                    self.serving.remove(&key);
                    let reason = format!("acknowledged chunk {seq}, which was not sent");
                    out.push(abort(TransferAbort::Protocol { reason }));
                    return;
                }
                for _ in first_unacked..=seq {
                    let Some(bytes) = serving.unacked.pop_front() else { break };
                    serving.in_flight_bytes -= bytes;
                }
                if serving.ended && serving.unacked.is_empty() {
                    tracing::info!(peer = %from, %transfer, bytes = serving.sent_bytes, "state transfer served");
                    self.serving.remove(&key);
                    self.completed += 1;
                }
            }
            TransferMessage::Abort { reason, .. } => {
                if self.serving.get(&key).is_some_and(|s| s.transfer == transfer) {
                    tracing::info!(peer = %from, %transfer, %reason, "the asker abandoned a state transfer");
                    self.serving.remove(&key);
                }
            }
            TransferMessage::Chunk { .. } | TransferMessage::End { .. } => {
                self.serving.remove(&key);
                let reason = "a member sends chunks; it does not take them".to_string();
                out.push(abort(TransferAbort::Protocol { reason }));
            }
        }
    }

    /// Sends what the windows allow, at most [`CHUNKS_PER_TURN_MAX`] chunks per transfer.
    /// `open(key, serial)` says whether the connection is still there.
    pub fn pump(&mut self, open: impl Fn(usize, u64) -> bool, out: &mut Vec<Outgoing>) {
        self.serving.retain(|&key, s| open(key, s.serial));
        let mut failed = Vec::new();
        for (&key, s) in &mut self.serving {
            for _ in 0..CHUNKS_PER_TURN_MAX {
                if s.ended || s.in_flight_bytes + u64::from(TRANSFER_CHUNK_BYTES_MAX) > s.window_bytes {
                    break;
                }
                if let Err(error) = s.source.next_chunk(TRANSFER_CHUNK_BYTES_MAX as usize, &mut s.chunk) {
                    let reason = TransferAbort::SourceFailed { reason: error.to_string() };
                    let message = TransferMessage::Abort { transfer: s.transfer, reason };
                    out.push(Outgoing { key, serial: s.serial, message });
                    failed.push(key);
                    break;
                }
                if s.chunk.is_empty() {
                    let message =
                        TransferMessage::End { transfer: s.transfer, chunks: s.next_seq, bytes: s.sent_bytes };
                    out.push(Outgoing { key, serial: s.serial, message });
                    s.ended = true;
                    break;
                }
                let bytes = s.chunk.len() as u64;
                let message = TransferMessage::Chunk {
                    transfer: s.transfer,
                    seq: s.next_seq,
                    bytes: std::mem::take(&mut s.chunk),
                };
                out.push(Outgoing { key, serial: s.serial, message });
                s.next_seq += 1;
                s.unacked.push_back(bytes);
                s.in_flight_bytes += bytes;
                s.sent_bytes += bytes;
                self.in_flight_bytes_peak = self.in_flight_bytes_peak.max(s.in_flight_bytes);
            }
        }
        for key in failed {
            self.serving.remove(&key);
        }
    }

    /// Whether a transfer could send now: the loop should not wait for events.
    pub fn has_work(&self) -> bool {
        self.serving
            .values()
            .any(|s| !s.ended && s.in_flight_bytes + u64::from(TRANSFER_CHUNK_BYTES_MAX) <= s.window_bytes)
    }

    pub fn in_flight_bytes_peak(&self) -> u64 {
        self.in_flight_bytes_peak
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::Record;
    use dkv_core::codec::transfer::TRANSFER_WINDOW_BYTES_MIN;

    const ASKER: NodeId = NodeId(1);

    /// A log of `records` boot records (about 10 bytes each) in `dir`.
    fn wal_of(dir: &std::path::Path, records: u64) -> Wal {
        let (mut wal, _) = Wal::open(dir).unwrap();
        for incarnation in 0..records {
            wal.append(&Record::BootTracked { incarnation }).unwrap();
        }
        wal.sync().unwrap();
        wal
    }

    fn request(transfer: u64, window_bytes: u32) -> TransferMessage {
        TransferMessage::Request { transfer: TransferId(transfer), window_bytes }
    }

    fn chunks(out: &[Outgoing]) -> Vec<(u64, usize)> {
        out.iter()
            .filter_map(|o| match &o.message {
                TransferMessage::Chunk { seq, bytes, .. } => Some((*seq, bytes.len())),
                _ => None,
            })
            .collect()
    }

    /// Chunks go out only while the window has room; each acknowledgement opens it by the
    /// chunks it covers; the end follows the last chunk, and the transfer is done once every
    /// chunk is acknowledged.
    #[test]
    fn chunks_are_sent_within_the_window_and_end_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_of(dir.path(), 200_000); // about 2 MiB: 8 full chunks and a part
        let total = LogSource::open(&wal).unwrap().total_bytes();
        let mut transfers = Transfers::default();
        let mut out = Vec::new();
        transfers.on_message(3, 9, ASKER, request(1, 2 * TRANSFER_WINDOW_BYTES_MIN), &wal, &mut out);
        assert!(out.is_empty());
        let mut sent = 0u64;
        let mut acked = Vec::new();
        for _ in 0..100 {
            transfers.pump(|key, serial| (key, serial) == (3, 9), &mut out);
            for (seq, bytes) in chunks(&out) {
                sent += bytes as u64;
                acked.push(seq);
            }
            let ended = out.iter().any(|o| matches!(o.message, TransferMessage::End { .. }));
            out.clear();
            assert!(transfers.in_flight_bytes_peak() <= u64::from(2 * TRANSFER_WINDOW_BYTES_MIN));
            if ended {
                break;
            }
            assert!(!transfers.has_work(), "a full window waits for acknowledgements");
            let seq = acked.last().copied().unwrap();
            transfers.on_message(3, 9, ASKER, TransferMessage::Ack { transfer: TransferId(1), seq }, &wal, &mut out);
        }
        assert_eq!(sent, total);
        assert_eq!(transfers.completed(), 0, "not done before the last chunks are acknowledged");
        let seq = *acked.last().unwrap();
        transfers.on_message(3, 9, ASKER, TransferMessage::Ack { transfer: TransferId(1), seq }, &wal, &mut out);
        assert_eq!(transfers.completed(), 1);
    }

    /// However large the window, a loop turn sends at most [`CHUNKS_PER_TURN_MAX`] chunks of a
    /// transfer, and the loop is told there is more to send: the rest goes in later turns, with
    /// clients' requests handled between them.
    #[test]
    fn a_turn_sends_a_few_chunks_and_leaves_the_rest_to_later_turns() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_of(dir.path(), 200_000);
        let mut transfers = Transfers::default();
        let mut out = Vec::new();
        let window = dkv_core::codec::transfer::TRANSFER_WINDOW_BYTES_MAX;
        transfers.on_message(3, 9, ASKER, request(1, window), &wal, &mut out);
        transfers.pump(|_, _| true, &mut out);
        assert_eq!(chunks(&out).len(), CHUNKS_PER_TURN_MAX);
        assert!(transfers.has_work(), "more to send next turn, without waiting for an event");
    }

    /// Past [`TRANSFERS_MAX`] an asker is told busy; an acknowledgement of a chunk never sent,
    /// a chunk sent to a member and a window out of bounds each end the transfer with a protocol
    /// abort; a closed connection's transfer is dropped.
    #[test]
    fn misbehaving_askers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_of(dir.path(), 10);
        let mut transfers = Transfers::default();
        let mut out = Vec::new();
        let window = TRANSFER_WINDOW_BYTES_MIN;
        for key in 0..TRANSFERS_MAX {
            transfers.on_message(key, 1, ASKER, request(key as u64, window), &wal, &mut out);
        }
        assert!(out.is_empty());
        transfers.on_message(99, 1, ASKER, request(99, window), &wal, &mut out);
        assert!(matches!(out.pop().unwrap().message, TransferMessage::Abort { reason: TransferAbort::Busy, .. }));

        let ack = TransferMessage::Ack { transfer: TransferId(0), seq: 5 };
        transfers.on_message(0, 1, ASKER, ack, &wal, &mut out);
        assert!(matches!(
            out.pop().unwrap().message,
            TransferMessage::Abort { reason: TransferAbort::Protocol { .. }, .. }
        ));

        let chunk = TransferMessage::Chunk { transfer: TransferId(1), seq: 0, bytes: vec![1] };
        transfers.on_message(1, 1, ASKER, chunk, &wal, &mut out);
        assert!(matches!(
            out.pop().unwrap().message,
            TransferMessage::Abort { reason: TransferAbort::Protocol { .. }, .. }
        ));

        transfers.on_message(5, 1, ASKER, request(5, window - 1), &wal, &mut out);
        assert!(matches!(
            out.pop().unwrap().message,
            TransferMessage::Abort { reason: TransferAbort::Protocol { .. }, .. }
        ));

        transfers.on_message(6, 1, ASKER, request(6, window), &wal, &mut out);
        assert!(out.is_empty(), "room again once the misbehaving transfers ended");
        transfers.pump(|_, _| false, &mut out);
        assert!(out.is_empty() && !transfers.has_work(), "a closed connection's transfer is dropped");
    }
}
