//! Outbound links to the other nodes over TCP, inside mutual TLS.
//!
//! Each node sends its messages to a peer over one connection it opens itself to the peer's
//! peer port, and receives the peer's messages on a connection the peer opened. TLS proves both
//! ends are members (see [`crate::security::tls`]): the peer that accepts learns who connected,
//! and the node that connects checks it reached the member it dialled. A link connects when
//! there is a message to send (so the first frame follows the connect at once, and an idle
//! cluster holds no idle connections the listener would time out), and reconnects with
//! exponential backoff; during the backoff, messages to that peer are dropped. That is safe: the protocol retransmits every
//! message on timers until it is answered, exactly as over lossy UDP.

use crate::connection::{Connection, OutputFull, Role};
use dkv_core::{NodeId, Time};
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::time::Duration;

const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Well under the default `detection_timeout` (1 s): a link that broke for a moment is up again
/// before the member at its other end is suspected and removed (docs/protocol.md §7.3). (At 2 s,
/// a blip under load got live members removed in `net/tests/leases.rs`.) A connection attempt
/// every quarter second to a member that is down costs next to nothing.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(250);
/// A connection attempt that has not completed by then is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How a connect in progress stands after an event on its socket.
pub(crate) enum ConnectProgress {
    Connected,
    Pending,
    Failed,
}

/// What became of a frame handed to [`PeerLink::queue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// It waits in the link's output buffer for the next flush.
    Buffered,
    /// The link is down, backing off before it reconnects: the frame is dropped, and the
    /// protocol's retransmission makes up for it.
    DroppedLinkDown,
    /// The link's output buffer would overflow: the frame is dropped, and the caller takes the
    /// link down (its peer does not keep up).
    DroppedBufferFull,
}

enum LinkState {
    /// Not connected; connect for the first message sent at or after `retry_at`.
    Down {
        retry_at: Time,
    },
    /// A non-blocking connect is in progress; messages queue in the connection's buffer.
    Connecting {
        connection: Connection,
        since: Time,
    },
    Up {
        connection: Connection,
    },
}

/// This node's connection to one peer, for sending it messages, and when to reconnect.
pub(crate) struct PeerLink {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    state: LinkState,
    /// How long to wait before the next connect after this one fails; doubles at each failure.
    backoff: Duration,
}

impl PeerLink {
    pub(crate) fn new(id: NodeId, addr: SocketAddr, now: Time) -> PeerLink {
        PeerLink { id, addr, state: LinkState::Down { retry_at: now }, backoff: RECONNECT_BACKOFF_MIN }
    }

