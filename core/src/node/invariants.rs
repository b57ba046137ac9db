//! Internal consistency of a node's state, checked by the simulator after every input (debug
//! builds) and by the fuzzers after every input. A violation is a bug in the core, never the
//! fault of an input. Each role checks its own state; this file checks what spans them.

use super::Node;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("node invariant broken: {0}")]
pub struct InvariantViolation(pub String);

pub(super) fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), InvariantViolation> {
    if condition { Ok(()) } else { Err(InvariantViolation(what())) }
}

impl Node {
    /// Checks that the node's bookkeeping agrees with itself: locks belong to prepared
    /// transactions, indexes match what they index, undecided requests are being coordinated
    /// and hold their own share, and waiting reads wait on locked keys.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let sh = &self.shared;
        self.participant.check_invariants(sh)?;
        self.coordinator.check_invariants(&self.participant)?;
        for key in sh.reads.waiting_keys() {
            ensure(sh.locks.is_locked(key), || format!("a read waits on unlocked key {key:?}"))?;
        }
        Ok(())
    }
}
