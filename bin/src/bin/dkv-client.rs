//! dkv-client: one request to a dkv cluster, from the command line or a script.

use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};
use dkv::{LogLevel, init_logging, resolve};
use dkv_core::codec::FrameError;
use dkv_core::{
    Condition, FailReason, Key, Limits, NotServingReason, OpCode, OpFailure, OpResult, Operation, Outcome,
    RejectReason, ScanEntry, TryAgainReason, TxnOp, prefix_end,
};
use dkv_net::security::credentials::{ClientCertificate, ClientTrust};
use dkv_net::security::users::load_client_user;
use dkv_net::{Client, ClientConfig, ClientError, ClientTransport};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit codes, documented in `--help` and the README.
mod exit {
    pub const OK: u8 = 0;
    /// Anything else: the server refused our frame, a local socket failed.
    pub const ERROR: u8 = 1;
    /// Bad flags or arguments, or a request the cluster refuses as invalid (over a limit).
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    /// An op of a transaction could not run (a missing key, a counter that is not a number):
    /// nothing was applied.
    pub const FAILED: u8 = 4;
    /// No node reachable, or no outcome in time; the write may or may not have been applied.
    pub const UNAVAILABLE: u8 = 5;
    /// The node requires a user, refused the token, or the user may not do this.
    pub const DENIED: u8 = 6;
    /// A condition did not hold (cas, a txn's if: ops): nothing was applied.
    pub const CONDITION: u8 = 7;
}

/// Keys a scan asks for per page by default: a page is one request, and a reply of this many
/// keys stays well within the reply limits for ordinary values (a page also stops early at its
/// byte limit).
const SCAN_PAGE_KEYS: u32 = 1000;

const AFTER_HELP: &str = "\
Examples:
  dkv-client put greeting hello            # insert or overwrite
  dkv-client get greeting                  # prints the value
  dkv-client update greeting hi            # the key must exist
  dkv-client delete greeting               # the key must exist
  dkv-client txn put:a=1 update:b=2 delete:c   # all or nothing
  dkv-client cas lock free mine            # set lock to mine if it is free (else exit 7)
  dkv-client cas --version-equals 0 lock mine  # create lock only if it is absent
  dkv-client incr visits 5                 # prints the new value
  dkv-client scan --prefix user/ --limit 100   # KEY<TAB>VALUE lines, in key order
  dkv-client txn if:stock=1 put:stock=0 incr:sold=1 read:price   # checked, then applied
  dkv-client -s 10.0.0.1 -p 9099 -t -o 3 -k greeting -v hello   # the original project's flags (-o 3 = put)
  dkv-client -p 9099 -n 127.0.0.1:9100,127.0.0.1:9101 --json get greeting
  dkv-client put photo --value-file photo.jpg   # the value from a file (- for standard input)

Keys and values are bytes: an argument may hold any but NUL; --value-file takes any value, and
one larger than an argument may hold (about 128 KiB). scan prints keys and values as they are
(a tab or newline in one makes its line ambiguous); --json is exact.

Transaction ops: put:KEY=VALUE, update:KEY=VALUE, delete:KEY, incr:KEY=N, read:KEY (prints
read:KEY=VALUE), and conditions if:KEY=VALUE, if-absent:KEY, if-exists:KEY, if-version:KEY=N.
The key ends at the first '=' (keys in a txn cannot contain '='). Every op is judged under the
transaction's locks; if one cannot run (a missing key, a condition that does not hold, a value
that is not a number), none is applied.

