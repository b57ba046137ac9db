//! The clients of a run driven as etcdbench drives etcd's: a few threads, each multiplexing its
//! share of the clients' connections on one poller (etcdbench runs a two-thread tokio runtime),
//! rather than one OS thread per client. On two cores, one blocking thread per client spent
//! about as much CPU on the load as the three nodes spent serving it, most of it going to sleep
//! and waking up.
//!
//! Each client is still one connection with one request in flight, its own client id, and keys
//! drawn at random; its latency runs from the request's send to its reply. What the client
//! library adds is left out: a connection is made once and never replaced, and there is no
//! fail-over. A `TryAgain` is sent again with the same request id after a jittered pause, as the
//! library does; any other outcome than the one expected, a lost connection or a request
//! unanswered within the timeout is an error (the client stops).

use crate::{LATENCY_US_MAX, Measured, Workload, new_histogram};
use dkv_core::codec::frame::{self, Frame};
use dkv_core::{ClientId, Limits, Outcome, Request, RequestId};
use dkv_net::testing::SplitMix64;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The first pause before a `TryAgain` is sent again; it doubles up to [`TRY_AGAIN_PAUSE_MAX`].
const TRY_AGAIN_PAUSE: Duration = Duration::from_millis(10);
const TRY_AGAIN_PAUSE_MAX: Duration = Duration::from_millis(500);
/// How long a poll waits at most, so the end of the run and the timeouts are seen in time.
const POLL_TICK: Duration = Duration::from_millis(10);
/// Bytes read from a socket at a time.
const READ_BYTES: usize = 64 * 1024;

/// One client: its connection and the request it has in flight.
struct DrivenClient {
    stream: TcpStream,
    id: ClientId,
    seq: u64,
    rng: SplitMix64,
    /// The request in flight, encoded, and when it was first sent.
    request: Vec<u8>,
    sent_at: Instant,
    /// Encoded bytes not yet taken by the socket.
    output: Vec<u8>,
    input: Vec<u8>,
    /// After a `TryAgain`: when to send the request again, and the pause after the next one.
    again_at: Option<Instant>,
    pause: Duration,
    stopped: bool,
}

/// Connects `clients` clients, client `i` to `nodes[i % nodes.len()]`, and drives them until
/// `end` (or `stop`), counting each answered request in `completed`.
pub(crate) fn drive(
    workload: &Workload,
    nodes: &[SocketAddr],
    clients: std::ops::Range<u32>,
    end: Instant,
    timeout: Duration,
    stop: &AtomicBool,
    completed: &AtomicU64,
) -> io::Result<Measured> {
    let mut poll = Poll::new()?;
    let mut driven = Vec::new();
    for i in clients {
        let stream = std::net::TcpStream::connect(nodes[i as usize % nodes.len()])?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry().register(&mut stream, Token(driven.len()), Interest::READABLE | Interest::WRITABLE)?;
        let id = ClientId(getrandom::u64().map_err(io::Error::other)?);
        driven.push(DrivenClient {
            stream,
            id,
            seq: 0,
            rng: SplitMix64(id.0 ^ u64::from(i) << 32),
            request: Vec::new(),
            sent_at: Instant::now(),
            output: Vec::new(),
            input: Vec::new(),
            again_at: None,
            pause: TRY_AGAIN_PAUSE,
            stopped: false,
        });
    }
    let mut measured = Measured { latency_us: new_histogram(), ops: 0, errors: 0, first_error: None };
    for client in &mut driven {
        client.start_next(workload);
        client.flush(&mut measured);
    }
    let frame_bytes_max = Limits::default().frame_bytes_max();
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; READ_BYTES];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match poll.poll(&mut events, Some(POLL_TICK.min(end - now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let client = &mut driven[event.token().0];
            if client.stopped {
                continue;
            }
            if event.is_writable() {
                client.flush(&mut measured);
            }
            if event.is_readable() {
                client.read(workload, &mut buffer, frame_bytes_max, &mut measured, completed);
            }
        }
        let now = Instant::now();
        for client in driven.iter_mut().filter(|client| !client.stopped) {
            if client.again_at.is_some_and(|at| at <= now) {
                client.again_at = None;
                client.output.extend_from_slice(&client.request);
                client.flush(&mut measured);
            } else if client.again_at.is_none() && now.duration_since(client.sent_at) > timeout {
                client.fail(&mut measured, format!("no reply within {timeout:?}"));
            }
        }
    }
    Ok(measured)
}

impl DrivenClient {
    /// Encodes the workload's next request, to be sent by the next flush.
    fn start_next(&mut self, workload: &Workload) {
        self.seq += 1;
        let operation = workload.next_operation(&mut self.rng);
        let request = Request { id: RequestId { client: self.id, seq: self.seq }, operation };
        self.request.clear();
        frame::encode(&Frame::Request(request), &mut self.request);
        self.output.extend_from_slice(&self.request);
        self.sent_at = Instant::now();
        self.pause = TRY_AGAIN_PAUSE;
    }

    /// Writes what the socket takes; the rest waits for it to be writable again.
    fn flush(&mut self, measured: &mut Measured) {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(measured, format!("cannot send: {e}")),
            }
        }
    }

    /// Reads what arrived; the reply to the request in flight ends it, and the next starts.
    fn read(
        &mut self,
        workload: &Workload,
        buffer: &mut [u8],
        frame_bytes_max: u32,
        measured: &mut Measured,
        completed: &AtomicU64,
    ) {
        loop {
            match self.stream.read(buffer) {
                Ok(0) => return self.fail(measured, "the node closed the connection".into()),
                Ok(n) => {
                    self.input.extend_from_slice(&buffer[..n]);
                    if n < buffer.len() {
                        // Drained: bytes arriving later raise a new readiness edge, so the
                        // read that would only say "would block" is skipped (as the server
                        // does).
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(measured, format!("cannot receive: {e}")),
            }
        }
        loop {
            let (frame, used) = match frame::decode_stream(&self.input, frame_bytes_max) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return,
                Err(error) => return self.fail(measured, format!("bad reply: {error}")),
            };
            self.input.drain(..used);
            let reply = match frame {
                Frame::Reply(reply) if reply.id == (RequestId { client: self.id, seq: self.seq }) => reply,
                // An answer to an earlier copy of a request already answered.
                Frame::Reply(_) => continue,
                other => return self.fail(measured, format!("unexpected frame: {other:?}")),
            };
            match reply.outcome {
                Outcome::Committed(_) | Outcome::Value { .. } => {
                    let micros = (self.sent_at.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
                    measured.latency_us.record(micros).expect("latencies are clamped into the histogram's range");
                    measured.ops += 1;
                    completed.fetch_add(1, Ordering::Relaxed);
                    self.start_next(workload);
                    self.flush(measured);
                }
                Outcome::TryAgain(_) => {
                    // Jittered, so that clients that collided once do not collide again in step.
                    let jitter = 0.5 + 0.5 * (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    self.again_at = Some(Instant::now() + self.pause.mul_f64(jitter));
                    self.pause = (self.pause * 2).min(TRY_AGAIN_PAUSE_MAX);
                }
                other => return self.fail(measured, format!("unexpected outcome: {other}")),
            }
        }
    }

    fn fail(&mut self, measured: &mut Measured, error: String) {
        measured.errors += 1;
        measured.first_error.get_or_insert(error);
        self.stopped = true;
    }
}
