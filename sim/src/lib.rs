//! # dkv-sim: the deterministic simulator
//!
//! Runs real [`dkv_core::Node`]s on virtual time, in one thread, with one seeded rng: lost,
//! duplicated and reordered messages, partitions that come and go (symmetric, one-way, or of a single link),
//! crashes at any moment (unsynced records lost, some surviving unreported, the last one
//! sometimes torn or with a flipped bit, garbage after it), crashes of every node at once and
//! crashes timed just after a send or just before an fsync completes, nodes frozen for seconds
//! and then resumed, bit flips in synced records that recovery must refuse (the operator then
//! restores the log), restarts that recover through the real WAL codec, clocks that run at
//! different rates, and bounds small enough that nodes refuse work and evict completion
//! records. Each seed draws its own cluster size, workload and fault mix (swarm testing). Simulated clients record a history. During the run a checker watches every node's
//! disk for a request applied twice (exactly-once); after it, checkers verify linearizability
//! (per key), strict serializability of transactions (across keys), durability, convergence
//! and liveness.
//!
//! ## The faults, and what each models
//!
//! Drawn per seed ([`Params`], [`Faults`]); each has a `dkv-sim` flag or a setup word.
//!
//! - **Loss, duplication, delay** (`loss`, `duplication`, `delay_*`): an unreliable network
//!   (dkv's peers speak over UDP-like links); a wide delay range reorders.
//! - **Partitions** (`partition_every`): a switch or route failing for 10 ms to 2 s, splitting
//!   the nodes in two, both ways or one way (a node that can send but not hear, or the reverse).
//!   A quarter of them, in clusters of three nodes or more, cut a single link instead
//!   (`link_cut`): two nodes cannot talk (both ways, or one way) while every other link works,
//!   so each still hears the rest, and may hold its read lease through a third node while it
//!   cannot reach the other.
//! - **Crashes** (`crash_every`): `kill -9` or a power cut: records not yet synced are lost,
//!   some survive unreported, the one being written may be torn (`torn_write`), have a bit
//!   flipped (`unsynced_flip`) or be followed by garbage (`garbage_tail`); restart within 2 s.
//! - **Media damage** (`synced_flip`): a bit flipped in a synced record with records after it;
//!   recovery must refuse the log, and the operator restores it from backup.
//! - **Whole-cluster crashes** (`cluster_crash_every`): a power cut of the rack.
//! - **Crashes next to I/O** (`crash_near_io`): the crash lands just after a send or just before
//!   an fsync completes, where persist-before-send bugs hide.
//! - **Pauses** (`pause_every`, `pause_max`): a process stopped (SIGSTOP, a VM migration, a long
//!   GC) and resumed; what it was sent waits, its timers fire late.
//! - **Clock rates** (`clock_skew_ppm`): quartz that runs fast or slow.
//! - **Tight bounds** (`tight_bounds`): small tables, so that nodes refuse work and forget
//!   completion records, as a loaded node does.
//!
//! With [`Params::minority_faults`] (the protocol is expected to tolerate a minority of members
//! down, issue 12; off by default while dkv runs classic two-phase commit), the swarm also draws
//! the lasting faults, never more than f = ⌊(N−1)/2⌋ members lost at once (a member back from
//! an absence without its state counts as lost until it has caught up):
//!
//! - **Permanent crashes** (`permanent_crashes`): a machine that dies and is never replaced
//!   within the run; it stays down after the heal.
//! - **Long absences** (`absence_every`): a machine down for 5–20 s, far longer than failure
//!   detection, then back — with its log intact (a reboot), with its data dir lost
//!   (`absence_data_lost`: a disk replaced, a directory deleted: it restarts empty, and with
//!   `absence_init_restart` the operator's `--init` is still on its command line, so it
//!   bootstraps, docs/protocol.md §7.1), or with its
//!   last synced record damaged (`absence_tail_damaged`: a bit flipped in an acknowledged record
//!   at the end of the log, which recovery cut as possible damage, leaving `Unvouched` durable
//!   in its place). Half of the members back with a damaged tail crash again in their start,
//!   before anything it logged is durable (`start_crash`): the next start must still not vouch
//!   for the log (checker `recovery`, which follows every node that lost a synced record until
//!   it has caught up).
//! - **Lasting partitions** (`lasting_partition_every`): a minority cut off for 5–20 s, both
//!   ways or one way, while the majority must keep working. A quarter of them, in clusters of
//!   three nodes or more, cut a single link between two members instead (`lasting_link_cut`),
//!   for as long: the cluster drops one end, a third node that still hears it adds it back, and
//!   only the backoff of a flapping node keeps this from thrashing (checker `thrash`: no node
//!   removed more than six times within 20 s between two starts of the other nodes).
//! - **A node cut off one way just after its add** (`added_cut`: 0.3 of the changes that add
//!   a node, wherever partitions may come; the lowest-numbered node added): it can send, so it
//!   keeps asking to join, but it hears nothing, for 5–20 s; it counts as lost until it has
//!   caught up again, or is a member with its state when the cut ends.
//! - **Clock offsets and drift** (`clock_offset_max`, `clock_skew_ppm` within
//!   [`params::DRIFT_BOUND_PPM`]): clocks that start seconds apart and run at rates within the
//!   1 % drift bound that read leases rely on (docs/protocol.md §7.5).
//!
//! Such runs judge liveness during the faults too (checker `liveness-during-faults`): while a
//! majority of the members is up and connected, a request sent to one of them completes within
//! [`FAULT_LIVENESS_BOUND`] (about 9 s), and the reply timeouts a client spent on more than one
//! node down on its way; clients fail over to the next node when one does not serve them.
//!
//! In a third of the runs without leases (configuration changes off), the swarm also draws
//! **the switch to configuration changes** (`switch_to_changes`, [`params::ModeSwitch`]): the
//! operator stops taking requests, stops every node as a power loss does, and runs `dkv-server
//! availability on`, which refuses while a node's log holds a share voted pinned and in doubt
//! (docs/protocol.md §6); refused, every node restarts as it was and the switch is tried again;
//! switched, every node restarts with changes on, one of them only after up to 8 s, long enough
//! for the others to remove it at times.
//!
//! The same seed always produces the same run, and [`Report::trace_hash`] proves it. A seed's run
//! is its [`Setup`] as the swarm draws it; a setup written down ([`Setup`]'s text, a
//! [`SavedRun`] file) replays the same run however the draws change later, and [`shrink()`] turns
//! a failing setup into a smaller one that fails the same way.

