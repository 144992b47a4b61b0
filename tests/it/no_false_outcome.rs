//! "No false outcome" (SPEC section 4): lost answers are settled by read-back, an unreachable
//! vendor halts without failing rows, named waits are bounded, a broken stderr changes nothing,
//! SIGHUP drains like SIGTERM, and an internal failure never ends as "complete".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const ENV: &[(&str, &str)] = &[
    ("A0_TOKEN", "sim-token"),
    ("FA_KEY", "sim-fusionauth-key"),
    ("GIGYA_SECRET", "c2ltLXNlY3JldC1rZXk="),
    ("NS_COOKIE", "session=sim-session"),
    ("NS_FORM_TOKEN", "form-token-1"),
    ("TEST_TOKEN", TOKEN),
];

const IDP: &str = "82339786-3dff-42a6-aac6-1f1ceecb6c46";

fn fa_user(i: usize) -> String {
    format!("6f0a9b4e-2c1d-4e8f-9a3b-{i:012x}")
}

/// A one-vendor job; `retry` is the body of the `[retry]` table.
fn job(dir: &Path, vendor_table: &str, retry: &str) -> PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "nfo"
[input]
path = "in.csv"
[output]
report = "report.csv"
{vendor_table}
[retry]
base_delay = "10ms"
max_delay = "50ms"
timeout = "5s"
{retry}
"#
        ),
    )
}

fn table(kind: &str, url: &str) -> String {
    let creds = match kind {
        "auth0" => "token = \"${A0_TOKEN}\"".to_string(),
        "fusionauth" => "api_key = \"${FA_KEY}\"".to_string(),
        "gigya" => "api_key = \"sim-api-key\"\nuser_key = \"sim-user-key\"\nsecret = \"${GIGYA_SECRET}\"".to_string(),
        "newspark" => "[vendors.v.headers]\nCookie = \"${NS_COOKIE}\"\n[vendors.v.form]\nformToken = \"${NS_FORM_TOKEN}\"".to_string(),
        _ => unreachable!(),
    };
    format!(
        "[vendors.v]\ntype = \"{kind}\"\nbase_url = \"{url}\"\nrate = 500\nburst = 500\nconcurrency = 4\n{creds}\n"
    )
}

/// `n` rows of `kind`'s input; every link exists in a simulator started with `--all-linked`.
fn input(kind: &str, n: usize) -> String {
    let mut s = match kind {
        "auth0" => "user_id,provider,identity_user_id\n",
        "fusionauth" => "user_id,identity_provider_id,identity_provider_user_id\n",
        "gigya" => "uid,provider\n",
        "newspark" => "vhost,uid,external_id_provider_name\n",
        _ => unreachable!(),
    }
    .to_string();
    for i in 0..n {
        s.push_str(&match kind {
            "auth0" => format!("auth0|u{i},github,{i}\n"),
            "fusionauth" => format!("{},{IDP},fb-{i}\n", fa_user(i)),
            "gigya" => format!("uid-{i},facebook\n"),
            "newspark" => format!("7,{},facebook\n", 1000 + i),
            _ => unreachable!(),
        });
    }
    s
}

fn run(job: &Path, extra: &[&str]) -> Run {
    let job = job.display().to_string();
    let mut args = vec!["run", job.as_str(), "--no-progress"];
    args.extend_from_slice(extra);
    unlinker(&args, ENV)
}

fn report(dir: &Path) -> BTreeMap<u64, Row> {
    let path = dir.join("report.csv");
    if path.exists() {
        by_line(&read_report(&path))
    } else {
        BTreeMap::new()
    }
}

