//! Read leases on real servers (docs/protocol.md §7.5): three nodes on loopback with leases on
//! serve reads and writes; a node left without a majority answers "not serving", which the
//! client library turns into fail-over and, when no node serves, a clear error; once a majority
//! is back, the node serves again.

mod common;

use common::TestCluster;
use dkv_core::{NotServingReason, Outcome};
use dkv_net::{Client, ClientConfig, ClientError, ClientTransport, Transport};
use std::time::{Duration, Instant};

fn client_of(addrs: Vec<std::net::SocketAddr>, timeout: Duration) -> Client {
    let mut config = ClientConfig::new(addrs, ClientTransport::Tcp);
    config.request_timeout = timeout;
    config.attempt_timeout = Duration::from_secs(1);
    Client::new(config).unwrap()
}

#[test]
fn a_node_without_a_majority_stops_serving_and_clients_are_told() {
    common::show_server_logs_on_failure();
    let mut cluster = TestCluster::start_with(3, Transport::Tcp, |c| c.timing.leases = true);
    // Writes wait out the lease wait after the start (the client retries "starting").
    let mut client = client_of(cluster.addrs.clone(), Duration::from_secs(20));
    assert!(matches!(client.put("a", "1").unwrap(), Outcome::Committed(_)));
    for i in 0..3 {
        let mut reader = client_of(vec![cluster.addrs[i]], Duration::from_secs(20));
        assert_eq!(reader.get("a").unwrap().found(), Some(&b"1".to_vec()), "n{i}");
    }
    // Two of three stopped: n0 has no majority to grant its lease; within L (500 ms) it stops
    // serving. Its client, which knows all three nodes, finds none that serves.
    cluster.stop_node(1);
    cluster.stop_node(2);
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    match client_of(cluster.addrs.clone(), Duration::from_secs(1)).get("a") {
        Err(error @ ClientError::NotServing { reason: NotServingReason::NoLease, .. }) => {
            assert!(error.to_string().contains("no node would serve"), "{error}");
        }
        other => panic!("expected not serving, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(1), "the client kept trying until its timeout");
    // A majority again: n0 serves again, and so does the node that came back.
    cluster.start_node(1);
    let mut reader = client_of(vec![cluster.addrs[0], cluster.addrs[1]], Duration::from_secs(20));
    assert_eq!(reader.get("a").unwrap().found(), Some(&b"1".to_vec()));
}
