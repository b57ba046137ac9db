//! Heartbeats, read leases and failure suspicion (docs/protocol.md §7.3, §7.5): the node's
//! liveness role. It is off unless [`Timing::leases`](crate::Timing) is on; off, a node serves
//! every read and suspects nobody, which is sound while every commit needs every member.
//!
//! - **Heartbeats.** Once its Boot record is durable, a node sends every other node of the
//!   cluster a [`Message::Heartbeat`] every `heartbeat_interval`. A node of another epoch
//!   tells the one behind of the epoch it lacks; a node outside the sender's configuration in
//!   the same epoch answers with a grant, which members ignore (grants count only from
//!   members). Each carries a lease request: this
//!   life's incarnation and the send time on the member's own clock.
//! - **Grants.** A member that is not frozen answers every heartbeat of its epoch with a
//!   [`Message::LeaseGrant`] echoing the request. It keeps nothing: what protects a lease it
//!   granted is the node-level wait below, which survives its restarts.
//! - **The lease.** A member holds a lease at `now` while grants from a majority of the members
//!   (itself included, unless frozen) answer requests it sent at times `t` with `now < t + L`,
//!   all on its own clock. A grant counts from its request's send time, never from its
//!   arrival, and only if it echoes this life's incarnation (lease requests start after the
//!   Boot record is durable, so no two lives that sent requests share one) and a time not in
//!   the future. Reads are answered only while the lease holds, checked when the reply is
//!   produced (`node/reads.rs`).
//! - **The wait.** No YES vote and no commit decision before `no_yes_before`: the node's start
//!   plus `W = L (1 + ρ) / (1 − ρ)` ([`Timing::lease_wait`](crate::Timing::lease_wait)). A later
//!   part moves it to the install of any configuration that drops a member.
//! - **Suspicion.** A member is heard from at `t` when it answers a request this node sent at
//!   `t` (on this node's clock): a grant echoes it, and so does every heartbeat, which carries
//!   the latest request its sender received from the recipient (a frozen member grants nothing
//!   but still heartbeats); so does a promise to the ballot this node's proposer drew at `t`
//!   ([`Leases::answered`]). A member not heard from for `detection_timeout` is suspected. Only
//!   a round trip counts: a member that can send but not hear (a link cut one way) keeps
//!   sending heartbeats, but echoes none of this node's, so it is suspected and removed. (Seen
//!   in the simulator: with any message counted, such a member held every write for as long as
//!   the cut lasted.) Heartbeats and grants of another epoch do not count as heard from.

use super::shared::Shared;
use crate::configuration::{Cluster, Epoch};
use crate::ids::{NodeId, NodeSet, TxnId};
use crate::message::{LeaseRequest, Message};
use crate::operation::NotServingReason;
use crate::time::Time;
use crate::timers::Timer;
use std::collections::BTreeMap;
use std::time::Duration;

/// A member just added, catching up (§7.6).
#[derive(Clone, Copy, Debug)]
struct Joining {
    /// When it last asked to join (under the ticket it was added with), or was added.
    asked: Time,
    /// The end of its grace: asking counts as heard from no later than this.
    until: Time,
}

impl Joining {
    /// When it counts as heard from.
    fn heard(self) -> Time {
        self.asked.min(self.until)
    }
}

