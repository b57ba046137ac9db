//! Helpers for tests of dkv-net and of the programs built on it (not for production use).

use std::net::{TcpListener, UdpSocket};

/// Tries per port before giving up: a port free for TCP is nearly always free for UDP too.
const ATTEMPTS_PER_PORT_MAX: usize = 100;

/// `count` loopback ports free for both TCP and UDP right now. The sockets are held until all
/// are found so no port is returned twice.
///
/// Panics if loopback sockets cannot be bound: a test cannot run without them.
pub fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    for _ in 0..count * ATTEMPTS_PER_PORT_MAX {
        if held.len() == count {
            break;
        }
        let tcp = TcpListener::bind("127.0.0.1:0").expect("a test needs a free loopback TCP port");
        let port = tcp.local_addr().expect("a bound socket has an address").port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            held.push((tcp, udp, port));
        }
    }
    assert_eq!(held.len(), count, "found only {} loopback ports free for both TCP and UDP", held.len());
    held.into_iter().map(|(_, _, port)| port).collect()
}
