//! The real `dkv-server` processes of a torture run: their data dirs and credentials in one
//! folder, and the faults done to them as processes (kill -9, SIGSTOP and SIGCONT, restart).
//! Every process is killed when the cluster is dropped, whatever happened.

use super::network::{NODE_UID_BASE, node_host};
use dkv_core::Outcome;
use dkv_net::{Client, ClientConfig, ClientTransport};
use std::fs::{self, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a started or restarted node may take to answer a read.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cannot set up the cluster in {dir}: {source}")]
    Setup { dir: PathBuf, source: io::Error },
    #[error("cannot run {server}: {source}; build it first (cargo build --bin dkv-server) or give --server")]
    Spawn { server: PathBuf, source: io::Error },
    #[error("`dkv-server init` failed ({0}); run it by hand to see why")]
    Init(ExitStatus),
    #[error("n{node} exited by itself ({status}); its log is {log}")]
    Exited { node: usize, status: ExitStatus, log: PathBuf },
    #[error("n{node} did not answer a read within {READY_TIMEOUT:?} of starting; its log is {log}")]
    NotReady { node: usize, log: PathBuf },
    #[error("cannot signal n{node}: {source}")]
    Signal { node: usize, source: io::Error },
}

/// What a cluster is made of.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub server: PathBuf,
    pub nodes: usize,
    pub transport: ClientTransport,
    /// Inside the tool's network namespace: each node runs as its own uid on its own address
    /// (see [`super::network`]); needed for partitions.
    pub own_uids: bool,
    /// `dkv-server --availability` on every node: a member cut off or down is removed by the
    /// others and added back once it returns; reads need a lease.
    pub availability: bool,
}

pub struct Cluster {
    spec: ClusterSpec,
    root: PathBuf,
    ports: Vec<u16>,
    peer_ports: Vec<u16>,
    processes: Vec<Option<Child>>,
}

impl Cluster {
    /// Makes the credentials and data dirs under `root` and starts every node.
    pub fn start(spec: ClusterSpec, root: &Path) -> Result<Cluster, ClusterError> {
        let setup = |source| ClusterError::Setup { dir: root.to_path_buf(), source };
        let mut ports = dkv_net::testing::free_ports(2 * spec.nodes);
        let peer_ports = ports.split_off(spec.nodes);
        let ids: Vec<String> = (0..spec.nodes).map(|i| i.to_string()).collect();
        let status = Command::new(&spec.server)
            .arg("init")
            .arg(root.join("credentials"))
            .args(["--ids", &ids.join(",")])
            .args(spec.availability.then_some("--availability"))
            .stdout(Stdio::null())
            .status()
            .map_err(|source| ClusterError::Spawn { server: spec.server.clone(), source })?;
        if !status.success() {
            return Err(ClusterError::Init(status));
        }
        if spec.own_uids {
            // The nodes run as other users: they must reach their folders, and own them.
            fs::set_permissions(root, fs::Permissions::from_mode(0o755)).map_err(setup)?;
            fs::set_permissions(root.join("credentials"), fs::Permissions::from_mode(0o755)).map_err(setup)?;
            for i in 0..spec.nodes {
                let uid = NODE_UID_BASE + i as u32;
                fs::create_dir_all(root.join(format!("node-{i}"))).map_err(setup)?;
                chown_all(&root.join(format!("node-{i}")), uid).map_err(setup)?;
                chown_all(&root.join(format!("credentials/node-{i}")), uid).map_err(setup)?;
            }
        }
        let processes = (0..spec.nodes).map(|_| None).collect();
        let mut cluster = Cluster { spec, root: root.to_path_buf(), ports, peer_ports, processes };
        for i in 0..cluster.spec.nodes {
            cluster.spawn(i, true)?;
        }
        for i in 0..cluster.spec.nodes {
            cluster.wait_ready(i)?;
        }
        Ok(cluster)
    }

    pub fn nodes(&self) -> usize {
        self.spec.nodes
    }