Exit codes:
  0  success (for get: the key was found and its value printed)
  1  other error (the server refused the request's bytes, a local socket failed); if an
     earlier attempt had sent the request, the message says it may or may not have been applied
  2  usage error, or a request the cluster refuses as invalid (e.g. over a size limit)
  3  not found (get of a missing key; update or delete of a missing key)
  4  failed: an op of a transaction could not run (its key was missing, incr of a value that
     is not a number or past the 64-bit range); nothing was applied
  5  unavailable: no node reachable, or no outcome in time; a write may or may not have
     been applied (retrying it is safe only with the same request id, i.e. inside one client)
  6  permission denied: the node requires a user, the token was refused, or the user may not
     do this; nothing was applied
  7  a condition did not hold (cas; if:, if-absent:, if-exists:, if-version: in a txn);
     nothing was applied

Security: --tls DIR/client talks TLS and checks the node is a member of the cluster that
`dkv-server init` made DIR for; --user-file DIR/client/NAME.user authenticates as NAME (over
TCP only with --tls; over UDP each datagram is signed), or --cert DIR/client/NAME.crt does in
the TLS handshake.";

#[derive(Parser)]
#[command(
    name = "dkv-client",
    version,
    about = "Send one request to a dkv cluster: get, put, update, delete, cas, incr, scan, or a transaction",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The original project's operation flag: 0 or update, 1 or get, 2 or delete, 3 or put. Use with -k
    /// (and -v for update and put) instead of a subcommand.
    #[arg(short = 'o', long = "oprtn", value_parser = parse_op_code)]
    oprtn: Option<OpCode>,
    /// Key for -o.
    #[arg(short = 'k', long)]
    key: Option<OsString>,
    /// Value for -o update and -o put.
    #[arg(short = 'v', long = "val")]
    val: Option<OsString>,
    /// Host of the node to ask.
    #[arg(short = 's', long = "host", default_value = "127.0.0.1", global = true)]
    host: String,
    /// Port of the node to ask.
    #[arg(short = 'p', long, default_value_t = 9099, global = true)]
    port: u16,
    /// More nodes (HOST:PORT, comma-separated) to fail over to if the first does not answer.
    #[arg(short = 'n', long, value_delimiter = ',', global = true)]
    nodes: Vec<String>,
    /// Talk TCP (the default).
    #[arg(short = 't', long, conflicts_with = "udp", global = true)]
    tcp: bool,
    /// Talk UDP: retransmits until answered; a request must fit one datagram (use TCP for
    /// large values).
    #[arg(short = 'u', long, global = true)]
    udp: bool,
    /// Log level on stderr: error, info or debug (or 0, 1, 2). Debug shows retries.
    #[arg(short = 'l', long, default_value = "error", global = true)]
    log: LogLevel,
    /// Print the result as one JSON object on stdout, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// Give up after this many seconds, retries and fail-over included.
    #[arg(long, default_value_t = 10.0, global = true)]
    timeout: f64,
    /// Talk TLS over TCP to the cluster whose client folder (from `dkv-server init`) this is.
    #[arg(long, value_name = "DIR", global = true)]
    tls: Option<std::path::PathBuf>,
    /// Authenticate as the user in this file (DIR/client/NAME.user from `dkv-server init`).
    #[arg(long, value_name = "FILE", global = true)]
    user_file: Option<std::path::PathBuf>,
    /// Prove who you are with this user's client certificate instead (DIR/client/NAME.crt; its
    /// key is read from NAME.key beside it). Needs --tls.
    #[arg(long, value_name = "FILE", global = true, requires = "tls")]
    cert: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Insert or overwrite KEY (always succeeds).
    Put {
        key: OsString,
        #[arg(required_unless_present = "value_file")]
        value: Option<OsString>,
        /// Read the value from FILE instead (- for standard input): for a value larger than a
        /// command line takes (about 128 KiB), or of any bytes.
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        value_file: Option<PathBuf>,
    },
    /// Print the value of KEY.
    Get { key: OsString },
    /// Overwrite KEY, which must exist.
    Update {
        key: OsString,
        #[arg(required_unless_present = "value_file")]
        value: Option<OsString>,
        /// Read the value from FILE instead (- for standard input), as for put.
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        value_file: Option<PathBuf>,
    },
    /// Remove KEY, which must exist.
    Delete { key: OsString },
    /// Apply ops all-or-nothing: put:KEY=VALUE, update:KEY=VALUE, delete:KEY, incr:KEY=N,
    /// read:KEY, and conditions if:KEY=VALUE, if-absent:KEY, if-exists:KEY, if-version:KEY=N.
    Txn {
        #[arg(required = true, value_parser = parse_txn_op)]
        ops: Vec<TxnOpArg>,
    },
    /// Compare-and-set: KEY EXPECTED NEW sets KEY to NEW if its value is EXPECTED; with
    /// --version-equals N, KEY NEW sets it if its version is N (0: only if absent). Exit 7 if not.
    Cas {
        /// Compare the key's version (writes since it was created; 0 = absent), not its value.
        #[arg(long, value_name = "N")]
        version_equals: Option<u64>,
        /// KEY EXPECTED NEW, or KEY NEW with --version-equals.
        #[arg(required = true, num_args = 2..=3, value_names = ["KEY", "EXPECTED", "NEW"])]
        args: Vec<OsString>,
    },
    /// Add N (default 1; may be negative) to KEY's value, a decimal integer (absent counts as
    /// 0), and print the new value.
    Incr {
        key: OsString,
        #[arg(allow_hyphen_values = true)]
        by: Option<i64>,
    },
    /// Print the keys (and values) in key order, KEY<TAB>VALUE per line: all of them, those
    /// starting with --prefix, or those from --from (inclusive) to --to (exclusive).
    Scan {
        #[arg(long, conflicts_with_all = ["from", "to"])]
        prefix: Option<OsString>,
        #[arg(long)]
        from: Option<OsString>,
        #[arg(long)]
        to: Option<OsString>,
        /// At most this many keys (default: all, page by page).
        #[arg(long)]
        limit: Option<u64>,
        /// Keys only, no values.
        #[arg(long)]
        keys_only: bool,
        /// Keys asked for per request (a page); each page is consistent on its own, not the
        /// pages together.
        #[arg(long, default_value_t = SCAN_PAGE_KEYS, value_parser = clap::value_parser!(u32).range(1..))]
        page_keys: u32,
    },
}

