//! Crash-safe record of every row's progress, so that a run can stop at any moment and resume.
//!
//! Runs take hours; they get killed, hosts lose power, and still every input row must end with
//! exactly one outcome and no unlink may be sent twice blindly (SPEC section 6). So progress is
//! persisted as it happens, in an append-only journal, never rewritten in place.
//!
//! # File format
//!
//! A text file, created owner-only (0600). Every line is `<json>\t<checksum>\n`, where the
//! checksum is the xxh3-64 of the JSON bytes as 16 lower-case hex digits. The first line is the
//! header, binding the journal to one job and one input:
//!
//! ```text
//! {"v":1,"job":"auth0-cleanup","input_hash":"<32 hex>","input_len":123456,"created":"2026-…Z"}
//! ```
//!
//! Then one record per line, told apart by `"t"`; a later record about a line supersedes earlier
//! ones:
//!
//! | `t` | fields | meaning |
//! |---|---|---|
//! | `intent` | `line`, `step` | the call for step `step` (0 unlink, 1 delete the user) is about to be sent |
//! | `step` | `line`, `step` | that step succeeded; the row continues at step `step + 1` |
//! | `settled` | `line` | the attempt ended without an outcome (halt, signal after a retryable answer): pending, not in doubt |
//! | `lost` | `line` | the next outcome of the line is `absent` by a read-back after a lost answer (counted apart) |
//! | `outcome` | `row` (a whole [`ReportRow`]), `report_len` | the row's final outcome; the report's byte length once that row was written |
//! | `report` | `len` | the report was rebuilt and is `len` bytes long (overrides earlier `report_len`) |
//! | `forget` | `outcome` | every earlier outcome of this kind is dropped (`--retry-failed`); the report needs a rebuild |
//!
//! A row is *in doubt* when its last record is an `intent`: the call may have reached the vendor.
//!
//! # Durability
//!
//! Records go through a buffer. [`Checkpoint::flush`] hands them to the OS: a `kill -9` loses
//! nothing flushed. [`Checkpoint::sync`] also fsyncs: a power loss loses at most what was written
//! since the last sync. A new journal is written to a side file, fsynced and renamed into place,
//! so it never lacks its header. A crash can only tear the end of the file (a last line without
//! `\n`, zero padding); loading skips such a tail and [`Checkpoint::open`] cuts it off before
//! appending, so the file stays readable. A bad line *followed by* good ones is damage, not a
//! crash, and loading refuses it ([`CheckpointError::Corrupt`]).
//!
//! An `intent` must be flushed before its call is sent; flushing is one `write` call, cheap
//! enough for many thousands of records per second (the `throughput` test measures it: about
//! 900 000 records/s with a flush after every intent, on a plain VM disk).
//!
//! # Memory
//!
//! [`Loaded`] holds one byte per input line (10 million lines: 10 MB), plus a small map entry
//! for rows with several outcome records (re-attempted with `--retry-failed`).
//! [`rebuild_report`] streams the journal and adds one bit per input line.
//!
//! # How a run uses it
//!
//! ```text
//! let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding)?;    // or open_fresh for --fresh
//! if retry_failed { ckpt.forget_failed(&mut loaded)?; }
//! let (mut report, _) = ckpt.open_report(&loaded, &report_path, format)?;   // continue or rebuild
//! settle loaded.in_doubt() rows; skip rows with loaded.outcome(line); start rows at steps_done(line)
//! per call:  ckpt.intent(line, step); ckpt.flush();  send;  if a step follows: ckpt.step_done(line, step)
//! per row:   report.write(&row); ckpt.outcome(&row, report.len())
//! per batch: report.flush(); ckpt.flush();   about every second: report.sync(); ckpt.sync()
//! stopping with a retryable row: ckpt.settled(line)
//! ```

mod archive;
mod journal;
mod lock;
mod state;

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use archive::{archive, archive_at};
pub use state::{Loaded, MAX_STEPS};

use crate::report::{self, Outcome, ReportFormat, ReportRow, ReportWriter};
use journal::{MAX_LINE_LEN, Scan, Scanner};
use lock::Lock;

/// Journal format version written in the header.
const VERSION: u32 = 1;

/// Write buffer: many records per `write` call when the caller flushes per batch.
const WRITE_BUF: usize = 64 * 1024;

/// Read buffer for loading and rebuilding.
const READ_BUF: usize = 256 * 1024;

/// How often [`Checkpoint::watch`] looks whether the journal is still the file at its path.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

// Whatever a row holds, its outcome record fits a journal line (SPEC section 6: no row can block
// a job): a bounded row's text fields hold at most `MAX_ROW_CHARS` characters, each at most 6
// bytes of JSON, plus the record's other fields (numbers, names: well under 1 KiB).
const _: () = assert!(6 * report::MAX_ROW_CHARS + 1024 < MAX_LINE_LEN);

/// What a checkpoint is bound to: resuming with anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The job's name.
    pub job: String,
    /// xxh3-128 of the input file's bytes (`input::content_hash`).
    pub input_hash: u128,
    /// The input file's length in bytes. Also bounds the line numbers a journal may name
    /// (`input_len + 1`), which bounds the memory loading can take.
    pub input_len: u64,
}

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

    /// From [`read`]: no checkpoint file, or one with nothing in it.
    #[error("no checkpoint at {}: nothing has been recorded for this job yet", .path.display())]
    NotFound { path: PathBuf },
}

