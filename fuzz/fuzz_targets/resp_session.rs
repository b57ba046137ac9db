//! Arbitrary bytes into a Redis protocol session, as a client could send them: never a panic,
//! the decoder never takes more than it was given, and the replies do not depend on how the
//! bytes were split across reads (whole, or in chunks of a size the input picks).
#![no_main]

use dkv_core::{Limits, OpResult, Operation, Outcome, TxnOp};
use dkv_net::resp::cursors::ScanCursors;
use dkv_net::resp::decode::{DecodeLimits, decode_command};
use dkv_net::resp::introspection::NodeFacts;
use dkv_net::resp::session::{Host, Session, SessionLimits};
use libfuzzer_sys::fuzz_target;

/// Answers every request the same way, whatever it asks: a node with no keys that commits
/// every transaction.
struct Answering {
    cursors: ScanCursors,
}

impl Host for Answering {
    fn auth_required(&self) -> bool {
        false
    }

    fn authenticate(&self, _: &[u8], _: &[u8]) -> Option<usize> {
        None
    }

    fn facts(&self, _user: Option<usize>) -> NodeFacts {
        NodeFacts { node_id: 0, members: 1, keys: Some(0) }
    }

    fn cursors(&mut self) -> &mut ScanCursors {
        &mut self.cursors
    }
}

fn answer(operation: Operation) -> Outcome {
    match operation {
        Operation::Get { .. } => Outcome::NotFound,
        Operation::Txn { ops } => Outcome::Committed(
            ops.iter()
                .map(|op| match op {
                    TxnOp::Increment { .. } | TxnOp::Append { .. } => OpResult::Integer { value: 1, version: 1 },
                    TxnOp::Read { .. } | TxnOp::GetSet { .. } | TxnOp::GetDelete { .. } => {
                        OpResult::Value { value: None, version: 0 }
                    }
                    _ => OpResult::Done { version: 1 },
                })
                .collect(),
        ),
        Operation::Scan { .. } => Outcome::Scanned { entries: Vec::new(), next: None },
    }
}

fn replies(limits: SessionLimits, chunks: &mut dyn Iterator<Item = &[u8]>) -> Vec<u8> {
    let mut host = Answering { cursors: ScanCursors::new(1, 16) };
    let mut session = Session::new(limits, true, 1);
    let mut out = Vec::new();
    for chunk in chunks {
        session.receive(chunk);
        // Every request answered makes progress, and the work is bounded by the input's size;
        // the bound here only guards against a bug that loops.
        for _ in 0..1_000_000 {
            let Some(operation) = session.poll(&mut host) else { break };
            session.complete(&mut host, Ok(answer(operation)));
        }
        out.extend(session.take_output());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let decode_limits = DecodeLimits { args_max: 64, arg_bytes_max: 4096, command_bytes_max: 16_384 };
    let mut rest = data;
    while let Ok(Some(decoded)) = decode_command(rest, &decode_limits) {
        assert!(decoded.consumed > 0 && decoded.consumed <= rest.len());
        rest = &rest[decoded.consumed..];
    }
    let Some((&split, bytes)) = data.split_first() else { return };
    let limits = SessionLimits { decode: decode_limits, ..SessionLimits::for_limits(&Limits::default()) };
    let whole = replies(limits, &mut std::iter::once(bytes));
    let chunked = replies(limits, &mut bytes.chunks(usize::from(split % 16) + 1));
    assert_eq!(whole, chunked, "the replies depend on how the input was split");
});
