//! CSV records: the header names the columns, every later row is one record.
//!
//! Parsing is the `csv` crate's; line numbers are ours. The crate reports where each read *began*,
//! which lies before any blank lines it skipped, so a thin reader wrapper ([`LineTracker`]) notes
//! where every `\n` byte sits and a record's line is the count of newlines before its first byte.
//! Records end at `\n` only (a CRLF row leaves a `\r` on its last field, which trimming removes),
//! so a read always starts right after the previous record's newline and can only skip further
//! newlines before the record begins. That keeps the count exact across CRLF, quoted fields with
//! embedded newlines and blank lines.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, BufRead, Read};

use csv::ByteRecord;

use super::{Fields, InputError, Record, Records, rename_map};
use crate::vendor::Invalid;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The `csv` reader's own buffer; larger than its default to cut per-read overhead.
const DEFAULT_CSV_BUFFER: usize = 64 * 1024;

/// Read the header now (so header problems stop the run before any row), then stream the rows.
pub(super) fn records(
    reader: Box<dyn BufRead + Send>,
    source_name: String,
    columns: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
) -> Result<Records, InputError> {
    let read_error = |line, error| InputError::Read {
        source_name: source_name.clone(),
        line,
        error,
    };
    let reader = skip_bom(reader).map_err(|error| read_error(1, error))?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(DEFAULT_CSV_BUFFER)
        .from_reader(LineTracker::new(reader));

    let mut header = ByteRecord::new();
    loop {
        let start = rdr.position().byte();
        let more = rdr.read_byte_record(&mut header);
        let line = rdr.get_mut().start_line(start);
        match more {
            Ok(true) if is_blank(&header) => continue,
            Ok(true) => break,
            // No header at all: an empty input has no records.
            Ok(false) => return Ok(Box::new(std::iter::empty())),
            Err(err) => return Err(read_error(line, into_io(err))),
        }
    }
    let targets = column_targets(&header, &columns).map_err(|message| InputError::Header {
        source_name: source_name.clone(),
        message,
    })?;

    Ok(Box::new(CsvRecords {
        rdr,
        record: ByteRecord::new(),
        targets,
        defaults,
        source_name,
        done: false,
    }))
}

/// Drop a leading UTF-8 byte order mark, however the first bytes arrive.
fn skip_bom(mut reader: Box<dyn BufRead + Send>) -> io::Result<Box<dyn BufRead + Send>> {
    let mut head = [0u8; 3];
    let mut len = 0;
    while len < head.len() {
        match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if &head[..len] == UTF8_BOM {
        Ok(reader)
    } else {
        Ok(Box::new(
            io::Cursor::new(head[..len].to_vec()).chain(reader),
        ))
    }
}

/// The canonical field name for each column of the header, or `None` for a column to ignore.
///
/// A column named in `columns` takes the canonical name it is mapped to; any other column keeps
/// its own name, unless that name is a canonical field mapped to another column (the mapping
/// wins). Duplicate or empty names, and mapped columns missing from the header, are errors.
fn column_targets(
    header: &ByteRecord,
    columns: &BTreeMap<String, String>,
) -> Result<Vec<Option<String>>, String> {
    let renames = rename_map(columns);
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(header.len());
    let mut targets = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let number = i + 1;
        let name = std::str::from_utf8(raw)
            .map_err(|_| format!("column {number} of the header is not valid UTF-8"))?
            .trim();
        if name.is_empty() {
            return Err(format!("column {number} of the header has no name"));
        }
        if let Some(first) = seen.insert(name, number) {
            return Err(format!(
                "the header names column `{name}` twice (columns {first} and {number})"
            ));
        }
        targets.push(match renames.get(name) {
            Some(canonical) => Some(canonical.clone()),
            None if columns.contains_key(name) => None,
            None => Some(name.to_owned()),
        });
    }
    for (canonical, column) in columns {
        if !seen.contains_key(column.as_str()) {
            return Err(format!(
                "column `{column}` (input.columns.{canonical}) is not in the header"
            ));
        }
    }
    Ok(targets)
}

struct CsvRecords {
    rdr: csv::Reader<LineTracker>,
    /// Reused for every row: no allocation per row beyond the `Fields` it yields.
    record: ByteRecord,
    targets: Vec<Option<String>>,
    defaults: BTreeMap<String, String>,
    source_name: String,
    done: bool,
}

