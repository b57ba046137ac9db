//! Outbound links to the other nodes over TCP.
//!
//! Each node sends its messages to a peer over one connection it opens itself, and receives the
//! peer's messages on a connection the peer opened (accepted by the listener like any client).
//! Frames name their sender, so no handshake is needed. A link connects when there is a message
//! to send (so the first frame follows the connect at once, and an idle cluster holds no idle
//! connections the listener would time out), and reconnects with exponential backoff; during
//! the backoff, messages to that peer are dropped. That is safe: the protocol retransmits every
//! message on timers until it is answered, exactly as over lossy UDP.

use crate::connection::{Connection, OutputFull};
use dkv_core::{NodeId, Time};
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::time::Duration;

const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connection attempt that has not completed by then is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) enum ConnectProgress {
    Connected,
    Pending,
    Failed,
}

pub(crate) enum LinkState {
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

pub(crate) struct PeerLink {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) state: LinkState,
    backoff: Duration,
    /// Messages dropped because the link was down or its buffer full; for logs and tests.
    pub(crate) messages_dropped: u64,
}

impl PeerLink {
    pub(crate) fn new(id: NodeId, addr: SocketAddr, now: Time) -> PeerLink {
        PeerLink {
            id,
            addr,
            state: LinkState::Down { retry_at: now },
            backoff: RECONNECT_BACKOFF_MIN,
            messages_dropped: 0,
        }
    }

    pub(crate) fn connection_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            LinkState::Down { .. } => None,
            LinkState::Connecting { connection, .. } | LinkState::Up { connection } => Some(connection),
        }
    }

    /// Starts a non-blocking connect. The caller registers the returned stream's connection.
    pub(crate) fn start_connect(
        &mut self,
        now: Time,
        serial: u64,
        frame_bytes_max: u32,
        output_bytes_max: usize,
    ) -> bool {
        match TcpStream::connect(self.addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let connection = Connection::new(stream, self.addr, serial, now, frame_bytes_max, output_bytes_max);
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

    /// After an event while connecting: whether the connect completed, failed, or goes on.
    pub(crate) fn check_connected(&mut self, now: Time) -> ConnectProgress {
        let LinkState::Connecting { connection, .. } = &mut self.state else { return ConnectProgress::Pending };
        if let Ok(Some(_)) | Err(_) = connection.stream.take_error() {
            return ConnectProgress::Failed;
        }
        match connection.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return ConnectProgress::Pending,
            Err(_) => return ConnectProgress::Failed,
        }
        let LinkState::Connecting { mut connection, .. } =
            std::mem::replace(&mut self.state, LinkState::Down { retry_at: now })
        else {
            unreachable!("the state was checked to be Connecting above");
        };
        tracing::info!(peer = %self.id, addr = %self.addr, "connected to peer");
        self.backoff = RECONNECT_BACKOFF_MIN;
        connection.flush();
        self.state = LinkState::Up { connection };
        ConnectProgress::Connected
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

    /// Queues an encoded frame (written by the next flush). `Err` means the buffer overflowed:
    /// the caller drops the link.
    pub(crate) fn queue(&mut self, encoded: &[u8]) -> Result<(), OutputFull> {
        match &mut self.state {
            LinkState::Down { .. } => {
                self.messages_dropped += 1;
                Ok(())
            }
            LinkState::Connecting { connection, .. } | LinkState::Up { connection } => connection.queue(encoded),
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
