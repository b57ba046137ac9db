//! [`Coalescer`]: the writes of clients without request ids (Redis, the original text
//! protocol), gathered over one event-loop turn and run as few transactions as the limits
//! allow, the way a Redis server answers every client of one event-loop turn after one fsync.
//!
//! Why: every dkv transaction costs a round of two-phase commit (messages to every member and
//! a log record on each), and transactions on the same key take turns under its lock. Fifty
//! Redis clients each setting one key (redis-benchmark sets one and the same key) would make
//! fifty transactions queue for one lock; one transaction of fifty ops commits them all at
//! once. Each client still gets exactly its own answer:
//!
//! - **Members** are the writes that arrived this turn, each a transaction of its own asker
//!   (at most one per connection: a session runs one request at a time, so one asker's writes
//!   are never reordered).
//! - A **batch** is members in arrival order, their ops concatenated into one transaction.
//!   Committed: each member's answer is its own slice of the results. Failed on one op (a
//!   condition, a non-number): nothing was applied; the member whose op failed runs again
//!   alone, for its own answer, and the members before and after it run again in batches.
//!   Refused: each member runs again alone. No outcome: every member is told so.
//! - Waiting is bounded: in writes and bytes, per datagram source, and in time. A write waits
//!   at most half the gateway's request timeout to start (past it, it is answered that nothing
//!   was applied), and its batch's deadline counts from its oldest member, so every batch has
//!   at least the other half to run and no write waits longer in all than the request timeout.
//! - Batches in flight never share a key: a member whose keys a running batch holds waits for
//!   it, so batches on this node do not conflict over their locks and retry each other.
//!
//! The linearization is sound: the members of a batch all run while their requests are
//! pending, and take effect at once, at its commit, in arrival order.

use crate::gateway::{Answer, Asker, GatewayError};
use crate::routes::Route;
use dkv_core::{Key, Limits, OpResult, Operation, Outcome, Time, TxnOp};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

/// Batches one node runs at once at most.
const BATCHES_IN_FLIGHT_MAX: usize = 8;
/// Writes waiting for a batch at most. A connection has one at a time, but datagrams of the
/// text protocol come at any rate: past this, a write is answered "busy" at once.
pub(crate) const WAITING_MAX: usize = 16_384;
/// Bytes of keys and values of the writes waiting, at most.
pub(crate) const WAITING_BYTES_MAX: usize = 64 << 20;
/// Writes waiting from one datagram source address at most (a connection has one anyway).
pub(crate) const WAITING_PER_DATAGRAM_SOURCE_MAX: usize = 64;

/// One asker's write, waiting or in a batch.
struct Member {
    asker: Asker,
    ops: Vec<TxnOp>,
    /// Runs in a batch of its own (after its batch failed on one of its ops).
    alone: bool,
    /// When it was first taken: it waits no longer than the gateway's deadline.
    queued_at: Time,
    bytes: usize,
}

impl Member {
    /// The datagram source it came from, if it came in a datagram.
    fn source(&self) -> Option<IpAddr> {
        match self.asker.route {
            Route::Udp { addr, .. } => Some(addr.ip()),
            _ => None,
        }
    }
}

/// A batch the gateway runs.
struct Batch {
    members: Vec<Member>,
    keys: Vec<Key>,
}

/// A transaction to hand to the gateway, under an asker of route [`Route::Coalesced`] and `tag`.
pub(crate) struct BatchStart {
    pub(crate) tag: u64,
    pub(crate) operation: Operation,
    /// When its oldest member was taken: the batch's deadline counts from then, so no member
    /// waits longer in all (to start, then to be answered) than the gateway's deadline.
    pub(crate) queued_at: Time,
}

/// The writes of id-less clients, waiting and running in batches.
pub(crate) struct Coalescer {
    limits: Limits,
    /// How long a write may wait to start: half the request timeout.
    wait_max: Duration,
    waiting: VecDeque<Member>,
    waiting_bytes: usize,
    waiting_per_source: BTreeMap<IpAddr, usize>,
    running: BTreeMap<u64, Batch>,
    /// The keys of running batches, with how many ops of them hold each.
    held: BTreeMap<Key, usize>,
    last_tag: u64,
}

