//! The join on real servers (docs/protocol.md §7.3, §7.6): three nodes on loopback with changes
//! on (`timing.leases`). One stops; the other two remove it and take writes again within the
//! detection bound. It restarts; it learns it was removed, asks to join, is added back, catches
//! up from a member by state transfer and serves every write it missed, from its own copy.
//!
//! Prints the two figures (not assertions): stop → first write committed, and
//! restart → the restarted node serving the writes it missed.

mod common;

use common::TestCluster;
use dkv_core::{NodeId, Outcome, Record};
use dkv_net::identity::Identity;
use dkv_net::security::credentials::NodeCredentials;
use dkv_net::{Client, ClientConfig, ClientTransport, ServerStats, Transport, Wal};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Writes go through within this of the stop: removal ends within 3 detection timeouts (3 s),
/// plus the wait after an install that drops a member, plus retries.
const WRITE_AFTER_STOP_MAX: Duration = Duration::from_secs(15);
/// The restarted node serves within this: it learns the change, asks, is added (proposal,
/// install, grace), catches up by transfer, restarts and takes a lease. A failed attempt waits
/// `join_grace` (10 s) before the next.
const SERVING_AFTER_RESTART_MAX: Duration = Duration::from_secs(45);
const MISSED_WRITES: usize = 5;

fn client_of(addrs: &[SocketAddr], timeout: Duration) -> Client {
    let mut config = ClientConfig::new(addrs.to_vec(), ClientTransport::Tcp);
    config.request_timeout = timeout;
    config.attempt_timeout = Duration::from_millis(500);
    Client::new(config).unwrap()
}

/// Puts `key` = `value` through `addrs` until it commits, or panics at `deadline`. A write that
/// timed out may still commit later: it is the same write, so retrying it is harmless.
fn put_until_committed(addrs: &[SocketAddr], key: &str, value: &str, deadline: Instant) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client_of(addrs, Duration::from_secs(2)).put(key, value) {
            Ok(Outcome::Committed(_)) => return,
            other => assert!(
                Instant::now() < deadline,
                "{key} not committed by the deadline after {attempts} attempts; last answer {other:?}"
            ),
        }
    }
}

/// Reads `key` from the node at `addr` alone until it serves `value`, or panics at `deadline`.
fn read_until_served(addr: SocketAddr, key: &str, value: &str, deadline: Instant) {
    let mut last = None;
    while Instant::now() < deadline {
        match client_of(&[addr], Duration::from_secs(1)).get(key) {
            Ok(outcome) if outcome.found() == Some(&value.as_bytes().to_vec()) => return,
            other => last = Some(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} did not serve {key}={value} by the deadline; last answer {last:?}");
}

#[test]
fn a_stopped_node_is_removed_and_once_restarted_is_added_back_and_serves_what_it_missed() {
    stop_restart_and_check(false);
}

#[test]
fn a_node_restarted_with_an_emptied_data_dir_is_added_back_and_serves_every_write() {
    stop_restart_and_check(true);
}

/// Stops n2, writes through the others, restarts n2 (with its data dir emptied if `wipe`), and
/// checks that it serves every write from its own copy and coordinates a write again.
fn stop_restart_and_check(wipe: bool) {
    common::show_server_logs_on_failure();
    let mut cluster = TestCluster::start_with(3, Transport::Tcp, |c| c.timing.leases = true);
    let all = cluster.addrs.clone();
    put_until_committed(&all, "before", "0", Instant::now() + Duration::from_secs(20));
    read_until_served(all[2], "before", "0", Instant::now() + Duration::from_secs(10));

    // n2 stops: every commit needs every member's YES, so writes wait until n0 and n1 remove it.
    cluster.stop_node(2);
    let stopped = Instant::now();
    let survivors = [all[0], all[1]];
    put_until_committed(&survivors, "missed-0", "v0", stopped + WRITE_AFTER_STOP_MAX);
    let stop_to_write = stopped.elapsed();
    for i in 1..MISSED_WRITES {
        put_until_committed(
            &survivors,
            &format!("missed-{i}"),
            &format!("v{i}"),
            Instant::now() + Duration::from_secs(5),
        );
    }

    // n2 restarts with its old log (or none): it is outside the configuration, asks to join, is
    // added back and catches up. Every missed write is read from n2 alone.
    if wipe {
        std::fs::remove_dir_all(&cluster.dirs[2]).unwrap();
    }
    cluster.start_node(2);
    let restarted = Instant::now();
    let deadline = restarted + SERVING_AFTER_RESTART_MAX;
    for i in 0..MISSED_WRITES {
        read_until_served(all[2], &format!("missed-{i}"), &format!("v{i}"), deadline);
    }
    let restart_to_serving = restarted.elapsed();
    // It holds them because it caught up from a member, which served it its state.
    let stats = |i: usize| cluster.handle(i).stats();
    assert!(ServerStats::get(&stats(2).catch_ups) >= 1, "n2 caught up");
    let served = ServerStats::get(&stats(0).transfers_served) + ServerStats::get(&stats(1).transfers_served);
    assert!(served >= 1, "a member served n2 its state");
    read_until_served(all[2], "before", "0", deadline);
    // A member again: a write through n2 alone commits (it needs n2's YES and coordination).
    put_until_committed(&[all[2]], "after", "1", Instant::now() + Duration::from_secs(15));
    for &addr in &all {
        read_until_served(addr, "after", "1", Instant::now() + Duration::from_secs(10));
    }
    // It joined through the configuration that added it back, at least epoch 3 (epoch 2
    // removed it): its log's incarnations start at that epoch's share of the numbers, above
    // every transaction id of its earlier lives (docs/protocol.md §7.6, point 6).
    cluster.stop_node(2);
    let cluster_id = NodeCredentials::load(&cluster.credentials.join("node-2")).unwrap().cluster;
    let (_wal, recovery) = Wal::open_as(&cluster.dirs[2], Identity { cluster: cluster_id, node: NodeId(2) }).unwrap();
    let boots = recovery.records.iter().filter_map(|record| match record {
        Record::Boot { incarnation } | Record::BootTracked { incarnation } => Some(*incarnation),
        _ => None,
    });
    let incarnation = boots.max().unwrap_or(0);
    assert!(incarnation >= 3 << 32, "n2's incarnation floor is {incarnation}, below epoch 3's share");
    eprintln!(
        "figures: stop -> first write committed {:.2} s; restart -> serving the missed writes {:.2} s",
        stop_to_write.as_secs_f64(),
        restart_to_serving.as_secs_f64()
    );
}
