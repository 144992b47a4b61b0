//! The part of reading an answer that every vendor shares: the HTTP statuses that mean "slow
//! down" or "try again", whatever the body says.
//!
//! A 429 is a rate-limit answer (pause the vendor for the wait it names); 408 and every 5xx are
//! transient (retry after a backoff); some vendors add statuses of their own (Auth0 retries 409).
//! None of them is ever an outcome, so the body does not matter. Everything else is the
//! adapter's to classify against its vendor's documented shapes.

use std::time::SystemTime;

use super::Class;
use super::wire::WireAnswer;

/// What a transient status asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    RateLimit,
    Retry,
}

/// Whether `status` is transient; `also_retried` are the vendor's extra retried statuses.
pub fn transient(status: u16, also_retried: &[u16]) -> Option<Transient> {
    match status {
        429 => Some(Transient::RateLimit),
        408 | 500..=599 => Some(Transient::Retry),
        s if also_retried.contains(&s) => Some(Transient::Retry),
        _ => None,
    }
}

/// The class of a transient answer, or `None` when the adapter must read it. `detail` describes
/// the answer for a retry's message (computed only then).
pub fn transient_class(
    answer: &WireAnswer,
    also_retried: &[u16],
    detail: impl FnOnce() -> String,
) -> Option<Class> {
    Some(match transient(answer.status, also_retried)? {
        Transient::RateLimit => Class::RateLimit(answer.retry_after(SystemTime::now())),
        Transient::Retry => Class::Retry(format!("HTTP {}: {}", answer.status, detail())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_status_table() {
        let table: &[(u16, &[u16], Option<Transient>)] = &[
            (429, &[], Some(Transient::RateLimit)),
            (408, &[], Some(Transient::Retry)),
            (500, &[], Some(Transient::Retry)),
            (502, &[], Some(Transient::Retry)),
            (503, &[], Some(Transient::Retry)),
            (599, &[], Some(Transient::Retry)),
            (409, &[], None),
            (409, &[409], Some(Transient::Retry)),
            (200, &[], None),
            (204, &[], None),
            (302, &[], None),
            (400, &[], None),
            (401, &[], None),
            (403, &[], None),
            (404, &[], None),
            (418, &[], None),
            (600, &[], None),
        ];
        for (status, also, want) in table {
            assert_eq!(
                transient(*status, also),
                *want,
                "HTTP {status} with {also:?}"
            );
        }
    }

    #[test]
    fn classes_carry_the_wait_and_the_detail() {
        let limited = WireAnswer::new(429, "").with_header("retry-after", "7");
        assert_eq!(
            transient_class(&limited, &[], || unreachable!("no detail for a rate limit")),
            Some(Class::RateLimit(Some(std::time::Duration::from_secs(7))))
        );
        let down = WireAnswer::new(503, "busy");
        assert_eq!(
            transient_class(&down, &[], || "busy".into()),
            Some(Class::Retry("HTTP 503: busy".into()))
        );
        let fine = WireAnswer::new(200, "[]");
        assert_eq!(
            transient_class(&fine, &[], || unreachable!("not transient")),
            None
        );
    }
}
