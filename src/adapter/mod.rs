//! Vendor adapters: the only code that knows a vendor's wire format.
//!
//! An adapter validates a row into a [`Prepared`] request, builds the HTTP call for it
//! ([`WireRequest`]) and classifies the vendor's answer ([`Verdict`]). It never sleeps, retries or
//! rate-limits: the runner wraps every adapter the same way (see `limit` and `runner`), so the
//! behaviour that users rely on — pacing, retries, halting — is written once.
//!
//! Classifiers accept only the answer shapes docs/vendors.md lists for each call (status *and* body):
//! anything else — a proxy's 404, an HTML page, a 2xx with another body — is
//! [`Class::Unexpected`], never an outcome, and never falls through to "unlinked" or "absent".
//!
//! Adding a vendor means one new file here (its adapter and its `REGISTRATION`) plus one entry in
//! [`REGISTRY`].

pub(crate) mod auth0;
pub(crate) mod firebase;
pub(crate) mod fusionauth;
pub(crate) mod gigya;
pub(crate) mod http_class;
pub(crate) mod newspark;
pub(crate) mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use wire::{WireAnswer, WireRequest};

pub use crate::row::{Fields, Invalid, Key};

/// A validated row: its key and the normalised values the adapter needs to build its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub key: Key,
    pub params: Params,
}

/// Normalised row values by canonical field name. Small (a handful of fields), so a Vec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
    /// The value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| *n == name)
    }
    /// Every value with its name, in the order they were set.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

/// How an answer (or a transport failure) is to be handled.
#[derive(Debug, Clone, PartialEq)]
pub enum Class {
    /// The vendor confirmed the change (for a step of a row: the step succeeded).
    Unlinked,
    /// Read calls only: the link still exists.
    Present,
    /// The link or user does not exist; the message says which.
    Absent(String),
    /// Final for the row.
    Failed(String),
    /// Transient: try again after a backoff (the call may or may not have taken effect).
    Retry(String),
    /// Pause the whole vendor for `wait` (or a backoff when `None`), then retry the row.
    RateLimit(Option<Duration>),
    /// Credentials expired or a signature went stale: rebuild credentials and retry once; a second
    /// time in a row halts the run with this message.
    Reauth(String),
    /// Credentials, permissions or configuration are wrong: stop the run; the row stays pending.
    Halt(String),
    /// The answer matches none of the shapes the vendor documents for this call (a proxy's 404,
    /// an HTML page, a 2xx with another body): never an outcome. The runner halts the vendor with
    /// the status, content type and start of the body; the string says what did not match.
    Unexpected(String),
    /// Wildcard rows' reads only: the links that match, each prepared as an explicit row (SPEC
    /// section 3). Possibly empty.
    Listed(Vec<Prepared>),
}

impl Class {
    pub fn name(&self) -> &'static str {
        match self {
            Class::Unlinked => "unlinked",
            Class::Present => "present",
            Class::Absent(_) => "absent",
            Class::Failed(_) => "failed",
            Class::Retry(_) => "retry",
            Class::RateLimit(_) => "rate-limit",
            Class::Reauth(_) => "reauth",
            Class::Halt(_) => "halt",
            Class::Unexpected(_) => "unexpected",
            Class::Listed(_) => "listed",
        }
    }
}

/// An adapter's reading of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub class: Class,
    /// The vendor's own error code (Auth0 `errorCode`, Gigya `errorCode`, FusionAuth error code).
    pub vendor_code: Option<String>,
    /// The vendor's id for the call (Gigya `callId`, a request-id header).
    pub request_id: Option<String>,
}

impl Verdict {
    pub fn new(class: Class) -> Self {
        Verdict {
            class,
            vendor_code: None,
            request_id: None,
        }
    }
    pub fn code(mut self, code: Option<String>) -> Self {
        self.vendor_code = code;
        self
    }
    pub fn request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }
}

/// Documentation of one row field, for `unlinker vendors` and error messages.
#[derive(Debug, Clone, Copy)]
pub struct FieldDoc {
    pub name: &'static str,
    pub required: bool,
    pub rule: &'static str,
}

/// Documentation of one vendor config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDoc {
    pub name: &'static str,
    /// Default value as the user would write it, or "" when the key is required / has no default.
    pub default: &'static str,
    pub about: &'static str,
}

/// What `unlinker vendors` prints for one adapter.
#[derive(Debug, Clone, Copy)]
pub struct VendorDoc {
    pub title: &'static str,
    pub fields: &'static [FieldDoc],
    pub key: &'static str,
    pub config: &'static [ConfigDoc],
    pub read_api: bool,
}

