//! Codecs: frames and WAL records round-trip; any bytes decode to a value or a typed error,
//! never a panic; a torn WAL tail is told apart from corruption and never becomes a record.

use dkv_core::codec::{Frame, FrameError, WalEnd, frame, wal};
use dkv_core::record::TxnRecord;
use dkv_core::*;
use proptest::prelude::*;

const MAX: u32 = 1 << 20;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    let condition = prop_oneof![
        Just(Condition::Exists),
        Just(Condition::Absent),
        bytes(8).prop_map(Condition::ValueEquals),
        any::<u64>().prop_map(Condition::VersionEquals),
    ];
    prop_oneof![
        (bytes(8), bytes(16)).prop_map(|(key, value)| TxnOp::Put { key, value }),
        (bytes(8), bytes(16)).prop_map(|(key, value)| TxnOp::Update { key, value }),
        bytes(8).prop_map(|key| TxnOp::Delete { key }),
        (bytes(8), any::<i64>()).prop_map(|(key, by)| TxnOp::Increment { key, by }),
        (bytes(8), bytes(16)).prop_map(|(key, value)| TxnOp::Append { key, value }),
        (bytes(8), bytes(16)).prop_map(|(key, value)| TxnOp::GetSet { key, value }),
        bytes(8).prop_map(|key| TxnOp::GetDelete { key }),
        bytes(8).prop_map(|key| TxnOp::Read { key }),
        bytes(8).prop_map(|key| TxnOp::Exists { key }),
        bytes(8).prop_map(|key| TxnOp::DeleteIfPresent { key }),
        (bytes(8), condition).prop_map(|(key, condition)| TxnOp::Require { key, condition }),
    ]
}

fn op_result() -> impl Strategy<Value = OpResult> {
    prop_oneof![
        any::<u64>().prop_map(|version| OpResult::Done { version }),
        (prop::option::of(bytes(8)), any::<u64>()).prop_map(|(value, version)| OpResult::Value { value, version }),
        (any::<i64>(), any::<u64>()).prop_map(|(value, version)| OpResult::Integer { value, version }),
    ]
}

fn fail_reason() -> impl Strategy<Value = FailReason> {
    prop::sample::select(vec![
        FailReason::KeyNotFound,
        FailReason::ConditionFailed,
        FailReason::NotAnInteger,
        FailReason::IntegerOverflow,
        FailReason::ValueTooLarge,
        FailReason::ResultsTooLarge,
    ])
}

fn completed() -> impl Strategy<Value = dkv_core::completions::Completed> {
    use dkv_core::completions::Completed;
    prop_oneof![
        prop::collection::vec(op_result(), 0..3).prop_map(Completed::Committed),
        (any::<u32>(), fail_reason()).prop_map(|(op_index, reason)| Completed::Failed(OpFailure { op_index, reason })),
    ]
}

fn txn_id() -> impl Strategy<Value = TxnId> {
    (0u8..7, any::<u64>(), any::<u64>()).prop_map(|(c, incarnation, number)| TxnId {
        coordinator: NodeId(c),
        incarnation,
        number,
    })
}

fn request_id() -> impl Strategy<Value = RequestId> {
    (any::<u64>(), any::<u64>()).prop_map(|(c, seq)| RequestId { client: ClientId(c), seq })
}

fn txn_record() -> impl Strategy<Value = TxnRecord> {
    (txn_id(), request_id(), prop::collection::vec(txn_op(), 0..4), any::<u64>()).prop_map(
        |(txn, request, ops, set)| TxnRecord {
            txn,
            request,
            ops: ops.into(),
            participants: NodeSet::first((set % 8) as usize),
        },
    )
}

