//! Configurations wired into the node (docs/protocol.md §7.1, §7.3, §7.4): the agreement on
//! the next configuration, the freeze that ends this node's epoch when it first promises, the
//! proposals a node makes when members fail or it waits too long, and the install of the
//! chosen value, which settles the ending epoch and starts the next one clean.
//!
//! The agreement numbers its own records; the node logs each of them as a
//! [`Record::Agreement`] in its one log, after every 2PC record appended before it, so a
//! promise is durable only once the records its report counted are. [`Record::Installed`] is
//! synced before the node acts in the new epoch, and replay settles the ending epoch from it
//! exactly as the install did (`Recovered::install`).

use super::Node;
use super::shared::{AfterDurable, Shared};
use crate::configuration::{
    Agreement, AgreementOutput, AgreementState, Cluster, Configuration, Epoch, PaxosFlaw, PaxosMessage, PaxosTiming,
    Report, ReportTooLarge, Value,
};
use crate::ids::{Lsn, NodeId, NodeSet};
use crate::message::Message;
use crate::record::{INSTALLED_KEPT, Record};
use crate::time::Time;
use crate::timers::Timer;
use std::collections::{BTreeMap, VecDeque};

/// The node's part in changing configurations.
pub(super) struct Reconfiguration {
    /// This node's part in the agreement on the configuration after its own, member or not
    /// (every node of the cluster in the epoch takes part, §7.3); `None` when it cannot vouch
    /// for its log.
    agreement: Option<Agreement>,
    /// For each agreement record in the log: its lsn in the node's log and in the agreement's
    /// numbering, oldest first.
    persisted: VecDeque<(Lsn, Lsn)>,
    /// The chosen values that installed the latest configurations, the current one's last,
    /// oldest first (at most [`INSTALLED_KEPT`]): kept to tell a node behind each value it
    /// lacks, in order.
    installed: VecDeque<Value>,
    /// The chosen value whose [`Record::Installed`] is on its way to the log.
    installing: Option<Value>,
    /// When this node learned the value it is installing, if it waits a lease wait before it
    /// logs the install ([`Node::begin_install`]).
    install_waits_from: Option<Time>,
    /// The [`Record::Installed`] of `installing` is in the log (durable or not).
    install_logged: bool,
    /// Recovery cut a whole record that failed its checksum off the log's end: this node may
    /// have lost an acknowledged record, so it never promises, accepts or reports (§7.4).
    cannot_vouch: bool,
    /// When this node first saw reason to propose a change (a member suspected, or its own
    /// promise with nothing chosen), for the backoff before it does.
    reason_since: Option<Time>,
    seed: u64,
}

/// What a restart hands the reconfiguration (see `Recovered`).
pub(super) struct Restored {
    pub(super) installed: Vec<Value>,
    pub(super) agreement: Option<AgreementState>,
    pub(super) cannot_vouch: bool,
}

impl Reconfiguration {
    pub(super) fn new(
        me: NodeId,
        configuration: Configuration,
        cluster: Cluster,
        seed: u64,
        restored: Restored,
    ) -> Reconfiguration {
        let Restored { installed, agreement, cannot_vouch } = restored;
        let state = agreement.unwrap_or(AgreementState { epoch: configuration.epoch, ..Default::default() });
        let agreement = if cannot_vouch {
            None
        } else {
            Agreement::recover_in(me, configuration, cluster, PaxosTiming::default(), seed, state).ok()
        };
        Reconfiguration {
            agreement,
            persisted: VecDeque::new(),
            installed: installed.into(),
            installing: None,
            install_waits_from: None,
            install_logged: false,
            cannot_vouch,
            reason_since: None,
            seed,
        }
    }

    /// Whether this node's agreement state holds a promise: it ended its epoch for good.
    pub(super) fn is_frozen(&self) -> bool {
        self.agreement.as_ref().is_some_and(|a| a.is_frozen())
    }

    pub(super) fn cannot_vouch(&self) -> bool {
        self.cannot_vouch
    }

