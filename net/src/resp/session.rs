//! One Redis client connection: the commands it sent, run one after another, and the replies
//! it gets, in order.
//!
//! The session is sans-IO, like the core: bytes go in ([`Session::receive`]), requests for the
//! node come out ([`Session::poll`]), their outcomes go back in ([`Session::complete`]), and
//! reply bytes come out ([`Session::take_output`]). The server's event loop (or a test) drives
//! it.
//!
//! - **In order.** A command starts once the one before it has its reply, so replies leave in
//!   the order the commands came, and a write is never overtaken. Pipelined commands wait,
//!   decoded, in a queue bounded in count and bytes; past the bound the session stops taking
//!   input ([`Session::wants_input`]) until the queue drains, and TCP's flow control pushes
//!   back on the client.
//! - **Atomic.** Every multi-key command is one dkv transaction, and so is every EXEC: the ops
//!   of all queued commands, after a condition per watched key, in one transaction. dkv runs
//!   a transaction all or nothing: a queued command that cannot run (INCR of a non-number,
//!   SETNX of a key that exists) makes EXEC apply nothing and say which command failed (Redis
//!   would run the others).
//! - **WATCH** reads each key's value when it is watched; EXEC requires each still to have
//!   that value (or to be absent still). A key rewritten with the same value does not count as
//!   changed: the transaction is still serializable.
//! - **AUTH.** Where the node requires users, every command but AUTH, HELLO, QUIT and PING is
//!   answered `-NOAUTH` until the connection proves a user (`AUTH user token`, the token in hex
//!   as `dkv-server init` wrote it). A token is taken only where it cannot be read on the way:
//!   inside TLS, or over loopback.

use super::command::{self, Bytes, ClientCall, Command};
use super::cursors::ScanCursors;
use super::decode::{DecodeLimits, Decoder, ProtocolError};
use super::glob;
use super::introspection::{self, NodeFacts};
use super::plan::{self, Plan, Shape};
use super::reply::{Protocol, Reply};
use dkv_core::{Condition, Limits, Operation, Outcome, RejectReason, ScanEntry, TxnOp};
use std::collections::VecDeque;

/// What a session asks of the node it runs on, besides running requests.
pub trait Host {
    /// Whether clients must prove a user before anything else.
    fn auth_required(&self) -> bool;
    /// The user (an index into the node's users) whose name and hex token these are.
    fn authenticate(&self, user: &[u8], token_hex: &[u8]) -> Option<usize>;
    /// What INFO and DBSIZE report to `user` (an index into the node's users).
    fn facts(&self, user: Option<usize>) -> NodeFacts;
    /// The node's SCAN cursors.
    fn cursors(&mut self) -> &mut ScanCursors;
}

/// How much one session may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub decode: DecodeLimits,
    /// Decoded commands waiting behind the one running.
    pub pipeline_commands_max: usize,
    /// Bytes of them (one command is always taken, however large, if the queue is empty).
    pub pipeline_bytes_max: usize,
    /// Ops and bytes of one transaction: a MULTI's queued commands and the conditions of its
    /// watched keys together.
    pub txn_ops_max: usize,
    pub txn_bytes_max: usize,
    /// Bytes of a key: also the most a client name or a glob pattern may have.
    pub key_bytes_max: usize,
    /// Keys one SCAN page may visit (its COUNT is capped here).
    pub scan_count_max: u32,
    /// Keys KEYS may return; past it, KEYS says to use SCAN.
    pub keys_max: usize,
}

/// Reply bytes a session produces before it stops running commands until they are taken
/// (see [`Session::poll`]).
pub const OUTPUT_PAUSE_BYTES: usize = 1 << 20;
/// Pattern-matching steps one SCAN or KEYS page may spend (a few milliseconds at most).
pub const MATCH_STEPS_PER_PAGE: u64 = 4_000_000;
/// Keys KEYS looks at, at most, before it says to use SCAN: it runs in one go, and must not
/// hold the node for long.
pub const KEYS_VISITED_MAX: usize = 100_000;
/// Keys KEYS may return at most.
pub const KEYS_MAX: usize = 10_000;
/// SCAN's COUNT when the client gives none (as Redis).
const SCAN_COUNT_DEFAULT: u32 = 10;

impl SessionLimits {
    pub fn for_limits(limits: &Limits) -> SessionLimits {
        SessionLimits {
            decode: DecodeLimits::for_limits(limits),
            pipeline_commands_max: 1024,
            pipeline_bytes_max: 4 << 20,
            txn_ops_max: limits.txn_ops_max as usize,
            txn_bytes_max: limits.txn_bytes_max as usize,
            key_bytes_max: limits.key_bytes_max as usize,
            scan_count_max: limits.scan_limit_max,
            keys_max: KEYS_MAX,
        }
    }
}

/// A decoded command waiting its turn, or the protocol error that ended the stream there.
enum Pending {
    /// A command that reads or writes keys, planned (see [`plan`]).
    Data(Plan),
    /// Any other command as parsed, or the reply that says why it cannot run.
    Command(Result<Command, Reply>),
    ProtocolError(ProtocolError),
}

/// Commands of a pipeline run together as one transaction at most (see [`Session::start_data`]).
const BATCH_COMMANDS_MAX: usize = 256;

/// A command queued between MULTI and EXEC.
enum Queued {
    Data(Plan),
    /// PING and ECHO: answered in EXEC's array without touching keys.
    Local(Reply),
}

struct Multi {
    commands: Vec<Queued>,
    ops: usize,
    bytes: usize,
    /// A command could not be queued: EXEC answers EXECABORT.
    failed: bool,
}

/// The command waiting for the node's answer.
enum Running {
    Single(Shape),
    /// Consecutive pipelined commands run as one transaction (see [`Session::start_data`]).
    Batch(Vec<Plan>),
    Exec {
        watch_ops: usize,
        commands: Vec<Queued>,
    },
    /// WATCH reads its keys one by one; `current` is the one being read.
    Watch {
        current: Bytes,
        rest: VecDeque<Bytes>,
        recorded: Vec<(Bytes, Option<Bytes>)>,
    },
    Scan {
        pattern: Option<Bytes>,
    },
    /// KEYS walks pages; `visited` counts the keys it has looked at.
    Keys {
        pattern: Bytes,
        end: Option<Bytes>,
        found: Vec<Bytes>,
        visited: usize,
    },
}

/// One Redis client connection's state.
pub struct Session {
    limits: SessionLimits,
    protocol: Protocol,
    /// Inside TLS or over loopback: a token sent here cannot be read on the way.
    private_channel: bool,
    id: u64,
    user: Option<usize>,
    name: Option<Bytes>,
    input: Vec<u8>,
    /// Resumes a command that has not fully arrived (see [`Decoder`]).
    decoder: Decoder,
    /// Bytes of the command being decoded taken so far (counted once it is whole).
    partial_bytes: usize,
    /// Commands decoded and waiting, with the bytes each took on the wire.
    queue: VecDeque<(Pending, usize)>,
    queued_bytes: usize,
    /// Commands of a batch that failed as a whole, to run one by one, before the queue.
    replay: VecDeque<Plan>,
    multi: Option<Multi>,
    watched: Vec<(Bytes, Option<Bytes>)>,
    watched_bytes: usize,
    running: Option<Running>,
    /// The request of the running command, until [`Session::poll`] hands it out.
    to_run: Option<Operation>,
    output: Vec<u8>,
    /// QUIT or a protocol error: no more commands; close once the replies are out.
    ending: bool,
}

