//! Completion records: for each client, the last request that committed. They are part of the
//! replicated state (every participant records them when it applies a commit), so a retry at
//! any node is recognised and answered with the original outcome instead of being applied twice.
//!
//! Only commits are recorded: an aborted request changed nothing, so running it again is not a
//! second application. The table is bounded: past `completions_max` clients, the client whose
//! last commit is oldest is forgotten first.

use crate::ids::{ClientId, RequestId};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Completions {
    /// Client -> (last committed seq, stamp of that commit).
    by_client: BTreeMap<ClientId, (u64, u64)>,
    /// Stamp -> client, oldest first: the eviction order.
    by_stamp: BTreeMap<u64, ClientId>,
    next_stamp: u64,
    capacity: usize,
}

/// How a request relates to what its client already completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Not completed: run it.
    New,
    /// This very request committed already.
    Committed,
    /// A later request of the same client committed: this one is an old duplicate.
    Stale { completed_seq: u64 },
}

impl Completions {
    pub fn new(capacity: usize) -> Completions {
        Completions { by_client: BTreeMap::new(), by_stamp: BTreeMap::new(), next_stamp: 0, capacity: capacity.max(1) }
    }

    pub fn classify(&self, id: RequestId) -> Completion {
        match self.by_client.get(&id.client) {
            Some(&(seq, _)) if seq == id.seq => Completion::Committed,
            Some(&(seq, _)) if seq > id.seq => Completion::Stale { completed_seq: seq },
            _ => Completion::New,
        }
    }

    /// Records that `id` committed. A client's record only moves forward.
    pub fn record(&mut self, id: RequestId) {
        if let Some(&(seq, stamp)) = self.by_client.get(&id.client) {
            if seq >= id.seq {
                return;
            }
            self.by_stamp.remove(&stamp);
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.by_client.insert(id.client, (id.seq, stamp));
        self.by_stamp.insert(stamp, id.client);
        while self.by_client.len() > self.capacity {
            let Some((_, oldest)) = self.by_stamp.pop_first() else { break };
            self.by_client.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Records oldest first; recording them in this order into an empty table rebuilds it.
    pub fn iter_oldest_first(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.by_stamp.values().map(|client| RequestId { client: *client, seq: self.by_client[client].0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: u64, seq: u64) -> RequestId {
        RequestId { client: ClientId(client), seq }
    }

    /// A client's record only moves forward, and requests are classified against it.
    #[test]
    fn record_moves_forward_and_classifies() {
        let mut c = Completions::new(10);
        assert_eq!(c.classify(id(1, 1)), Completion::New);
        c.record(id(1, 3));
        c.record(id(1, 2));
        assert_eq!(c.classify(id(1, 3)), Completion::Committed);
        assert_eq!(c.classify(id(1, 2)), Completion::Stale { completed_seq: 3 });
        assert_eq!(c.classify(id(1, 4)), Completion::New);
    }

    /// Past capacity, the client whose last commit is oldest is forgotten first.
    #[test]
    fn oldest_client_is_evicted_first() {
        let mut c = Completions::new(2);
        c.record(id(1, 1));
        c.record(id(2, 1));
        c.record(id(1, 2)); // client 1 is now the most recent
        c.record(id(3, 1));
        assert_eq!(c.iter_oldest_first().collect::<Vec<_>>(), vec![id(1, 2), id(3, 1)]);
    }
}
