//! Reads. A read is served from the asked node's memory, unless its key is locked by a
//! prepared transaction: then it waits for the decision, because another node may already
//! have returned the new value, and returning the old one here would break linearizability.
//! The wait is bounded in count (overflow: "busy") and in time (expiry: "try again").

use super::shared::Shared;
use crate::ids::{ReplyTo, RequestId};
use crate::operation::{Key, Outcome, RejectReason, TryAgainReason, WriteOp};
use crate::time::Time;
use crate::timers::Timer;
use std::collections::{BTreeMap, BTreeSet};

struct WaitingRead {
    key: Key,
    request: RequestId,
    reply_to: ReplyTo,
}

/// Reads waiting for locked keys, indexed by key so a release wakes exactly its readers.
#[derive(Default)]
pub(super) struct WaitingReads {
    reads: BTreeMap<u64, WaitingRead>,
    by_key: BTreeMap<Key, BTreeSet<u64>>,
    next_id: u64,
}

impl WaitingReads {
    pub(super) fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    pub(super) fn waiting_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.by_key.keys().map(Vec::as_slice)
    }

    fn remove(&mut self, id: u64) -> Option<WaitingRead> {
        let read = self.reads.remove(&id)?;
        if let Some(ids) = self.by_key.get_mut(&read.key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_key.remove(&read.key);
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
        if !self.locks.is_locked(&key) || self.canary(crate::Canary::ReadsIgnoreLocks) {
            let outcome = self.current_value(&key);
            return self.reply(reply_to, request, outcome);
        }
        let reads = &mut self.reads;
        if reads.reads.len() >= self.config.bounds.read_waiters_max {
            return self.reply(reply_to, request, Outcome::TryAgain(TryAgainReason::Busy));
        }
        let id = reads.next_id;
        reads.next_id += 1;
        reads.by_key.entry(key.clone()).or_default().insert(id);
        reads.reads.insert(id, WaitingRead { key, request, reply_to });
        self.timers.set(Timer::Read(id), now + self.config.timing.read_wait_timeout);
    }

    /// Answers the reads waiting on keys of `ops` that are no longer locked.
    pub(super) fn wake_reads(&mut self, ops: &[WriteOp]) {
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
                let outcome = self.current_value(&read.key);
                self.reply(read.reply_to, read.request, outcome);
            }
        }
    }

    pub(super) fn on_read_timer(&mut self, id: u64) {
        if let Some(read) = self.reads.remove(id) {
            self.reply(read.reply_to, read.request, Outcome::TryAgain(TryAgainReason::Locked));
        }
    }

    fn current_value(&self, key: &[u8]) -> Outcome {
        match self.store.get(key) {
            Some(value) => Outcome::Value(value.clone()),
            None => Outcome::NotFound,
        }
    }
}
