//! What a member of epoch `e` tells a proposer when it promises a ballot of the agreement on
//! epoch `e + 1` (docs/protocol.md §7.4), and the freeze that makes it final.
//!
//! A report is ids only: every member of `e` voted on every transaction that committed in
//! `e`, so every member holds its operations; the settlement only has to say which way each
//! one goes.

use crate::ids::TxnId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A member's report on epoch `e`: the transactions it knows committed and not finished, and
/// those it holds prepared without a known decision (in doubt). Both lists are sorted and
/// disjoint (an id known committed is not in doubt), and together hold at most
/// [`Report::IDS_MAX`] ids, so an encoded report is at most [`Report::BYTES_MAX`] bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ReportParts")]
pub struct Report {
    committed: Vec<TxnId>,
    in_doubt: Vec<TxnId>,
}

impl Report {
    /// Ids one report may hold. A member keeps its in-doubt and committed-but-not-finished
    /// transactions within it (past it, it votes NO, busy: §7.2), so its report always fits.
    pub const IDS_MAX: usize = 16_384;
    /// The largest encoding of a report (postcard): every id at its largest, and the two
    /// lists' lengths.
    pub const BYTES_MAX: usize = Self::IDS_MAX * TXN_ID_BYTES_MAX + 2 * LENGTH_BYTES_MAX;

    /// A report from what a member knows. An id both known committed and in doubt is known
    /// committed. Refused, never cut, past [`Report::IDS_MAX`]: a cut report could leave out
    /// the one member's knowledge of a commit that the settlement needs.
    pub fn new(
        committed: impl IntoIterator<Item = TxnId>,
        in_doubt: impl IntoIterator<Item = TxnId>,
    ) -> Result<Report, ReportTooLarge> {
        let committed = sorted(committed);
        let in_doubt: Vec<TxnId> =
            sorted(in_doubt).into_iter().filter(|t| committed.binary_search(t).is_err()).collect();
        let ids = committed.len() + in_doubt.len();
        if ids > Self::IDS_MAX {
            return Err(ReportTooLarge { ids });
        }
        Ok(Report { committed, in_doubt })
    }

    /// The transactions this member knows committed (and not finished), ascending.
    pub fn committed(&self) -> &[TxnId] {
        &self.committed
    }

    /// The transactions this member holds prepared without a known decision, ascending.
    pub fn in_doubt(&self) -> &[TxnId] {
        &self.in_doubt
    }
}

/// A member's knowledge does not fit one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error(
    "a report of {ids} transaction ids exceeds the bound of {max}; the member must vote NO (busy) before its in-doubt and unfinished committed transactions outgrow it",
    max = Report::IDS_MAX
)]
pub struct ReportTooLarge {
    pub ids: usize,
}

/// The member's side of the freeze. [`crate::configuration::Agreement`] calls it at the
/// moment it is about to promise its first ballot, and only then, so that the report and the
/// end of the epoch are one step: nothing can reach the member between the two.
///
/// A pull, on purpose: were the report handed in beside a promise request, a driver could take
/// it, let the node acknowledge one more commit, and then promise with a report that misses
/// it. The agreement keeps the report in its durable state ([`super::AgreementState::report`])
/// and promises every later ballot with the same report: after a restart, a member whose
/// state holds a report is still frozen, and is never asked again.
pub trait Freeze {
    /// Ends epoch `e` at this member for good, then says what it knows. From this call on the
    /// member casts no vote, makes no decision, logs and acknowledges no COMMIT (those
    /// already waiting for the log included) and grants no lease in epoch `e`. An error leaves
    /// the promise unmade (the member stays frozen: that is always safe).
    fn freeze(&mut self) -> Result<Report, ReportTooLarge>;
}

impl<F: FnMut() -> Result<Report, ReportTooLarge>> Freeze for F {
    fn freeze(&mut self) -> Result<Report, ReportTooLarge> {
        self()
    }
}

/// The encoding of a `TxnId` at its largest: a byte for the node, and up to ten bytes for each
/// of the two varint numbers.
pub(super) const TXN_ID_BYTES_MAX: usize = 1 + 10 + 10;
/// A list length up to 2^21 - 1 takes at most three varint bytes.
pub(super) const LENGTH_BYTES_MAX: usize = 3;

