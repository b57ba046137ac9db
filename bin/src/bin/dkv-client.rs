//! dkv-client: one request to a dkv cluster, from the command line or a script.

use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};
use dkv::{LogLevel, init_logging, resolve};
use dkv_core::codec::FrameError;
use dkv_core::{FailReason, OpCode, OpFailure, Operation, Outcome, RejectReason, TryAgainReason, TxnOp};
use dkv_net::security::credentials::{ClientCertificate, ClientTrust};
use dkv_net::security::users::load_client_user;
use dkv_net::{Client, ClientConfig, ClientError, ClientTransport};
use std::io::Write;
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
    /// An op of a transaction could not run: nothing was applied.
    pub const FAILED: u8 = 4;
    /// No node reachable, or no outcome in time; the write may or may not have been applied.
    pub const UNAVAILABLE: u8 = 5;
    /// The node requires a user, refused the token, or the user may not do this.
    pub const DENIED: u8 = 6;
}

const AFTER_HELP: &str = "\
Examples:
  dkv-client put greeting hello            # insert or overwrite
  dkv-client get greeting                  # prints the value
  dkv-client update greeting hi            # the key must exist
  dkv-client delete greeting               # the key must exist
  dkv-client txn put:a=1 update:b=2 delete:c   # all or nothing
  dkv-client -s 10.0.0.1 -p 9099 -t -o 3 -k greeting -v hello   # the original project's flags (-o 3 = put)
  dkv-client -p 9099 -n 127.0.0.1:9100,127.0.0.1:9101 --json get greeting

Transaction ops are OP:KEY=VALUE for put and update, and delete:KEY; the key ends at the first
'=' (keys in a txn cannot contain '='). If an op cannot run (its key is missing), none is applied.

Exit codes:
  0  success (for get: the key was found and its value printed)
  1  other error (the server refused the request's bytes, a local socket failed)
  2  usage error, or a request the cluster refuses as invalid (e.g. over a size limit)
  3  not found (get of a missing key; update or delete of a missing key)
  4  failed: an op of a transaction could not run (its key was missing); nothing was applied
  5  unavailable: no node reachable, or no outcome in time; a write may or may not have
     been applied (retrying it is safe only with the same request id, i.e. inside one client)
  6  permission denied: the node requires a user, the token was refused, or the user may not
     do this; nothing was applied

Security: --tls DIR/client talks TLS and checks the node is a member of the cluster that
`dkv-server init` made DIR for; --user-file DIR/client/NAME.user authenticates as NAME (over
TCP only with --tls; over UDP each datagram is signed), or --cert DIR/client/NAME.crt does in
the TLS handshake.";

#[derive(Parser)]
#[command(
    name = "dkv-client",
    version,
    about = "Send one request to a dkv cluster: get, put, update, delete, or a transaction",
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
    key: Option<String>,
    /// Value for -o update and -o put.
    #[arg(short = 'v', long = "val")]
    val: Option<String>,
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
    Put { key: String, value: String },
    /// Print the value of KEY.
    Get { key: String },
    /// Overwrite KEY, which must exist.
    Update { key: String, value: String },
    /// Remove KEY, which must exist.
    Delete { key: String },
    /// Apply ops all-or-nothing: put:KEY=VALUE, update:KEY=VALUE, delete:KEY.
    Txn {
        #[arg(required = true, value_parser = parse_txn_op)]
        ops: Vec<TxnOpArg>,
    },
}

#[derive(Clone, Debug)]
struct TxnOpArg(TxnOp);

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
    let bad = || format!("'{s}' is not an op; write put:KEY=VALUE, update:KEY=VALUE or delete:KEY");
    let (op, rest) = s.split_once(':').ok_or_else(bad)?;
    let op = match op.to_ascii_lowercase().as_str() {
        "put" | "update" => {
            let (key, value) = rest.split_once('=').ok_or_else(bad)?;
            let (key, value) = (key.as_bytes().to_vec(), value.as_bytes().to_vec());
            if op.eq_ignore_ascii_case("put") { TxnOp::Put { key, value } } else { TxnOp::Update { key, value } }
        }
        "delete" => TxnOp::Delete { key: rest.as_bytes().to_vec() },
        _ => return Err(bad()),
    };
    Ok(TxnOpArg(op))
}

/// What the user asked for, with a name for messages.
struct Job {
    name: &'static str,
    key: Option<String>,
    operation: Operation,
}

fn usage_error(message: String) -> ! {
    Cli::command().error(ErrorKind::MissingRequiredArgument, message).exit()
}

