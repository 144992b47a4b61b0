//! `unlinker audit JOB --html PATH`: the job's audit report (SPEC section 10), from its report,
//! checkpoint and runs log. No secret and no network; takes no lock, so it works while a run
//! holds the job's lock. Exit 0 when written, 1 when the job has no checkpoint or runs log (or
//! the page cannot be written). With `--dry-run`, the latest dry runs' report and runs log as a
//! plan (exit 1 when no dry run has left a runs log).

use std::path::PathBuf;

use super::{fatal, say};
use crate::audit;
use crate::job::{self, JobError};
use crate::summary::exit;

pub(super) fn audit(job_path: PathBuf, html: PathBuf, dry_run: bool) -> i32 {
    let loaded = if dry_run {
        job::load_lenient_dry_run(&job_path)
    } else {
        job::load_lenient(&job_path)
    };
    let job = match loaded {
        Ok(job) => job,
        Err(e @ JobError::MissingVars { .. }) => {
            return fatal(&format!(
                "{e}\n(audit needs no secret, but it needs every variable that decides the \
                 job's name, input and output files)"
            ));
        }
        Err(e) => return fatal(&e),
    };
    let gathered = if dry_run {
        audit::gather_dry_run(&job)
    } else {
        audit::gather(&job)
    };
    let facts = match gathered {
        Ok(f) => f,
        Err(e) => return fatal(&e),
    };
    let page = audit::html::render(&facts);
    let written = crate::fsutil::create_private(&html, false).and_then(|mut f| {
        use std::io::Write;
        f.write_all(page.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        return fatal(&format!("cannot write {}: {e}", html.display()));
    }
    say(&format!("audit report written to {}\n", html.display()));
    exit::OK
}
