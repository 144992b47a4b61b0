//! The journal's line format, and a reader that tells a torn tail from damage.
//!
//! Every line is `<json>\t<xxh3_64 of the json bytes, 16 lower-case hex digits>\n`. JSON written
//! by serde_json never holds a raw tab or newline, so the last tab of a line splits it.
//!
//! A crash can only hurt the end of the file: `kill -9` between two `write` calls of one buffer
//! leaves a line without its `\n`; a power loss can leave the file longer than what reached the
//! disk, padded with zeros or stale blocks. Such lines are skipped as long as no good line follows.
//! A bad line *followed by* a good one cannot come from a crash: that is damage, reported by line.

use std::io::{self, BufRead};

use xxhash_rust::xxh3::xxh3_64;

/// Longest line accepted, checksum included. Longer lines are never written, and read as damage
/// (this also bounds the memory a run of zeros without a newline can take).
pub(crate) const MAX_LINE_LEN: usize = 4 << 20;

/// Hex digits of the checksum.
const SUM_LEN: usize = 16;

/// Append the checksum and the line end to `buf`, which holds exactly one record's JSON.
pub(crate) fn seal(buf: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let sum = xxh3_64(buf);
    buf.push(b'\t');
    for shift in (0..SUM_LEN as u32).rev() {
        buf.push(DIGITS[((sum >> (shift * 4)) & 0xf) as usize]);
    }
    buf.push(b'\n');
}

/// The length of the JSON at the start of `line` (a whole line with its `\n`), or why the line is
/// not a good record.
pub(crate) fn check(line: &[u8]) -> Result<usize, &'static str> {
    let body = line.strip_suffix(b"\n").ok_or("incomplete line")?;
    let tab = body
        .len()
        .checked_sub(SUM_LEN + 1)
        .ok_or("line too short for a record")?;
    if body[tab] != b'\t' {
        return Err("no checksum");
    }
    let sum = parse_hex(&body[tab + 1..]).ok_or("malformed checksum")?;
    if xxh3_64(&body[..tab]) != sum {
        return Err("checksum mismatch");
    }
    Ok(tab)
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.len() != SUM_LEN {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &c| {
        let d = char::from(c).to_digit(16)?;
        Some(acc << 4 | u64::from(d))
    })
}

