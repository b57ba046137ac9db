//! The protocols of the client port, told apart by how a connection (or datagram) starts, and
//! the seam through which a byte-stream protocol (Redis's, the original text protocol) plugs
//! into the event loop.
//!
//! dkv's own frames carry request ids, and the event loop hands them to the node as they are.
//! The other protocols are byte streams with no ids: a [`StreamSession`] per connection turns
//! bytes into operations, which the node's [`crate::gateway::Gateway`] runs under ids of its
//! own, and turns their answers back into bytes. A session does no I/O: the event loop calls it
//! with the bytes read and each answer, and writes what it leaves in [`SessionContext::output`].

use crate::gateway::GatewayError;
use crate::security::users::Users;
use dkv_core::codec::frame;
use dkv_core::{Node, Operation, Outcome, Time};

/// The first byte of every TLS connection (a handshake record); no other protocol starts so.
pub(crate) const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// What a client speaks, told by the first bytes it sends (inside TLS: the first plaintext
/// bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientProtocol {
    /// dkv's own frames, which open with [`frame::MAGIC`].
    Frames,
    /// Redis's protocol (RESP): an array (`*`), or an inline command (a letter).
    Resp,
    /// The original project's text protocol: `<op digit>:<key>:<value>`.
    Text,
}

impl ClientProtocol {
    /// The protocol of a stream that starts with `start`, or `None` while too few bytes have
    /// arrived to tell. Bytes no protocol starts with go to the frame decoder, whose error
    /// says what it expected.
    ///
    /// A frame opens with the three bytes `dkv`; a Redis inline command may start with `d` too
    /// (`del`, `dbsize`), so a stream starting with `d` is told by its first three bytes.
    pub(crate) fn sniff(start: &[u8]) -> Option<ClientProtocol> {
        let &first = start.first()?;
        Some(match first {
            b'*' => ClientProtocol::Resp,
            b'0'..=b'9' => ClientProtocol::Text,
            _ if first == frame::MAGIC[0] => {
                let seen = start.len().min(frame::MAGIC.len());
                if start[..seen] != frame::MAGIC[..seen] {
                    ClientProtocol::Resp
                } else if seen < frame::MAGIC.len() {
                    return None;
                } else {
                    ClientProtocol::Frames
                }
            }
            _ if first.is_ascii_alphabetic() => ClientProtocol::Resp,
            _ => ClientProtocol::Frames,
        })
    }

    /// The protocol of one datagram: dkv frames or the text protocol (Redis clients do not use
    /// UDP).
    pub(crate) fn sniff_datagram(datagram: &[u8]) -> ClientProtocol {
        match datagram.first() {
            Some(b'0'..=b'9') => ClientProtocol::Text,
            _ => ClientProtocol::Frames,
        }
    }
}

/// One client connection's byte-stream protocol: the state between bytes and requests.
///
/// The event loop calls [`StreamSession::on_input`] whenever bytes arrive and
/// [`StreamSession::on_answer`] for each answer to a request the session asked to run; after
/// each call it writes [`SessionContext::output`], starts the requests in
/// [`SessionContext::run`] (answers come back in any order, tagged), and closes the connection
/// once its output is written if [`SessionContext::close`] is set.
pub(crate) trait StreamSession: Send {
    /// Takes what it can from the front of `input` (it drains what it consumed; an incomplete
    /// request stays for the next call). A session that will take no more for now (its queue is
    /// full) leaves the bytes there, and says so with [`StreamSession::wants_input`]: the
    /// connection is not read further until an answer makes room.
    fn on_input(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>);

    /// The client closed its sending half: nothing will follow what `input` holds (which may
    /// include bytes not yet handed to [`StreamSession::on_input`]). Once this call returns
    /// and the session is not busy, the connection closes when its output is written.
    fn on_end_of_input(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        let _ = (input, cx);
    }

