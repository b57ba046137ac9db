//! One node's part in one epoch's agreement: acceptor, proposer and learner together, driven
//! like the node itself (inputs in, outputs drained, a deadline out).
//!
//! | group | methods |
//! |---|---|
//! | start | [`Agreement::new`], [`Agreement::recover`] |
//! | inputs | [`Agreement::handle_message`], [`Agreement::handle_durable`], [`Agreement::handle_timeout`] |
//! | command | [`Agreement::propose`] |
//! | outputs | [`Agreement::poll_output`] until `None`, then [`Agreement::deadline`] |
//! | getters | [`Agreement::chosen`], [`Agreement::state`], [`Agreement::is_frozen`], [`Agreement::dropped`] |
//!
//! [`Agreement::handle_message`] also takes the node, as a [`Freeze`]: a promise request that
//! this member is about to promise first, and only then, ends its epoch and takes its report.

use super::acceptor::{self, AcceptorAnswer};
use super::learner::Learner;
use super::proposer::{Inference, Phase, Promised, Proposer};
use super::{
    AgreementState, Ballot, Cluster, Configuration, Freeze, JoinTicket, NotASuccessor, PaxosFlaw, PaxosMessage, Value,
};
use crate::config::ConfigError;
use crate::ids::{Lsn, NodeId, NodeSet};
use crate::time::Time;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use thiserror::Error;

/// How proposers retry. A step unanswered after a backoff is retried with a new ballot; the
/// backoff is drawn uniformly from `[retry_min, retry_min * 2^attempt]`, capped at
/// `retry_max`, so competing proposers spread out until one runs alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaxosTiming {
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for PaxosTiming {
    fn default() -> Self {
        PaxosTiming { retry_min: Duration::from_millis(50), retry_max: Duration::from_secs(2) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgreementOutput {
    /// Send `message` to member `to` (possibly this node itself).
    Send { to: NodeId, message: PaxosMessage },
    /// Persist `state` (the whole state; it supersedes every earlier one) and report `lsn` with
    /// [`Agreement::handle_durable`] once it is on stable storage. Lsns number this run's
    /// records from 1.
    Persist { lsn: Lsn, state: AgreementState },
}

/// Messages dropped, by reason: none of them is ever an error of this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// For another epoch's agreement.
    pub other_epoch: u64,
    /// From a node that is not a member of this epoch.
    pub non_member: u64,
    /// Senseless: a ballot no one could have made, a configuration that cannot follow, a
    /// second configuration at one ballot.
    pub malformed: u64,
    /// Outgoing messages that waited for the log longer than the bound on waiting messages
    /// allows (a driver that never reports durability): the oldest goes, which is as safe as
    /// a lost message.
    pub held_overflow: u64,
    /// Promise requests left unanswered because the node could not report
    /// ([`super::ReportTooLarge`]): no promise leaves without a report.
    pub unreportable: u64,
}

/// Why a node cannot take part in an epoch's agreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum CannotTakePart {
    /// Only the nodes of the cluster agree on the next configuration.
    #[error("node {node} is not a node of cluster {cluster}; only its nodes agree on the next configuration")]
    NotInTheCluster { node: NodeId, cluster: NodeSet },
    /// A configuration with members outside its cluster.
    #[error("configuration {configuration} has members outside cluster {cluster}")]
    MembersOutsideTheCluster { configuration: Configuration, cluster: NodeSet },
    /// The driver handed over the durable state of another epoch's agreement.
    #[error(
        "the recovered state is of epoch {state}, not of {configuration}; recover each epoch's agreement from its own state"
    )]
    StateOfAnotherEpoch { state: super::Epoch, configuration: Configuration },
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// A configuration that cannot follow the current one.
    #[error("configuration {proposed} cannot follow {current}: it must be of the next epoch")]
    NotTheNextConfiguration { proposed: Configuration, current: Configuration },
    /// A configuration that would keep fewer of the current members than a cover.
    #[error(
        "configuration {proposed} keeps fewer members of {current} than settle its epoch: a change keeps all but f of them (one at least)"
    )]
    KeepsTooFew { proposed: Configuration, current: Configuration },
    /// Only members propose; the nodes outside the configuration only accept.
    #[error("node {node} is not a member of {current}: only members propose the next configuration")]
    NotAMember { node: NodeId, current: Configuration },
    /// One proposal at a time per node; the first one goes on.
    #[error("this node is already proposing configuration {0}")]
    AlreadyProposing(Configuration),
    /// Every round up to the largest was seen (only a peer gone wrong can cause it).
    #[error("no ballot is left above every ballot seen; this epoch's agreement cannot go on")]
    BallotsExhausted,
    /// This node runs without configuration changes: its shares are pinned, and it takes part
    /// in no agreement (docs/protocol.md §7.2).
    #[error("this node runs without configuration changes (no --availability), so it proposes no configuration")]
    ChangesOff,
}

