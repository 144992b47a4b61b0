//! Checkpoints and resume: --limit, --retry-failed, already complete, changed input, --fresh, the
//! lock, SIGTERM drain, and in-doubt rows settled by read-back — the real binary, real servers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use std::collections::BTreeSet;
use wiremock::matchers::{method, path, path_regex};

use wiremock::{Mock, MockServer, Request, ResponseTemplate};

async fn deletes(server: &MockServer) -> usize {
    requests_with(server, "DELETE").await.len()
}

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_stops_cleanly_and_the_next_run_resumes() {
    let server = ok_server().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(10));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");

    let first = unlinker_async(run_args(&job, &["--limit", "3"]), token_env()).await;
    assert_eq!(first.code, 4, "rows remain → exit 4\n{}", first.stderr);
    assert!(first.stderr.contains("--limit 3"), "{}", first.stderr);
    assert_eq!(read_report(&dir.path().join("report.csv")).len(), 3);
    assert_eq!(deletes(&server).await, 3);

    let second = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let rows = read_report(&dir.path().join("report.csv"));
    let lines: std::collections::BTreeSet<u64> =
        rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    assert_eq!(rows.len(), 10, "every line exactly once");
    assert_eq!(lines, (2..=11).collect());
    assert_eq!(deletes(&server).await, 10, "no row sent twice");

    // Already complete: nothing is sent, exit 0, the recorded counts are reported.
    let third = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(
        third.stderr.contains("already complete"),
        "{}",
        third.stderr
    );
    assert!(third.stderr.contains("unlinked 10"), "{}", third.stderr);
    assert_eq!(deletes(&server).await, 10);

    let status = unlinker(&["status", job.to_str().unwrap()], &[("TEST_TOKEN", TOKEN)]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("unlinked   10"), "{}", status.stdout);
    assert!(status.stdout.contains("pending    0"), "{}", status.stdout);
    assert!(
        status.stdout.contains("state      complete"),
        "{}",
        status.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_reattempts_failed_rows_and_keeps_one_line_each() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path_regex("auth0%7Cu[13]/"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(r#"{"statusCode":400,"message":"temporarily refused"}"#),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(5));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let first = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(first.code, 3, "{}", first.stderr);

    // Complete with failed rows: a plain run sends nothing and still exits 3.
    let again = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert!(
        again.stderr.contains("already complete"),
        "{}",
        again.stderr
    );
    assert_eq!(deletes(&server).await, 5);

    server.reset().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let retried = unlinker_async(run_args(&job, &["--retry-failed"]), token_env()).await;
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    assert_eq!(
        deletes(&server).await,
        2,
        "only the two failed rows are sent again"
    );
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 5, "each line once: {rows:?}");
    assert!(rows.values().all(|r| r["outcome"] == "unlinked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_input_is_refused_and_fresh_starts_over() {
    let server = ok_server().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(3));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    assert_eq!(
        unlinker_async(run_args(&job, &["--limit", "1"]), token_env())
            .await
            .code,
        4
    );

    write(dir.path(), "in.csv", &rows_input(4));
    let refused = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("changed"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--fresh"),
        "says how to start over: {}",
        refused.stderr
    );
    assert_eq!(deletes(&server).await, 1);

    let fresh = unlinker_async(run_args(&job, &["--fresh"]), token_env()).await;
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert_eq!(read_report(&dir.path().join("report.csv")).len(), 4);
    let kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("report.")
                && n != "report.csv"
                && !n.ends_with(".lock")
                && n != "report.csv.ckpt"
                // The runs log goes on across --fresh: it is history, never archived.
                && n != "report.csv.runs.jsonl"
        })
        .collect();
    assert_eq!(
        kept.len(),
        2,
        "old report and checkpoint kept, renamed: {kept:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_exits_5_naming_the_holder_and_a_killed_holder_leaves_no_stale_lock() {
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
    write(dir.path(), "in.csv", &rows_input(2));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let mut holder = spawn_run(&job, Stdio::null());
    wait_for_requests(&server, 1).await;
    let t = Instant::now();
    let second = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(second.code, 5, "{}", second.stderr);
    assert!(t.elapsed() < Duration::from_secs(5), "exits at once");
    assert!(
        second.stderr.contains(&holder.id().to_string()),
        "names the holder: {}",
        second.stderr
    );

    holder.kill().unwrap(); // SIGKILL: the kernel drops the lock
    holder.wait().unwrap();
    server.reset().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"identities": []})),
        )
        .mount(&server)
        .await;
    let after = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(after.code, 0, "no stale lock: {}", after.stderr);
}

