//! The run's two lines in the runs log ([`crate::runslog`]): the start line once the checkpoint
//! is held (or, for a dry run, once its report is open), and the end line once the exit code is
//! known ([`RunsEnd::write`], called by `commands::run`, or here after a fatal error).
//!
//! The input's SHA-256 comes from the pass that counts the input's rows for the progress total
//! ([`InputDigest`]): the whole file is read there anyway, on a thread of its own. Only when
//! that pass has not reached the end when the run ends (a dry run, a short `--limit` run, an
//! unreadable record) is the file read once more at the end for it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::input::{self, InputSpec, Records, Source};
use crate::job::{Secrets, Settings};
use crate::report::Outcome;
use crate::runslog::{self, FileFacts, Fingerprint, Hashed, Line, RunsLog, VendorFacts};
use crate::summary::Summary;

use super::row::Lane;
use super::{RunError, start::io_err};

/// The input's fingerprint, as the counting pass finds it.
#[derive(Default)]
pub(super) struct InputDigest(Mutex<Option<Fingerprint>>);

impl InputDigest {
    /// The counting pass starts.
    pub(super) fn begin(self: &Arc<Self>) -> Counting {
        Counting {
            digest: self.clone(),
            hashed: Hashed::default(),
        }
    }

    /// The counting pass's fingerprint if it has read the whole input; else the file hashed
    /// now. Hashing alone (about a gigabyte a second here) is much quicker than waiting for a
    /// pass that also parses every record: a dry run starts its count only once its rows are
    /// all read, and a short `--limit` run ends long before the count of a large input.
    fn finished_or_hash(&self, path: &Path) -> std::io::Result<Fingerprint> {
        let done = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match done {
            Some(fp) => Ok(fp),
            None => runslog::hash_file(path),
        }
    }
}

/// The counting pass's side of [`InputDigest`].
pub(super) struct Counting {
    digest: Arc<InputDigest>,
    hashed: Hashed,
}

impl Counting {
    /// The input's records, every byte read hashed.
    pub(super) fn open(&self, spec: &InputSpec) -> Option<Records> {
        let Source::File(path) = &spec.source else {
            return None;
        };
        let file = std::fs::File::open(path).ok()?;
        let reader = std::io::BufReader::with_capacity(256 * 1024, self.hashed.reader(file));
        input::open_reader(spec, Box::new(reader)).ok()
    }

    /// The pass read the input to its end: its hash is the input's.
    pub(super) fn done(self) {
        *self.digest.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.hashed.fingerprint());
    }
}

/// A run whose start line is written.
pub(super) struct Started {
    log: RunsLog,
    line: Line,
    secrets: Secrets,
}

/// Write the start line. `input_given` is the input as the job names it (before a pipe's copy).
pub(super) fn start(
    settings: &Settings,
    dry_run: bool,
    input_given: &str,
    started_at: SystemTime,
) -> Result<Started, RunError> {
    let scrub = |s: &str| settings.secrets.scrub(s);
    let job = std::fs::read(&settings.job_path)
        .map_err(|e| io_err("cannot read job file", &settings.job_path, e))?;
    let input_bytes = match &settings.input.source {
        Source::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        Source::Stdin => 0,
    };
    let report_bytes = std::fs::metadata(&settings.report).map_or(0, |m| m.len());
    let mut line = Line {
        run: 0,
        event: "start".into(),
        job: settings.name.clone(),
        dry_run,
        started_at: humantime::format_rfc3339_millis(started_at).to_string(),
        ended_at: None,
        exit_code: None,
        stop: None,
        version: env!("CARGO_PKG_VERSION").into(),
        user: scrub(&user()),
        uid: uid(),
        host: scrub(&host()),
        pid: std::process::id(),
        args: std::env::args_os()
            .map(|a| scrub(&a.to_string_lossy()))
            .collect(),
        job_sha256: runslog::sha256_hex(&job),
        input: FileFacts {
            path: scrub(input_given),
            bytes: input_bytes,
            sha256: None,
        },
        report: FileFacts {
            path: scrub(&settings.report.display().to_string()),
            bytes: report_bytes,
            sha256: None,
        },
        counts: None,
        this_run: None,
        vendors: None,
        estimate_seconds: None,
        prev: String::new(),
    };
    super::start::ensure_parent(&settings.runs, "cannot create the runs log folder")?;
    let write_err = |e| io_err("cannot write runs log", &settings.runs, e);
    let mut log = RunsLog::open(&settings.runs).map_err(write_err)?;
    log.start(&mut line).map_err(write_err)?;
    Ok(Started {
        log,
        line,
        secrets: settings.secrets.clone(),
    })
}

/// A run's end line, complete but for the exit code (known once the summary is written).
pub struct RunsEnd {
    log: RunsLog,
    line: Line,
    secrets: Secrets,
}

impl std::fmt::Debug for RunsEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunsEnd")
            .field("log", &self.log.path())
            .field("run", &self.line.run)
            .finish()
    }
}

impl RunsEnd {
    /// Append the end line with the run's exit code; `error` replaces the stop reason when the
    /// run failed after the summary (a summary file that cannot be written).
    pub fn write(mut self, exit_code: i32, error: Option<&str>) -> std::io::Result<()> {
        self.line.ended_at = Some(crate::report::now_rfc3339());
        self.line.exit_code = Some(exit_code);
        if let Some(e) = error {
            self.line.stop = Some(self.secrets.scrub(&format!("error: {e}")));
        }
        self.log.end(&mut self.line)
    }