fn frame_value() -> impl Strategy<Value = Frame> {
    let outcome = prop_oneof![
        prop::collection::vec(op_result(), 0..3).prop_map(Outcome::Committed),
        (bytes(16), any::<u64>()).prop_map(|(value, version)| Outcome::Value { value, version }),
        Just(Outcome::NotFound),
        (any::<u32>(), fail_reason()).prop_map(|(op_index, reason)| Outcome::Failed(OpFailure { op_index, reason })),
        Just(Outcome::TryAgain(TryAgainReason::InProgress)),
        (prop::collection::vec((bytes(8), prop::option::of(bytes(8)), any::<u64>()), 0..3), prop::option::of(bytes(8)))
            .prop_map(|(entries, next)| Outcome::Scanned {
                entries: entries.into_iter().map(|(key, value, version)| ScanEntry { key, value, version }).collect(),
                next,
            }),
    ];
    let message = prop_oneof![
        txn_record().prop_map(|t| Message::Prepare {
            epoch: Epoch::FIRST,
            txn: t.txn,
            request: t.request,
            ops: t.ops,
            participants: t.participants,
            round: t.txn.incarnation,
        }),
        txn_id().prop_map(|txn| Message::Vote { epoch: Epoch::FIRST, txn, vote: Vote::Yes, round: txn.incarnation }),
        txn_id().prop_map(|txn| Message::Vote {
            epoch: Epoch::FIRST,
            txn,
            vote: Vote::YesPinned,
            round: txn.incarnation
        }),
        txn_id().prop_map(|txn| Message::Vote {
            epoch: Epoch::FIRST,
            txn,
            vote: Vote::No(NoReason::Conflict),
            round: txn.incarnation
        }),
        txn_id().prop_map(|txn| Message::Decision { epoch: Epoch::FIRST, txn, decision: Decision::Commit }),
        txn_id().prop_map(|txn| Message::Ack { epoch: Epoch::FIRST, txn }),
        txn_id().prop_map(|txn| Message::Query { epoch: Epoch::FIRST, txn }),
    ];
    prop_oneof![
        (request_id(), bytes(8))
            .prop_map(|(id, key)| Frame::Request(Request { id, operation: Operation::Get { key } })),
        (request_id(), prop::collection::vec(txn_op(), 0..5))
            .prop_map(|(id, ops)| Frame::Request(Request { id, operation: Operation::Txn { ops } })),
        (request_id(), bytes(8), prop::option::of(bytes(8)), any::<u32>(), any::<bool>()).prop_map(
            |(id, start, end, limit, keys_only)| Frame::Request(Request {
                id,
                operation: Operation::Scan { start, end, limit, keys_only }
            })
        ),
        (request_id(), completed()).prop_map(|(id, completed)| Frame::Peer {
            cluster: ClusterId(1),
            from: NodeId(id.seq as u8 % 7),
            message: Message::Vote {
                epoch: Epoch::FIRST,
                txn: TxnId { coordinator: NodeId(0), incarnation: 1, number: id.client.0 },
                vote: Vote::No(NoReason::AlreadyCompleted(completed)),
                round: 1,
            }
        }),
        (request_id(), outcome).prop_map(|(id, outcome)| Frame::Reply(Reply { id, outcome })),
        (any::<u64>(), 0u8..7, message).prop_map(|(cluster, from, message)| Frame::Peer {
            cluster: ClusterId(cluster),
            from: NodeId(from),
            message
        }),
        Just(Frame::Error(FrameError::BadMagic)),
    ]
}

fn record_value() -> impl Strategy<Value = Record> {
    prop_oneof![
        any::<u64>().prop_map(|incarnation| Record::Boot { incarnation }),
        any::<u64>().prop_map(|incarnation| Record::BootTracked { incarnation }),
        txn_record().prop_map(Record::Prepared),
        txn_id().prop_map(|txn| Record::Committed { txn }),
        txn_id().prop_map(|txn| Record::Aborted { txn }),
        txn_record().prop_map(Record::Decided),
        txn_id().prop_map(|txn| Record::Forgotten { txn }),
        txn_record().prop_map(|txn| Record::PreparedInEpoch { epoch: Epoch::FIRST, txn }),
        txn_id().prop_map(|txn| Record::CommitDecided { txn }),
        txn_id().prop_map(|txn| Record::CommitLearned { txn }),
        txn_id().prop_map(|below| Record::FinishedBelow { below }),
        (txn_record(), txn_id()).prop_map(|(t, txn)| Record::SnapshotBeginInEpoch(Box::new(SnapshotHeaderInEpoch {
            incarnation: 4,
            epoch: Epoch::FIRST,
            completions: vec![],
            prepared: vec![t.clone()],
            commits_held: vec![t.clone()],
            decisions: vec![dkv_core::record::DecisionState { decision: t, applied: false }],
            commit_memory: vec![txn],
        }))),
        prop::collection::vec((bytes(8), bytes(8)), 0..4).prop_map(|entries| Record::SnapshotEntries(
            entries.into_iter().map(|(key, value)| dkv_core::record::Entry { key, value }).collect()
        )),
        any::<u64>().prop_map(|entries| Record::SnapshotEnd { entries }),
        prop::collection::vec((bytes(8), bytes(8), any::<u64>()), 0..4).prop_map(|entries| {
            Record::SnapshotVersionedEntries(
                entries
                    .into_iter()
                    .map(|(key, value, version)| dkv_core::record::VersionedEntry { key, value, version })
                    .collect(),
            )
        }),
        prop::collection::vec((request_id(), completed()), 0..4).prop_map(|completions| {
            Record::SnapshotBegin(Box::new(SnapshotHeader {
                incarnation: 3,
                completions: completions
                    .into_iter()
                    .map(|(request, outcome)| dkv_core::completions::CompletionRecord { request, outcome })
                    .collect(),
                prepared: vec![],
                decisions: vec![],
            }))
        }),
    ]
}

