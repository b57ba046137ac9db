//! Configuration changes wired into the node (docs/protocol.md §7.1, §7.3, §7.4): a member
//! that stops answering is removed and writes go on without it; the ending epoch is settled
//! from the reports, so a commit one member holds commits everywhere; a promise freezes its
//! member (the YES queued behind a record is dropped) and the freeze outlives a restart.

mod harness;

use dkv_core::configuration::{Ballot, JoinTicket, PaxosMessage};
use dkv_core::{Epoch, Input, Message, Node, NodeId, NodeSet, NotServingReason, Outcome, Output, Record, Time};
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

/// Three nodes with leases, n2 crashed and, 3 s later, removed by the others (it stays down).
fn with_n2_removed() -> Cluster {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.crash(2);
    run_for(&mut c, Duration::from_secs(3));
    assert_eq!(c.node(0).configuration().members, members(&[0, 1]), "n2 was removed");
    c
}

/// A member that crashed is suspected and removed by the others; writes commit again without
/// it, and once back it learns it was removed and serves nothing.
#[test]
fn a_crashed_member_is_removed_and_writes_go_on() {
    let mut c = with_n2_removed();
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

/// The configuration and the values that installed it go into snapshots: a member whose log
/// was compacted past its `Installed` record restarts in the configuration it installed, and
/// still tells a node behind the value it lacks.
#[test]
fn snapshots_carry_the_configuration() {
    let mut c = Cluster::with_config(3, |cfg| {
        cfg.timing.leases = true;
        cfg.bounds.snapshot_records_min = 20;
    });
    run_for(&mut c, Duration::from_secs(1));
    c.crash(2);
    run_for(&mut c, Duration::from_secs(3));
    for seq in 1..=30 {
        let write = c.request(0, txn(1, seq, vec![put("k", &seq.to_string())]));
        assert!(c.run_until(100_000, |c| c.reply(write).is_some()));
    }
    assert!(c.node(0).stats().snapshots > 0);
    let installed_kept = c.disks[0].durable.iter().any(|r| matches!(r, Record::Installed(_)));
    assert!(!installed_kept, "compaction dropped the Installed record");
    c.crash(0);
    c.restart(0);
    assert_eq!(c.node(0).configuration().members, members(&[0, 1]), "from the snapshot");
    assert_eq!(c.node(0).configuration().epoch, Epoch(2));
    // n2, back in epoch 1, is told by n0 (from its snapshot) that it was removed.
    c.crash(1);
    c.restart(2);
    run_for(&mut c, Duration::from_millis(500));
    assert!(!c.node(2).is_member());
}

/// Three nodes: the coordinator makes a commit visible on every YES (docs/protocol.md §7.2) and
/// crashes before anyone learns it (its decision, logged lazily, is lost too). n1 and n2 remove
/// n0; both reports hold the commit in doubt, so the settlement infers it (§7.4, "Inferred
/// commits") and both commit it, and a restart replays the same settlement from the install's
/// record.
#[test]
fn a_commit_visible_on_every_yes_is_inferred_once_its_coordinator_is_gone() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Decision { .. } | Message::Visible { .. }));
    let write = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    assert!(matches!(c.reply(write).map(|r| &r.outcome), Some(Outcome::Committed(_))), "visible on every YES");
    for i in 1..3 {
        assert_eq!(c.node(i).prepared_count(), 1, "n{i} holds its share in doubt");
    }
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

/// Three nodes: a member that stays in a configuration dropping one of them logs the install
/// only a lease wait after it learned it (docs/protocol.md §7.4, "Inferred commits"): the member
/// dropped may still hold a lease of the old epoch until then. Frozen meanwhile, it serves no
/// read; writes go on once the install is durable, as before.
#[test]
fn an_install_that_drops_one_of_three_members_waits_out_the_leases() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.crash(2);
    assert!(c.run_until(1_000_000, |c| c.node(0).is_frozen()), "n0 never took part in a change");
    let frozen_at = c.now;
    let wait = c.node(0).config().timing.lease_wait();
    // The value is learned after the freeze: until a lease wait after the freeze, no install.
    let before = frozen_at + wait.mul_f64(0.95);
    assert!(c.run_until(1_000_000, |c| c.now >= before));
    for i in 0..2 {
        assert_eq!(c.node(i).configuration().epoch, Epoch(1), "n{i} installed before the leases ran out");
        assert!(!c.disks[i].durable.iter().any(|r| matches!(r, Record::Installed(_))), "n{i}");
    }
    run_for(&mut c, Duration::from_secs(1));
    for i in 0..2 {
        assert_eq!(c.node(i).configuration().members, members(&[0, 1]), "n{i}");
    }
    let write = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(1_000_000, |c| c.reply(write).is_some()));
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)));
}

