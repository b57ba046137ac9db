//! [`Gateway`]: the node as its own client, for protocols whose requests carry no request id
//! (the Redis protocol, the original text protocol).
//!
//! dkv's exactly-once rule rests on request ids: a client numbers its requests, retries one with
//! the same id, and every node remembers each client's last completed request (its completion
//! record). A Redis or text client sends no id, so the node that receives its command runs it
//! under an id of its own. Those ids must not be made per connection: every connection would
//! then leave a completion record behind, and a flood of one-shot connections would fill the
//! completions table. So the gateway keeps a bounded pool of client ids instead (slots), drawn
//! at random when the process starts, never reused: each slot runs one write at a time with
//! increasing sequence numbers, exactly as one well-behaved dkv client does. However many
//! connections come and go, the gateway holds at most `slots_max` completion records.
//!
//! - A write takes a free slot for as long as it runs; with none free it is answered
//!   [`GatewayError::Busy`] at once.
//! - Reads need no slot (a get leaves no completion record); they are bounded in number too.
//! - `TryAgain` answers are retried with the same request id (never applied twice), after a
//!   jittered, doubling pause, until the request's deadline; an attempt whose answer never
//!   comes (its reply route was forgotten) is sent again after [`ATTEMPT_TIMEOUT`]. At the
//!   deadline the asker is told [`GatewayError::NoOutcome`], which says whether the write may
//!   or may not have been applied.
//!
//! The gateway does no I/O: the event loop hands each [`Request`] it returns to the node, hands
//! back the node's replies with [`Gateway::on_reply`], and calls [`Gateway::on_timeout`] at
//! [`Gateway::deadline`]; every [`Answer`] names the [`Asker`] it is for.

use crate::routes::Route;
use crate::testing::SplitMix64;
use dkv_core::completions::CLIENT_RETRY_WINDOW_MAX;
use dkv_core::{ClientId, Operation, Outcome, Reply, Request, RequestId, Time, TryAgainReason};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use thiserror::Error;

/// An attempt that gets no answer for this long is sent again (same id): its reply was lost,
/// e.g. because the node's table of reply routes forgot it under load.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The first pause before retrying a `TryAgain`; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// What the gateway may hold: how many writes run at once (and so how many client ids it uses
/// at most), how many reads, and how long a request is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayLimits {
    /// Writes running at once, each under a client id of its own: the most completion records
    /// id-less protocols can hold on every node. Past it, a write is answered "busy".
    pub slots_max: usize,
    /// Reads running at once; past it, a read is answered "busy".
    pub reads_max: usize,
    /// Requests of the text protocol over UDP running at once for one source address; past it,
    /// that source is answered "busy", so one sender cannot take every slot. (A sender that
    /// forges its source addresses still can: that is what `slots_max` bounds.)
    pub datagram_source_max: usize,
    /// How long a request is retried before its asker is told it has no outcome; at most
    /// [`CLIENT_RETRY_WINDOW_MAX`] (a longer one is cut to it), as for every client.
    pub request_timeout: Duration,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            slots_max: 1024,
            reads_max: 16_384,
            datagram_source_max: 64,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Who is waiting for a request's answer: the route back to it (a connection, or the source
/// of a datagram) and a tag of its own choosing, which its answer carries back, so a session
/// with several requests running can tell their answers apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Asker {
    pub(crate) route: Route,
    pub(crate) tag: u64,
}

/// Why the gateway could not get a request's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum GatewayError {
    /// Too many requests of id-less clients run on this node already; nothing was sent.
    #[error(
        "busy, this node runs as many requests of Redis and text clients as it may ({max}); nothing was applied, try again shortly"
    )]
    Busy { max: usize },
    /// Held back by its asker (waiting to be batched) for as long as it may wait: never sent,
    /// nothing was applied.
    #[error(
        "waited {:.1} s without being run (earlier writes of its keys had no outcome yet, or this node was busy); nothing was applied, try again",
        .waited.as_secs_f64()
    )]
    Expired { waited: Duration },
    /// Retried until the deadline with no outcome. For a write, an attempt may still complete.
    #[error("{}", no_outcome_text(*.write, .reason.as_ref(), *.waited))]
    NoOutcome { write: bool, reason: Option<TryAgainReason>, waited: Duration },
}

impl GatewayError {
    /// Whether the request may have been applied although no outcome came back.
    pub fn may_have_been_applied(&self) -> bool {
        matches!(self, GatewayError::NoOutcome { write: true, .. })
    }
}

