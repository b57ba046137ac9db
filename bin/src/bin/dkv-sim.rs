//! dkv-sim: run the deterministic simulator.
//!
//!   dkv-sim run --seed 42 --trace         replay one seed with a readable trace
//!   dkv-sim sweep --seeds 0..10000        many seeds on all cores; stops at the first failure
//!   dkv-sim sweep --seeds 0..1000 --minority-faults
//!                                         with the faults of issue 12 (members lost for long)
//!   dkv-sim shrink --seed 42              a failing seed reduced to a small run that fails alike
//!   dkv-sim replay sim/regressions/F.run  a saved run, replayed as its file expects
//!
//! Every failure prints the one command that replays it, and the one that shrinks it.

use clap::{Args, Parser, Subcommand};
use dkv_core::Canary;
use dkv_sim::{Expect, Overrides, Report, RunOptions, RunStats, SavedRun, Setup, TraceMode, run_setup};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "dkv-sim",
    version,
    about = "Deterministic simulation of a dkv cluster: seeded faults, clients and checkers",
    after_help = "A failing run can be shrunk (`dkv-sim shrink`, or `--shrink` on run and sweep) to a small run \
that fails the same way, printed as a `dkv-sim run --setup '…'` line and a readable trace. A run can be saved \
(`--save FILE`) as a small text file with every parameter explicit, which `dkv-sim replay FILE` replays exactly \
however the swarm's draws change later; sim/regressions/ holds the runs `cargo test` replays."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed and check it. Same seed, same run, same trace hash, on any machine.
    ///
    /// Example: dkv-sim run --seed 42 --trace
    Run {
        #[command(flatten)]
        start: Start,
        /// Print every event as it happens.
        #[arg(long)]
        trace: bool,
        /// Write the run to FILE as a saved run (`dkv-sim replay FILE` replays it).
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// If the run fails, shrink it (as `dkv-sim shrink` does).
        #[arg(long)]
        shrink: bool,
        #[command(flatten)]
        knobs: Knobs,
    },
    /// Run a range of seeds on all cores, with a progress bar and a speed report. Exits non-zero
    /// at the first failing seed and prints the command that replays it.
    ///
    /// Example: dkv-sim sweep --seeds 0..2000
    Sweep {
        /// A range A..B (B excluded).
        #[arg(long, value_parser = parse_range)]
        seeds: (u64, u64),
        /// Worker threads (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
        /// No progress bar (for logs).
        #[arg(long)]
        quiet: bool,
        /// Shrink the first failing seed (as `dkv-sim shrink` does).
        #[arg(long)]
        shrink: bool,
        #[command(flatten)]
        knobs: Knobs,
    },
    /// Reduce a failing run to a small one that fails the same way (a violation of the same
    /// checker): fewer operations, nodes, clients, keys and faults. Prints the small run's replay
    /// command and its readable trace. Exits 0 once it printed a failing run, non-zero if the run
    /// passes.
    ///
    /// Example: dkv-sim shrink --seed 7 --canary commit-on-first-yes --save shrunk.run
    Shrink {
        #[command(flatten)]
        start: Start,
        /// Runs to try at most.
        #[arg(long, default_value_t = 2000)]
        max_runs: usize,
        /// Write the shrunk run to FILE as a saved run.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        #[command(flatten)]
        knobs: Knobs,
    },
    /// Replay a saved run (from `--save`, or sim/regressions/) with its canary, if it names one,
    /// and exit non-zero unless the outcome is the one the file expects (`expect=pass`, or
    /// `expect=CHECKER`: that checker reports a violation).
    ///
    /// Example: dkv-sim replay sim/regressions/seed-8836-busy-retries-collide.run --trace
    Replay {
        file: PathBuf,
        /// Print every event as it happens.
        #[arg(long)]
        trace: bool,
    },
}

/// Which run: a seed's, as the swarm draws it (with the knobs), or an explicit setup.
#[derive(Args, Clone)]
struct Start {
    /// The seed the swarm draws the run from (with the flags that fix what it would draw).
    #[arg(long, required_unless_present = "setup")]
    seed: Option<u64>,
    /// Every parameter explicit, as `key=value` words (what shrink prints and saved runs hold),
    /// e.g. --setup 'seed=7 rng_position=20 nodes=2 clients=1 ops_per_client=3 keys=1 mix=0,1,0,0,0'.
    /// Settings left out are off.
    #[arg(long, value_parser = parse_setup, conflicts_with_all = [
        "seed", "nodes", "clients", "ops", "keys", "no_faults", "loss", "no_crashes", "no_partitions", "no_pauses",
        "crash_every_ms", "partition_every_ms", "link_cut", "dup", "delay_max_us", "skew_ppm", "rich", "minority_faults",
        "no_minority_faults", "permanent_crashes", "absence_every_ms", "absence_data_lost", "absence_tail_damaged", "init_first_start", "lasting_partition_every_ms", "lasting_link_cut", "added_cut", "start_crash",
        "clock_offset_max_ms", "leases", "switch_to_changes", "snapshot_every_records"
    ])]
    setup: Option<Setup>,
}

