//! Swarm testing: every seed draws its own cluster, workload and fault mix from wide ranges,
//! zero included, so that over many seeds every combination gets exercised — including the
//! quiet ones where bugs hide behind the absence of noise.

use crate::random::{between, chance, range, unit};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Whether the swarm draws, by default, the faults that only a protocol tolerating a minority of
/// members down survives (issue 12: permanent crashes, long absences, lasting partitions, clock
/// offsets; see [`Params::minority_faults`]). On since 2026-11-26, when seeds 0..39999 of them
/// passed; off (`--no-minority-faults`), a seed draws what it drew before.
pub const MINORITY_FAULTS_BY_DEFAULT: bool = true;

/// The share of the brief partitions that cut a single link, where partitions come and the
/// cluster has three nodes or more ([`Faults::link_cut`]). Not drawn: the world decides each
/// partition's kind from a stream of its own, so a run that draws no link cut is the run it
/// was before link cuts existed.
pub const LINK_CUT_BY_DEFAULT: f64 = 0.25;

/// The share of the lasting partitions that cut a single link, where lasting partitions come
/// and the cluster has three nodes or more ([`Faults::lasting_link_cut`]). Not drawn either:
/// the world decides from a stream of its own.
pub const LASTING_LINK_CUT_BY_DEFAULT: f64 = 0.25;

/// The clock-rate drift bound ρ of docs/protocol.md §7.5 (1 %), in parts per million: any one
/// clock's rate is within ρ of true time, so any two differ by less than 2ρ. Leases are sound
/// only within it, so runs with [`Params::minority_faults`] keep every clock inside it (half
/// of them at its edges: some clocks as fast as it allows, the others as slow).
pub const DRIFT_BOUND_PPM: u32 = 10_000;

/// How long a long absence or a lasting partition lasts, at least and at most: far longer than
/// the failure detection timeout (1 s, docs/protocol.md §7.3), so that the majority must notice,
/// change its configuration and keep working, and the member that returns must catch up.
pub const LASTING_FAULT_MIN: Duration = Duration::from_secs(5);
pub const LASTING_FAULT_MAX: Duration = Duration::from_secs(20);

/// Everything that shapes one simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub nodes: usize,
    pub clients: usize,
    /// Operations each client issues before it stops.
    pub ops_per_client: usize,
    pub keys: usize,
    /// Relative weights of get, put, update, delete, multi-op txn.
    pub mix: [u32; 5],
    /// Relative weights, next to `mix`'s, of the richer operations: transactions of
    /// conditions, counters and reads, and scans (see `workload`). All zero in most seeds
    /// recorded before they existed.
    pub rich: [u32; 2],
    pub faults: Faults,
    /// Records between snapshots (small values make snapshots frequent).
    pub snapshot_records_min: u64,
    /// Nodes' clock rates differ by up to this many parts per million.
    pub clock_skew_ppm: u32,
    /// Small bounds on the nodes' state, so "busy" answers happen; `None`: the defaults.
    pub tight_bounds: Option<TightBounds>,
    /// The protocol is expected to tolerate a minority of members down or cut off (issue 12).
    /// Then the swarm draws the faults only such a protocol survives (the lasting faults of
    /// [`Faults`], clock offsets, clocks within [`DRIFT_BOUND_PPM`]), clients fail over to
    /// another node when one does not serve them, and liveness is judged during the faults too
    /// (`check::liveness::check_during_faults`). Off: every seed runs as before it existed.
    pub minority_faults: bool,
    /// Each node's clock starts at an offset drawn up to this (zero: every clock starts at 0).
    pub clock_offset_max: Duration,
    /// A client waits up to this long (drawn) before its next operation, on top of the usual
    /// moment, so that its work spreads over a long fault phase (zero: no wait).
    pub think_max: Duration,
    /// Heartbeats and read leases on (`dkv_core::Timing::leases`): nodes serve reads only
    /// under a lease, and the lease checker watches every read they serve.
    pub leases: bool,
}

