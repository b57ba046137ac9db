//! The simulated world: nodes running the real core on virtual time, their disks and clocks,
//! the network between them, the clients, and the faults. One seeded rng drives every choice
//! and one event queue orders every event, so a seed replays exactly. What happens is shown to
//! the observers: the trace, the clients' history, and the checkers that watch a run as it
//! goes (exactly-once) or judge it at the end (liveness; `dkv_sim::run` runs the rest).
//!
//! A run has two phases. While faults are on, messages are lost, duplicated and delayed,
//! partitions come and go, and nodes crash and restart. At the heal, every fault stops and every
//! node is restarted; from then on every outstanding request must complete within
//! [`LIVENESS_BOUND`], and the cluster must become quiescent and convergent.
//!
//! With `Params::minority_faults` (a protocol that tolerates a minority down), the lasting
//! faults of `lasting` come on top — permanent crashes, long absences, lasting partitions — and
//! the world keeps a timeline of which members form the majority side, against which every
//! request is judged during the faults too ([`liveness::check_during_faults`]). A member
//! crashed for good stays down after the heal.

mod lasting;

use crate::check::Violation;
use crate::check::exactly_once::ExactlyOnce;
use crate::check::leases::LeaseChecker;
use crate::check::liveness::{self, EVENTS_MAX, LIVENESS_BOUND, SideChange};
use crate::check::visibility::Visibility;
use crate::clock::Clock;
use crate::disk::{CrashDamage, Disk, RecoverError};
use crate::history::{History, Op, OpKind, Result as OpResult, result_of};
use crate::params::{Faults, Params};
use crate::queue::EventQueue;
use crate::random::{around, between, chance, index, range, unit};
use crate::trace::{Tag, Trace, TraceMode, message_word, outcome_word, txn_word};
use crate::workload;
use dkv_core::catch_up::Adoption;
use dkv_core::{
    Canary, ClientId, Config, Epoch, Input, LAZY_SYNC_DELAY, Lsn, Message, Node, NodeId, NodeSet, Operation, Outcome,
    Output, Record, Reply, ReplyTo, Request, RequestId, TryAgainReason,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a catch-up's state transfer takes (virtual time): the node asked keeps running
/// meanwhile, as a real one's event loop would until the stream is in.
const CATCH_UP_NANOS: u64 = 50_000_000;
/// How long after a refused switch to configuration changes the operator tries again, and how
/// many tries it makes before it gives up on the switch.
const SWITCH_RETRY: Duration = Duration::from_millis(400);
/// The longest a due switch waits for a commit to be answered.
const SWITCH_WAIT_MAX: Duration = Duration::from_millis(200);
const SWITCH_TRIES_MAX: u32 = 20;
/// How long a lasting fault due during the first start waits before it is tried again.
pub(crate) const FIRST_START_RETRY_NANOS: u64 = 100_000_000;

/// A client's first backoff window after "try again", and the largest.
const TRY_AGAIN_BACKOFF_FIRST: Duration = Duration::from_millis(20);
pub(crate) const TRY_AGAIN_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A client gives up waiting for a reply and retries (same request id) after this long.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether an answer says the request lost to other work (no fault): a conflict, the same
/// request in progress elsewhere, a busy node.
fn lost_to_other_work(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::TryAgain(TryAgainReason::Conflict | TryAgainReason::InProgress | TryAgainReason::Busy))
}

/// Unanswered sends to one node after which a client fails over to the next (runs with
/// `Params::minority_faults`).
pub(crate) const CLIENT_SENDS_BEFORE_FAIL_OVER: u32 = 2;

/// Whether an answer tells the client to take its request to another node, which clients do in
/// runs with `Params::minority_faults`.
///
/// The answers that send a client to another node: "not serving: …, ask another node" (a node
/// without a lease or not a member, docs/protocol.md §7.5), a node still starting, and a
/// coordinator that could not reach every member.
fn asks_to_fail_over(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::NotServing(_) | Outcome::TryAgain(TryAgainReason::Starting | TryAgainReason::Unavailable { .. })
    )
}

/// Something that happens at a moment of virtual time. Nodes and clients are named by index.
#[derive(Clone, Debug)]
enum Event {
    /// A message between nodes arrives.
    Deliver {
        from: NodeId,
        to: NodeId,
        message: Message,
    },
    /// A client's request arrives at a node.
    ToNode {
        node: usize,
        client: usize,
        request: Request,
    },
    /// A node's reply arrives at a client.
    ToClient {
        client: usize,
        reply: Reply,
    },
    /// A node's timer fires, unless it was moved since.
    NodeTimer {
        node: usize,
    },
    /// An fsync completes, unless the node crashed since (`generation` tells).
    Fsync {
        node: usize,
        generation: u64,
        through: Lsn,
    },
    /// Records that may wait for their fsync have waited long enough.
    LazySync {
        node: usize,
        generation: u64,
    },
    /// A client issues its next operation.
    ClientNext {
        client: usize,
    },
    /// A client's wait after one send of its request (for a reply, or out of a "try again"
    /// answer) is over: unless the request has moved on, time to send it again.
    ClientRetry {
        client: usize,
        seq: u64,
        attempt: u32,
    },
    /// A crash of a node drawn from the rng.
    Crash,
    /// A crash of this node, chosen by a fault script.
    CrashNode {
        node: usize,
    },
    /// A crash of this node, in this life, timed next to a send or an fsync.
    CrashNearIo {
        node: usize,
        generation: u64,
    },
    /// A crash of every node at once.
    CrashAll,
    /// The switch to configuration changes ([`crate::params::ModeSwitch`]) is due: it comes
    /// right after the next commit is answered.
    SwitchDue,
    /// The due switch waited [`SWITCH_WAIT_MAX`] for a commit to be answered.
    SwitchWaitedLongEnough,
    /// The operator switches the cluster to configuration changes (or tries again).
    SwitchToChanges,
    /// A node drawn from the rng is frozen.
    Pause,
    /// The node frozen in this life resumes.
    Resume {
        node: usize,
        generation: u64,
    },
    Restart {
        node: usize,
    },
    PartitionStart,
    PartitionEnd,
    /// A test's partition: this node cut off from every other, both ways.
    Isolate {
        node: usize,
    },
    Heal,
    /// This member crashes and is never restarted.
    PermanentCrash {
        node: usize,
    },
    /// A member drawn from the `lasting` stream crashes for a long absence.
    AbsenceStart,
    /// The absent member comes back.
    AbsenceEnd {
        node: usize,
    },
    /// A node's catch-up from member `from` through `epoch` is done streaming (docs/protocol.md
    /// §7.6), if both are still up and in touch.
    CatchUp {
        node: usize,
        generation: u64,
        from: usize,
        epoch: dkv_core::Epoch,
    },
    /// A minority drawn from the `lasting` stream is cut off from the rest for long.
    LastingPartitionStart,
    /// A node just added is cut off one way (it hears nothing) for long, if there is room.
    CutAdded {
        node: usize,
    },
    LastingPartitionEnd,
}

/// One simulated machine: the core's node while it is up, and what outlives a crash.
struct SimNode {
    node: Option<Node>,
    config: Config,
    disk: Disk,
    clock: Clock,
    /// Global time of the node's scheduled timer event.
    timer_at: Option<u64>,
    /// Bumped at every crash, so events of the previous life are ignored.
    generation: u64,
    /// Frozen (like a process stopped by SIGSTOP): what arrives is held until it resumes.
    paused: bool,
    /// Messages, requests and fsync completions that arrived while it was frozen, in order.
    held: Vec<Event>,
    /// Crashed for good, or about to be (a permanent crash is scheduled): never restarted.
    doomed: bool,
    /// Its permanent crash happened.
    gone: bool,
    /// Down for a long absence: restarted only when it ends, or at the heal.
    absent: bool,
    /// Its data dir was lost: its starts cannot vouch for the log while it is still empty.
    data_lost: bool,
    /// With its data dir lost, it is restarted with `--init` on its command line: it bootstraps.
    init_on_restart: bool,
    /// It was seen up and done bootstrapping at least once (see [`World::first_start_under_way`]).
    began: bool,
    /// A long absence took its state (data dir lost, last synced record damaged): the fault
    /// holds it away until it has caught up, not only until it is back.
    lacks_state: bool,
    /// A start cut a synced record off its log (a damaged tail) and it has not caught up since:
    /// no start may vouch for the log (docs/protocol.md §4), whatever crashes come between.
    cut_synced: bool,
    /// Crashes again in its next start, before anything the start logged is durable
    /// (`Faults::start_crash`, drawn when an absence damaged its last synced record).
    crash_in_start: bool,
    /// Cut off one way just after its add (`Faults::added_cut`): removed again meanwhile, and
    /// behind, the fault holds it away until it has caught up, not only until the cut ends.
    held_out: bool,
    /// The configuration it was last seen in (a change is traced).
    configuration: Option<dkv_core::Configuration>,
    /// Kept down until this time (the node a [`crate::params::ModeSwitch`] restarts last): its
    /// restarts before then wait, the heal's too.
    held_until: Option<u64>,
}

impl SimNode {
    /// Node `i` of the cluster `params` describe, its clock rate drawn from `rng` and its clock
    /// starting at `offset`.
    fn new(i: usize, seed: u64, params: &Params, canary: Option<Canary>, rng: &mut ChaCha8Rng, offset: u64) -> SimNode {
        let mut config = Config::new(NodeId(i as u8), NodeSet::first(params.nodes));
        config.seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64);
        config.bounds.snapshot_records_min = params.snapshot_records_min;
        if let Some(tight) = params.tight_bounds {
            config.bounds.prepared_max = tight.prepared_max;
            config.bounds.read_waiters_max = tight.read_waiters_max;
            config.bounds.txns_undecided_max = tight.txns_undecided_max;
            config.bounds.completions_max = tight.completions_max;
            config.bounds.decisions_remembered_max = tight.decisions_remembered_max;
            config.timing.completion_retention = tight.completion_retention;
        }
        config.timing.leases = params.leases;
        config.set_canary(canary).expect("checked by dkv_sim::run");
        let skew = if params.clock_skew_ppm == 0 {
            0
        } else {
            range(rng, 0, 2 * u64::from(params.clock_skew_ppm)) as i64 - i64::from(params.clock_skew_ppm)
        };
        SimNode {
            node: None,
            config,
            disk: Disk::default(),
            clock: Clock::new(skew, offset),
            timer_at: None,
            generation: 0,
            paused: false,
            held: Vec::new(),
            doomed: false,
            gone: false,
            absent: false,
            data_lost: false,
            init_on_restart: false,
            began: false,
            lacks_state: false,
            cut_synced: false,
            crash_in_start: false,
            held_out: false,
            configuration: None,
            held_until: None,
        }
    }
}

/// The id of simulated client `c` after `session` new clients took its place.
fn client_id(c: usize, session: u64) -> ClientId {
    ClientId(1000 + c as u64 + (session << 16))
}

