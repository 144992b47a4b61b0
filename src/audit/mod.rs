//! The audit report (SPEC section 10): the facts of a job gathered from its report, checkpoint
//! and runs log, then rendered as one self-contained HTML file ([`html`], charts by [`svg`]).
//!
//! The report is streamed record by record: only counts, a per-minute histogram of
//! `finished_at`, and a few examples per failure reason or invalid rule are kept, so a job of
//! millions of rows needs no more memory than one of ten. Nothing here needs a secret or the
//! network; nothing takes the job's lock.

pub mod html;
pub mod svg;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::job::JobFiles;
use crate::row::Format;
use crate::runslog::{self, Line};

/// Examples kept per failure reason or invalid rule.
pub const EXAMPLES: usize = 3;
/// Groups shown per table.
pub const TOP: usize = 20;
/// Distinct groups tracked; rows of any further group are counted as "other reasons".
const MAX_GROUPS: usize = 10_000;

/// One run: its start line and, when it ended, its end line.
#[derive(Debug, Clone)]
pub struct Run {
    pub start: Option<Line>,
    pub end: Option<Line>,
}

impl Run {
    pub fn any(&self) -> &Line {
        self.end
            .as_ref()
            .or(self.start.as_ref())
            .expect("a run has a line")
    }
}

/// Rows grouped by a normalised message.
#[derive(Debug, Default, Clone)]
pub struct Group {
    pub count: u64,
    /// `(line, vendor, key)` of the first rows seen.
    pub examples: Vec<(String, String, String)>,
}

#[derive(Debug, Default)]
pub struct Groups {
    pub map: HashMap<String, Group>,
    pub other: u64,
}

impl Groups {
    fn add(&mut self, message: &str, line: &str, vendor: &str, key: &str) {
        let norm = normalise(message);
        if !self.map.contains_key(&norm) && self.map.len() >= MAX_GROUPS {
            self.other += 1;
            return;
        }
        let g = self.map.entry(norm).or_default();
        g.count += 1;
        if g.examples.len() < EXAMPLES {
            g.examples
                .push((line.to_string(), vendor.to_string(), key.to_string()));
        }
    }

    /// The biggest groups, largest first (ties by message).
    pub fn top(&self, n: usize) -> Vec<(&String, &Group)> {
        let mut v: Vec<_> = self.map.iter().collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    pub fn total(&self) -> u64 {
        self.map.values().map(|g| g.count).sum::<u64>() + self.other
    }
}

/// A message with every run of digits replaced by `#`, so "line 12" and "line 40" group.
pub fn normalise(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// What the report file says, streamed.
#[derive(Debug, Default)]
pub struct ReportFacts {
    pub rows: u64,
    pub outcomes: BTreeMap<String, u64>,
    /// vendor → outcome → rows.
    pub vendors: BTreeMap<String, BTreeMap<String, u64>>,
    /// Unix minute → rows finished in it.
    pub per_minute: BTreeMap<u64, u64>,
    pub failures: Groups,
    pub invalid: Groups,
    /// Records that could not be read (a torn last line).
    pub unreadable: u64,
}

impl ReportFacts {
    fn add(&mut self, line: &str, vendor: &str, key: &str, outcome: &str, message: &str, at: &str) {
        self.rows += 1;
        *self.outcomes.entry(outcome.to_string()).or_default() += 1;
        let vendor_name = if vendor.is_empty() { "(none)" } else { vendor };
        *self
            .vendors
            .entry(vendor_name.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
        if let Ok(t) = humantime::parse_rfc3339_weak(at)
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            *self.per_minute.entry(d.as_secs() / 60).or_default() += 1;
        }
        match outcome {
            "failed" => self.failures.add(message, line, vendor, key),
            "invalid" => self.invalid.add(message, line, vendor, key),
            _ => {}
        }
    }
}

/// Stream a report (CSV or JSONL, by its extension; CSV otherwise).
pub fn read_report(path: &Path) -> std::io::Result<ReportFacts> {
    let mut facts = ReportFacts::default();
    let file = std::fs::File::open(path)?;
    match Format::from_path(path).unwrap_or(Format::Csv) {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(BufReader::with_capacity(64 * 1024, file));
            let headers = reader.headers().map_err(std::io::Error::other)?.clone();
            let col = |name: &str| headers.iter().position(|h| h == name);
            let idx: Vec<Option<usize>> =
                ["line", "vendor", "key", "outcome", "message", "finished_at"]
                    .iter()
                    .map(|n| col(n))
                    .collect();
            let mut record = csv::StringRecord::new();
            loop {
                match reader.read_record(&mut record) {
                    Ok(true) => {
                        let f = |i: usize| idx[i].and_then(|c| record.get(c)).unwrap_or("");
                        facts.add(f(0), f(1), f(2), f(3), f(4), f(5));
                    }
                    Ok(false) => break,
                    Err(_) => facts.unreadable += 1,
                }
            }
        }
        Format::Jsonl => {
            let mut reader = BufReader::with_capacity(64 * 1024, file);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if reader.read_until(b'\n', &mut buf)? == 0 {
                    break;
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&buf) else {
                    facts.unreadable += 1;
                    continue;
                };
                let s = |name: &str| match v.get(name) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                facts.add(
                    &s("line"),
                    &s("vendor"),
                    &s("key"),
                    &s("outcome"),
                    &s("message"),
                    &s("finished_at"),
                );
            }
        }
    }
    Ok(facts)
}

