//! The original project's text protocol, answered byte for byte (see PROTOCOL-original.md in
//! the project's notes), so its `client.py` and the scripts written for it work unchanged.
//!
//! A request is `<op>:<key>:<value>`, op `0` update, `1` get, `2` delete, `3` put (get and
//! delete carry a value they ignore, `None` from the original client); a reply is
//! `<status>:<text>`, status `0` success, `1` failure. One request per TCP connection, or per
//! datagram; no length, no terminator, no escaping.
//!
//! With no terminator, a TCP request ends where the client stops sending. The original server
//! took what its first read returned; the original client sends a request with one `send`, so
//! a short request arrives whole in one read. So: a request of at most
//! [`SHORT_REQUEST_BYTES`] with its three fields is complete as soon as it has arrived; a
//! longer one (which may arrive in pieces) is complete when the client closes its sending half
//! or sends nothing more for [`QUIET_FOR`]. What dkv can answer that the original could not
//! (busy, unavailable, a write that may or may not have been applied, a limit) is answered
//! `1:<what happened>`.

use crate::gateway::GatewayError;
use crate::session::{SessionContext, StreamSession};
use dkv_core::{FailReason, OpCode, OpFailure, Operation, Outcome, Time, TxnOp};
use std::time::Duration;

/// Requests up to this many bytes are complete once their three fields have arrived: the
/// original client sends one with one `send`, and its replies fit 1,024 bytes.
pub(crate) const SHORT_REQUEST_BYTES: usize = 1024;
/// A longer request is complete once no byte arrived for this long: long enough that a
/// request's segments delayed on the way (a retransmission) are still waited for, since a
/// value cut short would be stored as it is.
pub(crate) const QUIET_FOR: Duration = Duration::from_millis(300);
/// Bytes of a request beyond its key and value: the op digit and the two separators.
const FRAMING_BYTES: usize = 3;

/// The reply to anything that is not a request.
pub(crate) const INVALID_INPUT: &[u8] = b"1:Invalid input";
/// The reply when the node requires users: the text protocol has no way to say who one is.
pub(crate) const AUTHENTICATION_REQUIRED: &[u8] =
    b"1:this node serves authenticated clients only, and the text protocol cannot authenticate; use dkv-client or a Redis client with a user";
/// The same, short enough for a datagram's reply to a short request (see
/// [`crate::routes::AMPLIFICATION_MAX`]).
pub(crate) const AUTHENTICATION_REQUIRED_SHORT: &[u8] = b"1:auth required";
/// The reply to a datagram whose answer would be too large to send back to its sender.
pub(crate) const TOO_LARGE_FOR_DATAGRAM: &[u8] = b"1:too large, use TCP";
/// The reply to a datagram whose source runs as many requests as one source may.
pub(crate) const BUSY_SHORT: &[u8] = b"1:busy";

/// A request of the text protocol: which op, and the operation that carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextRequest {
    pub op: OpCode,
    pub operation: Operation,
}

/// Reads one request: exactly three fields split on `:`, the first one of the four op codes.
pub fn parse(bytes: &[u8]) -> Option<TextRequest> {
    let mut fields = bytes.split(|&b| b == b':');
    let (op, key, value) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    let (key, value) = (key.to_vec(), value.to_vec());
    let (op, operation) = match op {
        b"0" => (OpCode::Update, Operation::Txn { ops: vec![TxnOp::Update { key, value }] }),
        b"1" => (OpCode::Get, Operation::Get { key }),
        b"2" => (OpCode::Delete, Operation::Txn { ops: vec![TxnOp::Delete { key }] }),
        b"3" => (OpCode::Put, Operation::Txn { ops: vec![TxnOp::Put { key, value }] }),
        _ => return None,
    };
    Some(TextRequest { op, operation })
}

/// The reply to a request with op `op` that ended with `answer`.
pub fn reply(op: OpCode, answer: &Result<Outcome, GatewayError>) -> Vec<u8> {
    let outcome = match answer {
        Ok(outcome) => outcome,
        Err(error) => return failure(&error.to_string()),
    };
    match (op, outcome) {
        (OpCode::Put, Outcome::Committed(_)) => b"0:Added".to_vec(),
        (OpCode::Update, Outcome::Committed(_)) => b"0:updated".to_vec(),
        (OpCode::Delete, Outcome::Committed(_)) => b"0:deleted".to_vec(),
        (OpCode::Get, Outcome::Value { value, .. }) => [b"0:".as_slice(), value].concat(),
        (OpCode::Get, Outcome::NotFound) | (_, Outcome::Failed(OpFailure { reason: FailReason::KeyNotFound, .. })) => {
            b"1:key does not exist".to_vec()
        }
        (_, Outcome::Rejected(reason)) => failure(&reason.to_string()),
        (_, not_serving @ Outcome::NotServing(_)) => failure(&not_serving.to_string()),
        (_, other) => failure(&format!("unexpected outcome: {other}")),
    }
}

