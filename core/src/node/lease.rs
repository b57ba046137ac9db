//! Heartbeats, read leases and failure suspicion (docs/protocol.md §7.3, §7.5): the node's
//! liveness role. It is off unless [`Timing::leases`](crate::Timing) is on; off, a node serves
//! every read and suspects nobody, which is sound while every commit needs every member.
//!
//! - **Heartbeats.** Once its Boot record is durable, a member sends every other member a
//!   [`Message::Heartbeat`] every `heartbeat_interval`. Each carries a lease request: this
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
//! - **Suspicion.** A member not heard from (any message) for `detection_timeout` is
//!   suspected. Heartbeats and grants of another epoch do not count as heard from.

use super::shared::Shared;
use crate::configuration::{Cluster, Epoch};
use crate::ids::{NodeId, NodeSet, TxnId};
use crate::message::{LeaseRequest, Message};
use crate::operation::NotServingReason;
use crate::time::Time;
use crate::timers::Timer;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// When each other member was last heard from (absent: not since this node started).
    heard: BTreeMap<NodeId, Time>,
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
        self.heard.retain(|m, _| configuration.members.contains(*m));
        self.recompute();
    }

    /// Whether a heartbeat or grant of `epoch` comes from this node's epoch. One of another
    /// epoch is not "heard from" (review item 12: a wiped node heartbeating from an old epoch
    /// must stay suspected); with configurations, an older sender is told the values it lacks.
    fn of_my_epoch(&self, epoch: Epoch) -> bool {
        epoch == self.epoch
    }

    /// A member just added (docs/protocol.md §7.6): counted as heard from at `until`, so it is
    /// suspected only a detection timeout after it, however long its catch-up keeps it silent.
    pub(super) fn expect(&mut self, member: NodeId, until: Time) {
        if self.on {
            self.heard.insert(member, until);
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
        for member in self.members.iter().filter(|&m| m != self.me && !self.heard.contains_key(&m)) {
            unsure.insert(member);
        }
        unsure
    }

    /// The members just added and not heard from since (see [`Leases::expect`]).
    pub(super) fn still_joining(&self) -> NodeSet {
        let mut joining = NodeSet::default();
        for (&member, &last) in &self.heard {
            if last > self.now && member != self.me {
                joining.insert(member);
            }
        }
        joining
    }

    /// Any message from member `from` (heartbeats and grants of another epoch excepted).
    pub(super) fn heard_from(&mut self, from: NodeId) {
        if self.on {
            self.heard.insert(from, self.now);
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
            let last = self.heard.get(&member).copied().unwrap_or(never_heard);
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
        let others = self.configuration.members.without(self.me());
        for member in others.iter() {
            self.send(member, Message::Heartbeat { epoch, request });
        }
        self.timers.set(Timer::Heartbeat, now + self.leases.heartbeat_interval);
    }

    /// A heartbeat from member `from`: grant its lease request, unless frozen.
    pub(super) fn on_heartbeat(&mut self, from: NodeId, epoch: Epoch, request: LeaseRequest) {
        if !self.leases.on || !self.leases.of_my_epoch(epoch) {
            self.stats.messages_dropped += 1;
            return;
        }
        self.leases.heard_from(from);
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
        self.leases.heard_from(from);
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
        l.heard_from(NodeId(1));
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
            Output::Persist { lsn, record: Record::PreparedInEpoch { .. } } => Some(*lsn),
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
    /// stays suspected) and get no grant; those of this epoch (the first, 1) are, and do.
    #[test]
    fn heartbeats_of_another_epoch_do_not_count() {
        use crate::node::{Input, Node, Output};
        let mut config = Config::new(NodeId(0), NodeSet::first(3));
        config.timing.leases = true;
        let mut node = Node::start(config, [], ms(0)).unwrap();
        let heartbeat = |epoch: u64, at: Time| Message::Heartbeat { epoch: Epoch(epoch), request: request(at) };
        // Past the start's grace for a member never heard from: three detection timeouts.
        for n in 0..=30 {
            let at = ms(100 * n);
            node.handle(at, Input::Message { from: NodeId(1), message: heartbeat(2, at) });
            node.handle(at, Input::Message { from: NodeId(2), message: heartbeat(1, at) });
        }
        let grants: Vec<NodeId> = std::iter::from_fn(|| node.poll_output())
            .filter_map(|o| match o {
                Output::Send { to, message: Message::LeaseGrant { .. } } => Some(to),
                _ => None,
            })
            .collect();
        assert!(grants.iter().all(|&to| to == NodeId(2)) && grants.len() == 31, "{grants:?}");
        assert_eq!(node.suspected(), NodeSet::from_ids([NodeId(1)]).unwrap());
        assert_eq!(node.stats().epoch_mismatches, 31);
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