impl Session {
    pub fn new(limits: SessionLimits, private_channel: bool, id: u64) -> Session {
        Session {
            limits,
            protocol: Protocol::Resp2,
            private_channel,
            id,
            user: None,
            name: None,
            input: Vec::new(),
            decoder: Decoder::default(),
            partial_bytes: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            replay: VecDeque::new(),
            multi: None,
            watched: Vec::new(),
            watched_bytes: 0,
            running: None,
            to_run: None,
            output: Vec::new(),
            ending: false,
        }
    }

    /// The user this connection proved it is, if it did.
    pub fn user(&self) -> Option<usize> {
        self.user
    }

    /// Whether the session takes more bytes now: false while its pipeline queue is full (or
    /// it is ending), so that a client cannot make it buffer without bound.
    pub fn wants_input(&self) -> bool {
        !self.ending
            && self.queue.len() < self.limits.pipeline_commands_max
            && self.queued_bytes < self.limits.pipeline_bytes_max
    }

    /// Bytes held for this connection: input not yet decoded, the command being decoded,
    /// commands waiting, replies not yet taken, a MULTI's queue and WATCH's values.
    pub fn buffered_bytes(&self) -> usize {
        let multi = self.multi.as_ref().map_or(0, |multi| multi.bytes);
        self.input.capacity()
            + self.queued_bytes
            + self.partial_bytes
            + self.output.capacity()
            + multi
            + self.watched_bytes
    }

    /// Whether the connection should close once its output is written: after QUIT or a
    /// protocol error, with every earlier command answered.
    pub fn finished(&self) -> bool {
        self.ending && self.queue.is_empty() && self.replay.is_empty() && self.running.is_none()
    }

    /// Whether the session holds the start of a command whose end has not arrived.
    pub fn holds_partial_command(&self) -> bool {
        // Decoding stops at a full queue too; only with room left is undecoded input a command
        // that has not fully arrived.
        (!self.input.is_empty() || self.partial_bytes > 0) && self.wants_input()
    }

    /// Gives up on a command whose end did not arrive in time: after every earlier command is
    /// answered, the client is told, and the session ends.
    pub fn abandon_partial_command(&mut self, seconds: u64) {
        if self.holds_partial_command() {
            self.queue.push_back((Pending::ProtocolError(ProtocolError::Incomplete { seconds }), 0));
            self.ending = true;
            self.input = Vec::new();
            self.decoder = Decoder::default();
            self.partial_bytes = 0;
        }
    }

