//! Completion records: for each client, its last request that completed, with the outcome.
//! They are part of the replicated state: every participant records them when it applies a
//! commit decision, so a retry at any node is recognised and answered with the original outcome
//! instead of being run again.
//!
//! Every definite outcome of a write is decided by two-phase commit — including "key not found",
//! which commits as a no-op — so a completion record fences every other attempt of the same
//! request: no two attempts can both complete, and no client is ever told an outcome that
//! another attempt contradicts.
//!
//! The table is bounded: past `completions_max` clients, the client whose last completion is
//! oldest is forgotten first — but never before the record is `completion_retention` old. A
//! forgotten client is new to the node, so a retry of its last request would run again; the
//! retention is what keeps that from happening: every retry and duplicate of a request reaches
//! a node within the client's retry window (dkv-net's client gives up after its request
//! timeout, at most [`CLIENT_RETRY_WINDOW_MAX`]) plus the network's delay, and so while the
//! record is still held.
//!
//! Records younger than the retention may fill the table past `completions_max` up to twice
//! it (the hard bound); a new client's write is answered "busy" (its participants vote NO) only
//! when the table holds that many and none is past its retention, and the table then exceeds
//! the hard bound only by the transactions admitted before it filled (at most `prepared_max`).
//! The slack matters after a restart: a record's age is not logged, so every recovered record
//! counts as made at the restart, and a table recovered full must still admit new clients while
//! those ages run out. Recovery itself keeps at most the hard bound, dropping the oldest (by log
//! order) beyond it: only more than twice `completions_max` distinct clients completing within
//! one retention before the crash could drop a record a retry still needs.
//!
//! A known hazard: requests carry no age, so a copy that reaches the node after the retention
//! (held in the socket buffer of a node frozen for longer than the margin between the client's
//! window and the retention, 15 s by default) could find its record evicted and run again — if
//! the table was also full enough to evict it. Stamping requests with their age and refusing
//! those past the window would close it.

use crate::ids::{ClientId, RequestId};
use crate::operation::{FailReason, OpFailure, OpResult, Outcome};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest a client may go on sending a request after it first sent it. The default
/// completion retention (60 s, [`crate::Timing::completion_retention`]) outlasts it by a
/// margin for the network's delay and for clocks that run at different rates; a client that
/// resent a request later could find its record evicted and have it applied twice. dkv-net's
/// client library never waits longer than this for one request.
pub const CLIENT_RETRY_WINDOW_MAX: Duration = Duration::from_secs(45);

/// The outcome a write request completed with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "CompletedEncoding", into = "CompletedEncoding")]
pub enum Completed {
    /// Every op applied, with these results (one per op; none for a record logged by a build
    /// before ops had results).
    Committed(Vec<OpResult>),
    /// Nothing applied: an op could not run (the transaction committed as a no-op).
    Failed(OpFailure),
}

/// How a [`Completed`] is encoded, in the log and in messages. Its first two variants are the
/// encoding of the earlier `Completed { Committed, KeyNotFound { op_index } }`, so logs
/// written before ops had results or failures other reasons still read back (and a record
/// such an earlier build can read is written that way still).
#[derive(Clone, Serialize, Deserialize)]
enum CompletedEncoding {
    Committed,
    KeyNotFound { op_index: u32 },
    CommittedWithResults(Vec<OpResult>),
    Failed(OpFailure),
}

impl From<CompletedEncoding> for Completed {
    fn from(encoded: CompletedEncoding) -> Completed {
        match encoded {
            CompletedEncoding::Committed => Completed::Committed(Vec::new()),
            CompletedEncoding::KeyNotFound { op_index } => {
                Completed::Failed(OpFailure { op_index, reason: FailReason::KeyNotFound })
            }
            CompletedEncoding::CommittedWithResults(results) => Completed::Committed(results),
            CompletedEncoding::Failed(failure) => Completed::Failed(failure),
        }
    }
}

impl From<Completed> for CompletedEncoding {
    fn from(completed: Completed) -> CompletedEncoding {
        match completed {
            Completed::Committed(results) if results.is_empty() => CompletedEncoding::Committed,
            Completed::Committed(results) => CompletedEncoding::CommittedWithResults(results),
            Completed::Failed(OpFailure { op_index, reason: FailReason::KeyNotFound }) => {
                CompletedEncoding::KeyNotFound { op_index }
            }
            Completed::Failed(failure) => CompletedEncoding::Failed(failure),
        }
    }
}

impl Completed {
    /// The outcome of running ops on a store: what [`crate::store::Store::run`] says.
    pub fn of_run(run: Result<Vec<OpResult>, OpFailure>) -> Completed {
        match run {
            Ok(results) => Completed::Committed(results),
            Err(failure) => Completed::Failed(failure),
        }
    }

    pub fn is_committed(&self) -> bool {
        matches!(self, Completed::Committed(_))
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Completed::Committed(results) => Outcome::Committed(results),
            Completed::Failed(failure) => Outcome::Failed(failure),
        }
    }
}

