//! dkv-server: one node of a dkv cluster, `dkv-server init` to make a cluster's credentials, or
//! (`dkv-server demo`) a whole 3-node cluster on loopback in one process.

use clap::{Args, Parser, Subcommand};
use dkv::{LogLevel, init_logging, resolve_or_say};
use dkv_core::NodeId;
use dkv_net::bootstrap::holds_no_log;
use dkv_net::modes::{list_ids, shares_pinned_in_doubt};
use dkv_net::security::credentials::{
    NewUser, NodeCredentials, USERS_FILE, default_users, init_cluster_with_users, node_identity_of, record_availability,
};
use dkv_net::security::users::{Role, load_users};
use dkv_net::{DATAGRAM_BYTES_MAX, Server, ServerConfig, ServerError, Transport, udp_limits};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, mpsc};

const EXAMPLES: &str = "\
Examples:
  # Try it: a 3-node cluster on 127.0.0.1:9099-9101, data and credentials in ./dkv-demo-data
  dkv-server demo

  # A 3-node cluster on three machines. First make its credentials, once, anywhere:
  dkv-server init creds --ids 0,1,2
  # copy creds/node-N to machine N (keep creds/ca.key offline), then run one line on each,
  # listing the OTHER nodes' peer addresses (their -p plus 1000 unless --peer-port says else);
  # --init on this first start (each node waits until every other one is up and empty too):
  dkv-server --init --id 0 -s 10.0.0.1 -p 9099 --peers 1=10.0.0.2:10099,2=10.0.0.3:10099 --credentials creds/node-0 --data-dir /var/lib/dkv
  dkv-server --init --id 1 -s 10.0.0.2 -p 9099 --peers 0=10.0.0.1:10099,2=10.0.0.3:10099 --credentials creds/node-1 --data-dir /var/lib/dkv
  dkv-server --init --id 2 -s 10.0.0.3 -p 9099 --peers 0=10.0.0.1:10099,1=10.0.0.2:10099 --credentials creds/node-2 --data-dir /var/lib/dkv

  # The same on one machine, three ports, UDP only (the original project's -u mode), debug logs:
  dkv-server --init --id 0 -p 9099 --peers 1=127.0.0.1:10100,2=127.0.0.1:10101 -u -l debug --credentials creds/node-0 --data-dir d0

Every node of a cluster must be started with the same set of ids. A node whose data dir holds
no log and that was not given --init takes part in nothing until it has caught up from the
members (its data may have been lost; see --init). Peers talk on their own port and prove they
are members with the credentials `init` made (mutual TLS, or sealed datagrams in -u mode);
clients use -p. Writes need every node running, unless the cluster runs with --availability
(`dkv-server init --availability`, recorded in every node's credentials): then a majority (a node
down is removed within about 3 s, and added back once it returns), and a node serves reads only
while a majority grants it a lease. Stop a node with
Ctrl-C or SIGTERM; kill -9 is safe too (acknowledged writes are on disk).";

/// How far above the client port the peer port is, unless --peer-port says otherwise.
const PEER_PORT_OFFSET: u16 = 1000;

#[derive(Parser)]
#[command(
    name = "dkv-server",
    version,
    about = "One node of dkv, a replicated key-value store (two-phase commit across all nodes)",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new cluster's credentials in a new folder DIR: a CA (DIR/ca.crt, and DIR/ca.key to
    /// keep offline), a folder per node (DIR/node-N, for --credentials) and one for clients
    /// (DIR/client). Secrets are written readable by their owner only. Each node's folder also
    /// records whether the cluster runs with --availability, so that every node runs the same way.
    #[command(
        after_help = "Examples:\n  dkv-server init creds --ids 0,1,2   # then give node N: --credentials creds/node-N\n  dkv-server init creds --availability   # a cluster that keeps taking writes while a minority is down"
    )]
    Init(InitArgs),
    /// Change whether a cluster runs with --availability, in the node credentials folders given
    /// (DIR/node-N). Stop every node of the cluster first, change every node's folder, then start
    /// them all: a cluster whose nodes run in both ways can serve stale reads (a node without it
    /// answers reads without a lease, even once the others removed it). There is no way back:
    /// `off` refuses a folder that says on. `on` reads each node's data dir first (--data-dir, in
    /// the folders' order) and changes nothing while any holds a write it voted on without
    /// --availability that is still in doubt.
    #[command(
        after_help = "Example, with every node stopped:\n  dkv-server availability on creds/node-0 creds/node-1 creds/node-2 --data-dir d0 --data-dir d1 --data-dir d2"
    )]
    Availability(AvailabilityArgs),
    /// Start a working 3-node cluster on loopback in this one process, and print how to use it.
    #[command(
        after_help = "Examples:\n  dkv-server demo                      # nodes on 127.0.0.1:9099-9101, data in ./dkv-demo-data\n  dkv-server demo -p 9200 -t --data-dir /tmp/dkv-demo   # TCP only, other ports and folder"
    )]
    Demo(DemoArgs),
}