    /// Takes bytes the client sent.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.ending {
            return;
        }
        self.input.extend_from_slice(bytes);
        self.decode();
    }

    /// Reply bytes to send, taken.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether reply bytes are waiting.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Decodes queued input into commands while the queue has room.
    fn decode(&mut self) {
        let mut used = 0;
        while !self.ending && (self.queue.is_empty() || self.wants_input()) {
            match self.decoder.decode(&self.input[used..], &self.limits.decode) {
                Ok((taken, command)) => {
                    used += taken;
                    self.partial_bytes += taken;
                    let Some(args) = command else {
                        if taken == 0 {
                            break;
                        }
                        continue;
                    };
                    let wire_bytes = std::mem::take(&mut self.partial_bytes);
                    if !args.is_empty() {
                        self.queued_bytes += wire_bytes;
                        let pending = match command::parse(args) {
                            Ok(Command::Data(data)) => Pending::Data(plan::plan(data)),
                            parsed => Pending::Command(parsed),
                        };
                        self.queue.push_back((pending, wire_bytes));
                    }
                }
                Err(error) => {
                    self.queue.push_back((Pending::ProtocolError(error), 0));
                    self.ending = true;
                    used = self.input.len();
                }
            }
        }
        self.input.drain(..used);
        if self.ending {
            self.input = Vec::new();
            self.decoder = Decoder::default();
            self.partial_bytes = 0;
        }
    }

    /// Runs commands until one needs the node: returns its request, to be answered through
    /// [`Session::complete`]. `None` while a request is out, or nothing is left to run.
    pub fn poll(&mut self, host: &mut impl Host) -> Option<Operation> {
        loop {
            if let Some(operation) = self.to_run.take() {
                return Some(operation);
            }
            if self.running.is_some() {
                return None;
            }
            if self.output.len() >= OUTPUT_PAUSE_BYTES {
                // Replies first go out: commands that answer at once (ECHO, CLIENT GETNAME,
                // COMMAND) must not pile up output without bound in one call.
                return None;
            }
            if let Some(plan) = self.replay.pop_front() {
                self.run_alone(plan);
                continue;
            }
            let (pending, bytes) = self.queue.pop_front()?;
            self.queued_bytes -= bytes;
            match pending {
                Pending::ProtocolError(error) => {
                    self.send(&Reply::err(format!("Protocol error: {error}")));
                    self.queue.clear();
                    self.queued_bytes = 0;
                }
                pending => self.start(host, pending),
            }
            self.decode();
        }
    }

    fn send(&mut self, reply: &Reply) {
        reply.encode(self.protocol, &mut self.output);
    }

    fn run(&mut self, running: Running, operation: Operation) {
        self.running = Some(running);
        self.to_run = Some(operation);
    }

    /// Starts one command: answers it at once, queues it in MULTI, or sets its request.
    fn start(&mut self, host: &mut impl Host, pending: Pending) {
        if host.auth_required() && self.user.is_none() {
            let allowed = matches!(
                pending,
                Pending::Command(Ok(Command::Auth { .. } | Command::Hello { .. } | Command::Quit | Command::Ping(_)))
            );
            if !allowed {
                return self.send(&Reply::Error("NOAUTH Authentication required.".into()));
            }
        }
        if self.multi.is_some() {
            return self.start_in_multi(pending);
        }
        let command = match pending {
            Pending::Data(plan) => return self.start_data(plan),
            Pending::Command(Ok(command)) => command,
            Pending::Command(Err(reply)) => return self.send(&reply),
            Pending::ProtocolError(_) => unreachable!("answered by poll"),
        };
        match command {
            Command::Ping(None) => self.send(&Reply::Simple("PONG")),
            Command::Ping(Some(message)) | Command::Echo(message) => self.send(&Reply::Bulk(message)),
            Command::Hello { protocol, auth } => self.hello(host, protocol, auth),
            Command::Auth { user, password } => {
                let reply = self.auth(host, user.as_deref(), &password);
                self.send(&reply)
            }
            Command::Select(0) => self.send(&Reply::ok()),
            Command::Select(_) => self.send(&Reply::err("DB index is out of range: dkv has one database, 0")),
            Command::Quit => {
                self.send(&Reply::ok());
                self.end();
            }
            Command::CommandInfo(query) => self.send(&introspection::command_reply(&query)),
            Command::Info => self.send(&Reply::bulk(introspection::info_text(&host.facts(self.user)))),
            Command::DbSize => match host.facts(self.user).keys {
                Some(keys) => self.send(&Reply::Integer(keys as i64)),
                None => self.send(&Reply::Error(
                    "NOPERM DBSIZE counts every key of the node, and this user may only use keys starting with its prefix; count them with SCAN MATCH prefix*".into(),
                )),
            },
            Command::ConfigGet(patterns) => self.send(&introspection::config_get(&patterns)),
            Command::Client(call) => {
                let reply = match call {
                    ClientCall::SetName(name) if name.len() > self.limits.key_bytes_max => Reply::err(format!(
                        "a client name may have {} bytes at most (dkv's key limit)",
                        self.limits.key_bytes_max
                    )),
                    ClientCall::SetName(name) => {
                        self.name = Some(name);
                        Reply::ok()
                    }
                    ClientCall::GetName => Reply::bulk_or_null(self.name.clone()),
                    ClientCall::SetInfo => Reply::ok(),
                    ClientCall::Id => Reply::Integer(self.id as i64),
                };
                self.send(&reply)
            }
            Command::Data(data) => self.start_data(plan::plan(data)),
            Command::Multi => {
                self.multi = Some(Multi { commands: Vec::new(), ops: 0, bytes: 0, failed: false });
                self.send(&Reply::ok())
            }
            Command::Exec => self.send(&Reply::err("EXEC without MULTI")),
            Command::Discard => self.send(&Reply::err("DISCARD without MULTI")),
            Command::Watch(keys) if self.watched.len() + keys.len() > self.limits.txn_ops_max => {
                self.send(&watch_over_limit(&self.limits))
            }
            Command::Watch(keys) => {
                let mut rest: VecDeque<Bytes> = keys.into();
                let current = rest.pop_front().expect("WATCH has at least one key");
                let operation = Operation::Get { key: current.clone() };
                self.run(Running::Watch { current, rest, recorded: Vec::new() }, operation)
            }
            Command::Unwatch => {
                self.unwatch();
                self.send(&Reply::ok())
            }
            Command::Keys(pattern) | Command::Scan { pattern: Some(pattern), .. }
                if pattern.len() > self.limits.key_bytes_max =>
            {
                self.send(&Reply::err(format!(
                    "a pattern may have {} bytes at most (dkv's key limit)",
                    self.limits.key_bytes_max
                )))
            }
            Command::Scan { cursor, pattern, count } => self.scan(host, &cursor, pattern, count),
            Command::Keys(pattern) => {
                let prefix = glob::literal_prefix(&pattern);
                let end = successor(&prefix);
                let operation = self.scan_operation(prefix, end.clone(), self.limits.scan_count_max);
                self.run(Running::Keys { pattern, end, found: Vec::new(), visited: 0 }, operation)
            }
        }
    }

    /// QUIT, or a protocol error: nothing after this runs.
    fn end(&mut self) {
        self.ending = true;
        self.queue.clear();
        self.queued_bytes = 0;
        self.input = Vec::new();
        self.decoder = Decoder::default();
        self.partial_bytes = 0;
    }

    fn hello(&mut self, host: &mut impl Host, protocol: Option<i64>, auth: Option<(Bytes, Bytes)>) {
        let protocol = match protocol {
            None => self.protocol,
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return self.send(&Reply::Error("NOPROTO unsupported protocol version".into())),
        };
        if let Some((user, token)) = auth {
            let reply = self.auth(host, Some(&user), &token);
            if reply.is_error() {
                return self.send(&reply);
            }
        } else if host.auth_required() && self.user.is_none() {
            return self.send(&Reply::Error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <token> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
            ));
        }
        self.protocol = protocol;
        self.send(&introspection::hello_reply(protocol, self.id))
    }

    fn auth(&mut self, host: &mut impl Host, user: Option<&[u8]>, token: &[u8]) -> Reply {
        if !host.auth_required() {
            return Reply::err(
                "AUTH called, but this node requires no authentication (dkv-server --require-auth turns it on); every client is served",
            );
        }
        if !self.private_channel {
            return Reply::err(
                "dkv takes a user's token only inside TLS or over loopback, where it cannot be read on the way; connect with TLS",
            );
        }
        let Some(user) = user else {
            return Reply::err(
                "dkv's users have names: AUTH <user> <token>, with the token (hex) from the user's file that dkv-server init wrote",
            );
        };
        match host.authenticate(user, token) {
            Some(index) => {
                self.user = Some(index);
                Reply::ok()
            }
            None => Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into()),
        }
    }

    fn unwatch(&mut self) {
        self.watched.clear();
        self.watched_bytes = 0;
    }

    fn scan_operation(&self, start: Bytes, end: Option<Bytes>, limit: u32) -> Operation {
        Operation::Scan { start, end, limit, keys_only: true }
    }

    fn scan(&mut self, host: &mut impl Host, cursor: &[u8], pattern: Option<Bytes>, count: Option<u32>) {
        let prefix = pattern.as_deref().map(glob::literal_prefix).unwrap_or_default();
        let end = successor(&prefix);
        let start = if cursor == b"0" {
            prefix.clone()
        } else {
            let number = std::str::from_utf8(cursor).ok().and_then(|s| s.parse::<u64>().ok());
            match number.and_then(|n| host.cursors().get(n)) {
                Some(key) => key.to_vec().max(prefix.clone()),
                None => {
                    return self.send(&Reply::err(
                        "invalid cursor: dkv remembers a node's most recent SCAN cursors only; start again from 0",
                    ));
                }
            }
        };
        if end.as_ref().is_some_and(|end| *end <= start) {
            return self.send(&scan_reply(0, Vec::new()));
        }
        let limit = count.unwrap_or(SCAN_COUNT_DEFAULT).min(self.limits.scan_count_max);
        let operation = self.scan_operation(start, end, limit);
        self.run(Running::Scan { pattern }, operation)
    }

    /// A command between MULTI and EXEC: queued (`+QUEUED`), or refused, which makes EXEC
    /// abort, as in Redis.
    fn start_in_multi(&mut self, pending: Pending) {
        let parsed = match pending {
            Pending::Data(plan) => return self.queue_in_multi(Queued::Data(plan)),
            Pending::Command(Ok(Command::Data(data))) => return self.queue_in_multi(Queued::Data(plan::plan(data))),
            Pending::Command(parsed) => parsed,
            Pending::ProtocolError(_) => unreachable!("answered by poll"),
        };
        let multi = self.multi.as_mut().expect("called in MULTI");
        let refused = match parsed {
            Err(reply) => reply,
            Ok(Command::Exec) => return self.exec(),
            Ok(Command::Discard) => {
                self.multi = None;
                self.unwatch();
                return self.send(&Reply::ok());
            }
            Ok(Command::Multi) => return self.send(&Reply::err("MULTI calls can not be nested")),
            Ok(Command::Watch(_)) => return self.send(&Reply::err("WATCH inside MULTI is not allowed")),
            Ok(Command::Quit) => {
                self.multi = None;
                self.send(&Reply::ok());
                return self.end();
            }
            Ok(Command::Ping(message)) => {
                return self.queue_in_multi(Queued::Local(message.map_or(Reply::Simple("PONG"), Reply::Bulk)));
            }
            Ok(Command::Echo(message)) => return self.queue_in_multi(Queued::Local(Reply::Bulk(message))),
            Ok(other) => Reply::err(format!(
                "dkv cannot run {} inside MULTI: a transaction holds commands that read or write keys (and PING, ECHO)",
                other_name(&other)
            )),
        };
        multi.failed = true;
        self.send(&refused)
    }

    /// Queues a data command in MULTI, within the transaction's limits.
    /// Queues a command in MULTI, within the transaction's limits (PING and ECHO count as one
    /// op and their message's bytes: they are held until EXEC too).
    fn queue_in_multi(&mut self, queued: Queued) {
        let (queued_ops, queued_bytes) = match &queued {
            Queued::Data(plan) => (plan.ops.len(), plan.bytes()),
            Queued::Local(Reply::Bulk(message)) => (1, message.len()),
            Queued::Local(_) => (1, 0),
        };
        let multi = self.multi.as_mut().expect("called in MULTI");
        let (ops, bytes) = (multi.ops + queued_ops, multi.bytes + queued_bytes);
        if ops + self.watched.len() > self.limits.txn_ops_max || bytes + self.watched_bytes > self.limits.txn_bytes_max
        {
            multi.failed = true;
            return self.send(&Reply::err(format!(
                "this transaction would be over dkv's limit of {} ops and {} bytes (watched keys' values count too); DISCARD and split it",
                self.limits.txn_ops_max, self.limits.txn_bytes_max
            )));
        }
        (multi.ops, multi.bytes) = (ops, bytes);
        multi.commands.push(queued);
        self.send(&Reply::Simple("QUEUED"))
    }

    /// Runs a data command, and with it the data commands pipelined right behind it, as one
    /// transaction when any of them writes: the commands of one connection take effect in
    /// their order either way, and one transaction commits them with one round of two-phase
    /// commit instead of one each. Their replies are as if each had run alone: if the
    /// transaction fails on one op (a condition, a non-number), nothing was applied, and the
    /// commands run again one by one so each gets its own answer. Reads alone are not batched:
    /// a get is served from memory with no transaction at all.
    fn start_data(&mut self, first: Plan) {
        let mut plans = vec![first];
        let (mut ops, mut bytes) = (plans[0].ops.len(), plans[0].bytes());
        while plans.len() < BATCH_COMMANDS_MAX {
            let Some((Pending::Data(next), _)) = self.queue.front() else { break };
            if ops + next.ops.len() > self.limits.txn_ops_max || bytes + next.bytes() > self.limits.txn_bytes_max / 2 {
                break;
            }
            ops += next.ops.len();
            bytes += next.bytes();
            let Some((Pending::Data(next), wire_bytes)) = self.queue.pop_front() else { unreachable!("just seen") };
            self.queued_bytes -= wire_bytes;
            plans.push(next);
        }
        if plans.len() == 1 || !plans.iter().any(Plan::writes) {
            let mut plans = plans.into_iter();
            let first = plans.next().expect("one at least");
            self.replay.extend(plans);
            return self.run_alone(first);
        }
        let ops = plans.iter().flat_map(|plan| plan.ops.iter().cloned()).collect();
        self.run(Running::Batch(plans), Operation::Txn { ops })
    }

    /// Runs one data command as its own request.
    fn run_alone(&mut self, plan: Plan) {
        let operation = plan.operation();
        self.run(Running::Single(plan.shape), operation)
    }

    /// EXEC: the watched keys' conditions and every queued command's ops, as one transaction.
    fn exec(&mut self) {
        let multi = self.multi.take().expect("called in MULTI");
        let watched = std::mem::take(&mut self.watched);
        self.watched_bytes = 0;
        if multi.failed {
            return self.send(&Reply::Error("EXECABORT Transaction discarded because of previous errors.".into()));
        }
        let mut ops: Vec<TxnOp> = watched
            .into_iter()
            .map(|(key, value)| {
                let condition = value.map_or(Condition::Absent, Condition::ValueEquals);
                TxnOp::Require { key, condition }
            })
            .collect();
        let watch_ops = ops.len();
        for queued in &multi.commands {
            if let Queued::Data(plan) = queued {
                ops.extend(plan.ops.iter().cloned());
            }
        }
        if ops.len() == watch_ops && watch_ops == 0 {
            // Only PING and ECHO (or nothing): no keys, no transaction.
            let replies = multi.commands.into_iter().map(|q| match q {
                Queued::Local(reply) => reply,
                Queued::Data(_) => unreachable!("no data commands were queued"),
            });
            return self.send(&Reply::Array(replies.collect()));
        }
        self.run(Running::Exec { watch_ops, commands: multi.commands }, Operation::Txn { ops })
    }

    /// Takes the node's answer to the request [`Session::poll`] handed out: an outcome, or the
    /// reply to give when there is none (the node was busy, or the outcome is unknown).
    pub fn complete(&mut self, host: &mut impl Host, answer: Result<Outcome, Reply>) {
        let Some(running) = self.running.take() else { return };
        self.to_run = None;
        let outcome = match answer {
            Ok(outcome) => outcome,
            Err(reply) => {
                // Every command waiting for this request gets the reply.
                let commands = if let Running::Batch(plans) = &running { plans.len() } else { 1 };
                for _ in 0..commands {
                    self.send(&reply);
                }
                return;
            }
        };
        let reply = match (running, outcome) {
            (Running::Single(shape), Outcome::Value { value, .. }) => plan::reply_to_get(shape, Some(value)),
            (Running::Single(shape), Outcome::NotFound) => plan::reply_to_get(shape, None),
            (Running::Single(shape), Outcome::Committed(results)) => plan::reply_to_results(shape, &results),
            (Running::Single(shape), Outcome::Failed(failure)) => plan::reply_to_failure(shape, failure.reason),
            (Running::Batch(plans), Outcome::Committed(results)) => {
                let mut at = 0;
                for plan in plans {
                    let end = (at + plan.ops.len()).min(results.len());
                    self.send(&plan::reply_to_results(plan.shape, &results[at.min(end)..end]));
                    at = end;
                }
                return;
            }
            (Running::Batch(plans), Outcome::Failed(_) | Outcome::Rejected(_)) => {
                // Nothing was applied: each command runs alone, for its own answer.
                for plan in plans.into_iter().rev() {
                    self.replay.push_front(plan);
                }
                return;
            }
            (Running::Batch(plans), other) => {
                let reply = unanswered(other);
                for _ in plans {
                    self.send(&reply);
                }
                return;
            }
            // EXISTS of one key, as a keys-only scan of exactly that key.
            (Running::Single(shape @ Shape::CountPresent), Outcome::Scanned { entries, .. }) => {
                plan::reply_to_get(shape, entries.into_iter().next().map(|_| Vec::new()))
            }
            (Running::Exec { watch_ops, commands }, outcome) => exec_reply(watch_ops, commands, outcome),
            (Running::Watch { current, rest, recorded }, outcome) => {
                return self.watched_one(current, rest, recorded, outcome);
            }
            (Running::Scan { pattern }, Outcome::Scanned { entries, next }) => {
                let (keys, resume, _) = matching(pattern.as_deref(), entries, next);
                let cursor = resume.map_or(0, |key| host.cursors().insert(key));
                scan_reply(cursor, keys)
            }
            (Running::Keys { pattern, end, mut found, visited }, Outcome::Scanned { entries, next }) => {
                let (keys, resume, looked_at) = matching(Some(&pattern), entries, next);
                found.extend(keys);
                let visited = visited + looked_at;
                if found.len() > self.limits.keys_max {
                    Reply::err(format!(
                        "KEYS would return more than {} keys; use SCAN, which returns them page by page",
                        self.limits.keys_max
                    ))
                } else if visited > KEYS_VISITED_MAX {
                    Reply::err(format!(
                        "KEYS would look at more than {KEYS_VISITED_MAX} keys; use SCAN, which looks at them page by page"
                    ))
                } else if let Some(start) = resume {
                    let operation = self.scan_operation(start, end.clone(), self.limits.scan_count_max);
                    return self.run(Running::Keys { pattern, end, found, visited }, operation);
                } else {
                    Reply::Array(found.into_iter().map(Reply::Bulk).collect())
                }
            }
            (_, outcome) => unanswered(outcome),
        };
        self.send(&reply)
    }

    /// One watched key was read: record it, read the next, or finish WATCH.
    fn watched_one(
        &mut self,
        current: Bytes,
        mut rest: VecDeque<Bytes>,
        mut recorded: Vec<(Bytes, Option<Bytes>)>,
        outcome: Outcome,
    ) {
        let value = match outcome {
            Outcome::Value { value, .. } => Some(value),
            Outcome::NotFound => None,
            other => return self.send(&unanswered(other)),
        };
        recorded.push((current, value));
        // Checked after every read, so WATCH never holds more than the limit.
        let bytes: usize = recorded.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        if self.watched_bytes + bytes > self.limits.txn_bytes_max {
            return self.send(&watch_over_limit(&self.limits));
        }
        if let Some(next) = rest.pop_front() {
            let operation = Operation::Get { key: next.clone() };
            return self.run(Running::Watch { current: next, rest, recorded }, operation);
        }
        self.watched_bytes += bytes;
        self.watched.extend(recorded);
        self.send(&Reply::ok())
    }
}

