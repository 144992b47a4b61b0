//! Stage two: the interpolated job table plus the command-line overrides, merged once into
//! [`Settings`]. One function per top-level section of the job file (name, input and its columns,
//! defaults, output, vendors, retry, halt), called in file order by [`resolve`], so each rule —
//! a default, a range, which of flag and key wins — sits in one short function with its tests.
//! Every section is read key by key through [`Section`], which names the key in every error and
//! refuses the keys it was not asked for.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::{Host, Url};

use super::section::{self, Section};
use super::{
    JobError, JobFiles, Overrides, RetrySettings, Secrets, Settings, VendorSettings, paths, raw,
};
use crate::adapter::VendorKind;
use crate::input::{Format, InputSpec, Source};
use crate::report::ReportFormat;

/// Top-level keys.
const ROOT_KEYS: &[&str] = &[
    "name", "input", "defaults", "output", "vendors", "retry", "halt",
];

/// Resolve job text; `env` looks up variables (tests pass their own).
pub fn resolve(
    job_path: &Path,
    text: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, JobError> {
    let base_dir = base_dir(job_path);
    let raw = raw::read(job_path, base_dir, text, env, raw::Mode::Strict)?;
    let mut root = Section::new(job_path, String::new(), raw.table);

    let files = resolve_files(&mut root, overrides, base_dir)?;
    let vendors = resolve_vendors(&mut root, overrides)?;
    let retry = resolve_retry(&mut root)?;
    let max_consecutive_failures = resolve_halt(&mut root)?;
    root.finish(ROOT_KEYS)?;

    let (name, input, output) = files;
    Ok(Settings {
        job_path: job_path.to_path_buf(),
        name,
        input,
        report: output.report,
        report_format: output.report_format,
        checkpoint: output.checkpoint,
        summary: output.summary,
        runs: output.runs,
        metrics: output.metrics,
        vendors,
        retry,
        max_consecutive_failures,
        secrets: Secrets::new(raw.secrets),
    })
}

/// Resolve job text leniently, for `status` (SPEC section 1: no secret needed): the name, input
/// and output paths exactly as [`resolve`] does (an unset variable there is the same error), the
/// vendor tables only by name and type. No credential is read into anything and no adapter is
/// built, so an unset `${TOKEN}` or an unreadable `${file:...}` secret is only listed.
pub fn resolve_lenient(
    job_path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JobFiles, JobError> {
    resolve_lenient_with(job_path, text, &Overrides::default(), env)
}

/// [`resolve_lenient`] with overrides (`dry_run`: the files a dry run writes).
pub fn resolve_lenient_with(
    job_path: &Path,
    text: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JobFiles, JobError> {
    let base_dir = base_dir(job_path);
    let raw = raw::read(job_path, base_dir, text, env, raw::Mode::Lenient)?;
    let mut root = Section::new(job_path, String::new(), raw.table);
    let (name, input, output) = resolve_files(&mut root, overrides, base_dir)?;
    let mut vendors = Vec::new();
    if let Some(mut tables) = root.section("vendors")? {
        for vendor in tables.keys() {
            let kind = match tables.section(&vendor)?.and_then(|mut t| t.take("type")) {
                Some(toml::Value::String(kind)) => kind,
                _ => "?".to_string(),
            };
            vendors.push((vendor, kind));
        }
    }
    // `[retry]` and `[halt]` decide nothing `status` shows; `validate` and `run` check them.
    root.take("retry");
    root.take("halt");
    root.finish(ROOT_KEYS)?;
    Ok(JobFiles {
        job_path: job_path.to_path_buf(),
        name,
        input,
        report: output.report,
        checkpoint: output.checkpoint,
        runs: output.runs,
        vendors,
        unresolved: raw.unresolved,
    })
}

/// The folder relative paths (and `${file:...}`) of a job file resolve against.
fn base_dir(job_path: &Path) -> &Path {
    job_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The sections that decide which files a job reads and writes, in file order; shared by
/// [`resolve`] and [`resolve_lenient`] so `status` finds the very checkpoint a run uses.
fn resolve_files(
    root: &mut Section<'_>,
    overrides: &Overrides,
    base_dir: &Path,
) -> Result<(String, InputSpec, Outputs), JobError> {
    let name = resolve_name(root)?;
    let (source, format, mut columns) = resolve_input(root, overrides, base_dir)?;
    let defaults = resolve_defaults(root)?;
    let output = resolve_output(root, overrides, base_dir, &name, &source)?;
    // Not a vendor field: carried to the report beside the fields, never to an adapter.
    let reference = columns.remove(REFERENCE_FIELD);
    let input = InputSpec {
        source,
        format,
        columns,
        defaults,
        reference,
    };
    Ok((name, input, output))
}

/// `name`: required, and safe to put in a path.
fn resolve_name(root: &mut Section<'_>) -> Result<String, JobError> {
    let name = root
        .string("name")?
        .ok_or_else(|| root.err("name", "required: the job's name"))?;
    check_name(&name).map_err(|m| root.err("name", m))?;
    Ok(name)
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

/// `[input]`: where rows come from (`--input` wins over `input.path`; a job-file path is relative
/// to the job's folder, a flag's to the working directory), their format (given, or inferred from
/// the file name; required for stdin) and `input.columns`.
fn resolve_input(
    root: &mut Section<'_>,
    overrides: &Overrides,
    base_dir: &Path,
) -> Result<(Source, Format, BTreeMap<String, String>), JobError> {
    let mut input = root
        .section("input")?
        .ok_or_else(|| root.err("input", "required: an [input] table with `path`"))?;
    let input_text = match &overrides.input {
        Some(p) => p.clone(),
        None => input
            .string("path")?
            .ok_or_else(|| input.err("path", "required"))?,
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
                return Err(input.err("format", format!("`{other}` is not a format: csv or jsonl")));
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
    // `[input]` is read to the end; the keys below are named from the top (`input.format`).
    let format = match (&source, format) {
        (_, Some(f)) => f,
        (Source::Stdin, None) => {
            return Err(root.err(
                "input.format",
                "required when the input is `-` (stdin): csv or jsonl",
            ));
        }
        (Source::File(p), None) => Format::from_path(p).ok_or_else(|| {
            root.err(
                "input.path",
                format!(
                    "cannot infer the format of {}: use .csv, .jsonl or .ndjson, or set input.format",
                    p.display()
                ),
            )
        })?,
    };
    let columns = resolve_columns(raw_columns)?;
    Ok((source, format, columns))
}

/// The `input.columns` name of the column carried into the report's `reference` (SPEC section 5).
const REFERENCE_FIELD: &str = "reference";

/// `[input.columns]`: field → column, each column feeding at most one field.
fn resolve_columns(raw: Option<Section<'_>>) -> Result<BTreeMap<String, String>, JobError> {
    let mut columns: BTreeMap<String, String> = BTreeMap::new();
    let Some(mut raw) = raw else {
        return Ok(columns);
    };
    for field in raw.keys() {
        let column = raw.string(&field)?.expect("the key was listed just now");
        if let Some((other, _)) = columns.iter().find(|(_, c)| **c == column) {
            return Err(raw.err(
                &field,
                format!(
                    "column `{column}` is already mapped to `{other}`: a column can feed one field"
                ),
            ));
        }
        columns.insert(field, column);
    }
    Ok(columns)
}

/// `[defaults]`: field → value for rows that leave it empty, kept as text.
fn resolve_defaults(root: &mut Section<'_>) -> Result<BTreeMap<String, String>, JobError> {
    let mut defaults = BTreeMap::new();
    let Some(mut raw) = root.section("defaults")? else {
        return Ok(defaults);
    };
    for field in raw.keys() {
        let text = match raw.take(&field) {
            Some(toml::Value::String(s)) => s,
            Some(toml::Value::Integer(i)) => i.to_string(),
            Some(toml::Value::Float(f)) => f.to_string(),
            Some(toml::Value::Boolean(b)) => b.to_string(),
            _ => return Err(raw.err(&field, "must be a string, number or boolean")),
        };
        defaults.insert(field, text);
    }
    Ok(defaults)
}

/// The files a run writes, from `[output]` and `--report`.
struct Outputs {
    report: PathBuf,
    report_format: ReportFormat,
    checkpoint: PathBuf,
    summary: Option<PathBuf>,
    runs: PathBuf,
    metrics: Option<PathBuf>,
}

/// `[output]`: placeholders expanded, job-file paths relative to the job's folder, the defaults
/// derived from the report, and a dry run's files moved beside the real ones.
fn resolve_output(
    root: &mut Section<'_>,
    overrides: &Overrides,
    base_dir: &Path,
    name: &str,
    source: &Source,
) -> Result<Outputs, JobError> {
    let input_stem = match source {
        Source::File(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Source::Stdin => "stdin".to_string(),
    };
    let date = today_utc();
    let places = paths::Placeholders {
        job: name,
        input_stem: &input_stem,
        date: &date,
    };
    let mut output = root
        .section("output")?
        .unwrap_or_else(|| root.empty_section("output"));
    // Keys are named from the top: `--report` is a flag, not `output.--report`.
    let expand = |key: &str, template: &str| places.expand(template).map_err(|m| root.err(key, m));
    let report = match (&overrides.report, output.string("report")?) {
        (Some(p), _) => PathBuf::from(expand("--report", &p.to_string_lossy())?),
        (None, Some(r)) => base_dir.join(expand("output.report", &r)?),
        (None, None) => base_dir.join(format!("{name}.report.csv")),
    };
    let report_format = ReportFormat::from_path(&report).ok_or_else(|| {
        root.err(
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
        paths::dry_run_path(&report)
    } else {
        report
    };
    let summary = match output.string("summary")? {
        Some(s) => Some(base_dir.join(expand("output.summary", &s)?)),
        None => None,
    };
    // A dry run keeps its own runs log beside its report.
    let runs = match output.string("runs")? {
        Some(r) if overrides.dry_run => {
            paths::dry_run_path(&base_dir.join(expand("output.runs", &r)?))
        }
        Some(r) => base_dir.join(expand("output.runs", &r)?),
        None => paths::with_suffix(&report, ".runs.jsonl"),
    };
    let metrics = match output.string("metrics")? {
        Some(m) => Some(base_dir.join(expand("output.metrics", &m)?)),
        None => None,
    };
    output.finish(&["report", "checkpoint", "summary", "runs", "metrics"])?;
    Ok(Outputs {
        report,
        report_format,
        checkpoint,
        summary,
        runs,
        metrics,
    })
}

/// Today's date in UTC as YYYY-MM-DD.
fn today_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10].to_string()
}

/// `[vendors]`: at least one `[vendors.NAME]` table, each resolved in name order.
fn resolve_vendors(
    root: &mut Section<'_>,
    overrides: &Overrides,
) -> Result<Vec<VendorSettings>, JobError> {
    let mut vendors = Vec::new();
    if let Some(mut tables) = root.section("vendors")? {
        for name in tables.keys() {
            let table = tables.section(&name)?.expect("the key was listed just now");
            vendors.push(resolve_vendor(name, table, overrides)?);
        }
    }
    if vendors.is_empty() {
        return Err(root.err("vendors", "at least one [vendors.NAME] table is required"));
    }
    Ok(vendors)
}

/// Requests per second a vendor may be given: above a million the limiter's period would round
/// to nothing; below one request in 1,000 s it would overflow no clock but help no one either.
pub const RATE_RANGE: (f64, f64) = (0.001, 1_000_000.0);
/// Token-bucket burst.
pub const BURST_RANGE: (u64, u64) = (1, 1_000_000);
/// Requests in flight per vendor.
pub const CONCURRENCY_RANGE: (u64, u64) = (1, 10_000);

/// One `[vendors.NAME]` table: its `type`, pacing (`--rate`, `--burst` and `--concurrency` win
/// over the table, which wins over the vendor's own pacing; `--rate` alone caps the burst), `base_url`, and the adapter built from the
/// keys left.
fn resolve_vendor(
    name: String,
    mut v: Section<'_>,
    overrides: &Overrides,
) -> Result<VendorSettings, JobError> {
    let kind_text = v.string("type")?.ok_or_else(|| {
        v.err(
            "type",
            "required: auth0, firebase, fusionauth, gigya or newspark",
        )
    })?;
    let kind = VendorKind::parse(&kind_text).ok_or_else(|| {
        v.err(
            "type",
            format!("unknown vendor type `{kind_text}`: use auth0, firebase, fusionauth, gigya or newspark"),
        )
    })?;
    let pacing = kind.pacing();
    let rate = v.number("rate", RATE_RANGE)?;
    let burst = v.whole("burst", BURST_RANGE)?;
    let concurrency = v.whole("concurrency", CONCURRENCY_RANGE)?;
    let reserve = resolve_reserve(&mut v)?;
    let base_url = match v.string("base_url")? {
        None => None,
        Some(s) => Some(check_base_url(&s).map_err(|m| v.err("base_url", m))?),
    };
    let (adapter, url) = kind
        .build(v.take_rest(), base_url)
        .map_err(|e| v.err(&e.key, vendor_key_message(e.message)))?;
    // Adapters derive their default host (e.g. from `domain`); the rule applies to that too.
    check_base_url(url.as_str()).map_err(|m| v.err("", m))?;
    for (key, what, other) in adapter.other_urls() {
        check_base_url(&other).map_err(|m| v.err(key, format!("{what}: {m}")))?;
    }

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
    let burst = match (overrides.burst, overrides.rate) {
        (Some(b), _) => section::check_whole(u64::from(b), BURST_RANGE)
            .map_err(|m| v.err("burst", format!("--burst {m}")))? as u32,
        // A flag's rate with the table's burst would let a whole burst through at once, which
        // is what the flag was asked to prevent (SPEC section 1).
        (None, Some(r)) => burst
            .map_or(pacing.burst, |b| b as u32)
            .min((r.floor() as u32).max(1)),
        (None, None) => burst.map_or(pacing.burst, |b| b as u32),
    }
    .max(1);
    Ok(VendorSettings {
        name,
        kind,
        adapter,
        base_url: url,
        rate,
        burst,
        concurrency,
        reserve,
    })
}

/// `reserve`: the share of the vendor's announced limit (its budget headers) this job leaves to
/// other clients; 0 ≤ reserve < 1, default 0. A reserve of 1 would never send anything.
fn resolve_reserve(v: &mut Section<'_>) -> Result<f64, JobError> {
    let reserve = v.number("reserve", (0.0, 1.0))?.unwrap_or(0.0);
    if reserve >= 1.0 {
        return Err(v.err(
            "reserve",
            "must be at least 0 and less than 1 (a share of the vendor's limit, e.g. 0.3)",
        ));
    }
    Ok(reserve)
}

/// Keys every vendor table takes, read here before the adapter sees the rest.
const COMMON_VENDOR_KEYS: &[&str] = &[
    "type",
    "base_url",
    "rate",
    "burst",
    "concurrency",
    "reserve",
];

/// An adapter's "unknown field `x`; expected one of `a`, `b`" names only the adapter's own keys:
/// say it as every other table does, with every valid key (the common ones first).
fn vendor_key_message(message: String) -> String {
    let Some((_, expected)) = message
        .strip_prefix("unknown field")
        .and_then(|m| m.split_once("expected"))
    else {
        return message;
    };
    let mut valid: Vec<&str> = COMMON_VENDOR_KEYS.to_vec();
    for own in expected.split('`').skip(1).step_by(2) {
        if !valid.contains(&own) {
            valid.push(own);
        }
    }
    format!("unknown key; valid keys here: {}", valid.join(", "))
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

pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(15 * 60);

/// `[retry]`: each key defaulted on its own; the delays must be in order and the timeout not 0.
fn resolve_retry(root: &mut Section<'_>) -> Result<RetrySettings, JobError> {
    let Some(mut r) = root.section("retry")? else {
        return Ok(RetrySettings {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            timeout: DEFAULT_TIMEOUT,
            max_rate_limit_wait: DEFAULT_MAX_RATE_LIMIT_WAIT,
        });
    };
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

pub const DEFAULT_MAX_CONSECUTIVE_FAILURES: u32 = 50;

/// `[halt]`: this many `failed` rows in a row halt the run (0 = never).
fn resolve_halt(root: &mut Section<'_>) -> Result<u32, JobError> {
    let Some(mut halt) = root.section("halt")? else {
        return Ok(DEFAULT_MAX_CONSECUTIVE_FAILURES);
    };
    let max = halt.whole("max_consecutive_failures", (0, u64::from(u32::MAX)))?;
    halt.finish(&["max_consecutive_failures"])?;
    Ok(max.map_or(DEFAULT_MAX_CONSECUTIVE_FAILURES, |m| m as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::test_job::{MINIMAL, env, resolve_text};

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
    fn reserve_defaults_to_zero_and_takes_a_share() {
        assert_eq!(resolve_text(MINIMAL).unwrap().vendors[0].reserve, 0.0);
        for (line, want) in [
            ("reserve = 0.3", 0.3),
            ("reserve = \"0\"", 0.0),
            ("reserve = 0.99", 0.99),
        ] {
            let text = MINIMAL.replace(
                "token = \"${TOK}\"",
                &format!("token = \"${{TOK}}\"\n{line}"),
            );
            assert_eq!(
                resolve_text(&text).unwrap().vendors[0].reserve,
                want,
                "{line}"
            );
        }
        let text = MINIMAL.replace("token = \"${TOK}\"", "token = \"${TOK}\"\nreserve = 1");
        let err = resolve_text(&text).unwrap_err().to_string();
        assert!(err.contains("less than 1"), "{err}");
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
            ("reserve = 1", "vendors.a0.reserve"),
            ("reserve = 1.5", "vendors.a0.reserve"),
            ("reserve = -0.1", "vendors.a0.reserve"),
            ("reserve = \"most\"", "vendors.a0.reserve"),
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
    fn lenient_resolution_finds_the_same_files_without_any_secret() {
        let text = MINIMAL.replace(
            "token = \"${TOK}\"",
            "token = \"${TOK}\"\nrate = \"${RATE}\"\n[retry]\ntimeout = \"${T}\"",
        );
        let strict = resolve(
            Path::new("/jobs/j.toml"),
            &text,
            &Overrides::default(),
            &|n| match n {
                "RATE" => Some("3".into()),
                "T" => Some("5s".into()),
                _ => env(n),
            },
        )
        .unwrap();
        let lenient = resolve_lenient(Path::new("/jobs/j.toml"), &text, &|_| None).unwrap();
        assert_eq!(
            (
                &lenient.name,
                &lenient.input,
                &lenient.report,
                &lenient.checkpoint,
                &lenient.runs
            ),
            (
                &strict.name,
                &strict.input,
                &strict.report,
                &strict.checkpoint,
                &strict.runs
            )
        );
        assert_eq!(lenient.vendors, [("a0".to_string(), "auth0".to_string())]);
        let mut unresolved: Vec<_> = lenient.unresolved.iter().map(|(_, v)| v.as_str()).collect();
        unresolved.sort();
        assert_eq!(unresolved, ["RATE", "T", "TOK"]);
        // The structure is still checked, and a variable in a path is still required.
        let err = resolve_lenient(
            Path::new("/jobs/j.toml"),
            &format!("x = 1\n{MINIMAL}"),
            &|_| None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
        let err = resolve_lenient(
            Path::new("/jobs/j.toml"),
            &MINIMAL.replace("out/{job}", "${OUT}/{job}"),
            &|_| None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("OUT (used by `output.report`)"),
            "{err}"
        );
    }

    // One test per section function, on its table alone.

    /// The top-level table of `text`, read from `/jobs/j.toml`.
    fn root(text: &str) -> Section<'static> {
        Section::new(
            Path::new("/jobs/j.toml"),
            String::new(),
            toml::from_str(text).unwrap(),
        )
    }

    /// The message of `result`'s error, which must name `key`.
    fn err_at<T>(result: Result<T, JobError>, key: &str) -> String {
        let Err(err) = result else {
            panic!("{key}: no error");
        };
        let err = err.to_string();
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        err
    }

    #[test]
    fn name_is_required_and_path_safe() {
        assert_eq!(resolve_name(&mut root("name = \"j-1\"")).unwrap(), "j-1");
        let e = err_at(resolve_name(&mut root("")), "name");
        assert!(e.ends_with("required: the job's name"), "{e}");
        let e = err_at(resolve_name(&mut root("name = 3")), "name");
        assert!(e.contains("must be a string"), "{e}");
        let e = err_at(resolve_name(&mut root("name = \"..\"")), "name");
        assert!(e.contains("must start with a letter or digit"), "{e}");
    }

    #[test]
    fn input_path_format_and_flag() {
        let none = Overrides::default();
        let base = Path::new("/jobs");
        let input = |text: &str, o: &Overrides| resolve_input(&mut root(text), o, base);
        let (source, format, columns) = input("[input]\npath = \"rows.ndjson\"\n", &none).unwrap();
        assert_eq!(source, Source::File("/jobs/rows.ndjson".into()));
        assert_eq!(format, Format::Jsonl);
        assert!(columns.is_empty());
        // The flag wins, relative to the working directory, and the job's path is not read.
        let flag = Overrides {
            input: Some("x/in.csv".into()),
            ..Overrides::default()
        };
        let (source, format, _) = input("[input]\npath = 3\n", &flag).unwrap();
        assert_eq!(
            (source, format),
            (Source::File("x/in.csv".into()), Format::Csv)
        );
        let (source, _, _) = input("[input]\npath = \"-\"\nformat = \"csv\"\n", &none).unwrap();
        assert_eq!(source, Source::Stdin);

        let e = err_at(input("", &none), "input");
        assert!(e.contains("an [input] table with `path`"), "{e}");
        let e = err_at(input("[input]\n", &none), "input.path");
        assert!(e.ends_with("required"), "{e}");
        let e = err_at(input("[input]\npath = \"-\"\n", &none), "input.format");
        assert!(e.contains("stdin"), "{e}");
        let e = err_at(
            input("[input]\npath = \"a.csv\"\nformat = \"xml\"\n", &none),
            "input.format",
        );
        assert!(e.contains("`xml` is not a format"), "{e}");
        let e = err_at(input("[input]\npath = \"a.txt\"\n", &none), "input.path");
        assert!(e.contains("cannot infer the format of /jobs/a.txt"), "{e}");
        let e = err_at(
            input("[input]\npath = \"a.csv\"\nsep = 1\n", &none),
            "input.sep",
        );
        assert!(e.contains("valid keys here: path, format, columns"), "{e}");
    }

    #[test]
    fn columns_map_each_column_once() {
        let mut r = root("[columns]\nuser_id = \"Id\"\nprovider = \"P\"\n");
        let columns = resolve_columns(r.section("columns").unwrap()).unwrap();
        assert_eq!(columns["user_id"], "Id");
        assert_eq!(columns["provider"], "P");
        assert!(resolve_columns(None).unwrap().is_empty());
        let mut r = root("[columns]\nuser_id = 1\n");
        let e = err_at(
            resolve_columns(r.section("columns").unwrap()),
            "columns.user_id",
        );
        assert!(e.contains("must be a string"), "{e}");
        let mut r = root("[columns]\na = \"Id\"\nb = \"Id\"\n");
        let e = err_at(resolve_columns(r.section("columns").unwrap()), "columns.b");
        assert!(e.contains("column `Id` is already mapped to `a`"), "{e}");
    }

    #[test]
    fn defaults_are_scalars_kept_as_text() {
        let d = resolve_defaults(&mut root(
            "[defaults]\ns = \"x\"\ni = 7\nf = 1.5\nb = true\n",
        ))
        .unwrap();
        let d: Vec<_> = d.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(d, [("b", "true"), ("f", "1.5"), ("i", "7"), ("s", "x")]);
        assert!(resolve_defaults(&mut root("")).unwrap().is_empty());
        let e = err_at(
            resolve_defaults(&mut root("[defaults]\nlist = [1]\n")),
            "defaults.list",
        );
        assert!(e.ends_with("must be a string, number or boolean"), "{e}");
        err_at(resolve_defaults(&mut root("defaults = 1")), "defaults");
    }

    #[test]
    fn outputs_default_from_the_report_and_move_for_a_dry_run() {
        let source = Source::File("/data/in.csv".into());
        let none = Overrides::default();
        let output = |text: &str, o: &Overrides| {
            resolve_output(&mut root(text), o, Path::new("/jobs"), "j", &source)
        };
        let out = output("", &none).unwrap();
        assert_eq!(out.report, PathBuf::from("/jobs/j.report.csv"));
        assert_eq!(out.report_format, ReportFormat::Csv);
        assert_eq!(out.checkpoint, PathBuf::from("/jobs/j.report.csv.ckpt"));
        assert_eq!(out.runs, PathBuf::from("/jobs/j.report.csv.runs.jsonl"));
        assert_eq!((out.summary, out.metrics), (None, None));

        let dry = Overrides {
            dry_run: true,
            ..Overrides::default()
        };
        let out = output(
            "[output]\nreport = \"{input_stem}.jsonl\"\nruns = \"r.jsonl\"\nsummary = \"s.json\"\n",
            &dry,
        )
        .unwrap();
        assert_eq!(out.report, PathBuf::from("/jobs/in.dry-run.jsonl"));
        assert_eq!(out.report_format, ReportFormat::Jsonl);
        assert_eq!(out.checkpoint, PathBuf::from("/jobs/in.jsonl.ckpt"));
        assert_eq!(out.runs, PathBuf::from("/jobs/r.dry-run.jsonl"));
        assert_eq!(out.summary, Some(PathBuf::from("/jobs/s.json")));

        let e = err_at(
            output("[output]\nreport = \"r.txt\"\n", &none),
            "output.report",
        );
        assert!(e.contains("/jobs/r.txt must end in .csv or .jsonl"), "{e}");
        let flag = Overrides {
            report: Some("{input_stem}/..".into()),
            ..Overrides::default()
        };
        let source = Source::File("...csv".into());
        let e = resolve_output(&mut root(""), &flag, Path::new("/jobs"), "j", &source);
        err_at(e, "--report");
        let e = err_at(output("[output]\nlog = \"l\"\n", &none), "output.log");
        assert!(e.contains("valid keys here: report, checkpoint"), "{e}");
    }

    const AUTH0: &str = "type = \"auth0\"\ndomain = \"acme.auth0.com\"\ntoken = \"t\"\n";

    #[test]
    fn vendors_need_a_table_each_and_at_least_one() {
        let none = Overrides::default();
        let text = format!("[vendors.b]\n{AUTH0}[vendors.a]\n{AUTH0}burst = 0.0\n");
        err_at(resolve_vendors(&mut root(&text), &none), "vendors.a.burst");
        let text = format!("[vendors.b]\n{AUTH0}[vendors.a]\n{AUTH0}");
        let v = resolve_vendors(&mut root(&text), &none).unwrap();
        let names: Vec<_> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        for text in ["", "[vendors]\n"] {
            let e = err_at(resolve_vendors(&mut root(text), &none), "vendors");
            assert!(
                e.ends_with("at least one [vendors.NAME] table is required"),
                "{e}"
            );
        }
        let e = err_at(
            resolve_vendors(&mut root("vendors.a = 1"), &none),
            "vendors.a",
        );
        assert!(e.contains("must be a table"), "{e}");
    }

    #[test]
    fn a_vendor_takes_the_flags_then_its_table_then_its_pacing() {
        let none = Overrides::default();
        // `body` is the inside of `[vendors.v]`.
        let vendor = |body: &str, o: &Overrides| {
            let table = toml::from_str(body).unwrap();
            let v = Section::new(Path::new("/jobs/j.toml"), "vendors.v".into(), table);
            resolve_vendor("v".into(), v, o)
        };
        let pacing = VendorKind::parse("auth0").unwrap().pacing();
        let v = vendor(AUTH0, &none).unwrap();
        assert_eq!(
            (v.name.as_str(), v.kind),
            ("v", VendorKind::parse("auth0").unwrap())
        );
        assert_eq!(
            (v.rate, v.burst, v.concurrency),
            (pacing.rate, pacing.burst, pacing.concurrency)
        );
        let body = format!(
            "{AUTH0}rate = 9
burst = 3
concurrency = 5
"
        );
        let v = vendor(&body, &none).unwrap();
        assert_eq!((v.rate, v.burst, v.concurrency), (9.0, 3, 5));
        let flags = Overrides {
            rate: Some(0.5),
            concurrency: Some(1),
            ..Overrides::default()
        };
        let v = vendor(&body, &flags).unwrap();
        assert_eq!((v.rate, v.burst, v.concurrency), (0.5, 1, 1));
        let flags = Overrides {
            rate: Some(2.5),
            ..Overrides::default()
        };
        let v = vendor(&body.replace("burst = 3", "burst = 30"), &flags).unwrap();
        assert_eq!((v.rate, v.burst), (2.5, 2), "--rate caps the burst");
        let flags = Overrides {
            rate: Some(2.5),
            burst: Some(7),
            ..Overrides::default()
        };
        let v = vendor(&body, &flags).unwrap();
        assert_eq!((v.rate, v.burst), (2.5, 7), "--burst wins");

        let e = err_at(
            vendor("domain = \"acme.auth0.com\"", &none),
            "vendors.v.type",
        );
        assert!(
            e.ends_with("required: auth0, firebase, fusionauth, gigya or newspark"),
            "{e}"
        );
        let e = err_at(vendor("type = \"okta\"", &none), "vendors.v.type");
        assert!(e.contains("unknown vendor type `okta`"), "{e}");
        let body = format!("{AUTH0}base_url = \"http://acme.example\"\n");
        let e = err_at(vendor(&body, &none), "vendors.v.base_url");
        assert!(e.contains("plain http"), "{e}");
        let flags = Overrides {
            concurrency: Some(0),
            ..Overrides::default()
        };
        let e = err_at(vendor(AUTH0, &flags), "vendors.v.concurrency");
        assert!(e.contains("--concurrency 0 is outside 1 to 10000"), "{e}");
    }

    #[test]
    fn retry_keys_default_alone_and_must_be_in_order() {
        let r = resolve_retry(&mut root("")).unwrap();
        assert_eq!(
            r,
            RetrySettings {
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                base_delay: DEFAULT_BASE_DELAY,
                max_delay: DEFAULT_MAX_DELAY,
                timeout: DEFAULT_TIMEOUT,
                max_rate_limit_wait: DEFAULT_MAX_RATE_LIMIT_WAIT,
            }
        );
        let r =
            resolve_retry(&mut root("[retry]\nmax_attempts = 0\nmax_delay = \"2s\"\n")).unwrap();
        assert_eq!((r.max_attempts, r.max_delay), (1, Duration::from_secs(2)));
        assert_eq!(r.base_delay, DEFAULT_BASE_DELAY);
        let e = err_at(
            resolve_retry(&mut root(
                "[retry]\nbase_delay = \"2s\"\nmax_delay = \"1s\"\n",
            )),
            "retry.max_delay",
        );
        assert!(
            e.ends_with("must not be shorter than retry.base_delay"),
            "{e}"
        );
        let e = err_at(
            resolve_retry(&mut root("[retry]\ntimeout = \"0s\"\n")),
            "retry.timeout",
        );
        assert!(e.ends_with("must be longer than 0"), "{e}");
        err_at(
            resolve_retry(&mut root("[retry]\nbackoff = 2\n")),
            "retry.backoff",
        );
    }

    #[test]
    fn halt_defaults_and_takes_a_count() {
        assert_eq!(
            resolve_halt(&mut root("")).unwrap(),
            DEFAULT_MAX_CONSECUTIVE_FAILURES
        );
        let halt = |text: &str| resolve_halt(&mut root(&format!("[halt]\n{text}\n")));
        assert_eq!(halt("").unwrap(), DEFAULT_MAX_CONSECUTIVE_FAILURES);
        assert_eq!(halt("max_consecutive_failures = 0").unwrap(), 0);
        assert_eq!(halt("max_consecutive_failures = \"9\"").unwrap(), 9);
        let e = err_at(
            halt("max_consecutive_failures = 4294967296"),
            "halt.max_consecutive_failures",
        );
        assert!(e.contains("outside 0 to 4294967295"), "{e}");
        err_at(halt("after = 1"), "halt.after");
    }
}