/// A killed run whose calls were in flight leaves its rows in doubt; the next run reads the
/// vendor's state: a link already gone is `absent` (settled, not sent again), one still there is
/// sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_in_doubt_rows_are_settled_by_read_back() {
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
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|gone,github,1\nauth0|still,github,2\n",
    );
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let mut child = spawn_run(&job, Stdio::null());
    wait_for_requests(&server, 2).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let status = unlinker(&["status", job.to_str().unwrap()], &[("TEST_TOKEN", TOKEN)]);
    assert!(status.stdout.contains("in doubt   2"), "{}", status.stdout);

    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/auth0%7Cgone"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "user_id": "auth0|gone", "identities": [{"provider": "auth0", "user_id": "gone"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/auth0%7Cstill"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "user_id": "auth0|still", "identities": [{"provider": "auth0", "user_id": "still"}, {"provider": "github", "user_id": 2}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let sent: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(
        sent,
        vec!["/api/v2/users/auth0%7Cstill/identities/github/2"]
    );
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[&2]["outcome"], "absent");
    assert!(
        rows[&2]["message"].contains("settled by read-back"),
        "{}",
        rows[&2]["message"]
    );
    assert_eq!(rows[&3]["outcome"], "unlinked");
    assert!(
        rows[&3]["message"].contains("read-back"),
        "{}",
        rows[&3]["message"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_records_them_and_exits_4() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("[]")
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(40));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let child = spawn_run(&job, Stdio::piped());
    wait_for_requests(&server, 8).await;
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = deletes(&server).await;
    assert_eq!(sent, 8, "no call started after the signal");
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(
        rows.len(),
        8,
        "every in-flight call finished and was recorded"
    );
    assert!(rows.iter().all(|r| r["outcome"] == "unlinked"));
    let status = unlinker(&["status", job.to_str().unwrap()], &[("TEST_TOKEN", TOKEN)]);
    assert!(status.stdout.contains("in doubt   0"), "{}", status.stdout);
    assert!(status.stdout.contains("pending    32"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_never_touches_the_checkpoint() {
    let server = ok_server().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(3));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    assert_eq!(
        unlinker_async(run_args(&job, &["--limit", "1"]), token_env())
            .await
            .code,
        4
    );
    let ckpt = dir.path().join("report.csv.ckpt");
    let before = std::fs::read(&ckpt).unwrap();
    let dry = unlinker_async(run_args(&job, &["--dry-run"]), token_env()).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
    assert_eq!(
        read_report(&dir.path().join("report.dry-run.csv")).len(),
        3,
        "a dry run does not read the checkpoint either"
    );
    assert_eq!(read_report(&dir.path().join("report.csv")).len(), 1);
}

/// Start a run whose calls hang, wait until `n` calls are in flight, kill it with SIGKILL.
async fn kill_with_calls_in_flight(server: &MockServer, job: &Path, n: usize) {
    let mut child = spawn_run(job, Stdio::null());
    wait_for_requests(server, n).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

fn vendor_job(dir: &Path, uri: &str, input: &str, vendor: &str) -> std::path::PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "t"
[input]
path = "{input}"
[output]
report = "report.csv"
[vendors.v]
{vendor}
base_url = "{uri}"
rate = 1000
burst = 1000
[retry]
base_delay = "10ms"
max_delay = "100ms"
timeout = "60s"
"#
        ),
    )
}

