//! The runs log (SPEC section 6): a start and an end line per run, every field, the input's and
//! report's SHA-256 against the files, the hash chain recomputed here (independently of
//! `unlinker::runslog::verify`) and with the README's shell snippet, a killed run's start line,
//! a locked run writing nothing, no secret in any encoding, and a dry run's own log.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::*;

const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Every key of every line.
const FIELDS: &[&str] = &[
    "run",
    "event",
    "job",
    "dry_run",
    "started_at",
    "ended_at",
    "exit_code",
    "stop",
    "version",
    "user",
    "uid",
    "host",
    "pid",
    "args",
    "job_sha256",
    "input",
    "report",
    "counts",
    "this_run",
    "vendors",
    "prev",
];

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_sha256(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// The log's lines, raw and parsed.
fn lines(log: &Path) -> Vec<(String, serde_json::Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .map(|l| (l.to_string(), serde_json::from_str(l).unwrap()))
        .collect()
}

/// The chain, recomputed: each `prev` is the SHA-256 of the line before, the first is zeros.
fn assert_chain(lines: &[(String, serde_json::Value)]) {
    let mut expected = ZEROS.to_string();
    for (i, (raw, v)) in lines.iter().enumerate() {
        assert_eq!(v["prev"], expected.as_str(), "line {}", i + 1);
        expected = sha256(raw.as_bytes());
    }
}

fn start_sim() -> Sim {
    Sim::start(&["--all-linked", "--auth0-token", TOKEN])
}

#[test]
fn three_runs_chain_with_every_field_and_true_fingerprints() {
    let sim = start_sim();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &rows_input(10));
    let job = auth0_job(dir.path(), &sim.url, "in.csv", "");
    let report = dir.path().join("report.csv");
    let log = dir.path().join("report.csv.runs.jsonl");
    let mut report_hashes = Vec::new();
    for (limit, code) in [(Some("3"), 4), (Some("3"), 4), (None, 0)] {
        let mut args = vec!["run", job.to_str().unwrap(), "--no-progress"];
        if let Some(n) = limit {
            args.extend(["--limit", n]);
        }
        let out = unlinker(&args, &[("TEST_TOKEN", TOKEN)]);
        assert_eq!(out.code, code, "{}", out.stderr);
        let bytes = std::fs::read(&report).unwrap();
        report_hashes.push((bytes.len() as u64, sha256(&bytes)));
    }
    assert_eq!(mode(&log) & 0o777, 0o600);
    let lines = lines(&log);
    assert_chain(&lines);
    assert_eq!(unlinker::runslog::verify(&log), Ok(6));
    let runs: Vec<u64> = lines
        .iter()
        .map(|(_, v)| v["run"].as_u64().unwrap())
        .collect();
    assert_eq!(runs, [1, 1, 2, 2, 3, 3]);
    let input_sha = file_sha256(&input);
    let job_sha = file_sha256(&job);
    let input_len = std::fs::metadata(&input).unwrap().len();
    for (i, (raw, v)) in lines.iter().enumerate() {
        for field in FIELDS {
            assert!(v.get(field).is_some(), "line {}: no {field}: {raw}", i + 1);
        }
        assert_eq!(v["event"], if i % 2 == 0 { "start" } else { "end" });
        assert_eq!(v["job"], "t");
        assert_eq!(v["dry_run"], false);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["job_sha256"], job_sha.as_str());
        assert_eq!(v["input"]["path"], input.display().to_string().as_str());
        assert_eq!(v["input"]["bytes"], input_len);
        assert_eq!(v["report"]["path"], report.display().to_string().as_str());
        assert!(!v["user"].as_str().unwrap().is_empty());
        assert!(!v["host"].as_str().unwrap().is_empty());
        assert_eq!(v["args"][0], UNLINKER);
        assert_eq!(v["args"][1], "run");
        parse_time(v["started_at"].as_str().unwrap());
    }
    let ends: Vec<&serde_json::Value> = lines.iter().skip(1).step_by(2).map(|(_, v)| v).collect();
    let stops: Vec<&str> = ends.iter().map(|v| v["stop"].as_str().unwrap()).collect();
    assert_eq!(stops, ["limit", "limit", "complete"]);
    let codes: Vec<i64> = ends
        .iter()
        .map(|v| v["exit_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [4, 4, 0]);
    assert_eq!(lines[2].1["args"][4], "--limit");
    assert_eq!(lines[4].1["args"].as_array().unwrap().len(), 4);
    for (end, (len, sha)) in ends.iter().zip(&report_hashes) {
        assert_eq!(end["input"]["sha256"], input_sha.as_str());
        assert_eq!(
            end["report"]["sha256"],
            sha.as_str(),
            "report at that run's end"
        );
        assert_eq!(end["report"]["bytes"], *len);
        parse_time(end["ended_at"].as_str().unwrap());
        assert_eq!(end["vendors"]["auth0"]["rate_limited"], 0);
    }
    let this_run: Vec<u64> = ends
        .iter()
        .map(|v| v["this_run"]["unlinked"].as_u64().unwrap())
        .collect();
    assert_eq!(this_run, [3, 3, 4]);
    let sent: Vec<u64> = ends
        .iter()
        .map(|v| v["vendors"]["auth0"]["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(sent, [3, 3, 4]);
    assert_eq!(ends[1]["counts"]["unlinked"], 6);
    assert_eq!(ends[1]["counts"]["pending"], 4);
    assert_eq!(ends[2]["counts"]["unlinked"], 10);
    assert_eq!(ends[2]["counts"]["pending"], 0);
    assert_eq!(ends[2]["this_run"]["absent_after_lost_answer"], 0);
    for start in lines.iter().step_by(2).map(|(_, v)| v) {
        for null in [
            "ended_at",
            "exit_code",
            "stop",
            "counts",
            "this_run",
            "vendors",
        ] {
            assert!(start[null].is_null(), "{null} on a start line: {start}");
        }
        assert!(start["input"]["sha256"].is_null());
    }
    readme_snippet_checks(&log, &lines);
}

/// The README's shell snippet says "intact" with the last line's hash, and names the line
/// after a changed one.
fn readme_snippet_checks(log: &Path, lines: &[(String, serde_json::Value)]) {
    if !["jq", "sha256sum", "bash"].iter().all(|t| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }) {
        eprintln!("jq, sha256sum or bash missing: the README snippet is not run");
        return;
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let snippet = readme
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|block| block.contains("sha256sum") && block.contains("jq -r .prev"))
        .expect("the README has the runs-log check snippet");
    let first = snippet.lines().next().unwrap();
    assert!(first.starts_with("log="), "{first}");
    let run = |path: &Path| {
        let script = snippet.replacen(first, &format!("log='{}'", path.display()), 1);
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let last = sha256(lines.last().unwrap().0.as_bytes());
    assert_eq!(
        run(log).trim(),
        format!(
            "intact: {} lines; the last line's SHA-256 is {last}",
            lines.len()
        )
    );
    let tampered = log.with_extension("tampered");
    let text: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, (raw, _))| {
            if i == 3 {
                raw.replace("\"limit\"", "\"complete\"")
            } else {
                raw.clone()
            }
        })
        .collect();
    std::fs::write(&tampered, text.join("\n") + "\n").unwrap();
    assert!(run(&tampered).starts_with("broken at line 5:"));
    let broken = unlinker::runslog::verify(&tampered).unwrap_err();
    assert_eq!((broken.run, broken.line), (Some(2), 4), "{broken}");
}

#[test]
fn a_killed_run_leaves_its_start_line_and_a_locked_run_writes_nothing() {
    let sim = Sim::start(&["--all-linked", "--auth0-token", TOKEN, "--latency", "300ms"]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(40));
    let job = auth0_job(dir.path(), &sim.url, "in.csv", "").to_path_buf();
    // One call at a time: the run takes seconds.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("concurrency = 8", "concurrency = 1");
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("report.csv.runs.jsonl");
    let mut child = spawn_run(&job, Stdio::null());
    let t = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |t| t.lines().count() < 1) {
        assert!(t.elapsed() < Duration::from_secs(20), "no start line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let locked = unlinker(
        &["run", job.to_str().unwrap(), "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(locked.code, 5, "{}", locked.stderr);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_kill = lines(&log);
    assert_eq!(after_kill.len(), 1, "only the killed run's start line");
    assert_eq!(after_kill[0].1["event"], "start");
    let out = unlinker(
        &[
            "run",
            job.to_str().unwrap(),
            "--no-progress",
            "--concurrency",
            "8",
        ],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = lines(&log);
    let shape: Vec<(u64, &str)> = lines
        .iter()
        .map(|(_, v)| (v["run"].as_u64().unwrap(), v["event"].as_str().unwrap()))
        .collect();
    assert_eq!(shape, [(1, "start"), (2, "start"), (2, "end")]);
    assert_chain(&lines);
    assert_eq!(unlinker::runslog::verify(&log), Ok(3));
    assert_eq!(lines[2].1["stop"], "complete");
    assert_eq!(lines[2].1["counts"]["pending"], 0);
}

#[test]
fn no_secret_in_the_runs_log() {
    let sim = start_sim();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(3));
    let job = auth0_job(dir.path(), &sim.url, "in.csv", "");
    // The token on the command line too (a summary path naming it), so `args` must scrub it.
    let summary = dir.path().join(format!("s-{TOKEN}.json"));
    let out = unlinker(
        &[
            "run",
            job.to_str().unwrap(),
            "--no-progress",
            "--summary",
            summary.to_str().unwrap(),
        ],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = dir.path().join("report.csv.runs.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 2);
    for form in secret_forms(TOKEN) {
        assert!(!text.contains(&form), "{form} in the runs log: {text}");
    }
    assert!(
        text.contains("[redacted]"),
        "the summary path, scrubbed: {text}"
    );
}

#[test]
fn a_dry_run_keeps_its_own_runs_log_beside_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &rows_input(5));
    // No vendor is reached by a dry run: a closed port.
    let job = auth0_job(dir.path(), "http://127.0.0.1:9", "in.csv", "");
    let out = unlinker(
        &["run", job.to_str().unwrap(), "--no-progress", "--dry-run"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!dir.path().join("report.csv.runs.jsonl").exists());
    let report = dir.path().join("report.dry-run.csv");
    let log = dir.path().join("report.dry-run.csv.runs.jsonl");
    assert_eq!(mode(&log) & 0o777, 0o600);
    let lines = lines(&log);
    assert_eq!(lines.len(), 2);
    assert_chain(&lines);
    let end = &lines[1].1;
    assert_eq!(end["dry_run"], true);
    assert_eq!(end["stop"], "complete");
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["this_run"]["dry_run"], 5);
    assert_eq!(end["input"]["sha256"], file_sha256(&input).as_str());
    assert_eq!(end["report"]["sha256"], file_sha256(&report).as_str());
    assert_eq!(end["report"]["path"], report.display().to_string().as_str());
}

#[test]
fn a_piped_input_is_fingerprinted_from_its_copy() {
    let dir = tempfile::tempdir().unwrap();
    let job = auth0_job(dir.path(), "http://127.0.0.1:9", "-", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("path = \"-\"", "path = \"-\"\nformat = \"csv\"");
    std::fs::write(&job, text).unwrap();
    let input = rows_input(7);
    let mut cmd = std::process::Command::new(UNLINKER);
    cmd.args(["run", job.to_str().unwrap(), "--no-progress", "--dry-run"])
        .env("TEST_TOKEN", TOKEN);
    let out = run_with_deadline(&mut cmd, Some(input.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = lines(&dir.path().join("report.dry-run.csv.runs.jsonl"));
    let end = &lines[1].1;
    assert_eq!(end["input"]["path"], "<stdin>");
    assert_eq!(end["input"]["bytes"], input.len());
    assert_eq!(end["input"]["sha256"], sha256(input.as_bytes()).as_str());
}
