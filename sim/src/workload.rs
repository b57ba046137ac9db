//! What simulated clients ask for: a weighted mix of gets, single writes and multi-op
//! transactions over a small key space. Every written value is unique (client, sequence, op),
//! so a read names exactly the write it saw.

use crate::params::Params;
use dkv_core::{ClientId, Operation, TxnOp};
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

/// The next operation of `client`'s request number `seq`.
pub fn next_operation(rng: &mut ChaCha8Rng, params: &Params, client: ClientId, seq: u64) -> Operation {
    let total: u64 = params.mix.iter().map(|w| u64::from(*w)).sum();
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