/// The node's heartbeats, the grants it holds, when it last heard from each member, and the
/// wait before its first YES.
pub(super) struct Leases {
    on: bool,
    me: NodeId,
    members: NodeSet,
    /// Every node of the cluster: a lease needs grants from c members (§7.3, `quorum.rs`).
    cluster: Cluster,
    /// The epoch heartbeats and grants are sent and counted in. There is one epoch today;
    /// configurations will set it at install.
    epoch: Epoch,
    incarnation: u64,
    heartbeat_interval: Duration,
    lease_duration: Duration,
    detection_timeout: Duration,
    /// The time of the input being handled: what a read's lease is checked against.
    now: Time,
    started_at: Time,
    no_yes_before: Time,
    /// `W`: how long the wait lasts (zero with leases off).
    wait: Duration,
    /// Frozen (§7.4): grants nothing, itself included.
    frozen: bool,
    /// Per other member, the send time (on this node's clock) of the latest of this node's
    /// requests it echoed: when it was last heard from (absent: not since this node started).
    heard: BTreeMap<NodeId, Time>,
    /// Per other member, the latest lease request received from it in this epoch: echoed in
    /// this node's heartbeats to it, so that it hears from this node even while frozen.
    requests: BTreeMap<NodeId, LeaseRequest>,
    /// Members just added and not heard from since (§7.6): counted as heard from when they
    /// last asked to join (they ask while they catch up), up to the end of their grace.
    joining: BTreeMap<NodeId, Joining>,
    /// When this node last answered each node's heartbeat of a later epoch with one of its own
    /// ([`Shared::remind_of_my_epoch`]). At most one entry per node of the cluster.
    reminded: BTreeMap<NodeId, Time>,
    /// Per other member, until when (on this node's clock) its latest grant holds.
    granted_until: BTreeMap<NodeId, Time>,
    /// Until when the lease holds: the majority-th latest grant (this node's own counting, when
    /// it grants). `None`: no lease.
    lease_until: Option<Time>,
    /// The canary [`crate::Canary::ServePastLease`]: reads are served without a lease.
    serve_without_lease: bool,
    /// YES votes whose PREPARE record became durable during the wait, cast when it ends. Bounded
    /// by the prepared transactions. (None today: no PREPARE is taken during the wait that
    /// starts with the node; a wait that starts at an install may find some.)
    held_votes: Vec<TxnId>,
}

impl Leases {
    pub(super) fn new(config: &crate::Config, incarnation: u64, now: Time) -> Leases {
        let t = &config.timing;
        let wait = if t.leases { t.lease_wait() } else { Duration::ZERO };
        Leases {
            on: t.leases,
            me: config.id,
            members: config.members,
            cluster: Cluster { nodes: config.members },
            epoch: Epoch::default(),
            incarnation,
            heartbeat_interval: t.heartbeat_interval,
            lease_duration: t.lease_duration,
            detection_timeout: t.detection_timeout,
            now,
            started_at: now,
            no_yes_before: now + wait,
            wait,
            frozen: false,
            heard: BTreeMap::new(),
            requests: BTreeMap::new(),
            joining: BTreeMap::new(),
            reminded: BTreeMap::new(),
            granted_until: BTreeMap::new(),
            lease_until: None,
            held_votes: Vec::new(),
            #[cfg(feature = "canary")]
            serve_without_lease: config.canary == Some(crate::Canary::ServePastLease),
            #[cfg(not(feature = "canary"))]
            serve_without_lease: false,
        }
    }

    /// The time of the input the node is handling: every check in this input uses it.
    pub(super) fn observe(&mut self, now: Time) {
        self.now = now;
    }

    /// Whether reads may be answered from memory now; if not, why.
    #[inline]
    pub(super) fn serving(&self) -> Result<(), NotServingReason> {
        if !self.members.contains(self.me) {
            Err(NotServingReason::NotAMember)
        } else if !self.on || self.serve_without_lease || self.lease_until.is_some_and(|until| self.now < until) {
            Ok(())
        } else {
            Err(NotServingReason::NoLease)
        }
    }

    /// No YES vote and no commit decision before this time (§7.5).
    pub(super) fn no_yes_before(&self) -> Time {
        self.no_yes_before
    }

    /// Starts the wait again at `at`: no YES and no commit decision before `at + W` (or the
    /// present end, if later). The hook for the install of a configuration that drops a
    /// member (§7.5), which a later part wires in.
    pub(super) fn wait_from(&mut self, at: Time) {
        if self.on {
            self.no_yes_before = self.no_yes_before.max(at + self.wait);
        }
    }

    /// Whether the wait before the first YES is still running at `now`.
    #[inline]
    pub(super) fn waiting(&self, now: Time) -> bool {
        self.on && now < self.no_yes_before
    }

    /// Ends granting for good (§7.4: a member that promised the next epoch's agreement grants
    /// nothing more in this one), and stops counting itself towards its own lease.
    pub(super) fn freeze(&mut self) {
        self.frozen = true;
        self.recompute();
    }

    /// Heartbeats, grants and suspicion follow `configuration` from now on: its epoch and
    /// members. A new epoch starts unfrozen with no grants (those of the old one are void).
    pub(super) fn install(&mut self, configuration: crate::configuration::Configuration) {
        self.epoch = configuration.epoch;
        self.members = configuration.members;
        self.frozen = false;
        self.granted_until.clear();
        self.requests.clear();
        self.heard.retain(|m, _| configuration.members.contains(*m));
        self.joining.retain(|m, _| configuration.members.contains(*m));
        self.recompute();
    }

