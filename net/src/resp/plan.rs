//! How each data command becomes dkv ops, and how their results become the reply Redis would
//! give. A command alone is one dkv request; inside MULTI, the ops of every queued command
//! (after the conditions of WATCH) make one transaction, and each command reads its reply from
//! its own slice of the results.

use super::command::{Bytes, DataCommand, NOT_AN_INTEGER, SetOnly};
use super::reply::Reply;
use dkv_core::{Condition, FailReason, OpResult, Operation, TxnOp};

/// A command's ops, and how to make its reply from their results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The command's name, for messages.
    pub name: &'static str,
    pub ops: Vec<TxnOp>,
    pub shape: Shape,
}

/// How a command's reply is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `+OK` (SET, MSET).
    Ok,
    /// `+OK`, or null when its condition does not hold (SET NX/XX).
    OkOrNull,
    /// The value before the write, or null (GETSET, GETDEL, SET … GET); null too when a SET XX
    /// GET found no key.
    Previous,
    /// 1, or 0 when its condition does not hold (SETNX, MSETNX).
    Flag,
    /// The value read, or null (GET).
    Value,
    /// Every value read, nulls for absent keys (MGET).
    Values,
    /// How many of its keys were there (DEL counts those it removed, EXISTS those it found).
    CountPresent,
    /// The integer result (INCR…, APPEND).
    Integer,
    /// The length of the value read, 0 when absent (STRLEN).
    Length,
}

fn require(key: &[u8], condition: Condition) -> TxnOp {
    TxnOp::Require { key: key.to_vec(), condition }
}

/// The ops of a command and the shape of its reply.
pub fn plan(command: DataCommand) -> Plan {
    let name = command.name();
    let (ops, shape) = match command {
        DataCommand::Get(key) => (vec![TxnOp::Read { key }], Shape::Value),
        DataCommand::Set { key, value, only, get } => {
            let condition = only.map(|only| match only {
                SetOnly::Absent => Condition::Absent,
                SetOnly::Present => Condition::Exists,
            });
            let mut ops: Vec<TxnOp> = condition.map(|c| require(&key, c)).into_iter().collect();
            let shape = match (get, only) {
                (true, _) => Shape::Previous,
                (false, Some(_)) => Shape::OkOrNull,
                (false, None) => Shape::Ok,
            };
            ops.push(if get { TxnOp::GetSet { key, value } } else { TxnOp::Put { key, value } });
            (ops, shape)
        }
        DataCommand::SetNx { key, value } => {
            (vec![require(&key, Condition::Absent), TxnOp::Put { key, value }], Shape::Flag)
        }
        DataCommand::GetSet { key, value } => (vec![TxnOp::GetSet { key, value }], Shape::Previous),
        DataCommand::GetDel(key) => (vec![TxnOp::GetDelete { key }], Shape::Previous),
        DataCommand::MGet(keys) => (keys.into_iter().map(|key| TxnOp::Read { key }).collect(), Shape::Values),
        DataCommand::MSet(pairs) => {
            (pairs.into_iter().map(|(key, value)| TxnOp::Put { key, value }).collect(), Shape::Ok)
        }
        DataCommand::MSetNx(pairs) => {
            let mut ops: Vec<TxnOp> = pairs.iter().map(|(key, _)| require(key, Condition::Absent)).collect();
            ops.extend(pairs.into_iter().map(|(key, value)| TxnOp::Put { key, value }));
            (ops, Shape::Flag)
        }
        // Neither carries a value: each op's result is 1 or 0 (present, or removed).
        DataCommand::Del(keys) => {
            (keys.into_iter().map(|key| TxnOp::DeleteIfPresent { key }).collect(), Shape::CountPresent)
        }
        DataCommand::Exists(keys) => (keys.into_iter().map(|key| TxnOp::Exists { key }).collect(), Shape::CountPresent),
        DataCommand::IncrBy { key, by } => (vec![TxnOp::Increment { key, by }], Shape::Integer),
        DataCommand::Append { key, value } => (vec![TxnOp::Append { key, value }], Shape::Integer),
        DataCommand::Strlen(key) => (vec![TxnOp::Read { key }], Shape::Length),
    };
    Plan { name, ops, shape }
}

impl Plan {
    /// The request for this command alone. A command that only reads one key is served from
    /// memory with no transaction: a get, or for EXISTS a keys-only scan of exactly its key
    /// (linearizable like a get, and no value comes back). The rest are one transaction each.
    pub fn operation(&self) -> Operation {
        match self.ops.as_slice() {
            [TxnOp::Read { key }] => Operation::Get { key: key.clone() },
            [TxnOp::Exists { key }] => {
                let mut end = key.clone();
                end.push(0);
                Operation::Scan { start: key.clone(), end: Some(end), limit: 1, keys_only: true }
            }
            _ => Operation::Txn { ops: self.ops.clone() },
        }
    }

    /// Whether the command may change a key.
    pub fn writes(&self) -> bool {
        self.ops.iter().any(TxnOp::writes)
    }

    /// The bytes of keys and values the ops carry (what the transaction limit counts).
    pub fn bytes(&self) -> usize {
        self.ops.iter().map(op_bytes).sum()
    }
}

/// The bytes of keys and values of one op.
pub fn op_bytes(op: &TxnOp) -> usize {
    match op {
        TxnOp::Put { key, value }
        | TxnOp::Update { key, value }
        | TxnOp::Append { key, value }
        | TxnOp::GetSet { key, value } => key.len() + value.len(),
        TxnOp::Require { key, condition: Condition::ValueEquals(value) } => key.len() + value.len(),
        other => other.key().len(),
    }
}