    pub fn path(&self) -> &Path {
        self.log.path()
    }
}

impl Started {
    /// Everything the end line says but the exit code: the summary's counts, the requests per
    /// vendor, and the input's and report's fingerprints (the report read once, after its last
    /// fsync). Blocking.
    pub(super) fn ending(
        mut self,
        summary: &Summary,
        stop: &str,
        digest: &InputDigest,
        files: (&Path, &Path),
    ) -> RunsEnd {
        let mut counts = outcome_map(&summary.counts);
        counts.insert("pending".into(), summary.pending);
        let mut this_run = outcome_map(&summary.this_run);
        this_run.insert(
            "absent_after_lost_answer".into(),
            summary.absent_after_lost_answer,
        );
        this_run.insert("links_removed".into(), summary.links_removed);
        self.line.counts = Some(counts);
        self.line.this_run = Some(this_run);
        self.line.vendors = Some(
            summary
                .vendors
                .iter()
                .map(|(name, v)| {
                    let facts = VendorFacts {
                        requests: v.requests,
                        rate_limited: v.rate_limited,
                    };
                    (name.clone(), facts)
                })
                .collect(),
        );
        if !summary.estimate.is_empty() {
            let seconds = summary
                .estimate
                .iter()
                .map(|(name, e)| (name.clone(), e.seconds))
                .collect();
            self.line.estimate_seconds = Some(seconds);
        }
        self.line.stop = Some(self.secrets.scrub(stop));
        self.fingerprints(digest, files);
        self.into_end()
    }

    /// Write the end line after a fatal error, and hand the error back: no counts (nothing
    /// tallied can be trusted), the requests sent, the files' fingerprints where they can be read.
    pub(super) fn failed(
        mut self,
        error: RunError,
        lanes: &[Arc<Lane>],
        digest: &InputDigest,
        files: (&Path, &Path),
    ) -> RunError {
        self.line.vendors = Some(vendor_facts(lanes));
        self.line.stop = Some(self.secrets.scrub(&format!("error: {error}")));
        self.fingerprints(digest, files);
        let end = self.into_end();
        let path = end.path().to_path_buf();
        if let Err(e) = end.write(error.exit_code(), None) {
            tracing::warn!("cannot write the runs log {}: {e}", path.display());
        }
        error
    }

    /// The input's and report's lengths and SHA-256; one that cannot be read is left `null`,
    /// with a warning (the run's outcome does not depend on it).
    fn fingerprints(&mut self, digest: &InputDigest, (input, report): (&Path, &Path)) {
        match digest.finished_or_hash(input) {
            Ok(fp) => {
                self.line.input.bytes = fp.bytes;
                self.line.input.sha256 = Some(fp.sha256);
            }
            Err(e) => tracing::warn!("runs log: cannot hash the input {}: {e}", input.display()),
        }
        match runslog::hash_file(report) {
            Ok(fp) => {
                self.line.report.bytes = fp.bytes;
                self.line.report.sha256 = Some(fp.sha256);
            }
            Err(e) => tracing::warn!("runs log: cannot hash the report {}: {e}", report.display()),
        }
    }

    fn into_end(self) -> RunsEnd {
        let mut line = self.line;
        line.event = "end".into();
        RunsEnd {
            log: self.log,
            line,
            secrets: self.secrets,
        }
    }
}

fn vendor_facts(lanes: &[Arc<Lane>]) -> BTreeMap<String, VendorFacts> {
    lanes
        .iter()
        .map(|l| {
            let facts = VendorFacts {
                requests: l.client.limiter.requests(),
                rate_limited: l.client.limiter.rate_limited(),
            };
            (l.client.name().to_string(), facts)
        })
        .collect()
}

fn outcome_map(map: &BTreeMap<Outcome, u64>) -> BTreeMap<String, u64> {
    Outcome::ALL
        .iter()
        .map(|o| (o.name().to_string(), map.get(o).copied().unwrap_or(0)))
        .collect()
}

/// Who runs it: `$USER` or `$LOGNAME`, else the uid.
fn user() -> String {
    ["USER", "LOGNAME"]
        .into_iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty())
        .unwrap_or_else(|| uid().to_string())
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or fails.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counting_pass_hashes_what_it_reads_and_the_end_hashes_what_it_did_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let mut text = String::from("user_id,provider,identity_user_id\n");
        for i in 0..50_000 {
            text.push_str(&format!("auth0|u{i},github,{i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let spec = InputSpec {
            source: Source::File(path.clone()),
            format: input::Format::Csv,
            columns: BTreeMap::new(),
            defaults: BTreeMap::new(),
            reference: None,
        };
        let expected = runslog::hash_file(&path).unwrap();
        assert_eq!(expected.sha256, runslog::sha256_hex(text.as_bytes()));

        let digest = Arc::new(InputDigest::default());
        let counting = digest.begin();
        let rows = counting.open(&spec).unwrap().count();
        assert_eq!(rows, 50_000);
        counting.done();
        // The file changes after the pass: the pass's hash is what the run read.
        std::fs::write(&path, "changed").unwrap();
        assert_eq!(digest.finished_or_hash(&path).unwrap(), expected);

        // A pass that never finished: the file is hashed at the end.
        let unfinished = Arc::new(InputDigest::default());
        let counting = unfinished.begin();
        let _ = counting.open(&spec).unwrap().take(3).count();
        drop(counting);
        let now = unfinished.finished_or_hash(&path).unwrap();
        assert_eq!(now.sha256, runslog::sha256_hex(b"changed"));
    }
}
