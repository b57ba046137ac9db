//! WAL records on disk. A record is written as
//!
//! ```text
//! len | CHECKED: u32 LE | length check: u32 LE | crc32c(first 4 bytes ++ payload): u32 LE | payload | RECORD_END
//! ```
//!
//! the payload a postcard [`Record`] of `len` bytes, the length check `crc32c` of the first four
//! bytes with its lowest bit set (so never zero), and [`RECORD_END`] one non-zero byte. Builds
//! before 2026-11-27 wrote `len: u32 LE | crc32c(len bytes ++ payload): u32 LE | payload`; such
//! records (their length field's top bit clear, [`CHECKED`] unset) are still read.
//!
//! The length check and the end byte are there so that a crash's torn write can be told from
//! damage to a synced record by the bytes alone (docs/protocol.md §4): a record written whole
//! ends in a non-zero byte exactly where its checked length says, so a record whose bytes stop
//! early (in zeros, or at the file's end) under a length that checks was cut short by a crash,
//! while a length that fails its check, or a record whose every byte is there yet fails its
//! checksum, was damaged after it was written. Without them a bit flipped in the last record's
//! length, or in a record whose payload ends in zero bytes, read exactly like a torn write.
//!
//! Reading a segment yields the longest clean prefix of whole, checksummed records and says how
//! the bytes after it end ([`WalEnd`]): cleanly; in zeros (the unused part of a segment that its
//! writer keeps zero-filled ahead of its last record, as dkv-net does); in a torn write (the
//! last write was cut short by a crash: safe to truncate); or in corruption (damage with valid
//! records after it: never safe to ignore). Every reader (the server's windowed one, the
//! simulator's, the fuzzers') goes through the same two steps: [`decode_records`] for the clean
//! prefix, then [`classify_damage`] for what follows it. [`scan`] does both over bytes held
//! whole.

use crate::record::Record;
use thiserror::Error;

/// The header of a record as this build writes it: length, length check, checksum.
pub const RECORD_HEADER_BYTES: usize = 12;
/// The header of a record of a build before the length check: length, checksum.
pub const LEGACY_HEADER_BYTES: usize = 8;
/// The byte every record this build writes ends with: not zero, so that a whole record never
/// ends in bytes that read like preallocated zeros, and more than one bit away from zero.
pub const RECORD_END: u8 = 0xa5;
/// The top bit of the length field: the record has a length check and an end byte.
pub const CHECKED: u32 = 1 << 31;
/// The bytes a record of this build adds to its payload.
pub const RECORD_FRAMING_BYTES: usize = RECORD_HEADER_BYTES + 1;
/// No record may be longer: a larger length field is damage, not a record.
pub const RECORD_BYTES_MAX: u32 = 1 << 30;
/// A torn write can only affect the last write batch: a damaged record followed by more than
/// this many non-zero bytes is called corruption without searching further.
pub const TORN_TAIL_BYTES_MAX: usize = 64 << 20;
/// Bytes of checksumming the search for a valid record after damage may spend. Past it the
/// damage is called corruption: refusing to start is safe, guessing is not, and a scan that
/// takes minutes helps nobody.
pub const DAMAGE_SCAN_BYTES_MAX: usize = 256 << 20;

pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    // Serialization of our own types into a Vec cannot fail.
    *out = postcard::to_extend(record, std::mem::take(out)).expect("encoding into a Vec cannot fail");
    let len = out.len() - start - RECORD_HEADER_BYTES;
    debug_assert!(len <= RECORD_BYTES_MAX as usize, "a record of {len} bytes is longer than any record may be");
    let field = (len as u32 | CHECKED).to_le_bytes();
    out[start..start + 4].copy_from_slice(&field);
    out[start + 4..start + 8].copy_from_slice(&length_check(field).to_le_bytes());
    let crc = checksum(&field, &out[start + RECORD_HEADER_BYTES..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    out.push(RECORD_END);
}

/// Encodes `record` as builds before the length check did, for tests that read old logs.
#[doc(hidden)]
pub fn encode_legacy(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LEGACY_HEADER_BYTES]);
    *out = postcard::to_extend(record, std::mem::take(out)).expect("encoding into a Vec cannot fail");
    let len = (out.len() - start - LEGACY_HEADER_BYTES) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&out[start..start + 4], &out[start + LEGACY_HEADER_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn encode_to_vec(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    encode(record, &mut out);
    out
}

fn checksum(len_bytes: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload)
}

