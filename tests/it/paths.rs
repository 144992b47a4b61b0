//! Path safety and records that cannot block a job (SPEC section 6), through the real binary:
//! outputs that would overwrite the input or each other, symbolic links, a report left without
//! its checkpoint, a checkpoint removed under a running job, huge rows, echoed secrets.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Nothing listens here: a job that must be refused before any call points at it.
const NOWHERE: &str = "http://127.0.0.1:9";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn run(job: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["run", job.to_str().unwrap(), "--no-progress"];
    args.extend_from_slice(extra);
    unlinker(&args, &[("TEST_TOKEN", TOKEN)])
}

#[test]
fn a_report_that_is_the_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &rows_input(3));
    let before = fs::read(&input).unwrap();
    let job = auth0_job(dir.path(), NOWHERE, "in.csv", "");
    for extra in [
        vec!["--report", input.to_str().unwrap()],
        vec!["--report", input.to_str().unwrap(), "--dry-run"],
        vec!["--summary", input.to_str().unwrap(), "--dry-run"],
    ] {
        let out = run(&job, &extra);
        assert_eq!(out.code, 1, "{extra:?}\n{}", out.stderr);
        assert!(
            out.stderr.contains("same file") && out.stderr.contains("input"),
            "{}",
            out.stderr
        );
        assert_eq!(fs::read(&input).unwrap(), before, "input untouched");
    }
    // The same through another spelling and a hard link.
    fs::hard_link(&input, dir.path().join("hard.csv")).unwrap();
    let out = run(
        &job,
        &["--report", dir.path().join("hard.csv").to_str().unwrap()],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(fs::read(&input).unwrap(), before);
}

#[test]
fn a_checkpoint_that_is_the_report_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(3));
    let job = auth0_job(dir.path(), NOWHERE, "in.csv", "");
    let text = fs::read_to_string(&job).unwrap().replace(
        "report = \"report.csv\"",
        "report = \"report.csv\"\ncheckpoint = \"report.csv\"",
    );
    fs::write(&job, text).unwrap();
    let out = run(&job, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("checkpoint")
            && out.stderr.contains("report")
            && out.stderr.contains("same file"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("report.csv").exists());
}

#[test]
fn a_symlinked_report_is_refused_and_its_target_keeps_bytes_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(3));
    let target = write(dir.path(), "precious.txt", "not a report\n");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    symlink(&target, dir.path().join("report.csv")).unwrap();
    let job = auth0_job(dir.path(), NOWHERE, "in.csv", "");
    for extra in [vec![], vec!["--fresh"]] {
        let out = run(&job, &extra);
        assert_eq!(out.code, 1, "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    }
    // A dry run told to write there is refused too.
    let link = dir.path().join("report.csv");
    let out = run(&job, &["--dry-run", "--report", link.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(fs::read_to_string(&target).unwrap(), "not a report\n");
    assert_eq!(mode(&target), 0o644);
    assert!(
        !dir.path().join("report.csv.ckpt").exists(),
        "nothing was started"
    );
}

#[test]
fn a_symlinked_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(3));
    let target = write(dir.path(), "precious.txt", "keep\n");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    symlink(&target, dir.path().join("report.csv.ckpt")).unwrap();
    let job = auth0_job(dir.path(), NOWHERE, "in.csv", "");
    let out = run(&job, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
    assert_eq!(mode(&target), 0o640);
    assert!(!dir.path().join("report.csv").exists());
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
async fn a_report_without_its_checkpoint_is_archived_with_its_rows() {
    let server = ok_server().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(4));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let first = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let report = dir.path().join("report.csv");
    let old = fs::read(&report).unwrap();
    assert_eq!(read_report(&report).len(), 4);

    fs::remove_file(dir.path().join("report.csv.ckpt")).unwrap();
    let second = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let archived: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("report.") && name.ends_with("Z.csv")
        })
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(fs::read(&archived[0]).unwrap(), old, "old rows intact");
    assert_eq!(mode(&archived[0]), 0o600);
    let rows = read_report(&report);
    assert_eq!(rows.len(), 4, "the new report holds this job's rows once");
}

