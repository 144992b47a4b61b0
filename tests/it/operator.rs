//! The operator's world (SPEC sections 1 and 8): quiet cron output, `--rate` / `--burst` pacing,
//! `--deadline`, JSON logs, the metrics file, completions and the manual page, and the wording
//! of counts and messages — the real binary against the simulator.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The static token the simulator's Auth0 accepts.
const SIM_TOKEN: &str = "sim-token";

fn run(job: &Path, before: &[&str], extra: &[&str]) -> Run {
    let mut args: Vec<String> = before.iter().map(|s| s.to_string()).collect();
    args.extend(run_args(job, extra));
    let mut cmd = Command::new(UNLINKER);
    cmd.args(&args).env("TEST_TOKEN", SIM_TOKEN);
    run_with_deadline(&mut cmd, None)
}

/// `n` rows, a job against `sim`, with `token` as the job's token value.
fn sim_job(dir: &Path, sim: &Sim, n: usize, token: &str) -> std::path::PathBuf {
    write(dir, "in.csv", &rows_input(n));
    let job = auth0_job(dir, &sim.url, "in.csv", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("\"${TEST_TOKEN}\"", &format!("\"{token}\""));
    std::fs::write(&job, text).unwrap();
    job
}

/// `-q`: a run that ends 0 or 4 prints nothing at all — not the warning it had on the way, not
/// the summary; one that ends 3 prints both. `-qq`: errors only, no summary.
#[test]
fn quiet_runs_say_nothing_unless_the_exit_code_calls_for_it() {
    let sim = Sim::start(&["--all-linked"]);
    let dir = tempfile::tempdir().unwrap();
    // A token file others may read: a warning at load time.
    let tok = write(dir.path(), "tok", SIM_TOKEN);
    std::fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let job = sim_job(dir.path(), &sim, 3, "${file:tok}");

    let loud = run(&job, &[], &["--limit", "1"]);
    assert_eq!(loud.code, 4, "{}", loud.stderr);
    assert!(loud.stderr.contains("chmod 600"), "{}", loud.stderr);
    assert!(loud.stderr.contains("job t:"), "{}", loud.stderr);

    let quiet = run(&job, &["-q"], &["--limit", "1"]);
    assert_eq!(quiet.code, 4, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "exit 4 under -q prints nothing");
    let quiet = run(&job, &["-q"], &[]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "exit 0 under -q prints nothing");
    assert_eq!(quiet.stdout, "");

    // An invalid row: exit 3, so the warning and the summary are shown.
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), "tok", SIM_TOKEN);
    std::fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let job = sim_job(dir.path(), &sim, 2, "${file:tok}");
    let mut input = rows_input(2);
    input.push_str("auth0|x,,\n");
    write(dir.path(), "in.csv", &input);
    let quiet = run(&job, &["-qq"], &["--fresh"]);
    assert_eq!(quiet.code, 3, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "-qq: errors only, no summary, no warning");
    let quiet = run(&job, &["-q"], &["--fresh"]);
    assert_eq!(quiet.code, 3, "{}", quiet.stderr);
    let warn = quiet.stderr.find("chmod 600").expect("the warning");
    let summary = quiet.stderr.find("job t:").expect("the summary");
    assert!(
        warn < summary,
        "warnings before the summary:\n{}",
        quiet.stderr
    );

    // A halt (a refused token): exit 6 needs a person. `-q` shows the error and the summary;
    // `-qq` the error alone.
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 2, "not-the-token");
    let quiet = run(&job, &["-q"], &[]);
    assert_eq!(quiet.code, 6, "{}", quiet.stderr);
    assert!(
        quiet.stderr.contains("halting: vendor `auth0`"),
        "{}",
        quiet.stderr
    );
    assert!(quiet.stderr.contains("job t: halted"), "{}", quiet.stderr);
    let quieter = run(&job, &["-qq"], &[]);
    assert_eq!(quieter.code, 6, "{}", quieter.stderr);
    assert!(
        quieter.stderr.contains("halting: vendor `auth0`"),
        "{}",
        quieter.stderr
    );
    assert!(
        !quieter.stderr.contains("job t:"),
        "no summary under -qq:\n{}",
        quieter.stderr
    );
}

/// Requests the simulator logged, as milliseconds since the first one.
fn request_times(sim: &Sim) -> Vec<f64> {
    let times: Vec<f64> = sim
        .log()
        .iter()
        .map(|e| e["at_ms"].as_f64().expect("at_ms"))
        .collect();
    let first = times.iter().copied().fold(f64::INFINITY, f64::min);
    times.iter().map(|t| t - first).collect()
}

