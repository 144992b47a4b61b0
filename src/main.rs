//! `unlinker`: parse the command line, set up logging, build the runtime, run the command, exit
//! with its code. Everything else is in the library crate.

use clap::Parser;
use unlinker::cli::Cli;
use unlinker::commands::{self, say};
use unlinker::pipeline::RunError;
use unlinker::summary::exit;

/// Rows are allocated on the reader thread and freed on the runtime's workers; glibc's allocator
/// serialises that on its arena locks (measured: a sixth of the client's CPU at 30k rows/s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    commands::guard_standard_fds();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout (exit 0); usage errors to stderr (exit 2).
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let log_format = match &cli.command {
        unlinker::cli::Command::Run(args) => args.log_format,
        _ => unlinker::cli::LogFormat::Text,
    };
    unlinker::logging::init(cli.verbose, cli.quiet, log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One worker thread unless TOKIO_WORKER_THREADS says otherwise (tokio reads it when no count
    // is set here). A run is bound by the vendor's rate, not by CPU: one worker sends tens of
    // thousands of rows a second, and on the benchmark's 2-core machine a worker per core spent
    // about a tenth more CPU per row (interleaved A/B, medians of 5) on waking threads and moving
    // tasks between them. Input is read on a thread of its own, and fsyncs hand the worker's
    // place over (`block_in_place`).
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            say(&format!("error: cannot start the async runtime: {e}\n"));
            std::process::exit(exit::FATAL);
        }
    };
    // On a worker thread, not the main thread: the run's consumer then trades events with the row
    // tasks inside the runtime, instead of waking the main thread (a futex) for every batch.
    let code = runtime.block_on(async move {
        match tokio::spawn(commands::dispatch(cli.command)).await {
            Ok(code) => code,
            Err(e) => {
                let error = RunError::Internal(unlinker::pipeline::join_error_text(e));
                say(&format!("error: {error:#}\n"));
                exit::FATAL
            }
        }
    });
    // Under `-q`, the log lines held back are written now if the code calls for them.
    unlinker::logging::release(code);
    // Exit at once: do not wait for blocking threads (an input reader) to finish.
    std::process::exit(code);
}
