//! What input, adapters and the report share about rows: a row's fields, its key, why it is
//! invalid, and the two file formats rows come in.
//!
//! It sits below both: the input layer produces [`Fields`] (or an [`Invalid`]), an adapter turns
//! them into a [`Key`] and a prepared request (or an [`Invalid`]). Neither needs the other.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The two file formats rows come in and reports go out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// Infer from a path's extension: `.csv`, `.jsonl`, `.ndjson` (any case).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// A row's canonical key, unique per vendor (duplicates are detected on it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub String);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a row is `invalid`: the field and the rule it broke, and as much of the row's key as its
/// fields give (SPEC section 5), when an adapter got to look at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub rule: String,
    /// The key built from the row's raw fields, missing parts empty; `None` before any adapter
    /// (no vendor, an unreadable record).
    pub key: Option<Key>,
}

impl Invalid {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            rule: rule.into(),
            key: None,
        }
    }

    /// The same reason, with the partial key the row gives.
    pub fn with_key(self, key: Key) -> Self {
        Invalid {
            key: Some(key),
            ..self
        }
    }
}

/// The longest `reference` carried from the input (characters, after trimming).
pub const MAX_REFERENCE: usize = 200;

/// A raw `input.columns.reference` value as the report carries it: trimmed, cut to
/// [`MAX_REFERENCE`] characters.
pub fn reference(raw: &str) -> String {
    let raw = raw.trim();
    cut(raw, MAX_REFERENCE).unwrap_or_else(|| raw.to_owned())
}

/// `text` cut to at most `max` characters, the last being `…`; `None` when it fits. Cutting a
/// cut text again leaves it as it is, so report and journal agree however often a row passes.
pub fn cut(text: &str, max: usize) -> Option<String> {
    if text.len() <= max {
        return None; // bytes ≥ characters
    }
    let (end, _) = text.char_indices().nth(max)?;
    let keep = text[..end]
        .char_indices()
        .nth(max - 1)
        .map_or(end, |(i, _)| i);
    let mut out = String::with_capacity(keep + '…'.len_utf8());
    out.push_str(&text[..keep]);
    out.push('…');
    Some(out)
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.rule)
        } else {
            write!(f, "field `{}`: {}", self.field, self.rule)
        }
    }
}

/// One record's fields by canonical name, values trimmed. Booleans are `"true"`/`"false"`, JSON
/// numbers their decimal text; JSON `null` and empty strings count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new() -> Self {
        Fields(Vec::new())
    }

    /// Room for `n` fields without growing.
    pub fn with_capacity(n: usize) -> Self {
        Fields(Vec::with_capacity(n))
    }

    /// Add a field known not to be present yet (no search: the CSV header's names are unique).
    pub fn push_new(&mut self, name: String, value: String) {
        self.0.push((name, value));
    }

    /// Drop the field `name`, if present.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    /// Build from pairs (tests, the simulator's seed reader).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut f = Fields::new();
        for (k, v) in pairs {
            f.insert(k.into(), v.into());
        }
        f
    }

    /// Set a field (later values for the same name win).
    pub fn insert(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The trimmed value of `name`, or `None` when missing or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Fill fields that are missing or empty from `defaults`.
    pub fn apply_defaults(&mut self, defaults: &BTreeMap<String, String>) {
        for (name, value) in defaults {
            if self.get(name).is_none() {
                self.insert(name.clone(), value.clone());
            }
        }
    }
}
