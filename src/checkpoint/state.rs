//! What a journal says about every input row, in one byte per input line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::report::Outcome;

/// Steps a row can have (numbered from 0): unlink, then delete the standalone user, and one spare.
pub const MAX_STEPS: u8 = 3;

/// Characters of a `failed` row's message kept for `--retry-failed` (SPEC section 6: a retried
/// row says it had failed before, and why).
pub const FAILED_BEFORE_CHARS: usize = 200;

// One row's state in a byte:
//   bits 0-2  final outcome: 0 none, 1 + index in `Outcome::ALL`
//   bits 3-4  steps done (0..=MAX_STEPS)
//   bits 5-6  in doubt: 0 no, 1 + the step whose call may have been sent
//   bit 7     the journal holds an outcome record for the line (rebuilding needs to know)
const OUTCOME_MASK: u8 = 0b0000_0111;
const STEPS_SHIFT: u8 = 3;
const STEPS_MASK: u8 = 0b0001_1000;
const DOUBT_SHIFT: u8 = 5;
const DOUBT_MASK: u8 = 0b0110_0000;
const HAS_OUTCOME_RECORD: u8 = 0b1000_0000;

/// The state of every row a checkpoint knows, as of loading it.
///
/// Memory: one byte per input line up to the highest line the journal names (10 million lines
/// take 10 MB), plus a small map entry (~32 bytes) per row that has more than one outcome record
/// (rows re-attempted with `--retry-failed`), plus up to [`FAILED_BEFORE_CHARS`] characters of
/// the message of each row recorded `failed` (or forgotten by `--retry-failed` and not yet
/// recorded again).
impl Default for Loaded {
    /// Nothing recorded: what a run without a checkpoint (a dry run) starts from.
    fn default() -> Loaded {
        Loaded::new()
    }
}

pub struct Loaded {
    /// Indexed by input line.
    rows: Vec<u8>,
    /// Rows per final outcome, indexed like `Outcome::ALL`.
    counts: [u64; 6],
    /// Lines with more than one outcome record in the journal, and how many.
    repeated: HashMap<u64, u32>,
    report_len: u64,
    needs_rebuild: bool,
    /// Bytes of the journal this state describes (good records only).
    pub(crate) journal_len: u64,
    /// Bytes of torn tail found after the last good record (cut off by `Checkpoint::open`).
    pub(crate) dropped_tail: u64,
    /// Lines recorded `absent` by a read-back after a lost answer (a `lost` record before the
    /// outcome). Few, so a set.
    lost_answer: std::collections::HashSet<u64>,
    /// The last `stop` record: why a run ended, and when.
    last_stop: Option<LastStop>,
    /// Whether any other record follows that one (or, without one, exists at all).
    after_stop: bool,
    /// The (cut) message of every row whose outcome is `failed`.
    failed_messages: HashMap<u64, Box<str>>,
    /// Rows whose `failed` outcome was forgotten (`--retry-failed`) and that have no outcome
    /// since: the message of that outcome.
    failed_before: HashMap<u64, Box<str>>,
    /// Wildcard rows without an outcome yet whose links' calls started: their progress.
    links: HashMap<u64, LinkProgress>,
}

/// A wildcard row's progress (SPEC section 3) as its `link` records and link-tagged `intent` /
/// `step` records tell it: the links it finished, and the link whose calls had started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkProgress {
    pub done: Vec<LinkDone>,
    pub current: Option<LinkAt>,
}

/// One link a wildcard row finished: its label (the link's key without the user), its outcome
/// (`unlinked`, `absent` or `failed`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDone {
    pub label: String,
    pub outcome: Outcome,
    pub message: String,
}

/// The link a wildcard row's calls had reached: its key and parameters (as the adapter built
/// them), the steps of it done, and the step whose call may have been sent unrecorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkAt {
    pub key: String,
    pub params: Vec<(String, String)>,
    pub steps_done: u8,
    pub in_doubt: Option<u8>,
}

/// A run's end record (`{"t":"stop","why":…,"at":…}`): why it stopped, as
/// [`Checkpoint::record_stop`](super::Checkpoint::record_stop) was told, and when (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastStop {
    pub why: String,
    pub at: String,
}

