//! The runtime over a bad UDP network: clients and peers talk through relays on loopback that
//! lose, duplicate, reorder and replay datagrams late. Retries must get every write through,
//! and every request, however often it arrives, must take effect once.

mod common;

use common::TestCluster;
use common::lossy_relay::{Faults, LossyRelay};
use dkv_core::Outcome;
use dkv_net::{Client, ClientConfig, ClientTransport, ServerStats, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const FAULTS: Faults = Faults { drop: 0.2, duplicate: 0.2, reorder: 0.2, replay: 0.1 };
const CLIENTS: usize = 3;
const KEYS_PER_CLIENT: usize = 4;

fn udp_client(node: SocketAddr) -> Client {
    let mut config = ClientConfig::new(vec![node], ClientTransport::Udp);
    config.request_timeout = Duration::from_secs(30);
    Client::new(config).unwrap()
}

/// Fails unless the relays, together, did each thing they do at least once.
fn assert_faults_happened(relays: &[LossyRelay], between: &str) {
    let mut seen = [("", 0u64); 5];
    for relay in relays {
        for (total, (name, n)) in seen.iter_mut().zip(relay.counts.by_name()) {
            *total = (name, total.1 + n);
        }
    }
    eprintln!("{between}: {seen:?}");
    for (name, n) in seen {
        assert!(n > 0, "no datagram was {name} {between}: the test did not test what it says");
    }
}

/// Each client puts, deletes and puts again each of its keys through a lossy relay to its
/// node, and the nodes' messages to each other go through lossy relays too. Every write must
/// commit. A delete run twice would answer that the key is missing, and a late copy of the
/// first put or of the delete, run again, would leave the key with the first value or none:
/// every node must hold the second value of every key.
#[test]
fn writes_over_lossy_duplicating_reordering_udp_commit_and_apply_exactly_once() {
    let mut cluster = TestCluster::unstarted(3, Transport::Udp);
    let peer_relays: Vec<LossyRelay> =
        (0..3).map(|j| LossyRelay::start(cluster.peer_addrs[j], 100 + j as u64, FAULTS)).collect();
    for (j, relay) in peer_relays.iter().enumerate() {
        cluster.peer_routes[j] = relay.addr;
    }
    cluster.start_all();
    let client_relays: Vec<LossyRelay> =
        (0..CLIENTS).map(|i| LossyRelay::start(cluster.addrs[i % 3], 200 + i as u64, FAULTS)).collect();

    let writers: Vec<_> = client_relays
        .iter()
        .enumerate()
        .map(|(i, relay)| {
            let mut client = udp_client(relay.addr);
            std::thread::spawn(move || {
                let mut slowest = Duration::ZERO;
                let mut timed = |write: &mut dyn FnMut() -> Option<Outcome>| {
                    let started = Instant::now();
                    let outcome = write();
                    slowest = slowest.max(started.elapsed());
                    outcome
                };
                for k in 0..KEYS_PER_CLIENT {
                    let key = format!("c{i}-k{k}");
                    let first = timed(&mut || client.put(key.clone(), "first").ok());
                    assert!(matches!(first, Some(Outcome::Committed(_))), "put {key}=first");
                    let delete = timed(&mut || client.delete(key.clone()).ok());
                    assert!(matches!(delete, Some(Outcome::Committed(_))), "delete {key}: run twice, it would fail");
                    let second = timed(&mut || client.put(key.clone(), "second").ok());
                    assert!(matches!(second, Some(Outcome::Committed(_))), "put {key}=second");
                }
                slowest
            })
        })
        .collect();
    for (i, writer) in writers.into_iter().enumerate() {
        let slowest = writer.join().expect("every write commits through the faults");
        eprintln!("client {i}: the slowest of its writes took {slowest:?}");
    }

    // Read on each node directly: each holds the second value of every key.
    for (node, &addr) in cluster.addrs.iter().enumerate() {
        let mut reader = udp_client(addr);
        for i in 0..CLIENTS {
            for k in 0..KEYS_PER_CLIENT {
                let key = format!("c{i}-k{k}");
                let value = reader.get(key.clone()).expect("a read on loopback");
                assert_eq!(value.found(), Some(&b"second".to_vec()), "{key} on node {node}");
            }
        }
    }
    assert_faults_happened(&client_relays, "between clients and nodes");
    assert_faults_happened(&peer_relays, "between nodes");
    // Copies and retries reached the nodes: more requests than the clients made.
    let requests: u64 = (0..3).map(|i| ServerStats::get(&cluster.handle(i).stats().requests)).sum();
    let made = (CLIENTS * KEYS_PER_CLIENT * (3 + 3)) as u64;
    eprintln!("the nodes took {requests} requests for the {made} the clients made");
    assert!(requests > made, "no request reached a node twice: duplicates were not tested");
}
