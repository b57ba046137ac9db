//! Arbitrary bytes as WAL segments and as a snapshot: recovery yields a clean prefix of valid
//! records or a clear error, never a panic, never an invented record; a node started from what
//! was recovered keeps its invariants.
#![no_main]

use dkv_core::codec::{WalEnd, wal};
use dkv_core::{Config, Node, NodeId, NodeSet, Record, Snapshot, Time};
use libfuzzer_sys::fuzz_target;

/// Zeros after a segment's bytes where the fuzzer asks for a preallocated tail.
const PREALLOCATED_ZEROS: usize = 64;

fn start(records: Vec<Record>) {
    let config = Config::new(NodeId(0), NodeSet::first(3));
    if let Ok(node) = Node::start(config, records, Time::ZERO) {
        node.check_invariants().expect("a recovered node is consistent");
    }
}

fuzz_target!(|data: &[u8]| {
    // The codec: the clean prefix is exactly the records that decode, each of which
    // round-trips; nothing past the first damage is ever returned.
    let scan = wal::scan(data);
    assert!(scan.valid_len <= data.len());
    let mut offset = 0;
    for record in &scan.records {
        let (decoded, used) = wal::decode_one(&data[offset..]).expect("records of the clean prefix decode");
        assert_eq!(&decoded, record);
        offset += used;
    }
    assert_eq!(offset, scan.valid_len);

    // The same bytes followed by zeros, as preallocation leaves a segment: zeros can complete
    // a record that was cut short but never unmake one, so the clean prefix can only grow; and
    // zeros after a clean end are told apart from damage.
    let mut padded = data.to_vec();
    padded.resize(data.len() + PREALLOCATED_ZEROS, 0);
    let padded_scan = wal::scan(&padded);
    assert!(padded_scan.records.starts_with(&scan.records));
    if scan.end == WalEnd::Clean {
        assert_eq!(padded_scan.end, WalEnd::Zeros);
        assert_eq!(padded_scan.valid_len, scan.valid_len);
    }
    start(padded_scan.records);
    start(scan.records);

    // The same bytes as a snapshot.
    if let Ok(snapshot) = postcard::from_bytes::<Snapshot>(data) {
        start(snapshot.into_records());
    }

    // The real on-disk recovery: the bytes split into two segment files.
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = usize::from(split) * rest.len() / 255;
    let dir = tempfile::tempdir().expect("a temporary directory");
    // An odd first byte leaves zeros after the last segment's bytes, as preallocation does.
    let zeros = if split % 2 == 1 { PREALLOCATED_ZEROS } else { 0 };
    let mut first = rest[..cut].to_vec();
    if cut < rest.len() {
        let mut second = rest[cut..].to_vec();
        second.resize(second.len() + zeros, 0);
        std::fs::write(dir.path().join("00000000000000000002.wal"), &second).expect("write segment");
    } else {
        first.resize(first.len() + zeros, 0);
    }
    std::fs::write(dir.path().join("00000000000000000001.wal"), &first).expect("write segment");
    if let Ok((_wal, recovery)) = dkv_net::wal::Wal::open(dir.path()) {
        start(recovery.records);
    }
});
