//! The HTTP call and answer as adapters see them, plus encoding helpers shared by adapters.
//!
//! Adapters describe a call as plain data ([`WireRequest`]) instead of a `reqwest` builder so that
//! the same value is sent, rendered (with secrets removed) into the report's `request` column, and
//! compared in unit tests.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::HeaderMap;

/// Everything outside RFC 3986's unreserved set (`A-Z a-z 0-9 - . _ ~`) is escaped.
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a value as an RFC 3986 path segment or query value: `auth0|5f7c` →
/// `auth0%7C5f7c`, `/` → `%2F`, space → `%20`.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// One HTTP call, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRequest {
    pub method: Method,
    /// The full URL, already encoded.
    pub url: String,
    /// Request headers. Never rendered into reports: they often carry credentials.
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// Form fields (`application/x-www-form-urlencoded` body) for a POST; empty otherwise.
    pub form: Vec<(String, String)>,
    /// Names of form fields whose values are secrets; rendered as `[redacted]`.
    pub secret_fields: Vec<String>,
    /// A JSON body (`application/json`) for a POST, already serialised; never with `form`.
    pub json: Option<String>,
}

/// What replaces a secret in any rendered output.
pub const REDACTED: &str = "[redacted]";

impl WireRequest {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        WireRequest {
            method,
            url: url.into(),
            headers: Vec::new(),
            form: Vec::new(),
            secret_fields: Vec::new(),
            json: None,
        }
    }

    /// Send `body` as the JSON body. It is shown in the report's `request` column, so it must
    /// hold no secret.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.json = Some(body.to_string());
        self
    }

    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.form.push((name.into(), value.into()));
        self
    }

    /// A form field whose value is a secret: sent, but rendered as [`REDACTED`].
    pub fn secret_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.secret_fields.push(name.clone());
        self.form.push((name, value.into()));
        self
    }

    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The report's `request` column: method, URL and, for a form POST, the form fields with every
    /// secret field's value replaced by [`REDACTED`]; for a JSON POST, the JSON body. Headers are
    /// never included.
    pub fn describe(&self) -> String {
        let mut out = format!("{} {}", self.method, self.url);
        if !self.form.is_empty() {
            out.push(' ');
            for (i, (name, value)) in self.form.iter().enumerate() {
                if i > 0 {
                    out.push('&');
                }
                out.push_str(&encode(name));
                out.push('=');
                if self.secret_fields.iter().any(|s| s == name) {
                    out.push_str(REDACTED);
                } else {
                    out.push_str(&encode(value));
                }
            }
        }
        if let Some(json) = &self.json {
            out.push(' ');
            out.push_str(json);
        }
        out
    }

    /// The form body, `application/x-www-form-urlencoded` with RFC 3986 escaping.
    pub fn form_body(&self) -> String {
        let mut out = String::new();
        for (i, (name, value)) in self.form.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&encode(name));
            out.push('=');
            out.push_str(&encode(value));
        }
        out
    }
}

/// One answer from a vendor.
#[derive(Debug, Clone, Default)]
pub struct WireAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl WireAnswer {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        WireAnswer {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// Builder for tests and the simulator's own checks.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers
            .insert(name, value.parse().expect("test header values are valid"));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON, or `Null` when it is empty or not JSON.
    pub fn json(&self) -> serde_json::Value {
        self.parse_json().unwrap_or(serde_json::Value::Null)
    }

