//! The per-row result report: one [`ReportRow`] type, written as CSV or JSONL.
//!
//! The columns and their order are the user-facing contract (SPEC section 5). Files are created
//! readable by the owner only: they hold personal data.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::row::cut;

/// Report columns, in order.
pub const COLUMNS: [&str; 13] = [
    "line",
    "vendor",
    "key",
    "reference",
    "outcome",
    "http_status",
    "vendor_code",
    "attempts",
    "elapsed_ms",
    "request_id",
    "request",
    "message",
    "finished_at",
];

/// Every row's final outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Unlinked,
    Absent,
    DryRun,
    Invalid,
    Duplicate,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Unlinked,
        Outcome::Absent,
        Outcome::DryRun,
        Outcome::Invalid,
        Outcome::Duplicate,
        Outcome::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Unlinked => "unlinked",
            Outcome::Absent => "absent",
            Outcome::DryRun => "dry_run",
            Outcome::Invalid => "invalid",
            Outcome::Duplicate => "duplicate",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == s)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One report row. Field order is the column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    pub line: u64,
    pub vendor: String,
    pub key: String,
    /// The `input.columns.reference` value (a ticket or request id), else empty.
    #[serde(default)]
    pub reference: String,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub vendor_code: Option<String>,
    pub attempts: u32,
    pub elapsed_ms: u64,
    pub request_id: Option<String>,
    pub request: String,
    pub message: String,
    pub finished_at: String,
}

/// Longest `message`, in characters (SPEC section 5): longer vendor text is cut.
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// Longest `key`. Input fields have length limits, but an `invalid` row's key is whatever the row
/// gave; the line number still identifies a cut row.
pub const MAX_KEY_CHARS: usize = 4096;
/// Longest `reference`.
pub const MAX_REFERENCE_CHARS: usize = 1000;
/// Longest `request` (every call of a row, URLs percent-encoded).
pub const MAX_REQUEST_CHARS: usize = 8192;
/// Longest `vendor`, `vendor_code`, `request_id` and `finished_at`.
pub const MAX_SHORT_CHARS: usize = 256;
/// Characters a [`ReportRow::bounded`] row holds at most in its text fields. JSON escaping turns
/// one character into at most 6 bytes, so a journal record stays far below the journal's line
/// limit (checked at compile time in `checkpoint`).
pub const MAX_ROW_CHARS: usize = MAX_MESSAGE_CHARS
    + MAX_KEY_CHARS
    + MAX_REFERENCE_CHARS
    + MAX_REQUEST_CHARS
    + 4 * MAX_SHORT_CHARS;

impl ReportRow {
    /// This row with every text cut to its limit ([`MAX_MESSAGE_CHARS`] and the others), so that
    /// whatever a row or an answer held, its journal record fits (SPEC section 6: no row can
    /// block a job). [`ReportWriter::write`] and the checkpoint's outcome record both apply it,
    /// so the report and the journal hold the same values. Borrowed when nothing is too long.
    pub fn bounded(&self) -> std::borrow::Cow<'_, ReportRow> {
        use std::borrow::Cow;
        let opt = |v: &Option<String>| v.as_deref().and_then(|s| cut(s, MAX_SHORT_CHARS));
        let vendor = cut(&self.vendor, MAX_SHORT_CHARS);
        let key = cut(&self.key, MAX_KEY_CHARS);
        let reference = cut(&self.reference, MAX_REFERENCE_CHARS);
        let vendor_code = opt(&self.vendor_code);
        let request_id = opt(&self.request_id);
        let request = cut(&self.request, MAX_REQUEST_CHARS);
        let message = cut(&self.message, MAX_MESSAGE_CHARS);
        let finished_at = cut(&self.finished_at, MAX_SHORT_CHARS);
        let any = [
            &vendor,
            &key,
            &reference,
            &vendor_code,
            &request_id,
            &request,
            &message,
            &finished_at,
        ]
        .iter()
        .any(|c| c.is_some());
        if !any {
            return Cow::Borrowed(self);
        }
        let mut row = self.clone();
        let set = |field: &mut String, value: Option<String>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut row.vendor, vendor);
        set(&mut row.key, key);
        set(&mut row.reference, reference);
        set(&mut row.request, request);
        set(&mut row.message, message);
        set(&mut row.finished_at, finished_at);
        if vendor_code.is_some() {
            row.vendor_code = vendor_code;
        }
        if request_id.is_some() {
            row.request_id = request_id;
        }
        Cow::Owned(row)
    }
}

/// Report file formats: the same two as inputs, by the same extensions.
pub type ReportFormat = crate::row::Format;

/// Open a file for writing, creating it readable and writable by the owner only, never through a
/// symbolic link (see [`crate::fsutil::create_private`]).
pub fn create_private(path: &Path, append: bool) -> io::Result<File> {
    crate::fsutil::create_private(path, append)
}

/// Writes report rows to a file.
pub struct ReportWriter {
    path: PathBuf,
    format: ReportFormat,
    out: BufWriter<File>,
    /// Bytes in the file once everything buffered is written.
    len: u64,
}

