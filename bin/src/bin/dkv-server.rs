//! dkv-server: one node of a dkv cluster, or (`dkv-server demo`) a whole 3-node cluster on
//! loopback in one process.

use clap::{Args, Parser, Subcommand};
use dkv::{LogLevel, init_logging, resolve};
use dkv_core::NodeId;
use dkv_net::{DATAGRAM_BYTES_MAX, Server, ServerConfig, ServerError, Transport, udp_limits};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

const EXAMPLES: &str = "\
Examples:
  # Try it: a 3-node cluster on 127.0.0.1:9099-9101, data in ./dkv-demo-data
  dkv-server demo

  # A 3-node cluster on three machines (run one line on each; list the OTHER nodes in --peers):
  dkv-server --id 0 -s 10.0.0.1 -p 9099 --peers 1=10.0.0.2:9099,2=10.0.0.3:9099 --data-dir /var/lib/dkv
  dkv-server --id 1 -s 10.0.0.2 -p 9099 --peers 0=10.0.0.1:9099,2=10.0.0.3:9099 --data-dir /var/lib/dkv
  dkv-server --id 2 -s 10.0.0.3 -p 9099 --peers 0=10.0.0.1:9099,1=10.0.0.2:9099 --data-dir /var/lib/dkv

  # The same on one machine, three ports, UDP only (the original project's -u mode), debug logs:
  dkv-server --id 0 -p 9099 --peers 1=127.0.0.1:9100,2=127.0.0.1:9101 -u -l debug --data-dir d0

Every node of a cluster must be started with the same set of ids. Writes need every node
running; reads need only the node asked. Stop a node with Ctrl-C or SIGTERM; kill -9 is safe
too (acknowledged writes are on disk).";

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
    /// Port to listen on (TCP and UDP, for clients and peers).
    #[arg(short = 'p', long, default_value_t = 9099)]
    port: u16,
    /// TCP only: serve clients over TCP, talk to peers over TCP. Default: clients over TCP and
    /// UDP, peers over TCP.
    #[arg(short = 't', long, conflicts_with = "udp")]
    tcp: bool,
    /// UDP only: serve clients over UDP and talk to peers over UDP. Every request and PREPARE
    /// must then fit one datagram, so limits are lowered: values up to 48 KiB, transactions up
    /// to 256 ops and 56 KiB (keys stay up to 4 KiB). Every node of the cluster needs -u.
    #[arg(short = 'u', long)]
    udp: bool,
    /// Log level: error, info or debug (or 0, 1, 2).
    #[arg(short = 'l', long, default_value = "info")]
    log: LogLevel,
    /// This node's id, 0 to 63, unique in the cluster.
    #[arg(long, default_value_t = 0)]
    id: u8,
    /// The OTHER nodes of the cluster, as ID=HOST:PORT, comma-separated (or the flag repeated),
    /// e.g. --peers 1=10.0.0.2:9099,2=10.0.0.3:9099. None: a one-node cluster.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<(NodeId, String)>,
    /// Where this node keeps its log (created if missing; locked while the server runs).
    /// Default: ./dkv-data/node-ID.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Port of the first node; the others take the next two.
    #[arg(short = 'p', long, default_value_t = 9099)]
    port: u16,
    /// Folder for the three nodes' logs; data survives a restart of the demo.
    #[arg(long, default_value = "dkv-demo-data")]
    data_dir: PathBuf,
    /// TCP only (see the node flags).
    #[arg(short = 't', long, conflicts_with = "udp")]
    tcp: bool,
    /// UDP only, with the lowered limits (see the node flags).
    #[arg(short = 'u', long)]
    udp: bool,
    /// Log level: error, info or debug (or 0, 1, 2).
    #[arg(short = 'l', long, default_value = "error")]
    log: LogLevel,
}

fn parse_peer(s: &str) -> Result<(NodeId, String), String> {
    let (id, addr) = s.split_once('=').ok_or_else(|| format!("'{s}' is not ID=HOST:PORT, e.g. 1=10.0.0.2:9099"))?;
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

fn run_node(args: NodeArgs) -> Result<(), String> {
    init_logging(args.log);
    let listen = resolve(&format!("{}:{}", args.host, args.port))?;
    let mut peers = BTreeMap::new();
    for (id, addr) in &args.peers {
        if peers.insert(*id, resolve(addr)?).is_some() {
            return Err(format!("node id {id} appears twice in --peers; give each node once"));
        }
    }
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("dkv-data").join(format!("node-{}", args.id)));
    let config = ServerConfig::new(NodeId(args.id), listen, peers, transport(args.tcp, args.udp), data_dir);
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
    let addrs: Vec<SocketAddr> = ports.iter().map(|&port| SocketAddr::from(([127, 0, 0, 1], port))).collect();
    let mut servers = Vec::new();
    for i in 0..3 {
        let peers = (0..3).filter(|&j| j != i).map(|j| (NodeId(j as u8), addrs[j])).collect();
        let dir = args.data_dir.join(format!("node-{i}"));
        let config = ServerConfig::new(NodeId(i as u8), addrs[i], peers, transport, dir);
        servers.push(Server::bind(config).map_err(|e| e.to_string())?);
    }
    let mode = match transport {
        Transport::Tcp => " -t",
        Transport::Udp => " -u",
        Transport::Both => "",
    };
    let ports_list = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
    println!(
        "dkv demo: 3 nodes on 127.0.0.1 ports {ports_list} ({}), data in {}\n\
         \n\
         In another terminal, try:\n  \
           cargo run --release --bin dkv-client --{mode} -p {p0} put hello world\n  \
           cargo run --release --bin dkv-client --{mode} -p {p1} get hello\n  \
           cargo run --release --bin dkv-client --{mode} -p {p2} txn put:a=1 update:hello=there delete:a\n  \
           cargo run --release --bin dkv-client --{mode} -p {p0} -o 1 -k hello          # the original project's flags\n  \
           cargo run --release --bin dkv-client --{mode} -p {p0} -n 127.0.0.1:{p1},127.0.0.1:{p2} --json get hello\n\
         \n\
         Stop with Ctrl-C; start the demo again and your data is still there (delete {} to start over).",
        match transport {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
            Transport::Both => "TCP and UDP",
        },
        args.data_dir.display(),
        args.data_dir.display(),
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
