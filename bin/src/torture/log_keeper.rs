//! Keeps every log segment the nodes ever write, for the exactly-once check after the run.
//!
//! A node deletes its old segments once a snapshot makes them obsolete, and the exactly-once
//! check needs every record that was ever durable. So a thread polls each data dir and
//! hard-links every new segment into a folder of its own: the link keeps the file when the node
//! deletes its name, and shares the file, so it sees every later write too (the node writes
//! in place; a crash's torn tail and its truncation at restart show as they happened).
//!
//! A segment lives at least until the next snapshot is complete (a snapshot is due after
//! `Bounds::snapshot_records_min` records, 10,000 by default); polling every [`POLL_INTERVAL`] catches each by a wide margin, and a number
//! the keeper never saw is reported, not ignored. A segment number can come back (a restart
//! drops a segment holding only the start of a snapshot, and the next snapshot reuses its
//! number), so each kept file is named by its number and its inode.

use dkv_net::wal::segment_number;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One kept segment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeptSegment {
    pub number: u64,
    pub inode: u64,
    pub path: PathBuf,
}

/// The thread that keeps segments, and where it keeps them.
pub struct LogKeeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
    data_dirs: Vec<PathBuf>,
    kept_dirs: Vec<PathBuf>,
}

impl LogKeeper {
    /// Starts keeping the segments of `data_dirs` (node `i`'s in `kept_root/node-i`).
    pub fn start(data_dirs: Vec<PathBuf>, kept_root: &Path) -> io::Result<LogKeeper> {
        let kept_dirs: Vec<PathBuf> = (0..data_dirs.len()).map(|i| kept_root.join(format!("node-{i}"))).collect();
        for dir in &kept_dirs {
            fs::create_dir_all(dir)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, data_dirs, kept_dirs) = (stop.clone(), data_dirs.clone(), kept_dirs.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    keep_new_segments(&data_dirs, &kept_dirs)?;
                    std::thread::sleep(POLL_INTERVAL);
                }
                Ok(())
            })
        };
        Ok(LogKeeper { stop, thread: Some(thread), data_dirs, kept_dirs })
    }

    /// Stops the thread, takes one last look (the nodes are stopped by now), and returns each
    /// node's kept segments in log order.
    pub fn finish(mut self) -> io::Result<Vec<Vec<KeptSegment>>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| io::Error::other("the log keeper thread panicked"))??;
        }
        keep_new_segments(&self.data_dirs, &self.kept_dirs)?;
        self.kept_dirs.iter().map(|dir| kept_segments(dir)).collect()
    }
}

impl Drop for LogKeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Segment numbers missing from `segments`, which should run from 1 without a gap.
pub fn missing_numbers(segments: &[KeptSegment]) -> Vec<u64> {
    let seen: BTreeSet<u64> = segments.iter().map(|s| s.number).collect();
    let last = seen.last().copied().unwrap_or(0);
    (1..=last).filter(|n| !seen.contains(n)).collect()
}

fn keep_new_segments(data_dirs: &[PathBuf], kept_dirs: &[PathBuf]) -> io::Result<()> {
    for (data, kept) in data_dirs.iter().zip(kept_dirs) {
        let entries = match fs::read_dir(data) {
            Ok(entries) => entries,
            // Not made yet: the node has not started.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(number) = entry.file_name().to_str().and_then(segment_number) else { continue };
            let inode = match entry.metadata() {
                Ok(metadata) => metadata.ino(),
                // Deleted since the directory was listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match fs::hard_link(entry.path(), kept.join(kept_name(number, inode))) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn kept_name(number: u64, inode: u64) -> String {
    format!("{number:020}-{inode}.kept")
}

/// The segments kept in `dir`, in log order: by number, and a reused number's files in the
/// order they were written (the older file was last written before the newer one was made).
fn kept_segments(dir: &Path) -> io::Result<Vec<KeptSegment>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((number, inode)) = name.to_str().and_then(|n| n.strip_suffix(".kept")).and_then(|n| n.split_once('-'))
        else {
            continue;
        };
        let (Ok(number), Ok(inode)) = (number.parse(), inode.parse()) else { continue };
        let modified = entry.metadata()?.modified()?;
        segments.push((number, modified, KeptSegment { number, inode, path: entry.path() }));
    }
    segments.sort_by_key(|s| (s.0, s.1));
    Ok(segments.into_iter().map(|(_, _, s)| s).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_file(dir: &Path, number: u64, content: &[u8]) {
        fs::write(dir.join(format!("{number:020}.wal")), content).unwrap();
    }

    /// A segment the node deleted is still kept, a reused number keeps both files in the order
    /// they were written, and a number never seen is reported missing.
    #[test]
    fn deleted_and_reused_segments_are_kept_and_gaps_reported() {
        let root = tempfile::tempdir().unwrap();
        let (data, kept) = (root.path().join("data"), root.path().join("kept"));
        fs::create_dir_all(&data).unwrap();
        fs::create_dir_all(&kept).unwrap();
        let keep = || keep_new_segments(std::slice::from_ref(&data), std::slice::from_ref(&kept)).unwrap();
        segment_file(&data, 1, b"first");
        segment_file(&data, 2, b"old two");
        keep();
        fs::remove_file(data.join(format!("{:020}.wal", 2))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        segment_file(&data, 2, b"new two");
        keep();
        fs::remove_file(data.join(format!("{:020}.wal", 1))).unwrap();
        keep();
        let segments = kept_segments(&kept).unwrap();
        let contents: Vec<Vec<u8>> = segments.iter().map(|s| fs::read(&s.path).unwrap()).collect();
        assert_eq!(contents, [b"first".to_vec(), b"old two".to_vec(), b"new two".to_vec()]);
        assert!(missing_numbers(&segments).is_empty());
        segment_file(&data, 4, b"four");
        keep();
        assert_eq!(missing_numbers(&kept_segments(&kept).unwrap()), [3]);
    }
}
