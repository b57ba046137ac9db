//! # dkv-net: dkv on real sockets and disks
//!
//! The runtime that drives the very same [`dkv_core::Node`] the simulator drives, on a
//! single-threaded [mio] event loop per node ([`Server`]), with its write-ahead log on disk
//! ([`Wal`]), and the blocking client library programs use to talk to a cluster ([`Client`]).
//!
//! - Clients reach a node over TCP and UDP on the client port; peers talk on the peer port, over
//!   TCP links inside mutual TLS (or sealed UDP datagrams in UDP mode), and only members that
//!   proved who they are are heard there ([`security`]). dkv's own frames are
//!   [`dkv_core::codec::frame`]; the client port also speaks protocols whose requests carry no
//!   id (Redis's, the original project's text protocol), told apart by a connection's first
//!   bytes, whose requests the node runs as its own client through a bounded gateway.
//! - Every buffer is bounded and no socket operation blocks, so a slow, silent or hostile
//!   connection costs its buffer limits and nothing more.
//! - Records the node asks to persist are made durable many at a time with one `fdatasync`
//!   (group commit: a loop turn's, or, under load, all those logged while the previous sync
//!   ran on the syncer thread); the node is told they are durable only then, and it holds
//!   back votes, commits and replies until it is.

pub mod bootstrap;
mod catch_up;
pub mod client;
mod clock;
mod coalesce;
pub mod config;
mod connection;
mod event_loop;
#[cfg(test)]
mod failed_sync_tests;
mod gateway;
mod group_commit;
pub mod identity;
mod inbound;
pub mod modes;
mod peers;
mod rate_limit;
pub mod resp;
mod routes;
pub mod security;
mod session;
pub mod stats;
pub mod testing;
pub mod text_protocol;
pub mod transfer;
pub mod wal;

pub use client::{Client, ClientConfig, ClientError, ClientTransport};
pub use clock::Clock;
pub use config::{ConnectionLimits, DATAGRAM_BYTES_MAX, ServerConfig, Transport, udp_limits};
pub use event_loop::{Server, ServerError, ServerHandle};
pub use gateway::{GatewayError, GatewayLimits};
pub use stats::ServerStats;
pub use wal::{Wal, WalError};