/// With half of all answers lost after the change was applied, no row is `failed` and no row is
/// a plain `absent`: every link the run removed is `unlinked`, or `absent` saying that this run
/// most likely removed it; the simulator removed each link exactly once. With and without
/// retries left.
#[test]
fn lost_answers_are_settled_by_read_back_for_every_vendor_with_a_read_api() {
    for kind in ["auth0", "fusionauth", "gigya"] {
        for max_attempts in [1, 6] {
            let sim = Sim::start(&["--all-linked", "--drop-rate", "0.5", "--fault-seed", "11"]);
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "in.csv", &input(kind, 24));
            let job = job(
                dir.path(),
                &table(kind, &sim.url),
                &format!("max_attempts = {max_attempts}"),
            );
            // Reads can be dropped too; each retry is a fresh read, so a few runs may be needed
            // when a read runs out of attempts (it then fails the row: not the case here).
            let out = run(&job, &[]);
            let case = format!("{kind}, max_attempts = {max_attempts}");
            let rows = report(dir.path());
            assert_eq!(rows.len(), 24, "{case}: every row recorded\n{}", out.stderr);
            let mut lost = 0;
            for (line, r) in &rows {
                match r["outcome"].as_str() {
                    "unlinked" => {}
                    "absent" => {
                        assert!(
                            r["message"].contains("answer to an earlier attempt was lost")
                                && r["message"].contains("most likely removed it"),
                            "{case}: line {line}: a plain absent for a link that existed: {r:?}"
                        );
                        lost += 1;
                    }
                    "failed" if max_attempts == 1 => {
                        // Only a read-back that itself lost every answer may fail a row, and it
                        // says the link may already be removed.
                        assert!(
                            r["message"].contains("may already be removed"),
                            "{case}: line {line}: {r:?}"
                        );
                    }
                    other => panic!("{case}: line {line}: outcome {other}: {r:?}"),
                }
            }
            assert!(lost > 0, "{case}: the fault seed drops some unlinks");
            let status = unlinker(&["status", job.to_str().unwrap()], ENV);
            assert!(
                status
                    .stdout
                    .contains(&format!("absent after a lost answer {lost} ")),
                "{case}: status counts them apart\n{}",
                status.stdout
            );
            assert!(
                out.stderr.contains("absent after a lost answer"),
                "{case}: the summary counts them apart\n{}",
                out.stderr
            );
            for i in 0..24 {
                let key = rows[&(i + 2)]["key"].clone();
                assert_eq!(
                    sim.key_count(sim_vendor(kind), &key, "removed"),
                    1,
                    "{case}: {key} removed once"
                );
            }
        }
    }
}

fn sim_vendor(kind: &str) -> &str {
    kind
}

/// Newspark has no read API: a row whose every answer was lost is `failed`, saying that the
/// link may already be removed; never `absent`, never `unlinked`.
#[test]
fn newspark_lost_answers_fail_saying_the_link_may_be_removed() {
    let sim = Sim::start(&["--all-linked", "--drop-rate", "1.0"]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &input("newspark", 3));
    let job = job(dir.path(), &table("newspark", &sim.url), "max_attempts = 2");
    let out = run(&job, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(rows.len(), 3);
    for r in rows.values() {
        assert_eq!(r["outcome"], "failed", "{r:?}");
        assert!(r["message"].contains("may already be removed"), "{r:?}");
        assert_eq!(r["attempts"], "2");
    }
}

/// A port nothing listens on yet.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connection refused: retried, then the vendor is unreachable: exit 6, no row `failed` (nothing
/// ever reached the vendor), `status` shows them pending, and a resume once the server is up
/// completes every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_vendor_halts_and_the_rows_stay_pending() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(20));
    let job = auth0_job(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        "in.csv",
        "max_attempts = 3",
    );
    let first = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(first.code, 6, "unreachable → halt\n{}", first.stderr);
    assert!(first.stderr.contains("unreachable"), "{}", first.stderr);
    assert!(
        report(dir.path())
            .values()
            .all(|r| r["outcome"] != "failed"),
        "no row failed: {:?}",
        report(dir.path())
    );
    let status = unlinker_async(
        vec!["status".into(), job.display().to_string()],
        token_env(),
    )
    .await;
    assert!(status.stdout.contains("pending    20"), "{}", status.stdout);

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = MockServer::builder().listener(listener).start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let second = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let rows = report(dir.path());
    assert_eq!(rows.len(), 20);
    assert!(
        rows.values().all(|r| r["outcome"] == "unlinked"),
        "{rows:?}"
    );
}

