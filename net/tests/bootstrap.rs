//! Bootstrap happens once (docs/protocol.md §7.1, `net/src/bootstrap.rs`), on a real server: a
//! node of a three-node cluster whose data dir holds no log starts as a member only with
//! `init` (`dkv-server --init`); without it, it takes part in nothing until it catches up, and
//! says so in its log. A log that holds records ignores `init`. Only node 0 runs: its peers
//! are never started, and leases are off, so a member serves reads from its own memory alone.

mod common;

use common::TestCluster;
use dkv_core::{NodeId, NotServingReason, Outcome, Record};
use dkv_net::identity::Identity;
use dkv_net::security::credentials::NodeCredentials;
use dkv_net::{Client, ClientConfig, ClientError, ClientTransport, Server, Transport, Wal};
use std::time::Duration;

/// How node 0 of `cluster` answers a read, started with `init` on its data dir as it is.
fn read_after_start(cluster: &TestCluster, init: bool) -> Result<Outcome, ClientError> {
    let mut config = cluster.config(0);
    config.init = init;
    let server = Server::bind(config).expect("the server starts");
    let handle = server.handle();
    let thread = std::thread::spawn(move || server.run());
    let mut client_config = ClientConfig::new(vec![cluster.addrs[0]], ClientTransport::Tcp);
    client_config.request_timeout = Duration::from_secs(1);
    let answer = Client::new(client_config).unwrap().get("k");
    handle.stop();
    thread.join().expect("the server thread ends").expect("the server stops cleanly");
    answer
}

fn is_catching_up(answer: &Result<Outcome, ClientError>) -> bool {
    matches!(answer, Err(ClientError::NotServing { reason: NotServingReason::CatchingUp, .. }))
}

/// Whether node 0's log holds the record that it cannot vouch for its state.
fn logged_unvouched(cluster: &TestCluster) -> bool {
    let cluster_id = NodeCredentials::load(&cluster.credentials.join("node-0")).unwrap().cluster;
    let identity = Identity { cluster: cluster_id, node: NodeId(0) };
    let (_wal, recovery) = Wal::open_as(&cluster.dirs[0], identity).unwrap();
    recovery.records.contains(&Record::Unvouched)
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

#[test]
fn an_empty_data_dir_with_init_starts_a_member_and_a_later_start_keeps_it_one() {
    let cluster = TestCluster::unstarted(3, Transport::Tcp);
    assert_eq!(read_after_start(&cluster, true).unwrap(), Outcome::NotFound);
    assert!(!logged_unvouched(&cluster));
    // Restarted without --init, or with it again: a member from its log either way.
    assert_eq!(read_after_start(&cluster, false).unwrap(), Outcome::NotFound);
    assert_eq!(read_after_start(&cluster, true).unwrap(), Outcome::NotFound);
    assert!(!logged_unvouched(&cluster));
}

/// A one-node cluster has nobody to catch up from: its empty log starts a new store anyway.
#[test]
fn a_one_node_cluster_needs_no_init() {
    let cluster = TestCluster::unstarted(1, Transport::Tcp);
    assert_eq!(read_after_start(&cluster, false).unwrap(), Outcome::NotFound);
}
