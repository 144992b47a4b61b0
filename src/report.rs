//! The per-row result report: one [`ReportRow`] type, written as CSV or JSONL.
//!
//! The columns and their order are the user-facing contract (SPEC section 5). Files are created
//! readable by the owner only: they hold personal data.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// Report file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Jsonl,
}

impl ReportFormat {
    pub fn from_path(path: &Path) -> Option<ReportFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(ReportFormat::Csv),
            "jsonl" | "ndjson" => Some(ReportFormat::Jsonl),
            _ => None,
        }
    }
}

/// Open a file for writing, creating it readable and writable by the owner only.
pub fn create_private(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    if append {
        options.append(true);
    } else {
        options.truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // An existing file keeps its old mode with `mode()`: tighten it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
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

    pub fn write(&mut self, row: &ReportRow) -> io::Result<()> {
        let bytes = encode_row(row, self.format);
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
