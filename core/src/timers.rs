//! The node's timer table: at most one deadline per timer, ordered by time. The deadline the
//! node reports is exactly the earliest live entry, so a driver never wakes for nothing and never
//! sleeps past something due; firing a timer early is harmless because handlers re-check state.

use crate::ids::{RequestId, TxnId};
use crate::time::Time;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A transaction this node coordinates: resend PREPARE or COMMIT, or give up on votes.
    Coordinator(TxnId),
    /// A transaction prepared here: ask for its outcome.
    Participant(TxnId),
    /// A request waiting out its conflict backoff before its next attempt.
    Retry(RequestId),
    /// A read waiting for a locked key.
    Read(u64),
    /// Send the next heartbeats (and lease requests) to the other members.
    Heartbeat,
    /// The wait before the first YES is over: cast the YES votes held back by it.
    WaitOver,
    /// The coordinator's finished mark moved: send it to the members.
    FinishedMark,
    /// The agreement on the next configuration has a step to retry.
    Agreement,
    /// The lease wait before logging an install is over.
    Install,
    /// A node outside its configuration asks the members to add it again.
    Join,
    /// A node bootstrapping asks the nodes that have not answered again.
    Bootstrap,
}

#[derive(Clone, Debug, Default)]
pub struct Timers {
    by_timer: BTreeMap<Timer, Time>,
    by_time: BTreeSet<(Time, Timer)>,
}

impl Timers {
    /// Sets (or moves) `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Time) {
        if let Some(old) = self.by_timer.insert(timer, at) {
            self.by_time.remove(&(old, timer));
        }
        self.by_time.insert((at, timer));
    }

    pub fn cancel(&mut self, timer: Timer) {
        if let Some(old) = self.by_timer.remove(&timer) {
            self.by_time.remove(&(old, timer));
        }
    }

    /// Whether `timer` is set (and has not fired).
    pub fn is_set(&self, timer: Timer) -> bool {
        self.by_timer.contains_key(&timer)
    }

    pub fn next_deadline(&self) -> Option<Time> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub fn pop_due(&mut self, now: Time) -> Option<Timer> {
        let &(at, timer) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_timer.remove(&timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, RequestId};

    /// Setting a timer again moves it; the reported deadline is always the earliest live one.
    #[test]
    fn deadline_is_the_earliest_live_timer() {
        let mut t = Timers::default();
        let a = Timer::Read(1);
        let b = Timer::Retry(RequestId { client: ClientId(1), seq: 1 });
        t.set(a, Time::from_nanos(10));
        t.set(b, Time::from_nanos(20));
        t.set(a, Time::from_nanos(30));
        assert_eq!(t.next_deadline(), Some(Time::from_nanos(20)));
        assert_eq!(t.pop_due(Time::from_nanos(19)), None);
        assert_eq!(t.pop_due(Time::from_nanos(25)), Some(b));
        t.cancel(a);
        assert_eq!(t.next_deadline(), None);
    }
}
