//! The one place the runtime reads the clock: the core's [`Time`] is nanoseconds since this
//! clock was made, from a clock that never goes backwards and counts a suspend.
//! Only sealed peer datagrams also need the wall clock ([`unix_micros`]), which members share.
//!
//! Why not std's `Instant`: on Linux it is `CLOCK_MONOTONIC`, which stops while the machine is
//! suspended. A lease holder whose clock stopped would wake believing its lease still runs and
//! serve reads that a majority may have moved past (docs/protocol.md §7.5, "the wait").
//! `CLOCK_BOOTTIME` is the same clock plus the time suspended. Elsewhere (not Linux) the
//! monotonic clock is all there is.

use dkv_core::Time;
use rustix::time::{ClockId, clock_gettime};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(any(target_os = "linux", target_os = "android"))]
const CLOCK: ClockId = ClockId::Boottime;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const CLOCK: ClockId = ClockId::Monotonic;

/// Microseconds since the Unix epoch, by the wall clock (0 if it is set before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: u64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin: clock_nanos() }
    }

    pub fn now(&self) -> Time {
        Time::from_nanos(clock_nanos().saturating_sub(self.origin))
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

/// Nanoseconds on [`CLOCK`] since some fixed point (the machine's boot).
fn clock_nanos() -> u64 {
    let now = clock_gettime(CLOCK);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock starts near zero, never goes back, and keeps pace with std's monotonic clock
    /// while nothing is suspended.
    #[test]
    fn counts_from_its_creation_and_keeps_pace() {
        let clock = Clock::new();
        let started = std::time::Instant::now();
        let first = clock.now();
        assert!(first.as_nanos() < 1_000_000_000, "a new clock reads {first:?}");
        let mut last = first;
        while started.elapsed() < Duration::from_millis(20) {
            let now = clock.now();
            assert!(now >= last, "the clock went back from {last:?} to {now:?}");
            last = now;
        }
        // Read in this order, ours spans std's: it began before it and ends after it.
        let std = started.elapsed();
        let ours = Duration::from_nanos(clock.now().as_nanos());
        assert!(ours >= std, "boottime counted {ours:?} while the monotonic clock counted {std:?}");
        assert!(ours - std < Duration::from_millis(100), "boottime counted {ours:?}, monotonic {std:?}");
    }
}