impl Iterator for CsvRecords {
    type Item = Result<Record, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let start = self.rdr.position().byte();
            let more = self.rdr.read_byte_record(&mut self.record);
            let line = self.rdr.get_mut().start_line(start);
            match more {
                Ok(true) if is_blank(&self.record) => continue,
                Ok(true) => {
                    return Some(Ok(Record {
                        line,
                        fields: self.fields(),
                    }));
                }
                Ok(false) => self.done = true,
                Err(err) => {
                    self.done = true;
                    return Some(Err(InputError::Read {
                        source_name: self.source_name.clone(),
                        line,
                        error: into_io(err),
                    }));
                }
            }
        }
        None
    }
}

impl CsvRecords {
    fn fields(&self) -> Result<Fields, Invalid> {
        let (got, want) = (self.record.len(), self.targets.len());
        if got != want {
            let plural = if got == 1 { "" } else { "s" };
            return Err(Invalid::new(
                "",
                format!("record has {got} field{plural}, the header has {want}"),
            ));
        }
        let mut fields = Fields(Vec::with_capacity(want + self.defaults.len()));
        for (raw, target) in self.record.iter().zip(&self.targets) {
            let Some(name) = target else { continue };
            let value = std::str::from_utf8(raw)
                .map_err(|_| Invalid::new(name.as_str(), "is not valid UTF-8"))?
                .trim();
            // Names are unique (checked on the header), so a push is an insert.
            if !value.is_empty() {
                fields.0.push((name.clone(), value.to_owned()));
            }
        }
        fields.apply_defaults(&self.defaults);
        Ok(fields)
    }
}

/// A whitespace-only line reads as one blank field (a CRLF blank line as `"\r"`): skip it.
fn is_blank(record: &ByteRecord) -> bool {
    match record.len() {
        0 => true,
        1 => std::str::from_utf8(&record[0]).is_ok_and(|s| s.trim().is_empty()),
        _ => false,
    }
}