#[test]
fn a_checkpoint_removed_during_a_run_stops_it_within_seconds() {
    let sim = Sim::start(&["--all-linked", "--latency", "300ms"]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(200));
    let job = auth0_job(dir.path(), &sim.url, "in.csv", "");
    let text = fs::read_to_string(&job)
        .unwrap()
        .replace("concurrency = 8", "concurrency = 1");
    fs::write(&job, text).unwrap();
    let mut child = std::process::Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .env("TEST_TOKEN", "sim-token")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = dir.path().join("report.csv.ckpt");
    let report = dir.path().join("report.csv");
    let start = Instant::now();
    while !(report.exists() && read_report(&report).len() >= 2) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::remove_file(&ckpt).unwrap();
    let removed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if removed.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the run went on for 10 s without its checkpoint");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let noticed = removed.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(noticed < Duration::from_secs(5), "took {noticed:?}");
    assert!(
        stderr.contains("removed or replaced") && stderr.contains(ckpt.to_str().unwrap()),
        "{stderr}"
    );
    assert!(read_report(&report).len() < 200, "it stopped early");
    // The runs log's end line says so, without counts.
    let log = fs::read_to_string(dir.path().join("report.csv.runs.jsonl")).unwrap();
    let end: serde_json::Value = serde_json::from_str(log.lines().nth(1).unwrap()).unwrap();
    assert_eq!(end["event"], "end");
    assert_eq!(end["exit_code"], 1);
    let stop = end["stop"].as_str().unwrap();
    assert!(
        stop.starts_with("error: ") && stop.contains("removed or replaced"),
        "{stop}"
    );
    assert!(end["counts"].is_null() && end["this_run"].is_null());
    assert!(end["vendors"]["auth0"]["requests"].as_u64().unwrap() >= 2);
    assert_eq!(
        unlinker::runslog::verify(&dir.path().join("report.csv.runs.jsonl")),
        Ok(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_row_and_a_huge_answer_record_and_resume() {
    let server = MockServer::start().await;
    let long = "m".repeat(1024 * 1024 - 1000);
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(
                serde_json::json!({ "statusCode": 400, "message": long }).to_string(),
            ),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    // Line 2: a 2.5 MB user id (no provider: invalid, never sent). Line 3: a normal row whose
    // answer is a message just under 1 MiB.
    let huge = "u".repeat(2_500_000);
    write(
        dir.path(),
        "in.csv",
        &format!("user_id,provider,identity_user_id\nauth0|{huge},,1\nauth0|u1,github,1\n"),
    );
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let first = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(first.code, 3, "rows failed or invalid\n{}", first.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[&2]["outcome"], "invalid");
    assert!(rows[&2]["key"].chars().count() <= 4096);
    assert_eq!(rows[&3]["outcome"], "failed");
    let message = &rows[&3]["message"];
    assert!(
        message.chars().count() <= 1000 && message.ends_with('…'),
        "{}",
        message.len()
    );

    // Resuming works: the job is complete and nothing is sent again.
    let second = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("already complete"),
        "{}",
        second.stderr
    );
    assert_eq!(requests_with(&server, "DELETE").await.len(), 1);
    let status = unlinker(&["status", job.to_str().unwrap()], &[("TEST_TOKEN", TOKEN)]);
    assert_eq!(status.code, 0, "{}", status.stderr);
}

/// A vendor echoing the credential back in every encoding the product applies.
struct Echo;

impl wiremock::Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = auth.strip_prefix("Bearer ").unwrap_or(auth);
        let forms = secret_forms(token);
        let basic = STANDARD.encode(format!("client-id:{token}"));
        let url_b64 = URL_SAFE_NO_PAD.encode(format!("x{token}"));
        let message = format!(
            "echo: {} | basic {basic} | blob {url_b64} | json {}",
            forms.join(" | "),
            serde_json::json!({ "token": token })
        );
        ResponseTemplate::new(400).set_body_string(
            serde_json::json!({ "statusCode": 400, "message": message }).to_string(),
        )
    }
}

const ODD_TOKEN: &str = "tok\"3f\\9a/7c+e d=Q~*";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_secret_is_absent_from_every_file_and_output_in_every_encoding() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(Echo)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(2));
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let text = fs::read_to_string(&job).unwrap().replace(
        "report = \"report.csv\"",
        "report = \"report.csv\"\nsummary = \"summary.json\"",
    );
    fs::write(&job, text).unwrap();
    let env = vec![("TEST_TOKEN".to_string(), ODD_TOKEN.to_string())];
    let mut args = run_args(&job, &[]);
    args.push("-vv".into());
    let out = unlinker_async(args, env).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = read_report(&dir.path().join("report.csv"));
    assert!(
        rows[0]["message"].contains("[redacted]"),
        "{}",
        rows[0]["message"]
    );
    assert!(
        !requests_with(&server, "DELETE").await.is_empty(),
        "the vendor was called"
    );

    let mut forms = secret_forms(ODD_TOKEN);
    forms.push(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("client-id:{ODD_TOKEN}"),
    ));
    let mut places = vec![
        ("stderr".to_string(), out.stderr.clone()),
        ("stdout".to_string(), out.stdout.clone()),
    ];
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "job.toml" {
            continue;
        }
        places.push((
            path.display().to_string(),
            String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned(),
        ));
    }
    // The report as parsed: CSV quoting doubles a `"`, so check the values too.
    for row in &rows {
        for (column, value) in row {
            for form in &forms {
                assert!(
                    !value.contains(form.as_str()),
                    "{form:?} in report column {column}: {value}"
                );
            }
        }
    }
    assert!(places.iter().any(|(p, _)| p.ends_with("summary.json")));
    assert!(places.iter().any(|(p, _)| p.ends_with(".ckpt")));
    for (place, text) in &places {
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "{form:?} in {place}:\n{text}"
            );
        }
        // The JSON-escaped form as the checkpoint (JSON) would hold an unscrubbed secret.
        let json = serde_json::to_string(ODD_TOKEN).unwrap();
        assert!(
            !text.contains(&json[1..json.len() - 1]),
            "JSON form in {place}"
        );
    }
}
