//! A simulated disk per node. Records are written in order and become durable when a
//! simulated fsync completes. A crash loses what was not yet durable — except that an fsync
//! may have finished unreported, and the record being written may be torn halfway. Recovery
//! reads the bytes back as a real server reads its last segment: the durable records, the torn
//! write if any, then the zeros that preallocation leaves ahead of them, all through the same
//! codec functions ([`wal::decode_records`], then [`wal::classify_damage`]) that dkv-net uses.

use dkv_core::codec::{WalEnd, wal};
use dkv_core::{Lsn, Record, compaction};

/// How far ahead of its last write the simulated segment is zero-filled, each time a write runs
/// past the zeros. dkv-net uses the same rule with a far larger step; a page keeps every
/// simulated restart cheap while still leaving zeros after the records, so every restart of a
/// node that has written anything reads a zero-filled tail, as a real server does.
const PREALLOCATE_BYTES: usize = 4096;

#[derive(Default)]
pub struct Disk {
    /// Durable records (structured, to avoid encoding on every write).
    durable: Vec<Record>,
    /// Bytes of a torn record after the durable ones.
    torn_tail: Vec<u8>,
    pub pending: Vec<(Lsn, Record)>,
    /// An fsync is in flight covering records up to this lsn.
    pub sync_in_flight: Option<Lsn>,
    /// Only records that may wait are pending ([`Record::sync_promptly`]): an fsync starts at
    /// this (global) time unless a prompt record starts one sooner.
    pub lazy_sync_at: Option<u64>,
}

impl Disk {
    pub fn append(&mut self, lsn: Lsn, record: Record) {
        self.pending.push((lsn, record));
    }

    /// Makes every pending record up to `through` durable, showing each to `observe`.
    pub fn sync(&mut self, through: Lsn, observe: &mut dyn FnMut(&Record)) {
        let n = self.pending.iter().take_while(|(lsn, _)| *lsn <= through).count();
        for (_, record) in self.pending.drain(..n) {
            observe(&record);
            compaction::push_durable(&mut self.durable, record);
        }
        self.torn_tail.clear();
    }

    /// A crash: the first `survivors` pending records made it to disk unreported (each shown
    /// to `observe`), and if `tear_at` is set, the next one was cut after that fraction of its
    /// bytes.
    pub fn crash(&mut self, survivors: usize, tear_at: Option<f64>, observe: &mut dyn FnMut(&Record)) {
        let pending = std::mem::take(&mut self.pending);
        let mut rest = pending.into_iter();
        for (_, record) in rest.by_ref().take(survivors) {
            observe(&record);
            compaction::push_durable(&mut self.durable, record);
        }
        self.torn_tail.clear();
        if let (Some(fraction), Some((_, record))) = (tear_at, rest.next()) {
            let bytes = wal::encode_to_vec(&record);
            // The write is torn before its last non-zero byte: written over zeros, a record
            // whose missing end is zeros would read back whole, and this record is lost.
            let last_nonzero = bytes.iter().rposition(|&b| b != 0).expect("a record's length field is never zero");
            let cut = ((bytes.len() as f64 * fraction) as usize).min(last_nonzero);
            self.torn_tail = bytes[..cut].to_vec();
        }
        self.sync_in_flight = None;
        self.lazy_sync_at = None;
    }

    /// Reads the log back as a real server would: its segment's bytes (records, torn tail,
    /// zeros) through the codec, then truncates a torn tail. Returns the records and whether a
    /// torn tail was found and truncated.
    pub fn recover(&mut self) -> Result<(Vec<Record>, bool), String> {
        let bytes = self.segment_bytes();
        let scan = wal::scan(&bytes);
        let torn = match scan.end {
            WalEnd::Clean | WalEnd::Zeros => false,
            WalEnd::Torn { .. } => true,
            WalEnd::Corrupt { offset, error, .. } => return Err(format!("log corrupt at byte {offset}: {error}")),
        };
        if scan.records.len() != self.durable.len() {
            return Err(format!("log scan found {} records, {} were durable", scan.records.len(), self.durable.len()));
        }
        self.torn_tail.clear();
        Ok((scan.records, torn))
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
        for record in &self.durable {
            wal::encode(record, &mut bytes);
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
            disk.append(Lsn(i), boot(i));
        }
        disk.sync(Lsn(3), &mut |_| {});
        assert_eq!(wal::scan(&disk.segment_bytes()).end, WalEnd::Zeros);
        assert_eq!(disk.recover(), Ok(((1..=3).map(boot).collect(), false)));
    }

    /// A torn record whose encoding ends in zero bytes is lost in the crash, as the crash model
    /// says: the tear always removes a non-zero byte, so the preallocated zeros never complete
    /// it into a valid record.
    #[test]
    fn torn_record_is_not_completed_by_zeros() {
        let end = Record::SnapshotEnd { entries: 0 };
        assert_eq!(wal::encode_to_vec(&end).last(), Some(&0), "the record this test needs");
        let mut disk = Disk::default();
        disk.append(Lsn(1), boot(1));
        disk.append(Lsn(2), end);
        disk.crash(1, Some(0.999), &mut |_| {});
        assert!(matches!(wal::scan(&disk.segment_bytes()).end, WalEnd::Torn { .. }));
        assert_eq!(disk.recover(), Ok((vec![boot(1)], true)));
    }
}
