//! A run made explicit: the seed, where the world's draws start in the seed's rng stream, every
//! parameter, and the faults suppressed by number. A seed's run is its setup as the swarm draws
//! it ([`Setup::draw`]); a shrunk or saved run is a setup as written down, and it replays the
//! same however the swarm's draws change later.
//!
//! As text, a setup is `key=value` words, separated by spaces or newlines (the same words make
//! a `dkv-sim run --setup '…'` argument and the body of a saved run). Durations are in
//! nanoseconds. A fault or bound left out is off, so a fault kind added later leaves every
//! setup written before it unchanged.

use crate::params::{
    Faults, LASTING_LINK_CUT_BY_DEFAULT, LINK_CUT_BY_DEFAULT, ModeSwitch, Overrides, Params, TightBounds, draw_rich,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// Records between snapshots when a setup does not say: large enough that runs never snapshot.
pub(crate) const SNAPSHOTS_OFF: u64 = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    pub seed: u64,
    /// Where the world's own draws start in the seed's main rng stream, in 32-bit words: just
    /// after the words the swarm drew the params from.
    pub rng_position: u128,
    pub params: Params,
    /// Drawn faults that must not happen, by number: the n-th fault the run meets (a message
    /// lost, duplicated or long delayed, a crash, a partition), counting from 0.
    pub suppressed: BTreeSet<u64>,
    /// Fault decisions from outside instead of the rng (see `RunOptions::fault_script`).
    pub fault_script: Option<Vec<u8>>,
}

impl Setup {
    /// The setup the swarm draws for `seed`, with the caller's overrides.
    pub fn draw(seed: u64, overrides: &Overrides) -> Setup {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Params::draw(&mut rng, overrides);
        let mut side = ChaCha8Rng::seed_from_u64(seed);
        side.set_stream(1);
        // Faults and bounds added later still: a third stream, for the same reason.
        let mut wider = ChaCha8Rng::seed_from_u64(seed);
        wider.set_stream(3);
        params.tight_bounds = TightBounds::draw(&mut side, &mut wider, params.clients);
        if overrides.tight_bounds.is_some() {
            params.tight_bounds = overrides.tight_bounds;
        }
        if !overrides.no_faults {
            params.faults.draw_wider(&mut wider);
        }
        // The richer operations, added later still: a fourth stream.
        let mut rich = ChaCha8Rng::seed_from_u64(seed);
        rich.set_stream(5);
        params.rich = overrides.rich.unwrap_or_else(|| draw_rich(&mut rich));
        if overrides.crashes == Some(false) {
            params.faults.cluster_crash_every = None;
            params.faults.crash_near_io = 0.0;
        }
        // Six-node clusters, added after seeds were first recorded: half the seeds that drew four
        // nodes get six, decided on the side stream so every other seed keeps its cluster.
        if overrides.nodes.is_none() && params.nodes == 4 && side.next_u64() % 2 == 0 {
            params.nodes = 6;
        }
        // The faults only a protocol that tolerates a minority down survives (issue 12): a
        // stream of their own, drawn from only when the switch is on.
        if overrides.minority_faults() {
            let mut lasting = ChaCha8Rng::seed_from_u64(seed);
            lasting.set_stream(7);
            params.draw_minority_faults(&mut lasting, overrides);
        }
        // Read leases, added later still: half the seeds, from a stream of their own.
        let mut leases = ChaCha8Rng::seed_from_u64(seed);
        leases.set_stream(9);
        params.leases = overrides.leases.unwrap_or_else(|| leases.next_u64() % 2 == 0);
        // A change that drops a member needs leases on (docs/protocol.md §7.5), and only
        // suspicion, which heartbeats drive, proposes one: the faults of a minority down need
        // both.
        params.leases |= params.minority_faults;
        // The switch to configuration changes, added later still: a third of the runs without
        // them, from a stream of their own.
        let mut switch = ChaCha8Rng::seed_from_u64(seed);
        switch.set_stream(11);
        let drawn = switch.next_u64() % 3 == 0;
        if !params.leases && overrides.switch_to_changes.unwrap_or(drawn) {
            params.faults.switch_to_changes = Some(ModeSwitch::draw(&mut switch, params.nodes, Duration::from_secs(1)));
        }
        if overrides.pauses == Some(false) {
            params.faults.pause_every = None;
        }
        // Single-link cuts, added later still: not drawn (see `LINK_CUT_BY_DEFAULT`). They are
        // brief partitions of a kind, and with two nodes a cut link is a bipartition already.
        params.faults.link_cut = overrides.link_cut.map_or(LINK_CUT_BY_DEFAULT, |chance| chance.clamp(0.0, 1.0));
        if params.faults.partition_every.is_none() || params.nodes < 3 {
            params.faults.link_cut = 0.0;
        }
        // Lasting single-link cuts, added later still: not drawn either.
        params.faults.lasting_link_cut =
            overrides.lasting_link_cut.map_or(LASTING_LINK_CUT_BY_DEFAULT, |chance| chance.clamp(0.0, 1.0));
        if params.faults.lasting_partition_every.is_none() || params.nodes < 3 {
            params.faults.lasting_link_cut = 0.0;
        }
        Setup { seed, rng_position: rng.get_word_pos(), params, suppressed: BTreeSet::new(), fault_script: None }
    }