/// A simulated client: issues its operations one at a time, each to one node, and retries a
/// request (same id, maybe at another node) until it has a definite outcome.
struct SimClient {
    id: ClientId,
    /// How many times a new client took this one's place (each with a new id).
    session: u64,
    /// The sequence number of its latest request.
    seq: u64,
    /// Operations still to issue.
    remaining: usize,
    /// The node it sends to.
    node: usize,
    in_flight: Option<InFlight>,
    /// "Try again" answers to the request in flight, for the backoff.
    try_agains: u32,
    /// The last answer to the request in flight asked it to go to another node (runs with
    /// `Params::minority_faults`).
    fail_over: bool,
    /// Sends to its node since the last answer from it (runs with `Params::minority_faults`).
    unanswered: u32,
    /// Whether this client already gave up on a request in this run. Once is enough to
    /// exercise the path; every abandoned request may take effect at any later moment or never,
    /// and each one doubles what the linearizability search must consider.
    abandoned: bool,
}

impl SimClient {
    /// Client `c` of the run `params` describe.
    fn new(c: usize, params: &Params) -> SimClient {
        SimClient {
            id: client_id(c, 0),
            session: 0,
            seq: 0,
            remaining: params.ops_per_client,
            node: c % params.nodes,
            in_flight: None,
            try_agains: 0,
            fail_over: false,
            unanswered: 0,
            abandoned: false,
        }
    }

    fn done(&self) -> bool {
        self.remaining == 0 && self.in_flight.is_none()
    }
}

/// A client's request that has no definite outcome yet.
struct InFlight {
    /// Its operation's index in the history.
    op: usize,
    request: Request,
    /// Sends of the request so far: a retry timer set for an earlier one is stale.
    attempt: u32,
}

/// Fault decisions chosen from outside (by a fuzzer) instead of drawn from the rng, one byte
/// per decision (see [`World::set_script`]).
struct FaultScript {
    bytes: Vec<u8>,
    /// The position of the next decision's byte.
    next: usize,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    pub events: u64,
    /// Messages and client traffic that reached a node that was up, or a client.
    pub messages_delivered: u64,
    pub virtual_nanos: u64,
    /// Operations that got a definite outcome.
    pub ops_completed: u64,
    pub crashes: u64,
    /// Restarts that found a torn record at the end of the log.
    pub torn_tails: u64,
    pub partitions: u64,
    /// Of the partitions, those that cut a single link (`Faults::link_cut`).
    pub link_cuts: u64,
    pub snapshots: u64,
    /// Transactions applied durably, counted at every node that applied them.
    pub commits: u64,
    /// Drawn faults that happened: messages lost, duplicated or long delayed, crashes,
    /// partitions, each numbered so that a setup can suppress it.
    pub faults: u64,
    /// Drawn faults that would have happened but were suppressed by number.
    pub faults_suppressed: u64,
    /// Crashes that left garbage after the last record or the torn write.
    pub garbage_tails: u64,
    /// Crashes that flipped a bit in the record being written.
    pub unsynced_flips: u64,
    /// Crashes that flipped a bit in a synced record with a valid record after it.
    pub synced_flips: u64,
    /// Restarts whose recovery refused a log with a damaged synced record (each followed by
    /// the operator restoring the log from backup).
    pub logs_refused: u64,
    /// Crashes of every node at once.
    pub cluster_crashes: u64,
    /// Crashes within 2 ms after a send or just before an fsync completes.
    pub near_io_crashes: u64,
    /// Nodes frozen, then resumed.
    pub pauses: u64,
    /// Completion records the nodes evicted (counted at each crash and at the end).
    pub completions_evicted: u64,
    /// Members crashed for good.
    pub permanent_crashes: u64,
    /// Long absences, and of them those that lost the data dir or the last synced record.
    pub absences: u64,
    pub data_dirs_lost: u64,
    /// Of the lost data dirs, those restarted with `--init` (bootstrapping).
    pub init_restarts: u64,
    pub tails_damaged: u64,
    /// Lasting partitions, and of them those that cut a node off one way just after its add.
    pub lasting_partitions: u64,
    pub added_cuts: u64,
    /// Of the lasting partitions, those that cut a single link (`Faults::lasting_link_cut`).
    pub lasting_link_cuts: u64,
    /// Members back from an absence with a damaged tail that crashed again in their start.
    pub start_crashes: u64,
    /// The most members that lasting faults (crashed for good, absent, cut off) held away at
    /// once.
    pub members_lost_max: u64,
    /// The most times one node was removed from the configuration within
    /// [`liveness::REMOVALS_WINDOW`] (the `thrash` checker's count).
    pub removals_max: u64,
    /// Reads answered from memory while leases were on (each checked by the lease checker),
    /// and reads answered "not serving".
    pub lease_reads: u64,
    pub reads_not_served: u64,
    /// Catch-ups done (a node added back took a member's state), and failed (the member was
    /// down or cut off, or its log did not reach, or went past, the configuration that added it).
    pub catch_ups: u64,
    pub catch_ups_failed: u64,
    /// Switches to configuration changes made, and tries refused while a node held a pinned
    /// share in doubt.
    pub switches: u64,
    pub switches_refused: u64,
    /// Commits visible on every YES with changes on (a configuration of the three nodes of a
    /// three-node cluster), and of the commits settlements made, those no node held a durable
    /// decision of: inferred from the reports (docs/protocol.md §7.4, "Inferred commits").
    pub visible_on_every_yes: u64,
    pub inferred_commits: u64,
}

impl RunStats {
    /// Adds another run's counts to these (for a sweep's totals).
    pub fn add(&mut self, other: &RunStats) {
        let RunStats {
            events,
            messages_delivered,
            virtual_nanos,
            ops_completed,
            crashes,
            torn_tails,
            partitions,
            link_cuts,
            snapshots,
            commits,
            garbage_tails,
            unsynced_flips,
            synced_flips,
            logs_refused,
            cluster_crashes,
            near_io_crashes,
            pauses,
            completions_evicted,
            faults,
            faults_suppressed,
            permanent_crashes,
            absences,
            data_dirs_lost,
            init_restarts,
            tails_damaged,
            lasting_partitions,
            added_cuts,
            lasting_link_cuts,
            start_crashes,
            members_lost_max,
            removals_max,
            lease_reads,
            reads_not_served,
            catch_ups,
            catch_ups_failed,
            switches,
            switches_refused,
            visible_on_every_yes,
            inferred_commits,
        } = other;
        self.events += events;
        self.messages_delivered += messages_delivered;
        self.virtual_nanos += virtual_nanos;
        self.ops_completed += ops_completed;
        self.crashes += crashes;
        self.torn_tails += torn_tails;
        self.partitions += partitions;
        self.link_cuts += link_cuts;
        self.snapshots += snapshots;
        self.commits += commits;
        self.garbage_tails += garbage_tails;
        self.unsynced_flips += unsynced_flips;
        self.synced_flips += synced_flips;
        self.logs_refused += logs_refused;
        self.cluster_crashes += cluster_crashes;
        self.near_io_crashes += near_io_crashes;
        self.pauses += pauses;
        self.completions_evicted += completions_evicted;
        self.faults += faults;
        self.faults_suppressed += faults_suppressed;
        self.permanent_crashes += permanent_crashes;
        self.absences += absences;
        self.data_dirs_lost += data_dirs_lost;
        self.init_restarts += init_restarts;
        self.tails_damaged += tails_damaged;
        self.lasting_partitions += lasting_partitions;
        self.added_cuts += added_cuts;
        self.lasting_link_cuts += lasting_link_cuts;
        self.start_crashes += start_crashes;
        self.members_lost_max = self.members_lost_max.max(*members_lost_max);
        self.removals_max = self.removals_max.max(*removals_max);
        self.lease_reads += lease_reads;
        self.reads_not_served += reads_not_served;
        self.catch_ups += catch_ups;
        self.catch_ups_failed += catch_ups_failed;
        self.switches += switches;
        self.switches_refused += switches_refused;
        self.visible_on_every_yes += visible_on_every_yes;
        self.inferred_commits += inferred_commits;
    }

    /// The disk damage, restarts, pauses and evictions the run went through, in one line.
    pub fn faults_line(&self) -> String {
        let mut line = format!(
            "{} torn tails, {} garbage tails, bits flipped in {} unsynced and {} synced records ({} logs refused and restored), {} whole-cluster crashes, {} crashes next to a send or fsync, {} pauses, {} single links cut, {} completion records evicted, {} reads under a lease, {} not served",
            self.torn_tails,
            self.garbage_tails,
            self.unsynced_flips,
            self.synced_flips,
            self.logs_refused,
            self.cluster_crashes,
            self.near_io_crashes,
            self.pauses,
            self.link_cuts,
            self.completions_evicted,
            self.lease_reads,
            self.reads_not_served
        );
        if self.permanent_crashes + self.absences + self.lasting_partitions > 0 {
            line.push_str(&format!(
                "; lasting: {} permanent crashes, {} long absences ({} data dirs lost, {} of them restarted with --init; {} last synced records damaged, {} crashes in the start after one), {} lasting partitions ({} of them a node cut off one way just after its add, {} a single link cut), at most {} members lost at once",
                self.permanent_crashes,
                self.absences,
                self.data_dirs_lost,
                self.init_restarts,
                self.tails_damaged,
                self.start_crashes,
                self.lasting_partitions,
                self.added_cuts,
                self.lasting_link_cuts,
                self.members_lost_max,
            ));
        }
        if self.removals_max > 0 {
            line.push_str(&format!(
                "; a node removed at most {} times within {:?}",
                self.removals_max,
                liveness::REMOVALS_WINDOW
            ));
        }
        if self.catch_ups + self.catch_ups_failed > 0 {
            line.push_str(&format!(
                "; {} catch-ups ({} more failed or refused)",
                self.catch_ups, self.catch_ups_failed
            ));
        }
        if self.visible_on_every_yes + self.inferred_commits > 0 {
            line.push_str(&format!(
                "; with changes on, {} commits visible on every YES, and {} settled with no decision durable anywhere",
                self.visible_on_every_yes, self.inferred_commits
            ));
        }
        if self.switches + self.switches_refused > 0 {
            line.push_str(&format!(
                "; {} switches to configuration changes ({} tries refused: pinned shares in doubt)",
                self.switches, self.switches_refused
            ));
        }
        line
    }
}

