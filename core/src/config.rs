//! A node's settings: who it is, who its peers are, limits, timing and bounds. (Not to be
//! confused with a [`crate::configuration::Configuration`], the numbered membership that the
//! members agree on: `Config::members` is where a node's first configuration comes from.)

use crate::ids::{NodeId, NodeSet};
use crate::limits::Limits;
use std::time::Duration;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Every member of the cluster, this node included.
    pub members: NodeSet,
    pub limits: Limits,
    pub timing: Timing,
    pub bounds: Bounds,
    /// Seeds the node's random choices (retry jitter). Same seed and inputs, same outputs.
    pub seed: u64,
    /// A planted bug, for the simulator's canary tests only.
    #[cfg(feature = "canary")]
    pub canary: Option<crate::Canary>,
}

/// Timer settings. Retransmission intervals double after each unanswered try, up to
/// `retransmit_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// First resend of PREPARE to participants that have not voted.
    pub prepare_retransmit: Duration,
    /// A transaction not fully voted on after this long is aborted.
    pub vote_timeout: Duration,
    /// First resend of COMMIT to participants that have not acknowledged.
    pub decision_retransmit: Duration,
    pub retransmit_max: Duration,
    /// A participant holding a prepared transaction asks for the outcome after this long.
    pub query_interval: Duration,
    /// A read waiting on a locked key gives up after this long (the client may retry).
    pub read_wait_timeout: Duration,
    /// Randomized backoff before a coordinator retries a transaction that lost a lock conflict.
    pub conflict_backoff_min: Duration,
    pub conflict_backoff_max: Duration,
    /// A completion record is kept at least this long, so that any retry or duplicate of its
    /// request is recognised. Clients must not send a request later than this after they first
    /// sent it, less the network's delay (dkv-net's client gives up after its request timeout,
    /// 10 s by default).
    pub completion_retention: Duration,
    /// How long a coordinator gathers finished transactions before it sends its finished mark
    /// (docs/protocol.md §7.2), so one message covers many.
    pub finished_mark_interval: Duration,
    /// Whether members exchange heartbeats, suspect the silent ones and serve reads only under
    /// a read lease (docs/protocol.md §7.3, §7.5). Off, a node sends no heartbeats, suspects
    /// nobody, waits for nothing at start and serves every read from memory: sound only while
    /// every commit needs every member's YES, as it does until a configuration change can drop
    /// a member (then the change needs leases on).
    pub leases: bool,
    /// How often a member sends every other member a heartbeat, which carries a lease request.
    pub heartbeat_interval: Duration,
    /// `L`: a lease granted for a request sent at `t` holds at the requester until `t + L` on
    /// its own clock.
    pub lease_duration: Duration,
    /// A member not heard from for this long is suspected.
    pub detection_timeout: Duration,
    /// How long the members wait for a node they just added to catch up and start before
    /// they suspect it (docs/protocol.md §7.6): its state transfer must fit. Writes wait for
    /// it meanwhile (every commit needs every member's YES).
    pub join_grace: Duration,
}

/// The clock-rate drift bound ρ the lease wait allows for, in parts per million (1 %): any two
/// members' clocks measure the same interval within a factor of `(1 + ρ) / (1 − ρ)`. Node
/// clocks must also count across a machine's suspend (Linux `CLOCK_BOOTTIME`).
pub const CLOCK_DRIFT_PPM: u64 = 10_000;

impl Timing {
    /// `W = L (1 + ρ) / (1 − ρ)`: how long a member waits, after it starts (and, once
    /// configurations change, after it installs one that drops a member), before it votes YES
    /// or decides a commit, so that every lease granted before is over by any clock within the
    /// drift bound (docs/protocol.md §7.5). Rounded up.
    pub fn lease_wait(&self) -> Duration {
        const MILLION: u128 = 1_000_000;
        let l = self.lease_duration.as_nanos();
        let numerator = l * (MILLION + u128::from(CLOCK_DRIFT_PPM));
        let denominator = MILLION - u128::from(CLOCK_DRIFT_PPM);
        Duration::from_nanos(u64::try_from(numerator.div_ceil(denominator)).unwrap_or(u64::MAX))
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            prepare_retransmit: Duration::from_millis(100),
            vote_timeout: Duration::from_secs(2),
            decision_retransmit: Duration::from_millis(100),
            retransmit_max: Duration::from_secs(2),
            query_interval: Duration::from_millis(500),
            read_wait_timeout: Duration::from_secs(2),
            conflict_backoff_min: Duration::from_micros(200),
            conflict_backoff_max: Duration::from_secs(1),
            completion_retention: Duration::from_secs(60),
            leases: false,
            heartbeat_interval: Duration::from_millis(100),
            lease_duration: Duration::from_millis(500),
            detection_timeout: Duration::from_secs(1),
            join_grace: Duration::from_secs(10),
            finished_mark_interval: Duration::from_millis(50),
        }
    }
}

