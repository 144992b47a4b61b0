//! The command line: clap types and the parsers of flag values, nothing else. What each
//! command does is in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "unlinker",
    version,
    about = "Remove external identity links in bulk: rate-limited, resumable, auditable",
    after_help = "Exit codes: 0 all rows done, 1 fatal error, 2 usage, 3 rows failed or invalid, 4 stopped as asked (resumable), 5 job locked by another run, 6 halted: fix the cause, then resume."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); logs go to stderr
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: -q nothing on exit 0 or 4, else warnings, errors and the summary; -qq errors only
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run (or resume) a job
    Run(RunArgs),
    /// Check the job file, its secrets and every input row; no network
    Validate {
        /// The job file (TOML)
        job: PathBuf,
        /// Input file instead of the job's (`-` = stdin)
        #[arg(long, value_name = "PATH")]
        input: Option<String>,
    },
    /// What the checkpoint says: counts per outcome, pending, in doubt, complete?
    Status {
        /// The job file (TOML)
        job: PathBuf,
    },
    /// Write the job's audit report: one self-contained HTML page; no secret, no network
    Audit {
        /// The job file (TOML)
        job: PathBuf,
        /// Where to write the HTML page
        #[arg(long, value_name = "PATH")]
        html: PathBuf,
        /// The latest dry runs' report and runs log as a plan instead
        #[arg(long)]
        dry_run: bool,
    },
    /// List adapters, their row fields, keys and config keys
    Vendors,
    /// Print a shell completion script on stdout
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout
    Man,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML)
    pub job: PathBuf,
    /// Input file (`-` = stdin; then input.format must be set)
    #[arg(long, value_name = "PATH")]
    pub input: Option<String>,
    /// Report file
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Change nothing anywhere; without --check, no network call at all; writes a dry-run report
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: read each row's current state with the vendor's read-only API
    #[arg(long, requires = "dry_run")]
    pub check: bool,
    /// Discard this job's checkpoint and start over (old files are kept, renamed)
    #[arg(long)]
    pub fresh: bool,
    /// Re-attempt rows whose recorded outcome is `failed`
    #[arg(long)]
    pub retry_failed: bool,
    /// Process at most N pending rows in this run, then stop cleanly
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Requests per second, for every vendor of the job; also caps each vendor's burst at max(1, R)
    #[arg(long, value_name = "R", value_parser = rate_value)]
    pub rate: Option<f64>,
    /// Token-bucket burst, for every vendor of the job
    #[arg(long, value_name = "B", value_parser = clap::value_parser!(u32).range(1..=MAX_BURST as i64))]
    pub burst: Option<u32>,
    /// Maximum requests in flight, for every vendor of the job
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_CONCURRENCY as i64))]
    pub concurrency: Option<u32>,
    /// Stop starting rows after this long (e.g. 55m), drain, record, exit 4
    #[arg(long, value_name = "DURATION", value_parser = deadline_value)]
    pub deadline: Option<Duration>,
    /// Write Prometheus text-format metrics to this file
    #[arg(long, value_name = "PATH")]
    pub metrics: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line (ts, level, message, fields)
    #[arg(long, value_name = "F", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// No progress bar
    #[arg(long)]
    pub no_progress: bool,
    /// Also write the run summary as JSON
    #[arg(long, value_name = "PATH")]
    pub summary: Option<PathBuf>,
}

/// Highest `--rate` accepted: far above any vendor's limit, low enough for the limiter's clock.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Highest `--concurrency` accepted.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Highest `--burst` accepted (the job file's limit too).
pub const MAX_BURST: u32 = 1_000_000;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    // Human-readable lines. (Plain comments: a doc comment here would turn `run --help` into
    // its long form.)
    Text,
    // One JSON object per line: ts, level, message and the fields.
    Json,
}

fn deadline_value(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("a deadline must be longer than 0".into()),
        Err(e) => Err(format!("`{s}` is not a duration (like 55m or 90s): {e}")),
    }
}

fn rate_value(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_RATE => Ok(v),
        _ => Err(format!(
            "`{s}` is not a rate: give requests per second, more than 0 and at most {MAX_RATE}"
        )),
    }
}
