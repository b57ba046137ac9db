//! dkv-torture: torture a real cluster and check what its clients saw with the simulator's
//! checkers.
//!
//!   dkv-torture --duration 60 --transport udp --seed 7
//!   dkv-torture --duration 3600 --keep-dir        a long run, its folder kept for post-mortem
//!
//! A run longer than `--round-secs` is a series of rounds, each checked on its own.
//!
//! Exit codes: 0 nothing found; 1 a checker found a violation, or the cluster failed under
//! torture (a node exited by itself or did not come back); 2 the tool could not run.

use clap::Parser;
use dkv::torture::faults::Fault;
use dkv::torture::{self, Options, Summary, network};
use dkv_net::ClientTransport;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "dkv-torture",
    version,
    about = "Start real dkv-server processes on loopback, drive concurrent clients, inject kill -9, pauses and partitions, and check the history with the simulator's checkers",
    after_help = "Partitions need the tool to run as root: it runs itself in a network namespace of its own (unshare --net, with a pid namespace so no node outlives it), so it never touches the host's network. Exit codes: 0 nothing found, 1 a violation or a node that failed under torture, 2 the tool could not run."
)]
struct Cli {
    /// Seconds of faults (a long run is just a longer duration, e.g. 14400 for four hours).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// A run longer than this is split into rounds of this many seconds, each a fresh cluster
    /// with its own seed (the given one plus the round's index) and its own check, so memory,
    /// disk and checking time stay bounded however long the run (the linearizability search
    /// takes time that grows faster than the history).
    #[arg(long, default_value_t = 60)]
    round_secs: u64,
    /// Seed of the fault schedule and the clients' operations (random if not given; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How clients and peers talk: tcp or udp.
    #[arg(long, default_value = "tcp", value_parser = parse_transport)]
    transport: ClientTransport,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=8))]
    nodes: u64,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    clients: u64,
    /// Keys the clients work on (few keys: many conflicts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    keys: u64,
    /// Faults to draw from, comma-separated: kill, kill-all, pause, partition (none: "").
    #[arg(long, value_delimiter = ',', default_value = "kill,kill-all,pause,partition", value_parser = parse_fault)]
    faults: Vec<Option<Fault>>,
    /// Every node runs with `dkv-server --availability`: a node down or cut off is removed by
    /// the others and added back once it returns, and reads need a lease (TCP only: the
    /// catch-up needs the TCP peer port).
    #[arg(long)]
    availability: bool,
    /// Keep the run's folder (data dirs, node logs, kept log segments) and print where it is.
    /// It is always kept when something is found.
    #[arg(long)]
    keep_dir: bool,
    /// The dkv-server program (default: the one next to this program).
    #[arg(long)]
    server: Option<PathBuf>,
}

fn parse_transport(s: &str) -> Result<ClientTransport, String> {
    match s {
        "tcp" => Ok(ClientTransport::Tcp),
        "udp" => Ok(ClientTransport::Udp),
        _ => Err(format!("'{s}' is not a transport; use tcp or udp")),
    }
}