impl Start {
    fn setup(&self, knobs: &Knobs) -> Setup {
        match (&self.setup, self.seed) {
            (Some(setup), _) => setup.clone(),
            (None, Some(seed)) => Setup::draw(seed, &knobs.options(TraceMode::Off).overrides),
            (None, None) => unreachable!("clap requires --seed or --setup"),
        }
    }
}

/// Fix what the swarm would otherwise draw per seed.
#[derive(Args, Clone, Default)]
struct Knobs {
    /// Cluster size (2..=7 drawn otherwise).
    #[arg(long)]
    nodes: Option<usize>,
    #[arg(long)]
    clients: Option<usize>,
    /// Operations per client.
    #[arg(long)]
    ops: Option<usize>,
    /// Key space size.
    #[arg(long)]
    keys: Option<usize>,
    /// No faults at all: no loss, duplication, partitions or crashes.
    #[arg(long)]
    no_faults: bool,
    /// Message loss probability, 0..1.
    #[arg(long)]
    loss: Option<f64>,
    /// Never crash nodes.
    #[arg(long)]
    no_crashes: bool,
    /// Never partition the network.
    #[arg(long)]
    no_partitions: bool,
    /// Never pause a node.
    #[arg(long)]
    no_pauses: bool,
    /// Crash a node every this many milliseconds on average (until the heal).
    #[arg(long, conflicts_with = "no_crashes")]
    crash_every_ms: Option<u64>,
    /// Start a partition every this many milliseconds on average (until the heal).
    #[arg(long, conflicts_with = "no_partitions")]
    partition_every_ms: Option<u64>,
    /// Chance, 0..1, that a partition cuts a single link instead of splitting the nodes in two:
    /// two nodes cannot talk (both ways, or one way) while every other link works (0.25
    /// otherwise, in clusters of three nodes or more; 0: never).
    #[arg(long)]
    link_cut: Option<f64>,
    /// Message duplication probability, 0..1.
    #[arg(long)]
    dup: Option<f64>,
    /// Longest message delay, in microseconds.
    #[arg(long)]
    delay_max_us: Option<u64>,
    /// Largest difference of clock rates, in parts per million (0: all clocks agree).
    #[arg(long)]
    skew_ppm: Option<u32>,
    /// Weights of the richer operations next to the mix's, as TXN,SCAN: transactions of
    /// conditions, counters and reads, and scans (0,0: none).
    #[arg(long, value_parser = parse_rich)]
    rich: Option<[u32; 2]>,
    /// Run as for a protocol that tolerates a minority of members down (issue 12): draw the
    /// lasting faults (permanent crashes, long absences, lasting partitions), clock offsets and
    /// clocks within the 1 % drift bound, let clients fail over, and judge liveness during the
    /// faults too. Implied by any of the four flags below.
    #[arg(long, conflicts_with = "no_minority_faults")]
    minority_faults: bool,
    /// Never draw what --minority-faults draws (when it is the default).
    #[arg(long)]
    no_minority_faults: bool,
    /// Members crashed for good early in the run, never restarted (at most (N-1)/2).
    #[arg(long)]
    permanent_crashes: Option<usize>,
    /// A member goes away for 5 to 20 s (back with its log, without its data dir, or with its
    /// last synced record damaged) every this many milliseconds on average.
    #[arg(long)]
    absence_every_ms: Option<u64>,
    /// Chance, 0..1, that a long absence loses the member's data dir (half of those restart
    /// with `--init` still on the command line).
    #[arg(long)]
    absence_data_lost: Option<f64>,
    /// Chance, 0..1, that a long absence (when it keeps the data dir) flips a bit in the
    /// member's last synced record: its start cuts the record and cannot vouch for its log.
    #[arg(long)]
    absence_tail_damaged: Option<f64>,
    /// Every node starts with `--init` and bootstraps (waits for every other node, docs/protocol.md
    /// §7.1), as dkv-server's first start does; and keeps it on its restarts.
    #[arg(long)]
    init_first_start: bool,
    /// A minority is cut off for 5 to 20 s (both ways or one way) every this many milliseconds
    /// on average.
    #[arg(long)]
    lasting_partition_every_ms: Option<u64>,
    /// Chance, 0..1, that a lasting partition cuts a single link between two members instead,
    /// for as long: both ends still reach every other node (0.25 otherwise, in clusters of
    /// three nodes or more; 0: never).
    #[arg(long)]
    lasting_link_cut: Option<f64>,
    /// Chance, 0..1, that a node just added is cut off one way (it hears nothing) for 5 to 20 s
    /// within half a second of its add (0.3 otherwise, where minority faults are drawn and
    /// partitions are not turned off).
    #[arg(long)]
    added_cut: Option<f64>,
    /// Chance, 0..1, that a member whose long absence damaged its last synced record crashes
    /// again during its start, before anything it logged is durable (0.5 otherwise, where
    /// minority faults are drawn and crashes are not turned off).
    #[arg(long)]
    start_crash: Option<f64>,
    /// Clocks start up to this many milliseconds apart.
    #[arg(long)]
    clock_offset_max_ms: Option<u64>,
    /// Heartbeats and read leases on or off (half the seeds draw them otherwise); on, the
    /// lease checker watches every read a node answers.
    #[arg(long)]
    leases: Option<bool>,
    /// In a run with leases off, whether the operator switches the cluster to configuration
    /// changes, every node stopped at once and one restarted late (a third of those seeds draw
    /// it otherwise).
    #[arg(long)]
    switch_to_changes: Option<bool>,
    /// Every node takes a snapshot (and compacts its log) once this many records were logged
    /// since the last one (drawn otherwise: 3 to 50 in about a third of the seeds, else rarely).
    #[arg(long)]
    snapshot_every_records: Option<u64>,
    /// Plant a protocol bug to see it caught (needs `--features canaries`), by its name, e.g.
    /// vote-before-durable (`Canary` in core/src/canary.rs has them all; an unknown name lists
    /// them).
    #[arg(long, value_parser = parse_canary)]
    canary: Option<Canary>,
}

