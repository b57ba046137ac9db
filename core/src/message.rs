//! Messages between nodes. Every word here is a protocol word with exactly one meaning:
//! the coordinator sends PREPARE, participants answer with a vote, the coordinator's decision
//! is COMMIT or ABORT, participants acknowledge a commit once it is durable with them, the
//! coordinator says a commit is visible once it is durable on a majority and which of its
//! transactions are finished, and a participant unsure of the outcome sends a query (to the
//! coordinator and, for cooperative termination, to the other participants).
//!
//! Every message carries the epoch of the configuration it was sent in (docs/protocol.md
//! §7.2): a node drops, and counts, a message of another epoch.
//!
//! Members also exchange heartbeats, each carrying a lease request, and answer them with
//! lease grants (docs/protocol.md §7.3, §7.5).

use crate::completions::Completed;
use crate::configuration::{Epoch, JoinTicket, PaxosMessage};
use crate::ids::{NodeSet, RequestId, TxnId};
use crate::operation::TxnOp;
use crate::time::Time;
use crate::votes::VoteMessage;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Coordinator -> participant: check these ops, lock their keys, persist, and vote.
    /// `round` is the coordinator's incarnation when it sent this PREPARE: a restarted
    /// coordinator asking again about its transaction sends a later round than its first life.
    Prepare { epoch: Epoch, txn: TxnId, request: RequestId, ops: Arc<[TxnOp]>, participants: NodeSet, round: u64 },
    /// Participant -> coordinator, answering the PREPARE of `round` (echoed): a vote is about
    /// what the voter held when that PREPARE came, so a restarted coordinator ignores the votes
    /// its earlier life's PREPAREs drew (docs/protocol.md §7.2).
    Vote { epoch: Epoch, txn: TxnId, vote: Vote, round: u64 },
    /// The outcome: from the coordinator, or from any node that knows it, answering a query.
    /// A participant logs a COMMIT and keeps the keys locked; it applies the commit only once
    /// it is visible.
    Decision { epoch: Epoch, txn: TxnId, decision: Decision },
    /// Participant -> coordinator: the commit is durable here (not necessarily applied).
    Ack { epoch: Epoch, txn: TxnId },
    /// Participant -> coordinator and other participants: what was decided?
    Query { epoch: Epoch, txn: TxnId },
    /// Coordinator -> participants: the commit is durable on a majority of the members, so it
    /// is visible: apply it.
    Visible { epoch: Epoch, txn: TxnId },
    /// Coordinator -> participant: the coordinator no longer holds this transaction, so it is
    /// finished: aborted, or committed and durable at every member. The answer to a query
    /// about a transaction the coordinator does not hold.
    Finished { epoch: Epoch, txn: TxnId },
    /// Coordinator -> members: the finished mark. Every transaction of the sender ordered
    /// before `below` (by incarnation, then number) is finished. Sent when the mark advances.
    FinishedBelow { epoch: Epoch, below: TxnId },
    /// Member -> every other member, every `heartbeat_interval`: the sender is alive in
    /// `epoch`, and asks for a read lease. `echo` is the latest request the sender received
    /// from the recipient: it tells the recipient the sender hears it (suspicion counts only
    /// such round trips, docs/protocol.md §7.5).
    Heartbeat { epoch: Epoch, request: LeaseRequest, echo: Option<LeaseRequest> },
    /// Member -> member, answering a heartbeat: a read lease, valid at the requester until
    /// `request.sent_at + lease_duration` on the requester's own clock. A frozen member sends none.
    LeaseGrant { epoch: Epoch, request: LeaseRequest },
    /// The agreement on the next configuration (docs/protocol.md §7.1), among the members of
    /// the message's epoch.
    Paxos(PaxosMessage),
    /// A node outside its configuration (of `epoch`, the one it installed), or one that cannot
    /// vouch for its log, asks the members to add it (docs/protocol.md §7.6), under the ticket
    /// of its present life. Members answer with the value that follows `epoch`, if they keep
    /// it, and the latest value they installed. `echo` is the latest lease request the asker
    /// received from the addressee (its heartbeats go to every node of the cluster): a member
    /// just added counts as heard from only through it, as through a heartbeat's echo.
    JoinRequest { epoch: Epoch, ticket: JoinTicket, echo: Option<LeaseRequest> },
    /// A node started to bootstrap a new cluster (`dkv-server --init` on an empty log) asks
    /// every other node of the cluster whether it has taken part in anything yet, before it
    /// takes part itself (docs/protocol.md §7.1, "Bootstrap"). `ticket` names the asker's
    /// present life, `round` counts its queries. Of no epoch.
    BootstrapQuery { ticket: JoinTicket, round: u64 },
    /// The answer to the query `round` of the life `asked`: `clean` if the sender holds nothing
    /// (its log holds nothing but its own starts: as far as it knows the cluster is new);
    /// `asking` while the sender itself bootstraps and has not begun durably; `member` once it
    /// takes part as a member (after a bootstrap of its own, once every node had begun).
    BootstrapAnswer { asked: JoinTicket, round: u64, clean: bool, asking: bool, member: bool },
    /// A message of a vote instance (docs/protocol.md §8): casts, acceptances and recoveries of
    /// the members' votes, each its own consensus. On the wire, sent by no node yet: a node
    /// counts one and drops it.
    Votes(VoteMessage),
}

