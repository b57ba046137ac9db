//! What switching a cluster to configuration changes needs (docs/protocol.md §6): no node's log
//! may hold a share voted pinned, with changes off, that is still in doubt. A commit may be
//! visible on such shares with no copy of its decision anywhere (§7.2, "Visible on every YES"),
//! and the first change's settlement, made from a majority's reports, would abort it. A node
//! started with changes on refuses such a log (`ServerError::PinnedInDoubt`), and `dkv-server
//! availability on` checks every data dir before it switches any.

use crate::identity::Identity;
use crate::wal::{Wal, WalError};
use dkv_core::TxnId;
use dkv_core::codec::wal::CutRecord;
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
    #[error(
        "data dir {dir} does not exist: give the node's --data-dir (for a node whose data was lost for good, make its new, empty dir first)"
    )]
    Missing { dir: String },
}

/// The shares that node `identity`'s log in `data_dir` holds pinned and in doubt, as the node
/// would restore them. The log is read with nothing changed on disk ([`Wal::read`]; a tail the
/// node's start would cut is not cut here, so the start still sees it), with the dir locked, so
/// the node must be stopped. A log whose start would not vouch for it (a record damaged at its
/// end, or one marked so) restores nothing, pins included.
pub fn shares_pinned_in_doubt(data_dir: &Path, identity: Identity) -> Result<Vec<TxnId>, PinnedCheckError> {
    // A mistyped dir would read as empty and pass.
    if !data_dir.is_dir() {
        return Err(PinnedCheckError::Missing { dir: data_dir.display().to_string() });
    }
    let recovery = Wal::read(data_dir, identity)?;
    if recovery.cut_tail.is_some_and(|cut| cut.record == CutRecord::WholeButDamaged) {
        return Ok(Vec::new());
    }
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
