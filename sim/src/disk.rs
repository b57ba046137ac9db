//! A simulated disk per node. Records are written in order and become durable when a
//! simulated fsync completes. A crash loses what was not yet durable — except that an fsync
//! may have finished unreported, and the record being written may be torn halfway, have a bit
//! flipped, or be followed by garbage. Recovery reads the bytes back as a real server reads its
//! last segment: the durable records, the damaged tail if any, then the zeros that
//! preallocation leaves ahead of them, all through the same codec functions
//! ([`wal::decode_records`], then [`wal::classify_damage`]) that dkv-net uses.
//!
//! Damage to a synced record (a bit flipped on the medium after its fsync) is drawn where a
//! valid record follows it: the reader must then refuse the log, never skip the record. A flip
//! in the *last* synced record has nothing valid after it, so the reader cuts it: it must then
//! report the cut as possible damage to a synced record (`CutRecord::WholeButDamaged`), never as
//! a torn write, since an acknowledged write is gone and the node must catch up from the other
//! replicas (issue 12); [`Disk::recover`] fails, and the world reports a violation, if it does
//! not. The swarm draws that case only for runs whose protocol is expected to survive it (a
//! long absence with a damaged tail, [`Disk::damage_last_synced`]).

use dkv_core::codec::wal::{CutRecord, CutTail};
use dkv_core::codec::{WalEnd, wal};
use dkv_core::{Lsn, Record, compaction};
use thiserror::Error;

/// How far ahead of its last write the simulated segment is zero-filled, each time a write runs
/// past the zeros. dkv-net uses the same rule with a far larger step; a page keeps every
/// simulated restart cheap while still leaving zeros after the records, so every restart of a
/// node that has written anything reads a zero-filled tail, as a real server does.
const PREALLOCATE_BYTES: usize = 4096;

/// What a crash does to the bytes on the disk, besides losing the records not yet synced.
/// Fractions (in [0, 1]) pick a place, so the world draws them without knowing the records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrashDamage {
    /// The record being written is cut after this fraction of its bytes.
    pub tear_at: Option<f64>,
    /// A bit of the record being written, this fraction into it, is flipped (and the record
    /// is written whole unless it is also torn).
    pub flip_unsynced: Option<f64>,
    /// Bytes left after the last record or the torn write (a sector the crash left half
    /// written): never all zeros.
    pub garbage: Vec<u8>,
    /// A bit of a synced record with a valid record after it is flipped: this fraction into
    /// the records that qualify, and this fraction into the record's bits.
    pub flip_synced: Option<(f64, f64)>,
}

/// Why the disk could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecoverError {
    /// The reader refused the log: damage with valid records after it.
    #[error("log corrupt at byte {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
    /// The reader accepted a log, but not the records that were durable.
    #[error("log scan found {found} records, {durable} were durable")]
    WrongRecords { found: usize, durable: usize },
    /// The reader cut a synced record damaged on the medium as if a crash had torn its write
    /// (`cut`): the node would go on without a record that may have been acknowledged.
    #[error("the last synced record, damaged on the medium, was cut as {cut:?}: taken for a torn write")]
    DamageReadAsTorn { cut: Option<CutTail> },
}

/// What [`Disk::recover`] read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovered {
    pub records: Vec<Record>,
    /// A damaged tail (torn write, flipped bit in the record being written, garbage) was found
    /// and truncated.
    pub torn: bool,
    /// A synced record that the truncation took with it (its bit was flipped on the medium, see
    /// [`Disk::damage_last_synced`]): gone from this log for good.
    pub lost_synced: Option<Record>,
}