/// Per-vendor pacing defaults (docs/vendors.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub rate: f64,
    pub burst: u32,
    pub concurrency: u32,
}

/// One vendor adapter. Implementations are pure: no I/O, no sleeping, no retrying.
pub trait Adapter: Send + Sync + 'static {
    /// Validate a row and normalise it. `Err` makes the row `invalid`.
    fn prepare(&self, fields: &Fields) -> Result<Prepared, Invalid>;

    /// How many sequential calls a row needs (Auth0 `delete_unlinked_user` = 2). Step `n + 1` is
    /// made only when step `n` was classified [`Class::Unlinked`].
    fn steps(&self, _row: &Prepared) -> u8 {
        1
    }

    /// Whether `step` of `row` only reads (Firebase's lookup before its update): no intent is
    /// journaled for it, its lost answer is simply asked again, and the first step that is not
    /// a read is the one whose lost answer is settled by read-back.
    fn reads_only(&self, _row: &Prepared, _step: u8) -> bool {
        false
    }

    /// The first step of `row` that changes anything (see [`Adapter::reads_only`]).
    fn first_change(&self, row: &Prepared) -> u8 {
        (0..self.steps(row))
            .find(|&s| !self.reads_only(row, s))
            .unwrap_or(0)
    }

    /// The call for `step` of `row`. `token` is the bearer token fetched through
    /// [`Adapter::token_request`], when the adapter uses one.
    fn build(&self, row: &Prepared, step: u8, token: Option<&str>) -> WireRequest;

    /// Classify the answer to step `step`.
    fn classify(&self, row: &Prepared, step: u8, answer: &WireAnswer) -> Verdict;

    /// The read-only call that tells whether the row's link still exists; `None` when the vendor
    /// has no read API.
    fn read(&self, _row: &Prepared, _token: Option<&str>) -> Option<WireRequest> {
        None
    }

    /// Whether [`Adapter::read`] gives a call (for every row): checked on every call, so
    /// cheaper than building the read to see.
    fn can_read(&self) -> bool {
        false
    }

    /// Classify a read answer: [`Class::Present`], [`Class::Absent`] or an error class.
    fn classify_read(&self, _row: &Prepared, _answer: &WireAnswer) -> Verdict {
        Verdict::new(Class::Failed("this vendor has no read API".into()))
    }

    /// Whether the row asks for every matching link (`*` in a link field; SPEC section 3). Such
    /// a row is never sent as it stands: its [`Adapter::read`] lists the links
    /// ([`Adapter::classify_list`]) and each one is removed as an explicit row of its own.
    /// `prepare` decides where a `*` is allowed; a `*` in a row that is not a wildcard is
    /// refused by the reader.
    fn is_wildcard(&self, _row: &Prepared) -> bool {
        false
    }

    /// Classify the answer to a wildcard row's [`Adapter::read`]: [`Class::Listed`] with the
    /// links a real run removes (never a primary identity), possibly none; [`Class::Absent`] when
    /// the user does not exist; or an error class, as [`Adapter::classify_read`] does.
    fn classify_list(&self, _row: &Prepared, _answer: &WireAnswer) -> Verdict {
        Verdict::new(Class::Unexpected("this vendor has no wildcard rows".into()))
    }

    /// When the adapter authenticates with a fetched token (Auth0 client credentials): the call
    /// that fetches it. The runner shares one token between all calls and refreshes it, and
    /// calls this once per fetch, so a request holding a fresh signature (Firebase's JWT
    /// assertion) is built anew each time.
    fn token_request(&self) -> Option<WireRequest> {
        None
    }

    /// Whether [`Adapter::token_request`] gives a call: asked on every call, so an adapter whose
    /// token request is costly to build (a signature) answers without building it.
    fn fetches_token(&self) -> bool {
        self.token_request().is_some()
    }

    /// URLs besides `base_url` the adapter sends to (Firebase's `token_uri`), each with the config
    /// key that gave it and what it is: held to the same https-or-loopback rule as `base_url`
    /// when the job loads.
    fn other_urls(&self) -> Vec<(&'static str, &'static str, String)> {
        Vec::new()
    }

    /// Parse a token answer into the token and its lifetime.
    fn parse_token(&self, _answer: &WireAnswer) -> Result<(String, Duration), String> {
        Err("this vendor does not fetch tokens".into())
    }
}