/// Limits on the node's own state, so memory stays bounded whatever clients and peers do.
/// Hitting one gives a clear "busy" answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Transactions this node coordinates that are not yet decided.
    pub txns_undecided_max: usize,
    /// Transactions prepared at this node as a participant.
    pub prepared_max: usize,
    /// Reads waiting for a locked key.
    pub read_waiters_max: usize,
    /// Clients whose last completed request is remembered for exactly-once (oldest forgotten first).
    pub completions_max: usize,
    /// Bytes of results those completion records may hold (a retry gets its request's very
    /// results), evicted by the same rules as `completions_max`.
    pub completion_bytes_max: u64,
    /// Recently learned decisions kept to answer other participants' queries.
    pub decisions_remembered_max: usize,
    /// How many times a coordinator retries a transaction that lost a lock conflict.
    pub conflict_retries_max: u32,
    /// Reply targets attached to one request (retries of it arriving through other connections).
    pub reply_targets_max: usize,
    /// Records between snapshots, at least; a node writes a snapshot once it has written as
    /// many records as the larger of this and its key count, so disk use stays proportional
    /// to the data and each snapshot's cost is spread over as many writes. The default is
    /// etcd's `--snapshot-count`. At 10,000, nodes taking 64 clients' puts snapshotted their
    /// stores about seven times a second each (118 snapshots in 5 s over three nodes), writing
    /// and syncing the whole store each time while every transaction in flight waited
    /// (`dkv-bench --local 3 --op put --clients 64`: p99 about 14 ms, against about 5.5 ms at
    /// 100,000).
    pub snapshot_records_min: u64,
    /// Committed transactions not known to be finished that a node remembers (its commit
    /// memory, docs/protocol.md §7.2); past it, it votes NO (busy) until finished marks free it.
    pub commit_memory_max: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            txns_undecided_max: 4096,
            prepared_max: 8192,
            read_waiters_max: 4096,
            completions_max: 100_000,
            completion_bytes_max: 64 * 1024 * 1024,
            decisions_remembered_max: 16384,
            conflict_retries_max: 16,
            reply_targets_max: 4,
            snapshot_records_min: 100_000,
            commit_memory_max: 8192,
        }
    }
}

/// A configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("node {id} is not one of the members {members}; list every node, this one included")]
    NotAMember { id: NodeId, members: NodeSet },
    #[error("canaries (planted bugs) need dkv-core's `canary` feature; this build does not have it")]
    CanaryUnavailable,
    #[error("a bound is zero ({name}); every bound must allow at least one")]
    ZeroBound { name: &'static str },
    #[error(
        "snapshot_records_min is {0}; it must be at least 2 (a snapshot is itself two records or more, so fewer would snapshot after every input)"
    )]
    SnapshotTooFrequent(u64),
    #[error(
        "lease timing does not fit: heartbeat_interval {heartbeat:?}, lease_duration {lease:?} (wait {wait:?}), detection_timeout {detection:?}; they need 0 < 3 × heartbeat_interval ≤ lease_duration and the wait ≤ detection_timeout"
    )]
    LeaseTiming { heartbeat: Duration, lease: Duration, wait: Duration, detection: Duration },
    #[error(
        "commit_memory_max ({commit_memory_max}) + prepared_max ({prepared_max}) is above {ids_max}, the most transaction ids a member may report at a configuration change; lower either"
    )]
    ReportTooLarge { commit_memory_max: usize, prepared_max: usize, ids_max: usize },
}

