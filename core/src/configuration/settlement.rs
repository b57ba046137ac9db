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

    /// The settlement of a configuration of the three nodes of a three-node cluster, whose
    /// commits are visible on every YES ([`super::Cluster::visible_on_every_yes`]), from exactly
    /// these `reports` of its members: as [`Settlement::from_reports`], and an id that every
    /// report holds in doubt commits too. Also says whether any commit was so **inferred**: a
    /// value that infers one must keep no member but the reporters (docs/protocol.md §7.4,
    /// "Inferred commits").
    ///
    /// Why an inferred commit must be made: its coordinator may have made it visible on the
    /// three YES votes and told no one before it went away, or lost its decision in a crash
    /// (it is logged lazily) and reports it in doubt. Why it is safe to make: the reports are
    /// at least two members' (every cover of such a configuration), each holding the
    /// transaction prepared, with its keys locked, and deciding or voting nothing more in the
    /// epoch; a coordinator that acted on its abort does not report it in doubt; and a member
    /// that did not report, which may lack it, leaves the configuration.
    pub fn from_reports_inferring<'a>(reports: impl IntoIterator<Item = &'a Report>) -> (Settlement, bool) {
        let reports: Vec<&Report> = reports.into_iter().collect();
        let mut settlement = Settlement::from_reports(reports.iter().copied());
        let held_by_every_reporter =
            |txn: &TxnId| reports.iter().all(|report| report.in_doubt().binary_search(txn).is_ok());
        let (inferred, abort): (Vec<TxnId>, Vec<TxnId>) =
            settlement.abort.iter().partition(|txn| held_by_every_reporter(txn));
        if inferred.is_empty() {
            return (settlement, false);
        }
        settlement.abort = abort;
        settlement.commit.extend(inferred);
        settlement.commit.sort_unstable();
        (settlement, true)
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

    /// Inferring (three members of three nodes): an id every report holds in doubt commits,
    /// and only then does the settlement say it inferred; one a report lacks or knows nothing
    /// of aborts, and one known committed commits as without inference.
    #[test]
    fn an_id_every_report_holds_in_doubt_is_inferred_committed() {
        let reports = [report(&[], &[1, 2, 3]), report(&[4], &[1, 3, 4])];
        let (settlement, inferred) = Settlement::from_reports_inferring(&reports);
        assert!(inferred);
        assert_eq!(settlement.commit_set(), ids(&[1, 3, 4]));
        assert_eq!(settlement.abort_set(), ids(&[2]));
        let (settlement, inferred) = Settlement::from_reports_inferring(&[report(&[4], &[2]), report(&[], &[3])]);
        assert!(!inferred);
        assert_eq!(settlement, Settlement::from_reports(&[report(&[4], &[2]), report(&[], &[3])]));
        assert_eq!(Settlement::from_reports_inferring([]), (Settlement::default(), false));
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

        /// Inferring moves from the abort set to the commit set exactly the ids every report
        /// holds in doubt, says so when it moved any, and changes nothing else.
        #[test]
        fn inference_moves_exactly_what_every_report_holds_in_doubt(reports in prop::collection::vec(arbitrary_report(), 0..4)) {
            let plain = Settlement::from_reports(&reports);
            let (inferring, inferred) = Settlement::from_reports_inferring(&reports);
            let mut moved = 0;
            for number in 0..40 {
                let t = txn(number);
                let everywhere = !reports.is_empty() && reports.iter().all(|r| r.in_doubt().contains(&t));
                let moves = plain.aborts(t) && everywhere;
                moved += usize::from(moves);
                prop_assert_eq!(inferring.commits(t), plain.commits(t) || moves, "{}", t);
                prop_assert_eq!(inferring.aborts(t), plain.aborts(t) && !moves, "{}", t);
            }
            prop_assert_eq!(inferred, moved > 0);
            prop_assert!(report::is_ascending(inferring.commit_set()) && report::is_ascending(inferring.abort_set()));
        }
    }
}