impl Knobs {
    fn options(&self, trace: TraceMode) -> RunOptions {
        RunOptions {
            overrides: Overrides {
                nodes: self.nodes,
                clients: self.clients,
                ops_per_client: self.ops,
                keys: self.keys,
                no_faults: self.no_faults,
                loss: self.loss,
                crashes: self.no_crashes.then_some(false),
                pauses: self.no_pauses.then_some(false),
                partitions: self.no_partitions.then_some(false),
                crash_every: self.crash_every_ms.map(Duration::from_millis),
                partition_every: self.partition_every_ms.map(Duration::from_millis),
                link_cut: self.link_cut,
                duplication: self.dup,
                delay_max: self.delay_max_us.map(Duration::from_micros),
                clock_skew_ppm: self.skew_ppm,
                tight_bounds: None,
                rich: self.rich,
                minority_faults: if self.minority_faults {
                    Some(true)
                } else {
                    self.no_minority_faults.then_some(false)
                },
                permanent_crashes: self.permanent_crashes,
                absence_every: self.absence_every_ms.map(Duration::from_millis),
                absence_data_lost: self.absence_data_lost,
                absence_tail_damaged: self.absence_tail_damaged,
                init_first_start: self.init_first_start,
                lasting_partition_every: self.lasting_partition_every_ms.map(Duration::from_millis),
                lasting_link_cut: self.lasting_link_cut,
                added_cut: self.added_cut,
                start_crash: self.start_crash,
                clock_offset_max: self.clock_offset_max_ms.map(Duration::from_millis),
                leases: self.leases,
                switch_to_changes: self.switch_to_changes,
                mix: None,
                snapshot_records_min: self.snapshot_every_records,
            },
            trace,
            canary: self.canary,
            fault_script: None,
            isolate: None,
        }
    }