    /// Whether a heartbeat or grant of `epoch` comes from this node's epoch. One of another
    /// epoch is not "heard from" (review item 12: a wiped node heartbeating from an old epoch
    /// must stay suspected); with configurations, an older sender is told the values it lacks.
    fn of_my_epoch(&self, epoch: Epoch) -> bool {
        epoch == self.epoch
    }

    /// A member just added at `now` (docs/protocol.md §7.6): counted as heard from now, and
    /// then whenever it asks to join ([`Leases::asking`]), which it does while it catches up,
    /// up to `until`. So a member added that stays silent (crashed, cut off) is suspected a
    /// detection timeout after its add or its last request, and one that keeps asking but never
    /// catches up a detection timeout after `until`.
    pub(super) fn expect(&mut self, member: NodeId, now: Time, until: Time) {
        if self.on {
            self.joining.insert(member, Joining { asked: now, until });
        }
    }

    /// A lease request of this life sent now (what a fresh echo would carry).
    pub(super) fn request_now(&self) -> LeaseRequest {
        LeaseRequest { incarnation: self.incarnation, sent_at: self.now }
    }

    /// Member `member`, just added, asked to join under the ticket it was added with, echoing
    /// `echo`: it is alive and catching up, and it hears this node as of the request it echoes.
    /// A request without an echo of this life, or echoing an old one, does not count: a node
    /// added that can send but not hear (cut off one way) would otherwise hold every write for
    /// its whole grace. (Seen in the simulator, seed 144120: a node added back and cut off one
    /// way a tenth of a second later kept asking, and writes waited ten seconds.)
    pub(super) fn asking(&mut self, member: NodeId, echo: Option<LeaseRequest>) {
        let Some(echo) = echo.filter(|e| e.incarnation == self.incarnation && e.sent_at <= self.now) else {
            return;
        };
        if let Some(joining) = self.joining.get_mut(&member) {
            joining.asked = joining.asked.max(echo.sent_at);
        }
    }

    /// The other members this node has not heard from since it started, while that is still
    /// within the start's grace (see [`Leases::suspected`]): neither live nor suspected yet.
    pub(super) fn unsure(&self) -> NodeSet {
        let mut unsure = NodeSet::default();
        let grace_over = self.started_at + self.detection_timeout * 3;
        if !self.on || self.now >= grace_over {
            return unsure;
        }
        let heard = |m: &NodeId| self.heard.contains_key(m) || self.joining.contains_key(m);
        for member in self.members.iter().filter(|&m| m != self.me && !heard(&m)) {
            unsure.insert(member);
        }
        unsure
    }

    /// The members just added and not heard from since (see [`Leases::expect`]).
    pub(super) fn still_joining(&self) -> NodeSet {
        // Past its grace too: until it heartbeats in the epoch it holds none of its state, and
        // takes no part in the agreement (review finding: for a detection timeout after the
        // grace it counted as ready, and as holding the state).
        NodeSet::from_ids(self.joining.keys().copied().filter(|&m| m != self.me)).unwrap_or_default()
    }

    /// Member `from` echoed `request`: if it is one this life sent, `from` heard this node at
    /// its send time. (A member just added that answers has caught up: it heartbeats in this
    /// epoch only as a member of it.)
    fn heard_back(&mut self, from: NodeId, request: LeaseRequest) {
        if request.incarnation == self.incarnation {
            self.answered(from, request.sent_at);
        }
    }

    /// Member `from` answered a request this node sent at `asked_at` (a promise for the ballot
    /// this node's proposer asked for then): it hears this node, as an echo shows.
    pub(super) fn answered(&mut self, from: NodeId, asked_at: Time) {
        if !self.on || asked_at > self.now || !self.members.contains(from) || from == self.me {
            return;
        }
        self.heard_at(from, asked_at);
        self.joining.remove(&from);
    }

    /// `member` was heard from at `at` (on this node's clock), unless later already.
    fn heard_at(&mut self, member: NodeId, at: Time) {
        let heard = self.heard.entry(member).or_insert(at);
        *heard = (*heard).max(at);
    }

