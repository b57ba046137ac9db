//! Completion tables too small for the clients: every client's record is evicted as soon as
//! its retention allows, and the clients shut out meanwhile are told "busy". Retries (after
//! lost replies) and duplicates of each request must still never apply it twice; with eviction
//! by capacity alone (no retention), they do, and the checkers see it.

use dkv_sim::{Overrides, Report, RunOptions, TightBounds, run};
use std::time::Duration;

/// One completion record per node, kept `retention`, for four clients of six operations each,
/// on three nodes; lost (one in ten) and duplicated (one in five) messages, no crashes or
/// partitions. Clients send a request for up to 2 s.
fn crowded(retention: Duration) -> RunOptions {
    RunOptions {
        overrides: Overrides {
            nodes: Some(3),
            clients: Some(4),
            ops_per_client: Some(6),
            keys: Some(2),
            loss: Some(0.1),
            duplication: Some(0.2),
            crashes: Some(false),
            partitions: Some(false),
            tight_bounds: Some(TightBounds {
                prepared_max: 16,
                read_waiters_max: 16,
                txns_undecided_max: 16,
                completions_max: 1,
                decisions_remembered_max: 4,
                completion_retention: retention,
                client_window: Duration::from_secs(2),
                new_client_chance: 0.0,
            }),
            ..Overrides::default()
        },
        ..RunOptions::default()
    }
}

fn failures(reports: &[Report]) -> String {
    let mut s = String::new();
    for r in reports.iter().filter(|r| !r.passed()) {
        s.push_str(&format!("seed {} ({})\n", r.seed, r.params));
        for v in &r.violations {
            s.push_str(&format!("  {v}\n"));
        }
    }
    s
}

/// With a retention, records are evicted (the clients take turns) and no request is applied
/// twice: every seed passes every checker.
#[test]
fn crowded_tables_evict_yet_never_apply_a_request_twice() {
    let options = crowded(Duration::from_millis(2_500));
    let reports: Vec<Report> = (0..40).map(|seed| run(seed, &options)).collect();
    assert_eq!(failures(&reports), "");
    let evicted: u64 = reports.iter().map(|r| r.stats.completions_evicted).sum();
    assert!(evicted > 40, "only {evicted} completion records were evicted over 40 seeds");
    eprintln!("{evicted} completion records evicted over 40 seeds");
}

/// Without one (eviction by capacity alone, as before the retention existed), a duplicate
/// arriving after another client's completion evicted its request's record runs the request
/// again, and the checkers catch it.
#[test]
fn eviction_by_capacity_alone_is_caught() {
    let options = crowded(Duration::ZERO);
    let caught: Vec<Report> = (0..40)
        .map(|seed| run(seed, &options))
        .filter(|r| r.violations.iter().any(|v| matches!(v.checker, "exactly-once" | "durability" | "linearizability")))
        .collect();
    let first = caught.first().expect("no seed of 0..40 applied a request twice with eviction by capacity alone");
    eprintln!("{} of 40 seeds caught it, first seed {}: {}", caught.len(), first.seed, first.violations[0]);
}
