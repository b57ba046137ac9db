//! Every planted protocol bug is caught by the checkers within a stated number of seeds.
//! A simulator that cannot catch these would not catch the real thing.

use dkv_core::Canary;
use dkv_sim::{Overrides, RunOptions, run};

/// How many seeds each canary may survive at most, and the scenario it is hunted in.
fn hunt(canary: Canary) -> (u64, Overrides) {
    match canary {
        // Only a crash in the instant between the vote and the fsync shows it, and the lost
        // write must not be overwritten before the end: many keys, crashes always on.
        Canary::VoteBeforeDurable => (300, Overrides { keys: Some(200), crashes: Some(true), ..Default::default() }),
        // A read must meet a key locked by a transaction some client already saw commit:
        // few keys, so reads and writes meet often.
        Canary::ReadsIgnoreLocks => (300, Overrides { keys: Some(2), ..Default::default() }),
        _ => (300, Overrides::default()),
    }
}

#[test]
fn every_canary_is_caught() {
    let mut escaped = Vec::new();
    for canary in Canary::ALL {
        let (seeds, overrides) = hunt(canary);
        let options = RunOptions { canary: Some(canary), overrides, ..Default::default() };
        match (0..seeds).find(|&seed| !run(seed, &options).passed()) {
            Some(seed) => println!("{:32} caught at seed {seed}", canary.name()),
            None => escaped.push(format!("{} survived {seeds} seeds", canary.name())),
        }
    }
    assert!(escaped.is_empty(), "canaries not caught: {escaped:?}");
}