    /// From now on this node cannot vouch for its log: it promises, accepts and reports nothing.
    pub(super) fn stop_vouching(&mut self) {
        self.cannot_vouch = true;
        self.agreement = None;
    }

    pub(super) fn is_installing(&self) -> bool {
        self.installing.is_some()
    }

    /// Whether the install's record is in the log: nothing of the ending epoch may be logged
    /// after it (replay settles the epoch at it).
    pub(super) fn install_logged(&self) -> bool {
        self.installing.is_some() && self.install_logged
    }

    pub(super) fn agreement(&self) -> Option<&Agreement> {
        self.agreement.as_ref()
    }

    pub(super) fn installed(&self) -> impl DoubleEndedIterator<Item = &Value> {
        self.installed.iter()
    }

    /// The value chosen to follow `epoch`, if this node keeps it.
    pub(super) fn installed_after(&self, epoch: Epoch) -> Option<&Value> {
        self.installed.iter().find(|v| Some(v.configuration.epoch) == epoch.next())
    }

    /// The value that installed this node's configuration, if it keeps it.
    pub(super) fn latest_installed(&self) -> Option<&Value> {
        self.installed.back()
    }
}

/// The agreement with the flaw the node's canary plants, if any.
fn with_flaws(mut agreement: Agreement, sh: &Shared) -> Agreement {
    let flaw = if sh.canary(crate::Canary::TwoConfigurationsOneEpoch) {
        Some(PaxosFlaw::HalfIsMajority)
    } else if sh.canary(crate::Canary::SettleWithoutInference) {
        Some(PaxosFlaw::SettleWithoutInference)
    } else if sh.canary(crate::Canary::InferenceKeepsEveryMember) {
        Some(PaxosFlaw::InferenceKeepsEveryMember)
    } else {
        None
    };
    if flaw.is_some() {
        // Fails only without the canary feature, where no canary is ever on.
        let _ = agreement.plant_flaw(flaw);
    }
    agreement
}

impl Node {
    /// Plants the canary's flaw in the agreement the node started with.
    pub(super) fn plant_agreement_flaws(&mut self) {
        let r = &mut self.reconfiguration;
        r.agreement = r.agreement.take().map(|a| with_flaws(a, &self.shared));
    }

    /// A message of the agreement from `from`. One of an older epoch is from a node behind: it
    /// is told the value chosen after its epoch, if this node still keeps it (further behind,
    /// it catches up by transfer, §7.6).
    pub(super) fn on_paxos(&mut self, now: Time, from: NodeId, message: PaxosMessage) {
        // With configuration changes off this node promises and accepts nothing: its shares
        // are pinned (docs/protocol.md §7.2, "Visible on every YES"), and a promise would
        // report them to a settlement that may abort a commit already visible on its pinned
        // YES votes. (Such a request comes only from a node that runs with changes, in a
        // cluster whose nodes were started in different modes.)
        if self.shared.changes_off()
            && matches!(message, PaxosMessage::PromiseRequest { .. } | PaxosMessage::AcceptRequest { .. })
        {
            self.shared.stats.messages_dropped += 1;
            return;
        }
        let my_epoch = self.shared.epoch();
        let epoch = message.epoch();
        if epoch < my_epoch {
            self.shared.stats.epoch_mismatches += 1;
            // A sender that tells what was chosen, or says it learned it, knows it already
            // (answering it would echo between two members for ever).
            let knows = matches!(message, PaxosMessage::Chosen { .. } | PaxosMessage::Learned { .. });
            if !knows {
                self.tell_chosen(from, epoch);
            }
            return;
        }
        if epoch > my_epoch || self.reconfiguration.installing.is_some() {
            self.shared.stats.epoch_mismatches += 1;
            if let PaxosMessage::Chosen { value, .. } = message {
                self.on_far_behind(now, from, value);
            }
            return;
        }
        self.deliver_paxos(now, from, message);
        self.drain_agreement(now);
    }

