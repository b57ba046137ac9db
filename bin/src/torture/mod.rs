//! dkv-torture: real `dkv-server` processes on loopback, concurrent clients through the client
//! library, kill -9, pauses and partitions from a seeded schedule, and the history checked by
//! the simulator's checkers. See `dkv-torture --help`.
//!
//! A run goes: start the cluster (each node with its own data dir, address and, for
//! partitions, uid; see [`network`]); start the clients and the log keeper; inject faults until
//! the duration is up; heal, and let the clients run a little longer, since a write must still
//! commit after the last fault; read every key from every node until they agree; stop the
//! nodes cleanly; check.

pub mod check;
pub mod cluster;
pub mod faults;
pub mod log_keeper;
pub mod network;
pub mod workload;

use check::Checks;
use cluster::{Cluster, ClusterError, ClusterSpec};
use dkv_core::Operation;
use dkv_net::{ClientConfig, ClientTransport};
use dkv_sim::history::{History, Op, OpKind, Result as OpResult};
use faults::{Fault, FaultCounts, FaultError};
use log_keeper::LogKeeper;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;
use workload::{RecordingClient, RunClock};

/// How long the clients go on after the heal: writes must commit again. Longer than a
/// request's timeout, so every client issues at least one request to the healed cluster.
pub const AFTER_HEAL: Duration = Duration::from_secs(REQUEST_TIMEOUT.as_secs() + 1);

/// How long the final reads may take to find every node agreeing.
pub const AGREEMENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Rounds of final reads at most (each reads every key from every node).
const AGREEMENT_ROUNDS_MAX: usize = 1000;

/// One request's total time, every retry and fail-over included; past it the outcome is
/// unknown. Longer than most faults, so many requests ride one out.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct Options {
    pub server: PathBuf,
    pub duration: Duration,
    pub seed: u64,
    pub transport: ClientTransport,
    pub nodes: usize,
    pub clients: usize,
    pub keys: usize,
    pub faults: Vec<Fault>,
    /// Each node runs as its own uid in the tool's own network namespace (partitions need it).
    pub own_uids: bool,
    /// `dkv-server --availability` on every node (see [`ClusterSpec::availability`]).
    pub availability: bool,
}

#[derive(Debug, Error)]
pub enum TortureError {
    #[error("cannot make the run's folder: {0}")]
    Folder(io::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("the log keeper failed: {0}")]
    LogKeeper(io::Error),
    #[error("a client thread panicked")]
    ClientPanicked,
}

impl TortureError {
    /// The cluster itself failed under torture (a node exited by itself, or did not come
    /// back): a finding, not a problem of the tool.
    pub fn is_finding(&self) -> bool {
        matches!(
            self,
            TortureError::Cluster(ClusterError::Exited { .. } | ClusterError::NotReady { .. })
                | TortureError::Fault(FaultError::Cluster(ClusterError::Exited { .. } | ClusterError::NotReady { .. }))
        )
    }
}

/// What a run did and found.
#[derive(Debug)]
pub struct Summary {
    pub history: History,
    pub faults: FaultCounts,
    /// Requests that were never sent (recorded as not applied).
    pub not_sent: u64,
    /// Writes that committed after the heal.
    pub committed_after_heal: usize,
    /// Rounds of final reads until every node agreed (`None`: they never did).
    pub agreement_rounds: Option<usize>,
    pub checks: Checks,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.checks.passed() && self.committed_after_heal > 0 && self.agreement_rounds.is_some()
    }

    /// Ops with a definite outcome (a read, a commit, a failed update).
    pub fn completed(&self) -> usize {
        self.history.ops.iter().filter(|op| op.response.is_some() && op.result != OpResult::NotApplied).count()
    }

    pub fn unknown(&self) -> usize {
        self.history.ops.iter().filter(|op| op.result == OpResult::Unknown).count()
    }
}

