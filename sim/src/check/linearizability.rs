//! Linearizability by search (Wing & Gong, with Lowe's memoization of configurations).
//!
//! A configuration is the set of operations already linearized plus the store state they
//! produce. From a configuration, any not-yet-linearized operation may go next if it was
//! invoked before every other pending operation responded (real-time order) and is legal in
//! the current state. Operations with no known outcome may take effect at any time after their
//! invocation, or never. The history is linearizable if some path linearizes every operation
//! with a known outcome. Configurations already explored are memoized by (set, state hash), so
//! the search visits each at most once.
//!
//! [`check_per_key`] runs the search on each key's projection (fast, names the key);
//! [`check_transactions`] runs it on the whole history with the whole store as state, which
//! adds the cross-key guarantees: no read sees part of a transaction, and the committed
//! transactions fit one serial order that respects real time.
//! [`check`] runs the second, and the first only when the second does not pass.

use super::Violation;
use crate::history::{History, Op, OpKind, Result as OpResult, show};
use dkv_core::TxnOp;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Configurations explored before a search is given a larger budget.
pub const SEARCH_CONFIGURATIONS_MAX: usize = 500_000;
/// The larger budget a search gets when the first ran out. Past it the search is inconclusive,
/// and an inconclusive search fails the run: a history nobody checked is not a pass. Unknown
/// write outcomes are what make searches hard (each may take effect at any later moment, or
/// never); since the simulator settles them from the nodes' disks after each run
/// ([`History::settle_unknown`]), every one of seeds 0..20000 is decided (seed 2496 had needed 12
/// million configurations and 8616 ran out of 64 million; both now check in milliseconds). The memo holds at most one 16-byte
/// entry per configuration explored, so this bounds a search to about 2 GB.
pub const SEARCH_CONFIGURATIONS_RETRY_MAX: usize = 64_000_000;

/// The outcome of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    Inconclusive,
    Violation(Violation),
}

/// One operation as the search sees it.
#[derive(Clone, Debug)]
struct SearchOp {
    invoke: u64,
    response: u64,
    effect: Effect,
    /// Index into the history, for reporting.
    origin: usize,
}

#[derive(Clone, Debug)]
enum Effect {
    Read {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// Must apply cleanly.
    Commit(Vec<TxnOp>),
    /// Must fail exactly at op `at`.
    FailAt {
        ops: Vec<TxnOp>,
        at: u32,
    },
    /// May apply (if it applies cleanly) or never take effect.
    Maybe(Vec<TxnOp>),
    /// Takes effect exactly once: applies if it applies cleanly, else fails and applies nothing.
    Happened(Vec<TxnOp>),
}

impl SearchOp {
    fn definite(&self) -> bool {
        !matches!(self.effect, Effect::Maybe(_))
    }
}

/// A 64-bit finalizer (splitmix64's): every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hashes `bytes` eight at a time, then the length (so "a" + "bc" differs from "ab" + "c").
fn bytes_hash(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        h = mix(h ^ u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h ^ u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56))
}

/// The hash of one store entry; the store's hash is the xor of its entries'. Not SipHash: the
/// search hashes an entry on every step, and nothing here is adversarial.
fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    bytes_hash(bytes_hash(0x243f_6a88_85a3_08d3, key), value)
}

/// The memo's keys are hashes already: its hasher only folds them together.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes_hash(self.0, bytes);
    }
    fn write_u64(&mut self, word: u64) {
        self.0 = mix(self.0 ^ word);
    }
}

type Memo = HashSet<(u64, u64), BuildHasherDefault<PrehashedHasher>>;

/// The index of the first op that finds its key missing, running `ops` in order on `store`.
/// Written independently of dkv-core's store: the checker is a second implementation of the
/// rules, not a copy of the code it checks.
fn first_failure(store: &BTreeMap<Vec<u8>, Vec<u8>>, ops: &[TxnOp]) -> Option<u32> {
    let mut exists: BTreeMap<&[u8], bool> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let key = op.key();
        let present = *exists.entry(key).or_insert_with(|| store.contains_key(key));
        match op {
            TxnOp::Put { .. } => {
                exists.insert(key, true);
            }
            TxnOp::Update { .. } if !present => return Some(i as u32),
            TxnOp::Update { .. } => {}
            TxnOp::Delete { .. } if !present => return Some(i as u32),
            TxnOp::Delete { .. } => {
                exists.insert(key, false);
            }
            _ => unimplemented!("the workload draws no such op yet"),
        }
    }
    None
}

