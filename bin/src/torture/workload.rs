//! The clients of a torture run: threads that each drive one [`Client`] through gets, puts,
//! deletes and multi-key transactions on a small key set, and record what they saw in the
//! simulator's history format, with real monotonic time as invocation and response times.
//!
//! Every written value is unique (client, request, op), so a read names exactly the write it
//! saw. How an error is recorded is what the client library says of it: a request that never
//! left the client is `NotApplied`; any other error leaves the outcome `Unknown`.

use dkv_core::{Operation, TxnOp};
use dkv_net::Client;
use dkv_sim::history::{Op, OpKind, Result as OpResult, result_of};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests per client at most, however long the run.
pub const OPS_PER_CLIENT_MAX: usize = 10_000_000;

/// After a request that failed (not sent, or no outcome), a client waits this long before the
/// next, as a real client backs off, so a cluster that is down does not fill the history with
/// failures (each unknown outcome widens the checkers' search).
const FAILURE_PAUSE: Duration = Duration::from_millis(50);

/// Real monotonic time, in nanoseconds since the run started.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock { start: Instant::now() }
    }

    pub fn nanos(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// One client and the sequence number its library gives the next request (the library counts
/// from 1, one per request), so each recorded op names its request id.
pub struct RecordingClient {
    client: Client,
    last_seq: u64,
    /// Requests recorded as `NotApplied` because they were never sent.
    pub not_sent: u64,
}

impl RecordingClient {
    pub fn new(client: Client) -> RecordingClient {
        RecordingClient { client, last_seq: 0, not_sent: 0 }
    }

    /// Runs `operation` and records it.
    pub fn run(&mut self, operation: Operation, clock: RunClock) -> Op {
        self.last_seq += 1;
        let kind = match &operation {
            Operation::Get { key } => OpKind::Get { key: key.clone() },
            Operation::Txn { ops } => OpKind::Txn { ops: ops.clone() },
            Operation::Scan { start, end, limit, keys_only } => {
                OpKind::Scan { start: start.clone(), end: end.clone(), limit: *limit, keys_only: *keys_only }
            }
        };
        let invoke = clock.nanos();
        let result = self.client.execute(operation);
        let now = clock.nanos();
        let (result, response, abandoned_at) = match result {
            Ok(outcome) => {
                let result = result_of(&outcome).expect("the client library retries TryAgain itself");
                (result, Some(now), None)
            }
            Err(error) if !error.was_sent() => {
                self.not_sent += 1;
                (OpResult::NotApplied, Some(now), None)
            }
            Err(_) => (OpResult::Unknown, None, Some(now)),
        };
        Op { client: self.client.id(), seq: self.last_seq, kind, invoke, response, result, attempts: 1, abandoned_at }
    }
}

/// A weighted mix like the simulator's: 40% gets, 35% single writes (put, update, delete), 25%
/// transactions of 2 to 4 writes.
pub fn next_operation(rng: &mut ChaCha8Rng, keys: usize, client: u64, seq: u64) -> Operation {
    let key = |rng: &mut ChaCha8Rng| format!("k{}", rng.next_u64() % keys as u64).into_bytes();
    let value = |i: usize| format!("c{client:x}.{seq}.{i}").into_bytes();
    let write = |rng: &mut ChaCha8Rng, i: usize| {
        let key = key(rng);
        match rng.next_u64() % 4 {
            0 | 1 => TxnOp::Put { key, value: value(i) },
            2 => TxnOp::Update { key, value: value(i) },
            _ => TxnOp::Delete { key },
        }
    };
    match rng.next_u64() % 100 {
        0..40 => Operation::Get { key: key(rng) },
        40..75 => Operation::Txn { ops: vec![write(rng, 0)] },
        _ => {
            let n = 2 + (rng.next_u64() % 3) as usize;
            Operation::Txn { ops: (0..n).map(|i| write(rng, i)).collect() }
        }
    }
}

/// What one client thread recorded.
pub struct ClientRecord {
    pub ops: Vec<Op>,
    pub not_sent: u64,
}

/// Starts a client thread that runs operations until `stop` is set (or it has run
/// [`OPS_PER_CLIENT_MAX`]), then returns what it recorded.
/// `commits` counts the writes that commit, over all clients, as they happen.
pub fn spawn_client(
    client: Client,
    mut rng: ChaCha8Rng,
    keys: usize,
    clock: RunClock,
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
) -> JoinHandle<ClientRecord> {
    std::thread::spawn(move || {
        let mut client = RecordingClient::new(client);
        let mut ops = Vec::new();
        for _ in 0..OPS_PER_CLIENT_MAX {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let operation = next_operation(&mut rng, keys, client.client.id().0, client.last_seq + 1);
            let op = client.run(operation, clock);
            if op.response.is_none() || op.result == OpResult::NotApplied {
                std::thread::sleep(FAILURE_PAUSE);
            }
            if matches!(op.result, OpResult::Committed(_)) {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            ops.push(op);
        }
        ClientRecord { ops, not_sent: client.not_sent }
    })
}