/// The reply to a datagram when [`reply`]'s is more than may be sent back to its source (see
/// [`crate::routes::AMPLIFICATION_MAX`]): a few words that still say what happened.
pub fn short_reply(answer: &Result<Outcome, GatewayError>) -> &'static [u8] {
    match answer {
        Ok(Outcome::Value { .. }) => TOO_LARGE_FOR_DATAGRAM,
        Err(GatewayError::Busy { .. }) => BUSY_SHORT,
        Err(error) if error.may_have_been_applied() => b"1:outcome unknown",
        Err(GatewayError::NoOutcome { .. } | GatewayError::Expired { .. }) => b"1:no answer",
        Ok(Outcome::Rejected(_)) => b"1:refused",
        Ok(Outcome::NotServing(_)) => b"1:not serving, ask another node",
        Ok(_) => b"1:failed",
    }
}

/// The op whose code is `tag`: a text request runs with its op code as its tag, so its
/// answer knows how to reply.
pub(crate) fn op_of_tag(tag: u64) -> OpCode {
    match tag {
        0 => OpCode::Update,
        1 => OpCode::Get,
        2 => OpCode::Delete,
        _ => OpCode::Put,
    }
}

fn failure(text: &str) -> Vec<u8> {
    // A `:` in the text would make the original client see more than two fields.
    let text = text.replace(':', " -");
    [b"1:".as_slice(), text.as_bytes()].concat()
}

/// The text protocol on one TCP connection: one request, one reply, then the connection
/// closes.
pub(crate) struct TextSession {
    state: State,
    /// When bytes last arrived, for [`QUIET_FOR`].
    last_input_at: Option<Time>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Receiving the request.
    Receiving,
    /// The request runs; its op is the tag of its answer.
    Running,
    /// Answered: the connection closes once the reply is written.
    Done,
}

impl TextSession {
    pub(crate) fn new() -> TextSession {
        TextSession { state: State::Receiving, last_input_at: None }
    }

    /// Takes the request in `input` if it is complete (`ended`: nothing more will arrive).
    fn take_request(&mut self, input: &mut Vec<u8>, ended: bool, cx: &mut SessionContext<'_>) {
        if self.state != State::Receiving {
            // One request per connection: whatever follows it is not read as another.
            input.clear();
            return;
        }
        let limits = &cx.node.config().limits;
        let request_bytes_max = limits.key_bytes_max as usize + limits.value_bytes_max as usize + FRAMING_BYTES;
        let quiet = self.last_input_at.is_some_and(|at| cx.now.saturating_since(at) >= QUIET_FOR);
        // Only a short request is looked into before it ends: a long one arriving a little at a
        // time must not be scanned whole at every read.
        let short_and_whole =
            || input.len() <= SHORT_REQUEST_BYTES && input.iter().filter(|&&b| b == b':').count() >= 2;
        let complete = ended || quiet || short_and_whole();
        if input.len() > request_bytes_max {
            let text = format!("request too large: at most {request_bytes_max} bytes (the key and value limits)");
            return self.answer_now(input, failure(&text), cx);
        }
        if !complete {
            return;
        }
        if cx.users.is_some() {
            return self.answer_now(input, AUTHENTICATION_REQUIRED.to_vec(), cx);
        }
        match parse(input) {
            Some(request) => {
                input.clear();
                self.state = State::Running;
                cx.run.push((request.op as u64, request.operation));
            }
            None => self.answer_now(input, INVALID_INPUT.to_vec(), cx),
        }
    }

    fn answer_now(&mut self, input: &mut Vec<u8>, reply: Vec<u8>, cx: &mut SessionContext<'_>) {
        input.clear();
        self.state = State::Done;
        cx.output.extend_from_slice(&reply);
        cx.close = true;
    }
}

impl StreamSession for TextSession {
    fn on_input(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        self.last_input_at = Some(cx.now);
        self.take_request(input, false, cx);
    }

    fn on_end_of_input(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        if self.state == State::Receiving && input.is_empty() {
            // Connected and left without a word: nothing to answer.
            self.state = State::Done;
            cx.close = true;
            return;
        }
        self.take_request(input, true, cx);
    }

    fn on_answer(&mut self, tag: u64, answer: Result<Outcome, GatewayError>, cx: &mut SessionContext<'_>) {
        self.state = State::Done;
        cx.output.extend_from_slice(&reply(op_of_tag(tag), &answer));
        cx.close = true;
    }

    fn on_tick(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        if !input.is_empty() {
            self.take_request(input, false, cx);
        }
    }

