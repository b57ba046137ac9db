//! The proposer: one node's attempts to get its configuration chosen (Paxos phases 1a and 2a),
//! with the settlement built from the reports in the promises, and, once a value is chosen,
//! telling every member until each has answered that it knows.

use super::{Ballot, Configuration, JoinTicket, Report, Settlement, Value};
use crate::ids::{NodeId, NodeSet};
use crate::time::Time;
use std::collections::BTreeMap;

pub(super) struct Proposer {
    /// The configuration this node wants; proposed unless a promise reports another value.
    pub(super) own: Configuration,
    /// The nodes `own` adds, with their tickets.
    pub(super) joining: BTreeMap<NodeId, JoinTicket>,
    pub(super) ballot: Ballot,
    pub(super) phase: Phase,
    /// Attempts so far: the backoff grows with each.
    pub(super) attempt: u32,
    /// When to give up on the current step and retry it.
    pub(super) retry_at: Time,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Promise requests sent for `ballot`, drawn at `asked_at`; gathering promises (and the reports in
    /// them) from a majority. At most one report per member, so bounded by the members.
    Soliciting { reports: BTreeMap<NodeId, Report>, highest: Option<(Ballot, Value)>, asked_at: Time },
    /// Accept requests sent for `ballot`; the learner sees when a majority accepted.
    Accepting,
    /// Outbid: a new ballot at `retry_at`, above everything heard of.
    Backing,
    /// Chosen: telling the members that have not answered "learned" yet.
    Informing { unconfirmed: NodeSet },
    /// Every member knows. Nothing more to do.
    Done,
}

impl Phase {
    pub(super) fn soliciting(asked_at: Time) -> Phase {
        Phase::Soliciting { reports: BTreeMap::new(), highest: None, asked_at }
    }
}

/// Whether the proposer infers commits from the reports ([`Settlement::from_reports_inferring`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Inference {
    /// Not a configuration whose commits are visible on every YES (or a planted flaw).
    Off,
    On,
    /// A planted flaw: infers commits, but keeps every member as if it had not.
    KeepingEveryMember,
}

/// One promise, as the proposer counts it.
pub(super) struct Promised {
    pub(super) from: NodeId,
    pub(super) ballot: Ballot,
    pub(super) accepted: Option<(Ballot, Value)>,
    pub(super) report: Report,
}

impl Proposer {
    /// Counts a promise for the current ballot; `is_quorum` judges the tally (a majority of
    /// the cluster with a cover of the members). Once a quorum promised, returns the value to
    /// ask every node to accept: the value accepted at the highest ballot among the promises if
    /// there is one (the safety rule of Paxos: it may already be chosen), else this node's
    /// configuration with the settlement of the reports of `cover` of the current `members` in
    /// this quorum; for a configuration whose commits are visible on every YES (`infers`),
    /// from every member's report in it, and keeping only those members if the settlement
    /// infers a commit ([`Settlement::from_reports_inferring`]).
    /// `settles_from` says whose reports count (the members', but for planted flaws).
    pub(super) fn on_promise(
        &mut self,
        promise: Promised,
        is_quorum: impl Fn(NodeSet) -> bool,
        members: NodeSet,
        cover: usize,
        infers: Inference,
        settles_from: impl Fn(NodeId) -> bool,
    ) -> Option<Value> {
        let Phase::Soliciting { reports, highest, .. } = &mut self.phase else { return None };
        if promise.ballot != self.ballot {
            return None;
        }
        // A duplicated promise counts once; the report is the same anyway (it is final).
        reports.entry(promise.from).or_insert(promise.report);
        if let Some((at, value)) = promise.accepted
            && highest.as_ref().is_none_or(|(top, _)| at > *top)
        {
            *highest = Some((at, value));
        }
        let promised_by = NodeSet::from_ids(reports.keys().copied()).unwrap_or_default();
        if !is_quorum(promised_by) {
            return None;
        }
        let value = match highest.take() {
            Some((_, value)) => value,
            None => {
                let counted = reports.iter().filter(|(node, _)| settles_from(**node));
                let (settlement, inferred) = match infers {
                    Inference::Off => {
                        // A cover's reports hear of every visible commit (`quorum.rs`); more
                        // would only make the value larger.
                        (Settlement::from_reports(counted.take(cover).map(|(_, report)| report)), false)
                    }
                    Inference::On | Inference::KeepingEveryMember => {
                        let (settlement, inferred) =
                            Settlement::from_reports_inferring(counted.map(|(_, report)| report));
                        (settlement, inferred && infers == Inference::On)
                    }
                };
                // Free to choose: every member that promised is live, whatever this node
                // suspected when it set out (it may have come back since), and stays. (Seen in
                // the simulator: a member back from a crash promised a value that removed it
                // and kept a member just crashed for good; two members, one dead, can never
                // agree a change again.) Unless the settlement inferred a commit: then only the
                // members whose reports it read stay, and the nodes this one adds.
                let reported = promised_by.intersection(members);
                let members = if inferred {
                    self.own.members.difference(members).union(reported)
                } else {
                    self.own.members.union(reported)
                };
                Value {
                    configuration: Configuration { members, ..self.own },
                    joining: self.joining.clone(),
                    settlement,
                }
            }
        };
        self.phase = Phase::Accepting;
        Some(value)
    }
}
