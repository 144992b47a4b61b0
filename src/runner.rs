//! The pipeline: input rows → skip what is done → per-vendor lanes doing the calls → one consumer.
//!
//! A blocking reader thread streams the input, validates and de-duplicates rows, and hands each
//! valid pending row to its vendor's lane through a bounded channel. A lane runs a bounded set of
//! row tasks; every call a task makes goes through the vendor's [`Limiter`] and the same retry,
//! rate-limit and halt rules, whatever the vendor. A single consumer owns the report writer, the
//! checkpoint journal, the counters and the progress display: no locks around writers, and the
//! journal is written in one place, in order.
//!
//! Durability: before a call that may change state is sent, its *intent* is written to the
//! journal and handed to the OS; the row task waits for that acknowledgement. The consumer groups
//! whatever arrived together into one write, so this costs one `write(2)` per batch, not per row.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::adapter::{Class, Invalid, Prepared, Verdict, WireAnswer, WireRequest};
use crate::checkpoint::{self, Binding, Checkpoint, CheckpointError, Loaded, ReportStart};
use crate::dedupe::DuplicateIndex;
use crate::input::spool::{self, Spool};
use crate::input::{self, InputError, Source};
use crate::job::{Settings, VendorSettings};
use crate::limit::Limiter;
use crate::progress::Progress;
use crate::report::{Outcome, ReportRow, ReportWriter, now_rfc3339};
use crate::retry;
use crate::stop::Stop;
use crate::summary::{Summary, VendorSummary};

/// Rows buffered per vendor lane between the reader and the lane.
const LANE_QUEUE: usize = 4096;
/// How often the journal and report are fsynced (power-loss window).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Events handled per journal write.
const MAX_BATCH: usize = 512;
/// Bytes of an unexpected answer's body quoted in the halt message.
const UNEXPECTED_QUOTE: usize = 200;
/// Refresh a fetched token when this share of its lifetime has passed.
const TOKEN_REFRESH_SHARE: f64 = 0.9;
/// Longest token lifetime believed; a longer `expires_in` is refreshed after this anyway.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Per-run switches from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    /// With `dry_run`: read each row's state with the vendor's read API.
    pub check: bool,
    pub fresh: bool,
    pub retry_failed: bool,
    pub limit: Option<u64>,
    pub progress: bool,
}

/// Problems that stop a run before it can finish (exit 1, or 5 for the lock).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{what} {path}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "internal error: {0}. This is a bug in unlinker, not in the job. What was recorded stays recorded and rows without an outcome are pending or in doubt: the job is resumable, run it again"
    )]
    Internal(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Checkpoint(CheckpointError::Locked { .. }) => 5,
            // A signal while a pipe was being copied: stopped as asked (SPEC section 4).
            RunError::Input(InputError::Stopped { .. }) => 4,
            _ => 1,
        }
    }
}

