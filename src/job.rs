//! Job file → resolved [`Settings`].
//!
//! Two stages: the raw TOML (every key optional where SPEC allows, unknown keys rejected) plus the
//! command-line overrides are merged once here into `Settings`, which has no `Option` left that the
//! runner would have to interpret. `${NAME}` interpolation, relative paths, output path
//! placeholders, vendor defaults and the https-or-loopback rule all live here, so a bad job is
//! refused before any file is written or any connection is made.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::{Host, Url};

use crate::input::{Format, InputSpec, Source};
use crate::report::ReportFormat;
use crate::vendor::{Adapter, VendorKind};

pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_MAX_CONSECUTIVE_FAILURES: u32 = 50;

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
    #[error("job file {path}: `{key}` uses ${{{var}}}, but environment variable {var} is not set")]
    MissingVar {
        path: PathBuf,
        key: String,
        var: String,
    },
    #[error("job file {path}: `{key}`: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    input: RawInput,
    #[serde(default)]
    defaults: BTreeMap<String, toml::Value>,
    #[serde(default)]
    output: RawOutput,
    vendors: BTreeMap<String, toml::Table>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    halt: RawHalt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    path: String,
    format: Option<Format>,
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    report: Option<String>,
    checkpoint: Option<String>,
    summary: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    base_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_rate_limit_wait: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHalt {
    max_consecutive_failures: Option<u32>,
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

/// Values that must never appear in any output: the values of vendor credential keys (however
/// they were written), scrubbed from every message and rendered request.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<String>);

/// Vendor keys whose values are credentials, whatever their source.
const SECRET_KEYS: &[&str] = &[
    "token",
    "client_secret",
    "api_key",
    "secret",
    "headers",
    "form",
];

/// Secrets shorter than this are not scrubbed from free text: replacing every "1" or "ab" in a
/// message would destroy it while protecting nothing.
const MIN_SCRUB_LEN: usize = 4;

impl Secrets {
    fn add(&mut self, value: &str) {
        if value.len() >= MIN_SCRUB_LEN && !self.0.iter().any(|s| s == value) {
            self.0.push(value.to_string());
            // Longest first, so a secret containing another is replaced whole.
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), crate::vendor::wire::REDACTED);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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
    let raw: RawJob = toml::from_str(text).map_err(|e| JobError::Parse {
        path: path.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let key_err = |key: &str, message: String| JobError::Key {
        path: path.clone(),
        key: key.to_string(),
        message,
    };
    let mut secrets = Secrets::default();
    let interp = |key: &str, value: &str| -> Result<String, JobError> {
        interpolate(value, env).map_err(|var| JobError::MissingVar {
            path: path.clone(),
            key: key.to_string(),
            var,
        })
    };

    let name = interp("name", &raw.name)?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(key_err(
            "name",
            format!("`{name}` must be letters, digits, `.`, `_` or `-`"),
        ));
    }
    let base_dir = job_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));

    // Input.
    let input_text = match &overrides.input {
        Some(p) => p.clone(),
        None => interp("input.path", &raw.input.path)?,
    };
    let source = if input_text == "-" {
        Source::Stdin
    } else if overrides.input.is_some() {
        Source::File(PathBuf::from(&input_text))
    } else {
        Source::File(base_dir.join(&input_text))
    };
    let format = match (&source, raw.input.format) {
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
    for (field, column) in &raw.input.columns {
        let key = format!("input.columns.{field}");
        let column = interp(&key, column)?;
        if let Some((other, _)) = columns.iter().find(|(_, c)| **c == column) {
            return Err(key_err(
                &key,
                format!(
                    "column `{column}` is already mapped to `{other}`: a column can feed one field"
                ),
            ));
        }
        columns.insert(field.clone(), column);
    }
    let mut defaults = BTreeMap::new();
    for (field, value) in &raw.defaults {
        let key = format!("defaults.{field}");
        let text = match value {
            toml::Value::String(s) => interp(&key, s)?,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(key_err(&key, "must be a string, number or boolean".into()));
            }
        };
        defaults.insert(field.clone(), text);
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
    let expand = |template: &str| {
        template
            .replace("{job}", &name)
            .replace("{input_stem}", &input_stem)
            .replace("{date}", &date)
    };
    let report = match (&overrides.report, &raw.output.report) {
        (Some(p), _) => PathBuf::from(expand(&p.to_string_lossy())),
        (None, Some(r)) => base_dir.join(expand(&interp("output.report", r)?)),
        (None, None) => base_dir.join(format!("{name}.report.csv")),
    };
    let report_format = ReportFormat::from_path(&report).ok_or_else(|| {
        key_err(
            "output.report",
            format!("{} must end in .csv or .jsonl", report.display()),
        )
    })?;
    let checkpoint = match &raw.output.checkpoint {
        Some(c) => base_dir.join(expand(&interp("output.checkpoint", c)?)),
        None => {
            let mut p = report.clone().into_os_string();
            p.push(".ckpt");
            PathBuf::from(p)
        }
    };
    // A dry run writes beside the real report, never over it (unless --report names a file).
    let report = if overrides.dry_run && overrides.report.is_none() {
        dry_run_path(&report)
    } else {
        report
    };
    let summary = match &raw.output.summary {
        Some(s) => Some(base_dir.join(expand(&interp("output.summary", s)?))),
        None => None,
    };

    // Vendors.
    if raw.vendors.is_empty() {
        return Err(key_err(
            "vendors",
            "at least one [vendors.NAME] table is required".into(),
        ));
    }
    let mut vendors = Vec::new();
    for (vname, table) in raw.vendors {
        let prefix = format!("vendors.{vname}");
        let mut table =
            interpolate_table(&prefix, table, env).map_err(|(key, var)| JobError::MissingVar {
                path: path.clone(),
                key,
                var,
            })?;
        collect_literal_secrets(&table, &mut secrets);
        let kind_text = match table.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => {
                return Err(key_err(
                    &format!("{prefix}.type"),
                    "must be a string".into(),
                ));
            }
            None => {
                return Err(key_err(
                    &format!("{prefix}.type"),
                    "required: auth0, fusionauth, gigya or newspark".into(),
                ));
            }
        };
        let kind = VendorKind::parse(&kind_text).ok_or_else(|| {
            key_err(
                &format!("{prefix}.type"),
                format!(
                    "unknown vendor type `{kind_text}`: use auth0, fusionauth, gigya or newspark"
                ),
            )
        })?;
        let pacing = kind.pacing();
        let rate =
            take_number(&mut table, "rate").map_err(|m| key_err(&format!("{prefix}.rate"), m))?;
        let burst =
            take_number(&mut table, "burst").map_err(|m| key_err(&format!("{prefix}.burst"), m))?;
        let concurrency = take_number(&mut table, "concurrency")
            .map_err(|m| key_err(&format!("{prefix}.concurrency"), m))?;
        let base_url = match table.remove("base_url") {
            None => None,
            Some(toml::Value::String(s)) => {
                Some(check_base_url(&s).map_err(|m| key_err(&format!("{prefix}.base_url"), m))?)
            }
            Some(_) => {
                return Err(key_err(
                    &format!("{prefix}.base_url"),
                    "must be a string".into(),
                ));
            }
        };
        let (adapter, url) = kind
            .build(table, base_url)
            .map_err(|e| key_err(&format!("{prefix}.{}", e.key), e.message))?;
        // Adapters derive their default host (e.g. from `domain`); the rule applies to that too.
        check_base_url(url.as_str()).map_err(|m| key_err(&prefix, m))?;

        let rate = overrides.rate.or(rate).unwrap_or(pacing.rate);
        if !(rate.is_finite() && rate > 0.0) {
            return Err(key_err(
                &format!("{prefix}.rate"),
                "must be a positive number".into(),
            ));
        }
        let burst = burst.map(|b| b as u32).unwrap_or(pacing.burst).max(1);
        let concurrency = overrides
            .concurrency
            .or(concurrency.map(|c| c as u32))
            .unwrap_or(pacing.concurrency);
        if concurrency == 0 {
            return Err(key_err(
                &format!("{prefix}.concurrency"),
                "must be at least 1".into(),
            ));
        }
        vendors.push(VendorSettings {
            name: vname,
            kind,
            adapter,
            base_url: url,
            rate,
            burst,
            concurrency,
        });
    }

    let retry = RetrySettings {
        max_attempts: raw
            .retry
            .max_attempts
            .unwrap_or(DEFAULT_MAX_ATTEMPTS)
            .max(1),
        base_delay: raw.retry.base_delay.unwrap_or(DEFAULT_BASE_DELAY),
        max_delay: raw.retry.max_delay.unwrap_or(DEFAULT_MAX_DELAY),
        timeout: raw.retry.timeout.unwrap_or(DEFAULT_TIMEOUT),
        max_rate_limit_wait: raw
            .retry
            .max_rate_limit_wait
            .unwrap_or(DEFAULT_MAX_RATE_LIMIT_WAIT),
    };
    if retry.max_delay < retry.base_delay {
        return Err(key_err(
            "retry.max_delay",
            "must not be shorter than retry.base_delay".into(),
        ));
    }
    if retry.timeout.is_zero() {
        return Err(key_err("retry.timeout", "must be longer than 0".into()));
    }

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
        vendors,
        retry,
        max_consecutive_failures: raw
            .halt
            .max_consecutive_failures
            .unwrap_or(DEFAULT_MAX_CONSECUTIVE_FAILURES),
        secrets,
    })
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