#[derive(Args)]
struct NodeArgs {
    /// Address to listen on, for clients and peers (an IP or a host name).
    #[arg(short = 's', long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Port clients use (TCP and UDP).
    #[arg(short = 'p', long, default_value_t = 9099)]
    port: u16,
    /// Port peers use (TCP with mutual TLS; UDP in -u mode). Default: -p plus 1000.
    #[arg(long)]
    peer_port: Option<u16>,
    /// This node's credentials folder, made by `dkv-server init` (DIR/node-N). Needed as soon
    /// as the node has peers: they talk only to members that prove who they are. With it,
    /// clients may also use TLS.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Serve only clients that authenticate as a user of the credentials folder's users file
    /// (made by `dkv-server init --user`), each limited to its role and key prefix.
    #[arg(long, requires = "credentials")]
    require_auth: bool,
    /// Serve unauthenticated clients on a non-loopback address anyway (without it, such a
    /// server refuses to start: anyone who reaches it could read and write every key).
    #[arg(long)]
    insecure: bool,
    /// TCP only: serve clients over TCP, talk to peers over TCP. Default: clients over TCP and
    /// UDP, peers over TCP.
    #[arg(short = 't', long, conflicts_with = "udp")]
    tcp: bool,
    /// UDP only: serve clients over UDP and talk to peers over UDP. Every request and PREPARE
    /// must then fit one datagram, so limits are lowered: values up to 48 KiB, transactions up
    /// to 256 ops and 56 KiB (keys stay up to 4 KiB). Every node of the cluster needs -u.
    #[arg(short = 'u', long)]
    udp: bool,
    /// Keep taking writes while a minority of the nodes is down (configuration changes,
    /// docs/protocol.md §7). A node not heard from for 1 s is removed from the configuration
    /// (writes through the others go on within about 3 s); once it is back it asks to join, is
    /// added back, catches up from a member and serves again. The costs: a node serves reads
    /// only while a majority grants it a lease (else it answers "not serving", and clients ask
    /// another node); a node cut off from its majority stops serving; writes wait about half a
    /// second after a start and after each removal. Every node of the cluster must run the same
    /// way, so the cluster's credentials record it (`dkv-server init --availability`): with
    /// those every node runs so, with or without this flag, and credentials that record the
    /// cluster runs without it refuse it (`dkv-server availability` changes it). Only
    /// credentials made before dkv recorded it, and a single node without --credentials, go by
    /// this flag alone. Not with
    /// -u: a node catches up over the TCP peer port.
    #[arg(long, conflicts_with = "udp")]
    availability: bool,
    /// This node's data dir starts a new cluster: give it to every node on the cluster's first
    /// start (not the `init` subcommand, which makes credentials). A node whose data dir holds
    /// no log starts as a member only with it; without it, such a node may be a member whose
    /// data was lost, so it votes on and serves nothing until it has caught up from the
    /// members (with --availability they remove it and add it back; without, it stays out).
    /// With it, a node takes part only once every other node has said it holds nothing either
    /// (so the first start waits until every node is up); if one holds the cluster's state (a
    /// node restarted with --init after its data dir was lost), the node catches up instead. A
    /// data dir that holds a log ignores it, so restarts may keep it. A one-node cluster (no
    /// --peers) needs no --init.
    #[arg(long)]
    init: bool,
    /// Log level: error, info or debug (or 0, 1, 2).
    #[arg(short = 'l', long, default_value = "info")]
    log: LogLevel,
    /// This node's id, 0 to 63, unique in the cluster.
    #[arg(long, default_value_t = 0)]
    id: u8,
    /// The OTHER nodes of the cluster and their PEER ports, as ID=HOST:PORT, comma-separated
    /// (or the flag repeated), e.g. --peers 1=10.0.0.2:10099,2=10.0.0.3:10099. None: a one-node
    /// cluster.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<(NodeId, String)>,
    /// Bytes, in MiB, that all client and peer connections may hold in their buffers together
    /// (partial frames, unsent replies). Past it, the connection holding the most that has not
    /// proven who it is is dropped.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    buffer_budget_mib: u32,
    /// Where this node keeps its log (created if missing; locked while the server runs).
    /// Default: ./dkv-data/node-ID.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct InitArgs {
    /// The folder to create (it must not exist).
    dir: PathBuf,
    /// The cluster's node ids, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0u8, 1, 2])]
    ids: Vec<u8>,
    /// A user clients may authenticate as, NAME:ROLE or NAME:ROLE:PREFIX (ROLE: read,
    /// readwrite or admin; PREFIX: the only keys they may touch). Repeat for more. Default:
    /// one user, admin:admin.
    #[arg(long = "user", value_parser = parse_user)]
    users: Vec<NewUser>,
    /// The cluster runs with configuration changes: every node then runs as with
    /// `dkv-server --availability` (see the node flags), whether or not its command line says so.
    /// Without it, no node of the cluster may be started with --availability.
    #[arg(long)]
    availability: bool,
}

