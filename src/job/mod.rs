//! Job file → resolved [`Settings`].
//!
//! Two stages: the raw TOML (every key optional where SPEC allows, unknown keys rejected) plus the
//! command-line overrides are merged once here into `Settings`, which has no `Option` left that the
//! runner would have to interpret. `${NAME}` interpolation, relative paths, output path
//! placeholders, vendor defaults, number ranges and the https-or-loopback rule all live here, so a
//! bad job is refused before any file is written or any connection is made.
//!
//! Interpolation runs over the whole TOML tree first (every string, at any depth), collecting
//! every missing variable; only then are values read, so a number or a duration written as a
//! string (`timeout = "${T}"`, `rate = "${RATE}"`) works like one written bare. Values are read
//! key by key (`section::Section`) rather than through serde, so that every error names its key.
//!
//! The stages are files: `raw` (TOML, interpolation, secret collection), then `resolve` (one
//! function per section of the job file); `paths` holds the output-path rules and `secrets` the
//! redaction of credentials. This file holds what they produce and what callers name.
//!
//! `status` needs no secret (SPEC section 1): [`load_lenient`] resolves the same `name`, input and
//! output sections the same way, but reads the vendor tables only by name and type, so a `${VAR}`
//! or `${file:...}` it cannot resolve there is listed, not an error; it yields [`JobFiles`], never
//! a [`Settings`] a run could be started with.

mod paths;
mod raw;
mod resolve;
mod secrets;
mod section;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

pub use paths::dry_run_path;
pub use resolve::{
    BURST_RANGE, CONCURRENCY_RANGE, DEFAULT_BASE_DELAY, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CONSECUTIVE_FAILURES, DEFAULT_MAX_DELAY, DEFAULT_MAX_RATE_LIMIT_WAIT,
    DEFAULT_TIMEOUT, RATE_RANGE, check_base_url, resolve, resolve_lenient, resolve_lenient_with,
};
pub use secrets::Secrets;
pub use section::MAX_DURATION;

use crate::adapter::{Adapter, VendorKind};
use crate::input::InputSpec;
use crate::report::ReportFormat;

/// A job-file problem. Every message names the file and the key or variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot read job file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("job file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Every `${NAME}` without a variable, with the key using it, in file order.
    #[error(
        "job file {path}: environment variable{} not set: {}",
        if .missing.len() == 1 { " is" } else { "s are" },
        .missing.iter().map(|(key, var)| format!("{var} (used by `{key}`)")).collect::<Vec<_>>().join(", ")
    )]
    MissingVars {
        path: PathBuf,
        missing: Vec<(String, String)>,
    },
    #[error("job file {path}: `{key}`: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// The job's files are not safe to write (SPEC section 6): a symbolic link, or two roles
    /// sharing one file.
    #[error("{message}")]
    Paths { message: String },
}

/// Command-line values that override the job file for one run (SPEC section 1).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub input: Option<String>,
    pub report: Option<PathBuf>,
    /// `--rate`: every vendor's rate; it also caps every vendor's burst at `max(1, R)` (whole
    /// requests, so `--rate 2.5` caps it at 2) unless `--burst` is given.
    pub rate: Option<f64>,
    /// `--burst`: every vendor's token-bucket burst.
    pub burst: Option<u32>,
    pub concurrency: Option<u32>,
    pub dry_run: bool,
}

/// Retry and timeout policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
    pub max_rate_limit_wait: Duration,
}

/// One `[vendors.NAME]` table, resolved.
pub struct VendorSettings {
    /// The table's name: what a row's `vendor` field names, and the report's `vendor` column.
    pub name: String,
    pub kind: VendorKind,
    pub adapter: Arc<dyn Adapter>,
    pub base_url: Url,
    pub rate: f64,
    pub burst: u32,
    pub concurrency: u32,
    /// Share of the vendor's announced limit left to other clients (SPEC section 4), in [0, 1).
    pub reserve: f64,
}