    pub(crate) fn connection_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            LinkState::Down { .. } => None,
            LinkState::Connecting { connection, .. } | LinkState::Up { connection } => Some(connection),
        }
    }

    /// The link's connection once connected: nothing is written to a socket still connecting
    /// (a write to one that was refused takes its error, and the event saying so loses it).
    pub(crate) fn connected_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            LinkState::Up { connection } => Some(connection),
            LinkState::Down { .. } | LinkState::Connecting { .. } => None,
        }
    }

    /// Starts a non-blocking connect, and returns whether one is now in progress; if so, the
    /// caller registers the link's connection for events. If not, a retry is scheduled.
    pub(crate) fn start_connect(
        &mut self,
        now: Time,
        tls: rustls::Connection,
        serial: u64,
        frame_bytes_max: u32,
        output_bytes_max: usize,
    ) -> bool {
        match TcpStream::connect(self.addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (addr, role) = (self.addr, Role::Link);
                let connection =
                    Connection::new(stream, addr, role, Some(tls), serial, now, frame_bytes_max, output_bytes_max);
                self.state = LinkState::Connecting { connection, since: now };
                true
            }
            Err(error) => {
                tracing::debug!(peer = %self.id, addr = %self.addr, %error, "cannot connect to peer");
                self.schedule_retry(now);
                false
            }
        }
    }

    pub(crate) fn is_connecting(&self) -> bool {
        matches!(self.state, LinkState::Connecting { .. })
    }

    /// After an event while connecting: whether the connect completed, failed, or goes on.
    /// `hung_up`: the event said the socket is closed or failed. Its error may already have
    /// been taken by another call, so a socket not connected that hung up failed (waiting
    /// for another event would wait out the whole connect timeout: no event follows).
    pub(crate) fn check_connected(&mut self, now: Time, hung_up: bool) -> ConnectProgress {
        let LinkState::Connecting { connection, .. } = &mut self.state else { return ConnectProgress::Pending };
        if let Ok(Some(_)) | Err(_) = connection.stream.take_error() {
            return ConnectProgress::Failed;
        }
        match connection.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected && !hung_up => return ConnectProgress::Pending,
            Err(_) => return ConnectProgress::Failed,
        }
        let LinkState::Connecting { mut connection, .. } =
            std::mem::replace(&mut self.state, LinkState::Down { retry_at: now })
        else {
            unreachable!("the state was checked to be Connecting above");
        };
        tracing::debug!(peer = %self.id, addr = %self.addr, "connected to peer; TLS handshake under way");
        connection.flush();
        self.state = LinkState::Up { connection };
        ConnectProgress::Connected
    }

    /// The TLS handshake completed: the peer is who it should be, so a later failure starts
    /// its backoff afresh. (Not when TCP connects: a link whose handshakes keep failing must
    /// back off, not retry every 50 ms.)
    pub(crate) fn mark_established(&mut self) {
        if self.backoff != RECONNECT_BACKOFF_MIN {
            tracing::info!(peer = %self.id, addr = %self.addr, "link to peer up");
        }
        self.backoff = RECONNECT_BACKOFF_MIN;
    }

    /// Whether the link is down and its backoff is over: a message now should connect it.
    pub(crate) fn should_connect(&self, now: Time) -> bool {
        matches!(self.state, LinkState::Down { retry_at } if retry_at <= now)
    }

    /// Whether a connect in progress has taken too long.
    pub(crate) fn connect_timed_out(&self, now: Time) -> bool {
        matches!(self.state, LinkState::Connecting { since, .. } if now.saturating_since(since) >= CONNECT_TIMEOUT)
    }

    /// Drops the connection (if any) and schedules a reconnect. Returns the dropped connection
    /// so the caller can deregister it.
    pub(crate) fn disconnect(&mut self, now: Time) -> Option<Connection> {
        let retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(RECONNECT_BACKOFF_MAX);
        match std::mem::replace(&mut self.state, LinkState::Down { retry_at }) {
            LinkState::Down { .. } => None,
            LinkState::Connecting { connection, .. } | LinkState::Up { connection } => Some(connection),
        }
    }

    fn schedule_retry(&mut self, now: Time) {
        self.state = LinkState::Down { retry_at: now + self.backoff };
        self.backoff = (self.backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }

    /// Queues an encoded frame, written by the next flush, or says why it was dropped.
    pub(crate) fn queue(&mut self, encoded: &[u8]) -> Queued {
        match &mut self.state {
            LinkState::Down { .. } => Queued::DroppedLinkDown,
            LinkState::Connecting { connection, .. } | LinkState::Up { connection } => {
                match connection.queue(encoded) {
                    Ok(()) => Queued::Buffered,
                    Err(OutputFull) => Queued::DroppedBufferFull,
                }
            }
        }
    }

    /// When this link next needs attention (a connect timing out), if ever.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        match &self.state {
            LinkState::Connecting { since, .. } => Some(*since + CONNECT_TIMEOUT),
            LinkState::Down { .. } | LinkState::Up { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::credentials::{NodeCredentials, init_cluster};
    use crate::security::tls::PeerTls;
    use mio::{Events, Interest, Poll, Token};

    /// A link whose connect is refused finds out at the refusal's event, even when something
    /// took the socket's error first (a write did, before `flush_queued` skipped links still
    /// connecting): the event's hang-up says it. Before, such a link stayed "connecting" for
    /// the whole connect timeout, and its peer, hearing nothing from this node, suspected it.
    #[test]
    fn a_refused_connect_fails_at_its_event() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(&dir.path().join("c"), &[NodeId(0), NodeId(1)]).unwrap();
        let tls = PeerTls::new(&NodeCredentials::load(&dir.path().join("c/node-0")).unwrap()).unwrap();
        let port = crate::testing::free_ports(1)[0];
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut link = PeerLink::new(NodeId(1), addr, Time::ZERO);
        assert!(link.start_connect(Time::ZERO, tls.connect(NodeId(1)), 1, 1 << 20, 1 << 20));
        assert!(link.connected_mut().is_none(), "nothing is written to a link still connecting");
        let mut poll = Poll::new().unwrap();
        let connection = link.connection_mut().unwrap();
        poll.registry().register(&mut connection.stream, Token(0), Interest::READABLE | Interest::WRITABLE).unwrap();
        // Wait for the refusal (the loop is bounded; loopback refuses at once).
        let mut events = Events::with_capacity(4);
        let mut hung_up = false;
        for _ in 0..50 {
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            if let Some(event) = events.iter().next() {
                hung_up = event.is_error() || event.is_read_closed() || event.is_write_closed();
                if hung_up {
                    break;
                }
            }
        }
        assert!(hung_up, "loopback refuses a connect to a port nobody listens on");
        // What the old flush of a connecting link did: a write that takes the socket's error.
        let _ = std::io::Write::write(&mut link.connection_mut().unwrap().stream, b"x");
        assert!(matches!(link.check_connected(Time::ZERO, true), ConnectProgress::Failed));
    }
}
