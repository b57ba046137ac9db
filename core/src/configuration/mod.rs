//! # Configurations, how the next one is agreed, and how the ending epoch is settled
//!
//! A **configuration** is a numbered membership: epoch `e` and its members. The configuration
//! of epoch `e + 1` is agreed by the members of epoch `e` with single-decree Paxos: one
//! instance per epoch, deciding one [`Value`], after which the instance is finished for good.
//! The value is the next configuration *and the settlement of epoch `e`* ([`Settlement`]:
//! which of `e`'s unfinished transactions commit and which abort), so that every member ends
//! `e` alike (docs/protocol.md §7.1, §7.4). This module is that consensus step alone, sans-IO
//! like the rest of the core; a node drives one [`Agreement`] per epoch it is a member of.
//!
//! ## Words
//!
//! Two-phase commit already owns *prepare*, *vote*, *commit*, *abort* and *decision*, so Paxos
//! here speaks Lamport's other words and never those: a proposer sends a **promise request**
//! (Paxos's phase 1a, often itself called "prepare"), acceptors answer with a **promise** or
//! say they are **outbid**; the proposer sends an **accept request** (phase 2a), acceptors that
//! accept tell every member **accepted** (phase 2b). A value accepted by a majority of
//! acceptors at one ballot is **chosen**; a member that learns it tells the others **chosen**
//! and they answer **learned**. See [`PaxosMessage`]. A member that promises first **freezes**
//! epoch `e` (it acts no more in it) and puts its **report** in the promise ([`Report`]: the
//! ids it knows committed and not finished, the ids it holds in doubt); the proposer builds
//! the **settlement** from the reports ([`Settlement::from_reports`]).
//!
//! ## Why it is safe
//!
//! - *Quorum intersection.* Every step waits for a majority: more than half of epoch `e`'s
//!   members. Any two majorities of the same members share at least one member, so two sides
//!   of a partition can never both gather one: at most one side can choose anything.
//! - *Ballots.* A ballot is (round, node id): the node id makes every proposer's ballots
//!   distinct from every other's, and a proposer never reuses one of its rounds (its round is
//!   part of its durable state, see below). An acceptor that promised ballot `b` accepts
//!   nothing below `b`, and its promise reports the highest-ballot value it accepted.
//! - *Together:* once value `V` is chosen at ballot `b`, every majority contains an acceptor
//!   that accepted `V` at `b` (or at a later ballot, which by induction also carries `V`), so
//!   every proposer with a later ballot hears of `V` in its promises and must propose `V`
//!   again. No other value can ever be chosen for the epoch.
//! - *The settlement.* A value's settlement was built by some proposer from the reports of one
//!   majority `M`, every member of which froze before reporting. A commit that is visible is
//!   durable on a majority `V`; `V` and `M` share a member, which acknowledged the commit
//!   before it froze (a frozen member acknowledges nothing), so its report knows it committed
//!   and the commit set holds it. A report is taken once, at the first promise, kept in the
//!   durable state with that promise, and carried by every later promise: it stays true
//!   because the member stays frozen, across restarts too. Accepting does not freeze: the
//!   settlement rests on `M`'s freeze alone.
//! - *Quorums are counted against the cluster* ([`Cluster`]): the acceptors are every node of
//!   the cluster that is in epoch `e`, member or not; "a majority" above is a majority of the
//!   cluster's nodes, and a proposer's promises must also include a cover of `e`'s members,
//!   which shares a member with every set a commit is visible on (see `quorum.rs`). When every
//!   node is a member, both are the members' majority.
//! - *The next configuration* keeps a cover of epoch `e`'s members ([`Configuration::admits`]).
//! - *Liveness* needs one proposer at a time: competing proposers can outbid each other
//!   forever, so each retries after a randomized, exponentially growing backoff (from the
//!   seeded rng and the driver's `now`), and once one of them runs alone it finishes in two
//!   round trips.
//!
//! ## What the driver must guarantee
//!
//! - Persist every [`AgreementOutput::Persist`] record in order and report it with
//!   [`Agreement::handle_durable`] only once it is on stable storage. Each record is the
//!   node's whole state for the epoch (promise and report, accepted value, its own last
//!   round, the chosen value), so the latest durable one is all that recovery needs.
//! - After a crash, restart with [`Agreement::recover`] from that latest durable record, and
//!   from nothing else: never from a record that was not reported durable. If the recovered
//!   agreement [`Agreement::is_frozen`], the node is frozen in epoch `e` before it sends
//!   anything of that epoch (a vote, an acknowledgement replayed from its log).
//! - Hand [`Agreement::handle_message`] the node's side of the freeze ([`Freeze`]), which ends
//!   the epoch at the node and returns its report in one call. The agreement calls it when it
//!   is about to make this member's first promise, and never otherwise, so a report can never
//!   be taken before the freeze that makes it final.
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
//! ## Bounds
//!
//! A report holds at most [`Report::IDS_MAX`] ids ([`Report::BYTES_MAX`] bytes encoded); a
//! node's knowledge past it is refused ([`ReportTooLarge`]), never cut, and the member makes
//! no promise (counted in [`DropCounts::unreportable`]): a cut report could drop the only
//! report of a visible commit. A node keeps it from happening by voting NO (busy) before its
//! in-doubt and committed-but-unfinished transactions outgrow the bound. A settlement holds
//! at most [`Settlement::ids_max`] of the members' count (one full report from each member of
//! a smallest majority); a bigger one from a peer is dropped as malformed. Messages waiting
//! for the log are bounded per member.
//!
//! These types are serde types because they will go into the log and on the wire once
//! configurations are wired into the node: a record for [`AgreementState`] is to be appended
//! at the end of [`crate::Record`] then (the log's encoding numbers variants in order).
//! Reports and settlements decoded from either are checked (sorted, disjoint, bounded).