fn job(cli: &Cli) -> Job {
    let write = |name, key: &String, op: TxnOp| Job {
        name,
        key: Some(key.clone()),
        operation: Operation::Txn { ops: vec![op] },
    };
    match &cli.command {
        Some(Command::Get { key }) => {
            Job { name: "get", key: Some(key.clone()), operation: Operation::Get { key: key.as_bytes().to_vec() } }
        }
        Some(Command::Put { key, value }) => {
            write("put", key, TxnOp::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() })
        }
        Some(Command::Update { key, value }) => {
            write("update", key, TxnOp::Update { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() })
        }
        Some(Command::Delete { key }) => write("delete", key, TxnOp::Delete { key: key.as_bytes().to_vec() }),
        Some(Command::Txn { ops }) => Job {
            name: "txn",
            key: None,
            operation: Operation::Txn { ops: ops.iter().map(|op| op.0.clone()).collect() },
        },
        None => {
            let Some(code) = cli.oprtn else {
                usage_error(
                    "say what to do: a subcommand (dkv-client put KEY VALUE, get KEY, ...) or the original project's -o OP -k KEY [-v VALUE]"
                        .into(),
                )
            };
            let Some(key) = &cli.key else { usage_error("-o needs a key: add -k KEY".into()) };
            let value = || match &cli.val {
                Some(v) => v.as_bytes().to_vec(),
                None => usage_error("-o update and -o put need a value: add -v VALUE".into()),
            };
            let k = key.as_bytes().to_vec();
            match code {
                OpCode::Get => Job { name: "get", key: Some(key.clone()), operation: Operation::Get { key: k } },
                OpCode::Put => write("put", key, TxnOp::Put { key: k, value: value() }),
                OpCode::Update => write("update", key, TxnOp::Update { key: k, value: value() }),
                OpCode::Delete => write("delete", key, TxnOp::Delete { key: k }),
            }
        }
    }
}

/// The result to print, and the exit code.
struct Report {
    code: u8,
    outcome: &'static str,
    value: Option<Vec<u8>>,
    message: String,
}

fn report(job: &Job, result: Result<Outcome, ClientError>) -> Report {
    let single_op = matches!(&job.operation, Operation::Txn { ops } if ops.len() == 1);
    let key = job.key.as_deref().unwrap_or("");
    let r = |code, outcome, message: String| Report { code, outcome, value: None, message };
    match result {
        Ok(Outcome::Committed(_)) => r(exit::OK, "committed", "ok".into()),
        Ok(Outcome::Value { value, .. }) => {
            Report { code: exit::OK, outcome: "value", value: Some(value), message: String::new() }
        }
        Ok(Outcome::NotFound) => r(exit::NOT_FOUND, "not_found", format!("not found: key '{key}' does not exist")),
        Ok(Outcome::Failed(OpFailure { reason: FailReason::KeyNotFound, .. })) if single_op => r(
            exit::NOT_FOUND,
            "not_found",
            format!("not found: {} needs key '{key}' to exist, and it does not; nothing was changed", job.name),
        ),
        Ok(Outcome::Failed(failure)) => r(exit::FAILED, "failed", format!("failed, nothing was applied: {failure}")),
        Ok(Outcome::Rejected(reason @ RejectReason::PermissionDenied(_))) => {
            r(exit::DENIED, "denied", reason.to_string())
        }
        Ok(Outcome::Rejected(reason)) => r(exit::USAGE, "rejected", format!("rejected, nothing was applied: {reason}")),
        Ok(Outcome::TryAgain(reason)) => {
            r(exit::UNAVAILABLE, "unavailable", format!("no outcome: {reason}{}", try_again_advice(&reason)))
        }
        // dkv-client sends no scans (yet).
        Ok(Outcome::Scanned { .. }) => {
            r(exit::ERROR, "error", "a scan's page answered a request that was no scan".into())
        }
        Err(error) => {
            let code = match error {
                ClientError::Refused { error: FrameError::Unauthorized { .. }, .. } => exit::DENIED,
                ClientError::NoNodes | ClientError::TooLargeForDatagram { .. } | ClientError::TokenWithoutTls => {
                    exit::USAGE
                }
                ClientError::Tls { .. } => exit::ERROR,
                ClientError::Unreachable { .. }
                | ClientError::Lost { .. }
                | ClientError::Timeout { .. }
                | ClientError::NoOutcome { .. } => exit::UNAVAILABLE,
                ClientError::Refused { .. } | ClientError::Socket(_) => exit::ERROR,
            };
            let outcome = match code {
                exit::UNAVAILABLE => "unavailable",
                exit::DENIED => "denied",
                _ => "error",
            };
            let advice = match &error {
                ClientError::TooLargeForDatagram { .. }
                | ClientError::Refused { error: FrameError::TooLargeForDatagram { .. }, .. } => " (-t)",
                ClientError::NoOutcome { reason, .. } => try_again_advice(reason),
                _ => "",
            };
            r(code, outcome, format!("{error}{advice}"))
        }
    }
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
        if let Some(value) = &report.value {
            match std::str::from_utf8(value) {
                Ok(text) => object.insert("value".into(), text.into()),
                Err(_) => object.insert("value_hex".into(), hex(value).into()),
            };
        }
        if report.code != exit::OK {
            object.insert("error".into(), report.message.as_str().into());
        }
        object.insert("exit_code".into(), report.code.into());
        println!("{}", serde_json::Value::Object(object));
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Some(value) = &report.value {
        let _ = stdout.write_all(value);
        let _ = stdout.write_all(b"\n");
    } else if report.code == exit::OK {
        let _ = writeln!(stdout, "{}", report.message);
    } else {
        eprintln!("dkv-client: {}", report.message);
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
            Err(message) => usage_error(format!("{message}; give HOST and PORT of a dkv-server")),
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
    let result = Client::new(config).and_then(|mut client| client.execute(job.operation.clone()));
    let report = report(&job, result);
    print(&report, &cli, &job);
    ExitCode::from(report.code)
}