    /// An install that waited out the leases (docs/protocol.md §7.4, "Inferred commits") is
    /// done at `now`: the members it keeps count as heard from now. This node dropped their
    /// heartbeats while it waited, and they theirs until their own installs; without this, a
    /// member that learned the value a little later would be suspected at once, removed, and
    /// caught up again (review finding).
    pub(super) fn waited_for_install(&mut self, kept: NodeSet, now: Time) {
        if !self.on {
            return;
        }
        let others = kept.intersection(self.members).without(self.me);
        for member in others.iter() {
            self.heard_at(member, now);
        }
    }

    /// The latest lease request received from `from` in this epoch, to echo to it.
    fn received(&mut self, from: NodeId, request: LeaseRequest) {
        let latest = self.requests.entry(from).or_insert(request);
        if request.is_later_than(latest) {
            *latest = request;
        }
    }

    /// The other members not heard from for `detection_timeout` (none while leases are off).
    pub(super) fn suspected(&self) -> NodeSet {
        let mut suspected = NodeSet::default();
        if !self.on {
            return suspected;
        }
        // A member not heard from since this node started gets two more detection timeouts:
        // links come up after a start with a reconnect backoff (up to 250 ms in dkv-net), and a
        // removal costs the member a catch-up (§7.6).
        let never_heard = self.started_at + self.detection_timeout * 2;
        for member in self.members.iter().filter(|&m| m != self.me) {
            let heard = self.heard.get(&member).copied().max(self.joining.get(&member).map(|j| j.heard()));
            let last = heard.unwrap_or(never_heard);
            if self.now.saturating_since(last) >= self.detection_timeout {
                suspected.insert(member);
            }
        }
        suspected
    }

    /// Counts a grant for the request sent at `request.sent_at` (`from_arrival`: the canary that
    /// counts it from now instead).
    fn on_grant(&mut self, from: NodeId, request: LeaseRequest, from_arrival: bool) -> bool {
        if request.incarnation != self.incarnation || request.sent_at > self.now || !self.members.contains(from) {
            return false;
        }
        let counted_from = if from_arrival { self.now } else { request.sent_at };
        let until = counted_from + self.lease_duration;
        let held = self.granted_until.entry(from).or_insert(until);
        *held = (*held).max(until);
        self.recompute();
        true
    }

    /// The lease is the c-th latest grant (c = [`Cluster::copies`], the members' majority when
    /// every node is a member), this node counting as one grant that never runs out while it
    /// is not frozen.
    fn recompute(&mut self) {
        let copies = self.cluster.copies();
        let own = usize::from(!self.frozen);
        let needed = copies.saturating_sub(own);
        if needed == 0 {
            self.lease_until = Some(Time::from_nanos(u64::MAX));
            return;
        }
        let mut untils: Vec<Time> = self.granted_until.values().copied().collect();
        untils.sort_unstable_by(|a, b| b.cmp(a));
        self.lease_until = untils.get(needed - 1).copied();
    }
}

impl Shared {
    /// Holds back the YES vote for `txn` until the wait is over.
    pub(super) fn hold_vote(&mut self, txn: TxnId) {
        self.leases.held_votes.push(txn);
        self.timers.set(Timer::WaitOver, self.leases.no_yes_before);
    }

    /// The wait is over: the votes it held back, to be cast.
    pub(super) fn release_votes(&mut self) -> Vec<TxnId> {
        std::mem::take(&mut self.leases.held_votes)
    }

    /// A bootstrap ended (docs/protocol.md §7.1): the node takes part from now on, so the grace
    /// it gives members it has not heard from counts from now, not from its process's start
    /// (review: nodes of a first start started by hand seconds apart were removed as soon as
    /// the last one took part). The wait before the first YES keeps counting from the start.
    pub(super) fn restart_grace(&mut self, now: Time) {
        self.leases.started_at = now;
        self.leases.heard.clear();
    }

    /// The Boot record is durable: this life's incarnation is on disk, so its lease requests can
    /// never be mistaken for another life's. Heartbeats start now.
    pub(super) fn start_heartbeats(&mut self, now: Time) {
        if self.leases.on {
            self.on_heartbeat_timer(now);
        }
    }

