//! Liveness, judged once the run is over: after the heal (every fault stops, every node comes
//! back), every request that no client abandoned completes within [`LIVENESS_BOUND`], every
//! client issues all its operations, and every node ends up and quiescent (no locked keys, no
//! prepared transactions, none left to coordinate). A run that needs more than [`EVENTS_MAX`]
//! events does not settle at all.
//!
//! For a protocol that tolerates a minority down (`Params::minority_faults`), liveness is also
//! judged *during* the faults ([`check_during_faults`]): while a majority of the members is up
//! and connected, a request sent to one of them completes within [`FAULT_LIVENESS_BOUND`].

use super::Violation;
use crate::history::History;
use crate::world::{CLIENT_SENDS_BEFORE_FAIL_OVER, CLIENT_TIMEOUT, TRY_AGAIN_BACKOFF_MAX};
use dkv_core::{Epoch, Node, NodeId, NodeSet};
use std::collections::BTreeMap;
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

// ---- Liveness during faults ----
//
// The bound is the sum of what may stand between a fault and the answer to a request sent to a
// member of the majority side, each step taken at its longest. The first three are the timings
// of docs/protocol.md §7.3 and §7.5, which dkv-core does not have yet (issue 12): when they land
// in `dkv_core::Timing`, take them from there (a test below already ties `VOTE_TIMEOUT` to it).

/// A member not heard from for this long is suspected (docs/protocol.md §7.3, `detection_timeout`).
pub const DETECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// From suspicion to the new configuration installed on the majority (§7.3: removal ends within
/// 3 s of the last message heard, detection included).
pub const CONFIGURATION_CHANGE: Duration = Duration::from_secs(2);
/// How long a read lease lasts (§7.5, `lease_duration`): assumed until dkv-core states it.
pub const LEASE_DURATION: Duration = Duration::from_secs(1);
/// What a grantor waits after its last grant before the new configuration acts without the
/// dropped member: `lease_duration × (1 + ρ) / (1 − ρ)`, ρ = 1 % (§7.5), rounded up.
pub const LEASE_WAIT: Duration = Duration::from_nanos((LEASE_DURATION.as_nanos() as u64 * 101).div_ceil(99));
/// The attempt in flight when the fault hit ends at the latest at its vote timeout
/// (`Timing::vote_timeout`'s default), answered "try again" or settled by the change.
pub const VOTE_TIMEOUT: Duration = Duration::from_secs(2);

/// While the majority side stays the same, a request sent to one of its members completes
/// within this long of the later of the moment the side formed (the last fault that changed
/// it) and the request's send: failure detection, the configuration change, the wait for the
/// dropped member's lease, the attempt in flight timing out, then the client's retry — after
/// its reply timeouts (sends to a node that died unanswered; it fails over after
/// `CLIENT_SENDS_BEFORE_FAIL_OVER` of them) or after its longest backoff (a "try again"). About
/// 9 s with today's settings. A client that passes more than one node that is down on its way
/// round the nodes is given the time it waited on each further one ([`check_during_faults`]).
pub const FAULT_LIVENESS_BOUND: Duration = Duration::from_nanos(
    (DETECTION_TIMEOUT.as_nanos()
        + CONFIGURATION_CHANGE.as_nanos()
        + LEASE_WAIT.as_nanos()
        + VOTE_TIMEOUT.as_nanos()
        + CLIENT_TIMEOUT.as_nanos() * CLIENT_SENDS_BEFORE_FAIL_OVER as u128
        + TRY_AGAIN_BACKOFF_MAX.as_nanos()) as u64,
);

/// From `at` on (global nanoseconds), the members of the majority side: a bit per node, 0 when
/// no majority of the members is up and connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SideChange {
    pub at: u64,
    pub side: u64,
}

/// An answer at `at` that a request (operation `op` of the history) lost to other work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Contended {
    pub op: usize,
    pub at: u64,
}

/// A send of a request (operation `op` of the history) to node `node` at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    pub op: usize,
    pub at: u64,
    pub node: usize,
}