    /// The flags that reproduce these knobs.
    fn as_flags(&self) -> String {
        let valued = [
            ("--nodes", self.nodes.map(|v| v.to_string())),
            ("--clients", self.clients.map(|v| v.to_string())),
            ("--ops", self.ops.map(|v| v.to_string())),
            ("--keys", self.keys.map(|v| v.to_string())),
            ("--loss", self.loss.map(|v| v.to_string())),
            ("--crash-every-ms", self.crash_every_ms.map(|v| v.to_string())),
            ("--partition-every-ms", self.partition_every_ms.map(|v| v.to_string())),
            ("--link-cut", self.link_cut.map(|v| v.to_string())),
            ("--dup", self.dup.map(|v| v.to_string())),
            ("--delay-max-us", self.delay_max_us.map(|v| v.to_string())),
            ("--skew-ppm", self.skew_ppm.map(|v| v.to_string())),
            ("--rich", self.rich.map(|[txn, scan]| format!("{txn},{scan}"))),
            ("--permanent-crashes", self.permanent_crashes.map(|v| v.to_string())),
            ("--absence-every-ms", self.absence_every_ms.map(|v| v.to_string())),
            ("--absence-data-lost", self.absence_data_lost.map(|v| v.to_string())),
            ("--absence-tail-damaged", self.absence_tail_damaged.map(|v| v.to_string())),
            ("--lasting-partition-every-ms", self.lasting_partition_every_ms.map(|v| v.to_string())),
            ("--lasting-link-cut", self.lasting_link_cut.map(|v| v.to_string())),
            ("--added-cut", self.added_cut.map(|v| v.to_string())),
            ("--start-crash", self.start_crash.map(|v| v.to_string())),
            ("--clock-offset-max-ms", self.clock_offset_max_ms.map(|v| v.to_string())),
            ("--leases", self.leases.map(|v| v.to_string())),
            ("--switch-to-changes", self.switch_to_changes.map(|v| v.to_string())),
            ("--snapshot-every-records", self.snapshot_every_records.map(|v| v.to_string())),
            ("--canary", self.canary.map(|c| c.name().to_string())),
        ];
        let switches = [
            ("--no-faults", self.no_faults),
            ("--no-crashes", self.no_crashes),
            ("--no-partitions", self.no_partitions),
            ("--no-pauses", self.no_pauses),
            ("--minority-faults", self.minority_faults),
            ("--no-minority-faults", self.no_minority_faults),
            ("--init-first-start", self.init_first_start),
        ];
        let mut flags = String::new();
        for (flag, value) in valued {
            if let Some(value) = value {
                flags.push_str(&format!(" {flag} {value}"));
            }
        }
        for (flag, on) in switches {
            if on {
                flags.push_str(&format!(" {flag}"));
            }
        }
        flags
    }

    fn replay_command(&self, seed: u64) -> String {
        self.command("run", &format!("--seed {seed}{} --trace", self.as_flags()))
    }

    fn shrink_command(&self, seed: u64) -> String {
        self.command("shrink", &format!("--seed {seed}{}", self.as_flags()))
    }

    /// The command that replays an explicit setup (with this canary).
    fn setup_replay_command(&self, setup: &Setup) -> String {
        let canary = self.canary.map(|c| format!(" --canary {}", c.name())).unwrap_or_default();
        self.command("run", &format!("--setup '{setup}'{canary} --trace"))
    }

    fn command(&self, subcommand: &str, args: &str) -> String {
        let features = if self.canary.is_some() { " --features canaries" } else { "" };
        format!("cargo run --release{features} --bin dkv-sim -- {subcommand} {args}")
    }
}

fn parse_setup(s: &str) -> Result<Setup, String> {
    Setup::parse(s).map_err(|e| e.to_string())
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("expected a range like 0..1000")?;
    let a: u64 = a.trim().parse().map_err(|e| format!("bad range start: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("bad range end: {e}"))?;
    if b <= a {
        return Err("the range is empty: the end must be larger than the start".into());
    }
    Ok((a, b))
}

fn parse_rich(s: &str) -> Result<[u32; 2], String> {
    let bad = || format!("`{s}`: give two weights, TXN,SCAN, such as 3,1");
    let (txn, scan) = s.split_once(',').ok_or_else(bad)?;
    Ok([txn.trim().parse().map_err(|_| bad())?, scan.trim().parse().map_err(|_| bad())?])
}

fn parse_canary(s: &str) -> Result<Canary, String> {
    let canary = Canary::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Canary::ALL.iter().map(|c| c.name()).collect();
        format!("unknown canary; choose one of: {}", names.join(", "))
    })?;
    if !dkv_sim::canaries_available() {
        return Err("this build has no canaries; rebuild with `--features canaries`".into());
    }
    Ok(canary)
}

