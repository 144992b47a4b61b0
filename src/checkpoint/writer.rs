//! The writer: an open journal that one run appends to under the checkpoint's lock, buffering
//! records and flushing or syncing them when the run says, and noticing when the file is removed
//! or replaced under it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::journal::{self, MAX_LINE_LEN};
use super::load::load;
use super::lock::Lock;
use super::record::{Header, VERSION};
use super::{Binding, CheckpointError, Loaded, MAX_STEPS, archive_at, sync_parent, with_suffix};
use crate::report::{self, Outcome, ReportRow};

/// Write buffer: many records per `write` call when the caller flushes per batch.
const WRITE_BUF: usize = 64 * 1024;

/// How often [`Checkpoint::watch`] looks whether the journal is still the file at its path.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// An open journal, appended to by one run, which holds its lock until dropped.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    // Declared before `lock`: dropping flushes the buffer while the lock is still held.
    out: BufWriter<File>,
    /// One record being encoded.
    scratch: Vec<u8>,
    /// The highest input line a record may name.
    max_line: u64,
    /// A write failed: what reached the file is unknown, so nothing more is appended.
    broken: bool,
    /// This open created the journal: there was none at the path.
    created: bool,
    /// Device and inode of the open journal and lock file, to notice them being replaced.
    ids: [(u64, u64); 2],
    last_watch: Instant,
    lock: Lock,
}

impl Checkpoint {
    /// Take the lock (`<path>.lock`, exclusive, without waiting), then open the journal at
    /// `path`, or create it when there is none. Returns what the journal records; a torn tail is
    /// cut off so that new records follow the last good one.
    pub fn open(path: &Path, binding: &Binding) -> Result<(Checkpoint, Loaded), CheckpointError> {
        crate::fsutil::refuse_symlink(path)
            .map_err(CheckpointError::io("open checkpoint", path))?;
        let lock = Lock::acquire(path)?;
        let existing = match File::open(path) {
            Ok(file) => load(path, file, Some(binding))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(CheckpointError::io("open checkpoint", path)(e)),
        };
        let created = existing.is_none();
        let (file, loaded) = match existing {
            Some((_, loaded)) => {
                let file = report::create_private(path, true)
                    .map_err(CheckpointError::io("open checkpoint", path))?;
                if loaded.dropped_tail > 0 {
                    file.set_len(loaded.journal_len)
                        .and_then(|()| file.sync_all())
                        .map_err(CheckpointError::io("cut the torn end of checkpoint", path))?;
                }
                (file, loaded)
            }
            None => (create_journal(path, binding)?, Loaded::new()),
        };
        let mut ckpt = Checkpoint::new(path, file, binding, lock)?;
        ckpt.created = created;
        Ok((ckpt, loaded))
    }

    /// `--fresh`: take the lock, move the existing journal and `report` (if any) aside with
    /// [`archive_at`] (one timestamp for both), and start a new journal. Returns the archived
    /// paths. Archiving under the lock keeps a running job's files from being moved away.
    pub fn open_fresh(
        path: &Path,
        binding: &Binding,
        report: Option<&Path>,
    ) -> Result<(Checkpoint, Loaded, Vec<PathBuf>), CheckpointError> {
        crate::fsutil::refuse_symlink(path)
            .map_err(CheckpointError::io("open checkpoint", path))?;
        let lock = Lock::acquire(path)?;
        let when = SystemTime::now();
        let mut archived = Vec::new();
        for old in std::iter::once(path).chain(report) {
            if let Some(new) = archive_at(old, when).map_err(CheckpointError::io("archive", old))? {
                archived.push(new);
            }
        }
        let file = create_journal(path, binding)?;
        // Not `created`: the report, if any, was just archived with the journal.
        let ckpt = Checkpoint::new(path, file, binding, lock)?;
        Ok((ckpt, Loaded::new(), archived))
    }

