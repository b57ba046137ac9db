//! The client library: a blocking [`Client`] that talks to any node of a cluster over TCP or
//! UDP, retries safely and fails over.
//!
//! Every request carries this client's random 64-bit id and the next sequence number. A client
//! has one request outstanding at a time, and every retry of it — a UDP retransmission, a retry
//! after `TryAgain`, or the same request sent to another node after a failure — reuses the same
//! request id, so the cluster applies it at most once and tells every retry the same outcome.
//!
//! A failed request tells whether it may have taken effect
//! ([`ClientError::may_have_been_applied`]): [`ClientError::Unreachable`] means nothing of it
//! ever left the client (every connection was refused, or over UDP the refusal was provably of
//! its only datagram), so it was not applied; after any try that may have reached a node, the
//! outcome is open ([`ClientError::Lost`], [`ClientError::Timeout`], ...).
//!
//! With [`ClientConfig::tls`] the client talks TLS to the nodes over TCP, checking that each is
//! a member of the cluster whose CA it holds. With [`ClientConfig::user`] it authenticates: over
//! TCP it sends the user's token once per connection, inside TLS only; over UDP it signs every
//! datagram it sends (each retransmission afresh, since a node refuses a signature twice).

use crate::config::DATAGRAM_BYTES_MAX;
use crate::security::credentials::ClientTrust;
use crate::security::tls::client_session;
use crate::security::users::{ClientUser, sign};
use dkv_core::codec::frame::{self, Frame, FrameError};
use dkv_core::completions::CLIENT_RETRY_WINDOW_MAX;
use dkv_core::{
    ClientId, Condition, Key, Limits, NotServingReason, Operation, Outcome, Request, RequestId, TryAgainReason, TxnOp,
    Value, prefix_end,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// After every node answered "not serving" in a row, the client waits this long before asking
/// them again: about the time a node takes to get a lease once it hears from a majority.
const NOT_SERVING_PAUSE: Duration = Duration::from_millis(100);

/// Once every node refused the connection in a row, the client tries them again for this long
/// (within the request timeout) before it says it cannot reach them: a node restarting listens
/// again well within it (test.sh sees a restarted node serve within 0.3 s), and a cluster that
/// is not running is told at once, not at the timeout.
const REFUSED_GRACE: Duration = Duration::from_secs(1);
/// The pauses between those rounds, doubling from the first to the last.
const REFUSED_PAUSE_MIN: Duration = Duration::from_millis(20);
const REFUSED_PAUSE_MAX: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTransport {
    Tcp,
    Udp,
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Nodes to talk to, the preferred one first; the others are tried when it fails.
    pub nodes: Vec<SocketAddr>,
    pub transport: ClientTransport,
    /// Total time for one request, every retry and fail-over included; at most
    /// [`CLIENT_RETRY_WINDOW_MAX`] (a longer one is cut to it), so that no retry reaches a
    /// node after the request's completion record may have been evicted there.
    pub request_timeout: Duration,
    /// How long one node gets to answer before the client tries the next.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// First UDP retransmission; the interval doubles up to `udp_retransmit_max`.
    pub udp_retransmit_min: Duration,
    pub udp_retransmit_max: Duration,
    /// Talk TLS over TCP, trusting the cluster this names (`DIR/client` from `dkv-server init`).
    pub tls: Option<Arc<ClientTrust>>,
    /// Authenticate as this user.
    pub user: Option<Arc<ClientUser>>,
}

impl ClientConfig {
    pub fn new(nodes: Vec<SocketAddr>, transport: ClientTransport) -> ClientConfig {
        ClientConfig {
            nodes,
            transport,
            request_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            udp_retransmit_min: Duration::from_millis(100),
            udp_retransmit_max: Duration::from_secs(1),
            tls: None,
            user: None,
        }
    }
}

/// Why a request has no outcome. Each message says what to do.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no node address given; name at least one node (host and port) of the cluster")]
    NoNodes,
    /// Nothing of the request left this client: it was not applied.
    #[error("cannot reach {addrs} — is dkv-server running? The request was not sent, so it was not applied")]
    Unreachable { addrs: String },
    /// Every node refused the connection at the end, but an earlier try had sent the request.
    #[error(
        "lost contact with {addrs} after the request was sent; {}. Check that the nodes are running",
        effect(*.read)
    )]
    Lost { addrs: String, read: bool },
    #[error(
        "no answer from {addrs} within {timeout:?}; {}. Check that the nodes are running and reachable",
        effect(*.read)
    )]
    Timeout { addrs: String, timeout: Duration, read: bool },
    #[error("no outcome within {timeout:?}: {reason}; {}, and retrying is safe", effect(*.read))]
    NoOutcome { reason: TryAgainReason, timeout: Duration, read: bool },
    /// Every node asked answered "not serving" (no read lease, not a member, catching up) until
    /// the request timeout. That attempt applied nothing; an earlier one may have.
    #[error(
        "no node would serve the request within {timeout:?}: the last said {reason}; {}, and retrying is safe. Check that a majority of the nodes are running and reachable",
        effect(*.read)
    )]
    NotServing { reason: NotServingReason, timeout: Duration, read: bool },
    #[error("the request is {len} bytes, more than one UDP datagram holds ({max} bytes); send it over TCP")]
    TooLargeForDatagram { len: usize, max: usize },
    /// A node refused the request's bytes (a frame it cannot take): that attempt applied
    /// nothing, but an earlier one that reached a node (`sent_before`) may have.
    #[error("{addr} refused the request: {error}{}", applied_text(*.sent_before))]
    Refused { addr: SocketAddr, error: FrameError, sent_before: bool },
    /// The node ran the request, but its reply is too large for one datagram: a read's value,
    /// or a write's outcome (the write ran).
    #[error(
        "{addr}'s reply is {len} bytes, more than one UDP datagram holds ({max}); {}. Ask over TCP (-t)",
        if *.read { "a read changes nothing" } else { "the write may or may not have been applied" }
    )]
    ReplyTooLargeForDatagram { addr: SocketAddr, len: u64, max: u32, read: bool },
    #[error("cannot open a socket: {0}")]
    Socket(io::Error),
    #[error("a user's token is sent over TCP only inside TLS; give the cluster's client folder for TLS too")]
    TokenWithoutTls,
    /// The TLS handshake failed, so that attempt sent nothing; an earlier one that reached a
    /// node (`sent_before`) may have been applied.
    #[error(
        "TLS with {addr} failed: {reason}; check that the client folder given for TLS is this cluster's{}",
        applied_text(*.sent_before)
    )]
    Tls { addr: SocketAddr, reason: String, sent_before: bool },
}

