//! Deliberately wrong protocol variants, to prove the simulator catches each kind of bug.
//! They can only be switched on with the `canary` cargo feature (which only the simulator's
//! tests and `dkv-sim --canary` enable); without it [`Node`](crate::Node) never consults them
//! and the compiler removes every check.

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Canary {
    /// A participant votes YES before its PREPARE record is durable.
    VoteBeforeDurable,
    /// The coordinator tells the client "committed" before its decision record is durable.
    ReplyBeforeDecisionDurable,
    /// A prepared participant that hears nothing releases its locks (aborts) after a timeout.
    ReleaseLocksOnTimeout,
    /// Reads return the current value even when a prepared transaction holds the key.
    ReadsIgnoreLocks,
    /// Participants apply the writes when they prepare, not when they learn the commit.
    ApplyAtPrepare,
    /// The coordinator forgets a commit decision as soon as it has sent COMMIT once.
    CoordinatorForgetsDecisions,
    /// Retried requests are not recognised: no completion-record or in-progress check.
    NoDeduplication,
    /// The coordinator commits as soon as the first remote participant votes YES.
    CommitOnFirstYes,
    /// Completion records are evicted by capacity alone, however young (no retention), and
    /// every client is admitted however full the table.
    EvictYoungCompletions,
    /// A scan waits only for locks on keys that exist: a prepared insert into its range is
    /// not seen (a phantom).
    ScanIgnoresPreparedInsert,
    /// The coordinator judges a transaction's ops (conditions, counters, reads) when the
    /// request arrives, before any lock is taken, and uses that judgement: a failure is
    /// answered at once, and a success's results are what the client is told.
    ConditionBeforeLock,
    /// A read lease counts from the grant's arrival instead of the request's send time: a
    /// grant delayed in the network stretches the lease past what its grantor vouched for.
    LeaseFromArrival,
    /// Participants apply a commit as soon as COMMIT arrives, before the decision is known to
    /// be durable on a majority (what every participant did before commits waited for a
    /// majority, docs/protocol.md §7.2).
    VisibleBeforeMajority,
    /// A coordinator restarted with its own share of a transaction logged and no decision
    /// presumes abort (as classic 2PC does), though it may have sent COMMIT before the crash.
    PresumeAbortAfterRestart,
    /// A member's report says nothing of the commits it knows (docs/protocol.md §7.4): they go
    /// in as held in doubt, so the settlement ignores a member's knowledge of a commit and
    /// aborts commits some member holds, visible ones included.
    SettleIgnoresSurvivor,
    /// The node takes half of the cluster for a majority, in its agreement, in its choice to
    /// propose and in counting a commit's copies: two sides of an even partition each choose a
    /// configuration of one epoch, and commit in it.
    TwoConfigurationsOneEpoch,
    /// Reads are served from memory without a lease (until the node learns it is no member):
    /// a member cut off and dropped by the others keeps serving what it holds.
    ServePastLease,
    /// A member reports without freezing (§7.4): after its promise it still votes and
    /// acknowledges, so a commit can become visible behind a report that holds it in doubt.
    ReportBeforeFreeze,
    /// A node catching up to join takes the member's snapshot and configurations but not the
    /// transactions logged after the snapshot (docs/protocol.md §7.6): it joins without writes
    /// the clients were told committed.
    CatchUpSkipsCommits,
    /// A coordinator takes a commit for visible once a majority of the configuration's members
    /// hold its decision, fewer than a majority of the cluster when the configuration shrank
    /// (docs/protocol.md §7.3): a change agreed by the other nodes may not hear of it.
    VisibleOnMembersMajority,
    /// A member counts any heartbeat as heard from, not only one that echoes its own request
    /// (docs/protocol.md §7.5): a member cut off one way, that can send but not hear, is never
    /// suspected, and every write waits for its vote for as long as the cut lasts.
    SuspectOneWay,
    /// A node started with `--init` on an empty log takes part at once, without asking the
    /// others whether the cluster is new (docs/protocol.md §7.1): a node whose data dir was lost
    /// and that was restarted with `--init` still on its command line serves and votes from an
    /// empty store.
    BootstrapUnchecked,
    /// A promise for this node's ballot does not count as hearing its sender (docs/protocol.md
    /// §7.3, §7.6): a member suspected, or taken for a new life, that promises to every change
    /// meant to remove it is kept by each (the proposer keeps every member that promised), and
    /// the change is proposed again at once, install after install.
    SuspectDespitePromise,
    /// A member just added counts each request to join as heard from, whatever it echoes
    /// (docs/protocol.md §7.6): a node added that can send but not hear keeps asking, and every
    /// write waits for it for its whole grace.
    JoinWithoutEcho,
    /// A snapshot leaves out the finished marks heard (docs/protocol.md §4): a member that
    /// restarts from it no longer knows its coordinators' transactions below their marks
    /// finished, and refuses for ever to acknowledge a COMMIT sent again for one of them.
    SnapshotDropsMarks,
    /// A coordinator makes its commits visible on every YES (docs/protocol.md §7.2, "Visible
    /// on every YES") with configuration changes on in every configuration, not only in one of
    /// the three nodes of a three-node cluster: a change's settlement, which hears only a cover
    /// of the members, may then abort a commit a client was told of.
    ImplicitCommitWithChanges,
    /// A coordinator counts its own share's YES as soon as the share is logged, not once its
    /// record is durable: a crash can lose the share of a commit already visible.
    OwnYesBeforeDurable,
    /// The switch to configuration changes (`dkv-server availability on`) goes ahead while a
    /// node's log holds a pinned share in doubt (docs/protocol.md §6): a settlement may then
    /// abort a commit visible on its pinned votes. (The simulator's operator skips the check.)
    SwitchUndrained,
    /// A start cuts a damaged last record (possibly an acknowledged one) without first writing
    /// `Unvouched` over it (docs/protocol.md §4), as dkv-net did before 2026-11-28: a crash
    /// before the start's first sync erases the only evidence, and the next start vouches for a
    /// log that lacks the record. (The simulator's disk does the cut.)
    CutBeforeUnvouched,
    /// A node too far behind to follow the changes waits for an add before it catches up
    /// (docs/protocol.md §7.6), as before 2026-11-28: where the live members are fewer than a
    /// majority of the cluster, no change can add it, and none can be agreed again.
    FarBehindWaitsForAdd,
    /// A catch-up takes a commit of the node's own that the member's snapshot holds (learned,
    /// not yet applied) as in doubt, as before 2026-11-28 (docs/protocol.md §7.6): an install
    /// that does not name it drops it, and the node lacks a write its client was told committed.
    CatchUpHeldOwnInDoubt,
    /// In a configuration of the three nodes of a three-node cluster, a settlement infers no
    /// commit from its reports (docs/protocol.md §7.4, "Inferred commits"): a commit its
    /// coordinator made visible on every YES and told no one of before it went away is
    /// aborted.
    SettleWithoutInference,
    /// A settlement that infers a commit keeps every member that promised, not only those
    /// whose reports it read (§7.4, "Inferred commits"): a member that never held the commit,
    /// or acted on its abort, stays in the configuration without it.
    InferenceKeepsEveryMember,
    /// A member installs a configuration that drops one of three members at once, not a lease
    /// wait after it learned it (§7.4, "Inferred commits"): a commit inferred by the settlement
    /// is applied while the member dropped, which never held it, still serves reads under a
    /// lease of the old epoch.
    InstallWithoutWait,
    /// A frozen participant releases a share it voted for when its coordinator says the
    /// transaction is finished (§7.4): its report held it in doubt, and a settlement that
    /// infers its commit finds it gone.
    FrozenReleasesOnFinished,
    /// A coordinator's report holds its own share in doubt while its abort's record is on its
    /// way (§7.4, "Inferred commits"): the settlement may infer the commit, while the
    /// coordinator, once the record is durable, acts on the abort.
    AbortingReportedInDoubt,
    /// Members add back a node removed soon after its add at once, with no backoff (§7.6): a
    /// node cut off from one member only is removed and added again for as long as the cut
    /// lasts.
    AddWithoutBackoff,
}