    /// The seed's main rng stream at the setup's position: where the world draws from.
    pub(crate) fn world_rng(&self) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_word_pos(self.rng_position);
        rng
    }

    /// Reads a setup from `key=value` words (see the module's documentation).
    pub fn parse(text: &str) -> Result<Setup, SetupError> {
        Setup::from_words(words(text)?)
    }

    /// A setup from its `key=value` words, already split.
    pub(crate) fn from_words(words: Vec<(String, String)>) -> Result<Setup, SetupError> {
        let mut seed = None;
        let mut rng_position = None;
        let (mut nodes, mut clients, mut ops_per_client, mut keys, mut mix) = (None, None, None, None, None);
        let mut rich = [0, 0];
        let mut faults = Faults::none();
        let mut params_rest = (SNAPSHOTS_OFF, 0u32, None);
        let mut minority = (false, Duration::ZERO, Duration::ZERO);
        let mut eviction = Eviction::off();
        let mut suppressed = BTreeSet::new();
        let mut fault_script = None;
        let mut leases = false;
        for (key, value) in words {
            let v = value.as_str();
            match key.as_str() {
                "seed" => seed = Some(number(&key, v)?),
                "rng_position" => rng_position = Some(number(&key, v)?),
                "nodes" => nodes = Some(number(&key, v)?),
                "clients" => clients = Some(number(&key, v)?),
                "ops_per_client" => ops_per_client = Some(number(&key, v)?),
                "keys" => keys = Some(number(&key, v)?),
                "mix" => mix = Some(list::<u32, 5>(&key, v)?),
                "rich" => rich = list::<u32, 2>(&key, v)?,
                "loss" => faults.loss = probability(&key, v)?,
                "duplication" => faults.duplication = probability(&key, v)?,
                "delay_min_ns" => faults.delay_min = nanos(&key, v)?,
                "delay_max_ns" => faults.delay_max = nanos(&key, v)?,
                "partition_every_ns" => faults.partition_every = Some(nanos(&key, v)?),
                "link_cut" => faults.link_cut = probability(&key, v)?,
                "lasting_link_cut" => faults.lasting_link_cut = probability(&key, v)?,
                "crash_every_ns" => faults.crash_every = Some(nanos(&key, v)?),
                "torn_write" => faults.torn_write = probability(&key, v)?,
                "fsync_min_ns" => faults.fsync_min = nanos(&key, v)?,
                "fsync_max_ns" => faults.fsync_max = nanos(&key, v)?,
                "garbage_tail" => faults.garbage_tail = probability(&key, v)?,
                "unsynced_flip" => faults.unsynced_flip = probability(&key, v)?,
                "synced_flip" => faults.synced_flip = probability(&key, v)?,
                "cluster_crash_every_ns" => faults.cluster_crash_every = Some(nanos(&key, v)?),
                "crash_near_io" => faults.crash_near_io = probability(&key, v)?,
                "pause_every_ns" => faults.pause_every = Some(nanos(&key, v)?),
                "pause_max_ns" => faults.pause_max = nanos(&key, v)?,
                "permanent_crashes" => faults.permanent_crashes = number(&key, v)?,
                "absence_every_ns" => faults.absence_every = Some(nanos(&key, v)?),
                "absence_data_lost" => faults.absence_data_lost = probability(&key, v)?,
                "absence_init_restart" => faults.absence_init_restart = probability(&key, v)?,
                "init_first_start" => faults.init_first_start = number::<u8>(&key, v)? == 1,
                "absence_tail_damaged" => faults.absence_tail_damaged = probability(&key, v)?,
                "lasting_partition_every_ns" => faults.lasting_partition_every = Some(nanos(&key, v)?),
                "added_cut" => faults.added_cut = probability(&key, v)?,
                "start_crash" => faults.start_crash = probability(&key, v)?,
                "fault_phase_ns" => faults.fault_phase = Some(nanos(&key, v)?),
                "switch_to_changes" => {
                    let [at, kept_down, down_for] = list::<u64, 3>(&key, v)?;
                    faults.switch_to_changes = Some(ModeSwitch {
                        at: Duration::from_nanos(at),
                        kept_down: kept_down as usize,
                        down_for: Duration::from_nanos(down_for),
                    });
                }
                "minority_faults" => minority.0 = number(&key, v)?,
                "clock_offset_max_ns" => minority.1 = nanos(&key, v)?,
                "think_max_ns" => minority.2 = nanos(&key, v)?,
                "completions_max" => eviction.completions_max = number(&key, v)?,
                "decisions_remembered_max" => eviction.decisions_remembered_max = number(&key, v)?,
                "completion_retention_ns" => eviction.completion_retention = nanos(&key, v)?,
                "client_window_ns" => eviction.client_window = nanos(&key, v)?,
                "new_client_chance" => eviction.new_client_chance = probability(&key, v)?,
                "snapshot_records_min" => params_rest.0 = number(&key, v)?,
                "clock_skew_ppm" => params_rest.1 = number(&key, v)?,
                "tight_bounds" => {
                    let [prepared_max, read_waiters_max, txns_undecided_max] = list::<usize, 3>(&key, v)?;
                    params_rest.2 = Some((prepared_max, read_waiters_max, txns_undecided_max));
                }
                "suppress" => suppressed = number_set(&key, v)?,
                "fault_script" => fault_script = Some(hex(&key, v)?),
                "leases" => leases = number::<u8>(&key, v)? == 1,
                _ => return Err(SetupError(format!("unknown setting `{key}`; the settings are: {}", KEYS.join(", ")))),
            }
        }
        let missing =
            |key: &str| SetupError(format!("the setup has no `{key}`: every setup names {}", REQUIRED.join(", ")));
        let params = Params {
            nodes: nodes.ok_or_else(|| missing("nodes"))?,
            clients: clients.ok_or_else(|| missing("clients"))?,
            ops_per_client: ops_per_client.ok_or_else(|| missing("ops_per_client"))?,
            keys: keys.ok_or_else(|| missing("keys"))?,
            mix: mix.ok_or_else(|| missing("mix"))?,
            rich,
            faults,
            snapshot_records_min: params_rest.0,
            clock_skew_ppm: params_rest.1,
            tight_bounds: params_rest.2.map(|(prepared_max, read_waiters_max, txns_undecided_max)| TightBounds {
                prepared_max,
                read_waiters_max,
                txns_undecided_max,
                completions_max: eviction.completions_max,
                decisions_remembered_max: eviction.decisions_remembered_max,
                completion_retention: eviction.completion_retention,
                client_window: eviction.client_window,
                new_client_chance: eviction.new_client_chance,
            }),
            minority_faults: minority.0,
            clock_offset_max: minority.1,
            think_max: minority.2,
            leases,
        };
        if p_has_eviction_without_bounds(&params, &eviction) {
            return Err(SetupError(
                "completions_max, decisions_remembered_max, completion_retention_ns, client_window_ns and \
                 new_client_chance belong to tight bounds: add tight_bounds=P,R,T"
                    .into(),
            ));
        }
        check(&params)?;
        Ok(Setup {
            seed: seed.ok_or_else(|| missing("seed"))?,
            rng_position: rng_position.ok_or_else(|| missing("rng_position"))?,
            params,
            suppressed,
            fault_script,
        })
    }

    /// The setup's `key=value` words, in a fixed order; settings that are off are left out.
    pub fn words(&self) -> Vec<String> {
        let p = &self.params;
        let f = &p.faults;
        let none = Faults::none();
        let mut w = vec![
            format!("seed={}", self.seed),
            format!("rng_position={}", self.rng_position),
            format!("nodes={}", p.nodes),
            format!("clients={}", p.clients),
            format!("ops_per_client={}", p.ops_per_client),
            format!("keys={}", p.keys),
            format!("mix={}", join(&p.mix)),
        ];
        let mut optional = |on: bool, word: String| {
            if on {
                w.push(word);
            }
        };
        optional(p.rich != [0, 0], format!("rich={}", join(&p.rich)));
        optional(p.leases, "leases=1".to_string());
        optional(f.loss > 0.0, format!("loss={}", f.loss));
        optional(f.duplication > 0.0, format!("duplication={}", f.duplication));
        optional(f.delay_min != none.delay_min, format!("delay_min_ns={}", f.delay_min.as_nanos()));
        optional(f.delay_max != none.delay_max, format!("delay_max_ns={}", f.delay_max.as_nanos()));
        if let Some(every) = f.partition_every {
            optional(true, format!("partition_every_ns={}", every.as_nanos()));
        }
        optional(f.link_cut > 0.0, format!("link_cut={}", f.link_cut));
        if let Some(every) = f.crash_every {
            optional(true, format!("crash_every_ns={}", every.as_nanos()));
        }
        optional(f.torn_write > 0.0, format!("torn_write={}", f.torn_write));
        optional(f.fsync_min != none.fsync_min, format!("fsync_min_ns={}", f.fsync_min.as_nanos()));
        optional(f.fsync_max != none.fsync_max, format!("fsync_max_ns={}", f.fsync_max.as_nanos()));
        optional(f.garbage_tail > 0.0, format!("garbage_tail={}", f.garbage_tail));
        optional(f.unsynced_flip > 0.0, format!("unsynced_flip={}", f.unsynced_flip));
        optional(f.synced_flip > 0.0, format!("synced_flip={}", f.synced_flip));
        if let Some(every) = f.cluster_crash_every {
            optional(true, format!("cluster_crash_every_ns={}", every.as_nanos()));
        }
        optional(f.crash_near_io > 0.0, format!("crash_near_io={}", f.crash_near_io));
        if let Some(every) = f.pause_every {
            optional(true, format!("pause_every_ns={}", every.as_nanos()));
        }
        optional(f.pause_max != none.pause_max, format!("pause_max_ns={}", f.pause_max.as_nanos()));
        optional(p.minority_faults, "minority_faults=true".to_string());
        optional(f.permanent_crashes > 0, format!("permanent_crashes={}", f.permanent_crashes));
        if let Some(every) = f.absence_every {
            optional(true, format!("absence_every_ns={}", every.as_nanos()));
        }
        optional(f.absence_data_lost > 0.0, format!("absence_data_lost={}", f.absence_data_lost));
        optional(f.absence_init_restart > 0.0, format!("absence_init_restart={}", f.absence_init_restart));
        optional(f.init_first_start, "init_first_start=1".to_string());
        optional(f.absence_tail_damaged > 0.0, format!("absence_tail_damaged={}", f.absence_tail_damaged));
        if let Some(every) = f.lasting_partition_every {
            optional(true, format!("lasting_partition_every_ns={}", every.as_nanos()));
        }
        optional(f.lasting_link_cut > 0.0, format!("lasting_link_cut={}", f.lasting_link_cut));
        optional(f.added_cut > 0.0, format!("added_cut={}", f.added_cut));
        optional(f.start_crash > 0.0, format!("start_crash={}", f.start_crash));
        if let Some(s) = f.switch_to_changes {
            optional(true, format!("switch_to_changes={},{},{}", s.at.as_nanos(), s.kept_down, s.down_for.as_nanos()));
        }
        if let Some(phase) = f.fault_phase {
            optional(true, format!("fault_phase_ns={}", phase.as_nanos()));
        }
        optional(!p.clock_offset_max.is_zero(), format!("clock_offset_max_ns={}", p.clock_offset_max.as_nanos()));
        optional(!p.think_max.is_zero(), format!("think_max_ns={}", p.think_max.as_nanos()));
        optional(p.snapshot_records_min != SNAPSHOTS_OFF, format!("snapshot_records_min={}", p.snapshot_records_min));
        optional(p.clock_skew_ppm != 0, format!("clock_skew_ppm={}", p.clock_skew_ppm));
        if let Some(t) = p.tight_bounds {
            optional(
                true,
                format!("tight_bounds={}", join(&[t.prepared_max, t.read_waiters_max, t.txns_undecided_max])),
            );
            let off = Eviction::off();
            optional(t.completions_max != off.completions_max, format!("completions_max={}", t.completions_max));
            optional(
                t.decisions_remembered_max != off.decisions_remembered_max,
                format!("decisions_remembered_max={}", t.decisions_remembered_max),
            );
            optional(
                t.completion_retention != off.completion_retention,
                format!("completion_retention_ns={}", t.completion_retention.as_nanos()),
            );
            optional(t.client_window != off.client_window, format!("client_window_ns={}", t.client_window.as_nanos()));
            optional(t.new_client_chance > 0.0, format!("new_client_chance={}", t.new_client_chance));
        }
        optional(!self.suppressed.is_empty(), format!("suppress={}", ranges(&self.suppressed)));
        if let Some(script) = &self.fault_script {
            optional(true, format!("fault_script={}", script.iter().map(|b| format!("{b:02x}")).collect::<String>()));
        }
        w
    }
}

