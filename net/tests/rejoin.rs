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
use dkv_net::{Client, ClientConfig, ClientError, ClientTransport, ServerStats, Transport, Wal};
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
const WRITTEN_BEFORE_WIPE: usize = 5;

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

/// Issue 12's hazard: n2's data dir is deleted while it runs, and n2 is restarted at once (as
/// an operator restarts it, without `--init`), before the others could remove it. It must not
/// vote or serve from its empty log: it starts unvouched, the others remove it and go on taking
/// writes, and it is added back once it caught up by state transfer. No read at n2 may ever
/// answer "absent" for a key written before the wipe.
#[test]
fn a_node_whose_data_dir_is_emptied_while_it_runs_catches_up_before_it_serves() {
    damaged_node_catches_up_before_it_serves("wipe", |cluster| {
        std::fs::remove_dir_all(&cluster.dirs[2]).unwrap();
        cluster.crash_node(2);
    });
}

/// Issue 12's other hazard: a bit flipped in the length field of n2's last log record, making
/// it claim more bytes than the file holds of it. That once read as a torn write, was cut, and
/// n2 went on without a record that may have been acknowledged. Now its length fails its check:
/// n2 starts unvouched and catches up before it votes or serves, as after a wipe.
#[test]
fn a_node_whose_last_record_has_a_flipped_length_bit_catches_up_before_it_serves() {
    damaged_node_catches_up_before_it_serves("length flip", |cluster| {
        cluster.crash_node(2);
        flip_last_record_length(&cluster.dirs[2]);
    });
}

/// Flips the lowest bit of the second byte of the length field of the last record in the newest
/// segment of the log in `dir`: the record then claims 256 more bytes (or fewer) than it has.
fn flip_last_record_length(dir: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .max()
        .expect("a log segment");
    let bytes = std::fs::read(&newest).unwrap();
    let (mut at, mut last) = (0, None);
    while let Ok((_, used)) = dkv_core::codec::wal::decode_one(&bytes[at..]) {
        last = Some(at);
        at += used;
    }
    let byte = last.expect("a record in the newest segment") + 1;
    let file = std::fs::OpenOptions::new().write(true).open(&newest).unwrap();
    file.write_all_at(&[bytes[byte] ^ 0x01], byte as u64).unwrap();
}

/// Writes through all three nodes, lets `damage` stop n2 and damage its data dir, restarts n2
/// at once (before the others could remove it), and checks that n2 never answers "absent" for
/// a key written before, refuses reads until it caught up, that writes through the others go on
/// meanwhile, and that n2 is a member again afterwards.
fn damaged_node_catches_up_before_it_serves(what: &str, damage: impl FnOnce(&mut TestCluster)) {
    common::show_server_logs_on_failure();
    let mut cluster = TestCluster::start_with(3, Transport::Tcp, |c| c.timing.leases = true);
    let all = cluster.addrs.clone();
    let written: Vec<(String, String)> =
        (0..WRITTEN_BEFORE_WIPE).map(|i| (format!("before-{i}"), format!("v{i}"))).collect();
    for (key, value) in &written {
        put_until_committed(&all, key, value, Instant::now() + Duration::from_secs(20));
    }
    for (key, value) in &written {
        read_until_served(all[2], key, value, Instant::now() + Duration::from_secs(10));
    }

    damage(&mut cluster);
    cluster.start_node(2);
    let restarted = Instant::now();
    assert!(cluster.dirs[2].exists(), "n2 has its data dir");

    // From its restart on, n2 is read alone until it serves every write made before the damage,
    // on its own thread while writes go on through the others.
    let n2 = all[2];
    let expected = written.clone();
    let reader = std::thread::spawn(move || read_never_absent(n2, &expected, restarted + SERVING_AFTER_RESTART_MAX));

    // Writes through the others go on within the detection bound: they remove n2, which is
    // silent.
    let survivors = [all[0], all[1]];
    put_until_committed(&survivors, "during", "d", restarted + WRITE_AFTER_STOP_MAX);
    let restart_to_write = restarted.elapsed();
    let not_serving = reader.join().expect("n2 never answered absent for a key written before, and served them all");
    let restart_to_serving = restarted.elapsed();
    assert!(not_serving > 0, "n2 served at once after its restart: it cannot have caught up yet");
    read_until_served(n2, "during", "d", restarted + SERVING_AFTER_RESTART_MAX);
    let stats = |i: usize| cluster.handle(i).stats();
    assert!(ServerStats::get(&stats(2).catch_ups) >= 1, "n2 caught up");

    // A member again: a write coordinated by n2 commits, and every node serves it.
    put_until_committed(&[all[2]], "after", "1", Instant::now() + Duration::from_secs(15));
    for &addr in &all {
        read_until_served(addr, "after", "1", Instant::now() + Duration::from_secs(10));
        for (key, value) in &written {
            read_until_served(addr, key, value, Instant::now() + Duration::from_secs(10));
        }
    }
    eprintln!(
        "figures ({what}): restart -> first write committed {:.2} s; -> n2 serving every write {:.2} s",
        restart_to_write.as_secs_f64(),
        restart_to_serving.as_secs_f64()
    );
}

/// Reads each of `expected` from the node at `addr` alone until it serves the value, or panics
/// at `deadline`; panics at once on an answer "absent" or another value. Returns how many reads
/// it refused meanwhile ("not serving", or no answer in time).
fn read_never_absent(addr: SocketAddr, expected: &[(String, String)], deadline: Instant) -> usize {
    let mut refused = 0;
    for (key, value) in expected {
        loop {
            match client_of(&[addr], Duration::from_millis(300)).get(key.as_str()) {
                Ok(outcome) if outcome.found() == Some(&value.as_bytes().to_vec()) => break,
                Ok(outcome @ (Outcome::NotFound | Outcome::Value { .. })) => {
                    panic!("{addr} answered {outcome:?} for {key}, committed before as {value}")
                }
                Ok(_) | Err(ClientError::NotServing { .. } | ClientError::Timeout { .. }) => refused += 1,
                Err(error) => panic!("{addr} failed a read of {key}: {error}"),
            }
            assert!(Instant::now() < deadline, "{addr} did not serve {key}={value} by the deadline");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    refused
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