/// What [`Scanner::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan<'a> {
    /// A good record: its journal line (1-based) and JSON.
    Record { line: u64, json: &'a [u8] },
    /// End of input; any bad lines seen since the last good record are a torn tail.
    End,
    /// A good record followed the bad line `line`: the file is damaged.
    Damaged { line: u64, reason: &'static str },
}

/// Reads a journal line by line, skipping a torn tail.
pub(crate) struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// Lines read so far.
    line: u64,
    /// Bytes read so far.
    offset: u64,
    /// Where the last good record ends.
    good_end: u64,
    /// The first bad line since the last good record, and why it is bad.
    bad: Option<(u64, &'static str)>,
    /// Whether any byte read so far was not zero.
    nonzero: bool,
}

impl<R: BufRead> Scanner<R> {
    pub(crate) fn new(reader: R) -> Scanner<R> {
        Scanner {
            reader,
            buf: Vec::with_capacity(1024),
            line: 0,
            offset: 0,
            good_end: 0,
            bad: None,
            nonzero: false,
        }
    }

    pub(crate) fn next(&mut self) -> io::Result<Scan<'_>> {
        loop {
            let Some(overlong) = self.read_line()? else {
                return Ok(Scan::End);
            };
            self.line += 1;
            let checked = if overlong {
                Err("line too long")
            } else {
                check(&self.buf)
            };
            match checked {
                Ok(json_len) => {
                    if let Some((line, reason)) = self.bad {
                        return Ok(Scan::Damaged { line, reason });
                    }
                    self.good_end = self.offset;
                    return Ok(Scan::Record {
                        line: self.line,
                        json: &self.buf[..json_len],
                    });
                }
                Err(reason) => {
                    self.bad.get_or_insert((self.line, reason));
                }
            }
        }
    }

    /// Where the last good record ends: the length of the journal worth keeping.
    pub(crate) fn good_end(&self) -> u64 {
        self.good_end
    }

    /// Bytes read so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether anything but zero bytes was read.
    pub(crate) fn saw_nonzero(&self) -> bool {
        self.nonzero
    }

    /// Read one line (with its `\n`, if any) into `buf`; `None` at the end, else whether the line
    /// was longer than [`MAX_LINE_LEN`] (then `buf` holds only its start).
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let mut any = false;
        let mut overlong = false;
        loop {
            let avail = match self.reader.fill_buf() {
                Ok(avail) => avail,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let chunk = &avail[..take];
            if !self.nonzero {
                self.nonzero = chunk.iter().any(|&b| b != 0);
            }
            if self.buf.len() + take <= MAX_LINE_LEN {
                self.buf.extend_from_slice(chunk);
            } else {
                overlong = true;
            }
            self.reader.consume(take);
            self.offset += take as u64;
            if done {
                break;
            }
        }
        Ok(any.then_some(overlong))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(json: &str) -> Vec<u8> {
        let mut buf = json.as_bytes().to_vec();
        seal(&mut buf);
        buf
    }

    /// Good records, the damage that stopped the scan (if any), and where the good part ends.
    struct Scanned {
        good: Vec<(u64, String)>,
        damage: Option<(u64, &'static str)>,
        good_end: u64,
    }

    fn scan_all(bytes: &[u8]) -> Scanned {
        let mut scanner = Scanner::new(bytes);
        let mut good = Vec::new();
        let damage = loop {
            match scanner.next().unwrap() {
                Scan::Record { line, json } => {
                    good.push((line, String::from_utf8(json.to_vec()).unwrap()))
                }
                Scan::End => break None,
                Scan::Damaged { line, reason } => break Some((line, reason)),
            }
        };
        Scanned {
            good,
            damage,
            good_end: scanner.good_end(),
        }
    }

    #[test]
    fn sealed_lines_carry_the_xxh3_of_their_json() {
        let line = sealed(r#"{"t":"settled","line":3}"#);
        let expected = format!(
            "{}\t{:016x}\n",
            r#"{"t":"settled","line":3}"#,
            xxh3_64(br#"{"t":"settled","line":3}"#)
        );
        assert_eq!(String::from_utf8(line.clone()).unwrap(), expected);
        assert_eq!(check(&line), Ok(24));
        assert_eq!(check(&line[..line.len() - 1]), Err("incomplete line"));
        let mut flipped = line.clone();
        flipped[5] ^= 1;
        assert_eq!(check(&flipped), Err("checksum mismatch"));
        assert_eq!(check(b"{}\n"), Err("line too short for a record"));
        assert_eq!(check(b"{}xxxxxxxxxxxxxxxxxxxx\n"), Err("no checksum"));
        assert_eq!(check(b"{}\tzzzzzzzzzzzzzzzz\n"), Err("malformed checksum"));
    }

    #[test]
    fn torn_tail_is_skipped_but_damage_before_a_good_line_is_reported() {
        let a = sealed(r#"{"a":1}"#);
        let b = sealed(r#"{"b":2}"#);

        let mut tail = [a.clone(), b[..b.len() - 3].to_vec()].concat();
        tail.extend_from_slice(&[0; 100]);
        let scanned = scan_all(&tail);
        assert_eq!(scanned.good, vec![(1, r#"{"a":1}"#.to_string())]);
        assert_eq!(scanned.damage, None);
        assert_eq!(scanned.good_end, a.len() as u64);

        let mut middle = b.clone();
        middle[1] = b'X';
        let damaged = [a.clone(), middle, a.clone()].concat();
        let scanned = scan_all(&damaged);
        assert_eq!(scanned.good.len(), 1);
        assert_eq!(scanned.damage, Some((2, "checksum mismatch")));
        assert_eq!(scanned.good_end, a.len() as u64);
    }

    #[test]
    fn overlong_lines_are_bad_and_do_not_grow_the_buffer() {
        let mut bytes = sealed(r#"{"a":1}"#);
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 10));
        bytes.push(b'\n');
        let mut scanner = Scanner::new(&bytes[..]);
        assert!(matches!(
            scanner.next().unwrap(),
            Scan::Record { line: 1, .. }
        ));
        assert_eq!(scanner.next().unwrap(), Scan::End);
        assert_eq!(scanner.bad, Some((2, "line too long")));
        assert!(scanner.buf.len() <= MAX_LINE_LEN);
        assert_eq!(scanner.offset(), bytes.len() as u64);
    }
}
