//! Per-vendor pacing: concurrency cap → rate-limit pause → token bucket → adaptive spacing.
//!
//! Every HTTP call to a vendor (unlinks, reads, token fetches, retries) passes [`Limiter::acquire`]
//! first, so a vendor's budget is shared by everything the run sends it. A rate-limit answer
//! pauses the whole vendor until the time it names and halves the vendor's effective rate; each
//! success gives a little of it back, so a job that was configured too fast settles just under the
//! vendor's real limit instead of bouncing off it.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::stop::Stop;

/// The effective rate never drops below this share of the configured rate.
const MIN_FACTOR: f64 = 0.05;
/// Share of the configured rate given back per successful call after rate limiting.
const RECOVERY_STEP: f64 = 0.01;
/// First pause when a rate-limit answer names no time; doubles while answers keep coming.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause a rate-limit answer can impose. A vendor may name any wait (a `Retry-After`
/// of ten years, an epoch past the clock's range); the runner halts on waits beyond
/// `retry.max_rate_limit_wait`, and this cap only keeps `Instant` arithmetic from overflowing.
pub const MAX_PAUSE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Counters of one vendor, read by the summary and the progress display.
#[derive(Debug, Default)]
pub struct VendorCounters {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
}

#[derive(Debug)]
struct Adaptive {
    paused_until: Option<Instant>,
    /// Share of the configured rate currently allowed, in [MIN_FACTOR, 1].
    factor: f64,
    /// Earliest send time when `factor` < 1.
    next_slot: Instant,
    /// Rate-limit answers since the last success (drives the default pause).
    streak: u32,
}

pub struct Limiter {
    rate: f64,
    max_pause: Duration,
    slots: std::sync::Arc<Semaphore>,
    bucket: DefaultDirectRateLimiter,
    adaptive: Mutex<Adaptive>,
    pub counters: VendorCounters,
}

impl Limiter {
    /// `max_pause` caps the default pause (the job's `retry.max_delay`).
    pub fn new(rate: f64, burst: u32, concurrency: u32, max_pause: Duration) -> Limiter {
        let period = Duration::from_secs_f64(1.0 / rate);
        let quota = Quota::with_period(period)
            .expect("rate is positive, so the period is too")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero"));
        Limiter {
            rate,
            max_pause,
            slots: std::sync::Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            bucket: RateLimiter::direct(quota),
            adaptive: Mutex::new(Adaptive {
                paused_until: None,
                factor: 1.0,
                next_slot: Instant::now(),
                streak: 0,
            }),
            counters: VendorCounters::default(),
        }
    }

