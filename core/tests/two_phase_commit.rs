//! Two-phase commit on a perfect network and with targeted message loss: commit, abort,
//! multi-key atomicity, persist-before-send, retransmission, presumed abort, cooperative
//! termination and conflict handling.

mod harness;
use dkv_core::{Decision, Epoch, FailReason, Message, NodeSet, OpFailure, Outcome, Record, TryAgainReason, Vote};
use harness::*;
use std::time::Duration;

/// A cluster with configuration changes on (leases on), past the start's wait (no YES before
/// it, docs/protocol.md §7.5): with five nodes, a commit becomes visible only once its decision
/// is durable on a majority. (With changes off, the default here, and with three nodes all
/// members, every YES makes it visible, §7.2.)
fn changes_on(size: usize) -> Cluster {
    let mut c = Cluster::with_config(size, |cfg| cfg.timing.leases = true);
    let past_wait = c.now + c.configs[0].timing.lease_wait();
    assert!(c.run_until(100_000, |c| c.now >= past_wait), "the cluster runs past its start");
    c.deliver_all();
    c
}

/// A put at any node is applied on every node and acknowledged as committed.
#[test]
fn write_commits_on_every_node() {
    let mut c = Cluster::new(3);
    let r = c.request(1, txn(1, 1, vec![put("k", "v")]));
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "node {i}");
    }
}

/// An update of a missing key fails, says which op could not run, and changes nothing anywhere
/// (two-phase commit committed it as a no-op).
#[test]
fn update_of_missing_key_fails_and_changes_nothing_anywhere() {
    let mut c = Cluster::new(3);
    let r = c.request(0, txn(1, 1, vec![update("missing", "v")]));
    assert!(c.settle());
    assert_eq!(
        c.reply(r).unwrap().outcome,
        Outcome::Failed(OpFailure { op_index: 0, reason: FailReason::KeyNotFound })
    );
    for i in 0..3 {
        assert_eq!(c.node(i).store().len(), 0);
        assert_eq!(c.node(i).locked_keys(), 0);
    }
}

/// A multi-key transaction applies all of its ops on every node, or none of them when a
/// later op fails: the failing op is named.
#[test]
fn multi_key_transaction_is_all_or_nothing() {
    let mut c = Cluster::new(3);
    let r = c.request(0, txn(1, 1, vec![put("a", "1"), put("b", "2")]));
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));

    let r = c.request(2, txn(1, 2, vec![update("a", "10"), delete("b"), update("zz", "x")]));
    assert!(c.settle());
    assert_eq!(
        c.reply(r).unwrap().outcome,
        Outcome::Failed(OpFailure { op_index: 2, reason: FailReason::KeyNotFound })
    );
    for i in 0..3 {
        assert_eq!(c.value(i, "a"), Some(b"1".to_vec()));
        assert_eq!(c.value(i, "b"), Some(b"2".to_vec()));
    }

    let r = c.request(2, txn(1, 3, vec![update("a", "10"), delete("b"), put("b", "3"), delete("a")]));
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    for i in 0..3 {
        assert_eq!(c.value(i, "a"), None);
        assert_eq!(c.value(i, "b"), Some(b"3".to_vec()));
    }
}

/// Ops inside one transaction see the earlier ops: delete then update of the same key fails.
#[test]
fn ops_in_a_transaction_see_earlier_ops() {
    let mut c = Cluster::new(2);
    let r = c.request(0, txn(1, 1, vec![put("k", "1"), update("k", "2")]));
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    assert_eq!(c.value(1, "k"), Some(b"2".to_vec()));
    let r = c.request(0, txn(1, 2, vec![delete("k"), update("k", "3")]));
    assert!(c.settle());
    assert_eq!(
        c.reply(r).unwrap().outcome,
        Outcome::Failed(OpFailure { op_index: 1, reason: FailReason::KeyNotFound })
    );
}

/// A participant votes YES only after its PREPARE record is durable.
#[test]
fn participant_votes_yes_only_after_prepare_is_durable() {
    let mut c = Cluster::new(2);
    c.auto_durable = false;
    c.make_durable(0);
    c.make_durable(1);
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all(); // PREPARE reaches node 1
    assert!(matches!(c.disks[1].pending.last(), Some((_, Record::PreparedInEpoch { .. }))));
    let votes =
        c.delivered.iter().chain(c.network.iter()).filter(|(_, _, m)| matches!(m, Message::Vote { .. })).count();
    assert_eq!(votes, 0, "no vote before the PREPARE record is durable");
    c.make_durable(1);
    assert!(c.network.iter().any(|(_, _, m)| matches!(m, Message::Vote { vote, .. } if vote.is_yes())));
}

