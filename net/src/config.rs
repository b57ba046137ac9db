//! What a server needs to know: who it is, where its peers are, which transports it speaks,
//! how it proves it is a member, where its log lives, and the limits that keep its memory
//! bounded.

use crate::gateway::GatewayLimits;
use crate::security::credentials::NodeCredentials;
use crate::security::users::User;
use dkv_core::{Bounds, Limits, NodeId, Timing};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The largest frame sent as one UDP datagram. The IPv4 maximum is 65,507 bytes; staying a
/// little under it leaves room for any encapsulation on the way.
pub const DATAGRAM_BYTES_MAX: usize = 65_000;

/// Which transports a server speaks. Clients use the client port, peers the peer port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Clients over TCP only; peers over TCP (mutual TLS).
    Tcp,
    /// Clients over UDP only; peers over UDP too (sealed datagrams), so every request must fit
    /// one datagram (see [`udp_limits`]).
    Udp,
    /// Clients over TCP and UDP on the same port; peers over TCP (mutual TLS). The default.
    Both,
}

impl Transport {
    pub fn serves_tcp(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Both)
    }

    pub fn serves_udp(self) -> bool {
        matches!(self, Transport::Udp | Transport::Both)
    }

    /// Whether peers exchange messages over UDP datagrams instead of TCP links.
    pub fn peers_over_udp(self) -> bool {
        self == Transport::Udp
    }
}

/// Limits for a cluster whose nodes talk over UDP: a PREPARE carries the whole transaction and
/// must fit one datagram, so values and transactions are smaller than the defaults
/// (value ≤ 48 KiB, transaction ≤ 256 ops and ≤ 56 KiB; keys keep their 4 KiB limit).
pub fn udp_limits() -> Limits {
    Limits {
        key_bytes_max: 4 * 1024,
        value_bytes_max: 48 * 1024,
        txn_ops_max: 256,
        txn_bytes_max: 56 * 1024,
        ..Limits::default()
    }
}

/// Per-connection limits and timeouts: what one client may cost the server at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open client connections. When all are taken, the client connection idle longest is
    /// closed to make room for a new one.
    pub connections_max: usize,
    /// Bytes all connections may hold in their buffers together (partial frames read, replies
    /// not yet written). Past it, the connection holding the most that has not proven who it is
    /// (a client, or an unauthenticated connection to the peer port) is dropped, until the
    /// total is back under it. Authenticated peers are never dropped for it.
    pub buffer_bytes_max: usize,
    /// Connections accepted on the peer port. When full, the longest-waiting one that has not
    /// yet proven it is a member is closed to make room; if all have, a new one is refused.
    /// Clients never take these slots.
    pub peer_connections_max: usize,
    /// Replies waiting for a slow reader; a connection that falls further behind is closed.
    pub output_bytes_max: usize,
    /// A connection that sends no whole frame within this long after connecting is closed.
    pub first_frame_timeout: Duration,
    /// A frame whose bytes started arriving must be complete within this long.
    pub partial_frame_timeout: Duration,
    /// A connection with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Routes of replies still owed to clients; the oldest are forgotten beyond this.
    pub reply_routes_max: usize,
    /// Error replies to bad UDP datagrams per second at most, so junk cannot make this node
    /// flood someone else.
    pub udp_error_replies_per_second: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            connections_max: 1024,
            peer_connections_max: 256,
            buffer_bytes_max: 256 << 20,
            output_bytes_max: 32 << 20,
            first_frame_timeout: Duration::from_secs(10),
            partial_frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            reply_routes_max: 65_536,
            udp_error_replies_per_second: 100,
        }
    }
}

/// Everything a [`crate::Server`] is started with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: NodeId,
    /// Where clients reach this node (TCP and/or UDP, same port).
    pub listen: SocketAddr,
    /// Where peers reach this node: TCP with mutual TLS, or sealed datagrams in UDP mode.
    pub peer_listen: SocketAddr,
    /// The other members and their peer addresses (this node excluded).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// How this node proves it is a member, and checks that its peers are. Needed as soon as
    /// there are peers; a one-node cluster may go without. With them, clients may also use TLS.
    pub credentials: Option<Arc<NodeCredentials>>,
    /// The users clients must authenticate as (see [`crate::security::users`]); `None`: every
    /// client is served, which a server refuses on a non-loopback address unless `insecure`.
    pub users: Option<Vec<User>>,
    /// Serve unauthenticated clients on a non-loopback address anyway (protected mode off).
    pub insecure: bool,
    pub transport: Transport,
    pub data_dir: PathBuf,
    /// This node's data dir starts a new cluster (`dkv-server --init`): a log with no records
    /// starts as a member of the first configuration. Without it, such a log starts unvouched
    /// and catches up from the members first, since it may be the log of a member whose dir
    /// was emptied ([`crate::bootstrap`]). A log that holds records ignores it.
    pub init: bool,
    pub limits: Limits,
    pub timing: Timing,
    pub bounds: Bounds,
    pub connection: ConnectionLimits,
    /// What the node may hold for clients of protocols without request ids (Redis, the
    /// original text protocol), which it runs requests for under client ids of its own.
    pub gateway: GatewayLimits,
}

impl ServerConfig {
    /// A configuration with default limits for `transport` ([`udp_limits`] in UDP mode).
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        peer_listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        transport: Transport,
        data_dir: PathBuf,
    ) -> ServerConfig {
        let limits = if transport.peers_over_udp() { udp_limits() } else { Limits::default() };
        ServerConfig {
            id,
            listen,
            peer_listen,
            peers,
            credentials: None,
            users: None,
            insecure: false,
            transport,
            data_dir,
            init: false,
            limits,
            timing: Timing::default(),
            bounds: Bounds::default(),
            connection: ConnectionLimits::default(),
            gateway: GatewayLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In UDP mode, the largest frame the limits allow fits one datagram.
    #[test]
    fn udp_limits_fit_one_datagram() {
        assert!(udp_limits().frame_bytes_max() as usize <= DATAGRAM_BYTES_MAX);
    }
}
