//! The join (docs/protocol.md §7.6): a member cut off by a partition is removed by the others;
//! after the partition it asks to join, is added back under its life's ticket, catches up from a
//! member through the configuration that adds it, and is a member again by the end of the run.
//! The end checkers hold every node back after the heal to being a member again, and compare
//! the data and completion records of all of them.

use dkv_sim::{Overrides, RunOptions, run};
use std::time::Duration;

#[test]
fn members_removed_by_partitions_are_added_back_and_catch_up() {
    let overrides = Overrides {
        nodes: Some(3),
        clients: Some(6),
        ops_per_client: Some(100),
        partition_every: Some(Duration::from_millis(700)),
        crashes: Some(false),
        pauses: Some(false),
        leases: Some(true),
        ..Overrides::default()
    };
    let options = RunOptions { overrides, ..RunOptions::default() };
    let mut catch_ups = 0;
    for seed in 0..20 {
        let report = run(seed, &options);
        let violations: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
        assert!(report.passed(), "seed {seed}: {violations:?}");
        catch_ups += report.stats.catch_ups;
    }
    // Not a vacuous pass: members were removed and caught up again (23 times in these 20 seeds as of this writing).
    assert!(catch_ups >= 10, "only {catch_ups} catch-ups in 20 runs: the scenario no longer removes members");
}
