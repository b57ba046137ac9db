//! The acceptor's two rules (Paxos phases 1b and 2b). They change only the acceptor's part of
//! the durable state; the agreement persists the state and holds the answer until it is durable.

use super::{AgreementState, Ballot, Configuration};

/// What an acceptor answers a request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AcceptorAnswer {
    /// Promised the ballot; reports the highest-ballot acceptance.
    Promise { accepted: Option<(Ballot, Configuration)> },
    /// Accepted the configuration at the ballot.
    Accepted,
    /// Refused: a higher ballot was promised.
    Outbid { promised: Ballot },
    /// Asked to accept another configuration at a ballot already accepted with one. No correct
    /// proposer does that (a ballot is used for one configuration only): the request is dropped.
    Conflicting,
}

/// Phase 1b: promise `ballot` unless a higher one was promised. A repeated request for the
/// promised ballot is promised again (its answer may have been lost).
pub(super) fn on_promise_request(state: &mut AgreementState, ballot: Ballot) -> AcceptorAnswer {
    match state.promised {
        Some(promised) if promised > ballot => AcceptorAnswer::Outbid { promised },
        _ => {
            state.promised = Some(ballot);
            AcceptorAnswer::Promise { accepted: state.accepted }
        }
    }
}

/// Phase 2b: accept `configuration` at `ballot` unless a higher ballot was promised. Accepting
/// is also promising: nothing below `ballot` is accepted afterwards.
pub(super) fn on_accept_request(
    state: &mut AgreementState,
    ballot: Ballot,
    configuration: Configuration,
) -> AcceptorAnswer {
    match (state.promised, state.accepted) {
        (Some(promised), _) if promised > ballot => AcceptorAnswer::Outbid { promised },
        (_, Some((at, accepted))) if at == ballot && accepted != configuration => AcceptorAnswer::Conflicting,
        _ => {
            state.promised = Some(ballot);
            state.accepted = Some((ballot, configuration));
            AcceptorAnswer::Accepted
        }
    }
}
