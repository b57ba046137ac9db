//! The proposer: one node's attempts to get its configuration chosen (Paxos phases 1a and 2a),
//! and, once one is chosen, telling every member until each has answered that it knows.

use super::{Ballot, Configuration};
use crate::ids::{NodeId, NodeSet};
use crate::time::Time;

pub(super) struct Proposer {
    /// The configuration this node wants; proposed unless a promise reports another.
    pub(super) own: Configuration,
    pub(super) ballot: Ballot,
    pub(super) phase: Phase,
    /// Attempts so far: the backoff grows with each.
    pub(super) attempt: u32,
    /// When to give up on the current step and retry it.
    pub(super) retry_at: Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Promise requests sent for `ballot`; gathering promises from a majority.
    Soliciting { promised_by: NodeSet, highest: Option<(Ballot, Configuration)> },
    /// Accept requests sent for `ballot`; the learner sees when a majority accepted.
    Accepting,
    /// Outbid: a new ballot at `retry_at`, above everything heard of.
    Backing,
    /// Chosen: telling the members that have not answered "learned" yet.
    Informing { unconfirmed: NodeSet },
    /// Every member knows. Nothing more to do.
    Done,
}

/// What the proposer wants sent after a promise.
pub(super) enum AfterPromise {
    /// Not yet a majority (or a stale promise).
    Wait,
    /// A majority promised: ask every member to accept this configuration.
    Accept(Configuration),
}

impl Proposer {
    /// Counts a promise for the current ballot from `from`; `is_majority` judges the tally.
    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Option<(Ballot, Configuration)>,
        is_majority: impl Fn(NodeSet) -> bool,
    ) -> AfterPromise {
        let Phase::Soliciting { mut promised_by, mut highest } = self.phase else { return AfterPromise::Wait };
        if ballot != self.ballot {
            return AfterPromise::Wait;
        }
        promised_by.insert(from);
        if accepted.is_some_and(|(at, _)| highest.is_none_or(|(top, _)| at > top)) {
            highest = accepted;
        }
        if is_majority(promised_by) {
            // The safety rule of Paxos: a configuration some acceptor of this majority
            // accepted may already be chosen, so the highest one is proposed, never our own.
            let configuration = highest.map_or(self.own, |(_, c)| c);
            self.phase = Phase::Accepting;
            AfterPromise::Accept(configuration)
        } else {
            self.phase = Phase::Soliciting { promised_by, highest };
            AfterPromise::Wait
        }
    }
}