    /// Tells `to`, a node still in `epoch`, the value chosen to follow it, if this node keeps it.
    pub(super) fn tell_chosen(&mut self, to: NodeId, epoch: Epoch) {
        // Only a node of the cluster is answered: a sender outside it (peer input is untrusted)
        // is no member of any epoch, and answering would address a node that does not exist.
        if !self.shared.config.members.contains(to) {
            self.shared.stats.messages_dropped += 1;
            return;
        }
        // The value that follows `epoch`; or, if this node keeps it no more, its latest: the
        // node behind cannot follow in turn, and catches up by transfer (§7.6).
        let next = self.reconfiguration.installed_after(epoch);
        let far_behind = || {
            let latest = self.reconfiguration.installed.back()?;
            (latest.configuration.epoch.0 > epoch.0.saturating_add(INSTALLED_KEPT as u64)).then_some(latest)
        };
        if let Some(value) = next.or_else(far_behind) {
            let epoch = value.configuration.epoch.previous().unwrap_or(epoch);
            let message = PaxosMessage::Chosen { epoch, value: value.clone() };
            self.shared.send(to, Message::Paxos(message));
        }
    }

    /// Hands `message` to the agreement, with this node's side of the freeze.
    fn deliver_paxos(&mut self, now: Time, from: NodeId, message: PaxosMessage) {
        let Node { shared: sh, coordinator, participant, reconfiguration, join, .. } = self;
        let Some(agreement) = reconfiguration.agreement.as_mut() else {
            sh.stats.messages_dropped += 1;
            return;
        };
        // A promise for the ballot this node asks promises for answers its request: the sender
        // hears this node, as an echo shows, and acts in this epoch with its state (a node
        // that started a new life has no agreement and promises nothing). The proposer keeps
        // every member that promised, so without this a member suspected (not heard from, or
        // taken for a new life) promised to every change meant to remove it, each change kept
        // it, and the next was proposed at its install, before any heartbeat of the new epoch
        // could make a round trip. (Seen in the simulator:
        // nine changes in 90 ms that kept the same members, until three of six nodes were
        // stuck outside; and nine in 180 ms, after which a paused member could no longer
        // follow the changes and two crashes for good left the cluster stuck.)
        if let PaxosMessage::Promise { ballot, .. } = &message
            && let Some((asked, asked_at)) = agreement.soliciting()
            && asked == *ballot
            && !sh.canary(crate::Canary::SuspectDespitePromise)
        {
            join.acts_in_this_epoch(from);
            sh.leases.answered(from, asked_at);
        }
        let report_without_freezing = sh.canary(crate::Canary::ReportBeforeFreeze);
        let member = sh.configuration.contains(sh.me());
        let mut freeze = || -> Result<Report, ReportTooLarge> {
            // A node outside the configuration took no part in the epoch: nothing to end or
            // report (its promise only counts towards the cluster's majority).
            if !member {
                return Ok(Report::default());
            }
            if !report_without_freezing {
                sh.frozen = true;
                sh.leases.freeze();
            }
            participant.report(sh, |txn| coordinator.is_aborting(txn))
        };
        agreement.handle_message(now, from, message, &mut freeze);
    }

    /// Carries out what the agreement asks: its messages (those to this node delivered here),
    /// its records, its deadline; and installs what it learned was chosen.
    pub(super) fn drain_agreement(&mut self, now: Time) {
        let me = self.shared.me();
        loop {
            let mut to_self = Vec::new();
            let Some(agreement) = self.reconfiguration.agreement.as_mut() else { return };
            while let Some(output) = agreement.poll_output() {
                match output {
                    AgreementOutput::Send { to, message } if to == me => to_self.push(message),
                    AgreementOutput::Send { to, message } => self.shared.send(to, Message::Paxos(message)),
                    AgreementOutput::Persist { lsn, state } => {
                        let at = self.shared.persist(Record::Agreement(Box::new(state)));
                        self.reconfiguration.persisted.push_back((at, lsn));
                    }
                }
            }
            if to_self.is_empty() {
                break;
            }
            for message in to_self {
                self.deliver_paxos(now, me, message);
            }
        }
        let agreement = self.reconfiguration.agreement.as_ref().expect("drained above");
        match agreement.deadline() {
            Some(at) => self.shared.timers.set(Timer::Agreement, at),
            None => self.shared.timers.cancel(Timer::Agreement),
        }
        if let (Some(value), None) = (agreement.chosen(), &self.reconfiguration.installing) {
            let value = value.clone();
            if self.is_member() {
                self.begin_install(now, value);
            } else {
                self.on_learned_outside(now, value);
            }
        }
    }