/// The length check of a length field: never zero, so that a check that reads zero was never
/// written.
fn length_check(field: [u8; 4]) -> u32 {
    crc32c::crc32c(&field) | 1
}

/// How a record's header says it is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Framing {
    /// The payload's length.
    len: u32,
    /// Written by this build: a length check and an end byte.
    checked: bool,
}

impl Framing {
    /// The length field at the front of `bytes`, if its four bytes are there. Says nothing of
    /// whether the length is sound.
    fn of(bytes: &[u8]) -> Option<Framing> {
        let field = u32::from_le_bytes(bytes.get(..4)?.try_into().expect("four bytes"));
        Some(Framing { len: field & !CHECKED, checked: field & CHECKED != 0 })
    }

    fn header_bytes(self) -> usize {
        if self.checked { RECORD_HEADER_BYTES } else { LEGACY_HEADER_BYTES }
    }

    /// The record's whole length as its header claims it, header and end byte included.
    fn record_bytes(self) -> usize {
        self.header_bytes() + self.len as usize + usize::from(self.checked)
    }
}

/// How many bytes the record at the front of `bytes` takes, as its length field claims, if
/// that field is there and within [`RECORD_BYTES_MAX`]; a larger one needs only its header to
/// be judged damaged. `None`: fewer than four bytes.
pub fn record_bytes_claimed(bytes: &[u8]) -> Option<usize> {
    let framing = Framing::of(bytes)?;
    Some(if framing.len > RECORD_BYTES_MAX { framing.header_bytes() } else { framing.record_bytes() })
}

/// Why the record at some offset is not a record.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("only {available} bytes remain, a record needs at least {needed}")]
    ShortHeader { available: usize, needed: usize },
    #[error("length field says {len} bytes, more than any record may be")]
    BadLength { len: u32 },
    #[error("the length field fails its check")]
    LengthCheck,
    #[error("record of {len} bytes is cut short ({available} bytes remain)")]
    ShortPayload { len: u32, available: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("the record does not end with its end byte")]
    NoEnd,
    #[error("checksummed payload does not decode: {reason}")]
    Undecodable { reason: String },
}

/// Decodes the record at the front of `bytes`, returning it and its encoded length.
pub fn decode_one(bytes: &[u8]) -> Result<(Record, usize), RecordError> {
    let Some(framing) = Framing::of(bytes) else {
        return Err(RecordError::ShortHeader { available: bytes.len(), needed: RECORD_HEADER_BYTES });
    };
    let header = framing.header_bytes();
    if bytes.len() < header {
        return Err(RecordError::ShortHeader { available: bytes.len(), needed: header });
    }
    let len = framing.len;
    if len > RECORD_BYTES_MAX {
        return Err(RecordError::BadLength { len });
    }
    let field: [u8; 4] = bytes[..4].try_into().expect("four bytes");
    if framing.checked && u32::from_le_bytes(bytes[4..8].try_into().expect("four bytes")) != length_check(field) {
        return Err(RecordError::LengthCheck);
    }
    let total = framing.record_bytes();
    if bytes.len() < total {
        return Err(RecordError::ShortPayload { len, available: bytes.len() - header });
    }
    let crc = u32::from_le_bytes(bytes[header - 4..header].try_into().expect("four bytes"));
    let payload = &bytes[header..header + len as usize];
    if checksum(&field, payload) != crc {
        return Err(RecordError::Checksum);
    }
    if framing.checked && bytes[total - 1] != RECORD_END {
        return Err(RecordError::NoEnd);
    }
    match postcard::take_from_bytes::<Record>(payload) {
        Ok((record, [])) => Ok((record, total)),
        Ok((_, rest)) => Err(RecordError::Undecodable { reason: format!("{} unused bytes", rest.len()) }),
        Err(e) => Err(RecordError::Undecodable { reason: e.to_string() }),
    }
}

/// Where [`decode_records`] stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordsStop {
    /// The bytes end after a whole record (or hold none) and the segment ends with them.
    End,
    /// The next record needs `record_bytes` bytes (header included, as its header claims), more
    /// than the bytes given hold, and the segment goes on past them: read on, then decode again
    /// from that record. A length over the maximum needs only the header to be judged.
    NeedsBytes { record_bytes: usize },
    /// The next record is damaged: hand the rest of the segment to [`classify_damage`].
    Damaged(RecordError),
}

