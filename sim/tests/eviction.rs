//! Completion tables too small for the clients: every client's record is evicted as soon as
//! its retention allows, and the clients shut out meanwhile are told "busy". Retries (after
//! lost replies) and duplicates of each request must still never apply it twice; with eviction
//! by capacity alone (no retention), they do, and the checkers see it.

mod common;

use dkv_sim::{Report, RunOptions, run};
use std::time::Duration;

/// The crowded scenario (see `common::crowded_completions`).
fn crowded(retention: Duration) -> RunOptions {
    RunOptions { overrides: common::crowded_completions(retention), ..RunOptions::default() }
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