pub mod check;
mod clock;
mod disk;
pub mod history;
pub mod params;
mod queue;
mod random;
pub mod saved;
pub mod setup;
pub mod shrink;
pub mod trace;
mod workload;
mod world;

pub use check::Violation;
pub use check::leases::ReadAnswer;
pub use check::liveness::{EVENTS_MAX, FAULT_LIVENESS_BOUND, LIVENESS_BOUND};
pub use params::{Faults, MINORITY_FAULTS_BY_DEFAULT, Overrides, Params, TightBounds};
pub use saved::{Expect, SavedRun};
pub use setup::Setup;
pub use shrink::{Shrunk, shrink};
pub use trace::TraceMode;
pub use world::RunStats;

use dkv_core::{Canary, Node, NodeId};

/// How to run one seed.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub overrides: Overrides,
    /// Readable lines per event: none, kept in the report, or printed as they happen.
    pub trace: TraceMode,
    /// Plant a protocol bug (needs the `canary` feature).
    pub canary: Option<Canary>,
    /// Fault decisions from outside instead of the rng (see the `sim_schedule` fuzz target):
    /// one byte per message and per completed operation; the cluster heals when they run out.
    pub fault_script: Option<Vec<u8>>,
    /// One exact partition: a node cut off from all the others for a while (until the heal
    /// at the latest). For tests that need it; the swarm draws its own partitions.
    pub isolate: Option<Isolation>,
}

/// Node `node` cut off from every other node, both ways, from `from` to `until` of virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isolation {
    pub node: usize,
    pub from: std::time::Duration,
    pub until: std::time::Duration,
}

impl RunOptions {
    /// The small scenario a fault script drives (the `sim_schedule` fuzz target): 3 nodes,
    /// 3 clients of 8 operations each on 3 keys, every fault chosen by `script`.
    pub fn scripted(script: Vec<u8>) -> RunOptions {
        RunOptions {
            overrides: Overrides {
                nodes: Some(3),
                clients: Some(3),
                ops_per_client: Some(8),
                keys: Some(3),
                ..Default::default()
            },
            fault_script: Some(script),
            ..Default::default()
        }
    }
}