    /// The body parsed as JSON; `None` when it is empty or not JSON. The content type is not
    /// consulted: simulators and proxies label JSON in many ways, and an HTML page never parses.
    pub fn parse_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// True when the body is empty or only whitespace.
    pub fn body_is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as text, cut to a length fit for a report message.
    pub fn text_snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_string(),
        }
    }

    /// A common request-id header, when the vendor sends one.
    pub fn request_id_header(&self) -> Option<String> {
        [
            "x-request-id",
            "request-id",
            "x-correlation-id",
            "x-amzn-requestid",
        ]
        .iter()
        .find_map(|h| self.header(h))
        .map(str::to_string)
    }

    /// How long the vendor asks us to wait: `Retry-After` (seconds or HTTP date), else Auth0's
    /// `x-ratelimit-reset` (epoch seconds). `None` when it names no usable time: absent, zero,
    /// negative, past or unparsable (the runner then applies its default pause). A time too far
    /// ahead to represent saturates to [`Duration::MAX`], so the runner can refuse it by name.
    pub fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        if let Some(d) = self
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, now))
        {
            return Some(d);
        }
        parse_reset_epoch(self.header("x-ratelimit-reset")?, now)
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). Fractional seconds
/// are accepted too (some servers send them). Never panics: see [`WireAnswer::retry_after`] for
/// what `None` and [`Duration::MAX`] mean.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(secs) = parse_whole_seconds(value) {
        return positive(secs.map_or(Duration::MAX, Duration::from_secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        // NaN and infinities are garbage, not waits.
        if !secs.is_finite() || secs <= 0.0 {
            return None;
        }
        return positive(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    positive(at.duration_since(now).ok()?)
}

/// Auth0's `x-ratelimit-reset`: the epoch second the bucket refills. Past or garbage is `None`;
/// an epoch beyond what the clock can represent is [`Duration::MAX`].
fn parse_reset_epoch(value: &str, now: SystemTime) -> Option<Duration> {
    let Some(reset) = parse_whole_seconds(value.trim())? else {
        return Some(Duration::MAX);
    };
    let Some(at) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(reset)) else {
        return Some(Duration::MAX);
    };
    positive(at.duration_since(now).ok()?)
}

/// A run of ASCII digits (an optional leading `+`): `Some(Some(n))`, or `Some(None)` when it is
/// too large for a `u64`. `None` when `value` is not a whole number of seconds.
fn parse_whole_seconds(value: &str) -> Option<Option<u64>> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().ok())
}

