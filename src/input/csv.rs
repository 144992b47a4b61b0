//! CSV records: the header names the columns, every later row is one record.
//!
//! Parsing is `csv_core`'s state machine, fed from our own buffer, so that we decide how much of a
//! record is kept: at most [`MAX_RECORD`] bytes of field data. A longer record (a 100 MB quoted
//! field) is still parsed to its end, so later records start in the right place, but its bytes are
//! dropped as they come and it becomes an invalid record.
//!
//! Line numbers are ours: newlines before a record are skipped here (the parser would skip them
//! too), so a record's line is one more than the newlines consumed before its first byte, and the
//! newlines inside it are counted as the parser consumes them. Records end at `\n` only (a CRLF
//! row leaves a `\r` on its last field, which trimming removes). That keeps the count exact across
//! CRLF, quoted fields with embedded newlines and blank lines.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Read};

use csv_core::ReadRecordResult;

use super::{
    Fields, InputError, MAX_FIELD, MAX_RECORD, Record, Records, field_too_long, record_too_long,
    rename_map,
};
use crate::row::Invalid;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Field bytes kept for a record at first; grown up to [`KEPT_FIELD_BYTES`] for longer records.
const DEFAULT_FIELD_BUFFER: usize = 4 * 1024;
/// Field bytes kept at most: a record's fields are at most its bytes plus a CRLF's `\r` (kept on
/// the last field); one byte more of slack so that the exact length check decides at the limit.
const KEPT_FIELD_BYTES: usize = MAX_RECORD + 2;
/// Field ends kept at first; grown as a record needs.
const DEFAULT_ENDS: usize = 16;
/// Where the bytes (and field ends) of an over-long record go: parsed, never kept.
const DISCARD_BUFFER: usize = 8 * 1024;
const DISCARD_ENDS: usize = 64;

