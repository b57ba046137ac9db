//! State transfer (docs/protocol.md §7.6): a node that cannot vouch for its state (removed,
//! new, emptied, foreign, or with a log tail cut at recovery) takes a member's: the member's
//! newest complete snapshot and every record after it, streamed in bounded chunks into a fresh
//! log that replaces the node's own atomically.
//!
//! - [`LogSource`] (the member): the bytes of its durable log from its newest complete snapshot
//!   on, read a chunk at a time from segment files pinned open, so compaction meanwhile does not
//!   disturb it (see there).
//! - [`TransferSink`] (the receiver): reassembles the records, adopts them ([`Adoption`]) and
//!   writes them to a staging file, renamed into the log once the stream is complete.
//! - [`fetch_state`]: the receiver's side of the exchange over a TLS link to a member's peer
//!   port, blocking (a node that catches up serves nothing meanwhile); the member's side runs
//!   in its event loop ([`serve`]), a few chunks per loop turn, so clients are not stalled.
//! - The messages are [`dkv_core::codec::transfer`]'s.
//!
//! # Memory
//!
//! The member holds one chunk ([`TRANSFER_CHUNK_BYTES_MAX`]) at a time, and at most the
//! receiver's window of sent, unacknowledged bytes in its output (the asker chooses it, within
//! [`TRANSFER_WINDOW_BYTES_MAX`]). The receiver holds one frame and its read buffer, the start
//! of a record cut across chunks (at most the largest record of the log, as the log's own
//! recovery would; [`TRANSFER_RECORD_BYTES_MAX`] at worst), and about 1 MiB of encoded records
//! before they are written out (plus one record). Neither side ever holds the log or the store
//! whole.
//!
//! # What the receiver takes: the member's data, not its roles
//!
//! The member's log says what its store holds, and also what the member is: its incarnations,
//! the decisions its coordinator made, the transactions its participant holds. The receiver
//! replays the adopted log as itself (`Node::start` with its own id), so each record becomes
//! what it means for the receiver:
//!
//! - **Store and completions** (the snapshot's entries and completion records) are taken as
//!   they are: every member holds every committed write and the same exactly-once answers.
//! - **Incarnations** are the member's own: its `Boot`/`BootTracked` records are kept for the
//!   build they mark (what follows them tracks versions or not) with incarnation 0, and the
//!   snapshot header's incarnation is 0. The adopted log ends with a `BootTracked` naming the
//!   receiver's floor: the larger of the incarnation it last had (the caller's
//!   `incarnation_floor`, 0 if unknown) and that of any transaction of the receiver's the stream
//!   names. Recovery takes the largest incarnation it reads and the node boots above it, so its
//!   incarnation never goes back past anything it or the member knows of.
//! - **The member's decisions** (its `Decided` records, and those its snapshot had not yet
//!   applied) are commits the receiver learned, written as a participant's `Prepared` and
//!   `Committed`: the writes apply, and the member's transaction ids never become the receiver's
//!   decisions (the receiver would otherwise resend COMMITs for them, or refuse the log as
//!   another node's). Decisions the snapshot had applied are in its entries already, and the
//!   member's `Forgotten` records are its coordinator's bookkeeping: dropped.
//! - **Transactions the member holds prepared** for other coordinators stay prepared at the
//!   receiver, with their `Committed`/`Aborted` when the stream has them: the receiver holds
//!   their operations and learns their outcome from the coordinator as any participant does.
//! - **The receiver's own transactions** (coordinated by it in an earlier life, prepared at the
//!   member) are held aside: a `Committed` in the stream makes them the receiver's decision,
//!   written as `Decided` and at once `Forgotten` (every participant already knows it); an
//!   `Aborted` drops them; one still in doubt at the end refuses the transfer
//!   ([`AdoptError::OwnTransactionInDoubt`]): the receiver cannot decide it any more, so it asks
//!   again after the configuration change that removed it has settled it (§7.4).
//!
//! A receiver that lost its log entirely cannot know its last incarnation. Its new transaction
//! ids might then repeat ids of its earlier life; that is safe once it rejoins through a
//! configuration change, which settles every transaction of the epochs before at every member
//! (§7.4), so no member still holds one of those ids when the receiver coordinates again.

mod fetch;
pub mod serve;
mod sink;
mod source;

pub use dkv_core::catch_up::{AdoptError, Adoption, OWN_PENDING_MAX, RecordAssembler, TRANSFER_RECORD_BYTES_MAX};
pub use dkv_core::codec::transfer::{TRANSFER_CHUNK_BYTES_MAX, TRANSFER_WINDOW_BYTES_MAX};
pub use fetch::{FetchError, FetchReport, Streamed, fetch_into, fetch_state, stream_into};
pub use sink::{Installed, STAGING_FILE_NAME, TransferSink, TransferSinkError};
pub use source::LogSource;