/// A transaction op as given on the command line, kept for messages about it.
#[derive(Clone, Debug)]
struct TxnOpArg {
    op: TxnOp,
    text: String,
}

fn parse_op_code(s: &str) -> Result<OpCode, String> {
    let code = match s.to_ascii_lowercase().as_str() {
        "0" | "update" => OpCode::Update,
        "1" | "get" => OpCode::Get,
        "2" | "delete" => OpCode::Delete,
        "3" | "put" => OpCode::Put,
        _ => return Err(format!("'{s}' is not an operation; use 0..3 or update, get, delete, put")),
    };
    Ok(code)
}

fn parse_txn_op(s: &str) -> Result<TxnOpArg, String> {
    let bad = || {
        format!(
            "'{s}' is not an op; write put:KEY=VALUE, update:KEY=VALUE, delete:KEY, incr:KEY=N, read:KEY, \
             if:KEY=VALUE, if-absent:KEY, if-exists:KEY or if-version:KEY=N"
        )
    };
    let (op, rest) = s.split_once(':').ok_or_else(bad)?;
    let key_value = || rest.split_once('=').map(|(k, v)| (k.as_bytes().to_vec(), v.to_string())).ok_or_else(bad);
    let key = || rest.as_bytes().to_vec();
    let op = match op.to_ascii_lowercase().as_str() {
        "put" => key_value().map(|(key, value)| TxnOp::Put { key, value: value.into_bytes() })?,
        "update" => key_value().map(|(key, value)| TxnOp::Update { key, value: value.into_bytes() })?,
        "delete" => TxnOp::Delete { key: key() },
        "read" => TxnOp::Read { key: key() },
        "incr" => {
            let (key, by) = key_value()?;
            TxnOp::Increment { key, by: whole_number(s, "N", &by)? }
        }
        "if" => {
            let (key, value) = key_value()?;
            TxnOp::Require { key, condition: Condition::ValueEquals(value.into_bytes()) }
        }
        "if-absent" => TxnOp::Require { key: key(), condition: Condition::Absent },
        "if-exists" => TxnOp::Require { key: key(), condition: Condition::Exists },
        "if-version" => {
            let (key, version) = key_value()?;
            TxnOp::Require { key, condition: Condition::VersionEquals(whole_number(s, "the version", &version)?) }
        }
        _ => return Err(bad()),
    };
    Ok(TxnOpArg { op, text: s.to_string() })
}