/// Bounds small enough that nodes refuse work (prepared transactions, waiting reads and
/// undecided transactions per node) and forget (completion records and known decisions), so
/// that "busy" answers and evictions happen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TightBounds {
    pub prepared_max: usize,
    pub read_waiters_max: usize,
    pub txns_undecided_max: usize,
    /// Clients whose last completion is remembered: the run's clients and one to three more, so
    /// that clients that left (see `new_client_chance`) are evicted once their records are past
    /// the retention and newer clients need the room. (Fewer than the clients crowd each other
    /// out: those shut out are told "busy" for up to a retention, which in most seeds outlasts
    /// their window, so that their requests are abandoned and the history's search grows; the
    /// crowded case has a test of its own, sim/tests/eviction.rs.)
    pub completions_max: usize,
    /// Decisions remembered to answer queries.
    pub decisions_remembered_max: usize,
    /// How long a completion record is kept at least: short, so records age out and are
    /// evicted within a run.
    pub completion_retention: Duration,
    /// How long after first sending a request a client may still send it: drawn as the
    /// retention less an eighth, which covers any message delay to a client (at most 20 ms)
    /// and clock rates that differ by 2%, so that every copy of the request reaches a node
    /// while the request's completion record is held there (see `dkv_core::completions`) —
    /// unless a pause holds a copy at a frozen node for longer than that eighth: the hazard
    /// that module's documentation names, which the simulator would report as a double
    /// application (none seen in seeds 0..20000).
    pub client_window: Duration,
    /// Chance that a simulated client, after an operation completes, goes away and a new one
    /// (a new client id, as each run of dkv-client is) takes its place — provided the table has
    /// room for it: as many clients as it holds completed within a retention (see
    /// `World::room_for_new_client`).
    pub new_client_chance: f64,
}

/// Draws the weights of the richer operations from a stream of their own, so that every
/// earlier draw of every seed is unchanged: none in a third of the seeds, otherwise each kind
/// with a weight like the original mix's (sometimes none).
pub fn draw_rich(rich: &mut ChaCha8Rng) -> [u32; 2] {
    if chance(rich, 0.33) {
        return [0, 0];
    }
    let mut weights = [0u32; 2];
    for w in &mut weights {
        *w = if chance(rich, 0.15) { 0 } else { range(rich, 1, 10) as u32 };
    }
    weights
}

impl TightBounds {
    /// Drawn from a side stream of the seed's rng, so that adding this draw left every other
    /// draw of every seed, and so every recorded seed's run, unchanged. The eviction bounds,
    /// added later, come from a stream of their own (`evicting`) for the same reason.
    pub fn draw(side: &mut ChaCha8Rng, evicting: &mut ChaCha8Rng, clients: usize) -> Option<TightBounds> {
        chance(side, 0.2).then(|| {
            let (prepared_max, read_waiters_max, txns_undecided_max) =
                (range(side, 1, 4) as usize, range(side, 1, 3) as usize, range(side, 1, 3) as usize);
            let completions_max = clients + range(evicting, 1, 3) as usize;
            let decisions_remembered_max = range(evicting, 1, 8) as usize;
            let retention = Duration::from_millis(range(evicting, 5_000, 20_000));
            TightBounds {
                prepared_max,
                read_waiters_max,
                txns_undecided_max,
                completions_max,
                decisions_remembered_max,
                completion_retention: retention,
                client_window: retention - retention / 8,
                new_client_chance: 0.02 + unit(evicting) * 0.1,
            }
        })
    }
}

