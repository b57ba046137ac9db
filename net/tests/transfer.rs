//! State transfer pieces on their own (no sockets): a member's log read through a
//! [`LogSource`], cut into chunks anywhere, reassembled, adopted as the receiver's and installed
//! by a [`TransferSink`]; what the receiver's node then recovers.

use dkv_core::codec::wal;
use dkv_core::completions::{Completed, CompletionRecord};
use dkv_core::configuration::Epoch;
use dkv_core::record::{DecisionState, TxnRecord, VersionedEntry};
use dkv_core::{ClientId, ClusterId, Config, Node, NodeId, NodeSet, Record, RequestId, Snapshot, Time, TxnId, TxnOp};
use dkv_net::identity::Identity;
use dkv_net::transfer::{AdoptError, Adoption, LogSource, RecordAssembler, STAGING_FILE_NAME, TransferSink};
use dkv_net::wal::{Wal, segment_number};
use std::fs;
use std::path::Path;

const MEMBER: NodeId = NodeId(0);
const RECEIVER: NodeId = NodeId(1);
const OTHER: NodeId = NodeId(2);

fn txn(coordinator: NodeId, incarnation: u64, number: u64) -> TxnId {
    TxnId { coordinator, incarnation, number }
}

/// A transaction putting `key` = `value`, for client `client`.
fn put(txn: TxnId, client: u64, key: &str, value: &str) -> TxnRecord {
    TxnRecord {
        txn,
        request: RequestId { client: ClientId(client), seq: 1 },
        ops: vec![TxnOp::Put { key: key.into(), value: value.into() }].into(),
        participants: NodeSet::first(3),
    }
}

fn entry(key: &str, value: &str) -> VersionedEntry {
    VersionedEntry { key: key.into(), value: value.into(), version: 1 }
}

/// A member's log holding every kind of record a transfer meets: a snapshot whose header holds
/// prepared transactions (another coordinator's; the receiver's own, from an earlier life),
/// an applied and an unapplied decision of the member's; then a boot, a decision of the
/// member's, and outcomes of everything prepared.
fn member_log() -> Vec<Record> {
    let applied = put(txn(MEMBER, 3, 1), 10, "applied", "a");
    let mut records = Snapshot {
        incarnation: 3,
        epoch: Epoch::FIRST,
        entries: vec![entry("applied", "a"), entry("k", "v")],
        completions: vec![CompletionRecord { request: applied.request, outcome: Completed::Committed(vec![]) }],
        prepared: vec![put(txn(OTHER, 2, 7), 11, "other", "o"), put(txn(RECEIVER, 9, 4), 12, "own", "r")],
        decisions: vec![
            DecisionState { decision: applied, applied: true },
            DecisionState { decision: put(txn(MEMBER, 3, 2), 13, "unapplied", "u"), applied: false },
        ],
        commits_held: vec![],
        commit_memory: vec![],
    }
    .into_records();
    let decided = put(txn(MEMBER, 4, 1), 14, "decided", "d");
    records.extend([
        Record::BootTracked { incarnation: 4 },
        Record::Decided(decided.clone()),
        Record::Committed { txn: txn(OTHER, 2, 7) },
        Record::Committed { txn: txn(RECEIVER, 9, 4) },
        Record::Forgotten { txn: decided.txn },
    ]);
    records
}

/// A node of the cluster, with configuration changes on: a state transfer only happens then
/// (docs/protocol.md §7.6), and only then does a restored decision wait to be visible (§7.2).
fn start(id: NodeId, records: Vec<Record>) -> Node {
    let mut config = Config::new(id, NodeSet::first(3));
    config.timing.leases = true;
    Node::start(config, records, Time::ZERO).expect("the log replays")
}

/// Encodes `records` as a log's bytes.
fn encode(records: &[Record]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for record in records {
        wal::encode(record, &mut bytes);
    }
    bytes
}