/// Read the header now (so header problems stop the run before any row), then stream the rows.
pub(super) fn records(
    reader: Box<dyn BufRead + Send>,
    source_name: String,
    columns: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
    reference: Option<String>,
) -> Result<Records, InputError> {
    let read_error = |line, error| InputError::Read {
        source_name: source_name.clone(),
        line,
        error,
    };
    let reader = skip_bom(reader).map_err(|error| read_error(1, error))?;
    let mut parser = Parser::new(reader);

    let header = loop {
        match parser.next_record(usize::MAX) {
            Ok(Some(raw)) if parser.is_blank(&raw) => continue,
            Ok(Some(raw)) => break raw,
            // No header at all: an empty input has no records.
            Ok(None) => return Ok(Box::new(std::iter::empty())),
            Err((line, error)) => return Err(read_error(line, error)),
        }
    };
    let header_error = |message| InputError::Header {
        source_name: source_name.clone(),
        message,
    };
    if header.too_long {
        return Err(header_error(format!(
            "the header is longer than {MAX_RECORD} bytes"
        )));
    }
    let targets = column_targets(&parser, &header, &columns).map_err(header_error)?;
    let reference = match reference {
        None => None,
        Some(column) => Some(reference_index(&parser, &column).map_err(header_error)?),
    };

    Ok(Box::new(CsvRecords {
        parser,
        targets,
        reference,
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
    parser: &Parser,
    header: &RawRecord,
    columns: &BTreeMap<String, String>,
) -> Result<Vec<Option<String>>, String> {
    let renames = rename_map(columns);
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(header.fields);
    let mut targets = Vec::with_capacity(header.fields);
    for (i, raw) in parser.fields().enumerate() {
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

/// Where `input.columns.reference` is in the header (already checked for bad names).
fn reference_index(parser: &Parser, column: &str) -> Result<usize, String> {
    parser
        .fields()
        .position(|raw| std::str::from_utf8(raw).is_ok_and(|name| name.trim() == column))
        .ok_or_else(|| format!("column `{column}` (input.columns.reference) is not in the header"))
}

struct CsvRecords {
    parser: Parser,
    targets: Vec<Option<String>>,
    /// The column of `input.columns.reference`, when set.
    reference: Option<usize>,
    defaults: BTreeMap<String, String>,
    source_name: String,
    done: bool,
}

impl Iterator for CsvRecords {
    type Item = Result<Record, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            // Field ends beyond one more than the header's are only counted: the record is
            // invalid whatever they hold.
            match self.parser.next_record(self.targets.len() + 1) {
                Ok(Some(raw)) if self.parser.is_blank(&raw) => continue,
                Ok(Some(raw)) => {
                    return Some(Ok(Record {
                        line: raw.line,
                        fields: self.fields(&raw),
                        reference: self.reference(&raw),
                    }));
                }
                Ok(None) => self.done = true,
                Err((line, error)) => {
                    self.done = true;
                    return Some(Err(InputError::Read {
                        source_name: self.source_name.clone(),
                        line,
                        error,
                    }));
                }
            }
        }
        None
    }
}

impl CsvRecords {
    /// The record's reference, also for a record with the wrong field count or a bad field, as
    /// long as it reaches the column and was kept.
    fn reference(&self, raw: &RawRecord) -> String {
        match self.reference {
            Some(i) if !raw.too_long => self
                .parser
                .fields()
                .nth(i)
                .map(|v| crate::row::reference(&String::from_utf8_lossy(v)))
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn fields(&self, raw: &RawRecord) -> Result<Fields, Invalid> {
        if raw.too_long {
            return Err(record_too_long());
        }
        let (got, want) = (raw.fields, self.targets.len());
        if got != want {
            let plural = if got == 1 { "" } else { "s" };
            return Err(Invalid::new(
                "",
                format!("record has {got} field{plural}, the header has {want}"),
            ));
        }
        let mut fields = Fields::with_capacity(want + self.defaults.len());
        for (raw, target) in self.parser.fields().zip(&self.targets) {
            let Some(name) = target else { continue };
            let value = std::str::from_utf8(raw)
                .map_err(|_| Invalid::new(name.as_str(), "is not valid UTF-8"))?
                .trim();
            if value.len() > MAX_FIELD {
                return Err(field_too_long(name));
            }
            // Names are unique (checked on the header), so a push is an insert.
            if !value.is_empty() {
                fields.push_new(name.clone(), value.to_owned());
            }
        }
        fields.apply_defaults(&self.defaults);
        Ok(fields)
    }
}

/// What [`Parser::next_record`] read; the fields themselves stay in the parser.
struct RawRecord {
    /// The 1-based line of the record's first byte.
    line: u64,
    /// Fields in the record (all of them, also those not kept).
    fields: usize,
    /// Longer than [`MAX_RECORD`] bytes: its fields were not kept.
    too_long: bool,
}

/// `csv_core` fed from a reader, keeping at most [`MAX_RECORD`] bytes of one record's fields.
struct Parser {
    input: Box<dyn BufRead + Send>,
    core: csv_core::Reader,
    /// The current record's field bytes, back to back (reused for every record).
    out: Vec<u8>,
    /// `ends[i]`: where field `i` ends in `out`; `kept_ends` of them are valid.
    ends: Vec<usize>,
    kept_ends: usize,
    /// Scratch space for what is not kept, allocated when first needed.
    spill: Vec<u8>,
    spill_ends: Vec<usize>,
    /// Newlines consumed so far.
    lines: u64,
}

impl Parser {
    fn new(input: Box<dyn BufRead + Send>) -> Self {
        let core = csv_core::ReaderBuilder::new()
            .terminator(csv_core::Terminator::Any(b'\n'))
            .build();
        Parser {
            input,
            core,
            out: vec![0; DEFAULT_FIELD_BUFFER],
            ends: vec![0; DEFAULT_ENDS],
            kept_ends: 0,
            spill: Vec::new(),
            spill_ends: Vec::new(),
            lines: 0,
        }
    }

    /// The kept fields of the last record read.
    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let ends = &self.ends[..self.kept_ends];
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts.zip(ends).map(|(start, &end)| &self.out[start..end])
    }

    /// A whitespace-only line reads as one blank field (a CRLF blank line as `"\r"`): skip it.
    fn is_blank(&self, raw: &RawRecord) -> bool {
        match raw.fields {
            0 => true,
            1 if !raw.too_long => self
                .fields()
                .next()
                .is_some_and(|f| f.iter().all(u8::is_ascii_whitespace)),
            _ => false,
        }
    }

    /// Read the next record, keeping the ends of at most `max_ends` fields (the rest are only
    /// counted). `Ok(None)` at the end of the input; an error comes with the line it is near.
    fn next_record(&mut self, max_ends: usize) -> Result<Option<RawRecord>, (u64, io::Error)> {
        self.skip_newlines().map_err(|e| (self.lines + 1, e))?;
        let line = self.lines + 1;
        let mut scan = Scan::default();
        loop {
            let input = match self.input.fill_buf() {
                Ok(input) => input,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err((line, e)),
            };
            if scan.out_full && self.spill.is_empty() {
                self.spill = vec![0; DISCARD_BUFFER];
            }
            if scan.ends_full && self.spill_ends.is_empty() {
                self.spill_ends = vec![0; DISCARD_ENDS];
            }
            let out = if scan.out_full {
                &mut self.spill[..]
            } else {
                &mut self.out[scan.out_len..]
            };
            let ends = if scan.ends_full {
                &mut self.spill_ends[..]
            } else {
                &mut self.ends[scan.fields..]
            };
            let (result, nin, nout, nend) = self.core.read_record(input, out, ends);
            let consumed = &input[..nin];
            self.lines += memchr::memchr_iter(b'\n', consumed).count() as u64;
            scan.note_input(consumed);
            if !scan.out_full {
                scan.out_len += nout;
            }
            scan.fields += nend;
            if !scan.ends_full {
                self.kept_ends = scan.fields;
            }
            self.input.consume(nin);
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= KEPT_FIELD_BYTES {
                        scan.out_full = true;
                    } else {
                        let len = (self.out.len() * 2).min(KEPT_FIELD_BYTES);
                        self.out.resize(len, 0);
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    if len >= max_ends || len > MAX_RECORD {
                        scan.ends_full = true;
                    } else {
                        self.ends.resize((len * 2).min(max_ends), 0);
                    }
                }
                ReadRecordResult::Record => {
                    return Ok(Some(RawRecord {
                        line,
                        fields: scan.fields,
                        too_long: scan.out_full || scan.content_len() > MAX_RECORD as u64,
                    }));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    /// Consume the newlines before a record, counting them.
    fn skip_newlines(&mut self) -> io::Result<()> {
        loop {
            let input = match self.input.fill_buf() {
                Ok(input) => input,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let n = input.iter().take_while(|&&b| b == b'\n').count();
            let all = n == input.len();
            self.lines += n as u64;
            self.input.consume(n);
            if !all || n == 0 {
                return Ok(());
            }
        }
    }
}

/// One record's progress through the parser.
#[derive(Default)]
struct Scan {
    /// Input bytes consumed for the record, its terminator included.
    in_len: u64,
    /// The last two bytes consumed (to leave a `\r\n` or `\n` out of the length).
    tail: [u8; 2],
    out_len: usize,
    fields: usize,
    /// The field buffer is at [`KEPT_FIELD_BYTES`]: the record's bytes are dropped from here on.
    out_full: bool,
    /// More fields than worth keeping: the rest are only counted.
    ends_full: bool,
}

impl Scan {
    fn note_input(&mut self, consumed: &[u8]) {
        self.in_len += consumed.len() as u64;
        match consumed {
            [] => {}
            [b] => self.tail = [self.tail[1], *b],
            [.., a, b] => self.tail = [*a, *b],
        }
    }

    /// The record's length without its line terminator.
    fn content_len(&self) -> u64 {
        let terminator = match self.tail {
            [b'\r', b'\n'] if self.in_len >= 2 => 2,
            [_, b'\n'] => 1,
            _ => 0,
        };
        self.in_len - terminator
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
    fn the_reference_column_is_read_for_every_record_that_reaches_it() {
        let mut spec = spec(&[], &[]);
        spec.reference = Some("ticket".into());
        let long = "t".repeat(300);
        let mut input =
            format!("id,ticket\n1, T-1 \n2,T-2,extra\n3,{long}\n4\n5,\"T-").into_bytes();
        // Line 5's ticket is not UTF-8: the row is invalid, its reference still shown.
        input.extend_from_slice(b"\xff\"\n");
        let got = read_with(&input, &spec);
        let refs: Vec<&str> = got.iter().map(|r| r.reference.as_str()).collect();
        assert_eq!(refs[0], "T-1");
        assert_eq!(refs[1], "T-2", "a wrong field count still reads the column");
        assert_eq!(refs[2].chars().count(), crate::row::MAX_REFERENCE);
        assert!(refs[2].ends_with('…'));
        assert_eq!(refs[3], "", "line 4 does not reach the column");
        assert_eq!(refs[4], "T-\u{fffd}");
        assert!(got[1].fields.is_err() && got[4].fields.is_err());
        // Still a field of its own name, as any other column.
        assert_eq!(got[0].fields.as_ref().unwrap().get("ticket"), Some("T-1"));
        let message = header_error(b"id\n1\n", &spec);
        assert_eq!(
            message,
            "column `ticket` (input.columns.reference) is not in the header"
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

    /// `len` bytes of `fill`, handed out a buffer at a time and never stored whole.
    struct Endless {
        head: io::Cursor<Vec<u8>>,
        fill: u8,
        left: u64,
        tail: io::Cursor<Vec<u8>>,
    }

    impl Endless {
        fn new(head: &[u8], fill: u8, len: u64, tail: &[u8]) -> Self {
            Endless {
                head: io::Cursor::new(head.to_vec()),
                fill,
                left: len,
                tail: io::Cursor::new(tail.to_vec()),
            }
        }
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.head.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.left > 0 {
                let n = buf.len().min(self.left as usize);
                buf[..n].fill(self.fill);
                self.left -= n as u64;
                return Ok(n);
            }
            self.tail.read(buf)
        }
    }

    fn too_long(line: u64) -> Record {
        bad(line, "", "record longer than 65536 bytes")
    }

    #[test]
    fn huge_quoted_field_is_skipped_with_its_newlines_counted() {
        let mut input = b"id,note\n1,a\n2,\"".to_vec();
        for _ in 0..3000 {
            input.extend_from_slice(&[b'x'; 99]);
            input.push(b'\n');
        }
        input.extend_from_slice(b"\"\n3,b\n");
        assert_eq!(
            read(&input),
            vec![
                ok(2, &[("id", "1"), ("note", "a")]),
                too_long(3),
                ok(3004, &[("id", "3"), ("note", "b")]),
            ]
        );
    }

    #[test]
    fn record_length_limit_is_exact_and_ignores_the_line_terminator() {
        for newline in ["\n", "\r\n"] {
            let at_limit = "y".repeat(MAX_RECORD - 2);
            let over = "y".repeat(MAX_RECORD - 1);
            let input = format!("a\n1,{at_limit}{newline}1,{over}{newline}z{newline}");
            let got = read_with(input.as_bytes(), &spec(&[], &[]));
            assert_eq!(got.len(), 3, "{newline:?}");
            // At the limit: read, and the field limit applies instead.
            assert_eq!(got[0], bad(2, "", "record has 2 fields, the header has 1"));
            assert_eq!(got[1], too_long(3));
            assert_eq!(got[2], ok(4, &[("a", "z")]));
        }
    }

    #[test]
    fn a_100_mb_field_is_parsed_through_without_keeping_it() {
        let reader = Endless::new(b"id,note\n1,\"", b'x', 100 << 20, b"\"\n2,ok\n");
        let reader = io::BufReader::with_capacity(64 * 1024, reader);
        let mut parser = Parser::new(Box::new(reader));
        let header = parser.next_record(usize::MAX).unwrap().unwrap();
        assert_eq!((header.line, header.fields, header.too_long), (1, 2, false));
        let huge = parser.next_record(3).unwrap().unwrap();
        assert_eq!((huge.line, huge.fields, huge.too_long), (2, 2, true));
        assert!(
            parser.out.len() <= MAX_RECORD + 2,
            "kept {} bytes",
            parser.out.len()
        );
        let next = parser.next_record(3).unwrap().unwrap();
        assert_eq!((next.line, next.fields, next.too_long), (3, 2, false));
        assert_eq!(parser.fields().collect::<Vec<_>>(), vec![&b"2"[..], b"ok"]);
        assert!(parser.next_record(3).unwrap().is_none());
    }

    #[test]
    fn many_fields_are_counted_not_kept() {
        let input = format!("a,b\n{}\n1,2\n", ",".repeat(9999));
        let got = read(input.as_bytes());
        assert_eq!(
            got,
            vec![
                bad(2, "", "record has 10000 fields, the header has 2"),
                ok(3, &[("a", "1"), ("b", "2")]),
            ]
        );
    }

    #[test]
    fn field_length_limit_names_the_canonical_field() {
        let long = "z".repeat(MAX_FIELD + 1);
        let max = "z".repeat(MAX_FIELD);
        let input = format!("Uid,note\n{long},a\n  {max}  ,b\n");
        let got = read_with(input.as_bytes(), &spec(&[("user_id", "Uid")], &[]));
        assert_eq!(
            got,
            vec![
                bad(2, "user_id", "longer than 1024 bytes"),
                ok(3, &[("user_id", max.as_str()), ("note", "b")]),
            ]
        );
        assert_eq!(
            got[0].fields.as_ref().unwrap_err().to_string(),
            "field `user_id`: longer than 1024 bytes"
        );
    }

    #[test]
    fn huge_header_is_fatal() {
        let input = format!("{}\n1\n", "h".repeat(MAX_RECORD + 1));
        let message = header_error(input.as_bytes(), &spec(&[], &[]));
        assert_eq!(message, "the header is longer than 65536 bytes");
    }
}