fn no_outcome_text(write: bool, reason: Option<&TryAgainReason>, waited: Duration) -> String {
    let why = match reason {
        Some(reason) => format!("{reason}"),
        None => "the node did not answer".to_string(),
    };
    let effect = if write { "the write may or may not have been applied" } else { "nothing was changed" };
    format!("no outcome after {:.1} s ({why}); {effect}", waited.as_secs_f64())
}

/// The end of one request: its definite outcome (never `TryAgain`), `NotServing` (this node
/// cannot answer it; the asker should ask another node, which the gateway cannot do for it), or
/// why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) asker: Asker,
    pub(crate) result: Result<Outcome, GatewayError>,
}

/// One client id of the pool, with the sequence number of its last request.
struct Slot {
    client: ClientId,
    last_seq: u64,
}

/// A request the gateway is running.
struct Running {
    asker: Asker,
    operation: Operation,
    /// The slot a write runs under (reads have none).
    slot: Option<usize>,
    started_at: Time,
    /// When the asker is told there is no outcome.
    deadline: Time,
    /// When the gateway acts next: resends after a backoff, or after an attempt timed out.
    wake_at: Time,
    /// Whether an attempt is out (else the request waits for its backoff to end).
    awaiting_reply: bool,
    backoff: Duration,
    last_reason: Option<TryAgainReason>,
    /// A `TryAgain` said an attempt of this write was made and did not commit (a conflict, a
    /// timeout): a settlement may still commit it (docs/protocol.md §7.4, "Inferred
    /// commits"), so "not serving" no longer means nothing was applied.
    attempted: bool,
}

impl Running {
    /// The answer for a request ended at `now` without an outcome: a write may or may not have
    /// been applied.
    fn no_outcome(self, now: Time) -> Answer {
        let (write, reason, waited) = (self.slot.is_some(), self.last_reason, now.saturating_since(self.started_at));
        Answer { asker: self.asker, result: Err(GatewayError::NoOutcome { write, reason, waited }) }
    }
}

/// The pool of client ids and the requests running under them (see the module's doc).
pub(crate) struct Gateway {
    limits: GatewayLimits,
    slots: Vec<Slot>,
    /// Slots with no request running, reused last-freed first.
    free: Vec<usize>,
    /// Where new client ids come from: seeded from the OS at start, so ids differ between
    /// processes; splitmix64 never repeats a value within one, so no id is used twice.
    ids: SplitMix64,
    /// Reads share one client id of their own (a get leaves no completion record).
    reader: ClientId,
    reader_last_seq: u64,
    reads: usize,
    running: BTreeMap<RequestId, Running>,
    /// `(wake_at, id)` of every running request, so the next wake-up is the first entry.
    wakeups: BTreeSet<(Time, RequestId)>,
    /// Jitter for backoffs, so requests that collided once do not collide again in step.
    jitter: SplitMix64,
}

impl Gateway {
    /// A gateway whose client ids and jitter derive from `seed` (random from the OS in a
    /// server: see [`Gateway::with_random_ids`]).
    pub(crate) fn new(mut limits: GatewayLimits, seed: u64) -> Gateway {
        limits.request_timeout = Gateway::request_timeout(limits);
        let mut ids = SplitMix64(seed);
        let reader = ClientId(ids.next_u64());
        let jitter = SplitMix64(ids.next_u64());
        Gateway {
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            ids,
            reader,
            reader_last_seq: 0,
            reads: 0,
            running: BTreeMap::new(),
            wakeups: BTreeSet::new(),
            jitter,
        }
    }

    /// The time a request gets in all under `limits`: their request timeout, within the
    /// retry window (past it the nodes may have forgotten a request was done, and a retry
    /// could apply it twice).
    pub(crate) fn request_timeout(limits: GatewayLimits) -> Duration {
        limits.request_timeout.min(CLIENT_RETRY_WINDOW_MAX)
    }

    /// A gateway with client ids no other process uses: drawn from the OS's randomness.
    pub(crate) fn with_random_ids(limits: GatewayLimits) -> Gateway {
        // Without OS randomness, the clock's nanoseconds still differ between processes.
        let seed = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        Gateway::new(limits, seed)
    }

    /// [`Gateway::start_queued`] for a request not held back.
    #[cfg(test)]
    pub(crate) fn start(&mut self, now: Time, asker: Asker, operation: Operation) -> Result<Request, GatewayError> {
        self.start_queued(now, now, asker, operation)
    }

