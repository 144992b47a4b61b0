//! `--metrics PATH` / `output.metrics`: the run's numbers in Prometheus' text exposition format,
//! for node_exporter's textfile collector (SPEC section 8).
//!
//! The file is replaced atomically — written to a temporary file beside it (owner-only, named
//! `.NAME.tmp`, which the collector ignores as it reads only `*.prom`), fsynced, then renamed
//! over it — so the collector never reads half a file. The consumer writes it as the run starts
//! and about every [`INTERVAL`] ([`Live`]); `unlinker run` writes it once more at the end, with
//! the end time and the exit code.
//!
//! `unlinker_rows` counts the whole job (every run of it, like the summary's counts); the
//! request counters count this run, like a process's counters: they restart at each run, which
//! Prometheus' `rate()` and `increase()` handle as a counter reset.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::client::limit::Limiter;
use crate::report::Outcome;

/// How often the file is replaced during a run.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What one write of the file says.
pub struct Snapshot {
    pub job: String,
    /// Outcomes recorded for the job so far (earlier runs included).
    pub rows: BTreeMap<Outcome, u64>,
    /// Rows without an outcome; `None` while the input has not been counted.
    pub pending: Option<u64>,
    /// Per vendor table: (requests sent this run, rate-limit answers this run).
    pub vendors: BTreeMap<String, (u64, u64)>,
    pub started_at: SystemTime,
    /// When the run ended and its exit code; `None` while it runs.
    pub end: Option<(SystemTime, i32)>,
}

