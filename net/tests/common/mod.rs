//! Helpers shared by the runtime's integration tests: in-process clusters whose servers run on
//! their own threads and stop when dropped.

#![allow(dead_code)]

pub mod lossy_relay;

use dkv_core::NodeId;
use dkv_net::security::credentials::{
    ClientCertificate, ClientTrust, NewUser, NodeCredentials, USERS_FILE, init_cluster_with_users,
};
use dkv_net::security::users::{Role, load_client_user, load_users};
use dkv_net::testing::free_ports;
use dkv_net::{
    Client, ClientConfig, ClientTransport, Server, ServerConfig, ServerError, ServerHandle, ServerStats, Transport,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The servers' log (configurations installed, links, catch-ups) goes to the test's output,
/// which the harness shows when the test fails.
pub fn show_server_logs_on_failure() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_thread_ids(true)
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

/// A running server: its handle and the thread running its loop.
type RunningServer = (ServerHandle, JoinHandle<Result<(), ServerError>>);

pub struct TestCluster {
    /// Client addresses.
    pub addrs: Vec<SocketAddr>,
    /// Peer addresses.
    pub peer_addrs: Vec<SocketAddr>,
    /// Where the nodes send their messages for each node: its peer address, unless a test
    /// puts something in between (set before the nodes start).
    pub peer_routes: Vec<SocketAddr>,
    /// Where `dkv-server init` would have put the cluster's credentials.
    pub credentials: PathBuf,
    pub transport: Transport,
    pub dirs: Vec<PathBuf>,
    /// Whether the nodes serve only authenticated users.
    pub require_auth: bool,
    handles: Vec<Option<RunningServer>>,
    /// Which nodes were started before: a first start gets `init` (its dir starts the new
    /// cluster), a restart does not, as an operator runs them (docs/protocol.md §7.1).
    started: Vec<bool>,
    tweak: fn(&mut ServerConfig),
    _root: tempfile::TempDir,
}

impl TestCluster {
    pub fn start(nodes: usize, transport: Transport) -> TestCluster {
        TestCluster::start_with(nodes, transport, |_| {})
    }

    pub fn start_with(nodes: usize, transport: Transport, tweak: fn(&mut ServerConfig)) -> TestCluster {
        let mut cluster = TestCluster::unstarted(nodes, transport);
        cluster.tweak = tweak;
        cluster.start_all();
        cluster
    }

    /// A cluster whose addresses and credentials are made but whose nodes are not started yet
    /// ([`TestCluster::start_all`]), so a test can route their messages first.
    pub fn unstarted(nodes: usize, transport: Transport) -> TestCluster {
        let admin = NewUser { name: "admin".into(), role: Role::Admin, prefix: String::new() };
        TestCluster::new_full(nodes, transport, |_| {}, &[admin], false)
    }

    /// Starts every node, and waits until none is still bootstrapping (a first start waits
    /// for every node's answer, docs/protocol.md §7.1), or panics after 30 s.
    pub fn start_all(&mut self) {
        for i in 0..self.addrs.len() {
            self.start_node(i);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for i in 0..self.addrs.len() {
            let stats = self.handle(i).stats();
            while ServerStats::get(&stats.bootstrapping) == 1 {
                assert!(std::time::Instant::now() < deadline, "node {i} still bootstraps after 30 s");
                std::thread::sleep(Duration::from_millis(5));
            }
            // (A node alone in its cluster has nobody to wait for: it takes part at once.)
            if self.addrs.len() > 1 {
                assert_eq!(
                    ServerStats::get(&stats.bootstrapped_as_member),
                    1,
                    "node {i} ended its first start outside"
                );
            }
        }
    }

    /// A cluster whose nodes serve only these users.
    pub fn start_with_users(nodes: usize, transport: Transport, users: &[NewUser]) -> TestCluster {
        let mut cluster = TestCluster::new_full(nodes, transport, |_| {}, users, true);
        cluster.start_all();
        cluster
    }

    fn new_full(
        nodes: usize,
        transport: Transport,
        tweak: fn(&mut ServerConfig),
        users: &[NewUser],
        require_auth: bool,
    ) -> TestCluster {
        let root = tempfile::tempdir().unwrap();
        let mut addrs: Vec<SocketAddr> =
            free_ports(2 * nodes).into_iter().map(|port| SocketAddr::from(([127, 0, 0, 1], port))).collect();
        let peer_addrs = addrs.split_off(nodes);
        let dirs = (0..nodes).map(|i| root.path().join(format!("node-{i}"))).collect();
        let credentials = root.path().join("credentials");
        let ids: Vec<NodeId> = (0..nodes).map(|i| NodeId(i as u8)).collect();
        init_cluster_with_users(&credentials, &ids, users, None).expect("credentials are made");
        let handles = (0..nodes).map(|_| None).collect();
        let started = vec![false; nodes];
        let peer_routes = peer_addrs.clone();
        TestCluster {
            addrs,
            peer_addrs,
            peer_routes,
            credentials,
            transport,
            dirs,
            require_auth,
            handles,
            started,
            tweak,
            _root: root,
        }
    }

    pub fn config(&self, i: usize) -> ServerConfig {
        let peers: BTreeMap<NodeId, SocketAddr> =
            (0..self.addrs.len()).filter(|&j| j != i).map(|j| (NodeId(j as u8), self.peer_routes[j])).collect();
        let (id, addr, peer_addr, dir) = (NodeId(i as u8), self.addrs[i], self.peer_addrs[i], self.dirs[i].clone());
        let mut config = ServerConfig::new(id, addr, peer_addr, peers, self.transport, dir);
        config.init = !self.started[i];
        let node_dir = self.credentials.join(format!("node-{i}"));
        config.credentials = Some(Arc::new(NodeCredentials::load(&node_dir).expect("credentials load")));
        if self.require_auth {
            config.users = Some(load_users(&node_dir.join(USERS_FILE)).expect("users load"));
        }
        (self.tweak)(&mut config);
        config
    }

    pub fn start_node(&mut self, i: usize) {
        self.start_node_with(i, |_| {});
    }

    /// Starts node `i` with its configuration changed by `change` after the cluster's tweak.
    pub fn start_node_with(&mut self, i: usize, change: impl FnOnce(&mut ServerConfig)) {
        assert!(self.handles[i].is_none(), "node {i} is running");
        let mut config = self.config(i);
        change(&mut config);
        let server = Server::bind(config).expect("server starts");
        self.started[i] = true;
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.run());
        self.handles[i] = Some((handle, thread));
    }

    pub fn stop_node(&mut self, i: usize) {
        if let Some((handle, thread)) = self.handles[i].take() {
            handle.stop();
            thread.join().expect("server thread panicked").expect("server stopped cleanly");
        }
    }

    /// Stops node `i` and accepts whatever its loop ended with: a test that deleted its data
    /// dir under it may have made it fail.
    pub fn crash_node(&mut self, i: usize) {
        if let Some((handle, thread)) = self.handles[i].take() {
            handle.stop();
            let _ = thread.join().expect("server thread panicked");
        }
    }

    /// Waits up to `within` for node `i`'s loop to end by itself, and returns how it ended;
    /// `None` if it is still running then (or was not running).
    pub fn wait_for_exit(&mut self, i: usize, within: Duration) -> Option<Result<(), ServerError>> {
        let deadline = std::time::Instant::now() + within;
        while !self.handles[i].as_ref()?.1.is_finished() {
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (_, thread) = self.handles[i].take()?;
        Some(thread.join().expect("server thread panicked"))
    }

    pub fn handle(&self, i: usize) -> &ServerHandle {
        &self.handles[i].as_ref().expect("node is running").0
    }

    pub fn client(&self, first: usize, transport: ClientTransport) -> Client {
        let mut nodes = self.addrs.clone();
        nodes.rotate_left(first);
        let mut config = ClientConfig::new(nodes, transport);
        config.request_timeout = Duration::from_secs(20);
        Client::new(config).unwrap()
    }
}

impl TestCluster {
    /// A client that talks TLS and proves it is `user` with the user's client certificate.
    pub fn certificate_client(&self, first: usize, user: &str) -> Client {
        let mut nodes = self.addrs.clone();
        nodes.rotate_left(first);
        let mut config = ClientConfig::new(nodes, ClientTransport::Tcp);
        config.request_timeout = Duration::from_secs(20);
        let client_dir = self.credentials.join("client");
        let mut trust = ClientTrust::load(&client_dir).expect("client trust loads");
        let certificate = ClientCertificate::load(&client_dir.join(format!("{user}.crt"))).expect("certificate loads");
        trust.certificate = Some(certificate);
        config.tls = Some(Arc::new(trust));
        Client::new(config).unwrap()
    }

    /// A client that talks TLS (over TCP) and authenticates as `user`.
    pub fn user_client(&self, first: usize, transport: ClientTransport, user: &str) -> Client {
        let mut nodes = self.addrs.clone();
        nodes.rotate_left(first);
        let mut config = ClientConfig::new(nodes, transport);
        config.request_timeout = Duration::from_secs(20);
        let client_dir = self.credentials.join("client");
        config.tls = Some(Arc::new(ClientTrust::load(&client_dir).expect("client trust loads")));
        config.user = Some(Arc::new(load_client_user(&client_dir.join(format!("{user}.user"))).expect("user loads")));
        Client::new(config).unwrap()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for handle in self.handles.iter().flatten() {
            handle.0.stop();
        }
        for (_, thread) in self.handles.iter_mut().filter_map(Option::take) {
            let _ = thread.join();
        }
    }
}