impl Canary {
    pub const ALL: [Canary; 37] = [
        Canary::VoteBeforeDurable,
        Canary::ReplyBeforeDecisionDurable,
        Canary::ReleaseLocksOnTimeout,
        Canary::ReadsIgnoreLocks,
        Canary::ApplyAtPrepare,
        Canary::CoordinatorForgetsDecisions,
        Canary::NoDeduplication,
        Canary::CommitOnFirstYes,
        Canary::EvictYoungCompletions,
        Canary::ScanIgnoresPreparedInsert,
        Canary::ConditionBeforeLock,
        Canary::LeaseFromArrival,
        Canary::VisibleBeforeMajority,
        Canary::PresumeAbortAfterRestart,
        Canary::SettleIgnoresSurvivor,
        Canary::TwoConfigurationsOneEpoch,
        Canary::ServePastLease,
        Canary::ReportBeforeFreeze,
        Canary::CatchUpSkipsCommits,
        Canary::VisibleOnMembersMajority,
        Canary::SuspectOneWay,
        Canary::BootstrapUnchecked,
        Canary::SuspectDespitePromise,
        Canary::JoinWithoutEcho,
        Canary::SnapshotDropsMarks,
        Canary::ImplicitCommitWithChanges,
        Canary::OwnYesBeforeDurable,
        Canary::SwitchUndrained,
        Canary::CutBeforeUnvouched,
        Canary::FarBehindWaitsForAdd,
        Canary::CatchUpHeldOwnInDoubt,
        Canary::SettleWithoutInference,
        Canary::InferenceKeepsEveryMember,
        Canary::InstallWithoutWait,
        Canary::FrozenReleasesOnFinished,
        Canary::AbortingReportedInDoubt,
        Canary::AddWithoutBackoff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Canary::VoteBeforeDurable => "vote-before-durable",
            Canary::ReplyBeforeDecisionDurable => "reply-before-decision-durable",
            Canary::ReleaseLocksOnTimeout => "release-locks-on-timeout",
            Canary::ReadsIgnoreLocks => "reads-ignore-locks",
            Canary::ApplyAtPrepare => "apply-at-prepare",
            Canary::CoordinatorForgetsDecisions => "coordinator-forgets-decisions",
            Canary::NoDeduplication => "no-deduplication",
            Canary::CommitOnFirstYes => "commit-on-first-yes",
            Canary::EvictYoungCompletions => "evict-young-completions",
            Canary::ScanIgnoresPreparedInsert => "scan-ignores-prepared-insert",
            Canary::ConditionBeforeLock => "condition-before-lock",
            Canary::LeaseFromArrival => "lease-from-arrival",
            Canary::VisibleBeforeMajority => "visible-before-majority",
            Canary::PresumeAbortAfterRestart => "presume-abort-after-restart",
            Canary::SettleIgnoresSurvivor => "settle-ignores-survivor",
            Canary::TwoConfigurationsOneEpoch => "two-configurations-one-epoch",
            Canary::ServePastLease => "serve-past-lease",
            Canary::ReportBeforeFreeze => "report-before-freeze",
            Canary::CatchUpSkipsCommits => "catch-up-skips-commits",
            Canary::VisibleOnMembersMajority => "visible-on-members-majority",
            Canary::SuspectOneWay => "suspect-one-way",
            Canary::BootstrapUnchecked => "bootstrap-unchecked",
            Canary::SuspectDespitePromise => "suspect-despite-promise",
            Canary::JoinWithoutEcho => "join-without-echo",
            Canary::SnapshotDropsMarks => "snapshot-drops-marks",
            Canary::ImplicitCommitWithChanges => "implicit-commit-with-changes",
            Canary::OwnYesBeforeDurable => "own-yes-before-durable",
            Canary::SwitchUndrained => "switch-undrained",
            Canary::CutBeforeUnvouched => "cut-before-unvouched",
            Canary::FarBehindWaitsForAdd => "far-behind-waits-for-add",
            Canary::CatchUpHeldOwnInDoubt => "catch-up-held-own-in-doubt",
            Canary::SettleWithoutInference => "settle-without-inference",
            Canary::InferenceKeepsEveryMember => "inference-keeps-every-member",
            Canary::InstallWithoutWait => "install-without-wait",
            Canary::FrozenReleasesOnFinished => "frozen-releases-on-finished",
            Canary::AbortingReportedInDoubt => "aborting-reported-in-doubt",
            Canary::AddWithoutBackoff => "add-without-backoff",
        }
    }

    pub fn from_name(name: &str) -> Option<Canary> {
        Canary::ALL.into_iter().find(|c| c.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dkv-sim --canary NAME` finds each canary by its name: every name is distinct and
    /// reads back as its canary, and an unknown name is none of them.
    #[test]
    fn every_canary_is_found_by_its_name() {
        for canary in Canary::ALL {
            assert!(!canary.name().is_empty(), "{canary:?} has no name");
            assert_eq!(Canary::from_name(canary.name()), Some(canary), "{canary:?}");
        }
        assert_eq!(Canary::from_name("no-such-canary"), None);
    }
}
