//! [`fetch_state`]: the asker's side of a state transfer, over a TLS link to a member's peer
//! port. Blocking; [`stream_into`] is the part that may run on a thread of its own (a server
//! catching up goes on meanwhile), [`Streamed::finish`] the part that replaces the log.

use super::sink::{Installed, TransferSink, TransferSinkError};
use crate::identity::Identity;
use crate::security::credentials::NodeCredentials;
use crate::security::tls::{PeerTls, TlsSetupError};
use dkv_core::NodeId;
use dkv_core::codec::frame::{self, Frame, FrameError};
use dkv_core::codec::transfer::{TRANSFER_CHUNK_BYTES_MAX, TransferAbort, TransferId, TransferMessage};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The largest frame the asker reads: a full chunk and its envelope.
const FRAME_BYTES_MAX: u32 = TRANSFER_CHUNK_BYTES_MAX + 1024;
/// Bytes read from the socket at a time.
const READ_BYTES: usize = 64 << 10;

/// Why a state transfer did not complete. The data dir's log is then the one it had before.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("cannot reach member {member} at {addr}: {source}")]
    Connect { member: NodeId, addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("the link to member {member} failed: {source}; ask again (this member or another)")]
    Link { member: NodeId, source: io::Error },
    #[error("member {member} sent a bad frame: {error}")]
    Frame { member: NodeId, error: FrameError },
    #[error("member {member} broke the transfer protocol: {reason}")]
    Protocol { member: NodeId, reason: String },
    #[error("member {member} ended the transfer: {reason}")]
    Aborted { member: NodeId, reason: TransferAbort },
    #[error(transparent)]
    Sink(#[from] TransferSinkError),
    #[error("the transfer from member {member} took longer than {took_max:?}: abandoned")]
    TookTooLong { member: NodeId, took_max: Duration },
    #[error("the transfer from member {member} was called off (the server is stopping)")]
    CalledOff { member: NodeId },
}

/// A transfer whose stream came whole and was adopted into the staging file; the data dir's
/// log is still the old one until [`Streamed::finish`].
pub struct Streamed {
    sink: TransferSink,
    chunks: u64,
    bytes: u64,
    high_water_bytes: usize,
}

impl Streamed {
    /// Installs the adopted state as the data dir's log (see [`TransferSink::finish`]). The
    /// caller writes the old log no more from here on.
    pub fn finish(self) -> Result<FetchReport, FetchError> {
        let high_water_bytes = self.high_water_bytes.max(self.sink.high_water_bytes());
        let installed = self.sink.finish()?;
        Ok(FetchReport { installed, chunks: self.chunks, bytes: self.bytes, high_water_bytes })
    }
}

/// What a completed transfer did.
#[derive(Clone, Copy, Debug)]
pub struct FetchReport {
    pub installed: Installed,
    pub chunks: u64,
    pub bytes: u64,
    /// The most bytes the asker held at once: its read buffer, and what the sink held.
    pub high_water_bytes: usize,
}

/// Asks `member` (at its peer address `addr`) for its state and installs it as the log of
/// `data_dir`, which must not be in use (its `LOCK` is taken), for the node `credentials` name,
/// whose incarnation was `incarnation_floor` (0 if unknown). `window_bytes`: the most bytes the
/// member may have sent and this side not acknowledged. `timeout`: the longest silence taken
/// from the member.
pub fn fetch_state(
    member: NodeId,
    addr: SocketAddr,
    credentials: &NodeCredentials,
    data_dir: &Path,
    incarnation_floor: u64,
    window_bytes: u32,
    timeout: Duration,
) -> Result<FetchReport, FetchError> {
    let identity = Identity { cluster: credentials.cluster, node: credentials.node };
    let sink = TransferSink::create(data_dir, identity, incarnation_floor)?;
    fetch_into(sink, member, addr, credentials, window_bytes, timeout, None)
}

/// [`fetch_state`] into a sink made by the caller: one that adopts the stream only up to the
/// configuration that adds this node ([`TransferSink::joining`]), or one on a dir whose lock the
/// caller holds. The sink is the data dir's: on any error the dir's log is the one it had.
/// `took_max`: if given, the transfer is abandoned once it has taken longer (checked at every
/// frame, so it may overrun by one `timeout` of silence).
pub fn fetch_into(
    sink: TransferSink,
    member: NodeId,
    addr: SocketAddr,
    credentials: &NodeCredentials,
    window_bytes: u32,
    timeout: Duration,
    took_max: Option<Duration>,
) -> Result<FetchReport, FetchError> {
    stream_into(sink, member, addr, credentials, window_bytes, timeout, took_max, None)?.finish()
}