/// `--rate R` alone caps the job's burst (1000 here) at max(1, R): at most R requests at once
/// (the old code sent all 12). `--burst B` sets it: B requests go at once.
#[test]
fn rate_caps_the_burst_and_burst_sets_it() {
    let sim = Sim::start(&["--all-linked"]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 12, "${TEST_TOKEN}");
    let out = run(&job, &[], &["--rate", "5"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let times = request_times(&sim);
    assert_eq!(times.len(), 12);
    // A bucket of burst B at rate R lets B go at once and R more each second after.
    let at_once = times.iter().filter(|t| **t < 100.0).count();
    assert!(
        at_once <= 5,
        "{at_once} requests at once at --rate 5: {times:?}"
    );
    let first_second = times.iter().filter(|t| **t < 1000.0).count();
    assert!(
        first_second <= 5 + 5 + 1,
        "{first_second} requests in the first second at --rate 5: {times:?}"
    );

    let sim = Sim::start(&["--all-linked"]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 6, "${TEST_TOKEN}");
    let out = run(&job, &[], &["--rate", "1", "--burst", "4"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let times = request_times(&sim);
    let at_once = times.iter().filter(|t| **t < 500.0).count();
    assert_eq!(at_once, 4, "a burst of 4, then 1/s: {times:?}");
}

/// `--deadline 1s` on a slow vendor: the run stops starting rows, drains, records, exits 4 and
/// says why; the resume completes with every line once.
#[test]
fn deadline_stops_a_run_that_resumes_to_the_end() {
    let sim = Sim::start(&["--all-linked", "--latency", "200ms"]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 30, "${TEST_TOKEN}");
    let started = std::time::Instant::now();
    let first = run(&job, &[], &["--deadline", "1s", "--concurrency", "1"]);
    assert_eq!(first.code, 4, "{}", first.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "stopped near the deadline: {:?}",
        started.elapsed()
    );
    assert!(
        first.stderr.contains("stopped at --deadline 1s"),
        "{}",
        first.stderr
    );
    let report = dir.path().join("report.csv");
    let recorded = read_report(&report).len();
    assert!((1..30).contains(&recorded), "{recorded} rows recorded");

    let second = run(&job, &[], &["--concurrency", "8"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let rows = read_report(&report);
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), lines.len(), "a line twice: {lines:?}");
    assert_eq!(sorted, (2..=31).collect::<Vec<u64>>());
}

/// `-v --log-format json`: every stderr line is one JSON object with `ts`, `level` and
/// `message`, the summary included.
#[test]
fn json_logs_are_one_object_per_line() {
    let sim = Sim::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 2, "${TEST_TOKEN}");
    let out = run(&job, &["-vv"], &["--log-format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut statuses = Vec::new();
    for line in out.stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", out.stderr));
        for key in ["ts", "level", "message"] {
            assert!(v.get(key).is_some(), "no `{key}` in {line}");
        }
        assert!(
            humantime::parse_rfc3339(v["ts"].as_str().unwrap()).is_ok(),
            "{line}"
        );
        if let Some(s) = v.get("status") {
            statuses.push(s.clone());
        }
    }
    assert!(out.stderr.contains("job t: complete"), "{}", out.stderr);
    // The simulator has no links: both rows are 404 absent; statuses are numbers.
    assert!(!statuses.is_empty(), "{}", out.stderr);
    assert!(statuses.iter().all(|s| s == 404), "{statuses:?}");
}

/// `-vv` text logs show statuses as numbers, never `Some(404)`.
#[test]
fn verbose_statuses_are_numbers() {
    let sim = Sim::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 1, "${TEST_TOKEN}");
    let out = run(&job, &["-vv"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("status=404"), "{}", out.stderr);
    assert!(!out.stderr.contains("Some("), "{}", out.stderr);
}

/// Parse the exposition text into `name{labels}` → value, checking `# TYPE` comes before each
/// metric's samples.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_string());
        } else if line.starts_with("# HELP ") {
        } else {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let name = series.split('{').next().unwrap();
            assert!(
                typed.iter().any(|t| t == name),
                "{name} has no # TYPE before it"
            );
            samples.insert(series.to_string(), value.parse().unwrap());
        }
    }
    samples
}

/// `--metrics PATH`: after a run, the file (owner-only) says what the summary says.
#[test]
fn metrics_file_matches_the_summary() {
    let sim = Sim::start(&["--all-linked"]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 4, "${TEST_TOKEN}");
    let mut input = rows_input(4);
    input.push_str("auth0|x,,\nauth0|u0,github,0\n");
    write(dir.path(), "in.csv", &input);
    let metrics = dir.path().join("m/unlinker.prom");
    let summary = dir.path().join("s.json");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = run(
        &job,
        &[],
        &[
            "--metrics",
            metrics.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--limit",
            "2",
        ],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    let out = run(
        &job,
        &[],
        &[
            "--metrics",
            metrics.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(mode(&metrics), 0o600);
    let s = read_json(&summary);
    let m = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    for outcome in [
        "unlinked",
        "absent",
        "dry_run",
        "invalid",
        "duplicate",
        "failed",
    ] {
        assert_eq!(
            m[&format!("unlinker_rows{{job=\"t\",outcome=\"{outcome}\"}}")],
            s["counts"][outcome].as_f64().unwrap(),
            "{outcome}"
        );
    }
    assert_eq!(m["unlinker_rows{job=\"t\",outcome=\"unlinked\"}"], 4.0);
    assert_eq!(m["unlinker_rows_pending{job=\"t\"}"], 0.0);
    assert_eq!(
        m["unlinker_requests_total{job=\"t\",vendor=\"auth0\"}"],
        s["vendors"]["auth0"]["requests"].as_f64().unwrap()
    );
    assert_eq!(
        m["unlinker_rate_limited_total{job=\"t\",vendor=\"auth0\"}"],
        0.0
    );
    assert_eq!(m["unlinker_last_exit_code{job=\"t\"}"], 3.0);
    let start = m["unlinker_run_start_timestamp_seconds{job=\"t\"}"];
    let end = m["unlinker_run_end_timestamp_seconds{job=\"t\"}"];
    assert!(before <= start && start <= end, "{before} {start} {end}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("m"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

/// While a run goes on, the file is there already, without an end or an exit code.
#[test]
fn metrics_are_written_while_the_run_goes_on() {
    let sim = Sim::start(&["--all-linked", "--latency", "300ms"]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 10, "${TEST_TOKEN}");
    let metrics = dir.path().join("u.prom");
    let mut child = Command::new(UNLINKER)
        .args(run_args(&job, &["--concurrency", "1", "--metrics"]))
        .arg(&metrics)
        .env("TEST_TOKEN", SIM_TOKEN)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !metrics.exists() && start.elapsed() < std::time::Duration::from_secs(3) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&metrics).expect("written as the run starts");
    let status = child.wait().unwrap();
    assert!(status.success());
    let m = parse_metrics(&text);
    assert!(
        m.contains_key("unlinker_run_start_timestamp_seconds{job=\"t\"}"),
        "{text}"
    );
    assert!(!text.contains("unlinker_last_exit_code"), "{text}");
    assert!(
        !text.contains("unlinker_run_end_timestamp_seconds"),
        "{text}"
    );
    let done = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(done["unlinker_last_exit_code{job=\"t\"}"], 0.0);
}

#[test]
fn completions_and_the_manual_page() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = unlinker(&["completions", shell], &[]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert!(out.stdout.contains("unlinker"), "{shell}: {}", out.stdout);
    }
    for shell in ["bash", "zsh", "fish"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {shell}")])
            .output()
            .unwrap();
        if !found.status.success() {
            continue;
        }
        let script = format!("source <('{UNLINKER}' completions {shell})");
        let script = if shell == "zsh" {
            format!("autoload -U compinit && compinit -u && {script}")
        } else {
            script
        };
        let out = Command::new(shell).args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{shell} does not load the script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(unlinker(&["completions", "tcsh"], &[]).code, 2);
    let man = unlinker(&["man"], &[]);
    assert_eq!(man.code, 0);
    assert!(man.stdout.starts_with(".TH"), "{}", &man.stdout[..80]);
    for needle in [
        "UNLINKER RUN",
        "\\-\\-deadline",
        "\\-\\-metrics",
        "UNLINKER COMPLETIONS",
    ] {
        assert!(man.stdout.contains(needle), "{needle} missing");
    }
}

/// An unknown key in a vendor table lists every key the table takes, the common ones too.
#[test]
fn unknown_vendor_key_lists_every_valid_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(1));
    let job = auth0_job(dir.path(), "http://127.0.0.1:9", "in.csv", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("concurrency = 8", "concurrency = 8\ncolour = 1");
    std::fs::write(&job, text).unwrap();
    let out = unlinker(
        &["validate", job.to_str().unwrap()],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("vendors.auth0.colour"),
        "{}",
        out.stderr
    );
    for key in [
        "type",
        "base_url",
        "rate",
        "burst",
        "concurrency",
        "domain",
        "token",
        "client_id",
    ] {
        assert!(
            out.stderr.contains(&format!(" {key},")) || out.stderr.contains(&format!(" {key}\n")),
            "`{key}` missing: {}",
            out.stderr
        );
    }
}

/// `unlinker vendors` names `base_url` once per vendor.
#[test]
fn vendors_lists_base_url_once_each() {
    let out = unlinker(&["vendors"], &[]);
    let mut current = String::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in out.stdout.lines() {
        if !line.starts_with(' ') && line.contains(" — ") {
            current = line.split(' ').next().unwrap().to_string();
        }
        if line.trim_start().starts_with("base_url ") {
            *seen.entry(current.clone()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}\n{}", out.stdout);
}

/// Counts are pluralised: "1 request", "1 row".
#[test]
fn one_is_singular() {
    let sim = Sim::start(&["--all-linked"]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 1, "${TEST_TOKEN}");
    let out = run(&job, &[], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("vendor auth0: 1 request, ")
            && out.stderr.contains(", 0 rate-limit answers\n")
            && out.stderr.contains("this run: 1 row in"),
        "{}",
        out.stderr
    );
}

/// Off a terminal, the 10-s progress line counts the rows of earlier runs: done / total for
/// the whole job. It is a log line, so with `--log-format json` it is a JSON object too.
#[test]
fn progress_counts_rows_of_earlier_runs() {
    let sim = Sim::start(&["--all-linked", "--latency", "100ms"]);
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), &sim, 40, "${TEST_TOKEN}");
    let first = run(&job, &[], &["--limit", "5"]);
    assert_eq!(first.code, 4, "{}", first.stderr);
    // 35 rows at 3/s: about 11 s, one progress line.
    let mut cmd = Command::new(UNLINKER);
    cmd.args([
        "run",
        job.to_str().unwrap(),
        "--rate",
        "3",
        "--log-format",
        "json",
    ])
    .env("TEST_TOKEN", SIM_TOKEN);
    let second = run_with_deadline(&mut cmd, None);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let messages: Vec<String> = second
        .stderr
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            v["message"].as_str().expect("a message").to_string()
        })
        .collect();
    let line = messages
        .iter()
        .find(|m| m.starts_with("progress:"))
        .unwrap_or_else(|| panic!("no progress line: {}", second.stderr));
    let counts = line.split("progress: ").nth(1).unwrap();
    let (done, rest) = counts.split_once('/').unwrap();
    let (total, rest) = rest.split_once(" rows (").unwrap();
    let this_run: u64 = rest.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(total, "40", "{line}");
    assert_eq!(done.parse::<u64>().unwrap(), this_run + 5, "{line}");
}

/// A token read with `${file:PATH}` (relative to the job file, trailing newline removed) is the
/// one sent on the wire, and it appears nowhere the product writes, in any encoding, even when
/// the vendor echoes it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_from_a_file_is_sent_and_never_shown() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};
    struct EchoToken;
    impl wiremock::Respond for EchoToken {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let auth = request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let message = format!("bad token {auth} | {}", secret_forms(auth).join(" | "));
            ResponseTemplate::new(400).set_body_string(
                serde_json::json!({ "statusCode": 400, "message": message }).to_string(),
            )
        }
    }
    const FILE_TOKEN: &str = "tok-from-file 9a/7c+e=Q~";
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(EchoToken)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(2));
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    let secret_file = write(dir.path(), "secrets/token", &format!("{FILE_TOKEN}\n"));
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let job = auth0_job(dir.path(), &server.uri(), "in.csv", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("\"${TEST_TOKEN}\"", "\"${file:secrets/token}\"")
        .replace(
            "report = \"report.csv\"",
            "report = \"report.csv\"\nsummary = \"summary.json\"",
        );
    std::fs::write(&job, text).unwrap();
    let mut args = run_args(&job, &[]);
    args.insert(0, "-vv".into());
    let out = unlinker_async(args, vec![]).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let sent = requests_with(&server, "DELETE").await;
    assert_eq!(sent.len(), 2);
    for request in &sent {
        assert_eq!(
            request
                .headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            format!("Bearer {FILE_TOKEN}"),
            "the file's contents, without its newline"
        );
    }
    let mut places = vec![
        ("stderr".to_string(), out.stderr.clone()),
        ("stdout".into(), out.stdout.clone()),
    ];
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "job.toml" {
            let bytes = std::fs::read(&path).unwrap();
            places.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    assert!(
        places.len() >= 5,
        "report, checkpoint, lock, summary: {places:?}"
    );
    for form in secret_forms(FILE_TOKEN) {
        for (place, text) in &places {
            assert!(!text.contains(&form), "{form:?} in {place}");
        }
    }
}