/// Runs the cluster in `folder` (which the caller keeps or deletes), telling progress to `say`.
pub fn run(options: &Options, folder: &std::path::Path, say: &mut dyn FnMut(String)) -> Result<Summary, TortureError> {
    let spec = ClusterSpec {
        server: options.server.clone(),
        nodes: options.nodes,
        transport: options.transport,
        own_uids: options.own_uids,
        availability: options.availability,
    };
    let data_dirs: Vec<PathBuf> = (0..options.nodes).map(|i| folder.join(format!("node-{i}"))).collect();
    let keeper = LogKeeper::start(data_dirs.clone(), &folder.join("kept-segments")).map_err(TortureError::LogKeeper)?;
    let mut cluster = Cluster::start(spec, folder)?;
    let started = Instant::now();
    let clock = RunClock::start();
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let commits = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..options.clients)
        .map(|c| {
            // Each client prefers another node, and fails over to the rest in order.
            let nodes = (0..options.nodes).map(|i| cluster.addr((c + i) % options.nodes)).collect();
            let mut config = ClientConfig::new(nodes, options.transport);
            config.request_timeout = REQUEST_TIMEOUT;
            config.attempt_timeout = Duration::from_secs(1);
            config.connect_timeout = Duration::from_millis(300);
            config.udp_retransmit_min = Duration::from_millis(50);
            config.udp_retransmit_max = Duration::from_millis(400);
            let client = dkv_net::Client::new(config).expect("a client with nodes and no credentials");
            let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
            rng.set_stream(1 + c as u64);
            workload::spawn_client(client, rng, options.keys, clock, stop.0.clone(), commits.clone())
        })
        .collect();

    let mut schedule = ChaCha8Rng::seed_from_u64(options.seed);
    let faults =
        faults::run(&mut cluster, &options.faults, &mut schedule, started + options.duration, started, &commits, say)?;
    let healed_at = clock.nanos();
    say(format!("  {:7.2}s healed; the clients go on for {AFTER_HEAL:?}", started.elapsed().as_secs_f64()));
    std::thread::sleep(AFTER_HEAL);
    stop.0.store(true, Ordering::SeqCst);
    let mut history = History::default();
    let mut not_sent = 0;
    for client in clients {
        let record = client.join().map_err(|_| TortureError::ClientPanicked)?;
        history.ops.extend(record.ops);
        not_sent += record.not_sent;
    }
    let committed_after_heal = history
        .ops
        .iter()
        .filter(|op| {
            op.invoke > healed_at
                && matches!(op.kind, OpKind::Txn { .. })
                && matches!(op.result, OpResult::Committed(_))
        })
        .count();
    for i in 0..options.nodes {
        cluster.check_running(i)?;
    }
    say(format!("  {:7.2}s clients stopped; reading every key from every node", started.elapsed().as_secs_f64()));
    let agreement_rounds = read_until_agreed(&cluster, options.keys, clock, &mut history);
    cluster.stop_all()?;
    let kept = keeper.finish().map_err(TortureError::LogKeeper)?;
    let unknown = history.ops.iter().filter(|op| op.result == OpResult::Unknown).count();
    say(format!(
        "  {:7.2}s nodes stopped; checking {} ops ({unknown} with unknown outcome)",
        started.elapsed().as_secs_f64(),
        history.ops.len()
    ));
    let dirs: Vec<&std::path::Path> = data_dirs.iter().map(PathBuf::as_path).collect();
    let checks = check_on_a_large_stack(&mut history, &dirs, &kept);
    Ok(Summary { history, faults, not_sent, committed_after_heal, agreement_rounds, checks })
}

/// The linearizability search goes one call deeper per operation it places: a history of
/// tens of thousands of operations needs far more stack than a main thread has.
const CHECK_STACK_BYTES: usize = 1 << 30;

/// Runs [`check::check`] on a thread with [`CHECK_STACK_BYTES`] of stack (reserved, and
/// touched only as deep as the search goes).
fn check_on_a_large_stack(
    history: &mut History,
    dirs: &[&std::path::Path],
    kept: &[Vec<log_keeper::KeptSegment>],
) -> Checks {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("check".into())
            .stack_size(CHECK_STACK_BYTES)
            .spawn_scoped(scope, || check::check(history, dirs, kept))
            .expect("a thread for the checkers")
            .join()
            .expect("the checkers do not panic")
    })
}

/// Reads every key from every node, in rounds, until one round finds all nodes agreeing (a
/// commit still reaching a participant may make a round differ). Every read goes into the
/// history, so the checkers judge these reads like any other. Returns the rounds it took.
fn read_until_agreed(cluster: &Cluster, keys: usize, clock: RunClock, history: &mut History) -> Option<usize> {
    let deadline = Instant::now() + AGREEMENT_TIMEOUT;
    let mut readers: Vec<RecordingClient> =
        (0..cluster.nodes()).map(|i| RecordingClient::new(cluster.client_of(i, REQUEST_TIMEOUT))).collect();
    for round in 1..=AGREEMENT_ROUNDS_MAX {
        if Instant::now() >= deadline {
            return None;
        }
        let mut answers: Vec<Vec<OpResult>> = Vec::new();
        for reader in &mut readers {
            let mut node_answers = Vec::new();
            for k in 0..keys {
                let op: Op = reader.run(Operation::Get { key: format!("k{k}").into_bytes() }, clock);
                node_answers.push(op.result.clone());
                history.ops.push(op);
            }
            answers.push(node_answers);
        }
        let definite = answers.iter().flatten().all(|r| matches!(r, OpResult::Read(..)));
        if definite && answers.windows(2).all(|w| w[0] == w[1]) {
            return Some(round);
        }
    }
    None
}

/// Stops the client threads however the run ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
