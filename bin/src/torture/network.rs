//! Where the torture run's cluster lives on the network, and how it cuts links.
//!
//! The tool re-executes itself inside a fresh network namespace (`unshare --net`), so nothing it
//! does can touch the host's network: the namespace has its own `lo` and its own routing rules,
//! and it disappears with the tool. It is also the first process of a pid namespace of its own
//! (`--pid`), so no node outlives it, however it ends. `bin/tests/partition.rs` runs itself the
//! same way ([`in_namespace`]). Node `i` listens on its own loopback address, 127.0.0.(i+2),
//! and runs as its own user id, [`NODE_UID_BASE`] + i. A routing rule per uid makes every
//! packet a node sends leave from its own address, as if each node had a host of its own (a
//! node accepts peer connections only from its peers' addresses; without the rule every
//! connection would leave from 127.0.0.1).
//!
//! A partition is a set of policy-routing rules: "packets from node i's uid to node j's
//! address go to a blackhole" (every socket a node opens carries its uid). Each node sends its messages to a peer over a connection it opened itself
//! (and in UDP mode from its own socket), so blocking both nodes' outgoing packets to each
//! other cuts the link both ways. The clients run as the tool's own user and are never cut.
//! (There is no iptables here, and `tc` on `lo` cannot tell the nodes apart.)

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use thiserror::Error;

/// Set in the environment of the copy of the tool that runs inside the namespace.
pub const INSIDE_NAMESPACE_ENV: &str = "DKV_TORTURE_IN_NAMESPACE";

/// Node `i` runs as this uid plus `i` (ids no account uses: the nodes need no home or name).
pub const NODE_UID_BASE: u32 = 47_000;

/// Partition rules sit before the lookup of local routes, which moves from its default
/// priority 0 to this one.
const LOCAL_LOOKUP_PRIORITY: &str = "100";
const PARTITION_PRIORITY: &str = "10";
/// The rules that send each node's packets from its own address.
const SOURCE_PRIORITY: &str = "50";
/// Node `i`'s routing table.
const NODE_TABLE_BASE: u32 = 100;

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error(
        "cannot make a network namespace for the cluster ({0}); partitions need one (run as root, with `unshare` installed), or leave `partition` out of --faults to run on the host's loopback without them"
    )]
    NoNamespace(String),
    #[error("`{command}` failed inside the tool's network namespace: {output}")]
    Command { command: String, output: String },
}

/// The address node `i` listens on: its own inside the namespace, else the one loopback
/// address every node shares.
pub fn node_host(i: usize, in_namespace: bool) -> Ipv4Addr {
    if in_namespace { Ipv4Addr::new(127, 0, 0, 2 + i as u8) } else { Ipv4Addr::LOCALHOST }
}

/// Whether this process can make the namespaces [`in_namespace`] makes (it is root and
/// `unshare` works).
pub fn namespace_available() -> Result<(), NetworkError> {
    let output = in_namespace(std::path::Path::new("true"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetworkError::NoNamespace(format!("cannot run unshare: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::NoNamespace(String::from_utf8_lossy(&output.stderr).trim().to_string()))
    }
}

/// Runs this same program, with the same arguments, inside a fresh network namespace, and
/// returns its exit code.
pub fn rerun_in_namespace() -> Result<i32, NetworkError> {
    let exe = std::env::current_exe().map_err(|e| NetworkError::NoNamespace(e.to_string()))?;
    let status = in_namespace(&exe)
        .args(std::env::args_os().skip(1))
        .status()
        .map_err(|e| NetworkError::NoNamespace(format!("cannot run unshare: {e}")))?;
    Ok(status.code().unwrap_or(2))
}

/// The command that runs `program` inside a fresh network namespace, with
/// [`INSIDE_NAMESPACE_ENV`] set; add its arguments. The program also gets a pid namespace of
/// its own, of which it is the first process: when it ends, however it ends, the kernel kills
/// every process it started (the nodes included), and the network namespace goes with them;
/// and if `unshare` itself is killed, it takes the program down with it (`--kill-child`).
pub fn in_namespace(program: &std::path::Path) -> Command {
    let mut command = Command::new("unshare");
    command.args(["--net", "--pid", "--fork", "--kill-child", "--"]).arg(program).env(INSIDE_NAMESPACE_ENV, "1");
    command
}

/// Inside the namespace: brings `lo` up, makes room for rules before the lookup of local
/// routes (without moving it, no rule could ever apply to loopback traffic), and gives each of
/// `nodes` nodes a routing table of its own whose loopback route has its address as source.
pub fn prepare_namespace(nodes: usize) -> Result<(), NetworkError> {
    ip(&["link", "set", "lo", "up"])?;
    ip(&["rule", "add", "pref", LOCAL_LOOKUP_PRIORITY, "lookup", "local"])?;
    ip(&["rule", "del", "pref", "0", "lookup", "local"])?;
    for i in 0..nodes {
        let uid = NODE_UID_BASE + i as u32;
        let table = (NODE_TABLE_BASE + i as u32).to_string();
        let source = node_host(i, true).to_string();
        ip(&["route", "add", "local", "127.0.0.0/8", "dev", "lo", "src", &source, "table", &table])?;
        ip(&["rule", "add", "pref", SOURCE_PRIORITY, "uidrange", &format!("{uid}-{uid}"), "lookup", &table])?;
    }
    Ok(())
}

/// One direction of a cut link: packets of node `from` to node `to`'s address are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub from: usize,
    pub to: usize,
}

/// Adds the rule that drops `cut`'s packets.
pub fn add_cut(cut: Cut) -> Result<(), NetworkError> {
    ip(&rule_args("add", cut))
}

/// Removes the rule [`add_cut`] added.
pub fn remove_cut(cut: Cut) -> Result<(), NetworkError> {
    ip(&rule_args("del", cut))
}

fn rule_args(verb: &str, cut: Cut) -> Vec<String> {
    let uid = NODE_UID_BASE + cut.from as u32;
    ["rule", verb, "pref", PARTITION_PRIORITY, "uidrange", &format!("{uid}-{uid}")]
        .iter()
        .map(|s| s.to_string())
        .chain(["to".to_string(), node_host(cut.to, true).to_string(), "blackhole".to_string()])
        .collect()
}

fn ip<S: AsRef<str>>(args: &[S]) -> Result<(), NetworkError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetworkError::Command { command: command.clone(), output: e.to_string() })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Command { command, output: String::from_utf8_lossy(&output.stderr).trim().to_string() })
    }
}
