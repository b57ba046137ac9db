//! [`RateLimit`]: at most so many events per second, for replies the server sends unasked; and
//! [`OccasionalLog`], for warnings a flood would otherwise repeat thousands of times.
//!
//! A datagram's source address can be forged. A server that answered every bad datagram with an
//! error would let anyone aim it at a third party and make it send that party as many datagrams
//! as they forge, so such answers go through a rate limit: past it, bad datagrams are dropped
//! without a word.

use dkv_core::Time;
use std::time::Duration;

/// Allows at most `per_second` events in each one-second window. A window starts with the first
/// event at least a second after the previous window started, so however events are timed, no
/// window of one second ever holds more than twice `per_second` of them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateLimit {
    per_second: u32,
    /// Events still allowed in the current window.
    remaining: u32,
    window_start: Time,
}

const WINDOW: Duration = Duration::from_secs(1);

impl RateLimit {
    /// A limit whose first window starts at `now`, with all of its events still allowed.
    pub(crate) fn new(per_second: u32, now: Time) -> RateLimit {
        RateLimit { per_second, remaining: per_second, window_start: now }
    }

    /// Whether one more event is allowed at `now`; if so, it is counted.
    pub(crate) fn allow(&mut self, now: Time) -> bool {
        if now.saturating_since(self.window_start) >= WINDOW {
            self.remaining = self.per_second;
            self.window_start = now;
        }
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        true
    }
}

/// Says when a repeated warning is due: the first time, then at most once per second, with
/// how many occurrences went unsaid in between.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OccasionalLog {
    last: Option<Time>,
    suppressed: u64,
}

impl OccasionalLog {
    /// `Some(unsaid)` if the warning is due now (and `unsaid` occurrences were not logged since
    /// the last one); `None` if it is to be left unsaid and counted.
    pub(crate) fn due(&mut self, now: Time) -> Option<u64> {
        if self.last.is_some_and(|last| now.saturating_since(last) < WINDOW) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A warning repeated within a second is said once, then again a second later with the
    /// count of what was left unsaid.
    #[test]
    fn occasional_log_says_once_a_second_with_a_count() {
        let mut log = OccasionalLog::default();
        let at = |ms: u64| Time::from_nanos(ms * 1_000_000);
        assert_eq!(log.due(at(0)), Some(0));
        assert_eq!(log.due(at(10)), None);
        assert_eq!(log.due(at(999)), None);
        assert_eq!(log.due(at(1000)), Some(2));
        assert_eq!(log.due(at(1001)), None);
    }

    /// Within one window, events beyond the limit are refused; the next window allows the limit
    /// again.
    #[test]
    fn allows_the_limit_per_window_and_refuses_the_rest() {
        let start = Time::from_nanos(5);
        let mut limit = RateLimit::new(3, start);
        let allowed = (0..10).filter(|_| limit.allow(start + Duration::from_millis(10))).count();
        assert_eq!(allowed, 3);
        assert!(!limit.allow(start + Duration::from_millis(999)));
        assert!(limit.allow(start + WINDOW));
        let allowed = (0..10).filter(|_| limit.allow(start + WINDOW)).count();
        assert_eq!(allowed, 2);
    }

    /// A limit of zero allows nothing, ever.
    #[test]
    fn zero_allows_nothing() {
        let start = Time::from_nanos(0);
        let mut limit = RateLimit::new(0, start);
        assert!(!limit.allow(start));
        assert!(!limit.allow(start + WINDOW * 3));
    }
}
