//! Shrinking: from a failing run, find a smaller one that fails the same way (a violation of the
//! same checker), so that its trace is short enough to read.
//!
//! The shrinker works on [`Setup`]s, where every parameter is explicit and every drawn fault
//! has a number by which it can be suppressed. It tries candidate reductions greedily, biggest
//! first: fewer operations, clients, nodes and keys; fault kinds switched off and simpler
//! settings; the smaller workloads and clusters again with a few other seeds; then the faults
//! that happened, suppressed in chunks that halve until single faults (as delta debugging does);
//! and a fault script (a fuzzer's), cut shorter. A candidate that still fails the same way and is smaller is kept,
//! and the search starts over from it, until no candidate helps or the run budget is spent.
//!
//! Any change to a setup changes the run from the point it takes effect, so a candidate is a
//! different run and is judged by running it; "smaller" is judged on the run, not the setup.

use crate::params::{Faults, Params};
use crate::setup::{SNAPSHOTS_OFF, Setup};
use crate::{Report, TraceMode, run_setup};
use dkv_core::Canary;

/// What shrinking found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The failing run it started from.
    pub before: Report,
    /// The smallest run found that fails the same way, with its trace lines kept.
    pub after: Report,
    /// The checker both runs' violations name.
    pub checker: &'static str,
    /// Runs tried, the first and the last included.
    pub runs: usize,
}

/// Why a run cannot be shrunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NothingToShrink;

impl std::fmt::Display for NothingToShrink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run passes every checker: there is no failure to shrink")
    }
}

impl std::error::Error for NothingToShrink {}

/// How big a run is, compared field by field in this order: work first, then the cluster, then
/// the faults, then everything else. Every kept candidate is strictly smaller, so shrinking ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size {
    /// Operations the clients issue.
    pub ops: usize,
    pub nodes: usize,
    pub clients: usize,
    /// Drawn faults that happened.
    pub faults: u64,
    /// Fault decisions in the setup's fault script, if it has one.
    pub script: usize,
    pub keys: usize,
    /// Settings that differ from the quiet defaults (kinds of fault, skew, snapshots, bounds,
    /// kinds of operation).
    pub settings: usize,
    pub events: u64,
}

impl Size {
    pub fn of(report: &Report) -> Size {
        let p = &report.setup.params;
        Size {
            ops: p.clients * p.ops_per_client,
            nodes: p.nodes,
            clients: p.clients,
            faults: report.stats.faults,
            script: report.setup.fault_script.as_ref().map_or(0, Vec::len),
            keys: p.keys,
            settings: settings(p),
            events: report.stats.events,
        }
    }
}

/// Shrinks the failing run `start` (played with `canary`), trying at most `max_runs` runs.
/// `progress` hears of every smaller run found.
pub fn shrink(
    start: &Setup,
    canary: Option<Canary>,
    max_runs: usize,
    progress: &mut dyn FnMut(&Report),
) -> Result<Shrunk, NothingToShrink> {
    let before = run_setup(start, canary, TraceMode::Off);
    let checker = before.violations.first().ok_or(NothingToShrink)?.checker;
    let mut best = before.clone();
    let mut runs = 1;
    'search: while runs < max_runs {
        for candidate in candidates(&best) {
            if runs >= max_runs {
                break 'search;
            }
            runs += 1;
            let report = run_setup(&candidate, canary, TraceMode::Off);
            if report.violations.iter().any(|v| v.checker == checker) && Size::of(&report) < Size::of(&best) {
                progress(&report);
                best = report;
                continue 'search;
            }
        }
        break;
    }
    // Suppressions the run never reached change nothing: leave them out of the replay.
    let mut setup = best.setup.clone();
    let met = best.stats.faults + best.stats.faults_suppressed;
    setup.suppressed.retain(|&n| n < met);
    let after = run_setup(&setup, canary, TraceMode::Keep);
    Ok(Shrunk { before, after, checker, runs: runs + 1 })
}

/// Other seeds a smaller cluster or workload is tried with, when the failing run's own seed no
/// longer fails with it: a bug that a smaller run can show often shows with some seed, and the
/// seed is part of the replay.
const RESEEDS: u64 = 8;