/// The coordinator decides only once its own share is durable too; it logs the decision and
/// sends COMMIT at once; nothing is applied or answered until the decision is durable on a
/// majority; participants log the commit and acknowledge without applying, and apply on
/// `Visible`.
#[test]
fn a_commit_is_visible_only_once_durable_on_a_majority() {
    let mut c = changes_on(5);
    c.auto_durable = false;
    (0..5).for_each(|i| c.make_durable(i));
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(matches!(c.disks[0].pending.last(), Some((_, Record::PreparedInEpoch { .. }))), "own share logged");
    c.deliver_all();
    (1..5).for_each(|i| c.make_durable(i));
    c.deliver_all(); // every YES at the coordinator, whose own share is not durable yet
    assert!(!c.network.iter().any(|(_, _, m)| matches!(m, Message::Decision { .. })), "no decision yet");
    c.make_durable(0); // own share durable: decides, logs and sends COMMIT at once
    assert!(matches!(c.disks[0].pending.last(), Some((_, Record::CommitDecided { .. }))));
    assert!(c.network.iter().any(|(_, _, m)| matches!(m, Message::Decision { decision: Decision::Commit, .. })));
    c.make_durable(0); // durable at the coordinator alone: one of five
    assert!(c.reply(r).is_none(), "no reply before a majority holds the decision");
    assert_eq!(c.value(0, "k"), None);
    c.deliver_all(); // COMMIT reaches the participants, which log it
    assert!(matches!(c.disks[1].pending.last(), Some((_, Record::CommitLearned { .. }))));
    assert_eq!(c.value(1, "k"), None, "a participant does not apply at COMMIT");
    assert_eq!(c.node(1).locked_keys(), 1);
    c.make_durable(1);
    c.deliver_all(); // node 1's ack: two of five
    assert!(c.reply(r).is_none(), "two copies of five are no majority");
    c.make_durable(2);
    c.deliver_all(); // node 2's ack: three of five
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    assert_eq!(c.value(0, "k"), Some(b"v".to_vec()));
    assert_eq!(c.value(1, "k"), Some(b"v".to_vec()), "applied on Visible");
    assert_eq!(c.value(3, "k"), Some(b"v".to_vec()), "applied on Visible, before its own record is durable");
    assert_eq!(c.node(0).coordinating_count(), 1, "not finished: nodes 3 and 4 have not acknowledged");
    (3..5).for_each(|i| c.make_durable(i));
    c.deliver_all();
    assert_eq!(c.node(0).coordinating_count(), 0, "finished");
    assert_eq!(c.node(1).commit_memory().count(), 1, "node 1 remembers it until the finished mark");
    c.auto_durable = true;
    assert!(c.run_until(1_000, |c| c.node(1).commit_memory().count() == 0), "the finished mark frees it");
    assert_eq!(c.node(0).commit_memory().count(), 0);
}

/// With configuration changes off (the default), the coordinator decides once its own share
/// is durable too, and the commit is visible at once: the client is answered and the write
/// applied while the decision is still on its way to disk, and `Visible` (no COMMIT) tells the
/// participants, which apply it before their own record of it is durable. That record and the
/// decision are logged lazily: only finishing waits on them (docs/protocol.md §7.2).
#[test]
fn with_changes_off_a_commit_is_visible_once_every_share_is_durable() {
    visible_once_every_share_is_durable(Cluster::durable_by_hand(3));
}

/// So it is with changes on, in a configuration of the three nodes of a three-node cluster
/// (docs/protocol.md §7.2, "Visible on every YES with changes on"): a settlement infers such a
/// commit from the shares (§7.4).
#[test]
fn with_changes_on_and_three_nodes_a_commit_is_visible_once_every_share_is_durable() {
    let mut c = changes_on(3);
    c.auto_durable = false;
    (0..3).for_each(|i| c.make_durable(i));
    visible_once_every_share_is_durable(c);
}

