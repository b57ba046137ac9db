//! Sealed peer datagrams, for UDP mode, where there is no TLS link to carry messages.
//!
//! Every pair of members shares a key of its own, made by `dkv-server init` (a member holds one
//! per other member, and no other pair's). A datagram from member A to member B is sealed with
//! XChaCha20-Poly1305 (RustCrypto's audited AEAD) under their pair key. Its header travels in the
//! clear but is authenticated with the ciphertext:
//!
//! ```text
//! "dkvS" | version | cluster id (u64) | sender (u8) | recipient (u8) | session (u64) | counter (u64) | sent at (ms, u64)
//! ```
//!
//! - Only A or B can make a datagram that opens at B as A's: a forged or altered one is
//!   refused, as is one naming another cluster, a non-member, or another recipient. Holding one
//!   member's keys does not let anyone speak for another member.
//! - The nonce is (sender, recipient, session, counter), and a sender never reuses one: its
//!   session only grows, across restarts too (it is kept in the data dir, see [`next_session`]),
//!   and it counts the datagrams of a session to each recipient.
//! - Replays are refused. Each receiver keeps, per sender, the newest session it has seen and a
//!   window of the counters it has accepted: a counter seen before, or too old for the window,
//!   or a datagram of an older session, is refused. A receiver that restarted knows no session
//!   yet, so datagrams also carry the time they were sent, and one older than
//!   [`FRESHNESS_MS`] (or that far in the future) is refused: a replay can then only repeat,
//!   once, a datagram sent in the last [`FRESHNESS_MS`] — a duplicate, which the protocol
//!   tolerates anyway. Members' clocks must agree within that bound (use NTP).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use dkv_core::{ClusterId, NodeId};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use thiserror::Error;

const MAGIC: [u8; 4] = *b"dkvS";
const VERSION: u8 = 2;
/// Bytes of the clear header.
pub const HEADER_BYTES: usize = 4 + 1 + 8 + 1 + 1 + 8 + 8 + 8;
/// Bytes of a pair key.
pub const PAIR_KEY_BYTES: usize = 32;
/// The file in a data dir that keeps the last session this node used.
const SESSION_FILE: &str = "peer-session";
/// Bytes of the authentication tag after the ciphertext.
pub const TAG_BYTES: usize = 16;
/// What sealing adds to a payload.
pub const OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;
/// How far a datagram's send time may be from the receiver's clock.
pub const FRESHNESS_MS: u64 = 30_000;
/// Counters remembered per sender below the highest one seen: datagrams reordered by more than
/// this are refused (and retransmitted by the protocol like lost ones).
const WINDOW: u64 = 128;

/// Why a datagram was refused. None of them is answered: the sender may be forged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("not a sealed peer datagram")]
    NotSealed,
    #[error("sealed for another cluster")]
    OtherCluster,
    #[error("sent by a node that is not a member (or by this node), or meant for another")]
    NotAMember,
    #[error("sent too long ago, or stamped in the future: check that the members' clocks agree")]
    Stale,
    #[error("a replay of a datagram already received, or of an older session")]
    Replayed,
    #[error("does not open with the cluster key: forged, altered, or sealed with another key")]
    Forged,
}

/// What a receiver remembers of one sender: its newest session, the highest counter accepted in
/// it, and which of the [`WINDOW`] counters below that were accepted too.
#[derive(Clone, Copy, Debug)]
struct ReplayWindow {
    session: u64,
    /// The session's latest send time seen, so an older session cannot take its place.
    sent_at_ms: u64,
    highest: u64,
    /// Bit `i` set: counter `highest - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `(session, counter)` would be new. Checked before the (costly) decryption, and
    /// recorded only after it succeeds, so forged datagrams cannot move the window.
    fn admits(&self, session: u64, counter: u64, sent_at_ms: u64) -> bool {
        if session != self.session {
            return session > self.session && sent_at_ms >= self.sent_at_ms;
        }
        if counter > self.highest {
            return true;
        }
        let age = self.highest - counter;
        age < WINDOW && self.seen & (1u128 << age) == 0
    }