/// What a request without an outcome may have done: a read (get or scan) changes nothing.
fn effect(read: bool) -> &'static str {
    if read { "a read changes nothing" } else { "the request may or may not have been applied" }
}

/// What an attempt that was refused means for the request, if an earlier attempt had sent
/// it (otherwise the refusal says it all: nothing was applied).
fn applied_text(sent_before: bool) -> &'static str {
    if sent_before {
        "; an earlier attempt had sent the request, so it may or may not have been applied (retrying it is safe)"
    } else {
        ""
    }
}

impl ClientError {
    /// Whether the request may have taken effect. False only when it certainly did not: it was
    /// never sent ([`ClientError::was_sent`]), or it was a read. Every other error leaves the
    /// outcome open, and a retry (same request id) is safe.
    pub fn may_have_been_applied(&self) -> bool {
        let read = match self {
            ClientError::Lost { read, .. }
            | ClientError::Timeout { read, .. }
            | ClientError::NoOutcome { read, .. }
            | ClientError::NotServing { read, .. }
            | ClientError::ReplyTooLargeForDatagram { read, .. } => *read,
            _ => false,
        };
        self.was_sent() && !read
    }

    /// Whether any of the request may have reached a node. False only when nothing of it left
    /// this client, or it was refused before any node saw it.
    pub fn was_sent(&self) -> bool {
        match self {
            ClientError::NoNodes
            | ClientError::Unreachable { .. }
            | ClientError::TooLargeForDatagram { .. }
            | ClientError::Socket(_)
            | ClientError::TokenWithoutTls => false,
            ClientError::Lost { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoOutcome { .. }
            | ClientError::NotServing { .. }
            | ClientError::ReplyTooLargeForDatagram { .. } => true,
            ClientError::Refused { sent_before, .. } | ClientError::Tls { sent_before, .. } => *sent_before,
        }
    }
}

/// How one try at one node ended, short of a reply.
enum AttemptError {
    /// Connection refused or reset before anything could be sent: nobody listens there.
    Unreachable,
    /// Sent (perhaps), but no reply in time, or the connection broke while waiting.
    NoReply,
    /// The TLS handshake failed: the node is not a member of the cluster this client trusts,
    /// or refused this client's certificate. Retrying will not help.
    Tls(String),
}

/// The TLS failure inside an I/O error from a TLS stream, if that is what it is (rustls
/// reports a failed handshake as `InvalidData` wrapping its own error).
fn tls_failure(error: &io::Error) -> Option<String> {
    let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(inner.to_string())
}

/// What a failed write or read on a TCP link means for the attempt.
fn link_failure(error: &io::Error) -> AttemptError {
    tls_failure(error).map_or(AttemptError::NoReply, AttemptError::Tls)
}

/// Big enough for any datagram, and for TCP a good read size.
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

pub struct Client {
    config: ClientConfig,
    id: ClientId,
    next_seq: u64,
    /// Index into `config.nodes` of the node currently used.
    node: usize,
    tcp: Option<TcpLink>,
    udp: Option<UdpLink>,
    /// Replies longer than this are refused: the largest any server limits allow.
    frame_bytes_max: u32,
    /// Where socket reads land, kept across requests so a request allocates no read buffer.
    receive_buffer: Vec<u8>,
    /// The size UDP reads are padded to: a node answers an unauthenticated datagram with at
    /// most 3 times its bytes, so once a value came back too large for its read, later reads
    /// are padded from the start rather than asked twice.
    udp_read_bytes: usize,
    /// Some try of the current request wrote it to a socket: a node may have received it, so
    /// failing now leaves its outcome open.
    request_sent: bool,
}

/// A UDP socket connected to one node, and how many datagrams it has sent: a refusal
/// (ICMP port unreachable) on a socket that sent one datagram can only be that datagram's,
/// which therefore reached no server.
struct UdpLink {
    socket: UdpSocket,
    datagrams_sent: u64,
}

struct TcpLink {
    addr: SocketAddr,
    stream: Stream,
    input: Vec<u8>,
    /// What the socket's read and write timeouts are set to (see [`TcpLink::bound_until`]).
    timeouts: Duration,
}

impl TcpLink {
    /// Makes every blocking read and write on the socket end by `deadline`, at most. Setting a
    /// timeout costs a syscall each way, so one already set that is no longer than the time left
    /// is kept, and a new one is half the time left (all of it in the last few milliseconds):
    /// the requests that follow, each with a later deadline, keep it too. A read may so time out
    /// before the deadline; the reader then reads again while time is left.
    fn bound_until(&mut self, deadline: Instant) {
        let left = remaining(deadline);
        if self.timeouts <= left {
            return;
        }
        let timeouts = if left > TIMEOUT_HALVING_MIN { left / 2 } else { left.max(Duration::from_millis(1)) };
        let _ = self.stream.socket().set_read_timeout(Some(timeouts));
        let _ = self.stream.socket().set_write_timeout(Some(timeouts));
        self.timeouts = timeouts;
    }
}

/// Below this much time left, a socket timeout is set to all of it rather than half.
const TIMEOUT_HALVING_MIN: Duration = Duration::from_millis(4);

/// A TCP connection to a node, in the clear or inside TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(stream) => stream,
            Stream::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buffer),
            Stream::Tls(tls) => tls.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.write(bytes),
            Stream::Tls(tls) => tls.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        if config.nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        if config.user.is_some() && config.tls.is_none() && config.transport == ClientTransport::Tcp {
            return Err(ClientError::TokenWithoutTls);
        }
        let id = ClientId(getrandom::u64().map_err(|e| ClientError::Socket(io::Error::other(e)))?);
        Ok(Client {
            config,
            id,
            next_seq: 0,
            node: 0,
            tcp: None,
            udp: None,
            frame_bytes_max: Limits::default().frame_bytes_max(),
            receive_buffer: vec![0u8; RECEIVE_BUFFER_BYTES],
            udp_read_bytes: 0,
            request_sent: false,
        })
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    pub fn get(&mut self, key: impl Into<Key>) -> Result<Outcome, ClientError> {
        self.execute(Operation::Get { key: key.into() })
    }

    pub fn put(&mut self, key: impl Into<Key>, value: impl Into<Value>) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::Put { key: key.into(), value: value.into() }])
    }

    pub fn update(&mut self, key: impl Into<Key>, value: impl Into<Value>) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::Update { key: key.into(), value: value.into() }])
    }

    pub fn delete(&mut self, key: impl Into<Key>) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::Delete { key: key.into() }])
    }

    /// An ordered batch of ops, all or nothing: writes, reads under the transaction's locks
    /// ([`TxnOp::Read`]), conditions ([`TxnOp::Require`]) and read-modify-writes.
    /// `Committed` holds one result per op; a failed op or condition applies none of them.
    pub fn txn(&mut self, ops: Vec<TxnOp>) -> Result<Outcome, ClientError> {
        self.execute(Operation::Txn { ops })
    }

    /// Compare-and-set: puts `new` if `key`'s value is `expected` now; otherwise nothing is
    /// applied and the outcome is `Failed` with `FailReason::ConditionFailed`.
    pub fn cas(
        &mut self,
        key: impl Into<Key>,
        expected: impl Into<Value>,
        new: impl Into<Value>,
    ) -> Result<Outcome, ClientError> {
        self.put_if(key.into(), Condition::ValueEquals(expected.into()), new.into())
    }

    /// Puts `new` if `key`'s version (writes since it was created; 0: absent) is `version`.
    pub fn cas_version(
        &mut self,
        key: impl Into<Key>,
        version: u64,
        new: impl Into<Value>,
    ) -> Result<Outcome, ClientError> {
        self.put_if(key.into(), Condition::VersionEquals(version), new.into())
    }

    fn put_if(&mut self, key: Key, condition: Condition, value: Value) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::Require { key: key.clone(), condition }, TxnOp::Put { key, value }])
    }

    /// Adds `by` to `key`'s value, a decimal integer (absent counts as 0); the result is the
    /// new value. A value that is not an integer, or an overflow, fails and changes nothing.
    pub fn incr(&mut self, key: impl Into<Key>, by: i64) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::Increment { key: key.into(), by }])
    }

    /// Appends to `key`'s value (absent counts as empty); the result is the new length.
    pub fn append(&mut self, key: impl Into<Key>, value: impl Into<Value>) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::Append { key: key.into(), value: value.into() }])
    }

    /// Puts `value`; the result is the value before (none if the key was absent).
    pub fn get_set(&mut self, key: impl Into<Key>, value: impl Into<Value>) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::GetSet { key: key.into(), value: value.into() }])
    }

    /// Removes `key` if it is there; the result is the value before (none if it was absent).
    pub fn get_delete(&mut self, key: impl Into<Key>) -> Result<Outcome, ClientError> {
        self.txn(vec![TxnOp::GetDelete { key: key.into() }])
    }

    /// One page of the keys in `[start, end)` (`end` none: to the last key), in key order, at
    /// most `limit` of them: `Outcome::Scanned`, whose `next` starts the next page (none: this
    /// was the last). Each page is linearizable; the pages together are not one snapshot.
    pub fn scan(
        &mut self,
        start: impl Into<Key>,
        end: Option<Key>,
        limit: u32,
        keys_only: bool,
    ) -> Result<Outcome, ClientError> {
        self.execute(Operation::Scan { start: start.into(), end, limit, keys_only })
    }

    /// One page of the keys that start with `prefix` (see [`Client::scan`]); continue from
    /// `next` with [`Client::scan`] and the end [`prefix_end`] gives.
    pub fn scan_prefix(&mut self, prefix: impl Into<Key>, limit: u32, keys_only: bool) -> Result<Outcome, ClientError> {
        let prefix = prefix.into();
        let end = prefix_end(&prefix);
        self.scan(prefix, end, limit, keys_only)
    }

    /// Sends one request and returns its definite outcome (never `TryAgain`: those are
    /// retried until the request timeout).
    pub fn execute(&mut self, operation: Operation) -> Result<Outcome, ClientError> {
        self.next_seq += 1;
        let id = RequestId { client: self.id, seq: self.next_seq };
        let read = matches!(operation, Operation::Get { .. } | Operation::Scan { .. });
        let request = Request { id, operation };
        let udp = self.config.transport == ClientTransport::Udp;
        let mut pad_to = if read && udp { self.udp_read_bytes } else { 0 };
        let encoded_len = self.encode(&request, pad_to).len();
        if udp && encoded_len > DATAGRAM_BYTES_MAX {
            return Err(ClientError::TooLargeForDatagram { len: encoded_len, max: DATAGRAM_BYTES_MAX });
        }
        self.request_sent = false;
        let started = Instant::now();
        let timeout = self.config.request_timeout.min(CLIENT_RETRY_WINDOW_MAX);
        let deadline = started + timeout;
        let node_count = self.config.nodes.len();
        let mut unreachable_in_a_row = 0;
        let mut every_node_refused_since: Option<Instant> = None;
        let mut refused_pause = REFUSED_PAUSE_MIN;
        let mut last_try_again: Option<TryAgainReason> = None;
        let mut last_not_serving: Option<NotServingReason> = None;
        let mut not_serving_in_a_row = 0;
        let mut try_again_backoff = Duration::from_millis(10);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(match (last_try_again, last_not_serving) {
                    (_, Some(reason)) => ClientError::NotServing { reason, timeout, read },
                    (Some(reason), None) => ClientError::NoOutcome { reason, timeout, read },
                    // Every try timed out connecting: nothing was sent.
                    (None, None) if !self.request_sent => ClientError::Unreachable { addrs: self.addrs() },
                    (None, None) => ClientError::Timeout { addrs: self.addrs(), timeout, read },
                });
            }
            let addr = self.config.nodes[self.node];
            // Whether an attempt before this one may have reached a node.
            let sent_before = self.request_sent;
            let attempt_deadline = deadline.min(now + self.config.attempt_timeout);
            let result = match self.config.transport {
                ClientTransport::Tcp => {
                    let encoded = self.encode(&request, 0);
                    self.attempt_tcp(addr, &encoded, id, attempt_deadline)
                }
                ClientTransport::Udp => self.attempt_udp(addr, &request, pad_to, attempt_deadline),
            };
            match result {
                Ok(Frame::Reply(reply)) => {
                    unreachable_in_a_row = 0;
                    if !matches!(reply.outcome, Outcome::NotServing(_)) {
                        not_serving_in_a_row = 0;
                    }
                    match reply.outcome {
                        // "Ask another node": fail over at once, same request id. Once every
                        // node said so in a row, pause before the next round (a minority cut
                        // off, or a cluster just starting, heals in about a lease).
                        Outcome::NotServing(reason) => {
                            tracing::debug!(%addr, request = %id, %reason, "not serving; failing over");
                            last_not_serving = Some(reason);
                            last_try_again = None;
                            not_serving_in_a_row += 1;
                            self.next_node();
                            if not_serving_in_a_row >= node_count {
                                not_serving_in_a_row = 0;
                                let pause = NOT_SERVING_PAUSE.min(deadline.saturating_duration_since(Instant::now()));
                                std::thread::sleep(pause);
                            }
                        }
                        // A differently configured cluster does not heal by waiting: say so now.
                        Outcome::TryAgain(reason @ TryAgainReason::ConfigMismatch { .. }) => {
                            return Err(ClientError::NoOutcome { reason, timeout: started.elapsed(), read });
                        }
                        Outcome::TryAgain(reason) => {
                            tracing::debug!(%addr, request = %id, %reason, "try again");
                            // A node starting up or running this request elsewhere: another
                            // node may answer; otherwise the same node, after a pause.
                            if matches!(reason, TryAgainReason::Starting | TryAgainReason::InProgress) {
                                self.next_node();
                            }
                            last_try_again = Some(reason);
                            last_not_serving = None;
                            // Jittered, so clients that collided once do not collide again in
                            // step: the pause is random in [backoff / 2, backoff].
                            let random = getrandom::u64().unwrap_or(0) >> 11;
                            let pause = try_again_backoff.mul_f64(0.5 + 0.5 * random as f64 / (1u64 << 53) as f64);
                            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                            try_again_backoff = (try_again_backoff * 2).min(Duration::from_millis(500));
                        }
                        outcome => return Ok(outcome),
                    }
                }
                Ok(Frame::Error(FrameError::ReplyTooLarge { len, request: sent }))
                    if udp
                        && (len as usize).div_ceil(3) > pad_to.max(sent as usize)
                        && (len as usize).div_ceil(3) <= DATAGRAM_BYTES_MAX =>
                {
                    // A node answers an unauthenticated datagram with at most 3 times its bytes
                    // (its source could be forged): pad the request with zeros so the reply may
                    // come, and ask again at once. Same request id: never applied twice.
                    tracing::debug!(%addr, request = %id, reply = len, sent, "padding the request");
                    pad_to = (len as usize).div_ceil(3);
                    if read {
                        self.udp_read_bytes = self.udp_read_bytes.max(pad_to);
                    }
                }
                // Only a reply is too large for a datagram here: a request that is was never sent.
                Ok(Frame::Error(FrameError::TooLargeForDatagram { len, max })) => {
                    return Err(ClientError::ReplyTooLargeForDatagram { addr, len, max, read });
                }
                Ok(Frame::Error(error)) => return Err(ClientError::Refused { addr, error, sent_before }),
                Ok(_) => {
                    // Not something a server sends to a client; treat the node as faulty.
                    self.drop_connections();
                    self.next_node();
                }
                Err(AttemptError::Unreachable) => {
                    tracing::debug!(%addr, request = %id, "node unreachable");
                    unreachable_in_a_row += 1;
                    if unreachable_in_a_row >= node_count {
                        // Every node refused: down, or restarting. Tried again for a moment (a
                        // node restarting listens again within it), then given up, so that a
                        // cluster that is not running says so at once, not at the timeout.
                        let since = *every_node_refused_since.get_or_insert(now);
                        let left = (since + REFUSED_GRACE).min(deadline).saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            let addrs = self.addrs();
                            return Err(if self.request_sent {
                                ClientError::Lost { addrs, read }
                            } else {
                                ClientError::Unreachable { addrs }
                            });
                        }
                        std::thread::sleep(refused_pause.min(left));
                        refused_pause = (refused_pause * 2).min(REFUSED_PAUSE_MAX);
                        unreachable_in_a_row = 0;
                    }
                    self.next_node();
                }
                Err(AttemptError::Tls(reason)) => return Err(ClientError::Tls { addr, reason, sent_before }),
                Err(AttemptError::NoReply) => {
                    tracing::debug!(%addr, request = %id, "no reply; failing over");
                    unreachable_in_a_row = 0;
                    self.drop_connections();
                    self.next_node();
                }
            }
        }
    }

    /// The bytes that carry `request`: a signed request over UDP when this client is a user
    /// (signed now, so every retransmission carries a fresh signature), else the plain request;
    /// padded with zeros to `pad_to` bytes.
    fn encode(&self, request: &Request, pad_to: usize) -> Vec<u8> {
        let frame = match (&self.config.user, self.config.transport) {
            (Some(user), ClientTransport::Udp) => {
                let sent_at_ms = crate::clock::unix_micros() / 1000;
                let mac = sign(&user.token, &user.name, sent_at_ms, request);
                Frame::SignedRequest { user: user.name.clone(), sent_at_ms, request: request.clone(), mac }
            }
            _ => Frame::Request(request.clone()),
        };
        let mut bytes = frame::encode_to_vec(&frame);
        if bytes.len() < pad_to {
            bytes.resize(pad_to, 0);
        }
        bytes
    }

    fn addrs(&self) -> String {
        self.config.nodes.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
    }

    fn next_node(&mut self) {
        self.node = (self.node + 1) % self.config.nodes.len();
    }

    fn drop_connections(&mut self) {
        self.tcp = None;
        self.udp = None;
    }

    fn attempt_tcp(
        &mut self,
        addr: SocketAddr,
        encoded: &[u8],
        id: RequestId,
        deadline: Instant,
    ) -> Result<Frame, AttemptError> {
        // A kept connection may have been closed by the server meanwhile (idle timeout, restart);
        // if sending on it fails, one fresh connection is tried before giving up on the node.
        for fresh in [false, true] {
            if fresh || self.tcp.as_ref().is_none_or(|link| link.addr != addr) {
                self.tcp = None;
                let timeout = self.config.connect_timeout.min(deadline.saturating_duration_since(Instant::now()));
                let stream = TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1)))
                    .map_err(|e| if is_timeout(&e) { AttemptError::NoReply } else { AttemptError::Unreachable })?;
                let _ = stream.set_nodelay(true);
                // Before any TLS I/O: rustls reads the handshake inside the first write, and a
                // node that accepted the connection but is frozen must not hold this client
                // past its deadline (it could then send the request after the nodes may have
                // forgotten it was done).
                let timeouts = timeout_until(deadline);
                let _ = stream.set_read_timeout(Some(timeouts));
                let _ = stream.set_write_timeout(Some(timeouts));
                let stream = match &self.config.tls {
                    None => Stream::Plain(stream),
                    Some(trust) => {
                        let session = client_session(trust).map_err(|e| AttemptError::Tls(e.to_string()))?;
                        Stream::Tls(Box::new(rustls::StreamOwned::new(session, stream)))
                    }
                };
                let mut link = TcpLink { addr, stream, input: Vec::new(), timeouts };
                if let Some(user) = &self.config.user {
                    // Inside TLS (checked when the client was made): the first frame says who
                    // every later request on this connection is from.
                    let auth = Frame::Auth { user: user.name.clone(), token: user.token.to_vec() };
                    link.bound_until(deadline);
                    if let Err(error) = link.stream.write_all(&frame::encode_to_vec(&auth)) {
                        return Err(link_failure(&error));
                    }
                }
                self.tcp = Some(link);
            }
            if Instant::now() >= deadline {
                // Never send a request past its deadline: the window in which a retry is
                // recognised (CLIENT_RETRY_WINDOW_MAX) ends there.
                return Err(AttemptError::NoReply);
            }
            let link = self.tcp.as_mut().expect("connected just above");
            link.bound_until(deadline);
            self.request_sent = true;
            if let Err(error) = link.stream.write_all(encoded) {
                self.tcp = None;
                if let Some(reason) = tls_failure(&error) {
                    return Err(AttemptError::Tls(reason));
                }
                continue;
            }
            return self.read_tcp_reply(id, deadline);
        }
        Err(AttemptError::NoReply)
    }

    fn read_tcp_reply(&mut self, id: RequestId, deadline: Instant) -> Result<Frame, AttemptError> {
        let frame_bytes_max = self.frame_bytes_max;
        let Some(link) = self.tcp.as_mut() else { return Err(AttemptError::NoReply) };
        let chunk = &mut self.receive_buffer;
        loop {
            match frame::decode_stream(&link.input, frame_bytes_max) {
                Ok(Some((frame, used))) => {
                    link.input.drain(..used);
                    match frame {
                        Frame::Reply(reply) if reply.id != id => continue,
                        other => return Ok(other),
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    self.tcp = None;
                    return Ok(Frame::Error(error));
                }
            }
            if remaining(deadline).is_zero() {
                return Err(AttemptError::NoReply);
            }
            link.bound_until(deadline);
            match link.stream.read(chunk) {
                Ok(0) => {
                    self.tcp = None;
                    return Err(AttemptError::NoReply);
                }
                Ok(n) => link.input.extend_from_slice(&chunk[..n]),
                // A timeout before the deadline (see `bound_until`): the loop reads again, or
                // gives up at the deadline.
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
                Err(e) => {
                    self.tcp = None;
                    return Err(link_failure(&e));
                }
            }
        }
    }

    fn attempt_udp(
        &mut self,
        addr: SocketAddr,
        request: &Request,
        pad_to: usize,
        deadline: Instant,
    ) -> Result<Frame, AttemptError> {
        let id = request.id;
        if self.udp.as_ref().is_none_or(|link| link.socket.peer_addr().ok() != Some(addr)) {
            let local: SocketAddr =
                if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("a literal socket address");
            let socket = UdpSocket::bind(local).map_err(|_| AttemptError::Unreachable)?;
            socket.connect(addr).map_err(|_| AttemptError::Unreachable)?;
            self.udp = Some(UdpLink { socket, datagrams_sent: 0 });
        }
        let mut interval = self.config.udp_retransmit_min;
        loop {
            // Same request id: the cluster applies it at most once however many copies arrive
            // (a signed one is signed afresh, or the node would refuse it as a replay).
            let encoded = self.encode(request, pad_to);
            let link = self.udp.as_mut().expect("bound above");
            match link.socket.send(&encoded) {
                Ok(_) => link.datagrams_sent += 1,
                // An earlier datagram was refused, and this one was not sent: the error is
                // reported instead. The socket is spent; the next try starts afresh.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.udp = None;
                    return Err(AttemptError::Unreachable);
                }
                Err(_) => {
                    self.request_sent = true;
                    return Err(AttemptError::NoReply);
                }
            }
            let retransmit_at = Instant::now() + interval;
            loop {
                let wait_until = retransmit_at.min(deadline);
                let left = remaining(wait_until);
                if left.is_zero() {
                    break;
                }
                let link = self.udp.as_ref().expect("bound above");
                let _ = link.socket.set_read_timeout(Some(left));
                match link.socket.recv(&mut self.receive_buffer) {
                    Ok(len) => match frame::decode_datagram(&self.receive_buffer[..len], self.frame_bytes_max) {
                        Ok(Frame::Reply(reply)) if reply.id != id => {}
                        Ok(frame) => {
                            self.request_sent = true;
                            return Ok(frame);
                        }
                        Err(_) => {}
                    },
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        // Nobody listens there. If this socket sent only this datagram, the
                        // refusal is its own and the request reached no server; otherwise an
                        // earlier copy may have arrived.
                        if link.datagrams_sent > 1 {
                            self.request_sent = true;
                        }
                        self.udp = None;
                        return Err(AttemptError::Unreachable);
                    }
                    Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.request_sent = true;
                        return Err(AttemptError::NoReply);
                    }
                }
            }
            // No refusal came: the datagram may have arrived.
            self.request_sent = true;
            if Instant::now() >= deadline {
                return Err(AttemptError::NoReply);
            }
            tracing::debug!(%addr, request = %id, "retransmitting");
            interval = (interval * 2).min(self.config.udp_retransmit_max);
        }
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A socket timeout that ends at `deadline`: at least a millisecond, since a zero timeout is
/// refused by the socket (and ignoring that refusal would leave it with none at all).
fn timeout_until(deadline: Instant) -> Duration {
    remaining(deadline).max(Duration::from_millis(1))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn client(addr: SocketAddr, transport: ClientTransport) -> Client {
        let mut config = ClientConfig::new(vec![addr], transport);
        config.request_timeout = Duration::from_millis(400);
        config.attempt_timeout = Duration::from_millis(400);
        config.udp_retransmit_min = Duration::from_millis(50);
        Client::new(config).unwrap()
    }

    /// A loopback port nothing listens on (TCP or UDP) just now.
    fn closed_port() -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let udp = UdpSocket::bind(addr).unwrap();
        drop((tcp, udp));
        addr
    }

    /// A write to a port where nothing listens never left the client: the error says it was
    /// not sent, and not applied (over UDP, the refusal of the socket's only datagram).
    #[test]
    fn write_to_a_closed_port_is_known_not_sent() {
        for transport in [ClientTransport::Tcp, ClientTransport::Udp] {
            match client(closed_port(), transport).put("k", "v") {
                Err(error @ ClientError::Unreachable { .. }) => {
                    assert!(!error.may_have_been_applied(), "{transport:?}");
                    assert!(error.to_string().contains("not sent"), "{error}");
                }
                other => panic!("{transport:?}: expected unreachable, got {other:?}"),
            }
        }
    }

    /// A node that refuses connections and then listens (a restart) gets the request: the
    /// client tries again for a moment before it says it cannot reach the node (a user saw a
    /// write fail at once when sent just as the nodes restarted).
    #[test]
    fn a_node_listening_again_soon_gets_the_request() {
        let addr = closed_port();
        let (got, bytes) = std::sync::mpsc::channel();
        let listener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            // Bounded: a client that gave up never connects.
            let connected = (0..300).find_map(|_| match listener.accept() {
                Ok((stream, _)) => Some(stream),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    None
                }
            });
            let n = connected.map_or(0, |mut stream| {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                std::io::Read::read(&mut stream, &mut [0u8; 64]).unwrap_or(0)
            });
            got.send(n).unwrap();
        });
        let mut config = ClientConfig::new(vec![addr], ClientTransport::Tcp);
        config.request_timeout = Duration::from_secs(3);
        config.attempt_timeout = Duration::from_millis(500);
        let result = Client::new(config).unwrap().put("k", "v");
        listener.join().unwrap();
        assert!(bytes.recv().unwrap() > 0, "the request reached the node once it listened");
        let error = result.expect_err("the listener never answers");
        assert!(error.may_have_been_applied(), "{error}");
    }

    /// A write that a silent node took (a TCP listener that never answers, a UDP socket that
    /// never reads) may have been applied: the error leaves the outcome open. A read's does not.
    #[test]
    fn write_to_a_silent_node_may_have_been_applied() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for (addr, transport) in
            [(tcp.local_addr().unwrap(), ClientTransport::Tcp), (udp.local_addr().unwrap(), ClientTransport::Udp)]
        {
            match client(addr, transport).put("k", "v") {
                Err(error @ ClientError::Timeout { .. }) => {
                    assert!(error.may_have_been_applied(), "{transport:?}");
                    assert!(error.to_string().contains("may or may not have been applied"), "{error}");
                }
                other => panic!("{transport:?}: expected a timeout, got {other:?}"),
            }
            // A read changes nothing, and says so.
            match client(addr, transport).get("k") {
                Err(error @ ClientError::Timeout { .. }) => {
                    assert!(!error.may_have_been_applied(), "{transport:?}");
                    assert!(error.to_string().contains("a read changes nothing"), "{error}");
                }
                other => panic!("{transport:?}: expected a timeout, got {other:?}"),
            }
        }
    }

    /// A node that refuses the request's frame applied nothing: alone, the error says nothing
    /// was applied; after an earlier attempt sent the request to a node that went silent, it
    /// says the request may or may not have been applied.
    #[test]
    fn a_refusal_after_an_earlier_sent_attempt_may_have_been_applied() {
        let refusing = TcpListener::bind("127.0.0.1:0").unwrap();
        let refusing_addr = refusing.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in refusing.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 64];
                let _ = stream.read(&mut request);
                let error = Frame::Error(FrameError::Malformed { reason: "refused by the test".into() });
                let _ = stream.write_all(&frame::encode_to_vec(&error));
            }
        });
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        for (nodes, sent_before) in
            [(vec![refusing_addr], false), (vec![silent.local_addr().unwrap(), refusing_addr], true)]
        {
            let mut config = ClientConfig::new(nodes, ClientTransport::Tcp);
            config.request_timeout = Duration::from_secs(20);
            config.attempt_timeout = Duration::from_millis(200);
            match Client::new(config).unwrap().put("k", "v") {
                Err(error @ ClientError::Refused { .. }) => {
                    assert_eq!(error.may_have_been_applied(), sent_before, "{error}");
                    let says_open = error.to_string().contains("may or may not have been applied");
                    assert_eq!(says_open, sent_before, "{error}");
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }

    /// A fake node over TCP: answers every request it reads with `answer(request)`, and sends
    /// the ids it saw down `seen`.
    fn fake_node(
        answer: fn(&Request) -> Outcome,
        seen: std::sync::mpsc::Sender<(SocketAddr, RequestId)>,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match frame::decode_stream(&buffer, 1 << 20) {
                            Ok(Some((Frame::Request(request), used))) => {
                                buffer.drain(..used);
                                let _ = seen.send((addr, request.id));
                                let reply = dkv_core::Reply { id: request.id, outcome: answer(&request) };
                                if stream.write_all(&frame::encode_to_vec(&Frame::Reply(reply))).is_err() {
                                    return;
                                }
                            }
                            Ok(Some(_)) | Err(_) => return,
                            Ok(None) => match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            },
                        }
                    }
                });
            }
        });
        addr
    }

    /// A node that answers "not serving" makes the client ask the next node at once, with the
    /// same request id, and the answer of the node that serves is the outcome.
    #[test]
    fn not_serving_fails_over_to_the_next_node_with_the_same_request_id() {
        let (seen, saw) = std::sync::mpsc::channel();
        let refusing = fake_node(|_| Outcome::NotServing(NotServingReason::NoLease), seen.clone());
        let serving = fake_node(|_| Outcome::Value { value: b"v".to_vec(), version: 3 }, seen);
        let mut config = ClientConfig::new(vec![refusing, serving], ClientTransport::Tcp);
        config.request_timeout = Duration::from_secs(20);
        let mut client = Client::new(config).unwrap();
        assert_eq!(client.get("k").unwrap(), Outcome::Value { value: b"v".to_vec(), version: 3 });
        let asked: Vec<(SocketAddr, RequestId)> = saw.try_iter().collect();
        assert_eq!(asked.iter().map(|(addr, _)| *addr).collect::<Vec<_>>(), [refusing, serving]);
        assert_eq!(asked[0].1, asked[1].1, "the same request id at both nodes");
    }

    /// When every node keeps answering "not serving", the client gives up at its request timeout
    /// and says so (a read, so nothing was changed); it paused between rounds instead of spinning.
    #[test]
    fn not_serving_everywhere_ends_at_the_deadline() {
        let (seen, saw) = std::sync::mpsc::channel();
        let nodes = vec![
            fake_node(|_| Outcome::NotServing(NotServingReason::NoLease), seen.clone()),
            fake_node(|_| Outcome::NotServing(NotServingReason::CatchingUp), seen),
        ];
        let mut config = ClientConfig::new(nodes, ClientTransport::Tcp);
        config.request_timeout = Duration::from_millis(500);
        let started = Instant::now();
        match Client::new(config).unwrap().get("k") {
            Err(error @ ClientError::NotServing { .. }) => {
                assert!(!error.may_have_been_applied(), "a read");
                assert!(error.to_string().contains("no node would serve"), "{error}");
                assert!(error.to_string().contains("a read changes nothing"), "{error}");
            }
            other => panic!("expected not serving, got {other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(500));
        let rounds = saw.try_iter().count();
        assert!((2..=20).contains(&rounds), "{rounds} attempts in 500 ms");
    }

    /// A node whose kernel accepted the connection but which never answers (frozen, say) holds
    /// a TLS client no longer than its request timeout: the handshake, which rustls reads inside
    /// the first write, is bounded too. Unbounded, the request could go out long after the
    /// nodes may have forgotten it was done.
    #[test]
    fn tls_handshake_with_a_frozen_node_ends_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        crate::security::credentials::init_cluster(&credentials, &[dkv_core::NodeId(0)]).unwrap();
        let trust = ClientTrust::load(&credentials.join("client")).unwrap();
        let frozen = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = ClientConfig::new(vec![frozen.local_addr().unwrap()], ClientTransport::Tcp);
        config.request_timeout = Duration::from_millis(400);
        config.attempt_timeout = Duration::from_millis(400);
        config.tls = Some(Arc::new(trust));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = Client::new(config).unwrap().put("k", "v");
            let _ = done.send(result);
        });
        // Far beyond the 400 ms timeout, so a loaded machine cannot fail it; a client blocked
        // in the handshake never finishes at all.
        let result = finished.recv_timeout(Duration::from_secs(20)).expect("the client returns by its deadline");
        assert!(result.is_err(), "{result:?}");
        drop(frozen);
    }
}