fn visible_once_every_share_is_durable(mut c: Cluster) {
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    c.make_durable(1);
    c.make_durable(2);
    c.deliver_all(); // every remote YES, the coordinator's own share not durable yet
    assert!(c.reply(r).is_none(), "not before the coordinator's own share is durable");
    assert_eq!(c.value(0, "k"), None);
    c.make_durable(0); // own share durable: every YES is in
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)), "answered at once");
    assert_eq!(c.value(0, "k"), Some(b"v".to_vec()));
    assert!(c.disks[0].pending.iter().any(|(_, rec)| matches!(rec, Record::CommitDecided { .. })), "not durable yet");
    assert!(c.network.iter().all(|(_, _, m)| !matches!(m, Message::Decision { .. })), "no COMMIT");
    assert_eq!(c.network.iter().filter(|(_, _, m)| matches!(m, Message::Visible { .. })).count(), 2);
    c.deliver_all();
    for i in 1..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "node {i} applied it on Visible");
        assert!(matches!(c.disks[i].pending.last(), Some((_, Record::Committed { .. }))), "its records not durable");
    }
    assert_eq!(c.node(0).coordinating_count(), 1, "not finished: nobody acknowledged");
    (0..3).for_each(|i| c.make_durable(i));
    c.deliver_all();
    assert_eq!(c.node(0).coordinating_count(), 0, "finished once every participant holds it durably");
}

/// The fast path needs every YES pinned: a YES from a node with changes on (a cluster whose
/// nodes were started in different modes) keeps the copies rule, since that node may report
/// the share to a settlement. Node 1's pinned YES is rewritten here into the plain YES such a
/// node sends.
#[test]
fn a_yes_not_pinned_keeps_the_copies_rule() {
    let mut c = Cluster::durable_by_hand(3);
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    (0..3).for_each(|i| c.make_durable(i));
    for (from, _, m) in c.network.iter_mut() {
        if let Message::Vote { vote, .. } = m
            && from.0 == 1
        {
            assert_eq!(*vote, Vote::YesPinned, "a node with changes off pins its share");
            *vote = Vote::Yes;
        }
    }
    c.deliver_all();
    assert!(c.reply(r).is_none(), "not visible on the votes alone");
    assert_eq!(c.value(0, "k"), None);
    let commit = |m: &Message| matches!(m, Message::Decision { decision: Decision::Commit, .. });
    assert!(c.delivered.iter().any(|(_, _, m)| commit(m)), "COMMIT sent, not Visible");
    c.make_durable(0);
    c.deliver_all();
    assert!(c.reply(r).is_none(), "the coordinator's copy alone is not a majority");
    c.make_durable(1);
    c.deliver_all();
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)), "visible on two copies of three");
}

/// A node with configuration changes off promises and accepts nothing: its shares are pinned,
/// and a promise would report them to a settlement (docs/protocol.md §7.2). It stays unfrozen
/// and its prepared share keeps its vote.
#[test]
fn a_node_with_changes_off_takes_no_part_in_an_agreement() {
    use dkv_core::configuration::{Ballot, PaxosMessage, Value};
    use dkv_core::{Configuration, NodeId};
    let mut c = Cluster::new(3);
    c.auto_durable = false;
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_if = Box::new(|_, to, m| to.0 == 1 && matches!(m, Message::Prepare { .. }));
    c.deliver_all();
    let dropped = c.node(1).stats().messages_dropped;
    let ballot = Ballot { round: 1, node: NodeId(2) };
    for message in [
        PaxosMessage::PromiseRequest { epoch: Epoch(1), ballot },
        PaxosMessage::AcceptRequest {
            epoch: Epoch(1),
            ballot,
            value: Value {
                configuration: Configuration { epoch: Epoch(2), members: c.configs[0].members },
                settlement: Default::default(),
                joining: Default::default(),
            },
        },
    ] {
        c.network.push_back((NodeId(2), NodeId(1), Message::Paxos(message)));
    }
    c.deliver_if = Box::new(|_, _, _| true);
    c.step();
    c.step();
    assert!(!c.node(1).is_frozen());
    assert_eq!(c.node(1).stats().messages_dropped, dropped + 2, "both requests dropped");
    assert!(c.network.iter().all(|(_, _, m)| !matches!(m, Message::Paxos(_))), "no promise, no acceptance");
    c.make_durable(1);
    assert!(c.network.iter().any(|(_, _, m)| matches!(m, Message::Vote { vote: Vote::YesPinned, .. })), "it votes");
}