/// What [`decode_records`] read: `len` bytes of whole records, then `stop`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordsRead {
    pub len: usize,
    pub stop: RecordsStop,
}

/// Decodes the whole records at the front of `bytes` into `records`. `bytes` start at a record
/// boundary of a segment; `segment_goes_on` says whether the segment has more bytes after them,
/// so that a record cut short by the end of a reader's window is told apart from one cut short
/// by the end of the segment (a reader holding a whole segment passes `false`).
pub fn decode_records(bytes: &[u8], segment_goes_on: bool, records: &mut Vec<Record>) -> RecordsRead {
    let mut len = 0;
    loop {
        let rest = &bytes[len..];
        if segment_goes_on {
            let record_bytes = record_bytes_claimed(rest).unwrap_or(RECORD_HEADER_BYTES);
            if rest.len() < record_bytes {
                return RecordsRead { len, stop: RecordsStop::NeedsBytes { record_bytes } };
            }
        } else if rest.is_empty() {
            return RecordsRead { len, stop: RecordsStop::End };
        }
        match decode_one(rest) {
            Ok((record, used)) => {
                records.push(record);
                len += used;
            }
            Err(error) => return RecordsRead { len, stop: RecordsStop::Damaged(error) },
        }
    }
}

/// How a segment's bytes end after its clean prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// Only zeros follow the clean prefix: the unused part of a segment zero-filled ahead of its
    /// last record. That ends the log cleanly only in the segment being written when the log
    /// was last open (the last one); its writer trims any other before starting the next, so
    /// zeros there mean lost writes.
    Zeros,
    /// The bytes from `offset` on hold no valid record: a write cut short, or the last record
    /// damaged (`record` says which it looks like). `torn_bytes` of them (not counting the
    /// zeros after them) are garbage. Truncate them, and report the cut ([`WalEnd::cut_tail`]).
    Torn { offset: usize, torn_bytes: usize, record: CutRecord, error: RecordError },
    /// The record at `offset` is damaged, yet a valid record follows at `next_valid` (or there
    /// is too much damage to search for one, `None`): the log was damaged after it was written.
    /// Recovery must stop rather than lose those records.
    Corrupt { offset: usize, next_valid: Option<usize>, error: RecordError },
}

/// Tells what follows a segment's clean prefix: `tail` is the segment's bytes from the first
/// damaged record to the end, which sits at byte `offset` of the segment (offsets in the result
/// are the segment's), and `error` is why that record did not decode.
///
/// A torn write is the last write cut short, so it is followed by nothing but the zeros ahead
/// of it; any valid record after the damage makes it corruption. The search for one covers only
/// the non-zero bytes: a valid record starting past them would be all zeros, and none can be
/// (its checksum would not match). Each candidate costs a checksum over its claimed length, so
/// the search has a budget, [`DAMAGE_SCAN_BYTES_MAX`]; past it, the damage is called corruption.
pub fn classify_damage(tail: &[u8], offset: usize, error: RecordError) -> WalEnd {
    let nonzero_len = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if nonzero_len == 0 {
        return WalEnd::Zeros;
    }
    if nonzero_len > TORN_TAIL_BYTES_MAX {
        return WalEnd::Corrupt { offset, next_valid: None, error };
    }
    let mut budget = DAMAGE_SCAN_BYTES_MAX;
    for at in 1..nonzero_len {
        let rest = &tail[at..];
        let Some(len) = record_bytes_claimed(rest) else { break };
        // Only a length that fits in what remains is worth a checksum.
        if len > rest.len() {
            continue;
        }
        if len > budget {
            return WalEnd::Corrupt { offset, next_valid: None, error };
        }
        budget -= len;
        if decode_one(rest).is_ok() {
            return WalEnd::Corrupt { offset, next_valid: Some(offset + at), error };
        }
    }
    let record = CutRecord::of(&tail[..nonzero_len], &error);
    WalEnd::Torn { offset, torn_bytes: nonzero_len, record, error }
}

