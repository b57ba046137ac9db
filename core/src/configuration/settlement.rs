//! The settlement of epoch `e`: which of its unfinished transactions commit and which abort,
//! decided once, in the value the members of `e` choose for epoch `e + 1` (docs/protocol.md
//! §7.4).

use super::report::{self, MalformedIds, Report};
use crate::ids::{NodeSet, TxnId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A **commit set** and an **abort set** of transaction ids, sorted and disjoint. Built only
/// by [`Settlement::from_reports`] (or decoded, and then checked).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SettlementParts")]
pub struct Settlement {
    commit: Vec<TxnId>,
    abort: Vec<TxnId>,
}

impl Settlement {
    /// Ids a settlement may hold: one full report from each member of a majority of the
    /// largest cluster. A settlement of `n` members holds at most `(n / 2 + 1) *
    /// Report::IDS_MAX` (see [`Settlement::ids_max`]), which the agreement checks too.
    pub const IDS_MAX: usize = Self::ids_max(NodeSet::CAPACITY);

    /// The ids a settlement built from a smallest majority of `members` members can hold.
    pub const fn ids_max(members: usize) -> usize {
        (members / 2 + 1) * Report::IDS_MAX
    }

    /// The settlement from exactly these reports (a majority's, one each): the commit set is
    /// every id any report knows committed; the abort set every id reported in doubt and known
    /// committed by none. An id no report mentions is in neither: a member settles it from its
    /// own knowledge.
    ///
    /// Why a visible commit lands in the commit set: it is durable on a majority, which shares
    /// a member with the reporting majority, and that member acknowledged it before it froze
    /// and reported, so its report knows it committed. Why no commit set holds an abort: a
    /// member knows a transaction committed only from its coordinator's commit decision.
    pub fn from_reports<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Settlement {
        let mut commit = BTreeSet::new();
        let mut in_doubt = BTreeSet::new();
        for report in reports {
            commit.extend(report.committed().iter().copied());
            in_doubt.extend(report.in_doubt().iter().copied());
        }
        let abort = in_doubt.difference(&commit).copied().collect();
        Settlement { commit: commit.into_iter().collect(), abort }
    }

    /// The commit set, ascending.
    pub fn commit_set(&self) -> &[TxnId] {
        &self.commit
    }

    /// The abort set, ascending.
    pub fn abort_set(&self) -> &[TxnId] {
        &self.abort
    }

    pub fn commits(&self, txn: TxnId) -> bool {
        self.commit.binary_search(&txn).is_ok()
    }

    pub fn aborts(&self, txn: TxnId) -> bool {
        self.abort.binary_search(&txn).is_ok()
    }

    /// How many ids the two sets hold together.
    pub fn ids(&self) -> usize {
        self.commit.len() + self.abort.len()
    }
}

/// A settlement as decoded, before it is checked.
#[derive(Deserialize)]
struct SettlementParts {
    commit: Vec<TxnId>,
    abort: Vec<TxnId>,
}

impl TryFrom<SettlementParts> for Settlement {
    type Error = MalformedIds;

    fn try_from(parts: SettlementParts) -> Result<Settlement, MalformedIds> {
        report::check_lists(&parts.commit, &parts.abort, Settlement::IDS_MAX)?;
        Ok(Settlement { commit: parts.commit, abort: parts.abort })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use proptest::prelude::*;

    fn txn(number: u64) -> TxnId {
        TxnId { coordinator: NodeId(0), incarnation: 1, number }
    }

    fn report(committed: &[u64], in_doubt: &[u64]) -> Report {
        Report::new(committed.iter().map(|&n| txn(n)), in_doubt.iter().map(|&n| txn(n))).unwrap()
    }

    fn ids(numbers: &[u64]) -> Vec<TxnId> {
        numbers.iter().map(|&n| txn(n)).collect()
    }

    /// One member's knowledge of a commit outweighs every other member's doubt; a
    /// transaction in doubt everywhere aborts; one nobody mentions is in neither set.
    #[test]
    fn one_report_of_a_commit_outweighs_every_doubt() {
        let settlement = Settlement::from_reports(&[report(&[], &[1, 2]), report(&[1], &[2, 3]), report(&[4], &[])]);
        assert_eq!(settlement.commit_set(), ids(&[1, 4]));
        assert_eq!(settlement.abort_set(), ids(&[2, 3]));
        assert!(settlement.commits(txn(1)) && !settlement.aborts(txn(1)));
        assert!(!settlement.commits(txn(9)) && !settlement.aborts(txn(9)));
        assert_eq!(Settlement::from_reports([]), Settlement::default());
    }

    /// A settlement from the wire is checked: its sets sorted, disjoint and bounded.
    #[test]
    fn a_decoded_settlement_is_checked() {
        let good = Settlement::from_reports(&[report(&[1], &[2])]);
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<Settlement>(&bytes).unwrap(), good);
        let both = Settlement { commit: ids(&[1]), abort: ids(&[1]) };
        assert!(postcard::from_bytes::<Settlement>(&postcard::to_allocvec(&both).unwrap()).is_err());
        let unsorted = Settlement { commit: ids(&[2, 1]), abort: vec![] };
        assert!(postcard::from_bytes::<Settlement>(&postcard::to_allocvec(&unsorted).unwrap()).is_err());
    }

    fn arbitrary_report() -> impl Strategy<Value = Report> {
        (prop::collection::vec(0u64..40, 0..12), prop::collection::vec(0u64..40, 0..12))
            .prop_map(|(committed, in_doubt)| report(&committed, &in_doubt))
    }

    proptest! {
        /// For any reports: the commit set is exactly the union of what they know committed,
        /// the abort set exactly what is in doubt somewhere and known committed nowhere, the
        /// two are disjoint and sorted, and the order of the reports does not matter.
        #[test]
        fn settlement_is_the_rule_applied_to_the_reports(reports in prop::collection::vec(arbitrary_report(), 0..6)) {
            let settlement = Settlement::from_reports(&reports);
            for number in 0..40 {
                let t = txn(number);
                let known = reports.iter().any(|r| r.committed().contains(&t));
                let doubted = reports.iter().any(|r| r.in_doubt().contains(&t));
                prop_assert_eq!(settlement.commits(t), known, "{}", t);
                prop_assert_eq!(settlement.aborts(t), doubted && !known, "{}", t);
            }
            prop_assert!(report::is_ascending(settlement.commit_set()) && report::is_ascending(settlement.abort_set()));
            prop_assert!(report::are_disjoint(settlement.commit_set(), settlement.abort_set()));
            prop_assert!(settlement.ids() <= reports.iter().map(|r| r.committed().len() + r.in_doubt().len()).sum::<usize>());
            let reversed: Vec<Report> = reports.iter().rev().cloned().collect();
            prop_assert_eq!(Settlement::from_reports(&reversed), settlement);
        }
    }
}