/// A 429 answered with `header: value` to every call.
async fn rate_limited_server(header: &str, value: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(429).insert_header(header, value))
        .mount(&server)
        .await;
    server
}

/// A wait beyond `retry.max_rate_limit_wait` halts at once, naming it; nothing pauses for years,
/// nothing is `failed`, nothing panics, whatever the number's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_longer_than_allowed_halts_naming_it() {
    let cases = [
        ("retry-after", "315360000".to_string(), "315360000"),
        ("retry-after", "99999999999999999999".to_string(), "s"),
        ("retry-after", "1e300".to_string(), "s"),
        ("x-ratelimit-reset", "99999999999".to_string(), "y"),
    ];
    for (header, value, named) in cases {
        let server = rate_limited_server(header, &value).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &rows_input(5));
        let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
        let started = Instant::now();
        let out = unlinker_async(run_args(&job, &[]), token_env()).await;
        let case = format!("{header}: {value}");
        assert_eq!(out.code, 6, "{case}\n{}", out.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{case}: no long pause"
        );
        assert!(
            out.stderr.contains("asked to wait") && out.stderr.contains(named),
            "{case}\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{case}\n{}", out.stderr);
        assert!(report(dir.path()).is_empty(), "{case}: rows stay pending");
    }
}

/// Zero, past and garbage waits count as the default pause and add up: a vendor answering
/// `Retry-After: 0` for ever fails the row after `max_rate_limit_wait`, it does not loop for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_past_and_garbage_waits_add_up_to_the_limit() {
    let past = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(3600));
    for value in ["0", "-5", past.as_str(), "soon"] {
        let server = rate_limited_server("retry-after", value).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &rows_input(1));
        let job = auth0_job(
            dir.path(),
            &server.uri(),
            "in.csv",
            "max_rate_limit_wait = \"2s\"",
        );
        let started = Instant::now();
        let out = unlinker_async(run_args(&job, &[]), token_env()).await;
        assert_eq!(out.code, 3, "Retry-After {value}\n{}", out.stderr);
        let rows = report(dir.path());
        assert_eq!(rows[&2]["outcome"], "failed");
        assert!(
            rows[&2]["message"].contains("still rate limited"),
            "{:?}",
            rows[&2]
        );
        // Each answer paused for the default pause (1 s, then 2 s): a few requests, not a loop.
        let sent = server.received_requests().await.unwrap().len();
        assert!(
            (2..=4).contains(&sent),
            "Retry-After {value}: {sent} requests"
        );
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
}

/// Writing to a closed stderr, or to a pipe whose reader is gone, neither stops the run nor
/// changes its exit code: every row is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_or_broken_stderr_changes_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    for how in ["closed", "broken pipe"] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &rows_input(30));
        let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
        let job_arg = job.display().to_string();
        let code = tokio::task::spawn_blocking(move || {
            let script = match how {
                // `-v` so that there is plenty to write.
                "closed" => format!("{UNLINKER} -v run {job_arg} 2>&-"),
                _ => format!("{UNLINKER} -v run {job_arg} 2>&1 >/dev/null | head -c 1 >/dev/null"),
            };
            let status = Command::new("bash")
                .args(["-c", &format!("set -o pipefail; {script}; echo $?")])
                .env("TEST_TOKEN", TOKEN)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            String::from_utf8_lossy(&status.stdout).trim().to_string()
        })
        .await
        .unwrap();
        // With pipefail, the pipeline's status is unlinker's (head exits 0).
        assert_eq!(code, "0", "{how}: exit code");
        let rows = report(dir.path());
        assert_eq!(rows.len(), 30, "{how}: every row recorded");
        assert!(rows.values().all(|r| r["outcome"] == "unlinked"));
    }
}

