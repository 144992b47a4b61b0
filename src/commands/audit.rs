//! `unlinker audit JOB --html PATH`: the job's audit report (SPEC section 10), from its report,
//! checkpoint and runs log. No secret and no network; takes no lock, so it works while a run
//! holds the job's lock. Exit 0 when written, 1 when the job has no checkpoint or runs log (or
//! the page cannot be written).

use std::path::PathBuf;

use super::{fatal, say};
use crate::audit;
use crate::job::{self, JobError};
use crate::summary::exit;

pub(super) fn audit(job_path: PathBuf, html: PathBuf) -> i32 {
    let job = match job::load_lenient(&job_path) {
        Ok(job) => job,
        Err(e @ JobError::MissingVars { .. }) => {
            return fatal(&format!(
                "{e}\n(audit needs no secret, but it needs every variable that decides the \
                 job's name, input and output files)"
            ));
        }
        Err(e) => return fatal(&e),
    };
    let facts = match audit::gather(&job) {
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
