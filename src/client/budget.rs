//! Header-synced pacing: the vendor's own account of its budget, read from every answer.
//!
//! A vendor's rate limit is per tenant, and production logins share it. Vendors that announce
//! the budget on their answers (Auth0 `x-ratelimit-*`, the IETF `RateLimit` fields) let a run
//! keep below it *before* any 429: [`Pace`] allows at most `remaining − reserve × limit` sends
//! until the announced reset, spread evenly over the time left, and nothing past it. Everything
//! here only ever slows the vendor's pace: the configured `rate`, the token bucket and the
//! adaptive factor of [`super::limit`] still apply on top, and an answer without budget fields
//! changes nothing.
//!
//! Accepted fields (all three of limit, remaining and reset are needed, else the answer is
//! ignored; numbers are non-negative, decimals allowed):
//! - `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`: the reset is UNIX epoch
//!   seconds (Auth0, GitHub) when it is at least 10⁹, else seconds from now (some APIs send a
//!   delta in the same field);
//! - `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (IETF drafts up to 02): the
//!   reset is seconds from now; a list value (`100, 100;w=60`) counts by its first item;
//! - `RateLimit: limit=100, remaining=50, reset=30` (IETF drafts 03-06), and
//!   `RateLimit: "name";r=50;t=30` with `RateLimit-Policy: "name";q=100;w=60` (draft 07 on): the
//!   policy of the same name gives the limit; with several, the one with the least remaining.
//!
//! Two things make the arithmetic honest under concurrency. **Calls in flight:** every send has a
//! ticket (its place in the vendor's order of sends); an answer to ticket `k` says what the
//! vendor had left once it counted `k`, so the sends after `k` are charged against what it says
//! (the allowance runs out at ticket `k + remaining − reserve × limit`), and calls older than `k`
//! still in flight, which the vendor may not have counted yet, are subtracted too. **Stale
//! answers:** an answer to a ticket older than the one the current view came from says less than
//! what is known, and is ignored. A reset that is already past (or zero) means the vendor's
//! window has renewed: the view is dropped until the next answer.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// A reset at least this large is epoch seconds, smaller is seconds from now (10⁹ s is 2001).
const EPOCH_THRESHOLD: f64 = 1e9;

/// A vendor's budget as one answer announced it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Budget {
    /// Requests the window (or bucket) allows.
    pub(crate) limit: f64,
    /// Requests left in it when the vendor answered.
    pub(crate) remaining: f64,
    /// How long from the answer until the window resets (zero when it is past).
    pub(crate) reset: Duration,
}

/// The budget an answer announces, if it announces one in a form listed in the module doc.
pub(crate) fn parse(headers: &HeaderMap, now: SystemTime) -> Option<Budget> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let (Some(l), Some(r), Some(t)) = (
        get("x-ratelimit-limit"),
        get("x-ratelimit-remaining"),
        get("x-ratelimit-reset"),
    ) {
        return budget(
            first_item(l)?,
            first_item(r)?,
            reset_any(first_item(t)?, now)?,
        );
    }
    if let (Some(l), Some(r), Some(t)) = (
        get("ratelimit-limit"),
        get("ratelimit-remaining"),
        get("ratelimit-reset"),
    ) {
        return budget(first_item(l)?, first_item(r)?, delta(first_item(t)?)?);
    }
    let field = get("ratelimit")?;
    if field.contains("remaining=") {
        let (mut l, mut r, mut t) = (None, None, None);
        for member in field.split(',') {
            let Some((key, value)) = member.split_once('=') else {
                continue;
            };
            let value = number(value);
            match key.trim() {
                "limit" => l = value,
                "remaining" => r = value,
                "reset" => t = value,
                _ => {}
            }
        }
        return budget(l?, r?, delta(t?)?);
    }
    // Draft 07 on: items `"policy";r=R;t=T`, the limit `q` from the policy of the same name.
    let (name, r, t) = field
        .split(',')
        .filter_map(|item| {
            let (name, params) = item_params(item);
            Some((
                name,
                params_number(params, "r")?,
                params_number(params, "t"),
            ))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let policy = get("ratelimit-policy")?;
    let q = policy.split(',').find_map(|item| {
        let (pname, params) = item_params(item);
        (pname == name).then(|| params_number(params, "q"))?
    })?;
    budget(q, r, delta(t?)?)
}

fn budget(limit: f64, remaining: f64, reset: Duration) -> Option<Budget> {
    Some(Budget {
        limit,
        remaining,
        reset,
    })
}

/// A non-negative finite number.
fn number(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// The first item of a list value (`100, 100;w=60` → 100).
fn first_item(text: &str) -> Option<f64> {
    number(text.split([',', ';']).next()?)
}

/// Seconds from now.
fn delta(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// Epoch seconds or seconds from now (see [`EPOCH_THRESHOLD`]); a past epoch is zero.
fn reset_any(secs: f64, now: SystemTime) -> Option<Duration> {
    if secs < EPOCH_THRESHOLD {
        return delta(secs);
    }
    let at = SystemTime::UNIX_EPOCH.checked_add(delta(secs)?)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A structured-field item `"name";a=1;b=2` (or a bare token) as its name and parameters.
fn item_params(item: &str) -> (&str, &str) {
    let item = item.trim();
    let (name, params) = item.split_once(';').unwrap_or((item, ""));
    (name.trim().trim_matches('"'), params)
}

fn params_number(params: &str, key: &str) -> Option<f64> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == key).then(|| number(v))?
    })
}

