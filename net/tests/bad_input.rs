//! Bad input from the network: garbage, a wrong version, oversized, malformed and truncated
//! frames, floods of junk datagrams, clients that connect and never send or never read. Each
//! gets a clear error frame where one can be sent and loses its connection where it must, while
//! everyone else is still served and the server's memory stays bounded.

mod common;

use common::TestCluster;
use dkv_core::codec::frame::{self, Frame, FrameError};
use dkv_core::{ClientId, Operation, Outcome, Request, RequestId};
use dkv_net::{ClientTransport, ServerConfig, ServerStats, Transport};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

fn short_timeouts(config: &mut ServerConfig) {
    config.connection.first_frame_timeout = Duration::from_millis(300);
    config.connection.partial_frame_timeout = Duration::from_millis(300);
    config.connection.output_bytes_max = 1 << 20;
}

fn start() -> TestCluster {
    TestCluster::start_with(1, Transport::Both, short_timeouts)
}

/// Everything the server sends on `stream` until it closes it (or `timeout` passes), decoded.
fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<Frame>, bool) {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    let mut frames = Vec::new();
    let mut used = 0;
    while let Ok(Some((f, n))) = frame::decode_stream(&bytes[used..], u32::MAX) {
        frames.push(f);
        used += n;
    }
    (frames, closed)
}

/// A normal client still gets served, over TCP and UDP.
fn others_still_served(cluster: &TestCluster) {
    for transport in [ClientTransport::Tcp, ClientTransport::Udp] {
        let mut client = cluster.client(0, transport);
        assert!(matches!(client.put("still", "served").unwrap(), Outcome::Committed(_)));
        assert_eq!(client.get("still").unwrap().found(), Some(&b"served".to_vec()));
    }
}

