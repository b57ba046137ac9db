//! What a recovery ballot may propose, from its promises (Paxos's phase 2a rule).

use super::{Flaws, VoteBallot, VoteFlaw, VoteValue};
use crate::ids::NodeId;

/// The value a recovery ballot proposes for `owner`'s instance, from the promises of `copies`
/// members (`promises`: each promiser and the highest-ballot acceptance it reported).
///
/// - If the owner promised and holds no YES, NO. A YES is chosen only with the owner among its
///   holders ([`super::counts`]), and the owner, having promised this ballot, accepts nothing
///   below it: no YES was or will be chosen below this ballot. (A NO it accepted at a higher
///   ballot than a YES means that YES was not chosen either: the NO was proposed as safe.)
///   Without this, an owner that lost its share in a crash, while another member holds its
///   YES, would leave the instance stuck: every recovery would propose the YES, and the owner
///   would refuse it.
/// - Otherwise, the value of the highest ballot reported, as Paxos has it: it may have been
///   chosen, and nothing else may.
/// - If no promiser accepted anything, NO: nothing was chosen, and only the owner casts a YES.
pub fn safe_value(owner: NodeId, promises: &[(NodeId, Option<(VoteBallot, VoteValue)>)], flaws: Flaws) -> VoteValue {
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
