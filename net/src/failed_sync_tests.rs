//! A failed fsync, injected through the log's test-only switch ([`crate::wal::Wal::sync_fault`])
//! into a running one-node server: a real failing fsync cannot be had on demand (a filesystem
//! shut down fails the write before it; see bin/tests/disk_faults.rs for those).
//!
//! After a failed fsync the kernel may already have dropped the pages it could not write, and
//! a second fsync can then succeed without them: a node that retried, or went on, could report
//! durable a record the disk never took. The switch fails one sync only, as the kernel does, so
//! a server that retried would be caught acknowledging.

use crate::testing::free_ports;
use crate::{Client, ClientConfig, ClientTransport, Server, ServerConfig, ServerError, Transport};
use dkv_core::{NodeId, Outcome};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// EIO on Linux: what a disk that cannot write reports.
const EIO: i32 = 5;

fn one_node(dir: &Path, port: u16, peer_port: u16) -> Server {
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let config = ServerConfig::new(NodeId(0), addr(port), addr(peer_port), BTreeMap::new(), Transport::Tcp, dir.into());
    Server::bind(config).expect("the server starts")
}

fn client(port: u16, timeout: Duration) -> Client {
    let mut config = ClientConfig::new(vec![SocketAddr::from(([127, 0, 0, 1], port))], ClientTransport::Tcp);
    config.request_timeout = timeout;
    config.attempt_timeout = timeout;
    Client::new(config).unwrap()
}

/// A write whose fsync fails is never acknowledged, and the server stops with an error that
/// names the log, the cause and what to do. The log it leaves opens again: the write before
/// is there, and writes commit.
#[test]
fn failed_fsync_stops_the_server_without_acknowledging_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("node-0");
    let ports = free_ports(2);
    let server = one_node(&dir, ports[0], ports[1]);
    let fail_next_sync = server.sync_fault();
    let running = std::thread::spawn(move || server.run());
    let mut writer = client(ports[0], Duration::from_secs(10));
    assert!(matches!(writer.put("before", "1").unwrap(), Outcome::Committed(_)));

    fail_next_sync.store(EIO, Ordering::SeqCst);
    let mut writer = client(ports[0], Duration::from_secs(2));
    let answer = writer.put("after", "2");
    assert!(answer.is_err(), "a write whose fsync failed was answered: {answer:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running.is_finished() {
        assert!(Instant::now() < deadline, "the server went on after a failed fsync");
        std::thread::sleep(Duration::from_millis(5));
    }
    let error = running.join().unwrap().expect_err("the server stops with an error");
    assert!(matches!(error, ServerError::Wal(_)), "{error:?}");
    let message = error.to_string();
    for words in ["Input/output error", ".wal", "Free space or repair the disk"] {
        assert!(message.contains(words), "the error does not say {words:?}: {message}");
    }

    let server = one_node(&dir, ports[0], ports[1]);
    let handle = server.handle();
    let running = std::thread::spawn(move || server.run());
    let mut reader = client(ports[0], Duration::from_secs(10));
    assert_eq!(reader.get("before").unwrap().found(), Some(&b"1".to_vec()));
    // Its outcome was never learned: it may be there or not.
    let after = reader.get("after").unwrap();
    assert!(matches!(&after, Outcome::NotFound) || after.found() == Some(&b"2".to_vec()), "{after:?}");
    assert!(matches!(reader.put("again", "3").unwrap(), Outcome::Committed(_)));
    handle.stop();
    running.join().unwrap().expect("the server stops cleanly");
}