/// Triggers the stop flag when dropped.
struct StopOnDrop(Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// A valid, pending row on its way to a lane.
struct Work {
    line: u64,
    row: Prepared,
    /// Steps already completed in an earlier run.
    start_step: u8,
    /// The step whose call was in flight when an earlier run stopped without recording it.
    in_doubt: Option<u8>,
}

enum Event {
    /// A state-changing call is about to be sent; ack once the journal has it.
    Intent {
        line: u64,
        step: u8,
        ack: oneshot::Sender<()>,
    },
    StepDone {
        line: u64,
        step: u8,
    },
    /// The row ends this run without an outcome. `in_doubt`: a call may have taken effect.
    Pending {
        line: u64,
        sent: bool,
        in_doubt: bool,
    },
    /// A row's outcome; `true` when it is `absent` by a read-back after a lost answer.
    Row(Box<ReportRow>, bool),
    Halt(String),
    /// A task of the run failed (a bug): stop, record what arrived, end as an internal error.
    Internal(String),
    InputDone {
        more_pending: bool,
    },
    Fatal(InputError),
}

struct Token {
    value: String,
    refresh_at: Instant,
    /// Fetched because the previous token was refused: a refusal of this one halts.
    after_refusal: bool,
}

struct Lane {
    vendor: VendorSettings,
    limiter: Arc<Limiter>,
    token: tokio::sync::Mutex<Option<Token>>,
    /// Bumped whenever the shared token is dropped, so calls holding an older one re-read it.
    token_generation: AtomicU64,
    /// The next token fetch replaces a refused token.
    refetch_after_refusal: std::sync::atomic::AtomicBool,
    /// Token fetches that failed in a row.
    token_failures: std::sync::atomic::AtomicU32,
}

struct Ctx {
    http: reqwest::Client,
    settings: Arc<Settings>,
    stop: Stop,
    events: mpsc::Sender<Event>,
    check: bool,
}

/// How a row's processing ended.
enum End {
    Done(Outcome, String),
    Pending,
}

/// What one row accumulates over its calls, for its report row.
struct RowState {
    started: Instant,
    attempts: u32,
    http_status: Option<u16>,
    vendor_code: Option<String>,
    request_id: Option<String>,
    request: String,
    sent: bool,
    /// A state-changing call was sent and its effect is unknown.
    in_doubt: bool,
    rate_limit_wait: Duration,
    /// An attempt of the current step was sent and its answer lost.
    lost_answer: bool,
    /// An attempt of the current step got a retryable answer (5xx, 408, ...): it may have acted.
    retried_answer: Option<String>,
    /// The row ended `absent` by a read-back after a lost answer (counted apart).
    absent_after_lost: bool,
}

/// Run (or resume) a job. `stop` is triggered from outside on SIGINT/SIGTERM.
pub async fn run(
    mut settings: Settings,
    opts: RunOptions,
    stop: Stop,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    // However this function ends (an error, a panic in the recorder), the senders stop: nothing
    // is sent that could not be recorded.
    let _stop_on_exit = StopOnDrop(stop.clone());
    let mut spool = spool_input(&mut settings, opts.dry_run, &stop).await?;
    let settings = Arc::new(settings);

    // Path safety (SPEC section 6): no symbolic links, no two roles on one file.
    settings.check_paths(opts.dry_run).map_err(|e| {
        io_err(
            "refusing to run job",
            &settings.job_path,
            std::io::Error::other(e),
        )
    })?;
    ensure_parent(&settings.report, "cannot create the report folder")?;

    // Checkpoint and report (a dry run touches neither the checkpoint nor the real report).
    let (mut journal, loaded, mut report) = if opts.dry_run {
        let report = ReportWriter::create(&settings.report, settings.report_format)
            .map_err(|e| io_err("cannot write report", &settings.report, e))?;
        (None, Loaded::default(), report)
    } else {
        let (mut journal, mut loaded) = open_checkpoint(&settings, opts.fresh, spool.as_mut())?;
        if opts.retry_failed {
            let n = journal
                .forget_failed(&mut loaded)
                .map_err(|e| io_err("cannot write checkpoint", &settings.checkpoint, e))?;
            tracing::info!("--retry-failed: {n} failed rows will be attempted again");
        }
        let (report, start) =
            journal.open_report(&loaded, &settings.report, settings.report_format)?;
        match start {
            ReportStart::Created => {}
            ReportStart::Continued { cut: 0 } => {
                tracing::info!("resuming: {} rows already recorded", loaded.rows_recorded());
            }
            ReportStart::Continued { cut } => tracing::info!(
                "resuming: {} rows already recorded; cut {cut} bytes of unrecorded rows from the report",
                loaded.rows_recorded()
            ),
            ReportStart::Rebuilt => {
                tracing::info!(
                    "rebuilt the report {} from the checkpoint",
                    settings.report.display()
                );
            }
        }
        let in_doubt = loaded.in_doubt().count();
        if in_doubt > 0 {
            tracing::info!(
                "{in_doubt} rows are in doubt (in flight when the last run stopped): settling them first"
            );
        }
        (Some(journal), loaded, report)
    };
    let previous: BTreeMap<Outcome, u64> = loaded.counts();
    let loaded = Arc::new(loaded);

    let total_rows = Arc::new(AtomicU64::new(u64::MAX));

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.retry.timeout)
        .connect_timeout(settings.retry.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("unlinker/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is static and valid");

    let lanes: Vec<Arc<Lane>> = settings
        .vendors
        .iter()
        .map(|v| {
            Arc::new(Lane {
                limiter: Arc::new(Limiter::new(
                    v.rate,
                    v.burst,
                    v.concurrency,
                    settings.retry.max_delay,
                )),
                vendor: VendorSettings {
                    name: v.name.clone(),
                    kind: v.kind,
                    adapter: v.adapter.clone(),
                    base_url: v.base_url.clone(),
                    rate: v.rate,
                    burst: v.burst,
                    concurrency: v.concurrency,
                },
                token: tokio::sync::Mutex::new(None),
                token_generation: AtomicU64::new(0),
                refetch_after_refusal: std::sync::atomic::AtomicBool::new(false),
                token_failures: std::sync::atomic::AtomicU32::new(0),
            })
        })
        .collect();

    let (events_tx, mut events_rx) = mpsc::channel::<Event>(MAX_BATCH * 4);
    let ctx = Arc::new(Ctx {
        http,
        settings: settings.clone(),
        stop: stop.clone(),
        events: events_tx.clone(),
        check: opts.check,
    });

    // Lanes.
    let mut lane_txs = Vec::new();
    let mut lane_tasks = JoinSet::new();
    for lane in &lanes {
        let (tx, rx) = mpsc::channel::<Work>(LANE_QUEUE);
        lane_txs.push(tx);
        lane_tasks.spawn(lane_loop(ctx.clone(), lane.clone(), rx));
    }

    // Reader.
    {
        let settings = settings.clone();
        let loaded = loaded.clone();
        let stop = stop.clone();
        let events = events_tx.clone();
        // A checking dry run sends rows to the lanes, which only read.
        let dry_run = opts.dry_run && !opts.check;
        let limit = opts.limit;
        let total = total_rows.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let reader = Reader {
                settings: &settings,
                loaded: &loaded,
                stop: &stop,
                events: &events,
                total: &total,
            };
            reader.run(lane_txs, dry_run, limit)
        });
        let events = events_tx.clone();
        let stop = ctx.stop.clone();
        tokio::spawn(async move {
            if let Err(e) = reader.await {
                stop.trigger();
                let what = format!("the input reader failed: {}", join_error_text(e));
                let _ = events.send(Event::Internal(what)).await;
            }
        });
    }
    drop(events_tx);
    // The lanes' senders live in `ctx`; let go of ours once the lanes are done.
    let lanes_done = tokio::spawn(async move {
        while let Some(result) = lane_tasks.join_next().await {
            if let Err(e) = result {
                internal_failure(&ctx, "a vendor lane", e).await;
            }
        }
        drop(ctx);
    });

    // Consumer.
    let mut progress = Progress::new(
        opts.progress,
        total_rows.clone(),
        lanes.iter().map(|l| l.limiter.clone()).collect(),
    );
    let mut counts: BTreeMap<Outcome, u64> = BTreeMap::new();
    let mut would_send: BTreeMap<String, u64> = BTreeMap::new();
    let mut pending_this_run = 0u64;
    let mut consecutive_failures = 0u32;
    let mut halt: Option<String> = None;
    let mut fatal: Option<InputError> = None;
    let mut internal: Option<String> = None;
    let mut absent_after_lost = 0u64;
    let mut input_done = false;
    let mut more_pending = false;
    let mut last_sync = Instant::now();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut batch: Vec<Event> = Vec::with_capacity(MAX_BATCH);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            n = events_rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
            }
            _ = tick.tick() => {
                progress.tick();
                // At most once a second: the checkpoint must still be the file at its path.
                if let Some(j) = journal.as_mut() {
                    j.watch().map_err(|e| io_err("stopping: checkpoint", &settings.checkpoint, e))?;
                }
                continue;
            }
        }
        for event in batch.drain(..) {
            match event {
                Event::Intent { line, step, ack } => {
                    if let Some(j) = journal.as_mut() {
                        j.intent(line, step).map_err(|e| {
                            io_err("cannot write checkpoint", &settings.checkpoint, e)
                        })?;
                    }
                    acks.push(ack);
                }
                Event::StepDone { line, step } => {
                    if let Some(j) = journal.as_mut() {
                        j.step_done(line, step).map_err(|e| {
                            io_err("cannot write checkpoint", &settings.checkpoint, e)
                        })?;
                    }
                }
                Event::Pending {
                    line,
                    sent,
                    in_doubt,
                } => {
                    pending_this_run += 1;
                    if sent
                        && !in_doubt
                        && let Some(j) = journal.as_mut()
                    {
                        j.settled(line).map_err(|e| {
                            io_err("cannot write checkpoint", &settings.checkpoint, e)
                        })?;
                    }
                }
                Event::Row(row, after_lost) => {
                    #[cfg(debug_assertions)]
                    if test_fault("panic-recorder") == Some(counts.values().sum::<u64>() + 1) {
                        panic!("test fault in the recorder");
                    }
                    absent_after_lost += u64::from(after_lost);
                    if after_lost && let Some(j) = journal.as_mut() {
                        j.lost_answer(row.line).map_err(|e| {
                            io_err("cannot write checkpoint", &settings.checkpoint, e)
                        })?;
                    }
                    report
                        .write(&row)
                        .map_err(|e| io_err("cannot write report", &settings.report, e))?;
                    if let Some(j) = journal.as_mut() {
                        j.outcome(&row, report.len()).map_err(|e| {
                            io_err("cannot write checkpoint", &settings.checkpoint, e)
                        })?;
                    }
                    *counts.entry(row.outcome).or_default() += 1;
                    if row.outcome == Outcome::DryRun {
                        *would_send.entry(row.vendor.clone()).or_default() += 1;
                    }
                    progress.row(row.outcome);
                    match row.outcome {
                        Outcome::Failed => {
                            consecutive_failures += 1;
                            let max = settings.max_consecutive_failures;
                            if max > 0 && consecutive_failures >= max && halt.is_none() {
                                let reason = format!(
                                    "{consecutive_failures} consecutive rows failed (halt.max_consecutive_failures = {max}); last: line {}: {}",
                                    row.line, row.message
                                );
                                tracing::error!("halting: {reason}");
                                halt = Some(reason);
                                stop.trigger();
                            }
                        }
                        Outcome::Unlinked | Outcome::Absent => consecutive_failures = 0,
                        _ => {}
                    }
                }
                Event::Halt(reason) => {
                    if halt.is_none() {
                        tracing::error!("halting: {reason}");
                        halt = Some(reason);
                    }
                    stop.trigger();
                }
                Event::InputDone { more_pending: more } => {
                    input_done = true;
                    more_pending = more;
                }
                Event::Fatal(e) => {
                    stop.trigger();
                    fatal = Some(e);
                }
                Event::Internal(what) => {
                    stop.trigger();
                    tracing::error!("internal error: {what}");
                    internal.get_or_insert(what);
                }
            }
        }
        // Group commit: report first, then the journal that points into it.
        report
            .flush()
            .map_err(|e| io_err("cannot write report", &settings.report, e))?;
        if let Some(j) = journal.as_mut() {
            j.flush()
                .map_err(|e| io_err("cannot write checkpoint", &settings.checkpoint, e))?;
            if last_sync.elapsed() >= SYNC_INTERVAL {
                // An fsync can take a while on a slow disk: let the runtime move the other
                // tasks (the calls in flight) to another thread meanwhile.
                blocking(|| {
                    report
                        .sync()
                        .map_err(|e| io_err("cannot write report", &settings.report, e))?;
                    j.sync()
                        .map_err(|e| io_err("cannot write checkpoint", &settings.checkpoint, e))
                })?;
                last_sync = Instant::now();
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        progress.tick();
    }
    let _ = lanes_done.await;
    report
        .sync()
        .map_err(|e| io_err("cannot write report", &settings.report, e))?;
    if let Some(j) = journal.as_mut() {
        j.sync()
            .map_err(|e| io_err("cannot write checkpoint", &settings.checkpoint, e))?;
    }
    progress.finish();
    if let Some(what) = internal {
        return Err(RunError::Internal(what));
    }
    if let Some(e) = fatal {
        return Err(e.into());
    }

    let complete = input_done && !more_pending && pending_this_run == 0;
    let mut cumulative = previous.clone();
    for (o, n) in &counts {
        *cumulative.entry(*o).or_default() += n;
    }
    let recorded: u64 = cumulative.values().sum();
    let total = match total_rows.load(Ordering::Relaxed) {
        u64::MAX if complete => recorded,
        u64::MAX => recorded + pending_this_run,
        n => n,
    };
    let elapsed = started.elapsed();
    let vendors = lanes
        .iter()
        .map(|l| {
            let requests = l.limiter.requests();
            (
                l.vendor.name.clone(),
                VendorSummary {
                    requests,
                    requests_per_s: requests as f64 / elapsed.as_secs_f64().max(1e-3),
                    rate_limited: l.limiter.rate_limited(),
                },
            )
        })
        .collect();
    let halted = halt.is_some() && !complete;
    let stopped = if complete {
        None
    } else if let Some(h) = halt {
        Some(h)
    } else if more_pending && !stop.is_set() {
        Some(format!("stopped after --limit {}", opts.limit.unwrap_or(0)))
    } else {
        Some("interrupted".to_string())
    };
    let estimate = if opts.check {
        lanes
            .iter()
            .map(|l| {
                let rows = would_send.get(&l.vendor.name).copied().unwrap_or(0);
                (
                    l.vendor.name.clone(),
                    crate::summary::Estimate::new(rows, &l.vendor),
                )
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let sent_this_run: u64 = lanes.iter().map(|l| l.limiter.requests()).sum();
    let already_complete = complete
        && counts.values().sum::<u64>() == 0
        && sent_this_run == 0
        && recorded > 0
        && !opts.dry_run;
    Ok(Summary {
        job: settings.name.clone(),
        dry_run: opts.dry_run,
        report: settings.report.clone(),
        counts: cumulative,
        this_run: counts,
        pending: total.saturating_sub(recorded),
        total_rows: total,
        elapsed,
        vendors,
        complete,
        already_complete,
        stopped,
        halted,
        absent_after_lost_answer: absent_after_lost,
        estimate,
    })
}

/// Create the folder `path` goes in, if it has one.
fn ensure_parent(path: &std::path::Path, what: &'static str) -> Result<(), RunError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| io_err(what, parent, e)),
        None => Ok(()),
    }
}

fn io_err(what: &'static str, path: &std::path::Path, error: std::io::Error) -> RunError {
    RunError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

/// Copy an input that can be read only once (stdin, a pipe, a FIFO) into a private spool file and
/// point the settings at the copy: the run, its checkpoint binding and every resume read only that
/// (SPEC section 3; [`input::spool`]). A real run's copy replaces the kept one only once the
/// checkpoint accepts it ([`open_checkpoint`]); a dry run's is removed when the run ends.
async fn spool_input(
    settings: &mut Settings,
    dry_run: bool,
    stop: &Stop,
) -> Result<Option<Spool>, RunError> {
    if !spool::needs_spool(&settings.input.source) {
        return Ok(None);
    }
    let place = if dry_run {
        spool::Place::DryRun(&settings.report)
    } else {
        spool::Place::Checkpoint(&settings.checkpoint)
    };
    let copy = spool::spool(&settings.input.source, place, stop).await?;
    settings.input.source = Source::File(copy.path().to_path_buf());
    Ok(Some(copy))
}

/// Open (or create) the checkpoint, bound to the job and the input's content: the spooled copy's
/// hash when the input was spooled, which then becomes the kept copy.
fn open_checkpoint(
    settings: &Settings,
    fresh: bool,
    spool: Option<&mut Spool>,
) -> Result<(Checkpoint, Loaded), RunError> {
    ensure_parent(&settings.checkpoint, "cannot create the checkpoint folder")?;
    let open_err = |path: &std::path::Path, error| InputError::Open {
        source_name: path.display().to_string(),
        error,
    };
    let (input_hash, input_len) = match (&spool, &settings.input.source) {
        (Some(copy), _) => (copy.hash, copy.len),
        (None, Source::File(path)) => {
            let len = std::fs::metadata(path)
                .map_err(|e| open_err(path, e))?
                .len();
            let hash = input::content_hash(path).map_err(|e| open_err(path, e))?;
            (hash, len)
        }
        // Not reached: `spool_input` copies stdin first. Bound to the job name only.
        (None, Source::Stdin) => (0, u64::from(u32::MAX)),
    };
    let binding = Binding {
        job: settings.name.clone(),
        input_hash,
        input_len,
    };
    let opened = if fresh {
        let (journal, loaded, archived) =
            Checkpoint::open_fresh(&settings.checkpoint, &binding, Some(&settings.report))?;
        for path in archived {
            tracing::info!("--fresh: kept the old file as {}", path.display());
        }
        (journal, loaded)
    } else {
        Checkpoint::open(&settings.checkpoint, &binding)?
    };
    // Accepted: this copy is the input from now on. (Refused, the copy is dropped, and removed.)
    if let Some(copy) = spool {
        copy.commit()
            .map_err(|e| io_err("cannot keep the input copy", copy.path(), e))?;
    }
    Ok(opened)
}

/// The reader thread's borrowed context.
struct Reader<'a> {
    settings: &'a Settings,
    loaded: &'a Loaded,
    stop: &'a Stop,
    events: &'a mpsc::Sender<Event>,
    /// Rows in the input, once counted (for progress and the summary).
    total: &'a Arc<AtomicU64>,
}

impl Reader<'_> {
    /// Count the input's rows on a thread of its own. Started only once the first row is on its
    /// way: counting competes for the CPU with the pass that skips a resumed job's done rows.
    fn start_counting(&self) {
        // Never a second reader of a pipe (the run reads a spooled copy of one anyway).
        if !spool::needs_spool(&self.settings.input.source) {
            let spec = self.settings.input.clone();
            let total = self.total.clone();
            std::thread::spawn(move || {
                if let Ok(records) = input::open(&spec) {
                    let n = records.take_while(|r| r.is_ok()).count() as u64;
                    total.store(n, Ordering::Relaxed);
                }
            });
        }
    }

    /// Stream records, validate, de-duplicate, skip recorded rows, dispatch.
    fn run(&self, lanes: Vec<mpsc::Sender<Work>>, dry_run: bool, limit: Option<u64>) {
        let Reader {
            settings,
            loaded,
            stop,
            events,
            ..
        } = *self;
        let mut counting = false;
        let records = match input::open(&settings.input) {
            Ok(r) => r,
            Err(e) => {
                let _ = events.blocking_send(Event::Fatal(e));
                return;
            }
        };
        let mut seen = DuplicateIndex::new();
        let mut dispatched = 0u64;
        let mut more_pending = false;
        for record in records {
            if stop.is_set() {
                return;
            }
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let _ = events.blocking_send(Event::Fatal(e));
                    return;
                }
            };
            let line = record.line;
            let recorded = loaded.outcome(line).is_some();
            let classified = classify_record(settings, record.fields);
            // Register keys even for recorded rows, so a later duplicate of them is still found.
            let classified = match classified {
                Ok((lane, row)) => {
                    match seen.insert(&settings.vendors[lane].name, &row.key.0, line) {
                        Some(first) => Err((
                            Some(lane),
                            Some(row),
                            format!("same vendor and key as line {first}"),
                            Outcome::Duplicate,
                        )),
                        None => Ok((lane, row)),
                    }
                }
                Err((lane, invalid)) => Err((lane, None, invalid.to_string(), Outcome::Invalid)),
            };
            if recorded {
                continue;
            }
            if limit.is_some_and(|n| dispatched >= n) {
                more_pending = true;
                break;
            }
            let event = match classified {
                Err((lane, row, message, outcome)) => Event::Row(
                    Box::new(unsent_row(
                        settings,
                        line,
                        lane,
                        row.as_ref(),
                        outcome,
                        message,
                    )),
                    false,
                ),
                Ok((lane, row)) if dry_run => {
                    dispatched += 1;
                    let request = settings.secrets.scrub(
                        &settings.vendors[lane]
                            .adapter
                            .build(&row, 0, None)
                            .describe(),
                    );
                    let mut r = unsent_row(
                        settings,
                        line,
                        Some(lane),
                        Some(&row),
                        Outcome::DryRun,
                        String::new(),
                    );
                    r.request = request;
                    Event::Row(Box::new(r), false)
                }
                Ok((lane, row)) => {
                    dispatched += 1;
                    if !counting {
                        counting = true;
                        self.start_counting();
                    }
                    let work = Work {
                        line,
                        start_step: loaded.steps_done(line),
                        in_doubt: loaded.is_in_doubt(line),
                        row,
                    };
                    if lanes[lane].blocking_send(work).is_err() {
                        return; // the lane stopped: the run is stopping
                    }
                    continue;
                }
            };
            if events.blocking_send(event).is_err() {
                return;
            }
        }
        if !counting {
            self.start_counting();
        }
        let _ = events.blocking_send(Event::InputDone { more_pending });
    }
}

