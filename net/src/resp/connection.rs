//! A Redis client connection as the event loop drives it: the [`StreamSession`] that feeds a
//! [`Session`] the bytes read, hands the node's gateway the request it asks for, and hands the
//! answer back.
//!
//! A session runs one request at a time (commands run in order), so the connection has at most
//! one request out, under a tag that increases with every request.

use super::cursors::ScanCursors;
use super::introspection::NodeFacts;
use super::reply::Reply;
use super::session::{Host, Session, SessionLimits};
use crate::gateway::GatewayError;
use crate::security::users::parse_token;
use crate::session::{SessionContext, StreamSession};
use dkv_core::{Outcome, Time};
use std::time::Duration;

/// SCAN cursors a connection remembers (see [`ScanCursors`]).
const SCAN_CURSORS_PER_CONNECTION: usize = 64;
/// A command whose first bytes arrived must be complete within this long, as a dkv frame must
/// ([`crate::config::ConnectionLimits::partial_frame_timeout`]'s default): a client that
/// dribbles a command out byte by byte does not hold a connection forever.
const PARTIAL_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct RespConnection {
    /// Made at the first call, which brings the node's limits.
    session: Option<Session>,
    cursors: ScanCursors,
    id: u64,
    /// The tag of the request out, if one is.
    waiting: Option<u64>,
    last_tag: u64,
    /// Since when the session has held the start of a command and not its end.
    partial_since: Option<Time>,
}

impl RespConnection {
    /// `id` names the connection to its client (`CLIENT ID`, HELLO's `id`).
    pub(crate) fn new(id: u64) -> RespConnection {
        RespConnection {
            session: None,
            // A cursor is a position in key order, valid on any node: starting its numbers at
            // the connection id only keeps one connection's cursors apart from another's.
            cursors: ScanCursors::new(id.wrapping_mul(1 << 20), SCAN_CURSORS_PER_CONNECTION),
            id,
            waiting: None,
            last_tag: 0,
            partial_since: None,
        }
    }

    /// Runs what the session can run now: its next request goes out, its replies are written,
    /// and the connection ends once a QUIT or protocol error is answered.
    fn pump(&mut self, cx: &mut SessionContext<'_>) {
        let Some(session) = self.session.as_mut() else { return };
        let mut host = ContextHost { cx, cursors: &mut self.cursors };
        if self.waiting.is_none()
            && let Some(operation) = session.poll(&mut host)
        {
            self.last_tag += 1;
            self.waiting = Some(self.last_tag);
            cx.run.push((self.last_tag, operation));
        }
        cx.output.extend(session.take_output());
        *cx.user = session.user();
        if session.finished() {
            cx.close = true;
        }
        self.partial_since = if session.holds_partial_command() { self.partial_since.or(Some(cx.now)) } else { None };
    }
}

/// What a session asks of the node, from the event loop's context.
struct ContextHost<'a, 'b> {
    cx: &'a SessionContext<'b>,
    cursors: &'a mut ScanCursors,
}

impl Host for ContextHost<'_, '_> {
    fn auth_required(&self) -> bool {
        self.cx.users.is_some()
    }

    fn authenticate(&self, user: &[u8], token_hex: &[u8]) -> Option<usize> {
        let users = self.cx.users?;
        let token = parse_token(std::str::from_utf8(token_hex).ok()?)?;
        users.authenticate(std::str::from_utf8(user).ok()?, &token).ok()
    }

    fn facts(&self, user: Option<usize>) -> NodeFacts {
        let node = self.cx.node;
        let confined = match (self.cx.users, user) {
            (None, _) => false,
            (Some(users), Some(index)) => users.get(index).is_none_or(|user| !user.prefix.is_empty()),
            (Some(_), None) => true,
        };
        let keys = (!confined).then(|| node.store().len() as u64);
        NodeFacts { node_id: node.id().0, members: node.config().members.len(), keys }
    }

    fn cursors(&mut self) -> &mut ScanCursors {
        self.cursors
    }
}

/// The reply for a request the gateway could not get an outcome for.
fn gateway_error_reply(error: GatewayError) -> Reply {
    match error {
        GatewayError::Busy { .. } => {
            let text = error.to_string();
            Reply::Error(format!("BUSY {}", text.strip_prefix("busy, ").unwrap_or(&text)))
        }
        GatewayError::Expired { .. } | GatewayError::NoOutcome { .. } => Reply::err(error),
    }
}

impl StreamSession for RespConnection {
    fn on_input(&mut self, input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        let session = self.session.get_or_insert_with(|| {
            let limits = SessionLimits::for_limits(&cx.node.config().limits);
            Session::new(limits, cx.private_channel, self.id)
        });
        // The session keeps what it has not decoded yet; the event loop reads no more while it
        // does not want input, so what it holds stays bounded.
        session.receive(input);
        input.clear();
        self.pump(cx);
    }

    fn on_answer(&mut self, tag: u64, answer: Result<Outcome, GatewayError>, cx: &mut SessionContext<'_>) {
        if self.waiting != Some(tag) {
            return;
        }
        self.waiting = None;
        if let Some(session) = self.session.as_mut() {
            let mut host = ContextHost { cx, cursors: &mut self.cursors };
            session.complete(&mut host, answer.map_err(gateway_error_reply));
        }
        self.pump(cx);
    }

    fn on_tick(&mut self, _input: &mut Vec<u8>, cx: &mut SessionContext<'_>) {
        let stalled = self.partial_since.is_some_and(|since| cx.now.saturating_since(since) >= PARTIAL_COMMAND_TIMEOUT);
        if stalled && let Some(session) = self.session.as_mut() {
            session.abandon_partial_command(PARTIAL_COMMAND_TIMEOUT.as_secs());
        }
        // A session that paused at its output threshold (see `Session::poll`) goes on: its
        // replies so far were handed to the connection at the last call.
        self.pump(cx);
    }

    fn wants_input(&self) -> bool {
        self.session.as_ref().is_none_or(Session::wants_input)
    }

    fn is_busy(&self) -> bool {
        self.waiting.is_some()
    }

    fn buffered_bytes(&self) -> usize {
        self.session.as_ref().map_or(0, Session::buffered_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::TryAgainReason;

    /// Busy is Redis's BUSY; no outcome says whether the write may have been applied.
    #[test]
    fn gateway_errors_say_what_happened() {
        let busy = gateway_error_reply(GatewayError::Busy { max: 8 });
        assert!(matches!(&busy, Reply::Error(text) if text.starts_with("BUSY this node runs")), "{busy:?}");
        let unknown = GatewayError::NoOutcome {
            write: true,
            reason: Some(TryAgainReason::Conflict),
            waited: Duration::from_secs(10),
        };
        let reply = gateway_error_reply(unknown);
        assert!(
            matches!(&reply, Reply::Error(text) if text.starts_with("ERR no outcome") && text.contains("may or may not have been applied")),
            "{reply:?}"
        );
    }
}
