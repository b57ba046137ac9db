//! Every planted protocol bug is caught within a stated number of seeds, by the checker that
//! exists to catch it. A simulator that cannot catch these would not catch the real thing.
//!
//! The bounds are tight on purpose (about twice the seed that first catches each today): a
//! change to the simulator or a checker that makes a canary markedly harder to catch fails
//! here, and the bound is moved only with a reason. Catching seeds as of this writing (`dkv-sim
//! sweep --canary NAME` shows them): vote-before-durable 54, reply-before-decision-durable 0,
//! release-locks-on-timeout 11, reads-ignore-locks 16, apply-at-prepare 0,
//! coordinator-forgets-decisions 9, no-deduplication 9, commit-on-first-yes 1,
//! evict-young-completions 1.

mod common;

use dkv_core::Canary;
use dkv_sim::{Overrides, RunOptions, run};
use std::time::Duration;

/// Where a canary is hunted, how many seeds it may survive, and which checker must catch it.
struct Hunt {
    seeds: u64,
    overrides: Overrides,
    checker: &'static str,
}

fn hunt(canary: Canary) -> Hunt {
    let default = Overrides::default;
    let (seeds, overrides, checker) = match canary {
        // Only a crash in the instant between the vote and the fsync shows it, and the lost
        // write must not be overwritten before the end: many keys, crashes always on. An
        // acknowledged write goes missing.
        Canary::VoteBeforeDurable => {
            (120, Overrides { keys: Some(200), crashes: Some(true), ..default() }, "durability")
        }
        // The client hears "committed"; a crash loses the decision and the transaction aborts.
        // Many keys (the lost write is not overwritten) and frequent crashes, as for the vote:
        // the early reply now carries the outcome the commit will have, so only the lost
        // decision shows (it used to say "committed" for a transaction that would fail too).
        Canary::ReplyBeforeDecisionDurable => (
            60,
            Overrides { keys: Some(200), crash_every: Some(Duration::from_millis(100)), ..default() },
            "durability",
        ),
        // The participant that gave up aborts while the others commit: replicas differ.
        Canary::ReleaseLocksOnTimeout => (30, default(), "convergence"),
        // A read must meet a key locked by a transaction some client already saw commit:
        // few keys, so reads and writes meet often.
        Canary::ReadsIgnoreLocks => (40, Overrides { keys: Some(2), ..default() }, "linearizability"),
        // An aborted transaction's writes stay applied at its participants.
        Canary::ApplyAtPrepare => (10, default(), "convergence"),
        // A participant that asks after the coordinator forgot is told "abort" (presumed
        // abort) while the others committed.
        Canary::CoordinatorForgetsDecisions => (25, default(), "convergence"),
        // A retried request runs again.
        Canary::NoDeduplication => (25, default(), "exactly-once"),
        // The coordinator commits while a participant votes NO: replicas differ.
        Canary::CommitOnFirstYes => (10, default(), "convergence"),
        // A duplicate arriving after another client's completion evicted its request's record
        // runs the request again: one record per node for four clients, lossy and duplicating
        // links (the scenario of sim/tests/eviction.rs).
        Canary::EvictYoungCompletions => {
            (10, common::crowded_completions(Duration::from_millis(2_500)), "exactly-once")
        }
        // TODO(issue 13, milestone 2): hunted once the workload draws scans and conditions.
        Canary::ScanIgnoresPreparedInsert | Canary::ConditionBeforeLock => (0, default(), "none yet"),
    };
    Hunt { seeds, overrides, checker }
}

#[test]
fn every_canary_is_caught_by_its_checker_within_its_bound() {
    let mut escaped = Vec::new();
    for canary in Canary::ALL {
        let Hunt { seeds, overrides, checker } = hunt(canary);
        if seeds == 0 {
            continue;
        }
        let options = RunOptions { canary: Some(canary), overrides, ..Default::default() };
        let caught = (0..seeds).find(|&seed| run(seed, &options).violations.iter().any(|v| v.checker == checker));
        match caught {
            Some(seed) => println!("{:32} caught by {checker} at seed {seed} (bound {seeds})", canary.name()),
            None => escaped.push(format!("{}: no {checker} violation in seeds 0..{seeds}", canary.name())),
        }
    }
    assert!(escaped.is_empty(), "canaries not caught: {escaped:?}");
}

/// Without a canary, the hunting scenarios pass: each catch above is the planted bug's doing.
#[test]
fn the_hunting_grounds_pass_without_a_canary() {
    for canary in Canary::ALL {
        let Hunt { seeds, overrides, .. } = hunt(canary);
        let options = RunOptions { overrides, ..Default::default() };
        for seed in 0..seeds.min(10) {
            let report = run(seed, &options);
            assert!(report.passed(), "{} scenario, seed {seed}: {:?}", canary.name(), report.violations);
        }
    }
}