impl Loaded {
    pub(crate) fn new() -> Loaded {
        Loaded {
            rows: Vec::new(),
            counts: [0; 6],
            repeated: HashMap::new(),
            report_len: 0,
            needs_rebuild: false,
            journal_len: 0,
            dropped_tail: 0,
            lost_answer: std::collections::HashSet::new(),
            last_stop: None,
            after_stop: false,
            failed_messages: HashMap::new(),
            failed_before: HashMap::new(),
            links: HashMap::new(),
        }
    }

    /// A wildcard row's progress, when its links' calls started and it has no outcome yet.
    pub fn links(&self, line: u64) -> Option<&LinkProgress> {
        self.links.get(&line)
    }

    /// For a row being re-attempted after `--retry-failed` forgot its `failed` outcome (in this
    /// run, or in one that stopped before recording the row again): that outcome's message,
    /// cut to [`FAILED_BEFORE_CHARS`].
    pub fn failed_before(&self, line: u64) -> Option<&str> {
        self.failed_before.get(&line).map(|m| &**m)
    }

    /// The message of the `failed` outcome just applied for `line` (kept, cut, for a later
    /// `--retry-failed`).
    pub(crate) fn apply_failed_message(&mut self, line: u64, message: &str) {
        if self.outcome(line) != Some(Outcome::Failed) {
            return;
        }
        let kept = crate::row::cut(message, FAILED_BEFORE_CHARS);
        let kept = kept.as_deref().unwrap_or(message);
        self.failed_messages.insert(line, kept.into());
    }

    /// The last end record of a run, if any run wrote one.
    pub fn last_stop(&self) -> Option<&LastStop> {
        self.last_stop.as_ref()
    }

    /// Whether the journal records anything after its last end record (or anything at all,
    /// without one): then the last run to write here left no end record — it was killed, or is
    /// still running.
    pub fn activity_after_last_stop(&self) -> bool {
        self.after_stop
    }

    pub(crate) fn apply_stop(&mut self, stop: LastStop) {
        self.last_stop = Some(stop);
        self.after_stop = false;
    }

    pub(crate) fn note_activity(&mut self) {
        self.after_stop = true;
    }

    /// Rows whose recorded outcome is `absent` by a read-back after a lost answer: the link is
    /// gone and a run of this job most likely removed it.
    pub fn absent_after_lost_answer(&self) -> u64 {
        self.lost_answer
            .iter()
            .filter(|line| self.outcome(**line) == Some(Outcome::Absent))
            .count() as u64
    }

    pub(crate) fn apply_lost(&mut self, line: u64) {
        self.lost_answer.insert(line);
    }

    /// The final outcome recorded for an input line, if any.
    pub fn outcome(&self, line: u64) -> Option<Outcome> {
        decode_outcome(self.byte(line))
    }

    /// Steps completed for the row. Meaningful for a row without an outcome (the next attempt
    /// starts at this step); kept across a `failed` outcome so that `--retry-failed` restarts at
    /// the step that failed.
    pub fn steps_done(&self, line: u64) -> u8 {
        (self.byte(line) & STEPS_MASK) >> STEPS_SHIFT
    }

