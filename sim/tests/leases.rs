//! Read leases in the simulator (docs/protocol.md §7.5): a node cut off from the majority
//! stops serving reads once its lease runs out — at most `L` of its clock after the last lease
//! request a majority granted — while the majority side keeps serving; the lease checker
//! watches every read a node answers, and every other checker passes.

use dkv_sim::{Isolation, Overrides, Report, RunOptions, run};
use std::time::Duration;

const L: Duration = Duration::from_millis(500);
const FROM: Duration = Duration::from_millis(100);
const UNTIL: Duration = Duration::from_millis(1_600);
/// Clock rates differ by up to 1 %: `L` of the cut-off node's clock is at most this long.
const SKEW_PPM: u32 = 10_000;

fn isolated(seed: u64) -> Report {
    let overrides = Overrides {
        nodes: Some(3),
        // Client c starts at node c: one client reads at the node to be cut off.
        clients: Some(3),
        ops_per_client: Some(1_500),
        keys: Some(50),
        no_faults: true,
        clock_skew_ppm: Some(SKEW_PPM),
        // Reads only: while a member is cut off, every write waits for it (writes need every
        // member until configurations change), and a client waiting on one reads nothing.
        mix: Some([1, 0, 0, 0, 0]),
        rich: Some([0, 1]),
        leases: Some(true),
        ..Overrides::default()
    };
    let isolate = Some(Isolation { node: 2, from: FROM, until: UNTIL });
    // The history search recurses once per operation: thousands of reads need a deep stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || run(seed, &RunOptions { overrides, isolate, ..RunOptions::default() }))
        .expect("a thread")
        .join()
        .expect("the run")
}

#[test]
fn a_node_cut_off_from_the_majority_stops_serving_after_its_lease() {
    let l_global = L.as_nanos() as u64 * 1_000_000 / (1_000_000 - u64::from(SKEW_PPM)) + 1;
    let from = FROM.as_nanos() as u64;
    let mut judged = 0;
    for seed in 0..8 {
        let report = isolated(seed);
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        let end = report.healed_at.map_or(UNTIL.as_nanos() as u64, |h| h.min(UNTIL.as_nanos() as u64));
        if end < from + 2 * l_global {
            continue; // the clients finished (and the cluster healed) too early to tell
        }
        judged += 1;
        let answers = |node: usize, after: u64, served: bool| {
            report
                .read_answers
                .iter()
                .filter(|a| a.node == node && a.served == served && a.at >= after && a.at < end)
                .count()
        };
        // The cut-off node serves nothing past its lease, and says so; until then it serves (its
        // last granted request went out at most a heartbeat interval, 100 ms, before the cut).
        assert_eq!(answers(2, from + l_global, true), 0, "seed {seed}: n2 served past its lease");
        let last_served = report.read_answers.iter().filter(|a| a.node == 2 && a.served).map(|a| a.at).max();
        let renewed = from + l_global - Duration::from_millis(150).as_nanos() as u64;
        assert!(last_served.is_some_and(|at| at >= renewed), "seed {seed}: n2 stopped serving early ({last_served:?})");
        assert!(answers(2, from, false) > 0, "seed {seed}: n2 never answered \"not serving\" while cut off");
        // The majority side keeps serving, past the cut-off node's lease too; but for a short gap
        // when, a detection timeout after the cut, it removes n2 (frozen members count
        // themselves no more, and the new epoch's lease needs a grant of that epoch).
        for node in [0, 1] {
            assert!(answers(node, from + l_global, true) > 0, "seed {seed}: n{node} stopped serving");
            assert!(answers(node, from, false) <= 10, "seed {seed}: n{node} refused reads beyond the change gap");
        }
        eprintln!(
            "seed {seed}: n2 served {} reads in the {:.0} ms after the cut, then refused {}; n0 and n1 served {} while it was cut off",
            answers(2, from, true),
            (last_served.unwrap_or(from) - from) as f64 / 1e6,
            answers(2, from, false),
            answers(0, from, true) + answers(1, from, true)
        );
    }
    assert!(judged >= 6, "only {judged} of 8 seeds kept the partition long enough to judge");
}
