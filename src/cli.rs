//! Command-line interface: flags, logging set-up, and the four commands.
//!
//! Each command returns its exit code (SPEC section 7); `main` only exits with it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::adapter::VendorKind;
use crate::job::{self, Overrides};
use crate::runner::{self, RunOptions};
use crate::stop::Stop;
use crate::summary::exit;

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

/// Write to stderr, ignoring failure: a closed or broken stderr must not stop a run or change
/// its exit code (SPEC section 8).
pub fn say(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Make sure file descriptors 0, 1 and 2 are open (on /dev/null when the caller closed them):
/// otherwise the first file the run opens (a report, the journal) would get one of those
/// numbers and receive log lines or progress output.
fn guard_standard_fds() {
    #[cfg(unix)]
    {
        use std::os::fd::{AsRawFd, IntoRawFd};
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                Ok(f) if f.as_raw_fd() <= 2 => {
                    // Keep it open for the life of the process: it now stands in for 0, 1 or 2.
                    let _ = f.into_raw_fd();
                }
                _ => break,
            }
        }
    }
}

/// Parse arguments, run the command, return the exit code.
pub fn main() -> i32 {
    guard_standard_fds();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout (exit 0); usage errors to stderr (exit 2).
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    init_logging(cli.verbose, cli.quiet);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One worker thread unless TOKIO_WORKER_THREADS says otherwise (tokio reads it when no count
    // is set here). A run is bound by the vendor's rate, not by CPU: one worker sends tens of
    // thousands of rows a second, and on the benchmark's 2-core machine a worker per core spent
    // about a tenth more CPU per row (interleaved A/B, medians of 5) on waking threads and moving
    // tasks between them. Input is
    // read on a thread of its own, and fsyncs hand the worker's place over (`block_in_place`).
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let runtime = builder
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    // On a worker thread, not the main thread: the run's consumer then trades events with the row
    // tasks inside the runtime, instead of waking the main thread (a futex) for every batch.
    let code = runtime.block_on(async move {
        match tokio::spawn(dispatch(cli.command)).await {
            Ok(code) => code,
            Err(e) => {
                say(&format!(
                    "error: {:#}\n",
                    runner::RunError::Internal(runner::join_error_text(e))
                ));
                exit::FATAL
            }
        }
    });
    if code == exit::FATAL {
        // Do not wait for blocking threads (an input reader) to finish: exit now.
        std::process::exit(code);
    }
    code
}

fn init_logging(verbose: u8, quiet: u8) {
    let level = match (verbose as i8) - (quiet as i8) {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Our crate at the chosen level; dependencies only speak up for warnings.
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,unlinker={level}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriterMaker)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub async fn dispatch(command: Command) -> i32 {
    match command {
        Command::Run(args) => cmd_run(args).await,
        Command::Validate { job, input } => cmd_validate(job, input),
        Command::Status { job } => cmd_status(job),
        Command::Vendors => cmd_vendors(),
    }
}

fn fatal(e: &dyn std::fmt::Display) -> i32 {
    say(&format!("error: {e}\n"));
    exit::FATAL
}

async fn cmd_run(args: RunArgs) -> i32 {
    let overrides = Overrides {
        input: args.input.clone(),
        report: args.report.clone(),
        rate: args.rate,
        concurrency: args.concurrency,
        dry_run: args.dry_run,
    };
    let mut settings = match job::load(&args.job, &overrides) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    // `--summary` overrides the job's, and takes part in the check that no two of the job's
    // files are the same file.
    if args.summary.is_some() {
        settings.summary = args.summary.clone();
    }
    let summary_path = settings.summary.clone();
    let stop = Stop::new();
    install_signal_handlers(stop.clone());
    let opts = RunOptions {
        dry_run: args.dry_run,
        check: args.check,
        fresh: args.fresh,
        retry_failed: args.retry_failed,
        limit: args.limit,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    match runner::run(settings, opts, stop).await {
        Ok(summary) => {
            say(&summary.render());
            if let Some(path) = summary_path
                && let Err(e) = summary.write_json(&path)
            {
                return fatal(&format!("cannot write summary {}: {e}", path.display()));
            }
            summary.exit_code()
        }
        Err(e) => {
            say(&format!("error: {e}\n"));
            e.exit_code()
        }
    }
}

/// First SIGINT, SIGTERM or SIGHUP: stop starting calls and drain. Second: exit at once (still
/// resumable: the journal is written before every call).
fn install_signal_handlers(stop: Stop) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered here, before the run starts, not lazily in the task: a signal in the first
    // instant of a run must drain it too, not kill it the default way.
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (mut int, mut term, mut hup) = match streams {
        (Ok(i), Ok(t), Ok(h)) => (i, t, h),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::warn!("cannot listen for SIGINT/SIGTERM/SIGHUP: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        tracing::warn!(
            "stopping: no new calls; finishing the calls in flight (signal again to exit at once)"
        );
        stop.trigger();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        say("second signal: exiting now; run the job again to resume\n");
        std::process::exit(exit::STOPPED);
    });
}

fn cmd_validate(job_path: PathBuf, input: Option<String>) -> i32 {
    let overrides = Overrides {
        input,
        ..Overrides::default()
    };
    let settings = match job::load(&job_path, &overrides) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    let mut stdout = std::io::stdout().lock();
    let result = runner::validate(&settings, |line, message| {
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = writeln!(stdout, "line {line}: {message}");
    });
    match result {
        Ok(v) => {
            let _ = writeln!(
                stdout,
                "{} rows: {} valid, {} invalid, {} duplicate",
                v.rows, v.valid, v.invalid, v.duplicate
            );
            if v.invalid > 0 {
                exit::ROWS_FAILED
            } else {
                exit::OK
            }
        }
        Err(e) => fatal(&e),
    }
}

fn cmd_status(job_path: PathBuf) -> i32 {
    let settings = match job::load(&job_path, &Overrides::default()) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    match runner::status(&settings) {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            exit::OK
        }
        Err(e) => fatal(&e),
    }
}

fn cmd_vendors() -> i32 {
    let mut out = String::new();
    for kind in VendorKind::all() {
        let doc = kind.doc();
        let p = kind.pacing();
        out.push_str(&format!("{} — {}\n", kind.name(), doc.title));
        out.push_str("  row fields:\n");
        for f in doc.fields {
            let req = if f.required { "required" } else { "optional" };
            out.push_str(&format!("    {:<28} {req:<9} {}\n", f.name, f.rule));
        }
        out.push_str(&format!("  key: {}\n", doc.key));
        out.push_str("  config keys:\n");
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "base_url", "", "override the vendor host (https, or http on loopback)"
        ));
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "rate",
            format!("default {}", p.rate),
            "requests per second"
        ));
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "burst",
            format!("default {}", p.burst),
            "token-bucket burst"
        ));
        out.push_str(&format!(
            "    {:<28} {:<26} {}\n",
            "concurrency",
            format!("default {}", p.concurrency),
            "requests in flight"
        ));
        for c in doc.config {
            let default = if c.default.is_empty() {
                String::new()
            } else {
                format!("default {}", c.default)
            };
            out.push_str(&format!("    {:<28} {default:<26} {}\n", c.name, c.about));
        }
        out.push_str(&format!(
            "  read API (in-doubt rows, --check): {}\n\n",
            if doc.read_api { "yes" } else { "no" }
        ));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    exit::OK
}