fn parse_fault(s: &str) -> Result<Option<Fault>, String> {
    if s.is_empty() { Ok(None) } else { s.parse().map(Some) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut faults: Vec<Fault> = cli.faults.iter().flatten().copied().collect();
    faults.sort();
    faults.dedup();
    if cli.availability && cli.transport == ClientTransport::Udp {
        return fail(
            "--availability needs TCP (dkv-server refuses it with -u: the catch-up streams over the TCP peer port); use --transport tcp",
        );
    }
    let inside = std::env::var_os(network::INSIDE_NAMESPACE_ENV).is_some();
    if !inside {
        match network::namespace_available() {
            Ok(()) => {
                return match network::rerun_in_namespace() {
                    Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                    Err(error) => fail(&error.to_string()),
                };
            }
            Err(error) if faults.contains(&Fault::Partition) => return fail(&error.to_string()),
            Err(error) => eprintln!("note: running on the host's loopback, without partitions: {error}"),
        }
    } else if let Err(error) = network::prepare_namespace(cli.nodes as usize) {
        return fail(&error.to_string());
    }
    let server = match &cli.server {
        Some(server) => server.clone(),
        None => match std::env::current_exe() {
            Ok(exe) => exe.with_file_name("dkv-server"),
            Err(error) => return fail(&format!("cannot find this program's folder ({error}); give --server")),
        },
    };
    let seed = cli.seed.unwrap_or_else(seed_from_clock);
    let transport = match cli.transport {
        ClientTransport::Tcp => "tcp",
        ClientTransport::Udp => "udp",
    };
    let fault_names: Vec<String> = faults.iter().map(Fault::to_string).collect();
    let round_secs = cli.round_secs.max(1);
    let rounds = cli.duration.div_ceil(round_secs).max(1);
    println!(
        "dkv-torture: seed {seed}, {} nodes over {transport}, {} clients on {} keys, {}s of faults ({rounds} rounds): {}",
        cli.nodes,
        cli.clients,
        cli.keys,
        cli.duration,
        if faults.is_empty() { "none".to_string() } else { fault_names.join(",") }
    );
    let started = Instant::now();
    for round in 0..rounds {
        // Each round is a run of its own: a fresh cluster, its own seed, its own verdict.
        let round_seed = seed.wrapping_add(round);
        let round_duration = round_secs.min(cli.duration.saturating_sub(round * round_secs)).max(1);
        let options = Options {
            server: server.clone(),
            duration: Duration::from_secs(round_duration),
            seed: round_seed,
            transport: cli.transport,
            nodes: cli.nodes as usize,
            clients: cli.clients as usize,
            keys: cli.keys as usize,
            faults: faults.clone(),
            own_uids: inside,
            availability: cli.availability,
        };
        println!(
            "round {}/{rounds}; the same round again: dkv-torture --seed {round_seed} --transport {transport} --nodes {} --clients {} --keys {} --duration {round_duration} --faults '{}'{}",
            round + 1,
            cli.nodes,
            cli.clients,
            cli.keys,
            fault_names.join(","),
            if cli.availability { " --availability" } else { "" }
        );
        let code = run_round(&options, cli.keep_dir);
        if code != 0 {
            return ExitCode::from(code);
        }
    }
    if rounds > 1 {
        println!("all {rounds} rounds passed in {:.1}s", started.elapsed().as_secs_f64());
    }
    ExitCode::SUCCESS
}

/// Runs one round in a folder of its own and reports it; returns the exit code it deserves.
fn run_round(options: &Options, keep_dir: bool) -> u8 {
    let folder = match tempfile::Builder::new().prefix("dkv-torture-").tempdir() {
        Ok(folder) => folder,
        Err(error) => {
            eprintln!("dkv-torture: cannot make a temporary folder: {error}");
            return 2;
        }
    };
    let started = Instant::now();
    let result = torture::run(options, folder.path(), &mut |line| println!("{line}"));
    let code = match &result {
        Ok(summary) => {
            report(summary);
            println!("  finished in {:.1}s", started.elapsed().as_secs_f64());
            if summary.passed() { 0 } else { 1 }
        }
        Err(error) if error.is_finding() => {
            println!("FAILED: the cluster failed under torture: {error}");
            1
        }
        Err(error) => {
            eprintln!("dkv-torture: {error}");
            2
        }
    };
    if keep_dir || code != 0 {
        let path = folder.keep();
        println!("  the run's folder is kept: {}", path.display());
    }
    code
}

fn report(summary: &Summary) {
    let f = &summary.faults;
    let c = &summary.checks;
    println!(
        "faults injected: {} (kill {}, kill-all {}, pause {}, partition {})",
        f.total(),
        f.kill,
        f.kill_all,
        f.pause,
        f.partition
    );
    println!(
        "history: {} ops, {} completed, {} unknown ({} more writes had no outcome but no node ever decided them: not applied), {} not sent; {} writes committed after the heal; every node agreed after {} rounds of final reads",
        summary.history.ops.len(),
        summary.completed(),
        summary.unknown(),
        c.resolved_not_applied,
        summary.not_sent,
        summary.committed_after_heal,
        summary.agreement_rounds.map_or("no".to_string(), |r| r.to_string()),
    );
    let verdict =
        |violations: usize| if violations == 0 { "pass".to_string() } else { format!("{violations} violations") };
    let lin = &c.linearizability;
    let lin_verdict = if lin.inconclusive > 0 && lin.violations.is_empty() {
        format!("inconclusive ({} searches ran out of budget)", lin.inconclusive)
    } else {
        verdict(lin.violations.len())
    };
    println!("checkers:");
    println!("  linearizability and strict serializability: {lin_verdict}");
    println!("  durability: {}", verdict(c.durability.len()));
    println!(
        "  exactly-once: {} ({} durable applications in {} log segments)",
        verdict(c.exactly_once.len()),
        c.durable_applications,
        c.segments_read
    );
    println!("  convergence: {}", verdict(c.convergence.len()));
    for violation in c.violations().take(20) {
        println!("{violation}");
    }
    if summary.committed_after_heal == 0 {
        println!("no write committed after the heal: the cluster did not recover");
    }
    if summary.agreement_rounds.is_none() {
        println!("the nodes never agreed on every key within {:?} of the end", torture::AGREEMENT_TIMEOUT);
    }
    println!(
        "summary: ops={} completed={} unknown={} not_sent={} kill={} kill_all={} pause={} partition={} violations={} inconclusive={} verdict={}",
        summary.history.ops.len(),
        summary.completed(),
        summary.unknown(),
        summary.not_sent,
        f.kill,
        f.kill_all,
        f.pause,
        f.partition,
        c.violations().count(),
        lin.inconclusive,
        if summary.passed() { "pass" } else { "FAIL" }
    );
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("dkv-torture: {message}");
    ExitCode::from(2)
}
