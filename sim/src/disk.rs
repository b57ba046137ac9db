//! A simulated disk per node. Records are written in order and become durable when a
//! simulated fsync completes. A crash loses what was not yet durable — except that an fsync
//! may have finished unreported, and the record being written may be torn halfway. Recovery
//! reads the bytes back through the real WAL codec, exactly as a real server would.

use dkv_core::codec::{WalEnd, wal};
use dkv_core::{Lsn, Record};

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
            make_durable(&mut self.durable, record);
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
            make_durable(&mut self.durable, record);
        }
        self.torn_tail.clear();
        if let (Some(fraction), Some((_, record))) = (tear_at, rest.next()) {
            let bytes = wal::encode_to_vec(&record);
            let cut = ((bytes.len() as f64 * fraction) as usize).min(bytes.len() - 1);
            self.torn_tail = bytes[..cut].to_vec();
        }
        self.sync_in_flight = None;
        self.lazy_sync_at = None;
    }

    /// Reads the log back as a real server would: encode, scan, truncate a torn tail.
    /// Returns the records and whether a torn tail was found and truncated.
    pub fn recover(&mut self) -> Result<(Vec<Record>, bool), String> {
        let mut bytes = Vec::new();
        for record in &self.durable {
            wal::encode(record, &mut bytes);
        }
        bytes.extend_from_slice(&self.torn_tail);
        let scan = wal::scan(&bytes);
        let torn = match scan.end {
            WalEnd::Clean => false,
            WalEnd::Torn { .. } => true,
            WalEnd::Corrupt { offset, error, .. } => return Err(format!("log corrupt at byte {offset}: {error}")),
        };
        if scan.records.len() != self.durable.len() {
            return Err(format!("log scan found {} records, {} were durable", scan.records.len(), self.durable.len()));
        }
        self.torn_tail.clear();
        Ok((scan.records, torn))
    }
}

/// Compaction: once a snapshot's end is durable, every record before its begin goes. A snapshot
/// cut short by a crash stays in the log, as it would on a real disk.
fn make_durable(durable: &mut Vec<Record>, record: Record) {
    let end = matches!(record, Record::SnapshotEnd { .. });
    durable.push(record);
    if end {
        let begin = durable.iter().rposition(|r| matches!(r, Record::SnapshotBegin(_)));
        durable.drain(..begin.expect("the core writes a snapshot's begin before its end"));
    }
}
