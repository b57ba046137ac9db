//! Where to send each client reply. The core hands back an opaque [`ReplyTo`] token with every
//! reply; this table maps tokens to a TCP connection or a UDP source address.
//!
//! The table is bounded: when full, the oldest routes are forgotten. A reply whose route was
//! forgotten is dropped, and the client's timeout and retry (same request id, so never applied
//! twice) recover from it, exactly as from a lost datagram.

use dkv_core::ReplyTo;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// How many times the bytes of a datagram a node may send back to its unauthenticated sender
/// (QUIC's anti-amplification limit), so that a forged source address cannot turn the node into
/// a reflector that multiplies a flood.
pub(crate) const AMPLIFICATION_MAX: usize = 3;

impl Route {
    /// The route back to the unauthenticated sender of a `len`-byte datagram.
    pub(crate) fn unauthenticated_datagram(addr: SocketAddr, len: usize) -> Route {
        Route::Udp { addr, reply_bytes_max: len.saturating_mul(AMPLIFICATION_MAX) }
    }
}

/// Where a frame came from, and so where its reply (or an error) goes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A TCP connection: its slab key and its serial (the slot may have been reused since).
    Tcp { key: usize, serial: u64 },
    /// The source address of a datagram, and the most bytes an answer to it may have: for an
    /// unauthenticated sender, whose address may be forged, [`AMPLIFICATION_MAX`] times the
    /// datagram's size; for a user's signed request, a whole datagram.
    Udp { addr: SocketAddr, reply_bytes_max: usize },
    /// The node's own [`crate::gateway::Gateway`], which ran the request for a client of a
    /// protocol without request ids; the reply's id tells which.
    Gateway,
    /// A batch of such clients' writes ([`crate::coalesce::Coalescer`]); the answer's tag tells
    /// which.
    Coalesced,
}

/// The routes of the replies the node still owes, by the token it was given for each.
pub(crate) struct ReplyRoutes {
    next_token: u64,
    /// Ordered by token, i.e. by age, so the oldest is first.
    routes: BTreeMap<u64, Route>,
    routes_max: usize,
}

impl ReplyRoutes {
    pub(crate) fn new(routes_max: usize) -> ReplyRoutes {
        assert!(routes_max > 0, "the reply route table needs room for at least one route");
        ReplyRoutes { next_token: 0, routes: BTreeMap::new(), routes_max }
    }

    pub(crate) fn insert(&mut self, route: Route) -> ReplyTo {
        while self.routes.len() >= self.routes_max {
            self.routes.pop_first();
        }
        let token = self.next_token;
        self.next_token += 1;
        self.routes.insert(token, route);
        ReplyTo(token)
    }

    /// The route of a reply, forgotten as it is used: each token gets one reply.
    pub(crate) fn take(&mut self, to: ReplyTo) -> Option<Route> {
        self.routes.remove(&to.0)
    }

    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table never holds more than its bound; the oldest routes go first.
    #[test]
    fn table_is_bounded_and_forgets_oldest_first() {
        let mut routes = ReplyRoutes::new(2);
        let a = routes.insert(Route::Tcp { key: 1, serial: 1 });
        let b = routes.insert(Route::Tcp { key: 2, serial: 2 });
        let c = routes.insert(Route::Tcp { key: 3, serial: 3 });
        assert_eq!(routes.len(), 2);
        assert_eq!(routes.take(a), None);
        assert_eq!(routes.take(b), Some(Route::Tcp { key: 2, serial: 2 }));
        assert_eq!(routes.take(b), None);
        assert_eq!(routes.take(c), Some(Route::Tcp { key: 3, serial: 3 }));
    }
}