/// Whether this build can plant canaries (dkv-core's `canary` feature is on).
pub fn canaries_available() -> bool {
    let mut config = dkv_core::Config::new(dkv_core::NodeId(0), dkv_core::NodeSet::first(1));
    config.set_canary(Some(Canary::CommitOnFirstYes)).is_ok()
}

/// What one seed did and found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub params: Params,
    /// Everything the run was made of: running it again gives this same run.
    pub setup: Setup,
    pub trace_hash: u64,
    pub stats: RunStats,
    pub violations: Vec<Violation>,
    /// Searches that hit their budget without a verdict.
    pub inconclusive: usize,
    pub trace: Vec<String>,
    /// Every read answer under leases (none with leases off), in order.
    pub read_answers: Vec<check::leases::ReadAnswer>,
    /// When the faults stopped (global nanoseconds), if they did.
    pub healed_at: Option<u64>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The replicas the end checkers judge: the members of the final configuration (that of the
/// node up in the latest epoch); a node removed from it keeps the state of when it left, and
/// serves nothing ("not a member"), so it is left out (`None`) like a node that is down.
fn final_members(replicas: Vec<Option<&Node>>) -> Vec<Option<&Node>> {
    let last = replicas.iter().flatten().map(|n| n.configuration()).max_by_key(|c| c.epoch);
    let Some(last) = last else { return replicas };
    // A member that still stands outside (added, not caught up: the run ended, or its
    // configuration could not go on) holds no state of the cluster's to judge; the liveness
    // checker reports it.
    // Nor does one behind, in an older epoch (the liveness checker reports it too).
    let judged = |i: usize, n: &&Node| {
        last.members.contains(NodeId(i as u8)) && !n.stands_outside() && n.configuration().epoch == last.epoch
    };
    replicas.into_iter().enumerate().map(|(i, n)| n.filter(|n| judged(i, n))).collect()
}

/// Runs one seed to the end and checks it.
///
/// # Panics
/// If `options.canary` is set but dkv-core was built without its `canary` feature; use
/// [`canaries_available`] first.
pub fn run(seed: u64, options: &RunOptions) -> Report {
    let mut setup = Setup::draw(seed, &options.overrides);
    setup.fault_script = options.fault_script.clone();
    run_world(&setup, options.canary, options.trace, options.isolate)
}

/// Runs a setup (drawn, shrunk or saved) to the end and checks it.
///
/// # Panics
/// As [`run`].
pub fn run_setup(setup: &Setup, canary: Option<Canary>, trace: TraceMode) -> Report {
    run_world(setup, canary, trace, None)
}

fn run_world(setup: &Setup, canary: Option<Canary>, trace: TraceMode, isolate: Option<Isolation>) -> Report {
    let params = setup.params.clone();
    let mut world = world::World::new(setup.seed, setup.world_rng(), params.clone(), canary, trace);
    if let Some(script) = &setup.fault_script {
        world.set_script(script.clone());
    }
    if let Some(Isolation { node, from, until }) = isolate {
        world.isolate_between(node, from.as_nanos() as u64, until.as_nanos() as u64);
    }
    world.set_suppressed(setup.suppressed.clone());
    world.run();
    let mut violations = std::mem::take(&mut world.violations);
    let replicas = final_members(world.replicas());
    violations.extend(check::convergence::check(&replicas, params.tight_bounds.is_some()));
    let linearizability = check::linearizability::check(&world.history);
    violations.extend(linearizability.violations);
    // Durability is judged on the store convergence compared every other replica with; with
    // every member down at the end there is no final state to judge.
    if let Some(reference) = replicas.iter().flatten().next() {
        violations.extend(check::durability::check(&world.history, reference.store()));
    }
    Report {
        seed: setup.seed,
        params,
        setup: setup.clone(),
        trace_hash: world.trace.hash(),
        stats: world.stats,
        violations,
        inconclusive: linearizability.inconclusive,
        trace: world.trace.take_lines(),
        read_answers: world.leases.take().map(|l| l.answers).unwrap_or_default(),
        healed_at: world.healed_at(),
    }
}