/// What a proposer's deadline calls for.
enum Overdue {
    /// A step went unanswered: try a new ballot.
    Ballot,
    /// Tell these members again what was chosen.
    Telling(NodeSet),
    Nothing,
}

/// Outgoing messages that may wait for the log, per member.
const HELD_PER_MEMBER_MAX: usize = 8;

pub struct Agreement {
    me: NodeId,
    /// The configuration whose successor is agreed.
    current: Configuration,
    /// Who agrees on it: every node of the cluster in this epoch, member or not (`quorum.rs`).
    cluster: Cluster,
    /// Everything durable (or on its way to durability) about this epoch's agreement.
    state: AgreementState,
    proposer: Option<Proposer>,
    learner: Learner,
    /// The highest round heard of in any ballot: a new ballot goes above it.
    highest_round: u64,
    timing: PaxosTiming,
    rng: ChaCha8Rng,
    outputs: VecDeque<AgreementOutput>,
    /// Messages made after the state at their lsn changed, waiting for it to be durable.
    held: VecDeque<(Lsn, NodeId, PaxosMessage)>,
    last_lsn: Lsn,
    durable: Lsn,
    dropped: DropCounts,
    #[cfg(feature = "canary")]
    flaw: Option<PaxosFlaw>,
}

impl Agreement {
    /// `me`'s part in the agreement on the configuration after `current`, in a cluster of
    /// `current`'s members alone, from nothing (this node never took part before).
    pub fn new(
        me: NodeId,
        current: Configuration,
        timing: PaxosTiming,
        seed: u64,
    ) -> Result<Agreement, CannotTakePart> {
        Agreement::new_in(me, current, Cluster { nodes: current.members }, timing, seed)
    }

    /// [`Agreement::new`] in `cluster`, whose nodes outside `current` take part too.
    pub fn new_in(
        me: NodeId,
        current: Configuration,
        cluster: Cluster,
        timing: PaxosTiming,
        seed: u64,
    ) -> Result<Agreement, CannotTakePart> {
        let state = AgreementState { epoch: current.epoch, ..Default::default() };
        Agreement::recover_in(me, current, cluster, timing, seed, state)
    }

    /// `me`'s part after a restart, from the latest durable state of this epoch's agreement,
    /// in a cluster of `current`'s members alone.
    pub fn recover(
        me: NodeId,
        current: Configuration,
        timing: PaxosTiming,
        seed: u64,
        state: AgreementState,
    ) -> Result<Agreement, CannotTakePart> {
        Agreement::recover_in(me, current, Cluster { nodes: current.members }, timing, seed, state)
    }

    /// [`Agreement::recover`] in `cluster`.
    pub fn recover_in(
        me: NodeId,
        current: Configuration,
        cluster: Cluster,
        timing: PaxosTiming,
        seed: u64,
        state: AgreementState,
    ) -> Result<Agreement, CannotTakePart> {
        if !cluster.nodes.contains(me) {
            return Err(CannotTakePart::NotInTheCluster { node: me, cluster: cluster.nodes });
        }
        if !current.members.difference(cluster.nodes).is_empty() {
            return Err(CannotTakePart::MembersOutsideTheCluster { configuration: current, cluster: cluster.nodes });
        }
        if state.epoch != current.epoch {
            return Err(CannotTakePart::StateOfAnotherEpoch { state: state.epoch, configuration: current });
        }
        let highest_round = state.round.max(state.promised.map_or(0, |b| b.round));
        Ok(Agreement {
            me,
            current,
            cluster,
            state,
            proposer: None,
            learner: Learner::default(),
            highest_round,
            timing,
            rng: ChaCha8Rng::seed_from_u64(seed),
            outputs: VecDeque::new(),
            held: VecDeque::new(),
            last_lsn: Lsn(0),
            durable: Lsn(0),
            dropped: DropCounts::default(),
            #[cfg(feature = "canary")]
            flaw: None,
        })
    }

