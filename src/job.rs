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
//! key by key ([`Section`]) rather than through serde, so that every error names its key.

mod paths;
mod secrets;
mod section;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

pub use secrets::Secrets;
use section::Section;

use crate::adapter::{Adapter, VendorKind};
use crate::input::{Format, InputSpec, Source};
use crate::report::ReportFormat;

pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_MAX_CONSECUTIVE_FAILURES: u32 = 50;

/// Requests per second a vendor may be given: above a million the limiter's period would round
/// to nothing; below one request in 1,000 s it would overflow no clock but help no one either.
pub const RATE_RANGE: (f64, f64) = (0.001, 1_000_000.0);
/// Token-bucket burst.
pub const BURST_RANGE: (u64, u64) = (1, 1_000_000);
/// Requests in flight per vendor.
pub const CONCURRENCY_RANGE: (u64, u64) = (1, 10_000);
/// Longest duration a job may give (`retry.*`): a year. Longer values would overflow the
/// clock arithmetic of timers and deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

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
    pub rate: Option<f64>,
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

/// Vendor keys whose values are credentials, whatever their source.
const SECRET_KEYS: &[&str] = &[
    "token",
    "client_secret",
    "api_key",
    "secret",
    "headers",
    "form",
];

/// Top-level keys.
const ROOT_KEYS: &[&str] = &[
    "name", "input", "defaults", "output", "vendors", "retry", "halt",
];

/// Read and resolve a job file.
pub fn load(job_path: &Path, overrides: &Overrides) -> Result<Settings, JobError> {
    let text = std::fs::read_to_string(job_path).map_err(|error| JobError::Read {
        path: job_path.to_path_buf(),
        error,
    })?;
    resolve(job_path, &text, overrides, &|name| std::env::var(name).ok())
}

