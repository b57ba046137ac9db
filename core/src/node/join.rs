//! Joining (docs/protocol.md §7.6): a node outside the configuration it knows of, or one that
//! cannot vouch for its log, asks the members to add it; a member adds it with a change whose
//! value names the ticket of the node's present life; the node, told that value, asks its
//! runtime to catch it up from a member through the `Installed` record of that configuration
//! ([`Output::CatchUp`]), and starts again from the log the catch-up made, as a member.
//!
//! - **The ticket** is drawn afresh at every start. An add asked for by an earlier life (which
//!   may have joined, voted and promised, then lost its data) carries that life's ticket, so it
//!   never makes this life catch up and act as a member of an epoch it may have amnesia of.
//! - **A member that says it starts a new life** (it asks to join while a member, with a ticket
//!   the configuration did not add it under) takes part in nothing: the members suspect it, a
//!   change removes it, and a later change adds it back under its new ticket; unless it shows
//!   it acts in the epoch after all (an echo, or a promise to this node's ballot).
//! - **Growing backoff for a flapping node**: a node removed soon after it was added waits
//!   about twice as long before each next add: none after a first removal, then 1, 3, 7, …
//!   detection timeouts (volatile: a member that restarts forgets it, which costs at most one
//!   quick add).
//! - **Grace**: a node just added asks to join (under the ticket it was added with) while it
//!   catches up, every half detection timeout; the members count each request as heard from,
//!   for up to `join_grace` after the add, the time its catch-up may take. Writes wait for it
//!   meanwhile: every commit needs every member's YES. One that stops asking (crashed, cut off)
//!   is suspected a detection timeout later, as any member. (Seen in the simulator: a node
//!   added just as it was cut off held every write for its whole grace.)

use super::{Node, Output};
use crate::configuration::{Configuration, Epoch, JoinTicket, PaxosMessage, Value};
use crate::ids::{NodeId, NodeSet};
use crate::message::{LeaseRequest, Message};
use crate::record::INSTALLED_KEPT;
use crate::time::Time;
use crate::timers::Timer;
use std::collections::BTreeMap;
use std::time::Duration;

/// A node removed within this long after it was added counts as flapping.
const FLAP_WINDOW: Duration = Duration::from_secs(60);
/// At most 2^this detection timeouts between adds of a flapping node.
const FLAP_DOUBLINGS_MAX: u32 = 6;

/// This node's side of joining, and what it knows, as a member, of the nodes asking to join.
pub(super) struct Join {
    /// This life's ticket.
    ticket: JoinTicket,
    /// The latest configuration this node heard of while outside (its own at first): whom it
    /// asks, and which value it may catch up through.
    known: Configuration,
    /// The catch-up last asked of the runtime: through which epoch, and when.
    asked: Option<(Epoch, Time)>,
    /// The latest epoch whose value this node was told and may catch up through: catch-ups
    /// are asked only through it, so the target only moves forward (until a later
    /// configuration leaves the node out).
    target: Option<Epoch>,
    /// Catch-ups failed in a row, and no catch-up is asked before `retry_at` (the backoff).
    failures: u32,
    retry_at: Time,
    /// The nodes whose state for a catch-up through this epoch was refused: not asked again for
    /// it while others may answer (a node that answers with a value it cannot serve would be
    /// asked for ever).
    refused_from: (Epoch, NodeSet),
    /// As a member: the nodes asking to be added, with the ticket they asked under, when they
    /// last asked, and the epoch they were in.
    asking: BTreeMap<NodeId, (JoinTicket, Time, Epoch)>,
    /// While outside: the latest lease request each node of the cluster sent this node, to echo
    /// in the requests to join it (at most one per node of the cluster).
    echoes: BTreeMap<NodeId, LeaseRequest>,
    /// As a member: members that asked to join, so started a new life (their state is not the
    /// one they had as members): suspected until a change removes them, or until they show they
    /// act in the epoch ([`Join::acts_in_this_epoch`]).
    new_lives: NodeSet,
    /// As a member: when each node was last added, and how many times in a row it was removed
    /// soon after.
    added: BTreeMap<NodeId, (Time, u32)>,
    /// As a member: no add of the node before this time (its backoff).
    not_before: BTreeMap<NodeId, Time>,
    /// A member told a configuration so far past this node's that no member keeps the values
    /// in between: it cannot follow the changes, and stands outside until it has caught up.
    behind: bool,
}