fn positive(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// An OAuth 2.0 token endpoint's answer (RFC 6749 section 5): 200 with a JSON object holding a
/// non-empty `access_token` and an optional positive `expires_in` (seconds; absent: `default`,
/// believed up to `max`); any other answer is the error, quoting `error_description` or `error`.
/// `hint` says what to check when the answer is not JSON at all.
pub(crate) fn parse_oauth_token(
    answer: &WireAnswer,
    hint: &str,
    default: Duration,
    max: Duration,
) -> Result<(String, Duration), String> {
    use serde_json::Value;
    let Some(body) = answer.parse_json().filter(Value::is_object) else {
        return Err(format!(
            "token endpoint answered HTTP {} with a body that is not JSON: {} ({hint})",
            answer.status,
            answer.text_snippet()
        ));
    };
    if answer.status != 200 {
        let why = body
            .get("error_description")
            .or_else(|| body.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| answer.text_snippet());
        return Err(format!(
            "token endpoint answered HTTP {}: {why}",
            answer.status
        ));
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("token answer has no access_token")?;
    let lifetime = match body.get("expires_in") {
        None | Some(Value::Null) => default,
        Some(v) => v
            .as_u64()
            .filter(|&secs| secs > 0)
            .map(|secs| Duration::from_secs(secs).min(max))
            .ok_or("token answer's expires_in is not a positive number of seconds")?,
    };
    Ok((token.to_string(), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rfc3986_segments() {
        assert_eq!(encode("auth0|5f7c"), "auth0%7C5f7c");
        assert_eq!(encode("a/b+c d"), "a%2Fb%2Bc%20d");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn describe_redacts_secret_fields_and_omits_headers() {
        let mut req = WireRequest::new(Method::POST, "https://x.test/p")
            .header("Authorization", "Bearer tok")
            .field("apiKey", "k")
            .field("secret", "s3cr3t")
            .field("UID", "a b");
        req.secret_fields = vec!["secret".into()];
        let text = req.describe();
        assert_eq!(
            text,
            "POST https://x.test/p apiKey=k&secret=[redacted]&UID=a%20b"
        );
        assert!(!text.contains("tok"));
        assert_eq!(req.form_body(), "apiKey=k&secret=s3cr3t&UID=a%20b");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let future = |secs| httpdate::fmt_http_date(now + Duration::from_secs(secs));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        let max = Some(Duration::MAX);
        let table: &[(&str, Option<Duration>)] = &[
            ("7", Some(Duration::from_secs(7))),
            (" 7 ", Some(Duration::from_secs(7))),
            ("+7", Some(Duration::from_secs(7))),
            ("1.5", Some(Duration::from_millis(1500))),
            (&future(30), Some(Duration::from_secs(30))),
            // Ten years, more than u64 seconds, more than Duration holds: large, never a panic.
            ("315360000", Some(Duration::from_secs(315_360_000))),
            ("18446744073709551615", Some(Duration::from_secs(u64::MAX))),
            ("99999999999999999999", max),
            ("1e300", max),
            ("18446744073709551616.5", max),
            (
                "Fri, 31 Dec 9999 23:59:59 GMT",
                Some(Duration::from_secs(253_402_300_799 - 1_000_000)),
            ),
            // Zero, negative, past and garbage name no wait.
            ("0", None),
            ("0.0", None),
            ("1e-12", None),
            ("-5", None),
            ("-1.5", None),
            ("-99999999999999999999", None),
            (&past, None),
            ("NaN", None),
            ("inf", None),
            ("-inf", None),
            ("soon", None),
            ("", None),
            ("+", None),
            ("12s", None),
            ("Thu, 01 Jan 1970 00:00:00 GMT", None),
        ];
        for (value, want) in table {
            assert_eq!(
                parse_retry_after(value, now),
                *want,
                "Retry-After: {value:?}"
            );
        }
    }

    #[test]
    fn rate_limit_reset_epochs() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let reset = |v: &str| WireAnswer::new(429, "").with_header("x-ratelimit-reset", v);
        let table: &[(&str, Option<Duration>)] = &[
            ("1000012", Some(Duration::from_secs(12))),
            ("1000000", None),
            ("5", None),
            ("0", None),
            ("-1", None),
            ("1000012.5", None),
            ("later", None),
            // Beyond what SystemTime or u64 can hold: large, never a panic.
            ("18446744073709551615", Some(Duration::MAX)),
            ("99999999999999999999", Some(Duration::MAX)),
        ];
        for (value, want) in table {
            let got = reset(value).retry_after(now);
            // SystemTime's range is platform-specific: a representable far epoch is fine too.
            if *want == Some(Duration::MAX) {
                assert!(
                    got.is_some_and(|d| d > Duration::from_secs(1 << 40)),
                    "{value}: {got:?}"
                );
            } else {
                assert_eq!(got, *want, "x-ratelimit-reset: {value:?}");
            }
        }
        // Retry-After wins; an unusable one falls back to the reset epoch.
        let both = reset("1000012").with_header("retry-after", "3");
        assert_eq!(both.retry_after(now), Some(Duration::from_secs(3)));
        let zero = reset("1000012").with_header("retry-after", "0");
        assert_eq!(zero.retry_after(now), Some(Duration::from_secs(12)));
        assert_eq!(WireAnswer::new(429, "").retry_after(now), None);
    }

    #[test]
    fn json_bodies() {
        assert_eq!(
            WireAnswer::new(200, "[1]").parse_json(),
            Some(serde_json::json!([1]))
        );
        assert_eq!(WireAnswer::new(200, "<html>").parse_json(), None);
        assert_eq!(WireAnswer::new(200, "").parse_json(), None);
        assert!(WireAnswer::new(200, " \r\n").body_is_empty());
        assert!(!WireAnswer::new(200, "{}").body_is_empty());
    }
}
