//! Exactly-once, observed at each node's disk: a request whose application became durable at
//! one node under two different transactions, or a transaction applied twice at one node, was
//! applied twice. A commit that never became durable did not happen: the crash that lost it
//! also lost its effects, so the checker looks only at records as they become durable (an
//! fsync completes, or a crash leaves them on disk unreported).

use super::Violation;
use crate::history::{History, OpKind, show};
use dkv_core::{Record, RequestId, TxnId};
use std::collections::{BTreeMap, BTreeSet};

/// Fed every record that becomes durable at any node; reports double applications as they
/// happen.
pub struct ExactlyOnce {
    nodes: Vec<NodeApplications>,
    /// Requests committed at a node that has since replaced its log by a catch-up: the adopted
    /// log holds their effects (in a snapshot, where no record names them), so they still took
    /// effect.
    carried: BTreeSet<RequestId>,
    /// Durable applications of a request, over all nodes.
    applications: u64,
}

/// What one node's durable records say it applied.
#[derive(Default)]
struct NodeApplications {
    /// The request of each durably prepared transaction: a commit record names only the
    /// transaction.
    prepared: BTreeMap<TxnId, RequestId>,
    /// The first transaction under which each request was applied.
    first_applied_by: BTreeMap<RequestId, TxnId>,
    /// Every transaction whose application became durable.
    applied: BTreeSet<TxnId>,
    /// Requests whose commit is durably decided here (a coordinator's decision, or a
    /// participant's learned commit): applied here once visible, if not yet.
    committed: BTreeSet<RequestId>,
}

impl ExactlyOnce {
    pub fn new(nodes: usize) -> ExactlyOnce {
        ExactlyOnce {
            nodes: (0..nodes).map(|_| NodeApplications::default()).collect(),
            carried: BTreeSet::new(),
            applications: 0,
        }
    }

    /// Durable applications of a request seen so far, over all nodes.
    pub fn applications(&self) -> u64 {
        self.applications
    }

    /// Whether `request` was committed durably at any node: its transaction was decided
    /// commit, and takes effect (the record that applies it may wait for a later sync).
    pub fn applied_anywhere(&self, request: RequestId) -> bool {
        self.carried.contains(&request)
            || self.nodes.iter().any(|n| n.first_applied_by.contains_key(&request) || n.committed.contains(&request))
    }

    /// `record` became durable at node `node`. A double application is added to `violations`,
    /// naming the request's operation in `history`.
    pub fn observe_durable(
        &mut self,
        node: usize,
        record: &Record,
        history: &History,
        violations: &mut Vec<Violation>,
    ) {
        let applications = &mut self.nodes[node];
        // A node applies a transaction with its Committed record, its own share included (an
        // earlier build's coordinator: with its decision record).
        let (request, txn) = match record {
            Record::Prepared(t) | Record::PreparedInEpoch { txn: t, .. } => {
                applications.prepared.insert(t.txn, t.request);
                return;
            }
            Record::Committed { txn } => match applications.prepared.get(txn) {
                Some(request) => (*request, *txn),
                None => return,
            },
            Record::Decided(t) => (t.request, t.txn),
            Record::CommitDecided { txn } | Record::CommitLearned { txn } => {
                if let Some(request) = applications.prepared.get(txn) {
                    applications.committed.insert(*request);
                }
                return;
            }
            // An install commits what its settlement commits and the node holds prepared,
            // with no record of its own: a commit inferred from the reports may have no
            // decision record anywhere (docs/protocol.md §7.4, "Inferred commits").
            Record::Installed(value) => {
                for txn in value.settlement.commit_set() {
                    if let Some(request) = applications.prepared.get(txn) {
                        applications.committed.insert(*request);
                    }
                }
                return;
            }
            _ => return,
        };
        self.applications += 1;
        if !applications.applied.insert(txn) {
            let message = format!("transaction {txn} (request {request}) was applied twice at n{node}");
            violations.push(violation(history, request, message));
        }
        let first = *applications.first_applied_by.entry(request).or_insert(txn);
        if first != txn {
            let message = format!("request {request} was applied twice at n{node}, by transactions {first} and {txn}");
            violations.push(violation(history, request, message));
        }
    }
}

impl ExactlyOnce {
    /// Node `node`'s data dir was lost: what it applied went with it, and whatever it applies
    /// again (after catching up) is not a second application.
    pub fn forget_node(&mut self, node: usize) {
        self.nodes[node] = NodeApplications::default();
    }

    /// Node `node` replaced its log by member `from`'s (a catch-up): what it applies from the
    /// new log is not a second application, but what it had committed did take effect (the
    /// member's log holds it, perhaps only in a snapshot), and so did what `from` had: the
    /// state goes on at `node`, though its records may not name it. (Seen with minority faults,
    /// seed 5172: every node that had applied a put later caught up, and the put of an unknown
    /// outcome was judged never applied; a delete that found the key looked impossible. And
    /// three-node seed 12611 with long absences: a commit inferred at an install, applied by
    /// the two nodes that held it, lived on only in a snapshot one of them streamed before both
    /// lost their data dirs.)
    pub fn adopted_log(&mut self, node: usize, from: usize) {
        let applications = std::mem::take(&mut self.nodes[node]);
        self.carried.extend(applications.committed);
        self.carried.extend(applications.first_applied_by.into_keys());
        let source = &self.nodes[from];
        self.carried.extend(source.committed.iter().copied());
        self.carried.extend(source.first_applied_by.keys().copied());
    }

