//! The vendor's shared bearer token (Auth0 client credentials): fetched once, used by every call,
//! refreshed before it expires and once after a refusal. Never a token per request: token
//! endpoints have limits of their own.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Received, Recorder, Stopped, VendorClient, describe_unexpected, retry};
use crate::adapter::Adapter;

/// Refresh a fetched token when this share of its lifetime has passed.
const TOKEN_REFRESH_SHARE: f64 = 0.9;
/// Longest token lifetime believed; a longer `expires_in` is refreshed after this anyway.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

struct Token {
    value: String,
    refresh_at: Instant,
    /// Fetched because the previous token was refused: a refusal of this one halts.
    after_refusal: bool,
}

/// The token slot of one vendor.
#[derive(Default)]
pub(crate) struct TokenCache {
    slot: tokio::sync::Mutex<Option<Token>>,
    /// Bumped whenever the shared token is dropped, so calls holding an older one re-read it.
    generation: AtomicU64,
    /// The next token fetch replaces a refused token.
    refetch_after_refusal: AtomicBool,
    /// Token fetches that failed in a row.
    failures: AtomicU32,
}

pub(crate) enum TokenState {
    /// The adapter does not fetch tokens.
    NotUsed,
    Valid(String),
    /// None yet, or due for refresh.
    Missing,
}

impl TokenCache {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) async fn current(&self, adapter: &dyn Adapter) -> TokenState {
        if !adapter.fetches_token() {
            return TokenState::NotUsed;
        }
        match self.slot.lock().await.as_ref() {
            Some(t) if t.refresh_at > Instant::now() => TokenState::Valid(t.value.clone()),
            _ => TokenState::Missing,
        }
    }

    /// A call made with `used` (read at `generation`) was refused. Returns false when the
    /// refusal must halt: the refused token had itself been fetched to replace a refused one.
    pub(crate) async fn refresh_refused(&self, used: &str, generation: u64) -> bool {
        let mut slot = self.slot.lock().await;
        if self.generation.load(Ordering::Acquire) != generation {
            return true; // another call already replaced it: just retry with the new one
        }
        match slot.as_ref() {
            Some(t) if t.value == used && t.after_refusal => false,
            Some(t) if t.value == used => {
                *slot = None;
                self.refetch_after_refusal.store(true, Ordering::Release);
                self.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
            _ => true,
        }
    }
}

impl VendorClient {
    /// Fetch the shared token with the concurrency slot and rate token the caller holds. One
    /// fetch at a time: callers that find it missing meanwhile wait for it and then use it.
    /// Transient failures return `Ok` after pausing, so the caller simply tries again; a refusal
    /// or too many failures halt the run.
    pub(crate) async fn fetch_token(
        &self,
        rec: &impl Recorder,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(), Stopped> {
        let adapter = &self.vendor.adapter;
        let name = &self.vendor.name;
        let Some(request) = adapter.token_request() else {
            return Ok(());
        };
        let tokens = &self.tokens;
        let mut slot = tokens.slot.lock().await;
        if slot.as_ref().is_some_and(|t| t.refresh_at > Instant::now()) {
            return Ok(()); // fetched by another call while we waited for the lock
        }
        if self.stop.is_set() {
            return Err(Stopped); // a halt (perhaps this very token refused) came meanwhile
        }
        // A signed assertion (Firebase) is a credential for its lifetime: scrubbed like the token.
        for (name, value) in &request.form {
            if request.secret_fields.contains(name) {
                self.secrets.learn(value);
            }
        }
        let answer = self.transport.send(&request).await;
        drop(permit);
        let transient = match answer {
            Ok(Received::TooLarge(head)) => {
                drop(slot);
                let detail =
                    describe_unexpected(&head, "the body is longer than 1 MiB", &self.secrets);
                let reason =
                    format!("vendor `{name}`: unexpected answer from the token endpoint: {detail}");
                return self.halt(rec, reason).await;
            }
            Ok(Received::Answer(a)) if a.status == 429 => {
                drop(slot);
                let wait = a.retry_after(std::time::SystemTime::now());
                if !self.wait_allowed(rec, wait, "'s token endpoint").await {
                    return Err(Stopped);
                }
                self.limiter.on_rate_limit(wait.filter(|w| !w.is_zero()));
                return Ok(());
            }
            Ok(Received::Answer(a)) if a.status == 408 || a.status >= 500 => {
                format!("token endpoint answered HTTP {}", a.status)
            }
            Ok(Received::Answer(a)) => match adapter.parse_token(&a) {
                Ok((value, lifetime)) => {
                    tracing::debug!(vendor = %name, "fetched a token valid for {lifetime:?}");
                    self.secrets.learn(&value);
                    // An absurd lifetime must not overflow the clock: refresh at least monthly.
                    let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
                    *slot = Some(Token {
                        value,
                        refresh_at: Instant::now() + lifetime.mul_f64(TOKEN_REFRESH_SHARE),
                        after_refusal: tokens.refetch_after_refusal.swap(false, Ordering::AcqRel),
                    });
                    tokens.failures.store(0, Ordering::Relaxed);
                    return Ok(());
                }
                Err(message) => {
                    drop(slot);
                    let reason = format!("vendor `{name}`: cannot get a token: {message}");
                    return self.halt(rec, reason).await;
                }
            },
            Err(e) => e.message().to_string(),
        };
        let failures = tokens.failures.fetch_add(1, Ordering::Relaxed) + 1;
        drop(slot);
        if failures >= self.retry.max_attempts {
            let reason = format!(
                "vendor `{name}`: cannot get a token after {}: {transient}",
                super::plural(failures, "attempt")
            );
            return self.halt(rec, reason).await;
        }
        let wait = retry::backoff_random(failures, self.retry.base_delay, self.retry.max_delay);
        if !self.stop.sleep(wait).await {
            return Err(Stopped);
        }
        Ok(())
    }
}