/// A message of another epoch is counted and dropped.
#[test]
fn a_message_of_another_epoch_is_dropped() {
    use dkv_core::{ClientId, Input, NodeId, RequestId, TxnId};
    let mut c = Cluster::new(2);
    let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number: 1 };
    let prepare = |epoch| Message::Prepare {
        epoch,
        txn,
        request: RequestId { client: ClientId(1), seq: 1 },
        ops: vec![put("k", "v")].into(),
        participants: NodeSet::first(2),
        round: 1,
    };
    let now = c.now;
    c.nodes[0].as_mut().unwrap().handle(now, Input::Message { from: NodeId(1), message: prepare(Epoch(2)) });
    c.drain(0);
    assert_eq!(c.node(0).stats().epoch_mismatches, 1);
    assert_eq!(c.node(0).prepared_count(), 0);
    c.nodes[0].as_mut().unwrap().handle(now, Input::Message { from: NodeId(1), message: prepare(Epoch::FIRST) });
    c.drain(0);
    assert_eq!(c.node(0).prepared_count(), 1);
    assert_eq!(c.node(0).configuration().epoch, Epoch::FIRST);
}

/// Lost PREPAREs, votes, COMMITs and acks are retransmitted until the transaction completes.
#[test]
fn lost_messages_are_retransmitted_until_answered() {
    let mut c = Cluster::new(3);
    let mut dropped = std::collections::BTreeMap::<&'static str, u32>::new();
    c.deliver_if = Box::new(move |_, _, m| {
        // Lose the first two messages of every kind.
        let n = dropped.entry(m.kind()).or_default();
        *n += 1;
        *n > 2
    });
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()));
    }
}

/// Duplicated messages are harmless: every message delivered twice still commits once.
#[test]
fn duplicated_messages_are_harmless() {
    let mut c = Cluster::new(3);
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    for _ in 0..10_000 {
        let Some(front) = c.network.front().cloned() else { break };
        c.network.push_back(front);
        c.step();
    }
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    assert_eq!(c.replies_to(r), 1);
    for i in 0..3 {
        assert_eq!(c.node(i).stats().txns_committed, 1, "node {i} applied once");
    }
}

/// A participant that never votes makes the coordinator abort after the vote timeout; the
/// client hears which node was unavailable and that it may retry, and nothing is applied.
#[test]
fn missing_vote_aborts_after_vote_timeout() {
    let mut c = Cluster::new(3);
    c.crash(2);
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(10_000, |c| c.reply(r).is_some()));
    let mut down = NodeSet::EMPTY;
    down.insert(dkv_core::NodeId(2));
    assert_eq!(c.reply(r).unwrap().outcome, Outcome::TryAgain(TryAgainReason::Unavailable { nodes: down }));
    assert!(c.settle());
    assert_eq!(c.value(0, "k"), None);
    assert_eq!(c.value(1, "k"), None);
    assert_eq!(c.node(1).locked_keys(), 0, "the participant learned the abort and released");
}

/// Presumed abort: a participant whose coordinator crashed before deciding asks it after its
/// restart, is told "finished" (the coordinator holds no record of it: its own share was never
/// durable, so it never decided), and releases its locks.
#[test]
fn coordinator_without_record_answers_finished() {
    let mut c = Cluster::new(3);
    // Votes never reach the coordinator, which crashes undecided, its own share not durable.
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Vote { .. }));
    c.auto_durable = false;
    (0..3).for_each(|i| c.make_durable(i));
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    c.make_durable(1);
    c.make_durable(2);
    c.auto_durable = true;
    c.crash(0);
    c.deliver_if = Box::new(|_, _, _| true);
    c.network.clear();
    assert_eq!(c.node(1).locked_keys(), 1);
    c.restart(0);
    assert!(c.settle());
    assert!(c.reply(r).is_none() || !matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), None);
        assert_eq!(c.node(i).locked_keys(), 0);
    }
}

/// The coordinator crashes after its decision is durable but before any participant heard
/// it: after restart the commit is pending (locked, not applied, nobody told), it resends
/// COMMIT, and once a majority holds it every node applies the write.
#[test]
fn coordinator_crash_after_decision_recovers_and_commits() {
    let mut c = changes_on(5);
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Decision { .. }));
    let r = c.request(0, txn(1, 1, vec![put("a", "1"), put("b", "2")]));
    assert!(c.run_until(1_000, |c| c.disks[0].durable.iter().any(|r| matches!(r, Record::CommitDecided { .. }))));
    assert!(c.reply(r).is_none(), "durable on the coordinator alone: not visible");
    c.crash(0);
    c.network.clear();
    c.restart(0);
    assert_eq!(c.value(0, "a"), None, "pending after the restart: not applied");
    assert_eq!(c.node(0).locked_keys(), 2, "and locked");
    c.deliver_if = Box::new(|_, _, _| true);
    c.restart(0);
    assert!(c.settle());
    for i in 0..5 {
        assert_eq!(c.value(i, "a"), Some(b"1".to_vec()), "node {i}");
        assert_eq!(c.value(i, "b"), Some(b"2".to_vec()), "node {i}");
    }
}

