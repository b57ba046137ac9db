//! Compaction, the one rule for dropping records from a log: a snapshot is a run of records,
//! [`Record::SnapshotBeginInEpoch`] (an earlier build's [`Record::SnapshotBegin`]) to [`Record::SnapshotEnd`], and once its end is durable every record
//! before its begin is unnecessary and may go. Not before: recovery ignores a snapshot that a
//! crash cut short and rebuilds from the records before it.
//!
//! Drivers apply the rule through this module rather than on their own: [`push_durable`] for a
//! log held as a list of records (the simulator's disks, test harnesses), [`Compaction`] for a
//! log stored in pieces, such as dkv-net's segment files.

use crate::record::Record;

/// Appends `record`, just made durable, to `log`, and drops every record it frees. A snapshot
/// cut short stays, as it would on a real disk, until a later one ends.
pub fn push_durable(log: &mut Vec<Record>, record: Record) {
    let ends_snapshot = matches!(record, Record::SnapshotEnd { .. });
    log.push(record);
    if ends_snapshot {
        let begin = log.iter().rposition(Record::begins_snapshot);
        log.drain(..begin.expect("the core persists a snapshot's begin before its end"));
    }
}

/// The rule for a log stored in pieces at ordered positions (dkv-net: segment numbers), for a
/// writer that makes records durable in batches. Shown each record as it is appended, with the
/// position it is written at, it says after each batch is durable before which position
/// everything may be deleted.
#[derive(Clone, Debug, Default)]
pub struct Compaction {
    /// Where the snapshot being appended begins, until its end is appended.
    open_snapshot: Option<u64>,
    /// Everything before this position is freed once the records appended so far are durable.
    frees_before: Option<u64>,
}

impl Compaction {
    /// Notes `record`, appended at `position` (never lower than any before it).
    pub fn appended(&mut self, record: &Record, position: u64) {
        match record {
            r if r.begins_snapshot() => self.open_snapshot = Some(position),
            Record::SnapshotEnd { .. } => {
                let begin = self.open_snapshot.take().expect("the core persists a snapshot's begin before its end");
                self.frees_before = self.frees_before.max(Some(begin));
            }
            _ => {}
        }
    }

    /// Every record appended so far is durable: returns, once, the position before which
    /// everything may now be deleted. Nothing is freed while a snapshot is being appended: a
    /// writer keeps the pieces before it until it ends, in case a crash cuts it short.
    pub fn durable(&mut self) -> Option<u64> {
        if self.open_snapshot.is_some() {
            return None;
        }
        self.frees_before.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Snapshot;

    fn boot(incarnation: u64) -> Record {
        Record::Boot { incarnation }
    }

    fn snapshot(incarnation: u64) -> Vec<Record> {
        Snapshot { incarnation, ..Snapshot::default() }.into_records()
    }

    /// A durable snapshot end drops every record before its begin; a snapshot cut short drops
    /// nothing.
    #[test]
    fn durable_snapshot_end_frees_records_before_its_begin() {
        let mut log = Vec::new();
        push_durable(&mut log, boot(1));
        let first = snapshot(2);
        for record in first.iter().cloned() {
            push_durable(&mut log, record);
        }
        push_durable(&mut log, boot(3));
        let mut expected = first.clone();
        expected.push(boot(3));
        assert_eq!(log, expected);
        let second = snapshot(4);
        for record in second[..second.len() - 1].iter().cloned() {
            push_durable(&mut log, record);
        }
        expected.extend_from_slice(&second[..second.len() - 1]);
        assert_eq!(log, expected, "an unfinished snapshot frees nothing");
    }

    /// Pieces are freed after the batch holding the snapshot's end is durable, and not while a
    /// later snapshot is being appended.
    #[test]
    fn pieces_before_a_durable_snapshot_are_freed_once() {
        let mut compaction = Compaction::default();
        compaction.appended(&boot(1), 1);
        assert_eq!(compaction.durable(), None);
        let first = snapshot(2);
        for record in &first {
            compaction.appended(record, 2);
        }
        let second = snapshot(3);
        compaction.appended(&second[0], 3);
        assert_eq!(compaction.durable(), None, "a snapshot is being appended");
        for record in &second[1..] {
            compaction.appended(record, 3);
        }
        assert_eq!(compaction.durable(), Some(3));
        assert_eq!(compaction.durable(), None, "freed once");
    }
}