/// What the answers said, turned into a schedule of sends (see the module doc).
#[derive(Debug)]
pub(crate) struct Pace {
    reserve: f64,
    /// The longest window an answer may impose (`retry.max_rate_limit_wait`): past it, a call
    /// is sent and the vendor's own rate-limit answer (and its halt) decides.
    max_window: Duration,
    /// The ticket of the answer the current view came from.
    seen: u64,
    /// Sends with a ticket up to this may go before `until`.
    last_allowed: i128,
    /// When the announced window resets; `None`: no view (no budget fields, or a reset passed).
    until: Option<Instant>,
    /// The last slot handed out within the budget: the next one is spaced from it.
    last_slot: Option<Instant>,
}

impl Pace {
    pub(crate) fn new(reserve: f64, max_window: Duration) -> Pace {
        Pace {
            reserve,
            max_window,
            seen: 0,
            last_allowed: i128::MAX,
            until: None,
            last_slot: None,
        }
    }

    /// An answer to send `ticket` announced `budget`, with `older_in_flight` calls sent before
    /// it still unanswered.
    pub(crate) fn observe(&mut self, ticket: u64, budget: &Budget, older_in_flight: u64) {
        if ticket < self.seen {
            return; // stale: a later send's answer already told more
        }
        self.seen = ticket;
        if budget.reset.is_zero() {
            self.until = None;
            return;
        }
        let allowance = budget.remaining - self.reserve * budget.limit - older_in_flight as f64;
        // `as` saturates; the bounds keep the sum below from overflowing.
        let allowance = (allowance.floor() as i128).clamp(-(1 << 64), 1 << 64);
        self.last_allowed = i128::from(ticket) + allowance;
        self.until = Instant::now().checked_add(budget.reset.min(self.max_window));
    }

    /// The earliest time send `ticket` may go, as far as the announced budget goes: evenly
    /// spaced over what is left of the window while the allowance lasts, then the reset.
    pub(crate) fn slot(&mut self, ticket: u64) -> Instant {
        let now = Instant::now();
        let Some(until) = self.until.filter(|u| *u > now) else {
            self.until = None;
            self.last_slot = Some(now);
            return now;
        };
        let left = self.last_allowed - i128::from(ticket) + 1;
        if left <= 0 {
            // Spent: nothing more before the reset, when the vendor's window renews.
            return until;
        }
        let last = self.last_slot.unwrap_or(now).min(until);
        let n = u32::try_from(left).unwrap_or(u32::MAX);
        let slot = (last + until.saturating_duration_since(last) / n).max(now);
        self.last_slot = Some(slot);
        slot
    }