type Classified = Result<(usize, Prepared), (Option<usize>, Invalid)>;

/// Route a record to its vendor and let the adapter validate it.
fn classify_record(settings: &Settings, fields: Result<crate::row::Fields, Invalid>) -> Classified {
    let fields = fields.map_err(|i| (None, i))?;
    let lane = if settings.vendors.len() == 1 {
        0
    } else {
        let names: Vec<&str> = settings.vendors.iter().map(|v| v.name.as_str()).collect();
        match fields.get("vendor") {
            None => {
                return Err((
                    None,
                    Invalid::new(
                        "vendor",
                        format!("is required: one of {}", names.join(", ")),
                    ),
                ));
            }
            Some(name) => settings.vendor_index(name).ok_or_else(|| {
                (
                    None,
                    Invalid::new(
                        "vendor",
                        format!(
                            "`{name}` is not a vendor of this job: one of {}",
                            names.join(", ")
                        ),
                    ),
                )
            })?,
        }
    };
    let row = settings.vendors[lane]
        .adapter
        .prepare(&fields)
        .map_err(|i| (Some(lane), i))?;
    Ok((lane, row))
}

/// A report row for a row that was not sent.
fn unsent_row(
    settings: &Settings,
    line: u64,
    lane: Option<usize>,
    row: Option<&Prepared>,
    outcome: Outcome,
    message: String,
) -> ReportRow {
    ReportRow {
        line,
        vendor: lane
            .map(|l| settings.vendors[l].name.clone())
            .unwrap_or_default(),
        key: row.map(|r| r.key.0.clone()).unwrap_or_default(),
        reference: String::new(),
        outcome,
        http_status: None,
        vendor_code: None,
        attempts: 0,
        elapsed_ms: 0,
        request_id: None,
        request: String::new(),
        message: settings.secrets.scrub(&message),
        finished_at: now_rfc3339(),
    }
}

