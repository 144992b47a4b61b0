//! `unlinker validate`: every row checked as a run would, without any network call or file
//! written; invalid and duplicate rows listed with their lines on stdout.

use std::io::Write;
use std::path::PathBuf;

use super::fatal;
use crate::job::{self, Overrides};
use crate::pipeline;
use crate::summary::exit;

pub(super) fn validate(job_path: PathBuf, input: Option<String>) -> i32 {
    let overrides = Overrides {
        input,
        ..Overrides::default()
    };
    let settings = match job::load(&job_path, &overrides) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    let mut stdout = std::io::stdout().lock();
    let result = pipeline::validate(&settings, |line, message| {
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