proptest! {
    /// Every frame survives encode then decode, over a stream and as a datagram.
    #[test]
    fn frame_round_trips(f in frame_value()) {
        let bytes = frame::encode_to_vec(&f);
        let (decoded, used) = frame::decode_stream(&bytes, MAX).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(&decoded, &f);
        prop_assert_eq!(frame::decode_datagram(&bytes, MAX).unwrap(), f);
    }

    /// A stream decoder fed any prefix of a frame asks for more instead of failing; a datagram
    /// holding only a prefix is truncated, and says by how many bytes (up to the end of the
    /// header while the header is incomplete, else up to the end of the frame).
    #[test]
    fn frame_prefix_needs_more_bytes(f in frame_value(), cut in any::<prop::sample::Index>()) {
        let bytes = frame::encode_to_vec(&f);
        let cut = cut.index(bytes.len());
        prop_assert_eq!(frame::decode_stream(&bytes[..cut], MAX), Ok(None));
        let missing = if cut < frame::HEADER_BYTES { frame::HEADER_BYTES - cut } else { bytes.len() - cut };
        prop_assert_eq!(frame::decode_datagram(&bytes[..cut], MAX), Err(FrameError::Truncated { missing: missing as u64 }));
    }

    /// Valid frames with a few bytes overwritten never panic the decoders, and whatever still
    /// decodes re-encodes to a frame that decodes to the same value. (Mutating valid frames,
    /// rather than drawing random bytes, gets past the header nearly every time.)
    #[test]
    fn mutated_frames_never_panic_and_what_decodes_round_trips(
        f in frame_value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = frame::encode_to_vec(&f);
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        for decoded in [frame::decode_stream(&bytes, MAX).ok().flatten().map(|(f, _)| f), frame::decode_datagram(&bytes, MAX).ok()]
            .into_iter()
            .flatten()
        {
            let again = frame::encode_to_vec(&decoded);
            prop_assert_eq!(frame::decode_datagram(&again, MAX).unwrap(), decoded);
        }
    }

    /// Arbitrary payloads behind a valid header are refused as malformed (the header is fine,
    /// so nothing else may be said), unless they happen to be a frame, which then round-trips.
    #[test]
    fn frame_payload_garbage_is_malformed(payload in bytes(256)) {
        let mut bytes = b"dkv".to_vec();
        bytes.push(frame::VERSION);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&payload);
        match frame::decode_datagram(&bytes, MAX) {
            Err(error) => prop_assert!(matches!(error, FrameError::Malformed { .. }), "{error:?}"),
            Ok(f) => prop_assert_eq!(frame::decode_datagram(&frame::encode_to_vec(&f), MAX).unwrap(), f),
        }
    }

    /// WAL records round-trip through a segment.
    #[test]
    fn wal_round_trips(records in prop::collection::vec(record_value(), 0..8)) {
        let mut bytes = Vec::new();
        for r in &records {
            wal::encode(r, &mut bytes);
        }
        let scan = wal::scan(&bytes);
        prop_assert_eq!(scan.end, WalEnd::Clean);
        prop_assert_eq!(scan.valid_len, bytes.len());
        prop_assert_eq!(scan.records, records);
    }

    /// A segment cut anywhere yields exactly the whole records before the cut, and a torn tail.
    #[test]
    fn wal_torn_tail_yields_clean_prefix(records in prop::collection::vec(record_value(), 1..8), cut in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for r in &records {
            wal::encode(r, &mut bytes);
            ends.push(bytes.len());
        }
        let cut = cut.index(bytes.len());
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let scan = wal::scan(&bytes[..cut]);
        prop_assert_eq!(&scan.records[..], &records[..whole]);
        let at_boundary = cut == 0 || ends.contains(&cut);
        prop_assert_eq!(matches!(scan.end, WalEnd::Clean), at_boundary);
        let corrupt = matches!(scan.end, WalEnd::Corrupt { .. });
        prop_assert!(!corrupt);
    }

    /// A segment read through windows of any size, as the server reads it (reading on when a
    /// record is cut short by the window, and handing the rest of the segment to the classifier
    /// on damage), gives exactly what a scan of the whole segment gives.
    #[test]
    fn wal_windowed_read_matches_scan(
        records in prop::collection::vec(record_value(), 0..6),
        garbage in bytes(24),
        zeros in 0usize..64,
        window in 1usize..64,
    ) {
        let mut segment = Vec::new();
        for r in &records {
            wal::encode(r, &mut segment);
        }
        segment.extend_from_slice(&garbage);
        segment.resize(segment.len() + zeros, 0);
        let whole = wal::scan(&segment);
        let mut records = Vec::new();
        let mut start = 0;
        let mut held = window.min(segment.len());
        let (valid_len, end) = loop {
            let read = wal::decode_records(&segment[start..held], held < segment.len(), &mut records);
            start += read.len;
            match read.stop {
                wal::RecordsStop::End => break (start, WalEnd::Clean),
                wal::RecordsStop::NeedsBytes { record_bytes } => {
                    prop_assert!(record_bytes > held - start);
                    held = (start + record_bytes.max(window)).min(segment.len());
                }
                wal::RecordsStop::Damaged(error) => break (start, wal::classify_damage(&segment[start..], start, error)),
            }
        };
        prop_assert_eq!(records, whole.records);
        prop_assert_eq!(valid_len, whole.valid_len);
        prop_assert_eq!(end, whole.end);
    }

    /// Records, then zeros: the zeros end the records, never as damage.
    #[test]
    fn wal_records_then_zeros_end_in_zeros(records in prop::collection::vec(record_value(), 0..8), zeros in 1usize..64) {
        let mut bytes = Vec::new();
        for r in &records {
            wal::encode(r, &mut bytes);
        }
        let len = bytes.len();
        bytes.resize(len + zeros, 0);
        let scan = wal::scan(&bytes);
        prop_assert_eq!(scan.records, records);
        prop_assert_eq!(scan.valid_len, len);
        prop_assert_eq!(scan.end, WalEnd::Zeros);
    }

    /// Arbitrary bytes as a segment never panic, and every record found is exactly the
    /// checksummed bytes it was read from: re-encoding the records gives the clean prefix back.
    #[test]
    fn wal_scan_never_panics_and_finds_only_real_records(bytes in bytes(512)) {
        let scan = wal::scan(&bytes);
        prop_assert!(scan.valid_len <= bytes.len());
        let mut again = Vec::new();
        for record in &scan.records {
            wal::encode(record, &mut again);
        }
        prop_assert_eq!(&again[..], &bytes[..scan.valid_len]);
    }
}

