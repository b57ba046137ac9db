//! Checkers run on every seed. Each violation names its checker, the key where there is one,
//! and the operations involved.
//!
//! The world feeds [`exactly_once`] every record as it becomes durable, during the run, and
//! [`visibility`] every record as it is emitted and becomes durable, and every reply. The
//! others judge the run once it is over: [`liveness`] (requests, clients and nodes after the
//! heal, and, for a protocol that tolerates a minority down, requests during the faults; and
//! that the configuration does not thrash),
//! [`convergence`] (replicas agree), [`linearizability`] (the clients' history fits one order),
//! and [`durability`] (the final state keeps every acknowledged write).
//!
//! All but liveness are public so that `dkv-torture` checks real processes with the same
//! logic: it rebuilds each node from its data dir and reads the records from its log.

pub mod convergence;
pub mod durability;
pub mod exactly_once;
pub mod leases;
pub mod linearizability;
pub mod liveness;
pub mod model;
pub mod visibility;

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// linearizability | transactions | durability | exactly-once | convergence | liveness |
    /// liveness-during-faults | thrash | visibility | atomicity | invariants | recovery | lease |
    /// inconclusive (a search ran out of budget)
    pub checker: &'static str,
    pub key: Option<String>,
    pub message: String,
    pub ops: Vec<String>,
}

impl Violation {
    /// A violation of `checker` that names no key and no operations.
    pub fn new(checker: &'static str, message: String) -> Violation {
        Violation { checker, key: None, message, ops: vec![] }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violation", self.checker)?;
        if let Some(key) = &self.key {
            write!(f, " on key {key}")?;
        }
        write!(f, ": {}", self.message)?;
        for op in &self.ops {
            write!(f, "\n    {op}")?;
        }
        Ok(())
    }
}
