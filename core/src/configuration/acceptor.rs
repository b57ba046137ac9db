//! The acceptor's two rules (Paxos phases 1b and 2b). They change only the acceptor's part of
//! the durable state; the agreement persists the state and holds the answer until it is durable.

use super::{AgreementState, Ballot, Freeze, Report, Value};

/// What an acceptor answers a request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum AcceptorAnswer {
    /// Promised the ballot; reports the highest-ballot acceptance and the member's report.
    Promise { accepted: Option<(Ballot, Value)>, report: Report },
    /// Accepted the value at the ballot.
    Accepted,
    /// Refused: a higher ballot was promised.
    Outbid { promised: Ballot },
    /// Asked to accept another value at a ballot already accepted with one. No correct
    /// proposer does that (a ballot is used for one value only): the request is dropped.
    Conflicting,
    /// The member could not report (its knowledge exceeds a report's bound): no promise.
    Unreportable,
}

/// Phase 1b: promise `ballot` unless a higher one was promised. The first promise freezes the
/// member and takes its report (both in one call, [`Freeze::freeze`]); later ones carry the
/// same report. A repeated request for the promised ballot is promised again (its answer may
/// have been lost).
pub(super) fn on_promise_request(state: &mut AgreementState, ballot: Ballot, node: &mut dyn Freeze) -> AcceptorAnswer {
    if let Some(promised) = state.promised.filter(|promised| *promised > ballot) {
        return AcceptorAnswer::Outbid { promised };
    }
    let report = match &state.report {
        Some(report) => report.clone(),
        None => match node.freeze() {
            Ok(report) => report,
            Err(_) => return AcceptorAnswer::Unreportable,
        },
    };
    state.report = Some(report.clone());
    state.promised = Some(ballot);
    AcceptorAnswer::Promise { accepted: state.accepted.clone(), report }
}

/// Phase 2b: accept `value` at `ballot` unless a higher ballot was promised. Accepting is also
/// promising: nothing below `ballot` is accepted afterwards. It does not freeze the member:
/// the value's settlement came from the reports of the majority that promised, and it is
/// their freeze that makes it hold.
pub(super) fn on_accept_request(state: &mut AgreementState, ballot: Ballot, value: &Value) -> AcceptorAnswer {
    match (state.promised, &state.accepted) {
        (Some(promised), _) if promised > ballot => AcceptorAnswer::Outbid { promised },
        (_, Some((at, accepted))) if *at == ballot && accepted != value => AcceptorAnswer::Conflicting,
        _ => {
            state.promised = Some(ballot);
            state.accepted = Some((ballot, value.clone()));
            AcceptorAnswer::Accepted
        }
    }
}
