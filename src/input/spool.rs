//! Inputs that can be read only once (stdin, a pipe, a FIFO, `/dev/stdin`, a process
//! substitution's `/dev/fd/N`) are copied into a private spool file first (SPEC section 3).
//!
//! A run reads its input more than once: to fingerprint it for the checkpoint binding, to stream
//! its rows, and to count them for progress. A pipe gives its bytes to the first reader only, so
//! the run, its binding and every resume read the copy instead, never the pipe again.
//!
//! Where the copy lives:
//!
//! - A real run: `<checkpoint>.input` ([`SPOOL_SUFFIX`]), owner-only, beside the checkpoint. A run
//!   copies the stream to `<checkpoint>.input.<pid>.part`, hashing it on the way; once the
//!   checkpoint accepts that hash (a new job, or a resume fed the same bytes again), the part file
//!   replaces the kept copy ([`Spool::commit`]). When the checkpoint refuses it (the input changed,
//!   the job is locked by another run), the part file is removed and the kept copy stays as it was.
//! - A dry run (no checkpoint): `.<report file name>.input.<pid>.part` beside the report, removed
//!   when the run ends.
//!
//! The copy runs on a thread of its own, and the run waits for it *or* the stop flag: a FIFO
//! without a writer blocks in `open(2)` and a silent pipe in `read(2)`, and a signal must still
//! stop the run. A stopped copy is abandoned (the thread ends with the process) and its part file
//! removed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{InputError, Source};
use crate::stop::Stop;

/// The kept copy of a job's non-file input: the checkpoint path plus this.
pub const SPOOL_SUFFIX: &str = ".input";

/// Bytes copied per read.
const COPY_CHUNK: usize = 256 * 1024;

/// Where a real run keeps the copy of its input: `<checkpoint>.input`.
pub fn spool_path(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.as_os_str().to_owned();
    name.push(SPOOL_SUFFIX);
    PathBuf::from(name)
}

/// Whether `source` can be read only once: stdin, or a path that is not a regular file (a FIFO,
/// `/dev/stdin` on a pipe, `/dev/fd/N`). A path that cannot be examined is left to `open`, which
/// reports why.
pub fn needs_spool(source: &Source) -> bool {
    match source {
        Source::Stdin => true,
        // `metadata` follows symbolic links (`/dev/stdin` → `/proc/self/fd/0`) and never blocks.
        Source::File(path) => std::fs::metadata(path).is_ok_and(|m| !m.is_file()),
    }
}

/// A finished copy of the input. Until [`commit`](Spool::commit)ted, dropping it removes the copy.
#[derive(Debug)]
pub struct Spool {
    /// Where the copy was written.
    part: PathBuf,
    /// Where it is kept once the checkpoint accepts it; `None` for a dry run's copy.
    dest: Option<PathBuf>,
    /// xxh3-128 of the bytes (the same fingerprint as [`super::content_hash`]).
    pub hash: u128,
    pub len: u64,
    committed: bool,
}

impl Spool {
    /// The file the run reads: the kept copy (after [`commit`](Spool::commit)), or a dry run's.
    pub fn path(&self) -> &Path {
        self.dest.as_deref().unwrap_or(&self.part)
    }

    /// The checkpoint accepted this copy: make it the kept one (an atomic rename over the old).
    pub fn commit(&mut self) -> io::Result<()> {
        let Some(dest) = &self.dest else {
            return Ok(());
        };
        std::fs::rename(&self.part, dest)?;
        self.committed = true;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: the rename is durable once the folder is synced.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Where a copy goes.
pub enum Place<'a> {
    /// Beside this checkpoint, kept for resumes.
    Checkpoint(&'a Path),
    /// Beside this (dry-run) report, removed at the end of the run.
    DryRun(&'a Path),
}

/// Copy `source` into a private part file at `place`, hashing it, until its end or until `stop`
/// is set ([`InputError::Stopped`]).
pub async fn spool(source: &Source, place: Place<'_>, stop: &Stop) -> Result<Spool, InputError> {
    let pid = std::process::id();
    let (part, dest) = match place {
        Place::Checkpoint(ckpt) => {
            let dest = spool_path(ckpt);
            (with_suffix(&dest, &format!(".{pid}.part")), Some(dest))
        }
        Place::DryRun(report) => {
            let name = report.file_name().unwrap_or_default().to_string_lossy();
            let part = report.with_file_name(format!(".{name}{SPOOL_SUFFIX}.{pid}.part"));
            (part, None)
        }
    };
    let source_name = source.to_string();
    let spool_err = |error| InputError::Spool {
        source_name: source_name.clone(),
        path: part.clone(),
        error,
    };
    if let Some(dir) = part.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(spool_err)?;
    }
    let file = create_part(&part).map_err(spool_err)?;
    // From here on, dropping `spool` removes the part file, however this ends.
    let mut spool = Spool {
        part: part.clone(),
        dest,
        hash: 0,
        len: 0,
        committed: false,
    };
    tracing::info!(
        "copying the input {source_name} into {} (it is not a regular file: the run reads the copy)",
        spool.path().display()
    );

    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let source = source.clone();
        let cancel = cancel.clone();
        // A plain thread, not `spawn_blocking`: one stuck in `open` must not hold up the
        // runtime's shutdown.
        std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || {
                let _ = tx.send(copy(&source, file, &cancel));
            })
            .map_err(spool_err)?;
    }
    let copied = tokio::select! {
        copied = rx => copied,
        () = stop.wait() => {
            cancel.store(true, Ordering::Relaxed);
            return Err(InputError::Stopped { source_name });
        }
    };
    match copied {
        Ok(Ok(Copied { hash, len })) => {
            spool.hash = hash;
            spool.len = len;
            tracing::info!("copied {len} bytes of input");
            Ok(spool)
        }
        Ok(Err(CopyError::Open(error))) => Err(InputError::Open { source_name, error }),
        Ok(Err(CopyError::Read { line, error })) => Err(InputError::Read {
            source_name,
            line,
            error,
        }),
        Ok(Err(CopyError::Write(error))) => Err(spool_err(error)),
        Ok(Err(CopyError::Cancelled)) => Err(InputError::Stopped { source_name }),
        Err(_) => Err(spool_err(io::Error::other(
            "the copying thread ended early",
        ))),
    }
}

