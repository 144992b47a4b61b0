//! Log lines: to stderr through the progress bar (so they do not tear it), at the level `-v`
//! and `-q` choose, as text or one JSON object per line; dependencies only speak up for
//! warnings.
//!
//! Quiet cron output (SPEC section 8): with `-q` a run that exits 0 or 4 prints nothing at all,
//! and one that exits otherwise prints its warnings, errors and summary. A warning is written
//! before the exit code is known, so under `-q` log lines are *held* in memory (at most
//! [`MAX_HELD_LINES`]; later ones are counted, not kept) and [`release`]d once the code is
//! known: written for codes other than 0 and 4, dropped for those. `-qq` holds nothing and
//! shows errors only, never the summary.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

/// Log lines kept under `-q` until the exit code is known; a run that warns about every row
/// must not grow without bound.
const MAX_HELD_LINES: usize = 1000;

/// `-q` count less `-v` count, at least 0.
static QUIET: AtomicU8 = AtomicU8::new(0);
static JSON: AtomicBool = AtomicBool::new(false);
/// `Some` while lines are held (`-q`, until [`release`]).
static HELD: Mutex<Option<Held>> = Mutex::new(None);

#[derive(Default)]
struct Held {
    lines: Vec<u8>,
    count: usize,
    dropped: usize,
}

/// Set up the log subscriber for `-v` / `-q` counts and `--log-format`.
pub fn init(verbose: u8, quiet: u8, format: LogFormat) {
    let net = i16::from(verbose) - i16::from(quiet);
    let level = match net {
        i16::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    QUIET.store((-net).clamp(0, 2) as u8, Ordering::Relaxed);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    if net == -1 {
        *lock_held() = Some(Held::default());
    }
    // Our crate at the chosen level; dependencies only speak up for warnings.
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,unlinker={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriterMaker);
    let _ = match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.event_format(JsonFormat).try_init(),
    };
}

/// How quiet the run was asked to be: 0 (normal), 1 (`-q`), 2 (`-qq` or more).
pub fn quiet() -> u8 {
    QUIET.load(Ordering::Relaxed)
}

/// Whether the summary of a run ending with `code` is printed.
pub fn shows_summary(code: i32) -> bool {
    match quiet() {
        0 => true,
        1 => !quiet_code(code),
        _ => false,
    }
}

/// The codes `-q` keeps silent about: all done, or stopped as asked.
fn quiet_code(code: i32) -> bool {
    code == crate::summary::exit::OK || code == crate::summary::exit::STOPPED
}

/// The exit code is known: write the held lines (codes other than 0 and 4) or drop them, and
/// stop holding. Safe to call more than once.
pub fn release(code: i32) {
    let Some(held) = lock_held().take() else {
        return;
    };
    if quiet_code(code) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&held.lines);
    if held.dropped > 0 {
        let note = format!("{} more log lines not shown\n", held.dropped);
        let _ = err.write_all(plain(&note).as_bytes());
    }
    let _ = err.flush();
}

/// Keep `line` when lines are held; `false` when it should be written now.
pub(crate) fn hold(line: &[u8]) -> bool {
    let mut held = lock_held();
    let Some(h) = held.as_mut() else {
        return false;
    };
    if h.count < MAX_HELD_LINES {
        h.lines.extend_from_slice(line);
        h.count += 1;
    } else {
        h.dropped += 1;
    }
    true
}

fn lock_held() -> std::sync::MutexGuard<'static, Option<Held>> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Text the commands print on stderr outside the log (the summary, a fatal error), as it is
/// written: unchanged, or with `--log-format json` one JSON object (`error` level when the text
/// is an error) whose `message` is the text, so every stderr line parses.
pub fn plain(text: &str) -> String {
    if !JSON.load(Ordering::Relaxed) {
        return text.to_string();
    }
    let message = text.trim_end();
    let level = if message.starts_with("error") {
        "error"
    } else {
        "info"
    };
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), now().into());
    object.insert("level".into(), level.into());
    object.insert("message".into(), message.into());
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// `--log-format json`: `{"ts": ..., "level": ..., "message": ..., FIELD: VALUE...}`, one line
/// per event. Numbers and booleans stay JSON numbers and booleans; spans are left out (the run
/// has none worth repeating on every line).
struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = JsonFields(serde_json::Map::new());
        event.record(&mut fields);
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), now().into());
        object.insert(
            "level".into(),
            event
                .metadata()
                .level()
                .as_str()
                .to_ascii_lowercase()
                .into(),
        );
        let message = fields.0.remove("message").unwrap_or_else(|| "".into());
        object.insert("message".into(), message);
        for (k, v) in fields.0 {
            // A field named like one of ours keeps its value under another name.
            let k = if object.contains_key(&k) {
                format!("field.{k}")
            } else {
                k
            };
            object.insert(k, v);
        }
        writeln!(writer, "{}", serde_json::Value::Object(object))
    }
}

struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0.insert(field.name().to_string(), text.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}
