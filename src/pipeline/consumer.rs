//! The single consumer of a run: it owns the report writer, the checkpoint journal, the counters
//! and the progress display, so nothing that writes needs a lock and the journal is written in
//! one place, in order.
//!
//! Durability: a row task waits for its intent to be journaled before it sends. The consumer
//! groups whatever arrived together into one write (report first, then the journal that points
//! into it), so this costs one `write(2)` per batch, not per row; about once a second it fsyncs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::adapter::Prepared;
use crate::checkpoint::Checkpoint;
use crate::input::InputError;
use crate::job::Settings;
use crate::metrics::Live;
use crate::progress::Progress;
use crate::report::{Outcome, ReportRow, ReportWriter};
use crate::stop::Stop;

use super::RunError;
use super::start::io_err;

/// How often the journal and report are fsynced (power-loss window).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Events handled per journal write.
pub(super) const MAX_BATCH: usize = 512;

/// What the reader, the lanes and the row tasks tell the consumer.
pub(super) enum Event {
    /// A state-changing call is about to be sent; ack once the journal has it.
    /// `link`: the call is for this link of a wildcard row.
    Intent {
        line: u64,
        step: u8,
        link: Option<Box<Prepared>>,
        ack: oneshot::Sender<()>,
    },
    StepDone {
        line: u64,
        step: u8,
        link: Option<Box<Prepared>>,
    },
    /// A wildcard row finished one of its links (SPEC section 3).
    LinkDone {
        line: u64,
        label: String,
        outcome: Outcome,
        message: String,
    },
    /// The row ends this run without an outcome. `in_doubt`: a call may have taken effect.
    Pending {
        line: u64,
        sent: bool,
        in_doubt: bool,
    },
    /// A row's outcome, with what the counters need beyond the row.
    Row(Box<ReportRow>, RowNote),
    Halt(String),
    /// A task of the run failed (a bug): stop, record what arrived, end as an internal error.
    Internal(String),
    InputDone {
        more_pending: bool,
    },
    Fatal(InputError),
}

/// What a row's outcome event tells the counters beyond the report row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RowNote {
    /// The row is `absent` by a read-back after a lost answer.
    pub(super) after_lost: bool,
    /// Links this row removed in this run (an `unlinked` ordinary row: 1; a wildcard row: each
    /// link), or, for a `dry_run` row, the links a real run would remove.
    pub(super) links: u64,
    /// Reads a real run makes before its removals (a wildcard row's list: 1).
    pub(super) reads: u64,
}

/// What a dry run would send for one vendor: links to remove and reads to make first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct WouldSend {
    pub(super) rows: u64,
    pub(super) links: u64,
    pub(super) reads: u64,
}

/// What the consumer learnt by the time every sender was gone.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) counts: BTreeMap<Outcome, u64>,
    /// `dry_run` rows per vendor: what a real run would send.
    pub(super) would_send: BTreeMap<String, WouldSend>,
    pub(super) pending: u64,
    pub(super) absent_after_lost: u64,
    /// Links removed by this run (wildcard rows count each of theirs).
    pub(super) links_removed: u64,
    pub(super) halt: Option<String>,
    pub(super) input_done: bool,
    pub(super) more_pending: bool,
}

pub(super) struct Consumer<'a> {
    pub(super) settings: &'a Settings,
    pub(super) stop: &'a Stop,
    pub(super) journal: Option<Checkpoint>,
    pub(super) report: ReportWriter,
    pub(super) progress: Progress,
    /// `--metrics` / `output.metrics` (not on dry runs).
    pub(super) metrics: Option<Live>,
    tally: Tally,
    consecutive_failures: u32,
    fatal: Option<InputError>,
    internal: Option<String>,
    acks: Vec<oneshot::Sender<()>>,
    last_sync: Instant,
}