impl Snapshot {
    /// The exposition text: `# HELP` and `# TYPE` before each metric.
    pub fn render(&self) -> String {
        let job = label(&self.job);
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        };
        head(
            &mut out,
            "unlinker_rows",
            "gauge",
            "Rows of the job with this outcome, over every run of the job.",
        );
        for o in Outcome::ALL {
            let n = self.rows.get(&o).copied().unwrap_or(0);
            out.push_str(&format!(
                "unlinker_rows{{job=\"{job}\",outcome=\"{}\"}} {n}\n",
                o.name()
            ));
        }
        if let Some(pending) = self.pending {
            head(
                &mut out,
                "unlinker_rows_pending",
                "gauge",
                "Input rows without an outcome yet.",
            );
            out.push_str(&format!(
                "unlinker_rows_pending{{job=\"{job}\"}} {pending}\n"
            ));
        }
        head(
            &mut out,
            "unlinker_requests_total",
            "counter",
            "HTTP requests sent to the vendor by this run (token fetches, reads and retries included).",
        );
        for (vendor, (requests, _)) in &self.vendors {
            out.push_str(&format!(
                "unlinker_requests_total{{job=\"{job}\",vendor=\"{}\"}} {requests}\n",
                label(vendor)
            ));
        }
        head(
            &mut out,
            "unlinker_rate_limited_total",
            "counter",
            "Rate-limit answers from the vendor to this run.",
        );
        for (vendor, (_, limited)) in &self.vendors {
            out.push_str(&format!(
                "unlinker_rate_limited_total{{job=\"{job}\",vendor=\"{}\"}} {limited}\n",
                label(vendor)
            ));
        }
        head(
            &mut out,
            "unlinker_run_start_timestamp_seconds",
            "gauge",
            "When the latest run started, in seconds since the Unix epoch.",
        );
        out.push_str(&format!(
            "unlinker_run_start_timestamp_seconds{{job=\"{job}\"}} {}\n",
            epoch_seconds(self.started_at)
        ));
        if let Some((ended_at, code)) = self.end {
            head(
                &mut out,
                "unlinker_run_end_timestamp_seconds",
                "gauge",
                "When the latest run ended, in seconds since the Unix epoch.",
            );
            out.push_str(&format!(
                "unlinker_run_end_timestamp_seconds{{job=\"{job}\"}} {}\n",
                epoch_seconds(ended_at)
            ));
            head(
                &mut out,
                "unlinker_last_exit_code",
                "gauge",
                "Exit code of the latest run that ended (0 done, 3 rows failed, 4 stopped, 6 halted).",
            );
            out.push_str(&format!(
                "unlinker_last_exit_code{{job=\"{job}\"}} {code}\n"
            ));
        }
        out
    }

    /// Replace the file at `path` atomically.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        write_atomically(path, self.render().as_bytes())
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn epoch_seconds(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    format!("{secs:.3}")
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let temp: PathBuf = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut file = crate::fsutil::create_private(&temp, false)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        // A symbolic link put at the path since the run's path check is replaced, never
        // followed: rename(2) replaces the name itself.
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The metrics file while a run goes on, fed by the consumer's tick.
pub struct Live {
    path: PathBuf,
    job: String,
    started_at: SystemTime,
    /// Outcomes recorded by earlier runs.
    previous: BTreeMap<Outcome, u64>,
    vendors: Vec<(String, Arc<Limiter>)>,
    /// Rows in the input, once counted (`u64::MAX` until then).
    total_rows: Arc<AtomicU64>,
    last: Option<Instant>,
    warned: bool,
}

impl Live {
    pub fn new(
        path: PathBuf,
        job: String,
        started_at: SystemTime,
        previous: BTreeMap<Outcome, u64>,
        vendors: Vec<(String, Arc<Limiter>)>,
        total_rows: Arc<AtomicU64>,
    ) -> Live {
        Live {
            path,
            job,
            started_at,
            previous,
            vendors,
            total_rows,
            last: None,
            warned: false,
        }
    }

    /// Replace the file when it is due (at once the first time, then every [`INTERVAL`]).
    /// `this_run`: outcomes recorded by this run so far. A failure to write is a warning, once:
    /// metrics never stop a run.
    pub fn tick(&mut self, this_run: &BTreeMap<Outcome, u64>) {
        if self.last.is_some_and(|t| t.elapsed() < INTERVAL) {
            return;
        }
        self.last = Some(Instant::now());
        let mut rows = self.previous.clone();
        for (o, n) in this_run {
            *rows.entry(*o).or_default() += n;
        }
        let recorded: u64 = rows.values().sum();
        let pending = match self.total_rows.load(Ordering::Relaxed) {
            u64::MAX => None,
            total => Some(total.saturating_sub(recorded)),
        };
        let snapshot = Snapshot {
            job: self.job.clone(),
            rows,
            pending,
            vendors: self
                .vendors
                .iter()
                .map(|(name, l)| (name.clone(), (l.requests(), l.rate_limited())))
                .collect(),
            started_at: self.started_at,
            end: None,
        };
        if let Err(e) = snapshot.write(&self.path)
            && !std::mem::replace(&mut self.warned, true)
        {
            tracing::warn!("cannot write metrics {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_outcome_and_the_end_only_after_it() {
        let mut s = Snapshot {
            job: "j".into(),
            rows: BTreeMap::from([(Outcome::Unlinked, 3)]),
            pending: Some(2),
            vendors: BTreeMap::from([("a\"0".to_string(), (7, 1))]),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1500),
            end: None,
        };
        let text = s.render();
        assert!(text.contains("unlinker_rows{job=\"j\",outcome=\"unlinked\"} 3\n"));
        assert!(text.contains("unlinker_rows{job=\"j\",outcome=\"failed\"} 0\n"));
        assert!(text.contains("unlinker_rows_pending{job=\"j\"} 2\n"));
        assert!(text.contains("unlinker_requests_total{job=\"j\",vendor=\"a\\\"0\"} 7\n"));
        assert!(text.contains("unlinker_run_start_timestamp_seconds{job=\"j\"} 1.500\n"));
        assert!(!text.contains("unlinker_last_exit_code"));
        s.end = Some((SystemTime::UNIX_EPOCH, 4));
        assert!(
            s.render()
                .contains("unlinker_last_exit_code{job=\"j\"} 4\n")
        );
    }
}