/// SIGHUP (a closed terminal) drains like SIGTERM: exit 4, and the job resumes to completion.
#[test]
fn sighup_drains_like_sigterm() {
    let sim = Sim::start(&["--all-linked", "--latency", "200ms"]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &input("auth0", 40));
    let job = job(dir.path(), &table("auth0", &sim.url), "");
    let child = Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .envs(ENV.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let first = report(dir.path()).len();
    assert!(first > 0 && first < 40, "{first} rows before the signal");
    let again = run(&job, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(report(dir.path()).len(), 40);
    for i in 0..40 {
        let key = format!("auth0|u{i}/github/{i}");
        assert_eq!(sim.key_count("auth0", &key, "unlink_calls"), 1, "{key}");
    }
}

/// A bug that kills a row task, or the recorder, never ends as "complete": exit 1 naming an
/// internal error, rows left pending; the next run completes the job with each link removed once.
#[test]
fn an_internal_failure_is_exit_1_and_the_job_stays_resumable() {
    for fault in ["panic-row:5", "panic-recorder:3"] {
        let sim = Sim::start(&["--all-linked", "--latency", "20ms"]);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input("auth0", 30));
        let job = job(dir.path(), &table("auth0", &sim.url), "");
        let job_arg = job.display().to_string();
        let mut env = ENV.to_vec();
        env.push(("UNLINKER_TEST_FAULT", fault));
        let out = unlinker(&["run", &job_arg, "--no-progress"], &env);
        assert_eq!(out.code, 1, "{fault}\n{}", out.stderr);
        assert!(
            out.stderr.contains("internal error"),
            "{fault}\n{}",
            out.stderr
        );
        assert!(out.stderr.contains("resumable"), "{fault}\n{}", out.stderr);
        assert!(!out.stderr.contains("complete"), "{fault}\n{}", out.stderr);
        let recorded = report(dir.path()).len() as u64;
        assert!(recorded < 30, "{fault}: not everything recorded");
        // The senders stopped with the recorder: at most the calls that were in flight
        // (concurrency 4) went out beyond what was recorded.
        let sent = sim.vendor_count("auth0", "unlink_calls");
        assert!(
            sent <= recorded + 4,
            "{fault}: {sent} calls sent, {recorded} recorded"
        );

        let again = run(&job, &[]);
        assert_eq!(again.code, 0, "{fault}\n{}", again.stderr);
        let rows = report(dir.path());
        assert_eq!(rows.len(), 30, "{fault}");
        for i in 0..30 {
            let key = format!("auth0|u{i}/github/{i}");
            assert_eq!(sim.key_count("auth0", &key, "removed"), 1, "{fault}: {key}");
        }
    }
}

/// Out-of-range flags are usage errors (exit 2), never a panic.
#[test]
fn out_of_range_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(1));
    let job = auth0_job(dir.path(), "http://127.0.0.1:9", "in.csv", "");
    let job = job.display().to_string();
    for flags in [
        &["--rate", "1e300"][..],
        &["--rate", "0"],
        &["--rate", "NaN"],
        &["--concurrency", "0"],
        &["--concurrency", "100000000"],
        &["--limit", "-1"],
    ] {
        let mut args = vec!["run", job.as_str(), "--dry-run"];
        args.extend_from_slice(flags);
        let out = unlinker(&args, ENV);
        assert_eq!(out.code, 2, "{flags:?}\n{}", out.stderr);
        assert!(
            !out.stderr.contains("panicked"),
            "{flags:?}\n{}",
            out.stderr
        );
    }
}

/// An unexpected answer that echoes the token is quoted in the halt message with the token
/// removed, even where the 200-byte quote would cut through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_answer_quoting_the_token_never_shows_it() {
    let server = MockServer::start().await;
    let body = format!(
        "<html>{}{TOKEN} and escaped {}</html>",
        "x".repeat(190),
        serde_json::to_string(&serde_json::to_string(TOKEN).unwrap()).unwrap()
    );
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(404).set_body_raw(body, "text/html"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(1));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let out = unlinker_async(run_args(&job, &["-vv"]), token_env()).await;
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("HTTP 404, content type text/html"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&TOKEN[..8]), "{}", out.stderr);
}
