//! Per-vendor pacing: concurrency cap → rate-limit pause → token bucket → adaptive spacing.
//!
//! Every HTTP call to a vendor (unlinks, reads, token fetches, retries) passes [`Limiter::acquire`]
//! first, so a vendor's budget is shared by everything the run sends it. A rate-limit answer
//! pauses the whole vendor until the time it names and halves the vendor's effective rate; each
//! success gives a little of it back, so a job that was configured too fast settles just under the
//! vendor's real limit instead of bouncing off it.
//!
//! Where the vendor announces its budget on its answers, [`Limiter::observe`] hands it to
//! [`Pace`](super::budget::Pace), which spaces sends so the budget (less the job's `reserve`) is
//! never spent before the vendor's reset: the first 429 need never come. Each send's slot is the
//! latest of the token bucket, the adaptive spacing and that schedule, so headers only ever slow
//! a vendor down, never past its configured `rate`.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::budget::{self, Pace};
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
    /// Sends handed out so far: each send's ticket is its number in this order.
    tickets: u64,
    /// The schedule the vendor's budget headers allow.
    pace: Pace,
}

pub struct Limiter {
    rate: f64,
    concurrency: usize,
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
            concurrency: concurrency.max(1) as usize,
            max_pause,
            slots: std::sync::Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            bucket: RateLimiter::direct(quota),
            adaptive: Mutex::new(Adaptive {
                paused_until: None,
                factor: 1.0,
                next_slot: Instant::now(),
                streak: 0,
                tickets: 0,
                pace: Pace::new(0.0, MAX_PAUSE),
            }),
            counters: VendorCounters::default(),
        }
    }

    /// Follow the vendor's budget headers, leaving `reserve` of its limit to others, and
    /// waiting at most `max_window` for an announced reset.
    pub fn with_budget(self, reserve: f64, max_window: Duration) -> Limiter {
        self.adaptive.lock().expect("limiter lock").pace = Pace::new(reserve, max_window);
        self
    }

    /// Wait until a call may be sent. Holds a concurrency slot until the returned permit is
    /// dropped; with it comes the send's ticket, for [`Limiter::observe`]. `None` when the run
    /// is stopping.
    pub async fn acquire(&self, stop: &Stop) -> Option<(OwnedSemaphorePermit, u64)> {
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
            let (slot, ticket) = self.reserve_slot();
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
            return Some((permit, ticket));
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

    /// The next send's ticket and its slot: with a lowered rate, sends are spaced at
    /// 1 / (rate × factor); the budget headers' schedule may put it later still.
    fn reserve_slot(&self) -> (Instant, u64) {
        let mut a = self.adaptive.lock().expect("limiter lock");
        let now = Instant::now();
        a.tickets += 1;
        let ticket = a.tickets;
        let paced = a.pace.slot(ticket);
        if a.factor >= 1.0 {
            a.next_slot = now;
            return (paced.max(now), ticket);
        }
        let slot = a.next_slot.max(now);
        a.next_slot = slot + Duration::from_secs_f64(1.0 / (self.rate * a.factor));
        (slot.max(paced), ticket)
    }

    /// An answer to send `ticket` arrived with these headers: follow the budget they announce,
    /// if any (SPEC section 4, header-synced pacing). The caller still holds the send's permit.
    pub fn observe(&self, ticket: u64, headers: &reqwest::header::HeaderMap) {
        let Some(budget) = budget::parse(headers, std::time::SystemTime::now()) else {
            return;
        };
        let in_flight = self.concurrency - self.slots.available_permits().min(self.concurrency);
        let mut a = self.adaptive.lock().expect("limiter lock");
        // Other calls in flight, less those sent after this one (charged by their tickets).
        let others = (in_flight as u64).saturating_sub(1);
        let older = others.saturating_sub(a.tickets.saturating_sub(ticket));
        a.pace.observe(ticket, &budget, older);
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

    fn budget(limit: u32, remaining: u32, reset_s: u32) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("ratelimit-limit", limit.into());
        h.insert("ratelimit-remaining", remaining.into());
        h.insert("ratelimit-reset", reset_s.into());
        h
    }

    /// Sends `n` calls one after another, each answered with `answer(i)`; the time it took.
    async fn drive(
        l: &Limiter,
        n: u32,
        answer: impl Fn(u32) -> reqwest::header::HeaderMap,
    ) -> Duration {
        let stop = Stop::new();
        let start = Instant::now();
        for i in 0..n {
            let (permit, ticket) = l.acquire(&stop).await.unwrap();
            l.observe(ticket, &answer(i));
            drop(permit);
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn budget_headers_slow_the_pace_never_raise_it() {
        // 10 left in a 2 s window: the next 10 sends take about 2 s instead of 0.1 s.
        let l = Limiter::new(100.0, 100, 4, Duration::from_secs(5)).with_budget(0.0, MAX_PAUSE);
        let first = drive(&l, 1, |_| budget(100, 10, 2)).await;
        assert!(first < Duration::from_millis(10));
        let took = drive(&l, 10, |_| reqwest::header::HeaderMap::new()).await;
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        // Without budget fields nothing changes.
        let l = Limiter::new(1e6, 1000, 4, Duration::from_secs(5)).with_budget(0.3, MAX_PAUSE);
        let took = drive(&l, 50, |_| reqwest::header::HeaderMap::new()).await;
        assert_eq!(took, Duration::ZERO);
    }

    /// The token bucket keeps real time (governor's clock), so this one runs unpaused.
    #[tokio::test]
    async fn a_generous_budget_never_lifts_the_pace_above_rate() {
        let l = Limiter::new(200.0, 1, 4, Duration::from_secs(5)).with_budget(0.0, MAX_PAUSE);
        let start = std::time::Instant::now();
        drive(&l, 41, |_| budget(100_000, 100_000, 60)).await;
        assert!(
            start.elapsed() >= Duration::from_millis(195),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn budget_with_reserve_keeps_the_vendor_above_it() {
        // A simulated vendor: a window of 30 per 3 s that renews, shared with nobody; reserve
        // 0.3 leaves 9 of each window unspent, whatever the job's own rate.
        let l = Limiter::new(1000.0, 1000, 1, Duration::from_secs(5)).with_budget(0.3, MAX_PAUSE);
        let stop = Stop::new();
        let start = Instant::now();
        let (mut window, mut used, mut lowest) = (0u128, 0u32, 30u32);
        for _ in 0..100 {
            let (permit, ticket) = l.acquire(&stop).await.unwrap();
            let w = start.elapsed().as_millis() / 3000;
            if w != window {
                (window, used) = (w, 0);
            }
            used += 1;
            assert!(used <= 30, "sent past the vendor's limit");
            lowest = lowest.min(30 - used);
            let reset_ms = 3000 - (start.elapsed().as_millis() % 3000) as u64;
            let mut h = budget(30, 30 - used, 0);
            h.insert(
                "ratelimit-reset",
                format!("{}", reset_ms as f64 / 1000.0).parse().unwrap(),
            );
            l.observe(ticket, &h);
            drop(permit);
        }
        assert!(lowest >= 8, "the reserve was spent: {lowest} left");
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
