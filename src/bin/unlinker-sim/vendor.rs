//! What a simulated vendor is to the server, and the one pipeline every vendor request goes through.
//!
//! A vendor ([`Vendor`]) only parses its requests and answers them from its [`Store`]. Counting,
//! the rate limit, injected errors, drops and slow answers are applied the same way for all vendors
//! in [`Endpoint::dispatch`], so adding a vendor cannot forget one of them.

use std::collections::HashMap;

use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::percent_decode_str;

use super::faults::{Bucket, Budget, Dice, Limited};
use super::state::{Counters, Link, Op, OpKind, Store};

/// One received vendor request, with the path and query exactly as they came.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Query parameters, decoded (`+` is a space).
    pub(crate) fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self.query.as_deref().unwrap_or("");
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// Form parameters of an `application/x-www-form-urlencoded` body, decoded.
    pub(crate) fn form_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    /// The path after `prefix`, split at `/` and percent-decoded segment by segment, so an
    /// encoded `%2F` stays inside its segment. `None` when a segment is not UTF-8.
    pub(crate) fn segments_after(&self, prefix: &str) -> Option<Vec<String>> {
        let rest = self.path.strip_prefix(prefix)?;
        rest.split('/')
            .map(|seg| {
                percent_decode_str(seg)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned())
            })
            .collect()
    }
}

/// The first value of `name` among `pairs`.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Fields of a seed record by column (CSV) or key (JSONL) name.
pub(crate) type Record = HashMap<String, String>;

/// A record's field, trimmed; `None` when missing or empty.
pub(crate) fn field<'a>(record: &'a Record, name: &str) -> Option<&'a str> {
    record.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A required record field.
pub(crate) fn required<'a>(record: &'a Record, name: &str) -> Result<&'a str, String> {
    field(record, name).ok_or_else(|| format!("field `{name}` is required"))
}

/// One answer, before it becomes an HTTP response.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The request's credentials (or session) were refused; counted as `unauthorized`.
    pub(crate) unauthorized: bool,
}

impl Answer {
    pub(crate) fn empty(status: StatusCode) -> Self {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            unauthorized: false,
        }
    }

    pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Self {
        Answer::empty(status)
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(value.to_string())
    }

    pub(crate) fn text(status: StatusCode, text: &'static str) -> Self {
        Answer::empty(status)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(text)
    }

    /// A `302 Found` to `location` (as given; `/` when it cannot be a header value).
    pub(crate) fn redirect(location: &str) -> Self {
        let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
        let mut answer = Answer::empty(StatusCode::FOUND);
        answer.headers.insert(LOCATION, value);
        answer
    }

    pub(crate) fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.into()) {
            self.headers.insert(name, value);
        }
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) fn unauthorized(mut self) -> Self {
        self.unauthorized = true;
        self
    }

    /// Auth0's budget headers (`x-ratelimit-limit/remaining/reset`, the reset in epoch
    /// seconds), unless the answer carries them already (a rate-limit answer's own).
    pub(crate) fn budget(self, budget: &Budget) -> Self {
        if self.headers.contains_key("x-ratelimit-remaining") {
            return self;
        }
        self.header(
            HeaderName::from_static("x-ratelimit-limit"),
            budget.limit.to_string(),
        )
        .header(
            HeaderName::from_static("x-ratelimit-remaining"),
            budget.remaining.to_string(),
        )
        .header(
            HeaderName::from_static("x-ratelimit-reset"),
            budget.reset_epoch().to_string(),
        )
    }

    /// Adds `Retry-After` when the limit is configured to send it.
    pub(crate) fn retry_after(self, limited: &Limited) -> Self {
        if limited.retry_after {
            let secs = limited.retry_after_secs().to_string();
            self.header(RETRY_AFTER, secs)
        } else {
            self
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, self.headers, self.body).into_response()
    }
}

/// One simulated vendor: its paths, seed records, requests and answers.
pub(crate) trait Vendor: Send + Sync + 'static {
    /// The vendor type name (as in a job file's `type` and a seed's `vendor` field).
    const NAME: &'static str;
    /// How many leading fields of a link name the account holding it.
    const OWNER_LEN: usize;
    /// The vendor's parsed request, handed from [`Vendor::parse`] to [`Vendor::answer`].
    type Call: Send;
    /// Whether every answer carries the rate limit's budget headers (Auth0), when one is set.
    const BUDGET_HEADERS: bool = false;

    /// Whether `path` (raw) belongs to this vendor. Vendors' paths never overlap.
    fn owns(&self, path: &str) -> bool;

    /// The link a seed record names, as key fields.
    fn seed(&self, record: &Record) -> Result<Link, String>;

    /// What the request is (for the counters) and the parsed call.
    fn parse(&self, req: &Request) -> (Op, Self::Call);

    /// Check credentials, change state and answer.
    fn answer(&self, call: Self::Call, req: &Request, store: &Store) -> Answer;

    /// The vendor's rate-limit answer.
    fn rate_limited(&self, req: &Request, limited: &Limited) -> Answer;

    /// The vendor's "temporarily unavailable" answer (`--error-rate`).
    fn unavailable(&self, req: &Request) -> Answer;

    /// The vendor's answer refusing an unlink for good (`--fail-key`), which the client records
    /// as `failed`. Vendors without one answer a plain 400, which no client classifies as an
    /// outcome.
    fn refused(&self, _req: &Request) -> Answer {
        Answer::empty(StatusCode::BAD_REQUEST)
    }
}

