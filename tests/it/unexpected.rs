//! Unexpected answers halt, they are never outcomes (SPEC section 4, docs/vendors.md "Only the answers
//! listed lead to an outcome").
//!
//! The real binary against a scripted loopback server: for every vendor, an answer whose status
//! and body match no row of the vendor's table (a proxy's HTML page, a foreign 404, a 2xx with
//! another body) halts the run with exit 6, names the status, points at `base_url`, and leaves the
//! row pending, with no outcome in the report. The same holds for reads: `--check`, and the
//! read-back that settles a row left in doubt by a crash.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HTML: &str = "<!DOCTYPE html><html><head><title>404 Not Found</title></head>\
                    <body><h1>Not Found</h1><hr><center>nginx</center></body></html>";
const FA_USER: &str = "6f0a9b4e-2c1d-4e8f-9a3b-000000000001";
const FA_IDP: &str = "82339786-3dff-42a6-aac6-1f1ceecb6c46";

/// One vendor as these tests drive it: its job table, a one-row input, and its two calls.
struct Vendor {
    name: &'static str,
    table: &'static str,
    input: String,
    unlink: (&'static str, &'static str),
    read: Option<(&'static str, &'static str)>,
}

fn auth0() -> Vendor {
    Vendor {
        name: "auth0",
        table: "type = \"auth0\"\ntoken = \"${TEST_TOKEN}\"",
        input: "user_id,provider,identity_user_id\nauth0|u1,github,1\n".into(),
        unlink: ("DELETE", "/api/v2/users/auth0%7Cu1/identities/github/1"),
        read: Some(("GET", "/api/v2/users/auth0%7Cu1")),
    }
}

fn fusionauth() -> Vendor {
    Vendor {
        name: "fusionauth",
        table: "type = \"fusionauth\"\napi_key = \"k-123456\"",
        input: format!(
            "user_id,identity_provider_id,identity_provider_user_id\n{FA_USER},{FA_IDP},a\n"
        ),
        unlink: ("DELETE", "/api/identity-provider/link"),
        read: Some(("GET", "/api/identity-provider/link")),
    }
}

fn gigya() -> Vendor {
    Vendor {
        name: "gigya",
        table: "type = \"gigya\"\napi_key = \"ak\"\nuser_key = \"uk\"\nsecret = \"c2VjcmV0LXNlY3JldA==\"",
        input: "uid,provider\nUID1,facebook\n".into(),
        unlink: ("POST", "/socialize.removeConnection"),
        read: Some(("POST", "/accounts.getAccountInfo")),
    }
}

fn newspark() -> Vendor {
    Vendor {
        name: "newspark",
        table: "type = \"newspark\"",
        input: "vhost,uid,external_id_provider_name\n1,10,facebook\n".into(),
        unlink: ("POST", "/action/v2/unlinkaccount"),
        read: None,
    }
}

fn job(dir: &Path, uri: &str, v: &Vendor) -> PathBuf {
    write(dir, "in.csv", &v.input);
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "t"
[input]
path = "in.csv"
[output]
report = "report.csv"
[vendors.v]
{table}
base_url = "{uri}"
rate = 1000
burst = 1000
concurrency = 1
[retry]
max_attempts = 2
base_delay = "10ms"
max_delay = "50ms"
timeout = "5s"
"#,
            table = v.table
        ),
    )
}

/// An answer of `status` with `body` labelled `content_type` (none when empty).
fn answer(status: u16, content_type: &str, body: &str) -> ResponseTemplate {
    let t = ResponseTemplate::new(status);
    match content_type {
        "" if body.is_empty() => t,
        "" => t.set_body_string(body),
        _ => t.set_body_raw(body.as_bytes().to_vec(), content_type),
    }
}

/// The report's rows, or none when no report was written.
fn report_rows(path: &Path) -> Vec<Row> {
    if path.exists() {
        read_report(path)
    } else {
        Vec::new()
    }
}

/// A halt on an unexpected answer: exit 6, the status quoted, `base_url` named.
fn assert_unexpected_halt(run: &Run, status: u16, what: &str) {
    assert_eq!(run.code, 6, "{what}: exit 6\n{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("HTTP {status}")),
        "{what}: names the status\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("check `base_url`"),
        "{what}: suggests checking base_url\n{}",
        run.stderr
    );
}