impl WalEnd {
    /// What a recovery that truncates this end cuts off, if it cuts anything (only a torn end
    /// is ever truncated; every other end is kept or refused).
    pub fn cut_tail(&self) -> Option<CutTail> {
        match self {
            WalEnd::Torn { torn_bytes, record, .. } => Some(CutTail { bytes: *torn_bytes as u64, record: *record }),
            WalEnd::Clean | WalEnd::Zeros | WalEnd::Corrupt { .. } => None,
        }
    }
}

/// What recovery cut off the end of a log: `bytes` bytes (the zeros after them not counted),
/// starting with a record in the state `record` says.
///
/// `record` says which cut it was. A record cut short ([`CutRecord::Short`]) is a write a crash
/// tore, never reported durable: the node goes on. A record damaged after it was written
/// ([`CutRecord::WholeButDamaged`]) may have been synced and acknowledged (a vote, a commit):
/// the node must not vote or serve until it has caught up from a member (docs/protocol.md §4,
/// §7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutTail {
    pub bytes: u64,
    pub record: CutRecord,
}

/// The state of the first record a cut removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutRecord {
    /// The record's bytes stop (the file ends, or only zeros follow: a preallocated segment's
    /// unwritten part) before the length its header claims, and that length passes its check:
    /// a write the crash cut short, which was never reported durable. (For a record of a build
    /// before the length check, a flip in the length field that claims more bytes than were
    /// written, or a damaged record whose last bytes are zeros, reads the same.)
    Short,
    /// Every byte the record claims was written, but its checksum fails, its end byte is
    /// wrong or its checksummed payload does not decode; or its length field is impossible or
    /// fails its check: possibly a record that was synced, and acknowledged, then damaged on
    /// disk.
    WholeButDamaged,
}

impl CutRecord {
    /// How the damaged record at the front of `written` reads, where `written` ends at the last
    /// non-zero byte of the segment and `error` is why the record did not decode.
    ///
    /// A crash cuts a write short; it does not change the bytes it wrote. So a record was cut
    /// short only if its bytes stop before its end, and, where its length is checked, what
    /// was written of the check is the check's start (the rest reads as zeros), and a whole
    /// check is true. A record whose every byte is there (its end byte is never zero) was
    /// written whole.
    fn of(written: &[u8], error: &RecordError) -> CutRecord {
        let Some(framing) = Framing::of(written) else { return CutRecord::Short };
        if matches!(error, RecordError::BadLength { .. }) {
            return CutRecord::WholeButDamaged;
        }
        if framing.checked {
            let field: [u8; 4] = written[..4].try_into().expect("four bytes");
            let check = length_check(field).to_le_bytes();
            let seen = &written[4..written.len().min(RECORD_HEADER_BYTES - 4)];
            let cut_in_check = written.len() < RECORD_HEADER_BYTES - 4;
            if cut_in_check && check.starts_with(seen) {
                return CutRecord::Short;
            }
            if seen != check || framing.len > RECORD_BYTES_MAX {
                return CutRecord::WholeButDamaged;
            }
        }
        if framing.record_bytes() <= written.len() { CutRecord::WholeButDamaged } else { CutRecord::Short }
    }
}