/// Adopts the records `bytes` encode, fed in chunks of `chunk` bytes.
fn adopt_bytes(bytes: &[u8], chunk: usize, floor: u64) -> Result<(Vec<Record>, u64), AdoptError> {
    let mut assembler = RecordAssembler::default();
    let mut adoption = Adoption::new(RECEIVER, floor);
    let (mut received, mut adopted) = (Vec::new(), Vec::new());
    for piece in bytes.chunks(chunk) {
        assembler.push(piece, &mut received)?;
        for record in received.drain(..) {
            adoption.adopt(record, &mut adopted)?;
        }
    }
    assembler.finish()?;
    let floor = adoption.finish()?;
    adopted.push(Record::BootTracked { incarnation: floor });
    Ok((adopted, floor))
}

/// The receiver's node, started on the adopted log, holds the member's store and completion
/// records exactly; none of the member's decisions become its own, it holds nothing prepared
/// that the stream settled, and its incarnation is above both its own floor and its own
/// transaction the stream named.
#[test]
fn adopted_log_gives_the_receiver_the_members_data_and_none_of_its_roles() {
    let member = start(MEMBER, member_log()).snapshot();
    let (adopted, floor) = adopt_bytes(&encode(&member_log()), 1 << 20, 5).unwrap();
    assert_eq!(floor, 9, "the receiver's own transaction of incarnation 9 raises the floor");
    let receiver = start(RECEIVER, adopted);
    let snapshot = receiver.snapshot();
    assert_eq!(snapshot.entries, member.entries, "the same store");
    assert_eq!(snapshot.completions, member.completions, "the same exactly-once answers");
    assert!(snapshot.decisions.is_empty(), "no decision of the member's became the receiver's");
    assert!(snapshot.prepared.is_empty(), "everything prepared was settled in the stream");
    assert!(receiver.incarnation() > 9, "incarnation {} must be above 9", receiver.incarnation());
    let keys: Vec<&[u8]> = snapshot.entries.iter().map(|e| e.key.as_slice()).collect();
    // The member's decision its snapshot had not applied is not visible yet (docs/protocol.md
    // §7.2): the member holds it unapplied after a replay, and so does the receiver, as a
    // commit it learned, until it is told the commit is visible or finished.
    let expected: [&[u8]; 5] = [b"applied", b"decided", b"k", b"other", b"own"];
    assert_eq!(keys, expected);
    let held: Vec<TxnId> = snapshot.commits_held.iter().map(|t| t.txn).collect();
    assert_eq!(held, [txn(MEMBER, 3, 2)], "the unapplied decision is held as a learned commit");
}

/// Records cut across chunks at any byte reassemble to the same records, and adopt the same.
#[test]
fn records_cut_anywhere_across_chunks_reassemble() {
    let bytes = encode(&member_log());
    let (whole, _) = adopt_bytes(&bytes, bytes.len(), 0).unwrap();
    for chunk in 1..64 {
        let (pieces, _) = adopt_bytes(&bytes, chunk, 0).unwrap();
        assert_eq!(pieces, whole, "chunks of {chunk} bytes");
    }
}

/// A damaged record, a stream that stops inside a record or inside its snapshot, and a record
/// claiming more than a transfer carries are each refused, and the claimed length is never
/// allocated.
#[test]
fn damaged_or_cut_streams_are_refused() {
    let bytes = encode(&member_log());
    let mut flipped = bytes.clone();
    flipped[20] ^= 0x40;
    assert!(matches!(adopt_bytes(&flipped, 4096, 0), Err(AdoptError::Damaged { .. })));
    assert!(matches!(adopt_bytes(&bytes[..bytes.len() - 3], 4096, 0), Err(AdoptError::EndsInsideRecord { .. })));
    let snapshot_only = encode(&member_log()[..2]);
    assert!(matches!(adopt_bytes(&snapshot_only, 4096, 0), Err(AdoptError::EndsInsideSnapshot)));
    let mut huge = ((1u32 << 30) - 1).to_le_bytes().to_vec();
    huge.extend_from_slice(&[0xab; 100]);
    let mut assembler = RecordAssembler::default();
    assert!(matches!(assembler.push(&huge, &mut Vec::new()), Err(AdoptError::RecordTooLarge { .. })));
    assert!(assembler.high_water_bytes() <= huge.len());
}

