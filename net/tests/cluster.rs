//! A real cluster of three servers on loopback, driven through the client library over TCP and
//! UDP: the runtime carries requests, peer messages and replies, and the log makes writes
//! survive restarts.

mod common;

use common::TestCluster;
use dkv_core::{FailReason, OpFailure, Outcome, TxnOp};
use dkv_net::{ClientError, ClientTransport, Transport};

fn value(outcome: Outcome) -> Option<Vec<u8>> {
    match outcome {
        Outcome::Value { value, .. } => Some(value),
        Outcome::NotFound => None,
        other => panic!("expected a value or not-found, got {other:?}"),
    }
}

/// Every operation works through every node, and a write through one node is read at all.
fn exercise(cluster: &TestCluster, transport: ClientTransport) {
    let mut clients: Vec<_> = (0..3).map(|i| cluster.client(i, transport)).collect();
    assert!(matches!(clients[0].put("a", "1").unwrap(), Outcome::Committed(_)));
    for client in &mut clients {
        assert_eq!(value(client.get("a").unwrap()), Some(b"1".to_vec()));
    }
    assert!(matches!(clients[1].update("a", "2").unwrap(), Outcome::Committed(_)));
    assert_eq!(value(clients[2].get("a").unwrap()), Some(b"2".to_vec()));
    assert_eq!(
        clients[2].update("missing", "x").unwrap(),
        Outcome::Failed(OpFailure { op_index: 0, reason: FailReason::KeyNotFound })
    );
    let txn = vec![
        TxnOp::Put { key: b"b".to_vec(), value: b"3".to_vec() },
        TxnOp::Update { key: b"a".to_vec(), value: b"4".to_vec() },
    ];
    assert!(matches!(clients[0].txn(txn).unwrap(), Outcome::Committed(_)));
    assert_eq!(value(clients[1].get("a").unwrap()), Some(b"4".to_vec()));
    assert_eq!(value(clients[1].get("b").unwrap()), Some(b"3".to_vec()));
    // A transaction with a failing op applies nothing.
    let txn = vec![TxnOp::Delete { key: b"a".to_vec() }, TxnOp::Delete { key: b"nope".to_vec() }];
    assert_eq!(
        clients[2].txn(txn).unwrap(),
        Outcome::Failed(OpFailure { op_index: 1, reason: FailReason::KeyNotFound })
    );
    assert_eq!(value(clients[0].get("a").unwrap()), Some(b"4".to_vec()));
    assert!(matches!(clients[0].delete("a").unwrap(), Outcome::Committed(_)));
    for client in &mut clients {
        assert_eq!(value(client.get("a").unwrap()), None);
    }
}

/// Default mode: clients on TCP and UDP, peers over TCP.
#[test]
fn three_nodes_serve_every_operation_over_tcp_and_udp() {
    let cluster = TestCluster::start(3, Transport::Both);
    exercise(&cluster, ClientTransport::Tcp);
    exercise(&cluster, ClientTransport::Udp);
}

/// UDP mode: peers exchange datagrams too, and oversized requests are refused with advice.
#[test]
fn three_nodes_in_udp_mode_serve_every_operation() {
    let cluster = TestCluster::start(3, Transport::Udp);
    exercise(&cluster, ClientTransport::Udp);
    let mut client = cluster.client(0, ClientTransport::Udp);
    match client.put("big", vec![0u8; 70_000]) {
        Err(error @ ClientError::TooLargeForDatagram { .. }) => assert!(error.to_string().contains("over TCP")),
        other => panic!("expected a too-large-for-datagram error, got {other:?}"),
    }
}

/// Stopping and restarting every node keeps every acknowledged write: they come back from the
/// log. Enough writes are made to cross a snapshot, so recovery also starts from one.
#[test]
fn acknowledged_writes_survive_restart_of_all_nodes_across_snapshots() {
    let mut cluster = TestCluster::start_with(3, Transport::Tcp, |config| config.bounds.snapshot_records_min = 50);
    let mut client = cluster.client(0, ClientTransport::Tcp);
    for i in 0..200 {
        assert!(matches!(client.put(format!("k{}", i % 20), format!("v{i}")).unwrap(), Outcome::Committed(_)));
    }
    for i in 0..3 {
        cluster.stop_node(i);
    }
    for i in 0..3 {
        cluster.start_node(i);
    }
    for node in 0..3 {
        let mut client = cluster.client(node, ClientTransport::Tcp);
        for k in 0..20 {
            let last = 180 + k;
            assert_eq!(value(client.get(format!("k{k}")).unwrap()), Some(format!("v{last}").into_bytes()));
        }
    }
    // Compaction kept the log small: at most two segments per node.
    for dir in &cluster.dirs {
        let segments = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "wal"))
            .count();
        assert!(segments <= 2, "{} has {segments} segments", dir.display());
    }
}

/// A client whose first node is down fails over to the next for reads; with every node down it
/// says so in words that tell the user what to check.
#[test]
fn client_fails_over_and_reports_unreachable_nodes() {
    let mut cluster = TestCluster::start(3, Transport::Both);
    assert!(matches!(cluster.client(1, ClientTransport::Tcp).put("k", "v").unwrap(), Outcome::Committed(_)));
    cluster.stop_node(0);
    for transport in [ClientTransport::Tcp, ClientTransport::Udp] {
        let mut client = cluster.client(0, transport);
        assert_eq!(client.get("k").unwrap().found(), Some(&b"v".to_vec()));
    }
    cluster.stop_node(1);
    cluster.stop_node(2);
    let mut client = cluster.client(0, ClientTransport::Tcp);
    match client.get("k") {
        Err(error @ ClientError::Unreachable { .. }) => {
            assert!(error.to_string().contains("is dkv-server running?"), "{error}")
        }
        other => panic!("expected an unreachable error, got {other:?}"),
    }
}