/// One completion record, as snapshots store them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionRecord {
    pub request: RequestId,
    pub outcome: Completed,
}

#[derive(Clone, Debug)]
pub struct Completions {
    /// Client -> (last completed seq, its outcome, stamp of that completion).
    by_client: BTreeMap<ClientId, (u64, Completed, u64)>,
    /// Stamp -> (client, when its record was made), oldest first: the eviction order.
    by_stamp: BTreeMap<u64, (ClientId, Time)>,
    next_stamp: u64,
    capacity: usize,
    /// How long a record is kept at least, whatever the capacity.
    retention: Duration,
    /// The node's latest time ([`Completions::advance`]).
    now: Time,
    /// Records evicted so far.
    evicted: u64,
}

/// How a request relates to what its client already completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Not completed: run it.
    New,
    /// This very request completed already, with this outcome.
    Done(Completed),
    /// A later request of the same client completed: this one is an old duplicate.
    Stale { completed_seq: u64 },
}

impl Completions {
    /// An empty table of `capacity` clients, each record kept at least `retention`, at time
    /// `now`.
    pub fn new(capacity: usize, retention: Duration, now: Time) -> Completions {
        Completions {
            by_client: BTreeMap::new(),
            by_stamp: BTreeMap::new(),
            next_stamp: 0,
            capacity: capacity.max(1),
            retention,
            now,
            evicted: 0,
        }
    }

    /// Time has moved on to `now` (it never goes back): records past their retention may go.
    pub fn advance(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.evict_over_capacity();
    }

    /// Whether a write of `client` may be admitted: a client the table holds always may; a new
    /// one while the table is below its hard bound, or when its oldest record is past the
    /// retention and may make room.
    pub fn admits(&self, client: ClientId) -> bool {
        self.by_client.contains_key(&client) || self.by_client.len() < self.hard_bound() || self.oldest_expired()
    }

    /// Records the table may hold before new clients are refused: twice its capacity (see the
    /// module's documentation).
    fn hard_bound(&self) -> usize {
        self.capacity.saturating_mul(2)
    }

    /// Records that `id` completed with `outcome`, replaying the log at start: every record
    /// counts as made now, and past the hard bound the oldest go whatever their age, so that a
    /// long log cannot grow the table without bound.
    pub fn record_recovered(&mut self, id: RequestId, outcome: Completed) {
        self.record(id, outcome);
        while self.by_client.len() > self.hard_bound() {
            let Some((_, (oldest, _))) = self.by_stamp.pop_first() else { break };
            self.by_client.remove(&oldest);
            self.evicted += 1;
        }
    }

    /// Records evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Forgets every record (a snapshot replaces them all).
    pub fn clear(&mut self) {
        self.by_client.clear();
        self.by_stamp.clear();
    }

    fn oldest_expired(&self) -> bool {
        self.by_stamp.first_key_value().is_some_and(|(_, &(_, made))| made + self.retention <= self.now)
    }

    /// Evicts oldest first while over capacity, but only records past their retention.
    fn evict_over_capacity(&mut self) {
        while self.by_client.len() > self.capacity && self.oldest_expired() {
            let Some((_, (oldest, _))) = self.by_stamp.pop_first() else { break };
            self.by_client.remove(&oldest);
            self.evicted += 1;
        }
    }

    pub fn classify(&self, id: RequestId) -> Completion {
        match self.by_client.get(&id.client) {
            Some((seq, outcome, _)) if *seq == id.seq => Completion::Done(outcome.clone()),
            Some((seq, _, _)) if *seq > id.seq => Completion::Stale { completed_seq: *seq },
            _ => Completion::New,
        }
    }

