//! The command line: clap types and the parsers of flag values, nothing else. What each
//! command does is in `commands/`.

use std::path::PathBuf;

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
    /// Less log output (-q warnings only, -qq errors only)
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
    /// List adapters, their row fields, keys and config keys
    Vendors,
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
    /// Requests per second, for every vendor of the job
    #[arg(long, value_name = "R", value_parser = rate_value)]
    pub rate: Option<f64>,
    /// Maximum requests in flight, for every vendor of the job
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_CONCURRENCY as i64))]
    pub concurrency: Option<u32>,
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

fn rate_value(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_RATE => Ok(v),
        _ => Err(format!(
            "`{s}` is not a rate: give requests per second, more than 0 and at most {MAX_RATE}"
        )),
    }
}