/// One line of `key=value` words: a `dkv-sim run --setup` argument.
impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words().join(" "))
    }
}

/// A setup that cannot be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError(pub String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

const REQUIRED: [&str; 7] = ["seed", "rng_position", "nodes", "clients", "ops_per_client", "keys", "mix"];
/// The eviction part of tight bounds, as a setup that leaves it out has it: the nodes' own
/// bounds and retention, a client window inside that retention, and no new clients.
struct Eviction {
    completions_max: usize,
    decisions_remembered_max: usize,
    completion_retention: Duration,
    client_window: Duration,
    new_client_chance: f64,
}

impl Eviction {
    fn off() -> Eviction {
        let (bounds, timing) = (dkv_core::Bounds::default(), dkv_core::Timing::default());
        Eviction {
            completions_max: bounds.completions_max,
            decisions_remembered_max: bounds.decisions_remembered_max,
            completion_retention: timing.completion_retention,
            client_window: timing.completion_retention - timing.completion_retention / 8,
            new_client_chance: 0.0,
        }
    }
}

/// Whether eviction settings were given without the tight bounds they belong to.
fn p_has_eviction_without_bounds(params: &Params, e: &Eviction) -> bool {
    let off = Eviction::off();
    params.tight_bounds.is_none()
        && (e.completions_max != off.completions_max
            || e.decisions_remembered_max != off.decisions_remembered_max
            || e.completion_retention != off.completion_retention
            || e.client_window != off.client_window
            || e.new_client_chance != off.new_client_chance)
}

