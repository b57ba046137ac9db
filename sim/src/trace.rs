//! The run's event trace: always hashed (a word-wise FNV-style hash over a compact encoding of every event, so two
//! runs of one seed can be compared by one number), and kept as readable lines on request.
//!
//! An event's encoding is its virtual time, its [`Tag`], then words chosen by the event (nodes,
//! clients, sequence numbers, and the words below for transactions, messages and outcomes).

use dkv_core::votes::{VoteMessage, VoteValue};
use dkv_core::{Decision, Message, OpFailure, OpResult, Outcome, TxnId, Vote};

/// Where readable trace lines go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceMode {
    /// Only the hash.
    #[default]
    Off,
    /// Keep the lines in the report.
    Keep,
    /// Print each line to stderr as it happens (survives a panic mid-run).
    Print,
}

/// What kind of event a trace entry records. The numbers are part of every recorded trace hash:
/// changing one, or reusing 12 (never used), changes the hash of every seed that has such an
/// event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A message from one node arrives at another (hashed whether or not the receiver is up).
    Deliver = 1,
    /// A client's request arrives at a node.
    Request = 2,
    /// A node's reply arrives at a client.
    Reply = 3,
    /// A node's timer fires.
    Timeout = 4,
    /// An fsync completes: a node's records are durable through an lsn.
    Durable = 5,
    /// A node starts, recovering from its disk.
    Start = 6,
    /// A node crashes.
    Crash = 7,
    /// The network splits into two sides.
    PartitionStart = 8,
    /// The partition is gone.
    PartitionEnd = 9,
    /// Every fault stops and every node comes back.
    Heal = 10,
    /// A client gives up waiting for a request.
    Abandon = 11,
    /// A node starts the fsync that its lazily synced records waited for.
    LazySync = 13,
    /// A crash damaged a node's disk (a flipped bit, garbage after the last write).
    DiskDamage = 14,
    /// A node refused its log, and the operator restored it from backup.
    LogRefused = 15,
    /// Every node crashes at once.
    CrashAll = 16,
    /// A node is frozen.
    Pause = 17,
    /// A frozen node resumes.
    Resume = 18,
    /// A member crashes for good.
    PermanentCrash = 19,
    /// A member crashes for a long absence.
    AbsenceStart = 20,
    /// An absent member comes back.
    AbsenceEnd = 21,
    /// A minority is cut off from the rest for long.
    LastingPartitionStart = 22,
    /// The lasting partition is gone.
    LastingPartitionEnd = 23,
    /// A node caught up from a member (a state transfer) and starts again from it.
    CatchUp = 24,
    /// A node starts or finds itself in another configuration than before.
    Configuration = 25,
    /// The operator switches the cluster to configuration changes: every node stops.
    SwitchToChanges = 26,
    /// A member back with a damaged tail crashes in its start, before it synced anything.
    StartCrash = 27,
    /// A brief partition cuts one link only: two nodes cannot talk, both ways or one way.
    LinkCut = 28,
    /// A lasting partition cuts one link only, for long.
    LastingLinkCut = 29,
}

pub struct Trace {
    hash: u64,
    mode: TraceMode,
    lines: Vec<String>,
}

impl Trace {
    pub fn new(mode: TraceMode) -> Trace {
        Trace { hash: 0xcbf2_9ce4_8422_2325, mode, lines: Vec::new() }
    }

    /// Records one event: `tag` and `words` feed the hash; `describe` is only called when lines
    /// are kept.
    pub fn event(&mut self, now: u64, tag: Tag, words: &[u64], describe: impl FnOnce() -> String) {
        self.mix(now);
        self.mix(tag as u64);
        for &w in words {
            self.mix(w);
        }
        match self.mode {
            TraceMode::Off => {}
            TraceMode::Keep => self.lines.push(format!("{:>12.6}s  {}", now as f64 / 1e9, describe())),
            TraceMode::Print => eprintln!("{:>12.6}s  {}", now as f64 / 1e9, describe()),
        }
    }

