//! The one place the runtime reads the clock: the core's [`Time`] is nanoseconds since the
//! process (or rather this clock) started, from a monotonic clock that never goes backwards.
//! Only sealed peer datagrams also need the wall clock ([`unix_micros`]), which members share.

use dkv_core::Time;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, by the wall clock (0 if it is set before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

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
