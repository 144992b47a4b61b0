//! Auth0 end to end: the real binary against a scripted HTTP server on 127.0.0.1.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn csv_rows(rows: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("user_id,provider,identity_user_id\n");
    for (u, p, i) in rows {
        s.push_str(&format!("{u},{p},{i}\n"));
    }
    s
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_request_is_encoded_and_carries_the_bearer_token() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-auth0-requestid", "req-77")
                .set_body_string("[]"),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        &csv_rows(&[("auth0|5f7c", "google-oauth2", "\"12 3/4+x\"")]),
    );
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let run = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].url.path(),
        "/api/v2/users/auth0%7C5f7c/identities/google-oauth2/12%203%2F4%2Bx"
    );
    assert_eq!(
        reqs[0].headers.get("authorization").unwrap(),
        &format!("Bearer {TOKEN}")
    );
    assert!(reqs[0].body.is_empty());

    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["outcome"], "unlinked");
    assert_eq!(r["key"], "auth0|5f7c/google-oauth2/12 3/4+x");
    assert_eq!(r["http_status"], "200");
    assert_eq!(r["request_id"], "req-77");
    assert_eq!(r["attempts"], "1");
    assert!(
        r["request"].starts_with("DELETE http://127.0.0.1:"),
        "{}",
        r["request"]
    );
    assert!(!r["request"].contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_class_lands_in_the_right_outcome() {
    let server = MockServer::start().await;
    let answer = |user: &str, status: u16, body: &str| {
        Mock::given(method("DELETE"))
            .and(path_regex(format!("^/api/v2/users/auth0%7C{user}/")))
            .respond_with(ResponseTemplate::new(status).set_body_string(body.to_string()))
    };
    answer("ok", 200, "[]").mount(&server).await;
    answer("gone", 404, r#"{"statusCode":404,"error":"Not Found","message":"The user does not exist.","errorCode":"inexistent_user"}"#).mount(&server).await;
    answer("bad", 400, r#"{"statusCode":400,"error":"Bad Request","message":"Invalid identity","errorCode":"invalid_body"}"#).mount(&server).await;
    answer("timeout408", 408, "").mount(&server).await;
    answer("conflict", 409, "").mount(&server).await;
    answer("down", 503, "unavailable").mount(&server).await;
    // An undocumented status (418) halts the run instead: tests/unexpected.rs.

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        &csv_rows(&[
            ("auth0|ok", "github", "1"),
            ("auth0|gone", "github", "2"),
            ("auth0|bad", "github", "3"),
            ("auth0|timeout408", "github", "4"),
            ("auth0|conflict", "github", "5"),
            ("auth0|down", "github", "6"),
        ]),
    );
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "max_attempts = 3");
    let run = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(run.code, 3, "failed rows → exit 3\n{}", run.stderr);

    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 6);
    let outcome = |line: u64| rows[&line]["outcome"].as_str();
    assert_eq!(outcome(2), "unlinked");
    assert_eq!(outcome(3), "absent");
    assert!(rows[&3]["message"].contains("The user does not exist."));
    assert_eq!(rows[&3]["vendor_code"], "inexistent_user");
    assert_eq!(outcome(4), "failed");
    assert_eq!(rows[&4]["vendor_code"], "invalid_body");
    assert_eq!(rows[&4]["message"], "Invalid identity");
    assert_eq!(rows[&4]["attempts"], "1", "400 is final: no retry");
    for line in [5, 6, 7] {
        assert_eq!(outcome(line), "failed", "line {line}");
        assert_eq!(
            rows[&line]["attempts"], "3",
            "retried up to max_attempts: line {line}"
        );
        assert!(
            rows[&line]["message"].starts_with("gave up after 3 attempts"),
            "{}",
            rows[&line]["message"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        &csv_rows(&[("auth0|a", "github", "1")]),
    );
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let run = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows[0]["outcome"], "unlinked");
    assert_eq!(rows[0]["attempts"], "3");
    assert_eq!(requests(&server).await.len(), 3);
}

/// Answers the first request with a rate-limit answer and records when every request arrived.
struct LimitOnce {
    times: Arc<Mutex<Vec<Instant>>>,
    /// Built when the request arrives, so times in it are relative to that moment.
    limited: fn() -> ResponseTemplate,
}

impl Respond for LimitOnce {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        let mut times = self.times.lock().unwrap();
        times.push(Instant::now());
        if times.len() == 1 {
            (self.limited)()
        } else {
            ResponseTemplate::new(200).set_body_string("[]")
        }
    }
}

