//! Streaming input: CSV and JSONL records with their line numbers, one at a time.
//!
//! Readers never collect the file: memory stays flat whatever the input's size. A record that
//! cannot be read (bad JSON, wrong field count, invalid UTF-8) is still a [`Record`], carrying an
//! [`Invalid`] reason, so the run goes on; only an unreadable file is an error.

mod csv;
mod jsonl;
pub mod spool;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::row::Invalid;
pub use crate::row::{Fields, Format};

/// The longest record read (bytes, its line terminator not counted); a longer one is an invalid
/// record, never held in memory whole (SPEC section 3).
pub const MAX_RECORD: usize = 64 * 1024;

/// The longest field value (bytes, after trimming) unless its vendor's rule is stricter: the
/// adapters check their own, smaller limits.
pub const MAX_FIELD: usize = 1024;

fn record_too_long() -> Invalid {
    Invalid::new("", format!("record longer than {MAX_RECORD} bytes"))
}

fn field_too_long(name: &str) -> Invalid {
    Invalid::new(name, format!("longer than {MAX_FIELD} bytes"))
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Stdin => f.write_str("<stdin>"),
        }
    }
}

/// Everything needed to read an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub source: Source,
    pub format: Format,
    /// canonical field name → column (CSV) or key (JSONL) in the file.
    pub columns: BTreeMap<String, String>,
    /// canonical field name → value used when a record lacks the field or leaves it empty.
    pub defaults: BTreeMap<String, String>,
    /// `input.columns.reference`: the column (CSV) or key (JSONL) carried into each row's
    /// `reference`. Not a field: no adapter reads it.
    pub reference: Option<String>,
}

/// One input record: the 1-based line where it starts, its fields or why it is unreadable, and
/// its `reference` (see [`crate::row::reference`]; empty without the setting, or when the record
/// cannot be read that far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: u64,
    pub fields: Result<Fields, Invalid>,
    pub reference: String,
}

/// A problem that stops reading the input altogether.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open input {source_name}: {error}")]
    Open {
        source_name: String,
        error: io::Error,
    },
    #[error("cannot read input {source_name} near line {line}: {error}")]
    Read {
        source_name: String,
        line: u64,
        error: io::Error,
    },
    #[error("input {source_name}: {message}")]
    Header {
        source_name: String,
        message: String,
    },
    /// Copying a non-file input into its spool file failed on the spool's side.
    #[error("cannot copy input {source_name} into {}: {error}", .path.display())]
    Spool {
        source_name: String,
        path: PathBuf,
        error: io::Error,
    },
    /// A signal arrived while a non-file input was being copied: nothing was recorded.
    #[error(
        "stopped while copying input {source_name}; nothing was sent or recorded: run again, \
         feeding the input again"
    )]
    Stopped { source_name: String },
}

/// A stream of records.
pub type Records = Box<dyn Iterator<Item = Result<Record, InputError>> + Send>;

/// Open the input and stream its records. Column renames and defaults are applied here, so callers
/// see canonical field names only.
pub fn open(spec: &InputSpec) -> Result<Records, InputError> {
    let reader: Box<dyn BufRead + Send> = match &spec.source {
        Source::File(path) => {
            let file = File::open(path).map_err(|error| InputError::Open {
                source_name: path.display().to_string(),
                error,
            })?;
            Box::new(BufReader::with_capacity(256 * 1024, file))
        }
        Source::Stdin => Box::new(BufReader::with_capacity(256 * 1024, io::stdin())),
    };
    open_reader(spec, reader)
}

/// Stream records from any reader (used by tests and for stdin).
pub fn open_reader(
    spec: &InputSpec,
    reader: Box<dyn BufRead + Send>,
) -> Result<Records, InputError> {
    let source_name = spec.source.to_string();
    match spec.format {
        Format::Csv => csv::records(
            reader,
            source_name,
            spec.columns.clone(),
            spec.defaults.clone(),
            spec.reference.clone(),
        ),
        Format::Jsonl => Ok(jsonl::records(
            reader,
            source_name,
            spec.columns.clone(),
            spec.defaults.clone(),
            spec.reference.clone(),
        )),
    }
}

/// Invert `columns` (canonical → file name) into file name → canonical name.
pub(crate) fn rename_map(columns: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    columns
        .iter()
        .map(|(canonical, file)| (file.clone(), canonical.clone()))
        .collect()
}

/// A hash of a file's bytes, read in large blocks (checkpoint binding).
pub fn content_hash(path: &Path) -> io::Result<u128> {
    let mut file = File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.digest128())
}

/// Helpers for the CSV and JSONL readers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn spec(format: Format, columns: &[(&str, &str)], defaults: &[(&str, &str)]) -> InputSpec {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        InputSpec {
            source: Source::Stdin,
            format,
            columns: map(columns),
            defaults: map(defaults),
            reference: None,
        }
    }

    pub fn open_with(input: &[u8], spec: &InputSpec) -> Result<Records, InputError> {
        open_reader(spec, Box::new(io::Cursor::new(input.to_vec())))
    }

    pub fn read_with(input: &[u8], spec: &InputSpec) -> Vec<Record> {
        open_with(input, spec)
            .expect("opens")
            .map(|r| r.expect("no I/O error"))
            .collect()
    }

    pub fn ok(line: u64, pairs: &[(&str, &str)]) -> Record {
        Record {
            line,
            fields: Ok(Fields::from_pairs(pairs.iter().copied())),
            reference: String::new(),
        }
    }

    pub fn bad(line: u64, field: &str, rule: &str) -> Record {
        Record {
            line,
            fields: Err(Invalid::new(field, rule)),
            reference: String::new(),
        }
    }
}