impl<'a> Consumer<'a> {
    pub(super) fn new(
        settings: &'a Settings,
        stop: &'a Stop,
        journal: Option<Checkpoint>,
        report: ReportWriter,
        progress: Progress,
    ) -> Consumer<'a> {
        Consumer {
            settings,
            stop,
            journal,
            report,
            progress,
            metrics: None,
            tally: Tally::default(),
            consecutive_failures: 0,
            fatal: None,
            internal: None,
            acks: Vec::new(),
            last_sync: Instant::now(),
        }
    }

    /// Record events until every sender is gone, then flush and fsync everything. The journal
    /// comes back (when it is still usable) so the run's end can be recorded in it.
    pub(super) async fn run(
        mut self,
        events: mpsc::Receiver<Event>,
    ) -> (Result<Tally, RunError>, Option<Checkpoint>) {
        let drained = self.drain(events).await.and_then(|()| self.close());
        let journal = self.journal.take();
        let result = drained.and_then(|()| {
            if let Some(what) = self.internal.take() {
                return Err(RunError::Internal(what));
            }
            if let Some(e) = self.fatal.take() {
                return Err(e.into());
            }
            Ok(std::mem::take(&mut self.tally))
        });
        (result, journal)
    }

    async fn drain(&mut self, mut events: mpsc::Receiver<Event>) -> Result<(), RunError> {
        let mut batch: Vec<Event> = Vec::with_capacity(MAX_BATCH);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = events.recv_many(&mut batch, MAX_BATCH) => {
                    if n == 0 {
                        break;
                    }
                }
                _ = tick.tick() => {
                    self.progress.tick();
                    if let Some(m) = self.metrics.as_mut() {
                        m.tick(&self.tally.counts);
                    }
                    // At most once a second: the checkpoint must still be the file at its path.
                    if let Some(j) = self.journal.as_mut() {
                        let path = &self.settings.checkpoint;
                        j.watch().map_err(|e| io_err("stopping: checkpoint", path, e))?;
                    }
                    continue;
                }
            }
            // Let the other tasks that are ready run first, and take what they sent too: one
            // group commit (a write each for the report and the journal) for all of it. Handled
            // at once, a batch held about four events.
            if batch.len() < MAX_BATCH {
                tokio::task::yield_now().await;
                while batch.len() < MAX_BATCH {
                    match events.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
            }
            for event in batch.drain(..) {
                self.handle(event)?;
            }
            self.commit()?;
            self.progress.tick();
        }
        Ok(())
    }

    fn journal_err(&self) -> impl Fn(std::io::Error) -> RunError + '_ {
        |e| io_err("cannot write checkpoint", &self.settings.checkpoint, e)
    }

    fn handle(&mut self, event: Event) -> Result<(), RunError> {
        let checkpoint = &self.settings.checkpoint;
        let journal_err = |e| io_err("cannot write checkpoint", checkpoint, e);
        match event {
            Event::Intent {
                line,
                step,
                link,
                ack,
            } => {
                if let Some(j) = self.journal.as_mut() {
                    match link {
                        None => j.intent(line, step),
                        Some(link) => j.link_intent(line, step, &link.key.0, &params(&link)),
                    }
                    .map_err(journal_err)?;
                }
                self.acks.push(ack);
            }
            Event::StepDone { line, step, link } => {
                if let Some(j) = self.journal.as_mut() {
                    match link {
                        None => j.step_done(line, step),
                        Some(link) => j.link_step_done(line, step, &link.key.0, &params(&link)),
                    }
                    .map_err(journal_err)?;
                }
            }
            Event::LinkDone {
                line,
                label,
                outcome,
                message,
            } => {
                if let Some(j) = self.journal.as_mut() {
                    j.link_done(line, &label, outcome, &message)
                        .map_err(journal_err)?;
                }
            }
            Event::Pending {
                line,
                sent,
                in_doubt,
            } => {
                self.tally.pending += 1;
                if sent
                    && !in_doubt
                    && let Some(j) = self.journal.as_mut()
                {
                    j.settled(line).map_err(journal_err)?;
                }
            }
            Event::Row(row, note) => self.record(&row, note)?,
            Event::Halt(reason) => self.halt(reason),
            Event::InputDone { more_pending } => {
                self.tally.input_done = true;
                self.tally.more_pending = more_pending;
            }
            Event::Fatal(e) => {
                self.stop.trigger();
                self.fatal = Some(e);
            }
            Event::Internal(what) => {
                self.stop.trigger();
                tracing::error!("internal error: {what}");
                self.internal.get_or_insert(what);
            }
        }
        Ok(())
    }

    /// Write a row's outcome to the report, then the journal record that points past it.
    fn record(&mut self, row: &ReportRow, note: RowNote) -> Result<(), RunError> {
        let after_lost = note.after_lost;
        #[cfg(debug_assertions)]
        if super::row::test_fault("panic-recorder")
            == Some(self.tally.counts.values().sum::<u64>() + 1)
        {
            panic!("test fault in the recorder");
        }
        self.tally.absent_after_lost += u64::from(after_lost);
        if after_lost && let Some(j) = self.journal.as_mut() {
            j.lost_answer(row.line).map_err(self.journal_err())?;
        }
        self.report
            .write(row)
            .map_err(|e| io_err("cannot write report", &self.settings.report, e))?;
        if let Some(j) = self.journal.as_mut() {
            let len = self.report.len();
            let checkpoint = &self.settings.checkpoint;
            j.outcome(row, len)
                .map_err(|e| io_err("cannot write checkpoint", checkpoint, e))?;
        }
        *self.tally.counts.entry(row.outcome).or_default() += 1;
        if row.outcome == Outcome::DryRun {
            let would = self.tally.would_send.entry(row.vendor.clone()).or_default();
            would.rows += 1;
            would.links += note.links;
            would.reads += note.reads;
        } else {
            self.tally.links_removed += note.links;
        }
        self.progress.row(row.outcome);
        match row.outcome {
            Outcome::Failed => {
                self.consecutive_failures += 1;
                let max = self.settings.max_consecutive_failures;
                let n = self.consecutive_failures;
                if max > 0 && n >= max && self.tally.halt.is_none() {
                    self.halt(format!(
                        "{n} consecutive rows failed (halt.max_consecutive_failures = {max}); last: line {}: {}",
                        row.line, row.message
                    ));
                }
            }
            Outcome::Unlinked | Outcome::Absent => self.consecutive_failures = 0,
            _ => {}
        }
        Ok(())
    }

    fn halt(&mut self, reason: String) {
        if self.tally.halt.is_none() {
            tracing::error!("halting: {reason}");
            self.tally.halt = Some(reason);
        }
        self.stop.trigger();
    }

    /// Group commit: report first, then the journal that points into it; then release the row
    /// tasks waiting for their intents.
    fn commit(&mut self) -> Result<(), RunError> {
        let settings = self.settings;
        let report_err = |e| io_err("cannot write report", &settings.report, e);
        let journal_err = |e| io_err("cannot write checkpoint", &settings.checkpoint, e);
        self.report.flush().map_err(report_err)?;
        if let Some(j) = self.journal.as_mut() {
            j.flush().map_err(journal_err)?;
            if self.last_sync.elapsed() >= SYNC_INTERVAL {
                // An fsync can take a while on a slow disk: let the runtime move the other
                // tasks (the calls in flight) to another thread meanwhile.
                let report = &mut self.report;
                blocking(|| {
                    report.sync().map_err(report_err)?;
                    j.sync().map_err(journal_err)
                })?;
                self.last_sync = Instant::now();
            }
        }
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), RunError> {
        let settings = self.settings;
        self.report
            .sync()
            .map_err(|e| io_err("cannot write report", &settings.report, e))?;
        if let Some(j) = self.journal.as_mut() {
            j.sync()
                .map_err(|e| io_err("cannot write checkpoint", &settings.checkpoint, e))?;
        }
        self.progress.finish();
        Ok(())
    }
}

/// A link's parameters as the journal records them.
fn params(link: &Prepared) -> Vec<(&str, &str)> {
    link.params.pairs().collect()
}

/// Run blocking file work on this task without stalling the runtime's other tasks, where the
/// runtime allows it (a multi-thread one).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
