//! Internal consistency of a node's state, checked by the simulator after every input (debug
//! builds) and by the fuzzers after every input. A violation is a bug in the core, never the
//! fault of an input. Each role checks its own state; this file checks what spans them.

use super::Node;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("node invariant broken: {0}")]
pub struct InvariantViolation(pub String);

pub(super) fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), InvariantViolation> {
    if condition { Ok(()) } else { Err(InvariantViolation(what())) }
}

impl Node {
    /// Checks that the node's bookkeeping agrees with itself: locks belong to prepared
    /// transactions, indexes match what they index, undecided requests are being coordinated
    /// and hold their own share, and waiting reads wait on locked keys.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let sh = &self.shared;
        self.participant.check_invariants(sh)?;
        self.coordinator.check_invariants(sh, &self.participant)?;
        sh.outbox.check_invariants()?;
        for (instance, acceptor) in sh.vote_acceptors.iter() {
            ensure(acceptor.is_consistent(instance.owner), || {
                format!("the state of {instance} is not one the rules reach")
            })?;
        }
        for key in sh.reads.waiting_keys() {
            ensure(sh.locks.is_locked(key), || format!("a read waits on unlocked key {key:?}"))?;
        }
        sh.waiting_scans_are_blocked().map_err(InvariantViolation)
    }
}

/// `check_invariants` itself: a healthy node passes, and each kind of broken bookkeeping, made
/// on purpose through the state's own fields or the test-only `break_*` hooks, is reported.
#[cfg(test)]
mod tests {
    use super::super::shared::AfterDurable;
    use super::super::{Input, Node, Output};
    use crate::config::Config;
    use crate::configuration::Epoch;
    use crate::ids::{ClientId, Lsn, NodeId, NodeSet, ReplyTo, RequestId, TxnId};
    use crate::message::{Decision, Message, Vote};
    use crate::operation::{Operation, Request, TxnOp};
    use crate::record::Record;
    use crate::time::Time;
    use crate::timers::Timer;

    const NOW: Time = Time::from_nanos(1_000_000);

