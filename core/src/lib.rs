//! # dkv-core: the dkv protocol as a pure state machine
//!
//! A [`Node`] is one member of a dkv cluster: a full replica of the key-value store, a
//! two-phase-commit coordinator for the writes its clients send it, and a participant in every
//! other node's writes. It does no I/O. It never reads a clock, touches a socket or a file,
//! spawns a thread or asks the OS for randomness: time comes in as an argument, randomness from
//! a seed in its [`Config`], and everything it wants done comes out as [`Output`]s. Same inputs,
//! same outputs, bit for bit — which is what lets the simulator replay any run from its seed.
//!
//! ## Driving a node
//!
//! Create it with [`Node::start`], passing the records of its log (none for a new node). Then:
//!
//! | group | methods | what they are |
//! |---|---|---|
//! | input | [`Node::handle`] with an [`Input`] | a client request, a peer message, "these records are durable", "the deadline passed" |
//! | outputs | [`Node::poll_output`] | [`Output::Send`] a message, [`Output::Reply`] to a client, [`Output::Persist`] a record |
//! | deadline | [`Node::deadline`] | when to hand it [`Input::Timeout`] next |
//! | getters | [`Node::store`], [`Node::stats`], [`Node::is_quiescent`], ... | read-only views |
//!
//! After **every** input, drain `poll_output` until it returns `None`, then read `deadline`
//! and hand the node [`Input::Timeout`] once that time has come (earlier is harmless). Every
//! call takes `now`, a [`Time`] that must never go backwards.
//!
//! ## Durability is the core's business
//!
//! `Persist` outputs carry a log sequence number ([`Lsn`]). Write the records in order; once
//! everything up to some lsn is on stable storage (fsync), report it with [`Input::Durable`].
//! Drivers may group many records into one fsync. The node itself holds back whatever must not
//! precede durability — a YES vote until its PREPARE record is durable, the coordinator's
//! decision until its own share's record is, an acknowledgement until the participant's commit
//! record is durable, and a commit's visibility (to the client and to every store) until the
//! decision is durable on a majority — so outputs may be carried out in any order, and a crash
//! between "persist" and "durable" is always safe.
//! A snapshot is a run of records, [`Record::SnapshotBeginInEpoch`] to [`Record::SnapshotEnd`]; once its
//! end is durable, every record before its begin may be deleted (and not before: recovery
//! ignores a snapshot that a crash cut short). [`compaction`] applies that rule for drivers.
//!
//! ## Untrusted input
//!
//! Peer messages and client requests may be anything: a malformed or senseless one is counted
//! in [`Stats::messages_dropped`] or answered with a clear [`Outcome`], never a panic. Decoders
//! in [`codec`] turn bad bytes into typed errors. A panic inside the core means a broken internal
//! invariant: a bug.
//!
//! ## The protocol, in one paragraph
//!
//! A write is a transaction of ops ([`TxnOp`]: put, update, delete, increment, append,
//! get-and-set, get-and-delete, read, and conditions on a key). The node a client contacts
//! coordinates it: it locks and logs its own share, sends PREPARE to every other node, and each
//! participant checks, locks, persists and votes. All YES: the coordinator persists its
//! decision and sends COMMIT at once; participants log the commit and acknowledge, keeping
//! their locks; once the decision is durable on a majority the commit is visible: the
//! coordinator applies, answers the client and tells the participants to apply. Any NO or a
//! missing vote: abort. Messages carry the epoch of the node's [`Configuration`]. Whether
//! each op can run (an update or delete needs its key, a condition must hold, an increment
//! needs a number that does not overflow) is not a vote: it is judged at commit under the
//! locks, identically everywhere ([`store::Store::run`]), and a transaction with an op that
//! cannot run commits as a no-op whose completion record names the op ([`Outcome::Failed`]);
//! one that runs records every op's result ([`OpResult`]: versions, counters, values read).
//! So every definite outcome is decided by two-phase commit and no retry can be told another.
//! Lock conflicts are refused at once and retried by the coordinator after a randomized
//! backoff, so nothing deadlocks or livelocks. Reads — gets and scans — are served from memory
//! unless a key they read is locked, in which case they wait for the decision; for a scan
//! that is any key in the range its page speaks for, a key being inserted included, so a page
//! has no phantoms and never shows part of a transaction. Every request carries a (client,
//! sequence) id whose completion is replicated with the write, so retries are never applied
//! twice.
//!
//! The full account — what is logged when, recovery, the invariants, and why each guarantee
//! holds — is `docs/protocol.md` in the repository.
//!
//! With [`Timing::leases`] on (configuration changes on), members also exchange heartbeats that
//! carry read-lease requests and grants: a node answers reads only while a majority's grants
//! hold ([`Outcome::NotServing`] otherwise, "ask another node"), suspects members it has not
//! heard from ([`Node::suspected`]), and waits out the lease after its start before it votes
//! YES or decides a commit ([`Node::no_yes_before`]). Membership is a numbered
//! [`configuration`]: the majority removes a member it suspects and adds back one that caught
//! up, each next configuration agreed by a majority of the current one with single-decree
//! Paxos, whose value also settles the ending epoch's unfinished transactions.
//!
//! [`votes`] holds the rules of the next step of docs/protocol.md §8 (each member's vote a
//! consensus instance, so that a commit waits for one synced write): built and model-checked
//! on their own. Their messages ([`message::Message::Votes`]) and records
//! ([`record::Record::VoteAcceptor`]) exist, and a node keeps, snapshots and drops the states
//! its log holds, but no node casts, accepts or recovers a vote yet.

pub mod canary;
pub mod catch_up;
pub mod codec;
pub mod compaction;
pub mod completions;
pub mod config;
pub mod configuration;
mod decisions;
pub mod ids;
pub mod limits;
pub mod locks;
pub mod message;
mod node;
pub mod operation;
pub mod record;
pub mod recovery;
pub mod store;
pub mod time;
mod timers;
pub mod votes;

pub use canary::Canary;
pub use config::{Bounds, Config, ConfigError, Timing};
pub use configuration::{Configuration, Epoch};
pub use ids::{ClientId, ClusterId, Lsn, NodeId, NodeSet, ReplyTo, RequestId, TxnId};
pub use limits::{LimitError, Limits};
pub use message::{Decision, LeaseRequest, Message, NoReason, Vote};
pub use node::{Input, InvariantViolation, Node, Output, StartError, Stats};
pub use operation::{
    Condition, FailReason, Key, NotServingReason, OpCode, OpFailure, OpResult, Operation, Outcome, RejectReason, Reply,
    Request, ScanEntry, TryAgainReason, TxnOp, Value, prefix_end,
};
pub use record::{LAZY_SYNC_DELAY, Record, SNAPSHOT_CHUNK_BYTES, Snapshot, SnapshotHeader, SnapshotHeaderInEpoch};
pub use time::Time;
