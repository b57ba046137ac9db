//! Exhaustion attacks: a flood of idle connections must not lock out clients or peers, and
//! connections that send the start of huge frames must not take the server past its byte
//! budget. (bin/tests/exhaustion.rs measures the same budget as a real process's RSS.)

mod common;

use common::TestCluster;
use dkv_core::Outcome;
use dkv_core::codec::frame;
use dkv_net::{ClientTransport, ServerStats, Transport};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// 1,100 idle connections to a node with 1,024 client slots: the idlest make room for newer
/// ones, a real client is still served, and a peer that restarts reconnects (peers have their
/// own port and slots, so clients never lock them out).
#[test]
fn idle_connection_flood_locks_out_neither_clients_nor_peers() {
    let mut cluster = TestCluster::start(3, Transport::Tcp);
    let flood: Vec<TcpStream> = (0..1_100).map(|_| TcpStream::connect(cluster.addrs[0]).unwrap()).collect();
    let stats = cluster.handle(0).stats();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ServerStats::get(&stats.connections_evicted) < 1_100 - 1_024 {
        assert!(Instant::now() < deadline, "the flood did not fill the slots");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = cluster.client(0, ClientTransport::Tcp);
    assert!(matches!(client.put("still", "served").unwrap(), Outcome::Committed(_)));
    cluster.stop_node(1);
    cluster.start_node(1);
    assert!(matches!(client.put("after", "restart").unwrap(), Outcome::Committed(_)), "the restarted peer took part");
    assert_eq!(cluster.client(1, ClientTransport::Tcp).get("after").unwrap().found(), Some(&b"restart".to_vec()));
    drop(flood);
}

/// 300 connections each send the header of a 16 MiB frame and then as much of its payload as
/// the server takes: whenever their buffers pass the budget the largest is dropped, so the
/// total held stays near the budget, and a real client is served throughout.
#[test]
fn half_sent_huge_frames_stay_within_the_byte_budget() {
    const BUDGET: usize = 32 << 20;
    let cluster = TestCluster::start_with(1, Transport::Tcp, |config| {
        config.connection.buffer_bytes_max = BUDGET;
        config.connection.connections_max = 400;
    });
    let frame_len = 16u32 << 20;
    let mut header = b"dkv".to_vec();
    header.push(frame::VERSION);
    header.extend_from_slice(&frame_len.to_le_bytes());
    let mut attackers: Vec<Option<TcpStream>> = (0..300)
        .map(|_| {
            let mut stream = TcpStream::connect(cluster.addrs[0]).unwrap();
            stream.write_all(&header).unwrap();
            stream.set_nonblocking(true).unwrap();
            Some(stream)
        })
        .collect();
    let chunk = vec![0x41u8; 64 << 10];
    let stats = cluster.handle(0).stats();
    let mut sent = vec![0usize; attackers.len()];
    let mut highest = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while attackers.iter().any(Option::is_some) && Instant::now() < deadline {
        for (i, slot) in attackers.iter_mut().enumerate() {
            let Some(stream) = slot else { continue };
            match stream.write(&chunk) {
                Ok(n) => sent[i] += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *slot = None,
            }
            if sent[i] >= frame_len as usize {
                *slot = None;
            }
        }
        highest = highest.max(ServerStats::get(&stats.connection_buffer_bytes));
    }
    let total: usize = sent.iter().sum();
    assert!(total > 4 * BUDGET, "the attack sent only {total} bytes");
    assert!(ServerStats::get(&stats.connections_evicted) > 0, "nothing was dropped for the budget");
    // Housekeeping samples the gauge; the budget is enforced after every read, which may add
    // one read's worth (and its buffer's doubling) before the largest connection is dropped.
    assert!(highest <= (BUDGET + (4 << 20)) as u64, "buffers held {highest} bytes, budget {BUDGET}");
    let mut client = cluster.client(0, ClientTransport::Tcp);
    assert!(matches!(client.put("still", "served").unwrap(), Outcome::Committed(_)));
}

/// Clients that ask for large values and never read the replies: the replies count against the
/// byte budget too, also when they are released by a timer rather than a read (here: reads
/// waiting on a key locked by a write whose peer is down, all answered when its vote times
/// out), so the largest such connection is dropped instead of memory growing with every reply.
/// (Before, 100 such clients took a node with a 16 MiB budget past 900 MiB.)
#[test]
fn unread_replies_stay_within_the_byte_budget() {
    const BUDGET: usize = 32 << 20;
    let mut cluster = TestCluster::start_with(2, Transport::Tcp, |config| {
        config.connection.buffer_bytes_max = BUDGET;
        // The reads must outwait the write's abort, which comes at the vote timeout and once
        // its record is durable: then they are answered with the value, not "locked".
        config.timing.read_wait_timeout = config.timing.vote_timeout * 2;
    });
    let value = vec![0x5au8; 512 << 10];
    assert!(matches!(
        cluster.client(0, ClientTransport::Tcp).put("big", value.clone()).unwrap(),
        Outcome::Committed(_)
    ));
    cluster.stop_node(1);
    // A write that locks the key at node 0 and waits for node 1's vote until it times out.
    let request = |seq: u64, operation| dkv_core::Request {
        id: dkv_core::RequestId { client: dkv_core::ClientId(seq), seq },
        operation,
    };
    let put = dkv_core::Operation::Txn { ops: vec![dkv_core::TxnOp::Put { key: b"big".to_vec(), value }] };
    let mut writer = TcpStream::connect(cluster.addrs[0]).unwrap();
    writer.write_all(&frame::encode_to_vec(&frame::Frame::Request(request(1_000, put)))).unwrap();
    let stats = cluster.handle(0).stats();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut get = Vec::new();
    for seq in 1..=20u64 {
        let operation = dkv_core::Operation::Get { key: b"big".to_vec() };
        frame::encode(&frame::Frame::Request(request(seq, operation)), &mut get);
    }
    let mut readers: Vec<TcpStream> = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(cluster.addrs[0]).unwrap();
        stream.write_all(&get).unwrap();
        readers.push(stream);
    }
    let mut highest = 0;
    while ServerStats::get(&stats.connections_evicted) == 0 || Instant::now() + Duration::from_secs(9) < deadline {
        assert!(Instant::now() < deadline, "nothing was dropped for the budget");
        highest = highest.max(ServerStats::get(&stats.connection_buffer_bytes));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(highest <= (BUDGET + (4 << 20)) as u64, "buffers held {highest} bytes, budget {BUDGET}");
    cluster.start_node(1);
    assert!(matches!(cluster.client(0, ClientTransport::Tcp).put("still", "served").unwrap(), Outcome::Committed(_)));
    drop((readers, writer));
}