    fn record(&mut self, session: u64, counter: u64, sent_at_ms: u64) {
        if session != self.session {
            *self = ReplayWindow { session, sent_at_ms, highest: counter, seen: 1 };
            return;
        }
        self.sent_at_ms = self.sent_at_ms.max(sent_at_ms);
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= WINDOW { 0 } else { self.seen << shift };
            self.highest = counter;
            self.seen |= 1;
        } else {
            self.seen |= 1u128 << (self.highest - counter);
        }
    }
}

/// One member's sealing and opening of peer datagrams.
pub struct PeerDatagrams {
    cluster: ClusterId,
    me: NodeId,
    /// The AEAD under the key this member shares with each other member.
    pairs: BTreeMap<NodeId, XChaCha20Poly1305>,
    session: u64,
    /// Datagrams sealed for each recipient in this session.
    counters: BTreeMap<NodeId, u64>,
    windows: BTreeMap<NodeId, ReplayWindow>,
}

struct Header {
    cluster: u64,
    from: NodeId,
    to: NodeId,
    session: u64,
    counter: u64,
    sent_at_ms: u64,
}

impl PeerDatagrams {
    /// `pair_keys` holds the key this member shares with each other member; `session` must be
    /// larger than any session this member used before ([`next_session`] makes sure of it).
    pub fn new(
        pair_keys: &BTreeMap<NodeId, [u8; PAIR_KEY_BYTES]>,
        cluster: ClusterId,
        me: NodeId,
        session: u64,
    ) -> PeerDatagrams {
        let pairs = pair_keys.iter().map(|(&id, key)| (id, XChaCha20Poly1305::new(Key::from_slice(key)))).collect();
        PeerDatagrams { cluster, me, pairs, session, counters: BTreeMap::new(), windows: BTreeMap::new() }
    }

    /// Appends `payload`, sealed for member `to`, to `out`. False if `to` is not a member this
    /// node shares a key with (nothing is appended).
    pub fn seal(&mut self, now_ms: u64, to: NodeId, payload: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(aead) = self.pairs.get(&to) else { return false };
        let counter = self.counters.entry(to).or_insert(0);
        let header = Header {
            cluster: self.cluster.0,
            from: self.me,
            to,
            session: self.session,
            counter: *counter,
            sent_at_ms: now_ms,
        };
        *counter += 1;
        let start = out.len();
        write_header(&header, out);
        out.extend_from_slice(payload);
        let (head, body) = out[start..].split_at_mut(HEADER_BYTES);
        let tag = aead
            .encrypt_in_place_detached(&nonce(&header), head, body)
            .expect("a payload of one datagram is far below the AEAD's limit");
        out.extend_from_slice(&tag);
        true
    }

    /// Opens a sealed datagram: its sender and the payload, or why it is refused. Never panics,
    /// whatever the bytes.
    pub fn open(&mut self, now_ms: u64, datagram: &[u8]) -> Result<(NodeId, Vec<u8>), OpenError> {
        if datagram.len() < OVERHEAD_BYTES {
            return Err(OpenError::NotSealed);
        }
        let header = read_header(&datagram[..HEADER_BYTES])?;
        if header.cluster != self.cluster.0 {
            return Err(OpenError::OtherCluster);
        }
        let aead = match self.pairs.get(&header.from) {
            Some(aead) if header.to == self.me && header.from != self.me => aead,
            _ => return Err(OpenError::NotAMember),
        };
        if now_ms.abs_diff(header.sent_at_ms) > FRESHNESS_MS {
            return Err(OpenError::Stale);
        }
        let window = self.windows.get(&header.from);
        if window.is_some_and(|w| !w.admits(header.session, header.counter, header.sent_at_ms)) {
            return Err(OpenError::Replayed);
        }
        let body_end = datagram.len() - TAG_BYTES;
        let mut payload = datagram[HEADER_BYTES..body_end].to_vec();
        let tag = Tag::from_slice(&datagram[body_end..]);
        aead.decrypt_in_place_detached(&nonce(&header), &datagram[..HEADER_BYTES], &mut payload, tag)
            .map_err(|_| OpenError::Forged)?;
        match self.windows.get_mut(&header.from) {
            Some(window) => window.record(header.session, header.counter, header.sent_at_ms),
            None => {
                let window = ReplayWindow {
                    session: header.session,
                    sent_at_ms: header.sent_at_ms,
                    highest: header.counter,
                    seen: 1,
                };
                self.windows.insert(header.from, window);
            }
        }
        Ok((header.from, payload))
    }
}

