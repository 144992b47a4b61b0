//! The call policy against a scripted transport and a fake adapter, on paused tokio time: the
//! retry schedule, rate-limit pauses, halts, lost answers and never-sent calls.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use tokio::time::Instant;

use super::send::Script;
use super::*;
use crate::adapter::{Adapter, Invalid, Key, Params, WireRequest};
use crate::row::Fields;

/// An adapter whose answers mean what their status says; it can read only when `reads`.
struct Fake {
    reads: bool,
}

impl Adapter for Fake {
    fn prepare(&self, _fields: &Fields) -> Result<Prepared, Invalid> {
        unreachable!("the tests build rows themselves")
    }

    fn build(&self, _row: &Prepared, step: u8, _token: Option<&str>) -> WireRequest {
        WireRequest::new(Method::DELETE, format!("http://127.0.0.1:9/step/{step}"))
    }

    fn classify(&self, _row: &Prepared, _step: u8, answer: &WireAnswer) -> Verdict {
        Verdict::new(match answer.status {
            200 => Class::Unlinked,
            404 => Class::Absent("gone".into()),
            400 => Class::Failed("refused".into()),
            403 => Class::Halt("forbidden".into()),
            429 => Class::RateLimit(answer.retry_after(std::time::SystemTime::now())),
            503 => Class::Retry("HTTP 503: busy".into()),
            _ => Class::Unexpected("not documented".into()),
        })
    }

    fn read(&self, _row: &Prepared, _token: Option<&str>) -> Option<WireRequest> {
        self.reads
            .then(|| WireRequest::new(Method::GET, "http://127.0.0.1:9/read"))
    }

    fn can_read(&self) -> bool {
        self.reads
    }

    fn classify_read(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        let v = self.classify(row, 0, answer);
        match v.class {
            Class::Unlinked => Verdict::new(Class::Present),
            _ => v,
        }
    }
}

/// What the client told the recorder.
#[derive(Default)]
struct Notes {
    intents: Mutex<Vec<(u64, u8)>>,
    halts: Mutex<Vec<String>>,
}

impl Recorder for Notes {
    fn intent(&self, line: u64, step: u8) -> impl Future<Output = bool> + Send {
        self.intents.lock().unwrap().push((line, step));
        std::future::ready(true)
    }

    fn halt(&self, reason: String) -> impl Future<Output = ()> + Send {
        self.halts.lock().unwrap().push(reason);
        std::future::ready(())
    }
}

fn answer(status: u16) -> Result<Received, TransportError> {
    Ok(Received::Answer(WireAnswer::new(status, Bytes::new())))
}

fn limited(retry_after: &str) -> Result<Received, TransportError> {
    Ok(Received::Answer(
        WireAnswer::new(429, Bytes::new()).with_header("retry-after", retry_after),
    ))
}

fn lost() -> Result<Received, TransportError> {
    Err(TransportError::AnswerLost("timed out".into()))
}

fn refused() -> Result<Received, TransportError> {
    Err(TransportError::NeverSent("connection refused".into()))
}

const BASE: Duration = Duration::from_millis(100);

fn client(reads: bool, script: Vec<Result<Received, TransportError>>) -> VendorClient {
    let adapter: Arc<dyn Adapter> = Arc::new(Fake { reads });
    let kind = crate::adapter::VendorKind::parse("auth0").unwrap();
    let vendor = VendorSettings {
        name: "fake".into(),
        kind,
        adapter,
        base_url: url::Url::parse("http://127.0.0.1:9/").unwrap(),
        rate: 1000.0,
        burst: 1000,
        concurrency: 4,
        reserve: 0.0,
    };
    let retry = RetrySettings {
        max_attempts: 3,
        base_delay: BASE,
        max_delay: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        max_rate_limit_wait: Duration::from_secs(60),
    };
    let transport = Transport::Script(Mutex::new(Script {
        answers: VecDeque::from(script),
        sent: Vec::new(),
    }));
    VendorClient::new(
        vendor,
        Arc::new(transport),
        retry,
        Arc::new(Secrets::new(Vec::<String>::new())),
        Stop::new(),
    )
}

fn row() -> Prepared {
    Prepared {
        key: Key("k".into()),
        params: Params::new(),
    }
}

fn sent(client: &VendorClient) -> Vec<String> {
    match client.transport.as_ref() {
        Transport::Script(s) => s
            .lock()
            .unwrap()
            .sent
            .iter()
            .map(|r| r.describe())
            .collect(),
        Transport::Http(_) => unreachable!(),
    }
}

async fn step0(
    client: &VendorClient,
    notes: &Notes,
    log: &mut CallLog,
) -> Result<Answered, Stopped> {
    let mut budget = 0;
    client
        .call(notes, 7, &row(), log, CallKind::Step(0), &mut budget)
        .await
}

