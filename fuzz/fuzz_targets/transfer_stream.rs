//! A state transfer's receiving side under arbitrary input: transfer frames decode, judge their
//! limits and round-trip; a stream (arbitrary bytes, or a member's log built from arbitrary
//! records, possibly damaged) cut into chunks of arbitrary sizes is reassembled into exactly the
//! records its clean prefix holds, holding never more than a chunk and one record, and is
//! adopted or refused, never a panic; an adopted log starts node 1 above its incarnation floor
//! (or is refused by recovery as contradictory), and the node keeps its invariants.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use dkv_core::codec::frame::{self, Frame};
use dkv_core::codec::wal;
use dkv_core::record::{TxnRecord, VersionedEntry};
use dkv_core::recovery::RecoveryError;
use dkv_core::{ClientId, Config, Node, NodeId, NodeSet, Record, RequestId, Snapshot, StartError, Time, TxnId, TxnOp};
use dkv_net::transfer::{Adoption, RecordAssembler, TRANSFER_RECORD_BYTES_MAX};
use libfuzzer_sys::fuzz_target;

const RECEIVER: NodeId = NodeId(1);
const FRAME_BYTES_MAX: u32 = 1 << 20;

/// One record of a member's log, in a small space of keys, coordinators and ids, so that
/// outcomes meet the transactions they name.
#[derive(Arbitrary, Debug)]
enum Step {
    Boot { incarnation: u8, tracked: bool },
    Prepared { coordinator: u8, incarnation: u8, number: u8, key: u8 },
    Committed { coordinator: u8, incarnation: u8, number: u8 },
    Aborted { coordinator: u8, incarnation: u8, number: u8 },
    Decided { coordinator: u8, incarnation: u8, number: u8, key: u8 },
    Forgotten { coordinator: u8, incarnation: u8, number: u8 },
}

fn txn_id(coordinator: u8, incarnation: u8, number: u8) -> TxnId {
    TxnId { coordinator: NodeId(coordinator % 3), incarnation: u64::from(incarnation % 4), number: u64::from(number % 8) }
}

fn put(txn: TxnId, key: u8) -> TxnRecord {
    TxnRecord {
        txn,
        request: RequestId { client: ClientId(u64::from(key)), seq: txn.number + 1 },
        ops: vec![TxnOp::Put { key: vec![b'k', key % 16], value: vec![key] }].into(),
        participants: NodeSet::first(3),
    }
}

/// A member's log: an optional snapshot of `keys` keys, then `steps`.
fn member_log(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let mut records = Vec::new();
    if bool::arbitrary(u)? {
        let keys = u8::arbitrary(u)?;
        let entries =
            (0..keys).map(|i| VersionedEntry { key: vec![b's', i], value: vec![i; 3], version: 1 }).collect();
        records.extend(Snapshot { incarnation: 1, entries, ..Snapshot::default() }.into_records());
    }
    for step in Vec::<Step>::arbitrary(u)? {
        records.push(match step {
            Step::Boot { incarnation, tracked: true } => Record::BootTracked { incarnation: u64::from(incarnation) },
            Step::Boot { incarnation, tracked: false } => Record::Boot { incarnation: u64::from(incarnation) },
            Step::Prepared { coordinator, incarnation, number, key } => {
                Record::Prepared(put(txn_id(coordinator, incarnation, number), key))
            }
            Step::Committed { coordinator, incarnation, number } => {
                Record::Committed { txn: txn_id(coordinator, incarnation, number) }
            }
            Step::Aborted { coordinator, incarnation, number } => {
                Record::Aborted { txn: txn_id(coordinator, incarnation, number) }
            }
            Step::Decided { coordinator, incarnation, number, key } => {
                Record::Decided(put(txn_id(coordinator, incarnation, number), key))
            }
            Step::Forgotten { coordinator, incarnation, number } => {
                Record::Forgotten { txn: txn_id(coordinator, incarnation, number) }
            }
        });
    }
    let mut bytes = Vec::new();
    for record in &records {
        wal::encode(record, &mut bytes);
    }
    if !bytes.is_empty() && bool::arbitrary(u)? {
        let at = usize::arbitrary(u)? % bytes.len();
        bytes[at] ^= u8::arbitrary(u)? | 1;
    }
    Ok(bytes)
}

fn start(id: NodeId, records: Vec<Record>) -> Result<Node, StartError> {
    Node::start(Config::new(id, NodeSet::first(3)), records, Time::ZERO)
}

fn receive(stream: &[u8], chunk_bytes: usize, floor: u64) {
    let mut assembler = RecordAssembler::default();
    let mut adoption = Adoption::new(RECEIVER, floor);
    let (mut received, mut all, mut adopted) = (Vec::new(), Vec::new(), Vec::new());
    for piece in stream.chunks(chunk_bytes) {
        let pushed = assembler.push(piece, &mut received);
        assert!(assembler.pending_bytes() <= chunk_bytes + TRANSFER_RECORD_BYTES_MAX);
        all.extend(received.iter().cloned());
        if pushed.is_err() {
            return;
        }
        for record in received.drain(..) {
            if adoption.adopt(record, &mut adopted).is_err() {
                return;
            }
        }
    }
    // The assembler yields exactly the records of the stream's clean prefix.
    assert_eq!(all, wal::scan(stream).records);
    if assembler.finish().is_err() {
        return;
    }
    let Ok(floor_reached) = adoption.finish() else { return };
    assert!(floor_reached >= floor);
    adopted.push(Record::BootTracked { incarnation: floor_reached });
    let shown = format!("{all:?}");
    let member = start(NodeId(0), all);
    let receiver = start(RECEIVER, adopted);
    if let Ok(node) = &receiver {
        assert!(node.incarnation() > floor_reached, "the incarnation never goes back");
        node.check_invariants().expect("an adopted log starts a consistent node");
    }
    // A log the member itself can replay is one the receiver can take, with the same data;
    // unless the member decided a transaction while it held another prepared on the same key
    // or request, which its locking never lets happen (its replay does not check a decision's
    // keys; the receiver's, where the decision becomes a prepared commit, does).
    if let Ok(member) = member {
        let receiver = match receiver {
            Ok(receiver) => receiver,
            Err(StartError::Recovery(RecoveryError::LockConflict { .. } | RecoveryError::DuplicateRequest { .. })) => {
                return;
            }
            Err(error) => panic!("the member's log replays, so the adopted one must: {error}: {shown}"),
        };
        let (m, r) = (member.snapshot(), receiver.snapshot());
        assert_eq!(m.entries, r.entries, "the receiver's store is the member's: {shown}");
        assert_eq!(m.completions, r.completions, "the receiver's completions are the member's");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((Frame::Transfer { message, .. }, _))) = frame::decode_stream(data, FRAME_BYTES_MAX) {
        let _ = message.check_limits();
        let again = frame::encode_to_vec(&Frame::Transfer { cluster: dkv_core::ClusterId(0), from: NodeId(0), message });
        assert!(frame::decode_stream(&again, u32::MAX).is_ok_and(|f| f.is_some()));
    }
    let mut u = Unstructured::new(data);
    let Ok(structured) = bool::arbitrary(&mut u) else { return };
    let Ok(chunk_bytes) = u16::arbitrary(&mut u) else { return };
    let Ok(floor) = u8::arbitrary(&mut u) else { return };
    let chunk_bytes = 1 + usize::from(chunk_bytes) % 300;
    let stream = if structured {
        let Ok(bytes) = member_log(&mut u) else { return };
        bytes
    } else {
        u.take_rest().to_vec()
    };
    receive(&stream, chunk_bytes, u64::from(floor));
});
