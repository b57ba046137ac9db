//! The join's last step on a real server (docs/protocol.md §7.6, point 6): a node that stands
//! outside its configuration and was told of a value that adds it back under its present ticket
//! asks for `Output::CatchUp { from, epoch }`. The server then takes member `from`'s state
//! through the `Installed` record of `epoch` ([`Adoption::joining`](dkv_core::catch_up::Adoption::joining))
//! as its whole log, and starts the node again from it: a member of `epoch`.
//!
//! [`fetch_joining`] is the part that may fail and change nothing: it streams the member's log
//! into a staging file ([`crate::transfer`]) while the server's own log stays open and whole, and
//! replaces the log only once the stream is complete and adopted. The dir's `LOCK` is held
//! throughout (the sink takes a clone of the server's). It blocks the event loop for the
//! transfer, bounded by [`SILENCE_MAX`] between frames: a node that stands outside serves nothing,
//! votes on nothing, and its members gave it `join_grace` to catch up.

use crate::config::ServerConfig;
use crate::identity::Identity;
use crate::transfer::{FetchError, FetchReport, TransferSink, TransferSinkError, fetch_into};
use crate::wal::Wal;
use dkv_core::{ClusterId, Epoch, NodeId};
use std::time::Duration;
use thiserror::Error;

/// The most bytes the member may have sent unacknowledged: a few chunks in flight keep a
/// loopback or LAN link busy, and bound what the asker's socket holds.
pub(crate) const WINDOW_BYTES: u32 = 4 << 20;
/// The longest the asker waits for the member's next frame (or for its connect) before it
/// gives up; the node asks again a `join_grace` later.
pub(crate) const SILENCE_MAX: Duration = Duration::from_secs(2);

/// Why a catch-up did not happen. The server's log and node are then the ones it had.
#[derive(Debug, Error)]
pub(crate) enum CatchUpError {
    #[error("member {member} is not among this node's --peers: no address to ask it at")]
    NoAddress { member: NodeId },
    #[error("state transfer runs over the TCP peer links (with TLS credentials); this node has none")]
    NoTcpPeers,
    #[error("cannot start the transfer: {0}")]
    Sink(#[from] TransferSinkError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Replaces the log of `wal`'s dir by member `from`'s state through epoch `epoch`'s `Installed`
/// record, adopted as this node's (whose last incarnation was `incarnation_floor`). `wal` is
/// written no more by the caller meanwhile: on success its segments are gone and the caller
/// reopens the dir ([`Wal::reopen_locked`]); on failure it is untouched and stays the log.
pub(crate) fn fetch_joining(
    config: &ServerConfig,
    cluster: ClusterId,
    wal: &Wal,
    from: NodeId,
    epoch: Epoch,
    incarnation_floor: u64,
) -> Result<FetchReport, CatchUpError> {
    let credentials = match &config.credentials {
        Some(credentials) if !config.transport.peers_over_udp() => credentials,
        _ => return Err(CatchUpError::NoTcpPeers),
    };
    let &addr = config.peers.get(&from).ok_or(CatchUpError::NoAddress { member: from })?;
    let identity = Identity { cluster, node: config.id };
    let sink = TransferSink::create_locked(wal.dir(), wal.lock(), identity, incarnation_floor)?.joining(epoch);
    Ok(fetch_into(sink, from, addr, credentials, WINDOW_BYTES, SILENCE_MAX)?)
}