/// Fault rates, in force until the cluster heals: after it, nothing is lost, duplicated,
/// partitioned or crashed.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    pub loss: f64,
    pub duplication: f64,
    /// Message delays are drawn from [delay_min, delay_max]: a wide range reorders.
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Mean time between partitions starting (None: no partitions).
    pub partition_every: Option<Duration>,
    /// Chance that a partition, in a cluster of three nodes or more, cuts a single link instead
    /// of splitting the nodes in two: one pair of nodes cannot talk (both ways, or one of them
    /// cannot send to the other) while every other link works. The fault under which a member
    /// can keep its read lease through a third node while it cannot reach another, and
    /// suspects a member that every other member hears (docs/protocol.md §7.3, §7.5).
    pub link_cut: f64,
    /// Mean time between node crashes (None: no crashes).
    pub crash_every: Option<Duration>,
    /// Chance a crash tears the record being written.
    pub torn_write: f64,
    /// fsync latency range.
    pub fsync_min: Duration,
    pub fsync_max: Duration,
    /// Chance a crash leaves garbage (not zeros) after the last record or the torn write.
    pub garbage_tail: f64,
    /// Chance the record being written when a crash hits has a flipped bit (whole or torn).
    pub unsynced_flip: f64,
    /// Chance a crash also flips a bit in a synced record that has a valid record after it:
    /// media damage that recovery must refuse (see the disk model in `sim/src/disk.rs`).
    pub synced_flip: f64,
    /// Mean time between crashes of every node at once (None: never).
    pub cluster_crash_every: Option<Duration>,
    /// Chance that a node crashes within 2 ms after sending a message, and, separately, just
    /// before an fsync it started completes: crashes where durability bugs hide.
    pub crash_near_io: f64,
    /// Mean time between pauses of a node: frozen (no inputs, timers or fsync completions)
    /// for up to `pause_max`, then resumed (None: never).
    pub pause_every: Option<Duration>,
    pub pause_max: Duration,
    // The lasting faults, drawn only with `Params::minority_faults`. They never take more than
    // f = ⌊(N−1)/2⌋ members away at once (permanently crashed, absent or cut off), so a
    // majority is always left; the brief faults above come and go on top of them.
    /// Members (never n0, whose final state the end checkers judge) that crash once, at a drawn
    /// moment early in the run, and are never restarted, not even at the heal.
    pub permanent_crashes: usize,
    /// Mean time between long absences: a member crashes and stays down for
    /// [`LASTING_FAULT_MIN`]..[`LASTING_FAULT_MAX`], then restarts (at the latest at the heal)
    /// — with its log intact, or as the two chances below say.
    pub absence_every: Option<Duration>,
    /// Chance an absent member's data dir is lost: it restarts empty.
    pub absence_data_lost: f64,
    /// Chance a member whose data dir was lost is restarted with `--init` still on its command
    /// line (the operator's word that the cluster is new, wrong now): it bootstraps
    /// ([`dkv_core::Node::start_bootstrapping`]) instead of starting as one that cannot vouch for
    /// its log.
    pub absence_init_restart: f64,
    /// Every node is started with `--init` on its first start, as dkv-net requires, and keeps it
    /// on its restarts: every start on a log still empty bootstraps
    /// ([`dkv_core::Node::start_bootstrapping`], docs/protocol.md §7.1). Off: a first start
    /// takes part at once (the runs saved before bootstrapping existed).
    pub init_first_start: bool,
    /// Chance an absent member's last synced record is damaged (a bit flipped in an
    /// acknowledged record at the end of its log), which recovery cannot tell from a torn write
    /// and truncates (see `sim/src/disk.rs`).
    pub absence_tail_damaged: f64,
    /// Mean time between lasting partitions: a minority of members is cut off from the rest,
    /// both ways or one way, for [`LASTING_FAULT_MIN`]..[`LASTING_FAULT_MAX`].
    pub lasting_partition_every: Option<Duration>,
    /// Chance that a lasting partition, in a cluster of three nodes or more, cuts a single link
    /// between two members instead (both ways, or one way) for as long. Both ends still reach
    /// every other node: the cluster drops one end, and a third node that hears it ask to join
    /// adds it back, so membership flaps for as long as the cut lasts unless the backoff of a
    /// flapping node holds (docs/protocol.md §7.6; the `thrash` checker).
    pub lasting_link_cut: f64,
    /// Chance that a node just added to the configuration (the lowest-numbered, if a change adds
    /// more) is cut off one way (it can send but hears nothing) within half a second of its
    /// add, for [`LASTING_FAULT_MIN`]..[`LASTING_FAULT_MAX`]: it keeps asking to join, may not
    /// have caught up, and must not hold the writes meanwhile (docs/protocol.md §7.6).
    pub added_cut: f64,
    /// Chance that a member back from an absence that damaged its last synced record crashes
    /// again during its start, before anything the start logged is durable (a process killed
    /// as it starts): its next start must still know it cannot vouch for its log
    /// (docs/protocol.md §4).
    pub start_crash: f64,
    /// The heal comes at this time (unless every client finished before), instead of the drawn
    /// moment: a fault phase long enough for lasting faults.
    pub fault_phase: Option<Duration>,
    /// An operator switches the cluster to configuration changes (`dkv-server availability
    /// on`), drawn only in runs with them off: see [`ModeSwitch`].
    pub switch_to_changes: Option<ModeSwitch>,
}

