//! An arbitrary sequence of inputs into a small cluster of cores: client requests, deliveries,
//! drops and duplicates of real messages, forged and malformed peer messages, durability
//! reports in any order, timeouts, crashes and restarts. No input may panic a node, and every
//! node's invariants hold after every step.
#![no_main]

use arbitrary::Arbitrary;
use dkv_core::record::TxnRecord;
use dkv_core::*;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const NODES: usize = 3;

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Get(u8),
    Put(u8, u8),
    Update(u8, u8),
    Delete(u8),
    Txn(Vec<(u8, u8, u8)>),
    Scan { start: u8, end: Option<u8>, limit: u8, keys_only: bool },
}

#[derive(Arbitrary, Debug)]
enum FuzzMessage {
    Prepare { ops: Vec<(u8, u8, u8)>, participants: u8 },
    Vote { yes: bool, reason: u8 },
    Decision { commit: bool },
    Ack,
    Query,
    /// A heartbeat or a lease grant, of any epoch, echoing any incarnation and send time.
    Heartbeat { grant: bool, epoch: u8, incarnation: u8, sent_at_ms: u32 },
    /// A bootstrap query or answer (docs/protocol.md §7.1), of any ticket: a member answers the
    /// one and drops the other.
    Bootstrap { answer: bool, clean: bool, ticket: u8 },
    /// A message of a vote instance (docs/protocol.md §8), of any kind, owner and ballots.
    Votes { kind: u8, yes: bool, owner: u8, round: u8, life: u8, node: u8, other_round: u8 },
}

#[derive(Arbitrary, Debug)]
enum Action {
    Request {
        node: u8,
        client: u8,
        seq: u8,
        op: FuzzOp,
    },
    Deliver {
        pick: u16,
    },
    Drop {
        pick: u16,
    },
    Duplicate {
        pick: u16,
    },
    Forge {
        node: u8,
        from: u8,
        coordinator: u8,
        incarnation: u8,
        number: u8,
        client: u8,
        seq: u8,
        message: FuzzMessage,
    },
    Durable {
        node: u8,
        upto: u16,
    },
    Advance {
        millis: u16,
    },
    Crash {
        node: u8,
    },
    Restart {
        node: u8,
    },
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', k % 8]
}

/// Every kind of op; values are single bytes, digits among them, so counters count.
fn write_op(kind: u8, k: u8, v: u8) -> TxnOp {
    let key = key(k);
    match kind % 14 {
        0 => TxnOp::Put { key, value: vec![v] },
        1 => TxnOp::Update { key, value: vec![v] },
        2 => TxnOp::Delete { key },
        3 => TxnOp::Increment { key, by: i64::from(v as i8) },
        4 => TxnOp::Increment { key, by: if v % 2 == 0 { i64::MAX } else { i64::MIN } },
        5 => TxnOp::Append { key, value: vec![v] },
        6 => TxnOp::GetSet { key, value: vec![v] },
        7 => TxnOp::GetDelete { key },
        8 => TxnOp::Read { key },
        9 => TxnOp::Require { key, condition: if v % 2 == 0 { Condition::Exists } else { Condition::Absent } },
        10 => TxnOp::Require { key, condition: Condition::ValueEquals(vec![v]) },
        11 => TxnOp::Exists { key },
        12 => TxnOp::DeleteIfPresent { key },
        _ => TxnOp::Require { key, condition: Condition::VersionEquals(u64::from(v % 4)) },
    }
}

fn operation(op: FuzzOp) -> Operation {
    let ops = match op {
        FuzzOp::Get(k) => return Operation::Get { key: key(k) },
        FuzzOp::Scan { start, end, limit, keys_only } => {
            return Operation::Scan { start: key(start), end: end.map(key), limit: u32::from(limit), keys_only };
        }
        FuzzOp::Put(k, v) => vec![write_op(0, k, v)],
        FuzzOp::Update(k, v) => vec![write_op(1, k, v)],
        FuzzOp::Delete(k) => vec![write_op(2, k, 0)],
        FuzzOp::Txn(ops) => ops.into_iter().take(6).map(|(kind, k, v)| write_op(kind, k, v)).collect(),
    };
    Operation::Txn { ops }
}

fn no_reason(r: u8) -> NoReason {
    match r % 6 {
        0 => NoReason::Conflict,
        1 => NoReason::InProgress,
        2 => NoReason::AlreadyCompleted(completions::Completed::Committed(Vec::new())),
        3 => NoReason::AlreadyCompleted(completions::Completed::Failed(dkv_core::OpFailure { op_index: u32::from(r), reason: dkv_core::FailReason::KeyNotFound })),
        4 => NoReason::Stale { completed_seq: u64::from(r) },
        _ => NoReason::Busy,
    }
}