/// `text`, the part `what` of the txn op `op`, as a number.
fn whole_number<T: std::str::FromStr>(op: &str, what: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("'{op}': {what} must be a whole number, not '{text}'"))
}

/// What the user asked for, with a name for messages.
struct Job {
    name: &'static str,
    key: Option<String>,
    operation: Operation,
    /// A transaction's ops as given, for messages about one of them.
    op_texts: Vec<String>,
    /// A scan's keys at most (None: all).
    scan_limit: Option<u64>,
}

fn usage_error(message: String) -> ! {
    Cli::command().error(ErrorKind::MissingRequiredArgument, message).exit()
}

fn job(cli: &Cli) -> Job {
    let of = |name, key: Option<&OsString>, operation| Job {
        name,
        key: key.map(|key| key.to_string_lossy().into_owned()),
        operation,
        op_texts: Vec::new(),
        scan_limit: None,
    };
    let write = |name, key: &OsString, op: TxnOp| of(name, Some(key), Operation::Txn { ops: vec![op] });
    match &cli.command {
        Some(Command::Get { key }) => of("get", Some(key), Operation::Get { key: bytes(key) }),
        Some(Command::Put { key, value, value_file }) => {
            write("put", key, TxnOp::Put { key: bytes(key), value: value_of(value, value_file) })
        }
        Some(Command::Update { key, value, value_file }) => {
            write("update", key, TxnOp::Update { key: bytes(key), value: value_of(value, value_file) })
        }
        Some(Command::Delete { key }) => write("delete", key, TxnOp::Delete { key: bytes(key) }),
        Some(Command::Txn { ops }) => Job {
            op_texts: ops.iter().map(|op| op.text.clone()).collect(),
            ..of("txn", None, Operation::Txn { ops: ops.iter().map(|op| op.op.clone()).collect() })
        },
        Some(Command::Cas { version_equals, args }) => {
            let (key, condition, new) = match (version_equals, args.as_slice()) {
                (None, [key, expected, new]) => (key, Condition::ValueEquals(bytes(expected)), new),
                (Some(version), [key, new]) => (key, Condition::VersionEquals(*version), new),
                (None, _) => usage_error("cas needs KEY EXPECTED NEW (or --version-equals N KEY NEW)".into()),
                (Some(_), _) => usage_error("cas --version-equals N needs KEY NEW, no expected value".into()),
            };
            let ops =
                vec![TxnOp::Require { key: bytes(key), condition }, TxnOp::Put { key: bytes(key), value: bytes(new) }];
            of("cas", Some(key), Operation::Txn { ops })
        }
        Some(Command::Incr { key, by }) => {
            write("incr", key, TxnOp::Increment { key: bytes(key), by: by.unwrap_or(1) })
        }
        Some(Command::Scan { prefix, from, to, limit, keys_only, page_keys }) => {
            let (start, end): (Key, Option<Key>) = match prefix {
                Some(prefix) => (bytes(prefix), prefix_end(prefix.as_bytes())),
                None => (from.as_deref().map_or_else(Vec::new, bytes), to.as_deref().map(bytes)),
            };
            if *limit == Some(0) {
                usage_error("--limit must be at least 1 (leave it out for every key)".into());
            }
            let operation = Operation::Scan { start, end, limit: *page_keys, keys_only: *keys_only };
            Job { scan_limit: *limit, ..of("scan", None, operation) }
        }
        None => {
            let Some(code) = cli.oprtn else {
                usage_error(
                    "say what to do: a subcommand (dkv-client put KEY VALUE, get KEY, ...) or the original project's -o OP -k KEY [-v VALUE]"
                        .into(),
                )
            };
            let Some(key) = &cli.key else { usage_error("-o needs a key: add -k KEY".into()) };
            let value = || match &cli.val {
                Some(v) => bytes(v),
                None => usage_error("-o update and -o put need a value: add -v VALUE".into()),
            };
            let k = bytes(key);
            match code {
                OpCode::Get => of("get", Some(key), Operation::Get { key: k }),
                OpCode::Put => write("put", key, TxnOp::Put { key: k, value: value() }),
                OpCode::Update => write("update", key, TxnOp::Update { key: k, value: value() }),
                OpCode::Delete => write("delete", key, TxnOp::Delete { key: k }),
            }
        }
    }
}

