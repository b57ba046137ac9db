//! Bootstrapping a new cluster (docs/protocol.md §7.1, "Bootstrap"): a node started with
//! `--init` on an empty log takes part only once every other node of the cluster has answered
//! that it took part in nothing either; if one did, the node catches up instead. Nothing is
//! logged while it waits.

mod harness;

use dkv_core::{Message, NodeId, NodeSet, NotServingReason, Outcome, Record, TryAgainReason};
use harness::{Cluster, get, put, txn};
use std::time::Duration;

fn outcome(c: &Cluster, to: dkv_core::ReplyTo) -> Outcome {
    c.reply(to).expect("answered").outcome.clone()
}

fn run_for(c: &mut Cluster, by: Duration) {
    let at = c.now + by;
    assert!(c.run_until(1_000_000, |c| c.now >= at), "stuck before {at}");
}

/// The first start of a cluster: every node bootstraps; each waits, logging nothing and
/// telling its clients to try again, until every other node has answered; then all are members
/// and a write commits.
#[test]
fn nodes_bootstrapping_together_become_members_once_every_node_answered() {
    let mut c = Cluster::new(3);
    for i in 0..3 {
        c.crash(i);
    }
    c.bootstrap(0);
    c.bootstrap(1);
    run_for(&mut c, Duration::from_secs(1));
    for i in 0..2 {
        assert!(c.node(i).is_bootstrapping(), "n{i} bootstraps with n2 not up");
        assert!(c.disks[i].durable.is_empty() && c.disks[i].pending.is_empty(), "n{i} logged something");
    }
    let early = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert_eq!(outcome(&c, early), Outcome::TryAgain(TryAgainReason::Starting));

    c.bootstrap(2);
    assert!(c.settle());
    for i in 0..3 {
        assert!(!c.node(i).is_bootstrapping(), "n{i} still bootstraps");
        assert!(c.node(i).vouches_for_its_log(), "n{i}");
    }
    let write = c.request(0, txn(1, 2, vec![put("k", "v")]));
    assert!(c.settle());
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)), "{:?}", outcome(&c, write));
    for i in 0..3 {
        assert_eq!(c.value(i, "k").as_deref(), Some(&b"v"[..]), "n{i}");
    }
}

/// A member whose data dir was lost, restarted with `--init` still on its command line, hears
/// from a node that holds the cluster's state: it bootstraps nothing, logs that it cannot vouch
/// for its log, and serves nothing ("catching up") instead of answering from an empty store.
#[test]
fn a_node_restarted_with_init_after_its_data_was_lost_catches_up_instead() {
    let mut c = Cluster::new(3);
    let write = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.settle());
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)));

    c.crash(2);
    c.bootstrap(2);
    assert!(c.node(2).is_bootstrapping());
    c.deliver_all();
    assert!(!c.node(2).is_bootstrapping());
    assert!(!c.node(2).vouches_for_its_log(), "n2 took part with an empty store");
    assert!(c.disks[2].durable.contains(&Record::Unvouched), "n2's log says it cannot vouch for it");
    let read = c.request(2, get(2, 1, "k"));
    assert_eq!(outcome(&c, read), Outcome::NotServing(NotServingReason::CatchingUp));
}

/// One node down and the other clean: the node bootstrapping waits for it, however long, since
/// the node down may be the one that holds the cluster's state. A node that answered clean is
/// asked again, and once it has taken part in something it says so: the node bootstrapping
/// then catches up instead of waiting for ever.
#[test]
fn a_node_bootstrapping_waits_for_every_node_and_learns_when_one_took_part() {
    let mut c = Cluster::new(3);
    c.crash(1);
    c.crash(2);
    c.bootstrap(2);
    run_for(&mut c, Duration::from_secs(5));
    assert!(c.node(2).is_bootstrapping(), "n2 decided without n1's answer");
    assert!(c.disks[2].durable.is_empty(), "n2 logged something while it waited");

    // n0 takes part in something: a transaction it prepares (n1 down, it cannot commit).
    let write = c.request(0, txn(1, 1, vec![put("k", "v")]));
    run_for(&mut c, Duration::from_millis(500));
    assert!(c.reply(write).is_none_or(|r| !matches!(r.outcome, Outcome::Committed(_))));
    assert!(!c.node(2).is_bootstrapping(), "n2 still waits, though n0 now says it took part");
    assert!(!c.node(2).vouches_for_its_log());
}

/// A node that crashes while it asks, after the others heard it clean and began: they take part
/// in nothing until it has begun too (a write is told to try again), so its next life, asking
/// again, finds them still clean, and the first start ends with every node a member.
#[test]
fn nodes_that_began_wait_for_one_that_crashed_while_asking() {
    let mut c = first_start_with_n2_hearing_no_answer();
    for i in 0..2 {
        assert!(c.node(i).is_bootstrapping(), "n{i} takes part before n2 has begun");
        assert_eq!(c.node(i).bootstrap_waits_for(), NodeSet::from_ids([NodeId(2)]).unwrap());
    }
    let early = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert_eq!(outcome(&c, early), Outcome::TryAgain(TryAgainReason::Starting));

    c.crash(2);
    c.deliver_if = Box::new(|_, _, _| true);
    c.bootstrap(2);
    assert!(c.run_until(1_000_000, none_bootstrapping), "the first start did not end");
    for i in 0..3 {
        assert!(c.node(i).vouches_for_its_log(), "n{i} is no member");
    }
    let write = c.request(0, txn(1, 2, vec![put("k", "v")]));
    assert!(c.settle());
    assert!(matches!(outcome(&c, write), Outcome::Committed(_)), "{:?}", outcome(&c, write));
}

/// A node that began restarts before the others have: it waits again, taking part in nothing.
#[test]
fn a_node_that_began_and_restarts_waits_again_for_the_others() {
    let mut c = first_start_with_n2_hearing_no_answer();
    c.crash(0);
    c.restart(0);
    assert!(c.node(0).is_bootstrapping(), "n0 restarted and took part before n2 began");
    let early = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert_eq!(outcome(&c, early), Outcome::TryAgain(TryAgainReason::Starting));
    c.deliver_if = Box::new(|_, _, _| true);
    assert!(c.run_until(1_000_000, none_bootstrapping), "the first start did not end");
}

/// A first start of three nodes in which n2 hears no answer: it answers the others (clean), so
/// n0 and n1 begin, but n2 never does, and they wait for it.
fn first_start_with_n2_hearing_no_answer() -> Cluster {
    let mut c = Cluster::new(3);
    for i in 0..3 {
        c.crash(i);
    }
    c.deliver_if = Box::new(|_, to, m| !(to == NodeId(2) && matches!(m, Message::BootstrapAnswer { .. })));
    for i in 0..3 {
        c.bootstrap(i);
    }
    run_for(&mut c, Duration::from_secs(1));
    for i in 0..2 {
        assert!(c.disks[i].durable.contains(&Record::Bootstrapped { all_begun: false }), "n{i} began");
    }
    c
}

fn none_bootstrapping(c: &Cluster) -> bool {
    c.nodes.iter().flatten().all(|node| !node.is_bootstrapping())
}
