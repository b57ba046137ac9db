//! A UDP relay on loopback that loses, duplicates, reorders and replays datagrams, as a bad
//! network would, for tests that put it between a node and its clients or peers.
//!
//! Datagrams to the relay's address go on to its target, each from a socket of the relay's own
//! per sender, so that answers to that socket come back to the sender (as through a NAT). The
//! faults are drawn per datagram from a seeded generator; thread scheduling still varies, so a
//! seed names a fault mix rather than replaying a run. Every buffer is bounded: senders (at
//! most [`SENDERS_MAX`]), datagrams kept for replay ([`REPLAY_WINDOW`]) and held back (one per
//! direction).

use dkv_net::testing::SplitMix64;
use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Senders the relay keeps a socket for; datagrams from more are dropped.
pub const SENDERS_MAX: usize = 16;
/// How many recent datagrams per direction a replay picks from.
pub const REPLAY_WINDOW: usize = 32;
/// How long a direction waits for a datagram before it releases one it held back and checks
/// whether to stop.
const IDLE: Duration = Duration::from_millis(10);
const DATAGRAM_BYTES_MAX: usize = 65_536;

/// The chance of each fault, per datagram.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Lost.
    pub drop: f64,
    /// Sent twice in a row.
    pub duplicate: f64,
    /// Held back and sent after the next datagram (or when the direction falls idle).
    pub reorder: f64,
    /// Followed by a copy of one of the last [`REPLAY_WINDOW`] datagrams: a late duplicate.
    pub replay: f64,
}

/// What the relay did, over all its directions.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    pub replayed: AtomicU64,
}

impl FaultCounts {
    /// Each counter, by name.
    pub fn by_name(&self) -> [(&'static str, u64); 5] {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        [
            ("forwarded", get(&self.forwarded)),
            ("dropped", get(&self.dropped)),
            ("duplicated", get(&self.duplicated)),
            ("reordered", get(&self.reordered)),
            ("replayed", get(&self.replayed)),
        ]
    }
}

pub struct LossyRelay {
    /// Where senders send to reach the target.
    pub addr: SocketAddr,
    pub counts: Arc<FaultCounts>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Where a datagram goes: the socket to send it from and the address to send it to.
type Route = (Arc<UdpSocket>, SocketAddr);

/// One direction of the relay: datagrams read from one socket, sent on with faults.
struct Direction {
    faults: Faults,
    rng: SplitMix64,
    counts: Arc<FaultCounts>,
    held: Option<(Vec<u8>, Route)>,
    recent: VecDeque<(Vec<u8>, Route)>,
}

impl Direction {
    fn send(datagram: &[u8], (socket, to): &Route) {
        // Loopback rarely refuses a datagram; if it does, that is one more loss.
        let _ = socket.send_to(datagram, to);
    }

    fn relay(&mut self, datagram: Vec<u8>, route: Route) {
        let counts = self.counts.clone();
        if self.rng.chance(self.faults.drop) {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.recent.len() == REPLAY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((datagram.clone(), route.clone()));
        if self.held.is_none() && self.rng.chance(self.faults.reorder) {
            counts.reordered.fetch_add(1, Ordering::Relaxed);
            self.held = Some((datagram, route));
            return;
        }
        Direction::send(&datagram, &route);
        counts.forwarded.fetch_add(1, Ordering::Relaxed);
        if let Some((held, held_route)) = self.held.take() {
            Direction::send(&held, &held_route);
        }
        if self.rng.chance(self.faults.duplicate) {
            counts.duplicated.fetch_add(1, Ordering::Relaxed);
            Direction::send(&datagram, &route);
        }
        if self.rng.chance(self.faults.replay) {
            counts.replayed.fetch_add(1, Ordering::Relaxed);
            let (old, old_route) = &self.recent[self.rng.next_u64() as usize % self.recent.len()];
            Direction::send(old, old_route);
        }
    }

    fn idle(&mut self) {
        if let Some((held, route)) = self.held.take() {
            Direction::send(&held, &route);
        }
    }

    /// Relays what `socket` receives, sent where `route` says, until `stop`.
    fn run(mut self, socket: &UdpSocket, stop: &AtomicBool, mut route: impl FnMut(SocketAddr) -> Option<Route>) {
        let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
        while !stop.load(Ordering::SeqCst) {
            match socket.recv_from(&mut buffer) {
                Ok((len, from)) => {
                    if let Some(to) = route(from) {
                        self.relay(buffer[..len].to_vec(), to);
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => self.idle(),
                // An ICMP error from an earlier send (the target not listening yet): go on.
                Err(_) => {}
            }
        }
    }
}

fn bind_loopback() -> Arc<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP socket");
    socket.set_read_timeout(Some(IDLE)).unwrap();
    Arc::new(socket)
}

impl LossyRelay {
    /// A relay to `target`, drawing its faults from `seed`.
    pub fn start(target: SocketAddr, seed: u64, faults: Faults) -> LossyRelay {
        let front = bind_loopback();
        let addr = front.local_addr().unwrap();
        let counts = Arc::new(FaultCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let direction_counts = counts.clone();
        let direction = move |stream: u64| Direction {
            faults,
            rng: SplitMix64(seed.wrapping_mul(0x1000_0000_01b3) ^ stream),
            counts: direction_counts.clone(),
            held: None,
            recent: VecDeque::new(),
        };
        let forward = direction(0);
        let (relay_stop, relay_threads) = (stop.clone(), threads.clone());
        let mut backward = (1..).map(direction);
        let forwarding = std::thread::spawn(move || {
            // Each sender's own socket toward the target, and the thread relaying its answers.
            let mut senders: BTreeMap<SocketAddr, Arc<UdpSocket>> = BTreeMap::new();
            let route = |from: SocketAddr| {
                if let Some(socket) = senders.get(&from) {
                    return Some((socket.clone(), target));
                }
                if senders.len() >= SENDERS_MAX {
                    return None;
                }
                let upstream = bind_loopback();
                senders.insert(from, upstream.clone());
                let (answers, front, stop) = (upstream.clone(), front.clone(), relay_stop.clone());
                let direction = backward.next().expect("endless");
                let thread = std::thread::spawn(move || {
                    direction.run(&answers, &stop, |_| Some((front.clone(), from)));
                });
                relay_threads.lock().unwrap().push(thread);
                Some((upstream, target))
            };
            forward.run(&front.clone(), &relay_stop, route);
        });
        threads.lock().unwrap().push(forwarding);
        LossyRelay { addr, counts, stop, threads }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The forwarding thread may add an answering thread until it stops: join it first.
        loop {
            let Some(thread) = self.threads.lock().unwrap().pop() else { break };
            let _ = thread.join();
        }
    }
}