impl std::fmt::Display for CutTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.record {
            CutRecord::Short => write!(f, "{} bytes of a record cut short (a torn write)", self.bytes),
            CutRecord::WholeButDamaged => write!(
                f,
                "{} bytes starting with a record damaged after it was written (its checksum or its length's check fails: possibly a synced, acknowledged record damaged on disk)",
                self.bytes
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalScan {
    /// The clean prefix, in order.
    pub records: Vec<Record>,
    /// Byte length of the clean prefix.
    pub valid_len: usize,
    pub end: WalEnd,
}

/// Reads a whole segment held in memory.
pub fn scan(bytes: &[u8]) -> WalScan {
    let mut records = Vec::new();
    let read = decode_records(bytes, false, &mut records);
    let end = match read.stop {
        RecordsStop::End => WalEnd::Clean,
        RecordsStop::Damaged(error) => classify_damage(&bytes[read.len..], read.len, error),
        RecordsStop::NeedsBytes { .. } => unreachable!("bytes that reach the segment's end never need more"),
    };
    WalScan { records, valid_len: read.len, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three records, their bytes, and where each starts.
    fn log() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for incarnation in [1, 1 << 40, 300] {
            starts.push(bytes.len());
            encode(&Record::Boot { incarnation }, &mut bytes);
        }
        (bytes, starts)
    }

    /// A write cut short and followed by garbage (a sector the crash left half written), then
    /// the preallocated zeros, then more garbage: nothing valid follows the damage, so it is a
    /// torn write, whatever the garbage.
    #[test]
    fn torn_write_followed_by_garbage_is_torn() {
        let (mut bytes, _) = log();
        let clean = bytes.len();
        let last = encode_to_vec(&Record::Boot { incarnation: 4 });
        bytes.extend_from_slice(&last[..last.len() / 2]);
        bytes.extend((1..=50u8).map(|b| b.wrapping_mul(97) | 1));
        bytes.extend_from_slice(&[0; 100]);
        bytes.extend_from_slice(&[0xff; 9]);
        let scan = scan(&bytes);
        assert_eq!(scan.records.len(), 3);
        assert!(matches!(scan.end, WalEnd::Torn { offset, .. } if offset == clean), "{:?}", scan.end);
    }

    /// What a truncation cuts is reported by how the cut record reads: a record cut short is a
    /// torn write; a whole record with a flipped payload bit may be a synced one damaged; a
    /// clean end cuts nothing.
    #[test]
    fn cut_tail_tells_a_short_record_from_a_whole_damaged_one() {
        let (bytes, starts) = log();
        let last_len = (bytes.len() - starts[2]) as u64;
        assert_eq!(scan(&bytes).end.cut_tail(), None);
        let mut zero_tail = bytes.clone();
        zero_tail.extend_from_slice(&[0; 64]);
        assert_eq!(scan(&zero_tail).end.cut_tail(), None);

        let short = &bytes[..bytes.len() - 1];
        let cut = CutTail { bytes: last_len - 1, record: CutRecord::Short };
        assert_eq!(scan(short).end.cut_tail(), Some(cut));

        let mut into_zeros = bytes[..starts[2] + RECORD_HEADER_BYTES + 2].to_vec(); // tag 0, then a non-zero byte
        into_zeros.extend_from_slice(&[0; 64]);
        let cut = CutTail { bytes: RECORD_HEADER_BYTES as u64 + 2, record: CutRecord::Short };
        assert_eq!(scan(&into_zeros).end.cut_tail(), Some(cut), "a torn write into preallocated zeros");

        let mut flipped = bytes.clone();
        flipped[starts[2] + RECORD_HEADER_BYTES] ^= 0x10;
        flipped.extend_from_slice(&[0; 64]);
        let cut = CutTail { bytes: last_len, record: CutRecord::WholeButDamaged };
        assert_eq!(scan(&flipped).end.cut_tail(), Some(cut));
    }

    /// More damaged bytes than any torn write leaves is corruption, even with nothing valid
    /// after it: a crash tears one write, not 64 MiB of the log.
    #[test]
    fn damage_longer_than_any_torn_write_is_corrupt() {
        let tail = vec![0xff; TORN_TAIL_BYTES_MAX + 1];
        let end = classify_damage(&tail, 10, RecordError::Checksum);
        assert!(matches!(end, WalEnd::Corrupt { offset: 10, next_valid: None, .. }), "{end:?}");
    }

    /// Every bit of the last record flipped (the record being written when the crash hit):
    /// a torn write, never corruption, never a record.
    #[test]
    fn flip_in_the_last_record_is_torn() {
        let (bytes, starts) = log();
        for bit in starts[2] * 8..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            damaged.extend_from_slice(&[0; 64]);
            let scan = scan(&damaged);
            assert_eq!(scan.records.len(), 2, "bit {bit}");
            assert!(
                matches!(scan.end, WalEnd::Torn { offset, .. } if offset == starts[2]),
                "bit {bit}: {:?}",
                scan.end
            );
        }
    }

    /// Every bit of a record with a valid record after it flipped (damage after the write was
    /// synced): corruption, with the next valid record found where it is.
    #[test]
    fn flip_before_a_valid_record_is_corrupt() {
        let (bytes, starts) = log();
        for bit in 0..starts[2] * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            damaged.extend_from_slice(&[0; 64]);
            let record = if bit / 8 < starts[1] { 0 } else { 1 };
            let scan = scan(&damaged);
            assert_eq!(scan.records.len(), record, "bit {bit}");
            assert!(
                matches!(scan.end, WalEnd::Corrupt { offset, next_valid: Some(next), .. }
                    if offset == starts[record] && next == starts[record + 1]),
                "bit {bit}: {:?}",
                scan.end
            );
        }
    }

