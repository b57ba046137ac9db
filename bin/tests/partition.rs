//! A real partition (issue 12, item 6): three `dkv-server --availability` processes in a network
//! namespace of their own, node 2 cut off from nodes 0 and 1 while the clients still reach every
//! node, then healed: once both ways, and once one way only, node 2 hearing nothing from the
//! others while what it sends still reaches them (the cut that §7.3's round-trip rule for "heard
//! from" is there for: counting arrivals alone, nobody would suspect node 2). It uses dkv-torture's machinery (`dkv::torture::network`: each
//! node on its own loopback address and uid, a cut is a policy-routing rule per direction).
//!
//! What it asserts (docs/protocol.md §7.3–§7.6):
//! - writes through node 0 commit again within [`WRITE_AFTER_CUT_MAX`] of the cut (node 2 is
//!   removed by the other two);
//! - node 2 never serves a stale read: every read it answers of a key after that key's write
//!   committed through node 0 is the new value, or "not serving";
//! - node 2 stops serving within the lease bound: no read sent to it later than
//!   `L (1 + ρ)` after the cut, until the heal, is served;
//! - after the heal, node 2 is added back, catches up and serves every write it missed within
//!   [`SERVING_AFTER_HEAL_MAX`], and a write it coordinates commits and every node reads it;
//!   its log shows it joined again in epoch 3 or later.
//!
//! The test runs itself again inside `unshare --net --pid` (root only): the namespace's pid 1 is
//! that copy, so when it ends, however it ends, the kernel kills every node, and the network
//! namespace goes with them. Without namespaces (not root, no `unshare`) it says so loudly and
//! passes, unless `CI` is set: then it fails, since CI runs as root and must run it.

use dkv::torture::cluster::{Cluster, ClusterSpec};
use dkv::torture::network::{self, Cut, INSIDE_NAMESPACE_ENV};
use dkv_core::config::CLOCK_DRIFT_PPM;
use dkv_core::{NodeId, Outcome, Record, Timing};
use dkv_net::identity::Identity;
use dkv_net::security::credentials::NodeCredentials;
use dkv_net::{ClientError, ClientTransport, Wal};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SERVER: &str = env!("CARGO_BIN_EXE_dkv-server");
const NODES: usize = 3;
const CUT_OFF: usize = 2;

/// The whole run, outside: past it the copy in the namespace is killed (and every node with it).
const RUN_MAX: Duration = Duration::from_secs(180);
/// Writes through node 0 commit within this of the cut: node 2 is suspected after
/// `detection_timeout` (1 s), removed by a change, and commits wait `W` (about 0.5 s) after the
/// install; the rest is the client's retries.
const WRITE_AFTER_CUT_MAX: Duration = Duration::from_secs(10);
/// Node 2 serves every write it missed within this of the heal: it learns it was removed, asks
/// to join, is added, catches up by state transfer, restarts and takes a lease. A failed
/// catch-up waits `join_grace` (10 s) before it asks again.
const SERVING_AFTER_HEAL_MAX: Duration = Duration::from_secs(45);
/// Writes node 2 misses while it is cut off.
const MISSED_WRITES: usize = 3;
/// The key node 2 holds an old value of when it is cut off.
const KEY: &str = "k";
/// Reads node 2 answers "not serving", past its lease bound, before the heal.
const CUT_OFF_READS_MIN: usize = 10;
/// Reads of [`KEY`] the watcher sends to node 2 at most (it stops long before).
const WATCHER_READS_MAX: usize = 100_000;

/// Node 2 cut off from nodes 0 and 1, both ways (every node sends from its own connections and
/// sockets, so blocking what each side sends to the other cuts the link both ways).
fn both_ways() -> Vec<Cut> {
    (0..NODES)
        .filter(|&other| other != CUT_OFF)
        .flat_map(|other| [Cut { from: CUT_OFF, to: other }, Cut { from: other, to: CUT_OFF }])
        .collect()
}

/// Nodes 0 and 1 cannot reach node 2, which still reaches them: it hears nothing (no grant, no
/// echo of its lease requests) while its heartbeats and lease requests still arrive (until TCP,
/// hearing no acknowledgement, stops sending).
fn hears_nothing() -> Vec<Cut> {
    (0..NODES).filter(|&other| other != CUT_OFF).map(|other| Cut { from: other, to: CUT_OFF }).collect()
}