/// A frame header announcing more than the limit is refused before any payload is buffered;
/// one announcing exactly the limit is waited for.
#[test]
fn oversized_frame_is_refused_from_its_header() {
    let header = |len: u32| {
        let mut bytes = b"dkv".to_vec();
        bytes.push(frame::VERSION);
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes
    };
    assert_eq!(
        frame::decode_stream(&header(MAX + 1), MAX),
        Err(FrameError::TooLarge { len: u64::from(MAX) + 1, max: MAX })
    );
    assert_eq!(frame::decode_stream(&header(MAX), MAX), Ok(None), "a frame of exactly the limit is legal");
}

/// Wrong magic and wrong version are told apart, with messages that say what to do.
#[test]
fn bad_magic_and_version_are_typed_errors() {
    assert_eq!(frame::decode_stream(b"GET / HTTP/1.1\r\n", MAX), Err(FrameError::BadMagic));
    let err = frame::decode_stream(b"dkv\x09\0\0\0\0", MAX).unwrap_err();
    assert_eq!(err, FrameError::UnsupportedVersion { found: 9 });
    assert!(err.to_string().contains("upgrade"));
}

/// A flipped byte in the middle of a log, with valid records after it, is corruption (never a
/// torn tail to be silently truncated), and no record is invented from the damage.
#[test]
fn wal_damage_before_valid_records_is_corruption() {
    let records: Vec<Record> = (0..5).map(|i| Record::Boot { incarnation: i }).collect();
    let mut bytes = Vec::new();
    let mut ends = vec![0];
    for r in &records {
        wal::encode(r, &mut bytes);
        ends.push(bytes.len());
    }
    bytes[ends[1] + 9] ^= 0x40; // inside the payload of the second record
    let scan = wal::scan(&bytes);
    assert_eq!(scan.records, records[..1]);
    assert!(
        matches!(scan.end, WalEnd::Corrupt { offset, next_valid: Some(next), .. } if offset == ends[1] && next == ends[2])
    );
}

