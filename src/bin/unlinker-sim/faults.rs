//! Faults on demand: the server-side rate limit and the random errors, drops and slow answers.
//!
//! The rate limit is a token bucket per vendor, which can announce itself the way Auth0 does
//! (`x-ratelimit-*` on every answer, [`Bucket::budget`]), be drained by simulated production
//! traffic (`--background VENDOR=RATE`, [`Bucket::take_background`]) and keeps a sampled series of
//! its tokens ([`Bucket::sample`]) for `/_sim/counters`, so header-synced pacing can be shown.
//!
//! The runner's pacing, retry and halting logic is only believable if it is tested against a
//! server that misbehaves the way vendors do. The dice are seeded (`--fault-seed`) so a run with
//! one client in sequence can be reproduced exactly.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::state::lock;

/// `--rate-limit VENDOR=RATE[/BURST]`: a token bucket for one vendor type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateLimit {
    pub vendor: String,
    /// Requests per second.
    pub rate: f64,
    pub burst: u32,
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (vendor, spec) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected VENDOR=RATE[/BURST], e.g. auth0=2/5"))?;
        let (rate, burst) = match spec.split_once('/') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (spec, None),
        };
        let rate: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("`{s}`: RATE must be a positive number"))?;
        let burst = match burst {
            Some(b) => b
                .trim()
                .parse()
                .ok()
                .filter(|b: &u32| *b >= 1)
                .ok_or_else(|| format!("`{s}`: BURST must be a whole number >= 1"))?,
            None => rate.floor().max(1.0) as u32,
        };
        Ok(RateLimit {
            vendor: vendor.trim().to_string(),
            rate,
            burst,
        })
    }
}

/// `--background VENDOR=RATE`: simulated production traffic taking that vendor's tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Background {
    pub vendor: String,
    /// Requests per second taken from the vendor's bucket.
    pub rate: f64,
}

impl FromStr for Background {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (vendor, rate) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected VENDOR=RATE, e.g. auth0=20"))?;
        let rate: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0 && *r <= 100_000.0)
            .ok_or_else(|| format!("`{s}`: RATE must be a number above 0, at most 100000"))?;
        Ok(Background {
            vendor: vendor.trim().to_string(),
            rate,
        })
    }
}

/// What the bucket announces on an answer (Auth0's budget headers).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Budget {
    /// The bucket size (`x-ratelimit-limit`).
    pub(crate) limit: u32,
    /// Whole tokens left (`x-ratelimit-remaining`).
    pub(crate) remaining: u32,
    /// Until the bucket is full again.
    pub(crate) until_full: Duration,
}

impl Budget {
    /// When the bucket will be full again, in UNIX seconds, rounded up (`x-ratelimit-reset`).
    pub(crate) fn reset_epoch(&self) -> u64 {
        epoch_ceil(self.until_full)
    }
}

fn epoch_ceil(after: Duration) -> u64 {
    let at = SystemTime::now() + after;
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    since.as_secs_f64().ceil() as u64
}

/// Samples of a bucket's tokens kept for `/_sim/counters` (10 minutes at 100 ms).
pub(crate) const MAX_SAMPLES: usize = 6000;

/// Why a request was refused by the bucket: what the vendor's rate-limit answer reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limited {
    /// The bucket size (Auth0 `x-ratelimit-limit`).
    pub(crate) limit: u32,
    /// Until the bucket holds a token again.
    pub(crate) wait: Duration,
    /// Whether to send `Retry-After` (`--retry-after`).
    pub(crate) retry_after: bool,
}

impl Limited {
    /// When the bucket will have a token, in UNIX seconds, rounded up (Auth0 `x-ratelimit-reset`).
    pub(crate) fn reset_epoch(&self) -> u64 {
        epoch_ceil(self.wait)
    }

    /// `Retry-After` seconds, rounded up (never 0 while limited).
    pub(crate) fn retry_after_secs(&self) -> u64 {
        (self.wait.as_secs_f64().ceil() as u64).max(1)
    }
}

/// A token bucket that starts full.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    retry_after: bool,
    /// Answers carry the vendor's budget headers (unless `--no-budget-headers`).
    pub(crate) headers: bool,
    state: Mutex<(f64, Instant)>,
    /// Tokens taken and refused by `--background` traffic.
    pub(crate) background_taken: AtomicU64,
    pub(crate) background_refused: AtomicU64,
    /// `(ms since start, tokens)`, oldest first, at most [`MAX_SAMPLES`].
    samples: Mutex<VecDeque<(f64, f64)>>,
}