async fn rate_limit_pause(limited: fn() -> ResponseTemplate, pause: Duration) {
    let server = MockServer::start().await;
    let times = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("DELETE"))
        .respond_with(LimitOnce {
            times: times.clone(),
            limited,
        })
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        &csv_rows(&[
            ("auth0|a", "github", "1"),
            ("auth0|b", "github", "2"),
            ("auth0|c", "github", "3"),
        ]),
    );
    // One call at a time, so the pause is the only thing between the first and second call.
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "max_attempts = 1").to_path_buf();
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("concurrency = 8", "concurrency = 1");
    std::fs::write(&job, text).unwrap();
    let run = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(
        run.code, 0,
        "rate-limit answers do not use up attempts\n{}",
        run.stderr
    );
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 4, "three rows, one of them twice");
    let gap = times[1] - times[0];
    // Measured against a tolerance (epoch-second resets are rounded by the server).
    assert!(
        gap >= pause - Duration::from_millis(50),
        "no request during the pause: {gap:?}"
    );
    assert!(
        gap < pause + Duration::from_secs(2),
        "resumed promptly: {gap:?}"
    );
    let rows = read_report(&dir.path().join("report.csv"));
    assert!(rows.iter().all(|r| r["outcome"] == "unlinked"));
    let summary = run.stderr;
    assert!(summary.contains(", 1 rate-limit answer\n"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_pauses_the_vendor() {
    rate_limit_pause(
        || ResponseTemplate::new(429).insert_header("retry-after", "2"),
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_ratelimit_reset_pauses_the_vendor() {
    // The reset is whole epoch seconds, 3 s after the answer: the pause is between 2 and 3 s.
    rate_limit_pause(
        || {
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3;
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-limit", "10")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
        },
        Duration::from_secs(2),
    )
    .await;
}

/// A token endpoint that hands out `T1`, `T2`, ... and counts calls.
struct Tokens {
    calls: Arc<AtomicU32>,
    expires_in: u64,
}

impl Respond for Tokens {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body).to_string();
        assert!(body.contains("grant_type=client_credentials"), "{body}");
        assert!(body.contains("client_secret=cs-8d1e2f"), "{body}");
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": format!("T{n}"), "expires_in": self.expires_in, "token_type": "Bearer"
        }))
    }
}

