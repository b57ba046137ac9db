//! Liveness, judged once the run is over: after the heal (every fault stops, every node comes
//! back), every request that no client abandoned completes within [`LIVENESS_BOUND`], every
//! client issues all its operations, and every node ends up and quiescent (no locked keys, no
//! prepared transactions, none left to coordinate). A run that needs more than [`EVENTS_MAX`]
//! events does not settle at all.

use super::Violation;
use crate::history::History;
use dkv_core::Node;
use std::time::Duration;

/// After the heal, every request completes within this much virtual time (counted from the
/// heal, or from the request's invocation if that came later).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(30);

/// Events per run at most: a run that needs more is stuck in a storm, which is a bug.
pub const EVENTS_MAX: u64 = 5_000_000;

/// How a run ended, as far as its requests and clients go.
pub(crate) struct Ending {
    /// When every fault stopped; `None` if the run ended first.
    pub healed_at: Option<u64>,
    /// The run was cut off after [`EVENTS_MAX`] events.
    pub out_of_events: bool,
    /// Clients that still had operations to issue.
    pub unfinished_clients: usize,
}

/// The requests and clients of a run that ended as `ending` says.
pub(crate) fn check_requests(history: &History, ending: &Ending) -> Vec<Violation> {
    let mut violations = Vec::new();
    if ending.out_of_events {
        violations.push(Violation::new("liveness", format!("more than {EVENTS_MAX} events: the run does not settle")));
    }
    let Some(healed) = ending.healed_at else {
        violations.push(Violation::new("liveness", "the run ended before the cluster healed".into()));
        return violations;
    };
    let bound = LIVENESS_BOUND.as_nanos() as u64;
    let mut stuck = Vec::new();
    for op in history.ops.iter().filter(|op| op.abandoned_at.is_none()) {
        let start = op.invoke.max(healed);
        match op.response {
            Some(r) if r - start.min(r) <= bound => {}
            _ => stuck.push(op.describe()),
        }
    }
    if !stuck.is_empty() {
        let n = stuck.len();
        violations.push(Violation {
            checker: "liveness",
            key: None,
            message: format!("{n} requests did not complete within {LIVENESS_BOUND:?} of the heal"),
            ops: stuck.into_iter().take(10).collect(),
        });
    }
    // Unfinished clients are only worth a word of their own when nothing above explains them.
    if ending.unfinished_clients > 0 && violations.is_empty() {
        violations.push(Violation::new(
            "liveness",
            format!("{} clients did not finish their operations", ending.unfinished_clients),
        ));
    }
    violations
}

/// Node `i` at the end of a run that healed (`None`: the node is down).
pub(crate) fn check_node(i: usize, node: Option<&Node>) -> Option<Violation> {
    match node {
        Some(node) if !node.is_quiescent() => Some(Violation::new(
            "liveness",
            format!(
                "n{i} is not quiescent after the heal: {} locked keys, {} prepared, {} coordinating",
                node.locked_keys(),
                node.prepared_count(),
                node.coordinating_count()
            ),
        )),
        Some(_) => None,
        None => Some(Violation::new("liveness", format!("n{i} is down at the end"))),
    }
}