/// Resolve job text; `env` looks up variables (tests pass their own).
pub fn resolve(
    job_path: &Path,
    text: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, JobError> {
    let path = job_path.to_path_buf();
    let base_dir = job_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| JobError::Parse {
        path: path.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut interp = Interpolator {
        env,
        base_dir,
        job_path,
        missing: Vec::new(),
        from_files: Vec::new(),
    };
    interp.table("", &mut doc)?;
    if !interp.missing.is_empty() {
        return Err(JobError::MissingVars {
            path: path.clone(),
            missing: interp.missing,
        });
    }
    let from_files = std::mem::take(&mut interp.from_files);
    let mut root = Section::new(&path, String::new(), doc);
    let key_err = |key: &str, message: String| JobError::Key {
        path: path.clone(),
        key: key.to_string(),
        message,
    };

    let name = root
        .string("name")?
        .ok_or_else(|| key_err("name", "required: the job's name".into()))?;
    check_name(&name).map_err(|m| key_err("name", m))?;

    // Input.
    let mut input = root
        .section("input")?
        .ok_or_else(|| key_err("input", "required: an [input] table with `path`".into()))?;
    let input_text = match &overrides.input {
        Some(p) => p.clone(),
        None => input
            .string("path")?
            .ok_or_else(|| key_err("input.path", "required".into()))?,
    };
    if overrides.input.is_some() {
        input.take("path");
    }
    let format = match input.string("format")? {
        None => None,
        Some(f) => Some(match f.as_str() {
            "csv" => Format::Csv,
            "jsonl" => Format::Jsonl,
            other => {
                return Err(key_err(
                    "input.format",
                    format!("`{other}` is not a format: csv or jsonl"),
                ));
            }
        }),
    };
    let raw_columns = input.section("columns")?;
    input.finish(&["path", "format", "columns"])?;
    let source = if input_text == "-" {
        Source::Stdin
    } else if overrides.input.is_some() {
        Source::File(PathBuf::from(&input_text))
    } else {
        Source::File(base_dir.join(&input_text))
    };
    let format = match (&source, format) {
        (_, Some(f)) => f,
        (Source::Stdin, None) => {
            return Err(key_err(
                "input.format",
                "required when the input is `-` (stdin): csv or jsonl".into(),
            ));
        }
        (Source::File(p), None) => Format::from_path(p).ok_or_else(|| {
            key_err(
                "input.path",
                format!(
                    "cannot infer the format of {}: use .csv, .jsonl or .ndjson, or set input.format",
                    p.display()
                ),
            )
        })?,
    };
    let mut columns: BTreeMap<String, String> = BTreeMap::new();
    if let Some(mut raw) = raw_columns {
        for field in raw.keys() {
            let key = format!("input.columns.{field}");
            let column = raw.string(&field)?.expect("the key was listed just now");
            if let Some((other, _)) = columns.iter().find(|(_, c)| **c == column) {
                return Err(key_err(
                    &key,
                    format!(
                        "column `{column}` is already mapped to `{other}`: a column can feed one field"
                    ),
                ));
            }
            columns.insert(field, column);
        }
    }
    let mut defaults = BTreeMap::new();
    if let Some(mut raw) = root.section("defaults")? {
        for field in raw.keys() {
            let key = format!("defaults.{field}");
            let text = match raw.take(&field) {
                Some(toml::Value::String(s)) => s,
                Some(toml::Value::Integer(i)) => i.to_string(),
                Some(toml::Value::Float(f)) => f.to_string(),
                Some(toml::Value::Boolean(b)) => b.to_string(),
                _ => {
                    return Err(key_err(&key, "must be a string, number or boolean".into()));
                }
            };
            defaults.insert(field, text);
        }
    }
    let input_stem = match &source {
        Source::File(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Source::Stdin => "stdin".to_string(),
    };

    // Outputs.
    let date = today_utc();
    let places = paths::Placeholders {
        job: &name,
        input_stem: &input_stem,
        date: &date,
    };
    let expand = |key: &str, template: &str| places.expand(template).map_err(|m| key_err(key, m));
    let mut output = root
        .section("output")?
        .unwrap_or_else(|| Section::new(&path, "output".into(), toml::Table::new()));
    let report = match (&overrides.report, output.string("report")?) {
        (Some(p), _) => PathBuf::from(expand("--report", &p.to_string_lossy())?),
        (None, Some(r)) => base_dir.join(expand("output.report", &r)?),
        (None, None) => base_dir.join(format!("{name}.report.csv")),
    };
    let report_format = ReportFormat::from_path(&report).ok_or_else(|| {
        key_err(
            "output.report",
            format!("{} must end in .csv or .jsonl", report.display()),
        )
    })?;
    let checkpoint = match output.string("checkpoint")? {
        Some(c) => base_dir.join(expand("output.checkpoint", &c)?),
        None => paths::with_suffix(&report, ".ckpt"),
    };
    // A dry run writes beside the real report, never over it (unless --report names a file).
    let report = if overrides.dry_run && overrides.report.is_none() {
        dry_run_path(&report)
    } else {
        report
    };
    let summary = match output.string("summary")? {
        Some(s) => Some(base_dir.join(expand("output.summary", &s)?)),
        None => None,
    };
    // A dry run keeps its own runs log beside its report.
    let runs = match output.string("runs")? {
        Some(r) if overrides.dry_run => dry_run_path(&base_dir.join(expand("output.runs", &r)?)),
        Some(r) => base_dir.join(expand("output.runs", &r)?),
        None => paths::with_suffix(&report, ".runs.jsonl"),
    };
    let metrics = match output.string("metrics")? {
        Some(m) => Some(base_dir.join(expand("output.metrics", &m)?)),
        None => None,
    };
    output.finish(&["report", "checkpoint", "summary", "runs", "metrics"])?;

    // Vendors.
    let mut secret_values = from_files;
    let vendors = root
        .section("vendors")?
        .map(|v| resolve_vendors(v, overrides, &mut secret_values))
        .transpose()?
        .unwrap_or_default();
    if vendors.is_empty() {
        return Err(key_err(
            "vendors",
            "at least one [vendors.NAME] table is required".into(),
        ));
    }

    let retry = match root.section("retry")? {
        Some(r) => resolve_retry(r)?,
        None => RetrySettings {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            timeout: DEFAULT_TIMEOUT,
            max_rate_limit_wait: DEFAULT_MAX_RATE_LIMIT_WAIT,
        },
    };
    let max_consecutive_failures = match root.section("halt")? {
        Some(mut halt) => {
            let max = halt.whole("max_consecutive_failures", (0, u64::from(u32::MAX)))?;
            halt.finish(&["max_consecutive_failures"])?;
            max.map_or(DEFAULT_MAX_CONSECUTIVE_FAILURES, |m| m as u32)
        }
        None => DEFAULT_MAX_CONSECUTIVE_FAILURES,
    };
    root.finish(ROOT_KEYS)?;

    Ok(Settings {
        job_path: path,
        name,
        input: InputSpec {
            source,
            format,
            columns,
            defaults,
        },
        report,
        report_format,
        checkpoint,
        summary,
        runs,
        metrics,
        vendors,
        retry,
        max_consecutive_failures,
        secrets: Secrets::new(secret_values),
    })
}

/// A job name: letters, digits, `.`, `_`, `-`, starting with a letter or digit (so never `.`,
/// `..` or a hidden file's name once it lands in a path through `{job}`).
fn check_name(name: &str) -> Result<(), String> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let all_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && all_ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must start with a letter or digit and hold only letters, digits, `.`, `_` \
             or `-`"
        ))
    }
}