impl Join {
    pub(super) fn new(ticket: JoinTicket, known: Configuration) -> Join {
        Join {
            ticket,
            known,
            asked: None,
            target: None,
            failures: 0,
            retry_at: Time::ZERO,
            refused_from: (Epoch::default(), NodeSet::default()),
            asking: BTreeMap::new(),
            echoes: BTreeMap::new(),
            new_lives: NodeSet::default(),
            added: BTreeMap::new(),
            not_before: BTreeMap::new(),
            behind: false,
        }
    }

    pub(super) fn is_behind(&self) -> bool {
        self.behind
    }

    /// Node `from` of the cluster (`nodes`) heartbeats this node while it stands outside: its
    /// request is the one to echo to it (a later life's, or a later one of the same life).
    pub(super) fn heard(&mut self, from: NodeId, request: LeaseRequest, nodes: &NodeSet) {
        if !nodes.contains(from) {
            return;
        }
        let latest = self.echoes.entry(from).or_insert(request);
        if request.is_later_than(latest) {
            *latest = request;
        }
    }

    /// The members that started a new life: suspected (see [`Join`]).
    pub(super) fn new_lives(&self) -> NodeSet {
        self.new_lives
    }

    /// Member `from` echoes a heartbeat, or promises to this node's ballot, in this node's
    /// epoch: it acts in it as a member, with the epoch's state (a node sends in an epoch only
    /// once it installed it, or caught up through it), so whatever life it asked to join under,
    /// it is no new life without that state.
    /// (Seen in the simulator: a member that restarted while outside asked under its new
    /// ticket, then caught up through its earlier life's add, as a node that vouches for its
    /// log may; the members kept it for a new life, and every change to remove it kept it, as
    /// it promised: twelve changes in 150 ms, and writes waited.)
    pub(super) fn acts_in_this_epoch(&mut self, from: NodeId) {
        self.new_lives.remove(from);
    }

    /// Whether any node asks to join (added or not yet).
    pub(super) fn anyone_asking(&self) -> bool {
        !self.asking.is_empty()
    }

    /// The nodes asking to join that may be added now: asked within the last `fresh`, outside
    /// `current`, and past their backoff; with their tickets.
    pub(super) fn ready(&self, now: Time, current: Configuration, fresh: Duration) -> BTreeMap<NodeId, JoinTicket> {
        self.asking
            .iter()
            .filter(|(node, (_, at, _))| {
                !current.contains(**node)
                    && now.saturating_since(*at) < fresh
                    && self.not_before.get(node).is_none_or(|&t| t <= now)
            })
            .map(|(node, (ticket, _, _))| (*node, *ticket))
            .collect()
    }

    /// The nodes outside `current` that asked to join within the last `fresh` from `current`'s
    /// epoch: they take part in its agreement (§7.3), and count towards the cluster's majority.
    pub(super) fn outsiders_in(&self, now: Time, current: Configuration, fresh: Duration) -> NodeSet {
        let asked = self.asking.iter().filter(|(node, (_, at, epoch))| {
            !current.contains(**node) && now.saturating_since(*at) < fresh && *epoch == current.epoch
        });
        NodeSet::from_ids(asked.map(|(node, _)| *node)).unwrap_or_default()
    }
}

/// A ticket for a life started at `now` with `seed` and `incarnation`: distinct across lives
/// as long as one of the three differs (splitmix64's finalizer spreads them).
pub(super) fn ticket_for(seed: u64, incarnation: u64, now: Time) -> JoinTicket {
    let mut z = seed ^ incarnation.rotate_left(32) ^ now.as_nanos().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    JoinTicket(z ^ (z >> 31))
}