/// Liveness during faults. `sides` is the majority side over the run, from time 0, in time
/// order; `sends` every send of every request, and `contended` every answer that a request
/// lost to other work, each in time order; the run ended at `end`.
///
/// A request is *owed* an answer once, while one majority side lasts, it is pending with its
/// latest send on a member of that side: from the moment the side formed, if the request was
/// already waiting on such a member, or else from its first send to one. It must then get its
/// definite outcome within [`FAULT_LIVENESS_BOUND`], unless the side changes first (a new fault,
/// or a member returning, starts the count again), the client abandons it, or the run ends.
/// Requests sent only to members cut off or down owe nothing: their clients fail over. The
/// bound counts one node down on the client's way; each send past those to a node off the side
/// adds its reply timeout. (Seen with seven nodes, three of them crashed for good and next to
/// each other in the clients' order: a client went round the four live ones, each "not serving"
/// just before the change installed, then spent 6 s on the three dead ones, while the cluster
/// served a second after the install.)
///
/// An answer that the request lost to other work — "try again" for a conflict, the same request
/// in progress elsewhere, or a busy node — also counts, and the count starts again from it:
/// the cluster is working, for others. How long contention may starve a request has no bound
/// (no-wait locks, retried with random backoff); that is the post-heal check's to judge. A
/// blocked cluster answers "unavailable", "locked", or nothing.
pub(crate) fn check_during_faults(
    history: &History,
    sides: &[SideChange],
    sends: &[Sent],
    contended: &[Contended],
    end: u64,
) -> Option<Violation> {
    let mut by_op: Vec<Vec<(u64, usize)>> = vec![Vec::new(); history.ops.len()];
    for s in sends {
        by_op[s.op].push((s.at, s.node));
    }
    let mut contended_by_op: Vec<Vec<u64>> = vec![Vec::new(); history.ops.len()];
    for c in contended {
        contended_by_op[c.op].push(c.at);
    }
    let bound = FAULT_LIVENESS_BOUND.as_nanos() as u64;
    let mut late = Vec::new();
    for ((op, sends), contended) in history.ops.iter().zip(&by_op).zip(&contended_by_op) {
        let done = op.response.unwrap_or(u64::MAX).min(op.abandoned_at.unwrap_or(u64::MAX));
        if let Some(owed) = missed_answer(op.invoke, done, sends, contended, sides, end, bound) {
            late.push(format!("{} (owed an answer from {:.3}s)", op.describe(), owed as f64 / 1e9));
        }
    }
    if late.is_empty() {
        return None;
    }
    Some(Violation {
        checker: "liveness-during-faults",
        key: None,
        message: format!(
            "{} requests sent to a member of the majority side got no outcome within {FAULT_LIVENESS_BOUND:?} \
             while that side lasted",
            late.len()
        ),
        ops: late.into_iter().take(10).collect(),
    })
}

/// When a request invoked at `invoke` and done (answered or abandoned) at `done` was last owed
/// an answer it did not get in time, if ever.
fn missed_answer(
    invoke: u64,
    done: u64,
    sends: &[(u64, usize)],
    contended: &[u64],
    sides: &[SideChange],
    end: u64,
    bound: u64,
) -> Option<u64> {
    let first = sides.partition_point(|c| c.at <= invoke).saturating_sub(1);
    for (k, change) in sides.iter().enumerate().skip(first) {
        let (from, until) = (change.at.max(invoke), sides.get(k + 1).map_or(end, |next| next.at));
        if from >= done {
            break;
        }
        let on_side = |node: usize| node < 64 && change.side & (1 << node) != 0;
        let waiting_on = sends.iter().take_while(|(at, _)| *at <= from).last().map(|&(_, node)| node);
        let owed = if waiting_on.is_some_and(on_side) {
            Some(from)
        } else {
            sends.iter().find(|&&(at, node)| at > from && at < until && on_side(node)).map(|&(at, _)| at)
        };
        if let Some(mut owed) = owed {
            // Each contention answer starts the count again, unless it came too late.
            let start = owed;
            for &at in contended.iter().filter(|&&at| at > start && at < until.min(done)) {
                if at - owed > bound {
                    break;
                }
                owed = at;
            }
            // The client's waits on nodes off the side, past the one node the bound counts.
            let counted = u64::from(CLIENT_SENDS_BEFORE_FAIL_OVER);
            let timeout = CLIENT_TIMEOUT.as_nanos() as u64;
            let waited_off_side = |due: u64| {
                let off = sends.iter().filter(|&&(at, node)| at >= owed && at < due && !on_side(node)).count() as u64;
                off.saturating_sub(counted) * timeout
            };
            let mut due = owed + bound;
            loop {
                let later = owed + bound + waited_off_side(due);
                if later <= due {
                    break;
                }
                due = later;
            }
            if due < until && due <= end && done > due {
                return Some(owed);
            }
        }
    }
    None
}

