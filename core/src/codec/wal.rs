//! WAL records on disk: `len: u32 LE | crc32c(len bytes ++ payload): u32 LE | payload`, the
//! payload a postcard [`Record`]. Scanning a segment yields the longest clean prefix of whole,
//! checksummed records and says how the bytes after it end: cleanly, in a torn write (the last
//! write was cut short by a crash: safe to truncate), or in corruption (damage with valid records
//! after it: never safe to ignore).

use crate::record::Record;
use thiserror::Error;

pub const RECORD_HEADER_BYTES: usize = 8;
/// No record may be longer: a larger length field is damage, not a record.
pub const RECORD_BYTES_MAX: u32 = 1 << 30;
/// A torn write can only affect the last write batch; past this many bytes of unreadable tail,
/// the damage is called corruption without searching further.
const TORN_TAIL_BYTES_MAX: usize = 64 << 20;

pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    // Serialization of our own types into a Vec cannot fail.
    *out = postcard::to_extend(record, std::mem::take(out)).expect("encoding into a Vec cannot fail");
    let len = (out.len() - start - RECORD_HEADER_BYTES) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&out[start..start + 4], &out[start + RECORD_HEADER_BYTES..]);
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

/// Why the record at some offset is not a record.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WalError {
    #[error("only {available} bytes remain, a record needs at least {RECORD_HEADER_BYTES}")]
    ShortHeader { available: usize },
    #[error("length field says {len} bytes, more than any record may be")]
    BadLength { len: u32 },
    #[error("record of {len} bytes is cut short ({available} bytes remain)")]
    ShortPayload { len: u32, available: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("checksummed payload does not decode: {reason}")]
    Undecodable { reason: String },
}

/// Decodes the record at the front of `bytes`, returning it and its encoded length.
pub fn decode_one(bytes: &[u8]) -> Result<(Record, usize), WalError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(WalError::ShortHeader { available: bytes.len() });
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if len > RECORD_BYTES_MAX {
        return Err(WalError::BadLength { len });
    }
    let total = RECORD_HEADER_BYTES + len as usize;
    if bytes.len() < total {
        return Err(WalError::ShortPayload { len, available: bytes.len() - RECORD_HEADER_BYTES });
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let payload = &bytes[RECORD_HEADER_BYTES..total];
    if checksum(&bytes[..4], payload) != crc {
        return Err(WalError::Checksum);
    }
    match postcard::take_from_bytes::<Record>(payload) {
        Ok((record, [])) => Ok((record, total)),
        Ok((_, rest)) => Err(WalError::Undecodable { reason: format!("{} unused bytes", rest.len()) }),
        Err(e) => Err(WalError::Undecodable { reason: e.to_string() }),
    }
}

/// How a scanned segment ends after its clean prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// The bytes from `offset` on hold no valid record: a write cut short. Truncate them.
    Torn { offset: usize, error: WalError },
    /// The record at `offset` is damaged, yet a valid record follows at `next_valid`: the log
    /// was damaged after it was written. Recovery must stop rather than lose those records.
    Corrupt { offset: usize, next_valid: Option<usize>, error: WalError },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalScan {
    /// The clean prefix, in order.
    pub records: Vec<Record>,
    /// Byte length of the clean prefix.
    pub valid_len: usize,
    pub end: WalEnd,
}

/// Scans a whole segment.
pub fn scan(bytes: &[u8]) -> WalScan {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match decode_one(&bytes[offset..]) {
            Ok((record, used)) => {
                records.push(record);
                offset += used;
            }
            Err(error) => {
                let end = classify_damage(bytes, offset, error);
                return WalScan { records, valid_len: offset, end };
            }
        }
    }
    WalScan { records, valid_len: offset, end: WalEnd::Clean }
}

/// Bytes of checksumming the search for a valid record after damage may spend. Past it the
/// damage is called corruption: refusing to start is safe, guessing is not, and a scan that
/// takes minutes helps nobody.
const DAMAGE_SCAN_BYTES_MAX: usize = 256 << 20;

/// Tells a torn tail from corruption by looking for any valid record after the damage.
fn classify_damage(bytes: &[u8], offset: usize, error: WalError) -> WalEnd {
    let tail = bytes.len() - offset;
    if tail > TORN_TAIL_BYTES_MAX {
        return WalEnd::Corrupt { offset, next_valid: None, error };
    }
    let mut budget = DAMAGE_SCAN_BYTES_MAX;
    for at in offset + 1..bytes.len() {
        let rest = &bytes[at..];
        let Some(header) = rest.get(..RECORD_HEADER_BYTES) else { break };
        // Only a length that fits in what remains is worth a checksum.
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > rest.len() - RECORD_HEADER_BYTES {
            continue;
        }
        if len > budget {
            return WalEnd::Corrupt { offset, next_valid: None, error };
        }
        budget -= len;
        if decode_one(rest).is_ok() {
            return WalEnd::Corrupt { offset, next_valid: Some(at), error };
        }
    }
    WalEnd::Torn { offset, error }
}
