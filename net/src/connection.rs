//! One non-blocking TCP connection with bounded input and output buffers, in the clear or
//! inside TLS, carrying dkv frames or, on the client port, another protocol's byte stream (told
//! by its first bytes, see [`ClientProtocol`]) for a [`StreamSession`] to read.
//!
//! Reads never block and stop after a per-turn budget so one busy peer cannot starve the
//! others. Writes never block either: what the socket does not take stays in the output
//! buffer, and a connection whose output buffer would exceed its limit is closed (its reader
//! is too slow or gone). Both rules together mean a slow or half-open connection costs at most
//! its buffer limits and never stalls the event loop.

use crate::config::ConnectionLimits;
use crate::session::{ClientProtocol, StreamSession, TLS_HANDSHAKE_BYTE};
use dkv_core::NodeId;
use dkv_core::Time;
use dkv_core::codec::frame::{self, Frame, FrameError};
use mio::net::TcpStream;
use rustls::pki_types::CertificateDer;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Bytes read from one connection per loop turn at most, so one sender cannot starve others.
const READ_BYTES_PER_TURN_MAX: usize = 1 << 20;
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;
/// An empty buffer keeps at most this much capacity; larger ones are freed.
const BUFFER_KEPT_BYTES_MAX: usize = 256 * 1024;
/// A connection told about its error is closed after this long even if the error never
/// left its output buffer.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// What one read turn produced.
#[derive(Default)]
pub(crate) struct ReadResult {
    pub(crate) frames: Vec<Frame>,
    /// The stream is not a valid frame stream from here on; answer with this and close.
    pub(crate) error: Option<FrameError>,
    /// The other side closed its half, or the connection failed.
    pub(crate) closed: bool,
    /// The read budget ran out before the socket was drained: read again next turn.
    pub(crate) more: bool,
    /// Bytes arrived for the connection's [`StreamSession`]: run it on its input.
    pub(crate) stream_input: bool,
}

/// The output buffer would exceed its limit.
#[derive(Debug)]
pub(crate) struct OutputFull;

/// Why a connection has outlived its limits, and how its end is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// An orderly end: the connection has reported its error, or went idle.
    Close(&'static str),
    /// The other side stalled or never spoke: the server drops it, and counts that.
    Drop(&'static str),
}

/// What a connection is for, which decides the frames it may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Accepted on the client port: requests only.
    Client,
    /// Accepted on the peer port: peer frames only, and only once TLS has proved which member
    /// sent them (`None` until then).
    Peer(Option<NodeId>),
    /// This node's own link to a peer, which never carries anything to act on.
    Link,
}

pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) addr: SocketAddr,
    pub(crate) role: Role,
    /// The TLS session the frames travel in, if any: `input` and `output` then hold plaintext.
    tls: Option<Box<rustls::Connection>>,
    /// A client connection may start TLS: until its first byte arrives, the configuration to
    /// serve it with if that byte opens a TLS handshake (plain dkv frames start otherwise).
    tls_offer: Option<Arc<rustls::ServerConfig>>,
    /// The user a client proved it is (an index into the node's users), once it has.
    pub(crate) user: Option<usize>,
    /// The client's certificate, if it showed one in the TLS handshake, has been looked at.
    pub(crate) certificate_checked: bool,
    /// Unique for the life of the process, so a reply routed to a closed connection can never
    /// reach a new connection that reused its slot.
    pub(crate) serial: u64,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes at the front of `output` already written.
    output_sent: usize,
    output_bytes_max: usize,
    frame_bytes_max: u32,
    opened_at: Time,
    /// When the last whole frame arrived.
    last_frame_at: Option<Time>,
    /// When the bytes of the frame now being received started arriving.
    partial_since: Option<Time>,
    /// An error frame was queued: stop reading, close once the output is flushed.
    closing_since: Option<Time>,
    /// Listed for the next flush by [`crate::inbound::InboundConnections`], which lists each
    /// connection at most once.
    pub(crate) flush_listed: bool,
    /// What the connection carries: `None` on the client port until its first bytes tell.
    protocol: Option<ClientProtocol>,
    /// The session reading a byte-stream protocol, once one is told.
    session: Option<Box<dyn StreamSession>>,
    /// The session takes no input for now: the socket is not read until it does.
    input_paused: bool,
    /// The other side closed its sending half (a stream session may still answer).
    input_ended: bool,
    /// A closing TLS connection has said so (after its last plaintext).
    close_notified: bool,
}