#[derive(Args)]
struct AvailabilityArgs {
    /// on: the cluster runs with --availability; off: it runs without (classic two-phase commit).
    #[arg(value_parser = ["on", "off"])]
    mode: String,
    /// Node credentials folders made by `dkv-server init` (DIR/node-N): every node's.
    #[arg(required = true)]
    folders: Vec<PathBuf>,
    /// With `on`: each node's data dir (its --data-dir), once per folder, in the same order.
    /// None may hold a write voted on without --availability and still in doubt: the first
    /// configuration change would abort it, though a client may have been told it committed.
    /// A node whose data was lost for good: give its new, empty dir.
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dirs: Vec<PathBuf>,
}

fn parse_user(s: &str) -> Result<NewUser, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(name), Some(role)) = (parts.next(), parts.next()) else {
        return Err(format!("'{s}' is not NAME:ROLE[:PREFIX], e.g. app:readwrite:app/"));
    };
    let role = Role::parse(role).ok_or_else(|| format!("'{role}' is not a role: read, readwrite or admin"))?;
    Ok(NewUser { name: name.to_string(), role, prefix: parts.next().unwrap_or("").to_string() })
}

#[derive(Args)]
struct DemoArgs {
    /// Port of the first node; the others take the next two (peers use these plus 1000).
    #[arg(short = 'p', long, default_value_t = 9099)]
    port: u16,
    /// Folder for the three nodes' logs and the demo cluster's credentials; data survives a
    /// restart of the demo.
    #[arg(long, default_value = "dkv-demo-data")]
    data_dir: PathBuf,
    /// TCP only (see the node flags).
    #[arg(short = 't', long, conflicts_with = "udp")]
    tcp: bool,
    /// UDP only, with the lowered limits (see the node flags).
    #[arg(short = 'u', long)]
    udp: bool,
    /// Configuration changes on (see the node flags). Off by default here: the demo's three
    /// nodes run in one process and stop together, so none can fail alone, and changes would
    /// only cost their lease wait and leases. Recorded in the demo's credentials on its first
    /// start, as `dkv-server init --availability` records it: later starts run the same way.
    #[arg(long, conflicts_with = "udp")]
    availability: bool,
    /// Log level: error, info or debug (or 0, 1, 2).
    #[arg(short = 'l', long, default_value = "error")]
    log: LogLevel,
}