/// Ascending and without repeats.
pub(super) fn sorted(ids: impl IntoIterator<Item = TxnId>) -> Vec<TxnId> {
    let mut ids: Vec<TxnId> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Strictly ascending (so no repeats), which makes membership a binary search.
pub(super) fn is_ascending(ids: &[TxnId]) -> bool {
    ids.windows(2).all(|pair| pair[0] < pair[1])
}

/// Two ascending lists share no id.
pub(super) fn are_disjoint(a: &[TxnId], b: &[TxnId]) -> bool {
    a.iter().all(|t| b.binary_search(t).is_err())
}

/// A report as decoded, before it is checked: a peer's report is untrusted.
#[derive(Deserialize)]
struct ReportParts {
    committed: Vec<TxnId>,
    in_doubt: Vec<TxnId>,
}

/// Why a decoded report or settlement is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum MalformedIds {
    #[error("a list of transaction ids is not strictly ascending")]
    NotAscending,
    #[error("a transaction id is in both lists")]
    InBothLists,
    #[error("{ids} transaction ids exceed the bound of {max}")]
    TooMany { ids: usize, max: usize },
}

/// Checks two id lists decoded from a peer or the log.
pub(super) fn check_lists(a: &[TxnId], b: &[TxnId], max: usize) -> Result<(), MalformedIds> {
    if a.len() + b.len() > max {
        return Err(MalformedIds::TooMany { ids: a.len() + b.len(), max });
    }
    if !is_ascending(a) || !is_ascending(b) {
        return Err(MalformedIds::NotAscending);
    }
    if !are_disjoint(a, b) {
        return Err(MalformedIds::InBothLists);
    }
    Ok(())
}

impl TryFrom<ReportParts> for Report {
    type Error = MalformedIds;

    fn try_from(parts: ReportParts) -> Result<Report, MalformedIds> {
        check_lists(&parts.committed, &parts.in_doubt, Report::IDS_MAX)?;
        Ok(Report { committed: parts.committed, in_doubt: parts.in_doubt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn txn(coordinator: u8, number: u64) -> TxnId {
        TxnId { coordinator: NodeId(coordinator), incarnation: 1, number }
    }

    /// A report is sorted, without repeats, and an id known committed is not also in doubt.
    #[test]
    fn a_report_is_sorted_and_known_committed_wins() {
        let report = Report::new([txn(1, 5), txn(0, 9), txn(1, 5)], [txn(2, 1), txn(0, 9)]).unwrap();
        assert_eq!(report.committed(), [txn(0, 9), txn(1, 5)]);
        assert_eq!(report.in_doubt(), [txn(2, 1)]);
    }

    /// Past the bound a report is refused whole, never cut; at the bound its encoding fits
    /// `BYTES_MAX` even with every id at its largest.
    #[test]
    fn a_report_is_bounded_in_ids_and_bytes() {
        let largest =
            |i: usize| TxnId { coordinator: NodeId(u8::MAX), incarnation: u64::MAX, number: u64::MAX - i as u64 };
        let half = Report::IDS_MAX / 2;
        let full = Report::new((0..half).map(largest), (half..Report::IDS_MAX).map(largest)).unwrap();
        let bytes = postcard::to_allocvec(&full).unwrap();
        assert!(bytes.len() <= Report::BYTES_MAX, "{} bytes", bytes.len());
        assert_eq!(postcard::from_bytes::<Report>(&bytes).unwrap(), full);
        let over = Report::new((0..=Report::IDS_MAX).map(largest), []);
        assert_eq!(over, Err(ReportTooLarge { ids: Report::IDS_MAX + 1 }));
    }

    /// A report from a peer is checked as it is decoded: unsorted lists, an id in both, or
    /// too many ids are refused.
    #[test]
    fn a_decoded_report_is_checked() {
        let encode = |committed: Vec<TxnId>, in_doubt: Vec<TxnId>| {
            postcard::to_allocvec(&Report { committed, in_doubt }).unwrap()
        };
        for bytes in [
            encode(vec![txn(1, 2), txn(1, 1)], vec![]),
            encode(vec![txn(1, 1)], vec![txn(1, 1)]),
            encode(vec![txn(1, 1), txn(1, 1)], vec![]),
            encode((0..=Report::IDS_MAX as u64).map(|n| txn(0, n)).collect(), vec![]),
        ] {
            assert!(postcard::from_bytes::<Report>(&bytes).is_err());
        }
    }
}