fn resolve_vendors(
    mut vendors: Section<'_>,
    overrides: &Overrides,
    secret_values: &mut Vec<String>,
) -> Result<Vec<VendorSettings>, JobError> {
    let mut out = Vec::new();
    for vname in vendors.keys() {
        let mut v = vendors
            .section(&vname)?
            .expect("the key was listed just now");
        collect_secrets(v.table(), secret_values);
        let kind_text = v
            .string("type")?
            .ok_or_else(|| v.err("type", "required: auth0, fusionauth, gigya or newspark"))?;
        let kind = VendorKind::parse(&kind_text).ok_or_else(|| {
            v.err(
                "type",
                format!(
                    "unknown vendor type `{kind_text}`: use auth0, fusionauth, gigya or newspark"
                ),
            )
        })?;
        let pacing = kind.pacing();
        let rate = v.number("rate", RATE_RANGE)?;
        let burst = v.whole("burst", BURST_RANGE)?;
        let concurrency = v.whole("concurrency", CONCURRENCY_RANGE)?;
        let base_url = match v.string("base_url")? {
            None => None,
            Some(s) => Some(check_base_url(&s).map_err(|m| v.err("base_url", m))?),
        };
        let (adapter, url) = kind
            .build(v.take_rest(), base_url)
            .map_err(|e| v.err(&e.key, e.message))?;
        // Adapters derive their default host (e.g. from `domain`); the rule applies to that too.
        check_base_url(url.as_str()).map_err(|m| v.err("", m))?;

        let rate = match overrides.rate {
            Some(r) => section::check_number(r, RATE_RANGE)
                .map_err(|m| v.err("rate", format!("--rate {m}")))?,
            None => rate.unwrap_or(pacing.rate),
        };
        let concurrency = match overrides.concurrency {
            Some(c) => section::check_whole(u64::from(c), CONCURRENCY_RANGE)
                .map_err(|m| v.err("concurrency", format!("--concurrency {m}")))?
                as u32,
            None => concurrency.map_or(pacing.concurrency, |c| c as u32),
        };
        out.push(VendorSettings {
            name: vname,
            kind,
            adapter,
            base_url: url,
            rate,
            burst: burst.map_or(pacing.burst, |b| b as u32).max(1),
            concurrency,
        });
    }
    Ok(out)
}