    /// Starts running `operation` for `asker`: the request to hand to the node now, or why it
    /// cannot run (nothing was sent). Its deadline counts from `queued_at`, when its asker
    /// took it (`now` for a request not held back; earlier for one that waited to be batched),
    /// so no request waits longer in all than the request timeout. One whose deadline has
    /// passed is not sent at all.
    pub(crate) fn start_queued(
        &mut self,
        now: Time,
        queued_at: Time,
        asker: Asker,
        operation: Operation,
    ) -> Result<Request, GatewayError> {
        let deadline = queued_at + self.limits.request_timeout;
        if deadline <= now {
            return Err(GatewayError::Expired { waited: now.saturating_since(queued_at) });
        }
        let write = is_write(&operation);
        let (id, slot) = if write {
            let slot = self.take_slot()?;
            let s = &mut self.slots[slot];
            s.last_seq += 1;
            (RequestId { client: s.client, seq: s.last_seq }, Some(slot))
        } else {
            if self.reads >= self.limits.reads_max {
                return Err(GatewayError::Busy { max: self.limits.reads_max });
            }
            self.reads += 1;
            self.reader_last_seq += 1;
            (RequestId { client: self.reader, seq: self.reader_last_seq }, None)
        };
        let wake_at = (now + ATTEMPT_TIMEOUT).min(deadline);
        let running = Running {
            asker,
            operation: operation.clone(),
            slot,
            started_at: queued_at,
            deadline,
            wake_at,
            awaiting_reply: true,
            backoff: BACKOFF_FIRST,
            last_reason: None,
            attempted: false,
        };
        self.running.insert(id, running);
        self.wakeups.insert((wake_at, id));
        Ok(Request { id, operation })
    }

    /// A free slot, made if the pool has not reached its bound yet.
    fn take_slot(&mut self) -> Result<usize, GatewayError> {
        if let Some(slot) = self.free.pop() {
            return Ok(slot);
        }
        if self.slots.len() >= self.limits.slots_max {
            return Err(GatewayError::Busy { max: self.limits.slots_max });
        }
        self.slots.push(Slot { client: ClientId(self.ids.next_u64()), last_seq: 0 });
        Ok(self.slots.len() - 1)
    }

    /// The node's reply to one of the gateway's requests: its answer, or `None` when it will be
    /// retried (or was not the gateway's, or was answered already).
    pub(crate) fn on_reply(&mut self, now: Time, reply: Reply) -> Option<Answer> {
        let running = self.running.get_mut(&reply.id)?;
        match reply.outcome {
            // A differently configured cluster does not heal by waiting: say so now.
            Outcome::TryAgain(reason) if !matches!(reason, TryAgainReason::ConfigMismatch { .. }) => {
                if !running.awaiting_reply {
                    // A late answer to an attempt already given up on; the retry is scheduled.
                    return None;
                }
                let pause = running.backoff.mul_f64(0.5 + 0.5 * self.jitter.fraction());
                running.backoff = (running.backoff * 2).min(BACKOFF_MAX);
                running.attempted |= reason.follows_an_attempt();
                running.last_reason = Some(reason);
                running.awaiting_reply = false;
                let wake_at = (now + pause).min(running.deadline);
                let old = std::mem::replace(&mut running.wake_at, wake_at);
                self.wakeups.remove(&(old, reply.id));
                self.wakeups.insert((wake_at, reply.id));
                None
            }
            Outcome::TryAgain(reason) => {
                let mut running = self.finish(reply.id)?;
                running.last_reason = Some(reason);
                Some(running.no_outcome(now))
            }
            // "Not serving" after an attempt of the write: the asker, told to ask another node,
            // would send it again as a new write, and it may have been applied.
            Outcome::NotServing(_) if running.slot.is_some() && running.attempted => {
                Some(self.finish(reply.id)?.no_outcome(now))
            }
            // Definite outcomes, and "not serving": waiting here would not make this node serve
            // (it lacks a lease, or is no member); the asker is told at once to ask another.
            outcome => {
                let running = self.finish(reply.id)?;
                Some(Answer { asker: running.asker, result: Ok(outcome) })
            }
        }
    }

    /// When [`Gateway::on_timeout`] next has something to do.
    pub(crate) fn deadline(&self) -> Option<Time> {
        self.wakeups.first().map(|&(at, _)| at)
    }