impl Node {
    /// As a member: the nodes asking to be added back that wait out their backoff (each was
    /// removed soon after its last add), with when the wait ends. For the driver to tell the
    /// operator why a node stays out.
    pub fn joins_held_back(&self, now: Time) -> Vec<(NodeId, Time)> {
        let join = &self.join;
        join.asking
            .keys()
            .filter_map(|node| join.not_before.get(node).filter(|&&t| t > now).map(|&t| (*node, t)))
            .collect()
    }

    /// Whether this node stands outside: changes are on (they need leases) and it is no member
    /// of its configuration, cannot vouch for its log, or is too far behind. It serves and
    /// votes on nothing, and asks to join.
    pub fn stands_outside(&self) -> bool {
        let sh = &self.shared;
        sh.config.timing.leases
            && (self.reconfiguration.cannot_vouch() || !sh.configuration.contains(sh.me()) || self.join.behind)
    }

    /// How often a node outside asks the members to add it.
    fn ask_interval(&self) -> Duration {
        self.shared.config.timing.detection_timeout / 2
    }

    /// This life's ticket.
    pub(super) fn ticket(&self) -> JoinTicket {
        self.join.ticket
    }

    /// Starts asking to join, if this node stands outside.
    pub(super) fn start_asking(&mut self, now: Time) {
        if self.stands_outside() {
            if self.shared.configuration.epoch > self.join.known.epoch {
                self.join.known = self.shared.configuration;
            }
            self.shared.timers.set(Timer::Join, now);
        }
    }

    /// The runtime could not do the catch-up through `epoch` asked of it: this node asks again,
    /// of whichever node answers its requests to join, after a backoff that doubles with each
    /// failure in a row for the same target (half a detection timeout, then one, then two); it
    /// does not ask a node whose state was refused for this epoch again, while another may
    /// answer.
    pub(super) fn on_catch_up_failed(&mut self, now: Time, from: NodeId, epoch: Epoch, refused: bool) {
        if self.join.asked.is_some_and(|(e, _)| e == epoch) {
            self.join.asked = None;
            let (failed_epoch, failed) = &mut self.join.refused_from;
            if *failed_epoch != epoch {
                (*failed_epoch, *failed) = (epoch, NodeSet::default());
            }
            // A refused node is not asked again for this epoch, so no backoff is needed; a
            // failed transfer backs off, up to two detection timeouts.
            if refused {
                failed.insert(from);
            } else {
                let most = self.shared.config.timing.detection_timeout * 2;
                let backoff =
                    (self.shared.config.timing.detection_timeout / 2 * (1 << self.join.failures.min(6))).min(most);
                self.join.failures += 1;
                self.join.retry_at = now + backoff;
            }
            // Every other node failed: all may be asked again (after the backoff).
            if failed.is_superset(self.shared.config.members.without(self.shared.me())) {
                *failed = NodeSet::default();
            }
        } else {
            self.shared.stats.messages_dropped += 1;
        }
    }

    /// Asks every node of the cluster to add it, again every [`Node::ask_interval`]. A
    /// catch-up asked long ago (it failed, or the runtime could not) may be asked again.
    pub(super) fn on_join_timer(&mut self, now: Time) {
        if !self.stands_outside() {
            return;
        }
        let grace = self.shared.config.timing.join_grace;
        if self.join.asked.is_some_and(|(_, at)| now.saturating_since(at) >= grace) {
            self.join.asked = None;
        }
        let me = self.shared.me();
        let (epoch, ticket) = (self.shared.epoch(), self.join.ticket);
        // Every node of the cluster: the members answer, and so does a node outside that holds
        // the state the add's epoch begins with (see [`Node::on_join_request`]).
        for node in self.shared.config.members.without(me).iter() {
            let echo = self.join.echoes.get(&node).copied();
            self.shared.send(node, Message::JoinRequest { epoch, ticket, echo });
        }
        let next = now + self.ask_interval();
        self.shared.timers.set(Timer::Join, next);
    }

