//! JSONL records: one JSON object per line.
//!
//! Lines are read into one reused buffer and parsed in place: keys and string values are borrowed
//! from the line where JSON allows it, so a row costs only the `Fields` it yields. A line that is
//! not a flat object of strings, numbers, booleans and nulls is an invalid record, not an error.
//! A line longer than [`MAX_RECORD`] bytes is skipped to its newline without being kept.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    Fields, InputError, MAX_FIELD, MAX_RECORD, Record, Records, field_too_long, record_too_long,
    rename_map,
};
use crate::row::Invalid;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Line buffer capacity at first; it grows to at most [`MAX_RECORD`] and a CRLF.
const DEFAULT_LINE_BUFFER: usize = 8 * 1024;

/// Integers from 2^53 up lose digits as `f64`; serde_json keeps every `u64`/`i64` exact, so only
/// numbers beyond those (or written with a fraction or exponent) can get here.
const MAX_EXACT_F64_INTEGER: f64 = 9_007_199_254_740_992.0;

pub(super) fn records(
    reader: Box<dyn BufRead + Send>,
    source_name: String,
    columns: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
    reference: Option<String>,
) -> Records {
    Box::new(JsonlRecords {
        reader,
        buf: Vec::with_capacity(DEFAULT_LINE_BUFFER),
        line: 0,
        names: Names {
            renames: rename_map(&columns),
            columns,
            reference,
        },
        defaults,
        source_name,
        done: false,
    })
}

struct JsonlRecords {
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    /// Lines read so far (the current line's number once it is read).
    line: u64,
    names: Names,
    defaults: BTreeMap<String, String>,
    source_name: String,
    done: bool,
}

impl Iterator for JsonlRecords {
    type Item = Result<Record, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.read_line() {
                Ok(None) => self.done = true,
                Ok(Some(too_long)) => {
                    self.line += 1;
                    let mut bytes = self.buf.as_slice();
                    if self.line == 1 {
                        bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
                    }
                    let content = bytes.strip_suffix(b"\n").unwrap_or(bytes);
                    let content = content.strip_suffix(b"\r").unwrap_or(content);
                    if too_long || content.len() > MAX_RECORD {
                        return Some(Ok(Record {
                            line: self.line,
                            fields: Err(record_too_long()),
                            reference: String::new(),
                        }));
                    }
                    // Also drops the `\n` and a CRLF's `\r`.
                    let bytes = bytes.trim_ascii();
                    if bytes.is_empty() {
                        continue;
                    }
                    let (fields, reference) = parse(bytes, &self.names);
                    let fields = fields.map(|mut fields| {
                        fields.apply_defaults(&self.defaults);
                        fields
                    });
                    return Some(Ok(Record {
                        line: self.line,
                        fields,
                        reference,
                    }));
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(InputError::Read {
                        source_name: self.source_name.clone(),
                        line: self.line + 1,
                        error,
                    }));
                }
            }
        }
        None
    }
}

impl JsonlRecords {
    /// Read the next line, its `\n` included, into `buf`, keeping at most [`MAX_RECORD`] bytes
    /// and a CRLF: `Some(true)` when it had more (the rest was skipped), `None` at the end.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        const KEEP: usize = MAX_RECORD + 2;
        self.buf.clear();
        let mut any = false;
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(any.then_some(too_long));
            }
            any = true;
            let (chunk, ends_line) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            let room = KEEP - self.buf.len();
            if chunk.len() <= room {
                self.buf.extend_from_slice(chunk);
            } else {
                self.buf.extend_from_slice(&chunk[..room]);
                too_long = true;
            }
            let n = chunk.len();
            self.reader.consume(n);
            if ends_line {
                return Ok(Some(too_long));
            }
        }
    }
}

/// How keys in the file become canonical field names.
struct Names {
    /// key in the file → canonical name.
    renames: BTreeMap<String, String>,
    /// canonical name → key in the file.
    columns: BTreeMap<String, String>,
    /// `input.columns.reference`: the key whose value is the record's reference.
    reference: Option<String>,
}