/// The switch of a cluster from configuration changes off to on, as an operator does it in a
/// hurry: every node stops at once (a crash: records not synced are lost), and each restarts
/// with changes on, one of them only after a while. The commits made visible on pinned votes
/// (docs/protocol.md §7.2) just before are then often in doubt at every node, and the node
/// kept down may be their coordinator, while the others could remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeSwitch {
    /// When every node stops.
    pub at: Duration,
    /// The node restarted last.
    pub kept_down: usize,
    /// How long it stays down.
    pub down_for: Duration,
}

impl ModeSwitch {
    /// A switch within the first `phase` of a run of `nodes` nodes, with its kept-down node
    /// down long enough for the others to remove it at times.
    pub fn draw(rng: &mut ChaCha8Rng, nodes: usize, phase: Duration) -> ModeSwitch {
        ModeSwitch {
            at: Duration::from_nanos(between(rng, Duration::from_millis(20), phase)),
            kept_down: range(rng, 0, nodes as u64 - 1) as usize,
            down_for: Duration::from_nanos(between(rng, Duration::from_millis(100), Duration::from_secs(8))),
        }
    }
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            loss: 0.0,
            duplication: 0.0,
            delay_min: Duration::from_micros(50),
            delay_max: Duration::from_micros(200),
            partition_every: None,
            link_cut: 0.0,
            crash_every: None,
            torn_write: 0.0,
            fsync_min: Duration::from_micros(20),
            fsync_max: Duration::from_micros(200),
            garbage_tail: 0.0,
            unsynced_flip: 0.0,
            synced_flip: 0.0,
            cluster_crash_every: None,
            crash_near_io: 0.0,
            pause_every: None,
            pause_max: Duration::ZERO,
            permanent_crashes: 0,
            absence_every: None,
            absence_data_lost: 0.0,
            absence_init_restart: 0.0,
            init_first_start: false,
            absence_tail_damaged: 0.0,
            lasting_partition_every: None,
            lasting_link_cut: 0.0,
            added_cut: 0.0,
            start_crash: 0.0,
            fault_phase: None,
            switch_to_changes: None,
        }
    }

    /// Whether any lasting fault (see `permanent_crashes`) is drawn.
    pub fn has_lasting(&self) -> bool {
        self.permanent_crashes > 0 || self.absence_every.is_some() || self.lasting_partition_every.is_some()
    }

    /// Draws the faults added after the first seeds were recorded (damaged disks, crashes of
    /// every node, crashes next to sends and fsyncs, pauses) from a stream of their own, so
    /// that every draw of the main stream, and so every seed that draws none of them, is
    /// unchanged.
    pub fn draw_wider(&mut self, side: &mut ChaCha8Rng) {
        self.garbage_tail = if chance(side, 0.5) { 0.0 } else { 0.5 };
        self.unsynced_flip = if chance(side, 0.5) { 0.0 } else { 0.5 };
        self.synced_flip = if chance(side, 0.7) { 0.0 } else { 0.2 };
        self.cluster_crash_every = chance(side, 0.2).then(|| Duration::from_millis(range(side, 50, 2_000)));
        self.crash_near_io = if chance(side, 0.7) { 0.0 } else { 0.0005 + unit(side) * 0.002 };
        self.pause_every = chance(side, 0.25).then(|| Duration::from_millis(range(side, 50, 2_000)));
        self.pause_max = Duration::from_millis(range(side, 10, 5_000));
    }
}

