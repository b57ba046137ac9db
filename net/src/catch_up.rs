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
//! transfer, bounded by [`SILENCE_MAX`] between frames and by `join_grace` in all: a node that
//! stands outside serves nothing and votes on nothing, and its members give it `join_grace` to
//! catch up before they suspect it again.

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
    // Past `join_grace` the members suspect this node anyway, and remove it again.
    let took_max = Some(config.timing.join_grace);
    Ok(fetch_into(sink, from, addr, credentials, WINDOW_BYTES, SILENCE_MAX, took_max)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use crate::security::credentials::{NodeCredentials, init_cluster};
    use crate::transfer::STAGING_FILE_NAME;
    use crate::wal::WalError;
    use dkv_core::Record;
    use std::collections::BTreeMap;
    use std::net::{SocketAddr, TcpListener};
    use std::sync::Arc;

    /// A catch-up whose member cannot be reached changes nothing: no staging file is left, the
    /// dir stays locked by the server, and its log goes on taking records and is the one a
    /// restart recovers, records appended after the failure included.
    #[test]
    fn a_failed_catch_up_leaves_the_log_whole_locked_and_in_use() {
        let root = tempfile::tempdir().unwrap();
        let cluster = init_cluster(&root.path().join("credentials"), &[NodeId(0), NodeId(1)]).unwrap();
        let credentials = NodeCredentials::load(&root.path().join("credentials/node-0")).unwrap();
        // A port nothing listens on any more: the member is down.
        let member_addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let dir = root.path().join("node-0");
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let peers = BTreeMap::from([(NodeId(1), member_addr)]);
        let mut config = ServerConfig::new(NodeId(0), loopback, loopback, peers, Transport::Tcp, dir.clone());
        config.credentials = Some(Arc::new(credentials));
        let identity = Identity { cluster, node: NodeId(0) };
        let (mut wal, _) = Wal::open_as(&dir, identity).unwrap();
        let before = Record::BootTracked { incarnation: 7 };
        wal.append(&before).unwrap();
        wal.sync().unwrap();

        let error = fetch_joining(&config, cluster, &wal, NodeId(1), Epoch(3), 7).unwrap_err();
        assert!(matches!(error, CatchUpError::Fetch(FetchError::Connect { .. })), "{error}");
        let error = fetch_joining(&config, cluster, &wal, NodeId(5), Epoch(3), 7).unwrap_err();
        assert!(matches!(error, CatchUpError::NoAddress { member: NodeId(5) }), "{error}");

        assert!(!dir.join(STAGING_FILE_NAME).exists(), "an abandoned transfer leaves no staging file");
        assert!(matches!(Wal::open(&dir), Err(WalError::Locked { .. })), "the server still holds the dir");
        let after = Record::BootTracked { incarnation: 8 };
        wal.append(&after).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, recovery) = Wal::open_as(&dir, identity).unwrap();
        assert_eq!(recovery.records, vec![before, after]);
    }
}