/// Cooperative termination: with the coordinator down after its decision, a participant that
/// missed the COMMIT learns it from another participant that received it, and holds it
/// (durably, locked): whether it is visible only the coordinator can say.
#[test]
fn participant_learns_outcome_from_another_participant() {
    let mut c = Cluster::new(3);
    // Node 2 misses the COMMIT and the Visible from the coordinator.
    c.deliver_if = Box::new(|from, to, m| {
        !(from.0 == 0 && to.0 == 2 && matches!(m, Message::Decision { .. } | Message::Visible { .. }))
    });
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(10_000, |c| c.reply(r).is_some() && c.value(1, "k").is_some()));
    c.crash(0); // and the coordinator is gone
    c.network.clear();
    assert!(c.run_until(10_000, |c| c.node(2).commit_memory().count() == 1), "node 2 learned the commit from node 1");
    assert_eq!(c.value(2, "k"), None, "held, not applied");
    assert_eq!(c.node(2).locked_keys(), 1);
    c.deliver_if = Box::new(|_, _, _| true);
    c.restart(0);
    assert!(c.settle());
    assert_eq!(c.value(2, "k"), Some(b"v".to_vec()), "the coordinator said it is visible");
}

/// A coordinator that crashed after sending COMMIT but before its decision record was durable
/// restarts with its own share in doubt: it never presumes abort (a participant holds the
/// commit), asks every participant again and commits.
#[test]
fn a_coordinator_that_lost_its_decision_learns_it_from_a_participant() {
    let mut c = changes_on(5);
    c.auto_durable = false;
    (0..5).for_each(|i| c.make_durable(i));
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.make_durable(0); // own share durable
    c.deliver_all();
    (1..5).for_each(|i| c.make_durable(i));
    c.deliver_all(); // decided: COMMIT sent, its record not durable
    c.deliver_all(); // COMMIT reaches the participants
    c.make_durable(1); // node 1 holds the commit durably and acknowledges
    c.crash(0); // the decision record is lost
    c.network.clear();
    c.auto_durable = true;
    (2..5).for_each(|i| c.make_durable(i));
    c.network.clear();
    c.restart(0);
    assert!(c.reply(r).is_none());
    assert!(c.settle());
    for i in 0..5 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "node {i}");
        assert_eq!(c.node(i).locked_keys(), 0);
    }
    assert_eq!(c.node(0).stats().conflicting_decisions, 0);
}

/// Cooperative termination asks the coordinator first, alone (it knows the outcome unless it
/// lost it); only when it does not answer are the other participants asked too.
#[test]
fn prepared_participant_asks_the_coordinator_before_the_others() {
    let mut c = Cluster::new(3);
    let queries = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = queries.clone();
    // Node 2 prepares but never hears an outcome, and nobody hears its queries.
    c.deliver_if = Box::new(move |from, to, m| match m {
        Message::Query { .. } => {
            if from.0 == 2 {
                seen.borrow_mut().push(to.0);
            }
            false
        }
        Message::Vote { .. } => false,
        Message::Decision { .. } => to.0 != 2,
        _ => true,
    });
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(10_000, |_| queries.borrow().len() >= 3));
    let sent = queries.borrow();
    // The first round: the coordinator alone. The second: the coordinator, then node 1.
    assert_eq!(sent[..3], [0, 0, 1], "queries by destination, in order");
    assert_eq!(c.node(2).prepared_count(), 1);
}

/// A prepared participant never releases its locks by guessing: with the coordinator and every
/// other participant silent, it keeps the locks (and keeps asking) however long it waits.
#[test]
fn prepared_participant_keeps_locks_until_it_learns_the_outcome() {
    let mut c = Cluster::new(3);
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Vote { .. }));
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    c.crash(0);
    c.crash(2);
    c.network.clear();
    for _ in 0..200 {
        c.step();
        c.network.clear();
    }
    assert!(c.now.saturating_since(dkv_core::Time::ZERO) > Duration::from_secs(60));
    assert_eq!(c.node(1).locked_keys(), 1);
    assert_eq!(c.node(1).prepared_count(), 1);
}