/// An argument's bytes as given: keys and values are any bytes, not only UTF-8 text.
fn bytes(argument: &OsStr) -> Vec<u8> {
    argument.as_bytes().to_vec()
}

/// The value of a put or update: the argument, or what --value-file holds (- for standard
/// input), read up to one byte past the largest value a node takes, so that a value too large
/// gets the node's clear refusal without being read whole.
fn value_of(value: &Option<OsString>, value_file: &Option<PathBuf>) -> Vec<u8> {
    let Some(path) = value_file else {
        return bytes(value.as_deref().expect("clap requires a value or --value-file"));
    };
    let limit = u64::from(Limits::default().value_bytes_max) + 1;
    let mut value = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut value)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut value))
    };
    if let Err(error) = read {
        let what = if path.as_os_str() == "-" { "standard input".to_string() } else { path.display().to_string() };
        usage_error(format!("--value-file: cannot read {what}: {error}"));
    }
    value
}

/// The result to print, and the exit code.
struct Report {
    code: u8,
    outcome: &'static str,
    /// What a success prints on stdout (a value, a number, scan lines, "ok").
    stdout: Vec<u8>,
    /// Why it failed, for stderr.
    message: String,
    /// Fields of the `--json` object beyond ok, op, key, outcome, error and exit_code.
    json: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    fn new(code: u8, outcome: &'static str, message: String) -> Report {
        let stdout = if code == exit::OK { format!("{message}\n").into_bytes() } else { Vec::new() };
        Report { code, outcome, stdout, message, json: serde_json::Map::new() }
    }
}

/// What to do when no node named would serve: name more of them, or bring a majority back.
fn not_serving_advice(reason: &NotServingReason) -> &'static str {
    match reason {
        NotServingReason::NoLease => {
            " (name every node of the cluster with -n, or a node that is with the majority; a node serves only while it hears from a majority of the members)"
        }
        NotServingReason::NotAMember | NotServingReason::CatchingUp => {
            " (name every node of the cluster with -n, so that a member answers)"
        }
    }
}

