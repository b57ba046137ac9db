//! What a recovery ballot may propose, from its promises (Paxos's phase 2a rule), and what a
//! settlement gives an instance.

use super::{Flaws, VoteBallot, VoteFlaw, VoteValue};
use crate::ids::NodeId;

/// What a recovery ballot proposes for `owner`'s instance, from its promises (`promises`: each
/// promiser, once, and the highest-ballot acceptance it reported). The promisers must meet
/// every set of `copies` members: `copies` of them, or a settlement's cover (§7.3). `None`:
/// wait for the owner's promise before proposing.
///
/// - If the owner promised and holds no YES, NO. A YES is chosen only with the owner among its
///   holders ([`super::counts`]), and the owner, having promised this ballot, accepts nothing
///   below it: no YES was or will be chosen below this ballot. (A NO it accepted at a higher
///   ballot than a YES means that YES was not chosen either: the NO was proposed as safe.)
///   Without this, an owner that lost its share in a crash, while another member holds its
///   YES, would leave the instance stuck: every recovery would propose the YES, and the owner
///   would refuse it.
/// - Otherwise, the value of the highest ballot reported, as Paxos has it: it may have been
///   chosen, and nothing else may. But a YES only once the owner promised: without its copy no
///   YES can be chosen anyway, and an owner that lost its share would refuse it, and be asked
///   again at every higher ballot whose owner's promise came last.
/// - If no promiser accepted anything, NO: nothing was chosen, and only the owner casts a YES.
pub fn safe_value(
    owner: NodeId,
    promises: &[(NodeId, Option<(VoteBallot, VoteValue)>)],
    flaws: Flaws,
) -> Option<VoteValue> {
    let owner_promised = promises.iter().any(|(member, _)| *member == owner);
    match settled_value(owner, promises, flaws) {
        VoteValue::Yes if !owner_promised && !flaws.has(VoteFlaw::RecoverYesWithoutOwner) => None,
        value => Some(value),
    }
}

/// The value a settlement gives `owner`'s instance, from the reports of its cover (each
/// reporter's freeze is its promise of a ballot above every other, and its report the
/// acceptance it holds). As [`safe_value`], but it cannot wait for the owner: a YES settled
/// without the owner's report may be one whose share the owner lost, so an owner outside the
/// reports whose instance is settled YES must catch up before it votes or serves (or is
/// removed, and rejoins, docs/protocol.md §7.6).
pub fn settled_value(owner: NodeId, promises: &[(NodeId, Option<(VoteBallot, VoteValue)>)], flaws: Flaws) -> VoteValue {
    if flaws.has(VoteFlaw::RecoverWithNo) {
        return VoteValue::No;
    }
    let owners_word = promises.iter().find(|(member, _)| *member == owner);
    if let Some((_, accepted)) = owners_word
        && !flaws.has(VoteFlaw::RecoverWithoutOwnersWord)
        && !matches!(accepted, Some((_, VoteValue::Yes)))
    {
        return VoteValue::No;
    }
    promises
        .iter()
        .filter_map(|(_, accepted)| *accepted)
        .max_by_key(|(ballot, _)| *ballot)
        .map_or(VoteValue::No, |(_, value)| value)
}
