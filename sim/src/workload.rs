//! What simulated clients ask for: a weighted mix of gets, single writes and multi-op
//! transactions over a small key space, and, when a seed draws them (`Params::rich`), the
//! richer operations: transactions of conditions, counters, appends, get-and-set,
//! get-and-delete and reads, and scans. The original mix writes unique values (client,
//! sequence, op), so a read names exactly the write it saw; the richer transactions write
//! small numbers, so that counters count and conditions on values hold about as often as not.

use crate::params::Params;
use crate::random::{chance, index, range};
use dkv_core::{ClientId, Condition, Operation, TxnOp};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

pub fn key(rng: &mut ChaCha8Rng, keys: usize) -> Vec<u8> {
    format!("k{}", rng.next_u64() % keys as u64).into_bytes()
}

fn write(kind: u64, key: Vec<u8>, value: Vec<u8>) -> TxnOp {
    match kind {
        0 => TxnOp::Put { key, value },
        1 => TxnOp::Update { key, value },
        _ => TxnOp::Delete { key },
    }
}

/// The next operation of `client`'s request number `seq`. The richer operations are drawn
/// from `rich`, a stream of their own: a seed that draws none of them (`Params::rich` all
/// zero) takes nothing from it, and its main stream is what it was before they existed.
pub fn next_operation(
    rng: &mut ChaCha8Rng,
    rich: &mut ChaCha8Rng,
    params: &Params,
    client: ClientId,
    seq: u64,
) -> Operation {
    let total: u64 = params.mix.iter().map(|w| u64::from(*w)).sum();
    let rich_total: u64 = params.rich.iter().map(|w| u64::from(*w)).sum();
    if rich_total > 0 {
        let pick = rich.next_u64() % (total + rich_total);
        if pick >= total {
            let scan = pick - total >= u64::from(params.rich[0]);
            return if scan { next_scan(rich, params.keys) } else { next_rich_txn(rich, params.keys) };
        }
    }
    let mut pick = rng.next_u64() % total.max(1);
    let mut kind = 0;
    for (i, w) in params.mix.iter().enumerate() {
        if pick < u64::from(*w) {
            kind = i;
            break;
        }
        pick -= u64::from(*w);
    }
    let value = |i: usize| format!("c{}.{}.{}", client.0, seq, i).into_bytes();
    match kind {
        0 => Operation::Get { key: key(rng, params.keys) },
        1..=3 => {
            let k = key(rng, params.keys);
            Operation::Txn { ops: vec![write((kind - 1) as u64, k, value(0))] }
        }
        _ => {
            let n = 2 + (rng.next_u64() % 3) as usize;
            let ops = (0..n)
                .map(|i| {
                    let k = key(rng, params.keys);
                    let kind = rng.next_u64() % 3;
                    write(kind, k, value(i))
                })
                .collect();
            Operation::Txn { ops }
        }
    }
}

/// A small number as a value: what counters hold and conditions compare with.
fn number(rng: &mut ChaCha8Rng) -> Vec<u8> {
    range(rng, 0, 4).to_string().into_bytes()
}

/// One to three ops of every kind, conditions of all four kinds (true or false as the state
/// has it), increments that meet non-numbers and now and then overflow.
fn next_rich_txn(rng: &mut ChaCha8Rng, keys: usize) -> Operation {
    let n = range(rng, 1, 3);
    let ops = (0..n)
        .map(|_| {
            let key = key(rng, keys);
            match range(rng, 0, 15) {
                0 | 1 => TxnOp::Put { key, value: number(rng) },
                2 => TxnOp::Update { key, value: number(rng) },
                3 => TxnOp::Delete { key },
                4 | 5 => {
                    let by = [1, 1, -1, 3, i64::MAX][index(rng, 5)];
                    TxnOp::Increment { key, by }
                }
                // An append of a digit keeps a number a number; of a letter, makes it none.
                6 => TxnOp::Append { key, value: if chance(rng, 0.5) { b"1".to_vec() } else { b"x".to_vec() } },
                7 => TxnOp::GetSet { key, value: number(rng) },
                8 => TxnOp::GetDelete { key },
                9 | 10 => TxnOp::Read { key },
                11 => TxnOp::Exists { key },
                12 => TxnOp::DeleteIfPresent { key },
                _ => {
                    let condition = match range(rng, 0, 3) {
                        0 => Condition::Exists,
                        1 => Condition::Absent,
                        2 => Condition::ValueEquals(number(rng)),
                        _ => Condition::VersionEquals(range(rng, 0, 3)),
                    };
                    TxnOp::Require { key, condition }
                }
            }
        })
        .collect();
    Operation::Txn { ops }
}

/// A range scan (from a key, to another or to the end) or a prefix scan, with a limit from one
/// key to more than there are, keys only or with values.
fn next_scan(rng: &mut ChaCha8Rng, keys: usize) -> Operation {
    let (start, end) = if chance(rng, 0.3) {
        // Keys are k0, k1, ...: the prefix k1 holds k1 and k10 to k19.
        let prefix = key(rng, keys);
        let end = dkv_core::prefix_end(&prefix);
        (prefix, end)
    } else {
        let start = if chance(rng, 0.2) { Vec::new() } else { key(rng, keys) };
        (start, chance(rng, 0.5).then(|| key(rng, keys)))
    };
    let limit = range(rng, 1, keys as u64 + 1) as u32;
    Operation::Scan { start, end, limit, keys_only: chance(rng, 0.5) }
}
