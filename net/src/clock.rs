//! The one place the runtime reads the clock: the core's [`Time`] is nanoseconds since the
//! process (or rather this clock) started, from a monotonic clock that never goes backwards.

use dkv_core::Time;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin: Instant::now() }
    }

    pub fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// How long from now until `deadline`; zero if it has passed.
    pub fn until(&self, deadline: Time) -> Duration {
        deadline.saturating_since(self.now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
