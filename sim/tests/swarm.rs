//! The simulator's main test: a thousand swarm seeds, each its own cluster, workload and fault
//! mix, each passing every checker; determinism; and fault scripts. (The runs that found bugs
//! are saved runs in sim/regressions/, replayed by tests/regressions.rs.)

use dkv_sim::{Report, RunOptions, run};

fn failure_message(report: &Report) -> String {
    let mut s = format!("seed {} failed ({})\n", report.seed, report.params);
    for v in &report.violations {
        s.push_str(&format!("  {v}\n"));
    }
    s.push_str(&format!("replay: cargo run --release --bin dkv-sim -- run --seed {} --trace\n", report.seed));
    s
}

/// Runs every seed, fails with all failures' replay commands, and returns how many operations
/// the runs completed in all (so a caller can tell a sweep that exercised something from one
/// that ran nothing).
fn assert_seeds_pass(seeds: impl IntoIterator<Item = u64>) -> u64 {
    assert_seeds_pass_with(seeds, &RunOptions::default()).0
}

/// As [`assert_seeds_pass`], with `options`; also returns how many runs had leases off.
fn assert_seeds_pass_with(seeds: impl IntoIterator<Item = u64>, options: &RunOptions) -> (u64, usize) {
    let mut completed = 0;
    let mut leases_off = 0;
    let mut failures = String::new();
    for seed in seeds {
        let report = run(seed, options);
        leases_off += usize::from(!report.params.leases);
        completed += report.stats.ops_completed;
        if !report.passed() {
            failures.push_str(&failure_message(&report));
        }
    }
    assert!(failures.is_empty(), "{failures}");
    (completed, leases_off)
}

/// A thousand seeds of random clusters (2..7 nodes), workloads and faults (loss, duplication,
/// reordering, partitions, crashes with lost and torn writes, clock skew) pass every checker:
/// linearizability, transactions, durability, exactly-once, convergence and liveness.
#[test]
fn thousand_swarm_seeds_pass_every_checker() {
    // A sweep whose runs completed almost nothing would pass every checker trivially.
    let completed = assert_seeds_pass(0..1000);
    assert!(completed > 100_000, "the thousand seeds completed only {completed} operations (about 145,000 expected)");
}

/// The swarm draws the faults of a minority down on every seed, and those need leases on, so
/// none of its runs is the mode dkv-server runs in without `--availability` (leases off, no
/// configuration change). Five hundred seeds without those faults, leases drawn on half of
/// them, cover that mode too.
#[test]
fn swarm_seeds_without_minority_faults_pass_with_leases_off_among_them() {
    let options = RunOptions {
        overrides: dkv_sim::Overrides { minority_faults: Some(false), ..Default::default() },
        ..Default::default()
    };
    let (completed, leases_off) = assert_seeds_pass_with(0..500, &options);
    assert!(completed > 50_000, "the 500 seeds completed only {completed} operations");
    assert!(leases_off > 150, "only {leases_off} of 500 runs had leases off");
}

/// The same seed gives the same run, event for event: identical trace hash and history.
#[test]
fn same_seed_replays_identically() {
    for seed in [3, 45, 68, 999] {
        let a = run(seed, &RunOptions::default());
        let b = run(seed, &RunOptions::default());
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.stats.events, b.stats.events, "seed {seed}");
        assert_eq!(a.params, b.params, "seed {seed}");
    }
    // And different seeds differ.
    assert_ne!(run(1, &RunOptions::default()).trace_hash, run(2, &RunOptions::default()).trace_hash);
}

/// A fault script (what the sim_schedule fuzz target feeds) decides every fault: here every
/// message's sender crashes right after sending, and every checker still passes.
#[test]
fn fault_script_crashes_senders_and_every_checker_passes() {
    let options = RunOptions::scripted(vec![0x02; 60]);
    for seed in 0..20 {
        let report = run(seed, &options);
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        assert!(report.stats.crashes > 0, "seed {seed}: the script crashed nobody");
        assert!(
            report.stats.ops_completed > 0,
            "seed {seed}: operations completed (the liveness checker wants all but abandoned ones)"
        );
    }
}