    /// Records whose payload ends in zero bytes (a zero incarnation, an agreement with nothing
    /// accepted) among others: without the end byte their last bytes read as preallocated zeros.
    fn last_records() -> Vec<Record> {
        use crate::ids::{NodeId, TxnId};
        let txn = TxnId { coordinator: NodeId(0), incarnation: 1, number: 0 };
        vec![
            Record::Boot { incarnation: 0 },
            Record::CommitLearned { txn },
            Record::Committed { txn: TxnId { coordinator: NodeId(2), incarnation: 1 << 40, number: 300 } },
            Record::SnapshotEnd { entries: 0 },
            Record::Unvouched,
        ]
    }

    /// Every bit of the last record flipped after it was synced (nothing valid follows it, so
    /// it is cut): the cut is reported as possible damage to a synced record, never as a torn
    /// write — the length field and a payload ending in zeros included, the cases a build
    /// without the length check and end byte read as torn writes (issue 12).
    #[test]
    fn every_flip_in_the_last_record_reads_as_damage_never_as_a_torn_write() {
        let (log, _) = log();
        for last in last_records() {
            let record = encode_to_vec(&last);
            for bit in 0..record.len() * 8 {
                let mut bytes = log.clone();
                let start = bytes.len();
                bytes.extend_from_slice(&record);
                bytes[start + bit / 8] ^= 1 << (bit % 8);
                bytes.extend_from_slice(&[0; 64]);
                let scan = scan(&bytes);
                assert_eq!(scan.records.len(), 3, "{last:?} bit {bit}");
                let cut = scan.end.cut_tail().unwrap_or_else(|| panic!("{last:?} bit {bit}: {:?}", scan.end));
                assert_eq!(cut.record, CutRecord::WholeButDamaged, "{last:?} bit {bit}");
            }
        }
    }

    /// Every cut of the last record's write (the rest of the segment zeros, as preallocated):
    /// a torn write, cut and reported as one — never taken for damage to a synced record.
    #[test]
    fn every_cut_of_the_last_record_reads_as_a_torn_write() {
        let (log, _) = log();
        for last in last_records() {
            let record = encode_to_vec(&last);
            for cut in 1..record.len() {
                let mut bytes = log.clone();
                bytes.extend_from_slice(&record[..cut]);
                bytes.extend_from_slice(&[0; 64]);
                let scan = scan(&bytes);
                assert_eq!(scan.records.len(), 3, "{last:?} cut at {cut}");
                match scan.end {
                    // Only zeros were written of it.
                    WalEnd::Zeros => assert!(record[..cut].iter().all(|&b| b == 0), "{last:?} cut at {cut}"),
                    ref end => {
                        let tail = end.cut_tail().unwrap_or_else(|| panic!("{last:?} cut at {cut}: {end:?}"));
                        assert_eq!(tail.record, CutRecord::Short, "{last:?} cut at {cut}");
                    }
                }
            }
        }
    }

    /// Records of builds before the length check still read, mixed with this build's in one
    /// segment (a log an upgrade goes on writing); a flip in such a record's length field that
    /// claims more bytes than were written still reads as a torn write: the gap the check closes.
    #[test]
    fn legacy_records_read_and_keep_their_gap() {
        let mut bytes = Vec::new();
        encode_legacy(&Record::Boot { incarnation: 1 }, &mut bytes);
        encode(&Record::Boot { incarnation: 2 }, &mut bytes);
        let legacy_last = bytes.len();
        encode_legacy(&Record::Boot { incarnation: 3 }, &mut bytes);
        let clean = scan(&bytes);
        assert_eq!(clean.end, WalEnd::Clean);
        let incarnations: Vec<u64> = clean
            .records
            .iter()
            .map(|r| match r {
                Record::Boot { incarnation } => *incarnation,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(incarnations, [1, 2, 3]);
        let mut flipped = bytes.clone();
        flipped[legacy_last + 1] ^= 0x01; // the length field claims 256 more bytes
        flipped.extend_from_slice(&[0; 64]);
        assert_eq!(scan(&flipped).end.cut_tail().map(|c| c.record), Some(CutRecord::Short));
    }
}