    pub(super) fn on_heartbeat_timer(&mut self, now: Time) {
        let l = &self.leases;
        let (epoch, request) = (l.epoch, LeaseRequest { incarnation: l.incarnation, sent_at: now });
        // To every other node of the cluster, members or not: a node in another epoch answers
        // a heartbeat of an older one with the value that follows it, and one of a later one
        // with its own (which draws that answer), so a node behind always learns it is. (A
        // node outside in the same epoch grants, and its grants are ignored.) (Seen
        // in the simulator: a member removed while it was away from the others, left in its old
        // epoch with the other member of it unvouched, heard from nobody and stayed behind.)
        let others = self.config.members.without(self.me());
        for node in others.iter() {
            let echo = self.leases.requests.get(&node).copied();
            self.send(node, Message::Heartbeat { epoch, request, echo });
        }
        self.timers.set(Timer::Heartbeat, now + self.leases.heartbeat_interval);
    }

    /// `from` heartbeats in a later epoch: this node answers with a heartbeat of its own, which
    /// the sender answers with the value this node lacks (`Node::tell_chosen`). At most once
    /// per half detection timeout per sender: the answer may be a large value.
    pub(super) fn remind_of_my_epoch(&mut self, now: Time, from: NodeId) {
        self.stats.epoch_mismatches += 1;
        if !self.leases.on || !self.config.members.contains(from) {
            return;
        }
        let every = self.leases.detection_timeout / 2;
        if self.leases.reminded.get(&from).is_some_and(|&at| now.saturating_since(at) < every) {
            return;
        }
        self.leases.reminded.insert(from, now);
        let (epoch, request) = (self.leases.epoch, self.leases.request_now());
        self.send(from, Message::Heartbeat { epoch, request, echo: None });
    }

    /// A heartbeat from member `from`: grant its lease request, unless frozen; its echo says
    /// `from` hears this node.
    pub(super) fn on_heartbeat(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        request: LeaseRequest,
        echo: Option<LeaseRequest>,
    ) {
        if !self.leases.on || !self.leases.of_my_epoch(epoch) {
            self.stats.messages_dropped += 1;
            return;
        }
        let hears_one_way = self.canary(crate::Canary::SuspectOneWay);
        if hears_one_way {
            let now = self.leases.request_now();
            self.leases.heard_back(from, now);
        }
        // A member just added that heartbeats in this epoch has caught up (it acts in the epoch
        // only as a member of it): its grace is over, and it has a detection timeout from now to
        // echo one of this node's requests. (Seen in the simulator: a member added back while
        // cut off one way, that caught up but could not hear, kept its whole grace, and writes
        // waited for it.)
        if self.leases.joining.remove(&from).is_some() {
            let now = self.leases.now;
            self.leases.heard_at(from, now);
        }
        if let Some(echo) = echo {
            self.leases.heard_back(from, echo);
        }
        self.leases.received(from, request);
        if !self.leases.frozen {
            self.send(from, Message::LeaseGrant { epoch, request });
        }
    }

