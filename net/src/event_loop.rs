//! [`Server`]: one node on a single-threaded mio event loop.
//!
//! Each loop turn:
//! 1. wait for socket events, no longer than the node's deadline and the runtime's own (a lazy
//!    sync falling due, a peer connect timing out, the next housekeeping), and not at all
//!    while a socket has input left over from its read budget;
//! 2. read frames from ready sockets and hand them to the node (requests, peer messages),
//!    draining its outputs after each: messages go to peer links, replies to the client's
//!    connection or address, records into the log's buffer;
//! 3. fire the node's timers if its deadline has passed;
//! 4. group commit ([`GroupCommit`]): write every record buffered this turn and make them
//!    durable with one `fdatasync`, then tell the node they are durable and drain again (which
//!    may release votes, commits and replies); a turn whose only records are ones the node does
//!    not wait on leaves them for a later sync. While other sockets are ready (a poll that does
//!    not wait says so), the sync runs on the syncer thread and the loop serves them meanwhile,
//!    its records going into the next sync, which starts once this one is done; otherwise the
//!    loop syncs itself, which is quicker when it has nothing else to do (no thread to wake);
//! 5. housekeeping: close connections that outlived their limits, abandon peer connects that
//!    take too long (a link reconnects when the node next sends that peer a message).
//!
//! Nothing in the loop blocks except the disk writes of step 4: writing a turn's records out
//! (into the page cache), the `fdatasync` when nothing else waits, and a snapshot's own syncs
//! and the deletion of the segments it made obsolete, once per snapshot.
//!
//! Clients and peers use different ports. The client port (TCP and UDP) takes requests only: a
//! peer frame arriving there is refused and counted. The peer port takes peer frames only, and
//! only from members that proved who they are: over TCP by mutual TLS with the cluster's CA,
//! in UDP mode by sealing every datagram with the cluster key (see [`crate::security`]). A
//! peer frame must name the member that proved itself, and this cluster, or it is refused.
//!
//! Each client connection is told by its first bytes ([`crate::session::ClientProtocol`]): dkv
//! frames go to the node as they are; a byte stream of another protocol goes to the
//! connection's [`crate::session::StreamSession`], whose requests the [`Gateway`] runs under the
//! node's own client ids, answering the session back.

use crate::bootstrap::Start;
use crate::catch_up;
use crate::clock::{Clock, unix_micros};
use crate::coalesce::{BatchStart, Coalescer};
use crate::config::{DATAGRAM_BYTES_MAX, ServerConfig};
use crate::connection::{Connection, Expiry, OutputFull, READ_CHUNK_BYTES, Role};
use crate::gateway::{Answer, Asker, Gateway, GatewayError};
use crate::group_commit::{GroupCommit, Synced};
use crate::identity::Identity;
use crate::inbound::{ExpiredConnection, InboundConnections};
use crate::peers::{ConnectProgress, PeerLink, Queued};
use crate::rate_limit::{OccasionalLog, RateLimit};
use crate::routes::{AMPLIFICATION_MAX, ReplyRoutes, Route};
use crate::security::datagrams::{OVERHEAD_BYTES, PeerDatagrams, next_session};
use crate::security::tls::{PeerTls, TlsSetupError, certificate_is_users, client_port_config};
use crate::security::users::Users;
use crate::session::{ClientProtocol, SessionContext};
use crate::stats::ServerStats;
use crate::text_protocol;
use crate::transfer::{self, serve::Transfers};
use crate::wal::{Wal, WalError};
use dkv_core::codec::frame::{self, Frame, FrameError};
use dkv_core::codec::transfer::TransferMessage;
use dkv_core::{ClusterId, Config, Epoch, Input, Node, NodeId, NodeSet, Operation, Outcome, Output, StartError, Time};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;

const LISTENER: Token = Token(0);
const UDP: Token = Token(1);
const WAKER: Token = Token(2);
const PEER_LISTENER: Token = Token(3);
const PEER_UDP: Token = Token(4);
/// Peer link `i` (in id order) has token `PEER_TOKEN_BASE + i`.
const PEER_TOKEN_BASE: usize = 16;
/// Connection with slab key `k` has token `CONNECTION_TOKEN_BASE + k`.
const CONNECTION_TOKEN_BASE: usize = PEER_TOKEN_BASE + NodeSet::CAPACITY;
/// Datagrams received per loop turn at most, so UDP floods cannot starve TCP clients.
const DATAGRAMS_PER_TURN_MAX: usize = 256;
const DATAGRAM_RECEIVE_BYTES: usize = 64 * 1024;
/// Socket events taken from the poller at a time.
const EVENTS_MAX: usize = 1024;
/// How often connection timeouts are checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// Why a server could not start, or had to stop.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(
        "cannot listen on {addr} ({transport}, the {}): {source}; is another server using that port? pick another with {}",
        if *.peer { "peer port" } else { "client port" },
        if *.peer { "--peer-port" } else { "-p" }
    )]
    Bind { addr: SocketAddr, transport: &'static str, peer: bool, source: io::Error },
    #[error("cannot start the node: {0}")]
    Start(#[from] StartError),
    #[error("node {id} is listed among its own peers; --peers lists the other nodes only")]
    SelfInPeers { id: NodeId },
    #[error("node ids must be below {max}; {id} is not")]
    NodeIdTooLarge { id: u8, max: usize },
    #[error("the event loop failed ({what}): {source}")]
    EventLoop { what: &'static str, source: io::Error },
    #[error(
        "node {id} has peers, so it needs credentials to prove it is a member and to check that they are: make a cluster's with `dkv-server init` and give each node --credentials DIR/node-ID"
    )]
    NoCredentials { id: NodeId },
    #[error(
        "the credentials given are node {found}'s, but this is node {expected}; give --credentials DIR/node-{}",
        expected.0
    )]
    WrongCredentials { found: NodeId, expected: NodeId },
    #[error(
        "this node's credentials record that its cluster runs {}, but this node was set to run {}; every node of a cluster must run the same way (a node without configuration changes could serve stale reads once the others removed it)",
        with_or_without(*.recorded),
        with_or_without(*.running)
    )]
    ModeDiffers { recorded: bool, running: bool },
    #[error(
        "peer {peer} is in epoch {epoch}, later than this node's {mine}: the others changed the configuration, which only nodes with --availability do, and this node runs without it. It may have been removed, so it stops rather than serve stale values. Every node of a cluster must run the same way: make every node's credentials say the same (stop every node, then `dkv-server availability on|off` for each node's folder) and start it again"
    )]
    ModesMixed { peer: NodeId, epoch: Epoch, mine: Epoch },
    #[error(
        "this node runs without --availability, yet its peers changed the configuration (to {configuration}), which only nodes with it do; it stops rather than serve values the others may have moved past. Every node of a cluster must run the same way: make every node's credentials say the same (stop every node, then `dkv-server availability on|off` for each node's folder) and start it again"
    )]
    ConfigurationChangedWithoutAvailability { configuration: dkv_core::Configuration },
    #[error(
        "this node's data dir has run with --availability (it is in configuration {configuration}), and a cluster cannot go back to running without it: a node the others removed while they stopped would take itself for a member, and serve values they moved past. Start it with --availability: `dkv-server availability on` for every node's credentials folder, every node stopped"
    )]
    RanWithAvailability { configuration: dkv_core::Configuration },
    #[error(
        "this node runs with --availability, and its data dir holds {count} transactions it voted on without it that are still in doubt ({ids}): a commit may already be visible on such votes with no copy of its decision anywhere, and the first configuration change would abort it. Start it without --availability until they are decided: with the rest of the cluster, also without it, so their coordinators can finish them. (`dkv-server availability on` checks this before it switches a cluster. If its folder was switched by hand: with every node stopped and none of them run with --availability since, set every node's identity line back to `availability off`, start them all, let these finish, stop them, and switch with the check.)",
        count = .txns.len(),
        ids = crate::modes::list_ids(.txns)
    )]
    PinnedInDoubt { txns: Vec<dkv_core::TxnId> },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot keep the peer session in data dir {dir}: {source}; check that it is writable")]
    Session { dir: std::path::PathBuf, source: io::Error },
    #[error(
        "refusing to serve clients on {addr} without authentication: anyone who reaches that address could read and write every key. Require users (dkv-server --require-auth), listen on a loopback address, or accept the risk with --insecure"
    )]
    Unprotected { addr: SocketAddr },
}

fn with_or_without(availability: bool) -> &'static str {
    if availability { "with --availability" } else { "without --availability" }
}

/// Who sent a frame, as far as this node can vouch.
#[derive(Clone, Copy, Debug)]
enum Sender {
    /// A client on the client port; its answer goes back this way. With the user it proved it
    /// is, if it did (an index into the node's users).
    Client(Route, Option<usize>),
    /// A member, proven by TLS or by the seal on its datagram.
    Member(NodeId),
    /// Nobody this node believes or answers: its own link to a peer (the peer sends nothing
    /// there), or a peer connection that has not proven who it is.
    Unproven,
}

/// What a connection's stream session is called for.
enum SessionCall {
    /// Bytes arrived.
    Input,
    /// The client closed its sending half.
    EndOfInput,
    /// A request it asked to run has ended.
    Answer(u64, Result<Outcome, GatewayError>),
    /// Time passed (housekeeping).
    Tick,
}

/// What a session call left for the event loop to do.
struct SessionDone {
    output: Vec<u8>,
    run: Vec<(u64, Operation)>,
    close: bool,
    wants_input: bool,
    busy: bool,
    user: Option<usize>,
}

/// How a node proves itself to its peers and checks them: TLS for links, or the seal on
/// datagrams in UDP mode. Neither without peers.
enum PeerSecurity {
    None,
    Tls(PeerTls),
    Datagrams(Box<PeerDatagrams>),
}

/// Stops a running server from another thread, and reads its counters.
#[derive(Clone)]
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    stats: Arc<ServerStats>,
}