    /// The node's records through `through` are durable: so are the agreement's among them.
    pub(super) fn agreement_durable(&mut self, now: Time, through: Lsn) {
        let mut durable = None;
        while let Some(&(at, lsn)) = self.reconfiguration.persisted.front() {
            if at > through {
                break;
            }
            self.reconfiguration.persisted.pop_front();
            durable = Some(lsn);
        }
        if let (Some(lsn), Some(agreement)) = (durable, self.reconfiguration.agreement.as_mut()) {
            agreement.handle_durable(lsn);
            self.drain_agreement(now);
        }
    }

    pub(super) fn on_agreement_timer(&mut self, now: Time) {
        if let Some(agreement) = self.reconfiguration.agreement.as_mut() {
            agreement.handle_timeout(now);
            self.drain_agreement(now);
        }
    }

    /// Proposes the next configuration when there is reason to (§7.3): members suspected, or
    /// this node's own promise with nothing chosen (its proposer may have crashed). The
    /// lowest-numbered live member proposes first, each other one a detection timeout later
    /// per rank; and only while the live members and the nodes outside in this epoch are a
    /// majority of the cluster (a node cut off from the majority stays quiet instead of
    /// freezing the majority's epoch).
    pub(super) fn maybe_propose(&mut self, now: Time) {
        // Without changes a node proposes none (a promise restored from a life with them
        // included): every member is needed anyway, and the configuration stays as it started.
        if self.shared.changes_off() {
            return;
        }
        let r = &self.reconfiguration;
        let Some(agreement) = r.agreement.as_ref() else { return };
        if r.installing.is_some() || agreement.chosen().is_some() {
            self.reconfiguration.reason_since = None;
            return;
        }
        let current = self.shared.configuration;
        let me = self.shared.me();
        if !current.contains(me) || self.stands_outside() {
            return;
        }
        // Just started and not heard from every member yet: this node does not know who is live
        // (a member crashed for good would look live through the start's grace), so it leaves
        // proposing to members that do. (Seen in the simulator: a restarted member proposed a
        // configuration that kept two members crashed for good, which could then never change.)
        if !self.shared.leases.unsure().intersection(current.members).is_empty() {
            self.reconfiguration.reason_since = None;
            return;
        }
        // Suspected: not heard from, or started a new life (it asked to join as a member).
        let silent = self.shared.leases.suspected().intersection(current.members);
        let suspected = silent.union(self.join.new_lives()).intersection(current.members).without(me);
        // The usual case, checked after every input: every member heard from, nobody asking to
        // join, nothing to end. What follows would keep the members as they are.
        if suspected.is_empty() && !self.join.anyone_asking() && !agreement.is_frozen() {
            self.reconfiguration.reason_since = None;
            return;
        }
        let live = current.members.difference(suspected);
        let fresh = self.shared.config.timing.detection_timeout * 2;
        // A member just added and not heard from since is catching up: it takes no part in the
        // agreement yet. Every change must be agreed, and leave a configuration that can agree
        // the next, without such members (§7.6): a change that needed one would wait for its
        // catch-up, or for ever if it started a new life meanwhile. So nodes are added only
        // while no member is catching up, and only as many as keep the ready members a cover
        // of the next configuration (§7.3).
        let catching_up = self.shared.leases.still_joining().intersection(live);
        let ready = live.difference(catching_up);
        // The agreement needs a majority of the cluster's nodes: members, and nodes outside
        // that are in this epoch (§7.3); it holds a cover of the members. A node added takes no
        // part until it caught up, so the ready members must still be a cover of the next
        // configuration.
        let cluster = self.shared.cluster();
        let acceptors = ready.union(self.join.outsiders_in(now, current, fresh));
        // The members that hold the epoch's state: not catching up, no new life. While fewer
        // than c of them (the copies a commit needs, §7.3) are live, a change keeps the
        // suspected ones, if that costs it none of the nodes it would add: below c live
        // holders no commit can become visible anyway, and a removal would only leave fewer
        // copies of the state. (Seen in the simulator: a three-node configuration shrunk to one
        // member, which then lost its disk; the state, whole on the member removed, could no
        // longer be had from any member.) A change that adds a node removes them as before:
        // it is what lets commits go on.
        let holders = current.members.difference(self.shared.leases.still_joining()).difference(self.join.new_lives());
        let short = holders.intersection(live).len() < cluster.copies().min(holders.len());
        let plan = |keep: NodeSet| {
            let mut joining = BTreeMap::new();
            if catching_up.is_empty() {
                for (node, ticket) in self.join.ready(now, current, fresh) {
                    let added = NodeSet::from_ids(joining.keys().copied().chain([node])).unwrap_or_default();
                    if !cluster.covers(keep.union(added), ready) {
                        break;
                    }
                    joining.insert(node, ticket);
                }
            }
            let added = NodeSet::from_ids(joining.keys().copied()).unwrap_or_default();
            (keep.union(added), joining)
        };
        let (mut members, mut joining) = plan(live);
        if short {
            let (kept, kept_joining) = plan(live.union(holders));
            if kept_joining.len() >= joining.len() && cluster.covers(kept, ready) {
                (members, joining) = (kept, kept_joining);
            }
        }
        let half_is_majority = self.shared.canary(crate::Canary::TwoConfigurationsOneEpoch);
        let majority = cluster.is_majority(acceptors) || half_is_majority && 2 * acceptors.len() >= cluster.nodes.len();
        let removes = !current.members.difference(members).is_empty();
        if (!removes && joining.is_empty() && !agreement.is_frozen()) || !majority {
            self.reconfiguration.reason_since = None;
            return;
        }
        let since = *self.reconfiguration.reason_since.get_or_insert(now);
        let rank = live.iter().take_while(|&m| m != me).count() as u32;
        // A member that promised gives the proposer it promised a detection timeout first.
        let waits = rank + u32::from(!removes && joining.is_empty());
        let backoff = self.shared.config.timing.detection_timeout * waits;
        if now < since + backoff {
            return;
        }
        let Some(epoch) = current.epoch.next() else { return };
        let next = Configuration { epoch, members };
        if !cluster.covers(next.members, ready) && !half_is_majority {
            return;
        }
        let agreement = self.reconfiguration.agreement.as_mut().expect("checked above");
        if agreement.propose_joining(now, next, joining).is_ok() {
            self.drain_agreement(now);
        }
    }