fn print_failure(report: &Report, knobs: &Knobs, explicit: bool) {
    eprintln!("seed {} FAILED ({})", report.seed, report.params);
    for v in &report.violations {
        eprintln!("  {v}");
    }
    if explicit {
        eprintln!("replay: {}", knobs.setup_replay_command(&report.setup));
    } else {
        eprintln!("replay: {}", knobs.replay_command(report.seed));
        eprintln!("shrink: {}", knobs.shrink_command(report.seed));
    }
}

fn print_report(report: &Report, elapsed: Duration) {
    let s = &report.stats;
    println!("seed {}: {}", report.seed, report.params);
    println!(
        "  trace hash {:016x}; {} events, {} messages delivered, {} operations, {} crashes ({} torn tails), {} partitions, {} snapshots, {} faults; {:.3}s virtual in {:.3}s",
        report.trace_hash,
        s.events,
        s.messages_delivered,
        s.ops_completed,
        s.crashes,
        s.torn_tails,
        s.partitions,
        s.snapshots,
        s.faults,
        s.virtual_nanos as f64 / 1e9,
        elapsed.as_secs_f64()
    );
    println!("  {}", s.faults_line());
    if report.inconclusive > 0 {
        println!("  note: {} linearizability searches were inconclusive (search budget reached)", report.inconclusive);
    }
}

/// Writes `saved` to `path`, or says why it could not.
fn save(path: &Path, saved: &SavedRun) -> Result<(), ExitCode> {
    match std::fs::write(path, saved.to_string()) {
        Ok(()) => {
            println!("saved to {} (replay: dkv-sim replay {})", path.display(), path.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}; check that its folder exists and is writable", path.display());
            Err(ExitCode::FAILURE)
        }
    }
}