/// More changes than this in a row that keep the members they found, within one detection
/// timeout, are the configuration thrashing. A change that keeps its members only ends an
/// epoch, which a member that promised needs when nothing was chosen (docs/protocol.md §7.3);
/// such changes are spaced by detection timeouts, and members that suspect each other make one
/// each at most. (With every fix in, 40,000 default seeds showed at most 3 within a detection
/// timeout; with a promise not counted as hearing its sender, 12 to 122.)
pub const SAME_MEMBERS_CHANGES_MAX: usize = 4;

/// The configuration does not thrash: no more than [`SAME_MEMBERS_CHANGES_MAX`] changes in a
/// row that keep the members they found, within one detection timeout. `configurations` holds
/// each epoch installed in the run, its members, and when a node first installed it.
pub fn check_changes(configurations: &BTreeMap<Epoch, (NodeSet, u64)>) -> Option<Violation> {
    let window = DETECTION_TIMEOUT.as_nanos() as u64;
    let mut previous: Option<(Epoch, NodeSet)> = None;
    // When each change of the current run of same-member changes was first installed.
    let mut run: Vec<u64> = Vec::new();
    for (&epoch, &(members, at)) in configurations {
        match previous {
            Some((e, m)) if e.next() == Some(epoch) && m == members => run.push(at),
            _ => run.clear(),
        }
        previous = Some((epoch, members));
        let within = run.iter().filter(|&&t| at.saturating_sub(t) < window).count();
        if within > SAME_MEMBERS_CHANGES_MAX {
            let first = Epoch(epoch.0 - within as u64);
            let message = format!(
                "{within} changes in a row kept the members {members} within {DETECTION_TIMEOUT:?} \
                 (epochs {first} to {epoch}): the configuration thrashes"
            );
            return Some(Violation::new("thrash", message));
        }
    }
    None
}

/// How long the `thrash` checker looks back for removals of one node.
pub const REMOVALS_WINDOW: Duration = Duration::from_secs(20);

/// More removals of one node than this within [`REMOVALS_WINDOW`] are the configuration
/// thrashing: a node that keeps being added and removed (a link cut between it and one member,
/// while a third hears it ask to join; a node that keeps crashing). Members wait
/// `detection_timeout × (2^k − 1)` before adding back a node removed k times in a row soon after
/// its adds (docs/protocol.md §7.6): 0, 1, 3 and 7 timeouts of 1 s after its first four, so its
/// fifth removal comes 11 s after its first at the soonest, and a sixth 15 s after that.
/// Members forget the backoff when they start (a restart, or a new start after a catch-up), so
/// a node's removals are counted only between two starts of the other nodes (its own starts,
/// catch-ups included, leave what the others remember as it was). One more is allowed for
/// removals seen a little apart: each is timed at the first install of its epoch anywhere.
pub const REMOVALS_MAX: usize = 6;

/// The times each node was removed from the configuration: the first install of each epoch
/// whose members lack a node that the epoch before had.
pub fn removals(configurations: &BTreeMap<Epoch, (NodeSet, u64)>) -> BTreeMap<NodeId, Vec<u64>> {
    let mut removals: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
    let mut previous: Option<(Epoch, NodeSet)> = None;
    for (&epoch, &(members, at)) in configurations {
        if let Some((e, m)) = previous
            && e.next() == Some(epoch)
        {
            for node in m.difference(members).iter() {
                removals.entry(node).or_default().push(at);
            }
        }
        previous = Some((epoch, members));
    }
    removals
}