/// Everything the audit report shows.
#[derive(Debug)]
pub struct Facts {
    /// A dry run's plan rather than the job's record.
    pub dry_run: bool,
    /// Dry runs only: whether the latest one read each link's state (`--check`).
    pub checked: bool,
    pub job: String,
    pub job_path: String,
    pub report_path: String,
    pub runs_path: String,
    pub checkpoint_path: String,
    pub input_path: String,
    pub input_sha256: Option<String>,
    pub input_bytes: Option<u64>,
    pub runs: Vec<Run>,
    /// Lines of the runs log that are not JSON `Line`s (shown, never fatal).
    pub bad_lines: usize,
    /// `Ok(lines)` or where the chain breaks.
    pub chain: Result<usize, runslog::Broken>,
    /// vendor → (requests, rate-limit answers), over every run of the job.
    pub rate_limits: BTreeMap<String, (u64, u64)>,
    /// Dry runs with `--check`: the latest end line's estimate, seconds per vendor.
    pub estimate_seconds: Option<BTreeMap<String, f64>>,
    pub report: Result<ReportFacts, String>,
    pub generated_at: String,
}

/// Why no audit report can be made.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("job {job}: no checkpoint at {path}: nothing has run yet")]
    NoCheckpoint { job: String, path: String },
    #[error("job {job}: no runs log at {path}")]
    NoRunsLog { job: String, path: String },
    #[error("cannot read the runs log {path}: {error}")]
    RunsLog { path: String, error: std::io::Error },
}

/// Gather the facts of a job (the main run's report, or with `dry_run` the dry run's).
pub fn gather(job: &JobFiles) -> Result<Facts, AuditError> {
    if !job.checkpoint.is_file() {
        return Err(AuditError::NoCheckpoint {
            job: job.name.clone(),
            path: job.checkpoint.display().to_string(),
        });
    }
    gather_from(job, false)
}

/// Gather the facts of a job's dry runs: `job` as [`crate::job::load_lenient_dry_run`] resolves
/// it (the dry-run report and its own runs log). A dry run leaves no checkpoint.
pub fn gather_dry_run(job: &JobFiles) -> Result<Facts, AuditError> {
    gather_from(job, true)
}

