//! Bootstrapping a new cluster (docs/protocol.md §7.1, "Bootstrap"): a node started with an
//! empty log and the operator's word that the cluster is new (`dkv-server --init`) takes part
//! only once every other node of the cluster has said it holds nothing either, and every node
//! has begun.
//!
//! Why every node, and not a majority: `--init` left on a restart's command line after the data
//! dir was lost would otherwise bootstrap again, as a member with an empty store, over state the
//! cluster holds. Any such state involved some other node: a transaction needs every member's
//! YES, an agreement a majority of the cluster's promises. So while some other node holds any,
//! that node answers "not clean", and this one catches up instead (it takes part in nothing
//! until then, as any node that cannot vouch for its log). A majority would not do: the one
//! other node holding the state may be down while a node left out of every change, so clean,
//! answers. Every node answering clean means nothing ever happened: bootstrapping is then what
//! the first start of every node does.
//!
//! Two phases, so that no node is left out of a first start:
//! - **Asking.** The node logs nothing and asks every other node, in a new round every
//!   heartbeat interval, counting only clean answers to rounds sent lately (within two heartbeat
//!   intervals or a detection timeout of the latest, whatever the round trip): a node that
//!   answered clean long ago may hold state now (it caught up after a data loss of its own, or
//!   took part in a change that removed a node down for good), and then says so (review: five
//!   data dirs lost one after another, each node answering clean while it bootstrapped, then
//!   catching up). Any answer "not clean": it starts as one that cannot vouch for its log, and
//!   catches up. Every answer clean: it begins.
//! - **Begun.** It logs [`Record::Bootstrapped`] and its start, and still takes part in
//!   nothing (no vote, no proposal, not even a heartbeat), so it stays clean, until every other
//!   node has answered a query of this phase that it is no longer asking (it has begun, durably,
//!   or it stands outside to catch up), or one answered that it takes part as a member (it
//!   heard every node begin: the others need not wait for a node that began and then crashed
//!   for good, if any node heard it). Only then does any node take part, so a node that
//!   crashes while asking, and asks again as a new life, finds every other node still clean. (Review, then real servers: with nodes taking part as soon as they
//!   had heard every answer, the first one took a client's write, and the others, asking again,
//!   heard "not clean" and stood outside a cluster of one.) A restart that finds the
//!   `Bootstrapped` record and nothing after it but starts waits again; once every node has
//!   begun, the node logs so (`all_begun`), and its restarts take part at once.
//!
//! A node's clients are told to try again (`Starting`) while it bootstraps. The price of
//! "every node": a first start waits until every node is up, for ever if one never comes; and
//! for ever too if a node crashes for good in the moment after it took part, before any other
//! heard that it had begun (review). Every node is still clean then: the way out is to stop
//! them all, delete their data dirs, and start the cluster again with the nodes that are left.
//! (A node started without `--init` at a first start holds nothing and counts as begun: the
//! others go on without it, and it catches up with `--availability`; without it, it stays out
//! until the cluster is started again.)

use super::{Input, Node};
use crate::configuration::JoinTicket;
use crate::ids::{NodeId, NodeSet};
use crate::message::Message;
use crate::operation::{Outcome, TryAgainReason};
use crate::record::Record;
use crate::time::Time;
use crate::timers::Timer;
use std::collections::BTreeMap;

/// What a node bootstrapping has heard.
#[derive(Debug, Default)]
pub(super) struct Bootstrap {
    /// The round of the latest query.
    round: u64,
    /// Begun (every other node answered clean, and this one logged that it began): the first
    /// round of the Begun phase.
    begun_round: Option<u64>,
    /// When each recent round was sent (the oldest are dropped).
    sent: BTreeMap<u64, Time>,
    /// Each other node's latest answer of this life: its round, and what it said.
    answers: BTreeMap<NodeId, Answer>,
}

/// Rounds whose send time is kept: far more than [`fresh_within`] spans.
const ROUNDS_KEPT: usize = 64;

/// An answer to a bootstrap query (see [`Message::BootstrapAnswer`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Answer {
    round: u64,
    clean: bool,
    asking: bool,
    member: bool,
}

