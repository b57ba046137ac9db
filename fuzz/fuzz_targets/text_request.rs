//! Arbitrary bytes as a request of the original text protocol, as a client or a forged
//! datagram could send them: never a panic; a request is read exactly when the bytes are
//! `<op>:<key>:<value>` with op 0..3 and no other `:`, and then carries exactly that key and
//! value; and every answer the node could give it is a `<status>:<text>` reply the original
//! client can split (a failure's text has no `:` of its own).
#![no_main]

use dkv_core::{FailReason, OpCode, OpFailure, OpResult, Operation, Outcome, RejectReason, TxnOp};
use dkv_net::text_protocol::{parse, reply, short_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fields: Vec<&[u8]> = data.split(|&b| b == b':').collect();
    let well_formed = fields.len() == 3 && matches!(fields[0], b"0" | b"1" | b"2" | b"3");
    let Some(request) = parse(data) else {
        assert!(!well_formed, "a well-formed request was refused: {data:?}");
        return;
    };
    assert!(well_formed, "malformed bytes were read as a request: {data:?}");
    let (key, value) = (fields[1], fields[2]);
    match (&request.op, &request.operation) {
        (OpCode::Get, Operation::Get { key: k }) => assert_eq!(k, key),
        (OpCode::Put, Operation::Txn { ops }) => assert_eq!(ops[..], [TxnOp::Put { key: key.into(), value: value.into() }]),
        (OpCode::Update, Operation::Txn { ops }) => {
            assert_eq!(ops[..], [TxnOp::Update { key: key.into(), value: value.into() }])
        }
        (OpCode::Delete, Operation::Txn { ops }) => assert_eq!(ops[..], [TxnOp::Delete { key: key.into() }]),
        (op, operation) => panic!("op {op:?} was read as {operation:?}"),
    }
    let answers = [
        Outcome::Committed(vec![OpResult::Done { version: 1 }]),
        Outcome::Value { value: value.to_vec(), version: 3 },
        Outcome::NotFound,
        Outcome::Failed(OpFailure { op_index: 0, reason: FailReason::KeyNotFound }),
        Outcome::Failed(OpFailure { op_index: 0, reason: FailReason::ConditionFailed }),
        Outcome::Rejected(RejectReason::EmptyTransaction),
    ];
    for answer in answers.into_iter().map(Ok) {
        let text = reply(request.op, &answer);
        assert!(text.starts_with(b"0:") || text.starts_with(b"1:"), "reply {text:?}");
        if text.starts_with(b"1:") {
            assert_eq!(text.iter().filter(|&&b| b == b':').count(), 1, "failure reply {text:?}");
        }
        let short = short_reply(&answer);
        assert!(short.starts_with(b"1:") && short.len() <= 32, "short reply {short:?}");
    }
});