fn gather_from(job: &JobFiles, dry_run: bool) -> Result<Facts, AuditError> {
    let (report, runs_path) = (&job.report, &job.runs);
    if !runs_path.is_file() {
        return Err(AuditError::NoRunsLog {
            job: job.name.clone(),
            path: runs_path.display().to_string(),
        });
    }
    let text = std::fs::read(runs_path).map_err(|error| AuditError::RunsLog {
        path: runs_path.display().to_string(),
        error,
    })?;
    let chain = runslog::verify_bytes(&text);
    let mut runs: BTreeMap<u64, Run> = BTreeMap::new();
    let mut bad_lines = 0;
    let mut input_sha256 = None;
    let mut input_bytes = None;
    let mut rate_limits: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut checked = false;
    let mut estimate_seconds = None;
    for raw in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(line) = serde_json::from_slice::<Line>(raw) else {
            bad_lines += 1;
            continue;
        };
        if line.dry_run != dry_run {
            continue;
        }
        if line.event == "start" {
            checked = line.args.iter().any(|a| a == "--check");
        }
        if let Some(sha) = &line.input.sha256 {
            input_sha256 = Some(sha.clone());
            input_bytes = Some(line.input.bytes);
        }
        let run = runs.entry(line.run).or_insert(Run {
            start: None,
            end: None,
        });
        if line.event == "end" {
            if let Some(vendors) = &line.vendors {
                for (name, v) in vendors {
                    let e = rate_limits.entry(name.clone()).or_default();
                    e.0 += v.requests;
                    e.1 += v.rate_limited;
                }
            }
            if line.estimate_seconds.is_some() {
                estimate_seconds = line.estimate_seconds.clone();
            }
            run.end = Some(line);
        } else {
            run.start = Some(line);
        }
    }
    let report_facts = read_report(report).map_err(|e| format!("{}: {e}", report.display()));
    Ok(Facts {
        dry_run,
        checked,
        job: job.name.clone(),
        job_path: job.job_path.display().to_string(),
        report_path: report.display().to_string(),
        runs_path: runs_path.display().to_string(),
        checkpoint_path: job.checkpoint.display().to_string(),
        input_path: match &job.input.source {
            crate::input::Source::File(p) => p.display().to_string(),
            crate::input::Source::Stdin => "-".into(),
        },
        input_sha256,
        input_bytes,
        runs: runs.into_values().collect(),
        bad_lines,
        chain,
        rate_limits,
        estimate_seconds,
        report: report_facts,
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_normalised() {
        assert_eq!(
            normalise("HTTP 503 after 3 attempts"),
            "HTTP # after # attempts"
        );
        assert_eq!(normalise(""), "");
    }

    #[test]
    fn a_jsonl_report_is_read_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"line":2,"vendor":"auth0","key":"a","outcome":"failed","message":"HTTP 503","finished_at":"2026-12-01T20:00:01.000Z"}"#,
                "\n",
                r#"{"line":3,"vendor":"auth0","key":"b","outcome":"invalid","message":"`x` is empty","finished_at":"2026-12-01T20:02:00.000Z"}"#,
                "\n\n",
                "{\"line\":4,\"torn",
            ),
        )
        .unwrap();
        let r = read_report(&path).unwrap();
        assert_eq!(r.rows, 2);
        assert_eq!(r.unreadable, 1);
        assert_eq!(r.outcomes["failed"], 1);
        assert_eq!(r.per_minute.values().sum::<u64>(), 2);
        let top = r.failures.top(1);
        assert_eq!(top[0].0, "HTTP #");
        assert_eq!(
            top[0].1.examples[0],
            ("2".into(), "auth0".into(), "a".into())
        );
        assert_eq!(r.invalid.total(), 1);
    }

    #[test]
    fn groups_keep_few_examples() {
        let mut g = Groups::default();
        for i in 0..10 {
            g.add(&format!("boom {i}"), &i.to_string(), "v", "k");
        }
        g.add("other", "11", "v", "k");
        let top = g.top(20);
        assert_eq!(top[0].0, "boom #");
        assert_eq!(top[0].1.count, 10);
        assert_eq!(top[0].1.examples.len(), EXAMPLES);
        assert_eq!(g.total(), 11);
    }
}
