//! # Votes as consensus instances (Paxos Commit, counted so that one sync is on the path)
//!
//! The building blocks of docs/protocol.md §8's direction, not yet wired into the node: each
//! member's vote on a transaction is a consensus instance of its own, one per (epoch,
//! transaction, member), whose acceptors are the epoch's members. The member whose vote it is,
//! the instance's **owner**, casts YES or NO at its own ballot by sending it to every member at
//! once and logging its own copy in parallel (for a YES, that copy is its share). A member that
//! holds the vote durably tells the coordinator. The vote counts once it is **chosen**
//! ([`counts`]): held durably by `copies` members, and, for a YES or for anything at the owner's
//! ballot, with the owner among them. A transaction commits once every member's YES is chosen:
//! one synced write at each member, in parallel, on the client's path.
//!
//! A coordinator that stops waiting for a vote runs a **recovery ballot** for it: promises
//! from `copies` members, then the value [`safe_value`] allows, NO unless a YES may have been
//! chosen (and a YES only with the owner's promise). A settlement of the epoch is a recovery
//! ballot above every other, over every instance at once ([`settled_value`]). So an abort is a chosen NO, and every rule that stops 2PC's findings of §8 (an abort
//! acted on and then overridden, a vote changed on a resent PREPARE) is Paxos's.
//!
//! ## Words
//!
//! Two-phase commit owns *prepare*, *vote*, *commit*, *abort* and *decision*: here a member
//! **casts** its vote (the owner's ballot), and Paxos speaks as in [`crate::configuration`]
//! otherwise: promise request, promise, outbid, accept request, accepted, chosen.
//!
//! ## Why it is safe
//!
//! - *Quorums.* `copies` is a majority of the cluster's nodes, all of them members, so any two
//!   sets of `copies` members share one. [`counts`] only ever leaves quorums out (those without
//!   the owner, for a YES or at the owner's ballot), so the usual argument holds: once a value
//!   is chosen at a ballot, every later ballot's promises include one of its holders, and the
//!   highest-ballot value they report is that value.
//! - *The owner's ballot skips phase 1.* Safe for the first ballot of an instance; the owner
//!   casts again only in a later life whose log holds nothing of the instance
//!   ([`VoteAcceptor::may_cast`]), and whatever it cast before was then not durable at the
//!   owner, so was never chosen. `life` in the ballot keeps the two casts' values apart.
//! - *The owner's word in recovery.* [`safe_value`] proposes NO when the owner promised and
//!   holds no YES, although another promiser may report a YES: that YES was never chosen (the
//!   owner's copy is needed) and never will be (the owner promised past it).
//! - *A YES chosen is a share held.* The owner accepts a YES only while it holds the share
//!   ([`Share`]), and a YES counts only with the owner's durable copy. So a commit built on
//!   chosen YESes never lacks a member's ops, though the vote left the member before its share
//!   was durable.
//!
//! `core/tests/vote_instances.rs` explores every schedule of one instance in small clusters (loss, duplication,
//! reordering, crashes that keep only what was durable, competing recovery ballots) and checks
//! that no two values are chosen, that a chosen YES is durably held by its owner, and that a
//! recovery with every member up always chooses; each planted [`VoteFlaw`] is caught there.
//!
//! ## What the driver must guarantee
//!
//! - Persist the [`VoteAcceptor`] whole after each change, send no promise and no acceptance
//!   notice before it is durable, and restart from the last durable copy only. The owner's
//!   acceptance of a YES goes in its log after its share's record (or in it).
//! - Keep an instance's state until its transaction is below a durable finished mark, and
//!   cast, promise and accept nothing below the mark ([`VoteAcceptor::may_cast`]); snapshots
//!   carry the states of unfinished transactions.
//! - A frozen member (the epoch's settlement under way) casts, promises and accepts nothing of
//!   the epoch's instances: its report is its promise of the settlement's ballot.
//! - Cast and propose only once the node's life is durable, and never use a ballot of another
//!   life or node.
//! - Feed a [`Tally`] only acceptances its members said were durable.

mod acceptor;
mod acceptors;
mod ballot;
mod message;
mod recovery;
mod tally;

pub use acceptor::{AcceptorAnswer, Share, VoteAcceptor};
pub use acceptors::{SNAPSHOT_ACCEPTORS_PER_RECORD, VoteAcceptors};
pub use ballot::VoteBallot;
pub use message::{MalformedVote, VoteInstance, VoteMessage};
pub use recovery::{safe_value, settled_value};
pub use tally::{Tally, counts};

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The value of a vote instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteValue {
    /// The owner holds its share: locked, and logged once its copy is durable.
    Yes,
    /// The owner holds nothing of the transaction, or gave up on it.
    No,
}

impl fmt::Display for VoteValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteValue::Yes => "YES",
            VoteValue::No => "NO",
        })
    }
}

/// Deliberately wrong variants of the rules, to prove that the tests catch each. Only a build
/// with the `canary` cargo feature can plant one ([`Flaws::plant`]); without it the checks
/// compile away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteFlaw {
    /// A YES counts on any `copies` members, without the owner's own copy.
    YesWithoutOwner,
    /// A NO cast at the owner's ballot counts without the owner's own copy.
    OwnersNoWithoutOwner,
    /// An owner restarted casts again although its log holds the vote it cast before.
    OwnerCastsAgain,
    /// A recovery ballot proposes NO whatever its promises report.
    RecoverWithNo,
    /// A recovery ballot ignores that the owner promised without a YES, and proposes the
    /// highest-ballot value reported.
    RecoverWithoutOwnersWord,
    /// A recovery ballot proposes a YES without the owner's promise, which an owner that lost
    /// its share refuses: a recovery that hears the owner last never ends.
    RecoverYesWithoutOwner,
}

/// The planted flaws in force: none, but in a `canary` build's tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flaws {
    #[cfg(feature = "canary")]
    planted: Option<VoteFlaw>,
}

impl Flaws {
    /// No flaw: the rules as they are.
    pub const NONE: Flaws = Flaws {
        #[cfg(feature = "canary")]
        planted: None,
    };

    /// Plants `flaw`. Fails unless dkv-core was built with the `canary` feature, so a real
    /// build can never run one.
    pub fn plant(flaw: VoteFlaw) -> Result<Flaws, ConfigError> {
        #[cfg(feature = "canary")]
        {
            Ok(Flaws { planted: Some(flaw) })
        }
        #[cfg(not(feature = "canary"))]
        {
            let _ = flaw;
            Err(ConfigError::CanaryUnavailable)
        }
    }

    #[inline(always)]
    fn has(self, flaw: VoteFlaw) -> bool {
        #[cfg(feature = "canary")]
        {
            self.planted == Some(flaw)
        }
        #[cfg(not(feature = "canary"))]
        {
            let _ = flaw;
            false
        }
    }
}