/// The most removals of one node within any [`REMOVALS_WINDOW`] with no start of another node
/// among them (`starts`: when each node started, in order), and which node.
pub fn most_removals(
    configurations: &BTreeMap<Epoch, (NodeSet, u64)>,
    starts: &[(u64, NodeId)],
) -> (usize, Option<NodeId>) {
    let window = REMOVALS_WINDOW.as_nanos() as u64;
    let mut most = (0, None);
    for (node, times) in removals(configurations) {
        for (i, &first) in times.iter().enumerate() {
            // The next start of another node after the first removal ends the count.
            let next_start = starts.iter().find(|&&(at, started)| at > first && started != node);
            let until = next_start.map_or(first + window, |&(at, _)| at.min(first + window));
            let within = times[i..].iter().take_while(|&&t| t < until).count();
            if within > most.0 {
                most = (within, Some(node));
            }
        }
    }
    most
}

/// No node is removed more than [`REMOVALS_MAX`] times within [`REMOVALS_WINDOW`]: a node that
/// flaps is backed off, not added back at once each time.
pub fn check_removals(configurations: &BTreeMap<Epoch, (NodeSet, u64)>, starts: &[(u64, NodeId)]) -> Option<Violation> {
    removals_violation(most_removals(configurations, starts))
}

/// The `thrash` violation for [`most_removals`]'s count, if it is over [`REMOVALS_MAX`].
pub fn removals_violation((most, node): (usize, Option<NodeId>)) -> Option<Violation> {
    let node = node?;
    (most > REMOVALS_MAX).then(|| {
        Violation::new(
            "thrash",
            format!(
                "{node} was removed {most} times within {REMOVALS_WINDOW:?}: the configuration thrashes \
                 (a flapping node must wait out a growing backoff before each add)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpKind, Result as OpResult};
    use dkv_core::ClientId;

    const S: u64 = 1_000_000_000;

    fn op(invoke: u64, response: Option<u64>) -> Op {
        Op {
            client: ClientId(1),
            seq: 1,
            kind: OpKind::Get { key: b"k".to_vec() },
            invoke,
            response,
            result: if response.is_some() { OpResult::Read(None, 0) } else { OpResult::Unknown },
            attempts: 1,
            abandoned_at: None,
        }
    }

    fn judge(invoke: u64, response: Option<u64>, sends: &[(u64, usize)], sides: &[(u64, u64)], end: u64) -> bool {
        judge_contended(invoke, response, sends, &[], sides, end)
    }

    fn judge_contended(
        invoke: u64,
        response: Option<u64>,
        sends: &[(u64, usize)],
        contended: &[u64],
        sides: &[(u64, u64)],
        end: u64,
    ) -> bool {
        let history = History { ops: vec![op(invoke, response)] };
        let sends: Vec<Sent> = sends.iter().map(|&(at, node)| Sent { op: 0, at, node }).collect();
        let contended: Vec<Contended> = contended.iter().map(|&at| Contended { op: 0, at }).collect();
        let sides: Vec<SideChange> = sides.iter().map(|&(at, side)| SideChange { at, side }).collect();
        check_during_faults(&history, &sides, &sends, &contended, end).is_none()
    }

    /// A request that keeps losing to other work ("try again: conflict") is not blocked by a
    /// fault: each such answer starts the count again. A gap longer than the bound between them
    /// still is.
    #[test]
    fn losing_to_contention_starts_the_count_again() {
        let all = 0b111;
        let sends = [(S, 0)];
        // Answered at 20 s, after conflicts every 5 s: never 9.02 s without an answer.
        let every_five: Vec<u64> = (1..4).map(|k| S + k * 5 * S).collect();
        assert!(judge_contended(S, Some(20 * S), &sends, &every_five, &[(0, all)], 30 * S));
        // One conflict at 2 s, then silence: owed again from 2 s, due by 11.02 s.
        assert!(!judge_contended(S, Some(12 * S), &sends, &[2 * S], &[(0, all)], 30 * S));
        assert!(judge_contended(S, Some(11 * S), &sends, &[2 * S], &[(0, all)], 30 * S));
        // A conflict that came after the bound ran out does not excuse the silence before it.
        assert!(!judge_contended(S, Some(20 * S), &sends, &[12 * S], &[(0, all)], 30 * S));
    }

    /// The bound is today's timings added up; the vote timeout is dkv-core's.
    #[test]
    fn the_bound_adds_up_the_timings() {
        assert_eq!(VOTE_TIMEOUT, dkv_core::Timing::default().vote_timeout);
        assert!(LEASE_WAIT > LEASE_DURATION && LEASE_WAIT < LEASE_DURATION * 103 / 100);
        assert_eq!(FAULT_LIVENESS_BOUND.as_millis(), 9_020);
    }

    /// A request sent to a majority member and left unanswered past the bound, while the side
    /// lasts, is reported; answered in time, or the side changing first, or sent only to a
    /// member off the side, it is not.
    #[test]
    fn a_request_owed_an_answer_must_get_it_within_the_bound() {
        let all = 0b111;
        let without_n2 = 0b011;
        let late = 9 * S;
        // Sent to n0 at 1 s, majority {n0, n1, n2} throughout: owed from 1 s, due by 10.02 s.
        assert!(!judge(S, None, &[(S, 0)], &[(0, all)], 20 * S));
        assert!(!judge(S, Some(11 * S), &[(S, 0)], &[(0, all)], 20 * S));
        assert!(judge(S, Some(late), &[(S, 0)], &[(0, all)], 20 * S));
        // The run ended before it was due: no verdict.
        assert!(judge(S, None, &[(S, 0)], &[(0, all)], 9 * S));
        // The side changed at 5 s (n2 cut off) and stayed: owed again from 5 s, due by 14.02 s.
        assert!(judge(S, Some(13 * S), &[(S, 0)], &[(0, all), (5 * S, without_n2)], 20 * S));
        assert!(!judge(S, Some(15 * S), &[(S, 0)], &[(0, all), (5 * S, without_n2)], 20 * S));
        // Sent to n2, off the side: owed nothing until the client fails over to n0 at 4 s.
        assert!(judge(S, None, &[(S, 2)], &[(0, without_n2)], 20 * S));
        assert!(!judge(S, Some(14 * S), &[(S, 2), (4 * S, 0)], &[(0, without_n2)], 20 * S));
        assert!(judge(S, Some(13 * S), &[(S, 2), (4 * S, 0)], &[(0, without_n2)], 20 * S));
        // Seven nodes, n1..n3 down: a client that fails over from n0 through all three is given
        // 1 s for each send to them past the two the bound counts (4 s here): due by 14.02 s.
        let live = 0b111_0001;
        let round = [(S, 0), (2 * S, 1), (3 * S, 1), (4 * S, 2), (5 * S, 2), (6 * S, 3), (7 * S, 3), (8 * S, 4)];
        assert!(judge(S, Some(14 * S), &round, &[(0, live)], 30 * S));
        assert!(!judge(S, Some(15 * S), &round, &[(0, live)], 30 * S));
        // Passing one down node only is within the bound itself: due by 10.02 s.
        assert!(!judge(S, Some(11 * S), &round[..3], &[(0, live)], 30 * S));
        // No majority side at all: nothing is owed.
        assert!(judge(S, None, &[(S, 0)], &[(0, 0)], 60 * S));
        // Sides that change faster than the bound owe nothing either.
        let flapping: Vec<(u64, u64)> =
            (0..20).map(|k| (k * 3 * S, if k % 2 == 0 { all } else { without_n2 })).collect();
        assert!(judge(S, None, &[(S, 0)], &flapping, 60 * S));
    }

    /// Five same-member changes within a detection timeout thrash; four do not, nor do five
    /// spaced out, and a change of members starts the count again.
    #[test]
    fn same_member_changes_within_a_detection_timeout_thrash() {
        let ms = 1_000_000u64;
        let all = NodeSet::from_ids([0, 1, 2].map(dkv_core::NodeId)).unwrap();
        let two = NodeSet::from_ids([0, 1].map(dkv_core::NodeId)).unwrap();
        let run = |changes: &[(NodeSet, u64)]| -> BTreeMap<Epoch, (NodeSet, u64)> {
            changes.iter().enumerate().map(|(i, &(members, at))| (Epoch(i as u64 + 1), (members, at))).collect()
        };
        let quick: Vec<_> = (0..6).map(|i| (all, 1_000 * ms + i * 20 * ms)).collect();
        let violation = check_changes(&run(&quick)).expect("five same-member changes in 100 ms");
        assert_eq!(violation.checker, "thrash");
        assert!(check_changes(&run(&quick[..5])).is_none(), "four are allowed");
        let spaced: Vec<_> = (0..8).map(|i| (all, i * 400 * ms)).collect();
        assert!(check_changes(&run(&spaced)).is_none(), "at most three within any second");
        let mut broken = quick.clone();
        broken[3].0 = two;
        assert!(check_changes(&run(&broken)).is_none(), "a change of members in between");
    }

    /// A node removed seven times within 20 s thrashes; removals spaced as the backoff spaces
    /// them do not, nor do removals of different nodes.
    #[test]
    fn a_node_removed_too_often_thrashes() {
        let ms = 1_000_000u64;
        let all = NodeSet::from_ids([0, 1, 2].map(dkv_core::NodeId)).unwrap();
        let without = |n: u8| all.without(dkv_core::NodeId(n));
        // Each pair: removed, then added back 100 ms later.
        let flaps = |removed_at: &[u64], node: u8| -> BTreeMap<Epoch, (NodeSet, u64)> {
            let mut run = BTreeMap::new();
            run.insert(Epoch(1), (all, 0));
            for (i, &at) in removed_at.iter().enumerate() {
                run.insert(Epoch(2 * i as u64 + 2), (without(node), at * ms));
                run.insert(Epoch(2 * i as u64 + 3), (all, at * ms + 100 * ms));
            }
            run
        };
        let quick: Vec<u64> = (1..=7).map(|i| i * 1_500).collect();
        let violation = check_removals(&flaps(&quick, 2), &[]).expect("seven removals in 10.5 s");
        assert_eq!(violation.checker, "thrash");
        assert_eq!(most_removals(&flaps(&quick, 2), &[]), (7, Some(dkv_core::NodeId(2))));
        assert!(check_removals(&flaps(&quick[..6], 2), &[]).is_none(), "six are allowed");
        // The backoff's spacing: 0, 1, 3, 7, 15 detection timeouts after the first removals.
        let backed_off = [1_000, 2_200, 4_400, 8_600, 16_800, 33_000, 64_200];
        assert!(check_removals(&flaps(&backed_off, 2), &[]).is_none());
        assert_eq!(most_removals(&flaps(&backed_off, 2), &[]).0, 5);
        // The same times split between two nodes.
        let mut two = flaps(&quick[..4], 1);
        let last = two.keys().next_back().unwrap().0;
        for (i, &at) in quick[4..].iter().enumerate() {
            two.insert(Epoch(last + 2 * i as u64 + 1), (without(2), at * ms));
            two.insert(Epoch(last + 2 * i as u64 + 2), (all, at * ms + 100 * ms));
        }
        assert_eq!(most_removals(&two, &[]).0, 4);
        // A start of another node in between: the members may have forgotten the backoff. The
        // flapping node's own starts (its catch-ups after each add) change nothing.
        let n = dkv_core::NodeId;
        assert_eq!(most_removals(&flaps(&quick, 2), &[(5_000 * ms, n(0))]).0, 4);
        assert!(check_removals(&flaps(&quick, 2), &[(5_000 * ms, n(0))]).is_none());
        let own: Vec<(u64, dkv_core::NodeId)> = quick.iter().map(|&at| (at * ms + 500 * ms, n(2))).collect();
        assert_eq!(most_removals(&flaps(&quick, 2), &own).0, 7);
    }
}