impl ServerHandle {
    /// Asks the server to stop; [`Server::run`] returns soon after.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // A failed wake only delays the stop until the next event or timer.
        let _ = self.waker.wake();
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

/// One node: the core's [`Node`] driven by sockets, the disk and the clock.
//
// The server owns the sockets and composes the parts that keep the state of each concern:
// `GroupCommit` for the log, `InboundConnections` for accepted connections, a `PeerLink` per
// peer (in TCP mode), `ReplyRoutes` for the replies the node owes, and a `RateLimit` on error
// replies to datagrams.
pub struct Server {
    config: ServerConfig,
    clock: Clock,
    poll: Poll,
    node: Node,
    /// The node's records on their way to disk.
    group_commit: GroupCommit,
    listener: Option<TcpListener>,
    udp: Option<UdpSocket>,
    /// The peer port: a TCP listener, or a UDP socket in UDP mode (none without peers).
    peer_listener: Option<TcpListener>,
    peer_udp: Option<UdpSocket>,
    /// The cluster every peer frame must name.
    cluster: ClusterId,
    /// The other members: the only senders a peer frame is taken from.
    peer_ids: NodeSet,
    security: PeerSecurity,
    /// TLS for clients on the client port, offered to every client connection (a client that
    /// opens with a TLS handshake gets it); none without credentials.
    client_tls: Option<Arc<rustls::ServerConfig>>,
    /// The users clients must authenticate as; `None`: any client is served.
    users: Option<Users>,
    /// Client connections and connections to the peer port (see [`Connection::role`]).
    inbound: InboundConnections,
    /// The serial of the last connection opened or accepted (see [`Connection::serial`]).
    last_serial: u64,
    /// This node's links to its peers, in id order (their poll tokens follow that order); empty
    /// when peers talk over UDP.
    links: Vec<PeerLink>,
    routes: ReplyRoutes,
    /// Runs the requests of clients whose protocol has no request ids (Redis, the original
    /// text protocol) under client ids of the node's own.
    gateway: Gateway,
    /// Writes of those clients, gathered over a turn to run as few transactions as possible.
    coalescer: Coalescer,
    /// Answers of the gateway not yet handed to their askers: handed over in a loop rather
    /// than from inside one another (an answer may start a session's next request, whose
    /// answer may be immediate).
    answers: VecDeque<Answer>,
    /// The configuration the node took part in when last looked at: a change is logged.
    configuration: dkv_core::Configuration,
    /// Requests of the text protocol over UDP running, per source address (none listed at 0).
    datagram_sources: BTreeMap<IpAddr, usize>,
    /// The UDP socket has datagrams left over after its per-turn budget.
    udp_read_again: bool,
    /// The same for the peer UDP socket.
    peer_udp_read_again: bool,
    next_housekeeping: Time,
    /// Error replies to bad datagrams, whose source may be forged.
    udp_error_replies: RateLimit,
    /// Warnings about full connection slots and the byte budget: once a second at most, with
    /// how many were left unsaid, so a flood cannot flood the log too.
    refusal_log: OccasionalLog,
    eviction_log: OccasionalLog,
    /// State transfers this node serves to members catching up.
    transfers: Transfers,
    /// The node asked to catch up from this member through this epoch: started at the end of
    /// the turn (see [`Server::catch_up`]).
    catch_up_asked: Option<(NodeId, Epoch)>,
    /// The catch-up under way, streaming on its own thread while the server goes on.
    catching_up: Option<catch_up::Fetching>,
    /// Events a poll without waiting found while choosing how to sync (see
    /// [`Server::others_waiting`]): the next turn's, when `early_events_pending`.
    early_events: Events,
    early_events_pending: bool,
    /// While bootstrapping: which nodes it waits for, said now and then.
    bootstrap_log: OccasionalLog,
    /// The nodes asking to be added back that wait out their backoff, as last logged.
    joins_held_back: BTreeMap<NodeId, Time>,
    /// The largest frame this node's limits allow, read from any socket.
    frame_bytes_max: u32,
    /// Where every frame sent is encoded, so sending allocates nothing once it has grown.
    encode_buffer: Vec<u8>,
    /// Where every TCP read lands before its bytes join the connection's input.
    read_buffer: Box<[u8; READ_CHUNK_BYTES]>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    stats: Arc<ServerStats>,
}

impl Server {
    /// Locks and recovers the data dir, binds the sockets and starts the node. The server
    /// serves nothing until [`Server::run`].
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let clock = Clock::new();
        if config.users.is_none() && !config.listen.ip().is_loopback() && !config.insecure {
            return Err(ServerError::Unprotected { addr: config.listen });
        }
        let cluster = cluster_of(&config)?;
        let (node, wal) = start_node(&config, &clock, cluster)?;
        let node_configuration = node.configuration();
        // A cluster without configuration changes stays in its first epoch; a log past it ran
        // with them, and going back is refused: a node the others removed while they stopped
        // would take itself for a member, and serve values they moved past.
        if !config.timing.leases && node_configuration.epoch > Epoch::FIRST {
            return Err(ServerError::RanWithAvailability { configuration: node_configuration });
        }
        // A log switched to configuration changes while it held shares voted pinned and in
        // doubt (docs/protocol.md §6): refused before anything is sent.
        let pinned = node.pinned_in_doubt();
        if config.timing.leases && !pinned.is_empty() {
            return Err(ServerError::PinnedInDoubt { txns: pinned });
        }
        let bootstrapping = node.is_bootstrapping();
        // After the data dir is locked and known to be this node's: the peer session is kept
        // there.
        let security = peer_security(&config)?;
        let client_tls = config.credentials.as_deref().map(client_port_config).transpose()?;
        let users = config.users.clone().map(Users::new);
        let poll = Poll::new().map_err(|source| ServerError::EventLoop { what: "creating the poller", source })?;
        let registry = poll.registry();
        let transport = config.transport;
        let listener =
            if transport.serves_tcp() { Some(bind_listener(config.listen, LISTENER, registry)?) } else { None };
        let udp = if transport.serves_udp() { Some(bind_udp(config.listen, UDP, registry)?) } else { None };
        let (peer_listener, peer_udp) = match &security {
            PeerSecurity::None => (None, None),
            PeerSecurity::Tls(_) => (Some(bind_listener(config.peer_listen, PEER_LISTENER, registry)?), None),
            PeerSecurity::Datagrams(_) => (None, Some(bind_udp(config.peer_listen, PEER_UDP, registry)?)),
        };
        let waker = Arc::new(
            Waker::new(registry, WAKER)
                .map_err(|source| ServerError::EventLoop { what: "creating the waker", source })?,
        );
        let now = clock.now();
        let links = if config.transport.peers_over_udp() {
            Vec::new()
        } else {
            config.peers.iter().map(|(&id, &addr)| PeerLink::new(id, addr, now)).collect()
        };
        let frame_bytes_max = config.limits.frame_bytes_max();
        Ok(Server {
            clock,
            node,
            group_commit: group_commit(wal, config.id, &waker)?,
            listener,
            udp,
            peer_listener,
            peer_udp,
            cluster,
            peer_ids: NodeSet::from_ids(config.peers.keys().copied()).unwrap_or_default(),
            security,
            client_tls,
            users,
            inbound: InboundConnections::new(),
            last_serial: 0,
            links,
            routes: ReplyRoutes::new(config.connection.reply_routes_max),
            gateway: Gateway::with_random_ids(config.gateway),
            coalescer: Coalescer::new(config.limits, Gateway::request_timeout(config.gateway)),
            answers: VecDeque::new(),
            configuration: node_configuration,
            datagram_sources: BTreeMap::new(),
            udp_read_again: false,
            peer_udp_read_again: false,
            next_housekeeping: now,
            udp_error_replies: RateLimit::new(config.connection.udp_error_replies_per_second, now),
            refusal_log: OccasionalLog::default(),
            eviction_log: OccasionalLog::default(),
            transfers: Transfers::default(),
            catch_up_asked: None,
            catching_up: None,
            early_events: Events::with_capacity(EVENTS_MAX),
            early_events_pending: false,
            bootstrap_log: OccasionalLog::default(),
            joins_held_back: BTreeMap::new(),
            frame_bytes_max,
            encode_buffer: Vec::new(),
            read_buffer: Box::new([0; READ_CHUNK_BYTES]),
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            stats: Arc::new(ServerStats {
                bootstrapping: AtomicU64::new(u64::from(bootstrapping)),
                ..Default::default()
            }),
            poll,
            config,
        })
    }

