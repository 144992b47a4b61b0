//! `unlinker run`: load the job, install the signal handlers, run the pipeline, print the
//! summary (and write it as JSON when asked).

use std::io::IsTerminal;

use super::{fatal, say};
use crate::cli::RunArgs;
use crate::job::{self, Overrides};
use crate::logging;
use crate::pipeline::{self, RunOptions};
use crate::stop::Stop;
use crate::summary::exit;

pub(super) async fn run(args: RunArgs) -> i32 {
    let overrides = Overrides {
        input: args.input.clone(),
        report: args.report.clone(),
        rate: args.rate,
        burst: args.burst,
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
    if args.metrics.is_some() {
        settings.metrics = args.metrics.clone();
    }
    let summary_path = settings.summary.clone();
    let metrics_path = settings.metrics.clone().filter(|_| !args.dry_run);
    let stop = Stop::new();
    install_signal_handlers(stop.clone());
    let opts = RunOptions {
        dry_run: args.dry_run,
        check: args.check,
        fresh: args.fresh,
        retry_failed: args.retry_failed,
        limit: args.limit,
        deadline: args.deadline,
        // `-q` prints nothing on a run that ends well, and a bar is something.
        progress: !args.no_progress && logging::quiet() == 0 && std::io::stderr().is_terminal(),
    };
    match pipeline::run(settings, opts, stop).await {
        Ok((summary, runs_end)) => {
            if let Some(path) = summary_path
                && let Err(e) = summary.write_json(&path)
            {
                let message = format!("cannot write summary {}: {e}", path.display());
                if let Err(also) = end_runs_log(runs_end, exit::FATAL, Some(&message)) {
                    tracing::warn!("{also}");
                }
                return fatal(&message);
            }
            let code = summary.exit_code();
            if let Err(message) = end_runs_log(runs_end, code, None) {
                return fatal(&message);
            }
            if let Some(path) = &metrics_path
                && let Err(e) = summary.metrics().write(path)
            {
                tracing::warn!("cannot write metrics {}: {e}", path.display());
            }
            // Held warnings (`-q`) first, then the summary they led to.
            logging::release(code);
            if logging::shows_summary(code) {
                say(&summary.render());
            }
            code
        }
        Err(e) => {
            let code = e.exit_code();
            logging::release(code);
            // `-q` is silent about a stop as asked (exit 4: a signal during a pipe copy).
            if code != exit::STOPPED || logging::quiet() == 0 {
                say(&format!("error: {e}\n"));
            }
            code
        }
    }
}

/// The run's end line in the runs log, now that its exit code is known.
fn end_runs_log(end: pipeline::RunsEnd, code: i32, error: Option<&str>) -> Result<(), String> {
    let path = end.path().to_path_buf();
    end.write(code, error)
        .map_err(|e| format!("cannot write runs log {}: {e}", path.display()))
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
        if logging::quiet() == 0 {
            say("second signal: exiting now; run the job again to resume\n");
        }
        std::process::exit(exit::STOPPED);
    });
}