impl CheckpointError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io {
            action,
            path,
            source,
        }
    }

    fn corrupt(path: &Path, line: u64, reason: impl Into<String>) -> CheckpointError {
        CheckpointError::Corrupt {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

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
    /// [`rebuild_report`]); a resume then continues the report from there.
    pub fn mark_report_len(&mut self, len: u64) -> io::Result<()> {
        self.scratch.clear();
        write!(self.scratch, r#"{{"t":"report","len":{len}}}"#)?;
        self.append()
    }

    /// `--retry-failed`: forget every `failed` outcome, durably (the record is synced), so those
    /// rows are pending again; returns how many. The report must then be rebuilt: use
    /// [`Checkpoint::open_report`] (or [`rebuild_report`] + [`Checkpoint::mark_report_len`]).
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

    /// Open the report for appending so that it holds exactly the rows `loaded` records: create
    /// it when no row is recorded; continue it, cut back to [`Loaded::report_len`], when it is at
    /// least that long and its last bytes before that length are whole; otherwise (lost to a
    /// power failure, zero-filled, deleted, or outcomes were forgotten) rebuild it from the
    /// journal and record its new length. Call right after opening (and
    /// [`Checkpoint::forget_failed`]), before recording anything else.
    pub fn open_report(
        &mut self,
        loaded: &Loaded,
        report: &Path,
        format: ReportFormat,
    ) -> Result<(ReportWriter, ReportStart), CheckpointError> {
        let on_disk = match fs::metadata(report) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(CheckpointError::io("read", report)(e)),
        };
        let want = loaded.report_len();
        if !loaded.needs_rebuild() && loaded.rows_recorded() == 0 {
            if self.created && on_disk > 0 {
                // A report without its checkpoint: an earlier job's work, never overwritten.
                let kept = archive(report).map_err(CheckpointError::io("archive", report))?;
                if let Some(kept) = kept {
                    tracing::info!(
                        "report {} existed without its checkpoint: kept it as {}",
                        report.display(),
                        kept.display()
                    );
                }
            }
            let writer = ReportWriter::create(report, format)
                .map_err(CheckpointError::io("create report", report))?;
            return Ok((writer, ReportStart::Created));
        }
        if !loaded.needs_rebuild()
            && want > 0
            && on_disk >= want
            && report_end_is_whole(report, want).map_err(CheckpointError::io("read", report))?
        {
            let writer = ReportWriter::resume(report, format, want)
                .map_err(CheckpointError::io("open report", report))?;
            return Ok((
                writer,
                ReportStart::Continued {
                    cut: on_disk - want,
                },
            ));
        }
        let mut writer = ReportWriter::create(report, format)
            .map_err(CheckpointError::io("create report", report))?;
        let len = rebuild_report(&self.path, loaded, &mut writer)?;
        self.mark_report_len(len)
            .and_then(|()| self.sync())
            .map_err(CheckpointError::io("write checkpoint", &self.path))?;
        Ok((writer, ReportStart::Rebuilt))
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

/// Whether the report's bytes just before `len` look whole: ending a line, without zero bytes
/// (what a power loss leaves where data had not reached the disk on some file systems). Rows
/// never hold a zero byte in practice; if one did, the report is merely rebuilt.
fn report_end_is_whole(report: &Path, len: u64) -> io::Result<bool> {
    const WINDOW: u64 = 64 * 1024;
    let mut file = File::open(report)?;
    let start = len.saturating_sub(WINDOW);
    file.seek(io::SeekFrom::Start(start))?;
    let mut end = vec![0; usize::try_from(len - start).expect("at most WINDOW")];
    file.read_exact(&mut end)?;
    Ok(end.last() == Some(&b'\n') && !end.contains(&0))
}

/// How [`Checkpoint::open_report`] prepared the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStart {
    /// New report (no row recorded yet).
    Created,
    /// Existing report continued; `cut` bytes past the recorded length were removed (rows
    /// written by a run that died before recording them).
    Continued { cut: u64 },
    /// Rewritten from the journal.
    Rebuilt,
}

/// Read a checkpoint without taking its lock (`unlinker status`, possibly while a run appends).
/// A torn or half-written end is skipped, not cut off.
pub fn read(path: &Path) -> Result<(Binding, Loaded), CheckpointError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => CheckpointError::NotFound {
            path: path.to_path_buf(),
        },
        _ => CheckpointError::io("open checkpoint", path)(e),
    })?;
    load(path, file, None)?.ok_or_else(|| CheckpointError::NotFound {
        path: path.to_path_buf(),
    })
}

/// Write to `writer` the row of each line's final outcome record, in journal order, skipping
/// rows whose outcome was forgotten or superseded; then sync it and return its length. Reads the
/// part of the journal `loaded` was loaded from, streaming; `writer` is normally a new report
/// (`ReportWriter::create`). Record the result with [`Checkpoint::mark_report_len`].
pub fn rebuild_report(
    ckpt: &Path,
    loaded: &Loaded,
    writer: &mut ReportWriter,
) -> Result<u64, CheckpointError> {
    let file = File::open(ckpt).map_err(CheckpointError::io("open checkpoint", ckpt))?;
    let reader = BufReader::with_capacity(READ_BUF, file.take(loaded.journal_len));
    let mut scanner = Scanner::new(reader);
    let mut written = vec![0u64; usize::try_from(loaded.max_line() / 64 + 1).unwrap_or(0)];
    let mut left = loaded.repeated().clone();
    let mut rows = 0u64;
    let mut last_line = 0;
    loop {
        let (line, json) = match scanner
            .next()
            .map_err(CheckpointError::io("read checkpoint", ckpt))?
        {
            Scan::Record { line, json } => (line, json),
            Scan::End => break,
            Scan::Damaged { line, reason } => {
                return Err(CheckpointError::corrupt(ckpt, line, reason));
            }
        };
        last_line = line;
        if line == 1 {
            continue; // the header
        }
        let record: RawRecord = serde_json::from_slice(json)
            .map_err(|e| CheckpointError::corrupt(ckpt, line, format!("unreadable record: {e}")))?;
        let (Kind::Outcome, Some(head)) = (record.t, record.row) else {
            continue;
        };
        let Some(final_outcome) = loaded.outcome(head.line) else {
            continue;
        };
        if let Some(n) = left.get_mut(&head.line) {
            *n -= 1;
            if *n > 0 {
                continue; // a later outcome record for this line follows
            }
        }
        let full: FullOutcome = serde_json::from_slice(json)
            .map_err(|e| CheckpointError::corrupt(ckpt, line, format!("unreadable record: {e}")))?;
        let (word, bit) = ((head.line / 64) as usize, 1u64 << (head.line % 64));
        if full.row.outcome != final_outcome || written[word] & bit != 0 {
            return Err(CheckpointError::corrupt(
                ckpt,
                line,
                "not what was loaded: did the file change since?",
            ));
        }
        writer
            .write(&full.row)
            .map_err(CheckpointError::io("write report", writer.path()))?;
        written[word] |= bit;
        rows += 1;
    }
    if rows != loaded.rows_recorded() {
        return Err(CheckpointError::corrupt(
            ckpt,
            last_line,
            format!(
                "holds {rows} of the {} recorded outcomes: did the file change since it was loaded?",
                loaded.rows_recorded()
            ),
        ));
    }
    writer
        .sync()
        .map_err(CheckpointError::io("write report", writer.path()))?;
    Ok(writer.len())
}

#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    job: String,
    input_hash: String,
    input_len: u64,
    created: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Intent,
    Step,
    Settled,
    Lost,
    Outcome,
    Report,
    Forget,
}

/// Any record, reading only what the state needs (the row's other fields are skipped).
#[derive(Deserialize)]
struct RawRecord {
    t: Kind,
    line: Option<u64>,
    step: Option<u8>,
    row: Option<RowHead>,
    report_len: Option<u64>,
    len: Option<u64>,
    outcome: Option<Outcome>,
}

#[derive(Deserialize)]
struct RowHead {
    line: u64,
    outcome: Outcome,
}