    /// The address the server listens on (useful when it was asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        if let Some(addr) = self.listener.as_ref().and_then(|l| l.local_addr().ok()) {
            return addr;
        }
        self.udp.as_ref().and_then(|u| u.local_addr().ok()).unwrap_or(self.config.listen)
    }

    /// The address of the peer port (useful when it was asked for port 0); none without peers.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        if let Some(addr) = self.peer_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            return Some(addr);
        }
        self.peer_udp.as_ref().and_then(|u| u.local_addr().ok())
    }

    /// Tests only: see [`Wal::sync_fault`].
    #[cfg(test)]
    pub(crate) fn sync_fault(&self) -> Arc<std::sync::atomic::AtomicI32> {
        self.group_commit.wal().sync_fault()
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle { stop: self.stop.clone(), waker: self.waker.clone(), stats: self.stats.clone() }
    }

    /// Runs the event loop until [`ServerHandle::stop`] is called or a fatal error (a failing
    /// disk) happens.
    pub fn run(mut self) -> Result<(), ServerError> {
        tracing::info!(
            node = %self.config.id,
            addr = %self.local_addr(),
            transport = ?self.config.transport,
            peers = self.config.peers.len(),
            configuration = %self.configuration,
            availability = self.config.timing.leases,
            "listening (requests are answered once the node may serve: see the lines that follow)"
        );
        let mut events = Events::with_capacity(EVENTS_MAX);
        let now = self.clock.now();
        self.drain_outputs(now)?;
        self.sync_and_release(now)?;
        self.catch_up()?;
        while !self.stop.load(Ordering::SeqCst) {
            if std::mem::take(&mut self.early_events_pending) {
                // Polled already, to choose how to sync (see `others_waiting`).
                std::mem::swap(&mut events, &mut self.early_events);
            } else {
                let timeout = self.poll_timeout();
                match self.poll.poll(&mut events, Some(timeout)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(ServerError::EventLoop { what: "polling", source }),
                }
            }
            self.turn(&events)?;
        }
        tracing::info!(node = %self.config.id, "stopping");
        if let Some(fetching) = self.catching_up.take() {
            fetching.call_off();
        }
        // A blocking sync waits for the one under way first. What a sync releases may log more:
        // sync until nothing appended is left behind.
        let now = self.clock.now();
        self.group_commit.sync_before_stopping();
        while self.group_commit.sync_due(now) {
            let synced = self.group_commit.sync()?;
            self.on_synced(now, synced)?;
            self.group_commit.sync_before_stopping();
        }
        self.flush_queued();
        Ok(())
    }

    /// Steps 2 to 5 of a loop turn (see the module's doc), after the poller returned `events`.
    fn turn(&mut self, events: &Events) -> Result<(), ServerError> {
        let now = self.clock.now();
        for event in events.iter() {
            self.on_event(now, event)?;
        }
        for key in self.inbound.take_read_again() {
            self.read_connection(now, key, false)?;
        }
        if std::mem::take(&mut self.udp_read_again) {
            self.receive_datagrams(now)?;
        }
        if std::mem::take(&mut self.peer_udp_read_again) {
            self.receive_peer_datagrams(now)?;
        }
        if self.node.deadline().is_some_and(|deadline| deadline <= now) {
            self.node.handle(now, Input::Timeout);
            self.drain_outputs(now)?;
        }
        self.pump_transfers();
        // Batched writes that waited out their time are answered in `sync_and_release` below
        // (`start_coalesced` expires them before it starts any batch).
        if self.gateway.deadline().is_some_and(|deadline| deadline <= now) {
            let (resend, answers) = self.gateway.on_timeout(now);
            for request in resend {
                self.hand_to_node(now, request);
            }
            self.answers.extend(answers);
            self.drain_outputs(now)?;
        }
        self.sync_and_release(now)?;
        if now >= self.next_housekeeping {
            self.housekeeping(now)?;
            self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
        }
        self.catch_up()
    }

    /// The catch-ups the node asks for (docs/protocol.md §7.6; [`crate::catch_up`]): one that
    /// ended is finished here, one asked this turn is started. A transfer streams on its own
    /// thread while the server goes on (the node, standing outside, keeps asking to join); once
    /// it came whole, the member's state replaces the log, on this thread, and a fresh node
    /// starts from it in place of the old one. If the transfer fails, the old log and node stay,
    /// and the node is told (`Input::CatchUpFailed`) and asks again. Once the log is replaced,
    /// failing to reopen or replay it is fatal, as at a start: the dir holds the new log, and a
    /// restart recovers from it.
    ///
    /// What the old node had in flight is dropped with it: its clients' replies never come
    /// (they time out and retry; a node standing outside answered every request "not serving"
    /// anyway), and the gateway sends its own requests again to the new node on its timer.
    fn catch_up(&mut self) -> Result<(), ServerError> {
        if self.catching_up.as_ref().is_some_and(catch_up::Fetching::is_finished) {
            let fetching = self.catching_up.take().expect("checked above");
            self.finish_catch_up(fetching)?;
        }
        let Some((from, epoch)) = self.catch_up_asked.take() else { return Ok(()) };
        let id = self.config.id;
        if self.catching_up.is_some() {
            // One at a time: the node asks again once the one under way ends.
            return self.catch_up_failed(from, epoch, false);
        }
        tracing::info!(node = %id, %from, %epoch, "catching up: taking the member's state through the configuration that adds this node");
        let incarnation_floor = self.node.incarnation();
        let wal = self.group_commit.wal();
        let waker = Arc::clone(&self.waker);
        match catch_up::Fetching::start(&self.config, self.cluster, wal, from, epoch, incarnation_floor, waker) {
            Ok(fetching) => {
                self.catching_up = Some(fetching);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(node = %id, %from, %epoch, %error, "catch-up failed; keeping this node's log, it asks again");
                ServerStats::add(&self.stats.catch_ups_failed, 1);
                self.catch_up_failed(from, epoch, false)
            }
        }
    }

    /// Tells the node the catch-up through `epoch` from `from` did not happen (`refused`: the
    /// member's state could not be taken).
    fn catch_up_failed(&mut self, from: NodeId, epoch: Epoch, refused: bool) -> Result<(), ServerError> {
        let now = self.clock.now();
        self.node.handle(now, Input::CatchUpFailed { from, epoch, refused });
        self.drain_outputs(now)
    }

    /// A transfer ended: installs its state and starts the node again from it, or tells the
    /// node it failed.
    fn finish_catch_up(&mut self, fetching: catch_up::Fetching) -> Result<(), ServerError> {
        let (id, from, epoch, started) = (self.config.id, fetching.from, fetching.epoch, fetching.started);
        // What the old node logged meanwhile is the old log's, and goes with it (its records
        // concern epochs before the one it joins through, §7.6).
        let report = match fetching.finish() {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(node = %id, %from, %epoch, %error, "catch-up failed; keeping this node's log, it asks again");
                ServerStats::add(&self.stats.catch_ups_failed, 1);
                return self.catch_up_failed(from, epoch, error.is_refusal());
            }
        };
        // What a sync under way makes durable is the old node's: waited for, counted, and not
        // told to the new node (a disk that fails is fatal, as always).
        if let Some(synced) = self.group_commit.wait()? {
            self.count_sync(synced);
        }
        let wal = self.group_commit.wal();
        let (wal, recovery) =
            Wal::reopen_locked(&self.config.data_dir, wal.lock(), Identity { cluster: self.cluster, node: id })?;
        // The adopted log is a member's state, never empty, and the node joined through it:
        // the bootstrap rule of a start ([`start_node`]) has nothing to say here.
        let node =
            Node::start_after_cut(node_config(&self.config)?, recovery.records, self.clock.now(), recovery.cut_tail)?;
        tracing::info!(
            node = %id,
            %from,
            %epoch,
            bytes = report.bytes,
            records = report.installed.records_written,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "caught up: started again from the member's state"
        );
        ServerStats::add(&self.stats.catch_ups, 1);
        // The old log's segments are gone; its buffered records were the old node's.
        self.node = node;
        self.group_commit = group_commit(wal, id, &self.waker)?;
        // A catch-up the old node asked meanwhile was its own.
        self.catch_up_asked = None;
        let now = self.clock.now();
        self.drain_outputs(now)?;
        // Should the new node ask again at once (removed again meanwhile), the next turn sees it.
        self.sync_and_release(now)
    }

    fn on_event(&mut self, now: Time, event: &Event) -> Result<(), ServerError> {
        match event.token() {
            LISTENER => self.accept(now, Role::Client),
            PEER_LISTENER => self.accept(now, Role::Peer(None)),
            UDP => self.receive_datagrams(now)?,
            PEER_UDP => self.receive_peer_datagrams(now)?,
            WAKER => {}
            Token(t) if (PEER_TOKEN_BASE..CONNECTION_TOKEN_BASE).contains(&t) => {
                self.on_link_event(now, t - PEER_TOKEN_BASE, event)?
            }
            Token(t) => {
                let key = t - CONNECTION_TOKEN_BASE;
                if event.is_writable() {
                    self.inbound.with(key, Connection::flush);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read_connection(now, key, event.is_read_closed() || event.is_error())?;
                }
            }
        }
        Ok(())
    }

    /// How long the poller may wait for events: until the earliest deadline of the node or the
    /// runtime, and not at all while input is left over from a read budget.
    fn poll_timeout(&self) -> Duration {
        if self.inbound.any_to_read_again()
            || self.udp_read_again
            || self.peer_udp_read_again
            || self.coalescer.has_ready()
            || self.transfers.has_work()
        {
            return Duration::ZERO;
        }
        let mut next = self.next_housekeeping;
        if let Some(deadline) = self.node.deadline() {
            next = next.min(deadline);
        }
        if let Some(at) = self.group_commit.deadline() {
            next = next.min(at);
        }
        if let Some(at) = self.gateway.deadline() {
            next = next.min(at);
        }
        if let Some(at) = self.coalescer.deadline() {
            next = next.min(at);
        }
        for link in &self.links {
            if let Some(deadline) = link.next_deadline() {
                next = next.min(deadline);
            }
        }
        self.clock.until(next)
    }

    // ---- TCP ----

    /// A serial no connection had before (see [`Connection::serial`]).
    fn new_serial(&mut self) -> u64 {
        self.last_serial += 1;
        self.last_serial
    }

    /// Accepts every connection the client listener (or, for `Role::Peer`, the peer listener)
    /// holds.
    fn accept(&mut self, now: Time, role: Role) {
        loop {
            let listener = if role == Role::Client { &self.listener } else { &self.peer_listener };
            let Some(listener) = listener else { return };
            match listener.accept() {
                Ok((stream, addr)) => self.admit(now, stream, addr, role),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Typically out of file descriptors; the pending connection stays queued.
                    tracing::warn!(%error, "cannot accept a connection");
                    return;
                }
            }
        }
    }

    /// Registers an accepted connection for events and starts serving it, unless there are
    /// too many connections of its kind already: then it is closed at once. On the peer port,
    /// the longest-waiting connection that has not proven it is a member makes room first.
    fn admit(&mut self, now: Time, mut stream: TcpStream, addr: SocketAddr, role: Role) {
        ServerStats::add(&self.stats.connections_accepted, 1);
        let peer = role != Role::Client;
        // The peer port answers only the configured peers' addresses: anyone else would make
        // this node do a TLS handshake (a signature) per connection for nothing.
        if peer && !self.config.peers.values().any(|peer_addr| peer_addr.ip() == addr.ip()) {
            ServerStats::add(&self.stats.peer_connections_refused, 1);
            if let Some(suppressed) = self.refusal_log.due(now) {
                tracing::warn!(%addr, suppressed, "a connection to the peer port from an address that is no peer's; refused");
            }
            return;
        }
        let limits = &self.config.connection;
        let max = if peer { limits.peer_connections_max } else { limits.connections_max };
        if self.inbound.count(peer) >= max {
            let (room, why) = if peer {
                (self.inbound.oldest_unproven_peer(), "the peer port is full, and it had not proven it is a member")
            } else {
                (self.inbound.longest_idle_client(), "every client slot was taken, and it was idle longest")
            };
            if let Some(suppressed) = self.refusal_log.due(now) {
                tracing::warn!(%addr, max, peer, suppressed, "too many connections; making room or refusing");
            }
            match room {
                Some(key) => {
                    ServerStats::add(&self.stats.connections_evicted, 1);
                    self.drop_connection(key, why);
                }
                None => {
                    let counter =
                        if peer { &self.stats.peer_connections_refused } else { &self.stats.connections_dropped };
                    ServerStats::add(counter, 1);
                    return;
                }
            }
        }
        let tls = match (&self.security, role) {
            (PeerSecurity::Tls(tls), Role::Peer(_)) => Some(tls.accept()),
            _ => None,
        };
        let _ = stream.set_nodelay(true);
        let key = self.inbound.vacant_key();
        let token = Token(CONNECTION_TOKEN_BASE + key);
        if let Err(error) = self.poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE) {
            tracing::warn!(%error, "cannot register a connection");
            return;
        }
        let serial = self.new_serial();
        let mut connection = Connection::new(
            stream,
            addr,
            role,
            tls,
            serial,
            now,
            self.frame_bytes_max,
            self.config.connection.output_bytes_max,
        );
        if let (Role::Client, Some(config)) = (role, &self.client_tls) {
            connection.offer_tls(config.clone());
        }
        let inserted = self.inbound.insert(connection);
        debug_assert_eq!(inserted, key, "the connection went where its token says");
        tracing::debug!(%addr, key, "accepted a connection");
    }

    /// Reads what an accepted connection has, up to its budget, and hands every whole frame
    /// to the node. `until_would_block` as for [`Connection::read`].
    fn read_connection(&mut self, now: Time, key: usize, until_would_block: bool) -> Result<(), ServerError> {
        let Some(connection) = self.inbound.get(key) else { return Ok(()) };
        let serial = connection.serial;
        let read_buffer = &mut self.read_buffer;
        let Some(result) = self.inbound.with(key, |c| c.read(now, read_buffer, until_would_block)) else {
            return Ok(());
        };
        if result.more {
            self.inbound.read_again_next_turn(key);
        }
        if self.inbound.get(key).is_some_and(Connection::has_session) {
            self.user_by_certificate(key);
            // Once the input has ended, a session not waiting for an answer is done: so bytes
            // that came with the end are handed over with it, in one call.
            if result.closed {
                self.call_session(now, key, serial, SessionCall::EndOfInput);
            } else if result.stream_input {
                self.call_session(now, key, serial, SessionCall::Input);
            }
            self.keep_to_byte_budget(now);
            return self.drain_outputs(now);
        }
        let Some(sender) = self.sender_of(key, serial) else { return Ok(()) };
        if result.closed && matches!(sender, Sender::Unproven) {
            ServerStats::add(&self.stats.peer_connections_refused, 1);
        }
        for frame in result.frames {
            // Asked again for every frame: one may have authenticated the client for the next.
            let Some(sender) = self.sender_of(key, serial) else { break };
            if let Frame::Transfer { cluster, from, message } = frame {
                // Answered on this very connection, so handled here, where it is known.
                self.on_transfer(now, key, serial, sender, (cluster, from), message);
                continue;
            }
            self.on_frame(now, frame, sender)?;
        }
        if let Some(error) = result.error {
            ServerStats::add(&self.stats.frames_rejected, 1);
            if let Some(connection) = self.inbound.get(key) {
                tracing::debug!(addr = %connection.addr, %error, "bad frame; telling the sender and closing the connection");
                if result.closed {
                    self.close_connection(key, "closed mid-frame");
                } else {
                    self.inbound.with(key, |c| c.fail(now, error));
                }
            }
        } else if result.closed {
            self.close_connection(key, "closed by the other side");
        }
        self.keep_to_byte_budget(now);
        Ok(())
    }

    /// While the connections hold more than the byte budget, drops the one that holds most
    /// among those that have not proven who they are: whoever fills the budget with partial
    /// frames loses them first, and authenticated peers are never dropped for it.
    fn keep_to_byte_budget(&mut self, now: Time) {
        let budget = self.config.connection.buffer_bytes_max;
        while self.inbound.buffered_bytes() > budget {
            let Some((key, bytes)) = self.inbound.largest_unproven() else { return };
            ServerStats::add(&self.stats.connections_evicted, 1);
            if let Some(suppressed) = self.eviction_log.due(now) {
                tracing::warn!(
                    bytes,
                    budget,
                    suppressed,
                    "connection buffers are over their byte budget; dropping the largest"
                );
            }
            self.drop_connection(key, "its buffers were the largest when the byte budget ran out");
        }
    }

    /// Who sends on the accepted connection at `key`. A connection to the peer port is its
    /// member's once the TLS handshake has shown a certificate naming one; one whose
    /// certificate names no member is dropped (`None`).
    fn sender_of(&mut self, key: usize, serial: u64) -> Option<Sender> {
        self.user_by_certificate(key);
        let connection = self.inbound.get(key)?;
        let PeerSecurity::Tls(tls) = &self.security else {
            return Some(Sender::Client(Route::Tcp { key, serial }, connection.user));
        };
        match connection.role {
            Role::Client => Some(Sender::Client(Route::Tcp { key, serial }, connection.user)),
            Role::Peer(Some(member)) => Some(Sender::Member(member)),
            Role::Link => Some(Sender::Unproven),
            Role::Peer(None) => {
                let Some(certificate) = connection.peer_certificate() else { return Some(Sender::Unproven) };
                match tls.identify(certificate, self.peer_ids) {
                    Some(member) => {
                        tracing::debug!(addr = %connection.addr, peer = %member, "a peer proved who it is");
                        self.inbound.with(key, |c| c.role = Role::Peer(Some(member)));
                        Some(Sender::Member(member))
                    }
                    None => {
                        ServerStats::add(&self.stats.peer_connections_refused, 1);
                        self.drop_connection(key, "its certificate names no other member of this cluster");
                        None
                    }
                }
            }
        }
    }

    /// A client that showed a user's certificate in its TLS handshake (checked against the
    /// cluster's CA there) is that user, with no token to send.
    fn user_by_certificate(&mut self, key: usize) {
        let Some(connection) = self.inbound.get(key) else { return };
        if connection.role != Role::Client || connection.certificate_checked || !connection.tls_established() {
            return;
        }
        let user = match (connection.peer_certificate(), &self.users) {
            (Some(certificate), Some(users)) => {
                users.names().find(|(_, name)| certificate_is_users(certificate, self.cluster, name)).map(|(i, _)| i)
            }
            _ => None,
        };
        self.inbound.with(key, |c| {
            c.certificate_checked = true;
            if user.is_some() {
                c.user = user;
            }
        });
    }

    /// Ends a connection in an orderly way (its side closed, it went idle, its error was sent).
    fn close_connection(&mut self, key: usize, why: &str) {
        if let Some(mut connection) = self.inbound.remove(key) {
            tracing::debug!(addr = %connection.addr, why, "closing a connection");
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }

    /// Ends a connection the server gave up on (a stalled or misbehaving client), and counts it.
    fn drop_connection(&mut self, key: usize, why: &str) {
        if let Some(connection) = self.inbound.get(key) {
            tracing::debug!(addr = %connection.addr, why, "dropping a connection");
            ServerStats::add(&self.stats.connections_dropped, 1);
        }
        self.close_connection(key, why);
    }

    // ---- UDP ----

    /// Receives datagrams, up to the per-turn budget, and hands each frame to the node.
    fn receive_datagrams(&mut self, now: Time) -> Result<(), ServerError> {
        let mut buffer = vec![0u8; DATAGRAM_RECEIVE_BYTES];
        let max = self.frame_bytes_max.min(DATAGRAM_BYTES_MAX as u32);
        for _ in 0..DATAGRAMS_PER_TURN_MAX {
            let Some(udp) = &self.udp else { return Ok(()) };
            let (len, addr) = match udp.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here on some systems; not fatal.
                Err(_) => continue,
            };
            if ClientProtocol::sniff_datagram(&buffer[..len]) == ClientProtocol::Text {
                let route = Route::unauthenticated_datagram(addr, len);
                self.serve_text_datagram(now, route, &buffer[..len]);
                self.drain_outputs(now)?;
                continue;
            }
            match frame::decode_datagram(&buffer[..len], max) {
                Ok(frame) => {
                    self.on_frame(now, frame, Sender::Client(Route::unauthenticated_datagram(addr, len), None))?
                }
                Err(error) => {
                    ServerStats::add(&self.stats.frames_rejected, 1);
                    tracing::debug!(%addr, %error, "bad datagram");
                    self.send_udp_error(now, Route::unauthenticated_datagram(addr, len), error);
                }
            }
        }
        self.udp_read_again = true;
        Ok(())
    }

    /// Receives sealed peer datagrams (UDP mode), up to the per-turn budget, and hands each
    /// frame that opens to the node as its sealer's. Nothing on this socket is ever answered:
    /// a datagram's source address proves nothing.
    fn receive_peer_datagrams(&mut self, now: Time) -> Result<(), ServerError> {
        let mut buffer = vec![0u8; DATAGRAM_RECEIVE_BYTES];
        let max = self.frame_bytes_max.min(DATAGRAM_BYTES_MAX as u32);
        for _ in 0..DATAGRAMS_PER_TURN_MAX {
            let (Some(udp), PeerSecurity::Datagrams(datagrams)) = (&self.peer_udp, &mut self.security) else {
                return Ok(());
            };
            let (len, addr) = match udp.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => continue,
            };
            let opened = datagrams.open(unix_micros() / 1000, &buffer[..len]);
            match opened.map(|(member, payload)| (member, frame::decode_datagram(&payload, max))) {
                Ok((member, Ok(frame))) => self.on_frame(now, frame, Sender::Member(member))?,
                Ok((member, Err(error))) => {
                    ServerStats::add(&self.stats.peer_frames_refused, 1);
                    tracing::warn!(peer = %member, %error, "a sealed peer datagram holds no valid frame");
                }
                Err(error) => {
                    ServerStats::add(&self.stats.peer_frames_refused, 1);
                    tracing::debug!(%addr, %error, "peer datagram refused");
                }
            }
        }
        self.peer_udp_read_again = true;
        Ok(())
    }

    /// Answers a bad datagram with an error frame, within a rate limit and the amplification
    /// limit: the source address of a datagram can be forged, and this node must not become a
    /// flood's amplifier.
    fn send_udp_error(&mut self, now: Time, to: Route, error: FrameError) {
        if self.udp_error_replies.allow(now) {
            self.send_datagram(to, &Frame::Error(error));
        }
    }

    /// Sends one frame as a datagram to the sender of a request: no more than
    /// [`AMPLIFICATION_MAX`] times the request's bytes (a larger reply becomes an error saying
    /// to pad the request or use TCP, and an error that would still be too large is not sent),
    /// and never more than one datagram holds (an error saying to use TCP).
    fn send_datagram(&mut self, to: Route, frame_to_send: &Frame) {
        let (Some(udp), Route::Udp { addr, reply_bytes_max: allowed }) = (&self.udp, to) else { return };
        self.encode_buffer.clear();
        frame::encode(frame_to_send, &mut self.encode_buffer);
        let len = self.encode_buffer.len();
        let error = if len > DATAGRAM_BYTES_MAX {
            Some(FrameError::TooLargeForDatagram { len: len as u64, max: DATAGRAM_BYTES_MAX as u32 })
        } else if len > allowed {
            Some(FrameError::ReplyTooLarge { len: len as u64, request: (allowed / AMPLIFICATION_MAX) as u64 })
        } else {
            None
        };
        if let Some(error) = error {
            self.encode_buffer.clear();
            frame::encode(&Frame::Error(error), &mut self.encode_buffer);
            if self.encode_buffer.len() > allowed {
                ServerStats::add(&self.stats.udp_replies_withheld, 1);
                return;
            }
        }
        // UDP is lossy by nature: a full socket buffer drops the datagram, and the protocol's
        // (or the client's) retransmission makes up for it.
        let _ = udp.send_to(&self.encode_buffer, addr);
    }

    // ---- Peer links ----

    /// Finishes a connect in progress, writes what the link has queued, and reads what the
    /// peer sent on it (nothing, normally: see [`Server::on_frame`]).
    fn on_link_event(&mut self, now: Time, index: usize, event: &Event) -> Result<(), ServerError> {
        let Some(link) = self.links.get_mut(index) else { return Ok(()) };
        if link.is_connecting() {
            let hung_up = event.is_error() || event.is_read_closed() || event.is_write_closed();
            match link.check_connected(now, hung_up) {
                ConnectProgress::Connected => {}
                ConnectProgress::Pending => return Ok(()),
                ConnectProgress::Failed => {
                    self.disconnect_link(now, index, "connect failed");
                    return Ok(());
                }
            }
        }
        let link = &mut self.links[index];
        let Some(connection) = link.connection_mut() else { return Ok(()) };
        connection.flush();
        if event.is_readable() {
            let result = connection.read(now, &mut self.read_buffer, true);
            if connection.tls_established() {
                link.mark_established();
            }
            for frame in result.frames {
                self.on_frame(now, frame, Sender::Unproven)?;
            }
            if result.closed || result.error.is_some() {
                self.disconnect_link(now, index, "closed by the peer");
            }
        }
        Ok(())
    }

    /// Takes a link down; it reconnects, after its backoff, for the next message to its peer.
    fn disconnect_link(&mut self, now: Time, index: usize, why: &str) {
        let link = &mut self.links[index];
        if let Some(mut connection) = link.disconnect(now) {
            tracing::debug!(peer = %link.id, addr = %link.addr, why, "peer link down");
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }

    /// Starts connecting a link, inside TLS, and registers its connection for events.
    fn connect_link(&mut self, now: Time, index: usize) {
        let PeerSecurity::Tls(tls) = &self.security else { return };
        let session = tls.connect(self.links[index].id);
        let serial = self.new_serial();
        let output_bytes_max = self.config.connection.output_bytes_max;
        let link = &mut self.links[index];
        if !link.start_connect(now, session, serial, self.frame_bytes_max, output_bytes_max) {
            return;
        }
        let token = Token(PEER_TOKEN_BASE + index);
        let registry: &Registry = self.poll.registry();
        if let Some(connection) = link.connection_mut()
            && let Err(error) =
                registry.register(&mut connection.stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(%error, "cannot register a peer link");
            link.disconnect(now);
        }
    }

    // ---- Frames in, outputs out ----

    /// Hands one incoming frame to the node, if its sender may send it, and carries out what
    /// the node asks for. Requests come from clients; peer messages from the member that proved
    /// itself, naming itself and this cluster. Anything else is refused and counted; a client
    /// is told why (except over UDP, where the source may be forged).
    fn on_frame(&mut self, now: Time, incoming: Frame, sender: Sender) -> Result<(), ServerError> {
        match (incoming, sender) {
            (Frame::Request(request), Sender::Client(route, user)) => self.serve(now, route, user, request),
            (Frame::Auth { user, token }, Sender::Client(Route::Tcp { key, .. }, _)) => {
                self.authenticate(now, key, &user, &token)
            }
            (
                Frame::SignedRequest { user, sent_at_ms, request, mac },
                Sender::Client(route @ Route::Udp { addr, .. }, _),
            ) => {
                let Some(users) = &mut self.users else {
                    // Nobody needs to sign here: serve it as the unsigned request it carries.
                    return self.on_frame(now, Frame::Request(request), Sender::Client(route, None));
                };
                match users.verify_signed(unix_micros() / 1000, &user, sent_at_ms, &request, &mac) {
                    // The signer holds the user's token: its address is its own, no limit.
                    Ok(index) => {
                        let route = Route::Udp { addr, reply_bytes_max: DATAGRAM_BYTES_MAX };
                        self.serve(now, route, Some(index), request)
                    }
                    Err(error) => {
                        ServerStats::add(&self.stats.auth_failures, 1);
                        self.deny(route, request.id, format!("authentication refused: {error}"));
                    }
                }
            }
            (Frame::Peer { cluster, from, message }, Sender::Member(member))
                if from == member && cluster == self.cluster =>
            {
                // A cluster without configuration changes never leaves its first epoch: a later
                // one means peers run with them, may have removed this node, and commit without
                // it, while it would answer reads from memory without a lease.
                let mine = self.node.configuration().epoch;
                if !self.config.timing.leases
                    && let Some(epoch) = message.epoch()
                    && epoch > mine
                {
                    tracing::error!(node = %self.config.id, peer = %from, %epoch, %mine, "a peer is in a later epoch, and this node runs without --availability: stopping");
                    return Err(ServerError::ModesMixed { peer: from, epoch, mine });
                }
                self.node.handle(now, Input::Message { from, message })
            }
            (Frame::Peer { cluster, from, .. }, sender) => {
                ServerStats::add(&self.stats.peer_frames_refused, 1);
                tracing::debug!(?sender, %from, %cluster, "peer frame refused");
                if let Sender::Client(Route::Tcp { key, .. }, _) = sender {
                    let reason = "peer messages are taken only on the peer port, from members that prove who they are";
                    self.fail_connection(now, key, reason);
                }
            }
            (_, sender) => {
                ServerStats::add(&self.stats.frames_rejected, 1);
                let reason = "a dkv server takes requests from clients and messages from peers, nothing else";
                // Over UDP nothing but a request is answered: a reply or error sent to this port
                // with a forged source (another node's) would start two nodes answering each
                // other's errors.
                if let Sender::Client(Route::Tcp { key, .. }, _) = sender {
                    self.fail_connection(now, key, reason);
                }
            }
        }
        self.drain_outputs(now)
    }

    /// A state transfer's message ([`crate::transfer::serve`]), taken as a peer message is: from
    /// the member that proved itself on this connection, naming itself and this cluster.
    fn on_transfer(
        &mut self,
        now: Time,
        key: usize,
        serial: u64,
        sender: Sender,
        (cluster, from): (ClusterId, NodeId),
        message: TransferMessage,
    ) {
        match sender {
            Sender::Member(member) if member == from && cluster == self.cluster => {
                let mut out = Vec::new();
                self.transfers.on_message(key, serial, from, message, self.group_commit.wal(), &mut out);
                self.send_transfer_messages(out);
            }
            sender => {
                ServerStats::add(&self.stats.peer_frames_refused, 1);
                tracing::debug!(?sender, %from, %cluster, "transfer frame refused");
                if let Sender::Client(Route::Tcp { key, .. }, _) = sender {
                    let reason =
                        "state transfers are taken only on the peer port, from members that prove who they are";
                    self.fail_connection(now, key, reason);
                }
            }
        }
    }

    /// Sends the chunks the transfers' windows allow this turn.
    fn pump_transfers(&mut self) {
        let mut out = Vec::new();
        let inbound = &self.inbound;
        self.transfers.pump(|key, serial| inbound.get(key).is_some_and(|c| c.serial == serial), &mut out);
        self.send_transfer_messages(out);
        ServerStats::raise_to(&self.stats.transfer_in_flight_bytes_peak, self.transfers.in_flight_bytes_peak());
        ServerStats::set(&self.stats.transfers_served, self.transfers.completed());
    }

    fn send_transfer_messages(&mut self, out: Vec<transfer::serve::Outgoing>) {
        for transfer::serve::Outgoing { key, serial, message } in out {
            self.encode_buffer.clear();
            let frame = Frame::Transfer { cluster: self.cluster, from: self.config.id, message };
            frame::encode(&frame, &mut self.encode_buffer);
            if self.inbound.queue(key, serial, &self.encode_buffer).is_err() {
                // The window keeps a transfer's output below the limit; an asker whose
                // output still overflows it does not read.
                self.drop_connection(key, "a state transfer's output buffer is full");
            }
        }
    }

    /// Hands a client's request to the node, if the client may make it: where users are
    /// required, only an authenticated one whose role and key prefix allow it.
    fn serve(&mut self, now: Time, route: Route, user: Option<usize>, request: dkv_core::Request) {
        if let Some(reason) = self.refusal(user, &request.operation) {
            return self.deny(route, request.id, reason);
        }
        let reply_to = self.routes.insert(route);
        ServerStats::add(&self.stats.requests, 1);
        self.node.handle(now, Input::Request { reply_to, request });
    }

    /// Why `user` may not make `operation`, where users are required: only an authenticated
    /// user whose role and key prefix allow it may.
    fn refusal(&self, user: Option<usize>, operation: &Operation) -> Option<String> {
        let users = self.users.as_ref()?;
        match user.and_then(|index| users.get(index)) {
            None => Some(
                "this node serves authenticated clients only: connect over TLS and send a user's token, or sign each datagram"
                    .to_string(),
            ),
            Some(user) => user.refuses(operation),
        }
    }

    // ---- Protocols without request ids: stream sessions and the gateway ----

    /// Runs `operation` for a client of a protocol without request ids, through the gateway,
    /// if its user may make it. Its answer comes back to `asker` through [`Server::deliver`].
    fn run_for(&mut self, now: Time, asker: Asker, user: Option<usize>, operation: Operation) {
        if let Some(reason) = self.refusal(user, &operation) {
            ServerStats::add(&self.stats.permission_denied, 1);
            let outcome = Outcome::Rejected(dkv_core::RejectReason::PermissionDenied(reason));
            return self.answers.push_back(Answer { asker, result: Ok(outcome) });
        }
        ServerStats::add(&self.stats.gateway_requests, 1);
        if let Operation::Txn { ops } = operation {
            // Writes wait for the end of the turn, to run together (see `Coalescer`).
            if let Err(error) = self.coalescer.add(now, asker, ops) {
                ServerStats::add(&self.stats.gateway_busy, 1);
                self.answers.push_back(Answer { asker, result: Err(error) });
            }
            return;
        }
        self.start_in_gateway(now, now, asker, operation);
    }

    /// Starts a request in the gateway, its deadline counted from `queued_at` (or answers its
    /// asker "busy", or that its time ran out).
    fn start_in_gateway(&mut self, now: Time, queued_at: Time, asker: Asker, operation: Operation) {
        match self.gateway.start_queued(now, queued_at, asker, operation) {
            Ok(request) => {
                ServerStats::set(&self.stats.gateway_client_ids, self.gateway.client_ids() as u64);
                self.hand_to_node(now, request);
            }
            Err(error) => {
                let counter = match error {
                    GatewayError::Expired { .. } => &self.stats.gateway_expired,
                    _ => &self.stats.gateway_busy,
                };
                ServerStats::add(counter, 1);
                self.answers.push_back(Answer { asker, result: Err(error) });
            }
        }
    }

    /// Hands one attempt of a gateway request to the node; its reply comes back to the gateway.
    fn hand_to_node(&mut self, now: Time, request: dkv_core::Request) {
        let reply_to = self.routes.insert(Route::Gateway);
        ServerStats::add(&self.stats.requests, 1);
        self.node.handle(now, Input::Request { reply_to, request });
    }

    /// Hands a gateway answer to whoever asked: the session of a connection, or the sender of a
    /// text datagram.
    fn deliver(&mut self, now: Time, answer: Answer) {
        match answer.asker.route {
            Route::Tcp { key, serial } => {
                self.call_session(now, key, serial, SessionCall::Answer(answer.asker.tag, answer.result))
            }
            route @ Route::Udp { addr, .. } => {
                if let Some(running) = self.datagram_sources.get_mut(&addr.ip()) {
                    *running -= 1;
                    if *running == 0 {
                        self.datagram_sources.remove(&addr.ip());
                    }
                }
                let reply = text_protocol::reply(text_protocol::op_of_tag(answer.asker.tag), &answer.result);
                self.send_text_datagram(route, &reply, text_protocol::short_reply(&answer.result));
            }
            Route::Coalesced => {
                let answers = self.coalescer.complete(answer.asker.tag, answer.result);
                self.answers.extend(answers);
            }
            Route::Gateway => {}
        }
    }

    /// Starts the batches of writes the coalescer has ready (see [`Coalescer`]), and carries
    /// out what the node does with them.
    fn start_coalesced(&mut self, now: Time) -> Result<(), ServerError> {
        let expired = self.coalescer.expire(now);
        let starts = self.coalescer.take_ready();
        if starts.is_empty() && expired.is_empty() {
            return Ok(());
        }
        ServerStats::add(&self.stats.gateway_expired, expired.len() as u64);
        self.answers.extend(expired);
        for BatchStart { tag, operation, queued_at } in starts {
            ServerStats::add(&self.stats.gateway_batches, 1);
            self.start_in_gateway(now, queued_at, Asker { route: Route::Coalesced, tag }, operation);
        }
        self.drain_outputs(now)
    }

    /// Calls the stream session of the connection at `key` (if it is still the one with
    /// `serial`), then carries out what it asked: writes its output, runs its requests, closes
    /// the connection or pauses its reading.
    fn call_session(&mut self, now: Time, key: usize, serial: u64, call: SessionCall) {
        let (node, users) = (&self.node, self.users.as_ref());
        let done = self.inbound.with(key, |connection| {
            if connection.serial != serial {
                return None;
            }
            let loopback = connection.addr.ip().is_loopback();
            connection.with_session(now, |session, input, user, tls| {
                let private_channel = tls || loopback;
                let mut cx = SessionContext {
                    now,
                    node,
                    users,
                    user,
                    private_channel,
                    output: Vec::new(),
                    run: Vec::new(),
                    close: false,
                };
                match call {
                    SessionCall::Input => session.on_input(input, &mut cx),
                    SessionCall::EndOfInput => session.on_end_of_input(input, &mut cx),
                    SessionCall::Answer(tag, answer) => session.on_answer(tag, answer, &mut cx),
                    SessionCall::Tick => session.on_tick(input, &mut cx),
                }
                SessionDone {
                    output: cx.output,
                    run: cx.run,
                    close: cx.close,
                    wants_input: session.wants_input(),
                    busy: session.is_busy(),
                    user: *cx.user,
                }
            })
        });
        let Some(Some(done)) = done else { return };
        if !done.output.is_empty() {
            match self.inbound.queue(key, serial, &done.output) {
                Ok(pending) => ServerStats::raise_to(&self.stats.reply_backlog_bytes_peak, pending as u64),
                Err(OutputFull) => {
                    ServerStats::add(&self.stats.connections_dropped_output_full, 1);
                    return self.drop_connection(key, "the client does not read its replies (output buffer full)");
                }
            }
        }
        for (tag, operation) in done.run {
            self.run_for(now, Asker { route: Route::Tcp { key, serial }, tag }, done.user, operation);
        }
        if done.wants_input && !done.close && self.inbound.get(key).is_some_and(Connection::stream_input_full) {
            // It holds as much as the largest frame and still waits for the rest of a request:
            // one no limit allows. Reading on would only spin.
            return self.drop_connection(key, "its request is larger than any this node takes");
        }
        let input_ended = self.inbound.get(key).is_some_and(Connection::input_ended);
        if done.close || (input_ended && !done.busy) {
            // Nothing more to answer: the connection ends once its replies are written, at
            // once if they are (a one-shot client may be waiting for the close).
            let written = self.inbound.with(key, |c| {
                c.close_when_written(now);
                c.output_pending() == 0
            });
            if written == Some(true) {
                self.close_connection(key, "its session ended");
            }
        } else if self.inbound.with(key, |c| c.pause_input(!done.wants_input)) == Some(true) {
            self.inbound.read_again_next_turn(key);
        }
        // An answer may have grown the session (a value it keeps): within the budget still?
        self.keep_to_byte_budget(now);
    }

    /// Serves one datagram of the original text protocol: its reply goes to its source, no
    /// larger than the amplification limit allows.
    fn serve_text_datagram(&mut self, now: Time, route: Route, datagram: &[u8]) {
        if self.users.is_some() {
            // The text protocol cannot authenticate; a datagram's source may be forged, so the
            // refusal is short and rate-limited like every error to a datagram.
            if self.udp_error_replies.allow(now) {
                let refusal = text_protocol::AUTHENTICATION_REQUIRED_SHORT;
                self.send_text_datagram(route, refusal, refusal);
            }
            return;
        }
        let Route::Udp { addr, .. } = route else { return };
        match text_protocol::parse(datagram) {
            Some(request) => {
                let running = self.datagram_sources.entry(addr.ip()).or_default();
                if *running >= self.config.gateway.datagram_source_max {
                    ServerStats::add(&self.stats.gateway_busy, 1);
                    if self.udp_error_replies.allow(now) {
                        self.send_text_datagram(route, text_protocol::BUSY_SHORT, text_protocol::BUSY_SHORT);
                    }
                    return;
                }
                // Counted down when its answer is delivered; every request run gets one.
                *running += 1;
                self.run_for(now, Asker { route, tag: request.op as u64 }, None, request.operation)
            }
            None => {
                ServerStats::add(&self.stats.frames_rejected, 1);
                if self.udp_error_replies.allow(now) {
                    self.send_text_datagram(route, text_protocol::INVALID_INPUT, text_protocol::INVALID_INPUT);
                }
            }
        }
    }

    /// Sends a text reply as a datagram, within the amplification limit: a reply too large for
    /// it is sent in its `short` form, and not at all if even that is too large.
    fn send_text_datagram(&mut self, to: Route, reply: &[u8], short: &[u8]) {
        let (Some(udp), Route::Udp { addr, reply_bytes_max: allowed }) = (&self.udp, to) else { return };
        let reply = if reply.len() <= allowed.min(DATAGRAM_BYTES_MAX) { reply } else { short };
        if reply.len() > allowed {
            ServerStats::add(&self.stats.udp_replies_withheld, 1);
            return;
        }
        // UDP is lossy by nature: the client asks again if the reply is lost.
        let _ = udp.send_to(reply, addr);
    }

    /// Answers a request the client may not make.
    fn deny(&mut self, route: Route, id: dkv_core::RequestId, reason: String) {
        ServerStats::add(&self.stats.permission_denied, 1);
        let outcome = dkv_core::Outcome::Rejected(dkv_core::RejectReason::PermissionDenied(reason));
        self.send_reply(route, Frame::Reply(dkv_core::Reply { id, outcome }));
    }

    /// A client's user and token, sent first on a TLS connection: every later request on the
    /// connection is that user's. Refused in the clear (the token could be read on the way) and
    /// when wrong; either way the connection is closed with the reason.
    fn authenticate(&mut self, now: Time, key: usize, user: &str, token: &[u8]) {
        let Some(connection) = self.inbound.get(key) else { return };
        if !connection.is_tls() {
            ServerStats::add(&self.stats.auth_failures, 1);
            let reason = "a user's token is taken only inside TLS, where it cannot be read on the way";
            return self
                .inbound
                .with(key, |c| c.fail(now, FrameError::Unauthorized { reason: reason.into() }))
                .unwrap_or(());
        }
        let Some(users) = &self.users else { return };
        match users.authenticate(user, token) {
            Ok(index) => {
                tracing::debug!(addr = %connection.addr, user, "a client authenticated");
                self.inbound.with(key, |c| c.user = Some(index));
            }
            Err(error) => {
                ServerStats::add(&self.stats.auth_failures, 1);
                tracing::debug!(addr = %connection.addr, "a client's authentication was refused");
                self.inbound.with(key, |c| c.fail(now, FrameError::Unauthorized { reason: error.to_string() }));
            }
        }
    }

    /// Tells a client connection why it is closed, and closes it once that is written.
    fn fail_connection(&mut self, now: Time, key: usize, reason: &str) {
        self.inbound.with(key, |c| c.fail(now, FrameError::Malformed { reason: reason.into() }));
    }

    /// Carries out everything the node asked for. Records only go into the log's buffer here;
    /// [`Server::sync_and_release`] makes them durable.
    ///
    /// Replies to the gateway's requests go to the gateway, and the answers it gives to their
    /// askers, which may hand the node new requests: drained until there is nothing left.
    fn drain_outputs(&mut self, now: Time) -> Result<(), ServerError> {
        // The stat says the node was bootstrapping when last looked at: its end is logged.
        if ServerStats::get(&self.stats.bootstrapping) == 1 && !self.node.is_bootstrapping() {
            self.bootstrapping_ended();
        }
        loop {
            while let Some(output) = self.node.poll_output() {
                match output {
                    Output::Send { to, message } => {
                        let (cluster, from) = (self.cluster, self.config.id);
                        self.send_to_peer(to, Frame::Peer { cluster, from, message })
                    }
                    Output::Reply { to, reply } => {
                        let Some(route) = self.routes.take(to) else { continue };
                        if route == Route::Gateway {
                            if let Some(answer) = self.gateway.on_reply(now, reply) {
                                self.answers.push_back(answer);
                            }
                            continue;
                        }
                        ServerStats::add(&self.stats.replies, 1);
                        self.send_reply(route, Frame::Reply(reply));
                    }
                    Output::Persist { lsn, record, prompt } => self.group_commit.append(now, lsn, &record, prompt)?,
                    // Carried out once the turn's records are durable, outside this drain (the
                    // node is replaced); the latest ask wins.
                    Output::CatchUp { from, epoch } => self.catch_up_asked = Some((from, epoch)),
                }
            }
            let Some(answer) = self.answers.pop_front() else { break };
            self.deliver(now, answer);
        }
        let configuration = self.node.configuration();
        if configuration != self.configuration {
            let member = configuration.contains(self.config.id);
            tracing::info!(node = %self.config.id, from = %self.configuration, to = %configuration, member, "configuration installed");
            // A cluster without configuration changes never leaves its first epoch (see the
            // check in `on_frame`).
            if !self.config.timing.leases && configuration.epoch > self.configuration.epoch {
                return Err(ServerError::ConfigurationChangedWithoutAvailability { configuration });
            }
            self.configuration = configuration;
        }
        Ok(())
    }

    /// Sends a message to a peer: as a sealed datagram in UDP mode, else queued on its link
    /// (which connects first if it is down and its backoff is over). A message that cannot go
    /// is dropped and counted; the protocol retransmits until it is answered.
    fn send_to_peer(&mut self, to: NodeId, message: Frame) {
        if let PeerSecurity::Datagrams(datagrams) = &mut self.security {
            let (Some(&addr), Some(udp)) = (self.config.peers.get(&to), &self.peer_udp) else { return };
            self.encode_buffer.clear();
            frame::encode(&message, &mut self.encode_buffer);
            let mut sealed = Vec::with_capacity(self.encode_buffer.len() + OVERHEAD_BYTES);
            if !datagrams.seal(unix_micros() / 1000, to, &self.encode_buffer, &mut sealed) {
                tracing::error!(peer = %to, "no pair key for this peer in the credentials; its messages cannot be sent");
                ServerStats::add(&self.stats.peer_messages_dropped, 1);
            } else if sealed.len() > DATAGRAM_BYTES_MAX {
                tracing::error!(peer = %to, bytes = sealed.len(), "a message to a peer does not fit a datagram; dropped");
                ServerStats::add(&self.stats.peer_messages_dropped, 1);
            } else if udp.send_to(&sealed, addr).is_err() {
                // UDP is lossy by nature: the protocol's retransmission makes up for it.
                ServerStats::add(&self.stats.peer_messages_dropped, 1);
            }
            return;
        }
        let Some(index) = self.links.iter().position(|link| link.id == to) else { return };
        let now = self.clock.now();
        if self.links[index].should_connect(now) {
            self.connect_link(now, index);
        }
        self.encode_buffer.clear();
        frame::encode(&message, &mut self.encode_buffer);
        match self.links[index].queue(&self.encode_buffer) {
            Queued::Buffered => {}
            Queued::DroppedLinkDown => ServerStats::add(&self.stats.peer_messages_dropped, 1),
            Queued::DroppedBufferFull => {
                self.disconnect_link(now, index, "its output buffer overflowed");
                ServerStats::add(&self.stats.peer_messages_dropped, 1);
            }
        }
    }

    /// Sends a client its reply: at once as a datagram, or queued on its connection.
    fn send_reply(&mut self, route: Route, reply: Frame) {
        match route {
            Route::Udp { .. } => self.send_datagram(route, &reply),
            // Replies to the gateway never come this way (see `drain_outputs`), nor do answers
            // to batches, which are the gateway's.
            Route::Gateway | Route::Coalesced => {}
            Route::Tcp { key, serial } => {
                self.encode_buffer.clear();
                frame::encode(&reply, &mut self.encode_buffer);
                match self.inbound.queue(key, serial, &self.encode_buffer) {
                    Ok(pending) => ServerStats::raise_to(&self.stats.reply_backlog_bytes_peak, pending as u64),
                    Err(OutputFull) => {
                        ServerStats::add(&self.stats.connections_dropped_output_full, 1);
                        self.drop_connection(key, "the client does not read its replies (output buffer full)");
                    }
                }
                // Replies count against the byte budget too: clients that ask and never read
                // must not hold more than it, whatever they asked for.
                self.keep_to_byte_budget(self.clock.now());
            }
        }
    }

    /// Writes out every queued frame: one write syscall per connection and peer link for
    /// everything the turn produced so far. Replies go first: on loopback a send runs the
    /// receiver's network stack in the sender's time, and a waiting client is the latency
    /// that counts; peers' COMMITs and acknowledgements can follow microseconds later.
    fn flush_queued(&mut self) {
        self.inbound.flush_queued();
        for link in &mut self.links {
            if let Some(connection) = link.connected_mut()
                && connection.output_pending() > 0
            {
                connection.flush();
            }
        }
    }

    /// While a sync is due, makes every record buffered so far durable with one sync, tells the
    /// node, and carries out what that releases, which may buffer more records (see
    /// [`GroupCommit`] for when a sync is due). Queued frames go out before each sync (they
    /// never depend on it: the node holds back whatever does), so peers work while this node
    /// waits for its disk, and again at the end.
    ///
    /// Writes of id-less clients gathered so far start here, once every event of the turn has
    /// been handled (so they run together), and again whenever answers let more start.
    fn sync_and_release(&mut self, now: Time) -> Result<(), ServerError> {
        loop {
            self.start_coalesced(now)?;
            if let Some(synced) = self.group_commit.finished()? {
                self.on_synced(now, synced)?;
            }
            if self.group_commit.sync_due(now) && !self.group_commit.syncing() {
                self.flush_queued();
                if self.node.prepared_count() > 1 || self.others_waiting()? {
                    // The disk works on the syncer thread while this one serves what is
                    // waiting, or the messages of the other transactions prepared here, bound
                    // to come in meanwhile; what they log goes into the next sync, as soon as
                    // this one is done.
                    self.group_commit.start_sync()?;
                } else {
                    // Nothing else to do: waiting here is quickest (no thread to wake, and
                    // none to wake this one).
                    let synced = self.group_commit.sync()?;
                    self.on_synced(now, synced)?;
                    continue;
                }
            }
            self.flush_queued();
            if !self.coalescer.has_ready() {
                return Ok(());
            }
        }
    }

    /// Whether anything else waits to be done: a socket with input (or closed) ready now. Polls
    /// without waiting, unless an earlier call this turn did; the events it finds are the next
    /// turn's. A wake-up alone (a sync or a catch-up done, a stop), or room to write, is no work
    /// to overlap with the disk.
    fn others_waiting(&mut self) -> Result<bool, ServerError> {
        if !self.early_events_pending {
            match self.poll.poll(&mut self.early_events, Some(Duration::ZERO)) {
                Ok(()) => self.early_events_pending = !self.early_events.is_empty(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ServerError::EventLoop { what: "polling", source }),
            }
        }
        let input = |event: &Event| event.is_readable() || event.is_read_closed() || event.is_error();
        Ok(self.early_events_pending && self.early_events.iter().any(|event| event.token() != WAKER && input(event)))
    }

    /// Tells the node what a sync made durable, and carries out what that releases.
    fn on_synced(&mut self, now: Time, synced: Synced) -> Result<(), ServerError> {
        self.count_sync(synced);
        self.node.handle(now, Input::Durable { through: synced.through });
        self.drain_outputs(now)
    }

    /// Says, once per wait, why a node asking to be added back stays out: it was removed soon
    /// after its last add, and waits longer each time (docs/protocol.md §7.6), which nothing
    /// else tells the operator (a user saw a restarted node kept out for a minute, silently).
    fn log_joins_held_back(&mut self, now: Time) {
        let held: BTreeMap<NodeId, Time> = self.node.joins_held_back(now).into_iter().collect();
        for (&node, &until) in &held {
            if self.joins_held_back.get(&node) != Some(&until) {
                let wait = until.saturating_since(now);
                tracing::warn!(
                    node = %self.config.id,
                    joining = %node,
                    wait_secs = wait.as_secs_f64(),
                    "node {node} asks to be added back, but it was removed within a minute of its last add (it keeps failing, restarting or losing touch): it is added back in {:.1} s. The wait grows with each such removal (none after the first, then 1, 3, 7, … up to 63 detection timeouts), so that a node that keeps coming and going cannot make the cluster change its configuration over and over; it starts over once the node stays a member for a minute",
                    wait.as_secs_f64()
                );
            }
        }
        self.joins_held_back = held;
    }

    /// Says how the node's bootstrap ended (docs/protocol.md §7.1).
    fn bootstrapping_ended(&mut self) {
        ServerStats::set(&self.stats.bootstrapping, 0);
        let (node, dir) = (self.config.id, self.config.data_dir.display());
        if self.node.vouches_for_its_log() {
            ServerStats::set(&self.stats.bootstrapped_as_member, 1);
            tracing::info!(%node, "every node held nothing and has begun: this node takes part as a member of the new cluster");
        } else {
            tracing::warn!(
                %node,
                data_dir = %dir,
                "--init was given, but another node already holds this cluster's state: this node's data dir {dir} was lost or replaced, so it bootstraps nothing, and votes on and serves nothing until it has caught up from the members (in a cluster that runs with --availability). Leave --init off restarts"
            );
        }
    }

    fn count_sync(&self, synced: Synced) {
        ServerStats::add(&self.stats.syncs, 1);
        ServerStats::add(&self.stats.records_synced, synced.records);
    }

    // ---- Timeouts ----

    /// Ends connections that outlived their limits, abandons peer connects that take too long,
    /// and updates the gauges in [`ServerStats`].
    fn housekeeping(&mut self, now: Time) -> Result<(), ServerError> {
        if self.node.is_bootstrapping() && self.bootstrap_log.due(now).is_some() {
            let waiting = self.node.bootstrap_waits_for();
            tracing::info!(
                node = %self.config.id,
                %waiting,
                "bootstrapping a new cluster (--init): waiting to hear from {waiting} (that it holds nothing, then that it has begun too); a first start needs every node up"
            );
        }
        self.log_joins_held_back(now);
        for (key, serial) in self.inbound.sessions() {
            self.call_session(now, key, serial, SessionCall::Tick);
        }
        self.drain_outputs(now)?;
        let buffered = self.inbound.buffered_bytes();
        for ExpiredConnection { key, expiry } in self.inbound.expired(now, &self.config.connection) {
            match expiry {
                Expiry::Close(why) => self.close_connection(key, why),
                Expiry::Drop(why) => self.drop_connection(key, why),
            }
        }
        for index in 0..self.links.len() {
            if self.links[index].connect_timed_out(now) {
                self.disconnect_link(now, index, "connect timed out");
            }
        }
        ServerStats::set(&self.stats.connections_open, self.inbound.len() as u64);
        ServerStats::set(&self.stats.connection_buffer_bytes, buffered as u64);
        ServerStats::set(&self.stats.reply_routes, self.routes.len() as u64);
        Ok(())
    }
}