/// Choices that override the swarm's draws, from the command line or a test.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub nodes: Option<usize>,
    pub clients: Option<usize>,
    pub ops_per_client: Option<usize>,
    pub keys: Option<usize>,
    /// No faults at all.
    pub no_faults: bool,
    pub loss: Option<f64>,
    /// `Some(false)`: never; `Some(true)`: at least every 500 ms (or `crash_every`).
    pub crashes: Option<bool>,
    pub partitions: Option<bool>,
    /// Mean time between crashes, or partitions, forcing them on.
    pub crash_every: Option<Duration>,
    pub partition_every: Option<Duration>,
    /// Chance a partition cuts a single link ([`Faults::link_cut`]), instead of
    /// [`LINK_CUT_BY_DEFAULT`].
    pub link_cut: Option<f64>,
    /// Chance a lasting partition cuts a single link ([`Faults::lasting_link_cut`]), instead of
    /// [`LASTING_LINK_CUT_BY_DEFAULT`].
    pub lasting_link_cut: Option<f64>,
    pub duplication: Option<f64>,
    /// Message delays are drawn up to this.
    pub delay_max: Option<Duration>,
    /// Clock rates differ by up to this many parts per million.
    pub clock_skew_ppm: Option<u32>,
    /// These tight bounds instead of the drawn ones.
    pub tight_bounds: Option<TightBounds>,
    /// These weights of the richer operations (transactions of conditions and counters,
    /// scans) instead of the drawn ones.
    pub rich: Option<[u32; 2]>,
    /// Whether the protocol is expected to tolerate a minority down ([`Params::minority_faults`]);
    /// `None`: [`MINORITY_FAULTS_BY_DEFAULT`].
    pub minority_faults: Option<bool>,
    /// These many permanent crashes (at most f), instead of the drawn number.
    pub permanent_crashes: Option<usize>,
    /// Mean time between long absences, or lasting partitions, forcing them on.
    pub absence_every: Option<Duration>,
    /// Chance a long absence loses the member's data dir, instead of the drawn one.
    pub absence_data_lost: Option<f64>,
    /// Chance a long absence damages the member's last synced record, instead of the drawn one.
    pub absence_tail_damaged: Option<f64>,
    /// Every node starts with `--init` and bootstraps ([`Faults::init_first_start`]).
    pub init_first_start: bool,
    pub lasting_partition_every: Option<Duration>,
    /// Chance a node just added is cut off one way ([`Faults::added_cut`]), instead of 0.3.
    pub added_cut: Option<f64>,
    /// Chance a member whose absence damaged its last synced record crashes again during its
    /// start ([`Faults::start_crash`]), instead of 0.5.
    pub start_crash: Option<f64>,
    /// Clocks start at offsets drawn up to this.
    pub clock_offset_max: Option<Duration>,
    /// Read leases on or off instead of drawn.
    pub leases: Option<bool>,
    /// `Some(true)`: a run with leases off switches to configuration changes
    /// ([`Faults::switch_to_changes`]); `Some(false)`: never; `None`: drawn.
    pub switch_to_changes: Option<bool>,
    /// `Some(false)`: no node is ever paused (a pause past the detection timeout gets a member
    /// removed, for good until a removed member can be added back).
    pub pauses: Option<bool>,
    /// These weights of get, put, update, delete and multi-op transaction instead of the drawn
    /// ones (all writes zero: a read-only workload).
    pub mix: Option<[u32; 5]>,
    /// A snapshot after at least this many records, instead of the drawn bound.
    pub snapshot_records_min: Option<u64>,
}