    /// A grant from member `from`, answering one of this node's heartbeats.
    pub(super) fn on_lease_grant(&mut self, from: NodeId, epoch: Epoch, request: LeaseRequest) {
        if !self.leases.on || !self.leases.of_my_epoch(epoch) {
            self.stats.messages_dropped += 1;
            return;
        }
        self.leases.heard_back(from, request);
        let from_arrival = self.canary(crate::Canary::LeaseFromArrival);
        if !self.leases.on_grant(from, request, from_arrival) {
            self.stats.messages_dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn leases(members: usize, now: Time) -> Leases {
        let mut config = Config::new(NodeId(0), NodeSet::first(members));
        config.timing.leases = true;
        Leases::new(&config, 1, now)
    }

    fn ms(n: u64) -> Time {
        Time::from_nanos(n * 1_000_000)
    }

    fn request(sent_at: Time) -> LeaseRequest {
        LeaseRequest { incarnation: 1, sent_at }
    }

    /// A lease needs grants from a majority, itself included, and runs `L` from the request's
    /// send time by the reader's clock, however late the grant arrived.
    #[test]
    fn a_lease_runs_from_the_request_of_a_majority() {
        let mut l = leases(5, ms(0));
        l.observe(ms(100));
        assert_eq!(l.serving(), Err(NotServingReason::NoLease));
        assert!(l.on_grant(NodeId(1), request(ms(10)), false));
        assert_eq!(l.serving(), Err(NotServingReason::NoLease), "two of five is no majority");
        assert!(l.on_grant(NodeId(2), request(ms(90)), false));
        assert_eq!(l.serving(), Ok(()), "itself, n1 and n2");
        // The lease is the older of the two grants that make the majority: 10 + 500 ms.
        l.observe(ms(509));
        assert_eq!(l.serving(), Ok(()));
        l.observe(ms(510));
        assert_eq!(l.serving(), Err(NotServingReason::NoLease));
        // A grant arriving late counts from its request's send time (5 ms: over at 505 ms),
        // not from its arrival (510 ms).
        assert!(l.on_grant(NodeId(3), request(ms(5)), false));
        assert_eq!(l.serving(), Err(NotServingReason::NoLease));
        assert!(l.on_grant(NodeId(4), request(ms(30)), false));
        assert_eq!(l.serving(), Ok(()), "n2 and n4 now hold it until 530 ms");
        l.observe(ms(530));
        assert_eq!(l.serving(), Err(NotServingReason::NoLease));
    }

    /// Grants of another life, or echoing a time not yet come, do not count.
    #[test]
    fn grants_of_another_life_or_the_future_do_not_count() {
        let mut l = leases(3, ms(0));
        l.observe(ms(100));
        assert!(!l.on_grant(NodeId(1), LeaseRequest { incarnation: 2, sent_at: ms(90) }, false));
        assert!(!l.on_grant(NodeId(1), request(ms(101)), false));
        assert!(!l.on_grant(NodeId(7), request(ms(90)), false), "not a member");
        assert_eq!(l.serving(), Err(NotServingReason::NoLease));
    }

    /// A frozen member no longer counts its own grant: it needs a majority of the others.
    #[test]
    fn a_frozen_member_does_not_grant_itself() {
        let mut l = leases(3, ms(0));
        l.observe(ms(100));
        assert!(l.on_grant(NodeId(1), request(ms(90)), false));
        assert_eq!(l.serving(), Ok(()));
        l.freeze();
        assert_eq!(l.serving(), Err(NotServingReason::NoLease));
        assert!(l.on_grant(NodeId(2), request(ms(95)), false));
        assert_eq!(l.serving(), Ok(()));
    }

    /// A member not heard from for the detection timeout is suspected; hearing from it clears it.
    #[test]
    fn silent_members_are_suspected() {
        let mut l = leases(3, ms(0));
        l.observe(ms(999));
        assert_eq!(l.suspected(), NodeSet::default());
        l.heard_back(NodeId(1), request(ms(999)));
        // n2, never heard from since the start, gets two more detection timeouts.
        l.observe(ms(1998));
        assert_eq!(l.suspected(), NodeSet::default());
        l.observe(ms(1999));
        assert_eq!(l.suspected(), NodeSet::from_ids([NodeId(1)]).unwrap());
        l.observe(ms(2999));
        assert_eq!(l.suspected(), NodeSet::from_ids([NodeId(1)]).unwrap());
        l.observe(ms(3000));
        assert_eq!(l.suspected(), NodeSet::from_ids([NodeId(1), NodeId(2)]).unwrap());
    }

    /// A member is heard from when it echoes a request of this life, as of the request's send
    /// time: an echo of another life's request, of a time not yet come, or from a node outside
    /// the members says nothing, and neither does a heartbeat that echoes nothing (its sender
    /// may not hear this node).
    #[test]
    fn only_an_echo_of_this_lifes_request_is_heard_from() {
        let mut l = leases(3, ms(0));
        l.observe(ms(3000));
        l.heard_back(NodeId(1), LeaseRequest { incarnation: 2, sent_at: ms(2900) });
        l.heard_back(NodeId(1), request(ms(3001)));
        l.heard_back(NodeId(7), request(ms(2900)));
        assert_eq!(l.suspected(), NodeSet::from_ids([NodeId(1), NodeId(2)]).unwrap());
        l.heard_back(NodeId(1), request(ms(2500)));
        l.heard_back(NodeId(1), request(ms(2000)));
        assert_eq!(l.suspected(), NodeSet::from_ids([NodeId(2)]).unwrap(), "heard at 2.5 s");
        l.observe(ms(3500));
        assert_eq!(l.suspected(), NodeSet::from_ids([NodeId(1), NodeId(2)]).unwrap(), "a second since 2.5 s");
    }

    /// A YES whose PREPARE record becomes durable during a wait (one that started after the
    /// PREPARE was taken, as an install's will) is held back, and cast when the wait ends.
    #[test]
    fn a_yes_due_during_the_wait_is_cast_when_it_ends() {
        use crate::ids::{ClientId, RequestId};
        use crate::message::Vote;
        use crate::node::{Input, Node, Output};
        use crate::operation::TxnOp;
        let mut config = Config::new(NodeId(0), NodeSet::first(3));
        config.timing.leases = true;
        let mut node = Node::start(config, [], ms(0)).unwrap();
        let drain = |node: &mut Node| std::iter::from_fn(|| node.poll_output()).collect::<Vec<Output>>();
        let after_wait = node.no_yes_before() + Duration::from_millis(1);
        let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number: 1 };
        let prepare = Message::Prepare {
            epoch: crate::configuration::Epoch::FIRST,
            txn,
            request: RequestId { client: ClientId(7), seq: 1 },
            ops: vec![TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() }].into(),
            participants: NodeSet::first(3),
            round: txn.incarnation,
        };
        node.handle(after_wait, Input::Message { from: NodeId(1), message: prepare });
        let persisted = drain(&mut node).into_iter().filter_map(|o| match o {
            Output::Persist { lsn, .. } => Some(lsn),
            _ => None,
        });
        let through = persisted.max().expect("the PREPARE record");
        // An install moves the wait; the record becomes durable during it: no vote yet.
        node.shared.leases.wait_from(after_wait);
        node.handle(after_wait, Input::Durable { through });
        let yes = |outputs: &[Output]| {
            outputs.iter().any(|o| matches!(o, Output::Send { message: Message::Vote { vote: Vote::Yes, .. }, .. }))
        };
        assert!(!yes(&drain(&mut node)), "a YES during the wait");
        node.check_invariants().unwrap();
        let end = node.no_yes_before();
        assert_eq!(node.deadline().map(|d| d <= end), Some(true));
        node.handle(end, Input::Timeout);
        assert!(yes(&drain(&mut node)), "the held YES is cast when the wait ends");
    }