/// The stream of [`fetch_into`], adopted into the sink's staging file, without installing it:
/// the data dir's log is untouched. `called_off`: once set, the transfer is abandoned at the
/// next frame (or the next `timeout` of silence).
#[allow(clippy::too_many_arguments)]
pub fn stream_into(
    mut sink: TransferSink,
    member: NodeId,
    addr: SocketAddr,
    credentials: &NodeCredentials,
    window_bytes: u32,
    timeout: Duration,
    took_max: Option<Duration>,
    called_off: Option<&AtomicBool>,
) -> Result<Streamed, FetchError> {
    let started = Instant::now();
    let tls = PeerTls::new(credentials)?;
    let connect_error = |source| FetchError::Connect { member, addr, source };
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(connect_error)?;
    tcp.set_read_timeout(Some(timeout)).map_err(connect_error)?;
    tcp.set_write_timeout(Some(timeout)).map_err(connect_error)?;
    tcp.set_nodelay(true).map_err(connect_error)?;
    let mut link = rustls::StreamOwned::new(tls.client_session(member), tcp);
    let link_error = |source| FetchError::Link { member, source };
    let protocol = |reason: String| FetchError::Protocol { member, reason };

    let transfer = TransferId(getrandom::u64().unwrap_or(1));
    let send = |link: &mut rustls::StreamOwned<_, _>, message| {
        let frame = Frame::Transfer { cluster: credentials.cluster, from: credentials.node, message };
        link.write_all(&frame::encode_to_vec(&frame))
    };
    send(&mut link, TransferMessage::Request { transfer, window_bytes }).map_err(link_error)?;

    let mut input: Vec<u8> = Vec::new();
    let mut high_water_bytes = 0;
    let mut next_seq = 0u64;
    let mut received_bytes = 0u64;
    let mut scratch = vec![0u8; READ_BYTES];
    loop {
        let (frame, used) = loop {
            match frame::decode_stream(&input, FRAME_BYTES_MAX) {
                Ok(Some(decoded)) => break decoded,
                Ok(None) => {}
                Err(error) => return Err(FetchError::Frame { member, error }),
            }
            let n = link.read(&mut scratch).map_err(link_error)?;
            if n == 0 {
                return Err(link_error(io::ErrorKind::UnexpectedEof.into()));
            }
            input.extend_from_slice(&scratch[..n]);
            high_water_bytes = high_water_bytes.max(input.len() + sink.high_water_bytes());
        };
        input.drain(..used);
        if called_off.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            let reason = TransferAbort::SinkFailed { reason: "the asker is stopping".to_string() };
            let _ = send(&mut link, TransferMessage::Abort { transfer, reason });
            return Err(FetchError::CalledOff { member });
        }
        if let Some(took_max) = took_max
            && started.elapsed() > took_max
        {
            let reason = TransferAbort::SinkFailed { reason: format!("the asker gave up after {took_max:?}") };
            let _ = send(&mut link, TransferMessage::Abort { transfer, reason });
            return Err(FetchError::TookTooLong { member, took_max });
        }
        let message = match frame {
            Frame::Transfer { cluster, from, message } if cluster == credentials.cluster && from == member => message,
            other => return Err(protocol(format!("expected a transfer frame from member {member}, got {other:?}"))),
        };
        if message.transfer() != transfer {
            return Err(protocol(format!("a message of {}, not of {transfer}", message.transfer())));
        }
        if let Err(error) = message.check_limits() {
            return Err(protocol(error.to_string()));
        }
        match message {
            TransferMessage::Chunk { seq, bytes, .. } => {
                if seq != next_seq {
                    return Err(protocol(format!("chunk {seq} came where chunk {next_seq} was due")));
                }
                if let Err(error) = sink.write_chunk(&bytes) {
                    let reason = TransferAbort::SinkFailed { reason: error.to_string() };
                    let _ = send(&mut link, TransferMessage::Abort { transfer, reason });
                    return Err(error.into());
                }
                next_seq += 1;
                received_bytes += bytes.len() as u64;
                send(&mut link, TransferMessage::Ack { transfer, seq }).map_err(link_error)?;
            }
            TransferMessage::End { chunks, bytes, .. } => {
                if (chunks, bytes) != (next_seq, received_bytes) {
                    return Err(protocol(format!(
                        "the end says {chunks} chunks of {bytes} bytes; {next_seq} chunks of {received_bytes} bytes came"
                    )));
                }
                return Ok(Streamed { sink, chunks, bytes, high_water_bytes });
            }
            TransferMessage::Abort { reason, .. } => return Err(FetchError::Aborted { member, reason }),
            TransferMessage::Request { .. } | TransferMessage::Ack { .. } => {
                return Err(protocol("a member sends chunks, not requests or acks".to_string()));
            }
        }
    }
}
