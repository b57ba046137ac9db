//! Convergence, judged once the run is over: every replica that is up holds the same data and
//! the same completion records (which requests finished, and how) as the first one that is up
//! (n0 unless it is down or left out: the simulator passes only the members of the final
//! configuration, since a removed node keeps the state of when it left). Full replication
//! means every committed transaction is applied everywhere, so any difference is a lost or an
//! extra application.
//!
//! Where the completion table can fill (tight bounds), each node evicts records once they are
//! past their retention by its own clock, and a restarted node counts the records it recovered
//! as new, so two nodes may hold different sets of clients; the records that both hold must
//! still agree.

use super::Violation;
use crate::history::show;
use dkv_core::completions::Completed;
use dkv_core::{ClientId, Node, RequestId};
use std::collections::BTreeSet;

/// `replicas` are every node at the end of the run, `None` where it is down (or not judged).
/// Each is compared with the first one up (named n0 below, whichever node it is).
/// `evictions` says whether completion tables may have filled and evicted.
pub fn check(replicas: &[Option<&Node>], evictions: bool) -> Vec<Violation> {
    let Some(first) = replicas.iter().position(Option::is_some) else { return Vec::new() };
    let n0 = replicas[first].expect("found above");
    let others = || replicas.iter().enumerate().skip(first + 1).filter_map(|(i, node)| Some((i, (*node)?)));
    let mut violations = Vec::new();
    let n0_completions = completions(n0);
    for (i, other) in others() {
        let mut other = completions(other);
        let mut n0_completions = n0_completions.clone();
        if evictions {
            let held = |set: &BTreeSet<(RequestId, Completed)>| -> BTreeSet<ClientId> {
                set.iter().map(|(r, _)| r.client).collect()
            };
            let both: BTreeSet<ClientId> = held(&n0_completions).intersection(&held(&other)).copied().collect();
            n0_completions.retain(|(r, _)| both.contains(&r.client));
            other.retain(|(r, _)| both.contains(&r.client));
        }
        if other != n0_completions {
            let differing: Vec<String> =
                n0_completions.symmetric_difference(&other).take(3).map(|(r, o)| format!("{r}: {o:?}")).collect();
            violations.push(violation(None, format!("n{i} and n0 hold different completion records: {differing:?}")));
        }
    }
    let n0_store = n0.store();
    for (i, other) in others() {
        let store = other.store();
        if store != n0_store {
            // Values or versions.
            let differing: Vec<String> = n0_store
                .iter_versioned()
                .filter(|(k, v)| store.get_versioned(k) != Some(v))
                .map(|(k, _)| show(k))
                .chain(store.iter().filter(|(k, _)| n0_store.get(k).is_none()).map(|(k, _)| show(k)))
                .take(5)
                .collect();
            violations
                .push(violation(differing.first().cloned(), format!("n{i} differs from n0 on keys {differing:?}")));
        }
    }
    violations
}

/// A node's completion records, as a set to compare.
fn completions(node: &Node) -> BTreeSet<(RequestId, Completed)> {
    node.completions().map(|c| (c.request, c.outcome)).collect()
}

fn violation(key: Option<String>, message: String) -> Violation {
    Violation { checker: "convergence", key, message, ops: vec![] }
}
