//! Helpers for tests of dkv-net and of the programs built on it (not for production use).

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::ops::Range;
use std::sync::Mutex;

/// Tries per port before giving up.
const ATTEMPTS_PER_PORT_MAX: usize = 200;
/// Where test ports come from: below Linux's default ephemeral range (32768 and up), so that
/// no outgoing connection can be given one of them between the check here and a server's bind.
const TEST_PORTS: Range<u16> = 20_000..32_000;
/// Ports already handed out in this process, never handed out again, so tests running in
/// parallel do not get the same ones.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `count` loopback ports free for both TCP and UDP right now, never returned before in this
/// process. The sockets are held until all are found.
///
/// Panics if no such ports are found: a test cannot run without them.
pub fn free_ports(count: usize) -> Vec<u16> {
    let ports = try_free_ports(count);
    assert_eq!(ports.len(), count, "found only {} loopback ports free for both TCP and UDP", ports.len());
    ports
}

/// As [`free_ports`], but returns the ports it found, fewer than `count` if it could not find
/// them all (for programs that report the failure rather than panic: `dkv-bench --local`).
pub fn try_free_ports(count: usize) -> Vec<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut held = Vec::new();
    for _ in 0..count * ATTEMPTS_PER_PORT_MAX {
        if held.len() == count {
            break;
        }
        let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
        let Ok(random) = getrandom::u32() else { break };
        let port = TEST_PORTS.start + (random % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        let (Ok(tcp), Ok(udp)) = (TcpListener::bind(("127.0.0.1", port)), UdpSocket::bind(("127.0.0.1", port))) else {
            continue;
        };
        handed_out.insert(port);
        held.push((tcp, udp, port));
    }
    held.into_iter().map(|(_, _, port)| port).collect()
}

/// splitmix64: a tiny seeded generator for tools and tests that need spread, not cryptography
/// (key choice in dkv-bench, fault draws in test relays), with no allocation or syscall per draw.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.fraction() < p
    }

    /// A number in [0, 1).
    pub fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