#[derive(Default)]
pub struct Disk {
    /// Durable records (structured, to avoid encoding on every write).
    durable: Vec<Record>,
    /// Bytes after the durable ones that are no record: a torn or damaged write, garbage.
    torn_tail: Vec<u8>,
    /// A bit flipped in a synced record: (index into `durable`, bit index into its encoding).
    /// The operator's backup is the log without it ([`Disk::restore_backup`]).
    flipped: Option<(usize, usize)>,
    /// A bit flipped in the last synced record (bit index into its encoding): nothing valid
    /// follows it, so it is cut, and must be reported as possible damage.
    last_flipped: Option<usize>,
    /// Records are encoded as builds before the length check wrote them (a test of the check).
    legacy_encoding: bool,
    pub pending: Vec<(Lsn, Record)>,
    /// An fsync is in flight covering records up to this lsn.
    pub sync_in_flight: Option<Lsn>,
    /// The last pending record the node waits on: an fsync starts at once.
    pub prompt: Option<Lsn>,
    /// Only records that may wait are pending: an fsync starts at this (global) time unless a
    /// prompt record starts one sooner.
    pub lazy_sync_at: Option<u64>,
}

impl Disk {
    /// Appends a record the node numbered `lsn`; `prompt` if the node waits on it (see
    /// `dkv_core::Output::Persist`).
    pub fn append(&mut self, lsn: Lsn, record: Record, prompt: bool) {
        self.pending.push((lsn, record));
        if prompt {
            self.prompt = Some(lsn);
        }
    }

    /// Makes every pending record up to `through` durable, showing each to `observe`.
    pub fn sync(&mut self, through: Lsn, observe: &mut dyn FnMut(&Record)) {
        let n = self.pending.iter().take_while(|(lsn, _)| *lsn <= through).count();
        for (_, record) in self.pending.drain(..n) {
            observe(&record);
            compaction::push_durable(&mut self.durable, record);
        }
        if self.prompt.is_some_and(|lsn| lsn <= through) {
            self.prompt = None;
        }
        self.torn_tail.clear();
    }

    /// A crash: the first `survivors` pending records made it to disk unreported (each shown
    /// to `observe`), and `damage` says what else happened to the bytes.
    pub fn crash(&mut self, survivors: usize, damage: &CrashDamage, observe: &mut dyn FnMut(&Record)) {
        let pending = std::mem::take(&mut self.pending);
        self.prompt = None;
        let mut rest = pending.into_iter();
        for (_, record) in rest.by_ref().take(survivors) {
            observe(&record);
            compaction::push_durable(&mut self.durable, record);
        }
        self.torn_tail.clear();
        let torn = rest.next().map(|(_, record)| record);
        if let Some(record) = &torn {
            let mut bytes = wal::encode_to_vec(record);
            // The write is torn before its last non-zero byte: written over zeros, a record
            // whose missing end is zeros would read back whole, and this record is lost.
            let last_nonzero = bytes.iter().rposition(|&b| b != 0).expect("a record's length field is never zero");
            let cut = match damage.tear_at {
                Some(fraction) => ((bytes.len() as f64 * fraction) as usize).min(last_nonzero),
                None if damage.flip_unsynced.is_some() => bytes.len(),
                None => 0,
            };
            if let Some(fraction) = damage.flip_unsynced {
                let bit = ((bytes.len() * 8) as f64 * fraction) as usize % (bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            bytes.truncate(cut);
            self.torn_tail = bytes;
        }
        self.torn_tail.extend_from_slice(&damage.garbage);
        // Garbage that supplies exactly the bytes the tear left out (say the end byte alone was
        // missing, and the garbage starts with it: one time in 256) leaves the record whole on
        // the medium, as if its write had landed: it survived the crash unreported.
        if let Some(record) = torn {
            let whole = wal::encode_to_vec(&record);
            if self.torn_tail.starts_with(&whole) {
                self.torn_tail.drain(..whole.len());
                observe(&record);
                compaction::push_durable(&mut self.durable, record);
            }
        }
        // Only records with a valid record after them qualify: see the module's comment.
        if let (Some((which, bit)), Some(qualifying)) = (damage.flip_synced, self.durable.len().checked_sub(1)) {
            if qualifying > 0 {
                let index = ((qualifying as f64 * which) as usize).min(qualifying - 1);
                let bits = wal::encode_to_vec(&self.durable[index]).len() * 8;
                self.flipped = Some((index, ((bits as f64 * bit) as usize).min(bits - 1)));
            }
        }
        self.sync_in_flight = None;
        self.lazy_sync_at = None;
    }

    /// Flips a bit, this fraction into its bits, in the last synced record: damage on the
    /// medium with nothing valid after it, so recovery cuts an acknowledged record, and must
    /// report it as possible damage ([`Disk::recover`] checks). Says whether there was a record
    /// to damage.
    pub fn damage_last_synced(&mut self, bit: f64) -> bool {
        let Some(last) = self.durable.last() else { return false };
        let bits = wal::encode_to_vec(last).len() * 8;
        self.last_flipped = Some(((bits as f64 * bit) as usize).min(bits - 1));
        true
    }

    /// The durable records.
    pub fn durable_records(&self) -> &[Record] {
        &self.durable
    }

    /// The durable records a member streams in a state transfer, as dkv-net's
    /// `Wal::transfer_range` gives them: without a snapshot whose end is not durable, whether
    /// it is still being appended or a crash cut it short (dkv-net deletes such a snapshot's
    /// segment at the next start; this list keeps it until a later snapshot ends).
    pub fn transfer_records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.durable.len());
        // Where the snapshot being read began in `out`, until its end.
        let mut open: Option<usize> = None;
        for record in &self.durable {
            let in_snapshot_body = record.in_snapshot_body() || matches!(record, Record::SnapshotEnd { .. });
            if let Some(begin) = open
                && (record.begins_snapshot() || !in_snapshot_body)
            {
                out.truncate(begin);
                open = None;
            }
            if record.begins_snapshot() {
                open = Some(out.len());
            } else if matches!(record, Record::SnapshotEnd { .. }) {
                open = None;
            }
            out.push(record.clone());
        }
        if let Some(begin) = open {
            out.truncate(begin);
        }
        out
    }

