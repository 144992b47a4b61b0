//! The pipeline of a run: input rows → skip what is done → per-vendor lanes doing the calls → one
//! consumer that records everything.
//!
//! [`run`] only wires the stages and joins them: [`start`] opens what the run writes, [`reader`]
//! streams the input on a thread of its own (a vendor that falls behind while another needs rows
//! gets a [`backlog`], so no vendor holds up another), [`row`] runs each vendor's lane of row tasks (every
//! call through that vendor's [`VendorClient`](crate::client::VendorClient)), [`consumer`] owns
//! the report, the journal, the counters and the progress display, and [`finish`] turns what was
//! tallied into the summary.
//!
//! However the run ends — complete, stopped, halted, an I/O error, a panic in a task — the stop
//! flag is set and no call is sent that could not be recorded: every state-changing call waits
//! for its intent to be journaled by the consumer.

mod backlog;
mod consumer;
mod finish;
mod reader;
mod row;
mod runs;
mod start;
mod wildcard;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::client::{Transport, VendorClient};
use crate::input::InputError;
use crate::job::{Settings, VendorSettings};
use crate::metrics::Live;
use crate::progress::Progress;
use crate::stop::Stop;
use crate::summary::Summary;

pub use reader::{Validation, validate};
pub use row::join_error_text;
pub use runs::RunsEnd;

/// Rows buffered per vendor lane between the reader and the lane.
const LANE_QUEUE: usize = 4096;

/// [`LANE_QUEUE`]; in debug builds `UNLINKER_TEST_LANE_QUEUE=N` makes it smaller, so a test
/// can fill a queue with a few hundred rows (the test of lane backlogs).
fn lane_queue() -> usize {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("UNLINKER_TEST_LANE_QUEUE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n >= 2)
    {
        return n;
    }
    LANE_QUEUE
}

/// Per-run switches from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    /// With `dry_run`: read each row's state with the vendor's read API.
    pub check: bool,
    pub fresh: bool,
    pub retry_failed: bool,
    pub limit: Option<u64>,
    /// `--deadline`: stop starting rows this long after the run started.
    pub deadline: Option<Duration>,
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

/// Run (or resume) a job. `stop` is triggered from outside on SIGINT/SIGTERM/SIGHUP. With the
/// summary comes the run's end line for the runs log, for the caller to write once it knows the
/// exit code (after a fatal error, the end line is written here).
pub async fn run(
    mut settings: Settings,
    opts: RunOptions,
    stop: Stop,
) -> Result<(Summary, RunsEnd), RunError> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    // However this function ends (an error, a panic in the recorder), the senders stop.
    let _stop_on_exit = StopOnDrop(stop.clone());
    let deadline = Deadline::start(opts.deadline, &stop);
    let input_given = settings.input.source.to_string();
    let mut opened = start::open(&mut settings, &opts, &stop).await?;
    // Only a run that holds the job writes in its runs log: one refused before (locked, input
    // changed, a bad path) leaves no line, and never writes beside another run's.
    let runs_log = runs::start(&settings, opts.dry_run, &input_given, started_at)
        .inspect_err(|e| record_stop(&settings, opened.journal.as_mut(), &format!("error: {e}")))?;
    let digest = Arc::new(runs::InputDigest::default());
    let settings = Arc::new(settings);
    let previous = opened.loaded.counts();
    let loaded = Arc::new(opened.loaded);
    let total_rows = Arc::new(AtomicU64::new(u64::MAX));

    let (events_tx, events_rx) = mpsc::channel(consumer::MAX_BATCH * 4);
    let sink = row::EventSink(events_tx);
    let lanes = lanes(&settings, &opts, &stop);
    let (lane_txs, lanes_done) = spawn_lanes(&lanes, &sink, &stop);
    // A checking dry run sends rows to the lanes, which only read.
    let dry_run = opts.dry_run && !opts.check;
    let reader = reader::spawn(
        settings.clone(),
        loaded,
        stop.clone(),
        sink.clone(),
        (total_rows.clone(), digest.clone()),
        (lane_txs, dry_run, opts.limit),
    );
    drop(sink);

    let limiters = lanes.iter().map(|l| l.client.limiter.clone()).collect();
    let done_before = previous.values().sum();
    let progress = Progress::new(opts.progress, total_rows.clone(), limiters, done_before);
    // A dry run writes no metrics: its counts would stand for the real job's.
    let metrics = settings
        .metrics
        .clone()
        .filter(|_| !opts.dry_run)
        .map(|path| {
            let vendors = lanes
                .iter()
                .map(|l| (l.client.name().to_string(), l.client.limiter.clone()))
                .collect();
            Live::new(
                path,
                settings.name.clone(),
                started_at,
                previous.clone(),
                vendors,
                total_rows.clone(),
            )
        });
    let mut consumer =
        consumer::Consumer::new(&settings, &stop, opened.journal, opened.report, progress);
    consumer.metrics = metrics;
    let (tally, mut journal) = consumer.run(events_rx).await;
    if tally.is_err() {
        stop.trigger(); // nothing more can be recorded: send nothing more
    }
    let _ = lanes_done.await;
    let _ = reader.await;
    let files = (input_file(&settings), settings.report.clone());
    let tally = match tally {
        Ok(tally) => tally,
        Err(e) => {
            record_stop(&settings, journal.as_mut(), &format!("error: {e}"));
            let lanes = lanes.clone();
            let e = blocking(move || runs_log.failed(e, &lanes, &digest, (&files.0, &files.1)));
            return Err(e.await.unwrap_or_else(|e| e));
        }
    };
    let finish = finish::Finish {
        settings: &settings,
        opts: &opts,
        stop: &stop,
        lanes: &lanes,
        previous,
        total_rows: &total_rows,
        elapsed: started.elapsed(),
        started_at,
        deadline_reached: deadline.reached(),
    };
    let summary = finish.summary(tally);
    let why = stop_reason(&summary);
    record_stop(&settings, journal.as_mut(), &why);
    // Reads the report once (and the input, unless the counting pass has hashed it).
    blocking(move || {
        let end = runs_log.ending(&summary, &why, &digest, (&files.0, &files.1));
        (summary, end)
    })
    .await
}