/// What builds one adapter from its job-file table (common keys `type`, `base_url`, `rate`,
/// `burst`, `concurrency` already removed; variables already replaced) and the `base_url`
/// override, already checked for the https-or-loopback rule.
pub type Build =
    fn(toml::Table, Option<url::Url>) -> Result<(Arc<dyn Adapter>, url::Url), ConfigError>;

/// One adapter as the rest of the program knows it: its `type` name, pacing defaults,
/// documentation and constructor. Each adapter file defines its own `REGISTRATION`.
#[derive(Debug)]
pub struct Registration {
    /// The `type` value in a job file.
    pub name: &'static str,
    pub pacing: Pacing,
    pub doc: &'static VendorDoc,
    pub build: Build,
}

/// Every adapter we ship: adding a vendor is one adapter file plus one entry here.
pub static REGISTRY: [&Registration; 5] = [
    &auth0::REGISTRATION,
    &firebase::REGISTRATION,
    &fusionauth::REGISTRATION,
    &gigya::REGISTRATION,
    &newspark::REGISTRATION,
];

/// Box an adapter's own constructor result for [`Registration::build`].
pub(crate) fn boxed<A: Adapter>(
    r: Result<(A, url::Url), ConfigError>,
) -> Result<(Arc<dyn Adapter>, url::Url), ConfigError> {
    r.map(|(a, u)| (Arc::new(a) as Arc<dyn Adapter>, u))
}

/// Which adapter a vendor table uses: an entry of [`REGISTRY`], compared by name.
#[derive(Clone, Copy)]
pub struct VendorKind(&'static Registration);

impl VendorKind {
    /// Every adapter, in registry order.
    pub fn all() -> impl Iterator<Item = VendorKind> {
        REGISTRY.iter().map(|r| VendorKind(r))
    }

    pub fn parse(s: &str) -> Option<VendorKind> {
        VendorKind::all().find(|k| k.name() == s)
    }

    /// The `type` value in a job file.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    pub fn pacing(self) -> Pacing {
        self.0.pacing
    }

    pub fn doc(self) -> &'static VendorDoc {
        self.0.doc
    }

    /// Build the adapter from its job-file table; see [`Build`].
    pub fn build(
        self,
        table: toml::Table,
        base_url: Option<url::Url>,
    ) -> Result<(Arc<dyn Adapter>, url::Url), ConfigError> {
        (self.0.build)(table, base_url)
    }
}

impl PartialEq for VendorKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for VendorKind {}

impl fmt::Debug for VendorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for VendorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A problem in a vendor table of the job file. `key` is the config key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Deserialize a vendor's own config struct from its table, turning serde's message (which names
/// unknown or missing keys) into a [`ConfigError`]. Values are never quoted back: a mistyped
/// credential must not end up in an error message.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(
    table: toml::Table,
) -> Result<T, ConfigError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    T::deserialize(toml::Value::Table(table)).map_err(|e| {
        let msg = e.message().to_string();
        // serde names keys in backticks: "unknown field `x`, expected ..." / "missing field `x`".
        let named = msg.split('`').nth(1).unwrap_or("").to_string();
        if msg.starts_with("unknown field") || msg.starts_with("missing field") {
            let message = match msg.split_once(", expected") {
                Some((head, tail)) => format!("{head}; expected{tail}"),
                None => msg.clone(),
            };
            return ConfigError::new(named, message);
        }
        // "invalid type: string \"<value>\", expected ...": keep only what was expected. The key
        // is not in the message; name the table's keys the error can be about.
        let expected = msg
            .split_once("expected")
            .map(|(_, e)| format!("expected{e}"))
            .unwrap_or_else(|| "has the wrong type or value".to_string());
        let key = if keys.len() == 1 {
            keys[0].clone()
        } else {
            String::new()
        };
        let message = if key.is_empty() {
            format!(
                "a value has the wrong type or is not allowed ({expected}); keys given: {}",
                keys.join(", ")
            )
        } else {
            format!("wrong type or value ({expected})")
        };
        ConfigError::new(key, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized, to provoke errors")]
    struct Demo {
        token: String,
        flag: Option<bool>,
    }

    #[test]
    fn config_errors_never_quote_values() {
        let table: toml::Table =
            toml::from_str("token = \"s3cr3t-value\"\nflag = \"s3cr3t-value\"").unwrap();
        let e = parse_config::<Demo>(table).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let table: toml::Table = toml::from_str("token = \"x\"\ncolour = 1").unwrap();
        assert_eq!(parse_config::<Demo>(table).unwrap_err().key, "colour");
        let table: toml::Table = toml::from_str("flag = true").unwrap();
        assert_eq!(parse_config::<Demo>(table).unwrap_err().key, "token");
    }
}
