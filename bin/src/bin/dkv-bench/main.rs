//! dkv-bench: closed-loop load against a dkv cluster, with latency percentiles from HDR
//! histograms. Each client has its own client id, its own connection and one request in
//! flight; keys are drawn at random from a fixed key space; values have a fixed size. Two
//! threads drive every client's connection, as etcdbench drives etcd's ([`multiplexed`]);
//! `--blocking-clients` gives each client a thread of its own and the client library instead.
//! `--json` prints one line with the same fields as the etcd side's `etcdbench`
//! (../shared/peers), so the two compare directly.

use clap::{Parser, ValueEnum};
use dkv::{LogLevel, init_logging};
use dkv_core::{NodeId, Operation, Outcome, TxnOp};
use dkv_net::security::credentials::{ClientTrust, NodeCredentials, USERS_FILE, init_cluster};
use dkv_net::security::users::{ClientUser, load_client_user, load_users};
use dkv_net::testing::SplitMix64;
use dkv_net::{Client, ClientConfig, ClientTransport, Server, ServerConfig, ServerHandle, Transport};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

mod multiplexed;

const EXAMPLES: &str = "\
Examples:
  # An in-process 3-node cluster on loopback (fsync on), 64 clients putting for 10 s:
  dkv-bench --local 3 --op put --clients 64 --secs 10

  # Against a running cluster (dkv-server demo), reads, one JSON line:
  dkv-bench --nodes 127.0.0.1:9099,127.0.0.1:9100,127.0.0.1:9101 --op get --clients 16 --json

Ops: put, get (keys preloaded), update (keys preloaded), txn (--txn-ops puts in one
transaction), mix (half gets, half puts; keys preloaded). Clients are spread over the nodes
round-robin. Latency is measured per request, from its send to its outcome (a TryAgain is sent
again, and counts in it). Two threads drive every client's connection, as etcdbench drives
etcd's; --blocking-clients runs each client on a thread of its own through the client library
(with its fail-over), as UDP and --secure-clients always do.";

/// Latencies above this (microseconds) are clamped; a request that slow is a failure anyway.
const LATENCY_US_MAX: u64 = 60_000_000;
/// How often the progress bar is refreshed.
const PROGRESS_TICK: Duration = Duration::from_millis(100);
/// How long --local waits for its nodes to finish booting (a first write to succeed).
const LOCAL_READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    Put,
    Get,
    Update,
    Txn,
    Mix,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Update => "update",
            Op::Txn => "txn",
            Op::Mix => "mix",
        }
    }

    /// Whether every key must exist before the run (reads and updates of missing keys would
    /// measure "not found" instead of the real path).
    fn needs_preload(self) -> bool {
        matches!(self, Op::Get | Op::Update | Op::Mix)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    Tcp,
    Udp,
}

#[derive(Parser)]
#[command(
    name = "dkv-bench",
    version,
    about = "Closed-loop load generator for dkv: throughput and latency percentiles",
    after_help = EXAMPLES
)]
struct Cli {
    /// Host of the node to load (with -p), when --nodes and --local are not given.
    #[arg(short = 's', long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Port of the node to load (with -s).
    #[arg(short = 'p', long, default_value_t = 9099)]
    port: u16,
    /// The nodes to load, HOST:PORT comma-separated; clients are spread over them round-robin.
    #[arg(long, value_delimiter = ',', conflicts_with = "local")]
    nodes: Vec<String>,
    /// Start an in-process cluster of this many nodes on loopback (temporary data dirs, fsync
    /// on) and load it.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    local: Option<u8>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    clients: u32,
    /// Measured seconds (after any preload).
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    #[arg(long, value_enum, default_value_t = Op::Put)]
    op: Op,
    /// Size of the key space; keys are drawn uniformly from it.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Puts per transaction for --op txn.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    txn_ops: u32,
    /// Write every key once before the run, whatever the op (get, update and mix always do).
    #[arg(long)]
    preload: bool,
    /// Client transport.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
    /// Per-request timeout in seconds (retries included); a request that times out is an error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
    /// With --local: the nodes require users, and every client talks TLS (over TCP) or signs its
    /// datagrams (over UDP) as the admin user, to measure what client security costs. (Peers
    /// always use mutual TLS.)
    #[arg(long, requires = "local")]
    secure_clients: bool,
    /// With --local: the nodes run as `dkv-server --availability` runs them (configuration
    /// changes and read leases on), to measure what staying available through the loss of a
    /// minority costs.
    #[arg(long, requires = "local")]
    availability: bool,
    /// One OS thread per client, each through the client library (its retries and fail-over).
    /// By default two threads drive every client's connection, as etcdbench drives etcd's
    /// (clients over UDP, and with --secure-clients, always go through the library).
    #[arg(long)]
    blocking_clients: bool,
    /// Log level of --local servers: error, info or debug.
    #[arg(short = 'l', long, default_value = "error")]
    log: LogLevel,
}