/// The receiver's own transaction prepared at the member with no outcome in the stream cannot
/// be decided by the receiver any more: the transfer is refused, naming it.
#[test]
fn own_transaction_in_doubt_refuses_the_transfer() {
    let mut log = member_log();
    log.retain(|r| !matches!(r, Record::Committed { txn } if txn.coordinator == RECEIVER));
    let error = adopt_bytes(&encode(&log), 4096, 0).unwrap_err();
    assert_eq!(error, AdoptError::OwnTransactionInDoubt { txn: txn(RECEIVER, 9, 4) });
}

/// The receiver's own transaction, prepared at the member while versions were tracked and
/// committed after an earlier build's boot (which tracks none), is applied as the member
/// applied it: with a version, not an unknown one.
#[test]
fn own_commit_is_applied_in_the_versions_mode_it_was_prepared_in() {
    let own = put(txn(RECEIVER, 1, 1), 30, "own", "r");
    let log = vec![
        Record::BootTracked { incarnation: 1 },
        Record::Prepared(own.clone()),
        Record::Boot { incarnation: 2 },
        Record::Committed { txn: own.txn },
    ];
    let member = start(MEMBER, log.clone()).snapshot();
    assert_ne!(member.entries[0].version, 0, "the member applied it with a version");
    let (adopted, _) = adopt_bytes(&encode(&log), 5, 0).unwrap();
    assert_eq!(start(RECEIVER, adopted).snapshot().entries, member.entries);
}

/// A member's log with no snapshot yet is adopted from the empty state.
#[test]
fn log_without_a_snapshot_is_adopted_from_the_empty_state() {
    let t = put(txn(MEMBER, 1, 1), 20, "x", "1");
    let log =
        vec![Record::BootTracked { incarnation: 1 }, Record::Decided(t.clone()), Record::Forgotten { txn: t.txn }];
    let member = start(MEMBER, log.clone()).snapshot();
    let (adopted, _) = adopt_bytes(&encode(&log), 7, 0).unwrap();
    assert!(matches!(adopted[0], Record::SnapshotBegin(_)));
    assert_eq!(start(RECEIVER, adopted).snapshot().entries, member.entries);
}

fn identity(node: NodeId) -> Identity {
    Identity { cluster: ClusterId(77), node }
}

/// Every record of `dir`'s log, as recovery reads it.
fn recovered(dir: &Path) -> Vec<Record> {
    Wal::open_as(dir, identity(RECEIVER)).unwrap().1.records
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> =
        fs::read_dir(dir).unwrap().filter_map(|e| segment_number(e.unwrap().file_name().to_str()?)).collect();
    numbers.sort();
    numbers
}

/// Writes `records` to the log in `dir` as node `node`.
fn write_log(dir: &Path, node: NodeId, records: &[Record]) {
    let (mut log, _) = Wal::open_as(dir, identity(node)).unwrap();
    for record in records {
        log.append(record).unwrap();
    }
    log.sync().unwrap();
}

/// The sink writes nothing into the log until it finishes: abandoned (or crashed: its staging
/// file left behind) the dir recovers its old records; finished, it recovers the adopted log
/// alone, from one new segment, and its IDENTITY file is byte for byte the same.
#[test]
fn sink_replaces_the_log_at_once_or_not_at_all() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("receiver");
    let old = vec![Record::BootTracked { incarnation: 6 }];
    write_log(&dir, RECEIVER, &old);
    let identity_bytes = fs::read(dir.join("IDENTITY")).unwrap();
    let bytes = encode(&member_log());

    let mut sink = TransferSink::create(&dir, identity(RECEIVER), 6).unwrap();
    sink.write_chunk(&bytes[..bytes.len() / 2]).unwrap();
    drop(sink);
    assert!(!dir.join(STAGING_FILE_NAME).exists(), "an abandoned transfer leaves nothing");
    assert_eq!(recovered(&dir), old);

    let mut sink = TransferSink::create(&dir, identity(RECEIVER), 6).unwrap();
    sink.write_chunk(&bytes[..bytes.len() / 2]).unwrap();
    // A crash: the staging file stays. The leaked sink still holds the dir's lock, so the files
    // are copied as a restarted process would find them, and recovered there.
    std::mem::forget(sink);
    let copy = root.path().join("copy");
    fs::create_dir(&copy).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    assert!(copy.join(STAGING_FILE_NAME).exists());
    assert_eq!(recovered(&copy), old, "a crash mid-transfer leaves the old log");
    let mut sink = TransferSink::create(&copy, identity(RECEIVER), 6).unwrap();
    for piece in bytes.chunks(1000) {
        sink.write_chunk(piece).unwrap();
    }
    let installed = sink.finish().unwrap();
    assert_eq!(installed.incarnation_floor, 9);
    assert_eq!(segments(&copy), vec![installed.log.segment]);
    assert!(!copy.join(STAGING_FILE_NAME).exists());
    let (adopted, _) = adopt_bytes(&bytes, bytes.len(), 6).unwrap();
    assert_eq!(recovered(&copy), adopted);
    assert_eq!(fs::read(copy.join("IDENTITY")).unwrap(), identity_bytes, "the dir stays the receiver's");
}

