//! Scenarios shared by the simulator's tests.

use dkv_sim::{Overrides, TightBounds};
use std::time::Duration;

/// One completion record per node, kept `retention`, for four clients of six operations each,
/// on three nodes; lost (one in ten) and duplicated (one in five) messages, no crashes or
/// partitions. Clients send a request for up to 2 s.
pub fn crowded_completions(retention: Duration) -> Overrides {
    Overrides {
        nodes: Some(3),
        clients: Some(4),
        ops_per_client: Some(6),
        keys: Some(2),
        loss: Some(0.1),
        duplication: Some(0.2),
        crashes: Some(false),
        partitions: Some(false),
        // The ground these tests were drawn on, before the minority faults were on by default.
        minority_faults: Some(false),
        tight_bounds: Some(TightBounds {
            prepared_max: 16,
            read_waiters_max: 16,
            txns_undecided_max: 16,
            completions_max: 1,
            decisions_remembered_max: 4,
            completion_retention: retention,
            client_window: Duration::from_secs(2),
            new_client_chance: 0.0,
        }),
        ..Overrides::default()
    }
}