    /// Plants a deliberate bug (or none), for the tests that prove the checker catches it.
    /// Fails unless dkv-core was built with the `canary` feature, so a real build can never
    /// run one.
    pub fn plant_flaw(&mut self, flaw: Option<PaxosFlaw>) -> Result<(), ConfigError> {
        #[cfg(feature = "canary")]
        {
            self.flaw = flaw;
            Ok(())
        }
        #[cfg(not(feature = "canary"))]
        match flaw {
            None => Ok(()),
            Some(_) => Err(ConfigError::CanaryUnavailable),
        }
    }

    /// Starts proposing `configuration` for the next epoch, settled from the reports of the
    /// majority that promises. Whatever is chosen is what every member learns; it is
    /// `configuration` only if no other value was accepted first. If this node already knows
    /// the chosen value, nothing can change it: the node tells every other member what was
    /// chosen instead, until each answers (so a driver that proposes again after a restart
    /// gets the members informed).
    pub fn propose(&mut self, now: Time, configuration: Configuration) -> Result<(), ProposeError> {
        self.propose_joining(now, configuration, BTreeMap::new())
    }

    /// As [`Agreement::propose`], for a configuration that adds the nodes of `joining`, each
    /// under the ticket it asked with (docs/protocol.md §7.6).
    pub fn propose_joining(
        &mut self,
        now: Time,
        configuration: Configuration,
        joining: BTreeMap<NodeId, JoinTicket>,
    ) -> Result<(), ProposeError> {
        let (proposed, current) = (configuration, self.current);
        match self.current.admits(configuration, self.cluster) {
            Err(NotASuccessor::NotTheNextEpoch) => {
                return Err(ProposeError::NotTheNextConfiguration { proposed, current });
            }
            Err(NotASuccessor::KeepsTooFew) => return Err(ProposeError::KeepsTooFew { proposed, current }),
            Ok(()) => {}
        }
        if !self.current.contains(self.me) {
            return Err(ProposeError::NotAMember { node: self.me, current });
        }
        if let Some(p) = &self.proposer {
            return Err(ProposeError::AlreadyProposing(p.own));
        }
        let retry_at = now + self.backoff(0);
        if let Some(chosen) = self.state.chosen.clone() {
            let unconfirmed = self.current.members.without(self.me);
            let ballot = Ballot { round: self.state.round, node: self.me };
            let phase = if unconfirmed.is_empty() { Phase::Done } else { Phase::Informing { unconfirmed } };
            self.proposer =
                Some(Proposer { own: configuration, joining: joining.clone(), ballot, phase, attempt: 1, retry_at });
            for to in unconfirmed.iter() {
                self.send(to, PaxosMessage::Chosen { epoch: self.current.epoch, value: chosen.clone() });
            }
            return Ok(());
        }
        let ballot = self.next_ballot().ok_or(ProposeError::BallotsExhausted)?;
        let phase = Phase::soliciting(now);
        self.proposer =
            Some(Proposer { own: configuration, joining: joining.clone(), ballot, phase, attempt: 1, retry_at });
        self.broadcast(PaxosMessage::PromiseRequest { epoch: self.current.epoch, ballot });
        Ok(())
    }