const KEYS: [&str; 51] = [
    "seed",
    "rng_position",
    "nodes",
    "clients",
    "ops_per_client",
    "keys",
    "mix",
    "rich",
    "loss",
    "duplication",
    "delay_min_ns",
    "delay_max_ns",
    "partition_every_ns",
    "link_cut",
    "crash_every_ns",
    "torn_write",
    "fsync_min_ns",
    "fsync_max_ns",
    "garbage_tail",
    "unsynced_flip",
    "synced_flip",
    "cluster_crash_every_ns",
    "crash_near_io",
    "pause_every_ns",
    "pause_max_ns",
    "minority_faults",
    "permanent_crashes",
    "absence_every_ns",
    "absence_data_lost",
    "absence_init_restart",
    "init_first_start",
    "absence_tail_damaged",
    "lasting_partition_every_ns",
    "lasting_link_cut",
    "added_cut",
    "start_crash",
    "fault_phase_ns",
    "switch_to_changes",
    "clock_offset_max_ns",
    "think_max_ns",
    "snapshot_records_min",
    "clock_skew_ppm",
    "tight_bounds",
    "completions_max",
    "decisions_remembered_max",
    "completion_retention_ns",
    "client_window_ns",
    "new_client_chance",
    "suppress",
    "fault_script",
    "leases",
];