impl Names {
    /// The canonical name for `key`, or `None` when the key is a canonical name that `columns`
    /// maps to another key (the mapping wins, so this key is ignored).
    fn canonical<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        match self.renames.get(key) {
            Some(canonical) => Some(canonical),
            None if self.columns.contains_key(key) => None,
            None => Some(key),
        }
    }
}

/// A line's fields (or why it is not a record) and its reference: read from any JSON object,
/// also one with a bad field; a line that is not JSON at all has none.
fn parse(bytes: &[u8], names: &Names) -> (Result<Fields, Invalid>, String) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return (Err(Invalid::new("", "is not valid UTF-8")), String::new());
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match ObjectSeed(names)
        .deserialize(&mut de)
        .and_then(|parsed| de.end().map(|()| parsed))
    {
        Ok(parsed) => parsed,
        Err(err) => (
            Err(Invalid::new(
                "",
                format!("bad JSON: {}", json_message(&err)),
            )),
            String::new(),
        ),
    }
}

/// serde_json's message, with "at line 1 column N" shortened to "at column N": the record's line
/// is reported separately and would contradict the "line 1".
fn json_message(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match message.strip_suffix(&position) {
        Some(text) if err.line() == 1 => format!("{text} at column {}", err.column()),
        _ => message,
    }
}

/// Deserialises one line: `Ok(Err(..))` is a readable JSON line that is not a valid record.
struct ObjectSeed<'n>(&'n Names);

/// What one line gives: its fields or why it is not a record, and its reference.
type Parsed = (Result<Fields, Invalid>, String);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn not_object() -> Parsed {
    (Err(Invalid::new("", "not a JSON object")), String::new())
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::new();
        let mut invalid = None;
        let mut reference = String::new();
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            let value = map.next_value::<JsonValue<'de>>()?;
            if self.0.reference.as_deref() == Some(&*key.0) {
                // A repeated key's last value wins, as for fields.
                reference = match &value {
                    JsonValue::Text(text) => crate::row::reference(text),
                    _ => String::new(),
                };
            }
            if invalid.is_some() {
                continue; // read to the end: the rest of the line must still be valid JSON
            }
            let Some(name) = self.0.canonical(&key.0) else {
                continue;
            };
            match value {
                JsonValue::Text(text) => {
                    let text = trimmed(text);
                    if text.len() > MAX_FIELD {
                        invalid = Some(field_too_long(name));
                    } else if text.is_empty() {
                        remove(&mut fields, name);
                    } else {
                        fields.insert(name.to_owned(), text);
                    }
                }
                // A repeated key's last value wins, even when it is null.
                JsonValue::Null => remove(&mut fields, name),
                JsonValue::Nested => {
                    invalid = Some(Invalid::new(name, "must be a string, number or boolean"));
                }
                JsonValue::Inexact => {
                    invalid = Some(Invalid::new(
                        name,
                        "is a number too large to read exactly; write it as a string",
                    ));
                }
            }
        }
        let fields = match invalid {
            Some(invalid) => Err(invalid),
            None => Ok(fields),
        };
        Ok((fields, reference))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(not_object())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(not_object())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(not_object())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(not_object())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(not_object())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(not_object())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(not_object())
    }
}

fn remove(fields: &mut Fields, name: &str) {
    fields.remove(name);
}

/// Trim without copying an owned string that needs no trimming.
fn trimmed(text: Cow<'_, str>) -> String {
    match text {
        Cow::Owned(s) if s.trim().len() == s.len() => s,
        other => other.trim().to_owned(),
    }
}

/// A JSON string, borrowed from the line unless it had escapes.
struct JsonStr<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// A top-level value of a record, reduced to what a field can hold.
enum JsonValue<'de> {
    /// A string, a number's decimal text or `true`/`false`.
    Text(Cow<'de, str>),
    Null,
    /// An array or object.
    Nested,
    /// A number whose digits an `f64` cannot hold exactly.
    Inexact,
}

