//! One table of the job file, read key by key: each value is taken out as it is read, so what is
//! left at the end is unknown keys; every error names the full key.
//!
//! Numbers and durations are accepted bare or as strings (SPEC section 2), so `${VAR}` works for
//! them: `rate = "${RATE}"`, `max_attempts = "6"`, `timeout = "${T}"`.

use std::path::Path;
use std::time::Duration;

use super::JobError;

/// Longest duration a job may give (`retry.*`): a year. Longer values would overflow the
/// clock arithmetic of timers and deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

pub(super) struct Section<'a> {
    path: &'a Path,
    /// `retry`, `vendors.a0`; empty at the top level.
    prefix: String,
    table: toml::Table,
}

impl<'a> Section<'a> {
    pub(super) fn new(path: &'a Path, prefix: String, table: toml::Table) -> Section<'a> {
        Section {
            path,
            prefix,
            table,
        }
    }

    /// The full name of `key` in this table (`key` empty: the table itself).
    pub(super) fn key(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{key}", self.prefix),
        }
    }

    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> JobError {
        JobError::Key {
            path: self.path.to_path_buf(),
            key: self.key(key),
            message: message.into(),
        }
    }

    /// An empty table named `key` inside this one: a section the file leaves out, read as one
    /// with every key at its default.
    pub(super) fn empty_section(&self, key: &str) -> Section<'a> {
        Section::new(self.path, self.key(key), toml::Table::new())
    }

    /// The keys not read yet.
    pub(super) fn keys(&self) -> Vec<String> {
        self.table.keys().cloned().collect()
    }

    pub(super) fn take(&mut self, key: &str) -> Option<toml::Value> {
        self.table.remove(key)
    }

    /// Everything not read yet (a vendor table's adapter-specific keys).
    pub(super) fn take_rest(&mut self) -> toml::Table {
        std::mem::take(&mut self.table)
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>, JobError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.err(key, format!("must be a string, not {}", other.type_str())))
            }
        }
    }

    pub(super) fn section(&mut self, key: &str) -> Result<Option<Section<'a>>, JobError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(Section::new(self.path, self.key(key), t))),
            Some(other) => Err(self.err(key, format!("must be a table, not {}", other.type_str()))),
        }
    }

    /// A whole number in `range` (inclusive), bare or as a string.
    pub(super) fn whole(&mut self, key: &str, range: (u64, u64)) -> Result<Option<u64>, JobError> {
        let n = match self.take(key) {
            None => return Ok(None),
            Some(toml::Value::Integer(i)) => u64::try_from(i).ok(),
            Some(toml::Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        let n = n.ok_or_else(|| {
            self.err(
                key,
                format!("must be a whole number from {} to {}", range.0, range.1),
            )
        })?;
        check_whole(n, range)
            .map(Some)
            .map_err(|m| self.err(key, m))
    }

    /// A number in `range` (inclusive), bare or as a string.
    pub(super) fn number(&mut self, key: &str, range: (f64, f64)) -> Result<Option<f64>, JobError> {
        let n = match self.take(key) {
            None => return Ok(None),
            Some(toml::Value::Integer(i)) => Some(i as f64),
            Some(toml::Value::Float(f)) => Some(f),
            Some(toml::Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        let n = n.ok_or_else(|| {
            self.err(
                key,
                format!("must be a number from {} to {}", range.0, range.1),
            )
        })?;
        check_number(n, range)
            .map(Some)
            .map_err(|m| self.err(key, m))
    }

    /// A duration string (`500ms`, `30s`, `15m`) of at most [`MAX_DURATION`].
    pub(super) fn duration(&mut self, key: &str) -> Result<Option<Duration>, JobError> {
        let text = match self.take(key) {
            None => return Ok(None),
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(self.err(
                    key,
                    format!(
                        "must be a duration as a string, like \"30s\" or \"500ms\", not {}",
                        other.type_str()
                    ),
                ));
            }
        };
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(
                key,
                format!("`{text}` is not a duration (like \"30s\" or \"500ms\"): {e}"),
            )
        })?;
        if d > MAX_DURATION {
            return Err(self.err(key, format!("`{text}` is longer than a year")));
        }
        Ok(Some(d))
    }

    /// Fail when a key was not read: it is unknown.
    pub(super) fn finish(self, valid: &[&str]) -> Result<(), JobError> {
        let Some(unknown) = self.table.keys().next() else {
            return Ok(());
        };
        Err(self.err(
            unknown,
            format!("unknown key; valid keys here: {}", valid.join(", ")),
        ))
    }
}

pub(super) fn check_whole(n: u64, (min, max): (u64, u64)) -> Result<u64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is outside {min} to {max}"))
    }
}

/// `n` when it is finite and in `range`.
pub(super) fn check_number(n: f64, (min, max): (f64, f64)) -> Result<f64, String> {
    if n.is_finite() && n >= min && n <= max {
        Ok(n)
    } else {
        Err(format!("{n} is outside {min} to {max}"))
    }
}