/// `L (1 + ρ)`: node 2's lease ends at most `L` after the last lease request it sent before the
/// cut, by its clock; the drift bound allows for its clock running slow.
fn lease_bound() -> Duration {
    let lease = Timing::default().lease_duration;
    lease + lease * CLOCK_DRIFT_PPM as u32 / 1_000_000
}

#[test]
fn a_node_cut_off_stops_serving_the_rest_writes_on_and_after_the_heal_it_rejoins() {
    partition_test("a_node_cut_off_stops_serving_the_rest_writes_on_and_after_the_heal_it_rejoins", both_ways);
}

#[test]
fn a_node_that_hears_nothing_stops_serving_the_rest_writes_on_and_after_the_heal_it_rejoins() {
    partition_test(
        "a_node_that_hears_nothing_stops_serving_the_rest_writes_on_and_after_the_heal_it_rejoins",
        hears_nothing,
    );
}

/// The test `name` with node 2 cut off by `cuts`: run again inside a namespace of its own, and
/// there, run.
fn partition_test(name: &str, cuts: fn() -> Vec<Cut>) {
    if std::env::var_os(INSIDE_NAMESPACE_ENV).is_some() {
        inside_the_namespace(&cuts());
    } else {
        run_in_a_namespace(name);
    }
}

/// Runs the test `name` of this binary again inside a fresh network and pid namespace, with a
/// deadline, and fails if it fails. Its output (it writes to a file, so this never blocks on a
/// pipe) is shown with this test's.
fn run_in_a_namespace(name: &str) {
    if let Err(error) = network::namespace_available() {
        let message = format!("THE PARTITION TEST DID NOT RUN: {error}");
        assert!(std::env::var_os("CI").is_none(), "{message} (CI is set, and CI runs as root: it must run)");
        eprintln!("\n{}\n{message}\n{}\n", "!".repeat(80), "!".repeat(80));
        return;
    }
    let folder = tempfile::tempdir().expect("a temporary folder");
    let output_path = folder.path().join("output");
    let output = std::fs::File::create(&output_path).expect("the output file");
    let exe = std::env::current_exe().expect("this test's program");
    let mut child = network::in_namespace(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("the output file"))
        .stderr(output)
        .spawn()
        .expect("unshare runs");
    let deadline = Instant::now() + RUN_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the copy in the namespace") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // unshare's --kill-child takes the copy down, and the kernel every node with it.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("{}", std::fs::read_to_string(&output_path).unwrap_or_default());
    match status {
        Some(status) => {
            assert!(status.success(), "the partition test failed inside its namespace ({status}); see above")
        }
        None => panic!("the partition test did not end within {RUN_MAX:?}; killed"),
    }
}

/// What node 2 answered to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// Served from its memory: the value, or absent.
    Served(Option<String>),
    NotServing,
    /// No definite answer (a timeout, a lock still held); says nothing either way.
    Other(String),
}

fn answer_of(result: Result<Outcome, ClientError>) -> Answer {
    match result {
        Ok(Outcome::Value { value, .. }) => Answer::Served(Some(String::from_utf8_lossy(&value).into_owned())),
        Ok(Outcome::NotFound) => Answer::Served(None),
        Ok(Outcome::NotServing(_)) | Err(ClientError::NotServing { .. }) => Answer::NotServing,
        other => Answer::Other(format!("{other:?}")),
    }
}

/// A read of [`KEY`] at node 2, when it was sent and when it was answered (the client tries
/// again meanwhile after a "not serving", so the node's answer comes from somewhere between).
struct Watched {
    sent: Instant,
    answered: Instant,
    answer: Answer,
}

