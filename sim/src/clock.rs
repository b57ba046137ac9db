//! Per-node clocks that run at slightly different rates and may start at different readings.
//! The simulation keeps one global virtual time; each node sees its own local time, and its
//! deadlines are mapped back. Only durations on one clock mean anything to a node (a lease is
//! measured on the reader's own clock, docs/protocol.md §7.5); offsets make any comparison of
//! two nodes' readings wrong by seconds, so such a bug shows.

use dkv_core::Time;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Local nanoseconds per 1,000,000 global nanoseconds.
    rate_per_million: u64,
    /// What the clock reads at global time 0, in nanoseconds.
    offset: u64,
}

impl Clock {
    /// `skew_ppm` may be negative (a slow clock) or positive (a fast one); the clock reads
    /// `offset` nanoseconds at global time 0.
    pub fn new(skew_ppm: i64, offset: u64) -> Clock {
        Clock { rate_per_million: (1_000_000 + skew_ppm).max(1) as u64, offset }
    }

    pub fn local(&self, global: u64) -> Time {
        let elapsed = u128::from(global) * u128::from(self.rate_per_million) / 1_000_000;
        Time::from_nanos(u64::try_from(elapsed + u128::from(self.offset)).unwrap_or(u64::MAX))
    }

    /// The first global time at which the local clock reads at least `local` (0 for a reading
    /// before the clock's start).
    pub fn global(&self, local: Time) -> u64 {
        let l = u128::from(local.as_nanos().saturating_sub(self.offset)) * 1_000_000;
        let g = l.div_ceil(u128::from(self.rate_per_million));
        u64::try_from(g).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mapping a local deadline back gives a global time at which the deadline has passed.
    #[test]
    fn deadline_maps_back_to_a_time_when_it_has_passed() {
        for skew in [-20_000, -1, 0, 7, 20_000] {
            for offset in [0, 1, 5_000_000_000] {
                let c = Clock::new(skew, offset);
                for local in [0u64, 1, 999, 123_456_789, 5_000_000_001, 9_876_543_210] {
                    let g = c.global(Time::from_nanos(local));
                    assert!(c.local(g) >= Time::from_nanos(local), "skew {skew} offset {offset} local {local}");
                    assert!(g == 0 || c.local(g - 1) < Time::from_nanos(local), "skew {skew} offset {offset}");
                }
            }
        }
    }
}
