//! The journal's record schema: the header, the record kinds, what loading reads of each, and how
//! one record changes the loaded state. The writer's encoding of the same records lives in
//! `writer.rs`; both follow the table in the module doc.

use serde::{Deserialize, Serialize};

use super::journal::MAX_LINE_LEN;
use super::{LastStop, LinkDone, Loaded, MAX_STEPS};
use crate::report::{self, Outcome, ReportRow};

/// Journal format version written in the header.
pub(super) const VERSION: u32 = 1;

// Whatever a row holds, its outcome record fits a journal line (SPEC section 6: no row can block
// a job): a bounded row's text fields hold at most `MAX_ROW_CHARS` characters, each at most 6
// bytes of JSON, plus the record's other fields (numbers, names: well under 1 KiB).
const _: () = assert!(6 * report::MAX_ROW_CHARS + 1024 < MAX_LINE_LEN);

#[derive(Serialize, Deserialize)]
pub(super) struct Header {
    pub(super) v: u32,
    pub(super) job: String,
    pub(super) input_hash: String,
    pub(super) input_len: u64,
    pub(super) created: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    Intent,
    Step,
    Settled,
    Lost,
    Outcome,
    Report,
    Forget,
    Stop,
    Link,
}

/// Any record, reading only what the state needs (the row's other fields are skipped).
#[derive(Deserialize)]
pub(super) struct RawRecord {
    pub(super) t: Kind,
    pub(super) line: Option<u64>,
    pub(super) step: Option<u8>,
    pub(super) row: Option<RowHead>,
    pub(super) report_len: Option<u64>,
    pub(super) len: Option<u64>,
    pub(super) outcome: Option<Outcome>,
    pub(super) why: Option<String>,
    pub(super) at: Option<String>,
    /// `intent` / `step` of a wildcard row's link.
    pub(super) link: Option<LinkRef>,
    /// `link`: the finished link's label and message.
    pub(super) label: Option<String>,
    pub(super) message: Option<String>,
}

/// The link an `intent` or `step` record of a wildcard row names.
#[derive(Serialize, Deserialize)]
pub(super) struct LinkRef {
    pub(super) key: String,
    pub(super) params: Vec<(String, String)>,
}

#[derive(Deserialize)]
pub(super) struct RowHead {
    pub(super) line: u64,
    pub(super) outcome: Outcome,
}

/// The message of a `failed` outcome record (kept for `--retry-failed`).
#[derive(Deserialize)]
struct FailedOutcome {
    row: FailedRow,
}

#[derive(Deserialize)]
struct FailedRow {
    message: String,
}

#[derive(Deserialize)]
pub(super) struct FullOutcome {
    pub(super) row: ReportRow,
}

/// The fields of an outcome record the state needs, read without a JSON parser when the record
/// has exactly the shape this module writes (`{"t":"outcome","report_len":N,"row":{"line":N,
/// "vendor":"..","key":"..","outcome":".."...`). Outcome records are half the journal and carry a
/// whole report row; parsing them fully was most of the time a resume spends loading. Anything
/// else returns `None` and goes through serde.
pub(super) fn fast_outcome(json: &[u8]) -> Option<(u64, Outcome, u64)> {
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

/// Keep a `failed` outcome's message for `--retry-failed` (a record whose message cannot be
/// read leaves none: the retried row then says nothing of it).
fn keep_failed_message(loaded: &mut Loaded, line: u64, json: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<FailedOutcome>(json) {
        loaded.apply_failed_message(line, &record.row.message);
    }
}

/// Apply one record to the state; an error says why the (well-formed) line is not a record.
pub(super) fn apply(loaded: &mut Loaded, json: &[u8], max_line: u64) -> Result<(), String> {
    if let Some((line, outcome, report_len)) = fast_outcome(json)
        && (1..=max_line).contains(&line)
    {
        loaded.apply_outcome(line, outcome, report_len);
        if outcome == Outcome::Failed {
            keep_failed_message(loaded, line, json);
        }
        loaded.note_activity();
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
    if record.t != Kind::Stop {
        loaded.note_activity();
    }
    match record.t {
        Kind::Intent | Kind::Step if record.link.is_some() => {
            let link = record.link.expect("checked");
            let done = record.t == Kind::Step;
            let (line, step) = (line(record.line)?, step(record.step)?);
            loaded.apply_link_call(line, step, link.key, link.params, done);
        }
        Kind::Intent => loaded.apply_intent(line(record.line)?, step(record.step)?),
        Kind::Step => loaded.apply_step(line(record.line)?, step(record.step)?),
        Kind::Link => {
            let outcome = record.outcome.ok_or_else(|| missing("outcome"))?;
            let done = LinkDone {
                label: record.label.ok_or_else(|| missing("label"))?,
                outcome,
                message: record.message.unwrap_or_default(),
            };
            loaded.apply_link_done(line(record.line)?, done);
        }
        Kind::Settled => loaded.apply_settled(line(record.line)?),
        Kind::Lost => loaded.apply_lost(line(record.line)?),
        Kind::Outcome => {
            let row = record.row.as_ref().ok_or_else(|| missing("row"))?;
            let report_len = record.report_len.ok_or_else(|| missing("report_len"))?;
            let row_line = line(Some(row.line))?;
            loaded.apply_outcome(row_line, row.outcome, report_len);
            if row.outcome == Outcome::Failed {
                keep_failed_message(loaded, row_line, json);
            }
        }
        Kind::Report => loaded.apply_report(record.len.ok_or_else(|| missing("len"))?),
        Kind::Forget => {
            loaded.forget(record.outcome.ok_or_else(|| missing("outcome"))?);
        }
        Kind::Stop => loaded.apply_stop(LastStop {
            why: record.why.ok_or_else(|| missing("why"))?,
            at: record.at.unwrap_or_default(),
        }),
    }
    Ok(())
}