    /// Wait until a call may be sent. Holds a concurrency slot until the returned permit is
    /// dropped. `None` when the run is stopping.
    pub async fn acquire(&self, stop: &Stop) -> Option<OwnedSemaphorePermit> {
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.wait() => return None,
        };
        loop {
            if let Some(until) = self.paused_until() {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.wait() => return None,
                }
                continue;
            }
            tokio::select! {
                _ = self.bucket.until_ready() => {}
                _ = stop.wait() => return None,
            }
            let slot = self.reserve_slot();
            if slot > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(slot) => {}
                    _ = stop.wait() => return None,
                }
            }
            // A pause that began while we waited wins over the token we hold.
            if self.paused_until().is_some() {
                continue;
            }
            if stop.is_set() {
                return None;
            }
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            return Some(permit);
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        let mut a = self.adaptive.lock().expect("limiter lock");
        match a.paused_until {
            Some(until) if until > Instant::now() => Some(until),
            Some(_) => {
                a.paused_until = None;
                None
            }
            None => None,
        }
    }

    /// With a lowered rate, space sends at 1 / (rate × factor).
    fn reserve_slot(&self) -> Instant {
        let mut a = self.adaptive.lock().expect("limiter lock");
        let now = Instant::now();
        if a.factor >= 1.0 {
            a.next_slot = now;
            return now;
        }
        let slot = a.next_slot.max(now);
        a.next_slot = slot + Duration::from_secs_f64(1.0 / (self.rate * a.factor));
        slot
    }

    /// Record a rate-limit answer: pause the vendor for `wait` (or a growing default pause), lower
    /// the effective rate. Returns how long the vendor is paused from now, at most [`MAX_PAUSE`].
    pub fn on_rate_limit(&self, wait: Option<Duration>) -> Duration {
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut a = self.adaptive.lock().expect("limiter lock");
        let now = Instant::now();
        let already_paused = a.paused_until.is_some_and(|u| u > now);
        let wait = wait.unwrap_or_else(|| {
            DEFAULT_PAUSE
                .saturating_mul(2u32.saturating_pow(a.streak.min(20)))
                .min(self.max_pause.max(DEFAULT_PAUSE))
        });
        let wait = wait.min(MAX_PAUSE);
        // `Instant` is opaque; near the end of its range even a capped wait might not fit.
        let until = now.checked_add(wait).unwrap_or(now + DEFAULT_PAUSE);
        if a.paused_until.is_none_or(|u| u < until) {
            a.paused_until = Some(until);
        }
        // Calls that were in flight together all see the same limit: lower the rate once per
        // pause, not once per answer.
        if !already_paused {
            a.factor = (a.factor * 0.5).max(MIN_FACTOR);
            a.streak = a.streak.saturating_add(1);
        }
        a.paused_until
            .map(|u| u.saturating_duration_since(now))
            .unwrap_or(wait)
    }

    /// Record a successful call: recover some of the effective rate.
    pub fn on_success(&self) {
        let mut a = self.adaptive.lock().expect("limiter lock");
        a.streak = 0;
        if a.factor < 1.0 {
            a.factor = (a.factor + RECOVERY_STEP).min(1.0);
        }
    }

    /// The share of the configured rate currently allowed.
    pub fn factor(&self) -> f64 {
        self.adaptive.lock().expect("limiter lock").factor
    }

    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    pub fn rate_limited(&self) -> u64 {
        self.counters.rate_limited.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limit_pauses_and_lowers_rate_then_recovers() {
        let l = Limiter::new(10.0, 1, 4, Duration::from_secs(60));
        let stop = Stop::new();
        drop(l.acquire(&stop).await.unwrap());
        let paused = l.on_rate_limit(Some(Duration::from_secs(3)));
        assert_eq!(paused, Duration::from_secs(3));
        assert_eq!(l.factor(), 0.5);
        // A second answer from the same burst extends nothing and lowers nothing.
        l.on_rate_limit(Some(Duration::from_secs(1)));
        assert_eq!(l.factor(), 0.5);
        let start = Instant::now();
        drop(l.acquire(&stop).await.unwrap());
        assert!(start.elapsed() >= Duration::from_secs(3));
        for _ in 0..100 {
            l.on_success();
        }
        assert_eq!(l.factor(), 1.0);
        assert_eq!(l.rate_limited(), 2);
        assert_eq!(l.requests(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn default_pause_grows_and_is_capped() {
        let l = Limiter::new(10.0, 1, 1, Duration::from_secs(5));
        assert_eq!(l.on_rate_limit(None), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.on_rate_limit(None), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(l.on_rate_limit(None), Duration::from_secs(4));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(l.on_rate_limit(None), Duration::from_secs(5));
        l.on_success();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(l.on_rate_limit(None), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn huge_waits_are_capped_never_a_panic() {
        let table = [
            (Duration::from_secs(315_360_000), MAX_PAUSE),
            (Duration::from_secs(u64::MAX), MAX_PAUSE),
            (Duration::MAX, MAX_PAUSE),
            (MAX_PAUSE, MAX_PAUSE),
            (Duration::from_secs(30), Duration::from_secs(30)),
        ];
        for (wait, paused) in table {
            let l = Limiter::new(10.0, 1, 1, Duration::from_secs(5));
            assert_eq!(l.on_rate_limit(Some(wait)), paused, "{wait:?}");
            // A later answer naming an even longer wait extends the pause, to the cap.
            assert_eq!(l.on_rate_limit(Some(Duration::MAX)), MAX_PAUSE, "{wait:?}");
        }
    }

    #[tokio::test]
    async fn concurrency_cap_and_stop() {
        let l = Limiter::new(1000.0, 1000, 2, Duration::from_secs(1));
        let stop = Stop::new();
        let a = l.acquire(&stop).await.unwrap();
        let _b = l.acquire(&stop).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), l.acquire(&stop)).await;
        assert!(third.is_err(), "a third call must wait for a slot");
        drop(a);
        assert!(l.acquire(&stop).await.is_some());
        stop.trigger();
        assert!(l.acquire(&stop).await.is_none());
    }
}