/// Shrinks the failing run `setup`, prints the small run (sizes, violations, replay command,
/// trace) and saves it if asked. Succeeds when it printed a failing run.
fn shrink_and_print(setup: &Setup, knobs: &Knobs, max_runs: usize, save_to: Option<&Path>) -> ExitCode {
    let started = Instant::now();
    eprintln!("shrinking seed {} (at most {max_runs} runs)…", setup.seed);
    let mut progress = |r: &Report| eprintln!("  smaller: {}", size_line(r));
    let shrunk = match dkv_sim::shrink(setup, knobs.canary, max_runs, &mut progress) {
        Ok(shrunk) => shrunk,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let after = &shrunk.after;
    println!("-- trace of the shrunk run ({} lines)", after.trace.len());
    for line in &after.trace {
        println!("{line}");
    }
    println!(
        "-- shrunk in {} runs, {:.3}s: a {} violation",
        shrunk.runs,
        started.elapsed().as_secs_f64(),
        shrunk.checker
    );
    println!("before: {}", size_line(&shrunk.before));
    println!("after:  {}", size_line(after));
    for v in &after.violations {
        println!("  {v}");
    }
    println!("replay: {}", knobs.setup_replay_command(&after.setup));
    if let Some(path) = save_to {
        let drawn = Setup::draw(setup.seed, &knobs.options(TraceMode::Off).overrides) == *setup;
        let origin = if drawn {
            knobs.shrink_command(setup.seed)
        } else {
            knobs.command("shrink", &format!("--setup '{setup}'"))
        };
        let why = format!("# Shrunk by `{origin}`: a {} violation.", shrunk.checker);
        let mut saved = SavedRun::of(after, knobs.canary, vec![why]);
        // The shrunk run may fail other checkers too; the one it was shrunk for is the one to expect.
        saved.expect = Expect::Violation(shrunk.checker.to_string());
        if let Err(code) = save(path, &saved) {
            return code;
        }
    }
    ExitCode::SUCCESS
}

fn size_line(r: &Report) -> String {
    let p = &r.setup.params;
    let size = dkv_sim::shrink::Size::of(r);
    format!(
        "{} ops ({} clients x {}), {} nodes, {} keys, {} faults, {} settings on, {} events",
        size.ops, size.clients, p.ops_per_client, size.nodes, size.keys, size.faults, size.settings, size.events
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { start, trace, save: save_to, shrink, knobs } => {
            let started = Instant::now();
            let mode = if trace { TraceMode::Print } else { TraceMode::Off };
            let setup = start.setup(&knobs);
            let report = run_setup(&setup, knobs.canary, mode);
            print_report(&report, started.elapsed());
            if let Some(path) = &save_to {
                let why = format!("# Saved by dkv-sim run from seed {}.", setup.seed);
                if let Err(code) = save(path, &SavedRun::of(&report, knobs.canary, vec![why])) {
                    return code;
                }
            }
            if report.passed() {
                println!("  passed every checker");
                ExitCode::SUCCESS
            } else {
                print_failure(&report, &knobs, start.setup.is_some());
                if shrink {
                    shrink_and_print(&setup, &knobs, 2000, None);
                }
                ExitCode::FAILURE
            }
        }
        Command::Sweep { seeds: (start, end), jobs, quiet, shrink, knobs } => {
            sweep(start, end, jobs, quiet, shrink, &knobs)
        }
        Command::Shrink { start, max_runs, save: save_to, knobs } => {
            shrink_and_print(&start.setup(&knobs), &knobs, max_runs, save_to.as_deref())
        }
        Command::Replay { file, trace } => replay(&file, trace),
    }
}

fn replay(file: &Path, trace: bool) -> ExitCode {
    let saved = match std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|text| SavedRun::parse(&text).map_err(|e| e.to_string()))
    {
        Ok(saved) => saved,
        Err(e) => {
            eprintln!("cannot replay {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    if saved.canary.is_some() && !dkv_sim::canaries_available() {
        eprintln!("{} plants a canary; rebuild with `--features canaries`", file.display());
        return ExitCode::FAILURE;
    }
    for comment in &saved.comments {
        println!("{comment}");
    }
    let started = Instant::now();
    let mode = if trace { TraceMode::Print } else { TraceMode::Off };
    let report = run_setup(&saved.setup, saved.canary, mode);
    print_report(&report, started.elapsed());
    for v in &report.violations {
        println!("  {v}");
    }
    match saved.judge(&report) {
        Ok(()) => {
            println!("  as the file expects ({:?})", saved.expect);
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{}: {why}", file.display());
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    messages: u64,
    virtual_nanos: u64,
    inconclusive: u64,
    crashes: u64,
    events: u64,
    /// Every run's counts, summed.
    stats: RunStats,
}

fn sweep(start: u64, end: u64, jobs: Option<usize>, quiet: bool, shrink: bool, knobs: &Knobs) -> ExitCode {
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let options = knobs.options(TraceMode::Off);
    let next = AtomicU64::new(start);
    // The smallest failing seed found so far; seeds above it are not started.
    let first_failure = AtomicU64::new(u64::MAX);
    let failures: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    let totals = Mutex::new(Totals::default());
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(end - start) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let mut local = Totals::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end || seed > first_failure.load(Ordering::Relaxed) {
                        break;
                    }
                    let report = dkv_sim::run(seed, &options);
                    local.seeds += 1;
                    local.messages += report.stats.messages_delivered;
                    local.virtual_nanos += report.stats.virtual_nanos;
                    local.inconclusive += report.inconclusive as u64;
                    local.crashes += report.stats.crashes;
                    local.events += report.stats.events;
                    local.stats.add(&report.stats);
                    bar.inc(1);
                    if !report.passed() {
                        first_failure.fetch_min(seed, Ordering::Relaxed);
                        failures.lock().expect("no worker panics holding the lock").push(report);
                    }
                }
                let mut t = totals.lock().expect("no worker panics holding the lock");
                t.seeds += local.seeds;
                t.messages += local.messages;
                t.virtual_nanos += local.virtual_nanos;
                t.inconclusive += local.inconclusive;
                t.crashes += local.crashes;
                t.events += local.events;
                t.stats.add(&local.stats);
            });
        }
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let t = totals.into_inner().expect("workers are done");
    println!(
        "{} seeds in {:.2}s on {jobs} threads: {:.0} seeds/s ({:.0} per core), {:.0} messages delivered/s ({:.0} per core), virtual/real time {:.0}x; {} crashes, {} inconclusive searches",
        t.seeds,
        elapsed,
        t.seeds as f64 / elapsed,
        t.seeds as f64 / elapsed / jobs as f64,
        t.messages as f64 / elapsed,
        t.messages as f64 / elapsed / jobs as f64,
        t.virtual_nanos as f64 / 1e9 / elapsed,
        t.crashes,
        t.inconclusive
    );
    println!("faults: {}", t.stats.faults_line());
    let mut failures = failures.into_inner().expect("workers are done");
    failures.sort_by_key(|r| r.seed);
    match failures.first() {
        None => {
            println!("all {} seeds passed", t.seeds);
            ExitCode::SUCCESS
        }
        Some(report) => {
            print_failure(report, knobs, false);
            if shrink {
                shrink_and_print(&report.setup, knobs, 2000, None);
            }
            ExitCode::FAILURE
        }
    }
}
