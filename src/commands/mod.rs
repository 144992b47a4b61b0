//! The commands: each returns its exit code (SPEC section 7); the binary only exits with it.
//! Output helpers that never fail live here too: a closed stderr or stdout must not stop a run.

mod audit;
mod completions;
mod man;
mod run;
mod status;
mod validate;
mod vendors;

use std::io::Write;

use crate::cli::Command;
use crate::summary::exit;

pub async fn dispatch(command: Command) -> i32 {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Validate { job, input } => validate::validate(job, input),
        Command::Status { job } => status::status(job),
        Command::Audit { job, html, dry_run } => audit::audit(job, html, dry_run),
        Command::Vendors => vendors::vendors(),
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => man::man(),
    }
}

pub(crate) fn fatal(e: &dyn std::fmt::Display) -> i32 {
    // Under `-q`, the warnings that led here come first.
    crate::logging::release(exit::FATAL);
    say(&format!("error: {e}\n"));
    exit::FATAL
}

/// Write to stderr, ignoring failure: a closed or broken stderr must not stop a run or change
/// its exit code (SPEC section 8).
/// With `--log-format json` the text becomes one JSON line ([`crate::logging::plain`]).
pub fn say(text: &str) {
    let _ = std::io::stderr().write_all(crate::logging::plain(text).as_bytes());
}

/// Write to stdout, ignoring failure (a closed pipe: `unlinker man | head`).
pub(crate) fn write_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Make sure file descriptors 0, 1 and 2 are open (on /dev/null when the caller closed them):
/// otherwise the first file the run opens (a report, the journal) would get one of those
/// numbers and receive log lines or progress output.
pub fn guard_standard_fds() {
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