#[derive(Deserialize)]
struct FullOutcome {
    row: ReportRow,
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

/// Read a journal: `None` when it holds nothing (empty, or only zero bytes).
fn load(
    path: &Path,
    file: File,
    expect: Option<&Binding>,
) -> Result<Option<(Binding, Loaded)>, CheckpointError> {
    let mut scanner = Scanner::new(BufReader::with_capacity(READ_BUF, file));
    let binding = match scanner
        .next()
        .map_err(CheckpointError::io("read checkpoint", path))?
    {
        Scan::Record { json, .. } => parse_header(path, json)?,
        Scan::Damaged { line, reason } => return Err(CheckpointError::corrupt(path, line, reason)),
        Scan::End => {
            if scanner.saw_nonzero() {
                return Err(CheckpointError::corrupt(
                    path,
                    1,
                    "not an unlinker checkpoint: no valid header",
                ));
            }
            return Ok(None);
        }
    };
    if let Some(expect) = expect {
        check_binding(path, &binding, expect)?;
    }
    let max_line = binding.input_len.saturating_add(1);
    let mut loaded = Loaded::new();
    loop {
        match scanner
            .next()
            .map_err(CheckpointError::io("read checkpoint", path))?
        {
            Scan::Record { line, json } => apply(&mut loaded, json, max_line)
                .map_err(|reason| CheckpointError::corrupt(path, line, reason))?,
            Scan::End => break,
            Scan::Damaged { line, reason } => {
                return Err(CheckpointError::corrupt(path, line, reason));
            }
        }
    }
    loaded.journal_len = scanner.good_end();
    loaded.dropped_tail = scanner.offset() - scanner.good_end();
    Ok(Some((binding, loaded)))
}

fn parse_header(path: &Path, json: &[u8]) -> Result<Binding, CheckpointError> {
    let not_ours = |why: String| CheckpointError::corrupt(path, 1, why);
    let header: Header = serde_json::from_slice(json)
        .map_err(|e| not_ours(format!("not an unlinker checkpoint header: {e}")))?;
    if header.v != VERSION {
        return Err(not_ours(format!(
            "format version {} is not the version {VERSION} this unlinker reads",
            header.v
        )));
    }
    let input_hash = (header.input_hash.len() == 32)
        .then(|| u128::from_str_radix(&header.input_hash, 16).ok())
        .flatten()
        .ok_or_else(|| not_ours(format!("bad input_hash {:?}", header.input_hash)))?;
    Ok(Binding {
        job: header.job,
        input_hash,
        input_len: header.input_len,
    })
}

fn check_binding(path: &Path, recorded: &Binding, now: &Binding) -> Result<(), CheckpointError> {
    if recorded.job != now.job {
        return Err(CheckpointError::JobChanged {
            path: path.to_path_buf(),
            recorded: recorded.job.clone(),
            job: now.job.clone(),
        });
    }
    if (recorded.input_hash, recorded.input_len) != (now.input_hash, now.input_len) {
        return Err(CheckpointError::InputChanged {
            path: path.to_path_buf(),
            recorded_len: recorded.input_len,
            recorded_hash: recorded.input_hash,
            input_len: now.input_len,
            input_hash: now.input_hash,
        });
    }
    Ok(())
}

/// The fields of an outcome record the state needs, read without a JSON parser when the record
/// has exactly the shape this module writes (`{"t":"outcome","report_len":N,"row":{"line":N,
/// "vendor":"..","key":"..","outcome":".."...`). Outcome records are half the journal and carry a
/// whole report row; parsing them fully was most of the time a resume spends loading. Anything
/// else returns `None` and goes through serde.
fn fast_outcome(json: &[u8]) -> Option<(u64, Outcome, u64)> {
    fn digits(s: &[u8]) -> Option<(u64, &[u8])> {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 19 {
            return None;
        }
        let v = std::str::from_utf8(&s[..n]).ok()?.parse().ok()?;
        Some((v, &s[n..]))
    }
    fn skip_string(s: &[u8]) -> Option<&[u8]> {
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'\\' => i += 2,
                b'"' => return Some(&s[i + 1..]),
                _ => i += 1,
            }
        }
        None
    }
    let rest = json.strip_prefix(br#"{"t":"outcome","report_len":"#)?;
    let (report_len, rest) = digits(rest)?;
    let rest = rest.strip_prefix(br#","row":{"line":"#)?;
    let (line, rest) = digits(rest)?;
    let rest = skip_string(rest.strip_prefix(br#","vendor":""#)?)?;
    let rest = skip_string(rest.strip_prefix(br#","key":""#)?)?;
    // Journals written before the `reference` column lack it.
    let rest = match rest.strip_prefix(br#","reference":""#) {
        Some(r) => skip_string(r)?,
        None => rest,
    };
    let rest = rest.strip_prefix(br#","outcome":""#)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let outcome = Outcome::ALL
        .into_iter()
        .find(|o| o.name().as_bytes() == &rest[..end])?;
    Some((line, outcome, report_len))
}

/// Apply one record to the state; an error says why the (well-formed) line is not a record.
fn apply(loaded: &mut Loaded, json: &[u8], max_line: u64) -> Result<(), String> {
    if let Some((line, outcome, report_len)) = fast_outcome(json)
        && (1..=max_line).contains(&line)
    {
        loaded.apply_outcome(line, outcome, report_len);
        return Ok(());
    }
    let record: RawRecord =
        serde_json::from_slice(json).map_err(|e| format!("unreadable record: {e}"))?;
    let line = |line: Option<u64>| match line {
        Some(line) if (1..=max_line).contains(&line) => Ok(line),
        Some(line) => Err(format!(
            "line {line} is outside the input (1 to {max_line})"
        )),
        None => Err("record without a line".to_string()),
    };
    let step = |step: Option<u8>| match step {
        Some(step) if step < MAX_STEPS => Ok(step),
        Some(step) => Err(format!("step {step} is not below {MAX_STEPS}")),
        None => Err("record without a step".to_string()),
    };
    let missing = |field: &str| format!("{:?} record without `{field}`", record.t);
    match record.t {
        Kind::Intent => loaded.apply_intent(line(record.line)?, step(record.step)?),
        Kind::Step => loaded.apply_step(line(record.line)?, step(record.step)?),
        Kind::Settled => loaded.apply_settled(line(record.line)?),
        Kind::Lost => loaded.apply_lost(line(record.line)?),
        Kind::Outcome => {
            let row = record.row.as_ref().ok_or_else(|| missing("row"))?;
            let report_len = record.report_len.ok_or_else(|| missing("report_len"))?;
            loaded.apply_outcome(line(Some(row.line))?, row.outcome, report_len);
        }
        Kind::Report => loaded.apply_report(record.len.ok_or_else(|| missing("len"))?),
        Kind::Forget => {
            loaded.forget(record.outcome.ok_or_else(|| missing("outcome"))?);
        }
    }
    Ok(())
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

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Make a rename or creation in `path`'s folder durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::encode_row;
    use std::collections::BTreeMap;
    use std::time::Instant;

    fn binding() -> Binding {
        Binding {
            job: "auth0-cleanup".into(),
            input_hash: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            input_len: 10_000,
        }
    }

    fn row(line: u64, outcome: Outcome) -> ReportRow {
        ReportRow {
            line,
            vendor: "auth0".into(),
            key: format!("auth0|{line}/github/{line}"),
            reference: String::new(),
            outcome,
            http_status: Some(204),
            vendor_code: None,
            attempts: 1,
            elapsed_ms: 12,
            request_id: Some(format!("req-{line}")),
            request: "DELETE https://acme.eu.auth0.com/api/v2/users/x/identities/github/1".into(),
            message: "tab\there, \"quotes\", newline\nthere".into(),
            finished_at: "2026-11-23T08:15:00.000Z".into(),
        }
    }

    fn counts(pairs: &[(Outcome, u64)]) -> BTreeMap<Outcome, u64> {
        let mut all: BTreeMap<Outcome, u64> = Outcome::ALL.into_iter().map(|o| (o, 0)).collect();
        all.extend(pairs.iter().copied());
        all
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn csv_of(rows: &[ReportRow]) -> Vec<u8> {
        let mut bytes = format!("{}\n", report::COLUMNS.join(",")).into_bytes();
        for r in rows {
            bytes.extend(encode_row(r, ReportFormat::Csv));
        }
        bytes
    }

    /// Line `n` (1-based) of the journal's bytes starts at the returned offset.
    fn line_start(bytes: &[u8], n: usize) -> usize {
        let mut starts = std::iter::once(0).chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        starts.nth(n - 1).unwrap()
    }

    #[test]
    fn round_trip_of_every_record_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(loaded.rows_recorded(), 0);
        assert_eq!(loaded.report_len(), 0);
        assert_eq!(loaded.in_doubt().count(), 0);

        ckpt.intent(2, 0).unwrap();
        ckpt.step_done(2, 0).unwrap();
        ckpt.intent(2, 1).unwrap(); // in doubt at step 1
        ckpt.intent(3, 0).unwrap();
        ckpt.settled(3).unwrap(); // pending, not in doubt
        ckpt.intent(4, 0).unwrap();
        ckpt.outcome(&row(4, Outcome::Unlinked), 150).unwrap();
        ckpt.outcome(&row(5, Outcome::Failed), 230).unwrap();
        ckpt.outcome(&row(6, Outcome::Invalid), 300).unwrap();
        ckpt.mark_report_len(280).unwrap();
        ckpt.intent(7, 0).unwrap();
        ckpt.sync().unwrap();
        drop(ckpt);

        let (bound, loaded) = read(&path).unwrap();
        assert_eq!(bound, binding());
        assert_eq!(loaded.outcome(2), None);
        assert_eq!(loaded.steps_done(2), 1);
        assert_eq!(loaded.is_in_doubt(2), Some(1));
        assert_eq!(loaded.outcome(3), None);
        assert_eq!(loaded.is_in_doubt(3), None);
        assert_eq!(loaded.steps_done(3), 0);
        assert_eq!(loaded.outcome(4), Some(Outcome::Unlinked));
        assert_eq!(loaded.is_in_doubt(4), None);
        assert_eq!(loaded.outcome(5), Some(Outcome::Failed));
        assert_eq!(loaded.outcome(6), Some(Outcome::Invalid));
        assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(2, 1), (7, 0)]);
        assert_eq!(loaded.rows_recorded(), 3);
        assert_eq!(
            loaded.counts(),
            counts(&[
                (Outcome::Unlinked, 1),
                (Outcome::Failed, 1),
                (Outcome::Invalid, 1)
            ])
        );
        assert_eq!(loaded.report_len(), 280);
        assert_eq!(loaded.max_line(), 7);
        assert_eq!(loaded.dropped_tail_bytes(), 0);
        assert!(!loaded.needs_rebuild());

        // The bytes: a header, then `<json>\t<xxh3 hex>\n` per record.
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 12);
        for line in &lines {
            let (json, sum) = line.rsplit_once('\t').unwrap();
            assert_eq!(
                sum,
                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(json.as_bytes()))
            );
        }
        let header: serde_json::Value =
            serde_json::from_str(lines[0].rsplit_once('\t').unwrap().0).unwrap();
        assert_eq!(header["v"], 1);
        assert_eq!(header["job"], "auth0-cleanup");
        assert_eq!(header["input_hash"], "0123456789abcdef0011223344556677");
        assert_eq!(header["input_len"], 10_000);
        assert!(header["created"].as_str().unwrap().ends_with('Z'));
        assert!(lines[1].starts_with(r#"{"t":"intent","line":2,"step":0}"#));
        assert!(lines[5].starts_with(r#"{"t":"settled","line":3}"#));
        let outcome: serde_json::Value =
            serde_json::from_str(lines[7].rsplit_once('\t').unwrap().0).unwrap();
        assert_eq!(outcome["t"], "outcome");
        assert_eq!(outcome["report_len"], 150);
        let stored: ReportRow = serde_json::from_value(outcome["row"].clone()).unwrap();
        assert_eq!(stored, row(4, Outcome::Unlinked));

        // Reopening continues the same journal with the same state.
        let (mut ckpt, again) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(again.in_doubt().collect::<Vec<_>>(), vec![(2, 1), (7, 0)]);
        ckpt.outcome(&row(7, Outcome::Absent), 400).unwrap();
        drop(ckpt);
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(7), Some(Outcome::Absent));
        assert_eq!(loaded.report_len(), 400);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 13);
    }

    #[test]
    fn a_torn_last_record_is_ignored_at_every_cut_and_appending_after_it_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.intent(2, 0).unwrap();
        ckpt.outcome(&row(2, Outcome::Unlinked), 100).unwrap();
        ckpt.intent(3, 0).unwrap();
        ckpt.flush().unwrap();
        let before_last = fs::metadata(&path).unwrap().len() as usize;
        ckpt.outcome(&row(3, Outcome::Absent), 200).unwrap();
        drop(ckpt);
        let full = fs::read(&path).unwrap();
        assert!(full.len() - before_last > 300);

        let cut_path = dir.path().join("cut.ckpt");
        for cut in before_last..full.len() {
            fs::write(&cut_path, &full[..cut]).unwrap();
            let (_, loaded) = read(&cut_path).unwrap();
            assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked), "cut at {cut}");
            assert_eq!(loaded.outcome(3), None, "cut at {cut}");
            assert_eq!(loaded.is_in_doubt(3), Some(0), "cut at {cut}");
            assert_eq!(loaded.report_len(), 100, "cut at {cut}");
            assert_eq!(loaded.dropped_tail_bytes(), (cut - before_last) as u64);

            let (mut ckpt, loaded) = Checkpoint::open(&cut_path, &binding()).unwrap();
            assert_eq!(loaded.is_in_doubt(3), Some(0));
            assert_eq!(
                fs::metadata(&cut_path).unwrap().len(),
                before_last as u64,
                "the torn end is cut off before appending"
            );
            ckpt.settled(3).unwrap();
            drop(ckpt);
            let (_, loaded) = read(&cut_path).unwrap();
            assert_eq!(loaded.is_in_doubt(3), None, "cut at {cut}");
            assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked));
            assert_eq!(loaded.dropped_tail_bytes(), 0);
        }
        // The whole file loads with the last record.
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(3), Some(Outcome::Absent));
    }

    #[test]
    fn trailing_zero_bytes_and_a_bad_last_checksum_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.outcome(&row(2, Outcome::Absent), 90).unwrap();
        ckpt.intent(3, 0).unwrap();
        drop(ckpt);
        let good = fs::read(&path).unwrap();

        // Zero padding after the last record, as a power loss can leave it.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 8192]);
        fs::write(&path, &padded).unwrap();
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(2), Some(Outcome::Absent));
        assert_eq!(loaded.is_in_doubt(3), Some(0));
        assert_eq!(loaded.dropped_tail_bytes(), 8192);
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), good);
        ckpt.outcome(&row(3, Outcome::Unlinked), 180).unwrap();
        drop(ckpt);
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(3), Some(Outcome::Unlinked));
        assert_eq!(loaded.report_len(), 180);

        // A complete last line whose checksum does not match, then stale bytes with newlines.
        let good = fs::read(&path).unwrap();
        let last = line_start(&good, 4);
        let mut damaged = good.clone();
        damaged[last + 10] ^= 0x01;
        damaged.extend_from_slice(b"stale\n\0\0\0\ngarbage");
        fs::write(&path, &damaged).unwrap();
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(3), None);
        assert_eq!(loaded.is_in_doubt(3), Some(0));
        assert_eq!(loaded.dropped_tail_bytes(), (damaged.len() - last) as u64);
        let (_, _) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), &good[..last]);
    }

    #[test]
    fn damage_in_the_middle_is_an_error_that_names_the_line_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        for line in 2..=5 {
            ckpt.outcome(&row(line, Outcome::Unlinked), line * 100)
                .unwrap();
        }
        drop(ckpt);
        let mut bytes = fs::read(&path).unwrap();
        let third = line_start(&bytes, 3);
        bytes[third + 30] ^= 0x20;
        fs::write(&path, &bytes).unwrap();

        for err in [
            read(&path).unwrap_err(),
            Checkpoint::open(&path, &binding()).unwrap_err(),
        ] {
            match &err {
                CheckpointError::Corrupt {
                    path: p,
                    line,
                    reason,
                } => {
                    assert_eq!(p, &path);
                    assert_eq!(*line, 3);
                    assert_eq!(reason, "checksum mismatch");
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            let message = err.to_string();
            assert!(message.contains("job.ckpt"), "{message}");
            assert!(message.contains("line 3"), "{message}");
            assert!(message.contains("--fresh"), "{message}");
        }
        assert_eq!(fs::read(&path).unwrap(), bytes);

        // A half-written record followed by a good one is damage too.
        let good = [
            &bytes[..third],
            &bytes[third..third + 20],
            &bytes[line_start(&bytes, 4)..],
        ]
        .concat();
        fs::write(&path, &good).unwrap();
        assert!(matches!(
            read(&path),
            Err(CheckpointError::Corrupt { line: 3, .. })
        ));
    }

    #[test]
    fn well_formed_records_that_make_no_sense_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        drop(Checkpoint::open(&path, &binding()).unwrap());
        let header = fs::read(&path).unwrap();
        for (json, reason) in [
            (
                r#"{"t":"intent","line":10002,"step":0}"#,
                "line 10002 is outside the input (1 to 10001)",
            ),
            (r#"{"t":"step","line":2,"step":3}"#, "step 3 is not below 3"),
            (r#"{"t":"settled"}"#, "record without a line"),
            (r#"{"t":"report"}"#, "Report record without `len`"),
        ] {
            let mut line = json.as_bytes().to_vec();
            journal::seal(&mut line);
            fs::write(&path, [header.as_slice(), &line].concat()).unwrap();
            match read(&path) {
                Err(CheckpointError::Corrupt {
                    line: 2, reason: r, ..
                }) => {
                    assert_eq!(r, reason)
                }
                other => panic!("{json}: {other:?}"),
            }
        }
        let mut line = br#"{"t":"rename","line":2}"#.to_vec();
        journal::seal(&mut line);
        fs::write(&path, [header.as_slice(), &line].concat()).unwrap();
        match read(&path) {
            Err(CheckpointError::Corrupt {
                line: 2, reason, ..
            }) => {
                assert!(reason.starts_with("unreadable record: unknown variant `rename`"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_that_is_not_a_checkpoint_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        fs::write(&path, "line,vendor\n2,auth0\n").unwrap();
        match Checkpoint::open(&path, &binding()) {
            Err(CheckpointError::Corrupt {
                line: 1, reason, ..
            }) => {
                assert_eq!(reason, "not an unlinker checkpoint: no valid header")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), b"line,vendor\n2,auth0\n");

        // An empty or all-zero file holds nothing: it is started afresh.
        fs::write(&path, [0u8; 100]).unwrap();
        assert!(matches!(read(&path), Err(CheckpointError::NotFound { .. })));
        let (_, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(loaded.rows_recorded(), 0);
        assert_eq!(read(&path).unwrap().0, binding());

        let missing = dir.path().join("missing.ckpt");
        let err = read(&missing).unwrap_err();
        assert!(matches!(err, CheckpointError::NotFound { .. }));
        assert!(err.to_string().contains("missing.ckpt"));
    }

    #[test]
    fn a_changed_input_or_job_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.outcome(&row(2, Outcome::Unlinked), 100).unwrap();
        drop(ckpt);

        let other_hash = Binding {
            input_hash: 7,
            ..binding()
        };
        let err = Checkpoint::open(&path, &other_hash).unwrap_err();
        match &err {
            CheckpointError::InputChanged {
                recorded_len,
                input_len,
                recorded_hash,
                input_hash,
                ..
            } => {
                assert_eq!(*recorded_len, 10_000);
                assert_eq!(*input_len, 10_000);
                assert_eq!(*recorded_hash, binding().input_hash);
                assert_eq!(*input_hash, 7);
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with("the input file changed since checkpoint"),
            "{message}"
        );
        assert!(message.contains("job.ckpt"), "{message}");
        assert!(message.contains("--fresh"), "{message}");

        let longer = Binding {
            input_len: 10_001,
            ..binding()
        };
        assert!(matches!(
            Checkpoint::open(&path, &longer),
            Err(CheckpointError::InputChanged {
                input_len: 10_001,
                ..
            })
        ));
        let other_job = Binding {
            job: "gigya-cleanup".into(),
            ..binding()
        };
        match Checkpoint::open(&path, &other_job) {
            Err(CheckpointError::JobChanged { recorded, job, .. }) => {
                assert_eq!(recorded, "auth0-cleanup");
                assert_eq!(job, "gigya-cleanup");
            }
            other => panic!("{other:?}"),
        }
        // Refusing released the lock and changed nothing.
        let (_, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked));
    }

    #[test]
    fn a_second_open_is_locked_out_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (first, _) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(first.lock_path(), dir.path().join("job.ckpt.lock"));

        let err = Checkpoint::open(&path, &binding()).unwrap_err();
        let CheckpointError::Locked { path: p, holder } = &err else {
            panic!("expected Locked, got {err:?}");
        };
        assert_eq!(p, &path);
        let pid = format!("pid={} ", std::process::id());
        assert!(holder.starts_with(&pid), "{holder}");
        assert!(holder.contains(" started="), "{holder}");
        let message = err.to_string();
        assert!(
            message.contains("job.ckpt is in use by another run"),
            "{message}"
        );
        assert!(message.contains(&pid), "{message}");
        // --fresh must not move a running job's files away either.
        assert!(matches!(
            Checkpoint::open_fresh(&path, &binding(), None),
            Err(CheckpointError::Locked { .. })
        ));
        assert!(path.exists());

        drop(first);
        let (second, _) = Checkpoint::open(&path, &binding()).unwrap();
        drop(second);
    }

    #[test]
    fn a_lock_file_left_behind_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let lock_path = dir.path().join("job.ckpt.lock");
        fs::write(
            &lock_path,
            "pid=999999 host=gone started=2020-01-01T00:00:00Z\n",
        )
        .unwrap();
        let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        let note = fs::read_to_string(&lock_path).unwrap();
        assert!(
            note.starts_with(&format!("pid={} ", std::process::id())),
            "{note}"
        );
        assert_eq!(note.lines().count(), 1);
        drop(ckpt);
        assert!(
            lock_path.exists(),
            "the lock file stays; only the OS lock is released"
        );
    }

    #[test]
    fn journal_and_lock_file_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let lock_path = dir.path().join("job.ckpt.lock");
        let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&lock_path), 0o600);
        drop(ckpt);

        use std::os::unix::fs::PermissionsExt;
        for p in [&path, &lock_path] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        let (_ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&lock_path), 0o600);
        assert!(!dir.path().join("job.ckpt.new").exists());
    }

    #[test]
    fn status_reads_what_a_running_job_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.intent(2, 0).unwrap();
        ckpt.flush().unwrap();
        ckpt.intent(3, 0).unwrap(); // still buffered

        let (bound, loaded) = read(&path).unwrap();
        assert_eq!(bound.job, "auth0-cleanup");
        assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(2, 0)]);
        ckpt.flush().unwrap();
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(2, 0), (3, 0)]);
    }

    #[test]
    fn in_doubt_means_an_intent_with_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.intent(2, 0).unwrap(); // sent, no answer recorded
        ckpt.intent(3, 0).unwrap();
        ckpt.settled(3).unwrap(); // retryable answer, then halted
        ckpt.intent(4, 0).unwrap();
        ckpt.step_done(4, 0).unwrap();
        ckpt.intent(4, 1).unwrap(); // unlinked, user deletion in flight
        ckpt.intent(5, 0).unwrap();
        ckpt.step_done(5, 0).unwrap(); // unlinked, next step not started
        ckpt.intent(6, 0).unwrap();
        ckpt.outcome(&row(6, Outcome::Absent), 99).unwrap();
        ckpt.intent(7, 0).unwrap();
        ckpt.intent(7, 0).unwrap(); // re-sent after a retryable answer
        drop(ckpt);

        let (_, loaded) = read(&path).unwrap();
        assert_eq!(
            loaded.in_doubt().collect::<Vec<_>>(),
            vec![(2, 0), (4, 1), (7, 0)]
        );
        assert_eq!(loaded.is_in_doubt(2), Some(0));
        assert_eq!(loaded.is_in_doubt(3), None);
        assert_eq!(loaded.is_in_doubt(4), Some(1));
        assert_eq!(loaded.is_in_doubt(5), None);
        assert_eq!(loaded.is_in_doubt(6), None);
        assert_eq!(loaded.is_in_doubt(8), None);
    }

    #[test]
    fn steps_done_tells_where_a_row_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.intent(2, 0).unwrap();
        ckpt.step_done(2, 0).unwrap();
        ckpt.intent(3, 0).unwrap();
        ckpt.step_done(3, 0).unwrap();
        ckpt.intent(3, 1).unwrap();
        ckpt.step_done(3, 1).unwrap();
        ckpt.intent(4, 0).unwrap();
        ckpt.step_done(4, 0).unwrap();
        ckpt.intent(4, 1).unwrap();
        ckpt.outcome(&row(4, Outcome::Failed), 100).unwrap(); // user deletion refused
        drop(ckpt);

        let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(loaded.steps_done(2), 1);
        assert_eq!(loaded.steps_done(3), 2);
        assert_eq!(loaded.outcome(3), None);
        assert_eq!(loaded.steps_done(9), 0);
        assert_eq!(loaded.outcome(4), Some(Outcome::Failed));
        // --retry-failed restarts row 4 at the step that failed.
        assert_eq!(ckpt.forget_failed(&mut loaded).unwrap(), 1);
        assert_eq!(loaded.outcome(4), None);
        assert_eq!(loaded.steps_done(4), 1);
        assert_eq!(loaded.is_in_doubt(4), None);
    }

    #[test]
    fn writes_outside_the_input_or_the_steps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        for result in [
            ckpt.intent(0, 0),
            ckpt.intent(10_002, 0),
            ckpt.step_done(2, MAX_STEPS),
            ckpt.settled(0),
            ckpt.outcome(&row(20_000, Outcome::Absent), 1),
        ] {
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
        ckpt.intent(10_001, 2).unwrap();
        drop(ckpt);
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(10_001, 2)]);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    /// Write `rows` as a run does: report row, then its outcome record.
    fn record(ckpt: &mut Checkpoint, report: &mut ReportWriter, rows: &[ReportRow]) {
        for r in rows {
            ckpt.intent(r.line, 0).unwrap();
            ckpt.flush().unwrap();
            report.write(r).unwrap();
            ckpt.outcome(r, report.len()).unwrap();
        }
        report.flush().unwrap();
        ckpt.flush().unwrap();
    }

    #[test]
    fn retry_failed_then_rebuild_writes_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let report_path = dir.path().join("report.csv");
        let fmt = ReportFormat::Csv;
        let first = [
            row(2, Outcome::Unlinked),
            row(3, Outcome::Failed),
            row(4, Outcome::Failed),
            row(5, Outcome::Absent),
        ];

        // Run 1.
        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        let (mut report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
        assert_eq!(start, ReportStart::Created);
        record(&mut ckpt, &mut report, &first);
        drop((ckpt, report));
        assert_eq!(fs::read(&report_path).unwrap(), csv_of(&first));

        // Run 2, --retry-failed: row 3 is retried, then the run dies before row 4.
        let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(loaded.counts()[&Outcome::Failed], 2);
        assert_eq!(ckpt.forget_failed(&mut loaded).unwrap(), 2);
        assert!(loaded.needs_rebuild());
        assert_eq!(loaded.rows_recorded(), 2);
        let (mut report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
        assert_eq!(start, ReportStart::Rebuilt);
        let kept = [first[0].clone(), first[3].clone()];
        assert_eq!(fs::read(&report_path).unwrap(), csv_of(&kept));
        let retried = row(3, Outcome::Unlinked);
        record(&mut ckpt, &mut report, std::slice::from_ref(&retried));
        drop((ckpt, report));

        // Run 3, no flag: row 4 stays pending (the forget is durable), the report continues.
        let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert!(!loaded.needs_rebuild());
        assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked));
        assert_eq!(loaded.outcome(3), Some(Outcome::Unlinked));
        assert_eq!(loaded.outcome(4), None);
        assert_eq!(loaded.outcome(5), Some(Outcome::Absent));
        assert_eq!(loaded.forget_failed(), 0);
        let expected = csv_of(&[kept[0].clone(), kept[1].clone(), retried.clone()]);
        assert_eq!(loaded.report_len(), expected.len() as u64);
        let (report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
        assert_eq!(start, ReportStart::Continued { cut: 0 });
        drop((ckpt, report));
        assert_eq!(fs::read(&report_path).unwrap(), expected);

        // The report lost to a power failure: rebuilt, each line once, line 4 not at all.
        fs::write(&report_path, &expected[..expected.len() / 2]).unwrap();
        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        let (report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
        assert_eq!(start, ReportStart::Rebuilt);
        assert_eq!(report.len(), expected.len() as u64);
        drop((ckpt, report));
        assert_eq!(fs::read(&report_path).unwrap(), expected);
        let lines: Vec<String> = csv::Reader::from_reader(&expected[..])
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect();
        assert_eq!(lines, ["2", "5", "3"]);
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(
            loaded.report_len(),
            fs::metadata(&report_path).unwrap().len()
        );
    }

    #[test]
    fn rebuild_keeps_only_the_last_outcome_record_of_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let report_path = dir.path().join("report.jsonl");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.outcome(&row(2, Outcome::Failed), 1).unwrap();
        ckpt.outcome(&row(3, Outcome::Unlinked), 2).unwrap();
        ckpt.outcome(&row(2, Outcome::Absent), 3).unwrap();
        ckpt.outcome(&row(4, Outcome::Duplicate), 4).unwrap();
        ckpt.intent(4, 0).unwrap(); // row 4's outcome superseded: pending again
        drop(ckpt);

        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(2), Some(Outcome::Absent));
        assert_eq!(loaded.outcome(4), None);
        let mut writer = ReportWriter::create(&report_path, ReportFormat::Jsonl).unwrap();
        let len = rebuild_report(&path, &loaded, &mut writer).unwrap();
        drop(writer);
        let text = fs::read(&report_path).unwrap();
        assert_eq!(len, text.len() as u64);
        let expected = [
            encode_row(&row(3, Outcome::Unlinked), ReportFormat::Jsonl),
            encode_row(&row(2, Outcome::Absent), ReportFormat::Jsonl),
        ]
        .concat();
        assert_eq!(text, expected);
        assert_eq!(mode(&report_path), 0o600);
    }

    #[test]
    fn open_report_cuts_rows_that_were_never_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let report_path = dir.path().join("report.csv");
        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        let (mut report, _) = ckpt
            .open_report(&loaded, &report_path, ReportFormat::Csv)
            .unwrap();
        record(&mut ckpt, &mut report, &[row(2, Outcome::Unlinked)]);
        // Killed after writing row 3 to the report but before recording it.
        ckpt.intent(3, 0).unwrap();
        ckpt.flush().unwrap();
        report.write(&row(3, Outcome::Unlinked)).unwrap();
        report.flush().unwrap();
        let extra = encode_row(&row(3, Outcome::Unlinked), ReportFormat::Csv).len() as u64;
        drop((ckpt, report));

        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert_eq!(loaded.is_in_doubt(3), Some(0));
        let (report, start) = ckpt
            .open_report(&loaded, &report_path, ReportFormat::Csv)
            .unwrap();
        assert_eq!(start, ReportStart::Continued { cut: extra });
        assert_eq!(report.len(), loaded.report_len());
        let expected = csv_of(&[row(2, Outcome::Unlinked)]);
        assert_eq!(fs::read(&report_path).unwrap(), expected);
        drop((ckpt, report));

        // Full length, but its end zero-filled by a power loss: rebuilt, not continued.
        let mut zeroed = expected.clone();
        let n = zeroed.len();
        zeroed[n - 50..].fill(0);
        fs::write(&report_path, &zeroed).unwrap();
        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        let (_, start) = ckpt
            .open_report(&loaded, &report_path, ReportFormat::Csv)
            .unwrap();
        assert_eq!(start, ReportStart::Rebuilt);
        assert_eq!(fs::read(&report_path).unwrap(), expected);
    }

    #[test]
    fn fresh_archives_journal_and_report_with_one_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv.ckpt");
        let report_path = dir.path().join("report.csv");
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.outcome(&row(2, Outcome::Unlinked), 100).unwrap();
        drop(ckpt);
        fs::write(&report_path, "old report").unwrap();

        let changed = Binding {
            input_hash: 1,
            ..binding()
        };
        let (ckpt, loaded, archived) =
            Checkpoint::open_fresh(&path, &changed, Some(&report_path)).unwrap();
        assert_eq!(loaded.rows_recorded(), 0);
        assert_eq!(archived.len(), 2);
        let names: Vec<String> = archived
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let stamp = names[1]
            .strip_prefix("report.")
            .and_then(|n| n.strip_suffix(".csv"))
            .unwrap();
        assert_eq!(stamp.len(), "20261123T081500Z".len());
        assert_eq!(names[0], format!("report.{stamp}.csv.ckpt"));
        assert_eq!(fs::read_to_string(&archived[1]).unwrap(), "old report");
        let (old_binding, old) = read(&archived[0]).unwrap();
        assert_eq!(old_binding, binding());
        assert_eq!(old.outcome(2), Some(Outcome::Unlinked));
        drop(ckpt);
        let (now, fresh) = read(&path).unwrap();
        assert_eq!(now, changed);
        assert_eq!(fresh.rows_recorded(), 0);
        assert!(!report_path.exists());

        // Nothing to archive: nothing listed.
        fs::remove_file(&path).unwrap();
        let (_, _, archived) = Checkpoint::open_fresh(&path, &changed, Some(&report_path)).unwrap();
        assert!(archived.is_empty());
    }

    const CHILD_ENV: &str = "UNLINKER_CKPT_TEST_CHILD";

    /// The writer killed by `a_killed_run_leaves_a_loadable_journal_and_no_lock`; does nothing
    /// unless started by it.
    #[test]
    #[ignore = "run as a child process by another test"]
    fn child_writes_until_killed() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let (mut ckpt, _) = Checkpoint::open(Path::new(&path), &binding()).unwrap();
        for i in 0u64.. {
            let line = 2 + i % 9000;
            ckpt.intent(line, 0).unwrap();
            ckpt.flush().unwrap();
            ckpt.outcome(&row(line, Outcome::Unlinked), i).unwrap();
        }
    }

    #[test]
    fn a_killed_run_leaves_a_loadable_journal_and_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "checkpoint::tests::child_writes_until_killed",
                "--exact",
                "--ignored",
                "--quiet",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while fs::metadata(&path).map_or(0, |m| m.len()) < 1_000_000 {
            assert!(Instant::now() < deadline, "the child wrote nothing");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }

        match Checkpoint::open(&path, &binding()) {
            Err(CheckpointError::Locked { holder, .. }) => {
                assert!(
                    holder.starts_with(&format!("pid={} ", child.id())),
                    "{holder}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        assert!(loaded.rows_recorded() > 1000, "{loaded:?}");
        assert!(loaded.in_doubt().count() <= 1, "{loaded:?}");
        assert_eq!(loaded.journal_len, fs::metadata(&path).unwrap().len());
        ckpt.settled(2).unwrap();
        drop(ckpt);
        let (_, after) = read(&path).unwrap();
        assert_eq!(after.dropped_tail_bytes(), 0);
        assert_eq!(after.is_in_doubt(2), None);
    }

    /// `cargo test --release --lib checkpoint::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement; run in release mode"]
    fn throughput() {
        const PAIRS: u64 = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let big = Binding {
            input_len: 10_000_000,
            ..binding()
        };
        let rows: Vec<ReportRow> = (0..1000).map(|i| row(i + 2, Outcome::Unlinked)).collect();
        for sync_every in [None, Some(1000u64)] {
            let path = dir.path().join(format!("bench-{sync_every:?}.ckpt"));
            let (mut ckpt, _) = Checkpoint::open(&path, &big).unwrap();
            let started = Instant::now();
            for line in 2..PAIRS + 2 {
                ckpt.intent(line, 0).unwrap();
                ckpt.flush().unwrap();
                let mut r = rows[(line % 1000) as usize].clone();
                r.line = line;
                ckpt.outcome(&r, line * 300).unwrap();
                if let Some(n) = sync_every
                    && line % n == 0
                {
                    ckpt.sync().unwrap();
                }
            }
            ckpt.sync().unwrap();
            let took = started.elapsed();
            drop(ckpt);
            let size = fs::metadata(&path).unwrap().len();
            let started = Instant::now();
            let (_, loaded) = read(&path).unwrap();
            let load = started.elapsed();
            assert_eq!(loaded.rows_recorded(), PAIRS);
            eprintln!(
                "sync every {sync_every:?} pairs: {PAIRS} intent+flush+outcome pairs in {took:.2?} \
                 = {:.0} records/s ({:.0} pairs/s); journal {} MB loads in {load:.2?} ({:.0} records/s)",
                2.0 * PAIRS as f64 / took.as_secs_f64(),
                PAIRS as f64 / took.as_secs_f64(),
                size / 1_000_000,
                2.0 * PAIRS as f64 / load.as_secs_f64(),
            );
        }
    }

    #[test]
    fn a_huge_row_is_recorded_cut_and_the_job_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let report_path = dir.path().join("report.csv");
        let fmt = ReportFormat::Csv;
        let mut huge = row(2, Outcome::Failed);
        huge.key = "u".repeat(2_500_000);
        huge.message = "\u{1}".repeat(1024 * 1024 - 100);
        huge.request = "x".repeat(3_000_000);
        let normal = row(3, Outcome::Unlinked);

        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        let (mut report, _) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
        record(&mut ckpt, &mut report, &[huge.clone(), normal.clone()]);
        drop((ckpt, report));
        let cut = huge.bounded().into_owned();
        assert_eq!(cut.message.chars().count(), report::MAX_MESSAGE_CHARS);
        let expected = csv_of(&[cut.clone(), normal.clone()]);
        assert_eq!(fs::read(&report_path).unwrap(), expected);

        // Resume: the journal loads, and a rebuild gives the same rows. (Read without the lock:
        // a test elsewhere in this binary forking a child could hold a copy of it for a moment.)
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(2), Some(Outcome::Failed));
        assert_eq!(loaded.rows_recorded(), 2);
        assert_eq!(loaded.report_len(), expected.len() as u64);
        fs::remove_file(&report_path).unwrap();
        let mut writer = ReportWriter::create(&report_path, fmt).unwrap();
        rebuild_report(&path, &loaded, &mut writer).unwrap();
        assert_eq!(fs::read(&report_path).unwrap(), expected);
    }

    #[test]
    fn journals_without_the_reference_column_load_with_it_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.ckpt");
        let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        drop(ckpt);
        // As the version before the `reference` column wrote it (field order matters).
        let new = serde_json::to_string(&row(2, Outcome::Absent)).unwrap();
        let old = new.replace(r#","reference":"""#, "");
        assert_ne!(old, new);
        let mut line = format!(r#"{{"t":"outcome","report_len":10,"row":{old}}}"#).into_bytes();
        assert!(
            fast_outcome(&line).is_some(),
            "the fast path reads old records"
        );
        journal::seal(&mut line);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend(line);
        fs::write(&path, bytes).unwrap();
        let (_, loaded) = read(&path).unwrap();
        assert_eq!(loaded.outcome(2), Some(Outcome::Absent));
        let mut w = ReportWriter::create(&dir.path().join("r.csv"), ReportFormat::Csv).unwrap();
        rebuild_report(&path, &loaded, &mut w).unwrap();
        let rebuilt = fs::read_to_string(dir.path().join("r.csv")).unwrap();
        assert_eq!(rebuilt.as_bytes(), csv_of(&[row(2, Outcome::Absent)]));

        // New records carry it, and still take the fast path.
        let mut r = row(3, Outcome::Absent);
        r.reference = "T-\"1\"".into();
        let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.scratch.clear();
        ckpt.outcome(&r, 10).unwrap();
        ckpt.flush().unwrap();
        drop(ckpt);
        let text = fs::read_to_string(&path).unwrap();
        let json = text.lines().last().unwrap().rsplit_once('\t').unwrap().0;
        assert!(json.contains(r#""reference":"T-\"1\"""#), "{json}");
        assert_eq!(
            fast_outcome(json.as_bytes()),
            Some((3, Outcome::Absent, 10))
        );
    }

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

    #[test]
    fn a_report_without_its_checkpoint_is_archived_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.ckpt");
        let report_path = dir.path().join("report.csv");
        fs::write(&report_path, "old rows\n").unwrap();
        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        let (report, start) = ckpt
            .open_report(&loaded, &report_path, ReportFormat::Csv)
            .unwrap();
        assert_eq!(start, ReportStart::Created);
        drop((ckpt, report));
        let archived: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with("report.") && name.ends_with("Z.csv")
            })
            .collect();
        assert_eq!(archived.len(), 1, "{archived:?}");
        assert_eq!(fs::read_to_string(&archived[0]).unwrap(), "old rows\n");
        assert_eq!(
            fs::read_to_string(&report_path).unwrap(),
            format!("{}\n", report::COLUMNS.join(","))
        );

        // With its checkpoint (no row recorded yet), the report is the job's own: no archive.
        let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
        ckpt.open_report(&loaded, &report_path, ReportFormat::Csv)
            .unwrap();
        drop(ckpt);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_symlinked_checkpoint_or_lock_is_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "keep").unwrap();
        let path = dir.path().join("job.ckpt");
        symlink(&target, &path).unwrap();
        assert!(Checkpoint::open(&path, &binding()).is_err());
        assert!(Checkpoint::open_fresh(&path, &binding(), None).is_err());
        fs::remove_file(&path).unwrap();
        symlink(&target, with_suffix(&path, ".lock")).unwrap();
        assert!(Checkpoint::open(&path, &binding()).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }
}