    /// The agreement learned the chosen value at `now`: end the epoch here (if this node did
    /// not promise, it freezes now) and log the install; the node acts in the new epoch once
    /// it is durable.
    ///
    /// A member of a configuration of the three nodes of a three-node cluster that stays in
    /// one dropping a member logs the install only a lease wait `W` after it learned it (§7.4,
    /// "Inferred commits"). The settlement may commit a transaction that the member dropped
    /// never held, or saw abort; that member may still serve reads under a lease of the old
    /// epoch, granted before the choice, and so out by then on every clock within the drift
    /// bound (§7.5). Frozen meanwhile, this node serves no read and votes on nothing, and the
    /// transactions the install settles keep their keys locked.
    pub(super) fn begin_install(&mut self, now: Time, value: Value) {
        let sh = &mut self.shared;
        sh.frozen = true;
        sh.leases.freeze();
        let stays = value.configuration.contains(sh.me());
        let drops = !value.configuration.members.is_superset(sh.configuration.members);
        let waits = stays && drops && sh.visible_on_every_yes_with_changes();
        self.reconfiguration.installing = Some(value);
        if waits && !sh.canary(crate::Canary::InstallWithoutWait) {
            self.reconfiguration.install_waits_from = Some(now);
            sh.timers.set(Timer::Install, now + sh.config.timing.lease_wait());
        } else {
            self.log_install();
        }
    }