/// The same when the one record after the damage is the log's last and a large one: the search
/// for a valid record tries every length that fits in what follows the damage.
#[test]
fn wal_damage_before_one_large_last_record_is_corruption() {
    let records = [
        Record::Boot { incarnation: 1 },
        Record::SnapshotEntries(vec![dkv_core::record::Entry { key: b"k".to_vec(), value: vec![7; 300] }]),
    ];
    let mut bytes = Vec::new();
    wal::encode(&records[0], &mut bytes);
    let second = bytes.len();
    wal::encode(&records[1], &mut bytes);
    bytes[second - 1] ^= 0x40; // inside the payload of the first record
    let scan = wal::scan(&bytes);
    assert!(scan.records.is_empty());
    assert!(
        matches!(scan.end, WalEnd::Corrupt { offset: 0, next_valid: Some(next), .. } if next == second),
        "{:?}",
        scan.end
    );
}

/// Zeros after the last record (a preallocated tail) end the records without damage: they are
/// told apart from a torn tail, which would be truncated.
#[test]
fn wal_zero_tail_is_preallocation() {
    let mut bytes = wal::encode_to_vec(&Record::Boot { incarnation: 1 });
    let len = bytes.len();
    bytes.extend_from_slice(&[0; 100]);
    let scan = wal::scan(&bytes);
    assert_eq!(scan.records.len(), 1);
    assert_eq!(scan.valid_len, len);
    assert_eq!(scan.end, WalEnd::Zeros);
}

/// A half-written record inside the preallocated zeros is a torn tail, and only its non-zero
/// bytes count as torn.
#[test]
fn wal_torn_record_before_zeros_is_torn() {
    let mut bytes = wal::encode_to_vec(&Record::Boot { incarnation: 1 });
    let len = bytes.len();
    let torn = wal::encode_to_vec(&Record::Boot { incarnation: 2 });
    bytes.extend_from_slice(&torn[..6]);
    bytes.extend_from_slice(&[0; 100]);
    let scan = wal::scan(&bytes);
    assert_eq!(scan.records.len(), 1);
    let nonzero = torn[..6].iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(
        matches!(scan.end, WalEnd::Torn { offset, torn_bytes, .. } if offset == len && torn_bytes == nonzero),
        "{:?}",
        scan.end
    );
}

/// Damage followed by a valid record further into the zero-filled part is still corruption.
#[test]
fn wal_damage_then_a_record_among_zeros_is_corruption() {
    let mut bytes = wal::encode_to_vec(&Record::Boot { incarnation: 1 });
    let len = bytes.len();
    bytes.extend_from_slice(&[0xab; 5]);
    bytes.extend_from_slice(&[0; 50]);
    let next = bytes.len();
    wal::encode(&Record::Boot { incarnation: 3 }, &mut bytes);
    bytes.extend_from_slice(&[0; 50]);
    let scan = wal::scan(&bytes);
    assert!(
        matches!(scan.end, WalEnd::Corrupt { offset, next_valid: Some(at), .. } if offset == len && at == next),
        "{:?}",
        scan.end
    );
}

