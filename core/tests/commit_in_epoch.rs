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

/// A coordinator's abort is a decision, durable before anyone hears of it. While its
/// `Aborted` record is on its way to disk the transaction is *aborting*: no ABORT leaves, a
/// query is not answered `Finished`, and the finished mark stays below it. So when a crash
/// loses that record and the restarted coordinator, in doubt, commits the transaction after
/// all, nothing its first life sent, delivered late, says otherwise.
#[test]
fn a_coordinator_abort_is_durable_before_anyone_hears_of_it() {
    let mut c = Cluster::new(3);
    // Life 1: nothing from A reaches C, so C never votes and A aborts at the vote timeout.
    c.deliver_if = Box::new(|from, to, _| !(from == NodeId(0) && to == NodeId(2)));
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    let t = first_txn(&c);
    c.deliver_all(); // B prepares and votes YES
    c.auto_durable = false;
    let aborting = |c: &Cluster| c.disks[0].pending.iter().any(|(_, r)| *r == Record::Aborted { txn: t });
    assert!(c.run_until(100_000, aborting), "A decides to abort");
    // Whatever A's first life sends about T from now on could arrive late, in life 2: what
    // it sent when it decided, and its answer to B asking while the abort is on its way to
    // disk.
    let mut late: Vec<_> =
        c.network.drain(..).filter(|(from, _, m)| *from == NodeId(0) && m.txn() == Some(t)).collect();
    c.network.push_back((NodeId(1), NodeId(0), Message::Query { epoch: Epoch::FIRST, txn: t }));
    c.step();
    late.extend(c.network.drain(..).filter(|(from, _, m)| *from == NodeId(0) && m.txn() == Some(t)));

    c.crash(0); // the Aborted record is lost
    c.network.clear();
    c.deliver_if = Box::new(|_, _, _| true);
    c.auto_durable = true;
    c.restart(0);
    let c_votes_yes = |c: &Cluster| {
        c.network
            .iter()
            .any(|(from, _, m)| *from == NodeId(2) && matches!(m, Message::Vote { vote, .. } if vote.is_yes()))
    };
    assert!(c.run_until(10_000, c_votes_yes), "C votes YES in life 2");
    for message in late.iter().cloned() {
        c.network.push_front(message);
    }
    let settled = c.run_until(20_000, quiet);

    for i in 0..3 {
        assert_eq!(c.node(i).stats().conflicting_decisions, 0, "node {i} heard two outcomes of T");
    }
    let values: Vec<_> = (0..3).map(|i| c.value(i, "k")).collect();
    assert!(values.iter().all(|v| *v == values[0]), "replicas diverge: {values:?}");
    assert!(settled, "the cluster settles");
    assert!(late.is_empty(), "A told of T before its abort was durable: {late:?}");
}

/// A COMMIT for a transaction this node never held, and that its coordinator has not finished,
/// is counted and dropped: an acknowledgement would count a durable copy with nothing on disk.
/// Once the coordinator's finished mark passed it, it is acknowledged (finished: harmless); and
/// a PREPARE below the mark (a stale one of a finished transaction) is not prepared.
#[test]
fn a_participant_acknowledges_only_commits_it_held_or_that_are_finished() {
    use dkv_core::{ClientId, Decision, Input, NodeSet, RequestId};
    let mut c = Cluster::new(3);
    let now = c.now;
    let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number: 5 };
    let deliver = |c: &mut Cluster, message: Message| {
        c.nodes[0].as_mut().unwrap().handle(now, Input::Message { from: NodeId(1), message });
        c.drain(0);
        std::mem::take(&mut c.network)
    };
    let commit = Message::Decision { epoch: Epoch::FIRST, txn, decision: Decision::Commit };
    let sent = deliver(&mut c, commit.clone());
    assert!(sent.is_empty(), "a commit never held here is not acknowledged: {sent:?}");
    assert_eq!(c.node(0).stats().commits_not_held, 1);

    let mark = TxnId { number: 6, ..txn };
    deliver(&mut c, Message::FinishedBelow { epoch: Epoch::FIRST, below: mark });
    let sent = deliver(&mut c, commit);
    assert!(
        sent.len() == 1 && matches!(sent[0], (_, _, Message::Ack { .. })),
        "a finished commit is acknowledged: {sent:?}"
    );

    let prepare = Message::Prepare {
        epoch: Epoch::FIRST,
        txn: TxnId { number: 3, ..txn },
        request: RequestId { client: ClientId(9), seq: 1 },
        ops: vec![put("k", "v")].into(),
        participants: NodeSet::first(3),
        round: 1,
    };
    let sent = deliver(&mut c, prepare);
    assert!(sent.is_empty(), "a PREPARE below the mark gets no vote: {sent:?}");
    assert_eq!(c.node(0).prepared_count(), 0, "a PREPARE below the mark is not prepared");
    assert_eq!(c.node(0).stats().prepares_below_mark, 1);

    // The mark survives a restart: replay rebuilds it from the FinishedBelow record.
    c.crash(0);
    c.restart(0);
    c.network.clear();
    let prepare_again = Message::Prepare {
        epoch: Epoch::FIRST,
        txn: TxnId { number: 4, ..txn },
        request: RequestId { client: ClientId(10), seq: 1 },
        ops: vec![put("k", "v")].into(),
        participants: NodeSet::first(3),
        round: 1,
    };
    let sent = deliver(&mut c, prepare_again);
    assert!(sent.is_empty(), "after a restart too: {sent:?}");
    assert_eq!(c.node(0).prepared_count(), 0);
}