    /// A member's answer while this node stands outside: a value the member installed. A later
    /// configuration is remembered (the members to ask); the latest value known is caught up
    /// through if it adds this node (see [`Node::may_catch_up_through`]); the value that follows
    /// this node's epoch and leaves it out is installed, so that it takes part in the next
    /// agreement (§7.3).
    ///
    /// A node outside the value's configuration that was a member of the epoch before it
    /// answers too (see [`Node::on_join_request`]): it holds the state the value's epoch began
    /// with, and is only a source to catch up from (the adoption checks it, with
    /// `Adoption::streamed_by`). (Seen in the simulator: a member was swapped for a node asking
    /// to join, and the one member left lost its disk before the node had caught up; the state
    /// was whole only on the member swapped out. And a node added, then removed again before it
    /// caught up, whose add's only member left had crashed: it could follow neither.)
    pub(super) fn on_chosen_outside(&mut self, now: Time, from: NodeId, value: Value) {
        if !self.shared.config.members.contains(from) {
            self.shared.stats.messages_dropped += 1;
            return;
        }
        let epoch = value.configuration.epoch;
        // A failed catch-up is asked again only after a backoff: each try may stream a whole
        // state (review finding: retried at every answer, a refused one cost a transfer each
        // time).
        let (refused_epoch, refused) = self.join.refused_from;
        let may_ask = now >= self.join.retry_at && !(refused_epoch == epoch && refused.contains(from));
        if !value.configuration.contains(from) {
            // Only the value that follows this node's epoch, from a member of that epoch: such a
            // sender was a member of the epoch before the value (a value told by a node of
            // neither, as any node of a later epoch tells a node behind, would be refused after
            // a whole transfer; second review's finding).
            let qualified = Some(epoch) == self.shared.epoch().next() && self.shared.configuration.contains(from);
            let latest = self.join.target.is_none_or(|target| epoch >= target);
            if qualified && may_ask && latest && self.join.asked.is_none() && self.may_catch_up_through(&value) {
                self.ask_catch_up(now, from, epoch);
            }
            return;
        }
        let me = self.shared.me();
        if epoch > self.join.known.epoch {
            self.join.known = value.configuration;
            // A later configuration without this node undid every add before it: the target
            // goes back, so that the node may catch up through any add it is told of (review
            // finding: a node added, removed, added and removed again was told only its first
            // add, below its target, and could never reach the latest epoch).
            if !value.configuration.contains(me) {
                self.join.target = None;
            }
        }
        // Only through the latest value known that this node may catch up through: a member
        // tells both the value after this node's epoch and its latest, and catching up through
        // each in turn never ends (seen in the simulator: two catch-ups asked alternately, each
        // refused as the other was pending). Not only through the latest value known, though:
        // a member tells a node catching up the value that added it, while others tell their
        // latest, which keeps it (seen in the simulator: a node added, then told the next
        // value, which removed another member, never caught up, and held writes for its grace).
        let latest = self.join.target.is_none_or(|target| epoch >= target);
        let asked = self.join.asked.is_some_and(|(e, _)| e == epoch);
        if may_ask && latest && !asked && (self.may_catch_up_through(&value) || self.may_catch_up_outside(&value)) {
            if self.join.target != Some(epoch) {
                self.join.failures = 0;
            }
            self.ask_catch_up(now, from, epoch);
            return;
        }
        let follows = Some(epoch) == self.shared.epoch().next() && !value.configuration.contains(me);
        if follows && self.reconfiguration.agreement().is_some() && !self.reconfiguration.is_installing() {
            self.begin_install(now, value);
        }
    }

    /// Asks the runtime to catch this node up from `from` through `epoch`, which becomes the
    /// target.
    fn ask_catch_up(&mut self, now: Time, from: NodeId, epoch: Epoch) {
        self.join.target = Some(epoch);
        self.join.asked = Some((epoch, now));
        self.shared.stats.catch_ups_asked += 1;
        self.shared.outbox_push(Output::CatchUp { from, epoch });
    }