    /// Whether readable lines are kept or printed (so they are worth describing).
    pub fn keeps_lines(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// A readable line that is not part of the hash: a note about an event the hash already
    /// covers through its effects (a fault's number, for the shrinker's suppressions).
    pub fn note(&mut self, now: u64, line: &str) {
        match self.mode {
            TraceMode::Off => {}
            TraceMode::Keep => self.lines.push(format!("{:>12.6}s  {line}", now as f64 / 1e9)),
            TraceMode::Print => eprintln!("{:>12.6}s  {line}", now as f64 / 1e9),
        }
    }

    /// FNV-style, a word at a time, with a final avalanche per word so that nearby values
    /// spread over all bits.
    fn mix(&mut self, word: u64) {
        let mut x = self.hash ^ word;
        x = x.wrapping_mul(0x0100_0000_01b3);
        x ^= x >> 29;
        self.hash = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }
}

/// A word for the trace hash from a message's kind (its transaction has a word of its own).
pub(crate) fn message_word(message: &Message) -> u64 {
    match message {
        Message::Prepare { .. } => 1,
        Message::Vote { vote: Vote::Yes | Vote::YesPinned, .. } => 2,
        Message::Vote { vote: Vote::No(_), .. } => 3,
        Message::Decision { decision: Decision::Commit, .. } => 4,
        Message::Decision { decision: Decision::Abort, .. } => 5,
        Message::Ack { .. } => 6,
        Message::Query { .. } => 7,
        Message::Visible { .. } => 8,
        Message::Finished { .. } => 9,
        Message::FinishedBelow { .. } => 10,
        Message::Heartbeat { .. } => 11,
        Message::LeaseGrant { .. } => 12,
        Message::Paxos(_) => 13,
        Message::JoinRequest { .. } => 14,
        Message::BootstrapQuery { .. } => 15,
        Message::BootstrapAnswer { clean, .. } => 16 | u64::from(*clean) << 8,
        Message::Votes(message) => 17 | vote_message_word(message) << 8,
    }
}

fn vote_message_word(message: &VoteMessage) -> u64 {
    match message {
        VoteMessage::Cast { value: VoteValue::Yes, .. } => 1,
        VoteMessage::Cast { value: VoteValue::No, .. } => 2,
        VoteMessage::Accepted { .. } => 3,
        VoteMessage::PromiseRequest { .. } => 4,
        VoteMessage::Promise { .. } => 5,
        VoteMessage::Outbid { .. } => 6,
        VoteMessage::AcceptRequest { .. } => 7,
    }
}

/// A word for the trace hash from a reply's outcome: its kind and, for a value, the value.
pub(crate) fn outcome_word(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Committed(results) => 1 ^ results.iter().fold(0u64, |h, r| h.rotate_left(7) ^ result_word(r)) << 8,
        Outcome::Value { value, version } => 2 ^ (bytes_word(value) ^ version.rotate_left(32)) << 8,
        Outcome::NotFound => 3,
        Outcome::Failed(OpFailure { op_index, reason }) => 4 | u64::from(*op_index) << 8 | (*reason as u64) << 40,
        Outcome::Rejected(_) => 5,
        Outcome::TryAgain(_) => 6,
        Outcome::NotServing(_) => 8,
        Outcome::Scanned { entries, next } => {
            let entries = entries.iter().fold(0u64, |h, e| {
                h.rotate_left(7) ^ bytes_word(&e.key) ^ e.value.as_deref().map_or(1, bytes_word) ^ e.version
            });
            7 ^ (entries ^ next.as_deref().map_or(0, bytes_word)) << 8
        }
    }
}

fn bytes_word(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |h: u64, &b| h.rotate_left(5) ^ u64::from(b))
}

fn result_word(result: &OpResult) -> u64 {
    match result {
        OpResult::Done { version } => *version,
        OpResult::Value { value, version } => value.as_deref().map_or(1, bytes_word) ^ version.rotate_left(32),
        OpResult::Integer { value, version } => (*value as u64) ^ version.rotate_left(32),
    }
}

/// A word for the trace hash from a transaction id.
pub(crate) fn txn_word(t: TxnId) -> u64 {
    (u64::from(t.coordinator.0) << 56) ^ (t.incarnation << 40) ^ t.number
}