/// The group commit over `wal`, with its syncer thread, which wakes the event loop.
fn group_commit(wal: Wal, id: NodeId, waker: &Arc<Waker>) -> Result<GroupCommit, ServerError> {
    GroupCommit::with_syncer(wal, format!("dkv-sync-{}", id.0), Arc::clone(waker))
        .map_err(|source| ServerError::EventLoop { what: "starting the syncer thread", source })
}

/// Checks the membership, checks that the data dir is this node's of `cluster`, recovers the
/// log and starts the node from what it holds.
fn start_node(config: &ServerConfig, clock: &Clock, cluster: ClusterId) -> Result<(Node, Wal), ServerError> {
    let core_config = node_config(config)?;
    let (wal, recovery) = Wal::open_as(&config.data_dir, Identity { cluster, node: config.id })?;
    tracing::info!(
        node = %config.id,
        data_dir = %config.data_dir.display(),
        records = recovery.records.len(),
        segments = recovery.segments_read,
        "recovered the log"
    );
    let dir = config.data_dir.display();
    let node = match Start::decide(&recovery.records, config.init, !config.peers.is_empty()) {
        Start::FromLog { init_ignored } => {
            if init_ignored {
                tracing::info!(
                    node = %config.id,
                    data_dir = %dir,
                    "--init ignored: this data dir holds a log, and a log is bootstrapped only once; the node starts from it"
                );
            }
            // A cut whole record that failed its checksum may have been acknowledged: the node
            // then cannot vouch for its log (docs/protocol.md §7.4).
            let node = Node::start_after_cut(core_config, recovery.records, clock.now(), recovery.cut_tail)?;
            // The trap a new user fell into: a first start without --init leaves logs that
            // cannot vouch for themselves, and --init on the next start is ignored.
            if init_ignored && !node.vouches_for_its_log() {
                tracing::warn!(
                    node = %config.id,
                    data_dir = %dir,
                    "--init ignored, and this node still cannot vouch for its log (it has never been a member of the cluster, or lost its data): it takes part in nothing until it has caught up from a member. If every node of a new cluster was first started without --init, none can be a source: stop them all, delete their data dirs, and start them all with --init"
                );
            }
            node
        }
        Start::NewCluster => {
            let how = if config.peers.is_empty() {
                "the data dir holds no log: this node, its cluster's only member (no --peers), starts a new cluster"
            } else {
                "the data dir holds no log and this is a new cluster (--init): this node starts as a member of its first configuration once every other node has said it holds nothing either"
            };
            tracing::info!(node = %config.id, data_dir = %dir, configuration = %core_config.members, "{how}");
            Node::start_bootstrapping(core_config, clock.now())?
        }
        Start::CatchUp => {
            let how = if config.timing.leases {
                "who remove it and add it back to catch up (--availability)"
            } else {
                "which needs a cluster that runs with --availability (`dkv-server availability on`, every node stopped): without it, it stays out and writes fail"
            };
            tracing::warn!(
                node = %config.id,
                data_dir = %dir,
                "data dir {dir} holds no log and --init was not given: this node may be a member whose data was lost, so it votes on and serves nothing until it has caught up from the members, {how}. If this is a new cluster's first start, stop this node, delete {dir} (it now records that the node cannot vouch for its state) and start it again with --init before any write is made: once the others hold writes, it can only catch up"
            );
            Node::start_unvouched(core_config, recovery.records, clock.now())?
        }
    };
    Ok((node, wal))
}