/// Contending writers on the same keys all finish: conflicts are retried with randomized
/// backoff, so there is neither deadlock nor livelock, and every write is applied once.
#[test]
fn contending_writers_all_commit_without_deadlock() {
    let mut c = Cluster::new(3);
    let mut replies = Vec::new();
    for client in 0..12u64 {
        let node = (client % 3) as usize;
        replies.push(c.request(node, txn(client, 1, vec![put("x", "v"), put("y", &client.to_string())])));
    }
    assert!(c.settle());
    for r in replies {
        assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    }
    let total: u64 = (0..3).map(|i| c.node(i).stats().conflict_retries).sum();
    assert!(total > 0, "the scenario produced conflicts");
    let y = c.value(0, "y");
    for i in 1..3 {
        assert_eq!(c.value(i, "y"), y, "replicas agree");
    }
    // Applied once each: every node committed exactly the 12 transactions (a write applied
    // twice would count twice), and each client's request completed exactly once.
    for i in 0..3 {
        assert_eq!(c.node(i).stats().txns_committed, 12, "node {i}");
        let completed: Vec<_> = c.node(i).completions().map(|r| (r.request.client.0, r.request.seq)).collect();
        assert_eq!(completed.len(), 12, "node {i}: one completion per client");
        assert!(completed.iter().all(|&(_, seq)| seq == 1), "node {i}: {completed:?}");
    }
}

/// A one-node cluster commits on its own.
#[test]
fn single_node_cluster_commits() {
    let mut c = Cluster::new(1);
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
    assert_eq!(c.value(0, "k"), Some(b"v".to_vec()));
}

/// A node started with a different member list cannot make a write that skips a member: the
/// participants refuse its PREPARE, the client hears which node is configured differently, and
/// nothing is applied anywhere. (Found in review: before, node 0 with members {0,1} committed a
/// write that node 2 never saw.)
#[test]
fn membership_mismatch_is_refused_not_silently_diverging() {
    use dkv_core::NodeId;
    let mut c = Cluster::with_config(3, |cfg| {
        if cfg.id == NodeId(0) {
            cfg.members = NodeSet::first(2);
        }
    });
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.settle());
    assert_eq!(c.reply(r).unwrap().outcome, Outcome::TryAgain(TryAgainReason::ConfigMismatch { node: NodeId(1) }));
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), None, "node {i}");
    }
    assert_eq!(c.node(1).stats().config_mismatches, 1);
}

/// A PREPARE that reuses a prepared transaction's id with other contents (a coordinator whose
/// log was replaced by an older copy) is never voted on.
#[test]
fn reused_transaction_id_with_other_contents_gets_no_vote() {
    use dkv_core::{ClientId, Input, NodeId, RequestId, Time, TxnId};
    let mut c = Cluster::new(3);
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Vote { .. }));
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    let txn_id = TxnId { coordinator: NodeId(0), incarnation: c.node(0).incarnation(), number: 0 };
    // Another request, other ops; the same request, other ops; another request, the same ops.
    let impostors = [(9, "other"), (1, "other"), (9, "v")];
    for (i, (client, value)) in impostors.into_iter().enumerate() {
        let other = Message::Prepare {
            epoch: Epoch::FIRST,
            txn: txn_id,
            request: RequestId { client: ClientId(client), seq: 1 },
            ops: vec![put("k", value)].into(),
            participants: NodeSet::first(3),
            round: 1,
        };
        c.nodes[1]
            .as_mut()
            .unwrap()
            .handle(Time::from_nanos(2_000_000), Input::Message { from: NodeId(0), message: other });
        c.drain(1);
        assert!(c.network.is_empty(), "no vote for impostor {i}");
        assert_eq!(c.node(1).stats().messages_dropped, i as u64 + 1);
    }
}