    /// A catch-up replaced the log whole with `records`, synced (the staging file renamed in).
    pub fn replace(&mut self, records: Vec<Record>) {
        *self = Disk { durable: records, ..Disk::default() };
    }

    /// The data dir is lost: the node restarts with nothing.
    pub fn lose_everything(&mut self) {
        *self = Disk::default();
    }

    /// Whether a synced record is damaged (recovery must refuse the log until the operator
    /// restores it).
    pub fn media_damaged(&self) -> bool {
        self.flipped.is_some()
    }

    /// The operator restores the log from a backup taken before the damage: every synced
    /// record as it was written.
    pub fn restore_backup(&mut self) {
        self.flipped = None;
        self.last_flipped = None;
    }

    /// Reads the log back as a real server would: its segment's bytes (records, damaged tail,
    /// zeros) through the codec, then truncates a damaged tail. A damaged synced record is first
    /// replaced by a durable [`Record::Unvouched`], as dkv-net writes it over the damage before
    /// the cut (docs/protocol.md §4), unless `mark_damage` is off (the canary
    /// `cut-before-unvouched`): the record then goes with nothing in its place.
    pub fn recover(&mut self, mark_damage: bool) -> Result<Recovered, RecoverError> {
        let bytes = self.segment_bytes();
        let scan = wal::scan(&bytes);
        let cut = scan.end.cut_tail();
        if self.last_flipped.is_some() && !cut.is_some_and(|cut| cut.record == CutRecord::WholeButDamaged) {
            return Err(RecoverError::DamageReadAsTorn { cut });
        }
        let torn = match scan.end {
            WalEnd::Clean | WalEnd::Zeros => false,
            WalEnd::Torn { .. } => true,
            WalEnd::Corrupt { offset, error, .. } => {
                return Err(RecoverError::Corrupt { offset, reason: error.to_string() });
            }
        };
        // A damaged last record is cut off with the tail: it is the one record expected missing.
        let expected = self.durable.len() - usize::from(self.last_flipped.is_some());
        if scan.records.len() != expected {
            return Err(RecoverError::WrongRecords { found: scan.records.len(), durable: self.durable.len() });
        }
        let lost_synced = self.last_flipped.take().and_then(|_| self.durable.pop());
        self.torn_tail.clear();
        let mut records = scan.records;
        if lost_synced.is_some() && mark_damage {
            self.durable.push(Record::Unvouched);
            records.push(Record::Unvouched);
        }
        Ok(Recovered { records, torn, lost_synced })
    }

