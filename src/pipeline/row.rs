//! One vendor's lane and the life of one row in it: a bounded set of row tasks, each making the
//! row's calls through the vendor's [`VendorClient`] — the unlink step(s), the read-back of a row
//! in doubt or whose answer was lost, or only the read for `--dry-run --check` — and ending with
//! one event for the consumer: an outcome, or "still pending".

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::adapter::{Class, Prepared, Verdict};
use crate::client::{Answered, CallKind, CallLog, Recorder, Stopped, VendorClient, plural};
use crate::report::{Outcome, ReportRow, now_rfc3339};
use crate::stop::Stop;

use super::consumer::{Event, RowNote};
use super::reader::Work;
use super::wildcard;

/// One vendor of the run.
pub(super) struct Lane {
    pub(super) client: VendorClient,
    /// `--dry-run --check`: only read.
    pub(super) check: bool,
    pub(super) stop: Stop,
}

/// A lane while it runs: with the sender of its events, dropped once its last row task ends
/// (the consumer stops when every sender is gone).
pub(super) struct LaneCtx {
    lane: Arc<Lane>,
    pub(super) sink: EventSink,
}

impl std::ops::Deref for LaneCtx {
    type Target = Lane;

    fn deref(&self) -> &Lane {
        &self.lane
    }
}

/// The client's [`Recorder`]: events to the consumer.
#[derive(Clone)]
pub(super) struct EventSink(pub(super) mpsc::Sender<Event>);

impl EventSink {
    pub(super) async fn send(&self, event: Event) {
        let _ = self.0.send(event).await;
    }
}

impl Recorder for EventSink {
    async fn intent(&self, line: u64, step: u8) -> bool {
        Tagged {
            sink: self,
            link: None,
        }
        .intent(line, step)
        .await
    }

    async fn halt(&self, reason: String) {
        let _ = self.0.send(Event::Halt(reason)).await;
    }
}

/// The [`Recorder`] of one row's calls: for a wildcard row's link, its journal records name the
/// link.
pub(super) struct Tagged<'a> {
    pub(super) sink: &'a EventSink,
    pub(super) link: Option<&'a Prepared>,
}

impl Recorder for Tagged<'_> {
    async fn intent(&self, line: u64, step: u8) -> bool {
        let (ack, acked) = oneshot::channel();
        let link = self.link.map(|l| Box::new(l.clone()));
        let event = Event::Intent {
            line,
            step,
            link,
            ack,
        };
        self.sink.0.send(event).await.is_ok() && acked.await.is_ok()
    }

    async fn halt(&self, reason: String) {
        self.sink.halt(reason).await;
    }
}

/// How a row's processing ended.
pub(super) enum End {
    Done(Outcome, String),
    Pending,
}

impl From<Stopped> for End {
    fn from(_: Stopped) -> End {
        End::Pending
    }
}

/// Run row tasks for the rows the reader sends, at most enough to keep every slot busy while
/// others sleep in a backoff; when the run stops, rows still queued stay pending.
pub(super) async fn lane_loop(lane: Arc<Lane>, sink: EventSink, mut rx: mpsc::Receiver<Work>) {
    let lane = Arc::new(LaneCtx { lane, sink });
    let mut tasks = JoinSet::new();
    let max_tasks = lane.client.vendor.concurrency as usize * 2 + 2;
    loop {
        let work = tokio::select! {
            w = rx.recv() => w,
            _ = lane.stop.wait() => None,
        };
        let Some(work) = work else { break };
        while tasks.len() >= max_tasks {
            if let Some(Err(e)) = tasks.join_next().await {
                internal_failure(&lane.sink, &lane.stop, "a row task", e).await;
            }
        }
        tasks.spawn(process_row(lane.clone(), work));
    }
    rx.close();
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            internal_failure(&lane.sink, &lane.stop, "a row task", e).await;
        }
    }
}

/// A task of the run died (a bug): stop starting calls at once and make the run end as an
/// internal error, never as "complete".
pub(super) async fn internal_failure(
    sink: &EventSink,
    stop: &Stop,
    what: &str,
    error: tokio::task::JoinError,
) {
    stop.trigger();
    let what = format!("{what} failed: {}", join_error_text(error));
    sink.send(Event::Internal(what)).await;
}

pub fn join_error_text(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return "cancelled".into();
    }
    let payload = error.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map(|s| format!("panicked: {s}"))
        .unwrap_or_else(|| "panicked".into())
}

/// Fault injection for the tests of the internal-error path, in debug builds only:
/// `UNLINKER_TEST_FAULT=panic-row:LINE` panics the task of that row, `panic-recorder:N` the
/// consumer when it records its Nth row.
#[cfg(debug_assertions)]
pub(crate) fn test_fault(kind: &str) -> Option<u64> {
    std::env::var("UNLINKER_TEST_FAULT")
        .ok()?
        .strip_prefix(kind)?
        .strip_prefix(':')?
        .parse()
        .ok()
}