/// A new owner-only file at `path`; one left by an earlier process of the same id is replaced.
fn create_part(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = OpenOptions::new();
    // `create_new`: never follows a symbolic link planted at the path.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

struct Copied {
    hash: u128,
    len: u64,
}

enum CopyError {
    Open(io::Error),
    /// `line`: the line being read when it failed.
    Read {
        line: u64,
        error: io::Error,
    },
    Write(io::Error),
    Cancelled,
}

/// Copy `source` to its end into `out`, hashing; fsync `out` at the end.
fn copy(source: &Source, mut out: File, cancel: &AtomicBool) -> Result<Copied, CopyError> {
    let mut input: Box<dyn Read> = match source {
        Source::Stdin => Box::new(io::stdin().lock()),
        Source::File(path) => Box::new(File::open(path).map_err(CopyError::Open)?),
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let (mut len, mut newlines) = (0u64, 0u64);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let line = newlines + 1;
                return Err(CopyError::Read { line, error });
            }
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        newlines += memchr::memchr_iter(b'\n', chunk).count() as u64;
        len += n as u64;
        out.write_all(chunk).map_err(CopyError::Write)?;
    }
    out.sync_data().map_err(CopyError::Write)?;
    Ok(Copied {
        hash: hasher.digest128(),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_in_place_and_fifos_are_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.csv");
        std::fs::write(&file, "id\n1\n").unwrap();
        assert!(!needs_spool(&Source::File(file)));
        assert!(needs_spool(&Source::Stdin));
        assert!(needs_spool(&Source::File(dir.path().to_path_buf())));
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(needs_spool(&Source::File(fifo)));
        // Missing: `open` says so later.
        assert!(!needs_spool(&Source::File(dir.path().join("nope"))));
    }

    #[test]
    fn spool_path_appends_the_suffix() {
        assert_eq!(
            spool_path(Path::new("/s/report.csv.ckpt")),
            Path::new("/s/report.csv.ckpt.input")
        );
    }

    #[tokio::test]
    async fn a_copy_is_hashed_like_the_file_and_kept_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.csv");
        std::fs::write(&data, "id\n1\n2\n").unwrap();
        let ckpt = dir.path().join("state").join("r.ckpt");
        let source = Source::File(data.clone());
        let stop = Stop::new();

        let mut copy = spool(&source, Place::Checkpoint(&ckpt), &stop)
            .await
            .unwrap();
        assert_eq!(copy.hash, super::super::content_hash(&data).unwrap());
        assert_eq!(copy.len, 7);
        let part = copy.part.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&part).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        copy.commit().unwrap();
        drop(copy);
        let kept = spool_path(&ckpt);
        assert_eq!(std::fs::read(&kept).unwrap(), b"id\n1\n2\n");
        assert!(!part.exists());

        // Refused (dropped uncommitted): the part file goes, the kept copy stays.
        std::fs::write(&data, "id\n3\n").unwrap();
        let copy = spool(&source, Place::Checkpoint(&ckpt), &stop)
            .await
            .unwrap();
        let part = copy.part.clone();
        assert!(part.exists());
        drop(copy);
        assert!(!part.exists());
        assert_eq!(std::fs::read(&kept).unwrap(), b"id\n1\n2\n");

        // A dry run's copy is removed when dropped.
        let report = dir.path().join("r.dry-run.csv");
        let copy = spool(&source, Place::DryRun(&report), &stop).await.unwrap();
        let path = copy.path().to_path_buf();
        assert_eq!(std::fs::read(&path).unwrap(), b"id\n3\n");
        drop(copy);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_fifo_without_a_writer_stops_with_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let stop = Stop::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            trigger.trigger();
        });
        let report = dir.path().join("r.csv");
        let got = spool(&Source::File(fifo), Place::DryRun(&report), &stop).await;
        assert!(matches!(got, Err(InputError::Stopped { .. })), "{got:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the FIFO is left: {left:?}");
        // Let the abandoned thread's `open` return, so it sees the cancellation and ends.
        drop(OpenOptions::new().write(true).open(dir.path().join("fifo")));
    }
}
