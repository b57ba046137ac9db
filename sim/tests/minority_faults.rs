//! The faults of a protocol that tolerates a minority of members down (issue 12), and liveness
//! judged during them: what the swarm draws when `Params::minority_faults` is on, that it
//! draws nothing new when it is off, and that the liveness-during-faults check catches classic
//! two-phase commit blocking on a member crashed for good — the proof, once flipped, that the
//! protocol no longer blocks.

use dkv_sim::{MINORITY_FAULTS_BY_DEFAULT, Overrides, Report, RunOptions, Setup, run};

/// Flip to `true` when dkv's protocol survives a minority of members down (issue 12): the
/// runs below, which today must fail the liveness-during-faults check, must then pass every
/// checker.
const PROTOCOL_SURVIVES_A_MINORITY_DOWN: bool = true;

fn with_minority_faults(overrides: Overrides) -> RunOptions {
    RunOptions { overrides: Overrides { minority_faults: Some(true), ..overrides }, ..RunOptions::default() }
}

fn violations(report: &Report) -> String {
    report.violations.iter().map(|v| format!("  {v}\n")).collect()
}

/// One member of three, and two of five, crashed for good early in the run: classic 2PC needs
/// every member's vote, so every write sent to the members left ends "try again" and no request
/// completes — the liveness-during-faults check says so on every one of these seeds. (Seeds
/// where the clients finish before the crash owe nothing; these are ones where they do not.)
/// With configurations (§7.3, §7.4) the members left remove the crashed ones and go on: every
/// checker passes, the 5-node cluster surviving two members down.
///
/// Only the crashes for good are drawn (with loss, duplication and delay; no other crash,
/// partition or pause). With every fault drawn, a member removed while briefly down or paused
/// and another crashed for good before the first is added back (§7.6) can leave a
/// configuration without a live majority: 19 of seeds 0..999 of `dkv-sim run --minority-faults`
/// end so (docs/protocol.md §7.3, "A limit that remains with the join").
#[test]
fn classic_two_phase_commit_blocks_while_members_are_down_for_good() {
    for (nodes, down, seeds) in [(3, 1, [1, 2, 4, 5, 8, 9]), (5, 2, [1, 2, 3, 4, 5, 6])] {
        let options = with_minority_faults(Overrides {
            nodes: Some(nodes),
            permanent_crashes: Some(down),
            crashes: Some(false),
            partitions: Some(false),
            pauses: Some(false),
            ..Overrides::default()
        });
        for seed in seeds {
            let report = run(seed, &options);
            assert_eq!(report.stats.permanent_crashes, down as u64, "seed {seed}: {} members crashed for good", down);
            let blocked = report.violations.iter().any(|v| v.checker == "liveness-during-faults");
            if PROTOCOL_SURVIVES_A_MINORITY_DOWN {
                assert!(report.passed(), "{nodes} nodes, {down} down, seed {seed}:\n{}", violations(&report));
            } else {
                assert!(
                    blocked,
                    "{nodes} nodes, {down} down, seed {seed}: classic 2PC should block, yet the check saw nothing:\n{}",
                    violations(&report)
                );
            }
        }
    }
}

/// With the switch off (`--no-minority-faults`; the default until dkv survived a minority
/// down), a seed draws none of the new faults, clocks start together, and clients neither pause
/// between operations nor fail over. With the default, every seed draws them.
#[test]
fn the_switch_off_draws_nothing_new() {
    const {
        assert!(
            !MINORITY_FAULTS_BY_DEFAULT || PROTOCOL_SURVIVES_A_MINORITY_DOWN,
            "the switch is on before the protocol"
        )
    };
    for seed in 0..500 {
        assert_eq!(Setup::draw(seed, &Overrides::default()).params.minority_faults, MINORITY_FAULTS_BY_DEFAULT);
        let p = Setup::draw(seed, &Overrides { minority_faults: Some(false), ..Overrides::default() }).params;
        assert!(!p.minority_faults && !p.faults.has_lasting() && p.faults.fault_phase.is_none(), "seed {seed}: {p}");
        assert!(p.clock_offset_max.is_zero() && p.think_max.is_zero(), "seed {seed}: {p}");
    }
}

/// With the switch on, the swarm draws every lasting fault and every way it returns: members
/// crashed for good, long absences back with their log, without their data dir and with a
/// damaged last record, lasting partitions; clocks within the drift bound, started apart. And
/// 5-node clusters lose two members at once (f = 2) — as many as they can lose.
#[test]
fn the_swarm_draws_every_lasting_fault_and_five_node_clusters_that_lose_two() {
    let options = with_minority_faults(Overrides::default());
    let mut five_node_runs_losing_two = 0;
    let mut totals = dkv_sim::RunStats::default();
    for seed in 0..300 {
        let report = run(seed, &options);
        let p = &report.params;
        assert!(p.minority_faults, "seed {seed}");
        assert!(p.clock_skew_ppm < dkv_sim::params::DRIFT_BOUND_PPM, "seed {seed}: clocks outside the drift bound");
        assert!(
            report.stats.members_lost_max <= p.minority_max() as u64,
            "seed {seed}: {} members lost at once, more than f = {}",
            report.stats.members_lost_max,
            p.minority_max()
        );
        if p.nodes == 5 && report.stats.members_lost_max == 2 {
            five_node_runs_losing_two += 1;
        }
        totals.add(&report.stats);
    }
    println!(
        "seeds 0..300: {five_node_runs_losing_two} 5-node runs lost two members at once; {}",
        totals.faults_line()
    );
    assert!(five_node_runs_losing_two >= 3, "only {five_node_runs_losing_two} 5-node runs lost two members at once");
    let t = &totals;
    for (what, count) in [
        ("permanent crashes", t.permanent_crashes),
        ("long absences", t.absences),
        ("data dirs lost", t.data_dirs_lost),
        ("last synced records damaged", t.tails_damaged),
        ("lasting partitions", t.lasting_partitions),
    ] {
        assert!(count >= 5, "seeds 0..300 drew only {count} {what}: {}", t.faults_line());
    }
}