impl Coalescer {
    /// A coalescer for a gateway whose requests get `request_timeout` in all. Its writes wait at
    /// most half of it to start: a batch then has at least the other half to run (its deadline
    /// counts from its oldest member). A write that waited longer is told nothing was applied,
    /// a definite answer; one squeezed into a batch with little time left would often be told
    /// the outcome is unknown instead.
    pub(crate) fn new(limits: Limits, request_timeout: Duration) -> Coalescer {
        Coalescer {
            limits,
            wait_max: request_timeout / 2,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            waiting_per_source: BTreeMap::new(),
            running: BTreeMap::new(),
            held: BTreeMap::new(),
            last_tag: 0,
        }
    }

    /// Takes a write to run in a coming batch; refused (the caller answers "busy") past the
    /// bounds on writes waiting: [`WAITING_MAX`], [`WAITING_BYTES_MAX`], and
    /// [`WAITING_PER_DATAGRAM_SOURCE_MAX`] for a datagram's source.
    pub(crate) fn add(&mut self, now: Time, asker: Asker, ops: Vec<TxnOp>) -> Result<(), GatewayError> {
        let bytes = ops.iter().map(op_bytes).sum();
        let member = Member { asker, ops, alone: false, queued_at: now, bytes };
        if self.waiting.len() >= WAITING_MAX || self.waiting_bytes + bytes > WAITING_BYTES_MAX {
            return Err(GatewayError::Busy { max: WAITING_MAX });
        }
        if let Some(source) = member.source()
            && self.waiting_per_source.get(&source).copied().unwrap_or(0) >= WAITING_PER_DATAGRAM_SOURCE_MAX
        {
            return Err(GatewayError::Busy { max: WAITING_PER_DATAGRAM_SOURCE_MAX });
        }
        self.count_in(&member);
        self.waiting.push_back(member);
        Ok(())
    }

    fn count_in(&mut self, member: &Member) {
        self.waiting_bytes += member.bytes;
        if let Some(source) = member.source() {
            *self.waiting_per_source.entry(source).or_insert(0) += 1;
        }
    }

    fn count_out(&mut self, member: &Member) {
        self.waiting_bytes -= member.bytes;
        if let Some(source) = member.source()
            && let Some(count) = self.waiting_per_source.get_mut(&source)
        {
            *count -= 1;
            if *count == 0 {
                self.waiting_per_source.remove(&source);
            }
        }
    }

    /// When the oldest write waiting reaches its deadline.
    pub(crate) fn deadline(&self) -> Option<Time> {
        self.waiting.iter().map(|m| m.queued_at).min().map(|at| at + self.wait_max)
    }

