//! The core's notion of time. The core never reads a clock: every input carries `now`, and the
//! only time the core reports back is the deadline of its next timer.

use serde::{Deserialize, Serialize};
use std::ops::Add;
use std::time::Duration;

/// A point in time, in nanoseconds since an origin the driver chooses (process start for a real
/// server, zero for a simulation). Only differences between two `Time`s carry meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub const fn from_nanos(nanos: u64) -> Time {
        Time(nanos)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this time is; zero if it is not after it.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates at the far future instead of wrapping: a deadline can never come before `self`.
    fn add(self, rhs: Duration) -> Time {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(nanos))
    }
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000_000, (self.0 % 1_000_000_000) / 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Traces print times as seconds with microseconds.
    #[test]
    fn displays_seconds_and_microseconds() {
        assert_eq!(Time::from_nanos(12_000_345_999).to_string(), "12.000345s");
        assert_eq!(Time::ZERO.to_string(), "0.000000s");
    }

    /// A deadline never wraps around to the past.
    #[test]
    fn adding_saturates_at_the_far_future() {
        assert_eq!(Time::from_nanos(5) + Duration::from_nanos(7), Time::from_nanos(12));
        assert_eq!(Time::from_nanos(5) + Duration::MAX, Time::from_nanos(u64::MAX));
        assert_eq!(Time::from_nanos(9).saturating_since(Time::from_nanos(5)), Duration::from_nanos(4));
        assert_eq!(Time::from_nanos(5).saturating_since(Time::from_nanos(9)), Duration::ZERO);
    }
}