fn watch_over_limit(limits: &SessionLimits) -> Reply {
    Reply::err(format!(
        "watching these keys would be over dkv's transaction limit of {} ops and {} bytes (EXEC checks each watched value); watch fewer",
        limits.txn_ops_max, limits.txn_bytes_max
    ))
}

/// EXEC's reply: every command's reply, in order; a null array when a watched key changed; an
/// error naming the command that made the transaction apply nothing.
fn exec_reply(watch_ops: usize, commands: Vec<Queued>, outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Committed(results) => {
            let mut at = watch_ops;
            let replies = commands.into_iter().map(|queued| match queued {
                Queued::Local(reply) => reply,
                Queued::Data(plan) => {
                    let end = (at + plan.ops.len()).min(results.len());
                    let reply = plan::reply_to_results(plan.shape, &results[at.min(end)..end]);
                    at = end;
                    reply
                }
            });
            Reply::Array(replies.collect())
        }
        Outcome::Failed(failure) if (failure.op_index as usize) < watch_ops => Reply::NullArray,
        Outcome::Failed(failure) => {
            let mut at = watch_ops;
            let mut position = 0;
            for queued in &commands {
                position += 1;
                if let Queued::Data(plan) = queued {
                    at += plan.ops.len();
                    if (failure.op_index as usize) < at {
                        let why = match plan::failure_error(failure.reason) {
                            Reply::Error(text) => text.trim_start_matches("ERR ").to_string(),
                            _ => String::new(),
                        };
                        let why = match failure.reason {
                            dkv_core::FailReason::ConditionFailed => {
                                "its condition does not hold (inside MULTI, dkv runs every command or none)".into()
                            }
                            _ => why,
                        };
                        let name = plan.name;
                        return Reply::err(format!("EXEC applied nothing: command {position} ({name}) failed: {why}"));
                    }
                }
            }
            Reply::err(format!("EXEC applied nothing: {failure}"))
        }
        other => unanswered(other),
    }
}

