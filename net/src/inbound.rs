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
/// It keeps the total of the bytes all of them hold in their buffers, which only changes
/// through its own methods ([`Self::with`] lends a connection out and counts what changed), so
/// the event loop can hold every connection to one byte budget.
///
/// Besides the connections it keeps two lists for the event loop, each naming a connection at
/// most once, and both bounded by the number of connections:
/// - the connections with input left over after their read budget, to be read again next turn
///   (edge-triggered polling does not report them again);
/// - the connections with frames queued since the last flush, so that [`Self::flush_queued`]
///   writes everything a turn produced for one connection with one syscall.
pub(crate) struct InboundConnections {
    connections: Slab<Connection>,
    /// Bytes held in all connections' buffers (their capacity: what memory they take).
    buffered: usize,
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
        InboundConnections { connections: Slab::new(), buffered: 0, read_again: BTreeSet::new(), to_flush: Vec::new() }
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
        self.buffered += connection.buffered_bytes();
        self.connections.insert(connection)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&Connection> {
        self.connections.get(key)
    }

    /// Runs `f` on the connection at `key`, if there is one, and counts what it changed in the
    /// connection's buffers.
    pub(crate) fn with<R>(&mut self, key: usize, f: impl FnOnce(&mut Connection) -> R) -> Option<R> {
        let connection = self.connections.get_mut(key)?;
        let before = connection.buffered_bytes();
        let result = f(connection);
        self.buffered = self.buffered - before + connection.buffered_bytes();
        Some(result)
    }

    /// Bytes held in all connections' buffers.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// The connection that holds the most bytes, among those that have not proven who they are
    /// (clients, and peer-port connections not yet authenticated): the first to go when the
    /// byte budget runs out.
    pub(crate) fn largest_unproven(&self) -> Option<(usize, usize)> {
        self.connections
            .iter()
            .filter(|(_, c)| !matches!(c.role, Role::Peer(Some(_))))
            .map(|(key, c)| (key, c.buffered_bytes()))
            .max_by_key(|&(key, bytes)| (bytes, std::cmp::Reverse(key)))
    }

    /// The client connection that has been idle longest: the first to go when every client
    /// slot is taken.
    pub(crate) fn longest_idle_client(&self) -> Option<usize> {
        self.connections
            .iter()
            .filter(|(_, c)| c.role == Role::Client)
            .min_by_key(|(_, c)| (c.last_active(), c.serial))
            .map(|(key, _)| key)
    }

    /// Removes a connection, which is then no longer read again. Its key may stay listed for
    /// the next flush: flushing a key reused by then only writes what its new connection holds.
    pub(crate) fn remove(&mut self, key: usize) -> Option<Connection> {
        let connection = self.connections.try_remove(key)?;
        self.buffered -= connection.buffered_bytes();
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
    /// recovers. `Ok` holds the bytes the connection now has waiting to be written (0 for a
    /// dropped frame); `Err` means its output buffer overflowed: the caller drops it.
    pub(crate) fn queue(&mut self, key: usize, serial: u64, encoded: &[u8]) -> Result<usize, OutputFull> {
        let Some(connection) = self.connections.get(key) else { return Ok(0) };
        if connection.serial != serial {
            return Ok(0);
        }
        let listed = connection.flush_listed;
        let pending = self
            .with(key, |connection| {
                connection.flush_listed = true;
                connection.queue(encoded).map(|()| connection.output_pending())
            })
            .expect("the connection is there")?;
        if !listed {
            self.to_flush.push(key);
        }
        Ok(pending)
    }

    /// Writes out what every listed connection has queued, one write syscall each.
    pub(crate) fn flush_queued(&mut self) {
        for key in std::mem::take(&mut self.to_flush) {
            self.with(key, |connection| {
                connection.flush_listed = false;
                connection.flush();
            });
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

    /// The key and serial of every connection that carries a stream session.
    pub(crate) fn sessions(&self) -> Vec<(usize, u64)> {
        self.connections.iter().filter(|(_, c)| c.has_session()).map(|(key, c)| (key, c.serial)).collect()
    }

    /// The connections that should end at `now` under `limits`, and why.
    pub(crate) fn expired(&self, now: Time, limits: &ConnectionLimits) -> Vec<ExpiredConnection> {
        self.connections
            .iter()
            .filter_map(|(key, connection)| Some(ExpiredConnection { key, expiry: connection.expiry(now, limits)? }))
            .collect()
    }
}
