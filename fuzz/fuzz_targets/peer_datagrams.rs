//! The sealed peer datagram decoder (UDP mode's authenticated framing). Arbitrary bytes never
//! open, and never panic; a datagram a member sealed opens once, a replay of it never, and any
//! change to one of its bytes makes it fail to open.
#![no_main]

use dkv_core::{ClusterId, NodeId};
use dkv_net::security::datagrams::PeerDatagrams;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const CLUSTER: ClusterId = ClusterId(0xd1c0);
const NOW_MS: u64 = 1_700_000_000_000;

/// Member `id` of a two-member cluster, sharing one pair key with the other.
fn member(id: u8) -> PeerDatagrams {
    let keys: BTreeMap<NodeId, [u8; 32]> = [(NodeId(1 - id), [0x5a; 32])].into();
    PeerDatagrams::new(&keys, CLUSTER, NodeId(id), 1)
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let mut receiver = member(0);
    if choice & 1 == 0 {
        // Raw bytes: nobody without the key can make a datagram that opens.
        assert!(receiver.open(NOW_MS, rest).is_err(), "unsealed bytes opened");
        return;
    }
    // A sealed datagram, then one byte of it changed (position and change from the input).
    let (edit, payload) = rest.split_at(rest.len().min(3));
    let mut sender = member(1);
    let mut sealed = Vec::new();
    assert!(sender.seal(NOW_MS, NodeId(0), payload, &mut sealed));
    let mut altered = sealed.clone();
    if let [at_high, at_low, xor] = *edit {
        let at = usize::from(u16::from_le_bytes([at_low, at_high])) % altered.len();
        altered[at] ^= xor;
        if xor != 0 {
            assert!(receiver.open(NOW_MS, &altered).is_err(), "an altered datagram opened");
        }
    }
    assert_eq!(receiver.open(NOW_MS, &sealed).map(|(from, p)| (from, p == payload)), Ok((NodeId(1), true)));
    assert!(receiver.open(NOW_MS, &sealed).is_err(), "a replay opened");
});
