//! What switching a cluster to configuration changes needs (docs/protocol.md §6): no node's log
//! may hold a share voted pinned, with changes off, that is still in doubt. A commit may be
//! visible on such shares with no copy of its decision anywhere (§7.2, "Visible on every YES"),
//! and the first change's settlement, made from a majority's reports, would abort it. A node
//! started with changes on refuses such a log (`ServerError::PinnedInDoubt`), and `dkv-server
//! availability on` checks every data dir before it switches any.

use crate::identity::Identity;
use crate::wal::{Wal, WalError};
use dkv_core::TxnId;
use dkv_core::recovery::RecoveryError;
use std::path::Path;
use thiserror::Error;

/// Why a data dir's pinned shares could not be read.
#[derive(Debug, Error)]
pub enum PinnedCheckError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("the log in {dir} contradicts itself ({source}); the node would refuse it too")]
    Recovery { dir: String, source: RecoveryError },
}

/// The shares that node `identity`'s log in `data_dir` holds pinned and in doubt. Reads the
/// log as the node's start would (a torn tail is cut the same way), with the dir locked, so the
/// node must be stopped.
pub fn shares_pinned_in_doubt(data_dir: &Path, identity: Identity) -> Result<Vec<TxnId>, PinnedCheckError> {
    let (wal, recovery) = Wal::open_as(data_dir, identity)?;
    drop(wal);
    dkv_core::recovery::pinned_in_doubt(recovery.records, identity.node)
        .map_err(|source| PinnedCheckError::Recovery { dir: data_dir.display().to_string(), source })
}

/// The ids, for a message: the first few, and how many more.
pub fn list_ids(txns: &[TxnId]) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<String> = txns.iter().take(SHOWN).map(ToString::to_string).collect();
    match txns.len().saturating_sub(SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}