    /// The answer to the request started with `tag`.
    fn on_answer(&mut self, tag: u64, answer: Result<Outcome, GatewayError>, cx: &mut SessionContext<'_>);

    /// Called at every housekeeping turn (about every 100 ms), for decisions that depend on
    /// time passing with no bytes arriving.
    fn on_tick(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        let _ = (input, cx);
    }

    /// Whether the session takes more input now. While false, the connection's socket is not
    /// read (the client's bytes wait in the kernel: TCP flow control pushes back).
    fn wants_input(&self) -> bool {
        true
    }

    /// Whether the session waits for answers (the connection is not idle while it does).
    fn is_busy(&self) -> bool;

    /// Bytes the session holds in memory (queued commands, watched values, ...): counted with
    /// the connection's buffers against the node's byte budget, so a session cannot hold more
    /// than the budget allows whatever it is asked.
    fn buffered_bytes(&self) -> usize {
        0
    }
}

/// The session for a connection that speaks `protocol` (a byte-stream one); `serial` is the
/// connection's (see [`crate::connection::Connection::serial`]).
pub(crate) fn open(protocol: ClientProtocol, serial: u64) -> Box<dyn StreamSession> {
    match protocol {
        ClientProtocol::Text => Box::new(crate::text_protocol::TextSession::new()),
        ClientProtocol::Resp => Box::new(crate::resp::connection::RespConnection::new(serial)),
        ClientProtocol::Frames => Box::new(NotSpoken),
    }
}

/// A protocol this build does not speak: told so in Redis's words, then closed.
struct NotSpoken;

impl StreamSession for NotSpoken {
    fn on_input(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        input.clear();
        if !cx.close {
            cx.output.extend_from_slice(b"-ERR this dkv server does not speak the Redis protocol\r\n");
            cx.close = true;
        }
    }

    fn on_answer(&mut self, _: u64, _: Result<Outcome, GatewayError>, _: &mut SessionContext<'_>) {}

    fn is_busy(&self) -> bool {
        false
    }
}

/// What a session may use and ask for in one call.
pub(crate) struct SessionContext<'a> {
    pub(crate) now: Time,
    /// The node, to read facts from (its id, its key count, its limits); requests go through
    /// [`SessionContext::run`].
    pub(crate) node: &'a Node,
    /// The users clients must authenticate as; `None`: every client is served.
    pub(crate) users: Option<&'a Users>,
    /// The user this connection proved it is (an index into `users`): the session sets it when
    /// its protocol authenticates, and the event loop checks every request against it.
    pub(crate) user: &'a mut Option<usize>,
    /// Whether the connection is inside TLS, or comes from this machine (loopback): where a
    /// protocol may take a user's token, which cannot be read on the way there.
    pub(crate) private_channel: bool,
    /// Bytes for the client, in the order written.
    pub(crate) output: Vec<u8>,
    /// Requests to run, each with the tag its answer will carry.
    pub(crate) run: Vec<(u64, Operation)>,
    /// Close the connection once `output` is written.
    pub(crate) close: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each protocol is told by its first bytes, and a Redis inline command starting with `d`
    /// is not taken for a frame.
    #[test]
    fn protocols_are_told_by_their_first_bytes() {
        let mut encoded = Vec::new();
        frame::encode(&frame::Frame::Error(frame::FrameError::Malformed { reason: "x".into() }), &mut encoded);
        assert_eq!(ClientProtocol::sniff(&encoded), Some(ClientProtocol::Frames));
        assert_eq!(ClientProtocol::sniff(b"*1\r\n$4\r\nPING\r\n"), Some(ClientProtocol::Resp));
        assert_eq!(ClientProtocol::sniff(b"PING\r\n"), Some(ClientProtocol::Resp));
        assert_eq!(ClientProtocol::sniff(b"dbsize\r\n"), Some(ClientProtocol::Resp));
        assert_eq!(ClientProtocol::sniff(b"3:k:v"), Some(ClientProtocol::Text));
        assert_eq!(ClientProtocol::sniff(b"\x00junk"), Some(ClientProtocol::Frames));
        assert_eq!(ClientProtocol::sniff(b""), None);
        assert_eq!(ClientProtocol::sniff(b"dk"), None, "could still be a frame");
        assert_eq!(ClientProtocol::sniff_datagram(b"1:k:None"), ClientProtocol::Text);
        assert_eq!(ClientProtocol::sniff_datagram(&encoded), ClientProtocol::Frames);
    }
}