/// What a key held before an operation changed it (`None`: absent).
struct Before {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// How to undo an operation: what each key it changed held before.
type Undo = Vec<Before>;

/// The store state during the search, with an order-independent hash for memoization.
#[derive(Clone, Default)]
struct State {
    store: BTreeMap<Vec<u8>, Vec<u8>>,
    hash: u64,
}

impl State {
    /// Sets one key, keeping the hash in step.
    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(old) = self.store.get(&key) {
            self.hash ^= entry_hash(&key, old);
        }
        match value {
            Some(v) => {
                self.hash ^= entry_hash(&key, &v);
                self.store.insert(key, v);
            }
            None => {
                self.store.remove(&key);
            }
        }
    }

    /// Applies ops that apply cleanly; returns how to undo them.
    fn apply(&mut self, ops: &[TxnOp]) -> Undo {
        let keys: BTreeSet<&[u8]> = ops.iter().map(|op| op.key()).collect();
        let undo: Undo =
            keys.into_iter().map(|k| Before { key: k.to_vec(), value: self.store.get(k).cloned() }).collect();
        for op in ops {
            match op {
                TxnOp::Put { key, value } | TxnOp::Update { key, value } => self.set(key.clone(), Some(value.clone())),
                TxnOp::Delete { key } => self.set(key.clone(), None),
                _ => unimplemented!("the workload draws no such op yet"),
            }
        }
        undo
    }

    fn undo(&mut self, undo: Undo) {
        for before in undo {
            self.set(before.key, before.value);
        }
    }
}

struct Search<'a> {
    /// Sorted by invocation.
    ops: &'a [SearchOp],
    linearized: Vec<bool>,
    /// Unlinearized operations with a known response, by (response, index): the first one
    /// bounds which operations may go next.
    responses: BTreeSet<(u64, usize)>,
    /// Every operation before this index is linearized.
    first_open: usize,
    /// Order-independent hash of the linearized set (xor of per-operation keys).
    set_hash: u64,
    state: State,
    memo: Memo,
    explored: usize,
    /// Configurations this search may explore before it gives up.
    budget: usize,
    /// The deepest point reached, for the report.
    deepest: Deepest,
    /// The operations linearized so far, in order.
    path: Vec<usize>,
}

/// The deepest point a search reached: the longest path of operations it could linearize, and
/// the operations that were candidates to go next there.
#[derive(Clone, Default)]
struct Deepest {
    path: Vec<usize>,
    candidates: Vec<usize>,
}

fn op_key(i: usize) -> u64 {
    mix(i as u64 ^ 0x5bd1_e995)
}

impl Search<'_> {
    fn mark(&mut self, i: usize, linearized: bool) {
        self.linearized[i] = linearized;
        self.set_hash ^= op_key(i);
        let op = &self.ops[i];
        if op.definite() {
            if linearized {
                self.responses.remove(&(op.response, i));
            } else {
                self.responses.insert((op.response, i));
            }
        }
    }

    /// Depth-first search from the current configuration. `Some(true)`: linearizable.
    fn run(&mut self) -> Option<bool> {
        // Done once every operation with a known outcome is placed.
        let Some(&(horizon, _)) = self.responses.first() else { return Some(true) };
        self.explored += 1;
        if self.explored > self.budget {
            return None;
        }
        // Memoized by 128 bits of hash: a collision would need two different configurations
        // to agree on both 64-bit halves.
        if !self.memo.insert((self.set_hash, self.state.hash)) {
            return Some(false);
        }
        while self.first_open < self.ops.len() && self.linearized[self.first_open] {
            self.first_open += 1;
        }
        let saved_first_open = self.first_open;
        let candidates: Vec<usize> = (self.first_open..self.ops.len())
            .take_while(|&i| self.ops[i].invoke <= horizon)
            .filter(|&i| !self.linearized[i])
            .collect();
        if self.path.len() >= self.deepest.path.len() {
            self.deepest = Deepest { path: self.path.clone(), candidates: candidates.clone() };
        }
        for i in candidates {
            let op = &self.ops[i];
            let undo = match &op.effect {
                Effect::Read { key, value } => {
                    if self.state.store.get(key) != value.as_ref() {
                        continue;
                    }
                    None
                }
                Effect::Commit(ops) | Effect::Maybe(ops) => {
                    if first_failure(&self.state.store, ops).is_some() {
                        continue;
                    }
                    Some(self.state.apply(ops))
                }
                Effect::Happened(ops) => match first_failure(&self.state.store, ops) {
                    Some(_) => None,
                    None => Some(self.state.apply(ops)),
                },
                Effect::FailAt { ops, at } => {
                    if first_failure(&self.state.store, ops) != Some(*at) {
                        continue;
                    }
                    None
                }
            };
            self.mark(i, true);
            self.path.push(i);
            let result = self.run();
            self.path.pop();
            self.mark(i, false);
            self.first_open = saved_first_open;
            if let Some(undo) = undo {
                self.state.undo(undo);
            }
            match result {
                Some(false) => {}
                other => return other,
            }
        }
        Some(false)
    }
}

