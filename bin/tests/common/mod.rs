//! Real dkv-server processes on loopback for end-to-end tests: free ports, temporary data
//! dirs, readiness by polling with a deadline, and kill -9 / restart. Every process is killed
//! when the cluster is dropped, whatever the test did.

#![allow(dead_code)]

use dkv_core::{Outcome, RejectReason};
use dkv_net::testing::free_ports;
use dkv_net::{Client, ClientConfig, ClientTransport};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const SERVER: &str = env!("CARGO_BIN_EXE_dkv-server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_dkv-client");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `-t`: clients and peers over TCP.
    Tcp,
    /// `-u`: clients and peers over UDP.
    Udp,
    /// Neither flag: clients over TCP and UDP, peers over TCP (the servers talk TCP to clients
    /// of this harness).
    Both,
}

impl Mode {
    /// The flags that select this mode, for dkv-server and dkv-client alike.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Tcp => &["-t"],
            Mode::Udp => &["-u"],
            Mode::Both => &[],
        }
    }

    pub fn client_transport(self) -> ClientTransport {
        match self {
            Mode::Tcp | Mode::Both => ClientTransport::Tcp,
            Mode::Udp => ClientTransport::Udp,
        }
    }
}

/// The users a cluster made with [`ProcessCluster::start_requiring_users`] serves, as
/// `dkv-server init --user` takes them.
pub const USERS: &[&str] = &["admin:admin", "viewer:read"];

pub struct ProcessCluster {
    pub mode: Mode,
    /// The nodes serve only authenticated users ([`USERS`]).
    pub require_auth: bool,
    /// Client ports.
    pub ports: Vec<u16>,
    pub peer_ports: Vec<u16>,
    pub processes: Vec<Option<Child>>,
    root: tempfile::TempDir,
}

impl ProcessCluster {
    pub fn start(mode: Mode) -> ProcessCluster {
        ProcessCluster::start_full(mode, false)
    }

    /// A cluster whose nodes run with `--require-auth`, serving only the [`USERS`].
    pub fn start_requiring_users(mode: Mode) -> ProcessCluster {
        ProcessCluster::start_full(mode, true)
    }