/// The `key=value` words of `text`; `#` starts a comment that runs to the end of its line.
pub(crate) fn words(text: &str) -> Result<Vec<(String, String)>, SetupError> {
    let mut words = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for word in line.split_whitespace() {
            let (key, value) = word.split_once('=').ok_or_else(|| {
                SetupError(format!("`{word}` is not a setting: write key=value, with no spaces around the `=`"))
            })?;
            words.push((key.to_string(), value.to_string()));
        }
    }
    Ok(words)
}

/// Whatever a run cannot start with.
fn check(p: &Params) -> Result<(), SetupError> {
    let bad = |what: String| Err(SetupError(what));
    let most = dkv_core::NodeSet::CAPACITY;
    if !(1..=most).contains(&p.nodes) {
        return bad(format!("nodes={} is out of range: a cluster has 1 to {most} nodes", p.nodes));
    }
    if p.snapshot_records_min < 2 {
        return bad("snapshot_records_min must be at least 2 (leave it out for no snapshots)".into());
    }
    if p.clients == 0 || p.keys == 0 {
        return bad("clients and keys must be at least 1".into());
    }
    if p.mix[1..].iter().all(|w| *w == 0) {
        return bad("the mix must give some weight to a write (put, update, delete or txn)".into());
    }
    if p.faults.delay_max < p.faults.delay_min || p.faults.fsync_max < p.faults.fsync_min {
        return bad("a delay's or fsync's max is below its min".into());
    }
    let zero = Duration::ZERO;
    let f = &p.faults;
    if [f.partition_every, f.crash_every, f.absence_every, f.lasting_partition_every].contains(&Some(zero)) {
        return bad(
            "crash_every_ns, partition_every_ns, absence_every_ns and lasting_partition_every_ns must be above 0 \
             (leave them out for none)"
                .into(),
        );
    }
    if let Some(s) = f.switch_to_changes {
        if p.leases
            || s.kept_down >= p.nodes
            || s.at > Duration::from_secs(3600)
            || s.down_for > Duration::from_secs(3600)
        {
            return bad(format!(
                "switch_to_changes=AT,NODE,DOWN needs leases off (the switch turns them on), NODE below nodes={}, \
                 and AT and DOWN at most an hour in nanoseconds",
                p.nodes
            ));
        }
    }
    let hour = Duration::from_secs(3600);
    let long = [f.absence_every, f.lasting_partition_every, f.fault_phase, Some(p.clock_offset_max), Some(p.think_max)];
    if long.iter().flatten().any(|d| *d > hour) {
        return bad(
            "absence_every_ns, lasting_partition_every_ns, fault_phase_ns, clock_offset_max_ns and think_max_ns are \
             at most an hour (3600000000000)"
                .into(),
        );
    }
    if f.permanent_crashes > p.minority_max() {
        return bad(format!(
            "permanent_crashes={} leaves no majority of {} nodes: at most {} (⌊(N−1)/2⌋)",
            f.permanent_crashes,
            p.nodes,
            p.minority_max()
        ));
    }
    if let Some(t) = p.tight_bounds {
        if t.prepared_max == 0 || t.read_waiters_max == 0 || t.txns_undecided_max == 0 {
            return bad("tight bounds must be at least 1".into());
        }
    }
    Ok(())
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, SetupError>
where
    T::Err: fmt::Display,
{
    value.parse().map_err(|e| SetupError(format!("{key}={value}: {e}")))
}

fn probability(key: &str, value: &str) -> Result<f64, SetupError> {
    let p: f64 = number(key, value)?;
    if (0.0..=1.0).contains(&p) { Ok(p) } else { Err(SetupError(format!("{key}={value}: a probability is in 0..1"))) }
}

fn nanos(key: &str, value: &str) -> Result<Duration, SetupError> {
    number(key, value).map(Duration::from_nanos)
}

fn list<T: std::str::FromStr + Copy + Default, const N: usize>(key: &str, value: &str) -> Result<[T; N], SetupError>
where
    T::Err: fmt::Display,
{
    let parts: Vec<&str> = value.split(',').collect();
    if parts.len() != N {
        return Err(SetupError(format!("{key}={value}: expected {N} numbers separated by commas")));
    }
    let mut out = [T::default(); N];
    for (slot, part) in out.iter_mut().zip(parts) {
        *slot = number(key, part)?;
    }
    Ok(out)
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// A set of numbers written as ranges: `0-3,7,9-12`.
fn ranges(set: &BTreeSet<u64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

fn number_set(key: &str, value: &str) -> Result<BTreeSet<u64>, SetupError> {
    let mut set = BTreeSet::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u64, u64) = (number(key, a)?, number(key, b)?);
        if b < a || b - a > 10_000_000 {
            return Err(SetupError(format!("{key}={value}: `{part}` is not a range A-B with A <= B")));
        }
        set.extend(a..=b);
    }
    Ok(set)
}

fn hex(key: &str, value: &str) -> Result<Vec<u8>, SetupError> {
    let bad = || SetupError(format!("{key}: expected hex digits, two per byte"));
    if value.len() % 2 != 0 {
        return Err(bad());
    }
    (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(value.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed's drawn setup, written and read back, is the same setup, with and without the
    /// faults of a protocol that tolerates a minority down.
    #[test]
    fn drawn_setups_survive_the_text_round_trip() {
        for seed in 0..400 {
            let overrides = Overrides { minority_faults: Some(seed % 2 == 1), ..Overrides::default() };
            let mut setup = Setup::draw(seed, &overrides);
            setup.suppressed = [1, 2, 3, 7, 9, 10].into();
            if seed % 3 == 0 {
                setup.fault_script = Some(vec![0x00, 0x12, 0xff]);
            }
            assert_eq!(Setup::parse(&setup.to_string()), Ok(setup.clone()), "seed {seed}: {setup}");
        }
    }

    #[test]
    fn bad_setups_are_refused_with_a_reason() {
        let good = Setup::draw(5, &Overrides::default()).to_string();
        assert!(Setup::parse(&good).is_ok());
        for (text, says) in [
            (good.replace("seed=", "sed="), "unknown setting `sed`"),
            (good.replace("nodes=", "#"), "no `nodes`"),
            (format!("{good} loss=2"), "a probability is in 0..1"),
            (format!("{good} suppress=5-3"), "not a range"),
            (format!("{good} fault_script=0g"), "hex digits"),
            (format!("{good} mix=1,2"), "expected 5 numbers"),
            (format!("{good} rich=1"), "expected 2 numbers"),
            (format!("{good} nodes"), "not a setting"),
            (format!("{good} nodes=65"), "out of range"),
            (format!("{good} snapshot_records_min=1"), "at least 2"),
            (format!("{good} crash_every_ns=0"), "above 0"),
            (format!("{good} absence_every_ns=0"), "above 0"),
            (format!("{good} nodes=3 permanent_crashes=2"), "leaves no majority"),
            (format!("{good} minority_faults=yes"), "minority_faults=yes"),
            (format!("{good} think_max_ns=18446744073709551615"), "at most an hour"),
        ] {
            let error = Setup::parse(&text).expect_err(&text).0;
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
