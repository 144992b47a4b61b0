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

/// Why a row is `invalid`: the field and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub rule: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
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