fn report(job: &Job, result: Result<Outcome, ClientError>) -> Report {
    let single_op = matches!(&job.operation, Operation::Txn { ops } if ops.len() == 1);
    let key = job.key.as_deref().unwrap_or("");
    let r = Report::new;
    match result {
        Ok(Outcome::Committed(results)) => committed(job, &results),
        Ok(Outcome::Value { value, version }) => {
            let mut report = r(exit::OK, "value", String::new());
            report.stdout = [value.as_slice(), b"\n"].concat();
            insert_bytes(&mut report.json, "value", &value);
            report.json.insert("version".into(), version.into());
            report
        }
        Ok(Outcome::NotFound) => r(exit::NOT_FOUND, "not_found", format!("not found: key '{key}' does not exist")),
        Ok(Outcome::Failed(OpFailure { reason: FailReason::KeyNotFound, .. })) if single_op => r(
            exit::NOT_FOUND,
            "not_found",
            format!("not found: {} needs key '{key}' to exist, and it does not; nothing was changed", job.name),
        ),
        Ok(Outcome::Failed(failure)) => failed(job, failure),
        Ok(Outcome::Rejected(reason @ RejectReason::PermissionDenied(_))) => {
            r(exit::DENIED, "denied", reason.to_string())
        }
        Ok(Outcome::Rejected(reason)) => r(exit::USAGE, "rejected", format!("rejected, nothing was applied: {reason}")),
        Ok(Outcome::TryAgain(reason)) => {
            r(exit::UNAVAILABLE, "unavailable", format!("no outcome: {reason}{}", try_again_advice(&reason)))
        }
        Ok(Outcome::Scanned { entries, next }) => scanned(&entries, next.as_deref()),
        // The client library fails over on "not serving"; a build that hands one back still
        // says what it means.
        Ok(Outcome::NotServing(reason)) => r(
            exit::UNAVAILABLE,
            "unavailable",
            format!("no outcome: {}{}", Outcome::NotServing(reason), not_serving_advice(&reason)),
        ),
        Err(error) => {
            let code = match error {
                ClientError::Refused { error: FrameError::Unauthorized { .. }, .. } => exit::DENIED,
                ClientError::NoNodes | ClientError::TooLargeForDatagram { .. } | ClientError::TokenWithoutTls => {
                    exit::USAGE
                }
                // A read that did nothing; a write that ran, its outcome unknown here.
                ClientError::ReplyTooLargeForDatagram { read: true, .. } => exit::USAGE,
                ClientError::ReplyTooLargeForDatagram { read: false, .. } => exit::UNAVAILABLE,
                ClientError::Tls { .. } => exit::ERROR,
                ClientError::Unreachable { .. }
                | ClientError::Lost { .. }
                | ClientError::Timeout { .. }
                | ClientError::NoOutcome { .. }
                | ClientError::NotServing { .. } => exit::UNAVAILABLE,
                ClientError::Refused { .. } | ClientError::Socket(_) => exit::ERROR,
            };
            let outcome = match code {
                exit::UNAVAILABLE => "unavailable",
                exit::DENIED => "denied",
                _ => "error",
            };
            let advice = match &error {
                ClientError::TooLargeForDatagram { .. } => " (-t)",
                ClientError::NoOutcome { reason, .. } => try_again_advice(reason),
                ClientError::NotServing { reason, .. } => not_serving_advice(reason),
                _ => "",
            };
            r(code, outcome, format!("{error}{advice}"))
        }
    }
}

/// A committed write: "ok", an incr's new value, or a txn's "ok" and then a line per read
/// (read:KEY=VALUE, or read:KEY with no '=' when absent) and per incr (incr:KEY=N).
fn committed(job: &Job, results: &[OpResult]) -> Report {
    let mut report = Report::new(exit::OK, "committed", "ok".into());
    let ops: &[TxnOp] = match &job.operation {
        Operation::Txn { ops } => ops,
        _ => &[],
    };
    if job.name == "incr"
        && let [OpResult::Integer { value, .. }] = results
    {
        report.stdout = format!("{value}\n").into_bytes();
        report.json.insert("value".into(), (*value).into());
        return report;
    }
    if job.name == "txn" {
        for (op, result) in ops.iter().zip(results) {
            let key = String::from_utf8_lossy(op.key());
            match (op, result) {
                (TxnOp::Read { .. }, OpResult::Value { value: Some(value), .. }) => {
                    report.stdout.extend_from_slice(format!("read:{key}=").as_bytes());
                    report.stdout.extend_from_slice(value);
                    report.stdout.push(b'\n');
                }
                (TxnOp::Read { .. }, _) => report.stdout.extend_from_slice(format!("read:{key}\n").as_bytes()),
                (TxnOp::Increment { .. }, OpResult::Integer { value, .. }) => {
                    report.stdout.extend_from_slice(format!("incr:{key}={value}\n").as_bytes())
                }
                _ => {}
            }
        }
        let results: Vec<serde_json::Value> = results.iter().map(result_json).collect();
        report.json.insert("results".into(), results.into());
    }
    report
}

