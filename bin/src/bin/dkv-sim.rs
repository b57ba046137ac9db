//! dkv-sim: run the deterministic simulator.
//!
//!   dkv-sim run --seed 42 --trace         replay one seed with a readable trace
//!   dkv-sim sweep --seeds 0..10000        many seeds on all cores; stops at the first failure
//!
//! Every failure prints the one command that replays it.

use clap::{Args, Parser, Subcommand};
use dkv_core::Canary;
use dkv_sim::{Overrides, Report, RunOptions, RunStats, TraceMode, run};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "dkv-sim",
    version,
    about = "Deterministic simulation of a dkv cluster: seeded faults, clients and checkers"
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
        #[arg(long)]
        seed: u64,
        /// Print every event as it happens.
        #[arg(long)]
        trace: bool,
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
        #[command(flatten)]
        knobs: Knobs,
    },
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
    /// Crash a node every this many milliseconds on average (until the heal).
    #[arg(long, conflicts_with = "no_crashes")]
    crash_every_ms: Option<u64>,
    /// Start a partition every this many milliseconds on average (until the heal).
    #[arg(long, conflicts_with = "no_partitions")]
    partition_every_ms: Option<u64>,
    /// Message duplication probability, 0..1.
    #[arg(long)]
    dup: Option<f64>,
    /// Longest message delay, in microseconds.
    #[arg(long)]
    delay_max_us: Option<u64>,
    /// Largest difference of clock rates, in parts per million (0: all clocks agree).
    #[arg(long)]
    skew_ppm: Option<u32>,
    /// Plant a protocol bug to see it caught (needs `--features canaries`): one of
    /// vote-before-durable, reply-before-decision-durable, release-locks-on-timeout,
    /// reads-ignore-locks, apply-at-prepare, coordinator-forgets-decisions, no-deduplication,
    /// commit-on-first-yes.
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
                partitions: self.no_partitions.then_some(false),
                crash_every: self.crash_every_ms.map(Duration::from_millis),
                partition_every: self.partition_every_ms.map(Duration::from_millis),
                duplication: self.dup,
                delay_max: self.delay_max_us.map(Duration::from_micros),
                clock_skew_ppm: self.skew_ppm,
                tight_bounds: None,
            },
            trace,
            canary: self.canary,
            fault_script: None,
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
            ("--dup", self.dup.map(|v| v.to_string())),
            ("--delay-max-us", self.delay_max_us.map(|v| v.to_string())),
            ("--skew-ppm", self.skew_ppm.map(|v| v.to_string())),
            ("--canary", self.canary.map(|c| c.name().to_string())),
        ];
        let switches = [
            ("--no-faults", self.no_faults),
            ("--no-crashes", self.no_crashes),
            ("--no-partitions", self.no_partitions),
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
        let features = if self.canary.is_some() { " --features canaries" } else { "" };
        format!("cargo run --release{features} --bin dkv-sim -- run --seed {seed}{} --trace", self.as_flags())
    }
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

fn print_failure(report: &Report, knobs: &Knobs) {
    eprintln!("seed {} FAILED ({})", report.seed, report.params);
    for v in &report.violations {
        eprintln!("  {v}");
    }
    eprintln!("replay: {}", knobs.replay_command(report.seed));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { seed, trace, knobs } => {
            let started = Instant::now();
            let mode = if trace { TraceMode::Print } else { TraceMode::Off };
            let report = run(seed, &knobs.options(mode));
            let s = &report.stats;
            println!("seed {seed}: {}", report.params);
            println!(
                "  trace hash {:016x}; {} events, {} messages delivered, {} operations, {} crashes ({} torn tails), {} partitions, {} snapshots; {:.3}s virtual in {:.3}s",
                report.trace_hash,
                s.events,
                s.messages_delivered,
                s.ops_completed,
                s.crashes,
                s.torn_tails,
                s.partitions,
                s.snapshots,
                s.virtual_nanos as f64 / 1e9,
                started.elapsed().as_secs_f64()
            );
            println!("  {}", s.faults_line());
            if report.inconclusive > 0 {
                println!(
                    "  note: {} linearizability searches were inconclusive (search budget reached)",
                    report.inconclusive
                );
            }
            if report.passed() {
                println!("  passed every checker");
                ExitCode::SUCCESS
            } else {
                print_failure(&report, &knobs);
                ExitCode::FAILURE
            }
        }
        Command::Sweep { seeds: (start, end), jobs, quiet, knobs } => sweep(start, end, jobs, quiet, &knobs),
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

fn sweep(start: u64, end: u64, jobs: Option<usize>, quiet: bool, knobs: &Knobs) -> ExitCode {
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
                    let report = run(seed, &options);
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
            print_failure(report, knobs);
            ExitCode::FAILURE
        }
    }
}
