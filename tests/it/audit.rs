//! `unlinker audit JOB --html PATH`: a job run in three parts against a scripted server, then
//! audited: the page's totals equal the report's, every run is listed, the hash chain is shown
//! intact, then broken at the run whose line was changed; nothing external is referenced; no
//! checkpoint → exit 1; and, where chromium is installed, the page renders to a non-blank image.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::*;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn audit(job: &Path, html: &Path) -> Run {
    // No secret in the environment: audit needs none.
    Command::new(UNLINKER)
        .args([
            "audit",
            job.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ])
        .env_clear()
        .output()
        .expect("run unlinker audit")
        .into()
}

/// `(outcome, rows)` from the page's totals table.
fn totals(html: &str) -> BTreeMap<String, u64> {
    let re = regex_lite(html, "data-outcome=\"", "\">", "</td>");
    re.into_iter()
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect()
}

/// Every `PREFIX key MID value END` in `text`.
fn regex_lite(text: &str, prefix: &str, mid: &str, end: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        let Some(m) = rest.find(mid) else { break };
        let key = rest[..m].to_string();
        rest = &rest[m + mid.len()..];
        let Some(e) = rest.find(end) else { break };
        out.push((key, rest[..e].to_string()));
        rest = &rest[e..];
    }
    out
}

/// What follows every `src=`, `href=`, CSS `url(` or `@import` in the page (none is expected),
/// and any `http://` or `https://` at all.
fn external_refs(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut refs = Vec::new();
    for attr in ["src=", "href=", "url(", "@import"] {
        let mut rest = lower.as_str();
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            refs.push(rest.chars().take(60).collect());
        }
    }
    for scheme in ["http://", "https://"] {
        if let Some(i) = lower.find(scheme) {
            refs.push(lower[i..].chars().take(60).collect());
        }
    }
    refs
}

async fn scripted_job(dir: &Path) -> (MockServer, std::path::PathBuf) {
    let server = MockServer::start().await;
    let answer = |user: &str, status: u16, body: &str| {
        Mock::given(method("DELETE"))
            .and(path_regex(format!("^/api/v2/users/auth0%7C{user}")))
            .respond_with(ResponseTemplate::new(status).set_body_string(body.to_string()))
    };
    answer("ok", 200, "[]").mount(&server).await;
    answer("gone", 404, r#"{"statusCode":404,"error":"Not Found","message":"The user does not exist.","errorCode":"inexistent_user"}"#).mount(&server).await;
    answer("bad", 400, r#"{"statusCode":400,"error":"Bad Request","message":"Invalid identity <b>&","errorCode":"invalid_body"}"#).mount(&server).await;
    let mut input = String::from("user_id,provider,identity_user_id\n");
    for i in 0..4 {
        input.push_str(&format!("auth0|ok{i},github,{i}\n"));
    }
    input.push_str("auth0|gone,github,10\n");
    input.push_str("auth0|bad1,github,11\n");
    input.push_str("auth0|bad2,github,12\n");
    input.push_str("auth0|x,,13\n"); // invalid: no provider
    write(dir, "in.csv", &input);
    let job = auth0_job(dir, &server.uri(), "in.csv", "max_attempts = 1");
    (server, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_report_of_a_job_run_three_times() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, job) = scripted_job(dir.path()).await;
    for extra in [&["--limit", "3"][..], &["--limit", "3"][..], &[][..]] {
        let run = unlinker_async(run_args(&job, extra), token_env()).await;
        assert!([3, 4, 0].contains(&run.code), "{}", run.stderr);
    }
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows.len(), 8);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *want.entry(r["outcome"].clone()).or_default() += 1;
    }
    assert_eq!(want.get("unlinked"), Some(&4));
    assert_eq!(want.get("failed"), Some(&2));

    let html_path = dir.path().join("audit.html");
    let a = audit(&job, &html_path);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(totals(&html), want, "the page's totals are the report's");
    assert!(html.contains("<p id=\"chain\" class=\"ok\">intact</p>"));
    assert_eq!(html.matches("<tr class=\"run\">").count(), 3, "three runs");
    for (run, stop) in [(1, "limit"), (2, "limit"), (3, "complete")] {
        let start = format!("<tr class=\"run\"><td class=\"n\">{run}</td>");
        let at = html
            .find(&start)
            .unwrap_or_else(|| panic!("run {run} listed"));
        let row = &html[at..at + html[at..].find("</tr>").unwrap()];
        assert!(
            row.contains(&format!("<td>{stop}</td>")),
            "run {run}: {row}"
        );
    }
    // The failure reason is grouped, escaped, with its example lines.
    assert!(
        html.contains("Invalid identity &lt;b&gt;&amp;"),
        "escaped message"
    );
    assert!(!html.contains("<b>&"));
    assert!(html.contains("auth0|bad1") && html.contains("auth0|bad2"));
    let sha = rows_sha(&dir.path().join("in.csv"));
    assert!(html.contains(&sha), "the input's SHA-256 is shown");
    // Self-contained, no script, no secret.
    assert!(!html.to_ascii_lowercase().contains("<script"));
    let refs = external_refs(&html);
    assert!(refs.is_empty(), "references in the page: {refs:?}");
    assert!(!html.contains(TOKEN));

    render_in_chromium(&html_path, dir.path());

    // Change one line of the runs log (run 2's end line): the page says where the chain breaks.
    let runs_path = dir.path().join("report.csv.runs.jsonl");
    let text = std::fs::read_to_string(&runs_path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 6);
    lines[3] = lines[3].replacen("\"user\":\"", "\"user\":\"x", 1);
    std::fs::write(&runs_path, lines.join("\n") + "\n").unwrap();
    let a = audit(&job, &html_path);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("<p id=\"chain\" class=\"bad\">broken at run 2, line 4: "),
        "{}",
        html.lines().find(|l| l.contains("chain")).unwrap_or("")
    );
}