async fn lane_loop(ctx: Arc<Ctx>, lane: Arc<Lane>, mut rx: mpsc::Receiver<Work>) {
    let mut tasks = JoinSet::new();
    // Enough row tasks to keep every slot busy while others sleep in a backoff.
    let max_tasks = lane.vendor.concurrency as usize * 2 + 2;
    loop {
        let work = tokio::select! {
            w = rx.recv() => w,
            _ = ctx.stop.wait() => None,
        };
        let Some(work) = work else { break };
        while tasks.len() >= max_tasks {
            if let Some(Err(e)) = tasks.join_next().await {
                internal_failure(&ctx, "a row task", e).await;
            }
        }
        tasks.spawn(process_row(ctx.clone(), lane.clone(), work));
    }
    // Rows still queued stay pending: they were never sent.
    rx.close();
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            internal_failure(&ctx, "a row task", e).await;
        }
    }
}

/// A task of the run died (a bug): stop starting calls at once and make the run end as an
/// internal error, never as "complete".
async fn internal_failure(ctx: &Ctx, what: &str, error: tokio::task::JoinError) {
    ctx.stop.trigger();
    let _ = ctx
        .events
        .send(Event::Internal(format!(
            "{what} failed: {}",
            join_error_text(error)
        )))
        .await;
}