    /// Rows whose call for a step may have been sent without its result being recorded, in line
    /// order: `(line, step)`.
    pub fn in_doubt(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(line, &b)| doubt_step(b).map(|step| (line as u64, step)))
    }

    /// The step whose call may have been sent for this row without its result being recorded.
    pub fn is_in_doubt(&self, line: u64) -> Option<u8> {
        doubt_step(self.byte(line))
    }

    /// Rows per final outcome; every outcome is a key, with 0 when no row has it.
    pub fn counts(&self) -> BTreeMap<Outcome, u64> {
        Outcome::ALL.into_iter().zip(self.counts).collect()
    }

    /// The length the report must have to hold exactly the recorded rows: the `report_len` of the
    /// last outcome record, or of a later `report` record; 0 when neither exists.
    pub fn report_len(&self) -> u64 {
        self.report_len
    }

    /// Rows with a final outcome.
    pub fn rows_recorded(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Forget `failed` outcomes, in memory only, so those rows are pending again; returns how many.
    /// The report then needs rebuilding ([`Loaded::needs_rebuild`]). A run should call
    /// [`Checkpoint::forget_failed`](super::Checkpoint::forget_failed) instead, which also
    /// records this in the journal, so a resume that crashes half-way through the retries does
    /// not bring the old `failed` rows back while the rebuilt report no longer holds them.
    pub fn forget_failed(&mut self) -> u64 {
        self.forget(Outcome::Failed)
    }

    /// Whether the report must be rebuilt with [`rebuild_report`](super::rebuild_report) before
    /// rows are appended to it: outcomes were forgotten after the last rebuild was recorded.
    pub fn needs_rebuild(&self) -> bool {
        self.needs_rebuild
    }

    /// Bytes of torn tail (an unfinished last record, zero padding) found after the last good
    /// record. `Checkpoint::open` cuts them off; `read` leaves the file alone.
    pub fn dropped_tail_bytes(&self) -> u64 {
        self.dropped_tail
    }

    /// The highest input line the journal names (0 when none).
    pub fn max_line(&self) -> u64 {
        (self.rows.len() as u64).saturating_sub(1)
    }

    pub(crate) fn repeated(&self) -> &HashMap<u64, u32> {
        &self.repeated
    }

    // Journal records, applied in order. Callers check `line >= 1` and `step < MAX_STEPS`.

    pub(crate) fn apply_intent(&mut self, line: u64, step: u8) {
        let b = self.clear_outcome(line);
        self.set(line, (b & !DOUBT_MASK) | ((step + 1) << DOUBT_SHIFT));
    }

    pub(crate) fn apply_step(&mut self, line: u64, step: u8) {
        let b = self.clear_outcome(line);
        self.set(
            line,
            (b & !(DOUBT_MASK | STEPS_MASK)) | ((step + 1) << STEPS_SHIFT),
        );
    }

    pub(crate) fn apply_settled(&mut self, line: u64) {
        let b = self.clear_outcome(line);
        self.set(line, b & !DOUBT_MASK);
        if let Some(at) = self.links.get_mut(&line).and_then(|p| p.current.as_mut()) {
            at.in_doubt = None;
        }
    }

    /// An `intent` (`step: None`) or `step` record naming the link of a wildcard row.
    pub(crate) fn apply_link_call(
        &mut self,
        line: u64,
        step: u8,
        key: String,
        params: Vec<(String, String)>,
        done: bool,
    ) {
        if done {
            self.apply_step(line, step);
        } else {
            self.apply_intent(line, step);
        }
        let progress = self.links.entry(line).or_default();
        let at = match progress.current.take() {
            Some(at) if at.key == key => at,
            _ => LinkAt {
                key,
                params,
                steps_done: 0,
                in_doubt: None,
            },
        };
        progress.current = Some(if done {
            LinkAt {
                steps_done: step + 1,
                in_doubt: None,
                ..at
            }
        } else {
            LinkAt {
                in_doubt: Some(step),
                ..at
            }
        });
    }

    /// A `link` record: a wildcard row finished one of its links.
    pub(crate) fn apply_link_done(&mut self, line: u64, done: LinkDone) {
        let b = self.clear_outcome(line);
        self.set(line, b & !(DOUBT_MASK | STEPS_MASK));
        let progress = self.links.entry(line).or_default();
        progress.current = None;
        progress.done.push(done);
    }

    pub(crate) fn apply_outcome(&mut self, line: u64, outcome: Outcome, report_len: u64) {
        let b = self.clear_outcome(line);
        if b & HAS_OUTCOME_RECORD != 0 {
            *self.repeated.entry(line).or_insert(1) += 1;
        }
        self.counts[outcome_index(outcome)] += 1;
        self.failed_before.remove(&line);
        self.links.remove(&line);
        let code = outcome_index(outcome) as u8 + 1;
        self.set(
            line,
            (b & !(DOUBT_MASK | OUTCOME_MASK)) | code | HAS_OUTCOME_RECORD,
        );
        self.report_len = report_len;
    }

    pub(crate) fn apply_report(&mut self, len: u64) {
        self.report_len = len;
        self.needs_rebuild = false;
    }

    pub(crate) fn forget(&mut self, outcome: Outcome) -> u64 {
        let code = outcome_index(outcome) as u8 + 1;
        let mut forgotten = 0;
        for b in &mut self.rows {
            if *b & OUTCOME_MASK == code {
                *b &= !OUTCOME_MASK;
                forgotten += 1;
            }
        }
        self.counts[outcome_index(outcome)] -= forgotten;
        if outcome == Outcome::Failed {
            self.failed_before.extend(self.failed_messages.drain());
        }
        if forgotten > 0 {
            self.needs_rebuild = true;
        }
        forgotten
    }

    fn byte(&self, line: u64) -> u8 {
        usize::try_from(line)
            .ok()
            .and_then(|i| self.rows.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn set(&mut self, line: u64, b: u8) {
        let i = usize::try_from(line).expect("line numbers are checked against the input size");
        if i >= self.rows.len() {
            self.rows.resize(i + 1, 0);
        }
        self.rows[i] = b;
    }

    /// Drop the line's outcome (keeping the other bits), returning its byte.
    fn clear_outcome(&mut self, line: u64) -> u8 {
        let b = self.byte(line);
        if let Some(old) = decode_outcome(b) {
            self.counts[outcome_index(old)] -= 1;
            if old == Outcome::Failed {
                self.failed_messages.remove(&line);
            }
        }
        b & !OUTCOME_MASK
    }
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("counts", &self.counts())
            .field("in_doubt", &self.in_doubt().count())
            .field("report_len", &self.report_len)
            .field("needs_rebuild", &self.needs_rebuild)
            .field("max_line", &self.max_line())
            .field("journal_len", &self.journal_len)
            .field("dropped_tail", &self.dropped_tail)
            .finish()
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    Outcome::ALL
        .iter()
        .position(|&o| o == outcome)
        .expect("Outcome::ALL lists every outcome")
}

fn decode_outcome(b: u8) -> Option<Outcome> {
    match b & OUTCOME_MASK {
        0 => None,
        code => Outcome::ALL.get(usize::from(code) - 1).copied(),
    }
}

fn doubt_step(b: u8) -> Option<u8> {
    match (b & DOUBT_MASK) >> DOUBT_SHIFT {
        0 => None,
        s => Some(s - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_and_step_fits_its_bits() {
        assert!(Outcome::ALL.len() < usize::from(OUTCOME_MASK));
        assert_eq!((MAX_STEPS << STEPS_SHIFT) & !STEPS_MASK, 0);
        assert_eq!((MAX_STEPS << DOUBT_SHIFT) & !DOUBT_MASK, 0);
        let mut s = Loaded::new();
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            let line = i as u64 + 1;
            s.apply_step(line, MAX_STEPS - 1);
            s.apply_intent(line, MAX_STEPS - 1);
            assert_eq!(s.is_in_doubt(line), Some(MAX_STEPS - 1));
            s.apply_outcome(line, outcome, 10 * line);
            assert_eq!(s.outcome(line), Some(outcome));
            assert_eq!(s.steps_done(line), MAX_STEPS);
            assert_eq!(s.is_in_doubt(line), None);
        }
        assert_eq!(s.rows_recorded(), 6);
        assert_eq!(s.report_len(), 60);
        assert!(s.counts().values().all(|&n| n == 1));
    }

    #[test]
    fn later_records_supersede_earlier_ones() {
        let mut s = Loaded::new();
        s.apply_outcome(4, Outcome::Unlinked, 100);
        s.apply_intent(4, 0);
        assert_eq!(s.outcome(4), None);
        assert_eq!(s.is_in_doubt(4), Some(0));
        assert_eq!(s.counts()[&Outcome::Unlinked], 0);
        s.apply_outcome(4, Outcome::Absent, 200);
        assert_eq!(s.outcome(4), Some(Outcome::Absent));
        assert_eq!(s.repeated().get(&4), Some(&2));
        assert_eq!(s.outcome(5), None);
        assert_eq!(s.outcome(u64::MAX), None);
        assert_eq!(s.max_line(), 4);
    }
}