/// One op's result as JSON: its key's version after it, and what it gave back.
fn result_json(result: &OpResult) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    match result {
        OpResult::Done { .. } => {}
        OpResult::Value { value: Some(value), .. } => insert_bytes(&mut object, "value", value),
        OpResult::Value { value: None, .. } => {
            object.insert("value".into(), serde_json::Value::Null);
        }
        OpResult::Integer { value, .. } => {
            object.insert("integer".into(), (*value).into());
        }
    }
    object.insert("version".into(), result.version().into());
    object.into()
}

/// A transaction that applied nothing because one op could not run, named as it was given.
fn failed(job: &Job, failure: OpFailure) -> Report {
    let op = match job.op_texts.get(failure.op_index as usize) {
        Some(text) => format!("op {} ({text})", failure.op_index),
        None => match (job.name, failure.reason) {
            ("cas", FailReason::ConditionFailed) => {
                let key = job.key.as_deref().unwrap_or("");
                let expected = match &job.operation {
                    Operation::Txn { ops } => match ops.first() {
                        Some(TxnOp::Require { condition: Condition::VersionEquals(0), .. }) => "absent".to_string(),
                        Some(TxnOp::Require { condition: Condition::VersionEquals(version), .. }) => {
                            format!("at version {version}")
                        }
                        _ => "holding the expected value".to_string(),
                    },
                    _ => String::new(),
                };
                let mut report = Report::new(
                    exit::CONDITION,
                    "condition_failed",
                    format!("condition failed: key '{key}' is not {expected}; nothing was applied"),
                );
                report.json.insert("op_index".into(), failure.op_index.into());
                return report;
            }
            (name, _) => format!("{name} of key '{}'", job.key.as_deref().unwrap_or("")),
        },
    };
    // Worded as cas words its own: what failed first, then that nothing was applied.
    let mut report = match failure.reason {
        FailReason::ConditionFailed => Report::new(
            exit::CONDITION,
            "condition_failed",
            format!("condition failed: {op} does not hold; nothing was applied"),
        ),
        reason => Report::new(exit::FAILED, "failed", format!("failed, nothing was applied: {op} {reason}")),
    };
    report.json.insert("op_index".into(), failure.op_index.into());
    report
}

/// A scan's keys, KEY<TAB>VALUE (or KEY) per line; `next` where a limited scan stopped.
fn scanned(entries: &[ScanEntry], next: Option<&[u8]>) -> Report {
    let mut report = Report::new(exit::OK, "scanned", String::new());
    report.stdout.clear();
    let mut list = Vec::with_capacity(entries.len());
    for entry in entries {
        report.stdout.extend_from_slice(&entry.key);
        let mut object = serde_json::Map::new();
        insert_bytes(&mut object, "key", &entry.key);
        if let Some(value) = &entry.value {
            report.stdout.push(b'\t');
            report.stdout.extend_from_slice(value);
            insert_bytes(&mut object, "value", value);
        }
        report.stdout.push(b'\n');
        object.insert("version".into(), entry.version.into());
        list.push(serde_json::Value::Object(object));
    }
    report.json.insert("entries".into(), list.into());
    if let Some(next) = next {
        insert_bytes(&mut report.json, "next", next);
    }
    report
}

/// Bytes as text under `name`, or as hex under `name_hex` when they are not UTF-8.
fn insert_bytes(object: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.into(), text.into()),
        Err(_) => object.insert(format!("{name}_hex"), hex(bytes).into()),
    };
}

/// What the core's reasons cannot say: which flags to change.
fn try_again_advice(reason: &TryAgainReason) -> &'static str {
    match reason {
        TryAgainReason::ConfigMismatch { .. } => {
            " (give every dkv-server the same node ids in --peers, and -u to all of them or to none)"
        }
        _ => "",
    }
}