pub(crate) fn join_error_text(error: tokio::task::JoinError) -> String {
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

async fn process_row(ctx: Arc<Ctx>, lane: Arc<Lane>, work: Work) {
    #[cfg(debug_assertions)]
    if test_fault("panic-row") == Some(work.line) {
        panic!("test fault in the task of line {}", work.line);
    }
    let mut st = RowState {
        started: Instant::now(),
        attempts: 0,
        http_status: None,
        vendor_code: None,
        request_id: None,
        request: String::new(),
        sent: false,
        in_doubt: work.in_doubt.is_some(),
        rate_limit_wait: Duration::ZERO,
        lost_answer: false,
        retried_answer: None,
        absent_after_lost: false,
    };
    let end = if ctx.check {
        check_row(&ctx, &lane, &work, &mut st).await
    } else {
        drive_row(&ctx, &lane, &work, &mut st).await
    };
    let event = match end {
        End::Pending => Event::Pending {
            line: work.line,
            sent: st.sent,
            in_doubt: st.in_doubt,
        },
        End::Done(outcome, message) => Event::Row(
            Box::new(ReportRow {
                line: work.line,
                vendor: lane.vendor.name.clone(),
                key: work.row.key.0.clone(),
                reference: String::new(),
                outcome,
                http_status: st.http_status,
                vendor_code: st.vendor_code,
                attempts: st.attempts,
                elapsed_ms: st.started.elapsed().as_millis() as u64,
                request_id: st.request_id,
                request: st.request,
                message: ctx.settings.secrets.scrub(&message),
                finished_at: now_rfc3339(),
            }),
            st.absent_after_lost && outcome == Outcome::Absent,
        ),
    };
    let _ = ctx.events.send(event).await;
}

/// Which call of a row to make.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Step(u8),
    Read,
}

/// What one logical call came to.
enum Answered {
    /// A final verdict: `Unlinked`, `Present`, `Absent` or `Failed`.
    Verdict(Verdict),
    /// A first step's answer was lost and the vendor has a read API: the caller settles the row
    /// by read-back before anything is sent again. The string describes the loss.
    Lost(String),
}