/// What a command's read came back as, when it ran as a get.
pub fn reply_to_get(shape: Shape, value: Option<Bytes>) -> Reply {
    match shape {
        Shape::Length => Reply::Integer(value.map_or(0, |v| v.len() as i64)),
        Shape::CountPresent => Reply::Integer(i64::from(value.is_some())),
        Shape::Values => Reply::Array(vec![Reply::bulk_or_null(value)]),
        _ => Reply::bulk_or_null(value),
    }
}

/// The reply made from a command's results, when its transaction committed.
pub fn reply_to_results(shape: Shape, results: &[OpResult]) -> Reply {
    let value_of = |result: &OpResult| match result {
        OpResult::Value { value, .. } => value.clone(),
        _ => None,
    };
    let last = results.last();
    match shape {
        Shape::Ok | Shape::OkOrNull => Reply::ok(),
        Shape::Flag => Reply::Integer(1),
        Shape::Previous | Shape::Value => Reply::bulk_or_null(last.and_then(value_of)),
        Shape::Values => Reply::Array(results.iter().map(|r| Reply::bulk_or_null(value_of(r))).collect()),
        Shape::CountPresent => Reply::Integer(
            results.iter().map(|r| if let OpResult::Integer { value, .. } = r { *value } else { 0 }).sum(),
        ),
        Shape::Integer => match last {
            Some(OpResult::Integer { value, .. }) => Reply::Integer(*value),
            other => {
                Reply::err(format!("dkv answered {other:?} where it should have given a number; please report this"))
            }
        },
        Shape::Length => Reply::Integer(last.and_then(value_of).map_or(0, |v| v.len() as i64)),
    }
}

/// The reply when one of a command's own ops failed, the command alone: Redis's answer for a
/// condition that does not hold, or its error.
pub fn reply_to_failure(shape: Shape, reason: FailReason) -> Reply {
    match (shape, reason) {
        (Shape::OkOrNull | Shape::Previous, FailReason::ConditionFailed | FailReason::KeyNotFound) => Reply::Null,
        (Shape::Flag, FailReason::ConditionFailed) => Reply::Integer(0),
        _ => failure_error(reason),
    }
}

/// Redis's error for an op that could not run.
pub fn failure_error(reason: FailReason) -> Reply {
    match reason {
        FailReason::NotAnInteger => Reply::err(NOT_AN_INTEGER),
        FailReason::IntegerOverflow => Reply::err("increment or decrement would overflow"),
        FailReason::ValueTooLarge => {
            Reply::err("string exceeds maximum allowed size (dkv's value limit); nothing was applied")
        }
        other => Reply::err(format!("{other}; nothing was applied")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::command::{self, Command};

    fn planned(line: &str) -> Plan {
        match command::parse(line.split(' ').map(|w| w.as_bytes().to_vec()).collect()) {
            Ok(Command::Data(data)) => plan(data),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// Conditional writes put their condition first, under the same lock, in one transaction.
    #[test]
    fn conditional_writes_are_conditions_then_writes() {
        let setnx = planned("SETNX k v");
        assert_eq!(setnx.ops, vec![require(b"k", Condition::Absent), TxnOp::Put { key: b("k"), value: b("v") }]);
        let msetnx = planned("MSETNX a 1 b 2");
        assert_eq!(msetnx.ops.len(), 4);
        assert!(matches!(msetnx.ops[1], TxnOp::Require { condition: Condition::Absent, .. }));
        let xx_get = planned("SET k v XX GET");
        assert_eq!(xx_get.ops, vec![require(b"k", Condition::Exists), TxnOp::GetSet { key: b("k"), value: b("v") }]);
        assert_eq!(xx_get.shape, Shape::Previous);
    }

    /// One-key reads are gets (no transaction); multi-key commands are one transaction each.
    #[test]
    fn single_reads_are_gets_and_the_rest_transactions() {
        assert_eq!(planned("GET k").operation(), Operation::Get { key: b("k") });
        assert_eq!(planned("STRLEN k").operation(), Operation::Get { key: b("k") });
        assert!(matches!(planned("MGET a b").operation(), Operation::Txn { ops } if ops.len() == 2));
        assert!(matches!(planned("DEL a").operation(), Operation::Txn { .. }));
    }

    /// Results become the replies Redis gives.
    #[test]
    fn results_become_redis_replies() {
        let value = |v: Option<&str>| OpResult::Value { value: v.map(b), version: 1 };
        let counted = |n: i64| OpResult::Integer { value: n, version: 0 };
        assert_eq!(
            reply_to_results(Shape::Values, &[value(Some("1")), value(None)]),
            Reply::Array(vec![Reply::bulk("1"), Reply::Null])
        );
        assert_eq!(reply_to_results(Shape::CountPresent, &[counted(1), counted(0), counted(1)]), Reply::Integer(2));
        assert_eq!(
            reply_to_results(Shape::Integer, &[OpResult::Integer { value: 11, version: 2 }]),
            Reply::Integer(11)
        );
        assert_eq!(reply_to_failure(Shape::Flag, FailReason::ConditionFailed), Reply::Integer(0));
        assert_eq!(reply_to_failure(Shape::OkOrNull, FailReason::ConditionFailed), Reply::Null);
        assert_eq!(reply_to_failure(Shape::Integer, FailReason::NotAnInteger), Reply::err(NOT_AN_INTEGER));
        assert_eq!(reply_to_get(Shape::Length, Some(b("abc"))), Reply::Integer(3));
    }
}