/// What becomes of an answer after the vendor gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Send,
    /// The change is applied but the connection is cut without an answer (`--drop-rate`).
    Drop,
    /// The change is applied and the answer is delayed by `--slow` (`--slow-rate`).
    Slow,
}

/// The object-safe face of a [`Vendor`], used by the server.
pub(crate) trait Endpoint: Send + Sync {
    fn name(&self) -> &'static str;
    fn owner_len(&self) -> usize;
    fn owns(&self, path: &str) -> bool;
    fn seed(&self, record: &Record) -> Result<Link, String>;
    /// The pipeline: count → rate limit → injected error → the vendor's answer → drop or slow.
    fn dispatch(
        &self,
        req: &Request,
        store: &Store,
        bucket: Option<&Bucket>,
        dice: &Dice,
    ) -> (Answer, Fate);
}

impl<V: Vendor> Endpoint for V {
    fn name(&self) -> &'static str {
        V::NAME
    }

    fn owner_len(&self) -> usize {
        V::OWNER_LEN
    }

    fn owns(&self, path: &str) -> bool {
        Vendor::owns(self, path)
    }

    fn seed(&self, record: &Record) -> Result<Link, String> {
        Vendor::seed(self, record)
    }

    fn dispatch(
        &self,
        req: &Request,
        store: &Store,
        bucket: Option<&Bucket>,
        dice: &Dice,
    ) -> (Answer, Fate) {
        let (answer, fate) = answer_with_faults(self, req, store, bucket, dice);
        match bucket {
            Some(bucket) if V::BUDGET_HEADERS && bucket.headers => {
                (answer.budget(&bucket.budget()), fate)
            }
            _ => (answer, fate),
        }
    }
}

/// Count → rate limit → injected error → the vendor's answer → drop or slow.
fn answer_with_faults<V: Vendor>(
    vendor: &V,
    req: &Request,
    store: &Store,
    bucket: Option<&Bucket>,
    dice: &Dice,
) -> (Answer, Fate) {
    let counters = &store.counters;
    let (op, call) = vendor.parse(req);
    store.record(&op);
    if let Some(Err(limited)) = bucket.map(Bucket::take) {
        Counters::bump(&counters.rate_limited);
        return (vendor.rate_limited(req, &limited), Fate::Send);
    }
    if dice.roll(dice.error) {
        Counters::bump(&counters.errors);
        return (vendor.unavailable(req), Fate::Send);
    }
    if op.kind == OpKind::Unlink && store.fails(op.key.as_deref()) {
        return (vendor.refused(req), Fate::Send);
    }
    let answer = vendor.answer(call, req, store);
    if answer.unauthorized {
        Counters::bump(&counters.unauthorized);
    }
    let fate = if dice.roll(dice.drop) {
        Counters::bump(&counters.dropped);
        Fate::Drop
    } else if dice.roll(dice.slow) {
        Counters::bump(&counters.slow);
        Fate::Slow
    } else {
        Fate::Send
    };
    (answer, fate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> Request {
        Request {
            method: Method::GET,
            path: path.into(),
            query: Some("a=1&b=x+y&b=z&c=%7C".into()),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"k=v%20w"),
        }
    }

    #[test]
    fn segments_keep_encoded_slashes_inside() {
        let req = request("/api/v2/users/auth0%7C5f/identities/github/12%203%2F4");
        assert_eq!(
            req.segments_after("/api/v2/users/").unwrap(),
            ["auth0|5f", "identities", "github", "12 3/4"]
        );
        assert!(req.segments_after("/other/").is_none());
        assert!(request("/x/%FF").segments_after("/x/").is_none());
    }

    #[test]
    fn decodes_query_and_form() {
        let req = request("/");
        let q = req.query_pairs();
        assert_eq!(param(&q, "b"), Some("x y"));
        assert_eq!(param(&q, "c"), Some("|"));
        assert_eq!(param(&q, "d"), None);
        assert_eq!(param(&req.form_pairs(), "k"), Some("v w"));
    }
}