fn parse_peer(s: &str) -> Result<(NodeId, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ID=HOST:PORT with the node's peer port, e.g. 1=10.0.0.2:10099"))?;
    let id: u8 = id.trim().parse().map_err(|_| format!("'{id}' in '{s}' is not a node id (0 to 63)"))?;
    Ok((NodeId(id), addr.trim().to_string()))
}

fn transport(tcp: bool, udp: bool) -> Transport {
    match (tcp, udp) {
        (true, _) => Transport::Tcp,
        (false, true) => Transport::Udp,
        (false, false) => Transport::Both,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Demo(args)) => run_demo(args),
        Some(Command::Init(args)) => run_init(args),
        Some(Command::Availability(args)) => run_availability(args),
        None => run_node(cli.node),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dkv-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_init(args: InitArgs) -> Result<(), String> {
    let ids: Vec<NodeId> = args.ids.iter().map(|&id| NodeId(id)).collect();
    let users = if args.users.is_empty() { default_users() } else { args.users };
    let cluster =
        init_cluster_with_users(&args.dir, &ids, &users, Some(args.availability)).map_err(|e| e.to_string())?;
    let dir = args.dir.display();
    println!(
        "cluster {cluster}: credentials in {dir}\n  \
           give node N: --credentials {dir}/node-N   (copy only that folder to its machine)\n  \
           clients: dkv-client --tls {dir}/client --user-file {dir}/client/NAME.user ...\n  \
           keep {dir}/ca.key offline: it can make new members"
    );
    Ok(())
}

fn run_availability(args: AvailabilityArgs) -> Result<(), String> {
    let on = args.mode == "on";
    // Every folder is checked before any is changed: each a node's, all of one cluster, each
    // node once.
    let mut nodes = BTreeMap::new();
    let mut cluster = None;
    for folder in &args.folders {
        let (of, node, recorded) = node_identity_of(folder).map_err(|e| e.to_string())?;
        // No way back: a node the others removed while they stopped would take itself for a
        // member, and serve values they moved past (a node may not know it was removed).
        if !on && recorded == Some(true) {
            return Err(format!(
                "{} records that its cluster runs with --availability, and a cluster cannot go back to running without it: a node the others removed while they stopped would take itself for a member, and serve values they moved past. Keep --availability (if the cluster never started, make new credentials with `dkv-server init` instead); nothing was changed",
                folder.display()
            ));
        }
        if let Some((first, first_folder)) = cluster
            && first != of
        {
            return Err(format!(
                "{} is cluster {of}'s, but {} is cluster {first}'s: give the folders of one cluster; nothing was changed",
                folder.display(),
                Path::display(first_folder)
            ));
        }
        cluster = Some((of, folder));
        if let Some(other) = nodes.insert(node, folder) {
            return Err(format!(
                "{} and {} are both node {}'s folder; give each node's once; nothing was changed",
                Path::display(other),
                folder.display(),
                node.0
            ));
        }
    }
    if on {
        check_drained(&args)?;
    }
    let mut changed: Vec<String> = Vec::new();
    for folder in &args.folders {
        record_availability(folder, on).map_err(|e| {
            let done = if changed.is_empty() {
                "nothing was changed".to_string()
            } else {
                format!("already changed: {}", changed.join(", "))
            };
            format!("{e}; {done}")
        })?;
        changed.push(folder.display().to_string());
        println!("{}: availability {}", folder.display(), args.mode);
    }
    println!(
        "start no node of the cluster until every node's folder says the same (run this on each node's machine for its folder); a node whose data dir has run with --availability refuses to start without it"
    );
    Ok(())
}

/// Before a switch to --availability: no node's data dir may hold a share it voted on without
/// it (pinned) that is still in doubt (docs/protocol.md §6). Each dir is read as the node's start
/// reads it, locked, so its node must be stopped.
fn check_drained(args: &AvailabilityArgs) -> Result<(), String> {
    if args.data_dirs.len() != args.folders.len() {
        return Err(format!(
            "give each node's data dir with --data-dir, once per folder and in the same order ({} folders, {} data dirs): the switch reads every log first, as a write a node voted on without --availability and that is still in doubt would be aborted by the first configuration change; nothing was changed",
            args.folders.len(),
            args.data_dirs.len()
        ));
    }
    let mut undrained = Vec::new();
    for (folder, dir) in args.folders.iter().zip(&args.data_dirs) {
        let (cluster, node, _) = node_identity_of(folder).map_err(|e| e.to_string())?;
        let identity = dkv_net::identity::Identity { cluster, node };
        let pinned = shares_pinned_in_doubt(dir, identity)
            .map_err(|e| format!("reading node {}'s data dir {}: {e}; nothing was changed", node.0, dir.display()))?;
        if !pinned.is_empty() {
            undrained.push(format!("node {} ({}: {})", node.0, dir.display(), list_ids(&pinned)));
        }
    }
    if undrained.is_empty() {
        return Ok(());
    }
    Err(format!(
        "not switched: these nodes hold writes they voted on without --availability that are still in doubt: {}. A commit may already be visible on such votes with no copy of its decision anywhere, and the first configuration change would abort it. Start every node as it is (without --availability) and let them finish: each coordinator decides its own once every node is up; then stop every node and switch again. Nothing was changed",
        undrained.join("; ")
    ))
}

/// Whether this node runs with configuration changes: as its cluster's credentials record it
/// (`dkv-server init [--availability]`), or, in credentials made before dkv recorded it and
/// without credentials, as `--availability` (`flag`) says.
fn availability(flag: bool, credentials: Option<&NodeCredentials>) -> Result<bool, String> {
    let Some(credentials) = credentials else { return Ok(flag) };
    match credentials.availability {
        Some(true) => Ok(true),
        Some(false) if flag => Err(format!(
            "--availability given, but this cluster's credentials record that it runs without it (node {}'s identity file says 'availability off'); every node of a cluster must run the same way, or a node without it could serve stale reads once the others removed it. Start this node without --availability, or switch the whole cluster: stop every node, run `dkv-server availability on FOLDER` for every node's credentials folder, then start them all",
            credentials.node
        )),
        Some(false) => Ok(false),
        None => {
            tracing::warn!(
                availability = flag,
                "these credentials were made before dkv recorded whether a cluster runs with --availability: start every node the same way, or record it with `dkv-server availability on|off FOLDER` (every node stopped)"
            );
            Ok(flag)
        }
    }
}

/// The peer port: --peer-port, or the client port plus [`PEER_PORT_OFFSET`].
fn peer_port(port: u16, peer_port: Option<u16>) -> Result<u16, String> {
    match peer_port {
        Some(p) => Ok(p),
        None => port.checked_add(PEER_PORT_OFFSET).ok_or_else(|| {
            format!("port {port} leaves no room for the peer port {PEER_PORT_OFFSET} above it; give --peer-port")
        }),
    }
}

fn load_credentials(dir: &Path, id: NodeId) -> Result<Arc<NodeCredentials>, String> {
    NodeCredentials::load_for(dir, id).map(Arc::new).map_err(|e| e.to_string())
}

fn run_node(args: NodeArgs) -> Result<(), String> {
    init_logging(args.log);
    let this_host = |port: u16| {
        resolve_or_say(&format!("{}:{port}", args.host), "give -s a host name or address of this machine")
            .map_err(|e| format!("-s {}: {e}", args.host))
    };
    let listen = this_host(args.port)?;
    let peer_listen = this_host(peer_port(args.port, args.peer_port)?)?;
    let mut peers = BTreeMap::new();
    for (id, addr) in &args.peers {
        let peer = resolve_or_say(addr, "give HOST:PORT, the node's peer port, e.g. 10.0.0.2:10099 (its -p plus 1000)")
            .map_err(|e| format!("--peers {id}={addr}: {e}"))?;
        if peers.insert(*id, peer).is_some() {
            return Err(format!("node id {id} appears twice in --peers; give each node once"));
        }
    }
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("dkv-data").join(format!("node-{}", args.id)));
    let mut config =
        ServerConfig::new(NodeId(args.id), listen, peer_listen, peers, transport(args.tcp, args.udp), data_dir);
    if let Some(dir) = &args.credentials {
        config.credentials = Some(load_credentials(dir, config.id)?);
        if args.require_auth {
            config.users = Some(load_users(&dir.join(USERS_FILE)).map_err(|e| e.to_string())?);
        }
    }
    config.insecure = args.insecure;
    config.init = args.init;
    config.timing.leases = availability(args.availability, config.credentials.as_deref())?;
    if config.timing.leases && config.transport == Transport::Udp {
        return Err("this cluster runs with --availability (its credentials say so), which needs TCP peer links: start it without -u".into());
    }
    config.connection.buffer_bytes_max = (args.buffer_budget_mib as usize) << 20;
    if config.transport == Transport::Udp {
        tracing::info!(
            value_bytes_max = udp_limits().value_bytes_max,
            txn_bytes_max = udp_limits().txn_bytes_max,
            datagram_bytes_max = DATAGRAM_BYTES_MAX,
            "UDP mode: limits lowered so every request fits one datagram"
        );
    }
    let server = Server::bind(config).map_err(|e| e.to_string())?;
    run_servers(vec![server])
}

