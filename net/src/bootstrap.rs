//! Bootstrap happens once (docs/protocol.md §7.1): whether a node whose log holds no records
//! may start as a member of its cluster's first configuration, or must catch up from the
//! members before it votes or serves.
//!
//! An empty log cannot tell a new node from one whose data dir was emptied while it was a
//! member (`rm -rf`, a replaced disk, a restore that missed it). The second kind voted YES,
//! acknowledged commits and promised in agreements, and has forgotten all of it: taking part
//! again as if it held the data breaks atomicity and the majority-durability of commits, and
//! later writes diverge (issue 12). Only the operator knows which it is, so only the operator
//! says "this dir starts a new cluster": `dkv-server --init` ([`crate::ServerConfig::init`]).
//! Without it, an empty log starts *unvouched* ([`dkv_core::Node::start_unvouched`]): it
//! takes part in nothing, and with configuration changes on (`--availability`) the members
//! remove it and add it back once it has caught up by state transfer (§7.6).
//!
//! What counts is records, not files: a dir whose `IDENTITY` or segment files survived but
//! whose records are gone is as empty as a new one, and a first start that ended before its
//! first record was durable (a port in use, a crash) left the node unable to have promised
//! anything, so starting it again with `--init` is safe.

use crate::config::ServerConfig;
use crate::event_loop::{ServerError, cluster_of};
use crate::identity::Identity;
use crate::wal::Wal;
use dkv_core::Record;

/// How a node starts from what its log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The log holds records: the node starts from them, vouching for them as recovery
    /// allows. `init_ignored`: `--init` was given, and a log that holds records is never
    /// bootstrapped again (a node restarted with its first command line is no new cluster).
    FromLog { init_ignored: bool },
    /// An empty log that the operator said starts a new cluster (`--init`), or a one-node
    /// cluster's: a member of the first configuration, with no data.
    NewCluster,
    /// An empty log without `--init`, in a cluster with other members: the node cannot vouch
    /// for it and catches up from the members first.
    CatchUp,
}

impl Start {
    /// The rule. A node without peers is its cluster's only member: it has nobody to catch
    /// up from, so an empty log can only start a new store (unvouched, it would refuse every
    /// request for good), and no replica can diverge from it.
    pub fn decide(records: &[Record], init: bool, has_peers: bool) -> Start {
        match (records.is_empty(), init, has_peers) {
            (false, init, _) => Start::FromLog { init_ignored: init },
            (true, true, _) | (true, false, false) => Start::NewCluster,
            (true, false, true) => Start::CatchUp,
        }
    }
}

/// Whether the data dir of the node `config` describes holds no log records: a new dir, or
/// one emptied. Opens and recovers the log as a start does (making the dir if need be), then
/// lets it go: for a program that starts several nodes and decides whether they make a new
/// cluster together (`dkv-server demo`).
pub fn holds_no_log(config: &ServerConfig) -> Result<bool, ServerError> {
    let identity = Identity { cluster: cluster_of(config)?, node: config.id };
    let (_wal, recovery) = Wal::open_as(&config.data_dir, identity)?;
    Ok(recovery.records.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOME_LOG: &[Record] = &[Record::BootTracked { incarnation: 1 }];

    #[test]
    fn an_empty_log_starts_a_new_cluster_only_with_init() {
        assert_eq!(Start::decide(&[], true, true), Start::NewCluster);
        assert_eq!(Start::decide(&[], false, true), Start::CatchUp);
    }

    #[test]
    fn a_log_with_records_starts_from_them_whatever_init_says() {
        assert_eq!(Start::decide(SOME_LOG, false, true), Start::FromLog { init_ignored: false });
        assert_eq!(Start::decide(SOME_LOG, true, true), Start::FromLog { init_ignored: true });
        assert_eq!(Start::decide(SOME_LOG, true, false), Start::FromLog { init_ignored: true });
    }

    #[test]
    fn a_one_node_cluster_needs_no_init() {
        assert_eq!(Start::decide(&[], false, false), Start::NewCluster);
        assert_eq!(Start::decide(&[], true, false), Start::NewCluster);
    }
}