/// Reads [`KEY`] at node 2 alone, over and over, until told to stop.
struct Watcher {
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<Vec<Watched>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Watcher {
    fn start(cluster: &Cluster) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(Mutex::new(Vec::new()));
        // A short timeout: a "not serving" answer is known within one attempt.
        let mut client = cluster.client_of(CUT_OFF, Duration::from_millis(300));
        let thread = std::thread::spawn({
            let (stop, reads) = (stop.clone(), reads.clone());
            move || {
                for _ in 0..WATCHER_READS_MAX {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let sent = Instant::now();
                    let answer = answer_of(client.get(KEY));
                    reads.lock().unwrap().push(Watched { sent, answered: Instant::now(), answer });
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Watcher { stop, reads, thread }
    }

    /// Waits until `count` reads sent at `since` or later were answered "not serving", or
    /// panics at `deadline`.
    fn wait_not_serving(&self, count: usize, since: Instant, deadline: Instant) {
        loop {
            let seen =
                self.reads.lock().unwrap().iter().filter(|r| r.sent >= since && r.answer == Answer::NotServing).count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "n2 answered 'not serving' to {seen} reads, not {count}, by the deadline"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Vec<Watched> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the watcher does not panic");
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

/// Puts `key` = `value` through node `node` alone until it commits, or panics at `deadline`; returns
/// when the commit was answered. A write that timed out may still commit later: it is the same
/// write, so trying it again is harmless.
fn put_until_committed(cluster: &Cluster, node: usize, key: &str, value: &str, deadline: Instant) -> Instant {
    for attempt in 1.. {
        match cluster.client_of(node, Duration::from_secs(2)).put(key, value) {
            Ok(Outcome::Committed(_)) => return Instant::now(),
            other => assert!(
                Instant::now() < deadline,
                "{key}={value} through n{node} not committed by the deadline ({attempt} attempts); last answer {other:?}"
            ),
        }
    }
    unreachable!("attempts are counted without end")
}

/// Reads `key` at node `node` alone until it serves `value`, or panics at `deadline`. The write
/// of `value` has committed: any other value, or none, is a stale read.
fn read_until_served(cluster: &Cluster, node: usize, key: &str, value: &str, deadline: Instant) {
    let mut client = cluster.client_of(node, Duration::from_millis(500));
    let mut last = Answer::Other("no read yet".into());
    while Instant::now() < deadline {
        last = answer_of(client.get(key));
        match &last {
            Answer::Served(Some(found)) if found == value => return,
            Answer::Served(stale) => {
                panic!("n{node} served a stale read of {key}: {stale:?}, after {key}={value} committed")
            }
            Answer::NotServing | Answer::Other(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("n{node} did not serve {key}={value} by the deadline; last answer {last:?}");
}

fn cut(cuts: &[Cut]) {
    for &cut in cuts {
        network::add_cut(cut).expect("a cut");
    }
}

fn heal(cuts: &[Cut]) {
    for &cut in cuts {
        network::remove_cut(cut).expect("a heal");
    }
}

fn inside_the_namespace(cuts: &[Cut]) {
    network::prepare_namespace(NODES).expect("the namespace's routes");
    let folder = tempfile::tempdir().expect("a temporary folder");
    let spec = ClusterSpec {
        server: PathBuf::from(SERVER),
        nodes: NODES,
        transport: ClientTransport::Tcp,
        own_uids: true,
        availability: true,
    };
    let mut cluster = Cluster::start(spec, folder.path()).unwrap_or_else(|e| panic!("{e}"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| partition_and_heal(&mut cluster, cuts)));
    if let Err(panic) = result {
        // The nodes log errors only (`-l error`): a node's log is empty unless it failed.
        for i in 0..NODES {
            let log = std::fs::read_to_string(cluster.log_path(i)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            if !lines.is_empty() {
                eprintln!("--- n{i}'s log (last 40 lines)\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
            }
        }
        std::panic::resume_unwind(panic);
    }
    cluster.stop_all().unwrap_or_else(|e| panic!("{e}"));
    // n2 came back through a configuration that added it again, of epoch 3 or later (epoch 2
    // removed it), and by a state transfer: a node that joins takes its incarnations from the
    // joining epoch's share of the numbers (docs/protocol.md §7.6, point 7).
    let incarnation = latest_incarnation(folder.path(), &cluster.data_dir(CUT_OFF));
    assert!(
        incarnation >= 3 << 32,
        "n2's latest incarnation is {incarnation:#x}: it did not join again in epoch 3 or later"
    );
}

/// The latest incarnation a node's log records.
fn latest_incarnation(folder: &Path, data_dir: &Path) -> u64 {
    let credentials =
        NodeCredentials::load(&folder.join(format!("credentials/node-{CUT_OFF}"))).expect("n2's credentials");
    let identity = Identity { cluster: credentials.cluster, node: NodeId(CUT_OFF as u8) };
    let (_wal, recovery) = Wal::open_as(data_dir, identity).expect("n2's log");
    let boots = recovery.records.iter().filter_map(|record| match record {
        Record::Boot { incarnation } | Record::BootTracked { incarnation } => Some(*incarnation),
        _ => None,
    });
    boots.max().unwrap_or(0)
}

fn partition_and_heal(cluster: &mut Cluster, cuts: &[Cut]) {
    // Before: writes through n0 commit, and n2 serves them.
    let start_deadline = Instant::now() + Duration::from_secs(20);
    put_until_committed(cluster, 0, KEY, "old", start_deadline);
    read_until_served(cluster, CUT_OFF, KEY, "old", start_deadline);

    let watcher = Watcher::start(cluster);
    cut(cuts);
    let cut_at = Instant::now();

    // Writes through n0 commit again once n0 and n1 removed n2.
    let new_committed = put_until_committed(cluster, 0, KEY, "new", cut_at + WRITE_AFTER_CUT_MAX);
    let cut_to_write = new_committed - cut_at;
    for i in 0..MISSED_WRITES {
        put_until_committed(
            cluster,
            0,
            &format!("missed-{i}"),
            &format!("v{i}"),
            Instant::now() + Duration::from_secs(5),
        );
    }
    // A write's outcome reaches a node's reads a moment after its client: n2 is the one checked.
    read_until_served(cluster, 1, KEY, "new", Instant::now() + Duration::from_secs(5));

    // The cut lasts until n2 has answered "not serving" to a few reads past its lease bound.
    watcher.wait_not_serving(CUT_OFF_READS_MIN, cut_at + lease_bound(), Instant::now() + Duration::from_secs(10));
    eprintln!(
        "cut -> {KEY}=new committed through n0 {:.2} s; healing at {:.2} s",
        cut_to_write.as_secs_f64(),
        cut_at.elapsed().as_secs_f64()
    );
    // Reads sent from here on may be served again (once n2 is back).
    let heal_begun = Instant::now();
    heal(cuts);
    let healed_at = Instant::now();
    let deadline = healed_at + SERVING_AFTER_HEAL_MAX;
    read_until_served(cluster, CUT_OFF, KEY, "new", deadline);
    for i in 0..MISSED_WRITES {
        read_until_served(cluster, CUT_OFF, &format!("missed-{i}"), &format!("v{i}"), deadline);
    }
    let heal_to_serving = healed_at.elapsed();
    let reads = watcher.finish();

    // A member again: a write n2 coordinates commits (it needs n2's YES too), and every node
    // reads it.
    put_until_committed(cluster, CUT_OFF, "after", "1", Instant::now() + Duration::from_secs(15));
    for i in 0..NODES {
        read_until_served(cluster, i, "after", "1", Instant::now() + Duration::from_secs(10));
    }

    // No stale read at n2: once "new" committed, n2 served "new" or nothing.
    let stale = |answer: &Answer| matches!(answer, Answer::Served(v) if v.as_deref() != Some("new"));
    for read in reads.iter().filter(|read| read.sent >= new_committed) {
        assert!(
            !stale(&read.answer),
            "n2 served a stale read {:?} {:?} after the cut, {:?} after {KEY}=new committed",
            read.answer,
            read.sent - cut_at,
            read.sent - new_committed
        );
    }
    // Its lease ran out within the bound: no read sent later than that, until the heal, served.
    let lease_over = cut_at + lease_bound();
    let cut_off_reads: Vec<&Watched> =
        reads.iter().filter(|read| read.sent >= lease_over && read.answered < heal_begun).collect();
    assert!(
        cut_off_reads.len() >= CUT_OFF_READS_MIN,
        "too few reads of n2 while it was cut off: {}",
        cut_off_reads.len()
    );
    for read in &cut_off_reads {
        assert!(
            !matches!(read.answer, Answer::Served(_)),
            "n2 served {:?} {:?} after the cut, past its lease bound {:?}",
            read.answer,
            read.sent - cut_at,
            lease_bound()
        );
    }
    let stopped_serving = reads
        .iter()
        .find(|read| read.sent >= cut_at && read.answer == Answer::NotServing)
        .map(|read| read.sent - cut_at)
        .expect("n2 answered 'not serving' while it was cut off");
    eprintln!(
        "figures: cut -> n2 not serving (first such read sent) {:.3} s (lease bound {:.3} s); cut -> write through n0 committed {:.2} s; heal -> n2 serving every missed write {:.2} s; {} reads of n2 watched",
        stopped_serving.as_secs_f64(),
        lease_bound().as_secs_f64(),
        cut_to_write.as_secs_f64(),
        heal_to_serving.as_secs_f64(),
        reads.len()
    );
}
