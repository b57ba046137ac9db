//! Identifiers of nodes, clients, requests and transactions.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A cluster member. Clusters have at most [`NodeSet::CAPACITY`] members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u8);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A cluster: chosen at random when its credentials are made (`dkv-server init`), and carried
/// by every peer frame, so that a node never acts on a message meant for another cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A set of nodes as a bit set: cheap to copy, ordered iteration, no allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeSet(u64);

impl NodeSet {
    pub const CAPACITY: usize = 64;
    pub const EMPTY: NodeSet = NodeSet(0);

    /// `None` if a node id is outside the set's capacity.
    pub fn from_ids(ids: impl IntoIterator<Item = NodeId>) -> Option<NodeSet> {
        let mut set = NodeSet::EMPTY;
        for id in ids {
            if usize::from(id.0) >= Self::CAPACITY {
                return None;
            }
            set.insert(id);
        }
        Some(set)
    }

    /// The nodes `0..count`.
    pub fn first(count: usize) -> NodeSet {
        NodeSet::from_ids((0..count.min(Self::CAPACITY)).map(|i| NodeId(i as u8))).unwrap_or_default()
    }

    pub fn contains(self, id: NodeId) -> bool {
        usize::from(id.0) < Self::CAPACITY && self.0 & (1 << id.0) != 0
    }

    /// Ids beyond the capacity are ignored; configuration validation rejects them earlier.
    pub fn insert(&mut self, id: NodeId) {
        if usize::from(id.0) < Self::CAPACITY {
            self.0 |= 1 << id.0;
        }
    }

    pub fn remove(&mut self, id: NodeId) {
        if usize::from(id.0) < Self::CAPACITY {
            self.0 &= !(1 << id.0);
        }
    }

    /// The set with `id` added.
    pub fn with(mut self, id: NodeId) -> NodeSet {
        self.insert(id);
        self
    }

    pub fn without(mut self, id: NodeId) -> NodeSet {
        self.remove(id);
        self
    }

    pub fn union(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 | other.0)
    }

    pub fn difference(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & !other.0)
    }

    pub fn intersection(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & other.0)
    }

    pub fn is_superset(self, other: NodeSet) -> bool {
        other.0 & !self.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The nodes in ascending order. Visits only the set bits: this runs on every input (a
    /// scan of all 64 bits showed in profiles).
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let lowest = rest.trailing_zeros();
                rest &= rest - 1;
                NodeId(lowest as u8)
            })
        })
    }
}

impl fmt::Display for NodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.iter().map(|n| n.to_string()).collect();
        write!(f, "{{{}}}", names.join(","))
    }
}

/// A client, as chosen by the client (the client library draws a random 64-bit id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub u64);

/// Identifies one request of one client. A client has at most one request outstanding and
/// numbers its requests with strictly increasing `seq`; a retry reuses the same id, which is how
/// dkv recognises it (exactly-once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: ClientId,
    pub seq: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{:x}#{}", self.client.0, self.seq)
    }
}

/// A transaction: one attempt by one coordinator to commit one client request. The
/// coordinator's incarnation (bumped durably at every start) keeps ids unique across restarts,
/// so a participant asking about an old transaction never gets the outcome of a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnId {
    pub coordinator: NodeId,
    pub incarnation: u64,
    pub number: u64,
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}.{}.{}", self.coordinator.0, self.incarnation, self.number)
    }
}

/// The opaque handle a driver attaches to a client request so that it can route the reply
/// (a connection, a UDP address, a simulated client). The core only hands it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyTo(pub u64);

/// Log sequence number: the position of a record in the stream of records a node asked to
/// persist since it started. Drivers report durability as "everything up to this lsn".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    /// Set operations and ordered iteration.
    #[test]
    fn node_set_operations() {
        let all = NodeSet::first(4);
        assert_eq!(all.len(), 4);
        let some = NodeSet::from_ids([NodeId(1), NodeId(3)]).unwrap();
        assert_eq!(all.difference(some).iter().collect::<Vec<_>>(), vec![NodeId(0), NodeId(2)]);
        assert!(all.is_superset(some) && !some.is_superset(all));
        assert_eq!(some.intersection(NodeSet::first(2)).iter().collect::<Vec<_>>(), vec![NodeId(1)]);
        assert_eq!(NodeSet::from_ids([NodeId(64)]), None);
        assert_eq!(some.to_string(), "{n1,n3}");
    }

    /// A node id from a peer may be anything up to 255: past the capacity it is in no set, and
    /// inserting it changes nothing (never a shift overflow).
    #[test]
    fn ids_past_the_capacity_are_in_no_set() {
        let mut all = NodeSet::first(NodeSet::CAPACITY);
        assert!(all.contains(NodeId(63)));
        for id in [64, 65, 255] {
            assert!(!all.contains(NodeId(id)), "n{id}");
            all.insert(NodeId(id));
            assert_eq!(all, NodeSet::first(NodeSet::CAPACITY), "n{id}");
        }
    }

    /// `iter` yields every member once, in ascending order, the highest id (63) included.
    #[test]
    fn iter_yields_the_members_in_ascending_order() {
        let ids = [0u8, 5, 62, 63];
        let set = NodeSet::from_ids(ids.map(NodeId)).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), ids.map(NodeId).to_vec());
        let all: Vec<NodeId> = NodeSet::first(NodeSet::CAPACITY).iter().collect();
        assert_eq!(all, (0..64).map(NodeId).collect::<Vec<_>>());
        assert_eq!(NodeSet::EMPTY.iter().count(), 0);
    }
}