    /// Whether this node may catch up through `value`, which adds it: under this life's
    /// ticket; or under an earlier life's, if this node vouches for its log. The ticket keeps a
    /// life that lost its log (which may have caught up and acted in the epoch, then lost it
    /// all) from taking that life's add; but a log this node vouches for is its whole history,
    /// and it shows no earlier life acted in the epoch (acting there starts with the catch-up
    /// that replaces the log). (Seen in the simulator: an add asked for before a restart was
    /// chosen after it, and the node, which could neither catch up through it nor install it,
    /// stayed outside for good with the one member left.)
    ///
    /// Only a value past this node's epoch: for an epoch at or below it, an earlier life of this
    /// log did catch up through that add, and going back would erase what it did since (its
    /// promises as an acceptor included; review finding).
    fn may_catch_up_through(&self, value: &Value) -> bool {
        let me = self.shared.me();
        let ahead = value.configuration.epoch > self.shared.epoch();
        let earlier_life =
            value.configuration.contains(me) && value.joining.contains_key(&me) && !self.reconfiguration.cannot_vouch();
        ahead && (value.admits(me, self.join.ticket) || earlier_life)
    }

    /// Whether this node, too far behind to follow the changes ([`Node::on_far_behind`]), may
    /// take the state through `value`, which leaves it out, from a member of it: it then stands
    /// in that epoch as a node outside, which counts among the nodes that agree on the next
    /// change (§7.3), and may be added by it. Only if it vouches for its log, which then shows
    /// that no earlier life took part in any agreement past its epoch, so the transfer erases
    /// no promise that counts. Without it, a cluster whose live members are fewer than a
    /// majority of its nodes waits for ever on nodes that can catch up only through an add that
    /// needs them (seen in the simulator: seven nodes, a configuration of four with one of them
    /// gone, one node back after nine changes and two back without their data).
    fn may_catch_up_outside(&self, value: &Value) -> bool {
        self.join.behind
            && !self.shared.canary(crate::Canary::FarBehindWaitsForAdd)
            && !value.configuration.contains(self.shared.me())
            && value.configuration.epoch > self.shared.epoch()
            && !self.reconfiguration.cannot_vouch()
    }

    /// This node's agreement learned `value` while this node is outside its configuration: it
    /// installs one that leaves it out. One that adds it it never installs (that would make it
    /// a member without the epoch's state): it catches up through it, if it may (see
    /// [`Node::may_catch_up_through`]), when a member answers its next request to join with
    /// it. (Seen in the simulator: a node crashed before its catch-up, restarted, and installed
    /// the value that added its earlier life, without the state: it lacked a visible commit for
    /// good.)
    pub(super) fn on_learned_outside(&mut self, now: Time, value: Value) {
        // A value that adds this node is caught up through from a member that answers its
        // next request to join with it: that member has installed it. (A member picked here
        // may not have yet, and a refused catch-up waits `join_grace` before it is asked again;
        // review finding.)
        if !value.configuration.contains(self.shared.me()) {
            self.begin_install(now, value);
        }
    }

    /// A member told this node a value chosen more than [`INSTALLED_KEPT`] epochs after its
    /// own: no member keeps the values in between, so it cannot install them in turn. It
    /// stands outside, asks to join and catches up by transfer (a member of the configuration
    /// it knew, it is first removed as one that started anew: see [`Node::on_join_request`]).
    pub(super) fn on_far_behind(&mut self, now: Time, from: NodeId, value: Value) {
        let sh = &self.shared;
        let far = sh.epoch().0.saturating_add(INSTALLED_KEPT as u64);
        if !sh.config.timing.leases || value.configuration.epoch.0 <= far || !sh.config.members.contains(from) {
            return;
        }
        self.join.behind = true;
        self.on_chosen_outside(now, from, value);
        self.start_asking(now);
    }