    /// `record`, durable at node `node`, was lost from its log (recovery truncated it with a
    /// damaged tail): the application it recorded is gone from that node.
    pub fn lost(&mut self, node: usize, record: &Record) {
        let applications = &mut self.nodes[node];
        let txn = match record {
            Record::Prepared(t) => {
                applications.prepared.remove(&t.txn);
                return;
            }
            Record::Committed { txn } => *txn,
            Record::Decided(t) => t.txn,
            _ => return,
        };
        if applications.applied.remove(&txn) {
            applications.first_applied_by.retain(|_, first| *first != txn);
        }
    }
}

/// An exactly-once violation, naming the request's operation and its keys.
fn violation(history: &History, request: RequestId, message: String) -> Violation {
    let op = history.ops.iter().find(|op| op.client == request.client && op.seq == request.seq);
    let key = op.map(|op| match &op.kind {
        OpKind::Get { key } => show(key),
        OpKind::Txn { ops } => {
            let keys: BTreeSet<String> = ops.iter().map(|w| show(w.key())).collect();
            keys.into_iter().collect::<Vec<_>>().join(", ")
        }
        OpKind::Scan { start, .. } => show(start),
    });
    let ops = op.map(|op| vec![op.describe()]).unwrap_or_default();
    Violation { checker: "exactly-once", key, message, ops }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::record::TxnRecord;
    use dkv_core::{ClientId, NodeId, NodeSet};

    fn prepared(number: u64) -> Record {
        let txn = TxnId { coordinator: NodeId(1), incarnation: 1, number };
        let request = RequestId { client: ClientId(7), seq: 1 };
        Record::Prepared(TxnRecord { txn, request, ops: Vec::new().into(), participants: NodeSet::first(2) })
    }

    fn committed(number: u64) -> Record {
        Record::Committed { txn: TxnId { coordinator: NodeId(1), incarnation: 1, number } }
    }

    /// Watches `records` become durable at n0, one after the other; says how many violations.
    fn watch(checker: &mut ExactlyOnce, records: &[Record]) -> usize {
        let mut violations = Vec::new();
        for record in records {
            checker.observe_durable(0, record, &History::default(), &mut violations);
        }
        violations.len()
    }

    /// A request applied under a second transaction at one node is a double application —
    /// unless the node lost the first application with the record that held it (a truncated
    /// tail) or with its whole data dir: then applying it again is what catching up does.
    /// A request a node committed still took effect after the node adopted another log (a
    /// catch-up), and its applying the adopted log again is no second application; after a
    /// data dir lost, nothing of it is known any more.
    #[test]
    fn a_catch_up_keeps_what_was_committed() {
        let request = RequestId { client: ClientId(7), seq: 1 };
        let mut checker = ExactlyOnce::new(2);
        assert_eq!(watch(&mut checker, &[prepared(1), committed(1)]), 0);
        checker.adopted_log(0, 1);
        assert!(checker.applied_anywhere(request), "its effect is in the adopted log");
        assert_eq!(watch(&mut checker, &[prepared(2), committed(2)]), 0, "applied from the adopted log");

        // What the member streaming the state committed goes on at the node that took it, even
        // once the member lost its data dir.
        let mut checker = ExactlyOnce::new(2);
        let mut violations = Vec::new();
        for record in [prepared(1), committed(1)] {
            checker.observe_durable(1, &record, &History::default(), &mut violations);
        }
        checker.adopted_log(0, 1);
        checker.forget_node(1);
        assert!(checker.applied_anywhere(request), "its effect came with the member's state");

        let mut checker = ExactlyOnce::new(1);
        assert_eq!(watch(&mut checker, &[prepared(1), committed(1)]), 0);
        checker.forget_node(0);
        assert!(!checker.applied_anywhere(request), "the data dir went with it");
    }

    #[test]
    fn a_lost_application_is_no_application() {
        let mut checker = ExactlyOnce::new(1);
        assert_eq!(watch(&mut checker, &[prepared(1), committed(1)]), 0);
        assert_eq!(watch(&mut checker, &[prepared(2), committed(2)]), 1, "the same request under another txn");

        let mut checker = ExactlyOnce::new(1);
        assert_eq!(watch(&mut checker, &[prepared(1), committed(1)]), 0);
        checker.lost(0, &committed(1));
        assert_eq!(watch(&mut checker, &[prepared(2), committed(2)]), 0, "after the commit record was lost");

        let mut checker = ExactlyOnce::new(1);
        assert_eq!(watch(&mut checker, &[prepared(1), committed(1)]), 0);
        checker.forget_node(0);
        assert_eq!(watch(&mut checker, &[prepared(1), committed(1)]), 0, "after the data dir was lost");
        assert_eq!(checker.applications(), 2);
    }
}
