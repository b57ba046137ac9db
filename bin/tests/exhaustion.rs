//! A real dkv-server process under a flood of half-sent huge frames: its resident memory stays
//! within a bound set by its byte budget (before the budget existed, 300 such connections took
//! a node from 4 MB to 2.4 GiB), and a real client is served afterwards.

mod common;

use common::SERVER;
use dkv_core::Outcome;
use dkv_core::codec::frame;
use dkv_net::testing::free_ports;
use dkv_net::{Client, ClientConfig, ClientTransport};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUDGET_MIB: u64 = 64;
/// What a server's resident memory holds besides the buffers the budget counts: code, the
/// store, and the allocator's slack, which keeps some memory of dropped connections' buffers
/// for reuse instead of returning it at once (up to about the budget again: 77-127 MiB were
/// seen with this budget, by `cargo test -p dkv --test exhaustion -- --nocapture`).
const OVERHEAD_MIB: u64 = BUDGET_MIB + 48;

/// Kills the server however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn resident_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

#[test]
fn half_sent_huge_frames_keep_a_real_server_within_its_byte_budget() {
    let port = free_ports(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let server = Command::new(SERVER)
        .args(["-t", "-s", "127.0.0.1", "-p", &port.to_string(), "-l", "error"])
        .args(["--buffer-budget-mib", &BUDGET_MIB.to_string(), "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Killed(server);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = ClientConfig::new(vec![addr], ClientTransport::Tcp);
    config.request_timeout = Duration::from_secs(30);
    let mut client = Client::new(config).unwrap();
    let ready_by = Instant::now() + Duration::from_secs(30);
    while !matches!(client.get("ready"), Ok(Outcome::NotFound)) {
        assert!(Instant::now() < ready_by, "the server did not answer within 30 s");
        assert!(server.0.try_wait().unwrap().is_none(), "the server exited during start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut header = b"dkv".to_vec();
    header.push(frame::VERSION);
    header.extend_from_slice(&(16u32 << 20).to_le_bytes());
    let mut attackers: Vec<Option<TcpStream>> = (0..300)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(&header).unwrap();
            stream.set_nonblocking(true).unwrap();
            Some(stream)
        })
        .collect();
    let chunk = vec![0x41u8; 64 << 10];
    let (mut sent, mut peak) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(30);
    for round in 0u64.. {
        if attackers.iter().all(Option::is_none) || Instant::now() >= deadline {
            break;
        }
        for slot in attackers.iter_mut() {
            let Some(stream) = slot else { continue };
            match stream.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *slot = None,
            }
        }
        if round % 16 == 0 {
            peak = peak.max(resident_mib(server.0.id()));
        }
    }
    peak = peak.max(resident_mib(server.0.id()));
    assert!(server.0.try_wait().unwrap().is_none(), "the server died under the attack");
    eprintln!("attack sent {} MiB; server's resident memory peaked at {peak} MiB", sent >> 20);
    assert!(sent > 4 * (BUDGET_MIB << 20), "the attack sent only {sent} bytes");
    assert!(
        peak <= BUDGET_MIB + OVERHEAD_MIB,
        "resident memory reached {peak} MiB; budget {BUDGET_MIB} MiB plus {OVERHEAD_MIB} MiB of overhead"
    );
    assert!(matches!(client.put("still", "served").unwrap(), Outcome::Committed(_)));
}