/// The reply for an outcome that is not the answer the command asked for: a refusal, or no
/// outcome yet.
fn unanswered(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Rejected(RejectReason::PermissionDenied(reason)) => Reply::Error(format!("NOPERM {reason}")),
        Outcome::Rejected(reason) => Reply::err(reason),
        Outcome::TryAgain(reason) => {
            Reply::Error(format!("TRYAGAIN {reason}; nothing was applied by this attempt, retry the command"))
        }
        // "-TRYAGAIN not serving: …, ask another node": this node cannot answer (no read lease,
        // not a member, catching up); another node of the cluster may.
        not_serving @ Outcome::NotServing(_) => Reply::Error(format!("TRYAGAIN {not_serving}")),
        other => Reply::err(format!("dkv answered an unexpected outcome ({other}); please report this")),
    }
}

/// The keys of a scanned page that match `pattern` (all without one), where the next page
/// starts, and how many keys were looked at. Matching spends at most [`MATCH_STEPS_PER_PAGE`]:
/// past it, the page ends early at the first key not looked at, which starts the next.
fn matching(
    pattern: Option<&[u8]>,
    entries: Vec<ScanEntry>,
    next: Option<Bytes>,
) -> (Vec<Bytes>, Option<Bytes>, usize) {
    let mut budget = MATCH_STEPS_PER_PAGE;
    let mut keys = Vec::new();
    let mut looked_at = 0;
    for entry in entries {
        let matched = match pattern {
            None => Some(true),
            // The first key is always judged whole, so every page makes progress; keys and
            // patterns are capped, so that costs a bounded time too.
            Some(pattern) if looked_at == 0 => Some(glob::matches(pattern, &entry.key)),
            Some(pattern) => glob::matches_within(pattern, &entry.key, &mut budget),
        };
        match matched {
            Some(true) => keys.push(entry.key),
            Some(false) => {}
            None => return (keys, Some(entry.key), looked_at),
        }
        looked_at += 1;
    }
    (keys, next, looked_at)
}

fn scan_reply(cursor: u64, keys: Vec<Bytes>) -> Reply {
    Reply::Array(vec![Reply::bulk(cursor.to_string()), Reply::Array(keys.into_iter().map(Reply::Bulk).collect())])
}

