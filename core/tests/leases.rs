//! Read leases, heartbeats, suspicion and the wait before the first YES (docs/protocol.md §7.3,
//! §7.5), driven step by step on the harness's virtual time.

mod harness;

use dkv_core::{NodeId, NodeSet, NotServingReason, Outcome, Time, TryAgainReason};
use harness::{Cluster, get, put, txn};
use std::time::Duration;

fn leased(size: usize) -> Cluster {
    Cluster::with_config(size, |c| c.timing.leases = true)
}

/// Steps until virtual time reaches `at` (heartbeats keep timers set, so this is bounded by
/// time, not by running out of things to do).
fn run_to(c: &mut Cluster, at: Time) {
    assert!(c.run_until(1_000_000, |c| c.now >= at), "stuck before {at}");
}

fn run_for(c: &mut Cluster, by: Duration) {
    let at = c.now + by;
    run_to(c, at);
}

fn outcome(c: &Cluster, to: dkv_core::ReplyTo) -> Outcome {
    c.reply(to).expect("answered").outcome.clone()
}

const L: Duration = Duration::from_millis(500);

/// A node serves reads only once a majority granted its lease request, and begins no write
/// (and votes no YES) before its start plus the wait W; after both, reads and writes work.
#[test]
fn reads_wait_for_a_lease_and_writes_for_the_wait() {
    let mut c = leased(3);
    let start = c.now;
    // At once: the Boot record is durable, the heartbeats are out but not answered.
    let read = c.request(0, get(1, 1, "k"));
    assert_eq!(outcome(&c, read), Outcome::NotServing(NotServingReason::NoLease));
    let write = c.request(0, txn(2, 1, vec![put("k", "v")]));
    assert_eq!(outcome(&c, write), Outcome::TryAgain(TryAgainReason::Starting));
    c.deliver_all();
    let read = c.request(1, get(1, 2, "k"));
    assert_eq!(outcome(&c, read), Outcome::NotFound, "a majority granted");
    // The wait is L (1 + ρ) / (1 − ρ) after the start.
    let wait = c.node(0).no_yes_before().saturating_since(start);
    assert!(wait > L && wait < L + Duration::from_millis(11), "{wait:?}");
    run_to(&mut c, start + wait);
    let write = c.request(0, txn(2, 2, vec![put("k", "v")]));
    assert!(c.run_until(100_000, |c| c.reply(write).is_some()));
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)));
    let read = c.request(2, get(1, 3, "k"));
    assert!(c.run_until(100_000, |c| c.reply(read).is_some()));
    assert_eq!(outcome(&c, read).found(), Some(&b"v".to_vec()));
}

/// A PREPARE that reaches a node during its wait is not taken (no YES can come of it); the
/// coordinator sends it again, and the write commits once the wait is over.
#[test]
fn no_yes_during_the_wait_after_a_restart() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.crash(2);
    c.restart(2);
    let write = c.request(0, txn(2, 1, vec![put("k", "v")]));
    c.deliver_all();
    assert!(c.node(2).stats().prepares_before_wait >= 1);
    assert!(c.reply(write).is_none(), "no commit without n2's YES");
    assert!(c.run_until(100_000, |c| c.reply(write).is_some()));
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)));
    assert!(c.now >= c.node(2).no_yes_before());
}

/// A coordinator restarted with its own share logged and no decision asks every participant
/// again; when every YES comes during its restart's wait, the transaction's next timer after
/// the wait decides it (it used to stay locked for good: found by the simulator, seed 56).
#[test]
fn a_recovered_transaction_whose_votes_came_during_the_wait_is_decided_after_it() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.deliver_if = Box::new(|_, to, m| !(to == NodeId(0) && matches!(m, dkv_core::Message::Vote { .. })));
    let write = c.request(0, txn(2, 1, vec![put("k", "v")]));
    c.deliver_all();
    assert!(c.reply(write).is_none());
    c.crash(0);
    c.restart(0);
    c.deliver_if = Box::new(|_, _, _| true);
    let wait_over = c.node(0).no_yes_before();
    run_for(&mut c, Duration::from_millis(100));
    assert!(c.now < wait_over, "the votes came during the wait");
    assert_eq!(c.node(0).coordinating_count(), 1, "recovered, undecided during the wait");
    run_for(&mut c, Duration::from_secs(2));
    assert_eq!(c.node(0).coordinating_count(), 0, "decided after the wait, and finished");
    for i in 0..3 {
        assert_eq!(c.value(i, "k"), Some(b"v".to_vec()), "n{i}");
    }
}