    /// A message from `from`. Anything from another epoch, from outside the cluster or senseless is
    /// counted and dropped. `node` is this member's side of the freeze: asked for its report
    /// (and so frozen) when a promise request is about to be this member's first promise.
    pub fn handle_message(&mut self, now: Time, from: NodeId, message: PaxosMessage, node: &mut dyn Freeze) {
        if message.epoch() != self.current.epoch {
            self.dropped.other_epoch += 1;
            return;
        }
        if !self.cluster.nodes.contains(from) {
            self.dropped.non_member += 1;
            return;
        }
        if message.check(from, &self.current, self.cluster).is_err() {
            self.dropped.malformed += 1;
            return;
        }
        let epoch = self.current.epoch;
        match message {
            PaxosMessage::PromiseRequest { ballot, .. } | PaxosMessage::AcceptRequest { ballot, .. } => {
                self.hear_of(ballot);
                if let Some(value) = self.state.chosen.clone() {
                    // Past asking: tell the proposer what was chosen instead.
                    self.send(from, PaxosMessage::Chosen { epoch, value });
                    return;
                }
                let before = self.state.clone();
                let answer = match &message {
                    PaxosMessage::AcceptRequest { value, .. } => {
                        acceptor::on_accept_request(&mut self.state, ballot, value)
                    }
                    _ => acceptor::on_promise_request(&mut self.state, ballot, node),
                };
                if self.state != before {
                    self.persist();
                }
                match (answer, message) {
                    (AcceptorAnswer::Promise { accepted, report }, _) => {
                        self.send(from, PaxosMessage::Promise { epoch, ballot, accepted, report })
                    }
                    (AcceptorAnswer::Accepted, PaxosMessage::AcceptRequest { value, .. }) => {
                        self.broadcast(PaxosMessage::Accepted { epoch, ballot, value })
                    }
                    (AcceptorAnswer::Outbid { promised }, _) => {
                        self.send(from, PaxosMessage::Outbid { epoch, ballot, promised })
                    }
                    (AcceptorAnswer::Unreportable, _) => self.dropped.unreportable += 1,
                    // A second value at an accepted ballot: no correct proposer sends one.
                    _ => self.dropped.malformed += 1,
                }
            }
            PaxosMessage::Promise { ballot, accepted, report, .. } => {
                let half_is_majority = self.flawed(PaxosFlaw::HalfIsMajority);
                let own_report_only = self.flawed(PaxosFlaw::SettleFromOwnReport);
                let kept_members_only = self.flawed(PaxosFlaw::SettleFromKeptMembers);
                let without_inference = self.flawed(PaxosFlaw::SettleWithoutInference);
                let inference_keeps_every_member = self.flawed(PaxosFlaw::InferenceKeepsEveryMember);
                let (me, current, cluster) = (self.me, self.current, self.cluster);
                let Some(p) = self.proposer.as_mut() else { return };
                // A majority of the cluster with a cover of the members (`quorum.rs`): a
                // configuration of fewer than c members may have none in a majority of the
                // cluster, and the settlement would hear from nobody (review finding).
                let is_quorum = |nodes: NodeSet| {
                    is_majority(cluster, nodes, half_is_majority)
                        && (half_is_majority || cluster.covers(current.members, nodes))
                };
                let kept = p.own.members;
                // Every report of the majority counts; the planted flaws ignore some.
                let ignored = |node: NodeId| own_report_only && node != me || kept_members_only && !kept.contains(node);
                // Only members have anything of the epoch to report.
                let settles_from = |node: NodeId| current.contains(node) && !ignored(node);
                // Commits visible on every YES need the settlement to infer them (§7.4).
                let infers = if !cluster.visible_on_every_yes(current.members) || without_inference {
                    Inference::Off
                } else if inference_keeps_every_member {
                    Inference::KeepingEveryMember
                } else {
                    Inference::On
                };
                let promise = Promised { from, ballot, accepted, report };
                let cover = cluster.cover(current.members);
                if let Some(value) = p.on_promise(promise, is_quorum, current.members, cover, infers, settles_from) {
                    self.broadcast(PaxosMessage::AcceptRequest { epoch, ballot, value });
                }
            }
            PaxosMessage::Outbid { ballot, promised, .. } => {
                self.hear_of(promised);
                let attempt = match &self.proposer {
                    Some(p) if p.ballot == ballot && matches!(p.phase, Phase::Soliciting { .. } | Phase::Accepting) => {
                        p.attempt
                    }
                    _ => return,
                };
                let retry_at = now + self.backoff(attempt);
                if let Some(p) = self.proposer.as_mut() {
                    p.phase = Phase::Backing;
                    p.retry_at = retry_at;
                }
            }
            PaxosMessage::Accepted { ballot, value, .. } => {
                self.hear_of(ballot);
                let accepted_by = self.learner.on_accepted(from, ballot, &value);
                if is_majority(self.cluster, accepted_by, self.flawed(PaxosFlaw::HalfIsMajority)) {
                    self.learn(now, value);
                }
            }
            PaxosMessage::Chosen { value, .. } => {
                self.learn(now, value);
                self.send(from, PaxosMessage::Learned { epoch });
            }
            PaxosMessage::Learned { .. } => {
                if let Some(p) = self.proposer.as_mut()
                    && let Phase::Informing { unconfirmed } = &mut p.phase
                {
                    unconfirmed.remove(from);
                    if unconfirmed.is_empty() {
                        p.phase = Phase::Done;
                    }
                }
            }
        }
    }

