//! The input side of a run: a blocking thread streams the input, validates and de-duplicates
//! rows, skips what the checkpoint already records, and hands each pending row to its vendor's
//! lane through a bounded channel. Invalid and duplicate rows go straight to the consumer.
//! `validate` is the same pass without sending anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::adapter::{Invalid, Prepared};
use crate::checkpoint::Loaded;
use crate::dedupe::DuplicateIndex;
use crate::input::spool;
use crate::input::{self, InputError};
use crate::job::Settings;
use crate::report::{Outcome, ReportRow, now_rfc3339};
use crate::stop::Stop;

use super::backlog::{Dispatch, Refill};
use super::consumer::{Event, RowNote};
use crate::checkpoint::LinkProgress;

/// A valid, pending row on its way to a lane.
pub(super) struct Work {
    pub(super) line: u64,
    pub(super) row: Prepared,
    /// Steps already completed in an earlier run.
    pub(super) start_step: u8,
    /// The step whose call was in flight when an earlier run stopped without recording it.
    pub(super) in_doubt: Option<u8>,
    /// The row's `input.columns.reference` value (empty without one).
    pub(super) reference: String,
    /// `--retry-failed`: the message of the row's earlier `failed` outcome.
    pub(super) failed_before: Option<String>,
    /// A wildcard row: the links an earlier run finished, and the one it was at.
    pub(super) links: Option<LinkProgress>,
}

/// Start the reader thread. The returned task ends with it, reporting a reader that died as an
/// internal failure. `lanes` are the lanes' queues, `dry_run` (without `--check`) records rows
/// as `dry_run` instead of sending them, `limit` is `--limit`.
pub(super) fn spawn(
    settings: Arc<Settings>,
    loaded: Arc<Loaded>,
    stop: Stop,
    sink: super::row::EventSink,
    (total, digest): (Arc<AtomicU64>, Arc<super::runs::InputDigest>),
    (lanes, dry_run, limit): (Vec<mpsc::Sender<Work>>, bool, Option<u64>),
) -> tokio::task::JoinHandle<()> {
    let events = sink.0.clone();
    let thread_stop = stop.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let refill = Refill {
            settings: settings.clone(),
            loaded: loaded.clone(),
            stop: thread_stop.clone(),
            events: events.clone(),
        };
        let lanes = Dispatch::new(lanes, refill);
        let reader = Reader {
            settings: &settings,
            loaded: &loaded,
            stop: &thread_stop,
            events: &events,
            total: &total,
            digest: &digest,
        };
        reader.run(lanes, dry_run, limit)
    });
    tokio::spawn(async move {
        if let Err(e) = reader.await {
            stop.trigger();
            let what = format!(
                "the input reader failed: {}",
                super::row::join_error_text(e)
            );
            sink.send(Event::Internal(what)).await;
        }
    })
}

/// The reader thread's borrowed context.
pub(super) struct Reader<'a> {
    pub(super) settings: &'a Settings,
    pub(super) loaded: &'a Loaded,
    stop: &'a Stop,
    events: &'a mpsc::Sender<Event>,
    /// Rows in the input, once counted (for progress and the summary).
    pub(super) total: &'a Arc<AtomicU64>,
    /// The input's SHA-256 for the runs log, taken by the counting pass.
    digest: &'a Arc<super::runs::InputDigest>,
}

