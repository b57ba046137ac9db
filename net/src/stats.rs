//! Counters a running server shares with other threads (tests, an operator's status line).
//! Written only by the event loop; read from anywhere.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ServerStats {
    /// Client and inbound peer connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Connections closed by the server: bad frames, timeouts, overflowing buffers, or too
    /// many connections.
    pub connections_dropped: AtomicU64,
    /// Client connections dropped because their replies would have outgrown the output buffer
    /// limit (`output_bytes_max`): the client does not read them. Counted in
    /// `connections_dropped` too.
    pub connections_dropped_output_full: AtomicU64,
    /// The most reply bytes any client connection has had waiting to be written, since start:
    /// at most `output_bytes_max`, or one reply if a single one is larger.
    pub reply_backlog_bytes_peak: AtomicU64,
    /// Connections closed to make room: the longest-idle client when every client slot was
    /// taken, the longest-waiting unproven peer-port connection when those were, or the largest
    /// unproven one when the byte budget ran out.
    pub connections_evicted: AtomicU64,
    /// Bytes held in connection buffers now (input and output, all connections).
    pub connection_buffer_bytes: AtomicU64,
    /// Frames (TCP or UDP) that could not be decoded, or that a server does not accept.
    pub frames_rejected: AtomicU64,
    /// Client requests handed to the node.
    pub requests: AtomicU64,
    /// Replies sent to clients.
    pub replies: AtomicU64,
    /// Group commits: one fdatasync each.
    pub syncs: AtomicU64,
    /// Records the group commits made durable.
    pub records_synced: AtomicU64,
    /// Reply routes held now.
    pub reply_routes: AtomicU64,
    /// Answers to datagrams not sent because even an error saying why would have been more
    /// than 3 times the datagram's size (the anti-amplification limit).
    pub udp_replies_withheld: AtomicU64,
    /// Client requests refused because the node requires users and the client was not one, or
    /// its user may not make the request.
    pub permission_denied: AtomicU64,
    /// Users' tokens or signatures refused (wrong, stale, replayed, or sent in the clear).
    pub auth_failures: AtomicU64,
    /// Peer frames refused: sent to the client port, from a connection or datagram that did
    /// not prove it is the member it names, for another cluster, or replayed.
    pub peer_frames_refused: AtomicU64,
    /// Connections to the peer port closed because they did not prove they are a member (a
    /// failed handshake, a certificate naming no member), or to make room for one that might.
    pub peer_connections_refused: AtomicU64,
    /// Messages to peers dropped because a link was down or its output buffer full, or a
    /// datagram could not be sent.
    pub peer_messages_dropped: AtomicU64,
    /// Requests the node ran for clients of protocols without request ids (Redis, the original
    /// text protocol), since start (each counts once, however often it was retried).
    pub gateway_requests: AtomicU64,
    /// Of those, answered "busy" because the gateway ran as many as it may.
    pub gateway_busy: AtomicU64,
    /// Of those, writes answered that they waited too long to be run (nothing applied): behind
    /// earlier writes of their keys that had no outcome yet, or on a busy node.
    pub gateway_expired: AtomicU64,
    /// Transactions the gateway ran for batches of those clients' writes, gathered over an
    /// event-loop turn (see the coalescer): far fewer than the writes, under load.
    pub gateway_batches: AtomicU64,
    /// Client ids the gateway has made since start: at most its `slots_max`, however many
    /// connections came and went (each leaves a completion record on every node).
    pub gateway_client_ids: AtomicU64,
    /// State transfers this node finished serving (every chunk acknowledged).
    pub transfers_served: AtomicU64,
    /// The most bytes of a state transfer sent and not yet acknowledged, since start: at most
    /// the asker's window.
    pub transfer_in_flight_bytes_peak: AtomicU64,
    /// Times this node caught up from a member and started again from its state (the join,
    /// docs/protocol.md §7.6).
    pub catch_ups: AtomicU64,
    /// Catch-ups that failed and left this node's log as it was (the node asks again).
    pub catch_ups_failed: AtomicU64,
    /// 1 while the node bootstraps a new cluster (`--init`): it waits for every other node's
    /// answer before it takes part (docs/protocol.md §7.1); 0 once it took part, or stands
    /// outside to catch up.
    pub bootstrapping: AtomicU64,
    /// 1 once a bootstrap ended with this node a member; 0 if it ended outside (another node
    /// held the cluster's state) or the node never bootstrapped.
    pub bootstrapped_as_member: AtomicU64,
}

impl ServerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises a peak gauge to `n` if it is below. A load and, rarely, a store rather than an
    /// atomic read-modify-write on every call: the event loop is the only writer.
    pub(crate) fn raise_to(counter: &AtomicU64, n: u64) {
        if counter.load(Ordering::Relaxed) < n {
            counter.store(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }
}
