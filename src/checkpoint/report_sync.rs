//! Keeping the report in step with the journal: on opening, continue the report, cut back to
//! the recorded length, or rebuild it from the journal's outcome records when it cannot be
//! trusted (lost, zero-filled, or outcomes were forgotten).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use super::journal::{Scan, Scanner};
use super::load::READ_BUF;
use super::record::{FullOutcome, Kind, RawRecord};
use super::{Checkpoint, CheckpointError, Loaded, archive};
use crate::report::{ReportFormat, ReportWriter};

impl Checkpoint {
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
            if self.created() && on_disk > 0 {
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
        let len = rebuild_report(self.path(), loaded, &mut writer)?;
        self.mark_report_len(len)
            .and_then(|()| self.sync())
            .map_err(CheckpointError::io("write checkpoint", self.path()))?;
        Ok((writer, ReportStart::Rebuilt))
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