fn class_of(answered: Result<Answered, Stopped>) -> Class {
    match answered {
        Ok(Answered::Verdict(v)) => v.class,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn transient_answers_are_retried_with_a_growing_backoff() {
    let client = client(true, vec![answer(503), answer(503), answer(200)]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    let started = Instant::now();
    assert_eq!(
        class_of(step0(&client, &notes, &mut log).await),
        Class::Unlinked
    );
    // Backoff after attempt 1: [base, base]; after attempt 2: [base, 2 base].
    let waited = started.elapsed();
    assert!(waited >= 2 * BASE && waited <= 3 * BASE, "{waited:?}");
    assert_eq!(log.attempts, 3);
    assert_eq!(
        *notes.intents.lock().unwrap(),
        vec![(7, 0); 3],
        "an intent before each send"
    );
    assert_eq!(log.retried_answer.as_deref(), Some("HTTP 503"));
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_into_failed_with_the_reason() {
    let client = client(true, vec![answer(503), answer(503), answer(503)]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    let class = class_of(step0(&client, &notes, &mut log).await);
    assert_eq!(
        class,
        Class::Failed("gave up after 3 attempts: HTTP 503: busy".into())
    );
    assert_eq!(sent(&client).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_pauses_for_the_named_wait_and_uses_no_attempt() {
    // max_attempts is 3: three rate limits and then a success still fit.
    let script = vec![limited("5"), limited("5"), limited("5"), answer(200)];
    let client = client(true, script);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    let started = Instant::now();
    assert_eq!(
        class_of(step0(&client, &notes, &mut log).await),
        Class::Unlinked
    );
    assert!(
        started.elapsed() >= Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(log.attempts, 4);
    assert_eq!(client.limiter.rate_limited(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_wait_beyond_the_limit_halts_at_once() {
    let client = client(true, vec![limited("315360000")]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    let started = Instant::now();
    assert_eq!(step0(&client, &notes, &mut log).await.unwrap_err(), Stopped);
    assert!(started.elapsed() < Duration::from_secs(1));
    let halts = notes.halts.lock().unwrap();
    assert!(halts[0].contains("asked to wait 315360000 s"), "{halts:?}");
    assert!(client.stop.is_set());
    assert!(!log.in_doubt, "a rate-limit answer is not in doubt");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_halts_and_leaves_the_row_pending() {
    let client = client(true, vec![answer(403)]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    assert_eq!(step0(&client, &notes, &mut log).await.unwrap_err(), Stopped);
    assert_eq!(
        *notes.halts.lock().unwrap(),
        vec!["vendor `fake`: forbidden"]
    );
    assert!(client.stop.is_set());
    assert!(!log.in_doubt, "the vendor refused before acting");
}

#[tokio::test(start_paused = true)]
async fn an_unexpected_answer_halts_and_stays_in_doubt() {
    let client = client(true, vec![answer(418)]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    assert_eq!(step0(&client, &notes, &mut log).await.unwrap_err(), Stopped);
    let halts = notes.halts.lock().unwrap();
    assert!(
        halts[0].contains("unexpected answer") && halts[0].contains("HTTP 418"),
        "{halts:?}"
    );
    assert!(
        log.in_doubt,
        "the call may have acted: a resume reads first"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_handed_back_for_settling_where_the_vendor_can_read() {
    let client = client(true, vec![lost()]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    match step0(&client, &notes, &mut log).await {
        Ok(Answered::Lost(m)) => assert_eq!(m, "timed out"),
        other => panic!("{other:?}"),
    }
    assert!(log.in_doubt && log.lost_answer);
    assert_eq!(
        sent(&client).len(),
        1,
        "nothing sent again before the read-back"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_read_api_a_lost_answer_is_sent_again_and_marked() {
    let client = client(false, vec![lost(), lost(), lost()]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    let class = class_of(step0(&client, &notes, &mut log).await);
    assert_eq!(
        class,
        Class::Failed("gave up after 3 attempts: timed out".into())
    );
    assert!(
        log.lost_answer,
        "the caller says the link may already be removed"
    );
}

#[tokio::test(start_paused = true)]
async fn never_sent_calls_are_retried_then_halt_as_unreachable_without_doubt() {
    let client = client(true, vec![refused(), refused(), refused()]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    assert_eq!(step0(&client, &notes, &mut log).await.unwrap_err(), Stopped);
    let halts = notes.halts.lock().unwrap();
    assert!(
        halts[0].contains("unreachable: 3 attempts never reached it"),
        "{halts:?}"
    );
    assert!(!log.in_doubt, "nothing reached the vendor");
    assert_eq!(sent(&client).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn without_a_read_api_a_lost_then_refused_call_still_counts_as_lost() {
    // No read API: a lost answer is retried, and a later refusal does not erase it.
    let client = client(false, vec![lost(), refused(), answer(200)]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    assert_eq!(
        class_of(step0(&client, &notes, &mut log).await),
        Class::Unlinked
    );
    assert!(log.lost_answer);
    assert_eq!(log.attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn reads_are_not_journaled() {
    let client = client(true, vec![answer(404)]);
    let notes = Notes::default();
    let mut log = CallLog::new(false);
    let mut budget = 0;
    let answered = client
        .call(&notes, 7, &row(), &mut log, CallKind::Read, &mut budget)
        .await;
    assert_eq!(class_of(answered), Class::Absent("gone".into()));
    assert!(notes.intents.lock().unwrap().is_empty());
    assert!(!log.in_doubt);
}
