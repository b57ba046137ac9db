//! Bootstrap happens once (docs/protocol.md §7.1, `net/src/bootstrap.rs`), on real servers: a
//! node of a three-node cluster whose data dir holds no log starts as a member only with
//! `init` (`dkv-server --init`), and only once every other node has said it holds nothing
//! either; without it, or when another node holds the cluster's state, it takes part in nothing
//! until it catches up, and says so in its log. A log that holds records ignores `init`. Leases
//! are off, so a member serves reads from its own memory alone.

mod common;

use common::TestCluster;
use dkv_core::{NodeId, NotServingReason, Outcome, Record};
use dkv_net::identity::Identity;
use dkv_net::security::credentials::NodeCredentials;
use dkv_net::{Client, ClientConfig, ClientError, ClientTransport, Server, Transport, Wal};
use std::time::Duration;

/// How node 0 of `cluster` answers a read, started with `init` on its data dir as it is (the
/// other nodes as they are).
fn read_after_start(cluster: &TestCluster, init: bool) -> Result<Outcome, ClientError> {
    read_after_start_of(cluster, 0, init)
}

/// How node `i` of `cluster` answers a read, started with `init` on its data dir as it is.
fn read_after_start_of(cluster: &TestCluster, i: usize, init: bool) -> Result<Outcome, ClientError> {
    let mut config = cluster.config(i);
    config.init = init;
    let server = Server::bind(config).expect("the server starts");
    let handle = server.handle();
    let thread = std::thread::spawn(move || server.run());
    let mut client_config = ClientConfig::new(vec![cluster.addrs[i]], ClientTransport::Tcp);
    client_config.request_timeout = Duration::from_secs(1);
    let answer = Client::new(client_config).unwrap().get("k");
    handle.stop();
    thread.join().expect("the server thread ends").expect("the server stops cleanly");
    answer
}

/// A three-node cluster started with `init`, in which a write of `key` committed (the client
/// retries while the nodes bootstrap), with node `stopped` then stopped.
fn started_with_a_write_then_stopped(key: &str, stopped: usize) -> TestCluster {
    let mut cluster = TestCluster::start(3, Transport::Tcp);
    let mut client = cluster.client(0, ClientTransport::Tcp);
    assert!(matches!(client.put(key, "v"), Ok(Outcome::Committed(_))));
    cluster.stop_node(stopped);
    cluster
}

fn is_catching_up(answer: &Result<Outcome, ClientError>) -> bool {
    matches!(answer, Err(ClientError::NotServing { reason: NotServingReason::CatchingUp, .. }))
}

/// Whether node 0's log holds the record that it cannot vouch for its state.
fn logged_unvouched(cluster: &TestCluster) -> bool {
    log_of(cluster, 0).contains(&Record::Unvouched)
}

/// Node `i`'s log.
fn log_of(cluster: &TestCluster, i: usize) -> Vec<Record> {
    let cluster_id = NodeCredentials::load(&cluster.credentials.join(format!("node-{i}"))).unwrap().cluster;
    let identity = Identity { cluster: cluster_id, node: NodeId(i as u8) };
    let (_wal, recovery) = Wal::open_as(&cluster.dirs[i], identity).unwrap();
    recovery.records
}

#[test]
fn an_empty_data_dir_without_init_takes_part_in_nothing_and_init_does_not_undo_that() {
    let cluster = TestCluster::unstarted(3, Transport::Tcp);
    let answer = read_after_start(&cluster, false);
    assert!(is_catching_up(&answer), "a node with an empty log and no --init answered {answer:?}");
    assert!(logged_unvouched(&cluster), "its log says it cannot vouch for its state");
    // Its log holds records now: --init on a later start changes nothing.
    let answer = read_after_start(&cluster, true);
    assert!(is_catching_up(&answer), "--init on a used data dir bootstrapped it again: {answer:?}");
}

/// With `init` and its peers down, node 0 waits for them: it serves nothing and logs nothing
/// (a later start finds the log as empty as the first did).
#[test]
fn an_empty_data_dir_with_init_waits_for_every_other_node() {
    let cluster = TestCluster::unstarted(3, Transport::Tcp);
    let answer = read_after_start(&cluster, true);
    assert!(!matches!(answer, Ok(Outcome::NotFound)), "n0 served with its peers never started: {answer:?}");
    assert!(log_of(&cluster, 0).is_empty(), "n0 logged while it waited for its peers");
}

/// Every node started with `init` on an empty dir: they become members together, and a later
/// start of one, with or without `init`, keeps it one.
#[test]
fn empty_data_dirs_with_init_start_members_and_a_later_start_keeps_one() {
    // Members once every node has answered: a write commits.
    let cluster = started_with_a_write_then_stopped("other", 0);
    assert_eq!(read_after_start(&cluster, false).unwrap(), Outcome::NotFound);
    assert_eq!(read_after_start(&cluster, true).unwrap(), Outcome::NotFound);
    assert!(!logged_unvouched(&cluster));
}

/// A member whose data dir was lost, restarted with `init` still on its command line: the others
/// hold the cluster's state, so it bootstraps nothing, logs that it cannot vouch for its state,
/// and serves nothing ("catching up") rather than "not found" for a key written before.
#[test]
fn a_node_restarted_with_init_after_its_data_dir_was_lost_catches_up_instead() {
    let cluster = started_with_a_write_then_stopped("k", 2);
    std::fs::remove_dir_all(&cluster.dirs[2]).expect("n2's data dir is deleted");
    let answer = read_after_start_of(&cluster, 2, true);
    assert!(is_catching_up(&answer), "n2 restarted with --init on an empty dir answered {answer:?}");
    assert!(log_of(&cluster, 2).contains(&Record::Unvouched), "n2's log says it cannot vouch for its state");
}

/// A one-node cluster has nobody to catch up from: its empty log starts a new store anyway.
#[test]
fn a_one_node_cluster_needs_no_init() {
    let cluster = TestCluster::unstarted(1, Transport::Tcp);
    assert_eq!(read_after_start(&cluster, false).unwrap(), Outcome::NotFound);
}