/// The frame limit the decoders enforce fits the largest transaction the limits allow — as a
/// client's request and as a peer's PREPARE, each key and value at its longest — and exceeds
/// it by no more than the stated per-op and envelope overheads, so a connection buffers no more
/// than a legal frame needs.
#[test]
fn frame_limit_fits_the_largest_legal_transaction_and_little_more() {
    let limits =
        Limits { key_bytes_max: 16, value_bytes_max: 496, txn_ops_max: 8, txn_bytes_max: 8 * 512, ..Limits::default() };
    let op = |i: u8| TxnOp::Put { key: vec![i; 16], value: vec![i; 496] };
    let ops: Vec<TxnOp> = (0..8).map(op).collect();
    assert_eq!(limits.check_ops(&ops), Ok(()), "the transaction is as large as the limits allow");
    let request = RequestId { client: ClientId(u64::MAX), seq: u64::MAX };
    let txn = TxnId { coordinator: NodeId(63), incarnation: u64::MAX, number: u64::MAX };
    let frames = [
        Frame::Request(Request { id: request, operation: Operation::Txn { ops: ops.clone() } }),
        Frame::Peer {
            cluster: ClusterId(u64::MAX),
            from: NodeId(63),
            message: Message::Prepare {
                epoch: Epoch::FIRST,
                txn,
                request,
                ops: ops.into(),
                participants: NodeSet::first(64),
                round: u64::MAX,
            },
        },
    ];
    let max = limits.frame_bytes_max();
    for f in frames {
        let bytes = frame::encode_to_vec(&f);
        assert_eq!(frame::decode_stream(&bytes, max), Ok(Some((f, bytes.len()))));
        let slack = u64::from(max) - bytes.len() as u64;
        assert!(slack <= 8 * 16 + 1024, "the limit of {max} bytes is {slack} bytes above a {}-byte frame", bytes.len());
    }
}

/// With the default limits too, where a transaction of the most ops (1,024) and the most bytes
/// (16 MiB) has a few bytes of encoding per op: the limit leaves room for all of them.
#[test]
fn frame_limit_fits_the_largest_transaction_of_the_default_limits() {
    let limits = Limits::default();
    let (ops_max, bytes_max) = (limits.txn_ops_max as usize, limits.txn_bytes_max as usize);
    let value_bytes = bytes_max / ops_max - 16;
    let ops: Vec<TxnOp> = (0..ops_max)
        .map(|i| TxnOp::Put { key: format!("{i:016}").into_bytes(), value: vec![1; value_bytes] })
        .collect();
    assert_eq!(limits.check_ops(&ops), Ok(()));
    let request = RequestId { client: ClientId(u64::MAX), seq: u64::MAX };
    let bytes = frame::encode_to_vec(&Frame::Request(Request { id: request, operation: Operation::Txn { ops } }));
    assert!(bytes.len() > bytes_max + 2 * ops_max, "{} bytes: each op takes a few bytes of encoding", bytes.len());
    assert!(
        bytes.len() <= limits.frame_bytes_max() as usize,
        "{} bytes over the limit of {}",
        bytes.len(),
        limits.frame_bytes_max()
    );
}

/// A record cut short says how long its header claims it is and how many payload bytes there
/// are, and a record cut inside its header says how many bytes there are.
#[test]
fn wal_record_cut_short_says_what_is_there() {
    let mut bytes = Vec::new();
    wal::encode(&Record::Boot { incarnation: 7 }, &mut bytes);
    let len = (bytes.len() - wal::RECORD_FRAMING_BYTES) as u32;
    for cut in wal::RECORD_HEADER_BYTES..bytes.len() {
        let available = cut - wal::RECORD_HEADER_BYTES;
        assert_eq!(wal::decode_one(&bytes[..cut]), Err(wal::RecordError::ShortPayload { len, available }));
    }
    let needed = wal::RECORD_HEADER_BYTES;
    for available in [3, 4, 11] {
        assert_eq!(wal::decode_one(&bytes[..available]), Err(wal::RecordError::ShortHeader { available, needed }));
    }
}