/// The file the run read its input from (a pipe's copy once spooled).
fn input_file(settings: &Settings) -> PathBuf {
    match &settings.input.source {
        crate::input::Source::File(p) => p.clone(),
        crate::input::Source::Stdin => PathBuf::from("/dev/stdin"),
    }
}

/// Run blocking file work off the runtime's worker.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RunError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RunError::Internal(format!("the runs log: {}", join_error_text(e))))
}

/// How a run ended, in the words of the journal's end record (and `status`'s "last run" line).
fn stop_reason(summary: &Summary) -> String {
    let stopped = summary.stopped.as_deref().unwrap_or("");
    if summary.complete {
        "complete".into()
    } else if summary.halted {
        format!("halt: {stopped}")
    } else if stopped.starts_with("stopped at --deadline") {
        "deadline".into()
    } else if stopped.starts_with("stopped after --limit") {
        "limit".into()
    } else {
        "signal".into()
    }
}

/// Write the run's end record, so `status` can say why the last run stopped; a journal that
/// cannot take it (removed, replaced, disk full) is only worth a warning now.
fn record_stop(settings: &Settings, journal: Option<&mut Checkpoint>, why: &str) {
    if let Some(j) = journal
        && let Err(e) = j.record_stop(&settings.secrets.scrub(why))
    {
        tracing::warn!("cannot record the end of this run in the checkpoint: {e}");
    }
}

/// `--deadline`: a timer that sets the stop flag when the time is up, as a signal does (no new
/// rows, the calls in flight drain and are recorded), and remembers that it did, so the summary
/// can say why the run stopped. The timer ends with the run.
struct Deadline {
    reached: Arc<AtomicBool>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Deadline {
    fn start(after: Option<Duration>, stop: &Stop) -> Deadline {
        let reached = Arc::new(AtomicBool::new(false));
        let timer = after.map(|after| {
            let (reached, stop) = (reached.clone(), stop.clone());
            tokio::spawn(async move {
                if stop.sleep(after).await {
                    reached.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "--deadline {} reached: no new rows; finishing the calls in flight",
                        humantime::format_duration(after)
                    );
                    stop.trigger();
                }
            })
        });
        Deadline { reached, timer }
    }

    fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(t) = &self.timer {
            t.abort();
        }
    }
}

/// One lane per vendor of the job, each with its own client (limiter, token, retry rules).
fn lanes(settings: &Settings, opts: &RunOptions, stop: &Stop) -> Vec<Arc<row::Lane>> {
    let transport = Arc::new(Transport::http(settings.retry.timeout));
    let secrets = Arc::new(settings.secrets.clone());
    settings
        .vendors
        .iter()
        .map(|v| {
            let vendor = VendorSettings {
                name: v.name.clone(),
                kind: v.kind,
                adapter: v.adapter.clone(),
                base_url: v.base_url.clone(),
                rate: v.rate,
                burst: v.burst,
                concurrency: v.concurrency,
                reserve: v.reserve,
            };
            let client = VendorClient::new(
                vendor,
                transport.clone(),
                settings.retry.clone(),
                secrets.clone(),
                stop.clone(),
            );
            Arc::new(row::Lane {
                client,
                check: opts.check,
                stop: stop.clone(),
            })
        })
        .collect()
}

/// Start every lane; the reader gets their queues. The returned task ends when every lane has,
/// reporting a lane that died as an internal failure.
fn spawn_lanes(
    lanes: &[Arc<row::Lane>],
    sink: &row::EventSink,
    stop: &Stop,
) -> (Vec<mpsc::Sender<reader::Work>>, tokio::task::JoinHandle<()>) {
    let mut txs = Vec::new();
    let mut tasks = JoinSet::new();
    for lane in lanes {
        let (tx, rx) = mpsc::channel(lane_queue());
        txs.push(tx);
        tasks.spawn(row::lane_loop(lane.clone(), sink.clone(), rx));
    }
    let (sink, stop) = (sink.clone(), stop.clone());
    let done = tokio::spawn(async move {
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result {
                row::internal_failure(&sink, &stop, "a vendor lane", e).await;
            }
        }
    });
    (txs, done)
}