    /// A coordinator does not decide a commit during a wait (one that started after its
    /// transaction began, as an install's will), however many YES votes it has.
    #[test]
    fn no_commit_decision_during_the_wait() {
        use crate::ids::{ClientId, ReplyTo, RequestId};
        use crate::message::Vote;
        use crate::node::{Input, Node, Output};
        use crate::operation::{Operation, Request, TxnOp};
        use crate::record::Record;
        let mut config = Config::new(NodeId(0), NodeSet::first(3));
        config.timing.leases = true;
        let mut node = Node::start(config, [], ms(0)).unwrap();
        let drain = |node: &mut Node| std::iter::from_fn(|| node.poll_output()).collect::<Vec<Output>>();
        let boot = drain(&mut node).into_iter().find_map(|o| match o {
            Output::Persist { lsn, .. } => Some(lsn),
            _ => None,
        });
        node.handle(ms(0), Input::Durable { through: boot.unwrap() });
        drain(&mut node);
        let after_wait = node.no_yes_before() + Duration::from_millis(1);
        let ops = vec![TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() }];
        let request = Request { id: RequestId { client: ClientId(7), seq: 1 }, operation: Operation::Txn { ops } };
        node.handle(after_wait, Input::Request { reply_to: ReplyTo(1), request });
        let outputs = drain(&mut node);
        let txn = outputs.iter().find_map(|o| match o {
            Output::Send { message: Message::Prepare { txn, .. }, .. } => Some(*txn),
            _ => None,
        });
        let txn = txn.expect("PREPARE sent");
        // The coordinator's own share is durable: its own YES.
        let own_share = outputs.iter().find_map(|o| match o {
            Output::Persist { lsn, record: Record::PreparedInEpoch { .. }, .. } => Some(*lsn),
            _ => None,
        });
        node.handle(after_wait, Input::Durable { through: own_share.expect("own share logged") });
        node.shared.leases.wait_from(after_wait);
        for from in [NodeId(1), NodeId(2)] {
            node.handle(
                after_wait,
                Input::Message {
                    from,
                    message: Message::Vote {
                        epoch: crate::configuration::Epoch::FIRST,
                        txn,
                        vote: Vote::Yes,
                        round: txn.incarnation,
                    },
                },
            );
        }
        let decided = |outputs: Vec<Output>| {
            outputs.iter().any(|o| matches!(o, Output::Persist { record: Record::CommitDecided { .. }, .. }))
        };
        assert!(!decided(drain(&mut node)), "a commit decided during the wait");
        node.check_invariants().unwrap();
        // Once the wait is over, the transaction's next timer decides.
        let mut now = node.no_yes_before();
        while !decided(drain(&mut node)) {
            now = node.deadline().expect("the transaction's timer").max(now);
            assert!(now < node.no_yes_before() + Duration::from_secs(1), "not decided after the wait");
            node.handle(now, Input::Timeout);
        }
    }

    /// Heartbeats of another epoch are not "heard from" (a node heartbeating from an old epoch
    /// stays suspected) and get no grant, even when they echo this node's requests; those of
    /// this epoch (the first, 1) are, and do. One of a later epoch is answered with a heartbeat
    /// of this node's epoch, which the sender answers with the value this node lacks. A
    /// heartbeat of this epoch that echoes nothing (its sender may not hear this node: a link
    /// cut one way) gets a grant but is not heard from.
    #[test]
    fn heartbeats_of_another_epoch_or_without_an_echo_do_not_count() {
        use crate::node::{Input, Node, Output};
        let mut config = Config::new(NodeId(0), NodeSet::first(4));
        config.timing.leases = true;
        let mut node = Node::start(config, [], ms(0)).unwrap();
        let boot = std::iter::from_fn(|| node.poll_output()).find_map(|o| match o {
            Output::Persist { lsn, .. } => Some(lsn),
            _ => None,
        });
        node.handle(ms(0), Input::Durable { through: boot.expect("the Boot record") });
        let mut sent: Vec<(NodeId, LeaseRequest)> = Vec::new();
        let mut grants: Vec<NodeId> = Vec::new();
        let mut reminders = 0;
        let mut drain = |node: &mut Node, sent: &mut Vec<(NodeId, LeaseRequest)>| {
            let mut heartbeats_to_n1 = 0;
            for output in std::iter::from_fn(|| node.poll_output()) {
                match output {
                    Output::Send { to, message: Message::Heartbeat { request, .. } } => {
                        heartbeats_to_n1 += usize::from(to == NodeId(1));
                        sent.push((to, request))
                    }
                    Output::Send { to, message: Message::LeaseGrant { .. } } => grants.push(to),
                    _ => {}
                }
            }
            heartbeats_to_n1
        };
        // Past the start's grace for a member never heard from: three detection timeouts.
        for n in 0..=30 {
            let at = ms(100 * n);
            if node.deadline().is_some_and(|d| d <= at) {
                node.handle(at, Input::Timeout);
            }
            drain(&mut node, &mut sent);
            let latest = |sent: &[(NodeId, LeaseRequest)], to: NodeId| {
                sent.iter().rev().find(|(t, _)| *t == to).map(|(_, r)| *r)
            };
            let heartbeat = |epoch: u64, echo| Message::Heartbeat { epoch: Epoch(epoch), request: request(at), echo };
            node.handle(at, Input::Message { from: NodeId(1), message: heartbeat(2, latest(&sent, NodeId(1))) });
            reminders += drain(&mut node, &mut sent);
            node.handle(at, Input::Message { from: NodeId(2), message: heartbeat(1, latest(&sent, NodeId(2))) });
            node.handle(at, Input::Message { from: NodeId(3), message: heartbeat(1, None) });
        }
        drain(&mut node, &mut sent);
        assert!(sent.len() > 20 * 3, "heartbeats to every other member: {}", sent.len());
        assert!(!grants.contains(&NodeId(1)) && grants.len() >= 2 * 30, "{grants:?}");
        assert_eq!(node.suspected(), NodeSet::from_ids([NodeId(1), NodeId(3)]).unwrap());
        assert_eq!(node.stats().epoch_mismatches, 31);
        assert_eq!(reminders, 7, "a heartbeat of the later epoch is answered from this one at 0, 0.5, …, 3 s");
    }

    /// The wait before the first YES is `W` after the start; with leases off there is none, and
    /// every read is served.
    #[test]
    fn the_wait_follows_the_start_and_leases_off_serve_everything() {
        let l = leases(3, ms(1000));
        assert_eq!(l.no_yes_before(), ms(1000) + crate::Timing::default().lease_wait());
        assert!(l.waiting(ms(1510)) && !l.waiting(ms(1511)));
        let off = Leases::new(&Config::new(NodeId(0), NodeSet::first(3)), 1, ms(1000));
        assert!(!off.waiting(ms(1000)));
        assert_eq!(off.serving(), Ok(()));
        assert_eq!(off.suspected(), NodeSet::default());
    }
}