    /// Whether an announced budget currently shapes the pace.
    #[cfg(test)]
    pub(crate) fn active(&self) -> bool {
        self.until.is_some_and(|u| u > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    fn at(epoch: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(epoch)
    }

    fn b(limit: f64, remaining: f64, reset: u64) -> Budget {
        Budget {
            limit,
            remaining,
            reset: Duration::from_secs(reset),
        }
    }

    #[test]
    fn parses_every_accepted_form() {
        let now = at(1_700_000_000);
        type Case<'a> = (&'a [(&'static str, &'a str)], Option<Budget>);
        let table: &[Case] = &[
            (
                &[
                    ("x-ratelimit-limit", "50"),
                    ("x-ratelimit-remaining", "12"),
                    ("x-ratelimit-reset", "1700000003"),
                ],
                Some(b(50.0, 12.0, 3)),
            ),
            // An epoch in the past: the window has renewed.
            (
                &[
                    ("x-ratelimit-limit", "50"),
                    ("x-ratelimit-remaining", "12"),
                    ("x-ratelimit-reset", "1699999990"),
                ],
                Some(b(50.0, 12.0, 0)),
            ),
            // A small reset is seconds from now.
            (
                &[
                    ("x-ratelimit-limit", "50"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "7"),
                ],
                Some(b(50.0, 0.0, 7)),
            ),
            (
                &[
                    ("ratelimit-limit", "100, 100;w=60"),
                    ("ratelimit-remaining", "40"),
                    ("ratelimit-reset", "30"),
                ],
                Some(b(100.0, 40.0, 30)),
            ),
            (
                &[("ratelimit", "limit=100, remaining=50, reset=30")],
                Some(b(100.0, 50.0, 30)),
            ),
            (
                &[
                    ("ratelimit", "\"burst\";r=9;t=2, \"day\";r=500;t=3600"),
                    (
                        "ratelimit-policy",
                        "\"day\";q=1000;w=86400, \"burst\";q=10;w=1",
                    ),
                ],
                Some(b(10.0, 9.0, 2)),
            ),
            (&[], None),
            // Malformed or partial: ignored, never a guess.
            (
                &[
                    ("x-ratelimit-limit", "50"),
                    ("x-ratelimit-remaining", "many"),
                    ("x-ratelimit-reset", "1700000003"),
                ],
                None,
            ),
            (
                &[("x-ratelimit-limit", "50"), ("x-ratelimit-remaining", "3")],
                None,
            ),
            (
                &[
                    ("x-ratelimit-limit", "50"),
                    ("x-ratelimit-remaining", "-3"),
                    ("x-ratelimit-reset", "2"),
                ],
                None,
            ),
            (
                &[
                    ("x-ratelimit-limit", "NaN"),
                    ("x-ratelimit-remaining", "3"),
                    ("x-ratelimit-reset", "2"),
                ],
                None,
            ),
            (
                &[
                    ("x-ratelimit-limit", "5"),
                    ("x-ratelimit-remaining", "3"),
                    ("x-ratelimit-reset", "1e400"),
                ],
                None,
            ),
            (&[("ratelimit", "limit=100, reset=30")], None),
            (&[("ratelimit", "\"a\";r=9;t=2")], None),
            (
                &[
                    ("ratelimit", "\"a\";r=9;t=2"),
                    ("ratelimit-policy", "\"b\";q=10"),
                ],
                None,
            ),
        ];
        for (pairs, want) in table {
            assert_eq!(parse(&headers(pairs), now), *want, "{pairs:?}");
        }
    }

    const WINDOW: Duration = Duration::from_secs(900);

    /// The slots of sends `first..=last`, taken in turn, as offsets from now.
    fn slots(p: &mut Pace, tickets: std::ops::RangeInclusive<u64>) -> Vec<Duration> {
        let start = Instant::now();
        tickets.map(|t| p.slot(t) - start).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn spreads_the_remaining_budget_over_the_window() {
        let mut p = Pace::new(0.0, WINDOW);
        p.observe(1, &b(50.0, 10.0, 1), 0);
        // Ten more sends before the reset, one every 100 ms, not a burst of ten.
        let s = slots(&mut p, 2..=12);
        for (i, at) in s.iter().take(10).enumerate() {
            let want = Duration::from_millis(100 * (i as u64 + 1));
            assert!(at.abs_diff(want) < Duration::from_millis(2), "{i}: {s:?}");
        }
        // The eleventh waits for the reset.
        assert_eq!(s[10], Duration::from_secs(1), "{s:?}");
        // Once the reset has passed, nothing is held back until the next answer says so.
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(slots(&mut p, 13..=13), [Duration::ZERO]);
        assert!(!p.active());
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_is_left_to_others() {
        let mut p = Pace::new(0.3, WINDOW);
        // 20 left of 50 with 15 reserved: 5 more sends, then the reset.
        p.observe(1, &b(50.0, 20.0, 2), 0);
        let s = slots(&mut p, 2..=7);
        assert!(
            s[0] >= Duration::from_millis(399),
            "spread, not a burst: {s:?}"
        );
        assert!(s[4] <= Duration::from_secs(2), "{s:?}");
        assert_eq!(s[5], Duration::from_secs(2), "{s:?}");
        // Below the reserve already: wait for the reset.
        let mut p = Pace::new(0.3, WINDOW);
        p.observe(1, &b(50.0, 14.0, 3), 0);
        assert_eq!(slots(&mut p, 2..=2), [Duration::from_secs(3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn sends_in_flight_are_charged_and_stale_answers_ignored() {
        let mut p = Pace::new(0.0, WINDOW);
        // Sends 1..=10 went out; the answer to 5 says 6 left, with sends 3 and 4 unanswered.
        // Sends 6..=10 and the two older ones use up 7: nothing is left before the reset.
        p.observe(5, &b(50.0, 6.0, 4), 2);
        assert_eq!(slots(&mut p, 11..=11), [Duration::from_secs(4)]);
        // A late answer to send 3 (older) saying "plenty left" changes nothing.
        p.observe(3, &b(50.0, 45.0, 4), 0);
        assert_eq!(slots(&mut p, 12..=12), [Duration::from_secs(4)]);
        // A newer answer does.
        p.observe(10, &b(50.0, 30.0, 4), 0);
        assert!(slots(&mut p, 13..=13)[0] < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn past_reset_and_caps() {
        let mut p = Pace::new(0.0, Duration::from_secs(10));
        // A reset in the past: the window renewed, the budget says nothing more.
        p.observe(1, &b(50.0, 0.0, 0), 0);
        assert_eq!(slots(&mut p, 2..=3), [Duration::ZERO, Duration::ZERO]);
        // A reset a day away with nothing left waits at most the window cap; the vendor's
        // rate-limit answer (and the run's wait bound) decide after that.
        p.observe(4, &b(50.0, 0.0, 86_400), 0);
        assert_eq!(slots(&mut p, 5..=5), [Duration::from_secs(10)]);
        // Absurd numbers never panic.
        p.observe(6, &b(f64::MAX, f64::MAX, u64::MAX / 4), 0);
        p.slot(7);
        p.observe(8, &b(1.0, 0.0, 1), u64::MAX);
        p.slot(u64::MAX);
    }
}
