//! One vendor's call policy: every call of every row goes through [`VendorClient::call`].
//!
//! Per call: concurrency slot and token bucket ([`limit`]) → the shared token, fetched when due
//! ([`token`]) → the intent journaled for a state-changing step → [`send`] → the adapter
//! classifies → the retry policy ([`retry::next`]) decides: a verdict, a backoff and another
//! attempt, a pause for a rate limit, a token refresh, a read-back after a lost answer, or a
//! halt. Adapters only build requests and classify answers; everything users rely on about
//! pacing, retries and halting is written once, here.
//!
//! The client never writes files: it tells a [`Recorder`] (the pipeline's consumer) about intents
//! and halts, and waits for an intent to be journaled before it sends.

pub(crate) mod budget;
pub(crate) mod limit;
pub(crate) mod retry;
pub(crate) mod send;
pub(crate) mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapter::{Class, Prepared, Verdict, WireAnswer, WireRequest};
use crate::job::{RetrySettings, Secrets, VendorSettings};
use crate::stop::Stop;
use limit::Limiter;
use retry::{Attempt, Next};
pub(crate) use send::{Received, Transport, TransportError};
use token::{TokenCache, TokenState};

/// Bytes of an unexpected answer's body quoted in the halt message.
const UNEXPECTED_QUOTE: usize = 200;

/// What the client reports to whoever records the run.
pub(crate) trait Recorder: Sync {
    /// Journal that step `step` of `line` is about to be sent; resolves once it is. False when
    /// the recorder is gone (the run is ending): then nothing may be sent.
    fn intent(&self, line: u64, step: u8) -> impl Future<Output = bool> + Send;
    /// Stop the run: a vendor needs a person's attention (exit 6).
    fn halt(&self, reason: String) -> impl Future<Output = ()> + Send;
}

/// The run is stopping or halting: the row stays pending (or in doubt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Which call of a row to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Step(u8),
    Read,
    /// A wildcard row's read: the same call as `Read`, classified by `Adapter::classify_list`.
    List,
}

/// What one logical call came to.
#[derive(Debug)]
pub(crate) enum Answered {
    /// A final verdict: `Unlinked`, `Present`, `Absent` or `Failed`.
    Verdict(Verdict),
    /// A first step's answer was lost and the vendor has a read API: the caller settles the row
    /// by read-back before anything is sent again. The string describes the loss.
    Lost(String),
}

/// What one row accumulates over its calls, for its report row.
#[derive(Debug)]
pub(crate) struct CallLog {
    pub(crate) started: Instant,
    pub(crate) attempts: u32,
    pub(crate) http_status: Option<u16>,
    pub(crate) vendor_code: Option<String>,
    pub(crate) request_id: Option<String>,
    /// Every call of the row in order (its last attempt's description): see [`CallLog::request`].
    calls: Vec<String>,
    /// The next attempt starts a new call (a new entry in `calls`).
    new_call: bool,
    pub(crate) sent: bool,
    /// A state-changing call was sent and its effect is unknown.
    pub(crate) in_doubt: bool,
    pub(crate) rate_limit_wait: Duration,
    /// An attempt of the current step was sent and its answer lost.
    pub(crate) lost_answer: bool,
    /// An attempt of the current step got a retryable answer (5xx, 408, ...): it may have acted.
    pub(crate) retried_answer: Option<String>,
    /// The row ended `absent` by a read-back after a lost answer (counted apart).
    pub(crate) absent_after_lost: bool,
}

impl CallLog {
    pub(crate) fn new(in_doubt: bool) -> CallLog {
        CallLog {
            started: Instant::now(),
            attempts: 0,
            http_status: None,
            vendor_code: None,
            request_id: None,
            calls: Vec::new(),
            new_call: true,
            sent: false,
            in_doubt,
            rate_limit_wait: Duration::ZERO,
            lost_answer: false,
            retried_answer: None,
            absent_after_lost: false,
        }
    }

    /// The report's `request`: every call of the row in order (SPEC section 5), separated by
    /// ` ; `. A call retried (backoff, rate limit, re-authentication) is one entry, showing its
    /// last attempt.
    pub(crate) fn request(&self) -> String {
        self.calls.join(" ; ")
    }