impl Config {
    /// A configuration with default limits, timing and bounds.
    pub fn new(id: NodeId, members: NodeSet) -> Config {
        Config {
            id,
            members,
            limits: Limits::default(),
            timing: Timing::default(),
            bounds: Bounds::default(),
            seed: u64::from(id.0),
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Plants a protocol bug, for the simulator's canary tests. Fails unless dkv-core was
    /// built with the `canary` feature, so a real build can never run one.
    pub fn set_canary(&mut self, canary: Option<crate::Canary>) -> Result<(), ConfigError> {
        #[cfg(feature = "canary")]
        {
            self.canary = canary;
            Ok(())
        }
        #[cfg(not(feature = "canary"))]
        match canary {
            None => Ok(()),
            Some(_) => Err(ConfigError::CanaryUnavailable),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.members.contains(self.id) {
            return Err(ConfigError::NotAMember { id: self.id, members: self.members });
        }
        let b = &self.bounds;
        for (name, value) in [
            ("txns_undecided_max", b.txns_undecided_max),
            ("prepared_max", b.prepared_max),
            ("read_waiters_max", b.read_waiters_max),
            ("completions_max", b.completions_max),
            ("completion_bytes_max", b.completion_bytes_max as usize),
            ("decisions_remembered_max", b.decisions_remembered_max),
            ("reply_targets_max", b.reply_targets_max),
            ("commit_memory_max", b.commit_memory_max),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroBound { name });
            }
        }
        if b.snapshot_records_min < 2 {
            return Err(ConfigError::SnapshotTooFrequent(b.snapshot_records_min));
        }
        // A member's report at a configuration change (docs/protocol.md §7.4) lists its commit
        // memory and the transactions it holds (prepared, or committed and held): past
        // `Report::IDS_MAX` it is refused whole and the member cannot take part in the change.
        let reported_max = b.commit_memory_max.saturating_add(b.prepared_max);
        if reported_max > crate::configuration::Report::IDS_MAX {
            return Err(ConfigError::ReportTooLarge {
                commit_memory_max: b.commit_memory_max,
                prepared_max: b.prepared_max,
                ids_max: crate::configuration::Report::IDS_MAX,
            });
        }
        self.timing.validate_leases()
    }
}

impl Timing {
    /// The rule for lease timing, checked whether leases are on or not (so switching them on
    /// never meets a surprise):
    /// - `3 × heartbeat_interval ≤ lease_duration`: a lease is renewed every heartbeat, so two
    ///   lost heartbeats in a row still leave the member serving;
    /// - `lease_wait() ≤ detection_timeout`: a change that drops a member waits `W` before its
    ///   commits, so the wait adds at most what detecting the failure took (with the defaults,
    ///   1 s to suspect, about 0.5 s to wait, within the 3 s the design allows for a removal);
    /// - a heartbeat interval above zero.
    pub fn validate_leases(&self) -> Result<(), ConfigError> {
        let fits = !self.heartbeat_interval.is_zero()
            && self.heartbeat_interval.saturating_mul(3) <= self.lease_duration
            && self.lease_wait() <= self.detection_timeout;
        if fits {
            return Ok(());
        }
        Err(ConfigError::LeaseTiming {
            heartbeat: self.heartbeat_interval,
            lease: self.lease_duration,
            wait: self.lease_wait(),
            detection: self.detection_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration that cannot work is refused, naming what is wrong.
    #[test]
    fn unworkable_configurations_are_refused() {
        let good = Config::new(NodeId(1), NodeSet::first(3));
        assert_eq!(good.validate(), Ok(()));
        let mut stranger = good.clone();
        stranger.id = NodeId(5);
        assert_eq!(stranger.validate(), Err(ConfigError::NotAMember { id: NodeId(5), members: NodeSet::first(3) }));
        type SetToZero = fn(&mut Bounds);
        let zeroed: [(&str, SetToZero); 8] = [
            ("txns_undecided_max", |b| b.txns_undecided_max = 0),
            ("prepared_max", |b| b.prepared_max = 0),
            ("read_waiters_max", |b| b.read_waiters_max = 0),
            ("completions_max", |b| b.completions_max = 0),
            ("completion_bytes_max", |b| b.completion_bytes_max = 0),
            ("decisions_remembered_max", |b| b.decisions_remembered_max = 0),
            ("reply_targets_max", |b| b.reply_targets_max = 0),
            ("commit_memory_max", |b| b.commit_memory_max = 0),
        ];
        for (name, zero) in zeroed {
            let mut c = good.clone();
            zero(&mut c.bounds);
            assert_eq!(c.validate(), Err(ConfigError::ZeroBound { name }));
        }
        let mut frequent = good.clone();
        frequent.bounds.snapshot_records_min = 1;
        assert_eq!(frequent.validate(), Err(ConfigError::SnapshotTooFrequent(1)));
        frequent.bounds.snapshot_records_min = 2;
        assert_eq!(frequent.validate(), Ok(()));
        let mut remembering = good.clone();
        remembering.bounds.commit_memory_max += 1;
        let ids_max = crate::configuration::Report::IDS_MAX;
        assert_eq!(
            remembering.validate(),
            Err(ConfigError::ReportTooLarge {
                commit_memory_max: remembering.bounds.commit_memory_max,
                prepared_max: remembering.bounds.prepared_max,
                ids_max
            }),
            "the defaults fill a report exactly"
        );
    }

    /// The lease wait is `L (1 + ρ) / (1 − ρ)` with ρ = 1 %, rounded up.
    #[test]
    fn the_lease_wait_covers_the_drift_bound() {
        let mut timing = Timing { lease_duration: Duration::from_millis(500), ..Timing::default() };
        // 500 ms × 1.01 / 0.99 = 510.1010… ms
        assert_eq!(timing.lease_wait(), Duration::from_nanos(510_101_011));
        timing.lease_duration = Duration::from_secs(99);
        assert_eq!(timing.lease_wait(), Duration::from_secs(101));
    }

    /// Lease timing that cannot keep a lease, or whose wait outlasts detection, is refused.
    #[test]
    fn unworkable_lease_timing_is_refused() {
        let good = Timing::default();
        assert_eq!(good.validate_leases(), Ok(()));
        let refused = |t: Timing| matches!(t.validate_leases(), Err(ConfigError::LeaseTiming { .. }));
        assert!(refused(Timing { heartbeat_interval: Duration::ZERO, ..good }));
        assert!(refused(Timing { lease_duration: Duration::from_millis(299), ..good }));
        assert!(!refused(Timing { lease_duration: Duration::from_millis(300), ..good }));
        assert!(refused(Timing { lease_duration: Duration::from_millis(990), ..good }));
        assert!(refused(Timing { detection_timeout: Duration::from_millis(510), ..good }));
        assert!(!refused(Timing { detection_timeout: Duration::from_millis(511), ..good }));
    }
}