    /// The log's bytes as dkv-net leaves its last segment: each write (here, each record)
    /// first zero-fills [`PREALLOCATE_BYTES`] past its end if it runs past the zeros, then
    /// lands over them; the torn write, if any, is the last one. dkv-net starts a segment at
    /// each snapshot and trims the one before; the simulated log is one segment, which reads
    /// back the same, since only the last segment can end in zeros or a torn write.
    fn segment_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut preallocated = 0;
        let mut written = |end: usize| {
            if end > preallocated {
                preallocated = end + PREALLOCATE_BYTES;
            }
        };
        for (index, record) in self.durable.iter().enumerate() {
            let start = bytes.len();
            if self.legacy_encoding {
                wal::encode_legacy(record, &mut bytes);
            } else {
                wal::encode(record, &mut bytes);
            }
            if let Some((_, bit)) = self.flipped.filter(|&(at, _)| at == index) {
                bytes[start + bit / 8] ^= 1 << (bit % 8);
            }
            if let Some(bit) = self.last_flipped.filter(|_| index + 1 == self.durable.len()) {
                bytes[start + bit / 8] ^= 1 << (bit % 8);
            }
            written(bytes.len());
        }
        bytes.extend_from_slice(&self.torn_tail);
        written(bytes.len());
        bytes.resize(preallocated, 0);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(incarnation: u64) -> Record {
        Record::Boot { incarnation }
    }

    /// Durable records read back from a zero-filled segment: the zeros end them, as in a real
    /// server's last segment.
    #[test]
    fn recovery_reads_records_then_preallocated_zeros() {
        let mut disk = Disk::default();
        for i in 1..=3 {
            disk.append(Lsn(i), boot(i), true);
        }
        disk.sync(Lsn(3), &mut |_| {});
        assert_eq!(wal::scan(&disk.segment_bytes()).end, WalEnd::Zeros);
        assert_eq!(
            disk.recover(true),
            Ok(Recovered { records: (1..=3).map(boot).collect(), torn: false, lost_synced: None })
        );
    }

    /// A state transfer streams no snapshot whose end is not durable: neither one a crash cut
    /// short (the log went on after it) nor one still being appended, as dkv-net's source
    /// streams none (seed 54093 with absences about every second: the only member's log ended
    /// in a snapshot being written, every joiner refused its state, and none asked it again).
    #[test]
    fn a_transfer_leaves_out_snapshots_whose_end_is_not_durable() {
        let snapshot = |incarnation| dkv_core::record::Snapshot { incarnation, ..Default::default() }.into_records();
        let mut cut_short = snapshot(7);
        cut_short.pop();
        let mut disk = Disk::default();
        let mut log: Vec<Record> = snapshot(1);
        log.push(boot(2));
        log.extend(cut_short.clone());
        log.push(boot(3));
        log.extend(cut_short);
        for (i, record) in log.into_iter().enumerate() {
            disk.append(Lsn(i as u64 + 1), record, true);
        }
        disk.sync(Lsn(u64::MAX), &mut |_| {});
        let mut expected = snapshot(1);
        expected.extend([boot(2), boot(3)]);
        assert_eq!(disk.transfer_records(), expected);
    }