fn run_demo(args: DemoArgs) -> Result<(), String> {
    init_logging(args.log);
    let transport = transport(args.tcp, args.udp);
    let ports: Vec<u16> = (0..3u16)
        .map(|i| args.port.checked_add(i).ok_or_else(|| format!("port {} leaves no room for 3 nodes", args.port)))
        .collect::<Result<_, _>>()?;
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let peer_ports = ports.iter().map(|&port| peer_port(port, None)).collect::<Result<Vec<_>, _>>()?;
    // The demo's own cluster: credentials made on its first start, kept with its data.
    let credentials = args.data_dir.join("credentials");
    if !credentials.exists() {
        let nodes = [NodeId(0), NodeId(1), NodeId(2)];
        init_cluster_with_users(&credentials, &nodes, &default_users(), Some(args.availability))
            .map_err(|e| e.to_string())?;
    }
    let mut configs = Vec::new();
    for i in 0..3 {
        let peers = (0..3).filter(|&j| j != i).map(|j| (NodeId(j as u8), loopback(peer_ports[j]))).collect();
        let dir = args.data_dir.join(format!("node-{i}"));
        let id = NodeId(i as u8);
        let mut config = ServerConfig::new(id, loopback(ports[i]), loopback(peer_ports[i]), peers, transport, dir);
        config.credentials = Some(load_credentials(&credentials.join(format!("node-{i}")), id)?);
        config.timing.leases = availability(args.availability, config.credentials.as_deref()).map_err(|_| {
            let creds = credentials.display();
            format!(
                "this demo's cluster was made without --availability, as {creds} records: run the demo without it, or switch it with `dkv-server availability on {creds}/node-0 {creds}/node-1 {creds}/node-2 --data-dir {data}/node-0 --data-dir {data}/node-1 --data-dir {data}/node-2` (the demo stopped), or delete {data} to start over",
                data = args.data_dir.display()
            )
        })?;
        if config.timing.leases && transport == Transport::Udp {
            return Err(format!(
                "this demo's cluster runs with --availability, which needs TCP peer links: run it without -u, or delete {} to start over",
                args.data_dir.display()
            ));
        }
        configs.push(config);
    }
    // The demo owns its three data dirs, so it knows what an operator would: the cluster is
    // new when none of them holds a log (`--init` for all three). A dir emptied while the
    // others kept theirs is a member whose data was lost: it catches up rather than start empty.
    let empty_logs = configs.iter().map(holds_no_log).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let new_cluster = empty_logs.iter().all(|&empty| empty);
    for (config, _) in configs.iter().zip(&empty_logs).filter(|(_, empty)| **empty && !new_cluster) {
        let dir = config.data_dir.display();
        let what = if config.timing.leases {
            "it catches up from the other two before it takes part (a few seconds)"
        } else {
            "it takes part in nothing until it has caught up from the other two, which needs a demo cluster made with --availability; until then writes fail"
        };
        eprintln!(
            "dkv demo: {dir} holds no log while the other nodes keep theirs, so node {}'s data was lost: {what}. Delete {} to start over.",
            config.id,
            args.data_dir.display()
        );
    }
    let availability = configs.iter().all(|config| config.timing.leases);
    let recorded = configs.iter().all(|config| config.credentials.as_ref().is_some_and(|c| c.availability.is_some()));
    let mut servers = Vec::new();
    for mut config in configs {
        config.init = new_cluster;
        servers.push(Server::bind(config).map_err(|e| e.to_string())?);
    }
    let mode = match transport {
        Transport::Tcp => " -t",
        Transport::Udp => " -u",
        Transport::Both => "",
    };
    let ports_list = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
    let client = client_command();
    println!(
        "dkv demo: 3 nodes on 127.0.0.1 ports {ports_list} ({}), data in {}\n\
         (peers on ports {peer_list}, {peer_security}; the cluster's credentials are in {}/credentials)\n\
         {changes}\n\
         \n\
         In another terminal, try:\n  \
           {client}{mode} -p {p0} put hello world\n  \
           {client}{mode} -p {p1} get hello\n  \
           {client}{mode} -p {p2} txn put:a=1 update:hello=there delete:a\n  \
           {client}{mode} -p {p0} -o 1 -k hello          # the original project's flags\n  \
           {client}{mode} -p {p0} -n 127.0.0.1:{p1},127.0.0.1:{p2} --json get hello\n  \
           {client}{mode} -p {p0} --tls {creds}/client --user-file {creds}/client/admin.user get hello   # over TLS, as a user\n\
         \n\
         Stop with Ctrl-C; start the demo again and your data is still there (delete {} to start over).",
        match transport {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
            Transport::Both => "TCP and UDP",
        },
        args.data_dir.display(),
        args.data_dir.display(),
        args.data_dir.display(),
        peer_list = peer_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
        peer_security = if transport == Transport::Udp { "sealed UDP datagrams" } else { "mutual TLS" },
        creds = credentials.display(),
        changes = match (availability, recorded) {
            (true, true) =>
                "With --availability (recorded in the credentials): configuration changes and read leases on.",
            (true, false) => "With --availability: configuration changes and read leases on.",
            (false, true) =>
                "Classic two-phase commit: every write needs all three nodes (--availability off, as the credentials record).",
            (false, false) => "Classic two-phase commit: every write needs all three nodes (--availability off).",
        },
        p0 = ports[0],
        p1 = ports[1],
        p2 = ports[2],
    );
    run_servers(servers)
}