fn client_credentials_job(
    dir: &std::path::Path,
    uri: &str,
    rows: usize,
    extra: &str,
) -> std::path::PathBuf {
    let mut input = String::from("user_id,provider,identity_user_id\n");
    for i in 0..rows {
        input.push_str(&format!("auth0|u{i},github,{i}\n"));
    }
    write(dir, "in.csv", &input);
    let job = auth0_job(dir, uri, "in.csv", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(
            "token = \"${TEST_TOKEN}\"",
            "client_id = \"cid\"\nclient_secret = \"${TEST_SECRET}\"",
        )
        .replace(
            "rate = 1000",
            &format!("rate = {}", if extra.is_empty() { "1000" } else { extra }),
        )
        .replace(
            "burst = 1000",
            if extra.is_empty() {
                "burst = 1000"
            } else {
                "burst = 1"
            },
        );
    std::fs::write(&job, text).unwrap();
    job
}

fn cc_env() -> Vec<(String, String)> {
    vec![("TEST_SECRET".into(), "cs-8d1e2f".into())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_is_fetched_once_for_many_rows() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(Tokens {
            calls: calls.clone(),
            expires_in: 86400,
        })
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let job = client_credentials_job(dir.path(), &server.uri(), 40, "");
    let run = unlinker_async(run_args(&job, &[]), cc_env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one token for all rows");
    let deletes: Vec<Request> = requests(&server)
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 40);
    assert!(
        deletes
            .iter()
            .all(|r| r.headers.get("authorization").unwrap() == "Bearer T1")
    );
    assert_eq!(read_report(&dir.path().join("report.csv")).len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_is_refreshed_before_expiry() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(Tokens {
            calls: calls.clone(),
            expires_in: 1,
        })
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    // 30 rows at 10/s take about 3 s: a 1 s token must be refreshed (at 90% of its life).
    let job = client_credentials_job(dir.path(), &server.uri(), 30, "10");
    let run = unlinker_async(run_args(&job, &[]), cc_env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let n = calls.load(Ordering::SeqCst);
    assert!(
        (3..=6).contains(&n),
        "refreshed about once a second, got {n} fetches"
    );
}

/// Refuses the first token with 401; accepts any later one.
struct RefuseFirstToken;

impl Respond for RefuseFirstToken {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if req.headers.get("authorization").unwrap() == "Bearer T1" {
            ResponseTemplate::new(401)
                .set_body_string(r#"{"statusCode":401,"message":"Expired token"}"#)
        } else {
            ResponseTemplate::new(200).set_body_string("[]")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_the_token_once_then_succeeds() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(Tokens {
            calls: calls.clone(),
            expires_in: 86400,
        })
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(RefuseFirstToken)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let job = client_credentials_job(dir.path(), &server.uri(), 1, "");
    let run = unlinker_async(run_args(&job, &[]), cc_env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows[0]["outcome"], "unlinked");
}

async fn halts_on(status: u16, cc: bool) {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(Tokens {
            calls: calls.clone(),
            expires_in: 86400,
        })
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_string(r#"{"message":"nope","errorCode":"insufficient_scope"}"#),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (job, env) = if cc {
        (
            client_credentials_job(dir.path(), &server.uri(), 20, ""),
            cc_env(),
        )
    } else {
        let mut input = String::from("user_id,provider,identity_user_id\n");
        for i in 0..20 {
            input.push_str(&format!("auth0|u{i},github,{i}\n"));
        }
        write(dir.path(), "in.csv", &input);
        (
            auth0_job(dir.path(), &server.uri(), "in.csv", ""),
            token_env(),
        )
    };
    let run = unlinker_async(run_args(&job, &[]), env).await;
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(run.stderr.contains("halted"), "{}", run.stderr);
    assert!(run.stderr.contains(&status.to_string()), "{}", run.stderr);
    // The refused rows stay pending: nothing is recorded as failed.
    let rows = read_report(&dir.path().join("report.csv"));
    assert!(rows.is_empty(), "{rows:?}");
    let deletes = requests(&server)
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .count();
    // Concurrency is 8: one wave with the refused token (and one with its replacement), then stop.
    let bound = if cc { 17 } else { 9 };
    assert!(
        deletes <= bound,
        "stopped starting calls at once: {deletes} calls"
    );
    if cc && status == 401 {
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one refresh after the 401, then halt"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halts_on_401_with_a_static_token() {
    halts_on(401, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halts_on_401_after_one_refresh() {
    halts_on(401, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halts_on_403() {
    halts_on(403, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_halt_the_run() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(r#"{"statusCode":400,"error":"Bad Request","message":"bad"}"#),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("user_id,provider,identity_user_id\n");
    for i in 0..50 {
        input.push_str(&format!("auth0|u{i},github,{i}\n"));
    }
    write(dir.path(), "in.csv", &input);
    let job = auth0_job(
        dir.path(),
        &server.uri(),
        "in.csv",
        "[halt]\nmax_consecutive_failures = 5",
    );
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("concurrency = 8", "concurrency = 1");
    std::fs::write(&job, text).unwrap();
    let run = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.stderr.contains("5 consecutive rows failed"),
        "{}",
        run.stderr
    );
    let rows = read_report(&dir.path().join("report.csv"));
    assert!(
        (5..=7).contains(&rows.len()),
        "stopped near the threshold: {}",
        rows.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_not_even_a_token_request() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let job = client_credentials_job(dir.path(), &server.uri(), 5, "");
    let run = unlinker_async(run_args(&job, &["--dry-run"]), cc_env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        requests(&server).await.is_empty(),
        "a dry run makes no network call"
    );
    assert!(!dir.path().join("report.csv").exists());
    assert!(
        !dir.path().join("report.csv.ckpt").exists(),
        "a dry run never writes the checkpoint"
    );
    let rows = read_report(&dir.path().join("report.dry-run.csv"));
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["outcome"] == "dry_run"));
    assert!(
        rows[0]["request"].starts_with("DELETE http://"),
        "{}",
        rows[0]["request"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_any_output() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(Tokens {
            calls,
            expires_in: 86400,
        })
        .mount(&server)
        .await;
    // Failures whose messages echo the request, to tempt a leak.
    Mock::given(method("DELETE"))
        .and(path_regex("u1/"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(
                r#"{"statusCode":400,"message":"client_secret cs-8d1e2f rejected"}"#,
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let job = client_credentials_job(dir.path(), &server.uri(), 4, "");
    let summary = dir.path().join("summary.json");
    let run = unlinker_async(
        run_args(&job, &["-vv", "--summary", summary.to_str().unwrap()]),
        cc_env(),
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let mut outputs = vec![run.stdout, run.stderr];
    for f in ["report.csv", "report.csv.ckpt", "summary.json"] {
        outputs.push(std::fs::read_to_string(dir.path().join(f)).unwrap_or_default());
    }
    assert!(outputs[4].contains("\"unlinked\": 3"), "{}", outputs[4]);
    for out in &outputs {
        assert!(!out.contains("cs-8d1e2f"), "client secret leaked:\n{out}");
        assert!(!out.contains("Bearer T1"), "token leaked:\n{out}");
    }
    let help = unlinker_async(vec!["run".into(), "--help".into()], cc_env()).await;
    assert!(!help.stdout.contains("cs-8d1e2f"));
}

/// A timeout after sending is a lost answer: before each retry (and before giving up) the row is
/// settled by reading the user; here the link is still there, so the DELETE is sent again and
/// the row finally fails, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_settled_by_read_back_then_retried_then_fail_with_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"user_id":"auth0|a","identities":[{"provider":"auth0","user_id":"a"},{"provider":"github","user_id":"1"}]}"#,
        ))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        &csv_rows(&[("auth0|a", "github", "1")]),
    );
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "max_attempts = 2");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("timeout = \"5s\"", "timeout = \"300ms\"");
    std::fs::write(&job, text).unwrap();
    let run = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows[0]["outcome"], "failed");
    assert_eq!(
        rows[0]["attempts"], "4",
        "two DELETEs, each followed by a read"
    );
    assert!(
        rows[0]["message"].contains("gave up after 2 attempts: timed out")
            && rows[0]["message"].contains("read-back shows the link still present"),
        "{}",
        rows[0]["message"]
    );
    assert_eq!(requests_with(&server, "DELETE").await.len(), 2);
    assert_eq!(requests_with(&server, "GET").await.len(), 2);
}

/// Connection refused never reached the vendor: retried, then the vendor is unreachable: a halt
/// (exit 6) with the row pending, never `failed`.
#[test]
fn connection_errors_are_retried_then_halt_as_unreachable() {
    // A port nothing listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        &csv_rows(&[("auth0|a", "github", "1")]),
    );
    let job = auth0_job(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        "in.csv",
        "max_attempts = 3",
    );
    let run = unlinker(
        &["run", job.to_str().unwrap(), "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("unreachable: 3 attempts never reached it")
            && run.stderr.contains("connection failed"),
        "{}",
        run.stderr
    );
    assert!(read_report(&dir.path().join("report.csv")).is_empty());
}

/// Off a terminal (cron), progress is a log line every 10 s on stderr; stdout stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_terminal_progress_is_a_line_every_10_seconds() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("user_id,provider,identity_user_id\n");
    for i in 0..23 {
        input.push_str(&format!("auth0|u{i},github,{i}\n"));
    }
    write(dir.path(), "in.csv", &input);
    // 23 rows at 2/s (burst 1) take about 11 s: exactly one progress line.
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("rate = 1000", "rate = 2")
        .replace("burst = 1000", "burst = 1");
    std::fs::write(&job, text).unwrap();
    // Without --no-progress: stderr is a pipe, not a terminal.
    let run = unlinker_async(vec!["run".into(), job.display().to_string()], token_env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing on stdout for cron to mail");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("progress:"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("/23 rows ("), "{}", lines[0]);
    assert!(lines[0].contains("rate-limit answers"), "{}", lines[0]);
}
