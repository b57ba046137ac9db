//! Linearizable reads from any node: served from memory unless the key is locked by a
//! prepared transaction, in which case the read waits for the decision, with a bounded queue.

mod harness;
use dkv_core::{Message, Outcome, TryAgainReason};
use harness::*;
use std::time::Duration;

/// A read from any node sees a write acknowledged before the read started.
#[test]
fn read_at_any_node_sees_acknowledged_write() {
    let mut c = Cluster::new(3);
    let w = c.request(0, txn(1, 1, vec![put("k", "v")]));
    assert!(c.run_until(10_000, |c| c.reply(w).is_some()));
    for i in 0..3 {
        let r = c.request(i, get(2, i as u64, "k"));
        assert!(c.run_until(10_000, |c| c.reply(r).is_some()));
        assert_eq!(c.reply(r).unwrap().outcome.found(), Some(&b"v".to_vec()), "read at node {i}");
    }
}

/// A read of a key locked by a prepared transaction waits and then returns the committed
/// value, never the old one (another node may already have returned the new value).
#[test]
fn read_of_prepared_key_waits_for_the_decision() {
    let mut c = Cluster::new(3);
    let w = c.request(0, txn(1, 1, vec![put("k", "old")]));
    assert!(c.settle());
    assert!(matches!(c.reply(w).unwrap().outcome, Outcome::Committed(_)));

    // Node 2 misses the COMMIT for a while.
    c.deliver_if = Box::new(|_, to, m| !(to.0 == 2 && matches!(m, Message::Decision { .. })));
    let w = c.request(0, txn(1, 2, vec![put("k", "new")]));
    assert!(c.run_until(10_000, |c| c.reply(w).is_some()));
    assert_eq!(c.value(2, "k"), Some(b"old".to_vec()));
    let r = c.request(2, get(2, 1, "k"));
    assert!(c.reply(r).is_none(), "the read waits while the key is locked");
    c.deliver_if = Box::new(|_, _, _| true);
    assert!(c.run_until(10_000, |c| c.reply(r).is_some()));
    assert_eq!(c.reply(r).unwrap().outcome.found(), Some(&b"new".to_vec()));
}

/// A read of a missing key says "not found".
#[test]
fn read_of_missing_key_is_not_found() {
    let mut c = Cluster::new(2);
    let r = c.request(1, get(1, 1, "nothing"));
    assert_eq!(c.reply(r).unwrap().outcome, Outcome::NotFound);
}

/// The queue of waiting reads is bounded: past it, reads get a clear "busy" answer.
#[test]
fn waiting_reads_are_bounded_and_overflow_is_busy() {
    let mut c = Cluster::with_config(2, |cfg| cfg.bounds.read_waiters_max = 3);
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Vote { .. }));
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    let waiting: Vec<_> = (0..3).map(|i| c.request(1, get(2, i, "k"))).collect();
    let overflow = c.request(1, get(2, 9, "k"));
    assert_eq!(c.reply(overflow).unwrap().outcome, Outcome::TryAgain(TryAgainReason::Busy));
    for r in waiting {
        assert!(c.reply(r).is_none());
    }
}

/// A read waiting on a lock whose outcome stays unknown gives up after the read timeout with
/// "try again", never with a guessed value.
#[test]
fn waiting_read_times_out_with_try_again() {
    let mut c = Cluster::new(2);
    c.deliver_if = Box::new(|_, _, m| !matches!(m, Message::Vote { .. }));
    c.request(0, txn(1, 1, vec![put("k", "v")]));
    c.deliver_all();
    c.crash(0);
    let r = c.request(1, get(2, 1, "k"));
    c.advance(Duration::from_secs(1));
    assert!(c.run_until(10_000, |c| c.reply(r).is_some()));
    assert_eq!(c.reply(r).unwrap().outcome, Outcome::TryAgain(TryAgainReason::Locked));
}