    /// Answers the writes that waited past their deadline without starting: nothing of them
    /// was applied.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<Answer> {
        if !self.waiting.iter().any(|m| now.saturating_since(m.queued_at) >= self.wait_max) {
            return Vec::new();
        }
        let (expired, kept): (VecDeque<Member>, VecDeque<Member>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|m| now.saturating_since(m.queued_at) >= self.wait_max);
        self.waiting = kept;
        expired
            .into_iter()
            .map(|member| {
                self.count_out(&member);
                let waited = now.saturating_since(member.queued_at);
                let error = GatewayError::Expired { waited };
                Answer { asker: member.asker, result: Err(error) }
            })
            .collect()
    }

    /// Whether a write waits that could start now (no running batch holds its keys).
    pub(crate) fn has_ready(&self) -> bool {
        self.running.len() < BATCHES_IN_FLIGHT_MAX && self.waiting.iter().any(|m| !self.is_held(m))
    }

    /// Writes waiting, and batches running.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.waiting.len(), self.running.len())
    }

    fn is_held(&self, member: &Member) -> bool {
        member.ops.iter().any(|op| self.held.contains_key(op.key()))
    }

    /// The batches to start now, from the writes waiting, in arrival order: as many members as
    /// fit the transaction limits each (half the byte limit, so the results fit too), none
    /// whose keys a running batch holds. Call [`Coalescer::expire`] first: a member that waited
    /// out its deadline would leave its batch no time.
    pub(crate) fn take_ready(&mut self) -> Vec<BatchStart> {
        let mut starts = Vec::new();
        let ops_max = self.limits.txn_ops_max as usize;
        let bytes_max = self.limits.txn_bytes_max as usize / 2;
        while self.running.len() < BATCHES_IN_FLIGHT_MAX && self.waiting.iter().any(|m| !self.is_held(m)) {
            let mut members = Vec::new();
            let (mut ops, mut bytes) = (0, 0);
            let mut kept = VecDeque::new();
            while let Some(member) = self.waiting.pop_front() {
                let member_bytes: usize = member.ops.iter().map(op_bytes).sum();
                let fits =
                    members.is_empty() || (ops + member.ops.len() <= ops_max && bytes + member_bytes <= bytes_max);
                let full = members.first().is_some_and(|first: &Member| first.alone);
                if (member.alone && !members.is_empty()) || full {
                    // A member that runs alone closes the batch before it: the ones after it
                    // do not overtake it.
                    kept.push_back(member);
                    kept.extend(self.waiting.drain(..));
                    break;
                }
                if self.is_held(&member) || !fits || in_members(&members, &member.asker) {
                    kept.push_back(member);
                    continue;
                }
                ops += member.ops.len();
                bytes += member_bytes;
                self.count_out(&member);
                members.push(member);
            }
            self.waiting = kept;
            if members.is_empty() {
                break;
            }
            let keys: Vec<Key> = members.iter().flat_map(|m| m.ops.iter().map(|op| op.key().to_vec())).collect();
            // From now on a write of these keys waits for this batch, in the next one.
            for key in &keys {
                *self.held.entry(key.clone()).or_insert(0) += 1;
            }
            self.last_tag += 1;
            let ops = members.iter().flat_map(|m| m.ops.iter().cloned()).collect();
            let queued_at = members.iter().map(|m| m.queued_at).min().expect("a batch has members");
            self.running.insert(self.last_tag, Batch { members, keys });
            starts.push(BatchStart { tag: self.last_tag, operation: Operation::Txn { ops }, queued_at });
        }
        starts
    }

    /// The end of the batch started under `tag`: the answers for its members, or none when its
    /// members wait to run again one by one (they are among the writes waiting then).
    pub(crate) fn complete(&mut self, tag: u64, result: Result<Outcome, GatewayError>) -> Vec<Answer> {
        let Some(batch) = self.running.remove(&tag) else { return Vec::new() };
        for key in &batch.keys {
            if let Some(count) = self.held.get_mut(key.as_slice()) {
                *count -= 1;
                if *count == 0 {
                    self.held.remove(key.as_slice());
                }
            }
        }
        let mut members = batch.members;
        if members.len() == 1 {
            let member = members.pop().expect("one member");
            return vec![Answer { asker: member.asker, result }];
        }
        match result {
            Ok(Outcome::Committed(results)) => {
                let mut results = results.into_iter();
                members
                    .into_iter()
                    .map(|member| {
                        let mine: Vec<OpResult> = results.by_ref().take(member.ops.len()).collect();
                        Answer { asker: member.asker, result: Ok(Outcome::Committed(mine)) }
                    })
                    .collect()
            }
            Ok(Outcome::Failed(failure)) => {
                // Nothing was applied. The member whose op failed runs alone, for its own
                // answer; the others run again as they came (before it, then after it).
                let mut first_op = 0;
                let failing = members.iter().position(|member| {
                    first_op += member.ops.len();
                    (failure.op_index as usize) < first_op
                });
                for (i, mut member) in members.into_iter().enumerate().rev() {
                    member.alone = failing.is_none_or(|failing| failing == i);
                    self.count_in(&member);
                    self.waiting.push_front(member);
                }
                Vec::new()
            }
            Ok(Outcome::Rejected(_)) => {
                // Refused as a whole (a limit of the whole batch): each runs alone.
                for mut member in members.into_iter().rev() {
                    member.alone = true;
                    self.count_in(&member);
                    self.waiting.push_front(member);
                }
                Vec::new()
            }
            other => members.into_iter().map(|member| Answer { asker: member.asker, result: other.clone() }).collect(),
        }
    }
}

/// Whether `asker` already has a member in `members` (a text-protocol datagram sender can
/// have two writes waiting; they stay in separate batches, in order).
fn in_members(members: &[Member], asker: &Asker) -> bool {
    members.iter().any(|m| m.asker.route == asker.route)
}