    fn put(key: &str) -> TxnOp {
        TxnOp::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec() }
    }

    /// Node 0 of three, started and booted.
    fn booted() -> Node {
        let mut node = Node::start(Config::new(NodeId(0), NodeSet::first(3)), Vec::<Record>::new(), NOW).unwrap();
        settle(&mut node);
        assert!(node.is_booted());
        node
    }

    /// Drains the node's outputs and makes everything it persisted durable, until it has
    /// nothing more to do; returns the messages it sent.
    fn settle(node: &mut Node) -> Vec<(NodeId, Message)> {
        let mut sent = Vec::new();
        loop {
            let mut last = None;
            while let Some(output) = node.poll_output() {
                match output {
                    Output::Send { to, message } => sent.push((to, message)),
                    Output::Persist { lsn, .. } => last = Some(lsn),
                    Output::Reply { .. } | Output::CatchUp { .. } => {}
                }
            }
            let Some(through) = last else { return sent };
            node.handle(NOW, Input::Durable { through });
        }
    }

    fn prepare_message(number: u64, key: &str) -> (TxnId, Message) {
        let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number };
        let request = RequestId { client: ClientId(100 + number), seq: 1 };
        (
            txn,
            Message::Prepare {
                epoch: Epoch::FIRST,
                txn,
                request,
                ops: vec![put(key)].into(),
                participants: NodeSet::first(3),
                round: txn.incarnation,
            },
        )
    }

    /// Node 1's transaction on `key`, prepared here (its record durable, the vote sent).
    fn prepare_remote(node: &mut Node, number: u64, key: &str) -> TxnId {
        let (txn, message) = prepare_message(number, key);
        node.handle(NOW, Input::Message { from: NodeId(1), message });
        let sent = settle(node);
        assert!(
            sent.contains(&(
                NodeId(1),
                Message::Vote { epoch: Epoch::FIRST, txn, vote: Vote::YesPinned, round: txn.incarnation }
            )),
            "{txn} is prepared"
        );
        txn
    }

    fn client_write(client: u64, key: &str) -> Input {
        let request = Request {
            id: RequestId { client: ClientId(client), seq: 1 },
            operation: Operation::Txn { ops: vec![put(key)] },
        };
        Input::Request { reply_to: ReplyTo(client), request }
    }

    /// A client write on `key` coordinated here, voting: returns its transaction.
    fn coordinate(node: &mut Node, client: u64, key: &str) -> TxnId {
        node.handle(NOW, client_write(client, key));
        let sent = settle(node);
        match sent.first() {
            Some((_, Message::Prepare { txn, .. })) => *txn,
            other => panic!("expected a PREPARE, sent {other:?}"),
        }
    }

    /// The violation the node reports; fails the test if it reports none.
    fn violation(node: &Node) -> String {
        node.check_invariants().expect_err("the broken bookkeeping is reported").0
    }

    fn assert_reports(node: &Node, what: &str) {
        let reported = violation(node);
        assert!(reported.contains(what), "expected a violation about {what:?}, got {reported:?}");
    }

    #[test]
    fn a_prepared_transaction_that_lost_its_lock_is_reported() {
        let mut node = booted();
        let txn = prepare_remote(&mut node, 1, "k");
        node.check_invariants().unwrap();
        node.shared.locks.release_all(txn, &[put("k")]);
        assert_reports(&node, "does not hold its key");
    }

    #[test]
    fn a_lock_held_by_no_prepared_transaction_is_reported() {
        let mut node = booted();
        prepare_remote(&mut node, 1, "k");
        let stranger = TxnId { coordinator: NodeId(2), incarnation: 1, number: 9 };
        node.shared.locks.try_lock_all(stranger, &[put("x")]).unwrap();
        assert_reports(&node, "locked by t2.1.9, which is not prepared");
    }

    #[test]
    fn a_transaction_both_prepared_and_committed_is_reported() {
        let mut node = booted();
        let txn = prepare_remote(&mut node, 1, "k");
        node.participant.break_mark_committed(txn);
        assert_reports(&node, "is prepared and committed here");
    }

    #[test]
    fn a_prepared_transaction_with_a_known_decision_is_reported() {
        let mut node = booted();
        let txn = prepare_remote(&mut node, 1, "k");
        node.participant.break_known(txn, Decision::Commit);
        assert_reports(&node, "its decision (Some(Commit)) is known here");
    }

    #[test]
    fn a_prepared_transaction_that_never_asks_for_its_outcome_is_reported() {
        let mut node = booted();
        let txn = prepare_remote(&mut node, 1, "k");
        node.shared.timers.cancel(Timer::Participant(txn));
        assert_reports(&node, "never asks for its outcome");
    }

    #[test]
    fn a_prepared_request_missing_from_the_index_is_reported() {
        let mut node = booted();
        let txn = prepare_remote(&mut node, 1, "k");
        node.participant.break_request_index(txn);
        assert_reports(&node, "is not indexed to it");
    }

    #[test]
    fn a_coordinated_transaction_that_never_resends_is_reported() {
        let mut node = booted();
        let txn = coordinate(&mut node, 5, "k");
        node.check_invariants().unwrap();
        node.shared.timers.cancel(Timer::Coordinator(txn));
        assert_reports(&node, "with no timer to resend or give up");
    }

    #[test]
    fn an_undecided_transaction_without_its_own_share_is_reported() {
        let mut node = booted();
        let txn = coordinate(&mut node, 5, "k");
        node.participant.abort_prepared(&mut node.shared, txn);
        assert_reports(&node, "its own share is held: false");
    }

    #[test]
    fn a_committed_transaction_learned_as_aborted_is_reported() {
        let mut node = booted();
        let txn = coordinate(&mut node, 5, "k");
        for from in [NodeId(1), NodeId(2)] {
            node.handle(
                NOW,
                Input::Message {
                    from,
                    message: Message::Vote { epoch: Epoch::FIRST, txn, vote: Vote::YesPinned, round: txn.incarnation },
                },
            );
        }
        // Changes off: every YES makes it visible, applied here, and `Visible` tells the others.
        let sent = settle(&mut node);
        assert!(sent.contains(&(NodeId(1), Message::Visible { epoch: Epoch::FIRST, txn })), "{txn} commits");
        node.handle(NOW, Input::Message { from: NodeId(1), message: Message::Ack { epoch: Epoch::FIRST, txn } });
        settle(&mut node);
        node.check_invariants().unwrap();
        node.participant.break_known(txn, Decision::Abort);
        assert_reports(&node, "is committed here but the node learned Some(Abort)");
    }

    #[test]
    fn a_retry_that_is_never_due_is_reported() {
        let mut node = booted();
        prepare_remote(&mut node, 1, "k");
        // Node 1's transaction holds "k": this write loses the conflict and waits to retry.
        node.handle(NOW, client_write(5, "k"));
        settle(&mut node);
        assert_eq!(node.stats().conflict_retries, 1);
        node.check_invariants().unwrap();
        node.shared.timers.cancel(Timer::Retry(RequestId { client: ClientId(5), seq: 1 }));
        assert_reports(&node, "waits for a retry that is never due");
    }

    #[test]
    fn a_durable_mark_beyond_the_log_is_reported() {
        let mut node = booted();
        node.shared.outbox.break_durable(Lsn(1000));
        assert_reports(&node, "durable through lsn 1000 but only 2 records were emitted");
    }

    #[test]
    fn an_action_waiting_out_of_log_order_is_reported() {
        let mut node = booted();
        let (txn, message) = prepare_message(1, "k");
        // Not made durable: the vote waits on the PREPARE record (lsn 3; the start's records,
        // `BootTracked` and `ChangesOff`, are 1 and 2).
        node.handle(NOW, Input::Message { from: NodeId(1), message });
        node.check_invariants().unwrap();
        node.shared.outbox.break_wait(Lsn(1), AfterDurable::Ack(txn));
        assert_reports(&node, "waits on lsn 1 after lsn 3");
    }

    #[test]
    fn a_held_commit_missing_from_the_commit_memory_is_reported() {
        let mut node = booted();
        let txn = prepare_remote(&mut node, 1, "k");
        let commit = Message::Decision { epoch: Epoch::FIRST, txn, decision: Decision::Commit };
        node.handle(NOW, Input::Message { from: NodeId(1), message: commit });
        settle(&mut node);
        node.check_invariants().unwrap();
        node.participant.forget_own(txn);
        assert_reports(&node, "holds its commit but is not remembered");
    }
}