pub(crate) struct World {
    rng: ChaCha8Rng,
    /// Decisions added after the first seeds were recorded (abandoned requests, long delays)
    /// draw from this side stream, so the main stream, and every recorded seed, is unchanged.
    side: ChaCha8Rng,
    /// Decisions of the faults added later still (damaged disks, crashes of every node, crashes
    /// next to sends and fsyncs, pauses): a stream of their own, for the same reason.
    wide: ChaCha8Rng,
    /// The richer operations' draws (see `workload`): a stream of their own too.
    rich: ChaCha8Rng,
    /// The lasting faults' draws, and the clients' think times (`Params::minority_faults`
    /// only): a stream of their own too.
    lasting: ChaCha8Rng,
    /// Whether and when a node just added is cut off (`Faults::added_cut`): a stream of its
    /// own too.
    adds: ChaCha8Rng,
    /// Whether a member back with a damaged tail crashes in its start (`Faults::start_crash`):
    /// a stream of its own too.
    starts: ChaCha8Rng,
    /// Whether a brief partition cuts a single link, and which (`Faults::link_cut`): a stream of
    /// its own too.
    links: ChaCha8Rng,
    /// Whether a lasting partition cuts a single link, and which (`Faults::lasting_link_cut`):
    /// a stream of its own too.
    lasting_links: ChaCha8Rng,
    params: Params,
    /// The fault rates in force: the params' until the heal, none after it.
    faults: Faults,
    /// The first start has ended (see [`World::first_start_under_way`]).
    first_start_over: bool,
    script: Option<FaultScript>,
    /// Drawn faults that must not happen, by number (the n-th fault the run meets, from 0).
    suppressed: BTreeSet<u64>,
    now: u64,
    events: EventQueue<Event>,
    nodes: Vec<SimNode>,
    /// Reused buffer for draining a node's outputs.
    outputs: Vec<Output>,
    clients: Vec<SimClient>,
    /// Ids of clients that went away (a new one took their place), with when: the nodes still
    /// hold their completion records for a retention.
    retired_clients: Vec<(ClientId, u64)>,
    /// `blocked[a][b]`: a partition keeps node `a`'s messages from reaching node `b`.
    blocked: Vec<Vec<bool>>,
    /// The lasting partition in force, if any (on top of `blocked`).
    cut: Option<lasting::Cut>,
    /// From which moment which members formed the majority side (runs with
    /// `Params::minority_faults` only), and every send of a request to a node.
    sides: Vec<SideChange>,
    sends: Vec<liveness::Sent>,
    /// Every answer by which a request lost to other work (runs with `Params::minority_faults`).
    contended: Vec<liveness::Contended>,
    healed_at: Option<u64>,
    /// Each configuration installed in the run, by epoch, with when a node first installed it:
    /// changes that keep the same members one after another are the configuration thrashing.
    configurations: BTreeMap<Epoch, (NodeSet, u64)>,
    /// When each node started (a restart, or a new start after a catch-up), in order: a node
    /// that starts forgets the backoff of the flapping nodes it knew, so the `thrash` checker
    /// counts a node's removals only between two starts of the others.
    started_at: Vec<(u64, NodeId)>,
    // What observes the run.
    pub(crate) history: History,
    pub(crate) trace: Trace,
    pub(crate) stats: RunStats,
    exactly_once: ExactlyOnce,
    /// Watches every read a node answers from memory, when leases are on.
    pub(crate) leases: Option<LeaseChecker>,
    visibility: Visibility,
    pub(crate) violations: Vec<Violation>,
    /// The switch to configuration changes is due: it comes right after the next commit is
    /// answered (or at the latest [`SWITCH_WAIT_MAX`] later).
    switch_due: bool,
    /// The switch to configuration changes is under way: the operator has stopped taking
    /// requests until it is done (see [`World::switch_to_changes`]).
    draining: bool,
    /// Tries of the switch so far, each refused while a node held a pinned share in doubt.
    switch_tries: u32,
    /// The planted bug of the run, if any (the switch's check is the world's own).
    canary: Option<Canary>,
}

impl World {
    pub(crate) fn new(
        seed: u64,
        mut rng: ChaCha8Rng,
        params: Params,
        canary: Option<Canary>,
        trace: TraceMode,
    ) -> World {
        let mut lasting = ChaCha8Rng::seed_from_u64(seed);
        lasting.set_stream(8);
        let offsets: Vec<u64> = (0..params.nodes)
            .map(|_| {
                if params.clock_offset_max.is_zero() {
                    0
                } else {
                    between(&mut lasting, Duration::ZERO, params.clock_offset_max)
                }
            })
            .collect();
        let mut nodes: Vec<SimNode> =
            (0..params.nodes).map(|i| SimNode::new(i, seed, &params, canary, &mut rng, offsets[i])).collect();
        // Where leases are tested, half the runs put every clock at an edge of the drift bound,
        // fast or slow: where a lease's margin is thinnest (uniform rates rarely get there).
        if params.minority_faults && params.clock_skew_ppm > 0 && chance(&mut lasting, 0.5) {
            let ppm = i64::from(params.clock_skew_ppm);
            for (node, offset) in nodes.iter_mut().zip(&offsets) {
                let skew = if lasting.next_u64() % 2 == 0 { ppm } else { -ppm };
                node.clock = Clock::new(skew, *offset);
            }
        }
        let clients = (0..params.clients).map(|c| SimClient::new(c, &params)).collect();
        let mut side = ChaCha8Rng::seed_from_u64(seed);
        side.set_stream(2);
        let mut wide = ChaCha8Rng::seed_from_u64(seed);
        wide.set_stream(4);
        let mut rich = ChaCha8Rng::seed_from_u64(seed);
        rich.set_stream(6);
        let mut adds = ChaCha8Rng::seed_from_u64(seed);
        adds.set_stream(10);
        let mut starts = ChaCha8Rng::seed_from_u64(seed);
        starts.set_stream(12);
        let mut links = ChaCha8Rng::seed_from_u64(seed);
        links.set_stream(14);
        let mut lasting_links = ChaCha8Rng::seed_from_u64(seed);
        lasting_links.set_stream(16);
        let n = params.nodes;
        let params_leases = params.leases;
        let lease_duration = dkv_core::Timing::default().lease_duration;
        World {
            rng,
            side,
            wide,
            rich,
            lasting,
            adds,
            starts,
            links,
            lasting_links,
            faults: params.faults.clone(),
            first_start_over: false,
            params,
            script: None,
            suppressed: BTreeSet::new(),
            now: 0,
            events: EventQueue::new(),
            nodes,
            outputs: Vec::new(),
            clients,
            retired_clients: Vec::new(),
            blocked: vec![vec![false; n]; n],
            cut: None,
            sides: Vec::new(),
            sends: Vec::new(),
            contended: Vec::new(),
            healed_at: None,
            configurations: BTreeMap::new(),
            started_at: Vec::new(),
            history: History::default(),
            trace: Trace::new(trace),
            stats: RunStats::default(),
            exactly_once: ExactlyOnce::new(n),
            leases: params_leases.then(|| LeaseChecker::new(n, lease_duration)),
            visibility: Visibility::new(n, !params_leases),
            switch_due: false,
            draining: false,
            switch_tries: 0,
            canary,
            violations: Vec::new(),
        }
    }

    /// Takes fault decisions from `script` instead of the rng: every message between nodes
    /// consumes a byte (low nibble 0: lost, 1: duplicated, 2: the sender crashes right after; high
    /// nibble: delay), and every completed client operation consumes one that may crash a node,
    /// start a partition or end one. The cluster heals when the script runs out.
    pub(crate) fn set_script(&mut self, script: Vec<u8>) {
        self.faults.loss = 0.0;
        self.faults.duplication = 0.0;
        self.faults.crash_every = None;
        self.faults.partition_every = None;
        // The faults added after the scripts were defined stay off, so a script replays as it did.
        self.faults.link_cut = 0.0;
        self.faults.lasting_link_cut = 0.0;
        self.faults.garbage_tail = 0.0;
        self.faults.unsynced_flip = 0.0;
        self.faults.synced_flip = 0.0;
        self.faults.cluster_crash_every = None;
        self.faults.crash_near_io = 0.0;
        self.faults.pause_every = None;
        self.faults.permanent_crashes = 0;
        self.faults.absence_every = None;
        self.faults.lasting_partition_every = None;
        self.faults.init_first_start = false;
        self.script = Some(FaultScript { bytes: script, next: 0 });
    }

    /// Suppresses drawn faults by number, so a shrinker can find the faults a failure needs.
    pub(crate) fn set_suppressed(&mut self, suppressed: BTreeSet<u64>) {
        self.suppressed = suppressed;
    }

    /// Numbers a drawn fault that is about to happen and says whether it may; the trace's
    /// lines name it by its number (`what` describes it). Every draw that led to it is made
    /// either way, so suppressing a fault changes the run only from there on.
    fn fault_allowed(&mut self, what: impl FnOnce(&World) -> String) -> bool {
        let number = self.stats.faults + self.stats.faults_suppressed;
        let allowed = !self.suppressed.contains(&number);
        if allowed {
            self.stats.faults += 1;
        } else {
            self.stats.faults_suppressed += 1;
        }
        let line = self.trace.keeps_lines().then(|| what(self));
        if let Some(line) = line {
            let verdict = if allowed { "" } else { " (suppressed)" };
            self.trace.note(self.now, &format!("fault #{number}{verdict}: {line}"));
        }
        allowed
    }

    /// The script's next decision; `None` once it ran out (which heals the cluster) or after
    /// the heal.
    fn script_byte(&mut self) -> Option<u8> {
        if self.healed_at.is_some() {
            return None;
        }
        let script = self.script.as_mut()?;
        let byte = script.bytes.get(script.next).copied();
        script.next += 1;
        if byte.is_none() {
            self.heal();
        }
        byte
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.events.push(at, event);
    }

    /// Whether the first start of a cluster made with `--init` (`Faults::init_first_start`) is
    /// still under way: some node has not yet been seen done bootstrapping. Once over, it stays
    /// over (later bootstraps are a lost data dir's, and are faults of their own).
    pub(crate) fn first_start_under_way(&mut self) -> bool {
        if !self.first_start_over {
            self.first_start_over = !self.faults.init_first_start || self.nodes.iter().all(|n| n.began);
        }
        !self.first_start_over
    }

    /// Runs the world until, after the heal, every client is done and every node quiescent (or
    /// until a bound cuts the run off), then judges liveness.
    pub(crate) fn run(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
        for c in 0..self.clients.len() {
            let at = between(&mut self.rng, Duration::ZERO, Duration::from_millis(1));
            self.schedule(at, Event::ClientNext { client: c });
        }
        if let Some(every) = self.faults.crash_every {
            let at = around(&mut self.rng, every);
            self.schedule(at, Event::Crash);
        }
        if let Some(every) = self.faults.partition_every {
            let at = around(&mut self.rng, every);
            self.schedule(at, Event::PartitionStart);
        }
        if let Some(every) = self.faults.cluster_crash_every {
            let at = around(&mut self.wide, every);
            self.schedule(at, Event::CrashAll);
        }
        if let Some(every) = self.faults.pause_every {
            let at = around(&mut self.wide, every);
            self.schedule(at, Event::Pause);
        }
        if let Some(switch) = self.faults.switch_to_changes {
            self.schedule(switch.at.as_nanos() as u64, Event::SwitchDue);
        }
        let fault_phase = between(&mut self.rng, Duration::from_millis(200), Duration::from_secs(10));
        let fault_phase = self.faults.fault_phase.map_or(fault_phase, |phase| phase.as_nanos() as u64);
        self.schedule(fault_phase, Event::Heal);
        self.schedule_lasting_faults();
        self.note_sides();

        while let Some((at, event)) = self.events.pop() {
            self.now = at;
            self.stats.events += 1;
            if self.stats.events > EVENTS_MAX {
                break;
            }
            if let Some(healed) = self.healed_at {
                if self.now > healed + LIVENESS_BOUND.as_nanos() as u64 * 2 {
                    break;
                }
            }
            self.handle(event);
            self.note_sides();
            if self.healed_at.is_some() && self.finished() {
                break;
            }
        }
        self.stats.virtual_nanos = self.now;
        self.stats.commits = self.exactly_once.applications();
        (self.stats.visible_on_every_yes, self.stats.inferred_commits) = self.visibility.with_changes_on();
        self.stats.completions_evicted +=
            self.nodes.iter().filter_map(|n| n.node.as_ref()).map(|node| node.stats().completions_evicted).sum::<u64>();
        self.check_end();
        // After liveness has judged the requests as the clients saw them: what the disks know
        // settles the outcomes the clients never heard.
        let settled = self.healed_at.is_some() && self.finished();
        let World { history, exactly_once, .. } = self;
        history.settle_unknown(|request| exactly_once.applied_anywhere(request), settled);
    }