/// The smallest key above every key starting with `prefix`: the end of a prefix range.
/// `None` (to the end) for the empty prefix, or one of bytes 0xFF only.
pub fn successor(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn other_name(command: &Command) -> &'static str {
    match command {
        Command::Hello { .. } => "HELLO",
        Command::Auth { .. } => "AUTH",
        Command::Select(_) => "SELECT",
        Command::CommandInfo(_) => "COMMAND",
        Command::Info => "INFO",
        Command::DbSize => "DBSIZE",
        Command::ConfigGet(_) => "CONFIG",
        Command::Client(_) => "CLIENT",
        Command::Unwatch => "UNWATCH",
        Command::Scan { .. } => "SCAN",
        Command::Keys(_) => "KEYS",
        _ => "this command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::store::Store;
    use dkv_core::{OpFailure, OpResult, ScanEntry};

    /// A node in miniature: core's own store runs every request at once.
    struct TestHost {
        store: Store,
        cursors: ScanCursors,
        auth_required: bool,
        /// The user may not learn the node's key count.
        confined: bool,
    }

    impl TestHost {
        fn new() -> TestHost {
            TestHost {
                store: Store::default(),
                cursors: ScanCursors::new(7, 64),
                auth_required: false,
                confined: false,
            }
        }

        fn run(&mut self, operation: Operation) -> Outcome {
            match operation {
                Operation::Get { key } => match self.store.get_versioned(&key) {
                    Some(found) => Outcome::Value { value: found.value.clone(), version: found.version },
                    None => Outcome::NotFound,
                },
                Operation::Txn { ops } => match self.store.run(&ops) {
                    Ok(results) => Outcome::Committed(results),
                    Err(failure) => Outcome::Failed(failure),
                },
                Operation::Scan { start, end, limit, keys_only } => {
                    let mut entries: Vec<ScanEntry> = self
                        .store
                        .range(&start, end.as_deref())
                        .take(limit as usize + 1)
                        .map(|(key, v)| ScanEntry {
                            key: key.clone(),
                            value: (!keys_only).then(|| v.value.clone()),
                            version: v.version,
                        })
                        .collect();
                    let next = (entries.len() > limit as usize).then(|| {
                        entries.pop();
                        let mut next = entries.last().expect("limit ≥ 1").key.clone();
                        next.push(0);
                        next
                    });
                    Outcome::Scanned { entries, next }
                }
            }
        }
    }

    impl Host for TestHost {
        fn auth_required(&self) -> bool {
            self.auth_required
        }

        fn authenticate(&self, user: &[u8], token_hex: &[u8]) -> Option<usize> {
            (user == b"ann" && token_hex == b"00ff").then_some(0)
        }

        fn facts(&self, _user: Option<usize>) -> NodeFacts {
            let keys = (!self.confined).then(|| self.store.len() as u64);
            NodeFacts { node_id: 1, members: 3, keys }
        }

        fn cursors(&mut self) -> &mut ScanCursors {
            &mut self.cursors
        }
    }

    fn session() -> Session {
        Session::new(SessionLimits::for_limits(&Limits::default()), true, 1)
    }

    /// Feeds `input` and runs everything it asks for, as the event loop would: the replies.
    fn talk(session: &mut Session, host: &mut TestHost, input: &str) -> String {
        session.receive(input.as_bytes());
        for _ in 0..10_000 {
            match session.poll(host) {
                Some(operation) => {
                    let outcome = host.run(operation);
                    session.complete(host, Ok(outcome));
                }
                None => break,
            }
        }
        String::from_utf8_lossy(&session.take_output()).into_owned()
    }

    /// Pipelined commands each get their reply, in the order sent.
    #[test]
    fn pipelined_commands_reply_in_order() {
        let (mut session, mut host) = (session(), TestHost::new());
        let out = talk(
            &mut session,
            &mut host,
            "SET a 1\r\nGET a\r\nINCR n\r\nINCRBY n 10\r\nDECR n\r\nMGET a n zz\r\nGET zz\r\nSTRLEN a\r\nAPPEND a bc\r\nGETSET a x\r\nGETDEL a\r\nEXISTS a n n\r\nDEL n zz n\r\nDBSIZE\r\n",
        );
        assert_eq!(
            out,
            "+OK\r\n$1\r\n1\r\n:1\r\n:11\r\n:10\r\n*3\r\n$1\r\n1\r\n$2\r\n10\r\n$-1\r\n$-1\r\n:1\r\n:3\r\n$3\r\n1bc\r\n$1\r\nx\r\n:2\r\n:1\r\n:0\r\n"
        );
    }

    /// Pipelined commands behind a write run as one transaction; when it fails on one op,
    /// they run again one by one, and each still gets its own answer.
    #[test]
    fn pipelined_writes_batch_into_one_transaction() {
        let (mut session, mut host) = (session(), TestHost::new());
        session.receive(b"SET a 1\r\nINCR a\r\nGET a\r\nMSET b 1 c 2\r\n");
        let operation = session.poll(&mut host).unwrap();
        assert!(matches!(&operation, Operation::Txn { ops } if ops.len() == 5), "{operation:?}");
        let outcome = host.run(operation);
        session.complete(&mut host, Ok(outcome));
        assert_eq!(session.poll(&mut host), None, "one transaction answered all four");
        assert_eq!(String::from_utf8(session.take_output()).unwrap(), "+OK\r\n:2\r\n$1\r\n2\r\n+OK\r\n");
        let mut requests = 0;
        session.receive(b"SET s x\r\nINCR a\r\nINCR s\r\nGET a\r\n");
        while let Some(operation) = session.poll(&mut host) {
            requests += 1;
            let outcome = host.run(operation);
            session.complete(&mut host, Ok(outcome));
        }
        assert_eq!(requests, 5, "the batch, then each of its four commands alone");
        assert_eq!(
            String::from_utf8(session.take_output()).unwrap(),
            "+OK\r\n:3\r\n-ERR value is not an integer or out of range\r\n$1\r\n3\r\n"
        );
        // Reads alone are not batched: each is a get, served from memory.
        session.receive(b"GET a\r\nGET b\r\n");
        assert_eq!(session.poll(&mut host), Some(Operation::Get { key: b"a".to_vec() }));
    }

    /// DEL and EXISTS carry no value anywhere: DEL is one transaction of deletes that tolerate
    /// absence, EXISTS of several keys one of presence checks (each counted as Redis counts:
    /// a key named twice is removed once, found twice); EXISTS of one key is one keys-only scan.
    #[test]
    fn del_and_exists_carry_no_values() {
        let (mut session, mut host) = (session(), TestHost::new());
        talk(&mut session, &mut host, &format!("SET a {}\r\nSET b 1\r\nSET c 1\r\n", "v".repeat(1000)));
        session.receive(b"DEL a b zz a\r\n");
        let operation = session.poll(&mut host).unwrap();
        let Operation::Txn { ops } = &operation else { panic!("DEL asked for {operation:?}") };
        assert!(ops.iter().all(|op| matches!(op, TxnOp::DeleteIfPresent { .. })), "{ops:?}");
        let outcome = host.run(operation);
        if let Outcome::Committed(results) = &outcome {
            assert!(results.iter().all(|r| !matches!(r, OpResult::Value { .. })), "no value comes back: {results:?}");
        }
        session.complete(&mut host, Ok(outcome));
        assert_eq!(session.poll(&mut host), None, "DEL is one transaction");
        assert_eq!(String::from_utf8(session.take_output()).unwrap(), ":2\r\n");
        session.receive(b"EXISTS a b c c zz\r\n");
        let operation = session.poll(&mut host).unwrap();
        let Operation::Txn { ops } = &operation else { panic!("EXISTS asked for {operation:?}") };
        assert!(ops.iter().all(|op| matches!(op, TxnOp::Exists { .. })), "{ops:?}");
        let outcome = host.run(operation);
        session.complete(&mut host, Ok(outcome));
        assert_eq!(String::from_utf8(session.take_output()).unwrap(), ":2\r\n");
        session.receive(b"EXISTS c\r\n");
        let operation = session.poll(&mut host).unwrap();
        assert!(matches!(operation, Operation::Scan { keys_only: true, limit: 1, .. }), "{operation:?}");
        let outcome = host.run(operation);
        session.complete(&mut host, Ok(outcome));
        assert_eq!(session.poll(&mut host), None, "one key's EXISTS is one keys-only scan");
        assert_eq!(session.take_output(), b":1\r\n");
        assert_eq!(talk(&mut session, &mut host, "EXISTS a\r\n"), ":0\r\n");
    }

    /// A user confined to a key prefix does not learn the node's key count.
    #[test]
    fn key_counts_are_not_told_to_confined_users() {
        let (mut session, mut host) = (session(), TestHost::new());
        talk(&mut session, &mut host, "SET a 1\r\n");
        assert_eq!(talk(&mut session, &mut host, "DBSIZE\r\n"), ":1\r\n");
        assert!(talk(&mut session, &mut host, "INFO\r\n").contains("db0:keys=1"));
        host.confined = true;
        assert!(talk(&mut session, &mut host, "DBSIZE\r\n").starts_with("-NOPERM DBSIZE counts every key"));
        assert!(!talk(&mut session, &mut host, "INFO\r\n").contains("keys="));
    }

    /// Conditional writes answer as Redis: SETNX/MSETNX 1 or 0, SET NX/XX OK or nil.
    #[test]
    fn conditional_writes_answer_as_redis() {
        let (mut session, mut host) = (session(), TestHost::new());
        let out = talk(
            &mut session,
            &mut host,
            "SETNX k 1\r\nSETNX k 2\r\nSET k 3 NX\r\nSET j 3 XX\r\nSET k 4 XX\r\nSET k 5 XX GET\r\nSET j 5 XX GET\r\nMSETNX k 1 m 1\r\nMSETNX m 1 o 1\r\nMGET k j m o\r\n",
        );
        assert_eq!(
            out,
            ":1\r\n:0\r\n$-1\r\n$-1\r\n+OK\r\n$1\r\n4\r\n$-1\r\n:0\r\n:1\r\n*4\r\n$1\r\n5\r\n$-1\r\n$1\r\n1\r\n$1\r\n1\r\n"
        );
    }

    /// INCR of a non-number and past i64 are Redis's errors, and change nothing.
    #[test]
    fn counter_errors_are_redis_errors() {
        let (mut session, mut host) = (session(), TestHost::new());
        let out =
            talk(&mut session, &mut host, "SET s abc\r\nINCR s\r\nSET n 9223372036854775807\r\nINCR n\r\nGET n\r\n");
        assert_eq!(
            out,
            "+OK\r\n-ERR value is not an integer or out of range\r\n+OK\r\n-ERR increment or decrement would overflow\r\n$19\r\n9223372036854775807\r\n"
        );
    }

    /// MULTI queues, EXEC runs every command as one transaction and answers each; a command
    /// that cannot run makes EXEC apply nothing and name it.
    #[test]
    fn exec_runs_all_or_nothing() {
        let (mut session, mut host) = (session(), TestHost::new());
        let out = talk(&mut session, &mut host, "MULTI\r\nSET a 1\r\nINCR c\r\nPING\r\nMGET a c\r\nEXEC\r\n");
        assert_eq!(
            out,
            "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n+OK\r\n:1\r\n+PONG\r\n*2\r\n$1\r\n1\r\n$1\r\n1\r\n"
        );
        let out = talk(
            &mut session,
            &mut host,
            "MULTI\r\nSET a 2\r\nINCR a\r\nSET s x\r\nINCR s\r\nEXEC\r\nGET a\r\nEXISTS s\r\n",
        );
        assert_eq!(
            out,
            "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n-ERR EXEC applied nothing: command 4 (INCR) failed: value is not an integer or out of range\r\n$1\r\n1\r\n:0\r\n"
        );
        let out = talk(&mut session, &mut host, "MULTI\r\nNOSUCH\r\nSET a 9\r\nEXEC\r\nGET a\r\nEXEC\r\nDISCARD\r\n");
        assert_eq!(
            out,
            "+OK\r\n-ERR unknown command 'NOSUCH', dkv does not support it\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of previous errors.\r\n$1\r\n1\r\n-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n"
        );
    }

    /// WATCH: EXEC answers a null array, applying nothing, when a watched key's value changed
    /// since, and runs when none did.
    #[test]
    fn watch_fails_exec_when_a_watched_value_changes() {
        let (mut session, mut host) = (session(), TestHost::new());
        let (mut other, _) = (Session::new(SessionLimits::for_limits(&Limits::default()), true, 2), ());
        talk(&mut session, &mut host, "SET w 1\r\n");
        assert_eq!(talk(&mut session, &mut host, "WATCH w absent\r\nMULTI\r\nINCR w\r\n"), "+OK\r\n+OK\r\n+QUEUED\r\n");
        assert_eq!(talk(&mut other, &mut host, "SET w 5\r\n"), "+OK\r\n");
        assert_eq!(talk(&mut session, &mut host, "EXEC\r\nGET w\r\n"), "*-1\r\n$1\r\n5\r\n");
        // Unchanged since WATCH (and the absent key still absent): EXEC runs.
        let out = talk(&mut session, &mut host, "WATCH w absent\r\nMULTI\r\nINCR w\r\nEXEC\r\n");
        assert_eq!(out, "+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n:6\r\n");
        // A watched absent key that appears fails EXEC too.
        talk(&mut session, &mut host, "WATCH absent\r\n");
        talk(&mut other, &mut host, "SET absent 1\r\n");
        assert_eq!(talk(&mut session, &mut host, "MULTI\r\nINCR w\r\nEXEC\r\n"), "+OK\r\n+QUEUED\r\n*-1\r\n");
        // UNWATCH forgets.
        talk(&mut session, &mut host, "WATCH w\r\n");
        talk(&mut other, &mut host, "SET w 0\r\n");
        assert_eq!(
            talk(&mut session, &mut host, "UNWATCH\r\nMULTI\r\nINCR w\r\nEXEC\r\n"),
            "+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n:1\r\n"
        );
    }

    /// SCAN walks every key exactly once through numeric cursors, MATCH filters, and KEYS
    /// answers a pattern (bounded).
    #[test]
    fn scan_and_keys_walk_the_keyspace() {
        let (mut session, mut host) = (session(), TestHost::new());
        for i in 0..25 {
            talk(&mut session, &mut host, &format!("SET user:{i:02} x\r\nSET item:{i:02} y\r\n"));
        }
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        for _ in 0..100 {
            session.receive(format!("SCAN {cursor} MATCH user:* COUNT 7\r\n").as_bytes());
            let operation = session.poll(&mut host).expect("SCAN asks the node");
            assert!(matches!(&operation, Operation::Scan { start, .. } if start.starts_with(b"user:")));
            let outcome = host.run(operation);
            session.complete(&mut host, Ok(outcome));
            let out = String::from_utf8(session.take_output()).unwrap();
            let mut lines = out.split("\r\n");
            assert_eq!(lines.next(), Some("*2"));
            lines.next();
            cursor = lines.next().unwrap().to_string();
            seen.extend(lines.filter(|l| l.starts_with("user:")).map(str::to_string));
            if cursor == "0" {
                break;
            }
        }
        let expected: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
        assert_eq!(seen, expected);
        let out = talk(&mut session, &mut host, "KEYS item:1?\r\nSCAN 12345\r\n");
        let expected_keys: String = (10..20).map(|i| format!("$7\r\nitem:{i}\r\n")).collect();
        assert!(out.starts_with(&format!("*10\r\n{expected_keys}")), "{out}");
        assert!(out.ends_with(
            "-ERR invalid cursor: dkv remembers a node's most recent SCAN cursors only; start again from 0\r\n"
        ));
        session.limits.keys_max = 20;
        assert!(talk(&mut session, &mut host, "KEYS *\r\n").contains("use SCAN"));
    }

    /// A hostile pattern makes a SCAN page end early, at the key where matching ran out of
    /// budget (the next page starts there); a pattern longer than a key is refused.
    #[test]
    fn hostile_patterns_end_pages_early() {
        let (mut session, mut host) = (session(), TestHost::new());
        let key = "b".repeat(1100);
        for i in 0..5 {
            talk(&mut session, &mut host, &format!("SET {key}{i:02} x\r\n"));
        }
        let pattern = format!("*[{}]x", "a".repeat(4000));
        let out = talk(&mut session, &mut host, &format!("SCAN 0 MATCH {pattern} COUNT 5\r\n"));
        let cursor = out.split("\r\n").nth(2).unwrap().to_string();
        assert_ne!(cursor, "0", "the page ended early with a cursor: {out}");
        let out = talk(&mut session, &mut host, &format!("KEYS {pattern}{}\r\n", "x".repeat(100)));
        assert!(out.contains("a pattern may have 4096 bytes at most"), "{out}");
        let out = talk(&mut session, &mut host, &format!("KEYS {pattern}\r\n"));
        assert_eq!(out, "*0\r\n", "KEYS goes on from where a page ended");
    }

    /// Where users are required, nothing but AUTH, HELLO, QUIT and PING runs before AUTH; a
    /// token is refused outside TLS and loopback.
    #[test]
    fn auth_gates_everything_but_the_handshake() {
        let mut host = TestHost::new();
        host.auth_required = true;
        let mut session = session();
        let out = talk(&mut session, &mut host, "GET k\r\nPING\r\nAUTH ann 0000\r\nAUTH ann 00ff\r\nGET k\r\n");
        assert_eq!(
            out,
            "-NOAUTH Authentication required.\r\n+PONG\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n$-1\r\n"
        );
        assert_eq!(session.user(), Some(0));
        let mut exposed = Session::new(SessionLimits::for_limits(&Limits::default()), false, 3);
        assert!(talk(&mut exposed, &mut host, "AUTH ann 00ff\r\n").contains("inside TLS or over loopback"));
        assert_eq!(exposed.user(), None);
        let mut hello = self::session();
        let out = talk(&mut hello, &mut host, "HELLO 3 AUTH ann 00ff\r\nGET k\r\n");
        assert!(out.starts_with("%7\r\n$6\r\nserver\r\n$3\r\ndkv\r\n"), "{out}");
        assert!(out.ends_with("_\r\n"), "RESP3 null after HELLO 3: {out}");
    }

    /// A protocol error is answered after every earlier command, then the session ends; so
    /// does QUIT.
    #[test]
    fn protocol_error_and_quit_end_the_session_in_order() {
        let (mut session, mut host) = (session(), TestHost::new());
        let out = talk(&mut session, &mut host, "SET a 1\r\n*1\r\n:5\r\nGET a\r\n");
        assert_eq!(out, "+OK\r\n-ERR Protocol error: expected '$', got ':'\r\n");
        assert!(session.finished());
        let mut quitting = self::session();
        assert_eq!(talk(&mut quitting, &mut host, "PING\r\nQUIT\r\nGET a\r\n"), "+PONG\r\n+OK\r\n");
        assert!(quitting.finished());
    }

    /// A command whose end never comes is given up on when the connection says so: earlier
    /// commands are answered first, then the error, then the session ends.
    #[test]
    fn a_partial_command_is_abandoned_in_order() {
        let (mut session, mut host) = (session(), TestHost::new());
        assert_eq!(talk(&mut session, &mut host, "SET a 1\r\n*2\r\n$3\r\nGET\r\n$1"), "+OK\r\n");
        assert!(session.holds_partial_command());
        session.abandon_partial_command(10);
        assert_eq!(
            talk(&mut session, &mut host, ""),
            "-ERR Protocol error: a command did not complete within 10 s\r\n"
        );
        assert!(session.finished());
        let mut full = self::session();
        full.limits.pipeline_commands_max = 1;
        full.receive(b"GET a\r\nGET b\r\n");
        assert!(!full.holds_partial_command(), "whole commands waiting for room are not partial");
    }

    /// The pipeline queue is bounded: past its count, the session takes no more input until
    /// commands run.
    #[test]
    fn pipeline_queue_is_bounded() {
        let mut host = TestHost::new();
        let mut limits = SessionLimits::for_limits(&Limits::default());
        limits.pipeline_commands_max = 3;
        let mut session = Session::new(limits, true, 1);
        session.receive("GET a\r\n".repeat(10).as_bytes());
        assert!(!session.wants_input());
        assert!(session.buffered_bytes() > 0);
        let mut replies = 0;
        while let Some(operation) = session.poll(&mut host) {
            let outcome = host.run(operation);
            session.complete(&mut host, Ok(outcome));
            replies += 1;
        }
        assert_eq!(replies, 10);
        assert!(session.wants_input());
        assert_eq!((session.queued_bytes, session.input.len(), session.queue.len()), (0, 0, 0));
    }

    /// Commands answered at once stop producing output past a threshold until it is taken:
    /// a pipeline of CLIENT GETNAMEs (or ECHOs) cannot make one call produce gigabytes.
    #[test]
    fn local_replies_pause_past_the_output_threshold() {
        let (mut session, mut host) = (session(), TestHost::new());
        let name = "n".repeat(4096);
        session.receive(format!("CLIENT SETNAME {name}\r\n").as_bytes());
        session.receive("CLIENT GETNAME\r\n".repeat(1000).as_bytes());
        assert_eq!(session.poll(&mut host), None);
        let first = session.take_output();
        assert!(first.len() < OUTPUT_PAUSE_BYTES + 2 * 4096, "one call produced {} bytes", first.len());
        let mut total = first.len();
        for _ in 0..1000 {
            session.poll(&mut host);
            let out = session.take_output();
            if out.is_empty() {
                break;
            }
            total += out.len();
        }
        assert_eq!(total, "+OK\r\n".len() + 1000 * format!("$4096\r\n{name}\r\n").len(), "every reply came, in turns");
        let long = "n".repeat(4097);
        assert!(talk(&mut session, &mut host, &format!("CLIENT SETNAME {long}\r\n")).contains("4096 bytes at most"));
    }

    /// PING and ECHO queued in MULTI count against the transaction's limits like data
    /// commands: a MULTI cannot hold unbounded messages until EXEC.
    #[test]
    fn multi_bounds_count_ping_and_echo() {
        let mut host = TestHost::new();
        let mut limits = SessionLimits::for_limits(&Limits::default());
        limits.txn_ops_max = 3;
        limits.txn_bytes_max = 100;
        let mut session = Session::new(limits, true, 1);
        let out = talk(&mut session, &mut host, "MULTI\r\nPING\r\nPING\r\nPING\r\nPING\r\nEXEC\r\n");
        assert!(
            out.starts_with("+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n-ERR this transaction would be over"),
            "{out}"
        );
        assert!(out.ends_with("-EXECABORT Transaction discarded because of previous errors.\r\n"), "{out}");
        let big = "e".repeat(101);
        let out = talk(&mut session, &mut host, &format!("MULTI\r\nECHO {big}\r\nEXEC\r\n"));
        assert!(out.contains("-ERR this transaction would be over"), "{out}");
    }

    /// WATCH refuses more keys than a transaction holds before reading any, and stops reading
    /// once the values read pass the byte limit.
    #[test]
    fn watch_is_bounded_while_it_reads() {
        let mut host = TestHost::new();
        let mut limits = SessionLimits::for_limits(&Limits::default());
        limits.txn_ops_max = 4;
        limits.txn_bytes_max = 50;
        let mut session = Session::new(limits, true, 1);
        session.receive(b"WATCH a b c d e\r\n");
        assert_eq!(session.poll(&mut host), None, "no key is read for a WATCH over the count");
        assert!(String::from_utf8(session.take_output()).unwrap().contains("watch fewer"));
        talk(&mut session, &mut host, &format!("SET a {}\r\nSET b {}\r\n", "x".repeat(30), "y".repeat(30)));
        let mut reads = 0;
        session.receive(b"WATCH a b c\r\n");
        while let Some(operation) = session.poll(&mut host) {
            reads += 1;
            let outcome = host.run(operation);
            session.complete(&mut host, Ok(outcome));
        }
        assert_eq!(reads, 2, "reading stopped at the value that passed the limit");
        assert!(String::from_utf8(session.take_output()).unwrap().contains("watch fewer"));
        assert_eq!(session.watched_bytes, 0);
    }

    /// A command that arrives a byte at a time is decoded as it comes: whole arguments leave
    /// the input at once, so it never holds more than one argument's bytes (nothing is parsed
    /// again and again).
    #[test]
    fn a_dripped_command_is_decoded_as_it_comes() {
        let (mut session, mut host) = (session(), TestHost::new());
        let mut command = "*2001\r\n$4\r\nMGET\r\n".to_string();
        for i in 0..2000 {
            command += &format!("$5\r\nk{i:04}\r\n");
        }
        for byte in command.as_bytes() {
            session.receive(std::slice::from_ref(byte));
            assert!(session.input.len() <= 16, "the input holds {} bytes", session.input.len());
        }
        assert_eq!(session.queue.len(), 1);
        assert!(talk(&mut session, &mut host, "").starts_with("*2000\r\n"));
    }

    /// An outcome that is no answer (a refusal, no outcome yet) becomes an error that says so.
    #[test]
    fn refusals_and_try_again_are_errors() {
        let (mut session, mut host) = (session(), TestHost::new());
        session.receive(b"SET a 1\r\n");
        session.poll(&mut host).unwrap();
        session.complete(&mut host, Ok(Outcome::TryAgain(dkv_core::TryAgainReason::Busy)));
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.starts_with("-TRYAGAIN a node is overloaded"), "{out}");
        session.receive(b"GET a\r\n");
        session.poll(&mut host).unwrap();
        session.complete(&mut host, Ok(Outcome::NotServing(dkv_core::NotServingReason::NoLease)));
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.starts_with("-TRYAGAIN not serving: this node holds no read lease"), "{out}");
        assert!(out.trim_end().ends_with("ask another node"), "{out}");
        session.receive(b"SET a 1\r\n");
        session.poll(&mut host).unwrap();
        let failure = OpFailure { op_index: 0, reason: dkv_core::FailReason::ValueTooLarge };
        session.complete(&mut host, Ok(Outcome::Failed(failure)));
        assert!(String::from_utf8(session.take_output()).unwrap().contains("string exceeds maximum allowed size"));
    }
}
