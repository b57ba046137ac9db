//! A state transfer end to end over loopback: a running member streams its log over its
//! TLS-authenticated peer port to an empty data dir, and the node started on that dir holds
//! the same state; neither side ever buffers more than its stated bound, and the member keeps
//! serving clients meanwhile.

mod common;

use common::TestCluster;
use dkv_core::codec::transfer::{TRANSFER_CHUNK_BYTES_MAX, TRANSFER_WINDOW_BYTES_MIN};
use dkv_core::record::{TxnRecord, VersionedEntry};
use dkv_core::{ClientId, Config, Node, NodeId, NodeSet, Outcome, Record, RequestId, Snapshot, Time, TxnId, TxnOp};
use dkv_net::identity::Identity;
use dkv_net::security::credentials::NodeCredentials;
use dkv_net::stats::ServerStats;
use dkv_net::transfer::{
    FetchError, STAGING_FILE_NAME, TRANSFER_RECORD_BYTES_MAX, TransferSink, fetch_into, fetch_state,
};
use dkv_net::{ClientTransport, Transport, Wal};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEYS: usize = 100_000;
/// Four chunks in flight: many window round trips, so the flow control is exercised.
const WINDOW_BYTES: u32 = 4 * TRANSFER_WINDOW_BYTES_MIN;

/// The member's log: a snapshot of [`KEYS`] keys with 100-byte values (about 13 MB), then
/// commits decided by the member after it.
fn member_records() -> Vec<Record> {
    let entries = (0..KEYS)
        .map(|i| VersionedEntry { key: format!("key{i:07}").into_bytes(), value: vec![b'v'; 100], version: 1 })
        .collect();
    let mut records = Snapshot { incarnation: 1, entries, ..Snapshot::default() }.into_records();
    records.push(Record::BootTracked { incarnation: 2 });
    for number in 1..=50u64 {
        let txn = TxnId { coordinator: NodeId(0), incarnation: 2, number };
        let key = format!("later{number:03}").into_bytes();
        let decision = TxnRecord {
            txn,
            request: RequestId { client: ClientId(1000 + number), seq: 1 },
            ops: vec![TxnOp::Put { key, value: b"after the snapshot".to_vec() }].into(),
            participants: NodeSet::first(2),
        };
        records.push(Record::Decided(decision));
        records.push(Record::Forgotten { txn });
    }
    records
}

/// What node `id` recovers from `dir`.
fn recovered_snapshot(dir: &Path, identity: Identity) -> Snapshot {
    let (_wal, recovery) = Wal::open_as(dir, identity).unwrap();
    let node = Node::start(Config::new(identity.node, NodeSet::first(2)), recovery.records, Time::ZERO).unwrap();
    node.snapshot()
}

/// Two nodes, not started: node 0, the member, has `member_records()` in its log; node 1 (whose
/// credentials come back) will ask for them.
fn member_with_its_log() -> (TestCluster, NodeCredentials, Identity, Identity) {
    let cluster = TestCluster::unstarted(2, Transport::Tcp);
    let credentials = NodeCredentials::load(&cluster.credentials.join("node-1")).unwrap();
    let member = Identity { cluster: credentials.cluster, node: NodeId(0) };
    let receiver = Identity { cluster: credentials.cluster, node: NodeId(1) };
    let (mut wal, _) = Wal::open_as(&cluster.dirs[0], member).unwrap();
    for record in member_records() {
        wal.append(&record).unwrap();
    }
    wal.sync().unwrap();
    (cluster, credentials, member, receiver)
}

