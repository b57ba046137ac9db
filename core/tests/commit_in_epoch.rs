//! Two-phase commit inside an epoch (docs/protocol.md §7.2): the rules a restarted coordinator
//! in doubt and an aborting one must keep so that a transaction has one outcome. The scenarios
//! are the ones the code review of §7.2 reproduced.

mod harness;

use dkv_core::{Epoch, Message, NoReason, NodeId, Outcome, Record, TxnId, Vote};
use harness::*;

/// The transaction of the first PREPARE sent or delivered.
fn first_txn(c: &Cluster) -> TxnId {
    let prepare = c.delivered.iter().chain(c.network.iter()).find_map(|(_, _, m)| match m {
        Message::Prepare { txn, .. } => Some(*txn),
        _ => None,
    });
    prepare.expect("a PREPARE was sent")
}

/// Every live node is idle and nothing is in flight.
fn quiet(c: &Cluster) -> bool {
    c.network.is_empty() && c.nodes.iter().flatten().all(|n| n.is_quiescent())
}

/// A vote answers one PREPARE. A NO that C sent to the coordinator's first PREPARE, delayed
/// past the YES to a resent one, and delivered after the coordinator restarted in doubt (its
/// `CommitDecided` lost), tells nothing of now: the commit was visible, and the recovering
/// coordinator must commit it again, not abort it.
#[test]
fn a_recovering_coordinator_ignores_votes_of_an_earlier_life() {
    let mut c = Cluster::new(3);
    let reply = c.request(0, txn(1, 1, vec![put("k", "v")]));
    let t = first_txn(&c);
    c.auto_durable = false; // A's CommitDecided stays on its way to disk
    c.step(); // PREPARE to B
    c.make_durable(1);
    c.step(); // PREPARE to C
    c.make_durable(2);
    c.step(); // B's YES
    c.step(); // C's YES: A decides, COMMIT leaves
    c.step(); // COMMIT to B
    c.make_durable(1);
    c.step(); // COMMIT to C
    c.make_durable(2);
    c.step(); // B's Ack
    c.step(); // C's Ack: durable on {B, C}, a majority: visible
    assert!(matches!(c.reply(reply).map(|r| &r.outcome), Some(Outcome::Committed(_))), "{:?}", c.reply(reply));
    c.deliver_all(); // Visible
    assert_eq!(c.value(1, "k"), Some(b"v".to_vec()));
    assert_eq!(c.value(2, "k"), Some(b"v".to_vec()));

    c.crash(0);
    c.network.clear();
    c.auto_durable = true;
    c.restart(0);
    // The NO(Conflict) C sent to the first life's first PREPARE, held up in the network.
    let stale = Message::Vote { epoch: Epoch::FIRST, txn: t, vote: Vote::No(NoReason::Conflict), round: t.incarnation };
    c.network.push_front((NodeId(2), NodeId(0), stale));
    assert!(c.run_until(20_000, quiet), "the cluster settles");

    for i in 0..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "node {i} holds the visible commit");
    }
    assert_eq!(c.node(0).stats().stale_votes, 1, "the stale NO is counted, not acted on");
    assert_eq!(c.node(0).stats().txns_aborted, 0);
}