impl Node {
    /// Starts a node on an empty log, to bootstrap a new cluster (`--init`). It takes part in
    /// nothing until every other node of the cluster has answered [`Message::BootstrapQuery`]
    /// that it holds nothing, and then that it has begun too: then it takes part as
    /// [`Node::start`] does from an empty log. If one answers that it holds something, it
    /// starts as [`Node::start_unvouched`] does instead (it catches up from the members). A node
    /// alone in its cluster starts at once.
    pub fn start_bootstrapping(config: crate::config::Config, now: Time) -> Result<Node, super::StartError> {
        let mut node = Node::start_vouching(config, Vec::new(), now, true, true)?;
        let unchecked = node.shared.canary(crate::Canary::BootstrapUnchecked);
        if node.bootstrap.is_some() && (node.others().is_empty() || unchecked) {
            node.bootstrap = None;
            node.shared.timers.cancel(Timer::Bootstrap);
            node.begin(now);
        }
        Ok(node)
    }

    /// Whether this node bootstraps: it waits for the others' answers before it takes part.
    pub fn is_bootstrapping(&self) -> bool {
        self.bootstrap.is_some()
    }

    /// The other nodes of the cluster that this node, bootstrapping, waits to hear from: that
    /// they hold nothing, while it asks; that they have begun, once it has. Empty when it does
    /// not bootstrap.
    pub fn bootstrap_waits_for(&self) -> NodeSet {
        let Some(bootstrap) = &self.bootstrap else { return NodeSet::default() };
        let mut waiting = NodeSet::default();
        if bootstrap.begun_round.is_some() && bootstrap.answers.values().any(|a| a.member) {
            return waiting;
        }
        // Asking counts clean answers to rounds sent lately only (see "Asking"): within the
        // window of the latest round's send time, whatever the round trip takes.
        let latest = bootstrap.sent.get(&bootstrap.round).copied().unwrap_or(Time::ZERO);
        let window = fresh_within(&self.shared.config.timing);
        let fresh = |round: u64| bootstrap.sent.get(&round).is_some_and(|&sent| sent + window >= latest);
        for node in self.others().iter() {
            // Asking: a clean answer to a round sent lately. Begun: an answer of this phase that
            // it no longer asks (a node that began durably never asks again in that life).
            let done = bootstrap.answers.get(&node).is_some_and(|a| match bootstrap.begun_round {
                Some(begun_round) => a.round >= begun_round && !a.asking,
                None => a.clean && fresh(a.round),
            });
            if !done {
                waiting.insert(node);
            }
        }
        waiting
    }

    /// The other nodes of the cluster.
    fn others(&self) -> NodeSet {
        let mut others = self.shared.cluster().nodes;
        others.remove(self.shared.me());
        others
    }

    /// Asks every other node, in a new round, every heartbeat interval.
    pub(super) fn ask_to_bootstrap(&mut self, now: Time) {
        let bootstrap = self.bootstrap.get_or_insert_with(Bootstrap::default);
        bootstrap.round += 1;
        let round = bootstrap.round;
        bootstrap.sent.insert(round, now);
        if bootstrap.sent.len() > ROUNDS_KEPT {
            bootstrap.sent.pop_first();
        }
        let ticket = self.ticket();
        for node in self.others().iter() {
            self.shared.send(node, Message::BootstrapQuery { ticket, round });
        }
        let interval = self.shared.config.timing.heartbeat_interval;
        self.shared.timers.set(Timer::Bootstrap, now + interval);
    }

    /// A restarted node that began a new cluster and took part in nothing since: it waits, as
    /// it did, until every other node has begun.
    pub(super) fn wait_for_the_others_to_begin(&mut self, now: Time) {
        if self.others().is_empty() {
            return;
        }
        self.bootstrap = Some(Bootstrap { begun_round: Some(1), ..Bootstrap::default() });
        self.ask_to_bootstrap(now);
    }

