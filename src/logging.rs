//! Log lines: to stderr through the progress bar (so they do not tear it), at the level `-v`
//! and `-q` choose; dependencies only speak up for warnings.

use std::io::IsTerminal;

/// Set up the log subscriber for `-v` / `-q` counts.
pub fn init(verbose: u8, quiet: u8) {
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