/// Forged and senseless peer messages are dropped and counted; the node keeps working.
#[test]
fn malformed_peer_messages_are_dropped_not_fatal() {
    use dkv_core::{ClientId, Input, NodeId, RequestId, Time, TxnId};
    let mut c = Cluster::new(3);
    let txn_id = TxnId { coordinator: NodeId(2), incarnation: 1, number: 7 };
    let forged = [
        // PREPARE claiming another coordinator than its sender.
        (
            NodeId(1),
            Message::Prepare {
                epoch: Epoch::FIRST,
                txn: txn_id,
                request: RequestId { client: ClientId(1), seq: 1 },
                ops: vec![put("k", "v")].into(),
                participants: NodeSet::first(3),
                round: 1,
            },
        ),
        // PREPARE with no ops.
        (
            NodeId(2),
            Message::Prepare {
                epoch: Epoch::FIRST,
                txn: txn_id,
                request: RequestId { client: ClientId(1), seq: 1 },
                ops: vec![].into(),
                participants: NodeSet::first(3),
                round: 1,
            },
        ),
        // A decision about node 0's own transaction from someone else.
        (
            NodeId(1),
            Message::Decision {
                epoch: Epoch::FIRST,
                txn: TxnId { coordinator: NodeId(0), incarnation: 1, number: 0 },
                decision: Decision::Commit,
            },
        ),
        // From a node that is not a member.
        (NodeId(9), Message::Query { epoch: Epoch::FIRST, txn: txn_id }),
        // A decision about a transaction of a coordinator that is not a member (found by the
        // node_inputs fuzz target: the node acknowledged it, to a node that does not exist).
        (
            NodeId(1),
            Message::Decision {
                epoch: Epoch::FIRST,
                txn: TxnId { coordinator: NodeId(4), incarnation: 0, number: 0 },
                decision: Decision::Commit,
            },
        ),
    ];
    for (from, message) in forged {
        c.nodes[0].as_mut().unwrap().handle(Time::from_nanos(5), Input::Message { from, message });
        c.drain(0);
    }
    assert_eq!(c.node(0).stats().messages_dropped, 5);
    assert!(c.network.is_empty(), "nothing is sent in answer to a dropped message");
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.settle());
    assert!(matches!(c.reply(r).unwrap().outcome, Outcome::Committed(_)));
}

/// A transaction has one outcome at a participant: a COMMIT arriving after it learned ABORT is
/// counted as a conflicting decision (the simulator fails any run with one) and never applied
/// or acknowledged, and an ABORT arriving after COMMIT (a late presumed-abort answer from a
/// coordinator that finished) changes nothing.
#[test]
fn a_participant_never_takes_both_decisions() {
    use dkv_core::{ClientId, Input, NodeId, RequestId, Time, TxnId};
    let mut c = Cluster::new(3);
    let now = Time::from_nanos(5);
    let deliver = |c: &mut Cluster, number: u64, decision: Option<Decision>| {
        let txn = TxnId { coordinator: NodeId(2), incarnation: 1, number };
        let message = match decision {
            None => Message::Prepare {
                epoch: Epoch::FIRST,
                txn,
                request: RequestId { client: ClientId(number), seq: 1 },
                ops: vec![put(&format!("k{number}"), "v")].into(),
                participants: NodeSet::first(3),
                round: 1,
            },
            Some(decision) => Message::Decision { epoch: Epoch::FIRST, txn, decision },
        };
        c.nodes[0].as_mut().unwrap().handle(now, Input::Message { from: NodeId(2), message });
        c.drain(0);
        std::mem::take(&mut c.network)
    };
    deliver(&mut c, 1, None);
    assert_eq!(c.node(0).prepared_count(), 1);
    deliver(&mut c, 1, Some(Decision::Abort));
    assert_eq!(c.node(0).prepared_count(), 0);
    let sent = deliver(&mut c, 1, Some(Decision::Commit));
    assert_eq!(c.node(0).stats().conflicting_decisions, 1);
    assert!(sent.is_empty(), "a commit after an abort is not acknowledged: {sent:?}");
    assert_eq!(c.value(0, "k1"), None);

    deliver(&mut c, 2, None);
    deliver(&mut c, 2, Some(Decision::Commit));
    deliver(&mut c, 2, Some(Decision::Abort));
    let txn = TxnId { coordinator: NodeId(2), incarnation: 1, number: 2 };
    let visible = Message::Visible { epoch: Epoch::FIRST, txn };
    c.nodes[0].as_mut().unwrap().handle(now, Input::Message { from: NodeId(2), message: visible });
    c.drain(0);
    assert_eq!(c.value(0, "k2"), Some(b"v".to_vec()));
    assert_eq!(c.node(0).stats().conflicting_decisions, 1);
    assert_eq!((c.node(0).stats().txns_committed, c.node(0).stats().txns_aborted), (1, 1));
    assert!(c.node(0).is_quiescent());
}

