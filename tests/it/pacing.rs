//! Politeness to a shared tenant: header-synced pacing against the simulator's Auth0 budget
//! headers with background traffic on the same bucket, `reserve`, and vendors independent of
//! each other however many rows one of them has waiting.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const UNLINKER: &str = env!("CARGO_BIN_EXE_unlinker");
const IDP: &str = "82339786-3dff-42a6-aac6-1f1ceecb6c46";

fn fa_user(i: usize) -> String {
    format!("6f0a9b4e-2c1d-4e8f-9a3b-{i:012x}")
}

fn auth0_row(i: usize) -> String {
    format!(
        "{{\"vendor\":\"auth0\",\"user_id\":\"auth0|m{i}\",\"provider\":\"github\",\"identity_user_id\":{i}}}\n"
    )
}

fn fa_row(i: usize) -> String {
    format!(
        "{{\"vendor\":\"fusionauth\",\"user_id\":\"{}\",\"identity_provider_id\":\"{IDP}\",\"identity_provider_user_id\":\"p{i}\"}}\n",
        fa_user(i)
    )
}

/// A job with `vendors` (TOML tables), reading `input`, writing `report.csv`.
fn job(dir: &Path, input: &str, vendors: &str) -> std::path::PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "pacing"
[input]
path = "{input}"
[output]
report = "report.csv"
{vendors}
[retry]
base_delay = "10ms"
max_delay = "200ms"
timeout = "5s"
"#
        ),
    )
}

fn auth0_table(url: &str, pacing: &str) -> String {
    format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "sim-token"
{pacing}
"#
    )
}

