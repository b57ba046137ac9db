//! A node whose disk fails under it, for real: its data dir is on a filesystem the test mounts
//! itself, then breaks while clients write — a small tmpfs filled up (writes fail with
//! ENOSPC), or an ext4 image on a loop device shut down with the ioctl xfstests uses (every
//! write and fsync fails with EIO, as on a dying disk). The node must stop with a clear error
//! rather than acknowledge a write it could not make durable; once the disk is repaired it
//! restarts from an intact log, and every acknowledged write is on every node. Needs
//! permission to mount (root or CAP_SYS_ADMIN); without it each test says so and skips.

mod common;

use common::{Mode, ProcessCluster};
use dkv_core::Outcome;
use dkv_net::ClientError;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tmpfs: enough for the node's first segment (preallocated in 4 MiB steps) and a little.
const TMPFS_BYTES: u64 = 16 << 20;
/// The ext4 image: room for the journal and a few segments.
const EXT4_BYTES: u64 = 64 << 20;
/// Values large enough that the node's log outgrows its preallocated segment within a few
/// hundred writes.
const VALUE_BYTES: usize = 32 << 10;
/// Writes made, and acknowledged, while the disk still works.
const WRITES_BEFORE_FAILURE: usize = 20;
/// Writes tried before the test gives up on the node ever stopping.
const WRITES_MAX: usize = 3_000;
/// `EXT4_IOC_SHUTDOWN` (`_IOR('X', 125, __u32)`, the same number as XFS's "going down").
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
/// Shut down without flushing the journal: like pulling the disk.
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// Runs a mount-related command, or says why it failed.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

fn mount_ext4(image: &Path, mountpoint: &Path) -> Result<(), String> {
    run(Command::new("mount").args(["-t", "ext4", "-o", "loop"]).arg(image).arg(mountpoint))
}

/// A filesystem mounted on a fresh temporary directory, unmounted when dropped.
struct TestDisk {
    mountpoint: tempfile::TempDir,
    /// The ext4 image on a loop device, or none for a tmpfs.
    image: Option<(tempfile::TempDir, PathBuf)>,
}

impl TestDisk {
    fn tmpfs(bytes: u64) -> Result<TestDisk, String> {
        let mountpoint = tempfile::tempdir().map_err(|e| e.to_string())?;
        let size = format!("size={bytes}");
        run(Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(mountpoint.path()))?;
        Ok(TestDisk { mountpoint, image: None })
    }

    fn ext4(bytes: u64) -> Result<TestDisk, String> {
        let image_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = image_dir.path().join("disk.img");
        File::create(&image).and_then(|f| f.set_len(bytes)).map_err(|e| e.to_string())?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        let mountpoint = tempfile::tempdir().map_err(|e| e.to_string())?;
        mount_ext4(&image, mountpoint.path())?;
        Ok(TestDisk { mountpoint, image: Some((image_dir, image)) })
    }

    fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    /// Every write and fsync on the filesystem fails with EIO from now on, until it is
    /// unmounted and mounted again.
    fn shut_down(&self) {
        let dir = File::open(self.path()).unwrap();
        let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: the ioctl reads one u32 through a pointer to a live local.
        let result = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flags as *const u32) };
        assert_eq!(result, 0, "EXT4_IOC_SHUTDOWN failed: {}", std::io::Error::last_os_error());
    }

    /// The disk comes back: the ext4 image is mounted again (its journal replayed).
    fn remount(&self) {
        let (_, image) = self.image.as_ref().expect("an ext4 image");
        run(Command::new("umount").arg(self.path())).unwrap();
        mount_ext4(image, self.path()).unwrap();
    }
}