    /// Answers the query `round` of the life `asked` of a node bootstrapping: whether this one
    /// holds anything, and whether it is still asking (it has not begun durably).
    pub(super) fn answer_bootstrap(&mut self, from: NodeId, asked: JoinTicket, round: u64) {
        if !self.others().contains(from) {
            self.shared.stats.messages_dropped += 1;
            return;
        }
        let clean = self.shared.clean;
        // A node that cannot vouch for its log will catch up, never bootstrap: not asking.
        let asking = match &self.bootstrap {
            Some(bootstrap) => bootstrap.begun_round.is_none() || !self.is_booted(),
            None => self.vouches_for_its_log() && !self.is_booted(),
        };
        let member = self.bootstrap.is_none() && self.vouches_for_its_log() && self.is_booted();
        self.shared.send(from, Message::BootstrapAnswer { asked, round, clean, asking, member });
    }

    pub(super) fn handle_bootstrapping(&mut self, now: Time, input: Input) {
        match input {
            Input::Request { reply_to, request } => {
                self.shared.reply(reply_to, request.id, Outcome::TryAgain(TryAgainReason::Starting))
            }
            Input::Message { from, message: Message::BootstrapQuery { ticket, round } } => {
                self.answer_bootstrap(from, ticket, round)
            }
            Input::Message { from, message: Message::BootstrapAnswer { asked, round, clean, asking, member } } => {
                self.on_bootstrap_answer(now, from, asked, Answer { round, clean, asking, member })
            }
            Input::Message { .. } | Input::CatchUpFailed { .. } => self.shared.stats.messages_dropped += 1,
            // Begun: its start record becomes durable (and with it, the node's first turn to
            // coordinate, once it takes part).
            Input::Durable { through } => self.handle_durable(now, through),
            Input::Timeout => {
                let mut ask = false;
                while let Some(timer) = self.shared.timers.pop_due(now) {
                    ask |= timer == Timer::Bootstrap;
                }
                if ask {
                    self.ask_to_bootstrap(now);
                }
            }
        }
    }

    fn on_bootstrap_answer(&mut self, now: Time, from: NodeId, asked: JoinTicket, answer: Answer) {
        // An answer to an earlier life's query says nothing of this one.
        if !self.others().contains(from) || asked != self.ticket() {
            self.shared.stats.messages_dropped += 1;
            return;
        }
        let Some(bootstrap) = &mut self.bootstrap else { return };
        if !answer.clean && bootstrap.begun_round.is_none() {
            // The cluster holds state this node does not: it catches up before it takes part.
            self.bootstrap = None;
            self.shared.timers.cancel(Timer::Bootstrap);
            self.reconfiguration.stop_vouching();
            return self.begin_unvouched(now, true);
        }
        if bootstrap.answers.get(&from).is_none_or(|latest| answer.round > latest.round) {
            bootstrap.answers.insert(from, answer);
        }
        if !self.bootstrap_waits_for().is_empty() {
            return;
        }
        let Some(bootstrap) = &mut self.bootstrap else { return };
        if bootstrap.begun_round.is_none() {
            // Every other node holds nothing: this one begins, and asks on until all have
            // (answers to the rounds before do not count then).
            bootstrap.begun_round = Some(bootstrap.round + 1);
            bootstrap.answers.clear();
            self.shared.persist(Record::Bootstrapped { all_begun: false });
            self.begin(now);
            return;
        }
        // Every other node has begun: this one takes part, and a restart does not wait again.
        self.bootstrap = None;
        self.shared.timers.cancel(Timer::Bootstrap);
        self.shared.persist(Record::Bootstrapped { all_begun: true });
        self.shared.restart_grace(now);
        // Heartbeats start once the start record is durable, as for any start.
        if self.is_booted() {
            self.shared.start_heartbeats(now);
        }
    }
}

/// How recent a round a clean answer must answer to count while asking: two heartbeat
/// intervals, or a detection timeout if longer, so that a slow round trip still counts while a
/// node that has caught up since (which takes far longer) does not.
fn fresh_within(timing: &crate::config::Timing) -> std::time::Duration {
    (timing.heartbeat_interval * 2).max(timing.detection_timeout)
}