/// `vendors.VENDOR.FIELD` of the simulator's counters (without the per-key ones).
fn count(sim: &Sim, vendor: &str, field: &str) -> u64 {
    sim.get_json("/_sim/counters?keys=false")["vendors"][vendor][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter vendors.{vendor}.{field}"))
}

fn bucket(sim: &Sim) -> serde_json::Value {
    sim.get_json("/_sim/counters?keys=false")["buckets"]["auth0"].clone()
}

/// The job asks for the whole limit (50/s) while background traffic takes 20/s of a bucket of
/// 10: without reading the budget headers it would empty the bucket within a second and keep
/// running into the limit. Reading them, it keeps the shared bucket from running dry, so neither the job nor the
/// "production" traffic is refused (a tolerance of a few, never a timing).
#[test]
fn budget_headers_keep_a_shared_bucket_from_running_dry() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[
        "--all-linked",
        "--rate-limit",
        "auth0=50/10",
        "--background",
        "auth0=20",
    ]);
    write(dir.path(), "in.csv", &rows_input(150));
    let job = job(
        dir.path(),
        "in.csv",
        &auth0_table(&sim.url, "rate = 50\nburst = 10\nconcurrency = 4"),
    );
    let summary = dir.path().join("s.json");
    let out = unlinker(
        &[
            "run",
            job.to_str().unwrap(),
            "--no-progress",
            "--summary",
            summary.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = read_json(&summary);
    assert_eq!(s["counts"]["unlinked"], 150, "{s}");
    let limited = s["vendors"]["auth0"]["rate_limited"].as_u64().unwrap();
    let b = bucket(&sim);
    let refused = b["background_refused"].as_u64().unwrap();
    eprintln!(
        "job rate-limited {limited}, background refused {refused}, bucket {}",
        b["remaining"]
    );
    assert!(
        limited <= 2,
        "the job ran into the limit {limited} times: {s}"
    );
    assert!(
        refused <= 2,
        "the background traffic was refused {refused} times"
    );
    assert!(b["background_taken"].as_u64().unwrap() > 0);
}

/// With `reserve = 0.5` the job leaves half the bucket to others: once the run has settled
/// (after its first second), the sampled bucket never goes below 0.3 of its size (without the
/// headers the job at 40/s plus 10/s of background would empty it within two seconds).
#[test]
fn reserve_leaves_a_share_of_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[
        "--all-linked",
        "--rate-limit",
        "auth0=40/20",
        "--background",
        "auth0=10",
    ]);
    write(dir.path(), "in.csv", &rows_input(90));
    let job = job(
        dir.path(),
        "in.csv",
        &auth0_table(
            &sim.url,
            "rate = 40\nburst = 5\nconcurrency = 4\nreserve = 0.5",
        ),
    );
    let started_ms = bucket(&sim)["samples"]
        .as_array()
        .and_then(|s| s.last().map(|x| x[0].as_f64().unwrap()))
        .unwrap_or(0.0);
    let out = unlinker(&["run", job.to_str().unwrap(), "--no-progress"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let b = bucket(&sim);
    let settled: Vec<f64> = b["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x[0].as_f64().unwrap() > started_ms + 1000.0)
        .map(|x| x[1].as_f64().unwrap())
        .collect();
    assert!(settled.len() >= 5, "too few samples: {b}");
    let lowest = settled.iter().copied().fold(f64::MAX, f64::min);
    eprintln!("lowest {lowest} of 20 over {} samples", settled.len());
    assert!(
        lowest >= 40.0 / 3.0,
        "the bucket went down to {lowest} of 20: {settled:?}"
    );
    assert_eq!(b["background_refused"], 0);
}

/// FusionAuth is paused by 429s (the simulator allows it one call a second) and has more rows
/// waiting than any queue holds, ahead of all Auth0's rows in the input: Auth0 still gets every
/// one of its rows done while FusionAuth waits. The run is then interrupted: it stops cleanly.
#[test]
fn a_paused_vendor_with_a_deep_backlog_never_starves_another() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--all-linked", "--rate-limit", "fusionauth=1/1"]);
    let mut input = String::new();
    for i in 0..4600 {
        input.push_str(&fa_row(i));
    }
    for i in 0..300 {
        input.push_str(&auth0_row(i));
    }
    for i in 4600..4800 {
        input.push_str(&fa_row(i));
    }
    write(dir.path(), "in.jsonl", &input);
    let vendors = format!(
        "{}\n[vendors.fusionauth]\ntype = \"fusionauth\"\nbase_url = \"{}\"\napi_key = \"sim-fusionauth-key\"\nrate = 500\nburst = 500\nconcurrency = 4\n",
        auth0_table(&sim.url, "rate = 1000\nburst = 1000\nconcurrency = 8"),
        sim.url
    );
    let job = job(dir.path(), "in.jsonl", &vendors);
    let mut child = Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count(&sim, "auth0", "removed") < 300 && start.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let removed = count(&sim, "auth0", "removed");
    let fa_calls = count(&sim, "fusionauth", "unlink_calls");
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(removed, 300, "Auth0 was held up by FusionAuth's backlog");
    assert_eq!(status.code(), Some(4), "stopped by the signal");
    let rows = read_report(&dir.path().join("report.csv"));
    let auth0: Vec<&Row> = rows.iter().filter(|r| r["vendor"] == "auth0").collect();
    assert_eq!(auth0.len(), 300);
    assert!(auth0.iter().all(|r| r["outcome"] == "unlinked"));
    // FusionAuth was only ever let through one call a second.
    assert!(fa_calls < 300, "{fa_calls}");
}

/// Two vendors at very different speeds: Auth0's rows come first, more than its queue holds
/// (made small for the test), then both interleaved. FusionAuth runs short while Auth0's queue
/// is full, so Auth0's rows go through a backlog; every input line still gets exactly one report
/// row, and every link exactly one call.
#[test]
fn backlogged_rows_are_each_sent_and_reported_once() {
    backlogged_rows(None);
}

/// The same, stopped by `--limit` with rows in the backlog, then resumed to the end.
#[test]
fn backlogged_rows_resume_after_limit() {
    backlogged_rows(Some(300));
}

fn backlogged_rows(limit: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--all-linked"]);
    let mut input = String::new();
    let (first, n) = (100, 400);
    for i in 0..first {
        input.push_str(&auth0_row(i));
    }
    for i in 0..n {
        input.push_str(&fa_row(i));
        input.push_str(&auth0_row(first + i));
        if i % 100 == 7 {
            input.push_str(&auth0_row(i)); // a duplicate, decided by the reader
        }
    }
    write(dir.path(), "in.jsonl", &input);
    let vendors = format!(
        "{}\n[vendors.fusionauth]\ntype = \"fusionauth\"\nbase_url = \"{}\"\napi_key = \"sim-fusionauth-key\"\nrate = 1000000\nburst = 1000\nconcurrency = 8\n",
        auth0_table(&sim.url, "rate = 200\nburst = 1\nconcurrency = 2"),
        sim.url
    );
    let job = job(dir.path(), "in.jsonl", &vendors);
    let env = [("UNLINKER_TEST_LANE_QUEUE", "32")];
    let job_arg = job.to_str().unwrap();
    let mut stderr = String::new();
    if let Some(limit) = limit {
        let limit = limit.to_string();
        let out = unlinker(
            &["run", job_arg, "--no-progress", "-v", "--limit", &limit],
            &env,
        );
        assert_eq!(out.code, 4, "rows remain after --limit\n{}", out.stderr);
        let done = read_report(&dir.path().join("report.csv"));
        let sent = done.iter().filter(|r| r["outcome"] == "unlinked").count();
        assert_eq!(sent, 300, "--limit counts rows sent");
        stderr.push_str(&out.stderr);
    }
    let out = unlinker(&["run", job_arg, "--no-progress", "-v"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    stderr.push_str(&out.stderr);
    assert!(
        stderr.contains("backlog"),
        "Auth0's rows never needed a backlog"
    );
    let rows = read_report(&dir.path().join("report.csv"));
    let lines = by_line(&rows);
    let dup_lines = n / 100;
    assert_eq!(rows.len(), first + 2 * n + dup_lines, "one row per line");
    assert_eq!(lines.len(), rows.len(), "no line twice");
    assert_eq!(*lines.keys().last().unwrap(), rows.len() as u64);
    let dups = rows.iter().filter(|r| r["outcome"] == "duplicate").count();
    assert_eq!(dups, dup_lines);
    let unlinked = rows.iter().filter(|r| r["outcome"] == "unlinked").count();
    assert_eq!(unlinked, first + 2 * n);
    assert_eq!(count(&sim, "auth0", "unlink_calls"), (first + n) as u64);
    assert_eq!(count(&sim, "fusionauth", "unlink_calls"), n as u64);
}