    /// A torn record is lost in the crash, as the crash model says: the tear always removes
    /// its end byte, which is never zero, so the preallocated zeros never complete it into a
    /// valid record (a record of a build before the end byte could end in zeros).
    #[test]
    fn torn_record_is_not_completed_by_zeros() {
        let end = Record::SnapshotEnd { entries: 0 };
        assert_eq!(wal::encode_to_vec(&end).last(), Some(&wal::RECORD_END), "the record this test needs");
        let mut disk = Disk::default();
        disk.append(Lsn(1), boot(1), true);
        disk.append(Lsn(2), end, true);
        disk.crash(1, &CrashDamage { tear_at: Some(0.999), ..CrashDamage::default() }, &mut |_| {});
        assert!(matches!(wal::scan(&disk.segment_bytes()).end, WalEnd::Torn { .. }));
        assert_eq!(disk.recover(true), Ok(Recovered { records: vec![boot(1)], torn: true, lost_synced: None }));
    }

    /// Garbage that happens to supply the one byte a tear left out completes the record on the
    /// medium: the reader finds it whole, so the crash must count it as a record that survived
    /// (seed 23514 of the swarm: before, the disk expected it lost and failed the run).
    #[test]
    fn a_torn_record_completed_by_garbage_survived() {
        let pending = boot(4_000_000);
        let mut disk = synced_log();
        let damage =
            CrashDamage { tear_at: Some(0.999), garbage: vec![wal::RECORD_END, 0x17], ..CrashDamage::default() };
        let mut seen = Vec::new();
        disk.crash(0, &damage, &mut |record| seen.push(record.clone()));
        assert_eq!(seen, vec![pending.clone()], "shown as a survivor");
        let mut records = synced();
        records.push(pending);
        assert_eq!(disk.recover(true), Ok(Recovered { records, torn: true, lost_synced: None }));
    }

    /// A log of a few records of different kinds, all synced, and one more pending.
    fn synced_log() -> Disk {
        let mut disk = Disk::default();
        disk.append(Lsn(1), boot(1), true);
        disk.append(Lsn(2), boot(1 << 40), true);
        disk.append(Lsn(3), boot(300), true);
        disk.sync(Lsn(3), &mut |_| {});
        disk.append(Lsn(4), boot(4_000_000), true);
        disk
    }

    fn synced() -> Vec<Record> {
        vec![boot(1), boot(1 << 40), boot(300)]
    }

    /// Every bit of the record being written, flipped, reads as a torn write: cut off, the
    /// synced records intact. So does garbage after it, torn or whole, or after the last record.
    #[test]
    fn damage_to_the_unsynced_tail_reads_as_torn() {
        let bits = wal::encode_to_vec(&boot(4_000_000)).len() * 8;
        for bit in 0..bits {
            for tear_at in [None, Some(0.5)] {
                let mut disk = synced_log();
                let fraction = (bit as f64 + 0.5) / bits as f64;
                let garbage = if bit % 2 == 0 { vec![0xa5; 1 + bit % 40] } else { Vec::new() };
                let damage = CrashDamage { tear_at, flip_unsynced: Some(fraction), garbage, flip_synced: None };
                disk.crash(0, &damage, &mut |_| {});
                assert_eq!(
                    disk.recover(true),
                    Ok(Recovered { records: synced(), torn: true, lost_synced: None }),
                    "bit {bit}, tear {tear_at:?}"
                );
            }
        }
        for len in [1, 7, 8, 9, 63] {
            let mut disk = synced_log();
            let garbage: Vec<u8> = (1..=len).map(|b: u32| (b * 37) as u8 | 1).collect();
            disk.crash(0, &CrashDamage { garbage, ..CrashDamage::default() }, &mut |_| {});
            assert_eq!(
                disk.recover(true),
                Ok(Recovered { records: synced(), torn: true, lost_synced: None }),
                "{len} garbage bytes"
            );
        }
    }