impl<'de> de::Deserialize<'de> for JsonValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = JsonValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Borrowed(if v {
            "true"
        } else {
            "false"
        })))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(v.to_string())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.abs() >= MAX_EXACT_F64_INTEGER {
            Ok(JsonValue::Inexact)
        } else {
            // Shortest text that reads back as the same number: `1.50` → "1.5", `1e3` → "1000".
            Ok(JsonValue::Text(Cow::Owned(v.to_string())))
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Nested)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Nested)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::super::test_support::{self, bad, ok, read_with};
    use super::super::{Format, InputSpec, open_reader};
    use super::*;

    fn spec(columns: &[(&str, &str)], defaults: &[(&str, &str)]) -> InputSpec {
        test_support::spec(Format::Jsonl, columns, defaults)
    }

    fn read(input: &[u8]) -> Vec<Record> {
        read_with(input, &spec(&[], &[]))
    }

    #[test]
    fn objects_one_per_line() {
        let got = read(b"{\"id\":\"a\",\"provider\":\"facebook\"}\n{\"id\":\"b\"}\n");
        assert_eq!(
            got,
            vec![
                ok(1, &[("id", "a"), ("provider", "facebook")]),
                ok(2, &[("id", "b")]),
            ]
        );
    }

    #[test]
    fn the_reference_key_is_read_from_every_json_object() {
        let mut spec = spec(&[], &[]);
        spec.reference = Some("ticket".into());
        let input = b"{\"id\":\"a\",\"ticket\":\" T-1 \"}\n\
            {\"ticket\":7,\"id\":[1]}\n\
            {\"ticket\":\"T-3\",\"id\": }\n\
            [\"T-4\"]\n\
            {\"id\":\"e\"}\n";
        let got = read_with(input, &spec);
        let refs: Vec<&str> = got.iter().map(|r| r.reference.as_str()).collect();
        assert_eq!(refs, ["T-1", "7", "", "", ""]);
        assert!(
            got[1].fields.is_err(),
            "a bad field: invalid, reference kept"
        );
        assert!(got[2].fields.is_err(), "not JSON: no reference");
    }

    #[test]
    fn bad_json_is_isolated_and_later_lines_keep_their_numbers() {
        let input = b"{\"id\":\"a\"}\n{\"id\": }\n{\"id\":\"c\"\n{\"id\":\"d\"}\n";
        let got = read(input);
        assert_eq!(
            got,
            vec![
                ok(1, &[("id", "a")]),
                bad(2, "", "bad JSON: expected value at column 8"),
                bad(3, "", "bad JSON: EOF while parsing an object at column 9"),
                ok(4, &[("id", "d")]),
            ]
        );
    }

    #[test]
    fn trailing_garbage_is_bad_json() {
        let got = read(b"{\"id\":\"a\"} x\n");
        assert_eq!(
            got,
            vec![bad(1, "", "bad JSON: trailing characters at column 12")]
        );
    }

    #[test]
    fn json_that_is_not_an_object() {
        let got = read(b"[1,2]\n\"id\"\n42\nnull\ntrue\n");
        let lines: Vec<u64> = got.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5]);
        for record in got {
            assert_eq!(record.fields, Err(Invalid::new("", "not a JSON object")));
        }
    }

    #[test]
    fn invalid_utf8_is_isolated() {
        let got = read(b"{\"id\":\"a\xFF\"}\n{\"id\":\"b\"}\n");
        assert_eq!(
            got,
            vec![bad(1, "", "is not valid UTF-8"), ok(2, &[("id", "b")])]
        );
    }

    #[test]
    fn numbers_and_booleans_become_text() {
        let input = br#"{"id":12345,"neg":-7,"ratio":1.50,"exp":1e3,"on":true,"off":false}"#;
        let got = read(input);
        assert_eq!(
            got,
            vec![ok(
                1,
                &[
                    ("id", "12345"),
                    ("neg", "-7"),
                    ("ratio", "1.5"),
                    ("exp", "1000"),
                    ("on", "true"),
                    ("off", "false"),
                ]
            )]
        );
    }

    #[test]
    fn big_integers_come_through_exactly() {
        let input =
            b"{\"id\":12345678901234567890}\n{\"id\":18446744073709551615}\n{\"id\":-9223372036854775808}\n";
        let got = read(input);
        assert_eq!(
            got,
            vec![
                ok(1, &[("id", "12345678901234567890")]),
                ok(2, &[("id", "18446744073709551615")]),
                ok(3, &[("id", "-9223372036854775808")]),
            ]
        );
    }

    #[test]
    fn integers_beyond_64_bits_are_invalid_not_rounded() {
        let got =
            read(b"{\"id\":123456789012345678901234}\n{\"id\":\"123456789012345678901234\"}\n");
        assert_eq!(
            got,
            vec![
                bad(
                    1,
                    "id",
                    "is a number too large to read exactly; write it as a string"
                ),
                ok(2, &[("id", "123456789012345678901234")]),
            ]
        );
    }

    #[test]
    fn null_and_empty_are_absent_and_defaults_fill_them() {
        let input = b"{\"id\":\"a\",\"provider\":null,\"email\":\"  \"}\n";
        let got = read_with(input, &spec(&[], &[("provider", "facebook")]));
        assert_eq!(got, vec![ok(1, &[("id", "a"), ("provider", "facebook")])]);
        let fields = got[0].fields.as_ref().unwrap();
        assert_eq!(fields.get("email"), None);
    }

    #[test]
    fn repeated_key_last_value_wins_even_null() {
        let got = read(b"{\"a\":\"x\",\"a\":\"y\",\"b\":\"1\",\"b\":null}\n");
        assert_eq!(got, vec![ok(1, &[("a", "y")])]);
    }

    #[test]
    fn nested_value_is_invalid_and_named() {
        let input = b"{\"uid\":\"a\",\"tags\":[\"x\"]}\n{\"uid\":{\"v\":1}}\n{\"uid\":\"c\"}\n";
        let got = read_with(input, &spec(&[("user_id", "uid")], &[]));
        assert_eq!(
            got,
            vec![
                bad(1, "tags", "must be a string, number or boolean"),
                bad(2, "user_id", "must be a string, number or boolean"),
                ok(3, &[("user_id", "c")]),
            ]
        );
    }

    #[test]
    fn blank_lines_and_crlf_and_bom() {
        let input =
            b"\xEF\xBB\xBF{\"id\":\"a\"}\r\n\r\n  \t \n{\"id\":\"b\"}\r\n\n\n{\"id\":\"c\"}";
        let got = read(input);
        assert_eq!(
            got,
            vec![
                ok(1, &[("id", "a")]),
                ok(4, &[("id", "b")]),
                ok(7, &[("id", "c")]),
            ]
        );
    }

    #[test]
    fn leading_blank_lines_count() {
        let got = read(b"\n\n{\"id\":\"a\"}\n");
        assert_eq!(got, vec![ok(3, &[("id", "a")])]);
    }

    #[test]
    fn strings_are_trimmed_and_escapes_decoded() {
        let got = read(b"{\"id\":\"  a\\u0062 \",\"n\\u0061me\":\"\\tx\"}\n");
        assert_eq!(got, vec![ok(1, &[("id", "ab"), ("name", "x")])]);
    }

    #[test]
    fn keys_are_renamed_and_mapping_wins_over_canonical_key() {
        let input =
            b"{\"PrimaryUserId\":\"u1\",\"user_id\":\"ignored\",\"Network\":\"fb\",\"x\":\"1\"}\n";
        let spec = spec(
            &[("user_id", "PrimaryUserId"), ("provider", "Network")],
            &[],
        );
        let got = read_with(input, &spec);
        assert_eq!(
            got,
            vec![ok(1, &[("user_id", "u1"), ("provider", "fb"), ("x", "1")])]
        );
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let got = read_with(
            b"{\"id\":\"a\"}\n{\"id\":\"b\",\"vendor\":\"gigya\"}\n",
            &spec(&[], &[("vendor", "auth0")]),
        );
        assert_eq!(
            got,
            vec![
                ok(1, &[("id", "a"), ("vendor", "auth0")]),
                ok(2, &[("id", "b"), ("vendor", "gigya")]),
            ]
        );
    }

    #[test]
    fn empty_input_yields_nothing() {
        assert_eq!(read(b""), vec![]);
        assert_eq!(read(b"\n \r\n"), vec![]);
    }

    #[test]
    fn read_error_stops_with_the_line() {
        struct Failing(io::Cursor<Vec<u8>>);
        impl io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        let reader = io::BufReader::new(Failing(io::Cursor::new(b"{\"id\":1}\n{\"id\"".to_vec())));
        let mut records = open_reader(&spec(&[], &[]), Box::new(reader)).unwrap();
        assert_eq!(records.next().unwrap().unwrap(), ok(1, &[("id", "1")]));
        match records.next() {
            Some(Err(InputError::Read { line, error, .. })) => {
                assert_eq!(line, 2);
                assert_eq!(error.to_string(), "disk on fire");
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(records.next().is_none());
    }

    /// `head`, then `len` bytes of `fill`, then `tail`, never stored whole.
    struct Endless {
        head: io::Cursor<Vec<u8>>,
        fill: u8,
        left: u64,
        tail: io::Cursor<Vec<u8>>,
    }

    impl io::Read for Endless {
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
    fn record_length_limit_is_exact_and_ignores_the_line_terminator() {
        for newline in ["\n", "\r\n"] {
            let object = "{\"id\":\"a\"}";
            let at_limit = format!("{object}{}", " ".repeat(MAX_RECORD - object.len()));
            let over = format!("{at_limit} ");
            let input = format!("{at_limit}{newline}{over}{newline}{{\"id\":\"c\"}}{newline}");
            assert_eq!(
                read(input.as_bytes()),
                vec![ok(1, &[("id", "a")]), too_long(2), ok(3, &[("id", "c")])],
                "{newline:?}"
            );
        }
    }

    #[test]
    fn a_100_mb_line_is_skipped_without_keeping_it() {
        let reader = Endless {
            head: io::Cursor::new(b"{\"id\":\"a\"}\n{\"id\":\"".to_vec()),
            fill: b'x',
            left: 100 << 20,
            tail: io::Cursor::new(b"\"}\n\n{\"id\":\"b\"}\n".to_vec()),
        };
        let reader = io::BufReader::with_capacity(64 * 1024, reader);
        let mut records = JsonlRecords {
            reader: Box::new(reader),
            buf: Vec::new(),
            line: 0,
            names: Names {
                renames: BTreeMap::new(),
                columns: BTreeMap::new(),
                reference: None,
            },
            defaults: BTreeMap::new(),
            source_name: String::new(),
            done: false,
        };
        assert_eq!(records.next().unwrap().unwrap(), ok(1, &[("id", "a")]));
        assert_eq!(records.next().unwrap().unwrap(), too_long(2));
        assert!(
            records.buf.capacity() <= 2 * MAX_RECORD,
            "{}",
            records.buf.capacity()
        );
        assert_eq!(records.next().unwrap().unwrap(), ok(4, &[("id", "b")]));
        assert!(records.next().is_none());
    }

    #[test]
    fn field_length_limit_names_the_canonical_field() {
        let long = "z".repeat(MAX_FIELD + 1);
        let max = "z".repeat(MAX_FIELD);
        let input = format!("{{\"uid\":\"{long}\",\"n\":1}}\n{{\"uid\":\"  {max} \"}}\n");
        let got = read_with(input.as_bytes(), &spec(&[("user_id", "uid")], &[]));
        assert_eq!(
            got,
            vec![
                bad(1, "user_id", "longer than 1024 bytes"),
                ok(2, &[("user_id", max.as_str())]),
            ]
        );
    }
}
