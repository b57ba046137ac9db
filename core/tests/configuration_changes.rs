//! Configuration changes wired into the node (docs/protocol.md §7.1, §7.3, §7.4): a member
//! that stops answering is removed and writes go on without it; the ending epoch is settled
//! from the reports, so a commit one member holds commits everywhere; a promise freezes its
//! member (the YES queued behind a record is dropped) and the freeze outlives a restart.

mod harness;

use dkv_core::configuration::{Ballot, PaxosMessage};
use dkv_core::{Epoch, Input, Message, NodeId, NodeSet, NotServingReason, Outcome, Output, Record, Time, Vote};
use harness::{Cluster, get, put, txn};
use std::time::Duration;

fn leased(size: usize) -> Cluster {
    Cluster::with_config(size, |c| c.timing.leases = true)
}

fn run_for(c: &mut Cluster, by: Duration) {
    let at = c.now + by;
    assert!(c.run_until(1_000_000, |c| c.now >= at), "stuck before {at}");
}

fn outcome(c: &Cluster, to: dkv_core::ReplyTo) -> Outcome {
    c.reply(to).expect("answered").outcome.clone()
}

fn members(ids: &[u8]) -> NodeSet {
    NodeSet::from_ids(ids.iter().map(|&i| NodeId(i))).unwrap()
}

/// A member that crashed is suspected and removed by the others; writes commit again without
/// it, and once back it learns it was removed and serves nothing.
#[test]
fn a_crashed_member_is_removed_and_writes_go_on() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.crash(2);
    run_for(&mut c, Duration::from_secs(3));
    for i in 0..2 {
        let configuration = c.node(i).configuration();
        assert_eq!((configuration.epoch, configuration.members), (Epoch(2), members(&[0, 1])), "n{i}");
        assert_eq!(c.node(i).stats().installs, 1);
    }
    let write = c.request(1, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(100_000, |c| c.reply(write).is_some()));
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)), "{:?}", outcome(&c, write));
    c.deliver_all();
    assert_eq!(c.value(0, "k"), Some(b"v".to_vec()));
    c.restart(2);
    run_for(&mut c, Duration::from_secs(1));
    assert!(!c.node(2).is_member(), "n2 learned it was removed");
    let read = c.request(2, get(2, 1, "k"));
    assert_eq!(outcome(&c, read), Outcome::NotServing(NotServingReason::NotAMember));
}

/// The coordinator decides a commit, only n1 learns it (its acknowledgement is lost), and the
/// coordinator crashes: the commit was never visible. n1 and n2 remove n0; n1's report knows
/// the commit and n2's holds it in doubt, so the settlement commits it at both, and a restart
/// replays the same settlement from the install's record.
#[test]
fn a_commit_one_member_holds_is_settled_as_a_commit() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.deliver_if = Box::new(|from, to, m| match m {
        Message::Decision { .. } | Message::Visible { .. } => to != NodeId(2),
        Message::Ack { .. } => from != NodeId(1),
        _ => true,
    });
    let write = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    assert!(c.reply(write).is_none(), "never visible");
    assert_eq!(c.node(2).prepared_count(), 1, "n2 holds its share in doubt");
    c.crash(0);
    c.deliver_if = Box::new(|_, _, _| true);
    run_for(&mut c, Duration::from_secs(3));
    for i in 1..3 {
        assert_eq!(c.node(i).configuration().members, members(&[1, 2]), "n{i}");
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "n{i} committed the settled write");
        assert_eq!(c.node(i).locked_keys(), 0);
    }
    c.crash(2);
    c.restart(2);
    assert_eq!(c.value(2, "k"), Some(b"v".to_vec()), "replay settles alike");
    assert_eq!(c.node(2).configuration().members, members(&[1, 2]));
}

/// A member promises while its PREPARE record is still on its way: the report counts the
/// share (appended, not durable) in doubt, the promise's record goes into the log after it,
/// and the YES queued behind the record never leaves. Restarted, it is still frozen.
#[test]
fn a_promise_freezes_its_member_and_drops_the_queued_yes() {
    let mut c = Cluster::new(3);
    c.auto_durable = false;
    let write = c.request(0, txn(1, 1, vec![put("k", "v")]));
    let _ = write;
    // Deliver the PREPAREs only: n1 logs its share, not yet durable.
    c.deliver_if = Box::new(|_, to, m| to == NodeId(1) && matches!(m, Message::Prepare { .. }));
    c.deliver_all();
    assert!(matches!(c.disks[1].pending.last(), Some((_, Record::PreparedInEpoch { .. }))));
    let request = PaxosMessage::PromiseRequest { epoch: Epoch(1), ballot: Ballot { round: 1, node: NodeId(2) } };
    let now = c.now;
    let n1 = c.nodes[1].as_mut().unwrap();
    n1.handle(now, Input::Message { from: NodeId(2), message: Message::Paxos(request) });
    assert!(n1.is_frozen());
    let mut outputs: Vec<Output> = std::iter::from_fn(|| n1.poll_output()).collect();
    let promise_record = outputs.iter().find_map(|o| match o {
        Output::Persist { lsn, record: Record::Agreement(_) } => Some(*lsn),
        _ => None,
    });
    let promise_record = promise_record.expect("the promise is logged");
    let (share_record, _) = c.disks[1].pending.last().unwrap();
    assert!(promise_record > *share_record, "the promise goes into the log after the share");
    // Everything durable: the promise leaves with its report; the YES does not.
    n1.handle(now, Input::Durable { through: promise_record });
    outputs.extend(std::iter::from_fn(|| n1.poll_output()));
    let yes = outputs.iter().any(|o| matches!(o, Output::Send { message: Message::Vote { vote: Vote::Yes, .. }, .. }));
    assert!(!yes, "a frozen member casts no YES");
    let report = outputs.iter().find_map(|o| match o {
        Output::Send { message: Message::Paxos(PaxosMessage::Promise { report, .. }), .. } => Some(report.clone()),
        _ => None,
    });
    let report = report.expect("the promise left once durable");
    assert_eq!(report.in_doubt().len(), 1, "the appended share is reported in doubt: {report:?}");
    // Restarted from its log, the member is still frozen: a PREPARE sent again gets no vote.
    for output in outputs {
        if let Output::Persist { lsn, record } = output {
            c.disks[1].pending.push((lsn, record));
        }
    }
    c.make_durable(1);
    c.crash(1);
    c.restart(1);
    assert!(c.node(1).is_frozen(), "the promise outlives the restart");
    c.deliver_if = Box::new(|_, _, _| true);
    let now: Time = c.now + Duration::from_secs(1);
    c.now = now;
    c.nodes[0].as_mut().unwrap().handle(now, Input::Timeout);
    c.drain(0);
    let before = c.delivered.len();
    c.deliver_all();
    let votes_from_n1 = c.delivered[before..]
        .iter()
        .filter(|(from, _, m)| *from == NodeId(1) && matches!(m, Message::Vote { vote: Vote::Yes, .. }))
        .count();
    assert_eq!(votes_from_n1, 0, "no YES from a frozen member after its restart");
}