fn rows_sha(path: &Path) -> String {
    unlinker::runslog::hash_file(path).unwrap().sha256
}

#[test]
fn audit_without_a_checkpoint_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(2));
    let job = auth0_job(dir.path(), "http://127.0.0.1:9", "in.csv", "");
    let html = dir.path().join("a.html");
    let a = audit(&job, &html);
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert!(a.stderr.contains("no checkpoint"), "{}", a.stderr);
    assert!(!html.exists());
}

/// Render the page headless in chromium when it is installed, and check the screenshot is not
/// blank. Skipped, with a note, when it is not.
fn render_in_chromium(html: &Path, dir: &Path) {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!("note: chromium is not installed: the audit page's render is not checked");
        return;
    }
    let profile = dir.join("chromium-profile");
    let png = dir.join("a.png");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,1600",
            &format!("file://{}", html.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(
        png.is_file(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Ok(keep) = std::env::var("AUDIT_SCREENSHOT") {
        let _ = std::fs::copy(&png, keep);
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let mean = bytes.iter().map(|b| *b as f64).sum::<f64>() / bytes.len() as f64;
    let var = bytes
        .iter()
        .map(|b| (*b as f64 - mean).powi(2))
        .sum::<f64>()
        / bytes.len() as f64;
    assert!(
        var > 100.0,
        "the screenshot looks blank (variance {var:.1})"
    );
}

#[test]
fn a_dry_run_with_check_as_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.csv", &rows_input(5));
    let sim = Sim::start(&[
        "--seed",
        seed.to_str().unwrap(),
        "--seed-vendor",
        "auth0",
        "--auth0-token",
        TOKEN,
    ]);
    // Five linked, three not, one invalid.
    let mut input = rows_input(8);
    input.push_str("auth0|x,,99\n");
    write(dir.path(), "in.csv", &input);
    let job = auth0_job(dir.path(), &sim.url, "in.csv", "");
    let html = dir.path().join("plan.html");

    let none = audit_args(&job, &html, true);
    assert_eq!(none.code, 1, "no dry run yet: {}", none.stderr);
    assert!(none.stderr.contains("no runs log"), "{}", none.stderr);

    let env: Vec<(&str, &str)> = vec![("TEST_TOKEN", TOKEN)];
    let run = unlinker(
        &[
            "run",
            job.to_str().unwrap(),
            "--no-progress",
            "--dry-run",
            "--check",
        ],
        &env,
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        audit(&job, &dir.path().join("x.html")).code,
        1,
        "a dry run leaves no checkpoint: no audit of the real job"
    );
    let a = audit_args(&job, &html, true);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<h1>Dry-run plan"));
    assert!(page.contains("(<code>--check</code>)"));
    assert!(
        page.contains("data-plan=\"auth0/send\">5<"),
        "five links found"
    );
    assert!(
        page.contains("data-plan=\"auth0/absent\">3<"),
        "three absent"
    );
    assert!(
        page.contains(
            "<table id=\"estimate\"><tr><th>vendor</th><th>about</th></tr><tr><td>auth0</td>"
        ),
        "the real run's estimated duration, from the dry run's runs log"
    );
    assert!(page.contains("<p id=\"chain\" class=\"ok\">intact</p>"));
    assert!(
        page.contains("`provider`"),
        "the invalid row's rule is listed"
    );
    assert!(!page.contains(TOKEN));
}

fn audit_args(job: &Path, html: &Path, dry_run: bool) -> Run {
    let mut args = vec![
        "audit",
        job.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ];
    if dry_run {
        args.push("--dry-run");
    }
    Command::new(UNLINKER)
        .args(args)
        .env_clear()
        .output()
        .expect("run unlinker audit")
        .into()
}

#[test]
fn audit_works_while_a_run_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.csv", &rows_input(40));
    let sim = Sim::start(&[
        "--seed",
        seed.to_str().unwrap(),
        "--seed-vendor",
        "auth0",
        "--auth0-token",
        TOKEN,
        "--latency",
        "300ms",
    ]);
    write(dir.path(), "in.csv", &rows_input(40));
    // Two in flight at a time: about 6 s for the whole job.
    let job = auth0_job(dir.path(), &sim.url, "in.csv", "").to_path_buf();
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("concurrency = 8", "concurrency = 2");
    std::fs::write(&job, text).unwrap();
    let mut child = spawn_run(&job, std::process::Stdio::null());
    let report = dir.path().join("report.csv");
    let start = std::time::Instant::now();
    let rows = || {
        std::fs::read_to_string(&report)
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0)
    };
    while rows() < 2 && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let html = dir.path().join("live.html");
    let a = audit(&job, &html);
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert!(
        still_running,
        "the run was still going (and holding the lock) during the audit"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("no end record: killed, or still running"),
        "the running run is listed without an end"
    );
    assert!(page.contains("<p id=\"chain\" class=\"ok\">intact</p>"));
}