enum Event {
    Signal(i32),
    Exited(usize, Result<(), ServerError>),
}

/// How to run dkv-client from where this program was run: through cargo when cargo ran it,
/// else the dkv-client beside this program, else from the PATH.
fn client_command() -> String {
    if std::env::var_os("CARGO").is_some() {
        return "cargo run --release --bin dkv-client --".into();
    }
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("dkv-client")));
    match beside {
        Some(path) if path.is_file() => path.display().to_string(),
        _ => "dkv-client".into(),
    }
}

/// Runs each server on its own thread until SIGINT/SIGTERM (a clean stop of all) or until one
/// fails (then the others are stopped too, and the failure is reported).
fn run_servers(servers: Vec<Server>) -> Result<(), String> {
    let handles: Vec<_> = servers.iter().map(Server::handle).collect();
    let (events, receive) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let signal_events = events.clone();
    std::thread::spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen > 1 {
                // A second Ctrl-C while stopping: the operator wants out now. Safe: every
                // acknowledged write is already on disk.
                std::process::exit(130);
            }
            let _ = signal_events.send(Event::Signal(signal));
        }
    });
    let mut threads = Vec::new();
    for (i, server) in servers.into_iter().enumerate() {
        let events = events.clone();
        threads.push(std::thread::spawn(move || {
            let result = server.run();
            let _ = events.send(Event::Exited(i, result));
        }));
    }
    drop(events);
    let mut failure = None;
    let mut running = threads.len();
    let mut stopping = false;
    while running > 0 {
        let Ok(event) = receive.recv() else { break };
        match event {
            Event::Signal(signal) => {
                tracing::info!(signal, "stopping on signal");
            }
            Event::Exited(i, result) => {
                running -= 1;
                if let Err(error) = result {
                    tracing::error!(server = i, %error, "server failed");
                    failure.get_or_insert(error.to_string());
                }
            }
        }
        if !stopping {
            stopping = true;
            handles.iter().for_each(|handle| handle.stop());
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    failure.map_or(Ok(()), Err)
}