async fn process_row(lane: Arc<LaneCtx>, work: Work) {
    #[cfg(debug_assertions)]
    if test_fault("panic-row") == Some(work.line) {
        panic!("test fault in the task of line {}", work.line);
    }
    let mut log = CallLog::new(work.in_doubt.is_some());
    let wildcard = lane.client.vendor.adapter.is_wildcard(&work.row);
    let (end, links) = match (wildcard, lane.check) {
        (true, true) => wildcard::check(&lane, &work, &mut log).await,
        (true, false) => wildcard::drive(&lane, &work, &mut log).await,
        (false, true) => (check_row(&lane, &work, &mut log).await, 1),
        (false, false) => (drive_row(&lane, &work, &mut log, None).await, 1),
    };
    let event = match end {
        End::Pending => Event::Pending {
            line: work.line,
            sent: log.sent,
            in_doubt: log.in_doubt,
        },
        End::Done(outcome, message) => {
            let message = retried_message(work.failed_before.as_deref(), outcome, message);
            let request = log.request();
            Event::Row(
                Box::new(ReportRow {
                    line: work.line,
                    vendor: lane.client.name().to_string(),
                    key: work.row.key.0.clone(),
                    reference: work.reference.clone(),
                    outcome,
                    http_status: log.http_status,
                    vendor_code: log.vendor_code,
                    attempts: log.attempts,
                    elapsed_ms: log.started.elapsed().as_millis() as u64,
                    request_id: log.request_id,
                    request,
                    message: lane.client.secrets().scrub(&message),
                    finished_at: now_rfc3339(),
                }),
                RowNote {
                    after_lost: !wildcard && log.absent_after_lost && outcome == Outcome::Absent,
                    links: match outcome {
                        _ if wildcard => links,
                        Outcome::Unlinked | Outcome::DryRun => 1,
                        _ => 0,
                    },
                    reads: u64::from(wildcard),
                },
            )
        }
    };
    lane.sink.send(event).await;
}

/// A row re-attempted after `--retry-failed` says that it had failed before, and why, whatever
/// its new outcome (SPEC section 6); the report cuts the whole to its message limit.
fn retried_message(failed_before: Option<&str>, outcome: Outcome, message: String) -> String {
    match failed_before {
        None => message,
        Some(before) => {
            let now = if message.is_empty() {
                outcome.name()
            } else {
                &message
            };
            format!("failed before ({before}); now: {now}")
        }
    }
}

/// `--dry-run --check`: read the link's state; change nothing.
pub(super) async fn check_row(lane: &LaneCtx, work: &Work, log: &mut CallLog) -> End {
    let client = &lane.client;
    let adapter = &client.vendor.adapter;
    // Report the call a real run would send, not the read.
    let would_send = || {
        client
            .secrets()
            .scrub(&adapter.build(&work.row, 0, None).describe())
    };
    if !client.can_read() {
        log.show_only(would_send());
        return End::Done(
            Outcome::DryRun,
            format!(
                "would be sent; the current state could not be checked: {} has no read API",
                client.vendor.kind
            ),
        );
    }
    match read_state(lane, work, log).await {
        Err(Stopped) => End::Pending,
        Ok(v) => match v.class {
            Class::Present => {
                log.show_only(would_send());
                End::Done(Outcome::DryRun, "would be removed".into())
            }
            Class::Absent(m) => End::Done(Outcome::Absent, m),
            Class::Failed(m) => End::Done(Outcome::Failed, format!("read failed: {m}")),
            other => End::Done(
                Outcome::Failed,
                format!("read failed: unexpected answer class {}", other.name()),
            ),
        },
    }
}

/// One read of the row's link with its own retry budget.
pub(super) async fn read_state(
    lane: &LaneCtx,
    work: &Work,
    log: &mut CallLog,
) -> Result<Verdict, Stopped> {
    let mut budget = 0;
    let answered = lane
        .client
        .call(
            &lane.sink,
            work.line,
            &work.row,
            log,
            CallKind::Read,
            &mut budget,
        )
        .await?;
    match answered {
        Answered::Verdict(v) => Ok(v),
        // The client settles only steps.
        Answered::Lost(m) => Ok(Verdict::new(Class::Failed(m))),
    }
}

/// A row in flight at a crash: read the vendor's state before sending again. `Ok(note)` says
/// what the read found when the row goes on; `Err(end)` ends the row.
async fn settle_in_doubt(lane: &LaneCtx, work: &Work, log: &mut CallLog) -> Result<String, End> {
    let v = read_state(lane, work, log).await?;
    match v.class {
        Class::Present => Ok(
            "in doubt after an interruption; read-back showed the link still present, sent again"
                .into(),
        ),
        Class::Absent(m) => {
            log.in_doubt = false;
            Err(End::Done(
                Outcome::Absent,
                format!(
                    "settled by read-back after an interruption: the link no longer exists ({m})"
                ),
            ))
        }
        Class::Failed(m) => Err(End::Done(
            Outcome::Failed,
            format!("read-back of an in-doubt row failed: {m}"),
        )),
        _ => Err(End::Pending),
    }
}

