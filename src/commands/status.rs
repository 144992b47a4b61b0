//! `unlinker status`: what the checkpoint says — counts per outcome, pending, in doubt, absent
//! after a lost answer, complete or not, that the input changed or the checkpoint is damaged, and
//! why the last run stopped. Works while a run holds the job's lock, and without the job's
//! secrets (SPEC section 1): the job is read with [`job::load_lenient`], which resolves the files
//! exactly as a run does but never builds a vendor's credentials.
//!
//! Exit 0 whenever the job file can be read; a missing, unreadable or damaged checkpoint, or an
//! input that changed or cannot be read, is something `status` reports, not an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::fatal;
use crate::checkpoint::{self, Binding, CheckpointError, LastStop, Loaded};
use crate::input::spool;
use crate::input::{self, Source};
use crate::job::{self, JobError, JobFiles};
use crate::report::Outcome;
use crate::summary::exit;

pub(super) fn status(job_path: PathBuf) -> i32 {
    let job = match job::load_lenient(&job_path) {
        Ok(job) => job,
        Err(e @ JobError::MissingVars { .. }) => {
            return fatal(&format!(
                "{e}\n(status needs no secret, but it needs every variable that decides the \
                 job's name, input and output files, to find the checkpoint a run would use)"
            ));
        }
        Err(e) => return fatal(&e),
    };
    let _ = std::io::stdout().write_all(status_text(&job).as_bytes());
    exit::OK
}

/// `unlinker status`: what the checkpoint says, as text.
pub fn status_text(job: &JobFiles) -> String {
    let path = &job.checkpoint;
    let mut out = format!("job {}\n  checkpoint: {}\n", job.name, path.display());
    let (binding, loaded) = match checkpoint::read(path) {
        Ok(read) => read,
        Err(CheckpointError::NotFound { .. }) => {
            return format!(
                "job {}: no checkpoint at {}: nothing has run yet\n{}",
                job.name,
                path.display(),
                unresolved_text(job)
            );
        }
        Err(e @ CheckpointError::Corrupt { .. }) => {
            out.push_str(&format!("  state      damaged: {e}\n"));
            out.push_str(&unresolved_text(job));
            return out;
        }
        Err(e) => {
            out.push_str(&format!(
                "  state      unreadable: {e}: {}\n",
                source_of(&e)
            ));
            out.push_str(&unresolved_text(job));
            return out;
        }
    };
    let counts = loaded.counts();
    let recorded: u64 = counts.values().sum();
    let in_doubt = loaded.in_doubt().count() as u64;
    for o in Outcome::ALL {
        out.push_str(&format!(
            "  {:<10} {}\n",
            o.name(),
            counts.get(&o).copied().unwrap_or(0)
        ));
    }
    out.push_str(&format!("  recorded   {recorded}\n"));
    let input = input_state(job, &binding);
    if let Ok((total, _)) = &input {
        out.push_str(&format!(
            "  pending    {}\n",
            total.saturating_sub(recorded)
        ));
    }
    out.push_str(&format!("  in doubt   {in_doubt}\n"));
    let lost = loaded.absent_after_lost_answer();
    if lost > 0 {
        out.push_str(&format!(
            "  absent after a lost answer {lost} (of the absent rows: a run of this job most likely removed them)\n"
        ));
    }
    let state = match input {
        Ok((_, true)) => "the input file changed since the checkpoint was made: `run` will refuse \
                          to resume (use --fresh)"
            .to_string(),
        Ok((total, false)) if total == recorded && in_doubt == 0 => "complete".to_string(),
        Ok(_) => "incomplete: `run` resumes it".to_string(),
        Err(why) => why,
    };
    out.push_str(&format!("  state      {state}\n"));
    out.push_str(&format!("  last run   {}\n", last_run_text(&loaded, path)));
    out.push_str(&unresolved_text(job));
    out
}

/// The input's row count and whether it changed since the checkpoint was made, or why that
/// cannot be told. An input that can be read only once is never read here: the run's kept copy
/// of it is.
fn input_state(job: &JobFiles, binding: &Binding) -> Result<(u64, bool), String> {
    let file = match &job.input.source {
        source if spool::needs_spool(source) => {
            let kept = spool::spool_path(&job.checkpoint);
            if !kept.is_file() {
                return Err(
                    "unknown (the input is not a regular file and no copy of it is kept)".into(),
                );
            }
            kept
        }
        Source::File(p) => p.clone(),
        Source::Stdin => {
            return Err(
                "unknown (the input is not a regular file and no copy of it is kept)".into(),
            );
        }
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        format!(
            "unknown: cannot read the input {} ({e}), so pending rows and whether it changed \
             cannot be told",
            file.display()
        )
    };
    let hash = input::content_hash(&file).map_err(|e| unreadable(&e))?;
    let spec = input::InputSpec {
        source: Source::File(file.clone()),
        ..job.input.clone()
    };
    let total = input::open(&spec)
        .map_err(|e| unreadable(&e))?
        .take_while(|r| r.is_ok())
        .count() as u64;
    Ok((total, hash != binding.input_hash))
}

/// Why the last run stopped, from its end record; or that it left none (killed, or still
/// running), naming what the lock file says of its last holder.
fn last_run_text(loaded: &Loaded, checkpoint: &Path) -> String {
    let stopped = |stop: &LastStop| {
        let at = if stop.at.is_empty() {
            String::new()
        } else {
            format!(" at {}", stop.at)
        };
        format!("stopped: {}{at}", describe_stop(&stop.why))
    };
    if !loaded.activity_after_last_stop()
        && let Some(stop) = loaded.last_stop()
    {
        return stopped(stop);
    }
    let lock = checkpoint::with_suffix(checkpoint, ".lock");
    let holder = std::fs::read_to_string(&lock)
        .ok()
        .map(|note| note.trim().to_string())
        .filter(|note| !note.is_empty())
        .map(|note| format!("; its lock file last named {note}"))
        .unwrap_or_default();
    let before = loaded
        .last_stop()
        .map(|stop| format!("; the run before it {}", stopped(stop)))
        .unwrap_or_default();
    format!("no end record: killed, or still running{holder}{before}")
}

/// A stop reason as `record_stop` was given it, said for an operator.
fn describe_stop(why: &str) -> String {
    match why {
        "complete" => "complete".to_string(),
        "limit" => "--limit reached (resumable: run it again)".to_string(),
        "signal" => "signal (resumable: run it again)".to_string(),
        "deadline" => "--deadline reached (resumable: run it again)".to_string(),
        halt if halt.starts_with("halt") => format!("{halt} (fix the cause, then run it again)"),
        other => other.to_string(),
    }
}

/// The variables and files `status` did without, so an operator knows what a run will need.
fn unresolved_text(job: &JobFiles) -> String {
    if job.unresolved.is_empty() {
        return String::new();
    }
    let list: Vec<String> = job
        .unresolved
        .iter()
        .map(|(key, var)| format!("${{{var}}} (`{key}`)"))
        .collect();
    format!(
        "  not set    {} (not needed by status; `run` needs {})\n",
        list.join(", "),
        if list.len() == 1 { "it" } else { "them" }
    )
}

/// The OS error under a checkpoint I/O error, for the one-line state.
fn source_of(e: &CheckpointError) -> String {
    match e {
        CheckpointError::Io { source, .. } => source.to_string(),
        _ => String::new(),
    }
}