fn write_header(h: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&h.cluster.to_le_bytes());
    out.push(h.from.0);
    out.push(h.to.0);
    out.extend_from_slice(&h.session.to_le_bytes());
    out.extend_from_slice(&h.counter.to_le_bytes());
    out.extend_from_slice(&h.sent_at_ms.to_le_bytes());
}

fn read_header(bytes: &[u8]) -> Result<Header, OpenError> {
    if bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(OpenError::NotSealed);
    }
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    Ok(Header {
        cluster: u64_at(5),
        from: NodeId(bytes[13]),
        to: NodeId(bytes[14]),
        session: u64_at(15),
        counter: u64_at(23),
        sent_at_ms: u64_at(31),
    })
}

/// (sender, recipient, session, counter): unique for every datagram sealed under a pair key,
/// in either direction.
fn nonce(h: &Header) -> XNonce {
    let mut nonce = [0u8; 24];
    nonce[0] = h.from.0;
    nonce[1] = h.to.0;
    nonce[8..16].copy_from_slice(&h.session.to_le_bytes());
    nonce[16..24].copy_from_slice(&h.counter.to_le_bytes());
    XNonce::from(nonce)
}

/// The session this node's peer datagrams use from now on: larger than any it used before, in
/// this data dir, whatever its clock says (a node that restarts with its clock behind must not
/// be taken for a replay of its past). Kept durably in the data dir before it is used.
pub fn next_session(data_dir: &Path, now_micros: u64) -> io::Result<u64> {
    let path = data_dir.join(SESSION_FILE);
    let last = match std::fs::read_to_string(&path) {
        Ok(text) => {
            text.trim().parse::<u64>().map_err(|_| io::Error::other(format!("{} is damaged", path.display())))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let session = now_micros.max(last.saturating_add(1));
    let temporary = data_dir.join(format!("{SESSION_FILE}.new"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(format!("{session}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: ClusterId = ClusterId(42);
    const NOW: u64 = 1_700_000_000_000;

    /// The pair keys of member `id` of a 3-member cluster: pair (a, b) has key [a + 10 * b; 32]
    /// for a < b.
    fn keys(id: u8) -> BTreeMap<NodeId, [u8; PAIR_KEY_BYTES]> {
        (0..3u8).filter(|&j| j != id).map(|j| (NodeId(j), [id.min(j) + 10 * id.max(j); 32])).collect()
    }

    fn member(id: u8, session: u64) -> PeerDatagrams {
        PeerDatagrams::new(&keys(id), CLUSTER, NodeId(id), session)
    }

    /// Sealed by `from` for member 1 (or member 0 if `from` is 1).
    fn sealed(from: &mut PeerDatagrams, payload: &[u8]) -> Vec<u8> {
        let to = if from.me == NodeId(1) { NodeId(0) } else { NodeId(1) };
        let mut out = Vec::new();
        assert!(from.seal(NOW, to, payload, &mut out));
        out
    }

    /// A sealed datagram opens once at a member, with its sender and payload; the same bytes a
    /// second time are a replay.
    #[test]
    fn a_datagram_opens_once() {
        let (mut a, mut b) = (member(0, 1), member(1, 1));
        let datagram = sealed(&mut a, b"prepare");
        assert_eq!(b.open(NOW, &datagram), Ok((NodeId(0), b"prepare".to_vec())));
        assert_eq!(b.open(NOW, &datagram), Err(OpenError::Replayed));
    }

    /// Reordered datagrams within the window open; any one of them twice does not; one older
    /// than the window does not.
    #[test]
    fn reordering_within_the_window_is_accepted_and_replays_are_not() {
        let (mut a, mut b) = (member(0, 1), member(1, 1));
        let datagrams: Vec<Vec<u8>> = (0..200).map(|i| sealed(&mut a, &[i as u8])).collect();
        for i in [5, 3, 4, 150, 100, 149] {
            assert!(b.open(NOW, &datagrams[i]).is_ok(), "datagram {i}");
        }
        for i in [5, 3, 150, 100] {
            assert_eq!(b.open(NOW, &datagrams[i]), Err(OpenError::Replayed), "datagram {i}");
        }
        assert_eq!(b.open(NOW, &datagrams[10]), Err(OpenError::Replayed), "older than the window");
        assert!(b.open(NOW, &datagrams[151]).is_ok());
    }

    /// A new session of a sender replaces the old one, whose datagrams are then refused.
    #[test]
    fn an_older_session_cannot_come_back() {
        let (mut old, mut b) = (member(0, 1), member(1, 1));
        let from_old = sealed(&mut old, b"old");
        let early = sealed(&mut old, b"early");
        assert!(b.open(NOW, &early).is_ok());
        let mut restarted = member(0, 2);
        assert!(b.open(NOW, &sealed(&mut restarted, b"new")).is_ok());
        assert_eq!(b.open(NOW, &from_old), Err(OpenError::Replayed));
    }

    /// Forged, altered, foreign, non-member and stale datagrams are refused; none panics.
    #[test]
    fn forgeries_are_refused() {
        let (mut a, mut b) = (member(0, 1), member(1, 1));
        let good = sealed(&mut a, b"commit");
        let mut altered = good.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(b.open(NOW, &altered), Err(OpenError::Forged));
        let mut body = good.clone();
        body[HEADER_BYTES] ^= 1;
        assert_eq!(b.open(NOW, &body), Err(OpenError::Forged));
        let stranger_keys: BTreeMap<NodeId, [u8; 32]> = [(NodeId(1), [8; 32])].into();
        let mut stranger = PeerDatagrams::new(&stranger_keys, CLUSTER, NodeId(0), 1);
        assert_eq!(b.open(NOW, &sealed(&mut stranger, b"x")), Err(OpenError::Forged));
        let mut other_cluster = PeerDatagrams::new(&keys(0), ClusterId(43), NodeId(0), 1);
        assert_eq!(b.open(NOW, &sealed(&mut other_cluster, b"x")), Err(OpenError::OtherCluster));
        let mut outsider = PeerDatagrams::new(&keys(0), CLUSTER, NodeId(9), 1);
        assert_eq!(b.open(NOW, &sealed(&mut outsider, b"x")), Err(OpenError::NotAMember));
        assert_eq!(b.open(NOW, &sealed(&mut member(1, 1), b"x")), Err(OpenError::NotAMember), "from itself");
        // Member 2 holds keys too, but not the pair key of members 0 and 1: it cannot speak for 0.
        let mut impostor = PeerDatagrams::new(&keys(2), CLUSTER, NodeId(0), 1);
        assert_eq!(b.open(NOW, &sealed(&mut impostor, b"x")), Err(OpenError::Forged));
        // A datagram meant for member 2 does not open at member 1.
        let mut for_two = Vec::new();
        assert!(member(0, 1).seal(NOW, NodeId(2), b"x", &mut for_two));
        assert_eq!(b.open(NOW, &for_two), Err(OpenError::NotAMember));
        assert_eq!(b.open(NOW + FRESHNESS_MS + 1, &good), Err(OpenError::Stale));
        assert_eq!(b.open(NOW, b"dkv"), Err(OpenError::NotSealed));
        assert!(b.open(NOW, &good).is_ok(), "refusals did not move the window");
    }

    /// Each session is larger than the last one used in the same data dir, even when the clock
    /// went back.
    #[test]
    fn sessions_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let first = next_session(dir.path(), 5_000).unwrap();
        assert_eq!(first, 5_000);
        assert_eq!(next_session(dir.path(), 1_000).unwrap(), 5_001, "the clock went back");
        assert_eq!(next_session(dir.path(), 9_000).unwrap(), 9_000);
    }
}
