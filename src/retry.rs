//! The backoff schedule between attempts: pure, so it is tested as a table.
//!
//! Exponential growth from `base_delay`, capped at `max_delay`, with "equal jitter": the wait is
//! drawn from the upper half of the exponential step, so retries of many rows spread out but never
//! come back sooner than half the step (or `base_delay`).

use std::time::Duration;

/// The exponential step for attempt `n` (1 = the wait after the first failed attempt).
pub fn step(n: u32, base: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(30));
    base.saturating_mul(factor).min(max)
}

/// The wait after attempt `n`, given a uniform random `unit` in [0, 1).
pub fn backoff(n: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let step = step(n, base, max);
    let half = step / 2;
    let wait = half + half.mul_f64(unit.clamp(0.0, 1.0));
    wait.max(base.min(max))
}

/// [`backoff`] with a fresh random draw.
pub fn backoff_random(n: u32, base: Duration, max: Duration) -> Duration {
    use rand::RngExt;
    backoff(n, base, max, rand::rng().random_range(0.0..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn steps_double_and_cap() {
        let table = [
            (1, 500),
            (2, 1000),
            (3, 2000),
            (4, 4000),
            (8, 60_000),
            (40, 60_000),
        ];
        for (n, want) in table {
            assert_eq!(step(n, MS(500), MS(60_000)), MS(want), "attempt {n}");
        }
    }

    #[test]
    fn jitter_stays_in_upper_half_and_above_base() {
        assert_eq!(backoff(3, MS(500), MS(60_000), 0.0), MS(1000));
        assert_eq!(backoff(3, MS(500), MS(60_000), 0.999_999).as_millis(), 1999);
        // The first wait is never below base_delay, even at the bottom of the jitter.
        assert_eq!(backoff(1, MS(500), MS(60_000), 0.0), MS(500));
        for _ in 0..1000 {
            let d = backoff_random(5, MS(100), MS(1000));
            assert!(d >= MS(500) && d <= MS(1000), "{d:?}");
        }
    }
}
