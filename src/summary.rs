//! The end-of-run summary: printed to stderr, optionally written as JSON, and the exit code.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::report::{Outcome, create_private};

/// Exit codes (SPEC section 7).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FATAL: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const ROWS_FAILED: i32 = 3;
    pub const STOPPED: i32 = 4;
    pub const LOCKED: i32 = 5;
    /// Halted: a vendor refused credentials, was unreachable, answered something unexpected,
    /// asked for too long a wait, or too many rows failed in a row.
    pub const HALTED: i32 = 6;
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VendorSummary {
    /// HTTP calls sent this run (token fetches, reads and retries included).
    pub requests: u64,
    pub requests_per_s: f64,
    pub rate_limited: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub job: String,
    pub dry_run: bool,
    pub report: PathBuf,
    /// Outcomes recorded for the job so far (this run and earlier runs of it).
    #[serde(serialize_with = "outcome_map")]
    pub counts: BTreeMap<Outcome, u64>,
    /// Outcomes recorded by this run.
    #[serde(serialize_with = "outcome_map")]
    pub this_run: BTreeMap<Outcome, u64>,
    /// Input rows without an outcome yet.
    pub pending: u64,
    pub total_rows: u64,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
    /// When the run started (for the metrics file).
    #[serde(skip)]
    pub started_at: SystemTime,
    pub vendors: BTreeMap<String, VendorSummary>,
    /// Every input row has an outcome.
    pub complete: bool,
    /// The job was complete before this run: nothing was sent.
    pub already_complete: bool,
    /// Why the run stopped before finishing.
    pub stopped: Option<String>,
    /// The run halted (exit 6): `stopped` says why.
    pub halted: bool,
    /// Rows of this run recorded `absent` by a read-back after a lost answer: the link is gone
    /// and this run most likely removed it.
    pub absent_after_lost_answer: u64,
    /// Links removed by this run: one per `unlinked` ordinary row, and every link a wildcard row
    /// removed (also when another of its links failed).
    pub links_removed: u64,
    /// `--dry-run --check`: how long the real run would take, per vendor.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub estimate: BTreeMap<String, Estimate>,
}

/// The real run's duration for one vendor, at the job's configured rate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    /// Rows a real run would send.
    pub rows: u64,
    /// Links those rows would remove (a wildcard row: every link its read listed).
    pub links: u64,
    /// Calls for those rows: the wildcard rows' reads, then each link's steps (two with Auth0
    /// `delete_unlinked_user`).
    pub calls: u64,
    pub rate: f64,
    pub seconds: f64,
}

impl Estimate {
    pub fn new(rows: u64, links: u64, reads: u64, vendor: &crate::job::VendorSettings) -> Estimate {
        // Every adapter we ship decides its steps from its config alone, so an empty row asks.
        let blank = crate::adapter::Prepared {
            key: crate::adapter::Key(String::new()),
            params: crate::adapter::Params::new(),
        };
        let steps = u64::from(vendor.adapter.steps(&blank));
        let calls = links * steps + reads;
        // The bucket starts full: `burst` calls go at once, the rest at `rate`.
        let paced = calls.saturating_sub(vendor.burst as u64);
        Estimate {
            rows,
            links,
            calls,
            rate: vendor.rate,
            seconds: paced as f64 / vendor.rate,
        }
    }
}

