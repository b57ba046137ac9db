//! [`InboundConnections`]: the TCP connections this node accepted, and what the event loop owes
//! each of them this turn.

use crate::config::ConnectionLimits;
use crate::connection::{Connection, Expiry, OutputFull, Role};
use dkv_core::Time;
use slab::Slab;
use std::collections::BTreeSet;

/// The connections the listeners accepted, by slab key (their poll tokens are made from it):
/// clients' on the client port, and the links peers opened to the peer port (see
/// [`Connection::role`]).
///
/// Besides the connections it keeps two lists for the event loop, each naming a connection at
/// most once, and both bounded by the number of connections:
/// - the connections with input left over after their read budget, to be read again next turn
///   (edge-triggered polling does not report them again);
/// - the connections with frames queued since the last flush, so that [`Self::flush_queued`]
///   writes everything a turn produced for one connection with one syscall.
pub(crate) struct InboundConnections {
    connections: Slab<Connection>,
    read_again: BTreeSet<usize>,
    to_flush: Vec<usize>,
}

/// A connection that has outlived its limits (see [`Connection::expiry`]).
pub(crate) struct ExpiredConnection {
    pub(crate) key: usize,
    pub(crate) expiry: Expiry,
}

impl InboundConnections {
    pub(crate) fn new() -> InboundConnections {
        InboundConnections { connections: Slab::new(), read_again: BTreeSet::new(), to_flush: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.connections.len()
    }

    /// The key the next inserted connection gets, so its stream can be registered for events
    /// under its token before the connection is inserted.
    pub(crate) fn vacant_key(&self) -> usize {
        self.connections.vacant_key()
    }

    /// Inserts a connection under [`Self::vacant_key`], and returns that key.
    pub(crate) fn insert(&mut self, connection: Connection) -> usize {
        self.connections.insert(connection)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&Connection> {
        self.connections.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Connection> {
        self.connections.get_mut(key)
    }

    /// Removes a connection, which is then no longer read again. Its key may stay listed for
    /// the next flush: flushing a key reused by then only writes what its new connection holds.
    pub(crate) fn remove(&mut self, key: usize) -> Option<Connection> {
        let connection = self.connections.try_remove(key)?;
        self.read_again.remove(&key);
        Some(connection)
    }

    /// Lists a connection whose read budget ran out, to be read again next turn.
    pub(crate) fn read_again_next_turn(&mut self, key: usize) {
        self.read_again.insert(key);
    }

    /// Whether a connection has input left over, so the next turn must not wait for events.
    pub(crate) fn any_to_read_again(&self) -> bool {
        !self.read_again.is_empty()
    }

    /// The connections to read again now, forgotten as they are handed out.
    pub(crate) fn take_read_again(&mut self) -> BTreeSet<usize> {
        std::mem::take(&mut self.read_again)
    }

    /// Queues an encoded frame for the connection at `key` and lists it for the next flush.
    /// A frame for a connection that has closed since (gone, or `key` now holds a connection
    /// with another serial) is dropped, as a lost datagram would be; the client's retry
    /// recovers. `Err` means the connection's output buffer overflowed: the caller drops it.
    pub(crate) fn queue(&mut self, key: usize, serial: u64, encoded: &[u8]) -> Result<(), OutputFull> {
        let Some(connection) = self.connections.get_mut(key) else { return Ok(()) };
        if connection.serial != serial {
            return Ok(());
        }
        connection.queue(encoded)?;
        if !connection.flush_listed {
            connection.flush_listed = true;
            self.to_flush.push(key);
        }
        Ok(())
    }

    /// Writes out what every listed connection has queued, one write syscall each.
    pub(crate) fn flush_queued(&mut self) {
        for key in self.to_flush.drain(..) {
            if let Some(connection) = self.connections.get_mut(key) {
                connection.flush_listed = false;
                connection.flush();
            }
        }
    }

    /// Connections to the peer port (`peer`), or client connections.
    pub(crate) fn count(&self, peer: bool) -> usize {
        self.connections.iter().filter(|(_, c)| matches!(c.role, Role::Peer(_)) == peer).count()
    }

    /// The connection to the peer port that has waited longest without proving it is a member.
    pub(crate) fn oldest_unproven_peer(&self) -> Option<usize> {
        self.connections
            .iter()
            .filter(|(_, c)| c.role == Role::Peer(None))
            .min_by_key(|(_, c)| (c.opened_at(), c.serial))
            .map(|(key, _)| key)
    }

    /// Bytes held in memory for all connections.
    pub(crate) fn buffered_bytes(&self) -> u64 {
        self.connections.iter().map(|(_, connection)| connection.buffered_bytes() as u64).sum()
    }

    /// The connections that should end at `now` under `limits`, and why.
    pub(crate) fn expired(&self, now: Time, limits: &ConnectionLimits) -> Vec<ExpiredConnection> {
        self.connections
            .iter()
            .filter_map(|(key, connection)| Some(ExpiredConnection { key, expiry: connection.expiry(now, limits)? }))
            .collect()
    }
}