/// Checks the membership and makes the core's configuration of this node.
fn node_config(config: &ServerConfig) -> Result<Config, ServerError> {
    if config.peers.contains_key(&config.id) {
        return Err(ServerError::SelfInPeers { id: config.id });
    }
    let ids = std::iter::once(config.id).chain(config.peers.keys().copied());
    let members = NodeSet::from_ids(ids.clone()).ok_or_else(|| ServerError::NodeIdTooLarge {
        id: ids.map(|id| id.0).max().unwrap_or(0),
        max: NodeSet::CAPACITY,
    })?;
    let mut core_config = Config::new(config.id, members);
    core_config.limits = config.limits;
    core_config.timing = config.timing;
    core_config.bounds = config.bounds;
    // The seed only drives retry jitter; any value works, a random one spreads nodes apart.
    core_config.seed = getrandom::u64().unwrap_or(u64::from(config.id.0));
    Ok(core_config)
}

/// The cluster this node belongs to: its credentials' (which are needed as soon as it has
/// peers, and must be its own), or `ClusterId(0)` for a single node without credentials.
pub(crate) fn cluster_of(config: &ServerConfig) -> Result<ClusterId, ServerError> {
    match &config.credentials {
        None if config.peers.is_empty() => Ok(ClusterId(0)),
        None => Err(ServerError::NoCredentials { id: config.id }),
        Some(credentials) if credentials.node != config.id => {
            Err(ServerError::WrongCredentials { found: credentials.node, expected: config.id })
        }
        Some(credentials) => match credentials.availability {
            Some(recorded) if recorded != config.timing.leases => {
                Err(ServerError::ModeDiffers { recorded, running: config.timing.leases })
            }
            _ => Ok(credentials.cluster),
        },
    }
}

