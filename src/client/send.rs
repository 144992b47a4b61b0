//! Sending one call and reading its answer: the only code that touches reqwest's client.
//!
//! A failure to get an answer is typed by what it means for the row: [`TransportError::NeverSent`]
//! (the vendor cannot have acted: connection refused, DNS, TLS handshake) or
//! [`TransportError::AnswerLost`] (it may have: a timeout after sending, a reset). Bodies are read
//! up to [`MAX_BODY`] and never further.

use std::time::Duration;

use crate::adapter::{WireAnswer, WireRequest};

/// Most of an answer body that is ever read (SPEC section 4); past it the answer is unexpected.
pub const MAX_BODY: usize = 1 << 20;

/// A call that got no usable answer, typed by whether the vendor can have acted on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportError {
    /// The request never reached the vendor (connection refused, DNS, TLS handshake): retrying
    /// is safe, and running out of retries means the vendor is unreachable.
    NeverSent(String),
    /// The request was sent but the answer never came whole (timeout, reset, closed): the call
    /// may have taken effect.
    AnswerLost(String),
}

impl TransportError {
    pub(crate) fn message(&self) -> &str {
        match self {
            TransportError::NeverSent(m) | TransportError::AnswerLost(m) => m,
        }
    }
}

/// What came back from one send.
#[derive(Debug, Clone)]
pub(crate) enum Received {
    Answer(WireAnswer),
    /// The body went past [`MAX_BODY`]: `answer` holds the status, headers and first bytes.
    TooLarge(WireAnswer),
}

/// How calls reach a vendor: over HTTP, or (in unit tests of the call policy) from a script.
pub(crate) enum Transport {
    Http(reqwest::Client),
    /// Answers handed out in order; the requests sent are kept for the test to read.
    #[cfg(test)]
    Script(std::sync::Mutex<Script>),
}

#[cfg(test)]
#[derive(Default)]
pub(crate) struct Script {
    pub(crate) answers: std::collections::VecDeque<Result<Received, TransportError>>,
    pub(crate) sent: Vec<WireRequest>,
}

impl Transport {
    /// The HTTP client for a run: no redirects followed (Newspark's answer is the `Location`),
    /// `timeout` per request, a shorter connect timeout.
    pub(crate) fn http(timeout: Duration) -> Transport {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("unlinker/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client configuration is static and valid");
        Transport::Http(client)
    }

    pub(crate) async fn send(&self, request: &WireRequest) -> Result<Received, TransportError> {
        match self {
            Transport::Http(http) => send(http, request).await,
            #[cfg(test)]
            Transport::Script(script) => {
                let mut script = script.lock().expect("script lock");
                script.sent.push(request.clone());
                script
                    .answers
                    .pop_front()
                    .unwrap_or_else(|| panic!("no scripted answer for {}", request.describe()))
            }
        }
    }
}

/// Send one call and read its answer, at most [`MAX_BODY`] bytes of it.
async fn send(http: &reqwest::Client, request: &WireRequest) -> Result<Received, TransportError> {
    let mut builder = http.request(request.method.clone(), &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_ref(), value);
    }
    if !request.form.is_empty() {
        builder = builder
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(request.form_body());
    } else if let Some(json) = &request.json {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json.clone());
    }
    let mut response = builder.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    if response
        .content_length()
        .is_some_and(|n| n <= MAX_BODY as u64)
    {
        // The framing holds the body to its declared length: read it in one go.
        let body = response
            .bytes()
            .await
            .map_err(|e| TransportError::AnswerLost(describe_transport(e)))?;
        return Ok(Received::Answer(WireAnswer {
            status,
            headers,
            body,
        }));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        // Headers arrived, so the request was sent: whatever broke, the answer is lost.
        TransportError::AnswerLost(describe_transport(e))
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            let take = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..take]);
            return Ok(Received::TooLarge(WireAnswer {
                status,
                headers,
                body: body.freeze(),
            }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Received::Answer(WireAnswer {
        status,
        headers,
        body: body.freeze(),
    }))
}

fn transport_error(e: reqwest::Error) -> TransportError {
    // A connect error (refused, DNS, TLS handshake, connect timeout) means nothing was sent.
    // Anything later may have reached the vendor.
    if e.is_connect() {
        TransportError::NeverSent(describe_transport(e))
    } else {
        TransportError::AnswerLost(describe_transport(e))
    }
}

fn describe_transport(e: reqwest::Error) -> String {
    // The URL is left out: the report's `request` column already has it.
    let e = e.without_url();
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out waiting for the answer"
    } else if e.is_body() || e.is_decode() {
        "answer cut off"
    } else {
        "connection lost"
    };
    let mut message = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}