impl Overrides {
    /// Whether the switch of [`Params::minority_faults`] is on: as asked, or else when a lasting
    /// fault is forced, or else [`MINORITY_FAULTS_BY_DEFAULT`].
    pub fn minority_faults(&self) -> bool {
        let forced = self.permanent_crashes.is_some_and(|n| n > 0)
            || self.absence_every.is_some()
            || self.lasting_partition_every.is_some();
        self.minority_faults.unwrap_or(MINORITY_FAULTS_BY_DEFAULT || forced)
    }
}

impl Params {
    /// Draws a run's parameters from the seed's own rng stream.
    pub fn draw(rng: &mut ChaCha8Rng, o: &Overrides) -> Params {
        let nodes = o.nodes.unwrap_or_else(|| [2, 3, 3, 3, 4, 5, 7][range(rng, 0, 6) as usize]);
        let clients = o.clients.unwrap_or_else(|| range(rng, 1, 8) as usize);
        let ops_per_client = o.ops_per_client.unwrap_or_else(|| range(rng, 5, 60) as usize);
        let keys = o.keys.unwrap_or_else(|| [1, 2, 3, 5, 10, 50, 200][range(rng, 0, 6) as usize]);
        let mut mix = [0u32; 5];
        for w in &mut mix {
            *w = if chance(rng, 0.15) { 0 } else { range(rng, 1, 10) as u32 };
        }
        if mix[1..].iter().all(|w| *w == 0) {
            mix[1] = 1; // at least one kind of write
        }
        if let Some(chosen) = o.mix {
            mix = chosen;
        }
        let mut faults = Faults::none();
        if !o.no_faults {
            let wide = chance(rng, 0.5);
            faults.delay_max = Duration::from_micros(if wide { range(rng, 200, 20_000) } else { range(rng, 60, 500) });
            faults.loss = if chance(rng, 0.4) { 0.0 } else { unit(rng) * 0.2 };
            faults.duplication = if chance(rng, 0.5) { 0.0 } else { unit(rng) * 0.1 };
            faults.partition_every = chance(rng, 0.5).then(|| Duration::from_millis(range(rng, 5, 800)));
            faults.crash_every = chance(rng, 0.5).then(|| Duration::from_millis(range(rng, 5, 800)));
            faults.torn_write = if chance(rng, 0.5) { 0.5 } else { 0.0 };
            faults.fsync_max = Duration::from_micros(range(rng, 20, 5_000));
        }
        if let Some(loss) = o.loss {
            faults.loss = loss;
        }
        if let Some(duplication) = o.duplication {
            faults.duplication = duplication;
        }
        if let Some(delay_max) = o.delay_max {
            faults.delay_max = delay_max.max(faults.delay_min);
        }
        if o.crash_every.is_some() {
            faults.crash_every = o.crash_every;
        }
        if o.partition_every.is_some() {
            faults.partition_every = o.partition_every;
        }
        match o.crashes {
            Some(false) => faults.crash_every = None,
            Some(true) if faults.crash_every.is_none() => faults.crash_every = Some(Duration::from_millis(500)),
            _ => {}
        }
        match o.partitions {
            Some(false) => faults.partition_every = None,
            Some(true) if faults.partition_every.is_none() => faults.partition_every = Some(Duration::from_millis(500)),
            _ => {}
        }
        // Drawn whatever the override, so that every seed's later draws stay as they were.
        let drawn = if chance(rng, 0.3) { range(rng, 3, 50) } else { 10_000 };
        let snapshot_records_min = o.snapshot_records_min.unwrap_or(drawn);
        let mut clock_skew_ppm = if chance(rng, 0.3) { 0 } else { range(rng, 1, 20_000) as u32 };
        if let Some(ppm) = o.clock_skew_ppm {
            clock_skew_ppm = ppm;
        }
        Params {
            nodes,
            clients,
            ops_per_client,
            keys,
            mix,
            rich: [0, 0],
            faults,
            snapshot_records_min,
            clock_skew_ppm,
            tight_bounds: None,
            leases: false,
            minority_faults: false,
            clock_offset_max: Duration::ZERO,
            think_max: Duration::ZERO,
        }
    }

