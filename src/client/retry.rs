//! The retry policy, in one place: what to do after each attempt of a call, and how long to wait
//! between attempts. Both are pure, so they are tested as tables.
//!
//! Backoff: exponential growth from `base_delay`, capped at `max_delay`, with "equal jitter": the
//! wait is drawn from the upper half of the exponential step, so retries of many rows spread out
//! but never come back sooner than half the step (or `base_delay`).

use std::time::Duration;

use super::send::TransportError;
use crate::adapter::Class;

/// What one attempt of a call came to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attempt<'a> {
    Answer(&'a Class),
    Transport(&'a TransportError),
}

/// What the call policy does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The answer is the call's verdict (unlinked, present, absent, failed).
    Done,
    /// Wait a backoff, then send again.
    Retry,
    /// The attempts are used up: the call fails with the last reason.
    GiveUp,
    /// The vendor was never reached and the attempts are used up: halt; the row stays pending.
    Unreachable,
    /// A first step's answer was lost: settle the row by read-back before anything else.
    Settle,
    /// Pause the vendor for the wait it names, then send again; not an attempt.
    RateLimit,
    /// Refresh the credentials, then send again; not an attempt.
    Reauth,
    /// Stop the run: credentials, configuration, or an answer no vendor documents.
    Halt,
}

/// The decision after attempt number `used` of at most `max`. `settles`: a lost answer is
/// settled by read-back (a first step, for a vendor with a read API).
pub(crate) fn next(attempt: Attempt<'_>, used: u32, max: u32, settles: bool) -> Next {
    let spent = used >= max;
    match attempt {
        Attempt::Answer(
            Class::Unlinked
            | Class::Present
            | Class::Absent(_)
            | Class::Failed(_)
            | Class::Listed(_),
        ) => Next::Done,
        Attempt::Answer(Class::Retry(_)) if spent => Next::GiveUp,
        Attempt::Answer(Class::Retry(_)) => Next::Retry,
        Attempt::Answer(Class::RateLimit(_)) => Next::RateLimit,
        Attempt::Answer(Class::Reauth(_)) => Next::Reauth,
        Attempt::Answer(Class::Halt(_) | Class::Unexpected(_)) => Next::Halt,
        Attempt::Transport(TransportError::NeverSent(_)) if spent => Next::Unreachable,
        Attempt::Transport(TransportError::NeverSent(_)) => Next::Retry,
        Attempt::Transport(TransportError::AnswerLost(_)) if settles => Next::Settle,
        Attempt::Transport(TransportError::AnswerLost(_)) if spent => Next::GiveUp,
        Attempt::Transport(TransportError::AnswerLost(_)) => Next::Retry,
    }
}

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
    fn the_decision_after_each_attempt() {
        let never = TransportError::NeverSent("connection refused".into());
        let lost = TransportError::AnswerLost("timed out".into());
        let retry = Class::Retry("HTTP 503".into());
        let table: &[(Attempt<'_>, u32, bool, Next)] = &[
            (Attempt::Answer(&Class::Unlinked), 1, false, Next::Done),
            (Attempt::Answer(&Class::Present), 6, false, Next::Done),
            (
                Attempt::Answer(&Class::Absent("gone".into())),
                1,
                true,
                Next::Done,
            ),
            (
                Attempt::Answer(&Class::Failed("no".into())),
                1,
                false,
                Next::Done,
            ),
            (Attempt::Answer(&retry), 1, false, Next::Retry),
            (Attempt::Answer(&retry), 5, true, Next::Retry),
            (Attempt::Answer(&retry), 6, false, Next::GiveUp),
            (
                Attempt::Answer(&Class::RateLimit(None)),
                6,
                false,
                Next::RateLimit,
            ),
            (
                Attempt::Answer(&Class::Reauth("401".into())),
                6,
                false,
                Next::Reauth,
            ),
            (
                Attempt::Answer(&Class::Halt("403".into())),
                1,
                false,
                Next::Halt,
            ),
            (
                Attempt::Answer(&Class::Unexpected("html".into())),
                1,
                true,
                Next::Halt,
            ),
            (Attempt::Transport(&never), 1, false, Next::Retry),
            (Attempt::Transport(&never), 1, true, Next::Retry),
            (Attempt::Transport(&never), 6, true, Next::Unreachable),
            (Attempt::Transport(&lost), 1, true, Next::Settle),
            (Attempt::Transport(&lost), 6, true, Next::Settle),
            (Attempt::Transport(&lost), 1, false, Next::Retry),
            (Attempt::Transport(&lost), 6, false, Next::GiveUp),
        ];
        for (attempt, used, settles, want) in table {
            assert_eq!(
                next(*attempt, *used, 6, *settles),
                *want,
                "{attempt:?} after {used} of 6, settles {settles}"
            );
        }
    }

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
