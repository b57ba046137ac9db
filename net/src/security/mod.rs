//! Who may speak to a node, and how it knows.
//!
//! - [`credentials`]: a cluster's CA, its members' certificates and keys, and the cluster key,
//!   made by `dkv-server init` and loaded by each node.
//! - [`tls`]: mutual TLS for peer links: each side proves it is a member, and the acceptor learns
//!   which one.
//! - [`datagrams`]: sealed peer datagrams for UDP mode, with replays refused.
//! - [`users`]: who may talk to a node as a client, with which role, and how they prove it.

pub mod credentials;
pub mod datagrams;
pub mod hex;
pub mod tls;
pub mod users;