impl Connection {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        stream: TcpStream,
        addr: SocketAddr,
        role: Role,
        tls: Option<rustls::Connection>,
        serial: u64,
        now: Time,
        frame_bytes_max: u32,
        output_bytes_max: usize,
    ) -> Connection {
        Connection {
            stream,
            addr,
            role,
            tls: tls.map(Box::new),
            tls_offer: None,
            user: None,
            certificate_checked: false,
            serial,
            input: Vec::new(),
            output: Vec::new(),
            output_sent: 0,
            output_bytes_max,
            frame_bytes_max,
            opened_at: now,
            last_frame_at: None,
            partial_since: None,
            closing_since: None,
            flush_listed: false,
            protocol: if role == Role::Client { None } else { Some(ClientProtocol::Frames) },
            session: None,
            input_paused: false,
            input_ended: false,
            close_notified: false,
        }
    }

    /// Reads what the socket has (up to the per-turn budget) and decodes whole frames.
    /// `scratch` is the event loop's read buffer, shared by every connection so a read neither
    /// allocates nor clears one. Unless `until_would_block` (the poller saw the other side
    /// close, which a short read would not reveal), a short read ends the turn's reading.
    pub(crate) fn read(
        &mut self,
        now: Time,
        scratch: &mut [u8; READ_CHUNK_BYTES],
        until_would_block: bool,
    ) -> ReadResult {
        let mut result = ReadResult::default();
        if self.closing_since.is_some() || self.input_paused || self.input_ended {
            return result;
        }
        if self.tls_offer.is_some() && !self.start_tls_if_asked() {
            return result;
        }
        if self.tls.is_some() {
            self.read_tls(now, scratch, until_would_block, &mut result);
        } else {
            self.read_plain(now, scratch, until_would_block, &mut result);
        }
        if self.session.is_some() {
            // The session decides what a stream that ends means.
            self.input_ended |= result.closed;
        } else if result.closed && !self.input.is_empty() && result.error.is_none() {
            // The other side hung up in the middle of a frame.
            let missing = match frame::payload_len(&self.input, self.frame_bytes_max) {
                Ok(Some(len)) => (frame::HEADER_BYTES + len).saturating_sub(self.input.len()),
                _ => frame::HEADER_BYTES.saturating_sub(self.input.len()),
            };
            result.error = Some(FrameError::Truncated { missing: missing as u64 });
        }
        result
    }

    /// Offers TLS to a client connection: it starts TLS if its first byte opens a handshake.
    pub(crate) fn offer_tls(&mut self, config: Arc<rustls::ServerConfig>) {
        self.tls_offer = Some(config);
    }

    /// Looks at the first byte without taking it: a TLS handshake starts a TLS session, anything
    /// else stays plain. False while no byte has arrived.
    fn start_tls_if_asked(&mut self) -> bool {
        let mut first = [0u8; 1];
        match self.stream.peek(&mut first) {
            Ok(1) if first[0] == TLS_HANDSHAKE_BYTE => {
                let config = self.tls_offer.take().expect("checked by the caller");
                match rustls::ServerConnection::new(config) {
                    Ok(mut session) => {
                        session.set_buffer_limit(Some(crate::security::tls::TLS_BUFFER_BYTES_MAX));
                        self.tls = Some(Box::new(rustls::Connection::Server(session)));
                    }
                    Err(error) => {
                        // Fail closed: a client that asked for TLS never talks in the clear.
                        tracing::warn!(addr = %self.addr, %error, "cannot start TLS; closing the connection");
                        self.closing_since = Some(Time::ZERO);
                        return false;
                    }
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // Plain frames, the other side closed, or an error the read will see.
            _ => {
                self.tls_offer = None;
                true
            }
        }
    }

    /// Whether a TLS handshake has completed on this connection.
    pub(crate) fn tls_established(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| !tls.is_handshaking())
    }

    /// Whether the connection is inside TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads raw frame bytes from the socket.
    fn read_plain(
        &mut self,
        now: Time,
        scratch: &mut [u8; READ_CHUNK_BYTES],
        until_would_block: bool,
        result: &mut ReadResult,
    ) {
        let mut read_this_turn = 0;
        let chunk = scratch;
        loop {
            if read_this_turn >= READ_BYTES_PER_TURN_MAX || self.stream_input_full() {
                result.more = true;
                break;
            }
            match self.stream.read(chunk) {
                Ok(0) => {
                    result.closed = true;
                    break;
                }
                Ok(n) => {
                    read_this_turn += n;
                    if self.input.is_empty() {
                        self.partial_since = Some(now);
                    }
                    self.input.extend_from_slice(&chunk[..n]);
                    if let Err(error) = self.take_input(now, result) {
                        result.error = Some(error);
                        return;
                    }
                    if n < chunk.len() && !until_would_block {
                        // A short read drained the socket's buffer. Bytes arriving from now on
                        // raise a new readiness edge, so the read that would only say
                        // "would block" is skipped: one syscall less per readable event.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    result.closed = true;
                    break;
                }
            }
        }
    }

    /// Reads TLS records from the socket, and the plaintext frame bytes they carry. A TLS
    /// failure (a certificate the cluster's CA did not issue, a forged record) closes the
    /// connection; the alert that says why goes out first.
    /// As for plain reads, a short read ends the turn's reading unless `until_would_block`.
    fn read_tls(
        &mut self,
        now: Time,
        scratch: &mut [u8; READ_CHUNK_BYTES],
        until_would_block: bool,
        result: &mut ReadResult,
    ) {
        let mut read_this_turn = 0;
        loop {
            if read_this_turn >= READ_BYTES_PER_TURN_MAX || self.stream_input_full() {
                result.more = true;
                break;
            }
            let tls = self.tls.as_mut().expect("read_tls is for TLS connections");
            let mut socket = ShortReadProbe { socket: &mut self.stream, short: false };
            let read = tls.read_tls(&mut socket);
            let drained = socket.short && !until_would_block;
            match read {
                Ok(0) => result.closed = true,
                Ok(n) => {
                    read_this_turn += n;
                    if let Err(error) = tls.process_new_packets() {
                        tracing::debug!(addr = %self.addr, %error, "TLS failed; closing the connection");
                        result.closed = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => result.closed = true,
            }
            loop {
                match tls.reader().read(scratch) {
                    Ok(0) => {
                        result.closed = true;
                        break;
                    }
                    Ok(n) => {
                        if self.input.is_empty() {
                            self.partial_since = Some(now);
                        }
                        self.input.extend_from_slice(&scratch[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        result.closed = true;
                        break;
                    }
                }
            }
            if let Err(error) = self.take_input(now, result) {
                result.error = Some(error);
                break;
            }
            if result.closed || drained {
                // Drained: bytes arriving from now on raise a new readiness edge (see
                // `read_plain`), so the read that would only say "would block" is skipped.
                break;
            }
        }
        // Handshake messages, and an alert after a failure, go out now.
        self.flush();
    }

    /// The certificate the other side proved it holds, once the TLS handshake is complete.
    pub(crate) fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        let tls = self.tls.as_ref()?;
        if tls.is_handshaking() {
            return None;
        }
        tls.peer_certificates()?.first()
    }

    /// Hands the input read so far on: frames are decoded here; a stream session's bytes wait
    /// in the input for the event loop to run the session. The first bytes of a client
    /// connection tell which it is.
    fn take_input(&mut self, now: Time, result: &mut ReadResult) -> Result<(), FrameError> {
        if self.protocol.is_none() {
            self.protocol = ClientProtocol::sniff(&self.input);
            match self.protocol {
                None | Some(ClientProtocol::Frames) => {}
                Some(protocol) => self.session = Some(crate::session::open(protocol, self.serial)),
            }
        }
        match self.protocol {
            Some(ClientProtocol::Frames) => self.decode_frames(now, &mut result.frames),
            None => Ok(()),
            Some(_) => {
                result.stream_input = true;
                Ok(())
            }
        }
    }

    /// A stream session's input holds as much as the largest frame: read no more until the
    /// session takes some (a session bounds its requests below that).
    pub(crate) fn stream_input_full(&self) -> bool {
        self.session.is_some() && self.input.len() >= self.frame_bytes_max as usize
    }

    fn decode_frames(&mut self, now: Time, frames: &mut Vec<Frame>) -> Result<(), FrameError> {
        let mut used = 0;
        while let Some((frame, n)) = frame::decode_stream(&self.input[used..], self.frame_bytes_max)? {
            frames.push(frame);
            used += n;
            self.last_frame_at = Some(now);
        }
        self.input.drain(..used);
        if self.input.is_empty() && self.input.capacity() > BUFFER_KEPT_BYTES_MAX {
            // A large frame passed; do not keep its memory for a connection that may idle.
            self.input = Vec::new();
        }
        if used > 0 {
            self.partial_since = if self.input.is_empty() { None } else { Some(now) };
        }
        Ok(())
    }

    /// Queues an encoded frame; [`Connection::flush`] writes it. The event loop flushes every
    /// connection with queued output before each sync and at the end of its turn, so the frames
    /// a turn produces for one connection leave in one write syscall rather than one each.
    pub(crate) fn queue(&mut self, encoded: &[u8]) -> Result<(), OutputFull> {
        let pending = self.output.len() - self.output_sent;
        // An empty buffer always takes one frame, however large: limits on frames are enforced
        // by the codec, this limit is on how far a reader may fall behind.
        if pending > 0 && pending + encoded.len() > self.output_bytes_max {
            return Err(OutputFull);
        }
        self.output.extend_from_slice(encoded);
        Ok(())
    }

    /// Writes buffered output until the socket would block. Errors surface on the next read.
    pub(crate) fn flush(&mut self) {
        if self.tls.is_some() {
            self.flush_tls();
        } else {
            self.flush_plain();
        }
        self.compact_output();
    }

    fn flush_plain(&mut self) {
        while self.output_sent < self.output.len() {
            match self.stream.write(&self.output[self.output_sent..]) {
                Ok(0) => break,
                Ok(n) => self.output_sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    /// Hands plaintext to TLS (which takes at most its buffer limit) and writes its records,
    /// until the socket would block or nothing is left.
    fn flush_tls(&mut self) {
        let tls = self.tls.as_mut().expect("flush_tls is for TLS connections");
        loop {
            if self.output_sent < self.output.len()
                && let Ok(n) = tls.writer().write(&self.output[self.output_sent..])
            {
                self.output_sent += n;
            }
            if self.closing_since.is_some() && self.output_sent == self.output.len() && !self.close_notified {
                // After the last plaintext: the client can tell the end from a cut connection.
                tls.send_close_notify();
                self.close_notified = true;
            }
            let mut wrote = false;
            let mut blocked = false;
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => {
                        blocked = true;
                        break;
                    }
                    Ok(_) => wrote = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        blocked = true;
                        break;
                    }
                }
            }
            if blocked || !wrote || self.output_sent == self.output.len() {
                break;
            }
        }
    }

    /// Frees what was written from the output buffer.
    fn compact_output(&mut self) {
        if self.output_sent == self.output.len() {
            self.output.clear();
            self.output_sent = 0;
            if self.output.capacity() > BUFFER_KEPT_BYTES_MAX {
                self.output = Vec::new();
            }
        } else if self.output_sent > self.output.len() / 2 {
            self.output.drain(..self.output_sent);
            self.output_sent = 0;
        }
    }

    /// Runs `call` on the connection's stream session (`None` if it has none), with its input,
    /// its user and whether it is inside TLS, and keeps the connection's clocks: input the
    /// session took counts as a whole request received, input it left as a partial one.
    pub(crate) fn with_session<R>(
        &mut self,
        now: Time,
        call: impl FnOnce(&mut dyn StreamSession, &mut Vec<u8>, &mut Option<usize>, bool) -> R,
    ) -> Option<R> {
        let session = self.session.as_deref_mut()?;
        let before = self.input.len();
        let tls = self.tls.is_some();
        let result = call(session, &mut self.input, &mut self.user, tls);
        if self.input.len() < before {
            self.last_frame_at = Some(now);
        }
        if self.input.is_empty() {
            self.partial_since = None;
            if self.input.capacity() > BUFFER_KEPT_BYTES_MAX {
                self.input = Vec::new();
            }
        } else if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
        let session = self.session.as_deref().expect("checked above");
        // A busy session is not idle, and a request it holds back is not a stalled one.
        if session.is_busy() {
            self.last_frame_at = Some(now);
            if !self.input.is_empty() {
                self.partial_since = Some(now);
            }
        }
        Some(result)
    }

    /// Stops (or resumes) reading the socket for the stream session. Returns whether reading
    /// resumed, so the caller reads what arrived meanwhile (no new readiness edge reports it).
    pub(crate) fn pause_input(&mut self, paused: bool) -> bool {
        let resumed = self.input_paused && !paused;
        self.input_paused = paused;
        resumed
    }

    /// Whether the other side closed its sending half.
    pub(crate) fn input_ended(&self) -> bool {
        self.input_ended
    }

    /// Whether the connection carries a byte-stream protocol.
    pub(crate) fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// Closes the connection once its output is written (or its grace ran out), reading
    /// nothing more: the end of a stream session.
    pub(crate) fn close_when_written(&mut self, now: Time) {
        // Set before the flush, which ends a TLS session's output with its close.
        self.closing_since = Some(now);
        self.flush();
        self.input = Vec::new();
        self.partial_since = None;
    }

    /// Queues a last error frame; the connection is closed once it is written (or soon anyway).
    pub(crate) fn fail(&mut self, now: Time, error: FrameError) {
        let mut encoded = Vec::new();
        frame::encode(&Frame::Error(error), &mut encoded);
        // If even that does not fit, the connection closes without it.
        if self.queue(&encoded).is_ok() {
            self.flush();
        }
        self.input = Vec::new();
        self.partial_since = None;
        self.closing_since = Some(now);
    }

    /// Whether the connection should end at `now`, and why: it has reported its error and
    /// written it (or had its grace to), or it broke one of the `limits` on how long a client
    /// may take to start, finish a frame, or stay silent.
    pub(crate) fn expiry(&self, now: Time, limits: &ConnectionLimits) -> Option<Expiry> {
        if let Some(since) = self.closing_since {
            return (self.output_pending() == 0 || now.saturating_since(since) >= CLOSING_GRACE)
                .then_some(Expiry::Close("closed after reporting an error"));
        }
        if self.partial_since.is_some_and(|since| now.saturating_since(since) >= limits.partial_frame_timeout) {
            Some(Expiry::Drop("a frame did not complete in time"))
        } else if self.last_frame_at.is_none() && now.saturating_since(self.opened_at) >= limits.first_frame_timeout {
            Some(Expiry::Drop("connected but sent no frame in time"))
        } else if self.last_frame_at.is_some_and(|at| now.saturating_since(at) >= limits.idle_timeout) {
            Some(Expiry::Close("idle"))
        } else {
            None
        }
    }

    /// Bytes waiting to be written: plaintext, and (counted as one) TLS records.
    pub(crate) fn opened_at(&self) -> Time {
        self.opened_at
    }

    /// When the last whole frame arrived, or the connection opened if none has.
    pub(crate) fn last_active(&self) -> Time {
        self.last_frame_at.unwrap_or(self.opened_at)
    }

    pub(crate) fn output_pending(&self) -> usize {
        let tls_pending = self.tls.as_ref().is_some_and(|tls| tls.wants_write());
        self.output.len() - self.output_sent + usize::from(tls_pending)
    }

    /// Tests only: a connection whose stream session is `session` from the start.
    #[cfg(test)]
    pub(crate) fn with_session_for_test(mut self, session: Box<dyn StreamSession>) -> Connection {
        self.session = Some(session);
        self
    }

    /// Bytes held in memory for this connection: its buffers, and what its session holds.
    pub(crate) fn buffered_bytes(&self) -> usize {
        let session = self.session.as_ref().map_or(0, |session| session.buffered_bytes());
        self.input.capacity() + self.output.capacity() + session
    }
}

/// The socket as rustls reads it, noting whether the last read was short: fewer bytes than
/// rustls had room for, so the socket's buffer was drained.
struct ShortReadProbe<'a> {
    socket: &'a mut TcpStream,
    short: bool,
}

impl Read for ShortReadProbe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
}