    fn start_full(mode: Mode, require_auth: bool) -> ProcessCluster {
        let mut ports = free_ports(6);
        let peer_ports = ports.split_off(3);
        let root = tempfile::tempdir().unwrap();
        // The cluster's credentials, made the way an operator makes them.
        let mut init = Command::new(SERVER);
        init.arg("init").arg(root.path().join("credentials")).args(["--ids", "0,1,2"]);
        if require_auth {
            for user in USERS {
                init.args(["--user", user]);
            }
        }
        let status = init.stdout(Stdio::null()).status().expect("dkv-server init runs");
        assert!(status.success(), "dkv-server init failed");
        let processes = (0..3).map(|_| None).collect();
        let mut cluster = ProcessCluster { mode, require_auth, ports, peer_ports, processes, root };
        for i in 0..3 {
            cluster.start_node(i);
        }
        for i in 0..3 {
            cluster.wait_ready(i);
        }
        cluster
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[i]))
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("node-{i}"))
    }

    /// The clients' folder `dkv-server init` made: the CA to trust (for `--tls`), and each
    /// user's `NAME.user` file (for `--user-file`).
    pub fn client_credentials(&self) -> PathBuf {
        self.root.path().join("credentials/client")
    }

    pub fn start_node(&mut self, i: usize) {
        assert!(self.processes[i].is_none(), "node {i} is running");
        let child = self.node_command(i).stdout(Stdio::null()).spawn().expect("dkv-server starts");
        self.processes[i] = Some(child);
    }

    /// The command that runs node `i`, for a test that spawns it itself (to capture its
    /// stderr, say) and puts the child in `processes[i]`.
    pub fn node_command(&self, i: usize) -> Command {
        let peers: Vec<String> =
            (0..3).filter(|&j| j != i).map(|j| format!("{j}=127.0.0.1:{}", self.peer_ports[j])).collect();
        let mut command = Command::new(SERVER);
        command
            .args(["--id", &i.to_string(), "-s", "127.0.0.1", "-p", &self.ports[i].to_string()])
            .args(["--peer-port", &self.peer_ports[i].to_string()])
            .args(["--peers", &peers.join(",")])
            .args(self.mode.flags())
            .args(["-l", "error", "--data-dir"])
            .arg(self.data_dir(i))
            .arg("--credentials")
            .arg(self.root.path().join(format!("credentials/node-{i}")))
            // Every start has the first one's command line: a data dir that holds a log
            // ignores --init (docs/protocol.md §7.1).
            .arg("--init");
        if self.require_auth {
            command.arg("--require-auth");
        }
        command
    }

    /// Sends node `i` a signal by name (`INT`, `TERM`, `STOP`, ...).
    pub fn signal(&self, i: usize, signal: &str) {
        let child = self.processes[i].as_ref().expect("node is running");
        let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} of node {i} failed");
    }

    /// Waits for node `i` to exit, failing the test if it has not within `within`; the node
    /// is then no longer running.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.processes[i].as_mut().expect("node is running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.processes[i] = None;
                return status;
            }
            assert!(Instant::now() < deadline, "node {i} did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.processes[i].take() {
            child.kill().expect("kill -9");
            child.wait().unwrap();
        }
    }

    /// Polls node `i` with reads until it answers, failing after a deadline. A node that serves
    /// users only answers an anonymous read with "permission denied": it is up.
    pub fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = self.client_for(i, Duration::from_millis(500));
        while Instant::now() < deadline {
            if let Some(status) = self.processes[i].as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("node {i} exited during start: {status}");
            }
            let answer = client.get("__ready__");
            let denied = matches!(answer, Ok(Outcome::Rejected(RejectReason::PermissionDenied(_))));
            if matches!(answer, Ok(Outcome::NotFound | Outcome::Value { .. })) || (self.require_auth && denied) {
                return;
            }
        }
        panic!("node {i} did not answer within 30 s");
    }

    /// A client of node `i` alone (no fail-over), giving up after `timeout`.
    pub fn client_for(&self, i: usize, timeout: Duration) -> Client {
        let mut config = ClientConfig::new(vec![self.addr(i)], self.mode.client_transport());
        config.request_timeout = timeout;
        config.attempt_timeout = timeout.min(config.attempt_timeout);
        Client::new(config).unwrap()
    }

    /// Runs the dkv-client program against node `i`: (exit code, stdout).
    pub fn run_client(&self, i: usize, args: &[&str]) -> (i32, String) {
        let output = self.run_client_full(i, args);
        (output.code, output.stdout)
    }

    /// Runs the dkv-client program against node `i` in this cluster's mode, with a 15 s timeout
    /// unless `args` give one.
    pub fn run_client_full(&self, i: usize, args: &[&str]) -> ClientRun {
        let mut all = self.mode.flags().to_vec();
        let port = self.ports[i].to_string();
        all.extend(["-p", &port]);
        if !args.contains(&"--timeout") {
            all.extend(["--timeout", "15"]);
        }
        all.extend(args);
        run_client(&all)
    }

    /// Stops every node with SIGTERM and checks each exits cleanly.
    pub fn stop_all_cleanly(&mut self) {
        for child in self.processes.iter().flatten() {
            let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            assert!(status.success());
        }
        for (i, child) in self.processes.iter_mut().enumerate() {
            if let Some(mut child) = child.take() {
                let status = child.wait().unwrap();
                assert!(status.success(), "node {i} exited with {status} on SIGTERM");
            }
        }
    }
}

/// What one run of the dkv-client program did.
#[derive(Debug)]
pub struct ClientRun {
    pub code: i32,
    /// Without its final newline.
    pub stdout: String,
    pub stderr: String,
}

/// Runs the dkv-client program with exactly these arguments.
pub fn run_client(args: &[&str]) -> ClientRun {
    let output = Command::new(CLIENT).args(args).output().expect("dkv-client runs");
    ClientRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).trim_end().to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