#[derive(Debug, Error)]
enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the local cluster: {0}; check that loopback ports and a temp dir are available")]
    Local(String),
    #[error("cannot create a client: {0}")]
    Client(#[from] dkv_net::ClientError),
    #[error("{0}; is every node of the cluster running?")]
    Driver(String),
    #[error("preload failed at key {key}: {error}; is every node of the cluster running? (writes need all of them)")]
    Preload { key: u64, error: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(report) => {
            if report.errors > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("dkv-bench: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Report, BenchError> {
    if !(cli.secs > 0.0 && cli.secs <= 86_400.0) {
        return Err(BenchError::Usage(format!("--secs {} must be above 0 and at most 86400", cli.secs)));
    }
    let timeout_secs_max = dkv_core::completions::CLIENT_RETRY_WINDOW_MAX.as_secs_f64();
    if !(cli.timeout > 0.0 && cli.timeout <= timeout_secs_max) {
        return Err(BenchError::Usage(format!(
            "--timeout {} must be above 0 and at most {timeout_secs_max} (a request retried later than that could be \
             applied twice)",
            cli.timeout
        )));
    }
    let transport = match cli.transport {
        TransportArg::Tcp => ClientTransport::Tcp,
        TransportArg::Udp => ClientTransport::Udp,
    };
    let local = match cli.local {
        Some(n) => {
            init_logging(cli.log);
            Some(LocalCluster::start(n, cli.secure_clients, cli.availability).map_err(BenchError::Local)?)
        }
        None => None,
    };
    let nodes = match &local {
        Some(cluster) => cluster.addrs.clone(),
        None if cli.nodes.is_empty() => vec![resolve(&format!("{}:{}", cli.host, cli.port))?],
        None => cli.nodes.iter().map(|n| resolve(n)).collect::<Result<_, _>>()?,
    };
    let workload =
        Workload { op: cli.op, keys: cli.keys, value: Arc::from(vec![b'v'; cli.value_size]), txn_ops: cli.txn_ops };
    let timeout = Duration::from_secs_f64(cli.timeout);
    let make_client = |i: u32| -> Result<Client, BenchError> {
        // Each client prefers its own node and fails over to the others.
        let mut ordered = nodes.clone();
        ordered.rotate_left(i as usize % nodes.len());
        let mut config = ClientConfig::new(ordered, transport);
        config.request_timeout = timeout;
        if let Some(secure) = local.as_ref().and_then(|cluster| cluster.secure.as_ref()) {
            config.tls = Some(secure.trust.clone());
            config.user = Some(secure.user.clone());
        }
        Ok(Client::new(config)?)
    };
    if let Some(cluster) = &local {
        cluster.wait_ready(make_client(0)?)?;
    }
    if cli.preload || cli.op.needs_preload() {
        preload(&workload, cli.clients, &make_client, !cli.json)?;
    }
    let driver = if cli.blocking_clients || cli.transport == TransportArg::Udp || cli.secure_clients {
        Driver::Blocking((0..cli.clients).map(make_client).collect::<Result<Vec<_>, _>>()?)
    } else {
        Driver::Multiplexed { nodes: nodes.clone(), clients: cli.clients, timeout }
    };
    let report = measure(&workload, driver, Duration::from_secs_f64(cli.secs), !cli.json)?;
    if cli.json {
        println!("{}", report.json(&cli, &workload));
    } else {
        print!("{}", report.table(&cli, &workload, nodes.len()));
    }
    if let Some(cluster) = local {
        cluster.stop();
    }
    Ok(report)
}

fn resolve(addr: &str) -> Result<SocketAddr, BenchError> {
    dkv::resolve(addr).map_err(BenchError::Usage)
}

/// What every client does, shared read-only.
struct Workload {
    op: Op,
    keys: u64,
    value: Arc<[u8]>,
    txn_ops: u32,
}

impl Workload {
    fn key(index: u64) -> Vec<u8> {
        format!("key{index:010}").into_bytes()
    }

    /// The workload's next request, its keys drawn from `rng`.
    fn next_operation(&self, rng: &mut SplitMix64) -> Operation {
        let key = Workload::key(rng.below(self.keys));
        let put = |key| TxnOp::Put { key, value: self.value.to_vec() };
        match self.op {
            Op::Put => Operation::Txn { ops: vec![put(key)] },
            Op::Update => Operation::Txn { ops: vec![TxnOp::Update { key, value: self.value.to_vec() }] },
            Op::Get => Operation::Get { key },
            Op::Txn => {
                let mut ops = vec![put(key)];
                for _ in 1..self.txn_ops {
                    ops.push(put(Workload::key(rng.below(self.keys))));
                }
                Operation::Txn { ops }
            }
            Op::Mix if rng.next_u64() & 1 == 0 => Operation::Get { key },
            Op::Mix => Operation::Txn { ops: vec![put(key)] },
        }
    }

    /// One request of the workload through the client library; Ok(()) when its outcome is the
    /// one expected.
    fn run_one(&self, client: &mut Client, rng: &mut SplitMix64) -> Result<(), String> {
        match client.execute(self.next_operation(rng)) {
            Ok(Outcome::Committed(_) | Outcome::Value { .. }) => Ok(()),
            Ok(other) => Err(format!("unexpected outcome: {other}")),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// Writes every key once, the key space split evenly over the clients.
fn preload(
    workload: &Workload,
    clients: u32,
    make_client: &dyn Fn(u32) -> Result<Client, BenchError>,
    show_progress: bool,
) -> Result<(), BenchError> {
    let progress = if show_progress { ProgressBar::new(workload.keys) } else { ProgressBar::hidden() };
    progress.set_style(style("preload {bar:40} {pos}/{len} keys {per_sec}"));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<JoinHandle<Result<(), BenchError>>> = (0..clients.min(workload.keys.min(u32::MAX as u64) as u32))
        .map(|i| {
            let mut client = make_client(i)?;
            let (keys, value, done) = (workload.keys, workload.value.clone(), done.clone());
            Ok(std::thread::spawn(move || {
                // Client i writes keys i, i + clients, i + 2 * clients, ...
                for key in (u64::from(i)..keys).step_by(clients as usize) {
                    match client.put(Workload::key(key), value.to_vec()) {
                        Ok(Outcome::Committed(_)) => {}
                        Ok(other) => return Err(BenchError::Preload { key, error: other.to_string() }),
                        Err(error) => return Err(BenchError::Preload { key, error: error.to_string() }),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }))
        })
        .collect::<Result<_, BenchError>>()?;
    while !threads.iter().all(|t| t.is_finished()) {
        progress.set_position(done.load(Ordering::Relaxed));
        std::thread::sleep(PROGRESS_TICK);
    }
    progress.finish_and_clear();
    for thread in threads {
        thread.join().expect("a preload thread panicked")?;
    }
    Ok(())
}

struct Report {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    first_error: Option<String>,
}

/// How the clients are driven: by [`DRIVING_THREADS`] threads multiplexing their connections
/// (the default, as etcdbench drives etcd), or one blocking thread per client through the
/// client library.
enum Driver {
    Multiplexed { nodes: Vec<SocketAddr>, clients: u32, timeout: Duration },
    Blocking(Vec<Client>),
}

/// Threads that drive the clients by default: as many as etcdbench's tokio runtime has.
const DRIVING_THREADS: u32 = 2;

/// Runs every client for `duration` and merges what they measured.
fn measure(workload: &Workload, driver: Driver, duration: Duration, show_progress: bool) -> Result<Report, BenchError> {
    let progress = if show_progress { ProgressBar::new(duration.as_millis() as u64) } else { ProgressBar::hidden() };
    progress.set_style(style("{bar:40} {elapsed}/{duration} {msg}"));
    let completed = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let end = started + duration;
    let results: Vec<Result<Measured, String>> = std::thread::scope(|scope| {
        let (completed, stop) = (&completed, &stop);
        let threads: Vec<_> = match driver {
            Driver::Multiplexed { nodes, clients, timeout } => (0..DRIVING_THREADS.min(clients))
                .map(|t| {
                    let (nodes, threads) = (nodes.clone(), DRIVING_THREADS.min(clients));
                    let share = clients * t / threads..clients * (t + 1) / threads;
                    // Named threads let a profile split client cost from server cost.
                    let thread = std::thread::Builder::new().name(format!("bench-driver-{t}"));
                    thread
                        .spawn_scoped(scope, move || {
                            multiplexed::drive(workload, &nodes, share, end, timeout, stop, completed)
                                .map_err(|e| format!("cannot drive the clients: {e}"))
                        })
                        .expect("the OS starts a driving thread")
                })
                .collect(),
            Driver::Blocking(clients) => clients
                .into_iter()
                .enumerate()
                .map(|(i, mut client)| {
                    let thread = std::thread::Builder::new().name(format!("bench-client-{i}"));
                    thread
                        .spawn_scoped(scope, move || Ok(run_blocking(workload, &mut client, i, end, stop, completed)))
                        .expect("the OS starts a client thread")
                })
                .collect(),
        };
        while Instant::now() < end && !threads.iter().all(|t| t.is_finished()) {
            let ops = completed.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            progress.set_position(started.elapsed().as_millis() as u64);
            progress.set_message(format!("{ops} ops, {:.0} ops/s", ops as f64 / secs));
            std::thread::sleep(PROGRESS_TICK.min(end.saturating_duration_since(Instant::now())));
        }
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().map(|t| t.join().expect("a client thread panicked")).collect()
    });
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let mut report = Report { ops: 0, errors: 0, elapsed, latency_us: new_histogram(), first_error: None };
    for measured in results {
        let measured = measured.map_err(BenchError::Driver)?;
        report.latency_us.add(&measured.latency_us).expect("histograms share their bounds");
        report.ops += measured.ops;
        report.errors += measured.errors;
        if report.first_error.is_none() {
            report.first_error = measured.first_error;
        }
    }
    Ok(report)
}

/// One client on a thread of its own, through the client library, until `end` (or `stop`).
fn run_blocking(
    workload: &Workload,
    client: &mut Client,
    i: usize,
    end: Instant,
    stop: &AtomicBool,
    completed: &AtomicU64,
) -> Measured {
    let mut measured = Measured { latency_us: new_histogram(), ops: 0, errors: 0, first_error: None };
    let mut rng = SplitMix64(client.id().0 ^ (i as u64) << 32);
    // Bounded by time: a request takes at most its timeout, so a client stops at most one
    // timeout after `end`.
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let sent = Instant::now();
        let result = workload.run_one(client, &mut rng);
        let micros = (sent.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
        match result {
            Ok(()) => {
                measured.ops += 1;
                measured.latency_us.record(micros).expect("latencies are clamped into the histogram's range");
                completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                measured.errors += 1;
                measured.first_error.get_or_insert(error);
            }
        }
    }
    measured
}

/// What the clients of one thread measured.
struct Measured {
    latency_us: Histogram<u64>,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant bounds are valid")
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("the template is a constant")
}

impl Report {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn json(&self, cli: &Cli, workload: &Workload) -> String {
        let h = &self.latency_us;
        serde_json::json!({
            "system": "dkv",
            "availability": cli.availability,
            "op": cli.op.name(),
            "clients": cli.clients,
            "secs": self.elapsed.as_secs_f64(),
            "keys": workload.keys,
            "value_size": workload.value.len(),
            "ops": self.ops,
            "ops_per_s": self.ops_per_s().round(),
            "p50_us": h.value_at_quantile(0.50),
            "p99_us": h.value_at_quantile(0.99),
            "p999_us": h.value_at_quantile(0.999),
            "max_us": h.max(),
            "errors": self.errors,
        })
        .to_string()
    }

    fn table(&self, cli: &Cli, workload: &Workload, node_count: usize) -> String {
        let h = &self.latency_us;
        let mut out = format!(
            "dkv-bench: {} x {} clients over {} node(s){}, {} keys, {}-byte values, {:.1} s\n",
            cli.op.name(),
            cli.clients,
            node_count,
            if cli.availability { " with --availability" } else { "" },
            workload.keys,
            workload.value.len(),
            self.elapsed.as_secs_f64()
        );
        out += &format!("  {:<10} {:>12}\n", "ops", self.ops);
        out += &format!("  {:<10} {:>12.0}\n", "ops/s", self.ops_per_s());
        for (name, q) in [("p50 µs", 0.5), ("p99 µs", 0.99), ("p99.9 µs", 0.999)] {
            out += &format!("  {:<10} {:>12}\n", name, h.value_at_quantile(q));
        }
        out += &format!("  {:<10} {:>12}\n", "max µs", h.max());
        out += &format!("  {:<10} {:>12}\n", "errors", self.errors);
        if let Some(error) = &self.first_error {
            out += &format!("  first error: {error}\n");
        }
        out
    }
}

/// An in-process cluster on loopback, each node on its own thread with its own temporary data
/// dir (deleted when the cluster is dropped), exactly as `dkv-server demo` runs one: peers on
/// their own ports, over mutual TLS with credentials made for the run.
struct LocalCluster {
    addrs: Vec<SocketAddr>,
    /// With --secure-clients: what clients need to talk TLS and authenticate.
    secure: Option<SecureClients>,
    handles: Vec<ServerHandle>,
    threads: Vec<JoinHandle<()>>,
    _dirs: Vec<tempfile::TempDir>,
}

struct SecureClients {
    trust: Arc<ClientTrust>,
    user: Arc<ClientUser>,
}

impl LocalCluster {
    fn start(n: u8, secure_clients: bool, availability: bool) -> Result<LocalCluster, String> {
        let addrs = (0..n).map(|_| free_loopback_addr()).collect::<Result<Vec<_>, _>>()?;
        let peer_addrs = (0..n).map(|_| free_loopback_addr()).collect::<Result<Vec<_>, _>>()?;
        let credentials =
            tempfile::Builder::new().prefix("dkv-bench-credentials-").tempdir().map_err(|e| e.to_string())?;
        let ids: Vec<NodeId> = (0..n).map(NodeId).collect();
        init_cluster(&credentials.path().join("c"), &ids).map_err(|e| e.to_string())?;
        let client_dir = credentials.path().join("c/client");
        let secure = if secure_clients {
            let trust = ClientTrust::load(&client_dir).map_err(|e| e.to_string())?;
            let user = load_client_user(&client_dir.join("admin.user")).map_err(|e| e.to_string())?;
            Some(SecureClients { trust: Arc::new(trust), user: Arc::new(user) })
        } else {
            None
        };
        let mut cluster = LocalCluster { addrs, secure, handles: Vec::new(), threads: Vec::new(), _dirs: Vec::new() };
        for i in 0..n as usize {
            let dir = tempfile::Builder::new().prefix("dkv-bench-").tempdir().map_err(|e| e.to_string())?;
            let peers: BTreeMap<NodeId, SocketAddr> =
                (0..n as usize).filter(|&j| j != i).map(|j| (NodeId(j as u8), peer_addrs[j])).collect();
            let (id, addr, peer_addr) = (NodeId(i as u8), cluster.addrs[i], peer_addrs[i]);
            let mut config = ServerConfig::new(id, addr, peer_addr, peers, Transport::Both, dir.path().to_path_buf());
            // A new cluster in new dirs (`dkv-server --init`).
            config.init = true;
            config.timing.leases = availability;
            let node_credentials = credentials.path().join(format!("c/node-{i}"));
            config.credentials = Some(Arc::new(NodeCredentials::load(&node_credentials).map_err(|e| e.to_string())?));
            if secure_clients {
                config.users = Some(load_users(&node_credentials.join(USERS_FILE)).map_err(|e| e.to_string())?);
            }
            let server = Server::bind(config).map_err(|e| e.to_string())?;
            cluster.handles.push(server.handle());
            let thread = std::thread::Builder::new().name(format!("dkv-node-{i}"));
            let thread = thread
                .spawn(move || {
                    if let Err(error) = server.run() {
                        eprintln!("dkv-bench: local node {i} failed: {error}");
                    }
                })
                .map_err(|e| e.to_string())?;
            cluster.threads.push(thread);
            cluster._dirs.push(dir);
        }
        cluster._dirs.push(credentials);
        Ok(cluster)
    }

    /// Waits until a write commits: every node has booted and the links are up.
    fn wait_ready(&self, mut client: Client) -> Result<(), BenchError> {
        let deadline = Instant::now() + LOCAL_READY_TIMEOUT;
        loop {
            match client.put(b"dkv-bench-ready".to_vec(), b"1".to_vec()) {
                Ok(Outcome::Committed(_)) => return Ok(()),
                result if Instant::now() >= deadline => {
                    return Err(BenchError::Local(format!("no write committed in time: {result:?}")));
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn stop(self) {
        self.handles.iter().for_each(ServerHandle::stop);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// A loopback address whose port is free for TCP and UDP right now, from below the ephemeral
/// range (so no outgoing connection can take it before the server binds it; another program
/// binding it on purpose would make the start fail with a clear bind error).
fn free_loopback_addr() -> Result<SocketAddr, String> {
    match dkv_net::testing::try_free_ports(1).first() {
        Some(&port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        None => Err("no loopback port in 20000..32000 free for both TCP and UDP".into()),
    }
}