    fn finished(&self) -> bool {
        let latest = self.latest_epoch();
        self.clients.iter().all(SimClient::done)
            && self.nodes.iter().all(|n| {
                n.doomed
                    || n.node.as_ref().is_some_and(|n| {
                        n.is_quiescent() && !n.stands_outside() && Some(n.configuration().epoch) == latest
                    })
            })
    }

    /// The latest epoch a node that is up is in (none is doomed to stay down).
    fn latest_epoch(&self) -> Option<dkv_core::Epoch> {
        let up = self.nodes.iter().filter(|n| !n.doomed).filter_map(|n| n.node.as_ref());
        up.map(|node| node.configuration().epoch).max()
    }

    fn handle(&mut self, event: Event) {
        if let Some(node) = self.held_for(&event) {
            return self.nodes[node].held.push(event);
        }
        match event {
            Event::Deliver { from, to, message } => self.deliver(from, to, message),
            Event::ToNode { node, client, request } => self.request_arrives(node, client, request),
            Event::ToClient { client, reply } => self.reply_arrives(client, reply),
            Event::NodeTimer { node } => self.timer_fires(node),
            Event::Fsync { node, generation, through } => self.fsync_completes(node, generation, through),
            Event::LazySync { node, generation } => self.lazy_sync_due(node, generation),
            Event::ClientNext { client } => self.next_op(client),
            Event::ClientRetry { client, seq, attempt } => self.retry_due(client, seq, attempt),
            Event::Crash => self.crash(),
            Event::CrashNode { node } => self.crash_node(node),
            Event::CrashNearIo { node, generation } => self.crash_near_io(node, generation),
            Event::CrashAll => self.crash_all(),
            Event::SwitchDue => {
                self.switch_due = true;
                self.schedule(self.now + SWITCH_WAIT_MAX.as_nanos() as u64, Event::SwitchWaitedLongEnough);
            }
            // No commit was answered meanwhile: the switch comes now.
            Event::SwitchWaitedLongEnough if self.switch_due => {
                self.switch_due = false;
                self.switch_to_changes();
            }
            Event::SwitchWaitedLongEnough => {}
            Event::SwitchToChanges => self.switch_to_changes(),
            Event::Pause => self.pause(),
            Event::Resume { node, generation } => self.resume(node, generation),
            Event::Restart { node } => self.restart(node),
            Event::PartitionStart => self.partition_start(),
            Event::Isolate { node } => self.isolate(node),
            Event::PartitionEnd => self.partition_end(),
            Event::Heal => self.heal(),
            // Lasting faults wait for the first start to end: bootstrapping a new cluster needs
            // every node once (docs/protocol.md §7.1), so a node gone for good or away before it
            // ends holds the first start back by design, which is no liveness failure.
            Event::PermanentCrash { .. }
            | Event::AbsenceStart
            | Event::LastingPartitionStart
            | Event::CutAdded { .. }
                if self.first_start_under_way() =>
            {
                self.schedule(self.now + FIRST_START_RETRY_NANOS, event)
            }
            Event::PermanentCrash { node } => self.permanent_crash(node),
            Event::AbsenceStart => self.absence_start(),
            Event::AbsenceEnd { node } => self.absence_end(node),
            Event::CatchUp { node, generation, from, epoch } => self.catch_up(node, generation, from, epoch),
            Event::LastingPartitionStart => self.lasting_partition_start(),
            Event::CutAdded { node } => self.cut_added(node),
            Event::LastingPartitionEnd => self.lasting_partition_end(),
        }
    }

    // ---- Nodes: inputs in, outputs out ----

    fn deliver(&mut self, from: NodeId, to: NodeId, message: Message) {
        let i = usize::from(to.0);
        let generation = self.nodes[i].generation;
        self.trace.event(
            self.now,
            Tag::Deliver,
            &[
                u64::from(from.0),
                u64::from(to.0),
                message.txn().map_or(0, txn_word),
                message_word(&message),
                generation,
            ],
            || format!("{to} <- {from}  {} {}", message.kind(), about(&message)),
        );
        let Some(node) = self.nodes[i].node.as_ref() else { return };
        if let (Some(checker), Message::LeaseGrant { request, epoch }) = (self.leases.as_mut(), &message) {
            let life = (node.incarnation(), node.configuration().epoch);
            checker.on_grant(i, life, &self.nodes[i].clock, from, *request, *epoch);
        }
        self.stats.messages_delivered += 1;
        self.input(i, Input::Message { from, message });
    }

    fn request_arrives(&mut self, node: usize, client: usize, request: Request) {
        self.trace.event(self.now, Tag::Request, &[node as u64, client as u64, request.id.seq], || {
            format!("n{node} <- client {}  request #{}", self.clients[client].id.0, request.id.seq)
        });
        // Stopped, or not taking requests while the cluster drains for its switch.
        if self.nodes[node].node.is_none() || self.draining {
            return;
        }
        self.stats.messages_delivered += 1;
        self.input(node, Input::Request { reply_to: ReplyTo(client as u64), request });
    }

    fn timer_fires(&mut self, node: usize) {
        if self.nodes[node].timer_at != Some(self.now) || self.nodes[node].node.is_none() {
            return; // moved or cancelled
        }
        if self.nodes[node].paused {
            return; // it fires when the node resumes
        }
        self.trace.event(self.now, Tag::Timeout, &[node as u64], || format!("n{node} timeout"));
        self.nodes[node].timer_at = None;
        self.input(node, Input::Timeout);
    }

    fn fsync_completes(&mut self, node: usize, generation: u64, through: Lsn) {
        if self.nodes[node].generation != generation || self.nodes[node].node.is_none() {
            return; // the node crashed while this fsync was in flight
        }
        self.trace.event(self.now, Tag::Durable, &[node as u64, through.0], || {
            format!("n{node} durable through {}", through.0)
        });
        self.make_durable(node, |disk, observe| disk.sync(through, observe));
        self.nodes[node].disk.sync_in_flight = None;
        self.input(node, Input::Durable { through });
    }

    fn lazy_sync_due(&mut self, node: usize, generation: u64) {
        let n = &mut self.nodes[node];
        if n.generation != generation || n.node.is_none() || n.disk.lazy_sync_at != Some(self.now) {
            return; // a crash or an earlier sync overtook it
        }
        if n.paused {
            return; // it starts when the node resumes
        }
        n.disk.lazy_sync_at = None;
        // With an fsync in flight, what it does not cover is looked at again when it completes.
        if n.disk.sync_in_flight.is_none() {
            self.trace.event(self.now, Tag::LazySync, &[node as u64], || format!("n{node} lazy sync"));
            self.start_sync(node);
        }
    }

    /// Hands `input` to node `i`, which is up, and takes in what the node does in response.
    fn input(&mut self, i: usize, input: Input) {
        let now = self.local_now(i);
        self.nodes[i].node.as_mut().expect("inputs go only to nodes that are up").handle(now, input);
        self.after_input(i);
    }

    fn local_now(&self, node: usize) -> dkv_core::Time {
        self.nodes[node].clock.local(self.now)
    }

    /// Drains a node's outputs into the world and reschedules its timer.
    fn after_input(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.began |= n.node.as_ref().is_some_and(|node| !node.is_bootstrapping());
        // A node whose data dir was lost, bootstrapped again as a member: the cluster held
        // nothing (every other node said so), so it lacks nothing.
        if n.lacks_state && n.node.as_ref().is_some_and(|node| node.vouches_for_its_log() && !node.is_bootstrapping()) {
            n.lacks_state = false;
        }
        let Some(node) = self.nodes[i].node.as_mut() else { return };
        let from = node.id();
        // Debug builds (every `cargo test`) check the node's bookkeeping after every input;
        // release sweeps check it at the end of each run.
        #[cfg(debug_assertions)]
        if let Err(e) = node.check_invariants() {
            self.violations.push(Violation::new("invariants", format!("n{i}: {e}")));
        }
        let mut outputs = std::mem::take(&mut self.outputs);
        while let Some(output) = node.poll_output() {
            outputs.push(output);
        }
        let deadline = node.deadline();
        let configuration = node.configuration();
        if self.nodes[i].configuration != Some(configuration) {
            self.nodes[i].configuration = Some(configuration);
            let words = [i as u64, configuration.epoch.0, u64::from(configuration.members.len() as u32)];
            self.trace.event(self.now, Tag::Configuration, &words, || format!("n{i} is in {configuration}"));
            self.on_configuration_seen(configuration);
        }
        for output in outputs.drain(..) {
            match output {
                Output::Send { to, message } => self.send(from, to, message),
                Output::Reply { to, reply } => {
                    self.visibility.observe_reply(&reply, &mut self.violations);
                    // The switch, once due, stops the cluster right after a commit is answered:
                    // where a commit whose decision is on no disk yet can be caught.
                    if self.switch_due && matches!(reply.outcome, Outcome::Committed(_)) {
                        self.switch_due = false;
                        self.schedule(self.now, Event::SwitchToChanges);
                    }
                    let served =
                        matches!(reply.outcome, Outcome::Value { .. } | Outcome::NotFound | Outcome::Scanned { .. });
                    let not_served = matches!(reply.outcome, Outcome::NotServing(_));
                    self.stats.reads_not_served += u64::from(not_served);
                    if let Some(checker) = self.leases.as_mut() {
                        let local = self.nodes[i].clock.local(self.now);
                        if served {
                            self.stats.lease_reads += 1;
                            if let Some(violation) = checker.on_read_served(i, configuration, self.now, local) {
                                self.violations.push(violation);
                            }
                        } else if not_served {
                            checker.on_read_not_served(i, self.now);
                        }
                    }
                    let client = to.0 as usize;
                    self.client_link(Event::ToClient { client, reply });
                }
                Output::CatchUp { from, epoch } => {
                    let from = usize::from(from.0);
                    self.trace.event(self.now, Tag::CatchUp, &[i as u64, from as u64, epoch.0, 0], || {
                        format!("n{i} asks to catch up from n{from} through epoch {epoch}")
                    });
                    let generation = self.nodes[i].generation;
                    let at = self.now + CATCH_UP_NANOS;
                    self.schedule(at, Event::CatchUp { node: i, generation, from, epoch });
                }
                Output::Persist { lsn, record, prompt } => {
                    if matches!(record, Record::SnapshotEnd { .. }) {
                        self.stats.snapshots += 1;
                    }
                    self.visibility.observe_emitted(i, &record, &mut self.violations);
                    self.nodes[i].disk.append(lsn, record, prompt);
                }
            }
        }
        self.outputs = outputs;
        self.group_commit(i);
        let at = deadline.map(|d| self.nodes[i].clock.global(d).max(self.now));
        if at != self.nodes[i].timer_at {
            self.nodes[i].timer_at = at;
            if let Some(at) = at {
                self.schedule(at, Event::NodeTimer { node: i });
            }
        }
    }