struct Member {
    config: Config,
    node: Option<Node>,
    durable: Vec<Record>,
    pending: Vec<(Lsn, Record)>,
    /// The last durability report given to the node.
    reported: Lsn,
}

struct Cluster {
    now: Time,
    members: Vec<Member>,
    in_flight: Vec<(NodeId, NodeId, Message)>,
}

impl Cluster {
    fn drain(&mut self, i: usize) {
        let m = &mut self.members[i];
        let Some(node) = m.node.as_mut() else { return };
        let from = node.id();
        while let Some(output) = node.poll_output() {
            match output {
                Output::Send { to, message } => {
                    assert!(usize::from(to.0) < NODES && to != from, "{from} sent {message:?} to non-member {to}");
                    if self.in_flight.len() < 10_000 {
                        self.in_flight.push((from, to, message));
                    }
                }
                // A catch-up is a state transfer the runtime carries out: not modelled here (the
                // node asks again if nothing comes of it).
                Output::Reply { .. } | Output::CatchUp { .. } => {}
                Output::Persist { lsn, record, .. } => m.pending.push((lsn, record)),
            }
        }
        node.check_invariants().expect("invariants hold after every input");
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        if let Some(node) = self.members[i].node.as_mut() {
            node.handle(now, input);
            self.drain(i);
        }
    }

    fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        let node = Node::start(m.config.clone(), m.durable.clone(), self.now).expect("a log this node wrote recovers");
        m.node = Some(node);
        self.drain(i);
    }
}