    /// The call being made (or last made), for messages about it.
    pub(crate) fn last_request(&self) -> &str {
        self.calls.last().map_or("", String::as_str)
    }

    /// The report shows only `request` for this row (`--dry-run --check`: the call a real run
    /// would send, not the read).
    pub(crate) fn show_only(&mut self, request: String) {
        self.calls = vec![request];
        self.new_call = true;
    }

    /// A new logical call of the row begins: its first attempt adds an entry.
    fn begin_call(&mut self) {
        self.new_call = true;
    }

    /// The (scrubbed) description of the attempt about to be sent.
    fn note_attempt(&mut self, request: String) {
        match self.calls.last_mut() {
            Some(last) if !self.new_call => *last = request,
            _ => self.calls.push(request),
        }
        self.new_call = false;
    }
}

/// Where one attempt of a call stands.
struct Turn {
    line: u64,
    kind: CallKind,
    /// A step that changes something (not a read-only step): its intent is journaled.
    changes: bool,
    /// Whether the row was in doubt before this attempt (restored when the vendor cannot have
    /// acted on it).
    doubt_before: bool,
    /// The send's ticket from the limiter, for the budget its answer announces.
    ticket: u64,
}

/// One attempt's result: the verdict or the transport failure, and for an unexpected answer the
/// quoted detail for the halt message.
struct Sent {
    result: Result<Verdict, TransportError>,
    unexpected: String,
}

/// The text a class carries (its message), for messages built from it.
fn class_text(class: Class) -> String {
    match class {
        Class::Absent(m)
        | Class::Failed(m)
        | Class::Retry(m)
        | Class::Reauth(m)
        | Class::Halt(m)
        | Class::Unexpected(m) => m,
        other => other.name().to_string(),
    }
}

/// One vendor of a run: its adapter, limiter, shared token and the run's retry rules.
pub(crate) struct VendorClient {
    pub(crate) vendor: VendorSettings,
    pub(crate) limiter: Arc<Limiter>,
    tokens: TokenCache,
    transport: Arc<Transport>,
    retry: RetrySettings,
    secrets: Arc<Secrets>,
    stop: Stop,
}

