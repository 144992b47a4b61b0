//! One run per checkpoint: an exclusive OS file lock on `<checkpoint>.lock`.
//!
//! The lock belongs to the open file, so the kernel drops it when the process dies, however it
//! dies: a lock file left on disk by a killed run does not block the next one. The file itself
//! is never deleted (deleting it would let a second run lock a new file while the first still
//! holds the old one); its content only names the holder for the "in use" message.

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::CheckpointError;
use crate::report::create_private;

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Take the lock of the checkpoint at `ckpt` without waiting.
    pub(crate) fn acquire(ckpt: &Path) -> Result<Lock, CheckpointError> {
        let path = super::with_suffix(ckpt, ".lock");
        let io_err = |action, source| CheckpointError::Io {
            action,
            path: path.clone(),
            source,
        };
        // Append mode: opening must not erase the holder's note before we know we hold the lock.
        let mut file = create_private(&path, true).map_err(|e| io_err("create lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                return Err(CheckpointError::Locked {
                    path: ckpt.to_path_buf(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock", e)),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(holder_note().as_bytes()))
            .map_err(|e| io_err("write lock file", e))?;
        Ok(Lock { file, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

/// `pid=… host=… started=…`, for the message a second run prints.
fn holder_note() -> String {
    let mut note = format!("pid={}", std::process::id());
    if let Some(host) = host_name() {
        note.push_str(" host=");
        note.push_str(&host);
    }
    note.push_str(" started=");
    note.push_str(&humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    note.push('\n');
    note
}

fn host_name() -> Option<String> {
    let from_file = fs::read_to_string("/etc/hostname").ok();
    let from_env = || std::env::var("HOSTNAME").ok();
    [from_file, from_env()]
        .into_iter()
        .flatten()
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty() && !h.contains(char::is_whitespace))
}