#[test]
fn a_member_streams_100k_keys_to_an_empty_data_dir_within_bounded_memory() {
    let (mut cluster, credentials, member, receiver) = member_with_its_log();
    cluster.start_node(0);

    // A client reads from the member all along: the transfer is sent a few chunks per loop turn,
    // so its reads are answered between them.
    let transferring = Arc::new(AtomicBool::new(true));
    let mut client = cluster.client(0, ClientTransport::Tcp);
    let reader = {
        let transferring = transferring.clone();
        std::thread::spawn(move || {
            let (mut reads, mut slowest) = (0u64, Duration::ZERO);
            while transferring.load(Ordering::SeqCst) {
                let started = Instant::now();
                let outcome = client.get(format!("key{:07}", reads % KEYS as u64)).unwrap();
                slowest = slowest.max(started.elapsed());
                assert!(matches!(outcome, Outcome::Value { .. }), "{outcome:?}");
                reads += 1;
            }
            (reads, slowest)
        })
    };
    let started = Instant::now();
    let report = fetch_state(
        NodeId(0),
        cluster.peer_addrs[0],
        &credentials,
        &cluster.dirs[1],
        0,
        WINDOW_BYTES,
        Duration::from_secs(30),
    )
    .unwrap();
    let took = started.elapsed();
    transferring.store(false, Ordering::SeqCst);
    let (reads, slowest) = reader.join().unwrap();
    eprintln!(
        "transferred {} bytes in {} chunks in {took:?}; receiver held at most {} bytes; {reads} reads meanwhile, slowest {slowest:?}",
        report.bytes, report.chunks, report.high_water_bytes
    );
    assert!(report.bytes > 10_000_000, "the whole snapshot was sent: {} bytes", report.bytes);

    // The member never had more than the window in flight; the receiver never held more than a
    // frame, its read buffer, a record cut across chunks and a write buffer (records here are
    // at most about 1 MiB), however large the log.
    let stats = cluster.handle(0).stats();
    let in_flight = ServerStats::get(&stats.transfer_in_flight_bytes_peak);
    assert!(in_flight > 0 && in_flight <= u64::from(WINDOW_BYTES), "in flight at most the window: {in_flight}");
    let receiver_bound = 2 * TRANSFER_CHUNK_BYTES_MAX as usize + 4 * (1 << 20) + (64 << 10);
    assert!(receiver_bound < TRANSFER_RECORD_BYTES_MAX);
    assert!(
        report.high_water_bytes <= receiver_bound,
        "the receiver held {} bytes, more than {receiver_bound}",
        report.high_water_bytes
    );
    assert!(reads > 0, "the member served reads during the transfer");
    assert!(slowest < Duration::from_secs(1), "a read waited {slowest:?} behind the transfer");

    cluster.stop_node(0);
    let at_member = recovered_snapshot(&cluster.dirs[0], member);
    let at_receiver = recovered_snapshot(&cluster.dirs[1], receiver);
    assert_eq!(at_receiver.entries.len(), KEYS + 50);
    assert!(at_receiver.entries == at_member.entries, "the receiver's store is the member's");
    assert_eq!(at_receiver.completions, at_member.completions);
    assert!(at_receiver.decisions.is_empty(), "none of the member's decisions is the receiver's");
}

/// A transfer request from a connection that is not a proven member (here: a node of another
/// cluster) is never served: the TLS handshake fails and nothing is installed.
#[test]
fn a_stranger_is_not_served_a_transfer() {
    let mut cluster = TestCluster::unstarted(2, Transport::Tcp);
    cluster.start_node(0);
    let other = TestCluster::unstarted(2, Transport::Tcp);
    let stranger = NodeCredentials::load(&other.credentials.join("node-1")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let error =
        fetch_state(NodeId(0), cluster.peer_addrs[0], &stranger, dir.path(), 0, WINDOW_BYTES, Duration::from_secs(5))
            .unwrap_err();
    assert!(matches!(error, FetchError::Link { .. }), "{error}");
    assert_eq!(ServerStats::get(&cluster.handle(0).stats().transfers_served), 0);
}

/// A transfer that takes longer than the asker allows is abandoned, and the asker's log is the
/// one it had: nothing of the member's state is installed.
#[test]
fn a_transfer_past_its_time_bound_is_abandoned_and_installs_nothing() {
    let (mut cluster, credentials, _member, receiver) = member_with_its_log();
    let own = Record::BootTracked { incarnation: 9 };
    {
        let (mut wal, _) = Wal::open_as(&cluster.dirs[1], receiver).unwrap();
        wal.append(&own).unwrap();
        wal.sync().unwrap();
    }
    cluster.start_node(0);
    let sink = TransferSink::create(&cluster.dirs[1], receiver, 9).unwrap();
    let took_max = Some(Duration::ZERO);
    let timeout = Duration::from_secs(5);
    let error =
        fetch_into(sink, NodeId(0), cluster.peer_addrs[0], &credentials, WINDOW_BYTES, timeout, took_max).unwrap_err();
    assert!(matches!(error, FetchError::TookTooLong { .. }), "{error}");
    let (_wal, recovery) = Wal::open_as(&cluster.dirs[1], receiver).unwrap();
    assert_eq!(recovery.records, vec![own], "the asker's log is untouched");
    assert!(!cluster.dirs[1].join(STAGING_FILE_NAME).exists());
}