    /// Members that may be down or cut off at once while a majority keeps working:
    /// f = ⌊(N−1)/2⌋.
    pub fn minority_max(&self) -> usize {
        self.nodes.saturating_sub(1) / 2
    }

    /// Turns [`Params::minority_faults`] on and draws what it brings, from `lasting`, a stream of
    /// its own: every seed's other draws are as they were. Some lasting fault in most seeds, any
    /// mix of them (so that 5-node clusters lose two members in some); clocks that start apart
    /// and run at rates within the drift bound; clients that spread their work over a fault
    /// phase of 10 to 30 s; and, in half the seeds, none of the brief crashes, partitions and
    /// pauses, so that the lasting faults are judged on their own. Message loss is kept at
    /// most 5 %, and the nodes' bounds are the defaults: a request's time to complete is then
    /// the protocol's doing, not a lost message's or a full table's (the liveness bound during
    /// faults allows one lost request, not a run of them), and there are at least ten keys per
    /// client.
    pub fn draw_minority_faults(&mut self, lasting: &mut ChaCha8Rng, o: &Overrides) {
        self.minority_faults = true;
        self.tight_bounds = o.tight_bounds;
        // Liveness during faults is about faults: contention has no bound of its own (no-wait
        // locks retried with random backoff), so the clients meet on a key now and then, not
        // all the time. (With the lasting faults taken out, today's protocol was late in 15 of
        // seeds 0..500, all on one to five keys; at ten keys per client, in none of 0..5000.)
        if o.keys.is_none() {
            self.keys = self.keys.max(10 * self.clients);
        }
        self.clock_skew_ppm =
            o.clock_skew_ppm.unwrap_or_else(|| range(lasting, 0, u64::from(DRIFT_BOUND_PPM) - 1) as u32);
        self.clock_offset_max = o.clock_offset_max.map(|d| d.min(Duration::from_secs(3600))).unwrap_or_else(|| {
            if chance(lasting, 0.3) { Duration::ZERO } else { Duration::from_millis(range(lasting, 1, 10_000)) }
        });
        if o.no_faults {
            return;
        }
        let (crashes, partitions) = (o.crashes != Some(false), o.partitions != Some(false));
        let most = self.minority_max();
        self.think_max = Duration::from_millis(range(lasting, 20, 500));
        let f = &mut self.faults;
        f.loss = f.loss.min(0.05);
        if chance(lasting, 0.5) {
            f.crash_every = None;
            f.partition_every = None;
            f.cluster_crash_every = None;
            f.crash_near_io = 0.0;
            f.pause_every = None;
        }
        f.permanent_crashes = if chance(lasting, 0.4) { range(lasting, 1, most as u64) as usize } else { 0 };
        f.absence_every = chance(lasting, 0.5).then(|| Duration::from_millis(range(lasting, 1_000, 10_000)));
        f.absence_data_lost = if chance(lasting, 0.5) { 0.0 } else { 0.3 };
        f.absence_tail_damaged = if chance(lasting, 0.5) { 0.0 } else { 0.3 };
        // Not drawn (every draw after it would change): half the lost dirs come back with --init.
        f.absence_init_restart = 0.5;
        // Off unless asked: the first start bootstrapping shifts every event of a run a little,
        // and the swarm's seeds keep the timing they were judged with.
        f.init_first_start = o.init_first_start;
        f.lasting_partition_every = chance(lasting, 0.5).then(|| Duration::from_millis(range(lasting, 1_000, 10_000)));
        f.fault_phase = Some(Duration::from_millis(range(lasting, 10_000, 30_000)));
        // Not drawn either (every draw after it would change).
        f.added_cut = 0.3;
        f.start_crash = 0.5;
        if !crashes {
            f.permanent_crashes = 0;
            f.absence_every = None;
            f.start_crash = 0.0;
        }
        if !partitions {
            f.lasting_partition_every = None;
            f.added_cut = 0.0;
        }
        if let Some(n) = o.permanent_crashes {
            f.permanent_crashes = n;
        }
        f.permanent_crashes = f.permanent_crashes.min(most);
        // What a setup may hold at most (an hour): longer would overflow the virtual clock.
        let at_most_an_hour = |d: Duration| d.min(Duration::from_secs(3600));
        if o.absence_every.is_some() {
            f.absence_every = o.absence_every.map(at_most_an_hour);
        }
        if let Some(chance) = o.absence_data_lost {
            f.absence_data_lost = chance.clamp(0.0, 1.0);
        }
        if let Some(chance) = o.absence_tail_damaged {
            f.absence_tail_damaged = chance.clamp(0.0, 1.0);
        }
        if o.lasting_partition_every.is_some() {
            f.lasting_partition_every = o.lasting_partition_every.map(at_most_an_hour);
        }
        if let Some(chance) = o.added_cut {
            f.added_cut = chance.clamp(0.0, 1.0);
        }
        if let Some(chance) = o.start_crash {
            f.start_crash = chance.clamp(0.0, 1.0);
        }
        if most == 0 {
            f.absence_every = None;
            f.lasting_partition_every = None;
            f.added_cut = 0.0;
        }
        // It follows a damaged tail only.
        if f.absence_every.is_none() || f.absence_tail_damaged == 0.0 {
            f.start_crash = 0.0;
        }
    }