impl Reader<'_> {
    /// Count the input's rows on a thread of its own. Started only once the first row is on its
    /// way: counting competes for the CPU with the pass that skips a resumed job's done rows.
    fn start_counting(&self) {
        // Never a second reader of a pipe (the run reads a spooled copy of one anyway).
        if !spool::needs_spool(&self.settings.input.source) {
            let spec = self.settings.input.clone();
            let total = self.total.clone();
            // The same pass hashes the input's bytes for the runs log.
            let counting = self.digest.begin();
            std::thread::spawn(move || {
                if let Some(records) = counting.open(&spec) {
                    let mut clean = true;
                    let n = records.take_while(|r| {
                        clean = r.is_ok();
                        clean
                    });
                    total.store(n.count() as u64, Ordering::Relaxed);
                    if clean {
                        counting.done();
                    }
                }
            });
        }
    }

    /// Stream records, validate, de-duplicate, skip recorded rows, dispatch.
    pub(super) fn run(&self, mut lanes: Dispatch, dry_run: bool, limit: Option<u64>) {
        let Reader {
            settings,
            loaded,
            stop,
            events,
            ..
        } = *self;
        let mut counting = false;
        let records = match input::open(&settings.input) {
            Ok(r) => r,
            Err(e) => {
                let _ = events.blocking_send(Event::Fatal(e));
                return;
            }
        };
        let mut seen = DuplicateIndex::new();
        let mut dispatched = 0u64;
        let mut more_pending = false;
        for record in records {
            if stop.is_set() {
                return;
            }
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let _ = events.blocking_send(Event::Fatal(e));
                    return;
                }
            };
            let line = record.line;
            let recorded = loaded.outcome(line).is_some();
            // Register keys even for recorded rows, so a later duplicate of them is still found.
            let classified = dedupe(
                &mut seen,
                settings,
                line,
                classify_record(settings, record.fields),
            );
            if recorded {
                continue;
            }
            if limit.is_some_and(|n| dispatched >= n) {
                more_pending = true;
                break;
            }
            // From the input, but a report never shows a secret (SPEC section 8).
            let reference = scrub_nonempty(settings, record.reference);
            let event = match classified {
                Err(unsent) => Event::Row(
                    Box::new(unsent_row(settings, line, reference, unsent)),
                    RowNote::default(),
                ),
                Ok((lane, row)) if dry_run => {
                    dispatched += 1;
                    let wildcard = settings.vendors[lane].adapter.is_wildcard(&row);
                    let row = dry_run_row(settings, line, reference, lane, &row);
                    let note = RowNote {
                        after_lost: false,
                        links: 1,
                        reads: u64::from(wildcard),
                    };
                    Event::Row(Box::new(row), note)
                }
                Ok((lane, row)) => {
                    dispatched += 1;
                    if !counting {
                        counting = true;
                        self.start_counting();
                    }
                    let work = work_for_scrubbed(loaded, line, row, reference);
                    if lanes.send(lane, work).is_err() {
                        return; // the lane stopped: the run is stopping
                    }
                    continue;
                }
            };
            if events.blocking_send(event).is_err() {
                return;
            }
        }
        if !counting {
            self.start_counting();
        }
        let _ = events.blocking_send(Event::InputDone { more_pending });
    }
}

/// A pending row's work, its reference not scrubbed yet.
pub(super) fn work_for(
    settings: &Settings,
    loaded: &Loaded,
    line: u64,
    row: Prepared,
    reference: String,
) -> Work {
    let reference = scrub_nonempty(settings, reference);
    work_for_scrubbed(loaded, line, row, reference)
}

fn work_for_scrubbed(loaded: &Loaded, line: u64, row: Prepared, reference: String) -> Work {
    Work {
        line,
        start_step: loaded.steps_done(line),
        in_doubt: loaded.is_in_doubt(line),
        row,
        reference,
        failed_before: loaded.failed_before(line).map(str::to_owned),
        links: loaded.links(line).cloned(),
    }
}

pub(super) type Classified = Result<(usize, Prepared), (Option<usize>, Invalid)>;

/// A row the reader records itself: its lane, its key (for an invalid row, as much of it as
/// the row gives), its message and outcome.
type Unsent = (Option<usize>, String, String, Outcome);

/// A valid row that repeats an earlier row's vendor and key becomes a `duplicate` of it.
fn dedupe(
    seen: &mut DuplicateIndex,
    settings: &Settings,
    line: u64,
    classified: Classified,
) -> Result<(usize, Prepared), Unsent> {
    match classified {
        Ok((lane, row)) => match seen.insert(&settings.vendors[lane].name, &row.key.0, line) {
            Some(first) => Err((
                Some(lane),
                row.key.0,
                format!("same vendor and key as line {first}"),
                Outcome::Duplicate,
            )),
            None => Ok((lane, row)),
        },
        Err((lane, invalid)) => {
            let message = invalid.to_string();
            let key = invalid.key.map(|k| k.0).unwrap_or_default();
            Err((lane, key, message, Outcome::Invalid))
        }
    }
}

/// A dry run's row: `dry_run`, with the request a real run would send.
fn dry_run_row(
    settings: &Settings,
    line: u64,
    reference: String,
    lane: usize,
    row: &Prepared,
) -> ReportRow {
    let adapter = &settings.vendors[lane].adapter;
    // A wildcard row's first call is the read that lists its links.
    let (first, message) = match adapter.read(row, None) {
        Some(read) if adapter.is_wildcard(row) => (
            read,
            "would remove every matching link (not read)".to_string(),
        ),
        _ => (adapter.build(row, 0, None), String::new()),
    };
    let request = settings.secrets.scrub(&first.describe());
    let unsent = (Some(lane), row.key.0.clone(), message, Outcome::DryRun);
    let mut r = unsent_row(settings, line, reference, unsent);
    r.request = request;
    r
}