/// Make a row's steps (or a wildcard row's link's: `link`), settling a row in doubt first.
pub(super) async fn drive_row(
    lane: &LaneCtx,
    work: &Work,
    log: &mut CallLog,
    link: Option<&Prepared>,
) -> End {
    let rec = Tagged {
        sink: &lane.sink,
        link,
    };
    let adapter = &lane.client.vendor.adapter;
    let steps = adapter.steps(&work.row);
    let mut step = work.start_step;
    let mut note = String::new();
    // In doubt at the first step that changes anything (a read-only step before it is made
    // again after the read): settle by read-back before sending again.
    let first_change = adapter.first_change(&work.row);
    if work.in_doubt == Some(first_change) && step <= first_change && lane.client.can_read() {
        match settle_in_doubt(lane, work, log).await {
            Ok(n) => note = n,
            Err(end) => return end,
        }
    }
    let resent_without_read = work.in_doubt.is_some() && note.is_empty();

    while step < steps {
        log.lost_answer = false;
        log.retried_answer = None;
        let verdict = match step_call(lane, &rec, work, log, step).await {
            Ok(Ok(v)) => v,
            Ok(Err((outcome, m))) => return End::Done(outcome, join(&note, &m)),
            Err(Stopped) => return End::Pending,
        };
        log.in_doubt = false;
        match verdict.class {
            Class::Unlinked => {
                // A read-only step is made again on a resume (it changed nothing).
                if steps > 1 && step + 1 < steps && !adapter.reads_only(&work.row, step) {
                    let line = work.line;
                    let link = link.map(|l| Box::new(l.clone()));
                    lane.sink.send(Event::StepDone { line, step, link }).await;
                }
                step += 1;
            }
            Class::Absent(m) if step == 0 => {
                let m = match &log.retried_answer {
                    Some(earlier) => format!(
                        "{m} (an earlier attempt was answered {earlier} and may have removed it)"
                    ),
                    None => m,
                };
                return End::Done(Outcome::Absent, join(&note, &m));
            }
            Class::Absent(m) => {
                note = join(&note, &format!("link removed; {m}"));
                step += 1;
            }
            Class::Failed(m) => {
                let mut message = if step > 0 {
                    format!("the link was removed, but step {} failed: {m}", step + 1)
                } else {
                    m
                };
                if log.lost_answer && step == 0 {
                    message.push_str(
                        " (an earlier attempt's answer was lost: the link may already be removed)",
                    );
                } else if resent_without_read {
                    message.push_str(" (this row was in doubt after an interruption and the vendor has no read API: the first attempt may already have removed the link)");
                }
                return End::Done(Outcome::Failed, join(&note, &message));
            }
            // The client resolves every other class itself.
            other => {
                return End::Done(
                    Outcome::Failed,
                    format!("unexpected answer class {}", other.name()),
                );
            }
        }
    }
    End::Done(Outcome::Unlinked, note)
}

/// One step of a row, with its retry budget, settling lost answers by read-back (SPEC section
/// 4, "Lost answers"). `Ok(Ok(verdict))` is the step's answer; `Ok(Err(outcome))` is the row's
/// outcome decided by a read-back.
async fn step_call(
    lane: &LaneCtx,
    rec: &Tagged<'_>,
    work: &Work,
    log: &mut CallLog,
    step: u8,
) -> Result<Result<Verdict, (Outcome, String)>, Stopped> {
    let client = &lane.client;
    let mut budget = 0u32;
    loop {
        let kind = CallKind::Step(step);
        let lost = match client
            .call(rec, work.line, &work.row, log, kind, &mut budget)
            .await?
        {
            Answered::Verdict(v) => return Ok(Ok(v)),
            Answered::Lost(m) => m,
        };
        // The read, and any resend, are calls of their own in the row's `request`.
        let read = read_state(lane, work, log).await?;
        match read.class {
            Class::Absent(_) => {
                log.in_doubt = false;
                log.absent_after_lost = true;
                let mut m = format!(
                    "the link no longer exists: the answer to an earlier attempt was lost ({lost}), so this run most likely removed it"
                );
                if step + 1 < client.vendor.adapter.steps(&work.row) {
                    m.push_str("; the follow-up step was not made");
                }
                return Ok(Err((Outcome::Absent, m)));
            }
            Class::Present => {
                // The lost attempt did not take effect: the row is no longer in doubt.
                log.in_doubt = false;
                log.lost_answer = false;
                if budget >= client.retry().max_attempts {
                    return Ok(Err((
                        Outcome::Failed,
                        format!(
                            "gave up after {}: {lost}; a read-back shows the link still present",
                            plural(budget, "attempt")
                        ),
                    )));
                }
                if !client.backoff(budget, work.line, &lost).await {
                    return Err(Stopped);
                }
            }
            Class::Failed(m) => {
                return Ok(Err((
                    Outcome::Failed,
                    format!(
                        "the answer to an attempt was lost ({lost}) and the read-back failed: {m}; the link may already be removed"
                    ),
                )));
            }
            _ => return Err(Stopped),
        }
    }
}

pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}