    fn new(
        path: &Path,
        file: File,
        binding: &Binding,
        lock: Lock,
    ) -> Result<Checkpoint, CheckpointError> {
        let ids = [
            file_id(&file).map_err(CheckpointError::io("open checkpoint", path))?,
            file_id(lock.file())
                .map_err(CheckpointError::io("open checkpoint lock", lock.path()))?,
        ];
        Ok(Checkpoint {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(WRITE_BUF, file),
            scratch: Vec::with_capacity(1024),
            max_line: binding.input_len.saturating_add(1),
            broken: false,
            created: false,
            ids,
            last_watch: Instant::now(),
            lock,
        })
    }

    /// Whether the journal and its lock file are still the files at their paths: `false` once
    /// either was removed, renamed away or replaced by another file since this run opened them.
    /// Records written then would go to a file nobody will read, and another run could take a
    /// lock on a new lock file: the run must stop.
    pub fn still_in_place(&self) -> io::Result<bool> {
        for (path, id) in [
            (self.path.as_path(), self.ids[0]),
            (self.lock.path(), self.ids[1]),
        ] {
            match fs::symlink_metadata(path) {
                Ok(meta) if meta_id(&meta) == id => {}
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// [`Checkpoint::still_in_place`], at most once per [`WATCH_INTERVAL`] however often it is
    /// called; an error once the journal is gone or replaced (and nothing more is appended).
    /// Call it from the run's loop, which must then stop.
    pub fn watch(&mut self) -> io::Result<()> {
        if self.last_watch.elapsed() < WATCH_INTERVAL {
            return Ok(());
        }
        self.last_watch = Instant::now();
        if self.still_in_place()? {
            return Ok(());
        }
        self.broken = true;
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "it (or its .lock file) was removed or replaced while this run held it, so outcomes \
             recorded now would be lost; run the job again (without its checkpoint, the old \
             report is archived, never overwritten)",
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file held by this checkpoint.
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    /// Record that the call for `step` of row `line` is about to be sent. Flush before sending.
    pub fn intent(&mut self, line: u64, step: u8) -> io::Result<()> {
        self.check(line, Some(step))?;
        write!(
            self.scratch,
            r#"{{"t":"intent","line":{line},"step":{step}}}"#
        )?;
        self.append()
    }

    /// Record that `step` of row `line` succeeded; the row continues at `step + 1`.
    pub fn step_done(&mut self, line: u64, step: u8) -> io::Result<()> {
        self.check(line, Some(step))?;
        write!(
            self.scratch,
            r#"{{"t":"step","line":{line},"step":{step}}}"#
        )?;
        self.append()
    }

    /// [`Checkpoint::intent`] for a wildcard row's link: the call for `step` of the link `key`
    /// (built from `params`) is about to be sent. Flush before sending.
    pub fn link_intent(
        &mut self,
        line: u64,
        step: u8,
        key: &str,
        params: &[(&str, &str)],
    ) -> io::Result<()> {
        self.link_call("intent", line, step, key, params)
    }

    /// [`Checkpoint::step_done`] for a wildcard row's link.
    pub fn link_step_done(
        &mut self,
        line: u64,
        step: u8,
        key: &str,
        params: &[(&str, &str)],
    ) -> io::Result<()> {
        self.link_call("step", line, step, key, params)
    }

    fn link_call(
        &mut self,
        t: &'static str,
        line: u64,
        step: u8,
        key: &str,
        params: &[(&str, &str)],
    ) -> io::Result<()> {
        self.check(line, Some(step))?;
        #[derive(Serialize)]
        struct Record<'a> {
            t: &'static str,
            line: u64,
            step: u8,
            link: Link<'a>,
        }
        #[derive(Serialize)]
        struct Link<'a> {
            key: &'a str,
            params: &'a [(&'a str, &'a str)],
        }
        let record = Record {
            t,
            line,
            step,
            link: Link { key, params },
        };
        serde_json::to_writer(&mut self.scratch, &record)?;
        self.append()
    }

    /// Record that a wildcard row finished one of its links: `label` (the link without its
    /// user), `outcome` (`unlinked`, `absent` or `failed`) and `message`, cut to the report's
    /// limits.
    pub fn link_done(
        &mut self,
        line: u64,
        label: &str,
        outcome: Outcome,
        message: &str,
    ) -> io::Result<()> {
        self.check(line, None)?;
        #[derive(Serialize)]
        struct Record<'a> {
            t: &'static str,
            line: u64,
            label: &'a str,
            outcome: Outcome,
            message: &'a str,
        }
        let cut_label = crate::row::cut(label, report::MAX_KEY_CHARS);
        let cut_message = crate::row::cut(message, report::MAX_MESSAGE_CHARS);
        let record = Record {
            t: "link",
            line,
            label: cut_label.as_deref().unwrap_or(label),
            outcome,
            message: cut_message.as_deref().unwrap_or(message),
        };
        serde_json::to_writer(&mut self.scratch, &record)?;
        self.append()
    }

    /// Record that row `line`'s attempt ended without an outcome: pending again, not in doubt.
    pub fn settled(&mut self, line: u64) -> io::Result<()> {
        self.check(line, None)?;
        write!(self.scratch, r#"{{"t":"settled","line":{line}}}"#)?;
        self.append()
    }

    /// Record that the outcome about to be recorded for `line` is `absent` by a read-back after a
    /// lost answer (counted apart by `status`).
    pub fn lost_answer(&mut self, line: u64) -> io::Result<()> {
        self.check(line, None)?;
        write!(self.scratch, r#"{{"t":"lost","line":{line}}}"#)?;
        self.append()
    }

    /// Record a row's final outcome; `report_len` is the report's length with this row written
    /// (`ReportWriter::len()` after writing it).
    /// The row is cut to its limits first ([`ReportRow::bounded`], as the report writer does),
    /// so the record always fits the journal.
    pub fn outcome(&mut self, row: &ReportRow, report_len: u64) -> io::Result<()> {
        self.check(row.line, None)?;
        let row = row.bounded();
        let row = row.as_ref();
        #[derive(Serialize)]
        struct Record<'a> {
            t: &'static str,
            report_len: u64,
            row: &'a ReportRow,
        }
        let record = Record {
            t: "outcome",
            report_len,
            row,
        };
        serde_json::to_writer(&mut self.scratch, &record)?;
        self.append()
    }

    /// Record that the report was rewritten and is now `len` bytes long (after
    /// [`rebuild_report`](super::rebuild_report)); a resume then continues the report from there.
    pub fn mark_report_len(&mut self, len: u64) -> io::Result<()> {
        self.scratch.clear();
        write!(self.scratch, r#"{{"t":"report","len":{len}}}"#)?;
        self.append()
    }

    /// `--retry-failed`: forget every `failed` outcome, durably (the record is synced), so those
    /// rows are pending again; returns how many. The report must then be rebuilt: use
    /// [`Checkpoint::open_report`] (or [`rebuild_report`](super::rebuild_report) +
    /// [`Checkpoint::mark_report_len`]).
    pub fn forget_failed(&mut self, loaded: &mut Loaded) -> io::Result<u64> {
        if loaded.counts()[&Outcome::Failed] == 0 {
            return Ok(0);
        }
        self.scratch.clear();
        write!(self.scratch, r#"{{"t":"forget","outcome":"failed"}}"#)?;
        self.append()?;
        self.sync()?;
        Ok(loaded.forget_failed())
    }

    /// Record why this run ended, as its last record, and sync it: `why` is `complete`, `limit`,
    /// `signal`, `deadline`, `halt: <reason>` or `error: <what>` (cut to
    /// [`report::MAX_MESSAGE_CHARS`] characters). `unlinker status` shows it; a journal whose
    /// last run wrote none was killed, or is being written by a run still going.
    pub fn record_stop(&mut self, why: &str) -> io::Result<()> {
        self.usable()?;
        self.scratch.clear();
        let why: String = why.chars().take(report::MAX_MESSAGE_CHARS).collect();
        #[derive(Serialize)]
        struct Record<'a> {
            t: &'static str,
            why: &'a str,
            at: String,
        }
        let record = Record {
            t: "stop",
            why: &why,
            at: report::now_rfc3339(),
        };
        serde_json::to_writer(&mut self.scratch, &record)?;
        self.append()?;
        self.sync()
    }

    /// This open created the journal: there was none at the path.
    pub(super) fn created(&self) -> bool {
        self.created
    }

    /// Hand buffered records to the OS: they survive the process being killed.
    pub fn flush(&mut self) -> io::Result<()> {
        self.usable()?;
        let result = self.out.flush();
        self.note(result)
    }

    /// Flush, then fsync: the records survive a power loss.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        let result = self.out.get_ref().sync_data();
        self.note(result)
    }

    fn check(&mut self, line: u64, step: Option<u8>) -> io::Result<()> {
        self.usable()?;
        self.scratch.clear();
        if line == 0 || line > self.max_line {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "line {line} is outside the input (1 to {}) bound to checkpoint {}",
                    self.max_line,
                    self.path.display()
                ),
            ));
        }
        if let Some(step) = step
            && step >= MAX_STEPS
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("step {step} of line {line}: rows have at most {MAX_STEPS} steps"),
            ));
        }
        Ok(())
    }

    /// Seal the record in `scratch` and buffer it.
    fn append(&mut self) -> io::Result<()> {
        let result = self.seal_and_write();
        self.scratch.clear();
        result
    }

    fn seal_and_write(&mut self) -> io::Result<()> {
        self.usable()?;
        if self.scratch.len() + 18 > MAX_LINE_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "checkpoint record of {} bytes is too large",
                    self.scratch.len()
                ),
            ));
        }
        journal::seal(&mut self.scratch);
        let result = self.out.write_all(&self.scratch);
        self.note(result)
    }

    fn usable(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(format!(
                "checkpoint {} is not written to after an earlier write error",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// A failed write or sync leaves the file's end unknown: stop appending (the next open cuts
    /// a torn end off).
    fn note(&mut self, result: io::Result<()>) -> io::Result<()> {
        if result.is_err() {
            self.broken = true;
        }
        result
    }
}

/// Write a journal holding only its header at `path`, atomically, and open it for appending.
fn create_journal(path: &Path, binding: &Binding) -> Result<File, CheckpointError> {
    let header = Header {
        v: VERSION,
        job: binding.job.clone(),
        input_hash: format!("{:032x}", binding.input_hash),
        input_len: binding.input_len,
        created: report::now_rfc3339(),
    };
    let mut line = serde_json::to_vec(&header).expect("a header always serializes");
    journal::seal(&mut line);
    let side = with_suffix(path, ".new");
    let create = || -> io::Result<File> {
        let mut file = report::create_private(&side, false)?;
        file.write_all(&line)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&side, path)?;
        sync_parent(path)?;
        report::create_private(path, true)
    };
    create().map_err(CheckpointError::io("create checkpoint", path))
}

/// Device and inode of an open file.
fn file_id(file: &File) -> io::Result<(u64, u64)> {
    file.metadata().map(|m| meta_id(&m))
}

fn meta_id(meta: &fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::binding;

    #[test]
    fn a_checkpoint_removed_or_replaced_under_a_run_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        assert!(ckpt.still_in_place().unwrap());
        ckpt.watch().unwrap();

        // Replaced by another file (as a copy-and-rename would).
        fs::copy(&path, dir.path().join("copy")).unwrap();
        fs::rename(dir.path().join("copy"), &path).unwrap();
        assert!(!ckpt.still_in_place().unwrap());
        ckpt.last_watch -= WATCH_INTERVAL;
        let err = ckpt.watch().unwrap_err();
        assert!(err.to_string().contains("removed or replaced"), "{err}");
        assert!(ckpt.intent(2, 0).is_err(), "nothing more is appended");
        drop(ckpt);

        // Removed; and the lock file removed.
        fs::remove_file(&path).unwrap();
        let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        fs::remove_file(&path).unwrap();
        assert!(!ckpt.still_in_place().unwrap());
        drop(ckpt);
        let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        fs::remove_file(ckpt.lock_path()).unwrap();
        assert!(!ckpt.still_in_place().unwrap());
    }
}
