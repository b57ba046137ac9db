//! Who may speak to a node, and how it knows.
//!
//! - [`credentials`]: a cluster's CA, its members' certificates and keys, and the cluster key,
//!   made by `dkv-server init` and loaded by each node.
pub mod credentials;
pub mod tls;