/// The commit memory is bounded: a member that remembers `commit_memory_max` unfinished commits
/// votes NO (busy), and the coordinator's finished mark frees it again.
#[test]
fn a_full_commit_memory_votes_busy_until_the_finished_mark_frees_it() {
    let mut c = Cluster::with_config(2, |cfg| {
        cfg.bounds.commit_memory_max = 1;
        cfg.timing.finished_mark_interval = Duration::from_secs(5);
    });
    let first = c.request(0, txn(1, 1, vec![put("a", "1")]));
    assert!(c.settle());
    assert!(matches!(c.reply(first).unwrap().outcome, Outcome::Committed(_)));
    assert_eq!(c.node(1).commit_memory().count(), 1, "finished, but the mark is not sent yet");
    let second = c.request(0, txn(2, 1, vec![put("b", "1")]));
    c.deliver_all();
    assert_eq!(c.reply(second).unwrap().outcome, Outcome::TryAgain(TryAgainReason::Busy));
    assert!(c.run_until(1_000, |c| c.node(1).commit_memory().count() == 0), "the mark frees it");
    let third = c.request(0, txn(2, 2, vec![put("b", "1")]));
    assert!(c.run_until(1_000, |c| c.reply(third).is_some()));
    assert!(matches!(c.reply(third).unwrap().outcome, Outcome::Committed(_)));
}

/// A participant that restarts holding a commit whose visibility it never heard keeps it
/// pending — locked, not applied — asks the coordinator, and applies it once told `Visible`.
#[test]
fn a_restarted_participant_keeps_a_held_commit_pending_until_told_it_is_visible() {
    let mut c = changes_on(5);
    c.deliver_if = Box::new(|_, to, m| !(to.0 == 2 && matches!(m, Message::Visible { .. })));
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(1_000, |c| c.reply(r).is_some()));
    assert_eq!(c.value(2, "k"), None, "node 2 holds the commit, unapplied");
    c.crash(2);
    c.network.clear();
    c.restart(2);
    assert_eq!(c.value(2, "k"), None, "pending after the restart: not applied");
    assert_eq!(c.node(2).locked_keys(), 1, "and locked");
    assert_eq!(c.node(2).commit_memory().count(), 1);
    c.deliver_if = Box::new(|_, _, _| true);
    assert!(c.run_until(1_000, |c| c.value(2, "k").is_some()), "the coordinator says it is visible");
    assert!(c.delivered.iter().any(|(from, to, m)| from.0 == 0 && to.0 == 2 && matches!(m, Message::Visible { .. })));
    assert_eq!(c.node(2).locked_keys(), 0);
}

/// A coordinator answers a query about a transaction it finished "finished" only once its
/// `Forgotten` record is durable: before, a crash would have it hold the transaction again and
/// resend COMMIT to a participant that forgot it on that answer, for ever (seen in the
/// simulator: seed 5142 with minority faults).
#[test]
fn finished_is_answered_only_once_the_forget_is_durable() {
    let mut c = Cluster::new(3);
    // Node 1's acknowledgement is held back: the transaction stays unfinished.
    c.deliver_if = Box::new(|from, _, m| !(from.0 == 1 && matches!(m, Message::Ack { .. })));
    let r = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(10_000, |c| c.reply(r).is_some()));
    assert!(matches!(c.reply(r).map(|r| &r.outcome), Some(Outcome::Committed(_))));
    c.deliver_all();
    let txn = c.delivered.iter().find_map(|(_, _, m)| match m {
        Message::Prepare { txn, .. } => Some(*txn),
        _ => None,
    });
    let txn = txn.expect("a PREPARE was sent");
    let epoch = Epoch::FIRST;
    let finished_to_2 = |c: &Cluster| {
        c.network.iter().any(|(from, to, m)| from.0 == 0 && to.0 == 2 && matches!(m, Message::Finished { .. }))
    };
    // The acknowledgement comes: the coordinator finishes, its `Forgotten` record not durable.
    c.deliver_if = Box::new(|_, _, _| true);
    c.auto_durable = false;
    c.network.push_back((dkv_core::NodeId(1), dkv_core::NodeId(0), Message::Ack { epoch, txn }));
    c.step();
    assert!(c.disks[0].pending.iter().any(|(_, r)| matches!(r, Record::Forgotten { .. })), "forgotten, not durable");
    c.network.push_back((dkv_core::NodeId(2), dkv_core::NodeId(0), Message::Query { epoch, txn }));
    c.step();
    assert!(!finished_to_2(&c), "\"finished\" told before the forget is durable");
    c.make_durable(0);
    c.network.push_back((dkv_core::NodeId(2), dkv_core::NodeId(0), Message::Query { epoch, txn }));
    c.step();
    assert!(finished_to_2(&c), "\"finished\" once the forget is durable");
}