/// A coordinator makes a commit visible on every YES (three nodes), the members acknowledge it,
/// and before its own lazy decision record is durable it learns a change that removes it and
/// logs the install after it. The decision's record becoming durable then must not finish the
/// transaction: its `Forgotten` would follow the `Installed` record, and replay, which settles
/// the epoch at that record, cannot take it. The install settles it; the node restarts.
#[test]
fn a_decision_durable_after_the_install_is_logged_is_left_to_the_install() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.auto_durable = false;
    (0..3).for_each(|i| c.make_durable(i));
    let write = c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    (1..3).for_each(|i| c.make_durable(i));
    c.deliver_all(); // both remote YES votes
    c.make_durable(0); // the own share: visible on every YES, the decision logged lazily
    assert!(matches!(c.reply(write).map(|r| &r.outcome), Some(Outcome::Committed(_))));
    assert!(c.disks[0].pending.iter().any(|(_, r)| matches!(r, Record::CommitDecided { .. })));
    c.deliver_all(); // `Visible`
    (1..3).for_each(|i| c.make_durable(i));
    c.deliver_all(); // both acknowledgements: only n0's own copy is missing to finish
    // n1 proposes to remove n0; n0 hears only the acceptances, and learns the value from them.
    c.deliver_if = Box::new(|_, to, m| to != NodeId(0) || matches!(m, Message::Paxos(PaxosMessage::Accepted { .. })));
    let now = c.now;
    c.nodes[1].as_mut().unwrap().propose_members(now, members(&[1, 2])).unwrap();
    c.drain(1);
    for _ in 0..20 {
        c.deliver_all();
        (1..3).for_each(|i| c.make_durable(i));
    }
    assert!(c.node(0).is_frozen(), "n0 learned the change");
    let pending: Vec<&Record> = c.disks[0].pending.iter().map(|(_, r)| r).collect();
    let decided = pending.iter().position(|r| matches!(r, Record::CommitDecided { .. }));
    let installed = pending.iter().position(|r| matches!(r, Record::Installed(_)));
    assert!(decided.is_some() && decided < installed, "the install logged after the lazy decision: {pending:?}");
    c.make_durable(0);
    c.make_durable(0); // and whatever that logged
    let durable = &c.disks[0].durable;
    let installed_at = durable.iter().rposition(|r| matches!(r, Record::Installed(_))).unwrap();
    let after: Vec<&Record> = durable[installed_at..].iter().collect();
    assert!(
        !after.iter().any(|r| matches!(r, Record::Forgotten { .. } | Record::Committed { .. })),
        "nothing of the ended epoch after the install: {after:?}"
    );
    c.crash(0);
    c.restart(0);
    assert_eq!(c.value(0, "k"), Some(b"v".to_vec()));
    assert!(!c.node(0).is_member());
}