impl ReportWriter {
    /// Create (truncating) a report at `path`, writing the CSV header.
    pub fn create(path: &Path, format: ReportFormat) -> io::Result<ReportWriter> {
        let file = create_private(path, false)?;
        let mut writer = ReportWriter {
            path: path.to_path_buf(),
            format,
            out: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
        };
        if format == ReportFormat::Csv {
            let header = format!("{}\n", COLUMNS.join(","));
            writer.write_raw(header.as_bytes())?;
        }
        Ok(writer)
    }

    /// Continue an existing report, cutting it back to `len` bytes first (anything past `len` was
    /// written by a run that crashed before recording it, and will be written again).
    pub fn resume(path: &Path, format: ReportFormat, len: u64) -> io::Result<ReportWriter> {
        let mut file = create_private(path, true)?;
        file.set_len(len)?;
        file.seek(io::SeekFrom::End(0))?;
        Ok(ReportWriter {
            path: path.to_path_buf(),
            format,
            out: BufWriter::with_capacity(64 * 1024, file),
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length once buffered bytes are written.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Write one row, cut to its limits ([`ReportRow::bounded`]).
    pub fn write(&mut self, row: &ReportRow) -> io::Result<()> {
        let bytes = encode_row(&row.bounded(), self.format);
        self.write_raw(&bytes)
    }

    /// Hand buffered rows to the OS (survives a killed process).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flush and fsync (survives power loss).
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// One row as the bytes it takes in a report of `format` (with its line ending).
pub fn encode_row(row: &ReportRow, format: ReportFormat) -> Vec<u8> {
    match format {
        ReportFormat::Csv => {
            // A small buffer: the default 8 KiB would be allocated for every row.
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .buffer_capacity(512)
                .from_writer(Vec::with_capacity(512));
            w.serialize(row).expect("report rows always serialize");
            w.into_inner().expect("writing to a Vec cannot fail")
        }
        ReportFormat::Jsonl => {
            let mut v = serde_json::to_vec(row).expect("report rows always serialize");
            v.push(b'\n');
            v
        }
    }
}

/// RFC 3339 UTC timestamp of now, to the millisecond.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ReportRow {
        ReportRow {
            line: 7,
            vendor: "auth0".into(),
            key: "auth0|1/github/2".into(),
            reference: "T-1".into(),
            outcome: Outcome::DryRun,
            http_status: None,
            vendor_code: None,
            attempts: 0,
            elapsed_ms: 0,
            request_id: None,
            request: "DELETE https://x/a,b".into(),
            message: "say \"hi\"".into(),
            finished_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn csv_and_jsonl_use_the_contract_columns() {
        let csv = String::from_utf8(encode_row(&row(), ReportFormat::Csv)).unwrap();
        assert_eq!(
            csv,
            "7,auth0,auth0|1/github/2,T-1,dry_run,,,0,0,,\"DELETE https://x/a,b\",\"say \"\"hi\"\"\",2026-01-01T00:00:00.000Z\n"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&encode_row(&row(), ReportFormat::Jsonl)).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut expected = COLUMNS.to_vec();
        expected.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, expected);
        assert_eq!(json["outcome"], "dry_run");
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary_and_cutting_again_changes_nothing() {
        assert_eq!(cut("abc", 3), None);
        assert_eq!(cut("abcd", 3).as_deref(), Some("ab…"));
        assert_eq!(cut("ééé", 3), None);
        assert_eq!(cut("éééé", 3).as_deref(), Some("éé…"));
        let mut r = row();
        r.message = "ü".repeat(1024 * 1024 / 2 - 1);
        r.key = "k".repeat(2_500_000);
        r.request = "x".repeat(100_000);
        r.vendor_code = Some("c".repeat(10_000));
        r.request_id = Some("i".repeat(300));
        r.reference = "r".repeat(5000);
        let b = r.bounded().into_owned();
        assert_eq!(b.message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(b.message.ends_with('…') && b.message.starts_with("üü"));
        assert_eq!(b.key.chars().count(), MAX_KEY_CHARS);
        assert_eq!(b.request.chars().count(), MAX_REQUEST_CHARS);
        assert_eq!(b.reference.chars().count(), MAX_REFERENCE_CHARS);
        assert_eq!(
            b.vendor_code.as_ref().unwrap().chars().count(),
            MAX_SHORT_CHARS
        );
        assert_eq!(
            b.request_id.as_ref().unwrap().chars().count(),
            MAX_SHORT_CHARS
        );
        assert_eq!(b.bounded().into_owned(), b, "idempotent");
        assert!(matches!(row().bounded(), std::borrow::Cow::Borrowed(_)));
        // The report holds the cut row.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut w = ReportWriter::create(&path, ReportFormat::Jsonl).unwrap();
        w.write(&r).unwrap();
        w.flush().unwrap();
        let back: ReportRow = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn report_is_owner_only_and_resumes_at_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ReportWriter::create(&path, ReportFormat::Csv).unwrap();
        w.write(&row()).unwrap();
        let keep = w.len();
        w.write(&row()).unwrap();
        w.flush().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(w);
        let mut w = ReportWriter::resume(&path, ReportFormat::Csv, keep).unwrap();
        w.write(&row()).unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(w.len(), text.len() as u64);
    }
}