/// How many configurations a search may explore: `first`, then `retry` if that ran out.
#[derive(Clone, Copy, Debug)]
struct Budget {
    first: usize,
    retry: usize,
}

impl Budget {
    const DEFAULT: Budget = Budget { first: SEARCH_CONFIGURATIONS_MAX, retry: SEARCH_CONFIGURATIONS_RETRY_MAX };
}

/// Searches with the first budget, and again with the larger one if it ran out.
fn search(history: &History, ops: Vec<SearchOp>, checker: &'static str, key: Option<&[u8]>, budget: Budget) -> Verdict {
    match search_within(history, ops.clone(), checker, key, budget.first) {
        Verdict::Inconclusive => search_within(history, ops, checker, key, budget.retry),
        verdict => verdict,
    }
}

fn search_within(
    history: &History,
    ops: Vec<SearchOp>,
    checker: &'static str,
    key: Option<&[u8]>,
    budget: usize,
) -> Verdict {
    let mut ops = ops;
    ops.sort_by_key(|o| (o.invoke, o.origin));
    let responses = ops.iter().enumerate().filter(|(_, o)| o.definite()).map(|(i, o)| (o.response, i)).collect();
    let mut s = Search {
        ops: &ops,
        linearized: vec![false; ops.len()],
        responses,
        first_open: 0,
        set_hash: 0,
        state: State::default(),
        memo: Memo::default(),
        explored: 0,
        budget,
        deepest: Deepest::default(),
        path: Vec::new(),
    };
    match s.run() {
        Some(true) => Verdict::Linearizable,
        None => Verdict::Inconclusive,
        Some(false) => {
            let Deepest { path, candidates } = &s.deepest;
            let mut described: Vec<String> = Vec::new();
            described.push(format!("at most {} operations can be linearized; the last of them:", path.len()));
            for &i in path.iter().rev().take(5).rev() {
                described.push(format!("  {}", history.ops[ops[i].origin].describe()));
            }
            described.push("and none of these can go next:".to_string());
            for &i in candidates.iter().take(8) {
                described.push(format!("  {}", history.ops[ops[i].origin].describe()));
            }
            Verdict::Violation(Violation {
                checker,
                key: key.map(show),
                message: "no order of the operations respects both real time and the results clients saw".into(),
                ops: described,
            })
        }
    }
}