/// A member promises while its PREPARE record is still on its way: the report counts the
/// share (appended, not durable) in doubt, the promise's record goes into the log after it,
/// and the YES queued behind the record never leaves. Restarted, it is still frozen.
#[test]
fn a_promise_freezes_its_member_and_drops_the_queued_yes() {
    let mut c = leased(3);
    c.advance(Duration::from_secs(3)); // past the lease wait that starts every node
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
        Output::Persist { lsn, record: Record::Agreement(_), .. } => Some(*lsn),
        _ => None,
    });
    let promise_record = promise_record.expect("the promise is logged");
    let (share_record, _) = c.disks[1].pending.last().unwrap();
    assert!(promise_record > *share_record, "the promise goes into the log after the share");
    // Everything durable: the promise leaves with its report; the YES does not.
    n1.handle(now, Input::Durable { through: promise_record });
    outputs.extend(std::iter::from_fn(|| n1.poll_output()));
    let yes =
        outputs.iter().any(|o| matches!(o, Output::Send { message: Message::Vote { vote, .. }, .. } if vote.is_yes()));
    assert!(!yes, "a frozen member casts no YES");
    let report = outputs.iter().find_map(|o| match o {
        Output::Send { message: Message::Paxos(PaxosMessage::Promise { report, .. }), .. } => Some(report.clone()),
        _ => None,
    });
    let report = report.expect("the promise left once durable");
    assert_eq!(report.in_doubt().len(), 1, "the appended share is reported in doubt: {report:?}");
    // Restarted from its log, the member is still frozen: a PREPARE sent again gets no vote.
    for output in outputs {
        if let Output::Persist { lsn, record, .. } = output {
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
        .filter(|(from, _, m)| *from == NodeId(1) && matches!(m, Message::Vote { vote, .. } if vote.is_yes()))
        .count();
    assert_eq!(votes_from_n1, 0, "no YES from a frozen member after its restart");
}

/// The largest message of the agreement — a value whose settlement holds a full report from
/// every member of a smallest majority, every id at its longest encoding, or a promise with
/// such a value and a full report — fits a peer frame under the default limits, for every
/// cluster size a node set allows (net refuses a longer frame before buffering it).
#[test]
fn the_largest_agreement_message_fits_a_peer_frame() {
    use dkv_core::configuration::{Report, Settlement, Value};
    use dkv_core::{Configuration, Limits, TxnId};
    let frame_max = Limits::default().frame_bytes_max() as usize;
    for members in [3, 5, 7, NodeSet::CAPACITY] {
        let majority = members / 2 + 1;
        let id = |n: usize| TxnId { coordinator: NodeId(63), incarnation: u64::MAX, number: u64::MAX - n as u64 };
        let reports: Vec<Report> = (0..majority)
            .map(|m| {
                let ids = (m * Report::IDS_MAX..(m + 1) * Report::IDS_MAX).map(id);
                Report::new(ids, std::iter::empty()).unwrap()
            })
            .collect();
        let settlement = Settlement::from_reports(&reports);
        assert_eq!(settlement.ids(), Settlement::ids_max(members));
        let configuration = Configuration { epoch: Epoch(u64::MAX), members: NodeSet::first(members) };
        let value = Value { configuration, settlement, joining: Default::default() };
        let ballot = Ballot { round: u64::MAX, node: NodeId(63) };
        let promise = PaxosMessage::Promise {
            epoch: Epoch(u64::MAX - 1),
            ballot,
            accepted: Some((ballot, value)),
            report: reports[0].clone(),
        };
        let bytes = postcard::to_allocvec(&Message::Paxos(promise)).unwrap().len();
        println!("{members} members: the largest promise is {bytes} bytes (frame limit {frame_max})");
        assert!(bytes < frame_max, "{members} members: {bytes} bytes, frame limit {frame_max}");
    }
}

/// A member taken for a new life (a request to join under a ticket no change added it with:
/// say, one sent in an earlier start and delayed) that promised to the change meant to remove
/// it is kept (the proposer keeps every member that promised), and the change is not proposed
/// again. (This tests the new-life mark; `a_suspected_member_that_promises_is_heard` the
/// credit a promise gives as heard from.) Its heartbeats to the proposer are lost here, so only its
/// promise can show it acts in the epoch; before a promise counted, every change kept it and
/// n0 proposed the next at once, with no time passing (`run_for` reported it stuck).
#[test]
fn a_member_taken_for_a_new_life_that_promises_is_not_proposed_away_again() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_millis(500));
    let start = c.node(0).configuration();
    // n1's promises to n0 are lost too, so n2's promise is one of the majority n0 hears.
    c.deliver_if = Box::new(|from, to, message| {
        let heartbeat_of_n2 = from == NodeId(2) && matches!(message, Message::Heartbeat { .. });
        let promise_of_n1 = from == NodeId(1) && matches!(message, Message::Paxos(PaxosMessage::Promise { .. }));
        to != NodeId(0) || !(heartbeat_of_n2 || promise_of_n1)
    });
    c.network.push_back((
        NodeId(2),
        NodeId(0),
        Message::JoinRequest { epoch: start.epoch, ticket: JoinTicket(7), echo: None },
    ));
    // Under the detection timeout (1 s): n2 is not suspected for its lost heartbeats.
    run_for(&mut c, Duration::from_millis(600));
    for i in 0..3 {
        assert_eq!(c.node(i).configuration().members, members(&[0, 1, 2]), "n{i}");
    }
    // One change: n2's promise was among the majority n0 heard, so it kept n2.
    assert_eq!(c.node(0).stats().installs, 1, "n0 proposed again though n2 promised");
}

/// Members that suspect each other (n0's heartbeats and grants to n1 are lost, so neither
/// hears an echo from the other) and promise to each other's changes are heard through those
/// promises: a promise answers a request, as an echo does. Each change keeps both (they
/// promised), and once each has had a promise from the other, no change is proposed for the
/// promise's credit (a detection timeout; they suspect each other again after it, as the lost
/// heartbeats say): at most one change per suspecting proposer within it. Before, each proposed
/// again at every install, before any heartbeat of the new epoch could make a round trip, with
/// no time passing (`run_for` reported it stuck).
#[test]
fn a_suspected_member_that_promises_is_heard() {
    let mut c = leased(3);
    c.deliver_if = Box::new(|from, to, message| {
        let lease_traffic = matches!(message, Message::Heartbeat { .. } | Message::LeaseGrant { .. });
        !(from == NodeId(0) && to == NodeId(1) && lease_traffic)
    });
    // n0 and n1 suspect each other a detection timeout (1 s) after the start's grace.
    assert!(c.run_until(1_000_000, |c| c.node(1).stats().installs >= 1), "no change was made");
    run_for(&mut c, Duration::from_millis(500));
    for i in 0..3 {
        assert_eq!(c.node(i).configuration().members, members(&[0, 1, 2]), "n{i}: every member promised, so stays");
    }
    let installs = c.node(1).stats().installs;
    assert!(installs <= 2, "{installs} changes: one per proposer that suspected the other at most");
}

