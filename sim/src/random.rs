//! The ways the simulator draws from a seeded rng. Each draw takes whole `u64`s from the rng
//! and turns them into a value with integer arithmetic or one division, never with
//! floating-point transcendental functions (whose results may differ between machines), so a
//! seed draws the same values everywhere.

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use std::time::Duration;

/// True with probability `p`. A zero probability draws nothing, so a fault whose rate is zero
/// leaves the rest of the run exactly as if the fault did not exist.
pub fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && unit(rng) < p
}

/// A number in [0, 1].
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.next_u64() as f64 / u64::MAX as f64
}

/// A number in [lo, hi] (`lo` itself when `hi` is below it).
pub fn range(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi.saturating_sub(lo) + 1)
}

/// An index into a collection of `len` items (`len` must not be zero).
pub fn index(rng: &mut ChaCha8Rng, len: usize) -> usize {
    (rng.next_u64() % len as u64) as usize
}

/// A span of virtual nanoseconds in [lo, hi].
pub fn between(rng: &mut ChaCha8Rng, lo: Duration, hi: Duration) -> u64 {
    range(rng, lo.as_nanos() as u64, hi.as_nanos() as u64)
}

/// A span of virtual nanoseconds around `mean`: uniform in [0, 2 mean].
pub fn around(rng: &mut ChaCha8Rng, mean: Duration) -> u64 {
    between(rng, Duration::ZERO, mean * 2)
}