    /// Group commit, as dkv-net does it: one fsync covers everything written before it starts;
    /// records that may wait start one only after LAZY_SYNC_DELAY, unless a record that may not
    /// comes along first.
    fn group_commit(&mut self, i: usize) {
        let disk = &self.nodes[i].disk;
        if disk.sync_in_flight.is_some() || disk.pending.is_empty() {
            return;
        }
        if disk.prompt.is_some() {
            self.start_sync(i);
        } else if disk.lazy_sync_at.is_none() {
            let at = self.now + LAZY_SYNC_DELAY.as_nanos() as u64;
            self.nodes[i].disk.lazy_sync_at = Some(at);
            let generation = self.nodes[i].generation;
            self.schedule(at, Event::LazySync { node: i, generation });
        }
    }

    /// Starts an fsync of everything node `i` has written.
    fn start_sync(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(&(last, _)) = n.disk.pending.last() else { return };
        n.disk.sync_in_flight = Some(last);
        n.disk.lazy_sync_at = None;
        let generation = n.generation;
        let at = self.now + between(&mut self.rng, self.faults.fsync_min, self.faults.fsync_max);
        self.schedule(at, Event::Fsync { node: i, generation, through: last });
        // Now and then the node crashes just before this fsync completes: its records are
        // written, maybe partly on disk, and nothing it did since is durable.
        if self.healed_at.is_none() && chance(&mut self.wide, self.faults.crash_near_io) {
            let before = between(&mut self.wide, Duration::from_nanos(1), Duration::from_millis(1));
            let crash_at = at.saturating_sub(before).max(self.now);
            self.schedule(crash_at, Event::CrashNearIo { node: i, generation });
        }
    }

    /// Runs `write` on node `i`'s disk and shows every record it makes durable to the
    /// exactly-once checker.
    fn make_durable(&mut self, i: usize, write: impl FnOnce(&mut Disk, &mut dyn FnMut(&Record))) {
        let World { nodes, exactly_once, visibility, history, violations, .. } = self;
        write(&mut nodes[i].disk, &mut |record| {
            visibility.observe_durable(i, record);
            exactly_once.observe_durable(i, record, history, violations)
        });
    }

    // ---- The network ----