/// Replace `${NAME}` with the variable's value; `Err(NAME)` when it is not set.
fn interpolate(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let var = &after[..end];
                let v = env(var).ok_or_else(|| var.to_string())?;
                out.push_str(&v);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn interpolate_table(
    prefix: &str,
    table: toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<toml::Table, (String, String)> {
    let mut out = toml::Table::new();
    for (k, v) in table {
        let key = format!("{prefix}.{k}");
        let v = match v {
            toml::Value::String(s) => {
                toml::Value::String(interpolate(&s, env).map_err(|var| (key, var))?)
            }
            toml::Value::Table(t) => toml::Value::Table(interpolate_table(&key, t, env)?),
            other => other,
        };
        out.insert(k, v);
    }
    Ok(out)
}

fn collect_literal_secrets(table: &toml::Table, secrets: &mut Secrets) {
    for key in SECRET_KEYS {
        match table.get(*key) {
            Some(toml::Value::String(s)) => secrets.add(s),
            Some(toml::Value::Table(t)) => {
                for v in t.values() {
                    if let toml::Value::String(s) = v {
                        secrets.add(s);
                    }
                }
            }
            _ => {}
        }
    }
}

fn take_number(table: &mut toml::Table, key: &str) -> Result<Option<f64>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) if i > 0 => Ok(Some(i as f64)),
        Some(toml::Value::Float(f)) if f > 0.0 && f.is_finite() => Ok(Some(f)),
        Some(_) => Err("must be a positive number".into()),
    }
}

/// A `base_url` must be https unless its host is loopback (SPEC section 2).
pub fn check_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(format!("`{text}` has no host")),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(format!(
            "`{text}` is plain http to a host that is not loopback: use https (http is allowed only for localhost, 127.0.0.0/8 and [::1])"
        )),
        other => Err(format!(
            "`{text}`: scheme `{other}` is not supported: use https"
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
}