/// Smaller or simpler variants of a failing run's setup, the biggest reductions first: a
/// smaller workload or cluster, fewer kinds of fault and simpler settings, the smaller workloads
/// and clusters with other seeds, and then the faults that happened suppressed.
fn candidates(best: &Report) -> Vec<Setup> {
    let setup = &best.setup;
    let p = &setup.params;
    let mut smaller: Vec<Params> = Vec::new();
    for ops in fewer(p.ops_per_client, 1) {
        smaller.push(Params { ops_per_client: ops, ..p.clone() });
    }
    for nodes in fewer(p.nodes, 2) {
        let mut fewer_nodes = Params { nodes, ..p.clone() };
        // A smaller cluster loses fewer members for good: a majority must be left.
        fewer_nodes.faults.permanent_crashes = p.faults.permanent_crashes.min(fewer_nodes.minority_max());
        smaller.push(fewer_nodes);
    }
    for clients in fewer(p.clients, 1) {
        smaller.push(Params { clients, ..p.clone() });
    }
    let mut out: Vec<Setup> = smaller.iter().map(|params| Setup { params: params.clone(), ..setup.clone() }).collect();
    let mut with = |change: &dyn Fn(&mut Params)| {
        let mut s = setup.clone();
        change(&mut s.params);
        if s.params != *p {
            out.push(s);
        }
    };
    let quiet = Faults::none();
    with(&|p| p.faults.crash_every = None);
    with(&|p| p.faults.partition_every = None);
    with(&|p| p.faults.link_cut = 0.0);
    with(&|p| p.faults.lasting_link_cut = 0.0);
    with(&|p| p.faults.loss = 0.0);
    with(&|p| p.faults.duplication = 0.0);
    with(&|p| p.faults.torn_write = 0.0);
    with(&|p| p.faults.cluster_crash_every = None);
    with(&|p| p.faults.crash_near_io = 0.0);
    with(&|p| p.faults.pause_every = None);
    with(&|p| p.faults.garbage_tail = 0.0);
    with(&|p| p.faults.unsynced_flip = 0.0);
    with(&|p| p.faults.synced_flip = 0.0);
    with(&|p| p.faults.permanent_crashes = 0);
    with(&|p| p.faults.permanent_crashes = p.faults.permanent_crashes.saturating_sub(1));
    with(&|p| p.faults.absence_every = None);
    with(&|p| p.faults.absence_data_lost = 0.0);
    with(&|p| p.faults.absence_init_restart = 0.0);
    with(&|p| p.faults.init_first_start = false);
    with(&|p| p.faults.absence_tail_damaged = 0.0);
    with(&|p| p.faults.lasting_partition_every = None);
    with(&|p| p.faults.added_cut = 0.0);
    with(&|p| p.faults.start_crash = 0.0);
    with(&|p| p.clock_offset_max = std::time::Duration::ZERO);
    for keys in fewer(p.keys, 1) {
        with(&|p| p.keys = keys);
    }
    with(&|p| p.faults.delay_max = p.faults.delay_min.max(quiet.delay_max));
    with(&|p| p.faults.fsync_max = p.faults.fsync_min.max(quiet.fsync_max));
    with(&|p| p.clock_skew_ppm = 0);
    with(&|p| p.tight_bounds = None);
    with(&|p| p.snapshot_records_min = SNAPSHOTS_OFF);
    for kind in 0..p.mix.len() {
        with(&|p| {
            let mut mix = p.mix;
            mix[kind] = 0;
            if mix[1..].iter().any(|w| *w > 0) {
                p.mix = mix;
            }
        });
    }
    for kind in 0..p.rich.len() {
        with(&|p| p.rich[kind] = 0);
    }
    for params in smaller {
        for k in 1..=RESEEDS {
            // Suppressions name faults of the old seed's run: they mean nothing in another's.
            let seed = setup.seed.wrapping_add(k);
            out.push(Setup { seed, params: params.clone(), suppressed: Default::default(), ..setup.clone() });
        }
    }
    out.extend(suppressions(best));
    // A shorter fault script: the cluster heals where it ends.
    if let Some(script) = &setup.fault_script {
        for len in fewer(script.len(), 0) {
            out.push(Setup { fault_script: Some(script[..len].to_vec()), ..setup.clone() });
        }
    }
    out
}

/// `n` made smaller, down to `floor`: the floor itself, then a half, a quarter, an eighth and
/// one less taken off. Fewer operations keep the run the same until the first client runs out,
/// so the cuts that keep most of it often keep the failure when the big ones lose it.
fn fewer(n: usize, floor: usize) -> Vec<usize> {
    let mut out: Vec<usize> = vec![floor, n / 2, n - n / 4, n - n / 8, n.saturating_sub(1)];
    out.retain(|&m| m >= floor && m < n);
    out.dedup();
    out
}

/// The run's setup with more of the faults that happened suppressed: all of them, then halves,
/// quarters, … down to single faults.
fn suppressions(best: &Report) -> Vec<Setup> {
    let setup = &best.setup;
    let met = best.stats.faults + best.stats.faults_suppressed;
    let happened: Vec<u64> = (0..met).filter(|n| !setup.suppressed.contains(n)).collect();
    let mut out = Vec::new();
    let mut chunk = happened.len();
    while chunk > 0 {
        for part in happened.chunks(chunk) {
            let mut s = setup.clone();
            s.suppressed.extend(part);
            out.push(s);
        }
        chunk /= 2;
    }
    out
}

/// How many settings differ from a quiet run's.
fn settings(p: &Params) -> usize {
    let g = Faults::none();
    let f = &p.faults;
    [
        f.loss != g.loss,
        f.duplication != g.duplication,
        f.delay_max > g.delay_max,
        f.partition_every.is_some(),
        f.link_cut != g.link_cut,
        f.lasting_link_cut != g.lasting_link_cut,
        f.crash_every.is_some(),
        f.torn_write != g.torn_write,
        f.cluster_crash_every.is_some(),
        f.crash_near_io != g.crash_near_io,
        f.pause_every.is_some(),
        f.garbage_tail != g.garbage_tail,
        f.unsynced_flip != g.unsynced_flip,
        f.synced_flip != g.synced_flip,
        f.permanent_crashes != g.permanent_crashes,
        f.absence_every.is_some(),
        f.absence_data_lost != g.absence_data_lost,
        f.absence_init_restart != g.absence_init_restart,
        f.init_first_start != g.init_first_start,
        f.absence_tail_damaged != g.absence_tail_damaged,
        f.lasting_partition_every.is_some(),
        f.added_cut != g.added_cut,
        f.start_crash != g.start_crash,
        !p.clock_offset_max.is_zero(),
        f.fsync_max > g.fsync_max,
        p.snapshot_records_min != SNAPSHOTS_OFF,
        p.clock_skew_ppm != 0,
        p.tight_bounds.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count()
        + p.mix.iter().filter(|w| **w > 0).count()
        + p.rich.iter().filter(|w| **w > 0).count()
}