mod acceptor;
mod agreement;
mod ballot;
mod learner;
mod message;
mod proposer;
mod quorum;
mod report;
mod settlement;
mod state;
mod value;

pub use agreement::{Agreement, AgreementOutput, CannotTakePart, DropCounts, PaxosTiming, ProposeError};
pub use ballot::Ballot;
pub use message::PaxosMessage;
pub use quorum::Cluster;
pub use report::{Freeze, MalformedIds, Report, ReportTooLarge};
pub use settlement::Settlement;
pub use state::AgreementState;
pub use value::{JoinTicket, Value};

use crate::ids::{NodeId, NodeSet};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

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

    /// The epoch before this one; `None` for epoch 0.
    pub fn previous(self) -> Option<Epoch> {
        self.0.checked_sub(1).map(Epoch)
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

    /// Whether `next` may follow this configuration in `cluster`: it is of the next epoch, and
    /// it keeps a cover of this one's members (§7.3, [`Cluster::cover`]): the members that
    /// settle this epoch are kept, and a node it adds catches up from one of them.
    pub fn admits(&self, next: Configuration, cluster: Cluster) -> Result<(), NotASuccessor> {
        if Some(next.epoch) != self.epoch.next() {
            return Err(NotASuccessor::NotTheNextEpoch);
        }
        if !cluster.covers(self.members, next.members) {
            return Err(NotASuccessor::KeepsTooFew);
        }
        Ok(())
    }
}

/// Why a configuration cannot follow another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum NotASuccessor {
    #[error("it is not of the next epoch")]
    NotTheNextEpoch,
    #[error("it keeps fewer of the current members than a cover (all but f of them, one at least)")]
    KeepsTooFew,
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
    /// The proposer settles from its own report alone, ignoring the other promises' reports.
    SettleFromOwnReport,
    /// The proposer settles from the reports of the members its configuration keeps only,
    /// ignoring what a member it removes knows.
    SettleFromKeptMembers,
    /// In a configuration whose commits are visible on every YES, the proposer infers no
    /// commit: one made visible on the YES votes by a coordinator gone since is aborted.
    SettleWithoutInference,
    /// The proposer infers commits but keeps every member that promised, the one that did not
    /// report among them: it may lack the commit, or have acted on its abort.
    InferenceKeepsEveryMember,
}
