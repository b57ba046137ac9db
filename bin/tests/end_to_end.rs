//! The programs end to end, as test.sh runs them: real dkv-server processes on loopback, the
//! dkv-client program and the client library, kill -9 of one node and of all nodes during
//! writes, and restarts. What an acknowledgement promises is checked on every node.

mod common;

use common::{Mode, ProcessCluster};
use dkv_core::Outcome;
use dkv_net::ClientError;
use dkv_net::security::credentials::NodeCredentials;
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each write's key, value and whether it was acknowledged (None: no outcome learned).
type WriteLog = Arc<Mutex<Vec<(String, String, Option<bool>)>>>;

/// Writes unique keys through node `node` until `stop`, at most `count`, logging each result.
fn spawn_writer(
    cluster: &ProcessCluster,
    node: usize,
    prefix: &str,
    count: usize,
    stop: Arc<AtomicBool>,
    log: WriteLog,
) -> std::thread::JoinHandle<()> {
    let mut client = cluster.client_for(node, Duration::from_secs(3));
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for i in 0..count {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let (key, value) = (format!("{prefix}{i}"), format!("v{i}-{:x}", client.id().0));
            let acknowledged = match client.put(key.clone(), value.clone()) {
                Ok(Outcome::Committed(_)) => Some(true),
                Ok(other) => panic!("a put can only commit, got {other:?}"),
                // Unavailable (dkv-client's exit 5): the outcome is unknown.
                Err(
                    ClientError::Unreachable { .. }
                    | ClientError::Lost { .. }
                    | ClientError::Timeout { .. }
                    | ClientError::NoOutcome { .. },
                ) => None,
                Err(error) => panic!("{key}: a put fails only by having no outcome, got: {error}"),
            };
            log.lock().unwrap().push((key, value, acknowledged));
        }
    })
}

