//! Bootstrapping (docs/protocol.md §7.1) under the swarm's faults: every node started with
//! `--init` waits for every other node before it takes part, and a member whose data dir is
//! lost at every long absence comes back, half the time with `--init` still on its command
//! line. Every checker passes: nobody bootstraps over state the cluster holds, and no first
//! start or restart is left waiting (liveness, during the faults and after the heal).

use dkv_sim::{Overrides, RunOptions, run};
use std::time::Duration;

#[test]
fn nodes_started_with_init_and_dirs_lost_pass_every_checker() {
    for nodes in [3, 5] {
        let overrides = Overrides {
            nodes: Some(nodes),
            init_first_start: true,
            absence_every: Some(Duration::from_millis(1_500)),
            absence_data_lost: Some(1.0),
            ..Overrides::default()
        };
        let options = RunOptions { overrides, ..RunOptions::default() };
        let mut bootstrapped_again = 0;
        for seed in 0..150 {
            let report = run(seed, &options);
            assert!(report.passed(), "{nodes} nodes, seed {seed}: {:?}", report.violations);
            bootstrapped_again += report.stats.init_restarts;
        }
        assert!(bootstrapped_again > 0, "{nodes} nodes: no lost data dir came back with --init");
    }
}
