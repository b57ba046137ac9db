//! Saved runs kept forever (sim/regressions/*.run): each replays exactly, independently of the
//! swarm's draws, and must come out as its file expects. Runs that once found a bug must pass
//! every checker; a run saved with a canary planted must still be caught by the checker it
//! names, which shows that replaying a file reproduces what was saved.

use dkv_sim::{Expect, SavedRun, TraceMode, run_setup};
use std::path::PathBuf;

fn saved_runs() -> Vec<(PathBuf, SavedRun)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "run"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let saved = SavedRun::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, saved)
        })
        .collect()
}

#[test]
fn every_saved_run_replays_as_its_file_expects() {
    let runs = saved_runs();
    // The seven swarm seeds that found bugs, and at least one shrunk canary failure.
    assert!(runs.len() >= 8, "only {} saved runs in sim/regressions", runs.len());
    assert!(
        runs.iter().any(|(_, s)| s.canary.is_some() && s.expect != Expect::Pass),
        "no saved run plants a canary and expects it caught: nothing shows the replay catches what it should"
    );
    let mut failures = Vec::new();
    for (path, saved) in &runs {
        // A run expected to fail without a planted bug would be a bug kept, not a regression run.
        if saved.expect != Expect::Pass && saved.canary.is_none() {
            failures.push(format!("{}: expects a violation but plants no canary", path.display()));
            continue;
        }
        let report = run_setup(&saved.setup, saved.canary, TraceMode::Off);
        if let Err(why) = saved.judge(&report) {
            failures.push(format!("{}: {why}\n  replay: dkv-sim replay {} --trace", path.display(), path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