/// Route a record to its vendor and let the adapter validate it.
pub(super) fn classify_record(
    settings: &Settings,
    fields: Result<crate::row::Fields, Invalid>,
) -> Classified {
    let fields = fields.map_err(|i| (None, i))?;
    let lane = if settings.vendors.len() == 1 {
        0
    } else {
        let names: Vec<&str> = settings.vendors.iter().map(|v| v.name.as_str()).collect();
        match fields.get("vendor") {
            None => {
                return Err((
                    None,
                    Invalid::new(
                        "vendor",
                        format!("is required: one of {}", names.join(", ")),
                    ),
                ));
            }
            Some(name) => settings.vendor_index(name).ok_or_else(|| {
                (
                    None,
                    Invalid::new(
                        "vendor",
                        format!(
                            "`{name}` is not a vendor of this job: one of {}",
                            names.join(", ")
                        ),
                    ),
                )
            })?,
        }
    };
    let row = settings.vendors[lane]
        .adapter
        .prepare(&fields)
        .map_err(|i| (Some(lane), i))?;
    // A `*` asks for every link (SPEC's wildcard rows); an adapter's `prepare` allows it only
    // where the vendor can list links. Anywhere else, sent as it stands it would name a link
    // called `*`, and its `absent` would say nothing true.
    // Only the vendor's own fields count: a `[defaults]` `*` meant for another vendor's rows
    // fills fields this vendor never reads.
    let adapter = &settings.vendors[lane].adapter;
    let own = |name: &str| {
        settings.vendors[lane]
            .kind
            .doc()
            .fields
            .iter()
            .any(|f| f.name == name)
    };
    if !adapter.is_wildcard(&row)
        && let Some((name, _)) = fields.iter().find(|(n, v)| *v == "*" && own(n))
    {
        let vendor = &settings.vendors[lane].kind;
        let invalid = Invalid::new(
            name,
            format!("`*` (every link) is not supported here by {vendor}: name the link itself"),
        )
        .with_key(row.key);
        return Err((Some(lane), invalid));
    }
    Ok((lane, row))
}

/// A report row for a row that was not sent.
fn unsent_row(
    settings: &Settings,
    line: u64,
    reference: String,
    (lane, key, message, outcome): Unsent,
) -> ReportRow {
    ReportRow {
        line,
        vendor: lane
            .map(|l| settings.vendors[l].name.clone())
            .unwrap_or_default(),
        key,
        reference,
        outcome,
        http_status: None,
        vendor_code: None,
        attempts: 0,
        elapsed_ms: 0,
        request_id: None,
        request: String::new(),
        message: settings.secrets.scrub(&message),
        finished_at: now_rfc3339(),
    }
}

fn scrub_nonempty(settings: &Settings, text: String) -> String {
    if text.is_empty() {
        text
    } else {
        settings.secrets.scrub(&text)
    }
}

/// What `validate` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Validation {
    pub rows: u64,
    pub valid: u64,
    pub invalid: u64,
    pub duplicate: u64,
}

/// Check every input row as a run would, without any network call or checkpoint. `problem` is
/// called for each invalid or duplicate row with its line and message.
pub fn validate(
    settings: &Settings,
    mut problem: impl FnMut(u64, &str),
) -> Result<Validation, InputError> {
    let mut v = Validation::default();
    let mut seen = DuplicateIndex::new();
    for record in input::open(&settings.input)? {
        let record = record?;
        v.rows += 1;
        match classify_record(settings, record.fields) {
            Err((_, invalid)) => {
                v.invalid += 1;
                problem(record.line, &format!("invalid: {invalid}"));
            }
            Ok((lane, row)) => {
                match seen.insert(&settings.vendors[lane].name, &row.key.0, record.line) {
                    Some(first) => {
                        v.duplicate += 1;
                        problem(
                            record.line,
                            &format!("duplicate: same vendor and key as line {first}"),
                        );
                    }
                    None => v.valid += 1,
                }
            }
        }
    }
    Ok(v)
}