/// Polls a counter until it reaches `at_least`, within a deadline.
#[track_caller]
fn wait_for(counter: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ServerStats::get(counter) < at_least {
        assert!(Instant::now() < deadline, "counter stuck at {}, expected {at_least}", ServerStats::get(counter));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn header(version: u8, len: u32) -> Vec<u8> {
    let mut bytes = frame::MAGIC.to_vec();
    bytes.push(version);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes
}

fn assert_error_then_closed(cluster: &TestCluster, bytes: &[u8], check: impl Fn(&FrameError) -> bool) {
    let mut stream = TcpStream::connect(cluster.addrs[0]).unwrap();
    stream.write_all(bytes).unwrap();
    let (frames, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    match frames.as_slice() {
        [Frame::Error(error)] => assert!(check(error), "unexpected error {error:?}"),
        other => panic!("expected one error frame, got {other:?}"),
    }
    assert!(closed, "the connection must be closed after a bad frame");
}

/// Garbage bytes get a "not a dkv frame" error and the connection closes. (Bytes that start
/// with a letter, a digit or `*` are another protocol's: Redis's or the original text one.)
#[test]
fn garbage_gets_a_clear_error_and_its_connection_is_closed() {
    let cluster = start();
    assert_error_then_closed(&cluster, b"<?xml version=\"1.0\"?>\r\n\r\n", |e| {
        matches!(e, FrameError::BadMagic) && e.to_string().contains("is this a dkv client")
    });
    others_still_served(&cluster);
}

/// A frame of another protocol version is refused by name.
#[test]
fn wrong_version_is_refused_with_the_version_named() {
    let cluster = start();
    let mut bytes = header(frame::VERSION + 1, 1);
    bytes.push(0);
    assert_error_then_closed(
        &cluster,
        &bytes,
        |e| matches!(e, FrameError::UnsupportedVersion { found } if *found == frame::VERSION + 1),
    );
    others_still_served(&cluster);
}

/// A length field over the limit is refused before anything is buffered.
#[test]
fn oversized_frame_is_refused_before_it_is_buffered() {
    let cluster = start();
    assert_error_then_closed(&cluster, &header(frame::VERSION, u32::MAX), |e| matches!(e, FrameError::TooLarge { .. }));
    others_still_served(&cluster);
}

/// A frame whose payload is not a valid message gets "malformed".
#[test]
fn malformed_payload_is_refused() {
    let cluster = start();
    let mut bytes = header(frame::VERSION, 8);
    bytes.extend_from_slice(&[0xff; 8]);
    assert_error_then_closed(&cluster, &bytes, |e| matches!(e, FrameError::Malformed { .. }));
    others_still_served(&cluster);
}

/// A client may only send requests: a reply frame from it is refused.
#[test]
fn reply_frame_from_a_client_is_refused() {
    let cluster = start();
    let reply = Frame::Reply(dkv_core::Reply {
        id: RequestId { client: ClientId(1), seq: 1 },
        outcome: Outcome::Committed(Vec::new()),
    });
    assert_error_then_closed(&cluster, &frame::encode_to_vec(&reply), |e| matches!(e, FrameError::Malformed { .. }));
}

/// Only the partial-frame timeout is short: a connection that has sent a whole frame cannot be
/// closed by the first-frame timeout, so a close can only come from the frame left half-sent.
fn partial_frame_timeout_only(config: &mut ServerConfig) {
    config.connection.first_frame_timeout = Duration::from_secs(3600);
    config.connection.partial_frame_timeout = Duration::from_millis(300);
}

/// A frame that starts and never completes costs its connection after the partial-frame
/// timeout, even on a connection that has already sent a whole frame; meanwhile everyone else
/// is served.
#[test]
fn truncated_frame_is_dropped_after_the_timeout() {
    let cluster = TestCluster::start_with(1, Transport::Both, partial_frame_timeout_only);
    let dropped_before = ServerStats::get(&cluster.handle(0).stats().connections_dropped);
    let mut stream = TcpStream::connect(cluster.addrs[0]).unwrap();
    // A whole frame first, answered: from here on the first-frame timeout cannot apply.
    let id = RequestId { client: ClientId(7), seq: 1 };
    let get = Request { id, operation: Operation::Get { key: b"absent".to_vec() } };
    stream.write_all(&frame::encode_to_vec(&Frame::Request(get))).unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = loop {
        if let Some((reply, _)) = frame::decode_stream(&bytes, u32::MAX).unwrap() {
            break reply;
        }
        let n = stream.read(&mut chunk).expect("the whole frame is answered");
        assert!(n > 0, "closed before answering a whole frame");
        bytes.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(reply, Frame::Reply(dkv_core::Reply { id, outcome: Outcome::NotFound }));
    // Then 10 bytes of a 100-byte frame, and nothing more.
    let started = Instant::now();
    let mut partial = header(frame::VERSION, 100);
    partial.extend_from_slice(&[0; 10]);
    stream.write_all(&partial).unwrap();
    others_still_served(&cluster);
    let (frames, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(closed, "a half-sent frame must not hold its connection forever");
    assert!(frames.is_empty(), "a stalled frame is dropped without an answer, got {frames:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "closed before the partial-frame timeout");
    wait_for(&cluster.handle(0).stats().connections_dropped, dropped_before + 1);
}

/// A client that connects and never sends is dropped after the first-frame timeout, and does
/// not stall anyone while it is connected.
#[test]
fn silent_connection_is_dropped_and_stalls_nobody() {
    let cluster = start();
    let mut silent: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(cluster.addrs[0]).unwrap()).collect();
    others_still_served(&cluster);
    for stream in &mut silent {
        let (frames, closed) = read_until_closed(stream, Duration::from_secs(5));
        assert!(frames.is_empty());
        assert!(closed, "a silent connection must be closed");
    }
    wait_for(&cluster.handle(0).stats().connections_dropped, 20);
}

/// A flood of junk datagrams is counted and dropped, leaving nothing behind in the server; the
/// errors it answers with stay within their rate limit; a bad dkv datagram is answered with an
/// error; clients are served during and after the flood.
#[test]
fn udp_junk_flood_is_dropped_and_everyone_else_is_served() {
    let cluster = start();
    let stats = cluster.handle(0).stats();
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.connect(cluster.addrs[0]).unwrap();
    junk.set_nonblocking(true).unwrap();
    let rejected_before = ServerStats::get(&stats.frames_rejected);
    let started = Instant::now();
    let mut answers = 0u64;
    let mut buffer = [0u8; 2048];
    let mut drain = |answers: &mut u64| {
        while junk.recv(&mut buffer).is_ok() {
            *answers += 1;
        }
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    const SENT: u64 = 5_000;
    const BATCH: u64 = 50;
    for i in 0..SENT {
        // xorshift: cheap varied junk of varied sizes.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 1400) as usize + 1;
        let bytes: Vec<u8> = (0..len).map(|j| (state >> (j % 56)) as u8).collect();
        junk.send(&bytes).unwrap();
        if (i + 1) % BATCH == 0 {
            // Paced by what the server has counted, so the socket's buffer never overflows
            // and every datagram sent is one the server saw.
            wait_for(&stats.frames_rejected, rejected_before + i + 1);
            drain(&mut answers);
        }
        if i % 1000 == 0 {
            others_still_served(&cluster);
        }
    }
    others_still_served(&cluster);
    drain(&mut answers);
    // Counted and dropped: every datagram was rejected, none taken for a frame.
    assert_eq!(ServerStats::get(&stats.frames_rejected), rejected_before + SENT);
    // The errors sent back are rate-limited: no more than the limit in each one-second window.
    let windows = started.elapsed().as_secs() + 2;
    let per_second = u64::from(cluster.config(0).connection.udp_error_replies_per_second);
    assert!(answers > 0, "bad datagrams get an error, within the rate limit");
    assert!(answers <= per_second * windows, "{answers} errors sent to junk, more than {per_second}/s allows");
    // Nothing is held for junk: once the clients have their replies, no reply route is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ServerStats::get(&stats.reply_routes) != 0 {
        let held = ServerStats::get(&stats.reply_routes);
        assert!(Instant::now() < deadline, "after the flood the server still holds {held} reply routes");
        std::thread::sleep(Duration::from_millis(10));
    }

    // A datagram that is a dkv frame of the wrong version gets an error back.
    let prober = UdpSocket::bind("127.0.0.1:0").unwrap();
    prober.connect(cluster.addrs[0]).unwrap();
    prober.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 2048];
    let answer = loop {
        assert!(Instant::now() < deadline, "no error reply to a bad datagram");
        prober.send(&header(frame::VERSION + 1, 0)).unwrap();
        if let Ok(n) = prober.recv(&mut buffer) {
            break frame::decode_datagram(&buffer[..n], u32::MAX).unwrap();
        }
    };
    assert!(matches!(answer, Frame::Error(FrameError::UnsupportedVersion { .. })), "{answer:?}");
}

/// A client that sends requests and never reads the replies is dropped for that reason once
/// its replies would exceed the output buffer limit, and not before: the most it ever had
/// waiting is within one reply of the limit. Others are served.
#[test]
fn client_that_never_reads_is_dropped_at_the_buffer_limit() {
    let cluster = start();
    let limit = cluster.config(0).connection.output_bytes_max as u64;
    let value = vec![7u8; 100 * 1024];
    let mut setup = cluster.client(0, ClientTransport::Tcp);
    assert!(matches!(setup.put("big", value.clone()).unwrap(), Outcome::Committed(_)));
    let reply = Frame::Reply(dkv_core::Reply {
        id: RequestId { client: ClientId(42), seq: 1 },
        outcome: Outcome::Value { value: value.clone(), version: 1 },
    });
    let reply_bytes = frame::encode_to_vec(&reply).len() as u64;

    let stats = cluster.handle(0).stats();
    let full_before = ServerStats::get(&stats.connections_dropped_output_full);
    let dropped_before = ServerStats::get(&stats.connections_dropped);
    let mut greedy = TcpStream::connect(cluster.addrs[0]).unwrap();
    greedy.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // 400 gets of 100 KiB: 40 MiB of replies, far more than socket buffers and the 1 MiB limit.
    let mut requests = Vec::new();
    for seq in 1..=400 {
        let request =
            Request { id: RequestId { client: ClientId(42), seq }, operation: Operation::Get { key: b"big".to_vec() } };
        frame::encode(&Frame::Request(request), &mut requests);
    }
    let _ = greedy.write_all(&requests);
    wait_for(&stats.connections_dropped_output_full, full_before + 1);
    assert_eq!(ServerStats::get(&stats.connections_dropped_output_full), full_before + 1);
    assert!(ServerStats::get(&stats.connections_dropped) > dropped_before, "a drop for a full buffer is a drop");
    // The server closed it: the greedy client reads what the sockets held, then the end.
    let (_, closed) = read_until_closed(&mut greedy, Duration::from_secs(10));
    assert!(closed, "the greedy connection must be closed");
    // Bounded, and tightly: the backlog grew to the limit (the reply that did not fit would
    // have taken it over) and never past it.
    let peak = ServerStats::get(&stats.reply_backlog_bytes_peak);
    assert!(peak <= limit, "{peak} reply bytes waited for one client, over the {limit}-byte limit");
    assert!(peak + reply_bytes > limit, "dropped with only {peak} bytes waiting, before the {limit}-byte limit");
    others_still_served(&cluster);
}
