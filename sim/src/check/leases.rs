//! The lease rule, watched as it happens (docs/protocol.md §7.5): a node answers a read from
//! memory only while grants from a majority of the members of its configuration — itself
//! counting as one — made in its epoch answer lease requests it sent less than `L` ago by its
//! own clock (a new epoch's lease starts from nothing). The world shows this checker every
//! grant a node receives and every read it answers; the checker keeps, per node, until when each
//! grantor's latest grant holds in global time (the node's clock mapped back), and reports a
//! read answered at or after the majority-th of those times.
//!
//! While every commit needs every member, a read served past its lease still returns a value no
//! commit contradicts (it waits on the locks), so no client-visible history shows the fault;
//! this checker sees it directly, and is the one the lease canary must trip.

use crate::check::Violation;
use crate::clock::Clock;
use dkv_core::{Configuration, Epoch, LeaseRequest, NodeId, Time};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct LeaseChecker {
    lease_duration: Duration,
    /// Per node, per grantor: until when (global nanoseconds) its latest grant holds, and the
    /// epoch those grants were made in.
    granted_until: Vec<BTreeMap<NodeId, u64>>,
    grants_epoch: Vec<Epoch>,
    /// A run reports its first read past a lease only: one is enough, and the rest would
    /// repeat it by the thousand.
    reported: bool,
    /// Every read answer, in order: which node, when (global nanoseconds), and whether it was
    /// served from memory or answered "not serving". For the tests.
    pub answers: Vec<ReadAnswer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAnswer {
    pub node: usize,
    pub at: u64,
    pub served: bool,
}

impl LeaseChecker {
    pub fn new(members: usize, lease_duration: Duration) -> LeaseChecker {
        LeaseChecker {
            lease_duration,
            granted_until: vec![BTreeMap::new(); members],
            grants_epoch: vec![Epoch::FIRST; members],
            reported: false,
            answers: Vec::new(),
        }
    }

    /// Node `node`, whose incarnation and epoch are `life` and whose clock is `clock`, received
    /// a grant from `from` for `request`, made in `epoch`. A grant for another life's request,
    /// or of another epoch than the node's, does not count.
    pub fn on_grant(
        &mut self,
        node: usize,
        life: (u64, Epoch),
        clock: &Clock,
        from: NodeId,
        request: LeaseRequest,
        epoch: Epoch,
    ) {
        let (incarnation, node_epoch) = life;
        if request.incarnation != incarnation || epoch != node_epoch {
            return;
        }
        if self.grants_epoch[node] != epoch {
            self.grants_epoch[node] = epoch;
            self.granted_until[node].clear();
        }
        let until = clock.global(request.sent_at + self.lease_duration);
        let held = self.granted_until[node].entry(from).or_insert(until);
        *held = (*held).max(until);
    }

    /// Node `node` lost its memory (a crash): the grants it held are gone with it.
    pub fn forget(&mut self, node: usize) {
        self.granted_until[node].clear();
    }

    /// Node `node` answered a read "not serving" at global time `now`.
    pub fn on_read_not_served(&mut self, node: usize, now: u64) {
        self.answers.push(ReadAnswer { node, at: now, served: false });
    }

    /// Node `node` answered a read from memory at global time `now` (its clock reading `local`).
    /// `configuration` is the node's as it answered.
    pub fn on_read_served(
        &mut self,
        node: usize,
        configuration: Configuration,
        now: u64,
        local: Time,
    ) -> Option<Violation> {
        self.answers.push(ReadAnswer { node, at: now, served: true });
        let needed = (configuration.members.len() / 2 + 1) - 1;
        if needed == 0 {
            return None;
        }
        let of_its_epoch = self.grants_epoch[node] == configuration.epoch;
        let grants = self.granted_until[node].iter().filter(|(from, _)| of_its_epoch && configuration.contains(**from));
        let mut untils: Vec<u64> = grants.map(|(_, until)| *until).collect();
        untils.sort_unstable_by(|a, b| b.cmp(a));
        let ran_out = match untils.get(needed - 1) {
            Some(&until) if now < until => return None,
            Some(until) => format!("its grants from a majority ran out at global {until} ns"),
            None => "it never had grants from a majority".to_string(),
        };
        if std::mem::replace(&mut self.reported, true) {
            return None;
        }
        let message =
            format!("n{node} answered a read at {local} by its clock (global {now} ns) without a lease: {ran_out}");
        Some(Violation::new("lease", message))
    }
}