    /// Logs the install of the value learned (synced); it is settled once durable.
    fn log_install(&mut self) {
        let Some(value) = &self.reconfiguration.installing else { return };
        if self.reconfiguration.install_logged {
            return;
        }
        let lsn = self.shared.persist(Record::Installed(Box::new(value.clone())));
        self.shared.after_durable(lsn, AfterDurable::Installed);
        self.reconfiguration.install_logged = true;
    }

    /// The lease wait before logging an install is over ([`Node::begin_install`]).
    pub(super) fn on_install_timer(&mut self, now: Time) {
        let wait = self.shared.config.timing.lease_wait();
        if self.reconfiguration.install_waits_from.is_some_and(|from| now >= from + wait) {
            self.log_install();
        }
    }

    /// The install is durable: settle every transaction of the ending epoch, forget the epoch,
    /// and start the next one (§7.4). A change that drops a member starts the lease wait (§7.5).
    pub(super) fn finish_install(&mut self, now: Time) {
        let Some(value) = self.reconfiguration.installing.take() else { return };
        self.reconfiguration.install_logged = false;
        let Node { shared: sh, coordinator, participant, reconfiguration, .. } = self;
        // The new epoch's lease starts from nothing before the settlement wakes the reads that
        // waited on its locks: they are answered under it.
        let old = sh.configuration;
        let next = value.configuration;
        let joined = value.clone();
        sh.configuration = next;
        sh.leases.install(next);
        sh.vote_acceptors.installed(next.epoch);
        coordinator.settle(sh, participant, &value.settlement);
        participant.settle(sh, &value.settlement);
        sh.frozen = false;
        // From when this node learned the value: an install logged a wait after that has
        // waited already (§7.5).
        let waited_from = reconfiguration.install_waits_from.take();
        if !next.members.is_superset(old.members) {
            sh.leases.wait_from(waited_from.unwrap_or(now));
        }
        if waited_from.is_some() {
            sh.leases.waited_for_install(next.members.intersection(old.members), now);
        }
        sh.stats.installs += 1;
        if !next.contains(sh.me()) {
            coordinator.leave(sh);
        }
        // Leases of the new epoch start from nothing: ask for them at once.
        sh.start_heartbeats(now);
        let me = sh.me();
        reconfiguration.persisted.clear();
        reconfiguration.reason_since = None;
        reconfiguration.agreement = if reconfiguration.cannot_vouch {
            None
        } else {
            let seed = reconfiguration.seed ^ next.epoch.0;
            Agreement::new_in(me, next, sh.cluster(), PaxosTiming::default(), seed).ok().map(|a| with_flaws(a, sh))
        };
        reconfiguration.installed.push_back(value);
        if reconfiguration.installed.len() > INSTALLED_KEPT {
            reconfiguration.installed.pop_front();
        }
        sh.timers.cancel(Timer::Agreement);
        self.join_installed(now, old, &joined);
        self.drain_agreement(now);
    }

    /// Whether this node is a member of its configuration.
    pub fn is_member(&self) -> bool {
        self.shared.configuration.contains(self.shared.me())
    }

    /// Whether this node ended its epoch (it promised, or is installing the next one).
    pub fn is_frozen(&self) -> bool {
        self.shared.frozen
    }

    /// Starts proposing `members` as the next configuration (an operator's or a test's
    /// change). Refused when this node takes no part in the agreement or a proposal is on.
    pub fn propose_members(&mut self, now: Time, members: NodeSet) -> Result<(), crate::configuration::ProposeError> {
        if self.shared.changes_off() {
            return Err(crate::configuration::ProposeError::ChangesOff);
        }
        let current = self.shared.configuration;
        let Some(epoch) = current.epoch.next() else {
            return Err(crate::configuration::ProposeError::BallotsExhausted);
        };
        let Some(agreement) = self.reconfiguration.agreement.as_mut() else {
            return Err(crate::configuration::ProposeError::NotTheNextConfiguration {
                proposed: Configuration { epoch, members },
                current,
            });
        };
        agreement.propose(now, Configuration { epoch, members })?;
        self.drain_agreement(now);
        Ok(())
    }
}