impl Drop for TestDisk {
    fn drop(&mut self) {
        // Lazy: a process the test failed to stop may still hold files open there.
        if let Err(error) = run(Command::new("umount").arg("-l").arg(self.path())) {
            eprintln!("could not unmount the test's filesystem: {error}");
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

/// Moves node `i`'s data dir (node stopped) onto `disk`, leaving a symlink where it was.
fn move_data_dir(cluster: &ProcessCluster, i: usize, disk: &TestDisk) {
    let (old, new) = (cluster.data_dir(i), disk.path().join(format!("node-{i}")));
    fs::create_dir(&new).unwrap();
    for entry in fs::read_dir(&old).unwrap() {
        let entry = entry.unwrap();
        let copy = new.join(entry.file_name());
        fs::copy(entry.path(), &copy).unwrap();
        // Durable before the disk is shut down: a file the node only reads (its IDENTITY)
        // would otherwise come back empty, as a real disk would leave an unsynced copy.
        File::open(&copy).unwrap().sync_all().unwrap();
    }
    File::open(&new).unwrap().sync_all().unwrap();
    fs::remove_dir_all(&old).unwrap();
    std::os::unix::fs::symlink(&new, &old).unwrap();
}

/// Node 0 runs on `disk`; `fail` breaks the disk while clients write through every node. Node
/// 0 must exit with an error status and an error that says `words`, having acknowledged
/// nothing it could not make durable; after `repair` it restarts from its log and commits
/// again, and every acknowledged write is on every node.
fn node_on_failing_disk(disk: TestDisk, fail: impl FnOnce(&TestDisk), repair: impl FnOnce(&TestDisk), words: &[&str]) {
    // Dropped before the disk: the processes go first.
    let mut cluster = ProcessCluster::start(Mode::Tcp);
    cluster.signal(0, "TERM");
    assert!(cluster.wait_exit(0, Duration::from_secs(10)).success());
    move_data_dir(&cluster, 0, &disk);
    let stderr_path = cluster.data_dir(1).with_file_name("node-0.stderr");
    let stderr = File::create(&stderr_path).unwrap();
    let child = cluster.node_command(0).stdout(Stdio::null()).stderr(stderr).spawn().expect("dkv-server starts");
    cluster.processes[0] = Some(child);
    cluster.wait_ready(0);

    // Unique keys through every node in turn; the disk fails after the first few; on until
    // node 0 stops.
    let mut fail = Some(fail);
    let mut clients: Vec<_> = (0..3).map(|i| cluster.client_for(i, Duration::from_secs(3))).collect();
    let mut log: Vec<(String, Vec<u8>, Option<bool>)> = Vec::new();
    let started = Instant::now();
    let mut running_when_the_disk_failed = false;
    for i in 0..WRITES_MAX {
        if i == WRITES_BEFORE_FAILURE {
            // The node may stop at once after this (a lazy sync of the last write's records
            // meets the failed disk): whether it ran until now is asked first.
            running_when_the_disk_failed = cluster.processes[0].as_mut().unwrap().try_wait().unwrap().is_none();
            fail.take().expect("the disk fails once")(&disk);
        }
        if cluster.processes[0].as_mut().unwrap().try_wait().unwrap().is_some() {
            break;
        }
        let (key, value) = (format!("k{i}"), vec![b'a' + (i % 26) as u8; VALUE_BYTES]);
        let acknowledged = match clients[i % 3].put(key.clone(), value.clone()) {
            Ok(Outcome::Committed(_)) => Some(true),
            Ok(other) => panic!("{key}: a put can only commit, got {other:?}"),
            Err(ClientError::Unreachable { .. } | ClientError::Timeout { .. } | ClientError::NoOutcome { .. }) => None,
            Err(error) => panic!("{key}: a put fails only by having no outcome, got: {error}"),
        };
        log.push((key, value, acknowledged));
    }
    assert!(log.len() < WRITES_MAX, "node 0 was still running after {WRITES_MAX} writes on a failed disk");
    let status = cluster.wait_exit(0, Duration::from_secs(10));
    let acknowledged = log.iter().filter(|(_, _, ack)| *ack == Some(true)).count();
    eprintln!("node 0 stopped after {} writes ({acknowledged} acknowledged) in {:?}", log.len(), started.elapsed());
    assert!(!status.success(), "node 0 exited with {status} on a failed disk; an error status was expected");
    assert!(
        running_when_the_disk_failed && log.len() >= WRITES_BEFORE_FAILURE,
        "node 0 stopped before its disk failed"
    );
    let before: Vec<_> = log[..WRITES_BEFORE_FAILURE].iter().filter(|(_, _, ack)| *ack != Some(true)).collect();
    assert!(before.is_empty(), "writes before the disk failed were not acknowledged: {:?}", before.len());
    let said = fs::read_to_string(&stderr_path).unwrap();
    eprintln!("node 0 said: {said}");
    for words in words.iter().chain(&["node-0", "Free space or repair the disk"]) {
        assert!(said.contains(words), "node 0's error does not say {words:?}:\n{said}");
    }

    // The disk repaired: node 0 recovers its log (a damaged log would stop it), commits again.
    repair(&disk);
    cluster.start_node(0);
    cluster.wait_ready(0);
    for (node, client) in clients.iter_mut().enumerate() {
        let (key, value) = (format!("after-restart-via-{node}"), b"v".to_vec());
        let outcome = client.put(key.clone(), value.clone());
        assert!(matches!(outcome, Ok(Outcome::Committed(_))), "{key} after the restart: {outcome:?}");
        log.push((key, value, Some(true)));
    }
    let mut readers: Vec<_> = (0..3).map(|i| cluster.client_for(i, Duration::from_secs(15))).collect();
    for (key, value, ack) in &log {
        let answers: Vec<Outcome> = readers.iter_mut().map(|c| c.get(key.clone()).unwrap()).collect();
        if *ack == Some(true) {
            for (node, answer) in answers.iter().enumerate() {
                assert!(answer.found() == Some(value), "acknowledged {key} is not on node {node}");
            }
        } else {
            assert!(answers.iter().all(|a| a == &answers[0]), "nodes disagree on {key}");
            assert!(matches!(&answers[0], Outcome::NotFound) || answers[0].found() == Some(value));
        }
    }
    cluster.stop_all_cleanly();
}

/// A full disk (ENOSPC): a filler file takes the space the node's log was about to grow into.
#[test]
fn node_with_a_full_disk_stops_with_a_clear_error_and_loses_nothing_acknowledged() {
    let disk = match TestDisk::tmpfs(TMPFS_BYTES) {
        Ok(disk) => disk,
        Err(reason) => return eprintln!("SKIPPED: cannot mount a tmpfs ({reason}); run as root to test a full disk"),
    };
    let filler = disk.path().join("filler");
    node_on_failing_disk(
        disk,
        |_| assert!(fill(&filler) > 0, "the tmpfs was full before the writes began"),
        |_| fs::remove_file(&filler).unwrap(),
        &["No space left on device", "the disk may be full"],
    );
}

/// A dying disk (EIO on every write and fsync): the node's ext4 filesystem is shut down under
/// it, then mounted again.
#[test]
fn node_whose_disk_fails_with_eio_stops_with_a_clear_error_and_loses_nothing_acknowledged() {
    let disk = match TestDisk::ext4(EXT4_BYTES) {
        Ok(disk) => disk,
        Err(reason) => {
            return eprintln!(
                "SKIPPED: cannot mount an ext4 image ({reason}); run as root with loop devices to test EIO"
            );
        }
    };
    node_on_failing_disk(disk, TestDisk::shut_down, TestDisk::remount, &["Input/output error"]);
}