    /// Traffic between nodes: lost, duplicated and delayed at the fault rates, and cut by
    /// partitions.
    fn send(&mut self, from: NodeId, to: NodeId, message: Message) {
        if !self.reaches(usize::from(from.0), usize::from(to.0)) {
            return;
        }
        if self.script.is_some() {
            return self.send_scripted(from, to, message);
        }
        let (kind, txn) = (message.kind(), about(&message));
        let what = |fate: &'static str| {
            let txn = txn.clone();
            move |_: &World| format!("{from} -> {to}  {kind} {txn} {fate}")
        };
        if chance(&mut self.rng, self.faults.loss) && self.fault_allowed(what("lost")) {
            return;
        }
        if chance(&mut self.rng, self.faults.duplication) && self.fault_allowed(what("duplicated")) {
            let at =
                self.now + between(&mut self.rng, self.faults.delay_min, self.faults.delay_max) + self.long_delay();
            self.schedule(at, Event::Deliver { from, to, message: message.clone() });
        }
        let at = self.now + between(&mut self.rng, self.faults.delay_min, self.faults.delay_max) + self.long_delay();
        self.schedule(at, Event::Deliver { from, to, message });
        // Now and then the sender crashes within 2 ms after sending: what it told its peers
        // must already be durable.
        if self.healed_at.is_none() && chance(&mut self.wide, self.faults.crash_near_io) {
            let node = usize::from(from.0);
            let at = self.now + between(&mut self.wide, Duration::ZERO, Duration::from_millis(2));
            let generation = self.nodes[node].generation;
            self.schedule(at, Event::CrashNearIo { node, generation });
        }
    }

    /// [`World::send`] with the fault script deciding the message's fate.
    fn send_scripted(&mut self, from: NodeId, to: NodeId, message: Message) {
        let Some(byte) = self.script_byte() else {
            let at = self.now + self.faults.delay_min.as_nanos() as u64;
            return self.schedule(at, Event::Deliver { from, to, message });
        };
        let span = (self.faults.delay_max - self.faults.delay_min).as_nanos() as u64;
        let at = self.now + self.faults.delay_min.as_nanos() as u64 + span * u64::from(byte >> 4) / 15;
        match byte & 0x0f {
            0 => {}
            1 => {
                self.schedule(at, Event::Deliver { from, to, message: message.clone() });
                self.schedule(at + 1, Event::Deliver { from, to, message });
            }
            2 => {
                // The sender crashes at this same moment, after its current step: with its
                // latest records possibly not yet durable.
                self.schedule(at, Event::Deliver { from, to, message });
                self.schedule(self.now, Event::CrashNode { node: usize::from(from.0) });
            }
            _ => self.schedule(at, Event::Deliver { from, to, message }),
        }
    }

    /// Before the heal, three messages in ten thousand are held up for up to three seconds: far
    /// longer than any timeout, so it arrives after its transaction was decided and forgotten.
    fn long_delay(&mut self) -> u64 {
        if self.healed_at.is_none()
            && self.params.has_faults()
            && chance(&mut self.side, 0.0003)
            && self.fault_allowed(|_| "a message is held up for long".into())
        {
            between(&mut self.side, Duration::from_millis(100), Duration::from_secs(3))
        } else {
            0
        }
    }

    /// Client traffic: lossy and reordered like UDP, but not cut by partitions. In runs with
    /// `Params::minority_faults` it loses and duplicates nothing: a request's time to complete is
    /// then judged against a bound (see `liveness::check_during_faults`), and that should be the
    /// protocol's doing, not a run of lost requests.
    fn client_link(&mut self, event: Event) {
        if self.params.minority_faults {
            let at = self.now + between(&mut self.rng, self.faults.delay_min, self.faults.delay_max);
            return self.schedule(at, event);
        }
        let what = |fate: &'static str| {
            let event = &event;
            move |w: &World| match event {
                Event::ToNode { node, client, request } => {
                    format!("client {} -> n{node}  request #{} {fate}", w.clients[*client].id.0, request.id.seq)
                }
                Event::ToClient { client, reply } => {
                    format!("reply #{} to client {} {fate}", reply.id.seq, w.clients[*client].id.0)
                }
                _ => format!("client traffic {fate}"),
            }
        };
        if chance(&mut self.rng, self.faults.loss) && self.fault_allowed(what("lost")) {
            return;
        }
        if chance(&mut self.rng, self.faults.duplication) && self.fault_allowed(what("duplicated")) {
            let at = self.now + between(&mut self.rng, self.faults.delay_min, self.faults.delay_max);
            self.schedule(at, event.clone());
        }
        let at = self.now + between(&mut self.rng, self.faults.delay_min, self.faults.delay_max);
        self.schedule(at, event);
    }

    // ---- Clients ----

    /// The client issues its next operation; when every client has issued all of theirs, the
    /// cluster heals.
    fn next_op(&mut self, client: usize) {
        let c = &mut self.clients[client];
        if c.remaining == 0 {
            if self.healed_at.is_none() && self.clients.iter().all(SimClient::done) {
                self.heal();
            }
            return;
        }
        c.remaining -= 1;
        c.try_agains = 0;
        c.seq += 1;
        let (id, seq) = (c.id, c.seq);
        let operation = workload::next_operation(&mut self.rng, &mut self.rich, &self.params, id, seq);
        let kind = match &operation {
            Operation::Get { key } => OpKind::Get { key: key.clone() },
            Operation::Txn { ops } => OpKind::Txn { ops: ops.clone() },
            Operation::Scan { start, end, limit, keys_only } => {
                OpKind::Scan { start: start.clone(), end: end.clone(), limit: *limit, keys_only: *keys_only }
            }
        };
        self.history.ops.push(Op {
            client: id,
            seq,
            kind,
            invoke: self.now,
            response: None,
            result: OpResult::Unknown,
            attempts: 0,
            abandoned_at: None,
        });
        let request = Request { id: RequestId { client: id, seq }, operation };
        self.clients[client].in_flight = Some(InFlight { op: self.history.ops.len() - 1, request, attempt: 0 });
        self.send_attempt(client, false);
    }

    /// Sends (or resends, same request id) the client's request in flight, maybe to another node.
    fn send_attempt(&mut self, client: usize, retry: bool) {
        if self.params.minority_faults {
            // Fail over, as dkv's client library does: to the next node, after an answer that
            // asks for another node, or after two sends in a row that got no answer. (A node
            // may keep a request longer than the client's timeout, retrying its conflicts: a
            // client that left it after one timeout would run the request at two coordinators,
            // which refuse each other as "in progress".)
            let c = &mut self.clients[client];
            if retry && (c.fail_over || c.unanswered >= CLIENT_SENDS_BEFORE_FAIL_OVER) {
                c.node = (c.node + 1) % self.nodes.len();
                c.unanswered = 0;
            }
            c.fail_over = false;
            c.unanswered += 1;
        } else if retry && chance(&mut self.rng, 0.5) {
            self.clients[client].node = index(&mut self.rng, self.nodes.len());
        }
        let c = &mut self.clients[client];
        let Some(in_flight) = c.in_flight.as_mut() else { return };
        in_flight.attempt += 1;
        let (request, attempt, node) = (in_flight.request.clone(), in_flight.attempt, c.node);
        self.history.ops[in_flight.op].attempts = attempt;
        if self.params.minority_faults {
            self.sends.push(liveness::Sent { op: in_flight.op, at: self.now, node });
        }
        let seq = request.id.seq;
        self.client_link(Event::ToNode { node, client, request });
        let at = self.now + CLIENT_TIMEOUT.as_nanos() as u64;
        self.schedule(at, Event::ClientRetry { client, seq, attempt });
    }

    /// The wait after one send of a request is over: unless the request has moved on since,
    /// the client sends it again, or now and then gives up on it.
    fn retry_due(&mut self, client: usize, seq: u64, attempt: u32) {
        let c = &self.clients[client];
        if !c.in_flight.as_ref().is_some_and(|f| f.request.id.seq == seq && f.attempt == attempt) {
            return;
        }
        // A client never sends a request later than its window after it first sent it (the
        // nodes keep its completion record only so long): it gives up instead. With the
        // default bounds the window is far longer than any run needs, and not drawn on.
        let op = c.in_flight.as_ref().map_or(0, |f| f.op);
        let window = self.params.tight_bounds.map(|t| t.client_window.as_nanos() as u64);
        if window.is_some_and(|window| self.now >= self.history.ops[op].invoke + window) {
            self.abandon(client);
            return;
        }
        // Now and then a client gives up and moves on: the request may still take effect
        // later, and its late replies and retransmissions become stale.
        if self.healed_at.is_none() && !c.abandoned && chance(&mut self.side, 0.05) {
            self.abandon(client);
        } else {
            self.send_attempt(client, true);
        }
    }

    fn reply_arrives(&mut self, client: usize, reply: Reply) {
        let outcome = outcome_word(&reply.outcome);
        self.trace.event(self.now, Tag::Reply, &[client as u64, reply.id.seq, outcome], || {
            format!("client {} <- reply #{}: {:?}", self.clients[client].id.0, reply.id.seq, reply.outcome)
        });
        self.stats.messages_delivered += 1;
        let Some(in_flight) = self.clients[client].in_flight.as_ref() else { return };
        if in_flight.request.id != reply.id {
            return; // a late reply to an earlier request
        }
        let (op, attempt) = (in_flight.op, in_flight.attempt);
        self.clients[client].fail_over = asks_to_fail_over(&reply.outcome);
        self.clients[client].unanswered = 0;
        if self.params.minority_faults && lost_to_other_work(&reply.outcome) {
            self.contended.push(liveness::Contended { op, at: self.now });
        }
        // "Not serving, ask another node": the client fails over, as dkv-net's does (with
        // minority faults on, `send_attempt` does it, from `fail_over`).
        if !self.params.minority_faults && matches!(reply.outcome, Outcome::NotServing(_)) {
            let c = &mut self.clients[client];
            c.node = (c.node + 1) % self.nodes.len();
        }
        match result_of(&reply.outcome) {
            Some(result) => self.complete(client, op, result),
            None => self.back_off(client, reply.id.seq, attempt),
        }
    }

    /// The client's request in flight, operation `op` in the history, has its definite result.
    fn complete(&mut self, client: usize, op: usize, result: OpResult) {
        let o = &mut self.history.ops[op];
        o.result = result;
        o.response = Some(self.now);
        self.stats.ops_completed += 1;
        self.clients[client].in_flight = None;
        if self.script.is_some() {
            match self.script_byte() {
                Some(b) if b < 0x20 => self.crash_node((b as usize) % self.nodes.len()),
                Some(b) if b < 0x28 => self.partition_start(),
                Some(b) if b < 0x30 => self.partition_end(),
                _ => {}
            }
        }
        // Now and then the client goes away and a new one takes its place (tight bounds only:
        // it is how completion records come to be evicted).
        let new_client = self.params.tight_bounds.map_or(0.0, |t| t.new_client_chance);
        if chance(&mut self.wide, new_client) && self.room_for_new_client() {
            let c = &mut self.clients[client];
            self.retired_clients.push((c.id, self.now));
            c.session += 1;
            c.id = client_id(client, c.session);
            c.seq = 0;
        }
        let mut at = self.now + between(&mut self.rng, Duration::ZERO, Duration::from_millis(2));
        if !self.params.think_max.is_zero() {
            at += between(&mut self.lasting, Duration::ZERO, self.params.think_max);
        }
        self.schedule(at, Event::ClientNext { client });
    }

    /// Whether a new client may take an old one's place without being shut out: the nodes keep
    /// a completion record for every client that completed within the retention (as their
    /// clocks see it: a tenth more covers their rates), so the clients working now and those
    /// that left within it must fit the table, the new one included. A deployment is sized
    /// the same way (see `dkv_core::completions`).
    fn room_for_new_client(&mut self) -> bool {
        let Some(tight) = self.params.tight_bounds else { return false };
        let recent = (tight.completion_retention + tight.completion_retention / 10).as_nanos() as u64;
        let now = self.now;
        self.retired_clients.retain(|&(_, left)| left + recent > now);
        self.clients.len() + self.retired_clients.len() < tight.completions_max
    }

    /// "Try again": back off, then retry the same request. The backoff window doubles with
    /// each answer (full jitter), like dkv-net's client: with a fixed window, clients that keep
    /// colliding on a busy cluster can keep colliding forever.
    fn back_off(&mut self, client: usize, seq: u64, attempt: u32) {
        let c = &mut self.clients[client];
        let window = TRY_AGAIN_BACKOFF_FIRST.saturating_mul(1 << c.try_agains.min(10)).min(TRY_AGAIN_BACKOFF_MAX);
        c.try_agains += 1;
        let at = self.now + between(&mut self.rng, Duration::from_millis(1), window);
        self.schedule(at, Event::ClientRetry { client, seq, attempt });
    }

    fn abandon(&mut self, client: usize) {
        let Some(InFlight { op, request, .. }) = self.clients[client].in_flight.take() else { return };
        self.clients[client].abandoned = true;
        self.history.ops[op].abandoned_at = Some(self.now);
        self.trace.event(self.now, Tag::Abandon, &[client as u64, request.id.seq], || {
            format!("client {} gives up on request #{}", self.clients[client].id.0, request.id.seq)
        });
        self.schedule(self.now, Event::ClientNext { client });
    }

    // ---- Crashes, restarts, partitions and the heal ----

    /// Starts node `i` from what its disk holds, as a real server recovers. A log with a
    /// damaged synced record must be refused; the operator then restores it from a backup and
    /// starts the node again.
    fn start_node(&mut self, i: usize) {
        self.started_at.push((self.now, NodeId(i as u8)));
        // A new life holds no lease: its grants went with the last one.
        if let Some(checker) = self.leases.as_mut() {
            checker.forget(i);
        }
        let damaged = self.nodes[i].disk.media_damaged();
        let mark_damage = self.canary != Some(Canary::CutBeforeUnvouched);
        let recovered = match self.nodes[i].disk.recover(mark_damage) {
            Err(RecoverError::Corrupt { offset, reason }) if damaged => {
                self.stats.logs_refused += 1;
                self.trace.event(self.now, Tag::LogRefused, &[i as u64, offset as u64], || {
                    format!("n{i} refuses its log (corrupt at byte {offset}: {reason}); the operator restores it from backup")
                });
                self.nodes[i].disk.restore_backup();
                self.nodes[i].disk.recover(mark_damage)
            }
            other if damaged => {
                let read = match other {
                    Ok(recovered) => format!("read {} records", recovered.records.len()),
                    Err(e) => e.to_string(),
                };
                let message = format!(
                    "n{i} did not refuse a log with a bit flipped in a synced record that has valid records after it ({read})"
                );
                return self.violations.push(Violation::new("recovery", message));
            }
            other => other,
        };
        let mut vouches = true;
        let records = match recovered {
            Ok(recovered) => {
                // A synced record cut off the log may have been acknowledged (§7.4).
                vouches &= recovered.lost_synced.is_none();
                if recovered.torn {
                    self.stats.torn_tails += 1;
                }
                if let Some(lost) = &recovered.lost_synced {
                    // The truncation took a synced record with it: whatever it applied is gone
                    // from this node's log.
                    self.exactly_once.lost(i, lost);
                    self.nodes[i].cut_synced = true;
                }
                recovered.records
            }
            Err(e) => {
                self.violations.push(Violation::new("recovery", format!("n{i} cannot read its log: {e}")));
                return;
            }
        };
        // dkv-net's rule (docs/protocol.md §7.1): records, not files, decide. Once the data dir
        // was lost, every start that finds the log still empty (the last start logged nothing
        // durable: it crashed first, or was still bootstrapping) is one with no records, started
        // with the same command line; a log that holds records speaks for itself.
        let bootstraps = if self.nodes[i].data_lost && records.is_empty() {
            vouches = false;
            self.nodes[i].init_on_restart
        } else {
            self.nodes[i].data_lost = false;
            self.nodes[i].init_on_restart = false;
            // The first start's command line, --init included, kept on restarts.
            records.is_empty() && self.faults.init_first_start
        };
        let now = self.nodes[i].clock.local(self.now);
        let config = self.nodes[i].config.clone();
        let started = if bootstraps {
            if !vouches {
                self.stats.init_restarts += 1;
            }
            Node::start_bootstrapping(config, now)
        } else if vouches {
            Node::start(config, records, now)
        } else {
            Node::start_unvouched(config, records, now)
        };
        match started {
            Ok(node) => {
                self.visibility.observe_start(i, &node, &mut self.violations);
                if self.nodes[i].cut_synced && node.vouches_for_its_log() {
                    let message = format!(
                        "n{i} vouches for its log, from which an earlier start cut a synced record, before it caught up"
                    );
                    self.violations.push(Violation::new("recovery", message));
                }
                self.nodes[i].node = Some(node);
                self.nodes[i].timer_at = None;
                self.trace.event(self.now, Tag::Start, &[i as u64], || format!("n{i} starts"));
                self.after_input(i);
                if std::mem::take(&mut self.nodes[i].crash_in_start) {
                    self.crash_in_start(i);
                }
            }
            Err(e) => self.violations.push(Violation::new("recovery", format!("n{i} cannot recover: {e}"))),
        }
    }

    /// Node `i` takes member `from`'s durable log, adopted through the `Installed` record of
    /// `epoch`, as dkv-net's state transfer does (docs/protocol.md §7.6), and starts again
    /// from it. Nothing happens if either node went down or they cannot reach each other (the
    /// node asks again); a log the adoption refuses is counted, and the node asks again.
    fn catch_up(&mut self, i: usize, generation: u64, from: usize, epoch: dkv_core::Epoch) {
        let up = |w: &World, n: usize| w.nodes[n].node.is_some() && !w.nodes[n].paused;
        if self.nodes[i].generation != generation || self.nodes[i].node.is_none() || from >= self.nodes.len() {
            return;
        }
        // A process frozen mid-transfer goes on with it once it runs again.
        if self.nodes[i].paused {
            let at = self.now + CATCH_UP_NANOS;
            return self.schedule(at, Event::CatchUp { node: i, generation, from, epoch });
        }
        let member = NodeId(from as u8);
        // What a real runtime sees as a failed transfer (no connection, or silence): the node
        // is told, and asks again.
        if !up(self, from) || !self.reaches(i, from) || !self.reaches(from, i) {
            self.stats.catch_ups_failed += 1;
            self.trace.event(self.now, Tag::CatchUp, &[i as u64, from as u64, epoch.0, 3], || {
                format!("n{i} cannot reach n{from} for its state")
            });
            return self.input(i, Input::CatchUpFailed { from: member, epoch, refused: false });
        }
        let me = NodeId(i as u8);
        let adoption = Adoption::new(me, 0).joining(epoch).streamed_by(member).with_canary_of(&self.nodes[i].config);
        let adopted = match adoption.adopt_all(self.nodes[from].disk.transfer_records()) {
            Ok(adopted) => adopted,
            Err(error) => {
                self.stats.catch_ups_failed += 1;
                let words = [i as u64, from as u64, epoch.0, 1];
                self.trace.event(self.now, Tag::CatchUp, &words, || format!("n{i} refuses n{from}'s state: {error}"));
                return self.input(i, Input::CatchUpFailed { from: member, epoch, refused: true });
            }
        };
        self.trace.event(self.now, Tag::CatchUp, &[i as u64, from as u64, epoch.0, 2], || {
            format!("n{i} caught up from n{from} through epoch {epoch} ({} records); it starts again", adopted.len())
        });
        self.stats.catch_ups += 1;
        // The old log is replaced whole: what it held is gone, the adopted records are durable.
        self.halt(i, 0, &CrashDamage::default());
        self.exactly_once.adopted_log(i, from);
        self.nodes[i].data_lost = false;
        self.nodes[i].init_on_restart = false;
        self.nodes[i].lacks_state = false;
        self.nodes[i].cut_synced = false;
        self.nodes[i].held_out = false;
        self.make_durable(i, |disk, observe| {
            for record in &adopted {
                observe(record);
            }
            disk.replace(adopted);
        });
        self.start_node(i);
    }

    /// Crashes a node drawn from the rng, and schedules the next such crash.
    fn crash(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        // Crashes between "persist" and "durable" are where durability bugs hide: most of the
        // time, pick a node with records still waiting for their fsync.
        let unsynced: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some() && !self.nodes[i].disk.pending.is_empty())
            .collect();
        let i = if !unsynced.is_empty() && chance(&mut self.rng, 0.7) {
            unsynced[index(&mut self.rng, unsynced.len())]
        } else {
            index(&mut self.rng, self.nodes.len())
        };
        if self.fault_allowed(|_| format!("n{i} crashes")) {
            self.crash_node(i);
        }
        if let Some(every) = self.faults.crash_every {
            let at = self.now + around(&mut self.rng, every);
            self.schedule(at, Event::Crash);
        }
    }

    /// Crashes node `i` if it is up, and schedules its restart.
    fn crash_node(&mut self, i: usize) {
        if self.healed_at.is_some() || self.nodes[i].node.is_none() {
            return;
        }
        let pending = self.nodes[i].disk.pending.len();
        // Crashes between "persist" and "durable": some records may have reached the disk
        // unreported, and the next one may be torn.
        let survivors = range(&mut self.rng, 0, pending as u64) as usize;
        let tear = chance(&mut self.rng, self.faults.torn_write).then(|| unit(&mut self.rng));
        let damage = self.draw_damage(i, tear, pending > survivors);
        self.trace.event(self.now, Tag::Crash, &[i as u64, survivors as u64], || {
            format!(
                "n{i} crashes ({survivors} of {pending} unsynced records survive{})",
                if tear.is_some() { ", next torn" } else { "" }
            )
        });
        self.halt(i, survivors, &damage);
        let downtime = between(&mut self.rng, Duration::from_millis(1), Duration::from_secs(2));
        self.schedule(self.now + downtime, Event::Restart { node: i });
    }

    /// Node `i`, which is up, stops as a crash stops it: the first `survivors` of its unsynced
    /// records reach the disk, `damage` is done to it, and everything else it held is lost.
    fn halt(&mut self, i: usize, survivors: usize, damage: &CrashDamage) {
        self.make_durable(i, |disk, observe| disk.crash(survivors, damage, observe));
        self.stats.synced_flips += u64::from(self.nodes[i].disk.media_damaged());
        let n = &mut self.nodes[i];
        self.stats.completions_evicted += n.node.as_ref().map_or(0, |node| node.stats().completions_evicted);
        n.node = None;
        n.generation += 1;
        n.timer_at = None;
        // A stopped process can still be killed; what was held for it is lost with it.
        n.paused = false;
        n.held.clear();
        self.stats.crashes += 1;
    }

    /// What a crash of node `i` does to its disk besides losing unsynced records: `tear` from
    /// the main stream (as before these faults existed), the rest from their own stream.
    /// `writing` says whether a record was being written.
    fn draw_damage(&mut self, i: usize, tear: Option<f64>, writing: bool) -> CrashDamage {
        let f = &self.faults;
        let (p_unsynced, p_garbage, p_synced) = (f.unsynced_flip, f.garbage_tail, f.synced_flip);
        let w = &mut self.wide;
        let flip_unsynced = (writing && chance(w, p_unsynced)).then(|| unit(w));
        let garbage = if chance(w, p_garbage) {
            let mut bytes: Vec<u8> = (0..range(w, 1, 64)).map(|_| w.next_u64() as u8).collect();
            if let Some(last) = bytes.last_mut() {
                *last |= 1; // never all zeros: zeros are preallocation, not garbage
            }
            bytes
        } else {
            Vec::new()
        };
        let flip_synced = chance(w, p_synced).then(|| (unit(w), unit(w)));
        let damage = CrashDamage { tear_at: tear, flip_unsynced, garbage, flip_synced };
        self.stats.unsynced_flips += u64::from(damage.flip_unsynced.is_some());
        self.stats.garbage_tails += u64::from(!damage.garbage.is_empty());
        if flip_unsynced.is_some() || !damage.garbage.is_empty() || flip_synced.is_some() {
            let words = [
                i as u64,
                u64::from(flip_unsynced.is_some()),
                damage.garbage.len() as u64,
                u64::from(flip_synced.is_some()),
            ];
            self.trace.event(self.now, Tag::DiskDamage, &words, || {
                format!(
                    "n{i}'s disk: {}{} garbage bytes after the last write{}",
                    if flip_unsynced.is_some() { "a bit flipped in the record being written, " } else { "" },
                    damage.garbage.len(),
                    if flip_synced.is_some() {
                        ", a bit flipped in a synced record (if one has a valid record after it)"
                    } else {
                        ""
                    }
                )
            });
        }
        damage
    }

    /// Node `i`, just started after an absence that damaged its last synced record, crashes
    /// before anything its start logged is durable (`Faults::start_crash`), and restarts a
    /// little later: the cut of the damage must have left its mark on the disk, or the next
    /// start vouches for a log that lost a record (docs/protocol.md §4).
    fn crash_in_start(&mut self, i: usize) {
        if self.healed_at.is_some() || !self.fault_allowed(|_| format!("n{i} crashes in its start")) {
            return;
        }
        self.stats.start_crashes += 1;
        self.trace.event(self.now, Tag::StartCrash, &[i as u64], || {
            format!("n{i} crashes in its start, before it synced anything")
        });
        self.halt(i, 0, &CrashDamage::default());
        let downtime = between(&mut self.starts, Duration::from_millis(1), Duration::from_secs(2));
        self.schedule(self.now + downtime, Event::Restart { node: i });
    }

    /// A crash timed next to a send or an fsync of node `i`, unless the node crashed since.
    fn crash_near_io(&mut self, i: usize, generation: u64) {
        if self.nodes[i].generation != generation || self.nodes[i].node.is_none() || self.healed_at.is_some() {
            return;
        }
        if !self.fault_allowed(|_| format!("n{i} crashes next to a send or an fsync")) {
            return;
        }
        self.stats.near_io_crashes += 1;
        self.crash_node(i);
    }

    /// Every node crashes at once, each losing what it had not synced; schedules the next such
    /// crash.
    fn crash_all(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        if self.fault_allowed(|_| "every node crashes".into()) {
            self.stats.cluster_crashes += 1;
            self.trace.event(self.now, Tag::CrashAll, &[], || "every node crashes".into());
            for i in 0..self.nodes.len() {
                self.crash_node(i);
            }
        }
        if let Some(every) = self.faults.cluster_crash_every {
            let at = self.now + around(&mut self.wide, every);
            self.schedule(at, Event::CrashAll);
        }
    }

    /// The operator switches the cluster to configuration changes ([`crate::params::ModeSwitch`]),
    /// as docs/protocol.md §6 tells: it stops taking requests, stops every node (in a hurry:
    /// every record not synced is lost), and runs `dkv-server availability on`, which
    /// refuses while any node's log holds a share voted pinned and still in doubt. Refused, it
    /// starts every node again as it was, lets them decide, and tries again. Switched, every
    /// node restarts with changes on, the one kept down only after a while, and requests are
    /// taken again. From then on a commit is visible only on its decision's copies, as the
    /// visibility checker holds.
    fn switch_to_changes(&mut self) {
        let Some(switch) = self.faults.switch_to_changes else { return };
        if self.healed_at.is_some() {
            self.draining = false;
            return;
        }
        if self.switch_tries == 0 && !self.fault_allowed(|_| "the cluster switches to configuration changes".into()) {
            return;
        }
        self.switch_tries += 1;
        self.draining = true;
        // Stopped in a hurry, as a power loss stops it: what was not synced is lost.
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_some() {
                self.trace.event(self.now, Tag::Crash, &[i as u64, 0], || {
                    format!("n{i} stops, losing what it had not synced")
                });
                self.halt(i, 0, &CrashDamage::default());
            }
        }
        let undrained: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let records = self.nodes[i].disk.durable_records().to_vec();
                dkv_core::recovery::pinned_in_doubt(records, NodeId(i as u8)).map_or(true, |pinned| !pinned.is_empty())
            })
            .collect();
        let checked = self.canary != Some(Canary::SwitchUndrained);
        if checked && !undrained.is_empty() && self.switch_tries < SWITCH_TRIES_MAX {
            self.stats.switches_refused += 1;
            self.trace.event(self.now, Tag::SwitchToChanges, &[0], || {
                format!("the switch to configuration changes is refused: {undrained:?} hold pinned shares in doubt")
            });
            for i in 0..self.nodes.len() {
                self.schedule(self.now + 1_000_000, Event::Restart { node: i });
            }
            self.schedule(self.now + SWITCH_RETRY.as_nanos() as u64, Event::SwitchToChanges);
            return;
        }
        self.draining = false;
        if !undrained.is_empty() && checked {
            // Never drained: the operator gives up on the switch.
            for i in 0..self.nodes.len() {
                self.schedule(self.now + 1_000_000, Event::Restart { node: i });
            }
            return;
        }
        self.stats.switches += 1;
        let kept = switch.kept_down;
        let down_for = switch.down_for.as_nanos() as u64;
        self.trace.event(self.now, Tag::SwitchToChanges, &[1, kept as u64, down_for], || {
            format!(
                "the cluster switches to configuration changes: n{kept} restarts after {:.3}s (pinned shares in doubt at {undrained:?})",
                down_for as f64 / 1e9
            )
        });
        for i in 0..self.nodes.len() {
            self.nodes[i].config.timing.leases = true;
        }
        self.visibility.changes_on();
        for i in 0..self.nodes.len() {
            self.schedule(self.now + 1_000_000, Event::Restart { node: i });
        }
        let until = self.now + down_for;
        self.nodes[kept].held_until = Some(until);
        self.schedule(until, Event::Restart { node: kept });
    }

    /// The node an event is for, if that node is frozen and must hold it until it resumes:
    /// messages, requests and fsync completions. (Its timers are not held: they fire late, at
    /// the resume.)
    fn held_for(&self, event: &Event) -> Option<usize> {
        let node = match event {
            Event::Deliver { to, .. } => usize::from(to.0),
            Event::ToNode { node, .. } | Event::Fsync { node, .. } => *node,
            _ => return None,
        };
        self.nodes[node].paused.then_some(node)
    }

    /// Freezes a node drawn from the rng for up to the longest pause, and schedules the next
    /// pause.
    fn pause(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let i = index(&mut self.wide, self.nodes.len());
        let length = between(&mut self.wide, Duration::from_millis(1), self.faults.pause_max);
        if self.nodes[i].node.is_some() && !self.nodes[i].paused && self.fault_allowed(|_| format!("n{i} is frozen")) {
            self.nodes[i].paused = true;
            self.stats.pauses += 1;
            self.trace.event(self.now, Tag::Pause, &[i as u64, length], || {
                format!("n{i} is frozen for {:.3}s", length as f64 / 1e9)
            });
            let generation = self.nodes[i].generation;
            self.schedule(self.now + length, Event::Resume { node: i, generation });
        }
        if let Some(every) = self.faults.pause_every {
            let at = self.now + around(&mut self.wide, every);
            self.schedule(at, Event::Pause);
        }
    }

    /// The frozen node `i` resumes, unless it crashed since: what it was sent arrives, in
    /// order, and its overdue timer and lazy sync run now, late, on a clock that moved on.
    fn resume(&mut self, i: usize, generation: u64) {
        let n = &mut self.nodes[i];
        if n.generation != generation || !n.paused {
            return;
        }
        n.paused = false;
        self.trace.event(self.now, Tag::Resume, &[i as u64], || format!("n{i} resumes"));
        for event in std::mem::take(&mut self.nodes[i].held) {
            self.schedule(self.now, event);
        }
        if self.nodes[i].timer_at.is_some_and(|at| at <= self.now) {
            self.nodes[i].timer_at = Some(self.now);
            self.schedule(self.now, Event::NodeTimer { node: i });
        }
        if self.nodes[i].disk.lazy_sync_at.is_some_and(|at| at <= self.now) {
            self.nodes[i].disk.lazy_sync_at = Some(self.now);
            self.schedule(self.now, Event::LazySync { node: i, generation });
        }
    }

    /// Restarts node `i` after a brief crash, unless it is down for long (crashed for good, or
    /// absent). A member doomed to crash for good is restarted while the first start is under
    /// way: its permanent crash waits for that (see [`World::first_start_under_way`]).
    fn restart(&mut self, i: usize) {
        let first_start = self.first_start_under_way();
        let n = &self.nodes[i];
        // The operator's late restart after a switch is no fault: the heal does not hasten it.
        let held = n.held_until.is_some_and(|until| self.now < until);
        if n.node.is_none() && !n.absent && !held && (!n.doomed || first_start && !n.gone) {
            self.start_node(i);
        }
    }

    /// Splits the nodes into two sides: one way (one side cannot send to the other) or both.
    /// Or, now and then (`Faults::link_cut`), cuts a single link, one way or both.
    fn partition_start(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let link = self.draw_link_cut();
        let what = |_: &World| match link {
            Some((a, b)) => format!("the link between n{a} and n{b} is cut"),
            None => "a partition starts".into(),
        };
        if !self.fault_allowed(what) {
            // The next partition is due as if this one had never been drawn.
            if let Some(every) = self.faults.partition_every {
                let at = self.now + around(&mut self.rng, every);
                self.schedule(at, Event::PartitionStart);
            }
            return;
        }
        let n = self.nodes.len();
        // A random nonempty proper subset on one side. Drawn for a link cut too (which uses
        // only `one_way`), so that the main stream's draws stay as they were.
        let side: Vec<bool> = loop {
            let s: Vec<bool> = (0..n).map(|_| self.rng.next_u64() % 2 == 0).collect();
            if s.iter().any(|x| *x) && s.iter().any(|x| !*x) {
                break s;
            }
        };
        let one_way = chance(&mut self.rng, 0.3);
        self.stats.partitions += 1;
        if let Some((a, b)) = link {
            for row in &mut self.blocked {
                row.fill(false);
            }
            self.blocked[a][b] = true;
            self.blocked[b][a] = !one_way;
            self.stats.link_cuts += 1;
            self.trace.event(self.now, Tag::LinkCut, &[a as u64, b as u64, u64::from(one_way)], || {
                if one_way {
                    format!("link n{a} -x> n{b} (n{a} cannot send to n{b}; every other link works)")
                } else {
                    format!("link n{a} -x- n{b} (cut both ways; every other link works)")
                }
            });
        } else {
            for a in 0..n {
                for b in 0..n {
                    self.blocked[a][b] = side[a] && !side[b] || (!one_way && !side[a] && side[b]);
                }
            }
            let members: Vec<usize> = (0..n).filter(|&i| side[i]).collect();
            self.trace.event(self.now, Tag::PartitionStart, &[members.len() as u64, u64::from(one_way)], || {
                format!("partition {:?} {} the rest", members, if one_way { "cannot send to" } else { "|" })
            });
        }
        let duration = between(&mut self.rng, Duration::from_millis(10), Duration::from_secs(2));
        self.schedule(self.now + duration, Event::PartitionEnd);
    }

    /// Whether the partition starting now cuts a single link instead of splitting the nodes in
    /// two (`Faults::link_cut`; clusters of three nodes or more), and which: `(a, b)`, where `a`
    /// cannot send to `b` (nor `b` to `a`, unless the partition is one way). Drawn from a stream
    /// of its own, and only the choice and the pair: a run that never draws a link cut keeps
    /// every draw of the main stream, so the trajectory it had before link cuts existed.
    fn draw_link_cut(&mut self) -> Option<(usize, usize)> {
        let n = self.nodes.len();
        if n < 3 || !chance(&mut self.links, self.faults.link_cut) {
            return None;
        }
        let a = index(&mut self.links, n);
        let b = (a + 1 + index(&mut self.links, n - 1)) % n;
        Some((a, b))
    }

    /// Cuts node `node` off from every other node, both ways, from `at` until `until` (global
    /// nanoseconds), unless the heal comes first. For tests that need one exact partition.
    pub(crate) fn isolate_between(&mut self, node: usize, at: u64, until: u64) {
        self.schedule(at, Event::Isolate { node });
        self.schedule(until, Event::PartitionEnd);
    }

    fn isolate(&mut self, node: usize) {
        if self.healed_at.is_some() {
            return;
        }
        for other in 0..self.nodes.len() {
            if other != node {
                self.blocked[node][other] = true;
                self.blocked[other][node] = true;
            }
        }
        self.stats.partitions += 1;
        self.trace.event(self.now, Tag::PartitionStart, &[1, 0], || format!("partition [{node}] | the rest"));
    }

    /// When the cluster healed, if it did.
    pub(crate) fn healed_at(&self) -> Option<u64> {
        self.healed_at
    }

    /// Ends the partition, and schedules the next one unless the cluster has healed.
    fn partition_end(&mut self) {
        self.trace.event(self.now, Tag::PartitionEnd, &[], || "partition ends".into());
        for row in &mut self.blocked {
            row.fill(false);
        }
        if let (None, Some(every)) = (self.healed_at, self.faults.partition_every) {
            let at = self.now + around(&mut self.rng, every);
            self.schedule(at, Event::PartitionStart);
        }
    }

    /// Every fault stops; every node comes back.
    fn heal(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        self.healed_at = Some(self.now);
        self.trace.event(self.now, Tag::Heal, &[], || "heal: faults stop".into());
        self.faults.loss = 0.0;
        self.faults.duplication = 0.0;
        for row in &mut self.blocked {
            row.fill(false);
        }
        self.end_lasting_faults();
        for i in 0..self.nodes.len() {
            let generation = self.nodes[i].generation;
            self.resume(i, generation);
            self.restart(i);
        }
    }

    // ---- The end of the run ----

    /// Judges the world as the run left it: liveness of its requests, clients and nodes, and
    /// each node's own checks of its bookkeeping.
    fn check_end(&mut self) {
        let ending = liveness::Ending {
            healed_at: self.healed_at,
            out_of_events: self.stats.events > EVENTS_MAX,
            unfinished_clients: self.clients.iter().filter(|c| c.remaining > 0).count(),
        };
        // During the faults first: where both fail, it is the more telling (and the shrinker
        // keeps the first checker).
        if self.params.minority_faults {
            let during =
                liveness::check_during_faults(&self.history, &self.sides, &self.sends, &self.contended, self.now);
            self.violations.extend(during);
        }
        self.violations.extend(liveness::check_requests(&self.history, &ending));
        if let Some(violation) = liveness::check_changes(&self.configurations) {
            self.violations.push(violation);
        }
        let removals = liveness::most_removals(&self.configurations, &self.started_at);
        self.stats.removals_max = removals.0 as u64;
        if let Some(violation) = liveness::removals_violation(removals) {
            self.violations.push(violation);
        }
        // Before the heal, nodes may be down or in the middle of anything: there is nothing
        // to expect of them.
        if self.healed_at.is_none() {
            return;
        }
        let latest = self.latest_epoch();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(node) = &n.node {
                let conflicts = node.stats().conflicting_decisions;
                if conflicts > 0 {
                    self.violations.push(Violation::new(
                        "atomicity",
                        format!("n{i} was told commit for {conflicts} transactions it knew had aborted"),
                    ));
                }
                if let Err(e) = node.check_invariants() {
                    self.violations.push(Violation::new("invariants", format!("n{i}: {e}")));
                }
            }
            if !n.doomed {
                self.violations.extend(liveness::check_node(i, n.node.as_ref()));
                // Every node is back after the heal, so each is added back (§7.6).
                if n.node.as_ref().is_some_and(Node::stands_outside) {
                    let message = format!("n{i} still stands outside its configuration after the heal");
                    self.violations.push(Violation::new("liveness", message));
                }
                // And in the latest epoch: a node behind holds an older epoch's state (seen in
                // the simulator: a run ended as a node that had caught up through an add since
                // undone was a member of that old epoch, and the end checkers judged its state).
                let epoch = n.node.as_ref().map(|node| node.configuration().epoch);
                if let (Some(epoch), Some(latest)) = (epoch, latest)
                    && epoch < latest
                {
                    let message = format!("n{i} is still in epoch {epoch} after the heal, behind epoch {latest}");
                    self.violations.push(Violation::new("liveness", message));
                }
            }
        }
    }

    /// Every node as the run left it, `None` where it is down.
    pub(crate) fn replicas(&self) -> Vec<Option<&Node>> {
        self.nodes.iter().map(|n| n.node.as_ref()).collect()
    }
}

/// What a message is about, for trace lines: its transaction, or nothing for a heartbeat.
fn about(message: &Message) -> String {
    message.txn().map_or_else(String::new, |txn| txn.to_string())
}
