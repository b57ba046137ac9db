//! The join's last step on a real server (docs/protocol.md §7.6, point 7): a node that stands
//! outside its configuration and was told of a value that adds it back under its present ticket
//! asks for `Output::CatchUp { from, epoch }`. The server then takes member `from`'s state
//! through the `Installed` record of `epoch` ([`Adoption::joining`](dkv_core::catch_up::Adoption::joining))
//! as its whole log, and starts the node again from it: a member of `epoch`.
//!
//! [`Fetching::start`] streams the member's log on a thread of its own into a staging file
//! ([`crate::transfer`]), while the server goes on: its node, standing outside, keeps asking to
//! join, which is how the members know it is alive and catching up (they suspect a node just
//! added that stops asking, as any silent member). The server's own log stays open and whole,
//! written as before; [`Fetching::finish`] replaces it, on the server's thread, only once the
//! stream is complete and adopted. The dir's `LOCK` is held throughout (the sink takes a clone of
//! the server's). A transfer is bounded by [`SILENCE_MAX`] between frames and by `join_grace` in
//! all: past it the members suspect the node anyway.

use crate::config::ServerConfig;
use crate::identity::Identity;
use crate::transfer::{FetchError, FetchReport, Streamed, TransferSink, TransferSinkError, stream_into};
use crate::wal::Wal;
use dkv_core::{ClusterId, Epoch, NodeId};
use mio::Waker;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The most bytes the member may have sent unacknowledged: a few chunks in flight keep a
/// loopback or LAN link busy, and bound what the asker's socket holds.
pub(crate) const WINDOW_BYTES: u32 = 4 << 20;
/// The longest the asker waits for the member's next frame (or for its connect) before it
/// gives up; the node is told, and asks again.
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
    #[error("the transfer thread could not be started or ended abnormally")]
    Thread,
}

impl CatchUpError {
    /// Whether the member's state was refused (it cannot be taken from that member), rather
    /// than the transfer failing on the way.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, CatchUpError::Fetch(FetchError::Sink(TransferSinkError::Adopt(_))))
    }
}

/// A catch-up under way: member `from`'s state through epoch `epoch`, streamed on a thread.
pub(crate) struct Fetching {
    pub(crate) from: NodeId,
    pub(crate) epoch: Epoch,
    pub(crate) started: Instant,
    called_off: Arc<AtomicBool>,
    /// Taken by [`Fetching::finish`] or [`Fetching::call_off`].
    thread: Option<JoinHandle<Result<Streamed, FetchError>>>,
}

impl Fetching {
    /// Starts streaming member `from`'s state through epoch `epoch`'s `Installed` record into a
    /// staging file of `wal`'s dir, adopted as this node's (whose last incarnation was
    /// `incarnation_floor`). `waker` is woken when the stream ends, either way.
    pub(crate) fn start(
        config: &ServerConfig,
        cluster: ClusterId,
        wal: &Wal,
        from: NodeId,
        epoch: Epoch,
        incarnation_floor: u64,
        waker: Arc<Waker>,
    ) -> Result<Fetching, CatchUpError> {
        let credentials = match &config.credentials {
            Some(credentials) if !config.transport.peers_over_udp() => Arc::clone(credentials),
            _ => return Err(CatchUpError::NoTcpPeers),
        };
        let &addr = config.peers.get(&from).ok_or(CatchUpError::NoAddress { member: from })?;
        let identity = Identity { cluster, node: config.id };
        let sink =
            TransferSink::create_locked(wal.dir(), wal.lock(), identity, incarnation_floor)?.joining(epoch, from);
        // Past `join_grace` the members suspect this node anyway, and remove it again.
        let took_max = Some(config.timing.join_grace);
        let called_off = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&called_off);
        let thread = std::thread::Builder::new()
            .name(format!("catch-up-{from}"))
            .spawn(move || {
                let streamed =
                    stream_into(sink, from, addr, &credentials, WINDOW_BYTES, SILENCE_MAX, took_max, Some(&flag));
                let _ = waker.wake();
                streamed
            })
            .map_err(|_| CatchUpError::Thread)?;
        Ok(Fetching { from, epoch, started: Instant::now(), called_off, thread: Some(thread) })
    }

    /// Whether the stream ended (then [`Fetching::finish`] does not block).
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the stream's end and, if it came whole, installs the state as the log of the
    /// dir (the caller writes the old log no more, and reopens the dir).
    pub(crate) fn finish(mut self) -> Result<FetchReport, CatchUpError> {
        let thread = self.thread.take().ok_or(CatchUpError::Thread)?;
        let streamed = thread.join().map_err(|_| CatchUpError::Thread)??;
        Ok(streamed.finish()?)
    }

    /// Abandons the transfer (the server is stopping): waits at most one [`SILENCE_MAX`] for
    /// the thread, whose sink removes the staging file and releases its hold on the dir.
    pub(crate) fn call_off(mut self) {
        self.called_off.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Fetching {
    /// A transfer dropped unfinished (the server returned with an error) is called off: its
    /// thread ends at the next frame or silence, and releases the dir.
    fn drop(&mut self) {
        self.called_off.store(true, Ordering::Relaxed);
    }
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

        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let fetching = Fetching::start(&config, cluster, &wal, NodeId(1), Epoch(3), 7, waker.clone()).unwrap();
        let error = fetching.finish().expect_err("the member is down");
        assert!(matches!(error, CatchUpError::Fetch(FetchError::Connect { .. })), "{error}");
        let error = Fetching::start(&config, cluster, &wal, NodeId(5), Epoch(3), 7, waker).err();
        let error = error.expect("no address");
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