/// A node added back that can send but hears nothing (cut off one way just after its add) keeps
/// asking to join, but its requests echo no heartbeat of the members: it is suspected a
/// detection timeout after its add and removed again, instead of holding every write for its
/// whole grace (`join_grace`, 10 s). (This harness runs no transfers, so n2 never catches up
/// here either way: only its grace would keep it.)
#[test]
fn an_added_node_that_cannot_hear_is_removed_again_within_a_detection_timeout() {
    let mut c = with_n2_removed();
    c.restart(2);
    let added = |c: &Cluster| c.node(0).configuration().members.contains(NodeId(2));
    assert!(c.run_until(1_000_000, added), "n2 was never added back");
    let added_in = c.node(0).configuration().epoch;
    let added_at = c.now;
    c.deliver_if = Box::new(|_, to, _| to != NodeId(2));
    let removed = |c: &Cluster| {
        let now = c.node(0).configuration();
        now.epoch > added_in && !now.members.contains(NodeId(2))
    };
    let deadline = added_at + Duration::from_secs(3);
    assert!(c.run_until(1_000_000, |c| removed(c) || c.now >= deadline));
    assert!(removed(&c), "n2 is still a member 3 s after its add: {}", c.node(0).configuration());
}

/// And a node added back that hears the members keeps its grace while it catches up (this
/// harness runs no transfers, so it never does): its requests to join echo their heartbeats.
/// So does one whose data dir was lost (it starts unvouched and takes part in nothing, but
/// keeps the heartbeats' requests to echo): review finding, it had one detection timeout, not
/// `join_grace`, for its transfer.
#[test]
fn an_added_node_that_hears_keeps_its_grace() {
    for data_dir_lost in [false, true] {
        let mut c = with_n2_removed();
        if data_dir_lost {
            c.disks[2] = harness::Disk::default();
            let node = Node::start_unvouched(c.configs[2].clone(), Vec::new(), c.now).expect("an empty log starts");
            c.nodes[2] = Some(node);
            c.drain(2);
        } else {
            c.restart(2);
        }
        let added = |c: &Cluster| c.node(0).configuration().members.contains(NodeId(2));
        assert!(c.run_until(1_000_000, added), "n2 was never added back (data dir lost: {data_dir_lost})");
        let added_in = c.node(0).configuration();
        run_for(&mut c, Duration::from_secs(3));
        assert_eq!(
            c.node(0).configuration(),
            added_in,
            "n2 was removed while it caught up (data dir lost: {data_dir_lost})"
        );
    }
}

/// A node removed again soon after its add waits out a backoff that grows with each such
/// removal before the members add it back: none after its first removal, then 1, 3, …
/// detection timeouts (§7.6). Here n2 hears nothing after each add, so it is removed again a
/// detection timeout later, as a node cut off from one member keeps being: without the backoff
/// it would be added back at once each time, and the writes that need it would wait each time.
#[test]
fn a_node_removed_again_soon_after_its_add_is_added_back_only_after_a_growing_backoff() {
    let mut c = with_n2_removed();
    let detection = c.configs[0].timing.detection_timeout;
    let is_member = |c: &Cluster| c.node(0).configuration().members.contains(NodeId(2));
    c.restart(2);
    let mut removed_at = c.now;
    for strikes in 0..3u32 {
        assert!(c.run_until(1_000_000, is_member), "n2 was never added back after {strikes} strikes");
        let waited = c.now.saturating_since(removed_at);
        let backoff = detection * ((1 << strikes) - 1);
        assert!(waited >= backoff, "n2 added back {waited:?} after its removal, within its backoff {backoff:?}");
        assert!(waited < backoff + detection * 2, "n2 added back only {waited:?} after its removal");
        // It hears nothing: suspected and removed again.
        c.deliver_if = Box::new(|_, to, _| to != NodeId(2));
        assert!(c.run_until(1_000_000, |c| !is_member(c)), "n2 was not removed again");
        removed_at = c.now;
        c.deliver_if = Box::new(|_, _, _| true);
        // Once it asks to join again, the members tell the operator it is held back.
        if strikes > 0 {
            let held_back = |c: &Cluster| c.node(0).joins_held_back(c.now).iter().any(|&(node, _)| node == NodeId(2));
            assert!(c.run_until(1_000_000, |c| held_back(c) || is_member(c)));
            assert!(held_back(&c), "n0 does not say it holds n2 back");
        }
    }
}