/// Every acknowledged write reads back on every node. A write without an outcome may still be
/// settling when the check reads it: a restarted coordinator asks its participants again, and
/// may commit a transaction some node never prepared before the crash (that node answers "not
/// found" until then). So its key is read on every node in turn, again until the nodes agree
/// (within 15 s), and the reads must be linearizable: each returns nothing or the write's value,
/// and once one has returned the value, no later read returns nothing.
fn check_writes(cluster: &ProcessCluster, log: &WriteLog) -> usize {
    let mut clients: Vec<_> = (0..3).map(|i| cluster.client_for(i, Duration::from_secs(15))).collect();
    let mut acknowledged = 0;
    for (key, value, ack) in log.lock().unwrap().iter() {
        let value = value.clone().into_bytes();
        if *ack == Some(true) {
            acknowledged += 1;
            for (node, client) in clients.iter_mut().enumerate() {
                let answer = client.get(key.clone()).unwrap();
                assert_eq!(answer.found(), Some(&value), "acknowledged {key} on node {node}");
            }
            continue;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut seen_value = false;
        loop {
            let mut found = Vec::new();
            for (node, client) in clients.iter_mut().enumerate() {
                let answer = client.get(key.clone()).unwrap();
                let is_value = answer.found() == Some(&value);
                assert!(is_value || answer == Outcome::NotFound, "{key} on node {node}: {answer:?}");
                assert!(
                    is_value || !seen_value,
                    "{key}: node {node} answered {answer:?} after a read returned its value"
                );
                seen_value |= is_value;
                found.push(is_value);
            }
            if found.iter().all(|&f| f == found[0]) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "nodes still disagree on {key} after 15 s: {found:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    acknowledged
}

/// Starts every node of a stopped three-node cluster, waits until each answers, requires a
/// write through each to commit, and checks every write of `log` ([`check_writes`]).
fn restart_all_and_check(cluster: &mut ProcessCluster, log: &WriteLog) -> usize {
    for i in 0..3 {
        cluster.start_node(i);
    }
    for i in 0..3 {
        cluster.wait_ready(i);
    }
    writes_commit_after_restart(cluster, &[0, 1, 2], log);
    check_writes(cluster, log)
}

/// Once the cluster is whole again, a write through each of `nodes` commits; each is logged as
/// acknowledged, so [`check_writes`] reads it back on every node.
fn writes_commit_after_restart(cluster: &ProcessCluster, nodes: &[usize], log: &WriteLog) {
    for &node in nodes {
        let (key, value) = (format!("after-restart-via-{node}"), format!("v-{node}"));
        let mut client = cluster.client_for(node, Duration::from_secs(15));
        let outcome = client.put(key.clone(), value.clone());
        assert!(
            matches!(outcome, Ok(Outcome::Committed(_))),
            "{key} through node {node} after the restart: {outcome:?}"
        );
        log.lock().unwrap().push((key, value, Some(true)));
    }
}

fn seed_style_operations(cluster: &ProcessCluster) {
    let expect = |node, args: &[&str], code, out: &str| {
        assert_eq!(cluster.run_client(node, args), (code, out.to_string()), "dkv-client {args:?} on node {node}");
    };
    expect(0, &["-o", "3", "-k", "seed", "-v", "one"], 0, "ok");
    expect(1, &["-o", "1", "-k", "seed"], 0, "one");
    expect(2, &["-o", "0", "-k", "seed", "-v", "two"], 0, "ok");
    expect(0, &["get", "seed"], 0, "two");
    expect(1, &["txn", "put:t=1", "update:seed=three"], 0, "ok");
    expect(2, &["txn", "put:u=1", "delete:absent"], 4, "");
    expect(2, &["get", "u"], 3, "");
    expect(0, &["-o", "2", "-k", "seed"], 0, "ok");
    expect(1, &["delete", "seed"], 3, "");
    expect(2, &["update", "seed", "x"], 3, "");
}

fn one_node_killed_mid_run(mode: Mode) {
    let mut cluster = ProcessCluster::start(mode);
    seed_style_operations(&cluster);
    let log: WriteLog = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&cluster, 0, "w", 40, stop.clone(), log.clone());
    // Kill once the writer is under way: polling the log, bounded by a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().len() < 10 {
        assert!(std::time::Instant::now() < deadline, "the writer made no progress");
        std::thread::yield_now();
    }
    cluster.kill(2);
    cluster.start_node(2);
    cluster.wait_ready(2);
    // The restarted node takes part in commits again: through itself and through another node.
    writes_commit_after_restart(&cluster, &[2, 1], &log);
    writer.join().unwrap();
    let acknowledged = check_writes(&cluster, &log);
    assert!(acknowledged >= 12, "only {acknowledged} writes were acknowledged");
    cluster.stop_all_cleanly();
}

/// UDP mode: peers and clients over datagrams; kill -9 of one node loses nothing acknowledged.
#[test]
fn udp_cluster_serves_seed_client_and_survives_kill_of_one_node() {
    one_node_killed_mid_run(Mode::Udp);
}

/// TCP mode, the same.
#[test]
fn tcp_cluster_serves_seed_client_and_survives_kill_of_one_node() {
    one_node_killed_mid_run(Mode::Tcp);
}

/// kill -9 of every node while two clients write: after a restart, every acknowledged write
/// is on every node, and the nodes agree on the writes whose outcome was never learned.
#[test]
fn acknowledged_writes_survive_kill_of_all_nodes() {
    let mut cluster = ProcessCluster::start(Mode::Tcp);
    let log: WriteLog = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> =
        (0..2).map(|i| spawn_writer(&cluster, i, &format!("c{i}-"), 10_000, stop.clone(), log.clone())).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().len() < 40 {
        assert!(std::time::Instant::now() < deadline, "the writers made no progress");
        std::thread::yield_now();
    }
    for i in 0..3 {
        cluster.kill(i);
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = restart_all_and_check(&mut cluster, &log);
    assert!(acknowledged >= 43, "only {acknowledged} writes were acknowledged");
    // Keys are unique per write, so the count of distinct keys equals the log's length.
    let keys: BTreeMap<_, _> = log.lock().unwrap().iter().map(|(k, v, _)| (k.clone(), v.clone())).collect();
    assert_eq!(keys.len(), log.lock().unwrap().len());
    cluster.stop_all_cleanly();
}

/// Waits until the log holds at least `count` acknowledged writes, failing after 30 s.
fn wait_for_acknowledged(log: &WriteLog, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().iter().filter(|(_, _, ack)| *ack == Some(true)).count() < count {
        assert!(std::time::Instant::now() < deadline, "fewer than {count} writes were acknowledged within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ctrl-C (SIGINT) stops a node promptly with exit status 0 while clients write, first one
/// node and then every node at once; after the restarts every acknowledged write is on every
/// node, and writes commit again through each node.
#[test]
fn sigint_stops_nodes_cleanly_and_keeps_every_acknowledged_write() {
    let mut cluster = ProcessCluster::start(Mode::Tcp);
    let log: WriteLog = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> =
        (0..3).map(|i| spawn_writer(&cluster, i, &format!("c{i}-"), 2_000, stop.clone(), log.clone())).collect();
    wait_for_acknowledged(&log, 30);
    cluster.signal(1, "INT");
    let status = cluster.wait_exit(1, Duration::from_secs(10));
    assert!(status.success(), "node 1 exited with {status} on SIGINT");
    cluster.start_node(1);
    cluster.wait_ready(1);
    // The writers commit again with the restarted node, then every node gets Ctrl-C at once.
    let before = log.lock().unwrap().iter().filter(|(_, _, ack)| *ack == Some(true)).count();
    wait_for_acknowledged(&log, before + 30);
    for i in 0..3 {
        cluster.signal(i, "INT");
    }
    for i in 0..3 {
        let status = cluster.wait_exit(i, Duration::from_secs(10));
        assert!(status.success(), "node {i} exited with {status} on SIGINT to every node");
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = restart_all_and_check(&mut cluster, &log);
    assert!(acknowledged >= 63, "only {acknowledged} writes were acknowledged");
    cluster.stop_all_cleanly();
}

/// Waits for a node that must refuse to start to exit by itself (one that started would run
/// until killed: killed after 10 s, failing the test with `started`); returns its stderr.
fn refused_start(mut node: std::process::Child, started: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            node.kill().unwrap();
            panic!("{started}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{started}, and exited cleanly");
    let mut stderr = String::new();
    node.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    stderr
}

/// Every node of a cluster runs the same way, as its credentials record it: a node given
/// --availability with credentials of a cluster made without it exits at once with an error
/// that says how to switch, and `dkv-server availability on` records the switch, once it has
/// read every node's data dir and found no write voted on without --availability (pinned) still
/// in doubt (docs/protocol.md §6). A node started with --availability on such a log refuses to
/// start.
#[test]
fn a_node_runs_as_its_clusters_credentials_say() {
    let root = tempfile::tempdir().unwrap();
    let credentials = root.path().join("credentials");
    let init = Command::new(common::SERVER)
        .arg("init")
        .arg(&credentials)
        .args(["--ids", "0,1,2"])
        .stdout(Stdio::null())
        .status()
        .expect("dkv-server init runs");
    assert!(init.success());
    let node_0 = credentials.join("node-0");
    assert_eq!(NodeCredentials::load(&node_0).unwrap().availability, Some(false));

    let ports = dkv_net::testing::free_ports(2);
    let node = Command::new(common::SERVER)
        .args(["--id", "0", "-s", "127.0.0.1", "-p", &ports[0].to_string(), "--peer-port", &ports[1].to_string()])
        .args(["--peers", "1=127.0.0.1:1,2=127.0.0.1:2", "-t", "--availability", "--credentials"])
        .arg(&node_0)
        .arg("--data-dir")
        .arg(root.path().join("node-0"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dkv-server starts");
    let stderr = refused_start(node, "a node given --availability with credentials of a cluster without it started");
    assert!(
        stderr.contains("record that it runs without it") && stderr.contains("dkv-server availability on"),
        "{stderr}"
    );
    assert!(!root.path().join("node-0").exists(), "refused before it touched its data dir");

    let folders: Vec<_> = (0..3).map(|i| credentials.join(format!("node-{i}"))).collect();
    let data_dirs: Vec<_> = (0..3).map(|i| root.path().join(format!("node-{i}"))).collect();
    let switch = |data_dirs: &[std::path::PathBuf]| {
        let mut command = Command::new(common::SERVER);
        command.args(["availability", "on"]).args(&folders);
        for dir in data_dirs {
            command.arg("--data-dir").arg(dir);
        }
        command.output().expect("dkv-server availability runs")
    };
    let unchanged = |what: &str| {
        let loaded = NodeCredentials::load(&node_0).unwrap();
        assert_eq!(loaded.availability, Some(false), "{what}: nothing was changed");
    };
    let refused = switch(&[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--data-dir") && said.contains("nothing was changed"), "{said}");
    unchanged("without data dirs");
    // A data dir that does not exist (mistyped) is refused, not read as empty.
    let refused = switch(&data_dirs);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("does not exist") && said.contains("nothing was changed"), "{said}");
    unchanged("a data dir missing");
    for dir in [&data_dirs[0], &data_dirs[2]] {
        std::fs::create_dir(dir).unwrap();
    }

    // Node 1's log holds a share of node 0's transaction, voted pinned and in doubt.
    let cluster = NodeCredentials::load(&node_0).unwrap().cluster;
    let identity = dkv_net::identity::Identity { cluster, node: dkv_core::NodeId(1) };
    let txn = dkv_core::TxnId { coordinator: dkv_core::NodeId(0), incarnation: 1, number: 0 };
    {
        let (mut wal, _) = dkv_net::Wal::open_as(&data_dirs[1], identity).unwrap();
        let share = dkv_core::record::TxnRecord {
            txn,
            request: dkv_core::RequestId { client: dkv_core::ClientId(5), seq: 1 },
            ops: vec![dkv_core::TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() }].into(),
            participants: dkv_core::NodeSet::first(3),
        };
        for record in [
            dkv_core::Record::BootTracked { incarnation: 1 },
            dkv_core::Record::ChangesOff,
            dkv_core::Record::PreparedInEpoch { epoch: dkv_core::Epoch::FIRST, txn: share },
        ] {
            wal.append(&record).unwrap();
        }
        wal.sync().unwrap();
    }
    let refused = switch(&data_dirs);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("still in doubt") && said.contains("node 1 (") && said.contains(&txn.to_string()), "{said}");
    unchanged("a pinned share in doubt");

    // A node started with --availability on that log (its folder switched by hand, past the
    // check) refuses it.
    let identity_file = credentials.join("node-1").join("identity");
    let recorded = std::fs::read_to_string(&identity_file).unwrap();
    std::fs::write(&identity_file, recorded.replace("availability off", "availability on")).unwrap();
    let node = Command::new(common::SERVER)
        .args(["--id", "1", "-s", "127.0.0.1", "-p", &ports[0].to_string(), "--peer-port", &ports[1].to_string()])
        .args(["--peers", "0=127.0.0.1:1,2=127.0.0.1:2", "-t", "--availability", "--credentials"])
        .arg(credentials.join("node-1"))
        .arg("--data-dir")
        .arg(&data_dirs[1])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dkv-server starts");
    let said = refused_start(node, "a node with --availability started on a pinned share in doubt");
    assert!(said.contains("still in doubt") && said.contains(&txn.to_string()), "{said}");
    std::fs::write(&identity_file, recorded).unwrap();
    // Decided (here: the share is gone with its dir), the switch goes ahead.
    std::fs::remove_dir_all(&data_dirs[1]).unwrap();
    std::fs::create_dir(&data_dirs[1]).unwrap();

    let switch = switch(&data_dirs);
    assert!(switch.status.success(), "{}", String::from_utf8_lossy(&switch.stderr));
    for i in 0..3 {
        let loaded = NodeCredentials::load(&credentials.join(format!("node-{i}"))).unwrap();
        assert_eq!(loaded.availability, Some(true), "node {i}");
    }
    // No way back: a node the others removed could take itself for a member.
    let back = Command::new(common::SERVER)
        .args(["availability", "off"])
        .arg(&node_0)
        .output()
        .expect("dkv-server availability runs");
    assert!(!back.status.success());
    let said = String::from_utf8_lossy(&back.stderr);
    assert!(said.contains("cannot go back") && said.contains("nothing was changed"), "{said}");
    assert_eq!(NodeCredentials::load(&node_0).unwrap().availability, Some(true));
}
