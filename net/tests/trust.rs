//! Attacks on the trust boundary, from a process on the same host: forged peer frames on the
//! client port (TCP and UDP), plaintext and foreign-cluster connections to the peer port, a
//! member's link naming another sender, and forged, foreign and replayed peer datagrams in UDP
//! mode. Each must change nothing anywhere, be counted, and leave real clients served.

mod common;

use common::TestCluster;
use dkv_core::codec::frame::{self, Frame};
use dkv_core::{ClientId, ClusterId, Decision, Epoch, Message, NodeId, NodeSet, Outcome, RequestId, TxnId, TxnOp};
use dkv_net::security::credentials::{NodeCredentials, init_cluster};
use dkv_net::security::datagrams::PeerDatagrams;
use dkv_net::security::tls::PeerTls;
use dkv_net::{ClientTransport, ServerStats, Transport};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FORGED_KEY: &[u8] = b"forged";

/// A forged transaction "coordinated" by node 1: PREPARE, then COMMIT.
fn forged_messages(number: u64) -> [Message; 2] {
    let txn = TxnId { coordinator: NodeId(1), incarnation: 1 << 40, number };
    let ops = vec![TxnOp::Put { key: FORGED_KEY.to_vec(), value: b"evil".to_vec() }].into();
    let request = RequestId { client: ClientId(0xbad), seq: number };
    [
        Message::Prepare {
            epoch: Epoch::FIRST,
            txn,
            request,
            ops,
            participants: NodeSet::first(3),
            round: txn.incarnation,
        },
        Message::Decision { epoch: Epoch::FIRST, txn, decision: Decision::Commit },
    ]
}

fn forged_frames(cluster: ClusterId, from: NodeId, number: u64) -> Vec<Vec<u8>> {
    forged_messages(number)
        .into_iter()
        .map(|message| frame::encode_to_vec(&Frame::Peer { cluster, from, message }))
        .collect()
}

fn cluster_id(cluster: &TestCluster) -> ClusterId {
    NodeCredentials::load(&cluster.credentials.join("node-0")).unwrap().cluster
}