fn outcome_map<S: serde::Serializer>(
    map: &BTreeMap<Outcome, u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    // Every outcome is listed, zeros included, so scripts can index without checking.
    let full: BTreeMap<&str, u64> = Outcome::ALL
        .iter()
        .map(|o| (o.name(), map.get(o).copied().unwrap_or(0)))
        .collect();
    full.serialize(s)
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl Summary {
    fn count(&self, o: Outcome) -> u64 {
        self.counts.get(&o).copied().unwrap_or(0)
    }

    pub fn exit_code(&self) -> i32 {
        if self.halted {
            exit::HALTED
        } else if !self.complete {
            exit::STOPPED
        } else if self.count(Outcome::Failed) + self.count(Outcome::Invalid) > 0 {
            exit::ROWS_FAILED
        } else {
            exit::OK
        }
    }

    /// The human summary, several lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let state = if self.already_complete {
            "already complete: nothing to send".to_string()
        } else if self.complete {
            if self.dry_run {
                "dry run complete".into()
            } else {
                "complete".into()
            }
        } else if self.halted {
            format!(
                "halted: fix the cause, then run again to resume ({})",
                self.stopped.as_deref().unwrap_or("halted")
            )
        } else {
            format!(
                "stopped, resumable ({})",
                self.stopped.as_deref().unwrap_or("stopped")
            )
        };
        out.push_str(&format!("job {}: {state}\n", self.job));
        let counts: Vec<String> = Outcome::ALL
            .iter()
            .map(|o| format!("{} {}", o.name(), self.count(*o)))
            .collect();
        out.push_str(&format!(
            "  rows {}: {}, pending {}\n",
            self.total_rows,
            counts.join(", "),
            self.pending
        ));
        let this_run: u64 = self.this_run.values().sum();
        let lost = match self.absent_after_lost_answer {
            0 => String::new(),
            n => format!(
                " ({} absent after a lost answer: most likely removed by this run)",
                crate::client::plural(n, "row")
            ),
        };
        let unlinked = self.this_run.get(&Outcome::Unlinked).copied().unwrap_or(0);
        let links = if self.links_removed != unlinked {
            format!(
                ", {} removed",
                crate::client::plural(self.links_removed, "link")
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  this run: {} in {:.1}s{links}{lost}\n",
            crate::client::plural(this_run, "row"),
            self.elapsed.as_secs_f64()
        ));
        for (name, v) in &self.vendors {
            out.push_str(&format!(
                "  vendor {name}: {}, {:.2} requests/s, {}\n",
                crate::client::plural(v.requests, "request"),
                v.requests_per_s,
                crate::client::plural(v.rate_limited, "rate-limit answer")
            ));
        }
        for (name, e) in &self.estimate {
            out.push_str(&format!(
                "  estimate {name}: {}{} would be sent ({}) at {}/s: about {}\n",
                crate::client::plural(e.rows, "row"),
                if e.links == e.rows {
                    String::new()
                } else {
                    format!(" ({})", crate::client::plural(e.links, "link"))
                },
                crate::client::plural(e.calls, "call"),
                e.rate,
                humantime::format_duration(std::time::Duration::from_secs(e.seconds.ceil() as u64))
            ));
        }
        out.push_str(&format!("  report: {}\n", self.report.display()));
        out
    }

    /// The metrics file's last write: the job's counts, this run's requests, the end and the
    /// exit code.
    pub fn metrics(&self) -> crate::metrics::Snapshot {
        crate::metrics::Snapshot {
            job: self.job.clone(),
            rows: self.counts.clone(),
            pending: Some(self.pending),
            vendors: self
                .vendors
                .iter()
                .map(|(name, v)| (name.clone(), (v.requests, v.rate_limited)))
                .collect(),
            started_at: self.started_at,
            end: Some((SystemTime::now(), self.exit_code())),
        }
    }

    /// Write the JSON summary (owner-only, like every file holding job data).
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // Never over the report (`--summary` naming it would have emptied it).
        if crate::fsutil::identity(path)? == crate::fsutil::identity(&self.report)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is the report file: give the summary its own path",
                    path.display()
                ),
            ));
        }
        let mut file = create_private(path, false)?;
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        file.write_all(&json)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(complete: bool, failed: u64) -> Summary {
        Summary {
            job: "j".into(),
            dry_run: false,
            report: "r.csv".into(),
            counts: BTreeMap::from([(Outcome::Unlinked, 3), (Outcome::Failed, failed)]),
            this_run: BTreeMap::new(),
            pending: 0,
            total_rows: 3 + failed,
            elapsed: Duration::from_millis(1500),
            started_at: SystemTime::UNIX_EPOCH,
            vendors: BTreeMap::new(),
            complete,
            already_complete: false,
            stopped: None,
            halted: false,
            absent_after_lost_answer: 0,
            links_removed: 0,
            estimate: BTreeMap::new(),
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(summary(true, 0).exit_code(), 0);
        assert_eq!(summary(true, 1).exit_code(), 3);
        assert_eq!(summary(false, 0).exit_code(), 4);
    }

    #[test]
    fn json_lists_every_outcome() {
        let v = serde_json::to_value(summary(true, 2)).unwrap();
        assert_eq!(v["counts"]["unlinked"], 3);
        assert_eq!(v["counts"]["failed"], 2);
        assert_eq!(v["counts"]["dry_run"], 0);
        assert_eq!(v["elapsed"], 1.5);
    }
}
