//! Client authentication: a node that requires users serves nobody else, over TCP or UDP; a
//! user is held to its role and key prefix; tokens travel only inside TLS; a signed datagram is
//! taken once; and a node refuses to serve unauthenticated clients beyond loopback unless told.

mod common;

use common::TestCluster;
use dkv_core::codec::frame::{self, Frame, FrameError};
use dkv_core::{ClientId, Operation, Outcome, RejectReason, Request, RequestId};
use dkv_net::security::credentials::NewUser;
use dkv_net::security::users::{Role, load_client_user, sign};
use dkv_net::{ClientConfig, ClientError, ClientTransport, Server, ServerError, ServerStats, Transport};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn users() -> Vec<NewUser> {
    let user = |name: &str, role, prefix: &str| NewUser { name: name.into(), role, prefix: prefix.into() };
    vec![user("admin", Role::Admin, ""), user("viewer", Role::Read, ""), user("app", Role::ReadWrite, "app/")]
}

fn denied(result: Result<Outcome, ClientError>) -> String {
    match result {
        Ok(Outcome::Rejected(RejectReason::PermissionDenied(reason))) => reason,
        other => panic!("expected permission denied, got {other:?}"),
    }
}

/// Without a user, nothing is served, over TCP or UDP; with one, over TLS or signed datagrams,
/// everything its role allows is.
#[test]
fn only_users_are_served_over_tcp_and_udp() {
    let cluster = TestCluster::start_with_users(3, Transport::Both, &users());
    for transport in [ClientTransport::Tcp, ClientTransport::Udp] {
        let mut anonymous = cluster.client(0, transport);
        assert!(denied(anonymous.put("k", "v")).contains("authenticated clients only"));
        assert!(denied(anonymous.get("k")).contains("authenticated clients only"));
        let mut admin = cluster.user_client(1, transport, "admin");
        assert!(matches!(admin.put("k", "v").unwrap(), Outcome::Committed(_)));
        assert_eq!(admin.get("k").unwrap().found(), Some(&b"v".to_vec()));
    }
    assert!(ServerStats::get(&cluster.handle(0).stats().permission_denied) >= 4);
}

/// A read-only user cannot write; a user confined to a prefix cannot touch other keys, not even
/// in one op of a transaction.
#[test]
fn roles_and_prefixes_hold() {
    let cluster = TestCluster::start_with_users(3, Transport::Both, &users());
    let mut admin = cluster.user_client(0, ClientTransport::Tcp, "admin");
    assert!(matches!(admin.put("shared", "1").unwrap(), Outcome::Committed(_)));
    let mut viewer = cluster.user_client(1, ClientTransport::Tcp, "viewer");
    assert_eq!(viewer.get("shared").unwrap().found(), Some(&b"1".to_vec()));
    assert!(denied(viewer.put("shared", "2")).contains("may only read"));
    let mut app = cluster.user_client(2, ClientTransport::Udp, "app");
    assert!(matches!(app.put("app/x", "1").unwrap(), Outcome::Committed(_)));
    assert!(denied(app.get("shared")).contains("app/"));
    let txn = vec![
        dkv_core::TxnOp::Put { key: b"app/y".to_vec(), value: b"1".to_vec() },
        dkv_core::TxnOp::Put { key: b"shared".to_vec(), value: b"3".to_vec() },
    ];
    assert!(denied(app.txn(txn)).contains("shared"));
    assert_eq!(admin.get("shared").unwrap().found(), Some(&b"1".to_vec()), "nothing of the denied txn applied");
    assert_eq!(admin.get("app/y").unwrap(), Outcome::NotFound);
}

/// A client certificate from the cluster's CA proves its user in the TLS handshake, with no
/// token; the user is held to its role all the same.
#[test]
fn client_certificates_prove_users() {
    let cluster = TestCluster::start_with_users(2, Transport::Tcp, &users());
    let mut admin = cluster.certificate_client(0, "admin");
    assert!(matches!(admin.put("k", "v").unwrap(), Outcome::Committed(_)));
    let mut viewer = cluster.certificate_client(1, "viewer");
    assert_eq!(viewer.get("k").unwrap().found(), Some(&b"v".to_vec()));
    assert!(denied(viewer.put("k", "w")).contains("may only read"));
}