    pub fn has_faults(&self) -> bool {
        let f = &self.faults;
        f.loss > 0.0
            || f.duplication > 0.0
            || f.partition_every.is_some()
            || f.crash_every.is_some()
            || f.cluster_crash_every.is_some()
            || f.crash_near_io > 0.0
            || f.pause_every.is_some()
            || f.has_lasting()
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let x = &self.faults;
        write!(
            f,
            "nodes={} clients={} ops/client={} keys={} mix(get,put,upd,del,txn)={:?} rich(txn,scan)={:?} loss={:.3} dup={:.3} delay={:?}..{:?} partitions={:?} (single links {}) crashes={:?} torn={} garbage={} flips(unsynced,synced)=({},{}) cluster_crashes={:?} crash_near_io={:.4} pauses={:?}<={:?} fsync<={:?} snapshot_every={} skew={}ppm bounds={:?} leases={}",
            self.nodes,
            self.clients,
            self.ops_per_client,
            self.keys,
            self.mix,
            self.rich,
            x.loss,
            x.duplication,
            x.delay_min,
            x.delay_max,
            x.partition_every,
            x.link_cut,
            x.crash_every,
            x.torn_write,
            x.garbage_tail,
            x.unsynced_flip,
            x.synced_flip,
            x.cluster_crash_every,
            x.crash_near_io,
            x.pause_every,
            x.pause_max,
            x.fsync_max,
            self.snapshot_records_min,
            self.clock_skew_ppm,
            self.tight_bounds,
            self.leases
        )?;
        if self.minority_faults {
            write!(
                f,
                " minority_faults: permanent_crashes={} first start with --init {} absences={:?} (data lost {}, restarted with --init {}, tail damaged {}, then a crash in the start {}) lasting_partitions={:?} (single links {}) added_cut={} fault_phase={:?} clock_offsets<={:?} think<={:?}",
                x.permanent_crashes,
                x.init_first_start,
                x.absence_every,
                x.absence_data_lost,
                x.absence_init_restart,
                x.absence_tail_damaged,
                x.start_crash,
                x.lasting_partition_every,
                x.lasting_link_cut,
                x.added_cut,
                x.fault_phase,
                self.clock_offset_max,
                self.think_max
            )?;
        }
        Ok(())
    }
}