    /// Everything due at `now`: requests to send again (same ids), and answers for requests
    /// whose deadline passed. Calling it early, or twice, is harmless.
    pub(crate) fn on_timeout(&mut self, now: Time) -> (Vec<Request>, Vec<Answer>) {
        let mut resend = Vec::new();
        let mut answers = Vec::new();
        while let Some(&(at, id)) = self.wakeups.first() {
            if at > now {
                break;
            }
            self.wakeups.pop_first();
            let running = self.running.get_mut(&id).expect("every wake-up has its request");
            if now >= running.deadline {
                answers.push(self.finish(id).expect("just found").no_outcome(now));
                continue;
            }
            // An attempt whose answer never came may have begun a transaction, as one told
            // `TryAgain` after a conflict did (review finding).
            running.attempted |= running.awaiting_reply;
            running.awaiting_reply = true;
            running.wake_at = (now + ATTEMPT_TIMEOUT).min(running.deadline);
            self.wakeups.insert((running.wake_at, id));
            resend.push(Request { id, operation: running.operation.clone() });
        }
        (resend, answers)
    }

    /// Ends a request: frees its slot (its next request takes the next sequence number) or its
    /// read's place.
    fn finish(&mut self, id: RequestId) -> Option<Running> {
        let running = self.running.remove(&id)?;
        self.wakeups.remove(&(running.wake_at, id));
        match running.slot {
            Some(slot) => self.free.push(slot),
            None => self.reads -= 1,
        }
        Some(running)
    }

    /// Client ids made so far: never more than `slots_max`, however many clients came and went.
    pub(crate) fn client_ids(&self) -> usize {
        self.slots.len()
    }

    /// Requests running now.
    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.len()
    }
}

