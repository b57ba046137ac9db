//! Per-node clocks that run at slightly different rates. The simulation keeps one global
//! virtual time; each node sees its own local time, and its deadlines are mapped back.

use dkv_core::Time;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Local nanoseconds per 1,000,000 global nanoseconds.
    rate_per_million: u64,
}

impl Clock {
    /// `skew_ppm` may be negative (a slow clock) or positive (a fast one).
    pub fn new(skew_ppm: i64) -> Clock {
        Clock { rate_per_million: (1_000_000 + skew_ppm).max(1) as u64 }
    }

    pub fn local(&self, global: u64) -> Time {
        Time::from_nanos((u128::from(global) * u128::from(self.rate_per_million) / 1_000_000) as u64)
    }

    /// The first global time at which the local clock reads at least `local`.
    pub fn global(&self, local: Time) -> u64 {
        let l = u128::from(local.as_nanos()) * 1_000_000;
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
            let c = Clock::new(skew);
            for local in [0u64, 1, 999, 123_456_789] {
                let g = c.global(Time::from_nanos(local));
                assert!(c.local(g) >= Time::from_nanos(local));
                assert!(g == 0 || c.local(g - 1) < Time::from_nanos(local));
            }
        }
    }
}