    /// Every bit of every synced record that has a valid record after it, flipped, makes the
    /// reader refuse the log; the backup the operator restores then reads back whole.
    #[test]
    fn damage_to_a_synced_record_is_refused_until_restored() {
        let qualifying = synced().len() - 1;
        for record in 0..qualifying {
            let bits = wal::encode_to_vec(&synced()[record]).len() * 8;
            for bit in 0..bits {
                let mut disk = synced_log();
                let which = (record as f64 + 0.5) / qualifying as f64;
                let fraction = (bit as f64 + 0.5) / bits as f64;
                let damage = CrashDamage { flip_synced: Some((which, fraction)), ..CrashDamage::default() };
                disk.crash(0, &damage, &mut |_| {});
                assert_eq!(disk.flipped, Some((record, bit)));
                assert!(
                    matches!(disk.recover(true), Err(RecoverError::Corrupt { .. })),
                    "record {record} bit {bit}: {:?}",
                    wal::scan(&disk.segment_bytes()).end
                );
                disk.restore_backup();
                assert_eq!(disk.recover(true), Ok(Recovered { records: synced(), torn: false, lost_synced: None }));
            }
        }
    }

    /// Every bit of the last synced record, flipped on the medium, is cut as possible damage:
    /// the record is cut off and reported lost, the ones before it read back, and `Unvouched`
    /// is durable in its place, so a second recovery (a crash before the start synced anything)
    /// still reads that the node cannot vouch. Without the mark (the canary), the second
    /// recovery reads a log that looks whole.
    #[test]
    fn damage_to_the_last_synced_record_is_cut_as_possible_damage() {
        let last = boot(300);
        let bits = wal::encode_to_vec(&last).len() * 8;
        for mark_damage in [true, false] {
            for bit in 0..bits {
                let mut disk = synced_log();
                disk.crash(0, &CrashDamage::default(), &mut |_| {});
                assert!(disk.damage_last_synced((bit as f64 + 0.5) / bits as f64));
                let recovered = disk.recover(mark_damage);
                let mut records: Vec<Record> = synced()[..2].to_vec();
                if mark_damage {
                    records.push(Record::Unvouched);
                }
                assert_eq!(
                    recovered,
                    Ok(Recovered { records: records.clone(), torn: true, lost_synced: Some(last.clone()) }),
                    "bit {bit}"
                );
                disk.crash(0, &CrashDamage::default(), &mut |_| {});
                let again = disk.recover(mark_damage);
                assert_eq!(again, Ok(Recovered { records, torn: false, lost_synced: None }), "bit {bit}");
            }
        }
        assert!(!Disk::default().damage_last_synced(0.5), "an empty log has no record to damage");
    }

    /// The check [`Disk::recover`] makes fails on the logs of builds before the length check:
    /// a flip in the last record's length field that claims more bytes than were written read
    /// there as a torn write.
    #[test]
    fn a_damaged_length_read_as_a_torn_write_is_caught() {
        let mut disk = synced_log();
        disk.legacy_encoding = true;
        disk.crash(0, &CrashDamage::default(), &mut |_| {});
        // Bit 8: the length field's second byte, 256 more bytes claimed.
        let bits = wal::encode_to_vec(&boot(300)).len() * 8;
        assert!(disk.damage_last_synced(8.5 / bits as f64));
        assert_eq!(disk.last_flipped, Some(8));
        let cut = wal::scan(&disk.segment_bytes()).end.cut_tail();
        assert_eq!(cut.map(|c| c.record), Some(CutRecord::Short));
        assert_eq!(disk.recover(true), Err(RecoverError::DamageReadAsTorn { cut }));
    }

    /// The last synced record is never damaged by `flip_synced`, which draws damage the reader
    /// must refuse (a valid record after it); a flip in the last one is cut instead, and is
    /// `damage_last_synced`'s case.
    #[test]
    fn the_last_synced_record_is_never_damaged() {
        let mut disk = Disk::default();
        disk.append(Lsn(1), boot(1), true);
        disk.sync(Lsn(1), &mut |_| {});
        disk.crash(0, &CrashDamage { flip_synced: Some((0.99, 0.5)), ..CrashDamage::default() }, &mut |_| {});
        assert!(!disk.media_damaged());
        let mut disk = synced_log();
        disk.crash(0, &CrashDamage { flip_synced: Some((1.0, 1.0)), ..CrashDamage::default() }, &mut |_| {});
        assert_eq!(disk.flipped.map(|(record, _)| record), Some(1));
    }
}