fn print(report: &Report, cli: &Cli, job: &Job) {
    if cli.json {
        let mut object = serde_json::Map::new();
        object.insert("ok".into(), (report.code == exit::OK).into());
        object.insert("op".into(), job.name.into());
        if let Some(key) = &job.key {
            object.insert("key".into(), key.as_str().into());
        }
        object.insert("outcome".into(), report.outcome.into());
        object.extend(report.json.clone());
        if report.code != exit::OK {
            object.insert("error".into(), report.message.as_str().into());
        }
        object.insert("exit_code".into(), report.code.into());
        println!("{}", serde_json::Value::Object(object));
        return;
    }
    if report.code == exit::OK {
        let _ = std::io::stdout().lock().write_all(&report.stdout);
    } else {
        eprintln!("dkv-client: {}", report.message);
    }
}

/// Runs a scan page by page, following each page's `next`, until the last page or the job's
/// limit: one `Scanned` with every entry, and the `next` where a limit stopped it. Pages are
/// each linearizable, not one snapshot together.
fn scan_all(client: &mut Client, job: &Job) -> Result<Outcome, ClientError> {
    let Operation::Scan { start, end, keys_only, limit: page_keys } = &job.operation else {
        unreachable!("scan_all runs scans only")
    };
    let mut entries = Vec::new();
    let mut start = start.clone();
    loop {
        let wanted = job.scan_limit.map_or(u64::MAX, |limit| limit - entries.len() as u64);
        let limit = u32::try_from(wanted).unwrap_or(u32::MAX).min(*page_keys);
        let page = Operation::Scan { start, end: end.clone(), limit, keys_only: *keys_only };
        match client.execute(page)? {
            Outcome::Scanned { entries: page, next } => {
                entries.extend(page);
                let full = job.scan_limit.is_some_and(|limit| entries.len() as u64 >= limit);
                match next {
                    Some(next) if !full => start = next,
                    next => return Ok(Outcome::Scanned { entries, next }),
                }
            }
            other => return Ok(other),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log);
    let job = job(&cli);
    // A request is not sent again once the nodes may have forgotten it was done: a longer wait
    // could apply it twice.
    let timeout_secs_max = dkv_core::completions::CLIENT_RETRY_WINDOW_MAX.as_secs_f64();
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout <= timeout_secs_max) {
        usage_error(format!(
            "--timeout must be a number of seconds above 0 and at most {timeout_secs_max} (a request retried later \
             than that could be applied twice), not {}",
            cli.timeout
        ));
    }
    let mut nodes = Vec::new();
    for addr in std::iter::once(format!("{}:{}", cli.host, cli.port)).chain(cli.nodes.iter().cloned()) {
        match resolve(&addr) {
            Ok(addr) => nodes.push(addr),
            // -s and -p name the first node, -n HOST:PORT the others.
            Err(message) => {
                usage_error(format!("{message} (the address of a dkv-server: -s HOST -p PORT, or -n HOST:PORT)"))
            }
        }
    }
    let transport = if cli.udp { ClientTransport::Udp } else { ClientTransport::Tcp };
    let mut config = ClientConfig::new(nodes, transport);
    config.request_timeout = Duration::from_secs_f64(cli.timeout);
    config.attempt_timeout = config.attempt_timeout.min(config.request_timeout);
    if let Some(dir) = &cli.tls {
        let trust = ClientTrust::load(dir).and_then(|mut trust| {
            if let Some(path) = &cli.cert {
                trust.certificate = Some(ClientCertificate::load(path)?);
            }
            Ok(trust)
        });
        match trust {
            Ok(trust) => config.tls = Some(Arc::new(trust)),
            Err(error) => usage_error(error.to_string()),
        }
    }
    if let Some(path) = &cli.user_file {
        match load_client_user(path) {
            Ok(user) => config.user = Some(Arc::new(user)),
            Err(error) => usage_error(error.to_string()),
        }
    }
    let result = Client::new(config).and_then(|mut client| match &job.operation {
        Operation::Scan { .. } => scan_all(&mut client, &job),
        operation => client.execute(operation.clone()),
    });
    let report = report(&job, result);
    print(&report, &cli, &job);
    ExitCode::from(report.code)
}