    fn is_busy(&self) -> bool {
        self.state == State::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::{LimitError, RejectReason, TryAgainReason};

    fn txn(op: TxnOp) -> Operation {
        Operation::Txn { ops: vec![op] }
    }

    /// Every request form of the original client parses to its operation; anything else is
    /// invalid input (a `:` in a key or value, a missing field, an op outside 0..3).
    #[test]
    fn requests_parse_as_the_original_server_split_them() {
        let parsed = |bytes: &[u8]| parse(bytes).map(|r| (r.op, r.operation));
        let (k, v) = (b"k".to_vec(), b"v".to_vec());
        assert_eq!(parsed(b"3:k:v"), Some((OpCode::Put, txn(TxnOp::Put { key: k.clone(), value: v.clone() }))));
        assert_eq!(parsed(b"0:k:v"), Some((OpCode::Update, txn(TxnOp::Update { key: k.clone(), value: v }))));
        assert_eq!(parsed(b"2:k:None"), Some((OpCode::Delete, txn(TxnOp::Delete { key: k.clone() }))));
        assert_eq!(parsed(b"1:k:None"), Some((OpCode::Get, Operation::Get { key: k })));
        assert_eq!(parsed(b"1::None"), Some((OpCode::Get, Operation::Get { key: Vec::new() })), "empty key");
        assert_eq!(parsed(b"3:k:"), Some((OpCode::Put, txn(TxnOp::Put { key: b"k".to_vec(), value: Vec::new() }))));
        for invalid in [&b"3:k:v:w"[..], b"3:k", b"3", b"", b"4:k:v", b"9:k:v", b"03:k:v", b"x:k:v", b":k:v"] {
            assert_eq!(parse(invalid), None, "{:?}", String::from_utf8_lossy(invalid));
        }
    }

    /// Replies are the original server's, byte for byte; what only dkv can answer is `1:...`
    /// with no `:` in its text.
    #[test]
    fn replies_are_the_original_servers() {
        let not_found = Outcome::Failed(OpFailure { op_index: 0, reason: FailReason::KeyNotFound });
        let cases: Vec<(OpCode, Result<Outcome, GatewayError>, &[u8])> = vec![
            (OpCode::Put, Ok(Outcome::Committed(vec![])), b"0:Added"),
            (OpCode::Update, Ok(Outcome::Committed(vec![])), b"0:updated"),
            (OpCode::Delete, Ok(Outcome::Committed(vec![])), b"0:deleted"),
            (OpCode::Get, Ok(Outcome::Value { value: b"v:w".to_vec(), version: 1 }), b"0:v:w"),
            (OpCode::Get, Ok(Outcome::NotFound), b"1:key does not exist"),
            (OpCode::Update, Ok(not_found.clone()), b"1:key does not exist"),
            (OpCode::Delete, Ok(not_found), b"1:key does not exist"),
        ];
        for (op, answer, expected) in cases {
            assert_eq!(reply(op, &answer), expected, "{op:?} {answer:?}");
        }
        let busy = reply(OpCode::Put, &Err(GatewayError::Busy { max: 3 }));
        assert!(busy.starts_with(b"1:") && !busy[2..].contains(&b':'), "{}", String::from_utf8_lossy(&busy));
        let lost = GatewayError::NoOutcome { write: true, reason: Some(TryAgainReason::Busy), waited: Duration::ZERO };
        let lost = reply(OpCode::Put, &Err(lost));
        assert!(String::from_utf8_lossy(&lost).contains("may or may not have been applied"));
        let limit = Outcome::Rejected(RejectReason::Limit(LimitError::TooManyOps { count: 2, max: 1 }));
        assert!(reply(OpCode::Put, &Ok(limit)).starts_with(b"1:"));
        let not_serving = Ok(Outcome::NotServing(dkv_core::NotServingReason::NoLease));
        let refused = String::from_utf8(reply(OpCode::Get, &not_serving)).unwrap();
        assert!(refused.starts_with("1:not serving - ") && refused.ends_with("ask another node"), "{refused}");
        assert!(!refused[2..].contains(':'), "{refused}");
        assert_eq!(short_reply(&not_serving), b"1:not serving, ask another node");
        // Short forms for datagrams: each still says what happened.
        let big = Ok(Outcome::Value { value: vec![b'v'; 100], version: 1 });
        assert_eq!(short_reply(&big), TOO_LARGE_FOR_DATAGRAM);
        assert_eq!(short_reply(&Err(GatewayError::Busy { max: 1 })), b"1:busy");
        let lost_write = GatewayError::NoOutcome { write: true, reason: None, waited: Duration::ZERO };
        assert_eq!(short_reply(&Err(lost_write)), b"1:outcome unknown");
        let lost_read = GatewayError::NoOutcome { write: false, reason: None, waited: Duration::ZERO };
        assert_eq!(short_reply(&Err(lost_read)), b"1:no answer");
    }
}
