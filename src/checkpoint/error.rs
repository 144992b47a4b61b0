//! Why a checkpoint cannot be used: one error type for opening, loading and rebuilding, whose
//! messages name the file and say what to do, so the binary can print them as they are.

use std::io;
use std::path::{Path, PathBuf};

/// Why a checkpoint cannot be used. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Another process holds the lock; `holder` is what it wrote in the lock file
    /// (`pid=… host=… started=…`), empty if it had not written it yet.
    #[error(
        "checkpoint {} is in use by another run of this job ({}); wait for it to finish or stop it",
        .path.display(),
        if .holder.is_empty() { "holder unknown" } else { .holder.as_str() }
    )]
    Locked { path: PathBuf, holder: String },

    #[error(
        "the input file changed since checkpoint {} was made (then {recorded_len} bytes, hash \
         {recorded_hash:032x}; now {input_len} bytes, hash {input_hash:032x}), so it cannot be \
         resumed; to start over, run again with --fresh (the old checkpoint and report are kept, \
         renamed with a timestamp)",
        .path.display()
    )]
    InputChanged {
        path: PathBuf,
        recorded_len: u64,
        recorded_hash: u128,
        input_len: u64,
        input_hash: u128,
    },

    #[error(
        "checkpoint {} belongs to job `{recorded}`, not `{job}`; give this job its own checkpoint \
         (output.checkpoint), or run with --fresh to start over (the old file is kept, renamed)",
        .path.display()
    )]
    JobChanged {
        path: PathBuf,
        recorded: String,
        job: String,
    },

    /// Damage that a crash cannot cause: a bad line followed by good ones, or a well-formed line
    /// this version cannot read.
    #[error(
        "checkpoint {} is damaged at line {line} ({reason}); it cannot be resumed: restore it \
         from a backup, or run with --fresh to start over (the damaged file is kept, renamed)",
        .path.display()
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    /// From [`read`](super::read): no checkpoint file, or one with nothing in it.
    #[error("no checkpoint at {}: nothing has been recorded for this job yet", .path.display())]
    NotFound { path: PathBuf },
}

impl CheckpointError {
    pub(super) fn io(
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> CheckpointError {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io {
            action,
            path,
            source,
        }
    }

    pub(super) fn corrupt(path: &Path, line: u64, reason: impl Into<String>) -> CheckpointError {
        CheckpointError::Corrupt {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}