/// `--dry-run --check`: read the link's state; change nothing.
async fn check_row(ctx: &Ctx, lane: &Lane, work: &Work, st: &mut RowState) -> End {
    let adapter = &lane.vendor.adapter;
    if adapter.read(&work.row, None).is_none() {
        st.request = ctx
            .settings
            .secrets
            .scrub(&adapter.build(&work.row, 0, None).describe());
        return End::Done(
            Outcome::DryRun,
            format!(
                "would be sent; the current state could not be checked: {} has no read API",
                lane.vendor.kind
            ),
        );
    }
    match read_state(ctx, lane, work, st).await {
        Err(end) => end,
        Ok(v) => match v.class {
            Class::Present => {
                // Report the call a real run would send, not the read.
                st.request = ctx
                    .settings
                    .secrets
                    .scrub(&adapter.build(&work.row, 0, None).describe());
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
async fn read_state(
    ctx: &Ctx,
    lane: &Lane,
    work: &Work,
    st: &mut RowState,
) -> Result<Verdict, End> {
    let mut budget = 0;
    match call(ctx, lane, work, st, CallKind::Read, &mut budget).await? {
        Answered::Verdict(v) => Ok(v),
        // `call` settles only steps.
        Answered::Lost(m) => Ok(Verdict::new(Class::Failed(m))),
    }
}

async fn drive_row(ctx: &Ctx, lane: &Lane, work: &Work, st: &mut RowState) -> End {
    let adapter = &lane.vendor.adapter;
    let steps = adapter.steps(&work.row);
    let mut step = work.start_step;
    let mut note = String::new();

    // A row in flight at a crash: read the vendor's state before sending again.
    if work.in_doubt == Some(0) && step == 0 && adapter.read(&work.row, None).is_some() {
        match read_state(ctx, lane, work, st).await {
            Err(end) => return end,
            Ok(v) => match v.class {
                Class::Present => note = "in doubt after an interruption; read-back showed the link still present, sent again".into(),
                Class::Absent(m) => {
                    st.in_doubt = false;
                    return End::Done(
                        Outcome::Absent,
                        format!("settled by read-back after an interruption: the link no longer exists ({m})"),
                    );
                }
                Class::Failed(m) => return End::Done(Outcome::Failed, format!("read-back of an in-doubt row failed: {m}")),
                _ => return End::Pending,
            },
        }
    }
    let resent_without_read = work.in_doubt.is_some() && note.is_empty();

    while step < steps {
        st.lost_answer = false;
        st.retried_answer = None;
        let verdict = match step_call(ctx, lane, work, st, step).await {
            Ok(Ok(v)) => v,
            Ok(Err(done)) => return join_end(&note, done),
            Err(end) => return end,
        };
        st.in_doubt = false;
        match verdict.class {
            Class::Unlinked => {
                if steps > 1 && step + 1 < steps {
                    let _ = ctx
                        .events
                        .send(Event::StepDone {
                            line: work.line,
                            step,
                        })
                        .await;
                }
                step += 1;
            }
            Class::Absent(m) if step == 0 => {
                let m = match &st.retried_answer {
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
                if st.lost_answer && step == 0 {
                    message.push_str(
                        " (an earlier attempt's answer was lost: the link may already be removed)",
                    );
                } else if resent_without_read {
                    message.push_str(" (this row was in doubt after an interruption and the vendor has no read API: the first attempt may already have removed the link)");
                }
                return End::Done(Outcome::Failed, join(&note, &message));
            }
            // `call` resolves every other class itself.
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

fn join_end(note: &str, done: (Outcome, String)) -> End {
    End::Done(done.0, join(note, &done.1))
}

/// One step of a row, with its retry budget, settling lost answers by read-back (SPEC section
/// 4, "Lost answers"). `Ok(Ok(verdict))` is the step's answer; `Ok(Err(outcome))` is the row's
/// outcome decided by a read-back.
async fn step_call(
    ctx: &Ctx,
    lane: &Lane,
    work: &Work,
    st: &mut RowState,
    step: u8,
) -> Result<Result<Verdict, (Outcome, String)>, End> {
    let retry = &ctx.settings.retry;
    let mut budget = 0u32;
    loop {
        let lost = match call(ctx, lane, work, st, CallKind::Step(step), &mut budget).await? {
            Answered::Verdict(v) => return Ok(Ok(v)),
            Answered::Lost(m) => m,
        };
        let sent = st.request.clone();
        let read = read_state(ctx, lane, work, st).await?;
        st.request = format!("{sent} ; {}", st.request);
        match read.class {
            Class::Absent(_) => {
                st.in_doubt = false;
                st.absent_after_lost = true;
                let mut m = format!(
                    "the link no longer exists: the answer to an earlier attempt was lost ({lost}), so this run most likely removed it"
                );
                if lane.vendor.adapter.steps(&work.row) > 1 {
                    m.push_str("; the follow-up step was not made");
                }
                return Ok(Err((Outcome::Absent, m)));
            }
            Class::Present => {
                // The lost attempt did not take effect: the row is no longer in doubt.
                st.in_doubt = false;
                st.lost_answer = false;
                if budget >= retry.max_attempts {
                    return Ok(Err((
                        Outcome::Failed,
                        format!(
                            "gave up after {}: {lost}; a read-back shows the link still present",
                            plural(budget, "attempt")
                        ),
                    )));
                }
                let wait = retry::backoff_random(budget, retry.base_delay, retry.max_delay);
                if !ctx.stop.sleep(wait).await {
                    return Err(End::Pending);
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
            _ => return Err(End::Pending),
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

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}

/// Make one logical call of a row (a step or a read), with retries, rate-limit pauses and
/// re-authentication, counting attempts in `budget`. Returns the final verdict, a lost answer
/// to be settled by the caller, or `Err(End::Pending)` when the run is stopping or halting.
async fn call(
    ctx: &Ctx,
    lane: &Lane,
    work: &Work,
    st: &mut RowState,
    kind: CallKind,
    budget: &mut u32,
) -> Result<Answered, End> {
    let adapter = &lane.vendor.adapter;
    let retry = &ctx.settings.retry;
    let name = &lane.vendor.name;
    // A lost answer to a first step is settled by read-back where the vendor can read.
    let settles = kind == CallKind::Step(0) && adapter.read(&work.row, None).is_some();
    let mut reauthed = false;
    loop {
        if ctx.stop.is_set() {
            return Err(End::Pending);
        }
        let Some(permit) = lane.limiter.acquire(&ctx.stop).await else {
            return Err(End::Pending);
        };
        // The token is read only now that the call may go: a call that waited for its slot
        // never sends a token that expired or was refused meanwhile.
        let generation = lane.token_generation.load(Ordering::Acquire);
        let token = match current_token(lane).await {
            TokenState::NotUsed => None,
            TokenState::Valid(t) => Some(t),
            TokenState::Missing => {
                // This slot is spent on fetching the token; the call takes the next one.
                fetch_token(ctx, lane, permit).await?;
                continue;
            }
        };
        let request = match kind {
            CallKind::Step(s) => adapter.build(&work.row, s, token.as_deref()),
            CallKind::Read => match adapter.read(&work.row, token.as_deref()) {
                Some(r) => r,
                None => {
                    return Ok(Answered::Verdict(Verdict::new(Class::Failed(
                        "this vendor has no read API".into(),
                    ))));
                }
            },
        };
        st.request = ctx.settings.secrets.scrub(&request.describe());
        let doubt_before = st.in_doubt;
        if let CallKind::Step(step) = kind {
            let (ack, acked) = oneshot::channel();
            if ctx
                .events
                .send(Event::Intent {
                    line: work.line,
                    step,
                    ack,
                })
                .await
                .is_err()
                || acked.await.is_err()
            {
                return Err(End::Pending);
            }
            st.in_doubt = true;
        }
        st.sent = true;
        st.attempts += 1;
        *budget += 1;
        let answer = send(&ctx.http, &request).await;
        // The slot is held until the answer is handled, so a refusal or a rate-limit pause takes
        // effect before the next call in line can go.
        let mut unexpected_detail = String::new();
        let verdict = match answer {
            Ok(Received::Answer(answer)) => {
                st.http_status = Some(answer.status);
                let v = match kind {
                    CallKind::Step(s) => adapter.classify(&work.row, s, &answer),
                    CallKind::Read => adapter.classify_read(&work.row, &answer),
                };
                if let Class::Unexpected(what) = &v.class {
                    unexpected_detail = describe_unexpected(&answer, what, &ctx.settings.secrets);
                }
                st.vendor_code = v.vendor_code.clone();
                if v.request_id.is_some() {
                    st.request_id = v.request_id.clone();
                }
                v
            }
            Ok(Received::TooLarge(head)) => {
                st.http_status = Some(head.status);
                unexpected_detail = describe_unexpected(
                    &head,
                    "the body is longer than 1 MiB",
                    &ctx.settings.secrets,
                );
                Verdict::new(Class::Unexpected(String::new()))
            }
            Err(TransportError::NeverSent(message)) => {
                st.http_status = None;
                st.vendor_code = None;
                // Nothing reached the vendor: this attempt changed nothing.
                st.in_doubt = doubt_before;
                let message = ctx.settings.secrets.scrub(&message);
                if *budget >= retry.max_attempts {
                    halt(
                        ctx,
                        format!(
                            "vendor `{name}` is unreachable: {} never reached it (last: {message}); the row stays pending: resume once the vendor can be reached",
                            plural(*budget, "attempt")
                        ),
                    )
                    .await;
                    return Err(End::Pending);
                }
                drop(permit);
                if !backoff(ctx, *budget, work.line, &message).await {
                    return Err(End::Pending);
                }
                continue;
            }
            Err(TransportError::AnswerLost(message)) => {
                st.http_status = None;
                st.vendor_code = None;
                let message = ctx.settings.secrets.scrub(&message);
                if matches!(kind, CallKind::Step(_)) {
                    st.lost_answer = true;
                }
                if settles {
                    return Ok(Answered::Lost(message));
                }
                Verdict::new(Class::Retry(message))
            }
        };
        tracing::debug!(line = work.line, vendor = %name, class = verdict.class.name(), status = st.http_status.map(u32::from), "answer");
        match verdict.class {
            Class::Unlinked | Class::Present | Class::Absent(_) | Class::Failed(_) => {
                lane.limiter.on_success();
                return Ok(Answered::Verdict(verdict));
            }
            Class::Retry(message) => {
                if let (CallKind::Step(_), Some(status)) = (kind, st.http_status) {
                    st.retried_answer = Some(format!("HTTP {status}"));
                }
                if *budget >= retry.max_attempts {
                    return Ok(Answered::Verdict(Verdict {
                        class: Class::Failed(format!(
                            "gave up after {}: {message}",
                            plural(*budget, "attempt")
                        )),
                        ..verdict
                    }));
                }
                drop(permit);
                if !backoff(ctx, *budget, work.line, &message).await {
                    return Err(End::Pending);
                }
            }
            Class::RateLimit(wait) => {
                // The vendor refused before acting: not an attempt, and no new doubt.
                st.in_doubt = doubt_before;
                *budget -= 1;
                if !rate_limited(ctx, lane, wait, st).await {
                    return Err(End::Pending);
                }
                if st.rate_limit_wait > retry.max_rate_limit_wait {
                    return Ok(Answered::Verdict(Verdict {
                        class: Class::Failed(format!(
                            "still rate limited after waiting {} in total (retry.max_rate_limit_wait)",
                            humantime::format_duration(retry.max_rate_limit_wait)
                        )),
                        ..verdict
                    }));
                }
            }
            Class::Reauth(message) => {
                st.in_doubt = doubt_before;
                *budget -= 1;
                let refuse = match &token {
                    // Signed requests (no token): rebuild once per row, then give up.
                    None => std::mem::replace(&mut reauthed, true),
                    Some(t) => !refresh_refused_token(lane, t, generation).await,
                };
                if refuse {
                    halt(
                        ctx,
                        format!("vendor `{name}`: {message} (refused again after refreshing)"),
                    )
                    .await;
                    return Err(End::Pending);
                }
            }
            Class::Halt(message) => {
                st.in_doubt = doubt_before;
                halt(ctx, format!("vendor `{name}`: {message}")).await;
                return Err(End::Pending);
            }
            Class::Unexpected(what) => {
                // Whether a state-changing call took effect is unknown: the row stays in doubt,
                // so a resume reads the vendor's state before anything is sent again.
                tracing::debug!(line = work.line, "unexpected answer: {what}");
                halt(
                    ctx,
                    format!(
                        "vendor `{name}`: unexpected answer to {}: {unexpected_detail}",
                        st.request
                    ),
                )
                .await;
                return Err(End::Pending);
            }
        }
    }
}

/// Wait out the backoff after attempt `n`. False when the run stops meanwhile.
async fn backoff(ctx: &Ctx, n: u32, line: u64, why: &str) -> bool {
    let retry = &ctx.settings.retry;
    let wait = retry::backoff_random(n, retry.base_delay, retry.max_delay);
    tracing::debug!(line, "retrying in {wait:?}: {why}");
    ctx.stop.sleep(wait).await
}

/// Handle a rate-limit answer: pause the vendor for the wait it names (a default pause when it
/// names none, or nothing usable), adding the pause to the row's total. A named wait longer
/// than `retry.max_rate_limit_wait` halts instead. False when the run halts.
async fn rate_limited(ctx: &Ctx, lane: &Lane, wait: Option<Duration>, st: &mut RowState) -> bool {
    let max = ctx.settings.retry.max_rate_limit_wait;
    if let Some(asked) = wait.filter(|w| *w > max) {
        halt(
            ctx,
            format!(
                "vendor `{}` asked to wait {} before the next call, more than retry.max_rate_limit_wait ({}); resume the job later",
                lane.vendor.name,
                describe_wait(asked),
                humantime::format_duration(max)
            ),
        )
        .await;
        return false;
    }
    let paused = lane.limiter.on_rate_limit(wait.filter(|w| !w.is_zero()));
    st.rate_limit_wait = st.rate_limit_wait.saturating_add(paused);
    tracing::debug!(vendor = %lane.vendor.name, "rate limited; pausing {paused:?}");
    true
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
fn describe_unexpected(answer: &WireAnswer, what: &str, secrets: &crate::job::Secrets) -> String {
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

async fn halt(ctx: &Ctx, reason: String) {
    let reason = ctx.settings.secrets.scrub(&reason);
    ctx.stop.trigger();
    let _ = ctx.events.send(Event::Halt(reason)).await;
}

enum TokenState {
    /// The adapter does not fetch tokens.
    NotUsed,
    Valid(String),
    /// None yet, or due for refresh.
    Missing,
}

async fn current_token(lane: &Lane) -> TokenState {
    if lane.vendor.adapter.token_request().is_none() {
        return TokenState::NotUsed;
    }
    match lane.token.lock().await.as_ref() {
        Some(t) if t.refresh_at > Instant::now() => TokenState::Valid(t.value.clone()),
        _ => TokenState::Missing,
    }
}

/// Fetch the lane's shared token with the concurrency slot and rate token the caller holds. One
/// fetch at a time: callers that find it missing meanwhile wait for it and then use it.
/// Transient failures return `Ok` after pausing, so the caller simply tries again; a refusal or
/// too many failures halt the run.
async fn fetch_token(
    ctx: &Ctx,
    lane: &Lane,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), End> {
    let adapter = &lane.vendor.adapter;
    let request = adapter
        .token_request()
        .expect("only called for token adapters");
    let mut slot = lane.token.lock().await;
    if slot.as_ref().is_some_and(|t| t.refresh_at > Instant::now()) {
        return Ok(()); // fetched by another call while we waited for the lock
    }
    if ctx.stop.is_set() {
        return Err(End::Pending); // a halt (perhaps this very token refused) came meanwhile
    }
    let answer = send(&ctx.http, &request).await;
    drop(permit);
    let retry = &ctx.settings.retry;
    let transient = match answer {
        Ok(Received::TooLarge(head)) => {
            drop(slot);
            let detail = describe_unexpected(
                &head,
                "the body is longer than 1 MiB",
                &ctx.settings.secrets,
            );
            halt(
                ctx,
                format!(
                    "vendor `{}`: unexpected answer from the token endpoint: {detail}",
                    lane.vendor.name
                ),
            )
            .await;
            return Err(End::Pending);
        }
        Ok(Received::Answer(a)) if a.status == 429 => {
            drop(slot);
            let wait = a.retry_after(std::time::SystemTime::now());
            let max = retry.max_rate_limit_wait;
            if let Some(asked) = wait.filter(|w| *w > max) {
                halt(
                    ctx,
                    format!(
                        "vendor `{}`: the token endpoint asked to wait {}, more than retry.max_rate_limit_wait ({}); resume the job later",
                        lane.vendor.name,
                        describe_wait(asked),
                        humantime::format_duration(max)
                    ),
                )
                .await;
                return Err(End::Pending);
            }
            lane.limiter.on_rate_limit(wait.filter(|w| !w.is_zero()));
            return Ok(());
        }
        Ok(Received::Answer(a)) if a.status == 408 || a.status >= 500 => {
            format!("token endpoint answered HTTP {}", a.status)
        }
        Ok(Received::Answer(a)) => match adapter.parse_token(&a) {
            Ok((value, lifetime)) => {
                tracing::debug!(vendor = %lane.vendor.name, "fetched a token valid for {lifetime:?}");
                // An absurd lifetime must not overflow the clock: refresh at least monthly.
                let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
                *slot = Some(Token {
                    value,
                    refresh_at: Instant::now() + lifetime.mul_f64(TOKEN_REFRESH_SHARE),
                    after_refusal: lane.refetch_after_refusal.swap(false, Ordering::AcqRel),
                });
                lane.token_failures.store(0, Ordering::Relaxed);
                return Ok(());
            }
            Err(message) => {
                drop(slot);
                halt(
                    ctx,
                    format!(
                        "vendor `{}`: cannot get a token: {message}",
                        lane.vendor.name
                    ),
                )
                .await;
                return Err(End::Pending);
            }
        },
        Err(e) => e.message().to_string(),
    };
    let failures = lane.token_failures.fetch_add(1, Ordering::Relaxed) + 1;
    drop(slot);
    if failures >= retry.max_attempts {
        halt(
            ctx,
            format!(
                "vendor `{}`: cannot get a token after {failures} attempts: {transient}",
                lane.vendor.name
            ),
        )
        .await;
        return Err(End::Pending);
    }
    if !ctx
        .stop
        .sleep(retry::backoff_random(
            failures,
            retry.base_delay,
            retry.max_delay,
        ))
        .await
    {
        return Err(End::Pending);
    }
    Ok(())
}

/// A call made with `used` (read at `generation`) was refused. Returns false when the refusal
/// must halt: the refused token had itself been fetched to replace a refused one.
async fn refresh_refused_token(lane: &Lane, used: &str, generation: u64) -> bool {
    let mut slot = lane.token.lock().await;
    if lane.token_generation.load(Ordering::Acquire) != generation {
        return true; // another call already replaced it: just retry with the new one
    }
    match slot.as_ref() {
        Some(t) if t.value == used && t.after_refusal => false,
        Some(t) if t.value == used => {
            *slot = None;
            lane.refetch_after_refusal.store(true, Ordering::Release);
            lane.token_generation.fetch_add(1, Ordering::AcqRel);
            true
        }
        _ => true,
    }
}

/// Run blocking file work on this task without stalling the runtime's other tasks, where the
/// runtime allows it (a multi-thread one).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Most of an answer body that is ever read (SPEC section 4); past it the answer is unexpected.
pub const MAX_BODY: usize = 1 << 20;

/// A call that got no usable answer, typed by whether the vendor can have acted on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportError {
    /// The request never reached the vendor (connection refused, DNS, TLS handshake): retrying
    /// is safe, and running out of retries means the vendor is unreachable.
    NeverSent(String),
    /// The request was sent but the answer never came whole (timeout, reset, closed): the call
    /// may have taken effect.
    AnswerLost(String),
}

impl TransportError {
    fn message(&self) -> &str {
        match self {
            TransportError::NeverSent(m) | TransportError::AnswerLost(m) => m,
        }
    }
}

/// What came back from one send.
enum Received {
    Answer(WireAnswer),
    /// The body went past [`MAX_BODY`]: `answer` holds the status, headers and first bytes.
    TooLarge(WireAnswer),
}

/// Send one call and read its answer, at most [`MAX_BODY`] bytes of it.
async fn send(http: &reqwest::Client, request: &WireRequest) -> Result<Received, TransportError> {
    let mut builder = http.request(request.method.clone(), &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_ref(), value);
    }
    if !request.form.is_empty() {
        builder = builder
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(request.form_body());
    }
    let mut response = builder.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    if response
        .content_length()
        .is_some_and(|n| n <= MAX_BODY as u64)
    {
        // The framing holds the body to its declared length: read it in one go.
        let body = response
            .bytes()
            .await
            .map_err(|e| TransportError::AnswerLost(describe_transport(e)))?;
        return Ok(Received::Answer(WireAnswer {
            status,
            headers,
            body,
        }));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        // Headers arrived, so the request was sent: whatever broke, the answer is lost.
        TransportError::AnswerLost(describe_transport(e))
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            let take = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..take]);
            return Ok(Received::TooLarge(WireAnswer {
                status,
                headers,
                body: body.freeze(),
            }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Received::Answer(WireAnswer {
        status,
        headers,
        body: body.freeze(),
    }))
}

fn transport_error(e: reqwest::Error) -> TransportError {
    // A connect error (refused, DNS, TLS handshake, connect timeout) means nothing was sent.
    // Anything later may have reached the vendor.
    if e.is_connect() {
        TransportError::NeverSent(describe_transport(e))
    } else {
        TransportError::AnswerLost(describe_transport(e))
    }
}

fn describe_transport(e: reqwest::Error) -> String {
    // The URL is left out: the report's `request` column already has it.
    let e = e.without_url();
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out waiting for the answer"
    } else if e.is_body() || e.is_decode() {
        "answer cut off"
    } else {
        "connection lost"
    };
    let mut message = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

/// What `validate` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Validation {
    pub rows: u64,
    pub valid: u64,
    pub invalid: u64,
    pub duplicate: u64,
}

/// Check every input row as a run would, without any network call or checkpoint. `problem` is
/// called for each invalid or duplicate row with its line and message.
pub fn validate(
    settings: &Settings,
    mut problem: impl FnMut(u64, &str),
) -> Result<Validation, InputError> {
    let mut v = Validation::default();
    let mut seen = DuplicateIndex::new();
    for record in input::open(&settings.input)? {
        let record = record?;
        v.rows += 1;
        match classify_record(settings, record.fields) {
            Err((_, invalid)) => {
                v.invalid += 1;
                problem(record.line, &format!("invalid: {invalid}"));
            }
            Ok((lane, row)) => {
                match seen.insert(&settings.vendors[lane].name, &row.key.0, record.line) {
                    Some(first) => {
                        v.duplicate += 1;
                        problem(
                            record.line,
                            &format!("duplicate: same vendor and key as line {first}"),
                        );
                    }
                    None => v.valid += 1,
                }
            }
        }
    }
    Ok(v)
}

/// `unlinker status`: what the checkpoint says, as text. Works while a run holds the lock.
pub fn status(settings: &Settings) -> Result<String, RunError> {
    let path = &settings.checkpoint;
    if !path.exists() {
        return Ok(format!(
            "job {}: no checkpoint at {}: nothing has run yet\n",
            settings.name,
            path.display()
        ));
    }
    let (binding, loaded) = checkpoint::read(path)?;
    let counts = loaded.counts();
    let recorded: u64 = counts.values().sum();
    let in_doubt = loaded.in_doubt().count() as u64;
    // An input that can be read only once is never read here: the run's kept copy of it is.
    let input_file = match &settings.input.source {
        source if spool::needs_spool(source) => {
            Some(spool::spool_path(path)).filter(|kept| kept.is_file())
        }
        Source::File(p) => Some(p.clone()),
        Source::Stdin => None,
    };
    let (total, changed) = match input_file {
        Some(p) => {
            let spec = input::InputSpec {
                source: Source::File(p.clone()),
                ..settings.input.clone()
            };
            let total = input::open(&spec)?.take_while(|r| r.is_ok()).count() as u64;
            let hash = input::content_hash(&p).map_err(|error| InputError::Open {
                source_name: p.display().to_string(),
                error,
            })?;
            (Some(total), hash != binding.input_hash)
        }
        None => (None, false),
    };
    let mut out = format!("job {}\n  checkpoint: {}\n", settings.name, path.display());
    for o in Outcome::ALL {
        out.push_str(&format!(
            "  {:<10} {}\n",
            o.name(),
            counts.get(&o).copied().unwrap_or(0)
        ));
    }
    out.push_str(&format!("  recorded   {recorded}\n"));
    if let Some(total) = total {
        out.push_str(&format!(
            "  pending    {}\n",
            total.saturating_sub(recorded)
        ));
    }
    out.push_str(&format!("  in doubt   {in_doubt}\n"));
    let lost = loaded.absent_after_lost_answer();
    if lost > 0 {
        out.push_str(&format!(
            "  absent after a lost answer {lost} (of the absent rows: a run of this job most likely removed them)\n"
        ));
    }
    let state = if changed {
        "the input file changed since the checkpoint was made: `run` will refuse to resume (use --fresh)".to_string()
    } else {
        match total {
            Some(t) if t == recorded && in_doubt == 0 => "complete".to_string(),
            Some(_) => "incomplete: `run` resumes it".to_string(),
            None => {
                "unknown (the input is not a regular file and no copy of it is kept)".to_string()
            }
        }
    };
    out.push_str(&format!("  state      {state}\n"));
    Ok(out)
}
