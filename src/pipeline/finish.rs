//! After the last event: the run's summary, from what the consumer tallied and what the
//! limiters counted. A run is complete only when the input was read to its end and no row is
//! left pending; a halt (exit 6) is told apart from a stop that was asked for (exit 4).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::job::Settings;
use crate::report::Outcome;
use crate::stop::Stop;
use crate::summary::{Estimate, Summary, VendorSummary};

use super::RunOptions;
use super::consumer::{Tally, WouldSend};
use super::row::Lane;

pub(super) struct Finish<'a> {
    pub(super) settings: &'a Settings,
    pub(super) opts: &'a RunOptions,
    pub(super) stop: &'a Stop,
    pub(super) lanes: &'a [Arc<Lane>],
    /// Outcomes recorded by earlier runs.
    pub(super) previous: BTreeMap<Outcome, u64>,
    /// Rows in the input, once counted (`u64::MAX` until then).
    pub(super) total_rows: &'a AtomicU64,
    pub(super) elapsed: Duration,
    pub(super) started_at: SystemTime,
    /// `--deadline` set the stop flag.
    pub(super) deadline_reached: bool,
}

impl Finish<'_> {
    pub(super) fn summary(self, tally: Tally) -> Summary {
        let complete = tally.input_done && !tally.more_pending && tally.pending == 0;
        let mut cumulative = self.previous.clone();
        for (o, n) in &tally.counts {
            *cumulative.entry(*o).or_default() += n;
        }
        let recorded: u64 = cumulative.values().sum();
        let total = match self.total_rows.load(Ordering::Relaxed) {
            u64::MAX if complete => recorded,
            u64::MAX => recorded + tally.pending,
            n => n,
        };
        let halted = tally.halt.is_some() && !complete;
        let stopped = if complete {
            None
        } else if let Some(h) = tally.halt {
            Some(h)
        } else if let Some(d) = self.opts.deadline.filter(|_| self.deadline_reached) {
            Some(format!(
                "stopped at --deadline {}",
                humantime::format_duration(d)
            ))
        } else if tally.more_pending && !self.stop.is_set() {
            Some(format!(
                "stopped after --limit {}",
                self.opts.limit.unwrap_or(0)
            ))
        } else {
            Some("interrupted".to_string())
        };
        let sent_this_run: u64 = self.lanes.iter().map(|l| l.client.limiter.requests()).sum();
        let already_complete = complete
            && tally.counts.values().sum::<u64>() == 0
            && sent_this_run == 0
            && recorded > 0
            && !self.opts.dry_run;
        Summary {
            job: self.settings.name.clone(),
            dry_run: self.opts.dry_run,
            report: self.settings.report.clone(),
            counts: cumulative,
            this_run: tally.counts,
            pending: total.saturating_sub(recorded),
            total_rows: total,
            elapsed: self.elapsed,
            started_at: self.started_at,
            vendors: self.vendors(),
            complete,
            already_complete,
            stopped,
            halted,
            absent_after_lost_answer: tally.absent_after_lost,
            links_removed: tally.links_removed,
            estimate: self.estimate(&tally.would_send),
        }
    }

    fn vendors(&self) -> BTreeMap<String, VendorSummary> {
        self.lanes
            .iter()
            .map(|l| {
                let limiter = &l.client.limiter;
                let requests = limiter.requests();
                let summary = VendorSummary {
                    requests,
                    requests_per_s: requests as f64 / self.elapsed.as_secs_f64().max(1e-3),
                    rate_limited: limiter.rate_limited(),
                };
                (l.client.name().to_string(), summary)
            })
            .collect()
    }

    /// `--dry-run --check`: how long the real run would take, per vendor.
    fn estimate(&self, would_send: &BTreeMap<String, WouldSend>) -> BTreeMap<String, Estimate> {
        if !self.opts.check {
            return BTreeMap::new();
        }
        self.lanes
            .iter()
            .map(|l| {
                let name = l.client.name();
                let w = would_send.get(name).copied().unwrap_or_default();
                let estimate = Estimate::new(w.rows, w.links, w.reads, &l.client.vendor);
                (name.to_string(), estimate)
            })
            .collect()
    }
}