/// A node cut off from the majority stops serving reads within L of its last granted request,
/// by its own clock; the other two keep serving (but while they change the configuration), and
/// each side suspects the other after the detection timeout. The two remove it (§7.3): healed,
/// it learns so and answers "not a member".
#[test]
fn a_node_cut_off_stops_serving_after_its_lease() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    c.deliver_if = Box::new(|from, to, _| from != NodeId(2) && to != NodeId(2));
    let cut = c.now;
    let mut last_served = None;
    let mut unserved_during_the_change = 0;
    // The change drops one of three members: the two wait out its lease before they install
    // (docs/protocol.md §7.4, "Inferred commits"), and serve no read meanwhile. Reads every
    // 10 ms at each of them: the wait's worth, and two more each for the new epoch's grants.
    let wait = c.node(0).config().timing.lease_wait();
    let gap_max = 2 * (wait.as_millis() / 10 + 2);
    for n in 0..150u64 {
        run_for(&mut c, Duration::from_millis(10));
        for i in 0..3 {
            let r = c.request(i, get(1, 100 * n + i as u64, "k"));
            match outcome(&c, r) {
                Outcome::NotFound => {
                    if i == 2 {
                        last_served = Some(c.now);
                    }
                }
                // A member frozen by the change it agrees on counts itself no more (§7.4), and
                // the new epoch's lease needs a grant of that epoch: a gap at the change.
                Outcome::NotServing(NotServingReason::NoLease) if i != 2 => {
                    unserved_during_the_change += 1;
                    assert!(unserved_during_the_change <= gap_max, "n{i} stopped serving");
                }
                Outcome::NotServing(NotServingReason::NoLease) => {}
                other => panic!("n{i}: {other:?}"),
            }
        }
    }
    let last = last_served.expect("n2 served at first");
    assert!(last.saturating_since(cut) < L, "n2 served {:?} after the cut", last.saturating_since(cut));
    assert!(!c.node(2).serves_reads());
    assert_eq!(c.node(2).suspected(), NodeSet::from_ids([NodeId(0), NodeId(1)]).unwrap());
    let removed = NodeSet::from_ids([NodeId(0), NodeId(1)]).unwrap();
    for i in 0..2 {
        assert_eq!(c.node(i).configuration().members, removed, "n{i} removed n2");
        assert_eq!(c.node(i).configuration().epoch, dkv_core::Epoch(2));
        assert!(c.node(i).serves_reads(), "n{i} serves in the new configuration");
    }
    // Healed, it learns it was removed, and serves no more.
    c.deliver_if = Box::new(|_, _, _| true);
    run_for(&mut c, Duration::from_millis(300));
    assert_eq!(c.node(2).configuration().members, removed);
    assert!(!c.node(2).is_member());
    let r = c.request(2, get(1, 99_999, "k"));
    assert_eq!(outcome(&c, r), Outcome::NotServing(NotServingReason::NotAMember));
    assert_eq!(c.node(0).suspected(), NodeSet::default());
}

/// A read that waited on a lock is answered only if the lease still holds when it wakes.
#[test]
fn a_read_woken_after_its_lease_ran_out_is_not_served() {
    let mut c = leased(3);
    run_for(&mut c, Duration::from_secs(1));
    // n0 prepares a write whose outcome (COMMIT, `Visible`, the finished mark) is held back from
    // n2, then n2 is cut off.
    let held = std::rc::Rc::new(std::cell::Cell::new(true));
    let h = held.clone();
    c.deliver_if = Box::new(move |from, to, m| {
        let outcome = matches!(
            m,
            dkv_core::Message::Decision { .. }
                | dkv_core::Message::Visible { .. }
                | dkv_core::Message::Finished { .. }
                | dkv_core::Message::FinishedBelow { .. }
        );
        let cut = h.get() && to == NodeId(2) && outcome;
        let isolated = !h.get() && (from == NodeId(2) || to == NodeId(2));
        !(cut || isolated)
    });
    let write = c.request(0, txn(2, 1, vec![put("k", "v")]));
    c.deliver_all();
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)));
    assert_eq!(c.node(2).prepared_count(), 1, "n2 is prepared and has not learned the commit");
    let read = c.request(2, get(1, 1, "k"));
    assert!(c.reply(read).is_none(), "the read waits on the lock");
    held.set(false);
    // n2 asks the coordinator after its query interval (500 ms), past its lease: cut off, it
    // learns nothing. Let it hear again after the lease ran out: the read wakes, unserved.
    run_for(&mut c, L + Duration::from_millis(100));
    assert!(!c.node(2).serves_reads());
    c.deliver_if = Box::new(|from, _, m| !(from != NodeId(2) && matches!(m, dkv_core::Message::LeaseGrant { .. })));
    assert!(c.run_until(100_000, |c| c.reply(read).is_some()));
    assert_eq!(outcome(&c, read), Outcome::NotServing(NotServingReason::NoLease));
}