/// A client that trusts another cluster's CA is told at once that TLS failed, and why, instead
/// of waiting out its timeout as if the node were silent.
#[test]
fn tls_with_the_wrong_cluster_fails_at_once_and_says_so() {
    let cluster = TestCluster::start(1, Transport::Tcp);
    let other = tempfile::tempdir().unwrap();
    dkv_net::security::credentials::init_cluster(&other.path().join("c"), &[dkv_core::NodeId(0)]).unwrap();
    let mut config = ClientConfig::new(vec![cluster.addrs[0]], ClientTransport::Tcp);
    config.request_timeout = Duration::from_secs(20);
    let trust = dkv_net::security::credentials::ClientTrust::load(&other.path().join("c/client")).unwrap();
    config.tls = Some(std::sync::Arc::new(trust));
    // A timeout would be ClientError::Timeout, after 20 s: the TLS error comes from the handshake.
    match dkv_net::Client::new(config).unwrap().get("k") {
        Err(error @ ClientError::Tls { .. }) => assert!(error.to_string().contains("client folder"), "{error}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

/// A wrong token is refused; a token in the clear is refused by the client library before it
/// leaves, and by the node if it arrives anyway; a signed datagram replayed is refused.
#[test]
fn wrong_cleartext_and_replayed_credentials_are_refused() {
    let cluster = TestCluster::start_with_users(1, Transport::Both, &users());
    let client_dir = cluster.credentials.join("client");
    let mut admin = load_client_user(&client_dir.join("admin.user")).unwrap();

    // The client library will not send a token over plain TCP.
    let mut plain = ClientConfig::new(vec![cluster.addrs[0]], ClientTransport::Tcp);
    plain.user = Some(std::sync::Arc::new(load_client_user(&client_dir.join("admin.user")).unwrap()));
    assert!(matches!(dkv_net::Client::new(plain), Err(ClientError::TokenWithoutTls)));

    // A node refuses one that arrives in the clear, and says why.
    let mut stream = TcpStream::connect(cluster.addrs[0]).unwrap();
    let auth = Frame::Auth { user: "admin".into(), token: admin.token.to_vec() };
    stream.write_all(&frame::encode_to_vec(&auth)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = vec![0u8; 4096];
    let n = stream.read(&mut reply).unwrap();
    assert!(matches!(
        frame::decode_stream(&reply[..n], u32::MAX),
        Ok(Some((Frame::Error(FrameError::Unauthorized { .. }), _)))
    ));

    // A wrong token, inside TLS.
    admin.token[0] ^= 1;
    let written = client_dir.join("wrong.user");
    std::fs::write(&written, dkv_net::security::users::client_user_text("admin", &admin.token)).unwrap();
    std::fs::set_permissions(&written, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut wrong = cluster.user_client(0, ClientTransport::Tcp, "wrong");
    match wrong.get("k") {
        Err(ClientError::Refused { error: FrameError::Unauthorized { .. }, .. }) => {}
        other => panic!("expected the token to be refused, got {other:?}"),
    }
    admin.token[0] ^= 1;

    // A signed datagram taken once, then refused as a replay.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(cluster.addrs[0]).unwrap();
    let request =
        Request { id: RequestId { client: ClientId(5), seq: 1 }, operation: Operation::Get { key: b"k".to_vec() } };
    let sent_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let mac = sign(&admin.token, "admin", sent_at_ms, &request);
    let datagram = frame::encode_to_vec(&Frame::SignedRequest { user: "admin".into(), sent_at_ms, request, mac });
    let answers: Vec<Outcome> = (0..2).map(|_| reply_outcome(&udp, &datagram)).collect();
    assert_eq!(answers[0], Outcome::NotFound);
    assert!(matches!(&answers[1], Outcome::Rejected(RejectReason::PermissionDenied(r)) if r.contains("replay")));
}

fn reply_outcome(udp: &UdpSocket, datagram: &[u8]) -> Outcome {
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send(datagram).unwrap();
    let mut buffer = vec![0u8; 65_536];
    let n = udp.recv(&mut buffer).unwrap();
    match frame::decode_datagram(&buffer[..n], u32::MAX).unwrap() {
        Frame::Reply(reply) => reply.outcome,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Protected mode: a node that would serve unauthenticated clients on a non-loopback address
/// refuses to start (before it binds anything) unless told it is insecure on purpose.
#[test]
fn unauthenticated_service_beyond_loopback_is_refused() {
    let cluster = TestCluster::start(1, Transport::Tcp);
    let mut config = cluster.config(0);
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    match Server::bind(config) {
        Err(error @ ServerError::Unprotected { .. }) => assert!(error.to_string().contains("--insecure")),
        Err(other) => panic!("expected a refusal to serve unprotected, got {other}"),
        Ok(_) => panic!("a node served unauthenticated clients on all interfaces"),
    }
}