    /// Records that `id` completed with `outcome`. A client's record only moves forward.
    pub fn record(&mut self, id: RequestId, outcome: Completed) {
        if let Some(&(seq, _, stamp)) = self.by_client.get(&id.client) {
            if seq >= id.seq {
                return;
            }
            self.by_stamp.remove(&stamp);
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.by_client.insert(id.client, (id.seq, outcome, stamp));
        self.by_stamp.insert(stamp, (id.client, self.now));
        self.evict_over_capacity();
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Records oldest first; recording them in this order into an empty table rebuilds it.
    pub fn iter_oldest_first(&self) -> impl Iterator<Item = CompletionRecord> + '_ {
        self.by_stamp.values().map(|(client, _)| {
            let (seq, outcome, _) = &self.by_client[client];
            CompletionRecord { request: RequestId { client: *client, seq: *seq }, outcome: outcome.clone() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: Completed = Completed::Committed(Vec::new());

    fn id(client: u64, seq: u64) -> RequestId {
        RequestId { client: ClientId(client), seq }
    }

    /// A client's record only moves forward, and requests are classified against it.
    #[test]
    fn record_moves_forward_and_classifies() {
        let mut c = Completions::new(10, Duration::ZERO, Time::ZERO);
        assert_eq!(c.classify(id(1, 1)), Completion::New);
        c.record(id(1, 3), COMMITTED);
        c.record(id(1, 2), COMMITTED);
        assert_eq!(c.classify(id(1, 3)), Completion::Done(COMMITTED));
        assert_eq!(c.classify(id(1, 2)), Completion::Stale { completed_seq: 3 });
        assert_eq!(c.classify(id(1, 4)), Completion::New);
    }

    /// A completion record encodes exactly as it did before failures had a typed reason, so
    /// logs written by earlier versions read back.
    #[test]
    fn encoding_is_unchanged_from_earlier_logs() {
        let missing = Completed::Failed(OpFailure { op_index: 3, reason: FailReason::KeyNotFound });
        assert_eq!(postcard::to_allocvec(&COMMITTED).unwrap(), [0]);
        assert_eq!(postcard::to_allocvec(&missing).unwrap(), [1, 3]);
        assert_eq!(postcard::from_bytes::<Completed>(&[1, 3]).unwrap(), missing);
        // Results and the newer reasons take variants of their own, appended.
        let results = Completed::Committed(vec![crate::OpResult::Done { version: 2 }]);
        assert_eq!(postcard::to_allocvec(&results).unwrap(), [2, 1, 0, 2]);
        let condition = Completed::Failed(OpFailure { op_index: 1, reason: FailReason::ConditionFailed });
        assert_eq!(postcard::to_allocvec(&condition).unwrap(), [3, 1, 1]);
        for completed in [results, condition] {
            let bytes = postcard::to_allocvec(&completed).unwrap();
            assert_eq!(postcard::from_bytes::<Completed>(&bytes).unwrap(), completed);
        }
    }

    /// Past capacity, the client whose last commit is oldest is forgotten first.
    #[test]
    fn oldest_client_is_evicted_first() {
        let mut c = Completions::new(2, Duration::ZERO, Time::ZERO);
        let missing = Completed::Failed(OpFailure { op_index: 0, reason: FailReason::KeyNotFound });
        c.record(id(1, 1), COMMITTED);
        c.record(id(2, 1), COMMITTED);
        c.record(id(1, 2), missing.clone()); // client 1 is now the most recent
        c.record(id(3, 1), COMMITTED);
        let kept: Vec<_> = c.iter_oldest_first().map(|r| (r.request, r.outcome)).collect();
        assert_eq!(kept, vec![(id(1, 2), missing), (id(3, 1), COMMITTED)]);
    }

    /// A record younger than the retention is never evicted, however full the table: a new
    /// client is not admitted instead, until the oldest record has aged past it. Then the
    /// oldest goes first.
    #[test]
    fn records_are_kept_for_the_retention() {
        let retention = Duration::from_secs(10);
        let (t0, t1) = (Time::ZERO, Time::ZERO + Duration::from_secs(1));
        let mut c = Completions::new(2, retention, t0);
        c.record(id(1, 1), COMMITTED);
        c.advance(t1);
        for client in 2..=4 {
            assert!(c.admits(ClientId(client)), "below the hard bound, young records or not");
            c.record(id(client, 1), COMMITTED);
        }
        assert!(c.admits(ClientId(1)) && c.admits(ClientId(4)), "clients the table holds");
        assert!(!c.admits(ClientId(5)), "at the hard bound (twice the capacity), all young");
        // Admitted before the table filled, a fifth client's record still goes in, evicting
        // nobody young.
        c.record(id(5, 1), COMMITTED);
        assert_eq!((c.len(), c.evicted()), (5, 0));
        assert_eq!(c.classify(id(1, 1)), Completion::Done(COMMITTED));
        c.advance(t0 + retention);
        assert_eq!(c.classify(id(1, 1)), Completion::New, "past its retention, over capacity: evicted");
        assert_eq!((c.len(), c.evicted()), (4, 1));
        assert!(!c.admits(ClientId(6)), "the others are still young");
        c.advance(t1 + retention);
        assert_eq!(c.len(), 2, "past their retention, evicted down to the capacity, not below");
        assert!(c.admits(ClientId(6)));
        c.record(id(6, 1), COMMITTED);
        let kept: Vec<u64> = c.iter_oldest_first().map(|r| r.request.client.0).collect();
        assert_eq!(kept, vec![5, 6], "the oldest expired record made room");
    }

    /// Replaying a log keeps at most the hard bound, oldest dropped first: a long log cannot
    /// grow the table without bound, though every replayed record counts as young.
    #[test]
    fn recovery_keeps_at_most_the_hard_bound() {
        let mut c = Completions::new(2, Duration::from_secs(60), Time::ZERO);
        for client in 1..=7 {
            c.record_recovered(id(client, 1), COMMITTED);
        }
        let kept: Vec<u64> = c.iter_oldest_first().map(|r| r.request.client.0).collect();
        assert_eq!(kept, vec![4, 5, 6, 7]);
        assert_eq!(c.evicted(), 3);
        assert!(!c.admits(ClientId(8)), "full of young records at the hard bound");
    }
}