async fn methods_and_paths(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusionauth_in_doubt_rows_are_settled_by_read_back() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let gone = "11111111-1111-4111-8111-111111111111";
    let still = "22222222-2222-4222-8222-222222222222";
    let idp = "82339786-3dff-42a6-aac6-1f1ceecb6c46";
    write(
        dir.path(),
        "in.csv",
        &format!(
            "user_id,identity_provider_id,identity_provider_user_id\n{gone},{idp},a\n{still},{idp},b\n"
        ),
    );
    let job = vendor_job(
        dir.path(),
        &server.uri(),
        "in.csv",
        "type = \"fusionauth\"\napi_key = \"k-123456\"",
    );
    kill_with_calls_in_flight(&server, &job, 2).await;

    server.reset().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::query_param("userId", gone))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::query_param("userId", still))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"identityProviderLink":{}}"#))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let deletes: Vec<Request> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .collect();
    assert_eq!(
        deletes.len(),
        1,
        "only the link still present is sent again"
    );
    assert!(deletes[0].url.query().unwrap().contains(still));
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows[&2]["outcome"], "absent");
    assert!(rows[&2]["message"].contains("settled by read-back"));
    assert_eq!(rows[&3]["outcome"], "unlinked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigya_in_doubt_rows_are_settled_by_read_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/socialize.removeConnection"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "uid,provider\nUIDgone,facebook\nUIDstill,twitter\n",
    );
    let job = vendor_job(
        dir.path(),
        &server.uri(),
        "in.csv",
        "type = \"gigya\"\napi_key = \"ak\"\nuser_key = \"uk\"\nsecret = \"c2VjcmV0LXNlY3JldA==\"",
    );
    kill_with_calls_in_flight(&server, &job, 2).await;

    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/accounts.getAccountInfo"))
        .and(wiremock::matchers::body_string_contains("UID=UIDgone"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "errorCode": 0, "callId": "c1", "identities": [{"provider": "site"}, {"provider": "google"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/accounts.getAccountInfo"))
        .and(wiremock::matchers::body_string_contains("UID=UIDstill"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "errorCode": 0, "callId": "c2", "identities": [{"provider": "site"}, {"provider": "twitter"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/socialize.removeConnection"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"errorCode": 0, "callId": "c3"})),
        )
        .mount(&server)
        .await;
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let calls = methods_and_paths(&server).await;
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.ends_with("removeConnection"))
            .count(),
        1,
        "only the connection still present is removed again: {calls:?}"
    );
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows[&2]["outcome"], "absent");
    assert!(rows[&2]["message"].contains("settled by read-back"));
    assert_eq!(rows[&3]["outcome"], "unlinked");
    assert_eq!(rows[&3]["request_id"], "c3");
}

/// Newspark has no read API: an in-doubt row is sent again; if that is refused, the message says
/// the first attempt may already have removed the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newspark_in_doubt_rows_are_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", "/unlinker/done")
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "vhost,uid,external_id_provider_name\n1,10,facebook\n1,11,facebook\n",
    );
    let job = vendor_job(dir.path(), &server.uri(), "in.csv", "type = \"newspark\"");
    kill_with_calls_in_flight(&server, &job, 2).await;

    server.reset().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_string_contains("uid=10"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", "/unlinker/failed?error=not_linked"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/unlinker/done"))
        .mount(&server)
        .await;
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 3, "{}", resumed.stderr);
    assert_eq!(
        methods_and_paths(&server).await.len(),
        2,
        "both rows sent again, no read"
    );
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows[&2]["outcome"], "failed");
    assert!(
        rows[&2]["message"].contains("may already have removed the link"),
        "{}",
        rows[&2]["message"]
    );
    assert_eq!(rows[&3]["outcome"], "unlinked");
}

/// Auth0 `delete_unlinked_user`: killed between the unlink and the delete, the resumed run makes
/// only the second step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_crash_between_the_two_steps_resumes_at_the_second() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path_regex("/identities/"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/v2/users/github%7C1"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|a,github,1\n",
    );
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "token = \"${TEST_TOKEN}\"",
        "token = \"${TEST_TOKEN}\"\ndelete_unlinked_user = true",
    );
    std::fs::write(&job, text).unwrap();
    kill_with_calls_in_flight(&server, &job, 2).await;
    assert_eq!(
        methods_and_paths(&server).await,
        vec![
            "DELETE /api/v2/users/auth0%7Ca/identities/github/1",
            "DELETE /api/v2/users/github%7C1"
        ]
    );

    server.reset().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(
        methods_and_paths(&server).await,
        vec!["DELETE /api/v2/users/github%7C1"]
    );
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "unlinked");
    assert_eq!(rows[0]["http_status"], "204");
}

/// A torn last journal record (the process died mid-write) is ignored and the job resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_journal_record_is_ignored() {
    let server = ok_server().await;
    // The torn record's row is in doubt and settled by a read: answer it as Auth0 would once the
    // identity is gone (a bare 404 is not Auth0's answer, and would halt the run).
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"user_id":"auth0|u","identities":[{"provider":"auth0","user_id":"u"}]}"#,
        ))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(4));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    assert_eq!(
        unlinker_async(run_args(&job, &["--limit", "2"]), token_env())
            .await
            .code,
        4
    );
    let ckpt = dir.path().join("report.csv.ckpt");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    // Cut the last record in half.
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    bytes.truncate(last_start + (bytes.len() - last_start) / 2);
    std::fs::write(&ckpt, &bytes).unwrap();
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let rows = read_report(&dir.path().join("report.csv"));
    let lines: BTreeSet<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    assert_eq!(rows.len(), 4, "each line once: {rows:?}");
    assert_eq!(lines, (2..=5).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_the_job_stays_resumable() {
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
    write(dir.path(), "in.csv", &rows_input(3));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let child = spawn_run(&job, Stdio::piped());
    wait_for_requests(&server, 3).await;
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "exits at once, not after the 30 s calls"
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "identities": [{"provider": "github", "user_id": "0"}, {"provider": "github", "user_id": "1"}, {"provider": "github", "user_id": "2"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(read_report(&dir.path().join("report.csv")).len(), 3);
}
