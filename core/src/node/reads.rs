//! Reads: gets and scans. A read is served from the asked node's memory, unless a key it
//! reads is locked by a prepared transaction: then it waits for the decision, because another
//! node may already have returned the new value, and returning the old one here would break
//! linearizability. The wait is bounded in count (overflow: "busy") and in time (expiry: "try
//! again").
//!
//! A scan's page is linearizable: it waits while any key in the range the page speaks for is
//! locked — `[start, last key returned]` and the key that follows when more follow, the whole
//! `[start, end)` when the page reaches the end. A lock on a key the store does not hold is a prepared insert, and
//! waiting for it too is what keeps phantoms out. A scan also never sees part of a transaction:
//! a transaction's keys are all locked from before it applies anywhere until it applied here.
//! Pages are not one snapshot: each is linearized at its own moment.
//!
//! With leases on (`node/lease.rs`), a read is answered from memory only while the node holds a
//! read lease, checked when the reply is produced — also for a read that waited on a lock —
//! against the time of the input being handled. Without one it is told "not serving" and asks
//! another node.

use super::shared::Shared;
use crate::ids::{ReplyTo, RequestId};
use crate::operation::{Key, Outcome, RejectReason, ScanEntry, TryAgainReason, TxnOp};
use crate::time::Time;
use crate::timers::Timer;
use std::collections::{BTreeMap, BTreeSet};

/// A scan request: the keys in `[start, end)`, at most `limit`.
#[derive(Clone, Debug)]
pub(super) struct Scan {
    pub(super) start: Key,
    pub(super) end: Option<Key>,
    pub(super) limit: u32,
    pub(super) keys_only: bool,
}

impl Scan {
    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }
}

enum Wanted {
    Get(Key),
    Scan(Scan),
}

struct WaitingRead {
    wanted: Wanted,
    request: RequestId,
    reply_to: ReplyTo,
}

/// Reads waiting for locked keys: gets indexed by key so a release wakes exactly its readers,
/// scans looked at on every release within their range.
#[derive(Default)]
pub(super) struct WaitingReads {
    reads: BTreeMap<u64, WaitingRead>,
    by_key: BTreeMap<Key, BTreeSet<u64>>,
    scans: BTreeSet<u64>,
    next_id: u64,
}

impl WaitingReads {
    pub(super) fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    pub(super) fn waiting_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.by_key.keys().map(Vec::as_slice)
    }

    fn add(&mut self, wanted: Wanted, request: RequestId, reply_to: ReplyTo) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        match &wanted {
            Wanted::Get(key) => {
                self.by_key.entry(key.clone()).or_default().insert(id);
            }
            Wanted::Scan(_) => {
                self.scans.insert(id);
            }
        }
        self.reads.insert(id, WaitingRead { wanted, request, reply_to });
        id
    }

    fn remove(&mut self, id: u64) -> Option<WaitingRead> {
        let read = self.reads.remove(&id)?;
        match &read.wanted {
            Wanted::Get(key) => {
                if let Some(ids) = self.by_key.get_mut(key) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_key.remove(key);
                    }
                }
            }
            Wanted::Scan(_) => {
                self.scans.remove(&id);
            }
        }
        Some(read)
    }
}

impl Shared {
    pub(super) fn read(&mut self, now: Time, reply_to: ReplyTo, request: RequestId, key: Key) {
        if let Err(e) = self.config.limits.check_key(0, &key) {
            return self.reply(reply_to, request, Outcome::Rejected(RejectReason::Limit(e)));
        }
        if let Err(reason) = self.leases.serving() {
            return self.reply(reply_to, request, Outcome::NotServing(reason));
        }
        if !self.locks.is_locked(&key) || self.canary(crate::Canary::ReadsIgnoreLocks) {
            let outcome = self.current_value(&key);
            return self.answer_read(reply_to, request, outcome);
        }
        self.wait(now, Wanted::Get(key), request, reply_to);
    }

    pub(super) fn scan(&mut self, now: Time, reply_to: ReplyTo, request: RequestId, scan: Scan) {
        if let Err(e) = self.config.limits.check_scan(&scan.start, scan.end.as_deref(), scan.limit) {
            return self.reply(reply_to, request, Outcome::Rejected(RejectReason::Limit(e)));
        }
        if let Err(reason) = self.leases.serving() {
            return self.reply(reply_to, request, Outcome::NotServing(reason));
        }
        match self.scan_page(&scan) {
            Some(outcome) => self.answer_read(reply_to, request, outcome),
            None => self.wait(now, Wanted::Scan(scan), request, reply_to),
        }
    }

    fn wait(&mut self, now: Time, wanted: Wanted, request: RequestId, reply_to: ReplyTo) {
        if self.reads.reads.len() >= self.config.bounds.read_waiters_max {
            return self.reply(reply_to, request, Outcome::TryAgain(TryAgainReason::Busy));
        }
        let id = self.reads.add(wanted, request, reply_to);
        self.timers.set(Timer::Read(id), now + self.config.timing.read_wait_timeout);
    }