    /// Node `i`'s client address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((node_host(i, self.spec.own_uids), self.ports[i]))
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node-{i}"))
    }

    /// Where node `i`'s stderr goes, across all its restarts.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.root.join(format!("node-{i}.log"))
    }

    /// A client of node `i` alone (no fail-over).
    pub fn client_of(&self, i: usize, timeout: Duration) -> Client {
        let mut config = ClientConfig::new(vec![self.addr(i)], self.spec.transport);
        config.request_timeout = timeout;
        config.attempt_timeout = timeout;
        config.connect_timeout = timeout.min(Duration::from_secs(1));
        config.udp_retransmit_min = Duration::from_millis(50);
        Client::new(config).expect("a client with one node and no credentials")
    }

    /// Starts node `i`'s process; `init` on the cluster's first start only, as an operator
    /// runs it: a restart of a node whose log was lost must catch up, not start a new cluster
    /// (docs/protocol.md §7.1).
    fn spawn(&mut self, i: usize, init: bool) -> Result<(), ClusterError> {
        let setup = |source| ClusterError::Setup { dir: self.root.clone(), source };
        let peers: Vec<String> = (0..self.spec.nodes)
            .filter(|&j| j != i)
            .map(|j| format!("{j}={}:{}", node_host(j, self.spec.own_uids), self.peer_ports[j]))
            .collect();
        let log = OpenOptions::new().create(true).append(true).open(self.log_path(i)).map_err(setup)?;
        let mut command = Command::new(&self.spec.server);
        command
            .args([
                "--id",
                &i.to_string(),
                "-s",
                &node_host(i, self.spec.own_uids).to_string(),
                "-p",
                &self.ports[i].to_string(),
            ])
            .args(["--peer-port", &self.peer_ports[i].to_string()])
            .args(["--peers", &peers.join(",")])
            .arg(match self.spec.transport {
                ClientTransport::Tcp => "-t",
                ClientTransport::Udp => "-u",
            })
            .args(["-l", "error", "--data-dir"])
            .arg(self.data_dir(i))
            .args(self.spec.availability.then_some("--availability"))
            .arg("--credentials")
            .arg(self.root.join(format!("credentials/node-{i}")))
            .args(init.then_some("--init"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if self.spec.own_uids {
            let uid = NODE_UID_BASE + i as u32;
            command.uid(uid).gid(uid);
        }
        let child =
            command.spawn().map_err(|source| ClusterError::Spawn { server: self.spec.server.clone(), source })?;
        self.processes[i] = Some(child);
        Ok(())
    }

    /// Polls node `i` with reads until it answers, or fails after [`READY_TIMEOUT`].
    pub fn wait_ready(&mut self, i: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut client = self.client_of(i, Duration::from_millis(300));
        while Instant::now() < deadline {
            self.check_running(i)?;
            if matches!(client.get("__ready__"), Ok(Outcome::NotFound | Outcome::Value { .. })) {
                return Ok(());
            }
        }
        Err(ClusterError::NotReady { node: i, log: self.log_path(i) })
    }

    /// Fails if node `i` (when it should be running) has exited by itself: a node that stops
    /// on its own under torture is a finding, whatever its reason.
    pub fn check_running(&mut self, i: usize) -> Result<(), ClusterError> {
        let log = self.log_path(i);
        if let Some(child) = self.processes[i].as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.processes[i] = None;
            return Err(ClusterError::Exited { node: i, status, log });
        }
        Ok(())
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        self.check_running(i)?;
        if let Some(mut child) = self.processes[i].take() {
            child.kill().map_err(|source| ClusterError::Signal { node: i, source })?;
            child.wait().map_err(|source| ClusterError::Signal { node: i, source })?;
        }
        Ok(())
    }

    /// Starts node `i` again after [`Cluster::kill`], and waits until it answers.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.spawn(i, false)?;
        self.wait_ready(i)
    }

    /// Starts every node again after each was killed, then waits until each answers. All start
    /// before any is waited for: with `--availability` a node answers reads only under a lease
    /// from a majority, so one alone never would.
    pub fn restart_all(&mut self) -> Result<(), ClusterError> {
        for i in 0..self.spec.nodes {
            self.spawn(i, false)?;
        }
        for i in 0..self.spec.nodes {
            self.wait_ready(i)?;
        }
        Ok(())
    }

    /// SIGSTOP: node `i` freezes, its sockets stay open and its timers go stale.
    pub fn pause(&mut self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, "-STOP")
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, "-CONT")
    }

    fn signal(&mut self, i: usize, signal: &str) -> Result<(), ClusterError> {
        self.check_running(i)?;
        let Some(child) = &self.processes[i] else { return Ok(()) };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .map_err(|source| ClusterError::Signal { node: i, source })?;
        if !status.success() {
            return Err(ClusterError::Signal { node: i, source: io::Error::other(format!("kill {signal} failed")) });
        }
        Ok(())
    }

    /// Stops every node with SIGTERM and waits for each to exit cleanly.
    pub fn stop_all(&mut self) -> Result<(), ClusterError> {
        for i in 0..self.spec.nodes {
            self.signal(i, "-TERM")?;
        }
        for (i, process) in self.processes.iter_mut().enumerate() {
            if let Some(mut child) = process.take() {
                let status = child.wait().map_err(|source| ClusterError::Signal { node: i, source })?;
                if !status.success() {
                    return Err(ClusterError::Exited { node: i, status, log: self.root.join(format!("node-{i}.log")) });
                }
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().flatten() {
            // SIGKILL ends a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Gives `path` and everything under it to `uid` (as its group too).
fn chown_all(path: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_all(&entry?.path(), uid)?;
        }
    }
    Ok(())
}