/// How this node proves itself to its peers and checks them (its credentials were checked by
/// [`cluster_of`]).
fn peer_security(config: &ServerConfig) -> Result<PeerSecurity, ServerError> {
    let Some(credentials) = &config.credentials else {
        return Ok(PeerSecurity::None);
    };
    let security = if config.peers.is_empty() {
        PeerSecurity::None
    } else if config.transport.peers_over_udp() {
        // Only the configured peers' keys: a member dropped from --peers is not heard.
        let keys = credentials.peer_keys.iter().filter(|(id, _)| config.peers.contains_key(id));
        let keys = keys.map(|(&id, &key)| (id, key)).collect();
        // A session must be newer than any this node used before; the data dir keeps the last.
        let session = next_session(&config.data_dir, unix_micros())
            .map_err(|source| ServerError::Session { dir: config.data_dir.clone(), source })?;
        PeerSecurity::Datagrams(Box::new(PeerDatagrams::new(&keys, credentials.cluster, config.id, session)))
    } else {
        PeerSecurity::Tls(PeerTls::new(credentials)?)
    };
    Ok(security)
}

/// Whether a listening socket's token is one of the peer port's.
fn is_peer(token: Token) -> bool {
    token == PEER_LISTENER || token == PEER_UDP
}

fn bind_listener(addr: SocketAddr, token: Token, registry: &Registry) -> Result<TcpListener, ServerError> {
    let mut listener = TcpListener::bind(addr).map_err(|source| ServerError::Bind {
        addr,
        transport: "TCP",
        peer: is_peer(token),
        source,
    })?;
    registry
        .register(&mut listener, token, Interest::READABLE)
        .map_err(|source| ServerError::EventLoop { what: "registering the listener", source })?;
    Ok(listener)
}

fn bind_udp(addr: SocketAddr, token: Token, registry: &Registry) -> Result<UdpSocket, ServerError> {
    let mut udp = UdpSocket::bind(addr).map_err(|source| ServerError::Bind {
        addr,
        transport: "UDP",
        peer: is_peer(token),
        source,
    })?;
    registry
        .register(&mut udp, token, Interest::READABLE)
        .map_err(|source| ServerError::EventLoop { what: "registering the UDP socket", source })?;
    Ok(udp)
}