fn into_io(err: csv::Error) -> io::Error {
    match err.into_kind() {
        csv::ErrorKind::Io(error) => error,
        // Reading `ByteRecord`s without headers, flexibly, only ever fails on I/O.
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

/// Passes bytes through to the CSV parser, noting the offset of every `\n` it hands over.
///
/// Offsets are dropped as soon as a record past them starts, so the queue holds at most the
/// parser's buffer and the current record's newlines.
struct LineTracker {
    inner: Box<dyn BufRead + Send>,
    /// Bytes handed out so far.
    offset: u64,
    /// Offsets of handed-out newlines not yet counted into `lines_before`.
    newlines: VecDeque<u64>,
    /// Newlines before the last record start asked about.
    lines_before: u64,
}

impl LineTracker {
    fn new(inner: Box<dyn BufRead + Send>) -> Self {
        LineTracker {
            inner,
            offset: 0,
            newlines: VecDeque::new(),
            lines_before: 0,
        }
    }

    /// The 1-based line of a record whose read started at byte `start`: the parser skips any
    /// newlines (blank lines) there, and the record begins at the first other byte.
    fn start_line(&mut self, start: u64) -> u64 {
        let mut first = start;
        while let Some(&at) = self.newlines.front() {
            if at > first {
                break;
            }
            if at == first {
                first += 1;
            }
            self.newlines.pop_front();
            self.lines_before += 1;
        }
        self.lines_before + 1
    }
}

impl Read for LineTracker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let base = self.offset;
        self.newlines.extend(
            buf[..n]
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .map(|(i, _)| base + i as u64),
        );
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{self, bad, ok, open_with, read_with};
    use super::super::{Format, InputSpec, open_reader};
    use super::*;

    fn spec(columns: &[(&str, &str)], defaults: &[(&str, &str)]) -> InputSpec {
        test_support::spec(Format::Csv, columns, defaults)
    }

    fn read(input: &[u8]) -> Vec<Record> {
        read_with(input, &spec(&[], &[]))
    }

    fn header_error(input: &[u8], spec: &InputSpec) -> String {
        match open_with(input, spec) {
            Err(InputError::Header { message, .. }) => message,
            Err(other) => panic!("expected a header error, got {other}"),
            Ok(_) => panic!("expected a header error, got records"),
        }
    }

    #[test]
    fn plain_rows_with_lf() {
        let got = read(b"id,provider\n1,facebook\n2,google\n");
        assert_eq!(
            got,
            vec![
                ok(2, &[("id", "1"), ("provider", "facebook")]),
                ok(3, &[("id", "2"), ("provider", "google")]),
            ]
        );
    }

    #[test]
    fn bom_is_stripped_from_first_header_name() {
        let got = read(b"\xEF\xBB\xBFid,provider\r\n1,facebook\r\n");
        assert_eq!(got, vec![ok(2, &[("id", "1"), ("provider", "facebook")])]);
    }

    #[test]
    fn bom_arriving_one_byte_at_a_time_is_stripped() {
        // A reader that hands out one byte per read, as a slow pipe might.
        struct Trickle(io::Cursor<Vec<u8>>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1);
                self.0.read(&mut buf[..n])
            }
        }
        let input = b"\xEF\xBB\xBFid\n7\n".to_vec();
        let reader = io::BufReader::with_capacity(1, Trickle(io::Cursor::new(input)));
        let got: Vec<Record> = open_reader(&spec(&[], &[]), Box::new(reader))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, vec![ok(2, &[("id", "7")])]);
    }

    #[test]
    fn crlf_lines_and_crlf_without_final_newline() {
        let got = read(b"id,provider\r\n1,facebook\r\n2,google");
        assert_eq!(
            got,
            vec![
                ok(2, &[("id", "1"), ("provider", "facebook")]),
                ok(3, &[("id", "2"), ("provider", "google")]),
            ]
        );
    }

    #[test]
    fn quoted_commas_quotes_and_newlines_keep_later_lines_right() {
        let input = b"id,note\n\
            1,\"a, b\"\n\
            2,\"say \"\"hi\"\"\"\n\
            3,\"one\ntwo\nthree\"\n\
            4,after\n";
        let got = read(input);
        assert_eq!(
            got,
            vec![
                ok(2, &[("id", "1"), ("note", "a, b")]),
                ok(3, &[("id", "2"), ("note", "say \"hi\"")]),
                ok(4, &[("id", "3"), ("note", "one\ntwo\nthree")]),
                ok(7, &[("id", "4"), ("note", "after")]),
            ]
        );
    }

    #[test]
    fn quoted_newlines_with_crlf_keep_later_lines_right() {
        let input = b"id,note\r\n3,\"one\r\ntwo\r\nthree\"\r\n\r\n4,\"x\"\r\n";
        let got = read(input);
        assert_eq!(
            got,
            vec![
                ok(2, &[("id", "3"), ("note", "one\r\ntwo\r\nthree")]),
                ok(6, &[("id", "4"), ("note", "x")]),
            ]
        );
    }

    #[test]
    fn quoted_field_starting_with_newlines_starts_on_its_own_line() {
        // The record's first byte is the quote on line 2, though its content begins later.
        let got = read(b"note,id\n\"\n\nx\",1\n2,3\n");
        assert_eq!(
            got,
            vec![
                ok(2, &[("note", "x"), ("id", "1")]),
                ok(5, &[("note", "2"), ("id", "3")]),
            ]
        );
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let input = b"\n\nid,provider\n\n1,facebook\n   \n\n2,google\n\n\n\n3,x\n\n\n";
        let got = read(input);
        assert_eq!(
            got,
            vec![
                ok(5, &[("id", "1"), ("provider", "facebook")]),
                ok(8, &[("id", "2"), ("provider", "google")]),
                ok(12, &[("id", "3"), ("provider", "x")]),
            ]
        );
    }

    #[test]
    fn blank_crlf_lines_are_skipped_but_counted() {
        let input = b"id,provider\r\n\r\n \t\r\n1,facebook\r\n\r\n";
        let got = read(input);
        assert_eq!(got, vec![ok(4, &[("id", "1"), ("provider", "facebook")])]);
    }

    #[test]
    fn fields_and_header_names_are_trimmed_and_empty_values_absent() {
        let got = read(b" id ,\tprovider , email\n  42 , facebook\t,  \n");
        assert_eq!(got, vec![ok(2, &[("id", "42"), ("provider", "facebook")])]);
        let fields = got[0].fields.as_ref().unwrap();
        assert_eq!(fields.get("email"), None);
    }

    #[test]
    fn wrong_field_count_is_isolated() {
        let input = b"a,b,c,d\n1,2,3,4\n1,2,3\n1,2,3,4,5\n5,6,7,8\n";
        let got = read(input);
        assert_eq!(
            got,
            vec![
                ok(2, &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
                bad(3, "", "record has 3 fields, the header has 4"),
                bad(4, "", "record has 5 fields, the header has 4"),
                ok(5, &[("a", "5"), ("b", "6"), ("c", "7"), ("d", "8")]),
            ]
        );
    }

    #[test]
    fn one_field_is_singular() {
        let got = read(b"a,b\nx\n");
        assert_eq!(
            got,
            vec![bad(2, "", "record has 1 field, the header has 2")]
        );
    }

    #[test]
    fn invalid_utf8_is_isolated_and_names_the_canonical_field() {
        let input = b"PrimaryUserId,provider\nab\xFFcd,facebook\n2,go\xC3\n3,ok\n";
        let got = read_with(input, &spec(&[("user_id", "PrimaryUserId")], &[]));
        assert_eq!(
            got,
            vec![
                bad(2, "user_id", "is not valid UTF-8"),
                bad(3, "provider", "is not valid UTF-8"),
                ok(4, &[("user_id", "3"), ("provider", "ok")]),
            ]
        );
    }

    #[test]
    fn columns_are_renamed_to_canonical_names() {
        let input = b"PrimaryUserId,Network,extra\nu1,facebook,x\n";
        let spec = spec(
            &[("user_id", "PrimaryUserId"), ("provider", "Network")],
            &[],
        );
        let got = read_with(input, &spec);
        assert_eq!(
            got,
            vec![ok(
                2,
                &[("user_id", "u1"), ("provider", "facebook"), ("extra", "x")]
            )]
        );
    }

    #[test]
    fn mapped_column_wins_over_a_column_with_the_canonical_name() {
        let input = b"user_id,uid\nold,new\n";
        let got = read_with(input, &spec(&[("user_id", "uid")], &[]));
        assert_eq!(got, vec![ok(2, &[("user_id", "new")])]);
    }

    #[test]
    fn defaults_fill_missing_and_empty_values() {
        let input = b"id,provider\n1,\n2,google\n";
        let spec = spec(&[], &[("provider", "facebook"), ("vendor", "auth0")]);
        let got = read_with(input, &spec);
        assert_eq!(
            got,
            vec![
                ok(
                    2,
                    &[("id", "1"), ("provider", "facebook"), ("vendor", "auth0")]
                ),
                ok(
                    3,
                    &[("id", "2"), ("provider", "google"), ("vendor", "auth0")]
                ),
            ]
        );
    }

    #[test]
    fn duplicate_header_name_is_fatal_and_named() {
        let message = header_error(b"id,provider, id\n1,2,3\n", &spec(&[], &[]));
        assert_eq!(
            message,
            "the header names column `id` twice (columns 1 and 3)"
        );
    }

    #[test]
    fn empty_header_name_is_fatal() {
        let message = header_error(b"id,,provider\n1,2,3\n", &spec(&[], &[]));
        assert_eq!(message, "column 2 of the header has no name");
    }

    #[test]
    fn mapped_column_missing_from_header_is_fatal() {
        let message = header_error(b"id\n1\n", &spec(&[("user_id", "PrimaryUserId")], &[]));
        assert_eq!(
            message,
            "column `PrimaryUserId` (input.columns.user_id) is not in the header"
        );
    }

    #[test]
    fn empty_input_and_header_only_input_yield_nothing() {
        assert_eq!(read(b""), vec![]);
        assert_eq!(read(b"\xEF\xBB\xBF"), vec![]);
        assert_eq!(read(b"\n\r\n"), vec![]);
        assert_eq!(read(b"id,provider\n"), vec![]);
    }

    #[test]
    fn read_error_stops_with_the_line() {
        struct Failing {
            data: io::Cursor<Vec<u8>>,
        }
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.data.read(buf)? {
                    0 => Err(io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        let data = io::Cursor::new(b"id\n1\n2\n3".to_vec());
        let reader = io::BufReader::new(Failing { data });
        let mut records = open_reader(&spec(&[], &[]), Box::new(reader)).unwrap();
        assert_eq!(records.next().unwrap().unwrap(), ok(2, &[("id", "1")]));
        assert_eq!(records.next().unwrap().unwrap(), ok(3, &[("id", "2")]));
        match records.next() {
            Some(Err(InputError::Read { line, error, .. })) => {
                assert_eq!(line, 4);
                assert_eq!(error.to_string(), "disk on fire");
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(records.next().is_none());
    }

    #[test]
    fn line_numbers_stay_exact_across_buffer_refills() {
        // Far more than one parser buffer, with quoted newlines and blank lines mixed in.
        let mut input = b"id,note\r\n".to_vec();
        let mut expected = Vec::new();
        let mut line = 2;
        for i in 0..20_000u64 {
            match i % 4 {
                0 => {
                    input.extend_from_slice(format!("{i},\"a\r\nb\"\r\n").as_bytes());
                    expected.push(line);
                    line += 2;
                }
                1 => {
                    input.extend_from_slice(format!("\n{i},plain\n").as_bytes());
                    expected.push(line + 1);
                    line += 2;
                }
                _ => {
                    input.extend_from_slice(format!("{i},x\r\n").as_bytes());
                    expected.push(line);
                    line += 1;
                }
            }
        }
        let got: Vec<u64> = read(&input).iter().map(|r| r.line).collect();
        assert_eq!(got, expected);
    }
}
