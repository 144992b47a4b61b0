//! Progress on long runs: an indicatif bar on a terminal, a log line every 10 s off one (cron).
//!
//! Log lines go through [`LogWriter`], which hides the bar while a line is written, so logs and
//! the bar never tear each other.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::limit::Limiter;
use crate::report::Outcome;

/// Interval of progress log lines when there is no bar.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The bar currently on screen, if any, for [`LogWriter`].
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

pub struct Progress {
    bar: Option<ProgressBar>,
    total: Arc<AtomicU64>,
    limiters: Vec<Arc<Limiter>>,
    started: Instant,
    last_log: Instant,
    /// Rows recorded by earlier runs of the job: "done / total" counts the whole job.
    previous: u64,
    done: u64,
    failed: u64,
}

impl Progress {
    /// `bar`: draw a bar (stderr is a terminal and progress was not turned off). `previous`:
    /// rows recorded by earlier runs of the job.
    pub fn new(
        bar: bool,
        total: Arc<AtomicU64>,
        limiters: Vec<Arc<Limiter>>,
        previous: u64,
    ) -> Progress {
        let bar = bar.then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rows  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("the template is valid"),
            );
            b.set_position(previous);
            // Rows/s and the ETA are about this run, not the earlier ones.
            b.reset_eta();
            b.enable_steady_tick(Duration::from_millis(200));
            *ACTIVE_BAR.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(b.clone());
            b
        });
        Progress {
            bar,
            total,
            limiters,
            started: Instant::now(),
            last_log: Instant::now(),
            previous,
            done: 0,
            failed: 0,
        }
    }

    pub fn row(&mut self, outcome: Outcome) {
        self.done += 1;
        if outcome == Outcome::Failed {
            self.failed += 1;
        }
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    fn rate_limited(&self) -> u64 {
        self.limiters.iter().map(|l| l.rate_limited()).sum()
    }

    pub fn tick(&mut self) {
        let total = self.total.load(Ordering::Relaxed);
        match &self.bar {
            Some(b) => {
                if total != u64::MAX && b.length() != Some(total) {
                    b.set_length(total);
                }
                b.set_message(format!(
                    "failed {}  rate-limited {}",
                    self.failed,
                    self.rate_limited()
                ));
            }
            None if self.last_log.elapsed() >= LOG_INTERVAL => {
                self.last_log = Instant::now();
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                let of = if total == u64::MAX {
                    String::new()
                } else {
                    format!("/{total}")
                };
                tracing::info!(
                    "progress: {}{of} rows ({} this run), {:.1} rows/s, {} failed, {}",
                    self.previous + self.done,
                    self.done,
                    self.done as f64 / secs,
                    self.failed,
                    crate::client::plural(self.rate_limited(), "rate-limit answer")
                );
            }
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            *ACTIVE_BAR
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A stderr writer for log lines that suspends the progress bar while writing.
pub struct LogWriter;

impl Write for LogWriter {
    /// Never fails: with stderr closed or its reader gone, logging goes quiet and the run goes on
    /// (an error here would make the log layer report it on stderr, and fail again).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if crate::logging::hold(buf) {
            return Ok(buf.len());
        }
        let bar = ACTIVE_BAR
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let _ = match bar {
            Some(b) => b.suspend(|| io::stderr().write_all(buf)),
            None => io::stderr().write_all(buf),
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriterMaker {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// Hands [`LogWriter`]s to tracing.
pub struct LogWriterMaker;