impl VendorClient {
    pub(crate) fn new(
        vendor: VendorSettings,
        transport: Arc<Transport>,
        retry: RetrySettings,
        secrets: Arc<Secrets>,
        stop: Stop,
    ) -> VendorClient {
        let limiter = Arc::new(
            Limiter::new(
                vendor.rate,
                vendor.burst,
                vendor.concurrency,
                retry.max_delay,
            )
            .with_budget(vendor.reserve, retry.max_rate_limit_wait),
        );
        VendorClient {
            vendor,
            limiter,
            tokens: TokenCache::default(),
            transport,
            retry,
            secrets,
            stop,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.vendor.name
    }

    pub(crate) fn retry(&self) -> &RetrySettings {
        &self.retry
    }

    pub(crate) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Whether the adapter can read the row's link (in-doubt settlement, `--check`).
    pub(crate) fn can_read(&self) -> bool {
        self.vendor.adapter.can_read()
    }

    /// Make one logical call of a row (a step or a read), with retries, rate-limit pauses and
    /// re-authentication, counting attempts in `budget`. Returns the final verdict, or a lost
    /// answer for the caller to settle; `Err(Stopped)` when the run is stopping or halting.
    pub(crate) async fn call(
        &self,
        rec: &impl Recorder,
        line: u64,
        row: &Prepared,
        log: &mut CallLog,
        kind: CallKind,
        budget: &mut u32,
    ) -> Result<Answered, Stopped> {
        // A lost answer to a first step is settled by read-back where the vendor can read.
        // (For a vendor whose first step only reads, the first step that changes anything.)
        let adapter = self.vendor.adapter.as_ref();
        let changes = matches!(kind, CallKind::Step(s) if !adapter.reads_only(row, s));
        let settles =
            kind == CallKind::Step(adapter.first_change(row)) && changes && self.can_read();
        debug_assert_eq!(
            self.can_read(),
            self.vendor.adapter.read(row, None).is_some(),
            "Adapter::can_read must agree with Adapter::read"
        );
        let mut reauthed = false;
        log.begin_call();
        loop {
            if self.stop.is_set() {
                return Err(Stopped);
            }
            let Some((permit, ticket)) = self.limiter.acquire(&self.stop).await else {
                return Err(Stopped);
            };
            // The token is read only now that the call may go: a call that waited for its slot
            // never sends a token that expired or was refused meanwhile.
            let generation = self.tokens.generation();
            let token = match self.tokens.current(self.vendor.adapter.as_ref()).await {
                TokenState::NotUsed => None,
                TokenState::Valid(t) => Some(t),
                TokenState::Missing => {
                    // This slot is spent on fetching the token; the call takes the next one.
                    self.fetch_token(rec, permit).await?;
                    continue;
                }
            };
            let request = match kind {
                CallKind::Step(s) => self.vendor.adapter.build(row, s, token.as_deref()),
                CallKind::Read | CallKind::List => {
                    match self.vendor.adapter.read(row, token.as_deref()) {
                        Some(r) => r,
                        None => {
                            let failed = Class::Failed("this vendor has no read API".into());
                            return Ok(Answered::Verdict(Verdict::new(failed)));
                        }
                    }
                }
            };
            let turn = Turn {
                line,
                kind,
                changes,
                doubt_before: log.in_doubt,
                ticket,
            };
            let sent = self.attempt(rec, &turn, row, &request, log, budget).await?;
            let attempt = match &sent.result {
                Ok(v) => Attempt::Answer(&v.class),
                Err(e) => Attempt::Transport(e),
            };
            let next = retry::next(attempt, *budget, self.retry.max_attempts, settles);
            tracing::debug!(line, vendor = %self.vendor.name, next = ?next, status = log.http_status.map(u32::from), "answer");
            let answered = match (next, sent.result) {
                (Next::Done, Ok(verdict)) => {
                    self.limiter.on_success();
                    Some(Answered::Verdict(verdict))
                }
                (Next::Settle, Err(e)) => {
                    log.lost_answer = true;
                    Some(Answered::Lost(self.secrets.scrub(e.message())))
                }
                (Next::Retry | Next::GiveUp, result) => {
                    self.retry_or_give_up(&turn, next, result, log, *budget, permit)
                        .await?
                }
                (Next::Unreachable, Err(e)) => {
                    log.in_doubt = turn.doubt_before;
                    let reason = format!(
                        "vendor `{}` is unreachable: {} never reached it (last: {}); the row stays pending: resume once the vendor can be reached",
                        self.vendor.name,
                        plural(*budget, "attempt"),
                        e.message()
                    );
                    return self.halt(rec, reason).await;
                }
                (Next::RateLimit, Ok(verdict)) => {
                    // The vendor refused before acting: not an attempt, and no new doubt.
                    log.in_doubt = turn.doubt_before;
                    *budget -= 1;
                    self.paused(rec, verdict, log).await?
                }
                (Next::Reauth, Ok(verdict)) => {
                    log.in_doubt = turn.doubt_before;
                    *budget -= 1;
                    let refused = match &token {
                        // Signed requests (no token): rebuild once per row, then give up.
                        None => std::mem::replace(&mut reauthed, true),
                        Some(t) => !self.tokens.refresh_refused(t, generation).await,
                    };
                    if refused {
                        let reason = format!(
                            "vendor `{}`: {} (refused again after refreshing)",
                            self.vendor.name,
                            class_text(verdict.class)
                        );
                        return self.halt(rec, reason).await;
                    }
                    None
                }
                (Next::Halt, Ok(verdict)) => {
                    let reason = self.halt_reason(verdict.class, &turn, log, &sent.unexpected);
                    return self.halt(rec, reason).await;
                }
                (next, result) => unreachable!("retry::next gave {next:?} for {result:?}"),
            };
            if let Some(answered) = answered {
                return Ok(answered);
            }
        }
    }

    /// One attempt: the intent journaled (for a step), the request sent, the answer classified.
    async fn attempt(
        &self,
        rec: &impl Recorder,
        turn: &Turn,
        row: &Prepared,
        request: &WireRequest,
        log: &mut CallLog,
        budget: &mut u32,
    ) -> Result<Sent, Stopped> {
        log.note_attempt(self.secrets.scrub(&request.describe()));
        if let CallKind::Step(step) = turn.kind
            && turn.changes
        {
            if !rec.intent(turn.line, step).await {
                return Err(Stopped);
            }
            log.in_doubt = true;
        }
        log.sent = true;
        log.attempts += 1;
        *budget += 1;
        // The caller holds the slot until the answer is handled, so a refusal or a rate-limit
        // pause takes effect before the next call in line can go.
        let adapter = &self.vendor.adapter;
        let sent = match self.transport.send(request).await {
            Ok(Received::Answer(answer)) => {
                self.limiter.observe(turn.ticket, &answer.headers);
                log.http_status = Some(answer.status);
                let v = match turn.kind {
                    CallKind::Step(s) => adapter.classify(row, s, &answer),
                    CallKind::Read => adapter.classify_read(row, &answer),
                    CallKind::List => adapter.classify_list(row, &answer),
                };
                let unexpected = match &v.class {
                    Class::Unexpected(what) => describe_unexpected(&answer, what, &self.secrets),
                    _ => String::new(),
                };
                log.vendor_code = v.vendor_code.clone();
                if v.request_id.is_some() {
                    log.request_id = v.request_id.clone();
                }
                Sent {
                    result: Ok(v),
                    unexpected,
                }
            }
            Ok(Received::TooLarge(head)) => {
                self.limiter.observe(turn.ticket, &head.headers);
                log.http_status = Some(head.status);
                let what = "the body is longer than 1 MiB";
                Sent {
                    result: Ok(Verdict::new(Class::Unexpected(what.into()))),
                    unexpected: describe_unexpected(&head, what, &self.secrets),
                }
            }
            Err(e) => {
                log.http_status = None;
                log.vendor_code = None;
                Sent {
                    result: Err(e),
                    unexpected: String::new(),
                }
            }
        };
        Ok(sent)
    }

    /// A retryable answer or a transport failure: back off and go again (`None`), or, with
    /// the attempts spent, the call fails with the last reason.
    async fn retry_or_give_up(
        &self,
        turn: &Turn,
        next: Next,
        result: Result<Verdict, TransportError>,
        log: &mut CallLog,
        budget: u32,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Option<Answered>, Stopped> {
        let message = match &result {
            Ok(v) => {
                if let (CallKind::Step(_), Some(status)) = (turn.kind, log.http_status) {
                    log.retried_answer = Some(format!("HTTP {status}"));
                }
                class_text(v.class.clone())
            }
            Err(e) => {
                match e {
                    // Nothing reached the vendor: this attempt changed nothing.
                    TransportError::NeverSent(_) => log.in_doubt = turn.doubt_before,
                    TransportError::AnswerLost(_) => {
                        if turn.changes {
                            log.lost_answer = true;
                        }
                    }
                }
                self.secrets.scrub(e.message())
            }
        };
        if next == Next::GiveUp {
            let failed = Class::Failed(format!(
                "gave up after {}: {message}",
                plural(budget, "attempt")
            ));
            let verdict = match result {
                Ok(v) => Verdict { class: failed, ..v },
                Err(_) => Verdict::new(failed),
            };
            return Ok(Some(Answered::Verdict(verdict)));
        }
        drop(permit);
        if !self.backoff(budget, turn.line, &message).await {
            return Err(Stopped);
        }
        Ok(None)
    }

    /// A rate-limit answer: pause (or halt on a wait beyond the bound); the call fails once
    /// the row has waited `max_rate_limit_wait` in all.
    async fn paused(
        &self,
        rec: &impl Recorder,
        verdict: Verdict,
        log: &mut CallLog,
    ) -> Result<Option<Answered>, Stopped> {
        let Class::RateLimit(wait) = verdict.class else {
            unreachable!("a pause comes from a rate-limit answer")
        };
        if !self.rate_limited(rec, wait, log).await {
            return Err(Stopped);
        }
        if log.rate_limit_wait <= self.retry.max_rate_limit_wait {
            return Ok(None);
        }
        let failed = Class::Failed(format!(
            "still rate limited after waiting {} in total (retry.max_rate_limit_wait)",
            humantime::format_duration(self.retry.max_rate_limit_wait)
        ));
        Ok(Some(Answered::Verdict(Verdict {
            class: failed,
            ..verdict
        })))
    }

    /// Stop the run for a reason a person must look at; the row stays pending.
    pub(crate) async fn halt<T>(&self, rec: &impl Recorder, reason: String) -> Result<T, Stopped> {
        self.stop.trigger();
        rec.halt(self.secrets.scrub(&reason)).await;
        Err(Stopped)
    }

    /// Why a halting answer halts. A refusal did not act (no new doubt); for an unexpected
    /// answer whether a state-changing call took effect is unknown, so the row stays in doubt
    /// and a resume reads the vendor's state before sending again.
    fn halt_reason(
        &self,
        class: Class,
        turn: &Turn,
        log: &mut CallLog,
        unexpected: &str,
    ) -> String {
        match class {
            Class::Halt(message) => {
                log.in_doubt = turn.doubt_before;
                format!("vendor `{}`: {message}", self.vendor.name)
            }
            _ => format!(
                "vendor `{}`: unexpected answer to {}: {unexpected}",
                self.vendor.name,
                log.last_request()
            ),
        }
    }

    /// Wait out the backoff after attempt `n`. False when the run stops meanwhile.
    pub(crate) async fn backoff(&self, n: u32, line: u64, why: &str) -> bool {
        let wait = retry::backoff_random(n, self.retry.base_delay, self.retry.max_delay);
        tracing::debug!(line, "retrying in {wait:?}: {why}");
        self.stop.sleep(wait).await
    }

    /// Handle a rate-limit answer: pause the vendor for the wait it names (a default pause when
    /// it names none, or nothing usable), adding the pause to the row's total. A named wait
    /// longer than `retry.max_rate_limit_wait` halts instead. False when the run halts.
    async fn rate_limited(
        &self,
        rec: &impl Recorder,
        wait: Option<Duration>,
        log: &mut CallLog,
    ) -> bool {
        if !self.wait_allowed(rec, wait, "").await {
            return false;
        }
        let paused = self.limiter.on_rate_limit(wait.filter(|w| !w.is_zero()));
        log.rate_limit_wait = log.rate_limit_wait.saturating_add(paused);
        tracing::debug!(vendor = %self.vendor.name, "rate limited; pausing {paused:?}");
        true
    }

    /// False (after halting the run) when the vendor named a wait beyond the allowed one.
    async fn wait_allowed(&self, rec: &impl Recorder, wait: Option<Duration>, what: &str) -> bool {
        let max = self.retry.max_rate_limit_wait;
        match wait.filter(|w| *w > max) {
            None => true,
            Some(asked) => {
                let _: Result<(), Stopped> = self.halt(
                    rec,
                    format!(
                        "vendor `{}`{what} asked to wait {} before the next call, more than retry.max_rate_limit_wait ({}); resume the job later",
                        self.vendor.name,
                        describe_wait(asked),
                        humantime::format_duration(max)
                    ),
                )
                .await;
                false
            }
        }
    }
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: impl Into<u64>, thing: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A wait as seconds, with a reading for people when it is not absurd.
fn describe_wait(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 1000 * 365 * 86_400 {
        format!("{secs} s")
    } else {
        format!(
            "{secs} s ({})",
            humantime::format_duration(Duration::from_secs(secs))
        )
    }
}

/// The part of an "unexpected answer" halt message that quotes the answer: status, content type
/// and the first bytes of the body, with what did not match and where to look. The body is
/// scrubbed before it is cut and quoted, so neither the cut nor the quoting can leave part of a
/// secret behind.
pub(crate) fn describe_unexpected(answer: &WireAnswer, what: &str, secrets: &Secrets) -> String {
    let content_type = answer.header("content-type").unwrap_or("none");
    let body = secrets.scrub(&String::from_utf8_lossy(&answer.body));
    let mut quoted: String = body
        .chars()
        .take(UNEXPECTED_QUOTE)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.chars().nth(UNEXPECTED_QUOTE).is_some() {
        quoted.push('…');
    }
    let what = if what.is_empty() {
        String::new()
    } else {
        format!(" ({what})")
    };
    format!(
        "HTTP {}, content type {content_type}, body «{quoted}»{what}; this is not an answer the vendor documents: check `base_url` (host and path prefix)",
        answer.status
    )
}

#[cfg(test)]
mod tests;