impl Bucket {
    pub(crate) fn new(limit: &RateLimit, retry_after: bool) -> Self {
        Bucket {
            rate: limit.rate,
            burst: f64::from(limit.burst),
            retry_after,
            headers: true,
            state: Mutex::new((f64::from(limit.burst), Instant::now())),
            background_taken: AtomicU64::new(0),
            background_refused: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Tokens now (fractional), after refilling.
    fn tokens_at(&self, now: Instant) -> f64 {
        let (tokens, last) = *lock(&self.state);
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        (tokens + elapsed * self.rate).min(self.burst)
    }

    /// What the bucket announces now: its size, whole tokens left, time until it is full.
    pub(crate) fn budget(&self) -> Budget {
        let tokens = self.tokens_at(Instant::now());
        Budget {
            limit: self.burst as u32,
            remaining: tokens.floor().max(0.0) as u32,
            until_full: Duration::from_secs_f64(((self.burst - tokens) / self.rate).max(0.0)),
        }
    }

    /// One request of `--background` traffic: a token if there is one (counted either way).
    pub(crate) fn take_background(&self) {
        let counter = match self.take() {
            Ok(()) => &self.background_taken,
            Err(_) => &self.background_refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Record the tokens now, `at_ms` after the simulator started.
    pub(crate) fn sample(&self, at_ms: f64) {
        let tokens = self.tokens_at(Instant::now());
        let mut samples = lock(&self.samples);
        if samples.len() == MAX_SAMPLES {
            samples.pop_front();
        }
        samples.push_back((at_ms, tokens));
    }

    /// The bucket for `/_sim/counters`: size, rate, tokens now, background counts and samples.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let samples: Vec<[f64; 2]> = lock(&self.samples)
            .iter()
            .map(|&(at, tokens)| [at.round(), (tokens * 100.0).round() / 100.0])
            .collect();
        serde_json::json!({
            "limit": self.burst,
            "rate": self.rate,
            "remaining": self.tokens_at(Instant::now()).floor(),
            "background_taken": self.background_taken.load(Ordering::Relaxed),
            "background_refused": self.background_refused.load(Ordering::Relaxed),
            "samples": samples,
        })
    }

    /// Take a token, or say how long until one is there (nothing is taken then).
    pub(crate) fn take(&self) -> Result<(), Limited> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Result<(), Limited> {
        let mut state = lock(&self.state);
        let (tokens, last) = *state;
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let tokens = (tokens + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            return Ok(());
        }
        *state = (tokens, now);
        Err(Limited {
            limit: self.burst as u32,
            wait: Duration::from_secs_f64((1.0 - tokens) / self.rate),
            retry_after: self.retry_after,
        })
    }
}

/// The seeded dice for `--error-rate`, `--drop-rate` and `--slow-rate`.
#[derive(Debug)]
pub(crate) struct Dice {
    rng: Mutex<StdRng>,
    pub(crate) error: f64,
    pub(crate) drop: f64,
    pub(crate) slow: f64,
}

impl Dice {
    pub(crate) fn new(seed: u64, error: f64, drop: f64, slow: f64) -> Self {
        Dice {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            error,
            drop,
            slow,
        }
    }

    /// `true` with probability `p`; certain outcomes (0, 1) use no randomness.
    pub(crate) fn roll(&self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            lock(&self.rng).random::<f64>() < p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rate_limits() {
        let rl: RateLimit = "auth0=2/5".parse().unwrap();
        assert_eq!(
            rl,
            RateLimit {
                vendor: "auth0".into(),
                rate: 2.0,
                burst: 5
            }
        );
        assert_eq!("gigya=0.5".parse::<RateLimit>().unwrap().burst, 1);
        assert_eq!("gigya=7.9".parse::<RateLimit>().unwrap().burst, 7);
        assert!("auth0".parse::<RateLimit>().is_err());
        assert!("auth0=0".parse::<RateLimit>().is_err());
        assert!("auth0=1/0".parse::<RateLimit>().is_err());
        assert!("auth0=x/2".parse::<RateLimit>().is_err());
    }

    #[test]
    fn bucket_refills_at_rate() {
        let bucket = Bucket::new(&"x=2/2".parse().unwrap(), true);
        let t0 = Instant::now();
        assert!(bucket.take_at(t0).is_ok());
        assert!(bucket.take_at(t0).is_ok());
        let limited = bucket.take_at(t0).unwrap_err();
        assert_eq!(limited.limit, 2);
        assert_eq!(limited.wait, Duration::from_millis(500));
        assert_eq!(limited.retry_after_secs(), 1);
        assert!(bucket.take_at(t0 + Duration::from_millis(250)).is_err());
        assert!(bucket.take_at(t0 + Duration::from_millis(500)).is_ok());
        // Never more than the burst after a long pause.
        let later = t0 + Duration::from_secs(60);
        assert!(bucket.take_at(later).is_ok());
        assert!(bucket.take_at(later).is_ok());
        assert!(bucket.take_at(later).is_err());
    }

    #[test]
    fn budget_announces_tokens_and_time_to_full() {
        let bucket = Bucket::new(&"x=10/10".parse().unwrap(), false);
        let full = bucket.budget();
        assert_eq!((full.limit, full.remaining), (10, 10));
        assert_eq!(full.until_full, Duration::ZERO);
        for _ in 0..4 {
            bucket.take().unwrap();
        }
        let b = bucket.budget();
        assert_eq!(b.remaining, 6);
        assert!(b.until_full <= Duration::from_millis(400), "{b:?}");
        assert!(b.until_full >= Duration::from_millis(390), "{b:?}");
        bucket.take_background();
        assert_eq!(bucket.background_taken.load(Ordering::Relaxed), 1);
        bucket.sample(100.0);
        let json = bucket.to_json();
        assert_eq!(json["limit"], 10.0);
        assert_eq!(json["samples"].as_array().unwrap().len(), 1);
        assert!("auth0=20".parse::<Background>().is_ok());
        assert!("auth0".parse::<Background>().is_err());
        assert!("auth0=0".parse::<Background>().is_err());
    }

    #[test]
    fn dice_are_reproducible() {
        let rolls = |seed| {
            let dice = Dice::new(seed, 0.0, 0.0, 0.0);
            (0..64).map(|_| dice.roll(0.5)).collect::<Vec<_>>()
        };
        assert_eq!(rolls(7), rolls(7));
        assert_ne!(rolls(7), rolls(8));
        let dice = Dice::new(1, 0.0, 0.0, 0.0);
        assert!(dice.roll(1.0));
        assert!(!dice.roll(0.0));
    }
}