/// The search's view of a history operation, restricted to `key` when given.
fn project(op: &Op, origin: usize, key: Option<&[u8]>) -> Option<SearchOp> {
    let touches = |k: &[u8]| key.is_none_or(|key| key == k);
    let effect = match (&op.kind, &op.result) {
        (OpKind::Get { key: k }, OpResult::Read(value)) if touches(k) => {
            Effect::Read { key: k.clone(), value: value.clone() }
        }
        (OpKind::Txn { ops }, result) => {
            let mine: Vec<TxnOp> = ops.iter().filter(|o| touches(o.key())).cloned().collect();
            if mine.is_empty() {
                return None;
            }
            match result {
                OpResult::Committed => Effect::Commit(mine),
                OpResult::Unknown => Effect::Maybe(mine),
                // Whether it failed depends on every key it names: on one key's own it may
                // have applied or not.
                OpResult::Happened if key.is_some() => Effect::Maybe(mine),
                OpResult::Happened => Effect::Happened(mine),
                OpResult::FailedAt(at) => {
                    let failing = ops.get(*at as usize)?;
                    if !touches(failing.key()) {
                        // It failed on another key: for this key it did nothing.
                        return None;
                    }
                    let upto: Vec<TxnOp> = ops[..=*at as usize].iter().filter(|o| touches(o.key())).cloned().collect();
                    let at = (upto.len() - 1) as u32;
                    Effect::FailAt { ops: upto, at }
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(SearchOp { invoke: op.invoke, response: op.response_or_max(), effect, origin })
}

/// What searches over a history found.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub violations: Vec<Violation>,
    /// Searches that hit [`SEARCH_CONFIGURATIONS_RETRY_MAX`] without a verdict (each also
    /// makes an "inconclusive" violation, unless the history has a real one).
    pub inconclusive: usize,
}

/// Strict serializability of the whole history, naming the key where one is at fault. The
/// whole-history search decides; the per-key searches only run when it does not pass, to name
/// the key (a transactions violation with every key linearizable on its own is a torn
/// transaction).
pub fn check(history: &History) -> Findings {
    check_within(history, Budget::DEFAULT)
}

fn check_within(history: &History, budget: Budget) -> Findings {
    let whole = transactions_within(history, budget);
    if whole == Verdict::Linearizable {
        return Findings::default();
    }
    let mut findings = per_key_within(history, budget);
    match whole {
        Verdict::Violation(v) if findings.violations.is_empty() => findings.violations.push(v),
        Verdict::Inconclusive => findings.inconclusive += 1,
        _ => {}
    }
    if findings.inconclusive > 0 && findings.violations.is_empty() {
        findings.violations.push(Violation::new(
            "inconclusive",
            format!(
                "{} linearizability searches explored {} configurations without a verdict, so this history \
                 was not checked; replay the seed and look at what makes it hard (a smarter search, or a \
                 larger SEARCH_CONFIGURATIONS_RETRY_MAX)",
                findings.inconclusive, budget.retry
            ),
        ));
    }
    findings
}

/// Linearizability of every key's projection of the history.
pub fn check_per_key(history: &History) -> Findings {
    per_key_within(history, Budget::DEFAULT)
}

fn per_key_within(history: &History, budget: Budget) -> Findings {
    let mut keys: BTreeSet<&[u8]> = BTreeSet::new();
    for op in &history.ops {
        match &op.kind {
            OpKind::Get { key } => {
                keys.insert(key);
            }
            OpKind::Txn { ops } => keys.extend(ops.iter().map(|o| o.key())),
        }
    }
    let mut findings = Findings::default();
    for key in keys {
        let ops: Vec<SearchOp> =
            history.ops.iter().enumerate().filter_map(|(i, op)| project(op, i, Some(key))).collect();
        match search(history, ops, "linearizability", Some(key), budget) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive => findings.inconclusive += 1,
            Verdict::Violation(v) => findings.violations.push(v),
        }
    }
    findings
}

/// Strict serializability of the whole history: transactions are atomic for every reader and
/// the committed ones fit one serial order that respects real time.
pub fn check_transactions(history: &History) -> Verdict {
    transactions_within(history, Budget::DEFAULT)
}

fn transactions_within(history: &History, budget: Budget) -> Verdict {
    let ops: Vec<SearchOp> = history.ops.iter().enumerate().filter_map(|(i, op)| project(op, i, None)).collect();
    search(history, ops, "transactions", None, budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::ClientId;

    fn op(invoke: u64, response: u64, kind: OpKind, result: OpResult) -> Op {
        Op {
            client: ClientId(1),
            seq: 0,
            kind,
            invoke,
            response: Some(response),
            result,
            attempts: 1,
            abandoned_at: None,
        }
    }
    fn put(k: &str, v: &str) -> OpKind {
        OpKind::Txn { ops: vec![TxnOp::Put { key: k.into(), value: v.into() }] }
    }
    fn get(k: &str) -> OpKind {
        OpKind::Get { key: k.into() }
    }
    fn read(v: Option<&str>) -> OpResult {
        OpResult::Read(v.map(|v| v.as_bytes().to_vec()))
    }

    /// A read that returns a value overwritten before it started is caught.
    #[test]
    fn stale_read_is_a_violation() {
        let h = History {
            ops: vec![
                op(0, 10, put("k", "1"), OpResult::Committed),
                op(20, 30, put("k", "2"), OpResult::Committed),
                op(40, 50, get("k"), read(Some("1"))),
            ],
        };
        let v = check_per_key(&h).violations;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key.as_deref(), Some("k"));
    }

    /// Concurrent operations may be ordered either way.
    #[test]
    fn concurrent_reads_may_see_either_value() {
        let h = History {
            ops: vec![
                op(0, 100, put("k", "1"), OpResult::Committed),
                op(10, 20, get("k"), read(Some("1"))),
                op(30, 40, get("k"), read(None)),
            ],
        };
        // The second read saw nothing after the first saw "1": not linearizable.
        assert_eq!(check_per_key(&h).violations.len(), 1);
        let h = History {
            ops: vec![
                op(0, 100, put("k", "1"), OpResult::Committed),
                op(10, 20, get("k"), read(None)),
                op(30, 40, get("k"), read(Some("1"))),
            ],
        };
        assert!(check_per_key(&h).violations.is_empty());
    }

    /// Reading half of a transaction is caught by the transaction checker, though every key on
    /// its own looks fine.
    #[test]
    fn fractured_read_is_caught_across_keys() {
        let both = OpKind::Txn {
            ops: vec![
                TxnOp::Put { key: "a".into(), value: "1".into() },
                TxnOp::Put { key: "b".into(), value: "1".into() },
            ],
        };
        let h = History {
            ops: vec![
                op(0, 100, both, OpResult::Committed),
                op(10, 20, get("a"), read(Some("1"))),
                op(30, 40, get("b"), read(None)),
            ],
        };
        assert!(check_per_key(&h).violations.is_empty());
        assert!(matches!(check_transactions(&h), Verdict::Violation(_)));
    }

    /// An operation with no known outcome may have taken effect, or not.
    #[test]
    fn unknown_write_may_or_may_not_apply() {
        let mut unknown = op(0, 0, put("k", "1"), OpResult::Unknown);
        unknown.response = None;
        for seen in [None, Some("1")] {
            let h = History { ops: vec![unknown.clone(), op(10, 20, get("k"), read(seen))] };
            assert!(check_per_key(&h).violations.is_empty());
        }
    }

    /// A write that happened (decided, reply lost) takes effect once: seen, it cannot be unseen,
    /// and a transaction that happened fails as a whole or applies as a whole.
    #[test]
    fn happened_write_takes_effect_exactly_once() {
        let mut happened = op(0, 0, put("k", "1"), OpResult::Happened);
        happened.response = None;
        let seen_then_gone = History {
            ops: vec![happened.clone(), op(10, 20, get("k"), read(Some("1"))), op(30, 40, get("k"), read(None))],
        };
        assert!(matches!(check_transactions(&seen_then_gone), Verdict::Violation(_)));
        let seen = History { ops: vec![happened, op(10, 20, get("k"), read(Some("1")))] };
        assert!(check(&seen).violations.is_empty());
        // Update a (absent) then put b: it failed as a whole, so b was never written.
        let mut failed = op(
            0,
            0,
            OpKind::Txn {
                ops: vec![
                    TxnOp::Update { key: "a".into(), value: "1".into() },
                    TxnOp::Put { key: "b".into(), value: "1".into() },
                ],
            },
            OpResult::Happened,
        );
        failed.response = None;
        let half =
            History { ops: vec![failed, op(10, 20, get("b"), read(Some("1"))), op(30, 40, get("a"), read(None))] };
        assert!(matches!(check_transactions(&half), Verdict::Violation(_)));
    }

    /// A search that runs out of budget fails the check: an unchecked history is no pass.
    #[test]
    fn inconclusive_search_is_a_violation() {
        // Eight concurrent puts and a read after them: the search must try orders before it
        // can place the read, far more than two configurations' worth.
        let mut ops: Vec<Op> = (0..8).map(|i| op(0, 100, put("k", &i.to_string()), OpResult::Committed)).collect();
        ops.push(op(200, 300, get("k"), read(Some("0"))));
        let h = History { ops };
        assert!(check(&h).violations.is_empty(), "the history is linearizable");
        let findings = check_within(&h, Budget { first: 2, retry: 2 });
        assert!(findings.inconclusive > 0);
        assert_eq!(findings.violations.len(), 1, "{:?}", findings.violations);
        assert_eq!(findings.violations[0].checker, "inconclusive");
    }

    /// A committed write is visible to every read that starts after it responded.
    #[test]
    fn lost_committed_write_is_a_violation() {
        let h = History { ops: vec![op(0, 10, put("k", "1"), OpResult::Committed), op(20, 30, get("k"), read(None))] };
        let findings = check(&h);
        assert_eq!(findings.violations.len(), 1, "{:?}", findings.violations);
        assert_eq!(findings.violations[0].key.as_deref(), Some("k"));
        assert_eq!(findings.inconclusive, 0);
        // The same read during the write may see either.
        let h = History { ops: vec![op(0, 30, put("k", "1"), OpResult::Committed), op(10, 20, get("k"), read(None))] };
        assert!(check(&h).violations.is_empty());
    }

    /// A read cannot see a write invoked after the read responded, known outcome or not.
    #[test]
    fn read_from_the_future_is_a_violation() {
        for (result, response) in [(OpResult::Committed, Some(30)), (OpResult::Unknown, None)] {
            let mut later = op(20, 0, put("k", "1"), result);
            later.response = response;
            let h = History { ops: vec![op(0, 10, get("k"), read(Some("1"))), later] };
            assert_eq!(check_per_key(&h).violations.len(), 1);
        }
    }

    /// A write the cluster refused applied nothing: a read that sees its value is caught.
    #[test]
    fn value_of_a_refused_write_read_back_is_a_violation() {
        let h = History {
            ops: vec![op(0, 10, put("k", "1"), OpResult::NotApplied), op(20, 30, get("k"), read(Some("1")))],
        };
        assert_eq!(check_per_key(&h).violations.len(), 1);
        assert!(matches!(check_transactions(&h), Verdict::Violation(_)));
        let h = History { ops: vec![op(0, 10, put("k", "1"), OpResult::NotApplied), op(20, 30, get("k"), read(None))] };
        assert!(check(&h).violations.is_empty());
    }

    /// An unknown write may take effect late, after reads that did not see it, but once seen it
    /// cannot be unseen.
    #[test]
    fn unknown_write_takes_effect_once_at_most() {
        let mut unknown = op(0, 0, put("k", "1"), OpResult::Unknown);
        unknown.response = None;
        let h = History {
            ops: vec![unknown.clone(), op(10, 20, get("k"), read(None)), op(30, 40, get("k"), read(Some("1")))],
        };
        assert!(check(&h).violations.is_empty());
        let h = History { ops: vec![unknown, op(10, 20, get("k"), read(Some("1"))), op(30, 40, get("k"), read(None))] };
        assert_eq!(check_per_key(&h).violations.len(), 1);
    }

    /// Two transactions seen in opposite orders on two keys fit no serial order, though each
    /// key on its own is linearizable.
    #[test]
    fn transactions_seen_in_two_orders_are_caught() {
        let both = |v: &str| OpKind::Txn {
            ops: vec![TxnOp::Put { key: "a".into(), value: v.into() }, TxnOp::Put { key: "b".into(), value: v.into() }],
        };
        let h = History {
            ops: vec![
                op(0, 100, both("1"), OpResult::Committed),
                op(0, 100, both("2"), OpResult::Committed),
                op(110, 120, get("a"), read(Some("1"))),
                op(110, 120, get("b"), read(Some("2"))),
            ],
        };
        assert!(check_per_key(&h).violations.is_empty());
        assert!(matches!(check_transactions(&h), Verdict::Violation(_)));
        assert_eq!(check(&h).violations.len(), 1);
    }

    /// An update that found its key missing is an observation: it cannot follow a put.
    #[test]
    fn failed_update_observes_absence() {
        let upd = OpKind::Txn { ops: vec![TxnOp::Update { key: "k".into(), value: "2".into() }] };
        let h = History {
            ops: vec![op(0, 10, put("k", "1"), OpResult::Committed), op(20, 30, upd, OpResult::FailedAt(0))],
        };
        assert_eq!(check_per_key(&h).violations.len(), 1);
    }
}