/// Waits (bounded) until `counter` of node `i` reaches `at_least`.
fn wait_for(cluster: &TestCluster, i: usize, counter: fn(&ServerStats) -> &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ServerStats::get(counter(cluster.handle(i).stats())) < at_least {
        assert!(Instant::now() < deadline, "node {i}'s counter stayed below {at_least}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Nothing of the forgery is anywhere, and a real write still commits and reads back.
fn nothing_applied_and_still_served(cluster: &TestCluster, transport: ClientTransport) {
    for i in 0..cluster.addrs.len() {
        let mut client = cluster.client(i, transport);
        assert_eq!(client.get(FORGED_KEY).unwrap(), Outcome::NotFound, "node {i} applied a forged write");
    }
    let mut client = cluster.client(0, transport);
    assert!(matches!(client.put("real", "write").unwrap(), Outcome::Committed(_)));
    for i in 0..cluster.addrs.len() {
        assert_eq!(cluster.client(i, transport).get("real").unwrap().found(), Some(&b"write".to_vec()));
    }
}

/// A client connection (TCP) or datagram (UDP) that sends peer frames, naming a real member
/// and the real cluster, is refused: counted, nothing applied, and the TCP one is told why.
#[test]
fn peer_frames_on_the_client_port_change_nothing() {
    let cluster = TestCluster::start(3, Transport::Both);
    let id = cluster_id(&cluster);
    let mut stream = TcpStream::connect(cluster.addrs[0]).unwrap();
    for bytes in forged_frames(id, NodeId(1), 1) {
        stream.write_all(&bytes).unwrap();
    }
    wait_for(&cluster, 0, |s| &s.peer_frames_refused, 1);
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = vec![0u8; 4096];
    let n = stream.read(&mut reply).unwrap();
    match frame::decode_stream(&reply[..n], u32::MAX) {
        Ok(Some((Frame::Error(error), _))) => assert!(error.to_string().contains("peer port"), "{error}"),
        other => panic!("expected an error frame, got {other:?}"),
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for bytes in forged_frames(id, NodeId(1), 2) {
        udp.send_to(&bytes, cluster.addrs[2]).unwrap();
    }
    wait_for(&cluster, 2, |s| &s.peer_frames_refused, 2);
    nothing_applied_and_still_served(&cluster, ClientTransport::Tcp);
    nothing_applied_and_still_served(&cluster, ClientTransport::Udp);
}

/// The peer port takes nothing in plaintext, nor from a node of another cluster (its
/// certificate was not issued by this cluster's CA): both are refused before any frame is read.
#[test]
fn the_peer_port_refuses_plaintext_and_strangers() {
    let cluster = TestCluster::start(3, Transport::Tcp);
    let id = cluster_id(&cluster);
    let mut plain = TcpStream::connect(cluster.peer_addrs[0]).unwrap();
    for bytes in forged_frames(id, NodeId(1), 1) {
        plain.write_all(&bytes).unwrap();
    }
    wait_for(&cluster, 0, |s| &s.peer_connections_refused, 1);

    let other = tempfile::tempdir().unwrap();
    init_cluster(&other.path().join("c"), &[NodeId(0), NodeId(1), NodeId(2)]).unwrap();
    let stranger = PeerTls::new(&NodeCredentials::load(&other.path().join("c/node-1")).unwrap()).unwrap();
    let result = tls_send(cluster.peer_addrs[0], stranger.connect(NodeId(0)), &forged_frames(id, NodeId(1), 2));
    assert!(result.is_err(), "a node of another cluster completed a handshake");
    wait_for(&cluster, 0, |s| &s.peer_connections_refused, 2);
    assert_eq!(ServerStats::get(&cluster.handle(0).stats().peer_frames_refused), 0, "no frame got that far");
    nothing_applied_and_still_served(&cluster, ClientTransport::Tcp);
}

/// A member's authenticated link may speak only for that member, and only for this cluster.
#[test]
fn a_member_link_cannot_speak_for_another_member_or_cluster() {
    let cluster = TestCluster::start(3, Transport::Tcp);
    let id = cluster_id(&cluster);
    let member = PeerTls::new(&NodeCredentials::load(&cluster.credentials.join("node-1")).unwrap()).unwrap();
    let mut frames = forged_frames(id, NodeId(2), 1);
    frames.extend(forged_frames(ClusterId(id.0 ^ 1), NodeId(1), 2));
    tls_send(cluster.peer_addrs[0], member.connect(NodeId(0)), &frames).expect("a member's handshake succeeds");
    wait_for(&cluster, 0, |s| &s.peer_frames_refused, 4);
    nothing_applied_and_still_served(&cluster, ClientTransport::Tcp);
}

/// Records every byte written through it.
struct Recorded<'a> {
    stream: &'a mut TcpStream,
    sent: &'a mut Vec<u8>,
}

impl std::io::Read for Recorded<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.stream.read(buffer)
    }
}

impl std::io::Write for Recorded<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.stream.write(bytes)?;
        self.sent.extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// The bytes of a member's whole TLS link, recorded and replayed on a new connection to the
/// peer port, are refused: the handshake is bound to the node's fresh random, so nothing in
/// them is ever read as a frame.
#[test]
fn a_replayed_peer_link_is_refused() {
    let cluster = TestCluster::start(3, Transport::Tcp);
    let id = cluster_id(&cluster);
    let member = PeerTls::new(&NodeCredentials::load(&cluster.credentials.join("node-1")).unwrap()).unwrap();
    let query =
        Message::Query { epoch: Epoch::FIRST, txn: TxnId { coordinator: NodeId(0), incarnation: 1, number: 1 } };
    let frame = frame::encode_to_vec(&Frame::Peer { cluster: id, from: NodeId(1), message: query });
    let mut sent = Vec::new();
    {
        let mut stream = TcpStream::connect(cluster.peer_addrs[0]).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut recorded = Recorded { stream: &mut stream, sent: &mut sent };
        let mut session = member.connect(NodeId(0));
        while session.is_handshaking() {
            session.complete_io(&mut recorded).unwrap();
        }
        session.writer().write_all(&frame).unwrap();
        while session.wants_write() {
            session.write_tls(&mut recorded).unwrap();
        }
    }
    let stats = cluster.handle(0).stats();
    let refused_before = ServerStats::get(&stats.peer_connections_refused);
    let mut replay = TcpStream::connect(cluster.peer_addrs[0]).unwrap();
    replay.write_all(&sent).unwrap();
    wait_for(&cluster, 0, |s| &s.peer_connections_refused, refused_before + 1);
    assert_eq!(ServerStats::get(&stats.peer_frames_refused), 0);
    nothing_applied_and_still_served(&cluster, ClientTransport::Tcp);
}

/// In UDP mode, peer datagrams that are not sealed, are sealed with a wrong key, for another
/// cluster, by a member speaking for another (member 2's keys claiming to be member 1), or are
/// a member's own datagrams from a session older than the one its peer knows, are all refused.
#[test]
fn forged_foreign_impostor_and_replayed_peer_datagrams_are_refused() {
    let cluster = TestCluster::start(3, Transport::Udp);
    // A write first, so node 0 knows node 1's current session.
    assert!(matches!(cluster.client(1, ClientTransport::Udp).put("before", "1").unwrap(), Outcome::Committed(_)));
    let load = |n: u8| NodeCredentials::load(&cluster.credentials.join(format!("node-{n}"))).unwrap();
    let (one, two) = (load(1), load(2));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = cluster.peer_addrs[0];
    let now_ms = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let as_node_1 = |keys: &BTreeMap<NodeId, [u8; 32]>, cluster_id: ClusterId, session: u64| {
        PeerDatagrams::new(keys, cluster_id, NodeId(1), session)
    };
    let wrong_keys: BTreeMap<NodeId, [u8; 32]> = [(NodeId(0), [9; 32])].into();
    let mut sealers = [
        as_node_1(&wrong_keys, one.cluster, u64::MAX / 2),
        as_node_1(&one.peer_keys, ClusterId(one.cluster.0 ^ 1), u64::MAX / 2),
        as_node_1(&two.peer_keys, one.cluster, u64::MAX / 2),
        // Node 1's own keys, but a session older than the one node 0 has seen: a replay.
        as_node_1(&one.peer_keys, one.cluster, 7),
    ];
    let mut sent = 0;
    for bytes in forged_frames(one.cluster, NodeId(1), 1) {
        udp.send_to(&bytes, target).unwrap();
        sent += 1;
        for sealer in &mut sealers {
            let mut datagram = Vec::new();
            assert!(sealer.seal(now_ms(), NodeId(0), &bytes, &mut datagram));
            udp.send_to(&datagram, target).unwrap();
            sent += 1;
        }
    }
    wait_for(&cluster, 0, |s| &s.peer_frames_refused, sent);
    nothing_applied_and_still_served(&cluster, ClientTransport::Udp);
}

/// Opens a TLS connection to `addr` with `session`, sends `frames` and closes; `Err` if the
/// handshake fails.
fn tls_send(addr: SocketAddr, mut session: rustls::Connection, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    while session.is_handshaking() {
        session.complete_io(&mut stream)?;
    }
    for bytes in frames {
        session.writer().write_all(bytes)?;
    }
    while session.wants_write() {
        session.write_tls(&mut stream)?;
    }
    session.send_close_notify();
    let _ = session.complete_io(&mut stream);
    Ok(())
}

/// Sends `datagram` and waits (bounded) for one answer.
fn ask(udp: &UdpSocket, datagram: &[u8]) -> Vec<u8> {
    udp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = vec![0u8; 65_536];
    loop {
        assert!(Instant::now() < deadline, "no answer to a datagram");
        udp.send(datagram).unwrap();
        if let Ok(n) = udp.recv(&mut buffer) {
            return buffer[..n].to_vec();
        }
    }
}

/// A node never answers an unauthenticated datagram with more than 3 times its bytes: a
/// 30-byte get of a 40 KB value gets a short error saying to pad or use TCP, a one-byte junk
/// datagram gets nothing rather than a longer error; and the client library pads its request by
/// itself, so a UDP get of that value still works.
#[test]
fn no_udp_answer_exceeds_three_times_its_request() {
    let cluster = TestCluster::start(1, Transport::Both);
    let value = vec![7u8; 40_000];
    assert!(matches!(
        cluster.client(0, ClientTransport::Tcp).put("big", value.clone()).unwrap(),
        Outcome::Committed(_)
    ));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(cluster.addrs[0]).unwrap();

    let id = RequestId { client: ClientId(77), seq: 1 };
    let get = dkv_core::Request { id, operation: dkv_core::Operation::Get { key: b"big".to_vec() } };
    let request = frame::encode_to_vec(&Frame::Request(get));
    let answer = ask(&udp, &request);
    assert!(answer.len() <= 3 * request.len(), "{} bytes answered {}", answer.len(), request.len());
    match frame::decode_datagram(&answer, u32::MAX).unwrap() {
        Frame::Error(error @ frame::FrameError::ReplyTooLarge { .. }) => {
            assert!(error.to_string().contains("padded"), "{error}")
        }
        other => panic!("expected a reply-too-large error, got {other:?}"),
    }
    // Padded to a third of the reply, the same request gets its value.
    let mut padded = request.clone();
    padded.resize(value.len().div_ceil(3) + 64, 0);
    match frame::decode_datagram(&ask(&udp, &padded), u32::MAX).unwrap() {
        Frame::Reply(reply) => assert_eq!(reply.outcome.found(), Some(&value.clone())),
        other => panic!("expected the value, got {other:?}"),
    }

    udp.send(&[0xff]).unwrap();
    wait_for(&cluster, 0, |s| &s.udp_replies_withheld, 1);

    assert_eq!(cluster.client(0, ClientTransport::Udp).get("big").unwrap().found(), Some(&value));
}