    /// Answers the reads waiting on keys of `ops` that are no longer locked.
    pub(super) fn wake_reads(&mut self, ops: &[TxnOp]) {
        for op in ops {
            let key = op.key();
            if self.locks.is_locked(key) {
                continue;
            }
            let Some(ids) = self.reads.by_key.get(key) else { continue };
            let ids: Vec<u64> = ids.iter().copied().collect();
            for id in ids {
                let read = self.reads.remove(id).expect("indexed reads exist");
                self.timers.cancel(Timer::Read(id));
                let Wanted::Get(key) = &read.wanted else { unreachable!("only gets are indexed by key") };
                let outcome = self.current_value(key);
                self.answer_read(read.reply_to, read.request, outcome);
            }
        }
        let scans: Vec<u64> = self.reads.scans.iter().copied().collect();
        for id in scans {
            let Some(WaitingRead { wanted: Wanted::Scan(scan), .. }) = self.reads.reads.get(&id) else { continue };
            if !ops.iter().any(|op| scan.contains(op.key())) {
                continue;
            }
            let Some(outcome) = self.scan_page(scan) else { continue };
            let read = self.reads.remove(id).expect("the scan is waiting");
            self.timers.cancel(Timer::Read(id));
            self.answer_read(read.reply_to, read.request, outcome);
        }
    }

    /// Answers a read with what memory holds, if the lease holds at this moment (the reply is
    /// produced now, whenever the read arrived); otherwise "not serving".
    fn answer_read(&mut self, reply_to: ReplyTo, request: RequestId, outcome: Outcome) {
        let outcome = match self.leases.serving() {
            Ok(()) => outcome,
            Err(reason) => Outcome::NotServing(reason),
        };
        self.reply(reply_to, request, outcome);
    }

    pub(super) fn on_read_timer(&mut self, id: u64) {
        if let Some(read) = self.reads.remove(id) {
            self.reply(read.reply_to, read.request, Outcome::TryAgain(TryAgainReason::Locked));
        }
    }

    fn current_value(&self, key: &[u8]) -> Outcome {
        match self.store.get_versioned(key) {
            Some(v) => Outcome::Value { value: v.value.clone(), version: v.version },
            None => Outcome::NotFound,
        }
    }

    /// The scan's page as of now, or None while a key in the range it speaks for is locked.
    /// A page holds at most `limit` entries and the transaction byte limit's worth of them.
    fn scan_page(&self, scan: &Scan) -> Option<Outcome> {
        let bytes_max = u64::from(self.config.limits.txn_bytes_max);
        let mut entries: Vec<ScanEntry> = Vec::new();
        let mut bytes = 0;
        let mut following: Option<&[u8]> = None;
        for (key, v) in self.store.range(&scan.start, scan.end.as_deref()) {
            let value = (!scan.keys_only).then(|| v.value.clone());
            let entry = ScanEntry { key: key.clone(), value, version: v.version };
            if entries.len() >= scan.limit as usize || (!entries.is_empty() && bytes + entry.size() > bytes_max) {
                following = Some(key.as_slice());
                break;
            }
            bytes += entry.size();
            entries.push(entry);
        }
        // The page speaks for its keys up to the last it returns, or for the whole range when
        // it returns the rest of it. A `next` also says that a key follows: that key must not
        // be locked either (a prepared delete of it may have been acknowledged already).
        let last = entries.last().filter(|_| following.is_some()).map(|e| e.key.as_slice());
        if self.scan_blocked(scan, last) || following.is_some_and(|key| self.locks.is_locked(key)) {
            return None;
        }
        let next = last.map(|last| [last, &[0]].concat());
        Some(Outcome::Scanned { entries, next })
    }

    /// Whether a prepared transaction locks a key in `[scan.start, last]` (`last` None: the
    /// scan's whole range).
    fn scan_blocked(&self, scan: &Scan, last: Option<&[u8]>) -> bool {
        let in_page = |key: &[u8]| match last {
            Some(last) => key <= last,
            None => scan.contains(key),
        };
        if self.canary(crate::Canary::ScanIgnoresPreparedInsert) {
            // Only locks on keys that exist already: a prepared insert slips through.
            return self
                .locks
                .iter()
                .any(|(key, _)| key >= scan.start.as_slice() && in_page(key) && self.store.get(key).is_some());
        }
        self.locks.first_locked_in(&scan.start, None).is_some_and(in_page)
    }

    /// Every waiting scan is still blocked (a release re-runs the scans in its range).
    pub(super) fn waiting_scans_are_blocked(&self) -> Result<(), String> {
        for id in &self.reads.scans {
            if let Some(WaitingRead { wanted: Wanted::Scan(scan), .. }) = self.reads.reads.get(id)
                && self.scan_page(scan).is_some()
            {
                return Err(format!("scan {id} from {:?} waits though nothing locks its page", scan.start));
            }
        }
        Ok(())
    }
}