fuzz_target!(|actions: Vec<Action>| {
    let members = NodeSet::first(NODES);
    let mut cluster = Cluster {
        now: Time::from_nanos(1),
        members: (0..NODES)
            .map(|i| Member {
                // Heartbeats and read leases on: their messages, grants, timers and the wait
                // before the first YES are inputs like any other.
                config: {
                    let mut config = Config::new(NodeId(i as u8), members);
                    config.timing.leases = true;
                    config
                },
                node: None,
                durable: vec![],
                pending: vec![],
                reported: Lsn(0),
            })
            .collect(),
        in_flight: Vec::new(),
    };
    for i in 0..NODES {
        cluster.restart(i);
    }
    for action in actions.into_iter().take(500) {
        match action {
            Action::Request { node, client, seq, op } => {
                let request = Request {
                    id: RequestId { client: ClientId(u64::from(client % 4)), seq: u64::from(seq) },
                    operation: operation(op),
                };
                cluster.input(usize::from(node) % NODES, Input::Request { reply_to: ReplyTo(0), request });
            }
            Action::Deliver { pick } | Action::Drop { pick } | Action::Duplicate { pick }
                if cluster.in_flight.is_empty() =>
            {
                let _ = pick;
            }
            Action::Deliver { pick } => {
                let (from, to, message) = cluster.in_flight.swap_remove(usize::from(pick) % cluster.in_flight.len());
                cluster.input(usize::from(to.0), Input::Message { from, message });
            }
            Action::Drop { pick } => {
                cluster.in_flight.swap_remove(usize::from(pick) % cluster.in_flight.len());
            }
            Action::Duplicate { pick } => {
                let copy = cluster.in_flight[usize::from(pick) % cluster.in_flight.len()].clone();
                if cluster.in_flight.len() < 10_000 {
                    cluster.in_flight.push(copy);
                }
            }
            Action::Forge { node, from, coordinator, incarnation, number, client, seq, message } => {
                // Forged messages may name any node, member or not.
                let txn = TxnId {
                    coordinator: NodeId(coordinator % 5),
                    incarnation: u64::from(incarnation % 4),
                    number: u64::from(number % 8),
                };
                let request = RequestId { client: ClientId(u64::from(client % 4)), seq: u64::from(seq) };
                let message = match message {
                    FuzzMessage::Prepare { ops, participants } => {
                        let ops: Vec<TxnOp> =
                            ops.into_iter().take(6).map(|(kind, k, v)| write_op(kind, k, v)).collect();
                        let record = TxnRecord {
                            txn,
                            request,
                            ops: ops.into(),
                            participants: NodeSet::first(usize::from(participants % 5)),
                        };
                        Message::Prepare { epoch: Epoch::FIRST, txn, request, ops: record.ops, participants: record.participants, round: txn.incarnation }
                    }
                    FuzzMessage::Vote { yes, reason } => {
                        // A YES, pinned or not (the nodes here run with changes off and pin
                        // theirs; a forged plain one must keep the copies rule).
                        let vote = match (yes, reason % 2) {
                            (true, 0) => Vote::YesPinned,
                            (true, _) => Vote::Yes,
                            (false, _) => Vote::No(no_reason(reason)),
                        };
                        Message::Vote { epoch: Epoch::FIRST, txn, vote, round: txn.incarnation }
                    }
                    FuzzMessage::Decision { commit } => {
                        Message::Decision { epoch: Epoch::FIRST, txn, decision: if commit { Decision::Commit } else { Decision::Abort } }
                    }
                    FuzzMessage::Ack => Message::Ack { epoch: Epoch::FIRST, txn },
                    FuzzMessage::Query => Message::Query { epoch: Epoch::FIRST, txn },
                    FuzzMessage::Heartbeat { grant, epoch, incarnation, sent_at_ms } => {
                        let epoch = configuration::Epoch(u64::from(epoch % 3));
                        let sent_at = Time::from_nanos(u64::from(sent_at_ms) * 1_000_000);
                        let request = LeaseRequest { incarnation: u64::from(incarnation % 4), sent_at };
                        // A heartbeat echoes the same request back: round trips of the node's own
                        // requests and of strangers' alike.
                        if grant { Message::LeaseGrant { epoch, request } } else { Message::Heartbeat { epoch, request, echo: Some(request) } }
                    }
                    FuzzMessage::Bootstrap { answer, clean, ticket } => {
                        let ticket = configuration::JoinTicket(u64::from(ticket));
                        let round = u64::from(ticket.0 % 3);
                        if answer { Message::BootstrapAnswer { asked: ticket, round, clean, asking: !clean, member: round == 2 } } else { Message::BootstrapQuery { ticket, round } }
                    }
                    FuzzMessage::Votes { kind, yes, owner, round, life, node, other_round } => {
                        use dkv_core::votes::{VoteBallot, VoteInstance, VoteMessage, VoteValue};
                        let instance = VoteInstance { epoch: Epoch::FIRST, txn, owner: NodeId(owner % 5) };
                        let ballot = VoteBallot { round: u64::from(round % 4), life: u64::from(life % 4), node: NodeId(node % 5) };
                        let other = VoteBallot { round: u64::from(other_round % 4), ..ballot };
                        let value = if yes { VoteValue::Yes } else { VoteValue::No };
                        Message::Votes(match kind % 6 {
                            0 => VoteMessage::Cast { instance, ballot, value },
                            1 => VoteMessage::Accepted { instance, ballot, value },
                            2 => VoteMessage::PromiseRequest { instance, ballot },
                            3 => VoteMessage::Promise { instance, ballot, accepted: Some((other, value)) },
                            4 => VoteMessage::Outbid { instance, ballot, promised: other },
                            _ => VoteMessage::AcceptRequest { instance, ballot, value },
                        })
                    }
                };
                cluster.input(usize::from(node) % NODES, Input::Message { from: NodeId(from % 5), message });
            }
            Action::Durable { node, upto } => {
                // Durability reports in any order, for any prefix of what was written; and
                // now and then a repeated or stale one, as a driver may send late.
                let i = usize::from(node) % NODES;
                let m = &mut cluster.members[i];
                if upto >= 0xf000 || m.pending.is_empty() {
                    let stale = Lsn(m.reported.0.saturating_sub(u64::from(upto & 1)));
                    if m.node.is_some() {
                        cluster.input(i, Input::Durable { through: stale });
                    }
                    continue;
                }
                let Some(&(first, _)) = m.pending.first() else { continue };
                let last = m.pending.last().map(|(lsn, _)| lsn.0).unwrap_or(first.0);
                let through = Lsn(first.0 + u64::from(upto) % (last - first.0 + 1));
                let n = m.pending.iter().take_while(|(lsn, _)| *lsn <= through).count();
                for (_, record) in m.pending.drain(..n) {
                    compaction::push_durable(&mut m.durable, record);
                }
                m.reported = through;
                cluster.input(i, Input::Durable { through });
            }
            Action::Advance { millis } => {
                cluster.now = cluster.now + Duration::from_millis(u64::from(millis));
                for i in 0..NODES {
                    cluster.input(i, Input::Timeout);
                }
            }
            Action::Crash { node } => {
                let m = &mut cluster.members[usize::from(node) % NODES];
                m.node = None;
                m.pending.clear();
                m.reported = Lsn(0);
            }
            Action::Restart { node } => {
                let i = usize::from(node) % NODES;
                if cluster.members[i].node.is_none() {
                    cluster.restart(i);
                }
            }
        }
    }
});
