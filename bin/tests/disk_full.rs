//! A node whose disk fills up, for real: its data dir is on a small tmpfs the test mounts
//! itself, and a filler file takes the rest of the space while clients write. The node must
//! stop with a clear error rather than acknowledge a write it could not make durable; once
//! space is freed it restarts from an intact log, and every acknowledged write is on every
//! node. Needs permission to mount (root or CAP_SYS_ADMIN); without it the test says so and
//! skips.

mod common;

use common::{Mode, ProcessCluster};
use dkv_core::Outcome;
use dkv_net::ClientError;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tmpfs holding the node's data dir: enough for its first segment (preallocated in
/// 4 MiB steps) and a little more.
const TMPFS_BYTES: u64 = 16 << 20;
/// Values large enough that the node's log outgrows its preallocated segment within a few
/// hundred writes.
const VALUE_BYTES: usize = 32 << 10;
/// Writes tried before the test gives up on the disk ever filling.
const WRITES_MAX: usize = 3_000;

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`, or says why it cannot.
    fn mount(bytes: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process the test failed to stop may still hold files open there.
        let unmounted = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        if !matches!(unmounted, Ok(status) if status.success()) {
            eprintln!("could not unmount the tmpfs at {}", self.dir.path().display());
        }
    }
}

/// Writes zeros to `path` until the filesystem is full; returns how many bytes fit.
fn fill(path: &Path) -> u64 {
    let mut file = File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    for _ in 0..=TMPFS_BYTES / chunk.len() as u64 + 1 {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    // Pages the last chunk could not take: fill them one small write at a time.
    while let Ok(n @ 1..) = file.write(&chunk[..4096]) {
        written += n as u64;
    }
    written
}

/// Moves node `i`'s data dir (node stopped) onto `tmpfs`, leaving a symlink where it was.
fn move_data_dir(cluster: &ProcessCluster, i: usize, tmpfs: &Tmpfs) -> PathBuf {
    let (old, new) = (cluster.data_dir(i), tmpfs.path().join(format!("node-{i}")));
    fs::create_dir(&new).unwrap();
    for entry in fs::read_dir(&old).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), new.join(entry.file_name())).unwrap();
    }
    fs::remove_dir_all(&old).unwrap();
    std::os::unix::fs::symlink(&new, &old).unwrap();
    new
}

/// A node's disk fills while clients write through every node: the node exits with an error
/// naming the full disk and what it does about it, no write it could not make durable was
/// acknowledged, and after space is freed it restarts from an intact log and commits again.
#[test]
fn node_with_a_full_disk_stops_with_a_clear_error_and_loses_nothing_acknowledged() {
    let tmpfs = match Tmpfs::mount(TMPFS_BYTES) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs ({reason}); run as root (or with CAP_SYS_ADMIN) to test a full disk"
            );
            return;
        }
    };
    // Dropped before the tmpfs: the processes go first.
    let mut cluster = ProcessCluster::start(Mode::Tcp);
    cluster.signal(0, "TERM");
    assert!(cluster.wait_exit(0, Duration::from_secs(10)).success());
    move_data_dir(&cluster, 0, &tmpfs);
    let stderr_path = cluster.data_dir(1).with_file_name("node-0.stderr");
    let stderr = File::create(&stderr_path).unwrap();
    let child = cluster.node_command(0).stdout(Stdio::null()).stderr(stderr).spawn().expect("dkv-server starts");
    cluster.processes[0] = Some(child);
    cluster.wait_ready(0);
    let filler = tmpfs.path().join("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "the filler took no space: the tmpfs was full before the writes began");

    // Unique keys through every node in turn, until node 0 stops.
    let mut clients: Vec<_> = (0..3).map(|i| cluster.client_for(i, Duration::from_secs(3))).collect();
    let mut log: Vec<(String, Vec<u8>, Option<bool>)> = Vec::new();
    let started = Instant::now();
    for i in 0..WRITES_MAX {
        if cluster.processes[0].as_mut().unwrap().try_wait().unwrap().is_some() {
            break;
        }
        let (key, value) = (format!("k{i}"), vec![b'a' + (i % 26) as u8; VALUE_BYTES]);
        let acknowledged = match clients[i % 3].put(key.clone(), value.clone()) {
            Ok(Outcome::Committed) => Some(true),
            Ok(other) => panic!("{key}: a put can only commit, got {other:?}"),
            Err(ClientError::Unreachable { .. } | ClientError::Timeout { .. } | ClientError::NoOutcome { .. }) => None,
            Err(error) => panic!("{key}: a put fails only by having no outcome, got: {error}"),
        };
        log.push((key, value, acknowledged));
    }
    assert!(
        log.len() < WRITES_MAX,
        "node 0 was still running after {WRITES_MAX} writes of {VALUE_BYTES} bytes on a full {TMPFS_BYTES}-byte disk"
    );
    let status = cluster.wait_exit(0, Duration::from_secs(10));
    let acknowledged = log.iter().filter(|(_, _, ack)| *ack == Some(true)).count();
    eprintln!(
        "node 0 stopped after {} writes ({acknowledged} acknowledged) in {:?}, {filled} bytes of filler",
        log.len(),
        started.elapsed()
    );
    assert!(!status.success(), "node 0 exited with {status} on a full disk; an error status was expected");
    let said = fs::read_to_string(&stderr_path).unwrap();
    eprintln!("node 0 said: {said}");
    for words in ["No space left on device", "the disk may be full", "node-0", "Free space"] {
        assert!(said.contains(words), "node 0's error does not say {words:?}:\n{said}");
    }
    assert!(acknowledged > 0, "no write was acknowledged before the disk filled");

    // Space freed: node 0 recovers its log (a damaged log would stop it) and commits again.
    fs::remove_file(&filler).unwrap();
    cluster.start_node(0);
    cluster.wait_ready(0);
    for node in 0..3 {
        let (key, value) = (format!("after-restart-via-{node}"), b"v".to_vec());
        let outcome = clients[node].put(key.clone(), value.clone());
        assert!(matches!(outcome, Ok(Outcome::Committed)), "{key} after the restart: {outcome:?}");
        log.push((key, value, Some(true)));
    }
    let mut readers: Vec<_> = (0..3).map(|i| cluster.client_for(i, Duration::from_secs(15))).collect();
    for (key, value, ack) in &log {
        let answers: Vec<Outcome> = readers.iter_mut().map(|c| c.get(key.clone()).unwrap()).collect();
        if *ack == Some(true) {
            for (node, answer) in answers.iter().enumerate() {
                assert!(*answer == Outcome::Value(value.clone()), "acknowledged {key} is not on node {node}");
            }
        } else {
            assert!(answers.iter().all(|a| a == &answers[0]), "nodes disagree on {key}");
            assert!(matches!(&answers[0], Outcome::NotFound) || answers[0] == Outcome::Value(value.clone()));
        }
    }
    cluster.stop_all_cleanly();
    drop(cluster);
    drop(tmpfs);
}