fn assert_pending(job: &Path, what: &str) {
    let status = unlinker(&["status", job.to_str().unwrap()], &[("TEST_TOKEN", TOKEN)]);
    assert_eq!(status.code, 0, "{what}: {}", status.stderr);
    let pending = status
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("pending"))
        .unwrap_or_else(|| panic!("{what}: no pending line\n{}", status.stdout));
    assert!(
        pending.split_whitespace().nth(1) == Some("1"),
        "{what}: the row stays pending\n{}",
        status.stdout
    );
}

/// Run `v`'s one row against a server answering its unlink call with `reply`: the run halts, the
/// row has no outcome and stays pending, and the call was sent once.
async fn unlink_answered(v: &Vendor, status: u16, content_type: &str, body: &str) {
    unlink_answered_with(v, status, answer(status, content_type, body), body).await;
}

async fn unlink_answered_with(v: &Vendor, status: u16, reply: ResponseTemplate, body: &str) {
    let what = format!("{} unlink answered {status} {body:?}", v.name);
    let server = MockServer::start().await;
    Mock::given(method(v.unlink.0))
        .and(path(v.unlink.1))
        .respond_with(reply)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &server.uri(), v);
    let run = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_unexpected_halt(&run, status, &what);
    assert!(
        run.stderr.contains("vendor `v`"),
        "{what}: names the vendor\n{}",
        run.stderr
    );
    let rows = report_rows(&dir.path().join("report.csv"));
    assert!(rows.is_empty(), "{what}: no outcome row: {rows:?}");
    assert_pending(&job, &what);
    let sent = requests_with(&server, v.unlink.0).await;
    let unlinks = sent.iter().filter(|r| r.url.path() == v.unlink.1).count();
    assert_eq!(unlinks, 1, "{what}: halted at the first answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_unexpected_unlink_answers_halt() {
    let v = auth0();
    unlink_answered(&v, 404, "text/html", HTML).await;
    unlink_answered(&v, 404, "application/json", r#"{"foo":1}"#).await;
    // Auth0's own answer for a path it does not serve: a wrong base_url prefix, not a user.
    let route = r#"{"statusCode":404,"error":"Not Found","message":"Not Found"}"#;
    unlink_answered(&v, 404, "application/json", route).await;
    unlink_answered(&v, 200, "application/json", r#"{"foo":1}"#).await;
    unlink_answered(&v, 200, "text/html", HTML).await;
    unlink_answered(&v, 204, "", "").await;
    unlink_answered(&v, 418, "text/plain", "short and stout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusionauth_unexpected_unlink_answers_halt() {
    let v = fusionauth();
    unlink_answered(&v, 404, "text/html", HTML).await;
    unlink_answered(&v, 404, "application/json", r#"{"foo":1}"#).await;
    unlink_answered(&v, 200, "application/json", r#"{"foo":1}"#).await;
    unlink_answered(&v, 200, "text/html", HTML).await;
    unlink_answered(&v, 204, "", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigya_unexpected_unlink_answers_halt() {
    let v = gigya();
    unlink_answered(&v, 404, "text/html", HTML).await;
    unlink_answered(&v, 200, "application/json", r#"{"foo":1}"#).await;
    unlink_answered(&v, 200, "text/html", HTML).await;
    unlink_answered(&v, 200, "", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newspark_unexpected_unlink_answers_halt() {
    let v = newspark();
    unlink_answered(&v, 404, "text/html", HTML).await;
    unlink_answered(&v, 204, "", "").await;
    unlink_answered(&v, 400, "text/html", HTML).await;
    // A redirect without a Location says nothing about the unlink.
    unlink_answered(&v, 302, "text/html", HTML).await;
}

/// `run --dry-run --check` whose read is answered by `reply`: exit 6 and no `absent` row.
async fn check_answered(v: &Vendor, status: u16, content_type: &str, body: &str) {
    let what = format!("{} --check read answered {status} {body:?}", v.name);
    let (read_method, read_path) = v.read.expect("a vendor with a read API");
    let server = MockServer::start().await;
    Mock::given(method(read_method))
        .and(path(read_path))
        .respond_with(answer(status, content_type, body))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &server.uri(), v);
    let run = unlinker_async(run_args(&job, &["--dry-run", "--check"]), token_env()).await;
    assert_unexpected_halt(&run, status, &what);
    let rows = report_rows(&dir.path().join("report.dry-run.csv"));
    assert!(
        rows.iter().all(|r| r["outcome"] != "absent"),
        "{what}: never absent: {rows:?}"
    );
    assert!(rows.is_empty(), "{what}: no outcome row: {rows:?}");
    let sent = server.received_requests().await.unwrap_or_default();
    assert!(
        sent.iter().all(|r| r.url.path() == read_path),
        "{what}: only reads are sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_answered_by_a_page_halt_and_are_never_absent() {
    for v in [auth0(), fusionauth(), gigya()] {
        check_answered(&v, 200, "text/html", HTML).await;
        check_answered(&v, 404, "text/html", HTML).await;
        check_answered(&v, 200, "application/json", r#"{"foo":1}"#).await;
    }
}

/// A row left in doubt by a `kill -9` mid-call is settled by a read on resume; a read answered
/// by a page is not Auth0's answer: the run halts and the row is neither absent nor sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_in_doubt_row_read_back_answered_by_a_page_stays_pending() {
    for (status, body) in [(200, HTML), (404, HTML), (404, "")] {
        let what = format!("read-back answered {status} {body:?}");
        let v = auth0();
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string("[]")
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), &server.uri(), &v);
        let mut child = spawn_run(&job, Stdio::null());
        wait_for_requests(&server, 1).await;
        child.kill().unwrap();
        child.wait().unwrap();

        server.reset().await;
        let content_type = if body.is_empty() { "" } else { "text/html" };
        Mock::given(method("GET"))
            .respond_with(answer(status, content_type, body))
            .mount(&server)
            .await;
        let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
        assert_unexpected_halt(&resumed, status, &what);
        let rows = report_rows(&dir.path().join("report.csv"));
        assert!(rows.is_empty(), "{what}: no outcome row: {rows:?}");
        assert!(
            requests_with(&server, "DELETE").await.is_empty(),
            "{what}: not sent again before the vendor's state is known"
        );
        assert_pending(&job, &what);
    }
}

/// The peak resident set of a process (`VmHWM`, kB), while it runs.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Answer every connection with a 200 whose chunked body never ends: 50 MB of JSON-looking bytes,
/// then silence until the client goes away (or 20 s pass).
fn endless_body_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                      transfer-encoding: chunked\r\n\r\n",
                );
                let chunk = vec![b'['; 64 * 1024];
                let started = Instant::now();
                let mut sent = 0usize;
                while sent < 50 * 1024 * 1024 {
                    let framed =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if stream.write_all(&framed).is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
                // Hold the body open: a client that reads it all waits here with 50 MB in hand.
                let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                while started.elapsed() < Duration::from_secs(20) {
                    let mut buf = [0u8; 64];
                    if let Ok(0) = stream.read(&mut buf) {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn an_endless_body_halts_with_bounded_memory() {
    let uri = endless_body_server();
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &uri, &auth0());
    let mut child = Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .env("TEST_TOKEN", TOKEN)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = peak_rss_kb(pid) {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after 30 s; peak RSS {peak} kB");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("HTTP 200"), "{stderr}");
    assert!(stderr.contains("check `base_url`"), "{stderr}");
    assert!(peak > 0, "VmHWM was read");
    assert!(
        peak < 60 * 1024,
        "peak RSS {peak} kB: the body is read at most 1 MiB"
    );
    assert!(report_rows(&dir.path().join("report.csv")).is_empty());
}

/// SPEC "Waits have bounds": a vendor naming a wait longer than `retry.max_rate_limit_wait` (ten
/// years, or more than any clock holds) halts the run with exit 6 naming it, at once; it neither
/// panics nor pauses the vendor for the time named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_beyond_the_bound_halts_at_once() {
    for (header, value) in [
        ("retry-after", "315360000"),
        ("retry-after", "99999999999999999999"),
        ("retry-after", "1e300"),
        ("x-ratelimit-reset", "99999999999999999999"),
    ] {
        let what = format!("{header}: {value}");
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .respond_with(ResponseTemplate::new(429).insert_header(header, value))
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let mut v = auth0();
        v.input = rows_input(3);
        let job = job(dir.path(), &server.uri(), &v);
        let started = Instant::now();
        let run = tokio::task::spawn_blocking(move || run_within(&job, Duration::from_secs(20)))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: still waiting after 20 s"));
        assert_eq!(run.code, 6, "{what}\n{}", run.stderr);
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        assert!(
            report_rows(&dir.path().join("report.csv")).is_empty(),
            "{what}: rows stay pending"
        );
    }
}

/// `unlinker run JOB`, killed if it has not ended within `deadline` (then `None`).
fn run_within(job: &Path, deadline: Duration) -> Option<Run> {
    let mut child = Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .env("TEST_TOKEN", TOKEN)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap().into())
}
