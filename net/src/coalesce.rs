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
//!   condition, a non-number) or refused: nothing was applied, and each member runs again
//!   alone, to get its own answer. No outcome: every member is told so.
//! - Batches in flight never share a key: a member whose keys a running batch holds waits for
//!   it, so batches on this node do not conflict over their locks and retry each other.
//!
//! The linearization is sound: the members of a batch all run while their requests are
//! pending, and take effect at once, at its commit, in arrival order.

use crate::gateway::{Answer, Asker, GatewayError};
use dkv_core::{Key, Limits, OpResult, Operation, Outcome, TxnOp};
use std::collections::{BTreeMap, VecDeque};

/// Batches one node runs at once at most.
const BATCHES_IN_FLIGHT_MAX: usize = 8;
/// Writes waiting for a batch at most. A connection has one at a time, but datagrams of the
/// text protocol come at any rate: past this, a write is answered "busy" at once.
pub(crate) const WAITING_MAX: usize = 16_384;

/// One asker's write, waiting or in a batch.
struct Member {
    asker: Asker,
    ops: Vec<TxnOp>,
    /// Runs in a batch of its own (after its batch failed as a whole).
    alone: bool,
}

/// A batch the gateway runs.
struct Batch {
    members: Vec<Member>,
    keys: Vec<Key>,
}

/// A transaction to hand to the gateway: its asker is [`Coalescer::batch_asker`] with `tag`.
pub(crate) struct BatchStart {
    pub(crate) tag: u64,
    pub(crate) operation: Operation,
}

/// The writes of id-less clients, waiting and running in batches.
pub(crate) struct Coalescer {
    limits: Limits,
    waiting: VecDeque<Member>,
    running: BTreeMap<u64, Batch>,
    /// The keys of running batches, with how many ops of them hold each.
    held: BTreeMap<Key, usize>,
    last_tag: u64,
}

impl Coalescer {
    pub(crate) fn new(limits: Limits) -> Coalescer {
        Coalescer { limits, waiting: VecDeque::new(), running: BTreeMap::new(), held: BTreeMap::new(), last_tag: 0 }
    }

    /// Takes a write to run in a coming batch; refused (the caller answers "busy") when
    /// [`WAITING_MAX`] writes wait already.
    pub(crate) fn add(&mut self, asker: Asker, ops: Vec<TxnOp>) -> Result<(), GatewayError> {
        if self.waiting.len() >= WAITING_MAX {
            return Err(GatewayError::Busy { max: WAITING_MAX });
        }
        self.waiting.push_back(Member { asker, ops, alone: false });
        Ok(())
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
    /// whose keys a running batch holds.
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
                let alone_conflict = member.alone && !members.is_empty();
                let full = members.first().is_some_and(|first: &Member| first.alone);
                if self.is_held(&member) || !fits || alone_conflict || full || in_members(&members, &member.asker) {
                    kept.push_back(member);
                    continue;
                }
                ops += member.ops.len();
                bytes += member_bytes;
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
            self.running.insert(self.last_tag, Batch { members, keys });
            starts.push(BatchStart { tag: self.last_tag, operation: Operation::Txn { ops } });
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
            Ok(Outcome::Failed(_) | Outcome::Rejected(_)) => {
                // Nothing was applied: each runs alone, ahead of later writes, in their order.
                for mut member in members.into_iter().rev() {
                    member.alone = true;
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
        let mut coalescer = Coalescer::new(Limits::default());
        coalescer.add(asker(1), vec![put("a")]).unwrap();
        coalescer.add(asker(2), vec![put("a"), put("b")]).unwrap();
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

    /// A batch that fails applies nothing; its members run again one by one, each answered
    /// with its own outcome.
    #[test]
    fn a_failed_batch_reruns_its_members_alone() {
        let mut coalescer = Coalescer::new(Limits::default());
        coalescer.add(asker(1), vec![put("a")]).unwrap();
        coalescer.add(asker(2), vec![put("b")]).unwrap();
        let start = coalescer.take_ready().pop().unwrap();
        let failure = Outcome::Failed(OpFailure { op_index: 1, reason: FailReason::NotAnInteger });
        assert!(coalescer.complete(start.tag, Ok(failure.clone())).is_empty());
        let again = coalescer.take_ready();
        assert_eq!(again.len(), 2, "each member alone");
        assert!(matches!(&again[0].operation, Operation::Txn { ops } if ops == &vec![put("a")]));
        let first = coalescer.complete(again[0].tag, committed(1));
        assert_eq!(first[0].asker, asker(1));
        let second = coalescer.complete(again[1].tag, Ok(failure.clone()));
        assert_eq!(second[0].asker, asker(2));
        assert_eq!(second[0].result, Ok(failure));
    }

    /// A write whose key a running batch holds waits for it: batches on one node never
    /// contend for a lock.
    #[test]
    fn running_batches_never_share_a_key() {
        let mut coalescer = Coalescer::new(Limits::default());
        coalescer.add(asker(1), vec![put("a")]).unwrap();
        let first = coalescer.take_ready().pop().unwrap();
        coalescer.add(asker(2), vec![put("a")]).unwrap();
        coalescer.add(asker(3), vec![put("c")]).unwrap();
        let starts = coalescer.take_ready();
        assert_eq!(starts.len(), 1);
        assert!(matches!(&starts[0].operation, Operation::Txn { ops } if ops == &vec![put("c")]));
        assert!(!coalescer.has_ready());
        coalescer.complete(first.tag, committed(1));
        assert!(coalescer.has_ready());
        assert!(matches!(&coalescer.take_ready()[0].operation, Operation::Txn { ops } if ops == &vec![put("a")]));
    }

    /// Writes of the same key from many askers go in one batch (they do not wait for one
    /// another), in arrival order.
    #[test]
    fn writes_of_one_key_share_a_batch() {
        let mut coalescer = Coalescer::new(Limits::default());
        for i in 0..50 {
            coalescer.add(asker(i), vec![put("hot")]).unwrap();
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
        let mut coalescer = Coalescer::new(Limits::default());
        for i in 0..WAITING_MAX {
            coalescer.add(asker(i), vec![put("k")]).unwrap();
        }
        assert_eq!(coalescer.add(asker(0), vec![put("k")]), Err(GatewayError::Busy { max: WAITING_MAX }));
    }

    /// A batch stays within the transaction limits; the rest waits for the next.
    #[test]
    fn batches_stay_within_the_limits() {
        let limits = Limits { txn_ops_max: 3, ..Limits::default() };
        let mut coalescer = Coalescer::new(limits);
        for i in 0..5 {
            coalescer.add(asker(i), vec![put(&format!("k{i}"))]).unwrap();
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