    /// Everything up to `lsn` is durable: the messages that waited for it may leave.
    pub fn handle_durable(&mut self, lsn: Lsn) {
        // Only records this run handed out can be durable.
        self.durable = self.durable.max(lsn.min(self.last_lsn));
        while self.held.front().is_some_and(|(at, _, _)| *at <= self.durable) {
            if let Some((_, to, message)) = self.held.pop_front() {
                self.outputs.push_back(AgreementOutput::Send { to, message });
            }
        }
    }

    /// The deadline came: a proposer whose step went unanswered tries a new ballot, and one
    /// telling the members what was chosen tells the silent ones again. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Time) {
        let Some(Proposer { retry_at, attempt, phase, .. }) = self.proposer.as_ref() else { return };
        // What is overdue, without copying the reports a soliciting phase holds.
        let overdue = match phase {
            Phase::Soliciting { .. } | Phase::Accepting | Phase::Backing => Overdue::Ballot,
            Phase::Informing { unconfirmed } => Overdue::Telling(*unconfirmed),
            Phase::Done => Overdue::Nothing,
        };
        let (retry_at, attempt) = (*retry_at, *attempt);
        if now < retry_at {
            return;
        }
        let backoff = self.backoff(attempt);
        let epoch = self.current.epoch;
        match overdue {
            Overdue::Ballot => {
                let Some(ballot) = self.next_ballot() else {
                    // No ballot left above those seen: nothing more this proposer can do.
                    self.proposer = None;
                    return;
                };
                if let Some(p) = self.proposer.as_mut() {
                    *p = Proposer {
                        ballot,
                        phase: Phase::soliciting(now),
                        attempt: attempt.saturating_add(1),
                        retry_at: now + backoff,
                        own: p.own,
                        joining: std::mem::take(&mut p.joining),
                    };
                }
                self.broadcast(PaxosMessage::PromiseRequest { epoch, ballot });
            }
            Overdue::Telling(unconfirmed) => {
                if let (Some(value), Some(p)) = (self.state.chosen.clone(), self.proposer.as_mut()) {
                    p.attempt = attempt.saturating_add(1);
                    p.retry_at = now + backoff;
                    for to in unconfirmed.iter() {
                        self.send(to, PaxosMessage::Chosen { epoch, value: value.clone() });
                    }
                }
            }
            Overdue::Nothing => {}
        }
    }

    pub fn poll_output(&mut self) -> Option<AgreementOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`Agreement::handle_timeout`] next, if ever.
    pub fn deadline(&self) -> Option<Time> {
        self.proposer.as_ref().filter(|p| p.phase != Phase::Done).map(|p| p.retry_at)
    }

    /// The value chosen for the next epoch (its configuration and this epoch's settlement),
    /// once this node knows it.
    pub fn chosen(&self) -> Option<&Value> {
        self.state.chosen.as_ref()
    }

    /// The ballot this node's proposer is gathering promises for, and when it drew it: a promise
    /// for that ballot answers a request sent then or later (a ballot's requests go out once,
    /// when its round is durable).
    pub fn soliciting(&self) -> Option<(Ballot, Time)> {
        let p = self.proposer.as_ref()?;
        match p.phase {
            Phase::Soliciting { asked_at, .. } => Some((p.ballot, asked_at)),
            _ => None,
        }
    }

    /// The state as last handed out to persist (durable or on its way).
    pub fn state(&self) -> &AgreementState {
        &self.state
    }

    /// Whether this member has frozen the epoch (it promised with its report, or its recovered
    /// state says it did): the node must act no more in the epoch.
    pub fn is_frozen(&self) -> bool {
        self.state.is_frozen()
    }

    pub fn dropped(&self) -> DropCounts {
        self.dropped
    }

    /// Learns that `value` is chosen: persists it, tells the other members, and a proposer goes
    /// on telling those that do not answer.
    fn learn(&mut self, now: Time, value: Value) {
        if self.state.chosen.is_some() {
            return;
        }
        self.state.chosen = Some(value.clone());
        self.persist();
        let others = self.current.members.without(self.me);
        for to in others.iter() {
            self.send(to, PaxosMessage::Chosen { epoch: self.current.epoch, value: value.clone() });
        }
        let backoff = self.backoff(0);
        if let Some(p) = self.proposer.as_mut() {
            p.phase = if others.is_empty() { Phase::Done } else { Phase::Informing { unconfirmed: others } };
            p.attempt = 1;
            p.retry_at = now + backoff;
        }
    }

    /// A fresh ballot above every ballot heard of, its round persisted before it is used (the
    /// messages carrying it wait for that). `None` once the rounds run out.
    fn next_ballot(&mut self) -> Option<Ballot> {
        let round = self.highest_round.max(self.state.round).checked_add(1)?;
        self.state.round = round;
        self.highest_round = round;
        self.persist();
        Some(Ballot { round, node: self.me })
    }

    fn hear_of(&mut self, ballot: Ballot) {
        self.highest_round = self.highest_round.max(ballot.round);
    }

    fn persist(&mut self) {
        self.last_lsn = Lsn(self.last_lsn.0 + 1);
        self.outputs.push_back(AgreementOutput::Persist { lsn: self.last_lsn, state: self.state.clone() });
    }

    fn broadcast(&mut self, message: PaxosMessage) {
        for to in self.cluster.nodes.iter() {
            self.send(to, message.clone());
        }
    }

    /// Sends `message` once the state it reflects is durable: at once if it is, else held.
    fn send(&mut self, to: NodeId, message: PaxosMessage) {
        if self.durable >= self.last_lsn || self.flawed(PaxosFlaw::AnswerBeforeDurable) {
            self.outputs.push_back(AgreementOutput::Send { to, message });
            return;
        }
        if self.held.len() >= HELD_PER_MEMBER_MAX * self.cluster.nodes.len() {
            self.held.pop_front();
            self.dropped.held_overflow += 1;
        }
        self.held.push_back((self.last_lsn, to, message));
    }

    /// Exponential backoff with full jitter, from the seeded rng.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let min = self.timing.retry_min.as_nanos() as u64;
        let max = self.timing.retry_max.as_nanos() as u64;
        let ceiling = min.saturating_mul(1u64 << attempt.min(32)).min(max).max(min);
        Duration::from_nanos(min + self.rng.next_u64() % (ceiling - min + 1))
    }

    #[inline(always)]
    fn flawed(&self, flaw: PaxosFlaw) -> bool {
        #[cfg(feature = "canary")]
        {
            self.flaw == Some(flaw)
        }
        #[cfg(not(feature = "canary"))]
        {
            let _ = flaw;
            false
        }
    }
}

/// More than half of the cluster's nodes, or (planted flaw) half of them, rounded down.
fn is_majority(cluster: Cluster, nodes: NodeSet, half_is_majority: bool) -> bool {
    if half_is_majority {
        nodes.intersection(cluster.nodes).len() >= cluster.nodes.len() / 2
    } else {
        cluster.is_majority(nodes)
    }
}