fn resolve_retry(mut r: Section<'_>) -> Result<RetrySettings, JobError> {
    let retry = RetrySettings {
        max_attempts: r
            .whole("max_attempts", (0, 1_000_000))?
            .map_or(DEFAULT_MAX_ATTEMPTS, |n| n as u32)
            .max(1),
        base_delay: r.duration("base_delay")?.unwrap_or(DEFAULT_BASE_DELAY),
        max_delay: r.duration("max_delay")?.unwrap_or(DEFAULT_MAX_DELAY),
        timeout: r.duration("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        max_rate_limit_wait: r
            .duration("max_rate_limit_wait")?
            .unwrap_or(DEFAULT_MAX_RATE_LIMIT_WAIT),
    };
    if retry.max_delay < retry.base_delay {
        return Err(r.err("max_delay", "must not be shorter than retry.base_delay"));
    }
    if retry.timeout.is_zero() {
        return Err(r.err("timeout", "must be longer than 0"));
    }
    r.finish(&[
        "max_attempts",
        "base_delay",
        "max_delay",
        "timeout",
        "max_rate_limit_wait",
    ])?;
    Ok(retry)
}

/// `report.csv` → `report.dry-run.csv`.
pub fn dry_run_path(report: &Path) -> PathBuf {
    let stem = report
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match report.extension() {
        Some(ext) => format!("{stem}.dry-run.{}", ext.to_string_lossy()),
        None => format!("{stem}.dry-run"),
    };
    report.with_file_name(name)
}

/// Today's date in UTC as YYYY-MM-DD.
fn today_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10].to_string()
}

/// Replaces `${NAME}` (environment) and `${file:PATH}` (a file's contents) in every string of
/// the tree, remembering every missing variable instead of stopping at the first.
struct Interpolator<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: &'a Path,
    job_path: &'a Path,
    /// `(key, variable)` of each missing variable, in file order.
    missing: Vec<(String, String)>,
    /// Values read with `${file:...}`: secrets, whatever key they feed.
    from_files: Vec<String>,
}