/// Whether an operation needs a slot: a transaction (even one that only reads) goes through
/// two-phase commit and leaves a completion record; gets and scans are served from memory.
fn is_write(operation: &Operation) -> bool {
    matches!(operation, Operation::Txn { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::{FailReason, OpFailure, TxnOp};

    fn put(key: &str) -> Operation {
        Operation::Txn { ops: vec![TxnOp::Put { key: key.into(), value: b"v".to_vec() }] }
    }

    fn get(key: &str) -> Operation {
        Operation::Get { key: key.into() }
    }

    fn asker(tag: u64) -> Asker {
        Asker { route: Route::Tcp { key: 0, serial: 1 }, tag }
    }

    fn limits(slots_max: usize) -> GatewayLimits {
        GatewayLimits { slots_max, reads_max: 2, datagram_source_max: 1, request_timeout: Duration::from_secs(10) }
    }

    fn at(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    fn reply(id: RequestId, outcome: Outcome) -> Reply {
        Reply { id, outcome }
    }

    /// Writes run one at a time per client id with increasing sequence numbers, and a slot
    /// freed by a finished write is reused: a thousand writes in a row use one client id.
    #[test]
    fn one_after_another_writes_reuse_one_client_id() {
        let mut gateway = Gateway::new(limits(4), 7);
        let mut last: Option<RequestId> = None;
        for i in 0..1000 {
            let request = gateway.start(at(i), asker(i), put("k")).unwrap();
            if let Some(last) = last {
                assert_eq!(request.id.client, last.client);
                assert_eq!(request.id.seq, last.seq + 1);
            }
            last = Some(request.id);
            let answer = gateway.on_reply(at(i), reply(request.id, Outcome::Committed(vec![]))).unwrap();
            assert_eq!(answer, Answer { asker: asker(i), result: Ok(Outcome::Committed(vec![])) });
        }
        assert_eq!(gateway.client_ids(), 1);
        assert_eq!(gateway.running(), 0);
    }

    /// Writes at once take distinct client ids up to the bound; the next one is "busy" and
    /// sends nothing; a finished write frees its slot for the next.
    #[test]
    fn concurrent_writes_are_bounded_by_the_pool() {
        let mut gateway = Gateway::new(limits(3), 7);
        let ids: Vec<RequestId> = (0..3).map(|i| gateway.start(at(0), asker(i), put("k")).unwrap().id).collect();
        let clients: BTreeSet<ClientId> = ids.iter().map(|id| id.client).collect();
        assert_eq!(clients.len(), 3);
        assert_eq!(gateway.start(at(0), asker(9), put("k")), Err(GatewayError::Busy { max: 3 }));
        let failed = Outcome::Failed(OpFailure { op_index: 0, reason: FailReason::KeyNotFound });
        gateway.on_reply(at(1), reply(ids[1], failed)).unwrap();
        let next = gateway.start(at(2), asker(10), put("k")).unwrap();
        assert_eq!(next.id, RequestId { client: ids[1].client, seq: ids[1].seq + 1 });
        assert_eq!(gateway.client_ids(), 3);
    }

    /// Reads (gets and scans) take no slot but are bounded too.
    #[test]
    fn reads_take_no_slot_and_are_bounded() {
        let mut gateway = Gateway::new(limits(1), 7);
        let write = gateway.start(at(0), asker(0), put("k")).unwrap();
        let a = gateway.start(at(0), asker(1), get("k")).unwrap();
        let scan = Operation::Scan { start: Vec::new(), end: None, limit: 10, keys_only: false };
        let b = gateway.start(at(0), asker(2), scan).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.id.client, write.id.client);
        assert_eq!(gateway.start(at(0), asker(3), get("k")), Err(GatewayError::Busy { max: 2 }));
        gateway.on_reply(at(1), reply(a.id, Outcome::NotFound)).unwrap();
        assert!(gateway.start(at(1), asker(3), get("k")).is_ok());
    }

    /// A `TryAgain` is retried with the very same request id after a pause, and the request
    /// ends with the outcome of the attempt that gets one.
    #[test]
    fn try_again_is_retried_with_the_same_id() {
        let mut gateway = Gateway::new(limits(1), 7);
        let request = gateway.start(at(0), asker(5), put("k")).unwrap();
        assert_eq!(gateway.on_reply(at(1), reply(request.id, Outcome::TryAgain(TryAgainReason::Locked))), None);
        let wake = gateway.deadline().unwrap();
        assert!(wake > at(1) && wake <= at(1) + BACKOFF_FIRST, "a short pause first, not {wake}");
        assert_eq!(gateway.on_timeout(at(1)), (vec![], vec![]), "nothing is due before the pause ends");
        let (resend, answers) = gateway.on_timeout(wake);
        assert_eq!(resend, vec![request.clone()]);
        assert!(answers.is_empty());
        let answer = gateway.on_reply(wake, reply(request.id, Outcome::Committed(vec![]))).unwrap();
        assert_eq!(answer.result, Ok(Outcome::Committed(vec![])));
        assert_eq!(answer.asker, asker(5));
    }

    /// "Not serving" is not retried here: the asker hears it at once, to ask another node.
    #[test]
    fn not_serving_is_answered_at_once() {
        let mut gateway = Gateway::new(limits(1), 7);
        let request = gateway.start(at(0), asker(5), get("k")).unwrap();
        let not_serving = Outcome::NotServing(dkv_core::NotServingReason::NoLease);
        let answer = gateway.on_reply(at(1), reply(request.id, not_serving.clone())).unwrap();
        assert_eq!(answer, Answer { asker: asker(5), result: Ok(not_serving) });
        assert_eq!(gateway.deadline(), None, "nothing left to retry");
    }

    /// "Not serving" after an attempt of a write that did not commit (its node left the
    /// configuration) ends the write "may or may not have been applied": a settlement may still
    /// commit that attempt (docs/protocol.md §7.4, "Inferred commits"), and the asker, told to
    /// ask another node, would send it again as a new write. After a `TryAgain` that follows no
    /// attempt (the node was starting), "not serving" is passed on as it is.
    #[test]
    fn not_serving_after_an_attempt_of_a_write_may_have_been_applied() {
        let not_a_member = Outcome::NotServing(dkv_core::NotServingReason::NotAMember);
        for (earlier, may_have_been_applied) in [(TryAgainReason::Conflict, true), (TryAgainReason::Starting, false)] {
            let mut gateway = Gateway::new(limits(1), 7);
            let request = gateway.start(at(0), asker(5), put("k")).unwrap();
            assert_eq!(gateway.on_reply(at(1), reply(request.id, Outcome::TryAgain(earlier.clone()))), None);
            let wake = gateway.deadline().unwrap();
            let (resend, _) = gateway.on_timeout(wake);
            assert_eq!(resend, vec![request.clone()]);
            let answer = gateway.on_reply(wake, reply(request.id, not_a_member.clone())).unwrap();
            match answer.result {
                Err(error) => assert!(may_have_been_applied && error.may_have_been_applied(), "after {earlier:?}"),
                Ok(outcome) => assert!(!may_have_been_applied && outcome == not_a_member, "after {earlier:?}"),
            }
        }
        // An attempt whose answer never came counts as one made.
        let mut gateway = Gateway::new(limits(1), 7);
        let request = gateway.start(at(0), asker(5), put("k")).unwrap();
        let (resend, _) = gateway.on_timeout(gateway.deadline().unwrap());
        assert_eq!(resend, vec![request.clone()]);
        let answer = gateway.on_reply(at(2_000), reply(request.id, not_a_member)).unwrap();
        assert!(answer.result.unwrap_err().may_have_been_applied());
    }

    /// A request that keeps getting `TryAgain` ends at its deadline with an answer saying the
    /// write may or may not have been applied; its slot is free again.
    #[test]
    fn a_write_without_outcome_by_its_deadline_may_have_been_applied() {
        let mut gateway = Gateway::new(limits(1), 7);
        let request = gateway.start(at(0), asker(5), put("k")).unwrap();
        let mut now = at(0);
        let mut attempts = 1;
        let answer = loop {
            assert!(attempts < 1000, "the retries end");
            gateway.on_reply(now, reply(request.id, Outcome::TryAgain(TryAgainReason::Conflict)));
            now = gateway.deadline().unwrap();
            let (resend, mut answers) = gateway.on_timeout(now);
            if let Some(answer) = answers.pop() {
                break answer;
            }
            assert_eq!(resend.len(), 1);
            assert_eq!(resend[0].id, request.id);
            attempts += 1;
        };
        assert_eq!(now, at(10_000));
        let error = answer.result.unwrap_err();
        assert!(error.may_have_been_applied());
        assert!(error.to_string().contains("may or may not have been applied"), "{error}");
        assert!(error.to_string().contains("other transactions kept holding the same keys"), "{error}");
        assert!(gateway.start(now, asker(6), put("k")).is_ok(), "the slot is free again");
    }

    /// An attempt whose reply never comes is sent again after the attempt timeout.
    #[test]
    fn a_lost_reply_is_asked_for_again() {
        let mut gateway = Gateway::new(limits(1), 7);
        let request = gateway.start(at(0), asker(5), get("k")).unwrap();
        assert_eq!(gateway.deadline(), Some(at(0) + ATTEMPT_TIMEOUT));
        let (resend, answers) = gateway.on_timeout(at(0) + ATTEMPT_TIMEOUT);
        assert_eq!(resend, vec![request]);
        assert!(answers.is_empty());
    }

    /// A reply for a request the gateway is not running is ignored, not misdelivered.
    #[test]
    fn unknown_and_repeated_replies_are_ignored() {
        let mut gateway = Gateway::new(limits(1), 7);
        let request = gateway.start(at(0), asker(5), put("k")).unwrap();
        let stranger = RequestId { client: ClientId(1), seq: 1 };
        assert_eq!(gateway.on_reply(at(1), reply(stranger, Outcome::Committed(vec![]))), None);
        assert!(gateway.on_reply(at(1), reply(request.id, Outcome::Committed(vec![]))).is_some());
        assert_eq!(gateway.on_reply(at(1), reply(request.id, Outcome::Committed(vec![]))), None);
    }

    /// A request held back by its asker has its deadline counted from when it was queued; one
    /// held past it is not sent, and says nothing was applied.
    #[test]
    fn a_queued_request_keeps_the_deadline_it_was_queued_with() {
        let mut gateway = Gateway::new(limits(1), 7);
        let request = gateway.start_queued(at(9_000), at(0), asker(1), put("k")).unwrap();
        assert_eq!(gateway.deadline(), Some(at(10_000)), "the attempt timeout is cut to the deadline");
        let (resend, answers) = gateway.on_timeout(at(10_000));
        assert!(resend.is_empty());
        assert_eq!(answers.len(), 1);
        assert!(answers[0].result.as_ref().is_err_and(GatewayError::may_have_been_applied), "{request:?} was sent");
        let expired = gateway.start_queued(at(20_000), at(10_000), asker(2), put("k")).unwrap_err();
        assert_eq!(expired, GatewayError::Expired { waited: Duration::from_secs(10) });
        assert!(!expired.may_have_been_applied());
        assert!(expired.to_string().contains("nothing was applied"), "{expired}");
        assert!(gateway.start(at(20_000), asker(3), put("k")).is_ok(), "no slot was taken");
    }

    /// Two gateways (two processes) use different client ids.
    #[test]
    fn client_ids_differ_between_processes() {
        let mut a = Gateway::with_random_ids(limits(1));
        let mut b = Gateway::with_random_ids(limits(1));
        let a = a.start(at(0), asker(0), put("k")).unwrap().id.client;
        let b = b.start(at(0), asker(0), put("k")).unwrap().id.client;
        assert_ne!(a, b);
    }
}