/// The bytes of keys and values an op carries.
fn op_bytes(op: &TxnOp) -> usize {
    op.key().len() + op.value().map_or(0, <[u8]>::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Route;
    use dkv_core::{FailReason, OpFailure};

    const WAIT: Duration = Duration::from_secs(10);
    const T0: Time = Time::ZERO;

    fn datagram_asker(port: u16) -> Asker {
        Asker { route: Route::Udp { addr: ([127, 0, 0, 1], port).into(), reply_bytes_max: 100 }, tag: 3 }
    }

    fn asker(key: usize) -> Asker {
        Asker { route: Route::Tcp { key, serial: key as u64 }, tag: 1 }
    }

    fn put(key: &str) -> TxnOp {
        TxnOp::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec() }
    }

    fn committed(n: usize) -> Result<Outcome, GatewayError> {
        Ok(Outcome::Committed((0..n as u64).map(|version| OpResult::Done { version }).collect()))
    }

    /// The writes of one turn run as one transaction, and each asker gets its own slice of the
    /// results.
    #[test]
    fn one_turns_writes_are_one_transaction_answered_apart() {
        let mut coalescer = Coalescer::new(Limits::default(), WAIT);
        coalescer.add(T0, asker(1), vec![put("a")]).unwrap();
        coalescer.add(T0, asker(2), vec![put("a"), put("b")]).unwrap();
        let starts = coalescer.take_ready();
        assert_eq!(starts.len(), 1);
        assert!(matches!(&starts[0].operation, Operation::Txn { ops } if ops.len() == 3));
        let answers = coalescer.complete(starts[0].tag, committed(3));
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].asker, asker(1));
        assert_eq!(answers[0].result, Ok(Outcome::Committed(vec![OpResult::Done { version: 0 }])));
        assert_eq!(
            answers[1].result,
            Ok(Outcome::Committed(vec![OpResult::Done { version: 1 }, OpResult::Done { version: 2 }]))
        );
    }

    /// A batch that fails on one member's op applies nothing; that member runs again alone,
    /// for its own answer, and the members before and after it run again together.
    #[test]
    fn a_failed_batch_reruns_the_failing_member_alone() {
        let mut coalescer = Coalescer::new(Limits::default(), WAIT);
        coalescer.add(T0, asker(1), vec![put("a")]).unwrap();
        coalescer.add(T0, asker(2), vec![put("b"), put("c")]).unwrap();
        coalescer.add(T0, asker(3), vec![put("d")]).unwrap();
        coalescer.add(T0, asker(4), vec![put("e")]).unwrap();
        let start = coalescer.take_ready().pop().unwrap();
        // Op 2 is the second op of member 2.
        let failure = Outcome::Failed(OpFailure { op_index: 2, reason: FailReason::NotAnInteger });
        assert!(coalescer.complete(start.tag, Ok(failure.clone())).is_empty());
        let again = coalescer.take_ready();
        let sizes: Vec<usize> = again
            .iter()
            .map(|s| match &s.operation {
                Operation::Txn { ops } => ops.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![1, 2, 2], "member 1, then member 2 alone, then members 3 and 4");
        assert_eq!(coalescer.complete(again[0].tag, committed(1))[0].asker, asker(1));
        let alone = coalescer.complete(again[1].tag, Ok(failure.clone()));
        assert_eq!((alone[0].asker, alone[0].result.clone()), (asker(2), Ok(failure)));
        let rest: Vec<Asker> = coalescer.complete(again[2].tag, committed(2)).iter().map(|a| a.asker).collect();
        assert_eq!(rest, vec![asker(3), asker(4)]);
    }

    /// A write that cannot start within half the request timeout is answered that nothing was
    /// applied; writes from one datagram source and the bytes waiting are bounded.
    #[test]
    fn waiting_is_bounded_in_time_per_source_and_in_bytes() {
        let mut coalescer = Coalescer::new(Limits::default(), WAIT);
        coalescer.add(T0, asker(1), vec![put("a")]).unwrap();
        let running = coalescer.take_ready().pop().unwrap();
        coalescer.add(T0, asker(2), vec![put("a")]).unwrap();
        assert_eq!(coalescer.deadline(), Some(T0 + WAIT / 2));
        assert!(coalescer.expire(T0 + WAIT / 4).is_empty());
        let expired = coalescer.expire(T0 + WAIT / 2);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].asker, asker(2));
        assert_eq!(expired[0].result, Err(GatewayError::Expired { waited: WAIT / 2 }));
        assert!(matches!(&expired[0].result, Err(error) if !error.may_have_been_applied()));
        assert_eq!(coalescer.deadline(), None);
        coalescer.complete(running.tag, committed(1));
        for _ in 0..WAITING_PER_DATAGRAM_SOURCE_MAX {
            coalescer.add(T0, datagram_asker(7), vec![put("u")]).unwrap();
        }
        assert!(coalescer.add(T0, datagram_asker(8), vec![put("u")]).is_err(), "same address, other port");
        coalescer.add(T0, asker(9), vec![put("x")]).unwrap();
        let big = TxnOp::Put { key: b"big".to_vec(), value: vec![0; WAITING_BYTES_MAX] };
        assert!(coalescer.add(T0, asker(10), vec![big]).is_err());
    }

    /// A write whose key a running batch holds waits for it: batches on one node never
    /// contend for a lock.
    #[test]
    fn running_batches_never_share_a_key() {
        let mut coalescer = Coalescer::new(Limits::default(), WAIT);
        coalescer.add(T0, asker(1), vec![put("a")]).unwrap();
        let first = coalescer.take_ready().pop().unwrap();
        coalescer.add(T0, asker(2), vec![put("a")]).unwrap();
        coalescer.add(T0, asker(3), vec![put("c")]).unwrap();
        let starts = coalescer.take_ready();
        assert_eq!(starts.len(), 1);
        assert!(matches!(&starts[0].operation, Operation::Txn { ops } if ops == &vec![put("c")]));
        assert!(!coalescer.has_ready());
        coalescer.complete(first.tag, committed(1));
        assert!(coalescer.has_ready());
        assert!(matches!(&coalescer.take_ready()[0].operation, Operation::Txn { ops } if ops == &vec![put("a")]));
    }

    /// A write that waited for a running batch's key starts with the time it has left: its
    /// batch's deadline counts from when it was taken, not from when the batch starts. Writes
    /// wait at most half the request timeout, so a batch always has the other half.
    #[test]
    fn a_batch_counts_its_time_from_its_oldest_member() {
        let mut coalescer = Coalescer::new(Limits::default(), WAIT);
        coalescer.add(T0, asker(1), vec![put("a")]).unwrap();
        let first = coalescer.take_ready().pop().unwrap();
        assert_eq!(first.queued_at, T0);
        let later = T0 + Duration::from_secs(3);
        coalescer.add(later, asker(2), vec![put("a")]).unwrap();
        coalescer.add(later + Duration::from_secs(1), asker(3), vec![put("a")]).unwrap();
        let now = later + Duration::from_secs(4);
        assert!(coalescer.expire(now).is_empty(), "4 s of 5 waited");
        coalescer.complete(first.tag, committed(1));
        let next = coalescer.take_ready().pop().unwrap();
        assert!(matches!(&next.operation, Operation::Txn { ops } if ops.len() == 2));
        assert_eq!(next.queued_at, later, "the oldest member's");
        assert!(next.queued_at + WAIT >= now + WAIT / 2, "at least half the timeout left to run");
    }

    /// Writes of the same key from many askers go in one batch (they do not wait for one
    /// another), in arrival order.
    #[test]
    fn writes_of_one_key_share_a_batch() {
        let mut coalescer = Coalescer::new(Limits::default(), WAIT);
        for i in 0..50 {
            coalescer.add(T0, asker(i), vec![put("hot")]).unwrap();
        }
        let starts = coalescer.take_ready();
        assert_eq!(starts.len(), 1);
        assert!(matches!(&starts[0].operation, Operation::Txn { ops } if ops.len() == 50));
        let answers = coalescer.complete(starts[0].tag, committed(50));
        let order: Vec<Asker> = answers.iter().map(|a| a.asker).collect();
        assert_eq!(order, (0..50).map(asker).collect::<Vec<_>>());
    }

    /// The writes waiting are bounded: past the bound, a write is refused as busy.
    #[test]
    fn waiting_writes_are_bounded() {
        let mut coalescer = Coalescer::new(Limits::default(), WAIT);
        for i in 0..WAITING_MAX {
            coalescer.add(T0, asker(i), vec![put("k")]).unwrap();
        }
        assert_eq!(coalescer.add(T0, asker(0), vec![put("k")]), Err(GatewayError::Busy { max: WAITING_MAX }));
    }

    /// A batch stays within the transaction limits; the rest waits for the next.
    #[test]
    fn batches_stay_within_the_limits() {
        let limits = Limits { txn_ops_max: 3, ..Limits::default() };
        let mut coalescer = Coalescer::new(limits, WAIT);
        for i in 0..5 {
            coalescer.add(T0, asker(i), vec![put(&format!("k{i}"))]).unwrap();
        }
        let starts = coalescer.take_ready();
        let sizes: Vec<usize> = starts
            .iter()
            .map(|s| match &s.operation {
                Operation::Txn { ops } => ops.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![3, 2]);
        assert_eq!(coalescer.counts(), (0, 2));
    }
}
