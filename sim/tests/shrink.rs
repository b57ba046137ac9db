//! Shrinking: a planted bug's first failing seed reduces to a much smaller run that fails the
//! same way, and the replay printed for it reproduces it exactly.

use dkv_core::Canary;
use dkv_sim::shrink::Size;
use dkv_sim::{Expect, Overrides, RunOptions, SavedRun, Setup, TraceMode, run, run_setup, shrink};

#[test]
fn a_canary_failure_shrinks_to_a_smaller_run_that_fails_alike_and_replays() {
    // Caught at seed 0, in the first commit of a run: a quick canary keeps this test short.
    let canary = Canary::VisibleBeforeMajority;
    let options = RunOptions { canary: Some(canary), ..Default::default() };
    let first = (0..50).map(|seed| run(seed, &options)).find(|r| !r.passed()).expect("caught within 50 seeds");
    let checker = first.violations[0].checker;

    let shrunk = shrink(&first.setup, Some(canary), 400, &mut |_| {}).expect("the run fails");
    assert_eq!(shrunk.before.trace_hash, first.trace_hash, "shrinking starts from the failing run itself");
    assert_eq!(shrunk.checker, checker);
    let after = &shrunk.after;
    assert!(
        after.violations.iter().any(|v| v.checker == checker),
        "the shrunk run fails otherwise: {:?}",
        after.violations
    );
    let (before, smaller) = (Size::of(&shrunk.before), Size::of(after));
    println!("{} at seed {}: {before:?} -> {smaller:?} in {} runs", canary.name(), first.seed, shrunk.runs);
    assert!(smaller.ops * 4 <= before.ops, "operations barely shrank: {before:?} -> {smaller:?}");
    assert!(smaller.clients < before.clients, "clients did not shrink: {before:?} -> {smaller:?}");
    assert!(smaller.faults < before.faults, "faults did not shrink: {before:?} -> {smaller:?}");
    assert!(smaller.nodes <= before.nodes && smaller.keys <= before.keys);
    assert!(!after.trace.is_empty() && after.trace.len() < 200, "a trace of {} lines", after.trace.len());

    // The printed replay (`dkv-sim run --setup '…'`) and the saved file reproduce it exactly.
    let printed = Setup::parse(&after.setup.to_string()).expect("the printed setup reads back");
    let replayed = run_setup(&printed, Some(canary), TraceMode::Off);
    assert_eq!(replayed.trace_hash, after.trace_hash);
    assert_eq!(replayed.violations, after.violations);
    let mut saved = SavedRun::of(after, Some(canary), vec![]);
    saved.expect = Expect::Violation(checker.to_string());
    let saved = SavedRun::parse(&saved.to_string()).expect("the file reads back");
    assert_eq!(saved.expect, Expect::Violation(checker.to_string()));
    assert_eq!(saved.judge(&run_setup(&saved.setup, saved.canary, TraceMode::Off)), Ok(()));
}

#[test]
fn a_passing_run_has_nothing_to_shrink() {
    let setup = Setup::draw(3, &Overrides::default());
    assert!(shrink(&setup, None, 10, &mut |_| {}).is_err());
}

/// Suppressing faults by number takes them out of the run: with every number suppressed, a
/// run full of faults has none, and the faults it met are counted as suppressed.
#[test]
fn suppressed_faults_do_not_happen() {
    let mut setup = Setup::draw(8836, &Overrides::default());
    let noisy = run_setup(&setup, None, TraceMode::Off);
    assert!(noisy.stats.faults > 50 && noisy.stats.crashes > 0, "{:?}", noisy.stats);
    setup.suppressed = (0..100_000).collect();
    let quiet = run_setup(&setup, None, TraceMode::Off);
    assert_eq!((quiet.stats.faults, quiet.stats.crashes, quiet.stats.partitions), (0, 0, 0), "{:?}", quiet.stats);
    assert!(quiet.stats.faults_suppressed > 0);
    assert!(quiet.passed(), "{:?}", quiet.violations);
}

/// A scripted run (the `sim_schedule` fuzz target's) shrinks too: its fault script is cut
/// shorter, and the printed setup carries the script, so a fuzzer's finding replays and shrinks.
#[test]
fn a_fault_script_is_cut_shorter() {
    let canary = Canary::CommitOnFirstYes;
    let scripted = RunOptions { canary: Some(canary), ..RunOptions::scripted(vec![0x11; 40]) };
    let first = (0..50).map(|seed| run(seed, &scripted)).find(|r| !r.passed()).expect("caught within 50 seeds");
    let shrunk = shrink(&first.setup, Some(canary), 300, &mut |_| {}).expect("the run fails");
    let script_len = |r: &dkv_sim::Report| r.setup.fault_script.as_ref().map_or(0, Vec::len);
    println!("script of {} bytes -> {}", script_len(&first), script_len(&shrunk.after));
    assert!(script_len(&shrunk.after) < script_len(&first));
    let printed = Setup::parse(&shrunk.after.setup.to_string()).expect("the printed setup reads back");
    assert_eq!(run_setup(&printed, Some(canary), TraceMode::Off).trace_hash, shrunk.after.trace_hash);
}
