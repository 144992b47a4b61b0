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
//! | `intent` | `line`, `step`, optional `link` | the call for step `step` (0 unlink, 1 delete the user) is about to be sent; for a wildcard row, `link` = `{"key":…,"params":[[name,value],…]}` names the link |
//! | `step` | `line`, `step`, optional `link` | that step succeeded; the row (or the wildcard row's link) continues at step `step + 1` |
//! | `link` | `line`, `label`, `outcome`, `message` | a wildcard row finished one of its links (`unlinked`, `absent` or `failed`); its next call is for another link |
//! | `settled` | `line` | the attempt ended without an outcome (halt, signal after a retryable answer): pending, not in doubt |
//! | `lost` | `line` | the next outcome of the line is `absent` by a read-back after a lost answer (counted apart) |
//! | `outcome` | `row` (a whole [`ReportRow`](crate::report::ReportRow)), `report_len` | the row's final outcome; the report's byte length once that row was written |
//! | `report` | `len` | the report was rebuilt and is `len` bytes long (overrides earlier `report_len`) |
//! | `forget` | `outcome` | every earlier outcome of this kind is dropped (`--retry-failed`); the report needs a rebuild |
//! | `stop` | `why`, `at` | a run ended: why (`complete`, `limit`, `signal`, `deadline`, `halt: <reason>`, `error: <what>`) and when (RFC 3339); any later record means a later run that left none (killed, or still running) |
//!
//! A row is *in doubt* when its last record is an `intent`: the call may have reached the vendor.
//! A wildcard row (SPEC section 3) keeps, until its outcome, the links it finished and the link
//! it was at ([`LinkProgress`]); a resume lists the user's links again, skips those, and settles
//! the link in doubt by that list.
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
//! for rows with several outcome records (re-attempted with `--retry-failed`), and for each row
//! recorded `failed` its message cut to [`FAILED_BEFORE_CHARS`] characters, so that a retried
//! row can say why it had failed before (only failed outcomes are parsed whole on loading).
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
//! at the very end, however the run ends:  ckpt.record_stop("complete" | "limit" | …)
//! ```
//!
//! # Files
//!
//! - `journal.rs`: the line format (`<json>\t<checksum>\n`) and a scanner that tells a torn
//!   tail from damage;
//! - `record.rs`: the record schema (header, record kinds) and how one record changes the state;
//! - `state.rs`: [`Loaded`], what a journal says about every row, one byte per input line;
//! - `load.rs`: reading a journal into [`Loaded`] and checking its binding ([`read`]);
//! - `writer.rs`: [`Checkpoint`], the open journal a run appends to;
//! - `report_sync.rs`: keeping the report in step with the journal
//!   ([`Checkpoint::open_report`], [`rebuild_report`]);
//! - `lock.rs`: one run per checkpoint; `archive.rs`: `--fresh` moves old files aside;
//! - `error.rs`: [`CheckpointError`].

mod archive;
mod error;
mod journal;
mod load;
mod lock;
mod record;
mod report_sync;
mod state;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use archive::{archive, archive_at};
pub use error::CheckpointError;
pub use load::read;
pub use report_sync::{ReportStart, rebuild_report};
pub use state::{FAILED_BEFORE_CHARS, LastStop, LinkAt, LinkDone, LinkProgress, Loaded, MAX_STEPS};
pub use writer::Checkpoint;

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
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