/// What a lease grant echoes back: the requester's incarnation and the time, on its own clock,
/// at which it sent the request. The lease counts from that send time, never from the grant's
/// arrival, so a grant delayed in the network cannot stretch it; the incarnation keeps a grant
/// to a request of an earlier life (whose clock may have started elsewhere) from counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub incarnation: u64,
    pub sent_at: Time,
}

impl LeaseRequest {
    /// Whether this request was sent after `other`: by a later life, or later in the same life.
    /// (A delayed request of an earlier life must not displace a later one: its clock may have
    /// started elsewhere.)
    pub fn is_later_than(&self, other: &LeaseRequest) -> bool {
        (self.incarnation, self.sent_at) > (other.incarnation, other.sent_at)
    }
}

impl Message {
    /// The transaction the message is about (for [`Message::FinishedBelow`], its mark, whose
    /// coordinator is the sender); none for heartbeats and lease grants.
    pub fn txn(&self) -> Option<TxnId> {
        match self {
            Message::Prepare { txn, .. }
            | Message::Vote { txn, .. }
            | Message::Decision { txn, .. }
            | Message::Ack { txn, .. }
            | Message::Query { txn, .. }
            | Message::Visible { txn, .. }
            | Message::Finished { txn, .. } => Some(*txn),
            Message::FinishedBelow { below, .. } => Some(*below),
            Message::Votes(message) => Some(message.instance().txn),
            Message::Heartbeat { .. }
            | Message::LeaseGrant { .. }
            | Message::Paxos(_)
            | Message::JoinRequest { .. }
            | Message::BootstrapQuery { .. }
            | Message::BootstrapAnswer { .. } => None,
        }
    }

    /// The epoch the message was sent in; none for the bootstrap's messages, which are of no
    /// epoch (a node bootstrapping has none yet) and are taken before any epoch check.
    pub fn epoch(&self) -> Option<Epoch> {
        Some(match self {
            Message::Prepare { epoch, .. }
            | Message::Vote { epoch, .. }
            | Message::Decision { epoch, .. }
            | Message::Ack { epoch, .. }
            | Message::Query { epoch, .. }
            | Message::Visible { epoch, .. }
            | Message::Finished { epoch, .. }
            | Message::FinishedBelow { epoch, .. }
            | Message::Heartbeat { epoch, .. }
            | Message::LeaseGrant { epoch, .. } => *epoch,
            Message::Paxos(message) => message.epoch(),
            Message::JoinRequest { epoch, .. } => *epoch,
            Message::Votes(message) => message.instance().epoch,
            Message::BootstrapQuery { .. } | Message::BootstrapAnswer { .. } => return None,
        })
    }

    /// A short name for traces and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Vote { vote: Vote::Yes, .. } => "vote-yes",
            Message::Vote { vote: Vote::YesPinned, .. } => "vote-yes-pinned",
            Message::Vote { vote: Vote::No(_), .. } => "vote-no",
            Message::Decision { decision: Decision::Commit, .. } => "commit",
            Message::Decision { decision: Decision::Abort, .. } => "abort",
            Message::Ack { .. } => "ack",
            Message::Query { .. } => "query",
            Message::Visible { .. } => "visible",
            Message::Finished { .. } => "finished",
            Message::FinishedBelow { .. } => "finished-below",
            Message::Heartbeat { .. } => "heartbeat",
            Message::LeaseGrant { .. } => "lease-grant",
            Message::Paxos(_) => "paxos",
            Message::JoinRequest { .. } => "join-request",
            Message::BootstrapQuery { .. } => "bootstrap-query",
            Message::BootstrapAnswer { clean: true, .. } => "bootstrap-answer-clean",
            Message::BootstrapAnswer { clean: false, .. } => "bootstrap-answer-not-clean",
            Message::Votes(message) => message.kind(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vote {
    /// The keys are locked and the PREPARE record is durable. (Whether the ops can run is
    /// decided under those locks at commit and is the same at every participant: it becomes
    /// the outcome the commit records.)
    Yes,
    No(NoReason),
    /// YES from a node with configuration changes off (docs/protocol.md §7.2, "Visible on
    /// every YES"): as `Yes`, and the share is *pinned*: the node takes part in no
    /// configuration agreement, so no settlement will ever decide this share and only its
    /// coordinator's decision releases it. A commit whose every YES is pinned may be made
    /// visible at once. (Appended last, so earlier variants keep their encoding.)
    YesPinned,
}

impl Vote {
    /// Whether this is a YES, pinned or not.
    pub fn is_yes(&self) -> bool {
        matches!(self, Vote::Yes | Vote::YesPinned)
    }
}

/// Why a participant voted NO. Nothing is locked or persisted for a NO vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoReason {
    /// A key is locked by another transaction.
    Conflict,
    /// The same client request is prepared here under another transaction.
    InProgress,
    /// The request already completed (this is a retry of it), with this outcome.
    AlreadyCompleted(Completed),
    /// A later request of the same client already committed.
    Stale { completed_seq: u64 },
    /// The participant holds as many prepared transactions as it may.
    Busy,
    /// The participant's configuration differs from the coordinator's: another set of members,
    /// or smaller limits (a `-u` node among `-t` nodes). Retrying will not help.
    ConfigMismatch,
    /// The transaction is known here to have aborted: the answer to a PREPARE that a
    /// restarted coordinator sends again to learn what became of its transaction.
    Aborted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Decision {
    Commit,
    Abort,
}