/// A sink refuses another node's data dir: the transfer never writes into it.
#[test]
fn sink_refuses_another_nodes_data_dir() {
    let root = tempfile::tempdir().unwrap();
    write_log(root.path(), OTHER, &[Record::BootTracked { incarnation: 1 }]);
    assert!(TransferSink::create(root.path(), identity(RECEIVER), 0).is_err());
}

/// Reads a source whole, in chunks of `chunk` bytes, checking none is larger.
fn read_all(source: &mut LogSource, chunk: usize) -> Vec<u8> {
    let mut all = Vec::new();
    let mut piece = Vec::new();
    loop {
        source.next_chunk(chunk, &mut piece).unwrap();
        if piece.is_empty() {
            return all;
        }
        assert!(piece.len() <= chunk);
        all.extend_from_slice(&piece);
    }
}

fn snapshot_of(incarnation: u64, keys: usize) -> Vec<Record> {
    let entries = (0..keys).map(|i| entry(&format!("key{i:06}"), "value")).collect();
    Snapshot { incarnation, entries, ..Snapshot::default() }.into_records()
}

/// A source sends the member's newest complete snapshot and every durable record after it,
/// nothing older and nothing unsynced; and a compaction while it is read (a newer snapshot
/// ends, the older segments are deleted) does not disturb it: its segments stay pinned.
#[test]
fn source_sends_the_newest_complete_snapshot_on_through_compaction() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, _) = Wal::open_as(root.path(), identity(MEMBER)).unwrap();
    log.append(&Record::BootTracked { incarnation: 1 }).unwrap();
    let first = snapshot_of(1, 5000);
    for record in &first {
        log.append(record).unwrap();
    }
    log.append(&Record::BootTracked { incarnation: 2 }).unwrap();
    log.sync().unwrap();
    log.append(&Record::BootTracked { incarnation: 3 }).unwrap(); // not synced: not sent
    let mut expected = first.clone();
    expected.push(Record::BootTracked { incarnation: 2 });

    let mut source = LogSource::open(&log).unwrap();
    let mut piece = Vec::new();
    source.next_chunk(1000, &mut piece).unwrap();
    let mut sent = piece.clone();
    // A newer snapshot begins: until its end is durable, a new source still ends before it.
    let second = snapshot_of(3, 10);
    log.append(&second[0]).unwrap();
    log.sync().unwrap();
    let mut during = LogSource::open(&log).unwrap();
    let mut until_pending = expected.clone();
    until_pending.push(Record::BootTracked { incarnation: 3 });
    assert_eq!(wal::scan(&read_all(&mut during, 777)).records, until_pending);
    // It ends; the older segments are deleted, and the first source reads on regardless.
    for record in &second[1..] {
        log.append(record).unwrap();
    }
    log.sync().unwrap();
    assert_eq!(segments(root.path()).len(), 1, "compacted to the newest snapshot's segment");
    sent.extend(read_all(&mut source, 1000));
    assert_eq!(wal::scan(&sent).records, expected);
    let mut after = LogSource::open(&log).unwrap();
    assert_eq!(wal::scan(&read_all(&mut after, 4096)).records, second, "a new source starts at the new snapshot");
}
