//! `unlinker status`: what the checkpoint says — counts per outcome, pending, in doubt, absent
//! after a lost answer, complete or not, or that the input changed. Works while a run holds the
//! job's lock.

use std::io::Write;
use std::path::PathBuf;

use super::fatal;
use crate::checkpoint;
use crate::input::spool;
use crate::input::{self, InputError, Source};
use crate::job::{self, Overrides, Settings};
use crate::pipeline::RunError;
use crate::report::Outcome;
use crate::summary::exit;

pub(super) fn status(job_path: PathBuf) -> i32 {
    let settings = match job::load(&job_path, &Overrides::default()) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    match status_text(&settings) {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            exit::OK
        }
        Err(e) => fatal(&e),
    }
}

/// `unlinker status`: what the checkpoint says, as text. Works while a run holds the lock.
pub fn status_text(settings: &Settings) -> Result<String, RunError> {
    let path = &settings.checkpoint;
    if !path.exists() {
        return Ok(format!(
            "job {}: no checkpoint at {}: nothing has run yet\n",
            settings.name,
            path.display()
        ));
    }
    let (binding, loaded) = checkpoint::read(path)?;
    let counts = loaded.counts();
    let recorded: u64 = counts.values().sum();
    let in_doubt = loaded.in_doubt().count() as u64;
    // An input that can be read only once is never read here: the run's kept copy of it is.
    let input_file = match &settings.input.source {
        source if spool::needs_spool(source) => {
            Some(spool::spool_path(path)).filter(|kept| kept.is_file())
        }
        Source::File(p) => Some(p.clone()),
        Source::Stdin => None,
    };
    let (total, changed) = match input_file {
        Some(p) => {
            let spec = input::InputSpec {
                source: Source::File(p.clone()),
                ..settings.input.clone()
            };
            let total = input::open(&spec)?.take_while(|r| r.is_ok()).count() as u64;
            let hash = input::content_hash(&p).map_err(|error| InputError::Open {
                source_name: p.display().to_string(),
                error,
            })?;
            (Some(total), hash != binding.input_hash)
        }
        None => (None, false),
    };
    let mut out = format!("job {}\n  checkpoint: {}\n", settings.name, path.display());
    for o in Outcome::ALL {
        out.push_str(&format!(
            "  {:<10} {}\n",
            o.name(),
            counts.get(&o).copied().unwrap_or(0)
        ));
    }
    out.push_str(&format!("  recorded   {recorded}\n"));
    if let Some(total) = total {
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
    let state = if changed {
        "the input file changed since the checkpoint was made: `run` will refuse to resume (use --fresh)".to_string()
    } else {
        match total {
            Some(t) if t == recorded && in_doubt == 0 => "complete".to_string(),
            Some(_) => "incomplete: `run` resumes it".to_string(),
            None => {
                "unknown (the input is not a regular file and no copy of it is kept)".to_string()
            }
        }
    };
    out.push_str(&format!("  state      {state}\n"));
    Ok(out)
}