impl Interpolator<'_> {
    fn table(&mut self, prefix: &str, table: &mut toml::Table) -> Result<(), JobError> {
        for (k, v) in table.iter_mut() {
            let key = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            self.value(&key, v)?;
        }
        Ok(())
    }

    fn value(&mut self, key: &str, value: &mut toml::Value) -> Result<(), JobError> {
        match value {
            toml::Value::String(s) if s.contains("${") => *s = self.string(key, s)?,
            toml::Value::Table(t) => self.table(key, t)?,
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(&format!("{key}[{i}]"), item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn string(&mut self, key: &str, value: &str) -> Result<String, JobError> {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let var = &after[..end];
            if let Some(file) = var.strip_prefix("file:") {
                let text = self.file(key, file)?;
                out.push_str(&text);
                self.from_files.push(text);
            } else {
                match (self.env)(var) {
                    Some(v) => out.push_str(&v),
                    None => self.missing.push((key.to_string(), var.to_string())),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `${file:PATH}`: the file's contents with one trailing newline removed; a warning when
    /// others than its owner may read it.
    fn file(&self, key: &str, file: &str) -> Result<String, JobError> {
        let path = self.base_dir.join(file);
        let err = |message: String| JobError::Key {
            path: self.job_path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let mut text = std::fs::read_to_string(&path).map_err(|e| {
            err(format!(
                "cannot read ${{file:{file}}} ({}): {e}",
                path.display()
            ))
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "{}: `{key}` reads {}, which others than its owner may read (chmod 600 it)",
                    self.job_path.display(),
                    path.display()
                );
            }
        }
        Ok(text)
    }
}

/// Add the values of a vendor table's credential keys (already interpolated) to `out`.
fn collect_secrets(table: &toml::Table, out: &mut Vec<String>) {
    for key in SECRET_KEYS {
        match table.get(*key) {
            Some(toml::Value::String(s)) => out.push(s.clone()),
            Some(toml::Value::Table(t)) => {
                out.extend(t.values().filter_map(|v| v.as_str().map(str::to_string)));
            }
            _ => {}
        }
    }
}

/// A `base_url` must be https unless its host is loopback, and only `scheme://host[:port]` with
/// an optional path prefix (SPEC section 2). Messages never show a password, query or fragment.
pub fn check_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("`{}` is not a URL: {e}", paths::hide_url_parts(text)))?;
    let shown = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{shown}` has user information (`user:password@`): refused; credentials go in the \
             vendor's own keys, never in the URL"
        ));
    }
    if url.query().is_some() {
        return Err(format!(
            "`{shown}` has a query (`?...`): refused; a base_url is scheme://host[:port] with an \
             optional path prefix"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!(
            "`{shown}` has a fragment (`#...`): refused; a base_url is scheme://host[:port] with \
             an optional path prefix"
        ));
    }
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(format!("`{shown}` has no host")),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(format!(
            "`{shown}` is plain http to a host that is not loopback: use https (http is allowed only for localhost, 127.0.0.0/8 and [::1])"
        )),
        other => Err(format!(
            "`{shown}`: scheme `{other}` is not supported: use https"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
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

    fn env(name: &str) -> Option<String> {
        (name == "TOK").then(|| "secret-token-value".to_string())
    }

    fn resolve_text(text: &str) -> Result<Settings, JobError> {
        resolve(Path::new("/jobs/j.toml"), text, &Overrides::default(), &env)
    }

    #[test]
    fn resolves_minimal_job_with_defaults() {
        let s = resolve_text(MINIMAL).unwrap();
        assert_eq!(s.name, "t1");
        assert_eq!(s.input.source, Source::File("/jobs/in.csv".into()));
        assert_eq!(s.report, PathBuf::from("/jobs/out/t1-in.csv"));
        assert_eq!(s.checkpoint, PathBuf::from("/jobs/out/t1-in.csv.ckpt"));
        let v = &s.vendors[0];
        assert_eq!((v.rate, v.burst, v.concurrency), (2.0, 2, 4));
        assert_eq!(v.base_url.as_str(), "https://acme.auth0.com/");
        assert_eq!(s.retry.max_attempts, 6);
        assert_eq!(s.retry.timeout, Duration::from_secs(30));
        assert_eq!(s.max_consecutive_failures, 50);
        assert_eq!(s.secrets.scrub("x secret-token-value y"), "x [redacted] y");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = resolve_text(&MINIMAL.replace("[output]", "colour = 1\n[output]")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = resolve_text(&format!("{MINIMAL}shade = 2\n")).unwrap_err();
        assert!(err.to_string().contains("shade"), "{err}");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = resolve_text(&MINIMAL.replace("${TOK}", "${NOPE}")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("NOPE") && text.contains("vendors.a0.token"),
            "{text}"
        );
    }

    #[test]
    fn base_url_rule() {
        assert!(check_base_url("https://example.com").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://127.9.9.9").is_ok());
        assert!(check_base_url("http://localhost:1").is_ok());
        assert!(check_base_url("http://[::1]:1").is_ok());
        assert!(check_base_url("http://example.com").is_err());
        assert!(check_base_url("http://10.0.0.1").is_err());
        assert!(check_base_url("ftp://127.0.0.1").is_err());
        let err = resolve_text(&MINIMAL.replace(
            "domain = \"acme.auth0.com\"",
            "base_url = \"http://acme.example\"",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("vendors.a0.base_url"), "{err}");
    }

    #[test]
    fn overrides_and_dry_run_path() {
        let o = Overrides {
            rate: Some(7.5),
            concurrency: Some(3),
            dry_run: true,
            ..Overrides::default()
        };
        let s = resolve(Path::new("/jobs/j.toml"), MINIMAL, &o, &env).unwrap();
        assert_eq!(s.vendors[0].rate, 7.5);
        assert_eq!(s.vendors[0].concurrency, 3);
        assert_eq!(s.report, PathBuf::from("/jobs/out/t1-in.dry-run.csv"));
        // The checkpoint stays bound to the real report path.
        assert_eq!(s.checkpoint, PathBuf::from("/jobs/out/t1-in.csv.ckpt"));
    }

    #[test]
    fn a_column_feeds_one_field() {
        let text = MINIMAL.replace(
            "[output]",
            "[input.columns]\nuser_id = \"Id\"\nidentity_user_id = \"Id\"\n[output]",
        );
        let err = resolve_text(&text).unwrap_err().to_string();
        assert!(
            err.contains("input.columns.user_id") && err.contains("`Id`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(resolve_text(&MINIMAL.replace("\"t1\"", "\"t 1\"")).is_err());
        assert!(resolve_text(&MINIMAL.replace("type = \"auth0\"", "type = \"okta\"")).is_err());
        let err = resolve_text(&MINIMAL.replace("in.csv", "in.txt")).unwrap_err();
        assert!(err.to_string().contains("input.path"), "{err}");
        let err = resolve_text(&format!("{MINIMAL}rate = -1\n")).unwrap_err();
        assert!(err.to_string().contains("vendors.a0.rate"), "{err}");
    }

    fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| env(name))
        }
    }

    #[test]
    fn variables_work_in_numbers_and_durations() {
        let text = MINIMAL.replace(
            "token = \"${TOK}\"",
            "token = \"${TOK}\"\nrate = \"${RATE}\"\nburst = \"7\"\nconcurrency = \"${C}\"\n[retry]\ntimeout = \"${T}\"\nmax_attempts = \"6\"\nbase_delay = \"${B}\"\n[halt]\nmax_consecutive_failures = \"${H}\"",
        );
        let vars = &[
            ("RATE", "2.5"),
            ("C", "3"),
            ("T", "45s"),
            ("B", "250ms"),
            ("H", "9"),
        ];
        let s = resolve(
            Path::new("/jobs/j.toml"),
            &text,
            &Overrides::default(),
            &env_with(vars),
        )
        .unwrap();
        let v = &s.vendors[0];
        assert_eq!((v.rate, v.burst, v.concurrency), (2.5, 7, 3));
        assert_eq!(s.retry.timeout, Duration::from_secs(45));
        assert_eq!(s.retry.base_delay, Duration::from_millis(250));
        assert_eq!(s.retry.max_attempts, 6);
        assert_eq!(s.max_consecutive_failures, 9);
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let text = MINIMAL
            .replace("${TOK}", "${NOPE}")
            .replace("\"t1\"", "\"${NAME_VAR}\"")
            + "[retry]\ntimeout = \"${T}\"\n";
        let err = resolve_text(&text).unwrap_err();
        let JobError::MissingVars { missing, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(missing.len(), 3, "{err}");
        let text = err.to_string();
        for part in [
            "NOPE (used by `vendors.a0.token`)",
            "NAME_VAR (used by `name`)",
            "T (used by `retry.timeout`)",
            "/jobs/j.toml",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }

    #[test]
    fn names_that_could_climb_out_of_a_folder_are_refused() {
        for bad in ["..", ".", ".hidden", "-x", "a/b", "", "é"] {
            let err = resolve_text(&MINIMAL.replace("\"t1\"", &format!("\"{bad}\""))).unwrap_err();
            assert!(err.to_string().contains("`name`"), "{bad}: {err}");
        }
        for good in ["a", "9.x_y-z", "auth0-remove.v2"] {
            assert!(resolve_text(&MINIMAL.replace("\"t1\"", &format!("\"{good}\""))).is_ok());
        }
        // An input named `...csv` has the stem `..`.
        let text = MINIMAL
            .replace("in.csv", "...csv")
            .replace("out/{job}-{input_stem}.csv", "out/{input_stem}/r.csv");
        let err = resolve_text(&text).unwrap_err().to_string();
        assert!(
            err.contains("output.report") && err.contains("`..`"),
            "{err}"
        );
    }

    #[test]
    fn base_url_parts_are_refused_by_name_without_showing_secrets() {
        let with = |url: &str| {
            resolve_text(&MINIMAL.replace(
                "domain = \"acme.auth0.com\"",
                &format!("base_url = \"{url}\""),
            ))
            .unwrap_err()
            .to_string()
        };
        let e = with("http://admin:hunter22@127.0.0.1:9/api");
        assert!(
            e.contains("user information") && e.contains("vendors.a0.base_url"),
            "{e}"
        );
        assert!(!e.contains("hunter22") && !e.contains("admin"), "{e}");
        let e = with("https://acme.example/?apiKey=k3y");
        assert!(e.contains("query") && !e.contains("k3y"), "{e}");
        let e = with("https://acme.example/p#frag");
        assert!(e.contains("fragment") && !e.contains("frag`"), "{e}");
        assert!(check_base_url("http://127.0.0.1:1/prefix/").is_ok());
        let e = check_base_url("http://u:pw@[bad").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn numbers_out_of_range_are_refused_before_they_reach_the_limiter() {
        for (line, key) in [
            ("rate = 1e300", "vendors.a0.rate"),
            ("rate = \"1e300\"", "vendors.a0.rate"),
            ("rate = \"nan\"", "vendors.a0.rate"),
            ("rate = 0", "vendors.a0.rate"),
            ("rate = 1000001", "vendors.a0.rate"),
            ("burst = 0", "vendors.a0.burst"),
            ("burst = 2.5", "vendors.a0.burst"),
            ("burst = 1000001", "vendors.a0.burst"),
            ("concurrency = 10001", "vendors.a0.concurrency"),
            ("concurrency = \"many\"", "vendors.a0.concurrency"),
        ] {
            let text = MINIMAL.replace(
                "token = \"${TOK}\"",
                &format!("token = \"${{TOK}}\"\n{line}"),
            );
            let err = resolve_text(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        for (line, key) in [
            ("timeout = \"1000000000y\"", "retry.timeout"),
            ("timeout = 30", "retry.timeout"),
            ("timeout = \"soon\"", "retry.timeout"),
            ("max_rate_limit_wait = \"2y\"", "retry.max_rate_limit_wait"),
            ("max_attempts = \"-1\"", "retry.max_attempts"),
            ("colour = 1", "retry.colour"),
        ] {
            let err = resolve_text(&format!("{MINIMAL}[retry]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        for rate in [1e300, f64::INFINITY, 0.0, 1e-9] {
            let o = Overrides {
                rate: Some(rate),
                ..Overrides::default()
            };
            let err = resolve(Path::new("/jobs/j.toml"), MINIMAL, &o, &env).unwrap_err();
            assert!(err.to_string().contains("--rate"), "{rate}: {err}");
        }
        let o = Overrides {
            concurrency: Some(20_000),
            ..Overrides::default()
        };
        assert!(resolve(Path::new("/jobs/j.toml"), MINIMAL, &o, &env).is_err());
    }

    #[test]
    fn file_values_are_read_trimmed_and_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "from-a-file-123\n").unwrap();
        let text = MINIMAL.replace("${TOK}", "${file:tok}");
        let s = resolve(
            &dir.path().join("j.toml"),
            &text,
            &Overrides::default(),
            &env,
        )
        .unwrap();
        assert_eq!(s.secrets.scrub("a from-a-file-123 b"), "a [redacted] b");
        let err = resolve(
            &dir.path().join("j.toml"),
            &MINIMAL.replace("${TOK}", "${file:missing}"),
            &Overrides::default(),
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("vendors.a0.token"), "{err}");
    }

    #[test]
    fn outputs_must_be_distinct_files_and_not_links() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("j.toml");
        std::fs::write(dir.path().join("in.csv"), "user_id\n").unwrap();
        let settings = |report: &str, extra: &str| {
            let text = MINIMAL
                .replace("out/{job}-{input_stem}.csv", report)
                .replace("[output]\n", &format!("[output]\n{extra}\n"));
            resolve(&job, &text, &Overrides::default(), &env).unwrap()
        };
        settings("r.csv", "").check_paths(false).unwrap();
        let err = settings("in.csv", "")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("report") && err.contains("input"), "{err}");
        assert!(settings("./sub/../in.csv", "").check_paths(true).is_err());
        let err = settings("r.csv", "checkpoint = \"r.csv\"")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checkpoint") && err.contains("report"),
            "{err}"
        );
        // A dry run does not use the checkpoint.
        settings("r.csv", "checkpoint = \"in.csv\"")
            .check_paths(true)
            .unwrap();
        let err = settings("r.csv", "summary = \"r.csv.runs.jsonl\"")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("runs log") && err.contains("summary"), "{err}");
        assert!(
            settings("r.csv", "metrics = \"in.csv\"")
                .check_paths(false)
                .is_err()
        );
        std::fs::hard_link(dir.path().join("in.csv"), dir.path().join("hard.csv")).unwrap();
        assert!(settings("hard.csv", "").check_paths(false).is_err());
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("l.csv")).unwrap();
        let err = settings("l.csv", "")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }
}