    /// A node asks to be added (member side). A node outside this configuration is told the
    /// latest value installed here and listed to be added. A member that asks under the ticket
    /// a kept value added it with is told the latest such value (it is catching up through it;
    /// the values after it it learns as members do); any other member that asks started a new
    /// life and is suspected until removed (or until it shows it acts in the epoch).
    pub(super) fn on_join_request(
        &mut self,
        now: Time,
        from: NodeId,
        epoch: Epoch,
        ticket: JoinTicket,
        echo: Option<LeaseRequest>,
    ) {
        let sh = &mut self.shared;
        if from == sh.me() || !sh.config.members.contains(from) {
            sh.stats.messages_dropped += 1;
            return;
        }
        // A node outside its configuration (that vouches for its log: one that cannot takes
        // no input here) tells the asker the value that follows the asker's epoch, if it keeps
        // it and was a member of the epoch before it: it holds the state that value's epoch
        // began with (see [`Node::on_chosen_outside`]). It adds nobody.
        if !sh.configuration.contains(sh.me()) {
            let me = sh.me();
            let next = self.reconfiguration.installed_after(epoch).cloned();
            let member_before = |value: &Value| {
                self.reconfiguration.installed().any(|v| {
                    v.configuration.epoch.next() == Some(value.configuration.epoch) && v.configuration.contains(me)
                })
            };
            if let Some(value) = next.filter(|v| !self.join.behind && member_before(v)) {
                tell(&mut self.shared, from, value);
            }
            return;
        }
        if sh.configuration.contains(from) {
            match self.reconfiguration.installed().rev().find(|v| v.admits(from, ticket)) {
                Some(value) => {
                    // The canary's flaw: the request counts as echoing one sent now.
                    let echo =
                        if sh.canary(crate::Canary::JoinWithoutEcho) { Some(sh.leases.request_now()) } else { echo };
                    sh.leases.asking(from, echo);
                    tell(sh, from, value.clone())
                }
                None => {
                    self.join.new_lives.insert(from);
                }
            }
            return;
        }
        let latest = self.reconfiguration.latest_installed().cloned();
        let next = self.reconfiguration.installed_after(epoch).cloned();
        self.join.asking.insert(from, (ticket, now, epoch));
        if let Some(value) = next.filter(|v| Some(v) != latest.as_ref()) {
            tell(sh, from, value);
        }
        if let Some(value) = latest {
            tell(sh, from, value);
        }
    }

    /// The configuration `next` is installed, after `old` (member and outsider alike): the
    /// nodes it adds get their grace, the ones it removes soon after their add back off, and
    /// a node it leaves outside asks to join.
    pub(super) fn join_installed(&mut self, now: Time, old: Configuration, value: &Value) {
        let next = value.configuration;
        let timing = &self.shared.config.timing;
        let (grace, detection) = (timing.join_grace, timing.detection_timeout);
        for (&node, _) in value.joining.iter() {
            self.join.asking.remove(&node);
            let strikes = self.join.added.get(&node).map_or(0, |&(_, s)| s);
            self.join.added.insert(node, (now, strikes));
            if node != self.shared.me() {
                self.shared.leases.expect(node, now, now + grace);
            }
        }
        for node in old.members.difference(next.members).iter() {
            let strikes = match self.join.added.get(&node) {
                Some(&(at, strikes)) if now.saturating_since(at) < FLAP_WINDOW => strikes + 1,
                _ => 0,
            };
            self.join.added.insert(node, (now, strikes));
            // No wait after a first removal (a node back soon restores the margin soonest), then
            // 1, 3, 7, … detection timeouts.
            let doublings = strikes.min(FLAP_DOUBLINGS_MAX);
            if self.shared.canary(crate::Canary::AddWithoutBackoff) {
                continue;
            }
            self.join.not_before.insert(node, now + detection * ((1u32 << doublings) - 1));
        }
        self.join.new_lives = self.join.new_lives.intersection(next.members);
        self.join.known = next;
        self.join.asked = None;
        self.join.target = None;
        self.join.failures = 0;
        self.start_asking(now);
    }
}

/// Tells `to` the value chosen after the epoch before it (what `PaxosMessage::Chosen` says).
fn tell(sh: &mut super::shared::Shared, to: NodeId, value: Value) {
    let Some(epoch) = value.configuration.epoch.previous() else { return };
    sh.send(to, Message::Paxos(PaxosMessage::Chosen { epoch, value }));
}
