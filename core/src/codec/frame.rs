//! Network frames: an 8-byte header (magic `dkv`, version, payload length as u32 LE) followed
//! by a postcard payload. The same frames travel over TCP streams and UDP datagrams.

use super::transfer::TransferMessage;
use crate::ids::{ClusterId, NodeId};
use crate::message::Message;
use crate::operation::{Reply, Request};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const MAGIC: [u8; 3] = *b"dkv";
/// Version 3: transactions hold reads, conditions and read-modify-write ops whose results
/// come back in `Outcome::Committed`, gets return versions, and scans are new. (Version 2: a
/// failed op is `Outcome::Failed` with a typed reason, and peer frames carry their cluster.)
pub const VERSION: u8 = 3;
pub const HEADER_BYTES: usize = 8;

/// Everything that travels between processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Client -> node.
    Request(Request),
    /// Node -> client.
    Reply(Reply),
    /// Node -> node, only over an authenticated peer link or a sealed peer datagram: `cluster`
    /// and `from` must match what the link or seal proved, or the frame is refused.
    Peer { cluster: ClusterId, from: NodeId, message: Message },
    /// Node -> client when the client's bytes could not be understood as a request.
    Error(FrameError),
    /// Client -> node, first on a TLS connection: who the client is. Every later request on
    /// the connection is that user's. Refused outside TLS, where the token would travel in the
    /// clear.
    Auth {
        user: String,
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
    },
    /// Client -> node over UDP: a request signed by a user. `mac` is HMAC-SHA256 under the
    /// user's token over the encoded `(user, sent_at_ms, request)`; replays and stale send
    /// times are refused.
    SignedRequest {
        user: String,
        sent_at_ms: u64,
        request: Request,
        #[serde(with = "serde_bytes")]
        mac: Vec<u8>,
    },
    /// Node -> node, a state transfer's message ([`super::transfer`]): taken only as
    /// [`Frame::Peer`] is, from an authenticated member naming itself and this cluster.
    Transfer { cluster: ClusterId, from: NodeId, message: TransferMessage },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum FrameError {
    #[error(
        "not a dkv frame (bad magic bytes); is this a dkv client talking to a dkv server's client port (-p), not its peer port (-p plus 1000) or another program?"
    )]
    BadMagic,
    #[error("frame version {found} is not supported (this build speaks version {VERSION}); upgrade the older side")]
    UnsupportedVersion { found: u8 },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: u32 },
    #[error("frame of {len} bytes does not fit one UDP datagram of at most {max} bytes; send it over TCP")]
    TooLargeForDatagram { len: u64, max: u32 },
    #[error(
        "the reply is {len} bytes, more than {} (3 times the {request}-byte request datagram), the most a node sends to an unauthenticated UDP sender, whose address could be forged; resend the request padded with zeros to at least {} bytes, or send it over TCP",
        3 * request,
        len.div_ceil(3)
    )]
    ReplyTooLarge { len: u64, request: u64 },
    #[error("authentication refused: {reason}")]
    Unauthorized { reason: String },
    #[error("frame is cut short: {missing} more bytes were expected")]
    Truncated { missing: u64 },
    #[error("frame payload is malformed: {reason}")]
    Malformed { reason: String },
}

/// Appends the encoded `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 4]);
    // Writing into a Vec cannot fail; serialization of our own types cannot fail either.
    let encoded = postcard::to_extend(frame, std::mem::take(out)).expect("encoding into a Vec cannot fail");
    *out = encoded;
    let len = (out.len() - start - HEADER_BYTES) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
}

pub fn encode_to_vec(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out);
    out
}

/// Reads the header at the start of `bytes`: the payload length, once enough bytes are there
/// to judge. `Ok(None)` means "need more bytes"; any error means the stream is unusable.
pub fn payload_len(bytes: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let magic_seen = bytes.len().min(MAGIC.len());
    if bytes[..magic_seen] != MAGIC[..magic_seen] {
        return Err(FrameError::BadMagic);
    }
    if bytes.len() > 3 && bytes[3] != VERSION {
        return Err(FrameError::UnsupportedVersion { found: bytes[3] });
    }
    if bytes.len() < HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > max {
        return Err(FrameError::TooLarge { len: u64::from(len), max });
    }
    Ok(Some(len as usize))
}

/// Decodes one frame from the front of a stream buffer. `Ok(None)`: incomplete, read more.
/// `Ok(Some((frame, n)))`: a frame and the bytes it used.
pub fn decode_stream(bytes: &[u8], max: u32) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(len) = payload_len(bytes, max)? else { return Ok(None) };
    let total = HEADER_BYTES + len;
    if bytes.len() < total {
        return Ok(None);
    }
    Ok(Some((decode_payload(&bytes[HEADER_BYTES..total])?, total)))
}

/// Decodes a datagram, which must hold exactly one whole frame, optionally followed by zeros:
/// a client pads a request so that its reply may be larger (see [`FrameError::ReplyTooLarge`]).
pub fn decode_datagram(bytes: &[u8], max: u32) -> Result<Frame, FrameError> {
    match payload_len(bytes, max)? {
        None => Err(FrameError::Truncated { missing: (HEADER_BYTES - bytes.len()) as u64 }),
        Some(len) if bytes.len() < HEADER_BYTES + len => {
            Err(FrameError::Truncated { missing: (HEADER_BYTES + len - bytes.len()) as u64 })
        }
        Some(len) if bytes[HEADER_BYTES + len..].iter().any(|&b| b != 0) => Err(FrameError::Malformed {
            reason: format!(
                "{} bytes that are not zero padding follow the frame in the datagram",
                bytes.len() - HEADER_BYTES - len
            ),
        }),
        Some(len) => decode_payload(&bytes[HEADER_BYTES..HEADER_BYTES + len]),
    }
}

fn decode_payload(payload: &[u8]) -> Result<Frame, FrameError> {
    match postcard::take_from_bytes::<Frame>(payload) {
        Ok((frame, [])) => Ok(frame),
        Ok((_, rest)) => {
            Err(FrameError::Malformed { reason: format!("{} unused bytes after the payload", rest.len()) })
        }
        Err(e) => Err(FrameError::Malformed { reason: e.to_string() }),
    }
}