impl std::fmt::Debug for VendorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately not the adapter: it holds credentials.
        f.debug_struct("VendorSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url.as_str())
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("concurrency", &self.concurrency)
            .field("reserve", &self.reserve)
            .finish()
    }
}

/// Everything a run needs, with nothing left to interpret.
#[derive(Debug)]
pub struct Settings {
    pub job_path: PathBuf,
    pub name: String,
    pub input: InputSpec,
    pub report: PathBuf,
    pub report_format: ReportFormat,
    pub checkpoint: PathBuf,
    pub summary: Option<PathBuf>,
    /// The runs log (`output.runs`; default: the report path + `.runs.jsonl`).
    pub runs: PathBuf,
    /// Prometheus metrics (`output.metrics`), if any.
    pub metrics: Option<PathBuf>,
    pub vendors: Vec<VendorSettings>,
    pub retry: RetrySettings,
    pub max_consecutive_failures: u32,
    pub secrets: Secrets,
}

impl Settings {
    pub fn vendor_index(&self, name: &str) -> Option<usize> {
        self.vendors.iter().position(|v| v.name == name)
    }
}

/// What `status` needs of a job, resolved without its secrets ([`load_lenient`]): the files a
/// run of it reads and writes, found exactly as a run finds them.
#[derive(Debug)]
pub struct JobFiles {
    pub job_path: PathBuf,
    pub name: String,
    pub input: InputSpec,
    pub report: PathBuf,
    pub checkpoint: PathBuf,
    pub runs: PathBuf,
    /// `(table name, type as written)` of each `[vendors.NAME]`; nothing else of them is read.
    pub vendors: Vec<(String, String)>,
    /// `(key, variable)` of each `${NAME}` or `${file:PATH}` left unresolved (unset, unreadable):
    /// fine for `status`, needed by `run`. Never a key that decides a file.
    pub unresolved: Vec<(String, String)>,
}

/// Read and resolve a job file.
pub fn load(job_path: &Path, overrides: &Overrides) -> Result<Settings, JobError> {
    let text = std::fs::read_to_string(job_path).map_err(|error| JobError::Read {
        path: job_path.to_path_buf(),
        error,
    })?;
    resolve(job_path, &text, overrides, &|name| std::env::var(name).ok())
}

/// Read a job file for `status`: like [`load`] for everything that decides the job's files
/// (an unset `${VAR}` there is the same error), without needing any secret (SPEC section 1).
pub fn load_lenient(job_path: &Path) -> Result<JobFiles, JobError> {
    let text = std::fs::read_to_string(job_path).map_err(|error| JobError::Read {
        path: job_path.to_path_buf(),
        error,
    })?;
    resolve_lenient(job_path, &text, &|name| std::env::var(name).ok())
}

/// [`load_lenient`] for the files a dry run of the job writes: its dry-run report and runs log.
pub fn load_lenient_dry_run(job_path: &Path) -> Result<JobFiles, JobError> {
    let text = std::fs::read_to_string(job_path).map_err(|error| JobError::Read {
        path: job_path.to_path_buf(),
        error,
    })?;
    let overrides = Overrides {
        dry_run: true,
        ..Overrides::default()
    };
    resolve_lenient_with(job_path, &text, &overrides, &|name| {
        std::env::var(name).ok()
    })
}

/// The job the tests of this module's files start from, and a resolver for it.
#[cfg(test)]
pub(crate) mod test_job {
    use std::path::Path;

    use super::{JobError, Overrides, Settings, resolve};

    pub(crate) const MINIMAL: &str = r#"
name = "t1"
[input]
path = "in.csv"
[output]
report = "out/{job}-{input_stem}.csv"
[vendors.a0]
type = "auth0"
domain = "acme.auth0.com"
token = "${TOK}"
"#;

    pub(crate) fn env(name: &str) -> Option<String> {
        (name == "TOK").then(|| "secret-token-value".to_string())
    }

    /// `text` as the job `/jobs/j.toml`, without overrides.
    pub(crate) fn resolve_text(text: &str) -> Result<Settings, JobError> {
        resolve(Path::new("/jobs/j.toml"), text, &Overrides::default(), &env)
    }
}
