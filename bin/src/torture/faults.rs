//! The faults of a torture run, one at a time, drawn from a seeded rng: which fault, on which
//! node, after how long a calm and for how long. The same seed draws the same schedule (the
//! cluster's answers still vary with real timing). Each fault ends with a heal: killed nodes
//! restart, paused ones resume, cut links are restored, and every node answers again before the
//! next calm begins.

use super::cluster::{Cluster, ClusterError};
use super::network::{self, Cut, NetworkError};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// kill -9 of one node, then a restart.
    Kill,
    /// kill -9 of every node at once, then a restart of all.
    KillAll,
    /// SIGSTOP of one node, then SIGCONT: it resumes with stale timers.
    Pause,
    /// One node cut off from every other node (clients still reach it), then healed.
    Partition,
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        match s {
            "kill" => Ok(Fault::Kill),
            "kill-all" => Ok(Fault::KillAll),
            "pause" => Ok(Fault::Pause),
            "partition" => Ok(Fault::Partition),
            _ => Err(format!("'{s}' is not a fault; use kill, kill-all, pause or partition")),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Kill => "kill",
            Fault::KillAll => "kill-all",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
        })
    }
}

#[derive(Debug, Error)]
pub enum FaultError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    pub kill: u64,
    pub kill_all: u64,
    pub pause: u64,
    pub partition: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.kill + self.kill_all + self.pause + self.partition
    }
}

/// Calm between faults, and how long a fault lasts, in milliseconds.
const CALM_MS: (u64, u64) = (300, 1500);
const HOLD_MS: (u64, u64) = (200, 2000);

/// One fault as drawn.
struct Drawn {
    calm: Duration,
    fault: Fault,
    node: usize,
    hold: Duration,
}

fn draw(rng: &mut ChaCha8Rng, faults: &[Fault], nodes: usize) -> Drawn {
    let between = |rng: &mut ChaCha8Rng, (lo, hi): (u64, u64)| Duration::from_millis(lo + rng.next_u64() % (hi - lo));
    let calm = between(rng, CALM_MS);
    let fault = faults[(rng.next_u64() % faults.len() as u64) as usize];
    let node = (rng.next_u64() % nodes as u64) as usize;
    let hold = between(rng, HOLD_MS);
    Drawn { calm, fault, node, hold }
}

/// Injects faults from `faults` until `until`, then leaves the cluster healed. `say` gets one
/// line per fault, with the writes that committed while it lasted (from `commits`, which the
/// clients count): a partition, a pause or a kill stops every write, since writes need every
/// node, so a fault that did not bite shows. No fault is drawn from an empty list: the run is
/// then calm throughout.
pub fn run(
    cluster: &mut Cluster,
    faults: &[Fault],
    rng: &mut ChaCha8Rng,
    until: Instant,
    started: Instant,
    commits: &AtomicU64,
    say: &mut dyn FnMut(String),
) -> Result<FaultCounts, FaultError> {
    let mut counts = FaultCounts::default();
    let nodes = cluster.nodes();
    if faults.is_empty() {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
    while !faults.is_empty() {
        let drawn = draw(rng, faults, nodes);
        if Instant::now() + drawn.calm + drawn.hold > until {
            break;
        }
        std::thread::sleep(drawn.calm);
        for i in 0..nodes {
            cluster.check_running(i)?;
        }
        let at = started.elapsed().as_secs_f64();
        let (node, hold) = (drawn.node, drawn.hold);
        let target = if drawn.fault == Fault::KillAll { "every node".to_string() } else { format!("n{node}") };
        let commits_before = commits.load(Ordering::Relaxed);
        let mut committed_during = 0;
        let mut hold_for = |hold: Duration| {
            std::thread::sleep(hold);
            committed_during = commits.load(Ordering::Relaxed) - commits_before;
        };
        match drawn.fault {
            Fault::Kill => {
                cluster.kill(node)?;
                hold_for(hold);
                cluster.restart(node)?;
                counts.kill += 1;
            }
            Fault::KillAll => {
                for i in 0..nodes {
                    cluster.kill(i)?;
                }
                hold_for(hold);
                cluster.restart_all()?;
                counts.kill_all += 1;
            }
            Fault::Pause => {
                cluster.pause(node)?;
                hold_for(hold);
                cluster.resume(node)?;
                counts.pause += 1;
            }
            Fault::Partition => {
                let cuts = isolation(node, nodes);
                for &cut in &cuts {
                    network::add_cut(cut)?;
                }
                hold_for(hold);
                for &cut in &cuts {
                    network::remove_cut(cut)?;
                }
                counts.partition += 1;
            }
        }
        for i in 0..nodes {
            cluster.wait_ready(i)?;
        }
        say(format!(
            "  {at:7.2}s {} {target} for {:.2}s: {committed_during} writes committed meanwhile",
            drawn.fault,
            hold.as_secs_f64()
        ));
    }
    Ok(counts)
}

/// The cuts that isolate `node` from every other node, both ways.
fn isolation(node: usize, nodes: usize) -> Vec<Cut> {
    (0..nodes).filter(|&j| j != node).flat_map(|j| [Cut { from: node, to: j }, Cut { from: j, to: node }]).collect()
}
