//! # Configurations and how the next one is agreed
//!
//! A **configuration** is a numbered membership: epoch `e` and its members. The configuration
//! of epoch `e + 1` is agreed by the members of epoch `e` with single-decree Paxos: one
//! instance per epoch, deciding one value, after which the instance is finished for good. This
//! module is that consensus step alone, sans-IO like the rest of the core; a node drives one
//! [`Agreement`] per epoch it is a member of.
//!
//! ## Words
//!
//! Two-phase commit already owns *prepare*, *vote*, *commit*, *abort* and *decision*, so Paxos
//! here speaks Lamport's other words and never those: a proposer sends a **promise request**
//! (Paxos's phase 1a, often itself called "prepare"), acceptors answer with a **promise** or
//! say they are **outbid**; the proposer sends an **accept request** (phase 2a), acceptors that
//! accept tell every member **accepted** (phase 2b). A configuration accepted by a majority of
//! acceptors at one ballot is **chosen**; a member that learns it tells the others **chosen**
//! and they answer **learned**. See [`PaxosMessage`].
//!
//! ## Why it is safe
//!
//! - *Quorum intersection.* Every step waits for a majority: more than half of epoch `e`'s
//!   members. Any two majorities of the same members share at least one member, so two sides
//!   of a partition can never both gather one: at most one side can choose anything.
//! - *Ballots.* A ballot is (round, node id): the node id makes every proposer's ballots
//!   distinct from every other's, and a proposer never reuses one of its rounds (its round is
//!   part of its durable state, see below). An acceptor that promised ballot `b` accepts
//!   nothing below `b`, and its promise reports the highest-ballot configuration it accepted.
//! - *Together:* once configuration `C` is chosen at ballot `b`, every majority contains an
//!   acceptor that accepted `C` at `b` (or at a later ballot, which by induction also carries
//!   `C`), so every proposer with a later ballot hears of `C` in its promises and must propose
//!   `C` again. No other configuration can ever be chosen for the epoch.
//! - *Liveness* needs one proposer at a time: competing proposers can outbid each other
//!   forever, so each retries after a randomized, exponentially growing backoff (from the
//!   seeded rng and the driver's `now`), and once one of them runs alone it finishes in two
//!   round trips.
//!
//! ## What the driver must guarantee
//!
//! - Persist every [`AgreementOutput::Persist`] record in order and report it with
//!   [`Agreement::handle_durable`] only once it is on stable storage. Each record is the
//!   node's whole state for the epoch (promise, accepted configuration, its own last round,
//!   the chosen configuration), so the latest durable one is all that recovery needs.
//! - After a crash, restart with [`Agreement::recover`] from that latest durable record, and
//!   from nothing else: never from a record that was not reported durable.
//! - Deliver [`AgreementOutput::Send`] messages to their member (a node's messages to itself
//!   included) at most as often as they were sent, or fewer: loss, duplication, delay and
//!   reordering are all safe. Peers are trusted not to lie (no Byzantine faults); a message
//!   from another epoch, from a non-member, or that makes no sense is counted and dropped.
//! - Call [`Agreement::handle_timeout`] once [`Agreement::deadline`] has come, and drain
//!   [`Agreement::poll_output`] after every input.
//!
//! The agreement itself holds back every message until the state it reflects is durable, so
//! a promise or an acceptance that a crash could take back is never seen by anyone.
//!
//! These types are serde types because they will go into the log and on the wire once
//! configurations are wired into the node: a record for [`AgreementState`] is to be appended
//! at the end of [`crate::Record`] then (the log's encoding numbers variants in order).

mod acceptor;
mod agreement;
mod ballot;
mod learner;
mod message;
mod proposer;
mod state;

pub use agreement::{Agreement, AgreementOutput, CannotTakePart, DropCounts, PaxosTiming, ProposeError};
pub use ballot::Ballot;
pub use message::PaxosMessage;
pub use state::AgreementState;

use crate::ids::{NodeId, NodeSet};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The number of a configuration. Epochs only grow: the configuration of epoch `e + 1` is
/// agreed by the members of epoch `e`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The first configuration with data: until configuration changes are wired, every node
    /// is in it, and records of builds before epochs are taken as of it.
    pub const FIRST: Epoch = Epoch(1);

    /// The epoch after this one; `None` at the end of the numbers (no configuration can follow).
    pub fn next(self) -> Option<Epoch> {
        self.0.checked_add(1).map(Epoch)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// A numbered membership: who the members are in epoch `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Configuration {
    pub epoch: Epoch,
    pub members: NodeSet,
}

impl Configuration {
    /// Whether `nodes` include more than half of the members (nodes that are not members do
    /// not count).
    pub fn is_majority(&self, nodes: NodeSet) -> bool {
        2 * nodes.intersection(self.members).len() > self.members.len()
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.members.contains(node)
    }
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.epoch, self.members)
    }
}

/// Deliberately wrong variants of the agreement, to prove that the tests' checker catches
/// each kind of bug. Only a build with the `canary` cargo feature can plant one
/// ([`Agreement::plant_flaw`]); without it the checks compile away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaxosFlaw {
    /// Messages leave as soon as they are made, before the state they reflect is durable.
    AnswerBeforeDurable,
    /// Half of the members, rounded down, is taken for a majority (one of three, two of five).
    HalfIsMajority,
}
